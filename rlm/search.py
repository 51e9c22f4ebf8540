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

import dataclasses
import functools
import inspect
import itertools
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import ahocorasick
import re2

from rlm.context import Context, DocumentList, TextView
from rlm.context.views import view_of_str
from rlm.tokens import DEFAULT_ENCODING, encoding

__all__ = ["chunk_chars", "chunk_lines", "chunk_tokens", "count_tokens", "grep", "regex", "search"]

_AC_WINDOW = 4 << 20  # characters per Aho-Corasick window
_TOKEN_WINDOW = 1 << 20  # bytes per tokenizer window


@dataclass(frozen=True, slots=True)
class Hit:
    """One match: `text[start:end]` is `match`, on line `line`; `snippet` shows the line around it."""

    start: int
    end: int
    line: int
    match: str
    snippet: str
    keyword: str | None = None  # search(): which keyword (as given) matched
    groups: tuple[str | None, ...] = ()  # regex(): the capture groups
    doc: int | None = None  # the document index, when searching a list of documents
    name: str | None = None  # the document name, when it has one

    def __getitem__(self, key: str) -> Any:
        return _field(self, key)

    def __repr__(self) -> str:
        return _repr(self)


@dataclass(frozen=True, slots=True)
class GrepHit:
    """One matching line with `before`/`after` context lines; str() prints it the way grep does."""

    line: int
    start: int  # character offset of the line's start
    text: str
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    doc: int | None = None
    name: str | None = None

    def __getitem__(self, key: str) -> Any:
        return _field(self, key)

    def __repr__(self) -> str:
        return _repr(self)

    def __str__(self) -> str:
        where = f"{self.name or self.doc}:" if self.doc is not None or self.name else ""
        first = self.line - len(self.before)
        rows = [f"{where}{first + i}-{t}" for i, t in enumerate(self.before)]
        rows.append(f"{where}{self.line}:{self.text}")
        rows += [f"{where}{self.line + 1 + i}-{t}" for i, t in enumerate(self.after)]
        return "\n".join(rows)


def _field(record: Any, key: str) -> Any:
    if key not in {f.name for f in dataclasses.fields(record)}:
        raise KeyError(key)
    return getattr(record, key)


def _repr(record: Any) -> str:
    shown = [
        f"{f.name}={getattr(record, f.name)!r}"
        for f in dataclasses.fields(record)
        if getattr(record, f.name) not in (None, ()) or f.default is dataclasses.MISSING
    ]
    return f"{type(record).__name__}({', '.join(shown)})"


# -- inputs -------------------------------------------------------------------------------------
def _parts(text: Any) -> list[tuple[int | None, TextView, bool]]:
    """(document index, view, came from a str) for each text in `text`; a changed file (one stat
    per file per call, see rlm.context) raises ContextError before anything reads it."""
    parts = _texts(text)
    for store in {id(view._store): view._store for _, view, _ in parts}.values():
        store.check()
    return parts


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


def _out(piece: TextView, was_str: bool) -> TextView | str:
    """A chunk as the caller gave the text: a str for a str, a zero-copy view for a view."""
    return str(piece) if was_str else piece


# -- Aho-Corasick -------------------------------------------------------------------------------
def _fold(text: str) -> str:
    """Lower case without changing the length (str.lower turns 'İ' into two characters)."""
    return text.replace("İ", "i").lower()


