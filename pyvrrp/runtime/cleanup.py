"""``pyvrrp cleanup``: remove what a killed daemon left behind.

A daemon stopped with SIGKILL (or by a crash, or the OOM killer) cannot remove its
addresses, routes and rules; systemd runs ``pyvrrp cleanup -c node.toml`` as ExecStopPost so
the host never keeps a VIP its daemon no longer defends. The daemon does the same at startup
for what it would own only as master, so cleanup is a belt to those braces.
"""

from __future__ import annotations

from collections.abc import Awaitable

from pyvrrp.core.config import NodeConfig
from pyvrrp.runtime.netlink import (
    AddressSpec,
    Netlink,
    NetlinkError,
    describe_address,
    describe_route,
    describe_rule,
)


async def cleanup(config: NodeConfig, netlink: Netlink) -> tuple[list[str], list[str]]:
    """Remove every address, route and rule the configuration can install.

    Returns (what was removed, problems), one line each. Objects that are absent, or whose
    interface does not exist, are skipped silently: cleanup is idempotent.
    """
    removed: list[str] = []
    problems: list[str] = []

    async def attempt(description: str, operation: Awaitable[bool]) -> None:
        try:
            if await operation:
                removed.append(description)
        except NetlinkError as exc:
            problems.append(f"cannot remove {description}: {exc}")

    for instance in config.instances.values():
        for rule in reversed(instance.virtual_rules):
            await attempt(f"{instance.name}: {describe_rule(rule)}", netlink.remove_rule(rule))
        for route in reversed(instance.virtual_routes):
            await attempt(f"{instance.name}: {describe_route(route)}", netlink.remove_route(route))
        for address in (*instance.excluded_addresses, *instance.addresses):
            spec = AddressSpec.from_config(address, instance.interface)
            if await netlink.link(spec.dev) is None:
                continue
            await attempt(
                f"{instance.name}: {describe_address(spec)}", netlink.remove_address(spec)
            )
    for rule in reversed(config.rules):
        await attempt(describe_rule(rule), netlink.remove_rule(rule))
    for route in reversed(config.routes):
        await attempt(describe_route(route), netlink.remove_route(route))
    return removed, problems
