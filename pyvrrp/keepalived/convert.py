"""keepalived.conf (as parsed by :mod:`pyvrrp.keepalived.parser`) to node.toml text.

The conversion keeps keepalived's meaning, defaults included (docs/keepalived.md): an IPv4
instance without ``version`` speaks VRRPv2, ``state MASTER`` without a priority is the address
owner (255), ``nopreempt`` on a MASTER or an owner is cleared as keepalived clears it, script
and tracker weights keep keepalived's arithmetic, which pyvrrp shares. What cannot be said
exactly in node.toml is *dropped* and reported (:attr:`ImportResult.dropped`, one line each,
with what to do instead); what converts exactly but deserves a word is a *note*.

The result always passes :func:`pyvrrp.core.config.parse_node` (``pyvrrp check``): the text is
validated before it is returned, and anything pyvrrp would still refuse is removed and
reported as dropped, with pyvrrp's reason.

Why the module is over the project's ~700 lines: it is the one place that maps keepalived's
global and per-instance keywords to node.toml, keyword by keyword; the value parsing, the
advice for what cannot be converted and the instance details already live in
:mod:`pyvrrp.keepalived.values`, :mod:`pyvrrp.keepalived.advice` and
:mod:`pyvrrp.keepalived.instance`.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from pyvrrp.configfile import table_names
from pyvrrp.core.config import NodeConfig
from pyvrrp.keepalived.advice import (
    _GLOBAL_DROPPED,
    _GLOBAL_LVS_PREFIXES,
    _LVS,
    _TOP_DROPPED,
)
from pyvrrp.keepalived.instance import _Instance
from pyvrrp.keepalived.parser import Location, Node, Parsed, parse_file
from pyvrrp.keepalived.render import Comments, render
from pyvrrp.keepalived.validate import (
    _BUILTIN_TABLES,
    NoInstanceLeftError,
    _table_names,
    _validate,
)
from pyvrrp.keepalived.values import (
    _EMAIL,
    _INSTANCE_NAME,
    _KEEPALIVED_VERSION,
    _SMTP_PORT,
    _VALID_NAME,
    _Bad,
    _boolean,
    _integer,
    _number,
    _route_words,
    _rule_words,
    _seconds,
    command_value,
)

__all__ = [
    "ImportResult",
    "NothingToImportError",
    "Report",
    "convert_parsed",
    "import_keepalived",
]


@attrs.frozen
class Report:
    """One line about the import: where in keepalived.conf, and what (with what to do)."""

    location: Location | None
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


@attrs.frozen
class ImportResult:
    """The imported node.toml: its text, its validated model, and what the import reports.

    ``dropped`` lists what could not be expressed exactly (the import is not faithful when it
    is not empty); ``notes`` what converted exactly but deserves a word.
    """

    text: str
    config: NodeConfig
    dropped: tuple[Report, ...]
    notes: tuple[Report, ...]
    files: tuple[str, ...]

    @property
    def faithful(self) -> bool:
        """True when nothing was dropped."""
        return not self.dropped


class NothingToImportError(Exception):
    """No vrrp_instance could be imported, so there is no node.toml to write (pyvrrp needs
    at least one instance). ``dropped`` says what was found instead."""

    def __init__(self, source: str, dropped: tuple[Report, ...]) -> None:
        super().__init__(
            f"{source}: no vrrp_instance could be imported (pyvrrp needs at least one): "
            "nothing to write"
        )
        self.dropped = dropped


class _Converter:
    """Walks the parsed tree once; builds the document, comments and reports."""

    def __init__(self, version_override: int | str | None = None) -> None:
        # --vrrp-version: what IPv4 instances speak instead of keepalived's version.
        self.version_override = version_override
        self.dropped: list[Report] = []
        self.notes: list[Report] = []
        self.comments = Comments()
        self.global_: dict[str, Any] = {}
        self.email: dict[str, Any] = {}
        self.scripts: dict[str, dict[str, Any]] = {}
        self.script_names: dict[str, str] = {}  # keepalived name -> node.toml name
        self.script_weights: dict[str, int] = {}
        self.script_reverse: set[str] = set()
        self.instances: dict[str, dict[str, Any]] = {}
        self.instance_names: dict[str, str] = {}  # keepalived name -> node.toml name
        self.routes: list[dict[str, Any]] = []
        self.rules: list[dict[str, Any]] = []
        self.sync_groups: dict[str, dict[str, Any]] = {}
        self.locations: dict[int, Location] = {}
        # global_defs that instances inherit
        self.vrrp_version = _KEEPALIVED_VERSION
        self.check_unicast_src = False
        self.default_interface: str | None = None
        self.script_security = False  # keepalived's default: scripts others can write still run
        self.global_smtp_alert = False
        self.valid_names: set[str] = set()
        self.garp_defaults: dict[str, int | float] = {}

    # Reporting -------------------------------------------------------------------------

    def drop(self, where: Node | Location | None, message: str) -> None:
        location = where.location if isinstance(where, Node) else where
        self.dropped.append(Report(location, message))

    def note(self, where: Node | Location | None, message: str) -> None:
        location = where.location if isinstance(where, Node) else where
        self.notes.append(Report(location, message))

    def _args(self, node: Node, count: int, what: str) -> tuple[str, ...] | None:
        """The node's first ``count`` arguments, or None after dropping it with why."""
        if len(node.args) < count:
            self.drop(node, f"{node.keyword}: missing {what}; ignored (as keepalived)")
            return None
        return node.args

    # Top level ---------------------------------------------------------------------------

    def run(self, nodes: Iterable[Node]) -> None:
        nodes = list(nodes)
        self.valid_names = {
            node.args[0]
            for node in nodes
            if node.keyword in ("vrrp_script", "vrrp_sync_group")
            and node.args
            and _VALID_NAME.fullmatch(node.args[0])
        }
        # Scripts first: keepalived resolves track_script names after reading everything.
        for node in nodes:
            if node.keyword == "global_defs":
                self.global_defs(node)
            elif node.keyword == "vrrp_script":
                self.vrrp_script(node)
        self.email_settings(next((n for n in nodes if n.keyword == "global_defs"), None))
        for node in nodes:
            keyword = node.keyword
            if keyword in ("global_defs", "vrrp_script"):
                continue
            if keyword == "vrrp_instance":
                self.vrrp_instance(node)
            elif keyword == "vrrp_sync_group":
                continue
            elif keyword == "static_routes":
                for line in node.children or ():
                    route = self.route(line, None)
                    if route is not None:
                        self.routes.append(route)
            elif keyword == "static_rules":
                for line in node.children or ():
                    rule = self.rule(line, None)
                    if rule is not None:
                        self.rules.append(rule)
            elif keyword == "static_ipaddress":
                for line in node.children or ():
                    self.drop(
                        line,
                        f"static_ipaddress {' '.join(line.words)}: pyvrrp does not manage "
                        "static addresses; configure it with the interface "
                        "(/etc/network/interfaces, systemd-networkd)",
                    )
            elif keyword in _TOP_DROPPED:
                name = f" {node.args[0]}" if node.args else ""
                self.drop(node, f"{keyword}{name}: {_TOP_DROPPED[keyword]}")
            else:
                self.drop(node, f"{keyword}: unknown keyword, not converted")
        for node in nodes:
            if node.keyword == "vrrp_sync_group":
                self.vrrp_sync_group(node)
        notifies = any(k.startswith("notify") for t in self.instances.values() for k in t)
        if (self.scripts or notifies) and not self.script_security:
            self.global_["script_security"] = False
            self.comments.key(self.global_, "script_security", "no enable_script_security")
            self.note(
                None,
                "no enable_script_security: keepalived runs scripts that users other than root "
                "can change (and logs a SECURITY VIOLATION); script_security = false keeps "
                "that, remove it once the scripts are safe",
            )
        if (self.scripts or notifies) and "script_user" not in self.global_:
            self.note(
                None,
                "no script_user: keepalived runs scripts as keepalived_script when that user "
                "exists, else as root; pyvrrp runs them as its own user (root) unless [global] "
                "script_user says otherwise",
            )

    # global_defs -------------------------------------------------------------------------

    def global_defs(self, node: Node) -> None:
        for child in node.children or ():
            try:
                self.global_keyword(child)
            except _Bad as bad:
                self.drop(child, f"global_defs {child.keyword}: {bad}; ignored")

    def global_keyword(self, child: Node) -> None:
        key, args = child.keyword, child.args
        if key == "router_id":
            if self._args(child, 1, "the router id") is not None:
                self.global_["router_id"] = args[0]
        elif key == "notification_email":
            self.email["to"] = [w for line in child.children or () for w in line.words]
        elif key == "notification_email_from":
            if self._args(child, 1, "the address") is not None:
                self.email["from"] = args[0]
        elif key == "smtp_server":
            if self._args(child, 1, "the server") is not None:
                host = args[0]
                port = _integer(args[1], "port", 1, 65535) if len(args) > 1 else _SMTP_PORT
                shown = f"[{host}]" if ":" in host else host
                self.email["server"] = f"{shown}:{port}"
        elif key in ("smtp_connect_timeout", "smtp_helo_name"):
            self.note(child, f"{key}: pyvrrp's email sender uses its own; not converted")
        elif key == "script_user":
            if self._args(child, 1, "the user") is not None:
                self.global_["script_user"] = args[0]
                if len(args) > 1:
                    self.global_["script_group"] = args[1]
        elif key == "enable_script_security":
            # pyvrrp's default (script_security = true), keepalived's opt-in.
            self.script_security = True
        elif key == "vrrp_version":
            if self._args(child, 1, "the version") is not None:
                self.vrrp_version = _integer(args[0], "vrrp_version", 2, 3)
        elif key == "vrrp_check_unicast_src":
            self.check_unicast_src = True
        elif key == "vrrp_skip_check_adv_addr":
            self.note(child, f"{key}: pyvrrp does not compare the advertised address lists")
        elif key == "default_interface":
            if self._args(child, 1, "the interface") is not None:
                self.default_interface = args[0]
        elif key in ("smtp_alert", "smtp_alert_vrrp"):
            self.global_smtp_alert = _boolean(args)
        elif key in (
            "vrrp_garp_master_delay",
            "vrrp_garp_master_repeat",
            "vrrp_garp_master_refresh",
        ):
            if self._args(child, 1, "a value") is not None:
                self.garp_defaults[key.removeprefix("vrrp_")] = _number(args[0], key, 0, 86400)
        elif key == "smtp_alert_checker" or key.startswith(_GLOBAL_LVS_PREFIXES):
            self.drop(child, f"global_defs {key}: {_LVS}")
        elif key in _GLOBAL_DROPPED:
            self.drop(child, f"global_defs {key}: {_GLOBAL_DROPPED[key]}")
        else:
            self.drop(child, f"global_defs {key}: not converted (pyvrrp has no equivalent)")

    def email_settings(self, where: Node | None) -> None:
        """Keep [global.email] only when pyvrrp can send with it, as keepalived would."""
        if not self.email:
            return
        if "server" not in self.email:
            self.note(where, "notification_email without smtp_server: keepalived sends no mail")
            self.email = {}
            return
        recipients = []
        for address in self.email.get("to", []):
            if _EMAIL.fullmatch(address):
                recipients.append(address)
            else:
                self.drop(
                    where,
                    f"notification_email {address} is not an e-mail address (user@domain), "
                    "which pyvrrp needs; write the full address",
                )
        self.email["to"] = recipients
        if "from" not in self.email:
            # keepalived's default sender.
            self.email["from"] = f"keepalived@{socket.gethostname()}"
            self.note(
                where, f"notification_email_from is keepalived's default, {self.email['from']}"
            )
        elif not _EMAIL.fullmatch(self.email["from"]):
            self.drop(
                where, f"notification_email_from {self.email['from']} is not an e-mail address"
            )
            recipients.clear()
        if not recipients:
            self.note(where, "no usable notification_email recipient: no mail is sent")
            self.email = {}

    # vrrp_script -------------------------------------------------------------------------

    def vrrp_script(self, node: Node) -> None:
        if not node.args:
            self.drop(node, "vrrp_script without a name: ignored (as keepalived)")
            return
        name = node.args[0]
        script: dict[str, Any] = {}
        command: str | None = None
        for child in node.children or ():
            key, args = child.keyword, child.args
            try:
                if key == "script":
                    if self._args(child, 1, "the command") is not None:
                        command = args[0] if len(args) == 1 else shlex.join(args)
                elif key in ("interval", "timeout"):
                    if self._args(child, 1, "a number of seconds") is not None:
                        script[key] = _seconds(_number(args[0], key, 0.000001, 86400))
                elif key in ("rise", "fall"):
                    if self._args(child, 1, "a count") is not None:
                        script[key] = _integer(args[0], key, 1, 1_000_000)
                elif key == "weight":
                    if self._args(child, 1, "the weight") is not None:
                        script["weight"] = self._weight(child, args[0])
                        if args[1:2] == ("reverse",):
                            self.script_reverse.add(name)
                elif key == "user":
                    if self._args(child, 1, "the user") is not None:
                        script["user"] = args[0]
                        if len(args) > 1:
                            script["group"] = args[1]
                elif key == "init_fail":
                    self.drop(
                        child,
                        f"vrrp_script {name}: init_fail: pyvrrp counts a script as good "
                        "until its first result, which decides at once",
                    )
                else:
                    self.drop(child, f"vrrp_script {name}: {key}: not converted")
            except _Bad as bad:
                self.drop(child, f"vrrp_script {name}: {bad}; ignored")
        if command is None:
            self.drop(node, f"vrrp_script {name} has no script line: ignored (as keepalived)")
            return
        if name in self.script_names:
            self.drop(node, f"vrrp_script {name} is defined twice; the second is ignored")
            return
        value = command_value(command)
        if isinstance(value, str):
            self.note(
                node,
                f"vrrp_script {name}: the command uses shell syntax; pyvrrp runs it with "
                "/bin/sh -c (keepalived 2.x runs scripts without a shell)",
            )
        toml_name = self._name(node, "vrrp_script", name, self.scripts)
        table = {"command": value, **script}
        self.scripts[toml_name] = table
        self.script_names[name] = toml_name
        self.script_weights[name] = script.get("weight", 0)
        self.locations[id(table)] = node.location
        self.comments.table(table, f"vrrp_script {name} ({node.location})")
        if name in self.script_reverse:
            self.drop(
                node,
                f"vrrp_script {name}: weight ... reverse: reversed weights cannot be expressed; "
                "invert the script's exit status and use the opposite weight",
            )
            table.pop("weight", None)
            self.script_weights[name] = 0

    def _weight(self, node: Node, text: str) -> int:
        weight = _integer(text, "weight", -254, 254)
        if abs(weight) == 254:
            self.note(node, f"weight {weight} is {weight // 254 * 253} in keepalived (as here)")
            weight = weight // 254 * 253
        return weight

    def _name(self, node: Node, kind: str, name: str, taken: Mapping[str, object]) -> str:
        """A script or sync group name pyvrrp accepts (letters, digits, _ and -), unique."""
        safe = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "_" for c in name)
        safe = safe[:60] or "unnamed"
        if safe[0] == "-":
            safe = "_" + safe[1:]
        base, number = safe, 2
        # A name already valid as written keeps it; a renamed one steps around it.
        while safe in taken or (safe != name and safe in self.valid_names):
            safe, number = f"{base}_{number}", number + 1
        if safe != name:
            self.note(node, f"{kind} {name} is named {safe} in node.toml (pyvrrp's name rules)")
        return safe

    # vrrp_instance -----------------------------------------------------------------------

    def vrrp_instance(self, node: Node) -> None:
        if not node.args:
            self.drop(node, "vrrp_instance without a name: ignored (as keepalived)")
            return
        name = node.args[0]
        if name in self.instance_names:
            self.drop(node, f"vrrp_instance {name} is defined twice; the second is ignored")
            return
        instance = _Instance(self, node, name)
        table = instance.build()
        if table is None:
            return
        toml_name = name
        if not _INSTANCE_NAME.fullmatch(name):
            safe = "".join(
                c if c.isascii() and (c.isalnum() or c in "_.:@+-") else "_" for c in name
            )
            safe = ("_" + safe if safe[:1] in ("", ".", ":", "@", "+", "-") else safe)[:60]
            toml_name, number = safe, 2
            while toml_name in self.instances:
                toml_name, number = f"{safe}_{number}", number + 1
            message = (
                f"vrrp_instance {name} is named {toml_name} in node.toml (pyvrrp's name rules)"
            )
            if any(key.startswith("notify") for key in table):
                # The generic notify gets the instance name: the scripts see the new one.
                self.drop(node, f"{message}; its notify scripts receive {toml_name}")
            else:
                self.note(node, message)
        self.instance_names[name] = toml_name
        self.instances[toml_name] = table
        self.locations[id(table)] = node.location

    # Addresses, routes and rules ----------------------------------------------------------

    def address(self, line: Node, interface: str | None, what: str) -> dict[str, Any] | None:
        """One virtual_ipaddress line: ``IP[/LEN] [dev X] [label L] [scope S] ...``."""
        words = line.words
        try:
            address = ipaddress.ip_interface(words[0])
        except ValueError:
            self.drop(line, f"{what} {words[0]!r} is not an IP address: ignored")
            return None
        result: dict[str, Any] = {"address": words[0]}
        i = 1
        while i < len(words):
            word = words[i]
            value = words[i + 1] if i + 1 < len(words) else None
            if word in (
                "dev",
                "label",
                "scope",
                "brd",
                "broadcast",
                "preferred_lft",
                "track_group",
            ):
                if value is None:
                    self.drop(line, f"{what} {words[0]}: {word} without a value: ignored")
                    return None
                if word == "dev":
                    result["dev"] = value
                elif word == "label":
                    result["label"] = value
                elif word == "scope":
                    if value in ("global", "site", "link", "host"):
                        result["scope"] = value
                    else:
                        self.drop(line, f"{what} {words[0]}: scope {value} is not supported")
                else:
                    self.drop(
                        line,
                        f"{what} {words[0]}: {word} {value}: not supported; pyvrrp adds the "
                        "address with the kernel's defaults",
                    )
                i += 2
                continue
            if word == "no_track":
                self.note(line, f"{what} {words[0]}: no_track: pyvrrp puts a deleted address back")
            elif word in ("-nodad", "nodad", "home", "noprefixroute", "autojoin", "mngtmpaddr"):
                self.drop(line, f"{what} {words[0]}: {word}: not supported")
            else:
                self.drop(line, f"{what} {words[0]}: unknown option {word}: ignored")
            i += 1
        device = result.get("dev", interface)
        label = result.get("label")
        if label is not None:
            if address.version == 6:
                self.note(line, f"{what} {words[0]}: IPv6 addresses have no labels; dropped it")
                del result["label"]
            elif device is not None and not label.startswith(f"{device}:"):
                self.drop(
                    line,
                    f"{what} {words[0]}: label {label} must start with {device}: (the kernel "
                    "refuses it otherwise); label removed",
                )
                del result["label"]
        if "dev" in result and result["dev"] == interface:
            del result["dev"]
        return result

    def route(self, line: Node, family: int | None) -> dict[str, Any] | None:
        """A virtual_routes / static_routes line, as ip-route(8) words."""
        try:
            route = _route_words(list(line.words))
        except _Bad as bad:
            self.drop(line, f"route {' '.join(line.words)}: {bad}; route not imported")
            return None
        if route["to"] == "default" and "via" not in route and "src" not in route:
            route["to"] = "::/0" if family == 6 else "0.0.0.0/0"
        self.locations[id(route)] = line.location
        return route

    def rule(self, line: Node, family: int | None) -> dict[str, Any] | None:
        """A virtual_rules / static_rules line, as ip-rule(8) words."""
        try:
            rule = _rule_words(list(line.words))
        except _Bad as bad:
            self.drop(line, f"rule {' '.join(line.words)}: {bad}; rule not imported")
            return None
        if "from" not in rule and "to" not in rule and family is None:
            rule["family"] = "ipv4"  # as ip-rule(8) without -6
        self.locations[id(rule)] = line.location
        return rule

    # vrrp_sync_group ---------------------------------------------------------------------

    def vrrp_sync_group(self, node: Node) -> None:
        if not node.args:
            self.drop(node, "vrrp_sync_group without a name: ignored (as keepalived)")
            return
        name = node.args[0]
        members: list[str] = []
        copied: list[tuple[str, Node]] = []
        for child in node.children or ():
            key = child.keyword
            if key == "group":
                for line in child.children or ():
                    for word in line.words:
                        member = self.instance_names.get(word, "")
                        if not member:
                            self.drop(
                                line,
                                f"vrrp_sync_group {name}: no vrrp_instance {word} was "
                                "imported; member ignored",
                            )
                        elif any(member in g["instances"] for g in self.sync_groups.values()):
                            self.drop(
                                line,
                                f"vrrp_sync_group {name}: {word} is already in another "
                                "sync group; ignored",
                            )
                        elif member not in members:
                            members.append(member)
            elif key in ("track_interface", "track_script"):
                copied.extend((key, line) for line in child.children or ())
            elif key.startswith("notify") or key == "smtp_alert":
                self.drop(
                    child,
                    f"vrrp_sync_group {name}: {key}: sync groups have no notifications or "
                    "alerts in pyvrrp; put it on the member instances",
                )
            elif key == "global_tracking":
                self.note(
                    child, "global_tracking: pyvrrp's sync group members always share tracking"
                )
            elif key == "sync_group_tracking_weight":
                self.drop(
                    child,
                    f"vrrp_sync_group {name}: sync_group_tracking_weight: members of a pyvrrp "
                    "sync group ignore weights (any failure is FAULT), keepalived's default",
                )
            elif child.children is None and key in self.instance_names:
                # keepalived 1.x listed the members directly in the block.
                found = [self.instance_names[w] for w in child.words if w in self.instance_names]
                members.extend(m for m in found if m not in members)
                self.note(
                    child, f"vrrp_sync_group {name}: {key} read as a member (write group {{ }})"
                )
            else:
                self.drop(child, f"vrrp_sync_group {name}: {key}: not converted")
        if not members:
            self.drop(node, f"vrrp_sync_group {name} has no imported members: not imported")
            return
        # keepalived applies a group's trackers to every member; members ignore weights, so
        # each becomes a weight-0 (FAULT) tracker of each member.
        for member in members:
            table = self.instances[member]
            for key, line in copied:
                tracker = line.keyword
                if key == "track_interface":
                    self._add_tracker(table, "track_interfaces", tracker, line, name)
                elif tracker in self.script_names:
                    self._add_tracker(
                        table, "track_scripts", self.script_names[tracker], line, name
                    )
                else:
                    self.drop(
                        line,
                        f"vrrp_sync_group {name}: track_script {tracker}: no such vrrp_script; "
                        "ignored",
                    )
        toml_name = self._name(node, "vrrp_sync_group", name, self.sync_groups)
        group = {"instances": members}
        self.sync_groups[toml_name] = group
        self.locations[id(group)] = node.location
        self.comments.table(group, f"vrrp_sync_group {name} ({node.location})")

    def _add_tracker(
        self, table: dict[str, Any], key: str, name: str, line: Node, group: str
    ) -> None:
        trackers = table.setdefault(key, [])
        names = [t if isinstance(t, str) else t["name"] for t in trackers]
        if name not in names:
            trackers.append(name if key == "track_interfaces" else {"name": name, "weight": 0})
            self.note(line, f"vrrp_sync_group {group} tracks {name}: added to its members")

    # The document ------------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        global_ = self.global_  # the same table: its comments are keyed by it
        if self.email:
            order = ("server", "from", "to")
            global_["email"] = {k: self.email[k] for k in order if k in self.email}
        document: dict[str, Any] = {}
        if global_:
            document["global"] = global_
        for key, value in (
            ("scripts", self.scripts),
            ("instances", self.instances),
            ("routes", self.routes),
            ("rules", self.rules),
            ("sync_groups", self.sync_groups),
        ):
            if value:
                document[key] = value
        return document


