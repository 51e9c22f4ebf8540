"""Model names in model-written code resolve through the run's configuration, never around it.

The run is configured for the scripted server; code asks for other models by name. What it may ask
for is served through the run's api_base and key; anything else is refused with a clear error in the
cell's output, and the server's records (and the run's events) show that nothing was sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from rlm import RLM, Status
from rlm.config import resolve_settings
from rlm.errors import ModelNotAllowed
from rlm.models.provider import Endpoint
from rlm.models.router import Routes
from rlm.scripted import ScriptedServer

ROOT, SUB = "openai/test-root", "openai/test-sub"


def run_code(server: ScriptedServer, code: str, **options: Any) -> tuple[Any, str]:
    """Run one cell of `code` as the root model wrote it; the result and the cell's output as the
    model saw it on its next turn."""
    server.script("test-root", [f"```repl\n{code}\n```", "FINAL(done)"])
    rlm = RLM(model=ROOT, sub_model=SUB, api_base=server.base_url, api_key="sk-local", **options)
    result = rlm.query("ctx", "q")
    second = server.records("test-root")[1].messages
    return result, second[-1]["content"]


def test_code_asking_for_an_unconfigured_model_gets_a_clear_error_and_nothing_is_sent(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.script("gpt-4o", ["must never be asked"])
    result, output = run_code(scripted_server, 'print(llm_query("the key is sk-secret", model="gpt-4o"))')
    assert result.status is Status.COMPLETED
    assert "ModelNotAllowed: model 'gpt-4o' is not one this run is configured with, so nothing was sent" in output
    assert "allowed_models" in output and ROOT in output and SUB in output
    assert {record.model for record in scripted_server.records()} == {"test-root"}
    assert [e["model"] for e in result.trajectory if e["type"] == "model_request"] == [ROOT, ROOT]


def test_a_batch_with_an_unconfigured_model_fails_item_by_item(scripted_server: ScriptedServer) -> None:
    result, output = run_code(
        scripted_server, 'print(llm_query_batched(["a", "b"], model="anthropic/claude-sonnet-4-5"))'
    )
    assert result.status is Status.COMPLETED
    assert output.count("Error: model 'anthropic/claude-sonnet-4-5' is not one this run is configured with") == 2
    assert {record.model for record in scripted_server.records()} == {"test-root"}


def test_a_configured_model_named_without_its_provider_is_that_model(scripted_server: ScriptedServer) -> None:
    scripted_server.script("test-sub", lambda request: "sub says " + request.messages[-1]["content"])
    _, output = run_code(scripted_server, 'print(llm_query("hi", model="test-sub"))')
    assert "sub says hi" in output
    assert [record.model for record in scripted_server.records()] == ["test-root", "test-sub", "test-root"]


def test_an_allowed_model_is_served_through_the_runs_api_base(scripted_server: ScriptedServer) -> None:
    scripted_server.script("gpt-4o", lambda request: "gpt-4o via the run's server")
    result, output = run_code(scripted_server, 'print(llm_query("hi", model="gpt-4o"))', allowed_models="gpt-4o")
    assert "gpt-4o via the run's server" in output
    assert [record.model for record in scripted_server.records()] == ["test-root", "gpt-4o", "test-root"]
    assert "openai/gpt-4o" in result.usage_by_model


def test_local_only_refuses_an_allowed_model_that_would_leave_the_machine(scripted_server: ScriptedServer) -> None:
    result, output = run_code(
        scripted_server,
        'print(llm_query("the data", model="anthropic/claude-sonnet-4-5"))',
        allowed_models="anthropic/claude-sonnet-4-5",
        local_only=True,
    )
    assert result.status is Status.COMPLETED
    assert "LocalOnlyViolation: Local-only mode refused a call to anthropic/claude-sonnet-4-5" in output
    assert {record.model for record in scripted_server.records()} == {"test-root"}


def test_requested_names_resolve_through_the_configuration() -> None:
    base = "http://127.0.0.1:8000/v1"
    routes = Routes(
        root=Endpoint(ROOT, base, "k"),
        sub=Endpoint(SUB, base, "k"),
        fallbacks={SUB: ["openai/backup"]},
        allowed=frozenset({"gpt-4o", "openai/other", "anthropic/claude-sonnet-4-5"}),
    )
    assert routes.requested("test-root") == routes.root
    assert routes.requested("openai/backup") == Endpoint("openai/backup", base, "k")  # a configured fallback
    assert routes.requested("gpt-4o") == Endpoint("openai/gpt-4o", base, "k")  # never the public endpoint
    assert routes.requested("openai/other") == Endpoint("openai/other", base, "k")
    assert routes.requested("anthropic/claude-sonnet-4-5") == Endpoint("anthropic/claude-sonnet-4-5")
    with pytest.raises(ModelNotAllowed, match="'gpt-5' is not one this run is configured with"):
        routes.requested("gpt-5")


def test_allowed_models_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    assert resolve_settings(model=ROOT, allowed_models=" gpt-4o, openai/x ,").models.allowed() == {"gpt-4o", "openai/x"}
    monkeypatch.setenv("RLM_ALLOWED_MODELS", "a,b")
    assert resolve_settings(model=ROOT).models.allowed() == {"a", "b"}
    monkeypatch.delenv("RLM_ALLOWED_MODELS")
    config = tmp_path / "config.toml"
    config.write_text('allowed_models = ["c", "d"]\n')
    monkeypatch.setenv("RLM_CONFIG", str(config))
    assert resolve_settings(model=ROOT).models.allowed() == {"c", "d"}
    assert resolve_settings(model=ROOT, allowed_models="").models.allowed() == set()


def test_a_child_rlm_on_an_unconfigured_model_is_refused_too(scripted_server: ScriptedServer) -> None:
    result, output = run_code(scripted_server, 'print(rlm_query("dig", model="gpt-4o"))')
    assert "model 'gpt-4o' is not one this run is configured with" in output
    assert {record.model for record in scripted_server.records()} == {"test-root"}
    assert result.status is Status.COMPLETED
