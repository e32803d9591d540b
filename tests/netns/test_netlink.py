"""PyrouteNetlink on a real kernel, inside a throw-away network namespace per test.

``open_netlink(netns=...)`` moves only its own two threads into the namespace, so the test
process stays where it is; ``ip -n`` plays the rest of the world. The scenarios shared with
tests/runtime/test_fakenetlink.py run here first: the fake is only as good as its agreement
with this file.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from ipaddress import IPv6Address, ip_address, ip_interface, ip_network
from typing import Any

import pytest
import trio

from pyvrrp.core.config import IPInterface, RouteConfig, RuleConfig
from pyvrrp.core.packet import Family
from pyvrrp.runtime.netlink import (
    AddressEvent,
    AddressSpec,
    Change,
    LinkEvent,
    Netlink,
    NetlinkError,
    PyrouteNetlink,
    monitor,
    open_netlink,
)
from tests.runtime.test_fakenetlink import (
    DEFAULT_ROUTE,
    DUMMY,
    FROM_SUBNET,
    SCENARIOS,
    TO_SUBNET,
    VIP,
    VIP6,
    VSWITCH,
    Expect,
    Scenario,
    expect,
    link_down,
    removed,
)


def ip(netns: str, *args: str) -> str:
    """Run ``ip -n NETNS ARGS`` and return its output (raises on failure)."""
    done = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"ip -n {netns} {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def ip_json(netns: str, *args: str) -> Any:
    return json.loads(ip(netns, "-j", *args) or "[]")


def sysctl(netns: str, *settings: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", *settings], check=True)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace; DAD off so link-local addresses are usable at once (as the lab)."""
    name = f"pyvrrp-nl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        sysctl(name, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
async def nl(netns: str) -> AsyncIterator[PyrouteNetlink]:
    async with open_netlink(netns=netns) as opened:
        yield opened


class KernelWorld:
    """tests/runtime/test_fakenetlink.py's World, made of ``ip`` commands."""

    def __init__(self, netns: str, netlink: PyrouteNetlink) -> None:
        self.netns = netns
        self._netlink = netlink

    @property
    def netlink(self) -> Netlink:
        return self._netlink

    async def add_bridge(self, name: str) -> None:
        ip(self.netns, "link", "add", name, "type", "bridge")
        ip(self.netns, "link", "set", name, "up")

    async def add_veth(self, name: str) -> None:
        peer = f"{name}p"[-15:]
        ip(self.netns, "link", "add", name, "type", "veth", "peer", "name", peer)
        ip(self.netns, "link", "set", peer, "up")
        ip(self.netns, "link", "set", name, "up")

    async def set_up(self, name: str, up: bool) -> None:
        ip(self.netns, "link", "set", name, "up" if up else "down")

    async def delete(self, name: str) -> None:
        ip(self.netns, "link", "del", name)

    async def add_address(self, name: str, address: IPInterface) -> None:
        ip(self.netns, "addr", "add", str(address), "dev", name)

    async def remove_address(self, name: str, address: IPInterface) -> None:
        ip(self.netns, "addr", "del", str(address), "dev", name)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.removeprefix("scenario_"))
async def test_kernel_behaves_as_the_fake_assumes(
    scenario: Scenario, netns: str, nl: PyrouteNetlink
) -> None:
    await scenario(KernelWorld(netns, nl))


def addr_info(netns: str, dev: str, address: IPInterface) -> dict[str, Any]:
    (link,) = ip_json(netns, "addr", "show", "dev", dev)
    for info in link["addr_info"]:
        if ip_interface(f"{info['local']}/{info['prefixlen']}") == address:
            return dict(info)
    raise AssertionError(f"{address} is not on {dev}: {link['addr_info']}")


async def test_address_attributes_are_what_ip_addr_shows(netns: str, nl: PyrouteNetlink) -> None:
    world = KernelWorld(netns, nl)
    await world.add_veth(VSWITCH)
    link_scoped = AddressSpec(ip_interface("10.0.0.1/8"), VSWITCH, scope="link")

    for spec in (VIP, VIP6, link_scoped):
        assert await nl.add_address(spec) is True

    v4 = addr_info(netns, VSWITCH, VIP.address)
    assert v4["label"] == "eth0.4000:vip"
    assert v4["scope"] == "global"
    assert v4["preferred_life_time"] == 4294967295
    v6 = addr_info(netns, VSWITCH, VIP6.address)
    assert v6.get("nodad") is True
    assert v6["preferred_life_time"] == 0  # never picked as a source address
    assert v6["valid_life_time"] == 4294967295
    assert "tentative" not in v6
    assert addr_info(netns, VSWITCH, link_scoped.address)["scope"] == "link"


