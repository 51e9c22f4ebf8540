"""Time to give up on a provider that stalls or breaks every stream, with no --timeout.

Each run's root model is served by the scripted server with one fault on every request; the run has
first_byte_timeout and idle_timeout of `--wait` seconds and the default retries (4 attempts with
backoff). Printed per transport: how the run ended, how many requests it made, the time it took, and
that time over the number of waits the policy allows (a stall before any text is retried like a
failed request, up to 4 attempts; one after text is asked again once, so 2 waits). A ratio near 1
means the run ended at its timeouts, plus the backoff between attempts. Before the idle timeout, a
stalled stream held a run for 600 s (litellm's default read timeout) however many chunks it had sent.

    .venv/bin/python benchmarks/bench_faults.py [--wait 1.0]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price table

from rlm import RLM
from rlm.config import DEFAULTS
from rlm.scheduler import RetryPolicy
from rlm.scripted import Action, Drop, Reply, ScriptedServer, Stall

REPLY = "Let me look at the context first, then answer.\nFINAL(the codes are 17, 42 and 99)"
ATTEMPTS = RetryPolicy().max_attempts
FAULTS: list[tuple[str, Action, int]] = [
    # (fault, the root model's every reply, waits the run may spend)
    ("reply never starts", Reply(REPLY, ttft=3600), ATTEMPTS),
    ("stall after the first chunk", Stall(), ATTEMPTS),
    ("stall mid-stream", Stall(REPLY, after_chars=25), 2),
    ("reset mid-stream", Drop(REPLY, after_chars=25), 0),
]
TRANSPORTS = {"native": "auto", "litellm": "litellm"}


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--wait", type=float, default=1.0, help="first_byte_timeout and idle_timeout, in seconds")
    args = options.parse_args()
    print(f"first_byte_timeout = idle_timeout = {args.wait:g} s, {ATTEMPTS} attempts, no --timeout")
    print(f"{'fault':>27} {'transport':>9} {'status':>15} {'requests':>8} {'gave up after':>13} {'per wait':>8}")
    with ScriptedServer() as server:
        server.script("root", [REPLY])  # litellm's first call imports for seconds: not part of any figure
        RLM(model="openai/root", api_base=server.base_url, api_key="sk-local", transport="litellm").query("a", "q")
        for label, action, waits in FAULTS:
            for transport, setting in TRANSPORTS.items():
                server.reset()
                server.script("root", lambda request, action=action: action)
                rlm = RLM(
                    model="openai/root",
                    api_base=server.base_url,
                    api_key="sk-local",
                    sandbox="inprocess",
                    cache=False,
                    transport=setting,
                    first_byte_timeout=args.wait,
                    idle_timeout=args.wait,
                )
                started = time.monotonic()
                result = rlm.query("some text", "Which codes appear?")
                took = time.monotonic() - started
                per_wait = f"{took / (waits * args.wait):.2f}x" if waits else "-"
                requests = len(server.settled_records("root"))
                row = f"{label:>27} {transport:>9} {result.status.value:>15} {requests:>8}"
                print(f"{row} {took:>12.2f}s {per_wait:>8}")
    defaults = DEFAULTS.transport
    print(
        f"with the default timeouts (first byte {defaults.first_byte_timeout:g} s, idle {defaults.idle_timeout:g} s) "
        f"a run gives up after about {ATTEMPTS * defaults.first_byte_timeout:g} s on a reply that never starts, "
        f"{ATTEMPTS * defaults.idle_timeout:g} s on a stall after the first chunk, "
        f"{2 * defaults.idle_timeout:g} s on one mid-stream (plus backoff)"
    )


if __name__ == "__main__":
    main()
