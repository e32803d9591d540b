"""One ``[instances.NAME]`` table, and the rules inside one instance."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Final, Literal

import attrs

from pyvrrp.core.configparse.keys import _INSTANCE_KEYS, _KEEPALIVED_INSTANCE, _NOTIFY_KEYS
from pyvrrp.core.configparse.reading import (
    _BAD,
    _NAME,
    MAX_SECONDS,
    _Bad,
    _Ctx,
    _did_you_mean,
    _invalid_name_message,
    _ok,
    _show,
    _Table,
    _table,
)
from pyvrrp.core.configparse.sections import (
    _account_name,
    _InstanceDraft,
    _parse_addresses,
    _parse_list,
    _parse_route,
    _parse_rule,
    _parse_track,
    _ScriptsSeen,
    _Vip,
)
from pyvrrp.core.configparse.values import (
    V2_MAX_ADVERT_INTERVAL,
    V3_MAX_WHOLE_SECONDS,
    _advert_interval,
    _auth_pass,
    _boolean,
    _checksum_mode,
    _choice,
    _command,
    _family_name,
    _integer,
    _interface_name,
    _seconds,
    _unicast_ip,
    _v2_advert_interval,
    _version,
)
from pyvrrp.core.model import (
    OWNER_PRIORITY,
    US_PER_SECOND,
    InstanceConfig,
    IPAddress,
    TrackInterface,
    TrackScript,
    VrrpVersion,
)
from pyvrrp.core.packet import ChecksumMode, Family


def _resolve_priority(
    ctx: _Ctx, t: _Table, priority: int | _Bad | None, state: str | _Bad | None
) -> tuple[int | _Bad, Literal["backup", "master"] | _Bad]:
    """keepalived: ``state master`` without a priority is the owner (255); without ``state``,
    255 starts as master and anything else as backup."""
    if priority is None:
        if state is _BAD:
            return _BAD, _BAD
        priority = OWNER_PRIORITY if state == "master" else 100
    if state is None and priority is not _BAD:
        state = "master" if priority == OWNER_PRIORITY else "backup"
    if state == "backup" and priority == OWNER_PRIORITY:
        ctx.add(
            t.sub("state"),
            '"backup" contradicts priority 255: the address owner always starts as master '
            '(RFC 9568 §6.4.1); remove state or set it to "master", or lower the priority',
        )
        return priority, _BAD
    if state == "master":
        return priority, "master"
    return priority, "backup" if state == "backup" else _BAD


@attrs.frozen
class _InstanceDefaults:
    """What instances take from ``[global]``; None where ``[global]`` has a problem there
    (the checks that depend on it are skipped rather than reported twice)."""

    version: VrrpVersion | None = VrrpVersion.V3
    email: bool | None = False


def _unquoted_dotted_name(name: str, data: Mapping[Any, object]) -> str | None:
    """``[instances.1.2.3.58]`` is TOML for nested tables "1" > "2" > "3" > "58": the name
    the user meant, when the table looks like that, else None."""
    parts = [name]
    body: Mapping[Any, object] = data
    while len(body) == 1 and not _REQUIRED_KEYS & set(body):
        key, inner = next(iter(body.items()))
        if not isinstance(key, str) or not isinstance(inner, Mapping):
            return None
        parts.append(key)
        body = inner
    return ".".join(parts) if len(parts) > 1 and _REQUIRED_KEYS & set(body) else None


_REQUIRED_KEYS: Final = frozenset({"interface", "vrid", "addresses"})


def _parse_instance(
    ctx: _Ctx,
    path: str,
    name: str,
    value: object,
    scripts: _ScriptsSeen,
    *,
    defaults: _InstanceDefaults,
) -> tuple[InstanceConfig | _Bad, _InstanceDraft]:
    draft = _InstanceDraft(name, path)
    data = _table(ctx, path, value, "an instance with at least interface, vrid and addresses")
    if data is None:
        return _BAD, draft
    meant = _unquoted_dotted_name(name, data)
    if meant is not None:
        ctx.add(
            path,
            f"looks like the instance {_show(meant)} written without quotes: TOML reads the "
            f'dots of a table name as nesting; write [instances."{meant}"]',
        )
        return _BAD, draft
    mark = ctx.mark()
    t = _Table(ctx, path, data, _INSTANCE_KEYS, _KEEPALIVED_INSTANCE)
    if not _NAME.fullmatch(name):
        ctx.add(path, _invalid_name_message(name, "instance"))
    interface = t.require("interface", _interface_name, 'the interface, e.g. "eth0.4000"')
    vrid = t.require("vrid", _integer(1, 255), "the virtual router id, 1..255")
    draft.interface = interface if isinstance(interface, str) else None
    draft.vrid = vrid if isinstance(vrid, int) else None
    priority, state = _resolve_priority(
        ctx,
        t,
        t.get("priority", _integer(1, 255), None),
        t.get("state", _choice(("backup", "master")), None),
    )
    version_key = t.get("version", _version, None)
    preempt = t.get("preempt", _boolean, True)
    preempt_delay = t.get("preempt_delay", _seconds(1000), 0)
    accept = t.get("accept", _boolean, True)
    if accept is False:
        # Accept_Mode off means dropping traffic to the VIPs (keepalived installs firewall
        # rules for it); pyvrrp does not do that yet, and must not pretend it does.
        ctx.add(
            t.sub("accept"),
            "false is not supported yet: pyvrrp always accepts packets addressed to the "
            "virtual addresses (RFC 9568 Accept_Mode on, keepalived's default); remove "
            "accept = false, or drop that traffic with your firewall",
        )
    checksum = t.get("ipv4_checksum", _checksum_mode, ChecksumMode.PSEUDO_HEADER)

    addresses = _parse_addresses(ctx, t, "addresses", draft.interface, required=True)
    excluded = _parse_addresses(ctx, t, "excluded_addresses", draft.interface, required=False)
    family = _check_addresses(ctx, draft, addresses, excluded)

    if checksum is ChecksumMode.MESSAGE_ONLY and family is Family.IPV6:
        ctx.add(
            t.sub("ipv4_checksum"),
            '"message-only" applies to IPv4 only: IPv6 always includes the pseudo-header '
            "(RFC 9568 §5.2.8); remove ipv4_checksum",
        )
    version, advert_interval = _resolve_version(ctx, t, version_key, defaults.version, family)
    auth_pass = t.get("auth_pass", _auth_pass, None)
    if isinstance(auth_pass, str) and version is VrrpVersion.V3:
        ctx.add(
            t.sub("auth_pass"),
            'needs version = 2 or "2+3": VRRPv3 carries no password (RFC 9568 has no '
            "authentication); remove auth_pass, or set the version that keepalived speaks",
        )
    source, peers = _parse_unicast(ctx, t, draft, family)
    peers_only = t.get("unicast_peers_only", _boolean, True)
    if "unicast_peers_only" in data and "unicast_peers" not in data:
        ctx.warn(
            t.sub("unicast_peers_only"),
            "has no effect without unicast_peers (multicast hears every router of the VRID)",
        )
    email = t.get("email", _boolean, False)
    if email is True and defaults.email is False:
        ctx.add(
            t.sub("email"),
            "true needs a [global.email] table (server, from, to) to know where to send; add "
            "it, or remove email",
        )

    track_interfaces = _parse_list(
        ctx,
        t,
        "track_interfaces",
        lambda c, p, v: _parse_track(c, t, p, v, "interface"),
        what="tracked interface",
        identity=lambda item: item[0],
    )
    track_scripts = _parse_list(
        ctx,
        t,
        "track_scripts",
        lambda c, p, v: _parse_track(c, t, p, v, "script"),
        what="tracked script",
        identity=lambda item: item[0],
    )
    if track_scripts is not _BAD:
        for item_path, (script, _) in track_scripts:
            if script not in scripts.names:
                defined = ", ".join(scripts.names) or "none"
                ctx.add(
                    item_path,
                    f"no script named {script} in [scripts] (defined: {defined})"
                    + _did_you_mean(script, scripts.names),
                )
    routes = _parse_list(
        ctx,
        t,
        "virtual_routes",
        lambda c, p, v: _parse_route(c, p, v, family),
        what="route",
    )
    rules = _parse_list(
        ctx, t, "virtual_rules", lambda c, p, v: _parse_rule(c, p, v, family), what="rule"
    )
    notify = {key: t.get(key, _command, None) for key in _NOTIFY_KEYS}
    notify_user = t.get("notify_user", _account_name("user"), None)
    notify_group = t.get("notify_group", _account_name("group"), None)
    garp_repeat = t.get("garp_repeat", _integer(1, 100), 5)
    garp_delay = t.get("garp_delay", _seconds(MAX_SECONDS), 5 * US_PER_SECOND)
    garp_refresh = t.get("garp_refresh", _seconds(MAX_SECONDS), 0)
    graceful_handover = t.get("graceful_handover", _boolean, True)

    if priority == OWNER_PRIORITY:
        _check_owner(ctx, track_interfaces, track_scripts, scripts, explicit="priority" in data)
    if preempt is False and (priority == OWNER_PRIORITY or state == "master"):
        # keepalived warns and clears nopreempt here; refusing would break migrated configs
        # (the seed's masters carry nopreempt), so do as it does and say so.
        why = (
            "the address owner (priority 255) always preempts (RFC 9568 §6.4.1)"
            if priority == OWNER_PRIORITY
            else 'nopreempt only works with state "backup" (keepalived ignores it here too)'
        )
        ctx.warn(
            t.sub("preempt"),
            f"false is ignored and this instance preempts: {why}; remove preempt = false, "
            'or use state = "backup" with a priority below 255 to stop preempting',
        )
        preempt = True

    if ctx.failed_since(mark):
        return _BAD, draft
    if family is None:
        raise AssertionError("an instance without problems has addresses")
    return InstanceConfig(
        name=name,
        interface=_ok(interface),
        vrid=_ok(vrid),
        priority=_ok(priority),
        initial_state=_ok(state),
        advert_interval_cs=_ok(advert_interval),
        preempt=_ok(preempt),
        preempt_delay_us=_ok(preempt_delay),
        accept=_ok(accept),
        ipv4_checksum=_ok(checksum),
        unicast_source=_ok(source),
        unicast_peers=tuple(_ok(peers)),
        addresses=tuple(v.config for v in _ok(addresses)),
        excluded_addresses=tuple(v.config for v in _ok(excluded)),
        track_interfaces=tuple(TrackInterface(n, w or 0) for _, (n, w) in _ok(track_interfaces)),
        track_scripts=tuple(TrackScript(n, w) for _, (n, w) in _ok(track_scripts)),
        virtual_routes=tuple(r for _, r in _ok(routes)),
        virtual_rules=tuple(r for _, r in _ok(rules)),
        notify_master=_ok(notify["notify_master"]),
        notify_backup=_ok(notify["notify_backup"]),
        notify_fault=_ok(notify["notify_fault"]),
        notify_stop=_ok(notify["notify_stop"]),
        notify=_ok(notify["notify"]),
        garp_repeat=_ok(garp_repeat),
        garp_delay_us=_ok(garp_delay),
        garp_refresh_us=_ok(garp_refresh),
        notify_user=_ok(notify_user),
        notify_group=_ok(notify_group),
        graceful_handover=_ok(graceful_handover),
        version=_ok(version),
        auth_pass=_ok(auth_pass),
        unicast_peers_only=_ok(peers_only),
        email=_ok(email),
    ), draft


def _check_addresses(
    ctx: _Ctx,
    draft: _InstanceDraft,
    addresses: list[_Vip] | _Bad,
    excluded: list[_Vip] | _Bad,
) -> Family | None:
    """One family per instance, link-local first for IPv6, no address twice. -> the family."""
    vips = [
        *(addresses if addresses is not _BAD else []),
        *(excluded if excluded is not _BAD else []),
    ]
    draft.vips = vips
    seen: dict[IPAddress, str] = {}
    for vip in vips:
        ip = vip.config.address.ip
        if ip in seen:
            ctx.add(vip.path, f"{ip} is listed twice (also at {seen[ip]}); remove one")
        else:
            seen[ip] = vip.path
    if addresses is _BAD or not addresses:
        return None
    first = addresses[0]
    family = Family(first.config.address.version)
    draft.family = family
    for vip in addresses[1:]:
        if vip.config.address.version != family:
            ctx.add(
                vip.path,
                f"{_show(str(vip.config.address))} is {_family_name(vip.config.address.version)} "
                f"but this instance advertises {_family_name(family)} ({first.path}); an "
                "instance advertises one family: move it to excluded_addresses or to an "
                "instance of its own",
            )
    first_ip = first.config.address.ip
    if family is Family.IPV6 and not first_ip.is_link_local and first.path.endswith("[0]"):
        later = next((v for v in addresses if v.config.address.ip.is_link_local), None)
        if later is not None:
            fix = f"move {_show(str(later.config.address))} ({later.path}) first"
        else:
            example = f"fe80::{draft.vrid if draft.vrid is not None else 1}/64"
            fix = f'put a link-local address first, e.g. "{example}"'
        ctx.add(
            first.path,
            f"{_show(str(first.config.address))} is not link-local, but the first address of an "
            "IPv6 advertisement must be (RFC 9568 §5.2.9); receivers drop advertisements that "
            f"break this (keepalived only warns); {fix}",
        )
    return family


def _parse_unicast(
    ctx: _Ctx, t: _Table, draft: _InstanceDraft, family: Family | None
) -> tuple[IPAddress | _Bad | None, list[IPAddress] | _Bad]:
    """unicast_source + unicast_peers; never let a broken peer list fall back to multicast."""
    source = t.get("unicast_source", _unicast_ip, None)
    items = t.items("unicast_peers")
    peers: list[IPAddress] | _Bad = []
    if items is _BAD:
        peers = _BAD
    elif items is not None:
        if not items:
            ctx.add(
                t.sub("unicast_peers"),
                "is empty, which would silently mean multicast; list the peers, or remove "
                "unicast_peers (and unicast_source) to use multicast",
            )
            peers = _BAD
        seen: dict[IPAddress, str] = {}
        for path, value in items:
            peer = t.element(path, value, _unicast_ip)
            if peer is _BAD:
                peers = _BAD
                continue
            if peer in seen:
                ctx.add(path, f"{peer} is listed twice (also at {seen[peer]}); remove one")
                peers = _BAD
                continue
            seen[peer] = path
            if family is not None and peer.version != family:
                ctx.add(
                    path,
                    f"{peer} is {_family_name(peer.version)} but this instance advertises "
                    f"{_family_name(family)}; peers must be of the instance's family",
                )
                peers = _BAD
            elif isinstance(source, IPv4Address | IPv6Address) and peer == source:
                ctx.add(
                    path,
                    f"{peer} is the unicast_source itself; list only the other routers",
                )
                peers = _BAD
            if peers is not _BAD:
                peers.append(peer)
    if isinstance(source, IPv4Address | IPv6Address):
        draft.unicast_source = source
        draft.unicast_source_path = t.sub("unicast_source")
        if family is not None and source.version != family:
            ctx.add(
                t.sub("unicast_source"),
                f"{source} is {_family_name(source.version)} but this instance advertises "
                f"{_family_name(family)}; use this node's {_family_name(family)} address",
            )
        if items is None:
            ctx.add(
                t.sub("unicast_source"),
                "is set but unicast_peers is missing; list the other routers in "
                "unicast_peers (pyvrrp never falls back to multicast), or remove "
                "unicast_source to use multicast",
            )
            source = _BAD
    return source, peers


def _check_owner(
    ctx: _Ctx,
    track_interfaces: list[tuple[str, tuple[str, int | None]]] | _Bad,
    track_scripts: list[tuple[str, tuple[str, int | None]]] | _Bad,
    scripts: _ScriptsSeen,
    *,
    explicit: bool,
) -> None:
    """An owner's priority is never changed by trackers: only weight 0 (FAULT) makes sense."""
    owner = "priority 255" if explicit else 'priority 255 (state = "master" without priority)'
    fix = "use weight = 0 (a failure means FAULT) or a priority below 255"
    if track_interfaces is not _BAD:
        for path, (name, weight) in track_interfaces:
            if weight:
                ctx.add(
                    f"{path}.weight",
                    f"weight {weight} on {name} has no effect: an address owner's {owner} is "
                    f"never changed by trackers; {fix}",
                )
    if track_scripts is not _BAD:
        for path, (name, weight) in track_scripts:
            if weight:
                ctx.add(
                    f"{path}.weight",
                    f"weight {weight} on {name} has no effect: an address owner's {owner} is "
                    f"never changed by trackers; {fix}",
                )
            elif weight is None and scripts.weights.get(name, 0) != 0:
                ctx.add(
                    path,
                    f"script {name} has weight {scripts.weights[name]}, which cannot change an "
                    f'address owner\'s {owner}; track it as {{ name = "{name}", weight = 0 }} '
                    "(a failure means FAULT) or use a priority below 255",
                )


