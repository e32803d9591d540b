"""One virtual router: the RFC 9568 §6.4 state machine plus keepalived's FAULT state.

Everything that decides a transition lives in this file and nowhere else. The router does
no I/O and reads no clock: ``handle(event, now)`` takes the current time in integer
microseconds and returns the actions to carry out in order; ``deadline()`` says when it next
needs a ``Timeout`` event. The runtime keeps exactly one timer per router and calls
``handle(Timeout(), max(deadline, clock))`` so an early wake-up is never mistaken for "not yet".

The router owns the wire in both directions: it decodes the ``PacketReceived`` bytes with its
own checksum mode and returns ``SendAdvert`` actions whose datagrams it encoded itself (one
per unicast peer, or one to the multicast group), so its runtime only moves bytes. Every state
change is checked against :data:`pyvrrp.core.transitions.TRANSITIONS`.

Where pyvrrp deliberately differs from a literal reading of the RFC it says so here:

- Fast preemption: a backup that preempts a lower-priority master (RFC 9568 §6.4.2 discards
  the advertisement and lets Master_Down_Timer run out, up to Master_Down_Interval) arms its
  timer for Skew_Time instead, as if the master had sent priority 0. Backups still fire in
  priority order, so the election result is the same, only faster.
- Parting advertisement: a master that yields to a higher priority sends one last
  advertisement at its own priority (keepalived's ``higher_prio_send_advert``, off there by
  default), so that the winner re-announces and clients of a healed split brain follow it.
- Re-assertion announces twice: a master that hears a lower priority announces at once and
  again ``REASSERT_REANNOUNCE`` later. A backup that takes over sends its advertisement
  before it installs and announces the addresses, so the master's answer to that
  advertisement reaches clients *before* the intruder's gratuitous ARP / unsolicited NA; the
  second announcement comes after them.
- Graceful handover: a master that leaves on purpose (shutdown, maintenance) sends priority 0
  but keeps its addresses until it hears the new master (and ``HANDOVER_GRACE`` more, while
  the new master installs and announces them), or until ``release_timeout`` passes, so
  clients lose nothing while the backup waits out its Skew_Time. Faults (a tracker failing)
  release at once, as keepalived does.
- A master that cannot install its addresses (the runtime reports ``InstallFailed`` and keeps
  retrying) stays master for ``timers.install_timeout`` (three advertisement intervals, at
  least a second), then gives them up: priority 0 and FAULT, "cannot install ...", so that a
  backup able to hold them takes over. keepalived stays master holding nothing. The fault
  clears when a retry succeeds (``InstallSucceeded``).

VRRPv2 (RFC 3768) and migration mode (``versions`` {2} and {2, 3}, RFC 9568 §8.4) run the same
state machine; what differs is in one place each (docs/design.md, "VRRPv2 and migration
mode"): the datagrams built (:meth:`VirtualRouter._build_advert`), the versions and password
decoded, a fixed interval (an advertisement carrying another is dropped, RFC 3768 §7.1, so
nothing is learned) and RFC 3768's Skew_Time (:meth:`VirtualRouter._skew_time`).

Why the module is over the project's ~700 lines: it is the state machine, and its rule is that
every decision about a transition lives here and nowhere else (as h11's ``_state.py``); the
parts that do not decide (the transition table, parameters, timers, the codec, the events
and actions) already live in their own modules.
"""

from __future__ import annotations

from collections import Counter
from typing import Never, NoReturn

import attrs

from pyvrrp.core import timers
from pyvrrp.core.actions import (
    Action,
    Announce,
    Cause,
    Datagram,
    Dropped,
    InstallVirtual,
    Notice,
    NoticeKind,
    RemoveVirtual,
    SendAdvert,
    State,
    StateChanged,
)
from pyvrrp.core.errors import UsageError
from pyvrrp.core.events import (
    AdvertiseNow,
    AdvertReceived,
    Event,
    HealthChanged,
    InstallFailed,
    InstallSucceeded,
    MaintenanceChanged,
    PacketReceived,
    Reconfigure,
    Shutdown,
    Startup,
    SyncFault,
    SyncState,
    Timeout,
)
from pyvrrp.core.packet import (
    VRRP_VERSION,
    VRRP_VERSION_2,
    Advertisement,
    DecodeError,
    DropReason,
    IPAddress,
    decode,
    encode,
    encode_v2,
)
from pyvrrp.core.params import OWNER_PRIORITY, V2_ONLY, RouterParams, check_range
from pyvrrp.core.transitions import check_transition

__all__ = [
    "HANDOVER_GRACE",
    "HANDOVER_REANNOUNCE",
    "OWNER_PRIORITY",
    "PEER_LIMIT",
    "REASSERT_REANNOUNCE",
    "PeerStatistics",
    "RouterError",
    "RouterParams",
    "RouterStatistics",
    "VirtualRouter",
]

