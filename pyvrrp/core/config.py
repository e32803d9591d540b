"""The validated model of a node's configuration (see docs/configuration.md).

File parsing lives in :mod:`pyvrrp.configfile`; every rule about what a valid node is lives
here, so the library, the daemon and ``pyvrrp check`` agree. :func:`parse_node` takes what
``tomllib`` returns and gives a :class:`NodeConfig`, or raises :class:`ConfigError` listing
*every* problem it found, each naming the key path as a user reads it
(``instances.vip58.addresses[1]``), what is wrong and what would be right. It never raises
anything else, whatever it is given.

The model classes are frozen attrs classes. Their defaults are keepalived's (docs/keepalived.md);
constructing them directly (as a library user or a test may) does not validate: only
:func:`parse_node` does. Durations are exact integer microseconds (``round(seconds * 1e6)``),
the advertisement interval is centiseconds, the unit of the wire (RFC 9568 §5.2.7).
"""

from __future__ import annotations

import datetime
import difflib
import enum
import json
import math
import re
import types
from collections.abc import Callable, Collection, Iterable, Mapping
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any, Final, Literal, TypeVar

import attrs

from pyvrrp.core.packet import ChecksumMode, Family

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

US_PER_SECOND: Final = 1_000_000
OWNER_PRIORITY: Final = 255
DEFAULT_CONTROL_SOCKET: Final = "/run/pyvrrp.sock"
DEFAULT_STATE_DIR: Final = "/var/lib/pyvrrp"

_T = TypeVar("_T")
_U = TypeVar("_U")


@attrs.frozen
class Problem:
    """One thing wrong with a configuration: where (a key path) and what (with the fix)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """A configuration is invalid; ``problems`` lists every problem found (at least one)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("a ConfigError needs at least one problem")
        super().__init__("\n".join(str(p) for p in self.problems))


@attrs.frozen
class AddressConfig:
    """A virtual or excluded address, as in ``addresses`` and ``excluded_addresses``.

    ``dev`` None means the instance's interface. ``scope`` is one of "global", "site",
    "link", "host" (None = the kernel's default for the address).
    """

    address: IPInterface
    dev: str | None = None
    label: str | None = None
    scope: str | None = None


@attrs.frozen
class RouteConfig:
    """A route, as in ``virtual_routes`` and ``[[routes]]``. ``to`` "default" is 0/0 or ::/0."""

    to: IPNetwork
    via: IPAddress | None = None
    dev: str | None = None
    table: int | None = None
    metric: int | None = None
    src: IPAddress | None = None
    scope: str | None = None


@attrs.frozen
class RuleConfig:
    """A policy routing rule, as in ``virtual_rules`` and ``[[rules]]`` (key ``from``)."""

    family: int  # 4 or 6, from the networks (or the instance's family when neither is set)
    table: int
    from_: IPNetwork | None = None
    to: IPNetwork | None = None
    priority: int | None = None
    iif: str | None = None
    oif: str | None = None


@attrs.frozen
class GlobalConfig:
    """The ``[global]`` table. ``router_id`` None means the hostname (the runtime resolves it).

    ``metrics_listen`` is (host, port) with an IPv6 host written without brackets.
    """

    router_id: str | None = None
    control_socket: str = DEFAULT_CONTROL_SOCKET
    state_dir: str = DEFAULT_STATE_DIR
    metrics_listen: tuple[str, int] | None = None
    log_format: str = "text"


@attrs.frozen
class ScriptConfig:
    """A health check from ``[scripts.NAME]`` (keepalived's ``vrrp_script``).

    ``command`` is an argv tuple, or a string run through ``/bin/sh -c``. ``weight`` 0 means a
    failure puts the instances tracking it in FAULT. ``timeout_us`` defaults to the interval.
    """

    name: str
    command: tuple[str, ...] | str
    interval_us: int = US_PER_SECOND
    timeout_us: int = attrs.field()
    fall: int = 1
    rise: int = 1
    weight: int = 0
    user: str | None = None

    @timeout_us.default
    def _timeout_defaults_to_interval(self) -> int:
        return self.interval_us


