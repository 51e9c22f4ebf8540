"""Faults injected at the scripted server, each against both transports (rlm's own OpenAI client and
litellm): a reply that never starts, a stream that stalls after its headers or midway, a connection
reset midway, a malformed stream line, a truncated JSON body, 429 with Retry-After, bursts of 500 and a
server that is gone. For each, what the call does (the error, whether it is transient, what text is
kept), what the gateway does (retried or given up) and what a run does (asked again, ended early with
its partial answer, its trajectory and a non-zero exit)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rlm import RLM, Status
from rlm.budget import Budget, Limits
from rlm.cli import main
from rlm.cli.common import EXIT_PROVIDER
from rlm.errors import ProviderError, StreamInterrupted
from rlm.events import EventLog
from rlm.models.gateway import ModelGateway
from rlm.models.openai_transport import OpenAITransport
from rlm.models.provider import Endpoint, LitellmTransport, Timeouts
from rlm.models.router import Routes
from rlm.models.transport import Transport
from rlm.models.workers import CallWorkers
from rlm.scheduler import RetryPolicy, Scheduler
from rlm.scripted import Action, Drop, Fault, Garbage, Reply, ScriptedServer, Stall
from rlm.types import CallOrigin, Completion, Role

TEXT = "The codes are 17, 42 and 99; nothing else in the context looks like a code at all."
ASK = [{"role": "user", "content": "Which codes appear?"}]
QUICK = Timeouts(connect_s=5.0, first_byte_s=0.5, idle_s=0.5)
TRANSPORTS: dict[str, Callable[[Timeouts], Transport]] = {"native": OpenAITransport, "litellm": LitellmTransport}
SETTING = {"native": "auto", "litellm": "litellm"}  # the `transport` setting that picks each for a run


@pytest.fixture(scope="module", autouse=True)
def warm_litellm(_scripted_server_process: ScriptedServer) -> None:
    """litellm's first call imports modules for seconds on the event loop, which a half-second
    timeout would take for a stall; one call first keeps the timeouts about the server."""
    server = _scripted_server_process
    server.script("warm", [TEXT, TEXT])
    end = Endpoint("openai/warm", server.base_url, "sk-local")
    asyncio.run(streamed(LitellmTransport(), end))
    asyncio.run(LitellmTransport().complete(end, ASK))


@pytest.fixture(params=sorted(TRANSPORTS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def endpoint(server: ScriptedServer, model: str = "t") -> Endpoint:
    return Endpoint(f"openai/{model}", server.base_url, "sk-local")


async def streamed(transport: Transport, end: Endpoint, seen: list[str] | None = None) -> Completion:
    done: list[Completion] = []
    async with contextlib.aclosing(transport.stream(end, ASK, done.append)) as deltas:
        async for delta in deltas:
            if seen is not None:
                seen.append(delta)
    return done[0]


# --- one call: the error each fault gives ----------------------------------------------------------

STREAMED_FAULTS: list[tuple[str, Action, str, bool]] = [
    # (fault, scripted action, words the message holds, whether text arrived before it)
    ("slow first byte", Reply(TEXT, ttft=30), "first_byte_timeout", False),
    ("headers, then no first chunk", Reply(TEXT, ttft=30, early_headers=True), "first_byte_timeout", False),
    ("stall after the first chunk", Stall(), "idle_timeout", False),
    ("stall mid-stream", Stall(TEXT, after_chars=20), "idle_timeout", True),
    ("reset mid-stream", Drop(TEXT, after_chars=20), "", True),
    ("malformed line first", Garbage(TEXT), "Unterminated string", False),
    ("malformed line mid-stream", Garbage(TEXT, after_chars=20), "Unterminated string", True),
    ("429 with Retry-After", Fault(429, "slow down", retry_after=1.5), "slow down", False),
    ("500", Fault(500, "boom"), "boom", False),
]


@pytest.mark.parametrize(("fault", "action", "words", "midway"), STREAMED_FAULTS, ids=[f[0] for f in STREAMED_FAULTS])
def test_each_fault_ends_a_stream_with_a_transient_error(
    scripted_server: ScriptedServer, name: str, fault: str, action: Action, words: str, midway: bool
) -> None:
    """Every fault is transient (retrying may help); one that came after text keeps that text, and
    the text is accounted for; a stall ends at its timeout, whatever the server keeps open."""
    scripted_server.script("t", [action])
    seen: list[str] = []
    done: list[Completion] = []

    async def scenario() -> ProviderError:
        with pytest.raises(ProviderError) as caught:
            async with contextlib.aclosing(
                TRANSPORTS[name](QUICK).stream(endpoint(scripted_server), ASK, done.append)
            ) as deltas:
                async for delta in deltas:
                    seen.append(delta)
        return caught.value

    error = asyncio.run(scenario())
    assert error.transient and words in str(error)
    assert isinstance(error, StreamInterrupted) is midway
    if midway:
        assert isinstance(error, StreamInterrupted)
        assert error.partial_text == "".join(seen) == TEXT[: len(error.partial_text)] and len(seen[0]) > 0
        assert done[0].text == error.partial_text and done[0].usage.completion_tokens > 0
    else:
        assert not "".join(seen)
    if isinstance(action, Fault):
        assert (error.status_code, error.retry_after) == (action.status, action.retry_after)
    assert scripted_server.settled_records("t")[0].outcome != "in_progress"  # the stall was let go of


WHOLE_FAULTS: list[tuple[str, Action, str]] = [
    ("slow first byte", Reply(TEXT, ttft=30), "first_byte_timeout"),
    ("no reply at all", Stall(), "first_byte_timeout"),
    ("reset mid-body", Drop(TEXT, after_chars=20), ""),
    ("truncated JSON body", Garbage(TEXT), "Unterminated string"),
    ("429 with Retry-After", Fault(429, "slow down", retry_after=2), "slow down"),
    ("500", Fault(500, "boom"), "boom"),
]


@pytest.mark.parametrize(("fault", "action", "words"), WHOLE_FAULTS, ids=[f[0] for f in WHOLE_FAULTS])
def test_each_fault_ends_a_whole_reply_with_a_transient_error(
    scripted_server: ScriptedServer, name: str, fault: str, action: Action, words: str
) -> None:
    scripted_server.script("t", [action])
    with pytest.raises(ProviderError) as caught:
        asyncio.run(TRANSPORTS[name](QUICK).complete(endpoint(scripted_server), ASK))
    assert caught.value.transient and words in str(caught.value)
    if isinstance(action, Fault):
        assert (caught.value.status_code, caught.value.retry_after) == (action.status, action.retry_after)


def test_a_slow_reply_that_keeps_coming_is_not_cut(scripted_server: ScriptedServer, name: str) -> None:
    """Timeouts bound the waits, not the reply: one that starts late (its headers sent at once, as a
    local server thinking over a long prompt does) and trickles, each wait under its bound, arrives
    whole."""
    slow = "one two three four five six"
    scripted_server.script("t", [Reply(slow, ttft=0.8, tps=4, early_headers=True), Reply(slow, ttft=0.8)])
    patient = TRANSPORTS[name](Timeouts(connect_s=5, first_byte_s=3, idle_s=0.5))
    assert asyncio.run(streamed(patient, endpoint(scripted_server))).text == slow
    assert asyncio.run(patient.complete(endpoint(scripted_server), ASK)).text == slow


def test_call_workers_hold_the_same_timeouts(scripted_server: ScriptedServer) -> None:
    """litellm's calls made in call worker processes wait no longer than those made here."""
    scripted_server.script("t", [Stall(TEXT, after_chars=20), Reply(TEXT, ttft=30)])

    async def scenario() -> None:
        workers = CallWorkers(1, QUICK)
        workers.start()
        try:
            assert await workers.wait_ready(60) == 1
            with pytest.raises(StreamInterrupted, match="idle_timeout") as stalled:
                await streamed(workers, endpoint(scripted_server))
            assert stalled.value.partial_text == TEXT[: len(stalled.value.partial_text)] != ""
            with pytest.raises(ProviderError, match="first_byte_timeout"):
                await workers.complete(endpoint(scripted_server), ASK)
            assert workers.served == 2 and workers.in_process == 0
        finally:
            workers.close()

    asyncio.run(scenario())


