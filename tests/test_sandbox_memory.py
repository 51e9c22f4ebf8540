"""The REPL memory cap is a setting (`--sandbox-memory MB`, RLM_SANDBOX_MEMORY_MB) whose default grows
with the context."""

from __future__ import annotations

from pathlib import Path

from rlm.context import Context
from rlm.engine import sandbox_memory_for
from rlm.scripted import ChatRequest, ScriptedServer
from tests.test_cli import query_args, run

ALLOCATE = "```repl\nblock = bytearray(300 * 2**20)\nprint('allocated')\n```"


def capped_or_not(request: ChatRequest) -> str:
    if request.index == 0:
        return ALLOCATE
    fed_back = str(request.messages[-1]["content"])
    return "FINAL(capped at 64 MB)" if "memory cap (64 MB)" in fed_back else "FINAL(not capped)"


def test_default_cap_fits_the_context() -> None:
    assert sandbox_memory_for(Context.from_value("short")) == 1024
    assert sandbox_memory_for(Context.from_value("x" * (100 << 20))) == 1024 + 400


def test_the_flag_sets_the_cap_of_a_cell(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("test-root", capped_or_not)
    args = query_args(scripted_server, tmp_path, "--sandbox", "process")
    capped = run([*args, "--sandbox-memory", "64"], tmp_path)
    assert capped.returncode == 0, capped.stderr
    assert capped.stdout == "capped at 64 MB\n"
    scripted_server.script("test-root", capped_or_not)
    default = run(args, tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout == "not capped\n"


def test_a_cap_below_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ctx.txt").write_text("data")
    done = run(["query", "q", "-c", str(tmp_path / "ctx.txt"), "-m", "openai/x", "--sandbox-memory", "0"], tmp_path)
    assert done.returncode == 1 and "sandbox_memory_mb must be above 0" in done.stderr
