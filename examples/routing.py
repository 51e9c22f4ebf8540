"""Routing and fallbacks: a Python router picks the model of each call, and a fallback takes a call
when its model fails past its retries.

Runs with no key: a scripted model server runs in this process and plays three models. The router
sends the sub-calls with long prompts to "big-sub", which is overloaded (every request gets a 503), so
after its retries each of those calls falls back to "scripted-sub", as `fallbacks` says; the short
ones go straight to the default sub-model. The run's trajectory says which model served every call
and why. With real models the same code reads, for instance:

    router = long_prompts_to("openai/gpt-5")
    RLM(model="openai/gpt-5", sub_model="openai/gpt-5-mini", router=router,
        fallbacks={"openai/gpt-5": ["anthropic/claude-sonnet-4-5"]})
"""

from collections import Counter
from collections.abc import Callable
from typing import Any

from rlm.scripted import Fault, ScriptedServer
from rlm.scripted.demo import DEMO_QUESTION, demo_rlm, install_demo, make_demo_log
from rlm.types import CallOrigin, Role

LONG_PROMPT_CHARS = 4_000


def long_prompts_to(model: str) -> Callable[[CallOrigin, list[dict[str, Any]]], str | None]:
    """A router: sub-calls whose prompt is longer than LONG_PROMPT_CHARS go to `model`; every other
    call (None) follows the default rule (root turns to the root model, sub-calls to the sub-model)."""

    def route(origin: CallOrigin, messages: list[dict[str, Any]]) -> str | None:
        prompt = str(messages[-1].get("content", ""))
        if origin.role is Role.SUB and len(prompt) > LONG_PROMPT_CHARS:
            return model
        return None

    return route


def main() -> None:
    with ScriptedServer() as server:
        install_demo(server)  # scripted-root plans, scripted-sub extracts error codes
        server.script("big-sub", lambda request: Fault(503, "big-sub is overloaded", retry_after=0.2))
        rlm = demo_rlm(
            server,
            router=long_prompts_to("openai/big-sub"),
            fallbacks={"openai/big-sub": ["openai/scripted-sub"]},
            cache=False,  # every call reaches the server, so the routes show each time it runs
        )
        result = rlm.query(make_demo_log(5_000), DEMO_QUESTION)
        overloaded = len(server.records("big-sub"))

    print(result.answer)
    calls = Counter(
        (event["role"], event["model"], event["reason"]) for event in result.trajectory if event["type"] == "model_call"
    )
    print("\ncalls by role, model and reason:")
    for (role, model, reason), n in sorted(calls.items()):
        print(f"  {n:3} x {role:4} {model:22} {reason}")
    fallbacks = [event for event in result.trajectory if event["type"] == "model_fallback"]
    print(f"\n{overloaded} requests to the overloaded big-sub; {len(fallbacks)} calls fell back:")
    for event in fallbacks[:3]:
        print(f"  {event['model']} -> {event['fallback']}: {event['error']}")
    print(f"\n{result}")


if __name__ == "__main__":
    main()
