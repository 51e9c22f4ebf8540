"""Budgets that are never exceeded: each call reserves its worst case before it is sent.

Checked from both sides against the scripted server: what rlm counted, and what the server was asked
for and sent (its own token counts, priced from the same table), which is what a provider would bill.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rlm.budget import Budget, Limits
from rlm.cli import main
from rlm.events import EventLog
from rlm.models.gateway import ModelGateway
from rlm.models.pricing import price
from rlm.models.provider import Endpoint
from rlm.models.router import Routes
from rlm.scheduler import ModelLimits, RetryPolicy, Scheduler
from rlm.scripted import Fault, Reply, RequestRecord, ScriptedServer
from rlm.scripted.wire import prompt_tokens
from rlm.tokens import count_tokens
from rlm.types import CallOrigin, Role, Status

FAN_OUT = 40
FAN_CELL = (
    "```repl\n"
    f'replies = llm_query_batched([f"item {{i}}: describe it" for i in range({FAN_OUT})])\n'
    'answer["content"] = str(len(replies))\n'
    'answer["ready"] = True\n'
    "```"
)
SUB_REPLY = "word " * 40  # 40 tokens
SUB = CallOrigin((), Role.SUB)


def billed(records: list[RequestRecord]) -> tuple[int, float]:
    """Tokens and USD of what the server was asked for and sent, by its own count."""
    tokens, cost = 0, 0.0
    for record in records:
        prompt, reply = prompt_tokens(record.messages), count_tokens(record.sent_text)
        tokens += prompt + reply
        cost += price(record.model, prompt, reply)[0]
    return tokens, cost


@pytest.mark.parametrize(
    ("flags", "status"),
    [
        (["--max-cost", "0.01", "--max-completion-tokens", "100"], Status.MAX_COST),
        (["--max-tokens", "2000", "--max-completion-tokens", "100"], Status.MAX_TOKENS),
        (["--max-calls", "10"], Status.MAX_CALLS),
    ],
)
def test_a_wide_fan_out_never_spends_past_the_limit(
    scripted_server: ScriptedServer, tmp_path: Path, flags: list[str], status: Status
) -> None:
    """One llm_query_batched of 40 prompts, many in flight at once, against each kind of limit: the
    run stops at the limit and neither rlm's count nor the server's goes past it."""
    scripted_server.script("gpt-4o-mini", [FAN_CELL])
    caps: list[int | None] = []
    scripted_server.script("gpt-4o", lambda request: caps.append(request.max_tokens) or Reply(SUB_REPLY, ttft=0.02))
    context = tmp_path / "context.txt"
    context.write_text("some text")
    args = ["query", "--context", str(context), "--model", "openai/gpt-4o-mini", "--sub-model", "openai/gpt-4o"]
    args += ["--api-base", scripted_server.base_url, "--api-key", "sk-local", "--no-cache", "--json"]
    args += ["--max-iterations", "1", *flags, "q"]
    run = CliRunner().invoke(main, args)
    report, _ = json.JSONDecoder().raw_decode(run.stdout, run.stdout.index("{"))
    usage = report["usage"]
    records = scripted_server.records()
    tokens, cost = billed(records)
    assert report["status"] == status.value
    assert 1 < len(records) < 1 + FAN_OUT  # the fan-out started and was cut
    limit = float(flags[1])
    if status is Status.MAX_COST:
        assert usage["cost_usd"] <= limit and cost <= limit
    elif status is Status.MAX_TOKENS:
        assert usage["prompt_tokens"] + usage["completion_tokens"] <= limit and tokens <= limit
    else:
        assert usage["calls"] <= limit and len(records) <= limit
    # each call asked for replies no longer than the reply it reserved (none needed for a call limit)
    assert set(caps) == {100 if "--max-completion-tokens" in flags else None}


def gateway_for(server: ScriptedServer, budget: Budget, *, max_in_flight: int = 64) -> ModelGateway:
    sub = Endpoint("openai/sub", server.base_url, "sk-local")
    return ModelGateway(
        Routes(root=sub, sub=sub),
        budget=budget,
        scheduler=Scheduler(default=ModelLimits(max_in_flight=max_in_flight), retry=RetryPolicy(base_s=0.01)),
        events=EventLog(),
    )


def peak_in_flight(records: list[RequestRecord]) -> int:
    """The most requests the server was serving at once (from its arrival and end times)."""
    moments = sorted([(r.received_at, 1) for r in records] + [(r.finished_at or r.received_at, -1) for r in records])
    peak = current = 0
    for _, step in moments:
        current += step
        peak = max(peak, current)
    return peak


def test_calls_that_fit_once_others_settle_wait_instead_of_failing(scripted_server: ScriptedServer) -> None:
    """Only a few worst cases fit at once, but every call fits in the end: all are served, never more
    at once than fit, and the total stays within the limit."""
    caps: list[int | None] = []
    scripted_server.script("sub", lambda request: caps.append(request.max_tokens) or Reply("a short reply", ttft=0.02))
    budget = Budget(Limits(max_tokens=30_000))  # the default reply cap, 8192 tokens: three fit at once

    async def scenario() -> list[Any]:
        gateway = gateway_for(scripted_server, budget)
        asks = [gateway.complete([{"role": "user", "content": f"q{i}"}], SUB) for i in range(20)]
        return await asyncio.gather(*asks)

    replies = asyncio.run(scenario())
    records = scripted_server.records("sub")
    assert [r.text for r in replies] == ["a short reply"] * 20 and len(records) == 20
    assert caps == [8192] * 20
    assert peak_in_flight(records) <= 30_000 // (8192 + 1 + 4 + 3)  # a reply, "qN" and one message's framing
    assert budget.spent.total_tokens <= 30_000 and budget.reserved == 0
    assert budget.tripped is None


def test_a_reply_longer_than_its_cap_is_cut_by_the_server(scripted_server: ScriptedServer) -> None:
    """The cap is sent with the call, so the worst case reserved is the most the server can bill."""
    scripted_server.script("sub", ["word " * 500])
    budget = Budget(Limits(max_tokens=10_000, max_completion_tokens=50))
    completion = asyncio.run(gateway_for(scripted_server, budget).complete([{"role": "user", "content": "q"}], SUB))
    assert completion.finish_reason == "length" and completion.usage.completion_tokens == 50
    assert budget.spent.completion_tokens == 50


def test_streams_cut_short_and_retried_calls_count_what_they_used(scripted_server: ScriptedServer) -> None:
    """A stream the consumer stops reading counts the text it sent; a refused attempt counts nothing;
    every reservation is settled."""
    scripted_server.script("sub", [Reply("word " * 400, tps=400), Fault(500), "after a retry"])
    budget = Budget(Limits(max_tokens=100_000))

    async def scenario() -> tuple[str, str]:
        gateway = gateway_for(scripted_server, budget)
        parts = []
        stream = gateway.stream([{"role": "user", "content": "q"}], SUB)
        async for delta in stream:
            parts.append(delta)
            if len(parts) == 5:
                break
        await stream.aclose()
        retried = await gateway.complete([{"role": "user", "content": "again"}], SUB)
        return "".join(parts), retried.text

    partial, retried = asyncio.run(scenario())
    assert retried == "after a retry"
    assert budget.reserved == 0 and budget.spent.calls == 2
    read = count_tokens(partial)
    assert read <= budget.spent.completion_tokens - count_tokens("after a retry") < 400


def test_a_call_that_cannot_fit_is_not_sent(scripted_server: ScriptedServer) -> None:
    scripted_server.script("sub", ["never"])
    budget = Budget(Limits(max_tokens=500))  # the default reply cap alone is larger
    with pytest.raises(Exception, match="token limit of 500 cannot cover the next call"):
        asyncio.run(gateway_for(scripted_server, budget).complete([{"role": "user", "content": "q"}], SUB))
    assert scripted_server.records() == [] and budget.tripped is not None
    assert budget.tripped.status is Status.MAX_TOKENS


def test_a_fan_out_stopped_at_the_cost_limit_ends_cleanly_and_keeps_what_it_had(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    """A first turn sets a draft answer; the second fans out 40 sub-calls and the cost limit stops it
    midway. The run ends with max_cost (exit 3), the draft as its partial answer, nothing spent past
    the limit, no request left hanging at the server, and every sub-reply that was served in the trace."""
    draft = '```repl\nanswer["content"] = "draft: the items look alike"\n```'
    scripted_server.script("gpt-4o-mini", [draft, FAN_CELL])
    scripted_server.script("gpt-4o", lambda request: Reply(SUB_REPLY, ttft=0.02))
    context = tmp_path / "context.txt"
    context.write_text("some text")
    trace = tmp_path / "trace.jsonl"
    args = ["query", "--context", str(context), "--model", "openai/gpt-4o-mini", "--sub-model", "openai/gpt-4o"]
    args += ["--api-base", scripted_server.base_url, "--api-key", "sk-local", "--no-cache", "--json"]
    args += ["--max-cost", "0.01", "--max-completion-tokens", "100"]
    args += ["--trace", str(trace), "q"]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 3 and "Traceback" not in run.output, run.output
    report, _ = json.JSONDecoder().raw_decode(run.stdout, run.stdout.index("{"))
    assert report["status"] == Status.MAX_COST.value and report["answer"] == "draft: the items look alike"
    records = scripted_server.settled_records()
    assert report["usage"]["cost_usd"] <= 0.01 and billed(records)[1] <= 0.01
    assert all(r.outcome in ("completed", "disconnected") for r in records)
    served = [r for r in records if r.model == "gpt-4o" and r.outcome == "completed"]
    assert 1 <= len(served) < FAN_OUT
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    replies = [e["response"] for e in events if e["type"] == "model_call" and e["role"] == "sub"]
    assert 1 <= len(replies) <= len(served) and set(replies) == {SUB_REPLY}
    assert events[-1]["type"] == "run_end" and events[-1]["answer"] == "draft: the items look alike"
