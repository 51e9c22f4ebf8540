"""Sub-calls launched ahead of a serial `llm_query` loop and taken, in order, by the loop's real calls.

sandbox/prefetch.py finds loops whose prompts can be computed without running user code and asks
the node (`llm_prefetch`) to launch them early; each real call then takes the launched call with
exactly the same request, so the loop keeps its serial semantics and only gets faster.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Awaitable, Callable

SpeculativeKey = tuple[str, str | None, str]  # (prompt as sent, model, role)
Call = tuple[SpeculativeKey, Callable[[], Awaitable[str]]]


class SpeculativeCalls:
    """Sub-calls launched ahead of a serial loop (see sandbox/prefetch.py), taken by the real calls
    with exactly the same request. One set per node: a new loop's set replaces the previous one.

    Calls are launched in loop order, at most `window` ahead of the loop: the calls launched and not
    yet passed by the loop (the one it waits on included) never exceed it. The window starts at
    `FIRST_WINDOW` and doubles each time the loop comes back for its next call (so it got past the
    one before), up to `FULL_WINDOW` (`EARLY_EXIT_WINDOW` for a loop that may `break`): a loop that
    raises at its first call wastes 3 calls, one that raises at its k-th at most 4 * 2**(k-1), never
    more than the full window. The first launched call that fails stops all launching: the
    loop will raise there. The rest of the window is cancelled when the loop ends. Each launched call
    goes through the gateway like any other, so every budget counts it.
    """

    FIRST_WINDOW = 4  # ahead of a loop that has not yet shown it keeps going
    FULL_WINDOW = 64  # ahead of a loop that always runs to its end: enough to fill the slots
    EARLY_EXIT_WINDOW = 8  # ahead of a loop that may `break`

    def __init__(self) -> None:
        self._pending: deque[Call] = deque()
        self._launched: dict[SpeculativeKey, deque[asyncio.Task[str]]] = {}
        self._open = 0
        self._window = 0
        self._max_window = 0
        self._taken = 0  # calls of this set the loop took
        self._failed = False
        self._set = 0  # which loop's set this is: a call of an earlier set failing says nothing of this one
        self.hits = 0

    def start(self, calls: list[Call], early_exit: bool) -> None:
        """Replace the current set (call `cancel` first) and launch the first window of `calls`."""
        self._pending = deque(calls)
        self._max_window = self.EARLY_EXIT_WINDOW if early_exit else self.FULL_WINDOW
        self._window = min(self.FIRST_WINDOW, self._max_window)
        self._taken = 0
        self._failed = False
        self._set += 1
        self._fill()

    def extend(self, calls: list[Call]) -> None:
        """More of the current loop's calls, in order, after those already given."""
        if not self._failed:
            self._pending.extend(calls)
            self._fill()

    def take(self, key: SpeculativeKey) -> asyncio.Task[str] | None:
        """The launched call for `key`, now owned by the caller; None if there is none (a request
        still waiting to be launched is dropped, since the caller sends it now)."""
        tasks = self._launched.get(key)
        if not tasks:
            for entry in self._pending:
                if entry[0] == key:
                    self._pending.remove(entry)
                    break
            return None
        task = tasks.popleft()
        if not tasks:
            del self._launched[key]
        self._open -= 1
        self.hits += 1
        self._taken += 1
        if self._taken > 1:  # the loop came back for another call: it got past the one before
            self._window = min(2 * self._window, self._max_window)
        self._fill()
        return task

    def _fill(self) -> None:
        # the call the loop last took is still ahead of it until it comes back for the next one
        while self._pending and not self._failed and self._open + (self._taken > 0) < self._window:
            key, call = self._pending.popleft()
            task = asyncio.ensure_future(call())
            task.add_done_callback(functools.partial(self._on_done, self._set))
            self._launched.setdefault(key, deque()).append(task)
            self._open += 1

    def _on_done(self, set_no: int, task: asyncio.Task[str]) -> None:
        if set_no == self._set and not task.cancelled() and task.exception() is not None:
            self._failed = True
            self._pending.clear()

    async def cancel(self) -> None:
        """Cancel every call not taken and wait until they are gone (connections closed)."""
        tasks = [task for queue in self._launched.values() for task in queue]
        self._pending.clear()
        self._launched.clear()
        self._open = 0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
