"""Names that moved between runtime modules stay importable where code used to find them."""

from __future__ import annotations

import importlib

import pytest

# (old module, name, where it lives now)
MOVED = [
    *(
        ("pyvrrp.runtime.netlink", name, "pyvrrp.runtime.netlink.contract")
        for name in [
            "SUBSCRIBER_BUFFER",
            "AddressEvent",
            "AddressSpec",
            "Change",
            "EventHub",
            "LinkEvent",
            "LinkState",
            "Netlink",
            "NetlinkError",
            "NetlinkEvent",
            "NetlinkStatistics",
            "address_conflict",
            "describe_address",
            "describe_item",
            "describe_route",
            "describe_rule",
            "interface_missing",
            "kernel_error",
            "route_conflict",
        ]
    ),
    ("pyvrrp.runtime.netlink", "PyrouteNetlink", "pyvrrp.runtime.netlink.kernel"),
    ("pyvrrp.runtime.netlink", "open_netlink", "pyvrrp.runtime.netlink.kernel"),
    ("pyvrrp.runtime.netlink", "enter_netns", "pyvrrp.runtime.netlink.netns"),
    ("pyvrrp.runtime.netlink", "in_netns", "pyvrrp.runtime.netlink.netns"),
    *(
        ("pyvrrp.runtime.trackers", name, "pyvrrp.runtime.process")
        for name in ["KILL_DELAY", "ProcessRunner", "RealProcessRunner", "ScriptOutcome"]
    ),
    ("pyvrrp.runtime.trackers", "shell_argv", "pyvrrp.runtime.process"),
    ("pyvrrp.runtime.control", "UnknownInstance", "pyvrrp.runtime.errors"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_a_moved_name_is_the_same_object_at_its_old_path(old: str, name: str, new: str) -> None:
    old_module = importlib.import_module(old)

    assert getattr(old_module, name) is getattr(importlib.import_module(new), name)
    assert name in old_module.__all__


def test_an_unknown_name_of_the_netlink_package_is_an_attribute_error() -> None:
    netlink = importlib.import_module("pyvrrp.runtime.netlink")
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = netlink.nothing_here
