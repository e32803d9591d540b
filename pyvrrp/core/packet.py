"""VRRPv3 advertisements (RFC 9568 §5): encoding, decoding and receive validation.

This module is the hot path of a receiving router: it is hand-written with ``struct`` and
does no I/O. Everything a peer can get wrong is reported as a :class:`DecodeError` whose
``reason`` is a :class:`DropReason`; nothing else is ever raised for any input bytes.
"""

from __future__ import annotations

import enum
from ipaddress import IPv4Address, IPv6Address

import attrs

IPAddress = IPv4Address | IPv6Address

VRRP_PROTOCOL = 112
VRRP_VERSION = 3
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
    """How the IPv4 VRRP checksum is computed (protocol.md, "Checksum").

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
    VERSION = "version"  # not VRRP version 3 (a VRRPv2 peer: keepalived's IPv4 default)
    TYPE = "type"  # type is not ADVERTISEMENT
    TOO_SHORT = "too_short"  # shorter than 8 + count x address size
    CHECKSUM = "checksum"
    UNKNOWN_VRID = "unknown_vrid"  # no virtual router with this VRID on the interface
    COUNT_ZERO = "count_zero"
    INTERVAL_ZERO = "interval_zero"
    NOT_LINK_LOCAL = "not_link_local"  # IPv6: the first address must be link-local
    NOT_A_PEER = "not_a_peer"  # unicast mode: the source is not in unicast_peers
    OWN_ADVERT = "own_advert"  # our own advertisement, looped back


class DecodeError(Exception):
    """A received packet fails validation; ``reason`` says which rule it broke."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@attrs.frozen
class Advertisement:
    """A decoded or to-be-encoded VRRPv3 ADVERTISEMENT (RFC 9568 §5.2).

    ``max_advert_interval`` is in centiseconds as on the wire. ``addresses`` are all of one
    family; for IPv6 the first one is the link-local address.
    """

    vrid: int
    priority: int
    max_advert_interval: int
    addresses: tuple[IPAddress, ...]

    @property
    def family(self) -> Family:
        return Family.of(self.addresses[0])
