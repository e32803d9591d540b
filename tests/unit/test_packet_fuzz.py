"""Fuzz-style properties of the codec: garbage decodes or raises DecodeError, never anything else;
valid advertisements round-trip in both families and both IPv4 checksum conventions."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pyvrrp.core.packet import (
    Advertisement,
    ChecksumMode,
    DecodeError,
    IPAddress,
    build_ipv4,
    decode,
    encode,
    parse_ipv4,
    peek_vrid,
)

EXAMPLES = settings(max_examples=300, deadline=None)

IPV4_SOURCE = IPv4Address("192.0.2.1")
IPV4_GROUP = IPv4Address("224.0.0.18")
IPV6_SOURCE = IPv6Address("fe80::1")
IPV6_GROUP = IPv6Address("ff02::12")

ipv4_addresses = st.ip_addresses(v=4).map(lambda a: IPv4Address(int(a)))
ipv6_any = st.ip_addresses(v=6).map(lambda a: IPv6Address(int(a)))
ipv6_link_local = st.ip_addresses(network="fe80::/10").map(lambda a: IPv6Address(int(a)))
checksum_modes = st.sampled_from(ChecksumMode)


def adverts(
    first: st.SearchStrategy[IPAddress], rest: st.SearchStrategy[IPAddress], max_rest: int
) -> st.SearchStrategy[Advertisement]:
    return st.builds(
        lambda vrid, priority, interval, head, tail: Advertisement(
            vrid=vrid, priority=priority, max_advert_interval=interval, addresses=(head, *tail)
        ),
        st.integers(1, 255),
        st.integers(0, 255),
        st.integers(1, 4095),
        first,
        st.lists(rest, max_size=max_rest),
    )


ipv4_adverts = adverts(ipv4_addresses, ipv4_addresses, max_rest=254)
ipv6_adverts = adverts(ipv6_link_local, ipv6_any, max_rest=30)


def decodes_or_drops(
    message: bytes,
    *,
    source: IPAddress,
    destination: IPAddress,
    ttl: int = 255,
    checksum_mode: ChecksumMode = ChecksumMode.PSEUDO_HEADER,
) -> Advertisement | None:
    """The one invariant: an Advertisement or a DecodeError; any other exception fails."""
    try:
        return decode(
            message, source=source, destination=destination, ttl=ttl, checksum_mode=checksum_mode
        )
    except DecodeError:
        return None


@EXAMPLES
@given(st.binary(max_size=600), st.sampled_from([4, 6]), checksum_modes)
@example(b"", 4, ChecksumMode.PSEUDO_HEADER)
@example(b"\x31\x01\x64\xff\x00\x64\x00\x00", 6, ChecksumMode.PSEUDO_HEADER)
def test_arbitrary_bytes_decode_or_raise_decode_error(
    message: bytes, version: int, checksum_mode: ChecksumMode
) -> None:
    source, destination = (IPV4_SOURCE, IPV4_GROUP) if version == 4 else (IPV6_SOURCE, IPV6_GROUP)
    decoded = decodes_or_drops(
        message, source=source, destination=destination, checksum_mode=checksum_mode
    )
    if decoded is not None:
        assert decoded.family == version
    vrid = peek_vrid(message)
    assert vrid == (message[1] if len(message) >= 2 else None)


@EXAMPLES
@given(st.binary(max_size=100))
@example(b"\x45" + bytes(19))
@example(b"\x4f" + bytes(59))
def test_arbitrary_bytes_parse_ipv4_or_raise_decode_error(datagram: bytes) -> None:
    try:
        parsed = parse_ipv4(datagram)
    except DecodeError:
        return
    assert len(parsed.payload) <= len(datagram) - 20


def flip_bit(message: bytes, bit: int) -> bytes:
    bit %= 8 * len(message)
    mutated = bytearray(message)
    mutated[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutated)


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.just(b"")),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(b"")),
    st.tuples(st.just("extend"), st.just(0), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("overwrite"), st.integers(0, 10_000), st.binary(min_size=1, max_size=4)),
)


def mutate(message: bytes, mutation: tuple[str, int, bytes]) -> bytes:
    kind, position, data = mutation
    if kind == "flip":
        return flip_bit(message, position)
    if kind == "truncate":
        return message[: position % len(message)]
    if kind == "extend":
        return message + data
    start = position % len(message)
    return message[:start] + data + message[start + len(data) :]


@EXAMPLES
@given(
    st.one_of(
        st.tuples(ipv4_adverts, st.just(IPV4_SOURCE), st.just(IPV4_GROUP)),
        st.tuples(ipv6_adverts, st.just(IPV6_SOURCE), st.just(IPV6_GROUP)),
    ),
    st.lists(mutations, min_size=1, max_size=3),
    checksum_modes,
)
def test_mutated_adverts_decode_or_raise_decode_error(
    case: tuple[Advertisement, IPAddress, IPAddress],
    steps: list[tuple[str, int, bytes]],
    checksum_mode: ChecksumMode,
) -> None:
    advert, source, destination = case
    message = encode(advert, source=source, destination=destination, checksum_mode=checksum_mode)
    for step in steps:
        message = mutate(message, step) if message else message
    decodes_or_drops(message, source=source, destination=destination, checksum_mode=checksum_mode)
    datagram = mutate(build_ipv4(message, source=IPV4_SOURCE, destination=IPV4_GROUP), steps[0])
    with contextlib.suppress(DecodeError):
        parse_ipv4(datagram)


@EXAMPLES
@given(ipv4_adverts, checksum_modes, st.integers(0, 10_000))
def test_single_bit_flip_is_dropped_unless_it_hits_reserved_bits_or_count(
    advert: Advertisement, checksum_mode: ChecksumMode, bit: int
) -> None:
    # A one-bit error changes one word by a power of two, which the Internet checksum always
    # detects. Excluded: the reserved bits (byte 4, high nibble), which a receiver ignores, and
    # the count (byte 3), which changes how many bytes the checksum covers.
    message = encode(
        advert, source=IPV4_SOURCE, destination=IPV4_GROUP, checksum_mode=checksum_mode
    )
    bit %= 8 * len(message)
    byte = bit // 8
    if byte == 3 or (byte == 4 and bit % 8 >= 4):
        return
    decoded = decodes_or_drops(
        flip_bit(message, bit),
        source=IPV4_SOURCE,
        destination=IPV4_GROUP,
        checksum_mode=checksum_mode,
    )
    assert decoded is None


@EXAMPLES
@given(
    ipv4_adverts,
    ipv4_addresses,
    st.one_of(st.just(IPV4_GROUP), ipv4_addresses),
    checksum_modes,
)
def test_ipv4_adverts_round_trip(
    advert: Advertisement,
    source: IPv4Address,
    destination: IPv4Address,
    checksum_mode: ChecksumMode,
) -> None:
    message = encode(advert, source=source, destination=destination, checksum_mode=checksum_mode)
    decoded = decode(
        message, source=source, destination=destination, ttl=255, checksum_mode=checksum_mode
    )
    assert decoded == advert


@EXAMPLES
@given(
    ipv6_adverts,
    ipv6_link_local,
    st.one_of(st.just(IPV6_GROUP), ipv6_link_local),
    checksum_modes,
)
def test_ipv6_adverts_round_trip(
    advert: Advertisement,
    source: IPv6Address,
    destination: IPv6Address,
    checksum_mode: ChecksumMode,
) -> None:
    message = encode(advert, source=source, destination=destination, checksum_mode=checksum_mode)
    decoded = decode(
        message, source=source, destination=destination, ttl=255, checksum_mode=checksum_mode
    )
    assert decoded == advert


@EXAMPLES
@given(ipv4_adverts, st.integers(0, 255))
def test_ipv4_datagrams_round_trip_through_build_and_parse(advert: Advertisement, ttl: int) -> None:
    message = encode(advert, source=IPV4_SOURCE, destination=IPV4_GROUP)
    parsed = parse_ipv4(build_ipv4(message, source=IPV4_SOURCE, destination=IPV4_GROUP, ttl=ttl))
    assert (parsed.source, parsed.destination, parsed.ttl) == (IPV4_SOURCE, IPV4_GROUP, ttl)
    assert parsed.payload == message
