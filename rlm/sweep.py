"""What the runs of one batch or bench sweep share, locally or on Ray: their rate limits (--rpm,
--tpm, --max-in-flight) and call budget through one `SweepLimiter` that every run's scheduler consults,
and their cost budget through a `CostGate` that lends each run part of what is left as its max_cost.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any

from rlm.errors import ConfigError


def limit_prefix(scope: str) -> str:
    """How the error of a run cut by a whole batch's (or bench sweep's) budget begins."""
    return f"the {scope}'s limit of"


class SweepLimiter:
    """Per-model in-flight, requests-per-`period` and prompt-tokens-per-`period` limits over every run
    of a batch (or, inside a Ray actor, over every worker). Tickets name grants, so a release that
    overtakes its own acquire (a caller cancelled while asking a remote actor) abandons the grant
    instead of leaking it.

    The rates count a call (and its prompt's tokens) from its grant until `period` after it ended, not
    from its grant alone: a provider counts arrivals, and a call may arrive any time between its grant
    and its end (a busy worker, a slow network), so only this count keeps every window at the provider
    within `rpm` and `tpm`. A prompt larger than `tpm` waits for an empty window."""

    def __init__(
        self,
        max_in_flight: int | None = None,
        rpm: int | None = None,
        period: float = 60.0,
        max_calls: int | None = None,
        tpm: int | None = None,
        scope: str = "batch",
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_calls = max_calls
        self.scope = scope  # named in the error of a run cut by max_calls
        self.rpm = rpm
        self.tpm = tpm
        self.period = period
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._tokens_in_flight: collections.Counter[str] = collections.Counter()
        # per model: (end time, prompt tokens) of the calls that ended within the last period
        self._ended: dict[str, collections.deque[tuple[float, int]]] = collections.defaultdict(collections.deque)
        self._granted: dict[str, int] = {}  # ticket -> the tokens it was granted with
        self._abandoned: set[str] = set()
        self._changed = asyncio.Condition()
        self.peak_in_flight = 0
        self.grants = 0

    def _wait_s(self, model: str, tokens: int) -> float | None:
        """0 when a call may go now, the seconds until the rates allow one, None to wait for a release."""
        if self.max_in_flight is not None and self._in_flight[model] >= self.max_in_flight:
            return None
        if self.rpm is None and self.tpm is None:
            return 0.0
        ended, now = self._ended[model], time.monotonic()
        while ended and now - ended[0][0] >= self.period:
            ended.popleft()
        until_oldest = ended[0][0] + self.period - now if ended else None
        if self.rpm is not None and self._in_flight[model] + len(ended) >= self.rpm:
            return until_oldest
        if self.tpm is not None:
            counted = self._tokens_in_flight[model] + sum(n for _, n in ended)
            if counted and counted + min(tokens, self.tpm) > self.tpm:
                return until_oldest
        return 0.0

    def _spent(self) -> bool:
        return self.max_calls is not None and self.grants >= self.max_calls

    async def acquire(self, model: str, tokens: Callable[[], int] | None = None) -> str:
        """A ticket for one call; BudgetExceeded once the batch's calls are spent."""
        counted = tokens() if self.tpm is not None and tokens is not None else 0
        ticket = await self.try_acquire(model, uuid.uuid4().hex, counted)
        if ticket is None:
            raise calls_spent(self.max_calls, self.scope)
        return ticket

    async def try_acquire(self, model: str, ticket: str, tokens: int = 0) -> str | None:
        """`ticket` once granted (or abandoned by an early release); None when the calls are spent."""
        async with self._changed:
            while not self._spent() and ticket not in self._abandoned and (wait := self._wait_s(model, tokens)) != 0.0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
            if ticket in self._abandoned:
                self._abandoned.discard(ticket)
                return ticket
            if self._spent():
                return None
            self._in_flight[model] += 1
            self._tokens_in_flight[model] += tokens
            self._granted[ticket] = tokens
            self.grants += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight[model])
            return ticket

    async def release(self, model: str, ticket: str) -> None:
        async with self._changed:
            if ticket in self._granted:
                tokens = self._granted.pop(ticket)
                self._in_flight[model] -= 1
                self._tokens_in_flight[model] -= tokens
                self._ended[model].append((time.monotonic(), tokens))
            else:
                self._abandoned.add(ticket)
            self._changed.notify_all()

    def stats(self) -> dict[str, int]:
        return {"grants": self.grants, "peak_in_flight": self.peak_in_flight}


