"""`rlm bench`: run a benchmark suite through the RLM (or one direct call) and summarise it.

Each task writes `results/<id>.json` and `trajectories/<id>.jsonl` under the output folder, atomically,
the moment it finishes; a re-run skips tasks that already have a result, so an interrupted sweep
resumes where it stopped (tasks that ended in a provider or harness error are run again). If the first
tasks of a sweep all fail that way, the sweep stops with that error instead of failing every task (a
wrong --api-base, model or key). --sweep-max-calls and --sweep-max-cost bound the whole sweep (tasks
they cut run again on a re-run), and --rpm / --tpm / --max-in-flight hold across all its tasks. The
summary is `rlm.bench_report`'s. One task is `rlm.bench_task`'s; with --ray the tasks run on Ray workers
(`rlm.bench_ray`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rlm.bench_ray import bench_runner
from rlm.bench_report import write_atomic, write_summary
from rlm.bench_task import ERROR_STATUS, TaskResult, failed_task, file_stem, load_result, run_task, task_identity
from rlm.errors import ConfigError, ProviderError
from rlm.loop import run as run_loop
from rlm.sweep import limit_prefix

RETRY_STATUSES = frozenset({ERROR_STATUS, "provider_error", "interrupted"})  # run again on resume
FAIL_FAST = 3  # stop the sweep when this many first tasks (or all, if fewer) failed and none succeeded
SWEEP = "sweep"  # names the sweep's own budgets in the error of a task they cut


def _cut(result: TaskResult) -> bool:
    """A task the sweep's budget (not its own) stopped: it runs again on resume."""
    return str(result.error).startswith(limit_prefix(SWEEP))


def _to_redo(result: TaskResult) -> bool:
    return result.status in RETRY_STATUSES or _cut(result)


def _with_max_cost(rlm: Any, max_cost: float) -> Any:
    """`rlm` with its own max_cost lowered to a loan of the sweep's budget."""
    import copy

    lowered = copy.copy(rlm)
    lowered.settings = rlm.settings.updated(max_cost=max_cost)
    return lowered


class BenchAborted(ProviderError):
    """The first tasks of a sweep all failed with provider or harness errors, so the sweep stopped."""


def _check_run_file(out: Path, run: dict[str, Any]) -> None:
    """Refuse to mix results of different settings in one folder (resuming needs the same run)."""
    path = out / "run.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        keys = ("suite", "method", "model", "sub_model", "length", "seed")
        changed = [k for k in keys if before.get(k) != run.get(k)]
        if changed:
            raise ConfigError(
                f"{out} holds a run with different {', '.join(changed)}; use another --out folder to "
                "start a new run, or the same options to resume this one."
            )
    write_atomic(path, json.dumps(run, indent=2))


