"""The `rlm` command as a user runs it: a real subprocess, talking to the scripted server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlm.scripted import Reply, ScriptedServer
from rlm.scripted.demo import DEMO_QUESTION, install_demo, make_demo_log
from tests.test_engine import demo_truth

RLM_COMMAND = [sys.executable, "-m", "rlm"]


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env["RLM_CONFIG"] = str(tmp_path / "absent.toml")
    env["RLM_CACHE"] = "false"  # every test must reach the scripted server
    return env


def run(args: list[str], tmp_path: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        RLM_COMMAND + args, capture_output=True, text=True, env=clean_env(tmp_path), timeout=120, **kwargs
    )


def query_args(server: ScriptedServer, tmp_path: Path, *extra: str) -> list[str]:
    """`rlm query q` over a small context file, against the scripted model "test-root"."""
    context = tmp_path / "ctx.txt"
    if not context.exists():
        context.write_text("data")
    return [
        "query",
        "q",
        "--context",
        str(context),
        "--model",
        "openai/test-root",
        "--api-base",
        server.base_url,
        *extra,
    ]


def interrupt_during_the_second_turn(
    server: ScriptedServer, tmp_path: Path, stop: signal.Signals, *extra: str
) -> tuple[int, str, str]:
    """Start a query whose second turn never ends, send `stop` once that turn is on the wire."""
    server.script("test-root", ['```repl\nanswer["content"] = "half"\n```', Reply("```repl\nprint(1)\n```", ttft=60)])
    process = subprocess.Popen(
        [*RLM_COMMAND, *query_args(server, tmp_path, *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(tmp_path),
    )
    deadline = time.time() + 60
    while len(server.records("test-root")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(stop)
    stdout, stderr = process.communicate(timeout=30)
    return process.returncode, stdout, stderr


def test_query_prints_only_the_answer(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    install_demo(scripted_server)
    log = tmp_path / "service.log"
    log.write_text(make_demo_log(2000))
    trace = tmp_path / "trace.jsonl"
    done = run(
        [
            "query",
            DEMO_QUESTION,
            "--context",
            str(log),
            "--model",
            "openai/scripted-root",
            "--sub-model",
            "openai/scripted-sub",
            "--api-base",
            scripted_server.base_url,
            "--api-key",
            "sk-local",
            "--trace",
            str(trace),
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == demo_truth(log.read_text()) + "\n"
    kinds = [json.loads(line)["type"] for line in trace.read_text().splitlines()]
    assert kinds[0] == "run_start" and kinds[-1] == "run_end" and "cell_end" in kinds


def test_json_report_and_stdin(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("test-root", ["```repl\nFINAL(len(context))\n```"])
    done = run(
        [
            "query",
            "How long?",
            "--context",
            "-",
            "--model",
            "openai/test-root",
            "--api-base",
            scripted_server.base_url,
            "--json",
        ],
        tmp_path,
        input="hello world",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["answer"] == "11" and report["status"] == "completed"
    assert set(report) >= {"usage_by_model", "cost_usd", "sub_calls", "wall_time_s"}


def test_missing_model_configuration(tmp_path: Path) -> None:
    (tmp_path / "ctx.txt").write_text("data")
    done = run(["query", "q", "--context", str(tmp_path / "ctx.txt")], tmp_path)
    assert done.returncode == 1
    assert "No model is configured" in done.stderr and "rlm demo" in done.stderr
    assert done.stdout == ""


def test_missing_context_file(tmp_path: Path) -> None:
    done = run(["query", "q", "--context", str(tmp_path / "nope.txt"), "--model", "openai/x"], tmp_path)
    assert done.returncode == 1
    assert "nope.txt" in done.stderr


def test_limit_exit_code_and_partial_answer(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("test-root", lambda request: '```repl\nanswer["content"] = "so far: 7"\n```')
    done = run(query_args(scripted_server, tmp_path, "--max-iterations", "2"), tmp_path)
    assert done.returncode == 3
    assert done.stdout == "so far: 7\n"
    assert "max_iterations" in done.stderr


def test_ctrl_c_stops_cleanly_and_keeps_the_trace(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    code, stdout, stderr = interrupt_during_the_second_turn(
        scripted_server, tmp_path, signal.SIGINT, "--trace", str(trace)
    )
    assert code == 130, stderr
    assert stdout == "half\n"
    assert "interrupted" in stderr
    assert json.loads(trace.read_text().splitlines()[-1])["type"] == "run_end"


def test_demo_runs_offline_and_answers(tmp_path: Path) -> None:
    done = run(["demo", "--lines", "1500", "--tps", "2000", "--quiet"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == demo_truth(make_demo_log(1500)) + "\n"
    assert "SCRIPTED" in done.stderr  # labelled as a scripted model, not an LLM


def test_documents_from_several_files(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("test-root", ['```repl\nFINAL(" | ".join(f"{d.name}={len(d)}" for d in context))\n```'])
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("bravo charlie")
    done = run(
        [
            "query",
            "sizes?",
            "-c",
            str(tmp_path / "a.txt"),
            "-c",
            str(tmp_path / "b.txt"),
            "-m",
            "openai/test-root",
            "--api-base",
            scripted_server.base_url,
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a.txt=5 | b.txt=13\n"


def test_binary_and_invalid_utf8_files_are_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    for name in ("image.png", "latin1.txt"):
        done = run(["query", "q", "--context", str(tmp_path / name), "--model", "openai/x"], tmp_path)
        assert done.returncode == 1
        assert name in done.stderr and "Traceback" not in done.stderr
        assert done.stdout == ""


def test_invalid_utf8_can_be_replaced_on_request(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("test-root", ['```repl\nFINAL(context.count("\\ufffd"))\n```'])
    (tmp_path / "latin1.txt").write_bytes("café crème".encode("latin-1"))
    args = ["query", "q", "-c", str(tmp_path / "latin1.txt"), "-m", "openai/test-root", "--api-base"]
    refused = run([*args, scripted_server.base_url], tmp_path)
    assert refused.returncode == 1 and "--errors replace" in refused.stderr
    done = run([*args, scripted_server.base_url, "--errors", "replace"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2\n"


def test_local_only_refusal_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "ctx.txt").write_text("private")
    done = run(["query", "q", "-c", str(tmp_path / "ctx.txt"), "-m", "openai/gpt-4o", "--local-only"], tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "local" in done.stderr.lower()


def test_unknown_model_exits_1_at_once(tmp_path: Path) -> None:
    (tmp_path / "ctx.txt").write_text("data")
    done = run(["query", "q", "-c", str(tmp_path / "ctx.txt"), "-m", "nosuchprovider/foo"], tmp_path)
    assert done.returncode == 1
    assert "Unknown model" in done.stderr and "Traceback" not in done.stderr


def test_sigterm_stops_like_ctrl_c(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    code, stdout, stderr = interrupt_during_the_second_turn(scripted_server, tmp_path, signal.SIGTERM)
    assert code == 130, stderr
    assert stdout == "half\n"


def test_zero_limits_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ctx.txt").write_text("data")
    done = run(["query", "q", "-c", str(tmp_path / "ctx.txt"), "-m", "openai/x", "--max-iterations", "0"], tmp_path)
    assert done.returncode == 1 and "max_iterations must be at least 1" in done.stderr


def _names_answer(server: ScriptedServer) -> None:
    """test-root answers with the names of the context's documents, one a line."""
    server.script("test-root", ['```repl\nFINAL("\\n".join(context.keys()))\n```'])


