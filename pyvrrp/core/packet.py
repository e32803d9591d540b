"""VRRP advertisements: encoding, decoding and receive validation.

VRRPv3 (RFC 9568 §5) for both families, and VRRPv2 (RFC 3768 §5) for IPv4, the version
keepalived speaks unless told otherwise (docs/protocol.md, "VRRPv2").

This module is the hot path of a receiving router: it is hand-written with ``struct`` and
does no I/O. Everything a peer can get wrong is reported as a :class:`DecodeError` whose
``reason`` is a :class:`DropReason`; nothing else is ever raised for any input bytes.
"""

from __future__ import annotations

import enum
import struct
from ipaddress import IPv4Address, IPv6Address

import attrs

from pyvrrp.core.errors import UsageError

IPAddress = IPv4Address | IPv6Address

VRRP_PROTOCOL = 112
VRRP_VERSION = 3
VRRP_VERSION_2 = 2
ADVERTISEMENT = 1
VRRP_TTL = 255
IPV4_MULTICAST = IPv4Address("224.0.0.18")
IPV6_MULTICAST = IPv6Address("ff02::12")


class Family(enum.IntEnum):
    """An address family, named by its IP version."""

    IPV4 = 4
    IPV6 = 6

    @classmethod
    def of(cls, address: IPAddress) -> Family:
        return cls(address.version)

    @property
    def address_size(self) -> int:
        return 4 if self is Family.IPV4 else 16

    @property
    def multicast_group(self) -> IPAddress:
        return IPV4_MULTICAST if self is Family.IPV4 else IPV6_MULTICAST


class ChecksumMode(enum.Enum):
    """How the IPv4 VRRP checksum is computed (docs/protocol.md, "Checksum").

    IPv6 always includes the RFC 8200 pseudo-header whatever this says.
    """

    PSEUDO_HEADER = "pseudo-header"  # keepalived, FRR, Wireshark, scapy
    MESSAGE_ONLY = "message-only"  # RFC 9568 §5.2.8 as written, Cisco, Juniper


class DropReason(enum.Enum):
    """Why a received packet was discarded, one value per validation rule.

    The values are stable: they are metric labels and appear in ``pyvrrp status``.
    """

    IP_HEADER = "ip_header"  # not a well-formed IPv4 header carrying protocol 112
    TTL = "ttl"  # TTL / hop limit is not 255 (RFC 9568 §7.1)
    # A version the instance does not speak: a VRRPv2 peer (keepalived's IPv4 default) on a
    # v3 instance, or a v3 peer on a v2 one; or VRRPv2 over IPv6, which does not exist.
    VERSION = "version"
    TYPE = "type"  # type is not ADVERTISEMENT
    TOO_SHORT = "too_short"  # shorter than 8 + count x address size
    CHECKSUM = "checksum"
    UNKNOWN_VRID = "unknown_vrid"  # no virtual router with this VRID on the interface
    COUNT_ZERO = "count_zero"
    INTERVAL_ZERO = "interval_zero"
    NOT_LINK_LOCAL = "not_link_local"  # IPv6: the first address must be link-local
    NOT_A_PEER = "not_a_peer"  # unicast mode: the source is not in unicast_peers
    OWN_ADVERT = "own_advert"  # our own advertisement, looped back
    # VRRPv2 only (RFC 3768 §7.1):
    AUTH_TYPE = "auth_type"  # auth type differs from ours (or is 2, IP AH: not supported)
    AUTH_PASS = "auth_pass"  # auth type 1: the 8 bytes of authentication data differ from ours
    # VRRPv2 has no Master_Adver_Interval to learn (RFC 3768 §7.1): an advert whose interval
    # differs from ours is dropped. The router drops it (it knows our interval), not decode().
    INTERVAL_MISMATCH = "interval_mismatch"