def test_each_transport_keeps_its_own_timeouts_on_a_shared_loop(scripted_server: ScriptedServer, name: str) -> None:
    """Two runs on one event loop (a notebook, rlm serve) share connection pools, not timeouts."""
    scripted_server.script("t", lambda request: Reply("late", ttft=1.0))

    async def scenario() -> str:
        with pytest.raises(ProviderError, match="first_byte_timeout"):
            await TRANSPORTS[name](QUICK).complete(endpoint(scripted_server), ASK)
        patient = TRANSPORTS[name](Timeouts(connect_s=5, first_byte_s=10, idle_s=10))
        return (await patient.complete(endpoint(scripted_server), ASK)).text

    assert asyncio.run(scenario()) == "late"


@contextlib.contextmanager
def gone_server() -> Iterator[str]:
    """The base URL of a port nothing listens on (bound, never listening: connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_a_server_that_is_gone_is_a_transient_connection_error(name: str) -> None:
    with gone_server() as base:
        end = Endpoint("openai/t", base, "sk-local")
        for call in (
            lambda: TRANSPORTS[name](QUICK).complete(end, ASK),
            lambda: streamed(TRANSPORTS[name](QUICK), end),
        ):
            with pytest.raises(ProviderError) as caught:
                asyncio.run(call())
            assert caught.value.transient and not isinstance(caught.value, StreamInterrupted)
            assert "Connect" in str(caught.value)


@contextlib.contextmanager
def unanswering_server() -> Iterator[str]:
    """The base URL of a port whose listen queue is full: the kernel drops new connection attempts,
    so a client waits on its connect like on a host that does not answer."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(0)
        with socket.create_connection(sock.getsockname()):  # fills the queue (nobody accepts)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def test_a_connection_never_accepted_ends_at_the_connect_timeout(name: str) -> None:
    with unanswering_server() as base:
        end = Endpoint("openai/t", base, "sk-local")
        quick = Timeouts(connect_s=0.5, first_byte_s=30, idle_s=30)
        for call in (
            lambda: TRANSPORTS[name](quick).complete(end, ASK),
            lambda: streamed(TRANSPORTS[name](quick), end),
        ):
            with pytest.raises(ProviderError, match=r"no connection within 0\.5 s \(connect_timeout\)") as caught:
                asyncio.run(call())
            assert caught.value.transient


