"""A trace as one self-contained HTML page: header, timeline, tables and the collapsible tree.

The page loads nothing (no network, no assets) and every text from a run (model replies, prompts,
code, outputs, even model names) goes through `html.escape`, so a hostile trajectory shows as text.
A Content-Security-Policy lets only the page's own script run (by its sha256), so even markup that
slipped through could not run anything. The timeline puts every model call and every cell on one time
axis, a row per node, overlapping bars stacked in lanes, so streaming overlap and fan-out show at a glance.
"""

from __future__ import annotations

import base64
import hashlib
import html
from dataclasses import dataclass

from rlm.view.console import REPL_BLOCK, count, money, seconds
from rlm.view.trace import Call, Cell, Node, Text, Totals, Trace, Turn

CALL_CHARS = 500  # of each call's prompt and response put in the page (cell texts are kept as read)
LANES = 12  # bars stacked per timeline row at most; more concurrent ones share lanes
LANE_PX = 14
OPEN_ITEMS = 200  # traces with at most this many calls and cells open every turn and cell; bigger ones start closed
CALLS_OPEN = 12  # calls listed open under a turn or cell; more are one closed line until clicked (the page stays light)

SCRIPT = """(function () {
  var tl = document.getElementById("timeline");
  var calls = tl.querySelectorAll(".bar.call").length, cells = tl.querySelectorAll(".bar.cell").length;
  document.getElementById("tl-count").textContent =
    calls + (calls === 1 ? " call, " : " calls, ") + cells + (cells === 1 ? " cell" : " cells");
  function each(open) {
    var all = document.querySelectorAll("#tree details");
    for (var i = 0; i < all.length; i++) all[i].open = open;
  }
  document.getElementById("expand").addEventListener("click", function () { each(true); });
  document.getElementById("collapse").addEventListener("click", function () { each(false); });
  tl.addEventListener("click", function (e) {
    var bar = e.target.closest("[data-for]");
    var el = bar && document.getElementById(bar.getAttribute("data-for"));
    if (!el) return;
    for (var p = el; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
    el.scrollIntoView({ block: "center" });
    el.classList.add("hit");
    setTimeout(function () { el.classList.remove("hit"); }, 1500);
  });
})();"""
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CSP = f"default-src 'none'; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"

