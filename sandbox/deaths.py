"""Why a REPL worker was lost during a cell, in words the model can act on."""

from __future__ import annotations

from sandbox.limits import CellLimits


class WorkerLost(Exception):
    """The worker had to be killed (or died) during a cell."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(error)
        self.kind = kind
        self.error = error

    @property
    def reason(self) -> str:
        if self.kind == "timeout":
            return "the cell timed out and its worker was killed"
        if self.kind == "cpu":
            return "the cell used up its CPU time in a call that could not be interrupted and its worker was killed"
        return "the worker died or misbehaved and was killed"


SIGNAL_CAUSES = {
    "SIGKILL": "the kernel's out-of-memory killer or an outside kill",
    "SIGXCPU": "the CPU time limit",
    "SIGSEGV": "a crash",
    "SIGBUS": "a crash",
    "SIGABRT": "a crash",
    "SIGFPE": "a crash",
    "SIGILL": "a crash",
}


def death_message(ending: str | None, limits: CellLimits) -> str:
    """Why the worker died, as far as the zygote could tell, and what to do about it."""
    if ending is None:
        how = "(a crash, or the kernel's memory or CPU limit)"
    else:
        cause = SIGNAL_CAUSES.get(ending.rpartition(" ")[2])
        how = f"({ending}: {cause})" if cause else f"({ending})"
    return (
        f"the REPL worker died while running the cell {how}; the memory limit is {limits.memory_mb} MB. "
        "Work on smaller pieces of the data."
    )


def cpu_message(limits: CellLimits) -> str:
    return (
        f"CpuLimit: the cell used more than {limits.cell_cpu_s:g} s of CPU time in one call that could not be "
        "interrupted (a long loop inside a built-in, such as sum(range(10**11))), so its worker was killed. "
        "Do less per cell: work on chunks."
    )
