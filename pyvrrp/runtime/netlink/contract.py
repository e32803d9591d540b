"""What the rest of pyvrrp sees of netlink: values, the :class:`Netlink` protocol, errors and
the event hub. No kernel library: :mod:`pyvrrp.testing.fakenetlink` builds on this alone.

Events
------
Every :meth:`Netlink.subscribe` channel receives every event from then on: a
:class:`LinkEvent` when a link appears, disappears, or changes its :class:`LinkState`
(repeated kernel notifications with no visible change are not forwarded), and an
:class:`AddressEvent` for every address notification. The kernel re-sends RTM_NEWADDR when an
address changes flags, e.g. when IPv6 duplicate address detection completes, so
``AddressEvent(present=True)`` also means "re-read :meth:`Netlink.primary_address`".
Events are asynchronous: they arrive after the request that caused them returned, and the
kernel announces a new IPv6 address from a work queue, so an IPv6 address removed right after
it was added may produce only its removal event.

Each subscriber has a bounded buffer (:data:`SUBSCRIBER_BUFFER` events). When it is full, or
when the kernel itself dropped notifications (ENOBUFS on the monitor socket), events were
lost: the subscriber's channel is closed, so its ``async for`` loop ends while the netlink
object is still open. The subscriber must then subscribe again and re-read the state it cares
about (:meth:`Netlink.link`, :meth:`Netlink.addresses`), in that order so no change falls
between the two.

Idempotency
-----------
Adding what is already there returns False, removing what is absent returns False; neither is
an error. Removal is "make sure it is absent": an interface that does not exist holds no
address and no route through it, so removing from it returns False. Adding to a missing
interface raises :class:`NetlinkError` naming it.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

import attrs
import trio

from pyvrrp.core.config import AddressConfig, IPInterface, RouteConfig, RuleConfig
from pyvrrp.core.packet import Family, IPAddress

__all__ = [
    "SUBSCRIBER_BUFFER",
    "AddressEvent",
    "AddressSpec",
    "Change",
    "EventHub",
    "LinkEvent",
    "LinkState",
    "Netlink",
    "NetlinkError",
    "NetlinkEvent",
    "NetlinkStatistics",
    "address_conflict",
    "describe_address",
    "describe_item",
    "describe_route",
    "describe_rule",
    "interface_missing",
    "kernel_error",
    "route_conflict",
]

logger = logging.getLogger(__name__)

#: Events buffered per subscriber before it is cut off (see "Events" above).
SUBSCRIBER_BUFFER: Final = 1024


# --- value objects ---------------------------------------------------------------------


@attrs.frozen
class AddressSpec:
    """An address to install, with everything ``ip addr add`` would be told.

    ``preferred_lifetime_zero`` installs the address deprecated (preferred_lft 0, valid
    forever) so the kernel never picks it as a source address.
    """

    address: IPInterface
    dev: str
    label: str | None = None
    scope: str | None = None
    nodad: bool = False
    preferred_lifetime_zero: bool = False

    @classmethod
    def from_config(cls, cfg: AddressConfig, default_dev: str) -> AddressSpec:
        """The spec for a configured address, with keepalived's defaults (docs/keepalived.md).

        IPv6 addresses get NODAD (a VIP must work at once, and a backup that still holds it
        would fail DAD); IPv6 /128 get preferred lifetime 0 so they are never a source.
        ``dev`` defaults to the instance's interface.
        """
        ipv6 = cfg.address.version == 6
        return cls(
            address=cfg.address,
            dev=cfg.dev if cfg.dev is not None else default_dev,
            label=cfg.label,
            scope=cfg.scope,
            nodad=ipv6,
            preferred_lifetime_zero=ipv6 and cfg.address.network.prefixlen == 128,
        )


@attrs.frozen
class LinkState:
    """What the daemon needs to know about an interface.

    ``up`` is keepalived's definition of an interface that works: administratively up
    (IFF_UP) and operationally running (IFF_RUNNING, set by the kernel while the carrier,
    IFF_LOWER_UP, is present). ``mac`` is empty for links without a hardware address.
    """

    name: str
    index: int
    up: bool
    mac: bytes
    mtu: int


@attrs.frozen
class LinkEvent:
    """A link appeared or changed (``state``), or disappeared (``state`` None)."""

    name: str
    state: LinkState | None


@attrs.frozen
class AddressEvent:
    """An address was added or changed (``present`` True), or removed, on ``interface``."""

    interface: str
    address: IPInterface
    present: bool


NetlinkEvent = LinkEvent | AddressEvent


@attrs.frozen
class Change:
    """One change for :meth:`Netlink.apply`: add (or remove) an address, a route or a rule."""

    add: bool
    item: AddressSpec | RouteConfig | RuleConfig

    @property
    def operation(self) -> str:
        """The name of the :class:`Netlink` method this change stands for."""
        kind = {AddressSpec: "address", RouteConfig: "route", RuleConfig: "rule"}[type(self.item)]
        return f"{'add' if self.add else 'remove'}_{kind}"


@attrs.frozen
class NetlinkStatistics:
    """Counters of a netlink object, for ``pyvrrp status`` and metrics."""

    requests: int
    events: int
    subscribers: int
    subscriber_overflows: int
    kernel_overflows: int


class NetlinkError(Exception):
    """A netlink operation failed. The message names the operation, the object and what to
    do; ``errno`` is the kernel's error code when there is one."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


