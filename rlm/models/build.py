"""From resolved settings to a ready gateway: endpoints per role, fallbacks, cache, local-only policy.

Kept apart from `rlm/api/` so that every setting of the model layer is read in one place.
"""

from __future__ import annotations

from rlm.budget import Budget
from rlm.config import CacheSettings, ModelSettings, Settings, TransportSettings
from rlm.events import EventLog
from rlm.models.cache import ResponseCache
from rlm.models.gateway import ModelGateway
from rlm.models.local_only import LocalPolicy
from rlm.models.pricing import preload_table
from rlm.models.provider import Endpoint, Timeouts
from rlm.models.router import RoutePolicy, Router, Routes
from rlm.models.transport import select_transport
from rlm.models.workers import CallWorkers
from rlm.scheduler import Scheduler
from rlm.tokens import preload


def routes_from(settings: ModelSettings) -> Routes:
    """Every configured endpoint carries the sampling parameters (models named later inherit the
    sub-model's, see `Routes.named`)."""
    params = {} if settings.temperature is None else {"temperature": settings.temperature}
    root = Endpoint(settings.require_model(), settings.api_base, settings.api_key, params)
    fallbacks = {
        model: [names] if isinstance(names, str) else list(names)  # TOML allows a single name
        for model, names in (settings.fallbacks or {}).items()
    }
    return Routes(
        root=root,
        sub=Endpoint(settings.sub_model or root.model, settings.api_base, settings.api_key, params),
        aggregate=Endpoint(settings.aggregate_model, settings.api_base, settings.api_key, params)
        if settings.aggregate_model
        else None,
        fallbacks=fallbacks,
        allowed=settings.allowed(),
    )


def open_cache(settings: CacheSettings) -> ResponseCache | None:
    if not settings.enabled:
        return None
    return ResponseCache(settings.dir, size_limit=settings.size_mb << 20, cache_sampled=settings.sampled)


def timeouts_of(settings: TransportSettings) -> Timeouts:
    """How long every provider call of the run waits, whichever transport makes it."""
    return Timeouts(settings.connect_timeout, settings.first_byte_timeout, settings.idle_timeout)


def build_gateway(
    settings: Settings,
    *,
    budget: Budget,
    scheduler: Scheduler,
    events: EventLog,
    policy: RoutePolicy | None = None,
    workers: CallWorkers | None = None,
) -> ModelGateway:
    """The run's gateway; raises LocalOnlyViolation at once if local-only mode forbids a configured model."""
    preload()  # token counts and prices are needed by the first call at the latest: load while the run starts
    preload_table()
    models = settings.models
    return ModelGateway(
        Router(routes_from(models), policy),
        budget=budget,
        scheduler=scheduler,
        events=events,
        cache=open_cache(settings.cache),
        local_only=LocalPolicy.from_setting(models.local_networks) if models.local_only else None,
        workers=workers,
        transport=select_transport(settings.transport.kind, timeouts_of(settings.transport), workers),
    )
