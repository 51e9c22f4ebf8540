"""The host side of the sandbox's calls: `llm_query`, `rlm_query` and their batched forms.

REPL code calls these through its session; they come back here and run on the engine's event loop.
`HostCalls` is the part of a `Node` (rlm/node.py) that serves them: sub-calls through the gateway,
prefetched calls for a serial loop, and child RLMs (a new node of the same class, one level deeper).
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, Protocol

from rlm.context import Context
from rlm.errors import BudgetExceeded
from rlm.speculation import SpeculativeCalls
from rlm.types import CallOrigin, Role, Status
from sandbox.plain import context_of_ref
from sandbox.protocol import PREFETCH_CALL

if TYPE_CHECKING:
    from rlm.engine import Tree
    from rlm.node import NodeResult

# A child's prompt longer than this is not repeated as its question; the child reads it from `context`.
INLINE_QUESTION_CHARS = 4000
CHILD_QUESTION = "Your context holds a request followed by its data. Read it in the REPL and answer the request."


class _Child(Protocol):
    async def run(self) -> NodeResult: ...


class HostCalls:
    """The sandbox's `HostBridge`: what a node does when its REPL code calls the host."""

    tree: Tree
    path: tuple[int, ...]
    context: Context
    speculative: SpeculativeCalls
    _children: int

    @property
    def depth(self) -> int:
        return len(self.path)

    def _origin(self, role: Role) -> CallOrigin:
        return CallOrigin(path=self.path, role=role)

    def _child(self, context: Context, question: str, model: str | None) -> _Child:
        """A child RLM one level below this node, not yet started."""
        raise NotImplementedError

    async def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        handlers = {
            "llm_query": self.llm_query,
            "llm_query_batched": self.llm_query_batched,
            "rlm_query": self.rlm_query,
            "rlm_query_batched": self.rlm_query_batched,
            PREFETCH_CALL: self.llm_prefetch,
        }
        handler = handlers.get(name)
        if handler is None:
            raise ValueError(f"unknown host function {name!r}")
        return await handler(*args, **kwargs)

    async def llm_query(self, prompt: str, model: str | None = None, role: str = "sub") -> str:
        key = (str(prompt), model, role)
        prefetched = self.speculative.take(key)  # the same request, launched ahead of a serial loop
        if prefetched is not None:
            return await prefetched
        return await self._llm_call(*key)

    async def _llm_call(self, prompt: str, model: str | None, role: str) -> str:
        origin = self._origin(Role.AGGREGATE if role == "aggregate" else Role.SUB)
        completion = await self.tree.gateway.complete([{"role": "user", "content": prompt}], origin, model)
        return completion.text

    async def llm_prefetch(
        self, prompts_: list[str], model: str | None = None, early_exit: bool = False, append: bool = False
    ) -> int:
        """Launch a serial loop's calls ahead of it (sandbox/prefetch.py): the first chunk of its
        prompts starts a set, the next ones (`append`) extend it; `[]` ends the loop's set."""
        calls = [((str(p), model, "sub"), functools.partial(self._llm_call, str(p), model, "sub")) for p in prompts_]
        if append:
            self.speculative.extend(calls)
        else:
            await self.speculative.cancel()
            self.speculative.start(calls, early_exit)
        return len(calls)

    async def llm_query_batched(self, prompts_: list[str], model: str | None = None, role: str = "sub") -> list[str]:
        return await gather_items(self.llm_query(p, model, role) for p in prompts_)

    async def rlm_query(self, prompt: str, model: str | None = None, context: dict[str, Any] | None = None) -> str:
        # `context` comes from REPL code: a text, or a (store token, range) reference that is rebuilt
        # only over this node's own context (sandbox/plain.py). Never a path or spec to open.
        child_context = None if context is None else context_of_ref(context, self.context)
        if self.depth + 1 >= self.tree.settings.max_depth:
            return await self.llm_query(prompt if child_context is None else f"{prompt}\n\n{child_context}", model)
        prompt = str(prompt)
        if child_context is not None:
            question = prompt
        else:
            child_context = Context.from_value(prompt)
            question = prompt if len(prompt) <= INLINE_QUESTION_CHARS else CHILD_QUESTION
        child = self._child(child_context, question, model)
        self._children += 1
        self.tree.children += 1
        slots = self._session_slots()
        if slots.locked():
            self.tree.events.emit("child_queued", path=[*self.path, self._children - 1], at_once=CHILD_SESSIONS)
        async with slots:
            result = await child.run()
        if result.answer is None:
            raise RuntimeError(f"the child RLM stopped ({result.status.value}: {result.error}) with no answer")
        if result.status is not Status.COMPLETED:
            return f"[partial: the child RLM stopped ({result.error})] {result.answer}"
        return result.answer

    def _session_slots(self) -> asyncio.Semaphore:
        """The slots of the children one level below this node, shared by the whole run. Per level, so
        no deadlock: a node waits only on the level below it, and the deepest level waits on none."""
        level = self.depth + 1
        if level not in self.tree.session_slots:
            self.tree.session_slots[level] = asyncio.Semaphore(CHILD_SESSIONS)
        return self.tree.session_slots[level]

    async def rlm_query_batched(
        self,
        prompts_: list[str],
        model: str | None = None,
        contexts: list[dict[str, Any] | None] | None = None,
    ) -> list[str]:
        contexts = contexts or [None] * len(prompts_)
        if not isinstance(contexts, list) or len(contexts) != len(prompts_):
            raise ValueError("contexts= must be a list with one context (or None) per prompt")
        slots = asyncio.Semaphore(CHILDREN_AT_ONCE)  # each child holds a sandbox worker: the rest queue

        async def child(prompt: str, context: dict[str, Any] | None) -> str:
            async with slots:
                return await self.rlm_query(prompt, model, context)

        return await gather_items(child(p, c) for p, c in zip(prompts_, contexts, strict=True))


CHILDREN_AT_ONCE = 8  # child RLMs one rlm_query_batched call runs at once (per call: no deadlock across depths)
# child RLMs (each with its sandbox worker) alive at once in a whole run, per level below the root: a run
# of max_depth D holds at most 1 + 8 * (D - 1) workers; the other children wait for a slot
CHILD_SESSIONS = 8


async def gather_items(calls: Any) -> list[str]:
    """Run calls concurrently; a failed item becomes a readable "Error: ..." string, alone.
    Budget exhaustion and cancellation are not item failures: they end the whole tree."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    out: list[str] = []
    for result in results:
        if isinstance(result, BudgetExceeded | asyncio.CancelledError):
            raise result
        out.append(f"Error: {result}" if isinstance(result, BaseException) else result)
    return out
