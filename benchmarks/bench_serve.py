"""What `rlm serve` adds on top of running the same RLM in-process with `RLM.aquery`.

    .venv/bin/python benchmarks/bench_serve.py [--requests 64] [--clients 32] [--latency 0.05]

The models are the scripted "bench" policy in its own process: each run is two root turns (50 ms
each) around one REPL cell of 8 sub-calls of `--latency` seconds. The same runs are made
  1. directly: `RLM.aquery` in this process, one at a time, then `--clients` at once;
  2. served: `rlm serve` as a real subprocess (CLI, its own event loop), called over HTTP with the
     `openai` async client, one at a time, then `--clients` at once;
  3. bare `rlm query` processes, one per run (what a tool without an OpenAI endpoint would do),
     one at a time, then `--clients` at once (`--query-requests` runs: each pays a Python start).
Printed: mean latency per run and the server's added latency (served minus direct, served minus
`rlm query`), requests per second at `--clients` concurrency for each and their ratios, and how many
served requests failed (the goal is none: nothing dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import openai

from rlm import RLM
from rlm.loop import run
from rlm.scripted import ScriptedServer

ENGINE = ["--sandbox", "inprocess", "--no-cache", "--max-in-flight", "256"]


def question(latency: float) -> str:
    return f"q [[latency={latency:g}]]"


async def timed(work: Callable[[], Awaitable[object]], n: int, clients: int) -> tuple[list[float], float, int]:
    """Run `work` n times with `clients` at once: per-run latencies, total seconds, failures."""
    latencies: list[float] = []
    failures = 0
    gate = asyncio.Semaphore(clients)

    async def one() -> None:
        nonlocal failures
        async with gate:
            started = time.perf_counter()
            try:
                await work()
            except Exception as exc:  # counted and shown: a dropped request is the figure we watch
                failures += 1
                print(f"  failed: {exc}", file=sys.stderr)
                return
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return latencies, time.perf_counter() - started, failures


def start_serve(base_url: str, clients: int) -> tuple[subprocess.Popen[str], str]:
    """`rlm serve` on a free port; returns the process and its /v1 URL once it listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")}
    env["RLM_CONFIG"] = os.devnull
    command = [sys.executable, "-m", "rlm", "serve", "--port", "0", "--max-concurrent", str(clients)]
    command += ["--model", "openai/root", "--sub-model", "openai/sub", "--api-base", base_url, "--api-key", "sk-local"]
    process = subprocess.Popen([*command, *ENGINE], stderr=subprocess.PIPE, text=True, env=env)
    assert process.stderr is not None
    for line in process.stderr:
        found = re.search(r"(http://\S+/v1)", line)
        if found:
            return process, found.group(1)
    raise SystemExit(f"rlm serve did not start (exit {process.wait()})")


def query_command(base_url: str, q: str) -> list[str]:
    """A bare `rlm query` of the same run, its context on stdin."""
    command = [sys.executable, "-m", "rlm", "query", q, "--context", "-"]
    return [*command, "--model", "openai/root", "--sub-model", "openai/sub", "--api-base", base_url, *ENGINE]


async def bare_query(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RLM_")} | {"RLM_CONFIG": os.devnull}
    env["OPENAI_API_KEY"] = "sk-local"
    process = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = await process.communicate(b"context")
    if process.returncode != 0 or out.decode().strip() != "done":
        raise RuntimeError(f"rlm query exited {process.returncode}: {err.decode()[-300:]}")


def report(name: str, latencies: list[float], seconds: float, n: int, failures: int) -> float:
    rate = (n - failures) / seconds
    mean = statistics.mean(latencies) if latencies else float("nan")
    print(f"  {name:<34} {mean * 1000:8.1f} ms/run   {rate:7.1f} runs/s   failed {failures}/{n}")
    return rate


async def main(args: argparse.Namespace) -> None:
    with ScriptedServer.spawn("bench") as models:
        engine = RLM(
            model="openai/root",
            sub_model="openai/sub",
            api_base=models.base_url,
            api_key="sk-local",
            sandbox="inprocess",
            cache=False,
            max_in_flight=256,
        )
        q = question(args.latency)

        async def direct() -> None:
            result = await engine.aquery("context", q)
            assert result.answer == "done", result.error

        await timed(direct, 2, 1)  # warm up imports and connections
        one_direct = await timed(direct, args.sequential, 1)
        many_direct = await timed(direct, args.requests, args.clients)

        process, url = start_serve(models.base_url, args.clients)
        try:
            client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)

            async def served() -> None:
                completion = await client.chat.completions.create(
                    model="rlm", messages=[{"role": "user", "content": q}]
                )
                assert completion.choices[0].message.content == "done"

            await timed(served, 2, 1)
            one_served = await timed(served, args.sequential, 1)
            many_served = await timed(served, args.requests, args.clients)
            await client.close()
        finally:
            process.terminate()
            process.wait()

        command = query_command(models.base_url, q)
        one_query = await timed(lambda: bare_query(command), args.query_sequential, 1)
        many_query = await timed(lambda: bare_query(command), args.query_requests, args.clients)

    print(f"runs of 2 root turns + 8 sub-calls of {args.latency:g} s; scripted models in their own process")
    print("one at a time:")
    report("RLM.aquery (in-process)", *one_direct[:2], args.sequential, one_direct[2])
    report("rlm serve + openai client", *one_served[:2], args.sequential, one_served[2])
    report("rlm query process per run", *one_query[:2], args.query_sequential, one_query[2])
    added = statistics.mean(one_served[0]) - statistics.mean(one_direct[0])
    saved = statistics.mean(one_query[0]) - statistics.mean(one_served[0])
    print(
        f"  added latency per request vs in-process: {added * 1000:.1f} ms; saved vs rlm query: {saved * 1000:.0f} ms"
    )
    print(f"{args.clients} clients at once, {args.requests} runs:")
    direct_rate = report("RLM.aquery (in-process)", *many_direct[:2], args.requests, many_direct[2])
    served_rate = report("rlm serve + openai client", *many_served[:2], args.requests, many_served[2])
    query_rate = report("rlm query process per run", *many_query[:2], args.query_requests, many_query[2])
    print(
        f"  served / direct throughput: {served_rate / direct_rate:.2f}x; served / rlm query: "
        f"{served_rate / query_rate:.2f}x; dropped requests: {many_served[2]}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=64, help="runs in the concurrent phase")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--sequential", type=int, default=10, help="runs in the one-at-a-time phase")
    parser.add_argument("--query-sequential", type=int, default=5, help="rlm query runs one at a time")
    parser.add_argument("--query-requests", type=int, default=16, help="rlm query runs, --clients at once")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per scripted sub-call")
    run(main(parser.parse_args()))  # uvloop where installed, the loop `rlm serve` runs on too
