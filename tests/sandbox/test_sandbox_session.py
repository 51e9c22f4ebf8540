"""Session life cycle: opening (modes, context specs), sub-calls over the channel and the roles they
carry, time spent waiting on the host, sessions side by side (on one loop; in-process ones in threads,
each with its own output), caps on answers, closing."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from conftest import FAST_LIMITS, FakeBridge, Repl

from sandbox import SandboxError, open_session


def test_sub_calls_reach_the_bridge(repl: Repl) -> None:
    outcome = repl.ok(
        "one = llm_query('hi', model='small')\nmany = llm_query_batched(['a', 'b'])\n"
        "child = rlm_query('dig', context=context[:11])\nkids = rlm_query_batched(['p'], contexts=['text'])\n"
        "print(one, many, child, kids)"
    )
    assert outcome.stdout == (
        "llm_query:hi ['llm_query_batched:a', 'llm_query_batched:b'] rlm_query:dig ['rlm_query_batched:p']\n"
    )
    calls = repl.bridge.calls[-4:]
    assert calls[0] == ("llm_query", ["hi"], {"model": "small"})
    assert calls[1] == ("llm_query_batched", [["a", "b"]], {"model": None})
    assert calls[2] == ("rlm_query", ["dig"], {"model": None, "context": {"kind": "text", "text": "alpha beta "}})
    assert calls[3][2]["contexts"] == [{"kind": "text", "text": "text"}]


def test_bridge_errors_are_catchable(repl: Repl) -> None:
    outcome = repl.ok("try:\n    llm_query('fail')\nexcept RuntimeError as e:\n    print('caught:', e)")
    assert outcome.stdout == "caught: RuntimeError: provider down\n"
    uncaught = repl.run("llm_query('fail')")
    assert uncaught.error_kind == "exception" and "QueryError: RuntimeError: provider down" in uncaught.error


@pytest.mark.parametrize("mode", ["process", "inprocess"])
def test_llm_query_passes_role_through(mode: str) -> None:
    driver = Repl(mode)
    try:
        driver.ok("llm_query('final', role='aggregate')\nllm_query_batched(['x'], None, 'aggregate')\nllm_query('y')")
        assert driver.bridge.calls[-3:] == [
            ("llm_query", ["final"], {"model": None, "role": "aggregate"}),
            ("llm_query_batched", [["x"]], {"model": None, "role": "aggregate"}),
            ("llm_query", ["y"], {"model": None}),
        ]
        refused = driver.run("llm_query('z', role='boss')")
        assert refused.error_kind == "exception" and "role must be one of 'sub', 'aggregate'" in refused.error
    finally:
        driver.close()


def test_aggregate_role_reaches_the_engine(scripted_server: Any) -> None:
    from rlm import RLM
    from rlm.scripted import Reply

    scripted_server.script(
        "test-root",
        [Reply("```repl\nFINAL(llm_query('sum it up', role='aggregate') + llm_query('part'))\n```"), "synthesis"],
    )
    scripted_server.script("test-sub", ["part"])
    rlm = RLM(
        model="openai/test-root",
        sub_model="openai/test-sub",
        api_base=scripted_server.base_url,
        api_key="sk-local",
        sandbox="process",
    )
    result = rlm.query("ctx", "q")
    assert result.answer == "synthesispart", result.error
    roles = [e["role"] for e in result.trajectory if e["type"] == "model_request"]
    assert roles == ["root", "aggregate", "sub"]


def test_time_waiting_for_the_host_is_not_cell_time() -> None:
    class SlowBridge(FakeBridge):
        async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> object:
            await asyncio.sleep(1.2)
            return "slow"

    async def scenario() -> None:
        async with await open_session(None, SlowBridge(), FAST_LIMITS) as session:
            outcome = await session.run_cell("print(llm_query('x'))")
            assert outcome.error is None and outcome.stdout == "slow\n"

    asyncio.run(scenario())


def test_sessions_run_concurrently_on_one_loop() -> None:
    """Two cells each wait for a sub-call the other session's call releases: only works if nothing blocks."""

    class Rendezvous(FakeBridge):
        def __init__(self, mine: asyncio.Event, theirs: asyncio.Event) -> None:
            super().__init__()
            self.mine, self.theirs = mine, theirs

        async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> object:
            self.mine.set()
            await asyncio.wait_for(self.theirs.wait(), 5)
            return "met"

    async def scenario() -> None:
        a, b = asyncio.Event(), asyncio.Event()
        first = await open_session(None, Rendezvous(a, b), FAST_LIMITS)
        second = await open_session(None, Rendezvous(b, a), FAST_LIMITS)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick_task = asyncio.create_task(ticker())
        outcomes = await asyncio.gather(
            first.run_cell("print(llm_query('a'))"),
            second.run_cell("print(llm_query('b'))"),
            first.run_cell("x = 0\nfor i in range(3 * 10**5):\n    x += i"),
        )
        tick_task.cancel()
        assert [o.stdout for o in outcomes[:2]] == ["met\n", "met\n"]
        assert outcomes[2].error is None and ticks > 0
        await first.aclose()
        await second.aclose()

    asyncio.run(scenario())


