"""Hostile fan-out through the engine: rlm_query_batched keeps a bounded number of child sessions
(each with its own sandbox worker) alive at once and queues the rest."""

from __future__ import annotations

import asyncio
from typing import Any

from rlm.bridge import CHILDREN_AT_ONCE
from rlm.scripted import ScriptedServer

CHILDREN = 3 * CHILDREN_AT_ONCE
FAN_OUT = f'```repl\nprint(len(rlm_query_batched(["child " + str(i) for i in range({CHILDREN})])))\n```\n'


def _policy(request: Any) -> str:
    if any(m["role"] == "assistant" for m in request.messages):
        return "FINAL(done)"
    return FAN_OUT if "TOPQ" in str(request.messages) else "```repl\nFINAL('leaf')\n```"


def test_rlm_query_batched_caps_the_children_alive(scripted_server: ScriptedServer) -> None:
    from rlm.api import RLM

    scripted_server.script("root", _policy)
    rlm = RLM(model="openai/root", sub_model="openai/sub", api_base=scripted_server.base_url, api_key="k", cache=False)
    result = asyncio.run(rlm.aquery("the context", "TOPQ"))
    assert result.answer == "done"
    alive = most = started = 0
    for event in result.trajectory:
        if len(event.get("path") or []) == 1 and event["type"] in ("node_start", "node_end"):
            alive += 1 if event["type"] == "node_start" else -1
            started += event["type"] == "node_start"
            most = max(most, alive)
    assert started == CHILDREN
    assert most == CHILDREN_AT_ONCE
