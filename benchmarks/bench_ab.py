"""This checkout against an earlier commit, pair by pair, on the figures a refactor can move.

On a small, shared machine one run of a benchmark swings by more than most changes, so a figure
taken once before and once after says little. Here the two trees run in turn, A B A B ..., in the
same minutes, and the ratio is taken pair by pair. The earlier commit is checked out in a temporary
git worktree; each figure runs in a child process whose imports come from that tree alone.

    .venv/bin/python benchmarks/bench_ab.py b7d7007 --pairs 6

Figures: `gateway` (client CPU per call and per streamed call, native transport, bench_transport's
measure), `cli` (an `rlm query` process over its run's own wall_time_s) and `search` (100 keywords
over a generated text, Aho-Corasick with the RE2 prefilter).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "benchmarks"))

import bench_context  # noqa: E402
import bench_transport  # noqa: E402

from rlm.scripted import ScriptedServer  # noqa: E402

GATEWAY = """
import asyncio, json, sys
sys.path.insert(0, "benchmarks")
import bench_transport
from rlm.models.openai_transport import OpenAITransport
from rlm.scripted import ScriptedServer

async def main():
    with ScriptedServer.spawn("echo") as server:
        figures = await bench_transport.measure("native", OpenAITransport(), server.base_url, 200, 7)
    print(json.dumps({"gateway call (us)": figures["gateway call"] * 1e6,
                      "gateway stream (us)": figures["gateway stream"] * 1e6}))

asyncio.run(main())
"""

SEARCH = """
import json, sys, time
from rlm.context import Context, close
from rlm.search import search
keywords = json.loads(sys.argv[2])
ctx = Context.from_path(sys.argv[1])
started = time.perf_counter()
hits = search(keywords, ctx, max_hits=None)
print(json.dumps({"search (s)": time.perf_counter() - started, "hits": len(hits)}))
close(ctx)
"""


def run_in(tree: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`python ARGS` with the imports of `tree` only (its folder first on the path, run from there)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"bench_ab: a run in {tree} failed (exit {done.returncode}):\n{done.stderr.strip()[-2000:]}")
    return done


def gateway_figure(tree: Path) -> dict[str, float]:
    return json.loads(run_in(tree, ["-c", GATEWAY]).stdout.splitlines()[-1])


def cli_figure(base_url: str, context: Path) -> Callable[[Path], dict[str, float]]:
    args = ["query", "--context", str(context), "--model", "openai/one-turn", "--api-base", base_url]
    args += ["--api-key", "sk-local", "--no-cache", "--json", "how many words?"]

    def figure(tree: Path) -> dict[str, float]:
        started = time.monotonic()
        done = run_in(tree, ["-c", bench_transport.CLI_RUN, *args])
        process = time.monotonic() - started
        return {"rlm query over wall_time_s (s)": process - float(json.loads(done.stdout)["wall_time_s"])}

    return figure


def search_figure(path: Path, keywords: list[str]) -> Callable[[Path], dict[str, float]]:
    def figure(tree: Path) -> dict[str, float]:
        return json.loads(run_in(tree, ["-c", SEARCH, str(path), json.dumps(keywords)]).stdout)

    return figure


def paired(name: str, figure: Callable[[Path], dict[str, float]], trees: dict[str, Path], pairs: int) -> None:
    """One warm-up pair, then `pairs` pairs; per figure the medians and the pair-by-pair ratio."""
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    for index in range(pairs + 1):
        for label, tree in trees.items():
            result = figure(tree)
            if index:
                runs[label].append(result)
    (new, new_runs), (old, old_runs) = runs.items()
    for key in new_runs[0]:
        if key == "hits":
            assert [r[key] for r in new_runs] == [r[key] for r in old_runs], "the trees found different hits"
            continue
        ratios = [a[key] / b[key] for a, b in zip(new_runs, old_runs, strict=True)]
        print(
            f"{name:<8} {key:<34} {new} {statistics.median(r[key] for r in new_runs):9.3f}   "
            f"{old} {statistics.median(r[key] for r in old_runs):9.3f}   "
            f"ratio median {statistics.median(ratios):.3f} (pairs {min(ratios):.3f}-{max(ratios):.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the earlier commit (any git revision)")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--figures", default="gateway,cli,search", help="comma-separated: gateway, cli, search")
    parser.add_argument("--search-mb", type=int, default=100)
    args = parser.parse_args()
    verify = ["git", "-C", str(HERE), "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"]
    known = subprocess.run(verify, capture_output=True)
    if known.returncode:
        sys.exit(f"bench_ab: {args.base!r} is not a commit of this repository; give a hash, tag or branch.")
    with tempfile.TemporaryDirectory(prefix="rlm-ab-") as scratch:
        base = Path(scratch) / "base"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
        try:
            compile_all = [sys.executable, "-m", "compileall", "-q", "rlm", "sandbox"]
            for tree in (HERE, base):  # both start from bytecode, as an installed package would
                subprocess.run(compile_all, cwd=tree, check=True)
            trees = {"this": HERE, args.base: base}
            print(f"{args.pairs} pairs, this checkout vs {args.base}, medians (gateway in us, others in s)")
            chosen = args.figures.split(",")
            if "gateway" in chosen:
                paired("gateway", gateway_figure, trees, args.pairs)
            if "cli" in chosen:
                with ScriptedServer() as local:
                    bench_transport.one_turn(local)
                    context = Path(scratch) / "context.txt"
                    context.write_text("alpha beta gamma " * 1000)
                    paired("cli", cli_figure(local.base_url, context), trees, args.pairs)
            if "search" in chosen:
                path = Path(scratch) / "search.txt"
                keywords = bench_context.search_corpus(path, args.search_mb)
                paired("search", search_figure(path, keywords), trees, args.pairs)
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(base)], check=True)


if __name__ == "__main__":
    main()
