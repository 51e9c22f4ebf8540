"""`rlm batch` locally vs on Ray, and the cluster-wide limiter counted at the server.

    .venv/bin/python benchmarks/bench_ray.py [--jobs 24] [--latency 0.5] [--rpm 12 --period 5]

The root model is scripted to answer each job in one reply after `--latency` seconds (a provider's
time to answer), served from a thread of this process over real HTTP. Each configuration first runs a
few warm-up jobs (Ray workers import rlm once), then `--jobs` jobs; throughput is jobs per second.

1. throughput: local (--concurrency 1 and 2) vs an embedded Ray with 1 and 2 worker CPUs
2. limiter: 4 Ray workers, --max-in-flight 2 and `--rpm` requests per `--period` seconds for the
   whole cluster; the most requests the server handled at once, and the most it received in any
   `--period` window, against those limits
3. token limiter: 4 Ray workers, `--tpm-prompts` prompts' worth of tokens per `--period` for the whole
   cluster; the most prompt tokens the server received in any window (by its own count) against it
4. cost budget: `--jobs` jobs on a priced model name with --batch-max-cost of about half their cost;
   what the server was asked for and sent, priced, against the budget
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["RLM_CACHE"] = "false"  # every job must reach the server

import ray

from rlm import ray_backend
from rlm.batch import ResultsFile, load_jobs, run_batch, run_on_ray
from rlm.models.pricing import price
from rlm.scripted import Reply, ScriptedServer
from rlm.scripted.wire import prompt_tokens
from rlm.tokens import count_tokens


def write_jobs(folder: Path, n: int, prefix: str) -> Path:
    path = folder / f"{prefix}.jsonl"
    lines = (json.dumps({"question": f"{prefix} {i}", "context": "x" * (i + 1)}) for i in range(n))
    path.write_text("".join(line + "\n" for line in lines))
    return path


def timed_batch(folder: Path, server: ScriptedServer, n: int, ray_address: str | None, concurrency: int) -> float:
    """Jobs per second of one batch (after a warm-up batch on the same backend)."""
    options = {"model": "openai/root", "api_base": server.base_url, "api_key": "x", "max_iterations": 2}
    name = f"{'ray' if ray_address else 'local'}-{concurrency}"
    warm = write_jobs(folder, concurrency * 2, f"warm-{name}")
    run_batch(
        warm,
        folder / f"warm-{name}.out.jsonl",
        options,
        concurrency=concurrency,
        ray_address=ray_address,
        progress=False,
    )
    jobs = write_jobs(folder, n, name)
    start = time.perf_counter()
    rows = run_batch(
        jobs, folder / f"{name}.out.jsonl", options, concurrency=concurrency, ray_address=ray_address, progress=False
    )
    elapsed = time.perf_counter() - start
    failed = [r for r in rows.values() if r["status"] != "completed"]
    assert not failed, failed[0]
    return n / elapsed


def max_in_window(times: list[float], period: float) -> int:
    times, best, first = sorted(times), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= period:
            first += 1
        best = max(best, last - first + 1)
    return best


def max_tokens_in_window(server: ScriptedServer, period: float) -> int:
    """The most prompt tokens (the server's count) received within any `period` seconds."""
    arrivals = sorted((r.received_at, prompt_tokens(r.messages)) for r in server.records())
    return max(sum(n for u, n in arrivals if t <= u < t + period) for t, _ in arrivals)


def max_overlap(server: ScriptedServer) -> int:
    edges = sorted(e for r in server.records() for e in ((r.received_at, 1), (r.finished_at or r.received_at, -1)))
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rpm", type=int, default=12, help="requests per --period for the whole cluster")
    parser.add_argument("--period", type=float, default=5.0)
    parser.add_argument("--limit-jobs", type=int, default=30)
    parser.add_argument("--tpm-prompts", type=float, default=3.5, help="the token limit, in prompts per --period")
    args = parser.parse_args()

    with ScriptedServer() as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=args.latency))
        rates: dict[str, float] = {}
        for concurrency in (1, 2):
            rates[f"local, --concurrency {concurrency}"] = timed_batch(folder, server, args.jobs, None, concurrency)
        for cpus in (1, 2):
            rates[f"Ray, {cpus} worker(s)"] = timed_batch(folder, server, args.jobs, "local", cpus)
            ray.shutdown()
        base = rates["local, --concurrency 1"]
        print(f"throughput, {args.jobs} jobs of one {args.latency:g} s call each:")
        for name, rate in rates.items():
            print(f"  {name:26} {rate:6.2f} jobs/s  ({rate / base:.2f}x local --concurrency 1)")

        server.reset()
        server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.2))
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
        options: dict[str, Any] = {
            "model": "openai/root",
            "api_base": server.base_url,
            "api_key": "x",
            "max_iterations": 2,
            "rpm": args.rpm,
            "max_in_flight": 2,
        }
        limiter = ray_backend.start_limiter(options, period=args.period)
        out = ResultsFile(folder / "limited.out.jsonl")
        start = time.perf_counter()
        run_on_ray(load_jobs(write_jobs(folder, args.limit_jobs, "limited")), out, options, limiter=limiter)
        elapsed = time.perf_counter() - start
        stats = ray.get(limiter.stats.remote())
        ray.shutdown()
        received = [r.received_at for r in server.records()]
        print(f"limiter, 4 Ray workers, {args.limit_jobs} jobs, limits: 2 in flight, {args.rpm} per {args.period:g} s:")
        print(f"  requests at the server {len(received)}, granted by the limiter {stats['grants']}, in {elapsed:.1f} s")
        print(
            f"  most in flight at the server {max_overlap(server)} (limit 2); most received in any "
            f"{args.period:g} s window {max_in_window(received, args.period)} (limit {args.rpm})"
        )

        server.reset()
        server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.2))
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
        base = {"model": "openai/root", "api_base": server.base_url, "api_key": "x", "max_iterations": 2}
        run_on_ray(load_jobs(write_jobs(folder, 1, "probe")), ResultsFile(folder / "probe.out"), base)
        tpm = int(args.tpm_prompts * prompt_tokens(server.records()[0].messages))
        server.reset()
        server.script("root", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.2))
        limiter = ray_backend.start_limiter(base | {"tpm": tpm}, period=args.period)
        out = ResultsFile(folder / "tpm.out.jsonl")
        start = time.perf_counter()
        run_on_ray(load_jobs(write_jobs(folder, args.limit_jobs, "tpm")), out, base | {"tpm": tpm}, limiter=limiter)
        elapsed = time.perf_counter() - start
        ray.shutdown()
        print(f"token limiter, 4 Ray workers, {args.limit_jobs} jobs, limit {tpm} prompt tokens per {args.period:g} s:")
        print(
            f"  requests at the server {len(server.records())} in {elapsed:.1f} s; most prompt tokens received in "
            f"any {args.period:g} s window {max_tokens_in_window(server, args.period)} (limit {tpm})"
        )

        server.reset()
        server.script("gpt-4o-mini", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.2))
        priced = base | {"model": "openai/gpt-4o-mini", "max_completion_tokens": 50}
        probe = run_batch(write_jobs(folder, 1, "cost-probe"), folder / "cost-probe.out", priced, progress=False)
        budget = round(args.jobs * probe["0"]["cost_usd"] / 2, 6)
        server.reset()
        server.script("gpt-4o-mini", lambda request: Reply("```repl\nFINAL(len(context))\n```", ttft=0.2))
        rows = run_batch(
            write_jobs(folder, args.jobs, "cost"),
            folder / "cost.out.jsonl",
            priced,
            concurrency=4,
            ray_address="local",
            max_cost=budget,
            progress=False,
        )
        ray.shutdown()
        billed = sum(price(r.model, prompt_tokens(r.messages), count_tokens(r.sent_text))[0] for r in server.records())
        done = sum(r["status"] == "completed" for r in rows.values())
        print(f"cost budget, 4 Ray workers, {args.jobs} jobs, --batch-max-cost ${budget:g} (about half their cost):")
        print(
            f"  completed {done}, cut {len(rows) - done}; billed at the server ${billed:.6f} "
            f"({billed / budget:.0%} of the budget), counted by rlm ${sum(r['cost_usd'] for r in rows.values()):.6f}"
        )


if __name__ == "__main__":
    main()
