"""`rlm view`: traces written by real runs (against the scripted server) shown as a tree in the
terminal, and every kind of bad trace shown with a message instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlm import RLM
from rlm.cli import main
from rlm.scripted import ScriptedServer
from rlm.view import load_trace

ROOT, SUB = "openai/test-root", "openai/test-sub"
HOSTILE = "\x1b]52;c;cHduZWQ=\x07\x1b[31mred\u202e"  # clipboard write, colour, bidi override


def traced_run(server: ScriptedServer, tmp_path: Path, printed: str = "parts") -> Path:
    """A run with sub-calls, a child RLM and a cell that prints `printed`; its trace file."""

    def root(request):
        if "Query: Count the commas" in request.messages[1]["content"]:
            return "```repl\nFINAL(context.count(','))\n```"  # the child
        turns = sum(m["role"] == "assistant" for m in request.messages)
        if turns == 0:
            return (
                "```repl\nparts = llm_query_batched(['a', 'b', 'c'])\n"
                f"n = rlm_query('Count the commas', context=context[0:5])\nprint({printed!r}, parts, n)\n```"
            )
        return "FINAL_VAR(n)"

    server.script("test-root", root)
    server.script("test-sub", lambda request: request.messages[-1]["content"].upper())
    trace = tmp_path / "run.jsonl"
    rlm = RLM(model=ROOT, sub_model=SUB, api_base=server.base_url, api_key="sk-local")
    assert rlm.query("a,b,c,d,e,f", "How many commas?", trace=trace).answer == "2"
    return trace


def view(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["view", *args])
    return result.exit_code, result.output


def test_a_real_trace_reads_back_as_its_tree(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    trace = load_trace(traced_run(scripted_server, tmp_path))
    assert trace.ended and trace.status == "completed" and not trace.gaps
    assert trace.answer.value == "2"
    assert [node.path for node in trace.nodes.values()] == [(), (0,)]
    totals = trace.totals()
    assert totals.calls == len(scripted_server.records())  # 2 root turns, 3 sub-calls, 1 child turn
    assert sorted(trace.by_model()) == [ROOT, SUB]


def test_rlm_view_shows_the_tree_calls_and_answer(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    code, output = view(str(traced_run(scripted_server, tmp_path)))
    assert code == 0, output
    assert "completed" in output and "2 nodes" in output and "6 model calls" in output
    assert "child 0" in output and "llm_query_batched" in output
    assert output.count("sub call openai/test-sub") == 3
    assert "answer: 2" in output


def test_model_text_reaches_the_terminal_neutralised(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    code, output = view(str(traced_run(scripted_server, tmp_path, printed=HOSTILE)))
    assert code == 0, output
    assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    assert "red" in output  # the text stays readable, its escapes shown inert


def test_bad_lines_become_marked_gaps(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    trace = traced_run(scripted_server, tmp_path)
    lines = trace.read_text().splitlines()
    lines.insert(3, "this is not JSON")
    lines.insert(5, json.dumps(["not", "an", "event"]))
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # cut mid-line
    code, output = view(str(broken))
    assert code == 0, output
    assert "unreadable lines skipped: line 4" in output
    assert "running (no run_end yet)" in output  # the run_end line was cut in half


def test_huge_texts_are_clipped_unless_asked(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    trace = traced_run(scripted_server, tmp_path, printed="\n".join(f"line {i}" for i in range(500)))
    code, output = view(str(trace))
    assert code == 0 and "line 499" not in output and "more line" in output
    code, output = view(str(trace), "--full")
    assert code == 0 and "line 499" in output


@pytest.mark.parametrize("make", ["missing", "folder"])
def test_a_trace_that_cannot_be_read_is_named_with_what_to_do(tmp_path: Path, make: str) -> None:
    target = tmp_path / "run.jsonl"
    if make == "folder":
        target.mkdir()
    code, output = view(str(target))
    assert code == 1
    assert ("no such file" if make == "missing" else "is a folder") in output
    assert "Traceback" not in output


def test_follow_on_a_finished_trace_prints_its_events_then_the_tree(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    code, output = view(str(traced_run(scripted_server, tmp_path)), "--follow")
    assert code == 0, output
    assert "turn 1" in output and "run ended: completed" in output and "answer: 2" in output
