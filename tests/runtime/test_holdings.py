"""What an instance holds, in one list: install order, its reverse, a reload's diff, and the
removal of what a crashed run left behind."""

from __future__ import annotations

import logging
from ipaddress import IPv4Interface

import pytest

from pyvrrp.core.config import parse_node
from pyvrrp.runtime.holdings import Holdings, remove_stale
from pyvrrp.runtime.netlink import describe_item
from pyvrrp.testing.fakenetlink import FakeNetlink

LINK = "eth0.4000"


def vip58(**changes: object) -> Holdings:
    instance = {
        "interface": LINK,
        "vrid": 58,
        "addresses": ["1.2.3.58/29", "1.2.3.59/29"],
        "excluded_addresses": ["2a03:4444:fff0:59:88::58/64"],
        "virtual_routes": [{"to": "10.58.0.0/16", "via": "192.168.200.254"}],
        "virtual_rules": [{"from": "1.2.3.56/29", "table": 100}],
        **changes,
    }
    return Holdings.of(parse_node({"instances": {"vip58": instance}}).instances["vip58"])


def test_install_order_is_addresses_excluded_routes_rules_and_removal_its_reverse() -> None:
    holdings = vip58()
    assert [describe_item(i) for i in holdings.install_order()] == [
        f"1.2.3.58/29 dev {LINK}",
        f"1.2.3.59/29 dev {LINK}",
        f"2a03:4444:fff0:59:88::58/64 dev {LINK}",
        "10.58.0.0/16 via 192.168.200.254",
        "from 1.2.3.56/29 lookup 100",
    ]
    assert holdings.removal_order() == holdings.install_order()[::-1]
    assert holdings.specs == (*holdings.addresses, *holdings.excluded)


def test_minus_is_what_one_holds_and_the_other_does_not() -> None:
    old = vip58()
    new = vip58(addresses=["1.2.3.58/29", "1.2.3.60/29"], virtual_rules=[])
    assert [describe_item(i) for i in new.minus(old).install_order()] == [f"1.2.3.60/29 dev {LINK}"]
    assert [describe_item(i) for i in old.minus(new).install_order()] == [
        f"1.2.3.59/29 dev {LINK}",
        "from 1.2.3.56/29 lookup 100",
    ]
    assert old.minus(old) == Holdings()


async def test_remove_stale_removes_what_is_there_in_removal_order_and_logs_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "pyvrrp")
    netlink = FakeNetlink()
    netlink.add_link(LINK, addresses=[IPv4Interface("192.168.200.1/24")])
    holdings = vip58()
    await netlink.add_address(holdings.addresses[0])
    await netlink.add_route(holdings.routes[0])
    netlink.operations.clear()
    await remove_stale(netlink, "vip58", holdings)
    assert netlink.operations == [
        (f"remove_{kind}", item)
        for kind, item in zip(
            ["rule", "route", "address", "address", "address"],
            holdings.removal_order(),
            strict=True,
        )
    ]
    assert caplog.messages == [
        "vip58: removed 10.58.0.0/16 via 192.168.200.254, left by a previous run",
        f"vip58: removed 1.2.3.58/29 dev {LINK}, left by a previous run (we start as backup)",
    ]
    assert netlink.routes == ()
