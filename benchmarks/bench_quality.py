"""The quality table of `rlm bench` (score, cost, tokens, sub-calls, wall time per suite, length and
method), reproduced offline with the SCRIPTED SOLVER, not an LLM.

The solver (rlm/scripted/solvers.py) is served by the local scripted server. With `--method rlm` its
root writes real REPL code that parses the context, labels every instance through `llm_query_batched`
sub-calls answered by a keyword heuristic, and aggregates in Python; with `--method direct` the same
heuristic reads the one (truncated to 128K tokens) prompt. Neither ever sees a gold answer, so the
scores are what that heuristic earns: they check the harness, the scorers and the engine together and
say nothing about a real model. Real-model figures need keys: `rlm bench SUITE --model ... --sub-model ...`.

Cost: the scripted models are served under the names openai/gpt-4o (root) and openai/gpt-4o-mini (sub),
so litellm's offline price table prices the tokens they used; the answers are still the scripted ones.

    .venv/bin/python benchmarks/bench_quality.py [--out /tmp/rlm-quality] [--concurrency 2] [--quick]

Writes quality.{csv,json,png} and each run's folder (results/, trajectories/, summary.*) under --out and
prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ["RLM_CACHE"] = "false"  # every task must reach the scripted server

from rlm.bench import run_bench
from rlm.bench_report import summarize
from rlm.scripted import ScriptedServer
from rlm.scripted.solvers import root_policy, sub_policy

ROOT, SUB = "gpt-4o", "gpt-4o-mini"  # priced aliases of solver-root and solver-sub
# (suite, --length, --n): OOLONG and its spam split at three window sizes, the 20 Pairs queries, the
# S-NIAH sweep (12 tasks cycle 8K..256K, two per size) and the fixed 80K suite.
SETS = [
    *((s, length, 6) for s in ("oolong", "oolong-spam") for length in ("8K", "32K", "131K")),
    ("oolong-pairs", None, 20),
    ("sniah", None, 12),
    ("sniah-80k", None, 4),
]
QUICK = [("oolong", "8K", 3), ("oolong-pairs", None, 3), ("sniah", "8K", 2)]


def run_all(out: Path, sets: list[tuple[str, str | None, int]], concurrency: int, seed: int) -> list[dict]:
    rows: list[dict] = []
    with ScriptedServer() as server:
        server.script(ROOT, root_policy)
        server.script(SUB, sub_policy)
        for suite, length, n in sets:
            for method in ("rlm", "direct"):
                folder = out / f"{suite}-{length or 'default'}-{method}"
                shutil.rmtree(folder, ignore_errors=True)  # a fresh measurement, never a resumed one
                start = time.monotonic()
                results = run_bench(
                    suite,
                    model=f"openai/{ROOT}",
                    sub_model=f"openai/{SUB}" if method == "rlm" else None,
                    method=method,
                    n=n,
                    length=length,
                    concurrency=concurrency,
                    out_dir=folder,
                    api_base=server.base_url,
                    api_key="sk-local",
                    seed=seed,
                    progress=False,
                    **({"cache": False} if method == "rlm" else {}),
                )
                wall = time.monotonic() - start
                for row in summarize(results):
                    if row["length"] == "all" and suite != "sniah":
                        continue
                    rows.append(row | {"suite": suite, "sweep_wall_s": round(wall, 1)})
                print(f"{suite} {length or ''} {method}: {len(results)} tasks in {wall:.1f} s", flush=True)
    return rows


def markdown(rows: list[dict]) -> str:
    head = "| suite | length | method | n | score | cost $/task | tokens/task | sub-calls/task | s/task |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['suite']} | {r['length']} | {r['method']} | {r['n']} | {r['score']:.3f} | "
            f"{r['cost_per_task']:.4f} | {r['tokens_per_task']:,} | {r['sub_calls_per_task']:.1f} | "
            f"{r['wall_time_s_per_task']:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlm.bench_report import short_length

    groups = sorted({(r["suite"], r["length"]) for r in rows if r["length"] != "all"}, key=lambda g: (g[0], g[1]))
    score = {(r["suite"], r["length"], r["method"]): r for r in rows}
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 0.9 * len(groups) + 2), 7), sharex=True)
    xs = range(len(groups))
    for offset, method, color in ((-0.2, "rlm", "#3b7dd8"), (0.2, "direct", "#999999")):
        for ax, key in zip(axes, ("score", "tokens_per_task"), strict=True):
            values = [score.get((*g, method), {}).get(key, 0) for g in groups]
            ax.bar([x + offset for x in xs], values, width=0.4, color=color, label=method)
    axes[0].set_ylim(0, 1.1)
    axes[0].set_title("mean score (scripted keyword-heuristic solver, not an LLM)")
    axes[1].set_title("tokens per task")
    axes[1].yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}K"))
    axes[1].set_xticks(list(xs), [f"{s}\n{short_length(length)}" for s, length in groups], fontsize=8)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/rlm-quality", help="output folder (default /tmp/rlm-quality)")
    parser.add_argument("--concurrency", type=int, default=2, help="tasks in parallel per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="three tiny sets (a smoke test, ~20 s)")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.monotonic()
    rows = run_all(out, QUICK if args.quick else SETS, args.concurrency, args.seed)
    (out / "quality.json").write_text(json.dumps(rows, indent=2))
    with (out / "quality.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "quality.png")
    print(markdown(rows))
    print(
        f"\ntotal {time.monotonic() - start:.0f} s; quality.csv, quality.json, quality.png and per-run folders in {out}"
    )


if __name__ == "__main__":
    main()
