"""Sandbox costs: per-cell round trip, worker start, idle memory; in-process mode as the baseline.
Then the OS layer (sandbox/oslayer.py) on vs off, and how many attacks it contains with the language
policy off (the attack lists of tests/sandbox).

Run: .venv/bin/python benchmarks/bench_sandbox.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

from sandbox import CellLimits, open_session
from sandbox.session import ProcessSession

CELLS = 2_000
STARTS = 30
IDLE_SESSIONS = 10


class NullBridge:
    async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> object:
        return ""


def _memory_kb(pid: int | str) -> tuple[int, int]:
    """RSS and PSS of a process, in kB."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                fields[parts[0]] = int(parts[1])
    return fields["Rss:"], fields["Pss:"]


async def _per_cell_us(mode: str, **options: bool) -> tuple[float, float]:
    async with await open_session(None, NullBridge(), CellLimits(), mode=mode, **options) as session:
        for _ in range(100):
            await session.run_cell("x = 1")
        samples = []
        for _ in range(CELLS):
            started = time.perf_counter()
            await session.run_cell("x = 1")
            samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6, statistics.quantiles(samples, n=100)[98] * 1e6


async def _start_ms(mode: str, **options: bool) -> float:
    samples = []
    for _ in range(STARTS):
        started = time.perf_counter()
        session = await open_session(None, NullBridge(), mode=mode, **options)
        samples.append(time.perf_counter() - started)
        await session.aclose()
    return statistics.median(samples) * 1e3


async def _idle_memory() -> tuple[int, int, int]:
    sessions = [await open_session(None, NullBridge()) for _ in range(IDLE_SESSIONS)]
    readings = [_memory_kb(s.worker_pid) for s in sessions if isinstance(s, ProcessSession) and s.worker_pid]
    for session in sessions:
        await session.aclose()
    before, _ = _memory_kb("self")
    inprocess = [await open_session(None, NullBridge(), mode="inprocess") for _ in range(50)]
    after, _ = _memory_kb("self")
    for session in inprocess:
        await session.aclose()
    rss = statistics.mean(r[0] for r in readings)
    pss = statistics.mean(r[1] for r in readings)
    return round(rss), round(pss), round((after - before) / 50)


async def main() -> None:
    started = time.perf_counter()
    first = await open_session(None, NullBridge())
    cold_ms = (time.perf_counter() - started) * 1e3
    await first.aclose()
    process_cell = await _per_cell_us("process")
    inprocess_cell = await _per_cell_us("inprocess")
    process_start = await _start_ms("process")
    inprocess_start = await _start_ms("inprocess")
    rss, pss, inprocess_kb = await _idle_memory()
    rows = [
        ("trivial cell, median (us)", f"{process_cell[0]:.0f}", f"{inprocess_cell[0]:.0f}"),
        ("trivial cell, p99 (us)", f"{process_cell[1]:.0f}", f"{inprocess_cell[1]:.0f}"),
        ("session start, warm (ms)", f"{process_start:.1f}", f"{inprocess_start:.2f}"),
        ("first session, cold zygote (ms)", f"{cold_ms:.0f}", "-"),
        ("idle session RSS (kB)", f"{rss:,}", f"{inprocess_kb:,} (host growth)"),
        ("idle session PSS (kB)", f"{pss:,}", "-"),
    ]
    print(f"{'sandbox':34} {'process':>10} {'inprocess':>22}")
    for name, process, inprocess in rows:
        print(f"{name:34} {process:>10} {inprocess:>22}")
    ratio = process_cell[0] / inprocess_cell[0]
    print(f"process/inprocess per-cell ratio: {ratio:.1f}x; target under 1 ms: {process_cell[0] < 1000}")
    await _os_layer()


async def _os_layer() -> None:
    """Cell latency and session start with the OS layer on vs off; attacks contained with the policy off."""
    on_cell, off_cell = await _per_cell_us("process"), await _per_cell_us("process", os_layer=False)
    on_start, off_start = await _start_ms("process"), await _start_ms("process", os_layer=False)
    print(f"\n{'OS layer':34} {'on':>10} {'off':>10} {'on/off':>8}")
    for name, on, off in [
        ("trivial cell, median (us)", on_cell[0], off_cell[0]),
        ("trivial cell, p99 (us)", on_cell[1], off_cell[1]),
        ("session start, warm (ms)", on_start, off_start),
    ]:
        print(f"{name:34} {on:>10.1f} {off:>10.1f} {on / off:>7.2f}x")
    print(f"target under 1 ms a cell with the OS layer on: {on_cell[0] < 1000}")
    contained, total = await _contained_without_policy()
    print(f"attacks contained with the language policy off: {contained}/{total}")


def _attack_cases() -> tuple[list[tuple[str, str]], str]:
    """(code, what its outcome must show) of every attack in tests/sandbox, and the probe file's path."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "sandbox"))
    from test_sandbox_attacks import ATTACKS
    from test_sandbox_oslayer import OS_ATTACKS, PROBE

    return [(code, needle) for _, code, needle in OS_ATTACKS] + [(code, "") for _, code, _, _ in ATTACKS], str(PROBE)


async def _contained_without_policy() -> tuple[int, int]:
    """Each attack of the test lists, run as plain Python with only the OS layer: contained when no host
    file leaks, no probe file appears, the OS attack's expected failure shows, and the session still runs."""
    cases, probe = await asyncio.to_thread(_attack_cases)  # the test module starts a session as it loads
    contained = 0
    async with await open_session(None, NullBridge(), CellLimits(timeout_s=1.0), policy=False) as session:
        for code, needle in cases:
            outcome = await session.run_cell(code)
            seen = (outcome.error or "") + outcome.stdout
            alive = await session.run_cell("print('alive')")
            leaked = "root:" in seen or os.path.exists(probe)
            contained += needle in seen and not leaked and alive.stdout == "alive\n"
    return contained, len(cases)


if __name__ == "__main__":
    asyncio.run(main())
