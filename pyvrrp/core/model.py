"""The model of a node's configuration: what library users import (see docs/configuration.md).

Frozen attrs classes, the :class:`Problem` and :class:`ConfigError` that describe an invalid
configuration, and the constants they use. Reading and validating lives in
:mod:`pyvrrp.core.configparse` (:func:`~pyvrrp.core.configparse.parse_node`); reading files in
:mod:`pyvrrp.configfile`. :mod:`pyvrrp.core.config` re-exports both, and is the import path
users and the rest of pyvrrp use.

The model classes' defaults are keepalived's (docs/keepalived.md); constructing them directly
(as a library user or a test may) does not validate: only ``parse_node`` does. Durations are
exact integer microseconds (``round(seconds * 1e6)``), the advertisement interval is
centiseconds, the unit of the wire (RFC 9568 §5.2.7).
"""

from __future__ import annotations

import enum
import types
from collections.abc import Iterable, Mapping
from ipaddress import (
    IPv4Interface,
    IPv4Network,
    IPv6Interface,
    IPv6Network,
)
from typing import Any, Final, Literal

import attrs

from pyvrrp.core.packet import ChecksumMode, Family, IPAddress
from pyvrrp.core.params import OWNER_PRIORITY
from pyvrrp.core.timers import US_PER_SECOND

IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network

DEFAULT_CONTROL_SOCKET: Final = "/run/pyvrrp.sock"
DEFAULT_STATE_DIR: Final = "/var/lib/pyvrrp"


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


class VrrpVersion(enum.Enum):
    """The VRRP version an instance speaks (the key ``version``: 3, 2 or "2+3").

    V3 is RFC 9568. V2 is RFC 3768, IPv4 only, the interval in whole seconds (keepalived's
    default for IPv4). V2_AND_V3 sends both each interval and accepts both, to migrate a v2
    cluster one node at a time (RFC 9568 §8.4).
    """

    V2 = 2
    V3 = 3
    V2_AND_V3 = "2+3"

    @property
    def speaks_v2(self) -> bool:
        """True when VRRPv2 advertisements are sent and accepted."""
        return self is not VrrpVersion.V3

    @property
    def speaks_v3(self) -> bool:
        """True when VRRPv3 advertisements are sent and accepted."""
        return self is not VrrpVersion.V2

    @property
    def numbers(self) -> frozenset[int]:
        """The version numbers spoken: {3}, {2} or {2, 3} (``RouterParams.versions``)."""
        return frozenset(n for n, spoken in ((2, self.speaks_v2), (3, self.speaks_v3)) if spoken)


LogLevel = Literal["debug", "info", "warning", "error"]


@attrs.frozen
class EmailConfig:
    """The ``[global.email]`` table: where transition e-mails go (keepalived's
    ``notification_email``, ``notification_email_from`` and ``smtp_server``).

    ``host`` is an IP address (IPv6 without brackets) or a host name. ``username`` "" means no
    login; otherwise the password is read from ``password_file`` when sending.
    """

    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    username: str = ""
    password_file: str = ""


@attrs.frozen
class GlobalConfig:
    """The ``[global]`` table. ``router_id`` None means the hostname (the runtime resolves it).

    ``metrics_listen`` is (host, port) with an IPv6 host written without brackets. ``version``
    is the default of IPv4 instances (each instance's resolved version is in
    :attr:`InstanceConfig.version`). ``script_user``/``script_group`` None: not set (scripts
    and notify programs run as the daemon's user unless they name one; see :meth:`run_as`).
    ``script_security`` False accepts scripts run as root that other users may write
    (``pyvrrp check --host`` refuses them otherwise). ``email`` None: no ``[global.email]``.
    """

    router_id: str | None = None
    control_socket: str = DEFAULT_CONTROL_SOCKET
    state_dir: str = DEFAULT_STATE_DIR
    metrics_listen: tuple[str, int] | None = None
    log_format: str = "text"
    version: VrrpVersion = VrrpVersion.V3
    log_level: LogLevel = "info"
    watch_config: bool = False
    script_user: str | None = None
    script_group: str | None = None
    script_security: bool = True
    email: EmailConfig | None = None

    def run_as(self, user: str | None, group: str | None) -> tuple[str | None, str | None]:
        """The (user, group) a script or notify program with its own ``user`` and ``group``
        keys runs as: its own user, with its own group or else that user's primary group;
        without a user of its own, ``script_user`` with its own group or ``script_group``.
        (None, None): as the daemon; a user with group None: the user's primary group."""
        if user is not None:
            return user, group
        return self.script_user, group if group is not None else self.script_group


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
    group: str | None = None

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

    ``initial_state`` is the key ``state`` and is informational: nothing at run time reads
    it, every instance starts in Initialize and becomes master at once only with priority 255
    (RFC 9568 §6.4.1), as in keepalived. Its only effects are at parse time: ``"master"``
    without a priority means priority 255 and makes ``preempt`` False a warning, and
    ``"backup"`` with priority 255 is an error.
    ``accept`` is always True (Accept_Mode False is rejected and nothing reads it yet).
    ``advert_interval_cs`` is centiseconds (a whole
    number of seconds, up to 255 s, when ``version`` speaks VRRPv2). ``version`` is resolved:
    the instance's key, else ``[global] version`` for IPv4, else V3. ``auth_pass`` is the
    VRRPv2 simple password (only with a version that speaks v2). ``unicast_peers_only`` False
    accepts advertisements from routers not in ``unicast_peers``. ``email`` True sends the
    transitions to ``[global.email]``. Validity (a non-empty ``addresses`` of one family, and
    so on) is checked by :func:`parse_node`.
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
    notify_group: str | None = None
    graceful_handover: bool = True
    version: VrrpVersion = VrrpVersion.V3
    auth_pass: str | None = None
    unicast_peers_only: bool = True
    email: bool = False

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
    # What parse_node() accepted but a user should hear about (keepalived's behaviour kept
    # where it differs from what the file says). Derived from the rest, so not compared.
    warnings: tuple[Problem, ...] = attrs.field(default=(), eq=False)


__all__ = [
    "DEFAULT_CONTROL_SOCKET",
    "DEFAULT_STATE_DIR",
    "OWNER_PRIORITY",
    "US_PER_SECOND",
    "AddressConfig",
    "ConfigError",
    "EmailConfig",
    "GlobalConfig",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "InstanceConfig",
    "LogLevel",
    "NodeConfig",
    "NotifyCommand",
    "Problem",
    "RouteConfig",
    "RuleConfig",
    "ScriptConfig",
    "SyncGroupConfig",
    "TrackInterface",
    "TrackScript",
    "VrrpVersion",
]
