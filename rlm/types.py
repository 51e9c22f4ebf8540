"""Plain data that crosses module boundaries: usage, completions, statuses.

Everything here is a small frozen-or-plain dataclass so that it can be logged to a trace,
compared in tests and sent across a process boundary as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Why a run (or one node of the tree) ended. Every value but COMPLETED is a partial result."""

    COMPLETED = "completed"
    MAX_ITERATIONS = "max_iterations"
    TIMEOUT = "timeout"
    MAX_COST = "max_cost"
    MAX_TOKENS = "max_tokens"
    MAX_CALLS = "max_calls"
    INTERRUPTED = "interrupted"
    PROVIDER_ERROR = "provider_error"
    ERROR = "error"  # the run could not go on: the REPL could not start, the context file changed


class Role(StrEnum):
    """What a model call is for; the router picks a model per role."""

    ROOT = "root"  # plans and writes REPL code (the root of the tree and every child RLM)
    SUB = "sub"  # llm_query: search, extract, classify
    AGGREGATE = "aggregate"  # llm_query(..., role="aggregate"): a final synthesis, for the strong model


@dataclass(frozen=True)
class Usage:
    """Tokens and money of one or more calls. `priced` is False when any call had no known price."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True
    calls: int = 1

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
            priced=self.priced and other.priced,
            calls=self.calls + other.calls,
        )


ZERO_USAGE = Usage(calls=0)


@dataclass
class Completion:
    """One finished model reply."""

    text: str
    model: str
    usage: Usage = ZERO_USAGE
    cached: bool = False
    latency_s: float = 0.0
    finish_reason: str | None = None  # as the provider said: "stop", "length" (cut at max tokens), ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CallOrigin:
    """Who in the recursion tree makes a call: used for fairness, budgets and the trace.

    `path` is the node's position from the root, e.g. () for the root, (3,) for its fourth child.
    """

    path: tuple[int, ...] = ()
    role: Role = Role.ROOT

    @property
    def depth(self) -> int:
        return len(self.path)


@dataclass
class CellOutcome:
    """What the engine needs back from running one REPL cell (the sandbox fills it)."""

    stdout: str = ""
    error: str | None = None
    error_kind: str | None = None  # None | exception | policy | timeout | cpu | memory | output | killed
    duration_s: float = 0.0
    answer: dict[str, Any] = field(default_factory=lambda: {"content": "", "ready": False})
    final: str | None = None  # set when the cell called FINAL(x) or FINAL_VAR(name)
    variables: list[str] = field(default_factory=list)
    notice: str | None = None  # e.g. "worker restarted; lost variables: x, y"
