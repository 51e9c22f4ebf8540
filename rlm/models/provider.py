"""The litellm transport: one request, streamed or not, turned into our plain types; and what every
transport shares (Endpoint, prompt-size estimates, the meaning of an error).

Nothing here retries, caches or routes; the gateway does that. litellm is imported on first use, with
its offline cost map, so `rlm --help` stays instant and nothing is fetched from the network; with the
`auto` transport, OpenAI-compatible endpoints never reach it (rlm/models/openai_transport.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from rlm.config import DEFAULTS
from rlm.errors import ProviderError, StreamInterrupted
from rlm.models.pricing import litellm, usage_of
from rlm.tokens import count_tokens
from rlm.types import Completion, Usage

NO_KEY = "sk-no-key"
MISSING_KEY = re.compile(r"missing credentials|api[_ ]key.*(not set|must be set|missing)|no api key", re.IGNORECASE)
CHECK_SERVER = "check that the model server is running and that api_base names its host and port"
TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
T = TypeVar("T")
Wait = Literal["connect", "first_byte", "idle"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait: for the connection, for the reply to start (a slow local model may think for
    minutes over a long prompt; a non-streamed reply starts when it is complete), and between two
    pieces of a reply that has started. A wait that runs out is a transient error (retried)."""

    connect_s: float = DEFAULTS.transport.connect_timeout
    first_byte_s: float = DEFAULTS.transport.first_byte_timeout
    idle_s: float = DEFAULTS.transport.idle_timeout

    def expired(self, wait: Wait, model: str) -> ProviderError:
        """The error of a wait that ran out, naming the setting that bounds it."""
        if wait == "connect":
            what = f"no connection within {self.connect_s:g} s (connect_timeout)"
        elif wait == "first_byte":
            what = f"the reply did not start within {self.first_byte_s:g} s (first_byte_timeout)"
        else:
            what = f"the reply stalled: nothing arrived for {self.idle_s:g} s (idle_timeout)"
        return ProviderError(f"{model}: Timeout: {what}", model=model, transient=True)


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


def classify(exc: BaseException, model: str, api_base: str | None = None) -> ProviderError:
    """Turn a litellm/httpx exception into a ProviderError that says whether retrying can help;
    `api_base`, where the call went, names the address that did not answer a refused connection."""
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
    if _refused(exc):  # litellm reports a refused connection as a 500 "Connection error"
        return ProviderError(
            f"{model}: APIConnectionError: nothing answers at {_address(api_base)} (connection refused); "
            + CHECK_SERVER,
            model=model,
            transient=True,
        )
    return ProviderError(
        f"{model}: {_short(exc)}",
        model=model,
        status_code=status,
        transient=transient,
        retry_after=_retry_after(exc),
    )


def _address(api_base: str | None) -> str:
    """host:port of `api_base` (its scheme's port when it names none), as the native client names a
    refused address; litellm's error does not say where it tried, only the endpoint does."""
    if not api_base:
        return "the provider's address"
    url = urlsplit(api_base if "://" in api_base else f"http://{api_base}")
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:  # a port that is not a number: show what was configured
        return api_base
    host = url.hostname
    if not host:
        return api_base
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refused(exc: BaseException) -> bool:
    """Whether a connection was refused somewhere in the chain litellm and httpx wrapped it in."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _short(exc: BaseException) -> str:
    """The exception as one readable line: its class once (litellm repeats it), at most 500 chars."""
    text = str(exc).replace("litellm.", "").split(" Original exception: ")[0]  # a mid-stream error repeats itself
    parts = text.strip().rstrip(".").split(": ")
    text = ": ".join(part for i, part in enumerate(parts) if i == 0 or part != parts[i - 1])
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


class LitellmTransport:
    """The gateway's Transport through litellm in this process, with the run's timeouts."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()

    async def complete(self, endpoint: Endpoint, messages: list[dict[str, Any]]) -> Completion:
        return await complete(endpoint, messages, self.timeouts)

    def stream(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], on_done: Callable[[Completion], None]
    ) -> AsyncIterator[str]:
        return stream(endpoint, messages, on_done, self.timeouts)


async def _within(awaitable: Awaitable[T], seconds: float, wait: Wait, timeouts: Timeouts, model: str) -> T:
    """`awaitable`, or the transient error of `wait` once `seconds` pass without it. litellm's own
    (httpx) timeouts only bound each socket read, so a stream that trickles or stalls needs this one."""
    try:
        async with asyncio.timeout(seconds) as limit:
            return await awaitable
    except TimeoutError as exc:
        if limit.expired():
            raise timeouts.expired(wait, model) from exc
        raise


def _request(endpoint: Endpoint, messages: list[dict[str, Any]], timeouts: Timeouts, **extra: Any) -> Awaitable[Any]:
    """litellm's request, its connection bounded by `connect_s` (httpx raises ConnectTimeout); the
    waits for the reply are `_within`'s, which name their setting when they run out."""
    import httpx

    timeout = httpx.Timeout(None, connect=timeouts.connect_s)
    return litellm().acompletion(messages=messages, timeout=timeout, **extra, **endpoint.request_kwargs())


def _failure(exc: BaseException, endpoint: Endpoint, timeouts: Timeouts) -> ProviderError:
    """`classify`, but a connection that timed out says which setting bounds it."""
    import httpx

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, httpx.ConnectTimeout):
            return timeouts.expired("connect", endpoint.model)
        cause = cause.__cause__ or cause.__context__
    return classify(exc, endpoint.model, endpoint.api_base)


async def complete(endpoint: Endpoint, messages: list[dict[str, Any]], timeouts: Timeouts | None = None) -> Completion:
    started = time.monotonic()
    timeouts = timeouts or Timeouts()
    try:
        response = await _within(
            _request(endpoint, messages, timeouts), timeouts.first_byte_s, "first_byte", timeouts, endpoint.model
        )
    except ProviderError:
        raise
    except Exception as exc:
        raise _failure(exc, endpoint, timeouts) from exc
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
    endpoint: Endpoint,
    messages: list[dict[str, Any]],
    on_done: Callable[[Completion], None],
    timeouts: Timeouts | None = None,
) -> AsyncIterator[str]:
    """Yield text deltas. `on_done` gets the whole Completion when the stream ends or is cancelled,
    so tokens that were generated are accounted for even when the consumer stops early. The first
    chunk must arrive within `first_byte_s` of the request, each later one within `idle_s` of the last."""
    started = time.monotonic()
    timeouts = timeouts or Timeouts()
    parts: list[str] = []
    reported: Any = None
    finish: str | None = None
    wait: Wait = "first_byte"  # until the first chunk: a server may send its headers at once, then think
    try:
        response = await _within(
            _request(endpoint, messages, timeouts, stream=True, stream_options={"include_usage": True}),
            timeouts.first_byte_s,
            "first_byte",
            timeouts,
            endpoint.model,
        )
    except ProviderError:
        raise
    except Exception as exc:
        raise _failure(exc, endpoint, timeouts) from exc
    chunks = aiter(response)
    try:
        while True:
            seconds = timeouts.idle_s if wait == "idle" else started + timeouts.first_byte_s - time.monotonic()
            try:
                chunk = await _within(anext(chunks), seconds, wait, timeouts, endpoint.model)
            except StopAsyncIteration:
                break
            wait = "idle"
            reported = getattr(chunk, "usage", None) or reported
            if chunk.choices:
                finish = getattr(chunk.choices[0], "finish_reason", None) or finish
                delta = chunk.choices[0].delta.content
                if delta:
                    parts.append(delta)
                    yield delta
    except Exception as exc:
        error = _failure(exc, endpoint, timeouts)
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
