"""A trace as one self-contained HTML page: header, timeline, tables and the collapsible tree.

The page loads nothing (no network, no assets) and every text from a run (model replies, prompts,
code, outputs, even model names) goes through `esc`, so a hostile trajectory shows as text; the
document and the policy that lets only its own script run are in page.py, the timeline in timeline.py.
This module draws the header, the tables and the tree, and collects the timeline's bars as it goes.
"""

from __future__ import annotations

from rlm.view.console import REPL_BLOCK, count, money, seconds
from rlm.view.page import esc, page_html
from rlm.view.timeline import LEGEND, Bar, timeline
from rlm.view.tree import Call, Cell, Node, Text, Totals, Trace, Turn

CALL_CHARS = 500  # of each call's prompt and response put in the page (cell texts are kept as read)
OPEN_ITEMS = 200  # traces with at most this many calls and cells open every turn and cell; bigger ones start closed
CALLS_OPEN = 12  # calls listed open under a turn or cell; more are one closed line until clicked (the page stays light)


def _status(status: str) -> str:
    css = "ok" if status == "completed" else "run" if status == "running" else "bad"
    return f'<span class="{css}">{esc(status)}</span>'


def _text(text: Text, css: str = "", limit: int | None = None) -> str:
    """A <pre> of the text (cut to `limit`), with what was left out said under it."""
    value, omitted = text.value, text.omitted
    if limit is not None and len(value) > limit:
        value, omitted = value[:limit], omitted + len(value) - limit
    out = f'<pre class="{css}">{esc(value)}</pre>' if css else f"<pre>{esc(value)}</pre>"
    if omitted:
        out += f'<div class="clip">… {omitted:,} more characters not shown</div>'
    return out


