"""Prefetching serial llm_query loops keeps the serial loop's semantics exactly.

Cells run in a real engine node with an in-process REPL against the scripted server; the speed-up is
shown by server timestamps relative to each other (calls overlap), never by wall-clock asserts.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Callable
from typing import Any

from rlm.budget import Budget, Limits
from rlm.context import Context
from rlm.engine import EngineSettings, Tree
from rlm.events import EventLog
from rlm.fences import CodeBlock
from rlm.models.gateway import ModelGateway, Routes
from rlm.models.provider import Endpoint
from rlm.node import Node
from rlm.scheduler import ModelLimits, RetryPolicy, Scheduler
from rlm.scripted import ChatRequest, Fault, Reply, ScriptedServer
from rlm.speculation import SpeculativeCalls
from rlm.types import CellOutcome
from sandbox import open_session
from sandbox.loop_plan import plan_loops
from tests.leftovers import tasks_left


def run_cells(server: ScriptedServer, *cells: str, limits: Limits | None = None) -> list[CellOutcome]:
    async def main() -> list[CellOutcome]:
        sub = Endpoint("openai/sub", server.base_url, "sk-local")
        gateway = ModelGateway(
            Routes(root=sub, sub=sub),
            budget=Budget(limits or Limits()),
            scheduler=Scheduler(default=ModelLimits(max_in_flight=16), retry=RetryPolicy(base_s=0.01)),
            events=EventLog(),
        )
        node = Node(Tree(EngineSettings(sandbox="inprocess"), gateway, EventLog()), (), Context.from_value("x"), "q")
        session = asyncio.ensure_future(open_session(None, node, mode="inprocess"))  # as Node.run opens it
        repl = await session
        try:
            outcomes = [await node._run_block(session, CodeBlock(code, i, 0), 1) for i, code in enumerate(cells)]
        finally:
            await repl.aclose()
        assert not tasks_left()  # nothing speculative left running
        return outcomes

    return asyncio.run(main())


def echo(ttft: float = 0.2, fail: Callable[[str], bool] = lambda p: False) -> Callable[[ChatRequest], Any]:
    def policy(request: ChatRequest) -> Reply | Fault:
        prompt = request.messages[-1]["content"]
        return Fault(400, f"refused {prompt}") if fail(prompt) else Reply(f"R:{prompt}", ttft=ttft)

    return policy


def prompts_sent(server: ScriptedServer) -> list[str]:
    return [r.messages[-1]["content"] for r in server.records("sub")]


SERIAL = """
chunks = ["c0", "c1", "c2", "c3", "c4", "c5"]
out = []
for c in chunks:
    out.append(llm_query(f"Summarize: {c}"))
print(out)
"""


def test_a_serial_loop_overlaps_and_keeps_its_order(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", echo(ttft=0.3))
    (outcome,) = run_cells(scripted_server, SERIAL)
    assert outcome.error is None
    assert outcome.stdout.strip() == str([f"R:Summarize: c{i}" for i in range(6)])
    records = scripted_server.records("sub")
    assert sorted(prompts_sent(scripted_server)) == [f"Summarize: c{i}" for i in range(6)]  # each once
    first_done = min(r.finished_at or 0 for r in records)
    overlapped = [r for r in records if r.received_at < first_done]
    assert len(overlapped) == SpeculativeCalls.FIRST_WINDOW  # the first window was in flight together


def test_an_error_is_raised_at_the_same_iteration(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", echo(fail=lambda p: p == "c3"))
    cell = """
out = []
try:
    for c in ["c0", "c1", "c2", "c3", "c4"]:
        out.append(llm_query(c))
        print("after", c)
except Exception as e:
    print("failed after", len(out), "with", "refused c3" in str(e))
"""
    (outcome,) = run_cells(scripted_server, cell)
    assert outcome.stdout.splitlines() == ["after c0", "after c1", "after c2", "failed after 3 with True"]


def test_break_stops_the_loop_and_cancels_the_rest(scripted_server: ScriptedServer) -> None:
    slow = {f"c{i}" for i in range(3, 10)}
    scripted_server.script("sub", lambda r: Reply("R", ttft=30.0 if r.messages[-1]["content"] in slow else 0.1))
    cell = """
seen = []
for c in ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9"]:
    seen.append(llm_query(c))
    if len(seen) == 3:
        break
print(len(seen))
"""
    (outcome,) = run_cells(scripted_server, cell)
    assert outcome.stdout.strip() == "3"
    records = scripted_server.settled_records("sub")
    assert len(records) <= 3 + 8  # a loop that may break is prefetched a window of 8 ahead only
    assert all(r.outcome == "disconnected" for r in records if r.messages[-1]["content"] in slow)


def test_mutating_prompt_inputs_falls_back_to_serial(scripted_server: ScriptedServer) -> None:
    """A mutation the analysis cannot see (through an alias) only costs the speculation: the real
    prompts differ, so each is sent when the loop makes it."""
    scripted_server.script("sub", echo(ttft=0.05))
    cell = """
state = {"n": 0}
alias = state
out = []
for c in ["a", "b", "c"]:
    out.append(llm_query(f"{c}{state['n']}"))
    alias["n"] += 1
