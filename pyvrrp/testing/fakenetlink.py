"""An in-memory :class:`~pyvrrp.runtime.netlink.Netlink`, for tests in trio's virtual time.

No threads and no kernel: every operation is a plain method call behind one trio checkpoint,
so tests using the ``autojump_clock`` fixture run at full speed. It behaves as the kernel does
in the cases the daemon meets (tests/runtime/test_fakenetlink.py checks it against the
scenarios tests/netns/test_netlink.py runs on the real kernel):

- adding what exists returns False, removing what is absent returns False, and the errors
  (missing interface, an IPv6 address with another prefix, a conflicting route, an
  unreachable gateway) carry the same messages as :class:`PyrouteNetlink`'s;
- events are emitted as the kernel emits them: a link going down also loses its IPv6
  addresses (the kernel flushes them unless ``keep_addr_on_down``) and its routes; deleting a
  link removes its addresses (one event each) and then the link;
- IPv4 secondaries are derived as the kernel does (an address in the subnet of an earlier one
  with the same prefix length) and promoted when their primary goes (systemd's
  ``promote_secondaries=1``);
- ``ipv6_link_local=True`` on :meth:`FakeNetlink.add_link` gives the link the kernel's EUI-64
  link-local address whenever it comes up;
- :meth:`~FakeNetlink.delivers_locally`: an address is delivered locally while it is there
  and not tentative; an IPv6 address we add only ``ipv6_local_delay`` seconds (trio time)
  after :meth:`~FakeNetlink.add_address` returned, as the kernel gives it its local route
  from a work queue (0 by default: at once); its notification (an AddressEvent) comes then
  too, as the kernel's does.

Test hooks: :meth:`FakeNetlink.add_link`, :meth:`~FakeNetlink.set_link_up`,
:meth:`~FakeNetlink.delete_link`, :meth:`~FakeNetlink.add_address_externally` and
:meth:`~FakeNetlink.remove_address_externally` (what NetworkManager does behind our back),
:meth:`~FakeNetlink.finish_dad`, :meth:`~FakeNetlink.fail_next`; read-only views
(:attr:`~FakeNetlink.links`, :attr:`~FakeNetlink.address_map`,
:attr:`~FakeNetlink.address_specs`, :attr:`~FakeNetlink.routes`, :attr:`~FakeNetlink.rules`);
and :attr:`~FakeNetlink.operations`, every mutating call of the protocol in call order, e.g.
``("add_address", spec)``, ``("remove_route", route)``.
"""

from __future__ import annotations

import errno
import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface
from types import MappingProxyType, TracebackType
from typing import Final, Self

import attrs
import trio

from pyvrrp.core.config import IPInterface, RouteConfig, RuleConfig
from pyvrrp.core.packet import Family, IPAddress
from pyvrrp.runtime.netlink.contract import (
    AddressEvent,
    AddressSpec,
    Change,
    EventHub,
    LinkEvent,
    LinkState,
    NetlinkError,
    NetlinkEvent,
    address_conflict,
    describe_address,
    describe_route,
    interface_missing,
    kernel_error,
    route_conflict,
)

__all__ = ["OPERATIONS", "FakeNetlink"]

#: The protocol's operations, the names :meth:`FakeNetlink.fail_next` accepts.
OPERATIONS: Final = frozenset(
    {
        "link",
        "primary_address",
        "addresses",
        "delivers_locally",
        "add_address",
        "remove_address",
        "add_route",
        "remove_route",
        "add_rule",
        "remove_rule",
    }
)
_MAIN_TABLE: Final = 254


@attrs.define
class _Address:
    spec: AddressSpec
    tentative: bool = False
    local_at: float = -math.inf  # trio time from which the address is delivered locally


@attrs.define
class _Link:
    name: str
    index: int
    up: bool
    mac: bytes
    mtu: int
    ipv6_link_local: bool
    addresses: list[_Address] = attrs.Factory(list)

    def state(self) -> LinkState:
        return LinkState(name=self.name, index=self.index, up=self.up, mac=self.mac, mtu=self.mtu)

    def find(self, address: IPInterface) -> _Address | None:
        return next((a for a in self.addresses if a.spec.address == address), None)


def eui64_link_local(mac: bytes) -> IPv6Interface:
    """The link-local address the kernel derives from a 6-byte MAC (RFC 4291 appendix A)."""
    identifier = bytearray(mac[:3] + b"\xff\xfe" + mac[3:])
    identifier[0] ^= 0x02  # the universal/local bit
    return IPv6Interface((IPv6Address(b"\xfe\x80" + bytes(6) + bytes(identifier)), 64))


