"""Who makes a provider call: rlm's own OpenAI client for OpenAI-compatible endpoints, litellm (in this
process or in call workers) for every other provider, chosen per endpoint by the `transport` setting.

The gateway decides what is sent and when; a transport only sends it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from rlm.config import DEFAULTS
from rlm.models import openai_transport
from rlm.models.openai_transport import OpenAITransport
from rlm.models.provider import Endpoint, LitellmTransport, Timeouts
from rlm.types import Completion

__all__ = ["AutoTransport", "Transport", "select_transport"]


class Transport(Protocol):
    """Who makes a provider call: rlm's own OpenAI client (`OpenAITransport`), litellm in this process
    (`LitellmTransport`) or litellm in `CallWorkers`; `AutoTransport` picks per endpoint."""

    async def complete(self, endpoint: Endpoint, messages: list[dict[str, Any]]) -> Completion: ...

    def stream(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], on_done: Callable[[Completion], None]
    ) -> AsyncIterator[str]: ...


class AutoTransport:
    """OpenAI-compatible endpoints on the native transport, every other provider on litellm (which is
    imported only when such an endpoint is first called)."""

    def __init__(self, native: OpenAITransport, other: Transport) -> None:
        self.native = native
        self.other = other

    def _for(self, endpoint: Endpoint) -> Transport:
        return self.native if openai_transport.serves(endpoint) else self.other

    async def complete(self, endpoint: Endpoint, messages: list[dict[str, Any]]) -> Completion:
        return await self._for(endpoint).complete(endpoint, messages)

    def stream(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], on_done: Callable[[Completion], None]
    ) -> AsyncIterator[str]:
        return self._for(endpoint).stream(endpoint, messages, on_done)


def select_transport(
    mode: str = DEFAULTS.transport.kind, timeouts: Timeouts | None = None, litellm_calls: Transport | None = None
) -> Transport:
    """The transport of the `transport` setting: "auto" or "litellm" (every call through litellm).
    `litellm_calls` makes the litellm calls (call workers); default: litellm in this process."""
    other = litellm_calls or LitellmTransport(timeouts)
    if mode == "litellm":
        return other
    if mode != "auto":
        raise ValueError(f"transport must be 'auto' or 'litellm', got {mode!r}")
    return AutoTransport(OpenAITransport(timeouts), other)
