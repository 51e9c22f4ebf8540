"""What a call costs, from litellm's price table, and the provider prompt-cache hints that lower it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from rlm.models.pricing import litellm
from rlm.models.prompt_cache import with_cache_hints
from rlm.scripted import ScriptedServer
from rlm.types import CallOrigin, Role
from tests.gateways import ASK, calls_of, echo, make_gateway

REPO = Path(__file__).resolve().parents[1]


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


def test_self_hosted_models_priced_at_zero_are_unpriced() -> None:
    from rlm.models.pricing import usage_of

    for model in ("ollama/anything", "ollama_chat/qwen3", "hosted_vllm/x", "openai/local-name"):
        assert usage_of(model, 100, 10).priced is False, model
    assert usage_of("openai/gpt-4o-mini", 100, 10).priced is True


def test_litellms_heap_is_frozen_out_of_garbage_collection() -> None:
    """A full collection would otherwise walk litellm's ~300,000 objects with the event loop stopped.
    Checked in a fresh interpreter that rlm owns: in this one litellm may be imported already, and any
    CLI command run here freezes the heap when it ends, which would pass the check without litellm."""
    probe = "import gc\nfrom rlm.models.pricing import litellm, own_process\nown_process()\nlitellm()\n"
    probe += "print(gc.get_freeze_count())"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip().splitlines()[-1]) > 100_000


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
