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
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import shlex
import socket
import tomllib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from pyvrrp.configfile import table_names
from pyvrrp.core.config import ConfigError, NodeConfig, Problem, key_path, parse_node
from pyvrrp.keepalived.parser import Location, Node, Parsed, parse_file
from pyvrrp.keepalived.render import Comments, render

__all__ = [
    "ImportResult",
    "NothingToImportError",
    "Report",
    "command_value",
    "convert_parsed",
    "import_keepalived",
]

# keepalived's defaults (docs/keepalived.md).
_KEEPALIVED_VERSION = 2
_OWNER = 255
_DEFAULT_PRIORITY = 100
_SMTP_PORT = 25
_AUTH_PASS_MAX = 8  # RFC 3768 §5.3.10: the Authentication Data field is 8 bytes

# Characters that mean a script string relies on a shell (redirections, pipes, expansions).
_SHELL_SYNTAX = frozenset("|&;<>()$`\\\n")

_SNMP = (
    "SNMP is not supported; pyvrrp exports Prometheus metrics (global metrics_listen) and "
    "`pyvrrp status --json`"
)
_LVS = (
    "LVS is outside pyvrrp (it replaces keepalived's VRRP side only); keep running keepalived "
    "for LVS with its VRRP part removed, or manage IPVS with ipvsadm"
)

# Global keywords with their own advice; any other unknown one gets a generic line.
_GLOBAL_DROPPED = {
    "snmp_socket": _SNMP,
    "enable_snmp_vrrp": _SNMP,
    "enable_snmp_keepalived": _SNMP,
    "enable_snmp_checker": _SNMP,
    "enable_snmp_rfc": _SNMP,
    "enable_snmp_rfcv2": _SNMP,
    "enable_snmp_rfcv3": _SNMP,
    "enable_traps": _SNMP,
    "vrrp_strict": (
        "strict mode is not supported (no_accept firewall rules, no unicast, no auth); "
        "pyvrrp applies RFC 9568's receive rules; remove vrrp_strict from the other nodes"
    ),
    "dynamic_interfaces": (
        "pyvrrp tracks interfaces by name: an instance whose interface is missing is in FAULT "
        "until it appears, which is what dynamic_interfaces is for; check this is what you want"
    ),
    "vrrp_mcast_group4": "pyvrrp always uses the RFC's multicast group 224.0.0.18; use "
    "unicast_peers instead",
    "vrrp_mcast_group6": "pyvrrp always uses the RFC's multicast group ff02::12; use "
    "unicast_peers instead",
    "enable_dbus": "D-Bus is not supported; use `pyvrrp status --json` and `pyvrrp events`",
    "vrrp_notify_fifo": "notify FIFOs are not supported; use `pyvrrp events` or notify commands",
    "notify_fifo": "notify FIFOs are not supported; use `pyvrrp events` or notify commands",
    "vrrp_iptables": "pyvrrp installs no firewall rules (accept mode is always on)",
    "vrrp_ipsets": "pyvrrp installs no firewall rules (accept mode is always on)",
    "nftables": "pyvrrp installs no firewall rules (accept mode is always on)",
}
_GLOBAL_LVS_PREFIXES = ("lvs_", "checker_", "lb_")

_TOP_DROPPED = {
    "virtual_server": _LVS,
    "virtual_server_group": _LVS,
    "vrrp_track_file": "file tracking is not supported; use a vrrp_script that tests the file",
    "track_file": "file tracking is not supported; use a vrrp_script that tests the file",
    "vrrp_track_process": (
        "process tracking is not supported; use a script such as pidof or systemctl is-active"
    ),
    "bfd_instance": "BFD is not supported; use a script that checks the peer",
    "linkbeat_interfaces": "pyvrrp watches links through netlink; nothing to configure",
    "garp_group": "GARP groups are not supported; set garp_* per instance",
    "net_namespace": "run pyvrrp itself in the namespace (ip netns exec NAME pyvrrp ...)",
    "static_ipaddress": "",  # handled line by line
}

