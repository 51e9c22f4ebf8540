"""`rlm batch` and `rlm bench` sweeps on a real Ray (skipped when Ray is not installed): a local one,
a driver in a subprocess, a cluster started apart; the same rows as a local run, the cluster-wide
limiter counted at the server, workers killed, Ctrl-C on the driver."""

from __future__ import annotations

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

from rlm.batch import ResultsFile, load_jobs, read_results, run_batch, run_on_ray
from rlm.scripted import ChatRequest, Reply, ScriptedServer
from tests.sweeps import (
    RAY_MISSING,
    batch_options,
    bench_sweep_budgets,
    cost_budget_sweep,
    length_or_refusal,
    max_overlap,
    write_jobs,
)
from tests.waiting import wait_until


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
    scripted_server.script("root", length_or_refusal)
    jobs = write_jobs(tmp_path)
    local = run_batch(jobs, tmp_path / "local.jsonl", batch_options(scripted_server), progress=False)
    on_ray = run_batch(
        jobs, tmp_path / "ray.jsonl", batch_options(scripted_server), ray_address="local", progress=False
    )
    assert _comparable(on_ray) == _comparable(local)
    assert on_ray["bad"]["status"] == "provider_error"  # one job failing alone is its own row
    assert len(scripted_server.records()) == 10


def test_cluster_limiter_holds_across_workers(local_ray: Any, scripted_server: ScriptedServer, tmp_path: Path) -> None:
    from rlm import ray_backend

    scripted_server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.1))
    options = batch_options(scripted_server, max_in_flight=1)
    out = ResultsFile(tmp_path / "r.jsonl")
    limiter = ray_backend.start_limiter(options)
    run_on_ray(load_jobs(write_jobs(tmp_path, boom=False, n=6)), out, options, limiter=limiter)
    assert [row["status"] for row in out.written] == ["completed"] * 6
    assert len(scripted_server.records()) == 6
    assert max_overlap(scripted_server) == 1
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
    run_on_ray(load_jobs(write_jobs(tmp_path / "warm", boom=False, n=1)), warm, batch_options(scripted_server))
    prompt = prompt_tokens(scripted_server.records()[0].messages)
    scripted_server.reset()
    scripted_server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```"))
    options, period = batch_options(scripted_server, tpm=int(2.5 * prompt)), 2.0
    out, limiter = ResultsFile(tmp_path / "r.jsonl"), ray_backend.start_limiter(options, period=period)
    run_on_ray(load_jobs(write_jobs(tmp_path, boom=False, n=5)), out, options, limiter=limiter)
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
    jobs_path = write_jobs(tmp_path, boom=False, n=3)
    with jobs_path.open("a") as f:
        f.write(json.dumps({"id": "doomed", "question": "doomed", "context": "abcd"}) + "\n")
    jobs, out, options = load_jobs(jobs_path), ResultsFile(tmp_path / "r.jsonl"), batch_options(scripted_server)
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
    cost_budget_sweep(scripted_server, tmp_path, "local")


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
    bench_sweep_budgets(scripted_server, tmp_path, "local")


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
        assert max_overlap(scripted_server, skip=before, model=model) == 1


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
    scripted_server.script("root", length_or_refusal)
    jobs, out = write_jobs(tmp_path, n=2), tmp_path / "r.jsonl"
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
