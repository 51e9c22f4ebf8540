"""Overlap the sub-calls of a serial loop without changing what the loop does.

Models write `for c in chunks: out.append(llm_query(f"...{c}"))`: N calls, one after another. Before
such a loop we launch its calls speculatively on the host, and the loop then runs unchanged: each
real `llm_query(prompt, model)` takes the speculative call with exactly the same request, if there is
one, and its result or its exception surfaces at that iteration as a serial call's would. A request
no speculation made is simply sent then. Correctness never depends on the analysis below, because
results are matched by the actual request; the analysis only decides when speculating is likely to
pay off and is free of side effects.

Three modules:

* `instrument(tree, source)` (sandbox/loop_plan.py), at compile time, AFTER the policy's rewrite (so
  the helper's `_` name is never refused and the loop keeps its guards): a `for` loop whose body calls
  `llm_query(...)` unconditionally, before any `break`/`continue`/`return`/`raise`, whose prompt's
  inputs the body does not rebind or mutate, becomes `with _prefetch_(plan): <the same for loop>`.
* `Prefetcher` (here), in the REPL namespace as `_prefetch_`: evaluates the loop's iterable once and
  the prompt per item with `SafeEval` (sandbox/safe_eval.py: a whitelist interpreter, only pure
  operations on built-in values and read-only context views, so nothing user-defined runs and no
  iterator is consumed), asks the host to launch the calls, and at the loop's end tells it to cancel
  the ones not taken.

What speculation may cost: calls the loop never makes (it broke out, raised, or computed a different
prompt) are cancelled at the loop's end, but if they were already sent their tokens are paid for and
count against every budget. The host launches 4 calls ahead at first and doubles that each time the
loop comes back for its next call (to 64; 8 for loops with a `break` after the call), and stops
launching at the first call that fails, so a loop that raises early wastes a few calls. Prompts travel
in bounded chunks.
"""

from __future__ import annotations

import ast
import contextlib
import sys
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from sandbox.loop_plan import Plan
from sandbox.protocol import PREFETCH_CALL
from sandbox.safe_eval import SafeEval, Scope, Unsafe, bind


class Prefetcher:
    """`_prefetch_(plan)` in the REPL: a context manager around one loop. It never raises into the
    cell: anything unexpected just means no prefetch.

    Prompts go to the host in chunks (`CHUNK_PROMPTS` prompts, about `CHUNK_CHARS` characters), each
    computed when the loop's own calls come near the end of what was sent, so no message nears the
    channel's cap and a loop that stops early never had the rest of its prompts computed or sent."""

    def __init__(self, host: Callable[[str, list[Any], dict[str, Any]], Any]) -> None:
        self.host = host
        self.parsed: dict[Plan, tuple[ast.expr, ast.expr, ast.expr, ast.expr | None]] = {}
        self.active: _Speculating | None = None

    def __call__(self, plan: Plan) -> _Speculating:
        frame = sys._getframe(1)
        try:
            speculating = self._start(plan, frame.f_locals, frame.f_globals)
        except Exception:
            return _Speculating(self, None)
        finally:
            del frame
        return speculating

    def before_query(self) -> None:
        """Called by the REPL's llm_query: the loop made one more call, so send more prompts if the
        host is about to run out of them."""
        if self.active is not None:
            self.active.made_call()

    def _start(self, plan: Plan, local: Mapping[str, Any], glob: Mapping[str, Any]) -> _Speculating:
        if plan not in self.parsed:
            iterable, target, prompt, model = (
                ast.parse(source, mode="eval").body if source is not None else None for source in plan[:4]
            )
            assert iterable is not None and target is not None and prompt is not None
            self.parsed[plan] = (iterable, target, prompt, model)
        iterable, target, prompt, model_node = self.parsed[plan]
        outer = SafeEval(Scope(local, glob))
        items = outer._items(outer.eval(iterable))
        model = None if model_node is None else outer.eval(model_node)
        if not items or (model is not None and type(model) is not str):
            return _Speculating(self, None)
        speculating = _Speculating(self, _Prompts(items, target, prompt, Scope(local, glob), outer.text_types))
        speculating.options = {"model": model, "early_exit": plan[4]}
        if not speculating.send():
            return _Speculating(self, None)
        return speculating


CHUNK_PROMPTS = 64  # prompts per llm_prefetch message: the host never looks further ahead than this
CHUNK_CHARS = 4_000_000  # a chunk ends past this many characters; a longer prompt is not prefetched


class _Prompts:
    """The prompts of one loop's items, computed a chunk at a time."""

    def __init__(
        self, items: list[Any], target: ast.expr, prompt: ast.expr, scope: Scope, text_types: tuple[type, ...]
    ) -> None:
        self.items, self.target, self.prompt, self.scope, self.text_types = items, target, prompt, scope, text_types
        self.next = 0  # the first item not yet sent

    def chunk(self) -> list[str]:
        prompts: list[str] = []
        size = 0
        while self.next < len(self.items) and len(prompts) < CHUNK_PROMPTS and size < CHUNK_CHARS:
            item = self.items[self.next]
            self.next += 1
            bound: dict[str, Any] = {}
            try:
                bind(self.target, item, bound)
                text = SafeEval(Scope(bound, *self.scope.layers)).eval(self.prompt)
            except (Unsafe, LookupError, TypeError, ValueError, ArithmeticError):
                continue  # this item's prompt is not known in advance; its call will just be serial
            if (type(text) is str or type(text) in self.text_types) and len(text) <= CHUNK_CHARS:
                prompts.append(str(text))
                size += len(text)
        return prompts


class _Speculating:
    """One loop's prefetch: sends its prompts a chunk ahead of the loop's calls and tells the host,
    when the loop ends however it ends, to cancel the calls it did not take."""

    def __init__(self, prefetcher: Prefetcher, prompts: _Prompts | None) -> None:
        self.prefetcher = prefetcher
        self.prompts = prompts
        self.options: dict[str, Any] = {}
        self.sent = False  # the host holds a set of ours
        self.calls = 0  # llm_query calls the loop made

    def send(self) -> bool:
        """Send the next chunk (the first one starts the host's set); False when nothing was sent."""
        assert self.prompts is not None
        prompts = self.prompts.chunk()
        while not prompts and self.prompts.next < len(self.prompts.items):
            prompts = self.prompts.chunk()
        if not prompts:
            return False
        try:
            self.prefetcher.host(PREFETCH_CALL, [prompts], {**self.options, "append": self.sent})
        except Exception:  # the host refused (e.g. the budget is spent): the loop runs serially
            self.prompts.next = len(self.prompts.items)
            return False
        self.sent = True
        return True

    def made_call(self) -> None:
        prompts = self.prompts
        if prompts is None:
            return
        self.calls += 1
        if prompts.next < len(prompts.items) and self.calls + CHUNK_PROMPTS > prompts.next:
            self.send()

    def __enter__(self) -> None:
        if self.prompts is not None:
            self.prefetcher.active = self
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.prefetcher.active is self:
            self.prefetcher.active = None
        if self.sent:
            with contextlib.suppress(Exception):  # the engine cancels leftovers at the cell's end anyway
                self.prefetcher.host(PREFETCH_CALL, [[]], {})
