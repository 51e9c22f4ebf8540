"""Finding matches: `search` (Aho-Corasick, any number of keywords in one pass), `regex` and `grep` (RE2:
linear time, run over the mapped bytes without copying them)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ahocorasick
import re2

from rlm.context import TextView
from rlm.search.hits import GrepHit, Hit
from rlm.search.inputs import char_start, parts

_AC_WINDOW = 4 << 20  # characters per Aho-Corasick window


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
    for doc, view, _ in parts(text):
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
        b0, b1 = char_start(buf, b0), b1 if b1 == hi else char_start(buf, b1)
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
    for doc, view, _ in parts(text):
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
    for doc, view, _ in parts(text):
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
