"""The shared Context: str parity, views of views, documents, bad inputs, sharing across processes."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rlm.context.store as ctxstore
from rlm.context import Context, DocumentList, TextView, close
from rlm.errors import ContextError
from tests.conftest import shrink_context_windows

# Multi-byte characters of every UTF-8 length and every line break str.splitlines knows.
ALPHABET = "ab é東😀 \n\r\t\x0b\x0c\x1c\x85\u2028"
texts = st.text(alphabet=ALPHABET, min_size=1, max_size=120)
indices = st.integers(min_value=-150, max_value=150) | st.none()


@pytest.fixture(scope="module", autouse=True)
def tiny_index() -> Iterator[None]:
    """A checkpoint every 5 chars and tiny blocks/windows, so small texts cross every boundary."""
    with pytest.MonkeyPatch.context() as mp:
        shrink_context_windows(mp)
        yield


@settings(deadline=None, max_examples=60)
@given(texts, indices, indices)
def test_slicing_and_indexing_match_str(text: str, a: int | None, b: int | None) -> None:
    ctx = Context.from_value(text)
    assert len(ctx) == len(text)
    assert str(ctx[a:b]) == text[a:b]
    assert len(ctx[a:b]) == len(text[a:b])
    for i in (0, len(text) // 2, -1):
        assert ctx[i] == text[i]
    assert ctx[a:b:2] == text[a:b:2] and ctx[a:b:-3] == text[a:b:-3]
    assert list(ctx) == list(text)


@settings(deadline=None, max_examples=60)
@given(texts, st.text(alphabet=ALPHABET, max_size=3), indices, indices)
def test_search_methods_match_str(text: str, sub: str, a: int | None, b: int | None) -> None:
    ctx = Context.from_value(text)
    for needle in (sub, text[3:5], text[-2:]):
        assert ctx.find(needle, a, b) == text.find(needle, a, b)
        assert ctx.rfind(needle, a, b) == text.rfind(needle, a, b)
        assert ctx.count(needle, a, b) == text.count(needle, a, b)
        assert ctx.startswith(needle, a, b) == text.startswith(needle, a, b)
        assert ctx.endswith(needle, a, b) == text.endswith(needle, a, b)
        assert (needle in ctx) == (needle in text)
    assert ctx.startswith((sub, "zz")) == text.startswith((sub, "zz"))


@settings(deadline=None, max_examples=60)
@given(texts, st.sampled_from([None, " ", "\n", "é東", "\r\n"]))
def test_lines_and_split_match_str(text: str, sep: str | None) -> None:
    ctx = Context.from_value(text)
    assert ctx.splitlines() == text.splitlines()
    assert ctx.splitlines(True) == text.splitlines(True)
    assert list(ctx.lines()) == text.splitlines()
    assert ctx.split(sep) == text.split(sep)
    assert ctx.split(sep, 1) == text.split(sep, 1)


@settings(deadline=None, max_examples=60)
@given(texts, indices, indices, indices, indices)
def test_views_of_views(text: str, a: int | None, b: int | None, c: int | None, d: int | None) -> None:
    ctx = Context.from_value(text)
    view, expected = ctx[a:b][c:d], text[a:b][c:d]
    assert view == expected and str(view) == expected and len(view) == len(expected)
    assert view.splitlines() == expected.splitlines()
    assert view.find("é") == expected.find("é") and view.count("\n") == expected.count("\n")
    again = Context.from_spec(json.loads(json.dumps(view.to_spec())))
    assert again == expected and again._store is view._store  # same mapping in this process


def test_str_operations_and_the_copying_fallback() -> None:
    ctx = Context.from_value("Hello wörld\nsecond")
    assert f"<{ctx[:5]}>" == "<Hello>" and f"{ctx[:5]:>7}" == "  Hello"
    assert ctx[:5] + "!" == "Hello!" and "!" + ctx[:5] == "!Hello" and ctx[:1] + ctx[1:5] == "Hello"
    assert ctx[:5] == "Hello" and ctx[:5] != "hello" and ctx[:5] == ctx[:5] and ctx[:5] == Context.from_value("Hello")
    assert hash(ctx[:5]) == hash("Hello") and {ctx[:5]: 1}["Hello"] == 1
    assert ctx[:5] < "World" and sorted([ctx[6:11], ctx[:5]]) == ["Hello", "wörld"]
    assert ctx.upper() == "HELLO WÖRLD\nSECOND" and ctx[:5].replace("l", "L") == "HeLLo"
    assert ctx.encode() == "Hello wörld\nsecond".encode() and ctx.encode("latin-1")[:11] == b"Hello w\xf6rld"
    assert ctx.index("w") == 6 and ctx.rindex("o") == 15
    with pytest.raises(ValueError, match="substring not found"):
        ctx.index("zzz")
    with pytest.raises(TypeError):
        _ = 3 in ctx
    with pytest.raises(AttributeError):
        ctx.not_a_str_method()  # type: ignore[attr-defined]
    with pytest.raises(IndexError):
        ctx[100]
    with pytest.raises(ValueError, match="empty separator"):
        ctx.split("")
    assert not isinstance(ctx, str) and isinstance(ctx, Context)


def test_repr_never_dumps_a_big_text() -> None:
    ctx = Context.from_value("x" * 10_000 + "tail")
    assert len(repr(ctx)) < 200 and "10,004 chars" in repr(ctx)
    assert repr(ctx[:3]) == repr("xxx")


def test_deep_slices_use_the_index_not_a_scan() -> None:
    """With the real K, a slice far into a multi-byte text is right and costs O(K), not O(n)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ctxstore, "K", 4096)
        mp.setattr(ctxstore, "BLOCK", 1 << 20)
        text = "".join(f"{i}:é東😀\n" for i in range(60_000))
        ctx = Context.from_value(text)
        for a in (0, 1, 4095, 4096, 123_457, len(text) - 9):
            assert str(ctx[a : a + 9]) == text[a : a + 9]
        store = ctx._store
        b = store.byte_of(300_001)
        assert store.char_of(b) == 300_001 and store.newlines_before(b) == text.count("\n", 0, 300_001)
        assert store.line_start(12_345) == len(text[: text.index("12345:")].encode())


