"""A local OpenAI-compatible chat-completions server whose replies are scripted per model.

Tests and `rlm demo` talk to it through litellm over real HTTP, so the whole client path (streaming,
errors, retries, cancellation) is exercised without keys or network. Replies are paced (time to first
token, tokens per second) and every request is recorded with the time of each chunk sent, so a test
can prove what the engine did, e.g. that it closed a stream and stopped paying for tokens.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Sequence

from aiohttp import web

from rlm.scripted import wire, writer
from rlm.scripted.process import ServerProcess, _Loopback
from rlm.scripted.replies import ScriptError, next_action, pick, within
from rlm.scripted.script import Action, Fault, Policy, RequestRecord, _Script


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
            refusal = wire.error_body("request body is not JSON", "invalid_request_error", None)
            return web.json_response(refusal, status=400)
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
                raise ScriptError(
                    404,
                    f"model '{model}' is not served by this scripted server",
                    kind="invalid_request_error",
                    code="model_not_found",
                )
            action = within(await next_action(script, body, record, index), body)
            ttft = pick(action.ttft, script.ttft, self.ttft) or 0.0
            if isinstance(action, Fault):
                await asyncio.sleep(ttft)
                return writer.fault_response(action, record)
            record.planned_text = action.text
            tps = pick(action.tps, script.tps, self.tps)
            if record.stream:
                return await writer.stream(request, body, action, record, ttft, tps)
            return await writer.complete(request, action, record, ttft, tps)
        except ScriptError as exc:
            return writer.error_response(record, exc.status, str(exc), exc.kind, exc.code)
        except asyncio.CancelledError:
            writer.finish(record, "disconnected")
            raise
        except ConnectionResetError:
            writer.finish(record, "disconnected")
            return web.Response(status=499)
