"""The VRRPv2 codec (RFC 3768): golden vectors, scapy as an oracle both ways, round trips,
every drop reason, the version rules of a v2, v3 or "2+3" instance, and fuzzing."""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP
from scapy.layers.vrrp import VRRP
from scapy.utils import checksum

from pyvrrp.core.packet import (
    Advertisement,
    DecodeError,
    DropReason,
    IPAddress,
    decode,
    encode,
    encode_v2,
)

EXAMPLES = settings(max_examples=150, deadline=None)

SOURCE4 = IPv4Address("192.0.2.1")
GROUP4 = IPv4Address("224.0.0.18")
SOURCE6 = IPv6Address("fe80::1")
GROUP6 = IPv6Address("ff02::12")
V2 = frozenset({2})
V3 = frozenset({3})
BOTH = frozenset({2, 3})

GOLDEN = Advertisement(
    vrid=51,
    priority=100,
    max_advert_interval=100,
    addresses=(IPv4Address("192.0.2.100"),),
    version=2,
)
# Worked by hand (RFC 1071 over the message only, RFC 3768 §5.3.8), words in hex:
# 2133 + 6401 + 0001 + c000 + 0264 + 0000 x 4 = 14799, folded 4799 + 1 = 479a, complement b865.
GOLDEN_NO_AUTH = bytes.fromhex("2133640100 01 b865 c0000264 0000000000000000".replace(" ", ""))
# The same with auth type 1 and the password "secret" NUL-padded to 8 bytes.
GOLDEN_PASS = bytes.fromhex("2133640101 01 7b19 c0000264 7365637265740000".replace(" ", ""))


def ones_complement_checksum(data: bytes) -> int:
    """RFC 1071 spelled out word by word, independently of the module's arithmetic."""
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def with_checksum(message: bytes) -> bytes:
    """``message`` with bytes 6..8 replaced by its correct (message-only) checksum."""
    zeroed = message[:6] + b"\0\0" + message[8:]
    return zeroed[:6] + struct.pack("!H", ones_complement_checksum(zeroed)) + zeroed[8:]


def v2_message(
    *,
    vrid: int = 51,
    priority: int = 100,
    addresses: tuple[str, ...] = ("192.0.2.100",),
    count: int | None = None,
    auth_type: int = 0,
    seconds: int = 1,
    auth_data: bytes = bytes(8),
    first_byte: int = 0x21,
) -> bytes:
    """A VRRPv2 message built field by field, with a correct checksum."""
    body = b"".join(IPv4Address(a).packed for a in addresses)
    header = struct.pack(
        "!BBBBBBH",
        first_byte,
        vrid,
        priority,
        len(addresses) if count is None else count,
        auth_type,
        seconds,
        0,
    )
    return with_checksum(header + body + auth_data)


def drop(
    message: bytes,
    *,
    versions: frozenset[int] = V2,
    auth_pass: bytes = b"",
    source: IPAddress = SOURCE4,
    destination: IPAddress = GROUP4,
    ttl: int = 255,
) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(
            message,
            source=source,
            destination=destination,
            ttl=ttl,
            versions=versions,
            auth_pass=auth_pass,
        )
    return caught.value


# Golden vectors


def test_golden_vector_without_authentication() -> None:
    assert ones_complement_checksum(GOLDEN_NO_AUTH) == 0  # a correct message sums to 0xFFFF
    assert encode_v2(GOLDEN) == GOLDEN_NO_AUTH
    assert decode(GOLDEN_NO_AUTH, source=SOURCE4, destination=GROUP4, ttl=255, versions=V2) == (
        GOLDEN
    )


def test_golden_vector_with_simple_text_password() -> None:
    assert ones_complement_checksum(GOLDEN_PASS) == 0
    assert encode_v2(GOLDEN, auth_pass=b"secret") == GOLDEN_PASS
    decoded = decode(
        GOLDEN_PASS,
        source=SOURCE4,
        destination=GROUP4,
        ttl=255,
        versions=V2,
        auth_pass=b"secret",
    )
    assert decoded == GOLDEN


