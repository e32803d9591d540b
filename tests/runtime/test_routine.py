"""The instances' two routine lanes (pyvrrp/runtime/instance.py) on fake transports.

A backup whose transport absorbs its master's repeated advertisements (in the daemon the
kernel does, pyvrrp/runtime/absorb.py) is told which packet is routine after every event,
takes the count before anything it handles and before its Master_Down_Timer may fire, and so
stays backup without reading them; a master's routine wake-up sends its advertisement through
the transport's prepared senders, and the driver sends what a full socket left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import State
from pyvrrp.core.events import HealthChanged, PacketReceived
from pyvrrp.core.packet import Advertisement, Family, IPAddress, encode, peek_vrid
from pyvrrp.runtime.instance import KERNEL_BACKSTOP, Instance
from pyvrrp.runtime.transport import Transport, TransportFactory

from .cluster import HOSTS, Cluster, Host, TaskSteps, config, instance
from .test_fast_path import NoSendNow

GROUP = Family.IPV4.multicast_group
MASTER = ip_address("192.168.200.9")  # a master on the LAN that is not one of the cluster's
VIP = ip_address("1.2.3.58")
US = 1_000_000
# B (priority 50) times out 3 s + Skew_Time (256 - 50) / 256 s after its master's last word.
DOWN_50 = 3_804_687
# Microseconds an arrival time may move in the conversion from the kernel's clock
# (perf_counter_ns at take() and again in the instance: real time passes in between).
SLACK = 5_000


def advert_from_master(priority: int = 200) -> PacketReceived:
    advert = Advertisement(vrid=58, priority=priority, max_advert_interval=100, addresses=(VIP,))
    return PacketReceived(encode(advert, source=MASTER, destination=GROUP), MASTER, GROUP, 255)


class FakeAbsorber:
    """An absorber as an instance sees it (update, absorbing, take); the test plays the
    kernel with :meth:`arrive`. ``late`` is what the next :meth:`update` hands back."""

    def __init__(self) -> None:
        self.entries: dict[int, PacketReceived] = {}
        self.updates: list[tuple[float, int, PacketReceived | None]] = []
        self.pending: dict[int, int] = {}  # absorbed, not taken yet
        self.last: dict[int, float] = {}  # trio time of the last one absorbed
        self.taken = 0
        self.late: PacketReceived | None = None
        self.timeouts: dict[int, int | None] = {}  # the Master_Down_Interval each entry has

    def update(
        self, vrid: int, packet: PacketReceived | None, timeout: int | None = None
    ) -> PacketReceived | None:
        current = self.entries.get(vrid)
        self.timeouts[vrid] = timeout
        if packet == current:
            return None
        self.updates.append((trio.current_time(), vrid, packet))
        late, self.late = self.late, None
        if self.pending.pop(vrid, 0) and late is None:
            late = current
        if packet is None:
            self.entries.pop(vrid, None)
        else:
            self.entries[vrid] = packet
        return late

    def absorbing(self, vrid: int) -> PacketReceived | None:
        return self.entries.get(vrid)

    def take(self, vrid: int) -> tuple[int, int] | None:
        count = self.pending.pop(vrid, 0)
        if not count:
            return None
        self.taken += count
        # The kernel's time of the last arrival (CLOCK_MONOTONIC, perf_counter_ns here): as
        # long ago as it was in trio time, whatever the clock.
        ago = round((trio.current_time() - self.last[vrid]) * 1e9)
        return count, time.perf_counter_ns() - ago

    def arrive(self, packet: PacketReceived) -> bool:
        """A packet reaches the socket: absorbed (True) when its VRID's entry is exactly it."""
        vrid = peek_vrid(packet.message)
        if vrid is None or self.entries.get(vrid) != packet:
            return False
        self.pending[vrid] = self.pending.get(vrid, 0) + 1
        self.last[vrid] = trio.current_time()
        return True

    def updated(self) -> list[PacketReceived | None]:
        return [packet for _, _, packet in self.updates]


