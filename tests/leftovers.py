"""What a run left behind: a finished run must own no task still running in its loop."""

from __future__ import annotations

import asyncio


def tasks_left() -> set[asyncio.Task[object]]:
    """Tasks of the running loop besides the current one, but litellm's own logging worker (one per
    loop, by design; not ours)."""
    tasks = asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]
    return {task for task in tasks if "LoggingWorker" not in repr(task.get_coro())}
