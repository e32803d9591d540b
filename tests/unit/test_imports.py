"""The architecture's import rules, checked on the source and in a fresh interpreter."""

from __future__ import annotations

import ast
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