print(out)
"""
    (outcome,) = run_cells(scripted_server, cell)
    assert outcome.stdout.strip() == str(["R:a0", "R:b1", "R:c2"])
    sent = prompts_sent(scripted_server)
    assert {"a0", "b1", "c2"} <= set(sent) and sent.count("a0") == 1


def test_duplicate_prompts_are_separate_calls(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", echo(ttft=0.05))
    (outcome,) = run_cells(scripted_server, "for p in ['x', 'x', 'y']:\n    print(llm_query(p))")
    assert outcome.stdout.split() == ["R:x", "R:x", "R:y"]
    assert sorted(prompts_sent(scripted_server)) == ["x", "x", "y"]


def test_no_user_code_runs_and_no_iterator_is_consumed(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", echo(ttft=0.0))
    cell = """
calls = []
def tag(c):
    calls.append(c)
    return c
for c in ["t0", "t1"]:
    llm_query(tag(c))
gen = (c for c in ["g0", "g1"])
for g in gen:
    print(llm_query(g))
print(calls)
"""
    (outcome,) = run_cells(scripted_server, cell)
    assert outcome.error is None, outcome.error
    assert outcome.stdout.splitlines() == ["R:g0", "R:g1", "['t0', 't1']"]  # tag ran once per item


def plan(source: str) -> list[tuple[Any, ...]]:
    return list(plan_loops(ast.parse(source)).values())


def test_what_the_analysis_prefetches() -> None:
    assert plan("for c in xs:\n    out.append(llm_query(c))") == [("xs", "c", "c", None, False)]
    assert plan("for i, c in enumerate(xs):\n    r = llm_query(c, 'm')\n    if r: break") == [
        ("enumerate(xs)", "(i, c)", "c", "'m'", True)
    ]
    skipped = [
        "for c in xs:\n    if c:\n        llm_query(c)",  # conditional call
        "for c in xs:\n    if not c: continue\n    llm_query(c)",  # an item may be skipped
        "for c in xs:\n    p = p + c\n    llm_query(p)",  # the prompt's input changes in the loop
        "for c in xs:\n    llm_query(f'{c}{acc}')\n    acc.append(c)",  # mutated through a method
        "for c in xs:\n    llm_query(c.upper())\n    c = 1",  # the loop variable is rebound
        "for c in f(xs):\n    llm_query(c)",  # the iterable needs a call we do not know is pure
        "for c in xs:\n    llm_query(g(c))",  # so does the prompt
        "llm_query = print\nfor c in xs:\n    llm_query(c)",  # not the real llm_query
        "for c in xs:\n    x = llm_query(c) if c else ''",  # short-circuited
    ]
    assert [s for s in skipped if plan(s)] == []


def test_a_loop_that_raises_after_its_first_call_had_only_the_first_window_sent(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.script("sub", echo(ttft=0.2))
    cell = """
items = ["c%d" % i for i in range(40)]
for c in items:
    n = int(llm_query(c))  # the reply is not a number: the loop raises at its first item
"""
    (outcome,) = run_cells(scripted_server, cell)
    assert outcome.error is not None and "ValueError" in outcome.error
    assert len(scripted_server.settled_records("sub")) <= SpeculativeCalls.FIRST_WINDOW


def test_a_failed_call_stops_the_launching(scripted_server: ScriptedServer) -> None:
    """c1 is refused while c0 is still out: nothing more is launched, and the loop raises at c1."""

    def policy(request: ChatRequest) -> Reply | Fault:
        prompt = request.messages[-1]["content"]
        return Fault(400, "refused") if prompt == "c1" else Reply("R", ttft=0.5 if prompt == "c0" else 0.0)

    scripted_server.script("sub", policy)
    cell = """
out = []
for c in ["c%d" % i for i in range(40)]:
    out.append(llm_query(c))
"""
    (outcome,) = run_cells(scripted_server, cell)
    assert outcome.error is not None and "refused" in outcome.error
    assert len(scripted_server.settled_records("sub")) <= SpeculativeCalls.FIRST_WINDOW


def test_the_window_grows_as_the_loop_takes_its_calls(scripted_server: ScriptedServer) -> None:
    """A long loop that runs to its end soon has more than the first window in flight at once (up
    to the 16 slots run_cells gives the model)."""
    scripted_server.script("sub", lambda request: Reply("R", ttft=0.05))
    cell = "out = []\nfor i in range(300):\n    out.append(llm_query('p%d' % i))\nprint(len(out))"
    (outcome,) = run_cells(scripted_server, cell)
    assert outcome.stdout.strip() == "300"
    records = sorted(scripted_server.records("sub"), key=lambda r: r.received_at)
    assert len(records) == 300
    most = max(sum(1 for r in records if r.received_at <= s.received_at < (r.finished_at or 0)) for s in records)
    assert SpeculativeCalls.FIRST_WINDOW < most <= 16


def test_prefetched_calls_count_against_the_call_budget(scripted_server: ScriptedServer) -> None:
    """A long loop under a limit of 10 calls: the launched calls and the loop's own stop at 10 sent."""
    scripted_server.script("sub", echo(ttft=0.05))
    cell = "out = []\nfor i in range(100):\n    out.append(llm_query('p%d' % i))"
    (outcome,) = run_cells(scripted_server, cell, limits=Limits(max_calls=10))
    assert outcome.error is not None and "the limit of 10 model calls was reached" in outcome.error
    assert len(scripted_server.settled_records("sub")) <= 10
