"""The socket filters on a real kernel: the kernel takes the programs, and what arrives is
split between a transport's advertisement socket and its rest socket as the filters say,
every packet read once (pyvrrp/runtime/sockfilter.py; the rule itself is checked with an
interpreter in tests/unit/test_sockfilter.py).

Two throw-away namespaces joined by a veth: the node, where a RawTransport listens on
``eth0.4000``, and the switch, which writes whole Ethernet frames with an AF_PACKET socket.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address

import attrs
import pytest

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import DecodeError, Family, IPAddress, internet_checksum
from pyvrrp.runtime.netlink import in_netns
from pyvrrp.runtime.sockfilter import Wanted
from pyvrrp.runtime.transport import RawTransport

NODE_IF = "eth0.4000"
SWITCH_IF = "vswitch0"
PEER4, STRANGER4 = IPv4Address("192.168.200.2"), IPv4Address("192.168.200.99")
PEER6, STRANGER6 = IPv6Address("fe80::2"), IPv6Address("fe80::99")


@attrs.frozen
class Segment:
    node: str
    switch: str


def ip(netns: str, *args: str) -> None:
    done = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"ip -n {netns} {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture
def segment() -> Iterator[Segment]:
    tag = uuid.uuid4().hex[:8]
    made = Segment(node=f"pyvrrp-sf-{tag}", switch=f"pyvrrp-sfs-{tag}")
    try:
        for name in (made.node, made.switch):
            subprocess.run(["ip", "netns", "add", name], check=True)
        ip(made.node, "link", "add", NODE_IF, "type", "veth", "peer", "name", SWITCH_IF)
        ip(made.node, "link", "set", SWITCH_IF, "netns", made.switch)
        ip(made.node, "addr", "add", "192.168.200.1/24", "dev", NODE_IF)
        ip(made.switch, "link", "set", SWITCH_IF, "up")
        ip(made.node, "link", "set", NODE_IF, "up")
        yield made
    finally:
        for name in (made.node, made.switch):
            subprocess.run(["ip", "netns", "delete", name], check=False)


def frame(source: IPAddress, ttl: int, message: bytes) -> bytes:
    """An Ethernet frame to the VRRP group, as a peer (or anyone) would send it."""
    if isinstance(source, IPv4Address):
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(message),
            0,
            0,
            ttl,
            112,
            0,
            source.packed,
            IPv4Address("224.0.0.18").packed,
        )
        header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
        ethernet = bytes.fromhex("01005e000012") + bytes.fromhex("020000000002") + b"\x08\x00"
        return ethernet + header + message
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(message),
        112,
        ttl,
        source.packed,
        IPv6Address("ff02::12").packed,
    )
    return (
        bytes.fromhex("333300000012")
        + bytes.fromhex("020000000002")
        + b"\x86\xdd"
        + header
        + message
    )


def advert(first: int = 0x31, vrid: int = 58) -> bytes:
    return bytes([first, vrid, 100, 1, 0, 100, 0, 0]) + b"\x01\x02\x03\x3a"


def cases(family: Family) -> dict[str, tuple[IPAddress, int, bytes, bool]]:
    """Name: (source, TTL, message, whether the advertisement socket takes it)."""
    peer, stranger = (PEER4, STRANGER4) if family is Family.IPV4 else (PEER6, STRANGER6)
    return {
        "plausible": (peer, 255, advert(), True),
        "plausible v2": (peer, 255, advert(first=0x21), True),
        "ttl 254": (peer, 254, advert(), False),
        "version 4": (peer, 255, advert(first=0x41), False),
        "type 2": (peer, 255, advert(first=0x32), False),
        "other vrid": (peer, 255, advert(vrid=59), False),
        "stranger": (stranger, 255, advert(), False),
        "one byte": (peer, 255, b"\x31", False),
        "empty": (peer, 255, b"", False),
    }


def read_all(
    receive: Callable[[], list[PacketReceived | DecodeError]], until: float
) -> list[PacketReceived]:
    got: list[PacketReceived] = []
    while time.monotonic() < until:
        items = receive()
        got.extend(i for i in items if isinstance(i, PacketReceived))
        time.sleep(0.02)
    return got


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["ipv4", "ipv6"])
async def test_the_kernel_splits_traffic_between_the_two_sockets_each_packet_once(
    segment: Segment, family: Family
) -> None:
    transport = in_netns(segment.node, lambda: RawTransport(NODE_IF, family, multicast=True))
    try:
        peer = PEER4 if family is Family.IPV4 else PEER6
        wanted = Wanted(family, frozenset({2, 3}), frozenset({58}), frozenset({peer}))
        in_netns(segment.node, lambda: transport.set_wanted(wanted))  # opens the rest socket
        assert transport.rest is not None
        rest = transport.rest

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.bind((SWITCH_IF, 0))
            return sock

        sender = in_netns(segment.switch, make)
        table = cases(family)
        time.sleep(0.2)  # IPv6: the group joined, the link up
        with sender:
            for source, ttl, message, _ in table.values():
                sender.send(frame(source, ttl, message))
        until = time.monotonic() + 1.0
        main = read_all(transport.poll, until)
        others = read_all(rest.poll, time.monotonic() + 0.1)
    finally:
        transport.close()
    taken = sorted(p.message for p in main)
    left = sorted(p.message for p in others)
    assert taken == sorted(m for _, _, m, plausible in table.values() if plausible)
    assert left == sorted(m for _, _, m, plausible in table.values() if not plausible)
    assert {p.source for p in main} == {ip_address(str(peer))}
