"""The REPL policy's shared vocabulary: the error a refused cell raises and the names the compile-time
policy (policy.py), the run-time guards (guards.py) and the module proxies (modules.py) agree on. A
leaf: it imports nothing of the sandbox, so those modules depend on it and never on each other in a circle.
"""

from __future__ import annotations

import weakref


class PolicyError(Exception):
    """A cell did something the REPL policy forbids; the message says what to do instead."""


# Dunder attributes a cell may read: plain strings, and models reach for `type(x).__name__`.
READABLE_DUNDERS = frozenset({"__name__", "__doc__"})
# Dunder methods a cell's class may define (ordinary protocols). Never: __getattr__, __getattribute__,
# __setattr__, __delattr__, __del__ (runs at any time, outside the cell's timer), __set_name__,
# __init_subclass__, __class_getitem__, __new__, __reduce__, __format__, __index__, descriptors.
# Reading any dunder attribute stays blocked (`x.__repr__` is refused); only the definitions are allowed.
DUNDER_METHODS = frozenset(
    {"__init__", "__post_init__", "__repr__", "__str__", "__len__", "__iter__", "__next__", "__reversed__"}
    | {"__getitem__", "__setitem__", "__delitem__", "__contains__", "__hash__", "__bool__", "__call__"}
    | {"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__enter__", "__exit__"}
    | {"__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__floordiv__"}
    | {"__mod__", "__neg__", "__abs__"}
)
# The underscored public API of collections.namedtuple: readable on named tuples (and their classes)
# only (guards.py checks the object); all of it is pure (no attribute names taken from strings).
NAMEDTUPLE_NAMES = frozenset({"_asdict", "_replace", "_fields", "_make", "_field_defaults"})
# Classes the cells defined: their instances are writable and dataclass() takes only them.
USER_CLASSES: weakref.WeakSet[type] = weakref.WeakSet()
