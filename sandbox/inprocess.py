"""The in-process session: the same REPL in a host thread, NOT a security boundary.

No memory cap, no hard kill, and the host's memory is reachable to an escape: use it only for
trusted code and as the overhead baseline for the process session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import queue
import threading
import time
from typing import Any

from rlm.types import CellOutcome
from sandbox.guards import release_repl_module
from sandbox.interface import HostBridge, Session, answer_call, to_outcome
from sandbox.limits import CellLimits
from sandbox.repl import CellCancelled, CellTimeout, Interpreter


class InProcessSession(Session):
    """The same REPL in a host thread: NOT a security boundary, for trusted code and baselines.

    Differences from process mode: no memory cap and no recursion cap of its own; a timeout or a
    cancellation raises into the cell's thread between bytecodes (after cancelling the host call it
    waits for), so a C-level loop cannot be stopped (the session is then closed and the thread left
    to finish).
    """

    def __init__(self, context: Any, bridge: HostBridge, limits: CellLimits) -> None:
        self.bridge = bridge
        self.limits = limits
        self._interp = Interpreter(context, limits, self._call_from_thread)
        self._jobs: queue.SimpleQueue[tuple[str, asyncio.Future[dict[str, Any]]] | None] = queue.SimpleQueue()
        self._exited: concurrent.futures.Future[None] = concurrent.futures.Future()  # the thread's last act
        self._thread = threading.Thread(target=self._serve, name="rlm-repl-inprocess", daemon=True)
        self._thread.start()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bridge_s = 0.0
        self._bridge_since: float | None = None
        self._closed = False
        # The host call the cell's thread is blocked on: its task on the loop, and the future the
        # thread waits for (cancelled to wake the thread at once when the cell is stopped).
        self._call: tuple[asyncio.Task[dict[str, Any]], concurrent.futures.Future[dict[str, Any]]] | None = None
        self._stopping = False  # the cell is being stopped: its host calls fail at once
        self._interrupt_lock = threading.Lock()

    @property
    def answer(self) -> dict[str, Any]:
        return self._interp.answer_so_far()

    def _serve(self) -> None:
        try:
            while True:
                try:
                    job = self._jobs.get()
                except CellTimeout:  # a stop that landed after its cell had finished
                    continue
                if job is None:
                    return
                code, future = job
                try:
                    result = self._interp.run(code)
                except CellTimeout as stop:  # it landed just outside the cell's own code
                    result = {"op": "done", "error": f"{type(stop).__name__}: {stop}", "error_kind": "timeout"}
                with contextlib.suppress(CellTimeout), self._interrupt_lock:
                    _clear_interrupt()  # nothing aimed at this cell may hit the next one
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for the result
                    future.get_loop().call_soon_threadsafe(_settle, future, result)
        finally:
            release_repl_module()
            self._exited.set_result(None)

    def _call_from_thread(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run one host call on the loop and wait for it (in the cell's thread)."""
        loop = self._loop
        if loop is None or self._stopping:
            raise CellCancelled("the run was cancelled")
        message = {"op": "call", "name": name, "args": args, "kwargs": kwargs}
        done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

        def start() -> None:  # on the loop
            if self._stopping:
                done.cancel()
                return
            task = loop.create_task(answer_call(self.bridge, message, self.limits))
            self._call = (task, done)
            task.add_done_callback(functools.partial(self._relay, done))

        self._bridge_since = time.monotonic()
        try:
            loop.call_soon_threadsafe(start)
            return done.result()
        except (concurrent.futures.CancelledError, RuntimeError):  # stopped, or the loop is closed
            raise CellCancelled("the run was cancelled while the cell waited for a sub-call") from None
        finally:
            self._bridge_s += time.monotonic() - self._bridge_since
            self._bridge_since = None

    def _relay(self, done: concurrent.futures.Future[dict[str, Any]], task: asyncio.Task[dict[str, Any]]) -> None:
        if self._call is not None and self._call[0] is task:
            self._call = None
        if done.done():
            return
        if task.cancelled():
            done.cancel()
        elif task.exception() is not None:
            done.set_exception(task.exception())  # type: ignore[arg-type]
        else:
            done.set_result(task.result())

    def _bridge_time(self) -> float:
        since = self._bridge_since
        return self._bridge_s + (time.monotonic() - since if since is not None else 0.0)

    def _interrupt(self, stop: type[CellTimeout]) -> None:
        """Raise `stop` into the cell's thread if it is running the cell's code."""
        with self._interrupt_lock:
            if self._interp.running and self._thread.ident is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._thread.ident), ctypes.py_object(stop))

    async def _stop(self, future: asyncio.Future[dict[str, Any]] | None, stop: type[CellTimeout]) -> None:
        """Stop the running cell: cancel its host call, interrupt its code, wait for both to end."""
        self._stopping = True
        call, self._call = self._call, None
        if call is not None:
            call[1].cancel()  # the cell's thread wakes up now and raises
            call[0].cancel()  # and the sub-call (its HTTP requests) is cancelled
        deadline = time.monotonic() + self.limits.kill_grace_s
        while future is not None and not future.done():
            self._interrupt(stop)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await asyncio.wait({future}, timeout=min(left, 0.05))
        if call is not None:
            await asyncio.wait({call[0]}, timeout=max(deadline - time.monotonic(), 0.05))
        if future is not None and not future.done():
            self._close()

    async def run_cell(self, code: str) -> CellOutcome:
        async with self._lock:
            if self._closed:
                return CellOutcome(error="the REPL session is closed", error_kind="killed")
            self._loop = asyncio.get_running_loop()
            self._stopping = False
            future: asyncio.Future[dict[str, Any]] = self._loop.create_future()
            self._bridge_s = 0.0
            started = time.monotonic()
            self._jobs.put((code, future))
            try:
                while not future.done():
                    remaining = self.limits.timeout_s + self._bridge_time() - (time.monotonic() - started)
                    await asyncio.wait({future}, timeout=max(remaining, 0.01))
                    if not future.done() and remaining <= 0 and self._bridge_since is None:
                        break
                if not future.done():
                    await self._stop(future, CellTimeout)
            except asyncio.CancelledError:  # the tree was cancelled: nothing of this cell may go on
                await self._stop(future, CellCancelled)
                raise
            if not future.done():
                return CellOutcome(
                    error=f"TimeoutError: the cell ran longer than {self.limits.timeout_s:g} s and cannot be "
                    "stopped in in-process mode; the session is closed",
                    error_kind="timeout",
                    duration_s=time.monotonic() - started,
                )
            return to_outcome(future.result(), self.limits, time.monotonic() - started)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._jobs.put(None)

    async def aclose(self) -> None:
        """Stop a running cell, end the thread and wait (briefly) for it; idempotent."""
        if self._closed and self._exited.done():
            return
        await self._stop(None, CellCancelled)
        self._close()
        deadline = time.monotonic() + self.limits.kill_grace_s
        exited = asyncio.wrap_future(self._exited)  # wakes us the moment the thread ends: no polling delay
        while not exited.done() and time.monotonic() < deadline:
            self._interrupt(CellCancelled)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), 0.01)
        if exited.done():  # only the thread's own teardown is left: over when this returns, not a moment later
            self._thread.join(max(deadline - time.monotonic(), 0.05))


def _clear_interrupt() -> None:
    """Drop an exception another thread aimed at this one that has not been raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)


def _settle(future: asyncio.Future[dict[str, Any]], result: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(result)
