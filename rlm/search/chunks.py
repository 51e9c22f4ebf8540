"""Cutting a text into pieces (by characters, lines or tokens; views, so nothing is copied) and counting
its tokens, with tiktoken offline."""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Iterator
from typing import Any

from rlm.context import TextView
from rlm.search.inputs import as_given, char_start, parts
from rlm.tokens import DEFAULT_ENCODING, encoding

_TOKEN_WINDOW = 1 << 20  # bytes per tokenizer window


def _check(size: int, overlap: int) -> int:
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError("need size > 0 and 0 <= overlap < size")
    return size - overlap


def chunk_chars(text: Any = None, size: int = 100_000, overlap: int = 0) -> list[TextView | str]:
    """Pieces of `size` characters, each starting `size - overlap` after the previous (views: no copy).
    Views are not str: join them with "\\n".join(map(str, chunks)).

    answers = llm_query_batched([f"Summarise:\\n{c}" for c in chunk_chars(context, 50_000)])
    """
    step = _check(size, overlap)
    out: list[TextView | str] = []
    for _, view, was_str in parts(text):
        n = len(view)
        out += [as_given(view[s : s + size], was_str) for s in range(0, max(n - overlap, 1), step) if n]
    return out


def chunk_lines(text: Any = None, size: int = 1000, overlap: int = 0) -> list[TextView | str]:
    """Pieces of `size` lines ("\\n"-separated, ends kept), overlapping by `overlap` lines.
    Views are not str: join them with "".join(map(str, chunks)).

    for part in chunk_lines(context, 500): ...
    """
    step = _check(size, overlap)
    out: list[TextView | str] = []
    for _, view, was_str in parts(text):
        if not view:
            continue
        store = view._store
        before = store.newlines_before(view._b0)
        inside = store.newlines_before(view._b1) - before
        total = inside + (store.buf[view._b1 - 1 : view._b1] != b"\n")
        for k in range(0, max(total - overlap, 1), step):
            a = _line_start(view, k, before, inside)
            b = _line_start(view, min(k + size, total), before, inside)
            out.append(as_given(view._sub_bytes(a, b), was_str))
    return out


def _line_start(view: TextView, k: int, before: int, inside: int) -> int:
    """Byte offset of line k of `view` (`before`/`inside`: newlines before it and within it)."""
    if k == 0:
        return view._b0
    return view._b1 if k > inside else view._store.line_start(before + k)


def _token_starts(view: TextView, enc: Any) -> Iterator[list[int]]:
    """Byte offsets where tokens start, window by window (each cut where tokenizers agree)."""
    for pos, window in view._windows(_TOKEN_WINDOW, token_safe=True):
        lengths = map(len, enc.decode_tokens_bytes(enc.encode_ordinary(window)))
        yield list(itertools.accumulate(lengths, initial=pos))[:-1]


def chunk_tokens(
    text: Any = None, size: int = 2000, overlap: int = 0, *, encoding_name: str = DEFAULT_ENCODING
) -> list[TextView | str]:
    """Pieces of about `size` tokens (tiktoken, offline), overlapping by `overlap` tokens; a chunk
    starts and ends on a character boundary, so a character that spans several tokens stays whole.
    Views are not str: join them with "".join(map(str, chunks)).

    parts = chunk_tokens(context, 8000, overlap=200)
    """
    step = _check(size, overlap)
    enc = encoding(encoding_name)
    out: list[TextView | str] = []
    for _, view, was_str in parts(text):
        buf = view._store.buf
        spans: list[list[int]] = []  # [byte start, byte end] of each chunk, starts strictly increasing
        pending = array("q")
        for starts in _token_starts(view, enc):
            pending.extend(starts)
            while len(pending) > size:
                _add_span(spans, char_start(buf, pending[0]), char_start(buf, pending[size]))
                del pending[:step]
        if len(pending) > overlap or (pending and not spans):
            _add_span(spans, char_start(buf, pending[0]), view._b1)
        out += [as_given(view._sub_bytes(b0, b1), was_str) for b0, b1 in spans]
    return out


def _add_span(spans: list[list[int]], b0: int, b1: int) -> None:
    """Tokens inside one character share its start: an empty chunk is dropped, and a chunk with the
    previous one's start replaces it (it reaches further), so chunks stay non-empty and cover the text."""
    if b1 <= b0:
        return
    if spans and spans[-1][0] == b0:
        spans[-1][1] = max(spans[-1][1], b1)
    else:
        spans.append([b0, b1])


def count_tokens(text: Any = None, *, encoding_name: str = DEFAULT_ENCODING) -> int:
    """Number of tokens (tiktoken, offline) of a str, a view or every document.

    count_tokens(context[:100_000])
    """
    enc = encoding(encoding_name)
    return sum(
        len(enc.encode_ordinary(window))
        for _, view, _ in parts(text)
        for _, window in view._windows(_TOKEN_WINDOW, token_safe=True)
    )
