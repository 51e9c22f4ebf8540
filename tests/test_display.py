"""How results and engines read in a REPL and a notebook: short text, escaped HTML, never the key."""

from __future__ import annotations

from rlm.api import RLM
from rlm.scripted import ChatRequest, ScriptedServer


def _engine(server: ScriptedServer, **options: object) -> RLM:
    return RLM("openai/test-root", api_base=server.base_url, api_key="sk-secret-123", sandbox="inprocess", **options)


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
