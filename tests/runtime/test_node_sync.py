"""Sync groups in a whole node, in virtual time: members fault, recover and move together.

Node A runs vip58 and vip59 in the sync group ``edge`` at priority 100; node C runs both at
75 without a group. Only vip58 tracks the check, with weight -60, which a sync group member
ignores (keepalived's rule): a bad check is a FAULT. Times are seconds since the cluster
started: A is master of both from 3.609375 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.timers import US_PER_SECOND as SECOND
from pyvrrp.core.timers import skew_time
from pyvrrp.runtime.statefile import maintenance_path
from pyvrrp.testing.fakeprocess import FakeRun
from pyvrrp.testing.fakestate import MemoryMaintenanceStore

from .cluster import Cluster, config, instance

VIP58 = "1.2.3.58/29"
VIP59 = "1.2.3.59/29"
CHK = "chk"
COMMAND = ("/usr/local/bin/chk",)
SKEW_75 = skew_time(75, SECOND) / SECOND  # 0.707031
SKEW_100 = skew_time(100, SECOND) / SECOND  # 0.609375


def node_a() -> Any:
    return config(
        {
            "vip58": instance(58, 100, VIP58, track_scripts=[CHK]),
            "vip59": instance(59, 100, VIP59),
        },
        scripts={CHK: {"command": list(COMMAND), "interval": 1.0, "weight": -60}},
        sync_groups={"edge": {"instances": ["vip58", "vip59"]}},
    )


def node_c() -> Any:
    return config({"vip58": instance(58, 75, VIP58), "vip59": instance(59, 75, VIP59)})


async def test_a_tracker_fault_takes_the_whole_group_to_fault_and_back(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", node_a())
    c = await cluster.start("C", node_c())
    await cluster.sleep_until(9.5)
    assert a.node.states() == {"vip58": State.MASTER, "vip59": State.MASTER}
    a.runner.set(COMMAND, FakeRun.fail())
    await trio.testing.wait_all_tasks_blocked()
    await cluster.sleep_until(10)
    await trio.testing.wait_all_tasks_blocked()
    # The check's run at 10 fails: vip58 FAULT (its weight ignored), vip59 follows at
    # once; both send priority 0 and, a failure not being a planned departure, drop
    # their addresses at once.
    assert a.node.states() == {"vip58": State.FAULT, "vip59": State.FAULT}
    [fault58] = [t for t in a.transitions_of("vip58") if t.new is State.FAULT]
    [fault59] = [t for t in a.transitions_of("vip59") if t.new is State.FAULT]
    assert (cluster.at(fault58.time), fault58.cause) == (10.0, Cause.FAULT)
    assert (cluster.at(fault59.time), fault59.cause) == (10.0, Cause.SYNC_GROUP)
    assert fault59.reason == "sync group edge: vip58 in FAULT"
    assert (10.0, 0) in cluster.adverts("A", 58) and (10.0, 0) in cluster.adverts("A", 59)
    assert not a.holds(VIP58) and not a.holds(VIP59)
    status = a.node.status()["instances"]
    assert status["vip58"]["faults"] == [f"script {CHK}"]
    assert status["vip59"]["faults"] == []  # held by its group, not by a tracker
    assert status["vip58"]["effective_priority"] == 100  # the weight does not apply
    await cluster.sleep_until(12)
    for name in ("vip58", "vip59"):
        assert cluster.changes("C", name)[-1] == (10 + SKEW_75, State.BACKUP, State.MASTER)
    assert c.holds(VIP58) and c.holds(VIP59)
    # The check passes again at 20: both members leave FAULT together, then preempt C
    # together when they hear it (20.707031), a Skew_Time later.
    await cluster.sleep_until(19.5)
    assert a.node.states() == {"vip58": State.FAULT, "vip59": State.FAULT}
    a.runner.set(COMMAND, FakeRun.ok())
    await cluster.sleep_until(25)
    for name in ("vip58", "vip59"):
        assert cluster.changes("A", name)[-2:] == [
            (20.0, State.FAULT, State.BACKUP),
            (20 + SKEW_75 + SKEW_100, State.BACKUP, State.MASTER),
        ]
    assert a.holds(VIP58) and a.holds(VIP59)
    assert cluster.masters("vip58") == ["A"] and cluster.masters("vip59") == ["A"]


async def test_maintenance_of_one_member_hands_the_whole_group_over_gracefully(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", node_a())
    c = await cluster.start("C", node_c())
    await cluster.sleep_until(10)
    assert await cluster.set_maintenance("A", True, ["vip58"]) == ["vip58"]
    await trio.testing.wait_all_tasks_blocked()
    assert a.node.states() == {"vip58": State.FAULT, "vip59": State.FAULT}
    assert a.transitions_of("vip59")[-1].cause is Cause.SYNC_GROUP
    # A planned departure: both keep their addresses until C takes over.
    await cluster.sleep_until(10 + SKEW_75 - 0.000001)
    assert a.holds(VIP58) and a.holds(VIP59)
    await cluster.sleep_until(11)
    assert not a.holds(VIP58) and not a.holds(VIP59)
    assert c.holds(VIP58) and c.holds(VIP59)
    # Maintenance off: the group leaves FAULT together.
    assert await cluster.set_maintenance("A", False, ["vip58"]) == ["vip58"]
    await trio.testing.wait_all_tasks_blocked()
    assert a.node.states() == {"vip58": State.BACKUP, "vip59": State.BACKUP}


async def test_restart_with_a_member_in_maintenance_starts_the_whole_group_in_fault(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # vip59 comes first in the file and owns its address (it would be master at Startup):
    # it must know that its group is held in FAULT before it starts, not a moment later.
    state_dir = tmp_path / "A"
    state_dir.mkdir()
    Path(maintenance_path(str(state_dir))).write_text('{"maintenance": ["vip58"]}')
    node_config = config(
        {
            "vip59": instance(59, 255, VIP59, notify=["/bin/notify"]),
            "vip58": instance(58, 100, VIP58),
        },
        sync_groups={"edge": {"instances": ["vip58", "vip59"]}},
    )
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        a = await cluster.start("A", node_config)
        await cluster.sleep_until(10)
        assert cluster.changes("A", "vip58") == [(0.0, State.INITIALIZE, State.FAULT)]
        assert cluster.changes("A", "vip59") == [(0.0, State.INITIALIZE, State.FAULT)]
        assert a.transitions_of("vip59")[0].cause is Cause.SYNC_GROUP
        assert cluster.adverts("A") == []
        assert [op for op, _ in a.netlink.operations if op == "add_address"] == []
        assert [c.command[-2:] for c in a.runner.calls] == [("FAULT", "255")]
        # Maintenance off: the owner takes over at once, vip58 after its down interval.
        await cluster.set_maintenance("A", False)
        await cluster.sleep_until(11)
        assert cluster.changes("A", "vip59")[-1] == (10.0, State.FAULT, State.MASTER)
        assert a.holds(VIP59)
        nursery.cancel_scope.cancel()


async def test_reload_adding_a_member_to_a_group_in_fault_starts_it_in_fault(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    store = MemoryMaintenanceStore()
    alone = config(
        {"vip58": instance(58, 100, VIP58)}, sync_groups={"edge": {"instances": ["vip58"]}}
    )
    grown = config(
        {"vip59": instance(59, 255, VIP59), "vip58": instance(58, 100, VIP58)},
        sync_groups={"edge": {"instances": ["vip58", "vip59"]}},
    )
    a = await cluster.start("A", alone, store=store)
    await cluster.sleep_until(5)
    await a.node.set_maintenance(True, ["vip58"])
    await cluster.sleep_until(10)
    await a.node.reload(grown)
    await cluster.sleep_until(15)
    # The new owner joins a group held in FAULT: it starts there, not as master.
    assert cluster.changes("A", "vip59") == [(10.0, State.INITIALIZE, State.FAULT)]
    assert not a.holds(VIP59)
    assert [t.vrid for t in (s.advert for s in cluster.sent)].count(59) == 0


async def test_reload_removing_the_faulty_member_releases_the_rest_of_the_group(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", node_a(), store=MemoryMaintenanceStore())
    await cluster.sleep_until(5)
    await a.node.set_maintenance(True, ["vip58"])
    await cluster.sleep_until(10)
    assert a.node.states() == {"vip58": State.FAULT, "vip59": State.FAULT}
    await a.node.reload(config({"vip59": instance(59, 100, VIP59)}))
    await cluster.sleep_until(20)
    # vip59 is no longer held: BACKUP at once, master after Master_Down_Interval(100).
    assert cluster.changes("A", "vip59")[-2:] == [
        (10.0, State.FAULT, State.BACKUP),
        (10 + 3.609375, State.BACKUP, State.MASTER),
    ]
