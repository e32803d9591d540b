"""The configuration of a node: the model and its validation, in one import path.

A facade: the model (frozen attrs classes, :class:`ConfigError`, :class:`Problem`) lives in
:mod:`pyvrrp.core.model`, the validation in :mod:`pyvrrp.core.configparse`. Library users and
the rest of pyvrrp import from here; see docs/configuration.md for the keys and their rules.
"""

from __future__ import annotations

from pyvrrp.core.configparse import key_path, parse_node, summary
from pyvrrp.core.model import (
    DEFAULT_CONTROL_SOCKET,
    DEFAULT_STATE_DIR,
    OWNER_PRIORITY,
    US_PER_SECOND,
    AddressConfig,
    ConfigError,
    EmailConfig,
    GlobalConfig,
    InstanceConfig,
    IPAddress,
    IPInterface,
    IPNetwork,
    LogLevel,
    NodeConfig,
    NotifyCommand,
    Problem,
    RouteConfig,
    RuleConfig,
    ScriptConfig,
    SyncGroupConfig,
    TrackInterface,
    TrackScript,
    VrrpVersion,
)

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
    "key_path",
    "parse_node",
    "summary",
]
