"""Limits that hold against hostile code: what a runaway program costs is bounded by default.

The attacks run through the engine against the scripted server, so what was sent is counted on the
server's side, not only by rlm; how a stop is reported is checked on the interpreter itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import FAST_LIMITS, Repl

from rlm import RLM, Status
from rlm.bridge import CHILD_SESSIONS
from rlm.config import DEFAULT_MAX_CALLS, resolve_settings
from rlm.errors import ConfigError
from rlm.scripted import ChatRequest, Reply, ScriptedServer
from sandbox import CellLimits
from sandbox.prefetch import CHUNK_CHARS
from sandbox.repl import CellCancelled, CellTimeout, Interpreter

ROOT, SUB = "openai/test-root", "openai/test-sub"

ENDLESS_BATCHES = """```repl
while True:
    llm_query_batched(["again"] * 100)
```"""


def engine(server: ScriptedServer, **options: object) -> RLM:
    options.setdefault("sandbox", "process")
    return RLM(model=ROOT, sub_model=SUB, api_base=server.base_url, api_key="sk-local", **options)


def test_an_endless_loop_of_batches_stops_at_the_default_call_budget(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", [ENDLESS_BATCHES])
    scripted_server.script("test-sub", lambda request: Reply("ok"))
    result = engine(scripted_server, max_iterations=1).query("ctx", "q")
    assert result.status is Status.MAX_CALLS
    assert f"the limit of {DEFAULT_MAX_CALLS:,} model calls was reached" in (result.error or "")
    assert "--max-calls" in (result.error or "") and "max_calls" in (result.error or "")
    assert len(scripted_server.records()) <= DEFAULT_MAX_CALLS


def test_a_lower_call_budget_stops_the_loop_sooner(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", [ENDLESS_BATCHES])
    scripted_server.script("test-sub", lambda request: Reply("ok"))
    result = engine(scripted_server, max_iterations=1, max_calls=150).query("ctx", "q")
    assert result.status is Status.MAX_CALLS and "the limit of 150 model calls" in (result.error or "")
    assert len(scripted_server.records()) <= 150


@pytest.mark.parametrize(("explicit", "env", "expected"), [(None, None, 1000), (0, None, None), (None, "none", None)])
def test_the_call_budget_is_lifted_by_zero_or_none(
    monkeypatch: pytest.MonkeyPatch, explicit: int | None, env: str | None, expected: int | None
) -> None:
    if env is None:
        monkeypatch.delenv("RLM_MAX_CALLS", raising=False)
    else:
        monkeypatch.setenv("RLM_MAX_CALLS", env)
    assert resolve_settings(max_calls=explicit).limits.max_calls == expected


BIG_PROMPTS = """
big = "x" * 2_000_000
sizes = []
for i in range(40):
    sizes.append(len(llm_query(big + str(i))))
print(len(sizes))
"""


def test_a_loop_over_big_prompts_is_prefetched_in_bounded_chunks() -> None:
    """80 MB of prompts in one loop: sent in chunks far below the channel's cap, the worker lives."""
    repl = Repl("process", CellLimits(timeout_s=30.0, memory_mb=512))
    try:
        outcome = repl.ok(BIG_PROMPTS)
        assert outcome.stdout.strip() == "40"
        chunks = [args[0] for name, args, _ in repl.bridge.calls if name == "llm_prefetch" and args[0]]
        assert sum(len(chunk) for chunk in chunks) == 40 and len(chunks) > 1
        assert max(sum(map(len, chunk)) for chunk in chunks) <= 2 * CHUNK_CHARS
        assert repl.ok("print(1)").stdout.strip() == "1"
    finally:
        repl.close()


def tree_policy(request: ChatRequest) -> Reply:
    """The root fans out to 8 children, each of them to 8 grandchildren, who answer after a while."""
    question = request.messages[1]["content"]
    if "Query: grand" in question:
        return Reply('```repl\nFINAL("g")\n```', ttft=0.3)
    if "Query: child" in question:
        cell = 'r = rlm_query_batched([f"grand {i}" for i in range(8)])\nFINAL(str(len(r)))'
    else:
        cell = 'r = rlm_query_batched([f"child {i}" for i in range(8)])\nFINAL(",".join(r))'
    return Reply(f"```repl\n{cell}\n```")


def most_alive(trajectory: list[dict[str, object]], level: int) -> int:
    """The most nodes of `level` between their node_start and node_end at once."""
    alive = most = 0
    for event in trajectory:
        path = event.get("path")
        if isinstance(path, list) and len(path) == level and event["type"] in ("node_start", "node_end"):
            alive += 1 if event["type"] == "node_start" else -1
            most = max(most, alive)
    return most


