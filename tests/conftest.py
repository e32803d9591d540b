"""Shared test configuration.

Tests under tests/netns need root and Linux network namespaces; tests under tests/packaging
need root and dpkg (they build the Debian package and install it into a throw-away root).
Where they cannot run they are skipped, except when PYVRRP_REQUIRE_NETNS=1 (CI sets it in
.ci/run): then they fail, so a CI machine that lost its privileges or tools cannot pass
silently.

The netns tests run last, the chaos soak's first among them: the soak (tests/netns/soakrun.py)
starts in the background as soon as collection is over and runs its two minutes while the unit
and runtime tests do, so it costs the suite only what is left of it when they end.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.netns import soakrun

NETNS_DIR = Path(__file__).parent / "netns"
PACKAGING_DIR = Path(__file__).parent / "packaging"
SOAK_MODULE = NETNS_DIR / "test_soak.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parents = Path(str(item.fspath)).parents
        if NETNS_DIR in parents:
            item.add_marker(pytest.mark.netns)
        if PACKAGING_DIR in parents:
            item.add_marker(pytest.mark.packaging)
    # A stable sort: each group keeps its order (modules stay together for their fixtures).
    items.sort(key=_run_order)


def _run_order(item: pytest.Item) -> int:
    """Everything else first, then the soak's module (its run started at collection's end),
    then the other netns tests, which must not share the machine with the soak's lab."""
    path = Path(str(item.fspath))
    if NETNS_DIR not in path.parents:
        return 0
    return 1 if path == SOAK_MODULE else 2


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the two-minute soak before collection (10 s with coverage) if the arguments
    include test_soak.py and the machine can run it (otherwise the test itself skips or fails
    as every netns test does); `pytest_collection_finish` stops it if -k/-m left it out."""
    config = session.config
    if config.option.collectonly or config.option.setupplan:
        return
    paths = [Path(config.invocation_params.dir, str(arg).split("::")[0]) for arg in config.args]
    if not any(p.resolve() in (SOAK_MODULE, *SOAK_MODULE.parents) for p in paths):
        return
    if netns_unavailable_reason() is None and all(
        shutil.which(tool) for tool in ("nft", "tcpdump", "curl")
    ):
        soakrun.start_in_background()


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(item.nodeid.endswith(soakrun.SOAK_TEST) for item in session.items):
        soakrun.stop_background()


def pytest_sessionfinish(session: pytest.Session) -> None:
    soakrun.stop_background()


@functools.cache
def netns_unavailable_reason() -> str | None:
    """Why network namespace tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "the `ip` command (Debian package iproute2) is missing"
    name = f"pyvrrp-probe-{uuid.uuid4().hex[:8]}"
    created = subprocess.run(
        ["ip", "netns", "add", name], capture_output=True, text=True, check=False
    )
    if created.returncode != 0:
        return f"cannot create a network namespace: {created.stderr.strip()}"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    return None


@functools.cache
def packaging_unavailable_reason() -> str | None:
    """Why the Debian package tests cannot run here, or None if they can."""
    for tool in ("dpkg-deb", "dpkg"):
        if shutil.which(tool) is None:
            return f"`{tool}` (Debian package dpkg) is missing"
    if os.geteuid() != 0:
        return "installing the package into a throw-away root needs root"
    return None


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; fail instead when PYVRRP_REQUIRE_NETNS=1 (CI)."""
    if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
        pytest.fail(f"{reason} (PYVRRP_REQUIRE_NETNS=1 forbids skipping)")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _netns_guard(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("netns") is not None:
        reason = netns_unavailable_reason()
        if reason is not None:
            skip_or_fail(reason)
    if request.node.get_closest_marker("packaging") is not None:
        reason = packaging_unavailable_reason()
        if reason is not None:
            skip_or_fail(reason)
