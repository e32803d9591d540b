"""The Python description of a cluster that the lab builds and the config generators render.

One `ClusterSpec` drives everything: the namespaces and addresses `Lab` creates, the
keepalived.conf and node.toml each node gets, and what `Lab.expected_holders()` calls converged.
Tests vary it with `dataclasses.replace` (multicast instead of unicast, another advert interval,
preemption off, other priorities, extra nodes, IPv6-only instances).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace

__all__ = [
    "ClusterSpec",
    "HealthCheckSpec",
    "InstanceSpec",
    "NodeSpec",
    "seed_cluster",
]

_NODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,7}$")


@dataclass(frozen=True)
class NodeSpec:
    """One node: its name and its addresses on the vSwitch (`eth0.4000`)."""

    name: str
    vswitch_ip: str  # e.g. "192.168.200.1"; the /24 comes from ClusterSpec.vswitch_prefix
    vswitch_ipv6: str  # a ULA so IPv6-only instances can use unicast adverts too

    def __post_init__(self) -> None:
        if not _NODE_NAME.match(self.name):
            # Node names end up in interface names (`port-<name>`, 15 bytes at most).
            raise ValueError(f"node name {self.name!r}: use 1-8 letters/digits, first a letter")


@dataclass(frozen=True)
class HealthCheckSpec:
    """The seed's ingress health check (a keepalived vrrp_script / a pyvrrp [scripts.*])."""

    name: str = "chk_nginx_ingress"
    command: tuple[str, ...] = (
        "/usr/bin/curl",
        "-fsS",
        "-o",
        "/dev/null",
        "http://127.0.0.1:80/healthz",
    )
    interval: float = 2.0
    timeout: float = 2.0
    fall: int = 2
    rise: int = 2
    # 100 - 60 = 40 is below both backups (75, 50): an unhealthy master really loses its VIP.
    weight: int = -60


@dataclass(frozen=True)
class InstanceSpec:
    """One VRRP instance. Its members are the nodes that have a priority in `priorities`."""

    name: str
    vrid: int
    priorities: dict[str, int]
    addresses: tuple[str, ...]  # advertised VIPs with prefix, e.g. "1.2.3.58/29"
    excluded_addresses: tuple[str, ...] = ()
    master: str | None = None  # the node configured with `state MASTER`
    advert_interval: float = 1.0
    preempt: bool = True
    track_interfaces: tuple[str, ...] = ("eth0", "dummy0")
    health_check: bool = True
    interface: str = "eth0.4000"
    # The VRRP version: 3, 2 (keepalived's default for IPv4: its config then has no version
    # line) or "2+3" (pyvrrp's migration mode; keepalived has none: keepalived_config refuses
    # it). auth_pass: the VRRPv2 simple password (keepalived's auth_type PASS).
    version: int | str = 3
    auth_pass: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"instance {self.name}: vrid {self.vrid} is not in 1..255")
        if not self.addresses:
            raise ValueError(f"instance {self.name}: needs at least one address")
        families = {ipaddress.ip_interface(a).version for a in self.addresses}
        if len(families) != 1:
            raise ValueError(f"instance {self.name}: addresses mix IPv4 and IPv6")
        for node, prio in self.priorities.items():
            if not 1 <= prio <= 255:
                raise ValueError(f"instance {self.name}: priority {prio} of {node} not in 1..255")
        if self.master is not None and self.master not in self.priorities:
            raise ValueError(f"instance {self.name}: master {self.master} has no priority")
        if self.version not in (2, 3, "2+3"):
            raise ValueError(f"instance {self.name}: version {self.version!r}: 2, 3 or '2+3'")
        if self.auth_pass is not None and self.version == 3:
            raise ValueError(f"instance {self.name}: auth_pass needs version 2 or '2+3'")

    @property
    def family(self) -> int:
        """4 or 6: the family of the advertised addresses (and of the adverts)."""
        return ipaddress.ip_interface(self.addresses[0]).version

    @property
    def members(self) -> tuple[str, ...]:
        """The nodes taking part, highest priority first."""
        return tuple(sorted(self.priorities, key=lambda n: -self.priorities[n]))

    def all_addresses(self) -> tuple[str, ...]:
        """Every address this instance installs (VIPs then excluded), without prefix."""
        return tuple(
            str(ipaddress.ip_interface(a).ip) for a in self.addresses + self.excluded_addresses
        )


