"""The event loop of runs rlm starts itself: uvloop when installed, asyncio's on request (rlm/loop.py)."""

from __future__ import annotations

import asyncio
import inspect

import pytest
import uvloop

from rlm import RLM
from rlm.errors import ConfigError
from rlm.loop import run
from rlm.scripted import ScriptedServer


def loops_seen(server: ScriptedServer) -> set[type]:
    """The classes of the loops a sync `RLM.query` ran its events on."""
    server.script("test-root", ["FINAL(ok)"])
    seen: set[type] = set()
    rlm = RLM(model="openai/test-root", api_base=server.base_url, api_key="sk-local")
    result = rlm.query("ctx", "q", on_event=lambda event: seen.add(type(asyncio.get_running_loop())))
    assert result.answer == "ok"
    return seen


def test_sync_query_runs_on_uvloop(scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_LOOP", raising=False)
    assert loops_seen(scripted_server) == {uvloop.Loop}


def test_rlm_loop_asyncio_picks_asyncios_loop(scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_LOOP", "asyncio")
    (loop_class,) = loops_seen(scripted_server)
    assert not issubclass(loop_class, uvloop.Loop)
    assert issubclass(loop_class, asyncio.BaseEventLoop)


def test_sync_query_inside_a_running_loop_gets_its_own_uvloop(
    scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RLM_LOOP", raising=False)

    async def notebook_cell() -> set[type]:
        return loops_seen(scripted_server)

    assert asyncio.run(notebook_cell()) == {uvloop.Loop}  # the notebook's own loop is asyncio's


def test_unknown_rlm_loop_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_LOOP", "trio")

    async def nothing() -> None:
        return None

    coroutine = nothing()
    with pytest.raises(ConfigError, match=r"RLM_LOOP='trio'.*'uvloop' or 'asyncio'"):
        run(coroutine)
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED
