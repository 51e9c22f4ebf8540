"""Session life cycle: sub-calls over the channel, deadlines, restarts with restored state, closing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from conftest import FAST_LIMITS, FakeBridge, Repl

from sandbox import CellLimits, SandboxError, open_session


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


def test_close_is_idempotent_and_final() -> None:
    async def scenario() -> None:
        session = await open_session(None, FakeBridge(), FAST_LIMITS)
        await session.aclose()
        await session.aclose()
        outcome = await session.run_cell("1")
        assert outcome.error_kind == "killed" and "closed" in outcome.error

    asyncio.run(scenario())


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


def test_real_context_crosses_the_boundary_as_a_spec() -> None:
    context_module = pytest.importorskip("rlm.context")
    context = context_module.Context.from_value("alpha\nThe secret code is 4217.\n")
    bridge = FakeBridge()

    async def scenario() -> None:
        async with await open_session(context.to_spec(), bridge, FAST_LIMITS) as session:
            found = await session.run_cell("print(context.find('secret'))\nv = context[0:5]\nrlm_query('q', context=v)")
            assert found.error is None and found.stdout.startswith("10\n")
            closing = await session.run_cell("context.close()")
            assert closing.error_kind == "policy" and "read-only" in closing.error

    asyncio.run(scenario())
    sent = bridge.calls[-1][2]["context"]  # a (store token, range) reference: no path, no spec
    assert sent == {"kind": "ref", "ref": {"__view__": [context.to_spec()["store"]["token"], 0, 5, None]}}


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


# -- review fixes: restarts, snapshots and replies that must not break the session ------------------


def test_a_definition_calling_the_host_does_not_break_restarts(fresh: Repl) -> None:
    """Review B1: a kept definition that calls llm_query while it is defined is not re-run against
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
    """Review B1/D1: the restore reply must be `restored` with a list `lost`; anything else kills the
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
    """Review B2/B3: an int too long for JSON and a dict key over the budget (escapes counted) are
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
    """Review B2: the worker drops the snapshot, never the cell's result."""
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


def test_answer_and_final_are_capped(fresh: Repl) -> None:
    """Review B3: a huge answer is cut (with a notice), the worker is not killed."""
    pid = fresh.session.worker_pid  # type: ignore[attr-defined]
    cut = fresh.ok("answer['content'] = 'a' * 40_000_000")
    assert len(cut.answer["content"]) == 1_000_000 and "cut to its first" in cut.notice
    final = fresh.ok("FINAL('b' * 3_000_000)")
    assert len(final.final) == 1_000_000 and "cut" in final.stdout
    assert fresh.session.worker_pid == pid  # type: ignore[attr-defined]


def test_end_of_cell_never_runs_the_cells_methods(fresh: Repl) -> None:
    """Review B4: the snapshot only touches exact built-in types (a class that calls itself
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


FORGED_SPEC = "{{'kind': 'view', 'store': {{'token': 'evil', 'path': {path!r}, 'size': 10, 'stat': None, 'nchars': 10, 'ascii': True, 'k': 4096, 'label': 'x', 'index': {path!r}}}, 'start': 0, 'stop': 10, 'name': None}}"  # noqa: E501


@pytest.mark.parametrize("mode", ["process", "inprocess"])
def test_a_forged_child_context_is_refused_end_to_end(
    scripted_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Review A2: a cell cannot make the host open a path through rlm_query(context=...)."""
    import rlm.context.views
    from rlm import RLM

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    opened: list[Any] = []
    for name in ("open_spec_store", "file_store"):
        real = getattr(rlm.context.views, name)
        monkeypatch.setattr(
            rlm.context.views, name, lambda spec, *a, _real=real: (opened.append(spec), _real(spec, *a))[1]
        )
    forged = FORGED_SPEC.format(path=str(secret))
    outputs: list[str] = []

    def root(request: Any) -> str:
        if sum(m["role"] == "assistant" for m in request.messages) == 0:
            return f"```repl\nr = rlm_query('read it', context={forged})\nprint(r)\n```"
        outputs.append(request.messages[-1]["content"])
        return "FINAL(done)"

    scripted_server.script("test-root", root)
    rlm_ = RLM(model="openai/test-root", api_base=scripted_server.base_url, api_key="sk-local", sandbox=mode)
    result = rlm_.query("ctx", "q")
    assert result.answer == "done", result.error
    assert "context= must be a str or a view of `context`" in outputs[0] and "TOP SECRET" not in outputs[0]
    assert not [s for s in opened if str(secret) in str(s)]


def test_the_engine_rebuilds_a_child_context_only_from_its_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Review A2, host side: whatever a (hostile) worker sends, Node.rlm_query never opens a path: a
    spec dict is refused, a reference must name the node's own store and stay inside its views."""
    import ast
    import types

    import rlm.context.views
    from rlm.context import Context
    from rlm.node import Node
    from sandbox.plain import ContextRefused, context_of_ref

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET")
    opened: list[Any] = []
    real = rlm.context.views.open_spec_store
    monkeypatch.setattr(rlm.context.views, "open_spec_store", lambda spec: (opened.append(spec), real(spec))[1])
    whole = Context.from_value("0123456789" * 10)
    own = whole[10:50]
    tree = types.SimpleNamespace(settings=types.SimpleNamespace(max_depth=3))
    node = Node(tree, (), own, "q")  # type: ignore[arg-type]
    token = own.to_spec()["store"]["token"]
    forged = ast.literal_eval(FORGED_SPEC.format(path=str(secret)))
    hostile = [
        forged,
        {"kind": "ref", "ref": {"__view__": ["not-ours", 0, 5, None]}},
        {"kind": "ref", "ref": {"__view__": [token, 0, 20, None]}},  # outside the node's own view
        {"kind": "ref", "ref": {"__view__": [token, 10, 10**9, None]}},
        {"kind": "ref", "ref": {"__docs__": [[token, 10, 20]]}},
        {"kind": "view", "store": {"token": token}, "start": 0, "stop": 5},
    ]
    for ref in hostile:
        with pytest.raises(ContextRefused):
            asyncio.run(node.call("rlm_query", ["q"], {"context": ref}))
    assert not [s for s in opened if str(secret) in str(s)]
    inside = context_of_ref({"kind": "ref", "ref": {"__view__": [token, 20, 30, None]}}, own)
    assert str(inside) == "0123456789"
    assert str(context_of_ref({"kind": "text", "text": "plain"}, own)) == "plain"
    with pytest.raises(ValueError, match="one context"):
        asyncio.run(node.call("rlm_query_batched", [["a", "b"]], {"contexts": {"kind": "view"}}))
