"""`RLMResult`: what a query produced, as data (`to_dict`) and as it shows in a REPL or a notebook."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rlm.events import Event
from rlm.types import Status, Usage


@dataclass
class RLMResult:
    """What a query produced. `status` says whether `answer` is complete or a partial best effort."""

    answer: str | None
    status: Status
    usage: Usage
    usage_by_model: dict[str, Usage]
    sub_calls: int  # llm_query calls and child RLMs, the whole tree
    wall_time_s: float
    iterations: int
    error: str | None = None
    trajectory: list[Event] = field(default_factory=list, repr=False)
    usage_by_role: dict[str, Usage] = field(default_factory=dict)  # spent per role: root, sub, aggregate
    cache_hits: int = 0  # calls answered from the response cache (they cost nothing)
    saved_usd: float = 0.0  # what the cache hits cost when they were made
    saved_tokens: int = 0  # the tokens of the cache hits' replies when they were made

    @property
    def ok(self) -> bool:
        return self.status is Status.COMPLETED

    @property
    def cost_usd(self) -> float:
        return self.usage.cost_usd

    @property
    def cost_complete(self) -> bool:
        """False when any call, live or from the cache, was to a model with no known price: a cached
        call spends nothing, but the price of what it replays is as unknown as it was live."""
        calls = (event for event in self.trajectory if event.get("type") == "model_call")
        return self.usage.priced and all(event.get("priced", True) for event in calls)

    def __repr__(self) -> str:
        from rlm.display import result_text

        return result_text(self)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        from rlm.display import result_html

        return result_html(self)

    def to_dict(self, *, trajectory: bool = False) -> dict[str, Any]:
        data = {
            "answer": self.answer,
            "status": self.status.value,
            "error": self.error,
            "cost_usd": self.usage.cost_usd,
            "cost_complete": self.cost_complete,
            "usage": asdict(self.usage),
            "usage_by_model": {model: asdict(usage) for model, usage in self.usage_by_model.items()},
            "usage_by_role": {role: asdict(usage) for role, usage in self.usage_by_role.items()},
            "cache_hits": self.cache_hits,
            "saved_usd": self.saved_usd,
            "saved_tokens": self.saved_tokens,
            "sub_calls": self.sub_calls,
            "iterations": self.iterations,
            "wall_time_s": round(self.wall_time_s, 3),
        }
        if trajectory:
            data["trajectory"] = self.trajectory
        return data
