"""The bench harness: solver policies, the direct baseline, resume, summaries; and, once the engine is
importable, the whole RLM path offline against the scripted server."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rlm_datasets import load_suite, score

from rlm.bench import BenchAborted, run_bench
from rlm.bench_report import summarize
from rlm.direct import truncate_middle
from rlm.scripted import ChatRequest, ScriptedServer
from rlm.scripted.solvers import DIRECT_LABEL, classify, install, root_policy, sub_policy
from rlm.tokens import count_tokens

ENGINE_READY = all(importlib.util.find_spec(m) for m in ("rlm.context", "rlm.engine", "sandbox"))


def _request(messages: list[dict[str, str]]) -> ChatRequest:
    return ChatRequest(model="m", messages=messages, stream=False, temperature=None, max_tokens=None, raw={}, index=0)


def _solve_without_engine(task) -> str:
    """Run the root policy's REPL code in plain Python, with sub-calls served by the sub policy."""
    first = [
        {"role": "system", "content": "Write code in ```repl blocks."},
        {"role": "user", "content": f"Query: {task.question}\n\nYou have not looked"},
    ]
    reply = root_policy(_request(first))
    code = re.search(r"```repl\n(.*?)```", reply, re.DOTALL)[1]

    def batched(prompts: list[str]) -> list[str]:
        return [sub_policy(_request([{"role": "user", "content": p}])) for p in prompts]

    namespace = {"context": task.context, "llm_query_batched": batched}
    exec(code, namespace)  # the code a model would run in the REPL
    follow = root_policy(_request([*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "ok"}]))
    assert "FINAL_VAR(result)" in follow
    return namespace["result"]


@pytest.mark.parametrize(
    ("suite", "length", "n", "floor"),
    [
        ("sniah", 8192, 2, 1.0),
        ("sniah-noise", 8192, 2, 1.0),
        ("sniah-uuid", 8192, 2, 1.0),
        ("oolong", 8192, 10, 0.15),
        ("oolong-spam", 8192, 10, 0.3),
        ("oolong-pairs", 8192, 20, 0.3),
    ],
)
def test_solver_code_solves_tasks_honestly(suite: str, length: int, n: int, floor: float) -> None:
    tasks = load_suite(suite, n=n, length=length)
    scores = [score(t, _solve_without_engine(t)) for t in tasks]
    assert sum(scores) / len(scores) >= floor


def test_sub_policy_is_a_heuristic_not_an_oracle() -> None:
    labels = ["description and abstract concept", "entity", "human being", "numeric value", "location", "abbreviation"]
    assert classify("Who wrote Hamlet ?", labels) == "human being"
    assert classify("Where is Boston ?", labels) == "location"
    assert classify("How many legs does a spider have ?", labels) == "numeric value"
    assert classify("WIN a FREE prize! Txt WIN to 80082 now", ["ham", "spam"]) == "spam"
    assert classify("Ok see you at home", ["ham", "spam"]) == "ham"
    prompt = "Label each question below with one of: entity, location.\nx\n\n1. Where is Rome ?\n2. Name a fork ."
    reply = sub_policy(_request([{"role": "user", "content": prompt}]))
    assert reply == "1: location\n2: entity"


def test_truncate_keeps_head_and_tail() -> None:
    text = " ".join(f"w{i}" for i in range(5000))
    cut = truncate_middle(text, 200)
    assert cut.startswith("w0 w1") and cut.endswith("w4999") and "tokens cut" in cut
    assert count_tokens(cut) <= 220
    assert truncate_middle("short", 200) == "short"


def _direct_policy(request: ChatRequest) -> str:
    """A 'model' that reads the needle straight out of the prompt it was given."""
    m = re.search(r"special magic numbers for \S+ is: (\d+)", request.messages[-1]["content"])
    return f"The number is {m[1]}." if m else "I don't know."


