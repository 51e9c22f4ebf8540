"""Cancelling the tree (timeout, budget, answer, Ctrl-C) stops everything a REPL cell started.

A cell blocked in `llm_query_batched` on slow replies when the run times out: the run must end promptly,
every sub-request must be closed (the server sees the client go away), and no task or thread of ours
may outlive the run, in both sandbox modes.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rlm import RLM, Status
from rlm.scripted import Reply, ScriptedServer
from tests.leftovers import tasks_left
from tests.waiting import eventually

ROOT, SUB = "openai/test-root", "openai/test-sub"
CELL = '```repl\nparts = llm_query_batched(["a", "b", "c"])\nprint(parts)\n```'


def _worker_children() -> list[str]:
    """The live children of this process's zygote (its REPL workers), where the kernel shows them."""
    from sandbox import zygote

    if zygote._zygote is None or not zygote._zygote.alive():
        return []
    pid = zygote._zygote.process.pid
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return children.read().split()
    except OSError:
        return []


def _engine(server: ScriptedServer, sandbox: str, **options: object) -> RLM:
    return RLM(model=ROOT, sub_model=SUB, api_base=server.base_url, api_key="sk-local", sandbox=sandbox, **options)


@pytest.fixture
def warm(scripted_server: ScriptedServer) -> ScriptedServer:
    """litellm's first call imports a lot while blocking the loop: do it before timing a 1 s run."""
    scripted_server.script("test-root", ["FINAL(ok)"])
    assert _engine(scripted_server, "inprocess").query("ctx", "q").answer == "ok"
    scripted_server.reset()
    return scripted_server


@pytest.mark.parametrize("sandbox", ["inprocess", "process"])
def test_timeout_cancels_sub_calls_and_leaves_nothing_running(warm: ScriptedServer, sandbox: str) -> None:
    scripted_server = warm
    scripted_server.script("test-root", [CELL])
    scripted_server.script("test-sub", lambda request: Reply("slow", ttft=5))
    threads_before = {t.ident for t in threading.enumerate()}
    rlm = _engine(scripted_server, sandbox, timeout=1)

    async def scenario() -> None:
        started = time.monotonic()
        result = await rlm.aquery("ctx", "q")
        elapsed = time.monotonic() - started
        assert result.status is Status.TIMEOUT, result.error
        assert elapsed < 10
        # Nothing we started is still running on the loop the moment the run returns.
        assert tasks_left() == set()
        subs = lambda: scripted_server.records("test-sub")  # noqa: E731
        assert await eventually(lambda: len(subs()) == 3 and all(r.outcome != "in_progress" for r in subs()))
        assert [r.outcome for r in subs()] == ["disconnected"] * 3
        if sandbox == "process":
            assert await eventually(lambda: _worker_children() == [])

    asyncio.run(scenario())
    survivors = [t for t in threading.enumerate() if t.ident not in threads_before]
    assert [t.name for t in survivors if not t.daemon] == []
    assert [t.name for t in survivors if t.name.startswith("rlm-repl")] == []


def test_inprocess_cancelled_cell_makes_no_more_calls(warm: ScriptedServer) -> None:
    """A serial llm_query loop that catches every Exception: once the run is cancelled, its thread
    stops at the pending call instead of going on to send the next ones."""
    scripted_server = warm
    loop_cell = (
        '```repl\nprev = ""\nfor i in range(20):\n    try:\n        prev = llm_query(f"item {i} {prev}")\n'
        "    except Exception as e:\n        prev = str(e)\n```"
    )
    scripted_server.script("test-root", [loop_cell])
    scripted_server.script("test-sub", lambda request: Reply("slow", ttft=5))
    rlm = _engine(scripted_server, "inprocess", timeout=1)

    async def scenario() -> None:
        result = await rlm.aquery("ctx", "q")
        assert result.status is Status.TIMEOUT
        assert tasks_left() == set()
        assert not [t for t in threading.enumerate() if t.name.startswith("rlm-repl")]
        await asyncio.sleep(0.5)  # a thread still running would send the next call now
        records = scripted_server.records("test-sub")
        assert [r.messages[-1]["content"] for r in records] == ["item 0 "]
        assert await eventually(lambda: scripted_server.records("test-sub")[0].outcome == "disconnected")

    asyncio.run(scenario())
