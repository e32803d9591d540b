"""A harness for running several pyvrrp nodes on an in-memory LAN in virtual time.

Every host gets a :class:`FakeNetlink` (``eth0.4000`` with the host's address, ``eth0`` and
``dummy0``), a :class:`FakeProcessRunner` (no real process ever runs: health checks and
notifications are scripted, and every call is recorded) and a state directory of its own
under the cluster's ``state_root``, so maintenance flags never touch ``/var/lib/pyvrrp``.
Every advertisement a host sends is recorded once, decoded, in :attr:`Cluster.sent`.

The node reads and writes its maintenance flags in a worker thread, and trio's autojump clock
counts a task waiting on a thread as idle: it would jump to the next deadline while the file
is written, and a test would see an arbitrary amount of virtual time pass. The harness's
:meth:`Cluster.start`, :meth:`Cluster.reload` and :meth:`Cluster.set_maintenance` hold the
clock still (:func:`clock_held`) while they wait.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Interface, ip_address
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing

from pyvrrp.core.actions import State
from pyvrrp.core.config import DEFAULT_STATE_DIR, NodeConfig, parse_node
from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import VRRP_TTL, Advertisement, Family, IPAddress, decode
from pyvrrp.runtime.history import HistoryStore, MemoryHistoryStore
from pyvrrp.runtime.node import Node, ReloadResult, Transition
from pyvrrp.runtime.statefile import MaintenanceStore
from pyvrrp.runtime.transport import Transport, TransportFactory
from pyvrrp.testing.fakenetlink import FakeNetlink
from pyvrrp.testing.fakeprocess import FakeProcessRunner
from pyvrrp.testing.lan import MemoryLan, RecordingAnnouncements

INTERFACE = "eth0.4000"
HOSTS = {"A": "192.168.200.1", "B": "192.168.200.2", "C": "192.168.200.3"}


def instance(
    vrid: int, priority: int, vip: str, *, excluded: str | None = None, **extra: Any
) -> dict[str, Any]:
    """An instance table on eth0.4000 without the delayed second announcement burst."""
    table: dict[str, Any] = {
        "interface": INTERFACE,
        "vrid": vrid,
        "priority": priority,
        "addresses": [vip],
        "garp_delay": 0,
    }
    if excluded is not None:
        table["excluded_addresses"] = [excluded]
    table.update(extra)
    return table


def config(instances: Mapping[str, Mapping[str, Any]], **top: Any) -> NodeConfig:
    """A validated node configuration; ``top`` adds top-level tables (scripts, routes...)."""
    return parse_node({"instances": dict(instances), **top})


def with_state_dir(node_config: NodeConfig, state_dir: str | os.PathLike[str]) -> NodeConfig:
    """``node_config`` with ``[global] state_dir`` set."""
    return attrs.evolve(
        node_config, global_=attrs.evolve(node_config.global_, state_dir=os.fspath(state_dir))
    )


# Real seconds of idleness before the held clock jumps anyway: far longer than a state file
# write, short enough that a start that needs virtual time (an IPv6 address in DAD) still ends.
HELD_THRESHOLD = 1.0


@contextlib.contextmanager
def clock_held() -> Iterator[None]:
    """Keep an autojump clock from jumping while the body waits on a worker thread."""
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock):
        yield
        return
    previous = clock.autojump_threshold
    clock.autojump_threshold = HELD_THRESHOLD
    try:
        yield
    finally:
        clock.autojump_threshold = previous


_BOTH = frozenset({2, 3})


@attrs.frozen
class Sent:
    """One advertisement a host sent, decoded; ``time`` is trio time."""

    time: float
    host: str
    source: IPAddress
    destination: IPAddress
    advert: Advertisement


class TaskSteps(trio.abc.Instrument):
    """Counts the steps of the tasks whose name ends with ``suffix`` (``Instance.drive``,
    ``Schedule.run``...): how often they woke."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith(self.suffix):
            self.steps += 1


