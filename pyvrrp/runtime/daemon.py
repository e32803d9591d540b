"""The daemon process: ``pyvrrp -c node.toml``.

Loads the configuration (exit 2 if it is invalid), sets up logging, takes the control socket
(refusing to run beside another daemon), opens netlink and runs a
:class:`~pyvrrp.runtime.node.Node` on real sockets until SIGTERM or SIGINT. The first signal
stops gracefully: masters send priority 0 and hand their addresses over, then the queued
notifications run; a second signal stops at once. SIGHUP (or ``pyvrrp reload``) re-reads the
configuration; an invalid one is rejected and the old one keeps running. A missing interface,
capability or kernel feature exits 3 with what to do.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any

import attrs
import trio

from pyvrrp import configfile
from pyvrrp.core.config import ConfigError, InstanceConfig, NodeConfig, VrrpVersion
from pyvrrp.runtime import sdnotify
from pyvrrp.runtime.announcer import LinkAnnouncements
from pyvrrp.runtime.control import Access, ReloadRejected, serve_control
from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.events import Subscription
from pyvrrp.runtime.hostcheck import check_host
from pyvrrp.runtime.logs import set_level, setup_logging
from pyvrrp.runtime.mailer import Mailer, MailSettings
from pyvrrp.runtime.netlink import Netlink, NetlinkError, open_netlink
from pyvrrp.runtime.node import Node
from pyvrrp.runtime.status import NodeStatus
from pyvrrp.runtime.transport import open_raw_transport
from pyvrrp.runtime.watch import ConfigWatcher

log = logging.getLogger("pyvrrp")

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_ENVIRONMENT = 3
# Routers wake this much before their deadlines (seconds), making up for trio's sleep being
# rounded up to the millisecond: a takeover leaves on time, not up to ~2 ms late.
TIMER_LEAD = 0.001

# Capability bits (linux/capability.h) the daemon cannot work without: NET_ADMIN for
# addresses, routes and rules (netlink), NET_RAW for the VRRP and announcement sockets.
REQUIRED_CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}


def missing_capabilities(status: str = "/proc/self/status") -> list[str]:
    """The :data:`REQUIRED_CAPABILITIES` this process lacks ([] if ``status`` cannot tell)."""
    try:
        with open(status, encoding="ascii") as lines:
            effective = next(
                int(line.split()[1], 16) for line in lines if line.startswith("CapEff:")
            )
    except (OSError, ValueError, IndexError, StopIteration):
        return []  # no /proc: let the first operation that needs one report it
    return [name for name, bit in REQUIRED_CAPABILITIES.items() if not effective >> bit & 1]


def mail_settings(config: NodeConfig) -> MailSettings | None:
    """The mailer's settings from ``[global.email]`` (None: e-mail alerts are off)."""
    email = config.global_.email
    if email is None:
        return None
    return MailSettings(
        host=email.host,
        port=email.port,
        sender=email.sender,
        recipients=tuple(email.recipients),
        starttls=email.starttls,
        username=email.username or None,
        password_file=email.password_file or None,
    )


def router_id(config: NodeConfig) -> str:
    """``[global] router_id``, else the host's name (as ``pyvrrp status`` says it)."""
    return config.global_.router_id or os.uname().nodename


def _wants_mail(node: Node, instance: str) -> bool:
    # An instance a reload removed is no longer in the configuration: its STOP is not mailed.
    config = node.config.instances.get(instance)
    return config is not None and config.email


def run_daemon(
    config_path: str | os.PathLike[str],
    *,
    log_level: str | None = None,
    log_format: str | None = None,
) -> int:
    """Run the daemon in the foreground; returns the process exit status.

    ``log_level`` and ``log_format`` (the command line's) win over ``[global] log_level`` and
    ``log_format``.
    """
    try:
        config = configfile.load(config_path)
    except ConfigError as exc:
        for line in configfile.problem_lines(config_path, exc):
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(log_format or config.global_.log_format, log_level or config.global_.log_level)
    # Checked before anything runs: without CAP_NET_ADMIN every socket opens and the daemon
    # would elect itself master, then fail to install a single address (a silent black hole).
    missing = missing_capabilities()
    if missing:
        log.error(
            "missing %s: pyvrrp needs CAP_NET_ADMIN (addresses, routes, rules) and CAP_NET_RAW "
            "(VRRP and announcement sockets); run as root, or set "
            "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN in the systemd unit",
            " and ".join(missing),
        )
        return EXIT_ENVIRONMENT
    for line in configfile.warning_lines(config_path, config):
        log.warning("%s", line)
    failures: list[Exception] = []
    try:
        trio.run(partial(serve, config, os.fspath(config_path), log_level=log_level))
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


