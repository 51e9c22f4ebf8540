"""A local OpenAI-compatible chat-completions server whose replies are scripted per model.

Tests and `rlm demo` talk to it through litellm over real HTTP, so the whole client path (streaming,
errors, retries, cancellation) is exercised without keys or network. Replies are paced (time to first
token, tokens per second) and every request is recorded with the time of each chunk sent, so a test
can prove what the engine did, e.g. that it closed a stream and stopped paying for tokens.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import inspect
import itertools
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from rlm.scripted.process import ServerProcess, _Loopback
from rlm.scripted.script import (
    Action,
    ChatRequest,
    Drop,
    Fault,
    Garbage,
    Outcome,
    Policy,
    Reply,
    RequestRecord,
    Stall,
    _Script,
)
from rlm.tokens import count_tokens, encoding


class _ScriptError(Exception):
    """The server cannot answer from the script; becomes an HTTP error with an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.code = code


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


STALL_S = 3600.0  # how long a Stall holds its connection when the client never gives up

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _pieces(text: str) -> list[str]:
    """`text` cut at token boundaries; a token holding part of a UTF-8 character joins the next one."""
    enc = encoding()
    decoder = codecs.getincrementaldecoder("utf-8")()
    pieces = []
    for token in enc.encode(text, disallowed_special=()):
        piece = decoder.decode(enc.decode_single_token_bytes(token))
        if piece:
            pieces.append(piece)
    return pieces


