"""What the search helpers return: small frozen records, also readable as `hit["start"]`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


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
