"""What a trace reads into: the run as a tree of nodes, each with its turns, cells, model calls and child
nodes, plus the totals of tokens and cost over any set of calls. Times are seconds from the run's start.
trace.py builds it from events; the renderers only draw it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Text:
    """A text as kept: its head and how many characters were left out."""

    value: str
    omitted: int = 0

    def __bool__(self) -> bool:
        return bool(self.value) or self.omitted > 0


@dataclass
class Call:
    """One model call: who made it, what it cost and when it ran (seconds from the run's start)."""

    role: str
    model: str
    start: float
    end: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    cached: bool = False
    saved_usd: float = 0.0
    finish_reason: str | None = None
    prompt: Text = field(default_factory=lambda: Text(""))
    response: Text = field(default_factory=lambda: Text(""))

    @property
    def latency_s(self) -> float:
        return self.end - self.start


@dataclass
class Cell:
    """One code block run in a node's REPL, with the calls and child nodes it made."""

    iteration: int
    index: int
    code: Text
    start: float
    end: float | None = None
    stdout: Text = field(default_factory=lambda: Text(""))
    error: Text = field(default_factory=lambda: Text(""))
    error_kind: str | None = None
    notice: str | None = None
    calls: list[Call] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)


@dataclass
class Turn:
    """One reply of a node's root model and the cells run from it."""

    iteration: int
    start: float
    end: float | None = None
    text: Text = field(default_factory=lambda: Text(""))
    answered: bool = False
    calls: list[Call] = field(default_factory=list)  # the streamed root call(s), retries included
    cells: list[Cell] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # interrupted streams, model errors, fallbacks


@dataclass
class Node:
    """One RLM of the tree: the root (path ()) or a child started by `rlm_query` from a parent's cell."""

    path: tuple[int, ...]
    start: float
    question: Text = field(default_factory=lambda: Text(""))
    end: float | None = None
    status: str = "running"
    answer: Text = field(default_factory=lambda: Text(""))
    iterations: int = 0
    turns: list[Turn] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)  # made outside any turn or cell (the last word)
    notes: list[str] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)  # started outside any cell (older traces)

    @property
    def name(self) -> str:
        return "root" if not self.path else "child " + ".".join(str(i) for i in self.path)

    def all_calls(self) -> list[Call]:
        """This node's own calls (not its children's)."""
        calls = list(self.calls)
        for turn in self.turns:
            calls += turn.calls
            for cell in turn.cells:
                calls += cell.calls
        return calls

    def cells(self) -> list[Cell]:
        return [cell for turn in self.turns for cell in turn.cells]

    def child_nodes(self) -> list[Node]:
        return [*self.children, *(child for cell in self.cells() for child in cell.children)]


@dataclass
class Gap:
    """A line that could not be read, shown where it was."""

    line: int
    reason: str
    at: float = 0.0  # the latest time read before it (seconds from the run's start): where it goes on a timeline


@dataclass
class Totals:
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    saved_usd: float = 0.0

    def add(self, call: Call) -> None:
        self.calls += 1
        self.cache_hits += call.cached
        self.prompt_tokens += call.prompt_tokens
        self.completion_tokens += call.completion_tokens
        self.cost_usd += call.cost_usd
        self.priced = self.priced and call.priced
        self.saved_usd += call.saved_usd

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Trace:
    """A whole run: its nodes as a tree, the answer, totals, and the gaps met while reading."""

    question: Text = field(default_factory=lambda: Text(""))
    models: dict[str, str] = field(default_factory=dict)
    method: str = "rlm"
    status: str = "running"  # until a run_end event says otherwise
    answer: Text = field(default_factory=lambda: Text(""))
    error: Text = field(default_factory=lambda: Text(""))
    root: Node | None = None
    nodes: dict[tuple[int, ...], Node] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)  # every call in the order it ended
    gaps: list[Gap] = field(default_factory=list)
    events: int = 0
    started: float | None = None  # epoch seconds of the first event; times in the tree are relative to it
    duration_s: float = 0.0  # from the first event to the last

    @property
    def ended(self) -> bool:
        return self.status != "running"

    def totals(self) -> Totals:
        return _totals(self.calls)

    def by_model(self) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for call in self.calls:
            out.setdefault(call.model, Totals()).add(call)
        return out

    def node_totals(self, node: Node) -> Totals:
        return _totals(node.all_calls())


def _totals(calls: Iterable[Call]) -> Totals:
    totals = Totals()
    for call in calls:
        totals.add(call)
    return totals
