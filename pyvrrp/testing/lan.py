"""An in-memory LAN for running pyvrrp nodes in one trio program without root.

Modelled on ``trio.testing.FakeNet``: every node gets a transport factory from the LAN; a
message sent to the VRRP multicast group reaches every other transport of the same family
on the segment, a unicast one reaches the transport of the host that owns the destination.
A ``route`` hook decides per delivery: return None to drop, or a delay in seconds.

    lan = MemoryLan()
    async with pyvrrp.open_node(config_a, transport_factory=lan.factory("A", [addr_a]), ...):
        ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import attrs
import trio

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import VRRP_TTL, DecodeError, Family, IPAddress
from pyvrrp.runtime.netlink.contract import AddressSpec
from pyvrrp.runtime.transport import Transport, TransportFactory


@attrs.frozen
class Delivery:
    """One message on its way from one host to another, as seen by the route hook."""

    sender: str
    receiver: str
    source: IPAddress
    destination: IPAddress
    message: bytes


RouteHook = Callable[[Delivery], float | None]


class MemoryTransport:
    """A transport attached to a :class:`MemoryLan`."""

    def __init__(
        self, lan: MemoryLan, host: str, interface: str, family: Family, multicast: bool
    ) -> None:
        self.lan = lan
        self.host = host
        self.interface = interface
        self.family = family
        self.multicast = multicast
        self.closed = False
        self._send, self._receive = trio.open_memory_channel[PacketReceived | DecodeError](math.inf)

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        self.lan.transmit(self, message, source, destination)

    def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
        """Send without waiting (the node's fast path uses it when a transport has it)."""
        self.lan.transmit(self, message, source, destination)
        return True

    async def receive(self) -> PacketReceived:
        item = await self._receive.receive()
        if isinstance(item, DecodeError):
            raise item
        return item

    def deliver(self, packet: PacketReceived | DecodeError) -> None:
        if not self.closed:
            self._send.send_nowait(packet)

    def close(self) -> None:
        self.closed = True
        self.lan.detach(self)


class MemoryLan:
    """One broadcast segment shared by in-memory hosts.

    ``partition(groups)`` lets only hosts of one group hear each other; ``route`` may be
    replaced to drop or delay deliveries (return None or a delay in seconds). Delayed
    deliveries need ``run(nursery)``, or ``async with lan.running():``.
    """

    def __init__(self) -> None:
        self._transports: list[MemoryTransport] = []
        self._addresses: dict[str, set[IPAddress]] = {}
        self._groups: list[frozenset[str]] | None = None
        self._nursery: trio.Nursery | None = None
        self.route: RouteHook = lambda delivery: 0.0
        self.delivered = 0
        self.dropped = 0

    def factory(self, host: str, addresses: Iterable[IPAddress] = ()) -> TransportFactory:
        """The transport factory for one host that owns ``addresses`` (unicast delivery)."""
        self._addresses.setdefault(host, set()).update(addresses)

        def open_transport(interface: str, family: Family, *, multicast: bool) -> Transport:
            transport = MemoryTransport(self, host, interface, family, multicast)
            self._transports.append(transport)
            return transport

        return open_transport

    def add_address(self, host: str, address: IPAddress) -> None:
        self._addresses.setdefault(host, set()).add(address)

    def partition(self, *groups: Iterable[str]) -> None:
        self._groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        self._groups = None

    def connected(self, a: str, b: str) -> bool:
        return self._groups is None or any(a in g and b in g for g in self._groups)

    def inject(self, host: str, packet: PacketReceived | DecodeError, family: Family) -> None:
        """Deliver a packet (or a header error) to every transport of ``host`` and family."""
        for transport in self._transports:
            if transport.host == host and transport.family is family:
                transport.deliver(packet)

    def detach(self, transport: MemoryTransport) -> None:
        if transport in self._transports:
            self._transports.remove(transport)

    def run(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def transmit(
        self, sender: MemoryTransport, message: bytes, source: IPAddress, destination: IPAddress
    ) -> None:
        multicast = destination == sender.family.multicast_group
        for receiver in list(self._transports):
            if receiver is sender or receiver.family is not sender.family:
                continue
            if receiver.host == sender.host:
                continue
            if not multicast and destination not in self._addresses.get(receiver.host, ()):
                continue
            if not self.connected(sender.host, receiver.host):
                self.dropped += 1
                continue
            delivery = Delivery(sender.host, receiver.host, source, destination, message)
            delay = self.route(delivery)
            if delay is None:
                self.dropped += 1
                continue
            packet = PacketReceived(message, source, destination, VRRP_TTL)
            self.delivered += 1
            if delay <= 0 or self._nursery is None:
                receiver.deliver(packet)
            else:
                self._nursery.start_soon(self._deliver_later, receiver, packet, delay)

    @staticmethod
    async def _deliver_later(
        receiver: MemoryTransport, packet: PacketReceived, delay: float
    ) -> None:
        await trio.sleep(delay)
        receiver.deliver(packet)


@attrs.frozen
class AnnouncementRecord:
    """One announcement burst: when, which addresses on which devices, how many times."""

    time: float
    addresses: tuple[tuple[str, IPAddress], ...]  # (dev, address)
    repeat: int


class RecordingAnnouncements:
    """An :class:`~pyvrrp.runtime.announcer.Announcements` that records instead of sending."""

    def __init__(self) -> None:
        self.records: list[AnnouncementRecord] = []

    async def announce(self, specs: Sequence[AddressSpec], repeat: int) -> None:
        self.records.append(
            AnnouncementRecord(
                trio.current_time(), tuple((s.dev, s.address.ip) for s in specs), repeat
            )
        )

    def forget(self, interface: str) -> None:
        """Nothing is cached here."""
