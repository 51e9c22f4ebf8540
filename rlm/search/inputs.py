"""What every helper accepts, turned into views: a context view, a list of documents, a list of texts
or a plain str; and the pieces handed back the way the text came (a str for a str, a view for a view)."""

from __future__ import annotations

from typing import Any

from rlm.context import DocumentList, TextView
from rlm.context.views import view_of_str


def parts(text: Any) -> list[tuple[int | None, TextView, bool]]:
    """(document index, view, came from a str) for each text in `text`; a changed file (one stat
    per file per call, see rlm.context) raises ContextError before anything reads it."""
    found = _texts(text)
    for store in {id(view._store): view._store for _, view, _ in found}.values():
        store.check()
    return found


def _texts(text: Any) -> list[tuple[int | None, TextView, bool]]:
    if text is None:
        raise TypeError("no text to work on: pass a str or a view of `context`")
    if isinstance(text, str):
        return [(None, view_of_str(text), True)]
    if isinstance(text, TextView):
        return [(None, text, False)]
    if isinstance(text, (DocumentList, list, tuple)):
        out = []
        for i, item in enumerate(text):
            if not isinstance(item, (str, TextView)):
                raise TypeError(f"item {i} is a {type(item).__name__}, not a str or a view of `context`")
            out += [(i, view, was_str) for _, view, was_str in _texts(item)]
        return out
    raise TypeError(f"expected a str or a view of `context`, not {type(text).__name__}")


def as_given(piece: TextView, was_str: bool) -> TextView | str:
    """A chunk as the caller gave the text: a str for a str, a zero-copy view for a view."""
    return str(piece) if was_str else piece


def char_start(buf: Any, b: int) -> int:
    """`b`, moved back to the start of its character (a token may start inside one)."""
    while buf[b] & 0xC0 == 0x80:
        b -= 1
    return b
