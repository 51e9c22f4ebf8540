"""The one entry point for model calls: route, refuse non-local endpoints, serve from the cache, check
the budget, take a slot, retry, fall back, account.

The engine never calls litellm directly. Every call of the tree passes here, which is what makes
tree-wide budgets, per-model limits, the cache and the usage report exact. The budget's gate around
each request is `rlm.models.metering`; who sends it, `rlm.models.transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rlm.budget import Budget
from rlm.errors import ProviderError, StreamInterrupted
from rlm.events import EventLog
from rlm.models import provider
from rlm.models.cache import CachedReply, ResponseCache
from rlm.models.local_only import LocalPolicy
from rlm.models.metering import capped, metered
from rlm.models.prompt_cache import with_cache_hints
from rlm.models.provider import Endpoint
from rlm.models.router import Decision, Router, Routes
from rlm.models.transport import Transport, select_transport
from rlm.prompts import clip
from rlm.scheduler import Scheduler
from rlm.types import ZERO_USAGE, CallOrigin, Completion, Role, Usage

if TYPE_CHECKING:
    from rlm.models.workers import CallWorkers

TRACE_CHARS = 4000  # sub-call prompts can hold whole chunks; the trace keeps their head and tail
REPLAY_PIECE = re.compile(r"\s*\S+|\s+")  # a cached reply is replayed word by word, like a live stream

__all__ = ["ModelGateway", "Routes"]


class _PrefixSkipper:
    """Drops the start of a live stream that repeats an already replayed prefix; a live reply that
    differs from the prefix cannot be joined to it and ends the stream as interrupted."""

    def __init__(self, prefix: str, model: str) -> None:
        self.prefix = prefix
        self.model = model
        self.seen = ""

    def feed(self, delta: str) -> str:
        if not self.prefix:
            return delta
        self.seen += delta
        if len(self.seen) < len(self.prefix):
            if not self.prefix.startswith(self.seen):
                raise self._diverged()
            return ""
        if not self.seen.startswith(self.prefix):
            raise self._diverged()
        rest, self.prefix = self.seen[len(self.prefix) :], ""
        return rest

    def _diverged(self) -> StreamInterrupted:
        return StreamInterrupted(
            "the live reply differs from its cached beginning", partial_text=self.prefix, model=self.model
        )


class ModelGateway:
    def __init__(
        self,
        routes: Routes | Router,
        *,
        budget: Budget,
        scheduler: Scheduler,
        events: EventLog,
        cache: ResponseCache | None = None,
        local_only: LocalPolicy | None = None,
        workers: CallWorkers | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.router = routes if isinstance(routes, Router) else Router(routes)
        self.budget = budget
        self.scheduler = scheduler
        self.events = events
        self.cache = cache
        self.local_only = local_only
        # who makes the HTTP call: `transport`, else rlm's own client for OpenAI-compatible endpoints and
        # litellm for the rest, in call workers (processes of their own) when there are any
        self._calls: Transport = transport or select_transport(litellm_calls=workers)
        self.usage_by_model: dict[str, Usage] = {}
        self.usage_by_role: dict[str, Usage] = {}
        self.sub_calls = 0  # calls made from REPL code (llm_query and friends), not root turns
        self.cache_hits = 0
        self.saved_usd = 0.0
        self.saved_tokens = 0
        self._in_flight: dict[str, asyncio.Future[tuple[int, Completion]]] = {}  # single-flight, by cache key
        if local_only is not None:  # a misconfigured run fails before its first call, not midway
            for endpoint in self.router.routes.configured():
                local_only.check(endpoint)

    def close(self) -> None:
        """Release the cache's database handles (the cached data stays on disk)."""
        if self.cache is not None:
            self.cache.close()

    @property
    def routes(self) -> Routes:
        return self.router.routes

    @property
    def total_usage(self) -> Usage:
        return sum(self.usage_by_model.values(), ZERO_USAGE)

    async def complete(
        self, messages: list[dict[str, Any]], origin: CallOrigin, model: str | None = None
    ) -> Completion:
        """One reply. Every candidate (the routed model, then its fallback chain) is looked up in the
        cache before any live call, so a re-run after a fallback calls nobody. Identical cacheable
        calls in flight at once share one provider request (single-flight)."""
        decision, candidates, keys = self._begin(messages, origin, model)
        while True:
            hit = self._cached(keys)
            if hit is not None:
                index, reply = hit
                completion = Completion(reply.text, candidates[index].model, reply.usage, cached=True)
                self._count(reply.usage)
                self._account(completion, origin, messages, self._reason(decision, index))
                return completion
            key = keys[0]
            leader = self._in_flight.get(key) if key else None
            if leader is None:
                break
            try:
                index, shared = await asyncio.shield(leader)
            except asyncio.CancelledError:
                if leader.cancelled():  # the leading call was cancelled, not this one: go again
                    continue
                raise
            completion = Completion(shared.text, shared.model, shared.usage, cached=True)
            self._count(shared.usage)
            self._account(completion, origin, messages, self._reason(decision, index))
            return completion
        if not any(keys):  # not cacheable: no lookups counted, no merging
            return (await self._complete_live(decision, candidates, keys, origin, messages))[1]
        self._count(None)
        future: asyncio.Future[tuple[int, Completion]] = asyncio.get_running_loop().create_future()
        if keys[0]:
            self._in_flight[keys[0]] = future
        try:
            index, completion = await self._complete_live(decision, candidates, keys, origin, messages)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody was waiting
            raise
        else:
            future.set_result((index, completion))
        finally:
            if keys[0] and self._in_flight.get(keys[0]) is future:
                del self._in_flight[keys[0]]
        return completion

    async def _complete_live(
        self,
        decision: Decision,
        candidates: list[Endpoint],
        keys: list[str | None],
        origin: CallOrigin,
        messages: list[dict[str, Any]],
    ) -> tuple[int, Completion]:
        """Live calls down the candidates until one answers: (its index, the completion)."""
        for index, endpoint in enumerate(candidates):
            prepared = self._prepare(endpoint, origin, messages)
            try:
                completion = await self._with_retries(
                    endpoint, origin, messages, lambda e=endpoint, p=prepared: self._calls.complete(e, p)
                )
            except ProviderError as error:
                if index + 1 == len(candidates):
                    raise
                self._fall_back(endpoint, candidates[index + 1], origin, error)
                continue
            self._account(completion, origin, messages, self._reason(decision, index))
            if self.cache and keys[index]:
                self.cache.put(keys[index], completion)
            return index, completion
        raise AssertionError("unreachable: the last candidate returns or raises")

    async def stream(
        self, messages: list[dict[str, Any]], origin: CallOrigin, model: str | None = None
    ) -> AsyncIterator[str]:
        """Text deltas of one streamed reply. A cached reply (of the routed model or any of its
        fallbacks) is replayed as deltas. Transient failures before the first delta are retried, then
        the fallbacks tried; a failure after it raises StreamInterrupted with the partial text."""
        decision, candidates, keys = self._begin(messages, origin, model)
        hit = self._cached(keys)
        if hit is not None:
            index, reply = hit
            self._count(reply.usage)
            completion = Completion(reply.text, candidates[index].model, reply.usage, cached=True)
            self._account(completion, origin, messages, self._reason(decision, index))
            for piece in REPLAY_PIECE.findall(reply.text):
                yield piece
            return
        yielded = False
        for index, endpoint in enumerate(candidates):
            reason = self._reason(decision, index)
            key = keys[index]
            cached = self.cache.get(key) if self.cache and key else None  # a prefix, or stored meanwhile
            prefix = ""
            if cached is not None:
                self._account(
                    Completion(cached.text, endpoint.model, cached.usage, cached=True), origin, messages, reason
                )
                for piece in REPLAY_PIECE.findall(cached.text):
                    yielded = True
                    yield piece
                if cached.complete:
                    return
                prefix = cached.text
            try:
                # aclosing: a consumer that stops reading frees the slot and the connection now, not at GC
                async with contextlib.aclosing(
                    self._live_stream(endpoint, origin, messages, key, reason, prefix)
                ) as deltas:
                    async for delta in deltas:
                        yielded = True
                        yield delta
                return
            except ProviderError as error:
                if yielded or index + 1 == len(candidates):
                    raise
                self._fall_back(endpoint, candidates[index + 1], origin, error)

    def _begin(
        self, messages: list[dict[str, Any]], origin: CallOrigin, model: str | None
    ) -> tuple[Decision, list[Endpoint], list[str | None]]:
        """What both paths start with: a closed budget stops the call here, before routing; then the
        route (announced), its candidates and their cache keys."""
        self.budget.ensure_open()
        decision = self.router.route(origin, messages, model)
        self._announce(decision.endpoint, origin, decision.reason)
        candidates = self._candidates(decision.endpoint)
        keys = [self.cache.key(endpoint, messages) if self.cache else None for endpoint in candidates]
        return decision, candidates, keys

    def _candidates(self, endpoint: Endpoint) -> list[Endpoint]:
        """The routed endpoint and its fallback chain, all checked by local-only mode first, each with
        the reply cap the budget needs (so the cache keys hold the request as sent)."""
        candidates = [capped(self.budget, candidate) for candidate in (endpoint, *self.router.fallbacks(endpoint))]
        for candidate in candidates:
            self._guard(candidate)
        return candidates

    def _cached(self, keys: list[str | None]) -> tuple[int, CachedReply] | None:
        """The first candidate with a complete cached reply (not counted: the caller counts)."""
        if self.cache is None:
            return None
        for index, key in enumerate(keys):
            if key and (reply := self.cache.get(key, count=False)) is not None and reply.complete:
                return index, reply
        return None

    def _count(self, hit: Usage | None) -> None:
        if self.cache is not None:
            self.cache.count(hit)

    @staticmethod
    def _reason(decision: Decision, index: int) -> str:
        return decision.reason if index == 0 else f"fallback for {decision.endpoint.model}"

    async def _live_stream(
        self,
        endpoint: Endpoint,
        origin: CallOrigin,
        messages: list[dict[str, Any]],
        key: str | None,
        reason: str,
        prefix: str,
    ) -> AsyncIterator[str]:
        """One provider stream with retries before its first delta. A reply the consumer stopped
        reading is cached as a prefix; one that failed is not cached."""
        prepared = self._prepare(endpoint, origin, messages)
        skipper = _PrefixSkipper(prefix, endpoint.model)
        attempt = 0
        while True:
            attempt += 1
            finished: list[Completion] = []
            delivered = failed = ended = False
            try:
                async with (
                    self.scheduler.slot(endpoint.model, origin, lambda: provider.prompt_tokens(messages)),
                    metered(self.budget, endpoint, messages, finished),
                    contextlib.aclosing(self._calls.stream(endpoint, prepared, finished.append)) as deltas,
                ):
                    async for delta in deltas:
                        if text := skipper.feed(delta):
                            delivered = True
                            yield text
                ended = True
                return
            except ProviderError as error:
                failed = True
                if delivered:
                    raise
                await self._wait_before_retry(attempt, error, endpoint, origin)
            finally:
                for completion in finished:
                    self._account(completion, origin, messages, reason)
                    if self.cache and key and completion.text and not failed:
                        self.cache.put(key, completion, complete=ended)

    def _guard(self, endpoint: Endpoint) -> None:
        if self.local_only is not None:
            self.local_only.check(endpoint)

    @staticmethod
    def _prepare(endpoint: Endpoint, origin: CallOrigin, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What is sent: root histories are append-only, so their prefix gets prompt-cache markers."""
        return with_cache_hints(endpoint.model, messages) if origin.role is Role.ROOT else messages

    def _announce(self, endpoint: Endpoint, origin: CallOrigin, reason: str) -> None:
        self.events.emit(
            "model_request", path=list(origin.path), role=origin.role.value, model=endpoint.model, reason=reason
        )

    def _fall_back(self, failed: Endpoint, to: Endpoint, origin: CallOrigin, error: ProviderError) -> None:
        self.events.emit(
            "model_fallback",
            path=list(origin.path),
            role=origin.role.value,
            model=failed.model,
            fallback=to.model,
            error=str(error),
        )

    async def _with_retries(
        self,
        endpoint: Endpoint,
        origin: CallOrigin,
        messages: list[dict[str, Any]],
        call: Callable[[], Awaitable[Completion]],
    ) -> Completion:
        attempt = 0
        while True:
            attempt += 1
            try:
                finished: list[Completion] = []
                async with (
                    self.scheduler.slot(endpoint.model, origin, lambda: provider.prompt_tokens(messages)),
                    metered(self.budget, endpoint, messages, finished),
                ):
                    finished.append(await call())
                    return finished[0]
            except ProviderError as error:
                await self._wait_before_retry(attempt, error, endpoint, origin)

    async def _wait_before_retry(
        self, attempt: int, error: ProviderError, endpoint: Endpoint, origin: CallOrigin
    ) -> None:
        delay = self.scheduler.retry.delay(attempt, error)
        self.events.emit(
            "model_error",
            path=list(origin.path),
            role=origin.role.value,
            model=endpoint.model,
            attempt=attempt,
            error=str(error),
            retry_in_s=delay,
        )
        if delay is None:
            raise error
        await asyncio.sleep(delay)

    def _account(self, completion: Completion, origin: CallOrigin, messages: list[dict[str, Any]], reason: str) -> None:
        """Record what a call spent: nothing for a cache hit (its would-be tokens and cost are counted as
        saved), whose usage still says whether the model has a price, as the live call's did."""
        model, role = completion.model, origin.role.value
        cached = completion.cached
        spent = Usage(priced=completion.usage.priced, calls=0) if cached else completion.usage
        saved = completion.usage.cost_usd if cached else 0.0
        saved_tokens = completion.usage.total_tokens if cached else 0
        if origin.role is not Role.ROOT:
            self.sub_calls += 1
        if cached:
            self.cache_hits += 1
            self.saved_usd += saved
            self.saved_tokens += saved_tokens
        self.usage_by_model[model] = self.usage_by_model.get(model, ZERO_USAGE) + spent
        self.usage_by_role[role] = self.usage_by_role.get(role, ZERO_USAGE) + spent
        self.events.emit(
            "model_call",
            path=list(origin.path),
            role=role,
            model=model,
            reason=reason,
            prompt_tokens=spent.prompt_tokens,
            completion_tokens=spent.completion_tokens,
            cost_usd=spent.cost_usd,
            priced=completion.usage.priced,
            cached=completion.cached,
            saved_usd=saved,
            saved_tokens=saved_tokens,
            latency_s=round(completion.latency_s, 4),
            finish_reason=completion.finish_reason,
            prompt=clip(messages[-1].get("content", ""), TRACE_CHARS) if origin.role is not Role.ROOT else None,
            response=clip(completion.text, TRACE_CHARS) if origin.role is not Role.ROOT else None,
        )
