"""The persistent response cache: hits across processes, what its key covers, streams cut short,
sampled calls, identical calls in flight, its CLI, and the budget it never bypasses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rlm.cli import main
from rlm.config import resolve_settings
from rlm.errors import BudgetExceeded
from rlm.models.cache import ResponseCache
from rlm.models.gateway import ModelGateway
from rlm.models.provider import Endpoint
from rlm.scripted import Fault, ScriptedServer
from rlm.types import CallOrigin, Role, Status
from tests.gateways import ASK, ROOT, SUB, calls_of, collect, echo, make_gateway

REPO = Path(__file__).resolve().parents[1]


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
        "from tests.test_model_cache import cached_calls\n"
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


def test_cache_stats_on_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "new" / "path"
    runner = CliRunner()
    for command in ("stats", "clear"):
        result = runner.invoke(main, ["cache", command, "--cache-dir", str(missing)])
        assert result.exit_code == 0 and f"no cache at {missing}" in result.output
    assert not missing.exists() and not (tmp_path / "new").exists()