def search(
    keywords: str | Iterable[str],
    text: Any = None,
    *,
    ignore_case: bool = False,
    max_hits: int | None = 1000,
    snippet: int = 60,
) -> list[Hit]:
    """Every occurrence of any keyword (overlaps included), in text order, by Aho-Corasick.

    ignore_case compares `str.lower()` of each character, not full case folding: "ß" does not match
    "SS" or "ss", "ſ" does not match "s", "ς" does not match "σ" (use regex(..., ignore_case=True),
    which knows ſ/s and ς/σ, or list the spellings as keywords).

    search(["error", "timeout"], context, ignore_case=True)[:5]
    """
    wanted = [keywords] if isinstance(keywords, (str, TextView)) else list(keywords)
    automaton = ahocorasick.Automaton()
    for kw in wanted:
        kw = str(kw)
        key = _fold(kw) if ignore_case else kw
        if key and not automaton.exists(key):
            automaton.add_word(key, (len(key), kw))
    if len(automaton) == 0:
        raise ValueError("search() needs at least one non-empty keyword")
    automaton.make_automaton()
    longest = max(length for length, _ in automaton.values())
    prefilter = None if ignore_case else _keyword_prefilter(list(automaton.keys()))
    hits: list[Hit] = []
    for doc, view, _ in _parts(text):
        # the RE2 DFA skips text without keywords; Aho-Corasick reports every (overlapping) occurrence
        pieces = _ac_windows(view, longest) if prefilter is None else _candidate_regions(prefilter, view, longest)
        for c0, window, core, line in pieces:
            haystack = _fold(window) if ignore_case else window
            found = sorted(
                (end - length + 1, kw) for end, (length, kw) in automaton.iter(haystack) if end - length < core - 1
            )
            prev = 0
            for s, kw in found:
                line += window.count("\n", prev, s)
                prev = s
                e = s + len(kw)
                hits.append(
                    Hit(c0 + s, c0 + e, line, window[s:e], _snip(window, s, e, snippet), kw, (), doc, view.name)
                )
                if max_hits is not None and len(hits) >= max_hits:
                    return hits
    return hits


def _keyword_prefilter(keys: list[str]) -> Any:
    """An RE2 alternation of the keywords: its DFA skips text that holds none (None if too big)."""
    pattern = "|".join(re2.escape(k) for k in keys).encode("utf-8")
    try:
        compiled = re2.compile(pattern, re2.UNICODE, 64 << 20)
    except (ValueError, re2.error):
        return None
    return None if isinstance(compiled, re2.FallbackPattern) else compiled


def _ac_windows(view: TextView, longest: int) -> Iterator[tuple[int, str, int, int]]:
    """(char offset, text, core length, line at the start): the whole view, window by window."""
    line = 1
    for c0, window, core in view._char_windows(_AC_WINDOW, longest - 1):
        yield c0, window, core, line
        line += window.count("\n", 0, core)


def _candidate_regions(prefilter: Any, view: TextView, longest: int) -> Iterator[tuple[int, str, int, int]]:
    """Like _ac_windows, but only around the prefilter's matches. Every occurrence of a keyword
    overlaps one of those (leftmost) matches, so padding them by the longest keyword loses none."""
    buf, lo, hi = view._store.buf, view._b0, view._b1
    pad = 4 * longest  # bytes: at least `longest` characters
    cursor = _Cursor(view)

    def piece(b0: int, b1: int) -> tuple[int, str, int, int]:
        b0, b1 = _char_start(buf, b0), b1 if b1 == hi else _char_start(buf, b1)
        c0, line = cursor.at(b0)
        window = view._store.decode(b0, b1)
        return c0, window, len(window), line

    region: list[int] | None = None
    for m in prefilter.finditer(memoryview(buf)[lo:hi]):
        start, end = max(lo, lo + m.start() - pad), min(hi, lo + m.end() + pad)
        if region is not None and start <= region[1]:
            region[1] = end
            continue
        if region is not None:
            yield piece(*region)
        region = [start, end]
    if region is not None:
        yield piece(*region)


def _snip(window: str, s: int, e: int, width: int) -> str:
    """The line around window[s:e], at most `width` characters each side."""
    lo = max(window.rfind("\n", max(0, s - width), s) + 1, s - width, 0)
    hi = window.find("\n", e, e + width)
    return window[lo : hi if hi >= 0 else e + width].rstrip("\r")


# -- RE2 ----------------------------------------------------------------------------------------
def _compile(pattern: str, flags: int, ignore_case: bool) -> Any:
    """An RE2 pattern over UTF-8 bytes; refuses (instead of silently backtracking) what RE2 lacks."""
    if isinstance(pattern, TextView):
        pattern = str(pattern)
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, not {type(pattern).__name__}")
    flags |= re2.UNICODE | (re2.IGNORECASE if ignore_case else 0)
    try:
        compiled = re2.compile(pattern.encode("utf-8"), flags)
    except ValueError:  # pyre2 could only run it with Python's backtracking re
        compiled = None
    if compiled is None or isinstance(compiled, re2.FallbackPattern):
        raise ValueError(
            f"regex {pattern!r} uses a feature RE2 does not support (backreferences, lookaround, "
            r"\W or \S inside [...], huge repeats); rewrite it, or use re on a small str slice"
        )
    return compiled


