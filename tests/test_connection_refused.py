"""A model server that is not there: the CLI says which address did not answer and what to check, once."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("transport", ["auto", "litellm"])
def test_refused_connection_reads_once_and_says_what_to_check(tmp_path: Path, transport: str) -> None:
    context = tmp_path / "ctx.txt"
    context.write_text("hello\n")
    base = f"http://127.0.0.1:{_closed_port()}/v1"
    args = ["--model", "openai/x", "--api-key", "k", "--api-base", base, "--context", str(context), "q"]
    env = {**os.environ, "RLM_TRANSPORT": transport, "RLM_CACHE": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "rlm", "query", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 4, done.stderr
    assert "nothing answers at" in done.stderr
    assert "check that the model server is running" in done.stderr
    assert "Connection error" not in done.stderr
    assert done.stderr.count("retrying in") <= 1
