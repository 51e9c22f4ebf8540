"""Serve a scripted policy standalone, for manual use: `python -m rlm.scripted --port 8765 --policy echo`."""

from __future__ import annotations

import argparse
import contextlib
import threading

from rlm.scripted.policies import POLICIES
from rlm.scripted.server import ScriptedServer


def served_models(policy: str) -> list[str]:
    """The model names `policy` scripts, read off an unstarted server so the help can name them."""
    server = ScriptedServer()
    POLICIES[policy](server)
    return sorted(server._scripts)


def main(argv: list[str] | None = None) -> None:
    listing = "\n".join(f"  {name:8} serves {', '.join(served_models(name))}" for name in sorted(POLICIES))
    epilog = (
        f"policies and the models they serve (as --model openai/NAME --api-base http://127.0.0.1:PORT/v1):\n{listing}"
    )
    parser = argparse.ArgumentParser(
        prog="python -m rlm.scripted",
        description=__doc__,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--policy", default="echo", help=f"one of: {', '.join(sorted(POLICIES))}; several comma-separated (demo,solver)"
    )
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--tps", type=float, default=None, help="tokens per second (default: instant)")
    args = parser.parse_args(argv)
    policies = [name.strip() for name in args.policy.split(",") if name.strip()]
    for name in policies or [""]:
        if name not in POLICIES:
            parser.error(f"unknown policy {name!r}; choose one of: {', '.join(sorted(POLICIES))}")
    with ScriptedServer(ttft=args.ttft, tps=args.tps, port=args.port) as server:
        for name in policies:
            POLICIES[name](server)
        models = ", ".join(model for name in policies for model in served_models(name))
        print(
            f"scripted model server (policy {args.policy!r}: {models}) at {server.base_url}; Ctrl-C stops it",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
