"""pyvrrp: a pure-Python VRRP router for Linux: VRRPv3 (RFC 9568) and VRRPv2 (RFC 3768).

Run virtual routers inside a trio program::

    import pyvrrp, trio

    async def main():
        async with pyvrrp.open_node("node.toml") as node:
            await node.wait_state("vip58", pyvrrp.State.MASTER)

    trio.run(main)

The names exported here are the public API (see docs/library.md). The runtime (trio,
pyroute2) is imported only when it is first used, so ``import pyvrrp`` stays light, and scapy
is never imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyvrrp._version import __version__ as __version__
from pyvrrp.configfile import load as load_config
from pyvrrp.core.actions import Cause, State
from pyvrrp.core.config import ConfigError, InstanceConfig, NodeConfig, parse_node

if TYPE_CHECKING:
    from pyvrrp.runtime.errors import EnvironmentProblem
    from pyvrrp.runtime.node import Instance, Node, Transition, open_node

__all__ = [
    "Cause",
    "ConfigError",
    "EnvironmentProblem",
    "Instance",
    "InstanceConfig",
    "Node",
    "NodeConfig",
    "State",
    "Transition",
    "load_config",
    "open_node",
    "parse_node",
]

_LAZY = {
    "EnvironmentProblem": "pyvrrp.runtime.errors",
    "Instance": "pyvrrp.runtime.node",
    "Node": "pyvrrp.runtime.node",
    "Transition": "pyvrrp.runtime.node",
    "open_node": "pyvrrp.runtime.node",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyvrrp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
