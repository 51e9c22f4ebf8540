"""The litellm transport: one request, streamed or not, turned into our plain types; and what every
transport shares (Endpoint, prompt-size estimates, the meaning of an error).

Nothing here retries, caches or routes; the gateway does that. litellm is imported on first use, with
its offline cost map, so `rlm --help` stays instant and nothing is fetched from the network; with the
`auto` transport, OpenAI-compatible endpoints never reach it (rlm/models/openai_transport.py).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from rlm.errors import ProviderError, StreamInterrupted
from rlm.models.pricing import litellm, usage_of
from rlm.tokens import count_tokens
from rlm.types import Completion, Usage

NO_KEY = "sk-no-key"
MISSING_KEY = re.compile(r"missing credentials|api[_ ]key.*(not set|must be set|missing)|no api key", re.IGNORECASE)
TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


@dataclass(frozen=True)
class Endpoint:
    """Where one model is served: a litellm model name and, for self-hosted servers, a base URL."""

    model: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)  # never printed: reprs end up in logs
    params: dict[str, Any] = field(default_factory=dict)  # sampling parameters, e.g. temperature

    def request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "num_retries": 0, "max_retries": 0, **self.params}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.api_base and self.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            kwargs["api_key"] = NO_KEY  # self-hosted OpenAI-compatible servers often need none
        return kwargs


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """A local estimate of a prompt's size (for providers that report no usage, and for rate limits)."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # content blocks, e.g. with prompt-cache markers
            total += sum(count_tokens(str(part.get("text") or "")) for part in content if isinstance(part, dict))
        else:
            total += count_tokens(str(content or ""))
    return total


def _usage(endpoint: Endpoint, messages: list[dict[str, Any]], reported: Any, text: str) -> Usage:
    """Usage from what the provider reported, estimated locally where it reported nothing."""
    details = getattr(reported, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return usage_of(
        endpoint.model,
        getattr(reported, "prompt_tokens", None) or prompt_tokens(messages),
        getattr(reported, "completion_tokens", None) or count_tokens(text),
        cached if isinstance(cached, int) else 0,
    )


def classify(exc: BaseException, model: str) -> ProviderError:
    """Turn a litellm/httpx exception into a ProviderError that says whether retrying can help."""
    if isinstance(exc, ProviderError):
        return exc
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    module = litellm()
    network = isinstance(exc, module.Timeout | module.APIConnectionError | TimeoutError | ConnectionError)
    transient = network or (status in TRANSIENT_STATUS)
    if isinstance(exc, module.ContextWindowExceededError):
        transient = False
    if MISSING_KEY.search(str(exc)):
        return ProviderError(
            f"{model}: no API key. Set the provider's key variable (e.g. OPENAI_API_KEY) or pass --api-key.",
            model=model,
            status_code=status,
        )
    return ProviderError(
        f"{model}: {_short(exc)}",
        model=model,
        status_code=status,
        transient=transient,
        retry_after=_retry_after(exc),
    )


def _short(exc: BaseException) -> str:
    """The exception as one readable line: its class once (litellm repeats it), at most 500 chars."""
    parts = str(exc).replace("litellm.", "").strip().rstrip(".").split(": ")
    while len(parts) > 1 and parts[1] == parts[0]:
        parts.pop(0)
    text = ": ".join(parts)
    if not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 500 else text[:500] + " ..."


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header, wherever litellm kept the provider's response headers."""
    sources = [getattr(exc, "litellm_response_headers", None)]
    response = getattr(exc, "response", None)
    sources.append(getattr(response, "headers", None))
    for headers in sources:
        if not headers:
            continue
        value = headers.get("retry-after") or headers.get("Retry-After")
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    return None


async def complete(endpoint: Endpoint, messages: list[dict[str, Any]]) -> Completion:
    started = time.monotonic()
    try:
        response = await litellm().acompletion(messages=messages, **endpoint.request_kwargs())
    except Exception as exc:
        raise classify(exc, endpoint.model) from exc
    choice = response.choices[0]
    text = choice.message.content or ""
    return Completion(
        text=text,
        model=endpoint.model,
        usage=_usage(endpoint, messages, getattr(response, "usage", None), text),
        latency_s=time.monotonic() - started,
        finish_reason=getattr(choice, "finish_reason", None),
    )


async def stream(
    endpoint: Endpoint, messages: list[dict[str, Any]], on_done: Callable[[Completion], None]
) -> AsyncIterator[str]:
    """Yield text deltas. `on_done` gets the whole Completion when the stream ends or is cancelled,
    so tokens that were generated are accounted for even when the consumer stops early."""
    started = time.monotonic()
    parts: list[str] = []
    reported: Any = None
    finish: str | None = None
    try:
        response = await litellm().acompletion(
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **endpoint.request_kwargs(),
        )
    except Exception as exc:
        raise classify(exc, endpoint.model) from exc
    try:
        async for chunk in response:
            reported = getattr(chunk, "usage", None) or reported
            if chunk.choices:
                finish = getattr(chunk.choices[0], "finish_reason", None) or finish
                delta = chunk.choices[0].delta.content
                if delta:
                    parts.append(delta)
                    yield delta
    except Exception as exc:
        error = classify(exc, endpoint.model)
        if parts:
            raise StreamInterrupted(str(error), partial_text="".join(parts), model=endpoint.model) from exc
        raise error from exc
    finally:
        await response.aclose()
        on_done(completion_of(endpoint, messages, reported, "".join(parts), started, finish))


def completion_of(
    endpoint: Endpoint,
    messages: list[dict[str, Any]],
    reported: Any,
    text: str,
    started: float,
    finish_reason: str | None = None,
) -> Completion:
    """A streamed reply as a Completion, with the usage the provider `reported` (None: estimated here)."""
    return Completion(
        text=text,
        model=endpoint.model,
        usage=_usage(endpoint, messages, reported, text),
        latency_s=time.monotonic() - started,
        finish_reason=finish_reason,
    )
