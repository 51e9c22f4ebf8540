"""A worker killed (timeout, crash, signal, cancellation) and the session going on: the snapshot of
plain values taken after each cell, what a restart restores and reports lost, and the replies and
values that must not break it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from conftest import FAST_LIMITS, FakeBridge, Repl

from sandbox import CellLimits, open_session


def test_soft_timeout_keeps_every_variable(fresh: Repl) -> None:
    fresh.ok("class Box:\n    pass\nb = Box()\nb.v = 7\nn = 3")
    outcome = fresh.run("while True:\n    n = n")
    assert outcome.error_kind == "timeout" and outcome.notice is None
    assert fresh.ok("print(b.v, n)").stdout == "7 3\n"


def test_kill_restores_plain_values_and_definitions(fresh: Repl) -> None:
    fresh.ok(
        "import re\nfrom collections import Counter\nnums = (1, 2)\ncounts = Counter('aab')\nkeyed = {1: {2, 3}}\n"
        "def double(x):\n    return 2 * x\nclass Box:\n    pass\nbox = Box()\ngen = (i for i in nums)"
    )
    started = time.monotonic()
    outcome = fresh.run("sum(range(10**12))")
    assert time.monotonic() - started < FAST_LIMITS.timeout_s + 1.0
    assert outcome.error_kind == "timeout" and "killed" in outcome.error
    assert "lost variables: box, gen" in outcome.notice
    assert outcome.variables and "box" not in outcome.variables and "nums" in outcome.variables
    after = fresh.ok("print(nums, counts.most_common(1), keyed, double(4), re.findall('a', 'aa'), Box.__name__)")
    assert after.stdout == "(1, 2) [('a', 2)] {1: {2, 3}} 8 ['a', 'a'] Box\n"


def test_cell_numbers_continue_after_a_restart(fresh: Repl) -> None:
    fresh.ok("x = 1")
    fresh.run("sum(range(10**12))")
    assert "<cell 3>" in fresh.run("1 / 0").error


def test_crash_of_the_worker_is_reported_and_survived(fresh: Repl) -> None:
    fresh.ok("keep = [1, 2, 3]")
    session = fresh.session
    session._worker.kill()  # what a segfault or the OOM killer would do
    outcome = fresh.run("print('after')")
    assert outcome.error_kind == "killed" and "died" in outcome.error
    assert fresh.ok("print(keep)").stdout == "[1, 2, 3]\n"


@pytest.mark.parametrize(("signum", "cause"), [(signal.SIGSEGV, "a crash"), (signal.SIGKILL, "out-of-memory")])
def test_the_signal_that_killed_the_worker_is_reported(fresh: Repl, signum: int, cause: str) -> None:
    fresh.ok("keep = 1")
    session = fresh.session
    os.kill(session.worker_pid, signum)
    outcome = fresh.run("print('after')")
    assert outcome.error_kind == "killed"
    assert f"killed by signal {signal.Signals(signum).name}: " in outcome.error and cause in outcome.error
    assert fresh.ok("print(keep)").stdout == "1\n"


def test_cancelling_a_cell_kills_its_worker_and_the_session_recovers() -> None:
    async def scenario() -> None:
        async with await open_session(None, FakeBridge(), CellLimits(timeout_s=10)) as session:
            await session.run_cell("kept = 5")
            task = asyncio.create_task(session.run_cell("while True:\n    pass"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            outcome = await session.run_cell("print(kept)")
            assert outcome.stdout == "5\n" and "interrupted" in outcome.notice

    asyncio.run(scenario())


def test_kill_restores_context_views_without_copying() -> None:
    from rlm.context import Context, TextView

    texts = {"a.log": "alpha line\n" * 30, "b.log": "beta line\n" * 30, "c.log": "gamma line\n" * 30}
    context = Context.from_value(texts)

    async def scenario() -> None:
        async with await open_session(context.to_spec(), FakeBridge(), FAST_LIMITS) as session:
            made = await session.run_cell(
                "doc = context[1]\nnamed = context['c.log']\nsome = context[0:2]\nline = doc[5:15]\n"
                "chunks = chunk_chars(doc, 100)\nnested = {'first': (chunks[0], [line]), 'n': 3}\n"
                "lookalike = {'__view__': ['x', 0, 1, None]}"
            )
            assert made.error is None, made.error
            killed = await session.run_cell("sum(range(10**12))")
            assert killed.error_kind == "timeout" and "all variables restored" in killed.notice
            after = await session.run_cell(
                "print(doc.name, named.name, len(some), repr(str(line)), len(chunks), str(chunks[1])[:4])\n"
                "print(nested['first'][0] == chunks[0], str(nested['first'][1][0]) == str(line), nested['n'])\n"
                "print(type(doc).__name__, type(chunks[0]).__name__, type(some).__name__, lookalike)\n"
                "print(rlm_query('q', context=doc))"
            )
            assert after.error is None, after.error
            assert after.stdout.splitlines()[:3] == [
                "b.log c.log 2 'line\\nbeta ' 3 beta",
                "True True 3",
                "TextView TextView DocumentList {'__view__': ['x', 0, 1, None]}",
            ]

    asyncio.run(scenario())
    assert isinstance(context[1], TextView)


def test_restore_refuses_views_of_other_stores() -> None:
    """A snapshot is data from a worker: its views may only point into the session's own context."""
    from rlm.context import Context
    from sandbox.repl import Interpreter

    owner = Context.from_value("some shared text")
    context = Context.from_spec(owner.to_spec())
    interp = Interpreter(context, FAST_LIMITS, lambda *a: {"ok": True, "value": ""})
    token = context.to_spec()["store"]["token"]
    snapshot = {
        "good": {"__view__": [token, 0, 4, None]},
        "foreign": {"__view__": ["not-ours", 0, 4, None]},
        "outside": {"__view__": [token, 0, 10**9, None]},
        "malformed": {"__docs__": [[token, 0]]},
    }
    reply = interp.restore([], snapshot, list(snapshot))
    assert reply["lost"] == ["foreign", "malformed", "outside"]
    assert str(interp.ns["good"]) == "some"


