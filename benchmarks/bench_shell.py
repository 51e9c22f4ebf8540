"""A batched fan-out run from the shell: `rlm query` as a whole process against its critical path.

    .venv/bin/python benchmarks/bench_shell.py [--repeat 5] [--subs 16] [--latency 1.0]

The root's first turn (`--turn` seconds to its first token) runs one REPL cell that sends `--subs`
sub-calls of `--latency` seconds in one `llm_query_batched`; its second turn answers. The critical
path is two root turns plus one sub-call. A user sees the whole process: Python start, imports, the
sandbox, the run, the exit. Printed: medians of the process wall time and of the run's own
`wall_time_s`, each against the critical path. The server runs in a thread of this process, so the
timed child is the `rlm query` process alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlm.scripted import Reply, ScriptedServer
from rlm.scripted.script import ChatRequest


def script(server: ScriptedServer, subs: int, latency: float, turn: float) -> None:
    """Model "fan-root" fans out in its first turn and answers in its second; "fan-sub" says "ok"."""

    def root(request: ChatRequest) -> Reply:
        if any(m.get("role") == "assistant" for m in request.messages):
            return Reply("FINAL(done)", ttft=turn)
        code = f'answers = llm_query_batched(["item %d" % i for i in range({subs})])\nprint(len(answers))'
        return Reply(f"```repl\n{code}\n```\n", ttft=turn)

    server.script("fan-root", root)
    server.script("fan-sub", lambda request: Reply("ok", ttft=latency))


def one_run(base_url: str, context: Path) -> tuple[float, float]:
    """(process wall time, the run's own wall_time_s) of one `rlm query` process."""
    args = ["--context", str(context), "--model", "openai/fan-root", "--sub-model", "openai/fan-sub"]
    args += ["--api-base", base_url, "--api-key", "sk-local", "--no-cache", "--json", "fan out"]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rlm", "query", *args], capture_output=True, text=True)
    process = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"rlm query failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return process, float(json.loads(done.stdout)["wall_time_s"])


def main(repeat: int, subs: int, latency: float, turn: float) -> None:
    critical = 2 * turn + latency
    with ScriptedServer() as server, tempfile.TemporaryDirectory() as scratch:
        script(server, subs, latency, turn)
        context = Path(scratch) / "context.txt"
        context.write_text("alpha beta gamma " * 1000)
        one_run(server.base_url, context)  # warm-up: the OS file cache, the server's first requests
        runs = [one_run(server.base_url, context) for _ in range(repeat)]
    process = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    spread = ", ".join(f"{r[0]:.2f}" for r in runs)
    print(f"{subs} batched sub-calls of {latency:g} s, root turns of {turn:g} s: critical path {critical:.2f} s")
    print(f"rlm query process  {process:.2f} s  ({process / critical:.3f}x; runs: {spread})")
    print(f"run's wall_time_s  {wall:.2f} s  ({wall / critical:.3f}x)")
    print(f"process overhead   +{process - wall:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (the median is printed)")
    parser.add_argument("--subs", type=int, default=16, help="sub-calls in the one batch")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per sub-call")
    parser.add_argument("--turn", type=float, default=1.075, help="seconds to the first token of each root turn")
    args = parser.parse_args()
    main(args.repeat, args.subs, args.latency, args.turn)
