"""How the scripted server sends a reply: paced SSE streams, whole bodies, and the faults it injects
(HTTP errors, connections cut mid-body, stalls, broken protocol), each noted in the request's record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from rlm.scripted import wire
from rlm.scripted.script import Drop, Fault, Garbage, Outcome, Reply, RequestRecord, Stall

STALL_S = 3600.0  # how long a Stall holds its connection when the client never gives up


def finish(record: RequestRecord, outcome: Outcome) -> None:
    record.finished_at = time.time()
    record.outcome = outcome


def error_response(record: RequestRecord, status: int, message: str, kind: str, code: str | None) -> web.Response:
    record.status = status
    finish(record, "error")
    return web.json_response(wire.error_body(message, kind, code), status=status)


def fault_response(fault: Fault, record: RequestRecord) -> web.Response:
    """The scripted HTTP error, with a Retry-After header when the fault names one."""
    response = error_response(
        record,
        fault.status,
        fault.message or f"scripted fault: HTTP {fault.status}",
        wire.error_type(fault.status),
        "rate_limit_exceeded" if fault.status == 429 else None,
    )
    if fault.retry_after is not None:
        seconds = fault.retry_after
        response.headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    return response


async def send(
    request: web.Request,
    response: web.StreamResponse,
    record: RequestRecord,
    data: bytes,
    pieces: Sequence[str] = (),
) -> None:
    """Write `data`; the content `pieces` it carries go into the record once written."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client went away")
    await response.write(data)
    now = time.time()
    if record.first_chunk_at is None:
        record.first_chunk_at = now
    record.chunk_times.extend((now, piece) for piece in pieces)
    record.sent_text += "".join(pieces)


async def abort(request: web.Request) -> None:
    """Let written bytes reach the client, then cut the connection without finishing the body."""
    transport = request.transport
    if transport is None:
        return
    deadline = time.monotonic() + 2.0
    while transport.get_write_buffer_size() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    transport.abort()


async def stream(
    request: web.Request,
    body: dict[str, Any],
    action: Reply | Drop | Stall | Garbage,
    record: RequestRecord,
    ttft: float,
    tps: float | None,
) -> web.StreamResponse:
    """The reply as SSE chunks, one per token at `tps` (all at once when None), after `ttft`."""
    response = web.StreamResponse(headers=wire.SSE_HEADERS)
    if isinstance(action, Reply) and action.early_headers:
        await response.prepare(request)
    await asyncio.sleep(ttft)
    cut = not isinstance(action, Reply)
    text = action.text[: action.after_chars] if cut else action.text
    pieces = wire.text_pieces(text)

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> bytes:
        return wire.chunk(record, delta, finish_reason)

    if not response.prepared:
        await response.prepare(request)
    await send(request, response, record, chunk({"role": "assistant", "content": ""}, None))
    if tps is None:
        data = b"".join(chunk({"content": p}, None) for p in pieces)
        await send(request, response, record, data, pieces)
    else:
        start = time.monotonic()
        for i, piece in enumerate(pieces):
            await asyncio.sleep(max(0.0, start + i / tps - time.monotonic()))
            await send(request, response, record, chunk({"content": piece}, None), [piece])
    if isinstance(action, Drop):
        await abort(request)
        finish(record, "dropped")
        return response
    if isinstance(action, Stall):
        await asyncio.sleep(STALL_S)  # a client that gives up cancels this handler
        finish(record, "completed")
        return response
    if isinstance(action, Garbage):
        await send(request, response, record, wire.sse(action.line))
        rest = wire.text_pieces(action.text[action.after_chars :])
        await send(request, response, record, b"".join(chunk({"content": p}, None) for p in rest), rest)
    tail = chunk({}, action.finish_reason if isinstance(action, Reply) else "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        tail += wire.usage_chunk(record, wire.completion_tokens(action.text))
    await send(request, response, record, tail + wire.sse("[DONE]"))
    finish(record, "completed")  # before the body's end: a client may see it and look at once
    await response.write_eof()
    return response


async def complete(
    request: web.Request,
    action: Reply | Drop | Stall | Garbage,
    record: RequestRecord,
    ttft: float,
    tps: float | None,
) -> web.StreamResponse:
    """A non-streaming reply arrives whole, after the time the stream would have taken."""
    if isinstance(action, Stall):
        await asyncio.sleep(ttft + STALL_S)  # a client that gives up cancels this handler
        finish(record, "completed")
        return web.Response(status=504)
    n_tokens = wire.completion_tokens(action.text)
    await asyncio.sleep(ttft + (n_tokens / tps if tps else 0.0))
    finish_reason = action.finish_reason if isinstance(action, Reply) else "stop"
    payload = wire.completion_body(record, action.text, finish_reason, n_tokens)
    if isinstance(action, Garbage):
        response = web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        await response.prepare(request)
        record.sent_text = action.text
        finish(record, "completed")
        await response.write_eof()
        return response
    if isinstance(action, Drop):
        # Promise the whole body, send its first half, then cut: the client sees a broken body.
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(payload)
        await response.prepare(request)
        await send(request, response, record, payload[: len(payload) // 2])
        await abort(request)
        finish(record, "dropped")
        return response
    response = web.Response(body=payload, content_type="application/json")
    await response.prepare(request)
    now = time.time()
    record.first_chunk_at = now
    record.chunk_times.append((now, action.text))
    record.sent_text = action.text
    finish(record, "completed")  # before the body is sent: the client may look at once
    await response.write_eof()
    return response