# --- the gateway: what is retried, what is given up -------------------------------------------------


def gateway(server: ScriptedServer, name: str, attempts: int = 5) -> ModelGateway:
    return ModelGateway(
        Routes(endpoint(server), endpoint(server)),
        budget=Budget(Limits()),
        scheduler=Scheduler(retry=RetryPolicy(max_attempts=attempts, base_s=0.0)),
        events=EventLog(),
        transport=TRANSPORTS[name](QUICK),
    )


def errors_of(models: ModelGateway) -> list[dict[str, Any]]:
    return [e for e in models.events.trajectory if e["type"] == "model_error"]


def test_faults_before_any_text_are_retried_until_a_reply_comes(scripted_server: ScriptedServer, name: str) -> None:
    faults: list[str | Action] = [Reply(TEXT, ttft=30), Stall(), Garbage(TEXT), Fault(429, "wait", retry_after=0.1)]
    scripted_server.script("t", [*faults, Fault(500, "boom"), TEXT])
    models = gateway(scripted_server, name, attempts=6)
    origin = CallOrigin((), Role.ROOT)

    async def scenario() -> str:
        return "".join([delta async for delta in models.stream(ASK, origin)])

    assert asyncio.run(scenario()) == TEXT
    errors = [e["error"] for e in errors_of(models)]
    assert len(errors) == 5 and all(e["retry_in_s"] is not None for e in errors_of(models))
    assert "first_byte_timeout" in errors[0] and "idle_timeout" in errors[1] and "Unterminated" in errors[2]
    assert "wait" in errors[3] and errors_of(models)[3]["retry_in_s"] >= 0.1 and "boom" in errors[4]
    assert [r.outcome for r in scripted_server.settled_records("t")][-1] == "completed"


