"""Compile-time policy: RestrictedPython's rewrite plus what model-written code needs.

RestrictedPython turns attribute, item, iteration and write access into calls to guard functions
(see guards.py) and refuses names starting with `_`. On top of it we allow augmented assignment of
items and attributes (`counts[w] += 1`, `self.n += 1`) and annotated assignment, both rewritten to
go through the same guards, and make the last bare expression of a cell echo its value.
"""

from __future__ import annotations

import ast
import contextlib
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import CodeType

from RestrictedPython import RestrictingNodeTransformer
from RestrictedPython.transformer import IOPERATOR_TO_STR, copy_locations

from sandbox.guards import match_attr_problem
from sandbox.loop_plan import instrument
from sandbox.rules import DUNDER_METHODS, NAMEDTUPLE_NAMES, READABLE_DUNDERS

ECHO_NAME = "_echo_"

_ADVICE = [
    (
        re.compile(r'invalid (attribute|variable) name because it starts with "_"'),
        "Names starting with '_' (dunders, private attributes) are blocked in the REPL; "
        "use public attributes, methods and the builtins instead.",
    ),
    (
        re.compile(r"Exec calls|Eval calls"),
        "exec() and eval() are not available in the REPL; write the code directly in the cell.",
    ),
    (
        re.compile(r"is a restricted name"),
        "Frames, tracebacks and code objects are not reachable from the REPL.",
    ),
    (
        re.compile(r"statements are not allowed|not allowed\."),
        "Rewrite it with plain statements (no async, try/except*, star imports).",
    ),
    (re.compile(r"reserved name"), "Choose another name: print, printed and builtins are reserved."),
]


@dataclass
class CompiledCell:
    """A cell compiled under the policy: `code` is None when `error` explains why not."""

    code: CodeType | None
    error: str | None = None
    replay: list[str] = field(default_factory=list)


# A cell's compile-time checks recurse once per nesting level; they get this many frames beyond the
# cell's own recursion limit (so `'a' + 'a' + ...` of a few hundred terms compiles) and no more.
COMPILE_HEADROOM = 2_000
_COMPILE_LOCK = threading.Lock()


