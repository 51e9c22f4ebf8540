"""Find ```repl blocks and FINAL markers in a reply while it is still streaming.

The parser is fed text deltas and reports each code block the moment its closing fence line has
arrived, so the engine can run it while the rest of the reply is still being generated. FINAL(...)
and FINAL_VAR(...) are recognised in prose (outside code) at the start of a line, as in the official
`rlms` protocol.

Every delta is looked at once: the parser keeps its place between deltas (what the current line can
still turn out to be, the open block's lines, the paren depth of an open FINAL) and collects the reply
in a list, so parsing is linear in the reply's length however finely it is split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BLANKS = re.compile(r"[ \t]+")
_PARENS = re.compile(r"[()]")
# Whole-line shapes with every run of blanks written as one space; a line is matched against these
# only while it is short enough to still become one of them.
_OPEN_FORMS = ("```repl", "```repl ")
_CLOSE_FORMS = ("```", "``` ")
_FINAL_FORMS = tuple(
    f"{lead}{kind}{gap}(" for lead in ("", " ") for kind in ("FINAL_VAR", "FINAL") for gap in ("", " ")
)


@dataclass(frozen=True)
class CodeBlock:
    """A complete ```repl block; `end` is the character offset in the reply just past its fence."""

    code: str
    index: int
    end: int


@dataclass(frozen=True)
class FinalMarker:
    """`FINAL(value)` (kind "FINAL") or `FINAL_VAR(name)` (kind "FINAL_VAR") written in prose."""

    kind: str
    value: str
    end: int


Event = CodeBlock | FinalMarker

_PROSE, _FINAL, _CODE = "prose", "final", "code"
_FORMS = {_PROSE: _OPEN_FORMS + _FINAL_FORMS, _FINAL: _OPEN_FORMS, _CODE: _CLOSE_FORMS}


class ReplyParser:
    """Incremental scanner over one reply. Feed deltas; get events in the order they appear."""

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._length = 0  # characters fed so far
        self._mode = _PROSE
        self._head: str | None = ""  # the current line, blanks squeezed, while it may still be a marker
        self._span: list[str] = []  # completed lines of the open block or FINAL value
        self._line: list[str] = []  # the current line's part of that block or value
        self._kind = ""  # FINAL or FINAL_VAR while a FINAL value is open
        self._depth = 0
        self._blocks = 0

    @property
    def text(self) -> str:
        """The reply so far."""
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    def feed(self, delta: str) -> list[Event]:
        events: list[Event] = []
        if not delta:
            return events
        self._chunks.append(delta)
        offset = self._length
        self._length += len(delta)
        if self._head is None and self._mode != _FINAL and "\n" not in delta:  # mid-line: the common case
            if self._mode == _CODE:
                self._line.append(delta)
            return events
        start = 0
        while True:
            newline = delta.find("\n", start)
            piece = delta[start:] if newline < 0 else delta[start:newline]
            self._piece(piece, offset + start, events)
            if newline < 0:
                return events
            self._line_ends(offset + newline + 1, events)
            start = newline + 1

    def finish(self) -> list[Event]:
        """The reply ended: report what only the end can settle (a fence closed by end of text)."""
        events: list[Event] = []
        if self._mode == _CODE and self._head in _CLOSE_FORMS:
            events.append(self._close_block(self._length))
        elif self._mode == _FINAL:
            events.append(self._close_final(self._length))
        self._head = None
        return events

    def _piece(self, piece: str, at: int, events: list[Event]) -> None:
        """Take in part of one line (no newline) that starts at offset `at` of the reply."""
        if self._head is not None and piece:
            head = _BLANKS.sub(" ", self._head + piece)
            forms = _FORMS[self._mode]
            opened = [form for form in _FINAL_FORMS if head.startswith(form)] if self._mode == _PROSE else []
            if opened:
                cut = piece.index("(") + 1  # the line had no "(" before: it would have been settled
                self._kind = "FINAL_VAR" if "FINAL_VAR" in opened[0] else "FINAL"
                self._mode, self._depth, self._head = _FINAL, 1, None
                self._span, self._line = [], []
                piece, at = piece[cut:], at + cut
            elif any(form.startswith(head) for form in forms):
                self._head = head
            else:
                self._head = None
        if self._mode == _FINAL:
            self._value_piece(piece, at, events)
        elif self._mode == _CODE:
            self._line.append(piece)

    def _value_piece(self, piece: str, at: int, events: list[Event]) -> None:
        """Count parentheses in a piece of an open FINAL value; close it where the count reaches 0."""
        if "(" in piece or ")" in piece:
            for paren in _PARENS.finditer(piece):
                self._depth += 1 if paren.group() == "(" else -1
                if self._depth == 0:
                    self._line.append(piece[: paren.start()])
                    value = "".join(self._span + self._line).strip()
                    if self._kind == "FINAL_VAR":
                        value = value.strip("\"'")
                    events.append(FinalMarker(kind=self._kind, value=value, end=at + paren.end()))
                    self._mode, self._head = _PROSE, None  # the rest of this line is plain prose
                    self._span, self._line = [], []
                    return
        self._line.append(piece)

    def _line_ends(self, next_line: int, events: list[Event]) -> None:
        """A newline arrived; `next_line` is the offset just past it."""
        if self._mode == _CODE and self._head in _CLOSE_FORMS:
            events.append(self._close_block(next_line))
        elif self._head in _OPEN_FORMS and self._mode != _CODE:
            if self._mode == _FINAL:  # an unbalanced FINAL ends where a block opens
                line_start = next_line - 1 - sum(map(len, self._line))
                self._line = []
                events.append(self._close_final(line_start))
            self._mode = _CODE
            self._span, self._line = [], []
        elif self._mode != _PROSE:
            self._span.extend(self._line)
            self._span.append("\n")
            self._line = []
        self._head = ""

    def _close_block(self, end: int) -> CodeBlock:
        block = CodeBlock(code="".join(self._span).rstrip("\n"), index=self._blocks, end=end)
        self._blocks += 1
        self._mode, self._span, self._line = _PROSE, [], []
        return block

    def _close_final(self, end: int) -> FinalMarker:
        """An unbalanced FINAL takes the rest of its prose, as rlms does."""
        value = "".join(self._span + self._line).strip()
        self._mode, self._span, self._line = _PROSE, [], []
        return FinalMarker(kind=self._kind, value=value, end=end)