def _resolve_version(
    ctx: _Ctx,
    t: _Table,
    key: VrrpVersion | _Bad | None,
    default: VrrpVersion | None,
    family: Family | None,
) -> tuple[VrrpVersion | _Bad, int | _Bad]:
    """The instance's VRRP version (its key, else [global] version for IPv4, else 3) and its
    advertisement interval in centiseconds, whose range the version decides."""
    if key is _BAD:
        return _BAD, t.get("advert_interval", _advert_interval, 100)
    if family is Family.IPV6:
        if key is not None and key.speaks_v2:
            ctx.add(
                t.sub("version"),
                f"{_show(key.value)} is not possible here: VRRPv2 is IPv4-only (RFC 3768) and "
                "this instance advertises IPv6; remove version (IPv6 speaks 3)",
            )
            return _BAD, t.get("advert_interval", _advert_interval, 100)
        version = VrrpVersion.V3
    else:
        version = key if key is not None else default or VrrpVersion.V3
    if default is None and key is None:
        # [global] version is broken: the interval's range is unknown; check it as v3.
        return version, t.get("advert_interval", _advert_interval, 100)
    spelled = {VrrpVersion.V2: "version 2", VrrpVersion.V2_AND_V3: 'version "2+3"'}
    parse: Callable[[object], int]
    if version is VrrpVersion.V3:
        parse = _advert_interval
    else:
        why = spelled[version] + (" (from [global])" if key is None else "")
        high = V2_MAX_ADVERT_INTERVAL
        if version is VrrpVersion.V2_AND_V3:
            why += ", whose VRRPv3 adverts carry at most 40.95 s,"
            high = V3_MAX_WHOLE_SECONDS
        parse = _v2_advert_interval(high, why)
    return version, t.get("advert_interval", parse, 100)
