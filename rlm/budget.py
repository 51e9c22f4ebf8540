"""Tree-wide limits: wall time, cost, tokens and model calls, shared by the root and every child.

Before a call is sent the gateway reserves its worst case (`reserve`): one call, its prompt and the
longest reply it may get (the `max_tokens` it is sent with), at its model's price (tokens only for a
model without a price). A reservation that does not fit beside what was spent and what calls in flight
hold waits for them to settle; one that cannot fit even then is refused and the call is not sent. When
the call ends, `settle` replaces its reservation with what it used. So no fan-out, however wide, spends
past a limit. The first limit reached trips the budget once; the run's owner is told (`on_trip`) and
cancels the whole tree, so no descendant keeps spending.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rlm.config import DEFAULT_MAX_CALLS, LimitSettings
from rlm.errors import BudgetExceeded
from rlm.types import ZERO_USAGE, Status, Usage

# The longest reply a call may get when a cost or token limit needs one and `max_completion_tokens`
# is not set: without a bound on the reply, no worst case could be reserved.
DEFAULT_COMPLETION_CAP = 8192


@dataclass(frozen=True)
class Limits:
    """What a budget bounds; None is no limit. A run's come from its settings (`Limits.of`), whose
    defaults they are: a Limits built here by hand bounds only what it names."""

    timeout_s: float | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    max_calls: int | None = None
    max_completion_tokens: int | None = None  # per call; sent as the call's max_tokens

    @classmethod
    def of(cls, settings: LimitSettings) -> Limits:
        return cls(
            timeout_s=settings.timeout,
            max_cost=settings.max_cost,
            max_tokens=settings.max_tokens,
            max_calls=settings.max_calls,
            max_completion_tokens=settings.max_completion_tokens,
        )


@dataclass(eq=False)
class Reservation:
    """One call's worst case, held from before it is sent until it is settled."""

    worst: Usage
    settled: bool = field(default=False, init=False)