def test_whole_replies_are_retried_too(scripted_server: ScriptedServer, name: str) -> None:
    scripted_server.script("t", [Stall(), Garbage(TEXT), Drop(TEXT, after_chars=20), TEXT])
    models = gateway(scripted_server, name)
    assert asyncio.run(models.complete(ASK, CallOrigin((), Role.SUB))).text == TEXT
    assert len(errors_of(models)) == 3


def test_a_429_storm_is_waited_out(scripted_server: ScriptedServer, name: str) -> None:
    """16 calls at once, each first told 429 with Retry-After: every one waits at least that long,
    then gets its reply."""
    scripted_server.script(
        "t", lambda request: Fault(429, "slow down", retry_after=0.2) if request.index < 16 else TEXT
    )
    models = gateway(scripted_server, name)

    async def scenario() -> list[Completion]:
        return await asyncio.gather(
            *(models.complete([{"role": "user", "content": f"q{i}"}], CallOrigin((), Role.SUB)) for i in range(16))
        )

    assert [c.text for c in asyncio.run(scenario())] == [TEXT] * 16
    assert len(scripted_server.records("t")) == 32
    assert len(errors_of(models)) == 16 and all(e["retry_in_s"] >= 0.2 for e in errors_of(models))


def test_a_burst_of_500_longer_than_the_retries_ends_the_call(scripted_server: ScriptedServer, name: str) -> None:
    scripted_server.script("t", [Fault(500, "boom")] * 4)
    models = gateway(scripted_server, name, attempts=3)
    with pytest.raises(ProviderError, match="boom"):
        asyncio.run(models.complete(ASK, CallOrigin((), Role.SUB)))
    assert len(scripted_server.records("t")) == 3 and errors_of(models)[-1]["retry_in_s"] is None


def test_a_stream_broken_after_text_is_not_retried_by_the_gateway_and_is_counted(
    scripted_server: ScriptedServer, name: str
) -> None:
    """The gateway cannot take back text it has passed on: the break goes to the engine, which decides
    (below); the tokens that arrived are counted once."""
    scripted_server.script("t", [Stall(TEXT, after_chars=20), TEXT])
    models = gateway(scripted_server, name)
    seen: list[str] = []

    async def scenario() -> None:
        async for delta in models.stream(ASK, CallOrigin((), Role.ROOT)):
            seen.append(delta)

    with pytest.raises(StreamInterrupted, match="idle_timeout"):
        asyncio.run(scenario())
    (call,) = [e for e in models.events.trajectory if e["type"] == "model_call"]
    assert call["completion_tokens"] > 0 and len(scripted_server.records("t")) == 1
    assert models.total_usage.completion_tokens == call["completion_tokens"]


# --- a run: asked again once, then ended early ------------------------------------------------------

BROKEN: dict[str, Callable[[str], Action]] = {
    "reset": lambda text: Drop(text, after_chars=25),
    "stall": lambda text: Stall(text, after_chars=25),
    "malformed": lambda text: Garbage(text, after_chars=25),
}
REPLY = "Let me look at the context first, then answer.\nFINAL(the codes are 17, 42 and 99)"


def engine(server: ScriptedServer, name: str, **options: Any) -> RLM:
    return RLM(
        model="openai/test-root",
        api_base=server.base_url,
        api_key="sk-local",
        transport=SETTING[name],
        first_byte_timeout=QUICK.first_byte_s,
        idle_timeout=QUICK.idle_s,
        **options,
    )


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_reply_broken_midway_is_asked_again_from_the_start(
    scripted_server: ScriptedServer, name: str, kind: str
) -> None:
    scripted_server.script("test-root", [BROKEN[kind](REPLY), REPLY])
    result = engine(scripted_server, name).query("ctx", "Which codes?")
    assert result.status is Status.COMPLETED and result.answer == "the codes are 17, 42 and 99"
    first, again = scripted_server.settled_records("test-root")
    assert again.messages == first.messages  # the broken text never became part of the conversation
    assert [e["type"] for e in result.trajectory if e["type"] in ("stream_interrupted", "turn_retry")] == [
        "stream_interrupted",
        "turn_retry",
    ]
    calls = [e for e in result.trajectory if e["type"] == "model_call"]
    assert len(calls) == 2 and calls[0]["completion_tokens"] > 0  # the broken reply's tokens are counted
    assert result.usage.completion_tokens == sum(c["completion_tokens"] for c in calls)
    assert result.iterations == 1