class _Cursor:
    """Character offsets and line numbers of increasing byte offsets, counting only the gaps."""

    def __init__(self, view: TextView) -> None:
        self.view = view
        self.store = view._store
        self.byte = view._b0
        self.char = 0
        self.line = 1

    def at(self, b: int) -> tuple[int, int]:
        store = self.store
        if b - self.byte > 1 << 16:  # far ahead: jump with the index
            self.char = self.view._rel(b)
            self.line = store.newlines_before(b) - store.newlines_before(self.view._b0) + 1
        else:
            gap = store.decode(self.byte, b)
            self.char += len(gap)
            self.line += gap.count("\n")
        self.byte = b
        return self.char, self.line


def _byte_snip(view: TextView, b0: int, b1: int, width: int) -> str:
    """The line around bytes [b0, b1), at most `width` characters each side (bounded reads)."""
    buf = view._store.buf
    left = buf[max(view._b0, b0 - 4 * width) : b0].decode("utf-8", "ignore")
    right = buf[b1 : min(view._b1, b1 + 4 * width)].decode("utf-8", "ignore")
    mid = buf[b0 : min(b1, b0 + 4 * width)].decode("utf-8", "ignore")
    return (left.rpartition("\n")[2][-width:] + mid + right.partition("\n")[0][:width]).rstrip("\r")


def regex(
    pattern: str,
    text: Any = None,
    *,
    flags: int = 0,
    ignore_case: bool = False,
    max_hits: int | None = 1000,
    snippet: int = 60,
) -> list[Hit]:
    """Matches of an RE2 regex (Python syntax minus backreferences/lookaround), in linear time.

    regex(r"order #(\\d+)", context)[0].groups   # flags: re.I, re.M, re.S as in Python

    RE2 is not Python's `re`; the differences:
    - `$` without re.M matches only at the very end, not before a final "\\n";
    - `\\b` and `\\B` are ASCII-only: no word boundary between "é" and a space (`\\w`, `\\d`, `\\s`
      are Unicode as in re, but `\\W` and `\\S` cannot appear inside [...]);
    - no lookahead/lookbehind (`(?=`, `(?!`, `(?<=`, `(?<!`), no backreferences (`\\1`, `(?P=name)`),
      no possessive quantifiers or atomic groups, repeats up to {1000}: such a pattern raises
      ValueError instead of running slowly;
    - an empty match is never reported right where a non-empty one starts (`"|a"` on "aa").
    """
    compiled = _compile(pattern, flags, ignore_case)
    hits: list[Hit] = []
    for doc, view, _ in _parts(text):
        cursor = _Cursor(view)
        b0, buf = view._b0, view._store.buf
        for m in compiled.finditer(memoryview(buf)[b0 : view._b1]):
            start = b0 + m.start()
            if start < view._b1 and buf[start] & 0xC0 == 0x80:
                continue  # RE2 also reports empty matches inside a multi-byte character
            s, line = cursor.at(start)
            try:
                found = m.group().decode("utf-8")
                groups = tuple(None if g is None else g.decode("utf-8") for g in m.groups())
            except UnicodeDecodeError:
                raise view._store.changed() from None
            snip = _byte_snip(view, b0 + m.start(), b0 + m.end(), snippet)
            hits.append(Hit(s, s + len(found), line, found, snip, None, groups, doc, view.name))
            if max_hits is not None and len(hits) >= max_hits:
                return hits
    return hits


def grep(
    pattern: str,
    text: Any = None,
    context_lines: int = 2,
    *,
    ignore_case: bool = False,
    fixed: bool = False,
    max_hits: int | None = 100,
    max_line_chars: int = 400,
) -> list[GrepHit]:
    """Lines matching an RE2 regex (or a plain string with fixed=True), with lines around them.

    for h in grep("ERROR", context, context_lines=1): print(h)
    """
    compiled = _compile(re2.escape(pattern) if fixed else pattern, re2.MULTILINE, ignore_case)
    hits: list[GrepHit] = []
    for doc, view, _ in _parts(text):
        for hit in _grep_view(compiled, view, doc, context_lines, max_line_chars):
            hits.append(hit)
            if max_hits is not None and len(hits) >= max_hits:
                return hits
    return hits


