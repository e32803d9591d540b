"""The fakes in pyvrrp.testing load no kernel library: code using them runs where pyroute2
cannot (no netlink, no root), and its tests do not pay for importing it."""

from __future__ import annotations

import pytest

from tests.unit.test_imports import loaded_after


@pytest.mark.parametrize(
    "module",
    [
        "pyvrrp.testing.fakenetlink",
        "pyvrrp.testing.lan",
        "pyvrrp.testing.fakeprocess",
        "pyvrrp.testing.fakestate",
        "pyvrrp.runtime.netlink",
        "pyvrrp.runtime.netlink.contract",
    ],
)
def test_module_loads_no_pyroute2(module: str) -> None:
    loaded = loaded_after(f"import {module}")

    assert module in loaded
    assert not any(name == "pyroute2" or name.startswith("pyroute2.") for name in loaded)


def test_the_kernel_netlink_loads_pyroute2_only_for_routes_and_rules() -> None:
    # The package's lazy names still give the real thing, and the daemon runs on it; links,
    # addresses and reads go through our own rtnetlink code, pyroute2 (about 12 MB) comes
    # with the requests module, which the owner thread imports for the first route or rule.
    for statement in (
        "from pyvrrp.runtime.netlink import open_netlink",
        "import pyvrrp.runtime.daemon",
    ):
        loaded = loaded_after(statement)
        assert "pyvrrp.runtime.netlink.kernel" in loaded
        assert not any(name == "pyroute2" or name.startswith("pyroute2.") for name in loaded)
    assert "pyroute2" in loaded_after("import pyvrrp.runtime.netlink.requests")
