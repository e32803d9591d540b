"""A node: every virtual router of one configuration, running on trio.

The node opens one transport per (interface, family), demultiplexes received packets to the
instance with that VRID, and runs one driver task per instance. The driver is the only reader
of the clock: it feeds events to the core router with the current time, carries out the
actions it returns in order, and waits for the router's next deadline. Nothing here decides
protocol behaviour; it all happens in :mod:`pyvrrp.core.router`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

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
from pyvrrp.core.config import InstanceConfig, NodeConfig
from pyvrrp.core.events import (
    Event,
    MaintenanceChanged,
    PacketReceived,
    Shutdown,
    Startup,
    Timeout,
)
from pyvrrp.core.packet import DecodeError, DropReason, Family, IPAddress, encode, peek_vrid
from pyvrrp.core.router import RouterParams, RouterStatistics, VirtualRouter
from pyvrrp.core.timers import release_timeout
from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.logs import RateLimiter
from pyvrrp.runtime.netlink import AddressSpec, Netlink, NetlinkError
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


def now_us() -> int:
    """The current trio time in integer microseconds."""
    return round(trio.current_time() * 1_000_000)


@attrs.frozen
class Transition:
    """A state change of one instance, as published to subscribers."""

    instance: str
    old: State
    new: State
    cause: Cause
    reason: str
    priority: int
    time: float  # trio.current_time() when it happened


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
        unicast_peers=frozenset(instance.unicast_peers),
        checksum_mode=instance.ipv4_checksum,
        garp_delay_us=instance.garp_delay_us,
        garp_refresh_us=instance.garp_refresh_us,
        graceful_handover=instance.graceful_handover,
    )


class Instance:
    """One configured instance at run time: its router, its inbox and its resources."""

    def __init__(self, node: Node, config: InstanceConfig, router: VirtualRouter) -> None:
        self.node = node
        self.config = config
        self.router = router
        self.name = config.name
        self.local_address = router.params.local_address
        self.address_specs = [
            AddressSpec.from_config(a, config.interface) for a in config.addresses
        ]
        self.excluded_specs = [
            AddressSpec.from_config(a, config.interface) for a in config.excluded_addresses
        ]
        self.destinations: tuple[IPAddress, ...] = config.unicast_peers or (
            config.family.multicast_group,
        )
        self._inbox_send, self._inbox = trio.open_memory_channel[Event](math.inf)
        self._queued_packets = 0
        self.transport: Transport | None = None
        self.queue_overflows = 0
        self.stopped = trio.Event()
        self._logs = RateLimiter()

    @property
    def state(self) -> State:
        return self.router.state

    def statistics(self) -> RouterStatistics:
        return self.router.statistics()

    def post(self, event: Event) -> None:
        """Queue an event for the driver (control events are never dropped)."""
        self._inbox_send.send_nowait(event)

    def post_packet(self, event: PacketReceived) -> None:
        """Queue a received packet, or drop it when a flood has filled the queue."""
        if self._queued_packets >= PACKET_QUEUE:
            self.queue_overflows += 1
            return
        self._queued_packets += 1
        self._inbox_send.send_nowait(event)

    async def drive(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The driver task: the only reader of the clock for this router.

        Starts the router (Initialize -> Backup or Master) before reporting itself started.
        """
        router = self.router
        await self.execute(router.handle(Startup(), now_us()))
        task_status.started()
        while True:
            deadline = router.deadline()
            event: Event | None = None
            at = math.inf if deadline is None else deadline / 1_000_000
            with trio.move_on_at(at):
                event = await self._inbox.receive()
            now = now_us()
            if event is None:
                assert deadline is not None
                event, now = Timeout(), max(deadline, now)
            elif isinstance(event, PacketReceived):
                self._queued_packets -= 1
            actions = router.handle(event, now)
            await self.execute(actions)
            if router.stopped:
                self.stopped.set()

    async def execute(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, SendAdvert):
                await self._send_advert(action)
            elif isinstance(action, InstallVirtual):
                await self._install()
            elif isinstance(action, RemoveVirtual):
                await self._remove()
            elif isinstance(action, Announce):
                await self.node.announcements.announce(
                    [*self.address_specs, *self.excluded_specs], self.config.garp_repeat
                )
            elif isinstance(action, StateChanged):
                self.node.publish(self, action)
            elif isinstance(action, Dropped):
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
            elif isinstance(action, Notice):
                self._logs.log(
                    log,
                    logging.WARNING,
                    ("notice", action.kind, action.source),
                    "%s: %s %s",
                    self.name,
                    action.source,
                    action.detail,
                )

    async def _send_advert(self, action: SendAdvert) -> None:
        assert self.transport is not None
        for destination in self.destinations:
            message = encode(
                action.advert,
                source=self.local_address,
                destination=destination,
                checksum_mode=self.config.ipv4_checksum,
            )
            await self.transport.send(message, self.local_address, destination)

    async def _install(self) -> None:
        netlink = self.node.netlink
        # Order on becoming master (keepalived): addresses, excluded, routes, rules.
        for spec in [*self.address_specs, *self.excluded_specs]:
            await self._netlink_op("add address", spec.address, netlink.add_address(spec))
        for route in self.config.virtual_routes:
            await self._netlink_op("add route", route.to, netlink.add_route(route))
        for rule in self.config.virtual_rules:
            await self._netlink_op("add rule", rule.table, netlink.add_rule(rule))

    async def _remove(self) -> None:
        netlink = self.node.netlink
        for rule in reversed(self.config.virtual_rules):
            await self._netlink_op("remove rule", rule.table, netlink.remove_rule(rule))
        for route in reversed(self.config.virtual_routes):
            await self._netlink_op("remove route", route.to, netlink.remove_route(route))
        for spec in reversed([*self.address_specs, *self.excluded_specs]):
            await self._netlink_op("remove address", spec.address, netlink.remove_address(spec))

    async def _netlink_op(self, what: str, target: object, op: Awaitable[bool]) -> None:
        try:
            await op
        except NetlinkError as exc:
            log.error("%s: cannot %s %s: %s", self.name, what, target, exc)


