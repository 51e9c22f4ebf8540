"""The shared context: one mmap-backed UTF-8 text (or list of documents) for the whole RLM tree.

An RLM exists to read contexts far larger than a prompt, so the text is never copied per REPL or per
child: the user's file is mmapped read-only (bytes or str given by a Python caller are written once to
an anonymous, sealed memfd and mmapped the same way). Every view (a slice, a document, a chunk) is a
character range over that one mapping. `to_spec()` names the file plus a range; `Context.from_spec()`
in a worker process mmaps the same file, so 32 REPLs over a 1 GB file share one copy in the page cache.

Index and complexity. Loading a text validates it and builds, in one pass, a checkpoint table: for
every K = 4096th character, its byte offset and the number of newlines before it (16 bytes per K
characters, i.e. 4 MB per GB of ASCII). The owner writes the table to a memfd that workers mmap, so
`from_spec` is O(1). Character -> byte is then O(1) table lookup + decoding at most 4K characters;
byte -> character and line numbers are O(log n) bisection + the same local work; pure-ASCII texts skip
all of it (characters are bytes). So `len` is O(1), `ctx[i:j]` is O(log n + K) and makes no copy.

str-parity rules (what REPL code sees). A text view is not a `str` subclass, but behaves like a
read-only str: `len`, `ctx[i]`, `ctx[i:j]` (a view, no copy), `in`, `find`/`rfind`/`index`/`count`,
`startswith`/`endswith`, `==`/`hash`/ordering with str, `+` and f-strings, `str(ctx)` (the real
str, materialised once and cached on that view), `splitlines()`, `split()`, `lines()` (a lazy line
iterator) and `encode()`. Searching methods run over the mapped bytes without copying it. What copies:
`str(view)`, f-strings and `+` (the whole view), `splitlines()`/`split()` (a list the size of the
view), a slice with a step, `hash`/`<`, and any other str method (`upper`, `replace`, `strip`, ...),
which is forwarded to `str(view)`. So slice or chunk first, and use `search`/`regex`/`grep`, `lines()`
or `count` on the whole context. `isinstance(ctx, str)` is False: where a library insists on a real
str (`re`, `json`), pass `str(view)` of a slice. Line numbers count "\n" (as grep does). A list of
documents behaves like a list: `len` is the number of documents, `ctx[i]` or `ctx["name"]` is a
document view with `.name`, and iteration yields the documents. Views are not str, so `str.join`
refuses them: `"\\n".join(map(str, chunks))`. `view * n`, `int(view)` and `float(view)` work as on str.

The file must not change during a run. A mapped file is read in place, so an edit shows through:
an in-place edit gives wrong counts or invalid UTF-8, and a file that shrinks kills the process with
SIGBUS on the next read of a lost page (a signal Python cannot catch). rlm detects a change (size,
mtime, inode) cheaply, not per access: `check_unchanged()` (the engine calls it at checkpoints such
as before each cell), `to_spec()` and `from_spec()` raise ContextError("... changed while rlm was
reading it ..."), and so does any view method that meets bytes that no longer decode. Texts given
as str or bytes live in a sealed memfd and cannot change. Reading a file's bytes leaves a leading
UTF-8 byte-order mark out of the text (files, stdin, bytes); a str is taken exactly as given.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import fcntl
import json
import mmap
import os
import secrets
import stat
import tempfile
import weakref
from array import array
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from rlm.errors import ContextError

K = 4096  # characters between two index checkpoints
_BLOCK = 1 << 20  # bytes per step while indexing
_WINDOW = 4 << 20  # bytes per window while scanning (lines, split)
_COUNT_WINDOW = 256 << 10  # bytes per window copied by count()
_BINARY_PROBE = 8192  # a NUL byte in the first bytes means "binary"
_LINE_ENDS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")  # what str.splitlines splits on
_ERRORS = ("strict", "replace")
_NAME_KEYS = ("name", "title", "id", "path", "filename", "file")
_TEXT_KEYS = ("text", "content", "body", "document", "page_content")
_OPEN: weakref.WeakValueDictionary[str, _Store] = weakref.WeakValueDictionary()  # token -> store


class _BadUtf8(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


def _build_index(buf: Any) -> tuple[array, int, bool, int]:
    """Checkpoints every K chars (byte offset, newlines before); validates UTF-8 on the way."""
    n = len(buf)
    cp_byte, cp_line = array("q", [0]), array("q", [0])
    chars = lines = pos = 0
    all_ascii = True
    while pos < n:
        end = min(pos + _BLOCK, n)
        while pos < end < n and buf[end] & 0xC0 == 0x80:  # never cut a character
            end -= 1
        if end == pos:
            end = min(pos + _BLOCK, n)  # only continuation bytes: let decoding report it
        block = buf[pos:end]
        first = (chars // K + 1) * K
        if block.isascii():
            count, prev = len(block), 0
            for c in range(first, chars + count + 1, K):
                off = c - chars
                lines += block.count(b"\n", prev, off)
                prev = off
                cp_byte.append(pos + off)
                cp_line.append(lines)
            lines += block.count(b"\n", prev)
        else:
            all_ascii = False
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _BadUtf8(pos + exc.start) from None
            count, prev, boff = len(text), 0, pos
            for c in range(first, chars + count + 1, K):
                off = c - chars
                boff += len(text[prev:off].encode("utf-8"))
                lines += text.count("\n", prev, off)
                prev = off
                cp_byte.append(boff)
                cp_line.append(lines)
            lines += text.count("\n", prev)
        chars += count
        pos = end
    cp_byte.extend(cp_line)
    return cp_byte, chars, all_ascii, K


def _anonymous_file(label: str) -> tuple[int, str, list[Any]]:
    """An fd another process can open by path: a memfd (Linux) or an unlinked-at-close temp file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(f"rlm-{label[:40]}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        return fd, f"/proc/{os.getpid()}/fd/{fd}", [fd]
    fd, path = tempfile.mkstemp(prefix="rlm-context-")
    return fd, path, [fd, path]


def _seal(fd: int) -> None:
    """Make a memfd immutable so every process can trust it never changes."""
    if hasattr(fcntl, "F_ADD_SEALS"):
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        with contextlib.suppress(OSError):  # a temp file (no memfd) cannot be sealed
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)


