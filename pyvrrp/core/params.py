"""What a virtual router knows about itself: :class:`RouterParams` and its range checks.

This module sits below both the router and its events (``Reconfigure`` carries a
``RouterParams``), so neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from pyvrrp.core import timers
from pyvrrp.core.errors import UsageError
from pyvrrp.core.packet import ChecksumMode, Family, IPAddress

OWNER_PRIORITY = 255
"""The priority of the router that owns the virtual addresses (RFC 9568 §5.2.4)."""


def check_range(name: str, value: int, low: int, high: int) -> None:
    """Raise :class:`UsageError` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise UsageError(f"{name} must be in {low}..{high}, not {value}")


def _peers(peers: Iterable[IPAddress]) -> tuple[IPAddress, ...]:
    return tuple(peers)


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

    def __attrs_post_init__(self) -> None:
        check_range("vrid", self.vrid, 1, 255)
        check_range("priority", self.priority, 1, OWNER_PRIORITY)
        check_range("advert_interval_cs", self.advert_interval_cs, 1, 4095)
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