async def test_routes_and_rules_are_what_ip_shows(netns: str, nl: PyrouteNetlink) -> None:
    world = KernelWorld(netns, nl)
    await world.add_veth(VSWITCH)
    await nl.add_address(VIP)
    await nl.add_route(DEFAULT_ROUTE)
    for _ in range(2):
        await nl.add_rule(FROM_SUBNET)
        await nl.add_rule(TO_SUBNET)

    assert ip(netns, "route", "show", "table", "100").split("\n")[0].split()[:5] == [
        "default",
        "via",
        "1.2.3.57",
        "dev",
        VSWITCH,
    ]
    rules = [r for r in ip_json(netns, "rule", "show") if r.get("table") == "100"]
    # Added twice each, present once each: the kernel alone would have duplicated them.
    assert sorted(
        (r.get("src"), r.get("srclen"), r.get("dst"), r.get("dstlen")) for r in rules
    ) == [
        ("1.2.3.56", 29, None, None),
        ("all", None, "1.2.3.56", 29),
    ]


async def test_route_with_metric_source_and_big_table(netns: str, nl: PyrouteNetlink) -> None:
    world = KernelWorld(netns, nl)
    await world.add_veth(VSWITCH)
    await nl.add_address(VIP)
    route = RouteConfig(
        to=ip_network("203.0.113.0/24"),
        via=ip_address("1.2.3.57"),
        dev=VSWITCH,
        table=1000,
        metric=50,
        src=ip_address("1.2.3.58"),
    )

    assert await nl.add_route(route) is True
    assert await nl.add_route(route) is False
    (shown,) = ip_json(netns, "route", "show", "table", "1000")
    assert (shown["dst"], shown["gateway"], shown["metric"], shown["prefsrc"]) == (
        "203.0.113.0/24",
        "1.2.3.57",
        50,
        "1.2.3.58",
    )
    assert await nl.remove_route(route) is True
    assert ip_json(netns, "route", "show", "table", "1000") == []


async def test_rule_with_interfaces_and_priority(netns: str, nl: PyrouteNetlink) -> None:
    rule = RuleConfig(family=6, table=100, iif=VSWITCH, oif=DUMMY, priority=1000)

    assert await nl.add_rule(rule) is True
    assert await nl.add_rule(rule) is False
    (shown,) = [r for r in ip_json(netns, "-6", "rule", "show") if r.get("table") == "100"]
    assert (shown["priority"], shown["iif"], shown["oif"]) == (1000, VSWITCH, DUMMY)
    assert await nl.remove_rule(rule) is True
    assert await nl.remove_rule(rule) is False


async def test_primary_ipv4_address_skips_link_scope_and_secondaries(
    netns: str, nl: PyrouteNetlink
) -> None:
    await KernelWorld(netns, nl).add_veth(VSWITCH)
    # The kernel lists link-scope primaries before global ones, secondaries last.
    ip(netns, "addr", "add", "10.0.0.1/8", "scope", "link", "dev", VSWITCH)
    ip(netns, "addr", "add", "192.168.200.1/24", "dev", VSWITCH)
    ip(netns, "addr", "add", "192.168.200.2/24", "dev", VSWITCH)

    assert await nl.primary_address(VSWITCH, Family.IPV4) == ip_address("192.168.200.1")