class Node:
    """Every virtual router of one :class:`NodeConfig`, with its sockets and netlink."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        netlink: Netlink,
        transport_factory: TransportFactory,
        announcements: Announcements,
    ) -> None:
        self.config = config
        self.netlink = netlink
        self.announcements = announcements
        self._transport_factory = transport_factory
        self.instances: dict[str, Instance] = {}
        self._transports: dict[tuple[str, Family], Transport] = {}
        self._demux: dict[tuple[str, Family], dict[int, Instance]] = {}
        self._subscribers: list[trio.MemorySendChannel[Transition]] = []
        self._unknown_vrid: dict[tuple[str, Family], int] = {}
        self._header_errors: dict[tuple[str, Family], int] = {}
        self._logs = RateLimiter()
        self.started = trio.Event()

    # ------------------------------------------------------------------ observing

    def subscribe(self) -> trio.MemoryReceiveChannel[Transition]:
        """A channel receiving every state change from now on."""
        send, receive = trio.open_memory_channel[Transition](math.inf)
        self._subscribers.append(send)
        return receive

    def publish(self, instance: Instance, change: StateChanged) -> None:
        transition = Transition(
            instance.name,
            change.old,
            change.new,
            change.cause,
            change.reason,
            change.priority,
            trio.current_time(),
        )
        log.info(
            "%s: %s -> %s (%s), priority %d",
            instance.name,
            change.old.value,
            change.new.value,
            change.reason,
            change.priority,
        )
        for send in list(self._subscribers):
            try:
                send.send_nowait(transition)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)

    async def wait_state(self, name: str, state: State) -> None:
        """Wait until instance ``name`` is in ``state``."""
        instance = self.instances[name]
        if instance.state is state:
            return
        receive = self.subscribe()
        with receive:
            async for transition in receive:
                if transition.instance == name and transition.new is state:
                    return

    def states(self) -> dict[str, State]:
        return {name: inst.state for name, inst in self.instances.items()}

    # ------------------------------------------------------------------ control

    def set_maintenance(self, on: bool, names: Iterable[str] | None = None) -> None:
        for name in self.instances if names is None else names:
            self.instances[name].post(MaintenanceChanged(on))

    # ------------------------------------------------------------------ running

    async def _prepare(self) -> None:
        """Resolve addresses, check interfaces, clean stale state: before any router runs."""
        for name, config in self.config.instances.items():
            if await self.netlink.link(config.interface) is None:
                raise EnvironmentProblem(
                    f"instance {name}: interface {config.interface} does not exist "
                    f"(check `ip link show {config.interface}`)"
                )
            local = config.unicast_source or await self._wait_for_source(config)
            if local is None:
                kind = "IPv4 address" if config.family is Family.IPV4 else "IPv6 link-local address"
                raise EnvironmentProblem(
                    f"instance {name}: interface {config.interface} has no {kind} to send "
                    "advertisements from; configure one or set unicast_source"
                )
            router = VirtualRouter(router_params(config, local))
            self.instances[name] = Instance(self, config, router)
        for instance in self.instances.values():
            await self._remove_stale(instance)

    async def _wait_for_source(self, config: InstanceConfig) -> IPAddress | None:
        """The interface's primary address, waiting a little for one that is being set up.

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
        for spec in [*instance.address_specs, *instance.excluded_specs]:
            if spec.address in await netlink.addresses(spec.dev):
                await netlink.remove_address(spec)
                log.warning(
                    "%s: removed %s from %s, left by a previous run (we start as backup)",
                    instance.name,
                    spec.address,
                    spec.dev,
                )
        for rule in instance.config.virtual_rules:
            if await netlink.remove_rule(rule):
                log.warning(
                    "%s: removed a stale virtual rule to table %s", instance.name, rule.table
                )
        for route in instance.config.virtual_routes:
            if await netlink.remove_route(route):
                log.warning("%s: removed a stale virtual route to %s", instance.name, route.to)

    def _open_transports(self) -> None:
        wanted: dict[tuple[str, Family], bool] = {}
        for instance in self.instances.values():
            key = (instance.config.interface, instance.config.family)
            wanted[key] = wanted.get(key, False) or not instance.config.unicast_peers
        for key, multicast in wanted.items():
            self._transports[key] = self._transport_factory(key[0], key[1], multicast=multicast)
        for instance in self.instances.values():
            key = (instance.config.interface, instance.config.family)
            instance.transport = self._transports[key]
            self._demux.setdefault(key, {})[instance.config.vrid] = instance

    async def _receive_loop(self, key: tuple[str, Family], transport: Transport) -> None:
        routes = self._demux[key]
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
            instance = routes.get(vrid) if vrid is not None else None
            if instance is None:
                self._unknown_vrid[key] = self._unknown_vrid.get(key, 0) + 1
                self._logs.log(
                    log,
                    logging.INFO,
                    ("vrid", key, vrid),
                    "%s: dropped an advertisement from %s for VRID %s: %s",
                    key[0],
                    packet.source,
                    vrid,
                    "no instance has this VRID here",
                )
                continue
            instance.post_packet(
                PacketReceived(packet.message, packet.source, packet.destination, packet.ttl)
            )

    def drops(self) -> dict[str, dict[str, int]]:
        """Packets dropped before reaching an instance, per interface and reason."""
        result: dict[str, dict[str, int]] = {}
        for (interface, family), count in self._unknown_vrid.items():
            key = f"{interface}/ipv{family.value}"
            result.setdefault(key, {})[DropReason.UNKNOWN_VRID.value] = count
        for (interface, family), count in self._header_errors.items():
            key = f"{interface}/ipv{family.value}"
            result.setdefault(key, {})[DropReason.IP_HEADER.value] = count
        return result

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; call :meth:`stop` for a graceful stop first."""
        await self._prepare()
        for route in self.config.routes:
            await self.netlink.add_route(route)
        for rule in self.config.rules:
            await self.netlink.add_rule(rule)
        self._open_transports()
        try:
            async with trio.open_nursery() as nursery:
                for key, transport in self._transports.items():
                    nursery.start_soon(self._receive_loop, key, transport)
                for instance in self.instances.values():
                    await nursery.start(instance.drive)
                self.started.set()
                task_status.started()
                await trio.sleep_forever()
        finally:
            for transport in self._transports.values():
                transport.close()
            with trio.CancelScope(shield=True):
                await self._remove_static()

    async def _remove_static(self) -> None:
        for rule in reversed(self.config.rules):
            await self._quietly(self.netlink.remove_rule(rule))
        for route in reversed(self.config.routes):
            await self._quietly(self.netlink.remove_route(route))

    @staticmethod
    async def _quietly(op: Awaitable[bool]) -> None:
        try:
            await op
        except NetlinkError as exc:
            log.error("cleanup: %s", exc)

    async def stop(self, *, immediate: bool = False) -> None:
        """Stop every router gracefully (priority 0 from masters, addresses handed over).

        Returns when every router has stopped; with ``immediate`` addresses go at once.
        """
        for instance in self.instances.values():
            instance.post(Shutdown(immediate=immediate))
        longest = max(
            (
                release_timeout(i.router.statistics().master_adver_interval)
                for i in self.instances.values()
            ),
            default=0,
        )
        with trio.move_on_after(longest / 1_000_000 + STOP_MARGIN):
            for instance in self.instances.values():
                await instance.stopped.wait()


@asynccontextmanager
async def open_node(
    config: NodeConfig | str | os.PathLike[str],
    *,
    netlink: Netlink | None = None,
    transport_factory: TransportFactory | None = None,
    announcements: Announcements | None = None,
) -> AsyncIterator[Node]:
    """Run a node for the duration of the ``async with`` block; stop it gracefully at exit.

    ``config`` is a :class:`NodeConfig` or the path of a node.toml. Without the keyword
    arguments the node runs on the real network (raw sockets and netlink: root or
    CAP_NET_RAW + CAP_NET_ADMIN); tests pass :mod:`pyvrrp.testing` fakes instead.
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

            real = LinkAnnouncements(netlink)
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
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            try:
                yield node
            finally:
                with trio.CancelScope(shield=True):
                    await node.stop()
                nursery.cancel_scope.cancel()


__all__ = ["Instance", "Node", "Transition", "now_us", "open_node", "router_params"]
