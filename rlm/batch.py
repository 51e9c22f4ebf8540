"""`rlm batch`: one question per line of a JSONL file, many runs, locally or on Ray.

Each job line is an object with "question" and exactly one of "context" (the text itself) or
"context_path" (a file, relative to the jobs file's folder), and optionally "id" (default: the line's
index). Results are appended to the output JSONL the moment each job ends, so a re-run skips the jobs
that already have a result there (those that ended in an error, a provider error or an interrupt run
again; the newest row of an id wins).

Jobs travel as these small specs, never as context bytes: whoever runs a job reads its own context.
When --rpm, --tpm or --max-in-flight is given it holds for the whole batch (all runs share one key), through
one `SweepLimiter` consulted by every run's scheduler. --batch-max-cost holds through a `CostGate`
on the driver that lends each job part of what is left as the job's own max_cost.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm.errors import ConfigError
from rlm.sweep import CostGate, batch_limiter

RETRY_STATUSES = frozenset({"error", "provider_error", "interrupted"})  # run again on resume
BATCH_CALLS_SPENT = "the batch's limit of"  # runs cut by the batch's budgets also run again on resume


@dataclass(frozen=True)
class Job:
    """One line of the jobs file, as it travels to whoever runs it."""

    id: str
    question: str
    context: str | None = None
    context_path: str | None = None


def load_jobs(path: str | Path) -> list[Job]:
    """Parse and check every line before anything runs, so a typo on line 900 fails at once."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the jobs file {path}: {exc.strerror or exc}") from exc
    jobs: list[Job] = []
    seen: set[str] = set()
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{index + 1}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not a JSON object ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: each line must be a JSON object with 'question' and a context")
        question = data.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"{where}: 'question' must be a non-empty string")
        has_text, has_path = "context" in data, "context_path" in data
        if has_text == has_path:
            raise ConfigError(f"{where}: give exactly one of 'context' (the text) or 'context_path' (a file)")
        context_path = None
        if has_path:
            if not isinstance(data["context_path"], str):
                raise ConfigError(f"{where}: 'context_path' must be a string (a file path)")
            context_path = str((path.parent / data["context_path"]).resolve())
            if not Path(context_path).is_file():
                raise ConfigError(f"{where}: context file not found: {data['context_path']}")
        elif not isinstance(data["context"], str):
            raise ConfigError(f"{where}: 'context' must be a string (use 'context_path' for a file)")
        job_id = str(data.get("id", index))
        if job_id in seen:
            raise ConfigError(f"{where}: duplicate id {job_id!r}")
        seen.add(job_id)
        jobs.append(Job(job_id, question, data.get("context") if has_text else None, context_path))
    if not jobs:
        raise ConfigError(f"{path}: no jobs")
    return jobs


def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """The newest row per id in a results file (a torn last line from a killed run is ignored)."""
    rows: dict[str, dict[str, Any]] = {}
    path = Path(path)
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows[str(row["id"])] = row
    return rows


def failed_row(job: Job, error: str, wall_time_s: float = 0.0) -> dict[str, Any]:
    """The row of a job that got no run result (its own failure, or its worker lost on Ray)."""
    return {
        "id": job.id,
        "status": "error",
        "answer": None,
        "error": error,
        "cost_usd": 0.0,
        "total_tokens": 0,
        "sub_calls": 0,
        "iterations": 0,
        "wall_time_s": round(wall_time_s, 3),
    }


async def arun_job(job: Job, rlm: Any) -> dict[str, Any]:
    """One job's row. Any failure of this job alone (unreadable file, harness bug) is its row's error."""
    from rlm.context import Context

    start = time.monotonic()
    try:
        context = Context.from_path(job.context_path) if job.context_path else job.context
        result = await rlm.aquery(context, job.question)
    except ConfigError:
        raise  # the whole batch is misconfigured (e.g. local-only refused the endpoint)
    except Exception as exc:
        return failed_row(job, f"{type(exc).__name__}: {exc}", time.monotonic() - start)
    return {
        "id": job.id,
        "status": result.status.value,
        "answer": result.answer,
        "error": result.error,
        "cost_usd": result.usage.cost_usd,
        "total_tokens": result.usage.total_tokens,
        "sub_calls": result.sub_calls,
        "iterations": result.iterations,
        "wall_time_s": round(result.wall_time_s, 3),
    }