class CellPolicy(RestrictingNodeTransformer):
    """RestrictedPython's transformer with the additions model code needs."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self._scopes: list[str] = []  # "class" / "function": where an annotated assignment sits
        self._matches: list[tuple[str, list[ast.expr]]] = []  # per open `match`: holder, hoisted values

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if (node.attr in READABLE_DUNDERS or node.attr in NAMEDTUPLE_NAMES) and isinstance(node.ctx, ast.Load):
            read = _call("_getattr_", self.visit(node.value), ast.Constant(node.attr))
            copy_locations(read, node)
            return read
        return super().visit_Attribute(node)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.AST:
        """Closures rebinding their own variables are ordinary code; the names are still checked."""
        for name in node.names:
            self.check_name(node, name)
        return node

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST | list[ast.AST]:
        target = node.target
        if isinstance(target, ast.Name):  # `n += 1` is as safe as `n = n + 1`, which is not guarded
            self.check_name(target, target.id)
            node.value = self.visit(node.value)
            return node
        op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
        value = self.visit(node.value)
        obj_tmp = self.gen_tmp_name()
        prologue: list[ast.stmt] = [_assign(obj_tmp, self.visit(target.value))]
        if isinstance(target, ast.Attribute):
            if target.attr.startswith("_"):
                self.error(node, f'"{target.attr}" is an invalid attribute name because it starts with "_".')
                return node
            current: ast.expr = _call("_getattr_", _load(obj_tmp), ast.Constant(target.attr))
            store: ast.expr = ast.Attribute(_call("_write_", _load(obj_tmp)), target.attr, ast.Store())
        else:
            key_tmp = self.gen_tmp_name()
            prologue.append(_assign(key_tmp, self.visit(target.slice)))
            current = _call("_getitem_", _load(obj_tmp), _load(key_tmp))
            store = ast.Subscript(_call("_write_", _load(obj_tmp)), _load(key_tmp), ast.Store())
        update = ast.Assign(targets=[store], value=_call("_inplacevar_", op, current, value))
        statements = [*prologue, update]
        for statement in statements:
            copy_locations(statement, node)
            ast.fix_missing_locations(statement)
        return statements

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        """Methods may have the protocol dunder names of DUNDER_METHODS (`__repr__`, `__len__`, ...);
        guards.make_class checks the class body again at run time."""
        self._scopes.append("function")
        try:
            if node.name in DUNDER_METHODS and node.col_offset != 0:
                renamed, node.name = node.name, "dunder_method"
                result = super().visit_FunctionDef(node)
                node.name = renamed
                return result
            return super().visit_FunctionDef(node)
        finally:
            self._scopes.pop()

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        self._scopes.append("function")
        try:
            return super().visit_Lambda(node)
        finally:
            self._scopes.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._scopes.append("class")
        try:
            return super().visit_ClassDef(node)
        finally:
            self._scopes.pop()

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        """`x: int = 3` runs as `x = 3`; the annotation is dropped, never evaluated. In a class body
        the annotation is kept (evaluated through the guards) so that `@dataclass` sees its fields."""
        if self._scopes and self._scopes[-1] == "class" and isinstance(node.target, ast.Name):
            node.target = self.visit(node.target)
            node.annotation = self.visit(node.annotation)
            node.value = None if node.value is None else self.visit(node.value)
            return node
        plain: ast.stmt = ast.Pass() if node.value is None else ast.Assign([node.target], node.value)
        copy_locations(plain, node)
        return self.visit(plain)

    # -- match statements ----------------------------------------------------------------------
    # Capture names are checked like any name. Dotted names in value and class patterns
    # (`case Color.RED:`, `case mod.Cls():`) would be read raw by the interpreter, so they are hoisted
    # into guarded, lazily evaluated lambdas (`_tmpN.vK`, see guards.MatchValues). Keyword class
    # patterns (`case P(x=0)`) read attributes raw: their names are checked here (guards.match_attr_problem).

    def visit_Match(self, node: ast.Match) -> ast.AST | list[ast.AST]:
        node.subject = self.visit(node.subject)
        holder, values = self.gen_tmp_name(), []
        self._matches.append((holder, values))
        try:
            node.cases = [self.visit(case) for case in node.cases]
        finally:
            self._matches.pop()
        if not values:
            return node
        no_args = ast.arguments(posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], defaults=[])
        thunks = [ast.Lambda(args=no_args, body=value) for value in values]
        prologue = _assign(holder, _call("_match_values_", *thunks))
        copy_locations(prologue, node)
        ast.fix_missing_locations(prologue)
        return [prologue, node]

    def visit_match_case(self, node: ast.match_case) -> ast.AST:
        return self.node_contents_visit(node)

    def _hoist(self, value: ast.expr) -> ast.expr:
        if not isinstance(value, ast.Attribute):
            return self.visit(value)
        holder, values = self._matches[-1]
        values.append(self.visit(value))
        hoisted = ast.Attribute(_load(holder), f"v{len(values) - 1}", ast.Load())
        copy_locations(hoisted, value)
        return ast.fix_missing_locations(hoisted)

    def visit_MatchValue(self, node: ast.MatchValue) -> ast.AST:
        node.value = self._hoist(node.value)
        return node

    def visit_MatchSingleton(self, node: ast.MatchSingleton) -> ast.AST:
        return node

    def visit_MatchSequence(self, node: ast.MatchSequence) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_MatchOr(self, node: ast.MatchOr) -> ast.AST:
        return self.node_contents_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> ast.AST:
        self.check_name(node, node.name)
        return node

    def visit_MatchAs(self, node: ast.MatchAs) -> ast.AST:
        self.check_name(node, node.name)
        if node.pattern is not None:
            node.pattern = self.visit(node.pattern)
        return node

    def visit_MatchMapping(self, node: ast.MatchMapping) -> ast.AST:
        self.check_name(node, node.rest)
        node.keys = [self._hoist(key) for key in node.keys]
        node.patterns = [self.visit(p) for p in node.patterns]
        return node

    def visit_MatchClass(self, node: ast.MatchClass) -> ast.AST:
        if isinstance(node.cls, ast.Name):
            self.check_name(node.cls, node.cls.id)
        else:
            node.cls = self._hoist(node.cls)
        for attr in node.kwd_attrs:
            problem = match_attr_problem(attr)
            if problem:
                self.error(node, problem)
        node.patterns = [self.visit(p) for p in node.patterns]
        node.kwd_patterns = [self.visit(p) for p in node.kwd_patterns]
        return node


def _load(name: str) -> ast.Name:
    return ast.Name(name, ast.Load())


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_load(func), args=list(args), keywords=[])


def _assign(name: str, value: ast.expr) -> ast.Assign:
    return ast.Assign(targets=[ast.Name(name, ast.Store())], value=value)


def advise(message: str) -> str:
    """The sentence telling the model what to do instead of a blocked construct."""
    for pattern, advice in _ADVICE:
        if pattern.search(message):
            return advice
    return ""


@contextlib.contextmanager
def _compile_headroom() -> Iterator[None]:
    """Raise the recursion limit by COMPILE_HEADROOM while a cell is checked and compiled (one cell
    at a time: the limit is per interpreter, and in-process sessions compile from several threads)."""
    with _COMPILE_LOCK:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(limit + COMPILE_HEADROOM)
        try:
            yield
        finally:
            sys.setrecursionlimit(limit)


def compile_cell(source: str, filename: str) -> CompiledCell:
    """Parse, check and rewrite one cell; the last bare expression is echoed like a console."""
    with _compile_headroom():
        return _compile_cell(source, filename)


def _compile_cell(source: str, filename: str) -> CompiledCell:
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        where = f"line {exc.lineno}: " if exc.lineno else ""
        text = f"\n    {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        return CompiledCell(None, f"SyntaxError: {where}{exc.msg}{text}")
    except (RecursionError, MemoryError, ValueError) as exc:
        return CompiledCell(None, f"SyntaxError: the cell is nested too deeply to compile ({type(exc).__name__})")
    replay = _replay_segments(tree, source)
    errors: list[str] = []
    try:
        CellPolicy(errors, [], {}).visit(tree)
    except (RecursionError, MemoryError):
        errors.append("Line 1: the cell is nested too deeply to check; split deep expressions apart.")
    if errors:
        advice = {advise(e) for e in errors} - {""}
        return CompiledCell(None, "\n".join(["PolicyError: " + e for e in errors[:5]] + sorted(advice)))
    _echo_last_expression(tree)
    instrument(tree, source)  # sandbox/loop_plan.py: overlap a serial loop's llm_query calls
    try:
        return CompiledCell(compile(tree, filename, "exec"), replay=replay)
    except (RecursionError, MemoryError, SyntaxError, ValueError) as exc:
        return CompiledCell(None, f"SyntaxError: the cell cannot be compiled: {exc}")


def _echo_last_expression(tree: ast.Module) -> None:
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        last.value = _call(ECHO_NAME, last.value)
        copy_locations(last.value, last)
        ast.fix_missing_locations(last)


def _replay_segments(tree: ast.Module, source: str) -> list[str]:
    """The top-level imports, functions and classes of a cell: what a worker restart re-runs."""
    lines = source.splitlines()
    segments = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef):
            start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            segments.append("\n".join(lines[start - 1 : node.end_lineno]))
    return segments