@dataclass(frozen=True)
class ClusterSpec:
    """A whole cluster: nodes, instances, and the vSwitch and routing around them."""

    nodes: tuple[NodeSpec, ...]
    instances: tuple[InstanceSpec, ...]
    unicast: bool = True
    health: HealthCheckSpec | None = field(default_factory=HealthCheckSpec)
    vswitch_prefix: int = 24
    vswitch_ipv6_prefix: int = 64
    routing_table: int = 100
    public_v4: str = "1.2.3.56/29"
    gateway_v4: str = "1.2.3.57"
    public_v6: str = "2a03:4444:fff0:59::/64"
    gateway_v6: str = "fe80::1"
    # The client namespace plays Hetzner's router: it owns the gateway addresses.
    client_v6: str = "2a03:4444:fff0:59::1"
    responder_port: int = 7777

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate node names in {names}")
        if not self.nodes:
            raise ValueError("a cluster needs at least one node")
        for inst in self.instances:
            unknown = set(inst.priorities) - set(names)
            if unknown:
                raise ValueError(f"instance {inst.name}: unknown nodes {sorted(unknown)}")
        keys = [(i.vrid, i.family) for i in self.instances]
        if len(set(keys)) != len(keys):
            raise ValueError("two instances share a VRID and address family")

    @property
    def node_names(self) -> tuple[str, ...]:
        """The node names in order."""
        return tuple(n.name for n in self.nodes)

    def node(self, name: str) -> NodeSpec:
        """The node called `name` (KeyError if there is none)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in this cluster (nodes: {', '.join(self.node_names)})")

    def instance(self, name: str) -> InstanceSpec:
        """The instance called `name` (KeyError if there is none)."""
        for i in self.instances:
            if i.name == name:
                return i
        raise KeyError(f"no instance {name!r}")

    def instances_of(self, node: str) -> tuple[InstanceSpec, ...]:
        """The instances `node` takes part in."""
        return tuple(i for i in self.instances if node in i.priorities)

    def vip_addresses(self) -> tuple[str, ...]:
        """Every VIP and excluded address of every instance, without prefix."""
        return tuple(a for i in self.instances for a in i.all_addresses())

    def expected_holders(self) -> dict[str, list[str]]:
        """Who should hold each address once converged with nothing failing: the member with
        the highest priority (RFC 9568 §6.4.3: a higher priority preempts; the seed has no ties).
        """
        result: dict[str, list[str]] = {}
        for inst in self.instances:
            owner = inst.members[0]
            for addr in inst.all_addresses():
                result[addr] = [owner]
        return result

    def with_nodes(self, *extra: str, priority: int = 25) -> ClusterSpec:
        """A copy with extra nodes that join every instance as backups at `priority`."""
        nodes = list(self.nodes)
        instances = list(self.instances)
        for name in extra:
            index = len(nodes) + 1
            nodes.append(_node(name, index))
            instances = [replace(i, priorities={**i.priorities, name: priority}) for i in instances]
        return replace(self, nodes=tuple(nodes), instances=tuple(instances))


def _node(name: str, index: int) -> NodeSpec:
    return NodeSpec(name=name, vswitch_ip=f"192.168.200.{index}", vswitch_ipv6=f"fd00:200::{index}")


# The seed deployment (docs/hetzner-vswitch.md): instance -> (master, {node: priority}).
_SEED_TABLE: tuple[tuple[str, int, dict[str, int]], ...] = (
    ("vip58", 58, {"A": 100, "B": 50, "C": 75}),
    ("vip59", 59, {"A": 75, "B": 100, "C": 50}),
    ("vip60", 60, {"A": 50, "B": 75, "C": 100}),
)


def seed_cluster(nodes: int = 3) -> ClusterSpec:
    """The seed deployment (docs/hetzner-vswitch.md): nodes A, B, C and instances vip58/59/60.

    With fewer than 3 nodes, instances whose master is missing are left out; with more, nodes
    D, E, ... join every instance as backups with priorities 25, 20, ... (below 40, so the
    health check's weight -60 still moves a VIP to a seed backup first).
    """
    if not 1 <= nodes <= 9:
        raise ValueError("seed_cluster supports 1 to 9 nodes")
    names = [chr(ord("A") + i) for i in range(nodes)]
    node_specs = tuple(_node(name, i + 1) for i, name in enumerate(names))
    instances: list[InstanceSpec] = []
    for name, vrid, table in _SEED_TABLE:
        prios = {n: p for n, p in table.items() if n in names}
        for k, extra in enumerate(names[3:]):
            prios[extra] = max(1, 25 - 5 * k)
        master = max(table, key=lambda n: table[n])
        if master not in names:
            continue
        instances.append(
            InstanceSpec(
                name=name,
                vrid=vrid,
                priorities=prios,
                addresses=(f"1.2.3.{vrid}/29",),
                excluded_addresses=(f"2a03:4444:fff0:59:88::{vrid}/64",),
                master=master,
            )
        )
    return ClusterSpec(nodes=node_specs, instances=tuple(instances))
