"""Netlink: addresses, routes, rules and link/address events.

This module decides nothing: it adds and removes what the driver asks for, answers questions
about interfaces, and forwards the kernel's link and address notifications as events.

Who does what, and why
----------------------
Addresses are on the clock: a new master installs them between its first advertisement and
its first gratuitous ARP, which must leave within a millisecond. :class:`PyrouteNetlink`
therefore splits the work three ways (docs/design.md, "Why addresses bypass pyroute2"):

- *addresses* are added and removed on trio's thread through :mod:`pyvrrp.runtime.rtnl`: a
  message encoded by hand on a netlink socket of our own. The kernel handles it inside
  ``sendmsg`` and queues the acknowledgement before the call returns, so nothing waits (one
  request costs 25 µs warm, up to 0.2 ms in a process idle for a second). Only "already
  there" (EEXIST) needs a second look, an address dump, and that goes to the owner thread.
  :meth:`Netlink.apply` does not yield between addresses: the driver's advertisement, its
  addresses and its announcement run back to back.
- the *owner* thread creates one pyroute2 ``IPRoute`` and runs everything else (reads,
  routes, rules), one request at a time and in the order they were made, from a queue.
  pyroute2 0.9's synchronous ``IPRoute`` drives a private asyncio event loop kept in
  thread-local storage: it belongs to the thread that created it, never trio's. The owner
  reports each result with ``TrioToken.run_sync_soon``, which is safe from any thread and
  never blocks it; the waiting trio task sleeps in ``trio.lowlevel.wait_task_rescheduled``.
  We do not use ``trio.to_thread.run_sync``: its threads come from a shared cache, so two
  requests could run on different threads, and the ``IPRoute`` would be used off its
  thread. ``trio.from_thread.run_sync`` would block the worker until trio picks the result
  up.
- the *monitor*, a trio system task (the object has no nursery to live in), reads a
  non-blocking netlink socket bound to RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR and
  RTNLGRP_IPV6_IFADDR and decodes with :mod:`pyvrrp.runtime.rtnl`: the kernel pushes every
  change and nothing polls on a timer. It used to be a thread decoding with pyroute2; the
  notifications of a master's own address adds woke it in the middle of the takeover, and
  its GIL hand-overs cost 0.3-0.5 ms there. As a task it reads them once the driver yields.

Cancellation: a request to the owner thread whose caller is cancelled before the thread has
started it is dropped. One already started runs to completion (netlink requests take a
fraction of a millisecond and cannot be interrupted) and returns its result; the
cancellation is delivered at the caller's next checkpoint, so the caller never loses track of
whether, say, a route was added. Address requests complete before anything can cancel them.

Namespaces: ``open_netlink(netns=NAME)`` moves its owner thread (only it: setns(2) acts per
thread) into that network namespace and creates its netlink sockets there, so interface
names resolve there and the rest of the process stays where it is. The lab and the tests use
this; the daemon uses its own namespace.

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

import contextlib
import ctypes
import errno
import functools
import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface, ip_address, ip_interface
from types import TracebackType
from typing import Any, Final, Protocol, Self, TypeVar

import attrs
import outcome
import trio
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PyrouteNetlinkError

from pyvrrp.core.config import AddressConfig, IPAddress, IPInterface, RouteConfig, RuleConfig
from pyvrrp.core.packet import Family
from pyvrrp.runtime.rtnl import (
    AddressMessage,
    AddressRequest,
    AddressSocket,
    LinkMessage,
    decode_notifications,
    dump_links,
    interface_name,
    open_socket,
)

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
    "PyrouteNetlink",
    "address_conflict",
    "describe_address",
    "describe_item",
    "describe_route",
    "describe_rule",
    "enter_netns",
    "in_netns",
    "interface_missing",
    "kernel_error",
    "open_netlink",
    "route_conflict",
]

logger = logging.getLogger(__name__)

#: Events buffered per subscriber before it is cut off (see "Events" above).
SUBSCRIBER_BUFFER: Final = 1024

# Kernel ABI constants (linux/if.h, linux/if_addr.h, linux/rtnetlink.h, linux/fib_rules.h).
IFF_UP: Final = 0x1
IFF_RUNNING: Final = 0x40
IFA_F_SECONDARY: Final = 0x01
IFA_F_NODAD: Final = 0x02
IFA_F_DADFAILED: Final = 0x08
IFA_F_TENTATIVE: Final = 0x40
RTMGRP_LINK: Final = 0x1
RTMGRP_IPV4_IFADDR: Final = 0x10
RTMGRP_IPV6_IFADDR: Final = 0x100
RTN_UNICAST: Final = 1
RTPROT_KERNEL: Final = 2
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_LINK: Final = 253
RT_SCOPE_NOWHERE: Final = 255
RT_TABLE_MAIN: Final = 254
FR_ACT_TO_TBL: Final = 1
FIB_RULE_INVERT: Final = 0x2
CLONE_NEWNET: Final = 0x40000000

SCOPES: Final[dict[str, int]] = {"global": 0, "site": 200, "link": 253, "host": 254}

# A rule carrying any of these selects more than a RuleConfig can express: it is not ours.
_FOREIGN_RULE_ATTRS: Final = (
    "FRA_FWMARK",
    "FRA_FWMASK",
    "FRA_GOTO",
    "FRA_UID_RANGE",
    "FRA_IP_PROTO",
    "FRA_SPORT_RANGE",
    "FRA_DPORT_RANGE",
    "FRA_L3MDEV",
    "FRA_SUPPRESS_IFGROUP",
)
_NO_SUPPRESS_PREFIXLEN: Final = 0xFFFFFFFF

_MONITOR_GROUPS: Final = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
# Room for a burst of notifications (an interface with many addresses going away) while
# the monitor task waits for its turn.
_MONITOR_RCVBUF: Final = 4 * 1024 * 1024

_T = TypeVar("_T")


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


def _failure(operation: str, exc: PyrouteNetlinkError) -> NetlinkError:
    # With extended acks the kernel says more than strerror ("Nexthop has invalid gateway").
    detail = str(exc.args[1]) if len(exc.args) > 1 and exc.args[1] else ""
    return kernel_error(operation, int(exc.code), detail)


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


# --- network namespaces ----------------------------------------------------------------


def enter_netns(name: str) -> None:
    """Move the calling *thread* into the network namespace ``name`` (``ip netns`` name).

    Only the calling thread moves (setns(2) acts per thread), so this is for threads that
    belong to one object: the netlink owner thread, or a short-lived thread creating a socket.
    Sockets keep the namespace they were created in.
    """
    path = name if "/" in name else f"/run/netns/{name}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetlinkError(
            f"cannot enter network namespace {name}: it does not exist (ip netns list)",
            errno=errno.ENOENT,
        ) from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise NetlinkError(
                f"cannot enter network namespace {name}: {os.strerror(code).lower()}; "
                f"run as root or grant CAP_SYS_ADMIN",
                errno=code,
            )
    finally:
        os.close(fd)


def in_netns(name: str | None, fn: Callable[[], _T]) -> _T:
    """Run ``fn`` on a short-lived thread inside namespace ``name`` (here if None).

    For creating a socket in a namespace without moving the caller's thread.
    """
    if name is None:
        return fn()
    box: list[outcome.Outcome[_T]] = []

    def run() -> None:
        def entered() -> _T:
            enter_netns(name)
            return fn()

        box.append(outcome.capture(entered))

    thread = threading.Thread(target=run, name=f"pyvrrp-netns-{name}", daemon=True)
    thread.start()
    thread.join()
    return box[0].unwrap()


# --- message parsing ---------------------------------------------------------------------


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


def _link_state(msg: Any) -> LinkState:
    mac_text = _attr(msg, "IFLA_ADDRESS")
    return _state(
        LinkMessage(
            present=True,
            family=int(msg["family"]),
            index=int(msg["index"]),
            flags=int(msg["flags"]),
            name=str(_attr(msg, "IFLA_IFNAME")),
            mac=bytes.fromhex(mac_text.replace(":", "")) if mac_text else b"",
            mtu=int(_attr(msg, "IFLA_MTU") or 0),
        )
    )


def _state(message: LinkMessage) -> LinkState:
    return LinkState(
        name=message.name,
        index=message.index,
        up=bool(message.flags & IFF_UP) and bool(message.flags & IFF_RUNNING),
        mac=message.mac,
        mtu=message.mtu,
    )


def _address_of(msg: Any) -> IPInterface:
    # IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links.
    local = _attr(msg, "IFA_LOCAL") or _attr(msg, "IFA_ADDRESS")
    return ip_interface(f"{local}/{msg['prefixlen']}")


def _address_flags(msg: Any) -> int:
    extended = _attr(msg, "IFA_FLAGS")
    return int(extended) if extended is not None else int(msg["flags"])


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


# --- requests, run on the owner thread -------------------------------------------------


def _index(name: str) -> int | None:
    # One ioctl instead of a netlink round trip whose reply pyroute2 takes ~0.3 ms to parse.
    # The owner thread lives in the right namespace, so the name resolves there; looking it
    # up on every request follows an interface that was deleted and created again.
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _require_index(name: str, operation: str) -> int:
    index = _index(name)
    if index is None:
        raise interface_missing(operation, name)
    return index


def _dump_addresses(ipr: Any, index: int, family: int = socket.AF_UNSPEC) -> list[Any]:
    if family == socket.AF_UNSPEC:
        return list(ipr.addr("dump", index=index))
    return list(ipr.addr("dump", index=index, family=family))


def _get_link(ipr: Any, name: str) -> LinkState | None:
    try:
        reply = ipr.link("get", ifname=name)
    except PyrouteNetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise _failure(f"read interface {name}", exc) from None
    return _link_state(reply[0])


def _get_addresses(ipr: Any, name: str) -> list[IPInterface]:
    index = _index(name)
    if index is None:
        return []
    return [_address_of(m) for m in _dump_addresses(ipr, index)]


def _get_primary_address(ipr: Any, name: str, family: Family) -> IPAddress | None:
    index = _index(name)
    if index is None:
        return None
    if family is Family.IPV4:
        for msg in _dump_addresses(ipr, index, socket.AF_INET):
            # The kernel lists primaries before secondaries, narrower scopes first and,
            # within a scope, oldest first.
            if _address_flags(msg) & IFA_F_SECONDARY or msg["scope"] != RT_SCOPE_UNIVERSE:
                continue
            return _address_of(msg).ip
        return None
    own: list[IPv6Address] = []
    added: list[IPv6Address] = []
    for msg in _dump_addresses(ipr, index, socket.AF_INET6):
        address = _address_of(msg).ip
        flags = _address_flags(msg)
        if not address.is_link_local or flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            continue
        assert isinstance(address, IPv6Address)
        (added if flags & IFA_F_NODAD else own).append(address)
    # Within a scope the kernel lists IPv6 addresses newest first: the last is the oldest.
    for candidates in (own, added):
        if candidates:
            return candidates[-1]
    return None


def _address_request(spec: AddressSpec, index: int, *, adding: bool) -> AddressRequest:
    address = spec.address
    if not adding:
        return AddressRequest(
            False, _family(address.version), address.ip.packed, address.network.prefixlen, index
        )
    return AddressRequest(
        True,
        _family(address.version),
        address.ip.packed,
        address.network.prefixlen,
        index,
        label=spec.label if address.version == 4 else None,  # IPv6 has no labels
        scope=_scope(spec.scope) if spec.scope is not None else RT_SCOPE_UNIVERSE,
        flags=IFA_F_NODAD if spec.nodad else 0,
        preferred_lifetime_zero=spec.preferred_lifetime_zero,  # valid_lft stays forever
    )


def _scope(name: str) -> int:
    try:
        return SCOPES[name]
    except KeyError:
        raise ValueError(f"unknown scope {name!r}; valid: {', '.join(SCOPES)}") from None


def _operation(spec: AddressSpec, adding: bool) -> str:
    return f"{'add' if adding else 'remove'} address {describe_address(spec)}"


def _existing_address(ipr: Any, spec: AddressSpec, index: int) -> bool:
    """The kernel said EEXIST to adding ``spec``: False if it is there as asked, else the
    conflict (IPv6 addresses are unique per interface whatever their prefix length)."""
    present = [_address_of(m) for m in _dump_addresses(ipr, index)]
    if spec.address in present:
        return False
    existing = next((a for a in present if a.ip == spec.address.ip), spec.address)
    raise address_conflict(spec, existing)


def _route_request(route: RouteConfig, oif: int | None, *, adding: bool) -> dict[str, Any]:
    request: dict[str, Any] = {
        "family": _family(route.to.version),
        "dst_len": route.to.prefixlen,
        "table": route.table if route.table is not None else RT_TABLE_MAIN,
    }
    if route.to.prefixlen:
        request["dst"] = str(route.to.network_address)
    if route.via is not None:
        request["gateway"] = str(route.via)
    if oif is not None:
        request["oif"] = oif
    if route.metric is not None:
        request["priority"] = route.metric
    if route.src is not None:
        request["prefsrc"] = str(route.src)
    if route.scope is not None:
        request["scope"] = _scope(route.scope)
    elif not adding:
        request["scope"] = RT_SCOPE_NOWHERE  # the kernel's "any scope" on delete
    elif route.via is None and route.to.version == 4:
        request["scope"] = RT_SCOPE_LINK  # what ip-route(8) does for a route without via
    return request


def _route_matches(msg: Any, route: RouteConfig, oif: int | None) -> bool:
    if msg["type"] != RTN_UNICAST or msg["dst_len"] != route.to.prefixlen:
        return False
    table = _attr(msg, "RTA_TABLE") or msg["table"]
    if table != (route.table if route.table is not None else RT_TABLE_MAIN):
        return False
    if route.to.prefixlen and ip_address(_attr(msg, "RTA_DST")) != route.to.network_address:
        return False
    if route.via is not None:
        gateway = _attr(msg, "RTA_GATEWAY")
        if gateway is None or ip_address(gateway) != route.via:
            return False
    if oif is not None and _attr(msg, "RTA_OIF") != oif:
        return False
    if route.metric is not None and (_attr(msg, "RTA_PRIORITY") or 0) != route.metric:
        return False
    if route.src is not None:
        prefsrc = _attr(msg, "RTA_PREFSRC")
        if prefsrc is None or ip_address(prefsrc) != route.src:
            return False
    return route.scope is None or msg["scope"] == _scope(route.scope)


def _add_route(ipr: Any, route: RouteConfig) -> bool:
    operation = f"add route {describe_route(route)}"
    oif = _require_index(route.dev, operation) if route.dev is not None else None
    try:
        ipr.route("add", **_route_request(route, oif, adding=True))
    except PyrouteNetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise _failure(operation, exc) from None
        # The kernel keys routes on (destination, tos, metric): the one there may differ.
        table = route.table if route.table is not None else RT_TABLE_MAIN
        dump = ipr.route("dump", family=_family(route.to.version), table=table)
        if any(_route_matches(m, route, oif) for m in dump):
            return False
        raise route_conflict(route) from None
    return True


def _remove_route(ipr: Any, route: RouteConfig) -> bool:
    oif = None
    if route.dev is not None:
        oif = _index(route.dev)
        if oif is None:
            return False  # the kernel removed every route through it with it
    try:
        ipr.route("del", **_route_request(route, oif, adding=False))
    except PyrouteNetlinkError as exc:
        if exc.code in (errno.ESRCH, errno.ENOENT):
            return False
        raise _failure(f"remove route {describe_route(route)}", exc) from None
    return True


def _rule_request(rule: RuleConfig, priority: int | None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "family": _family(rule.family),
        "table": rule.table,
        "action": "to_tbl",
        # None omits FRA_PRIORITY (the kernel picks one); pyroute2 would otherwise send 32000.
        "priority": priority,
    }
    if rule.from_ is not None and rule.from_.prefixlen:
        request["src"] = str(rule.from_.network_address)
        request["src_len"] = rule.from_.prefixlen
    if rule.to is not None and rule.to.prefixlen:
        request["dst"] = str(rule.to.network_address)
        request["dst_len"] = rule.to.prefixlen
    if rule.iif is not None:
        request["iifname"] = rule.iif
    if rule.oif is not None:
        request["oifname"] = rule.oif
    return request


def _rule_matches(msg: Any, rule: RuleConfig) -> bool:
    if msg["action"] != FR_ACT_TO_TBL or msg["tos"] or msg["flags"] & FIB_RULE_INVERT:
        return False
    if any(_attr(msg, name) is not None for name in _FOREIGN_RULE_ATTRS):
        return False
    if _attr(msg, "FRA_SUPPRESS_PREFIXLEN") not in (None, _NO_SUPPRESS_PREFIXLEN):
        return False
    if (_attr(msg, "FRA_TABLE") or msg["table"]) != rule.table:
        return False
    if rule.priority is not None and (_attr(msg, "FRA_PRIORITY") or 0) != rule.priority:
        return False
    for network, attr, length in (
        (rule.from_, "FRA_SRC", "src_len"),
        (rule.to, "FRA_DST", "dst_len"),
    ):
        # "from all" (no network, or a /0) is a rule without the selector.
        if network is None or not network.prefixlen:
            if msg[length]:
                return False
        elif msg[length] != network.prefixlen or (
            ip_address(_attr(msg, attr)) != network.network_address
        ):
            return False
    return bool(_attr(msg, "FRA_IIFNAME") == rule.iif and _attr(msg, "FRA_OIFNAME") == rule.oif)


def _add_rule(ipr: Any, rule: RuleConfig) -> bool:
    # The kernel happily adds a duplicate of a rule given without a priority: look first.
    if any(_rule_matches(m, rule) for m in ipr.rule("dump", family=_family(rule.family))):
        return False
    try:
        ipr.rule("add", **_rule_request(rule, rule.priority))
    except PyrouteNetlinkError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise _failure(f"add rule {describe_rule(rule)}", exc) from None
    return True


def _remove_rule(ipr: Any, rule: RuleConfig) -> bool:
    # The kernel deletes the first rule matching the attributes *given*, so "lookup 100"
    # alone would remove "from 1.2.3.56/29 lookup 100": find the identical rule ourselves
    # and delete it with all its attributes. The kernel's own rules are never ours.
    for msg in ipr.rule("dump", family=_family(rule.family)):
        if _attr(msg, "FRA_PROTOCOL") == RTPROT_KERNEL or not _rule_matches(msg, rule):
            continue
        try:
            ipr.rule("del", **_rule_request(rule, _attr(msg, "FRA_PRIORITY") or 0))
        except PyrouteNetlinkError as exc:
            if exc.code == errno.ENOENT:
                return False  # removed by someone else meanwhile
            raise _failure(f"remove rule {describe_rule(rule)}", exc) from None
        return True
    return False


_REQUESTS: Final[dict[str, Callable[..., bool]]] = {
    "add_route": _add_route,
    "remove_route": _remove_route,
    "add_rule": _add_rule,
    "remove_rule": _remove_rule,
}


def _apply(ipr: Any, changes: Sequence[Change]) -> list[bool | NetlinkError]:
    results: list[bool | NetlinkError] = []
    for change in changes:
        try:
            results.append(_REQUESTS[change.operation](ipr, change.item))
        except NetlinkError as exc:
            results.append(exc)
    return results


# --- the monitor's view of the links -------------------------------------------------------


class _Translator:
    """Turns rtnetlink notifications into events; ``sock`` names unknown interfaces."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._links: dict[int, LinkState] = {}

    def seed(self, messages: Iterable[LinkMessage]) -> None:
        self._links = {}
        for message in messages:
            if message.family == socket.AF_UNSPEC:
                self._links[message.index] = _state(message)

    def translate(self, messages: Iterable[LinkMessage | AddressMessage]) -> list[NetlinkEvent]:
        events: list[NetlinkEvent] = []
        for message in messages:
            if isinstance(message, LinkMessage):
                # AF_BRIDGE notifications describe bridge ports, not the link itself: a port
                # leaving its bridge comes as an AF_BRIDGE RTM_DELLINK.
                if message.family == socket.AF_UNSPEC:
                    self._link(message, events)
                continue
            name = self._name(message.index)
            if name is None:
                logger.debug("address event on unknown interface %s", message.index)
                continue
            address = (message.address, message.prefixlen)
            interface = (
                IPv4Interface(address) if len(message.address) == 4 else IPv6Interface(address)
            )
            events.append(AddressEvent(name, interface, message.present))
        return events

    def _link(self, message: LinkMessage, events: list[NetlinkEvent]) -> None:
        state = _state(message)
        old = self._links.pop(state.index, None)
        if not message.present:
            events.append(LinkEvent(old.name if old is not None else state.name, None))
            return
        self._links[state.index] = state
        if old is not None and old.name != state.name:
            events.append(LinkEvent(old.name, None))  # renamed: the old name is gone
        if state != old:
            events.append(LinkEvent(state.name, state))

    def _name(self, index: int) -> str | None:
        known = self._links.get(index)
        if known is not None:
            return known.name
        return interface_name(self._socket, index)


