"""scapy as an independent oracle for the VRRPv3 codec, in both directions and both families.

scapy computes the IPv4 checksum with the pseudo-header (as keepalived does) and the IPv6 one
with the RFC 8200 pseudo-header, so these tests use ChecksumMode.PSEUDO_HEADER.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.layers.vrrp import VRRPv3
from scapy.packet import Raw

from pyvrrp.core.packet import Advertisement, IPAddress, decode, encode

EXAMPLES = settings(max_examples=150, deadline=None)

IPV4_GROUP = IPv4Address("224.0.0.18")
IPV6_GROUP = IPv6Address("ff02::12")

ipv4_addresses = st.ip_addresses(v=4).map(lambda a: IPv4Address(int(a)))
ipv6_any = st.ip_addresses(v=6).map(lambda a: IPv6Address(int(a)))
ipv6_link_local = st.ip_addresses(network="fe80::/10").map(lambda a: IPv6Address(int(a)))


def adverts(
    first: st.SearchStrategy[IPAddress], rest: st.SearchStrategy[IPAddress]
) -> st.SearchStrategy[Advertisement]:
    return st.builds(
        lambda vrid, priority, interval, head, tail: Advertisement(
            vrid=vrid,
            priority=priority,
            max_advert_interval=interval,
            addresses=(head, *tail),
        ),
        st.integers(1, 255),
        st.integers(0, 255),
        st.integers(1, 4095),
        first,
        st.lists(rest, max_size=19),
    )


# A case is (advert, source, destination); destinations include unicast peers.
ipv4_cases = st.tuples(
    adverts(ipv4_addresses, ipv4_addresses),
    ipv4_addresses,
    st.one_of(st.just(IPV4_GROUP), ipv4_addresses),
)
ipv6_cases = st.tuples(
    adverts(ipv6_link_local, ipv6_any),
    ipv6_link_local,
    st.one_of(st.just(IPV6_GROUP), ipv6_link_local, ipv6_any),
)


def zero_checksum(message: bytes) -> bytes:
    return message[:6] + b"\0\0" + message[8:]


def assert_scapy_reads(layer: VRRPv3, advert: Advertisement) -> None:
    assert layer.version == 3
    assert layer.type == 1
    assert layer.vrid == advert.vrid
    assert layer.priority == advert.priority
    assert layer.ipcount == len(advert.addresses)
    assert layer.res == 0
    assert layer.adv == advert.max_advert_interval
    assert [ip_address(a) for a in layer.addrlist] == list(advert.addresses)


@EXAMPLES
@given(ipv4_cases)
def test_scapy_reads_our_ipv4_advert_and_agrees_on_checksum(
    case: tuple[Advertisement, IPv4Address, IPv4Address],
) -> None:
    advert, source, destination = case
    ours = encode(advert, source=source, destination=destination)
    datagram = IP(src=str(source), dst=str(destination), ttl=255, proto=112) / Raw(ours)
    parsed = IP(bytes(datagram))
    layer = parsed[VRRPv3]
    assert_scapy_reads(layer, advert)
    assert layer.chksum == in4_chksum(112, parsed[IP], zero_checksum(ours))


@EXAMPLES
@given(ipv6_cases)
def test_scapy_reads_our_ipv6_advert_and_agrees_on_checksum(
    case: tuple[Advertisement, IPv6Address, IPv6Address],
) -> None:
    advert, source, destination = case
    ours = encode(advert, source=source, destination=destination)
    datagram = IPv6(src=str(source), dst=str(destination), hlim=255, nh=112) / Raw(ours)
    parsed = IPv6(bytes(datagram))
    layer = parsed[VRRPv3]
    assert_scapy_reads(layer, advert)
    assert layer.chksum == in6_chksum(  # type: ignore[no-untyped-call]
        112, parsed[IPv6], zero_checksum(ours)
    )


def scapy_layer(advert: Advertisement) -> VRRPv3:
    return VRRPv3(
        vrid=advert.vrid,
        priority=advert.priority,
        adv=advert.max_advert_interval,
        addrlist=[str(a) for a in advert.addresses],
    )


@EXAMPLES
@given(ipv4_cases)
def test_we_decode_scapy_ipv4_advert(case: tuple[Advertisement, IPv4Address, IPv4Address]) -> None:
    advert, source, destination = case
    datagram = IP(src=str(source), dst=str(destination), ttl=255) / scapy_layer(advert)
    message = bytes(datagram)[20:]
    assert decode(message, source=source, destination=destination, ttl=255) == advert


@EXAMPLES
@given(ipv6_cases)
def test_we_decode_scapy_ipv6_advert(case: tuple[Advertisement, IPv6Address, IPv6Address]) -> None:
    advert, source, destination = case
    datagram = IPv6(src=str(source), dst=str(destination), hlim=255) / scapy_layer(advert)
    message = bytes(datagram)[40:]
    assert decode(message, source=source, destination=destination, ttl=255) == advert


def test_scapy_builds_the_golden_vector_we_build() -> None:
    advert = Advertisement(
        vrid=51, priority=100, max_advert_interval=100, addresses=(IPv4Address("192.0.2.100"),)
    )
    source, destination = IPv4Address("192.0.2.1"), IPV4_GROUP
    theirs = bytes(IP(src=str(source), dst=str(destination), ttl=255) / scapy_layer(advert))[20:]
    assert theirs == encode(advert, source=source, destination=destination)
