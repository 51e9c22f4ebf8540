"""Client CPU per model call: rlm's own OpenAI transport vs litellm, side by side in one run.

    .venv/bin/python benchmarks/bench_transport.py [--calls 200] [--repeat 3] [--no-cli]

Both transports call the same scripted server (policy "echo", in its own process, so this process's
CPU time is the client's alone), `--calls` requests at once, and the CPU time of this process is
divided by the calls (or by the streamed chunks). Figures for the transport alone and for the whole
gateway path (gateway + scheduler + budget + pricing + events + transport). Per streamed chunk: the
CPU of streams of a long reply minus that of streams of a one-token reply, over the extra chunks.

Then `rlm query` as a whole process on a one-turn run, against the run's own `wall_time_s`: what
starting Python, importing rlm and the first request cost a user on top of the run itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rlm.budget import Budget, Limits
from rlm.events import EventLog
from rlm.loop import run
from rlm.models import provider
from rlm.models.gateway import ModelGateway, Routes
from rlm.models.openai_transport import OpenAITransport
from rlm.models.provider import Endpoint
from rlm.models.transport import Transport
from rlm.scheduler import ModelLimits, Scheduler
from rlm.scripted import Reply, ScriptedServer
from rlm.tokens import count_tokens
from rlm.types import CallOrigin, Completion, Role

SUB = CallOrigin((), Role.SUB)
LONG = " ".join(f"word{i}" for i in range(150))  # echoed back: ~300 streamed chunks


def messages(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def cpu_of(calls: Callable[[], list[Awaitable[Any]]], repeat: int) -> float:
    """Median CPU seconds of this process to run `calls()` all at once."""
    samples = []
    for _ in range(repeat):
        await asyncio.sleep(0.3)  # litellm finishes its deferred logging of the previous round first
        started = time.process_time()
        await asyncio.gather(*calls())
        samples.append(time.process_time() - started)
    return statistics.median(samples)


async def drain(stream: Any) -> int:
    count = 0
    async for _delta in stream:
        count += 1
    return count


def transport_calls(transport: Transport, end: Endpoint, n: int, text: str, stream: bool) -> list[Awaitable[Any]]:
    if not stream:
        return [transport.complete(end, messages(f"{i} {text}")) for i in range(n)]
    done: list[Completion] = []
    return [drain(transport.stream(end, messages(f"{i} {text}"), done.append)) for i in range(n)]


def gateway_calls(gateway: ModelGateway, n: int, text: str, stream: bool) -> list[Awaitable[Any]]:
    if not stream:
        return [gateway.complete(messages(f"{i} {text}"), SUB) for i in range(n)]
    return [drain(gateway.stream(messages(f"{i} {text}"), SUB)) for i in range(n)]


async def measure(name: str, transport: Transport, base_url: str, n: int, repeat: int) -> dict[str, float]:
    end = Endpoint("openai/echo", base_url, "sk-local")
    gateway = ModelGateway(
        Routes(root=end, sub=end),
        budget=Budget(Limits()),
        scheduler=Scheduler(default=ModelLimits(max_in_flight=n)),
        events=EventLog(),
        transport=transport,
    )
    await asyncio.gather(*transport_calls(transport, end, 20, "warm", False))  # imports, connections
    await asyncio.gather(*transport_calls(transport, end, 20, LONG, True))
    chunks = await drain(transport.stream(end, messages(f"0 {LONG}"), lambda c: None))
    figures = {}
    for label, make in (
        ("transport", lambda text, stream: transport_calls(transport, end, n, text, stream)),
        ("gateway", lambda text, stream: gateway_calls(gateway, n, text, stream)),
    ):
        call = await cpu_of(lambda make=make: make("hi", False), repeat) / n
        short = await cpu_of(lambda make=make: make("hi", True), repeat) / n
        long = await cpu_of(lambda make=make: make(LONG, True), repeat) / n
        figures[f"{label} call"] = call
        figures[f"{label} stream"] = short
        figures[f"{label} chunk"] = (long - short) / (chunks - 2)
    print(f"  measured {name}", file=sys.stderr)
    return figures


CLI_RUN = """
import sys, time
started = time.monotonic()
from rlm.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("litellm" in sys.modules, file=sys.stderr)
"""


def cli_process(base_url: str, transport: str) -> tuple[float, float, bool]:
    """(process wall time, the run's own wall_time_s, whether litellm was imported) of one `rlm query`."""
    with tempfile.TemporaryDirectory() as scratch:
        context = Path(scratch) / "context.txt"
        context.write_text("alpha beta gamma " * 1000)
        args = ["query", "--context", str(context), "--model", "openai/one-turn", "--api-base", base_url]
        args += ["--api-key", "sk-local", "--no-cache", "--json", "--transport", transport, "how many words?"]
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", CLI_RUN, *args], capture_output=True, text=True, check=True)
        process = time.monotonic() - started
    report = json.loads(done.stdout)
    return process, float(report["wall_time_s"]), done.stderr.strip().endswith("True")


def one_turn(server: ScriptedServer) -> None:
    """A root that counts in code and submits in its first reply, then streams a tail it never needs."""
    code = "```repl\nn = len(context.split())\nFINAL(str(n))\n```\n"
    server.script("one-turn", lambda request: Reply(code + "The count is done. " * 200, ttft=0.05, tps=2000))


async def main(n: int, repeat: int, cli: bool) -> None:
    with ScriptedServer.spawn("echo") as server:
        results = {
            "native": await measure("native", OpenAITransport(), server.base_url, n, repeat),
            "litellm": await measure("litellm", provider, server.base_url, n, repeat),
        }
    print(f"client CPU per call, {n} calls at once against the scripted server; medians of {repeat} rounds")
    print(f"{'figure':<28}  {'native':>10}  {'litellm':>10}  litellm/native")
    for key in results["native"]:
        native, other = results["native"][key], results["litellm"][key]
        print(f"{key:<28}  {native * 1e6:8.1f}us  {other * 1e6:8.1f}us  {other / native:8.1f}x")
    if not cli:
        return
    with ScriptedServer() as local:  # in a thread: the timed process is the `rlm query` child
        one_turn(local)
        count_tokens("warm the server's encoding")
        print("\n`rlm query`, one-turn run, process wall time vs the run's own wall_time_s (target: within 0.5 s)")
        for transport in ("auto", "litellm"):
            runs = [cli_process(local.base_url, transport) for _ in range(repeat)]
            process = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            imported = "imports litellm" if runs[0][2] else "no litellm import"
            print(
                f"--transport {transport:<8} process {process:.2f} s, wall_time_s {wall:.2f} s: "
                f"+{process - wall:.2f} s ({imported})"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls at once per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per figure (the median is printed)")
    parser.add_argument("--no-cli", action="store_true", help="skip the `rlm query` process timing")
    args = parser.parse_args()
    run(main(args.calls, args.repeat, not args.no_cli))
