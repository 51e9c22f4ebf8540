"""Search helpers checked against plain Python on random inputs, plus chunking and binding."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import rlm.search as searchmod
from rlm.context import Context, TextView
from rlm.errors import ContextError
from rlm.search import Hit, bind, chunk_chars, chunk_lines, chunk_tokens, count_tokens, grep, regex, search
from rlm.search import chunks as chunks_module
from rlm.search import find as find_module
from rlm.tokens import count_tokens as plain_count_tokens
from tests.conftest import shrink_context_windows

ALPHABET = "abAB é東😀\n\r"
texts = st.text(alphabet=ALPHABET, max_size=150)
words = st.text(alphabet="abAé東", min_size=1, max_size=3)


@pytest.fixture(scope="module", autouse=True)
def tiny_windows() -> Iterator[None]:
    """Tiny index steps and scan windows, so small texts cross every window boundary."""
    with pytest.MonkeyPatch.context() as mp:
        shrink_context_windows(mp)
        mp.setattr(find_module, "_AC_WINDOW", 7)
        mp.setattr(chunks_module, "_TOKEN_WINDOW", 16)
        yield


def occurrences(text: str, keyword: str) -> Iterator[int]:
    i = text.find(keyword)
    while i >= 0:
        yield i
        i = text.find(keyword, i + 1)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


@settings(deadline=None, max_examples=60)
@given(texts, st.lists(words, min_size=1, max_size=5), st.booleans(), st.booleans())
def test_search_finds_every_occurrence(text: str, keywords: list[str], ignore_case: bool, as_view: bool) -> None:
    subject = Context.from_value(text)[0:] if as_view and text else text
    hits = search(keywords, subject, ignore_case=ignore_case, max_hits=None)
    folded = text.lower() if ignore_case else text
    first: dict[str, str] = {}  # keywords equal once folded are reported as the first spelling
    for kw in keywords:
        first.setdefault(kw.lower() if ignore_case else kw, kw)
    expected = {(i, kw) for key, kw in first.items() for i in occurrences(folded, key)}
    assert {(h.start, h.keyword) for h in hits} == expected
    assert [h.start for h in hits] == sorted(h.start for h in hits)
    for h in hits:
        assert h.match == text[h.start : h.end] and h.line == line_of(text, h.start) and h.match in h.snippet


@settings(deadline=None, max_examples=60)
@given(texts, st.sampled_from(["a+b", "[éb]+", "東.", "(a|B)(\\s)", "😀+", "(?i)ab", "a\\r?\\n"]), st.booleans())
def test_regex_matches_python_re(text: str, pattern: str, as_view: bool) -> None:
    subject = Context.from_value(text)[0:] if as_view and text else text
    hits = regex(pattern, subject, max_hits=None)
    expected = [(m.start(), m.end(), m.group(), m.groups()) for m in re.finditer(pattern, text)]
    assert [(h.start, h.end, h.match, h.groups) for h in hits] == expected
    assert [h.line for h in hits] == [line_of(text, s) for s, *_ in expected]


@settings(deadline=None, max_examples=60)
@given(texts, words, st.integers(min_value=0, max_value=2))
def test_grep_matches_lines_like_python(text: str, word: str, around: int) -> None:
    hits = grep(word, text, around, fixed=True, max_hits=None)
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    matching = [i for i, line in enumerate(lines) if word in line]
    assert [h.line for h in hits] == [i + 1 for i in matching]
    for h, i in zip(hits, matching, strict=True):
        assert h.text == lines[i].rstrip("\r")
        assert list(h.before) == [x.rstrip("\r") for x in lines[max(0, i - around) : i]]
        assert list(h.after) == [x.rstrip("\r") for x in lines[i + 1 : i + 1 + around]]
        assert text[h.start :].startswith(lines[i])


@settings(deadline=None, max_examples=60)
@given(texts, st.integers(1, 9), st.integers(0, 8))
def test_chunk_chars_cover_the_text(text: str, size: int, overlap: int) -> None:
    overlap = min(overlap, size - 1)
    chunks = chunk_chars(Context.from_value(text)[0:] if text else text, size, overlap) if text else []
    if not text:
        return
    step = size - overlap
    assert [str(c) for c in chunks] == [text[s : s + size] for s in range(0, max(len(text) - overlap, 1), step)]
    assert all(isinstance(c, TextView) for c in chunks)
    assert chunk_chars(text, size, overlap) == [str(c) for c in chunks]


@settings(deadline=None, max_examples=60)
@given(texts, st.integers(1, 4), st.integers(0, 3))
def test_chunk_lines_cover_the_text(text: str, size: int, overlap: int) -> None:
    overlap = min(overlap, size - 1)
    lines = text.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    step = size - overlap
    expected = ["".join(lines[k : k + size]) for k in range(0, max(len(lines) - overlap, 1), step)] if lines else []
    assert chunk_lines(text, size, overlap) == expected
    if text:
        views = chunk_lines(Context.from_value(text)[0:], size, overlap)
        assert [str(v) for v in views] == expected


@settings(deadline=None, max_examples=60)
@given(st.text(alphabet="ab é東😀\n.,", max_size=200), st.integers(2, 12), st.integers(0, 3))
def test_chunk_tokens_cover_the_text(text: str, size: int, overlap: int) -> None:
    overlap = min(overlap, size - 1)
    chunks = chunk_tokens(text, size, overlap)
    if overlap == 0:
        assert "".join(chunks) == text
    elif text:
        assert text.startswith(chunks[0]) and text.endswith(chunks[-1]) and all(c in text for c in chunks)
    assert all(count_tokens(c) <= size + 2 for c in chunks)


def test_count_tokens_matches_tiktoken_on_views_and_documents() -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chunks_module, "_TOKEN_WINDOW", 1 << 20)
        text = "The quick brown fox. 東京 😀\n" * 50
        docs = Context.from_value([text, text[:40]])
        assert count_tokens(docs[0]) == plain_count_tokens(text)
        assert count_tokens(docs) == plain_count_tokens(text) + plain_count_tokens(text[:40])


def test_documents_carry_their_index_and_name() -> None:
    docs = Context.from_value({"a.txt": "no match here", "b.txt": "one needle\ntwo needle"})
    hits = search("needle", docs)
    assert [(h.doc, h.name, h.line, h.start) for h in hits] == [(1, "b.txt", 1, 4), (1, "b.txt", 2, 15)]
    assert [(h.doc, h.line) for h in grep("two", docs)] == [(1, 2)]
    assert str(grep("two", docs, 1)[0]) == "b.txt:1-one needle\nb.txt:2:two needle"
    assert [str(c) for c in chunk_chars(docs, 6)][:3] == ["no mat", "ch her", "e"]
    assert chunk_chars(docs, 6)[0].name == "a.txt"


def test_max_hits_keeps_the_first_hits_in_order() -> None:
    text = "x y " * 1000
    assert [h.start for h in search(["y", "x"], text, max_hits=3)] == [0, 2, 4]
    assert len(regex("x", text, max_hits=5)) == 5 and len(grep("x", "x\n" * 50, max_hits=7)) == 7


def test_re2_stays_linear_and_refuses_backtracking_features() -> None:
    started = time.perf_counter()
    assert regex(r"(a+)+$", "a" * 100_000 + "b") == []
    assert time.perf_counter() - started < 1.0
    with pytest.raises(ValueError, match="RE2 does not support"):
        regex(r"(a)\1", "aa")
    with pytest.raises(ValueError, match="RE2 does not support"):
        regex(r"a(?=b)", "ab")


def test_hits_are_plain_readable_records() -> None:
    hit = search("b", "a\nb")[0]
    assert isinstance(hit, Hit) and hit["start"] == 2 and hit["line"] == 2
    assert repr(hit) == "Hit(start=2, end=3, line=2, match='b', snippet='b', keyword='b')"
    with pytest.raises(KeyError):
        hit["nope"]
    with pytest.raises(ValueError):
        search(["", ""], "text")
    with pytest.raises(TypeError, match="no text"):
        search("x")


def test_bind_defaults_text_to_the_context() -> None:
    ctx = Context.from_value("alpha beta\ngamma beta\n")
    helpers = bind(ctx)
    assert sorted(helpers) == sorted(searchmod.__all__)
    assert [h.line for h in helpers["search"]("beta")] == [1, 2]
    assert [h.line for h in helpers["grep"]("gamma", context_lines=0)] == [2]
    assert helpers["regex"](r"b\w+", "other beta")[0].start == 6  # an explicit text wins
    assert [str(c) for c in helpers["chunk_lines"](size=1)] == ["alpha beta\n", "gamma beta\n"]
    assert helpers["count_tokens"]() == plain_count_tokens(str(ctx))
    assert helpers["chunk_chars"](size=11)[0] == "alpha beta\n"
    assert [str(c) for c in helpers["chunk_chars"](11, 1)] == ["alpha beta\n", "\ngamma beta", "a\n"]
    assert helpers["grep"]("gamma", 1)[0].before == ("alpha beta",)  # the size-first forms models write
    assert helpers["search"].__doc__ == search.__doc__


# Patterns that can match an empty string, on text with characters of every UTF-8 length.
EMPTY_MATCHING = ["", "x*", "a*", "é*", "b?", "(a|é)*", "東*", "😀*", "[^a]*"]


@settings(deadline=None, max_examples=80)
@given(st.text(alphabet="ab é東😀\n", max_size=40), st.sampled_from(EMPTY_MATCHING), st.booleans())
@example("é", "", False)
@example("é", "x*", True)
def test_regex_empty_matches_stay_on_character_boundaries(text: str, pattern: str, as_view: bool) -> None:
    """RE2 reports empty matches inside a multi-byte character; they are skipped, as re never sees them."""
    subject = Context.from_value(text)[0:] if as_view and text else text
    hits = regex(pattern, subject, max_hits=None)
    expected = [(m.start(), m.end(), m.group()) for m in re.finditer(pattern, text)]
    assert [(h.start, h.end, h.match) for h in hits] == expected
    assert [h.line for h in hits] == [line_of(text, s) for s, *_ in expected]


@settings(deadline=None, max_examples=80)
@given(
    st.text(alphabet="ab é\n\r", max_size=40),
    st.sampled_from(["^$", "^", "$", "a*", "^b", "b$", "é", "x*"]),
    st.integers(min_value=0, max_value=2),
)
@example("a\n", "^$", 0)
def test_grep_regex_matches_lines_like_python(text: str, pattern: str, around: int) -> None:
    """A text ending in "\\n" has no empty line after it (grep and str.splitlines agree)."""
    lines = text.split("\n") if text else []
    if text.endswith("\n"):
        lines.pop()
    matching = [i + 1 for i, line in enumerate(lines) if re.search(pattern, line)]
    assert [h.line for h in grep(pattern, text, around, max_hits=None)] == matching
    if text:
        assert [h.line for h in grep(pattern, Context.from_value(text)[0:], around, max_hits=None)] == matching


def test_grep_finds_no_line_after_the_final_newline() -> None:
    assert grep("^$", "a\n") == []
    assert [h.line for h in grep("^$", "a\n\n")] == [2]
    assert [h.line for h in grep("^$", "a\nb")] == []


@settings(deadline=None, max_examples=80)
@given(st.text(alphabet="😀東é a\n", min_size=1, max_size=40), st.integers(1, 4), st.integers(0, 3))
@example("😀😀😀😀", 1, 0)
@example("😀😀😀😀", 2, 1)
def test_chunk_tokens_are_nonempty_ordered_and_cover(text: str, size: int, overlap: int) -> None:
    """A character that spans several tokens never yields an empty or a repeated chunk."""
    overlap = min(overlap, size - 1)
    views = chunk_tokens(Context.from_value(text)[0:], size, overlap)
    spans = [(v._start, v._stop) for v in views]
    assert all(a < b for a, b in spans)  # non-empty
    assert [a for a, _ in spans] == sorted({a for a, _ in spans})  # strictly increasing starts
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(nxt[0] <= prev[1] for prev, nxt in itertools.pairwise(spans))  # no gap
    if overlap == 0:
        assert "".join(map(str, views)) == text
    assert chunk_tokens(text, size, overlap) == [str(v) for v in views]
    assert chunk_tokens("😀😀😀😀", 1) == ["😀"] * 4


def test_views_join_through_str() -> None:
    """Views are not str, so str.join needs map(str, ...): what the docs and the prompt say."""
    chunks = chunk_chars(Context.from_value("abcdef")[0:], 2)
    assert ",".join(map(str, chunks)) == "ab,cd,ef"
    assert all("map(str" in (f.__doc__ or "") for f in (chunk_chars, chunk_lines, chunk_tokens))


def test_helpers_refuse_a_file_changed_during_the_run(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("alpha beta\n" * 50)
    ctx = Context.from_path(path)
    assert len(search("beta", ctx, max_hits=None)) == 50
    path.write_text("gamma\n")  # shorter: reading the lost pages would be SIGBUS
    for helper in (lambda: search("beta", ctx), lambda: regex("b", ctx[3:]), lambda: grep("a", [ctx])):
        with pytest.raises(ContextError, match="changed while rlm was reading it"):
            helper()
