"""A fork server: a clean Python process that has imported everything a worker needs, once.

Starting a worker is then a fork (milliseconds) instead of an interpreter start and imports
(a hundred milliseconds or more). The zygote runs with a scrubbed environment (no API keys),
in its own session (a Ctrl-C of the host does not reach it), and exits when the host closes its
socket. The host hands it one end of a fresh socketpair (SCM_RIGHTS); the forked child serves
that socket as its worker channel. With it comes the end of a second socketpair on which the zygote,
which reaps its children, writes how the worker ended ("signal 9", "exit 1") and closes it, so the
host can say why a worker died.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, NamedTuple

_BOOT = (
    "import sys, json; sys.path[:] = json.loads(sys.argv[1]); from sandbox.zygote import main; main(int(sys.argv[2]))"
)


def main(fd: int) -> None:
    """The zygote's loop: fork one worker per request until the host hangs up."""
    from sandbox import worker
    from sandbox.modules import preload

    statuses: dict[int, int] = {}  # live worker pid -> where to report its end

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
    _warm(preload)
    gc.freeze()  # keep the warm heap shared between forked workers
    control = socket.socket(fileno=fd)
    while True:
        try:
            _data, fds, _flags, _addr = socket.recv_fds(control, 16, 2)
        except OSError:
            return
        if not fds:
            return
        # SIGCHLD waits until the new worker is registered, so its end cannot go unreported.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            control.close()
            for report in [*statuses.values(), *fds[1:]]:  # no worker holds another's report channel
                os.close(report)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            status = 0
            try:
                worker.serve(fds[0])
            except BaseException:
                status = 1
            os._exit(status)
        os.close(fds[0])
        if len(fds) > 1:
            statuses[pid] = fds[1]
        for extra in fds[2:]:
            os.close(extra)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        control.sendall(f"{pid}\n".encode())


def exit_description(status: int) -> str:
    """'signal N' or 'exit N', from a wait status."""
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def _warm(preload: object) -> None:
    import datetime

    from sandbox import repl

    preload()  # type: ignore[operator]
    datetime.datetime.strptime("2024-01-02", "%Y-%m-%d").strftime("%A %B")  # imports _strptime, time
    repl.namespace_extras()
    with contextlib.suppress(ImportError):
        import rlm.context  # noqa: F401
    _load_encodings()
    _load_codecs()


def _load_codecs() -> None:
    """Import every text codec now (~75 ms, 5 MB, shared): `s.encode('cp1252')` imports its codec on
    first use, and a worker may open no file."""
    import codecs
    import encodings
    import pkgutil

    for module in pkgutil.iter_modules(encodings.__path__):
        with contextlib.suppress(Exception):  # codecs of other platforms (mbcs, oem) do not load
            codecs.lookup(module.name)


REPL_ENCODINGS = ("cl100k_base", "o200k_base")


def _load_encodings() -> None:
    """Make the tokenizers cells may use (count_tokens, chunk_tokens) available from the offline files,
    and refuse any other: a worker may open no file and reach no network (sandbox/oslayer.py), so
    tiktoken must never try to read or download one there. The default one is built here, shared by
    every worker; the others (~0.4 s to build) from their bytes, in a worker that asks for them."""
    try:
        from rlm import tokens
    except ImportError:
        return
    files = {name: data for name in REPL_ENCODINGS if (data := tokens.bundled_file(name)) is not None}
    default = tokens.DEFAULT_ENCODING
    if default in files:
        tokens._encodings[default] = tokens.build(default, files[default])

    def from_memory(name: str) -> Any:
        if name in files:
            return tokens.build(name, files[name])
        have = ", ".join(repr(n) for n in files) or "none"
        raise ValueError(f"the tokenizer {name!r} is not available in the REPL (available: {have})")

    tokens._load = from_memory


def _import_path() -> list[str]:
    """The host's import path, absolute, with this project's root first (editable installs use a hook)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [root, *(os.path.abspath(p) for p in sys.path)]


def _clean_env() -> dict[str, str]:
    return {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


class Spawned(NamedTuple):
    """A forked worker as the host sees it."""

    channel: socket.socket
    pid: int
    status: socket.socket  # the zygote writes "signal N" / "exit N" here when the worker ends


class Zygote:
    """The host's handle on its zygote process."""

    def __init__(self) -> None:
        host_end, zygote_end = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, json.dumps(_import_path()), str(zygote_end.fileno())],
            pass_fds=[zygote_end.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=_clean_env(),
            cwd="/",
            start_new_session=True,
        )
        zygote_end.close()
        self.control = host_end
        self.lock = threading.Lock()

    def spawn(self) -> Spawned:
        """A new worker: the host's end of its channel, its pid, and where the zygote will say how it
        ended (see `main`). Blocking: call it in a thread."""
        host_end, worker_end = socket.socketpair()
        status_end, zygote_end = socket.socketpair()
        try:
            with self.lock:
                socket.send_fds(self.control, [b"w"], [worker_end.fileno(), zygote_end.fileno()])
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = self.control.recv(32)
                    if not chunk:
                        raise ConnectionError("the zygote exited")
                    reply += chunk
        except BaseException:
            host_end.close()
            status_end.close()
            raise
        finally:
            worker_end.close()
            zygote_end.close()
        return Spawned(host_end, int(reply), status_end)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self, wait: bool = True) -> None:
        """Hang up: the zygote ends its workers and exits. `wait=False` when this process is exiting
        anyway (the zygote finishes on its own; the exit need not wait for it)."""
        self.control.close()
        if not wait:
            return
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_zygote: Zygote | None = None
_zygote_pid = 0
_zygote_lock = threading.Lock()


def _current_zygote() -> Zygote:
    global _zygote, _zygote_pid
    with _zygote_lock:
        if _zygote is None or _zygote_pid != os.getpid() or not _zygote.alive():
            _zygote, _zygote_pid = Zygote(), os.getpid()
        return _zygote


def prestart() -> None:
    """Start this process's zygote now without waiting for it: it boots while the caller imports and
    sends its first request, so the first session opens at once."""
    _current_zygote()


def spawn_worker() -> Spawned:
    """Fork a worker from this process's zygote, starting (or restarting) the zygote if needed."""
    global _zygote
    zygote = _current_zygote()
    try:
        return zygote.spawn()
    except (ConnectionError, OSError):
        with _zygote_lock:
            if _zygote is zygote:
                _zygote = None
        return _current_zygote().spawn()


@atexit.register
def _shutdown() -> None:
    if _zygote is not None and _zygote_pid == os.getpid():
        _zygote.close(wait=False)
