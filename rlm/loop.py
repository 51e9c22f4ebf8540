"""The event loop rlm creates for its own runs (`RLM.query`, `rlm query`, `rlm bench`).

uvloop where it is installed: every model call goes through litellm, which spends about 3 ms of
Python CPU per call on the one event loop, and uvloop's C loop and transports take a quarter of that
off (benchmarks/README.md). `RLM.aquery` runs on the caller's loop, whatever it is.
`RLM_LOOP=asyncio` picks asyncio's own loop, e.g. when debugging with asyncio's debug mode.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from rlm.errors import ConfigError

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None for asyncio's default (no uvloop, or RLM_LOOP=asyncio)."""
    choice = os.environ.get("RLM_LOOP", "").strip().lower()
    if choice not in ("", "uvloop", "asyncio"):
        raise ConfigError(f"RLM_LOOP={choice!r} is not a loop rlm knows: use 'uvloop' or 'asyncio'")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("RLM_LOOP=uvloop, but uvloop is not installed: pip install uvloop") from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on the loop `loop_factory` picks."""
    try:
        factory = loop_factory()
    except ConfigError:
        main.close()  # never started: no "coroutine was never awaited" warning after the message
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