def _release(resources: list[Any]) -> None:
    for item in resources:
        if isinstance(item, memoryview):
            item.release()
        elif isinstance(item, mmap.mmap):
            with contextlib.suppress(BufferError):  # still exported: freed when the last user goes
                item.close()
        elif isinstance(item, int):
            with contextlib.suppress(OSError):
                os.close(item)
        else:
            with contextlib.suppress(OSError):
                os.unlink(item)
    resources.clear()


class _Store:
    """Immutable valid UTF-8 bytes plus the checkpoint index; one per text per process."""

    __slots__ = (
        "__weakref__",
        "_source",
        "ascii",
        "buf",
        "close",
        "cp",
        "k",
        "label",
        "m",
        "nbytes",
        "nchars",
        "resources",
    )

    def __init__(
        self, buf: Any, index: tuple[Any, int, bool, int], label: str, resources: list[Any], source: dict | None
    ) -> None:
        self.buf = buf
        self.nbytes = len(buf)
        self.cp, self.nchars, self.ascii, self.k = index
        self.m = len(self.cp) // 2
        self.label = label
        self.resources = resources
        self.close = weakref.finalize(self, _release, resources)
        self.source = source

    @property
    def source(self) -> dict | None:
        """How another process reopens this store (None: process-local); registered by token."""
        return self._source

    @source.setter
    def source(self, value: dict | None) -> None:
        self._source = value
        if value is not None:
            _OPEN[value["token"]] = self

    # -- index lookups -------------------------------------------------------------------------
    def byte_of(self, c: int) -> int:
        """Byte offset of character `c`: a table lookup plus decoding under K characters."""
        if self.ascii:
            return c
        j, r = divmod(c, self.k)
        b = self.cp[j]
        if r == 0:
            return b
        try:
            head = codecs.utf_8_decode(self.buf[b : b + 4 * r], "strict", False)[0]
        except UnicodeDecodeError:
            raise self.changed() from None
        return b + len(head[:r].encode("utf-8"))

    def _checkpoint(self, b: int) -> int:
        if self.ascii:
            return min(b // self.k, self.m - 1)
        return bisect.bisect_right(self.cp, b, 0, self.m) - 1

    def char_of(self, b: int) -> int:
        """Character index of byte offset `b` (which must start a character)."""
        if self.ascii:
            return b
        j = self._checkpoint(b)
        return j * self.k + len(self.decode(self.cp[j], b))

    def newlines_before(self, b: int) -> int:
        j = self._checkpoint(b)
        return self.cp[self.m + j] + self.buf[self.cp[j] : b].count(b"\n")

    def line_start(self, line: int) -> int:
        """Byte offset just after the `line`-th newline (0 for line 0); the line must exist."""
        if line == 0:
            return 0
        j = bisect.bisect_left(self.cp, line, self.m, 2 * self.m) - self.m - 1
        pos = self.cp[j]
        for _ in range(line - self.cp[self.m + j]):
            pos = self.buf.find(b"\n", pos) + 1
        return pos

    def decode(self, b0: int, b1: int) -> str:
        try:
            return str(memoryview(self.buf)[b0:b1], "utf-8")
        except UnicodeDecodeError:
            raise self.changed() from None

    def char_at(self, b: int) -> str:
        """The character starting at byte `b`."""
        try:
            return codecs.utf_8_decode(self.buf[b : b + 4], "strict", False)[0][0]
        except (UnicodeDecodeError, IndexError):
            raise self.changed() from None

    # -- the file must not change ----------------------------------------------------------------
    def changed(self) -> ContextError:
        """The error for bytes that no longer are what was loaded (the mapped file was edited)."""
        what = f"context file {self.label}" if self._source and self._source.get("stat") else "the context"
        return ContextError(
            f"{what} changed while rlm was reading it; a context file must not change during a run: "
            "leave it alone (or copy it first) and start the run again"
        )

    def check(self) -> None:
        """Raise `changed()` if the mapped file's size, mtime or inode differ from when it was loaded
        (one stat; texts in a sealed memfd cannot change)."""
        source = self._source
        if not source or not source.get("stat"):
            return
        try:
            st = os.stat(source["path"])
        except (FileNotFoundError, NotADirectoryError):
            raise self.changed() from None  # deleted or moved: no worker can map it again
        except OSError:
            return  # cannot look (permissions): nothing says it changed
        if st.st_size != source["size"] or [st.st_mtime_ns, st.st_ino] != source["stat"]:
            raise self.changed()

    # -- sharing ---------------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """How another process maps these same bytes (the index is written to a memfd on first use)."""
        if self._source is None:
            raise ContextError("this text lives only in this process; use Context.from_value() to share it")
        self.check()
        if "index" not in self._source:
            fd, path, resources = _anonymous_file("index")
            with open(fd, "wb", closefd=False) as out:
                out.write(memoryview(self.cp).cast("B"))
            _seal(fd)
            self.resources.extend(resources)
            self._source["index"] = path
        return dict(self._source)


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


def _write_anonymous(pieces: Iterable[bytes], label: str) -> _Store:
    """Write bytes to a sealed anonymous file, mmap it and index it: the in-memory way to share."""
    fd, path, resources = _anonymous_file(label)
    try:
        with open(fd, "wb", closefd=False) as out:
            for piece in pieces:
                out.write(piece)
        size = os.fstat(fd).st_size
        if size == 0:
            raise ContextError("context is empty: there is nothing to read")
        _seal(fd)
        buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        resources.insert(0, buf)
        index = _build_index(buf)
    except BaseException:
        _release(resources)
        raise
    return _Store(buf, index, label, resources, _source(path, size, None, index, label))


def _source(path: str, size: int, fingerprint: list[int] | None, index: tuple[Any, int, bool, int], label: str) -> dict:
    return {
        "token": secrets.token_hex(8),
        "path": path,
        "size": size,
        "stat": fingerprint,
        "nchars": index[1],
        "ascii": index[2],
        "k": index[3],
        "label": label,
    }


def _repaired(buf: Any, label: str) -> _Store:
    """errors='replace': a repaired copy (bad bytes -> U+FFFD) in an anonymous file."""

    def pieces() -> Iterator[bytes]:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        for p in range(0, len(buf), _BLOCK):
            yield decoder.decode(buf[p : p + _BLOCK]).encode("utf-8")
        yield decoder.decode(b"", final=True).encode("utf-8")

    return _write_anonymous(pieces(), label)


def _file_store(path: str | os.PathLike[str], errors: str) -> _Store:
    if errors not in _ERRORS:
        raise ValueError(f"errors must be one of {_ERRORS}, not {errors!r}")
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
        index = _build_index(buf)
    except _BadUtf8 as bad:
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
    source = _source(str(p.resolve()), st.st_size, [st.st_mtime_ns, st.st_ino], index, label)
    return _Store(buf, index, label, [buf], source)


def _directory_message(label: str) -> str:
    return (
        f"context path {label} is a directory, not a file; pass it as a pathlib.Path to RLM.query (or --context DIR): "
        "its text files become a list of documents"
    )


def _bytes_store(data: bytes | bytearray | memoryview, errors: str, label: str) -> _Store:
    if errors not in _ERRORS:
        raise ValueError(f"errors must be one of {_ERRORS}, not {errors!r}")
    data = bytes(data)
    _check_text(data, "context")
    try:
        return _write_anonymous([data], label)
    except _BadUtf8 as bad:
        if errors == "strict":
            raise _not_utf8("context", bad.offset) from None
        return _repaired(data, label)


def _stream_store(stream: BinaryIO, errors: str, label: str) -> _Store:
    """A stream (stdin) copied window by window into a sealed anonymous file: the file is the only
    copy, where reading the stream whole first would hold the context twice."""
    if errors not in _ERRORS:
        raise ValueError(f"errors must be one of {_ERRORS}, not {errors!r}")
    fd, path, resources = _anonymous_file(label)
    try:
        with open(fd, "wb", closefd=False) as out:
            while piece := stream.read(_WINDOW):
                out.write(piece)
        size = os.fstat(fd).st_size
        if size == 0:
            raise ContextError("context is empty: there is nothing to read")
        _seal(fd)
        buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        resources.insert(0, buf)
        _check_text(buf, "context")
        try:
            index = _build_index(buf)
        except _BadUtf8 as bad:
            if errors == "strict":
                raise _not_utf8("context", bad.offset) from None
            repaired = _repaired(buf, label)
            _release(resources)
            return repaired
    except BaseException:
        _release(resources)
        raise
    return _Store(buf, index, label, resources, _source(path, size, None, index, label))


def _encoded(texts: Iterable[str], errors: str) -> Iterator[bytes]:
    """UTF-8 of `texts` in bounded pieces (lone surrogates: an error, or '?' with errors='replace')."""
    for text in texts:
        for p in range(0, len(text), _WINDOW):
            try:
                yield text[p : p + _WINDOW].encode("utf-8", errors)
            except UnicodeEncodeError as exc:
                raise ContextError(
                    f"context text has a lone surrogate at character {p + exc.start}; "
                    "pass errors='replace' to replace it"
                ) from None


def _memory_store(text: str) -> _Store:
    """A process-local store for a str given to a search helper (never shared, so no memfd)."""
    data = text.encode("utf-8", "replace")
    return _Store(data, _build_index(data), "<str>", [], None)


def _view_of_str(text: str) -> TextView:
    store = _memory_store(text)
    return TextView(store, 0, store.nchars, None)


def _open_spec_store(spec: Mapping[str, Any]) -> _Store:
    """The store a spec names: the one already open in this process, or a fresh mmap of its file."""
    store = _OPEN.get(spec["token"])
    if store is not None:
        store.check()
        return store
    label = spec.get("label", spec["path"])
    resources: list[Any] = []
    try:
        fd = os.open(spec["path"], os.O_RDONLY)
        try:
            st = os.fstat(fd)
            fingerprint = spec.get("stat")
            if st.st_size != spec["size"] or (fingerprint and [st.st_mtime_ns, st.st_ino] != fingerprint):
                raise ContextError(f"context file {label} changed since it was opened; start the run again")
            buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        resources.append(buf)
        with open(spec["index"], "rb") as f:
            index_map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        _release(resources)
        raise ContextError(f"cannot open the shared context {label}: {exc.strerror or exc}") from None
    raw = memoryview(index_map)
    cp = raw.cast("q")
    resources[:0] = [cp, raw, index_map]  # release the views before closing the maps
    return _Store(buf, (cp, spec["nchars"], spec["ascii"], spec["k"]), label, resources, dict(spec))


def _record(item: Mapping[Any, Any]) -> tuple[str | None, str | None]:
    """(name, text) of a JSON-ish record such as {"title": ..., "text": ...}; None where a field is missing."""
    name = next((str(item[k]) for k in _NAME_KEYS if isinstance(item.get(k), (str, int, float))), None)
    text = next((item[k] for k in _TEXT_KEYS if isinstance(item.get(k), str)), None)
    return name, text


def _documents_of(value: Mapping[Any, Any] | Iterable[Any]) -> list[tuple[str | None, str]]:
    """(name, text) pairs of a dict of texts or a JSON-ish list (str, or dicts with a text field)."""
    if isinstance(value, Mapping):
        return [(str(k), v if isinstance(v, str) else _as_json(v)) for k, v in value.items()]
    docs = []
    for item in value:
        if isinstance(item, TextView):
            docs.append((item.name, str(item)))
        elif isinstance(item, str):
            docs.append((None, item))
        elif isinstance(item, Mapping):
            name, text = _record(item)
            docs.append((name, _as_json(item) if text is None else text))
        else:
            docs.append((None, _as_json(item)))
    return docs


def _as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


class Context:
    """A text or a list of documents that every REPL and child shares; build one with the factories."""

    __slots__ = ()

    @staticmethod
    def from_path(path: str | os.PathLike[str], *, errors: str = "strict", documents: bool | None = None) -> Context:
        """mmap a UTF-8 file (no copy). A .json/.jsonl array or object becomes a list of documents
        unless `documents=False` (an object that looks like one record, {"title": ..., "text": ...},
        is one named text); a .json file that does not parse is read as plain text, and `describe()`
        says so in "note". errors='replace' turns invalid UTF-8 into U+FFFD (in a copy)."""
        p = Path(path)
        note = None
        if documents is not False and p.suffix.lower() in (".json", ".jsonl"):
            parsed, problem = _parse_json(p)
            if isinstance(parsed, (list, dict)):
                return Context.from_value(parsed, errors=errors)
            if documents:
                raise ContextError(f"{p} {problem}, so it cannot be read as documents")
            note = f"{p.name} {problem}, so it was read as plain text"
        view = _root_view(_file_store(p, errors), None)
        view._note = note
        return view

    @staticmethod
    def from_paths(
        paths: Iterable[str | os.PathLike[str]], *, errors: str = "strict", names: list[str] | None = None
    ) -> DocumentList:
        """Several files as a list of documents, each mmapped and named by `names` or by its file name.
        `rlm.gather.gather` turns folders and globs into such files and names."""
        paths = [Path(p) for p in paths]
        if not paths:
            raise ContextError("no context files given")
        if names is None:
            names = [p.name for p in paths]
            if len(set(names)) < len(names):
                names = [str(p) for p in paths]
        return DocumentList([_root_view(_file_store(p, errors), name) for p, name in zip(paths, names, strict=True)])

    @staticmethod
    def from_value(value: Any, *, errors: str = "strict", name: str | None = None) -> Context:
        """A Context from str, bytes, a list of texts, a dict of named texts, or a Context (as is).

        The text is written once to a sealed anonymous file, so workers can map it too."""
        if isinstance(value, Context):
            return value
        if errors not in _ERRORS:
            raise ValueError(f"errors must be one of {_ERRORS}, not {errors!r}")
        if isinstance(value, str):
            return _root_view(_write_anonymous(_encoded([value], errors), name or "str"), name, bom=False)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return _root_view(_bytes_store(value, errors, name or "bytes"), name)
        if isinstance(value, (Mapping, list, tuple)):
            if value and isinstance(value, (list, tuple)) and all(isinstance(v, TextView) for v in value):
                return DocumentList(list(value))  # views of a shared text stay views: no copy
            if isinstance(value, Mapping):  # one record, not a dict of named texts
                record_name, record_text = _record(value)
                if record_name is not None and record_text is not None:
                    store = _write_anonymous(_encoded([record_text], errors), record_name)
                    return _root_view(store, name or record_name, bom=False)
            docs = _documents_of(value)
            if not any(text for _, text in docs):
                raise ContextError("context is an empty list of documents (or every document is empty)")
            store = _write_anonymous(_encoded([t for _, t in docs], errors), "documents")
            views, start = [], 0
            for doc_name, text in docs:
                views.append(TextView(store, start, start + len(text), doc_name))
                start += len(text)
            return DocumentList(views)
        raise ContextError(
            f"cannot use a {type(value).__name__} as context; pass a str, bytes, a list of str, or a dict of named str"
        )

    @staticmethod
    def from_stdin_bytes(data: bytes, *, errors: str = "strict") -> Context:
        """Bytes read from standard input (same checks as a file)."""
        return _root_view(_bytes_store(data, errors, "stdin"), None)

    @staticmethod
    def from_stream(stream: BinaryIO, *, errors: str = "strict") -> Context:
        """A binary stream such as `sys.stdin.buffer`, read once straight into the context's store."""
        return _root_view(_stream_store(stream, errors, "stdin"), None)

    @staticmethod
    def from_spec(spec: Mapping[str, Any]) -> Context:
        """Rebuild a context from `to_spec()` in any process: maps the same bytes, copies nothing."""
        kind = spec.get("kind")
        if kind == "view":
            store = _open_spec_store(spec["store"])
            view = TextView(store, spec["start"], spec["stop"], spec.get("name"))
            view._note = spec.get("note")
            return view
        if kind == "documents":
            stores = [_open_spec_store(s) for s in spec["stores"]]
            return DocumentList([TextView(stores[i], a, b, n) for i, a, b, n in spec["docs"]])
        raise ContextError(f"not a context spec: kind={kind!r}")

    def to_spec(self) -> dict[str, Any]:
        """JSON-able description another process turns back into this context with `from_spec`."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the system prompt says about the context (never its body)."""
        raise NotImplementedError

    def check_unchanged(self) -> None:
        """Raise ContextError if a file behind this context changed since it was loaded (one stat
        per file: call it at checkpoints, e.g. before each REPL cell, never per access)."""
        raise NotImplementedError

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        return Context.from_spec, (self.to_spec(),)


def _parse_json(p: Path) -> tuple[Any, str]:
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


def _root_view(store: _Store, name: str | None, *, bom: bool = True) -> TextView:
    """The whole store, minus a UTF-8 byte-order mark if `bom` (bytes from a file, stdin or a caller;
    never for a str, whose U+FEFF is the caller's). Refuses a text that holds only the mark."""
    start = 1 if bom and store.buf[:3] == codecs.BOM_UTF8 else 0
    if start == store.nchars:
        store.close()
        what = f"context file {store.label}" if store.source and store.source.get("stat") else "context"
        raise ContextError(f"{what} is empty (only a byte-order mark): there is nothing to read")
    return TextView(store, start, store.nchars, name)


def _needle(sub: Any, what: str = "must be str") -> bytes | None:
    """UTF-8 bytes to look for, None if `sub` cannot occur in valid UTF-8 (a lone surrogate)."""
    if isinstance(sub, TextView):
        sub = str(sub)
    if not isinstance(sub, str):
        raise TypeError(f"{what}, not {type(sub).__name__}")
    try:
        return sub.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _has_border(needle: bytes) -> bool:
    """True if two occurrences of `needle` can overlap (a proper prefix equals a suffix)."""
    return any(needle[:k] == needle[-k:] for k in range(1, len(needle)))


class TextView(Context):
    """A character range of a shared text that behaves like a read-only str (rules: module docstring)."""

    __slots__ = ("_b0", "_b1", "_name", "_note", "_start", "_stop", "_store", "_text")

    def __init__(self, store: _Store, start: int, stop: int, name: str | None) -> None:
        self._store = store
        self._start, self._stop = start, stop
        self._b0, self._b1 = store.byte_of(start), store.byte_of(stop)
        self._name = name
        self._text: str | None = None
        self._note: str | None = None  # what describe() must tell (a .json file read as text)

    @property
    def name(self) -> str | None:
        """The document's name (its file name or key), None for an unnamed text."""
        return self._name

    # -- internal helpers (used by rlm.search too) -----------------------------------------------
    def _span(self, start: Any, end: Any) -> tuple[int, int]:
        """str's index rules for optional start/end arguments (start may exceed the length)."""
        n = len(self)
        s = 0 if start is None else start.__index__()
        e = n if end is None else end.__index__()
        if e > n:
            e = n
        elif e < 0:
            e = max(e + n, 0)
        if s < 0:
            s = max(s + n, 0)
        return s, e

    def _bytes_of(self, s: int, e: int) -> tuple[int, int]:
        store = self._store
        return store.byte_of(self._start + s), store.byte_of(self._start + e)

    def _rel(self, b: int) -> int:
        """Character offset in this view of absolute byte offset `b`."""
        return self._store.char_of(b) - self._start

    def _sub_bytes(self, b0: int, b1: int) -> TextView:
        store = self._store
        return TextView(store, store.char_of(b0), store.char_of(b1), self._name)

    def _windows(self, size: int = _WINDOW, *, token_safe: bool = False) -> Iterator[tuple[int, str]]:
        """(absolute byte offset, decoded text) windows of about `size` bytes, cut after a newline
        when there is one (and, if `token_safe`, before a non-space so tokenizers agree)."""
        buf, pos, end = self._store.buf, self._b0, self._b1
        while pos < end:
            cut = min(pos + size, end)
            if cut < end:
                nl = buf.rfind(b"\n", pos, cut)
                while token_safe and nl >= 0 and buf[nl + 1 : nl + 2] in (b" ", b"\t", b"\r", b"\n"):
                    nl = buf.rfind(b"\n", pos, nl)
                if nl >= 0:
                    cut = nl + 1
                else:
                    while buf[cut] & 0xC0 == 0x80:
                        cut -= 1
            yield pos, self._store.decode(pos, cut)
            pos = cut

    def _char_windows(self, size: int, overlap: int) -> Iterator[tuple[int, str, int]]:
        """(char offset, text, core length): windows of `size` chars plus `overlap` chars of the next."""
        n = len(self)
        for c in range(0, n, size):
            b0, b1 = self._bytes_of(c, min(c + size + overlap, n))
            yield c, self._store.decode(b0, b1), min(size, n - c)

    # -- str behaviour ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._stop - self._start

    def __bool__(self) -> bool:
        return self._stop > self._start

    def __str__(self) -> str:
        if self._text is None:
            self._text = self._store.decode(self._b0, self._b1)
        return self._text

    def __repr__(self) -> str:
        n = len(self)
        if n <= 100:
            return repr(str(self))
        head, tail = str(self[:60]), str(self[-20:])
        name = f" {self._name!r}" if self._name else ""
        return f"<text{name} of {n:,} chars: {head!r} … {tail!r}>"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __getitem__(self, key: int | slice) -> TextView | str:
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return TextView(self._store, self._start + start, self._start + max(start, stop), self._name)
            positions = range(start, stop, step)
            if not positions:
                return ""
            lo, hi = min(positions[0], positions[-1]), max(positions[0], positions[-1]) + 1
            return str(self[lo:hi])[::step]
        if not hasattr(key, "__index__"):
            raise TypeError(f"string indices must be integers, not '{type(key).__name__}'")
        i = key.__index__()
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("string index out of range")
        return self._store.char_at(self._store.byte_of(self._start + i))

    def __iter__(self) -> Iterator[str]:
        for _, text in self._windows():
            yield from text

    def __contains__(self, sub: Any) -> bool:
        needle = _needle(sub, "'in <string>' requires string as left operand")
        return needle is not None and self._store.buf.find(needle, self._b0, self._b1) >= 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TextView):
            if other._store is self._store and (other._start, other._stop) == (self._start, self._stop):
                return True
            return len(self) == len(other) and self.encode() == other.encode()
        if isinstance(other, str):
            return len(self) == len(other) and self.encode() == other.encode("utf-8", "surrogatepass")
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: object) -> bool:
        return str(self) < str(other) if isinstance(other, (str, TextView)) else NotImplemented

    def __le__(self, other: object) -> bool:
        return str(self) <= str(other) if isinstance(other, (str, TextView)) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return str(self) > str(other) if isinstance(other, (str, TextView)) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return str(self) >= str(other) if isinstance(other, (str, TextView)) else NotImplemented

    def __add__(self, other: object) -> str:
        return str(self) + str(other) if isinstance(other, (str, TextView)) else NotImplemented

    def __radd__(self, other: object) -> str:
        return other + str(self) if isinstance(other, str) else NotImplemented

    def __mul__(self, n: object) -> str:
        return str(self) * n.__index__() if hasattr(n, "__index__") else NotImplemented

    __rmul__ = __mul__

    def __int__(self) -> int:
        return int(str(self))

    def __float__(self) -> float:
        return float(str(self))

    def __getattr__(self, name: str) -> Any:
        """Every other public str method, on the materialised text (a copy of this view)."""
        if name.startswith("_") or not hasattr(str, name):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return getattr(str(self), name)

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if codecs.lookup(encoding).name == "utf-8":
            return self._store.buf[self._b0 : self._b1]
        return str(self).encode(encoding, errors)

    def find(self, sub: str, start: int | None = None, end: int | None = None) -> int:
        s, e = self._span(start, end)
        needle = _needle(sub)
        if needle is None or e - s < len(sub):
            return -1
        b = self._store.buf.find(needle, *self._bytes_of(s, e))
        return -1 if b < 0 else self._rel(b)

    def rfind(self, sub: str, start: int | None = None, end: int | None = None) -> int:
        s, e = self._span(start, end)
        needle = _needle(sub)
        if needle is None or e - s < len(sub):
            return -1
        b = self._store.buf.rfind(needle, *self._bytes_of(s, e))
        return -1 if b < 0 else self._rel(b)

    def index(self, sub: str, start: int | None = None, end: int | None = None) -> int:
        i = self.find(sub, start, end)
        if i < 0:
            raise ValueError("substring not found")
        return i

    def rindex(self, sub: str, start: int | None = None, end: int | None = None) -> int:
        i = self.rfind(sub, start, end)
        if i < 0:
            raise ValueError("substring not found")
        return i

    def count(self, sub: str, start: int | None = None, end: int | None = None) -> int:
        """Non-overlapping occurrences, like str.count, scanning the mapping in bounded windows."""
        s, e = self._span(start, end)
        needle = _needle(sub)
        if needle is None or e - s < len(sub):
            return 0
        if not needle:
            return e - s + 1
        buf = self._store.buf
        b0, b1 = self._bytes_of(s, e)
        total = 0
        if _has_border(needle):  # occurrences may overlap: walk them one by one
            pos = buf.find(needle, b0, b1)
            while pos >= 0:
                total += 1
                pos = buf.find(needle, pos + len(needle), b1)
            return total
        # a window must hold the needle, and the scan must advance; windows are copied, so they stay
        # small enough that the allocator does not keep megabytes per REPL worker after the count
        window = max(_COUNT_WINDOW, 2 * len(needle))
        while b0 < b1:
            cut = min(b0 + window, b1)
            total += buf[b0:cut].count(needle)
            if cut == b1:
                break
            b0 = cut - len(needle) + 1  # occurrences cannot overlap, so none is counted twice
        return total

    def startswith(self, prefix: str | tuple[str, ...], start: int | None = None, end: int | None = None) -> bool:
        if isinstance(prefix, tuple):
            return any(self.startswith(p, start, end) for p in prefix)
        needle = _needle(prefix, "startswith first arg must be str or a tuple of str")
        s, e = self._span(start, end)
        if needle is None or e - s < len(prefix):
            return False
        b = self._store.byte_of(self._start + s)
        return self._store.buf[b : b + len(needle)] == needle

    def endswith(self, suffix: str | tuple[str, ...], start: int | None = None, end: int | None = None) -> bool:
        if isinstance(suffix, tuple):
            return any(self.endswith(p, start, end) for p in suffix)
        needle = _needle(suffix, "endswith first arg must be str or a tuple of str")
        s, e = self._span(start, end)
        if needle is None or e - s < len(suffix):
            return False
        b = self._store.byte_of(self._start + e)
        return self._store.buf[b - len(needle) : b] == needle

    def lines(self, keepends: bool = False) -> Iterator[str]:
        """The lines, lazily (str.splitlines rules): the way to loop over a big context."""
        carry = ""
        for _, text in self._windows():
            parts = (carry + text).splitlines(True)
            carry = ""
            if parts and (parts[-1][-1] not in _LINE_ENDS or parts[-1][-1] == "\r"):
                carry = parts.pop()  # unfinished line, or a "\r" whose "\n" may come next
            for line in parts:
                yield line if keepends else _strip_line_end(line)
        if carry:
            yield carry if keepends else _strip_line_end(carry)

    def splitlines(self, keepends: bool = False) -> list[str]:
        return list(self.lines(keepends))

    def split(self, sep: str | None = None, maxsplit: int = -1) -> list[str]:
        if maxsplit >= 0:
            return self._store.decode(self._b0, self._b1).split(sep, maxsplit)
        if sep is not None and not _needle(sep, "must be str or None"):
            raise ValueError("empty separator")
        out: list[str] = []
        carry = ""
        for _, text in self._windows():
            parts = (carry + text).split(sep)
            # the last part may continue in the next window: a word cut in two, or text before a sep
            unfinished = sep is not None or not text[-1].isspace()
            carry = parts.pop() if unfinished and parts else ""
            out.extend(parts)
        if carry or sep is not None:
            out.append(carry)
        return out

    # -- sharing ---------------------------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        return {
            "kind": "view",
            "store": self._store.spec(),
            "start": self._start,
            "stop": self._stop,
            "name": self._name,
            **({"note": self._note} if self._note else {}),
        }

    def describe(self) -> dict[str, Any]:
        shape: dict[str, Any] = {
            "type": "str",
            "total_chars": len(self),
            "doc_lengths": [len(self)],
            "names": [self._name] if self._name else [],
        }
        if self._note:
            shape["note"] = self._note
        return shape

    def check_unchanged(self) -> None:
        self._store.check()