# --- descriptions and errors shared with pyvrrp.testing.fakenetlink ----------------------


def describe_address(spec: AddressSpec) -> str:
    """``1.2.3.58/29 dev eth0.4000``, as in ``ip addr``."""
    return f"{spec.address} dev {spec.dev}"


def describe_route(route: RouteConfig) -> str:
    """A route in ``ip route`` syntax: ``default via 1.2.3.57 dev eth0.4000 table 100``."""
    parts = ["default" if route.to.prefixlen == 0 else str(route.to)]
    if route.via is not None:
        parts.append(f"via {route.via}")
    if route.dev is not None:
        parts.append(f"dev {route.dev}")
    if route.table is not None:
        parts.append(f"table {route.table}")
    if route.metric is not None:
        parts.append(f"metric {route.metric}")
    if route.src is not None:
        parts.append(f"src {route.src}")
    if route.scope is not None:
        parts.append(f"scope {route.scope}")
    if route.to.version == 6 and route.to.prefixlen == 0:
        parts[0] = "default (IPv6)"
    return " ".join(parts)


def describe_rule(rule: RuleConfig) -> str:
    """A rule in ``ip rule`` syntax: ``from 1.2.3.56/29 lookup 100``."""
    parts = []
    if rule.priority is not None:
        parts.append(f"priority {rule.priority}")
    parts.append(f"from {rule.from_}" if rule.from_ is not None else "from all")
    if rule.to is not None:
        parts.append(f"to {rule.to}")
    if rule.iif is not None:
        parts.append(f"iif {rule.iif}")
    if rule.oif is not None:
        parts.append(f"oif {rule.oif}")
    parts.append(f"lookup {rule.table}")
    if rule.family == 6 and rule.from_ is None and rule.to is None:
        parts.append("(IPv6)")
    return " ".join(parts)


def describe_item(item: AddressSpec | RouteConfig | RuleConfig) -> str:
    """An address, route or rule as ``ip`` shows it."""
    if isinstance(item, AddressSpec):
        return describe_address(item)
    if isinstance(item, RouteConfig):
        return describe_route(item)
    return describe_rule(item)


def interface_missing(operation: str, name: str) -> NetlinkError:
    """The error for an operation on an interface that does not exist."""
    return NetlinkError(
        f"cannot {operation}: interface {name} does not exist; check the interface name in "
        f"the configuration, or create the interface first",
        errno=errno.ENODEV,
    )


def address_conflict(spec: AddressSpec, existing: IPInterface) -> NetlinkError:
    """The error for an IPv6 address that exists with another prefix length."""
    return NetlinkError(
        f"cannot add address {describe_address(spec)}: {existing} is already on "
        f"{spec.dev} with another prefix length; remove it or fix the prefix in the "
        f"configuration",
        errno=errno.EEXIST,
    )


def route_conflict(route: RouteConfig) -> NetlinkError:
    """The error for a route whose destination is taken by a different route."""
    table = route.table if route.table is not None else "main"
    return NetlinkError(
        f"cannot add route {describe_route(route)}: a different route to the same "
        f"destination with the same metric already exists in table {table}; remove it "
        f"(ip route del) or give this route another metric",
        errno=errno.EEXIST,
    )


_HINTS: Final[dict[int, str]] = {
    errno.EPERM: "run as root or grant CAP_NET_ADMIN",
    errno.EACCES: "run as root or grant CAP_NET_ADMIN (or enable IPv6 on the interface)",
    errno.ENETUNREACH: (
        "the gateway is not on a network of the device; add an address in its subnet first "
        "or check via/dev"
    ),
    errno.EADDRNOTAVAIL: "the source address must be one of this host's addresses",
    errno.ENOBUFS: "the kernel is out of memory for netlink; retry later",
    errno.ENETDOWN: "bring the interface up first",
}


def kernel_error(operation: str, code: int, detail: str = "") -> NetlinkError:
    """The error for a request the kernel refused with ``code`` (and extended ack ``detail``)."""
    reason = os.strerror(code).lower() if code > 0 else "unknown error"
    if detail and detail.lower() != reason:
        reason = f"{reason} ({detail})"
    hint = _HINTS.get(code)
    message = f"cannot {operation}: {reason}"
    if hint:
        message += f"; {hint}"
    return NetlinkError(message, errno=code)


# --- the interface the daemon uses -----------------------------------------------------


