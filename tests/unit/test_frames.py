"""Gratuitous ARP and unsolicited NA frames, with scapy as the independent oracle.

Every field keepalived sets is checked after scapy decodes our bytes, and scapy recomputes the
ICMPv6 checksum from scratch to compare with ours.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6, in6_chksum
from scapy.layers.l2 import ARP, Ether

from pyvrrp.runtime.frames import gratuitous_arp, ipv6_forwarding, unsolicited_na

EXAMPLES = settings(max_examples=200, deadline=None)

MAC = bytes.fromhex("020000005801")
VIP4 = IPv4Address("1.2.3.58")
VIP6 = IPv6Address("2001:db8:58::1")

macs = st.binary(min_size=6, max_size=6)
ipv4s = st.ip_addresses(v=4).map(lambda a: IPv4Address(int(a)))
ipv6s = st.ip_addresses(v=6).map(lambda a: IPv6Address(int(a)))


def mac_text(mac: bytes) -> str:
    return mac.hex(":")


def test_gratuitous_arp_is_a_broadcast_request_for_our_own_address() -> None:
    frame = Ether(gratuitous_arp(MAC, VIP4))

    assert frame.dst == "ff:ff:ff:ff:ff:ff"
    assert frame.src == "02:00:00:00:58:01"
    assert frame.type == 0x0806
    arp = frame[ARP]
    assert (arp.hwtype, arp.ptype, arp.hwlen, arp.plen) == (1, 0x0800, 6, 4)
    assert arp.op == 1  # who-has: keepalived sends requests, which every host processes
    assert arp.hwsrc == "02:00:00:00:58:01"
    assert arp.psrc == "1.2.3.58"
    assert arp.hwdst == "ff:ff:ff:ff:ff:ff"
    assert arp.pdst == "1.2.3.58"


def test_gratuitous_arp_is_42_bytes_like_keepalived() -> None:
    # Ethernet header + ARP payload; the NIC pads to the 60-byte minimum.
    assert len(gratuitous_arp(MAC, VIP4)) == 42


@EXAMPLES
@given(mac=macs, address=ipv4s)
def test_gratuitous_arp_carries_any_mac_and_address(mac: bytes, address: IPv4Address) -> None:
    frame = Ether(gratuitous_arp(mac, address))

    assert frame.src == frame[ARP].hwsrc == mac_text(mac)
    assert frame[ARP].psrc == frame[ARP].pdst == str(address)
    assert bytes(frame) == gratuitous_arp(mac, address)  # nothing scapy would add or drop


def test_unsolicited_na_headers_match_rfc_4861_and_keepalived() -> None:
    frame = Ether(unsolicited_na(MAC, VIP6, VIP6, router=False))

    assert frame.dst == "33:33:00:00:00:01"
    assert frame.src == "02:00:00:00:58:01"
    assert frame.type == 0x86DD
    ipv6 = frame[IPv6]
    assert ipv6.version == 6
    assert (ipv6.tc, ipv6.fl) == (0, 0)
    assert ipv6.nh == 58
    assert ipv6.hlim == 255
    assert ipv6.plen == 32
    assert ipv6.src == "2001:db8:58::1"
    assert ipv6.dst == "ff02::1"
    na = frame[ICMPv6ND_NA]
    assert (na.type, na.code) == (136, 0)
    assert (na.R, na.S, na.O) == (0, 0, 1)
    assert na.res == 0
    assert na.tgt == "2001:db8:58::1"
    option = frame[ICMPv6NDOptDstLLAddr]
    assert (option.type, option.len) == (2, 1)
    assert option.lladdr == "02:00:00:00:58:01"
    assert len(frame) == 14 + 40 + 32


def test_unsolicited_na_router_flag_follows_the_argument() -> None:
    assert Ether(unsolicited_na(MAC, VIP6, VIP6, router=True))[ICMPv6ND_NA].R == 1
    assert Ether(unsolicited_na(MAC, VIP6, VIP6, router=False))[ICMPv6ND_NA].R == 0


@EXAMPLES
@given(mac=macs, address=ipv6s, source=ipv6s, router=st.booleans())
def test_unsolicited_na_checksum_equals_scapys(
    mac: bytes, address: IPv6Address, source: IPv6Address, router: bool
) -> None:
    raw = unsolicited_na(mac, address, source, router=router)
    frame = Ether(raw)
    ours = frame[ICMPv6ND_NA].cksum

    icmp = bytes(frame[ICMPv6ND_NA])
    zeroed = icmp[:2] + b"\x00\x00" + icmp[4:]
    assert in6_chksum(58, frame[IPv6], zeroed) == ours  # type: ignore[no-untyped-call]
    # And scapy rebuilding the packet from its fields lands on the same bytes.
    del frame[ICMPv6ND_NA].cksum
    del frame[IPv6].plen
    assert bytes(frame) == raw
    # Compared as addresses: scapy writes ::ffff:0:0 as ::ffff:0.0.0.0.
    assert IPv6Address(frame[IPv6].src) == source
    assert IPv6Address(frame[ICMPv6ND_NA].tgt) == address
    assert frame[ICMPv6NDOptDstLLAddr].lladdr == mac_text(mac)
    assert bool(frame[ICMPv6ND_NA].R) is router


def test_builders_reject_a_mac_that_is_not_6_bytes() -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        gratuitous_arp(b"\x01\x02", VIP4)
    with pytest.raises(ValueError, match="6 bytes"):
        unsolicited_na(bytes(8), VIP6, VIP6, router=False)


def test_frames_are_built_once_then_served_from_the_cache() -> None:
    # A takeover announces the same addresses every time: no building on the hot path.
    # (How fast the first frame leaves is measured by bench/announce.py.)
    first = [gratuitous_arp(MAC, VIP4), unsolicited_na(MAC, VIP6, VIP6, router=False)]
    again = [gratuitous_arp(MAC, VIP4), unsolicited_na(MAC, VIP6, VIP6, router=False)]

    assert all(a is b for a, b in zip(first, again, strict=True))
    assert unsolicited_na(MAC, VIP6, VIP6, router=True) != first[1]  # the R flag is in the key


def test_ipv6_forwarding_reads_the_interface_sysctl(tmp_path: Path) -> None:
    (tmp_path / "eth0.4000").mkdir()
    (tmp_path / "eth0.4000" / "forwarding").write_text("1\n")
    (tmp_path / "eth1").mkdir()
    (tmp_path / "eth1" / "forwarding").write_text("0\n")

    assert ipv6_forwarding("eth0.4000", proc=tmp_path) is True
    assert ipv6_forwarding("eth1", proc=tmp_path) is False
    assert ipv6_forwarding("missing0", proc=tmp_path) is False
    (tmp_path / "empty0").mkdir()
    (tmp_path / "empty0" / "forwarding").write_text("")
    assert ipv6_forwarding("empty0", proc=tmp_path) is False
