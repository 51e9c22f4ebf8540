"""The builtins a REPL namespace gets: the harmless ones as they are, the guarded lookups in place of
`getattr`/`hasattr`/`setattr`/`delattr`/`__import__`, a `type` that never hands out the real one, a
`dir` without `_` names, and the dangerous rest (`open`, `exec`, `eval`, ...) as functions that say
what to do instead. The guards themselves (what each lookup allows) are in guards.py.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from sandbox.guards import guarded_delattr, guarded_getattr, guarded_hasattr, guarded_import, guarded_setattr
from sandbox.rules import PolicyError


class _SafeTypeMeta(type):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, type)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return isinstance(sub, type) and issubclass(sub, type)


class SafeType(metaclass=_SafeTypeMeta):
    """The cell's `type`: one argument only, and it never hands out the real `type` (nor a metaclass).

    `type(int) is type`, `isinstance(int, type)` and `type(x).__name__` behave as usual.
    """

    def __new__(cls, obj: Any, *rest: Any) -> Any:  # type: ignore[misc]
        if rest:
            raise PolicyError("type() with three arguments is not available in the REPL; use a class statement")
        kind = type(obj)
        return SafeType if issubclass(kind, type) else kind


SafeType.__name__ = SafeType.__qualname__ = "type"
SafeType.__module__ = "builtins"


def safe_dir(*obj: Any) -> list[str]:
    if len(obj) != 1:
        raise TypeError("dir() needs one argument in the REPL; use SHOW_VARS() to list your variables")
    return sorted(n for n in dir(obj[0]) if not n.startswith("_"))


def _blocked(name: str, advice: str) -> Callable[..., Any]:
    def blocked(*args: Any, **kwargs: Any) -> Any:
        raise PolicyError(f"{name}() is not available in the REPL: {advice}")

    blocked.__name__ = name
    return blocked


_DATA_ADVICE = "the data you need is in `context`; use context.find / search / grep"
_BLOCKED = {
    "open": _DATA_ADVICE,
    "input": "there is no user to ask; answer from `context` or call llm_query",
    "exec": "write the code directly in the cell",
    "eval": "write the expression directly in the cell",
    "compile": "write the code directly in the cell",
    "globals": "use SHOW_VARS() to list your variables",
    "locals": "use SHOW_VARS() to list your variables",
    "vars": "use SHOW_VARS() or dir(obj)",
    "help": "use dir(obj)",
    "breakpoint": "there is no debugger in the REPL; print values instead",
    "memoryview": "work with str, bytes or lists",
    "exit": "call FINAL(x) to give the answer",
    "quit": "call FINAL(x) to give the answer",
}
_SAFE_BUILTINS = [
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "id",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "property",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "staticmethod",
    "classmethod",
    "str",
    "sum",
    "super",
    "tuple",
    "zip",
    "None",
    "True",
    "False",
    "Ellipsis",
    "NotImplemented",
    "__build_class__",
]


def make_builtins() -> dict[str, Any]:
    """A fresh builtins dict for one REPL namespace."""
    table: dict[str, Any] = {name: getattr(builtins, name) for name in _SAFE_BUILTINS}
    for name, value in vars(builtins).items():
        if isinstance(value, type) and issubclass(value, BaseException):
            table[name] = value
    table.update({name: _blocked(name, advice) for name, advice in _BLOCKED.items()})
    table.update(
        getattr=guarded_getattr,
        hasattr=guarded_hasattr,
        setattr=guarded_setattr,
        delattr=guarded_delattr,
        type=SafeType,
        dir=safe_dir,
        __import__=guarded_import,
        PolicyError=PolicyError,
    )
    return table
