"""The daemon's reload (SIGHUP, ``pyvrrp reload``) runs the same validation as ``pyvrrp
check``: a file without instances is rejected and the node keeps what it runs; the warnings
of a valid file are logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from pyvrrp import configfile
from pyvrrp.runtime.control import ReloadRejected
from pyvrrp.runtime.daemon import DaemonControl
from pyvrrp.runtime.watch import ConfigWatcher, FileIdentity, file_content, file_identity

from .cluster import Cluster, clock_held, config, instance

VIP = "1.2.3.58/29"


async def test_reload_with_a_file_without_instances_is_rejected(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    path = tmp_path / "node.toml"
    path.write_text("# a template that rendered empty\n")
    a = await cluster.start("A", config({"vip58": instance(58, 100, VIP)}))
    control = DaemonControl(a.node, str(path))
    with pytest.raises(ReloadRejected) as caught, clock_held():
        await control.reload()
    (line,) = caught.value.problems
    assert line.startswith(f"{path}: instances: missing: no instance is configured")
    assert list(a.node.instances) == ["vip58"]


async def test_reload_logs_the_warnings_of_the_new_file(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", config({"vip58": instance(58, 100, VIP, garp_delay=0)}))
    path = tmp_path / "node.toml"
    path.write_text(
        f'[global]\nstate_dir = "{cluster.state_dir("A")}"\n'
        '[instances.vip58]\ninterface = "eth0.4000"\nvrid = 58\npriority = 100\n'
        f'addresses = ["{VIP}"]\ngarp_delay = 0\nstate = "master"\npreempt = false\n'
    )
    control = DaemonControl(a.node, str(path))
    with caplog.at_level(logging.WARNING, logger="pyvrrp"), clock_held():
        await control.reload()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith(f"reload: {path}: instances.vip58.preempt: warning: false is ignored")
        for m in warnings
    ), warnings
    assert a.node.config.instances["vip58"].preempt is True


async def test_reload_logs_host_problems_as_warnings_and_applies_the_file(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", config({"vip58": instance(58, 100, VIP, garp_delay=0)}))
    path = tmp_path / "node.toml"
    path.write_text(
        f'[global]\nstate_dir = "{cluster.state_dir("A")}"\n'
        '[instances.vip58]\ninterface = "eth0.4000"\nvrid = 58\npriority = 90\n'
        f'addresses = ["{VIP}"]\ngarp_delay = 0\n'
        'track_interfaces = [{ name = "bond7", weight = -10 }]\n'
    )
    control = DaemonControl(a.node, str(path))
    with caplog.at_level(logging.WARNING, logger="pyvrrp"), clock_held():
        await control.reload()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        f"reload: host check: {path}: instances.vip58.track_interfaces[0]: interface bond7 "
        "does not exist on this host (its weight -10 applies as if it were down); create "
        "it, or correct the name (`ip link show` lists the interfaces)"
    ) in warnings
    assert a.node.config.instances["vip58"].priority == 90  # a warning, not a refusal


async def test_watch_config_reloads_a_changed_file_and_leaves_a_broken_one(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    path = tmp_path / "node.toml"

    def write(priority: object) -> None:
        path.write_text(
            f'[global]\nstate_dir = "{cluster.state_dir("A")}"\nwatch_config = true\n'
            '[instances.vip58]\ninterface = "eth0.4000"\nvrid = 58\n'
            f'priority = {priority}\naddresses = ["{VIP}"]\n'
        )

    write(100)
    a = await cluster.start("A", configfile.load(path))
    control = DaemonControl(a.node, str(path))
    loads: list[str] = []

    # The real file, read on trio's thread: a worker thread would let the autojump clock run.
    async def identity(name: str) -> FileIdentity | None:
        return file_identity(name)

    async def content(name: str) -> bytes | None:
        loads.append(name)
        return file_content(name)

    control.watcher = ConfigWatcher(
        str(path),
        control.reload_if_valid,
        enabled=lambda: a.node.config.global_.watch_config,
        identity=identity,
        content=content,
    )
    # at_level restores the logger's level, which each reload sets from log_level.
    with caplog.at_level(logging.ERROR, logger="pyvrrp"):
        async with trio.open_nursery() as nursery:
            await nursery.start(control.watcher.run)
            write(90)
            with clock_held():
                await trio.sleep(1.5)
            assert a.node.config.instances["vip58"].priority == 90
            write(300)  # out of range: rejected, logged, the old one keeps running
            with clock_held():
                await trio.sleep(1.5)
            assert a.node.config.instances["vip58"].priority == 90
            assert any(
                "instances.vip58.priority: 300 is out of range" in m for m in caplog.messages
            )
            reads = len(loads)
            await trio.sleep(10)  # the same broken file is not read, let alone reloaded, again
            assert len(loads) == reads
            assert control.watcher.reloads == 2
            nursery.cancel_scope.cancel()
