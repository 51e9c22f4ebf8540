"""A fork server: a Python process that imports what its children need once, then forks one child per
request, so a new worker costs a fork (milliseconds) instead of an interpreter start and its imports.
rlm runs two, from this one implementation: the sandbox's REPL workers (sandbox/zygote.py) and the
call workers that run litellm (rlm/models/call_worker.py).

The protocol, on a socketpair whose far end is the server's control fd: the host sends one byte
carrying, by SCM_RIGHTS, the child's channel and optionally a status socket; the server forks, the
child serves its channel, and the server answers with the child's pid and a newline. The server reaps
its children and, where it was given a status socket, writes there how the child ended ("signal 9",
"exit 1") and closes it, so the host can say why a worker died. The server runs in its own session (a
Ctrl-C of the host does not reach it) and exits when the host hangs up.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import NamedTuple

_BOOT = (
    "import sys, json, importlib; sys.path[:] = json.loads(sys.argv[1]); "
    "module, _, function = sys.argv[2].partition(':'); "
    "getattr(importlib.import_module(module), function)(int(sys.argv[3]))"
)


def serve(control_fd: int, child: Callable[[int], object]) -> None:
    """The server's loop, run by its entry function once warm: fork `child(channel_fd)` per request
    until the host hangs up. The child ends the process when `child` returns (exit 0) or raises (exit 1);
    it never returns into this loop."""
    statuses: dict[int, int] = {}  # live child pid -> where to report its end

    def reap(signum: int, frame: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            report = statuses.pop(pid, None)
            if report is not None:
                with contextlib.suppress(OSError):
                    os.write(report, exit_description(status).encode())
                os.close(report)

    signal.signal(signal.SIGCHLD, reap)
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            _data, fds, _flags, _addr = socket.recv_fds(control, 16, 2)
        except OSError:
            return
        if not fds:  # the host hung up
            return
        # SIGCHLD waits until the new child is registered, so its end cannot go unreported.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            control.close()
            for report in [*statuses.values(), *fds[1:]]:  # no child holds another's report channel
                os.close(report)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            code = 0
            try:
                child(fds[0])
            except BaseException:
                code = 1
            os._exit(code)
        os.close(fds[0])
        if len(fds) > 1:
            statuses[pid] = fds[1]
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        control.sendall(f"{pid}\n".encode())


def exit_description(status: int) -> str:
    """'signal N' or 'exit N', from a wait status."""
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def command(entry: str, *, isolated: bool = False) -> list[str]:
    """How to start a server whose entry is `module:function(control_fd)` (the fd comes last). The
    host's import path goes with it, absolute and with this project's root first (editable installs
    resolve through a hook). `isolated`: Python's -I (no PYTHON* variables, no user site)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = [root, *(os.path.abspath(p) for p in sys.path)]
    return [sys.executable, *(["-I"] if isolated else []), "-c", _BOOT, json.dumps(path), entry]


class Spawned(NamedTuple):
    """A forked child as the host sees it."""

    channel: socket.socket
    pid: int
    status: socket.socket | None  # where the server says how the child ended, if asked to


class ForkServer:
    """The host's handle on one fork server process. Blocking methods: call them from a thread."""

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        quiet: bool = False,
    ) -> None:
        """`argv` from `command`; `name` says what failed in errors; `env` None inherits the host's;
        `quiet` sends the server's output to /dev/null (else its stderr is the host's)."""
        self.name = name
        host_end, server_end = socket.socketpair()
        with server_end:
            output = subprocess.DEVNULL if quiet else None
            self.process = subprocess.Popen(
                [*argv, str(server_end.fileno())],
                pass_fds=[server_end.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.control = host_end
        self.lock = threading.Lock()

    def spawn(self, *, report_end: bool = False) -> Spawned:
        """Fork a child: the host's end of its channel, its pid, and (with `report_end`) the socket on
        which the server will say how it ended. ConnectionError if the server is gone."""
        host_end, child_end = socket.socketpair()
        status_end, server_end = socket.socketpair() if report_end else (None, None)
        reply = b""
        try:
            with self.lock, contextlib.suppress(OSError):
                fds = [child_end.fileno()] + ([server_end.fileno()] if server_end else [])
                socket.send_fds(self.control, [b"w"], fds)
                while not reply.endswith(b"\n") and (chunk := self.control.recv(32)):
                    reply += chunk
            if not reply.endswith(b"\n"):
                raise ConnectionError(self._gone())
        except BaseException:
            host_end.close()
            if status_end is not None:
                status_end.close()
            raise
        finally:
            child_end.close()
            if server_end is not None:
                server_end.close()
        return Spawned(host_end, int(reply), status_end)

    def _gone(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1)
        code = self.process.poll()
        if code is None:
            return f"the {self.name} stopped answering"
        return f"the {self.name} exited (code {code}; its error, if any, is on stderr)"

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self, wait: bool = True) -> None:
        """Hang up: the server exits, and its children as their channels close. `wait=False` when this
        process is exiting anyway: the server is stopped at once, even mid-import (it holds no state)."""
        self.control.close()
        if not wait:
            with contextlib.suppress(OSError):
                self.process.terminate()
            return
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