def test_scapy_builds_both_golden_vectors() -> None:
    plain = VRRP(vrid=51, priority=100, adv=1, addrlist=["192.0.2.100"])
    assert raw(plain) == GOLDEN_NO_AUTH
    password = VRRP(
        vrid=51,
        priority=100,
        adv=1,
        authtype=1,
        auth1=int.from_bytes(b"secr", "big"),
        auth2=int.from_bytes(b"et\0\0", "big"),
        addrlist=["192.0.2.100"],
    )
    assert raw(password) == GOLDEN_PASS


def test_the_checksum_ignores_the_ip_addresses() -> None:
    # No pseudo-header (RFC 3768 §5.3.8): the same bytes verify whoever sent them to whom.
    for source, destination in ((SOURCE4, GROUP4), (IPv4Address("10.0.0.9"), SOURCE4)):
        decoded = decode(
            GOLDEN_NO_AUTH, source=source, destination=destination, ttl=255, versions=V2
        )
        assert decoded == GOLDEN


def test_encode_writes_v3_and_encode_v2_writes_v2_whatever_the_version_field_says() -> None:
    as_v3 = Advertisement(51, 100, 100, GOLDEN.addresses)
    assert encode_v2(as_v3) == GOLDEN_NO_AUTH
    assert encode(GOLDEN, source=SOURCE4, destination=GROUP4) == encode(
        as_v3, source=SOURCE4, destination=GROUP4
    )


def test_advertisement_version_defaults_to_3_and_takes_part_in_equality() -> None:
    as_v3 = Advertisement(51, 100, 100, GOLDEN.addresses)
    assert as_v3.version == 3
    assert as_v3 != GOLDEN


# scapy as the oracle, both ways

ipv4_addresses = st.ip_addresses(v=4).map(lambda a: IPv4Address(int(a)))
passwords = st.one_of(
    st.just(b""), st.binary(min_size=1, max_size=8).filter(lambda p: b"\0" not in p)
)
v2_adverts = st.builds(
    lambda vrid, priority, seconds, head, tail: Advertisement(
        vrid=vrid,
        priority=priority,
        max_advert_interval=100 * seconds,
        addresses=(head, *tail),
        version=2,
    ),
    st.integers(1, 255),
    st.integers(0, 255),
    st.integers(1, 255),
    ipv4_addresses,
    st.lists(ipv4_addresses, max_size=19),
)


def padded(password: bytes) -> bytes:
    return password + bytes(8 - len(password))


@EXAMPLES
@given(v2_adverts, passwords, ipv4_addresses, st.one_of(st.just(GROUP4), ipv4_addresses))
def test_scapy_reads_our_v2_advert_and_agrees_on_checksum(
    advert: Advertisement, password: bytes, source: IPv4Address, destination: IPv4Address
) -> None:
    ours = encode_v2(advert, auth_pass=password)
    datagram = IP(src=str(source), dst=str(destination), ttl=255, proto=112) / ours
    layer = IP(raw(datagram))[VRRP]
    assert (layer.version, layer.type) == (2, 1)
    assert layer.vrid == advert.vrid
    assert layer.priority == advert.priority
    assert layer.ipcount == len(advert.addresses)
    assert layer.authtype == (1 if password else 0)
    assert layer.adv == advert.max_advert_interval // 100
    assert [ip_address(a) for a in layer.addrlist] == list(advert.addresses)
    assert struct.pack("!II", layer.auth1, layer.auth2) == padded(password)
    assert layer.chksum == checksum(ours[:6] + b"\0\0" + ours[8:])


@EXAMPLES
@given(v2_adverts, passwords, ipv4_addresses, st.one_of(st.just(GROUP4), ipv4_addresses))
def test_we_decode_scapy_v2_advert(
    advert: Advertisement, password: bytes, source: IPv4Address, destination: IPv4Address
) -> None:
    auth1, auth2 = struct.unpack("!II", padded(password))
    layer = VRRP(
        vrid=advert.vrid,
        priority=advert.priority,
        authtype=1 if password else 0,
        adv=advert.max_advert_interval // 100,
        addrlist=[str(a) for a in advert.addresses],
        auth1=auth1,
        auth2=auth2,
    )
    message = raw(IP(src=str(source), dst=str(destination), ttl=255) / layer)[20:]
    decoded = decode(
        message,
        source=source,
        destination=destination,
        ttl=255,
        versions=V2,
        auth_pass=password,
    )
    assert decoded == advert


