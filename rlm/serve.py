"""`rlm serve`: an OpenAI-compatible chat-completions server whose model is an RLM.

Any tool that speaks the OpenAI API (the `openai` SDK, chat front-ends, agent frameworks) can then use
an RLM as a model: the last user message is the question, the context is the earlier messages, or
files named under operator-allowed roots, or files uploaded through `/v1/files`. Each request runs
its own `RLM.aquery` (own events, budget and gateway), so nothing of one request is visible to another.

Built on aiohttp (already a dependency for the scripted server and the native transport). A client
that goes away cancels its handler (`handler_cancellation`), and with it the whole run tree.
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import ipaddress
import itertools
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rlm.errors import ConfigError, ContextError
from rlm.events import Event
from rlm.types import Status

if TYPE_CHECKING:
    from rlm.api import RLM, RLMResult

# Budget fields a request may set in its "rlm" extension; the operator's value, when set, is the cap.
BUDGET_FIELDS: dict[str, type] = {
    "max_cost": float,
    "max_tokens": int,
    "max_calls": int,
    "timeout": float,
    "max_iterations": int,
    "max_depth": int,
}
EXTENSION_FIELDS = {"context_files", "file_ids", *BUDGET_FIELDS}
LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
SERVED_NAME = "rlm"

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "server_error",
}


class ApiError(Exception):
    """A request the server refuses; becomes an OpenAI-style error object with this status."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def error_response(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    body = {
        "error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "param": param, "code": code}
    }
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return web.json_response(body, status=status, headers=headers)


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this machine (no key is needed then)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServeOptions:
    """What the operator decides: who may call, what is reachable on disk, and the limits."""

    api_key: str | None = None
    context_roots: list[Path] = field(default_factory=list)
    max_body_bytes: int = 32 * 2**20
    max_concurrent: int = 8
    # a run's wall-time limit when the operator set no --timeout: a server never runs one forever
    default_timeout_s: float = 600.0
    # uploads live in memory, so both their number, their total size and their age are capped
    max_files: int = 256
    max_upload_bytes: int = 512 * 2**20
    upload_ttl_s: float = 3600.0


