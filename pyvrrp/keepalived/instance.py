"""One ``vrrp_instance`` to one ``[instances.NAME]`` table, with keepalived's meaning.

keepalived's defaults and what it clears are applied here (docs/keepalived.md): the VRRP
version of an IPv4 instance, the owner's priority, nopreempt and preempt_delay on an instance
that starts as master, authentication on VRRPv3, trackers that cannot change an owner.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol

from pyvrrp.keepalived.advice import _INSTANCE_DROPPED, _INSTANCE_NOTES
from pyvrrp.keepalived.parser import Location, Node
from pyvrrp.keepalived.render import Comments
from pyvrrp.keepalived.values import (
    _AUTH_PASS_MAX,
    _DEFAULT_PRIORITY,
    _KEEPALIVED_VERSION,
    _OWNER,
    _address_value,
    _Bad,
    _boolean,
    _check_track_words,
    _integer,
    _ip,
    _number,
    _seconds,
    _state,
    command_value,
)


class Context(Protocol):
    """What an instance needs from the conversion of the whole file (the converter in
    :mod:`pyvrrp.keepalived.convert`): global_defs, the scripts, and where reports go."""

    comments: Comments
    email: dict[str, Any]
    script_names: dict[str, str]
    script_weights: dict[str, int]
    script_reverse: set[str]
    garp_defaults: dict[str, int | float]
    vrrp_version: int
    version_override: int | str | None
    check_unicast_src: bool
    default_interface: str | None
    global_smtp_alert: bool

    def drop(self, where: Node | Location | None, message: str) -> None:
        """Report something not converted."""

    def note(self, where: Node | Location | None, message: str) -> None:
        """Report something converted that deserves a word."""

    def _args(self, node: Node, count: int, what: str) -> tuple[str, ...] | None:
        """The node's arguments, or None after reporting that some are missing."""

    def _weight(self, node: Node, text: str) -> int:
        """A tracker weight as keepalived reads it."""

    def address(self, line: Node, interface: str | None, what: str) -> dict[str, Any] | None:
        """One virtual_ipaddress line."""

    def route(self, line: Node, family: int | None) -> dict[str, Any] | None:
        """One route line."""

    def rule(self, line: Node, family: int | None) -> dict[str, Any] | None:
        """One rule line."""


