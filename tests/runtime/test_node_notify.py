"""Notifications through whole nodes, in virtual time, on a FakeProcessRunner.

A (100) and C (75) hold vip58; every state change of A runs its scripts, one at a time, in
the order of the changes, with keepalived's arguments. Times are seconds since the cluster
started: A is master from Master_Down_Interval(100) = 3.609375 s.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from pyvrrp.core.actions import State
from pyvrrp.core.timers import US_PER_SECOND as SECOND
from pyvrrp.core.timers import master_down_interval, skew_time
from pyvrrp.runtime.notify import DEFAULT_PATH
from pyvrrp.testing.fakeprocess import FakeProcessRunner, FakeRun

from .cluster import Cluster, config, instance

VIP = "1.2.3.58/29"
EXCLUDED = "2a03:4444:fff0:59:88::58/64"
MASTER_DOWN_100 = master_down_interval(100, SECOND) / SECOND  # 3.609375
SKEW_75 = skew_time(75, SECOND) / SECOND  # 0.707031
SKEW_100 = skew_time(100, SECOND) / SECOND  # 0.609375

ON_MASTER = ("/usr/local/bin/on-master", "vip58")
ON_BACKUP = "systemctl stop haproxy"  # a string: /bin/sh -c, nothing appended
ON_BACKUP_ARGV = ("/bin/sh", "-c", ON_BACKUP, "sh")
ON_FAULT = ("/usr/local/bin/on-fault",)
ON_STOP = ("/usr/local/bin/on-stop", "--now")
NOTIFY = ("/usr/local/bin/vrrp-notify", "--site", "fsn1")


def notify_config(priority: int, **extra: Any) -> Any:
    table = instance(
        58,
        priority,
        VIP,
        excluded=EXCLUDED,
        notify_master=list(ON_MASTER),
        notify_backup=ON_BACKUP,
        notify_fault=list(ON_FAULT),
        notify_stop=list(ON_STOP),
        notify=list(NOTIFY),
        **extra,
    )
    return config({"vip58": table})


def notify_args(state: str, priority: int) -> tuple[str, ...]:
    return (*NOTIFY, "INSTANCE", "vip58", state, str(priority))


def calls(cluster: Cluster, runner: FakeProcessRunner) -> list[tuple[float, Any]]:
    return [(cluster.at(call.started), call.command) for call in runner.calls]


async def test_every_transition_runs_its_script_then_notify_in_order(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", notify_config(100))
    await cluster.start("C", config({"vip58": instance(58, 75, VIP, excluded=EXCLUDED)}))
    await cluster.sleep_until(10)
    await cluster.set_maintenance("A", True)
    await cluster.sleep_until(12)
    await cluster.set_maintenance("A", False)
    await cluster.sleep_until(20)
    await cluster.stop("A")
    back = 12 + SKEW_75 + SKEW_100  # C advertises at 12.707031, A preempts a skew later
    assert calls(cluster, a.runner) == [
        (0.0, ON_BACKUP_ARGV),
        (0.0, notify_args("BACKUP", 100)),
        (MASTER_DOWN_100, ON_MASTER),
        (MASTER_DOWN_100, notify_args("MASTER", 100)),
        (10.0, ON_FAULT),
        (10.0, notify_args("FAULT", 100)),
        (12.0, ON_BACKUP_ARGV),
        (12.0, notify_args("BACKUP", 100)),
        (back, ON_MASTER),
        (back, notify_args("MASTER", 100)),
        (20.0, ON_STOP),
        (20.0, notify_args("STOP", 100)),
    ]
    # The environment says what happened, and nothing of the daemon's leaks in.
    master = a.runner.calls[2]
    assert master.env == {
        "PATH": DEFAULT_PATH,
        "PYVRRP_INSTANCE": "vip58",
        "PYVRRP_STATE": "MASTER",
        "PYVRRP_OLD_STATE": "BACKUP",
        "PYVRRP_PRIORITY": "100",
        "PYVRRP_REASON": "no advertisement for Master_Down_Interval",
        "PYVRRP_CAUSE": "master_down",
        "PYVRRP_VRID": "58",
        "PYVRRP_INTERFACE": "eth0.4000",
        "PYVRRP_ADDRESSES": VIP,
        "PYVRRP_EXCLUDED_ADDRESSES": EXCLUDED,
    }
    assert master.user is None
    causes = [call.env["PYVRRP_CAUSE"] for call in a.runner.calls if call.env]
    assert causes[::2] == [
        "startup",
        "master_down",
        "maintenance",
        "recovered",
        "preempt",
        "shutdown",
    ]
    stop = a.runner.calls[-1]
    assert stop.env is not None
    assert (stop.env["PYVRRP_STATE"], stop.env["PYVRRP_OLD_STATE"]) == ("STOP", "MASTER")
    statistics = a.node.notifier.statistics()["vip58"]
    assert (statistics.queued, statistics.run, statistics.failed, statistics.pending) == (
        12,
        12,
        0,
        0,
    )


async def test_slow_scripts_run_in_order_and_never_hold_up_the_router(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    runner = FakeProcessRunner()
    runner.set(ON_BACKUP_ARGV, FakeRun.ok(duration=5.0))
    runner.set(notify_args("BACKUP", 100), FakeRun.fail(3, duration=0.5))
    runner.set(ON_MASTER, FakeRun.ok(duration=0.5))
    a = await cluster.start("A", notify_config(100), runner=runner)
    await cluster.sleep_until(10)
    # The router became master on time, while the BACKUP script was still running.
    assert cluster.changes("A", "vip58")[-1] == (MASTER_DOWN_100, State.BACKUP, State.MASTER)
    assert cluster.adverts("A")[0] == (MASTER_DOWN_100, 100)
    # One script at a time, in the order of the transitions; a failure does not stop the
    # next one.
    assert [
        (cluster.at(c.started), cluster.at(c.ended or -1), c.command) for c in runner.calls
    ] == [
        (0.0, 5.0, ON_BACKUP_ARGV),
        (5.0, 5.5, notify_args("BACKUP", 100)),
        (5.5, 6.0, ON_MASTER),
        (6.0, 6.0, notify_args("MASTER", 100)),
    ]
    statistics = a.node.notifier.statistics()["vip58"]
    assert (statistics.run, statistics.failed) == (4, 1)
    assert statistics.last_error == (
        "BACKUP: notify /usr/local/bin/vrrp-notify --site fsn1: exit status 3"
    )


async def test_graceful_stop_returns_after_the_takeover_and_the_stop_notifications(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    runner = FakeProcessRunner()
    runner.set(ON_STOP, FakeRun.ok(duration=1.5))
    runner.set(notify_args("STOP", 100), FakeRun.ok(duration=1.5))
    a = await cluster.start("A", notify_config(100), runner=runner)
    c = await cluster.start("C", config({"vip58": instance(58, 75, VIP, excluded=EXCLUDED)}))
    await cluster.sleep_until(10)
    await a.node.stop()
    # Priority 0 at 10; C takes over a Skew_Time later and A releases then; the STOP
    # scripts (1.5 s each, queued at 10) are drained before stop() returns.
    assert cluster.at(trio.current_time()) == 13.0
    assert cluster.adverts("A")[-1] == (10.0, 0)
    assert cluster.changes("C", "vip58")[-1] == (10 + SKEW_75, State.BACKUP, State.MASTER)
    assert cluster.changes("A", "vip58")[-1] == (10.0, State.MASTER, State.INITIALIZE)
    assert not a.holds(VIP) and not a.holds(EXCLUDED) and c.holds(VIP)
    stops = [(cluster.at(x.started), cluster.at(x.ended or -1)) for x in runner.calls[-2:]]
    assert stops == [(10.0, 11.5), (11.5, 13.0)]
    assert not a.node.notifier.busy()
    cluster.crash("A")


async def test_graceful_stop_alone_releases_after_the_release_timeout(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", notify_config(100))
    await cluster.sleep_until(10)
    await a.node.stop()
    # Nobody answers the priority 0: A keeps the addresses for the release timeout,
    # Skew_Time(1) + 2 intervals = 2.996093 s, then removes them and returns.
    assert cluster.at(trio.current_time()) == 10 + (skew_time(1, SECOND) + 2 * SECOND) / SECOND
    assert not a.holds(VIP)
    assert [c.command for c in a.runner.calls[-2:]] == [ON_STOP, notify_args("STOP", 100)]
    cluster.crash("A")
