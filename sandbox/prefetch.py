"""Overlap the sub-calls of a serial loop without changing what the loop does.

Models write `for c in chunks: out.append(llm_query(f"...{c}"))`: N calls, one after another. Before
such a loop we launch its calls speculatively on the host, and the loop then runs unchanged: each
real `llm_query(prompt, model)` takes the speculative call with exactly the same request, if there is
one, and its result or its exception surfaces at that iteration as a serial call's would. A request
no speculation made is simply sent then. Correctness never depends on the analysis below, because
results are matched by the actual request; the analysis only decides when speculating is likely to
pay off and is free of side effects.

Two parts:

* `instrument(tree, source)`, at compile time, AFTER the policy's rewrite (so the helper's `_` name
  is never refused and the loop keeps its guards): a `for` loop whose body calls `llm_query(...)`
  unconditionally, before any `break`/`continue`/`return`/`raise`, whose prompt's inputs the body does
  not rebind or mutate, becomes `with _prefetch_(plan): <the same for loop>`.
* `Prefetcher`, in the REPL namespace as `_prefetch_`: evaluates the loop's iterable once and the
  prompt per item with `SafeEval` (a whitelist interpreter: only pure operations on built-in values
  and read-only context views, so nothing user-defined runs and no iterator is consumed), asks the
  host to launch the calls, and at the loop's end tells it to cancel the ones not taken.

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
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from sandbox.guards import guarded_format
from sandbox.protocol import PREFETCH_CALL

PREFETCH_NAME = "_prefetch_"
QUERY = "llm_query"
MAX_ITEMS = 10_000  # a bigger loop is not prefetched (its items are listed when it starts)

Plan = tuple[str, str, str, str | None, bool]  # iterable, target, prompt, model, early_exit (as source)

_JUMPS = (ast.Break, ast.Continue, ast.Return, ast.Raise)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_CONDITIONAL = (ast.IfExp, ast.BoolOp, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, *_SCOPES)
_STR_METHODS = frozenset({"format", "join", "strip", "lstrip", "rstrip", "lower", "upper", "replace"})
_DICT_METHODS = frozenset({"items", "keys", "values"})
_FUNCTIONS = frozenset({"str", "len", "range", "enumerate", "zip"})


# --- compile time -------------------------------------------------------------------------------


def instrument(tree: ast.Module, source: str) -> None:
    """Wrap each loop of `source` worth prefetching; `tree` is the policy-rewritten AST of `source`."""
    if QUERY not in source:
        return
    try:
        plans = plan_loops(ast.parse(source))
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return
    if plans:
        _Wrap(plans).visit(tree)
        ast.fix_missing_locations(tree)


def plan_loops(tree: ast.Module) -> dict[tuple[int, int], Plan]:
    """The loops to prefetch, by the (line, column) of their `for`."""
    if any(isinstance(n, ast.Name) and n.id == QUERY and not isinstance(n.ctx, ast.Load) for n in ast.walk(tree)):
        return {}  # the cell rebinds llm_query: its loops may not call the real one
    plans = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and (plan := _plan(node)) is not None:
            plans[(node.lineno, node.col_offset)] = plan
    return plans


def _plan(loop: ast.For) -> Plan | None:
    targets = _target_names(loop.target)
    if targets is None or not _pure(loop.iter):
        return None
    found = _first_call(loop.body)
    if found is None or any(
        isinstance(n, ast.For | ast.While) and any(_is_query(m) for m in ast.walk(n))
        for stmt in loop.body
        for n in ast.walk(stmt)
    ):
        return None  # inner loops that call are prefetched themselves; one set at a time per node
    index, call = found
    if any(isinstance(n, _JUMPS) for stmt in loop.body[:index] for n in _walk_scope(stmt)):
        return None  # an item may be skipped before its call is made
    if any(k.arg != "model" for k in call.keywords) or len(call.args) not in (1, 2):
        return None
    model = call.args[1] if len(call.args) == 2 else next((k.value for k in call.keywords), None)
    prompt = call.args[0]
    if not _pure(prompt) or (model is not None and not _pure(model)):
        return None
    inputs = _names(prompt) | (_names(model) if model is not None else set())
    if (inputs | targets) & _changed_names(loop.body):
        return None  # the prompt would differ from the speculated one: every call would be wasted
    early_exit = any(isinstance(n, _JUMPS) for stmt in loop.body[index:] for n in _walk_scope(stmt))
    return (
        ast.unparse(loop.iter),
        ast.unparse(loop.target),
        ast.unparse(prompt),
        None if model is None else ast.unparse(model),
        early_exit,
    )


def _first_call(body: list[ast.stmt]) -> tuple[int, ast.Call] | None:
    """The body's first llm_query call, if it is made whenever its statement runs (not under an
    if, a loop, a short-circuit or a comprehension) and nested loops make none."""
    for index, stmt in enumerate(body):
        calls = [n for n in _walk_scope(stmt) if _is_query(n)]
        if not calls:
            continue
        if not isinstance(stmt, ast.Expr | ast.Assign | ast.AugAssign | ast.AnnAssign):
            return None
        if any(_is_query(n) for n in _walk_conditional(stmt)):
            return None
        return index, calls[0]
    return None


def _is_query(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == QUERY


def _walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk that does not enter nested functions, lambdas and classes."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, _SCOPES):
            yield from _walk_scope(child)


def _walk_conditional(node: ast.AST, inside: bool = False) -> Iterator[ast.AST]:
    """The nodes of `node` that run only on some condition."""
    for child in ast.iter_child_nodes(node):
        nested = inside or isinstance(node, _CONDITIONAL)
        if nested:
            yield child
        yield from _walk_conditional(child, nested)


def _target_names(target: ast.expr) -> set[str] | None:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        names: set[str] = set()
        for element in target.elts:
            inner = _target_names(element)
            if inner is None:
                return None
            names |= inner
        return names
    return None


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _changed_names(body: list[ast.stmt]) -> set[str]:
    """Names the body rebinds, deletes, or may mutate (method calls, item/attribute stores)."""
    changed: set[str] = set()
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                changed.add(node.id)
            elif isinstance(node, ast.Global | ast.Nonlocal):
                changed.update(node.names)
            elif isinstance(node, ast.Subscript | ast.Attribute) and not isinstance(node.ctx, ast.Load):
                changed |= _names(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                changed |= _names(node.func.value)
    return changed


def _pure(node: ast.AST) -> bool:
    """Whether SafeEval can evaluate `node` (the same whitelist, checked statically)."""
    if isinstance(node, ast.Constant | ast.Name):
        return True
    if isinstance(node, ast.JoinedStr):
        return all(_pure(v) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return _pure(node.value) and (node.format_spec is None or _pure(node.format_spec))
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.FloorDiv | ast.Mod) and _pure_all(
            node.left, node.right
        )
    if isinstance(node, ast.Subscript):
        return _pure_all(node.value, node.slice)
    if isinstance(node, ast.Slice):
        return _pure_all(*(p for p in (node.lower, node.upper, node.step) if p is not None))
    if isinstance(node, ast.Tuple):
        return _pure_all(*node.elts)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ast.USub) and _pure(node.operand)
    if isinstance(node, ast.Call) and not node.keywords:
        func = node.func
        if isinstance(func, ast.Name):
            return func.id in _FUNCTIONS and _pure_all(*node.args)
        if isinstance(func, ast.Attribute):
            return func.attr in _STR_METHODS | _DICT_METHODS and _pure_all(func.value, *node.args)
    return False


def _pure_all(*nodes: ast.AST) -> bool:
    return all(_pure(n) for n in nodes)


class _Wrap(ast.NodeTransformer):
    def __init__(self, plans: dict[tuple[int, int], Plan]) -> None:
        self.plans = plans

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        plan = self.plans.get((node.lineno, node.col_offset))
        if plan is None:
            return node
        helper = ast.Call(ast.Name(PREFETCH_NAME, ast.Load()), [ast.Constant(plan)], [])
        wrapped = ast.With(items=[ast.withitem(helper)], body=[node])
        return ast.copy_location(wrapped, node)


# --- run time, in the REPL ----------------------------------------------------------------------


class Unsafe(Exception):
    """The expression needs something SafeEval does not do; the item is not prefetched."""


def _text_types() -> tuple[type, ...]:
    """Read-only views of the shared context: pure to format, index and measure."""
    try:
        from rlm.context import DocumentList, TextView
    except ImportError:
        return ()
    return (TextView, DocumentList)


class SafeEval:
    """Evaluates the whitelisted expressions of `_pure` on exact built-in types only, so no method
    of a user class (no __str__, __getitem__, __iter__, ...) and no iterator is ever touched."""

    SCALARS = (str, int, float, bool, type(None))
    CONTAINERS = (list, tuple, dict, range)

    def __init__(self, names: Mapping[str, Any]) -> None:
        self.names = names
        self.text_types = _text_types()

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            raise Unsafe(type(node).__name__)
        return method(node)

    def _checked(self, value: Any) -> Any:
        kind = type(value)
        if kind in self.SCALARS or kind in self.CONTAINERS or kind in self.text_types:
            return value
        raise Unsafe(kind.__name__)

    def _Constant(self, node: ast.Constant) -> Any:
        return self._checked(node.value)

    def _Name(self, node: ast.Name) -> Any:
        if node.id not in self.names:
            raise Unsafe(node.id)
        return self._checked(self.names[node.id])

    def _scalar(self, node: ast.AST) -> Any:
        value = self.eval(node)
        if type(value) in self.text_types:
            return str(value)
        if type(value) not in self.SCALARS:
            raise Unsafe("formatting a container")  # its elements' reprs could be user code
        return value

    def _JoinedStr(self, node: ast.JoinedStr) -> str:
        return "".join(str(self.eval(v)) for v in node.values)

    def _FormattedValue(self, node: ast.FormattedValue) -> str:
        value = self._scalar(node.value)
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        spec = "" if node.format_spec is None else self._scalar(node.format_spec)
        return format(value, spec)

    def _BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        if isinstance(node.op, ast.Mod):
            if type(left) is not str:
                if type(left) is int and type(right) is int:
                    return left % right
                raise Unsafe("%")
            args = tuple(self._plain(v) for v in right) if type(right) is tuple else self._plain(right)
            return left % args
        if {type(left), type(right)} <= {int, float}:
            ops: dict[type, Callable[[Any, Any], Any]] = {
                ast.Add: lambda a, b: a + b,
                ast.Sub: lambda a, b: a - b,
                ast.Mult: lambda a, b: a * b,
                ast.FloorDiv: lambda a, b: a // b,
            }
            return ops[type(node.op)](left, right)
        if isinstance(node.op, ast.Add) and type(left) is type(right) and type(left) in (str, list, tuple):
            return left + right
        raise Unsafe("operator")

    def _plain(self, value: Any) -> Any:
        if type(value) in self.text_types:
            return str(value)
        if type(value) not in self.SCALARS:
            raise Unsafe("formatting a container")
        return value

    def _Subscript(self, node: ast.Subscript) -> Any:
        value = self.eval(node.value)
        key = self.eval(node.slice)
        if type(key) is slice or type(key) in (int, str, tuple):
            return self._checked(value[key])  # built-in or context-view indexing: pure
        raise Unsafe("key")

    def _Slice(self, node: ast.Slice) -> slice:
        parts = [None if p is None else self._int(p) for p in (node.lower, node.upper, node.step)]
        return slice(*parts)

    def _int(self, node: ast.AST) -> int:
        value = self.eval(node)
        if type(value) is not int:
            raise Unsafe("index")
        return value

    def _Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self.eval(e) for e in node.elts)

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if type(value) not in (int, float):
            raise Unsafe("unary")
        return -value

    def _Call(self, node: ast.Call) -> Any:
        args = [self.eval(a) for a in node.args]
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in self.names:
                raise Unsafe(f"{func.id} is rebound")
            return self._function(func.id, args)
        assert isinstance(func, ast.Attribute)
        owner = self.eval(func.value)
        if type(owner) is str and func.attr in _STR_METHODS:
            if func.attr == "join":
                args = [[self._plain(v) for v in self._items(args[0])]] if len(args) == 1 else args
            else:
                args = [self._plain(a) for a in args]
            if func.attr == "format":  # field lookups ({0.attr}, {0[k]}) go through the REPL guards
                try:
                    return guarded_format(owner, args)
                except Exception as exc:  # a blocked field: this prompt is not prefetched
                    raise Unsafe("format") from exc
            return getattr(owner, func.attr)(*args)
        if type(owner) is dict and func.attr in _DICT_METHODS and not args:
            return list(getattr(owner, func.attr)())
        raise Unsafe(func.attr)

    def _function(self, name: str, args: list[Any]) -> Any:
        if name == "str" and len(args) == 1:
            return str(self._plain(args[0]))
        if name == "len" and len(args) == 1:
            return len(self._sized(args[0]))
        if name == "range" and all(type(a) is int for a in args):
            return range(*args)
        if name == "enumerate" and len(args) == 1:
            return list(enumerate(self._items(args[0])))
        if name == "zip" and args:
            return list(zip(*(self._items(a) for a in args), strict=False))
        raise Unsafe(name)

    def _sized(self, value: Any) -> Any:
        if type(value) in (str, *self.CONTAINERS) or type(value) in self.text_types:
            return value
        raise Unsafe("len")

    def _items(self, value: Any) -> list[Any]:
        """The items a `for` over `value` would see, for sized built-in sequences only."""
        sized = self._sized(value)
        if len(sized) > MAX_ITEMS:
            raise Unsafe("too many items")
        return list(sized)


def _bind(target: ast.expr, value: Any, into: dict[str, Any]) -> None:
    if isinstance(target, ast.Name):
        into[target.id] = value
        return
    assert isinstance(target, ast.Tuple | ast.List)
    if type(value) not in (tuple, list) or len(value) != len(target.elts):
        raise Unsafe("unpacking")
    for element, item in zip(target.elts, value, strict=True):
        _bind(element, item, into)


class _Scope(Mapping[str, Any]):
    """The loop variables of one item over the cell's locals and globals (read only)."""

    def __init__(self, *layers: Mapping[str, Any]) -> None:
        self.layers = layers

    def __getitem__(self, name: str) -> Any:
        for layer in self.layers:
            if name in layer:
                return layer[name]
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(name in layer for layer in self.layers)

    def __iter__(self) -> Iterator[str]:
        raise TypeError("not iterable")

    def __len__(self) -> int:
        raise TypeError("not sized")


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
        outer = SafeEval(_Scope(local, glob))
        items = outer._items(outer.eval(iterable))
        model = None if model_node is None else outer.eval(model_node)
        if not items or (model is not None and type(model) is not str):
            return _Speculating(self, None)
        speculating = _Speculating(self, _Prompts(items, target, prompt, _Scope(local, glob), outer.text_types))
        speculating.options = {"model": model, "early_exit": plan[4]}
        if not speculating.send():
            return _Speculating(self, None)
        return speculating


CHUNK_PROMPTS = 64  # prompts per llm_prefetch message: the host never looks further ahead than this
CHUNK_CHARS = 4_000_000  # a chunk ends past this many characters; a longer prompt is not prefetched


class _Prompts:
    """The prompts of one loop's items, computed a chunk at a time."""

    def __init__(
        self, items: list[Any], target: ast.expr, prompt: ast.expr, scope: _Scope, text_types: tuple[type, ...]
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
                _bind(self.target, item, bound)
                text = SafeEval(_Scope(bound, *self.scope.layers)).eval(self.prompt)
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
