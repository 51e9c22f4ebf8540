"""The dependency rule, kept: four layers, imports only downward, and no import cycle anywhere.

- the core (the shared context, search, token counting, types, errors, litellm's data files, the fork
  server) imports neither the engine nor the sandbox, so either can be read, tested and reused on its own;
- the sandbox (`sandbox/`) imports the core and nothing else of rlm: model-written code runs next to it;
- the engine (models, scheduler, budget, the node tree) may import both, and never a surface;
- the surfaces (the CLI, the Python API and its display, `rlm serve`, batch, bench, `rlm view`, the
  scripted test server) sit on top and may import anything below.
The datasets (`rlm_datasets`) import only the core.

Every import counts, at module level or inside a function (a lazy import still ties the modules
together); only those under `if TYPE_CHECKING:` are left out, since they never run.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"rlm": "rlm", "sandbox": "sandbox", "rlm_datasets": "datasets"}  # import name -> folder
SURFACES = ("rlm.__main__", "rlm.cli", "rlm.api", "rlm.display", "rlm.progress", "rlm.terminal", "rlm.serve")
SURFACES += ("rlm.batch", "rlm.sweep", "rlm.ray_backend", "rlm.view", "rlm.scripted")
SURFACES += ("rlm.bench", "rlm.bench_task", "rlm.bench_ray", "rlm.bench_report")
CORE = ("rlm.context", "rlm.search", "rlm.tokens", "rlm.types", "rlm.errors", "rlm.litellm_files", "rlm.forkserver")


def _modules() -> dict[str, Path]:
    found = {}
    for name, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            dotted = ".".join((name, *parts)).removesuffix(".__init__")
            found[dotted] = path
    return found


MODULES = _modules()


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: TYPE_CHECKING blocks are skipped."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _owner(name: str) -> str | None:
    """The project module an imported name resolves to (a module, or the module holding the name)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports_of(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
        targets.update(owner for owner in map(_owner, names) if owner not in (None, module))
    return targets


GRAPH = {module: _imports_of(module) for module in MODULES}


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def _layer(module: str) -> str:
    if module == "rlm":
        return "rlm"
    if _under(module, ("rlm_datasets",)):
        return "datasets"
    if _under(module, CORE):
        return "core"
    if _under(module, SURFACES):
        return "surface"
    return "sandbox" if _under(module, ("sandbox",)) else "engine"


ALLOWED = {
    "core": {"core"},
    "sandbox": {"core", "sandbox"},
    "engine": {"core", "sandbox", "engine"},
    "datasets": {"core", "datasets"},
}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_itself_and_the_layers_below(layer: str) -> None:
    wrong = sorted(
        f"{module} imports {target} ({_layer(target)})"
        for module, targets in GRAPH.items()
        if _layer(module) == layer
        for target in targets
        if _layer(target) not in ALLOWED[layer] | {"rlm"}  # `rlm` itself only names things lazily
    )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_anywhere() -> None:
    try:
        graphlib.TopologicalSorter(GRAPH).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_package_root_imports_nothing_at_import_time() -> None:
    """`import rlm` must stay instant and must not pull in the engine: it names things lazily."""
    assert GRAPH["rlm"] == set()


def test_the_rule_sees_real_imports() -> None:
    """The walk is not blind: the engine's known edges and the sandbox's use of the core are found."""
    assert "rlm.context" in GRAPH["sandbox.repl"]
    assert "sandbox.session" in GRAPH["rlm.engine"] or "sandbox" in GRAPH["rlm.engine"]
    assert "rlm.bench_report" in GRAPH["rlm.bench"]


def test_every_package_folder_is_installed() -> None:
    """pyproject lists packages by hand: a new folder left out of it would be missing from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module for module, path in MODULES.items() if path.name == "__init__.py"}
    assert folders <= listed, f"not in pyproject's packages: {sorted(folders - listed)}"
