"""The OpenAI chat-completions protocol on aiohttp: every OpenAI-compatible provider, without litellm.

litellm costs ~3 s to import and ~3-6 ms of CPU per call (~0.5 ms per streamed chunk) on the one
event loop; this transport makes the same request with one JSON encode and, per streamed chunk, one
JSON decode. It keeps litellm's meaning of everything the gateway relies on: the same base URLs and
key variables (rlm/models/openai_compat.py), usage asked for in streams, and errors classified as
`provider.classify` does (transient statuses and network failures retried, Retry-After honoured,
context-window errors never retried).

Connections: one keep-alive pool per base URL per event loop, closed when the loop shuts down.
Proxies come from the environment (HTTP(S)_PROXY, NO_PROXY), read once per pool: aiohttp's
`trust_env` would also look up ~/.netrc in a thread on every request. Cancelling a call, or closing
a stream early, closes its connection, so the server sees the client go away and stops generating.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from rlm.errors import ProviderError, StreamInterrupted
from rlm.models.openai_compat import providers
from rlm.models.pricing import provider_of, usage_of
from rlm.models.provider import CHECK_SERVER, MISSING_KEY, TRANSIENT_STATUS, Endpoint, Timeouts, Wait, prompt_tokens
from rlm.tokens import count_tokens
from rlm.types import Completion, Usage

ERROR_NAMES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "Timeout",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    503: "ServiceUnavailableError",
}
# litellm's signs of a prompt longer than the model's window (exception_mapping_utils), lowercased
CONTEXT_WINDOW = re.compile(
    r"exceed context limit|maximum context length|model's maximum context limit|context_length_exceeded"
    r"|is longer than the model's context length|input tokens exceed the configured limit"
    r"|exceeds the available context size|exceeds the maximum number of tokens allowed|prompt is too long"
    r"|context window exceeded|current length is .* while limit is|maximum input length is .* tokens"
)
ERROR_BODY_BYTES = 64 << 10  # of an error response, enough for any provider's message


@dataclass(frozen=True)
class Target:
    """Where one endpoint's calls go and what the server calls the model."""

    base: str
    model: str
    key: str | None


def target(endpoint: Endpoint) -> Target | None:
    """The OpenAI-compatible target of `endpoint`, None when its provider does not speak the protocol
    (or has no base URL we can know)."""
    provider_name = provider_of(endpoint.model)
    spec = providers().get(provider_name or "")
    if spec is None:
        return None
    base = spec.base_url(endpoint.api_base)
    if base is None or urlsplit(base).scheme not in ("http", "https"):
        return None  # no base, or a unix socket: litellm's transport handles those
    prefix, sep, rest = endpoint.model.partition("/")
    model = rest if sep and prefix == provider_name else endpoint.model  # gpt-4o-mini has no prefix
    return Target(base, model, endpoint.api_key or spec.key())


def serves(endpoint: Endpoint) -> bool:
    return target(endpoint) is not None


# -- connection pools ------------------------------------------------------------------------------


class _Pools:
    """One ClientSession per base URL on one event loop. An async generator parked at its first
    `yield` closes them: the loop's shutdown (asyncio.run, asyncio.Runner) closes every async
    generator still open, so the sessions end with the loop that owns them and never leak a warning."""

    def __init__(self) -> None:
        self.sessions: dict[str, tuple[aiohttp.ClientSession, str | None]] = {}
        self.keeper: AsyncIterator[None] | None = None

    async def _keep(self, loop: asyncio.AbstractEventLoop) -> AsyncIterator[None]:
        try:
            yield
        finally:
            _loops.pop(loop, None)
            sessions, self.sessions = list(self.sessions.values()), {}
            for session, _proxy in sessions:
                await session.close()


_loops: dict[asyncio.AbstractEventLoop, _Pools] = {}


def _env_proxy(base: str) -> str | None:
    """The proxy the environment names for `base` (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), if any."""
    parts = urlsplit(base)
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


async def _session(base: str, timeouts: Timeouts) -> tuple[aiohttp.ClientSession, str | None]:
    loop = asyncio.get_running_loop()
    pools = _loops.get(loop)
    if pools is None:
        pools = _loops[loop] = _Pools()
        pools.keeper = pools._keep(loop)
        await anext(pools.keeper)  # registered with the loop's async generators from here on
    entry = pools.sessions.get(base)
    if entry is None or entry[0].closed:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)  # the scheduler bounds what is in flight
        timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect_s, sock_connect=timeouts.connect_s, sock_read=timeouts.first_byte_s
        )
        session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        entry = pools.sessions[base] = (session, _env_proxy(base))
    return entry


# -- the transport ---------------------------------------------------------------------------------


class OpenAITransport:
    """The gateway's Transport for OpenAI-compatible endpoints (see `serves`)."""

    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        # per request: the pools are shared by every transport on the loop, whatever its timeouts
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.timeouts.connect_s,
            sock_connect=self.timeouts.connect_s,
            sock_read=self.timeouts.first_byte_s,
        )

    async def complete(self, endpoint: Endpoint, messages: list[dict[str, Any]]) -> Completion:
        started = time.monotonic()
        response = await self._post(endpoint, messages, stream=False)
        try:
            payload = await response.read()
            data = json.loads(payload)
        except asyncio.CancelledError:
            response.close()
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            response.close()
            raise _network_error(exc, endpoint.model, self.timeouts, "idle") from exc
        finally:
            response.release()
        if not isinstance(data, dict) or not data.get("choices"):
            raise _body_error(data, endpoint.model)
        choice = data["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        return Completion(
            text=text,
            model=endpoint.model,
            usage=_usage(endpoint, messages, data.get("usage"), text),
            latency_s=time.monotonic() - started,
            finish_reason=choice.get("finish_reason"),
        )

    async def stream(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], on_done: Callable[[Completion], None]
    ) -> AsyncIterator[str]:
        """Text deltas; `on_done` gets the Completion when the stream ends, fails or is closed early,
        so tokens that were generated are accounted for even when the consumer stops reading."""
        started = time.monotonic()
        response = await self._post(endpoint, messages, stream=True)
        parts: list[str] = []
        reported: dict[str, Any] | None = None
        finish: str | None = None
        done = False
        wait: Wait = "first_byte"
        try:
            pending = b""
            async for data in response.content.iter_any():
                if wait == "first_byte":
                    wait = "idle"
                    self._between_pieces(response)
                lines = (pending + data).split(b"\n") if pending else data.split(b"\n")
                pending = lines.pop()
                for line in lines:
                    if done or not line.startswith(b"data:"):
                        continue  # blank separators, comments (": keep-alive"), event names; the body's end
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True  # read on to the body's end, so the connection can be reused
                        continue
                    chunk = json.loads(payload)
                    if chunk.get("usage"):
                        reported = chunk["usage"]
                    choices = chunk.get("choices")
                    if choices:
                        choice = choices[0]
                        delta = (choice.get("delta") or {}).get("content")
                        finish = choice.get("finish_reason") or finish
                        if delta:
                            parts.append(delta)
                            yield delta
                    elif "error" in chunk:  # some providers report a failure inside a 200 stream
                        raise _body_error(chunk, endpoint.model)
            if not done and finish is None:
                raise ProviderError(
                    f"{endpoint.model}: APIConnectionError: the stream ended before the reply did",
                    model=endpoint.model,
                    transient=True,
                )
            response.release()  # read to the end: the connection goes back to the pool
        except (aiohttp.ClientError, TimeoutError, ValueError, ProviderError) as exc:
            if done:
                return  # the reply was whole; only the end of its body went wrong (the connection is closed below)
            error = exc if isinstance(exc, ProviderError) else _network_error(exc, endpoint.model, self.timeouts, wait)
            if parts:
                raise StreamInterrupted(str(error), partial_text="".join(parts), model=endpoint.model) from exc
            raise error from exc
        finally:
            response.close()  # no-op after release; otherwise (cancelled, closed early) the server sees us go
            text = "".join(parts)
            on_done(
                Completion(
                    text=text,
                    model=endpoint.model,
                    usage=_usage(endpoint, messages, reported, text),
                    latency_s=time.monotonic() - started,
                    finish_reason=finish,
                )
            )

    async def _post(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], *, stream: bool
    ) -> aiohttp.ClientResponse:
        """Send the request; the response once its status says it succeeded (else a ProviderError)."""
        where = target(endpoint)
        if where is None:
            raise ProviderError(
                f"{endpoint.model}: not an OpenAI-compatible endpoint with a known base URL; pass --api-base "
                "or use the litellm transport.",
                model=endpoint.model,
            )
        body: dict[str, Any] = {"model": where.model, "messages": messages, **endpoint.params}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        headers = {"Content-Type": "application/json"}
        if where.key:
            headers["Authorization"] = f"Bearer {where.key}"
        session, proxy = await _session(where.base, self.timeouts)
        try:
            response = await session.post(
                where.base + "/chat/completions",
                data=json.dumps(body).encode(),
                headers=headers,
                proxy=proxy,
                timeout=self._timeout,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _network_error(exc, endpoint.model, self.timeouts, "first_byte") from exc
        if response.status >= 400:
            try:
                raw = await response.content.read(ERROR_BODY_BYTES)
            except (aiohttp.ClientError, TimeoutError):
                raw = b""
            finally:
                response.close()
            raise _status_error(response.status, response.headers, raw, endpoint.model, keyless=not where.key)
        if not stream:  # a whole reply has started: from here on, the wait between pieces of its body
            self._between_pieces(response)
        return response

    def _between_pieces(self, response: aiohttp.ClientResponse) -> None:
        """The reply has started: each wait from now on is for its next piece (`idle_s`). A stream
        starts with its first data, not its headers: a local server sends those at once and may
        then think over a long prompt for minutes."""
        protocol = response.connection.protocol if response.connection is not None else None
        if protocol is not None:
            protocol.read_timeout = self.timeouts.idle_s
            protocol.start_timeout()


# -- replies and errors ----------------------------------------------------------------------------


def _usage(endpoint: Endpoint, messages: list[dict[str, Any]], reported: dict[str, Any] | None, text: str) -> Usage:
    """Usage from what the server reported, estimated locally where it reported nothing."""
    reported = reported or {}
    cached = (reported.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return usage_of(
        endpoint.model,
        reported.get("prompt_tokens") or prompt_tokens(messages),
        reported.get("completion_tokens") or count_tokens(text),
        cached if isinstance(cached, int) else 0,
    )


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from Retry-After (seconds or an HTTP date) or retry-after-ms, if given."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _message_of(raw: bytes) -> str:
    """The provider's error message from an OpenAI-style body ({"error": {"message": ...}}), else the text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error.get("detail") or json.dumps(error))[:500]
    return str(error)[:500]


def _status_error(status: int, headers: Any, raw: bytes, model: str, *, keyless: bool) -> ProviderError:
    message = _message_of(raw) or f"HTTP {status}"
    if MISSING_KEY.search(message) or (status == 401 and keyless):
        return ProviderError(
            f"{model}: no API key. Set the provider's key variable (e.g. OPENAI_API_KEY) or pass --api-key.",
            model=model,
            status_code=status,
        )
    context = CONTEXT_WINDOW.search(message.lower()) is not None
    kind = "ContextWindowExceededError" if context else ERROR_NAMES.get(status, "APIError")
    return ProviderError(
        f"{model}: {kind}: {message} (HTTP {status})",
        model=model,
        status_code=status,
        transient=status in TRANSIENT_STATUS and not context,
        retry_after=_retry_after(headers),
    )


def _body_error(data: Any, model: str) -> ProviderError:
    """A 200 reply without choices: an error object inside it (classified by its code), or garbage."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return ProviderError(f"{model}: APIError: a reply without choices: {str(data)[:300]}", model=model)
    code = error.get("code")
    status = code if isinstance(code, int) else None
    message = str(error.get("message") or error)[:500]
    context = CONTEXT_WINDOW.search(message.lower()) is not None
    return ProviderError(
        f"{model}: APIError: {message}",
        model=model,
        status_code=status,
        transient=(status is None or status in TRANSIENT_STATUS) and not context,
    )


def _network_error(exc: BaseException, model: str, timeouts: Timeouts, wait: Wait) -> ProviderError:
    """A connection that failed, timed out or broke mid-reply: transient, like litellm's APIConnectionError.
    A wait that ran out names its setting (`wait`, unless it was the connection's)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return timeouts.expired("connect", model)
    if isinstance(exc, TimeoutError):
        return timeouts.expired(wait, model)
    if isinstance(exc, ValueError):  # a body or stream line that is not JSON
        return ProviderError(f"{model}: APIError: the server sent malformed JSON: {exc}", model=model, transient=True)
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):
        why = "connection refused" if isinstance(exc.os_error, ConnectionRefusedError) else str(exc.os_error)
        detail = f"nothing answers at {exc.host}:{exc.port} ({why}); {CHECK_SERVER}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        detail = f"the connection broke mid-reply ({detail})"
    return ProviderError(f"{model}: APIConnectionError: {detail}", model=model, transient=True)