class DaemonControl:
    """What the control socket asks of the daemon: the node, plus reloading its file.

    ``log_level`` is the command line's (None: ``[global] log_level`` rules, and a reload
    applies its new value).
    """

    def __init__(
        self,
        node: Node,
        config_path: str,
        *,
        mailer: Mailer | None = None,
        log_level: str | None = None,
    ) -> None:
        self.node = node
        self.config_path = config_path
        self.mailer = mailer
        self.log_level = log_level
        self.watcher: ConfigWatcher | None = None
        self._reloading = trio.Lock()

    def status(self) -> NodeStatus:
        return self.node.snapshot()

    async def set_maintenance(self, on: bool, instances: Sequence[str]) -> list[str]:
        return await self.node.set_maintenance(on, list(instances))

    def subscribe_events(self) -> Subscription:
        """The node's transitions and priority changes (``pyvrrp events``)."""
        return self.node.events.subscribe()

    async def reload_if_valid(self) -> bool:
        """:meth:`reload`, for the config watcher: True when applied, False when rejected
        (logged)."""
        try:
            await self.reload()
        except ReloadRejected:
            return False
        return True

    async def reload(self) -> dict[str, Any]:
        """Validate the file first; apply it only if it is valid (else keep the old one)."""
        async with self._reloading:
            try:
                config = await trio.to_thread.run_sync(configfile.load, self.config_path)
            except ConfigError as exc:
                lines = configfile.problem_lines(self.config_path, exc)
                for line in lines:
                    log.error("reload rejected: %s", line)
                raise ReloadRejected(lines) from None
            for line in configfile.warning_lines(self.config_path, config):
                log.warning("reload: %s", line)
            await warn_host(config, self.config_path, self.node.netlink, "reload: ")
            _warn_restart_only(self.node.config, config)
            sdnotify.reloading()
            try:
                result = await self.node.reload(config)
            except EnvironmentProblem as exc:
                log.error("reload rejected: %s", exc)
                raise ReloadRejected([str(exc)]) from None
            finally:
                sdnotify.ready(_describe(self.node))
            self._apply_global(config)
            if self.watcher is not None:
                self.watcher.rebase()  # what the file holds now runs: no second reload
            return {
                "kept": list(result.kept),
                "changed": list(result.changed),
                "added": list(result.added),
                "removed": list(result.removed),
                "summary": result.summary(),
            }

    def _apply_global(self, config: NodeConfig) -> None:
        """What a reload changes at once in ``[global]``: the log level and e-mail."""
        if self.log_level is None:
            set_level(config.global_.log_level)
        if self.mailer is not None:
            self.mailer.settings = mail_settings(config)
            self.mailer.router_id = router_id(config)


async def warn_host(config: NodeConfig, path: str, netlink: Netlink, prefix: str = "") -> None:
    """Log what ``pyvrrp check --host`` would report, as warnings: the daemon runs anyway
    (an interface may appear later), but the log says what will not work."""
    try:
        problems = await check_host(config, netlink)
    except NetlinkError as exc:
        # Only a check: what it could not read, starting or reloading will report.
        log.warning("%shost check: cannot read the interfaces: %s", prefix, exc)
        return
    for line in configfile.problem_lines(path, problems):
        log.warning("%shost check: %s", prefix, line)


def _warn_restart_only(old: NodeConfig, new: NodeConfig) -> None:
    for key in (
        "control_socket",
        "control_group",
        "status_group",
        "state_dir",
        "metrics_listen",
        "log_format",
    ):
        if getattr(old.global_, key) != getattr(new.global_, key):
            log.warning("reload: global.%s changed: it takes effect at the next restart", key)


def _version_note(config: InstanceConfig) -> str:
    """``, VRRPv2`` or ``, VRRPv2+v3`` for the start-up line; nothing for the default v3."""
    return {VrrpVersion.V2: ", VRRPv2", VrrpVersion.V2_AND_V3: ", VRRPv2+v3"}.get(
        config.version, ""
    )


def _describe(node: Node) -> str:
    return ", ".join(f"{name} {i.state.value}" for name, i in node.instances.items())