#: Datagrams the monitor reads before it lets other tasks run.
_MONITOR_BATCH: Final = 64


def _discard_queued(sock: socket.socket) -> None:
    """Empty the monitor socket's queue (up to a bound, should changes keep coming)."""
    for _ in range(_MONITOR_BATCH * 100):
        try:
            sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise


def _read_events(sock: socket.socket, translator: _Translator) -> list[NetlinkEvent]:
    """The events in what is waiting on the monitor socket (up to a batch)."""
    events: list[NetlinkEvent] = []
    for _ in range(_MONITOR_BATCH):
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            break
        events += translator.translate(decode_notifications(data))
    return events


# --- the real thing ----------------------------------------------------------------------


class _Job:
    """One request for the owner thread, and the trio task waiting for it."""

    QUEUED, RUNNING, ABANDONED = range(3)

    def __init__(self, fn: Callable[[Any], Any], task: trio.lowlevel.Task) -> None:
        self.fn = fn
        self.task = task
        self.state = self.QUEUED
        self.lock = threading.Lock()

    def begin(self) -> bool:
        with self.lock:
            if self.state == self.ABANDONED:
                return False
            self.state = self.RUNNING
            return True

    def abort(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        with self.lock:
            if self.state == self.QUEUED:
                self.state = self.ABANDONED
                return trio.lowlevel.Abort.SUCCEEDED
        return trio.lowlevel.Abort.FAILED  # running: wait for it, then deliver the cancel


class PyrouteNetlink:
    """:class:`Netlink` on the kernel, through pyroute2 (see the module docstring).

    Use as ``async with open_netlink() as nl:``. ``netns`` runs it inside that network
    namespace (an ``ip netns`` name); only its own thread and sockets move there.
    """

    def __init__(self, *, netns: str | None = None) -> None:
        self._netns = netns
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._hub = EventHub()
        self._token: trio.lowlevel.TrioToken | None = None
        self._owner: threading.Thread | None = None
        self._owner_done = trio.Event()
        self._monitor_scope = trio.CancelScope()
        self._monitor_done: trio.Event | None = None
        self._monitor_error: BaseException | None = None
        self._addresses: AddressSocket | None = None
        self._opened = False
        self._closed = False
        self._requests = 0
        self._kernel_overflows = 0

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True):
            await self.aclose()

    async def open(self) -> None:
        """Start the owner thread and the monitor; raises NetlinkError if netlink cannot be
        opened."""
        if self._opened:
            raise RuntimeError("PyrouteNetlink.open() called twice")
        self._opened = True
        self._token = trio.lowlevel.current_trio_token()
        try:
            self._owner = threading.Thread(
                target=self._owner_main, name="pyvrrp-netlink", daemon=True
            )
            self._owner.start()
            await self._call(lambda ipr: None)  # raises what creating the IPRoute raised
            try:
                self._addresses = in_netns(self._netns, AddressSocket)
                monitor = in_netns(
                    self._netns,
                    functools.partial(open_socket, groups=_MONITOR_GROUPS, rcvbuf=_MONITOR_RCVBUF),
                )
            except OSError as exc:
                raise NetlinkError(f"cannot open netlink: {exc.strerror or exc}") from None
            try:
                # Bound first, dumped second: no change can fall between the two.
                translator = _Translator(monitor)
                translator.seed(await self._dump_links())
            except BaseException:
                monitor.close()
                raise
            self._monitor_done = trio.Event()
            trio.lowlevel.spawn_system_task(
                self._monitor_main, monitor, translator, name="pyvrrp-netlink-monitor"
            )
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop the monitor and the owner thread, end every subscription. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        self._monitor_scope.cancel()
        if self._monitor_done is not None:
            await self._monitor_done.wait()
        if self._addresses is not None:
            self._addresses.close()
        if self._owner is not None:
            self._jobs.put(None)
            await self._owner_done.wait()
            self._owner.join()

    def statistics(self) -> NetlinkStatistics:
        """Counters since open."""
        return NetlinkStatistics(
            requests=self._requests + (self._addresses.requests if self._addresses else 0),
            events=self._hub.events,
            subscribers=self._hub.subscribers,
            subscriber_overflows=self._hub.overflows,
            kernel_overflows=self._kernel_overflows,
        )

    # The protocol.

    async def link(self, name: str) -> LinkState | None:
        return await self._call(functools.partial(_get_link, name=name))

    async def primary_address(self, interface: str, family: Family) -> IPAddress | None:
        return await self._call(
            functools.partial(_get_primary_address, name=interface, family=family)
        )

    async def addresses(self, interface: str) -> list[IPInterface]:
        return await self._call(functools.partial(_get_addresses, name=interface))

    async def add_address(self, spec: AddressSpec) -> bool:
        await trio.lowlevel.checkpoint_if_cancelled()
        added = await self._address(spec, adding=True)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return added

    async def remove_address(self, spec: AddressSpec) -> bool:
        await trio.lowlevel.checkpoint_if_cancelled()
        removed = await self._address(spec, adding=False)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return removed

    async def add_route(self, route: RouteConfig) -> bool:
        return await self._call(functools.partial(_add_route, route=route))

    async def remove_route(self, route: RouteConfig) -> bool:
        return await self._call(functools.partial(_remove_route, route=route))

    async def add_rule(self, rule: RuleConfig) -> bool:
        return await self._call(functools.partial(_add_rule, rule=rule))

    async def remove_rule(self, rule: RuleConfig) -> bool:
        return await self._call(functools.partial(_remove_rule, rule=rule))

    async def apply(self, changes: Sequence[Change]) -> list[bool | NetlinkError]:
        # Addresses on trio's thread, routes and rules on the owner thread, in order. Not a
        # schedule point unless a route or rule is among the changes: between a master's
        # advertisement, its addresses and its announcement, no other task runs.
        await trio.lowlevel.checkpoint_if_cancelled()
        results: list[bool | NetlinkError] = []
        others: list[Change] = []
        for change in changes:
            if not isinstance(change.item, AddressSpec):
                others.append(change)
                continue
            if others:
                results += await self._call(functools.partial(_apply, changes=tuple(others)))
                others = []
            try:
                results.append(await self._address(change.item, adding=change.add))
            except NetlinkError as exc:
                results.append(exc)
        if others:
            results += await self._call(functools.partial(_apply, changes=tuple(others)))
        return results

    def subscribe(self) -> trio.MemoryReceiveChannel[NetlinkEvent]:
        if self._monitor_error is not None:
            raise NetlinkError(
                f"the netlink monitor stopped: {self._monitor_error}; restart pyvrrp"
            )
        return self._hub.subscribe()

    # Addresses, on trio's thread (see pyvrrp.runtime.rtnl for why).

    async def _address(self, spec: AddressSpec, *, adding: bool) -> bool:
        if self._closed or self._addresses is None:
            raise trio.ClosedResourceError("netlink is closed")
        index = self._addresses.index(spec.dev)
        if index is not None:
            ack = await self._addresses.request(_address_request(spec, index, adding=adding))
            if ack.error == 0:
                return True
            if adding and ack.error == errno.EEXIST:
                return await self._call(
                    functools.partial(_existing_address, spec=spec, index=index)
                )
            if not adding and ack.error == errno.EADDRNOTAVAIL:
                return False
            if ack.error != errno.ENODEV:  # else the interface went away meanwhile
                raise kernel_error(_operation(spec, adding), ack.error, ack.message)
        # An interface that does not exist holds no address.
        if adding:
            raise interface_missing(_operation(spec, adding), spec.dev)
        return False

    # Talking to the owner thread.

    async def _call(self, fn: Callable[[Any], _T]) -> _T:
        if self._closed or self._owner is None:
            raise trio.ClosedResourceError("netlink is closed")
        await trio.lowlevel.checkpoint_if_cancelled()  # don't queue work nobody will wait for
        self._requests += 1
        job = _Job(fn, trio.lowlevel.current_task())
        self._jobs.put(job)
        # The owner thread reschedules us with the outcome: its value or its exception.
        result: _T = await trio.lowlevel.wait_task_rescheduled(job.abort)
        return result

    def _to_trio(self, fn: Callable[[], object]) -> None:
        assert self._token is not None
        with contextlib.suppress(trio.RunFinishedError):  # trio is gone: nobody waits
            self._token.run_sync_soon(fn)

    def _owner_main(self) -> None:
        ipr: Any = None
        startup: BaseException | None = None
        try:
            if self._netns is not None:
                enter_netns(self._netns)
            ipr = IPRoute(groups=0, ext_ack=True)
        except NetlinkError as exc:
            startup = exc
        except OSError as exc:
            startup = NetlinkError(
                f"cannot open netlink: {exc.strerror or exc}; run as root or grant CAP_NET_ADMIN",
                errno=exc.errno,
            )
        try:
            while (job := self._jobs.get()) is not None:
                if not job.begin():
                    continue
                if startup is not None:
                    result: outcome.Outcome[Any] = outcome.Error(startup)
                else:
                    result = outcome.capture(job.fn, ipr)
                self._to_trio(functools.partial(trio.lowlevel.reschedule, job.task, result))
        finally:
            if ipr is not None:
                ipr.close()
            self._to_trio(self._owner_done.set)

    # The monitor task.

    async def _dump_links(self) -> list[LinkMessage]:
        try:
            return await trio.to_thread.run_sync(in_netns, self._netns, dump_links)
        except OSError as exc:
            raise NetlinkError(f"cannot list the interfaces: {exc.strerror or exc}") from None

    async def _monitor_main(self, sock: socket.socket, translator: _Translator) -> None:
        # A trio system task (a library's background service, with no nursery to live in):
        # it must not raise, so every failure becomes _monitor_failed.
        try:
            with self._monitor_scope:
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        events = _read_events(sock, translator)
                    except OSError as exc:
                        if exc.errno != errno.ENOBUFS:
                            raise
                        # The kernel dropped notifications: our view and the subscribers' are
                        # stale. It drops every further one, without saying so again, until
                        # the queue has been emptied: empty it (what is queued is older than
                        # the dump), re-read the links, tell subscribers to re-read theirs.
                        _discard_queued(sock)
                        translator.seed(await self._dump_links())
                        self._kernel_overflow()
                        continue
                    self._hub.publish(events)
        except Exception as exc:
            logger.exception("the netlink monitor stopped")
            self._monitor_failed(exc)
        finally:
            sock.close()
            assert self._monitor_done is not None
            self._monitor_done.set()

    def _monitor_failed(self, exc: BaseException) -> None:
        self._monitor_error = (
            exc
            if isinstance(exc, NetlinkError)
            else NetlinkError(f"cannot watch netlink events: {exc}")
        )
        self._hub.lost()

    def _kernel_overflow(self) -> None:
        self._kernel_overflows += 1
        logger.warning("the kernel dropped netlink events; subscribers re-read the state")
        self._hub.lost()


def open_netlink(*, netns: str | None = None) -> PyrouteNetlink:
    """The kernel's netlink, to use as ``async with open_netlink() as nl:``.

    ``netns`` (an ``ip netns`` name) works inside that namespace: for the lab and tests.
    """
    return PyrouteNetlink(netns=netns)