def convert_parsed(
    parsed: Parsed, source: str, vrrp_version: int | str | None = None
) -> ImportResult:
    """Convert a parsed keepalived configuration; ``source`` names it in the header.

    ``vrrp_version`` (2, 3 or "2+3") replaces the version IPv4 instances get from keepalived
    (``--vrrp-version``: "2+3" for a node that joins a VRRPv2 keepalived cluster during a
    migration, 3 once every node runs pyvrrp).
    """
    if vrrp_version not in (None, 2, 3, "2+3"):
        raise ValueError(f"vrrp_version {vrrp_version!r}: expected 2, 3 or '2+3'")
    converter = _Converter(vrrp_version)
    for skipped in parsed.skipped:
        if skipped.message.startswith("include"):
            converter.note(skipped.location, skipped.message)
        else:
            converter.drop(skipped.location, skipped.message)
    converter.run(parsed.nodes)
    if not converter.instances:
        raise NothingToImportError(source, tuple(converter.dropped))
    document = converter.document()

    def render_text() -> str:
        return render(document, _header(source, parsed.files, converter), converter.comments)

    names = set(_table_names(document))
    known = table_names()
    for name in sorted(names - set(known) - set(_BUILTIN_TABLES)):
        converter.note(
            None,
            f"routing table {name} is not named in this host's rt_tables files; pyvrrp resolves "
            "it on the node that runs it, as ip(8) does: define it there (as the if-up hooks "
            "or keepalived did), e.g. in /etc/iproute2/rt_tables.d/" + f"{name}.conf",
        )
    try:
        text, config = _validate(document, render_text, converter.locations, converter.drop)
    except NoInstanceLeftError:
        raise NothingToImportError(source, tuple(converter.dropped)) from None
    return ImportResult(
        text=text,
        config=config,
        dropped=tuple(converter.dropped),
        notes=tuple(converter.notes),
        files=parsed.files,
    )


