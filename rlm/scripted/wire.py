"""What the scripted server writes on the wire: OpenAI-style bodies, SSE events, token pieces and usage.

Kept apart from the serving so benchmarks and tests can count a request's tokens exactly as the
server billed them (`prompt_tokens`) and cut a reply as the server streams it (`text_pieces`).
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from rlm.scripted.script import RequestRecord
from rlm.tokens import count_tokens, encoding

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def error_type(status: int) -> str:
    """The OpenAI error `type` a real provider sends with this status."""
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "api_error")


def error_body(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def text_pieces(text: str) -> list[str]:
    """`text` cut at token boundaries; a token holding part of a UTF-8 character joins the next one."""
    enc = encoding()
    decoder = codecs.getincrementaldecoder("utf-8")()
    pieces = []
    for token in enc.encode(text, disallowed_special=()):
        piece = decoder.decode(enc.decode_single_token_bytes(token))
        if piece:
            pieces.append(piece)
    return pieces


def completion_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """The prompt tokens the server bills a request's messages for."""
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += count_tokens(content)
        elif isinstance(content, list):
            total += sum(count_tokens(part.get("text", "")) for part in content if isinstance(part, dict))
    return total


def usage(record: RequestRecord, completion: int) -> dict[str, int]:
    prompt = prompt_tokens(record.messages)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def chunk(record: RequestRecord, delta: dict[str, Any], finish: str | None) -> bytes:
    """One `chat.completion.chunk` event of the reply to `record`."""
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return sse(
        {
            "id": record.id,
            "object": "chat.completion.chunk",
            "created": int(record.received_at),
            "model": record.model,
            "choices": [choice],
        }
    )


def usage_chunk(record: RequestRecord, completion: int) -> bytes:
    """The usage-only chunk a stream ends with when the client asked for `include_usage`."""
    return sse(
        {
            "id": record.id,
            "object": "chat.completion.chunk",
            "created": int(record.received_at),
            "model": record.model,
            "choices": [],
            "usage": usage(record, completion),
        }
    )


def completion_body(record: RequestRecord, text: str, finish: str, completion: int) -> bytes:
    """The whole `chat.completion` JSON body of a non-streamed reply."""
    return json.dumps(
        {
            "id": record.id,
            "object": "chat.completion",
            "created": int(record.received_at),
            "model": record.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": usage(record, completion),
        },
        ensure_ascii=False,
    ).encode()
