"""Run-time guards: the functions RestrictedPython's rewritten code calls (safe_builtins.py puts them
in the REPL's builtins too).

Every attribute read goes through `guarded_getattr`, every write target through `guarded_write`,
every import through `guarded_import`. The rules: no `_` names, no frames, tracebacks or code
objects, `str.format` only through a formatter whose field lookups use the same guards (checked on
the attribute's value, so a `super()` of a str subclass or a context view's forwarded `format` is
covered too), writes only to the cell's own containers and class instances, imports only as
curated proxies. Objects of the rlm.context and rlm.search packages (views, document lists, hits) expose an
ALLOW-list of public names only (`_restricted`): their factories and `to_spec` are out of reach.
"""

from __future__ import annotations

import _string
import collections
import contextlib
import importlib
import operator
import string
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from sandbox.modules import ALLOWED, proxy
from sandbox.rules import DUNDER_METHODS, NAMEDTUPLE_NAMES, READABLE_DUNDERS, USER_CLASSES, PolicyError

_OPAQUE_TYPES = (types.FrameType, types.TracebackType, types.CodeType)
_GENERATOR_TYPES = (types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType)
_GENERATOR_METHODS = frozenset({"send", "throw", "close"})
_CONTEXT_PRIVATE = frozenset({"close", "fileno", "detach", "release", "mmap", "file"})
_FORMAT_NAMES = frozenset({"format", "format_map"})
_CLASS_DUNDERS = (
    frozenset({"__module__", "__qualname__", "__doc__", "__classcell__", "__annotations__"}) | DUNDER_METHODS
)
# Modules that C code of allowed modules imports on first use (datetime.strptime, strftime, ...).
# C code (PyImport_Import) passes a list as fromlist; an import statement in a cell passes None or
# a tuple and the cell cannot call __import__ itself, so these real modules go only to that C code.
_C_LAZY_IMPORTS = frozenset({"_strptime", "time", "calendar", "locale", "unicodedata"})
_WRITABLE_TYPES = (dict, list, set, bytearray, collections.deque)
_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}

# The `__name__` of a REPL namespace, so the `__module__` of the cell's classes. An empty module of
# that name is registered while a REPL runs in the process, because dataclasses looks the class's
# module up (string annotations); importing the sandbox leaves the host's `sys.modules` alone.
REPL_MODULE = "__repl__"
_repl_holders = 0
_repl_lock = threading.Lock()


def hold_repl_module() -> None:
    """Register the empty REPL module for an interpreter about to run cells in this process."""
    global _repl_holders
    with _repl_lock:
        if not _repl_holders:
            sys.modules.setdefault(REPL_MODULE, types.ModuleType(REPL_MODULE))
        _repl_holders += 1


def release_repl_module() -> None:
    """The interpreter is done: the last one to go takes the module out of `sys.modules` again."""
    global _repl_holders
    with _repl_lock:
        _repl_holders = max(0, _repl_holders - 1)
        if not _repl_holders:
            sys.modules.pop(REPL_MODULE, None)


def _blocked_name(name: str, obj: Any = None) -> str | None:
    if name in NAMEDTUPLE_NAMES and _is_namedtuple(obj):
        return None
    if name.startswith("_") and name not in READABLE_DUNDERS:
        return f"attribute '{name}' is blocked: names starting with '_' are not reachable in the REPL"
    if name in INSPECT_ATTRIBUTES:
        return f"attribute '{name}' is blocked: frames, tracebacks and code objects are not reachable"
    return None