@EXAMPLES
@given(v2_adverts, passwords, st.sampled_from([V2, BOTH]))
def test_v2_adverts_round_trip(
    advert: Advertisement, password: bytes, versions: frozenset[int]
) -> None:
    message = encode_v2(advert, auth_pass=password)
    assert len(message) == 8 + 4 * len(advert.addresses) + 8
    decoded = decode(
        message,
        source=SOURCE4,
        destination=GROUP4,
        ttl=255,
        versions=versions,
        auth_pass=password,
    )
    assert decoded == advert


# Which versions an instance accepts


def test_migration_mode_decodes_both_versions() -> None:
    v3 = Advertisement(51, 100, 100, GOLDEN.addresses)
    v3_message = encode(v3, source=SOURCE4, destination=GROUP4)
    assert decode(v3_message, source=SOURCE4, destination=GROUP4, ttl=255, versions=BOTH) == v3
    assert (
        decode(GOLDEN_NO_AUTH, source=SOURCE4, destination=GROUP4, ttl=255, versions=BOTH) == GOLDEN
    )


def test_v2_advert_on_a_v3_instance_says_how_to_fix_either_side() -> None:
    error = drop(GOLDEN_NO_AUTH, versions=V3)
    assert error.reason is DropReason.VERSION
    assert "VRRPv2" in error.detail
    assert "`version 3`" in error.detail  # keepalived's vrrp_instance
    assert "vrrp_version 3" in error.detail
    assert "`version = 2`" in error.detail  # node.toml
    assert '"2+3"' in error.detail


def test_v2_advert_with_default_versions_is_a_version_drop() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(GOLDEN_NO_AUTH, source=SOURCE4, destination=GROUP4, ttl=255)
    assert caught.value.reason is DropReason.VERSION


def test_v3_advert_on_a_v2_instance_says_how_to_fix_either_side() -> None:
    v3_message = encode(
        Advertisement(51, 100, 100, GOLDEN.addresses), source=SOURCE4, destination=GROUP4
    )
    error = drop(v3_message, versions=V2)
    assert error.reason is DropReason.VERSION
    assert "VRRPv3" in error.detail
    assert "`version = 3`" in error.detail
    assert '"2+3"' in error.detail
    assert "`version 2`" in error.detail  # keepalived


def test_v2_over_ipv6_is_a_version_drop() -> None:
    error = drop(GOLDEN_NO_AUTH, versions=BOTH, source=SOURCE6, destination=GROUP6)
    assert error.reason is DropReason.VERSION
    assert "IPv4 only" in error.detail


def test_unknown_version_names_the_versions_spoken() -> None:
    error = drop(b"\x41" + GOLDEN_NO_AUTH[1:], versions=BOTH)
    assert error.reason is DropReason.VERSION
    assert "version 4" in error.detail
    assert "2 and 3" in error.detail


def test_v2_type_other_than_advertisement_is_a_type_drop() -> None:
    error = drop(v2_message(first_byte=0x22))
    assert error.reason is DropReason.TYPE
    assert "type 2" in error.detail


# Every drop reason of RFC 3768 §7.1


def test_ttl_other_than_255_is_dropped() -> None:
    assert drop(GOLDEN_NO_AUTH, ttl=254).reason is DropReason.TTL


@pytest.mark.parametrize("size", [0, 1, 7])
def test_shorter_than_a_header_is_too_short(size: int) -> None:
    assert drop(GOLDEN_NO_AUTH[:size]).reason is DropReason.TOO_SHORT


def test_missing_authentication_data_is_too_short() -> None:
    # The v3-sized message (8 + 4) is not enough: the 8 bytes of authentication data must be
    # there, whatever the auth type (RFC 3768 §5.1).
    message = with_checksum(GOLDEN_NO_AUTH[:12])
    error = drop(message)
    assert error.reason is DropReason.TOO_SHORT
    assert "20 needed" in error.detail


def test_addresses_fewer_than_the_count_are_too_short() -> None:
    message = v2_message(count=3)  # one address and 8 bytes: 20 of the 28 bytes
    assert drop(message).reason is DropReason.TOO_SHORT


def test_bad_checksum_is_dropped_with_expected_value() -> None:
    broken = GOLDEN_NO_AUTH[:6] + b"\xb8\x66" + GOLDEN_NO_AUTH[8:]
    error = drop(broken)
    assert error.reason is DropReason.CHECKSUM
    assert "0xb866" in error.detail
    assert "0xb865 expected" in error.detail


