"""The bytes every view reads: a read-only mapping of a file or of a sealed anonymous memfd, with its
checkpoint index (character -> byte offset and newline count every K characters), and the registry
that lets a worker process map the same store again from its spec.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import fcntl
import mmap
import os
import secrets
import tempfile
import weakref
from array import array
from collections.abc import Iterable, Mapping
from typing import Any

from rlm.errors import ContextError

K = 4096  # characters between two index checkpoints
BLOCK = 1 << 20  # bytes per step while indexing
OPEN_STORES: weakref.WeakValueDictionary[str, Store] = weakref.WeakValueDictionary()  # token -> store


class BadUtf8(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


def build_index(buf: Any) -> tuple[array, int, bool, int]:
    """Checkpoints every K chars (byte offset, newlines before); validates UTF-8 on the way."""
    n = len(buf)
    cp_byte, cp_line = array("q", [0]), array("q", [0])
    chars = lines = pos = 0
    all_ascii = True
    while pos < n:
        end = min(pos + BLOCK, n)
        while pos < end < n and buf[end] & 0xC0 == 0x80:  # never cut a character
            end -= 1
        if end == pos:
            end = min(pos + BLOCK, n)  # only continuation bytes: let decoding report it
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
                raise BadUtf8(pos + exc.start) from None
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


def anonymous_file(label: str) -> tuple[int, str, list[Any]]:
    """An fd another process can open by path: a memfd (Linux) or an unlinked-at-close temp file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(f"rlm-{label[:40]}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        return fd, f"/proc/{os.getpid()}/fd/{fd}", [fd]
    fd, path = tempfile.mkstemp(prefix="rlm-context-")
    return fd, path, [fd, path]


def seal(fd: int) -> None:
    """Make a memfd immutable so every process can trust it never changes."""
    if hasattr(fcntl, "F_ADD_SEALS"):
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        with contextlib.suppress(OSError):  # a temp file (no memfd) cannot be sealed
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)


def release(resources: list[Any]) -> None:
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


class Store:
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
        self.close = weakref.finalize(self, release, resources)
        self.source = source

    @property
    def source(self) -> dict | None:
        """How another process reopens this store (None: process-local); registered by token."""
        return self._source

    @source.setter
    def source(self, value: dict | None) -> None:
        self._source = value
        if value is not None:
            OPEN_STORES[value["token"]] = self

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
            fd, path, resources = anonymous_file("index")
            with open(fd, "wb", closefd=False) as out:
                out.write(memoryview(self.cp).cast("B"))
            seal(fd)
            self.resources.extend(resources)
            self._source["index"] = path
        return dict(self._source)


def anonymous_copy(pieces: Iterable[bytes], label: str) -> tuple[Any, str, int, list[Any]]:
    """Bytes written to a sealed anonymous file and mapped, the in-memory way to share a text with
    every worker: (the mapping, the file's path, its size, what to release when done)."""
    fd, path, resources = anonymous_file(label)
    try:
        with open(fd, "wb", closefd=False) as out:
            for piece in pieces:
                out.write(piece)
        size = os.fstat(fd).st_size
        if size == 0:
            raise ContextError("context is empty: there is nothing to read")
        seal(fd)
        buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        resources.insert(0, buf)
    except BaseException:
        release(resources)
        raise
    return buf, path, size, resources


def write_anonymous(pieces: Iterable[bytes], label: str) -> Store:
    """Bytes known to be valid UTF-8, in a sealed anonymous file, mapped and indexed."""
    buf, path, size, resources = anonymous_copy(pieces, label)
    try:
        index = build_index(buf)
    except BaseException:
        release(resources)
        raise
    return Store(buf, index, label, resources, source_spec(path, size, None, index, label))


def source_spec(
    path: str, size: int, fingerprint: list[int] | None, index: tuple[Any, int, bool, int], label: str
) -> dict:
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


def memory_store(text: str) -> Store:
    """A process-local store for a str given to a search helper (never shared, so no memfd)."""
    data = text.encode("utf-8", "replace")
    return Store(data, build_index(data), "<str>", [], None)


def open_spec_store(spec: Mapping[str, Any]) -> Store:
    """The store a spec names: the one already open in this process, or a fresh mmap of its file."""
    store = OPEN_STORES.get(spec["token"])
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
        release(resources)
        raise ContextError(f"cannot open the shared context {label}: {exc.strerror or exc}") from None
    raw = memoryview(index_map)
    cp = raw.cast("q")
    resources[:0] = [cp, raw, index_map]  # release the views before closing the maps
    return Store(buf, (cp, spec["nchars"], spec["ascii"], spec["k"]), label, resources, dict(spec))
