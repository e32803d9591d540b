"""The requests the netlink owner thread makes through pyroute2: routes and rules.

Every function takes the thread's ``IPRoute`` first and runs on that thread
(:mod:`pyvrrp.runtime.netlink.kernel`); each raises :class:`NetlinkError` naming the
operation and what to do. Addresses and reads are not here: address add and remove are
encoded by :mod:`pyvrrp.runtime.netlink.rtnl` and sent from trio's thread (docs/design.md,
"Why addresses bypass pyroute2"), and links and addresses are read there too
(:mod:`pyvrrp.runtime.netlink.reads`), so this module, and pyroute2, load only for a node
with routes or rules.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Sequence
from ipaddress import ip_address
from typing import Any, Final

from pyroute2.netlink.exceptions import NetlinkError as PyrouteNetlinkError

from pyvrrp.core.config import RouteConfig, RuleConfig
from pyvrrp.runtime.netlink.contract import (
    Change,
    NetlinkError,
    describe_route,
    describe_rule,
    interface_missing,
    kernel_error,
    route_conflict,
)
from pyvrrp.runtime.netlink.reads import scope_number

# Kernel ABI constants (linux/rtnetlink.h, linux/fib_rules.h).
RTN_UNICAST: Final = 1
RTPROT_KERNEL: Final = 2
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_LINK: Final = 253
RT_SCOPE_NOWHERE: Final = 255
RT_TABLE_MAIN: Final = 254
FR_ACT_TO_TBL: Final = 1
FIB_RULE_INVERT: Final = 0x2


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


def _failure(operation: str, exc: PyrouteNetlinkError) -> NetlinkError:
    # With extended acks the kernel says more than strerror ("Nexthop has invalid gateway").
    detail = str(exc.args[1]) if len(exc.args) > 1 and exc.args[1] else ""
    return kernel_error(operation, int(exc.code), detail)


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


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
        request["scope"] = scope_number(route.scope)
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
    return route.scope is None or msg["scope"] == scope_number(route.scope)


def add_route(ipr: Any, route: RouteConfig) -> bool:
    """Add ``route``; False if it is there already."""
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


def remove_route(ipr: Any, route: RouteConfig) -> bool:
    """Remove ``route``; False if it was not there."""
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


def add_rule(ipr: Any, rule: RuleConfig) -> bool:
    """Add ``rule``; False if it is there already."""
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


def remove_rule(ipr: Any, rule: RuleConfig) -> bool:
    """Remove ``rule``; False if it was not there."""
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
    "add_route": add_route,
    "remove_route": remove_route,
    "add_rule": add_rule,
    "remove_rule": remove_rule,
}


def apply_changes(ipr: Any, changes: Sequence[Change]) -> list[bool | NetlinkError]:
    """Route and rule ``changes`` in order: each one's result or its error."""
    results: list[bool | NetlinkError] = []
    for change in changes:
        try:
            results.append(_REQUESTS[change.operation](ipr, change.item))
        except NetlinkError as exc:
            results.append(exc)
    return results
