"""Actions a :class:`~pyvrrp.core.router.VirtualRouter` asks its runtime to carry out, in order."""

from __future__ import annotations

import enum

import attrs

from pyvrrp.core.packet import Advertisement, DropReason, IPAddress


class State(enum.Enum):
    """Router states: RFC 9568 §6.4 (Active is called MASTER, as keepalived does) and FAULT."""

    INITIALIZE = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"


class Cause(enum.Enum):
    """Why a transition happened; ``StateChanged.reason`` says it in words."""

    STARTUP = "startup"
    OWNER = "owner"  # priority 255 takes over at once (RFC 9568 §6.4.1)
    MASTER_DOWN = "master_down"  # Master_Down_Timer expired: no advertisement heard
    MASTER_LEFT = "master_left"  # the master sent priority 0
    PREEMPT = "preempt"  # a lower-priority master was preempted
    HIGHER_PRIORITY = "higher_priority"  # a master yields (RFC 9568 §6.4.3)
    FAULT = "fault"  # a tracker with weight 0 failed
    RECOVERED = "recovered"  # every fault cleared
    MAINTENANCE = "maintenance"
    SYNC_GROUP = "sync_group"  # following another member of a sync group
    SHUTDOWN = "shutdown"


@attrs.frozen
class Datagram:
    """One VRRP message ready for the socket: the bytes that follow the IP header, and the
    IP header's source and destination (which the checksum's pseudo-header covers)."""

    message: bytes
    source: IPAddress
    destination: IPAddress


@attrs.frozen
class SendAdvert:
    """Send this advertisement: put each of ``datagrams`` on the socket, in order.

    The router encodes them itself (with its own checksum mode), one per unicast peer in
    configured order or one to the family's multicast group, so the runtime only sends bytes
    (h11's ``send()``, aioquic's ``datagrams_to_send()``). ``advert`` is what they carry, for
    observers and tests.
    """

    advert: Advertisement
    datagrams: tuple[Datagram, ...]


@attrs.frozen
class InstallVirtual:
    """Install the virtual addresses, then excluded addresses, virtual routes, virtual rules."""


@attrs.frozen
class RemoveVirtual:
    """Remove virtual rules, then routes, excluded addresses, virtual addresses."""


@attrs.frozen
class Announce:
    """Send the gratuitous ARP / unsolicited NA burst for every (excluded) address."""


@attrs.frozen
class StateChanged:
    """The router changed state; ``priority`` is its effective priority at that moment."""

    old: State
    new: State
    cause: Cause
    reason: str
    priority: int


@attrs.frozen
class Dropped:
    """A received packet was discarded (counted in statistics); log it rate-limited."""

    reason: DropReason
    source: IPAddress
    detail: str


class NoticeKind(enum.Enum):
    """Anomalies worth a (rate-limited) log line that do not discard the packet."""

    ADDRESS_MISMATCH = "address_mismatch"  # VRID collision with another cluster?
    INTERVAL_MISMATCH = "interval_mismatch"
    OWNER_CONFLICT = "owner_conflict"  # RFC 9568 erratum 8298


@attrs.frozen
class Notice:
    """Something a peer does differently from us; the advertisement is still processed."""

    kind: NoticeKind
    source: IPAddress
    detail: str


Action = SendAdvert | InstallVirtual | RemoveVirtual | Announce | StateChanged | Dropped | Notice
