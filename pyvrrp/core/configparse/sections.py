"""Parsers of the tables and arrays below an instance or the top level: global, scripts,
addresses, trackers, routes, rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Interface, ip_network
from typing import Final, Literal, TypeVar, cast

import attrs

from pyvrrp.core.configparse.keys import (
    _ADDRESS_KEYS,
    _EMAIL_KEYS,
    _GLOBAL_KEYS,
    _KEEPALIVED_EMAIL,
    _KEEPALIVED_GLOBAL,
    _KEEPALIVED_SCRIPT,
    _ROUTE_KEYS,
    _RULE_KEYS,
    _SCRIPT_KEYS,
    _TRACK_KEYS,
)
from pyvrrp.core.configparse.reading import (
    _BAD,
    MAX_SECONDS,
    SCOPES,
    UINT32_MAX,
    WEIGHT_RANGE,
    _Bad,
    _Ctx,
    _Invalid,
    _ok,
    _show,
    _Table,
    _table,
)
from pyvrrp.core.configparse.values import (
    _absolute_path,
    _boolean,
    _choice,
    _command,
    _control_socket,
    _email_address,
    _family_name,
    _integer,
    _interface_name,
    _listen_address,
    _name,
    _network,
    _nonempty_string,
    _path_or_empty,
    _route_destination,
    _routing_table,
    _rule_family,
    _seconds,
    _smtp_server,
    _string,
    _unicast_ip,
    _version,
    _vip,
)
from pyvrrp.core.linux import IFNAMSIZ
from pyvrrp.core.model import (
    DEFAULT_CONTROL_SOCKET,
    DEFAULT_STATE_DIR,
    US_PER_SECOND,
    AddressConfig,
    EmailConfig,
    GlobalConfig,
    IPAddress,
    IPNetwork,
    LogLevel,
    RouteConfig,
    RuleConfig,
    ScriptConfig,
    VrrpVersion,
)
from pyvrrp.core.packet import Family

_T = TypeVar("_T")


# Structured parsers: tables and arrays, recording problems with their own paths.

_WEIGHT = _integer(*WEIGHT_RANGE)
_UINT32 = _integer(0, UINT32_MAX)


def _parse_global(ctx: _Ctx, value: object) -> GlobalConfig | _Bad:
    data = _table(ctx, "global", value, "[global]")
    if data is None:
        return _BAD
    mark = ctx.mark()
    t = _Table(ctx, "global", data, _GLOBAL_KEYS, _KEEPALIVED_GLOBAL)
    router_id = t.get("router_id", _nonempty_string, None)
    control_socket = t.get("control_socket", _control_socket, DEFAULT_CONTROL_SOCKET)
    state_dir = t.get("state_dir", _absolute_path, DEFAULT_STATE_DIR)
    metrics_listen = t.get("metrics_listen", _listen_address, None)
    log_format = t.get("log_format", _choice(("text", "json")), "text")
    version = t.get("version", _version, VrrpVersion.V3)
    log_level = t.get("log_level", _choice(LOG_LEVELS), "info")
    watch_config = t.get("watch_config", _boolean, False)
    script_user = t.get("script_user", _account_name("user"), None)
    script_group = t.get("script_group", _account_name("group"), None)
    script_security = t.get("script_security", _boolean, True)
    email = _parse_email(ctx, t.sub("email"), data["email"]) if "email" in data else None
    if ctx.failed_since(mark):
        return _BAD
    return GlobalConfig(
        router_id=_ok(router_id),
        control_socket=_ok(control_socket),
        state_dir=_ok(state_dir),
        metrics_listen=_ok(metrics_listen),
        log_format=_ok(log_format),
        version=_ok(version),
        log_level=cast("LogLevel", _ok(log_level)),
        watch_config=_ok(watch_config),
        script_user=_ok(script_user),
        script_group=_ok(script_group),
        script_security=_ok(script_security),
        email=_ok(email),
    )


LOG_LEVELS: Final = ("debug", "info", "warning", "error")


def _account_name(kind: str) -> Callable[[object], str]:
    """A user or group name (or a numeric id) as passwd and group files spell them."""

    def parse(value: object) -> str:
        text = _nonempty_string(value)
        bad = next((c for c in text if c in ":/," or c.isspace()), None)
        if bad is not None:
            raise _Invalid(f"{_show(text)} contains {json.dumps(bad)}; write one {kind} name")
        return text

    return parse


def _parse_email(ctx: _Ctx, path: str, value: object) -> EmailConfig | _Bad:
    """``[global.email]``: keepalived's notification_email, _from and smtp_server."""
    data = _table(ctx, path, value, 'e-mail settings, e.g. server = "127.0.0.1:25"')
    if data is None:
        return _BAD
    mark = ctx.mark()
    t = _Table(ctx, path, data, _EMAIL_KEYS, _KEEPALIVED_EMAIL)
    server = t.require("server", _smtp_server, 'the SMTP server, e.g. "127.0.0.1:25"')
    sender = t.require("from", _email_address, 'the sender, e.g. "pyvrrp@example.com"')
    starttls = t.get("starttls", _boolean, False)
    username = t.get("username", _string, "")
    password_file = t.get("password_file", _path_or_empty, "")
    recipients: list[str] = []
    items = t.items("to")
    if items is None:
        if "to" not in t.suggested:
            ctx.add(t.sub("to"), 'missing: the recipients, e.g. to = ["ops@example.com"]')
    elif items is not _BAD:
        if not items:
            ctx.add(t.sub("to"), 'is empty; list the recipients, e.g. ["ops@example.com"]')
        for item_path, item in items:
            address = t.element(item_path, item, _email_address)
            if address is _BAD:
                continue
            if address in recipients:
                ctx.add(item_path, f"{address} is listed twice; remove one")
            recipients.append(address)
    if isinstance(username, str) and isinstance(password_file, str):
        if username and not password_file:
            ctx.add(
                t.sub("password_file"),
                f"missing: username {_show(username)} needs the file holding its password "
                '(password_file = "/etc/pyvrrp/smtp-password"), or remove username',
            )
        elif password_file and not username:
            ctx.add(
                t.sub("username"),
                "missing: password_file is set but username is not; give the login, or "
                "remove password_file",
            )
        elif username and starttls is False:
            # The mailer logs in only inside TLS (docs/notifications.md, "TLS and login"):
            # without it every mail would fail, and check must say so before the first one.
            ctx.add(
                t.sub("starttls"),
                f"must be true to log in as {_show(username)}: pyvrrp sends the password only "
                "over STARTTLS, never in clear text; set starttls = true, or remove username "
                "and password_file",
            )
    if ctx.failed_since(mark) or server is _BAD or sender is _BAD:
        return _BAD
    host, port = server
    return EmailConfig(
        host=host,
        port=port,
        sender=sender,
        recipients=tuple(recipients),
        starttls=_ok(starttls),
        username=_ok(username),
        password_file=_ok(password_file),
    )