def test_the_checksum_covers_the_authentication_data() -> None:
    tampered = GOLDEN_PASS[:-1] + b"\x01"
    assert drop(tampered, auth_pass=b"secret").reason is DropReason.CHECKSUM


def test_count_zero_is_dropped() -> None:
    assert drop(v2_message(addresses=())).reason is DropReason.COUNT_ZERO


def test_interval_zero_is_dropped() -> None:
    assert drop(v2_message(seconds=0)).reason is DropReason.INTERVAL_ZERO


def test_auth_type_1_on_an_instance_without_password_is_dropped() -> None:
    error = drop(GOLDEN_PASS)
    assert error.reason is DropReason.AUTH_TYPE
    assert "auth type 1" in error.detail
    assert "auth_pass" in error.detail


def test_auth_type_0_on_an_instance_with_password_is_dropped() -> None:
    error = drop(GOLDEN_NO_AUTH, auth_pass=b"secret")
    assert error.reason is DropReason.AUTH_TYPE
    assert "auth type 0" in error.detail
    assert "auth_type PASS" in error.detail


@pytest.mark.parametrize("password", [b"", b"secret"])
def test_ip_ah_is_refused_whatever_our_auth(password: bytes) -> None:
    error = drop(v2_message(auth_type=2), auth_pass=password)
    assert error.reason is DropReason.AUTH_TYPE
    assert "IP AH authentication is not supported" in error.detail


def test_unknown_auth_type_is_dropped() -> None:
    error = drop(v2_message(auth_type=7))
    assert error.reason is DropReason.AUTH_TYPE
    assert "auth type 7" in error.detail


@pytest.mark.parametrize("ours", [b"secreT", b"secre", b"secret1", b"x"])
def test_wrong_password_is_dropped_without_echoing_it(ours: bytes) -> None:
    error = drop(GOLDEN_PASS, auth_pass=ours)
    assert error.reason is DropReason.AUTH_PASS
    assert "secret" not in error.detail.replace("auth_pass", "")


def test_password_of_exactly_8_bytes_needs_no_padding() -> None:
    message = v2_message(auth_type=1, auth_data=b"12345678")
    decoded = decode(
        message, source=SOURCE4, destination=GROUP4, ttl=255, versions=V2, auth_pass=b"12345678"
    )
    assert decoded == GOLDEN
    assert encode_v2(GOLDEN, auth_pass=b"12345678") == message


# What is not dropped


def test_authentication_data_is_ignored_with_auth_type_0() -> None:
    # RFC 3768 §5.3.10: set to zero on transmission, ignored on reception.
    message = v2_message(auth_data=b"leftover")
    assert decode(message, source=SOURCE4, destination=GROUP4, ttl=255, versions=V2) == GOLDEN


@pytest.mark.parametrize("seconds", [1, 3, 255])
def test_any_interval_is_decoded_the_router_compares_it(seconds: int) -> None:
    # VRRPv2 drops an interval unlike ours (DropReason.INTERVAL_MISMATCH), but only the router
    # knows ours: the codec reports the interval, in centiseconds like VRRPv3's.
    decoded = decode(
        v2_message(seconds=seconds), source=SOURCE4, destination=GROUP4, ttl=255, versions=V2
    )
    assert decoded.max_advert_interval == 100 * seconds
    assert DropReason("interval_mismatch") is DropReason.INTERVAL_MISMATCH


def test_trailing_bytes_are_accepted_in_both_checksum_forms() -> None:
    outside = GOLDEN_NO_AUTH + b"\0\0\0\0"  # padding outside the checksum (keepalived's form)
    inside = with_checksum(GOLDEN_NO_AUTH[:6] + b"\0\0" + GOLDEN_NO_AUTH[8:] + b"\x12\x34")
    for message in (outside, inside):
        assert decode(message, source=SOURCE4, destination=GROUP4, ttl=255, versions=V2) == (GOLDEN)


# Misuse of the encoder (and of decode's auth_pass) is our bug: ValueError, as encode() raises


