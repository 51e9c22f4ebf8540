"""Which model serves a call, and why: roles, an explicit model, a user policy, fallbacks.

Default policy: the root model plans and synthesises (ROOT); `llm_query` sub-calls that search,
extract or classify go to the cheap sub-model (SUB); `llm_query(..., role="aggregate")` goes to the
aggregate model, else the root model (AGGREGATE). A model named in code (`llm_query(..., model=...)`)
wins over everything, but only one the run's configuration names (its models, their fallbacks, the
`allowed_models` setting), served through that configuration: code written by a model never picks a
host or a key of its own. A Python policy (`RLM(router=...)`) can decide the other calls. Every
decision carries a reason, which the gateway writes into the `model_call` event of the trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rlm.errors import ConfigError, ModelNotAllowed
from rlm.models.provider import Endpoint
from rlm.types import CallOrigin, Role

# A policy sees who calls and the messages; it returns a model name, an Endpoint, or None (default rule).
RoutePolicy = Callable[[CallOrigin, list[dict[str, Any]]], "str | Endpoint | None"]


def _provider_prefix(model: str) -> str:
    return model.split("/", 1)[0] if "/" in model else ""


@dataclass(frozen=True)
class Routes:
    """Which endpoint serves each role, and which models take over when one fails past its retries.

    A model named in code or as a fallback that is not one of the configured endpoints is served from
    the sub-model's base URL and key when it has the same provider prefix (`openai/...` on the same
    vLLM server), else from its provider's defaults (`anthropic/...` with $ANTHROPIC_API_KEY)."""

    root: Endpoint
    sub: Endpoint
    aggregate: Endpoint | None = None
    fallbacks: Mapping[str, Sequence[str]] = field(default_factory=dict)
    allowed: frozenset[str] = frozenset()  # models code may ask for besides the configured ones

    def requested(self, model: str) -> Endpoint:
        """A model REPL code asked for, through the run's configuration: a configured one (by its full
        name, or without its provider prefix: "gpt-4o" is a configured "openai/gpt-4o"), else one the
        `allowed_models` setting lists, served as `named` serves it; a name without a provider prefix
        goes to the sub-model's server when that has an api_base. Anything else is refused."""
        for endpoint in self.configured():
            if model in (endpoint.model, endpoint.model.partition("/")[2]):
                return endpoint
        if model in self.allowed:
            if "/" not in model and self.sub.api_base:
                prefix = _provider_prefix(self.sub.model)
                return replace(self.sub, model=f"{prefix}/{model}" if prefix else model)
            return self.named(model)
        names = ", ".join(dict.fromkeys(endpoint.model for endpoint in self.configured()))
        extra = f"; allowed_models adds {', '.join(sorted(self.allowed))}" if self.allowed else ""
        raise ModelNotAllowed(
            f"model {model!r} is not one this run is configured with, so nothing was sent. Code may ask "
            f"for {names}{extra}. To let code use another model, list it in the allowed_models setting "
            "(--allowed-models NAME[,NAME], RLM_ALLOWED_MODELS or allowed_models in the config file)."
        )

    def named(self, model: str) -> Endpoint:
        for endpoint in (self.root, self.sub, self.aggregate):
            if endpoint is not None and endpoint.model == model:
                return endpoint
        if _provider_prefix(model) == _provider_prefix(self.sub.model):
            return replace(self.sub, model=model)
        return Endpoint(model, params=self.sub.params)

    def for_role(self, role: Role) -> tuple[Endpoint, str]:
        if role is Role.ROOT:
            return self.root, "root role"
        if role is Role.AGGREGATE:
            if self.aggregate is not None:
                return self.aggregate, "aggregate role"
            return self.root, "aggregate role (no aggregate model: the root model)"
        return self.sub, "sub role"

    def fallbacks_of(self, model: str) -> list[Endpoint]:
        """The models that take over when `model` fails, in the order they are tried: each fallback
        followed by its own fallbacks (depth first), every model at most once (cycles end)."""
        chain: list[Endpoint] = []
        seen = {model}

        def follow(name: str) -> None:
            for fallback in self.fallbacks.get(name, ()):
                if fallback not in seen:
                    seen.add(fallback)
                    chain.append(self.named(fallback))
                    follow(fallback)

        follow(model)
        return chain

    def configured(self) -> list[Endpoint]:
        """Every endpoint the settings name, fallbacks included (for checks before a run starts)."""
        endpoints = [self.root, self.sub, *([self.aggregate] if self.aggregate else [])]
        for names in self.fallbacks.values():
            endpoints.extend(self.named(name) for name in names)
        return endpoints


@dataclass(frozen=True)
class Decision:
    endpoint: Endpoint
    reason: str


class Router:
    def __init__(self, routes: Routes, policy: RoutePolicy | None = None) -> None:
        self.routes = routes
        self.policy = policy

    def route(self, origin: CallOrigin, messages: list[dict[str, Any]], requested: str | None = None) -> Decision:
        if requested:
            return Decision(self.routes.requested(requested), "explicit model")
        if self.policy is not None:
            chosen = self.policy(origin, messages)
            if isinstance(chosen, Endpoint):
                return Decision(chosen, "router policy")
            if isinstance(chosen, str) and chosen:
                return Decision(self.routes.named(chosen), "router policy")
            if chosen is not None:
                raise ConfigError(f"The router policy returned {chosen!r}; return a model name, an Endpoint or None.")
        endpoint, reason = self.routes.for_role(origin.role)
        return Decision(endpoint, reason)

    def fallbacks(self, endpoint: Endpoint) -> list[Endpoint]:
        return self.routes.fallbacks_of(endpoint.model)
