"""Checks a run's models before anything is sent: a name no provider serves, or a hosted model
without its key, is a configuration error with a clear message (exit 1), not a provider failure
found after seconds of retries. OpenAI-compatible providers are checked from rlm's own table
(rlm/models/openai_compat.py); only the others ask litellm."""

from __future__ import annotations

from rlm.errors import ConfigError
from rlm.models import pricing
from rlm.models.openai_compat import providers
from rlm.models.provider import Endpoint
from rlm.models.router import Routes

NAMING = (
    "Model names are litellm names, provider/model: openai/gpt-5, anthropic/claude-sonnet-4-5, "
    "openrouter/..., ollama_chat/qwen3, or openai/NAME with --api-base for any OpenAI-compatible server."
)


def provider_of(model: str, api_base: str | None = None) -> str:
    """The litellm provider that serves `model`; ConfigError if no provider is known for the name."""
    provider = pricing.provider_of(model, api_base)
    if provider is None:
        raise ConfigError(f"Unknown model {model!r}: litellm cannot tell which provider serves it. {NAMING}")
    return provider


def check_endpoint(endpoint: Endpoint) -> None:
    provider = provider_of(endpoint.model, endpoint.api_base)
    if endpoint.api_key or endpoint.api_base:  # a key given, or a server of the user's own
        return
    spec = providers().get(provider)
    if spec is not None:
        if spec.base_url(None) is None:
            where = " or ".join(spec.base_vars)
            raise ConfigError(
                f"{endpoint.model}: {provider} serves from a URL of your own: pass it with --api-base (or set {where})."
            )
        if spec.key_required and spec.key() is None:
            raise ConfigError(
                f"{endpoint.model}: no API key for {provider}. Set {' or '.join(spec.key_vars)} in the environment, "
                "or pass --api-key."
            )
        return
    missing = pricing.litellm().validate_environment(model=endpoint.model).get("missing_keys") or []
    keys = [name for name in missing if name.endswith(("_KEY", "_TOKEN"))]
    if keys:
        raise ConfigError(
            f"{endpoint.model}: no API key for {provider}. Set {' or '.join(keys)} in the environment, "
            "or pass --api-key."
        )


def check_routes(routes: Routes) -> None:
    """Every configured model can be routed and has its key; fallbacks can at least be routed (their
    keys are checked when they are needed)."""
    for endpoint in (routes.root, routes.sub, routes.aggregate):
        if endpoint is not None:
            check_endpoint(endpoint)
    for name in {fallback for chain in routes.fallbacks.values() for fallback in chain}:
        provider_of(name)
