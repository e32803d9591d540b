"""A node: every virtual router of one configuration, running on trio.

The node opens one transport per (interface, family), demultiplexes received packets to the
instance with that VRID, and runs one driver task per instance. The driver is the only reader
of the clock for its router: it feeds events to the core router with the current time,
carries out the actions it returns in order, and waits for the router's next deadline.
Around the drivers run the trackers (health scripts, interfaces), the notifier, and a watch
on netlink that puts back addresses someone else removed from a master. Nothing here decides
protocol behaviour; that happens in :mod:`pyvrrp.core`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, assert_never

import attrs
import trio

from pyvrrp import __version__
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
from pyvrrp.core.config import InstanceConfig, NodeConfig, RouteConfig, RuleConfig
from pyvrrp.core.events import (
    Event,
    MaintenanceChanged,
    PacketReceived,
    Reconfigure,
    Shutdown,
    Startup,
    SyncFault,
    Timeout,
)
from pyvrrp.core.packet import DecodeError, DropReason, Family, IPAddress, peek_vrid
from pyvrrp.core.router import RouterParams, RouterStatistics, VirtualRouter
from pyvrrp.core.sync import sync_events
from pyvrrp.core.timers import release_timeout
from pyvrrp.core.tracking import Health, Tracking
from pyvrrp.runtime.errors import EnvironmentProblem, UnknownInstance
from pyvrrp.runtime.logs import RateLimiter, fields
from pyvrrp.runtime.netlink import (
    AddressEvent,
    AddressSpec,
    Change,
    LinkEvent,
    Netlink,
    NetlinkError,
    describe_address,
    describe_item,
    describe_route,
    describe_rule,
)
from pyvrrp.runtime.notify import Notifier
from pyvrrp.runtime.process import ProcessRunner, RealProcessRunner
from pyvrrp.runtime.statefile import MaintenanceStore, StateDirStore, StateFileError
from pyvrrp.runtime.trackers import Trackers
from pyvrrp.runtime.transport import Transport, TransportFactory

if TYPE_CHECKING:
    from pyvrrp.runtime.announcer import Announcements

log = logging.getLogger("pyvrrp")

PACKET_QUEUE = 256
# How long a graceful stop may wait for routers to hand over, beyond the longest
# release_timeout of any instance.
STOP_MARGIN = 0.5
# How long startup waits for an interface's source address to appear (IPv6 DAD takes ~1 s).
SOURCE_ADDRESS_WAIT = 5.0
# How often a master checks that its addresses, routes and rules are still installed
# (address removals are also noticed at once through netlink events).
REASSERT_INTERVAL = 10.0

InstanceKey = tuple[int, Family, str, IPAddress | None]


def now_us() -> int:
    """The current trio time in integer microseconds."""
    return round(trio.current_time() * 1_000_000)


def instance_key(config: InstanceConfig) -> InstanceKey:
    """What identifies an instance across a reload (keepalived's rule), not its name."""
    return (config.vrid, config.family, config.interface, config.unicast_source)


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


@attrs.frozen
class ReloadResult:
    """What a reload changed, by instance name (new names for kept and added ones)."""

    kept: tuple[str, ...]
    changed: tuple[str, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def summary(self) -> str:
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (
                ("changed", self.changed),
                ("added", self.added),
                ("removed", self.removed),
            )
            if names
        ]
        unchanged = len(self.kept) - len(self.changed)
        return "; ".join([*parts, f"{unchanged} unchanged"])


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
    )


def _specs(config: InstanceConfig) -> tuple[list[AddressSpec], list[AddressSpec]]:
    return (
        [AddressSpec.from_config(a, config.interface) for a in config.addresses],
        [AddressSpec.from_config(a, config.interface) for a in config.excluded_addresses],
    )


