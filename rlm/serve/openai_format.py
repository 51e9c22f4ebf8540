"""The OpenAI wire format of `rlm serve`: requests read into an RLM run, results written back.

Kept apart from the routes so the mapping (what a message list, an `rlm` extension or a run result
means on the wire) can be read and tested without a server.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from rlm.events import Event
from rlm.types import Status

if TYPE_CHECKING:
    from rlm.api.result import RLMResult

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


def error_type(status: int) -> str:
    """The OpenAI error `type` clients branch on, for an HTTP status."""
    return _ERROR_TYPES.get(status, "server_error")


def error_response(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return web.json_response(body, status=status, headers=headers)


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_json")
    return body


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


def extension_of(body: dict[str, Any]) -> dict[str, Any]:
    """The request's `rlm` extension object, its field names and list fields checked."""
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
        operator = getattr(settings.limits, name)
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


def usage_of(result: RLMResult) -> dict[str, int]:
    u = result.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


def extension(result: RLMResult) -> dict[str, Any]:
    """What the OpenAI format has no field for: tree-wide cost and how the run went."""
    data = result.to_dict()
    return {k: data[k] for k in ("status", "error", "cost_usd", "cost_complete", "usage_by_model", "sub_calls")} | {
        "iterations": result.iterations,
        "wall_time_s": data["wall_time_s"],
    }


def finish_reason(result: RLMResult) -> str:
    return "stop" if result.status is Status.COMPLETED else "length"


def completion(result: RLMResult, completion_id: str, created: int, model: str) -> dict[str, Any]:
    """The whole `chat.completion` object of a finished run."""
    message = {"role": "assistant", "content": result.answer or ""}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(result)}],
        "usage": usage_of(result),
        "rlm": extension(result),
    }


def sse(payload: Any) -> bytes:
    """One server-sent event carrying `payload` as JSON."""
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"


def chunk(
    completion_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> bytes:
    """One `chat.completion.chunk` event with a single choice's delta."""
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }
    return sse(payload)


def usage_chunk(result: RLMResult, completion_id: str, created: int, model: str) -> bytes:
    """The last chunk of a stream: no choices, the run's usage and its `rlm` extension."""
    payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
    payload |= {"choices": [], "usage": usage_of(result), "rlm": extension(result)}
    return f"data: {json.dumps(payload)}\n\n".encode()


def error_event(failed: ApiError) -> bytes:
    """A refusal after the stream began: an error event (the status line is already sent)."""
    error = {"message": str(failed), "type": error_type(failed.status), "code": failed.code}
    return f"data: {json.dumps({'error': error})}\n\n".encode()