def _header(source: str, files: tuple[str, ...], converter: _Converter) -> list[str]:
    lines = [f"node.toml imported from {source} by pyvrrp import-keepalived."]
    if len(files) > 1:
        lines.append("Included files: " + ", ".join(files[1:]))
    lines.append("Check it on the node that runs it: pyvrrp check --host -c node.toml")
    if converter.dropped:
        lines.append("")
        lines.append(
            f"NOT CONVERTED ({len(converter.dropped)}): review each line before using this file."
        )
        lines.extend(f"  {report}" for report in converter.dropped)
    if converter.notes:
        lines.append("")
        lines.append("Notes:")
        lines.extend(f"  {report}" for report in converter.notes)
    return lines


def import_keepalived(
    path: str | os.PathLike[str],
    config_id: str | None = None,
    vrrp_version: int | str | None = None,
) -> ImportResult:
    """Read a keepalived.conf (with its includes) and convert it (``config_id``: keepalived's
    ``-i``; ``vrrp_version``: see :func:`convert_parsed`).

    Raises :class:`~pyvrrp.keepalived.parser.KeepalivedSyntaxError` when it cannot be read,
    :class:`NothingToImportError` when it holds no vrrp_instance pyvrrp can run.
    """
    parsed = parse_file(path, config_id)
    return convert_parsed(parsed, os.fspath(path), vrrp_version)
