"""Ray for batch jobs and bench tasks: joining it (an embedded local Ray, or a cluster by address) and
the one limiter actor that makes --rpm / --tpm / --max-in-flight and the call budget hold across the
cluster, consulted by every worker's scheduler. What runs on the workers is defined where it belongs:
`rlm.batch.run_on_ray` for jobs, `rlm.bench_ray.bench_runner` for tasks.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable
from typing import Any

from rlm.errors import ConfigError
from rlm.sweep import SweepLimiter, batch_limiter, calls_spent

MAX_RETRIES = 3  # a job whose worker died runs again on another one, this many times


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "--ray needs Ray, which is not installed: pip install 'rlm-stream[ray]' (or pip install ray)"
        ) from exc
    return ray


def connect(address: str | None, num_cpus: int) -> Any:
    """Start an embedded Ray with `num_cpus` workers (address None or 'local'), or join a cluster
    ('auto', 'ray://host:10001', 'host:6379'). Already connected: kept as it is."""
    ray = import_ray()
    if not ray.is_initialized():
        if address in (None, "", "local"):  # "local": a new instance even when RAY_ADDRESS is set
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot join the Ray cluster at {address}: {exc}") from exc
    return ray


class ActorLimiter:
    """`rlm.scheduler.SharedLimiter` over the cluster's limiter actor (used inside each worker).
    With `counts_tokens` (a --tpm is set) each call's prompt is counted here and sent as a number."""

    def __init__(self, actor: Any, counts_tokens: bool = False) -> None:
        self.actor = actor
        self.counts_tokens = counts_tokens

    async def acquire(self, model: str, tokens: Callable[[], int] | None = None) -> object:
        ticket = uuid.uuid4().hex
        counted = tokens() if self.counts_tokens and tokens is not None else 0
        try:
            granted = await self.actor.try_acquire.remote(model, ticket, counted)
        except asyncio.CancelledError:
            self.actor.release.remote(model, ticket)  # abandons the grant, whether or not it was made
            raise
        if granted is None:
            raise calls_spent(*await self.actor.calls_limit.remote())
        return ticket

    async def release(self, model: str, ticket: object) -> None:
        await self.actor.release.remote(model, ticket)


@functools.cache
def _limiter_actor() -> Any:
    """The limiter actor class (defined once Ray is imported)."""
    ray = import_ray()

    @ray.remote(num_cpus=0)
    class LimiterActor:
        def __init__(self, limits: dict[str, Any]) -> None:
            self.limiter = SweepLimiter(**limits)

        async def try_acquire(self, model: str, ticket: str, tokens: int = 0) -> str | None:
            return await self.limiter.try_acquire(model, ticket, tokens)

        async def calls_limit(self) -> tuple[int | None, str]:
            return self.limiter.max_calls, self.limiter.scope

        async def release(self, model: str, ticket: str) -> None:
            await self.limiter.release(model, ticket)

        async def stats(self) -> dict[str, int]:
            return self.limiter.stats()

    return LimiterActor


def start_limiter(
    options: dict[str, Any], period: float = 60.0, max_calls: int | None = None, scope: str = "batch"
) -> Any:
    """The cluster-wide limiter actor for --rpm / --tpm / --max-in-flight / --batch-max-calls (None: none)."""
    local = batch_limiter(options, max_calls, period, scope)
    if local is None:
        return None
    actor_class = _limiter_actor()
    limits = {"max_in_flight": local.max_in_flight, "rpm": local.rpm, "tpm": local.tpm, "period": local.period}
    return actor_class.remote(limits | {"max_calls": local.max_calls, "scope": local.scope})
