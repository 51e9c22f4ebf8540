"""A node: one RLM (the root, or a child made by `rlm_query`) and its turn loop.

Per turn a node streams its root model's reply, hands each ```repl block to its REPL the moment the
closing fence arrives (while the reply keeps streaming), and stops the stream as soon as an answer is
submitted. The node is also the sandbox's `HostBridge` through `HostCalls` (rlm/bridge.py): sub-calls
from REPL code come back to it. What the whole tree shares, and how its run ends, is rlm/engine.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rlm import prompts
from rlm.answers import cell_answer, prose_answer, render, unquote
from rlm.bridge import HostCalls
from rlm.context import Context
from rlm.errors import BudgetExceeded, ProviderError, StreamInterrupted
from rlm.fences import CodeBlock, FinalMarker, ReplyParser
from rlm.speculation import SpeculativeCalls
from rlm.types import CellOutcome, Role, Status
from sandbox import Session, open_session

if TYPE_CHECKING:
    from rlm.engine import Tree


@dataclass
class NodeResult:
    """What one node's run came to."""

    answer: str | None
    status: Status
    iterations: int
    error: str | None = None


@dataclass
class Turn:
    """One reply of a node's root model and what its code did."""

    text: str = ""
    cells: list[tuple[str, str]] = field(default_factory=list)  # (code, output) for the next user turn
    answer: str | None = None
    broken: StreamInterrupted | None = None  # the stream broke after text had arrived