_INSTANCE_DROPPED = {
    "use_vmac": (
        "VMAC interfaces are not supported: pyvrrp puts the addresses on the interface and "
        "announces them with its own MAC (GARP/NA), which peers and switches learn; remove "
        "use_vmac from the other nodes too, or keep keepalived on this cluster"
    ),
    "vmac_xmit_base": "VMAC interfaces are not supported (see use_vmac)",
    "use_ipvlan": "ipvlan interfaces are not supported; the addresses go on the interface",
    "track_file": "file tracking is not supported; use a vrrp_script that tests the file",
    "track_process": "process tracking is not supported; use a script (pidof, systemctl)",
    "track_bfd": "BFD is not supported; use a script that checks the peer",
    "dont_track_primary": ("pyvrrp always tracks the instance's own interface (down means FAULT)"),
    "no_accept": (
        "accept = false is not supported yet: pyvrrp accepts packets to the virtual "
        "addresses; drop that traffic with your firewall"
    ),
    "strict_mode": "strict mode is not supported; pyvrrp applies RFC 9568's receive rules",
    "lvs_sync_daemon_interface": _LVS,
    "mcast_src_ip": "pyvrrp sends multicast from the interface's primary address",
    "native_ipv6": "the family comes from the first virtual address",
    "notify_master_rx_lower_pri": "not supported; pyvrrp re-announces on its own when it hears a "
    "lower priority",
    "notify_deleted": "not supported; use notify_stop",
    "garp_master_refresh_repeat": "pyvrrp sends one announcement per address per refresh",
    "garp_lower_prio_delay": "pyvrrp re-announces at once when it hears a lower priority",
    "garp_lower_prio_repeat": "pyvrrp re-announces at once when it hears a lower priority",
    "unicast_ttl": "pyvrrp sends with TTL 255 (RFC 9568 §5.1.1.3)",
    "unicast_fault_no_peer": "pyvrrp refuses a unicast instance without peers",
    "kernel_rx_buf_size": "not needed",
    "debug": "use --log-level debug",
}

_INSTANCE_NOTES = {
    "accept": "accept mode is pyvrrp's default",
    "preempt": "preemption is pyvrrp's default",
    "skip_check_adv_addr": "pyvrrp does not compare the advertised address list",
    "unicast_src_ip": "",
}


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


class _Bad(Exception):
    """A value that cannot be converted; the message says why."""


