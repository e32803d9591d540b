"""Shared test configuration.

Tests under tests/netns need root and Linux network namespaces; tests under tests/packaging
need root and dpkg (they build the Debian package and install it into a throw-away root).
Where they cannot run they are skipped, except when PYVRRP_REQUIRE_NETNS=1 (CI sets it in
.ci/run): then they fail, so a CI machine that lost its privileges or tools cannot pass
silently.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

NETNS_DIR = Path(__file__).parent / "netns"
PACKAGING_DIR = Path(__file__).parent / "packaging"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parents = Path(str(item.fspath)).parents
        if NETNS_DIR in parents:
            item.add_marker(pytest.mark.netns)
        if PACKAGING_DIR in parents:
            item.add_marker(pytest.mark.packaging)


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
