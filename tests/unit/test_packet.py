"""The VRRPv3 codec: golden vectors, every drop reason, and what must not be dropped."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from pyvrrp.core import packet
from pyvrrp.core.packet import (
    Advertisement,
    ChecksumMode,
    DecodeError,
    DropReason,
    Family,
    IPAddress,
    IPv4Datagram,
    build_ipv4,
    decode,
    encode,
    internet_checksum,
    parse_ipv4,
    peek_vrid,
)

SOURCE4 = IPv4Address("192.0.2.1")
GROUP4 = IPv4Address("224.0.0.18")
SOURCE6 = IPv6Address("fe80::1")
GROUP6 = IPv6Address("ff02::12")

GOLDEN = Advertisement(
    vrid=51, priority=100, max_advert_interval=100, addresses=(IPv4Address("192.0.2.100"),)
)
GOLDEN_PSEUDO_HEADER = bytes.fromhex("3133640100640572c0000264")
GOLDEN_MESSAGE_ONLY_CHECKSUM = 0xA802

ADVERT6 = Advertisement(
    vrid=7,
    priority=200,
    max_advert_interval=50,
    addresses=(IPv6Address("fe80::7"), IPv6Address("2001:db8::7")),
)


def pseudo_header(source: IPAddress, destination: IPAddress, length: int) -> bytes:
    """The pseudo-header spelled out field by field (independently of the module's arithmetic)."""
    if source.version == 4:
        return source.packed + destination.packed + struct.pack("!BBH", 0, 112, length)
    return source.packed + destination.packed + struct.pack("!I3xB", length, 112)


def craft(
    fields: bytes,
    *,
    source: IPAddress = SOURCE4,
    destination: IPAddress = GROUP4,
    pseudo: bool = True,
    checksummed: int | None = None,
) -> bytes:
    """A message with arbitrary contents and a correct checksum in bytes 6..8.

    ``fields`` is the whole message (its checksum bytes are overwritten); ``checksummed`` is how
    many leading bytes the checksum covers (all by default).
    """
    covered = len(fields) if checksummed is None else checksummed
    zeroed = fields[:6] + b"\0\0" + fields[8:]
    prefix = pseudo_header(source, destination, covered) if pseudo else b""
    checksum = internet_checksum(prefix + zeroed[:covered])
    return zeroed[:6] + checksum.to_bytes(2, "big") + zeroed[8:]


def decode4(message: bytes, **kwargs: object) -> Advertisement:
    options: dict[str, object] = {"source": SOURCE4, "destination": GROUP4, "ttl": 255}
    options.update(kwargs)
    return decode(message, **options)  # type: ignore[arg-type]


def drop_reason(message: bytes, **kwargs: object) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode4(message, **kwargs)
    return caught.value


def test_internet_checksum_matches_rfc_1071_example() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 0xddf2, so the checksum is 0x220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_internet_checksum_pads_odd_length_with_a_trailing_zero_byte() -> None:
    assert internet_checksum(b"\x12\x34\x56") == internet_checksum(b"\x12\x34\x56\x00")
    assert internet_checksum(b"\x12\x34\x56") != internet_checksum(b"\x00\x12\x34\x56")


def test_internet_checksum_of_zero_words_is_ones_complement_of_zero() -> None:
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\0\0\0\0") == 0xFFFF


def test_internet_checksum_of_words_summing_to_ffff_is_zero() -> None:
    assert internet_checksum(b"\xff\xff") == 0
    assert internet_checksum(b"\xf0\x00\x0f\xff") == 0


def test_internet_checksum_verifies_to_zero_when_inserted() -> None:
    data = bytes(range(1, 40))
    checksum = internet_checksum(data)
    assert internet_checksum(data + b"\0" + checksum.to_bytes(2, "big")) == 0


def test_golden_vector_encodes_with_ipv4_pseudo_header() -> None:
    assert encode(GOLDEN, source=SOURCE4, destination=GROUP4) == GOLDEN_PSEUDO_HEADER


def test_golden_vector_encodes_message_only_checksum() -> None:
    message = encode(
        GOLDEN, source=SOURCE4, destination=GROUP4, checksum_mode=ChecksumMode.MESSAGE_ONLY
    )
    assert message[6:8] == GOLDEN_MESSAGE_ONLY_CHECKSUM.to_bytes(2, "big")
    assert message[:6] + message[8:] == GOLDEN_PSEUDO_HEADER[:6] + GOLDEN_PSEUDO_HEADER[8:]


def test_golden_vector_decodes_with_ipv4_pseudo_header() -> None:
    assert decode4(GOLDEN_PSEUDO_HEADER) == GOLDEN


def test_golden_vector_decodes_message_only_checksum() -> None:
    message = GOLDEN_PSEUDO_HEADER[:6] + b"\xa8\x02" + GOLDEN_PSEUDO_HEADER[8:]
    assert decode4(message, checksum_mode=ChecksumMode.MESSAGE_ONLY) == GOLDEN


def test_ipv6_round_trips_with_rfc_8200_pseudo_header() -> None:
    message = encode(ADVERT6, source=SOURCE6, destination=GROUP6)
    assert internet_checksum(pseudo_header(SOURCE6, GROUP6, len(message)) + message) == 0
    assert decode(message, source=SOURCE6, destination=GROUP6, ttl=255) == ADVERT6


def test_ipv6_checksum_includes_pseudo_header_even_in_message_only_mode() -> None:
    message = encode(
        ADVERT6, source=SOURCE6, destination=GROUP6, checksum_mode=ChecksumMode.MESSAGE_ONLY
    )
    assert message == encode(ADVERT6, source=SOURCE6, destination=GROUP6)
    decoded = decode(
        message,
        source=SOURCE6,
        destination=GROUP6,
        ttl=255,
        checksum_mode=ChecksumMode.MESSAGE_ONLY,
    )
    assert decoded == ADVERT6


def test_encode_writes_version_3_type_1_and_zero_reserved_bits() -> None:
    advert = Advertisement(vrid=1, priority=0, max_advert_interval=4095, addresses=GOLDEN.addresses)
    message = encode(advert, source=SOURCE4, destination=GROUP4)
    assert message[0] == 0x31
    assert message[4:6] == b"\x0f\xff"


def test_unicast_checksum_covers_the_actual_destination() -> None:
    peer = IPv4Address("192.0.2.2")
    message = encode(GOLDEN, source=SOURCE4, destination=peer)
    assert internet_checksum(pseudo_header(SOURCE4, peer, len(message)) + message) == 0
    assert decode4(message, destination=peer) == GOLDEN
    assert drop_reason(message, destination=GROUP4).reason is DropReason.CHECKSUM


def test_ttl_other_than_255_is_dropped() -> None:
    error = drop_reason(GOLDEN_PSEUDO_HEADER, ttl=254)
    assert error.reason is DropReason.TTL
    assert "254" in error.detail


def test_hop_limit_other_than_255_is_dropped_for_ipv6() -> None:
    message = encode(ADVERT6, source=SOURCE6, destination=GROUP6)
    with pytest.raises(DecodeError) as caught:
        decode(message, source=SOURCE6, destination=GROUP6, ttl=1)
    assert caught.value.reason is DropReason.TTL


@pytest.mark.parametrize("size", [0, 1, 7])
def test_message_shorter_than_header_is_too_short(size: int) -> None:
    assert drop_reason(GOLDEN_PSEUDO_HEADER[:size]).reason is DropReason.TOO_SHORT


def test_message_shorter_than_its_address_count_is_too_short() -> None:
    two_addresses = GOLDEN_PSEUDO_HEADER[:3] + b"\x02" + GOLDEN_PSEUDO_HEADER[4:]
    error = drop_reason(craft(two_addresses))
    assert error.reason is DropReason.TOO_SHORT
    assert "16 needed" in error.detail


def test_ipv6_message_with_ipv4_sized_addresses_is_too_short() -> None:
    # A 12-byte message is complete for one IPv4 address, not for one IPv6 address.
    message = craft(GOLDEN_PSEUDO_HEADER, source=SOURCE6, destination=GROUP6)
    with pytest.raises(DecodeError) as caught:
        decode(message, source=SOURCE6, destination=GROUP6, ttl=255)
    assert caught.value.reason is DropReason.TOO_SHORT


def test_vrrpv2_advertisement_is_dropped_with_keepalived_migration_hint() -> None:
    version2 = craft(b"\x21" + GOLDEN_PSEUDO_HEADER[1:])
    error = drop_reason(version2)
    assert error.reason is DropReason.VERSION
    assert "VRRPv2" in error.detail
    assert "version 3" in error.detail
    assert "vrrp_version 3" in error.detail
    assert "keepalived" in error.detail


def test_unknown_version_is_dropped_without_the_vrrpv2_hint() -> None:
    error = drop_reason(craft(b"\x41" + GOLDEN_PSEUDO_HEADER[1:]))
    assert error.reason is DropReason.VERSION
    assert "version 4" in error.detail
    assert "keepalived" not in error.detail


def test_type_other_than_advertisement_is_dropped() -> None:
    error = drop_reason(craft(b"\x32" + GOLDEN_PSEUDO_HEADER[1:]))
    assert error.reason is DropReason.TYPE
    assert "type 2" in error.detail


def test_zero_address_count_is_dropped() -> None:
    zero_count = GOLDEN_PSEUDO_HEADER[:3] + b"\x00" + GOLDEN_PSEUDO_HEADER[4:]
    assert drop_reason(craft(zero_count)).reason is DropReason.COUNT_ZERO


@pytest.mark.parametrize("word", [0x0000, 0xF000])
def test_zero_max_advert_interval_is_dropped_whatever_the_reserved_bits(word: int) -> None:
    message = GOLDEN_PSEUDO_HEADER[:4] + word.to_bytes(2, "big") + GOLDEN_PSEUDO_HEADER[6:]
    assert drop_reason(craft(message)).reason is DropReason.INTERVAL_ZERO


def test_bad_checksum_is_dropped_with_expected_and_received_values() -> None:
    message = GOLDEN_PSEUDO_HEADER[:6] + b"\x12\x34" + GOLDEN_PSEUDO_HEADER[8:]
    error = drop_reason(message)
    assert error.reason is DropReason.CHECKSUM
    assert "0x1234" in error.detail
    assert "0x0572" in error.detail


def test_corrupted_address_fails_the_checksum() -> None:
    message = GOLDEN_PSEUDO_HEADER[:-1] + b"\x65"
    assert drop_reason(message).reason is DropReason.CHECKSUM


def test_message_only_checksum_in_pseudo_header_mode_is_dropped_with_a_hint() -> None:
    message = GOLDEN_PSEUDO_HEADER[:6] + b"\xa8\x02" + GOLDEN_PSEUDO_HEADER[8:]
    error = drop_reason(message)
    assert error.reason is DropReason.CHECKSUM
    assert 'ipv4_checksum = "message-only"' in error.detail


def test_pseudo_header_checksum_in_message_only_mode_is_dropped_with_a_hint() -> None:
    error = drop_reason(GOLDEN_PSEUDO_HEADER, checksum_mode=ChecksumMode.MESSAGE_ONLY)
    assert error.reason is DropReason.CHECKSUM
    assert "0xa802 expected" in error.detail
    assert 'ipv4_checksum = "pseudo-header"' in error.detail


def test_unicast_advert_checksummed_against_the_group_names_keepalived_compat() -> None:
    error = drop_reason(GOLDEN_PSEUDO_HEADER, destination=IPv4Address("192.0.2.2"))
    assert error.reason is DropReason.CHECKSUM
    assert "unicast_chksum_compat" in error.detail


def test_ipv6_advert_whose_first_address_is_not_link_local_is_dropped() -> None:
    advert = Advertisement(
        vrid=7, priority=100, max_advert_interval=100, addresses=(IPv6Address("2001:db8::1"),)
    )
    fields = struct.pack("!BBBBHH", 0x31, 7, 100, 1, 100, 0) + advert.addresses[0].packed
    message = craft(fields, source=SOURCE6, destination=GROUP6)
    with pytest.raises(DecodeError) as caught:
        decode(message, source=SOURCE6, destination=GROUP6, ttl=255)
    assert caught.value.reason is DropReason.NOT_LINK_LOCAL
    assert "2001:db8::1" in caught.value.detail


def test_ipv6_link_local_address_may_come_from_anywhere_in_fe80_slash_10() -> None:
    advert = Advertisement(
        vrid=7, priority=100, max_advert_interval=100, addresses=(IPv6Address("febf::1"),)
    )
    message = encode(advert, source=SOURCE6, destination=GROUP6)
    assert decode(message, source=SOURCE6, destination=GROUP6, ttl=255) == advert


def test_reserved_bits_are_ignored_on_receive() -> None:
    reserved = GOLDEN_PSEUDO_HEADER[:4] + b"\xf0\x64" + GOLDEN_PSEUDO_HEADER[6:]
    assert decode4(craft(reserved)) == GOLDEN


def test_padding_outside_a_keepalived_style_checksum_is_accepted() -> None:
    # keepalived and FRR checksum 8 + count x 4 bytes and put that length in the pseudo-header.
    padded = GOLDEN_PSEUDO_HEADER + b"\xde\xad\xbe"
    assert decode4(padded) == GOLDEN


@pytest.mark.parametrize("padding", [b"\x01", b"\x01\x02", b"\xff" * 7])
def test_padding_covered_by_a_whole_message_checksum_is_accepted(padding: bytes) -> None:
    padded = craft(GOLDEN_PSEUDO_HEADER + padding)
    assert padded[6:8] != GOLDEN_PSEUDO_HEADER[6:8]
    assert decode4(padded) == GOLDEN


def test_padding_with_a_checksum_that_fits_neither_convention_is_dropped() -> None:
    padded = GOLDEN_PSEUDO_HEADER[:6] + b"\x00\x01" + GOLDEN_PSEUDO_HEADER[8:] + b"\x00\x00"
    assert drop_reason(padded).reason is DropReason.CHECKSUM


def test_padded_message_only_checksum_is_accepted_in_message_only_mode() -> None:
    padded = craft(GOLDEN_PSEUDO_HEADER + b"\x00\x07", pseudo=False)
    assert decode4(padded, checksum_mode=ChecksumMode.MESSAGE_ONLY) == GOLDEN


def test_address_list_unlike_ours_is_decoded_not_dropped() -> None:
    advert = Advertisement(
        vrid=51,
        priority=254,
        max_advert_interval=1,
        addresses=tuple(IPv4Address(f"198.51.100.{n}") for n in range(1, 9)),
    )
    assert decode4(encode(advert, source=SOURCE4, destination=GROUP4)) == advert


def test_decode_takes_the_family_from_the_source_address() -> None:
    # 32 bytes of addresses: eight IPv4 addresses or two IPv6 ones, decided by the source only.
    addresses = (IPv6Address("fe80::2"), IPv6Address("fe80::3"))
    advert = Advertisement(vrid=9, priority=100, max_advert_interval=100, addresses=addresses)
    message = encode(advert, source=SOURCE6, destination=GROUP6)
    decoded = decode(message, source=SOURCE6, destination=GROUP6, ttl=255)
    assert all(type(address) is IPv6Address for address in decoded.addresses)
    assert decoded.family.name == "IPV6"


@pytest.mark.parametrize(
    ("advert", "source", "destination", "message"),
    [
        (
            Advertisement(
                vrid=0, priority=100, max_advert_interval=100, addresses=GOLDEN.addresses
            ),
            SOURCE4,
            GROUP4,
            "VRID 0",
        ),
        (
            Advertisement(
                vrid=256, priority=100, max_advert_interval=100, addresses=GOLDEN.addresses
            ),
            SOURCE4,
            GROUP4,
            "VRID 256",
        ),
        (
            Advertisement(vrid=1, priority=-1, max_advert_interval=100, addresses=GOLDEN.addresses),
            SOURCE4,
            GROUP4,
            "priority -1",
        ),
        (
            Advertisement(
                vrid=1, priority=256, max_advert_interval=100, addresses=GOLDEN.addresses
            ),
            SOURCE4,
            GROUP4,
            "priority 256",
        ),
        (
            Advertisement(vrid=1, priority=100, max_advert_interval=0, addresses=GOLDEN.addresses),
            SOURCE4,
            GROUP4,
            "interval 0",
        ),
        (
            Advertisement(
                vrid=1, priority=100, max_advert_interval=4096, addresses=GOLDEN.addresses
            ),
            SOURCE4,
            GROUP4,
            "interval 4096",
        ),
        (
            Advertisement(vrid=1, priority=100, max_advert_interval=100, addresses=()),
            SOURCE4,
            GROUP4,
            "not 0",
        ),
        (
            Advertisement(
                vrid=1,
                priority=100,
                max_advert_interval=100,
                addresses=tuple(IPv4Address(n) for n in range(256)),
            ),
            SOURCE4,
            GROUP4,
            "not 256",
        ),
        (
            Advertisement(
                vrid=1,
                priority=100,
                max_advert_interval=100,
                addresses=(IPv4Address("192.0.2.9"), IPv6Address("fe80::9")),
            ),
            SOURCE4,
            GROUP4,
            "both families",
        ),
        (GOLDEN, SOURCE6, GROUP4, "not of the family"),
        (GOLDEN, SOURCE4, GROUP6, "not of the family"),
        (ADVERT6, SOURCE4, GROUP4, "not of the family"),
        (
            Advertisement(
                vrid=1,
                priority=100,
                max_advert_interval=100,
                addresses=(IPv6Address("2001:db8::9"), IPv6Address("fe80::9")),
            ),
            SOURCE6,
            GROUP6,
            "not link-local",
        ),
    ],
)
def test_encode_rejects_invalid_local_input_with_value_error(
    advert: Advertisement, source: IPAddress, destination: IPAddress, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode(advert, source=source, destination=destination)


def test_encode_accepts_boundary_values() -> None:
    for vrid, priority, interval in [(1, 0, 1), (255, 255, 4095)]:
        advert = Advertisement(
            vrid=vrid,
            priority=priority,
            max_advert_interval=interval,
            addresses=tuple(IPv4Address(n) for n in range(255)),
        )
        assert decode4(encode(advert, source=SOURCE4, destination=GROUP4)) == advert


def test_peek_vrid_reads_byte_one_without_validating() -> None:
    assert peek_vrid(GOLDEN_PSEUDO_HEADER) == 51
    assert peek_vrid(b"\x21\x07") == 7
    assert peek_vrid(b"\x31") is None
    assert peek_vrid(b"") is None


def test_build_ipv4_then_parse_ipv4_round_trips() -> None:
    datagram = build_ipv4(GOLDEN_PSEUDO_HEADER, source=SOURCE4, destination=GROUP4)
    assert internet_checksum(datagram[:20]) == 0
    assert datagram[0] == 0x45
    assert datagram[9] == 112
    assert int.from_bytes(datagram[2:4], "big") == 20 + len(GOLDEN_PSEUDO_HEADER)
    assert parse_ipv4(datagram) == IPv4Datagram(
        source=SOURCE4, destination=GROUP4, ttl=255, payload=GOLDEN_PSEUDO_HEADER
    )


def test_parse_ipv4_gives_every_source_its_own_address_however_many_there_are() -> None:
    # The addresses it makes are remembered (a node hears the same peers all day), within a
    # bound: a flood of forged sources neither grows memory nor mixes two addresses up.
    sources = [IPv4Address(0x0A000000 + n) for n in range(3000)]
    for source in [*sources, *reversed(sources)]:
        datagram = build_ipv4(b"\x31\x01", source=source, destination=GROUP4)
        parsed = parse_ipv4(datagram)
        assert (parsed.source, parsed.destination) == (source, GROUP4)
    assert len(packet._IPV4_SEEN) <= packet._IPV4_SEEN_MAX


def test_build_ipv4_sets_the_requested_ttl() -> None:
    datagram = build_ipv4(b"", source=SOURCE4, destination=GROUP4, ttl=1)
    assert parse_ipv4(datagram).ttl == 1


@pytest.mark.parametrize("ttl", [-1, 256])
def test_build_ipv4_rejects_ttl_outside_a_byte(ttl: int) -> None:
    with pytest.raises(ValueError, match="TTL"):
        build_ipv4(b"", source=SOURCE4, destination=GROUP4, ttl=ttl)


def test_build_ipv4_rejects_payload_too_large_for_a_datagram() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        build_ipv4(bytes(65516), source=SOURCE4, destination=GROUP4)


def test_parse_ipv4_truncates_link_layer_padding_to_total_length() -> None:
    datagram = build_ipv4(GOLDEN_PSEUDO_HEADER, source=SOURCE4, destination=GROUP4)
    assert parse_ipv4(datagram + bytes(18)).payload == GOLDEN_PSEUDO_HEADER


def test_parse_ipv4_skips_header_options() -> None:
    plain = build_ipv4(GOLDEN_PSEUDO_HEADER, source=SOURCE4, destination=GROUP4)
    options = b"\x94\x04\x00\x00"  # router alert
    header = bytes([0x46]) + plain[1:2] + (len(plain) + 4).to_bytes(2, "big") + plain[4:20]
    parsed = parse_ipv4(header + options + GOLDEN_PSEUDO_HEADER)
    assert parsed.payload == GOLDEN_PSEUDO_HEADER
    assert parsed.source == SOURCE4


def _ipv4_header(
    *,
    version_ihl: int = 0x45,
    total_length: int = 32,
    protocol: int = 112,
) -> bytes:
    return struct.pack(
        "!BBHHHBBH4s4s",
        version_ihl,
        0,
        total_length,
        0,
        0,
        255,
        protocol,
        0,
        SOURCE4.packed,
        GROUP4.packed,
    )


@pytest.mark.parametrize(
    ("datagram", "detail"),
    [
        (b"", "shorter than an IPv4 header"),
        (_ipv4_header()[:19], "shorter than an IPv4 header"),
        (_ipv4_header(version_ihl=0x65) + GOLDEN_PSEUDO_HEADER, "version 6"),
        (_ipv4_header(version_ihl=0x44) + GOLDEN_PSEUDO_HEADER, "less than 20"),
        (_ipv4_header(version_ihl=0x4F, total_length=60) + GOLDEN_PSEUDO_HEADER, "header length"),
        (_ipv4_header(total_length=33) + GOLDEN_PSEUDO_HEADER, "total length 33"),
        (_ipv4_header(total_length=19) + GOLDEN_PSEUDO_HEADER, "total length 19"),
        (_ipv4_header(protocol=17) + GOLDEN_PSEUDO_HEADER, "protocol 17"),
    ],
)
def test_parse_ipv4_rejects_malformed_header(datagram: bytes, detail: str) -> None:
    with pytest.raises(DecodeError) as caught:
        parse_ipv4(datagram)
    assert caught.value.reason is DropReason.IP_HEADER
    assert detail in caught.value.detail


def test_decode_error_message_names_reason_and_detail() -> None:
    error = DecodeError(DropReason.TTL, "sent with TTL 1")
    assert str(error) == "ttl: sent with TTL 1"


def test_unicast_ipv6_destination_is_in_the_checksum() -> None:
    peer = ip_address("fe80::2")
    message = encode(ADVERT6, source=SOURCE6, destination=peer)
    assert decode(message, source=SOURCE6, destination=peer, ttl=255) == ADVERT6
    with pytest.raises(DecodeError) as caught:
        decode(message, source=SOURCE6, destination=GROUP6, ttl=255)
    assert caught.value.reason is DropReason.CHECKSUM


def test_family_gives_address_size_and_vrrp_multicast_group() -> None:
    assert (Family.IPV4.address_size, Family.IPV4.multicast_group) == (4, GROUP4)
    assert (Family.IPV6.address_size, Family.IPV6.multicast_group) == (16, GROUP6)
    assert Family.of(SOURCE6) is Family.IPV6