class FakeNetlink:
    """:class:`~pyvrrp.runtime.netlink.Netlink` in memory (see the module docstring)."""

    def __init__(self, *, ipv6_local_delay: float = 0.0) -> None:
        self._ipv6_local_delay = ipv6_local_delay
        self._links: dict[str, _Link] = {}
        self._routes: list[RouteConfig] = []
        self._rules: list[RuleConfig] = []
        self._failures: defaultdict[str, deque[BaseException]] = defaultdict(deque)
        self._hub = EventHub()
        self._next_index = 2  # 1 is lo
        self._closed = False
        self.operations: list[tuple[str, object]] = []
        """Every mutating protocol call, in order, with its argument (even when it failed)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Read-only views.

    @property
    def links(self) -> Mapping[str, LinkState]:
        """Every link by name."""
        return MappingProxyType({name: link.state() for name, link in self._links.items()})

    @property
    def address_map(self) -> Mapping[str, tuple[IPInterface, ...]]:
        """Every link's addresses, in the order they were added."""
        return MappingProxyType(
            {
                name: tuple(a.spec.address for a in link.addresses)
                for name, link in self._links.items()
            }
        )

    @property
    def address_specs(self) -> Mapping[str, tuple[AddressSpec, ...]]:
        """Every link's addresses with how they were added (label, NODAD, lifetime...)."""
        return MappingProxyType(
            {name: tuple(a.spec for a in link.addresses) for name, link in self._links.items()}
        )

    @property
    def routes(self) -> tuple[RouteConfig, ...]:
        """The routes we or the test installed, in order."""
        return tuple(self._routes)

    @property
    def rules(self) -> tuple[RuleConfig, ...]:
        """The rules we or the test installed, in order."""
        return tuple(self._rules)

    # Test hooks: the world changing.

    def add_link(
        self,
        name: str,
        *,
        up: bool = True,
        mac: bytes | None = None,
        mtu: int = 1500,
        addresses: Iterable[IPInterface] = (),
        ipv6_link_local: bool = False,
    ) -> LinkState:
        """Create a link (as ``ip link add``), emitting its events. ``mac`` defaults to
        02:00:00:00:00:<index>; ``addresses`` are installed at once, DAD done."""
        if name in self._links:
            raise ValueError(f"link {name} already exists")
        index = self._next_index
        self._next_index += 1
        link = _Link(
            name=name,
            index=index,
            up=up,
            mac=mac if mac is not None else bytes([2, 0, 0, 0, index >> 8 & 0xFF, index & 0xFF]),
            mtu=mtu,
            ipv6_link_local=ipv6_link_local,
        )
        self._links[name] = link
        events: list[NetlinkEvent] = [LinkEvent(name, link.state())]
        for address in addresses:
            events += self._install(link, AddressSpec(address, name))
        if up:
            events += self._autoconfigure(link)
        self._hub.publish(events)
        return link.state()

    def set_link_up(self, name: str, up: bool) -> None:
        """Bring a link up or down (``ip link set NAME up|down``), as the kernel does: going
        down loses the IPv6 addresses and the routes through the link."""
        link = self._link(name)
        if link.up == up:
            return
        link.up = up
        events: list[NetlinkEvent] = [LinkEvent(name, link.state())]
        if up:
            events += self._autoconfigure(link)
        else:
            for address in [a for a in link.addresses if a.spec.address.version == 6]:
                events += self._uninstall(link, address)
            self._routes = [r for r in self._routes if r.dev != name]
        self._hub.publish(events)

    def delete_link(self, name: str) -> None:
        """Delete a link (``ip link del``): it goes down, loses every address, then goes."""
        link = self._link(name)
        events: list[NetlinkEvent] = []
        if link.up:
            link.up = False
            events.append(LinkEvent(name, link.state()))
        # The kernel reports the IPv6 addresses first, then the IPv4 ones.
        for version in (6, 4):
            for address in [a for a in link.addresses if a.spec.address.version == version]:
                events += self._uninstall(link, address)
        del self._links[name]
        self._routes = [r for r in self._routes if r.dev != name]
        events.append(LinkEvent(name, None))
        self._hub.publish(events)

    def add_address_externally(
        self, name: str, address: IPInterface, *, tentative: bool = False
    ) -> None:
        """Someone else adds an address. ``tentative`` leaves an IPv6 address in DAD until
        :meth:`finish_dad`."""
        link = self._link(name)
        if link.find(address) is not None:
            raise ValueError(f"{address} is already on {name}")
        events = self._install(link, AddressSpec(address, name))
        link.addresses[-1].tentative = tentative and address.version == 6
        self._hub.publish(events)

    def remove_address_externally(self, name: str, address: IPInterface) -> None:
        """Someone else (NetworkManager, an operator) removes an address."""
        link = self._link(name)
        found = link.find(address)
        if found is None:
            raise ValueError(f"{address} is not on {name}")
        self._hub.publish(self._uninstall(link, found))

    def finish_dad(self, name: str, address: IPInterface) -> None:
        """Duplicate address detection succeeded: the kernel re-announces the address."""
        found = self._link(name).find(address)
        if found is None or not found.tentative:
            raise ValueError(f"{address} is not tentative on {name}")
        found.tentative = False
        self._hub.publish([AddressEvent(name, address, True)])

    def fail_next(self, operation: str, exc: BaseException) -> None:
        """Make the next call of ``operation`` (a protocol method name) raise ``exc``.
        Calls queue up: two calls fail the next two operations."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; valid: {sorted(OPERATIONS)}")
        self._failures[operation].append(exc)

    # The protocol.

    async def link(self, name: str) -> LinkState | None:
        await self._enter("link")
        link = self._links.get(name)
        return link.state() if link is not None else None

    async def primary_address(self, interface: str, family: Family) -> IPAddress | None:
        await self._enter("primary_address")
        link = self._links.get(interface)
        if link is None:
            return None
        if family is Family.IPV4:
            for address in link.addresses:
                spec = address.spec
                if (
                    isinstance(spec.address, IPv4Interface)
                    and (spec.scope or "global") == "global"
                    and not self._secondary(link, address)
                ):
                    return spec.address.ip
            return None
        usable = [
            a.spec
            for a in link.addresses
            if a.spec.address.version == 6 and a.spec.address.is_link_local and not a.tentative
        ]
        # The interface's own (oldest) link-local before ours (NODAD), as the real one.
        for spec in [s for s in usable if not s.nodad] + [s for s in usable if s.nodad]:
            return spec.address.ip
        return None

    async def addresses(self, interface: str) -> list[IPInterface]:
        await self._enter("addresses")
        link = self._links.get(interface)
        if link is None:
            return []
        return [a.spec.address for a in link.addresses]

    async def delivers_locally(self, address: IPAddress) -> bool:
        await self._enter("delivers_locally")
        now = trio.current_time()
        return any(
            a.spec.address.ip == address and not a.tentative and now >= a.local_at
            for link in self._links.values()
            for a in link.addresses
        )

    async def add_address(self, spec: AddressSpec) -> bool:
        await self._enter("add_address", spec)
        link = self._links.get(spec.dev)
        if link is None:
            raise interface_missing(f"add address {describe_address(spec)}", spec.dev)
        if link.find(spec.address) is not None:
            return False
        if spec.address.version == 6:
            for address in link.addresses:
                if address.spec.address.ip == spec.address.ip:
                    raise address_conflict(spec, address.spec.address)
        events = self._install(link, spec)
        if spec.address.version == 6 and self._ipv6_local_delay > 0:
            # The kernel notifies a new IPv6 address from its address work, just before it
            # gives the address its local route: not before then.
            added = link.addresses[-1]
            added.local_at = trio.current_time() + self._ipv6_local_delay
            trio.lowlevel.spawn_system_task(self._notify_at, link, added, events)
        else:
            self._hub.publish(events)
        return True

    async def _notify_at(self, link: _Link, added: _Address, events: list[NetlinkEvent]) -> None:
        await trio.sleep_until(added.local_at)
        if any(address is added for address in link.addresses):
            self._hub.publish(events)

    async def remove_address(self, spec: AddressSpec) -> bool:
        await self._enter("remove_address", spec)
        link = self._links.get(spec.dev)
        found = link.find(spec.address) if link is not None else None
        if link is None or found is None:
            return False
        self._hub.publish(self._uninstall(link, found))
        return True

    async def add_route(self, route: RouteConfig) -> bool:
        await self._enter("add_route", route)
        operation = f"add route {describe_route(route)}"
        link = None
        if route.dev is not None:
            link = self._links.get(route.dev)
            if link is None:
                raise interface_missing(operation, route.dev)
            # As the kernel: a down device refuses a route through it outright, except an
            # IPv4 gateway, which is then simply not reachable.
            if not link.up and route.via is None:
                raise kernel_error(operation, errno.ENETDOWN, "Device for nexthop is not up")
            if not link.up and route.to.version == 6:
                raise kernel_error(operation, errno.ENETDOWN, "Nexthop device is not up")
        if route.via is not None and not self._reachable(route.via, link):
            raise kernel_error(operation, errno.ENETUNREACH, "Nexthop has invalid gateway")
        for installed in self._routes:
            if _route_key(installed) == _route_key(route):
                if _route_matches(installed, route):
                    return False
                raise route_conflict(route)
        self._routes.append(route)
        return True

    async def remove_route(self, route: RouteConfig) -> bool:
        await self._enter("remove_route", route)
        for installed in self._routes:
            if _route_matches(installed, route):
                self._routes.remove(installed)
                return True
        return False

    async def add_rule(self, rule: RuleConfig) -> bool:
        await self._enter("add_rule", rule)
        if any(_rule_matches(installed, rule) for installed in self._rules):
            return False
        self._rules.append(rule)
        return True

    async def remove_rule(self, rule: RuleConfig) -> bool:
        await self._enter("remove_rule", rule)
        for installed in self._rules:
            if _rule_matches(installed, rule):
                self._rules.remove(installed)
                return True
        return False

    async def apply(self, changes: Sequence[Change]) -> list[bool | NetlinkError]:
        # Each change is logged as its own operation, in order, as the real one makes them.
        results: list[bool | NetlinkError] = []
        for change in changes:
            operation = getattr(self, change.operation)
            try:
                results.append(await operation(change.item))
            except NetlinkError as exc:
                results.append(exc)
        return results

    def subscribe(self) -> trio.MemoryReceiveChannel[NetlinkEvent]:
        return self._hub.subscribe()

    async def aclose(self) -> None:
        self._closed = True
        self._hub.close()
        await trio.lowlevel.checkpoint()

    # Internals.

    async def _enter(self, operation: str, argument: object = None) -> None:
        # One checkpoint, as a real request has: other tasks run, cancellation is delivered.
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("netlink is closed")
        if argument is not None:
            self.operations.append((operation, argument))
        failures = self._failures.get(operation)
        if failures:
            raise failures.popleft()

    def _link(self, name: str) -> _Link:
        try:
            return self._links[name]
        except KeyError:
            raise ValueError(f"no link {name}") from None

    def _install(self, link: _Link, spec: AddressSpec) -> list[NetlinkEvent]:
        link.addresses.append(_Address(spec))
        return [AddressEvent(link.name, spec.address, True)]

    def _uninstall(self, link: _Link, address: _Address) -> list[NetlinkEvent]:
        link.addresses.remove(address)
        return [AddressEvent(link.name, address.spec.address, False)]

    def _autoconfigure(self, link: _Link) -> list[NetlinkEvent]:
        if not link.ipv6_link_local or len(link.mac) != 6:
            return []
        address = eui64_link_local(link.mac)
        if link.find(address) is not None:
            return []
        return self._install(link, AddressSpec(address, link.name))

    @staticmethod
    def _secondary(link: _Link, address: _Address) -> bool:
        # An IPv4 address is secondary if an older one has the same prefix and subnet.
        mine = address.spec.address
        for older in link.addresses:
            if older is address:
                return False
            if older.spec.address.version == 4 and older.spec.address.network == mine.network:
                return True
        return False

    def _reachable(self, via: IPAddress, link: _Link | None) -> bool:
        if via.version == 6 and via.is_link_local:
            return link is not None  # on-link by definition, but needs a device
        candidates = [link] if link is not None else list(self._links.values())
        return any(
            a.spec.address.version == via.version and via in a.spec.address.network
            for candidate in candidates
            if candidate.up
            for a in candidate.addresses
        )


def _table(route: RouteConfig) -> int:
    return route.table if route.table is not None else _MAIN_TABLE


def _route_key(route: RouteConfig) -> tuple[object, ...]:
    # What the kernel keys routes on: destination, table and metric (IPv6 default 1024).
    default_metric = 1024 if route.to.version == 6 else 0
    metric = route.metric if route.metric is not None else default_metric
    return (route.to, _table(route), metric)


def _route_matches(installed: RouteConfig, query: RouteConfig) -> bool:
    """``installed`` has every field ``query`` gives (destination and table always)."""
    if installed.to != query.to or _table(installed) != _table(query):
        return False
    return all(
        wanted is None or wanted == have
        for wanted, have in (
            (query.via, installed.via),
            (query.dev, installed.dev),
            (query.metric, _route_key(installed)[2]),
            (query.src, installed.src),
            (query.scope, installed.scope),
        )
    )


def _rule_matches(installed: RuleConfig, query: RuleConfig) -> bool:
    """Identical rules; a query without a priority matches any priority."""
    if query.priority is not None and installed.priority != query.priority:
        return False
    return attrs.evolve(installed, priority=None) == attrs.evolve(query, priority=None)
