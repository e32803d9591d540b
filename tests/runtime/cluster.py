"""A harness for running several pyvrrp nodes on an in-memory LAN in virtual time."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Interface, ip_address
from typing import Any

import attrs
import trio

from pyvrrp.core.actions import State
from pyvrrp.core.config import NodeConfig, parse_node
from pyvrrp.runtime.node import Node, Transition
from pyvrrp.testing.fakenetlink import FakeNetlink
from pyvrrp.testing.lan import MemoryLan, RecordingAnnouncements

INTERFACE = "eth0.4000"
HOSTS = {"A": "192.168.200.1", "B": "192.168.200.2", "C": "192.168.200.3"}


def instance(
    vrid: int, priority: int, vip: str, *, excluded: str | None = None, **extra: Any
) -> dict[str, Any]:
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
    return parse_node({"instances": dict(instances), **top})


@attrs.define
class Host:
    name: str
    address: str
    netlink: FakeNetlink
    announcements: RecordingAnnouncements
    node: Node
    scope: trio.CancelScope
    transitions: list[Transition] = attrs.Factory(list)

    def state(self, instance: str) -> State:
        return self.node.instances[instance].state

    def holds(self, address: str) -> bool:
        wanted = ip_address(address.split("/")[0])
        return any(a.ip == wanted for addrs in self.netlink.address_map.values() for a in addrs)


class Cluster:
    """Hosts on one MemoryLan; ``start`` runs a node, ``crash`` cancels it without a stop."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.lan = MemoryLan()
        self.lan.run(nursery)
        self.hosts: dict[str, Host] = {}

    async def start(
        self, name: str, node_config: NodeConfig, *, netlink: FakeNetlink | None = None
    ) -> Host:
        address = HOSTS[name]
        if netlink is None:
            netlink = FakeNetlink()
            netlink.add_link(
                INTERFACE, addresses=[IPv4Interface(f"{address}/24")], ipv6_link_local=True
            )
            netlink.add_link("eth0")
            netlink.add_link("dummy0")
        announcements = RecordingAnnouncements()
        node = Node(
            node_config,
            netlink=netlink,
            transport_factory=self.lan.factory(name, [ip_address(address)]),
            announcements=announcements,
        )
        scope = trio.CancelScope()
        host = Host(name, address, netlink, announcements, node, scope)
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

        await self.nursery.start(run)
        self.hosts[name] = host
        return host

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