def _parse_script(ctx: _Ctx, path: str, name: str, value: object) -> ScriptConfig | _Bad:
    """One ``[scripts.NAME]`` table; keepalived's vrrp_script defaults."""
    data = _table(ctx, path, value, "a script with at least a command")
    if data is None:
        return _BAD
    mark = ctx.mark()
    t = _Table(ctx, path, data, _SCRIPT_KEYS, _KEEPALIVED_SCRIPT)
    command = t.require("command", _command, 'the program to run, e.g. ["/usr/bin/curl", ...]')
    interval = t.get("interval", _seconds(MAX_SECONDS, positive=True), US_PER_SECOND)
    timeout = t.get("timeout", _seconds(MAX_SECONDS, positive=True), interval)
    fall = t.get("fall", _integer(1, 1_000_000), 1)
    rise = t.get("rise", _integer(1, 1_000_000), 1)
    weight = t.get("weight", _WEIGHT, 0)
    user = t.get("user", _account_name("user"), None)
    group = t.get("group", _account_name("group"), None)
    if ctx.failed_since(mark) or command is _BAD:
        return _BAD
    return ScriptConfig(
        name=name,
        command=command,
        interval_us=_ok(interval),
        timeout_us=_ok(timeout),
        fall=_ok(fall),
        rise=_ok(rise),
        weight=_ok(weight),
        user=_ok(user),
        group=_ok(group),
    )


@attrs.define
class _Vip:
    """An address read from an instance, with where it came from for later messages."""

    path: str
    config: AddressConfig
    excluded: bool


