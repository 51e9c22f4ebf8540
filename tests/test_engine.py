"""The engine end to end through litellm and real HTTP against the scripted server.

Each test scripts the root model's replies (real REPL code, as an LLM would write it) and checks what
the engine did from both sides: its own events and the server's per-chunk timestamps.
"""

from __future__ import annotations

import _thread
import asyncio
import collections
import itertools
import os
import re
import signal
import threading
import time

import pytest

from rlm import RLM, Status
from rlm.api import RLMResult
from rlm.errors import ConfigError, LocalOnlyViolation
from rlm.scripted import Drop, Fault, Reply, ScriptedServer
from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, install_demo, make_demo_log

ROOT, SUB = "openai/test-root", "openai/test-sub"


def engine(server: ScriptedServer, **options: object) -> RLM:
    return RLM(model=ROOT, sub_model=SUB, api_base=server.base_url, api_key="sk-local", **options)


def events(result, kind: str) -> list[dict]:
    return [e for e in result.trajectory if e["type"] == kind]


def demo_truth(text: str) -> str:
    errors = [line for line in text.splitlines() if "level=ERROR" in line]
    code, times = collections.Counter(re.findall(r"code=(E\d+)", text)).most_common(1)[0]
    return f"{len(errors)} ERROR lines; the most common code is {code} ({times} times)."


@pytest.mark.parametrize("sandbox", ["inprocess", "process"])
def test_demo_question_is_answered_correctly(scripted_server: ScriptedServer, sandbox: str) -> None:
    install_demo(scripted_server)
    text = make_demo_log(3000)
    rlm = demo_rlm(scripted_server, sandbox=sandbox)
    result = rlm.query(text, DEMO_QUESTION)
    assert result.status is Status.COMPLETED, result.error
    assert result.answer == demo_truth(text)
    assert result.sub_calls == len(scripted_server.records("scripted-sub")) >= 2
    assert result.usage.total_tokens > 0


def test_block_runs_while_the_reply_is_still_streaming(scripted_server: ScriptedServer) -> None:
    tail = "Meanwhile I keep explaining my plan in some detail. " * 12
    scripted_server.script(
        "test-root",
        [
            Reply("First, the size.\n```repl\nsize = len(context)\nprint(size)\n```\n" + tail, tps=150),
            "FINAL_VAR(size)",
        ],
    )
    result = engine(scripted_server, after_block="continue").query("x" * 1234, "How long is the context?")
    assert result.answer == "1234"
    first_reply = scripted_server.records("test-root")[0]
    cell_end = events(result, "cell_end")[0]
    # The block finished running before the server had sent the rest of that same reply.
    assert first_reply.outcome == "completed"
    assert cell_end["t"] < first_reply.finished_at
    assert any(t > cell_end["t"] for t, _ in first_reply.chunk_times)


def test_stream_is_cancelled_once_the_answer_is_submitted(scripted_server: ScriptedServer) -> None:
    chatter = "This text comes after the answer and must never be generated in full. " * 20
    scripted_server.script(
        "test-root",
        [
            Reply(
                '```repl\nanswer["content"] = str(len(context.split()))\nanswer["ready"] = True\n```\n' + chatter,
                tps=100,
            )
        ],
    )
    result = engine(scripted_server).query("one two three", "How many words?")
    assert result.answer == "3"
    record = scripted_server.settled_records("test-root")[0]
    assert record.outcome == "disconnected"
    assert len(record.sent_text) < len(record.planned_text) // 2


def test_final_in_prose_and_sub_queries(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        "test-root",
        ['```repl\nparts = llm_query_batched(["a", "b", "c"])\nprint(parts)\n```', "FINAL(done: a b c)"],
    )
    scripted_server.script("test-sub", lambda request: request.messages[-1]["content"].upper())
    result = engine(scripted_server).query("ctx", "q")
    assert result.answer == "done: a b c"
    assert "['A', 'B', 'C']" in events(result, "cell_end")[0]["stdout"]
    assert result.sub_calls == 3


