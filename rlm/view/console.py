"""A trace in the terminal: a header with status and totals, then the tree (rich), every text clipped
to a few lines unless asked for more. Model and cell text is untrusted: it goes through
`rlm.terminal.neutralise` and into rich `Text` objects, so neither escape sequences nor rich markup
in it can act."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.text import Text as RichText
from rich.tree import Tree

from rlm.terminal import neutralise
from rlm.view.trace import MAX_CHARS, TraceReader, call_of, open_trace
from rlm.view.tree import Call, Cell, Node, Text, Trace, Turn

MAX_LINES = 8  # of each text shown by default (--max-lines N, --full for all)
LINE_CHARS = 240  # of each line shown by default
CALLS_SHOWN = 12  # sub-calls listed per cell by default; the rest are summed up in one line
REPL_BLOCK = re.compile(r"```repl\b.*?(```|$)", re.DOTALL)  # shown as its cell, not twice
STATUS_STYLE = {"completed": "green", "running": "yellow"}


def count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def money(usd: float, priced: bool = True) -> str:
    return f"${usd:.4f}" + ("" if priced else " (unpriced)")


def seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"


class Style:
    """How much to show: `max_lines` per text (None: all), `full` also lists every call with its text."""

    def __init__(self, max_lines: int | None = MAX_LINES, full: bool = False) -> None:
        self.max_lines = None if full else max_lines
        self.full = full

    def block(self, label: str, text: Text, style: str = "") -> RichText:
        """`label:` and the text, clipped to max_lines lines, with what was left out counted."""
        out = RichText(f"{label}: ", style="bold")
        lines = neutralise(text.value).splitlines() or [""]
        shown = lines if self.max_lines is None else lines[: self.max_lines]
        if not self.full:
            shown = [line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…" for line in shown]
        out.append(("\n" if len(shown) > 1 else "") + "\n".join(shown), style=style)
        hidden = len(lines) - len(shown)
        notes = [count(hidden, "more line")] if hidden > 0 else []
        if text.omitted:
            notes.append(f"{text.omitted:,} more characters not loaded")
        if notes:
            out.append(f"\n… {', '.join(notes)} (--max-lines N or --full shows more)", style="dim")
        return out


def header(trace: Trace, source: str = "") -> Group:
    totals = trace.totals()
    status = trace.status if trace.ended else "running (no run_end yet)"
    line = RichText()
    line.append("rlm run", style="bold")
    if source:
        line.append(f" {neutralise(source)}", style="dim")
    line.append(" · ")
    line.append(status, style=STATUS_STYLE.get(trace.status, "red"))
    line.append(
        f" · {seconds(trace.duration_s)} wall · {count(len(trace.nodes), 'node')} · {count(totals.calls, 'model call')}"
        f" · {count(totals.cache_hits, 'cache hit')} · {totals.prompt_tokens:,} in + {totals.completion_tokens:,} out"
        f" tokens · {money(totals.cost_usd, totals.priced)}"
    )
    if totals.saved_usd:
        line.append(f" · {money(totals.saved_usd)} saved by the cache")
    parts: list[Any] = [line]
    if trace.models:
        models = ", ".join(f"{role}={model}" for role, model in trace.models.items())
        parts.append(RichText("models: " + neutralise(models), style="dim"))
    if trace.question:
        parts.append(Style(2).block("question", trace.question))
    if trace.gaps:
        where = ", ".join(f"line {gap.line} ({gap.reason})" for gap in trace.gaps[:5])
        more = f" and {len(trace.gaps) - 5} more" if len(trace.gaps) > 5 else ""
        parts.append(RichText(f"unreadable lines skipped: {where}{more}", style="yellow"))
    return Group(*parts)


def call_line(call: Call) -> RichText:
    line = RichText(f"{call.role} call ", style="cyan")
    line.append(neutralise(call.model))
    line.append(
        f" · {call.prompt_tokens:,}+{call.completion_tokens:,} tokens · {money(call.cost_usd, call.priced)}"
        f" · {seconds(call.latency_s)}"
    )
    if call.cached:
        line.append(" · cache hit", style="green")
    if call.finish_reason not in (None, "stop"):
        line.append(f" · finish {neutralise(str(call.finish_reason))}", style="yellow")
    return line


def node_line(trace: Trace, node: Node) -> RichText:
    totals = trace.node_totals(node)
    end = trace.duration_s if node.end is None else node.end
    line = RichText(node.name, style="bold magenta")
    line.append(" · ")
    line.append(node.status, style=STATUS_STYLE.get(node.status, "red"))
    line.append(
        f" · {count(len(node.turns), 'turn')} · {count(totals.calls, 'call')} · {totals.tokens:,} tokens"
        f" · {money(totals.cost_usd, totals.priced)} · {seconds(end - node.start)}"
    )
    if totals.cache_hits:
        line.append(f" · {count(totals.cache_hits, 'cache hit')}", style="green")
    return line


class TreeView:
    """Builds the rich Tree of a trace under a `Style`."""

    def __init__(self, trace: Trace, style: Style) -> None:
        self.trace = trace
        self.style = style

    def tree(self) -> Tree:
        root = Tree(RichText("tree", style="bold"), guide_style="dim")
        if self.trace.root is not None:
            self.add_node(root, self.trace.root)
        if self.trace.answer or self.trace.ended:
            root.add(self.style.block("answer", self.trace.answer or Text("(none)"), "bold green"))
        if self.trace.error:
            root.add(self.style.block("stopped", self.trace.error, "red"))
        return root

    def add_node(self, parent: Tree, node: Node) -> None:
        branch = parent.add(node_line(self.trace, node))
        if node.path and node.question:
            branch.add(self.style.block("question", node.question))
        for note in node.notes:
            branch.add(RichText(neutralise(note), style="yellow"))
        for turn in node.turns:
            self.add_turn(branch, turn)
        self.add_calls(branch, node.calls)
        for child in node.children:
            self.add_node(branch, child)
        if node.path and node.answer:
            branch.add(self.style.block("answer", node.answer, "green"))

    def add_turn(self, parent: Tree, turn: Turn) -> None:
        end = self.trace.duration_s if turn.end is None else turn.end
        label = RichText(f"turn {turn.iteration}", style="bold")
        label.append(f" · {seconds(end - turn.start)}" + (" · answered" if turn.answered else ""))
        branch = parent.add(label)
        self.add_calls(branch, turn.calls)
        for note in turn.notes:
            branch.add(RichText(neutralise(note), style="yellow"))
        if turn.text:
            shown = (
                turn.text
                if self.style.full
                else Text(REPL_BLOCK.sub("[repl block: its cell is below]", turn.text.value), turn.text.omitted)
            )
            branch.add(self.style.block("reply", shown, "dim"))
        for cell in turn.cells:
            self.add_cell(branch, cell)

    def add_cell(self, parent: Tree, cell: Cell) -> None:
        took = "running" if cell.end is None else seconds(cell.end - cell.start)
        label = RichText(f"cell {cell.index}", style="bold blue")
        label.append(f" · {took}")
        if cell.error_kind:
            label.append(f" · {neutralise(cell.error_kind)}", style="red")
        branch = parent.add(label)
        branch.add(self.style.block("code", cell.code, "blue"))
        if cell.stdout:
            branch.add(self.style.block("output", cell.stdout))
        if cell.error:
            branch.add(self.style.block("error", cell.error, "red"))
        if cell.notice:
            branch.add(RichText(neutralise(cell.notice), style="yellow"))
        self.add_calls(branch, cell.calls)
        for child in cell.children:
            self.add_node(branch, child)

    def add_calls(self, parent: Tree, calls: list[Call]) -> None:
        shown = calls if self.style.full else calls[:CALLS_SHOWN]
        for call in shown:
            branch = parent.add(call_line(call))
            if self.style.full:
                if call.prompt:
                    branch.add(self.style.block("prompt", call.prompt, "dim"))
                if call.response:
                    branch.add(self.style.block("response", call.response))
        rest = calls[len(shown) :]
        if rest:
            tokens = sum(c.prompt_tokens + c.completion_tokens for c in rest)
            cost = sum(c.cost_usd for c in rest)
            parent.add(
                RichText(f"… {count(len(rest), 'more call')}: {tokens:,} tokens, {money(cost)} (--full lists them)")
            )


def render(trace: Trace, style: Style, source: str = "") -> Group:
    return Group(header(trace, source), TreeView(trace, style).tree())


def show(trace: Trace, style: Style, source: str = "", console: Console | None = None) -> None:
    (console or Console()).print(render(trace, style, source))


# --- following a trace that is still being written --------------------------------------------------


def _indent(path: tuple[int, ...] | None) -> str:
    return "  " * len(path or ())


def event_line(event: dict[str, Any], style: Style) -> RichText | None:
    """One event as a line of the live tail (None for events not worth a line)."""
    kind = event.get("type")
    path = tuple(event["path"]) if isinstance(event.get("path"), list) else None
    pad = _indent(path)
    name = "root" if not path else "child " + ".".join(map(str, path))
    clip = Style(1 if style.max_lines else None, style.full)
    if kind == "node_start":
        return RichText(pad) + clip.block(f"{name} started", Text(str(event.get("question", ""))), "magenta")
    if kind == "node_end":
        return RichText(f"{pad}{name} ended: {neutralise(str(event.get('status')))}", style="magenta")
    if kind == "turn_start":
        return RichText(f"{pad}turn {event.get('iteration')}", style="bold")
    if kind == "cell_start":
        return RichText(pad) + style.block(f"cell {event.get('index')}", Text(str(event.get("code", ""))), "blue")
    if kind == "cell_end":
        text = "\n".join(str(event.get(k) or "") for k in ("stdout", "error") if event.get(k))
        return RichText(pad) + style.block("output", Text(text)) if text else None
    if kind == "model_call":
        return RichText(pad) + call_line(call_of(event, 0.0))
    if kind == "run_end":
        return RichText(f"run ended: {neutralise(str(event.get('status')))}", style="bold")
    return None


def follow_trace(path: str | Path, style: Style, console: Console | None = None, poll_s: float = 0.25) -> Trace:
    """Print each event of a trace as it is written, until its run ends (or Ctrl-C); then the tree."""
    console = console or Console()
    reader = TraceReader(None if style.full else MAX_CHARS)
    try:
        for line in _tail(path, poll_s, lambda: reader.trace.ended):
            event = reader.feed_line(line)
            if event is None and reader.trace.gaps and reader.trace.gaps[-1].line == reader.line:
                console.print(RichText(f"line {reader.line}: {reader.trace.gaps[-1].reason}", style="yellow"))
            shown = event_line(event, style) if event is not None else None
            if shown is not None:
                console.print(shown)
    except KeyboardInterrupt:
        console.print(RichText("stopped following; the tree so far:", style="dim"))
    console.print(render(reader.trace, style, str(path)))
    return reader.trace


def _tail(path: str | Path, poll_s: float, done: Any) -> Iterator[str]:
    """Complete lines of the file as they are appended; a last line without its newline is held back
    until the rest arrives. Ends when `done()` says so (after the run_end line)."""
    with open_trace(path) as file:
        pending = ""
        while True:
            chunk = file.readline()
            if chunk:
                pending += chunk
                if pending.endswith("\n"):
                    line, pending = pending, ""
                    yield line
                    if done():
                        return
                continue
            time.sleep(poll_s)