def test_documents_from_values() -> None:
    docs = Context.from_value({"a.txt": "alpha", "b.txt": "beta\nbeta", "n": {"k": 1}})
    assert isinstance(docs, DocumentList) and len(docs) == 3
    assert docs[1] == "beta\nbeta" and docs[1].name == "b.txt" and docs["a.txt"] == "alpha"
    assert docs["n"] == '{\n "k": 1\n}'
    assert docs[1][5:] == "beta" and docs[1][5:].name == "b.txt"
    assert docs.names == ["a.txt", "b.txt", "n"] and [d.name for d in docs] == docs.keys()
    assert docs[:2] == ["alpha", "beta\nbeta"] and "alpha" in docs
    assert docs.describe() == {
        "type": "list of 3 documents",
        "total_chars": 25,
        "doc_lengths": [5, 9, 11],
        "names": ["a.txt", "b.txt", "n"],
    }
    records = Context.from_value([{"title": "T1", "text": "one"}, {"id": 7, "body": "two"}, "three", 4])
    assert records.names == ["T1", "7", None, None] and list(records) == ["one", "two", "three", "4"]
    with pytest.raises(KeyError):
        docs["missing"]
    again = Context.from_spec(docs.to_spec())
    assert again == docs and again.names == docs.names


def test_a_list_of_views_stays_zero_copy() -> None:
    ctx = Context.from_value("one two three")
    docs = Context.from_value([ctx[:3], ctx[4:7]])
    assert docs == ["one", "two"] and all(d._store is ctx._store for d in docs)
    assert Context.from_value(ctx) is ctx