def test_after_block_stop_ends_the_reply_at_the_first_block(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        "test-root",
        [
            Reply("```repl\nx = 41\n```\n" + "and now I imagine the output: 41. " * 20, tps=100),
            "```repl\nFINAL(x + 1)\n```",
        ],
    )
    result = engine(scripted_server, after_block="stop").query("ctx", "q")
    assert result.answer == "42"
    assert scripted_server.settled_records("test-root")[0].outcome == "disconnected"
    assert len(events(result, "cell_start")) == 2  # one block per turn


def test_max_iterations_returns_the_partial_answer(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", lambda request: '```repl\nanswer["content"] = "partial"\n```')
    result = engine(scripted_server, max_iterations=2).query("ctx", "q")
    assert result.status is Status.MAX_ITERATIONS
    assert result.answer == "partial"
    assert len(scripted_server.records("test-root")) == 2


def test_timeout_stops_the_tree(scripted_server: ScriptedServer) -> None:
    # litellm imports much of itself on its first call; that must not eat this test's one-second budget
    scripted_server.script("test-root", ["FINAL(warm)", Reply("```repl\nprint(1)\n```", ttft=30)])
    assert engine(scripted_server).query("ctx", "q").answer == "warm"
    result = engine(scripted_server, timeout=1.0).query("ctx", "q")
    assert result.status is Status.TIMEOUT
    assert result.wall_time_s < 10
    assert scripted_server.settled_records("test-root")[1].outcome == "disconnected"


@pytest.mark.parametrize(
    ("limit", "status"), [({"max_tokens": 50}, Status.MAX_TOKENS), ({"max_cost": 1e-9}, Status.MAX_COST)]
)
def test_token_and_cost_limits(scripted_server: ScriptedServer, limit: dict, status: Status) -> None:
    scripted_server.script("gpt-4o-mini", lambda request: "```repl\nprint(len(context))\n```")
    rlm = RLM(
        model="openai/gpt-4o-mini",
        api_base=scripted_server.base_url,
        api_key="sk-local",
        **limit,
    )
    result = rlm.query("ctx", "q")
    assert result.status is status
    # the first call's worst case (its prompt and a reply of up to 8192 tokens) does not fit: none is sent
    assert len(scripted_server.records("gpt-4o-mini")) == 0


def test_stream_dropped_mid_reply_keeps_partial_work(scripted_server: ScriptedServer) -> None:
    first = "```repl\nseen = len(context)\n```\nNow more text that will be cut off"
    scripted_server.script("test-root", [Drop(first, after_chars=first.index("Now") + 4), "FINAL_VAR(seen)"])
    result = engine(scripted_server, after_block="continue").query("abcdef", "q")
    assert result.status is Status.COMPLETED
    assert result.answer == "6"
    assert len(events(result, "stream_interrupted")) == 1


def test_provider_error_ends_with_status(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", [Fault(400, "bad request: your prompt is malformed")])
    result = engine(scripted_server).query("ctx", "q")
    assert result.status is Status.PROVIDER_ERROR
    assert "malformed" in (result.error or "")


def test_sync_query_works_inside_a_running_event_loop(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", ["FINAL(inside)"])

    async def notebook_cell() -> str | None:
        return engine(scripted_server).query("ctx", "q").answer  # what a Jupyter user writes

    assert asyncio.run(notebook_cell()) == "inside"


def test_async_face(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", ["FINAL(async)"])
    assert asyncio.run(engine(scripted_server).aquery("ctx", "q")).answer == "async"


def test_child_rlm_over_a_view(scripted_server: ScriptedServer) -> None:
    def root(request):
        if "Query: Count the commas" in request.messages[1]["content"]:
            return "```repl\nFINAL(context.count(','))\n```"  # the child
        turns = sum(m["role"] == "assistant" for m in request.messages)
        if turns == 0:
            return '```repl\nn = rlm_query("Count the commas", context=context[0:5])\nprint(n)\n```'
        return "FINAL_VAR(n)"

    scripted_server.script("test-root", root)
    result = engine(scripted_server).query("a,b,c,d,e,f", "q")
    assert result.answer == "2"
    assert {tuple(e["path"]) for e in events(result, "node_start")} == {(), (0,)}


def test_missing_model_says_how_to_configure(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("RLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("RLM_MODEL", raising=False)
    with pytest.raises(ConfigError, match="No model is configured") as info:
        RLM()
    assert "rlm demo" in str(info.value) and 'api_base="http' in str(info.value)  # Python terms here
    assert "--api-base" in info.value.cli_message  # the CLI's own wording


def test_rlm_query_at_max_depth_falls_back_to_llm_query(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", ['```repl\nr = rlm_query("What is 2+2?")\nFINAL(r)\n```'])
    scripted_server.script("test-sub", ["4"])
    result = engine(scripted_server, max_depth=1).query("ctx", "q")
    assert result.answer == "4"
    assert len(scripted_server.records("test-root")) == 1  # no child RLM turn was made
    assert [tuple(e["path"]) for e in events(result, "node_start")] == [()]


@pytest.mark.parametrize("sandbox", ["inprocess", "process"])
def test_a_child_spends_from_the_tree_budget(scripted_server: ScriptedServer, sandbox: str) -> None:
    def root(request):
        if "Query: dig" in request.messages[1]["content"]:
            return '```repl\nanswer["content"] = "child still digging"\n```'  # the child never finishes
        return '```repl\nanswer["content"] = "root partial"\nr = rlm_query("dig")\n```'

    scripted_server.script("test-root", root)
    result = engine(scripted_server, max_calls=6, max_iterations=50, sandbox=sandbox).query("ctx", "q")
    assert result.status is Status.MAX_CALLS
    assert result.answer == "root partial"
    children = [e for e in events(result, "model_request") if e["path"]]
    assert len(children) >= 4  # the child's turns were counted against the same six calls
    assert len(scripted_server.records("test-root")) <= 6


def test_direct_baseline_is_one_call_through_the_gateway(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", lambda request: "seen: " + request.messages[-1]["content"][-9:])
    result = engine(scripted_server).direct("alpha beta", "Question?")
    assert (result.status, result.answer, result.iterations) == (Status.COMPLETED, "seen: Question?", 1)
    assert [e["role"] for e in events(result, "model_call")] == ["root"]
    cut = engine(scripted_server).direct("word " * 5000, "Question?", window=5000)
    assert "tokens cut to fit" in scripted_server.records("test-root")[-1].messages[-1]["content"]
    assert cut.trajectory[0]["truncated"] is True


def test_direct_baseline_obeys_local_only() -> None:
    with pytest.raises(LocalOnlyViolation):
        RLM(model="openai/gpt-4o", local_only=True).direct("ctx", "q")


def test_a_path_is_mapped_and_a_str_is_text(scripted_server: ScriptedServer, tmp_path) -> None:
    scripted_server.script("test-root", lambda request: "```repl\nFINAL(len(context))\n```")
    (tmp_path / "ctx.txt").write_text("twelve chars")
    assert engine(scripted_server).query(tmp_path / "ctx.txt", "q").answer == "12"
    assert engine(scripted_server).query(str(tmp_path / "ctx.txt"), "q").answer == str(len(str(tmp_path / "ctx.txt")))


def test_out_of_turns_without_an_answer_asks_for_a_last_word(scripted_server: ScriptedServer) -> None:
    def root(request):
        if "no turns left" in request.messages[-1]["content"]:
            return "probably 7"
        return "```repl\nprint('still looking')\n```"

    scripted_server.script("test-root", root)
    result = engine(scripted_server, max_iterations=2).query("ctx", "q")
    assert (result.status, result.answer, result.iterations) == (Status.MAX_ITERATIONS, "probably 7", 2)
    assert len(scripted_server.records("test-root")) == 3


def test_per_model_in_flight_limit_serialises_that_model(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", ['```repl\nprint(llm_query_batched(["a", "b", "c", "d"]))\n```', "FINAL(ok)"])
    scripted_server.script("test-sub", lambda request: Reply("x", ttft=0.2))
    result = engine(scripted_server, model_limits={SUB: {"max_in_flight": 1}}).query("ctx", "q")
    assert result.answer == "ok"
    calls = sorted(scripted_server.records("test-sub"), key=lambda record: record.received_at)
    assert len(calls) == 4
    assert all(later.received_at >= earlier.finished_at for earlier, later in itertools.pairwise(calls))


def test_a_notebook_interrupt_stops_the_run_and_keeps_the_partial(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        "test-root", ['```repl\nanswer["content"] = "half"\n```', Reply("```repl\nprint(1)\n```", ttft=60)]
    )

    def interrupt_when_the_second_turn_is_sent() -> None:
        deadline = time.time() + 30
        while len(scripted_server.records("test-root")) < 2 and time.time() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()

    async def notebook_cell() -> RLMResult:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a Jupyter kernel raises KeyboardInterrupt
        threading.Thread(target=interrupt_when_the_second_turn_is_sent, daemon=True).start()
        return engine(scripted_server).query("ctx", "q")

    started = time.time()
    result = asyncio.run(notebook_cell())
    assert (result.status, result.answer) == (Status.INTERRUPTED, "half")
    assert time.time() - started < 30
    assert scripted_server.settled_records("test-root")[1].outcome == "disconnected"
    assert not [t for t in threading.enumerate() if t.name == "rlm-query"]


def test_a_child_stopped_by_a_limit_is_reported_as_partial_and_code_is_never_an_answer(
    scripted_server: ScriptedServer,
) -> None:
    def root(request):
        if "Query: dig" in request.messages[1]["content"]:
            if "no turns left" in request.messages[-1]["content"]:
                return "```repl\nprint('more code instead of an answer')\n```"
            return '```repl\nanswer["content"] = "found 3 so far"\n```'
        if sum(m["role"] == "assistant" for m in request.messages) == 0:
            return '```repl\nr = rlm_query("dig")\nprint(r)\n```'
        return "FINAL_VAR(r)"

    scripted_server.script("test-root", root)
    result = engine(scripted_server, max_iterations=2).query("ctx", "q")
    assert result.answer == "[partial: the child RLM stopped (the limit of 2 turns was reached)] found 3 so far"
    assert result.sub_calls == 1  # the child RLM


def test_wait_mode_runs_the_blocks_that_arrived_before_a_drop(scripted_server: ScriptedServer) -> None:
    first = "```repl\nseen = len(context)\n```\n" + "more prose " * 20
    scripted_server.script("test-root", [Drop(first, after_chars=60), "FINAL_VAR(seen)"])
    result = engine(scripted_server, after_block="wait").query("abcdef", "q")
    assert result.answer == "6"


def test_a_last_word_that_is_only_code_is_no_answer(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", lambda request: "```repl\nprint('still looking')\n```")
    result = engine(scripted_server, max_iterations=1).query("ctx", "q")
    assert (result.status, result.answer) == (Status.MAX_ITERATIONS, None)
    assert result.error == "the limit of 1 turn was reached"


def test_unknown_model_and_missing_key_are_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="Unknown model 'nosuchprovider/foo'"):
        RLM(model="nosuchprovider/foo").query("ctx", "q")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        RLM(model="anthropic/claude-sonnet-4-5").query("ctx", "q")


def test_a_context_file_changed_during_the_run_ends_it_clearly(scripted_server: ScriptedServer, tmp_path) -> None:
    path = tmp_path / "ctx.txt"
    path.write_text("original text")

    def root(request):
        if sum(m["role"] == "assistant" for m in request.messages) == 0:
            path.write_text("short")  # another program rewrites the file mid-run
            os.utime(path, (time.time() + 5, time.time() + 5))
        return '```repl\nanswer["content"] = "so far"\nprint(len(context))\n```'

    scripted_server.script("test-root", root)
    result = engine(scripted_server).query(path, "q")
    assert result.status is Status.ERROR
    assert "changed" in (result.error or "")
