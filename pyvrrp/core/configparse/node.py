"""The whole node: :func:`parse_node`, the sync groups and the rules across instances."""

from __future__ import annotations

from collections.abc import Mapping

from pyvrrp.core.configparse.instance import _InstanceDefaults, _parse_instance
from pyvrrp.core.configparse.keys import _KEEPALIVED_TOP, _SYNC_GROUP_KEYS, _TOP_KEYS
from pyvrrp.core.configparse.reading import (
    _BAD,
    _NAME,
    _Bad,
    _Ctx,
    _describe,
    _did_you_mean,
    _Invalid,
    _invalid_name_message,
    _ok,
    _plural,
    _show,
    _Table,
    _table,
    key_path,
)
from pyvrrp.core.configparse.sections import (
    _InstanceDraft,
    _parse_global,
    _parse_list,
    _parse_route,
    _parse_rule,
    _parse_script,
    _ScriptsSeen,
)
from pyvrrp.core.configparse.values import _family_name, _string, _version
from pyvrrp.core.model import (
    ConfigError,
    GlobalConfig,
    InstanceConfig,
    IPAddress,
    NodeConfig,
    ScriptConfig,
    SyncGroupConfig,
    VrrpVersion,
)
from pyvrrp.core.packet import Family


def _parse_sync_groups(
    ctx: _Ctx, value: object, instance_names: list[str]
) -> dict[str, SyncGroupConfig] | _Bad:
    data = _table(ctx, "sync_groups", value, "[sync_groups.NAME] tables")
    if data is None:
        return _BAD
    groups: dict[str, SyncGroupConfig] = {}
    member_of: dict[str, str] = {}
    mark = ctx.mark()
    for name, body in data.items():
        if not isinstance(name, str):
            ctx.add("sync_groups", f"key {_show(name)} is not a string")
            continue
        path = key_path("sync_groups", name)
        if not _NAME.fullmatch(name):
            ctx.add(path, _invalid_name_message(name, "sync group"))
        table = _table(ctx, path, body, 'a sync group, e.g. instances = ["vip58", "vip59"]')
        if table is None:
            continue
        t = _Table(ctx, path, table, _SYNC_GROUP_KEYS)
        items = t.items("instances")
        if items is None:
            if "instances" not in t.suggested:
                ctx.add(
                    t.sub("instances"), 'missing: the member instances, e.g. ["vip58", "vip59"]'
                )
            continue
        if items is _BAD:
            continue
        if not items:
            ctx.add(t.sub("instances"), "is empty; list the instances of the group")
        members: list[str] = []
        for item_path, item in items:
            member = t.element(item_path, item, _string)
            if member is _BAD:
                continue
            if member not in instance_names:
                ctx.add(
                    item_path,
                    f"no instance named {_show(member)} in [instances]"
                    + _did_you_mean(member, instance_names),
                )
            elif member in members:
                ctx.add(item_path, f"{member} is listed twice in this group; remove one")
            elif member in member_of:
                ctx.add(
                    item_path,
                    f"{member} is already in sync group {member_of[member]}; an instance "
                    "belongs to at most one sync group",
                )
            else:
                member_of[member] = name
            members.append(member)
        groups[name] = SyncGroupConfig(name, tuple(members))
    if ctx.failed_since(mark):
        return _BAD
    return groups


def _check_node(ctx: _Ctx, drafts: list[_InstanceDraft]) -> None:
    """Rules across instances: VRIDs per (interface, family), one instance per address."""
    vrids: dict[tuple[str, Family, int], str] = {}
    for draft in drafts:
        if draft.interface is None or draft.vrid is None or draft.family is None:
            continue
        key = (draft.interface, draft.family, draft.vrid)
        if key in vrids:
            ctx.add(
                key_path(draft.path, "vrid"),
                f"VRID {draft.vrid} is already used by instance {vrids[key]} on "
                f"{draft.interface} for {_family_name(draft.family)}; a VRID must be unique per "
                "interface and family (RFC 9568 §7.1 tells routers apart by VRID): pick another",
            )
        else:
            vrids[key] = draft.name
    owners: dict[IPAddress, tuple[str, str]] = {}
    for draft in drafts:
        reported: set[IPAddress] = set()  # an address listed twice in one instance: once
        for vip in draft.vips:
            ip = vip.config.address.ip
            if ip in owners and owners[ip][0] != draft.name and ip not in reported:
                reported.add(ip)
                other, where = owners[ip]
                ctx.add(
                    vip.path,
                    f"{ip} is also managed by instance {other} ({where}); an address can "
                    "belong to only one instance of a node",
                )
            owners.setdefault(ip, (draft.name, vip.path))
    for draft in drafts:
        source = draft.unicast_source
        if source is not None and source in owners:
            other, where = owners[source]
            ctx.add(
                draft.unicast_source_path,
                f"{source} is a virtual address ({where}), which moves between nodes; use "
                "this node's own address on the interface",
            )