def test_a_definition_calling_the_host_does_not_break_restarts(fresh: Repl) -> None:
    """A kept definition that calls llm_query while it is defined is not re-run against
    the host after a restart (the call fails there); the session stays in step."""
    fresh.ok("keep = 1\ndef f(x=llm_query('boom')):\n    return x\nclass C:\n    v = llm_query('class body')")
    calls = len(fresh.bridge.calls)
    killed = fresh.run("sum(range(10**12))")
    assert killed.error_kind == "timeout"
    assert "2 saved definition(s) or import(s) failed to re-run" in killed.notice
    assert "lost variables: C, f" in killed.notice and "all variables restored" not in killed.notice
    for _ in range(3):
        assert fresh.ok("print(keep)").stdout == "1\n"
    assert len(fresh.bridge.calls) == calls  # the restore made no host call


def test_a_malformed_restore_reply_is_a_clean_restart(fresh: Repl, monkeypatch: pytest.MonkeyPatch) -> None:
    """The restore reply must be `restored` with a list `lost`; anything else kills the
    worker, starts a clean one and says everything was lost (never a TypeError out of run_cell)."""
    from sandbox.protocol import AsyncChannel

    fresh.ok("keep = 1")
    send = AsyncChannel.send

    async def forged_reply_after_restore(self: AsyncChannel, message: dict[str, Any]) -> None:
        await send(self, message)
        if message.get("op") == "restore":

            async def recv() -> dict[str, Any]:
                return {"op": "restored", "lost": 5}

            self.recv = recv  # type: ignore[method-assign]

    monkeypatch.setattr(AsyncChannel, "send", forged_reply_after_restore)
    killed = fresh.run("sum(range(10**12))")
    assert killed.error_kind == "timeout" and "malformed reply" in killed.notice and "keep" in killed.notice
    after = fresh.run("print('alive')")
    assert after.error is None and after.stdout == "alive\n"


def test_unsaveable_values_are_reported_lost_not_fatal(fresh: Repl) -> None:
    """An int too long for JSON and a dict key over the budget (escapes counted) are
    not snapshotted; every later cell still works and a restart reports them lost."""
    fresh.ok("keep = [1, 2]\nbig = 2**20000\nwide = {'\\x01' * 3_000_000: 1}")
    assert fresh.ok("print(big % 7, keep)").stdout == "4 [1, 2]\n"
    killed = fresh.run("sum(range(10**12))")
    assert killed.error_kind == "timeout" and "lost variables: big, wide" in killed.notice
    assert fresh.ok("print(keep)").stdout == "[1, 2]\n"


def test_snapshot_size_counts_keys_and_escapes() -> None:
    from sandbox.plain import NotPlain, encode

    assert encode({"\x01" * 10: "\x02"}, 1000)[1] >= 10 * 6 + 6
    with pytest.raises(NotPlain):
        encode({"\x01" * 1000: 1}, 5000)
    with pytest.raises(NotPlain):
        encode(2**20000, 10**9)


def test_a_reply_that_cannot_be_sent_drops_only_the_snapshot() -> None:
    """The worker drops the snapshot, never the cell's result."""
    from sandbox.worker import _send

    sent: list[dict[str, Any]] = []

    class Channel:
        def send(self, message: dict[str, Any]) -> None:
            if message.get("snapshot"):
                raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")
            sent.append(message)

    _send(Channel(), {"op": "done", "stdout": "result\n", "snapshot": {"x": 10**5000}, "notice": None})  # type: ignore[arg-type]
    assert sent[0]["stdout"] == "result\n" and sent[0]["snapshot"] == {}
    assert "could not be saved" in sent[0]["notice"]


def test_end_of_cell_never_runs_the_cells_methods(fresh: Repl) -> None:
    """The snapshot only touches exact built-in types (a class that calls itself
    TextView in module rlm.context is not a view) and the answer checks call no method."""
    from sandbox.plain import NotPlain, encode

    called = []

    class TextView:
        def to_spec(self) -> dict[str, Any]:
            called.append(self)
            return {"kind": "view", "store": {"token": "t"}, "start": 0, "stop": 1, "name": None}

    TextView.__module__ = "rlm.context"
    with pytest.raises(NotPlain):
        encode(TextView(), 10**6)
    assert not called
    refused = fresh.run("class TextView:\n    __module__ = 'rlm.context'")
    assert refused.error_kind == "policy" and "__module__" in refused.error
    started = time.monotonic()
    fresh.ok("class TextView:\n    def to_spec(self):\n        while True:\n            pass\nv = TextView()")
    assert time.monotonic() - started < 1.0