def test_direct_method_resume_and_summary_files(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedServer() as server:
        server.script("direct", _direct_policy)
        kwargs = dict(
            model="openai/direct",
            n=3,
            length=8192,
            concurrency=2,
            out_dir=out,
            method="direct",
            api_base=server.base_url,
            api_key="x",
            progress=False,
        )
        first = run_bench("sniah", **kwargs)
        assert [r.score for r in first] == [1.0, 1.0, 1.0]
        assert len(server.records("direct")) == 3
        (out / "results" / f"{first[0].id}.json").unlink()  # as if interrupted before this task finished
        again = run_bench("sniah", **kwargs)
        assert len(server.records("direct")) == 4  # only the missing task ran again
        assert [r.id for r in again] == [r.id for r in first]
    result = json.loads((out / "results" / f"{first[1].id}.json").read_text())
    assert result["status"] == "completed" and result["meta"]["answer_type"] == "contains"
    assert (out / "trajectories" / f"{first[1].id}.jsonl").is_file()
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert rows[0]["suite"] == "sniah" and float(rows[0]["score"]) == 1.0
    assert json.loads((out / "summary.json").read_text())[0]["n"] == 3
    assert (out / "summary.png").stat().st_size > 1000


def test_resume_refuses_other_settings(tmp_path: Path) -> None:
    from rlm.errors import ConfigError

    with ScriptedServer() as server:
        server.script("direct", _direct_policy)
        common = dict(
            n=1, length=8192, out_dir=tmp_path, method="direct", api_base=server.base_url, api_key="x", progress=False
        )
        run_bench("sniah", model="openai/direct", **common)
        with pytest.raises(ConfigError, match="model"):
            run_bench("sniah", model="openai/other", **common)


def test_summary_groups_by_length() -> None:
    def res(length: int, s: float) -> SimpleNamespace:
        return SimpleNamespace(
            suite="sniah",
            method="rlm",
            meta={"length": length},
            score=s,
            lenient_score=s,
            status="completed",
            cost_usd=0.01,
            cost_complete=True,
            total_tokens=100,
            sub_calls=2,
            wall_time_s=1.0,
        )

    rows = summarize([res(8192, 1.0), res(8192, 0.0), res(16384, 1.0)])
    assert [(r["length"], r["n"], r["score"]) for r in rows] == [(8192, 2, 0.5), (16384, 1, 1.0), ("all", 3, 0.6667)]


@pytest.mark.skipif(not ENGINE_READY, reason="awaits the engine (rlm.context, rlm.engine, sandbox)")
@pytest.mark.parametrize(("suite", "n", "floor"), [("sniah", 1, 1.0), ("oolong", 3, 0.1), ("oolong-pairs", 2, 0.1)])
def test_rlm_harness_end_to_end_offline(tmp_path: Path, suite: str, n: int, floor: float) -> None:
    with ScriptedServer() as server:
        root, sub = install(server)
        results = run_bench(
            suite,
            model=f"openai/{root}",
            sub_model=f"openai/{sub}",
            n=n,
            length=8192,
            concurrency=2,
            out_dir=tmp_path,
            api_base=server.base_url,
            api_key="x",
            progress=False,
            max_iterations=4,
        )
        assert all(r.status == "completed" for r in results), [r.error for r in results]
        assert sum(r.score for r in results) / n >= floor
        if suite != "sniah":
            assert all(r.sub_calls > 0 for r in results)
            assert server.records(sub)


def test_solver_answers_a_direct_prompt_in_one_reply_from_the_visible_text(tmp_path: Path) -> None:
    """--method direct with the solver: one call per task, a labelled heuristic answer, no REPL code."""
    with ScriptedServer() as server:
        root, _ = install(server)
        common = dict(model=f"openai/{root}", length=8192, method="direct", api_base=server.base_url, api_key="x")
        results = run_bench("oolong", n=4, out_dir=tmp_path / "o", progress=False, **common)
        assert len(server.records(root)) == 4
        for r in results:
            assert r.status == "completed" and r.answer.startswith(f"[{DIRECT_LABEL}") and "```" not in r.answer
            assert r.meta["truncated"] is False and r.sub_calls == 0
        tasks = load_suite("oolong", n=4, length=8192)
        assert [r.score for r in results] == [score(t, _solve_without_engine(t)) for t in tasks]
        needle = run_bench("sniah", n=1, out_dir=tmp_path / "s", progress=False, **common)
        assert needle[0].score == 1.0


def test_tasks_that_failed_are_retried_on_resume(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        server.script("direct", _direct_policy)
        kwargs = dict(model="openai/direct", n=2, length=8192, out_dir=tmp_path, method="direct")
        first = run_bench("sniah", api_base=server.base_url, api_key="x", progress=False, **kwargs)
        path = tmp_path / "results" / f"{first[0].id}.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | {"status": "provider_error", "score": 0.0}))
        again = run_bench("sniah", api_base=server.base_url, api_key="x", progress=False, **kwargs)
        assert len(server.records("direct")) == 3 and [r.status for r in again] == ["completed", "completed"]


def test_sweep_stops_when_the_first_tasks_all_fail(tmp_path: Path) -> None:
    """An unreachable endpoint ends the sweep with one error instead of failing every task."""
    with ScriptedServer() as server:
        dead = server.base_url  # nothing listens there once the server has stopped
    with pytest.raises(BenchAborted, match=r"the first 1 tasks all failed.*--api-base"):
        run_bench(
            "sniah",
            model="openai/x",
            n=1,
            length=8192,
            out_dir=tmp_path,
            method="direct",
            api_base=dead,
            api_key="x",
            progress=False,
        )
    assert json.loads(next((tmp_path / "results").glob("*.json")).read_text())["status"] == "provider_error"


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env |= {"RLM_CACHE": "false", "RLM_CONFIG": str(tmp_path / "absent.toml")}
    command = [sys.executable, "-m", "rlm", "bench", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nonexistent-suite", "--model", "openai/x"], "unknown suite 'nonexistent-suite'"),
        (["missing.jsonl", "--model", "openai/x"], "OOLONG file not found: missing.jsonl"),
        (["oolong", "--model", "openai/x", "--length", "7"], "--length 7 is out of range"),
        (["sniah"], "no model configured"),
    ],
)
def test_cli_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = _cli([*args, "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("rlm: ") and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "run.json").exists()  # nothing written for a run that never started


def test_table_goes_to_stdout_and_progress_notes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with ScriptedServer() as server:
        install(server)
        common = dict(model="openai/solver-root", n=2, length=8192, out_dir=tmp_path, method="direct")
        run_bench("sniah", api_base=server.base_url, api_key="x", progress=True, **common)
        first = capsys.readouterr()
        assert "│ sniah" in first.out and "2/2" in first.out and "1.000" in first.out
        assert f"results in {tmp_path}" in first.err
        run_bench("sniah", api_base=server.base_url, api_key="x", progress=True, **common)
        assert "2 of 2 tasks already done, 0 to run" in capsys.readouterr().err
