"""`rlm batch`: job files, local runs and resume against the scripted server; then the same batch on a
real local Ray (skipped when Ray is not installed), with the cluster-wide limiter counted at the server."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rlm.batch import ResultsFile, load_jobs, read_results, run_batch, run_on_ray
from rlm.cli import main
from rlm.errors import ConfigError
from rlm.scripted import ChatRequest, Fault, Reply, ScriptedServer
from tests.waiting import wait_until

RAY_MISSING = importlib.util.find_spec("ray") is None


def _policy(request: ChatRequest) -> Reply | Fault:
    """Answers with the context's length; a question containing 'boom' gets a provider error."""
    if "boom" in json.dumps(request.messages):
        return Fault(400, "scripted refusal")
    return Reply("```repl\nFINAL(len(context))\n```")


def _jobs(tmp_path: Path, *, boom: bool = True, n: int = 4) -> Path:
    (tmp_path / "doc.txt").write_text("twelve chars")
    lines = [{"id": "file", "question": "how long?", "context_path": "doc.txt"}]
    lines += [{"question": f"how long {i}?", "context": "x" * (i + 1)} for i in range(n - 1)]
    if boom:
        lines.append({"id": "bad", "question": "boom", "context": "abc"})
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _options(server: ScriptedServer, **extra: Any) -> dict[str, Any]:
    return {"model": "openai/root", "api_base": server.base_url, "api_key": "x", "max_iterations": 3, **extra}


def _max_overlap(server: ScriptedServer, skip: int = 0, model: str | None = None) -> int:
    """The most requests (of `model`) the server was handling at one time, after its first `skip`."""
    edges = []
    for record in server.records()[skip:]:
        if model is not None and record.model != model:
            continue
        assert record.finished_at is not None
        edges += [(record.received_at, 1), (record.finished_at, -1)]
    now = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        now += step
        peak = max(peak, now)
    return peak


def test_local_batch_writes_rows_and_resumes(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("root", _policy)
    jobs, out = _jobs(tmp_path), tmp_path / "out" / "results.jsonl"
    rows = run_batch(jobs, out, _options(scripted_server), concurrency=3, progress=False)
    assert {i: r["answer"] for i, r in rows.items()} == {"file": "12", "1": "1", "2": "2", "3": "3", "bad": None}
    assert rows["bad"]["status"] == "provider_error" and "scripted refusal" in rows["bad"]["error"]
    assert len(scripted_server.records()) == 5

    scripted_server.reset()
    scripted_server.script("root", lambda request: "```repl\nFINAL('fixed')\n```")
    again = run_batch(jobs, out, _options(scripted_server), concurrency=3, progress=False)
    assert len(scripted_server.records()) == 1  # only the failed job ran again
    assert again["bad"]["answer"] == "fixed" and again["file"]["answer"] == "12"
    assert len(out.read_text().splitlines()) == 6  # rows are appended; the newest row of an id wins


def test_batch_wide_in_flight_limit_holds_at_the_server(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.05))
    jobs = _jobs(tmp_path, boom=False, n=6)
    run_batch(jobs, tmp_path / "r.jsonl", _options(scripted_server, max_in_flight=1), concurrency=6, progress=False)
    assert len(scripted_server.records()) == 6
    assert _max_overlap(scripted_server) == 1