def _query_contexts(server: ScriptedServer, tmp_path: Path, *contexts: str) -> subprocess.CompletedProcess:
    args = ["query", "names?", "--model", "openai/test-root", "--api-base", server.base_url]
    for context in contexts:
        args += ["--context", context]
    return run(args, tmp_path)


def test_context_folder_gives_its_text_files_named_by_relative_path(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    (logs / "b.log").write_text("second")
    (logs / "a.log").write_text("first")
    (logs / "old" / "c.log").write_text("third")
    (logs / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (logs / "empty.log").write_text("")
    (logs / ".hidden").write_text("not a document")
    _names_answer(scripted_server)
    done = _query_contexts(scripted_server, tmp_path, str(logs))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["a.log", "b.log", "old/c.log"]
    assert "skipped 2 files:" in done.stderr
    assert "chart.png (binary)" in done.stderr and "empty.log (empty)" in done.stderr


def test_context_glob_and_several_options_make_one_list(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("one")
    (tmp_path / "y.txt").write_text("two")
    (tmp_path / "notes.md").write_text("three")
    _names_answer(scripted_server)
    done = _query_contexts(scripted_server, tmp_path, str(tmp_path / "*.txt"), str(tmp_path / "notes.md"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["x.txt", "y.txt", "notes.md"]


def test_context_names_that_collide_become_paths(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "log.txt").write_text(folder)
    _names_answer(scripted_server)
    done = _query_contexts(scripted_server, tmp_path, str(tmp_path / "one"), str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(tmp_path / "one" / "log.txt"), str(tmp_path / "two" / "log.txt")]


def test_context_glob_without_matches_and_folder_without_text(tmp_path: Path) -> None:
    done = run(["query", "q", "--model", "openai/x", "--context", str(tmp_path / "*.nothing")], tmp_path)
    assert done.returncode == 1 and "matches no files" in done.stderr
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "blob").write_bytes(b"\x00\x01")
    done = run(["query", "q", "--model", "openai/x", "--context", str(tmp_path / "bin")], tmp_path)
    assert done.returncode == 1 and "no text files" in done.stderr and "blob (binary)" in done.stderr


def test_api_errors_name_arguments_and_the_cli_names_flags(tmp_path: Path, monkeypatch) -> None:
    from rlm.api import RLM
    from rlm.errors import ConfigError

    monkeypatch.setenv("RLM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("RLM_MODEL", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError) as no_model:
        RLM()
    assert 'RLM("ollama_chat/qwen3", api_base=' in str(no_model.value) and "--model" not in str(no_model.value)
    with pytest.raises(ConfigError) as no_key:
        RLM("anthropic/claude-x").query("data", "q")
    assert "RLM(api_key=...)" in str(no_key.value) and "--api-key" not in str(no_key.value)
    (tmp_path / "ctx.txt").write_text("data")
    env = {k: v for k, v in clean_env(tmp_path).items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run(
        [*RLM_COMMAND, "query", "q", "--context", str(tmp_path / "ctx.txt"), "--model", "anthropic/claude-x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1 and "--api-key" in done.stderr and "RLM(" not in done.stderr
    done = run(["query", "q", "--context", str(tmp_path / "ctx.txt")], tmp_path)
    assert "--model ollama_chat/qwen3" in done.stderr and "RLM(" not in done.stderr


@pytest.mark.parametrize("priced", [True, False])
def test_a_cached_rerun_reports_what_it_saved(scripted_server: ScriptedServer, tmp_path: Path, priced: bool) -> None:
    """The second run is served from the cache: it spends nothing, saves what the first spent, and says
    whether that cost is complete exactly as the live run did."""
    root, sub = ("gpt-4o-mini", "gpt-4o") if priced else ("test-root", "test-sub")
    scripted_server.script(root, ['```repl\nprint(llm_query("summarise"))\n```', '```repl\nFINAL("done")\n```'])
    scripted_server.script(sub, ["a summary " * 20])
    env = {**clean_env(tmp_path), "RLM_CACHE": "true", "RLM_CACHE_DIR": str(tmp_path / "cache")}
    args = query_args(scripted_server, tmp_path, "--json", "--model", f"openai/{root}", "--sub-model", f"openai/{sub}")
    reports = []
    for _ in range(2):
        done = subprocess.run(RLM_COMMAND + args, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    live, cached = reports
    assert len(scripted_server.records()) == 3  # two root turns and a sub-call, all from the first run
    assert live["usage"]["calls"] == 3 and live["cache_hits"] == 0 and live["saved_usd"] == 0
    assert (live["cost_usd"] > 0) is priced and live["cost_complete"] is priced
    assert cached["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0, "priced": priced, "calls": 0}
    assert cached["cache_hits"] == 3 and cached["cost_usd"] == 0
    assert cached["saved_usd"] == pytest.approx(live["cost_usd"])
    assert cached["saved_tokens"] == live["usage"]["prompt_tokens"] + live["usage"]["completion_tokens"] > 0
    assert cached["cost_complete"] is priced
    assert {model: usage["priced"] for model, usage in cached["usage_by_model"].items()} == {
        f"openai/{root}": priced,
        f"openai/{sub}": priced,
    }
