"""Model output, cell output and error text are untrusted: shown on a terminal, escape sequences in
them would act (OSC 52 sets the clipboard, OSC 8 plants links, titles change, bidi overrides reorder
what the user reads). Here they are written visibly escaped instead, as `\\x1b` or `\\u202e`.
"""

from __future__ import annotations

import re
from typing import IO, Any

# C0 controls but newline and tab, DEL, C1 (with the one-byte CSI \x9b), and the bidi controls.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def neutralise(text: str) -> str:
    """`text` with every control and bidi character written out as a visible escape."""
    return UNSAFE.sub(_escaped, text)


def is_terminal(stream: IO[Any]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream is not a terminal
        return False


def for_stream(text: str, stream: IO[Any]) -> str:
    """`text` as it may be written to `stream`: neutralised when a person reads it on a terminal,
    as is for pipes and files (which the next program decides how to show)."""
    return neutralise(text) if is_terminal(stream) else text


def _json_escaped(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_safe(document: str) -> str:
    """A JSON text with the controls json.dumps(ensure_ascii=False) leaves raw (DEL, C1, bidi) written
    as \\u escapes: still the same JSON, readable non-ASCII kept, and harmless on any terminal."""
    return UNSAFE.sub(_json_escaped, document)
