"""Host side of a REPL session: the engine's handle, asyncio-native, one worker per session.

`ProcessSession` is the security boundary: cells run in a confined worker process; the host waits
on it without blocking the loop, answers its sub-calls through the `HostBridge`, kills it at the
deadline and restarts it with the state it kept (see `_recover`). `InProcessSession` runs the same
interpreter in a host thread: same interface and policy, but NOT a boundary (no memory cap, no
hard kill, the host's memory is reachable to an escape); use it only for trusted code and as the
overhead baseline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import os
import queue
import signal
import socket
import threading
import time
import weakref
from abc import ABC, abstractmethod
from typing import Any, Literal, Protocol

from rlm.errors import RLMError
from rlm.types import CellOutcome
from sandbox import oslayer
from sandbox.guards import release_repl_module
from sandbox.limits import CellLimits
from sandbox.plain import to_plain
from sandbox.protocol import AsyncChannel, ChannelClosed, ProtocolViolation
from sandbox.repl import QUERY_NAMES, CellCancelled, CellTimeout, Interpreter, build_context
from sandbox.zygote import spawn_worker

ERROR_KINDS = frozenset({"exception", "policy", "timeout", "cpu", "memory", "output", "killed"})
START_TIMEOUT_S = 30.0
MAX_REPLAY = 300
MAX_REPLAY_CHARS = 1_000_000
STATUS_WAIT_S = 1.0  # how long to wait for the zygote to say how a dead worker ended


class HostBridge(Protocol):
    """What the engine gives a session so that cells can make sub-calls."""

    async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> object: ...


class SandboxError(RLMError):
    """A REPL session could not be started (bad context spec, the worker could not start)."""


class Session(ABC):
    """A persistent REPL: `run_cell` never raises for anything the cell did."""

    @abstractmethod
    async def run_cell(self, code: str) -> CellOutcome: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    @property
    @abstractmethod
    def answer(self) -> dict[str, Any]:
        """The cell's `answer` dict as last seen, also mid-cell: what a cancelled run keeps."""

    @property
    def missing_layers(self) -> list[str]:
        """The OS layers (sandbox/oslayer.py) not under this session's cells, as 'name (why)'."""
        return [f"{name} (in-process mode)" for name in oslayer.LAYERS]

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def open_session(
    context_spec: dict[str, Any] | None,
    bridge: HostBridge,
    limits: CellLimits | None = None,
    mode: Literal["process", "inprocess"] = "process",
    *,
    policy: bool = True,
    os_layer: bool = True,
) -> Session:
    """Start a REPL session; raises SandboxError if it cannot start.

    `policy=False` and `os_layer=False` exist for tests and benchmarks of each layer on its own
    (process mode only): they turn off the language policy or the worker's OS layer."""
    limits = limits or CellLimits()
    if mode == "process":
        session = ProcessSession(context_spec, bridge, limits, policy=policy, os_layer=os_layer)
        await session.start()
        return session
    if mode == "inprocess":
        try:
            context = build_context(context_spec)
        except Exception as exc:
            raise SandboxError(f"cannot build the context: {type(exc).__name__}: {exc}") from exc
        return InProcessSession(context, bridge, limits)
    raise ValueError(f"unknown sandbox mode {mode!r}: use 'process' or 'inprocess'")