def _prompt_tokens(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += count_tokens(content)
        elif isinstance(content, list):
            total += sum(count_tokens(part.get("text", "")) for part in content if isinstance(part, dict))
    return total


def _within(action: Action, body: dict[str, Any]) -> Action:
    """A reply cut to the request's max_tokens, as a real server cuts it (finish_reason "length")."""
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if not isinstance(action, Reply) or not isinstance(limit, int) or limit < 1:
        return action
    tokens = encoding().encode(action.text, disallowed_special=())
    if len(tokens) <= limit:
        return action
    text = encoding().decode(tokens[:limit])
    while text and count_tokens(text) > limit:  # a character cut in two can decode to more tokens
        text = text[:-1]
    return dataclasses.replace(action, text=text, finish_reason="length")


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


class ScriptedServer(_Loopback):
    """Serves scripted replies on 127.0.0.1 from a background thread with its own event loop."""

    def __init__(self, ttft: float = 0.0, tps: float | None = None, *, port: int = 0) -> None:
        self.ttft = ttft
        self.tps = tps
        self._port = port
        self._lock = threading.Lock()
        self._scripts: dict[str, _Script] = {}
        self._records: list[RequestRecord] = []
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._bound_port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind and start serving; returns once the port is open (raises if binding failed)."""
        if self._thread is not None:
            raise RuntimeError("scripted server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(ready, failure)), name="rlm-scripted-server", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving; in-flight replies are cut off after a short grace period. Idempotent."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join()
        self._thread = None
        self._loop = None
        self._bound_port = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def spawn(policy: str, *, ttft: float = 0.0, tps: float | None = None, port: int = 0) -> ServerProcess:
        """A server scripted by a named policy (rlm/scripted/policies.py) in its own process: what a
        benchmark needs, since a server thread would compete with the client for the GIL."""
        return ServerProcess(policy, ttft=ttft, tps=tps, port=port).start()

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("scripted server is not running; call start() first")
        return self._bound_port

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_get("/v1/models", self._handle_models)
        # handler_cancellation: a client that goes away cancels its handler at once, even mid-sleep.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.25)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", self._port)
            await site.start()
            self._bound_port = runner.addresses[0][1]
            self._loop = asyncio.get_running_loop()
            self._stop_event = asyncio.Event()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            await runner.cleanup()
            return
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await runner.cleanup()

    # -- scripting -------------------------------------------------------------------------------

    def script(
        self,
        model: str,
        source: Sequence[str | Action] | Policy,
        *,
        ttft: float | None = None,
        tps: float | None = None,
    ) -> None:
        """Serve `model` from a sequence (one item per request, in order) or a policy callable.

        Scripting a model again replaces its script and restarts its request index at 0.
        """
        if not callable(source):
            source = list(source)
        with self._lock:
            self._scripts[model] = _Script(source, ttft, tps)

    def records(self, model: str | None = None) -> list[RequestRecord]:
        """Copies of the request records (optionally of one model), in arrival order."""
        with self._lock:
            return [
                dataclasses.replace(r, chunk_times=list(r.chunk_times))
                for r in self._records
                if model is None or r.model == model
            ]

    def settled_records(self, model: str | None = None, wait_s: float = 10.0) -> list[RequestRecord]:
        """The records once none is still in progress (waiting at most `wait_s`): a client that hangs
        up returns at once, while the server notices only at its next write."""
        deadline = time.monotonic() + wait_s
        records = self.records(model)
        while any(r.outcome == "in_progress" for r in records) and time.monotonic() < deadline:
            time.sleep(0.01)
            records = self.records(model)
        return records

    def reset(self) -> None:
        """Forget every script and record (requests still in flight are no longer recorded)."""
        with self._lock:
            self._scripts.clear()
            self._records.clear()

    # -- HTTP ------------------------------------------------------------------------------------

    async def _handle_models(self, request: web.Request) -> web.Response:
        with self._lock:
            models = sorted(self._scripts)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "rlm-scripted"} for m in models]
        return web.json_response({"object": "list", "data": data})

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(_error_body("request body is not JSON", "invalid_request_error", None), status=400)
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        record = RequestRecord(
            id=f"chatcmpl-scripted-{next(self._ids):06d}",
            model=model,
            messages=messages,
            stream=bool(body.get("stream")),
            received_at=time.time(),
        )
        with self._lock:
            self._records.append(record)
            script = self._scripts.get(model)
            index = 0
            if script is not None:
                index = script.served
                script.served += 1
        try:
            if script is None:
                raise _ScriptError(
                    404,
                    f"model '{model}' is not served by this scripted server",
                    kind="invalid_request_error",
                    code="model_not_found",
                )
            action = _within(await self._next_action(script, body, record, index), body)
            ttft = self._pick(action.ttft, script.ttft, self.ttft) or 0.0
            if isinstance(action, Fault):
                await asyncio.sleep(ttft)
                return self._fault_response(action, record)
            record.planned_text = action.text
            tps = self._pick(action.tps, script.tps, self.tps)
            if record.stream:
                return await self._stream(request, body, action, record, ttft, tps)
            return await self._complete(request, body, action, record, ttft, tps)
        except _ScriptError as exc:
            return self._error_response(record, exc.status, str(exc), exc.kind, exc.code)
        except asyncio.CancelledError:
            self._finish(record, "disconnected")
            raise
        except ConnectionResetError:
            self._finish(record, "disconnected")
            return web.Response(status=499)

    async def _next_action(self, script: _Script, body: dict[str, Any], record: RequestRecord, index: int) -> Action:
        source = script.source
        if callable(source):
            request = ChatRequest(
                model=record.model,
                messages=record.messages,
                stream=record.stream,
                temperature=body.get("temperature"),
                max_tokens=body.get("max_tokens", body.get("max_completion_tokens")),
                raw=body,
                index=index,
            )
            try:
                item = source(request)
                if inspect.isawaitable(item):
                    item = await item
            except Exception as exc:
                raise _ScriptError(500, f"policy for model {record.model} raised {exc!r}", kind="server_error") from exc
        elif index < len(source):
            item = source[index]
        else:
            raise _ScriptError(
                500,
                f"script for model {record.model} is exhausted after {len(source)} replies",
                kind="server_error",
            )
        if isinstance(item, str):
            return Reply(item)
        if isinstance(item, Reply | Fault | Drop | Stall | Garbage):
            return item
        raise _ScriptError(
            500,
            f"script for model {record.model} gave {item!r}; expected str, Reply, Fault, Drop, Stall or Garbage",
            kind="server_error",
        )

    @staticmethod
    def _pick(*values: float | None) -> float | None:
        return next((v for v in values if v is not None), None)

    def _finish(self, record: RequestRecord, outcome: Outcome) -> None:
        record.finished_at = time.time()
        record.outcome = outcome

    def _error_response(
        self, record: RequestRecord, status: int, message: str, kind: str, code: str | None
    ) -> web.Response:
        record.status = status
        self._finish(record, "error")
        return web.json_response(_error_body(message, kind, code), status=status)

    def _fault_response(self, fault: Fault, record: RequestRecord) -> web.Response:
        response = self._error_response(
            record,
            fault.status,
            fault.message or f"scripted fault: HTTP {fault.status}",
            _ERROR_TYPES.get(fault.status, "server_error" if fault.status >= 500 else "api_error"),
            "rate_limit_exceeded" if fault.status == 429 else None,
        )
        if fault.retry_after is not None:
            seconds = fault.retry_after
            response.headers["Retry-After"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
        return response

    def _usage(self, record: RequestRecord, completion_tokens: int) -> dict[str, int]:
        prompt = _prompt_tokens(record.messages)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        }

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        action: Reply | Drop | Stall | Garbage,
        record: RequestRecord,
        ttft: float,
        tps: float | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        if isinstance(action, Reply) and action.early_headers:
            await response.prepare(request)
        await asyncio.sleep(ttft)
        cut = not isinstance(action, Reply)
        text = action.text[: action.after_chars] if cut else action.text
        pieces = _pieces(text)
        created = int(record.received_at)

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return _sse(
                {
                    "id": record.id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": record.model,
                    "choices": [choice],
                }
            )

        if not response.prepared:
            await response.prepare(request)
        await self._send(request, response, record, chunk({"role": "assistant", "content": ""}, None))
        if tps is None:
            data = b"".join(chunk({"content": p}, None) for p in pieces)
            await self._send(request, response, record, data, pieces)
        else:
            start = time.monotonic()
            for i, piece in enumerate(pieces):
                await asyncio.sleep(max(0.0, start + i / tps - time.monotonic()))
                await self._send(request, response, record, chunk({"content": piece}, None), [piece])
        if isinstance(action, Drop):
            await self._abort(request)
            self._finish(record, "dropped")
            return response
        if isinstance(action, Stall):
            await asyncio.sleep(STALL_S)  # a client that gives up cancels this handler
            self._finish(record, "completed")
            return response
        if isinstance(action, Garbage):
            await self._send(request, response, record, _sse(action.line))
            rest = _pieces(action.text[action.after_chars :])
            await self._send(request, response, record, b"".join(chunk({"content": p}, None) for p in rest), rest)
        tail = chunk({}, action.finish_reason if isinstance(action, Reply) else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = self._usage(record, len(encoding().encode(action.text, disallowed_special=())))
            tail += _sse(
                {
                    "id": record.id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": record.model,
                    "choices": [],
                    "usage": usage,
                }
            )
        await self._send(request, response, record, tail + _sse("[DONE]"))
        self._finish(record, "completed")  # before the body's end: a client may see it and look at once
        await response.write_eof()
        return response

    async def _send(
        self,
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

    async def _abort(self, request: web.Request) -> None:
        """Let written bytes reach the client, then cut the connection without finishing the body."""
        transport = request.transport
        if transport is None:
            return
        deadline = time.monotonic() + 2.0
        while transport.get_write_buffer_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        transport.abort()

    async def _complete(
        self,
        request: web.Request,
        body: dict[str, Any],
        action: Reply | Drop | Stall | Garbage,
        record: RequestRecord,
        ttft: float,
        tps: float | None,
    ) -> web.StreamResponse:
        """A non-streaming reply arrives whole, after the time the stream would have taken."""
        if isinstance(action, Stall):
            await asyncio.sleep(ttft + STALL_S)  # a client that gives up cancels this handler
            self._finish(record, "completed")
            return web.Response(status=504)
        n_tokens = len(encoding().encode(action.text, disallowed_special=()))
        await asyncio.sleep(ttft + (n_tokens / tps if tps else 0.0))
        finish = action.finish_reason if isinstance(action, Reply) else "stop"
        payload = json.dumps(
            {
                "id": record.id,
                "object": "chat.completion",
                "created": int(record.received_at),
                "model": record.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": action.text},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": self._usage(record, n_tokens),
            },
            ensure_ascii=False,
        ).encode()
        if isinstance(action, Garbage):
            response = web.Response(body=payload[: len(payload) // 2], content_type="application/json")
            await response.prepare(request)
            record.sent_text = action.text
            self._finish(record, "completed")
            await response.write_eof()
            return response
        if isinstance(action, Drop):
            # Promise the whole body, send its first half, then cut: the client sees a broken body.
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(payload)
            await response.prepare(request)
            await self._send(request, response, record, payload[: len(payload) // 2])
            await self._abort(request)
            self._finish(record, "dropped")
            return response
        response = web.Response(body=payload, content_type="application/json")
        await response.prepare(request)
        now = time.time()
        record.first_chunk_at = now
        record.chunk_times.append((now, action.text))
        record.sent_text = action.text
        self._finish(record, "completed")  # before the body is sent: the client may look at once
        await response.write_eof()
        return response