def _grep_view(compiled: Any, view: TextView, doc: int | None, around: int, width: int) -> Iterator[GrepHit]:
    buf, lo, hi = view._store.buf, view._b0, view._b1
    data = memoryview(buf)[lo:hi]
    cursor = _Cursor(view)
    pos = 0
    while pos < hi - lo:
        m = compiled.search(data, pos)
        if m is None or (lo + m.start() == hi and buf[hi - 1] == 10):
            return  # (an empty match after the final "\n": that is no line, as grep and splitlines say)
        start = buf.rfind(b"\n", lo, lo + m.start()) + 1 or lo
        end = buf.find(b"\n", lo + m.start(), hi)
        end = hi if end < 0 else end
        before, b = [], start
        while len(before) < around and b > lo:
            b = buf.rfind(b"\n", lo, b - 1) + 1 or lo
            before.insert(0, _line_text(buf, b, hi, width))
        after, a = [], end + 1
        while len(after) < around and a < hi:
            after.append(_line_text(buf, a, hi, width))
            a = (buf.find(b"\n", a, hi) + 1) or hi
        s, line = cursor.at(start)
        yield GrepHit(line, s, _line_text(buf, start, hi, width), tuple(before), tuple(after), doc, view.name)
        pos = end - lo + 1


def _line_text(buf: Any, start: int, hi: int, width: int) -> str:
    """The line starting at byte `start`, cut to `width` characters (lines can be huge)."""
    end = buf.find(b"\n", start, hi)
    end = hi if end < 0 else end
    return buf[start : min(end, start + 4 * width)].decode("utf-8", "ignore")[:width].rstrip("\r")


# -- chunking -----------------------------------------------------------------------------------
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
    for _, view, was_str in _parts(text):
        n = len(view)
        out += [_out(view[s : s + size], was_str) for s in range(0, max(n - overlap, 1), step) if n]
    return out


def chunk_lines(text: Any = None, size: int = 1000, overlap: int = 0) -> list[TextView | str]:
    """Pieces of `size` lines ("\\n"-separated, ends kept), overlapping by `overlap` lines.
    Views are not str: join them with "".join(map(str, chunks)).

    for part in chunk_lines(context, 500): ...
    """
    step = _check(size, overlap)
    out: list[TextView | str] = []
    for _, view, was_str in _parts(text):
        if not view:
            continue
        store = view._store
        before = store.newlines_before(view._b0)
        inside = store.newlines_before(view._b1) - before
        total = inside + (store.buf[view._b1 - 1 : view._b1] != b"\n")
        for k in range(0, max(total - overlap, 1), step):
            a = _line_start(view, k, before, inside)
            b = _line_start(view, min(k + size, total), before, inside)
            out.append(_out(view._sub_bytes(a, b), was_str))
    return out


def _line_start(view: TextView, k: int, before: int, inside: int) -> int:
    """Byte offset of line k of `view` (`before`/`inside`: newlines before it and within it)."""
    if k == 0:
        return view._b0
    return view._b1 if k > inside else view._store.line_start(before + k)


def _char_start(buf: Any, b: int) -> int:
    """`b`, moved back to the start of its character (a token may start inside one)."""
    while buf[b] & 0xC0 == 0x80:
        b -= 1
    return b


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
    for _, view, was_str in _parts(text):
        buf = view._store.buf
        spans: list[list[int]] = []  # [byte start, byte end] of each chunk, starts strictly increasing
        pending = array("q")
        for starts in _token_starts(view, enc):
            pending.extend(starts)
            while len(pending) > size:
                _add_span(spans, _char_start(buf, pending[0]), _char_start(buf, pending[size]))
                del pending[:step]
        if len(pending) > overlap or (pending and not spans):
            _add_span(spans, _char_start(buf, pending[0]), view._b1)
        out += [_out(view._sub_bytes(b0, b1), was_str) for b0, b1 in spans]
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
        for _, view, _ in _parts(text)
        for _, window in view._windows(_TOKEN_WINDOW, token_safe=True)
    )


# -- the REPL's copies --------------------------------------------------------------------------
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
