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

from rlm.context.loaders import ERRORS, bytes_store, encoded, file_store, parse_json, stream_store
from rlm.context.store import OPEN_STORES, Store, memory_store, open_spec_store, write_anonymous
from rlm.context.text import TextRange
from rlm.errors import ContextError

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


class TextView(TextRange, Context):
    """A text context: a range of a shared store that reads like a str (text.py), and travels to other
    processes as a spec."""

    __slots__ = ("_note",)

    def __init__(self, store: Store, start: int, stop: int, name: str | None) -> None:
        TextRange.__init__(self, store, start, stop, name)
        self._note: str | None = None  # what describe() must tell (a .json file read as text)

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