@dataclass
class _Upload:
    id: str
    filename: str
    data: bytes
    purpose: str
    created_at: int
    expires_at: float

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "expires_at": int(self.expires_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


class Metrics:
    """Counters for `/metrics`, in the Prometheus text format."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()  # by final status, plus "disconnected"
        self.errors: Counter[int] = Counter()  # error responses by HTTP status
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self.in_flight = 0

    def record(self, result: RLMResult) -> None:
        self.runs[result.status.value] += 1
        self.calls += result.usage.calls
        self.prompt_tokens += result.usage.prompt_tokens
        self.completion_tokens += result.usage.completion_tokens
        self.cost_usd += result.usage.cost_usd

    def render(self) -> str:
        lines = [
            "# HELP rlm_serve_runs_total Runs ended, by status (disconnected: the client went away).",
            "# TYPE rlm_serve_runs_total counter",
            *(f'rlm_serve_runs_total{{status="{s}"}} {n}' for s, n in sorted(self.runs.items())),
            "# HELP rlm_serve_runs_in_flight Runs in progress.",
            "# TYPE rlm_serve_runs_in_flight gauge",
            f"rlm_serve_runs_in_flight {self.in_flight}",
            "# HELP rlm_serve_model_calls_total Model calls of finished runs, the whole tree.",
            "# TYPE rlm_serve_model_calls_total counter",
            f"rlm_serve_model_calls_total {self.calls}",
            "# HELP rlm_serve_tokens_total Tokens of finished runs, the whole tree.",
            "# TYPE rlm_serve_tokens_total counter",
            f'rlm_serve_tokens_total{{kind="prompt"}} {self.prompt_tokens}',
            f'rlm_serve_tokens_total{{kind="completion"}} {self.completion_tokens}',
            "# HELP rlm_serve_cost_usd_total Cost of finished runs in USD, the whole tree.",
            "# TYPE rlm_serve_cost_usd_total counter",
            f"rlm_serve_cost_usd_total {self.cost_usd:.6f}",
            "# HELP rlm_serve_errors_total Error responses, by HTTP status.",
            "# TYPE rlm_serve_errors_total counter",
            *(f'rlm_serve_errors_total{{status="{s}"}} {n}' for s, n in sorted(self.errors.items())),
        ]
        return "\n".join(lines) + "\n"


def _text_of(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text")]
        if len(parts) == len(content):
            return "".join(str(p) for p in parts)
    raise ApiError(400, "message content must be a string or a list of text parts", "invalid_content", "messages")


def split_messages(messages: Any) -> tuple[str, str]:
    """(question, context text): the last user message, and the messages before it with their roles."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ApiError(400, "'messages' must be a list of message objects", "invalid_messages", "messages")
    if not messages or messages[-1].get("role") != "user":
        raise ApiError(400, "the last message must be the user's question", "missing_question", "messages")
    question = _text_of(messages[-1].get("content")).strip()
    if not question:
        raise ApiError(400, "the last user message (the question) is empty", "missing_question", "messages")
    earlier = [(m.get("role", "user"), _text_of(m.get("content"))) for m in messages[:-1]]
    earlier = [(role, text) for role, text in earlier if text]
    if len(earlier) == 1:
        return question, earlier[0][1]
    return question, "\n\n".join(f"[{role}]\n{text}" for role, text in earlier)


def resolve_under_roots(name: Any, roots: list[Path]) -> Path:
    """The file `name` names, symlinks resolved, if it lies under an allowed root; 403 otherwise."""
    if not isinstance(name, str) or not name:
        raise ApiError(400, "context_files entries must be non-empty strings", "invalid_context_files", "rlm")
    if not roots:
        raise ApiError(403, "this server allows no context files (start it with --context-root DIR)", "no_roots", "rlm")
    given = Path(name)
    candidates = [given] if given.is_absolute() else [root / given for root in roots]
    inside = []
    for candidate in candidates:
        resolved = candidate.resolve()
        if any(resolved.is_relative_to(root) for root in roots):
            inside.append(resolved)
    if not inside:
        raise ApiError(403, f"{name!r} is outside the server's context roots", "path_outside_roots", "rlm")
    for path in inside:
        if path.is_file():
            return path
    raise ApiError(404, f"no file {name!r} under the server's context roots", "file_not_found", "rlm")


def cap_budget(settings: Any, asked: dict[str, Any]) -> dict[str, Any]:
    """The request's limits, where each may lower the operator's value but never raise it."""
    capped: dict[str, Any] = {}
    for name, kind in BUDGET_FIELDS.items():
        value = asked.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ApiError(400, f"rlm.{name} must be a positive number", "invalid_budget", f"rlm.{name}")
        if kind is int and value != int(value):
            raise ApiError(400, f"rlm.{name} must be a whole number", "invalid_budget", f"rlm.{name}")
        operator = getattr(settings, name)
        capped[name] = kind(value) if operator is None else min(operator, kind(value))
    return capped


def progress_line(event: Event) -> str | None:
    """What a streaming client is shown of one event (turns, code running, sub-calls), or None."""
    kind, path = event["type"], event.get("path") or []
    node = "" if not path else "child " + ".".join(map(str, path)) + ": "
    if kind == "turn_start":
        return f"{node}turn {event['iteration']}\n"
    if kind == "cell_start":
        return f"{node}running code (block {event['index'] + 1})\n"
    if kind == "cell_end":
        failed = f", {event['error_kind'] or 'error'}" if event.get("error") else ""
        return f"{node}code finished in {event.get('duration_s', 0):.2f} s{failed}\n"
    if kind == "model_call" and event.get("role") != "root":
        return (
            f"{node}sub-call to {event['model']} done ({event['prompt_tokens'] + event['completion_tokens']} tokens)\n"
        )
    if kind == "model_error":
        retry = event.get("retry_in_s")
        return f"{node}model error from {event['model']}: {event['error']} ({'retrying' if retry else 'giving up'})\n"
    return None


def _usage(result: RLMResult) -> dict[str, int]:
    u = result.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


def _extension(result: RLMResult) -> dict[str, Any]:
    """What the OpenAI format has no field for: tree-wide cost and how the run went."""
    data = result.to_dict()
    return {k: data[k] for k in ("status", "error", "cost_usd", "cost_complete", "usage_by_model", "sub_calls")} | {
        "iterations": result.iterations,
        "wall_time_s": data["wall_time_s"],
    }


def _finish_reason(result: RLMResult) -> str:
    return "stop" if result.status is Status.COMPLETED else "length"


class RLMService:
    """The aiohttp application: routes, auth, limits and one RLM run per chat request."""

    def __init__(self, engine: RLM, options: ServeOptions) -> None:
        if engine.settings.timeout is None:
            engine = copy.copy(engine)
            engine.settings = replace(engine.settings, timeout=options.default_timeout_s)
        self.engine = engine
        self.options = options
        self.roots = [root.resolve(strict=True) for root in options.context_roots]
        self.root_model = engine.settings.require_model()
        self.model_names = [SERVED_NAME, f"{SERVED_NAME}/{self.root_model}"]
        self.metrics = Metrics()
        self.uploads: dict[str, _Upload] = {}
        self.created = int(time.time())
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.options.max_body_bytes, middlewares=[self._guard])
        app.cleanup_ctx.append(self._expire_uploads)
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

    def purge_expired(self, now: float | None = None) -> int:
        """Drops uploads past their expiry; returns how many went."""
        now = time.time() if now is None else now
        expired = [u.id for u in self.uploads.values() if u.expires_at <= now]
        for file_id in expired:
            del self.uploads[file_id]
        return len(expired)

    async def _expire_uploads(self, app: web.Application) -> AsyncIterator[None]:
        """Purges expired uploads in the background too, so an idle server frees their memory."""

        async def sweep() -> None:
            while True:
                await asyncio.sleep(min(60.0, max(0.05, self.options.upload_ttl_s / 4)))
                self.purge_expired()

        sweeper = asyncio.ensure_future(sweep())
        yield
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)

    async def upload(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/"):
            raise ApiError(400, "upload a file as multipart/form-data with a 'file' field", "invalid_upload")
        form = await request.post()
        part = form.get("file")
        if not isinstance(part, web.FileField):
            raise ApiError(400, "the upload has no 'file' field", "invalid_upload", "file")
        self.purge_expired()
        if len(self.uploads) >= self.options.max_files:
            raise ApiError(
                429, f"this server holds at most {self.options.max_files} files; delete some", "too_many_files"
            )
        data = part.file.read()
        held = sum(len(u.data) for u in self.uploads.values())
        if held + len(data) > self.options.max_upload_bytes:
            raise ApiError(
                429,
                f"this server holds at most {self.options.max_upload_bytes} bytes of uploads "
                f"({held} held, this file is {len(data)}); delete some",
                "uploads_full",
            )
        now = time.time()
        upload = _Upload(
            id=f"file-{secrets.token_hex(12)}",
            filename=Path(part.filename or "upload").name,
            data=data,
            purpose=str(form.get("purpose", "user_data")),
            created_at=int(now),
            expires_at=now + self.options.upload_ttl_s,
        )
        self.uploads[upload.id] = upload
        return web.json_response(upload.describe())

    def _upload(self, file_id: Any) -> _Upload:
        self.purge_expired()
        upload = self.uploads.get(file_id) if isinstance(file_id, str) else None
        if upload is None:
            raise ApiError(404, f"no uploaded file with id {file_id!r}", "file_not_found", "rlm.file_ids")
        return upload

    async def list_files(self, request: web.Request) -> web.Response:
        self.purge_expired()
        return web.json_response({"object": "list", "data": [u.describe() for u in self.uploads.values()]})

    async def file(self, request: web.Request) -> web.Response:
        return web.json_response(self._upload(request.match_info["id"]).describe())

    async def delete_file(self, request: web.Request) -> web.Response:
        upload = self._upload(request.match_info["id"])
        del self.uploads[upload.id]
        return web.json_response({"id": upload.id, "object": "file", "deleted": True})

    # -- chat -----------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON ({exc})", "invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", "invalid_json")
        return body

    def _extension_of(self, body: dict[str, Any]) -> dict[str, Any]:
        ext = body.get("rlm") or {}
        if not isinstance(ext, dict):
            raise ApiError(400, "'rlm' must be an object", "invalid_extension", "rlm")
        unknown = sorted(set(ext) - EXTENSION_FIELDS)
        if unknown:
            raise ApiError(
                400, f"unknown rlm field(s) {unknown}; known: {sorted(EXTENSION_FIELDS)}", "invalid_extension", "rlm"
            )
        for name in ("context_files", "file_ids"):
            if not isinstance(ext.get(name, []), list):
                raise ApiError(400, f"rlm.{name} must be a list", "invalid_extension", f"rlm.{name}")
        return ext

    def _sources(self, ext: dict[str, Any]) -> tuple[list[Path], list[_Upload]]:
        """Checked before anything runs, so a bad path or id costs nothing."""
        paths = [resolve_under_roots(name, self.roots) for name in ext.get("context_files", [])]
        return paths, [self._upload(file_id) for file_id in ext.get("file_ids", [])]

    @staticmethod
    def _context(history: str, paths: list[Path], uploads: list[_Upload]) -> Any:
        """The run's context: the earlier messages, then each named or uploaded file as a document."""
        from rlm.context import Context, close

        if not paths and not uploads:
            return Context.from_value(history or "(no context was given)")
        views: list[Any] = []
        try:
            if history:
                views.append(Context.from_value(history, name="conversation"))
            views += [Context.from_path(path, documents=False) for path in paths]
            views += [Context.from_value(u.data, name=u.filename) for u in uploads]
        except BaseException:
            for view in views:
                close(view)
            raise
        return views[0] if len(views) == 1 else Context.from_value(views)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        model = body.get("model", SERVED_NAME)
        if model not in self.model_names:
            raise ApiError(
                404,
                f"the model {model!r} does not exist; this server serves {self.model_names}",
                "model_not_found",
                "model",
            )
        question, history = split_messages(body.get("messages"))
        ext = self._extension_of(body)
        engine = copy.copy(self.engine)
        engine.settings = replace(self.engine.settings, **cap_budget(self.engine.settings, ext))
        paths, uploads = self._sources(ext)
        if self.metrics.in_flight >= self.options.max_concurrent:
            raise ApiError(
                503,
                f"the server is running its limit of {self.options.max_concurrent} runs; retry shortly",
                "server_busy",
            )
        self.metrics.in_flight += 1
        try:
            try:
                context = await asyncio.to_thread(self._context, history, paths, uploads)
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
        message = {"role": "assistant", "content": result.answer or ""}
        return web.json_response(
            {
                "id": self._completion_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": _finish_reason(result)}],
                "usage": _usage(result),
                "rlm": _extension(result),
            }
        )

    async def _stream(
        self, request: web.Request, engine: RLM, context: Any, question: str, model: str
    ) -> web.StreamResponse:
        """Progress as `reasoning_content` deltas while the run goes, then the answer, usage, [DONE]."""
        completion_id, created = self._completion_id(), int(time.time())
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str] = asyncio.Queue()
        loop_thread = threading.get_ident()

        def on_event(event: Event) -> None:
            line = progress_line(event)
            if line is None:
                return
            if threading.get_ident() == loop_thread:
                lines.put_nowait(line)
            else:
                loop.call_soon_threadsafe(lines.put_nowait, line)

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

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
                error = {
                    "message": str(failed),
                    "type": _ERROR_TYPES.get(failed.status, "server_error"),
                    "code": failed.code,
                }
                await response.write(f"data: {json.dumps({'error': error})}\n\n".encode())
                await response.write(b"data: [DONE]\n\n")
                return response
            await response.write(chunk({"content": result.answer or ""}))
            await response.write(chunk({}, _finish_reason(result), rlm=_extension(result)))
            usage = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
            usage |= {"choices": [], "usage": _usage(result), "rlm": _extension(result)}
            await response.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
            await response.write_eof()
            return response
        finally:
            if not run.done():  # the client went away (cancelled handler or a failed write)
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)


