"""The scripted server's vocabulary: replies, faults, and what it records of each request.

Tests and policies write scripts with these; rlm/scripted/server.py serves them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["in_progress", "completed", "disconnected", "error", "dropped"]


@dataclass(frozen=True)
class Reply:
    """A successful reply; `ttft`/`tps` of None fall back to the script's, then the server's values."""

    text: str
    ttft: float | None = None
    tps: float | None = None
    finish_reason: str = "stop"
    early_headers: bool = False  # a stream's headers go out at once, its first chunk after ttft (llama.cpp)


@dataclass(frozen=True)
class Fault:
    """An HTTP error response with an OpenAI-style error body, sent after the time to first token."""

    status: int
    message: str = ""
    retry_after: float | None = None
    ttft: float | None = None


@dataclass(frozen=True)
class Drop:
    """A 200 reply that sends `text[:after_chars]` and then aborts the TCP connection mid-body."""

    text: str
    after_chars: int
    ttft: float | None = None
    tps: float | None = None


@dataclass(frozen=True)
class Stall:
    """A reply that stops coming with the connection left open, until the client gives up: a stream
    sends its headers and `text[:after_chars]` (0: only the opening role chunk), then nothing; a
    non-streamed reply sends nothing at all (not even its headers)."""

    text: str = ""
    after_chars: int = 0
    ttft: float | None = None
    tps: float | None = None


@dataclass(frozen=True)
class Garbage:
    """A 200 reply that breaks the protocol: a stream sends `text[:after_chars]`, then `line` as an SSE
    data line, then the rest of `text` and a normal end; a non-streamed reply is a whole HTTP body
    holding the first half of its JSON."""

    text: str
    after_chars: int = 0
    line: str = '{"choices": [{"index": 0, "delta": {"content": "unterminated'
    ttft: float | None = None
    tps: float | None = None


Action = Reply | Fault | Drop | Stall | Garbage


@dataclass(frozen=True)
class ChatRequest:
    """What a policy sees of one request; `index` counts this script's earlier requests (0-based)."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    temperature: float | None
    max_tokens: int | None
    raw: dict[str, Any]
    index: int


Policy = Callable[[ChatRequest], str | Action | Awaitable[str | Action]]


@dataclass
class RequestRecord:
    """What happened to one request. Times are `time.time()` so other processes can compare them."""

    id: str
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    received_at: float
    first_chunk_at: float | None = None
    chunk_times: list[tuple[float, str]] = field(default_factory=list)
    finished_at: float | None = None
    outcome: Outcome = "in_progress"
    planned_text: str = ""
    sent_text: str = ""
    status: int = 200


@dataclass
class _Script:
    """One model's script and how many requests it has answered (the next ChatRequest.index)."""

    source: Sequence[str | Action] | Policy
    ttft: float | None
    tps: float | None
    served: int = 0
