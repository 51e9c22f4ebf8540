"""How a result and a running query look in a REPL or a notebook.

`RLMResult` shows itself as a short text block (and escaped HTML in Jupyter) instead of a dataclass
repr hundreds of characters long; `NotebookProgress` keeps one live status line in a notebook cell
while a query runs (`notebook_progress` subscribes it to the run's events) and leaves a one-line
summary when it ends. IPython is used only when the caller runs in it: rlm never imports it otherwise.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rlm.events import Event

if TYPE_CHECKING:
    from rlm.api.result import RLMResult

ANSWER_CHARS = 400  # of the answer shown in a repr; the whole answer is `result.answer`
TREE_LINES = 12  # nodes listed in a repr; the rest are counted
REFRESH_S = 0.25  # the live line is redrawn at most this often (each redraw is a kernel message)


def count(n: int, noun: str) -> str:
    """'1 turn', '3 turns'."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


@dataclass
class NodeLine:
    """One node of the tree as the trajectory tells it."""

    path: tuple[int, ...]
    status: str = "running"
    turns: int = 0
    calls: int = 0
    question: str = ""


def tree_of(trajectory: list[Event]) -> list[NodeLine]:
    """The nodes of a run in the order they started, with their status, turns and model calls."""
    nodes: dict[tuple[int, ...], NodeLine] = {}
    for event in trajectory:
        if "path" not in event:
            continue
        path = tuple(event["path"])
        node = nodes.setdefault(path, NodeLine(path))
        kind = event["type"]
        if kind == "node_start":
            node.question = str(event.get("question", ""))
        elif kind == "node_end":
            node.status, node.turns = str(event.get("status")), int(event.get("iterations") or 0)
        elif kind == "turn_start":
            node.turns = max(node.turns, int(event.get("iteration") or 0))
        elif kind == "model_call":
            node.calls += 1
    return list(nodes.values())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _node_label(node: NodeLine) -> str:
    name = "root" if not node.path else "child " + ".".join(str(i) for i in node.path)
    return f"{name}: {node.status}, {count(node.turns, 'turn')}, {count(node.calls, 'model call')}"


def tree_lines(trajectory: list[Event]) -> list[str]:
    """The tree at a glance, one indented line a node; long trees end with how many were left out."""
    nodes = tree_of(trajectory)
    lines = ["  " * len(node.path) + _node_label(node) for node in nodes[:TREE_LINES]]
    if len(nodes) > TREE_LINES:
        lines.append(f"… {count(len(nodes) - TREE_LINES, 'more node')}")
    return lines


def cost_text(result: RLMResult) -> str:
    usage = result.usage
    text = f"${usage.cost_usd:.4f}"
    if not result.cost_complete:
        text += " (some models have no price: cost incomplete)"
    if result.cache_hits:
        saved = f"{result.saved_tokens:,} tokens, ${result.saved_usd:.4f}"
        text += f", {count(result.cache_hits, 'call')} from the cache saved {saved}"
    return text


def summary_line(result: RLMResult) -> str:
    """'completed · 3 turns · 2 sub-calls · 6,911 tokens · $0.0000 · 1.6 s': the CLI's summary too."""
    return (
        f"{result.status.value} · {count(result.iterations, 'turn')} · {count(result.sub_calls, 'sub-call')} · "
        f"{result.usage.total_tokens:,} tokens · {cost_text(result)} · {result.wall_time_s:.1f} s"
    )


def result_text(result: RLMResult) -> str:
    """The readable repr: status and figures, the answer (clipped), any error, and the tree."""
    answer = "None" if result.answer is None else repr(_clip(result.answer, ANSWER_CHARS))
    lines = [f"RLMResult({summary_line(result)})", f"answer: {answer}"]
    if result.error:
        lines.append(f"error: {_clip(result.error, ANSWER_CHARS)}")
    tree = tree_lines(result.trajectory)
    if tree:
        lines.append("tree:")
        lines.extend("  " + line for line in tree)
    return "\n".join(lines)


