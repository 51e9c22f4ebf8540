"""The worker process: one per REPL session, confined by rlimits, running cells for the host.

It is forked from the zygote (already warm), receives its context spec and limits, rebuilds the
context (an mmap, no copy), lowers its own limits and then serves cells until the host hangs up.
A SIGALRM timer (wall time) and a SIGPROF timer (CPU time) stop pure-Python overruns inside the
worker (state survives); the kernel's CPU limit, just past the cell's CPU time, and the host's deadline
stop everything else (a C-level call) by killing the process.
"""

from __future__ import annotations

import math
import random
import resource
import signal
import sys
from typing import Any

from sandbox import oslayer
from sandbox.limits import CellLimits
from sandbox.protocol import BlockingChannel, ChannelClosed
from sandbox.repl import CellCpuLimit, CellTimeout, Interpreter, build_context

_RETRIGGER_S = 0.25
_FD_LIMIT = 64


def serve(fd: int) -> None:
    """Run the worker on channel `fd` until the host closes it."""
    channel = BlockingChannel(fd)
    try:
        init = channel.recv()
        limits = CellLimits.from_dict(init["limits"])
        context = build_context(init.get("context_spec"))
    except ChannelClosed:
        return
    except Exception as exc:
        channel.send({"op": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return

    def call_host(name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        # neither timer may fire mid-message: paused while the host answers
        paused = [(timer, signal.setitimer(timer, 0)) for timer in (signal.ITIMER_REAL, signal.ITIMER_PROF)]
        try:
            # the answer so far rides along, so the host keeps it if the run is cancelled mid-call
            channel.send({"op": "call", "name": name, "args": args, "kwargs": kwargs, "answer": interp.answer_so_far()})
            return channel.recv()
        finally:
            for timer, (left, interval) in paused:
                if left or interval:
                    signal.setitimer(timer, left or interval, interval)

    interp = Interpreter(context, limits, call_host, policy=init.get("policy", True) is not False)

    def on_alarm(signum: int, frame: Any) -> None:
        if interp.running:
            raise CellTimeout(f"the cell ran longer than {limits.timeout_s:g} s and was stopped")

    def on_cpu(signum: int, frame: Any) -> None:
        if interp.running:
            raise CellCpuLimit(f"the cell used more than {limits.cell_cpu_s:g} s of CPU time and was stopped")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGPROF, on_cpu)
    random.seed()  # every worker is forked from the same zygote: do not share its random state
    _confine(limits)
    # From here on nothing new is opened: the channel, the context's mmap and every module are in place.
    layers = oslayer.drop(enabled=init.get("os_layer", True) is not False)
    channel.send({"op": "ready", "os_layer": layers})
    while True:
        try:
            message = channel.recv()
        except ChannelClosed:
            return
        try:
            if message["op"] == "run":
                reply = _timed(
                    limits, limits.timeout_s, limits.cell_cpu_s, interp.run, message["code"], message.get("cell")
                )
            elif message["op"] == "restore":
                replay, snapshot, names = message["replay"], message["snapshot"], message["names"]
                reply = _timed(limits, limits.restore_s, limits.restore_s, interp.restore, replay, snapshot, names)
            else:
                return
        except MemoryError:  # the cell left too little memory to even report: say so, keep serving
            reply = _OUT_OF_MEMORY
        except Exception as exc:  # a bug of ours must not take the session's state down with it
            reply = {"op": "done", "error": f"internal REPL error: {type(exc).__name__}: {exc}"}
        _send(channel, reply)


def _send(channel: BlockingChannel, reply: dict[str, Any]) -> None:
    """Send a reply; if it cannot be encoded, drop its snapshot (never the cell's result)."""
    try:
        channel.send(reply)
        return
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        problem = f"{type(exc).__name__}: {exc}"[:200]
    if "snapshot" in reply:
        notice = f"the variables could not be saved for a restart ({problem}); a restart would lose them"
        lighter = {**reply, "snapshot": {}, "notice": "; ".join(filter(None, [reply.get("notice"), notice]))}
        try:
            channel.send(lighter)
            return
        except (ValueError, TypeError, OverflowError, RecursionError, MemoryError):
            pass
    channel.send(
        {"op": reply.get("op", "done"), "error": f"internal REPL error: the reply could not be sent ({problem})"}
    )


_OUT_OF_MEMORY = {
    "op": "done",
    "error": "MemoryError: the REPL is out of memory; delete big variables (del name) to free it",
    "error_kind": "memory",
}


def _timed(limits: CellLimits, seconds: float, cpu_s: float, run: Any, *args: Any) -> Any:
    """Run with a `seconds` wall timer and a `cpu_s` CPU timer (each a CellTimeout into pure
    Python), and the kernel's CPU limit a little past `cpu_s`: its SIGXCPU (default action: the
    process ends) stops a C-level call the timers cannot interrupt, well before the host's deadline."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu_cap = math.ceil(used.ru_utime + used.ru_stime + cpu_s + limits.kill_grace_s)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_cap, resource.RLIM_INFINITY))
    signal.setitimer(signal.ITIMER_REAL, seconds, _RETRIGGER_S)
    signal.setitimer(signal.ITIMER_PROF, cpu_s, _RETRIGGER_S)
    try:
        return run(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)


def _confine(limits: CellLimits) -> None:
    """Lower the worker's own limits; nothing it runs afterwards can raise them again."""
    with open("/proc/self/statm") as statm:
        address_space = int(statm.read().split()[0]) * resource.getpagesize()
    cap = address_space + limits.memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (_FD_LIMIT, _FD_LIMIT))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    sys.setrecursionlimit(depth + 20 + limits.recursion)