def test_batch_call_budget_holds_and_cut_jobs_run_again(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("root", _policy)
    jobs, out = _jobs(tmp_path, boom=False, n=4), tmp_path / "r.jsonl"
    rows = run_batch(jobs, out, _options(scripted_server), concurrency=1, max_calls=2, progress=False)
    assert len(scripted_server.records()) == 2
    cut = sorted(i for i, r in rows.items() if r["status"] == "max_calls")
    assert len(cut) == 2 and "the batch's limit of 2 model calls was reached" in rows[cut[0]]["error"]
    again = run_batch(jobs, out, _options(scripted_server), concurrency=1, max_calls=2, progress=False)
    assert len(scripted_server.records()) == 4  # only the two cut jobs ran again
    assert all(r["status"] == "completed" for r in again.values())


def _cost_budget_sweep(server: ScriptedServer, tmp_path: Path, ray_address: str | None) -> None:
    """Six one-call jobs on a priced model under a batch budget of about three: the jobs together never
    spend past it (by rlm's count and by the server's), the cut ones name the batch's limit, a re-run
    with more budget does only those."""
    from rlm.models.pricing import price
    from rlm.scripted.wire import prompt_tokens
    from rlm.tokens import count_tokens

    server.script("gpt-4o-mini", lambda request: Reply("```repl\nFINAL(len(context))\n```"))
    options = _options(server, model="openai/gpt-4o-mini", max_completion_tokens=50)
    (tmp_path / "one").mkdir()
    one = run_batch(_jobs(tmp_path / "one", boom=False, n=1), tmp_path / "one.jsonl", options, progress=False)
    cost = one["file"]["cost_usd"]
    assert cost > 0
    server.reset()
    server.script("gpt-4o-mini", lambda request: Reply("```repl\nFINAL(len(context))\n```"))
    jobs, out, budget = _jobs(tmp_path, boom=False, n=6), tmp_path / "r.jsonl", 3.5 * cost
    rows = run_batch(jobs, out, options, concurrency=2, max_cost=budget, ray_address=ray_address, progress=False)
    billed = sum(price(r.model, prompt_tokens(r.messages), count_tokens(r.sent_text))[0] for r in server.records())
    assert sum(r["cost_usd"] for r in rows.values()) <= budget and billed <= budget
    done = {i for i, r in rows.items() if r["status"] == "completed"}
    cut = {i for i, r in rows.items() if r["status"] != "completed"}
    assert len(done) >= 2 and cut
    assert all(rows[i]["status"] == "max_cost" and rows[i]["error"].startswith("the batch's limit of $") for i in cut)
    before = len(server.records())
    again = run_batch(jobs, out, options, concurrency=2, max_cost=10 * cost, ray_address=ray_address, progress=False)
    assert len(server.records()) - before == len(cut)  # only the cut jobs ran again
    assert all(r["status"] == "completed" for r in again.values())


def test_batch_cost_budget_holds_and_cut_jobs_run_again(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    _cost_budget_sweep(scripted_server, tmp_path, None)


def _bench_sweep_budgets(server: ScriptedServer, tmp_path: Path, ray_address: str | None) -> None:
    """rlm bench with --sweep-max-calls, then --sweep-max-cost (the scripted solver on priced model
    names, about $0.0008 and 3 calls per task): neither is passed, counted at the server; the tasks they
    cut name the sweep's limit, and a re-run with room runs only those."""
    from rlm.bench import run_bench
    from rlm.models.pricing import price
    from rlm.scripted.solvers import POLICIES, ROOT_MODEL, SUB_MODEL
    from rlm.scripted.wire import prompt_tokens
    from rlm.tokens import count_tokens

    server.script("gpt-4o-mini", POLICIES[ROOT_MODEL])
    server.script("gpt-4o", POLICIES[SUB_MODEL])
    common = {"model": "openai/gpt-4o-mini", "sub_model": "openai/gpt-4o", "n": 4, "length": 8192}
    common |= {"concurrency": 2, "api_base": server.base_url, "api_key": "x", "progress": False}
    common |= {"max_iterations": 4, "max_completion_tokens": 300, "ray_address": ray_address}

    calls = run_bench("oolong", out_dir=tmp_path / "calls", sweep_max_calls=5, **common)
    assert len(server.records()) <= 5
    cut = [r for r in calls if r.status != "completed"]
    assert cut and all(r.error.startswith("the sweep's limit of 5 model calls") for r in cut)
    kept = {r.id: r for r in calls if r.status == "completed"}
    again = run_bench("oolong", out_dir=tmp_path / "calls", sweep_max_calls=100, **common)
    assert all(r.status == "completed" for r in again)
    assert all(kept[r.id] == r for r in again if r.id in kept)  # finished tasks were not run again

    server.reset()
    server.script("gpt-4o-mini", POLICIES[ROOT_MODEL])
    server.script("gpt-4o", POLICIES[SUB_MODEL])
    budget = 0.0025
    costs = run_bench("oolong", out_dir=tmp_path / "cost", sweep_max_cost=budget, max_cost=0.0012, **common)
    billed = sum(price(r.model, prompt_tokens(r.messages), count_tokens(r.sent_text))[0] for r in server.records())
    assert sum(r.cost_usd for r in costs) <= budget and billed <= budget
    cut = [r for r in costs if r.status != "completed"]
    assert cut and all(r.error.startswith("the sweep's limit of $0.0025") for r in cut)
    again = run_bench("oolong", out_dir=tmp_path / "cost", sweep_max_cost=1.0, max_cost=0.0012, **common)
    assert all(r.status == "completed" for r in again)


def test_bench_sweep_budgets_hold_and_cut_tasks_run_again(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    _bench_sweep_budgets(scripted_server, tmp_path, None)


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
    scripted_server.script("root", _policy)
    jobs, out = _jobs(tmp_path, boom=False, n=2), tmp_path / "r.jsonl"
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
        run_batch(_jobs(tmp_path), tmp_path / "r.jsonl", _options(scripted_server), ray_address="local", progress=False)
    assert not scripted_server.records()


# ---------------------------------------------------------------------------------------------------
# On a real local Ray


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    if RAY_MISSING:
        pytest.skip("Ray is not installed (pip install 'rlm-stream[ray]')")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _comparable(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i: {k: v for k, v in r.items() if k != "wall_time_s"} for i, r in rows.items()}


def test_ray_and_local_give_the_same_rows(local_ray: Any, scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("root", _policy)
    jobs = _jobs(tmp_path)
    local = run_batch(jobs, tmp_path / "local.jsonl", _options(scripted_server), progress=False)
    on_ray = run_batch(jobs, tmp_path / "ray.jsonl", _options(scripted_server), ray_address="local", progress=False)
    assert _comparable(on_ray) == _comparable(local)
    assert on_ray["bad"]["status"] == "provider_error"  # one job failing alone is its own row
    assert len(scripted_server.records()) == 10


def test_cluster_limiter_holds_across_workers(local_ray: Any, scripted_server: ScriptedServer, tmp_path: Path) -> None:
    from rlm import ray_backend

    scripted_server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.1))
    options = _options(scripted_server, max_in_flight=1)
    out = ResultsFile(tmp_path / "r.jsonl")
    limiter = ray_backend.start_limiter(options)
    run_on_ray(load_jobs(_jobs(tmp_path, boom=False, n=6)), out, options, limiter=limiter)
    assert [row["status"] for row in out.written] == ["completed"] * 6
    assert len(scripted_server.records()) == 6
    assert _max_overlap(scripted_server) == 1
    assert local_ray.get(limiter.stats.remote()) == {"grants": 6, "peak_in_flight": 1}


def test_cluster_token_rate_holds_across_workers(
    local_ray: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """--tpm through the limiter actor, with a 2 s window: each prompt is about P tokens and the limit
    2.5 P, so at no time may more than two prompts have reached the server within one window."""
    from rlm import ray_backend
    from rlm.scripted.wire import prompt_tokens

    scripted_server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```"))
    warm = ResultsFile(tmp_path / "warm.jsonl")
    (tmp_path / "warm").mkdir()
    run_on_ray(load_jobs(_jobs(tmp_path / "warm", boom=False, n=1)), warm, _options(scripted_server))
    prompt = prompt_tokens(scripted_server.records()[0].messages)
    scripted_server.reset()
    scripted_server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```"))
    options, period = _options(scripted_server, tpm=int(2.5 * prompt)), 2.0
    out, limiter = ResultsFile(tmp_path / "r.jsonl"), ray_backend.start_limiter(options, period=period)
    run_on_ray(load_jobs(_jobs(tmp_path, boom=False, n=5)), out, options, limiter=limiter)
    assert [row["status"] for row in out.written] == ["completed"] * 5
    arrivals = sorted(r.received_at for r in scripted_server.records())
    assert len(arrivals) == 5
    assert max(sum(1 for u in arrivals if t <= u < t + period) for t in arrivals) <= 2


def _ray_job_pids() -> list[int]:
    """This test's Ray workers (children of the raylet this process started) running a batch job now:
    Ray titles them `ray::run_job`."""

    def parent(pid: str | int) -> int:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])

    pids = []
    for entry in Path("/proc").iterdir():
        try:
            running = entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::run_job")
            if running and parent(parent(entry.name)) == os.getpid():
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def test_a_job_whose_worker_dies_is_retried_then_recorded_failed_and_the_batch_goes_on(
    local_ray: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    from rlm import ray_backend

    def policy(request: ChatRequest) -> Reply:
        if "doomed" in json.dumps(request.messages):  # this job's worker is killed at each attempt
            return Reply("```repl\nFINAL('late')\n```", ttft=120)
        return Reply("```repl\nFINAL(len(context))\n```")

    scripted_server.script("root", policy)
    jobs_path = _jobs(tmp_path, boom=False, n=3)
    with jobs_path.open("a") as f:
        f.write(json.dumps({"id": "doomed", "question": "doomed", "context": "abcd"}) + "\n")
    jobs, out, options = load_jobs(jobs_path), ResultsFile(tmp_path / "r.jsonl"), _options(scripted_server)
    batch = threading.Thread(target=run_on_ray, args=(jobs, out, options))
    batch.start()
    doomed = lambda: [r for r in scripted_server.records() if "doomed" in json.dumps(r.messages)]  # noqa: E731
    for attempt in range(1, ray_backend.MAX_RETRIES + 2):
        assert wait_until(lambda: len(doomed()) == attempt and len(_ray_job_pids()) == 1, 120)  # noqa: B023
        os.kill(_ray_job_pids()[0], signal.SIGKILL)
    batch.join(timeout=120)
    assert not batch.is_alive()
    rows = {row["id"]: row for row in out.written}
    assert {i: r["answer"] for i, r in rows.items() if i != "doomed"} == {"file": "12", "1": "1", "2": "2"}
    assert rows["doomed"]["status"] == "error" and "Worker" in rows["doomed"]["error"]
    assert len(doomed()) == 1 + ray_backend.MAX_RETRIES  # the first attempt and every retry reached the server
    assert wait_until(lambda: all(r.outcome == "disconnected" for r in doomed()), 120)

    scripted_server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```"))
    again = ResultsFile(out.path)
    run_on_ray(jobs, again, options)  # a re-run does only the failed job
    assert [(row["id"], row["answer"]) for row in again.written] == [("doomed", "4")]


def test_batch_cost_budget_holds_across_ray_workers(
    local_ray: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    _cost_budget_sweep(scripted_server, tmp_path, "local")


def _ctrl_c(command: list[str], *, when: Callable[[], None]) -> tuple[int, str]:
    """Start an `rlm ... --ray` driver process, let `when` wait for the moment, then press Ctrl-C
    (SIGINT) on it: its exit code and stderr. The driver never outlives the test."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        when()
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    return driver.returncode, stderr


def test_ctrl_c_on_the_driver_cancels_the_ray_jobs_and_keeps_the_finished_rows(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """`rlm batch --ray` (its own embedded Ray, in a subprocess): two jobs finish, two hang at the
    server; Ctrl-C ends the batch with exit 130, keeps the two rows, and the hanging calls are closed."""
    if RAY_MISSING:
        pytest.skip("Ray is not installed (pip install 'rlm-stream[ray]')")

    def policy(request: ChatRequest) -> Reply:
        if "hang" in json.dumps(request.messages):
            return Reply("```repl\nFINAL('late')\n```", ttft=300)
        return Reply("```repl\nFINAL(len(context))\n```")

    scripted_server.script("root", policy)
    lines = [{"id": f"hang{i}", "question": "hang", "context": "x"} for i in range(2)]
    lines += [{"id": f"quick{i}", "question": "quick", "context": "x" * (i + 1)} for i in range(2)]
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "r.jsonl"
    jobs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    command = [sys.executable, "-m", "rlm", "batch", str(jobs), "--out", str(out), "--ray", "--concurrency", "4"]
    command += ["--model", "openai/root", "--api-base", scripted_server.base_url, "--api-key", "x"]

    def hung() -> list[Any]:
        return [r for r in scripted_server.records() if "hang" in json.dumps(r.messages)]

    def two_done_two_hanging() -> None:
        in_progress = lambda: [r for r in hung() if r.outcome == "in_progress"]  # noqa: E731
        assert wait_until(lambda: out.is_file() and len(read_results(out)) == 2 and len(in_progress()) == 2, 120)

    returncode, stderr = _ctrl_c(command, when=two_done_two_hanging)
    assert returncode == 130, stderr
    assert "finished jobs are kept" in stderr
    assert {i: r["answer"] for i, r in read_results(out).items()} == {"quick0": "1", "quick1": "2"}
    assert wait_until(lambda: all(r.outcome == "disconnected" for r in hung()), 120)  # cancelled on the cluster


def test_bench_sweep_budgets_hold_across_ray_workers(
    local_ray: Any, scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    _bench_sweep_budgets(scripted_server, tmp_path, "local")


def test_ctrl_c_on_a_bench_sweep_on_ray_keeps_the_finished_tasks(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """`rlm bench --ray` in a subprocess, one worker: once a task has finished the root model hangs;
    Ctrl-C then ends the sweep with exit 130, the finished task's result stays, the hanging call is closed."""
    if RAY_MISSING:
        pytest.skip("Ray is not installed (pip install 'rlm-stream[ray]')")
    from rlm.scripted.solvers import POLICIES, ROOT_MODEL, SUB_MODEL

    out = tmp_path / "sweep"
    hang = threading.Event()

    def root(request: ChatRequest) -> Reply:
        return Reply("never sent", ttft=300) if hang.is_set() else Reply(POLICIES[ROOT_MODEL](request))

    scripted_server.script(ROOT_MODEL, root)
    scripted_server.script(SUB_MODEL, POLICIES[SUB_MODEL])
    command = [sys.executable, "-m", "rlm", "bench", "oolong", "--n", "3", "--length", "8192", "--concurrency", "1"]
    command += ["--out", str(out), "--ray", "--model", f"openai/{ROOT_MODEL}", "--sub-model", f"openai/{SUB_MODEL}"]
    command += ["--api-base", scripted_server.base_url, "--api-key", "x", "--max-iterations", "4"]

    def hanging() -> list[Any]:
        return [r for r in scripted_server.records(ROOT_MODEL) if r.planned_text == "never sent"]

    def one_done_then_hanging() -> None:
        assert wait_until(lambda: (out / "results").is_dir() and any((out / "results").iterdir()), 120)
        hang.set()
        assert wait_until(lambda: any(r.outcome == "in_progress" for r in hanging()), 120)

    returncode, stderr = _ctrl_c(command, when=one_done_then_hanging)
    assert returncode == 130, stderr
    assert "finished tasks are kept" in stderr
    saved = list((out / "results").iterdir())
    assert 1 <= len(saved) < 3 and all(json.loads(p.read_text())["status"] == "completed" for p in saved)
    assert wait_until(lambda: all(r.outcome == "disconnected" for r in hanging()), 120)  # cancelled on the cluster


def test_bench_on_ray_gives_the_local_rows(local_ray: Any, scripted_server: ScriptedServer, tmp_path: Path) -> None:
    from rlm.bench import run_bench
    from rlm.scripted.solvers import install

    root, sub = install(scripted_server)
    common = {"model": f"openai/{root}", "sub_model": f"openai/{sub}", "n": 3, "length": 8192, "concurrency": 2}
    common |= {"api_base": scripted_server.base_url, "api_key": "x", "progress": False, "max_iterations": 4}
    local = run_bench("oolong", out_dir=tmp_path / "local", **common)
    before = len(scripted_server.records())
    on_ray = run_bench("oolong", out_dir=tmp_path / "ray", ray_address="local", max_in_flight=1, **common)
    keep = ("id", "score", "status", "answer", "total_tokens", "sub_calls", "iterations")
    assert [[getattr(r, k) for k in keep] for r in on_ray] == [[getattr(r, k) for k in keep] for r in local]
    assert all(r.status == "completed" for r in on_ray)
    assert len(list((tmp_path / "ray" / "trajectories").iterdir())) == 3  # written by the workers
    for model in (root, sub):  # the limit is per model; both workers' calls went through one limiter
        assert _max_overlap(scripted_server, skip=before, model=model) == 1


@pytest.fixture
def ray_head() -> Iterator[tuple[str, dict[str, str]]]:
    """A `ray start --head` cluster of 2 CPUs (its own session, killed whole afterwards): its address
    and the environment that joins it (token authentication off: the test's processes are all local)."""
    if RAY_MISSING:
        pytest.skip("Ray is not installed (pip install 'rlm-stream[ray]')")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port", "0"]
    command += ["--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"]
    temp = tempfile.mkdtemp(prefix="rlm-ray-")  # short: Ray's socket paths live under it
    command += ["--temp-dir", temp]
    head = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        address, said = None, []
        for line in head.stdout or ():
            said.append(line)
            if match := re.search(r"ray start --address='([^']+)'", line):
                address = match.group(1)
                break
        assert address, "ray start --head did not print its address:\n" + "".join(said)
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_batch_joins_a_cluster_by_address(
    ray_head: tuple[str, dict[str, str]], scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    address, env = ray_head
    scripted_server.script("root", _policy)
    jobs, out = _jobs(tmp_path, n=2), tmp_path / "r.jsonl"
    command = [sys.executable, "-m", "rlm", "batch", str(jobs), "--out", str(out), "--ray", address]
    command += ["--model", "openai/root", "--api-base", scripted_server.base_url, "--api-key", "x"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_results(out)
    assert {i: r["answer"] for i, r in rows.items()} == {"file": "12", "1": "1", "bad": None}
    assert f"batch on Ray ({address})" in done.stderr
    # --ray auto finds the cluster through RAY_ADDRESS, as `ray start` tells drivers to
    auto = [*command[:6], str(tmp_path / "auto.jsonl"), "--ray", "auto", *command[9:]]
    done = subprocess.run(auto, capture_output=True, text=True, env=env | {"RAY_ADDRESS": address}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert {i: r["answer"] for i, r in read_results(tmp_path / "auto.jsonl").items()} == {
        "file": "12",
        "1": "1",
        "bad": None,
    }
