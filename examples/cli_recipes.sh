#!/usr/bin/env bash
# rlm from the shell: the everyday recipes, one after the other, each printing what it shows.
#
# With no key, start the scripted model server first (it plays the demo's and the benchmarks' models):
#     python -m rlm.scripted --policy demo,solver          # http://127.0.0.1:8765/v1
#     bash examples/cli_recipes.sh
# For real models, set RLM_MODEL, RLM_SUB_MODEL (and RLM_API_BASE for a local server) and the provider's
# key variable; BENCH_MODEL and BENCH_SUB_MODEL pick the models of the benchmark recipe.
# Needs jq (https://jqlang.org) for the --json recipes.
set -euo pipefail

export RLM_MODEL="${RLM_MODEL:-openai/scripted-root}"
export RLM_SUB_MODEL="${RLM_SUB_MODEL:-openai/scripted-sub}"
export RLM_API_BASE="${RLM_API_BASE:-http://127.0.0.1:8765/v1}"
export RLM_API_KEY="${RLM_API_KEY:-sk-local}"  # the scripted server and most local servers ignore it
BENCH_MODEL="${BENCH_MODEL:-openai/solver-root}"
BENCH_SUB_MODEL="${BENCH_SUB_MODEL:-openai/solver-sub}"
PYTHON="${PYTHON:-python3}"
QUESTION="How many ERROR lines are there, and which error code is the most common?"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
step() { printf '\n### %s\n' "$*"; }

# Stand-in logs: three services' logs in a folder, one of them in a subfolder.
mkdir -p "$work/logs/old"
"$PYTHON" - "$work/logs" <<'PY'
import sys
from pathlib import Path
from rlm.scripted.demo import make_demo_log

folder = Path(sys.argv[1])
for seed, name in enumerate(["api.log", "auth.log", "old/billing.log"]):
    (folder / name).write_text(make_demo_log(1_500, seed=seed))
PY

step "one file as the context; only the answer goes to stdout"
rlm query --context "$work/logs/api.log" "$QUESTION"

step "piped files: the context read from stdin"
cat "$work"/logs/*.log | rlm query --context - "$QUESTION"

step "a folder: its text files become a list of documents, named by their paths in the folder"
rlm query --context "$work/logs" "$QUESTION"

step "several --context options and a glob make one list of documents"
rlm query --context "$work/logs/api.log" --context "$work/logs/old/*.log" "$QUESTION"

step "--json into jq: the answer, status, cost and calls of the run"
rlm query --context "$work/logs" --json "$QUESTION" \
  | jq -r '"\(.answer)\nstatus \(.status) · $\(.cost_usd) (complete: \(.cost_complete)) · \(.usage.calls) calls · \(.sub_calls) sub-calls"'

step "budgets: the whole tree stops at the first limit reached (exit code 3), the partial answer kept"
rlm query --context "$work/logs" --max-cost 0.50 --max-calls 40 --max-tokens 200000 --timeout 300 "$QUESTION"

step "a trace of every event, written as the run goes, then read back as a tree"
rlm query --context "$work/logs/api.log" --trace "$work/run.jsonl" "$QUESTION" > /dev/null
rlm view --max-lines 3 "$work/run.jsonl"

step "a batch: one question per JSONL line, results appended as jobs end (a re-run does only the missing)"
for name in api auth; do
  jq -cn --arg q "$QUESTION" --arg path "logs/$name.log" --arg id "$name" '{id: $id, question: $q, context_path: $path}'
done > "$work/jobs.jsonl"
rlm batch "$work/jobs.jsonl" --out "$work/results.jsonl" --batch-max-calls 100
jq -r '"\(.id): \(.answer)"' "$work/results.jsonl"

step "a benchmark sweep: summary table, CSV, JSON and a PNG chart; rlm view lists its tasks"
rlm bench sniah --model "$BENCH_MODEL" --sub-model "$BENCH_SUB_MODEL" --n 2 --length 8K --out "$work/bench"
ls "$work/bench"
rlm view "$work/bench"