def test_a_depth_two_fan_out_holds_a_bounded_number_of_sessions(scripted_server: ScriptedServer) -> None:
    """8 children of 8 grandchildren each: 73 nodes, but at most 8 per level alive at once, run-wide
    (each with its sandbox worker); the others wait for a slot and the tree still completes."""
    scripted_server.script("test-root", tree_policy)
    result = engine(scripted_server, max_depth=3).query("ctx", "q")
    assert result.status is Status.COMPLETED, result.error
    assert result.answer == ",".join(["8"] * 8)
    assert len(scripted_server.records("test-root")) == 1 + 8 + 64
    assert most_alive(result.trajectory, 1) <= CHILD_SESSIONS
    assert most_alive(result.trajectory, 2) == CHILD_SESSIONS  # not 64: the slots are shared by the run
    assert any(event["type"] == "child_queued" for event in result.trajectory)


CPU_LIMITS = CellLimits(timeout_s=120.0, cpu_s=1.0, memory_mb=1024)


@pytest.fixture(scope="module")
def cpu_repl() -> Iterator[Repl]:
    """A session whose cells may use 1 s of CPU, far below their 120 s deadline."""
    driver = Repl("process", CPU_LIMITS)
    driver.ok("kept = 41")
    yield driver
    driver.close()


@pytest.mark.parametrize(
    "code",
    [
        "import re\nre.match(r'(a+)+$', 'a' * 40 + 'b')",  # catastrophic backtracking
        "big = pow(10, 10**9)",  # a number of a billion digits
        "while True:\n    pass",
    ],
    ids=["regex", "pow", "loop"],
)
def test_a_cell_is_stopped_at_its_cpu_time_and_keeps_its_state(cpu_repl: Repl, code: str) -> None:
    outcome = cpu_repl.run(code)
    assert outcome.error_kind == "cpu" and "more than 1 s of CPU time" in (outcome.error or "")
    assert outcome.notice is None  # stopped inside the worker: nothing was restarted
    assert cpu_repl.ok("print(kept + 1)").stdout.strip() == "42"


def test_a_call_stuck_in_c_is_killed_at_its_cpu_time_and_the_session_restored(cpu_repl: Repl) -> None:
    """sum() over a range never looks at signals: the kernel's CPU limit ends the worker."""
    outcome = cpu_repl.run("total = sum(range(10**12))")
    assert outcome.error_kind == "cpu" and (outcome.error or "").startswith("CpuLimit: ")
    assert "could not be interrupted" in (outcome.error or "")
    assert outcome.notice is not None and "all variables restored" in outcome.notice
    assert cpu_repl.ok("print(kept + 1)").stdout.strip() == "42"


def test_the_run_reports_a_cell_stopped_at_its_cpu_time(scripted_server: ScriptedServer) -> None:
    cell = "```repl\nimport re\nre.match(r'(a+)+$', 'a' * 40 + 'b')\n```"
    scripted_server.script("test-root", [cell, '```repl\nFINAL("still here")\n```'])
    result = engine(scripted_server, cell_cpu=1.0, max_iterations=2).query("ctx", "q")
    assert result.answer == "still here"
    ends = [e for e in result.trajectory if e["type"] == "cell_end"]
    assert ends[0]["error_kind"] == "cpu" and "CPU time" in ends[0]["error"]


def test_the_cpu_time_of_a_cell_defaults_to_half_its_timeout_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RLM_CELL_CPU", raising=False)
    assert resolve_settings(cell_timeout=60).sandbox.cell_cpu is None  # the engine gives a cell 30 s of CPU
    with pytest.raises(ConfigError, match="cell_cpu must be above 0 seconds"):
        resolve_settings(cell_cpu=-1)


class _ObservedInterpreter(Interpreter):
    """Records whether the cell's timers could still stop the description of its error."""

    stoppable_while_described: list[bool]

    def _describe(self, exc: BaseException) -> str:
        self.stoppable_while_described.append(self.running)
        return super()._describe(exc)


@pytest.mark.parametrize(
    ("raised", "stoppable"),
    [
        (CellCancelled("the run was cancelled"), False),  # the engine's own stop: nothing of the cell runs
        (CellTimeout(object()), True),  # its message is an object the cell may have made
        (CellTimeout("a", "b"), True),  # its text would be a copy of the args the cell gave it
        (ValueError("the cell's own"), True),
    ],
)
def test_an_engine_stop_is_described_out_of_reach_of_the_next_stop(raised: BaseException, stoppable: bool) -> None:
    """The timers repeat against code that swallows stops; the one after an escaped stop must not
    cut that stop's message, while anything of the cell's making is still described on its timer."""

    def host(name: str, args: list[object], kwargs: dict[str, object]) -> object:
        raise raised

    interp = _ObservedInterpreter("text", FAST_LIMITS, host)
    interp.stoppable_while_described = []
    reply = interp.run("llm_query('x')")
    assert interp.stoppable_while_described == [stoppable]
    assert type(raised).__name__ in reply["error"]
