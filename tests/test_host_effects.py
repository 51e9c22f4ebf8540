"""Using rlm from Python leaves the host process as it found it: `gc`, the environment, `sys.modules`.

A notebook's kernel that runs queries must not end up with a frozen heap, variables it did not set
or modules that no import made. The run happens in a fresh interpreter, so what this test process
imported or set before cannot hide an effect.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from rlm.scripted import ScriptedServer

PROBE = """
import gc, json, os, sys

def state():
    return {"frozen": gc.get_freeze_count(), "environ": dict(os.environ)}

before, modules = state(), dict(sys.modules)
import rlm
from rlm import RLM

results = []
for sandbox in ("process", "inprocess"):
    engine = RLM(
        model="openai/test-root", sub_model="openai/test-sub", api_base=sys.argv[1], api_key="sk-local",
        sandbox=sandbox, transport="litellm",
    )
    result = engine.query("some context", "q")
    results.append([result.status.value, result.answer, result.error])
after = state()
replaced = sorted(name for name, module in modules.items() if sys.modules.get(name) is not module)
made = "__repl__" in sys.modules  # the module cells' classes name, registered while a REPL runs here
print(json.dumps({"before": before, "after": after, "results": results, "replaced": replaced, "made": made}))
"""


def test_queries_leave_gc_environment_and_modules_as_they_were(scripted_server: ScriptedServer) -> None:
    cell = '```repl\nfrom dataclasses import dataclass\n@dataclass\nclass P:\n    x: "int"\nFINAL(str(P(1).x))\n```'
    scripted_server.script("test-root", [cell, cell])
    env = {k: v for k, v in os.environ.items() if k not in ("LITELLM_LOCAL_MODEL_COST_MAP", "TIKTOKEN_CACHE_DIR")}
    run = subprocess.run(
        [sys.executable, "-c", PROBE, scripted_server.base_url], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["results"] == [["completed", "1", None], ["completed", "1", None]]
    assert report["after"]["frozen"] == report["before"]["frozen"] == 0
    assert report["after"]["environ"] == report["before"]["environ"]
    assert report["replaced"] == []
    assert report["made"] is False