async def answer_call(bridge: HostBridge, message: dict[str, Any], limits: CellLimits) -> dict[str, Any]:
    """Run one sub-call of a cell on the host; failures become an error the cell can catch."""
    name, args, kwargs = message.get("name"), message.get("args"), message.get("kwargs")
    if name not in QUERY_NAMES or not isinstance(args, list) or not isinstance(kwargs, dict):
        return {"op": "result", "ok": False, "error": "malformed host call"}
    if name.endswith("_batched") and args and (problem := limits.batch_problem(name, args[0])):
        return {"op": "result", "ok": False, "error": problem}  # the worker checks too; this is the boundary
    try:
        value = await bridge.call(name, args, kwargs)
    except Exception as exc:
        return {"op": "result", "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"op": "result", "ok": True, "value": to_plain(value)}


def to_outcome(message: dict[str, Any], limits: CellLimits, duration_s: float) -> CellOutcome:
    """A CellOutcome from what the interpreter sent, trusting nothing about its shape."""
    error = _text(message.get("error"), 20_000)
    kind = message.get("error_kind")
    answer = message.get("answer") if isinstance(message.get("answer"), dict) else {}
    variables = message.get("variables") if isinstance(message.get("variables"), list) else []
    return CellOutcome(
        stdout=_text(message.get("stdout"), limits.output_chars + 200) or "",
        error=error,
        error_kind=(kind if kind in ERROR_KINDS else "exception") if error else None,
        duration_s=duration_s,
        answer={
            "content": _text(answer.get("content"), limits.answer_chars) or "",
            "ready": answer.get("ready") is True,
        },
        final=_text(message.get("final"), limits.answer_chars),
        variables=[v for v in variables if isinstance(v, str)][:1000],
        notice=_text(message.get("notice"), 2_000),
    )


def _text(value: Any, cap: int) -> str | None:
    return str.__str__(value)[:cap] if isinstance(value, str) else None


def _join(*notices: str | None) -> str | None:
    return "; ".join(n for n in notices if n) or None


class _WorkerLost(Exception):
    """The worker had to be killed (or died) during a cell."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error

    @property
    def reason(self) -> str:
        if self.kind == "timeout":
            return "the cell timed out and its worker was killed"
        if self.kind == "cpu":
            return "the cell used up its CPU time in a call that could not be interrupted and its worker was killed"
        return "the worker died or misbehaved and was killed"


_SIGNAL_CAUSES = {
    "SIGKILL": "the kernel's out-of-memory killer or an outside kill",
    "SIGXCPU": "the CPU time limit",
    "SIGSEGV": "a crash",
    "SIGBUS": "a crash",
    "SIGABRT": "a crash",
    "SIGFPE": "a crash",
    "SIGILL": "a crash",
}


def _death_message(ending: str | None, limits: CellLimits) -> str:
    """Why the worker died, as far as the zygote could tell, and what to do about it."""
    if ending is None:
        how = "(a crash, or the kernel's memory or CPU limit)"
    else:
        cause = _SIGNAL_CAUSES.get(ending.rpartition(" ")[2])
        how = f"({ending}: {cause})" if cause else f"({ending})"
    return (
        f"the REPL worker died while running the cell {how}; the memory limit is {limits.memory_mb} MB. "
        "Work on smaller pieces of the data."
    )


def _cpu_message(limits: CellLimits) -> str:
    return (
        f"CpuLimit: the cell used more than {limits.cell_cpu_s:g} s of CPU time in one call that could not be "
        "interrupted (a long loop inside a built-in, such as sum(range(10**11))), so its worker was killed. "
        "Do less per cell: work on chunks."
    )


def _kill(pidfd: int) -> None:
    with contextlib.suppress(ProcessLookupError, OSError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.close(pidfd)


class _Worker:
    """One live worker: its channel, a pidfd to kill it by (no pid-reuse races), and the socket on
    which the zygote says how it ended."""

    def __init__(self, channel: AsyncChannel, pid: int, pidfd: int, status: socket.socket) -> None:
        self.channel = channel
        self.pid = pid
        self.status = status
        self.kill = weakref.finalize(self, _kill, pidfd)  # also runs if the session is dropped

    async def ending(self) -> str | None:
        """How the worker ended, e.g. 'killed by signal SIGSEGV' (None if the zygote did not say)."""
        try:
            report = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.status, 64), STATUS_WAIT_S)
            kind, _, number = report.decode("ascii").partition(" ")
            code = int(number)
        except (TimeoutError, OSError, ValueError):
            return None
        if kind == "signal":
            with contextlib.suppress(ValueError):
                return f"killed by signal {signal.Signals(code).name}"
            return f"killed by signal {code}"
        return f"exited with status {code}" if kind == "exit" else None

    def stop(self) -> None:
        self.kill()
        self.channel.close()
        self.status.close()


class ProcessSession(Session):
    """A session whose cells run in a confined worker process (the security boundary)."""

    def __init__(
        self,
        context_spec: dict[str, Any] | None,
        bridge: HostBridge,
        limits: CellLimits,
        *,
        policy: bool = True,
        os_layer: bool = True,
    ) -> None:
        self.context_spec = context_spec
        self.bridge = bridge
        self.limits = limits
        self.policy = policy
        self.use_os_layer = os_layer
        self.os_layer: dict[str, str] = {}  # each OS layer of the worker: "on" or why it is missing
        self.max_bytes = max(
            64 << 20, 4 * (limits.snapshot_chars + limits.output_chars + MAX_REPLAY_CHARS + 2 * limits.answer_chars)
        )
        self._worker: _Worker | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._cells = 0
        # What survives a worker restart: plain variables, replayable definitions, the variable names.
        self._snapshot: dict[str, Any] = {}
        self._replay: list[str] = []
        self._names: list[str] = []
        self._answer: dict[str, Any] = {"content": "", "ready": False}

    async def start(self) -> None:
        sock, pid, status = await asyncio.to_thread(spawn_worker)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as exc:
            sock.close()
            status.close()
            raise SandboxError(f"the REPL worker exited as it started: {exc}") from None
        status.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        worker = _Worker(AsyncChannel(reader, writer, self.max_bytes), pid, pidfd, status)
        try:
            await worker.channel.send(
                {
                    "op": "init",
                    "context_spec": self.context_spec,
                    "limits": self.limits.to_dict(),
                    "policy": self.policy,
                    "os_layer": self.use_os_layer,
                }
            )
            reply = await asyncio.wait_for(worker.channel.recv(), START_TIMEOUT_S)
        except (TimeoutError, ChannelClosed, ProtocolViolation) as exc:
            worker.stop()
            raise SandboxError(f"the REPL worker did not start: {exc or type(exc).__name__}") from None
        except BaseException:
            worker.stop()
            raise
        if reply.get("op") != "ready":
            worker.stop()
            raise SandboxError(f"the REPL worker could not start: {reply.get('error', reply.get('op'))}")
        layers = reply.get("os_layer")
        if isinstance(layers, dict):
            self.os_layer = {str(k)[:40]: str(v)[:200] for k, v in layers.items()}
        self._worker = worker

    async def run_cell(self, code: str) -> CellOutcome:
        async with self._lock:
            if self._closed:
                return CellOutcome(error="the REPL session is closed", error_kind="killed")
            notice = None
            if self._worker is None:
                notice = await self._recover("the previous cell was interrupted")
            started = time.monotonic()
            try:
                outcome = await self._run(code, started)
            except asyncio.CancelledError:
                self._stop_worker()
                raise
            except _WorkerLost as lost:
                self._stop_worker()
                restored = None if self._closed else await self._recover(lost.reason)
                outcome = CellOutcome(
                    error=lost.error,
                    error_kind=lost.kind,
                    duration_s=time.monotonic() - started,
                    answer=dict(self._answer),
                    variables=list(self._names),
                    notice=restored,
                )
            outcome.notice = _join(notice, outcome.notice)
            return outcome

    async def _run(self, code: str, started: float) -> CellOutcome:
        if self._worker is None:
            raise _WorkerLost("killed", "the REPL worker could not be restarted; try the cell again")
        channel = self._worker.channel
        allowed = self.limits.timeout_s + self.limits.kill_grace_s
        spent = 0.0
        try:
            self._cells += 1
            await channel.send({"op": "run", "code": code, "cell": self._cells})
            while True:
                waited_from = time.monotonic()
                message = await asyncio.wait_for(channel.recv(), max(allowed - spent, 0.0))
                spent += time.monotonic() - waited_from
                if message["op"] == "call":
                    if isinstance(message.get("answer"), dict):
                        self._answer = to_outcome(message, self.limits, 0.0).answer
                    await channel.send(await answer_call(self.bridge, message, self.limits))
                elif message["op"] == "done":
                    self._keep(message)
                    return to_outcome(message, self.limits, time.monotonic() - started)
                else:
                    raise ProtocolViolation(f"unexpected message {message['op']!r}")
        except TimeoutError:
            raise _WorkerLost(
                "timeout",
                f"TimeoutError: the cell ran longer than {self.limits.timeout_s:g} s and did not stop; "
                "its worker was killed. Do less per cell (work on chunks) or use llm_query.",
            ) from None
        except ChannelClosed:
            ending = await self._worker.ending()
            if ending is not None and ending.endswith("SIGXCPU"):
                raise _WorkerLost("cpu", _cpu_message(self.limits)) from None
            raise _WorkerLost("killed", _death_message(ending, self.limits)) from None
        except ProtocolViolation as exc:
            raise _WorkerLost("killed", f"the REPL worker sent a malformed reply and was killed ({exc})") from None

    def _keep(self, message: dict[str, Any]) -> None:
        """Record what a restart needs: the snapshot, the variable names, new definitions."""
        if isinstance(message.get("snapshot"), dict):
            self._snapshot = message["snapshot"]
        if isinstance(message.get("variables"), list):
            self._names = [v for v in message["variables"] if isinstance(v, str)]
        if isinstance(message.get("answer"), dict):
            self._answer = to_outcome(message, self.limits, 0.0).answer
        for segment in message.get("replay") or []:
            if isinstance(segment, str) and segment not in self._replay:
                self._replay.append(segment)
        while len(self._replay) > MAX_REPLAY or sum(map(len, self._replay)) > MAX_REPLAY_CHARS:
            self._replay.pop(0)

    async def _recover(self, reason: str) -> str:
        """Start a fresh worker and rebuild the state kept from the last finished cell."""
        self._stop_worker()
        try:
            await self.start()
        except SandboxError as exc:
            return f"{reason}; the worker could not be restarted ({exc})"
        assert self._worker is not None
        if not self._names and not self._replay:
            return f"{reason}; the worker was restarted"
        try:
            await self._worker.channel.send(
                {"op": "restore", "replay": self._replay, "snapshot": self._snapshot, "names": self._names}
            )
            allowed = self.limits.restore_s + self.limits.kill_grace_s
            reply = await asyncio.wait_for(self._worker.channel.recv(), allowed)
            if reply.get("op") != "restored" or not isinstance(reply.get("lost"), list):
                raise ProtocolViolation(f"expected the 'restored' reply, got {str(reply.get('op'))[:40]!r}")
            lost = [n for n in reply["lost"] if isinstance(n, str)]
            failed = reply.get("failed") if type(reply.get("failed")) is int else 0
        except (TimeoutError, ChannelClosed, ProtocolViolation) as exc:
            why = "it sent a malformed reply" if isinstance(exc, ProtocolViolation) else "restoring failed"
            if isinstance(exc, TimeoutError):
                why = f"restoring took longer than {self.limits.restore_s:g} s"
            lost, self._snapshot, self._replay = list(self._names), {}, []
            self._stop_worker()
            with contextlib.suppress(SandboxError):
                await self.start()
            self._names = []
            if lost:
                return f"{reason}; the worker was restarted but {why}: all variables were lost ({', '.join(lost)})"
            return f"{reason}; the worker was restarted but {why}: all definitions were lost"
        self._names = [n for n in self._names if n not in lost]
        notes = [f"lost variables: {', '.join(lost)}"] if lost else []
        if reply.get("timed_out") is True:
            notes.append(f"re-running the saved definitions took longer than {self.limits.restore_s:g} s")
        if failed:
            notes.append(f"{failed} saved definition(s) or import(s) failed to re-run")
        if notes:
            return f"{reason}; the worker was restarted; {'; '.join(notes)}"
        return f"{reason}; the worker was restarted and all variables restored"

    @property
    def answer(self) -> dict[str, Any]:
        return dict(self._answer)

    @property
    def missing_layers(self) -> list[str]:
        """The worker's OS layers that are not on, as 'name (why)'; empty when all hold."""
        return oslayer.missing(self.os_layer)

    @property
    def worker_pid(self) -> int | None:
        """The current worker's pid (for monitoring; it changes when the worker is restarted)."""
        return self._worker.pid if self._worker else None

    def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    async def aclose(self) -> None:
        self._closed = True
        self._stop_worker()


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


def _clear_interrupt() -> None:
    """Drop an exception another thread aimed at this one that has not been raised yet."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)


def _settle(future: asyncio.Future[dict[str, Any]], result: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(result)
