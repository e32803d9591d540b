"""The node's receive loops (pyvrrp/runtime/demux.py): a batch read from a socket is handed
out packet by packet, and the routers due are called before it and every DUE_CHECK packets
into it, so that a master's advertisement that comes due while a burst of its peers' is
handled waits for a few packets' work, not the whole batch's."""

from __future__ import annotations

import socket
from ipaddress import ip_address

import trio
import trio.testing

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import Advertisement, DecodeError, Family, encode
from pyvrrp.runtime.demux import DUE_CHECK, Demux
from pyvrrp.runtime.transport import RECEIVE_BATCH, BatchTransport, Transport

from .test_fast_path import Stalled
from .test_transport_receive import advert_datagram
from .test_transport_receive import transport as raw_transport

GROUP = Family.IPV4.multicast_group
PEER = ip_address("192.168.200.9")


def advert(vrid: int) -> PacketReceived:
    message = encode(
        Advertisement(
            vrid=vrid, priority=100, max_advert_interval=100, addresses=(ip_address("1.2.3.4"),)
        ),
        source=PEER,
        destination=GROUP,
    )
    return PacketReceived(message, PEER, GROUP, 255)


class OneBatch(Stalled):
    """A transport that hands out one batch, then nothing more."""

    def __init__(self, batch: list[PacketReceived | DecodeError]) -> None:
        super().__init__("eth0", Family.IPV4, multicast=True)
        self.batch = batch
        self.delivered = trio.Event()

    async def receive_batch(self) -> list[PacketReceived | DecodeError]:
        if self.delivered.is_set():
            await trio.sleep_forever()
        self.delivered.set()
        return self.batch


async def test_the_routers_due_are_called_before_a_batch_and_every_due_check_packets_in_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    size = 2 * DUE_CHECK + 5
    # VRIDs nobody runs here: each one handed out is counted as a drop of its interface.
    transport = OneBatch([advert(vrid) for vrid in range(1, size + 1)])
    assert isinstance(transport, BatchTransport)

    def factory(interface: str, family: Family, *, multicast: bool) -> Transport:
        return transport

    demux = Demux(factory)
    handed_out: list[int] = []  # packets of the batch handed out at each call

    def before() -> None:
        handed_out.append(demux.drops().get("eth0/ipv4", {}).get("unknown_vrid", 0))

    demux.before_batch = before
    key = ("eth0", Family.IPV4)
    async with trio.open_nursery() as nursery:
        # The loop update() would start for an instance on eth0 (none is needed here).
        nursery.start_soon(demux._receive_loop, key, transport, trio.CancelScope())
        await transport.delivered.wait()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert handed_out == [0, DUE_CHECK, 2 * DUE_CHECK]
    assert demux.drops() == {"eth0/ipv4": {"unknown_vrid": size}}


async def test_a_quiet_wait_reads_the_advertisement_socket_through_the_same_hand_out() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours, theirs:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        raw = raw_transport(ours)
        demux = Demux(lambda interface, family, *, multicast: raw)
        demux._transports[("eth0", Family.IPV4)] = raw  # what update() opens
        befores: list[int] = []
        demux.before_batch = lambda: befores.append(len(befores))
        sources = demux.quiet_sources()
        assert list(sources) == [ours.fileno()]
        read = sources[ours.fileno()]

        def dropped() -> int:
            return demux.drops().get("eth0/ipv4", {}).get("unknown_vrid", 0)

        for vrid in (1, 2, 3):  # VRIDs nobody runs: counted as drops when handed out
            theirs.send(advert_datagram(vrid))
        assert read() is True  # the socket is empty again
        assert dropped() == 3
        assert befores == [0]  # the routers due were called before the batch
        for vrid in range(1, RECEIVE_BATCH + 2):
            theirs.send(advert_datagram(vrid))
        assert read() is False  # a full batch: more is waiting, trio's loop takes over
        assert dropped() == 3 + RECEIVE_BATCH
        assert read() is True
        assert dropped() == 4 + RECEIVE_BATCH
        # Packets left by receive() go out first, through trio: no quiet read meanwhile.
        theirs.send(advert_datagram(1))
        theirs.send(advert_datagram(2))
        await raw.receive()
        assert demux.quiet_sources() == {}


class Doorbell:
    """An absorber's kernel timers as the demultiplexer sees them: a descriptor readable
    when a timer expired (a socket pair here), and the records naming VRIDs."""

    def __init__(self) -> None:
        self.ours, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ours.setblocking(False)
        self.watch_fd: int | None = self.ours.fileno()
        self.named: list[list[int]] = []

    def expire(self, *vrids: int) -> None:
        self.kernel.send(bytes(vrids))

    def expired(self) -> list[int]:
        vrids: list[int] = []
        while True:
            try:
                vrids += list(self.ours.recv(256))
            except BlockingIOError:
                self.named.append(vrids)
                return vrids


class Looking:
    """An instance as the demultiplexer calls it on an expiry."""

    def __init__(self) -> None:
        self.looked = 0

    def kernel_expired(self) -> None:
        self.looked += 1


async def test_an_expired_kernel_timer_makes_every_instance_of_the_link_look() -> None:
    # The ring's records only hint at the VRID (absorb.py): each backup of the link looks,
    # through trio's loop and through a quiet wait alike.
    doorbell = Doorbell()
    with doorbell.ours, doorbell.kernel:
        raw = Stalled("eth0", Family.IPV4, multicast=True)
        raw.absorber = doorbell  # type: ignore[attr-defined]
        demux = Demux(lambda interface, family, *, multicast: raw)
        key = ("eth0", Family.IPV4)
        here, there, elsewhere = Looking(), Looking(), Looking()
        demux._demux = {key: {58: here, 59: there}, ("eth1", Family.IPV4): {60: elsewhere}}  # type: ignore[dict-item]
        async with trio.open_nursery() as nursery:
            demux._watch(key, raw, nursery)
            await trio.testing.wait_all_tasks_blocked()
            doorbell.expire(58)
            with trio.fail_after(5):
                while not here.looked:
                    await trio.sleep(0.001)
            assert (here.looked, there.looked, elsewhere.looked) == (1, 1, 0)
            assert doorbell.named == [[58]]
            # A quiet wait reads the same descriptor itself.
            read = demux.quiet_sources()[doorbell.ours.fileno()]
            doorbell.expire(59, 58)
            assert read() is True
            assert (here.looked, there.looked) == (2, 2)
            assert read() is True  # nothing more: nobody looks
            assert (here.looked, there.looked) == (2, 2)
            # The same absorber again (a reload): the loop stays; none (closed): it stops.
            demux._watch(key, raw, nursery)
            assert len(demux._watchers) == 1
            raw.absorber = None  # type: ignore[attr-defined]
            demux._watch(key, raw, nursery)
            assert demux._watchers == {}
            await trio.testing.wait_all_tasks_blocked()
            doorbell.expire(58)
            await trio.sleep(0.05)
            assert here.looked == 2
