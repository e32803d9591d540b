"""One instance at run time: its router, its inbox, its driver task and what its actions do.

Events reach the router one at a time, in order, by one of two ways:

- the fast path: while the driver task is idle (waiting on an empty inbox), a received packet
  (:meth:`Instance.deliver`) or a due deadline (the node's shared
  :class:`~pyvrrp.runtime.schedule.Schedule` calling back; not a backup's Master_Down_Timer:
  a takeover goes to the driver whole) is handed to the router at once,
  in the task that has it, and the actions that need no waiting (sending an advertisement,
  publishing a state change, logging a drop) are carried out there too: no task switch per
  packet or per advertisement, which is most of what a router costs when nothing happens
  (docs/benchmarks.md, "Cost at scale");
- the driver task: everything else (control events, tracker health, installation retries)
  goes through the inbox, and so does whatever arrives while the driver is busy. When the
  fast path meets an action that must wait (installing or removing addresses, announcing
  them), it hands that action and the rest to the driver, which carries them out in order
  before taking anything else from the inbox.

Either way the router's next deadline is armed in the schedule after each event. An instance
knows nothing of the node around it: what it needs (netlink, announcements, where state
changes go) is passed at construction.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, assert_never

import attrs
import trio

from pyvrrp.core import timers
from pyvrrp.core.actions import (
    Action,
    Announce,
    Cause,
    Dropped,
    InstallVirtual,
    Notice,
    RemoveVirtual,
    SendAdvert,
    State,
    StateChanged,
)
from pyvrrp.core.config import InstanceConfig
from pyvrrp.core.events import (
    AdvertiseNow,
    Event,
    InstallFailed,
    InstallSucceeded,
    PacketReceived,
    Startup,
    Timeout,
)
from pyvrrp.core.packet import Family, IPAddress
from pyvrrp.core.params import RouterParams
from pyvrrp.core.router import HANDOVER_GRACE, RouterStatistics, VirtualRouter
from pyvrrp.core.tracking import Health
from pyvrrp.runtime.holdings import Holdings, Item, remove_items
from pyvrrp.runtime.logs import RateLimiter
from pyvrrp.runtime.netlink import (
    AddressEvent,
    AddressSpec,
    Change,
    Netlink,
    NetlinkError,
    NetlinkEvent,
    describe_item,
)
from pyvrrp.runtime.schedule import Schedule
from pyvrrp.runtime.transport import Transport

if TYPE_CHECKING:
    from pyvrrp.runtime.announcer import Announcements

log = logging.getLogger("pyvrrp")

# How many received packets may wait in an instance's inbox; more are dropped (a flood).
PACKET_QUEUE = 256
# A backup whose master the kernel's timer watches still wakes this long (µs) after its
# Master_Down_Timer on its own: a takeover late by this much, should the kernel never say.
KERNEL_BACKSTOP = 30_000_000
# A deadline this close (µs) is kept by the schedule even so: the kernel's expiry (the
# schedule's lead before it) and the router's deadline are compared through two clock reads.
KERNEL_SLACK = 5_000


class _RetryDue:
    """The inbox marker of a due installation retry."""


_RETRY_DUE = _RetryDue()


class _Recheck:
    """The inbox marker "look at the deadline again" (after the packets a poll queued)."""


_RECHECK = _Recheck()


@attrs.frozen
class _Deferred:
    """Actions the fast path could not carry out without waiting: the driver does them,
    from ``start`` on, before anything else (``actions`` is the whole list, for the sync
    groups' after-handle)."""

    actions: Sequence[Action]
    start: int
    now: int


# What needs no waiting: the fast path carries these out in the task that has the event.
_INLINE = (StateChanged, Dropped, Notice)

# Retrying an installation that failed: after INSTALL_RETRY_FIRST seconds, doubling up to
# INSTALL_RETRY_MAX, for as long as the router holds its addresses or is in FAULT for them.
INSTALL_RETRY_FIRST = 0.1
INSTALL_RETRY_MAX = 5.0

# A new IPv6 address is announced once the kernel delivers it locally (Netlink.delivers_locally:
# its local route comes from the kernel's address work queue, up to 5 ms after the add on an
# idle 2-core machine, later under load). A client that followed an earlier unsolicited NA sent
# us packets the kernel dropped (the netns maintenance test lost one probe in a few handovers).
# The kernel is asked again every ADDRESS_READY_POLL seconds, up to ADDRESS_READY_TIMEOUT; then
# the address is announced anyway. That is HANDOVER_GRACE: a master leaving on purpose keeps
# the address that long after hearing us, so waiting costs its clients nothing, and past it
# announcing later or sooner loses the same packets. A router advertising more often than
# every 2 * ADDRESS_READY_TIMEOUT waits half its interval at most (its driver waits, and its
# next advertisement must not). A Netlink without ``delivers_locally`` (one of the library
# user's own, written before it) is taken to deliver every address at once.
ADDRESS_READY_POLL = 0.001
ADDRESS_READY_TIMEOUT = HANDOVER_GRACE / 1_000_000

InstanceKey = tuple[int, Family, str, IPAddress | None]
# A transport's ``send_now``: sends one datagram without waiting; False if it would block.
SendNow = Callable[[bytes, IPAddress, IPAddress], bool]


def now_us() -> int:
    """The current trio time in integer microseconds."""
    return round(trio.current_time() * 1_000_000)


def instance_key(config: InstanceConfig) -> InstanceKey:
    """What identifies an instance across a reload (keepalived's rule), not its name."""
    return (config.vrid, config.family, config.interface, config.unicast_source)


def router_params(instance: InstanceConfig, local_address: IPAddress) -> RouterParams:
    """The core router's parameters for a configured instance."""
    return RouterParams(
        vrid=instance.vrid,
        addresses=tuple(a.address.ip for a in instance.addresses),
        local_address=local_address,
        priority=instance.priority,
        advert_interval_cs=instance.advert_interval_cs,
        preempt=instance.preempt,
        preempt_delay_us=instance.preempt_delay_us,
        unicast_peers=instance.unicast_peers,
        unicast_peers_only=instance.unicast_peers_only,
        checksum_mode=instance.ipv4_checksum,
        garp_delay_us=instance.garp_delay_us,
        garp_refresh_us=instance.garp_refresh_us,
        graceful_handover=instance.graceful_handover,
        versions=instance.version.numbers,
        auth_pass=(instance.auth_pass or "").encode("utf-8", "surrogatepass"),
    )


@attrs.frozen
class Transition:
    """A state change of one instance, as published to subscribers."""

    instance: str
    old: State
    new: State
    cause: Cause
    reason: str
    priority: int
    time: float  # when it happened: the trio time the router decided it (seconds)


# Called for each StateChanged action, with the time (µs) the router decided it.
Publish = Callable[["Instance", StateChanged, int], None]
# Called after each handled event with its state changes (possibly none): sync groups.
AfterHandle = Callable[["Instance", Sequence[StateChanged]], None]


class Instance:
    """One configured instance at run time: its router, its inbox and its resources."""

    def __init__(
        self,
        config: InstanceConfig,
        router: VirtualRouter,
        *,
        netlink: Netlink,
        announcements: Announcements,
        publish: Publish,
        after_handle: AfterHandle,
        schedule: Schedule,
    ) -> None:
        self.router = router
        self.local_address = router.params.local_address
        self.health: Health | None = None
        self.transport: Transport | None = None
        self.queue_overflows = 0
        # Installing what a master holds: failed attempts, the last error, and whether
        # everything it should hold is in place (False from a failure until a retry works).
        self.install_failures = 0
        self.last_install_error: str | None = None
        self.holdings_complete = True
        # Advertisements the transport could not send (OSError), and the last error.
        self.send_failures = 0
        self.last_send_error: str | None = None
        # IPv6 addresses we added that the kernel may not deliver locally yet: announced only
        # once it does (ADDRESS_READY_TIMEOUT).
        self._not_local: set[AddressSpec] = set()
        self._retry_at: float | None = None  # trio time of the next installation retry
        self._retry_delay = INSTALL_RETRY_FIRST
        self.retiring = False  # removed by a reload: stops, then its driver ends
        self.stopped = trio.Event()
        self._netlink = netlink
        self._announcements = announcements
        self._publish = publish
        self._after_handle = after_handle
        self._schedule = schedule
        # None in the inbox: the schedule says the router's deadline is due; _RETRY_DUE: an
        # installation retry is.
        self._inbox_send, self._inbox = trio.open_memory_channel[
            Event | None | _RetryDue | _Deferred | _Recheck
        ](math.inf)
        self._queued_packets = 0
        # True while the driver waits on an empty inbox: events may then be handled at once,
        # in the task that has them (the fast path); every post into the inbox clears it.
        self._idle = False
        # The routine wake-up's sends: (the advertisement, the transport, their senders).
        self._senders: tuple[SendAdvert, Transport, list[Callable[[], bool]]] | None = None
        # Reads what the instance's socket holds now and delivers it (the node sets it): a
        # backup whose Master_Down_Timer is due hears an advertisement that is already
        # waiting before it declares the master down (after a stall, both are ready at once).
        self.poll: Callable[[], None] | None = None
        self._logs = RateLimiter()
        self.apply_config(config)

    def apply_config(self, config: InstanceConfig) -> None:
        """Take a new configuration (a reload); the router is reconfigured separately."""
        self.config = config
        self.name = config.name
        self.holdings = Holdings.of(config)

    @property
    def state(self) -> State:
        return self.router.state

    @property
    def all_specs(self) -> list[AddressSpec]:
        """Its addresses, virtual then excluded."""
        return list(self.holdings.specs)

    def statistics(self) -> RouterStatistics:
        self._take_absorbed()
        return self.router.statistics()

    def _take_absorbed(self) -> bool:
        """Hand the router the copies of its routine packet the kernel took since the last
        look (pyvrrp/runtime/absorb.py); True if there were any. Before anything else it
        handles, and before its Master_Down_Timer may fire."""
        absorber = getattr(self.transport, "absorber", None)
        if absorber is None:
            return False
        vrid = self.router.params.vrid
        taken = absorber.take(vrid)
        if taken is None:
            return False
        count, last_ns = taken
        now = now_us()
        at = min(now, last_ns // 1000 + now - time.perf_counter_ns() // 1000)
        router = self.router
        if router.routine_packet == absorber.absorbing(vrid):
            router.heard_again(count, at)
        else:  # cannot happen (the entry follows the router); heard, late, all the same
            packet = absorber.absorbing(vrid)
            if packet is not None:
                self.post_packet(packet)
        return True

    def _follow_routine(self) -> None:
        """After each event: the kernel absorbs the router's routine packet, and nothing
        else; one it absorbed just before the change is handed back as a late packet."""
        absorber = getattr(self.transport, "absorber", None)
        if absorber is None:
            return
        router = self.router
        packet = router.routine_packet
        timeout = None
        if packet is not None:
            # The kernel wakes the backup as early as the schedule would (its lead).
            interval = router.master_down_interval
            timeout = max(interval - round(self._schedule.lead * 1_000_000), interval // 2)
        late = absorber.update(router.params.vrid, packet, timeout)
        if late is not None:
            self.post_packet(late)

    def post(self, event: Event) -> None:
        """Queue an event for the driver (control events are never dropped)."""
        self._enqueue(event)

    def _enqueue(self, item: Event | _RetryDue | _Deferred | _Recheck | None) -> None:
        """Put ``item`` in the inbox: from now on the driver has work, so the fast path
        waits behind it (events stay in order)."""
        self._idle = False
        self._inbox_send.send_nowait(item)

    def deliver(self, packet: PacketReceived) -> None:
        """A received packet: handled at once when the driver is idle, else queued."""
        if self._idle:
            self._handle_now(packet, now_us())
        else:
            self.post_packet(packet)

    def post_packet(self, event: PacketReceived) -> None:
        """Queue a received packet for the driver, or drop it when a flood has filled the
        queue."""
        if self._queued_packets >= PACKET_QUEUE:
            self.queue_overflows += 1
            self._logs.log(
                log,
                logging.WARNING,
                ("queue_overflow",),
                "%s: dropped a packet from %s: %d already queued (a flood?)",
                self.name,
                event.source,
                PACKET_QUEUE,
            )
            return
        self._queued_packets += 1
        self._enqueue(event)

    async def prime(self) -> bool:
        """Record the events queued before the start, in Initialize; True if there were any.

        The trackers' first health, a maintenance flag kept across a restart and the sync
        group's faults must be known when Startup comes: a node restarted in maintenance
        never becomes master, not even for a moment. Packets queued so early are dropped.
        """
        handled = False
        while True:
            try:
                event = self._inbox.receive_nowait()
            except trio.WouldBlock:
                return handled
            if event is None or isinstance(event, _RetryDue | _Deferred | _Recheck):
                continue
            if isinstance(event, PacketReceived):
                self._queued_packets -= 1
                continue
            await self._handle(event, now_us())
            handled = True

    def _retry_due(self) -> None:
        self._enqueue(_RETRY_DUE)

    def _due(self) -> None:
        """The schedule's call: the router's deadline has come (``timer_lead`` early)."""
        if self._idle and self.router.state is State.BACKUP and self._deadline_due() is None:
            # The master's advertisements went on, taken by the kernel (_deadline_due hands
            # them to the router first, unless statistics() did since the schedule was armed):
            # not due after all, and no need to wake the driver.
            self._arm()
            return
        if not self._idle or self.router.state is State.BACKUP:
            # A backup's deadline is Master_Down_Timer: a takeover, whose actions (send,
            # install, announce) the driver carries out in one go; on the fast path the
            # installation would wait for a task switch after the advertisement (measured:
            # +0.1 ms from advertisement to gratuitous ARP). Rare: adverts keep it away.
            self._enqueue(None)
            return
        now = self._deadline_due()
        if now is None:
            self._arm()
            return
        # A master's routine wake-up (its Adver_Timer and nothing else): the router's own
        # shortcut for Timeout, its one action sent here (docs/design.md, "Routine
        # advertisements"); anything else goes through the event.
        send = self.router.routine_advert(now)
        if send is None:
            self._handle_now(Timeout(), now)
            return
        senders = self._senders
        transport = self.transport
        if senders is None or senders[0] is not send or senders[1] is not transport:
            prepared = None if transport is None else self._prepare(send, transport)
            if transport is None or prepared is None:  # cannot send without waiting
                self._run_now([send], now)
                return
            senders = self._senders = (send, transport, prepared)
        for index, sender in enumerate(senders[2]):
            try:
                if not sender():  # the socket is full: the driver waits, and sends the rest
                    rest = attrs.evolve(send, datagrams=send.datagrams[index:])
                    self._defer([rest], 0, now)
                    return
            except OSError as exc:
                self._send_failed(send.datagrams[index].destination, exc)
        self._arm()

    def _prepare(self, send: SendAdvert, transport: Transport) -> list[Callable[[], bool]] | None:
        """How the routine wake-up sends ``send``'s datagrams: the transport's own prepared
        sends where it has them, else its ``send_now``; None when it has neither."""
        sender = getattr(transport, "sender", None)
        if sender is None:
            send_now = getattr(transport, "send_now", None)
            if send_now is None:
                return None
            return [
                functools.partial(send_now, d.message, d.source, d.destination)
                for d in send.datagrams
            ]
        return [sender(d.message, d.source, d.destination) for d in send.datagrams]

    def _deadline_due(self) -> int | None:
        """When the router's deadline is due, the time to hand it its Timeout at; else None.

        The schedule wakes a router ``timer_lead`` early (trio rounds its sleeps up to the
        millisecond and Python adds its own latency); an event handled since may have moved
        the deadline later. The router decides at max(deadline, now) (aioquic's rule), never
        early.
        """
        self._take_absorbed()
        router = self.router
        deadline = router.deadline()
        if deadline is None or self._schedule.wake_time(deadline) > trio.current_time():
            return None
        return max(deadline, now_us())

    def _early(self, base: int) -> None:
        """The schedule's call: another master of this Advertisement_Interval is due at
        ``base`` (µs), ours comes later: advertise now, in step with it from now on."""
        if self._idle:
            self._handle_now(AdvertiseNow(), base)
        else:
            self._enqueue(AdvertiseNow())

    def _arm(self) -> None:
        """Set the router's next deadline in the schedule; a master whose next deadline is
        its Adver_Timer joins the group of its interval (docs/design.md, "Masters advertise
        together")."""
        router = self.router
        deadline = router.deadline()
        if deadline is not None and deadline == router.adver_timer:
            period = timers.centiseconds(router.params.advert_interval_cs)
            self._schedule.set(self, deadline, self._due, period, self._early)
        else:
            if (
                deadline is not None
                and deadline == router.down_timer
                and self._watched()
                and deadline - now_us() > KERNEL_SLACK
            ):
                # The kernel wakes us if the master goes quiet (pyvrrp/runtime/absorb.py):
                # our own wake-up only in case it cannot (or for another deadline).
                side = router.side_deadline()
                deadline += KERNEL_BACKSTOP
                if side is not None and side < deadline:
                    deadline = side
            self._schedule.set(self, deadline, self._due)

    def _watched(self) -> bool:
        """Whether the kernel's timer watches this backup's master (absorb.py: each copy
        of the routine packet it takes restarts it for Master_Down_Interval)."""
        watching = getattr(getattr(self.transport, "absorber", None), "watching", None)
        return watching is not None and bool(watching(self.router.params.vrid))

    def kernel_expired(self) -> None:
        """The kernel's timer for this router expired: no copy of the routine packet for
        Master_Down_Interval. A backup looks at its deadline now (as the schedule would)."""
        if self.router.state is State.BACKUP:
            self._due()

    def _handle_now(self, event: Event, now: int) -> None:
        """The fast path: hand ``event`` to the router in this task and carry out what needs
        no waiting; the rest goes to the driver, in order, before anything else."""
        self._take_absorbed()
        actions = self.router.handle(event, now)
        self._follow_routine()
        self._run_now(actions, now)

    def _run_now(self, actions: Sequence[Action], now: int) -> None:
        """Carry out the router's ``actions`` (of an event handled at ``now``) on the fast
        path: what needs no waiting here, the rest by the driver, in order."""
        send_now = getattr(self.transport, "send_now", None)
        for index, action in enumerate(actions):
            if isinstance(action, _INLINE):
                self._execute_one(action, now)
            elif isinstance(action, SendAdvert) and send_now is not None:
                sent = self._send_advert_now(action, send_now)
                if sent < len(action.datagrams):  # the socket is full: the driver waits
                    rest = attrs.evolve(action, datagrams=action.datagrams[sent:])
                    self._defer([*actions[:index], rest, *actions[index + 1 :]], index, now)
                    return
            else:
                self._defer(actions, index, now)
                return
        self._after(actions)
        self._arm()

    def _defer(self, actions: Sequence[Action], start: int, now: int) -> None:
        self._enqueue(_Deferred(actions, start, now))

    def _after(self, actions: Sequence[Action]) -> None:
        self._after_handle(self, [a for a in actions if isinstance(a, StateChanged)])
        if self.router.stopped and not self.stopped.is_set():
            self.stopped.set()
            if self._idle:  # stopped on the fast path: the driver must see it (retiring)
                self.post_wakeup()

    def post_wakeup(self) -> None:
        """Have the driver look at its router again (it may have stopped)."""
        self._enqueue(None)

    async def drive(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The driver task: the only reader of the clock for this router.

        Events queued before the start are recorded first (:meth:`prime`), then Startup.
        """
        await self.prime()
        await self._handle(Startup(), now_us())
        task_status.started()
        # Kept, it would keep trio's start-up nursery alive: about 1.2 kB per instance.
        del task_status
        router = self.router
        schedule = self._schedule
        retry_key = (self, "install retry")
        try:
            while not (self.retiring and router.stopped):
                self._arm()
                # An installation retry, when one is pending: its own wake-up in the schedule.
                retry_us = None if self._retry_at is None else round(self._retry_at * 1_000_000)
                schedule.set(retry_key, retry_us, self._retry_due)
                try:
                    event = self._inbox.receive_nowait()
                except trio.WouldBlock:
                    self._idle = True
                    event = await self._inbox.receive()
                    self._idle = False
                if isinstance(event, _Deferred):
                    await self.execute(event.actions[event.start :], event.now)
                    self._after(event.actions)
                    continue
                if isinstance(event, _RetryDue):
                    # As the schedule computed it (it fired because this time has come); the
                    # retry may have been done or re-armed since the marker was posted.
                    at = self._retry_at
                    due = None if at is None else round(at * 1_000_000)
                    if schedule.wake_time(due) <= trio.current_time():
                        await self._retry_install()
                    continue
                if event is None or isinstance(event, _Recheck):
                    # The schedule woke us (we were busy, or a backup's Master_Down_Timer),
                    # or a wake-up to look again. A backup first reads what its socket
                    # already holds: after a stall the deadline and the master's
                    # advertisement are ready at the same moment, and the advertisement must
                    # win. What it read queues behind this marker: handle it, then look.
                    if event is None and router.state is State.BACKUP and self.poll is not None:
                        self.poll()
                        if self._queued_packets:
                            self._enqueue(_RECHECK)
                            continue
                    now = self._deadline_due()
                    if now is not None:
                        await self._handle(Timeout(), now)
                    continue
                if isinstance(event, PacketReceived):
                    self._queued_packets -= 1
                await self._handle(event, now_us())
        finally:
            schedule.cancel(self)
            schedule.cancel(retry_key)

    async def _handle(self, event: Event, now: int) -> None:
        self._take_absorbed()
        actions = self.router.handle(event, now)
        self._follow_routine()
        await self.execute(actions, now)
        self._after(actions)

    async def execute(self, actions: Sequence[Action], now: int) -> None:
        """Carry out a router's actions, in order; ``now`` is the time they were decided.

        An announcement of IPv6 addresses the kernel does not deliver locally yet waits for
        them after the other actions, so that the state change is published at once."""
        later: list[AddressSpec] = []
        for action in actions:
            match action:
                case SendAdvert():
                    await self._send_advert(action)
                case StateChanged() | Dropped() | Notice():
                    self._execute_one(action, now)
                case InstallVirtual():
                    await self.install(self.holdings)
                case RemoveVirtual():
                    await self.remove(self.holdings)
                    if self.router.install_fault is None:
                        self._install_over()
                case Announce():
                    later += await self._announce_ready(self.all_specs)
                case _:
                    assert_never(action)
        if later:
            await self._announce_when_local(later)

    def _execute_one(self, action: StateChanged | Dropped | Notice, now: int) -> None:
        """Carry out an action that needs no waiting."""
        match action:
            case StateChanged():
                self._publish(self, action, now)
            case Dropped():
                self._logs.log(
                    log,
                    logging.INFO,
                    ("drop", action.reason),
                    "%s: dropped advertisement from %s: %s (%s)",
                    self.name,
                    action.source,
                    action.reason.value,
                    action.detail,
                )
            case Notice():
                self._logs.log(
                    log,
                    logging.WARNING,
                    ("notice", action.kind, action.source),
                    "%s: %s %s",
                    self.name,
                    action.source,
                    action.detail,
                )
            case _:
                assert_never(action)

    async def _send_advert(self, action: SendAdvert) -> None:
        # The router encoded the datagrams (destinations, checksum mode): only send them.
        assert self.transport is not None
        for datagram in action.datagrams:
            try:
                await self.transport.send(datagram.message, datagram.source, datagram.destination)
            except OSError as exc:
                self._send_failed(datagram.destination, exc)

    def _send_advert_now(self, action: SendAdvert, send_now: SendNow) -> int:
        """Send ``action``'s datagrams without waiting, until one would block; return how
        many were dealt with (sent, or failed and counted)."""
        for index, datagram in enumerate(action.datagrams):
            try:
                if not send_now(datagram.message, datagram.source, datagram.destination):
                    return index
            except OSError as exc:
                self._send_failed(datagram.destination, exc)
        return len(action.datagrams)

    def _send_failed(self, destination: IPAddress, exc: OSError) -> None:
        # ENETDOWN, ENOBUFS, EHOSTUNREACH...: the link may come back; the router keeps
        # going and the failure shows in the status, metrics and logs.
        self.send_failures += 1
        self.last_send_error = f"to {destination}: {exc.strerror or exc}"
        self._logs.log(
            log,
            logging.WARNING,
            ("send", destination),
            "%s: cannot send an advertisement %s",
            self.name,
            self.last_send_error,
        )

    async def announce(self, specs: Sequence[AddressSpec]) -> None:
        """Announce ``specs`` (gratuitous ARP / unsolicited NA) as this instance does: at once
        those the kernel delivers locally, each IPv6 address we have just added when it does
        (see ADDRESS_READY_TIMEOUT), so no client is sent to an address that drops its
        packets."""
        later = await self._announce_ready(specs)
        if later:
            await self._announce_when_local(later)

    async def _announce_ready(self, specs: Sequence[AddressSpec]) -> list[AddressSpec]:
        """Announce those of ``specs`` the kernel delivers locally (an IPv4 gratuitous ARP
        never waits for an IPv6 address); return the others, for
        :meth:`_announce_when_local`."""
        repeat = self.config.garp_repeat
        waiting = [s for s in specs if s in self._not_local]
        if repeat < 1:  # announcements are off: nothing to wait for
            self._not_local.difference_update(waiting)
            return []
        if waiting:
            waiting = await self._not_yet_local(waiting)
        ready = [s for s in specs if s not in waiting]
        if ready:
            await self._announcements.announce(ready, repeat)
        return waiting

    async def _announce_when_local(self, waiting: Sequence[AddressSpec]) -> None:
        """Announce each of ``waiting`` once the kernel delivers it locally; after
        ADDRESS_READY_TIMEOUT, or half the router's Advertisement_Interval if that is
        shorter, announce the rest anyway: the driver waits here, and the router's next
        advertisement must not.

        The kernel is asked again when it notifies one of the addresses (its address work
        sends the notification just before it adds the address's local route) and every
        ADDRESS_READY_POLL in any case."""
        repeat = self.config.garp_repeat
        interval = timers.centiseconds(self.router.params.advert_interval_cs) / 1_000_000
        timeout = min(ADDRESS_READY_TIMEOUT, interval / 2)
        deadline = trio.current_time() + timeout
        events = self._address_events()
        try:
            while True:
                still = await self._not_yet_local(waiting)
                ready = [s for s in waiting if s not in still]
                if ready:
                    await self._announcements.announce(ready, repeat)
                waiting = still
                if not waiting:
                    return
                if trio.current_time() >= deadline:
                    break
                until = min(trio.current_time() + ADDRESS_READY_POLL, deadline)
                events = await self._address_noticed(events, waiting, until)
        finally:
            if events is not None:
                events.close()
        self._not_local.difference_update(waiting)
        self._logs.log(
            log,
            logging.WARNING,
            ("not local", tuple(waiting)),
            "%s: the kernel does not deliver %s locally %.0f ms after it was added: "
            "announced anyway",
            self.name,
            ", ".join(str(s.address.ip) for s in waiting),
            timeout * 1000,
        )
        await self._announcements.announce(waiting, repeat)

    def _address_events(self) -> trio.MemoryReceiveChannel[NetlinkEvent] | None:
        """The kernel's address notifications from now on, or None if they cannot be had
        (then the kernel is only asked every ADDRESS_READY_POLL)."""
        try:
            return self._netlink.subscribe()
        except (NetlinkError, trio.ClosedResourceError):
            return None

    async def _address_noticed(
        self,
        events: trio.MemoryReceiveChannel[NetlinkEvent] | None,
        waiting: Sequence[AddressSpec],
        until: float,
    ) -> trio.MemoryReceiveChannel[NetlinkEvent] | None:
        """Wait until ``until``, or until the kernel notifies one of ``waiting``'s addresses;
        return the notifications to wait on next time (None once they were cut off)."""
        if events is None:
            await trio.sleep_until(until)
            return None
        addresses = {spec.address.ip for spec in waiting}
        with trio.move_on_at(until):
            async for event in events:
                if (
                    isinstance(event, AddressEvent)
                    and event.present
                    and event.address.ip in addresses
                ):
                    return events
            events.close()  # the hub cut this subscriber off (it fell behind): poll
            await trio.sleep_until(until)
            return None
        return events

    async def _not_yet_local(self, specs: Sequence[AddressSpec]) -> list[AddressSpec]:
        """Those of ``specs`` the kernel does not deliver locally yet; the others are done."""
        pending: list[AddressSpec] = []
        delivers_locally = getattr(self._netlink, "delivers_locally", None)
        if delivers_locally is None:  # a Netlink of one's own from before the question
            self._not_local.difference_update(specs)
            return []
        for spec in specs:
            try:
                local = await delivers_locally(spec.address.ip)
            except NetlinkError:
                local = True  # the kernel cannot tell: waiting would not help
            if local:
                self._not_local.discard(spec)
            else:
                pending.append(spec)
        return pending

    async def install(self, holdings: Holdings, *, reassert: bool = False) -> list[AddressSpec]:
        """Add ``holdings`` in install order, in one netlink request; return the addresses
        that were missing. With ``reassert`` each one that had to be added back is logged.

        A failure is retried with backoff; an address that fails is reported to the router
        (``InstallFailed``, which gives the addresses up if it lasts), a route or rule only
        counted and shown. A retry that installs everything reports ``InstallSucceeded``."""
        items = holdings.install_order()
        added: list[AddressSpec] = []
        results = await self._apply(items, add=True)
        failed = [
            (item, f"{describe_item(item)}: {_why(result)}")
            for item, result in zip(items, results, strict=True)
            if isinstance(result, NetlinkError)
        ]
        if failed:
            addresses = [error for item, error in failed if isinstance(item, AddressSpec)]
            self._install_failed("; ".join(e for _, e in failed), "; ".join(addresses))
        elif holdings == self.holdings and not self.holdings_complete:
            self._install_over()
            self.post(InstallSucceeded())
        for item, done in zip(items, results, strict=True):
            if done is not True:
                continue
            if isinstance(item, AddressSpec):
                added.append(item)
                if item.address.version == 6:
                    self._not_local.add(item)
            if reassert:
                log.warning(
                    "%s: %s had been removed by someone else: put it back",
                    self.name,
                    describe_item(item),
                )
        return added

    async def remove(self, holdings: Holdings) -> None:
        """Remove ``holdings`` in the reverse of the install order."""
        self._not_local.difference_update(holdings.specs)
        await self._apply(holdings.removal_order(), add=False)

    def _install_failed(self, error: str, address_error: str) -> None:
        self.install_failures += 1
        self.last_install_error = error
        self.holdings_complete = False
        if address_error:
            # Only addresses decide: a master without its VIP serves nobody, one without a
            # virtual route or rule still answers on it (as keepalived, which logs those).
            self.post(InstallFailed(address_error))
        if self._retry_at is None:
            self._retry_at = trio.current_time() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, INSTALL_RETRY_MAX)

    def _install_over(self) -> None:
        """Everything is installed, or nothing needs to be: no more retries."""
        self.holdings_complete = True
        self._retry_at = None
        self._retry_delay = INSTALL_RETRY_FIRST

    async def _retry_install(self) -> None:
        self._retry_at = None
        if self.router.wants_holdings:
            await self.install(self.holdings)
        elif self.router.install_fault is not None and self.router.state is State.FAULT:
            # In FAULT for its addresses: try whether they can be installed now, and take
            # what went in out again at once, whatever the outcome (a backup holds them
            # now); success clears the fault.
            await self.install(self.holdings)
            await self.remove(self.holdings)
        else:
            self._install_over()

    async def _apply(self, items: Sequence[Item], *, add: bool) -> list[bool | NetlinkError]:
        """Add (or remove) ``items``; log each failure (the rest still happen). True: it
        changed; False: nothing to change; an error: it failed."""
        if not items:
            return []
        try:
            if add:
                results = await self._netlink.apply([Change(True, item) for item in items])
            else:
                results = await remove_items(self._netlink, items)
        except NetlinkError as exc:
            log.error("%s: netlink failed: %s", self.name, exc)
            return [exc] * len(items)
        for item, result in zip(items, results, strict=True):
            if isinstance(result, NetlinkError):
                verb = "add" if add else "remove"
                self._logs.log(
                    log,
                    logging.ERROR,
                    (verb, describe_item(item)),
                    "%s: cannot %s %s: %s",
                    self.name,
                    verb,
                    describe_item(item),
                    result,
                )
        return results


def _why(error: NetlinkError) -> str:
    """A netlink error without its "cannot add address ...: " prefix (the item is named
    already): ``interface eth0.4000 does not exist; ...``."""
    text = str(error)
    if text.startswith("cannot "):
        _, sep, tail = text.partition(": ")
        if sep:
            return tail
    return text
