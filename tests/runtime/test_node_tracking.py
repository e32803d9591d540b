"""Health tracking through whole nodes, in virtual time: the seed's scripts and interfaces.

Three nodes on one in-memory LAN hold vip58 as the seed does: A 100 (master), C 75, B 50, at a
1 s advertisement interval. Each node has its own FakeProcessRunner, so a check can fail on
one node only. Times are seconds since the cluster started, exact to the microsecond:
A becomes master after Master_Down_Interval(100) = 3.609375 s, then advertises every second.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.timers import US_PER_SECOND as SECOND
from pyvrrp.core.timers import master_down_interval, skew_time
from pyvrrp.testing.fakeprocess import FakeRun

from .cluster import Cluster, config, instance

VIP = "1.2.3.58/29"
EXCLUDED = "2a03:4444:fff0:59:88::58/64"
SEED = {"A": 100, "B": 50, "C": 75}
CHK = "chk_nginx_ingress"
COMMAND = ("curl", "-fsS", "-o", "/dev/null", "http://localhost:80/healthz")

MASTER_DOWN_100 = master_down_interval(100, SECOND) / SECOND  # 3.609375
SKEW_75 = skew_time(75, SECOND) / SECOND  # 0.707031
SKEW_100 = skew_time(100, SECOND) / SECOND  # 0.609375


def seed_config(priority: int, *, weight: int = -60, **extra: Any) -> Any:
    """vip58 tracking the seed's check (interval 2, fall 2, rise 2) and eth0, dummy0."""
    scripts = {
        CHK: {"command": list(COMMAND), "interval": 2.0, "fall": 2, "rise": 2, "weight": weight}
    }
    table = instance(
        58,
        priority,
        VIP,
        excluded=EXCLUDED,
        track_scripts=[CHK],
        track_interfaces=["eth0", "dummy0"],
        **extra,
    )
    return config({"vip58": table}, scripts=scripts)


async def start_seed(cluster: Cluster, **extra: Any) -> None:
    for name, priority in SEED.items():
        await cluster.start(name, seed_config(priority, **extra))


def test_seed_timer_constants() -> None:
    # The exact values the tests below rely on (RFC 9568 §6.1, floored to the microsecond).
    assert (MASTER_DOWN_100, SKEW_75, SKEW_100) == (3.609375, 0.707031, 0.609375)


