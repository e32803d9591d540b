"""LinkAnnouncements: which frames leave which interface, in which order, with fake sockets.

The frames themselves are checked against scapy in tests/unit/test_frames.py and on the
wire in tests/netns (test_announce.py, test_daemon.py); here an Announcer stand-in records
what it is asked to send.
"""

from __future__ import annotations

import logging
from ipaddress import IPv4Address, IPv6Address, ip_interface
from typing import Any

import attrs
import pytest

from pyvrrp.runtime import announcer as announcer_module
from pyvrrp.runtime.announcer import LinkAnnouncements
from pyvrrp.runtime.frames import AnnounceError, gratuitous_arp, unsolicited_na
from pyvrrp.runtime.netlink import AddressSpec

MAC = bytes.fromhex("020000005801")
VIP = AddressSpec(ip_interface("1.2.3.58/29"), "eth0.4000")
VIP6 = AddressSpec(ip_interface("2001:db8::58/64"), "eth0.4000", nodad=True)
OTHER = AddressSpec(ip_interface("10.9.9.9/24"), "eth1")
GARP = gratuitous_arp(MAC, IPv4Address("1.2.3.58"))
NA = unsolicited_na(MAC, IPv6Address("2001:db8::58"), IPv6Address("2001:db8::58"), router=False)


@attrs.define
class Wire:
    """What the fake announcers share: the sends in order, and how interfaces behave."""

    sent: list[tuple[str, bytes]] = attrs.Factory(list)
    opened: list[str] = attrs.Factory(list)
    macs: dict[str, bytes] = attrs.Factory(dict)
    missing: set[str] = attrs.Factory(set)
    broken: set[str] = attrs.Factory(set)


class FakeAnnouncer:
    """Records sends on the wire; ``missing`` interfaces cannot be opened, ``broken`` fail."""

    def __init__(self, interface: str, wire: Wire) -> None:
        if interface in wire.missing:
            raise AnnounceError(f"cannot send announcements on {interface}: no such thing")
        self.interface = interface
        self.mac = wire.macs.get(interface, MAC)
        self.closed = False
        self._wire = wire
        wire.opened.append(interface)

    def send(self, frames: list[bytes]) -> None:
        if self.interface in self._wire.broken:
            raise AnnounceError(f"cannot send announcements on {self.interface}: broken")
        self._wire.sent.extend((self.interface, frame) for frame in frames)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Wire:
    wire = Wire()
    monkeypatch.setattr(announcer_module, "Announcer", lambda dev: FakeAnnouncer(dev, wire))
    monkeypatch.setattr(announcer_module, "ipv6_forwarding", lambda interface: False)
    return wire


async def test_the_first_round_goes_in_address_order_then_the_repeats(
    fake: Wire,
) -> None:
    announcements = LinkAnnouncements()

    await announcements.announce([VIP, VIP6, OTHER], repeat=3)

    other = gratuitous_arp(MAC, IPv4Address("10.9.9.9"))
    first_round = [("eth0.4000", GARP), ("eth0.4000", NA), ("eth1", other)]
    repeat = [("eth0.4000", GARP), ("eth0.4000", NA), ("eth1", other)]
    assert fake.sent == first_round + repeat + repeat
    assert fake.opened == ["eth0.4000", "eth1"]  # one socket per interface, kept


async def test_the_mac_comes_from_the_interfaces_socket(fake: Wire) -> None:
    fake.macs["eth0.4000"] = bytes.fromhex("0200000000aa")
    announcements = LinkAnnouncements()

    await announcements.announce([VIP], repeat=1)
    announcements.forget("eth0.4000")  # a link event: the interface may have a new MAC
    fake.macs["eth0.4000"] = bytes.fromhex("0200000000bb")
    await announcements.announce([VIP], repeat=1)

    assert [frame for _, frame in fake.sent] == [
        gratuitous_arp(bytes.fromhex("0200000000aa"), IPv4Address("1.2.3.58")),
        gratuitous_arp(bytes.fromhex("0200000000bb"), IPv4Address("1.2.3.58")),
    ]


async def test_zero_repeats_send_nothing(fake: Wire) -> None:
    await LinkAnnouncements().announce([VIP, VIP6], repeat=0)

    assert fake.sent == []
    assert fake.opened == []


async def test_a_failing_interface_is_logged_and_the_others_still_announced(
    fake: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    fake.broken.add("eth0.4000")
    fake.missing.add("eth9")
    gone = AddressSpec(ip_interface("10.8.8.8/24"), "eth9")
    announcements = LinkAnnouncements()

    await announcements.announce([VIP, VIP6, gone, OTHER], repeat=2)

    other = gratuitous_arp(MAC, IPv4Address("10.9.9.9"))
    assert fake.sent == [("eth1", other), ("eth1", other)]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "cannot announce addresses on eth0.4000: cannot send announcements on eth0.4000: broken",
        "cannot announce addresses on eth9: cannot send announcements on eth9: no such thing",
    ]
    fake.broken.clear()  # repaired: the next announcement opens it again
    await announcements.announce([VIP], repeat=1)
    assert fake.sent[-1] == ("eth0.4000", GARP)


async def test_an_interface_without_ethernet_address_is_skipped_with_one_warning(
    fake: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    fake.macs["eth0.4000"] = b""  # e.g. a tunnel
    announcements = LinkAnnouncements()

    await announcements.announce([VIP, VIP6, OTHER], repeat=2)
    await announcements.announce([VIP], repeat=2)

    assert {interface for interface, _ in fake.sent} == {"eth1"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["eth0.4000 has no Ethernet address (none): its addresses are not announced"]


async def test_close_closes_every_socket(fake: Wire) -> None:
    announcements = LinkAnnouncements()
    await announcements.announce([VIP, OTHER], repeat=1)
    opened: list[Any] = list(announcements._announcers.values())

    announcements.close()

    assert [a.closed for a in opened] == [True, True]
    assert announcements._announcers == {}