async def serve(config: NodeConfig, config_path: str = "", *, log_level: str | None = None) -> None:
    """Run one node on the real network until SIGTERM/SIGINT; SIGHUP reloads.

    ``log_level`` is the command line's, which a reload keeps.
    """
    signals_to_catch = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    with trio.open_signal_receiver(*signals_to_catch) as signals:
        async with open_netlink() as netlink:
            await warn_host(config, config_path, netlink)
            announcements = LinkAnnouncements()
            node = Node(
                config,
                netlink=netlink,
                transport_factory=open_raw_transport,
                announcements=announcements,
                timer_lead=TIMER_LEAD,
            )
            mailer = Mailer(
                mail_settings(config),
                router_id=router_id(config),
                wanted=partial(_wants_mail, node),
            )
            node.status_sections["email"] = lambda: attrs.asdict(mailer.statistics())
            control = DaemonControl(node, config_path, mailer=mailer, log_level=log_level)
            try:
                async with trio.open_nursery() as nursery:
                    # The control socket first: a second daemon must fail here, before its
                    # startup cleanup strips the running daemon's addresses.
                    access = Access.of(config.global_.control_group, config.global_.status_group)
                    await nursery.start(
                        functools.partial(
                            serve_control, config.global_.control_socket, control, access=access
                        )
                    )
                    if config.global_.metrics_listen is not None:
                        # Also before the routers: a port in use fails before VRRP starts.
                        from pyvrrp.runtime.metrics import serve_metrics

                        host, port = config.global_.metrics_listen
                        await nursery.start(serve_metrics, host, port, node.snapshot)
                    # Subscribed before the routers start: their first transitions are mailed.
                    await nursery.start(mailer.run, node.subscribe())
                    _freeze_startup_objects()
                    await nursery.start(node.run)
                    control.watcher = ConfigWatcher(
                        config_path,
                        control.reload_if_valid,
                        enabled=lambda: node.config.global_.watch_config,
                    )
                    await nursery.start(control.watcher.run)
                    log.info(
                        "pyvrrp started: %s",
                        ", ".join(
                            f"{name} (VRID {i.config.vrid} on {i.config.interface}, "
                            f"priority {i.config.priority}{_version_note(i.config)})"
                            for name, i in node.instances.items()
                        ),
                    )
                    sdnotify.ready(_describe(node))
                    await _serve_signals(signals, node, control)
                    nursery.cancel_scope.cancel()
            finally:
                announcements.close()
    log.info("pyvrrp stopped")


def _freeze_startup_objects() -> None:
    """Move what startup made (modules, classes, the configuration: ~60,000 objects) out of
    the garbage collector's sight, before any router runs.

    A full collection otherwise walks all of them each time, 100 ms and more at 200 VRIDs
    on the development machine: a stall of the event loop longer than Master_Down_Interval
    at a 0.01 s advert interval. Frozen, a full collection walks only what was made since.

    What startup left behind (the configuration file's parse, the host check, trio's
    search for libpthread) is collected first, and the C heap's free pages go back to the
    kernel: about 1 MB of resident memory at the seed's three instances.
    """
    gc.collect()
    _trim_heap()
    gc.freeze()


def _trim_heap() -> None:
    """glibc's ``malloc_trim(0)``: return the free pages of the C heap (where CPython puts
    objects over 512 bytes and its own tables) to the kernel. Nothing elsewhere (musl)."""
    try:
        import ctypes  # already loaded: trio names its worker threads through it

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # a C library without malloc_trim: its free pages stay in the process


async def _serve_signals(signals: AsyncIterator[int], node: Node, control: DaemonControl) -> None:
    """Reload on SIGHUP; on SIGTERM/SIGINT stop gracefully (a second one: at once)."""
    async for signum in signals:
        if signum != signal.SIGHUP:
            break
        log.info("received SIGHUP: reloading %s", control.config_path)
        with contextlib.suppress(ReloadRejected):  # logged; the old configuration stays
            await control.reload()
    else:
        return
    log.info("received %s: stopping (send it again to stop at once)", signal.Signals(signum).name)
    sdnotify.stopping()
    async with trio.open_nursery() as nursery:

        async def second_signal() -> None:
            async for signum in signals:
                if signum != signal.SIGHUP:
                    log.info("received %s again: stopping at once", signal.Signals(signum).name)
                    await node.stop(immediate=True)
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(second_signal)
        await node.stop()
        if control.mailer is not None:
            await control.mailer.flush()  # the instances' STOP, bounded by STOP_FLUSH
        nursery.cancel_scope.cancel()
