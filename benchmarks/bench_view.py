"""`rlm view --html` on a big run: a synthesised 1,000-call trace (the events a real run writes, with
realistic text sizes), its read and render times, the page's weight, and its load in headless chromium.

The tree: a root of `--turns` turns, each turn a cell fanning out to `--children` children with
`rlm_query_batched`; each child has two turns, the first a cell making its share of the sub-calls with
`llm_query_batched`. Chromium's time is the wall time of a `--dump-dom` run (start, load, run the
page's script, print the DOM), against the same run on an empty page: the ratio, and the difference,
are what the page itself costs. Chromium's start-up varies with the machine's load, so the page also
times itself (navigation to its load event and a forced layout) against an empty page under the same
policy. Best of `--repeat` runs each.

    .venv/bin/python benchmarks/bench_view.py [--calls 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rlm.view import load_trace
from rlm.view.html import render_html
from rlm.view.page import page_html

PROMPT = "Classify this item: " + "lorem ipsum dolor sit amet " * 55  # about 1,500 characters
RESPONSE = "label: positive; reason: " + "the text says so clearly " * 15  # about 400 characters
TIMER = (
    'window.addEventListener("load", function () { document.body.offsetHeight; '
    'document.title = "loaded in " + Math.round(performance.now()) + " ms"; });'
)
CODE = "items = context.split('\\n')\nlabels = llm_query_batched([f'Classify: {x}' for x in items[:50]])\nprint(labels)"


EMPTY_TITLE = "empty"
BATCH = 8  # sub-calls of a child in flight at once


def synthetic_events(calls: int, turns: int, children: int) -> list[dict[str, Any]]:
    """A completed run's events with about `calls` model calls, spread as the docstring says."""
    t = 1_800_000_000.0
    events: list[dict[str, Any]] = []

    def emit(kind: str, dt: float = 0.0, **fields: Any) -> None:
        nonlocal t
        t += dt
        events.append({"type": kind, "t": t, **fields})

    def call(path: list[int], role: str, latency: float, dt: float) -> None:
        sub = role != "root"
        emit(
            "model_call",
            dt,
            path=path,
            role=role,
            model="openai/gpt-5-mini" if sub else "openai/gpt-5",
            prompt_tokens=400 if sub else 12_000,
            completion_tokens=90 if sub else 350,
            cost_usd=0.0003 if sub else 0.02,
            cached=sub and len(events) % 7 == 0,
            latency_s=latency,
            finish_reason="stop",
            prompt=PROMPT if sub else None,
            response=RESPONSE if sub else None,
        )

    n_children = turns * children
    per_child = max(1, (calls - turns - 1 - 2 * n_children) // n_children)
    emit("run_start", question="Which items are positive?", models={"root": "openai/gpt-5", "sub": "openai/gpt-5-mini"})
    emit("node_start", path=[], question="Which items are positive?")
    child = 0
    for turn in range(1, turns + 1):
        emit("turn_start", 0.01, path=[], iteration=turn)
        call([], "root", 2.0, 2.0)
        emit("turn_end", path=[], iteration=turn, text=f"Let me look.\n```repl\n{CODE}\n```", answered=False)
        emit("cell_start", 0.001, path=[], iteration=turn, index=0, code=CODE)
        for _ in range(children):
            path = [child]
            emit("node_start", 0.002, path=path, question=f"Look at part {child}")
            emit("turn_start", path=path, iteration=1)
            call(path, "root", 1.2, 1.2)
            emit("cell_start", path=path, iteration=1, index=0, code=CODE)
            for i in range(per_child):  # batches of BATCH at once, each call ending after its own latency
                latency = 0.6 + (i % BATCH) * 0.05
                call(path, "sub", latency, latency if i % BATCH == 0 else 0.05)
            emit("cell_end", 0.1, path=path, iteration=1, index=0, stdout=RESPONSE * 3, duration_s=2.0)
            emit("turn_start", path=path, iteration=2)
            call(path, "root", 0.8, 0.8)
            emit("node_end", path=path, status="completed", answer="positive: 3, 9, 14", iterations=2)
            child += 1
        emit("cell_end", 0.5, path=[], iteration=turn, index=0, stdout="done " * 100, duration_s=5.0)
    emit("turn_start", 0.01, path=[], iteration=turns + 1)
    call([], "root", 1.5, 1.5)
    emit("node_end", path=[], status="completed", answer="positive: 3, 9, 14", iterations=turns + 1)
    emit("run_end", status="completed", answer="positive: 3, 9, 14")
    return events


def best_of(repeat: int, run: Any) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def chromium_load_s(browser: str, page: Path, profile: Path) -> float:
    """Wall time of one headless chromium run that loads `page`, runs its script and prints the DOM."""
    command = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"]
    command += [f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()]
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, timeout=120)
    return time.perf_counter() - started