def build_engine(engine_options: dict[str, Any]) -> RLM:
    from rlm.api import RLM

    return RLM(**engine_options)


async def start_site(service: RLMService, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Bind and serve; returns the runner (for cleanup) and the bound port (port 0 picks a free one)."""
    # handler_cancellation: a client that disconnects cancels its handler, and so its run
    runner = web.AppRunner(service.app(), handler_cancellation=True, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]


def check_exposure(host: str, options: ServeOptions) -> None:
    """A server reachable from other machines must have a key; roots must exist; limits be positive."""
    if not options.api_key and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a key: set --serve-key KEY (or RLM_SERVE_KEY), "
            "or bind to 127.0.0.1 to serve this machine only"
        )
    for root in options.context_roots:
        if not root.is_dir():
            raise ConfigError(f"--context-root {root} is not a directory")
    limits = {
        "--max-concurrent": options.max_concurrent,
        "--max-body-mb": options.max_body_bytes,
        "--max-uploads-mb": options.max_upload_bytes,
        "--upload-ttl": options.upload_ttl_s,
    }
    for flag, value in limits.items():
        if value <= 0:
            raise ConfigError(f"{flag} must be positive")


async def serve_forever(service: RLMService, host: str, port: int, announce: Callable[[str], None]) -> None:
    runner, bound = await start_site(service, host, port)
    try:
        shown = f"[{host}]" if ":" in host else host
        announce(f"rlm serve: http://{shown}:{bound}/v1 serving models {', '.join(service.model_names)}")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class BackgroundServer:
    """The server on 127.0.0.1 in a thread with its own event loop: for tests, benchmarks, notebooks."""

    def __init__(self, engine: RLM, options: ServeOptions | None = None, *, port: int = 0) -> None:
        self.service = RLMService(engine, options or ServeOptions())
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> BackgroundServer:
        ready, failure = threading.Event(), []

        async def main() -> None:
            try:
                runner, self.port = await start_site(self.service, "127.0.0.1", self._port)
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            ready.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

        self._thread = threading.Thread(target=lambda: asyncio.run(main()), name="rlm-serve", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join()
