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


def test_the_kernel_netlink_loads_pyroute2_when_asked_for() -> None:
    # The package's lazy names still give the real thing.
    loaded = loaded_after("from pyvrrp.runtime.netlink import open_netlink")

    assert "pyroute2" in loaded
    assert "pyvrrp.runtime.netlink.kernel" in loaded
