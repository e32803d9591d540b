"""Re-assertion: a master puts back the addresses, routes and rules someone else removed.

NetworkManager, systemd-networkd or an operator may remove a VIP from under a master. A
removed address is noticed at once through netlink events; routes and rules, which the
kernel does not report to us, within ``REASSERT_INTERVAL``. A (100) and C (75) hold vip58;
A is master from 3.609375 s.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Interface, IPv6Interface
from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import State
from pyvrrp.runtime.netlink import AddressSpec
from pyvrrp.runtime.node import REASSERT_INTERVAL
from pyvrrp.testing.lan import AnnouncementRecord

from .cluster import INTERFACE, Cluster, Host, config, instance

VIP = "1.2.3.58/29"
EXCLUDED = "2a03:4444:fff0:59:88::58/64"
GATEWAY = "192.168.200.254"
ROUTE = {"to": "10.58.0.0/16", "via": GATEWAY, "dev": INTERFACE, "table": 100}
RULE = {"from": "1.2.3.56/29", "table": 100, "priority": 1000}


def seed(priority: int, **extra: Any) -> dict[str, Any]:
    return instance(58, priority, VIP, excluded=EXCLUDED, **extra)


async def start(cluster: Cluster, priority: int = 100, **extra: Any) -> tuple[Host, Host]:
    a = await cluster.start("A", config({"vip58": seed(priority, **extra)}))
    c = await cluster.start("C", config({"vip58": seed(75)}))
    return a, c


def adds(host: Host) -> list[str]:
    return [
        str(spec.address)
        for op, spec in host.netlink.operations
        if op == "add_address" and isinstance(spec, AddressSpec)
    ]


def announced(cluster: Cluster, records: list[AnnouncementRecord]) -> list[tuple[float, list[str]]]:
    return [(cluster.at(r.time), [str(a) for _, a in r.addresses]) for r in records]


async def test_address_removed_from_a_master_is_put_back_at_once_logged_and_announced(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    a, _ = await start(cluster)
    await cluster.sleep_until(12.25)
    announcements = len(a.announcements.records)
    with caplog.at_level(logging.WARNING, logger="pyvrrp"):
        a.netlink.remove_address_externally(INTERFACE, IPv4Interface(VIP))
        await trio.testing.wait_all_tasks_blocked()
        assert cluster.at(trio.current_time()) == 12.25
        assert a.holds(VIP)
        a.netlink.remove_address_externally(INTERFACE, IPv6Interface(EXCLUDED))
        await trio.testing.wait_all_tasks_blocked()
        assert a.holds(EXCLUDED)
    assert caplog.messages == [
        f"vip58: {VIP} dev {INTERFACE} had been removed by someone else: put it back",
        f"vip58: {EXCLUDED} dev {INTERFACE} had been removed by someone else: put it back",
    ]
    # Each comes back with its own options (IPv6: NODAD) and is announced alone.
    [spec] = [s for s in a.netlink.address_specs[INTERFACE] if str(s.address) == EXCLUDED]
    assert spec.nodad
    assert announced(cluster, a.announcements.records[announcements:]) == [
        (12.25, ["1.2.3.58"]),
        (12.25, ["2a03:4444:fff0:59:88::58"]),
    ]
    assert cluster.masters("vip58") == ["A"]
    assert [t.new for t in a.transitions] == [State.BACKUP, State.MASTER]


async def test_backup_does_not_put_back_an_address_it_does_not_hold(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    _, c = await start(cluster)
    await cluster.sleep_until(12.25)
    # Someone adds the VIP on the backup, then removes it: not ours to put back.
    c.netlink.add_address_externally(INTERFACE, IPv4Interface(VIP))
    c.netlink.remove_address_externally(INTERFACE, IPv4Interface(VIP))
    await cluster.sleep_until(25)
    assert not c.holds(VIP)
    assert adds(c) == []
    assert c.announcements.records == []
    assert c.state("vip58") is State.BACKUP


async def test_removed_route_and_rule_are_put_back_within_the_reassert_interval(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    assert REASSERT_INTERVAL == 10.0
    a, _ = await start(cluster, virtual_routes=[ROUTE], virtual_rules=[RULE])
    await cluster.sleep_until(12.25)
    [route] = a.netlink.routes
    [rule] = a.netlink.rules
    # Someone else (an `ip route flush table 100`) removes them; netlink tells us nothing.
    assert await a.netlink.remove_route(route)
    assert await a.netlink.remove_rule(rule)
    announcements = len(a.announcements.records)
    with caplog.at_level(logging.WARNING, logger="pyvrrp"):
        await cluster.sleep_until(19.9)
        assert (len(a.netlink.routes), len(a.netlink.rules)) == (0, 0)
        # The periodic check runs every 10 s since the start: at 20.
        await cluster.sleep_until(20.1)
    assert (list(a.netlink.routes), list(a.netlink.rules)) == ([route], [rule])
    assert caplog.messages == [
        f"vip58: 10.58.0.0/16 via {GATEWAY} dev {INTERFACE} table 100 had been removed by "
        "someone else: put it back",
        "vip58: priority 1000 from 1.2.3.56/29 lookup 100 had been removed by someone "
        "else: put it back",
    ]
    # The addresses never left: nothing to announce again.
    assert a.announcements.records[announcements:] == []


async def test_removed_static_route_and_rule_are_put_back_on_any_node(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    static = {"routes": [ROUTE], "rules": [RULE]}
    await cluster.start("A", config({"vip58": seed(100)}))
    c = await cluster.start("C", config({"vip58": seed(75)}, **static))
    await cluster.sleep_until(12.25)
    assert c.state("vip58") is State.BACKUP  # static ones are not a master's business
    [route] = c.netlink.routes
    [rule] = c.netlink.rules
    assert await c.netlink.remove_route(route)
    assert await c.netlink.remove_rule(rule)
    with caplog.at_level(logging.WARNING, logger="pyvrrp"):
        await cluster.sleep_until(20.1)
    assert (list(c.netlink.routes), list(c.netlink.rules)) == ([route], [rule])
    assert caplog.messages == [
        f"static 10.58.0.0/16 via {GATEWAY} dev {INTERFACE} table 100 had been removed by "
        "someone else: put it back",
        "static priority 1000 from 1.2.3.56/29 lookup 100 had been removed by someone "
        "else: put it back",
    ]


async def test_addresses_flushed_by_a_link_going_down_are_not_fought_over(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a, _ = await start(cluster)
    await cluster.sleep_until(12.25)
    added = len(adds(a))
    # The link goes down: the kernel flushes the IPv6 address, the instance faults
    # (its interface is tracked implicitly) and removes the rest. Nobody puts anything
    # back while the link is down.
    a.netlink.set_link_up(INTERFACE, False)
    await cluster.sleep_until(25)
    assert a.state("vip58") is State.FAULT
    assert not a.holds(VIP) and not a.holds(EXCLUDED)
    assert len(adds(a)) == added


async def test_master_puts_back_addresses_flushed_while_its_link_was_down_when_it_returns(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    # eth0.4000 tracked with a weight: down lowers A to 150, still above C, so A stays
    # master while the kernel flushes its IPv6 excluded address.
    a, _ = await start(cluster, priority=200, track_interfaces=[{"name": INTERFACE, "weight": -50}])
    await cluster.sleep_until(12.25)
    a.netlink.set_link_up(INTERFACE, False)
    await cluster.sleep_until(13.25)
    assert a.state("vip58") is State.MASTER
    assert a.holds(VIP) and not a.holds(EXCLUDED)
    announcements = len(a.announcements.records)
    a.netlink.set_link_up(INTERFACE, True)
    await trio.testing.wait_all_tasks_blocked()
    # Back with the link, not at the next periodic check (20).
    assert cluster.at(trio.current_time()) == 13.25
    assert a.holds(EXCLUDED)
    assert announced(cluster, a.announcements.records[announcements:]) == [
        (13.25, ["1.2.3.58", "2a03:4444:fff0:59:88::58"])
    ]


async def test_a_master_without_routes_or_rules_re_adds_nothing_periodically(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    # Its addresses are watched through netlink events; re-adding them every interval cost
    # an address dump per address (EEXIST) at scale.
    a, _ = await start(cluster)
    await cluster.sleep_until(12.25)
    operations = len(a.netlink.operations)
    await cluster.sleep_until(12.25 + 5 * REASSERT_INTERVAL)
    assert a.netlink.operations[operations:] == []
    assert a.holds(VIP) and a.holds(EXCLUDED)


async def test_a_reload_that_adds_a_route_starts_the_periodic_check(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    a, _ = await start(cluster)
    await cluster.sleep_until(12.25)
    await cluster.reload("A", config({"vip58": seed(100, virtual_routes=[ROUTE])}))
    [route] = a.netlink.routes
    assert await a.netlink.remove_route(route)
    with caplog.at_level(logging.WARNING, logger="pyvrrp"):
        # Still on the schedule counted from the start: 20, not 10 s after the reload.
        await cluster.sleep_until(19.9)
        assert list(a.netlink.routes) == []
        await cluster.sleep_until(20.1)
    assert list(a.netlink.routes) == [route]
    assert caplog.messages == [
        f"vip58: 10.58.0.0/16 via {GATEWAY} dev {INTERFACE} table 100 had been removed by "
        "someone else: put it back",
    ]


async def test_link_back_up_adds_only_the_missing_addresses(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a, _ = await start(cluster, priority=200, track_interfaces=[{"name": INTERFACE, "weight": -50}])
    await cluster.sleep_until(12.25)
    a.netlink.set_link_up(INTERFACE, False)  # flushes the IPv6 address only
    await cluster.sleep_until(13.25)
    before = adds(a)
    a.netlink.set_link_up(INTERFACE, True)
    await trio.testing.wait_all_tasks_blocked()
    # The IPv4 VIP never left: only the excluded IPv6 address is added again.
    assert adds(a)[len(before) :] == [EXCLUDED]