def test_concurrent_repls_keep_their_own_output(tmp_path: Any) -> None:
    """In-process REPLs run in threads at once: each sees only its own prints; nobody changes cwd."""

    class Bridge:
        async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> str:
            await asyncio.sleep(0.01)
            return "ok"

    cell = 'for i in range(30):\n    print("{name}", i, llm_query("x"))\n'

    async def main() -> list[str]:
        sessions = [await open_session(None, Bridge(), mode="inprocess") for _ in range(4)]
        try:
            outcomes = await asyncio.gather(*(s.run_cell(cell.format(name=f"r{n}")) for n, s in enumerate(sessions)))
        finally:
            for session in sessions:
                await session.aclose()
        return [o.stdout for o in outcomes]

    cwd = os.getcwd()
    outputs = asyncio.run(main())
    assert os.getcwd() == cwd
    for n, out in enumerate(outputs):
        assert out.splitlines() == [f"r{n} {i} ok" for i in range(30)]


def test_answer_and_final_are_capped(fresh: Repl) -> None:
    """A huge answer is cut (with a notice), the worker is not killed."""
    pid = fresh.session.worker_pid  # type: ignore[attr-defined]
    cut = fresh.ok("answer['content'] = 'a' * 40_000_000")
    assert len(cut.answer["content"]) == 1_000_000 and "cut to its first" in cut.notice
    final = fresh.ok("FINAL('b' * 3_000_000)")
    assert len(final.final) == 1_000_000 and "cut" in final.stdout
    assert fresh.session.worker_pid == pid  # type: ignore[attr-defined]


def test_close_is_idempotent_and_final() -> None:
    async def scenario() -> None:
        session = await open_session(None, FakeBridge(), FAST_LIMITS)
        await session.aclose()
        await session.aclose()
        outcome = await session.run_cell("1")
        assert outcome.error_kind == "killed" and "closed" in outcome.error

    asyncio.run(scenario())


def test_bad_context_spec_fails_at_open() -> None:
    async def scenario() -> None:
        with pytest.raises(SandboxError):
            await open_session({"kind": "no-such-kind"}, FakeBridge(), FAST_LIMITS)

    asyncio.run(scenario())


def test_inprocess_mode_has_the_same_policy_and_a_soft_timeout() -> None:
    driver = Repl("inprocess")
    try:
        assert driver.run("import os").error_kind == "policy"
        driver.ok("x = 2")
        assert driver.run("while True:\n    pass").error_kind == "timeout"
        assert driver.ok("print(x, llm_query('q'))").stdout == "2 llm_query:q\n"
    finally:
        driver.close()


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown sandbox mode"):
        asyncio.run(open_session(None, FakeBridge(), mode="docker"))  # type: ignore[arg-type]