class Node(HostCalls):
    """One RLM: its turn loop here, its answers to REPL calls in `HostCalls` (rlm/bridge.py)."""

    def __init__(
        self,
        tree: Tree,
        path: tuple[int, ...],
        context: Context,
        question: str,
        root_model: str | None = None,
    ) -> None:
        self.tree = tree
        self.path = path
        self.context = context
        self.question = question
        self.root_model = root_model  # rlm_query(..., model=...) picks the child's root model
        self.partial: str | None = None  # the best answer so far: answer["content"] when set
        self.turns = 0
        self._children = 0
        self.speculative = SpeculativeCalls()  # calls prefetched for the running cell's loop

    def _child(self, context: Context, question: str, model: str | None) -> Node:
        return Node(self.tree, (*self.path, self._children), context, question, model)

    def _emit(self, kind: str, **fields: Any) -> None:
        self.tree.events.emit(kind, path=list(self.path), **fields)

    async def run(self) -> NodeResult:
        settings = self.tree.settings
        self._emit("node_start", question=self.question, context=self.context.describe())
        # the sandbox starts while the first request is out: a cell waits for it only if it comes first
        session = asyncio.create_task(self._open_session())
        try:
            messages = prompts.first_messages(self.context.describe(), self.question, settings.after_block)
            broken = 0  # streams in a row that broke after text had arrived
            for iteration in range(1, settings.max_iterations + 1):
                self.turns = iteration
                turn = await self._turn(messages, session, iteration)
                while turn.broken is not None and turn.answer is None:
                    broken += 1
                    if broken > 1:
                        raise ProviderError(
                            f"the reply broke off {broken} times in a row, giving up: {turn.broken}",
                            model=turn.broken.model,
                        ) from turn.broken
                    if turn.cells:
                        break  # code of it ran: the turn stands, cut after its last block
                    self._emit("turn_retry", iteration=iteration, error=str(turn.broken))
                    turn = await self._turn(messages, session, iteration)  # nothing ran: asked again from the start
                if turn.broken is None:
                    broken = 0
                if turn.answer is not None:
                    return self._finish(NodeResult(turn.answer, Status.COMPLETED, iteration))
                messages.append({"role": "assistant", "content": turn.text})
                cells = list(turn.cells)
                if turn.broken is not None:
                    cells.append(("# (your reply broke off here)", f"Provider error mid-reply: {turn.broken}"))
                messages.append(prompts.next_turn(cells, self.question, settings.max_output_chars))
            if self.partial is None:
                self.partial = await self._last_word(messages)
            plural = "s" if settings.max_iterations != 1 else ""
            limit = f"the limit of {settings.max_iterations} turn{plural} was reached"
            return self._finish(NodeResult(self.partial, Status.MAX_ITERATIONS, settings.max_iterations, limit))
        finally:
            await self._close_session(session)

    async def _open_session(self) -> Session:
        settings = self.tree.settings
        repl = await open_session(self.context.to_spec(), self, limits=settings.cell_limits, mode=settings.sandbox)
        if repl.missing_layers:
            self._emit("sandbox_layers", missing=repl.missing_layers)
        return repl

    async def _close_session(self, opening: asyncio.Task[Session]) -> None:
        """Close the session once it is open; one that failed to open was reported by the first cell
        that needed it, and one no cell needed fails nothing."""
        await asyncio.gather(opening, return_exceptions=True)
        if opening.cancelled() or opening.exception() is not None:
            return
        repl = opening.result()
        self._remember(repl.answer)  # a cell cancelled mid-call may have set answer["content"]
        await repl.aclose()

    async def _last_word(self, messages: list[dict[str, str]]) -> str | None:
        """Out of turns with no answer set: one last call asks for the best answer so far (as rlms
        does). The result is still reported as partial; a failure here costs the answer, nothing else."""
        request = [*messages, {"role": "user", "content": prompts.OUT_OF_TURNS.format(question=self.question)}]
        try:
            completion = await self.tree.gateway.complete(request, self._origin(Role.ROOT), self.root_model)
        except (ProviderError, BudgetExceeded) as error:
            self._emit("last_word_failed", error=str(error))
            return None
        return prose_answer(completion.text)

    def _finish(self, result: NodeResult) -> NodeResult:
        self._emit("node_end", status=result.status.value, answer=result.answer, iterations=result.iterations)
        return result

    async def _turn(self, messages: list[dict[str, str]], session: asyncio.Task[Session], iteration: int) -> Turn:
        """Stream one reply; run each block as its fence closes; stop the stream at the answer."""
        turn = Turn()
        parser = ReplyParser()
        ready: asyncio.Queue[CodeBlock | FinalMarker | None] = asyncio.Queue()
        stop_after_block = self.tree.settings.after_block == "stop"
        held: list[CodeBlock | FinalMarker] | None = [] if self.tree.settings.after_block == "wait" else None
        self._emit("turn_start", iteration=iteration)

        async def produce() -> None:
            try:
                stream = self.tree.gateway.stream(messages, self._origin(Role.ROOT), self.root_model)
                async with contextlib.aclosing(stream) as deltas:
                    async for delta in deltas:
                        for event in parser.feed(delta):
                            if held is not None:
                                held.append(event)
                                continue
                            ready.put_nowait(event)
                            if stop_after_block and isinstance(event, CodeBlock):
                                return
                for event in [*(held or []), *parser.finish()]:
                    ready.put_nowait(event)
            except StreamInterrupted as error:
                # the blocks whose closing fence arrived (and ended its line) still run, in every mode;
                # the text after them is dropped
                turn.broken = error
                self._emit("stream_interrupted", iteration=iteration, error=str(error))
                for event in held or []:
                    if isinstance(event, CodeBlock):
                        ready.put_nowait(event)
            finally:
                ready.put_nowait(None)

        producer = asyncio.create_task(produce())
        used_until = None
        try:
            while (event := await ready.get()) is not None:
                if isinstance(event, CodeBlock):
                    outcome = await self._run_block(session, event, iteration)
                    turn.cells.append((event.code, render(outcome)))
                    self._remember(outcome.answer)
                    answer = cell_answer(outcome)
                else:
                    answer, output = await self._resolve_final(session, event)
                    if output:
                        turn.cells.append((f"{event.kind}({event.value})", output))
                used_until = event.end
                if answer is not None:
                    turn.answer = answer
                    break
        finally:
            if not producer.done():
                producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        if not producer.cancelled():
            producer.result()  # a provider failure that was not retried away ends the node here
        stops = turn.answer is not None or stop_after_block or turn.broken is not None
        cut = used_until if stops and used_until else None
        turn.text = parser.text[:cut] if cut else parser.text
        self._emit("turn_end", iteration=iteration, text=turn.text, answered=turn.answer is not None)
        return turn

    async def _run_block(self, session: asyncio.Task[Session], block: CodeBlock, iteration: int) -> CellOutcome:
        repl = await session
        self._emit("cell_start", iteration=iteration, index=block.index, code=block.code)
        self.context.check_unchanged()  # a mapped file that shrank would kill the process (SIGBUS)
        try:
            outcome: CellOutcome = await repl.run_cell(block.code)
        finally:
            await self.speculative.cancel()  # prefetched calls the cell did not take (sandbox/prefetch.py)
        self._emit(
            "cell_end",
            iteration=iteration,
            index=block.index,
            stdout=outcome.stdout,
            error=outcome.error,
            error_kind=outcome.error_kind,
            duration_s=round(outcome.duration_s, 4),
            notice=outcome.notice,
        )
        return outcome

    def _remember(self, answer: dict[str, Any]) -> None:
        content = answer.get("content")
        if content not in (None, ""):
            self.partial = str(content)

    async def _resolve_final(self, session: asyncio.Task[Session], marker: FinalMarker) -> tuple[str | None, str]:
        """FINAL(x) is the answer itself; FINAL_VAR(name) asks the REPL for the variable."""
        if marker.kind == "FINAL":
            return unquote(marker.value), ""
        lookup = CodeBlock(code=f"FINAL_VAR({marker.value!r})", index=-1, end=marker.end)
        outcome = await self._run_block(session, lookup, self.turns)
        if outcome.final is not None:
            return outcome.final, ""
        return None, render(outcome) or f"FINAL_VAR({marker.value}): no such variable. Create it in a repl block first."