def _is_namedtuple(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return issubclass(cls, tuple) and type(getattr(cls, "_fields", None)) is tuple


_RESTRICTED: dict[type, frozenset[str]] = {}


def _restricted() -> dict[type, frozenset[str]]:
    """The classes of rlm.context and rlm.search the cell meets, each with the ALLOW-list of public
    attribute names the cell may read (what the system prompt documents): nothing else, so no
    factory (`from_path`, `from_spec`, ...), no `to_spec` (host paths) and no `describe`."""
    if not _RESTRICTED:
        import dataclasses

        from rlm.context import Context, DocumentList, TextView

        str_methods = frozenset(n for n in dir(str) if not n.startswith("_"))
        table: dict[type, frozenset[str]] = {
            Context: frozenset(),
            TextView: str_methods | {"name", "lines"},
            DocumentList: frozenset({"names", "keys", "values", "items"}),
        }
        with contextlib.suppress(ImportError):
            from rlm.search import GrepHit, Hit

            for record in (Hit, GrepHit):
                table[record] = frozenset(f.name for f in dataclasses.fields(record))
        _RESTRICTED.update(table)
    return _RESTRICTED


def _in_restricted_package(module: str) -> bool:
    """Whether a class comes from rlm.context or rlm.search, the package or any module in it."""
    return module in ("rlm.context", "rlm.search") or module.startswith(("rlm.context.", "rlm.search."))


def _allowed_names(obj: Any) -> frozenset[str] | None:
    """The allow-list that applies to `obj` (a context object, its class, or a super() of one)."""
    table = _RESTRICTED or _restricted()
    kind = type(obj)
    if kind is super:
        for cls in (obj.__thisclass__, obj.__self_class__):
            if cls is not None and any(base in table for base in cls.__mro__):
                return frozenset()  # super() of a context object: its base classes are not for the cell
        return None
    if kind in table:
        return table[kind]
    if isinstance(obj, type) and obj in table:
        return table[obj]
    if _in_restricted_package(kind.__module__) and not isinstance(obj, type):
        return frozenset()  # any other object of those packages: nothing
    return None


def guarded_getattr(obj: Any, name: str, *default: Any) -> Any:
    """`obj.name` for the cell, plus the `getattr` builtin."""
    if type(name) is not str:
        raise TypeError("attribute name must be a str")
    problem = _blocked_name(name, obj)
    if problem is None and isinstance(obj, _OPAQUE_TYPES):
        problem = "frames, tracebacks and code objects are not reachable from the REPL"
    if problem is None and isinstance(obj, _GENERATOR_TYPES) and name not in _GENERATOR_METHODS:
        problem = f"generator attribute '{name}' is blocked; only send, throw and close are available"
    if problem is None and name in _CONTEXT_PRIVATE and type(obj).__module__.startswith("rlm.context"):
        problem = f"context.{name} is blocked: the shared context is read-only and stays open"
    if problem is None:
        allowed = _allowed_names(obj)
        if allowed is not None and name not in allowed and name not in READABLE_DUNDERS:
            problem = (
                f"'{name}' is not available on {_kind_name(obj)} in the REPL: the context offers "
                "the str methods, .name and lines() (a list of documents: names, keys, values, items)"
            )
    if problem is not None:
        raise PolicyError(problem)
    value = getattr(obj, name, *default)
    if name in _FORMAT_NAMES:
        return _safe_format(value)
    return value


def match_attr_problem(name: str) -> str | None:
    """Why a `case C(name=...)` pattern may not read `name` (the read is raw, so it is checked by
    name at compile time): `_` names, frames and code, `format`, and every public name of the
    context's classes that their allow-list leaves out (`to_spec`, `from_path`, ...)."""
    problem = _blocked_name(name)
    if problem is None and name in _FORMAT_NAMES:
        problem = f"a match pattern cannot read '{name}'; call it as a method instead"
    if problem is None:
        for cls, allowed in (_RESTRICTED or _restricted()).items():
            if name not in allowed and hasattr(cls, name):
                problem = f"a match pattern cannot read '{name}': it is not available on the context in the REPL"
    return problem


class MatchValues:
    """The dotted names of a `match` statement's value and class patterns (`case Color.RED:`),
    evaluated lazily through the guards: the policy rewrites them to `_tmpN.vK` on one of these."""

    __slots__ = ("_thunks",)

    def __init__(self, *thunks: Callable[[], Any]) -> None:
        self._thunks = thunks

    def __getattr__(self, name: str) -> Any:
        return self._thunks[int(name[1:])]()


def _kind_name(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the {obj.__name__} class"
    return f"{type(obj).__name__} objects"


def _safe_format(value: Any) -> Any:
    """The real `str.format`/`format_map` (bound to any str, its subclasses, a super() of one, or a
    context view's text; or unbound) never reaches the cell: it becomes the guarded formatter."""
    kind = type(value)
    if kind is types.BuiltinMethodType and isinstance(value.__self__, str) and value.__name__ in _FORMAT_NAMES:
        return _bound_format(value.__self__, value.__name__)
    if kind is types.MethodDescriptorType and value.__objclass__ is str and value.__name__ in _FORMAT_NAMES:
        return _bound_format(str, value.__name__)
    return value


def guarded_hasattr(obj: Any, name: str) -> bool:
    try:
        guarded_getattr(obj, name)
    except (AttributeError, PolicyError):
        return False
    return True


def guarded_getitem(obj: Any, key: Any) -> Any:
    return obj[key]


def guarded_write(obj: Any) -> Any:
    """The target of `obj.x = v` or `obj[k] = v`: only the cell's own containers and instances."""
    if isinstance(obj, _WRITABLE_TYPES) or type(obj) in USER_CLASSES or obj in USER_CLASSES:
        return obj
    raise PolicyError(
        f"cannot assign attributes or items of {type(obj).__name__} objects in the REPL; "
        "only your own dicts, lists, sets and class instances are writable"
    )


def _blocked_write(name: Any) -> str | None:
    """Writes are stricter than reads: no `_` name at all (not even `__name__` or `__doc__`)."""
    if type(name) is not str:
        return "attribute name must be a str"
    if name.startswith("_"):
        return f"attribute '{name}' cannot be assigned: names starting with '_' are not reachable in the REPL"
    return _blocked_name(name)


def guarded_setattr(obj: Any, name: str, value: Any) -> None:
    problem = _blocked_write(name)
    if problem:
        raise PolicyError(problem)
    setattr(guarded_write(obj), name, value)


def guarded_delattr(obj: Any, name: str) -> None:
    problem = _blocked_write(name)
    if problem:
        raise PolicyError(problem)
    delattr(guarded_write(obj), name)


def inplace(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def make_class(name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
    """The metaclass of every `class` statement in a cell: no metaclasses, no extra dunders."""
    table = _RESTRICTED or _restricted()
    for base in bases:
        if isinstance(base, type) and issubclass(base, type):
            raise PolicyError("classes in the REPL cannot derive from type (metaclasses are not available)")
        if isinstance(base, type) and any(cls in table for cls in base.__mro__):
            raise PolicyError(f"classes in the REPL cannot derive from {base.__name__} (the context's own types)")
    if namespace.get("__module__") != REPL_MODULE:
        raise PolicyError(f"class {name} defines blocked names: __module__")
    extra = [key for key in namespace if key.startswith("_") and key not in _CLASS_DUNDERS]
    if extra:
        raise PolicyError(f"class {name} defines blocked names: {', '.join(extra)}")
    cls = type(name, bases, namespace)
    USER_CLASSES.add(cls)
    return cls


class _GuardedFormatter(string.Formatter):
    """`str.format` whose `{0.attr}` and `{0[key]}` lookups go through the REPL guards."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, part in rest:
            obj = guarded_getattr(obj, part) if is_attr else guarded_getitem(obj, part)
        return obj, first


_FORMATTER = _GuardedFormatter()


def guarded_format(template: str, args: Any = (), kwargs: Any = None) -> str:
    """`template.format(*args, **kwargs)` with the REPL's guarded field lookups."""
    return _FORMATTER.vformat(template, tuple(args), kwargs or {})


def _bound_format(obj: Any, name: str) -> Callable[..., str]:
    if isinstance(obj, type):
        if name == "format":
            return lambda template, *args, **kwargs: _FORMATTER.vformat(template, args, kwargs)
        return lambda template, mapping: _FORMATTER.vformat(template, (), mapping)
    if name == "format":
        return lambda *args, **kwargs: _FORMATTER.vformat(obj, args, kwargs)
    return lambda mapping: _FORMATTER.vformat(obj, (), mapping)


def guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    if level:
        raise PolicyError("relative imports are not available in the REPL")
    if type(fromlist) is list and name in _C_LAZY_IMPORTS:
        return importlib.import_module(name)
    try:
        return proxy(name)
    except KeyError:
        raise PolicyError(
            f"import {name} is not allowed in the REPL. Allowed modules: {', '.join(sorted(ALLOWED))}. "
            "Files, processes, the network and the interpreter are out of reach; "
            "the data you need is in `context`."
        ) from None


def guard_globals() -> dict[str, Any]:
    """The hidden names RestrictedPython's rewritten code calls (all start with `_`)."""
    return {
        "_getattr_": guarded_getattr,
        "_getitem_": guarded_getitem,
        "_getiter_": iter,
        "_write_": guarded_write,
        "_inplacevar_": inplace,
        "_apply_": apply,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "__metaclass__": make_class,
        "_match_values_": MatchValues,
    }
