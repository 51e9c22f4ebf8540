"""The budget's side of one request: the reply cap it is sent with, the most it can spend, reserved
before it is sent and settled to what it used when it ends.

Kept apart from the gateway so that streamed and whole replies, and every retry of either, pass the
same gate: a limit holds however a call is made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from rlm.budget import Budget
from rlm.errors import ProviderError
from rlm.models import provider
from rlm.models.pricing import provider_of, usage_of
from rlm.models.provider import Endpoint
from rlm.types import ZERO_USAGE, Completion, Usage

PROMPT_MARGIN = 1.1  # a provider's tokenizer may count more prompt tokens than tiktoken does


def reply_cap(endpoint: Endpoint) -> int | None:
    """The longest reply `endpoint` is asked for, if its parameters set one."""
    cap = endpoint.params.get("max_completion_tokens") or endpoint.params.get("max_tokens")
    return int(cap) if cap else None


def capped(budget: Budget, endpoint: Endpoint) -> Endpoint:
    """`endpoint` asking for replies no longer than the budget's cap (when one is needed and the
    endpoint has none of its own). OpenAI's own API takes max_completion_tokens (its reasoning
    models refuse max_tokens); other servers and litellm take max_tokens."""
    cap = budget.completion_cap
    if cap is None or reply_cap(endpoint) is not None:
        return endpoint
    hosted_openai = endpoint.api_base is None and provider_of(endpoint.model) == "openai"
    name = "max_completion_tokens" if hosted_openai else "max_tokens"
    return replace(endpoint, params={**endpoint.params, name: cap})


def worst_case(budget: Budget, endpoint: Endpoint, messages: list[dict[str, Any]]) -> Usage:
    """The most one request can spend: its prompt (with the per-message framing providers add, and
    a margin for tokenizers that count more than tiktoken) and the longest reply it was allowed,
    at the model's price. Only counted when a token or cost limit is set."""
    if not budget.counts_tokens:
        return Usage(calls=1)
    prompt = int(provider.prompt_tokens(messages) * PROMPT_MARGIN) + 4 * len(messages) + 3
    return usage_of(endpoint.model, prompt, reply_cap(endpoint) or 0)


@asynccontextmanager
async def metered(
    budget: Budget, endpoint: Endpoint, messages: list[dict[str, Any]], finished: list[Completion]
) -> AsyncIterator[None]:
    """The budget's gate around one request, streamed or not, each attempt of it: its worst case
    is reserved before it is sent (taken when the scheduler grants the slot, so a queued call sees
    what was spent meanwhile) and settled to what it used when it ends: the `finished` replies
    (a stream cut or closed early counts the text it sent); for a request cancelled without a
    reply, its prompt; nothing for one the provider refused."""
    worst = worst_case(budget, endpoint, messages)
    reservation = await budget.reserve(worst)
    used = ZERO_USAGE
    try:
        yield
    except ProviderError:
        raise
    except BaseException:
        if not finished:  # sent and given up on: the provider may have read the prompt
            used = usage_of(endpoint.model, worst.prompt_tokens, 0)
        raise
    finally:
        if finished:
            used = sum((completion.usage for completion in finished), ZERO_USAGE)
        budget.settle(reservation, used)