def _spent_row(costs: CostGate, job: Job) -> dict[str, Any]:
    """The row of a job the batch's cost budget left no money for: a re-run picks it up."""
    return failed_row(job, costs.spent_error()) | {"status": "max_cost"}


def _retry(row: dict[str, Any]) -> bool:
    return row.get("status") in RETRY_STATUSES or str(row.get("error")).startswith(BATCH_CALLS_SPENT)


class ResultsFile:
    """The output JSONL: which jobs are already done, and one flushed line per finished job."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done = {i for i, row in read_results(self.path).items() if not _retry(row)}
        self.written: list[dict[str, Any]] = []

    def todo(self, jobs: Iterable[Job]) -> list[Job]:
        return [job for job in jobs if job.id not in self.done]

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.written.append(row)


async def arun_local(
    jobs: list[Job],
    out: ResultsFile,
    options: dict[str, Any],
    *,
    concurrency: int = 4,
    max_calls: int | None = None,
    max_cost: float | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Run the jobs not yet done, `concurrency` at a time, in this process."""
    from rlm.api import RLM
    from rlm.scheduler import set_shared_limiter

    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    rlm = RLM(**options)
    run_cap = rlm.settings.limits.max_cost
    costs = CostGate.for_batch(max_cost, run_cap, concurrency)
    settled = asyncio.Event()  # replaced at each settlement: wakes the jobs waiting for a loan
    gate = asyncio.Semaphore(concurrency)
    previous = set_shared_limiter(batch_limiter(options, max_calls))

    async def with_loan(job: Job, costs: CostGate) -> dict[str, Any]:
        nonlocal settled
        while (loan := costs.lend()) == 0.0:
            await settled.wait()
        if loan is None:
            return _spent_row(costs, job)
        row = failed_row(job, "cancelled")
        try:
            row = await arun_job(job, RLM(**(options | {"max_cost": loan})))
        finally:
            row = costs.settle_row(loan, row, run_cap)
            settled.set()
            settled = asyncio.Event()
        return row

    async def one(job: Job) -> None:
        async with gate:
            row = await (arun_job(job, rlm) if costs is None else with_loan(job, costs))
        out.write(row)
        if on_row:
            on_row(row)

    try:
        runs = [asyncio.ensure_future(one(job)) for job in out.todo(jobs)]
        try:
            await asyncio.gather(*runs)
        finally:  # Ctrl-C or a batch-wide error: stop the others; what finished is already written
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
    finally:
        set_shared_limiter(previous)


