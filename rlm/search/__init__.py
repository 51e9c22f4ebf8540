"""Search, chunking and token counts the model calls from the REPL, over a Context or a str.

Why native: model code that scans a huge context with Python loops or backtracking `re` is slow
or can hang. `search` runs one Aho-Corasick pass (pyahocorasick) for any number of keywords; `regex`
and `grep` run RE2 (pyre2: linear time, no catastrophic backtracking) directly over the mapped bytes,
so nothing is copied. Every helper accepts a context view, a list of documents, a list of texts or a
plain str; results are plain data (small frozen dataclasses, also readable as `hit["start"]`).
Offsets are character offsets into the text searched, lines are 1-based and count "\\n".

The sandbox puts `bind(context)` into the REPL: the same helpers with `text` defaulting to `context`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from rlm.context import Context
from rlm.search.chunks import chunk_chars, chunk_lines, chunk_tokens, count_tokens
from rlm.search.find import grep, regex, search
from rlm.search.hits import GrepHit as GrepHit  # the records the helpers return
from rlm.search.hits import Hit as Hit

__all__ = ["chunk_chars", "chunk_lines", "chunk_tokens", "count_tokens", "grep", "regex", "search"]


def _bound(fn: Callable[..., Any], context: Context | None) -> Callable[..., Any]:
    signature = inspect.signature(fn)
    slot = list(signature.parameters).index("text")

    @functools.wraps(fn)
    def with_context(*args: Any, **kwargs: Any) -> Any:
        if len(args) > slot and type(args[slot]) is int:  # chunk_chars(50_000), grep("x", 2): no text
            args = (*args[:slot], context, *args[slot:])
        bound = signature.bind(*args, **kwargs)
        if bound.arguments.get("text") is None:
            bound.arguments["text"] = context
        return fn(*bound.args, **bound.kwargs)

    return with_context


def bind(context: Context | None) -> dict[str, Callable[..., Any]]:
    """The helpers of `__all__` with `text` defaulting to `context`: what the REPL namespace holds."""
    return {name: _bound(globals()[name], context) for name in __all__}
