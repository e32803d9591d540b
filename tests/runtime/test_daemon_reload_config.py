"""The daemon's reload (SIGHUP, ``pyvrrp reload``) runs the same validation as ``pyvrrp
check``: a file without instances is rejected and the node keeps what it runs; the warnings
of a valid file are logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from pyvrrp.runtime.control import ReloadRejected
from pyvrrp.runtime.daemon import DaemonControl

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