def result_html(result: RLMResult) -> str:
    """The same as `result_text`, as escaped HTML for a notebook (the answer is shown whole), then the
    run's page (`rlm view --html`: tree, timeline, costs) in a sandboxed iframe when it kept its trajectory."""
    colour = "#2e7d32" if result.ok else "#c62828"
    rows = [
        ("status", f'<b style="color:{colour}">{html.escape(result.status.value)}</b>'),
        ("answer", f'<pre style="white-space:pre-wrap;margin:0">{html.escape(str(result.answer))}</pre>'),
    ]
    if result.error:
        rows.append(("error", f'<pre style="white-space:pre-wrap;margin:0">{html.escape(result.error)}</pre>'))
    rows += [
        ("cost", html.escape(cost_text(result))),
        ("calls", html.escape(f"{count(result.usage.calls, 'model call')}, {count(result.sub_calls, 'sub-call')}")),
        ("tokens", f"{result.usage.total_tokens:,}"),
        ("time", f"{result.wall_time_s:.1f} s, {count(result.iterations, 'turn')}"),
    ]
    tree = tree_lines(result.trajectory)
    if tree:
        rows.append(("tree", f'<pre style="margin:0">{html.escape(chr(10).join(tree))}</pre>'))
    body = "".join(
        f'<tr><th style="text-align:left;vertical-align:top">{name}</th><td style="text-align:left">{value}</td></tr>'
        for name, value in rows
    )
    table = f"<table><caption style='text-align:left'><b>RLMResult</b></caption>{body}</table>"
    if not result.trajectory:
        return table
    from rlm.view import read_events
    from rlm.view.html import render_html
    from rlm.view.page import iframe

    return table + iframe(render_html(read_events(result.trajectory)))


def in_notebook() -> bool:
    """True in a Jupyter kernel (not a terminal IPython, where the CLI-style output works)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


@dataclass
class NotebookProgress:
    """An event subscriber that redraws one status line in the running cell, then leaves a summary.

    Events arrive on the run's thread; redraws are display updates by id, which any thread may send."""

    handle: Any = None
    started: float = field(default_factory=time.monotonic)
    turns: int = 0
    calls: int = 0
    tokens: int = 0
    nodes: int = 0
    _drawn: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        from IPython.display import HTML, display

        self.handle = display(HTML(self._line("starting")), display_id=True)

    def _line(self, state: str) -> str:
        elapsed = time.monotonic() - self.started
        text = (
            f"rlm: {state} · {count(self.nodes, 'node')} · {count(self.turns, 'turn')} · "
            f"{count(self.calls, 'model call')} · {self.tokens:,} tokens · {elapsed:.1f} s"
        )
        return f"<code>{html.escape(text)}</code>"

    def __call__(self, event: Event) -> None:
        kind = event["type"]
        with self._lock:
            if kind == "node_start":
                self.nodes += 1
            elif kind == "turn_start":
                self.turns += 1
            elif kind == "model_call":
                self.calls += 1
                self.tokens += int(event.get("prompt_tokens") or 0) + int(event.get("completion_tokens") or 0)
            now = time.monotonic()
            if now - self._drawn < REFRESH_S:
                return
            self._drawn = now
        self._update(self._line("running"))

    def _update(self, markup: str) -> None:
        from IPython.display import HTML

        self.handle.update(HTML(markup))

    def finish(self, result: RLMResult | None) -> None:
        """Replace the live line with the run's summary (or say it stopped without a result)."""
        text = f"rlm: {summary_line(result)}" if result is not None else "rlm: stopped without a result"
        self._update(f"<code>{html.escape(text)}</code>")


def notebook_progress(
    progress: bool | None, on_event: Callable[[Event], None] | None
) -> tuple[NotebookProgress | None, Callable[[Event], None] | None]:
    """A notebook status line when running in Jupyter (unless `progress` is False), and the event
    subscriber that feeds it beside the caller's own `on_event`."""
    if progress is False or not in_notebook():
        return None, on_event
    live = NotebookProgress()

    def both(event: Event) -> None:
        live(event)
        if on_event:
            on_event(event)

    return live, both


def finishing(live: NotebookProgress | None, run: Callable[[], RLMResult]) -> RLMResult:
    """`run()`, then the status line (if any) replaced by the run's summary, whatever happened."""
    result = None
    try:
        result = run()
        return result
    finally:
        if live:
            live.finish(result)


async def afinishing(live: NotebookProgress | None, run: Awaitable[RLMResult]) -> RLMResult:
    """`finishing` for a run awaited on the caller's loop."""
    result = None
    try:
        result = await run
        return result
    finally:
        if live:
            live.finish(result)