def run_batch(
    jobs_path: str | Path,
    out_path: str | Path,
    options: dict[str, Any],
    *,
    concurrency: int = 4,
    ray_address: str | None = None,
    max_calls: int | None = None,
    max_cost: float | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) a batch, locally or on Ray when `ray_address` is given ('local' starts an
    embedded Ray with `concurrency` CPUs); returns the newest row of every job in the results file."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rlm.api import RLM
    from rlm.loop import run

    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if max_cost is not None and max_cost <= 0:
        raise ConfigError("--batch-max-cost must be positive")
    jobs = load_jobs(jobs_path)
    RLM(**options)  # a missing model or a bad option fails here, before any job starts
    out = ResultsFile(out_path)
    todo = out.todo(jobs)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    if progress and len(todo) < len(jobs):
        err.print(f"resuming {out.path}: {len(jobs) - len(todo)} of {len(jobs)} jobs already done, {len(todo)} to run")
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} to re-run"),
        TimeElapsedColumn(),
        console=err,
        disable=not progress,
    )
    failed = 0
    with bar:
        where = f"on Ray ({ray_address})" if ray_address else "local"
        bar_id = bar.add_task(f"batch {where}", total=len(jobs), completed=len(jobs) - len(todo), failed=0)

        def on_row(row: dict[str, Any]) -> None:
            nonlocal failed
            failed += _retry(row)
            bar.update(bar_id, advance=1, failed=failed)

        if ray_address:
            from rlm import ray_backend

            ray_backend.connect(ray_address, num_cpus=concurrency)
            limiter = ray_backend.start_limiter(options, max_calls=max_calls)
            run_on_ray(jobs, out, options, limiter=limiter, on_row=on_row, max_cost=max_cost)
        else:
            run(
                arun_local(
                    jobs, out, options, concurrency=concurrency, max_calls=max_calls, max_cost=max_cost, on_row=on_row
                )
            )
    rows = read_results(out.path)
    if progress:
        ids = {job.id for job in jobs}
        retry = [row for i, row in rows.items() if i in ids and _retry(row)]
        if retry:
            err.print(f"{len(retry)} of {len(jobs)} jobs did not finish ({retry[0]['error']}); re-run to run them")
        err.print(f"results in {out.path}")
    return rows


@functools.cache
def _remote_job() -> Any:
    """The remote job function (defined once Ray is imported)."""
    from rlm.ray_backend import MAX_RETRIES, ActorLimiter, import_ray

    @import_ray().remote(max_retries=MAX_RETRIES)
    def run_job(job: Job, options: dict[str, Any], limiter: Any) -> dict[str, Any]:
        from rlm.api import RLM
        from rlm.loop import run
        from rlm.scheduler import set_shared_limiter

        set_shared_limiter(ActorLimiter(limiter, bool(options.get("tpm"))) if limiter is not None else None)
        try:
            return run(arun_job(job, RLM(**options)))
        finally:
            set_shared_limiter(None)

    return run_job


def run_on_ray(
    jobs: list[Job],
    out: ResultsFile,
    options: dict[str, Any],
    *,
    limiter: Any = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    max_cost: float | None = None,
) -> None:
    """Submit every job not yet done and write each row the moment it comes back. The caller connects
    (`connect`) and may pass a limiter actor (`start_limiter`). With `max_cost` (the whole batch's),
    jobs go out as the driver's `CostGate` lends them part of it, an even share per cluster CPU unless
    the runs have a max_cost of their own."""
    from rlm.api import RLM
    from rlm.ray_backend import import_ray

    ray = import_ray()
    run_job = _remote_job()
    options_ref = ray.put(options)
    run_cap = RLM(**options).settings.limits.max_cost
    costs = CostGate.for_batch(max_cost, run_cap, int(ray.cluster_resources().get("CPU", 1)))
    queue = collections.deque(out.todo(jobs))
    pending: dict[Any, tuple[Job, float | None]] = {}
    try:
        while queue or pending:
            while queue:
                loan = None if costs is None else costs.lend()
                if loan == 0.0:
                    break  # wait for a running job to settle
                if costs is not None and loan is None:  # spent: the rest get rows a re-run picks up
                    for job in queue:
                        out.write(_spent_row(costs, job))
                        if on_row:
                            on_row(out.written[-1])
                    queue.clear()
                    break
                job = queue.popleft()
                job_options = options_ref if loan is None else options | {"max_cost": loan}
                pending[run_job.remote(job, job_options, limiter)] = (job, loan)
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job, loan = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as exc:  # raised in the job past its own handling, or lost
                    row = failed_row(job, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}")
                if costs is not None and loan is not None:
                    row = costs.settle_row(loan, row, run_cap)
                out.write(row)
                if on_row:
                    on_row(row)
    finally:  # Ctrl-C or an error on the driver: nothing keeps running on the cluster
        for ref in pending:
            ray.cancel(ref, force=True)
