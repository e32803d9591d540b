"""Announcer on a real kernel: frames leave one namespace and arrive, byte for byte, in another.

Two throw-away namespaces joined by a veth: ``eth0.4000`` in the node, ``vswitch0`` in the
switch, where an AF_PACKET socket records every frame. The frames come from the pure
builders, whose fields tests/unit/test_frames.py checks with scapy.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import attrs
import pytest

from pyvrrp.runtime.frames import AnnounceError, Announcer, gratuitous_arp, unsolicited_na
from pyvrrp.runtime.netlink import in_netns

ETH_P_ALL = 0x0003
NODE_IF = "eth0.4000"
SWITCH_IF = "vswitch0"
VIP4 = IPv4Address("1.2.3.58")
VIP6 = IPv6Address("2001:db8:58::1")


@attrs.frozen
class Segment:
    node: str
    switch: str


def ip(netns: str, *args: str) -> str:
    done = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"ip -n {netns} {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def connect(segment: Segment) -> None:
    peer = ["peer", "name", SWITCH_IF, "netns", segment.switch]
    ip(segment.node, "link", "add", NODE_IF, "type", "veth", *peer)
    ip(segment.switch, "link", "set", SWITCH_IF, "up")
    ip(segment.node, "link", "set", NODE_IF, "up")


@pytest.fixture
def segment() -> Iterator[Segment]:
    tag = uuid.uuid4().hex[:8]
    made = Segment(node=f"pyvrrp-an-{tag}", switch=f"pyvrrp-sw-{tag}")
    try:
        for name in (made.node, made.switch):
            subprocess.run(["ip", "netns", "add", name], check=True)
        connect(made)
        yield made
    finally:
        for name in (made.node, made.switch):
            subprocess.run(["ip", "netns", "delete", name], check=False)


def mac_of(netns: str, interface: str) -> bytes:
    (link,) = json.loads(ip(netns, "-j", "link", "show", "dev", interface))
    return bytes.fromhex(link["address"].replace(":", ""))


def ifindex(netns: str, interface: str) -> int:
    (link,) = json.loads(ip(netns, "-j", "link", "show", "dev", interface))
    return int(link["ifindex"])


def recorder(netns: str, interface: str) -> socket.socket:
    """A socket that sees every frame arriving on ``interface`` in ``netns``."""

    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((interface, 0))
        return sock

    return in_netns(netns, make)


def receive_all(sock: socket.socket, wanted: list[bytes], timeout: float = 5.0) -> list[bytes]:
    """Frames received until every wanted frame was seen (others are the kernel's own)."""
    missing = list(wanted)
    received: list[bytes] = []
    deadline = time.monotonic() + timeout
    while missing:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{len(missing)} frame(s) never arrived; got {received}")
        sock.settimeout(remaining)
        try:
            frame = sock.recv(65535)
        except TimeoutError:
            continue
        received.append(frame)
        if frame in missing:
            missing.remove(frame)
    return received


def test_garp_and_na_arrive_intact_on_the_other_side(segment: Segment) -> None:
    mac = mac_of(segment.node, NODE_IF)
    with (
        recorder(segment.switch, SWITCH_IF) as switch,
        Announcer(NODE_IF, netns=segment.node) as node,
    ):
        assert node.mac == mac  # read from the bound socket: no netlink query
        frames = [gratuitous_arp(mac, VIP4), unsolicited_na(mac, VIP6, VIP6, router=False)]
        node.send(frames)

        receive_all(switch, frames)
        assert node.statistics().sent == 2
        assert node.statistics().dropped == 0


def test_a_burst_arrives_in_order(segment: Segment) -> None:
    mac = mac_of(segment.node, NODE_IF)
    burst = [gratuitous_arp(mac, IPv4Address(int(VIP4) + i)) for i in range(5)]
    with (
        recorder(segment.switch, SWITCH_IF) as switch,
        Announcer(NODE_IF, netns=segment.node) as node,
    ):
        node.send(burst)

        arrived = [f for f in receive_all(switch, burst) if f in burst]
        assert arrived == burst


def test_the_first_frame_leaves_within_a_millisecond(segment: Segment) -> None:
    mac = mac_of(segment.node, NODE_IF)
    frame = gratuitous_arp(mac, VIP4)
    durations = []
    with Announcer(NODE_IF, netns=segment.node) as node:
        for _ in range(50):
            start = time.perf_counter()
            node.send([frame])
            durations.append(time.perf_counter() - start)

    # The median resists a busy machine's scheduling hiccups; the send itself is ~10 us.
    assert statistics.median(durations) < 1e-3


def test_a_missing_interface_is_named(segment: Segment) -> None:
    with pytest.raises(AnnounceError, match="nope0: the interface does not exist"):
        Announcer("nope0", netns=segment.node)


def test_a_down_interface_drops_and_counts_without_raising(segment: Segment) -> None:
    mac = mac_of(segment.node, NODE_IF)
    with Announcer(NODE_IF, netns=segment.node) as node:
        ip(segment.node, "link", "set", NODE_IF, "down")

        node.send([gratuitous_arp(mac, VIP4), gratuitous_arp(mac, VIP4)])

        assert node.statistics().dropped == 2
        assert node.statistics().sent == 0


def test_a_recreated_interface_is_found_again(segment: Segment) -> None:
    with Announcer(NODE_IF, netns=segment.node) as node:
        old_index = ifindex(segment.node, NODE_IF)
        assert node.mac == mac_of(segment.node, NODE_IF)
        ip(segment.node, "link", "del", NODE_IF)  # takes vswitch0 with it
        connect(segment)
        assert ifindex(segment.node, NODE_IF) != old_index
        mac = mac_of(segment.node, NODE_IF)
        assert mac != node.mac  # veth MACs are random
        frame = gratuitous_arp(mac, VIP4)

        with recorder(segment.switch, SWITCH_IF) as switch:
            node.send([frame])
            receive_all(switch, [frame])
        assert node.statistics().sent == 1
        assert node.mac == mac  # the new interface's, learned when it bound again


def test_a_deleted_interface_is_an_error_on_send(segment: Segment) -> None:
    mac = mac_of(segment.node, NODE_IF)
    with Announcer(NODE_IF, netns=segment.node) as node:
        ip(segment.node, "link", "del", NODE_IF)

        with pytest.raises(AnnounceError, match=f"{NODE_IF}: the interface does not exist"):
            node.send([gratuitous_arp(mac, VIP4)])
