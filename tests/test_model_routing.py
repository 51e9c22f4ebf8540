"""Which model serves a call, through litellm and real HTTP against the scripted server: each role's
model, a router policy, an explicit model, and the fallbacks taken when a model fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rlm.errors import ConfigError, ProviderError
from rlm.models.provider import Endpoint
from rlm.models.router import Routes
from rlm.scripted import Fault, ScriptedServer
from rlm.types import CallOrigin, Role
from tests.gateways import AGG, ASK, ROOT, SUB, calls_of, collect, echo, make_gateway


def test_each_role_goes_to_its_model_and_an_explicit_model_wins(scripted_server: ScriptedServer) -> None:
    for name in ("m-root", "m-sub", "m-agg", "m-named"):
        scripted_server.script(name, echo(name))
    gateway = make_gateway(scripted_server.base_url)

    async def scenario() -> list[str]:
        root, _ = await collect(gateway, ASK, CallOrigin((), Role.ROOT))
        sub = await gateway.complete(ASK, CallOrigin((), Role.SUB))
        agg = await gateway.complete(ASK, CallOrigin((), Role.AGGREGATE))
        named = await gateway.complete(ASK, CallOrigin((), Role.SUB), model="openai/m-named")
        return [root, sub.text, agg.text, named.text]

    replies = asyncio.run(scenario())
    assert [r.split(" ")[0] for r in replies] == ["m-root", "m-sub", "m-agg", "m-named"]
    assert [r.model for r in scripted_server.records()] == ["m-root", "m-sub", "m-agg", "m-named"]
    decisions = [(e["role"], e["model"], e["reason"]) for e in calls_of(gateway)]
    assert decisions == [
        ("root", ROOT, "root role"),
        ("sub", SUB, "sub role"),
        ("aggregate", AGG, "aggregate role"),
        ("sub", "openai/m-named", "explicit model"),
    ]
    assert set(gateway.usage_by_model) == {ROOT, SUB, AGG, "openai/m-named"}
    assert gateway.usage_by_role["sub"].calls == 2 and gateway.sub_calls == 3


def test_aggregate_without_its_own_model_goes_to_the_root_model(scripted_server: ScriptedServer) -> None:
    scripted_server.script("m-root", echo("m-root"))
    gateway = make_gateway(scripted_server.base_url, aggregate=None)
    completion = asyncio.run(gateway.complete(ASK, CallOrigin((0,), Role.AGGREGATE)))
    assert completion.model == ROOT
    assert calls_of(gateway)[0]["reason"] == "aggregate role (no aggregate model: the root model)"


def test_a_policy_callable_decides_unless_code_names_a_model(scripted_server: ScriptedServer) -> None:
    for name in ("m-root", "m-sub", "m-deep", "m-named"):
        scripted_server.script(name, echo(name))

    def deep_calls_to_m_deep(origin: CallOrigin, messages: list[dict[str, Any]]) -> str | None:
        return "openai/m-deep" if origin.depth >= 1 else None

    gateway = make_gateway(scripted_server.base_url, policy=deep_calls_to_m_deep)

    async def scenario() -> list[str]:
        shallow = await gateway.complete(ASK, CallOrigin((), Role.SUB))
        deep = await gateway.complete(ASK, CallOrigin((2,), Role.SUB))
        named = await gateway.complete(ASK, CallOrigin((2,), Role.SUB), model="openai/m-named")
        return [shallow.model, deep.model, named.model]

    assert asyncio.run(scenario()) == [SUB, "openai/m-deep", "openai/m-named"]
    assert [e["reason"] for e in calls_of(gateway)] == ["sub role", "router policy", "explicit model"]


def test_a_policy_returning_nonsense_is_a_config_error(scripted_server: ScriptedServer) -> None:
    gateway = make_gateway(scripted_server.base_url, policy=lambda origin, messages: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="router policy returned 42"):
        asyncio.run(gateway.complete(ASK, CallOrigin((), Role.SUB)))


def test_a_named_model_of_another_provider_does_not_inherit_the_sub_server() -> None:
    routes = Routes(Endpoint(ROOT, "http://127.0.0.1:8000/v1", "k"), Endpoint(SUB, "http://127.0.0.1:8000/v1", "k"))
    assert routes.named("openai/other") == Endpoint("openai/other", "http://127.0.0.1:8000/v1", "k")
    assert routes.named("anthropic/claude-sonnet-4-5") == Endpoint("anthropic/claude-sonnet-4-5")


def test_a_model_failing_past_its_retries_falls_back(scripted_server: ScriptedServer) -> None:
    scripted_server.script("m-sub", lambda request: Fault(503, "overloaded"))
    scripted_server.script("m-backup", echo("m-backup"))
    gateway = make_gateway(scripted_server.base_url, fallbacks={SUB: ["openai/m-backup"]})
    completion = asyncio.run(gateway.complete(ASK, CallOrigin((), Role.SUB)))
    assert completion.text.startswith("m-backup answers")
    assert [r.model for r in scripted_server.records()] == ["m-sub", "m-sub", "m-backup"]  # 2 attempts, then
    fallback = [e for e in gateway.events.trajectory if e["type"] == "model_fallback"]
    assert [(e["model"], e["fallback"]) for e in fallback] == [(SUB, "openai/m-backup")]
    assert calls_of(gateway)[0]["reason"] == f"fallback for {SUB}"
    assert set(gateway.usage_by_model) == {"openai/m-backup"}


def test_a_stream_falls_back_before_its_first_delta(scripted_server: ScriptedServer) -> None:
    scripted_server.script("m-root", lambda request: Fault(400, "context window exceeded"))
    scripted_server.script("m-big", echo("m-big"))
    gateway = make_gateway(scripted_server.base_url, fallbacks={ROOT: ["openai/m-big"]})
    text, _ = asyncio.run(collect(gateway, ASK, CallOrigin((), Role.ROOT)))
    assert text.startswith("m-big answers")
    assert [r.model for r in scripted_server.records()] == ["m-root", "m-big"]  # a 400 is not retried


def test_without_a_fallback_the_error_is_raised(scripted_server: ScriptedServer) -> None:
    scripted_server.script("m-sub", lambda request: Fault(400, "bad request"))
    gateway = make_gateway(scripted_server.base_url)
    with pytest.raises(ProviderError, match="bad request"):
        asyncio.run(gateway.complete(ASK, CallOrigin((), Role.SUB)))


def test_fallbacks_follow_the_chain_and_stop_at_cycles(scripted_server: ScriptedServer) -> None:
    for name in ("m-a", "m-b"):
        scripted_server.script(name, lambda request: Fault(400, "context window exceeded"))
    scripted_server.script("m-c", echo("m-c"))
    a, b, c = "openai/m-a", "openai/m-b", "openai/m-c"
    chain = {a: [b], b: [a, c], c: [a]}  # b lists a again, c closes a cycle
    gateway = make_gateway(scripted_server.base_url, fallbacks=chain, policy=lambda origin, messages: a)
    assert asyncio.run(gateway.complete(ASK, CallOrigin((), Role.SUB))).text.startswith("m-c answers")
    assert [r.model for r in scripted_server.records()] == ["m-a", "m-b", "m-c"]
    fallback = [(e["model"], e["fallback"]) for e in gateway.events.trajectory if e["type"] == "model_fallback"]
    assert fallback == [(a, b), (b, c)]
    scripted_server.reset()
    for name in ("m-a", "m-b", "m-c"):
        scripted_server.script(name, lambda request: Fault(400, "context window exceeded"))
    with pytest.raises(ProviderError):
        asyncio.run(gateway.complete(ASK, CallOrigin((), Role.SUB)))
    assert [r.model for r in scripted_server.records()] == ["m-a", "m-b", "m-c"]  # each once, then the error