STYLE = """
body{
  font:13px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:16px 20px;
  color:#1d2330;background:#fff}
h1{font-size:18px;margin:0 0 4px}
h2{font-size:15px;margin:22px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:3px}
.muted{color:#6b7385}
.ok{color:#1f7a3a;font-weight:600}
.bad{color:#b3261e;font-weight:600}
.run{color:#a86b00;font-weight:600}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin-top:8px}
.kv b{font-weight:600}
pre{
  margin:2px 0 6px;padding:6px 8px;background:#f5f7fa;border:1px solid #e3e7ee;border-radius:4px;
  white-space:pre-wrap;overflow-wrap:anywhere;max-height:28em;overflow:auto;
  font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre.code{background:#f1f5ff}
pre.err{background:#fff3f2;border-color:#f3c7c3}
pre.answer{background:#effaf1;border-color:#c5e8cd}
.clip{color:#6b7385;font-style:italic;font-size:12px}
.gap{
  color:#8a5a00;background:#fff7e0;border:1px solid #f0d890;border-radius:4px;padding:2px 6px;
  margin:2px 0;display:inline-block}
.note{color:#8a5a00}
table{border-collapse:collapse;font-size:12px;margin:4px 0 8px}
th,td{padding:2px 8px;text-align:right;border-bottom:1px solid #edf0f4}
th{background:#f5f7fa;font-weight:600}
td.l,th.l{text-align:left}
details{margin:2px 0 2px 4px}
details>summary{cursor:pointer;padding:1px 0}
details.node{border-left:3px solid #c9b8ef;padding-left:8px;margin:6px 0}
details.turn{border-left:2px solid #b9cdf3;padding-left:8px}
details.cell{border-left:2px solid #a7d8b5;padding-left:8px}
summary b{font-weight:600}
.hit{outline:2px solid #f2a900;outline-offset:1px}
button{font:inherit;font-size:12px;margin-right:6px}
#timeline{position:relative;border:1px solid #e3e7ee;border-radius:4px;padding:4px 0;overflow:hidden}
.overlay{position:absolute;top:0;bottom:0;left:110px;right:12px;pointer-events:none}
.tlrow{display:flex;border-bottom:1px solid #f0f2f6}
.tlrow:last-child{border-bottom:0}
.tllab{
  box-sizing:border-box;flex:0 0 110px;padding:0 6px;font-size:11px;white-space:nowrap;overflow:hidden;
  text-overflow:ellipsis;line-height:14px}
.track{position:relative;flex:1;margin-right:12px}
.axis .track{height:18px}
.tick{
  position:absolute;top:0;height:100%;border-left:1px solid #d4d9e2;padding-left:2px;font-size:10px;
  color:#6b7385}
.span{position:absolute;top:0;bottom:0;background:#f4f0fd}
.bar{position:absolute;height:11px;min-width:2px;border-radius:2px;cursor:pointer;opacity:.9}
.bar:hover{opacity:1;outline:1px solid #1d2330}
.bar.cell{background:#3a9d5d}
.bar.root{background:#3b6fd4}
.bar.sub{background:#e08a1e}
.bar.aggregate{background:#8e44ad}
.bar.other{background:#6b7385}
.bar.cached{background-image:repeating-linear-gradient(45deg,transparent 0 3px,#fff8 3px 6px)}
.bar.failed{outline:1px solid #b3261e}
.gapmark{position:absolute;top:0;bottom:0;width:0;border-left:2px dashed #d08b00;pointer-events:auto;z-index:1}
.legend span.sw{
  display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 3px 0 10px;
  vertical-align:-1px}
"""


def esc(value: object) -> str:
    """Any text from a run, made inert."""
    return html.escape(str(value), quote=True)


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


def _pct(t: float, span: float) -> str:
    return f"{max(0.0, min(100.0, t / span * 100)):.3f}%"


@dataclass
class _Bar:
    start: float
    end: float
    kind: str  # "cell" or a call's role
    target: str  # id of its entry in the tree
    label: str
    cached: bool = False
    failed: bool = False


