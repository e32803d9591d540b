"""Gratuitous ARP and unsolicited neighbour advertisements (RFC 9568 §6.4.2, §8.1.2, §8.2.2).

A new master tells the segment that the virtual addresses now live at its MAC address. The
frames are built here by hand, exactly as keepalived builds them (vrrp_arp.c, vrrp_ndisc.c),
and sent whole on an AF_PACKET socket so nothing in the kernel rewrites them:

- gratuitous ARP: an ARP *request* (opcode 1), Ethernet broadcast, sender = target = the
  address, sender MAC = ours, target MAC ff:ff:ff:ff:ff:ff. keepalived sends a request rather
  than a reply because every host processes a broadcast request, while some ignore
  unsolicited replies.
- unsolicited NA (RFC 4861 §7.2.6): to ff02::1 (Ethernet 33:33:00:00:00:01), hop limit 255,
  Override set, Solicited clear, Router set when the host forwards IPv6, the address as
  target and our MAC in a Target Link-Layer Address option. keepalived uses the advertised
  address itself as the IPv6 source (it is assigned to the interface by the time the
  announcement leaves, and NODAD makes it usable at once), so callers pass ``source=address``
  to match it; the parameter exists for a link-local source should a peer insist on one.

Building is pure and cached per (MAC, address), so a burst costs one ``send`` per frame.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Final

import attrs

__all__ = [
    "ALL_NODES",
    "AnnounceError",
    "Announcer",
    "AnnouncerStatistics",
    "gratuitous_arp",
    "ipv6_forwarding",
    "unsolicited_na",
]

ETH_P_ARP: Final = 0x0806
ETH_P_IP: Final = 0x0800
ETH_P_IPV6: Final = 0x86DD
ARPHRD_ETHER: Final = 1
ARPOP_REQUEST: Final = 1
IPPROTO_ICMPV6: Final = 58
ND_NEIGHBOR_ADVERT: Final = 136
ND_OPT_TARGET_LINKADDR: Final = 2
NA_FLAG_ROUTER: Final = 0x80000000
NA_FLAG_OVERRIDE: Final = 0x20000000
NDISC_HOP_LIMIT: Final = 255  # RFC 4861 §7.1.2: receivers drop anything else

BROADCAST_MAC: Final = b"\xff" * 6
ALL_NODES: Final = IPv6Address("ff02::1")
ALL_NODES_MAC: Final = b"\x33\x33\x00\x00\x00\x01"  # RFC 2464 §7

# Retrying would only delay the burst; these mean "not now", so the frame is dropped.
_TRANSIENT: Final = frozenset({errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN, errno.ENOMEM})
_GONE: Final = frozenset({errno.ENXIO, errno.ENODEV})


def _check_mac(mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError(f"an Ethernet MAC address has 6 bytes, not {len(mac)}: {mac.hex(':')}")


@functools.lru_cache(maxsize=4096)
def gratuitous_arp(mac: bytes, address: IPv4Address) -> bytes:
    """The Ethernet frame of a gratuitous ARP for ``address`` at ``mac``, as keepalived's."""
    _check_mac(mac)
    ethernet = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST)
    return ethernet + arp + mac + address.packed + BROADCAST_MAC + address.packed


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@functools.lru_cache(maxsize=4096)
def unsolicited_na(mac: bytes, address: IPv6Address, source: IPv6Address, *, router: bool) -> bytes:
    """The Ethernet frame of an unsolicited neighbour advertisement for ``address``.

    ``router`` is the R flag: set it when the host forwards IPv6 (:func:`ipv6_forwarding`),
    as keepalived does. ``source`` is the IPv6 source; keepalived uses ``address`` itself.
    """
    _check_mac(mac)
    flags = NA_FLAG_OVERRIDE | (NA_FLAG_ROUTER if router else 0)
    option = struct.pack("!BB", ND_OPT_TARGET_LINKADDR, 1) + mac  # length in units of 8 bytes
    body = address.packed + option
    length = 8 + len(body)
    pseudo_header = source.packed + ALL_NODES.packed + struct.pack("!I3xB", length, IPPROTO_ICMPV6)
    message = struct.pack("!BBHI", ND_NEIGHBOR_ADVERT, 0, 0, flags) + body
    checksum = _checksum(pseudo_header + message)
    icmp = message[:2] + struct.pack("!H", checksum) + message[4:]
    ipv6 = (
        struct.pack("!IHBB", 6 << 28, length, IPPROTO_ICMPV6, NDISC_HOP_LIMIT)
        + source.packed
        + ALL_NODES.packed
    )
    return ALL_NODES_MAC + mac + struct.pack("!H", ETH_P_IPV6) + ipv6 + icmp


