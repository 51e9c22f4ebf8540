"""What code sees: `Context` and its factories, `TextView` (a read-only str-like range of a store, no copy)
and `DocumentList` (named documents). Every method works over the mapped bytes; see the package
docstring for the str-parity rules and what copies.
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from rlm.context.loaders import ERRORS, WINDOW, bytes_store, encoded, file_store, parse_json, stream_store
from rlm.context.store import OPEN_STORES, Store, memory_store, open_spec_store, write_anonymous
from rlm.errors import ContextError

_COUNT_WINDOW = 256 << 10  # bytes per window copied by count()
_LINE_ENDS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")  # what str.splitlines splits on
_NAME_KEYS = ("name", "title", "id", "path", "filename", "file")
_TEXT_KEYS = ("text", "content", "body", "document", "page_content")


def view_of_str(text: str) -> TextView:
    store = memory_store(text)
    return TextView(store, 0, store.nchars, None)


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
            parsed, problem = parse_json(p)
            if isinstance(parsed, (list, dict)):
                return Context.from_value(parsed, errors=errors)
            if documents:
                raise ContextError(f"{p} {problem}, so it cannot be read as documents")
            note = f"{p.name} {problem}, so it was read as plain text"
        view = _root_view(file_store(p, errors), None)
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
        return DocumentList([_root_view(file_store(p, errors), name) for p, name in zip(paths, names, strict=True)])

    @staticmethod
    def from_value(value: Any, *, errors: str = "strict", name: str | None = None) -> Context:
        """A Context from str, bytes, a list of texts, a dict of named texts, or a Context (as is).

        The text is written once to a sealed anonymous file, so workers can map it too."""
        if isinstance(value, Context):
            return value
        if errors not in ERRORS:
            raise ValueError(f"errors must be one of {ERRORS}, not {errors!r}")
        if isinstance(value, str):
            return _root_view(write_anonymous(encoded([value], errors), name or "str"), name, bom=False)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return _root_view(bytes_store(value, errors, name or "bytes"), name)
        if isinstance(value, (Mapping, list, tuple)):
            if value and isinstance(value, (list, tuple)) and all(isinstance(v, TextView) for v in value):
                return DocumentList(list(value))  # views of a shared text stay views: no copy
            if isinstance(value, Mapping):  # one record, not a dict of named texts
                record_name, record_text = _record(value)
                if record_name is not None and record_text is not None:
                    store = write_anonymous(encoded([record_text], errors), record_name)
                    return _root_view(store, name or record_name, bom=False)
            docs = _documents_of(value)
            if not any(text for _, text in docs):
                raise ContextError("context is an empty list of documents (or every document is empty)")
            store = write_anonymous(encoded([t for _, t in docs], errors), "documents")
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
        return _root_view(bytes_store(data, errors, "stdin"), None)

    @staticmethod
    def from_stream(stream: BinaryIO, *, errors: str = "strict") -> Context:
        """A binary stream such as `sys.stdin.buffer`, read once straight into the context's store."""
        return _root_view(stream_store(stream, errors, "stdin"), None)

    @staticmethod
    def from_spec(spec: Mapping[str, Any]) -> Context:
        """Rebuild a context from `to_spec()` in any process: maps the same bytes, copies nothing."""
        kind = spec.get("kind")
        if kind == "view":
            store = open_spec_store(spec["store"])
            view = TextView(store, spec["start"], spec["stop"], spec.get("name"))
            view._note = spec.get("note")
            return view
        if kind == "documents":
            stores = [open_spec_store(s) for s in spec["stores"]]
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


def _root_view(store: Store, name: str | None, *, bom: bool = True) -> TextView:
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

    def __init__(self, store: Store, start: int, stop: int, name: str | None) -> None:
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

    def _windows(self, size: int = WINDOW, *, token_safe: bool = False) -> Iterator[tuple[int, str]]:
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
        stores: list[Store] = []
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
            OPEN_STORES.pop(store.source["token"], None)
        store.close()