class _Page:
    """Builds the page in one pass over the tree; ids tie each timeline bar to its entry in the tree."""

    def __init__(self, trace: Trace, call_chars: int | None) -> None:
        self.trace = trace
        self.call_chars = call_chars
        self.bars: dict[tuple[int, ...], list[Bar]] = {path: [] for path in trace.nodes}
        self.ids = 0
        items = len(trace.calls) + sum(len(node.cells()) for node in trace.nodes.values())
        self.open = " open" if items <= OPEN_ITEMS else ""

    def new_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}{self.ids}"

    # --- the tree ---------------------------------------------------------------------------------

    def node(self, node: Node) -> str:
        totals = self.trace.node_totals(node)
        end = self.trace.duration_s if node.end is None else node.end
        ident = "node-" + "-".join(map(str, node.path))
        parts = [
            f'<details class="node" id="{ident}" open><summary><b>{esc(node.name)}</b> · {_status(node.status)}'
            f" · {count(len(node.turns), 'turn')} · {count(totals.calls, 'call')} · {totals.tokens:,} tokens"
            f" · {esc(money(totals.cost_usd, totals.priced))} · {seconds(end - node.start)}"
            + (f" · {count(totals.cache_hits, 'cache hit')}" if totals.cache_hits else "")
            + "</summary>"
        ]
        if node.path and node.question:
            parts.append('<div class="muted">question</div>' + _text(node.question))
        parts += [f'<div class="note">{esc(note)}</div>' for note in node.notes]
        parts += [self.turn(node, turn) for turn in node.turns]
        parts.append(self.calls(node, node.calls))
        parts += [self.node(child) for child in node.children]
        if node.path and node.answer:
            parts.append('<div class="muted">answer</div>' + _text(node.answer, "answer"))
        parts.append("</details>")
        return "".join(parts)

    def turn(self, node: Node, turn: Turn) -> str:
        end = self.trace.duration_s if turn.end is None else turn.end
        parts = [
            f'<details class="turn"{self.open}><summary><b>turn {turn.iteration}</b> · {seconds(end - turn.start)}'
            + (" · answered" if turn.answered else "")
            + "</summary>",
            self.calls(node, turn.calls),
        ]
        parts += [f'<div class="note">{esc(note)}</div>' for note in turn.notes]
        if turn.text:
            reply = Text(REPL_BLOCK.sub("[repl block: its cell is below]", turn.text.value), turn.text.omitted)
            parts.append('<details class="reply"><summary class="muted">reply</summary>' + _text(reply) + "</details>")
        parts += [self.cell(node, cell) for cell in turn.cells]
        parts.append("</details>")
        return "".join(parts)

    def cell(self, node: Node, cell: Cell) -> str:
        ident = self.new_id("cell")
        end = self.trace.duration_s if cell.end is None else cell.end
        took = "running" if cell.end is None else seconds(end - cell.start)
        kind = f' · <span class="bad">{esc(cell.error_kind)}</span>' if cell.error_kind else ""
        self.bars[node.path].append(
            Bar(cell.start, end, "cell", ident, f"{node.name} cell {cell.index}: {took}", failed=bool(cell.error_kind))
        )
        parts = [
            f'<details class="cell" id="{ident}"{self.open}><summary><b>cell {cell.index}</b> · {took}{kind}</summary>',
            _text(cell.code, "code"),
        ]
        if cell.stdout:
            parts.append(_text(cell.stdout))
        if cell.error:
            parts.append(_text(cell.error, "err"))
        if cell.notice:
            parts.append(f'<div class="note">{esc(cell.notice)}</div>')
        parts.append(self.calls(node, cell.calls))
        parts += [self.node(child) for child in cell.children]
        parts.append("</details>")
        return "".join(parts)

    def calls(self, node: Node, calls: list[Call]) -> str:
        if not calls:
            return ""
        rows = []
        for call in calls:
            ident = self.new_id("call")
            tokens = f"{call.prompt_tokens:,}+{call.completion_tokens:,}"
            self.bars[node.path].append(
                Bar(
                    call.start,
                    call.end,
                    call.role if call.role in ("root", "sub", "aggregate") else "other",
                    ident,
                    f"{node.name} {call.role} call {call.model}: {tokens} tokens, {seconds(call.latency_s)}"
                    + (", cache hit" if call.cached else ""),
                    cached=call.cached,
                    failed=call.finish_reason not in (None, "stop"),
                )
            )
            texts = ""
            if call.prompt or call.response:
                texts = (
                    "<details><summary>text</summary>"
                    + "".join(
                        f'<div class="muted">{name}</div>' + _text(text, "", self.call_chars)
                        for name, text in (("prompt", call.prompt), ("response", call.response))
                        if text
                    )
                    + "</details>"
                )
            rows.append(
                f'<tr id="{ident}"><td class="l">{esc(call.role)}</td><td class="l">{esc(call.model)}</td>'
                f"<td>{tokens}</td><td>{esc(money(call.cost_usd, call.priced))}</td><td>{seconds(call.latency_s)}</td>"
                f'<td>{"hit" if call.cached else ""}</td><td class="l">{esc(call.finish_reason or "")}</td>'
                f'<td>{call.start:.2f} s</td><td class="l">{texts}</td></tr>'
            )
        table = (
            '<table class="calls"><tr><th class="l">role</th><th class="l">model</th><th>tokens in+out</th>'
            "<th>cost</th>"
            '<th>latency</th><th>cache</th><th class="l">finish</th><th>started</th><th class="l"></th></tr>'
            + "".join(rows)
            + "</table>"
        )
        if len(calls) <= CALLS_OPEN:
            return table
        totals = Totals()
        for call in calls:
            totals.add(call)
        return (
            f"<details><summary>{count(totals.calls, 'call')} · {count(totals.cache_hits, 'cache hit')} · "
            f"{totals.tokens:,} tokens · {esc(money(totals.cost_usd, totals.priced))}</summary>{table}</details>"
        )

    # --- the header and tables -----------------------------------------------------------------------

    def header(self, title: str) -> str:
        trace = self.trace
        totals = trace.totals()
        status = trace.status if trace.ended else "running"
        unended = "no run_end yet" if trace.events else "no event in this trace"
        rows = [
            ("status", _status(status) + ("" if trace.ended else f' <span class="muted">({unended})</span>')),
            (
                "totals",
                f"{seconds(trace.duration_s)} wall · {count(len(trace.nodes), 'node')} · "
                f"{count(totals.calls, 'model call')} · {count(totals.cache_hits, 'cache hit')} · "
                f"{totals.prompt_tokens:,} in + {totals.completion_tokens:,} out tokens · "
                f"{esc(money(totals.cost_usd, totals.priced))}"
                + (f" · {esc(money(totals.saved_usd))} saved by the cache" if totals.saved_usd else ""),
            ),
        ]
        if trace.models:
            rows.append(("models", esc(", ".join(f"{role}={model}" for role, model in trace.models.items()))))
        if trace.question:
            rows.append(("question", _text(trace.question)))
        if trace.answer or trace.ended:
            rows.append(("answer", _text(trace.answer or Text("(none)"), "answer")))
        if trace.error:
            rows.append(("stopped", _text(trace.error, "err")))
        if trace.gaps:
            gaps = "".join(f'<span class="gap">line {gap.line}: {esc(gap.reason)}</span> ' for gap in trace.gaps)
            rows.append(("unreadable lines", gaps))
        body = "".join(f"<b>{name}</b><div>{value}</div>" for name, value in rows)
        return f'<h1>rlm run <span class="muted">{esc(title)}</span></h1><div class="kv">{body}</div>'

    def tables(self) -> str:
        nodes = [
            (f'<a href="#node-{"-".join(map(str, n.path))}">{esc(n.name)}</a>', self.trace.node_totals(n), n)
            for n in (self.trace.nodes[p] for p in sorted(self.trace.nodes))
        ]
        node_rows = "".join(
            f'<tr><td class="l">{name}</td><td class="l">{_status(n.status)}</td><td>{len(n.turns)}</td>'
            f"<td>{len(n.cells())}</td>{_figures(t)}</tr>"
            for name, t, n in nodes
        )
        model_rows = "".join(
            f'<tr><td class="l">{esc(model)}</td><td class="l"></td><td></td><td></td>{_figures(t)}</tr>'
            for model, t in sorted(self.trace.by_model().items())
        )
        head = "<th>calls</th><th>cache hits</th><th>tokens in</th><th>tokens out</th><th>cost</th>"
        return (
            "<h2>Cost and tokens</h2><table>"
            f'<tr><th class="l">node</th><th class="l">status</th><th>turns</th><th>cells</th>{head}</tr>{node_rows}'
            f'<tr><th class="l">model</th><th class="l"></th><th></th><th></th>{head}</tr>{model_rows}</table>'
        )


