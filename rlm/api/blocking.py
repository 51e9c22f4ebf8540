"""A coroutine run to its end from sync code: what gives `RLM.query` its blocking face.

Outside an event loop it runs on rlm's own loop (rlm/loop.py). Inside a running one (a Jupyter cell)
that loop is busy running the caller, so the coroutine runs on a private loop in a worker thread, and
an interrupt in the caller's thread cancels it there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from rlm.loop import run as run_loop

T = TypeVar("T")


def blocking(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, also inside a running event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_loop(start())
    return _run_in_thread(start)


def _run_in_thread(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run on a private event loop in a worker thread (the caller's loop is busy running this cell).

    A KeyboardInterrupt in the caller's thread (a notebook's interrupt) cancels the run on its loop (a
    query then ends cleanly with status `interrupted`); the thread is always waited for.
    """
    box: dict[str, Any] = {}
    started, finished = threading.Event(), threading.Event()

    async def main() -> T:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await start()

    def target() -> None:
        try:
            box["result"] = run_loop(main())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc
        finally:
            started.set()
            finished.set()

    thread = threading.Thread(target=target, name="rlm-query", daemon=True)
    thread.start()
    while True:  # an Event, not Thread.join: an interrupted join can wrongly report the thread dead
        try:
            if finished.wait(0.1):
                break
        except KeyboardInterrupt:
            started.wait()
            if "task" in box:
                box["loop"].call_soon_threadsafe(box["task"].cancel)
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
