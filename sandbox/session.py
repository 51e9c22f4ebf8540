"""Host side of a REPL session: the engine's handle, asyncio-native, one worker per session.

`ProcessSession` is the security boundary: cells run in a confined worker process; the host waits
on it without blocking the loop, answers its sub-calls through the `HostBridge`, kills it at the
deadline and restarts it with the state it kept (see `_recover`). `InProcessSession` runs the same
interpreter in a host thread: same interface and policy, but NOT a boundary (no memory cap, no
hard kill, the host's memory is reachable to an escape); use it only for trusted code and as the
overhead baseline.

This module opens one; `interface.py` holds what both share (Session, HostBridge, answering a
sub-call, reading an outcome), `process_session.py` and `inprocess.py` the two kinds, and
`deaths.py` how a lost worker is described.
"""

from __future__ import annotations

from typing import Any, Literal

from sandbox.interface import HostBridge, SandboxError, Session, answer_call
from sandbox.limits import CellLimits
from sandbox.process_session import ProcessSession

__all__ = [
    "HostBridge",
    "ProcessSession",
    "SandboxError",
    "Session",
    "answer_call",
    "open_session",
]


async def open_session(
    context_spec: dict[str, Any] | None,
    bridge: HostBridge,
    limits: CellLimits | None = None,
    mode: Literal["process", "inprocess"] = "process",
    *,
    policy: bool = True,
    os_layer: bool = True,
) -> Session:
    """Start a REPL session; raises SandboxError if it cannot start.

    `policy=False` and `os_layer=False` exist for tests and benchmarks of each layer on its own
    (process mode only): they turn off the language policy or the worker's OS layer."""
    limits = limits or CellLimits()
    if mode == "process":
        session = ProcessSession(context_spec, bridge, limits, policy=policy, os_layer=os_layer)
        await session.start()
        return session
    if mode == "inprocess":
        # imported here: the interpreter and its policy (~9 ms) are the worker's in process mode
        from sandbox.inprocess import InProcessSession
        from sandbox.repl import build_context

        try:
            context = build_context(context_spec)
        except Exception as exc:
            raise SandboxError(f"cannot build the context: {type(exc).__name__}: {exc}") from exc
        return InProcessSession(context, bridge, limits)
    raise ValueError(f"unknown sandbox mode {mode!r}: use 'process' or 'inprocess'")