def test_files_and_documents_from_paths(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first\nfile")
    (tmp_path / "b.md").write_bytes(b"\xef\xbb\xbfwith BOM")
    one = Context.from_path(tmp_path / "a.txt")
    assert isinstance(one, TextView) and one == "first\nfile" and one.describe()["type"] == "str"
    docs = Context.from_paths([tmp_path / "a.txt", tmp_path / "b.md"])
    assert docs.names == ["a.txt", "b.md"] and docs[1] == "with BOM"  # the BOM is not text
    (tmp_path / "d.json").write_text(json.dumps([{"name": "x", "text": "hello"}]))
    assert Context.from_path(tmp_path / "d.json")["x"] == "hello"
    assert isinstance(Context.from_path(tmp_path / "d.json", documents=False), TextView)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("dir", "is a directory"),
        (b"", "is empty"),
        (b"text\x00\x01\x02", "looks binary"),
        (b"caf\xe9 au lait", r"not valid UTF-8 \(first bad byte at offset 3\).*errors='replace'"),
    ],
)
def test_bad_files_fail_early_and_clearly(tmp_path: Path, content: bytes | str | None, message: str) -> None:
    path = tmp_path / "ctx.txt"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ContextError, match=message):
        Context.from_path(path)


def test_errors_replace_repairs_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9 au lait")
    assert Context.from_path(path, errors="replace") == "caf\ufffd au lait"
    assert Context.from_value(b"caf\xe9", errors="replace") == "caf\ufffd"
    assert Context.from_value("a\ud800b", errors="replace") == "a?b"
    with pytest.raises(ContextError, match="lone surrogate"):
        Context.from_value("a\ud800b")
    with pytest.raises(ValueError, match="errors must be"):
        Context.from_path(path, errors="ignore")


@pytest.mark.parametrize("value", ["", b"", [], {}, ["", ""], b"\x00binary", b"\xff\xfe", 42])
def test_bad_values_fail_early(value: object) -> None:
    with pytest.raises(ContextError):
        Context.from_value(value)


