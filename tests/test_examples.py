"""Every example in examples/ runs for real against the scripted server, so none of them rots."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

from rlm.scripted import ScriptedServer, solvers
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


@pytest.mark.skipif(not (shutil.which("bash") and shutil.which("jq")), reason="the recipes need bash and jq")
def test_cli_recipes_run_and_show_what_they_say(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    install_demo(scripted_server)
    solvers.install(scripted_server)
    bin_dir = str(Path(sys.executable).parent)  # the `rlm` of this environment
    env = {**_env(scripted_server), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": sys.executable}
    env |= {"RLM_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", "cli_recipes.sh"], env=env, capture_output=True, text=True, timeout=600, cwd=EXAMPLES
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert out.count("### ") == 9
    assert "177 ERROR lines; the most common code is E125" in out  # the folder: all three logs
    assert "122 ERROR lines" in out  # api.log and the glob's old/billing.log
    assert "status completed" in out and "5 calls · 2 sub-calls" in out  # jq read the --json report
    assert "└── answer: 64 ERROR lines" in out  # rlm view drew the trace
    assert "api: 64 ERROR lines" in out and "auth: 55 ERROR lines" in out  # the batch's rows
    assert "summary.png" in out and "sniah-8192-s0-001" in out  # the bench's chart and its tasks


def test_routing_sends_long_sub_calls_to_the_overloaded_model_and_falls_back() -> None:
    out = _run(["routing.py"], {**os.environ})
    assert "the most common code is E" in out
    assert "sub  openai/scripted-sub    fallback for openai/big-sub" in out
    assert "sub  openai/scripted-sub    sub role" in out  # a short chunk: the default rule
    assert "root openai/scripted-root   root role" in out
    assert "calls fell back:\n  openai/big-sub -> openai/scripted-sub" in out and "(HTTP 503)" in out


def test_bench_chart_compares_the_methods_in_a_png_and_in_text(tmp_path: Path) -> None:
    out = _run(["bench_chart.py", "--out", str(tmp_path), "--n", "2"], {**os.environ})
    assert "mean score\n  rlm       8K" in out and "tokens per task" in out and "direct   32K" in out
    assert (tmp_path / "comparison.png").read_bytes().startswith(b"\x89PNG")
    for folder in ("rlm-8K", "rlm-32K", "direct-8K", "direct-32K"):
        assert (tmp_path / folder / "summary.png").exists()


def test_scripted_server_serves_several_policies_at_once() -> None:
    args = [sys.executable, "-m", "rlm.scripted", "--port", "0", "--policy", "demo,solver"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True) as server:
        try:
            first = server.stdout.readline() if server.stdout else ""
        finally:
            server.terminate()
    assert "scripted-root, scripted-sub, solver-root, solver-sub" in first
    refused = subprocess.run([*args[:-1], "demo,nope"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "unknown policy 'nope'" in refused.stderr