async def test_failing_check_lowers_priority_at_fall_and_backup_preempts_after_skew(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    await start_seed(cluster)
    a, b, c = (cluster.hosts[n] for n in "ABC")
    await cluster.sleep_until(9)
    assert cluster.masters("vip58") == ["A"]
    # The check fails from its run at t = 10 on; fall = 2: bad at the run at t = 12.
    a.runner.set(COMMAND, FakeRun.fail(7))
    await cluster.sleep_until(11.9)
    status = a.node.status()["instances"]["vip58"]
    assert status["effective_priority"] == 100  # 1/2 failures: nothing yet
    assert cluster.masters("vip58") == ["A"]
    await cluster.sleep_until(12.5)
    status = a.node.status()["instances"]["vip58"]
    assert status["effective_priority"] == 40
    script = status["trackers"][0]
    assert (script["name"], script["state"], script["effect"]) == (CHK, "bad", -60)
    # A advertises 40 at once, not at its next Adver_Timer (12.609375).
    assert [p for t, p in cluster.adverts("A") if 11 < t < 12.5] == [100, 40]
    assert (12.0, 40) in cluster.adverts("A")
    await cluster.sleep_until(15)
    # C (75) preempts after its Skew_Time (fast preemption), B (50) stays backup.
    assert cluster.masters("vip58") == ["C"]
    takeover = c.transitions_of("vip58")[-1]
    assert (cluster.at(takeover.time), takeover.new, takeover.cause) == (
        12 + SKEW_75,
        State.MASTER,
        Cause.PREEMPT,
    )
    assert cluster.changes("A", "vip58")[-1] == (12 + SKEW_75, State.MASTER, State.BACKUP)
    assert a.transitions_of("vip58")[-1].cause is Cause.HIGHER_PRIORITY
    assert c.holds(VIP) and c.holds(EXCLUDED)
    assert not a.holds(VIP) and not a.holds(EXCLUDED)
    assert [t.new for t in b.transitions_of("vip58")] == [State.BACKUP]
    # Recovery at the runs at 20 and 22 (rise = 2): priority 100 again at 22. A preempts
    # when it next hears C (22.707031), after its own Skew_Time.
    await cluster.sleep_until(19)
    a.runner.set(COMMAND, FakeRun.ok())
    await cluster.sleep_until(21.9)
    assert a.node.status()["instances"]["vip58"]["effective_priority"] == 40
    await cluster.sleep_until(29)
    assert a.node.status()["instances"]["vip58"]["effective_priority"] == 100
    assert cluster.masters("vip58") == ["A"]
    back = a.transitions_of("vip58")[-1]
    assert (cluster.at(back.time), back.new, back.cause) == (
        22 + SKEW_75 + SKEW_100,
        State.MASTER,
        Cause.PREEMPT,
    )
    assert cluster.changes("C", "vip58")[-1] == (
        22 + SKEW_75 + SKEW_100,
        State.MASTER,
        State.BACKUP,
    )
    assert a.holds(VIP) and not c.holds(VIP)
    # The check ran on A's fixed 2 s grid throughout.
    starts = [cluster.at(call.started) for call in a.runner.calls_of(COMMAND)]
    assert starts == [float(t) for t in range(0, 29, 2)]


async def test_tracked_interface_down_faults_at_once_and_releases_without_handover(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    await start_seed(cluster)
    a, c = cluster.hosts["A"], cluster.hosts["C"]
    await cluster.sleep_until(10)
    assert a.holds(VIP)
    a.netlink.set_link_up("dummy0", False)
    await trio.testing.wait_all_tasks_blocked()
    assert cluster.at(trio.current_time()) == 10.0
    assert a.state("vip58") is State.FAULT
    fault = a.transitions_of("vip58")[-1]
    assert (cluster.at(fault.time), fault.cause) == (10.0, Cause.FAULT)
    assert "interface dummy0" in fault.reason
    # Priority 0 at once, and the addresses go with it: a fault is no planned handover.
    assert cluster.adverts("A")[-1] == (10.0, 0)
    assert not a.holds(VIP) and not a.holds(EXCLUDED)
    status = a.node.status()["instances"]["vip58"]
    assert status["faults"] == ["interface dummy0"]
    assert status["holding_addresses"] is False
    await cluster.sleep_until(12)
    assert cluster.masters("vip58") == ["C"]
    assert cluster.changes("C", "vip58")[-1] == (10 + SKEW_75, State.BACKUP, State.MASTER)
    assert c.holds(VIP)
    # In FAULT, A stays silent.
    assert cluster.adverts("A")[-1] == (10.0, 0)


async def test_deleted_and_recreated_interface_is_tracked_again(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    await start_seed(cluster)
    a = cluster.hosts["A"]
    await cluster.sleep_until(10)
    a.netlink.delete_link("dummy0")
    await cluster.sleep_until(12)
    a.netlink.add_link("dummy0")
    await cluster.sleep_until(20)
    # Deleted: FAULT; recreated: BACKUP (a full restart), then A preempts C (75) when it
    # hears C's advertisement at 12.707031, after its Skew_Time.
    recovered_master = 12 + SKEW_75 + SKEW_100
    assert cluster.changes("A", "vip58")[2:] == [
        (10.0, State.MASTER, State.FAULT),
        (12.0, State.FAULT, State.BACKUP),
        (recovered_master, State.BACKUP, State.MASTER),
    ]
    assert a.holds(VIP)
    # The new dummy0 (another ifindex) is tracked: bringing it down faults A again.
    a.netlink.set_link_up("dummy0", False)
    await cluster.sleep_until(21)
    assert cluster.changes("A", "vip58")[-1] == (20.0, State.MASTER, State.FAULT)
    assert not a.holds(VIP)
    assert cluster.masters("vip58") == ["C"]


async def test_weight_zero_check_failing_faults_and_recovering_restarts_as_backup(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", seed_config(100, weight=0))
    await cluster.sleep_until(9)
    a.runner.set(COMMAND, FakeRun.fail(2))
    await cluster.sleep_until(11)
    # fall = 2: the runs at 10 and 12 fail; FAULT at 12, priority 0 sent, VIP gone.
    assert a.state("vip58") is State.MASTER
    await cluster.sleep_until(13)
    assert a.state("vip58") is State.FAULT
    assert cluster.changes("A", "vip58")[-1] == (12.0, State.MASTER, State.FAULT)
    assert cluster.adverts("A")[-1] == (12.0, 0)
    assert not a.holds(VIP)
    status = a.node.status()["instances"]["vip58"]
    assert status["faults"] == [f"script {CHK}"]
    assert status["effective_priority"] == 100  # weight 0 never changes the priority
    a.runner.set(COMMAND, FakeRun.ok())
    await cluster.sleep_until(30)
    # Good again at the runs at 14 and 16: BACKUP, then master after a whole
    # Master_Down_Interval since nobody else advertises.
    assert cluster.changes("A", "vip58")[-2:] == [
        (16.0, State.FAULT, State.BACKUP),
        (16 + MASTER_DOWN_100, State.BACKUP, State.MASTER),
    ]
    assert a.holds(VIP)
