"""The architecture's import rules, checked on the source and in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
CORE = ROOT / "pyvrrp" / "core"
FORBIDDEN_IN_CORE = {
    "trio",
    "pyroute2",
    "scapy",
    "socket",
    "time",
    "asyncio",
    "threading",
    "subprocess",
    "select",
    "os",
    "pyvrrp.runtime",
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_does_no_io_imports(path: Path) -> None:
    bad = {
        name
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_CORE)
    }
    assert not bad, f"{path.name} imports {sorted(bad)}: the core must stay sans-I/O"


def test_core_has_modules_to_check() -> None:
    assert {"packet.py", "router.py", "timers.py", "config.py"} <= {
        p.name for p in CORE.glob("*.py")
    }


PACKAGE = ROOT / "pyvrrp"


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def project_imports(name: str, path: Path) -> set[str]:
    """The pyvrrp modules ``name`` imports anywhere in its source: at the top, inside
    functions and under ``if TYPE_CHECKING:`` alike (a type-only import is still a
    dependency a reader has to follow)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:
                    found.add(submodule)
                elif base in MODULES:
                    found.add(base)
    found.discard(name)
    return found


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = [stack.pop()]
            while component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


GRAPH = {name: project_imports(name, path) for name, path in MODULES.items()}


def test_the_import_graph_sees_type_only_and_relative_imports() -> None:
    assert "pyvrrp.runtime.node" in GRAPH["pyvrrp"]  # under TYPE_CHECKING
    assert "pyvrrp.core.params" in GRAPH["pyvrrp.core.events"]
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_among_core_modules() -> None:
    core = {n: {d for d in deps if d.startswith("pyvrrp.core")} for n, deps in GRAPH.items()}
    core = {n: deps for n, deps in core.items() if n.startswith("pyvrrp.core")}
    assert import_circles(core) == []


def test_no_import_circle_among_pyvrrp_modules() -> None:
    assert import_circles(GRAPH) == []


def layer(module: str) -> int:
    """The layer a module belongs to: it may import only from its own layer or lower ones.

    The core (sans-I/O) is at the bottom with the version and the config file reader (which
    only uses the core); the runtime above it; the test doubles may use the runtime's
    contracts; the command line, the status text and the package face are on top.
    """
    if module.startswith("pyvrrp.core") or module in {"pyvrrp._version", "pyvrrp.configfile"}:
        return 0
    if module.startswith("pyvrrp.runtime"):
        return 1
    if module.startswith("pyvrrp.testing"):
        return 2
    return 3  # pyvrrp, pyvrrp.__main__, pyvrrp.cli, pyvrrp.status_format


def test_the_layer_function_knows_the_layers() -> None:
    assert layer("pyvrrp.core.router") < layer("pyvrrp.runtime.node") < layer("pyvrrp.cli")
    assert layer("pyvrrp.runtime.node") < layer("pyvrrp.testing.lan") < layer("pyvrrp")


def test_no_module_imports_from_a_layer_above_it() -> None:
    upward = sorted(
        f"{module} imports {other}"
        for module, deps in GRAPH.items()
        for other in deps
        if layer(other) > layer(module)
    )
    assert upward == []


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(out.stdout.split())


def test_importing_pyvrrp_loads_neither_scapy_nor_the_runtime() -> None:
    modules = loaded_after("import pyvrrp")
    assert not {m for m in modules if m.split(".")[0] in {"scapy", "trio", "pyroute2"}}


def test_the_runtime_never_imports_scapy() -> None:
    modules = loaded_after(
        "import pyvrrp.runtime.daemon, pyvrrp.runtime.node, pyvrrp.testing.lan, "
        "pyvrrp.testing.fakenetlink, pyvrrp.testing.sim"
    )
    assert "trio" in modules
    assert not {m for m in modules if m.split(".")[0] == "scapy"}


# The daemon's start path, `pyvrrp -c node.toml`, as far as trio.run: cli.main() with the
# daemon's serve() replaced (when pyvrrp.runtime.daemon is loaded) by one that reports what
# the process has loaded, once the configuration is read and trio runs.
_START_PATH = """
import importlib.abc, importlib.util, json, sys
import pyvrrp.cli

class Intercept(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "pyvrrp.runtime.daemon":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)

            async def serve(config, *args, **kwargs):
                from pyvrrp.runtime.deferred import is_pending

                loaded = {name: not is_pending(m) for name, m in sys.modules.items()}
                print(json.dumps({"instances": sorted(config.instances), "loaded": loaded}))

            module.serve = serve
            module.missing_capabilities = lambda: []  # the same path as root, for any user

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Intercept())
sys.exit(pyvrrp.cli.main(["-c", sys.argv[1], "--log-level", "error"]))
"""

# What a node without [global.email], metrics_listen, routes or rules never uses.
_NOT_ON_THE_START_PATH = {
    "_ssl": "OpenSSL (libssl): trio's SSLStream, which the daemon never makes",
    "_hashlib": "OpenSSL (libcrypto): hashlib and hmac",
    "hashlib": "loads libcrypto",
    "pyroute2": "only with routes or rules",
    "asyncio": "pyroute2's",
    "smtplib": "only for the first mail",
    "email": "only for the first mail",
    "h11": "only with metrics_listen",
    "pyvrrp.runtime.metrics": "only with metrics_listen",
    "pyvrrp.runtime.httpserver": "only with metrics_listen",
    "pyvrrp.keepalived": "the importer: a command of its own",
    "pyvrrp.status_format": "the client's",
    "difflib": "did-you-mean suggestions: only for a file with a mistake",
}


def test_the_daemons_start_path_loads_only_what_the_node_uses(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f'[global]\ncontrol_socket = "{tmp_path / "ctl.sock"}"\nstate_dir = "{tmp_path}"\n'
        '[instances.vip58]\ninterface = "eth0"\nvrid = 58\npriority = 100\n'
        'addresses = ["192.0.2.58/32"]\n'
    )
    out = subprocess.run(
        [sys.executable, "-c", _START_PATH, str(config)],
        capture_output=True,
        check=False,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["instances"] == ["vip58"]  # the configuration was read: serve() was reached
    loaded = {name for name, really in report["loaded"].items() if really}
    assert {"trio", "pyvrrp.runtime.daemon", "pyvrrp.runtime.node"} <= loaded
    unexpected = {
        name: why
        for name, why in _NOT_ON_THE_START_PATH.items()
        if any(m == name or m.startswith(name + ".") for m in loaded)
    }
    assert unexpected == {}
    # trio imported ssl and hmac: placeholders, whose code has not run (pyvrrp.runtime.deferred).
    assert {"ssl", "hmac"} <= set(report["loaded"]) - loaded