@attrs.frozen
class TrackInterface:
    """A tracked interface; weight 0 means "down is FAULT" (keepalived's bare track_interface)."""

    name: str
    weight: int = 0


@attrs.frozen
class TrackScript:
    """A tracked script; ``weight`` None means the script's own weight."""

    name: str
    weight: int | None = None


NotifyCommand = tuple[str, ...] | str | None


@attrs.frozen
class InstanceConfig:
    """A virtual router from ``[instances.NAME]`` (keepalived's ``vrrp_instance``).

    ``initial_state`` is the key ``state``; ``advert_interval_cs`` is centiseconds. Validity
    (a non-empty ``addresses`` of one family, and so on) is checked by :func:`parse_node`.
    """

    name: str
    interface: str
    vrid: int
    priority: int = 100
    initial_state: Literal["backup", "master"] = "backup"
    advert_interval_cs: int = 100
    preempt: bool = True
    preempt_delay_us: int = 0
    accept: bool = True
    ipv4_checksum: ChecksumMode = ChecksumMode.PSEUDO_HEADER
    unicast_source: IPAddress | None = None
    unicast_peers: tuple[IPAddress, ...] = ()
    addresses: tuple[AddressConfig, ...] = ()
    excluded_addresses: tuple[AddressConfig, ...] = ()
    track_interfaces: tuple[TrackInterface, ...] = ()
    track_scripts: tuple[TrackScript, ...] = ()
    virtual_routes: tuple[RouteConfig, ...] = ()
    virtual_rules: tuple[RuleConfig, ...] = ()
    notify_master: NotifyCommand = None
    notify_backup: NotifyCommand = None
    notify_fault: NotifyCommand = None
    notify_stop: NotifyCommand = None
    notify: NotifyCommand = None
    garp_repeat: int = 5
    garp_delay_us: int = 5 * US_PER_SECOND
    garp_refresh_us: int = 0
    notify_user: str | None = None
    graceful_handover: bool = True

    @property
    def family(self) -> Family:
        """The family of the advertised addresses (they are all of one family)."""
        return Family(self.addresses[0].address.version)

    @property
    def unicast(self) -> bool:
        """True when advertisements go by unicast to ``unicast_peers``."""
        return bool(self.unicast_peers)


