"""Cost of calls from litellm's price table, read offline from the installed package.

A model the table does not know is still counted in tokens, with `Usage.priced` False, so a report can
say its cost figure is incomplete instead of silently showing $0.
"""

from __future__ import annotations

import gc
import os
from functools import cache
from types import ModuleType

from rlm.types import Usage

# litellm providers that send every request to the `api_base` they are given (checked against
# litellm's source and with a socket guard: no other name is looked up, no other host is reached).
# Local-only mode accepts only these; models of the self-hosted ones among them have no real price
# (litellm says $0 for any `ollama/...` name), so a $0 figure for them counts as unpriced.
SENDS_TO_API_BASE = frozenset(
    {
        "openai",
        "text-completion-openai",
        "custom_openai",
        "hosted_vllm",
        "ollama",
        "ollama_chat",
        "lm_studio",
        "llamafile",
        "xinference",
        "lemonade",
        "docker_model_runner",
        "oobabooga",
        "litellm_proxy",
    }
)
SELF_HOSTED = SENDS_TO_API_BASE - {"openai", "text-completion-openai", "litellm_proxy"}


@cache
def litellm() -> ModuleType:
    """Import litellm once, offline: its cost map from the package, no feedback banners.

    The import leaves some 300,000 long-lived objects, and each full collection of the cyclic garbage
    collector walks them all: ~0.2 s with the event loop stopped, every few hundred model calls.
    Freezing what exists after the import (`gc.freeze`) takes them out of every later collection.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as module

    module.suppress_debug_info = True
    gc.freeze()  # no gc.collect() first: it costs ~0.2 s here and finds no garbage after this import
    return module


def provider_of(model: str, api_base: str | None = None) -> str | None:
    """litellm's provider for `model` (decided offline from the name), None when it knows none."""
    try:
        return str(litellm().get_llm_provider(model, api_base=api_base)[1])
    except Exception:  # litellm raises BadRequestError for a name without a known provider
        return None


# Models the table did not know, with the table's size then: asking litellm again costs ~0.1 ms a call
# (a self-hosted model is unknown on every call); a model registered since (a bigger table) is asked again.
_unpriced: dict[str, int] = {}


def price(model: str, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0) -> tuple[float, bool]:
    """Cost in USD and whether the model had a price. `cached_prompt_tokens` (part of `prompt_tokens`)
    are billed at the provider's cache-read rate when the table has one."""
    table_size = len(litellm().model_cost)
    if _unpriced.get(model) == table_size:
        return 0.0, False
    try:
        prompt_cost, completion_cost = litellm().cost_per_token(
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cache_read_input_tokens=cached_prompt_tokens,
        )
    except Exception:  # litellm raises a bare Exception (ModelNotMappedError) for unknown models
        _unpriced[model] = table_size
        return 0.0, False
    cost = float(prompt_cost + completion_cost)
    if cost == 0 and provider_of(model) in SELF_HOSTED:  # litellm's $0 default, not a price
        _unpriced[model] = table_size
        return 0.0, False
    return cost, True


def usage_of(model: str, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0) -> Usage:
    """The Usage of one call, priced from the table."""
    cost, priced = price(model, prompt_tokens, completion_tokens, cached_prompt_tokens)
    return Usage(prompt_tokens, completion_tokens, cost_usd=cost, priced=priced, calls=1)