def _parse_address(
    ctx: _Ctx, t: _Table, path: str, value: object, interface: str | None
) -> AddressConfig | _Bad:
    if isinstance(value, str):
        return t.element(path, value, lambda v: AddressConfig(_vip(v)))
    data = _table(ctx, path, value, 'an address string or { address = "...", dev = "..." }')
    if data is None:
        return _BAD
    mark = ctx.mark()
    a = _Table(ctx, path, data, _ADDRESS_KEYS)
    address = a.require("address", _vip, 'the address, e.g. address = "1.2.3.58/29"')
    dev = a.get("dev", _interface_name, None)
    label = a.get("label", _nonempty_string, None)
    scope = a.get("scope", _choice(SCOPES), None)
    if isinstance(label, str):
        device = dev if isinstance(dev, str) else interface
        if isinstance(address, IPv6Interface):
            ctx.add(a.sub("label"), "IPv6 addresses have no labels; remove label")
        elif len(label.encode("utf-8", "surrogatepass")) >= IFNAMSIZ:
            ctx.add(a.sub("label"), f"{_show(label)} is longer than 15 bytes (a kernel limit)")
        elif device is not None and not label.startswith(device + ":"):
            ctx.add(
                a.sub("label"),
                f"{_show(label)} must start with the device name and a colon, "
                f'e.g. "{device}:1" (the kernel and ip-address(8) require it)',
            )
    if ctx.failed_since(mark) or address is _BAD:
        return _BAD
    return AddressConfig(address, dev=_ok(dev), label=_ok(label), scope=_ok(scope))


def _parse_addresses(
    ctx: _Ctx, t: _Table, key: str, interface: str | None, *, required: bool
) -> list[_Vip] | _Bad:
    items = t.items(key)
    if items is None:
        if required and key not in t.suggested:
            ctx.add(t.sub(key), 'missing: the virtual addresses, e.g. addresses = ["1.2.3.58/29"]')
            return _BAD
        return []
    if items is _BAD:
        return _BAD
    if not items and required:
        ctx.add(t.sub(key), "is empty; an instance needs at least one address to advertise")
        return _BAD
    result: list[_Vip] = []
    for path, value in items:
        parsed = _parse_address(ctx, t, path, value, interface)
        if parsed is not _BAD:
            result.append(_Vip(path, parsed, excluded=key == "excluded_addresses"))
    return result


def _parse_track(
    ctx: _Ctx, t: _Table, path: str, value: object, kind: Literal["interface", "script"]
) -> tuple[str, int | None] | _Bad:
    """A tracker: a bare name, or { name, weight }. A bare interface has weight 0 (FAULT), a
    bare script None (the script's own weight)."""
    parse_name = _interface_name if kind == "interface" else _name("script")
    default_weight = 0 if kind == "interface" else None
    if isinstance(value, str):
        name = t.element(path, value, parse_name)
        return _BAD if name is _BAD else (name, default_weight)
    data = _table(ctx, path, value, f'a {kind} name or {{ name = "...", weight = -10 }}')
    if data is None:
        return _BAD
    mark = ctx.mark()
    tt = _Table(ctx, path, data, _TRACK_KEYS)
    name = tt.require("name", parse_name, f"the {kind} to track")
    weight = tt.get("weight", _WEIGHT, default_weight)
    if ctx.failed_since(mark):
        return _BAD
    return _ok(name), _ok(weight)


def _parse_route(
    ctx: _Ctx, path: str, value: object, default_family: Family | None
) -> RouteConfig | _Bad:
    data = _table(ctx, path, value, 'a route, e.g. { to = "default", via = "1.2.3.57" }')
    if data is None:
        return _BAD
    mark = ctx.mark()
    t = _Table(ctx, path, data, _ROUTE_KEYS)
    to = t.require("to", _route_destination, 'the destination: a network or "default"')
    via = t.get("via", _unicast_ip, None)
    src = t.get("src", _unicast_ip, None)
    dev = t.get("dev", _interface_name, None)
    table = t.get("table", _routing_table(ctx.table_names), None)
    metric = t.get("metric", _UINT32, None)
    scope = t.get("scope", _choice(SCOPES), None)
    if to is _BAD or via is _BAD or src is _BAD:
        return _BAD
    if to == "default":
        hints = [a.version for a in (via, src) if a is not None]
        version = hints[0] if hints else default_family
        if version is None:
            ctx.add(
                t.sub("to"),
                '"default" is ambiguous here; write "0.0.0.0/0" or "::/0", or give via or src',
            )
            return _BAD
        destination: IPNetwork = ip_network("0.0.0.0/0" if version == 4 else "::/0")
    else:
        destination = to
    for key, address in (("via", via), ("src", src)):
        if address is not None and address.version != destination.version:
            ctx.add(
                t.sub(key),
                f"{_show(str(address))} is {_family_name(address.version)} but the route is "
                f"to {_family_name(destination.version)} {destination}; use an address of "
                "the same family",
            )
    if isinstance(via, IPv6Address) and via.is_link_local and dev is None:
        ctx.add(
            t.sub("via"),
            f'the link-local gateway {_show(str(via))} needs dev (e.g. dev = "eth0")',
        )
    if ctx.failed_since(mark):
        return _BAD
    return RouteConfig(
        destination,
        via=via,
        dev=_ok(dev),
        table=_ok(table),
        metric=_ok(metric),
        src=src,
        scope=_ok(scope),
    )


