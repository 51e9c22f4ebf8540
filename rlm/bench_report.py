"""The summary of a bench sweep: score, cost, tokens, sub-calls and wall time per suite and length,
printed as a table and written as summary.csv, summary.json and summary.png."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlm.bench_task import TaskResult


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file, so a reader (a resumed sweep) never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


SUMMARY_FIELDS = (
    "suite",
    "method",
    "length",
    "n",
    "completed",
    "score",
    "lenient_score",
    "cost_usd",
    "cost_per_task",
    "cost_complete",
    "tokens",
    "tokens_per_task",
    "sub_calls_per_task",
    "wall_time_s_per_task",
)


def summarize(results: Iterable[TaskResult]) -> list[dict[str, Any]]:
    """One row per (suite, method, length) plus an 'all' row when there is more than one group."""
    groups: dict[tuple[str, str, Any], list[TaskResult]] = {}
    results = list(results)
    for r in results:
        groups.setdefault((r.suite, r.method, r.meta.get("length")), []).append(r)
    keyed = sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0))
    rows = [_row(*key, rs) for key, rs in keyed]
    if len(rows) > 1:
        rows.append(_row("all", results[0].method if results else "", "all", results))
    return rows


def _row(suite: str, method: str, length: Any, rs: list[TaskResult]) -> dict[str, Any]:
    n = len(rs)
    cost = sum(r.cost_usd for r in rs)
    tokens = sum(r.total_tokens for r in rs)
    return {
        "suite": suite,
        "method": method,
        "length": length,
        "n": n,
        "completed": sum(r.status == "completed" for r in rs),
        "score": round(sum(r.score for r in rs) / n, 4) if n else 0.0,
        "lenient_score": round(sum(r.lenient_score or 0.0 for r in rs) / n, 4) if n else 0.0,
        "cost_usd": round(cost, 6),
        "cost_per_task": round(cost / n, 6) if n else 0.0,
        "cost_complete": all(r.cost_complete for r in rs),
        "tokens": tokens,
        "tokens_per_task": round(tokens / n) if n else 0,
        "sub_calls_per_task": round(sum(r.sub_calls for r in rs) / n, 2) if n else 0.0,
        "wall_time_s_per_task": round(sum(r.wall_time_s for r in rs) / n, 2) if n else 0.0,
    }


def write_summary(results: list[TaskResult], out: Path, *, show: bool = True) -> list[dict[str, Any]]:
    """summary.json, summary.csv and summary.png in `out`; the table on the terminal when `show`."""
    rows = summarize(results)
    write_atomic(out / "summary.json", json.dumps(rows, indent=2))
    with (out / "summary.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    model = results[0].model if results else ""
    sub = results[0].sub_model if results else None
    plot_summary(rows, out / "summary.png", title=model + (f" + {sub}" if sub else ""))
    if show:
        _print_table(rows)
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    """The summary on stdout; `done` counts tasks that ran to an answer (not cut by a limit or an error)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="rlm bench")
    heads = ("suite", "method", "length", "done/n", "score", "cost $", "tokens/task", "sub-calls/task", "s/task")
    for name in heads:
        table.add_column(name, justify="left" if name in ("suite", "method") else "right", overflow="fold")
    for r in rows:
        cost = f"{r['cost_usd']:.4f}" + ("" if r["cost_complete"] else "*")
        table.add_row(
            str(r["suite"]),
            str(r["method"]),
            str(r["length"]),
            f"{r['completed']}/{r['n']}",
            f"{r['score']:.3f}",
            cost,
            f"{r['tokens_per_task']:,}",
            f"{r['sub_calls_per_task']:.1f}",
            f"{r['wall_time_s_per_task']:.1f}",
        )
    console = Console()
    if not console.is_terminal:  # piped or redirected: wide enough for every column
        console = Console(width=120)
    console.print(table)
    if any(not r["cost_complete"] for r in rows):
        console.print("* some calls had no known price; their cost is counted as 0")


_LENGTH_NAMES = {8192: "8K", 16384: "16K", 32768: "32K", 65536: "64K", 131072: "131K", 262144: "256K", 80000: "80K"}


def short_length(length: Any) -> str:
    """The names `--length` takes (8K .. 131K, as the papers call them); other sizes in full."""
    return _LENGTH_NAMES.get(length, f"{length:,}" if isinstance(length, int) else str(length))


def plot_summary(rows: list[dict[str, Any]], path: Path, *, title: str = "") -> None:
    """Mean score, tokens per task and cost per task by group, side by side, values written on the bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    shown = [r for r in rows if r["length"] != "all"] or rows
    names = [f"{r['suite']}\n{short_length(r['length'])}" for r in shown]
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 1.9 * len(shown) + 4), 4))
    panels = (
        ("mean score", "score", "#3b7dd8", "{:.2f}"),
        ("tokens per task", "tokens_per_task", "#5aa469", "{:,.0f}"),
        ("cost per task (USD)", "cost_per_task", "#d8863b", "{:.4f}"),
    )
    for ax, (label, key, color, fmt) in zip(axes, panels, strict=True):
        values = [r[key] for r in shown]
        bars = ax.bar(names, values, color=color)
        ax.set_title(label)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(0, 1.1 if key == "score" else max(max(values, default=0) * 1.15, 1e-9))
        if key == "cost_per_task" and not any(values):
            ax.set_yticks([])
            ax.text(0.5, 0.5, "no price known\nfor these models", ha="center", va="center", transform=ax.transAxes)
            continue
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=7, padding=2)
        if key == "tokens_per_task":
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}K"))
    method = shown[0]["method"] if shown else ""
    fig.suptitle(f"rlm bench ({method}){' · ' + title if title else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
