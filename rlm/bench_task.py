"""One task of `rlm bench`: answered through the RLM (or one direct call), scored, and its result
record as saved under `results/<id>.json`, locally or on a Ray worker alike."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm.errors import ConfigError

ERROR_STATUS = "error"  # the harness could not get any answer


@dataclass
class TaskResult:
    """One task's outcome: what was answered, how it scored and what it cost."""

    id: str
    suite: str
    method: str
    model: str
    sub_model: str | None
    score: float
    status: str
    answer: str | None
    error: str | None
    cost_usd: float
    cost_complete: bool
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    sub_calls: int
    iterations: int
    wall_time_s: float
    meta: dict[str, Any]
    gold: Any = None  # beside the raw answer and what the scorer read from it, so a 0 can be diagnosed
    parsed: Any = None
    lenient_score: float | None = None  # the forgiving reading, a separate column; never the score


def task_identity(task: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """The fields of a result that come from the task and the run's settings, not from answering it."""
    base = {"id": task.id, "suite": task.suite, "method": cfg["method"], "model": cfg["model"], "gold": task.gold}
    return base | {"sub_model": cfg["sub_model"] if cfg["method"] == "rlm" else None, "meta": task.summary()}


def failed_task(base: dict[str, Any], error: str, wall_time_s: float) -> TaskResult:
    """The result of a task that raised instead of answering: nothing spent is known, so it re-runs on resume.

    `base` is the task's `task_identity`."""
    return TaskResult(
        **base,
        score=0.0,
        status=ERROR_STATUS,
        answer=None,
        error=error,
        cost_usd=0.0,
        cost_complete=False,
        prompt_tokens=0,
        completion_tokens=0,
        total_tokens=0,
        sub_calls=0,
        iterations=0,
        wall_time_s=wall_time_s,
    )


def file_stem(task_id: str) -> str:
    """The name a task's result and trajectory files take: its id, with only safe characters."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task_id)


async def run_task(task: Any, cfg: dict[str, Any], rlm: Any, out: Path) -> TaskResult:
    """Answer one task with `rlm` (its trajectory written under `out`) and score it. A task that raised
    becomes a failed result, to be run again on resume; a ConfigError is raised, as every task would hit it."""
    from rlm_datasets.scoring import parsed_answer, score, score_lenient

    name = file_stem(task.id)
    trace = out / "trajectories" / f"{name}.jsonl"
    base = task_identity(task, cfg)
    start = time.monotonic()
    try:
        if cfg["method"] == "direct":
            result = await rlm.adirect(task.context, task.question, trace=trace)
            base["meta"] = base["meta"] | {"truncated": bool(result.trajectory[0].get("truncated"))}
        else:
            result = await rlm.aquery(task.context, task.question, trace=trace)
        usage, answer = result.usage, result.answer
        status, error = result.status.value, result.error
        sub_calls, iterations = result.sub_calls, result.iterations
    except ConfigError:
        raise
    except Exception as exc:  # one failed task must not stop the sweep; it is retried on re-run
        return failed_task(base, f"{type(exc).__name__}: {exc}", time.monotonic() - start)
    return TaskResult(
        **base,
        score=score(task, answer),
        parsed=parsed_answer(task, answer),
        lenient_score=score_lenient(task, answer),
        status=status,
        answer=answer,
        error=error,
        cost_usd=usage.cost_usd,
        cost_complete=usage.priced,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        sub_calls=sub_calls,
        iterations=iterations,
        wall_time_s=time.monotonic() - start,
    )


def load_result(path: Path) -> TaskResult | None:
    """A result saved by an earlier run, or None when it is missing or unreadable (the task runs again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return TaskResult(**data)
    except (OSError, ValueError, TypeError):
        return None