class _Page:
    """Builds the page in one pass over the tree; ids tie each timeline bar to its entry in the tree."""

    def __init__(self, trace: Trace, call_chars: int | None) -> None:
        self.trace = trace
        self.call_chars = call_chars
        self.span = max(trace.duration_s, 1e-3)
        self.bars: dict[tuple[int, ...], list[_Bar]] = {path: [] for path in trace.nodes}
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
            _Bar(cell.start, end, "cell", ident, f"{node.name} cell {cell.index}: {took}", failed=bool(cell.error_kind))
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
                _Bar(
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

    # --- the timeline -----------------------------------------------------------------------------

    def timeline(self) -> str:
        marks = "".join(
            f'<div class="gapmark" style="left:{_pct(gap.at, self.span)}" '
            f'title="unreadable line {gap.line}: {esc(gap.reason)}"></div>'
            for gap in self.trace.gaps
        )
        rows = [f'<div class="overlay">{marks}</div>', self.axis()]  # gaps drawn across every row
        for path in sorted(self.bars):
            node = self.trace.nodes[path]
            rows.append(self.row(node, self.bars[path]))
        return '<div id="timeline">' + "".join(rows) + "</div>"

    def axis(self) -> str:
        step = _tick_step(self.span)
        ticks = []
        t = 0.0
        while t <= self.span * 0.95 or not ticks:  # none at the right edge, where its label would be cut
            label = f"{t * 1000:.0f} ms" if step < 1 else f"{t:g} s"
            ticks.append(f'<div class="tick" style="left:{_pct(t, self.span)}">{label}</div>')
            t += step
        track = "".join(ticks)
        return f'<div class="tlrow axis"><div class="tllab muted">time</div><div class="track">{track}</div></div>'

    def width(self, start: float, end: float) -> str:
        return f"width:{_pct(end - start, self.span)}"

    def row(self, node: Node, bars: list[_Bar]) -> str:
        lanes: list[float] = []  # when each lane is free again
        placed = []
        for bar in sorted(bars, key=lambda b: (b.start, b.kind != "cell")):
            lane = next((i for i, free in enumerate(lanes) if free <= bar.start + 1e-6), None)
            if lane is None and len(lanes) < LANES:
                lanes.append(0.0)
                lane = len(lanes) - 1
            if lane is None:
                lane = min(range(len(lanes)), key=lanes.__getitem__)
            lanes[lane] = max(lanes[lane], bar.end)
            placed.append((lane, bar))
        height = max(1, len(lanes)) * LANE_PX + 2
        end = self.trace.duration_s if node.end is None else node.end
        parts = [f'<div class="span" style="left:{_pct(node.start, self.span)};{self.width(node.start, end)}"></div>']
        for lane, bar in placed:
            css = "bar cell" if bar.kind == "cell" else f"bar call {bar.kind}"
            css += " cached" if bar.cached else ""
            css += " failed" if bar.failed else ""
            parts.append(
                f'<div class="{css}" data-for="{bar.target}" title="{esc(bar.label)}" style="left:'
                f'{_pct(bar.start, self.span)};{self.width(bar.start, bar.end)};top:{lane * LANE_PX + 1}px"></div>'
            )
        label = f'<a href="#node-{"-".join(map(str, node.path))}">{esc(node.name)}</a>'
        return (
            f'<div class="tlrow"><div class="tllab">{label}</div>'
            f'<div class="track" style="height:{height}px">{"".join(parts)}</div></div>'
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


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most ten ticks over `span` seconds."""
    step = 1e-3
    while span / step > 10:
        for factor in (2, 2.5, 2):
            step *= factor
            if span / step <= 10:
                break
    return step


LEGEND = (
    '<div class="legend muted">'
    + "".join(
        f'<span class="sw bar {css}" style="position:static"></span>{label}'
        for css, label in (
            ("call root", "root-model call"),
            ("call sub", "sub call"),
            ("call aggregate", "aggregate call"),
            ("cell", "cell"),
            ("call sub cached", "cache hit"),
        )
    )
    + ' · <span id="tl-count"></span> · click a bar to find it in the tree</div>'
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
        + page.timeline()
        + page.tables()
        + '<h2>Tree</h2><div><button id="expand">expand all</button><button id="collapse">collapse all</button></div>'
        + f'<div id="tree">{tree}</div>'
    )


def render_html(trace: Trace, title: str = "", call_chars: int | None = CALL_CHARS, preface: str = "") -> str:
    """One self-contained page of the trace. `call_chars` cuts each call's prompt and response (None: whole);
    `preface` is markup put first (a link back to an index)."""
    return page_html(f"rlm run {title}".strip(), render_body(trace, title, call_chars, preface))


def page_html(title: str, body: str, script: bool = True) -> str:
    """A whole document around `body`, under the strict policy that runs only `SCRIPT` (when given)."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>{body}"
        + (f"<script>{SCRIPT}</script>" if script else "")
        + "</body></html>"
    )


def iframe(page: str, height_px: int = 640) -> str:
    """The page inside a sandboxed iframe (scripts run, but in an origin of their own): for notebooks."""
    return (
        f'<iframe sandbox="allow-scripts" srcdoc="{esc(page)}" '
        f'style="width:100%;height:{height_px}px;border:1px solid #dde2ea;border-radius:4px"></iframe>'
    )
