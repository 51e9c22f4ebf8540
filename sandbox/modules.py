"""The import allow-list: each allowed module is handed out as a read-only proxy of curated names.

A real module would let public attribute chains walk to other modules (`re.enum.sys.modules`,
`json.codecs.open`, `datetime.sys`). A proxy holds only the functions, classes and constants listed
here, so nothing reachable from it is a module. Names that look harmless but take attribute names
or evaluate strings (`operator.attrgetter`, `methodcaller`, `functools.update_wrapper`/`wraps`,
`functools.singledispatch`, `typing.get_type_hints`, `string.Formatter`, `dataclasses.make_dataclass`)
are left out on purpose.

`collections.namedtuple` classes keep their underscored API readable (`_asdict`, `_replace`, `_fields`,
`_make`, `_field_defaults`; see policy.NAMEDTUPLE_NAMES): it is pure tuple code.
"""

from __future__ import annotations

import importlib
from typing import Any

from sandbox.rules import USER_CLASSES, PolicyError

_PUBLIC = "*"  # every public name that is not a module

ALLOWED: dict[str, tuple[str, ...] | str] = {
    "re": [
        "compile",
        "search",
        "match",
        "fullmatch",
        "findall",
        "finditer",
        "sub",
        "subn",
        "split",
        "escape",
        "purge",
        "error",
        "Pattern",
        "Match",
        "A",
        "ASCII",
        "I",
        "IGNORECASE",
        "M",
        "MULTILINE",
        "S",
        "DOTALL",
        "X",
        "VERBOSE",
        "U",
        "UNICODE",
        "NOFLAG",
    ],
    "json": ("dumps", "loads", "JSONDecodeError", "JSONDecoder", "JSONEncoder"),
    "math": _PUBLIC,
    "statistics": _PUBLIC,
    "collections": ("Counter", "defaultdict", "OrderedDict", "deque", "namedtuple", "ChainMap"),
    "itertools": _PUBLIC,
    "functools": ("reduce", "partial", "lru_cache", "cache", "cmp_to_key", "total_ordering"),
    "datetime": ("date", "datetime", "time", "timedelta", "timezone", "MINYEAR", "MAXYEAR"),
    "string": [
        "ascii_letters",
        "ascii_lowercase",
        "ascii_uppercase",
        "digits",
        "hexdigits",
        "octdigits",
        "punctuation",
        "printable",
        "whitespace",
        "capwords",
        "Template",
    ],
    "textwrap": ("wrap", "fill", "dedent", "indent", "shorten", "TextWrapper"),
    "heapq": ("heappush", "heappop", "heapify", "heapreplace", "heappushpop", "nlargest", "nsmallest", "merge"),
    "bisect": ("bisect", "bisect_left", "bisect_right", "insort", "insort_left", "insort_right"),
    "random": [
        "random",
        "uniform",
        "randint",
        "randrange",
        "choice",
        "choices",
        "sample",
        "shuffle",
        "seed",
        "gauss",
        "normalvariate",
        "betavariate",
        "expovariate",
        "triangular",
        "Random",
    ],
    "decimal": ("Decimal", "getcontext", "localcontext", "InvalidOperation", "ROUND_HALF_UP", "ROUND_HALF_EVEN"),
    "fractions": ("Fraction",),
    # A curated proxy (see _dataclasses): dataclass() only on the cell's own plain classes, so that
    # asdict/astuple/replace, which read attributes by field name, only read the cell's own fields.
    "dataclasses": [
        "dataclass",
        "field",
        "fields",
        "asdict",
        "astuple",
        "replace",
        "is_dataclass",
        "FrozenInstanceError",
        "MISSING",
    ],
    "typing": [
        "Any",
        "Callable",
        "Dict",
        "List",
        "Optional",
        "Set",
        "FrozenSet",
        "Tuple",
        "Union",
        "Iterable",
        "Iterator",
        "Sequence",
        "Mapping",
        "MutableMapping",
        "Generator",
        "Literal",
        "DefaultDict",
        "Counter",
        "cast",
        "TYPE_CHECKING",
    ],
    "operator": [
        "abs",
        "add",
        "and_",
        "concat",
        "contains",
        "countOf",
        "eq",
        "floordiv",
        "ge",
        "gt",
        "index",
        "indexOf",
        "inv",
        "invert",
        "is_",
        "is_not",
        "itemgetter",
        "le",
        "lshift",
        "lt",
        "mod",
        "mul",
        "ne",
        "neg",
        "not_",
        "or_",
        "pos",
        "pow",
        "rshift",
        "sub",
        "truediv",
        "truth",
        "xor",
    ],
}


class ModuleProxy:
    """A module as the REPL sees it: attribute reads of curated names, nothing else."""

    __slots__ = ("_name", "_names")

    def __init__(self, name: str, names: dict[str, Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_names", names)

    def __getattr__(self, attr: str) -> Any:
        try:
            return self._names[attr]
        except KeyError:
            raise AttributeError(
                f"module '{self._name}' in the REPL has no attribute '{attr}' "
                "(only its curated public functions, classes and constants are available)"
            ) from None

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(f"module '{self._name}' is read-only in the REPL")

    def __dir__(self) -> list[str]:
        return sorted(self._names)

    def __repr__(self) -> str:
        return f"<module '{self._name}' (REPL)>"


def _dataclass(cls: Any = None, /, **options: Any) -> Any:
    """`dataclasses.dataclass` for the REPL: only on classes the cell defined, deriving from nothing
    but other such classes and `object` (a dataclass over `str` would let `asdict` read `format`)."""
    import dataclasses

    def wrap(c: Any) -> Any:
        if not isinstance(c, type) or any(base is not object and base not in USER_CLASSES for base in c.__mro__):
            raise PolicyError(
                "dataclass() in the REPL works on your own classes only (deriving from object or your "
                "other classes), not on built-in or library types"
            )
        made = dataclasses.dataclass(c, **options)
        USER_CLASSES.add(made)  # slots=True builds a new class
        return made

    return wrap if cls is None else wrap(cls)


_OVERRIDES: dict[str, dict[str, Any]] = {"dataclasses": {"dataclass": _dataclass}}


def _curate(name: str) -> dict[str, Any]:
    module = importlib.import_module(name)
    spec = ALLOWED[name]
    if spec == _PUBLIC:
        names = list(getattr(module, "__all__", [n for n in dir(module) if not n.startswith("_")]))
    else:
        names = list(spec)
    curated = {n: getattr(module, n) for n in names if hasattr(module, n)}
    curated.update(_OVERRIDES.get(name, {}))
    return {n: v for n, v in curated.items() if type(v).__name__ != "module"}


_PROXIES: dict[str, ModuleProxy] = {}


def proxy(name: str) -> ModuleProxy:
    """The shared proxy of an allowed module (raises KeyError for any other name)."""
    if name not in _PROXIES:
        if name not in ALLOWED:
            raise KeyError(name)
        _PROXIES[name] = ModuleProxy(name, _curate(name))
    return _PROXIES[name]


def preload() -> None:
    """Build every proxy now: the zygote does this once so forked workers start warm."""
    for name in ALLOWED:
        proxy(name)
