"""The timeline of a trace's page: every model call and cell of the tree as a bar on one time axis, a row
per node, overlapping bars stacked in lanes, so streaming overlap and fan-out show at a glance. The
tree (html.py) hands it the bars, each tied by id to its entry in the tree.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlm.view.page import esc
from rlm.view.tree import Node, Trace

LANES = 12  # bars stacked per timeline row at most; more concurrent ones share lanes
LANE_PX = 14


def _pct(t: float, span: float) -> str:
    return f"{max(0.0, min(100.0, t / span * 100)):.3f}%"


@dataclass
class Bar:
    """One model call or cell on the timeline, tied by `target` to its entry in the tree."""

    start: float
    end: float
    kind: str  # "cell" or a call's role
    target: str  # id of its entry in the tree
    label: str
    cached: bool = False
    failed: bool = False


def timeline(trace: Trace, bars: dict[tuple[int, ...], list[Bar]]) -> str:
    """The timeline of `trace`, a row per node with its `bars`, and a mark where a line could not be read."""
    span = max(trace.duration_s, 1e-3)
    marks = "".join(
        f'<div class="gapmark" style="left:{_pct(gap.at, span)}" '
        f'title="unreadable line {gap.line}: {esc(gap.reason)}"></div>'
        for gap in trace.gaps
    )
    rows = [f'<div class="overlay">{marks}</div>', _axis(span)]  # gaps drawn across every row
    rows += [_row(trace, trace.nodes[path], bars[path], span) for path in sorted(bars)]
    return '<div id="timeline">' + "".join(rows) + "</div>"


def _axis(span: float) -> str:
    step = _tick_step(span)
    ticks = []
    t = 0.0
    while t <= span * 0.95 or not ticks:  # none at the right edge, where its label would be cut
        label = f"{t * 1000:.0f} ms" if step < 1 else f"{t:g} s"
        ticks.append(f'<div class="tick" style="left:{_pct(t, span)}">{label}</div>')
        t += step
    track = "".join(ticks)
    return f'<div class="tlrow axis"><div class="tllab muted">time</div><div class="track">{track}</div></div>'


def _width(span: float, start: float, end: float) -> str:
    return f"width:{_pct(end - start, span)}"


def _row(trace: Trace, node: Node, bars: list[Bar], span: float) -> str:
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
    end = trace.duration_s if node.end is None else node.end
    parts = [f'<div class="span" style="left:{_pct(node.start, span)};{_width(span, node.start, end)}"></div>']
    for lane, bar in placed:
        css = "bar cell" if bar.kind == "cell" else f"bar call {bar.kind}"
        css += " cached" if bar.cached else ""
        css += " failed" if bar.failed else ""
        parts.append(
            f'<div class="{css}" data-for="{bar.target}" title="{esc(bar.label)}" style="left:'
            f'{_pct(bar.start, span)};{_width(span, bar.start, bar.end)};top:{lane * LANE_PX + 1}px"></div>'
        )
    label = f'<a href="#node-{"-".join(map(str, node.path))}">{esc(node.name)}</a>'
    return (
        f'<div class="tlrow"><div class="tllab">{label}</div>'
        f'<div class="track" style="height:{height}px">{"".join(parts)}</div></div>'
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
