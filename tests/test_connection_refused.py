"""A model server that is not there: the CLI says which address did not answer and what to check, once."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rlm.models.provider import _address


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("transport", "model", "path"),
    [("auto", "openai/x", "/v1"), ("litellm", "openai/x", "/v1"), ("auto", "ollama_chat/x", "")],
)
def test_refused_connection_reads_once_and_says_what_to_check(
    tmp_path: Path, transport: str, model: str, path: str
) -> None:
    context = tmp_path / "ctx.txt"
    context.write_text("hello\n")
    port = _closed_port()
    base = f"http://127.0.0.1:{port}{path}"
    args = ["--model", model, "--api-key", "k", "--api-base", base, "--context", str(context), "q"]
    env = {**os.environ, "RLM_TRANSPORT": transport, "RLM_CACHE": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "rlm", "query", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 4, done.stderr
    assert f"nothing answers at 127.0.0.1:{port} (connection refused)" in done.stderr
    assert "check that the model server is running" in done.stderr
    assert "Connection error" not in done.stderr
    assert done.stderr.count("retrying in") <= 1


@pytest.mark.parametrize(
    ("api_base", "shown"),
    [
        ("http://localhost:11434", "localhost:11434"),
        ("https://gpu-box.internal/v1", "gpu-box.internal:443"),
        ("http://[::1]:8000/v1", "[::1]:8000"),
        ("127.0.0.1:8080/v1", "127.0.0.1:8080"),
        ("http://host:port/v1", "http://host:port/v1"),
        (None, "the provider's address"),
    ],
)
def test_the_refused_address_is_read_off_api_base(api_base: str | None, shown: str) -> None:
    assert _address(api_base) == shown
