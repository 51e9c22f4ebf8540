"""Concurrency of the engine against the local scripted server: fan-out, trees and streams against their ideal times.

    .venv/bin/python benchmarks/bench_concurrency.py [--quick] [--repeat 3] [--in-thread] [--call-workers 3]

The server runs in its own process (policy "bench" of rlm/scripted/policies.py), as a provider would
on another machine; `--in-thread` serves from a thread of this process instead, for comparison (it
then competes with the engine for the GIL). Timed figures are the median of `--repeat` runs. It runs on
the event loop rlm's own runs use (uvloop when installed; `RLM_LOOP=asyncio` for asyncio's).

1. fan-out: N sub-calls of L s latency under a limit of K in flight vs the ideal N/K*L, and the same
   with litellm replaced by a sleep (our engine alone)
2. a depth-2 tree (8 children x 8 sub-calls) vs its critical path (the latencies along its longest path),
   with in-process and process REPLs, and with in-process REPLs and litellm replaced by a stand-in that
   answers as the server would, without litellm's CPU (our engine alone)
3. per sub-call with zero-latency replies: a bare litellm loop (the baseline), the gateway path, our
   own code alone (gateway + scheduler + budget + pricing + events, with litellm's reply prebuilt),
   and the scheduler's slot alone
4. a serial `for` loop of llm_query calls vs the same calls batched, with and without prefetch
5. the fan-out and the tree again with `--call-workers` processes making the litellm calls
   (rlm/models/workers.py)

`--transport auto` (the default) makes the calls of rows 1, 2 and 4 with rlm's own OpenAI client,
`--transport litellm` with litellm; the rows that replace litellm by a stand-in always use litellm's
transport (the stand-in takes its place), and so do the call-worker rows (workers run litellm).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rlm.bridge import gather_items
from rlm.budget import Budget, Limits
from rlm.context import Context
from rlm.engine import EngineSettings, Tree
from rlm.events import EventLog
from rlm.fences import CodeBlock
from rlm.loop import run
from rlm.models import provider
from rlm.models.gateway import ModelGateway, Routes
from rlm.models.pricing import own_process
from rlm.models.provider import Endpoint, litellm
from rlm.models.transport import select_transport
from rlm.models.workers import CallWorkers
from rlm.node import Node
from rlm.scheduler import ModelLimits, Scheduler
from rlm.scripted import ChatRequest, Reply, ScriptedServer
from rlm.scripted.policies import BENCH_FAN_OUT, BENCH_TURN_S, POLICIES, _bench_root, _bench_sub
from rlm.scripted.wire import text_pieces
from rlm.types import CallOrigin, Role

SUB = CallOrigin((), Role.SUB)
TRANSPORT = ["auto"]  # the transport of the timed rows: --transport, or litellm while `prebuilt` stands in


def lat(seconds: float) -> str:
    """The marker that tells the bench policy how long to take over a reply."""
    return f"[[latency={seconds:g}]]"


@contextlib.contextmanager
def serve(in_thread: bool) -> Iterator[Any]:
    if not in_thread:
        with ScriptedServer.spawn("bench") as server:
            yield server
        return
    with ScriptedServer() as server:
        POLICIES["bench"](server)
        yield server


def gateway(base_url: str, max_in_flight: int, workers: CallWorkers | None = None) -> ModelGateway:
    return ModelGateway(
        Routes(root=Endpoint("openai/root", base_url, "sk-local"), sub=Endpoint("openai/sub", base_url, "sk-local")),
        budget=Budget(Limits()),
        scheduler=Scheduler(default=ModelLimits(max_in_flight=max_in_flight)),
        events=EventLog(),
        transport=select_transport(TRANSPORT[0], litellm_calls=workers),
    )


async def ask(gw: ModelGateway, prompt: str) -> str:
    return (await gw.complete([{"role": "user", "content": prompt}], SUB)).text


async def fan_out(
    base_url: str, n: int, limit: int, latency: float, workers: CallWorkers | None = None
) -> tuple[float, float]:
    gw = gateway(base_url, limit, workers)
    started = time.perf_counter()
    results = await gather_items(ask(gw, f"q{i} {lat(latency)}") for i in range(n))
    assert results == ["ok"] * n, results[:3]
    return time.perf_counter() - started, n / limit * latency


async def tree(base_url: str, latency: float, sandbox: str, call_workers: int = 0) -> tuple[float, float]:
    from rlm.api import RLM

    rlm = RLM(
        model="openai/root",
        sub_model="openai/sub",
        api_base=base_url,
        api_key="k",
        max_in_flight=64,
        cache=False,
        sandbox=sandbox,
        call_workers=call_workers,
        transport=TRANSPORT[0],
    )
    started = time.perf_counter()
    result = await rlm.aquery("ctx", f"TOPQ {lat(latency)}")
    wall = time.perf_counter() - started
    children = BENCH_FAN_OUT
    assert result.answer == "done" and result.sub_calls == children + children * BENCH_FAN_OUT, result
    return wall, 4 * BENCH_TURN_S + latency  # root turn, child turn, sub-call, child turn, root turn


_BENCH_POLICY: dict[str, Callable[[ChatRequest], Reply]] = {"openai/root": _bench_root, "openai/sub": _bench_sub}


class _PrebuiltReply:
    """Stands in for the litellm module inside rlm.models.provider, for attribution: what our engine
    costs with litellm's CPU taken out. `acompletion` asks the bench policy for the reply the server
    would send, waits its time to first token and returns it ready-made: whole, or for `stream=True`
    as chunks shaped like litellm's (the server's token pieces back to back, then the usage)."""

    async def acompletion(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        model, stream = kwargs["model"], bool(kwargs.get("stream"))
        request = ChatRequest(model, messages, stream, None, None, kwargs, 0)
        reply = _BENCH_POLICY[model](request)
        if reply.ttft:
            await asyncio.sleep(reply.ttft)
        pieces = _token_pieces(reply.text)
        # token counts as the server reports them, but cheaply: the server counts in its own process
        usage = SimpleNamespace(prompt_tokens=1 + len(str(messages)) // 4, completion_tokens=len(pieces) or 1)
        if not stream:
            message = SimpleNamespace(content=reply.text)
            return SimpleNamespace(choices=[SimpleNamespace(message=message)], usage=usage)
        return _chunks(pieces, usage)


@functools.cache
def _token_pieces(text: str) -> list[str]:
    return text_pieces(text)  # the few distinct replies are cut once: the server cuts them in its own process


async def _chunks(pieces: list[str], usage: SimpleNamespace) -> AsyncIterator[SimpleNamespace]:
    """A litellm stream: one chunk per piece, no usage until the last chunk, which has no choices.
    (An async generator, so it has the `aclose()` that provider.stream calls.)"""
    for piece in pieces:
        yield SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content=piece))], usage=None)
    yield SimpleNamespace(choices=[], usage=usage)


@contextlib.contextmanager
def prebuilt() -> Iterator[None]:
    real, provider.litellm = provider.litellm, _PrebuiltReply  # type: ignore[assignment]
    chosen, TRANSPORT[0] = TRANSPORT[0], "litellm"
    try:
        yield
    finally:
        provider.litellm = real
        TRANSPORT[0] = chosen


async def per_call(call: Callable[[int], Awaitable[Any]], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        await call(i)
    return (time.perf_counter() - started) / n


async def overhead(base_url: str, n: int, rounds: int) -> dict[str, float]:
    """Median seconds per sequential call: bare litellm, the gateway path, our code alone, the slot alone."""
    gw = gateway(base_url, 64)
    kwargs = Endpoint("openai/sub", base_url, "sk-local").request_kwargs()

    async def bare(i: int) -> Any:
        return await litellm().acompletion(messages=[{"role": "user", "content": f"q{i}"}], **kwargs)

    async def ours(i: int) -> str:
        return await ask(gw, f"q{i}")

    scheduler = Scheduler()

    async def slot(i: int) -> None:
        async with scheduler.slot("m", SUB):
            pass

    for i in range(20):  # warm both paths up (imports, connection pool)
        await bare(i)
        await ours(i)
    times: dict[str, list[float]] = {"bare": [], "gateway": [], "ours": [], "slot": []}
    # litellm logs each success later, on a worker task of the loop (seconds of CPU for hundreds of
    # calls on a busy machine): our code alone is timed first, before litellm has anything to log
    await asyncio.sleep(1.0)
    for _ in range(rounds):
        with prebuilt():  # a gateway of its own: the transport is chosen when a gateway is built
            alone = gateway(base_url, 64)
            times["ours"].append(await per_call(lambda i, alone=alone: ask(alone, f"q{i}"), n * 5))
        times["slot"].append(await per_call(slot, n * 10))
    for round_ in range(rounds):  # interleaved rounds so both see the same machine load
        # let litellm's logging drain before the next figure, and alternate the order, so neither
        # path is charged for the other's logging
        for name, call in (("bare", bare), ("gateway", ours))[:: 1 if round_ % 2 else -1]:
            await asyncio.sleep(0.5)
            times[name].append(await per_call(call, n))
    return {name: statistics.median(values) for name, values in times.items()}


async def concurrent_calls(base_url: str, n: int, via_gateway: bool) -> float:
    """Wall time of n zero-latency calls at once: what the client side costs when nothing waits."""
    gw = gateway(base_url, n)
    kwargs = Endpoint("openai/sub", base_url, "sk-local").request_kwargs()

    async def bare(i: int) -> Any:
        return await litellm().acompletion(messages=[{"role": "user", "content": f"c{i}"}], **kwargs)

    started = time.perf_counter()
    await asyncio.gather(*((ask(gw, f"c{i}") if via_gateway else bare(i)) for i in range(n)))
    return time.perf_counter() - started


async def loop_cell(base_url: str, n: int, latency: float, prefetch: bool) -> tuple[float, float]:
    """Wall time of a serial-loop cell and of the batched cell making the same calls."""
    import sandbox.policy
    from sandbox import open_session

    serial = f'out = []\nfor c in chunks:\n    out.append(llm_query(f"Summarize {{c}} {lat(latency)}"))\n'
    setup = f'chunks = ["chunk %d" % i for i in range({n})]\n'
    batched = f'out = llm_query_batched([f"Summarize {{c}} {lat(latency)}" for c in chunks])\n'
    saved = sandbox.policy.instrument
    if not prefetch:
        sandbox.policy.instrument = lambda tree, source: None  # type: ignore[assignment]
    try:
        tree_ = Tree(EngineSettings(sandbox="inprocess"), gateway(base_url, 64), EventLog())
        node = Node(tree_, (), Context.from_value("x"), "q")
        session = asyncio.ensure_future(open_session(None, node, mode="inprocess"))  # as Node.run opens it
        repl = await session
        try:
            await node._run_block(session, CodeBlock(setup, 0, 0), 1)
            times = []
            for code in (serial, batched):
                started = time.perf_counter()
                outcome = await node._run_block(session, CodeBlock(code, 1, 0), 1)
                assert outcome.error is None, outcome.error
                times.append(time.perf_counter() - started)
        finally:
            await repl.aclose()
    finally:
        sandbox.policy.instrument = saved
    return times[0], times[1]


async def with_call_workers(
    url: str, count: int, n: int, limit: int, latency: float, repeat: int, quick: bool
) -> list[tuple[str, str, str]]:
    """The fan-out and the tree again, with litellm in `count` call-worker processes (which serve only
    litellm's calls: this process's own litellm rows are the baseline)."""
    TRANSPORT[0] = "litellm"
    burst, burst_limit = (256, 64) if quick else (1024, 128)
    here = max([burst / (await fan_out(url, burst, burst_limit, 0.0))[0] for _ in range(repeat)])
    workers = CallWorkers(count)
    workers.start()
    try:
        await workers.wait_ready(120)
        await fan_out(url, 2 * limit, limit, 0.0, workers)  # warm up each worker's client
        wall, ideal, spread = median_of([await fan_out(url, n, limit, latency, workers) for _ in range(repeat)])
        there = max([burst / (await fan_out(url, burst, burst_limit, 0.0, workers))[0] for _ in range(repeat)])
    finally:
        workers.close()
    rows = [
        (
            f"fan-out {n} x {latency:g} s, {limit} in flight, {count} call workers",
            f"{wall:.2f} s (runs {spread}) vs ideal {ideal:.2f} s",
            f"{wall / ideal:.3f}",
        ),
        (
            f"throughput, {burst} zero-latency calls, {burst_limit} in flight: this process / {count} call workers",
            f"{here:.0f} / {there:.0f} calls/s (best of {repeat})",
            f"{there / here:.2f}",
        ),
    ]
    await tree(url, 0.0, "inprocess", count)  # the workers are this process's from now on: warm them
    runs = [await tree(url, 0.25 if quick else 1.0, "inprocess", count) for _ in range(repeat)]
    wall, critical, spread = median_of(runs)
    measured = f"{wall:.2f} s (runs {spread}) vs critical path {critical:.2f} s"
    rows.append((f"depth-2 tree 8 x 8, inprocess REPLs, {count} call workers", measured, f"{wall / critical:.3f}"))
    return rows


def median_of(runs: list[tuple[float, float]]) -> tuple[float, float, str]:
    walls = sorted(r[0] for r in runs)
    spread = f"{walls[0]:.2f}-{walls[-1]:.2f}" if len(walls) > 1 else ""
    return statistics.median(walls), runs[0][1], spread


async def main(quick: bool, repeat: int, in_thread: bool, call_workers: int) -> None:
    rows: list[tuple[str, str, str]] = []
    chosen = TRANSPORT[0]  # the call-worker rows switch to litellm at the end
    with serve(in_thread) as server:
        url = server.base_url
        await fan_out(url, 32, 32, 0.0)  # warm up: litellm's first calls import and build a lot
        n, limit, latency = (64, 16, 0.25) if quick else (256, 64, 1.0)
        wall, ideal, spread = median_of([await fan_out(url, n, limit, latency) for _ in range(repeat)])
        rows.append(
            (
                f"fan-out {n} x {latency:g} s, {limit} in flight",
                f"{wall:.2f} s (runs {spread}) vs ideal {ideal:.2f} s",
                f"{wall / ideal:.3f}",
            )
        )
        cost = await overhead(url, 50 if quick else 200, max(3, repeat))
        with prebuilt():
            runs = [await fan_out(url, n, limit, latency) for _ in range(repeat)]
        wall, ideal, spread = median_of(runs)
        rows.append(
            (
                f"fan-out {n} x {latency:g} s, {limit} in flight, litellm replaced by a sleep",
                f"{wall:.2f} s (runs {spread}) vs ideal {ideal:.2f} s",
                f"{wall / ideal:.3f}",
            )
        )
        for sandbox in ("inprocess", "process"):
            await tree(url, 0.0, sandbox)  # warm up: imports, the first REPL of each kind
            runs = [await tree(url, 0.25 if quick else 1.0, sandbox) for _ in range(repeat)]
            wall, critical, spread = median_of(runs)
            measured = f"{wall:.2f} s (runs {spread}) vs critical path {critical:.2f} s"
            rows.append((f"depth-2 tree 8 x 8, {sandbox} REPLs", measured, f"{wall / critical:.3f}"))
        with prebuilt():
            await tree(url, 0.0, "inprocess")
            runs = [await tree(url, 0.25 if quick else 1.0, "inprocess") for _ in range(repeat)]
        wall, critical, spread = median_of(runs)
        rows.append(
            (
                "depth-2 tree 8 x 8, in-process REPLs, litellm replaced (our engine alone)",
                f"{wall:.2f} s (runs {spread}) vs critical path {critical:.2f} s",
                f"{wall / critical:.3f}",
            )
        )
        rows.append(("per call: bare litellm, sequential", f"{cost['bare'] * 1e3:.2f} ms", "baseline"))
        extra = f"+{(cost['gateway'] - cost['bare']) * 1e3:.2f} ms"
        rows.append(("per call: gateway + scheduler, sequential", f"{cost['gateway'] * 1e3:.2f} ms", extra))
        rows.append(("per call: our code alone (reply prebuilt)", f"{cost['ours'] * 1e6:.0f} us", "target < 1 ms"))
        rows.append(("per call: scheduler slot alone", f"{cost['slot'] * 1e6:.1f} us", ""))
        m = 64 if quick else 256
        at_once: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(max(3, repeat)):
            for via_gateway in (False, True)[:: 1 if round_ % 2 else -1]:
                await asyncio.sleep(0.5)  # litellm's deferred logging of the previous figure
                at_once[via_gateway].append(await concurrent_calls(url, m, via_gateway))
        bare, ours = statistics.median(at_once[False]), statistics.median(at_once[True])
        rows.append((f"{m} zero-latency calls at once: litellm", f"{bare:.2f} s", f"{bare / m * 1e3:.2f} ms/call"))
        rows.append((f"{m} zero-latency calls at once: gateway", f"{ours:.2f} s", f"{ours / m * 1e3:.2f} ms/call"))
        for prefetch in (False, True):
            serial, batched = await loop_cell(url, 16 if quick else 32, 0.25 if quick else 0.5, prefetch)
            label = "with prefetch" if prefetch else "no prefetch"
            rows.append(
                (f"serial loop / batched, {label}", f"{serial:.2f} s / {batched:.2f} s", f"{serial / batched:.2f}")
            )
        if call_workers:  # last: the workers stay for the rest of this process
            rows.extend(await with_call_workers(url, call_workers, n, limit, latency, repeat, quick))
    width = max(len(r[0]) for r in rows)
    value = max(len(r[1]) for r in rows)
    where = "in a thread of this process" if in_thread else "in its own process"
    loop = type(asyncio.get_running_loop())
    print(f"server {where}; event loop {loop.__module__}.{loop.__name__}; transport {chosen}; medians of {repeat} runs")
    print(f"{'case':<{width}}  {'measured':<{value}}  ratio")
    for name, measured, ratio in rows:
        print(f"{name:<{width}}  {measured:<{value}}  {ratio}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller and shorter runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timed figure (the median is printed)")
    parser.add_argument("--in-thread", action="store_true", help="serve from a thread of this process")
    parser.add_argument("--call-workers", type=int, default=3, help="workers of the call-worker rows (0: none)")
    parser.add_argument("--transport", choices=["auto", "litellm"], default="auto", help="who makes the calls")
    args = parser.parse_args()
    TRANSPORT[0] = args.transport
    # this process is rlm's own, as the CLI's is: litellm's heap is frozen out of the garbage
    # collector when it is imported here too, so its ~300,000 objects are not charged to our code
    own_process()
    run(main(args.quick, args.repeat, args.in_thread, args.call_workers))  # rlm's own loop (RLM_LOOP picks)