class Watching(FakeAbsorber):
    """An absorber whose entries also restart a kernel timer (the real one's ``watching``):
    the test plays its expiry with the instance's ``kernel_expired``."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: set[int] = set()

    def update(
        self, vrid: int, packet: PacketReceived | None, timeout: int | None = None
    ) -> PacketReceived | None:
        if packet != self.entries.get(vrid) or timeout != self.timeouts.get(vrid):
            self.watched.discard(vrid)
        return super().update(vrid, packet, timeout)

    def take(self, vrid: int) -> tuple[int, int] | None:
        taken = super().take(vrid)
        if taken is not None and self.timeouts.get(vrid) is not None:
            self.watched.add(vrid)
        return taken

    def watching(self, vrid: int) -> bool:
        return vrid in self.watched


class Wrapper(NoSendNow):
    """A transport passing everything to ``inner`` (the cluster's recording transport),
    ``send_now`` included; what waited in ``send`` is recorded."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.waited: list[tuple[bytes, IPAddress, IPAddress]] = []

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        self.waited.append((message, source, destination))
        await super().send(message, source, destination)

    def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
        send_now: Callable[[bytes, IPAddress, IPAddress], bool] = getattr(self.inner, "send_now")  # noqa: B009
        return send_now(message, source, destination)


class Absorbing(Wrapper):
    """A transport whose socket absorbs what its absorber's entries say (the kernel's part)."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.absorber = FakeAbsorber()

    async def receive(self) -> PacketReceived:
        while True:
            packet = await self.inner.receive()
            if not self.absorber.arrive(packet):
                return packet


class WatchedAbsorbing(Absorbing):
    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.absorber = Watching()


class Prepared(Wrapper):
    """A transport with prepared sends (``sender``, as RawTransport has); ``full`` makes
    the prepared send to that destination say "would block" that many times, ``broken``
    raise."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.prepared: list[tuple[bytes, IPAddress, IPAddress]] = []
        self.sent: list[tuple[float, bytes, IPAddress, IPAddress]] = []
        self.sent_now: list[tuple[bytes, IPAddress, IPAddress]] = []
        self.full: dict[IPAddress, int] = {}
        self.broken: set[IPAddress] = set()

    def sender(
        self, message: bytes, source: IPAddress, destination: IPAddress
    ) -> Callable[[], bool]:
        self.prepared.append((message, source, destination))

        def send() -> bool:
            if destination in self.broken:
                raise OSError(101, "Network is unreachable")
            if self.full.get(destination):
                self.full[destination] -= 1
                return False
            self.sent.append((trio.current_time(), message, source, destination))
            return Wrapper.send_now(self, message, source, destination)

        return send

    def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
        self.sent_now.append((message, source, destination))
        return super().send_now(message, source, destination)


def wrap_transports(
    monkeypatch: pytest.MonkeyPatch, cluster: Cluster, wraps: dict[str, Callable[[Transport], Any]]
) -> dict[str, list[Any]]:
    """Wrap the transports of the hosts named in ``wraps``; those made, per host."""
    made: dict[str, list[Any]] = {name: [] for name in wraps}
    original = Cluster.factory

    def factory(name: str) -> TransportFactory:
        inner = original(cluster, name)
        if name not in wraps:
            return inner

        def open_transport(interface: str, family: Family, *, multicast: bool) -> Transport:
            transport: Transport = wraps[name](inner(interface, family, multicast=multicast))
            made[name].append(transport)
            return transport

        return open_transport

    monkeypatch.setattr(cluster, "factory", factory)
    return made


# ------------------------------------------------------------------ the backup's lane


async def driver_steps_until(cluster: Cluster, until: float) -> int:
    """How many times the instances' driver tasks ran until ``until`` (cluster time)."""
    steps = TaskSteps("Instance.drive")
    trio.lowlevel.add_instrument(steps)
    try:
        await cluster.sleep_until(until)
    finally:
        trio.lowlevel.remove_instrument(steps)
    return steps.steps


async def lone_backup(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, kind: type[Absorbing] = Absorbing
) -> tuple[Instance, Any, PacketReceived]:
    """Host B alone, a backup of vip58 (priority 50) that accepted the master's
    advertisement twice at 1 s (routine from the second copy): its instance, its absorber
    (the entry now that packet) and the packet."""
    made = wrap_transports(monkeypatch, cluster, {"B": kind})
    b = await cluster.start("B", config({"vip58": instance(58, 50, "1.2.3.58/29")}))
    (transport,) = made["B"]
    absorber: FakeAbsorber = transport.absorber
    vip58 = b.node.instances["vip58"]
    await cluster.sleep_until(1)
    routine = advert_from_master()
    vip58.deliver(routine)
    assert absorber.updated() == []  # one copy: not yet routine
    vip58.deliver(routine)
    assert absorber.updated() == [routine]
    return vip58, absorber, routine


async def test_a_backup_whose_master_is_absorbed_stays_backup_without_waking_its_driver(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = wrap_transports(monkeypatch, cluster, {"B": Absorbing})
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    b = await cluster.start("B", config({"vip58": instance(58, 50, "1.2.3.58/29")}))
    (transport,) = made["B"]
    absorber: FakeAbsorber = transport.absorber
    await cluster.sleep_until(10)
    assert cluster.masters("vip58") == ["A"]
    # B accepted A's first two advertisements, and from then on the "kernel" takes them all.
    (first,) = absorber.updated()
    assert first is not None and first.source == ip_address(HOSTS["A"])
    steps = await driver_steps_until(cluster, 30)
    # Far past Master_Down_Interval since the last advertisement it handled: still backup,
    # its Master_Down_Timer moved on by the absorbed ones, its driver never woken for it.
    assert cluster.changes("B", "vip58") == [(0.0, State.INITIALIZE, State.BACKUP)]
    assert steps == 0
    assert absorber.updated() == [first]
    vip58 = b.node.instances["vip58"]
    stats = vip58.statistics()
    sent = [t for t, _ in cluster.adverts("A")]
    assert len(sent) == 27  # from 3.609375 s, one a second
    assert stats.adverts_received == len(sent)
    assert absorber.taken == len(sent) - 2
    last_seen = stats.peers[first.source].last
    assert abs(last_seen - round((cluster.t0 + sent[-1]) * US)) <= SLACK
    # A stops: B takes over Master_Down_Interval after the last advertisement, as before.
    cluster.crash("A")
    await cluster.sleep_until(40)
    assert a.scope.cancel_called
    ((at, old, new),) = cluster.changes("B", "vip58")[1:]
    assert (old, new) == (State.BACKUP, State.MASTER)
    assert abs(round(at * US) - (round(sent[-1] * US) + DOWN_50)) <= SLACK
    # Master: nothing is routine any more.
    assert absorber.updated() == [first, None]
    assert absorber.updates[-1][0] == pytest.approx(cluster.t0 + at, abs=1e-6)


async def test_a_master_leaving_after_absorbed_advertisements_is_heard_in_order(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its priority 0 is not routine: read at once, after the absorbed copies before it are
    # counted (were they counted after, they would restart the full Master_Down_Timer).
    made = wrap_transports(monkeypatch, cluster, {"B": Absorbing})
    await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    b = await cluster.start("B", config({"vip58": instance(58, 50, "1.2.3.58/29")}))
    (transport,) = made["B"]
    await cluster.sleep_until(20)
    assert cluster.masters("vip58") == ["A"]
    await cluster.stop("A")
    (left,) = [t for t, priority in cluster.adverts("A") if priority == 0]
    await cluster.sleep_until(25)
    ((at, _, new),) = cluster.changes("B", "vip58")[1:]
    assert new is State.MASTER
    # Skew_Time (256 - 50) / 256 s after the priority 0, not Master_Down_Interval.
    assert round(at * US) == round(left * US) + 804_687
    stats = b.node.instances["vip58"].statistics()
    assert stats.adverts_received == len(cluster.adverts("A"))
    assert stats.priority_zero_received == 1
    assert transport.absorber.taken == len(cluster.adverts("A")) - 3


async def watched_backup(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> tuple[Instance, Watching]:
    """:func:`lone_backup` whose absorber has kernel timers, one copy absorbed at 2 s and
    taken at its own deadline (1 s + DOWN_50): from then on the kernel watches."""
    vip58, absorber, routine = await lone_backup(cluster, monkeypatch, WatchedAbsorbing)
    await cluster.sleep_until(2)
    assert absorber.arrive(routine)
    await cluster.sleep_until(5)
    assert absorber.watching(58)
    return vip58, absorber


async def test_absorbed_copies_count_as_heard_in_the_statistics_and_the_timer(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    vip58, absorber, routine = await lone_backup(cluster, monkeypatch)
    for second in (2, 3, 4):
        await cluster.sleep_until(second)
        assert absorber.arrive(routine)
    await cluster.sleep_until(4.5)
    stats = vip58.statistics()
    assert stats.adverts_received == 5
    assert stats.master_address == MASTER
    heard = round((cluster.t0 + 4) * US)
    assert abs(stats.peers[MASTER].last - heard) <= SLACK
    deadline = vip58.router.deadline()
    assert deadline is not None and abs(deadline - (heard + DOWN_50)) <= SLACK
    # Nothing more: it takes over Master_Down_Interval after the last one absorbed.
    await cluster.sleep_until(10)
    ((at, _, new),) = cluster.changes("B", "vip58")[1:]
    assert new is State.MASTER
    assert abs(round(at * US) - (4 * US + DOWN_50)) <= SLACK
    assert vip58.statistics().adverts_received == 5


async def test_a_backup_tells_the_absorber_its_master_down_interval(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    vip58, absorber, routine = await lone_backup(cluster, monkeypatch)
    assert absorber.timeouts == {58: DOWN_50}
    # A higher priority: a shorter Skew_Time, so a shorter interval for the same packet.
    vip58.post(HealthChanged(150))
    await cluster.sleep_until(1.5)
    assert vip58.router.priority == 150
    assert absorber.timeouts[58] is None  # another event: nothing routine until heard twice
    vip58.deliver(routine)
    vip58.deliver(routine)
    assert absorber.entries[58] == routine
    assert absorber.timeouts[58] == 3_414_062  # 3 s + (256 - 150) / 256 s


async def test_the_kernels_timer_is_the_schedules_lead_shorter(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon's schedule wakes a router 1 ms before its deadline: so does the kernel.
    vip58, absorber, routine = await lone_backup(cluster, monkeypatch)
    monkeypatch.setattr(vip58._schedule, "lead", 0.001)
    vip58.post(HealthChanged(50))  # an event: nothing routine until heard twice again
    await cluster.sleep_until(1.5)
    assert absorber.timeouts[58] is None
    vip58.deliver(routine)
    vip58.deliver(routine)
    assert absorber.timeouts[58] == DOWN_50 - 1_000


async def test_a_backup_the_kernel_watches_sleeps_past_its_timer_until_the_kernel_says(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    vip58, absorber, routine = await lone_backup(cluster, monkeypatch, WatchedAbsorbing)
    for second in (2, 3, 4):
        await cluster.sleep_until(second)
        assert absorber.arrive(routine)
    # At its own deadline (1 s + DOWN_50) it takes the three copies: the kernel's timer
    # runs from the last of them, and it no longer wakes for its Master_Down_Timer.
    await cluster.sleep_until(5)
    assert absorber.watching(58)
    assert await driver_steps_until(cluster, 12) == 0
    assert vip58.state is State.BACKUP  # its timer (4 s + DOWN_50) passed: nobody said
    # A stale expiry (the master alive, a copy taken since): nothing.
    assert absorber.arrive(routine)
    vip58.kernel_expired()
    await cluster.sleep_until(13)
    assert vip58.state is State.BACKUP
    # The kernel says the master went quiet: it takes over at once.
    await cluster.sleep_until(12 + DOWN_50 / US + 0.5)
    vip58.kernel_expired()
    await cluster.sleep_until(18)
    ((at, old, new),) = cluster.changes("B", "vip58")[1:]
    assert (old, new) == (State.BACKUP, State.MASTER)
    assert at == pytest.approx(12.5 + DOWN_50 / US, abs=0.01)


async def test_a_kernel_expiry_a_hair_before_the_deadline_is_kept_by_the_schedule(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel's clock and trio's, compared through two reads, may put the expiry a few
    # microseconds before the router's deadline: the backup then wakes at the deadline
    # itself, not 30 s later.
    vip58, _ = await watched_backup(cluster, monkeypatch)
    deadline = vip58.router.deadline()
    assert deadline is not None
    await trio.sleep_until((deadline - 500) / US)
    vip58.kernel_expired()
    await cluster.sleep_until(10)
    ((at, _, new),) = cluster.changes("B", "vip58")[1:]
    assert new is State.MASTER
    assert abs(round((cluster.t0 + at) * US) - deadline) <= 1_000


async def test_a_backup_the_kernel_never_wakes_takes_over_by_itself_thirty_seconds_late(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    vip58, absorber = await watched_backup(cluster, monkeypatch)
    await cluster.sleep_until(2 + DOWN_50 / US + 5)
    assert vip58.state is State.BACKUP  # the kernel's to say, and it did not (yet)
    await cluster.sleep_until(2 + (DOWN_50 + KERNEL_BACKSTOP) / US + 5)
    ((at, _, new),) = cluster.changes("B", "vip58")[1:]
    assert new is State.MASTER
    assert round(at * US) == pytest.approx(2 * US + DOWN_50 + KERNEL_BACKSTOP, abs=SLACK)
    assert not absorber.watching(58)  # master: nothing routine, no timer


@pytest.mark.parametrize("absorbing", [True, False])
async def test_with_nothing_absorbed_a_backup_takes_over_exactly_as_without_an_absorber(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    absorbing: bool,
) -> None:
    made = wrap_transports(monkeypatch, cluster, {"B": Absorbing if absorbing else Wrapper})
    b = await cluster.start("B", config({"vip58": instance(58, 50, "1.2.3.58/29")}))
    vip58 = b.node.instances["vip58"]
    await cluster.sleep_until(1)
    vip58.deliver(advert_from_master())
    vip58.deliver(advert_from_master())
    await cluster.sleep_until(10)
    assert cluster.changes("B", "vip58") == [
        (0.0, State.INITIALIZE, State.BACKUP),
        ((US + DOWN_50) / US, State.BACKUP, State.MASTER),
    ]
    if absorbing:
        (transport,) = made["B"]
        assert transport.absorber.updated() == [advert_from_master(), None]
        assert transport.absorber.taken == 0


async def test_the_absorber_follows_the_routine_packet_and_a_late_one_is_heard(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    vip58, absorber, routine = await lone_backup(cluster, monkeypatch)
    # Not routine: a lower-priority master it preempts (fast preemption), nothing absorbed.
    await cluster.sleep_until(1.5)
    vip58.deliver(advert_from_master(priority=20))
    assert absorber.updated() == [routine, None]
    await cluster.sleep_until(1.6)
    vip58.deliver(routine)
    assert absorber.updated() == [routine, None]  # once after another: not yet
    vip58.deliver(routine)
    assert absorber.updated() == [routine, None, routine]
    # Another event (trackers: the same priority) clears it; the copy the kernel took just
    # before comes back from update and reaches the router, late, as a packet.
    await cluster.sleep_until(2)
    absorber.late = routine
    vip58.post(HealthChanged(50))
    await trio.testing.wait_all_tasks_blocked()
    # Heard after another event: a first copy again, not routine.
    assert absorber.updated() == [routine, None, routine, None]
    stats = vip58.statistics()
    assert stats.adverts_received == 6
    assert stats.peers[MASTER].last == round((cluster.t0 + 2) * US)
    assert vip58.state is State.BACKUP


# ------------------------------------------------------------------ the master's lane


def expected_messages(destinations: list[IPAddress]) -> list[bytes]:
    """A's advertisement for VRID 58 at priority 100, to each destination."""
    source = ip_address(HOSTS["A"])
    advert = Advertisement(vrid=58, priority=100, max_advert_interval=100, addresses=(VIP,))
    return [encode(advert, source=source, destination=d) for d in destinations]


PEER_B, PEER_C = ip_address(HOSTS["B"]), ip_address(HOSTS["C"])


@pytest.mark.parametrize("unicast", [False, True])
async def test_a_master_sends_its_routine_advertisement_through_prepared_senders(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    unicast: bool,
) -> None:
    made = wrap_transports(monkeypatch, cluster, {"A": Prepared})
    extra: dict[str, Any] = {"unicast_peers": [str(PEER_B), str(PEER_C)]} if unicast else {}
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29", **extra)}))
    (transport,) = made["A"]
    assert isinstance(transport, Prepared)
    destinations: list[IPAddress] = [PEER_B, PEER_C] if unicast else [GROUP]
    await cluster.sleep_until(5)
    assert a.state("vip58") is State.MASTER
    steps = await driver_steps_until(cluster, 15.5)
    messages = expected_messages(destinations)
    # Prepared once, for each datagram of the router's SendAdvert, with its bytes.
    source = ip_address(HOSTS["A"])
    pairs = list(zip(messages, destinations, strict=True))
    assert transport.prepared == [(m, source, d) for m, d in pairs]
    # From the first routine wake-up (4.609375 s) one advertisement a second, all sent by
    # the prepared senders, none by send_now after the takeover, no driver step.
    routine = [(cluster.at(t), m, d) for t, m, _, d in transport.sent]
    assert [t for t, _, _ in routine[:: len(destinations)]] == [4.609375 + k for k in range(11)]
    assert [(m, d) for _, m, d in routine] == pairs * 11
    assert transport.sent_now == []  # the takeover's went with the driver
    assert steps == 0
    # And what reached the LAN is exactly that.
    assert len(cluster.adverts("A")) == 12 * len(destinations)


async def test_a_master_without_prepared_senders_sends_with_send_now(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_now: list[tuple[float, bytes, IPAddress]] = []

    class SendNowOnly(Wrapper):
        def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
            sent_now.append((trio.current_time(), message, destination))
            return super().send_now(message, source, destination)

    wrap_transports(monkeypatch, cluster, {"A": SendNowOnly})
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    await cluster.sleep_until(5)
    assert a.state("vip58") is State.MASTER
    steps = await driver_steps_until(cluster, 10.5)
    (message,) = expected_messages([GROUP])
    routine = [(cluster.at(t), m, d) for t, m, d in sent_now if cluster.at(t) > 4]
    assert routine == [(4.609375 + k, message, GROUP) for k in range(6)]
    assert steps == 0


async def unicast_master(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> tuple[Host, Prepared]:
    """Host A alone, master of vip58 (unicast to B and C) at 5 s, on a Prepared transport."""
    made = wrap_transports(monkeypatch, cluster, {"A": Prepared})
    extra: dict[str, Any] = {"unicast_peers": [str(PEER_B), str(PEER_C)]}
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29", **extra)}))
    (transport,) = made["A"]
    assert isinstance(transport, Prepared)
    await cluster.sleep_until(5)
    return a, transport


async def test_what_a_full_socket_left_of_the_routine_advertisement_the_driver_sends(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, transport = await unicast_master(cluster, monkeypatch)
    assert a.state("vip58") is State.MASTER
    waited_before = len(transport.waited)
    # The socket is full for C's datagram twice (the 6th and 7th seconds), B's goes out.
    transport.full[PEER_C] = 2
    await cluster.sleep_until(8.7)
    messages = expected_messages([PEER_B, PEER_C])
    # The driver sent C's two, and only those (B's went out at once).
    assert transport.waited[waited_before:] == [(messages[1], ip_address(HOSTS["A"]), PEER_C)] * 2
    # Each peer got exactly one advertisement a second, none lost, none twice.
    for peer in (PEER_B, PEER_C):
        times = [cluster.at(s.time) for s in cluster.sent if s.destination == peer]
        assert times == [3.609375 + k for k in range(6)]


async def test_a_failing_prepared_send_is_counted_and_the_next_datagram_still_goes(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, transport = await unicast_master(cluster, monkeypatch)
    vip58 = a.node.instances["vip58"]
    failures = vip58.send_failures
    transport.broken.add(PEER_B)
    await cluster.sleep_until(7.7)
    assert vip58.send_failures == failures + 3
    assert vip58.last_send_error == f"to {PEER_B}: Network is unreachable"
    to_c = [cluster.at(t) for t, _, _, d in transport.sent if d == PEER_C]
    assert to_c[-3:] == [5.609375, 6.609375, 7.609375]


async def test_statistics_taking_the_count_early_does_not_wake_the_driver_later(
    autojump_clock: trio.testing.MockClock, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A metrics scrape (statistics()) takes what was absorbed and moves the backup's
    # Master_Down_Timer on; the schedule still holds the old time: when it comes, the
    # instance sees the deadline moved and re-arms, without its driver.
    vip58, absorber, routine = await lone_backup(cluster, monkeypatch)
    steps = TaskSteps("Instance.drive")
    trio.lowlevel.add_instrument(steps)
    try:
        for tick in range(2, 30):
            await cluster.sleep_until(tick)
            assert absorber.arrive(routine)
            await cluster.sleep_until(tick + 0.5)
            assert vip58.statistics().adverts_received == tick + 1  # a scrape every second
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert cluster.changes("B", "vip58") == [(0.0, State.INITIALIZE, State.BACKUP)]
    assert steps.steps == 0