class Budget:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.started = time.monotonic()
        self.spent: Usage = ZERO_USAGE
        self.tripped: BudgetExceeded | None = None
        self._on_trip: list[Callable[[BudgetExceeded], None]] = []
        self._held: set[Reservation] = set()
        self._held_total: Usage = ZERO_USAGE  # the sum of their worst cases, kept as they come and go
        self._waiters: list[asyncio.Future[None]] = []

    def on_trip(self, callback: Callable[[BudgetExceeded], None]) -> None:
        self._on_trip.append(callback)

    @property
    def held(self) -> Usage:
        """The worst cases of the calls sent and not yet settled (calls, tokens and cost)."""
        return self._held_total

    @property
    def reserved(self) -> int:
        """Calls sent and not yet settled."""
        return len(self._held)

    @property
    def completion_cap(self) -> int | None:
        """The longest reply a call may get (sent as its max_tokens), or None when no limit needs one."""
        if self.limits.max_completion_tokens is not None:
            return self.limits.max_completion_tokens
        if self.limits.max_cost is not None or self.limits.max_tokens is not None:
            return DEFAULT_COMPLETION_CAP
        return None

    @property
    def counts_tokens(self) -> bool:
        """Whether a call's worst case in tokens and cost matters (else only the call itself does)."""
        return self.limits.max_cost is not None or self.limits.max_tokens is not None

    def remaining_s(self) -> float | None:
        if self.limits.timeout_s is None:
            return None
        return self.limits.timeout_s - (time.monotonic() - self.started)

    async def reserve(self, worst: Usage) -> Reservation:
        """Hold `worst` against every limit before its call is sent. A call that fits once calls in
        flight settle waits for them; one that cannot fit even then trips the budget and raises
        BudgetExceeded: it is not sent."""
        while True:
            self.ensure_open()
            refusal = self._refusal(worst, self.spent)
            if refusal is not None:
                self._trip_if(refusal)
                raise self.tripped or refusal
            if self._refusal(worst, self.spent + self.held) is None:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        reservation = Reservation(worst)
        self._held.add(reservation)
        self._held_total = self._held_total + worst
        return reservation

    def settle(self, reservation: Reservation, used: Usage) -> None:
        """Replace a call's reservation with what it `used` (ZERO_USAGE: a refused request, not
        counted). Idempotent. Reaching a limit trips the budget."""
        if reservation.settled:
            return
        reservation.settled = True
        self._held.discard(reservation)
        self._held_total = _without(self._held_total, reservation.worst) if self._held else ZERO_USAGE
        self.record(used)
        self._wake()

    def ensure_open(self) -> None:
        """Raise if the budget has tripped (or the time is up): even a free cache hit must not let a
        stopped tree go on."""
        remaining = self.remaining_s()
        if self.tripped is None and remaining is not None and remaining <= 0:
            self._trip_if(self._over())
        if self.tripped is not None:
            raise self.tripped

    def record(self, usage: Usage) -> None:
        """Count spending that had no reservation. Reaching a limit trips the budget."""
        self.spent = self.spent + usage
        if self.tripped is None:
            self._trip_if(self._over())

    def trip(self, status: Status, message: str) -> None:
        """Trip from outside (the run's own deadline, for example)."""
        self._trip_if(BudgetExceeded(status, message))

    def _over(self) -> BudgetExceeded | None:
        """A limit that what was spent has reached."""
        limits, spent = self.limits, self.spent
        remaining = self.remaining_s()
        if remaining is not None and remaining <= 0:
            return BudgetExceeded(Status.TIMEOUT, f"the time limit of {limits.timeout_s:g} s was reached")
        if limits.max_cost is not None and spent.cost_usd >= limits.max_cost:
            return BudgetExceeded(
                Status.MAX_COST, f"the cost limit of ${limits.max_cost:g} was reached (${spent.cost_usd:.4f})"
            )
        if limits.max_tokens is not None and spent.total_tokens >= limits.max_tokens:
            return BudgetExceeded(
                Status.MAX_TOKENS,
                f"the token limit of {limits.max_tokens:,} was reached ({spent.total_tokens:,} tokens)",
            )
        return None

    def _refusal(self, worst: Usage, base: Usage) -> BudgetExceeded | None:
        """The limit that `worst` on top of `base` would pass."""
        limits = self.limits
        if limits.max_calls is None and limits.max_cost is None and limits.max_tokens is None:
            return None
        total = base + worst
        reply = f"its prompt and a reply of up to {worst.completion_tokens:,} tokens; a lower max_completion_tokens"
        reply += " fits more calls"
        if limits.max_calls is not None and total.calls > limits.max_calls:
            return BudgetExceeded(Status.MAX_CALLS, calls_message(limits.max_calls))
        if limits.max_cost is not None and total.cost_usd > limits.max_cost:
            return BudgetExceeded(
                Status.MAX_COST,
                f"the cost limit of ${limits.max_cost:g} cannot cover the next call: ${self.spent.cost_usd:.4f} spent, "
                f"and it could cost up to ${worst.cost_usd:.4f} ({reply})",
            )
        if limits.max_tokens is not None and total.total_tokens > limits.max_tokens:
            return BudgetExceeded(
                Status.MAX_TOKENS,
                f"the token limit of {limits.max_tokens:,} cannot cover the next call: {self.spent.total_tokens:,} "
                f"tokens spent, and it could use up to {worst.total_tokens:,} ({reply})",
            )
        return None

    def _trip_if(self, exceeded: BudgetExceeded | None) -> None:
        if exceeded is None or self.tripped is not None:
            return
        self.tripped = exceeded
        self._wake()
        for callback in self._on_trip:
            callback(exceeded)

    def _wake(self) -> None:
        """Let every waiting reservation look again."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def calls_message(max_calls: int) -> str:
    """The call limit reached, and how to raise or lift it (the default one trips on runaway loops)."""
    return (
        f"the limit of {max_calls:,} model calls was reached (max_calls; the default is {DEFAULT_MAX_CALLS:,}): "
        "raise it with --max-calls N (RLM(max_calls=N), RLM_MAX_CALLS), or lift it with 0"
    )


def _without(total: Usage, part: Usage) -> Usage:
    """`total` less `part`, in calls, tokens and cost (what a limit compares)."""
    return Usage(
        prompt_tokens=total.prompt_tokens - part.prompt_tokens,
        completion_tokens=total.completion_tokens - part.completion_tokens,
        cost_usd=total.cost_usd - part.cost_usd,
        priced=total.priced,
        calls=total.calls - part.calls,
    )
