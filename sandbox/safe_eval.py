"""A whitelist interpreter for prefetch plans: only pure operations on built-in values and read-only
context views, so evaluating a loop's iterable and prompts ahead of the loop runs nothing the user
defined and consumes no iterator. Anything else raises `Unsafe`, and that loop is simply not prefetched.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sandbox.guards import guarded_format

MAX_ITEMS = 10_000  # a bigger loop is not prefetched (its items are listed when it starts)

PURE_STR_METHODS = frozenset({"format", "join", "strip", "lstrip", "rstrip", "lower", "upper", "replace"})


PURE_DICT_METHODS = frozenset({"items", "keys", "values"})


PURE_FUNCTIONS = frozenset({"str", "len", "range", "enumerate", "zip"})


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
        if type(owner) is str and func.attr in PURE_STR_METHODS:
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
        if type(owner) is dict and func.attr in PURE_DICT_METHODS and not args:
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


def bind(target: ast.expr, value: Any, into: dict[str, Any]) -> None:
    if isinstance(target, ast.Name):
        into[target.id] = value
        return
    assert isinstance(target, ast.Tuple | ast.List)
    if type(value) not in (tuple, list) or len(value) != len(target.elts):
        raise Unsafe("unpacking")
    for element, item in zip(target.elts, value, strict=True):
        bind(element, item, into)


class Scope(Mapping[str, Any]):
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
