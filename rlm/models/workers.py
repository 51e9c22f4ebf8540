"""Call workers, the host side: a run hands its provider calls to N processes that run litellm.

`CallWorkers` has the contract of `rlm.models.provider`'s `complete` and `stream`, so the gateway uses
either without knowing which (its scheduler, budget, retries and cache stay in the host). Workers are
forked from one zygote per host process that imported litellm once, and serve every later run of the
process; the first run pays that import (~2 s) in the background and, like any run whose workers are
not connected yet, calls in-process meanwhile. Why: rlm/models/call_worker.py.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import itertools
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from rlm.errors import ProviderError, StreamInterrupted
from rlm.forkserver import ForkServer, command
from rlm.models import provider
from rlm.models.call_worker import encode, read_message
from rlm.models.provider import Endpoint, Timeouts
from rlm.types import Completion

WorkerReply = tuple[str, list[Any]]  # ("delta" | "done" | "error", payload)
T = TypeVar("T")


def zygote_command() -> list[str]:
    """How the call workers' fork server starts (its stderr is the host's, so an import error shows)."""
    return command("rlm.models.call_worker:zygote")


def _start_zygote() -> ForkServer:
    return ForkServer(zygote_command(), name="call-worker zygote")


class _Pool:
    """This process's call workers, kept from run to run (warm clients and connections). Blocking
    methods: call them from a thread."""

    def __init__(self) -> None:
        self.zygote = _start_zygote()
        self.workers: list[tuple[socket.socket, int]] = []  # (control socket, pid)
        self._lock = threading.Lock()

    def attach(self, count: int) -> list[tuple[socket.socket, int]]:
        """A fresh channel to each of `count` workers (forked as needed): (our end, the worker's pid)."""
        with self._lock:
            channels: list[tuple[socket.socket, int]] = []
            forks = 0
            for index in range(count):
                while True:
                    if index >= len(self.workers):
                        if forks > count:  # fresh workers die at once: give up, calls stay in-process
                            raise ConnectionError("call workers exit as soon as they start")
                        forks += 1
                        spawned = self.zygote.spawn()
                        self.workers.append((spawned.channel, spawned.pid))
                    control, pid = self.workers[index]
                    ours, theirs = socket.socketpair()
                    with theirs:
                        try:
                            socket.send_fds(control, [b"c"], [theirs.fileno()])
                        except OSError:  # it died since the last run: replace it
                            ours.close()
                            control.close()
                            del self.workers[index]
                            continue
                    channels.append((ours, pid))
                    break
            return channels

    def close(self) -> None:
        for control, _pid in self.workers:
            control.close()  # each worker exits when it reads the hang-up
        self.zygote.close(wait=False)  # at the host's exit: stop it even mid-import


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _current_pool() -> _Pool:
    global _pool
    with _pool_lock:
        if _pool is None:
            atexit.register(_shutdown)
            _pool = _Pool()
        elif not _pool.zygote.alive():
            _pool.zygote = _start_zygote()
        return _pool


def _shutdown() -> None:
    if _pool is not None:
        _pool.close()


class _Link:
    """One worker: its channel, and a queue per call in flight on it."""

    def __init__(self, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.pid = pid
        self.writer = writer
        self.pending: dict[int, asyncio.Queue[WorkerReply]] = {}
        self.alive = True
        self.closed = False  # by us, at the end of the run
        self.reading = asyncio.get_running_loop().create_task(self._read(reader), name=f"rlm-call-worker-{pid}")

    def send(self, call_id: int, request: tuple[Any, ...]) -> asyncio.Queue[WorkerReply]:
        replies: asyncio.Queue[WorkerReply] = asyncio.Queue()
        self.pending[call_id] = replies
        self.writer.write(encode((request[0], call_id, *request[1:])))
        return replies

    def cancel(self, call_id: int) -> None:
        """Forget a call; the worker cancels it, which closes its HTTP connection."""
        if self.pending.pop(call_id, None) is not None and self.alive and not self.writer.is_closing():
            self.writer.write(encode(("cancel", call_id)))

    def forget(self, call_id: int) -> None:
        self.pending.pop(call_id, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, call_id, *payload = await read_message(reader)
                if (replies := self.pending.get(call_id)) is not None:
                    replies.put_nowait((kind, payload))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            ended = "the run ended" if self.closed else "it exited"
            self.alive = False
            error = ProviderError(f"call worker (pid {self.pid}) dropped the call: {ended}", transient=True)
            for replies in self.pending.values():
                replies.put_nowait(("error", [error, None]))

    def close(self) -> None:
        self.closed = True
        self.alive = False
        self.writer.close()
        self.reading.cancel()


class CallWorkers:
    """One run's channels to `count` of this process's call workers (see the module docstring). Start
    with `start()` inside the run's loop; `close()` at its end. `served` counts the calls handed to a
    worker, `in_process` those made here because no worker was connected yet. Every call, here or in
    a worker, waits at most as long as `timeouts` allow."""

    def __init__(self, count: int, timeouts: Timeouts | None = None) -> None:
        self.count = count
        self.timeouts = timeouts or Timeouts()
        self.served = 0
        self.in_process = 0
        self.start_error: str | None = None
        self._links: list[_Link] = []
        self._ids = itertools.count()
        self._starting: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        self._starting = asyncio.get_running_loop().create_task(self._start(), name="rlm-call-workers-start")

    async def wait_ready(self, timeout: float) -> int:
        """Wait until every worker has started (or failed to); the number of live workers."""
        if self._starting is not None:
            await asyncio.wait_for(asyncio.shield(self._starting), timeout)
        return len(self.pids)

    @property
    def pids(self) -> list[int]:
        return [link.pid for link in self._links if link.alive]

    async def _start(self) -> None:
        try:
            channels = await _in_daemon_thread(lambda: _current_pool().attach(self.count))
        except Exception as error:  # no zygote (e.g. no fork on this OS): the run calls in-process
            self.start_error = f"{type(error).__name__}: {error}"
            return
        await asyncio.gather(*(self._join(channel, pid) for channel, pid in channels))

    async def _join(self, channel: socket.socket, pid: int) -> None:
        """Take a worker into the run once it says it is ready (warm); until then calls run here."""
        reader, writer = await asyncio.open_unix_connection(sock=channel)
        writer.write(encode(("env", dict(os.environ))))  # keys set since the worker started reach it too
        try:
            await read_message(reader)  # ("ready", 0)
        except (asyncio.IncompleteReadError, ConnectionError):  # it died before it was ready
            writer.close()
            return
        except asyncio.CancelledError:  # the run ended first
            writer.close()
            raise
        link = _Link(pid, reader, writer)
        self._links.append(link)
        if self._closed:
            link.close()

    def _pick(self) -> _Link | None:
        live = [link for link in self._links if link.alive]
        return min(live, key=lambda link: len(link.pending)) if live else None

    async def complete(self, endpoint: Endpoint, messages: list[dict[str, Any]]) -> Completion:
        link = self._pick()
        if link is None:
            self.in_process += 1
            return await provider.complete(endpoint, messages, self.timeouts)
        call_id = next(self._ids)
        replies = link.send(call_id, ("complete", endpoint, messages, self.timeouts))
        self.served += 1
        try:
            kind, payload = await replies.get()
        except BaseException:
            link.cancel(call_id)
            raise
        link.forget(call_id)
        if kind == "error":
            raise _for(endpoint, payload[0])
        completion: Completion = payload[0]
        return completion

    async def stream(
        self, endpoint: Endpoint, messages: list[dict[str, Any]], on_done: Callable[[Completion], None]
    ) -> AsyncIterator[str]:
        """As `provider.stream`: `on_done` gets the Completion once, also when the consumer stops early
        (then with the text so far and usage estimated here, as the in-process stream would)."""
        link = self._pick()
        if link is None:
            self.in_process += 1
            async with contextlib.aclosing(provider.stream(endpoint, messages, on_done, self.timeouts)) as deltas:
                async for delta in deltas:
                    yield delta
            return
        started = time.monotonic()
        call_id = next(self._ids)
        replies = link.send(call_id, ("stream", endpoint, messages, self.timeouts))
        self.served += 1
        parts: list[str] = []
        settled = False
        try:
            while True:
                kind, payload = await replies.get()
                if kind == "delta":
                    parts.append(payload[0])
                    yield payload[0]
                    continue
                settled = True
                if kind == "done":
                    on_done(payload[0])
                    return
                error, completion = _for(endpoint, payload[0]), payload[1]
                if completion is not None:  # the worker's stream had opened: what it spent, as in-process
                    on_done(completion)
                elif parts:  # the worker died mid-reply
                    on_done(provider.completion_of(endpoint, messages, None, "".join(parts), started))
                if parts and not isinstance(error, StreamInterrupted):  # as in-process: text arrived, then it broke
                    error = StreamInterrupted(str(error), partial_text="".join(parts), model=endpoint.model)
                raise error
        finally:
            if settled:
                link.forget(call_id)
            else:  # the consumer stopped reading, or was cancelled
                link.cancel(call_id)
                on_done(provider.completion_of(endpoint, messages, None, "".join(parts), started))

    def close(self) -> None:
        """Hang up this run's channels: the workers cancel its calls and stay for the next run; idempotent."""
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
        for link in self._links:
            link.close()


def _for(endpoint: Endpoint, error: ProviderError) -> ProviderError:
    """A worker-side error names its model; one about the worker itself gets the call's."""
    if not error.model:
        error.model = endpoint.model
    return error


def _in_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """`work()` in a daemon thread. Not `asyncio.to_thread`: the first attach waits for the zygote's
    litellm import (~2 s), and a run that ended sooner must not wait for it when its loop shuts down
    its executor, nor the process at exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = work()
        except BaseException as error:  # delivered to the awaiting task
            report: Callable[[], None] = functools.partial(future.set_exception, error)
        else:
            report = functools.partial(future.set_result, result)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(settle, report)

    threading.Thread(target=target, name="rlm-call-workers-attach", daemon=True).start()
    return future