class RecordingTransport:
    """A transport that records what it sends, then passes everything to ``inner``."""

    def __init__(self, inner: Transport, host: str, sent: list[Sent]) -> None:
        self.inner = inner
        self.host = host
        self.sent = sent
        self.interface = inner.interface
        self.family = inner.family
        self.multicast = inner.multicast

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        self._record(message, source, destination)
        await self.inner.send(message, source, destination)

    def send_now(self, message: bytes, source: IPAddress, destination: IPAddress) -> bool:
        """The inner transport's send_now (the memory LAN's never blocks), recorded."""
        send_now = getattr(self.inner, "send_now")  # noqa: B009 (not every Transport has it)
        if not send_now(message, source, destination):
            return False
        self._record(message, source, destination)
        return True

    def _record(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        # Either version (a VRRPv2 advert without a password): Sent.advert.version says which.
        advert = decode(
            message, source=source, destination=destination, ttl=VRRP_TTL, versions=_BOTH
        )
        self.sent.append(Sent(trio.current_time(), self.host, source, destination, advert))

    async def receive(self) -> PacketReceived:
        return await self.inner.receive()

    def close(self) -> None:
        self.inner.close()


@attrs.define
class Host:
    """One node of the cluster and its fakes; ``transitions`` are every state change."""

    name: str
    address: str
    netlink: FakeNetlink
    announcements: RecordingAnnouncements
    runner: FakeProcessRunner
    node: Node
    scope: trio.CancelScope
    transitions: list[Transition] = attrs.Factory(list)

    def state(self, instance: str) -> State:
        return self.node.instances[instance].state

    def holds(self, address: str) -> bool:
        wanted = ip_address(address.split("/")[0])
        return any(a.ip == wanted for addrs in self.netlink.address_map.values() for a in addrs)

    def transitions_of(self, instance: str) -> list[Transition]:
        return [t for t in self.transitions if t.instance == instance]


class Cluster:
    """Hosts on one MemoryLan; ``start`` runs a node, ``crash`` cancels it without a stop.

    ``state_root`` holds one state directory per host (a temporary directory, removed when
    the cluster's nursery is cancelled, when not given). ``t0`` is when the cluster was made:
    :meth:`at` turns a trio time into seconds since then.
    """

    def __init__(self, nursery: trio.Nursery, state_root: Path | None = None) -> None:
        self.nursery = nursery
        self.lan = MemoryLan()
        self.lan.run(nursery)
        self.hosts: dict[str, Host] = {}
        self.sent: list[Sent] = []
        # In memory: a write on a worker thread would race the removal of state_root.
        self.history_stores: dict[str, MemoryHistoryStore] = {}
        self.t0 = trio.current_time()
        if state_root is None:
            temporary = tempfile.TemporaryDirectory(prefix="pyvrrp-cluster-")
            state_root = Path(temporary.name)
            nursery.start_soon(self._remove_when_cancelled, temporary)
        self.state_root = state_root

    @staticmethod
    async def _remove_when_cancelled(temporary: tempfile.TemporaryDirectory[str]) -> None:
        try:
            await trio.sleep_forever()
        finally:
            temporary.cleanup()

    def at(self, time: float) -> float:
        """A trio time as seconds since ``t0``, rounded to the microsecond."""
        return round(time - self.t0, 6)

    async def sleep_until(self, t: float) -> None:
        """Sleep until ``t`` seconds after ``t0``."""
        await trio.sleep_until(self.t0 + t)

    def state_dir(self, name: str) -> Path:
        return self.state_root / name

    def prepare(self, name: str, node_config: NodeConfig) -> NodeConfig:
        """``node_config`` with the host's own state directory, unless it names one."""
        if node_config.global_.state_dir != DEFAULT_STATE_DIR:
            return node_config
        return with_state_dir(node_config, self.state_dir(name))

    def factory(self, name: str) -> TransportFactory:
        inner = self.lan.factory(name, [ip_address(HOSTS[name])])

        def open_transport(interface: str, family: Family, *, multicast: bool) -> Transport:
            return RecordingTransport(
                inner(interface, family, multicast=multicast), name, self.sent
            )

        return open_transport

    async def start(
        self,
        name: str,
        node_config: NodeConfig,
        *,
        netlink: FakeNetlink | None = None,
        runner: FakeProcessRunner | None = None,
        store: MaintenanceStore | None = None,
        history_store: HistoryStore | None = None,
    ) -> Host:
        """Run a node for host ``name``; ``store`` None keeps the flags in the host's state
        directory (the daemon's StateDirStore). The history is kept in memory, one store per
        host name, so a host started again finds its history (``history_store`` replaces
        it)."""
        address = HOSTS[name]
        if netlink is None:
            netlink = FakeNetlink()
            netlink.add_link(
                INTERFACE, addresses=[IPv4Interface(f"{address}/24")], ipv6_link_local=True
            )
            netlink.add_link("eth0")
            netlink.add_link("dummy0")
        if runner is None:
            runner = FakeProcessRunner()
        announcements = RecordingAnnouncements()
        node = Node(
            self.prepare(name, node_config),
            netlink=netlink,
            transport_factory=self.factory(name),
            announcements=announcements,
            runner=runner,
            store=store,
            history_store=(
                history_store
                if history_store is not None
                else self.history_stores.setdefault(name, MemoryHistoryStore())
            ),
        )
        scope = trio.CancelScope()
        host = Host(name, address, netlink, announcements, runner, node, scope)
        subscription = node.subscribe()

        async def record() -> None:
            async for transition in subscription:
                host.transitions.append(transition)

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with scope:
                async with trio.open_nursery() as inner:
                    inner.start_soon(record)
                    await inner.start(node.run)
                    task_status.started()

        with clock_held():
            await self.nursery.start(run)
        self.hosts[name] = host
        return host

    async def reload(self, name: str, node_config: NodeConfig) -> ReloadResult:
        """Reload host ``name`` with ``node_config`` (in the host's state directory)."""
        with clock_held():
            return await self.hosts[name].node.reload(self.prepare(name, node_config))

    async def set_maintenance(
        self, name: str, on: bool, instances: Sequence[str] = ()
    ) -> list[str]:
        """``Node.set_maintenance`` on host ``name``, the clock held while the flags are saved."""
        with clock_held():
            return await self.hosts[name].node.set_maintenance(on, instances)

    def crash(self, name: str) -> None:
        self.hosts[name].scope.cancel()

    async def stop(self, name: str) -> None:
        host = self.hosts[name]
        await host.node.stop()
        host.scope.cancel()

    def masters(self, instance: str) -> list[str]:
        return [
            name
            for name, host in self.hosts.items()
            if not host.scope.cancel_called and host.state(instance) is State.MASTER
        ]

    def adverts(self, host: str, vrid: int | None = None) -> list[tuple[float, int]]:
        """(seconds since ``t0``, priority) of every advertisement ``host`` sent."""
        return [
            (self.at(s.time), s.advert.priority)
            for s in self.sent
            if s.host == host and (vrid is None or s.advert.vrid == vrid)
        ]

    def changes(self, host: str, instance: str) -> list[tuple[float, State, State]]:
        """(seconds since ``t0``, old, new) of every state change of ``instance`` on ``host``."""
        return [(self.at(t.time), t.old, t.new) for t in self.hosts[host].transitions_of(instance)]
