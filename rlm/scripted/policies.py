"""Named setups for a standalone scripted server (`python -m rlm.scripted --policy NAME`).

Each entry scripts the models it serves on the server it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rlm.scripted import demo, solvers
from rlm.scripted.script import ChatRequest, Reply
from rlm.scripted.server import ScriptedServer

ECHO_MODEL = "echo"


def _echo_reply(request: ChatRequest) -> Reply:
    last = request.messages[-1].get("content", "") if request.messages else ""
    return Reply(last if isinstance(last, str) else str(last))


def echo(server: ScriptedServer) -> None:
    """Model "echo" answers every request with the content of its last message."""
    server.script(ECHO_MODEL, _echo_reply)


# Benchmarks (benchmarks/bench_concurrency.py) say in the prompt how long a reply takes: "q3 [[latency=1.0]]".
LATENCY = re.compile(r"\[\[latency=(\d+(?:\.\d+)?)\]\]")
BENCH_TURN_S = 0.05  # the time of each root-model turn of the benchmark tree
BENCH_FAN_OUT = 8  # children of the tree's root, and sub-calls of each child


def _latency(text: str) -> float:
    match = LATENCY.search(text)
    return float(match.group(1)) if match else 0.0


def _bench_sub(request: ChatRequest) -> Reply:
    last = request.messages[-1].get("content", "") if request.messages else ""
    return Reply("ok", ttft=_latency(str(last)))


def _bench_root(request: ChatRequest) -> Reply:
    """A depth-2 tree: the root (its question holds "TOPQ") fans out to 8 children, each child makes
    8 sub-calls with the latency its question carries, and everyone answers on its next turn."""
    seen = str(request.messages)
    if any(m.get("role") == "assistant" for m in request.messages):
        return Reply("FINAL(done)", ttft=BENCH_TURN_S)
    marker = f"[[latency={_latency(seen):g}]]"
    items = "child" if "TOPQ" in seen else "q"
    call = "rlm_query_batched" if items == "child" else "llm_query_batched"
    code = f'print({call}(["{items} %d {marker}" % i for i in range({BENCH_FAN_OUT})]))'
    return Reply(f"```repl\n{code}\n```\n", ttft=BENCH_TURN_S)


def bench(server: ScriptedServer) -> None:
    """Model "sub" answers "ok" after the latency its prompt names; model "root" plays a depth-2 tree."""
    server.script("sub", _bench_sub)
    server.script("root", _bench_root)


POLICIES: dict[str, Callable[[ScriptedServer], object]] = {
    "echo": echo,
    "bench": bench,  # models root and sub (benchmarks/bench_concurrency.py)
    "demo": demo.install_demo,  # models scripted-root and scripted-sub
    "solver": solvers.install,  # models solver-root and solver-sub (benchmark suites)
}
