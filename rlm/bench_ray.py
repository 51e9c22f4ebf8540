"""`rlm bench --ray`: the sweep's tasks run on Ray workers, each built there from the suite's spec,
its result sent back to the driver (which saves it, as for a task run locally)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rlm.bench_task import TaskResult, failed_task, run_task, task_identity
from rlm.ray_backend import MAX_RETRIES, ActorLimiter, connect, import_ray, start_limiter


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
        from rlm.loop import run
        from rlm.scheduler import set_shared_limiter

        suite, n, length, seed, index = spec
        task = _bench_tasks(suite, n, length, seed)[index]
        keys = ("model", "sub_model", "api_base", "api_key", "timeout")
        rlm = RLM(**{k: cfg[k] for k in keys}, **options)
        set_shared_limiter(ActorLimiter(limiter, bool(options.get("tpm"))) if limiter is not None else None)
        try:
            return asdict(run(run_task(task, cfg, rlm, Path(out))))
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
    ray = connect(address, num_cpus=concurrency)
    remote = _remote_bench()
    index = {task.id: i for i, task in enumerate(tasks)}
    shared = ray.put(options)
    folder = str(out.resolve())
    limiter = start_limiter(options, max_calls=max_calls, scope="sweep")

    async def run_remote(task: Any, max_cost: float | None = None) -> TaskResult:
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

    return run_remote
