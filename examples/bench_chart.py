"""A benchmark sweep and its chart: S-NIAH at two context lengths, the RLM against the paper's
one-call baseline (`--method direct`), compared in one PNG and as bars in the terminal.

Runs with no key: a scripted server in this process plays the "solver" models, heuristic programs
that answer the benchmark honestly from what they are shown (not LLMs, so the scores say nothing about
any model). Each sweep also writes rlm bench's own summary (CSV, JSON, PNG) and a trajectory per task
in its folder; `rlm view OUT/rlm-8K` lists the tasks. With real models the same sweep is

    rlm bench sniah --model openai/gpt-5 --sub-model openai/gpt-5-mini --length 32K --n 50 --out OUT/rlm-32K
    rlm bench sniah --method direct --model openai/gpt-5 --length 32K --n 50 --out OUT/direct-32K
"""

import argparse
import json
from pathlib import Path
from typing import Any

from rlm.bench import run_bench
from rlm.scripted import ScriptedServer, solvers

LENGTHS = ("8K", "32K")
METHODS = ("rlm", "direct")
FIGURES = (("score", "mean score", "{:.2f}"), ("tokens_per_task", "tokens per task", "{:,.0f}"))


def sweep(out: Path, n: int) -> dict[str, list[dict[str, Any]]]:
    """Both methods at every length, each sweep in its own folder; each method's summary row per length."""
    rows: dict[str, list[dict[str, Any]]] = {method: [] for method in METHODS}
    with ScriptedServer() as server:
        root, sub = solvers.install(server)
        for method in METHODS:
            for length in LENGTHS:
                folder = out / f"{method}-{length}"
                run_bench(
                    "sniah",
                    model=f"openai/{root}",
                    sub_model=f"openai/{sub}",
                    api_base=server.base_url,
                    api_key="sk-local",
                    n=n,
                    length=length,
                    method=method,
                    out_dir=folder,
                    progress=False,
                    cache=False,
                )
                rows[method] += json.loads((folder / "summary.json").read_text())
    return rows


def text_chart(rows: dict[str, list[dict[str, Any]]]) -> str:
    """Horizontal bars, one per method and length, for each figure: readable in any terminal or log."""
    lines = []
    for key, title, fmt in FIGURES:
        top = max(row[key] for method_rows in rows.values() for row in method_rows) or 1
        lines.append(title)
        for method, method_rows in rows.items():
            for row in method_rows:
                bar = "█" * round(30 * row[key] / top)
                lines.append(f"  {method:6} {row['length'] // 1024:>4}K {bar:30} {fmt.format(row[key])}")
    return "\n".join(lines)


def png_chart(rows: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """The same figures as grouped bars (matplotlib, which rlm bench uses for its own charts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FIGURES), figsize=(10, 4))
    width = 0.8 / len(rows)
    for ax, (key, title, fmt) in zip(axes, FIGURES, strict=True):
        for i, (method, method_rows) in enumerate(rows.items()):
            xs = [j + i * width for j in range(len(method_rows))]
            bars = ax.bar(xs, [row[key] for row in method_rows], width, label=method)
            ax.bar_label(bars, labels=[fmt.format(row[key]) for row in method_rows], fontsize=7)
        ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(LENGTHS))], LENGTHS)
        ax.set_ylim(0, max(row[key] for method_rows in rows.values() for row in method_rows) * 1.15 or 1)
        ax.set_title(title)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right")
    fig.suptitle("S-NIAH: RLM vs one call (scripted solver models)")
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-example"), help="results folder (resumable)")
    parser.add_argument("--n", type=int, default=4, help="tasks per length")
    args = parser.parse_args()
    rows = sweep(args.out, args.n)
    print(text_chart(rows))
    png_chart(rows, args.out / "comparison.png")
    print(f"\nchart: {args.out / 'comparison.png'}; each sweep's own summary.png is in its folder under {args.out}")


if __name__ == "__main__":
    main()
