"""`rlm batch`: one question per line of a JSONL file, many runs, locally or on Ray (rlm.ray_backend).

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
import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm.errors import ConfigError

RETRY_STATUSES = frozenset({"error", "provider_error", "interrupted"})  # run again on resume
BATCH_CALLS_SPENT = "the batch's limit of"  # runs cut by the batch's budgets also run again on resume


def limit_prefix(scope: str) -> str:
    """How the error of a run cut by a whole batch's (or bench sweep's) budget begins."""
    return f"the {scope}'s limit of"


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


class SweepLimiter:
    """Per-model in-flight, requests-per-`period` and prompt-tokens-per-`period` limits over every run
    of a batch (or, inside a Ray actor, over every worker). Tickets name grants, so a release that
    overtakes its own acquire (a caller cancelled while asking a remote actor) abandons the grant
    instead of leaking it.

    The rates count a call (and its prompt's tokens) from its grant until `period` after it ended, not
    from its grant alone: a provider counts arrivals, and a call may arrive any time between its grant
    and its end (a busy worker, a slow network), so only this count keeps every window at the provider
    within `rpm` and `tpm`. A prompt larger than `tpm` waits for an empty window."""

    def __init__(
        self,
        max_in_flight: int | None = None,
        rpm: int | None = None,
        period: float = 60.0,
        max_calls: int | None = None,
        tpm: int | None = None,
        scope: str = "batch",
    ) -> None:
        self.max_in_flight = max_in_flight
        self.max_calls = max_calls
        self.scope = scope  # named in the error of a run cut by max_calls
        self.rpm = rpm
        self.tpm = tpm
        self.period = period
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._tokens_in_flight: collections.Counter[str] = collections.Counter()
        # per model: (end time, prompt tokens) of the calls that ended within the last period
        self._ended: dict[str, collections.deque[tuple[float, int]]] = collections.defaultdict(collections.deque)
        self._granted: dict[str, int] = {}  # ticket -> the tokens it was granted with
        self._abandoned: set[str] = set()
        self._changed = asyncio.Condition()
        self.peak_in_flight = 0
        self.grants = 0

    def _wait_s(self, model: str, tokens: int) -> float | None:
        """0 when a call may go now, the seconds until the rates allow one, None to wait for a release."""
        if self.max_in_flight is not None and self._in_flight[model] >= self.max_in_flight:
            return None
        if self.rpm is None and self.tpm is None:
            return 0.0
        ended, now = self._ended[model], time.monotonic()
        while ended and now - ended[0][0] >= self.period:
            ended.popleft()
        until_oldest = ended[0][0] + self.period - now if ended else None
        if self.rpm is not None and self._in_flight[model] + len(ended) >= self.rpm:
            return until_oldest
        if self.tpm is not None:
            counted = self._tokens_in_flight[model] + sum(n for _, n in ended)
            if counted and counted + min(tokens, self.tpm) > self.tpm:
                return until_oldest
        return 0.0

    def _spent(self) -> bool:
        return self.max_calls is not None and self.grants >= self.max_calls

    async def acquire(self, model: str, tokens: Callable[[], int] | None = None) -> str:
        """A ticket for one call; BudgetExceeded once the batch's calls are spent."""
        counted = tokens() if self.tpm is not None and tokens is not None else 0
        ticket = await self.try_acquire(model, uuid.uuid4().hex, counted)
        if ticket is None:
            raise calls_spent(self.max_calls, self.scope)
        return ticket

    async def try_acquire(self, model: str, ticket: str, tokens: int = 0) -> str | None:
        """`ticket` once granted (or abandoned by an early release); None when the calls are spent."""
        async with self._changed:
            while not self._spent() and ticket not in self._abandoned and (wait := self._wait_s(model, tokens)) != 0.0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
            if ticket in self._abandoned:
                self._abandoned.discard(ticket)
                return ticket
            if self._spent():
                return None
            self._in_flight[model] += 1
            self._tokens_in_flight[model] += tokens
            self._granted[ticket] = tokens
            self.grants += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight[model])
            return ticket

    async def release(self, model: str, ticket: str) -> None:
        async with self._changed:
            if ticket in self._granted:
                tokens = self._granted.pop(ticket)
                self._in_flight[model] -= 1
                self._tokens_in_flight[model] -= tokens
                self._ended[model].append((time.monotonic(), tokens))
            else:
                self._abandoned.add(ticket)
            self._changed.notify_all()

    def stats(self) -> dict[str, int]:
        return {"grants": self.grants, "peak_in_flight": self.peak_in_flight}


