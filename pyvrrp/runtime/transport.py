"""Raw VRRP sockets: one per (interface, address family), shared by every instance on it.

IPv4 uses IP_HDRINCL so that the source address (which the IPv4 pseudo-header checksum
covers) and the TTL of 255 are exactly what we chose; IPv6 sets the source with IPV6_PKTINFO
and hop limits with socket options, and reads the hop limit and destination from ancillary
data (IPv6 raw sockets do not deliver the IP header). Both sockets are bound to their
device, join the VRRP group on that interface only when an instance on it uses multicast,
and have multicast loopback off (our own advertisements are still dropped by address).

Receiving drains the socket: one wake-up of the receiving task reads every datagram already
queued (up to :data:`RECEIVE_BATCH`) with plain non-blocking calls and hands the whole batch
out (:meth:`RawTransport.receive_batch`), instead of a failed ``recv``, an epoll registration
and a wake-up around each datagram. The node hands each packet to its instance at once (the
instance's fast path, pyvrrp/runtime/instance.py); after a full batch the receiving task lets
the others run before it reads again, so a flood cannot starve the routers' timers.
Sending is :meth:`RawTransport.send_now`: a raw datagram socket practically never blocks, so
an advertisement goes straight to the kernel from the task that decided it.

A :class:`Transport` of one's own (tests, the library's in-memory LAN) needs only ``send``
and ``receive``; ``send_now`` and ``receive_batch`` (:class:`BatchTransport`) are used when
it has them.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Protocol, runtime_checkable

import attrs
import trio

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import (
    VRRP_PROTOCOL,
    VRRP_TTL,
    DecodeError,
    DropReason,
    Family,
    IPAddress,
    build_ipv4,
    parse_ipv4,
)
from pyvrrp.runtime.absorb import Absorber, Unavailable, clock_is_monotonic
from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.sockfilter import Instruction, Wanted, attach, program

# Linux constants the socket module may not name.
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
IPV6_MULTICAST_ALL = 29
RECEIVE_BUFFER = 1 << 20
# Datagrams read per wake-up at most: a flood still lets other tasks run between batches.
RECEIVE_BATCH = 64
# Datagrams ready to send, kept per (message, source, destination); cleared when full.
SEND_CACHE = 1024
# A datagram, its ancillary data (IPv6) and the address, as sendto / sendmsg take them.
_Ready = tuple[
    bytes, list[tuple[int, int, bytes]] | None, tuple[str, int] | tuple[str, int, int, int]
]
# For the rest socket (what cannot be an advertisement this node waits for): smaller
# batches, so that under a flood of it the routers' timers wait less between them.
REST_BATCH = 16
# Ancillary space for IPV6_PKTINFO (20 bytes) and IPV6_HOPLIMIT (4 bytes).
_IPV6_ANCILLARY = socket.CMSG_SPACE(20) + socket.CMSG_SPACE(4)

log = logging.getLogger("pyvrrp")


class Transport(Protocol):
    """Sends and receives VRRP messages on one interface for one address family."""

    interface: str
    family: Family
    multicast: bool  # joined the VRRP multicast group

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        """Send one VRRP message; a failure (the link down, no buffer) raises OSError, which
        the instance counts and logs rate-limited, and goes on."""

    async def receive(self) -> PacketReceived:
        """Wait for the next message (the core's event, handed to the router as is); raises
        DecodeError for a malformed IP header."""

    def close(self) -> None: ...


@runtime_checkable
class BatchTransport(Transport, Protocol):
    """A transport that can also send without waiting and hand out what it read in batches
    (what the node uses when a transport has it)."""

    def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
        """Send one VRRP message without waiting: False when the socket would block (nothing
        was sent); OSError as :meth:`send`."""

    async def receive_batch(self) -> list[PacketReceived | DecodeError]:
        """Wait until messages arrive; every one already queued (a bounded batch), with a
        DecodeError in place of each malformed IP header. May be empty."""

    def poll(self) -> list[PacketReceived | DecodeError]:
        """What is queued now, without waiting (a bounded batch; often empty)."""


class TransportFactory(Protocol):
    def __call__(self, interface: str, family: Family, *, multicast: bool) -> Transport: ...


@attrs.define
class TransportStatistics:
    sent: int = 0
    send_errors: int = 0
    last_send_error: str | None = None


def _environment_error(exc: OSError, what: str, interface: str) -> EnvironmentProblem:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return EnvironmentProblem(
            f"cannot {what} on {interface}: permission denied; pyvrrp needs CAP_NET_RAW and "
            "CAP_NET_ADMIN (run as root, or set AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN "
            "in the systemd unit)"
        )
    if exc.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
        return EnvironmentProblem(
            f"cannot {what} on {interface}: the address family is not available "
            "(is IPv6 disabled on this host? net.ipv6.conf.all.disable_ipv6)"
        )
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return EnvironmentProblem(f"cannot {what}: interface {interface} does not exist")
    return EnvironmentProblem(f"cannot {what} on {interface}: {exc.strerror or exc}")


class RawTransport:
    """The real thing: a raw IP protocol 112 socket bound to one interface."""

    def __init__(
        self,
        interface: str,
        family: Family,
        *,
        multicast: bool,
        raw_socket: socket.socket | None = None,
    ) -> None:
        """Open and set up the raw socket; ``raw_socket`` is an already set-up socket to use
        instead (for tests: a datagram socket pair stands in for the raw socket)."""
        self.interface = interface
        self.family = family
        self.multicast = multicast
        self.statistics = TransportStatistics()
        # Received and not yet handed out: a packet, or the DecodeError its header raised.
        self._pending: deque[PacketReceived | DecodeError] = deque()
        self._ready: dict[tuple[bytes, IPAddress, IPAddress], _Ready] = {}
        try:
            self._ifindex = socket.if_nametoindex(interface)
        except OSError:
            raise EnvironmentProblem(
                f"interface {interface} does not exist (check `ip link show {interface}`)"
            ) from None
        # The rest socket, once the instances on the link are known (set_wanted).
        self.rest: Receiver | None = None
        self._wanted: Wanted | None = None
        # Takes a backup's routine advertisements in the kernel (IPv4; pyvrrp/runtime/
        # absorb.py); None where it cannot (then every advertisement is read, as before).
        self.absorber: Absorber | None = None
        self._absorb = family is Family.IPV4
        self._said_no_watch = False  # the absorber has no timers: said once
        if raw_socket is not None:
            raw_socket.setblocking(False)
            self._raw = raw_socket
            self._sock = trio.socket.from_stdlib_socket(raw_socket)
            self._main = Receiver(raw_socket, family)
            self._owned = False  # a test's socket: no filters
            return
        # Sends go straight to the kernel (a raw datagram socket practically never blocks):
        # no trip through trio's scheduler between becoming master and the advertisement.
        # Receives go through trio, which yields between batches even during a flood.
        self._raw = self._open("open a raw VRRP socket")
        self._sock = trio.socket.from_stdlib_socket(self._raw)
        self._main = Receiver(self._raw, family)
        self._owned = True

    def _open(self, what: str, rest: list[Instruction] | None = None) -> socket.socket:
        """A raw VRRP socket set up for this interface (``rest``: with that filter from the
        start, so it never takes a packet meant for the advertisement socket)."""
        af = socket.AF_INET if self.family is Family.IPV4 else socket.AF_INET6
        try:
            raw = socket.socket(af, socket.SOCK_RAW, VRRP_PROTOCOL)
        except OSError as exc:
            raise _environment_error(exc, what, self.interface) from None
        try:
            if rest is not None:
                attach(raw, rest)
            raw.setblocking(False)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            if self.family is Family.IPV4:
                self._setup_ipv4(raw, self.multicast)
            else:
                self._setup_ipv6(raw, self.multicast)
        except OSError as exc:
            raw.close()
            raise _environment_error(exc, "set up the VRRP socket", self.interface) from None
        return raw

    def set_wanted(self, wanted: Wanted) -> None:
        """Split what arrives between the advertisement socket and the rest socket (see
        pyvrrp/runtime/sockfilter.py), as the instances on the link now want it."""
        if not self._owned or wanted == self._wanted:
            return
        try:
            rest_program = program(wanted, rest=True)
            if self.rest is None:
                rest = self._open("open a second VRRP socket", rest_program)
                self.rest = Receiver(rest, self.family, REST_BATCH)
            else:
                attach(self.rest.sock, rest_program)
            classic = program(wanted)
            if not self._attach_absorber(classic):
                attach(self._raw, classic)
        except (OSError, EnvironmentProblem) as exc:
            # Everything still arrives (on the one socket), only unsorted: a flood can then
            # crowd the peers' advertisements out of its queue.
            log.warning(
                "%s: cannot filter the VRRP socket (%s): every packet shares one queue",
                self.interface,
                exc,
            )
            return
        self._wanted = wanted

    def _attach_absorber(self, classic: list[Instruction]) -> bool:
        """Put the absorbing program (with ``classic`` inside) on the advertisement socket;
        False where it cannot be (said once, at level info)."""
        if not self._absorb:
            return False
        if not clock_is_monotonic():  # a test's clock: the kernel's times are not its own
            self._absorb = False
            return False
        try:
            if self.absorber is None:
                self.absorber = Absorber()
            self.absorber.attach(self._raw, classic)
        except Unavailable as exc:
            self._absorb = False
            if self.absorber is not None:
                self.absorber.close()
                self.absorber = None
            log.info(
                "%s: backups read every advertisement (%s; with CAP_BPF the kernel takes "
                "the routine ones)",
                self.interface,
                exc,
            )
            return False
        if self.absorber.watch_error is not None and not self._said_no_watch:
            self._said_no_watch = True
            log.info(
                "%s: backups wake once per Master_Down_Interval (%s; on Linux 5.15 or later "
                "the kernel's timer watches their masters)",
                self.interface,
                self.absorber.watch_error,
            )
        return True

    def _setup_ipv4(self, s: socket.socket, multicast: bool) -> None:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        mreqn = struct.pack("4s4si", Family.IPV4.multicast_group.packed, b"\0" * 4, self._ifindex)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        if multicast:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)

    def _setup_ipv6(self, s: socket.socket, multicast: bool) -> None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._ifindex)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, VRRP_TTL)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, VRRP_TTL)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        with contextlib.suppress(OSError):  # older kernels: harmless, we bind to the device
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
        if multicast:
            mreq = struct.pack("16sI", Family.IPV6.multicast_group.packed, self._ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        ready = self._cached(message, source, destination)
        while not self._send_ready(ready):
            await trio.lowlevel.wait_writable(self._raw)

    def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
        return self._send_ready(self._cached(message, source, destination))

    def sender(
        self, message: bytes, source: IPAddress, destination: IPAddress
    ) -> Callable[[], bool]:
        """:meth:`send_now` of one datagram, prepared once: a master sends the same bytes
        every interval, and its routine wake-up calls this (docs/design.md, "Routine
        advertisements")."""
        ready = self._ready_to_send(message, source, destination)
        return functools.partial(self._send_ready, ready)

    def _send_ready(self, ready: _Ready) -> bool:
        """Send a datagram as :meth:`_ready_to_send` made it: False if the socket would block
        (nothing sent); OSError otherwise, counted."""
        data, ancillary, address = ready
        try:
            if ancillary is None:
                self._raw.sendto(data, address)
            else:
                self._raw.sendmsg([data], ancillary, 0, address)
        except BlockingIOError:
            return False
        except OSError as exc:
            # ENETDOWN, ENOBUFS, EHOSTUNREACH...: the link may come back. Counted here per
            # socket; the instance counts it too, logs it (rate-limited) and keeps going.
            self.statistics.send_errors += 1
            self.statistics.last_send_error = exc.strerror or str(exc)
            raise
        self.statistics.sent += 1
        return True

    def _cached(self, message: bytes, source: IPAddress, destination: IPAddress) -> _Ready:
        """:meth:`_ready_to_send`, kept per (message, source, destination)."""
        key = (message, source, destination)
        ready = self._ready.get(key)
        if ready is None:
            ready = self._ready_to_send(message, source, destination)
            if len(self._ready) >= SEND_CACHE:
                self._ready.clear()
            self._ready[key] = ready
        return ready

    def _ready_to_send(self, message: bytes, source: IPAddress, destination: IPAddress) -> _Ready:
        """What ``sendto``/``sendmsg`` take for this message: built once per distinct
        advertisement (a master sends the same bytes until its priority or addresses
        change), not for every send."""
        if isinstance(destination, IPv4Address):
            assert isinstance(source, IPv4Address)
            datagram = build_ipv4(message, source=source, destination=destination)
            return datagram, None, (str(destination), 0)
        pktinfo = struct.pack("16sI", source.packed, self._ifindex)
        ancillary = [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, pktinfo)]
        return message, ancillary, (str(destination), 0, 0, self._ifindex)

    async def receive(self) -> PacketReceived:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._pending:
            # One datagram per scheduler turn, as trio's socket recv: a driver takes one
            # event from its inbox per turn, so handing out a whole batch at once would let
            # a flood fill an instance's inbox (and overflow it) instead of the socket.
            await trio.lowlevel.cancel_shielded_checkpoint()
        while not self._pending:
            await trio.lowlevel.wait_readable(self._raw)
            self._drain()
        item = self._pending.popleft()
        if isinstance(item, DecodeError):
            raise item
        return item

    async def receive_batch(self) -> list[PacketReceived | DecodeError]:
        if self._pending:  # left by receive(): hand those out first
            await trio.lowlevel.checkpoint()
            batch = list(self._pending)
            self._pending.clear()
            return batch
        return await self._main.receive_batch()

    def poll(self) -> list[PacketReceived | DecodeError]:
        return self._main.poll()

    @property
    def receiver(self) -> Receiver | None:
        """The advertisement socket's reader, for a wait that reads it itself
        (pyvrrp/runtime/quiet.py); None while ``receive`` left packets to hand out first."""
        return None if self._pending else self._main

    def _drain(self) -> None:
        """Read what the socket holds now (at most RECEIVE_BATCH datagrams) into _pending."""
        self._pending.extend(self._main.read())

    def close(self) -> None:
        self._sock.close()
        if self.absorber is not None:
            self.absorber.close()
        if self.rest is not None:
            trio.lowlevel.notify_closing(self.rest.sock)  # its loop may wait on it
            self.rest.sock.close()


class Receiver:
    """Reads one raw socket in batches: every datagram already queued, up to RECEIVE_BATCH,
    each parsed into the core's event or the DecodeError its IP header raised."""

    def __init__(self, sock: socket.socket, family: Family, batch: int = RECEIVE_BATCH) -> None:
        self.sock = sock
        self.family = family
        self.batch = batch
        self._batch_full = False  # the last read filled a batch: more may be waiting

    async def receive_batch(self) -> list[PacketReceived | DecodeError]:
        """Wait until datagrams arrive and read them (may be empty: a spurious wake-up)."""
        if self._batch_full:
            # A flood, or a burst: let the routers' timers and the rest run first.
            await trio.lowlevel.checkpoint()
        else:  # the last read emptied the socket
            await trio.lowlevel.wait_readable(self.sock)
        return self.poll()

    @property
    def full(self) -> bool:
        """The last read filled a batch: more may be waiting."""
        return self._batch_full

    def poll(self) -> list[PacketReceived | DecodeError]:
        """What the socket holds now, without waiting."""
        batch = self.read()
        self._batch_full = len(batch) == self.batch
        return batch

    def read(self) -> list[PacketReceived | DecodeError]:
        """What the socket holds now: at most a batch of datagrams."""
        batch: list[PacketReceived | DecodeError] = []
        try:
            if self.family is Family.IPV4:
                recv, parse = self.sock.recv, self._parse_ipv4
                for _ in range(self.batch):
                    batch.append(parse(recv(65535)))
            else:
                recvmsg, parse6 = self.sock.recvmsg, self._parse_ipv6
                for _ in range(self.batch):
                    batch.append(parse6(*recvmsg(65535, _IPV6_ANCILLARY)))
        except BlockingIOError:
            pass
        return batch

    @staticmethod
    def _parse_ipv4(data: bytes) -> PacketReceived | DecodeError:
        try:
            datagram = parse_ipv4(data)
        except DecodeError as exc:
            return exc
        return PacketReceived(datagram.payload, datagram.source, datagram.destination, datagram.ttl)

    @staticmethod
    def _parse_ipv6(
        data: bytes, ancdata: list[tuple[int, int, bytes]], _flags: int, address: object
    ) -> PacketReceived | DecodeError:
        hop_limit = -1
        destination: IPAddress | None = None
        for level, kind, value in ancdata:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == socket.IPV6_HOPLIMIT and len(value) >= 4:
                hop_limit = struct.unpack("i", value[:4])[0]
            elif kind == socket.IPV6_PKTINFO and len(value) >= 20:
                destination = IPv6Address(value[:16])
        if destination is None or hop_limit < 0 or not isinstance(address, tuple):
            return DecodeError(DropReason.IP_HEADER, "missing IPv6 ancillary data")
        # AF_INET6: (host, port, flowinfo, scope_id); the host may carry a %scope suffix.
        source = ip_address(str(address[0]).partition("%")[0])
        return PacketReceived(data, source, destination, hop_limit)


def open_raw_transport(interface: str, family: Family, *, multicast: bool) -> Transport:
    """The default :class:`TransportFactory`."""
    return RawTransport(interface, family, multicast=multicast)
