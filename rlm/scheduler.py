"""One scheduler for every model call in the tree: fair in-flight slots, rate limits, retry timing.

Per model there is a fixed number of in-flight slots. When one frees up it goes to the waiting flow
(one node of the tree and one role: its root turns or its sub-calls) with the fewest calls in flight,
then first come first served, so a deep fan-out cannot starve its siblings or its parent. Requests per
minute (asyncio-throttle) and prompt tokens per minute are enforced after the slot is granted, in the
order slots were granted. A 429 with Retry-After pauses the whole model, not just the call that got it.

A slot is held only for the duration of one provider call, never while REPL code waits for children,
so a parent can never deadlock its own descendants.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Protocol

from asyncio_throttle import Throttler

from rlm.config import DEFAULTS, LimitSettings
from rlm.errors import ProviderError
from rlm.types import CallOrigin

WINDOW_S = 60.0  # rpm and tpm are per minute


@dataclass(frozen=True)
class ModelLimits:
    max_in_flight: int = DEFAULTS.limits.max_in_flight
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # prompt tokens per minute (estimated before sending)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a provider's Retry-After wins when it is longer.

    A Retry-After longer than `max_retry_after_s` gives up at once: the item fails with a readable
    error instead of silently stalling the tree.
    """

    max_attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, error: ProviderError) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up."""
        if not error.transient or attempt >= self.max_attempts:
            return None
        backoff = random.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))
        if error.retry_after is None:
            return backoff
        if error.retry_after > self.max_retry_after_s:
            return None
        # a little jitter above Retry-After, so calls told the same instant do not return together
        return max(backoff, error.retry_after * random.uniform(1.0, 1.1))


class TokenWindow:
    """At most `limit` tokens sent in any `period` seconds (asyncio-throttle only counts requests)."""

    def __init__(self, limit: int, period: float = WINDOW_S) -> None:
        self.limit = limit
        self.period = period
        self._sent: deque[tuple[float, int]] = deque()
        self._total = 0

    async def acquire(self, tokens: int) -> None:
        tokens = min(tokens, self.limit)  # a request bigger than the window waits for an empty one
        while True:
            now = time.monotonic()
            while self._sent and now - self._sent[0][0] >= self.period:
                self._total -= self._sent.popleft()[1]
            if self._total + tokens <= self.limit:
                break
            await asyncio.sleep(self._sent[0][0] + self.period - now)
        self._sent.append((time.monotonic(), tokens))
        self._total += tokens


class _Gate:
    """One model's slots and rates. Waiters are futures queued per flow; a release hands its slot
    directly to the chosen waiter, so a grant can never be stolen by a newcomer."""

    def __init__(self, limits: ModelLimits) -> None:
        self.capacity = limits.max_in_flight
        self.in_flight = 0
        self.by_flow: dict[CallOrigin, int] = {}
        self.waiting: dict[CallOrigin, deque[tuple[int, asyncio.Future[None]]]] = {}
        self.queued = 0
        self._seq = itertools.count()
        self.requests = Throttler(limits.rpm, WINDOW_S) if limits.rpm else None
        self.tokens = TokenWindow(limits.tpm) if limits.tpm else None
        self.paced = asyncio.Lock()  # one caller at a time waits on the rates, in grant order
        self.resume_at = 0.0  # monotonic time before which no request is sent (after a 429)

    async def acquire(self, flow: CallOrigin) -> None:
        if self.in_flight < self.capacity and not self.queued:
            self.in_flight += 1
            self.by_flow[flow] = self.by_flow.get(flow, 0) + 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (next(self._seq), granted)
        self.waiting.setdefault(flow, deque()).append(entry)
        self.queued += 1
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(flow)  # the slot was handed over just before the cancel: pass it on
            elif entry in self.waiting.get(flow, ()):  # release() may have dropped it already
                self._unqueue(flow, entry)
            raise

    def release(self, flow: CallOrigin) -> None:
        left = self.by_flow[flow] - 1
        if left:
            self.by_flow[flow] = left
        else:
            del self.by_flow[flow]
        while self.queued:
            # the waiting flow with the fewest calls in flight, then the longest-waiting one
            chosen = min(self.waiting, key=lambda f: (self.by_flow.get(f, 0), self.waiting[f][0][0]))
            entry = self.waiting[chosen][0]
            self._unqueue(chosen, entry)
            if not entry[1].cancelled():
                self.by_flow[chosen] = self.by_flow.get(chosen, 0) + 1
                entry[1].set_result(None)
                return
        self.in_flight -= 1

    def _unqueue(self, flow: CallOrigin, entry: tuple[int, asyncio.Future[None]]) -> None:
        queue = self.waiting[flow]
        queue.remove(entry)
        if not queue:
            del self.waiting[flow]
        self.queued -= 1

    async def pace(self, tokens: Callable[[], int] | None) -> None:
        """Wait out a Retry-After pause and the request and token rates."""
        if self.requests is None and self.tokens is None and time.monotonic() >= self.resume_at:
            return
        async with self.paced:
            while (pause := self.resume_at - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            if self.requests is not None:
                await self.requests.acquire()
            if self.tokens is not None and tokens is not None:
                await self.tokens.acquire(tokens())


class SharedLimiter(Protocol):
    """Limits shared beyond one run (every run of a batch, every worker of a Ray cluster): consulted
    once per provider call, after the run's own slot and rates, and released when the call ends."""

    async def acquire(self, model: str, tokens: Callable[[], int] | None = None) -> object:
        """A ticket for one call; `tokens` estimates its prompt (asked only by a limiter with a tpm)."""
        ...

    async def release(self, model: str, ticket: object) -> None: ...