def test_a_block_that_ran_before_the_break_stands_and_the_rest_is_dropped(
    scripted_server: ScriptedServer, name: str
) -> None:
    first = "```repl\nseen = len(context)\n```\nNow some prose that the provider will cut"
    scripted_server.script("test-root", [Drop(first, after_chars=first.index("Now") + 8), "FINAL_VAR(seen)"])
    result = engine(scripted_server, name, after_block="continue").query("abcdef", "q")
    assert result.status is Status.COMPLETED and result.answer == "6"
    second = scripted_server.settled_records("test-root")[1].messages
    assert second[-2]["role"] == "assistant" and second[-2]["content"].strip() == "```repl\nseen = len(context)\n```"
    assert "broke off here" in second[-1]["content"] and "Now some" not in second[-1]["content"]


def test_a_provider_that_keeps_breaking_streams_ends_the_run_early(
    scripted_server: ScriptedServer, name: str, tmp_path: Path
) -> None:
    """The first reply sets a partial answer; every later stream breaks midway. The run asks once
    more, then ends (not after its 30 turns) with provider_error, exit 4, the partial answer and the
    trajectory on disk."""
    start = '```repl\nanswer["content"] = "17 and 42 so far"\n```'
    scripted_server.script(
        "test-root", lambda request: start if request.index == 0 else Drop("I will now look further " * 5, 30)
    )
    context = tmp_path / "context.txt"
    context.write_text("some text")
    trace = tmp_path / "trace.jsonl"
    args = ["query", "--context", str(context), "--model", "openai/test-root", "--api-base", scripted_server.base_url]
    args += ["--api-key", "sk-local", "--no-cache", "--json", "--transport", SETTING[name]]
    args += ["--trace", str(trace), "q"]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == EXIT_PROVIDER, run.output
    report, _ = json.JSONDecoder().raw_decode(run.stdout, run.stdout.index("{"))
    assert report["status"] == "provider_error" and report["answer"] == "17 and 42 so far"
    assert "broke off 2 times in a row" in report["error"]
    assert len(scripted_server.records("test-root")) == 3  # the good turn, a broken one, its one retry
    ends = [json.loads(line) for line in trace.read_text().splitlines() if '"run_end"' in line]
    assert ends[-1]["status"] == "provider_error" and ends[-1]["answer"] == "17 and 42 so far"


def test_the_cli_takes_the_timeouts_as_flags(scripted_server: ScriptedServer, name: str, tmp_path: Path) -> None:
    scripted_server.script("test-root", lambda request: Reply(REPLY, ttft=30))
    context = tmp_path / "context.txt"
    context.write_text("some text")
    args = ["query", "--context", str(context), "--model", "openai/test-root", "--api-base", scripted_server.base_url]
    args += ["--api-key", "sk-local", "--no-cache", "--transport", SETTING[name]]
    args += ["--first-byte-timeout", "0.5", "--idle-timeout", "0.5", "q"]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == EXIT_PROVIDER and "within 0.5 s (first_byte_timeout)" in run.output


def test_a_stalled_stream_ends_the_run_without_a_time_limit(scripted_server: ScriptedServer, name: str) -> None:
    """No --timeout: the idle timeout alone ends a server that stops sending mid-reply for good."""
    scripted_server.script("test-root", lambda request: Stall(REPLY, after_chars=25))
    result = engine(scripted_server, name).query("ctx", "q")
    assert result.status is Status.PROVIDER_ERROR and "idle_timeout" in (result.error or "")
    assert len(scripted_server.settled_records("test-root")) == 2
    assert all(r.outcome == "disconnected" for r in scripted_server.settled_records("test-root"))


def test_a_run_whose_server_is_gone_ends_after_its_retries(name: str) -> None:
    with gone_server() as base:
        rlm = RLM(model="openai/test-root", api_base=base, api_key="sk-local", transport=SETTING[name])
        result = rlm.query("ctx", "q")
    assert result.status is Status.PROVIDER_ERROR and "Connect" in (result.error or "")
    assert len([e for e in result.trajectory if e["type"] == "model_error"]) == RetryPolicy().max_attempts
