"""Cost of calls and context windows from litellm's price table, read as data from the installed package.

litellm ships its table as `model_prices_and_context_window_backup.json`; reading that file (~40 ms)
instead of importing litellm (~3 s) keeps OpenAI-compatible runs free of litellm altogether. A model
the table does not know is still counted in tokens, with `Usage.priced` False, so a report can say
its cost figure is incomplete instead of silently showing $0.
"""

from __future__ import annotations

import gc
import json
import os
import re
import threading
from functools import cache
from types import ModuleType
from typing import Any

from rlm.litellm_files import litellm_package
from rlm.models.openai_compat import providers
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

# Prefixes that litellm maps to the provider of the same name (tests/test_transports.py checks this
# against litellm), besides the OpenAI-compatible ones: deciding them needs no litellm import.
SELF_NAMED = frozenset(
    {
        "anthropic",
        "gemini",
        "vertex_ai",
        "bedrock",
        "azure",
        "cohere",
        "replicate",
        "huggingface",
        "sagemaker",
        "ollama",
        "xinference",
        "oobabooga",
        "lemonade",
        "docker_model_runner",
        "text-completion-openai",
    }
)
TIER = re.compile(r"input_cost_per_token_above_(\d+)k_tokens")


_owned = False


def own_process() -> None:
    """Mark this process as rlm's own (the CLI, a forked worker): its heap may then be frozen for speed.
    A Python caller's process (a notebook's kernel) is never marked, so rlm leaves its `gc` alone."""
    global _owned
    _owned = True


@cache
def litellm() -> ModuleType:
    """Import litellm once, offline: its cost map from the package, no feedback banners. Only the
    litellm transport (providers that do not speak the OpenAI protocol) needs it.

    litellm reads LITELLM_LOCAL_MODEL_COST_MAP while it is imported, and its encoding module (which
    every call loads) sets TIKTOKEN_CACHE_DIR to load its one encoding: both hold for the import only, and the
    caller's environment is put back as it was after it (rlm.tokens builds its encodings itself).

    The import leaves some 300,000 long-lived objects, and each full collection of the cyclic garbage
    collector walks them all: ~0.2 s with the event loop stopped, every few hundred model calls.
    In a process rlm owns, freezing what exists after the import (`gc.freeze`) takes them out of
    every later collection.
    """
    saved = {key: os.environ.get(key) for key in ("LITELLM_LOCAL_MODEL_COST_MAP", "TIKTOKEN_CACHE_DIR")}
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # a value of the user's own stays
    try:
        import litellm as module
        import litellm.litellm_core_utils.default_encoding  # every call loads it; it sets the variable
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    module.suppress_debug_info = True
    if _owned:
        gc.freeze()  # no gc.collect() first: it costs ~0.2 s here and finds no garbage after this import
    return module


@cache
def price_table() -> dict[str, dict[str, Any]]:
    """litellm's model table (prices, context windows, providers); empty if litellm is not installed."""
    package = litellm_package()
    path = package / "model_prices_and_context_window_backup.json" if package else None
    if path is None or not path.is_file():
        return {}
    table = json.loads(path.read_bytes())
    return {name: entry for name, entry in table.items() if isinstance(entry, dict) and name != "sample_spec"}


def preload_table() -> None:
    """Read the table in a background thread while a run starts: the first reply is priced with it."""
    if not price_table.cache_info().currsize:
        threading.Thread(target=price_table, name="rlm-price-table", daemon=True).start()


@cache
def model_entry(model: str) -> dict[str, Any] | None:
    """The table's entry for `model`: the name itself, or without its provider prefix when the entry
    belongs to that provider (`openai/gpt-4o-mini` is `gpt-4o-mini`; `openai/claude-x` is not `claude-x`)."""
    table = price_table()
    if (entry := table.get(model)) is not None:
        return entry
    prefix, sep, rest = model.partition("/")
    entry = table.get(rest) if sep else None
    return entry if entry is not None and entry.get("litellm_provider") == prefix else None


_asked_litellm: dict[tuple[str, str | None], str | None] = {}


def provider_of(model: str, api_base: str | None = None) -> str | None:
    """litellm's provider for `model`, None when it knows none. Decided from the name and the price
    table where that is certain; only other names ask litellm itself (imported then)."""
    prefix, sep, _ = model.partition("/")
    if sep and (prefix in SELF_NAMED or prefix in providers()):
        return prefix
    if not sep and (entry := model_entry(model)) is not None and entry.get("litellm_provider") in providers():
        return str(entry["litellm_provider"])  # e.g. gpt-4o-mini: openai
    key = (model, api_base)
    if key not in _asked_litellm:
        try:
            _asked_litellm[key] = str(litellm().get_llm_provider(model, api_base=api_base)[1])
        except Exception:  # litellm raises BadRequestError for a name without a known provider
            _asked_litellm[key] = None
    return _asked_litellm[key]


def context_window(model: str) -> int | None:
    """The model's input window in tokens, None when the table does not know the model."""
    entry = model_entry(model) or {}
    window = entry.get("max_input_tokens") or entry.get("max_tokens")
    return int(window) if isinstance(window, int | float) and window > 0 else None


def _rates(entry: dict[str, Any], prompt_tokens: int) -> tuple[float, float, float] | None:
    """(input, output, cache-read) USD per token, at the tier the prompt's size falls in."""
    suffix = ""
    for threshold in sorted((int(m.group(1)) for key in entry if (m := TIER.fullmatch(key))), reverse=True):
        if prompt_tokens > threshold * 1000:
            suffix = f"_above_{threshold}k_tokens"
            break
    prompt = entry.get(f"input_cost_per_token{suffix}", entry.get("input_cost_per_token"))
    completion = entry.get(f"output_cost_per_token{suffix}", entry.get("output_cost_per_token"))
    if prompt is None and completion is None:
        return None
    cached = entry.get(f"cache_read_input_token_cost{suffix}", entry.get("cache_read_input_token_cost", prompt))
    return float(prompt or 0.0), float(completion or 0.0), float(cached if cached is not None else prompt or 0.0)


def price(model: str, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0) -> tuple[float, bool]:
    """Cost in USD and whether the model had a price. `cached_prompt_tokens` (part of `prompt_tokens`)
    are billed at the provider's cache-read rate when the table has one."""
    entry = model_entry(model)
    rates = _rates(entry, prompt_tokens) if entry is not None else None
    if rates is None:
        return 0.0, False
    prompt_rate, completion_rate, cached_rate = rates
    cached = min(max(cached_prompt_tokens, 0), prompt_tokens)
    cost = (prompt_tokens - cached) * prompt_rate + cached * cached_rate + completion_tokens * completion_rate
    if cost == 0 and provider_of(model) in SELF_HOSTED:  # litellm's $0 default, not a price
        return 0.0, False
    return cost, True


def usage_of(model: str, prompt_tokens: int, completion_tokens: int, cached_prompt_tokens: int = 0) -> Usage:
    """The Usage of one call, priced from the table."""
    cost, priced = price(model, prompt_tokens, completion_tokens, cached_prompt_tokens)
    return Usage(prompt_tokens, completion_tokens, cost_usd=cost, priced=priced, calls=1)
