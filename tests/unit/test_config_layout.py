"""The configuration modules' layering: a facade over the model and the parser package,
with no import circle (type-only imports included) and no module too big to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pyvrrp.core.config as facade
import pyvrrp.core.model as model

CORE = Path(__file__).parents[2] / "pyvrrp" / "core"
CONFIG_MODULES = [
    CORE / "config.py",
    CORE / "model.py",
    *sorted((CORE / "configparse").glob("*.py")),
]
MAX_LINES = 700


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """Every pyvrrp module ``path`` imports, at any depth of the tree (TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("pyvrrp.")}


def test_every_model_name_is_reexported_by_the_facade() -> None:
    for name in model.__all__:
        assert getattr(facade, name) is getattr(model, name), name
    assert {"parse_node", "key_path", "summary"} <= set(facade.__all__)


def test_the_model_imports_no_parser() -> None:
    imports = project_imports(CORE / "model.py")
    # The lower core modules whose constants it shares, never the configparse package.
    assert imports <= {"pyvrrp.core.packet", "pyvrrp.core.params", "pyvrrp.core.timers"}, imports


def test_no_import_circle_among_the_configuration_modules() -> None:
    graph = {module_name(p): project_imports(p) for p in CONFIG_MODULES}
    # A package's __init__ is loaded on the way to any of its modules, except from inside
    # the package (which is already being loaded).
    for name, imports in graph.items():
        packages = {".".join(i.split(".")[:k]) for i in imports for k in range(3, i.count(".") + 1)}
        graph[name] = imports | {p for p in packages if not (name + ".").startswith(p + ".")}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done" or name not in graph:
            return
        assert state.get(name) != "open", "import circle: " + " -> ".join([*trail, name])
        state[name] = "open"
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        state[name] = "done"

    for name in graph:
        visit(name, [])


@pytest.mark.parametrize("path", CONFIG_MODULES, ids=lambda p: p.name)
def test_configuration_modules_stay_readable(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it"
