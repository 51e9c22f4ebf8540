"""Every example in examples/ runs for real against the scripted server, so none of them rots."""

import os
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

from rlm.scripted import ScriptedServer
from rlm.scripted.demo import install_demo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _env(server: ScriptedServer) -> dict[str, str]:
    return {**os.environ, "RLM_API_BASE": server.base_url, "RLM_API_KEY": "sk-local"}


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300, cwd=EXAMPLES)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("script", ["quickstart.py", "async_api.py"])
def test_script_answers(scripted_server: ScriptedServer, script: str) -> None:
    install_demo(scripted_server)
    out = _run([script], _env(scripted_server))
    assert "the most common code is E" in out
    assert scripted_server.records("scripted-sub")


def test_local_model_takes_its_server_from_arguments(scripted_server: ScriptedServer) -> None:
    install_demo(scripted_server)
    args = ["--model", "openai/scripted-root", "--sub-model", "openai/scripted-sub"]
    out = _run(["local_model.py", *args, "--api-base", scripted_server.base_url], {**os.environ})
    assert "the most common code is E" in out


def test_no_key_runs_alone_and_writes_a_trace(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    out = _run(["no_key.py", "--trace", str(trace)], {**os.environ})
    assert "the most common code is E" in out
    assert trace.stat().st_size > 0


def test_notebook_runs_headless(scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    install_demo(scripted_server)
    for key, value in _env(scripted_server).items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    ).execute()
    shown = notebook.cells[2].outputs[-1]["data"]
    assert "text/html" in shown
    assert "completed" in shown["text/plain"]
    assert "the most common code is E" in notebook.cells[3].outputs[0]["text"]


def test_scripted_server_help_names_the_models_of_each_policy() -> None:
    out = _run(["-m", "rlm.scripted", "--help"], {**os.environ})
    assert "demo     serves scripted-root, scripted-sub" in out
    assert "echo     serves echo" in out
