"""A discrete-event simulator that runs core virtual routers on a simulated LAN, without trio.

Time is integer microseconds and advances only from event to event, so hours of protocol
run in milliseconds and every run with the same seed is identical. Advertisements go through
the real codec: the bytes each router's ``SendAdvert`` carries arrive as ``PacketReceived`` at
the routers that own their destination (or at every router, for the multicast group), so the
simulator exercises what the daemon does with real packets.

    lan = SimLan(delay=100)
    lan.add("A", RouterParams(vrid=1, addresses=(vip,), local_address=a, priority=200))
    lan.add("B", RouterParams(vrid=1, addresses=(vip,), local_address=b))
    lan.start_all()
    lan.run_for(10 * US_PER_SECOND)
    assert lan.masters(1) == ["A"]
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from typing import assert_never

import attrs

from pyvrrp.core.actions import (
    Action,
    Announce,
    Dropped,
    InstallVirtual,
    Notice,
    RemoveVirtual,
    SendAdvert,
    State,
    StateChanged,
)
from pyvrrp.core.events import Event, PacketReceived, Shutdown, Startup, Timeout
from pyvrrp.core.packet import VRRP_TTL
from pyvrrp.core.params import RouterParams
from pyvrrp.core.router import VirtualRouter
from pyvrrp.core.sync import sync_events


@attrs.frozen
class TraceEntry:
    """One action a node's router returned, at the time it was returned."""

    time: int
    node: str
    action: Action


@attrs.define
class SimNode:
    """A router on the simulated LAN. ``alive`` False means crashed (no events at all)."""

    name: str
    router: VirtualRouter
    alive: bool = True
    scheduled: int | None = None

    @property
    def state(self) -> State:
        return self.router.state

    @property
    def vrid(self) -> int:
        return self.router.params.vrid