class DecodeError(Exception):
    """A received packet fails validation; ``reason`` says which rule it broke."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@attrs.frozen
class Advertisement:
    """A decoded or to-be-encoded VRRP ADVERTISEMENT (RFC 9568 §5.2, RFC 3768 §5.1).

    ``max_advert_interval`` is in centiseconds as on the VRRPv3 wire, for VRRPv2 too (whose
    wire carries whole seconds: seconds x 100 here), so that timers are computed alike for both
    versions. ``addresses`` are all of one family; for IPv6 the first one is the link-local
    address. ``version`` is the version the advert was received as (:func:`decode` sets it);
    the encoders do not read it: :func:`encode` writes VRRPv3 and :func:`encode_v2` VRRPv2, so
    an instance speaking both encodes one Advertisement twice.
    """

    vrid: int
    priority: int
    max_advert_interval: int
    addresses: tuple[IPAddress, ...]
    version: int = VRRP_VERSION

    @property
    def family(self) -> Family:
        return Family.of(self.addresses[0])


# The checksum arithmetic below relies on one identity: 2**16 ≡ 1 (mod 0xFFFF), so the ones'
# complement sum of a run of 16-bit big-endian words (RFC 1071) is congruent to the run read as
# one big integer, and to the sum of any word-aligned pieces of it read as integers. An IPv4
# address's integer value therefore already is the sum of its two words, an IPv6 address's of
# its eight, and the whole message plus pseudo-header reduces to one ``% 0xFFFF``. The only
# value the congruence cannot tell apart is 0x0000 from 0xFFFF (ones' complement's two zeros):
# a non-empty sum of words that are not all zero is never 0, so a total ≡ 0 means 0xFFFF.
_ONES = 0xFFFF

_HEADER = struct.Struct("!BBBBHH")  # version/type, VRID, priority, count, rsvd/interval, checksum
_HEADER_SIZE = 8
_VERSION_TYPE = (VRRP_VERSION << 4) | ADVERTISEMENT  # 0x31
_INTERVAL_MASK = 0x0FFF  # the top 4 bits of that word are reserved (RFC 9568 §5.2.6)
MAX_INTERVAL = 4095  # RFC 9568 §5.2.7: 12 bits of centiseconds
_IPV4_ADDRESS_SIZE = 4
_IPV6_ADDRESS_SIZE = 16
_LINK_LOCAL_TOP_BITS = 0x3FA  # fe80::/10: the top 10 bits of the address
V3_ONLY = frozenset({VRRP_VERSION})  # decode()'s default; the VRRPv3 fast path tests identity

# VRRPv2 (RFC 3768 §5.1): the v3 header's reserved bits and 12-bit interval are an auth type
# byte and an interval byte in whole seconds, and 8 bytes of authentication data follow the
# (IPv4 only) addresses. The checksum never covers a pseudo-header (§5.3.8).
_HEADER_V2 = struct.Struct("!BBBBBBH")  # version/type, VRID, priority, count, auth, interval, sum
_VERSION_TYPE_V2 = (VRRP_VERSION_2 << 4) | ADVERTISEMENT  # 0x21
_AUTH_DATA_SIZE = 8  # §5.3.10
_V2_TRAILER = _AUTH_DATA_SIZE
MAX_INTERVAL_V2 = 255  # §5.3.7: 8 bits of whole seconds
CS_PER_SECOND = 100  # the v2 wire's seconds as Advertisement.max_advert_interval's unit
AUTH_NONE = 0  # §5.3.6
AUTH_SIMPLE_TEXT = 1  # §5.3.6: a clear-text password of up to 8 bytes
AUTH_IP_AH = 2  # §5.3.6: RFC 2338's IP Authentication Header, removed by RFC 3768
_AUTH_NAMES = {AUTH_NONE: "none", AUTH_SIMPLE_TEXT: "simple text password", AUTH_IP_AH: "IP AH"}


# Precompiled (un)packers for 0..255 addresses, indexed by count, so that no call compiles a
# format: IPv4 addresses as 32-bit words, IPv6 ones as pairs of 64-bit halves.
_IPV4_ADDRESSES = tuple(struct.Struct(f"!{n}I") for n in range(256))
_IPV6_HALVES = tuple(struct.Struct(f"!{2 * n}Q") for n in range(256))


def internet_checksum(data: bytes) -> int:
    """The RFC 1071 Internet checksum of ``data`` (an odd length is padded with a zero byte).

    Returns the value to put in a checksum field: the ones' complement of the ones' complement
    sum of the 16-bit words. Data whose words are all zero gives 0xFFFF, as RFC 1071 does.
    """
    total = int.from_bytes(data, "big")
    if len(data) & 1:
        total <<= 8  # pad to a whole word at the end, not the start
    if total == 0:
        return _ONES
    return -total % _ONES


def _fold(total: int) -> int:
    """The checksum field value for a nonzero sum of words taken modulo 0xFFFF."""
    return -total % _ONES


def _pseudo_header_sum(source: IPAddress, destination: IPAddress, length: int) -> int:
    """The word sum of the IPv4 (src, dst, 0, 112, length) or the RFC 8200 §8.1 IPv6
    (src, dst, 32-bit length, 3 zero bytes, next header 112) pseudo-header.

    Both reduce to the same sum: each address's integer value, the length (a 16-bit word for
    IPv4, a 32-bit one with a zero upper word for IPv6, since a VRRP message is < 65536 bytes)
    and the protocol number in the low byte of a word.
    """
    return int(source) + int(destination) + VRRP_PROTOCOL + length


def _checksum_covers_pseudo_header(family: Family, checksum_mode: ChecksumMode) -> bool:
    # RFC 9568 §5.2.8; docs/protocol.md "Checksum": IPv6 always includes it.
    return family is Family.IPV6 or checksum_mode is ChecksumMode.PSEUDO_HEADER


def encode(
    advert: Advertisement,
    *,
    source: IPAddress,
    destination: IPAddress,
    checksum_mode: ChecksumMode = ChecksumMode.PSEUDO_HEADER,
) -> bytes:
    """The VRRPv3 ADVERTISEMENT message for ``advert`` (what follows the IP header).

    ``source`` and ``destination`` are the IP header's addresses: the checksum covers them in
    the pseudo-header (always for IPv6, for IPv4 unless ``checksum_mode`` is MESSAGE_ONLY).
    In unicast mode ``destination`` is the peer the message is sent to.

    Raises :class:`~pyvrrp.core.errors.UsageError` (a ValueError) for an advertisement that
    breaks RFC 9568 §5.2: that is a bug of ours (configuration validation should have caught
    it), never something a peer can cause.
    """
    vrid = advert.vrid
    priority = advert.priority
    interval = advert.max_advert_interval
    addresses = advert.addresses
    if not 1 <= vrid <= 255:  # RFC 9568 §5.2.3
        raise UsageError(f"VRID {vrid} is outside 1..255")
    if not 0 <= priority <= 255:  # §5.2.4
        raise UsageError(f"priority {priority} is outside 0..255")
    if not 1 <= interval <= MAX_INTERVAL:  # §5.2.7: 12 bits of centiseconds, never 0
        raise UsageError(f"max advert interval {interval} cs is outside 1..{MAX_INTERVAL}")
    count = len(addresses)
    if not 1 <= count <= 255:  # §5.2.5: an 8-bit count of at least one address
        raise UsageError(f"an advertisement carries 1..255 addresses, not {count}")
    kind = type(addresses[0])
    if not all(type(address) is kind for address in addresses):
        raise UsageError(f"addresses of both families in one advertisement: {addresses}")
    if type(source) is not kind or type(destination) is not kind:
        raise UsageError(
            f"source {source} and destination {destination} are not of the family of the"
            f" advertised addresses ({addresses[0]})"
        )
    values = [int(address) for address in addresses]
    if kind is IPv4Address:
        body = _IPV4_ADDRESSES[count].pack(*values)
        pseudo = checksum_mode is ChecksumMode.PSEUDO_HEADER
    else:
        if values[0] >> 118 != _LINK_LOCAL_TOP_BITS:  # §5.2.9: peers drop anything else
            raise UsageError(f"the first IPv6 address {addresses[0]} is not link-local")
        halves: list[int] = []
        for value in values:
            halves.append(value >> 64)
            halves.append(value & 0xFFFF_FFFF_FFFF_FFFF)
        body = _IPV6_HALVES[count].pack(*halves)
        pseudo = True
    # The header words' sum, the checksum word taken as zero: see _ONES for why the address
    # integers can be added as they are.
    total = (_VERSION_TYPE << 8 | vrid) + (priority << 8 | count) + interval + sum(values)
    if pseudo:
        total += _pseudo_header_sum(source, destination, _HEADER_SIZE + len(body))
    header = _HEADER.pack(_VERSION_TYPE, vrid, priority, count, interval, _fold(total))
    return header + body


def auth_data(auth_pass: bytes) -> bytes:
    """The 8 authentication bytes for ``auth_pass`` (RFC 3768 §5.3.10): NUL-padded, or zeros.

    Raises :class:`~pyvrrp.core.errors.UsageError` for a password keepalived could not have
    either: longer than 8 bytes, or
    holding a NUL byte (which the padding would make ambiguous).
    """
    if len(auth_pass) > _AUTH_DATA_SIZE:
        raise UsageError(
            f"a VRRPv2 password is at most {_AUTH_DATA_SIZE} bytes, not {len(auth_pass)}"
        )
    if b"\0" in auth_pass:
        raise UsageError("a VRRPv2 password cannot contain a NUL byte")
    return auth_pass.ljust(_AUTH_DATA_SIZE, b"\0")


def encode_v2(advert: Advertisement, *, auth_pass: bytes = b"") -> bytes:
    """The VRRPv2 ADVERTISEMENT message for ``advert`` (RFC 3768 §5.1), after the IP header.

    Auth type 1 (simple text password) with ``auth_pass`` NUL-padded to 8 bytes when it is
    non-empty, else auth type 0 with zeros. The checksum covers the message only, whatever an
    instance's ``ipv4_checksum`` says for VRRPv3. ``advert.version`` is not read.

    Raises :class:`~pyvrrp.core.errors.UsageError` for an advertisement VRRPv2 cannot carry
    (IPv6 addresses, an interval
    that is not a whole number of seconds in 1..255) or that breaks RFC 3768 §5.3, and for a
    password longer than 8 bytes or holding a NUL byte: a bug of ours (configuration
    validation should have caught it), never something a peer can cause.
    """
    vrid = advert.vrid
    priority = advert.priority
    interval = advert.max_advert_interval
    addresses = advert.addresses
    if not 1 <= vrid <= 255:  # RFC 3768 §5.3.3
        raise UsageError(f"VRID {vrid} is outside 1..255")
    if not 0 <= priority <= 255:  # §5.3.4
        raise UsageError(f"priority {priority} is outside 0..255")
    seconds, remainder = divmod(interval, CS_PER_SECOND)
    if remainder or not 1 <= seconds <= MAX_INTERVAL_V2:  # §5.3.7
        raise UsageError(
            f"advert interval {interval} cs is not a whole number of seconds in"
            f" 1..{MAX_INTERVAL_V2}, as VRRPv2 needs"
        )
    count = len(addresses)
    if not 1 <= count <= 255:  # §5.3.5
        raise UsageError(f"an advertisement carries 1..255 addresses, not {count}")
    if not all(type(address) is IPv4Address for address in addresses):
        raise UsageError(f"VRRPv2 carries IPv4 addresses only (RFC 3768), not {addresses}")
    auth_type = AUTH_SIMPLE_TEXT if auth_pass else AUTH_NONE
    trailer = auth_data(auth_pass)
    values = [int(address) for address in addresses]
    # The word sum with the checksum taken as zero (see _ONES): the 8 bytes of authentication
    # data read as one integer are congruent to the sum of their four words.
    total = (
        (_VERSION_TYPE_V2 << 8 | vrid)
        + (priority << 8 | count)
        + (auth_type << 8 | seconds)
        + sum(values)
        + int.from_bytes(trailer, "big")
    )
    header = _HEADER_V2.pack(
        _VERSION_TYPE_V2, vrid, priority, count, auth_type, seconds, _fold(total)
    )
    return header + _IPV4_ADDRESSES[count].pack(*values) + trailer


def peek_vrid(message: bytes) -> int | None:
    """The VRID byte of a VRRP message, or None if it is too short to have one.

    For demultiplexing to a virtual router before the full :func:`decode`; nothing is
    validated, so the answer may belong to garbage.
    """
    return message[1] if len(message) > 1 else None


def _version_detail(version: int, source: IPAddress, versions: frozenset[int]) -> str:
    # The migration trap: keepalived speaks VRRPv2 for IPv4 unless told otherwise, and a v2
    # and a v3 router on one VRID never elect together, so both sides end up master. The
    # detail says what to change on either side.
    if version == VRRP_VERSION_2 and type(source) is not IPv4Address:
        return (
            f"{source} sent a VRRPv2 advertisement over IPv6; VRRPv2 is IPv4 only (RFC 3768)"
            " and IPv6 always speaks VRRPv3"
        )
    if version == VRRP_VERSION_2:
        return (
            f"{source} sent a VRRPv2 advertisement; this instance speaks VRRPv3 only (RFC 9568)."
            " keepalived defaults to VRRPv2 for IPv4: add `version 3` to its vrrp_instance"
            ' or `vrrp_version 3` to its global_defs; or set `version = 2` (or "2+3" while'
            " migrating) for this instance in node.toml"
        )
    if version == VRRP_VERSION:
        return (
            f"{source} sent a VRRPv3 advertisement; this instance speaks VRRPv2 only"
            ' (RFC 3768). Set `version = 3` (or "2+3" while migrating) for this instance in'
            " node.toml, or make the peer speak VRRPv2 (keepalived: `version 2` in its"
            " vrrp_instance)"
        )
    spoken = " and ".join(str(v) for v in sorted(versions)) or "none"
    return f"{source} sent VRRP version {version}; this instance speaks version {spoken}"


def _checksum_detail(
    message: bytes,
    *,
    length: int,
    source: IPAddress,
    destination: IPAddress,
    checksum_mode: ChecksumMode,
    family: Family,
) -> str:
    """Expected and received values, plus the likely cause when another convention matches."""
    received = int.from_bytes(message[6:8], "big")
    words = int.from_bytes(message[:6] + message[8:length], "big")
    with_pseudo = _fold(words + _pseudo_header_sum(source, destination, length))
    message_only = _fold(words)
    expected = (
        with_pseudo if _checksum_covers_pseudo_header(family, checksum_mode) else message_only
    )
    detail = f"{source} sent checksum 0x{received:04x}, 0x{expected:04x} expected"
    # A mismatch between two correctly working routers is a configuration mismatch; say which.
    if family is Family.IPV4 and expected != received:
        if checksum_mode is ChecksumMode.PSEUDO_HEADER and message_only == received:
            detail += (
                "; the sender checksums the message only (RFC 9568 as written, Cisco, Juniper):"
                ' set ipv4_checksum = "message-only"'
            )
        elif checksum_mode is ChecksumMode.MESSAGE_ONLY and with_pseudo == received:
            detail += (
                "; the sender includes the IPv4 pseudo-header (keepalived, FRR):"
                ' set ipv4_checksum = "pseudo-header"'
            )
        elif (
            checksum_mode is ChecksumMode.PSEUDO_HEADER
            and destination != IPV4_MULTICAST
            and _fold(words + _pseudo_header_sum(source, IPV4_MULTICAST, length)) == received
        ):
            detail += (
                f"; the sender's pseudo-header uses {IPV4_MULTICAST}, not the unicast"
                f" destination {destination} (keepalived's unicast_chksum_compat)"
            )
    return detail


def decode(
    message: bytes,
    *,
    source: IPAddress,
    destination: IPAddress,
    ttl: int,
    checksum_mode: ChecksumMode = ChecksumMode.PSEUDO_HEADER,
    versions: frozenset[int] = V3_ONLY,
    auth_pass: bytes = b"",
) -> Advertisement:
    """Validate a received VRRP message (what follows the IP header) and decode it.

    ``versions`` are the VRRP versions the instance speaks: {3} (the default), {2} or {2, 3}
    (migration mode, RFC 9568 §8.4). A VRRPv2 message is decoded only when 2 is among them and
    the family is IPv4, by the rules of RFC 3768 §7.1 (see :func:`_decode_v2`); ``auth_pass``
    is then our password (empty: auth type 0), and ``checksum_mode`` does not apply. A version
    the instance does not speak is a ``DropReason.VERSION`` whose detail says what to change.
    An ``auth_pass`` longer than 8 bytes or holding a NUL byte raises UsageError when a VRRPv2
    message is decoded, as it does for :func:`encode_v2`: that is our misuse, not the peer's.

    ``source``, ``destination`` and ``ttl`` come from the IP header (for IPv6 from the
    ancillary data: destination from IPV6_PKTINFO, ttl from IPV6_HOPLIMIT); they are trusted,
    and ``source`` gives the family. In unicast mode ``destination`` is the actual unicast
    destination, which the sender's pseudo-header covers too.

    Raises :class:`DecodeError` for a packet RFC 9568 §7.1 says to discard, and never anything
    else whatever ``message`` holds. Not discarded: reserved bits set (ignored), an address list
    unlike ours (the caller compares and logs), and trailing bytes after the addresses.

    Trailing bytes: keepalived and FRR checksum exactly 8 + count x address size bytes with
    that length in the pseudo-header, so padding after the addresses is outside their checksum;
    a sender could instead cover the whole message. Both are accepted: the addresses-only form
    is tried first and, only when there are trailing bytes and it fails, the whole-message
    form. The padding itself is ignored. :func:`encode` never pads.
    """
    if ttl != VRRP_TTL:  # RFC 9568 §7.1: only a neighbour on the link can have sent it
        raise DecodeError(DropReason.TTL, f"{source} sent with TTL/hop limit {ttl}, not {VRRP_TTL}")
    size = len(message)
    if size < _HEADER_SIZE:
        raise DecodeError(
            DropReason.TOO_SHORT,
            f"{source} sent {size} bytes, shorter than the {_HEADER_SIZE}-byte VRRP header",
        )
    version_type, vrid, priority, count, interval, _checksum = _HEADER.unpack_from(message)
    # The VRRPv3 path costs one comparison and, for the default versions, an identity test;
    # anything else (VRRPv2 included) leaves it here.
    if version_type != _VERSION_TYPE or (versions is not V3_ONLY and VRRP_VERSION not in versions):
        version = version_type >> 4
        ipv4 = type(source) is IPv4Address
        if version == VRRP_VERSION_2 and ipv4 and VRRP_VERSION_2 in versions:
            if version_type == _VERSION_TYPE_V2:
                return _decode_v2(message, source=source, auth_pass=auth_pass)
        elif version != VRRP_VERSION or VRRP_VERSION not in versions:
            raise DecodeError(DropReason.VERSION, _version_detail(version, source, versions))
        raise DecodeError(
            DropReason.TYPE,
            f"{source} sent VRRP type {version_type & 0x0F}, not {ADVERTISEMENT} (ADVERTISEMENT)",
        )
    if count == 0:  # §5.2.5; docs/protocol.md: discard, at least one address
        raise DecodeError(DropReason.COUNT_ZERO, f"{source} sent an advertisement with no address")
    if type(source) is IPv4Address:
        family = Family.IPV4
        length = _HEADER_SIZE + _IPV4_ADDRESS_SIZE * count
    else:
        family = Family.IPV6
        length = _HEADER_SIZE + _IPV6_ADDRESS_SIZE * count
    if size < length:
        raise DecodeError(
            DropReason.TOO_SHORT,
            f"{source} sent {size} bytes for {count} {family.name} addresses, {length} needed",
        )
    interval &= _INTERVAL_MASK  # reserved bits: ignored on receive (§5.2.6)
    if interval == 0:
        raise DecodeError(
            DropReason.INTERVAL_ZERO, f"{source} sent a max advert interval of 0 centiseconds"
        )
    # Checksum verification: a correct message sums (with its checksum) to 0xFFFF, i.e. to a
    # nonzero multiple of 0xFFFF here; the version byte makes the sum nonzero (see _ONES).
    total = int.from_bytes(message[:length] if size != length else message, "big")
    pseudo = _checksum_covers_pseudo_header(family, checksum_mode)
    if pseudo:
        total += _pseudo_header_sum(source, destination, length)
    if total % _ONES and not (
        size > length and _checksums_with_padding(message, source, destination, pseudo=pseudo)
    ):
        raise DecodeError(
            DropReason.CHECKSUM,
            _checksum_detail(
                message,
                length=length,
                source=source,
                destination=destination,
                checksum_mode=checksum_mode,
                family=family,
            ),
        )
    if family is Family.IPV4:
        addresses: tuple[IPAddress, ...] = tuple(
            map(IPv4Address, _IPV4_ADDRESSES[count].unpack_from(message, _HEADER_SIZE))
        )
    else:
        halves = _IPV6_HALVES[count].unpack_from(message, _HEADER_SIZE)
        if halves[0] >> 54 != _LINK_LOCAL_TOP_BITS:  # RFC 9568 §5.2.9, §7.1
            raise DecodeError(
                DropReason.NOT_LINK_LOCAL,
                f"{source} sent an IPv6 advertisement whose first address"
                f" {IPv6Address(halves[0] << 64 | halves[1])} is not link-local",
            )
        addresses = tuple(
            IPv6Address(halves[i] << 64 | halves[i + 1]) for i in range(0, 2 * count, 2)
        )
    # Positional: measurably cheaper than keywords on this path (docs/benchmarks.md, "Codec").
    return Advertisement(vrid, priority, interval, addresses)


def _checksums_with_padding(
    message: bytes, source: IPAddress, destination: IPAddress, *, pseudo: bool
) -> bool:
    """Whether the checksum is right over the whole message, trailing bytes included."""
    size = len(message)
    total = int.from_bytes(message, "big")
    if size & 1:
        total <<= 8
    if pseudo:
        total += _pseudo_header_sum(source, destination, size)
    return total % _ONES == 0


def _decode_v2(message: bytes, *, source: IPAddress, auth_pass: bytes) -> Advertisement:
    """Validate and decode a VRRPv2 message whose TTL, version and type are already checked.

    The rest of RFC 3768 §7.1, in its order where it gives one: count != 0, the length
    (8 + 4 x count + 8: the authentication data must be there), the checksum over the message
    (trailing bytes: as :func:`decode` for VRRPv3, the exact form first), interval != 0, then
    the auth type (ours; 2, IP AH, is not supported) and for type 1 the password. The VRID and
    the interval (which must equal ours: ``DropReason.INTERVAL_MISMATCH``) are the router's.
    """
    _version_type, vrid, priority, count, auth_type, seconds, _checksum = _HEADER_V2.unpack_from(
        message
    )
    if count == 0:  # RFC 3768 §5.3.5
        raise DecodeError(DropReason.COUNT_ZERO, f"{source} sent an advertisement with no address")
    size = len(message)
    length = _HEADER_SIZE + _IPV4_ADDRESS_SIZE * count + _V2_TRAILER
    if size < length:
        raise DecodeError(
            DropReason.TOO_SHORT,
            f"{source} sent {size} bytes for a VRRPv2 advertisement of {count} IPv4 addresses,"
            f" {length} needed (8-byte header, addresses, 8 bytes of authentication data)",
        )
    total = int.from_bytes(message[:length] if size != length else message, "big")
    if total % _ONES and not (
        size > length and _checksums_with_padding(message, source, IPV4_MULTICAST, pseudo=False)
    ):
        received = int.from_bytes(message[6:8], "big")
        expected = _fold(int.from_bytes(message[:6] + message[8:length], "big"))
        raise DecodeError(
            DropReason.CHECKSUM,
            f"{source} sent checksum 0x{received:04x}, 0x{expected:04x} expected (VRRPv2:"
            " over the message only, RFC 3768 §5.3.8)",
        )
    if seconds == 0:  # §5.3.7
        raise DecodeError(
            DropReason.INTERVAL_ZERO, f"{source} sent a VRRPv2 advert interval of 0 seconds"
        )
    ours = AUTH_SIMPLE_TEXT if auth_pass else AUTH_NONE
    if auth_type == AUTH_IP_AH:
        raise DecodeError(
            DropReason.AUTH_TYPE,
            f"{source} sent auth type 2 (IP AH); IP AH authentication is not supported (it was"
            " removed from VRRP by RFC 3768): configure the peer with no authentication or"
            " auth_type PASS",
        )
    if auth_type != ours:
        theirs = _AUTH_NAMES.get(auth_type, "unknown")
        if auth_type == AUTH_SIMPLE_TEXT:  # the peer has a password, we have none
            advice = "set the peer's password as auth_pass for this instance in node.toml"
        elif auth_type == AUTH_NONE:  # we have a password, the peer has none
            advice = (
                "remove auth_pass for this instance in node.toml, or give the peer the same"
                " password (keepalived: authentication { auth_type PASS auth_pass ... })"
            )
        else:
            advice = "the peer's authentication is not VRRPv2's"
        raise DecodeError(
            DropReason.AUTH_TYPE,
            f"{source} sent auth type {auth_type} ({theirs}), this instance expects"
            f" {ours} ({_AUTH_NAMES[ours]}): {advice}",
        )
    addresses_end = length - _V2_TRAILER
    if ours == AUTH_SIMPLE_TEXT and message[addresses_end:length] != auth_data(auth_pass):
        # The received password is not echoed: it may be someone's other secret.
        raise DecodeError(
            DropReason.AUTH_PASS,
            f"{source} sent a VRRPv2 password (auth type 1) that differs from this instance's"
            " auth_pass",
        )
    addresses: tuple[IPAddress, ...] = tuple(
        map(IPv4Address, _IPV4_ADDRESSES[count].unpack_from(message, _HEADER_SIZE))
    )
    return Advertisement(
        vrid=vrid,
        priority=priority,
        max_advert_interval=seconds * CS_PER_SECOND,
        addresses=addresses,
        version=VRRP_VERSION_2,
    )


@attrs.frozen
class IPv4Datagram:
    """The parts of a received IPv4 datagram that VRRP needs (IPv4 raw sockets deliver the
    IP header, docs/protocol.md "Practical Linux notes")."""

    source: IPv4Address
    destination: IPv4Address
    ttl: int
    payload: bytes


_IPV4_HEADER = struct.Struct("!BBHHHBBHII")  # RFC 791 §3.1, without options
_IPV4_HEADER_SIZE = 20
_IPV4_VERSION_IHL = 0x45
_IPV4_TOS = 0xC0  # precedence "internetwork control", as keepalived sends


def parse_ipv4(datagram: bytes) -> IPv4Datagram:
    """Split a received IPv4 datagram carrying VRRP into its addresses, TTL and payload.

    Raises ``DecodeError(DropReason.IP_HEADER, ...)`` for anything that is not a well-formed
    IPv4 header carrying protocol 112, and nothing else for any input. A total length shorter
    than the data (link-layer padding) truncates the payload to it. The header checksum is not
    checked: the kernel has already dropped datagrams whose header checksum is wrong.
    """
    size = len(datagram)
    if size < _IPV4_HEADER_SIZE:
        raise DecodeError(
            DropReason.IP_HEADER, f"{size} bytes, shorter than an IPv4 header (20 bytes)"
        )
    version_ihl, _tos, total_length, _id, _frag, ttl, protocol, _checksum, source, destination = (
        _IPV4_HEADER.unpack_from(datagram)
    )
    if version_ihl >> 4 != 4:
        raise DecodeError(DropReason.IP_HEADER, f"IP version {version_ihl >> 4}, not 4")
    header_length = (version_ihl & 0x0F) * 4
    if header_length < _IPV4_HEADER_SIZE:
        raise DecodeError(
            DropReason.IP_HEADER, f"IPv4 header length {header_length} bytes, less than 20"
        )
    if header_length > size:
        raise DecodeError(
            DropReason.IP_HEADER,
            f"IPv4 header length {header_length} bytes, longer than the {size}-byte datagram",
        )
    if total_length > size:
        raise DecodeError(
            DropReason.IP_HEADER,
            f"IPv4 total length {total_length} bytes, longer than the {size} bytes received",
        )
    if total_length < header_length:
        raise DecodeError(
            DropReason.IP_HEADER,
            f"IPv4 total length {total_length} bytes, shorter than its {header_length}-byte header",
        )
    if protocol != VRRP_PROTOCOL:
        raise DecodeError(
            DropReason.IP_HEADER, f"IP protocol {protocol}, not {VRRP_PROTOCOL} (VRRP)"
        )
    return IPv4Datagram(
        source=_ipv4(source),
        destination=_ipv4(destination),
        ttl=ttl,
        payload=datagram[header_length:total_length],
    )


# The addresses parse_ipv4 made, by their value: a node hears the same few peers and groups
# all day (an IPv4Address costs a microsecond to make). Bounded: a flood of forged sources
# empties it.
_IPV4_SEEN: dict[int, IPv4Address] = {}
_IPV4_SEEN_MAX = 1024


def _ipv4(value: int) -> IPv4Address:
    address = _IPV4_SEEN.get(value)
    if address is None:
        if len(_IPV4_SEEN) >= _IPV4_SEEN_MAX:
            _IPV4_SEEN.clear()
        address = _IPV4_SEEN[value] = IPv4Address(value)
    return address


def build_ipv4(
    payload: bytes, *, source: IPv4Address, destination: IPv4Address, ttl: int = VRRP_TTL
) -> bytes:
    """An IPv4 datagram carrying ``payload`` as protocol 112, with a valid header checksum.

    The runtime sends it on an IP_HDRINCL raw socket (pyvrrp.runtime.transport): we build the
    header, so its source (which the pseudo-header checksum covers) and TTL are exactly ours.
    Linux keeps them and only fills in the total length and header checksum (and the
    identification field, left 0 here). Raises :class:`~pyvrrp.core.errors.UsageError` for a
    payload or TTL that does not fit.
    """
    total_length = _IPV4_HEADER_SIZE + len(payload)
    if total_length > 0xFFFF:
        raise UsageError(f"a {len(payload)}-byte payload does not fit in an IPv4 datagram")
    if not 0 <= ttl <= 255:
        raise UsageError(f"TTL {ttl} is outside 0..255")
    fields = (_IPV4_VERSION_IHL, _IPV4_TOS, total_length, 0, 0, ttl, VRRP_PROTOCOL)
    header = _IPV4_HEADER.pack(*fields, 0, int(source), int(destination))
    checksum = internet_checksum(header)
    return _IPV4_HEADER.pack(*fields, checksum, int(source), int(destination)) + payload
