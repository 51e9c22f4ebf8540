"""What a user gives, turned into a store: a file (mapped in place), standard input, bytes, str or a
JSON file. Here the text is checked once: binary data, invalid UTF-8 (refused, or repaired into a copy
with errors='replace') and empty inputs get a message that names the input.
"""

from __future__ import annotations

import codecs
import functools
import json
import mmap
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from rlm.context.store import (
    BLOCK,
    BadUtf8,
    Store,
    anonymous_copy,
    build_index,
    release,
    source_spec,
    write_anonymous,
)
from rlm.errors import ContextError

WINDOW = 4 << 20  # bytes per window while scanning (lines, split)
_BINARY_PROBE = 8192  # a NUL byte in the first bytes means "binary"
ERRORS = ("strict", "replace")


def _check_text(data: Any, what: str) -> None:
    """Refuse empty and binary data early, with a message that says what to do."""
    if len(data) == 0:
        raise ContextError(f"{what} is empty: there is nothing to read")
    nul = data.find(b"\x00", 0, _BINARY_PROBE)
    if nul >= 0:
        raise ContextError(f"{what} looks binary (NUL byte at offset {nul}); pass a UTF-8 text file")


def _not_utf8(what: str, offset: int) -> ContextError:
    return ContextError(
        f"{what} is not valid UTF-8 (first bad byte at offset {offset}); convert it "
        "(e.g. `iconv -f latin1 -t utf-8`) or pass errors='replace' (rlm query: --errors replace)"
    )


def _repaired(buf: Any, label: str) -> Store:
    """errors='replace': a repaired copy (bad bytes -> U+FFFD) in an anonymous file."""

    def pieces() -> Iterator[bytes]:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        for p in range(0, len(buf), BLOCK):
            yield decoder.decode(buf[p : p + BLOCK]).encode("utf-8")
        yield decoder.decode(b"", final=True).encode("utf-8")

    return write_anonymous(pieces(), label)


def file_store(path: str | os.PathLike[str], errors: str) -> Store:
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, not {errors!r}")
    p = Path(path).expanduser()
    label = str(p)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ContextError(f"context file not found: {label}") from None
    except IsADirectoryError:
        raise ContextError(_directory_message(label)) from None
    except PermissionError:
        raise ContextError(f"cannot read context file {label}: permission denied") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ContextError(_directory_message(label))
        if st.st_size == 0:
            raise ContextError(f"context file {label} is empty: there is nothing to read")
        buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)
    try:
        _check_text(buf, f"context file {label}")
        index = build_index(buf)
    except BadUtf8 as bad:
        if errors == "strict":
            buf.close()
            raise _not_utf8(f"context file {label}", bad.offset) from None
        try:
            return _repaired(buf, label)
        finally:
            buf.close()
    except ContextError:
        buf.close()
        raise
    source = source_spec(str(p.resolve()), st.st_size, [st.st_mtime_ns, st.st_ino], index, label)
    return Store(buf, index, label, [buf], source)


def _directory_message(label: str) -> str:
    return (
        f"context path {label} is a directory, not a file; pass it as a pathlib.Path to RLM.query (or --context DIR): "
        "its text files become a list of documents"
    )


def bytes_store(data: bytes | bytearray | memoryview, errors: str, label: str) -> Store:
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, not {errors!r}")
    data = bytes(data)
    _check_text(data, "context")
    try:
        return write_anonymous([data], label)
    except BadUtf8 as bad:
        if errors == "strict":
            raise _not_utf8("context", bad.offset) from None
        return _repaired(data, label)


def stream_store(stream: BinaryIO, errors: str, label: str) -> Store:
    """A stream (stdin) copied window by window into a sealed anonymous file: the file is the only
    copy, where reading the stream whole first would hold the context twice."""
    if errors not in ERRORS:
        raise ValueError(f"errors must be one of {ERRORS}, not {errors!r}")
    buf, path, size, resources = anonymous_copy(iter(functools.partial(stream.read, WINDOW), b""), label)
    try:
        _check_text(buf, "context")
        try:
            index = build_index(buf)
        except BadUtf8 as bad:
            if errors == "strict":
                raise _not_utf8("context", bad.offset) from None
            repaired = _repaired(buf, label)
            release(resources)
            return repaired
    except BaseException:
        release(resources)
        raise
    return Store(buf, index, label, resources, source_spec(path, size, None, index, label))


def encoded(texts: Iterable[str], errors: str) -> Iterator[bytes]:
    """UTF-8 of `texts` in bounded pieces (lone surrogates: an error, or '?' with errors='replace')."""
    for text in texts:
        for p in range(0, len(text), WINDOW):
            try:
                yield text[p : p + WINDOW].encode("utf-8", errors)
            except UnicodeEncodeError as exc:
                raise ContextError(
                    f"context text has a lone surrogate at character {p + exc.start}; "
                    "pass errors='replace' to replace it"
                ) from None


def parse_json(p: Path) -> tuple[Any, str]:
    """(the parsed value or None, what is wrong with it as documents)."""
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return None, "is not valid UTF-8 JSON"
    except OSError:
        return None, "cannot be read"  # the text path reports the problem clearly
    try:
        if p.suffix.lower() != ".jsonl":
            value = json.loads(text)
        else:
            value = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    return value, "holds no JSON array or object"