class SimLan:
    """Routers on one broadcast segment with configurable delay, loss and partitions.

    ``delay`` is the one-way latency in microseconds (``jitter`` adds a uniform random
    0..jitter), ``loss`` the probability (0..1) that one delivery is lost. ``drop`` is a hook
    ``(time, sender, receiver) -> bool`` to lose chosen packets.
    """

    def __init__(
        self,
        *,
        delay: int = 100,
        jitter: int = 0,
        loss: float = 0.0,
        seed: int = 0,
        drop: Callable[[int, str, str], bool] | None = None,
    ) -> None:
        self.now = 0
        self.delay = delay
        self.jitter = jitter
        self.loss = loss
        self.drop = drop
        self.nodes: dict[str, SimNode] = {}
        self.trace: list[TraceEntry] = []
        self._random = random.Random(seed)
        self._queue: list[tuple[int, int, str, Event | Callable[[], None]]] = []
        self._seq = itertools.count()
        self._groups: list[frozenset[str]] | None = None
        self._sync_groups: dict[str, tuple[str, ...]] = {}
        self._sync_of: dict[str, str] = {}

    # ------------------------------------------------------------------ building

    def add(self, name: str, params: RouterParams) -> SimNode:
        node = SimNode(name, VirtualRouter(params))
        self.nodes[name] = node
        return node

    def sync_group(self, group: str, *names: str) -> None:
        """Make the routers ``names`` (of one host, different VRIDs) a sync group."""
        self._sync_groups[group] = names
        for name in names:
            self._sync_of[name] = group

    def start(self, name: str, at: int | None = None) -> None:
        self.inject(name, Startup(), at)

    def start_all(self) -> None:
        for name in self.nodes:
            self.start(name)

    # ------------------------------------------------------------------ disturbances

    def inject(self, name: str, event: Event, at: int | None = None) -> None:
        """Deliver ``event`` to node ``name`` at time ``at`` (default: now)."""
        self._push(self.now if at is None else at, name, event)

    def call_at(self, at: int, function: Callable[[], None]) -> None:
        """Run ``function`` at simulated time ``at`` (to script a scenario)."""
        self._push(at, "", function)

    def stop(self, name: str, at: int | None = None) -> None:
        """Graceful shutdown of one node."""
        self.inject(name, Shutdown(), at)

    def crash(self, name: str) -> None:
        """The node vanishes at once: it sends and receives nothing more."""
        self.nodes[name].alive = False

    def partition(self, *groups: Iterable[str]) -> None:
        """Only nodes in the same group can hear each other until ``heal()``."""
        self._groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        self._groups = None

    def connected(self, a: str, b: str) -> bool:
        if self._groups is None:
            return True
        return any(a in g and b in g for g in self._groups)

    # ------------------------------------------------------------------ running

    def run_until(self, end: int) -> None:
        """Process every event up to and including time ``end``; then now == end."""
        while self._queue and self._queue[0][0] <= end:
            at, _, name, item = heapq.heappop(self._queue)
            self.now = at
            if callable(item):
                item()
                continue
            node = self.nodes[name]
            if not node.alive:
                continue
            if isinstance(item, Timeout):
                if node.scheduled != at:
                    continue  # superseded by a later re-arm
                node.scheduled = None
            self._dispatch(node, item)
        self.now = max(self.now, end)

    def run_for(self, duration: int) -> None:
        self.run_until(self.now + duration)

    # ------------------------------------------------------------------ observing

    def masters(self, vrid: int) -> list[str]:
        """Names of the live nodes that are master of ``vrid``."""
        return [
            n.name
            for n in self.nodes.values()
            if n.alive and n.vrid == vrid and n.state is State.MASTER
        ]

    def transitions(self, name: str | None = None) -> list[tuple[int, str, StateChanged]]:
        return [
            (e.time, e.node, e.action)
            for e in self.trace
            if isinstance(e.action, StateChanged) and (name is None or e.node == name)
        ]

    # ------------------------------------------------------------------ internals

    def _push(self, at: int, name: str, item: Event | Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), name, item))

    def _dispatch(self, node: SimNode, event: Event) -> None:
        now = self.now
        changes: list[StateChanged] = []
        for action in node.router.handle(event, now):
            self.trace.append(TraceEntry(now, node.name, action))
            match action:
                case SendAdvert():
                    self._broadcast(node, action)
                case StateChanged():
                    changes.append(action)
                case InstallVirtual() | RemoveVirtual() | Announce() | Dropped() | Notice():
                    pass  # recorded in the trace; nothing on the simulated wire
                case _:
                    assert_never(action)
        group = self._sync_of.get(node.name)
        if group is not None:
            members = {n: self.nodes[n].router for n in self._sync_groups[group]}
            for name, sync_event in sync_events(group, members, node.name, changes):
                self.inject(name, sync_event)
        deadline = node.router.deadline()
        if deadline is None:
            node.scheduled = None
            return
        # A deadline already past (a priority change shortening a running timer) fires now,
        # as the runtime's max(deadline, clock) does; remember the time it is queued for.
        at = max(deadline, now)
        if at != node.scheduled:
            node.scheduled = at
            self._push(at, node.name, Timeout())

    def _broadcast(self, sender: SimNode, action: SendAdvert) -> None:
        params = sender.router.params
        group = params.family.multicast_group
        for receiver in self.nodes.values():
            if receiver is sender or receiver.vrid != params.vrid:
                continue
            if receiver.router.params.family is not params.family:
                continue
            if not self.connected(sender.name, receiver.name):
                continue
            # The multicast group reaches everyone; a unicast datagram the router that owns
            # its destination. A router speaking VRRPv2 and VRRPv3 sends two per destination:
            # both arrive, in order, each lost on its own.
            local = receiver.router.params.local_address
            latency = self.delay + (self._random.randint(0, self.jitter) if self.jitter else 0)
            for datagram in action.datagrams:
                if datagram.destination not in (group, local):
                    continue
                if self.loss and self._random.random() < self.loss:
                    continue
                if self.drop is not None and self.drop(self.now, sender.name, receiver.name):
                    continue
                self._push(
                    self.now + latency,
                    receiver.name,
                    PacketReceived(
                        datagram.message, datagram.source, datagram.destination, VRRP_TTL
                    ),
                )
