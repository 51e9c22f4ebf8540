"""The scripted server as a child process (`python -m rlm.scripted`), for runs that need their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading


class _Loopback:
    """A server on 127.0.0.1; subclasses say which `port` it listens on once it runs."""

    @property
    def base_url(self) -> str:
        """What litellm's `api_base` takes: the OpenAI-compatible root of this server."""
        return f"http://127.0.0.1:{self.port}/v1"


_SERVING_AT = re.compile(r"at (http://127\.0\.0\.1:(\d+)/v1)")


class ServerProcess(_Loopback):
    """`python -m rlm.scripted --policy NAME` as a child process; stops (SIGTERM) on exit."""

    def __init__(self, policy: str, *, ttft: float = 0.0, tps: float | None = None, port: int = 0) -> None:
        self.policy = policy
        self.args = ["--port", str(port), "--policy", policy, "--ttft", str(ttft)]
        if tps is not None:
            self.args += ["--tps", str(tps)]
        self._process: subprocess.Popen[str] | None = None
        self._port: int | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the process and return once it serves (it prints its address when it does)."""
        if self._process is not None:
            raise RuntimeError("scripted server process is already running")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "rlm.scripted", *self.args], stdout=subprocess.PIPE, text=True, env=env
        )
        timer = threading.Timer(timeout, self._process.kill)  # a server that never says where it is
        timer.start()
        try:
            line = self._process.stdout.readline() if self._process.stdout else ""
        finally:
            timer.cancel()
        match = _SERVING_AT.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"scripted server process for policy {self.policy!r} did not start: {line!r}")
        self._port = int(match.group(2))
        return self

    def stop(self) -> None:
        """Terminate the process and wait for it. Idempotent."""
        process, self._process, self._port = self._process, None, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self if self._process is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("scripted server process is not running; call start() first")
        return self._port