class _Instance:
    """One vrrp_instance being converted."""

    def __init__(self, converter: Context, node: Node, name: str) -> None:
        self.c = converter
        self.node = node
        self.name = name
        self.family = 4
        self.priority = _DEFAULT_PRIORITY

    def drop(self, where: Node, message: str) -> None:
        self.c.drop(where, f"vrrp_instance {self.name}: {message}")

    def note(self, where: Node, message: str) -> None:
        self.c.note(where, f"vrrp_instance {self.name}: {message}")

    def build(self) -> dict[str, Any] | None:
        c = self.c
        values: dict[str, Any] = {}
        seen: dict[str, Node] = {}
        addresses: list[dict[str, Any]] = []
        excluded: list[dict[str, Any]] = []
        peers: list[str] = []
        track_interfaces: list[Any] = []
        track_scripts: list[Any] = []
        route_lines: list[Node] = []
        rule_lines: list[Node] = []
        address_lines: list[tuple[str, Node]] = []
        notify: dict[str, list[str] | str] = {}
        notify_users: dict[str, tuple[str, ...]] = {}  # key -> (user[, group]) or ()
        auth: dict[str, str] = {}
        email: bool | None = None
        check_unicast_src = c.check_unicast_src
        for child in self.node.children or ():
            key, args = child.keyword, child.args
            seen[key] = child
            try:
                if key == "interface":
                    if c._args(child, 1, "the interface") is not None:
                        values["interface"] = args[0]
                elif key == "virtual_router_id":
                    if c._args(child, 1, "the VRID") is not None:
                        values["vrid"] = _integer(args[0], "virtual_router_id", 1, 255)
                elif key == "state":
                    if c._args(child, 1, "MASTER or BACKUP") is not None:
                        values["state"] = _state(args[0])
                elif key == "priority":
                    if c._args(child, 1, "the priority") is not None:
                        values["priority"] = _integer(args[0], "priority", 1, 255)
                elif key == "advert_int":
                    if c._args(child, 1, "the interval") is not None:
                        values["advert_interval"] = _number(args[0], "advert_int", 0.01, 255)
                elif key == "version":
                    if c._args(child, 1, "the version") is not None:
                        values["version"] = _integer(args[0], "version", 2, 3)
                elif key == "nopreempt":
                    values["nopreempt"] = True
                elif key == "preempt_delay":
                    if c._args(child, 1, "seconds") is not None:
                        values["preempt_delay"] = _seconds(_number(args[0], key, 0, 1000))
                elif key in ("garp_master_delay", "garp_master_repeat", "garp_master_refresh"):
                    if c._args(child, 1, "a value") is not None:
                        values[key] = _number(args[0], key, 0, 86400)
                elif key == "smtp_alert":
                    email = _boolean(args)
                elif key == "authentication":
                    for line in child.children or ():
                        if line.keyword in ("auth_type", "auth_pass") and line.args:
                            auth[line.keyword] = line.args[0]
                        else:
                            self.drop(line, f"authentication {line.keyword}: not converted")
                elif key in ("virtual_ipaddress", "virtual_ipaddress_excluded"):
                    # Converted after the loop: `interface` may come later in the block.
                    address_lines.extend((key, line) for line in child.children or ())
                elif key == "unicast_src_ip":
                    if c._args(child, 1, "the address") is not None:
                        values["unicast_source"] = str(_ip(args[0]))
                elif key == "unicast_peer":
                    for line in child.children or ():
                        try:
                            peer = str(_ip(line.keyword))
                        except _Bad as bad:
                            self.drop(line, f"unicast_peer: {bad}; ignored")
                            continue
                        self.add_once(peers, peer, line, "unicast_peer")
                        if line.args:
                            self.drop(
                                line,
                                f"unicast_peer {line.keyword}: {' '.join(line.args)}: TTL checks "
                                "are not supported",
                            )
                elif key == "check_unicast_src":
                    check_unicast_src = True
                elif key == "track_interface":
                    for line in child.children or ():
                        tracker = self.track(line, "track_interface")
                        if tracker is not None:
                            self.add_once(track_interfaces, tracker, line, "track_interface")
                elif key == "track_script":
                    for line in child.children or ():
                        tracker = self.track(line, "track_script")
                        if tracker is not None:
                            self.add_once(track_scripts, tracker, line, "track_script")
                elif key == "virtual_routes":
                    route_lines.extend(child.children or ())
                elif key == "virtual_rules":
                    rule_lines.extend(child.children or ())
                elif key in (
                    "notify_master",
                    "notify_backup",
                    "notify_fault",
                    "notify_stop",
                    "notify",
                ):
                    if c._args(child, 1, "the command") is not None:
                        notify[key] = command_value(args[0])
                        notify_users[key] = tuple(args[1:3])
                elif key in _INSTANCE_DROPPED:
                    self.drop(child, f"{key}: {_INSTANCE_DROPPED[key]}")
                elif key in _INSTANCE_NOTES:
                    self.note(child, f"{key}: {_INSTANCE_NOTES[key]}")
                else:
                    self.drop(child, f"{key}: not converted (pyvrrp has no equivalent)")
            except _Bad as bad:
                self.drop(child, f"{bad}; ignored")

        if "interface" not in values and c.default_interface is not None:
            values["interface"] = c.default_interface
        for key, line in address_lines:
            item = c.address(line, values.get("interface"), key)
            if item is not None:
                item["_line"] = line
                (addresses if key == "virtual_ipaddress" else excluded).append(item)

        # What pyvrrp requires --------------------------------------------------------------
        missing = [
            what
            for what, present in (
                ("interface", "interface" in values),
                ("virtual_router_id", "vrid" in values),
                ("virtual_ipaddress", bool(addresses)),
            )
            if not present
        ]
        if missing:
            self.drop(self.node, f"has no {' or '.join(missing)}, which pyvrrp needs: not imported")
            return None

        # Family, version ------------------------------------------------------------------
        self.family = ipaddress.ip_interface(addresses[0]["address"]).version
        for item in list(addresses[1:]):
            if ipaddress.ip_interface(item["address"]).version != self.family:
                addresses.remove(item)
                excluded.append(item)
                self.drop(
                    item["_line"],
                    f"virtual_ipaddress {item['address']} is not of the instance's family "
                    "(its first address); moved to excluded_addresses (installed, not advertised)",
                )
        seen_ips: set[str] = set()
        for items in (addresses, excluded):
            for item in list(items):
                ip = str(ipaddress.ip_interface(item["address"]).ip)
                if ip in seen_ips:
                    items.remove(item)
                    self.note(
                        item["_line"],
                        f"{item['address']} is listed twice; the first is kept (keepalived cannot "
                        "add it twice either)",
                    )
                seen_ips.add(ip)
        if self.family == 6:
            first = ipaddress.ip_interface(addresses[0]["address"]).ip
            if not first.is_link_local:
                local = next(
                    (a for a in addresses if ipaddress.ip_interface(a["address"]).ip.is_link_local),
                    None,
                )
                if local is None:
                    self.drop(
                        self.node,
                        "is IPv6 without a link-local virtual address, which pyvrrp needs first "
                        "(RFC 9568 §5.2.9); add one (e.g. fe80::VRID/64) on every node: not "
                        "imported",
                    )
                    return None
                addresses.remove(local)
                addresses.insert(0, local)
                self.note(
                    self.node,
                    f"{local['address']} moved first: IPv6 advertisements start with the "
                    "link-local address (RFC 9568 §5.2.9)",
                )

        # Election: keepalived's defaults and what it clears ----------------------------------
        state = values.get("state")
        priority = values.get("priority")
        if priority is None:
            priority = _OWNER if state == "master" else _DEFAULT_PRIORITY
        self.priority = priority
        if state == "backup" and priority == _OWNER:
            # pyvrrp refuses it: an owner starts as master (RFC 9568 §6.4.1); keepalived 2.x
            # starts it as backup and takes over when the down timer fires.
            self.drop(
                seen["state"],
                "state BACKUP with priority 255: pyvrrp starts the address owner as master at "
                "once (RFC 9568 §6.4.1), keepalived after Master_Down_Interval; state left out",
            )
            state = None
        preempt = not values.get("nopreempt", False)
        preempt_delay = values.get("preempt_delay")
        if not preempt and priority == _OWNER:
            self.note(
                seen["nopreempt"],
                "nopreempt is cleared for the address owner (priority 255), as keepalived does",
            )
            preempt = True
        elif not preempt and state == "master":
            self.note(
                seen["nopreempt"],
                "nopreempt is cleared because of state MASTER, as keepalived does (it only works "
                "with state BACKUP)",
            )
            preempt = True
        # keepalived clears preempt_delay on an instance that starts as master (state MASTER,
        # or the owner without a state) and with nopreempt.
        if preempt_delay is not None and (state == "master" or priority == _OWNER or not preempt):
            why = "nopreempt" if not preempt else "a start as master"
            self.note(
                seen["preempt_delay"],
                f"preempt_delay is cleared because of {why}, as keepalived does",
            )
            preempt_delay = None

        version = values.get("version")
        if self.family == 6:
            if version == 2:
                self.drop(
                    seen["version"],
                    "VRRPv2 over IPv6 is not supported (RFC 3768 is IPv4 only); imported as "
                    "version 3",
                )
            version = None
        elif version is None:
            version = c.vrrp_version
        # What keepalived speaks decides what it ignores (authentication on v3); what pyvrrp
        # will speak (--vrrp-version, for a migration) decides what the file may say.
        keepalived_version = version
        if self.family == 4 and c.version_override is not None:
            version = c.version_override
        speaks_v2 = version in (2, "2+3")

        interval = values.get("advert_interval")
        if interval is not None:
            if speaks_v2 and interval != int(interval):
                self.drop(
                    seen["advert_int"],
                    f"advert_int {interval:g} is not whole seconds, which VRRPv2 needs; rounded "
                    f"to {max(1, round(interval))}",
                )
                interval = max(1, round(interval))
            elif not speaks_v2 and round(interval * 100) != interval * 100:
                self.drop(
                    seen["advert_int"],
                    f"advert_int {interval:g} is not a multiple of 0.01 s; rounded to "
                    f"{round(interval * 100) / 100:g}",
                )
                interval = max(0.01, round(interval * 100) / 100)
            if not speaks_v2 and interval > 40.95:
                self.drop(
                    seen["advert_int"],
                    f"advert_int {interval:g} is above VRRPv3's 40.95 s; set to 40.95",
                )
                interval = 40.95

        # Authentication ---------------------------------------------------------------------
        auth_pass: str | None = None
        if auth:
            where = seen["authentication"]
            auth_type = auth.get("auth_type", "").upper()
            if keepalived_version != 2:
                self.note(where, "authentication is ignored with VRRPv3, as keepalived does")
            elif not speaks_v2:
                self.drop(
                    where,
                    "authentication: VRRPv3 (--vrrp-version 3) carries no password; left out "
                    "(the keepalived nodes must drop it too before they hear this node)",
                )
            elif auth_type == "AH":
                self.drop(
                    where,
                    "auth_type AH is not supported (IPsec AH, deprecated); remove authentication "
                    "from every node, or use auth_type PASS during the migration",
                )
            elif auth_type != "PASS":
                self.drop(
                    where,
                    f"auth_type {auth.get('auth_type', '(missing)')}: expected PASS or AH; "
                    "authentication ignored (as keepalived)",
                )
            elif not auth.get("auth_pass"):
                self.note(where, "auth_type PASS without auth_pass is ignored, as keepalived does")
            else:
                auth_pass = auth["auth_pass"]
                if len(auth_pass.encode()) > _AUTH_PASS_MAX:
                    auth_pass = auth_pass.encode()[:_AUTH_PASS_MAX].decode(errors="ignore")
                    self.note(
                        where, f"auth_pass is cut to {_AUTH_PASS_MAX} bytes, as keepalived sends it"
                    )

        # Unicast ----------------------------------------------------------------------------
        source = values.get("unicast_source")
        if source is not None and source in peers:
            peers.remove(source)
            self.note(
                seen["unicast_src_ip"],
                f"unicast_peer {source} is this node's own unicast_src_ip: left out",
            )
        if source is not None and not peers:
            self.drop(
                seen["unicast_src_ip"],
                "unicast_src_ip without unicast_peer (a multicast source address): pyvrrp sends "
                "from the interface's primary address",
            )
            source = None

        # Trackers of an owner do nothing in keepalived unless they are weight 0 (FAULT).
        if priority == _OWNER:
            for trackers, kind in (
                (track_interfaces, "track_interface"),
                (track_scripts, "track_script"),
            ):
                for tracker in list(trackers):
                    name, weight = (
                        (tracker, 0)
                        if isinstance(tracker, str)
                        else (tracker["name"], tracker.get("weight"))
                    )
                    if weight is None:
                        weight = c.script_weights.get(name, 0)
                    if weight:
                        trackers.remove(tracker)
                        self.note(
                            self.node,
                            f"{kind} {name} (weight {weight}) is left out: an address owner's "
                            "priority never changes, in keepalived as in pyvrrp",
                        )

        # Email --------------------------------------------------------------------------------
        if email is None:
            email = c.global_smtp_alert or None
        if email and not c.email:
            self.note(
                seen.get("smtp_alert", self.node),
                "smtp_alert: no mail server and recipients to send to (see global_defs); not "
                "converted",
            )
            email = None

        # Routes and rules ----------------------------------------------------------------------
        routes = [r for r in (c.route(line, self.family) for line in route_lines) if r is not None]
        rules = [r for r in (c.rule(line, self.family) for line in rule_lines) if r is not None]

        # The table, in node.toml's order ------------------------------------------------------
        table: dict[str, Any] = {"interface": values["interface"], "vrid": values["vrid"]}
        comments = c.comments
        if "state" in values and state is not None:
            table["state"] = state
        if "priority" in values:
            table["priority"] = priority
        elif priority == _OWNER:
            table["priority"] = priority
            comments.key(table, "priority", "state MASTER without priority: the address owner")
        if version is not None:
            table["version"] = version
            if version != keepalived_version:
                comments.key(
                    table,
                    "version",
                    f"--vrrp-version {version}; keepalived speaks {keepalived_version} here",
                )
            elif "version" not in values:
                why = (
                    "vrrp_version in global_defs"
                    if c.vrrp_version != _KEEPALIVED_VERSION
                    else "keepalived's default for IPv4"
                )
                comments.key(table, "version", why)
        if interval is not None:
            table["advert_interval"] = _seconds(interval)
        if not preempt:
            table["preempt"] = False
            comments.key(table, "preempt", "nopreempt")
        if preempt_delay is not None:
            table["preempt_delay"] = preempt_delay
        if auth_pass is not None:
            table["auth_pass"] = auth_pass
        if source is not None:
            table["unicast_source"] = source
        if peers:
            table["unicast_peers"] = peers
            if not check_unicast_src:
                table["unicast_peers_only"] = False
                comments.key(
                    table,
                    "unicast_peers_only",
                    "keepalived accepts any source without check_unicast_src",
                )
        table["addresses"] = [_address_value(a) for a in addresses]
        if excluded:
            table["excluded_addresses"] = [_address_value(a) for a in excluded]
        if track_interfaces:
            table["track_interfaces"] = track_interfaces
        if track_scripts:
            table["track_scripts"] = track_scripts
        if routes:
            table["virtual_routes"] = routes
        if rules:
            table["virtual_rules"] = rules
        for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
            if key in notify:
                table[key] = notify[key]
        # keepalived: `notify_master SCRIPT [USER [GROUP]]` each; pyvrrp: one user and group
        # for an instance's notifications.
        run_as = set(notify_users.values())
        if len(run_as) == 1:
            user_group = run_as.pop()
            if user_group:
                table["notify_user"] = user_group[0]
            if len(user_group) > 1:
                table["notify_group"] = user_group[1]
        elif run_as:
            shown = ", ".join(
                f"{key} as {' '.join(who) or 'script_user'}" for key, who in notify_users.items()
            )
            self.drop(
                self.node,
                f"notify commands run as different users ({shown}); pyvrrp runs an instance's "
                "notifications as one notify_user: none set",
            )
        for keepalived_key, key in (
            ("garp_master_repeat", "garp_repeat"),
            ("garp_master_delay", "garp_delay"),
            ("garp_master_refresh", "garp_refresh"),
        ):
            value = values.get(keepalived_key, c.garp_defaults.get(keepalived_key))
            if value is not None:
                if key == "garp_repeat":
                    if not 1 <= value <= 100 or value != int(value):
                        self.drop(
                            seen.get(keepalived_key, self.node),
                            f"{keepalived_key} {value:g}: pyvrrp sends 1..100 announcements; left "
                            "at 5",
                        )
                        continue
                    value = int(value)
                table[key] = _seconds(value)
        if email:
            table["email"] = True
            comments.key(table, "email", "smtp_alert")

        state_word = f"state {values['state'].upper()}" if "state" in values else "no state"
        comments.table(
            table,
            f"vrrp_instance {self.name} ({self.node.location}): {state_word}, priority {priority}",
        )
        return table

    def add_once(self, items: list[Any], item: Any, line: Node, kind: str) -> None:
        """Append ``item`` unless its name is already there (keepalived ignores repeats)."""
        names = [i if isinstance(i, str) else i["name"] for i in items]
        if (item if isinstance(item, str) else item["name"]) in names:
            self.note(
                line, f"{kind} {line.keyword} is listed twice; the first is kept, as keepalived"
            )
            return
        items.append(item)

    def track(self, line: Node, kind: str) -> Any:
        """A track_interface / track_script line: NAME [weight N [reverse|noreverse]]."""
        name, args = line.keyword, line.args
        weight: int | None = None
        reverse = False
        try:
            if args:
                _check_track_words(line.words)
                weight = self.c._weight(line, args[1])
                reverse = args[2:3] == ("reverse",)
        except _Bad as bad:
            self.drop(line, f"{kind} {name}: {bad}; ignored (as keepalived)")
            return None
        if kind == "track_interface":
            if reverse:
                self.drop(
                    line,
                    f"track_interface {name} weight {weight} reverse: reversed weights are not "
                    "supported; use a script that tests the interface",
                )
                return None
            return name if not weight else {"name": name, "weight": weight}
        if name not in self.c.script_names:
            self.drop(line, f"track_script {name}: no such vrrp_script; ignored (as keepalived)")
            return None
        toml_name = self.c.script_names[name]
        if reverse or (name in self.c.script_reverse and args[2:3] != ("noreverse",)):
            self.drop(
                line,
                f"track_script {name} reverse: reversed weights are not supported; invert the "
                "script's exit status and use the opposite weight",
            )
            return None
        if weight is None:
            return toml_name
        return {"name": toml_name, "weight": weight}
