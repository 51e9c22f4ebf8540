"""A ModelGateway on the scripted server, as the tests of the model layer build and read it: three
role models, replies that name their model, the calls it recorded, a streamed reply read whole."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlm.budget import Budget, Limits
from rlm.events import EventLog
from rlm.models.cache import ResponseCache
from rlm.models.gateway import ModelGateway
from rlm.models.local_only import LocalPolicy
from rlm.models.provider import Endpoint
from rlm.models.router import RoutePolicy, Router, Routes
from rlm.scheduler import RetryPolicy, Scheduler
from rlm.types import CallOrigin

ROOT, SUB, AGG = "openai/m-root", "openai/m-sub", "openai/m-agg"
ALLOWED = frozenset({"openai/m-named", "openai/gpt-4o-mini"})  # the models these tests' calls name
ASK = [{"role": "user", "content": "Which codes appear?"}]


def echo(name: str):
    """A script whose reply names the model and echoes the prompt, so replies are easy to check."""
    return lambda request: f"{name} answers: {request.messages[-1]['content']}"


def make_gateway(
    base_url: str,
    *,
    aggregate: str | None = AGG,
    fallbacks: Mapping[str, Sequence[str]] | None = None,
    policy: RoutePolicy | None = None,
    cache: ResponseCache | None = None,
    local_only: LocalPolicy | None = None,
    params: dict[str, Any] | None = None,
) -> ModelGateway:
    def endpoint(model: str) -> Endpoint:
        return Endpoint(model, base_url, "sk-local", params or {})

    routes = Routes(endpoint(ROOT), endpoint(SUB), endpoint(aggregate) if aggregate else None, fallbacks or {}, ALLOWED)
    return ModelGateway(
        Router(routes, policy),
        budget=Budget(Limits()),
        scheduler=Scheduler(retry=RetryPolicy(max_attempts=2, base_s=0.0)),
        events=EventLog(),
        cache=cache,
        local_only=local_only,
    )


def calls_of(gateway: ModelGateway) -> list[dict[str, Any]]:
    return [e for e in gateway.events.trajectory if e["type"] == "model_call"]


async def collect(gateway: ModelGateway, messages: list[dict[str, Any]], origin: CallOrigin) -> tuple[str, int]:
    """The whole streamed text and the number of deltas it came in."""
    parts = [delta async for delta in gateway.stream(messages, origin)]
    return "".join(parts), len(parts)


LOCAL_BASE = "http://127.0.0.1:9/v1"  # nothing listens there: a call that is sent fails at once


def to(model: str, api_base: str = LOCAL_BASE) -> RoutePolicy:
    return lambda origin, messages: Endpoint(model, api_base, "sk-local")
