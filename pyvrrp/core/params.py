"""What a virtual router knows about itself: :class:`RouterParams` and its range checks.

This module sits below both the router and its events (``Reconfigure`` carries a
``RouterParams``), so neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from pyvrrp.core import timers
from pyvrrp.core.errors import UsageError
from pyvrrp.core.packet import (
    CS_PER_SECOND,
    MAX_INTERVAL,
    MAX_INTERVAL_V2,
    V3_ONLY,  # the versions of a VRRPv3 router, the default (re-exported)
    VRRP_VERSION,
    VRRP_VERSION_2,
    ChecksumMode,
    Family,
    IPAddress,
    auth_data,
)

__all__ = [
    "OWNER_PRIORITY",
    "V2_AND_V3",
    "V2_ONLY",
    "V3_ONLY",
    "RouterParams",
    "check_range",
]

OWNER_PRIORITY = 255
"""The priority of the router that owns the virtual addresses (RFC 9568 §5.2.4)."""


def check_range(name: str, value: int, low: int, high: int) -> None:
    """Raise :class:`UsageError` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise UsageError(f"{name} must be in {low}..{high}, not {value}")


def _peers(peers: Iterable[IPAddress]) -> tuple[IPAddress, ...]:
    return tuple(peers)


V2_ONLY: frozenset[int] = frozenset({VRRP_VERSION_2})
"""The versions of a VRRPv2 router (RFC 3768, IPv4 only)."""
V2_AND_V3: frozenset[int] = frozenset({VRRP_VERSION_2, VRRP_VERSION})
"""Migration mode (RFC 9568 §8.4): each advertisement sent as VRRPv2 and VRRPv3, both accepted."""

# VRRPv2 carries the interval as 8 bits of whole seconds (RFC 3768 §5.3.7), VRRPv3 as 12 bits
# of centiseconds (RFC 9568 §5.2.7); in migration mode both carry it: whole seconds, <= 40 s.
_MAX_INTERVAL_V2_CS = MAX_INTERVAL_V2 * CS_PER_SECOND
_MAX_INTERVAL_V2_AND_V3_CS = (MAX_INTERVAL // CS_PER_SECOND) * CS_PER_SECOND


def _versions(versions: Iterable[int]) -> frozenset[int]:
    # The canonical objects: decode() tests V3_ONLY by identity on its fast path.
    spoken = frozenset(versions)
    return next((known for known in (V3_ONLY, V2_ONLY, V2_AND_V3) if known == spoken), spoken)


@attrs.frozen
class RouterParams:
    """What a virtual router needs to know about itself.

    ``priority`` is the configured (base) priority, 255 for the address owner.
    ``local_address`` is the source of our advertisements (the interface's primary IPv4
    address, its IPv6 link-local address, or ``unicast_source``): it breaks ties between
    equal priorities. A non-empty ``unicast_peers`` sends advertisements to each of them, in
    this order, and accepts advertisements only from them unless ``unicast_peers_only`` is
    False (any iterable is taken as a tuple).
    Times are integer microseconds, the advertisement interval centiseconds as on the wire.

    ``versions`` are the VRRP versions the router speaks: {3} (:data:`V3_ONLY`, the default),
    {2} (:data:`V2_ONLY`, RFC 3768, IPv4 only) or {2, 3} (:data:`V2_AND_V3`, migration mode:
    every advertisement goes out as both, both are accepted). Speaking VRRPv2 makes the
    interval whole seconds (1..255 s for v2, 1..40 s for 2+3) and fixes it: an advertisement
    with another interval is dropped (RFC 3768 §7.1), and the timers are RFC 3768's.
    ``auth_pass`` is the VRRPv2 simple password (auth type 1; empty: none), at most 8 bytes.
    Out-of-range values raise :class:`~pyvrrp.core.errors.UsageError`.
    """

    vrid: int
    addresses: tuple[IPAddress, ...]
    local_address: IPAddress
    priority: int = 100
    advert_interval_cs: int = 100
    preempt: bool = True
    preempt_delay_us: int = 0
    unicast_peers: tuple[IPAddress, ...] = attrs.field(default=(), converter=_peers)
    unicast_peers_only: bool = True
    checksum_mode: ChecksumMode = ChecksumMode.PSEUDO_HEADER
    garp_delay_us: int = 5 * timers.US_PER_SECOND
    garp_refresh_us: int = 0
    graceful_handover: bool = True
    versions: frozenset[int] = attrs.field(default=V3_ONLY, converter=_versions)
    auth_pass: bytes = b""

    def __attrs_post_init__(self) -> None:
        check_range("vrid", self.vrid, 1, 255)
        check_range("priority", self.priority, 1, OWNER_PRIORITY)
        self._check_versions()
        # A negative delay would put deadlines in the past forever (a busy loop).
        for name in ("preempt_delay_us", "garp_delay_us", "garp_refresh_us"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must not be negative, not {getattr(self, name)}")
        if not self.addresses:
            raise UsageError("a virtual router needs at least one address")
        families = {a.version for a in self.addresses} | {self.local_address.version}
        families |= {p.version for p in self.unicast_peers}
        if len(families) != 1:
            raise UsageError("addresses, local_address and unicast_peers must be of one family")
        if len(set(self.unicast_peers)) != len(self.unicast_peers):
            raise UsageError(f"unicast_peers lists a peer twice: {self.unicast_peers}")

    def _check_versions(self) -> None:
        if self.versions not in (V3_ONLY, V2_ONLY, V2_AND_V3):
            raise UsageError(
                f"versions must be {{3}}, {{2}} or {{2, 3}}, not {set(self.versions) or '{}'}"
            )
        interval = self.advert_interval_cs
        if not self.speaks_v2:
            check_range("advert_interval_cs", interval, 1, MAX_INTERVAL)
            if self.auth_pass:
                raise UsageError("auth_pass is VRRPv2's: VRRPv3 has no authentication")
            return
        if Family.of(self.local_address) is not Family.IPV4:
            raise UsageError("VRRPv2 is IPv4 only (RFC 3768): an IPv6 router speaks VRRPv3")
        high = _MAX_INTERVAL_V2_CS if self.versions == V2_ONLY else _MAX_INTERVAL_V2_AND_V3_CS
        if interval % CS_PER_SECOND or not CS_PER_SECOND <= interval <= high:
            raise UsageError(
                f"advert_interval_cs must be a whole number of seconds in {CS_PER_SECOND}.."
                f"{high} when speaking VRRPv2 (versions {sorted(self.versions)}), not {interval}"
            )
        auth_data(self.auth_pass)  # at most 8 bytes, no NUL: raises UsageError

    @property
    def speaks_v2(self) -> bool:
        """Whether VRRPv2 advertisements are sent and accepted (version 2 or 2+3)."""
        return VRRP_VERSION_2 in self.versions

    @property
    def family(self) -> Family:
        return Family.of(self.addresses[0])

    @property
    def owner(self) -> bool:
        return self.priority == OWNER_PRIORITY

    @property
    def destinations(self) -> tuple[IPAddress, ...]:
        """Where advertisements go, in order: each unicast peer, or the multicast group."""
        return self.unicast_peers or (self.family.multicast_group,)
