"""Run batch jobs and bench tasks on Ray: an embedded local Ray, or a cluster joined by address.

Jobs go out as specs (`rlm.batch.Job`: a question and a context text or path, never a loaded
context); each worker reads its own context and runs the job with the batch's options. Rows come back
as they finish (ray.wait) and the driver appends them to the results file at once. A job that fails
alone comes back as a failed row; a worker that dies has its job retried elsewhere (max_retries); Ctrl-C
cancels the jobs still running and keeps every row already written. --rpm / --tpm / --max-in-flight hold
across the cluster through one limiter actor that every worker's scheduler consults.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rlm.batch import CostGate, Job, ResultsFile, SweepLimiter, arun_job, batch_limiter, calls_spent, failed_row
from rlm.errors import ConfigError

MAX_RETRIES = 3  # a job whose worker died runs again on another one, this many times


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "--ray needs Ray, which is not installed: pip install 'rlm-stream[ray]' (or pip install ray)"
        ) from exc
    return ray


def connect(address: str | None, num_cpus: int) -> Any:
    """Start an embedded Ray with `num_cpus` workers (address None or 'local'), or join a cluster
    ('auto', 'ray://host:10001', 'host:6379'). Already connected: kept as it is."""
    ray = import_ray()
    if not ray.is_initialized():
        if address in (None, "", "local"):  # "local": a new instance even when RAY_ADDRESS is set
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"cannot join the Ray cluster at {address}: {exc}") from exc
    return ray


class ActorLimiter:
    """`rlm.scheduler.SharedLimiter` over the cluster's limiter actor (used inside each worker).
    With `counts_tokens` (a --tpm is set) each call's prompt is counted here and sent as a number."""

    def __init__(self, actor: Any, counts_tokens: bool = False) -> None:
        self.actor = actor
        self.counts_tokens = counts_tokens

    async def acquire(self, model: str, tokens: Callable[[], int] | None = None) -> object:
        ticket = uuid.uuid4().hex
        counted = tokens() if self.counts_tokens and tokens is not None else 0
        try:
            granted = await self.actor.try_acquire.remote(model, ticket, counted)
        except asyncio.CancelledError:
            self.actor.release.remote(model, ticket)  # abandons the grant, whether or not it was made
            raise
        if granted is None:
            raise calls_spent(*await self.actor.calls_limit.remote())
        return ticket

    async def release(self, model: str, ticket: object) -> None:
        await self.actor.release.remote(model, ticket)


@functools.cache
def _remote() -> tuple[Any, Any]:
    """The remote job function and limiter actor class (defined once Ray is imported)."""
    ray = import_ray()

    @ray.remote(max_retries=MAX_RETRIES)
    def run_job(job: Job, options: dict[str, Any], limiter: Any) -> dict[str, Any]:
        from rlm.api import RLM
        from rlm.loop import run
        from rlm.scheduler import set_shared_limiter

        set_shared_limiter(ActorLimiter(limiter, bool(options.get("tpm"))) if limiter is not None else None)
        try:
            return run(arun_job(job, RLM(**options)))
        finally:
            set_shared_limiter(None)

    @ray.remote(num_cpus=0)
    class LimiterActor:
        def __init__(self, limits: dict[str, Any]) -> None:
            self.limiter = SweepLimiter(**limits)

        async def try_acquire(self, model: str, ticket: str, tokens: int = 0) -> str | None:
            return await self.limiter.try_acquire(model, ticket, tokens)

        async def calls_limit(self) -> tuple[int | None, str]:
            return self.limiter.max_calls, self.limiter.scope

        async def release(self, model: str, ticket: str) -> None:
            await self.limiter.release(model, ticket)

        async def stats(self) -> dict[str, int]:
            return self.limiter.stats()

    return run_job, LimiterActor


def start_limiter(
    options: dict[str, Any], period: float = 60.0, max_calls: int | None = None, scope: str = "batch"
) -> Any:
    """The cluster-wide limiter actor for --rpm / --tpm / --max-in-flight / --batch-max-calls (None: none)."""
    local = batch_limiter(options, max_calls, period, scope)
    if local is None:
        return None
    _, actor_class = _remote()
    limits = {"max_in_flight": local.max_in_flight, "rpm": local.rpm, "tpm": local.tpm, "period": local.period}
    return actor_class.remote(limits | {"max_calls": local.max_calls, "scope": local.scope})


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

    ray = import_ray()
    run_job, _ = _remote()
    options_ref = ray.put(options)
    run_cap = RLM(**options).settings.max_cost
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
                        out.write(costs.spent_row(job))
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


@functools.cache
def _bench_tasks(suite: str, n: int | None, length: int | None, seed: int) -> list[Any]:
    """A suite's tasks, built once per worker process from the same spec the driver used."""
    from rlm_datasets import load_suite

    return load_suite(suite, n=n, length=length, seed=seed)


@functools.cache
def _remote_bench() -> Any:
    ray = import_ray()

    @ray.remote(max_retries=MAX_RETRIES)
    def run_bench_task(
        spec: tuple[str, int | None, int | None, int, int],
        cfg: dict[str, Any],
        options: dict[str, Any],
        out: str,
        limiter: Any,
    ) -> dict[str, Any]:
        from dataclasses import asdict
        from pathlib import Path

        from rlm.api import RLM
        from rlm.bench import _run_one
        from rlm.loop import run
        from rlm.scheduler import set_shared_limiter

        suite, n, length, seed, index = spec
        task = _bench_tasks(suite, n, length, seed)[index]
        keys = ("model", "sub_model", "api_base", "api_key", "timeout")
        rlm = RLM(**{k: cfg[k] for k in keys}, **options)
        set_shared_limiter(ActorLimiter(limiter, bool(options.get("tpm"))) if limiter is not None else None)
        try:
            return asdict(run(_run_one(task, cfg, rlm, Path(out))))
        finally:
            set_shared_limiter(None)

    return run_bench_task


def bench_runner(
    address: str,
    concurrency: int,
    *,
    tasks: list[Any],
    spec: tuple[str, int | None, int | None, int],
    cfg: dict[str, Any],
    options: dict[str, Any],
    out: Path,
    max_calls: int | None = None,
) -> Callable[..., Awaitable[Any]]:
    """What `rlm bench --ray` awaits instead of running a task here: the task goes out as (suite, n,
    length, seed, index), the worker builds it and writes its trajectory under `out` (a folder every
    node must see, on a cluster), and its result comes back to be saved by the driver. --rpm, --tpm,
    --max-in-flight and --sweep-max-calls hold across the cluster through the limiter actor."""
    from rlm.bench import TaskResult, failed_task, task_identity

    ray = connect(address, num_cpus=concurrency)
    remote = _remote_bench()
    index = {task.id: i for i, task in enumerate(tasks)}
    shared = ray.put(options)
    folder = str(out.resolve())
    limiter = start_limiter(options, max_calls=max_calls, scope="sweep")

    async def run_task(task: Any, max_cost: float | None = None) -> TaskResult:
        """`max_cost`: the task's loan of the sweep's cost budget, as its run's own max_cost."""
        task_options = shared if max_cost is None else options | {"max_cost": max_cost}
        ref = remote.remote((*spec, index[task.id]), cfg, task_options, folder, limiter)
        try:
            return TaskResult(**await ref)
        except asyncio.CancelledError:
            ray.cancel(ref, force=True)
            raise
        except ray.exceptions.RayError as exc:  # the task's workers died past max_retries
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
            return failed_task(task_identity(task, cfg), error, 0.0)

    return run_task
