"""Nodes on an in-memory LAN in trio's virtual time: election, failover, stop, unicast.

Times are exact: the autojump clock jumps to each deadline, and the core computes deadlines
in integer microseconds (priority 100 at 1 s: Master_Down_Interval 3.609375 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Interface, ip_address

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.config import RouteConfig, RuleConfig
from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import Advertisement, DecodeError, DropReason, Family, encode
from pyvrrp.core.router import HANDOVER_GRACE
from pyvrrp.core.timers import US_PER_SECOND as SECOND
from pyvrrp.core.timers import master_down_interval, skew_time
from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.instance import ADDRESS_READY_POLL, ADDRESS_READY_TIMEOUT
from pyvrrp.runtime.netlink import AddressSpec, NetlinkError
from pyvrrp.runtime.node import Node
from pyvrrp.testing.fakenetlink import FakeNetlink
from pyvrrp.testing.fakestate import MemoryHistoryStore
from pyvrrp.testing.lan import Delivery, MemoryLan, RecordingAnnouncements

from .cluster import HOSTS, INTERFACE, Cluster, config, instance

VIP = "1.2.3.58/29"
EXCLUDED = "2a03:4444:fff0:59:88::58/64"
PRIORITIES = {"A": 100, "B": 75, "C": 50}


def seed_instance(priority: int, **extra: object) -> dict[str, object]:
    return instance(58, priority, VIP, excluded=EXCLUDED, **extra)


async def start_three(cluster: Cluster, **extra: object) -> None:
    for name, priority in PRIORITIES.items():
        await cluster.start(name, config({"vip58": seed_instance(priority, **extra)}))


async def test_highest_priority_wins_the_election_after_its_master_down_interval(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    t0 = trio.current_time()
    await start_three(cluster)
    await trio.sleep(10)
    assert cluster.masters("vip58") == ["A"]
    a = cluster.hosts["A"]
    assert [(t.old, t.new) for t in a.transitions] == [
        (State.INITIALIZE, State.BACKUP),
        (State.BACKUP, State.MASTER),
    ]
    assert a.transitions[-1].time - t0 == pytest.approx(3.609375, abs=1e-9)
    assert a.holds(VIP) and a.holds(EXCLUDED)
    assert not cluster.hosts["B"].holds(VIP) and not cluster.hosts["C"].holds(VIP)
    for name in "BC":
        assert [t.new for t in cluster.hosts[name].transitions] == [State.BACKUP]


async def test_master_killed_next_priority_takes_over_after_its_down_interval(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    t0 = trio.current_time()
    await start_three(cluster)
    await trio.sleep_until(t0 + 10)
    cluster.crash("A")
    await trio.sleep(10)
    b = cluster.hosts["B"]
    assert cluster.masters("vip58") == ["B"]
    # A's last advertisement left at 9.609375; B (75) waits its Master_Down_Interval:
    # 3 s + Skew_Time 181/256 s, floored to the microsecond.
    assert master_down_interval(75, SECOND) == 3_707_031
    assert b.transitions[-1].new is State.MASTER
    assert b.transitions[-1].cause is Cause.MASTER_DOWN
    assert b.transitions[-1].time - t0 == pytest.approx(9.609375 + 3.707031, abs=1e-9)
    assert b.holds(VIP) and b.holds(EXCLUDED)
    assert cluster.hosts["A"].holds(VIP)  # a crash leaves its addresses behind


async def test_graceful_stop_hands_over_after_skew_time_without_a_gap(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    t0 = trio.current_time()
    await start_three(cluster)
    await trio.sleep_until(t0 + 10)
    await cluster.stop("A")
    stopped = trio.current_time() - t0
    b = cluster.hosts["B"]
    takeover = b.transitions[-1]
    assert takeover.new is State.MASTER and takeover.cause is Cause.MASTER_LEFT
    # Priority 0 at 10.0; B's Skew_Time at priority 75 is 181/256 s (floored to a µs).
    assert skew_time(75, SECOND) == 707_031
    assert takeover.time - t0 == pytest.approx(10.707031, abs=1e-9)
    # A kept its addresses until it heard B and a grace more (while B installs and
    # announces them), then removed them: no gap.
    assert stopped == pytest.approx(10.707031 + HANDOVER_GRACE / SECOND, abs=1e-9)
    a = cluster.hosts["A"]
    assert not a.holds(VIP) and not a.holds(EXCLUDED)
    assert a.transitions[-1].new is State.INITIALIZE
    await trio.sleep(5)
    assert cluster.masters("vip58") == ["B"]


def slow_ipv6_netlink(name: str, delay: float) -> FakeNetlink:
    """The cluster's usual links for host ``name``; an IPv6 address it adds is delivered
    locally only ``delay`` s later (the kernel's address work queue)."""
    netlink = FakeNetlink(ipv6_local_delay=delay)
    netlink.add_link(
        INTERFACE, addresses=[IPv4Interface(f"{HOSTS[name]}/24")], ipv6_link_local=True
    )
    netlink.add_link("eth0")
    netlink.add_link("dummy0")
    return netlink


async def hand_over_with_slow_ipv6(
    cluster: Cluster, delay: float, **extra: object
) -> tuple[list[tuple[float, str]], float]:
    """A (100) stops gracefully at 10 s and B (75) takes over: B's announcements as (seconds
    after its takeover, address), and when A let the addresses go (seconds after it)."""
    for name, priority in PRIORITIES.items():
        netlink = slow_ipv6_netlink(name, delay)
        instance = seed_instance(priority, **extra)
        await cluster.start(name, config({"vip58": instance}), netlink=netlink)
    await cluster.sleep_until(10)
    await cluster.stop("A")  # returns when A has let the addresses go
    released = trio.current_time()
    await trio.sleep(0.05)  # what is due at the release is done; HANDOVER_REANNOUNCE is not
    b = cluster.hosts["B"]
    takeover = b.transitions[-1]
    interval = round(float(extra.get("advert_interval", 1)) * SECOND)  # type: ignore[arg-type]
    skew = skew_time(PRIORITIES["B"], interval) / SECOND
    assert (takeover.new, cluster.at(takeover.time)) == (State.MASTER, round(10 + skew, 6))
    announced = [
        (round(record.time - takeover.time, 6), str(address))
        for record in b.announcements.records
        for _, address in record.addresses
    ]
    return announced, round(released - takeover.time, 6)


async def test_a_new_master_announces_an_ipv6_address_once_the_kernel_delivers_it(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    # The kernel gives a new IPv6 address its local route a moment after the add (up to 5 ms
    # on the development machine): an unsolicited NA sent before that sends clients to an
    # address that drops their packets. B's gratuitous ARP leaves at once; its NA as soon as
    # the kernel notifies the address (it does so as it gives it its local route); both long
    # before A lets the addresses go (HANDOVER_GRACE after hearing B).
    announced, released = await hand_over_with_slow_ipv6(cluster, delay=0.0025)
    assert announced == [(0.0, "1.2.3.58"), (0.0025, "2a03:4444:fff0:59:88::58")]
    assert released == HANDOVER_GRACE / SECOND


class NoNotifications:
    """A Netlink whose notifications cannot be had any more once ``stopped`` (its monitor
    stopped): everything else is the fake's."""

    def __init__(self, inner: FakeNetlink) -> None:
        self._inner = inner
        self.stopped = False

    def subscribe(self) -> object:
        if self.stopped:
            raise NetlinkError("the netlink monitor stopped")
        return self._inner.subscribe()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


async def test_without_notifications_the_kernel_is_asked_every_poll(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    # The NA leaves at the third look, one ADDRESS_READY_POLL apart.
    assert ADDRESS_READY_POLL == 0.001
    netlinks = [NoNotifications(slow_ipv6_netlink(name, 0.0025)) for name in PRIORITIES]
    for netlink, (name, priority) in zip(netlinks, PRIORITIES.items(), strict=True):
        await cluster.start(
            name,
            config({"vip58": seed_instance(priority)}),
            netlink=netlink,  # type: ignore[arg-type]
        )
    await cluster.sleep_until(10)
    for netlink in netlinks:
        netlink.stopped = True
    await cluster.stop("A")
    b = cluster.hosts["B"]
    takeover = b.transitions[-1].time
    announced = [
        (round(record.time - takeover, 6), str(address))
        for record in b.announcements.records
        for _, address in record.addresses
    ]
    assert announced == [(0.0, "1.2.3.58"), (0.003, "2a03:4444:fff0:59:88::58")]


async def test_an_ipv6_address_the_kernel_never_delivers_is_announced_after_a_grace(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Waiting longer than HANDOVER_GRACE would not help: A has let the address go by then.
    assert ADDRESS_READY_TIMEOUT == HANDOVER_GRACE / SECOND
    announced, released = await hand_over_with_slow_ipv6(cluster, delay=60.0)
    assert announced == [(0.0, "1.2.3.58"), (ADDRESS_READY_TIMEOUT, "2a03:4444:fff0:59:88::58")]
    assert released == HANDOVER_GRACE / SECOND
    # The state change was published at once, not after the wait.
    takeover = cluster.hosts["B"].transitions[-1]
    assert (takeover.new, cluster.at(takeover.time)) == (State.MASTER, 10.707031)
    assert (
        "vip58: the kernel does not deliver 2a03:4444:fff0:59:88::58 locally 100 ms after it "
        "was added: announced anyway" in caplog.text
    )


async def test_a_router_advertising_often_waits_for_the_kernel_half_an_interval_at_most(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    # The driver waits for the kernel: a router advertising every 0.1 s gives up after 0.05 s,
    # and its next advertisement leaves on time.
    announced, _ = await hand_over_with_slow_ipv6(cluster, delay=60.0, advert_interval=0.1)
    assert announced == [(0.0, "1.2.3.58"), (0.05, "2a03:4444:fff0:59:88::58")]
    await trio.sleep(0.3)
    b = cluster.hosts["B"]
    takeover = cluster.at(b.transitions[-1].time)
    after = [t for t, _ in cluster.adverts("B", 58) if t >= takeover]
    assert after[:3] == [takeover, round(takeover + 0.1, 6), round(takeover + 0.2, 6)]


class WithoutTheQuestion:
    """A Netlink of one's own written before ``delivers_locally``: everything else is the
    fake's."""

    def __init__(self, inner: FakeNetlink) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        if name == "delivers_locally":
            raise AttributeError(name)
        return getattr(self._inner, name)


async def test_a_netlink_that_cannot_tell_has_every_address_announced_at_once(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    for name, priority in PRIORITIES.items():
        netlink = WithoutTheQuestion(slow_ipv6_netlink(name, 60.0))
        await cluster.start(
            name,
            config({"vip58": seed_instance(priority)}),
            netlink=netlink,  # type: ignore[arg-type]
        )
    await cluster.sleep_until(10)
    await cluster.stop("A")
    b = cluster.hosts["B"]
    (record,) = b.announcements.records
    assert [str(a) for _, a in record.addresses] == ["1.2.3.58", "2a03:4444:fff0:59:88::58"]


async def test_a_new_master_announces_everything_at_once_when_the_kernel_is_ready(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    announced, released = await hand_over_with_slow_ipv6(cluster, delay=0.0)
    assert announced == [(0.0, "1.2.3.58"), (0.0, "2a03:4444:fff0:59:88::58")]
    assert released == HANDOVER_GRACE / SECOND
    (record,) = cluster.hosts["B"].announcements.records
    assert len(record.addresses) == 2  # one burst, in the configured order


async def test_graceful_handover_off_removes_addresses_with_the_priority_zero_advert(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    t0 = trio.current_time()
    await start_three(cluster, graceful_handover=False)
    await trio.sleep_until(t0 + 10)
    await cluster.stop("A")
    assert trio.current_time() - t0 == pytest.approx(10.0, abs=1e-9)
    assert not cluster.hosts["A"].holds(VIP)
    await trio.sleep(1)
    assert cluster.masters("vip58") == ["B"]


async def test_unicast_mode_elects_among_peers_and_ignores_strangers(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    addresses = {name: HOSTS[name] for name in PRIORITIES}
    deliveries: list[Delivery] = []

    def route(delivery: Delivery) -> float:
        deliveries.append(delivery)
        return 0.0

    cluster.lan.route = route
    for name, priority in PRIORITIES.items():
        peers = [a for other, a in addresses.items() if other != name]
        extra = {"unicast_source": addresses[name], "unicast_peers": peers}
        await cluster.start(name, config({"vip58": seed_instance(priority, **extra)}))
    await trio.sleep(10)
    assert cluster.masters("vip58") == ["A"]
    # Only unicast deliveries, only to A's peers.
    assert deliveries
    assert {str(d.destination) for d in deliveries if d.sender == "A"} == {
        "192.168.200.2",
        "192.168.200.3",
    }
    # A stranger with a higher priority sends to A, B and C: nobody listens to it.
    stranger = ip_address("192.168.200.9")
    transport = cluster.lan.factory("S", [stranger])(INTERFACE, Family.IPV4, multicast=False)
    advert = Advertisement(58, 200, 100, (ip_address("1.2.3.58"),))
    for address in addresses.values():
        destination = ip_address(address)
        await transport.send(
            encode(advert, source=stranger, destination=destination), stranger, destination
        )
    await trio.sleep(5)
    assert cluster.masters("vip58") == ["A"]
    drops = cluster.hosts["A"].node.instances["vip58"].statistics().drops
    assert drops[DropReason.NOT_A_PEER] == 1


class _OrderedNetlink(FakeNetlink):
    """Logs the mutating calls into a list shared with the LAN and the announcer."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def add_address(self, spec: AddressSpec) -> bool:
        self.log.append(f"address {spec.address}")
        return await super().add_address(spec)

    async def add_route(self, route: RouteConfig) -> bool:
        self.log.append("route")
        return await super().add_route(route)

    async def add_rule(self, rule: RuleConfig) -> bool:
        self.log.append("rule")
        return await super().add_rule(rule)


class _OrderedAnnouncements(RecordingAnnouncements):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def announce(self, specs: Sequence[AddressSpec], repeat: int) -> None:
        self.log.append("announce")


async def test_becoming_master_runs_advert_addresses_routes_rules_announce_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    netlink = _OrderedNetlink(log)
    netlink.add_link(INTERFACE, addresses=[IPv4Interface("192.168.200.1/24")])
    lan = MemoryLan()

    def route(delivery: Delivery) -> float:
        log.append("advert")
        return 0.0

    lan.route = route
    lan.factory("B", [ip_address("192.168.200.2")])(INTERFACE, Family.IPV4, multicast=True)
    node_config = config(
        {
            "vip58": seed_instance(
                255,
                virtual_routes=[{"to": "default", "via": "1.2.3.57", "table": 100}],
                virtual_rules=[{"from": "1.2.3.56/29", "table": 100}],
            )
        }
    )
    node = Node(
        node_config,
        netlink=netlink,
        transport_factory=lan.factory("A", [ip_address("192.168.200.1")]),
        announcements=_OrderedAnnouncements(log),
        history_store=MemoryHistoryStore(),  # never this host's /var/lib/pyvrrp
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.wait_state("vip58", State.MASTER)
        await trio.sleep(0.5)
        assert log == [
            "advert",
            "address 1.2.3.58/29",
            f"address {EXCLUDED}",
            "route",
            "rule",
            "announce",
        ]
        nursery.cancel_scope.cancel()


async def test_startup_removes_addresses_left_by_a_crash(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    netlink = FakeNetlink()
    netlink.add_link(
        INTERFACE,
        addresses=[IPv4Interface("192.168.200.2/24"), IPv4Interface(VIP)],
        ipv6_link_local=True,
    )
    host = await cluster.start("B", config({"vip58": seed_instance(75)}), netlink=netlink)
    assert not host.holds(VIP)
    assert host.state("vip58") is State.BACKUP


@pytest.mark.parametrize(
    ("links", "message"),
    [
        ([], r"interface eth0\.4000 does not exist"),
        ([INTERFACE], r"has no IPv4 address.*unicast_source"),
    ],
    ids=["missing interface", "no source address"],
)
async def test_an_unusable_interface_is_an_environment_problem(
    autojump_clock: trio.testing.MockClock, links: list[str], message: str
) -> None:
    netlink = FakeNetlink()
    for link in links:
        netlink.add_link(link)
    node = Node(
        config({"vip58": seed_instance(100)}),
        netlink=netlink,
        transport_factory=MemoryLan().factory("A"),
        announcements=RecordingAnnouncements(),
        history_store=MemoryHistoryStore(),
    )
    with pytest.raises(EnvironmentProblem, match=message):
        await node.run()


async def test_garbage_changes_no_state_and_is_counted_by_reason(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    await start_three(cluster)
    await trio.sleep(10)
    a = cluster.hosts["A"]
    source, destination = ip_address("192.168.200.7"), ip_address("224.0.0.18")
    good = bytes.fromhex("313a6401006405720102033a")  # VRID 58 with a wrong checksum
    bad = [
        PacketReceived(good, source, destination, 255),  # checksum
        PacketReceived(good, source, destination, 64),  # TTL
        PacketReceived(b"\x21" + good[1:], source, destination, 255),  # VRRPv2
        PacketReceived(b"\x31\x07" + good[2:], source, destination, 255),  # unknown VRID
        PacketReceived(b"\x31", source, destination, 255),  # too short to demultiplex
    ]
    for _ in range(100):
        for packet in bad:
            cluster.lan.inject("A", packet, Family.IPV4)
        cluster.lan.inject("A", DecodeError(DropReason.IP_HEADER, "bad header"), Family.IPV4)
        await trio.sleep(0.01)
    await trio.sleep(5)
    assert cluster.masters("vip58") == ["A"]
    assert [t.new for t in a.transitions] == [State.BACKUP, State.MASTER]
    drops = a.node.instances["vip58"].statistics().drops
    assert drops[DropReason.CHECKSUM] == 100
    assert drops[DropReason.TTL] == 100
    assert drops[DropReason.VERSION] == 100
    assert a.node.drops() == {"eth0.4000/ipv4": {"unknown_vrid": 200, "ip_header": 100}}


async def test_a_timer_lead_wakes_early_but_the_router_decides_at_the_exact_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    netlink = FakeNetlink()
    netlink.add_link(INTERFACE, addresses=[IPv4Interface("192.168.200.1/24")])
    lan = MemoryLan()
    sent: list[float] = []

    def route(delivery: Delivery) -> float:
        sent.append(trio.current_time())
        return 0.0

    lan.route = route
    lan.factory("B", [ip_address("192.168.200.2")])(INTERFACE, Family.IPV4, multicast=True)
    node = Node(
        config({"vip58": seed_instance(100)}),
        netlink=netlink,
        transport_factory=lan.factory("A", [ip_address("192.168.200.1")]),
        announcements=RecordingAnnouncements(),
        timer_lead=0.001,
        history_store=MemoryHistoryStore(),
    )
    changes = node.subscribe()
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        await nursery.start(node.run)
        await node.wait_state("vip58", State.MASTER)
        await trio.sleep(2.5)
        nursery.cancel_scope.cancel()
    transitions = [changes.receive_nowait() for _ in range(2)]
    # Woken 1 ms before Master_Down_Interval: the transition is stamped with the deadline,
    # and the advertisements leave on a 1 s grid anchored there, each 1 ms early.
    assert transitions[-1].time - t0 == pytest.approx(3.609375, abs=1e-9)
    assert [round(t - t0, 6) for t in sent] == [3.608375, 4.608375, 5.608375]


async def test_an_action_the_runtime_does_not_know_is_an_error_not_ignored(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    await start_three(cluster)
    instance = cluster.hosts["A"].node.instances["vip58"]
    with pytest.raises(AssertionError):  # typing.assert_never: mypy proves it unreachable
        await instance.execute([object()], 0)  # type: ignore[list-item]