async def test_primary_ipv6_address_waits_for_dad_and_the_event_says_when(
    netns: str, nl: PyrouteNetlink
) -> None:
    peer = "vswitchp"
    ip(netns, "link", "add", VSWITCH, "type", "veth", "peer", "name", peer)
    ip(netns, "link", "set", VSWITCH, "addrgenmode", "none")  # no link-local of its own
    sysctl(netns, f"net.ipv6.conf.{VSWITCH.replace('.', '/')}.accept_dad=1")
    ip(netns, "link", "set", peer, "up")
    ip(netns, "link", "set", VSWITCH, "up")
    events = nl.subscribe()

    ip(netns, "addr", "add", "fe80::5/64", "dev", VSWITCH)
    assert await nl.primary_address(VSWITCH, Family.IPV6) is None  # tentative

    link_local = ip_interface("fe80::5/64")
    with trio.fail_after(10):  # DAD takes about a second (RetransTimer)
        while True:
            event = await events.receive()
            if event == AddressEvent(VSWITCH, link_local, True):
                found = await nl.primary_address(VSWITCH, Family.IPV6)
                if found is not None:
                    break
    assert found == IPv6Address("fe80::5")


# A client sending one UDP datagram to ADDRESS every 50 µs, for at most 60 s.
SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
end = time.monotonic() + 60
while time.monotonic() < end:
    s.sendto(b"x", (sys.argv[1], 9))
    time.sleep(0.00005)
