"""The str behaviour of a view: a character range of a store that reads like a read-only str without
copying it (the rules, and what copies, are in the package docstring). views.py makes this range a
context; rlm.search reads the range's bytes through its internal helpers.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import Any, Self

from rlm.context.loaders import WINDOW
from rlm.context.store import Store

_COUNT_WINDOW = 256 << 10  # bytes per window copied by count()
_LINE_ENDS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")  # what str.splitlines splits on


def _needle(sub: Any, what: str = "must be str") -> bytes | None:
    """UTF-8 bytes to look for, None if `sub` cannot occur in valid UTF-8 (a lone surrogate)."""
    if isinstance(sub, TextRange):
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


class TextRange:
    """Characters [start, stop) of a store, as a read-only str; slices are ranges of the same class."""

    __slots__ = ("_b0", "_b1", "_name", "_start", "_stop", "_store", "_text")

    def __init__(self, store: Store, start: int, stop: int, name: str | None) -> None:
        self._store = store
        self._start, self._stop = start, stop
        self._b0, self._b1 = store.byte_of(start), store.byte_of(stop)
        self._name = name
        self._text: str | None = None

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

    def _sub_bytes(self, b0: int, b1: int) -> Self:
        store = self._store
        return type(self)(store, store.char_of(b0), store.char_of(b1), self._name)

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

    def __getitem__(self, key: int | slice) -> Self | str:
        n = len(self)
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return type(self)(self._store, self._start + start, self._start + max(start, stop), self._name)
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
        if isinstance(other, TextRange):
            if other._store is self._store and (other._start, other._stop) == (self._start, self._stop):
                return True
            return len(self) == len(other) and self.encode() == other.encode()
        if isinstance(other, str):
            return len(self) == len(other) and self.encode() == other.encode("utf-8", "surrogatepass")
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    def __lt__(self, other: object) -> bool:
        return str(self) < str(other) if isinstance(other, (str, TextRange)) else NotImplemented

    def __le__(self, other: object) -> bool:
        return str(self) <= str(other) if isinstance(other, (str, TextRange)) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return str(self) > str(other) if isinstance(other, (str, TextRange)) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return str(self) >= str(other) if isinstance(other, (str, TextRange)) else NotImplemented

    def __add__(self, other: object) -> str:
        return str(self) + str(other) if isinstance(other, (str, TextRange)) else NotImplemented

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


def _strip_line_end(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    return line[:-1] if line and line[-1] in _LINE_ENDS else line
