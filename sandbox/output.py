"""Cell stdout: kept as head and tail while the cell runs, so a print flood never sits in memory."""

from __future__ import annotations

from collections import deque
from typing import Any

from sandbox.rules import PolicyError


class OutputFlood(BaseException):
    """Raised into the cell once it has printed more than the flood limit (stops the flood)."""


class OutputBuffer:
    """The first and last `keep // 2` characters of a cell's output, and how much was cut."""

    def __init__(self, keep: int, flood: int) -> None:
        self.head_max = keep // 2
        self.tail_max = keep - self.head_max
        self.flood = flood
        self.reset()

    def reset(self) -> None:
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.total = 0

    def write(self, text: str) -> None:
        self.total += len(text)
        if self.head_len < self.head_max:
            part = text[: self.head_max - self.head_len]
            self.head.append(part)
            self.head_len += len(part)
            text = text[len(part) :]
        if text:
            text = text[-self.tail_max :] if self.tail_max else ""
            self.tail.append(text)
            self.tail_len += len(text)
            while self.tail_len - len(self.tail[0]) >= self.tail_max:
                self.tail_len -= len(self.tail.popleft())
        if self.total > self.flood:
            raise OutputFlood(f"the cell printed more than {self.flood:,} characters and was stopped")

    def getvalue(self) -> str:
        head = "".join(self.head)
        tail = "".join(self.tail)
        if self.tail_len > self.tail_max:
            tail = tail[self.tail_len - self.tail_max :]
        cut = self.total - len(head) - len(tail)
        if cut <= 0:
            return head + tail
        return f"{head}\n[... {cut:,} characters of output cut ...]\n{tail}"


class Printer:
    """What RestrictedPython's `print` rewrite calls: writes to the cell's output buffer."""

    def __init__(self, out: OutputBuffer) -> None:
        self.out = out

    def _call_print(
        self, *objects: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False
    ) -> None:
        if file is not None:
            raise PolicyError("print(file=...) is not available in the REPL; print to stdout")
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        if not isinstance(sep, str) or not isinstance(end, str):
            raise TypeError("sep and end must be str")
        self.out.write(sep.join(str(o) for o in objects) + end)

    def __call__(self) -> str:
        raise PolicyError("`printed` is not available in the REPL; print() output goes to stdout")