# How long a leaving master keeps its addresses after hearing the new master (microseconds).
HANDOVER_GRACE = 100_000
# After taking over from a master that left on purpose (priority 0), announce once more when
# that master has let go of the addresses (HANDOVER_GRACE after hearing us, and some room):
# during the overlap both answer ARP/ND, and a client that re-resolved then took the old
# master's MAC; without this it would wait for the second burst (garp_delay, 5 s).
HANDOVER_REANNOUNCE = 3 * HANDOVER_GRACE
# A master that re-asserts against a lower priority announces again this long after
# (microseconds). A backup whose Master_Down_Timer fired sends its advertisement first, then
# installs and announces the addresses: the master answers that advertisement at once, so
# its announcement reaches the segment a millisecond *before* the intruder's, and clients
# follow the intruder. The intruder yields on hearing our advertisement, and its parting
# advertisement (which makes us announce after it) can be lost like any other: then clients
# waited for their neighbour unreachability detection (Linux: ~8 s). 0.3 s is well after the
# intruder's burst on a busy machine and short against that.
REASSERT_REANNOUNCE = 300_000

PEER_LIMIT = 32
"""How many peers a router keeps statistics for; past it, the one heard longest ago goes (a
multicast LAN can hold any number of sources, and memory must stay bounded)."""

RouterError = UsageError
"""Deprecated name of :class:`pyvrrp.core.errors.UsageError`, the core's one misuse error."""


def _unknown(value: Never) -> NoReturn:
    """``typing.assert_never`` with the core's error: mypy proves every call unreachable (each
    member of the union has its case), and a caller passing a non-member at run time gets a
    :class:`UsageError` naming it rather than an AssertionError."""
    raise UsageError(f"unknown event {value!r}")


@attrs.frozen
class PeerStatistics:
    """What a router accepted from one source address, per VRRP version.

    ``adverts`` is version -> advertisements accepted (they passed every receive rule),
    ``last_seen`` version -> when the last one arrived (microseconds, the router's clock): in
    migration mode they say which peers still speak VRRPv2.
    """

    adverts: dict[int, int]
    last_seen: dict[int, int]

    @property
    def versions(self) -> frozenset[int]:
        """The versions this peer has been heard speaking."""
        return frozenset(self.adverts)

    @property
    def last(self) -> int:
        """When the last advertisement from this peer was accepted, in any version."""
        return max(self.last_seen.values())


@attrs.frozen
class RouterStatistics:
    """A snapshot of a router's state and counters (``VirtualRouter.statistics()``)."""

    state: State
    state_since: int
    base_priority: int
    effective_priority: int
    faults: frozenset[str]
    maintenance: bool
    holding_addresses: bool
    master_address: IPAddress | None
    master_priority: int | None
    master_adver_interval: int
    adverts_sent: int
    adverts_received: int
    priority_zero_sent: int
    priority_zero_received: int
    became_master: int
    drops: dict[DropReason, int]
    install_fault: str | None = None  # the installation failure it gave its addresses up for
    peers: dict[IPAddress, PeerStatistics] = attrs.field(factory=dict)

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())


