"""A trace (the JSONL `--trace` writes, or a result's trajectory) read back as a tree of nodes (tree.py).

A trace may be cut short (a run still being written, a crash), written by an older rlm, or edited by
hand, so reading never fails on what is inside it: a line that is not a JSON object becomes a `Gap`
shown where it was, events and fields this reader does not know are ignored, and every text is kept
to `max_chars` (the rest is counted, not kept) so one huge output cannot swamp a page or a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rlm.view.tree import Call, Cell, Gap, Node, Text, Trace, Turn

MAX_CHARS = 20_000  # of any one text (code, output, reply, answer) kept by default


class TraceError(Exception):
    """The trace cannot be read at all (missing, a folder, unreadable): a message for the user."""


def _text(value: Any, limit: int | None) -> Text:
    if value is None:
        return Text("")
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if limit is None or len(text) <= limit:
        return Text(text)
    return Text(text[:limit], len(text) - limit)


def _num(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number == number and abs(number) != float("inf") else default


def _int(value: Any) -> int:
    return int(_num(value))


def _path(value: Any) -> tuple[int, ...] | None:
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        return None
    return tuple(value)


class TraceReader:
    """Builds a `Trace` from events (dicts) or JSONL lines, one at a time, so a file still being
    written can be followed: feed it what has arrived and look at `trace` whenever you like."""

    def __init__(self, max_chars: int | None = MAX_CHARS) -> None:
        self.trace = Trace()
        self.max_chars = max_chars
        self.line = 0
        self._open_turn: dict[tuple[int, ...], Turn] = {}
        self._open_cell: dict[tuple[int, ...], Cell] = {}

    def feed_line(self, line: str) -> dict[str, Any] | None:
        """One line of the file, and the event it held (a blank line is skipped; anything but a JSON
        object is a gap)."""
        self.line += 1
        if not line.strip():
            return None
        try:
            event = json.loads(line)
        except ValueError:
            self.gap("not JSON" if line.endswith("\n") else "cut off (the file ends mid-line)")
            return None
        if not isinstance(event, dict):
            self.gap(f"a JSON {type(event).__name__}, not an event")
            return None
        self.feed(event)
        return event

    def gap(self, reason: str) -> None:
        self.trace.gaps.append(Gap(self.line, reason, self.trace.duration_s))

    def feed(self, event: dict[str, Any]) -> None:
        """One event; unknown kinds and missing fields are tolerated (older and newer traces)."""
        trace = self.trace
        trace.events += 1
        t = _num(event.get("t"), default=float("nan"))
        if t != t:  # no usable time: place it at the latest time seen
            t = (trace.started or 0.0) + trace.duration_s
        if trace.started is None:
            trace.started = t
        now = t - trace.started
        trace.duration_s = max(trace.duration_s, now)
        handler = getattr(self, "_on_" + str(event.get("type")), None)
        if handler is not None:
            handler(event, now, _path(event.get("path")))

    # --- one handler per event kind -----------------------------------------------------------

    def _on_run_start(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        self.trace.question = self._text(event.get("question"))
        models = event.get("models")
        if isinstance(models, dict):
            self.trace.models = {str(k): str(v) for k, v in models.items()}
        self.trace.method = str(event.get("method") or "rlm")

    def _on_run_end(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        self.trace.status = str(event.get("status") or "unknown")
        self.trace.answer = self._text(event.get("answer"))
        self.trace.error = self._text(event.get("error"))
        for node in self.trace.nodes.values():  # nodes cancelled with the run never said they ended
            if node.end is None:
                node.end, node.status = now, self.trace.status
        if self.trace.root is not None and not self.trace.root.answer:
            self.trace.root.answer = self.trace.answer

    def _node(self, path: tuple[int, ...], now: float) -> Node:
        """The node at `path`, made (and hung under its parent) if this is the first word of it."""
        node = self.trace.nodes.get(path)
        if node is not None:
            return node
        node = Node(path, now)
        self.trace.nodes[path] = node
        if not path:
            self.trace.root = node
        else:
            parent = self._node(path[:-1], now)
            cell = self._open_cell.get(parent.path)
            (cell.children if cell is not None else parent.children).append(node)
        return node

    def _on_node_start(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        if path is not None:
            node = self._node(path, now)
            node.start = min(node.start, now)
            node.question = self._text(event.get("question"))

    def _on_node_end(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        if path is None:
            return
        node = self._node(path, now)
        node.end, node.status = now, str(event.get("status") or "unknown")
        node.answer = self._text(event.get("answer"))
        node.iterations = _int(event.get("iterations"))
        self._open_turn.pop(path, None)
        self._open_cell.pop(path, None)

    def _on_turn_start(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        if path is not None:
            turn = Turn(_int(event.get("iteration")), now)
            self._node(path, now).turns.append(turn)
            self._open_turn[path] = turn

    def _on_turn_end(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        if path is None:
            return
        turn = self._open_turn.pop(path, None)
        if turn is None:  # its start was in a gap
            turn = Turn(_int(event.get("iteration")), now)
            self._node(path, now).turns.append(turn)
        turn.end, turn.text, turn.answered = now, self._text(event.get("text")), bool(event.get("answered"))

    def _turn_for(self, path: tuple[int, ...], now: float, iteration: int) -> Turn:
        turn = self._open_turn.get(path)
        node = self._node(path, now)
        if turn is None:  # a FINAL_VAR lookup after the turn ended, or the turn's start was lost
            turn = node.turns[-1] if node.turns else None
        if turn is None:
            turn = Turn(iteration, now)
            node.turns.append(turn)
        return turn

    def _on_cell_start(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        if path is None:
            return
        iteration = _int(event.get("iteration"))
        cell = Cell(iteration, _int(event.get("index")), self._text(event.get("code")), now)
        self._turn_for(path, now, iteration).cells.append(cell)
        self._open_cell[path] = cell

    def _on_cell_end(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        if path is None:
            return
        cell = self._open_cell.pop(path, None)
        if cell is None:
            iteration = _int(event.get("iteration"))
            cell = Cell(iteration, _int(event.get("index")), Text(""), now - _num(event.get("duration_s")))
            self._turn_for(path, now, iteration).cells.append(cell)
        cell.end = now
        cell.stdout, cell.error = self._text(event.get("stdout")), self._text(event.get("error"))
        cell.error_kind = _str_or_none(event.get("error_kind"))
        cell.notice = _str_or_none(event.get("notice"))

    def _on_model_call(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        call = call_of(event, now, self.max_chars)
        role = call.role
        self.trace.calls.append(call)
        path = path or ()  # a direct run's one call has no node events: it is the root's
        node = self._node(path, now)
        cell = self._open_cell.get(path)
        turn = self._open_turn.get(path)
        if role != "root" and cell is not None:
            cell.calls.append(call)
        elif turn is not None:
            turn.calls.append(call)
        else:
            node.calls.append(call)

    def _note(self, path: tuple[int, ...] | None, now: float, note: str) -> None:
        if path is None:
            return
        turn = self._open_turn.get(path)
        (turn.notes if turn is not None else self._node(path, now).notes).append(note)

    def _on_model_error(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        retry = event.get("retry_in_s")
        then = f"retry in {_num(retry):.1f} s" if retry is not None else "gave up"
        self._note(
            path,
            now,
            f"{event.get('model')} failed (attempt {_int(event.get('attempt'))}): "
            f"{self._text(event.get('error')).value}; {then}",
        )

    def _on_model_fallback(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        self._note(
            path,
            now,
            f"{event.get('model')} failed, {event.get('fallback')} took the call: "
            f"{self._text(event.get('error')).value}",
        )

    def _on_stream_interrupted(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        self._note(path, now, f"the reply was cut off: {self._text(event.get('error')).value}")

    def _on_last_word_failed(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        self._note(path, now, f"the last-word call failed: {self._text(event.get('error')).value}")

    def _on_sandbox_layers(self, event: dict[str, Any], now: float, path: tuple[int, ...] | None) -> None:
        missing = event.get("missing")
        if isinstance(missing, list) and missing:
            self._note(path, now, "the REPL ran without: " + ", ".join(map(str, missing)))

    def _text(self, value: Any) -> Text:
        return _text(value, self.max_chars)


def call_of(event: dict[str, Any], end: float, max_chars: int | None = MAX_CHARS) -> Call:
    """A model_call event as a `Call` that ended at `end` (its start is `end` less its latency)."""
    return Call(
        role=str(event.get("role") or "root"),
        model=str(event.get("model") or "?"),
        start=max(0.0, end - max(0.0, _num(event.get("latency_s")))),
        end=end,
        prompt_tokens=_int(event.get("prompt_tokens")),
        completion_tokens=_int(event.get("completion_tokens")),
        cost_usd=_num(event.get("cost_usd")),
        priced=event.get("priced") is not False,
        cached=event.get("cached") is True,
        saved_usd=_num(event.get("saved_usd")),
        finish_reason=_str_or_none(event.get("finish_reason")),
        prompt=_text(event.get("prompt"), max_chars),
        response=_text(event.get("response"), max_chars),
    )


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def read_events(events: Iterable[dict[str, Any]], max_chars: int | None = MAX_CHARS) -> Trace:
    """A trace from events in memory (an `RLMResult.trajectory`)."""
    reader = TraceReader(max_chars)
    for event in events:
        if isinstance(event, dict):
            reader.feed(event)
    return reader.trace


def load_trace(path: str | Path, max_chars: int | None = MAX_CHARS) -> Trace:
    """A trace file read whole. Raises `TraceError` (with a message for the user) only when the file
    cannot be read at all; anything wrong inside it becomes a gap."""
    reader = TraceReader(max_chars)
    try:
        with open_trace(path) as file:
            for line in file:
                reader.feed_line(line)
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror or error}") from None
    return reader.trace


def open_trace(path: str | Path) -> Any:
    """The file opened for reading text (undecodable bytes replaced), or a `TraceError` that says why not."""
    file = Path(path)
    if not file.exists():
        raise TraceError(f"no such file: {path}")
    if file.is_dir():
        raise TraceError(f"{path} is a folder; give a trace file (.jsonl) or an `rlm bench` output folder")
    try:
        return file.open(encoding="utf-8", errors="replace", newline="")
    except OSError as error:
        raise TraceError(f"cannot read {path}: {error.strerror or error}") from None