def calls_spent(max_calls: int | None, scope: str = "batch") -> Exception:
    from rlm.errors import BudgetExceeded
    from rlm.types import Status

    return BudgetExceeded(Status.MAX_CALLS, f"{limit_prefix(scope)} {max_calls:,} model calls was reached")


def batch_limiter(
    options: dict[str, Any], max_calls: int | None = None, period: float = 60.0, scope: str = "batch"
) -> SweepLimiter | None:
    """The batch-wide limiter --rpm / --tpm / --max-in-flight / --batch-max-calls ask for (None: none)."""
    rpm, tpm, in_flight = options.get("rpm"), options.get("tpm"), options.get("max_in_flight")
    if not (rpm or tpm or in_flight or max_calls is not None):
        return None
    if max_calls is not None and max_calls < 1:
        raise ConfigError(f"--{scope}-max-calls must be at least 1")
    return SweepLimiter(max_in_flight=in_flight, rpm=rpm, period=period, max_calls=max_calls, tpm=tpm, scope=scope)


class CostGate:
    """One cost budget for a whole batch, kept by the driver. Each job starts with a loan that becomes
    its run's max_cost (which the engine never exceeds: every call reserves its worst case first), and
    settles to what the run spent when it ends, so the jobs together never spend more than `budget`.

    A loan is `run_cap` (the runs' own max_cost, else an even share of the budget among the jobs
    running at once); when less than that is left, a job waits for running ones to settle, and when
    nothing is running the last of the budget is lent. Jobs the budget cut, or could not start, get
    rows that name the batch's limit, so a re-run (with more budget) runs them again.

    A Ray worker that dies takes its spending so far with it: the retried job settles only what its
    last attempt spent."""

    def __init__(self, budget: float, run_cap: float, scope: str = "batch") -> None:
        if budget <= 0:
            raise ConfigError(f"--{scope}-max-cost must be positive")
        self.budget, self.run_cap = budget, min(run_cap, budget)
        self.scope = scope  # "batch", or "sweep" for rlm bench: named in the error of a cut run
        self.spent = 0.0
        self.lent = 0.0

    @classmethod
    def for_batch(
        cls, budget: float | None, run_max_cost: float | None, concurrency: int, scope: str = "batch"
    ) -> CostGate | None:
        if budget is None:
            return None
        return cls(budget, run_max_cost if run_max_cost is not None else budget / max(1, concurrency), scope)

    def lend(self) -> float | None:
        """The next job's loan; 0.0 when it must wait for a running job to settle; None when spent."""
        left = self.budget - self.spent - self.lent
        if left >= self.run_cap - 1e-12:
            loan = self.run_cap
        elif self.lent > 0:
            return 0.0
        elif left > 1e-9:
            loan = left
        else:
            return None
        self.lent += loan
        return loan

    def settle(
        self, loan: float, cost_usd: float, status: str, error: str | None, run_max_cost: float | None
    ) -> str | None:
        """Count what the job spent; returns its error, naming this budget when the loan, below the
        run's own cap, is what cut it."""
        self.lent -= loan
        self.spent += cost_usd
        own_cap = float("inf") if run_max_cost is None else run_max_cost
        if status == "max_cost" and loan < own_cap:
            return f"{limit_prefix(self.scope)} ${self.budget:g} in all left this job ${loan:.4g}: {error}"
        return error

    def settle_row(self, loan: float, row: dict[str, Any], run_max_cost: float | None) -> dict[str, Any]:
        error = self.settle(
            loan, float(row.get("cost_usd") or 0.0), row.get("status", ""), row.get("error"), run_max_cost
        )
        return row | {"error": error}

    def spent_error(self) -> str:
        """The error of a job the budget could not start."""
        return f"{limit_prefix(self.scope)} ${self.budget:g} in all was spent (${self.spent:.4f}) before this started"