def calls_spent(max_calls: int | None, scope: str = "batch") -> Exception:
    from rlm.errors import BudgetExceeded
    from rlm.types import Status

    return BudgetExceeded(Status.MAX_CALLS, f"{limit_prefix(scope)} {max_calls:,} model calls was reached")


def batch_limiter(
    options: dict[str, Any], max_calls: int | None = None, period: float = 60.0, scope: str = "batch"
) -> SweepLimiter | None:
    """The batch-wide limiter --rpm / --tpm / --max-in-flight / --batch-max-calls ask for (None: none)."""
    rpm, tpm, in_flight = options.get("rpm"), options.get("tpm"), options.get("max_in_flight")
    if not (rpm or tpm or in_flight or max_calls is not None):
        return None
    if max_calls is not None and max_calls < 1:
        raise ConfigError(f"--{scope}-max-calls must be at least 1")
    return SweepLimiter(max_in_flight=in_flight, rpm=rpm, period=period, max_calls=max_calls, tpm=tpm, scope=scope)


class CostGate:
    """One cost budget for a whole batch, kept by the driver. Each job starts with a loan that becomes
    its run's max_cost (which the engine never exceeds: every call reserves its worst case first), and
    settles to what the run spent when it ends, so the jobs together never spend more than `budget`.

    A loan is `run_cap` (the runs' own max_cost, else an even share of the budget among the jobs
    running at once); when less than that is left, a job waits for running ones to settle, and when
    nothing is running the last of the budget is lent. Jobs the budget cut, or could not start, get
    rows that name the batch's limit, so a re-run (with more budget) runs them again.

    A Ray worker that dies takes its spending so far with it: the retried job settles only what its
    last attempt spent."""

    def __init__(self, budget: float, run_cap: float, scope: str = "batch") -> None:
        if budget <= 0:
            raise ConfigError(f"--{scope}-max-cost must be positive")
        self.budget, self.run_cap = budget, min(run_cap, budget)
        self.scope = scope  # "batch", or "sweep" for rlm bench: named in the error of a cut run
        self.spent = 0.0
        self.lent = 0.0

    @classmethod
    def for_batch(
        cls, budget: float | None, run_max_cost: float | None, concurrency: int, scope: str = "batch"
    ) -> CostGate | None:
        if budget is None:
            return None
        return cls(budget, run_max_cost if run_max_cost is not None else budget / max(1, concurrency), scope)

    def lend(self) -> float | None:
        """The next job's loan; 0.0 when it must wait for a running job to settle; None when spent."""
        left = self.budget - self.spent - self.lent
        if left >= self.run_cap - 1e-12:
            loan = self.run_cap
        elif self.lent > 0:
            return 0.0
        elif left > 1e-9:
            loan = left
        else:
            return None
        self.lent += loan
        return loan

    def settle(
        self, loan: float, cost_usd: float, status: str, error: str | None, run_max_cost: float | None
    ) -> str | None:
        """Count what the job spent; returns its error, naming this budget when the loan, below the
        run's own cap, is what cut it."""
        self.lent -= loan
        self.spent += cost_usd
        own_cap = float("inf") if run_max_cost is None else run_max_cost
        if status == "max_cost" and loan < own_cap:
            return f"{limit_prefix(self.scope)} ${self.budget:g} in all left this job ${loan:.4g}: {error}"
        return error

    def settle_row(self, loan: float, row: dict[str, Any], run_max_cost: float | None) -> dict[str, Any]:
        error = self.settle(
            loan, float(row.get("cost_usd") or 0.0), row.get("status", ""), row.get("error"), run_max_cost
        )
        return row | {"error": error}

    def spent_error(self) -> str:
        """The error of a job the budget could not start."""
        return f"{limit_prefix(self.scope)} ${self.budget:g} in all was spent (${self.spent:.4f}) before this started"

    def spent_row(self, job: Job) -> dict[str, Any]:
        return failed_row(job, self.spent_error()) | {"status": "max_cost"}


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
    run_cap = rlm.settings.max_cost
    costs = CostGate.for_batch(max_cost, run_cap, concurrency)
    settled = asyncio.Event()  # replaced at each settlement: wakes the jobs waiting for a loan
    gate = asyncio.Semaphore(concurrency)
    previous = set_shared_limiter(batch_limiter(options, max_calls))

    async def with_loan(job: Job, costs: CostGate) -> dict[str, Any]:
        nonlocal settled
        while (loan := costs.lend()) == 0.0:
            await settled.wait()
        if loan is None:
            return costs.spent_row(job)
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
            ray_backend.run_on_ray(jobs, out, options, limiter=limiter, on_row=on_row, max_cost=max_cost)
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