def _strip_line_end(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    return line[:-1] if line and line[-1] in _LINE_ENDS else line


class DocumentList(Context):
    """A list of named text views: `len`, `ctx[i]`, `ctx["name"]`, iteration, slicing."""

    __slots__ = ("_docs",)

    def __init__(self, docs: list[TextView]) -> None:
        self._docs = docs

    @property
    def names(self) -> list[str | None]:
        return [d.name for d in self._docs]

    def keys(self) -> list[str | None]:
        return self.names

    def values(self) -> list[TextView]:
        return list(self._docs)

    def items(self) -> list[tuple[str | None, TextView]]:
        return [(d.name, d) for d in self._docs]

    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[TextView]:
        return iter(self._docs)

    def __getitem__(self, key: int | slice | str) -> TextView | DocumentList:
        if isinstance(key, str):
            for doc in self._docs:
                if doc.name == key:
                    return doc
            raise KeyError(key)
        if isinstance(key, slice):
            return DocumentList(self._docs[key])
        return self._docs[key]

    def __contains__(self, item: object) -> bool:
        return any(doc == item for doc in self._docs)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (DocumentList, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a list: unhashable

    def __str__(self) -> str:
        """The documents joined by blank lines (a copy of everything: prefer one document at a time)."""
        return "\n\n".join(str(d) for d in self._docs)

    def __repr__(self) -> str:
        names = ", ".join(repr(n) for n in self.names[:5] if n) or "unnamed"
        more = ", …" if len(self) > 5 else ""
        return f"<list of {len(self)} documents, {sum(map(len, self._docs)):,} chars: {names}{more}>"

    def to_spec(self) -> dict[str, Any]:
        slots: dict[int, int] = {}
        stores: list[_Store] = []
        for doc in self._docs:
            if id(doc._store) not in slots:
                slots[id(doc._store)] = len(stores)
                stores.append(doc._store)
        return {
            "kind": "documents",
            "stores": [s.spec() for s in stores],
            "docs": [[slots[id(d._store)], d._start, d._stop, d.name] for d in self._docs],
        }

    def describe(self) -> dict[str, Any]:
        lengths = [len(d) for d in self._docs]
        return {
            "type": f"list of {len(self)} documents",
            "total_chars": sum(lengths),
            "doc_lengths": lengths[:100],
            "names": [n for n in self.names[:100] if n is not None],
        }

    def check_unchanged(self) -> None:
        for store in {id(d._store): d._store for d in self._docs}.values():
            store.check()


def close(context: Context) -> None:
    """Unmap the stores behind `context` in this process (for the owner, not for REPL code)."""
    views = list(context) if isinstance(context, DocumentList) else [context]
    for view in views:
        store = view._store
        if store.source is not None:
            _OPEN.pop(store.source["token"], None)
        store.close()
