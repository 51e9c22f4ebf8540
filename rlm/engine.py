"""The engine's entry: a tree of RLM nodes (rlm/node.py) run under one budget and deadline.

`Tree` is what every node of one run shares; `run_tree` runs the root node and turns however the run
ended into a `TreeOutcome`. The budget trips or the deadline passes -> the root task is cancelled, and
cancellation flows down to every child, stream and REPL it started.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from rlm.budget import Budget
from rlm.config import DEFAULTS, Settings
from rlm.context import Context
from rlm.errors import BudgetExceeded, ContextError, ProviderError
from rlm.events import EventLog
from rlm.models.gateway import ModelGateway
from rlm.node import Node, NodeResult
from rlm.types import Status, Usage
from sandbox import CellLimits, SandboxError


@dataclass(frozen=True)
class EngineSettings:
    """What the node loop needs of the settings; its defaults are `Settings`' (rlm/config.py)."""

    max_iterations: int = DEFAULTS.limits.max_iterations
    # RLM levels, the root included: 1 means rlm_query falls back to llm_query
    max_depth: int = DEFAULTS.limits.max_depth
    # "stop": the reply is cut at its first block, which runs at once; the model sees real output before
    #   it writes more, so it cannot build on (or FINAL) outputs it imagined. Fastest in
    #   benchmarks/bench_streaming.py (1.7x "wait", 1.3x "continue"), 72% fewer output tokens.
    # "continue": blocks run as their fences close while the reply keeps streaming.
    # "wait": blocks run after the whole reply has arrived (the official rlms behaviour, a baseline).
    after_block: str = DEFAULTS.output.after_block
    max_output_chars: int = DEFAULTS.output.max_output_chars
    sandbox: str = DEFAULTS.sandbox.mode  # "process" (a security boundary) or "inprocess" (trusted code only)
    cell_limits: CellLimits = field(default_factory=CellLimits)

    @classmethod
    def of(cls, settings: Settings, context: Context) -> EngineSettings:
        """The engine's part of resolved settings; the REPL's memory cap grows with the context."""
        sandbox = settings.sandbox
        cell_timeout = sandbox.cell_timeout or CellLimits().timeout_s
        return cls(
            max_iterations=settings.limits.max_iterations,
            max_depth=settings.limits.max_depth,
            after_block=settings.output.after_block,
            max_output_chars=settings.output.max_output_chars,
            sandbox=sandbox.mode,
            cell_limits=CellLimits(
                timeout_s=cell_timeout,
                cpu_s=sandbox.cell_cpu or cell_timeout / 2,
                memory_mb=sandbox.memory_mb or sandbox_memory_for(context),
            ),
        )


def sandbox_memory_for(context: Context) -> int:
    """The default REPL memory cap in MB: the sandbox's room for cell work plus a full str copy of the
    context (up to 4 bytes a character), so `context.split()`-style code on a large context fits."""
    return CellLimits().memory_mb + 4 * context.describe()["total_chars"] // 2**20


@dataclass
class Tree:
    """What every node of one run shares."""

    settings: EngineSettings
    gateway: ModelGateway
    events: EventLog
    children: int = 0  # child RLMs started by rlm_query, all levels
    # child sessions alive at once, run-wide, per level below the root (rlm/bridge.py: HostCalls.rlm_query)
    session_slots: dict[int, asyncio.Semaphore] = field(default_factory=dict)


@dataclass
class TreeOutcome:
    """What a run came to: the root's answer and status, and what the whole tree spent."""

    answer: str | None
    status: Status
    iterations: int
    error: str | None
    wall_time_s: float
    usage: Usage
    usage_by_model: dict[str, Usage]
    sub_calls: int


async def run_tree(
    tree: Tree, budget: Budget, context: Context, question: str, *, keep_cancelled: bool = False
) -> TreeOutcome:
    """Run the root node under the tree-wide budget and deadline.

    Budget exhaustion or the deadline cancels the root task, and through it every descendant. With
    `keep_cancelled` (the CLI and the sync API) an outside cancellation (Ctrl-C) also returns the
    partial result instead of propagating.
    """
    started = time.monotonic()
    root = Node(tree, (), context, question)
    task = asyncio.ensure_future(root.run())
    budget.on_trip(lambda exceeded: task.cancel())
    remaining = budget.remaining_s()
    deadline = None
    if remaining is not None:
        deadline = asyncio.get_running_loop().call_later(
            max(0.0, remaining),
            budget.trip,
            Status.TIMEOUT,
            f"the time limit of {budget.limits.timeout_s:g} s was reached",
        )
    try:
        result = await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if budget.tripped is not None:
            result = NodeResult(root.partial, budget.tripped.status, root.turns, str(budget.tripped))
        elif keep_cancelled:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            result = NodeResult(root.partial, Status.INTERRUPTED, root.turns, "interrupted by the user")
        else:
            raise
    except BudgetExceeded as exceeded:
        result = NodeResult(root.partial, exceeded.status, root.turns, str(exceeded))
    except ProviderError as failure:
        result = NodeResult(root.partial, Status.PROVIDER_ERROR, root.turns, str(failure))
    except SandboxError as failure:
        result = NodeResult(root.partial, Status.ERROR, root.turns, f"the REPL could not run: {failure}")
    except ContextError as failure:
        result = NodeResult(root.partial, Status.ERROR, root.turns, str(failure))
    finally:
        if deadline is not None:
            deadline.cancel()
    gateway = tree.gateway
    outcome = TreeOutcome(
        answer=result.answer,
        status=result.status,
        iterations=result.iterations,
        error=result.error,
        wall_time_s=time.monotonic() - started,
        usage=gateway.total_usage,
        usage_by_model=dict(gateway.usage_by_model),
        sub_calls=gateway.sub_calls + tree.children,
    )
    tree.events.emit("run_end", status=outcome.status.value, answer=outcome.answer, error=outcome.error)
    return outcome