async def arun_bench(
    suite: str,
    *,
    model: str,
    sub_model: str | None = None,
    n: int | None = None,
    length: int | str | None = None,
    concurrency: int = 4,
    out_dir: str | Path = "bench-out",
    method: str = "rlm",
    api_base: str | None = None,
    api_key: str | None = None,
    seed: int = 0,
    timeout: float | None = None,
    progress: bool = True,
    ray_address: str | None = None,
    sweep_max_calls: int | None = None,
    sweep_max_cost: float | None = None,
    **rlm_options: Any,
) -> list[TaskResult]:
    """Run (or resume) a sweep and return every task's result, including ones from earlier runs.
    With `ray_address` ('local' for an embedded Ray) the tasks run on Ray workers (rlm.ray_backend)."""
    from rlm_datasets import load_suite, parse_length

    if method not in ("rlm", "direct"):
        raise ConfigError(f"--method must be 'rlm' or 'direct', got {method!r}")
    if concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    size = parse_length(length)
    tasks = load_suite(suite, n=n, length=size, seed=seed)  # bad suite, length or n: fail before writing
    if not tasks:
        raise ConfigError(f"{suite}: no tasks (for a file, check --length against its context_len values)")
    out = Path(out_dir)
    for sub in ("results", "trajectories"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    run = {"suite": suite, "method": method, "model": model, "sub_model": sub_model, "length": size, "seed": seed}
    _check_run_file(out, run | {"n": n, "options": {k: str(v) for k, v in rlm_options.items()}})

    from rlm.api import RLM

    rlm = RLM(model=model, sub_model=sub_model, api_base=api_base, api_key=api_key, timeout=timeout, **rlm_options)
    cfg = run | {"api_base": api_base, "api_key": api_key, "timeout": timeout}
    on_ray = None
    if ray_address:
        spec = (suite, n, size, seed)
        on_ray = bench_runner(
            ray_address,
            concurrency,
            tasks=tasks,
            spec=spec,
            cfg=cfg,
            options=rlm_options,
            out=out,
            max_calls=sweep_max_calls,
        )

    done: dict[str, TaskResult] = {}
    for task in tasks:
        prior = load_result(out / "results" / f"{file_stem(task.id)}.json")
        if prior is not None and not _to_redo(prior):
            done[task.id] = prior
    todo = [t for t in tasks if t.id not in done]
    gate = asyncio.Semaphore(concurrency)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True, soft_wrap=True, highlight=False)
    if progress and done:
        err.print(f"resuming {out}: {len(done)} of {len(tasks)} tasks already done, {len(todo)} to run")
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("score {task.fields[score]:.3f}  ${task.fields[cost]:.4f}"),
        TimeElapsedColumn(),
        console=err,
        disable=not progress,
    )

    def mean_score() -> float:
        return sum(r.score for r in done.values()) / len(done) if done else 0.0

    failed: list[TaskResult] = []  # tasks of this session that ended in a retryable error
    succeeded = 0
    abort: list[BenchAborted] = []
    workers: list[asyncio.Task[None]] = []

    from rlm.scheduler import set_shared_limiter
    from rlm.sweep import CostGate, batch_limiter

    costs = CostGate.for_batch(sweep_max_cost, rlm.settings.limits.max_cost, concurrency, SWEEP)
    settled = asyncio.Event()  # replaced at each settlement: wakes the tasks waiting for a loan
    # on Ray the limiter is an actor (bench_runner); here one object that every task's runs consult
    limiter = None if on_ray else batch_limiter(rlm_options, sweep_max_calls, scope=SWEEP)

    async def with_loan(task: Any, costs: CostGate) -> TaskResult:
        nonlocal settled
        while (loan := costs.lend()) == 0.0:
            await settled.wait()
        if loan is None:
            failed = failed_task(task_identity(task, cfg), costs.spent_error(), 0.0)
            return replace(failed, status="max_cost")
        result: TaskResult | None = None
        try:
            result = await (on_ray(task, loan) if on_ray else run_task(task, cfg, _with_max_cost(rlm, loan), out))
        finally:
            spent, status, error = (result.cost_usd, result.status, result.error) if result else (0.0, "", None)
            error = costs.settle(loan, spent, status, error, rlm.settings.limits.max_cost)
            settled.set()
            settled = asyncio.Event()
        return replace(result, error=error)

    async def worker(task: Any, bar_id: Any) -> None:
        nonlocal succeeded
        async with gate:
            if costs is None:
                result = await (on_ray(task) if on_ray else run_task(task, cfg, rlm, out))
            else:
                result = await with_loan(task, costs)
        write_atomic(out / "results" / f"{file_stem(task.id)}.json", json.dumps(asdict(result), indent=2))
        done[task.id] = result
        cost = sum(r.cost_usd for r in done.values())
        bar.update(bar_id, advance=1, score=mean_score(), cost=cost)
        if _cut(result):
            return  # the sweep's own budget, not a sign that the model or endpoint is wrong
        if result.status not in RETRY_STATUSES:
            succeeded += 1
            return
        failed.append(result)
        if not succeeded and not abort and len(failed) >= min(FAIL_FAST, len(todo)):
            abort.append(
                BenchAborted(
                    f"the first {len(failed)} tasks all failed, so the sweep stopped: "
                    f"{str(failed[0].error).rstrip('. ')}. Check --model, --api-base ({api_base or 'not set'}) "
                    "and the API key; re-run the same command to resume."
                )
            )
            for other in workers:
                if other is not asyncio.current_task():
                    other.cancel()

    with bar:
        bar_id = bar.add_task(
            f"{suite} ({method})",
            total=len(tasks),
            completed=len(done),
            score=mean_score(),
            cost=sum(r.cost_usd for r in done.values()),
        )
        previous = set_shared_limiter(limiter) if limiter is not None else None
        workers.extend(asyncio.ensure_future(worker(t, bar_id)) for t in todo)
        try:
            outcomes = await asyncio.gather(*workers, return_exceptions=True)
        except asyncio.CancelledError:  # Ctrl-C: stop the tasks in flight, keep what finished
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            outcomes = None
        finally:
            if limiter is not None:
                set_shared_limiter(previous)
    results = [done[t.id] for t in tasks if t.id in done]
    if outcomes is None:
        if results:
            write_summary(results, out, show=False)
        err.print(f"{len(results)} of {len(tasks)} tasks are saved in {out}")
        raise asyncio.CancelledError
    if results:
        write_summary(results, out, show=progress and not abort)
    if abort:
        raise abort[0]
    for outcome in outcomes:  # a ConfigError (e.g. local-only refused the endpoint) or a harness bug
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome
    retry = [r for r in results if _to_redo(r)]
    if progress:
        if retry:
            err.print(
                f"{len(retry)} of {len(tasks)} tasks did not finish ({retry[0].status}: {retry[0].error}); "
                "re-run the same command to run them"
            )
        err.print(f"results in {out}: summary.csv, summary.json, summary.png, results/, trajectories/")
    return results


def run_bench(suite: str, **kwargs: Any) -> list[TaskResult]:
    """Blocking `arun_bench` (what `rlm bench` calls). Ctrl-C keeps every finished task on disk."""
    return run_loop(arun_bench(suite, **kwargs))
