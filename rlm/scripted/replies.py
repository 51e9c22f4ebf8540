"""What the scripted server answers a request with: the script's next item, checked and cut to size."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from rlm.scripted.script import Action, ChatRequest, Drop, Fault, Garbage, Reply, RequestRecord, Stall, _Script
from rlm.tokens import count_tokens, encoding


class ScriptError(Exception):
    """The server cannot answer from the script; becomes an HTTP error with an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.code = code


async def next_action(script: _Script, body: dict[str, Any], record: RequestRecord, index: int) -> Action:
    """The script's item for its `index`-th request: from its list, or what its policy returns."""
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
            raise ScriptError(500, f"policy for model {record.model} raised {exc!r}", kind="server_error") from exc
    elif index < len(source):
        item = source[index]
    else:
        raise ScriptError(
            500,
            f"script for model {record.model} is exhausted after {len(source)} replies",
            kind="server_error",
        )
    if isinstance(item, str):
        return Reply(item)
    if isinstance(item, Reply | Fault | Drop | Stall | Garbage):
        return item
    raise ScriptError(
        500,
        f"script for model {record.model} gave {item!r}; expected str, Reply, Fault, Drop, Stall or Garbage",
        kind="server_error",
    )


def within(action: Action, body: dict[str, Any]) -> Action:
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


def pick(*values: float | None) -> float | None:
    """The first value set: the reply's own, then its script's, then the server's."""
    return next((v for v in values if v is not None), None)
