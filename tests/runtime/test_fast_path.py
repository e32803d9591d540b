"""The instances' fast path (pyvrrp/runtime/instance.py): while an instance's driver task is
idle, a received packet or a due deadline is handed to its router at once, in the task that
has it, and what needs no waiting (sending the advertisement, publishing a state change,
counting a drop) is done there; what must wait goes to the driver, in order. A backup about
to declare its master down first reads what its socket already holds."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from ipaddress import IPv4Address, ip_address
from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import State
from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import Advertisement, DecodeError, DropReason, Family, IPAddress, encode
from pyvrrp.runtime.transport import BatchTransport, Transport, TransportFactory

from .cluster import Cluster, TaskSteps, config, instance

GROUP = Family.IPV4.multicast_group
MASTER = ip_address("192.168.200.9")  # a master on the LAN that is not one of the cluster's


def advert_from_master(vrid: int = 58, priority: int = 200) -> PacketReceived:
    """A valid advertisement (1 s interval) of a higher-priority master."""
    assert isinstance(MASTER, IPv4Address) and isinstance(GROUP, IPv4Address)
    advert = Advertisement(
        vrid=vrid, priority=priority, max_advert_interval=100, addresses=(ip_address("1.2.3.58"),)
    )
    return PacketReceived(encode(advert, source=MASTER, destination=GROUP), MASTER, GROUP, 255)


async def test_a_packet_reaching_an_idle_router_is_handled_before_deliver_returns(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    await cluster.sleep_until(5)
    vip58 = a.node.instances["vip58"]
    short = PacketReceived(b"\x31\x3a", MASTER, GROUP, 255)
    vip58.deliver(short)  # no checkpoint in between: handled in this task
    assert vip58.statistics().drops == {DropReason.TOO_SHORT: 1}
    # While the driver has something to do, packets wait their turn behind it, in order.
    vip58.post_wakeup()
    vip58.deliver(short)
    vip58.deliver(advert_from_master())
    assert vip58.statistics().drops == {DropReason.TOO_SHORT: 1}
    await trio.testing.wait_all_tasks_blocked()
    assert vip58.statistics().drops == {DropReason.TOO_SHORT: 2}
    assert vip58.state is State.BACKUP  # the master's advertisement was handled after it
    # And once the driver is idle again, the fast path is back.
    vip58.deliver(short)
    assert vip58.statistics().drops == {DropReason.TOO_SHORT: 3}


async def test_a_master_sends_every_advertisement_without_its_driver_task(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    await cluster.sleep_until(5)
    assert a.state("vip58") is State.MASTER
    steps = TaskSteps("Instance.drive")
    trio.lowlevel.add_instrument(steps)
    try:
        sent_before = len(cluster.adverts("A"))
        await cluster.sleep_until(15)
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert len(cluster.adverts("A")) - sent_before == 10
    assert steps.steps == 0


async def test_a_takeover_is_carried_out_by_the_driver_advert_first_then_addresses(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    b = await cluster.start("B", config({"vip58": instance(58, 50, "1.2.3.58/29")}))
    await cluster.sleep_until(5)
    assert cluster.masters("vip58") == ["A"]
    cluster.crash("A")  # silent: B's Master_Down_Timer fires and its driver takes over
    await cluster.sleep_until(10)
    assert cluster.masters("vip58") == ["B"]
    assert b.holds("1.2.3.58")
    (takeover,) = [c for c in cluster.changes("B", "vip58") if c[2] is State.MASTER]
    # Master_Down_Interval: 3 s + skew (256 - 50) / 256 s after A's last advertisement.
    first_advert = min(t for t, _ in cluster.adverts("B"))
    assert first_advert == takeover[0]
    announced = [r.time for r in b.announcements.records]
    assert announced and cluster.at(announced[0]) >= takeover[0]


class NoSendNow:
    """A transport with only ``send`` and ``receive`` (a library user's own)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.interface = inner.interface
        self.family = inner.family
        self.multicast = inner.multicast

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        await self.inner.send(message, source, destination)

    async def receive(self) -> PacketReceived:
        return await self.inner.receive()

    def close(self) -> None:
        self.inner.close()


class BlocksOnce(NoSendNow):
    """``send_now`` says "would block" the first ``times`` times."""

    def __init__(self, inner: Transport, times: int) -> None:
        super().__init__(inner)
        self.times = times
        self.waited = 0

    def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
        if self.times:
            self.times -= 1
            return False
        send_now: Callable[[bytes, IPAddress, IPAddress], bool] = getattr(self.inner, "send_now")  # noqa: B009
        return send_now(message, source, destination)

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        self.waited += 1
        await self.inner.send(message, source, destination)


def wrapped(cluster: Cluster, name: str, wrap: Callable[[Transport], Any]) -> TransportFactory:
    inner = Cluster.factory(cluster, name)

    def open_transport(interface: str, family: Family, *, multicast: bool) -> Transport:
        transport: Transport = wrap(inner(interface, family, multicast=multicast))
        return transport

    return open_transport


@pytest.mark.parametrize("wrap", ["no send_now", "send_now blocks"])
async def test_a_transport_that_cannot_send_at_once_still_sends_each_advertisement_once(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    wrap: str,
) -> None:
    made: list[BlocksOnce] = []

    def make(inner: Transport) -> Any:
        if wrap == "no send_now":
            return NoSendNow(inner)
        made.append(BlocksOnce(inner, times=3))
        return made[-1]

    monkeypatch.setattr(cluster, "factory", lambda name: wrapped(cluster, name, make))
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    await cluster.sleep_until(10.5)
    assert a.state("vip58") is State.MASTER
    times = [t for t, _ in cluster.adverts("A")]
    # Master from 3.6 s (no peer), then one advertisement a second: none lost, none twice.
    assert len(times) == 7
    assert all(math.isclose(b - a, 1.0, abs_tol=0.002) for a, b in itertools.pairwise(times))
    if made:
        # The driver sent the takeover's (a backup's Master_Down_Timer goes to the driver:
        # the whole takeover in one go) and the three the fast path could not send.
        assert made[0].waited == 1 + 3


class Stalled:
    """A transport whose receiving task never gets a packet: what it holds is only seen by
    ``poll`` (a stall: the deadline and the packet are ready at the same moment)."""

    def __init__(self, interface: str, family: Family, multicast: bool) -> None:
        self.interface = interface
        self.family = family
        self.multicast = multicast
        self.queued: list[PacketReceived | DecodeError] = []
        self.polls = 0

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        pass

    def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
        return True

    async def receive(self) -> PacketReceived:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def receive_batch(self) -> list[PacketReceived | DecodeError]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    def poll(self) -> list[PacketReceived | DecodeError]:
        self.polls += 1
        queued, self.queued = self.queued, []
        return queued

    def close(self) -> None:
        pass


@pytest.mark.parametrize("queued", [True, False])
async def test_a_backup_reads_its_socket_before_it_declares_the_master_down(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
    monkeypatch: pytest.MonkeyPatch,
    queued: bool,
) -> None:
    transports: list[Stalled] = []

    def factory(name: str) -> TransportFactory:
        def open_transport(interface: str, family: Family, *, multicast: bool) -> Transport:
            transports.append(Stalled(interface, family, multicast))
            return transports[-1]

        return open_transport

    monkeypatch.setattr(cluster, "factory", factory)
    b = await cluster.start("B", config({"vip58": instance(58, 50, "1.2.3.58/29")}))
    (transport,) = transports
    assert isinstance(transport, BatchTransport)
    for second in range(20):
        if queued:  # the master's advertisement of this second waits in the socket
            transport.queued.append(advert_from_master())
        await cluster.sleep_until(second + 1)
    if queued:
        assert b.state("vip58") is State.BACKUP
        assert cluster.changes("B", "vip58") == [(0.0, State.INITIALIZE, State.BACKUP)]
        assert b.node.instances["vip58"].statistics().master_address == MASTER
    else:
        # Nothing waits: Master_Down_Interval (3 s + skew) after the start, B takes over.
        assert b.state("vip58") is State.MASTER
        assert [c[0] for c in cluster.changes("B", "vip58")] == [0.0, 3.804687]
    assert transport.polls >= 1
