"""The offline demo: a generated service log and two SCRIPTED models that solve a question about it.

The scripted root model writes real REPL code (search, a batched fan-out, an answer) the way an LLM
would; the scripted sub-model extracts error codes from the lines it is sent. Nothing here is an LLM;
it exists so a newcomer can watch the engine stream, run code, fan out and stop, with no key.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

from rlm.scripted.script import ChatRequest, Reply
from rlm.scripted.server import ScriptedServer

if TYPE_CHECKING:
    from rlm.api import RLM

DEMO_QUESTION = "How many ERROR lines does the log have, and which error code is the most common?"

SERVICES = ("api", "auth", "billing", "search", "worker")
MESSAGES = ("request served", "cache refreshed", "user logged in", "job queued", "health check ok")


def make_demo_log(lines: int, seed: int = 7) -> str:
    """A seeded service log; about 4% of lines are errors with a code like E042."""
    rng = random.Random(seed)
    codes = [f"E{n:03d}" for n in rng.sample(range(1, 200), 12)]
    weights = [rng.random() ** 2 for _ in codes]
    out = []
    for i in range(lines):
        stamp = f"2026-03-{1 + i * 28 // max(lines, 1):02d}T{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}"
        service = rng.choice(SERVICES)
        if rng.random() < 0.04:
            code = rng.choices(codes, weights)[0]
            out.append(f"{stamp} service={service} level=ERROR code={code} msg=request failed")
        else:
            out.append(f"{stamp} service={service} level=INFO msg={rng.choice(MESSAGES)}")
    return "\n".join(out) + "\n"


STEPS = [
    """Let me look at the size and the first lines of the log.
```repl
print(len(context), "characters")
print(context[:240])
```
""",
    """Now I collect the ERROR lines and ask the sub-model for their codes, in parallel chunks.
```repl
from collections import Counter
texts = context.values() if hasattr(context, "values") else [context]  # a list of documents, or one text
error_lines = [str(line) for text in texts for line in text.splitlines() if "level=ERROR" in line]
chunks = ["\\n".join(error_lines[i:i + 100]) for i in range(0, len(error_lines), 100)]
replies = llm_query_batched(
    ["List the error code (like E123) of every line, comma-separated:\\n" + chunk for chunk in chunks]
)
counts = Counter(code.strip() for reply in replies for code in reply.split(",") if code.strip())
print(len(error_lines), "ERROR lines in", len(chunks), "chunks; top codes:", counts.most_common(3))
```
I expect a few hundred error lines; once the counts are back I will report the most common code.
""",
    """The counts are complete, so I can answer.
```repl
top_code, times = counts.most_common(1)[0]
answer["content"] = f"{len(error_lines)} ERROR lines; the most common code is {top_code} ({times} times)."
answer["ready"] = True
```
I have submitted the answer; this sentence is never paid for, because the stream is cancelled first.
""",
]


def root_policy(request: ChatRequest) -> str:
    """The rest of the plan after the blocks that have already run, as a model would continue it."""
    done = sum(str(m["content"]).count("Code executed:") for m in request.messages if m["role"] == "user")
    return "".join(STEPS[done:]) or "FINAL(no more steps)"


def sub_policy(request: ChatRequest) -> str:
    return ", ".join(re.findall(r"code=(E\d+)", request.messages[-1]["content"]))


ROOT_MODEL, SUB_MODEL = "openai/scripted-root", "openai/scripted-sub"


def demo_rlm(server: ScriptedServer, **options: Any) -> RLM:
    """An RLM whose models are the demo's scripted ones on `server`; `options` as for RLM."""
    from rlm.api import RLM

    options.setdefault("api_key", "sk-local")
    return RLM(model=ROOT_MODEL, sub_model=SUB_MODEL, api_base=server.base_url, **options)


def install_demo(server: ScriptedServer) -> None:
    server.script("scripted-root", root_policy)
    server.script("scripted-sub", lambda request: Reply(sub_policy(request), ttft=0.3))
