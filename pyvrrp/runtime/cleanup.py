"""``pyvrrp cleanup``: remove what a killed daemon left behind.

A daemon stopped with SIGKILL (or by a crash, or the OOM killer) cannot remove its
addresses, routes and rules; systemd runs ``pyvrrp cleanup -c node.toml`` as ExecStopPost so
the host never keeps a VIP its daemon no longer defends. The daemon does the same at startup
for what it would own only as master, so cleanup is a belt to those braces.
"""

from __future__ import annotations

import sys

import trio

from pyvrrp.core.config import NodeConfig
from pyvrrp.runtime.holdings import Holdings, Item, remove_items
from pyvrrp.runtime.netlink import Netlink, NetlinkError, describe_item


async def cleanup(config: NodeConfig, netlink: Netlink) -> tuple[list[str], list[str]]:
    """Remove every address, route and rule the configuration can install, in one request.

    Returns (what was removed, problems), one line each. Objects that are absent, or whose
    interface does not exist, are skipped silently: cleanup is idempotent.
    """
    labelled: list[tuple[str, Item]] = []
    for instance in config.instances.values():
        items = Holdings.of(instance).removal_order()
        labelled += [(f"{instance.name}: ", item) for item in items]
    labelled += [("", rule) for rule in reversed(config.rules)]
    labelled += [("", route) for route in reversed(config.routes)]
    results = await remove_items(netlink, [item for _, item in labelled])
    removed: list[str] = []
    problems: list[str] = []
    for (label, item), result in zip(labelled, results, strict=True):
        what = label + describe_item(item)
        if isinstance(result, NetlinkError):
            problems.append(f"cannot remove {what}: {result}")
        elif result:
            removed.append(what)
    return removed, problems


def run_cleanup(config_path: str) -> int:
    """``pyvrrp cleanup -c FILE``: 0 done, 1 a daemon is running, 2 bad config, 3 netlink."""
    from pyvrrp import configfile
    from pyvrrp.core.config import ConfigError
    from pyvrrp.runtime.control import ControlError, request
    from pyvrrp.runtime.netlink import open_netlink

    try:
        config = configfile.load(config_path)
    except ConfigError as exc:
        for line in configfile.problem_lines(config_path, exc):
            print(line, file=sys.stderr)
        return 2
    socket_path = config.global_.control_socket
    try:
        response = request(socket_path, {"command": "status"}, timeout=2.0)
    except ControlError:
        response = None
    if response is not None:
        pid = response.get("result", {}).get("pid", "?") if response.get("ok") else "?"
        print(
            f"pyvrrp is running (pid {pid}, control socket {socket_path}): it owns these "
            "addresses; stop it first",
            file=sys.stderr,
        )
        return 1

    async def main() -> tuple[list[str], list[str]]:
        async with open_netlink() as netlink:
            return await cleanup(config, netlink)

    try:
        removed, problems = trio.run(main)
    except NetlinkError as exc:
        print(f"pyvrrp cleanup: {exc}", file=sys.stderr)
        return 3
    for line in removed:
        print(f"removed {line}")
    for line in problems:
        print(line, file=sys.stderr)
    if not removed and not problems:
        print("nothing to clean up")
    return 3 if problems else 0
