"""`rlm batch` run locally against the scripted server: job files and their errors, rows written and
resumed, the batch-wide limits and budgets (and those of a `rlm bench` sweep), the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rlm.batch import load_jobs, read_results, run_batch
from rlm.cli import main
from rlm.errors import ConfigError
from rlm.scripted import Reply, ScriptedServer
from tests.sweeps import (
    batch_options,
    bench_sweep_budgets,
    cost_budget_sweep,
    length_or_refusal,
    max_overlap,
    write_jobs,
)


def test_local_batch_writes_rows_and_resumes(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("root", length_or_refusal)
    jobs, out = write_jobs(tmp_path), tmp_path / "out" / "results.jsonl"
    rows = run_batch(jobs, out, batch_options(scripted_server), concurrency=3, progress=False)
    assert {i: r["answer"] for i, r in rows.items()} == {"file": "12", "1": "1", "2": "2", "3": "3", "bad": None}
    assert rows["bad"]["status"] == "provider_error" and "scripted refusal" in rows["bad"]["error"]
    assert len(scripted_server.records()) == 5

    scripted_server.reset()
    scripted_server.script("root", lambda request: "```repl\nFINAL('fixed')\n```")
    again = run_batch(jobs, out, batch_options(scripted_server), concurrency=3, progress=False)
    assert len(scripted_server.records()) == 1  # only the failed job ran again
    assert again["bad"]["answer"] == "fixed" and again["file"]["answer"] == "12"
    assert len(out.read_text().splitlines()) == 6  # rows are appended; the newest row of an id wins


def test_batch_wide_in_flight_limit_holds_at_the_server(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.05))
    jobs = write_jobs(tmp_path, boom=False, n=6)
    run_batch(
        jobs, tmp_path / "r.jsonl", batch_options(scripted_server, max_in_flight=1), concurrency=6, progress=False
    )
    assert len(scripted_server.records()) == 6
    assert max_overlap(scripted_server) == 1


def test_batch_call_budget_holds_and_cut_jobs_run_again(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("root", length_or_refusal)
    jobs, out = write_jobs(tmp_path, boom=False, n=4), tmp_path / "r.jsonl"
    rows = run_batch(jobs, out, batch_options(scripted_server), concurrency=1, max_calls=2, progress=False)
    assert len(scripted_server.records()) == 2
    cut = sorted(i for i, r in rows.items() if r["status"] == "max_calls")
    assert len(cut) == 2 and "the batch's limit of 2 model calls was reached" in rows[cut[0]]["error"]
    again = run_batch(jobs, out, batch_options(scripted_server), concurrency=1, max_calls=2, progress=False)
    assert len(scripted_server.records()) == 4  # only the two cut jobs ran again
    assert all(r["status"] == "completed" for r in again.values())


def test_batch_cost_budget_holds_and_cut_jobs_run_again(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    cost_budget_sweep(scripted_server, tmp_path, None)


def test_bench_sweep_budgets_hold_and_cut_tasks_run_again(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    bench_sweep_budgets(scripted_server, tmp_path, None)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "q"}', "exactly one of 'context' (the text) or 'context_path'"),
        ('{"question": "q", "context": "a", "context_path": "b"}', "exactly one of"),
        ('{"context": "a"}', "'question' must be a non-empty string"),
        ('{"question": "q", "context_path": "nowhere.txt"}', "context file not found: nowhere.txt"),
        ("[1, 2]", "each line must be a JSON object"),
        ('{"question": "q", "context": "a"', "not a JSON object"),
        ('{"id": 1, "question": "q", "context": "a"}\n{"id": "1", "question": "r", "context": "b"}', "duplicate id"),
    ],
)
def test_bad_job_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError, match=r"jobs\.jsonl:[12]: ") as caught:
        load_jobs(path)
    assert message in str(caught.value)


def test_cli_batch_runs_and_reports_bad_input(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("root", length_or_refusal)
    jobs, out = write_jobs(tmp_path, boom=False, n=2), tmp_path / "r.jsonl"
    common = ["--model", "openai/root", "--api-base", scripted_server.base_url, "--api-key", "x"]
    done = CliRunner().invoke(main, ["batch", str(jobs), "--out", str(out), *common])
    assert done.exit_code == 0, done.output
    assert {i: r["answer"] for i, r in read_results(out).items()} == {"file": "12", "1": "1"}  # ids: line indices
    (tmp_path / "empty.jsonl").write_text("\n")
    bad = CliRunner().invoke(main, ["batch", str(tmp_path / "empty.jsonl"), "--out", str(out), *common])
    assert bad.exit_code == 1 and "empty.jsonl: no jobs" in bad.output


def test_without_ray_the_message_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when Ray is not installed
    with pytest.raises(ConfigError, match=r"--ray needs Ray, which is not installed: pip install 'rlm-stream\[ray\]'"):
        run_batch(
            write_jobs(tmp_path),
            tmp_path / "r.jsonl",
            batch_options(scripted_server),
            ray_address="local",
            progress=False,
        )
    assert not scripted_server.records()
