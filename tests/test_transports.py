"""One conformance suite for both transports (rlm's own OpenAI client and litellm), over real HTTP
against the scripted server: the same text, usage, cost, finish reasons, errors, retries, fallbacks,
stream interruptions and cancellation. Then what only the native transport has (its timeouts), what
it must agree on with litellm (provider names, base URLs, key variables, prices), and that a run on
an OpenAI-compatible model never imports litellm."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlm.budget import Budget, Limits
from rlm.config import resolve_settings
from rlm.errors import ConfigError, ProviderError, StreamInterrupted
from rlm.events import EventLog
from rlm.models import provider
from rlm.models.build import build_gateway
from rlm.models.gateway import ModelGateway
from rlm.models.openai_compat import providers
from rlm.models.openai_transport import OpenAITransport
from rlm.models.pricing import SELF_NAMED, litellm, price, provider_of
from rlm.models.provider import Endpoint, LitellmTransport, Timeouts
from rlm.models.router import Routes
from rlm.models.transport import AutoTransport, Transport
from rlm.models.workers import CallWorkers
from rlm.scheduler import RetryPolicy, Scheduler
from rlm.scripted import Drop, Fault, Reply, ScriptedServer
from rlm.tokens import count_tokens
from rlm.types import CallOrigin, Completion, Role
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[1]
TEXT = "The codes are 17, 42 and 99; nothing else in the context looks like a code at all."
ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Which codes appear?"}]
TRANSPORTS: dict[str, Callable[[], Transport]] = {"native": OpenAITransport, "litellm": lambda: provider}


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> Transport:
    return TRANSPORTS[request.param]()


def endpoint(server: ScriptedServer, model: str = "t") -> Endpoint:
    return Endpoint(f"openai/{model}", server.base_url, "sk-local")


async def streamed(transport: Transport, end: Endpoint) -> tuple[str, Completion]:
    done: list[Completion] = []
    async with contextlib.aclosing(transport.stream(end, ASK, done.append)) as deltas:
        text = "".join([delta async for delta in deltas])
    (completion,) = done
    return text, completion


# --- the same replies ---------------------------------------------------------------------------


def test_text_usage_and_finish_reason(scripted_server: ScriptedServer, transport: Transport) -> None:
    scripted_server.script("t", [TEXT, TEXT, Reply("cut", finish_reason="length")])
    end = endpoint(scripted_server)

    async def scenario() -> tuple[Completion, str, Completion, Completion]:
        whole = await transport.complete(end, ASK)
        text, streamed_completion = await streamed(transport, end)
        return whole, text, streamed_completion, await transport.complete(end, ASK)

    whole, text, stream_done, cut = asyncio.run(scenario())
    prompt = sum(count_tokens(m["content"]) for m in ASK)  # what the server reports
    for completion in (whole, stream_done):
        assert completion.text == TEXT and completion.model == "openai/t"
        assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt, count_tokens(TEXT))
        assert completion.finish_reason == "stop" and completion.usage.priced is False
    assert text == TEXT and cut.finish_reason == "length"
    first = scripted_server.records()[1]
    assert first.stream and first.outcome == "completed"


def test_cost_from_the_price_table(scripted_server: ScriptedServer, transport: Transport) -> None:
    scripted_server.script("gpt-4o-mini", [TEXT, TEXT])
    end = endpoint(scripted_server, "gpt-4o-mini")

    async def scenario() -> tuple[Completion, Completion]:
        return await transport.complete(end, ASK), (await streamed(transport, end))[1]

    for completion in asyncio.run(scenario()):
        usage = completion.usage
        expected = litellm().model_cost["gpt-4o-mini"]
        cost = usage.prompt_tokens * expected["input_cost_per_token"]
        cost += usage.completion_tokens * expected["output_cost_per_token"]
        assert usage.priced and usage.cost_usd == pytest.approx(cost, rel=1e-9)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "transient", "retry_after"),
    [
        (Fault(400, "bad request"), False, None),
        (Fault(404, "no such model"), False, None),
        (Fault(400, "This model's maximum context length is 8192 tokens"), False, None),
        (Fault(429, "slow down", retry_after=1.5), True, 1.5),
        (Fault(500, "boom"), True, None),
        (Fault(503, "overloaded", retry_after=2), True, 2.0),
    ],
)
def test_errors_mean_the_same(
    scripted_server: ScriptedServer, transport: Transport, fault: Fault, transient: bool, retry_after: float | None
) -> None:
    scripted_server.script("t", [fault, fault])
    end = endpoint(scripted_server)

    async def scenario() -> list[ProviderError]:
        errors = []
        for call in (lambda: transport.complete(end, ASK), lambda: streamed(transport, end)):
            with pytest.raises(ProviderError) as caught:
                await call()
            errors.append(caught.value)
        return errors

    for error in asyncio.run(scenario()):
        assert not isinstance(error, StreamInterrupted)
        assert (error.status_code, error.transient, error.retry_after) == (fault.status, transient, retry_after)
        assert error.model == "openai/t" and (fault.message in str(error))


def test_a_stream_cut_midway_keeps_what_arrived(scripted_server: ScriptedServer, transport: Transport) -> None:
    scripted_server.script("t", [Drop(TEXT, after_chars=30), Drop(TEXT, after_chars=30)])
    end = endpoint(scripted_server)
    seen: list[str] = []
    done: list[Completion] = []

    async def scenario() -> None:
        with pytest.raises(StreamInterrupted) as caught:
            async for delta in transport.stream(end, ASK, done.append):
                seen.append(delta)
        assert caught.value.partial_text == "".join(seen) and caught.value.transient
        with pytest.raises(ProviderError) as whole:  # a non-streamed body cut in half
            await transport.complete(end, ASK)
        assert whole.value.transient

    asyncio.run(scenario())
    sent = scripted_server.records()[0].sent_text
    assert "".join(seen) == sent and sent and len(sent) <= 30
    assert done[0].text == sent  # what arrived is accounted for


def test_cancellation_closes_the_request(scripted_server: ScriptedServer, transport: Transport) -> None:
    scripted_server.script("t", lambda request: Reply("late", ttft=30))
    scripted_server.script("s", lambda request: Reply(TEXT * 20, tps=20))
    done: list[Completion] = []

    async def scenario() -> None:
        call = asyncio.ensure_future(transport.complete(endpoint(scripted_server), ASK))
        assert await eventually(lambda: len(scripted_server.records("t")) == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        async with contextlib.aclosing(transport.stream(endpoint(scripted_server, "s"), ASK, done.append)) as deltas:
            async for _delta in deltas:
                break  # the consumer stops reading after the first delta
        assert await eventually(lambda: all(r.outcome == "disconnected" for r in scripted_server.records()))

    asyncio.run(scenario())
    (stopped,) = done
    assert stopped.text and len(stopped.text) < len(TEXT * 20)


# --- through the gateway: retries and fallbacks ---------------------------------------------------


def gateway(
    server: ScriptedServer, transport: Transport, fallbacks: dict[str, list[str]] | None = None
) -> ModelGateway:
    sub = endpoint(server, "sub")
    return ModelGateway(
        Routes(endpoint(server, "root"), sub, None, fallbacks or {}),
        budget=Budget(Limits()),
        scheduler=Scheduler(retry=RetryPolicy(max_attempts=3, base_s=0.0)),
        events=EventLog(),
        transport=transport,
    )


def test_retries_honour_retry_after_and_fallbacks_take_over(
    scripted_server: ScriptedServer, transport: Transport
) -> None:
    scripted_server.script("sub", [Fault(429, "slow down", retry_after=0.2), "after a retry", Fault(400, "no")])
    scripted_server.script("other", ["from the fallback"])
    models = gateway(scripted_server, transport, {"openai/sub": ["openai/other"]})
    origin = CallOrigin((), Role.SUB)

    async def scenario() -> tuple[str, str]:
        first = await models.complete(ASK, origin)
        return first.text, (await models.complete([{"role": "user", "content": "again"}], origin)).text

    assert asyncio.run(scenario()) == ("after a retry", "from the fallback")
    errors = [e for e in models.events.trajectory if e["type"] == "model_error"]
    assert errors[0]["retry_in_s"] >= 0.2 and errors[1]["retry_in_s"] is None
    assert [e["fallback"] for e in models.events.trajectory if e["type"] == "model_fallback"] == ["openai/other"]
    calls = [e for e in models.events.trajectory if e["type"] == "model_call"]
    assert [c["finish_reason"] for c in calls] == ["stop", "stop"]


# --- native only: its timeouts, its choice ------------------------------------------------------


def test_a_reply_that_does_not_start_or_stalls_times_out_as_transient(scripted_server: ScriptedServer) -> None:
    scripted_server.script("t", lambda request: Reply("late", ttft=5))
    scripted_server.script("s", lambda request: Reply("one two three four", tps=0.5))
    native = OpenAITransport(Timeouts(connect_s=5, first_byte_s=0.3, idle_s=0.3))

    async def scenario() -> None:
        with pytest.raises(ProviderError, match="Timeout") as late:
            await native.complete(endpoint(scripted_server), ASK)
        assert late.value.transient
        with pytest.raises(StreamInterrupted) as stalled:
            await streamed(native, endpoint(scripted_server, "s"))
        assert stalled.value.partial_text == "one" and stalled.value.transient

    asyncio.run(scenario())


def test_auto_picks_native_for_openai_compatible_models_and_litellm_for_the_rest() -> None:
    auto = AutoTransport(OpenAITransport(), provider)
    for model in ("openai/x", "gpt-4o-mini", "openrouter/meta-llama/llama-3-70b", "groq/llama-3.1-8b-instant"):
        assert auto._for(Endpoint(model, None, "k")) is auto.native, model
    assert auto._for(Endpoint("hosted_vllm/x", "http://127.0.0.1:8000/v1")) is auto.native
    for model in ("anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-pro", "bedrock/anthropic.claude-3-haiku"):
        assert auto._for(Endpoint(model, None, "k")) is provider, model
    assert auto._for(Endpoint("hosted_vllm/x")) is provider  # no base URL known: litellm says why


def test_the_transport_setting_and_call_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_CONFIG", "/nonexistent/config.toml")
    with pytest.raises(ConfigError, match="transport must be 'auto' or 'litellm'"):
        resolve_settings(model="openai/x", transport="httpx")
    with pytest.raises(ConfigError, match="idle_timeout must be above 0"):
        resolve_settings(model="openai/x", idle_timeout=0)
    parts = {"budget": Budget(Limits()), "scheduler": Scheduler(), "events": EventLog()}
    forced = build_gateway(
        resolve_settings(model="openai/x", api_base="http://127.0.0.1:9/v1", transport="litellm"), **parts
    )
    assert isinstance(forced._calls, LitellmTransport)
    auto = build_gateway(resolve_settings(model="openai/x", api_base="http://127.0.0.1:9/v1", idle_timeout=7), **parts)
    assert isinstance(auto._calls, AutoTransport) and auto._calls.native.timeouts.idle_s == 7
    workers = CallWorkers(2)  # not started: only who would make which call is looked at
    settings = resolve_settings(model="openai/x", api_base="http://127.0.0.1:9/v1")
    with_workers = build_gateway(settings, **parts, workers=workers)
    assert isinstance(with_workers._calls, AutoTransport) and with_workers._calls.other is workers


# --- agreement with litellm's own data ------------------------------------------------------------


def test_provider_names_base_urls_and_keys_agree_with_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    module = litellm()
    for name in sorted(SELF_NAMED | set(providers())):
        assert module.get_llm_provider(f"{name}/some-model")[1] == name == provider_of(f"{name}/some-model"), name
    for spec in providers().values():
        for variable in (*spec.base_vars, *spec.key_vars):
            monkeypatch.delenv(variable, raising=False)
        if spec.key_vars:
            monkeypatch.setenv(spec.key_vars[0], f"key-of-{spec.name}")
        _model, _name, key, base = module.get_llm_provider(f"{spec.name}/some-model")
        if spec.key_vars and key is not None:
            assert key == spec.key(), spec.name
        if base is not None and spec.base is not None and not spec.base_suffix:
            assert base.rstrip("/") == spec.base_url(None), spec.name


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-4o-mini",
        "gpt-4o",
        "gpt-5",
        "anthropic/claude-sonnet-4-5",
        "gemini/gemini-2.5-pro",
        "groq/openai/gpt-oss-120b",
        "deepseek/deepseek-chat",
        "xai/grok-4.3",
        "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "mistral/mistral-large-latest",
    ],
)
def test_prices_agree_with_litellm(model: str) -> None:
    for prompt, completion, cached in ((1000, 200, 0), (300_000, 1000, 0), (5000, 100, 2000)):
        ours, priced = price(model, prompt, completion, cached)
        theirs = sum(
            litellm().cost_per_token(
                model=model, prompt_tokens=prompt, completion_tokens=completion, cache_read_input_tokens=cached
            )
        )
        assert priced and ours == pytest.approx(theirs, rel=1e-9), (model, prompt, completion, cached)


# --- no litellm on the OpenAI-compatible path ---------------------------------------------------

NO_LITELLM = """
import sys
from rlm.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("litellm imported:", "litellm" in sys.modules, file=sys.stderr)
"""


def test_a_run_on_an_openai_compatible_model_never_imports_litellm(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    cell = "```repl\nparts = llm_query_batched(['a', 'b'])\nprint(parts)\n```"
    scripted_server.script("test-root", [cell, '```repl\nFINAL(", ".join(parts))\n```'])
    scripted_server.script("test-sub", lambda request: request.messages[-1]["content"].upper())
    context = tmp_path / "context.txt"
    context.write_text("some text")
    args = ["query", "--context", str(context), "--model", "openai/test-root", "--sub-model", "openai/test-sub"]
    args += ["--api-base", scripted_server.base_url, "--api-key", "sk-local", "--no-cache", "q"]
    run = subprocess.run(
        [sys.executable, "-c", NO_LITELLM, *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "A, B"
    assert "litellm imported: False" in run.stderr
    assert len(scripted_server.records()) == 4


def test_streams_and_replies_of_both_transports_are_the_same(scripted_server: ScriptedServer) -> None:
    """Side by side on one server: the texts, deltas and usage each transport gives for the same replies."""
    scripted_server.script("t", lambda request: TEXT)
    results: dict[str, Any] = {}

    async def scenario() -> None:
        for name, make in TRANSPORTS.items():
            chosen = make()
            whole = await chosen.complete(endpoint(scripted_server), ASK)
            text, done = await streamed(chosen, endpoint(scripted_server))
            results[name] = (whole.text, whole.usage, text, done.usage, done.finish_reason)

    asyncio.run(scenario())
    assert results["native"] == results["litellm"]
