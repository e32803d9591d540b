"""One instance at run time: its router, its inbox, its driver task and what its actions do.

The driver is the only reader of the clock for its router: it feeds events to the core router
with the current time, carries out the actions it returns in order, and arms the router's
next deadline in the node's shared :class:`~pyvrrp.runtime.schedule.Schedule`, which posts a
marker into the inbox when it is due: events and deadlines go through one queue. An instance
knows nothing of the node around it: what it needs (netlink, announcements, where state
changes go) is passed at construction.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, assert_never

import attrs
import trio

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
from pyvrrp.core.events import Event, PacketReceived, Startup, Timeout
from pyvrrp.core.packet import Family, IPAddress
from pyvrrp.core.params import RouterParams
from pyvrrp.core.router import RouterStatistics, VirtualRouter
from pyvrrp.core.tracking import Health
from pyvrrp.runtime.holdings import Holdings, Item, remove_items
from pyvrrp.runtime.logs import RateLimiter
from pyvrrp.runtime.netlink import AddressSpec, Change, Netlink, NetlinkError, describe_item
from pyvrrp.runtime.schedule import Schedule
from pyvrrp.runtime.transport import Transport

if TYPE_CHECKING:
    from pyvrrp.runtime.announcer import Announcements

log = logging.getLogger("pyvrrp")

# How many received packets may wait in an instance's inbox; more are dropped (a flood).
PACKET_QUEUE = 256

InstanceKey = tuple[int, Family, str, IPAddress | None]


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
        self.retiring = False  # removed by a reload: stops, then its driver ends
        self.stopped = trio.Event()
        self._netlink = netlink
        self._announcements = announcements
        self._publish = publish
        self._after_handle = after_handle
        self._schedule = schedule
        # None in the inbox: the schedule says the router's deadline is due.
        self._inbox_send, self._inbox = trio.open_memory_channel[Event | None](math.inf)
        self._queued_packets = 0
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
        return self.router.statistics()

    def post(self, event: Event) -> None:
        """Queue an event for the driver (control events are never dropped)."""
        self._inbox_send.send_nowait(event)

    def post_packet(self, event: PacketReceived) -> None:
        """Queue a received packet, or drop it when a flood has filled the queue."""
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
        self._inbox_send.send_nowait(event)

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
            if event is None:
                continue
            if isinstance(event, PacketReceived):
                self._queued_packets -= 1
                continue
            await self._handle(event, now_us())
            handled = True

    def _due(self) -> None:
        self._inbox_send.send_nowait(None)

    async def drive(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The driver task: the only reader of the clock for this router.

        Events queued before the start are recorded first (:meth:`prime`), then Startup.
        """
        await self.prime()
        await self._handle(Startup(), now_us())
        task_status.started()
        router = self.router
        schedule = self._schedule
        try:
            while not (self.retiring and router.stopped):
                schedule.set(self, router.deadline(), self._due)
                event = await self._inbox.receive()
                if event is None:
                    # The schedule woke us (timer_lead early: trio rounds its sleeps up to the
                    # millisecond and Python adds its own latency). An event handled since may
                    # have moved the deadline later: then it is not due yet. Otherwise the
                    # router decides at max(deadline, now) (aioquic's rule), never early.
                    deadline = router.deadline()
                    if deadline is None or schedule.wake_time(deadline) > trio.current_time():
                        continue
                    await self._handle(Timeout(), max(deadline, now_us()))
                    continue
                if isinstance(event, PacketReceived):
                    self._queued_packets -= 1
                await self._handle(event, now_us())
        finally:
            schedule.cancel(self)

    async def _handle(self, event: Event, now: int) -> None:
        actions = self.router.handle(event, now)
        await self.execute(actions, now)
        self._after_handle(self, [a for a in actions if isinstance(a, StateChanged)])
        if self.router.stopped:
            self.stopped.set()

    async def execute(self, actions: Sequence[Action], now: int) -> None:
        """Carry out a router's actions, in order; ``now`` is the time they were decided."""
        for action in actions:
            match action:
                case SendAdvert():
                    await self._send_advert(action)
                case InstallVirtual():
                    await self.install(self.holdings)
                case RemoveVirtual():
                    await self.remove(self.holdings)
                case Announce():
                    await self._announcements.announce(self.all_specs, self.config.garp_repeat)
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
            await self.transport.send(datagram.message, datagram.source, datagram.destination)

    async def announce(self, specs: Sequence[AddressSpec]) -> None:
        """Announce ``specs`` (gratuitous ARP / unsolicited NA) as this instance does."""
        await self._announcements.announce(specs, self.config.garp_repeat)

    async def install(self, holdings: Holdings, *, reassert: bool = False) -> list[AddressSpec]:
        """Add ``holdings`` in install order, in one netlink request; return the addresses
        that were missing. With ``reassert`` each one that had to be added back is logged."""
        items = holdings.install_order()
        added: list[AddressSpec] = []
        for item, done in zip(items, await self._apply(items, add=True), strict=True):
            if not done:
                continue
            if isinstance(item, AddressSpec):
                added.append(item)
            if reassert:
                log.warning(
                    "%s: %s had been removed by someone else: put it back",
                    self.name,
                    describe_item(item),
                )
        return added

    async def remove(self, holdings: Holdings) -> None:
        """Remove ``holdings`` in the reverse of the install order."""
        await self._apply(holdings.removal_order(), add=False)

    async def _apply(self, items: Sequence[Item], *, add: bool) -> list[bool]:
        """Add (or remove) ``items``; log each failure (the rest still happen). True: it
        changed."""
        if not items:
            return []
        try:
            if add:
                results = await self._netlink.apply([Change(True, item) for item in items])
            else:
                results = await remove_items(self._netlink, items)
        except NetlinkError as exc:
            log.error("%s: netlink failed: %s", self.name, exc)
            return [False] * len(items)
        for item, result in zip(items, results, strict=True):
            if isinstance(result, NetlinkError):
                verb = "add" if add else "remove"
                log.error("%s: cannot %s %s: %s", self.name, verb, describe_item(item), result)
        return [result is True for result in results]
