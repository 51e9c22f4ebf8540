"""The model layer through litellm and real HTTP against the scripted server: routing, fallbacks, the
persistent cache (across processes), cost from the price table, local-only refusals."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rlm.budget import Budget, Limits
from rlm.cli import main
from rlm.config import resolve_settings
from rlm.errors import BudgetExceeded, ConfigError, LocalOnlyViolation, ProviderError
from rlm.events import EventLog
from rlm.models.cache import ResponseCache
from rlm.models.gateway import ModelGateway
from rlm.models.local_only import LocalPolicy
from rlm.models.pricing import litellm
from rlm.models.prompt_cache import with_cache_hints
from rlm.models.provider import Endpoint
from rlm.models.router import RoutePolicy, Router, Routes
from rlm.scheduler import RetryPolicy, Scheduler
from rlm.scripted import Fault, ScriptedServer
from rlm.types import CallOrigin, Role, Status

ROOT, SUB, AGG = "openai/m-root", "openai/m-sub", "openai/m-agg"
ALLOWED = frozenset({"openai/m-named", "openai/gpt-4o-mini"})  # the models these tests' calls name
ASK = [{"role": "user", "content": "Which codes appear?"}]
REPO = Path(__file__).resolve().parents[1]


def echo(name: str):
    """A script whose reply names the model and echoes the prompt, so replies are easy to check."""
    return lambda request: f"{name} answers: {request.messages[-1]['content']}"


def make_gateway(
    base_url: str,
    *,
    aggregate: str | None = AGG,
    fallbacks: Mapping[str, Sequence[str]] | None = None,
    policy: RoutePolicy | None = None,
    cache: ResponseCache | None = None,
    local_only: LocalPolicy | None = None,
    params: dict[str, Any] | None = None,
) -> ModelGateway:
    def endpoint(model: str) -> Endpoint:
        return Endpoint(model, base_url, "sk-local", params or {})

    routes = Routes(endpoint(ROOT), endpoint(SUB), endpoint(aggregate) if aggregate else None, fallbacks or {}, ALLOWED)
    return ModelGateway(
        Router(routes, policy),
        budget=Budget(Limits()),
        scheduler=Scheduler(retry=RetryPolicy(max_attempts=2, base_s=0.0)),
        events=EventLog(),
        cache=cache,
        local_only=local_only,
    )


def calls_of(gateway: ModelGateway) -> list[dict[str, Any]]:
    return [e for e in gateway.events.trajectory if e["type"] == "model_call"]


async def collect(gateway: ModelGateway, messages: list[dict[str, Any]], origin: CallOrigin) -> tuple[str, int]:
    """The whole streamed text and the number of deltas it came in."""
    parts = [delta async for delta in gateway.stream(messages, origin)]
    return "".join(parts), len(parts)


# --- routing ------------------------------------------------------------------------------------


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


# --- fallbacks ----------------------------------------------------------------------------------


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


# --- cache --------------------------------------------------------------------------------------


async def cached_calls(base_url: str, cache_dir: str) -> list[dict[str, Any]]:
    """One sub-call and one streamed root turn through a cached gateway (run in two processes)."""
    cache = ResponseCache(cache_dir)
    gateway = make_gateway(base_url, cache=cache)
    sub = await gateway.complete(ASK, CallOrigin((), Role.SUB))
    root, deltas = await collect(gateway, ASK, CallOrigin((), Role.ROOT))
    cache.close()
    return [{"text": sub.text, "cached": sub.cached}, {"text": root, "deltas": deltas, "hits": gateway.cache_hits}]


def test_cache_hits_across_processes_make_zero_provider_calls(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("m-sub", echo("m-sub"))
    scripted_server.script("m-root", echo("m-root"))
    first = asyncio.run(cached_calls(scripted_server.base_url, str(tmp_path)))
    assert len(scripted_server.records()) == 2 and first[0]["cached"] is False

    code = (
        "import asyncio, json, sys\n"
        "from tests.test_models import cached_calls\n"
        "print(json.dumps(asyncio.run(cached_calls(sys.argv[1], sys.argv[2]))))"
    )
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run(
        [sys.executable, "-c", code, scripted_server.base_url, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    second = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(scripted_server.records()) == 2  # the other process sent nothing
    assert second[0] == {"text": first[0]["text"], "cached": True}
    assert second[1]["text"] == first[1]["text"] and second[1]["hits"] == 2
    assert second[1]["deltas"] > 1  # a cached root reply is replayed as a stream
    stats = ResponseCache(tmp_path).stats()
    assert (stats.entries, stats.hits, stats.misses) == (2, 2, 2)


def test_sampled_calls_are_cached_only_when_asked(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("m-sub", echo("m-sub"))
    for cache_sampled, expected_requests in ((False, 2), (True, 1)):
        scripted_server.reset()
        scripted_server.script("m-sub", echo("m-sub"))
        cache = ResponseCache(tmp_path / str(cache_sampled), cache_sampled=cache_sampled)
        gateway = make_gateway(scripted_server.base_url, cache=cache, params={"temperature": 0.7})
        for _ in range(2):
            asyncio.run(gateway.complete(ASK, CallOrigin((), Role.SUB)))
        assert len(scripted_server.records()) == expected_requests
    greedy = make_gateway(scripted_server.base_url, cache=ResponseCache(tmp_path / "t0"), params={"temperature": 0})
    scripted_server.reset()
    scripted_server.script("m-sub", echo("m-sub"))
    for _ in range(2):
        asyncio.run(greedy.complete(ASK, CallOrigin((), Role.SUB)))
    assert len(scripted_server.records()) == 1


def test_the_key_covers_model_base_messages_and_params(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    base = Endpoint(SUB, "http://127.0.0.1:1/v1", "key-a")
    keys = {
        cache.key(base, ASK),
        cache.key(Endpoint(ROOT, base.api_base), ASK),
        cache.key(Endpoint(SUB, "http://127.0.0.1:2/v1"), ASK),
        cache.key(base, [{"role": "user", "content": "other"}]),
        cache.key(Endpoint(SUB, base.api_base, params={"max_tokens": 9}), ASK),
    }
    assert len(keys) == 5
    assert cache.key(base, ASK) == cache.key(Endpoint(SUB, base.api_base, "key-b"), ASK)  # never the key


def test_a_stream_stopped_early_is_cached_as_a_prefix_and_completed_live(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    reply = "first part of the reply, then a second part, then the end."
    scripted_server.script("m-root", lambda request: reply)
    gateway = make_gateway(scripted_server.base_url, cache=ResponseCache(tmp_path))
    origin = CallOrigin((), Role.ROOT)

    async def read_first_delta() -> str:
        stream = gateway.stream(ASK, origin)
        first = await anext(stream)
        await stream.aclose()  # the engine closes the root stream once it has its answer
        return first

    prefix = asyncio.run(read_first_delta())
    assert reply.startswith(prefix) and prefix != reply
    assert asyncio.run(collect(gateway, ASK, origin))[0] == reply  # prefix replayed, the rest live
    assert len(scripted_server.records()) == 2
    assert asyncio.run(collect(gateway, ASK, origin))[0] == reply  # now complete in the cache
    assert len(scripted_server.records()) == 2


def test_a_rerun_of_the_same_query_makes_zero_provider_calls(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, install_demo, make_demo_log

    install_demo(scripted_server)
    engine = demo_rlm(scripted_server, cache=True, cache_dir=str(tmp_path))
    log = make_demo_log(2000)
    first = engine.query(log, DEMO_QUESTION)
    sent = len(scripted_server.records())
    second = engine.query(log, DEMO_QUESTION)
    assert first.ok and sent > 2
    assert len(scripted_server.records()) == sent  # zero provider calls
    assert second.answer == first.answer and second.cache_hits == sent and second.usage.calls == 0


def test_cache_cli_stats_and_clear(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    key = cache.key(Endpoint(SUB), ASK)
    assert key is not None
    from rlm.types import Completion, Usage

    cache.put(key, Completion("hi", SUB, Usage(10, 2, 0.5)))
    assert cache.get(key) is not None
    cache.close()
    runner = CliRunner()
    stats = runner.invoke(main, ["cache", "stats", "--cache-dir", str(tmp_path)])
    assert stats.exit_code == 0 and "1 replies" in stats.output and "1 hits" in stats.output
    assert "$0.5000 saved" in stats.output
    cleared = runner.invoke(main, ["cache", "clear", "--cache-dir", str(tmp_path)])
    assert cleared.exit_code == 0 and "removed 1 cached replies" in cleared.output
    assert ResponseCache(tmp_path).stats().entries == 0


# --- cost ---------------------------------------------------------------------------------------


def test_cost_matches_the_price_table(scripted_server: ScriptedServer) -> None:
    scripted_server.script("gpt-4o-mini", echo("gpt-4o-mini"))
    scripted_server.script("m-sub", echo("m-sub"))
    gateway = make_gateway(scripted_server.base_url)
    origin = CallOrigin((), Role.SUB)

    async def scenario() -> None:
        await gateway.complete(ASK, origin, model="openai/gpt-4o-mini")
        await gateway.complete(ASK, origin)

    asyncio.run(scenario())
    priced, unpriced = calls_of(gateway)
    table = litellm().model_cost["gpt-4o-mini"]
    expected = (
        priced["prompt_tokens"] * table["input_cost_per_token"]
        + priced["completion_tokens"] * table["output_cost_per_token"]
    )
    assert priced["prompt_tokens"] > 0 and priced["completion_tokens"] > 0
    assert priced["cost_usd"] == pytest.approx(expected, rel=1e-9) and priced["priced"] is True
    assert unpriced["cost_usd"] == 0 and unpriced["priced"] is False and unpriced["completion_tokens"] > 0
    total = gateway.total_usage
    assert total.cost_usd == pytest.approx(expected) and total.priced is False and total.calls == 2


def test_anthropic_models_get_prompt_cache_markers_others_do_not() -> None:
    history = [
        {"role": "system", "content": "You are an RLM."},
        {"role": "user", "content": "question"},
        {"role": "assistant", "content": "code"},
        {"role": "user", "content": "output"},
    ]
    marked = with_cache_hints("anthropic/claude-sonnet-4-5", history)
    flags = [isinstance(m["content"], list) and "cache_control" in m["content"][-1] for m in marked]
    assert flags == [True, False, False, True]
    assert marked[3]["content"][0]["text"] == "output" and history[3]["content"] == "output"
    assert with_cache_hints("openai/gpt-4o", history) is history


# --- local-only ---------------------------------------------------------------------------------


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


# --- settings -----------------------------------------------------------------------------------


def test_model_layer_settings_from_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RLM_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("RLM_FALLBACKS", "openai/a=openai/b,openai/c;openai/d=openai/e")
    monkeypatch.setenv("RLM_CACHE", "off")
    monkeypatch.setenv("RLM_LOCAL_ONLY", "1")
    monkeypatch.setenv("RLM_CACHE_DIR", str(tmp_path))
    settings = resolve_settings()
    assert settings.models.fallbacks == {"openai/a": ["openai/b", "openai/c"], "openai/d": ["openai/e"]}
    assert (settings.cache.enabled, settings.models.local_only, settings.cache.dir) == (False, True, str(tmp_path))
    monkeypatch.setenv("RLM_FALLBACKS", "openai/a")
    with pytest.raises(ConfigError, match="MODEL=FALLBACK"):
        resolve_settings()


def test_a_named_model_of_another_provider_does_not_inherit_the_sub_server() -> None:
    routes = Routes(Endpoint(ROOT, "http://127.0.0.1:8000/v1", "k"), Endpoint(SUB, "http://127.0.0.1:8000/v1", "k"))
    assert routes.named("openai/other") == Endpoint("openai/other", "http://127.0.0.1:8000/v1", "k")
    assert routes.named("anthropic/claude-sonnet-4-5") == Endpoint("anthropic/claude-sonnet-4-5")


# --- review fixes -------------------------------------------------------------------------------

LOCAL_BASE = "http://127.0.0.1:9/v1"  # nothing listens there: a call that is sent fails at once


def to(model: str, api_base: str = LOCAL_BASE) -> RoutePolicy:
    return lambda origin, messages: Endpoint(model, api_base, "sk-local")


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


def test_no_api_key_in_reprs_events_traces_or_results(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, install_demo, make_demo_log

    secret = "sk-SECRET-XYZ"
    install_demo(scripted_server)
    engine = demo_rlm(scripted_server, api_key=secret, fallbacks={"openai/scripted-sub": ["openai/m-missing"]})
    trace = tmp_path / "trace.jsonl"
    result = engine.query(make_demo_log(500), DEMO_QUESTION, trace=trace)
    assert result.ok
    gateway = make_gateway(scripted_server.base_url, policy=to("openai/m-missing", scripted_server.base_url))
    with pytest.raises(ProviderError) as failed:  # the server has no script for it: an error reply
        asyncio.run(gateway.complete(ASK, CallOrigin((), Role.SUB)))
    seen = [
        trace.read_text(),
        json.dumps(result.to_dict(trajectory=True), default=str),
        repr(result),
        repr(engine.settings),
        repr(Endpoint("openai/x", "http://127.0.0.1:1/v1", secret)),
        str(failed.value),
        json.dumps(gateway.events.trajectory, default=str),
    ]
    assert not [text for text in seen if "SECRET" in text]


def test_a_rerun_after_a_fallback_makes_zero_provider_calls(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("m-sub", lambda request: Fault(503, "overloaded"))
    scripted_server.script("m-root", lambda request: Fault(400, "context window exceeded"))
    scripted_server.script("m-backup", echo("m-backup"))
    fallbacks = {SUB: ["openai/m-backup"], ROOT: ["openai/m-backup"]}
    first = make_gateway(scripted_server.base_url, fallbacks=fallbacks, cache=ResponseCache(tmp_path))
    asyncio.run(first.complete(ASK, CallOrigin((), Role.SUB)))
    streamed = [{"role": "user", "content": "streamed"}]
    asyncio.run(collect(first, streamed, CallOrigin((), Role.ROOT)))
    sent = len(scripted_server.records())
    assert [r.model for r in scripted_server.records()] == ["m-sub", "m-sub", "m-backup", "m-root", "m-backup"]
    first.close()
    again = make_gateway(scripted_server.base_url, fallbacks=fallbacks, cache=ResponseCache(tmp_path))
    completion = asyncio.run(again.complete(ASK, CallOrigin((), Role.SUB)))
    text, _ = asyncio.run(collect(again, streamed, CallOrigin((), Role.ROOT)))
    assert len(scripted_server.records()) == sent  # the failing models are not asked again
    assert completion.cached and completion.model == "openai/m-backup" and text.startswith("m-backup answers")
    assert [e["reason"] for e in calls_of(again)] == [f"fallback for {SUB}", f"fallback for {ROOT}"]


def test_prompt_cache_markers_only_for_providers_that_take_them() -> None:
    history = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    for model in ("openai/claude-local", "hosted_vllm/claude-distill", "ollama/claude", "openai/gpt-4o"):
        assert with_cache_hints(model, history) is history, model
    for model in (
        "anthropic/claude-sonnet-4-5",
        "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
        "vertex_ai/claude-sonnet-4-5",
        "openrouter/anthropic/claude-sonnet-4.5",
    ):
        assert "cache_control" in with_cache_hints(model, history)[1]["content"][0], model
    assert with_cache_hints("openrouter/meta-llama/llama-3-70b", history) is history


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


def test_temperature_from_settings_reaches_every_call(scripted_server: ScriptedServer, monkeypatch) -> None:
    from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, make_demo_log, root_policy, sub_policy

    seen: list[tuple[str, float | None]] = []

    def recorded(policy):
        return lambda request: (seen.append((request.model, request.temperature)), policy(request))[1]

    scripted_server.script("scripted-root", recorded(root_policy))
    scripted_server.script("scripted-sub", recorded(sub_policy))
    monkeypatch.setenv("RLM_TEMPERATURE", "0.25")
    engine = demo_rlm(scripted_server)
    assert engine.settings.models.temperature == 0.25
    assert engine.query(make_demo_log(500), DEMO_QUESTION).ok
    assert {model for model, _ in seen} == {"scripted-root", "scripted-sub"}
    assert {temperature for _, temperature in seen} == {0.25}


def test_temperature_flag(monkeypatch) -> None:
    captured: dict[str, Any] = {}

    class Captured(Exception):
        pass

    def fake_rlm(**options: Any) -> None:
        captured.update(options)
        raise Captured

    monkeypatch.setattr("rlm.api.RLM", fake_rlm)
    result = CliRunner().invoke(main, ["query", "q", "--model", "openai/x", "--temperature", "0.4"])
    assert isinstance(result.exception, Captured) and captured["temperature"] == 0.4


def test_sampled_settings_are_cached_only_when_asked(tmp_path: Path) -> None:
    from rlm.models.build import routes_from

    routes = routes_from(
        resolve_settings(model="openai/a", sub_model="openai/b", aggregate_model="openai/c", temperature=0.7).models
    )
    assert {e.params["temperature"] for e in routes.configured()} == {0.7}
    assert routes.named("anthropic/claude-sonnet-4-5").params == {"temperature": 0.7}
    assert ResponseCache(tmp_path).key(routes.sub, ASK) is None
    assert ResponseCache(tmp_path, cache_sampled=True).key(routes.sub, ASK) is not None


def test_identical_calls_in_flight_share_one_request(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("m-sub", echo("m-sub"))
    scripted_server.ttft = 0.05
    prompts = [[{"role": "user", "content": f"prompt {i % 20}"}] for i in range(60)]

    async def fan_out(gateway: ModelGateway) -> list[str]:
        replies = await asyncio.gather(
            *(gateway.complete(p, CallOrigin((i,), Role.SUB)) for i, p in enumerate(prompts))
        )
        return [reply.text for reply in replies]

    gateway = make_gateway(scripted_server.base_url, cache=ResponseCache(tmp_path / "a"))
    texts = asyncio.run(fan_out(gateway))
    assert texts == [f"m-sub answers: prompt {i % 20}" for i in range(60)]
    assert len(scripted_server.records()) == 20
    assert gateway.cache_hits == 40 and gateway.total_usage.calls == 20
    stats = ResponseCache(tmp_path / "a").stats()
    assert (stats.hits, stats.misses) == (40, 20)

    scripted_server.reset()
    scripted_server.script("m-sub", echo("m-sub"))
    sampled = make_gateway(scripted_server.base_url, cache=ResponseCache(tmp_path / "b"), params={"temperature": 0.7})
    asyncio.run(fan_out(sampled))
    assert len(scripted_server.records()) == 60  # sampled replies are meant to differ: never merged


def test_self_hosted_models_priced_at_zero_are_unpriced() -> None:
    from rlm.models.pricing import usage_of

    for model in ("ollama/anything", "ollama_chat/qwen3", "hosted_vllm/x", "openai/local-name"):
        assert usage_of(model, 100, 10).priced is False, model
    assert usage_of("openai/gpt-4o-mini", 100, 10).priced is True


def test_cache_stats_on_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "new" / "path"
    runner = CliRunner()
    for command in ("stats", "clear"):
        result = runner.invoke(main, ["cache", command, "--cache-dir", str(missing)])
        assert result.exit_code == 0 and f"no cache at {missing}" in result.output
    assert not missing.exists() and not (tmp_path / "new").exists()


def test_a_tripped_budget_refuses_even_cache_hits(scripted_server: ScriptedServer, tmp_path: Path) -> None:
    scripted_server.script("m-sub", echo("sub"))
    gateway = make_gateway(scripted_server.base_url, cache=ResponseCache(tmp_path / "cache"))
    sub = CallOrigin((), Role.SUB)
    asyncio.run(gateway.complete(ASK, sub))  # now cached
    gateway.budget.trip(Status.MAX_COST, "the cost limit was reached")
    with pytest.raises(BudgetExceeded):
        asyncio.run(gateway.complete(ASK, sub))
    with pytest.raises(BudgetExceeded):
        asyncio.run(collect(gateway, ASK, CallOrigin((), Role.ROOT)))
    assert len(scripted_server.records("m-sub")) == 1


def test_litellms_heap_is_frozen_out_of_garbage_collection() -> None:
    """A full collection would otherwise walk litellm's ~300,000 objects with the event loop stopped."""
    litellm()
    assert gc.get_freeze_count() > 100_000
