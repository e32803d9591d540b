"""What :class:`~pyvrrp.runtime.netlink.kernel.PyrouteNetlink` asks the kernel about links and
addresses, and how it phrases an address request: on trio's thread, through
:mod:`pyvrrp.runtime.netlink.rtnl`, without pyroute2.

A node whose configuration has no routes and no rules never needs pyroute2: its interfaces
and their source addresses at startup, the trackers' interface states, the re-assertion's
address reads and the "already there" check of an address add are all dumps that
:class:`~pyvrrp.runtime.netlink.rtnl.AddressSocket` reads in a few hundred microseconds.
Importing pyroute2 costs about 12 MB of resident memory and a thread
(docs/benchmarks.md, "Where the time went"), so it loads with the first route or rule.
"""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface, ip_address
from typing import Final

from pyvrrp.core.config import IPInterface
from pyvrrp.core.linux import SCOPES
from pyvrrp.core.packet import Family, IPAddress
from pyvrrp.runtime.netlink.contract import (
    AddressSpec,
    LinkState,
    NetlinkError,
    address_conflict,
    describe_address,
)
from pyvrrp.runtime.netlink.monitor import link_state
from pyvrrp.runtime.netlink.rtnl import RTN_LOCAL, AddressEntry, AddressRequest, AddressSocket

# linux/if_addr.h, linux/rtnetlink.h
IFA_F_SECONDARY: Final = 0x01
IFA_F_NODAD: Final = 0x02
IFA_F_DADFAILED: Final = 0x08
IFA_F_TENTATIVE: Final = 0x40
RT_SCOPE_UNIVERSE: Final = 0


def _family(version: int) -> int:
    return socket.AF_INET if version == 4 else socket.AF_INET6


def scope_number(name: str) -> int:
    try:
        return SCOPES[name]
    except KeyError:
        raise ValueError(f"unknown scope {name!r}; valid: {', '.join(SCOPES)}") from None


def address_request(spec: AddressSpec, index: int, *, adding: bool) -> AddressRequest:
    """``spec`` as the rtnetlink request adding (or removing) it on interface ``index``."""
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
        scope=scope_number(spec.scope) if spec.scope is not None else RT_SCOPE_UNIVERSE,
        flags=IFA_F_NODAD if spec.nodad else 0,
        preferred_lifetime_zero=spec.preferred_lifetime_zero,  # valid_lft stays forever
    )


def address_operation(spec: AddressSpec, adding: bool) -> str:
    """What an error says was being done: ``add address 1.2.3.58/29 dev eth0.4000``."""
    return f"{'add' if adding else 'remove'} address {describe_address(spec)}"


def interface_of(entry: AddressEntry) -> IPInterface:
    """The address and prefix length a dump entry describes."""
    if entry.family == socket.AF_INET:
        return IPv4Interface((entry.address, entry.prefixlen))
    return IPv6Interface((entry.address, entry.prefixlen))


def _failure(what: str, exc: OSError) -> NetlinkError:
    return NetlinkError(f"cannot {what}: {exc.strerror or exc}", errno=exc.errno)


async def get_link(sock: AddressSocket, name: str) -> LinkState | None:
    """Interface ``name``, or None if there is none."""
    try:
        links = await sock.dump_links()
    except OSError as exc:
        raise _failure(f"read interface {name}", exc) from None
    for message in links:
        if message.family == socket.AF_UNSPEC and message.name == name:
            return link_state(message)
    return None


async def _entries(sock: AddressSocket, name: str, family: int) -> list[AddressEntry] | None:
    """The addresses of interface ``name`` in the kernel's order (None: no such interface)."""
    index = sock.index(name)
    if index is None:
        return None
    try:
        entries = await sock.dump_addresses(family)
    except OSError as exc:
        raise _failure(f"read the addresses of {name}", exc) from None
    return [entry for entry in entries if entry.index == index]


async def get_addresses(sock: AddressSocket, name: str) -> list[IPInterface]:
    """The addresses on interface ``name`` (none if it does not exist)."""
    return [interface_of(e) for e in await _entries(sock, name, socket.AF_UNSPEC) or []]


async def get_primary_address(sock: AddressSocket, name: str, family: Family) -> IPAddress | None:
    """The address the kernel would pick as source on ``name`` (``Netlink.primary_address``)."""
    if family is Family.IPV4:
        for entry in await _entries(sock, name, socket.AF_INET) or []:
            # The kernel lists primaries before secondaries, narrower scopes first and,
            # within a scope, oldest first.
            if entry.flags & IFA_F_SECONDARY or entry.scope != RT_SCOPE_UNIVERSE:
                continue
            return ip_address(entry.address)
        return None
    own: list[IPv6Address] = []
    added: list[IPv6Address] = []
    for entry in await _entries(sock, name, socket.AF_INET6) or []:
        address = IPv6Address(entry.address)
        if not address.is_link_local or entry.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            continue
        (added if entry.flags & IFA_F_NODAD else own).append(address)
    # Within a scope the kernel lists IPv6 addresses newest first: the last is the oldest.
    for candidates in (own, added):
        if candidates:
            return candidates[-1]
    return None


async def delivers_locally(sock: AddressSocket, address: IPAddress) -> bool:
    """Whether the kernel's route to ``address`` is a local one now (what
    ``Netlink.delivers_locally`` answers)."""
    try:
        kind = await sock.route_type(_family(address.version), address.packed)
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):  # no route at all
            return False
        raise _failure(f"read the route to {address}", exc) from None
    return kind == RTN_LOCAL


async def existing_address(sock: AddressSocket, spec: AddressSpec) -> bool:
    """The kernel said EEXIST to adding ``spec``: False if it is there as asked, else the
    conflict (IPv6 addresses are unique per interface whatever their prefix length)."""
    present = await get_addresses(sock, spec.dev)
    if spec.address in present:
        return False
    existing = next((a for a in present if a.ip == spec.address.ip), spec.address)
    raise address_conflict(spec, existing)
