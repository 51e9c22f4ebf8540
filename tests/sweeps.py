"""The scenarios `rlm batch` and `rlm bench` sweeps are tested on, run alike locally and on Ray: a job
file, the options that point at the scripted server, what the server saw at one time, and the budget
sweeps whose limits are counted at the server."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from rlm.batch import run_batch
from rlm.scripted import ChatRequest, Fault, Reply, ScriptedServer

RAY_MISSING = importlib.util.find_spec("ray") is None


def length_or_refusal(request: ChatRequest) -> Reply | Fault:
    """Answers with the context's length; a question containing 'boom' gets a provider error."""
    if "boom" in json.dumps(request.messages):
        return Fault(400, "scripted refusal")
    return Reply("```repl\nFINAL(len(context))\n```")


def write_jobs(tmp_path: Path, *, boom: bool = True, n: int = 4) -> Path:
    """`n` jobs whose answer is their context's length (the first reads a file), then with `boom` one refused."""
    (tmp_path / "doc.txt").write_text("twelve chars")
    lines = [{"id": "file", "question": "how long?", "context_path": "doc.txt"}]
    lines += [{"question": f"how long {i}?", "context": "x" * (i + 1)} for i in range(n - 1)]
    if boom:
        lines.append({"id": "bad", "question": "boom", "context": "abc"})
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def batch_options(server: ScriptedServer, **extra: Any) -> dict[str, Any]:
    """The engine options of a run whose root model is the scripted server's `root`."""
    return {"model": "openai/root", "api_base": server.base_url, "api_key": "x", "max_iterations": 3, **extra}


def max_overlap(server: ScriptedServer, skip: int = 0, model: str | None = None) -> int:
    """The most requests (of `model`) the server was handling at one time, after its first `skip`."""
    edges = []
    for record in server.records()[skip:]:
        if model is not None and record.model != model:
            continue
        assert record.finished_at is not None
        edges += [(record.received_at, 1), (record.finished_at, -1)]
    now = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        now += step
        peak = max(peak, now)
    return peak


def cost_budget_sweep(server: ScriptedServer, tmp_path: Path, ray_address: str | None) -> None:
    """Six one-call jobs on a priced model under a batch budget of about three: the jobs together never
    spend past it (by rlm's count and by the server's), the cut ones name the batch's limit, a re-run
    with more budget does only those."""
    from rlm.models.pricing import price
    from rlm.scripted.wire import prompt_tokens
    from rlm.tokens import count_tokens

    server.script("gpt-4o-mini", lambda request: Reply("```repl\nFINAL(len(context))\n```"))
    options = batch_options(server, model="openai/gpt-4o-mini", max_completion_tokens=50)
    (tmp_path / "one").mkdir()
    one = run_batch(write_jobs(tmp_path / "one", boom=False, n=1), tmp_path / "one.jsonl", options, progress=False)
    cost = one["file"]["cost_usd"]
    assert cost > 0
    server.reset()
    server.script("gpt-4o-mini", lambda request: Reply("```repl\nFINAL(len(context))\n```"))
    jobs, out, budget = write_jobs(tmp_path, boom=False, n=6), tmp_path / "r.jsonl", 3.5 * cost
    rows = run_batch(jobs, out, options, concurrency=2, max_cost=budget, ray_address=ray_address, progress=False)
    billed = sum(price(r.model, prompt_tokens(r.messages), count_tokens(r.sent_text))[0] for r in server.records())
    assert sum(r["cost_usd"] for r in rows.values()) <= budget and billed <= budget
    done = {i for i, r in rows.items() if r["status"] == "completed"}
    cut = {i for i, r in rows.items() if r["status"] != "completed"}
    assert len(done) >= 2 and cut
    assert all(rows[i]["status"] == "max_cost" and rows[i]["error"].startswith("the batch's limit of $") for i in cut)
    before = len(server.records())
    again = run_batch(jobs, out, options, concurrency=2, max_cost=10 * cost, ray_address=ray_address, progress=False)
    assert len(server.records()) - before == len(cut)  # only the cut jobs ran again
    assert all(r["status"] == "completed" for r in again.values())


def bench_sweep_budgets(server: ScriptedServer, tmp_path: Path, ray_address: str | None) -> None:
    """rlm bench with --sweep-max-calls, then --sweep-max-cost (the scripted solver on priced model
    names, about $0.0008 and 3 calls per task): neither is passed, counted at the server; the tasks they
    cut name the sweep's limit, and a re-run with room runs only those."""
    from rlm.bench import run_bench
    from rlm.models.pricing import price
    from rlm.scripted.solvers import POLICIES, ROOT_MODEL, SUB_MODEL
    from rlm.scripted.wire import prompt_tokens
    from rlm.tokens import count_tokens

    server.script("gpt-4o-mini", POLICIES[ROOT_MODEL])
    server.script("gpt-4o", POLICIES[SUB_MODEL])
    common = {"model": "openai/gpt-4o-mini", "sub_model": "openai/gpt-4o", "n": 4, "length": 8192}
    common |= {"concurrency": 2, "api_base": server.base_url, "api_key": "x", "progress": False}
    common |= {"max_iterations": 4, "max_completion_tokens": 300, "ray_address": ray_address}

    calls = run_bench("oolong", out_dir=tmp_path / "calls", sweep_max_calls=5, **common)
    assert len(server.records()) <= 5
    cut = [r for r in calls if r.status != "completed"]
    assert cut and all(r.error.startswith("the sweep's limit of 5 model calls") for r in cut)
    kept = {r.id: r for r in calls if r.status == "completed"}
    again = run_bench("oolong", out_dir=tmp_path / "calls", sweep_max_calls=100, **common)
    assert all(r.status == "completed" for r in again)
    assert all(kept[r.id] == r for r in again if r.id in kept)  # finished tasks were not run again

    server.reset()
    server.script("gpt-4o-mini", POLICIES[ROOT_MODEL])
    server.script("gpt-4o", POLICIES[SUB_MODEL])
    budget = 0.0025
    costs = run_bench("oolong", out_dir=tmp_path / "cost", sweep_max_cost=budget, max_cost=0.0012, **common)
    billed = sum(price(r.model, prompt_tokens(r.messages), count_tokens(r.sent_text))[0] for r in server.records())
    assert sum(r.cost_usd for r in costs) <= budget and billed <= budget
    cut = [r for r in costs if r.status != "completed"]
    assert cut and all(r.error.startswith("the sweep's limit of $0.0025") for r in cut)
    again = run_bench("oolong", out_dir=tmp_path / "cost", sweep_max_cost=1.0, max_cost=0.0012, **common)
    assert all(r.status == "completed" for r in again)
