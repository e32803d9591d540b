"""FakeNetlink behaves like the kernel on the scenarios the daemon meets.

The ``scenario_*`` functions drive a :class:`World`: something that changes links and
addresses behind the daemon's back, plus the :class:`Netlink` under test. Here they run on
:class:`FakeWorld` (FakeNetlink, no root); tests/netns/test_netlink.py runs the very same
functions on the real kernel through PyrouteNetlink, so the fake cannot drift from the kernel
unnoticed. The fake-only tests below cover its test hooks.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from ipaddress import IPv6Address, ip_address, ip_interface, ip_network
from typing import Protocol

import attrs
import pytest
import trio
import trio.testing

from pyvrrp.core.config import AddressConfig, IPInterface, RouteConfig, RuleConfig
from pyvrrp.core.packet import Family
from pyvrrp.runtime.netlink import (
    AddressEvent,
    AddressSpec,
    Change,
    EventHub,
    LinkEvent,
    LinkState,
    Netlink,
    NetlinkError,
    NetlinkEvent,
    describe_route,
    describe_rule,
)
from pyvrrp.testing.fakenetlink import FakeNetlink, eui64_link_local

VSWITCH = "eth0.4000"
DUMMY = "dummy0"
VIP = AddressSpec(ip_interface("1.2.3.58/29"), VSWITCH, label="eth0.4000:vip")
VIP6 = AddressSpec.from_config(AddressConfig(ip_interface("2001:db8:58::1/128")), VSWITCH)
# docs/hetzner-vswitch.md: `default via 1.2.3.57 dev eth0.4000 table 100`, rules to and from
# the subnet.
DEFAULT_ROUTE = RouteConfig(
    to=ip_network("0.0.0.0/0"), via=ip_address("1.2.3.57"), dev=VSWITCH, table=100
)
FROM_SUBNET = RuleConfig(family=4, table=100, from_=ip_network("1.2.3.56/29"))
TO_SUBNET = RuleConfig(family=4, table=100, to=ip_network("1.2.3.56/29"))
DEFAULT_ROUTE6 = RouteConfig(
    to=ip_network("::/0"), via=ip_address("fe80::1"), dev=VSWITCH, table=100
)
FROM_SUBNET6 = RuleConfig(family=6, table=100, from_=ip_network("2001:db8:58::/64"))


class World(Protocol):
    """The kernel as the tests see it: a Netlink under test, and a way to change the world
    behind its back (as ``ip`` commands, NetworkManager or an operator would)."""

    @property
    def netlink(self) -> Netlink: ...

    async def add_bridge(self, name: str) -> None:
        """A port-less bridge, up (the lab's ``dummy0``)."""

    async def add_veth(self, name: str) -> None:
        """A veth whose peer is up, so the link is up (the lab's ``eth0.4000``)."""

    async def set_up(self, name: str, up: bool) -> None: ...

    async def delete(self, name: str) -> None: ...

    async def add_address(self, name: str, address: IPInterface) -> None: ...

    async def remove_address(self, name: str, address: IPInterface) -> None: ...


class FakeWorld:
    """The World of FakeNetlink: links get the kernel's EUI-64 link-local when up."""

    def __init__(self) -> None:
        self.fake = FakeNetlink()

    @property
    def netlink(self) -> Netlink:
        return self.fake

    async def add_bridge(self, name: str) -> None:
        self.fake.add_link(name, ipv6_link_local=True)

    async def add_veth(self, name: str) -> None:
        self.fake.add_link(name, ipv6_link_local=True)

    async def set_up(self, name: str, up: bool) -> None:
        self.fake.set_link_up(name, up)

    async def delete(self, name: str) -> None:
        self.fake.delete_link(name)

    async def add_address(self, name: str, address: IPInterface) -> None:
        self.fake.add_address_externally(name, address)

    async def remove_address(self, name: str, address: IPInterface) -> None:
        self.fake.remove_address_externally(name, address)


# --- waiting for events ------------------------------------------------------------------


@attrs.frozen
class Expect:
    """An event we wait for, readable in failure messages."""

    description: str
    match: Callable[[NetlinkEvent], bool]

    def __repr__(self) -> str:
        return self.description


def link_up(name: str) -> Expect:
    return Expect(
        f"{name} up",
        lambda e: (
            isinstance(e, LinkEvent) and e.name == name and e.state is not None and e.state.up
        ),
    )


def link_down(name: str) -> Expect:
    return Expect(
        f"{name} down",
        lambda e: (
            isinstance(e, LinkEvent) and e.name == name and e.state is not None and not e.state.up
        ),
    )


def link_gone(name: str) -> Expect:
    return Expect(
        f"{name} deleted",
        lambda e: isinstance(e, LinkEvent) and e.name == name and e.state is None,
    )


def added(interface: str, address: IPInterface) -> Expect:
    wanted = AddressEvent(interface, address, True)
    return Expect(f"{address} added on {interface}", lambda e: e == wanted)


def removed(interface: str, address: IPInterface) -> Expect:
    wanted = AddressEvent(interface, address, False)
    return Expect(f"{address} removed from {interface}", lambda e: e == wanted)


async def expect(
    events: trio.MemoryReceiveChannel[NetlinkEvent], *wanted: Expect, timeout: float = 5.0
) -> list[NetlinkEvent]:
    """Receive until every wanted event has come, in this order; other events may come in
    between (the kernel's own link-local addresses, say). Returns everything received."""
    seen: list[NetlinkEvent] = []
    position = 0
    try:
        with trio.fail_after(timeout):
            for position, expected in enumerate(wanted):  # noqa: B007 - used in the message
                while not expected.match(event := await events.receive()):
                    seen.append(event)
                seen.append(event)
    except trio.TooSlowError:
        pytest.fail(f"no event {wanted[position]!r} within {timeout} s; received {seen}")
    return seen


# --- the scenarios, shared with tests/netns/test_netlink.py ------------------------------


async def scenario_ipv4_address_is_added_and_removed_idempotently(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    events = nl.subscribe()

    assert await nl.add_address(VIP) is True
    assert await nl.add_address(VIP) is False
    assert VIP.address in await nl.addresses(VSWITCH)
    await expect(events, added(VSWITCH, VIP.address))
    assert await nl.remove_address(VIP) is True
    assert await nl.remove_address(VIP) is False
    assert VIP.address not in await nl.addresses(VSWITCH)
    await expect(events, removed(VSWITCH, VIP.address))


async def scenario_ipv6_address_is_added_and_removed_idempotently(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    events = nl.subscribe()

    assert await nl.add_address(VIP6) is True
    assert await nl.add_address(VIP6) is False
    assert VIP6.address in await nl.addresses(VSWITCH)
    # The kernel announces a new IPv6 address from a work queue, after add_address returned
    # (and not at all if it is removed before that): wait for it.
    await expect(events, added(VSWITCH, VIP6.address))
    assert await nl.remove_address(VIP6) is True
    assert await nl.remove_address(VIP6) is False
    await expect(events, removed(VSWITCH, VIP6.address))


async def scenario_ipv6_address_with_another_prefix_is_a_conflict(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    assert await nl.add_address(AddressSpec(ip_interface("2001:db8:58::1/64"), VSWITCH))

    with pytest.raises(NetlinkError, match="another prefix length") as caught:
        await nl.add_address(VIP6)
    assert caught.value.errno == errno.EEXIST
    # Removal matches the prefix too: the /64 stays.
    assert await nl.remove_address(VIP6) is False
    assert ip_interface("2001:db8:58::1/64") in await nl.addresses(VSWITCH)


async def scenario_apply_makes_changes_in_order_and_reports_each(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    missing = AddressSpec(ip_interface("1.2.3.59/29"), "nope0")
    changes = [
        Change(True, VIP),
        Change(True, VIP6),
        Change(True, missing),  # fails, and the others still happen
        Change(True, VIP),  # already there
        Change(False, VIP6),
    ]
    results = await nl.apply(changes)
    assert results[:2] == [True, True]
    assert isinstance(results[2], NetlinkError)
    assert "interface nope0 does not exist" in str(results[2])
    assert results[3:] == [False, True]
    present = await nl.addresses(VSWITCH)
    assert VIP.address in present
    assert VIP6.address not in present
    assert await nl.apply([]) == []


async def scenario_missing_interface_is_named_or_harmless(world: World) -> None:
    nl = world.netlink
    missing = AddressSpec(ip_interface("1.2.3.58/29"), "nope0")

    assert await nl.link("nope0") is None
    assert await nl.addresses("nope0") == []
    assert await nl.primary_address("nope0", Family.IPV4) is None
    assert await nl.primary_address("nope0", Family.IPV6) is None
    assert await nl.remove_address(missing) is False
    with pytest.raises(NetlinkError, match="interface nope0 does not exist") as caught:
        await nl.add_address(missing)
    assert caught.value.errno == errno.ENODEV
    assert "1.2.3.58/29" in str(caught.value)
    route = attrs.evolve(DEFAULT_ROUTE, dev="nope0")
    with pytest.raises(NetlinkError, match="interface nope0 does not exist"):
        await nl.add_route(route)
    assert await nl.remove_route(route) is False


async def scenario_routes_and_rules_in_table_100_are_idempotent(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    await nl.add_address(VIP)  # makes the gateway 1.2.3.57 reachable

    for route in (DEFAULT_ROUTE, DEFAULT_ROUTE6):
        assert await nl.add_route(route) is True, describe_route(route)
        assert await nl.add_route(route) is False, describe_route(route)
    for rule in (FROM_SUBNET, TO_SUBNET, FROM_SUBNET6):
        assert await nl.add_rule(rule) is True, describe_rule(rule)
        assert await nl.add_rule(rule) is False, describe_rule(rule)
    for rule in (FROM_SUBNET, TO_SUBNET, FROM_SUBNET6):
        assert await nl.remove_rule(rule) is True, describe_rule(rule)
        assert await nl.remove_rule(rule) is False, describe_rule(rule)
    for route in (DEFAULT_ROUTE, DEFAULT_ROUTE6):
        assert await nl.remove_route(route) is True, describe_route(route)
        assert await nl.remove_route(route) is False, describe_route(route)


async def scenario_a_different_route_to_the_same_destination_is_a_conflict(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    await nl.add_address(VIP)
    await nl.add_route(DEFAULT_ROUTE)
    other = attrs.evolve(DEFAULT_ROUTE, via=ip_address("1.2.3.60"))

    with pytest.raises(NetlinkError, match="a different route") as caught:
        await nl.add_route(other)
    assert caught.value.errno == errno.EEXIST
    assert await nl.remove_route(other) is False
    assert await nl.add_route(DEFAULT_ROUTE) is False  # still there


async def scenario_an_unreachable_gateway_is_an_error(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink  # no address in 1.2.3.56/29 yet

    with pytest.raises(NetlinkError, match="add an address in its subnet") as caught:
        await nl.add_route(DEFAULT_ROUTE)
    assert caught.value.errno == errno.ENETUNREACH


async def scenario_a_route_through_a_down_link_is_refused(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    await nl.add_address(VIP)
    await world.set_up(VSWITCH, False)

    with pytest.raises(NetlinkError, match="bring the interface up") as caught:
        await nl.add_route(RouteConfig(to=ip_network("10.9.0.0/16"), dev=VSWITCH))
    assert caught.value.errno == errno.ENETDOWN
    with pytest.raises(NetlinkError) as caught:
        await nl.add_route(DEFAULT_ROUTE)  # its gateway is unreachable now
    assert caught.value.errno == errno.ENETUNREACH


async def scenario_rule_removal_matches_the_whole_rule(world: World) -> None:
    nl = world.netlink
    assert await nl.add_rule(FROM_SUBNET) is True

    # The kernel alone would delete "from 1.2.3.56/29 lookup 100" for "lookup 100".
    assert await nl.remove_rule(RuleConfig(family=4, table=100)) is False
    assert await nl.add_rule(FROM_SUBNET) is False
    assert await nl.remove_rule(FROM_SUBNET) is True


async def scenario_rule_priority_is_matched_when_given(world: World) -> None:
    nl = world.netlink
    rule = attrs.evolve(FROM_SUBNET, priority=100)
    assert await nl.add_rule(rule) is True

    assert await nl.add_rule(FROM_SUBNET) is False  # no priority: any priority matches
    assert await nl.remove_rule(attrs.evolve(rule, priority=101)) is False
    assert await nl.remove_rule(rule) is True


async def scenario_primary_ipv4_address_is_the_first_global_primary(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    assert await nl.primary_address(VSWITCH, Family.IPV4) is None
    await world.add_address(VSWITCH, ip_interface("192.168.200.1/24"))

    await nl.add_address(AddressSpec(ip_interface("192.168.200.100/24"), VSWITCH))  # secondary
    await nl.add_address(VIP)  # another subnet: a primary, but a younger one
    assert await nl.primary_address(VSWITCH, Family.IPV4) == ip_address("192.168.200.1")


async def scenario_primary_ipv6_address_is_the_links_own_link_local(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    link = await nl.link(VSWITCH)
    assert link is not None
    own = eui64_link_local(link.mac).ip
    assert await nl.primary_address(VSWITCH, Family.IPV6) == own

    # Our link-local VIP (NODAD) and global addresses do not change the answer.
    await nl.add_address(
        AddressSpec.from_config(AddressConfig(ip_interface("fe80::58/64")), VSWITCH)
    )
    await nl.add_address(VIP6)
    assert await nl.primary_address(VSWITCH, Family.IPV6) == own


async def scenario_link_events_follow_a_bridge_through_down_up_delete_recreate(
    world: World,
) -> None:
    await world.add_bridge(DUMMY)
    nl = world.netlink
    first = await nl.link(DUMMY)
    assert first is not None
    assert first.up
    events = nl.subscribe()

    await world.set_up(DUMMY, False)
    await expect(events, link_down(DUMMY))
    assert (await nl.link(DUMMY)) == attrs.evolve(first, up=False)
    await world.set_up(DUMMY, True)
    await expect(events, link_up(DUMMY))
    await world.delete(DUMMY)
    await expect(events, link_gone(DUMMY))
    assert await nl.link(DUMMY) is None
    await world.add_bridge(DUMMY)
    seen = await expect(events, link_up(DUMMY))

    second = await nl.link(DUMMY)
    assert second is not None
    assert second.up
    assert second.index != first.index
    last = seen[-1]
    assert isinstance(last, LinkEvent)
    assert last.state == second


async def scenario_an_ipv6_address_is_delivered_locally_only_once_the_kernel_routes_it(
    world: World,
) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    assert not await nl.delivers_locally(VIP.address.ip)  # no route to it at all
    assert not await nl.delivers_locally(VIP6.address.ip)

    assert await nl.add_address(VIP) is True
    assert await nl.delivers_locally(VIP.address.ip)  # IPv4: local as the add returns
    assert await nl.add_address(VIP6) is True
    # IPv6 (NODAD too): its local route comes from the kernel's address work queue, after
    # add_address returned (right away in the fake, unless it is given a delay).
    with trio.fail_after(5):
        while not await nl.delivers_locally(VIP6.address.ip):
            await trio.sleep(0.001)

    assert await nl.remove_address(VIP6) is True
    assert await nl.remove_address(VIP) is True
    assert not await nl.delivers_locally(VIP6.address.ip)
    assert not await nl.delivers_locally(VIP.address.ip)


async def scenario_an_address_removed_by_someone_else_is_an_event(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    await nl.add_address(VIP)
    events = nl.subscribe()

    await world.remove_address(VSWITCH, VIP.address)

    await expect(events, removed(VSWITCH, VIP.address))
    assert VIP.address not in await nl.addresses(VSWITCH)
    assert await nl.add_address(VIP) is True  # and we can put it back


async def scenario_a_link_going_down_loses_its_ipv6_addresses_and_routes(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    await nl.add_address(VIP)
    await nl.add_address(VIP6)
    on_link = RouteConfig(to=ip_network("10.9.0.0/16"), dev=VSWITCH, table=100)
    assert await nl.add_route(on_link) is True
    events = nl.subscribe()

    await world.set_up(VSWITCH, False)

    await expect(events, link_down(VSWITCH), removed(VSWITCH, VIP6.address))
    remaining = await nl.addresses(VSWITCH)
    assert VIP.address in remaining
    assert not [a for a in remaining if a.version == 6]
    assert await nl.remove_route(on_link) is False


async def scenario_deleting_a_link_reports_its_addresses_then_the_link(world: World) -> None:
    await world.add_veth(VSWITCH)
    nl = world.netlink
    await nl.add_address(VIP)
    events = nl.subscribe()

    await world.delete(VSWITCH)

    await expect(events, removed(VSWITCH, VIP.address), link_gone(VSWITCH))


Scenario = Callable[[World], Awaitable[None]]
SCENARIOS: list[Scenario] = [
    value for name, value in sorted(globals().items()) if name.startswith("scenario_")
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.removeprefix("scenario_"))
async def test_fake_matches_the_kernel(scenario: Scenario) -> None:
    world = FakeWorld()
    async with world.fake:
        await scenario(world)


# --- the fake's own hooks ----------------------------------------------------------------


async def test_operations_log_records_every_mutation_in_order() -> None:
    fake = FakeNetlink()
    fake.add_link(VSWITCH, addresses=[ip_interface("1.2.3.59/29")])

    await fake.add_address(VIP)
    await fake.add_route(DEFAULT_ROUTE)
    await fake.add_rule(FROM_SUBNET)
    await fake.link(VSWITCH)  # reads are not logged
    await fake.remove_rule(FROM_SUBNET)
    await fake.remove_route(DEFAULT_ROUTE)
    await fake.remove_address(VIP)

    assert fake.operations == [
        ("add_address", VIP),
        ("add_route", DEFAULT_ROUTE),
        ("add_rule", FROM_SUBNET),
        ("remove_rule", FROM_SUBNET),
        ("remove_route", DEFAULT_ROUTE),
        ("remove_address", VIP),
    ]


async def test_fail_next_fails_one_call_then_the_operation_works() -> None:
    fake = FakeNetlink()
    fake.add_link(VSWITCH)
    fake.fail_next("add_address", NetlinkError("boom"))

    with pytest.raises(NetlinkError, match="boom"):
        await fake.add_address(VIP)
    assert fake.address_map[VSWITCH] == ()
    assert await fake.add_address(VIP) is True
    assert fake.operations == [("add_address", VIP), ("add_address", VIP)]


async def test_fail_next_queues_failures_and_covers_reads() -> None:
    fake = FakeNetlink()
    fake.fail_next("link", NetlinkError("one"))
    fake.fail_next("link", NetlinkError("two"))

    with pytest.raises(NetlinkError, match="one"):
        await fake.link(VSWITCH)
    with pytest.raises(NetlinkError, match="two"):
        await fake.link(VSWITCH)
    assert await fake.link(VSWITCH) is None


def test_fail_next_rejects_an_unknown_operation() -> None:
    with pytest.raises(ValueError, match="add_adress"):
        FakeNetlink().fail_next("add_adress", NetlinkError("typo"))


async def test_views_show_what_was_installed_and_how() -> None:
    fake = FakeNetlink()
    fake.add_link(VSWITCH)
    await fake.add_address(VIP6)
    await fake.add_route(DEFAULT_ROUTE6)
    await fake.add_rule(FROM_SUBNET6)

    assert fake.address_map == {VSWITCH: (VIP6.address,)}
    (spec,) = fake.address_specs[VSWITCH]
    assert spec.nodad
    assert spec.preferred_lifetime_zero
    assert fake.routes == (DEFAULT_ROUTE6,)
    assert fake.rules == (FROM_SUBNET6,)
    assert fake.links[VSWITCH].up


async def test_add_link_announces_the_link_then_its_addresses() -> None:
    fake = FakeNetlink()
    events = fake.subscribe()

    state = fake.add_link(DUMMY, mac=bytes.fromhex("020000000001"), addresses=[VIP.address])

    assert state == LinkState(DUMMY, 2, True, bytes.fromhex("020000000001"), 1500)
    assert [events.receive_nowait(), events.receive_nowait()] == [
        LinkEvent(DUMMY, state),
        AddressEvent(DUMMY, VIP.address, True),
    ]


async def test_setting_a_link_to_its_current_state_emits_nothing() -> None:
    # The real one forwards only changes of LinkState, not every kernel notification.
    fake = FakeNetlink()
    fake.add_link(DUMMY)
    events = fake.subscribe()

    fake.set_link_up(DUMMY, True)

    with pytest.raises(trio.WouldBlock):
        events.receive_nowait()


async def test_tentative_link_local_is_not_a_source_until_dad_finishes() -> None:
    fake = FakeNetlink()
    fake.add_link(VSWITCH)
    link_local = ip_interface("fe80::1/64")
    fake.add_address_externally(VSWITCH, link_local, tentative=True)
    events = fake.subscribe()
    assert await fake.primary_address(VSWITCH, Family.IPV6) is None

    fake.finish_dad(VSWITCH, link_local)

    assert events.receive_nowait() == AddressEvent(VSWITCH, link_local, True)
    assert await fake.primary_address(VSWITCH, Family.IPV6) == IPv6Address("fe80::1")


async def test_secondary_is_promoted_when_its_primary_goes() -> None:
    fake = FakeNetlink()
    fake.add_link(VSWITCH, addresses=[ip_interface("192.168.200.1/24")])
    await fake.add_address(AddressSpec(ip_interface("192.168.200.100/24"), VSWITCH))

    fake.remove_address_externally(VSWITCH, ip_interface("192.168.200.1/24"))

    assert await fake.primary_address(VSWITCH, Family.IPV4) == ip_address("192.168.200.100")


async def test_closed_fake_refuses_calls_and_ends_subscriptions() -> None:
    fake = FakeNetlink()
    events = fake.subscribe()

    await fake.aclose()

    with pytest.raises(trio.EndOfChannel):
        await events.receive()
    with pytest.raises(trio.ClosedResourceError):
        await fake.link(VSWITCH)
    with pytest.raises(trio.ClosedResourceError):
        fake.subscribe()


async def test_a_cancelled_call_changes_nothing() -> None:
    fake = FakeNetlink()
    fake.add_link(VSWITCH)

    with trio.CancelScope() as scope:
        scope.cancel()
        await fake.add_address(VIP)

    assert fake.address_map[VSWITCH] == ()
    assert fake.operations == []


async def test_an_added_ipv6_address_is_local_after_the_fakes_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeNetlink(ipv6_local_delay=0.0025)
    fake.add_link(VSWITCH)
    await fake.add_address(VIP)
    await fake.add_address(VIP6)
    added = trio.current_time()

    assert await fake.delivers_locally(VIP.address.ip)
    assert not await fake.delivers_locally(VIP6.address.ip)
    await trio.sleep_until(added + 0.002)
    assert not await fake.delivers_locally(VIP6.address.ip)
    await trio.sleep_until(added + 0.003)
    assert await fake.delivers_locally(VIP6.address.ip)
    # Someone else's address (ip addr add) is there with its route, as a test sets it up.
    fake.add_address_externally(VSWITCH, ip_interface("2001:db8:59::1/64"))
    assert await fake.delivers_locally(ip_address("2001:db8:59::1"))
    # A tentative one is not usable: the kernel routes it once DAD succeeds.
    fake.add_address_externally(VSWITCH, ip_interface("2001:db8:60::1/64"), tentative=True)
    assert not await fake.delivers_locally(ip_address("2001:db8:60::1"))
    fake.finish_dad(VSWITCH, ip_interface("2001:db8:60::1/64"))
    assert await fake.delivers_locally(ip_address("2001:db8:60::1"))


async def test_fake_runs_in_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    # No threads: a task can wait an hour for an event and the test takes milliseconds.
    fake = FakeNetlink()
    fake.add_link(DUMMY)
    events = fake.subscribe()

    async def operator() -> None:
        await trio.sleep(3600)
        fake.set_link_up(DUMMY, False)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(operator)
        event = await events.receive()

    assert event == LinkEvent(DUMMY, attrs.evolve(fake.links[DUMMY], up=False))
    assert trio.current_time() == pytest.approx(3600)


# --- shared pieces of pyvrrp.runtime.netlink ---------------------------------------------


async def test_event_hub_cuts_off_a_subscriber_that_falls_behind() -> None:
    hub = EventHub(buffer=2)
    slow = hub.subscribe()
    fast = hub.subscribe()
    event = LinkEvent(DUMMY, None)

    hub.publish([event, event])
    assert [fast.receive_nowait(), fast.receive_nowait()] == [event, event]
    hub.publish([event])

    # slow's buffer overflowed: it gets what was buffered, then its channel ends.
    assert [slow.receive_nowait(), slow.receive_nowait()] == [event, event]
    with pytest.raises(trio.EndOfChannel):
        slow.receive_nowait()
    assert fast.receive_nowait() == event
    assert hub.overflows == 1
    assert hub.subscribers == 1


async def test_event_hub_forgets_a_subscriber_that_closed_its_channel() -> None:
    hub = EventHub()
    gone = hub.subscribe()
    gone.close()

    hub.publish([LinkEvent(DUMMY, None)])

    assert hub.subscribers == 0
    assert hub.overflows == 0


async def test_event_hub_lost_events_end_every_subscription_but_allow_new_ones() -> None:
    hub = EventHub()
    events = hub.subscribe()

    hub.lost()

    with pytest.raises(trio.EndOfChannel):
        events.receive_nowait()
    again = hub.subscribe()
    hub.publish([LinkEvent(DUMMY, None)])
    assert again.receive_nowait() == LinkEvent(DUMMY, None)


@pytest.mark.parametrize(
    ("config", "nodad", "lifetime_zero"),
    [
        (AddressConfig(ip_interface("1.2.3.58/32")), False, False),
        (AddressConfig(ip_interface("2001:db8:58::1/64")), True, False),
        (AddressConfig(ip_interface("2001:db8:58::1/128")), True, True),
        (AddressConfig(ip_interface("fe80::1/64")), True, False),
    ],
)
def test_address_spec_from_config_applies_keepalived_defaults(
    config: AddressConfig, nodad: bool, lifetime_zero: bool
) -> None:
    spec = AddressSpec.from_config(config, VSWITCH)

    assert spec.nodad is nodad
    assert spec.preferred_lifetime_zero is lifetime_zero
    assert spec.dev == VSWITCH


def test_address_spec_from_config_keeps_dev_label_and_scope() -> None:
    config = AddressConfig(ip_interface("1.2.3.58/29"), dev=DUMMY, label="dummy0:vip", scope="link")

    assert AddressSpec.from_config(config, VSWITCH) == AddressSpec(
        ip_interface("1.2.3.58/29"), DUMMY, label="dummy0:vip", scope="link"
    )


def test_routes_and_rules_are_described_as_ip_would_print_them() -> None:
    assert describe_route(DEFAULT_ROUTE) == "default via 1.2.3.57 dev eth0.4000 table 100"
    assert describe_rule(FROM_SUBNET) == "from 1.2.3.56/29 lookup 100"
    assert describe_rule(TO_SUBNET) == "from all to 1.2.3.56/29 lookup 100"