class Netlink(Protocol):
    """What the daemon needs from the kernel's routing netlink (see the module docstring).

    Implemented by :class:`PyrouteNetlink` and by ``pyvrrp.testing.fakenetlink.FakeNetlink``.
    """

    async def link(self, name: str) -> LinkState | None:
        """The interface's state, or None if it does not exist."""
        ...

    async def primary_address(self, interface: str, family: Family) -> IPAddress | None:
        """The source address for advertisements (RFC 9568 §5.1.1.1 and §5.1.2.1).

        IPv4: the kernel's first primary (non-secondary) global address of the interface.
        IPv6: a usable (not tentative, not DAD-failed) link-local address; the interface's
        own, oldest one is preferred over added ones (NODAD addresses, i.e. our link-local
        VIPs) so the answer stays stable while we are master. None if there is none (or no
        interface).
        """
        ...

    async def addresses(self, interface: str) -> list[IPInterface]:
        """Every address of the interface, in no particular order ([] if it does not exist)."""
        ...

    async def delivers_locally(self, address: IPAddress) -> bool:
        """Whether the kernel now delivers packets sent to ``address`` to this host (its
        route to it is a local one, as ``ip route get`` shows).

        Not the same as the address being there: the kernel gives a new IPv6 address (NODAD
        too) its local route from a work queue, after :meth:`add_address` returned, and drops
        what arrives for it until then. IPv4 addresses are local as soon as they are added.
        """
        ...

    async def add_address(self, spec: AddressSpec) -> bool:
        """Install an address; False if it was already there."""
        ...

    async def remove_address(self, spec: AddressSpec) -> bool:
        """Remove an address (matched on address and prefix length); False if absent."""
        ...

    async def add_route(self, route: RouteConfig) -> bool:
        """Install a route; False if a route matching every given field exists."""
        ...

    async def remove_route(self, route: RouteConfig) -> bool:
        """Remove the first route matching the given fields; False if there is none."""
        ...

    async def add_rule(self, rule: RuleConfig) -> bool:
        """Install a policy rule; False if an identical rule exists (any priority if None)."""
        ...

    async def remove_rule(self, rule: RuleConfig) -> bool:
        """Remove one identical rule (any priority if None); False if there is none."""
        ...

    async def apply(self, changes: Sequence[Change]) -> list[bool | NetlinkError]:
        """Make ``changes`` in order, at once: becoming master installs its addresses,
        routes and rules without yielding to other tasks in between where it can. Each
        result is what the matching ``add_*``/``remove_*`` method returns, or the
        NetlinkError it raises. Cancelled part-way, what was done stays done."""
        ...

    def subscribe(self) -> trio.MemoryReceiveChannel[NetlinkEvent]:
        """A channel of every event from now on (see "Events" in the module docstring)."""
        ...

    async def aclose(self) -> None:
        """Release everything; subscribers' channels end. Idempotent."""
        ...


# --- fan-out of events to subscribers (shared with the fake) -----------------------------


class EventHub:
    """Delivers events to every subscriber, cutting off those that fall behind.

    Used on trio's thread only. A subscriber whose buffer is full is closed rather than
    blocking the others or silently missing an event (see the module docstring).
    """

    def __init__(self, buffer: int = SUBSCRIBER_BUFFER) -> None:
        self._buffer = buffer
        self._subscribers: list[trio.MemorySendChannel[NetlinkEvent]] = []
        self._closed = False
        self.events = 0
        self.overflows = 0

    @property
    def subscribers(self) -> int:
        """How many subscribers are connected."""
        return len(self._subscribers)

    def subscribe(self) -> trio.MemoryReceiveChannel[NetlinkEvent]:
        """A new subscriber's channel."""
        if self._closed:
            raise trio.ClosedResourceError("netlink is closed")
        send, receive = trio.open_memory_channel[NetlinkEvent](self._buffer)
        self._subscribers.append(send)
        return receive

    def publish(self, events: Iterable[NetlinkEvent]) -> None:
        """Give ``events`` to every subscriber, in order."""
        batch = tuple(events)
        if self._closed or not batch:
            return
        self.events += len(batch)
        for channel in tuple(self._subscribers):
            try:
                for event in batch:
                    channel.send_nowait(event)
            except trio.WouldBlock:
                self.overflows += 1
                logger.warning(
                    "a netlink subscriber fell %d events behind; cutting it off so it "
                    "re-reads the state",
                    self._buffer,
                )
                self._drop(channel)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The subscriber closed its end: it unsubscribed.
                self._drop(channel)

    def lost(self) -> None:
        """Events were lost before reaching us: cut every subscriber off so they resync."""
        for channel in tuple(self._subscribers):
            self._drop(channel)

    def close(self) -> None:
        """End every subscription; later ``subscribe()`` calls raise ClosedResourceError."""
        self._closed = True
        self.lost()

    def _drop(self, channel: trio.MemorySendChannel[NetlinkEvent]) -> None:
        self._subscribers.remove(channel)
        channel.close()