@attrs.frozen
class SyncGroupConfig:
    """A ``[sync_groups.NAME]`` table: instances that move between states together."""

    name: str
    instances: tuple[str, ...]


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class NodeConfig:
    """A whole node.toml. The mappings keep the file's order and are read-only views."""

    global_: GlobalConfig = attrs.field(factory=GlobalConfig)
    scripts: Mapping[str, ScriptConfig] = attrs.field(factory=dict, converter=_frozen_mapping)
    instances: Mapping[str, InstanceConfig] = attrs.field(factory=dict, converter=_frozen_mapping)
    routes: tuple[RouteConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    sync_groups: Mapping[str, SyncGroupConfig] = attrs.field(
        factory=dict, converter=_frozen_mapping
    )


# Validation: parse_node() is the entry point; key_path() and summary() are public helpers.


class _Bad(enum.Enum):
    """Marks a value that was present but invalid (its problem is already recorded)."""

    BAD = "bad"


_BAD: Final = _Bad.BAD


class _Invalid(Exception):
    """Raised by the scalar parsers below; the caller records it with the key's path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
IFNAMSIZ: Final = 16  # including the terminating NUL: names are at most 15 bytes
UINT32_MAX: Final = 2**32 - 1
WEIGHT_RANGE: Final = (-253, 253)
SCOPES: Final = ("global", "site", "link", "host")
MAX_SECONDS: Final = 86_400  # a sane upper bound for delays and intervals: one day
UNIX_PATH_MAX: Final = 107  # sun_path is 108 bytes including the NUL


def key_path(path: str, key: str) -> str:
    """The path of ``key`` inside the table at ``path``, quoting keys as TOML would."""
    part = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{part}" if path else part


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return f"a {type(value).__name__}"


def _show(value: object) -> str:
    """A value as the user wrote it in TOML, shortened for a one-line message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # int() -> str() refuses more than 4300 digits; nobody needs to see them all anyway.
        return str(value) if value.bit_length() <= 128 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    return _type_name(value)


def _describe(value: object) -> str:
    """The type and, for scalars, the value: 'an integer (58)', 'an array'."""
    shown = _show(value)
    name = _type_name(value)
    return name if shown == name else f"{name} ({shown})"


def _suggest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = _suggest(word, choices)
    return f"; did you mean {close}?" if close is not None else ""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Ctx:
    """Collects problems as parsing goes on."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path or "(top level)", message))

    def mark(self) -> int:
        return len(self.problems)

    def failed_since(self, mark: int) -> bool:
        return len(self.problems) > mark


# keepalived's names for our keys, so that a migrating user is told what to write instead.
_KEEPALIVED_TOP = {
    "global_defs": "[global]",
    "vrrp_script": "[scripts.NAME]",
    "vrrp_instance": "[instances.NAME]",
    "vrrp_sync_group": "[sync_groups.NAME]",
    "static_routes": "[[routes]]",
    "static_rules": "[[rules]]",
}
_KEEPALIVED_INSTANCE = {
    "virtual_router_id": "vrid",
    "virtual_ipaddress": "addresses",
    "virtual_ipaddress_excluded": "excluded_addresses",
    "advert_int": "advert_interval",
    "nopreempt": "preempt = false",
    "unicast_src_ip": "unicast_source",
    "unicast_peer": "unicast_peers",
    "track_interface": "track_interfaces",
    "track_script": "track_scripts",
    "garp_master_repeat": "garp_repeat",
    "garp_master_delay": "garp_delay",
    "garp_master_refresh": "garp_refresh",
    "virtual_route": "virtual_routes",
    "virtual_rule": "virtual_rules",
}
_KEEPALIVED_SCRIPT = {"script": "command"}
_KEEPALIVED_GLOBAL = {"script_user": "user in each script and notify_user"}
# Keys that have no equivalent, with what to do instead.
_NOT_NEEDED = {"version": "pyvrrp always speaks VRRPv3 (RFC 9568); remove version"}

_TOP_KEYS = ("global", "scripts", "instances", "routes", "rules", "sync_groups")
_GLOBAL_KEYS = ("router_id", "control_socket", "state_dir", "metrics_listen", "log_format")
_SCRIPT_KEYS = ("command", "interval", "timeout", "fall", "rise", "weight", "user")
_NOTIFY_KEYS = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
_INSTANCE_KEYS = (
    "interface",
    "vrid",
    "priority",
    "state",
    "advert_interval",
    "preempt",
    "preempt_delay",
    "accept",
    "ipv4_checksum",
    "unicast_source",
    "unicast_peers",
    "addresses",
    "excluded_addresses",
    "track_interfaces",
    "track_scripts",
    "virtual_routes",
    "virtual_rules",
    *_NOTIFY_KEYS,
    "notify_user",
    "garp_repeat",
    "garp_delay",
    "garp_refresh",
    "graceful_handover",
)
_ADDRESS_KEYS = ("address", "dev", "label", "scope")
_TRACK_KEYS = ("name", "weight")
_ROUTE_KEYS = ("to", "via", "dev", "table", "metric", "src", "scope")
_RULE_KEYS = ("from", "to", "table", "priority", "iif", "oif", "family")
_SYNC_GROUP_KEYS = ("instances",)


class _Table:
    """A TOML table being read: typed getters that record problems under the key's path."""

    def __init__(
        self,
        ctx: _Ctx,
        path: str,
        data: Mapping[Any, object],
        known: Collection[str] | None,
        keepalived: Mapping[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.path = path
        self.data = data
        # Keys that an unknown key was taken for ("did you mean vrid?"): when one is required,
        # "missing: vrid" would only repeat that.
        self.suggested: set[str] = set()
        if known is not None:
            for key in data:
                if not isinstance(key, str):
                    ctx.add(path, f"key {_show(key)} is not a string")
                elif key not in known:
                    ctx.add(key_path(path, key), _unknown_key(key, known, keepalived or {}))
                    close = (keepalived or {}).get(key) or _suggest(key, known)
                    if close is not None:
                        self.suggested.add(close)

    def sub(self, key: str) -> str:
        return key_path(self.path, key)

    def get(self, key: str, parse: Callable[[object], _T], default: _U) -> _T | _U | _Bad:
        """The parsed value; ``default`` when the key is absent; _BAD when invalid (recorded)."""
        if key not in self.data:
            return default
        try:
            return parse(self.data[key])
        except _Invalid as problem:
            self.ctx.add(self.sub(key), problem.message)
            return _BAD

    def require(self, key: str, parse: Callable[[object], _T], what: str) -> _T | _Bad:
        if key not in self.data:
            if key not in self.suggested:
                self.ctx.add(self.sub(key), f"missing: {what}")
            return _BAD
        return self.get(key, parse, _BAD)

    def items(self, key: str) -> list[tuple[str, object]] | _Bad | None:
        """An array's elements with their paths; None when absent."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, list | tuple):
            self.ctx.add(self.sub(key), f"expected an array, got {_describe(value)}")
            return _BAD
        return [(_index(self.sub(key), i), item) for i, item in enumerate(value)]

    def element(self, path: str, value: object, parse: Callable[[object], _T]) -> _T | _Bad:
        try:
            return parse(value)
        except _Invalid as problem:
            self.ctx.add(path, problem.message)
            return _BAD


def _ok(value: _T | _Bad) -> _T:
    """Narrows a value to valid, where the caller knows no problem was recorded for it."""
    if value is _BAD:
        raise AssertionError("a value with a problem was used to build the model")
    return value


def _unknown_key(key: str, known: Collection[str], keepalived: Mapping[str, str]) -> str:
    if key in keepalived:
        return f"unknown key; keepalived's {key} is {keepalived[key]} in pyvrrp"
    if key in _NOT_NEEDED:
        return f"unknown key; {_NOT_NEEDED[key]}"
    close = _suggest(key, known)
    if close is not None:
        return f"unknown key; did you mean {close}?"
    return "unknown key; valid keys here: " + ", ".join(known)


def _table(ctx: _Ctx, path: str, value: object, what: str) -> Mapping[Any, object] | None:
    if isinstance(value, Mapping):
        return value
    ctx.add(path, f"expected a table ({what}), got {_describe(value)}")
    return None


# Scalar parsers: return the value or raise _Invalid with a message naming the fix.


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return value


def _nonempty_string(value: object) -> str:
    text = _string(value)
    if not text.strip():
        raise _Invalid("must not be empty")
    if "\0" in text:
        raise _Invalid(f"{_show(text)} contains a NUL character")
    return text


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        hint = " (write true or false, without quotes)" if value in ("true", "false") else ""
        raise _Invalid(f"expected true or false, got {_describe(value)}{hint}")
    return value


def _integer(low: int, high: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer {low}..{high}, got {_describe(value)}")
        if not low <= value <= high:
            raise _Invalid(f"{_show(value)} is out of range {low}..{high}")
        return value

    return parse


def _number(value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected a number of seconds, got {_describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"{_show(value)} is not a finite number of seconds")
    return value


def _to_us(seconds: float) -> int:
    return round(seconds * US_PER_SECOND)


def _seconds(high: int, *, positive: bool = False) -> Callable[[object], int]:
    """A duration in seconds, 0..high (``positive``: more than 0) -> integer microseconds."""

    def parse(value: object) -> int:
        seconds = _number(value)
        if positive and not 0 < seconds <= high:
            raise _Invalid(
                f"{_show(value)} is out of range: must be more than 0 and at most {high}"
            )
        if not 0 <= seconds <= high:
            raise _Invalid(f"{_show(value)} is out of range 0..{high}")
        us = _to_us(seconds)
        if positive and us == 0:
            raise _Invalid(f"{_show(value)} rounds to 0 microseconds; must be more than 0")
        return us

    return parse


def _advert_interval(value: object) -> int:
    """Seconds -> centiseconds (RFC 9568 §5.2.7: Max Advertise Interval, 12 bits, in cs)."""
    seconds = _number(value)
    if not 0.01 <= seconds <= 40.95:
        raise _Invalid(f"{_show(value)} is out of range 0.01..40.95")
    centis = seconds * 100
    rounded = round(centis)
    if abs(centis - rounded) > 1e-6:
        down, up = math.floor(centis) / 100, math.ceil(centis) / 100
        raise _Invalid(
            f"{_show(value)} is not a multiple of 0.01 s (advertisements carry the interval "
            f"in centiseconds); use {max(down, 0.01):g} or {up:g}"
        )
    return rounded


def _choice(choices: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value: object) -> str:
        spelled = " or ".join(json.dumps(c) for c in choices)
        if not isinstance(value, str):
            raise _Invalid(f"expected {spelled}, got {_describe(value)}")
        if value not in choices:
            lower = value.lower()
            if lower in choices:
                raise _Invalid(f"{_show(value)} is not valid; write {json.dumps(lower)}")
            raise _Invalid(f"{_show(value)} is not valid; expected {spelled}")
        return value

    return parse


def _name(kind: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _string(value)
        if not _NAME.fullmatch(text):
            raise _Invalid(
                f"{_show(text)} is not a valid {kind} name: use 1..64 letters, digits, '_' "
                "or '-', not starting with '-'"
            )
        return text

    return parse


def _interface_name(value: object) -> str:
    """Linux's dev_valid_name(): 1..15 bytes, no '/', ':' or whitespace, not '.' or '..'."""
    text = _string(value)
    rule = "Linux interface names are 1..15 bytes without '/', ':' or whitespace"
    if not text:
        raise _Invalid(f"must not be empty; {rule}")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size >= IFNAMSIZ:
        raise _Invalid(f"{_show(text)} is {size} bytes, too long; {rule}")
    bad = next((c for c in text if c in "/:\0" or c.isspace()), None)
    if bad is not None:
        raise _Invalid(f"{_show(text)} contains {json.dumps(bad)}; {rule}")
    if text in (".", ".."):
        raise _Invalid(f"{_show(text)} is not a valid interface name; {rule}")
    return text


def _no_scope_id(text: str) -> None:
    if "%" in text:
        raise _Invalid(
            f"{_show(text)} has a zone index; write the address without %... "
            "(the interface is given by dev or the instance's interface)"
        )


def _ip(value: object) -> IPAddress:
    text = _string(value)
    _no_scope_id(text)
    try:
        return ip_address(text)
    except ValueError:
        hint = " (no prefix length here)" if "/" in text else ""
        raise _Invalid(f"{_show(text)} is not an IP address{hint}") from None


def _unicast_ip(value: object) -> IPAddress:
    address = _ip(value)
    if address.is_multicast or address.is_unspecified:
        kind = "a multicast" if address.is_multicast else "the unspecified"
        raise _Invalid(f"{_show(value)} is {kind} address; a unicast address is needed here")
    return address


def _vip(value: object) -> IPInterface:
    text = _string(value)
    _no_scope_id(text)
    try:
        address = ip_interface(text)
    except ValueError:
        raise _Invalid(
            f"{_show(text)} is not an IP address with an optional prefix length "
            '(e.g. "1.2.3.58/29" or "2001:db8::58/64")'
        ) from None
    ip = address.ip
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        kind = (
            "a multicast"
            if ip.is_multicast
            else "the unspecified"
            if ip.is_unspecified
            else "a loopback"
        )
        raise _Invalid(f"{_show(text)} is {kind} address; a virtual address must be unicast")
    network = address.network
    # /31 and /32 have no broadcast address (RFC 3021).
    broadcast = network.prefixlen <= 30 and ip == network.broadcast_address
    if isinstance(network, IPv4Network) and broadcast:
        raise _Invalid(
            f"{_show(text)} is the broadcast address of {network}; "
            "use a host address of the network"
        )
    return address


def _network(value: object) -> IPNetwork:
    """A network; host bits set is an error naming the network meant (as the kernel says)."""
    return _parse_network(_string(value), '(e.g. "1.2.3.56/29" or "2001:db8::/64")')


def _route_destination(value: object) -> IPNetwork | Literal["default"]:
    if value == "default":
        return "default"
    return _parse_network(_string(value), '(e.g. "1.2.3.56/29", "2001:db8::/64" or "default")')


def _parse_network(text: str, examples: str) -> IPNetwork:
    _no_scope_id(text)
    try:
        return ip_network(text)
    except ValueError:
        pass
    try:
        loose = ip_network(text, strict=False)
    except ValueError:
        hint = " (omit the key to match any address)" if text in ("all", "any") else ""
        raise _Invalid(f"{_show(text)} is not an IP network {examples}{hint}") from None
    raise _Invalid(f"{_show(text)} has host bits set; did you mean {json.dumps(str(loose))}?")


def _absolute_path(value: object) -> str:
    text = _nonempty_string(value)
    if not text.startswith("/"):
        raise _Invalid(f"{_show(text)} is not an absolute path; write it from / (e.g. /run/...)")
    return text


def _control_socket(value: object) -> str:
    text = _absolute_path(value)
    if len(text.encode("utf-8", "surrogatepass")) > UNIX_PATH_MAX:
        raise _Invalid(
            f"{_show(text)} is longer than the {UNIX_PATH_MAX} bytes a Unix socket path may have"
        )
    return text


def _listen_address(value: object) -> tuple[str, int]:
    text = _string(value)
    form = 'write "HOST:PORT" or "[IPV6]:PORT", e.g. "127.0.0.1:9650" or "[::1]:9650"'
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise _Invalid(f"{_show(text)} is not a listen address; {form}")
        try:
            IPv6Address(host)
        except ValueError:
            raise _Invalid(f"{_show(host)} in {_show(text)} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise _Invalid(f"{_show(text)} is not a listen address; {form}")
        if ":" in host:
            raise _Invalid(f"{_show(text)}: put an IPv6 address in brackets; {form}")
        if not _HOSTNAME.fullmatch(host):
            raise _Invalid(f"{_show(host)} in {_show(text)} is not an IP address or host name")
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 1 <= int(port_text) <= 65535:
        raise _Invalid(f"port {_show(port_text)} in {_show(text)} is not in range 1..65535")
    return host, int(port_text)


def _command(value: object) -> tuple[str, ...] | str:
    """An argv array (run directly) or a string (run through /bin/sh -c)."""
    form = 'write an argv array (["/usr/bin/prog", "arg"]) or a shell command string'
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid(f"the command is empty; {form}")
        if "\0" in value:
            raise _Invalid("the command contains a NUL character")
        return value
    if not isinstance(value, list | tuple):
        raise _Invalid(f"expected a command, got {_describe(value)}; {form}")
    if not value:
        raise _Invalid(f"the command is an empty array; {form}")
    argv: list[str] = []
    for i, arg in enumerate(value):
        if not isinstance(arg, str):
            raise _Invalid(f"argument [{i}] is {_describe(arg)}; every argument must be a string")
        if "\0" in arg:
            raise _Invalid(f"argument [{i}] contains a NUL character")
        argv.append(arg)
    program = argv[0]
    if not program.strip():
        raise _Invalid("the program (argument [0]) is empty")
    if "/" in program and not program.startswith("/"):
        raise _Invalid(
            f"the program {_show(program)} is a relative path, which depends on the daemon's "
            "working directory; use an absolute path or a bare name looked up in PATH"
        )
    return tuple(argv)


def _checksum_mode(value: object) -> ChecksumMode:
    return ChecksumMode(_choice(tuple(m.value for m in ChecksumMode))(value))


def _rule_family(value: object) -> Family:
    choice = _choice(("ipv4", "ipv6"))(value)
    return Family.IPV4 if choice == "ipv4" else Family.IPV6


def _family_name(family: int) -> str:
    return "IPv4" if family == 4 else "IPv6"


# Structured parsers: tables and arrays, recording problems with their own paths.

_WEIGHT = _integer(*WEIGHT_RANGE)
_TABLE_NUMBER = _integer(1, UINT32_MAX)
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
    if ctx.failed_since(mark):
        return _BAD
    return GlobalConfig(
        router_id=_ok(router_id),
        control_socket=_ok(control_socket),
        state_dir=_ok(state_dir),
        metrics_listen=_ok(metrics_listen),
        log_format=_ok(log_format),
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
    user = t.get("user", _nonempty_string, None)
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
    table = t.get("table", _TABLE_NUMBER, None)
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
    table = t.require("table", _TABLE_NUMBER, "the routing table to look up, 1..4294967295")
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


def _parse_instance(
    ctx: _Ctx, path: str, name: str, value: object, scripts: _ScriptsSeen
) -> tuple[InstanceConfig | _Bad, _InstanceDraft]:
    draft = _InstanceDraft(name, path)
    data = _table(ctx, path, value, "an instance with at least interface, vrid and addresses")
    if data is None:
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
    advert_interval = t.get("advert_interval", _advert_interval, 100)
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
    source, peers = _parse_unicast(ctx, t, draft, family)

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
    notify_user = t.get("notify_user", _nonempty_string, None)
    garp_repeat = t.get("garp_repeat", _integer(1, 100), 5)
    garp_delay = t.get("garp_delay", _seconds(MAX_SECONDS), 5 * US_PER_SECOND)
    garp_refresh = t.get("garp_refresh", _seconds(MAX_SECONDS), 0)
    graceful_handover = t.get("graceful_handover", _boolean, True)

    if priority == OWNER_PRIORITY:
        _check_owner(ctx, track_interfaces, track_scripts, scripts, explicit="priority" in data)
    if preempt is False and (priority == OWNER_PRIORITY or state == "master"):
        why = (
            "the address owner (priority 255) always preempts"
            if priority == OWNER_PRIORITY
            else 'keepalived\'s nopreempt only works with state "backup"'
        )
        ctx.add(
            t.sub("preempt"),
            f"false is not allowed here: {why}; remove preempt = false "
            f'or use state = "backup" with a priority below 255',
        )

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
        graceful_handover=_ok(graceful_handover),
    ), draft


def _invalid_name_message(name: str, kind: str) -> str:
    return (
        f"{_show(name)} is not a valid {kind} name: use 1..64 letters, digits, '_' or '-', "
        "not starting with '-'"
    )


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


def parse_node(data: Mapping[str, object]) -> NodeConfig:
    """Validate a parsed node.toml (what ``tomllib`` returns) into a :class:`NodeConfig`.

    Raises :class:`ConfigError` with every problem found; never anything else.
    """
    ctx = _Ctx()
    raw: object = data  # typed as a Mapping, but robust to anything
    if not isinstance(raw, Mapping):
        ctx.add("", f"expected a table at the top level, got {_describe(raw)}")
        raise ConfigError(ctx.problems)
    _Table(ctx, "", data, _TOP_KEYS, _KEEPALIVED_TOP)

    global_: GlobalConfig | _Bad = GlobalConfig()
    if "global" in data:
        global_ = _parse_global(ctx, data["global"])

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
        instance, draft = _parse_instance(ctx, key_path("instances", name), name, body, seen)
        drafts.append(draft)
        if instance is not _BAD:
            instances[name] = instance
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
    )


def summary(node: NodeConfig) -> str:
    """A one-line description: '3 instances (vip58, vip59, vip60), 1 script, 0 sync groups'."""
    names = ", ".join(node.instances)
    instances = _plural(len(node.instances), "instance") + (f" ({names})" if names else "")
    return (
        f"{instances}, {_plural(len(node.scripts), 'script')}, "
        f"{_plural(len(node.sync_groups), 'sync group')}"
    )


__all__ = [
    "AddressConfig",
    "ConfigError",
    "GlobalConfig",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "InstanceConfig",
    "NodeConfig",
    "NotifyCommand",
    "Problem",
    "RouteConfig",
    "RuleConfig",
    "ScriptConfig",
    "SyncGroupConfig",
    "TrackInterface",
    "TrackScript",
    "key_path",
    "parse_node",
    "summary",
]