def parse_node(
    data: Mapping[str, object], *, table_names: Mapping[str, int] | None = None
) -> NodeConfig:
    """Validate a parsed node.toml (what ``tomllib`` returns) into a :class:`NodeConfig`.

    ``table_names`` maps routing table names to numbers, as the host's rt_tables files do
    (:func:`pyvrrp.configfile.load` reads them); ip's builtin names (main, local, default)
    are always known. Raises :class:`ConfigError` with every problem found; never anything
    else. What is accepted but worth saying is in :attr:`NodeConfig.warnings`.
    """
    ctx = _Ctx(table_names)
    raw: object = data  # typed as a Mapping, but robust to anything
    if not isinstance(raw, Mapping):
        ctx.add("", f"expected a table at the top level, got {_describe(raw)}")
        raise ConfigError(ctx.problems)
    _Table(ctx, "", data, _TOP_KEYS, _KEEPALIVED_TOP)

    global_: GlobalConfig | _Bad = GlobalConfig()
    if "global" in data:
        global_ = _parse_global(ctx, data["global"])
    defaults = _instance_defaults(global_, data.get("global"))

    seen = _ScriptsSeen()
    scripts: dict[str, ScriptConfig] = {}
    raw_scripts = _table(ctx, "scripts", data.get("scripts", {}), "[scripts.NAME] tables")
    for name, body in (raw_scripts or {}).items():
        if not isinstance(name, str):
            ctx.add("scripts", f"key {_show(name)} is not a string")
            continue
        path = key_path("scripts", name)
        if not _NAME.fullmatch(name):
            ctx.add(path, _invalid_name_message(name, "script"))
        seen.names.append(name)
        if isinstance(body, Mapping):
            weight = body.get("weight")
            if isinstance(weight, int) and not isinstance(weight, bool):
                # Even from a script with other problems: the owner rule can still be checked.
                seen.weights[name] = weight
        script = _parse_script(ctx, path, name, body)
        if script is not _BAD:
            scripts[name] = script

    instances: dict[str, InstanceConfig] = {}
    drafts: list[_InstanceDraft] = []
    instance_names: list[str] = []
    raw_instances = _table(ctx, "instances", data.get("instances", {}), "[instances.NAME] tables")
    for name, body in (raw_instances or {}).items():
        if not isinstance(name, str):
            ctx.add("instances", f"key {_show(name)} is not a string")
            continue
        instance_names.append(name)
        instance, draft = _parse_instance(
            ctx, key_path("instances", name), name, body, seen, defaults=defaults
        )
        drafts.append(draft)
        if instance is not _BAD:
            instances[name] = instance
    if raw_instances is not None and not raw_instances:
        # An empty file (a template that rendered empty) would otherwise pass, and a reload
        # with it would hand every address away.
        ctx.add(
            "instances",
            "missing: no instance is configured; a node needs at least one [instances.NAME] "
            "table (with interface, vrid and addresses)",
        )
    _check_node(ctx, drafts)

    root = _Table(ctx, "", data, None)
    routes = _parse_list(
        ctx, root, "routes", lambda c, p, v: _parse_route(c, p, v, None), what="route"
    )
    rules = _parse_list(ctx, root, "rules", lambda c, p, v: _parse_rule(c, p, v, None), what="rule")
    sync_groups: dict[str, SyncGroupConfig] | _Bad = {}
    if "sync_groups" in data:
        sync_groups = _parse_sync_groups(ctx, data["sync_groups"], instance_names)

    if ctx.problems:
        raise ConfigError(ctx.problems)
    return NodeConfig(
        global_=_ok(global_),
        scripts=scripts,
        instances=instances,
        routes=tuple(r for _, r in _ok(routes)),
        rules=tuple(r for _, r in _ok(rules)),
        sync_groups=_ok(sync_groups),
        warnings=tuple(ctx.warnings),
    )


def _instance_defaults(global_: GlobalConfig | _Bad, raw: object) -> _InstanceDefaults:
    """What instances take from [global]; where [global] is broken, what can still be told
    from its raw table (None: unknown, and the checks that depend on it are skipped)."""
    if global_ is not _BAD:
        return _InstanceDefaults(version=global_.version, email=global_.email is not None)
    table = raw if isinstance(raw, Mapping) else {}
    version: VrrpVersion | None = VrrpVersion.V3
    if "version" in table:
        try:
            version = _version(table["version"])
        except _Invalid:
            version = None
    email = None if "email" in table else False
    return _InstanceDefaults(version=version, email=email)


def summary(node: NodeConfig) -> str:
    """A one-line description: '3 instances (vip58, vip59, vip60), 1 script, 0 sync groups'."""
    names = ", ".join(node.instances)
    instances = _plural(len(node.instances), "instance") + (f" ({names})" if names else "")
    return (
        f"{instances}, {_plural(len(node.scripts), 'script')}, "
        f"{_plural(len(node.sync_groups), 'sync group')}"
    )


__all__ = ["parse_node", "summary"]