def _parse_rule(
    ctx: _Ctx, path: str, value: object, default_family: Family | None
) -> RuleConfig | _Bad:
    data = _table(ctx, path, value, 'a rule, e.g. { from = "1.2.3.56/29", table = 100 }')
    if data is None:
        return _BAD
    mark = ctx.mark()
    t = _Table(ctx, path, data, _RULE_KEYS)
    from_ = t.get("from", _network, None)
    to = t.get("to", _network, None)
    table: int | _Bad
    if "lookup" in data and "table" in data:
        ctx.add(t.sub("lookup"), "lookup and table are the same (as in ip-rule); keep one")
        table = _BAD
    else:
        # lookup: ip rule's own word for it, as keepalived's virtual_rule writes it.
        key = "lookup" if "lookup" in data else "table"
        table = t.require(
            key,
            _routing_table(ctx.table_names),
            "the routing table to look up: 1..4294967295 or a name from rt_tables",
        )
    priority = t.get("priority", _UINT32, None)
    iif = t.get("iif", _interface_name, None)
    oif = t.get("oif", _interface_name, None)
    family = t.get("family", _rule_family, None)
    if from_ is _BAD or to is _BAD or family is _BAD:
        return _BAD
    if from_ is not None and to is not None and from_.version != to.version:
        ctx.add(
            t.sub("to"),
            f"{to} is {_family_name(to.version)} but from ({from_}) is "
            f"{_family_name(from_.version)}; a rule matches one family",
        )
        return _BAD
    network = from_ if from_ is not None else to
    if network is not None and family is not None and network.version != family:
        key = "from" if from_ is not None else "to"
        ctx.add(
            t.sub("family"),
            f'"{_family_name(family).lower()}" contradicts {key} = "{network}"; '
            "remove family or make them agree",
        )
        return _BAD
    resolved = network.version if network is not None else family or default_family
    if resolved is None:
        ctx.add(path, 'cannot tell the family: give from, to or family = "ipv4" | "ipv6"')
        return _BAD
    if ctx.failed_since(mark):
        return _BAD
    return RuleConfig(
        Family(resolved),
        _ok(table),
        from_=from_,
        to=to,
        priority=_ok(priority),
        iif=_ok(iif),
        oif=_ok(oif),
    )


def _parse_list(
    ctx: _Ctx,
    t: _Table,
    key: str,
    parse: Callable[[_Ctx, str, object], _T | _Bad],
    *,
    what: str,
    identity: Callable[[_T], object] = lambda item: item,
) -> list[tuple[str, _T]] | _Bad:
    """An array of structured items, each checked, duplicates (by ``identity``) reported."""
    items = t.items(key)
    if items is None:
        return []
    if items is _BAD:
        return _BAD
    result: list[tuple[str, _T]] = []
    seen: dict[object, str] = {}
    for path, value in items:
        parsed = parse(ctx, path, value)
        if parsed is _BAD:
            continue
        ident = identity(parsed)
        if ident in seen:
            ctx.add(path, f"duplicate {what}: the same as {seen[ident]}; remove one")
            continue
        seen[ident] = path
        result.append((path, parsed))
    return result


@attrs.define
class _ScriptsSeen:
    """What instances need to know about the scripts, even those with problems."""

    names: list[str] = attrs.Factory(list)
    weights: dict[str, int] = attrs.Factory(dict)


@attrs.define
class _InstanceDraft:
    """The parts of an instance that node-wide checks need, as far as they are valid."""

    name: str
    path: str
    interface: str | None = None
    vrid: int | None = None
    family: Family | None = None
    vips: list[_Vip] = attrs.Factory(list)
    unicast_source: IPAddress | None = None
    unicast_source_path: str = ""
