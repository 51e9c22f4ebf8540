"""The process session: cells run in a confined worker process, the security boundary.

The host waits on the worker without blocking the loop, answers its sub-calls through the
`HostBridge`, kills it at the deadline and restarts it with the state it kept (see `_recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import weakref
from typing import Any

from rlm.types import CellOutcome
from sandbox import oslayer
from sandbox.deaths import WorkerLost, cpu_message, death_message
from sandbox.interface import HostBridge, SandboxError, Session, answer_call, join_notices, to_outcome
from sandbox.limits import CellLimits
from sandbox.protocol import AsyncChannel, ChannelClosed, ProtocolViolation
from sandbox.zygote import spawn_worker

START_TIMEOUT_S = 30.0
MAX_REPLAY = 300
MAX_REPLAY_CHARS = 1_000_000
STATUS_WAIT_S = 1.0  # how long to wait for the zygote to say how a dead worker ended


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
            except WorkerLost as lost:
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
            outcome.notice = join_notices(notice, outcome.notice)
            return outcome

    async def _run(self, code: str, started: float) -> CellOutcome:
        if self._worker is None:
            raise WorkerLost("killed", "the REPL worker could not be restarted; try the cell again")
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
            raise WorkerLost(
                "timeout",
                f"TimeoutError: the cell ran longer than {self.limits.timeout_s:g} s and did not stop; "
                "its worker was killed. Do less per cell (work on chunks) or use llm_query.",
            ) from None
        except ChannelClosed:
            ending = await self._worker.ending()
            if ending is not None and ending.endswith("SIGXCPU"):
                raise WorkerLost("cpu", cpu_message(self.limits)) from None
            raise WorkerLost("killed", death_message(ending, self.limits)) from None
        except ProtocolViolation as exc:
            raise WorkerLost("killed", f"the REPL worker sent a malformed reply and was killed ({exc})") from None

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
