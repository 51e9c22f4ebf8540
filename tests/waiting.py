"""Waiting in tests for something to happen (a disconnect recorded, a worker gone), within a generous
bound: the bound only keeps a broken test from hanging, it never times the code under test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_until(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    """Whether `check` comes to hold within `seconds`, polling from a thread that may block."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def eventually(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    """`wait_until` inside an event loop, which keeps running while it waits."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