"""


def snmp6(pid: int) -> dict[str, int]:
    """The IPv6 counters of the namespace process ``pid`` runs in (fast: no ``ip`` call)."""
    with open(f"/proc/{pid}/net/snmp6") as f:
        return {name: int(value) for name, value in (line.split() for line in f)}


async def test_a_new_ipv6_address_drops_nothing_once_it_is_delivered_locally(
    netns: str, nl: PyrouteNetlink
) -> None:
    # The kernel gives a new IPv6 address (NODAD too) its local route from its address work
    # queue, after add_address returned: a packet for it arriving before is routed on-link
    # and, as the host does not forward, dropped (Ip6InAddrErrors). delivers_locally is what
    # a new master waits for before its unsolicited NA: from then on nothing may be dropped.
    # A client on the other end of a veth sends to the address all along (a static neighbour
    # entry: no ND), before, during and after each add.
    client = f"{netns}-c"
    spec = AddressSpec(ip_interface("2001:db8:58::1/64"), VSWITCH, nodad=True)
    subprocess.run(["ip", "netns", "add", client], check=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sysctl(client, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
        ip(netns, "link", "add", VSWITCH, "type", "veth", "peer", "name", "c0", "netns", client)
        ip(netns, "link", "set", VSWITCH, "up")
        ip(client, "link", "set", "c0", "up")
        ip(client, "addr", "add", "2001:db8:58::2/64", "dev", "c0", "nodad")
        mac = ip_json(netns, "link", "show", VSWITCH)[0]["address"]
        ip(client, "neigh", "replace", "2001:db8:58::1", "lladdr", mac, "dev", "c0", "nud",
           "permanent")  # fmt: skip
        # `ip netns exec` execs its command: the pid is sleep's, in the node's namespace.
        procs.append(subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "60"]))
        inside = procs[-1].pid
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", client, sys.executable, "-c", SENDER, "2001:db8:58::1"]
            )
        )
        await trio.sleep(0.3)
        dropped_before_local = dropped_after_local = delivered = 0
        waited = 0
        for _ in range(20):
            before = snmp6(inside)
            assert await nl.add_address(spec) is True
            with trio.fail_after(5):
                while not await nl.delivers_locally(spec.address.ip):
                    waited += 1
                    await trio.sleep(0)  # ask again as soon as anything else has run
            local = snmp6(inside)
            await trio.sleep(0.05)
            after = snmp6(inside)
            assert await nl.remove_address(spec) is True
            await trio.sleep(0.01)
            dropped_before_local += local["Ip6InAddrErrors"] - before["Ip6InAddrErrors"]
            dropped_after_local += after["Ip6InAddrErrors"] - local["Ip6InAddrErrors"]
            delivered += after["Udp6NoPorts"] - local["Udp6NoPorts"]  # nobody listens on 9
        print(
            f"20 adds: {dropped_before_local} packets dropped before the address was local, "
            f"{dropped_after_local} after; {delivered} delivered; {waited} questions more"
        )
        assert dropped_after_local == 0
        assert delivered > 0  # the client's packets did arrive, and were delivered
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()
        subprocess.run(["ip", "netns", "delete", client], check=False)


async def test_the_kernel_notifies_a_new_ipv6_address_as_it_makes_it_local(
    netns: str, nl: PyrouteNetlink
) -> None:
    # A new master's NA waits for this notification (and asks delivers_locally then): the
    # kernel's address work sends it for a new IPv6 address (NODAD too) just before it adds
    # the local route, so once it has arrived the address is local at once, or within the
    # microseconds the kernel takes to insert the route.
    ip(netns, "link", "add", VSWITCH, "type", "veth", "peer", "name", "vswitchp")
    ip(netns, "link", "set", "vswitchp", "up")
    ip(netns, "link", "set", VSWITCH, "up")
    spec = AddressSpec(ip_interface("2001:db8:58::1/64"), VSWITCH, nodad=True)
    events = nl.subscribe()
    at_once = 0
    for _ in range(10):
        assert await nl.add_address(spec) is True
        with trio.fail_after(5):
            while await events.receive() != AddressEvent(VSWITCH, spec.address, True):
                pass
            if await nl.delivers_locally(spec.address.ip):
                at_once += 1
            else:
                while not await nl.delivers_locally(spec.address.ip):
                    await trio.sleep(0)
        assert await nl.remove_address(spec) is True
        with trio.fail_after(5):
            while await events.receive() != AddressEvent(VSWITCH, spec.address, False):
                pass
    print(f"10 adds: local when the notification was read in {at_once}")
    assert at_once >= 1


async def test_link_event_carries_the_whole_state(netns: str, nl: PyrouteNetlink) -> None:
    await KernelWorld(netns, nl).add_bridge(DUMMY)
    events = nl.subscribe()

    ip(netns, "link", "set", DUMMY, "mtu", "1400")

    mtu_changed = Expect(
        "dummy0 with MTU 1400",
        lambda e: isinstance(e, LinkEvent) and e.state is not None and e.state.mtu == 1400,
    )
    event = (await expect(events, mtu_changed))[-1]
    assert isinstance(event, LinkEvent)
    assert event.state == await nl.link(DUMMY)


async def test_a_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(NetlinkError, match=r"pyvrrp-missing-ns.*does not exist"):
        async with open_netlink(netns="pyvrrp-missing-ns"):
            pass  # pragma: no cover


def netlink_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pyvrrp-netlink")]


async def test_threads_stop_on_exit_even_when_cancelled(netns: str) -> None:
    before = netlink_threads()
    with trio.CancelScope() as scope:
        async with open_netlink(netns=netns) as nl:
            # Links and addresses are read on trio's thread: no thread, no pyroute2 yet.
            assert await nl.link("lo") is not None
            assert netlink_threads() == before
            # The first route or rule starts the owner thread (the monitor is a task).
            assert await nl.remove_route(DEFAULT_ROUTE) is False
            assert len(netlink_threads()) == len(before) + 1
            scope.cancel()
            await nl.link(DUMMY)  # cancelled
    assert netlink_threads() == before
    with pytest.raises(trio.ClosedResourceError):
        await nl.link(DUMMY)


async def test_a_cancelled_request_either_happened_and_returned_or_did_not_happen(
    netns: str, nl: PyrouteNetlink
) -> None:
    await KernelWorld(netns, nl).add_veth(VSWITCH)
    specs = [
        AddressSpec(ip_interface(f"10.1.{i // 250}.{i % 250 + 1}/32"), VSWITCH) for i in range(3000)
    ]
    reported: set[IPInterface] = set()

    with trio.move_on_after(0.01) as scope:
        for spec in specs:
            if await nl.add_address(spec):
                reported.add(spec.address)

    assert scope.cancelled_caught  # 3000 requests take longer than 10 ms (~25 µs each)
    present = set(await nl.addresses(VSWITCH)) & {s.address for s in specs}
    assert present == reported


async def test_apply_runs_a_masters_addresses_back_to_back(netns: str, nl: PyrouteNetlink) -> None:
    await KernelWorld(netns, nl).add_veth(VSWITCH)
    others_ran = False

    async def other_task() -> None:
        nonlocal others_ran
        others_ran = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)  # ready to run at the first schedule point
        results = await nl.apply([Change(True, VIP), Change(True, VIP6)])
        assert not others_ran  # the advert, the addresses, the GARP: nothing in between
        assert results == [True, True]
    assert {VIP.address, VIP6.address} <= set(await nl.addresses(VSWITCH))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        others_ran = False
        results = await nl.apply([Change(False, VIP6), Change(False, VIP), Change(False, VIP)])
        assert not others_ran
        assert results == [True, True, False]


async def test_the_kernels_own_words_reach_the_error(netns: str, nl: PyrouteNetlink) -> None:
    await KernelWorld(netns, nl).add_veth(VSWITCH)
    sysctl(netns, f"net/ipv6/conf/{VSWITCH}/disable_ipv6=1")  # slashes: the name has a dot

    with pytest.raises(NetlinkError) as caught:
        await nl.add_address(VIP6)

    assert caught.value.errno == errno.EACCES
    message = str(caught.value)
    assert message.startswith(
        f"cannot add address {VIP6.address} dev {VSWITCH}: permission denied ("
    )
    assert "ipv6" in message.lower()  # the extended acknowledgement: "IPv6 is disabled..."
    assert message.endswith("(or enable IPv6 on the interface)")


async def test_concurrent_requests_each_get_their_own_answer(
    netns: str, nl: PyrouteNetlink
) -> None:
    await KernelWorld(netns, nl).add_veth(VSWITCH)
    specs = [AddressSpec(ip_interface(f"10.2.0.{i}/32"), VSWITCH) for i in range(1, 51)]
    results: list[bool] = []

    async def add(spec: AddressSpec) -> None:
        results.append(await nl.add_address(spec))

    async with trio.open_nursery() as nursery:
        for spec in specs * 2:  # each address twice, concurrently
            nursery.start_soon(add, spec)

    assert sorted(results) == [False] * 50 + [True] * 50
    assert {s.address for s in specs} <= set(await nl.addresses(VSWITCH))
    assert nl.statistics().requests >= 100


async def test_events_arrive_promptly_without_polling(netns: str, nl: PyrouteNetlink) -> None:
    await KernelWorld(netns, nl).add_bridge(DUMMY)
    events = nl.subscribe()

    start = time.perf_counter()
    ip(netns, "link", "set", DUMMY, "down")
    await expect(events, link_down(DUMMY), timeout=2)
    latency = time.perf_counter() - start

    # ip(8) itself takes milliseconds; a poller would show its period here.
    assert latency < 0.5
    assert nl.statistics().events >= 1


async def test_removing_an_address_from_a_deleted_interface_is_not_an_error(
    netns: str, nl: PyrouteNetlink
) -> None:
    world = KernelWorld(netns, nl)
    await world.add_veth(VSWITCH)
    await nl.add_address(VIP)
    await world.delete(VSWITCH)

    assert await nl.remove_address(VIP) is False
    with pytest.raises(NetlinkError, match=f"interface {VSWITCH} does not exist") as caught:
        await nl.add_address(VIP)
    assert caught.value.errno == errno.ENODEV


async def test_events_lost_by_the_kernel_end_subscriptions_so_they_resync(
    netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitor, "_MONITOR_RCVBUF", 1)  # the kernel rounds up to its minimum
    async with open_netlink(netns=netns) as nl:
        world = KernelWorld(netns, nl)
        await world.add_veth(VSWITCH)
        events = nl.subscribe()
        batch = "".join(
            f"addr add 10.3.{i // 250}.{i % 250 + 1}/32 dev {VSWITCH}\n" for i in range(300)
        )
        # trio's thread is blocked meanwhile: the monitor task cannot read while the
        # notifications pile up in a buffer that holds one.
        subprocess.run(["ip", "-n", netns, "-batch", "-"], input=batch, text=True, check=True)

        with trio.fail_after(5):
            async for _ in events:
                pass  # drains what was delivered; the channel then ends: events were lost
        assert nl.statistics().kernel_overflows >= 1
        # What the daemon does: subscribe again (until the backlog has drained), then see
        # changes as usual.
        for host in range(1, 50):
            again = nl.subscribe()
            gone = ip_interface(f"10.3.0.{host}/32")
            await world.remove_address(VSWITCH, gone)
            try:
                await expect(again, removed(VSWITCH, gone))
                break
            except trio.EndOfChannel:
                continue
        else:
            pytest.fail("events never flowed again after the overflow")
