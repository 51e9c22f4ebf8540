"""The async API from a script: several questions over the same context, at once, with `aquery`.

Each run has its own budget; the calls of all of them share the event loop. Start the scripted server
first (`python -m rlm.scripted --policy demo`) or set RLM_MODEL / RLM_SUB_MODEL / RLM_API_BASE.
"""

import asyncio
import os

from rlm import RLM
from rlm.scripted.demo import DEMO_QUESTION, make_demo_log


async def main() -> None:
    rlm = RLM(
        model=os.environ.get("RLM_MODEL", "openai/scripted-root"),
        sub_model=os.environ.get("RLM_SUB_MODEL", "openai/scripted-sub"),
        api_base=os.environ.get("RLM_API_BASE", "http://127.0.0.1:8765/v1"),
        api_key=os.environ.get("RLM_API_KEY", "sk-local"),
        max_cost=0.5,  # per run: each aquery gets its own budget
    )
    logs = {name: make_demo_log(3_000, seed=seed) for name, seed in (("monday", 1), ("tuesday", 2))}
    results = await asyncio.gather(*(rlm.aquery(log, DEMO_QUESTION) for log in logs.values()))
    for name, result in zip(logs, results, strict=True):
        print(f"{name}: [{result.status}] {result.answer}")


if __name__ == "__main__":
    asyncio.run(main())
