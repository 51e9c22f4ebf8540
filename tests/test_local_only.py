"""Local-only mode: which endpoints count as local, and a call to any other refused before a name
is looked up or a connection made (every lookup and connection off loopback is recorded)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from rlm.budget import Budget, Limits
from rlm.errors import LocalOnlyViolation, ProviderError
from rlm.events import EventLog
from rlm.models.gateway import ModelGateway
from rlm.models.local_only import LocalPolicy
from rlm.models.provider import Endpoint
from rlm.models.router import Routes
from rlm.scheduler import Scheduler
from rlm.scripted import ScriptedServer
from rlm.types import CallOrigin, Role
from tests.gateways import ASK, LOCAL_BASE, SUB, collect, echo, make_gateway, to


@pytest.mark.parametrize(
    ("model", "api_base", "local"),
    [
        ("openai/x", "http://localhost:8000/v1", True),
        ("openai/x", "http://127.0.0.5:8000/v1", True),
        ("openai/x", "http://[::1]:8000/v1", True),
        ("openai/x", "http://LocalHost:8000/v1", True),
        ("openai/x", "http://gpu.localhost/v1", False),  # *.localhost and localhost. may be asked of DNS
        ("openai/x", "http://localhost./v1", False),
        ("openai/x", "unix:///run/llama.sock", True),
        ("openai/x", "http+unix://%2Frun%2Fllama.sock/v1", True),
        ("openai/x", "http+unix://evil.com/v1", False),
        ("openai/x", "http+unix://user@evil.com/v1", False),
        ("hosted_vllm/x", "http://127.0.0.1:8000/v1", True),
        ("ollama_chat/qwen3", "http://127.0.0.1:11434", True),
        ("replicate/meta/llama-3", "http://127.0.0.1:8000/v1", False),
        ("qwen3", "http://127.0.0.1:8000/v1", False),  # no provider: litellm cannot say where it goes
        ("ollama/qwen3", None, True),
        ("openai/x", None, False),
        ("anthropic/claude-sonnet-4-5", None, False),
        ("openai/x", "http://192.168.1.20:8000/v1", False),
        ("openai/x", "http://localhost.example.com/v1", False),
        ("openai/x", "https://api.openai.com/v1", False),
    ],
)
def test_what_counts_as_local(model: str, api_base: str | None, local: bool, monkeypatch) -> None:
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    policy = LocalPolicy()
    if local:
        policy.check(Endpoint(model, api_base))
    else:
        with pytest.raises(LocalOnlyViolation, match="nothing was sent"):
            policy.check(Endpoint(model, api_base))


def test_lan_hosts_are_local_only_when_allowed(monkeypatch) -> None:
    policy = LocalPolicy.from_setting("192.168.1.0/24, gpu.lan")
    policy.check(Endpoint("openai/x", "http://192.168.1.20:8000/v1"))
    policy.check(Endpoint("openai/x", "http://gpu.lan:8000/v1"))
    with pytest.raises(LocalOnlyViolation):
        policy.check(Endpoint("openai/x", "http://192.168.2.20:8000/v1"))
    monkeypatch.setenv("OLLAMA_API_BASE", "http://ollama.example.com:11434")
    with pytest.raises(LocalOnlyViolation):
        policy.check(Endpoint("ollama/qwen3"))


@pytest.fixture
def network_attempts(monkeypatch) -> list[str]:
    """Every name lookup or connection to a non-loopback address, refused and recorded."""
    attempts: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            attempts.append(f"lookup {host}")
            raise socket.gaierror(socket.EAI_NONAME, "blocked by the test")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1"):
            attempts.append(f"connect {address}")
            raise OSError("blocked by the test")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def non_local(origin: CallOrigin, messages: list[dict[str, Any]]) -> Endpoint:
    return Endpoint("openai/m-sub", "http://example.invalid:9/v1", "sk-local")


def test_local_only_refuses_before_any_lookup_or_connection(
    scripted_server: ScriptedServer, network_attempts: list[str]
) -> None:
    scripted_server.script("m-sub", echo("m-sub"))
    # control: without local-only the same call does try to reach example.invalid (the guard sees it)
    open_gateway = make_gateway(scripted_server.base_url, policy=non_local)
    with pytest.raises(ProviderError):
        asyncio.run(open_gateway.complete(ASK, CallOrigin((), Role.SUB)))
    assert any("example.invalid" in attempt for attempt in network_attempts)

    network_attempts.clear()
    guarded = make_gateway(scripted_server.base_url, policy=non_local, local_only=LocalPolicy())
    with pytest.raises(LocalOnlyViolation, match=r"example\.invalid"):
        asyncio.run(guarded.complete(ASK, CallOrigin((), Role.SUB)))
    with pytest.raises(LocalOnlyViolation):
        asyncio.run(collect(guarded, ASK, CallOrigin((), Role.SUB)))
    assert network_attempts == [] and scripted_server.records() == []
    assert guarded.usage_by_model == {}


def test_local_only_refuses_a_configured_remote_model_before_the_run(network_attempts: list[str]) -> None:
    with pytest.raises(LocalOnlyViolation, match=r"example\.invalid"):
        make_gateway("http://example.invalid:9/v1", local_only=LocalPolicy())
    local = Endpoint(SUB, "http://127.0.0.1:9/v1")
    with pytest.raises(LocalOnlyViolation, match="anthropic/claude-sonnet-4-5"):  # fallbacks are checked too
        ModelGateway(
            Routes(local, local, None, {SUB: ["openai/m-local", "anthropic/claude-sonnet-4-5"]}),
            budget=Budget(Limits()),
            scheduler=Scheduler(),
            events=EventLog(),
            local_only=LocalPolicy(),
        )
    assert network_attempts == []


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("replicate/meta/llama-3", "replicate"),  # posts to api.replicate.com whatever api_base says
        ("huggingface/org/model", "huggingface"),  # fetches from huggingface.co first
        ("sagemaker/endpoint", "sagemaker"),  # asks 169.254.169.254 for credentials
        ("bedrock/anthropic.claude-3-haiku", "bedrock"),  # the same
    ],
)
def test_local_only_refuses_providers_that_ignore_api_base(
    model: str, provider: str, network_attempts: list[str]
) -> None:
    guarded = make_gateway(LOCAL_BASE, policy=to(model), local_only=LocalPolicy())
    with pytest.raises(LocalOnlyViolation, match=rf"{model}: litellm's {provider} provider .*hosted_vllm/NAME"):
        asyncio.run(guarded.complete(ASK, CallOrigin((), Role.SUB)))
    with pytest.raises(LocalOnlyViolation, match=provider):
        asyncio.run(collect(guarded, ASK, CallOrigin((), Role.SUB)))
    with pytest.raises(LocalOnlyViolation, match=provider):  # configured: refused before the run
        make_gateway(LOCAL_BASE, aggregate=model, local_only=LocalPolicy())
    assert network_attempts == []


@pytest.mark.parametrize("model", ["hosted_vllm/x", "ollama_chat/x", "lm_studio/x", "llamafile/x", "xinference/x"])
def test_local_only_accepts_providers_that_send_to_api_base(model: str, network_attempts: list[str]) -> None:
    guarded = make_gateway(LOCAL_BASE, policy=to(model), local_only=LocalPolicy())
    with pytest.raises(ProviderError):  # sent, to the closed local port, and nowhere else
        asyncio.run(guarded.complete(ASK, CallOrigin((), Role.SUB)))
    assert network_attempts == []