def in_page_ms(browser: str, page: str, folder: Path) -> int:
    """Milliseconds from navigation to the load event plus a forced layout, as the page itself measures
    it (a copy of the page with a timing script whose hash joins the policy), free of chromium's start-up."""
    digest = base64.b64encode(hashlib.sha256(TIMER.encode()).digest()).decode()
    timed = page.replace("script-src '", f"script-src 'sha256-{digest}' '", 1)
    timed = timed.replace("</body>", f"<script>{TIMER}</script></body>", 1)
    path = folder / "timed.html"
    path.write_text(timed, encoding="utf-8")
    command = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run"]
    command += [f"--user-data-dir={folder / 'profile'}", "--dump-dom", path.resolve().as_uri()]
    dom = subprocess.run(command, capture_output=True, check=True, timeout=120, text=True).stdout
    match = re.search(r"<title>loaded in (\d+) ms</title>", dom)
    if match is None:
        raise RuntimeError("the timing script did not run: " + dom[:300])
    return int(match.group(1))


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--calls", type=int, default=1000)
    options.add_argument("--turns", type=int, default=5)
    options.add_argument("--children", type=int, default=4, help="per root turn")
    options.add_argument("--repeat", type=int, default=3)
    args = options.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trace_file = folder / "run.jsonl"
        events = synthetic_events(args.calls, args.turns, args.children)
        trace_file.write_text("".join(json.dumps(event) + "\n" for event in events))
        trace = load_trace(trace_file)
        cells = sum(len(node.cells()) for node in trace.nodes.values())
        read_s = best_of(args.repeat, lambda: load_trace(trace_file))
        render_s = best_of(args.repeat, lambda: render_html(trace, "run.jsonl"))
        page = folder / "run.html"
        page.write_text(render_html(trace, "run.jsonl"), encoding="utf-8")
        print(
            f"trace: {len(trace.calls):,} calls, {cells:,} cells, {len(trace.nodes):,} nodes, "
            f"{trace_file.stat().st_size / 1024:,.0f} KB of JSONL"
        )
        print(f"read {read_s * 1000:,.0f} ms · render_html {render_s * 1000:,.0f} ms")
        print(f"page {page.stat().st_size / 1024:,.0f} KB, {len(trace.calls) + cells:,} timeline bars")
        browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if browser is None:
            print("no chromium on PATH: the load in a browser is not measured")
            return
        empty = folder / "empty.html"
        empty.write_text("<!DOCTYPE html><title>empty</title>")
        chromium_load_s(browser, empty, folder / "profile")  # a first run sets the profile up
        base = best_of(args.repeat, lambda: chromium_load_s(browser, empty, folder / "profile"))
        loaded = best_of(args.repeat, lambda: chromium_load_s(browser, page, folder / "profile"))
        print(
            f"chromium --dump-dom: empty page {base:.2f} s, this page {loaded:.2f} s: "
            f"ratio {loaded / base:.2f}, the page costs {(loaded - base) * 1000:,.0f} ms"
        )
        empty_ms = min(
            in_page_ms(browser, page_html(EMPTY_TITLE, "", script=False), folder) for _ in range(args.repeat)
        )
        page_ms = min(in_page_ms(browser, page.read_text(), folder) for _ in range(args.repeat))
        print(
            f"in the page (navigation to load and layout): empty page {empty_ms} ms, this page {page_ms} ms: "
            f"ratio {page_ms / max(empty_ms, 1):.1f}"
        )


if __name__ == "__main__":
    main()
