"""A node: every virtual router of one configuration, running on trio.

The node is the mediator around its instances (:mod:`pyvrrp.runtime.instance`, one driver
task each): it creates them, routes their packets (:mod:`pyvrrp.runtime.demux`), feeds them
health (:mod:`pyvrrp.runtime.trackers`), propagates sync group changes, publishes their
transitions (subscribers, :mod:`pyvrrp.runtime.notify`, :mod:`pyvrrp.runtime.history`;
with the priority changes, :mod:`pyvrrp.runtime.events`), puts back what someone removed
from a master (:mod:`pyvrrp.runtime.reassert`), reports its status
(:mod:`pyvrrp.runtime.status`) and applies a reload. Nothing here decides protocol
behaviour; that happens in :mod:`pyvrrp.core`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from pyvrrp.core.actions import State, StateChanged
from pyvrrp.core.config import InstanceConfig, NodeConfig, RouteConfig, RuleConfig
from pyvrrp.core.events import MaintenanceChanged, Reconfigure, Shutdown, SyncFault
from pyvrrp.core.packet import Family, IPAddress
from pyvrrp.core.router import VirtualRouter
from pyvrrp.core.sync import sync_events
from pyvrrp.core.timers import release_timeout
from pyvrrp.core.tracking import Health, Tracking
from pyvrrp.runtime.demux import Demux
from pyvrrp.runtime.errors import EnvironmentProblem, UnknownInstance
from pyvrrp.runtime.events import EventBus, priority_event, transition_event
from pyvrrp.runtime.history import (
    History,
    HistoryEntry,
    HistoryStore,
    MemoryHistoryStore,
    StateDirHistoryStore,
)
from pyvrrp.runtime.holdings import remove_stale
from pyvrrp.runtime.instance import (
    PACKET_QUEUE,
    Instance,
    InstanceKey,
    Transition,
    instance_key,
    now_us,
    router_params,
)
from pyvrrp.runtime.logs import RateLimiter, fields
from pyvrrp.runtime.netlink import Netlink, NetlinkError, describe_route, describe_rule
from pyvrrp.runtime.notify import Notifier
from pyvrrp.runtime.process import ProcessRunner, RealProcessRunner
from pyvrrp.runtime.reassert import REASSERT_INTERVAL, Reasserter
from pyvrrp.runtime.schedule import Schedule
from pyvrrp.runtime.statefile import MaintenanceStore, StateDirStore, StateFileError
from pyvrrp.runtime.status import InstanceStatus, NodeStatus, ScriptStatus
from pyvrrp.runtime.trackers import Trackers
from pyvrrp.runtime.transport import TransportFactory

if TYPE_CHECKING:
    from pyvrrp.runtime.announcer import Announcements

log = logging.getLogger("pyvrrp")

# How long a graceful stop may wait for routers to hand over, beyond the longest
# release_timeout of any instance.
STOP_MARGIN = 0.5
# How long startup waits for an interface's source address to appear (IPv6 DAD takes ~1 s).
SOURCE_ADDRESS_WAIT = 5.0
# Transitions a subscriber of `Node.subscribe()` (the mailer, a library user) may leave unread;
# more are dropped for that subscriber, counted and logged: a stuck reader costs no memory.
SUBSCRIBER_QUEUE = 1024


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


class Node:
    """Every virtual router of one :class:`NodeConfig`, with its sockets, netlink, trackers
    and notifications.

    ``store`` keeps the maintenance flags (None: ``state_dir``); ``history_store`` the
    transition history (None: ``state_dir`` too when ``store`` is None, else in memory).
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        netlink: Netlink,
        transport_factory: TransportFactory,
        announcements: Announcements,
        runner: ProcessRunner | None = None,
        store: MaintenanceStore | None = None,
        history_store: HistoryStore | None = None,
        timer_lead: float = 0.0,
    ) -> None:
        self.config = config
        self.timer_lead = timer_lead
        self._schedule = Schedule(timer_lead)  # every router's deadline, one task
        self.netlink = netlink
        self.announcements = announcements
        self.runner: ProcessRunner = runner if runner is not None else RealProcessRunner()
        self.store: MaintenanceStore = (
            store if store is not None else StateDirStore(config.global_.state_dir)
        )
        self.instances: dict[str, Instance] = {}
        self._retiring: list[Instance] = []
        self._demux = Demux(transport_factory)
        self._demux.before_batch = self._schedule.fire_due
        self._schedule.sources = self._demux.quiet_sources
        # Through lambdas: a reload replaces self.instances and self.config.
        self._reasserter = Reasserter(
            netlink,
            announcements,
            lambda: self.instances.values(),  # noqa: PLW0108
            lambda: self.config,
        )
        self._subscribers: list[trio.MemorySendChannel[Transition]] = []
        self.subscriber_overflows = 0  # transitions dropped for subscribers that fell behind
        self._logs = RateLimiter()
        self._maintenance: set[str] = set()
        # trio time (monotonic) when run() started: uptime must not jump with the wall clock
        # (an NTP step at boot would make it negative or hours long).
        self._started_at: float | None = None
        self._nursery: trio.Nursery | None = None
        self._trackers = self._new_trackers(config, previous=None)
        self._trackers_scope: trio.CancelScope | None = None
        self.notifier = Notifier(config.instances.values(), self.runner, defaults=config.global_)
        #: Every instance's last transitions, kept across restarts (see ``history_store``).
        if history_store is None:
            # Next to the maintenance flags: in state_dir for the daemon's store; with a
            # store of the caller's (a test's fake), in memory, never on this host's disk.
            history_store = (
                StateDirHistoryStore(config.global_.state_dir)
                if store is None
                else MemoryHistoryStore()
            )
        self.history = History(history_store)
        #: Transitions and priority changes for ``pyvrrp events`` (bounded per subscriber).
        self.events = EventBus()
        self._reload_lock = trio.Lock()
        # More top-level keys of status(), each computed at every call: the daemon adds its
        # mailer's statistics as "email".
        self.status_sections: dict[str, Callable[[], Any]] = {}

    # ------------------------------------------------------------------ observing

    def subscribe(self) -> trio.MemoryReceiveChannel[Transition]:
        """A channel receiving every state change from now on; one that leaves
        ``SUBSCRIBER_QUEUE`` of them unread misses the next ones (counted and logged)."""
        send, receive = trio.open_memory_channel[Transition](SUBSCRIBER_QUEUE)
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
        # The wall clock when the router decided it (actions before this one took a moment).
        wall = time.time() - max(0.0, trio.current_time() - transition.time)
        self.history.record(
            instance.name,
            HistoryEntry(
                wall,
                change.old.value,
                change.new.value,
                change.cause.value,
                change.reason,
                change.priority,
            ),
        )
        self.events.publish(
            transition_event(
                instance=instance.name,
                vrid=instance.config.vrid,
                interface=instance.config.interface,
                old=change.old.value,
                new=change.new.value,
                cause=change.cause.value,
                reason=change.reason,
                priority=change.priority,
                wall=wall,
            )
        )
        for send in list(self._subscribers):
            try:
                send.send_nowait(transition)
            except trio.WouldBlock:
                self.subscriber_overflows += 1
                self._logs.log(
                    log,
                    logging.WARNING,
                    ("subscriber_overflow",),
                    "a subscriber of the transitions has %d unread: dropped one of %s",
                    SUBSCRIBER_QUEUE,
                    instance.name,
                )
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

    def snapshot(self) -> NodeStatus:
        """The status as typed records (see :mod:`pyvrrp.runtime.status`)."""
        now = trio.current_time()
        wall = time.time()
        return NodeStatus.of(
            router_id=self.config.global_.router_id,
            uptime=0.0 if self._started_at is None else round(now - self._started_at, 3),
            instances={
                name: InstanceStatus.of(instance, now, wall, self.history.entries(name))
                for name, instance in self.instances.items()
            },
            scripts=(
                (name, ScriptStatus.of(self._trackers.script_statistics(name), now, wall))
                for name in self.config.scripts
            ),
            notifications=self.notifier.statistics(),
            interface_drops=self.drops(),
            sections={key: section() for key, section in self.status_sections.items()},
        )

    def status(self) -> dict[str, Any]:
        """The JSON-able snapshot ``pyvrrp status --json`` prints and metrics are made of."""
        return self.snapshot().to_json()

    def drops(self) -> dict[str, dict[str, int]]:
        """Packets dropped before reaching an instance, per interface and reason."""
        return self._demux.drops()

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
        await self.history.load(self.instances)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.history.run)
                self._trackers_scope = await self._start_cancellable(self._trackers.run)
                await nursery.start(self.notifier.run)
                nursery.start_soon(self._reasserter.watch_netlink)
                nursery.start_soon(self._reasserter.reassert_loop)
                await nursery.start(self._schedule.run)
                self._update_transports()
                await self._prime(list(self.instances.values()))
                for instance in self.instances.values():
                    await nursery.start(instance.drive)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._demux.close_all()
            with trio.CancelScope(shield=True):
                await self._remove_static(self.config.routes, self.config.rules)
                await self.history.flush()  # the stop's own transitions

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
        # Before the first health: the router's own (its base priority, or an owner's 255).
        before = instance.router.priority if instance.health is None else instance.health.priority
        instance.health = health
        instance.post(health.event())
        if health.priority != before:
            # Where the effective priority changes: the trackers' health reaching the router.
            self.events.publish(
                priority_event(
                    instance=name,
                    vrid=instance.config.vrid,
                    interface=instance.config.interface,
                    old=before,
                    new=health.priority,
                    reason=health.explain_priority(),
                )
            )

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
        return Instance(
            config,
            VirtualRouter(router_params(config, local)),
            netlink=self.netlink,
            announcements=self.announcements,
            publish=self.publish,
            after_handle=self.after_handle,
            schedule=self._schedule,
        )

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
        await remove_stale(self.netlink, instance.name, instance.holdings)

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
        self._demux.update([*self.instances.values(), *self._retiring], self._nursery)

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
            renamed = {i.name: n for n, i in matched.items() if i.name != n}
            maintenance = {n for n, i in matched.items() if i.name in self._maintenance}
            # The new effective priorities (pure): a master advertises its new one once.
            tracking = Tracking(config, previous=self._trackers.tracking)
            # Before any instance takes its new name: a transition from now on finds a queue.
            self.notifier.reconfigure(config.instances.values(), config.global_)
            self.history.keep(config.instances, renamed=renamed)
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
            self._reasserter.config_changed()
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
        old = instance.holdings
        instance.apply_config(new)
        params = router_params(new, instance.local_address)
        if instance.router.holding_addresses:
            added = instance.holdings.minus(old)
            await instance.install(added)
            await instance.remove(old.minus(instance.holdings))
            if added.specs:
                await instance.announce(list(added.specs))
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
    history_store: HistoryStore | None = None,
    timer_lead: float = 0.0,
) -> AsyncIterator[Node]:
    """Run a node for the duration of the ``async with`` block; stop it gracefully at exit.

    ``config`` is a :class:`NodeConfig` or the path of a node.toml. Without the keyword
    arguments the node runs on the real network (raw sockets and netlink: root or
    CAP_NET_RAW + CAP_NET_ADMIN) and runs real scripts; tests pass :mod:`pyvrrp.testing`
    fakes instead (a maintenance ``store`` of the test's keeps the history in memory too,
    unless a ``history_store`` is given). ``timer_lead`` (seconds) wakes routers that much
    before their deadlines to make up for the event loop's latency (the daemon uses 1 ms);
    their decisions still happen at the exact deadline times.
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
            history_store=history_store,
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
    "PACKET_QUEUE",
    "REASSERT_INTERVAL",
    "Instance",
    "InstanceKey",
    "Node",
    "ReloadResult",
    "Transition",
    "instance_key",
    "now_us",
    "open_node",
    "router_params",
]