@pytest.mark.parametrize(
    ("advert", "password", "match"),
    [
        (Advertisement(0, 100, 100, GOLDEN.addresses), b"", "VRID 0"),
        (Advertisement(51, 256, 100, GOLDEN.addresses), b"", "priority 256"),
        (Advertisement(51, 100, 150, GOLDEN.addresses), b"", "whole number of seconds"),
        (Advertisement(51, 100, 0, GOLDEN.addresses), b"", "whole number of seconds"),
        (Advertisement(51, 100, 25_600, GOLDEN.addresses), b"", "1..255"),
        (Advertisement(51, 100, 100, ()), b"", "1..255 addresses"),
        (
            Advertisement(51, 100, 100, (IPv6Address("fe80::1"),)),
            b"",
            "IPv4 addresses only",
        ),
        (GOLDEN, b"123456789", "at most 8 bytes"),
        (GOLDEN, b"ab\0c", "NUL"),
    ],
)
def test_encode_v2_refuses_what_vrrpv2_cannot_carry(
    advert: Advertisement, password: bytes, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        encode_v2(advert, auth_pass=password)


def test_encode_and_encode_v2_raise_the_same_type_for_misuse() -> None:
    bad = Advertisement(0, 100, 100, GOLDEN.addresses)
    with pytest.raises(ValueError) as v3_error:
        encode(bad, source=SOURCE4, destination=GROUP4)
    with pytest.raises(ValueError) as v2_error:
        encode_v2(bad)
    assert type(v3_error.value) is type(v2_error.value)


def test_decode_refuses_an_impossible_local_password() -> None:
    with pytest.raises(ValueError, match="at most 8 bytes"):
        decode(
            GOLDEN_PASS,
            source=SOURCE4,
            destination=GROUP4,
            ttl=255,
            versions=V2,
            auth_pass=b"123456789",
        )


# Fuzz: nothing but DecodeError, whatever the bytes

version_sets = st.sampled_from([V2, V3, BOTH])


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.binary(max_size=200), st.binary(max_size=60).map(lambda b: b"\x21" + b)),
    version_sets,
    passwords,
    st.sampled_from([(SOURCE4, GROUP4), (SOURCE6, GROUP6)]),
)
@example(b"\x21\x01\x64\x00\x00\x01\x00\x00", BOTH, b"", (SOURCE4, GROUP4))
@example(b"\x21\x01\x64\xff\x02\x01" + bytes(2), V2, b"pw", (SOURCE4, GROUP4))
def test_arbitrary_bytes_decode_or_raise_decode_error(
    message: bytes,
    versions: frozenset[int],
    password: bytes,
    addresses: tuple[IPAddress, IPAddress],
) -> None:
    source, destination = addresses
    try:
        decoded = decode(
            message,
            source=source,
            destination=destination,
            ttl=255,
            versions=versions,
            auth_pass=password,
        )
    except DecodeError:
        return
    assert decoded.version in versions
    assert decoded.version == 3 or source.version == 4


@settings(max_examples=300, deadline=None)
@given(
    v2_adverts,
    passwords,
    st.integers(0, 10_000),
    st.one_of(st.just(b""), st.binary(min_size=1, max_size=4)),
)
def test_mutated_v2_adverts_decode_or_raise_decode_error(
    advert: Advertisement, password: bytes, position: int, data: bytes
) -> None:
    message = encode_v2(advert, auth_pass=password)
    start = position % len(message)
    for mutated in (
        message[:start],
        message[:start] + data + message[start + len(data) :],
        message + data,
    ):
        with contextlib.suppress(DecodeError):
            decode(
                mutated,
                source=SOURCE4,
                destination=GROUP4,
                ttl=255,
                versions=BOTH,
                auth_pass=password,
            )


@EXAMPLES
@given(v2_adverts, passwords, st.integers(0, 10_000))
def test_single_bit_flip_is_dropped_unless_it_hits_the_count(
    advert: Advertisement, password: bytes, bit: int
) -> None:
    # A one-bit error changes one word by a power of two, which the Internet checksum always
    # detects; the count (byte 3) is excluded because it changes the length checked. v2 has no
    # reserved bits: a flip in the auth type or authentication data is caught too.
    message = encode_v2(advert, auth_pass=password)
    bit %= 8 * len(message)
    if bit // 8 == 3:
        return
    flipped = bytearray(message)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecodeError):
        decode(
            bytes(flipped),
            source=SOURCE4,
            destination=GROUP4,
            ttl=255,
            versions=V2,
            auth_pass=password,
        )
