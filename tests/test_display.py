"""How results, engines and a run's progress read: short text and escaped HTML in a REPL or a notebook
(never the key); on stderr, code panels that wrap and warnings kept whole off a terminal."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from rlm.api import RLM
from rlm.cli import main
from rlm.scripted import ChatRequest, Fault, ScriptedServer


def _engine(server: ScriptedServer, **options: object) -> RLM:
    return RLM("openai/test-root", api_base=server.base_url, api_key="sk-secret-123", **options)


def test_result_repr_shows_status_figures_answer_and_tree(scripted_server: ScriptedServer) -> None:
    def root(request: ChatRequest) -> str:
        if "child question" in str(request.messages[1]["content"]):
            return '```repl\nanswer["content"] = "child done"\nanswer["ready"] = True\n```'
        if not any(m["role"] == "assistant" for m in request.messages):
            return '```repl\nprint(rlm_query("child question"))\n```'
        return '```repl\nanswer["content"] = "<b>" + "x" * 2000\nanswer["ready"] = True\n```'

    scripted_server.script("test-root", root)
    result = _engine(scripted_server, max_depth=2).query("data", "q")
    text = repr(result)
    assert str(result) == text
    assert text.startswith("RLMResult(")
    assert "turn" in text and "sub-call" in text and "tokens" in text and " s)" in text
    assert "cost incomplete" in text  # the scripted models have no price
    assert len(text) < 2000  # the long answer is clipped; result.answer keeps it whole
    assert "tree:\n  root: completed, 2 turns, 2 model calls\n    child 0: completed, 1 turn, 1 model call" in text
    html = result._repr_html_()
    assert "<b>xxx" not in html and "&lt;b&gt;" in html  # the answer is escaped, shown whole
    assert "x" * 2000 in html


def test_result_repr_counts_in_english(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-root", ['```repl\nanswer["content"] = "ok"\nanswer["ready"] = True\n```'])
    text = repr(_engine(scripted_server).query("data", "q"))
    assert "1 turn ·" in text and "0 sub-calls" in text and "1 model call" in text


def test_engine_repr_names_models_and_limits_but_never_the_key(scripted_server: ScriptedServer) -> None:
    engine = _engine(scripted_server, max_cost=0.5, max_calls=20)
    text = repr(engine)
    assert "model='openai/test-root'" in text and "max_cost=0.5" in text and "max_calls=20" in text
    assert "sk-secret-123" not in text and "api_key" not in text


def _verbose_query(server: ScriptedServer, tmp_path: Path, *flags: str) -> Result:
    context = tmp_path / "ctx.txt"
    context.write_text("data")
    args = ["query", "-c", str(context), "-m", "openai/test-root", "--api-base", server.base_url, "--api-key", "k"]
    return CliRunner().invoke(main, [*args, "--no-cache", *flags, "q"])


def test_code_panels_wrap_long_lines_instead_of_cutting_them(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    long_line = "total = " + " + ".join(f"len('{i:03}')" for i in range(25)) + "  # THE-END-OF-THE-LINE"
    assert len(long_line) > 300
    scripted_server.script("test-root", [f'```repl\n{long_line}\nFINAL("done")\n```'])
    run = _verbose_query(scripted_server, tmp_path, "-v")
    assert run.exit_code == 0, run.stderr
    assert "THE-END-OF-THE-LINE" in run.stderr  # the panel is 80 columns wide off a terminal
    assert "len('024')" in run.stderr


def test_warnings_off_a_terminal_are_not_wrapped(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    reason = "the upstream pool is draining " + "and a long explanation follows " * 6 + "THE-END"
    scripted_server.script("test-root", [Fault(503, reason, retry_after=0), '```repl\nFINAL("done")\n```'])
    run = _verbose_query(scripted_server, tmp_path)
    assert run.exit_code == 0, run.stderr
    warning = next(line for line in run.stderr.splitlines() if "the upstream pool is draining" in line)
    assert "THE-END" in warning and "retrying in" in warning
    assert len(warning) > 200