_shared_limiter: SharedLimiter | None = None


def set_shared_limiter(limiter: SharedLimiter | None) -> SharedLimiter | None:
    """Make every Scheduler created afterwards in this process consult `limiter`; returns the previous
    one. Runs build their own Scheduler, so a batch or a Ray worker installs its limiter here."""
    global _shared_limiter
    previous, _shared_limiter = _shared_limiter, limiter
    return previous


@dataclass
class Scheduler:
    default: ModelLimits = field(default_factory=ModelLimits)
    per_model: dict[str, ModelLimits] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    shared: SharedLimiter | None = field(default_factory=lambda: _shared_limiter)
    _gates: dict[str, _Gate] = field(default_factory=dict, init=False)

    @classmethod
    def of(cls, limits: LimitSettings) -> Scheduler:
        """A run's scheduler: the rates of its settings for every model, overridden per model."""
        default = ModelLimits(max_in_flight=limits.max_in_flight, rpm=limits.rpm, tpm=limits.tpm)
        per_model = {model: replace(default, **table) for model, table in (limits.model_limits or {}).items()}
        return cls(default=default, per_model=per_model)

    def _gate(self, model: str) -> _Gate:
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates[model] = _Gate(self.per_model.get(model, self.default))
        return gate

    @asynccontextmanager
    async def slot(
        self, model: str, origin: CallOrigin, tokens: Callable[[], int] | None = None
    ) -> AsyncIterator[None]:
        """Hold one of `model`'s slots for one provider call. `tokens` estimates the prompt's size;
        it is only called when the model has a tokens-per-minute limit."""
        gate = self._gate(model)
        await gate.acquire(origin)
        ticket: object = None
        try:
            await gate.pace(tokens)
            if self.shared is not None:
                ticket = await self.shared.acquire(model, tokens)
            yield
        except ProviderError as error:
            if error.status_code == 429 and error.retry_after:
                gate.resume_at = max(gate.resume_at, time.monotonic() + error.retry_after)
            raise
        finally:
            if ticket is not None and self.shared is not None:
                await asyncio.shield(self.shared.release(model, ticket))
            gate.release(origin)

    def in_flight(self, model: str) -> int:
        """Slots of `model` held right now (calls being sent or waiting on the rates)."""
        gate = self._gates.get(model)
        return gate.in_flight if gate else 0

    def waiting(self, model: str) -> int:
        """Calls queued for a slot of `model`."""
        gate = self._gates.get(model)
        return gate.queued if gate else 0