class Instance:
    """One configured instance at run time: its router, its inbox and its resources."""

    def __init__(self, node: Node, config: InstanceConfig, router: VirtualRouter) -> None:
        self.node = node
        self.router = router
        self.local_address = router.params.local_address
        self.health: Health | None = None
        self.transport: Transport | None = None
        self.queue_overflows = 0
        self.retiring = False  # removed by a reload: stops, then its driver ends
        self.stopped = trio.Event()
        self._inbox_send, self._inbox = trio.open_memory_channel[Event](math.inf)
        self._queued_packets = 0
        self._logs = RateLimiter()
        self._apply_config(config)

    def _apply_config(self, config: InstanceConfig) -> None:
        self.config = config
        self.name = config.name
        self.address_specs, self.excluded_specs = _specs(config)

    @property
    def state(self) -> State:
        return self.router.state

    @property
    def all_specs(self) -> list[AddressSpec]:
        return [*self.address_specs, *self.excluded_specs]

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
            if isinstance(event, PacketReceived):
                self._queued_packets -= 1
                continue
            await self._handle(event, now_us())
            handled = True

    async def drive(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The driver task: the only reader of the clock for this router.

        Events queued before the start are recorded first (:meth:`prime`), then Startup.
        """
        await self.prime()
        await self._handle(Startup(), now_us())
        task_status.started()
        router = self.router
        while not (self.retiring and router.stopped):
            deadline = router.deadline()
            event_or_none: Event | None = None
            # Wake a little early: trio rounds its sleep up to the millisecond and Python
            # adds its own latency; max(deadline, now) below treats the early wake-up as the
            # deadline itself (aioquic's rule), so the router never sees an early time.
            at = math.inf if deadline is None else deadline / 1_000_000 - self.node.timer_lead
            with trio.move_on_at(at):
                event_or_none = await self._inbox.receive()
            now = now_us()
            if event_or_none is None:
                assert deadline is not None
                event_or_none, now = Timeout(), max(deadline, now)
            elif isinstance(event_or_none, PacketReceived):
                self._queued_packets -= 1
            await self._handle(event_or_none, now)

    async def _handle(self, event: Event, now: int) -> None:
        actions = self.router.handle(event, now)
        await self.execute(actions, now)
        self.node.after_handle(self, [a for a in actions if isinstance(a, StateChanged)])
        if self.router.stopped:
            self.stopped.set()

    async def execute(self, actions: Sequence[Action], now: int) -> None:
        """Carry out a router's actions, in order; ``now`` is the time they were decided."""
        for action in actions:
            match action:
                case SendAdvert():
                    await self._send_advert(action)
                case InstallVirtual():
                    await self.install(
                        self.all_specs, self.config.virtual_routes, self.config.virtual_rules
                    )
                case RemoveVirtual():
                    await self.remove(
                        self.all_specs, self.config.virtual_routes, self.config.virtual_rules
                    )
                case Announce():
                    await self.node.announcements.announce(self.all_specs, self.config.garp_repeat)
                case StateChanged():
                    self.node.publish(self, action, now)
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

    async def install(
        self,
        specs: Iterable[AddressSpec],
        routes: Iterable[RouteConfig],
        rules: Iterable[RuleConfig],
        *,
        reassert: bool = False,
    ) -> list[AddressSpec]:
        """Add addresses (virtual, then excluded), routes, rules, in one netlink request;
        return the addresses that were missing. With ``reassert`` each one that had to be
        added back is logged."""
        items: list[AddressSpec | RouteConfig | RuleConfig] = [*specs, *routes, *rules]
        changes = [Change(True, item) for item in items]
        added: list[AddressSpec] = []
        for change, done in zip(changes, await self._apply(changes), strict=True):
            if not done:
                continue
            if isinstance(change.item, AddressSpec):
                added.append(change.item)
            if reassert:
                log.warning(
                    "%s: %s had been removed by someone else: put it back",
                    self.name,
                    describe_item(change.item),
                )
        return added

    async def remove(
        self,
        specs: Sequence[AddressSpec],
        routes: Sequence[RouteConfig],
        rules: Sequence[RuleConfig],
    ) -> None:
        """Remove rules, routes, then addresses: the reverse of :meth:`install`."""
        items: list[AddressSpec | RouteConfig | RuleConfig] = [
            *reversed(rules),
            *reversed(routes),
            *reversed(specs),
        ]
        await self._apply([Change(False, item) for item in items])

    async def _apply(self, changes: Sequence[Change]) -> list[bool]:
        """Apply ``changes``; log each failure (the rest still happen). True: it changed."""
        if not changes:
            return []
        try:
            results = await self.node.netlink.apply(changes)
        except NetlinkError as exc:
            log.error("%s: netlink failed: %s", self.name, exc)
            return [False] * len(changes)
        for change, result in zip(changes, results, strict=True):
            if isinstance(result, NetlinkError):
                verb = "add" if change.add else "remove"
                log.error(
                    "%s: cannot %s %s: %s", self.name, verb, describe_item(change.item), result
                )
        return [result is True for result in results]


class Node:
    """Every virtual router of one :class:`NodeConfig`, with its sockets, netlink, trackers
    and notifications."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        netlink: Netlink,
        transport_factory: TransportFactory,
        announcements: Announcements,
        runner: ProcessRunner | None = None,
        store: MaintenanceStore | None = None,
        timer_lead: float = 0.0,
    ) -> None:
        self.config = config
        self.timer_lead = timer_lead
        self.netlink = netlink
        self.announcements = announcements
        self.runner: ProcessRunner = runner if runner is not None else RealProcessRunner()
        self.store: MaintenanceStore = (
            store if store is not None else StateDirStore(config.global_.state_dir)
        )
        self._transport_factory = transport_factory
        self.instances: dict[str, Instance] = {}
        self._retiring: list[Instance] = []
        self._transports: dict[tuple[str, Family], Transport] = {}
        self._receivers: dict[tuple[str, Family], trio.CancelScope] = {}
        self._demux: dict[tuple[str, Family], dict[int, Instance]] = {}
        self._subscribers: list[trio.MemorySendChannel[Transition]] = []
        self._unknown_vrid: dict[tuple[str, Family], int] = {}
        self._header_errors: dict[tuple[str, Family], int] = {}
        self._logs = RateLimiter()
        self._maintenance: set[str] = set()
        self._links_up: dict[str, bool] = {}
        # trio time (monotonic) when run() started: uptime must not jump with the wall clock
        # (an NTP step at boot would make it negative or hours long).
        self._started_at: float | None = None
        self._nursery: trio.Nursery | None = None
        self._trackers = self._new_trackers(config, previous=None)
        self._trackers_scope: trio.CancelScope | None = None
        self.notifier = Notifier(config.instances.values(), self.runner)
        self._reload_lock = trio.Lock()
        # More top-level keys of status(), each computed at every call: the daemon adds its
        # mailer's statistics as "email".
        self.status_sections: dict[str, Callable[[], Any]] = {}

    # ------------------------------------------------------------------ observing

    def subscribe(self) -> trio.MemoryReceiveChannel[Transition]:
        """A channel receiving every state change from now on."""
        send, receive = trio.open_memory_channel[Transition](math.inf)
        self._subscribers.append(send)
        return receive

    def publish(self, instance: Instance, change: StateChanged, now: int) -> None:
        transition = Transition(
            instance.name,
            change.old,
            change.new,
            change.cause,
            change.reason,
            change.priority,
            now / 1_000_000,
        )
        log.info(
            "%s: %s -> %s (%s), priority %d",
            instance.name,
            change.old.value,
            change.new.value,
            change.reason,
            change.priority,
            extra=fields(
                event="transition",
                instance=instance.name,
                vrid=instance.config.vrid,
                from_=change.old.value,
                to=change.new.value,
                reason=change.reason,
                cause=change.cause.value,
                priority=change.priority,
            ),
        )
        # KeyError: an instance a reload is adding or removing, unknown to the notifier.
        with contextlib.suppress(KeyError):
            self.notifier.notify_transition(transition)
        for send in list(self._subscribers):
            try:
                send.send_nowait(transition)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)

    async def wait_state(self, name: str, state: State) -> None:
        """Wait until instance ``name`` is in ``state``."""
        if self.instances[name].state is state:
            return
        receive = self.subscribe()
        with receive:
            async for transition in receive:
                if transition.instance == name and transition.new is state:
                    return

    def states(self) -> dict[str, State]:
        return {name: inst.state for name, inst in self.instances.items()}

    # ------------------------------------------------------------------ control

    async def set_maintenance(self, on: bool, instances: Sequence[str] = ()) -> list[str]:
        """Take instances (all when empty) out of service, or put them back.

        Returns the instances whose flag changed. The flags are saved in ``state_dir`` so a
        restart keeps them; a failure to save is logged and the change still applies.
        """
        # Not in the middle of a reload: it replaces the flags (they follow renamed instances)
        # with what it read at its start, which would lose this change.
        async with self._reload_lock:
            unknown = [name for name in instances if name not in self.instances]
            if unknown:
                raise UnknownInstance(unknown, list(self.instances))
            names = list(instances) or list(self.instances)
            changed = [name for name in names if (name in self._maintenance) != on]
            for name in changed:
                if on:
                    self._maintenance.add(name)
                else:
                    self._maintenance.discard(name)
                log.info("%s: maintenance %s", name, "on" if on else "off")
                self.instances[name].post(MaintenanceChanged(on))
            if changed:
                await self._save_maintenance()
            return changed

    async def _save_maintenance(self) -> None:
        try:
            await self.store.save(sorted(self._maintenance))
        except StateFileError as exc:
            log.error("maintenance is in effect but cannot be kept across a restart: %s", exc)

    def status(self) -> dict[str, Any]:
        """The JSON-able snapshot ``pyvrrp status --json`` prints and metrics are made of."""
        now = trio.current_time()
        wall = time.time()
        instances = {}
        for name, instance in self.instances.items():
            stats = instance.statistics()
            config = instance.config
            in_state = now - stats.state_since / 1_000_000
            master = None
            if stats.master_address is not None:
                master = {"address": str(stats.master_address), "priority": stats.master_priority}
            health = instance.health
            instances[name] = {
                "state": stats.state.value,
                "in_state_for": round(in_state, 3),
                "last_transition": round(wall - in_state, 3),
                "interface": config.interface,
                "vrid": config.vrid,
                "family": f"ipv{config.family.value}",
                "base_priority": stats.base_priority,
                "effective_priority": stats.effective_priority,
                "maintenance": stats.maintenance,
                "faults": sorted(stats.faults),
                "trackers": [attrs.asdict(c) for c in health.contributions] if health else [],
                "master": master,
                "advert_interval": config.advert_interval_cs / 100,
                "master_advert_interval": stats.master_adver_interval / 1_000_000,
                "holding_addresses": stats.holding_addresses,
                "addresses": [str(a.address) for a in config.addresses],
                "excluded_addresses": [str(a.address) for a in config.excluded_addresses],
                "unicast_peers": [str(p) for p in config.unicast_peers],
                "counters": {
                    "adverts_sent": stats.adverts_sent,
                    "adverts_received": stats.adverts_received,
                    "priority_zero_sent": stats.priority_zero_sent,
                    "priority_zero_received": stats.priority_zero_received,
                    "became_master": stats.became_master,
                    "drops": {
                        r.value: n for r, n in sorted(stats.drops.items(), key=lambda i: i[0].value)
                    },
                    "queue_overflows": instance.queue_overflows,
                },
            }
        scripts = {}
        for name in self.config.scripts:
            s = self._trackers.script_statistics(name)
            outcome = s.last_outcome
            scripts[name] = {
                "state": s.state,
                "good": s.state != "bad",
                "tracked": s.tracked,
                "position": s.position,
                "consecutive_successes": s.consecutive_successes,
                "consecutive_failures": s.consecutive_failures,
                "rise": s.rise,
                "fall": s.fall,
                "last_result": outcome.describe() if outcome is not None else None,
                "last_exit_status": s.last_exit_status,
                "last_duration": None if s.last_duration is None else round(s.last_duration, 6),
                "last_run": None if s.last_run is None else round(wall - (now - s.last_run), 3),
                "last_run_ago": None if s.last_run is None else round(now - s.last_run, 3),
                "runs": s.runs,
                "failures": s.failures,
                "timeouts": s.timeouts,
                "skipped": s.skipped,
            }
        notifications = {
            name: attrs.asdict(stats) for name, stats in self.notifier.statistics().items()
        }
        return {
            "router_id": self.config.global_.router_id or os.uname().nodename,
            "pid": os.getpid(),
            "version": __version__,
            "uptime": 0.0 if self._started_at is None else round(now - self._started_at, 3),
            "instances": instances,
            "scripts": scripts,
            "notifications": notifications,
            "interface_drops": self.drops(),
            **{key: section() for key, section in self.status_sections.items()},
        }

    def drops(self) -> dict[str, dict[str, int]]:
        """Packets dropped before reaching an instance, per interface and reason."""
        result: dict[str, dict[str, int]] = {}
        for counts, reason in (
            (self._unknown_vrid, DropReason.UNKNOWN_VRID),
            (self._header_errors, DropReason.IP_HEADER),
        ):
            for (interface, family), count in counts.items():
                result.setdefault(f"{interface}/ipv{family.value}", {})[reason.value] = count
        return result

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; call :meth:`stop` for a graceful stop first."""
        self._started_at = trio.current_time()
        for name, config in self.config.instances.items():
            self.instances[name] = await self._new_instance(config)
        for instance in self.instances.values():
            await self._remove_stale(instance)
        self._maintenance = set(await self.store.load()) & set(self.instances)
        for name in sorted(self._maintenance):
            log.warning("%s: in maintenance (kept from before the restart)", name)
            self.instances[name].post(MaintenanceChanged(True))
        for route in self.config.routes:
            await self._static("add", describe_route(route), self.netlink.add_route(route))
        for rule in self.config.rules:
            await self._static("add", describe_rule(rule), self.netlink.add_rule(rule))
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._trackers_scope = await self._start_cancellable(self._trackers.run)
                await nursery.start(self.notifier.run)
                nursery.start_soon(self._watch_netlink)
                nursery.start_soon(self._reassert_loop)
                self._update_transports()
                await self._prime(list(self.instances.values()))
                for instance in self.instances.values():
                    await nursery.start(instance.drive)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for transport in self._transports.values():
                transport.close()
            with trio.CancelScope(shield=True):
                await self._remove_static(self.config.routes, self.config.rules)

    async def _prime(self, instances: Sequence[Instance]) -> None:
        """Let every instance about to start record what is already known before any starts.

        One instance's pre-start events (maintenance, a failed tracker) put the other members
        of its sync group in FAULT through their inboxes; were the first member started before
        the second had recorded its maintenance, it would become master for a moment (an
        owner: advertise, install its addresses and notify) and then leave at once.
        """
        while any([await instance.prime() for instance in instances]):
            pass

    async def _start_cancellable(
        self, function: Callable[..., Awaitable[None]]
    ) -> trio.CancelScope:
        """Start ``function(task_status=...)`` in the nursery, in a scope we can cancel later
        (the trackers are replaced on reload)."""
        assert self._nursery is not None
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with scope:
                await function(task_status=task_status)

        await self._nursery.start(run)
        return scope

    async def stop(self, *, immediate: bool = False) -> None:
        """Stop every router gracefully (priority 0 from masters, addresses handed over), then
        let the queued notifications (notify_stop) run.

        Returns when every router has stopped; with ``immediate`` addresses go at once.
        """
        instances = [*self.instances.values(), *self._retiring]
        for instance in instances:
            instance.post(Shutdown(immediate=immediate))
        longest = max(
            (release_timeout(i.statistics().master_adver_interval) for i in instances),
            default=0,
        )
        with trio.move_on_after(longest / 1_000_000 + STOP_MARGIN):
            for instance in instances:
                await instance.stopped.wait()
        if not immediate:
            await self.notifier.drain(self.notifier.worst_case_drain())

    # ------------------------------------------------------------------ internals

    def _new_trackers(self, config: NodeConfig, previous: Trackers | None) -> Trackers:
        return Trackers(config, self.netlink, self.runner, self._on_health, previous=previous)

    def _on_health(self, name: str, health: Health) -> None:
        instance = self.instances.get(name)
        if instance is None:
            return
        instance.health = health
        instance.post(health.event())

    def after_handle(self, instance: Instance, changes: Sequence[StateChanged]) -> None:
        """Propagate a member's change to its sync group."""
        for group in self.config.sync_groups.values():
            if instance.name not in group.instances:
                continue
            members = {
                name: self.instances[name].router
                for name in group.instances
                if name in self.instances
            }
            for name, event in sync_events(group.name, members, instance.name, changes):
                self.instances[name].post(event)

    async def _new_instance(self, config: InstanceConfig) -> Instance:
        if await self.netlink.link(config.interface) is None:
            raise EnvironmentProblem(
                f"instance {config.name}: interface {config.interface} does not exist "
                f"(check `ip link show {config.interface}`)"
            )
        local = config.unicast_source or await self._wait_for_source(config)
        if local is None:
            kind = "IPv4 address" if config.family is Family.IPV4 else "IPv6 link-local address"
            raise EnvironmentProblem(
                f"instance {config.name}: interface {config.interface} has no {kind} to send "
                "advertisements from; configure one or set unicast_source"
            )
        return Instance(self, config, VirtualRouter(router_params(config, local)))

    async def _wait_for_source(self, config: InstanceConfig) -> IPAddress | None:
        """The interface's primary address, waiting a little for one being set up.

        An interface that has just come up gets its IPv6 link-local address a moment later
        (after duplicate address detection), so a daemon started with the network must wait.
        """
        with trio.move_on_after(SOURCE_ADDRESS_WAIT):
            while True:
                local = await self.netlink.primary_address(config.interface, config.family)
                if local is not None:
                    return local
                await trio.sleep(0.1)
        return None

    async def _remove_stale(self, instance: Instance) -> None:
        """Remove addresses, routes and rules a crashed previous run left behind."""
        netlink = self.netlink
        for rule in instance.config.virtual_rules:
            if await netlink.remove_rule(rule):
                log.warning(
                    "%s: removed %s, left by a previous run", instance.name, describe_rule(rule)
                )
        for route in instance.config.virtual_routes:
            if await netlink.remove_route(route):
                log.warning(
                    "%s: removed %s, left by a previous run", instance.name, describe_route(route)
                )
        for spec in instance.all_specs:
            if await netlink.link(spec.dev) is not None and await netlink.remove_address(spec):
                log.warning(
                    "%s: removed %s, left by a previous run (we start as backup)",
                    instance.name,
                    describe_address(spec),
                )

    async def _static(self, verb: str, what: str, operation: Awaitable[bool]) -> None:
        try:
            await operation
        except NetlinkError as exc:
            log.error("cannot %s static %s: %s", verb, what, exc)

    async def _remove_static(
        self, routes: Sequence[RouteConfig], rules: Sequence[RuleConfig]
    ) -> None:
        for rule in reversed(rules):
            await self._static("remove", describe_rule(rule), self.netlink.remove_rule(rule))
        for route in reversed(routes):
            await self._static("remove", describe_route(route), self.netlink.remove_route(route))

    def _update_transports(self) -> None:
        """Open (or reopen) one transport per (interface, family) in use; close the rest."""
        assert self._nursery is not None
        wanted: dict[tuple[str, Family], bool] = {}
        live = [*self.instances.values(), *self._retiring]
        for instance in live:
            key = (instance.config.interface, instance.config.family)
            wanted[key] = wanted.get(key, False) or not instance.config.unicast_peers
        for key in list(self._transports):
            if key not in wanted:
                self._close_transport(key)
        self._demux = {key: {} for key in wanted}
        for key, multicast in wanted.items():
            transport = self._transports.get(key)
            if transport is not None and transport.multicast != multicast:
                self._close_transport(key)
                transport = None
            if transport is None:
                transport = self._transport_factory(key[0], key[1], multicast=multicast)
                self._transports[key] = transport
                scope = trio.CancelScope()
                self._receivers[key] = scope
                self._nursery.start_soon(self._receive_loop, key, transport, scope)
        for instance in live:
            key = (instance.config.interface, instance.config.family)
            instance.transport = self._transports[key]
            self._demux[key][instance.config.vrid] = instance

    def _close_transport(self, key: tuple[str, Family]) -> None:
        self._receivers.pop(key).cancel()
        self._transports.pop(key).close()

    async def _receive_loop(
        self, key: tuple[str, Family], transport: Transport, scope: trio.CancelScope
    ) -> None:
        with scope:
            while True:
                try:
                    packet = await transport.receive()
                except DecodeError as exc:
                    self._header_errors[key] = self._header_errors.get(key, 0) + 1
                    self._logs.log(
                        log, logging.INFO, ("header", key), "%s: dropped a packet: %s", key[0], exc
                    )
                    continue
                vrid = peek_vrid(packet.message)
                routes = self._demux.get(key, {})
                instance = routes.get(vrid) if vrid is not None else None
                if instance is None:
                    self._unknown_vrid[key] = self._unknown_vrid.get(key, 0) + 1
                    self._logs.log(
                        log,
                        logging.INFO,
                        ("vrid", key),  # one line per interface, not per VRID: floods
                        "%s: dropped an advertisement from %s for VRID %s: %s",
                        key[0],
                        packet.source,
                        vrid,
                        "no instance has this VRID here",
                    )
                    continue
                instance.post_packet(packet)

    async def _watch_netlink(self) -> None:
        """Forget cached link details on link changes; put back addresses removed from a
        master by someone else (NetworkManager, systemd-networkd, an operator)."""
        while True:
            channel = self.netlink.subscribe()
            async with channel:
                async for event in channel:
                    if isinstance(event, LinkEvent):
                        was_up = self._links_up.get(event.name, True)
                        up = event.state is not None and event.state.up
                        self._links_up[event.name] = up
                        self.announcements.forget(event.name)
                        if up and not was_up:
                            # The kernel flushed the link's IPv6 addresses and routes when it
                            # went down; a master still holding them puts them back now,
                            # not at the next periodic check, and announces them all again
                            # (neighbours may have forgotten us while the link was down).
                            await self._reassert_all(announce_all=True)
                    elif not event.present:
                        await self._address_removed(event)
            # The subscription was closed (overflow): subscribe again, re-check everything.
            await self._reassert_all()

    async def _address_removed(self, event: AddressEvent) -> None:
        if not self._links_up.get(event.interface, True):
            return  # a link going down flushes its IPv6 addresses; trackers handle that
        for instance in self.instances.values():
            if not instance.router.holding_addresses:
                continue
            specs = [
                s
                for s in instance.all_specs
                if s.dev == event.interface and s.address == event.address
            ]
            added = await instance.install(specs, (), (), reassert=True)
            if added:
                await self.announcements.announce(added, instance.config.garp_repeat)

    async def _reassert_loop(self) -> None:
        while True:
            await trio.sleep(REASSERT_INTERVAL)
            await self._reassert_all()

    async def _reassert_all(self, *, announce_all: bool = False) -> None:
        """Put back what a master holds and someone removed; announce what was put back
        (everything with ``announce_all``)."""
        for instance in list(self.instances.values()):
            if not instance.router.holding_addresses:
                continue
            specs = [s for s in instance.all_specs if self._links_up.get(s.dev, True)]
            added = await instance.install(
                specs,
                instance.config.virtual_routes,
                instance.config.virtual_rules,
                reassert=True,
            )
            if announce_all or added:
                announce = specs if announce_all else added
                await self.announcements.announce(announce, instance.config.garp_repeat)
        for route in self.config.routes:
            await self._reassert_static(describe_route(route), self.netlink.add_route(route))
        for rule in self.config.rules:
            await self._reassert_static(describe_rule(rule), self.netlink.add_rule(rule))

    async def _reassert_static(self, what: str, operation: Awaitable[bool]) -> None:
        try:
            if await operation:
                log.warning("static %s had been removed by someone else: put it back", what)
        except NetlinkError as exc:
            log.error("cannot put back static %s: %s", what, exc)

    # ------------------------------------------------------------------ reload

    async def reload(self, config: NodeConfig) -> ReloadResult:
        """Apply a new (already validated) configuration without flapping.

        Instances are matched old to new by (VRID, family, interface, unicast source), not by
        name. A matched instance keeps its router, state and addresses: only what changed is
        applied (addresses, routes and rules as a diff). Removed instances stop as on
        SIGTERM (a master sends priority 0 and hands over); new ones start as backup. Scripts
        matched by name keep their rise/fall position.
        """
        async with self._reload_lock:
            assert self._nursery is not None, "reload needs a running node"
            old_by_key = {instance_key(i.config): i for i in self.instances.values()}
            # First everything that can fail (a new instance's interface may be missing), so
            # that a failed reload changes nothing.
            matched: dict[str, Instance] = {}
            added: dict[str, Instance] = {}
            for name, new in config.instances.items():
                instance = old_by_key.pop(instance_key(new), None)
                if instance is None:
                    added[name] = await self._new_instance(new)
                else:
                    matched[name] = instance
            removed = list(old_by_key.values())
            changed = [n for n, i in matched.items() if i.config != config.instances[n]]
            maintenance = {n for n, i in matched.items() if i.name in self._maintenance}
            # The new effective priorities (pure): a master advertises its new one once.
            tracking = Tracking(config, previous=self._trackers.tracking)
            # Before any instance takes its new name: a transition from now on finds a queue.
            self.notifier.reconfigure(config.instances.values())
            for name in changed:
                priority = tracking.health(name).priority
                await self._reconfigure(matched[name], config.instances[name], priority)
            for instance in removed:
                instance.retiring = True
                self._retiring.append(instance)
                instance.post(Shutdown())
                self._nursery.start_soon(self._forget_when_stopped, instance)
            old_config = self.config
            self.config = config
            self.instances = {name: (matched.get(name) or added[name]) for name in config.instances}
            self._maintenance = maintenance
            grouped = {name for g in config.sync_groups.values() for name in g.instances}
            for name, instance in matched.items():
                if name not in grouped:
                    # A group it has left (or that is gone) may hold it in FAULT, and no
                    # member will ever tell it otherwise; a no-op if nothing holds it.
                    instance.post(SyncFault(False))
            for instance in added.values():
                await self._remove_stale(instance)
            self._update_transports()
            await self._restart_trackers(config)
            await self._reload_static(old_config, config)
            await self._prime(list(added.values()))
            for instance in added.values():
                await self._nursery.start(instance.drive)
            await self._save_maintenance()
            result = ReloadResult(
                tuple(matched), tuple(changed), tuple(added), tuple(i.name for i in removed)
            )
            log.info("configuration reloaded: %s", result.summary())
            return result

    async def _reconfigure(self, instance: Instance, new: InstanceConfig, priority: int) -> None:
        old = instance.config
        old_specs, old_routes, old_rules = instance.all_specs, old.virtual_routes, old.virtual_rules
        instance._apply_config(new)
        params = router_params(new, instance.local_address)
        if instance.router.holding_addresses:
            new_specs = instance.all_specs
            add_specs = [s for s in new_specs if s not in old_specs]
            add_routes = [r for r in new.virtual_routes if r not in old_routes]
            add_rules = [r for r in new.virtual_rules if r not in old_rules]
            await instance.install(add_specs, add_routes, add_rules)
            await instance.remove(
                [s for s in old_specs if s not in new_specs],
                [r for r in old_routes if r not in new.virtual_routes],
                [r for r in old_rules if r not in new.virtual_rules],
            )
            if add_specs:
                await self.announcements.announce(add_specs, new.garp_repeat)
        instance.post(Reconfigure(params, None if params.owner else priority))

    async def _forget_when_stopped(self, instance: Instance) -> None:
        await instance.stopped.wait()
        if instance in self._retiring:
            self._retiring.remove(instance)
        if self._nursery is not None:
            self._update_transports()

    async def _restart_trackers(self, config: NodeConfig) -> None:
        assert self._nursery is not None
        previous = self._trackers
        if self._trackers_scope is not None:
            self._trackers_scope.cancel()
        self._trackers = self._new_trackers(config, previous=previous)
        self._trackers_scope = await self._start_cancellable(self._trackers.run)

    async def _reload_static(self, old: NodeConfig, new: NodeConfig) -> None:
        for route in new.routes:
            if route not in old.routes:
                await self._static("add", describe_route(route), self.netlink.add_route(route))
        for rule in new.rules:
            if rule not in old.rules:
                await self._static("add", describe_rule(rule), self.netlink.add_rule(rule))
        await self._remove_static(
            [r for r in old.routes if r not in new.routes],
            [r for r in old.rules if r not in new.rules],
        )


@asynccontextmanager
async def open_node(
    config: NodeConfig | str | os.PathLike[str],
    *,
    netlink: Netlink | None = None,
    transport_factory: TransportFactory | None = None,
    announcements: Announcements | None = None,
    runner: ProcessRunner | None = None,
    store: MaintenanceStore | None = None,
    timer_lead: float = 0.0,
) -> AsyncIterator[Node]:
    """Run a node for the duration of the ``async with`` block; stop it gracefully at exit.

    ``config`` is a :class:`NodeConfig` or the path of a node.toml. Without the keyword
    arguments the node runs on the real network (raw sockets and netlink: root or
    CAP_NET_RAW + CAP_NET_ADMIN) and runs real scripts; tests pass :mod:`pyvrrp.testing`
    fakes instead. ``timer_lead`` (seconds) wakes routers that much before their deadlines
    to make up for the event loop's latency (the daemon uses 1 ms); their decisions still
    happen at the exact deadline times.
    """
    if not isinstance(config, NodeConfig):
        from pyvrrp.configfile import load

        config = load(config)
    async with AsyncExitStack() as stack:
        if netlink is None:
            from pyvrrp.runtime.netlink import open_netlink

            netlink = await stack.enter_async_context(open_netlink())
        if announcements is None:
            from pyvrrp.runtime.announcer import LinkAnnouncements

            real = LinkAnnouncements()
            stack.callback(real.close)
            announcements = real
        if transport_factory is None:
            from pyvrrp.runtime.transport import open_raw_transport

            transport_factory = open_raw_transport
        node = Node(
            config,
            netlink=netlink,
            transport_factory=transport_factory,
            announcements=announcements,
            runner=runner,
            store=store,
            timer_lead=timer_lead,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                yield node
            finally:
                with trio.CancelScope(shield=True):
                    await node.stop()
                nursery.cancel_scope.cancel()


__all__ = [
    "Instance",
    "Node",
    "ReloadResult",
    "Transition",
    "instance_key",
    "now_us",
    "open_node",
    "router_params",
]
