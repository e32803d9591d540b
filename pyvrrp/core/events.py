"""Events fed to a :class:`~pyvrrp.core.router.VirtualRouter`, each with the current time.

Events are frozen values: a recorded list of ``(now, event)`` pairs replays as a test.
"""

from __future__ import annotations

import attrs

from pyvrrp.core.actions import State
from pyvrrp.core.packet import Advertisement, IPAddress
from pyvrrp.core.params import RouterParams


@attrs.frozen
class Startup:
    """The router leaves Initialize (RFC 9568 §6.4.1)."""


@attrs.frozen
class Timeout:
    """The deadline returned by ``deadline()`` has been reached."""


@attrs.frozen
class AdvertiseNow:
    """A master sends its next advertisement now and runs its Adver_Timer from now.

    A runtime with many masters of one Advertisement_Interval sends their advertisements
    together, in one wake-up per interval (docs/design.md, "Masters advertise together"):
    when one of them is due it hands this to those due less than half an interval later,
    whose Adver_Timer then runs in step with its. Sending early is always allowed (a backup
    only restarts its Master_Down_Timer, RFC 9568 §6.4.2); never late. Ignored outside Master; a due
    Adver_Timer is handled as ``Timeout``.
    """


@attrs.frozen
class PacketReceived:
    """A VRRP message (the bytes after the IP header) arrived, with what its IP header said.

    ``ttl`` is the IPv4 TTL or the IPv6 hop limit the packet arrived with. Transports return
    this type from ``receive()`` and the runtime hands it to the router of its VRID as is.
    """

    message: bytes
    source: IPAddress
    destination: IPAddress
    ttl: int


@attrs.frozen
class AdvertReceived:
    """An advertisement that already passed packet validation (see ``PacketReceived``)."""

    source: IPAddress
    advert: Advertisement


@attrs.frozen
class HealthChanged:
    """Trackers changed: the effective priority, and the trackers now in fault.

    ``priority`` is already clamped to 1..254 by the tracking code; an address owner ignores
    it. A non-empty ``faults`` puts the router in FAULT.
    """

    priority: int
    faults: frozenset[str] = frozenset()


@attrs.frozen
class MaintenanceChanged:
    """The operator took the router out of service (``on``) or put it back."""

    on: bool


@attrs.frozen
class SyncFault:
    """A sync group this router belongs to has (or no longer has) a member in FAULT.

    While ``on`` the router stays in FAULT, as keepalived's sync groups do; ``planned`` says
    the member left on purpose (maintenance), so a master hands over gracefully.
    """

    on: bool
    reason: str = ""
    planned: bool = False


@attrs.frozen
class SyncState:
    """Another member of the router's sync group became MASTER or yielded to BACKUP: follow."""

    target: State
    reason: str = ""


@attrs.frozen
class Reconfigure:
    """A reload changed this router's parameters; its state, timers and addresses carry on.

    The VRID, family and local address cannot change (they identify the router across a
    reload); everything else may. ``priority`` is the effective priority under the new
    configuration (trackers included), so that a master advertises it once, not the old one
    first; None keeps the current one (an owner is always 255).
    """

    params: RouterParams
    priority: int | None = None


@attrs.frozen
class InstallFailed:
    """The runtime could not install the router's addresses as master (``InstallVirtual``).

    ``error`` says what failed and why (``1.2.3.58/29 on eth0.4000: No such device``). The
    runtime keeps retrying; a master still failing after ``timers.install_timeout`` gives
    its addresses up (priority 0, FAULT) so that a backup able to hold them takes over.
    """

    error: str


@attrs.frozen
class InstallSucceeded:
    """A retry installed everything the router holds: a failure reported before is over
    (also sent when nothing was reported; the router then ignores it)."""


@attrs.frozen
class Shutdown:
    """Stop. ``immediate`` skips the graceful handover (a second signal)."""

    immediate: bool = False


Event = (
    Startup
    | Timeout
    | AdvertiseNow
    | PacketReceived
    | AdvertReceived
    | HealthChanged
    | MaintenanceChanged
    | SyncFault
    | SyncState
    | Reconfigure
    | InstallFailed
    | InstallSucceeded
    | Shutdown
)