class VirtualRouter:
    """The state machine of one VRID in one address family on one interface."""

    def __init__(self, params: RouterParams) -> None:
        self.params = params
        self._state = State.INITIALIZE
        self._state_since = 0
        self._effective_priority = params.priority
        self._faults: frozenset[str] = frozenset()
        self._maintenance = False
        self._sync_fault: str | None = None  # why our sync group holds us in FAULT
        self._sync_planned = False
        self._stopping = False
        # RFC 9568 §6.1 Master_Adver_Interval: our own until learned from a master.
        self._master_adver_interval = timers.centiseconds(params.advert_interval_cs)
        # The RFC's one timer: Master_Down_Timer in Backup, Adver_Timer in Master.
        self._timer: int | None = None
        # When the down timer was last started and whether it runs Skew_Time or
        # Master_Down_Interval, so a priority change can recompute it.
        self._down_started = 0
        self._down_is_skew = False
        self._down_cause = Cause.MASTER_DOWN
        self._preempt_until: int | None = None
        self._announce_at: int | None = None
        self._reannounce_at: int | None = None
        self._refresh_at: int | None = None
        self._holding = False
        self._release_at: int | None = None
        self._master_address: IPAddress | None = None
        self._master_priority: int | None = None
        self._sent = 0
        self._received = 0
        self._zero_sent = 0
        self._zero_received = 0
        self._became_master = 0
        self._drops: Counter[DropReason] = Counter()
        # Installation failures reported by the runtime (InstallFailed): the last error while
        # they go on, when a master gives up, and the error it gave up for (in FAULT).
        self._install_error: str | None = None
        self._install_deadline: int | None = None
        self._install_fault: str | None = None
        # source -> (version -> accepted count, version -> last time); see PeerStatistics.
        self._peers: dict[IPAddress, tuple[Counter[int], dict[int, int]]] = {}
        # The last advertisement built, bytes included (see _advertise).
        self._send_advert: SendAdvert | None = None
        # The last packet decoded and its advertisement; the notices of the last one checked
        # (what decode and _notices make depends only on them and on the parameters).
        self._last_decoded: tuple[PacketReceived, Advertisement] | None = None
        self._last_notices: tuple[Advertisement, IPAddress, tuple[Notice, ...]] | None = None
        self._family = params.family
        # The packet just handled, while its repetition would only restart the
        # Master_Down_Timer (routine_packet); _candidate: the packet handled last, when it
        # was accepted so (_repeatable) once, the routine packet when a copy follows it.
        self._routine: PacketReceived | None = None
        self._candidate: PacketReceived | None = None
        self._repeatable = False

    # ----------------------------------------------------------------- read-only views

    @property
    def state(self) -> State:
        return self._state

    @property
    def priority(self) -> int:
        """The effective priority: base plus trackers, clamped; 255 for an owner."""
        return self._effective_priority

    @property
    def holding_addresses(self) -> bool:
        """Whether the virtual addresses are (or are being kept) installed."""
        return self._holding

    @property
    def own_fault(self) -> bool:
        """In FAULT for a reason of its own (a tracker, maintenance, addresses it could not
        install), not its sync group's."""
        return bool(self._faults) or self._maintenance or self._install_fault is not None

    @property
    def planned_fault(self) -> bool:
        """The own fault is maintenance only (a planned departure), not a failure."""
        return self._maintenance and not self._faults and self._install_fault is None

    @property
    def install_fault(self) -> str | None:
        """The installation error this router gave its addresses up for, while in FAULT for
        it; the runtime keeps retrying and reports ``InstallSucceeded`` when one works."""
        return self._install_fault

    @property
    def wants_holdings(self) -> bool:
        """Whether its addresses should be installed now (a master, or a leaving master
        within its graceful handover)."""
        return self._holding

    @property
    def sync_fault(self) -> bool:
        return self._sync_fault is not None

    @property
    def stopped(self) -> bool:
        """True once a shutdown has completed: nothing left to send or remove."""
        return self._stopping and self._state is State.INITIALIZE and not self._holding

    @property
    def adver_timer(self) -> int | None:
        """A master's Adver_Timer (when it sends its next advertisement), else None."""
        return self._timer if self._state is State.MASTER else None

    @property
    def routine_packet(self) -> PacketReceived | None:
        """The packet whose repetition would change nothing but the counters and the
        Master_Down_Timer, or None.

        It is the last event handled, when that was a backup accepting its master's
        advertisement (priority above 0, one it does not preempt: RFC 9568 §6.4.2's restart
        of the timer) with nothing else to do (no notice, no handover under way), and the
        event before it was the same packet, accepted so too: a master in a steady state,
        not a change under way (the copies a runtime takes elsewhere are counted late, at
        its next look, and while senders change a late count could reorder them). Any other
        event clears it. A runtime that takes such repetitions elsewhere (the kernel: see
        pyvrrp/runtime/absorb.py) reports them with :meth:`heard_again`.
        """
        return self._routine

    def heard_again(self, count: int, last: int) -> None:
        """``count`` more copies of :attr:`routine_packet` arrived, the last at ``last``
        (microseconds): exactly as if each had been handled, in order.

        Only the counters and the Master_Down_Timer (restarted from ``last``) change; the
        routine packet stays. UsageError when there is no routine packet.
        """
        event = self._routine
        decoded = self._last_decoded
        if event is None or decoded is None:
            raise UsageError("heard_again without a routine packet (routine_packet is None)")
        if count <= 0:
            return
        at = max(last, self._down_started)
        self._received += count
        self._count_peer(event.source, decoded[1].version, at, count)
        self._start_down_timer(at, skew=False, cause=Cause.MASTER_DOWN)

    @property
    def master_down_interval(self) -> int:
        """Master_Down_Interval (µs): what hearing the master again restarts the
        Master_Down_Timer with (3 x Master_Adver_Interval + Skew_Time)."""
        return 3 * self._master_adver_interval + self._skew_time()

    @property
    def down_timer(self) -> int | None:
        """A backup's Master_Down_Timer (when it takes over unless it hears its master),
        else None."""
        return self._timer if self._state is State.BACKUP else None

    def side_deadline(self) -> int | None:
        """The earliest deadline besides the RFC's one timer, or None."""
        return min((t for t in self._side_timers() if t is not None), default=None)

    def _side_timers(self) -> tuple[int | None, ...]:
        """Every deadline besides the RFC's one timer (``Timeout`` handles them all)."""
        return (
            self._announce_at,
            self._reannounce_at,
            self._refresh_at,
            self._release_at,
            self._install_deadline,
        )

    def deadline(self) -> int | None:
        """When this router next needs ``Timeout``, or None."""
        earliest = self._timer
        for t in self._side_timers():
            if t is not None and (earliest is None or t < earliest):
                earliest = t
        return earliest

    def statistics(self) -> RouterStatistics:
        return RouterStatistics(
            state=self._state,
            state_since=self._state_since,
            base_priority=self.params.priority,
            effective_priority=self._effective_priority,
            faults=self._faults,
            maintenance=self._maintenance,
            holding_addresses=self._holding,
            master_address=self._master_address,
            master_priority=self._master_priority,
            master_adver_interval=self._master_adver_interval,
            adverts_sent=self._sent,
            adverts_received=self._received,
            priority_zero_sent=self._zero_sent,
            priority_zero_received=self._zero_received,
            became_master=self._became_master,
            drops=dict(self._drops),
            install_fault=self._install_fault,
            peers={
                source: PeerStatistics(dict(adverts), dict(last_seen))
                for source, (adverts, last_seen) in self._peers.items()
            },
        )

    # ------------------------------------------------------------------------ events

    def handle(self, event: Event, now: int) -> list[Action]:
        """Process one event at time ``now`` (microseconds) and return the actions to run."""
        self._routine = None
        candidate, self._candidate = self._candidate, None
        match event:
            case Timeout():
                return self._on_timeout(now)
            case AdvertiseNow():
                return self._on_advertise_now(now)
            case PacketReceived():
                last = self._last_decoded
                if last is not None and last[0] == event:
                    # The same bytes from the same sender as last time (a master sends the
                    # same advertisement every interval): the same decoded advertisement.
                    actions = self._on_advert(event.source, last[1], now)
                    if self._repeatable and not actions and not self._holding:
                        self._candidate = event
                        if candidate == event:
                            self._routine = event
                    return actions
                try:
                    advert = decode(
                        event.message,
                        source=event.source,
                        destination=event.destination,
                        ttl=event.ttl,
                        checksum_mode=self.params.checksum_mode,
                        versions=self.params.versions,
                        auth_pass=self.params.auth_pass,
                    )
                except DecodeError as exc:
                    return [self._drop(exc.reason, event.source, exc.detail)]
                self._last_decoded = (event, advert)
                actions = self._on_advert(event.source, advert, now)
                if self._repeatable and not actions and not self._holding:
                    self._candidate = event  # new bytes: routine from their next copy
                return actions
            case AdvertReceived():
                return self._on_advert(event.source, event.advert, now)
            case HealthChanged():
                return self._on_health(event, now)
            case MaintenanceChanged():
                return self._on_maintenance(event.on, now)
            case SyncFault():
                return self._on_sync_fault(event, now)
            case SyncState():
                return self._on_sync_state(event, now)
            case Reconfigure():
                return self._on_reconfigure(event.params, event.priority, now)
            case InstallFailed():
                return self._on_install_failed(event.error, now)
            case InstallSucceeded():
                return self._on_install_succeeded(now)
            case Startup():
                return self._on_startup(now)
            case Shutdown():
                return self._on_shutdown(event.immediate, now)
            case _:
                _unknown(event)

    # ------------------------------------------------------------------ the machine

    def _in_fault(self) -> bool:
        return self.own_fault or self._sync_fault is not None

    def _fault_reason(self) -> tuple[Cause, str]:
        if self._maintenance:
            return Cause.MAINTENANCE, "maintenance mode"
        if self._faults:
            return Cause.FAULT, "fault: " + ", ".join(sorted(self._faults))
        if self._install_fault is not None:
            return Cause.FAULT, f"cannot install {self._install_fault}"
        return Cause.SYNC_GROUP, self._sync_fault or "sync group"

    def _on_startup(self, now: int) -> list[Action]:
        # RFC 9568 §6.4.1
        if self._state is not State.INITIALIZE or self._stopping:
            raise UsageError("Startup is only valid once, in Initialize")
        if self.params.preempt_delay_us:
            self._preempt_until = now + self.params.preempt_delay_us
        if self._in_fault():
            cause, reason = self._fault_reason()
            return [self._set_state(State.FAULT, cause, reason, now)]
        if self.params.owner:
            return self._become_master(now, Cause.OWNER, "address owner (priority 255)")
        return self._become_backup(now, Cause.STARTUP, "startup")

    def _on_timeout(self, now: int) -> list[Action]:
        actions: list[Action] = []
        if self._install_deadline is not None and self._install_deadline <= now:
            # Still failing: give the addresses up so that a backup able to hold them takes
            # over (priority 0 and FAULT, released at once as for any fault).
            self._install_deadline = None
            self._install_fault = self._install_error or "the virtual addresses"
            return self._after_health_change(False, self._effective_priority, now, planned=False)
        if self._release_at is not None and self._release_at <= now:
            actions += self._release(now)
        if self._timer is not None and self._timer <= now:
            if self._state is State.BACKUP:
                # RFC 9568 §6.4.2: Master_Down_Timer fired.
                cause = self._down_cause
                reasons = {
                    Cause.MASTER_DOWN: "no advertisement for Master_Down_Interval",
                    Cause.MASTER_LEFT: "the master left (priority 0)",
                    Cause.PREEMPT: "preempting a lower-priority master",
                }
                actions += self._become_master(now, cause, reasons[cause])
            else:  # only BACKUP and MASTER run this timer
                actions.append(self._adver_timer_fired(self._timer, now))
        if self._state is State.MASTER:
            if self._announce_at is not None and self._announce_at <= now:
                self._announce_at = None
                actions.append(Announce())
            if self._reannounce_at is not None and self._reannounce_at <= now:
                self._reannounce_at = None
                actions.append(Announce())
            if self._refresh_at is not None and self._refresh_at <= now:
                self._refresh_at = now + self.params.garp_refresh_us
                actions.append(Announce())
        return actions

    def _adver_timer_fired(self, timer: int, now: int) -> SendAdvert:
        # RFC 9568 §6.4.3: Adver_Timer fired: send, restart it. From the deadline, not from
        # when the Timeout was handled: a runtime that wakes late must not push every later
        # advertisement back by as much (the interval would drift). Late by a whole interval
        # or more: from now, no burst.
        send = self._advertise(self._effective_priority)
        interval = timers.centiseconds(self.params.advert_interval_cs)
        following = timer + interval
        self._timer = following if following > now else now + interval
        return send

    def routine_advert(self, now: int) -> SendAdvert | None:
        """A master's routine wake-up: when its Adver_Timer is all that is due at ``now``,
        do what ``handle(Timeout(), now)`` does then (send, restart the timer) and return
        the one action that results; else None and nothing changes (hand it ``Timeout``).

        The same transition as the event's, without building the event and the list of
        actions: a runtime calls this for each master at each interval (docs/design.md,
        "Routine advertisements")."""
        timer = self._timer
        if self._state is not State.MASTER or timer is None or timer > now:
            return None
        for t in self._side_timers():
            if t is not None and t <= now:
                return None
        return self._adver_timer_fired(timer, now)

    def _on_advertise_now(self, now: int) -> list[Action]:
        if self._state is not State.MASTER or self._timer is None:
            return []
        if self._timer <= now:
            return self._on_timeout(now)
        # RFC 9568 §6.4.3 as if the Adver_Timer fired now: send, restart it from now.
        self._timer = now + timers.centiseconds(self.params.advert_interval_cs)
        return [self._advertise(self._effective_priority)]

    def _on_advert(self, source: IPAddress, advert: Advertisement, now: int) -> list[Action]:
        self._repeatable = False
        if advert.vrid != self.params.vrid or advert.family is not self._family:
            return [self._drop(DropReason.UNKNOWN_VRID, source, f"VRID {advert.vrid}")]
        if source == self.params.local_address:
            return [self._drop(DropReason.OWN_ADVERT, source, "our own advertisement")]
        peers = self.params.unicast_peers
        if peers and self.params.unicast_peers_only and source not in peers:
            return [self._drop(DropReason.NOT_A_PEER, source, f"{source} is not in unicast_peers")]
        if advert.version not in self.params.versions:  # decoded elsewhere (AdvertReceived)
            return [
                self._drop(
                    DropReason.VERSION,
                    source,
                    f"a VRRPv{advert.version} advertisement; this instance speaks version "
                    + " and ".join(map(str, sorted(self.params.versions))),
                )
            ]
        if self.params.speaks_v2 and advert.max_advert_interval != self.params.advert_interval_cs:
            return [self._drop(DropReason.INTERVAL_MISMATCH, source, self._mismatch(advert))]
        self._received += 1
        self._count_peer(source, advert.version, now)
        if advert.priority == 0:
            self._zero_received += 1
        seen = self._last_notices
        if seen is not None and seen[0] is advert and seen[1] == source:
            notices = seen[2]
        else:
            notices = tuple(self._notices(source, advert))
            self._last_notices = (advert, source, notices)
        actions: list[Action] = list(notices)
        if self._holding and self._state is not State.MASTER and advert.priority > 0:
            # Graceful handover: the new master is advertising. It installs and announces
            # the addresses right after this first advertisement, so ours go a moment later,
            # when clients already follow its announcements (releasing at once loses the
            # packets sent in between).
            release = now + HANDOVER_GRACE
            if self._release_at is None or release < self._release_at:
                self._release_at = release

        if self._state is State.BACKUP:
            actions += self._backup_advert(source, advert, now)
        elif self._state is State.MASTER:
            actions += self._master_advert(source, advert, now)
        # Initialize and Fault ignore advertisements (keepalived's FAULT is silent).
        return actions

    def _backup_advert(self, source: IPAddress, advert: Advertisement, now: int) -> list[Action]:
        # RFC 9568 §6.4.2
        if advert.priority == 0:
            self._start_down_timer(now, skew=True, cause=Cause.MASTER_LEFT)
            self._master_address = None
            self._master_priority = None
            return []
        preempt = self.params.preempt or self.params.owner
        if advert.priority >= self._effective_priority:
            self._preempt_until = None
        delaying = (
            self._delaying_preemption(now) if advert.priority < self._effective_priority else False
        )
        self._master_address = source
        self._master_priority = advert.priority
        if not preempt or advert.priority >= self._effective_priority or delaying:
            self._master_adver_interval = timers.centiseconds(advert.max_advert_interval)
            self._start_down_timer(now, skew=False, cause=Cause.MASTER_DOWN)
            # Accepted for what it is, not for the time (a preemption delay ends): the same
            # advertisement again would do only this.
            self._repeatable = not preempt or advert.priority >= self._effective_priority
        else:
            # Discard; fast preemption (module docstring) arms the timer for Skew_Time.
            skew = self._skew_time()
            if self._timer is None or now + skew < self._timer:
                self._start_down_timer(now, skew=True, cause=Cause.PREEMPT)
        return []

    def _delaying_preemption(self, now: int) -> bool:
        """keepalived's preempt_delay: accept a lower-priority master for a while."""
        if not self.params.preempt_delay_us:
            return False
        if self._preempt_until is None:
            self._preempt_until = now + self.params.preempt_delay_us
        return now < self._preempt_until

    def _master_advert(self, source: IPAddress, advert: Advertisement, now: int) -> list[Action]:
        # RFC 9568 §6.4.3
        interval = timers.centiseconds(self.params.advert_interval_cs)
        if advert.priority == 0:
            self._timer = now + interval
            return [self._advertise(self._effective_priority)]
        mine = self._effective_priority
        if advert.priority > mine or (
            advert.priority == mine and int(source) > int(self.params.local_address)
        ):
            # A parting advertisement at our own priority (keepalived's
            # higher_prio_send_advert, on here): the new master hears a lower priority, so it
            # re-asserts and re-announces. After a split brain, clients that followed our
            # announcements would otherwise keep our MAC until their neighbour entry expires.
            parting = self._advertise(mine)
            self._master_adver_interval = timers.centiseconds(advert.max_advert_interval)
            self._master_address = source
            self._master_priority = advert.priority
            return [
                parting,
                *self._become_backup(
                    now,
                    Cause.HIGHER_PRIORITY,
                    f"{source} advertises priority {advert.priority} (ours {mine})",
                ),
            ]
        # A lower priority: reassert at once and repeat announcements (heals split brain
        # and stale ARP/ND caches; RFC 9568 §6.4.3 and keepalived), and once more after the
        # lower-priority router's own announcements (REASSERT_REANNOUNCE).
        self._timer = now + interval
        self._reannounce_at = now + REASSERT_REANNOUNCE
        return [self._advertise(mine), Announce()]

    def _on_health(self, event: HealthChanged, now: int) -> list[Action]:
        if not self.params.owner:
            check_range("priority", event.priority, 1, 254)
            old_priority, self._effective_priority = self._effective_priority, event.priority
        else:
            old_priority = self._effective_priority
        was_faulty = self._in_fault()
        self._faults = event.faults
        return self._after_health_change(was_faulty, old_priority, now, planned=False)

    def _on_maintenance(self, on: bool, now: int) -> list[Action]:
        was_faulty = self._in_fault()
        self._maintenance = on
        return self._after_health_change(was_faulty, self._effective_priority, now, planned=True)

    def _on_reconfigure(self, params: RouterParams, priority: int | None, now: int) -> list[Action]:
        """A reload: new parameters, same router (no flap, no priority 0)."""
        old, old_priority = self.params, self._effective_priority
        if (params.vrid, params.family, params.local_address) != (
            old.vrid,
            old.family,
            old.local_address,
        ):
            raise UsageError("Reconfigure cannot change the VRID, family or local address")
        self.params = params
        self._last_decoded = self._last_notices = None  # decoded under the old parameters
        self._family = params.family
        if params != old:
            self._send_advert = None  # what the bytes carry may have changed
        if params.speaks_v2:
            # VRRPv2 learns no interval: a backup that had learned a VRRPv3 master's (a reload
            # from 3 to 2+3) times out on ours, the interval every advert it accepts carries.
            self._master_adver_interval = timers.centiseconds(params.advert_interval_cs)
        if params.owner:
            self._effective_priority = OWNER_PRIORITY
        elif priority is not None:
            check_range("priority", priority, 1, OWNER_PRIORITY - 1)
            self._effective_priority = priority
        elif old.owner:
            # Trackers will follow with HealthChanged; until then, the base priority.
            self._effective_priority = min(params.priority, OWNER_PRIORITY - 1)
        if params == old and self._effective_priority == old_priority:
            return []
        if self._state is State.MASTER:
            # Tell the backups at once (addresses, interval or priority may have changed).
            self._timer = now + timers.centiseconds(params.advert_interval_cs)
            self._master_priority = self._effective_priority
            self._master_adver_interval = timers.centiseconds(params.advert_interval_cs)
            if params.garp_refresh_us != old.garp_refresh_us:
                self._refresh_at = now + params.garp_refresh_us if params.garp_refresh_us else None
            return [self._advertise(self._effective_priority)]
        if self._state is State.BACKUP:
            self._start_down_timer(
                self._down_started, skew=self._down_is_skew, cause=self._down_cause
            )
        return []

    def _on_install_failed(self, error: str, now: int) -> list[Action]:
        self._install_error = error
        if self._install_fault is not None:
            return []  # a retry in FAULT failed again: the reason stays the one given up for
        if self._state is State.MASTER and self._install_deadline is None:
            interval = timers.centiseconds(self.params.advert_interval_cs)
            self._install_deadline = now + timers.install_timeout(interval)
        return []

    def _on_install_succeeded(self, now: int) -> list[Action]:
        self._install_error = None
        self._install_deadline = None
        if self._install_fault is None:
            return []
        was_faulty = self._in_fault()
        self._install_fault = None
        return self._after_health_change(was_faulty, self._effective_priority, now, planned=True)

    def _on_sync_fault(self, event: SyncFault, now: int) -> list[Action]:
        was_faulty = self._in_fault()
        self._sync_fault = (event.reason or "a sync group member is in FAULT") if event.on else None
        planned = event.planned if event.on else True
        return self._after_health_change(was_faulty, self._effective_priority, now, planned=planned)

    def _on_sync_state(self, event: SyncState, now: int) -> list[Action]:
        # keepalived's sync groups: members become master together, and yield together.
        reason = event.reason or f"sync group: another member became {event.target.value}"
        if event.target is State.MASTER and self._state is State.BACKUP:
            return self._become_master(now, Cause.SYNC_GROUP, reason)
        if event.target is State.BACKUP and self._state is State.MASTER:
            return self._become_backup(now, Cause.SYNC_GROUP, reason)
        return []

    def _after_health_change(
        self, was_faulty: bool, old_priority: int, now: int, *, planned: bool
    ) -> list[Action]:
        actions: list[Action] = []
        if self._faults and self._holding and self._state is not State.MASTER:
            # A real fault ends a graceful handover at once, a shutdown's (Initialize) too.
            actions += self._release(now)
        if self._state is State.INITIALIZE:
            return actions  # recorded; Startup decides
        faulty = self._in_fault()
        if faulty and not was_faulty:
            cause, reason = self._fault_reason()
            return actions + self._enter_fault(now, cause, reason, planned=planned)
        if was_faulty and not faulty:
            # Leaving FAULT is a restart, as keepalived does it: our own interval until a
            # master teaches us its own (RFC 9568 §6.4.1), and preempt_delay runs anew.
            self._master_adver_interval = timers.centiseconds(self.params.advert_interval_cs)
            if self.params.preempt_delay_us:
                self._preempt_until = now + self.params.preempt_delay_us
            if self.params.owner:
                return actions + self._become_master(now, Cause.RECOVERED, "faults cleared")
            return actions + self._become_backup(now, Cause.RECOVERED, "faults cleared")
        if self._effective_priority != old_priority:
            if self._state is State.MASTER:
                # A master advertises its new priority at once.
                self._timer = now + timers.centiseconds(self.params.advert_interval_cs)
                self._master_priority = self._effective_priority
                actions.append(self._advertise(self._effective_priority))
            elif self._state is State.BACKUP:
                # Skew_Time depends on our priority: recompute the running down timer.
                self._start_down_timer(
                    self._down_started, skew=self._down_is_skew, cause=self._down_cause
                )
        return actions

    def _on_shutdown(self, immediate: bool, now: int) -> list[Action]:
        # RFC 9568 §6.4.2/§6.4.3 Shutdown
        if self._stopping:
            return self._release(now) if immediate and self._holding else []
        self._stopping = True
        if self._state is State.INITIALIZE:
            return []
        actions: list[Action] = []
        was_master = self._state is State.MASTER
        if was_master:
            actions.append(self._advertise(0))
            self._leave_master()
        self._timer = None
        if immediate or not self.params.graceful_handover:
            actions += self._release(now)
        elif was_master:
            self._release_at = now + timers.release_timeout(self._master_adver_interval)
        # else: a handover already under way (maintenance) keeps its release time.
        # The state change (the STOP notification) comes after any removal, as in keepalived.
        actions.append(self._set_state(State.INITIALIZE, Cause.SHUTDOWN, "shutdown", now))
        return actions

    # ------------------------------------------------------------------ transitions

    def _become_master(self, now: int, cause: Cause, reason: str) -> list[Action]:
        actions: list[Action] = [self._advertise(self._effective_priority)]
        if not self._holding:
            actions.append(InstallVirtual())
            self._holding = True
        self._release_at = None
        actions.append(Announce())
        self._timer = now + timers.centiseconds(self.params.advert_interval_cs)
        self._master_adver_interval = timers.centiseconds(self.params.advert_interval_cs)
        self._announce_at = now + self.params.garp_delay_us if self.params.garp_delay_us else None
        self._reannounce_at = now + HANDOVER_REANNOUNCE if cause is Cause.MASTER_LEFT else None
        self._refresh_at = (
            now + self.params.garp_refresh_us if self.params.garp_refresh_us else None
        )
        self._master_address = self.params.local_address
        self._master_priority = self._effective_priority
        self._became_master += 1
        actions.append(self._set_state(State.MASTER, cause, reason, now))
        return actions

    def _become_backup(self, now: int, cause: Cause, reason: str) -> list[Action]:
        actions: list[Action] = []
        self._leave_master()
        if self._holding:
            actions += self._release(now)
        self._start_down_timer(now, skew=False, cause=Cause.MASTER_DOWN)
        actions.append(self._set_state(State.BACKUP, cause, reason, now))
        return actions

    def _enter_fault(self, now: int, cause: Cause, reason: str, *, planned: bool) -> list[Action]:
        actions: list[Action] = []
        if self._state is State.MASTER:
            actions.append(self._advertise(0))
            self._leave_master()
            if planned and self.params.graceful_handover:
                self._release_at = now + timers.release_timeout(self._master_adver_interval)
            else:
                actions += self._release(now)
        self._timer = None
        self._master_address = None
        self._master_priority = None
        actions.append(self._set_state(State.FAULT, cause, reason, now))
        return actions

    def _leave_master(self) -> None:
        self._timer = None
        self._announce_at = None
        self._reannounce_at = None
        self._refresh_at = None
        # An installation failure no longer matters to a router that holds nothing.
        self._install_deadline = None
        self._install_error = None

    def _release(self, now: int) -> list[Action]:
        self._release_at = None
        if not self._holding:
            return []
        self._holding = False
        return [RemoveVirtual()]

    def _start_down_timer(self, start: int, *, skew: bool, cause: Cause) -> None:
        self._down_started = start
        self._down_is_skew = skew
        self._down_cause = cause
        skew_time = self._skew_time()
        self._timer = start + (skew_time if skew else 3 * self._master_adver_interval + skew_time)

    def _skew_time(self) -> int:
        """Skew_Time at our effective priority: RFC 3768 §6.1's whenever we speak VRRPv2.

        In migration mode too: a 2+3 router must time out exactly as the VRRPv2 routers of
        its cluster do, or a lower-priority one could fire first and be preempted at once.
        Master_Down_Interval is 3 x Master_Adver_Interval plus this, in both RFCs.
        """
        if self.params.speaks_v2:
            return timers.skew_time_v2(self._effective_priority)
        return timers.skew_time(self._effective_priority, self._master_adver_interval)

    def _set_state(self, new: State, cause: Cause, reason: str, now: int) -> StateChanged:
        # The one place a state changes: checked against the table of allowed transitions.
        check_transition(self._state, new, cause)
        old, self._state = self._state, new
        self._state_since = now
        return StateChanged(old, new, cause, reason, self._effective_priority)

    def _advertise(self, priority: int) -> SendAdvert:
        self._sent += 1
        if priority == 0:
            self._zero_sent += 1
        send = self._send_advert
        if send is None or send.advert.priority != priority:
            # Built once per priority and parameters (Reconfigure clears it): a master sends
            # the same bytes every Adver_Timer.
            send = self._send_advert = self._build_advert(priority)
        return send

    def _build_advert(self, priority: int) -> SendAdvert:
        """The advertisement at ``priority`` encoded for every destination, in order.

        Speaking VRRPv2, one VRRPv2 datagram per destination (one message: VRRPv2's checksum
        covers no address); in migration mode these come first, then the VRRPv3 ones: the
        routers that hear only VRRPv2 (keepalived's default) learn of a takeover first, and
        the 2+3 ones act on whichever arrives first (docs/design.md, "VRRPv2 and migration
        mode"). ``advert.version`` is 2 for a VRRPv2-only router, else 3.
        """
        params = self.params
        v2_only = params.versions == V2_ONLY
        advert = Advertisement(
            vrid=params.vrid,
            priority=priority,
            max_advert_interval=params.advert_interval_cs,
            addresses=params.addresses,
            version=VRRP_VERSION_2 if v2_only else VRRP_VERSION,
        )
        source = params.local_address
        datagrams: list[Datagram] = []
        if params.speaks_v2:
            message = encode_v2(advert, auth_pass=params.auth_pass)
            datagrams += (Datagram(message, source, d) for d in params.destinations)
        if not v2_only:
            datagrams += (
                Datagram(
                    encode(
                        advert,
                        source=source,
                        destination=destination,
                        checksum_mode=params.checksum_mode,
                    ),
                    source,
                    destination,
                )
                for destination in params.destinations
            )
        return SendAdvert(advert, tuple(datagrams))

    def _mismatch(self, advert: Advertisement) -> str:
        """The detail of an INTERVAL_MISMATCH drop (RFC 3768 §7.1)."""
        mode = "VRRPv2" if self.params.versions == V2_ONLY else 'migration mode ("2+3")'
        return (
            f"VRRPv{advert.version} advertisement every {advert.max_advert_interval / 100:g} s,"
            f" this instance is configured for {self.params.advert_interval_cs / 100:g} s; in"
            f" {mode} the interval is not learned (RFC 3768 §7.1): set the same advert_interval"
            " (keepalived: advert_int) on every router of this VRID"
        )

    def _count_peer(self, source: IPAddress, version: int, now: int, count: int = 1) -> None:
        """Per-peer statistics (PeerStatistics): bounded by PEER_LIMIT."""
        record = self._peers.get(source)
        if record is None:
            if len(self._peers) >= PEER_LIMIT:
                oldest = min(self._peers, key=lambda p: max(self._peers[p][1].values()))
                del self._peers[oldest]
            record = self._peers[source] = (Counter(), {})
        record[0][version] += count
        record[1][version] = now

    def _drop(self, reason: DropReason, source: IPAddress, detail: str) -> Dropped:
        self._drops[reason] += 1
        return Dropped(reason, source, detail)

    def _notices(self, source: IPAddress, advert: Advertisement) -> list[Notice]:
        notices = []
        if set(advert.addresses) != set(self.params.addresses):
            notices.append(
                Notice(
                    NoticeKind.ADDRESS_MISMATCH,
                    source,
                    f"advertises {', '.join(map(str, advert.addresses))} for VRID "
                    f"{advert.vrid}, we have {', '.join(map(str, self.params.addresses))}: "
                    "a misconfiguration or another cluster using the same VRID",
                )
            )
        if advert.max_advert_interval != self.params.advert_interval_cs and advert.priority:
            notices.append(
                Notice(
                    NoticeKind.INTERVAL_MISMATCH,
                    source,
                    f"advertises every {advert.max_advert_interval / 100:g} s, "
                    f"we are configured for {self.params.advert_interval_cs / 100:g} s",
                )
            )
        if self.params.owner and advert.priority == OWNER_PRIORITY:
            notices.append(
                Notice(
                    NoticeKind.OWNER_CONFLICT,
                    source,
                    "also claims to own the addresses (priority 255)",
                )
            )
        return notices