def test_spec_is_shared_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    text = "héllo\n" * 1000 + "東京 end"
    path.write_text(text)
    view = Context.from_path(path)[5995:]
    memory = Context.from_value({"doc": "in memory ✓"})
    code = (
        "import json, sys; from rlm.context import Context; "
        "v, d = (Context.from_spec(s) for s in json.loads(sys.stdin.read())); "
        "print(json.dumps([str(v), len(v), str(d['doc'])]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps([view.to_spec(), memory.to_spec()]),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == [text[5995:], 11, "in memory ✓"]


def test_a_changed_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("one")
    spec = Context.from_path(path).to_spec()
    spec["store"]["token"] = "another-process"  # as a worker would see it
    path.write_text("two!")
    with pytest.raises(ContextError, match="changed since it was opened"):
        Context.from_spec(spec)


def test_pickle_and_close() -> None:
    ctx = Context.from_value("shared text")
    copy = pickle.loads(pickle.dumps(ctx[7:]))
    assert copy == "text" and copy._store is ctx._store
    path = ctx._store.spec()["path"]
    close(ctx)
    assert ctx._store.spec()["token"] not in ctxstore.OPEN_STORES
    assert not os.path.exists(path) or not ctx._store.resources


def test_count_with_a_needle_longer_than_the_scan_window() -> None:
    text = "é東é東 and é東é東é東é東 again é東é東é東é東"  # the needle below is 12 bytes; windows are 8
    assert Context.from_value(text).count("é東é東") == text.count("é東é東")


def _bump_mtime(path: Path) -> None:
    """An edit made later than the load (within one clock tick the mtime alone cannot tell)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.mark.parametrize("edit", ["in place", "truncate", "replace", "delete"])
def test_a_file_changed_during_the_run_is_detected(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "f.txt"
    path.write_text("hello world\n" * 100)
    ctx = Context.from_path(path)
    docs = Context.from_paths([path, tmp_path / "f.txt"])
    ctx.check_unchanged()
    docs.check_unchanged()
    if edit == "in place":
        with path.open("r+b") as f:
            f.seek(50)
            f.write(b"HELLO")
        _bump_mtime(path)
    elif edit == "truncate":
        os.truncate(path, 10)  # reading the lost pages now would be SIGBUS: only the check is safe
    elif edit == "replace":
        (tmp_path / "new.txt").write_text("bye\n")
        os.replace(tmp_path / "new.txt", path)
    else:
        path.unlink()
    for context in (ctx, docs, ctx[5:9]):
        with pytest.raises(ContextError, match="changed while rlm was reading it"):
            context.check_unchanged()
    with pytest.raises(ContextError, match="changed while rlm was reading it"):
        ctx.to_spec()  # no worker or child starts over a changed file
    Context.from_value("in memory").check_unchanged()  # sealed: never changes


def test_bytes_broken_by_an_edit_raise_a_context_error(tmp_path: Path) -> None:
    """An edit that leaves invalid UTF-8 is reported as a change, not a UnicodeDecodeError in model code."""
    path = tmp_path / "f.txt"
    path.write_text("abc\n" * 10_000)
    ascii_ctx = Context.from_path(path)
    (tmp_path / "g.txt").write_text("é東\n" * 10_000)
    wide_ctx = Context.from_path(tmp_path / "g.txt")
    for p in (path, tmp_path / "g.txt"):
        with p.open("r+b") as f:
            f.seek(101)
            f.write(b"\xff\xfe\xc3")
    for action in (
        lambda: str(ascii_ctx[90:110]),
        lambda: ascii_ctx.splitlines(),
        lambda: str(wide_ctx[45:60]),
        lambda: wide_ctx[51],
        lambda: wide_ctx[52:60],
        lambda: list(wide_ctx.lines()),
    ):
        with pytest.raises(ContextError, match="changed while rlm was reading it"):
            action()


def test_a_file_holding_only_a_bom_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(ContextError, match="is empty"):
        Context.from_path(path)
    with pytest.raises(ContextError, match="is empty"):
        Context.from_paths([path])
    with pytest.raises(ContextError, match="is empty"):
        Context.from_value(b"\xef\xbb\xbf")
    with pytest.raises(ContextError, match="is empty"):
        Context.from_stdin_bytes(b"\xef\xbb\xbf")


def test_a_bom_is_stripped_from_files_and_bytes_but_not_from_a_str() -> None:
    assert Context.from_value("\ufeffabc") == "\ufeffabc" and len(Context.from_value("\ufeffabc")) == 4
    assert Context.from_value("\ufeff") == "\ufeff"
    assert Context.from_value(b"\xef\xbb\xbfabc") == "abc"
    assert Context.from_stdin_bytes(b"\xef\xbb\xbfabc") == "abc"
    assert Context.from_value(["\ufeffa"])[0] == "\ufeffa"


def test_a_json_record_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"title": "Report", "text": "the body", "year": 2020}))
    one = Context.from_path(path)
    assert isinstance(one, TextView) and one == "the body" and one.name == "Report"
    assert Context.from_value({"id": 7, "content": "x"}).name == "7"
    named = Context.from_value({"a.txt": "alpha", "b.txt": "beta"})  # a dict of named texts stays a list
    assert isinstance(named, DocumentList) and named.names == ["a.txt", "b.txt"]
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(["x", "y"]).encode())
    assert Context.from_path(tmp_path / "bom.json") == ["x", "y"]


def test_an_unreadable_json_file_says_it_was_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"a": 1,')
    ctx = Context.from_path(path)
    assert ctx == '{"a": 1,' and "not valid JSON" in ctx.describe()["note"]
    assert "plain text" in ctx.describe()["note"]
    again = Context.from_spec(json.loads(json.dumps(ctx.to_spec())))
    assert again.describe() == ctx.describe()
    assert "note" not in ctx[1:].describe() and "note" not in Context.from_value("x").describe()
    with pytest.raises(ContextError, match="not valid JSON"):
        Context.from_path(path, documents=True)


def test_common_str_idioms_work_on_views() -> None:
    ctx = Context.from_value("ab 42 2.5")
    assert ctx[:2] * 2 == "abab" and 2 * ctx[:2] == "abab" and ctx[:2] * 0 == ""
    assert int(ctx[3:5]) == 42 and float(ctx[6:]) == 2.5 and int(Context.from_value(" 7\n")) == 7
    with pytest.raises(ValueError):
        int(ctx[:2])
    with pytest.raises(TypeError):
        _ = ctx[:2] * ctx[:2]
    assert "-".join(map(str, [ctx[:2], ctx[3:5]])) == "ab-42"