def _number(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _Bad(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise _Bad(f"{what} {text} is out of range {low:g}..{high:g}")
    return value


def _integer(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise _Bad(f"{what} {text!r} is not an integer") from None
    if not low <= value <= high:
        raise _Bad(f"{what} {text} is out of range {low}..{high}")
    return value


def _seconds(value: float) -> int | float:
    """Whole seconds as an integer (readable TOML), else the float."""
    return int(value) if value == int(value) else value


def _state(text: str) -> str:
    state = text.upper()
    if state not in ("MASTER", "BACKUP"):
        raise _Bad(f"state {text} is not MASTER or BACKUP")
    return state.lower()


def _boolean(args: tuple[str, ...]) -> bool:
    """keepalived's optional boolean argument (``smtp_alert``, ``smtp_alert false``)."""
    if not args:
        return True
    word = args[0].lower()
    if word in ("true", "yes", "on", "1"):
        return True
    if word in ("false", "no", "off", "0"):
        return False
    raise _Bad(f"{args[0]!r} is not a boolean (true or false)")


def command_value(text: str) -> list[str] | str:
    """A keepalived script string as node.toml writes it: an argv array when it splits
    cleanly and runs a program, else the string (run with /bin/sh -c)."""
    try:
        argv = shlex.split(text)
    except ValueError:
        return text
    if not argv or any(_SHELL_SYNTAX & set(word) for word in argv):
        return text
    program = argv[0]
    if "/" in program and not program.startswith("/"):
        return text
    return argv


def _network(text: str) -> str:
    """A network as keepalived reads it; a host with a prefix is an error (as the kernel)."""
    if text == "default":
        return text
    try:
        return str(ipaddress.ip_network(text))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _Bad(f"{text!r} is not an IP network") from None
    raise _Bad(f"{text} has host bits set (the kernel refuses it; {loose} is meant?)")


def _table_value(text: str) -> int | str:
    """A routing table: a number, or a name pyvrrp resolves through rt_tables as ip(8) does."""
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= 2**32 - 1:
            raise _Bad(f"table {text} is out of range 1..4294967295")
        return number
    return text


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise _Bad(f"{text!r} is not an IP address") from None


_ROUTE_TYPES = ("blackhole", "unreachable", "prohibit", "throw", "local", "broadcast")
_ROUTE_KEYS = (
    "src", "via", "gw", "dev", "oif", "table", "metric", "priority", "preference", "scope", "to"
)  # fmt: skip
_RULE_KEYS = (
    "from", "to", "table", "lookup", "priority", "preference", "pref", "iif", "iifname", "oif",
    "oifname",
)  # fmt: skip
_SCOPES = ("global", "site", "link", "host")
_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")  # one bare address, as pyvrrp takes
_VALID_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")  # pyvrrp's script/group names
# pyvrrp's instance names: keepalived's usual ones, dots included (1.2.3.58).
_INSTANCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,63}")


def _route_words(words: list[str]) -> dict[str, Any]:
    """ip-route(8) words (``[src IP] DEST [via IP] [dev X] [table T] ...``) -> a route table."""
    if words[0] in _ROUTE_TYPES:
        raise _Bad(f"{words[0]} routes are not supported")
    if words[0] == "unicast":
        words = words[1:]
    route: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("or", "nexthop"):
            raise _Bad("multipath routes are not supported")
        if word not in _ROUTE_KEYS:
            if word != "default" and ("to" in route or word.isalpha()):
                raise _Bad(f"route option {word} is not supported")
            route["to"] = _network(word)
            i += 1
            continue
        if i + 1 >= len(words):
            raise _Bad(f"{word} without a value")
        value = words[i + 1]
        i += 2
        if word == "src":
            route["src"] = str(_ip(value))
        elif word in ("via", "gw"):
            route["via"] = str(_ip(value))
        elif word in ("dev", "oif"):
            route["dev"] = value
        elif word == "table":
            route["table"] = _table_value(value)
        elif word in ("metric", "priority", "preference"):
            route["metric"] = _integer(value, "metric", 0, 2**32 - 1)
        elif word == "scope":
            if value not in _SCOPES:
                raise _Bad(f"scope {value} is not supported")
            route["scope"] = value
        else:
            route["to"] = _network(value)
    if "to" not in route:
        raise _Bad("no destination")
    order = ("to", "via", "src", "dev", "scope", "metric", "table")
    return {key: route[key] for key in order if key in route}


def _rule_words(words: list[str]) -> dict[str, Any]:
    """ip-rule(8) words (``from NET to NET lookup T priority N ...``) -> a rule table."""
    rule: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("blackhole", "prohibit", "unreachable", "goto", "nop", "not"):
            raise _Bad(f"{word} rules are not supported")
        if word not in _RULE_KEYS:
            raise _Bad(f"rule option {word} is not supported")
        if i + 1 >= len(words):
            raise _Bad(f"{word} without a value")
        value = words[i + 1]
        i += 2
        if word in ("from", "to"):
            if value == "default":
                raise _Bad(f"{word} default is not a network")
            if value != "all":
                rule[word] = _network(value)
        elif word in ("table", "lookup"):
            rule["table"] = _table_value(value)
        elif word in ("priority", "preference", "pref"):
            rule["priority"] = _integer(value, "priority", 0, 2**32 - 1)
        else:
            rule[word[:3]] = value
    if "table" not in rule:
        raise _Bad("no table (lookup)")
    order = ("from", "to", "iif", "oif", "priority", "table")
    return {key: rule[key] for key in order if key in rule}


class _Converter:
    """Walks the parsed tree once; builds the document, comments and reports."""

    def __init__(self) -> None:
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
        if (self.scripts or notifies) and "script_user" not in self.global_:
            self.note(
                None,
                "no script_user: keepalived runs scripts as keepalived_script when that user "
                "exists, else as root; pyvrrp runs them as root unless [global] script_user says "
                "otherwise",
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
            self.note(
                child,
                "enable_script_security: pyvrrp does not check who can write the scripts; "
                "keep them and their directories writable by root only",
            )
        elif key == "vrrp_version":
            if self._args(child, 1, "the version") is not None:
                self.vrrp_version = _integer(args[0], "vrrp_version", 2, 3)
        elif key == "vrrp_check_unicast_src":
            self.check_unicast_src = True
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
                            self.drop(
                                child,
                                f"vrrp_script {name}: group {args[1]}: a script runs with "
                                "the user's own group in pyvrrp",
                            )
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
        global_ = dict(self.global_)
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


class _Instance:
    """One vrrp_instance being converted."""

    def __init__(self, converter: _Converter, node: Node, name: str) -> None:
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
        notify_users: set[tuple[str, ...]] = set()
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
                elif key in ("version", "vrrp_version"):
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
                        if len(args) > 1:
                            notify_users.add(tuple(args[1:]))
                elif key in _INSTANCE_DROPPED:
                    self.drop(child, f"{key}: {_INSTANCE_DROPPED[key]}")
                elif key in _INSTANCE_NOTES:
                    if _INSTANCE_NOTES[key]:
                        self.note(child, f"{key}: {_INSTANCE_NOTES[key]}")
                else:
                    self.drop(child, f"{key}: not converted (pyvrrp has no equivalent)")
            except _Bad as bad:
                self.drop(child, f"{bad}; ignored")

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
                    seen.get("version") or seen["vrrp_version"],
                    "VRRPv2 over IPv6 is not supported (RFC 3768 is IPv4 only); imported as "
                    "version 3",
                )
            version = None
        elif version is None:
            version = c.vrrp_version

        interval = values.get("advert_interval")
        if interval is not None:
            if version == 2 and interval != int(interval):
                self.drop(
                    seen["advert_int"],
                    f"advert_int {interval:g} is not whole seconds, which VRRPv2 needs; rounded "
                    f"to {max(1, round(interval))}",
                )
                interval = max(1, round(interval))
            elif version != 2 and round(interval * 100) != interval * 100:
                self.drop(
                    seen["advert_int"],
                    f"advert_int {interval:g} is not a multiple of 0.01 s; rounded to "
                    f"{round(interval * 100) / 100:g}",
                )
                interval = max(0.01, round(interval * 100) / 100)
            if version != 2 and interval > 40.95:
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
            if version != 2:
                self.note(where, "authentication is ignored with VRRPv3, as keepalived does")
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
            if "version" not in values:
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
        users = {user[0] for user in notify_users}
        for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
            if key in notify:
                table[key] = notify[key]
        if len(users) == 1:
            table["notify_user"] = users.pop()
            if any(len(user) > 1 for user in notify_users):
                self.drop(
                    self.node, "notify group: notifications run with the user's own group in pyvrrp"
                )
        elif users:
            self.drop(
                self.node,
                f"notify commands run as different users ({', '.join(sorted(users))}); pyvrrp has "
                "one notify_user per instance: none set",
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


def _check_track_words(words: tuple[str, ...]) -> None:
    """NAME [weight N [reverse|noreverse]]."""
    if words[1] != "weight" or len(words) < 3:
        raise _Bad(f"expected NAME weight N, got {' '.join(words)}")
    if words[3:] not in ((), ("reverse",), ("noreverse",)):
        raise _Bad(f"unknown option {words[3]}")


def _address_value(item: Mapping[str, Any]) -> str | dict[str, Any]:
    fields = {k: v for k, v in item.items() if not k.startswith("_")}
    return fields["address"] if len(fields) == 1 else fields


# Validation: what pyvrrp still refuses is removed, with pyvrrp's reason ------------------


def _walk(value: Any, path: str) -> Iterable[tuple[str, Any, Any]]:
    """(path, container, key) for every value under ``value``, paths as pyvrrp writes them."""
    if isinstance(value, dict):
        for key, item in value.items():
            sub = key_path(path, key)
            yield sub, value, key
            yield from _walk(item, sub)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            sub = f"{path}[{i}]"
            yield sub, value, i
            yield from _walk(item, sub)


_BUILTIN_TABLES = ("main", "local", "default")  # ip(8) knows these without rt_tables
_STANDIN_TABLE = 2**32 - 1


def _table_names(document: Mapping[str, Any]) -> Iterable[str]:
    """The routing table names (not numbers) the document's routes and rules use."""
    items = [*document.get("routes", []), *document.get("rules", [])]
    for instance in document.get("instances", {}).values():
        items += [*instance.get("virtual_routes", []), *instance.get("virtual_rules", [])]
    return [item["table"] for item in items if isinstance(item.get("table"), str)]


def _under(problem: str, path: str) -> bool:
    return problem == path or problem.startswith((path + ".", path + "["))


def _validate(
    document: dict[str, Any],
    render_text: Callable[[], str],
    locations: Mapping[int, Location],
    drop: Callable[[Location | None, str], None],
) -> tuple[str, NodeConfig]:
    """Render and validate; remove what pyvrrp refuses until it passes. -> (text, model).

    Routing table names are the node's business (its rt_tables files): here any name is
    taken as known, so that the structure is checked wherever the import runs.
    """
    names = sorted({t for t in _table_names(document) if t not in _BUILTIN_TABLES})
    # Stand-in numbers for the check only; the file keeps the names.
    standins = {name: _STANDIN_TABLE - i for i, name in enumerate(names)}
    for _ in range(10_000):
        text = render_text()
        try:
            return text, parse_node(tomllib.loads(text), table_names=standins)
        except ConfigError as error:
            problems: tuple[Problem, ...] = error.problems
        entries = list(_walk(document, ""))
        removals: dict[int, tuple[Any, list[Any]]] = {}
        for problem in problems:
            matches = [e for e in entries if _under(problem.path, e[0])]
            if not matches:
                # A problem about the whole file: nothing more specific to remove.
                matches = [e for e in entries if "." not in e[0] and "[" not in e[0]]
            path, container, key = max(matches, key=lambda e: len(e[0]))
            where = _nearest_location(document, path, locations)
            drop(where, f"{path}: pyvrrp refuses it: {problem.message}; removed")
            removals.setdefault(id(container), (container, []))[1].append(key)
        for container, keys in removals.values():
            if isinstance(container, list):
                for index in sorted(set(keys), reverse=True):
                    del container[index]
            else:
                for key in set(keys):
                    container.pop(key, None)
        # Empty tables and arrays left behind would only produce more problems.
        for name in [k for k, v in document.items() if not v]:
            del document[name]
    raise AssertionError("validation did not converge")  # pragma: no cover


def _nearest_location(
    document: Any, path: str, locations: Mapping[int, Location]
) -> Location | None:
    best: Location | None = None
    for sub, container, key in _walk(document, ""):
        if _under(path, sub):
            value = container[key]
            if id(value) in locations:
                best = locations[id(value)]
    return best


def convert_parsed(parsed: Parsed, source: str) -> ImportResult:
    """Convert a parsed keepalived configuration; ``source`` names it in the header."""
    converter = _Converter()
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
    text, config = _validate(document, render_text, converter.locations, converter.drop)
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
    lines.append("Check it with: pyvrrp check -c node.toml")
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


def import_keepalived(path: str | os.PathLike[str], config_id: str | None = None) -> ImportResult:
    """Read a keepalived.conf (with its includes) and convert it.

    Raises :class:`~pyvrrp.keepalived.parser.KeepalivedSyntaxError` when it cannot be read,
    :class:`NothingToImportError` when it holds no vrrp_instance pyvrrp can run.
    """
    parsed = parse_file(path, config_id)
    return convert_parsed(parsed, os.fspath(path))
