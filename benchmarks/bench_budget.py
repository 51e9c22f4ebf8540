"""Budget overshoot under fan-out: one llm_query_batched of many prompts against each kind of limit.

Each call reserves its worst case (its prompt and the longest reply it is sent with, at its price)
before it is sent, so the overshoot must be 0 whatever the width of the fan-out. The server's own
count of what it was asked for and sent (priced from the same table) is what a provider would bill;
it is printed beside rlm's count, with how much of the limit was used (how tight the reservations are)
and how many of the calls were sent. `unlimited` is the same run without a limit, for scale.

    .venv/bin/python benchmarks/bench_budget.py [--prompts 200] [--max-in-flight 64]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price table

from rlm import RLM
from rlm.models.pricing import price
from rlm.scripted import Reply, ScriptedServer
from rlm.scripted.wire import prompt_tokens
from rlm.tokens import count_tokens

ROOT, SUB = "gpt-4o-mini", "gpt-4o"
SUB_REPLY = "a short finding about this item " * 8  # ~56 tokens


def fan_cell(prompts: int) -> str:
    return (
        "```repl\n"
        f'replies = llm_query_batched([f"item {{i}}: describe it" for i in range({prompts})])\n'
        'answer["content"] = str(len(replies))\nanswer["ready"] = True\n```'
    )


def billed(server: ScriptedServer) -> tuple[int, float, int]:
    """Tokens, USD and requests the server saw, by its own count."""
    tokens, cost = 0, 0.0
    records = server.records()
    for record in records:
        prompt, reply = prompt_tokens(record.messages), count_tokens(record.sent_text)
        tokens += prompt + reply
        cost += price(record.model, prompt, reply)[0]
    return tokens, cost, len(records)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--prompts", type=int, default=200)
    options.add_argument("--max-in-flight", type=int, default=64)
    args = options.parse_args()
    runs: list[tuple[str, dict[str, float | int], str | None]] = [
        ("unlimited", {}, None),
        ("max_cost $0.02, reply cap 100", {"max_cost": 0.02, "max_completion_tokens": 100}, "max_cost"),
        ("max_cost $0.05, reply cap 8192", {"max_cost": 0.05}, "max_cost"),
        ("max_tokens 4000, reply cap 100", {"max_tokens": 4000, "max_completion_tokens": 100}, "max_tokens"),
        ("max_tokens 40000, reply cap 8192", {"max_tokens": 40_000}, "max_tokens"),
        ("max_calls 25", {"max_calls": 25}, "max_calls"),
    ]
    print(f"fan-out of {args.prompts} sub-calls ({SUB}), {args.max_in_flight} in flight, root {ROOT}")
    print(
        f"{'limit':>34} {'status':>10} {'sent':>9} {'rlm count':>12} {'server count':>13} {'used':>6} {'overshoot':>9}"
    )
    with ScriptedServer() as server:
        for label, limits, kind in runs:
            server.reset()
            server.script(ROOT, [fan_cell(args.prompts)])
            server.script(SUB, lambda request: Reply(SUB_REPLY, ttft=0.05, tps=500))
            rlm = RLM(
                model=f"openai/{ROOT}",
                sub_model=f"openai/{SUB}",
                api_base=server.base_url,
                api_key="sk-local",
                sandbox="inprocess",
                cache=False,
                max_iterations=1,
                max_in_flight=args.max_in_flight,
                **limits,
            )
            result = rlm.query("some text", "q")
            tokens, cost, requests = billed(server)
            usage = result.usage
            if kind == "max_cost":
                cap, ours, theirs, unit = float(limits["max_cost"]), usage.cost_usd, cost, "$"
            elif kind == "max_tokens":
                cap, ours, theirs, unit = float(limits["max_tokens"]), usage.total_tokens, tokens, ""
            else:
                cap = float(limits.get("max_calls", 0))
                ours, theirs, unit = usage.calls, requests, ""
            shown = (lambda v: f"${v:.4f}") if unit else (lambda v: f"{v:,.0f}")
            used = f"{theirs / cap:.0%}" if kind else "-"
            overshoot = f"{max(0.0, theirs - cap) / cap:.0%}" if kind else "-"
            sent = f"{requests}/{args.prompts + 1}"
            row = f"{label:>34} {result.status.value:>10} {sent:>9} {shown(ours):>12} {shown(theirs):>13}"
            print(f"{row} {used:>6} {overshoot:>9}")
            if not kind:
                print(f"{'':>34} {'':>10} {'':>9} {tokens:>12,} tokens ${cost:.4f}")


if __name__ == "__main__":
    main()
