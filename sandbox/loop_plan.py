"""Which serial loops are worth prefetching, decided at compile time (the analysis half of
sandbox/prefetch.py): a `for` loop whose body calls `llm_query(...)` unconditionally, before any
`break`/`continue`/`return`/`raise`, and does not rebind or mutate its prompt's inputs, is wrapped as
`with _prefetch_(plan): <the same for loop>`. The plan is source text the REPL evaluates with
`SafeEval` (sandbox/safe_eval.py); a wrong plan only costs speculation, never correctness.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from sandbox.safe_eval import PURE_DICT_METHODS, PURE_FUNCTIONS, PURE_STR_METHODS

PREFETCH_NAME = "_prefetch_"  # the REPL name of the Prefetcher the wrapped loops call

QUERY = "llm_query"


Plan = tuple[str, str, str, str | None, bool]  # iterable, target, prompt, model, early_exit (as source)


_JUMPS = (ast.Break, ast.Continue, ast.Return, ast.Raise)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


_CONDITIONAL = (ast.IfExp, ast.BoolOp, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, *_SCOPES)


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
            return func.id in PURE_FUNCTIONS and _pure_all(*node.args)
        if isinstance(func, ast.Attribute):
            return func.attr in PURE_STR_METHODS | PURE_DICT_METHODS and _pure_all(func.value, *node.args)
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