def ipv6_forwarding(interface: str, *, proc: Path = Path("/proc/sys/net/ipv6/conf")) -> bool:
    """Whether the host forwards IPv6 on ``interface`` (the NA's Router flag, as keepalived).

    Reads this process's namespace; False if the interface or IPv6 is missing.
    """
    # os.open/os.read: a new master reads this between its first GARP and its first NA,
    # and a text-mode open costs several times more in a process idle for a second.
    try:
        fd = os.open(os.path.join(proc, interface, "forwarding"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return os.read(fd, 16).strip() not in (b"0", b"")
    except OSError:
        return False
    finally:
        os.close(fd)


class AnnounceError(OSError):
    """Announcements cannot be sent: the message says why and what to do.

    An OSError: it is the environment's fault (a missing interface or capability)."""


@attrs.frozen
class AnnouncerStatistics:
    """Frames sent and frames dropped on a transient error (full buffer, interface down)."""

    sent: int
    dropped: int


class Announcer:
    """Sends prepared frames on one interface, never blocking (see :meth:`send`).

    The AF_PACKET socket is bound to the interface by name with protocol 0, so it receives
    nothing; binding also tells the interface's MAC (:attr:`mac`). If the interface is deleted
    and created again (a network restart), the next :meth:`send` binds to the new one.
    ``netns`` creates the socket in that namespace.
    """

    def __init__(self, interface: str, *, netns: str | None = None) -> None:
        self.interface = interface
        self._sent = 0
        self._dropped = 0
        try:
            if netns is None:
                self._socket = self._open()
            else:
                from pyvrrp.runtime.netlink.netns import in_netns  # only for the lab and tests

                self._socket = in_netns(netns, self._open)
        except PermissionError:
            raise AnnounceError(
                f"cannot open a packet socket for announcements on {interface}: permission "
                f"denied; run as root or grant CAP_NET_RAW"
            ) from None
        try:
            self._bind()
        except BaseException:
            self._socket.close()
            raise

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.setblocking(False)
        return sock

    @property
    def mac(self) -> bytes:
        """The interface's hardware address as of the last bind (empty if it has none)."""
        return self._mac

    def _bind(self) -> None:
        try:
            # Python resolves the name in the socket's own namespace (SIOCGIFINDEX).
            self._socket.bind((self.interface, 0))
            # (name, protocol, packet type, hardware type, the interface's address)
            self._mac = bytes(self._socket.getsockname()[4])
        except OSError as exc:
            if exc.errno in _GONE:
                raise AnnounceError(
                    f"cannot send announcements on {self.interface}: the interface does not "
                    f"exist; check the interface name in the configuration"
                ) from None
            raise AnnounceError(
                f"cannot send announcements on {self.interface}: {exc.strerror}"
            ) from None

    def send(self, frames: Sequence[bytes]) -> None:
        """Send ``frames`` in order, now. Frames the kernel cannot take at once (buffer full,
        interface down) are dropped and counted; a missing interface raises AnnounceError."""
        for position, frame in enumerate(frames):
            try:
                self._send_one(frame)
            except AnnounceError:
                raise
            except OSError as exc:
                if exc.errno not in _TRANSIENT:
                    raise AnnounceError(
                        f"cannot send announcements on {self.interface}: {exc.strerror}"
                    ) from None
                # The rest would fail the same way: count them all, keep the call cheap.
                self._dropped += len(frames) - position
                return
            self._sent += 1

    def _send_one(self, frame: bytes) -> None:
        try:
            self._socket.send(frame)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise
            # The interface we were bound to is gone; a new one may have its name.
            self._bind()
            self._socket.send(frame)

    def statistics(self) -> AnnouncerStatistics:
        """Counters since the announcer was created."""
        return AnnouncerStatistics(sent=self._sent, dropped=self._dropped)

    def close(self) -> None:
        """Close the socket. Idempotent."""
        self._socket.close()

    def __enter__(self) -> Announcer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
