"""Where the daemon's resident memory goes before it runs: its imports, measured.

Usage: .venv/bin/python bench/memory.py [--config node.toml] [--top 25] [--no-defer]

In a fresh interpreter, does what ``pyvrrp -c node.toml`` does before the routers start:
defers ssl and hmac (pyvrrp/runtime/deferred.py; ``--no-defer`` to see what that saves),
imports the command line and the daemon, and reads the configuration (``--config``, default:
a seed-like node of three instances, written to a temporary directory). It prints VmRSS
(and its anonymous / file-backed parts) after each step, then the imports that added the
most resident memory: "self" is what the module's own loading added, "with imports" what
it added with the modules it imported first. RSS grows in pages and arenas, so a module's
figure can carry part of what earlier ones freed or reserved: read the large ones, and
compare totals between two trees.

No root, no lab: ``bench/scale.py`` measures the running daemons (seed node, K=255); this
one says which import to look at. docs/benchmarks.md ("Cost at scale", "Memory") has the
figures.
"""

from __future__ import annotations

import argparse
import importlib
import importlib._bootstrap as bootstrap  # the loader hook: a bench tool, not pyvrrp
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_LIKE = """\
[global]
router_id = "A"
control_socket = "{dir}/pyvrrp.sock"
state_dir = "{dir}/state"

[scripts.ingress]
command = ["/bin/true"]
interval = 2.0
weight = -60

[instances.vip58]
interface = "eth0.4000"
vrid = 58
priority = 100
addresses = ["1.2.3.58/32"]
unicast_peers = ["192.168.200.2", "192.168.200.3"]
track_interfaces = ["eth0", "dummy0"]
track_scripts = ["ingress"]

[instances.vip59]
interface = "eth0.4000"
vrid = 59
priority = 50
addresses = ["1.2.3.59/32"]
unicast_peers = ["192.168.200.2", "192.168.200.3"]
track_interfaces = ["eth0", "dummy0"]
track_scripts = ["ingress"]

[instances.vip60]
interface = "eth0.4000"
vrid = 60
priority = 75
addresses = ["1.2.3.60/32"]
unicast_peers = ["192.168.200.2", "192.168.200.3"]
track_interfaces = ["eth0", "dummy0"]
track_scripts = ["ingress"]
"""


def memory_kib(status: str | None = None) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile in KiB, from ``status`` (a /proc/PID/status text; default:
    this process's)."""
    if status is None:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    keys = ("VmRSS", "RssAnon", "RssFile")
    return {
        line.split(":")[0]: int(line.split()[1])
        for line in status.splitlines()
        if line.split(":")[0] in keys
    }


def _rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


# What the import system calls to run a module found but not loaded yet (CPython 3.11-3.13).
_HOOKED = "_load_unlocked"


class ImportCosts:
    """Records the RSS each module's loading adds, with and without what it imports."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, str]] = []  # (self MiB, with imports MiB, name)
        self._stack: list[list[Any]] = []
        self._load: Callable[[Any], Any] = getattr(bootstrap, _HOOKED)

    def __enter__(self) -> ImportCosts:
        def load(spec: Any) -> Any:
            self._stack.append([spec.name, _rss_mib(), 0.0])
            try:
                return self._load(spec)
            finally:
                name, start, children = self._stack.pop()
                added = _rss_mib() - start
                self.rows.append((added - children, added, name))
                if self._stack:
                    self._stack[-1][2] += added

        setattr(bootstrap, _HOOKED, load)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(bootstrap, _HOOKED, self._load)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="node.toml to read (default: a seed-like node)")
    parser.add_argument("--top", type=int, default=25, help="imports to list")
    parser.add_argument("--no-defer", action="store_true", help="import ssl and hmac as usual")
    args = parser.parse_args()

    bare = subprocess.run(
        [sys.executable, "-c", "print(open('/proc/self/status').read())"],
        capture_output=True,
        check=True,
        text=True,
    )
    steps: list[tuple[str, dict[str, int]]] = [
        ("python alone (site included)", memory_kib(bare.stdout)),
        ("python + this script's own imports", memory_kib()),
    ]
    with tempfile.TemporaryDirectory() as where, ImportCosts() as costs:
        config = args.config
        if config is None:
            config = str(Path(where) / "node.toml")
            Path(config).write_text(SEED_LIKE.format(dir=where), encoding="utf-8")
        importlib.import_module("pyvrrp.cli")
        steps.append(("+ pyvrrp.cli (argparse, configuration, core)", memory_kib()))
        if not args.no_defer:
            from pyvrrp.runtime.deferred import DAEMON_DEFERRED, defer

            defer(DAEMON_DEFERRED)
        importlib.import_module("pyvrrp.runtime.daemon")
        steps.append(("+ pyvrrp.runtime.daemon (trio, runtime)", memory_kib()))
        from pyvrrp import configfile

        loaded = configfile.load(config)
        steps.append((f"+ {len(loaded.instances)} instances read from the file", memory_kib()))

    print(f"{'step':52} {'VmRSS':>8} {'anon':>8} {'file':>8}  (MiB)")
    for label, kib in steps:
        print(
            f"{label:52} {kib['VmRSS'] / 1024:8.1f} {kib['RssAnon'] / 1024:8.1f} "
            f"{kib['RssFile'] / 1024:8.1f}"
        )
    openssl = [m for m in ("_ssl", "_hashlib") if m in sys.modules]
    print(f"modules: {len(sys.modules)}; OpenSSL loaded: {', '.join(openssl) or 'no'}")
    # Compiling from source leaves more garbage in the heap than loading .pyc files (an
    # installed package has them; a checkout under PYTHONDONTWRITEBYTECODE=1 does not).
    cli_file = sys.modules["pyvrrp.cli"].__file__ or ""
    cached = Path(importlib.util.cache_from_source(cli_file)).exists()
    print(f"pyvrrp's bytecode: {'from .pyc files' if cached else 'compiled from source'}")
    print(f"\nthe {args.top} imports that added the most (MiB):")
    print(f"{'self':>6} {'with imports':>13}  module")
    for own, total, name in sorted(costs.rows, reverse=True)[: args.top]:
        print(f"{own:6.2f} {total:13.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
