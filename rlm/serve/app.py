"""The `rlm serve` aiohttp application: routes, the key check, limits and one RLM run per chat request."""

from __future__ import annotations

import asyncio
import copy
import hmac
import itertools
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rlm.errors import ConfigError, ContextError
from rlm.events import Event
from rlm.serve import openai_format as fmt
from rlm.serve.metrics import Metrics
from rlm.serve.openai_format import SERVED_NAME, ApiError, error_response
from rlm.serve.options import ServeOptions
from rlm.serve.sources import build_context, resolve_under_roots
from rlm.serve.uploads import Uploads
from rlm.types import Status

if TYPE_CHECKING:
    from rlm.api import RLM
    from rlm.api.result import RLMResult


class RLMService:
    """The aiohttp application: routes, auth, limits and one RLM run per chat request."""

    def __init__(self, engine: RLM, options: ServeOptions) -> None:
        if engine.settings.limits.timeout is None:
            engine = copy.copy(engine)
            engine.settings = engine.settings.updated(timeout=options.default_timeout_s)
        self.engine = engine
        self.options = options
        self.roots = [root.resolve(strict=True) for root in options.context_roots]
        self.root_model = engine.settings.models.require_model()
        self.model_names = [SERVED_NAME, f"{SERVED_NAME}/{self.root_model}"]
        self.metrics = Metrics()
        self.uploads = Uploads(options.max_files, options.max_upload_bytes, options.upload_ttl_s)
        self.created = int(time.time())
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.options.max_body_bytes, middlewares=[self._guard])
        app.cleanup_ctx.append(self.uploads.sweeping)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{name:.+}", self.model)
        app.router.add_post("/v1/files", self.upload)
        app.router.add_get("/v1/files", self.list_files)
        app.router.add_get("/v1/files/{id}", self.file)
        app.router.add_delete("/v1/files/{id}", self.delete_file)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.prometheus)
        return app

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Bearer key (not for /health), and every refusal as an OpenAI-style error object."""
        try:
            if self.options.api_key and request.path != "/health":
                given = request.headers.get("Authorization", "")
                expected = f"Bearer {self.options.api_key}"
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    raise ApiError(401, "missing or wrong API key (Authorization: Bearer KEY)", "invalid_api_key")
            return await handler(request)
        except ApiError as refused:
            self.metrics.errors[refused.status] += 1
            return error_response(refused.status, str(refused), refused.code, refused.param)
        except web.HTTPRequestEntityTooLarge:
            self.metrics.errors[413] += 1
            limit = self.options.max_body_bytes
            return error_response(
                413, f"request body larger than this server's limit of {limit} bytes", "body_too_large"
            )
        except web.HTTPException as http:
            if http.status < 400:
                raise
            self.metrics.errors[http.status] += 1
            return error_response(
                http.status, f"{request.method} {request.path}: {http.reason}", http.reason.lower().replace(" ", "_")
            )

    # -- small endpoints ------------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "runs_in_flight": self.metrics.in_flight})

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")

    def _model_card(self, name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": self.created, "owned_by": "rlm"}

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._model_card(n) for n in self.model_names]})

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.model_names:
            raise ApiError(
                404, f"the model {name!r} does not exist; this server serves {self.model_names}", "model_not_found"
            )
        return web.json_response(self._model_card(name))

    # -- files ----------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise ApiError(400, "upload a file as multipart/form-data with a 'file' field", "invalid_upload")
        form = await request.post()
        part = form.get("file")
        if not isinstance(part, web.FileField):
            raise ApiError(400, "the upload has no 'file' field", "invalid_upload", "file")
        upload = self.uploads.add(part.filename or "upload", part.file.read(), str(form.get("purpose", "user_data")))
        return web.json_response(upload.describe())

    async def list_files(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [u.describe() for u in self.uploads]})

    async def file(self, request: web.Request) -> web.Response:
        return web.json_response(self.uploads.get(request.match_info["id"]).describe())

    async def delete_file(self, request: web.Request) -> web.Response:
        upload = self.uploads.delete(request.match_info["id"])
        return web.json_response({"id": upload.id, "object": "file", "deleted": True})

    # -- chat -----------------------------------------------------------------------------------

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = fmt.parse_body(await request.read())
        model = body.get("model", SERVED_NAME)
        if model not in self.model_names:
            raise ApiError(
                404,
                f"the model {model!r} does not exist; this server serves {self.model_names}",
                "model_not_found",
                "model",
            )
        question, history = fmt.split_messages(body.get("messages"))
        ext = fmt.extension_of(body)
        engine = copy.copy(self.engine)
        engine.settings = self.engine.settings.updated(**fmt.cap_budget(self.engine.settings, ext))
        # checked before anything runs, so a bad path or id costs nothing
        paths = [resolve_under_roots(name, self.roots) for name in ext.get("context_files", [])]
        uploads = [self.uploads.get(file_id) for file_id in ext.get("file_ids", [])]
        if self.metrics.in_flight >= self.options.max_concurrent:
            raise ApiError(
                503,
                f"the server is running its limit of {self.options.max_concurrent} runs; retry shortly",
                "server_busy",
            )
        self.metrics.in_flight += 1
        try:
            try:
                context = await asyncio.to_thread(build_context, history, paths, uploads)
            except ContextError as bad:
                raise ApiError(400, str(bad), "invalid_context", "rlm") from None
            try:
                if body.get("stream"):
                    return await self._stream(request, engine, context, question, model)
                return await self._complete(engine, context, question, model)
            finally:
                from rlm.context import close

                close(context)
        finally:
            self.metrics.in_flight -= 1

    async def _run(
        self, engine: RLM, context: Any, question: str, on_event: Callable[[Event], None] | None
    ) -> RLMResult:
        """One run; a cancelled handler (client gone) cancels it and waits until the tree has stopped."""
        task = asyncio.ensure_future(engine.aquery(context, question, on_event=on_event))
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self.metrics.runs["disconnected"] += 1
            raise
        except ConfigError as bad:
            raise ApiError(500, f"the server's model configuration is invalid: {bad}", "config_error") from None
        self.metrics.record(result)
        if result.answer is None and result.status in (Status.PROVIDER_ERROR, Status.ERROR):
            status = 502 if result.status is Status.PROVIDER_ERROR else 500
            raise ApiError(status, f"the run failed: {result.error}", result.status.value)
        return result

    def _completion_id(self) -> str:
        return f"chatcmpl-rlm-{next(self._ids)}-{secrets.token_hex(4)}"

    async def _complete(self, engine: RLM, context: Any, question: str, model: str) -> web.Response:
        result = await self._run(engine, context, question, None)
        return web.json_response(fmt.completion(result, self._completion_id(), int(time.time()), model))

    async def _stream(
        self, request: web.Request, engine: RLM, context: Any, question: str, model: str
    ) -> web.StreamResponse:
        """Progress as `reasoning_content` deltas while the run goes, then the answer, usage, [DONE]."""
        completion_id, created = self._completion_id(), int(time.time())
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str] = asyncio.Queue()
        loop_thread = threading.get_ident()

        def on_event(event: Event) -> None:
            line = fmt.progress_line(event)
            if line is None:
                return
            if threading.get_ident() == loop_thread:
                lines.put_nowait(line)
            else:
                loop.call_soon_threadsafe(lines.put_nowait, line)

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            return fmt.chunk(completion_id, created, model, delta, finish, **extra)

        run = asyncio.ensure_future(self._run(engine, context, question, on_event))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        try:
            await response.prepare(request)
            await response.write(chunk({"role": "assistant", "content": ""}))
            while not run.done():
                getter = asyncio.ensure_future(lines.get())
                await asyncio.wait({getter, run}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    await response.write(chunk({"reasoning_content": getter.result()}))
                else:
                    getter.cancel()
            while not lines.empty():
                await response.write(chunk({"reasoning_content": lines.get_nowait()}))
            try:
                result = run.result()
            except ApiError as failed:
                self.metrics.errors[failed.status] += 1
                await response.write(fmt.error_event(failed))
                await response.write(fmt.SSE_DONE)
                return response
            await response.write(chunk({"content": result.answer or ""}))
            await response.write(chunk({}, fmt.finish_reason(result), rlm=fmt.extension(result)))
            await response.write(fmt.usage_chunk(result, completion_id, created, model) + fmt.SSE_DONE)
            await response.write_eof()
            return response
        finally:
            if not run.done():  # the client went away (cancelled handler or a failed write)
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)
