"""Per-cell limits of a REPL session: plain data, so they travel to the worker as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CellLimits:
    """What one cell may use. The defaults suit model-written analysis code.

    * `timeout_s`: wall-clock time of the cell's own work. Time spent waiting for the host on
      `llm_query` and friends does not count (the engine's budget bounds those).
    * `memory_mb`: address space the worker may add beyond its start (interpreter and context mmap).
    * `output_chars`: stdout kept per cell (head and tail); `flood_chars` of output stops the cell.
    * `recursion`: nested Python calls the cell may make.
    * `snapshot_chars`: JSON size of the user variables kept host-side to survive a worker restart.
    * `code_chars`: the longest cell source accepted.
    * `answer_chars`: the longest `answer['content']` (and FINAL value) kept; longer ones are cut.
    * `batch_prompts`: the most prompts one `llm_query_batched` / `rlm_query_batched` call may send.
    * `cpu_s`: CPU time of one cell (None: as long as `timeout_s`). Python code past it is stopped
      with an error and the session keeps its state; a C-level call that cannot be interrupted (a
      catastrophic regular expression, a huge `pow`) is killed by the kernel's CPU limit a moment
      later, and the session restarts with the variables of the last finished cell.
    * `restore_s`: time a fresh worker may spend re-running the saved definitions after a restart;
      what is left then is dropped (and reported), so a killed cell never costs a second long wait.
    """

    timeout_s: float = 60.0
    memory_mb: int = 1024
    output_chars: int = 20_000
    flood_chars: int = 2_000_000
    recursion: int = 200
    snapshot_chars: int = 8_000_000
    code_chars: int = 500_000
    answer_chars: int = 1_000_000
    kill_grace_s: float = 0.5
    cpu_s: float | None = None
    restore_s: float = 5.0
    batch_prompts: int = 1_000

    def batch_problem(self, name: str, prompts: object) -> str | None:
        """Why a batched call with `prompts` is refused (too many), or None."""
        size = len(prompts) if isinstance(prompts, list | tuple) else 0
        if size <= self.batch_prompts:
            return None
        return (
            f"{name}() takes at most {self.batch_prompts:,} prompts per call, got {size:,}; "
            "send them in slices, or summarise first with fewer, larger prompts"
        )

    @property
    def cell_cpu_s(self) -> float:
        """The CPU time a cell may use."""
        return self.timeout_s if self.cpu_s is None else min(self.cpu_s, self.timeout_s)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellLimits:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
