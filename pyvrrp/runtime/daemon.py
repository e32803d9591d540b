"""The daemon process: ``pyvrrp -c node.toml``.

Loads the configuration (exit 2 if it is invalid), sets up logging, opens netlink and runs a
:class:`~pyvrrp.runtime.node.Node` on real sockets until SIGTERM or SIGINT. The first signal
stops gracefully: masters send priority 0 and hand their addresses over; a second signal
stops at once. A missing interface, capability or kernel feature exits 3 with what to do.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncIterator

import trio

from pyvrrp import configfile
from pyvrrp.core.config import ConfigError, NodeConfig
from pyvrrp.runtime.announcer import LinkAnnouncements
from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.logs import setup_logging
from pyvrrp.runtime.netlink import NetlinkError, open_netlink
from pyvrrp.runtime.node import Node
from pyvrrp.runtime.transport import open_raw_transport

log = logging.getLogger("pyvrrp")

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 3


def run_daemon(config_path: str | os.PathLike[str]) -> int:
    """Run the daemon in the foreground; returns the process exit status."""
    try:
        config = configfile.load(config_path)
    except ConfigError as exc:
        for line in configfile.problem_lines(config_path, exc):
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(config.global_.log_format)
    for warning in configfile.check_environment(config):
        log.warning("%s", warning)
    failures: list[Exception] = []
    try:
        trio.run(serve, config)
    except* (EnvironmentProblem, NetlinkError) as group:
        failures.extend(_leaves(group))
    for failure in failures:
        log.error("%s", failure)
    return EXIT_ENVIRONMENT if failures else EXIT_OK


def _leaves(group: BaseExceptionGroup[Exception]) -> list[Exception]:
    leaves: list[Exception] = []
    for exc in group.exceptions:
        leaves.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


async def serve(config: NodeConfig) -> None:
    """Run one node on the real network until SIGTERM/SIGINT."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_netlink() as netlink:
            announcements = LinkAnnouncements(netlink)
            node = Node(
                config,
                netlink=netlink,
                transport_factory=open_raw_transport,
                announcements=announcements,
            )
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(node.run)
                    log.info(
                        "pyvrrp started: %s",
                        ", ".join(
                            f"{name} (VRID {i.config.vrid} on {i.config.interface}, "
                            f"priority {i.config.priority})"
                            for name, i in node.instances.items()
                        ),
                    )
                    await _wait_for_stop(signals, node)
                    nursery.cancel_scope.cancel()
            finally:
                announcements.close()
    log.info("pyvrrp stopped")


async def _wait_for_stop(signals: AsyncIterator[int], node: Node) -> None:
    """Wait for a stop signal, stop gracefully; a second signal makes it immediate."""
    signum = await anext(signals)
    log.info("received %s: stopping (send it again to stop at once)", signal.Signals(signum).name)
    async with trio.open_nursery() as nursery:

        async def second_signal() -> None:
            signum = await anext(signals)
            log.info("received %s again: stopping at once", signal.Signals(signum).name)
            await node.stop(immediate=True)

        nursery.start_soon(second_signal)
        await node.stop()
        nursery.cancel_scope.cancel()