def _figures(totals: Totals) -> str:
    return (
        f"<td>{totals.calls:,}</td><td>{totals.cache_hits:,}</td><td>{totals.prompt_tokens:,}</td>"
        f"<td>{totals.completion_tokens:,}</td><td>{esc(money(totals.cost_usd, totals.priced))}</td>"
    )


def render_body(trace: Trace, title: str = "", call_chars: int | None = CALL_CHARS, preface: str = "") -> str:
    """The page's content (no <html> around it): `preface` (markup), header, timeline, tables, tree."""
    page = _Page(trace, call_chars)
    tree = page.node(trace.root) if trace.root is not None else '<p class="muted">no node in this trace</p>'
    return (
        preface
        + page.header(title)
        + "<h2>Timeline</h2>"
        + LEGEND
        + timeline(trace, page.bars)
        + page.tables()
        + '<h2>Tree</h2><div><button id="expand">expand all</button><button id="collapse">collapse all</button></div>'
        + f'<div id="tree">{tree}</div>'
    )


def render_html(trace: Trace, title: str = "", call_chars: int | None = CALL_CHARS, preface: str = "") -> str:
    """One self-contained page of the trace. `call_chars` cuts each call's prompt and response (None: whole);
    `preface` is markup put first (a link back to an index)."""
    return page_html(f"rlm run {title}".strip(), render_body(trace, title, call_chars, preface))
