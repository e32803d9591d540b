"""A node's transition history and its events stream, in virtual time on a cluster.

As in the seed: A 100, C 75 on vip58 at a 1 s interval; A's health check has weight -60.
A becomes master after Master_Down_Interval(100) = 3.609375 s.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import State
from pyvrrp.runtime.control import ControlHandler
from pyvrrp.runtime.daemon import DaemonControl
from pyvrrp.runtime.history import MemoryHistoryStore
from pyvrrp.testing.fakeprocess import FakeRun

from .cluster import Cluster, config, instance

VIP = "1.2.3.58/29"
CHK = "chk"
COMMAND = ("/usr/local/bin/chk",)


def with_check(priority: int, **extra: Any) -> Any:
    scripts = {CHK: {"command": list(COMMAND), "interval": 1.0, "weight": -60}}
    return config(
        {"vip58": instance(58, priority, VIP, track_scripts=[CHK], **extra)}, scripts=scripts
    )


def moves(entries: list[dict[str, Any]]) -> list[tuple[str, str, str, int]]:
    return [(e["from"], e["to"], e["cause"], e["priority"]) for e in entries]


async def test_history_is_kept_across_a_restart_and_shown_by_status(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    store = MemoryHistoryStore()
    a = await cluster.start("A", with_check(100), history_store=store)
    await cluster.start("C", with_check(75))
    await cluster.sleep_until(5)
    a.runner.set(COMMAND, FakeRun.fail())
    await cluster.sleep_until(8)
    expected = [
        ("INIT", "BACKUP", "startup", 100),
        ("BACKUP", "MASTER", "master_down", 100),
        ("MASTER", "BACKUP", "higher_priority", 40),
    ]
    status = a.node.status()["instances"]["vip58"]
    assert moves(status["history"]) == expected
    assert status["history"][2]["reason"] == "192.168.200.3 advertises priority 75 (ours 40)"
    # Saved as it happens, not only at the stop: a crash keeps it.
    assert moves([e.to_json() for e in store.saved["vip58"]]) == expected
    cluster.crash("A")
    a = await cluster.start("A", with_check(100), history_store=store)
    await cluster.sleep_until(10)
    history = a.node.status()["instances"]["vip58"]["history"]
    # A crash records nothing; the new run's check is healthy: it preempts C again.
    assert moves(history) == [
        *expected,
        ("INIT", "BACKUP", "startup", 100),
        ("BACKUP", "MASTER", "preempt", 100),
    ]
    times = [entry["time"] for entry in history]
    assert times == sorted(times)


async def test_history_follows_an_instance_renamed_by_a_reload_and_forgets_removed_ones(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    two = {"vip58": instance(58, 100, VIP), "vip59": instance(59, 100, "1.2.3.59/29")}
    a = await cluster.start("A", config(two))
    await cluster.sleep_until(5)
    # vip58 renamed (same VRID and interface: the same router), vip59 removed.
    await cluster.reload("A", config({"web": instance(58, 100, VIP)}))
    await cluster.sleep_until(8)
    status = a.node.status()["instances"]
    assert moves(status["web"]["history"]) == [
        ("INIT", "BACKUP", "startup", 100),
        ("BACKUP", "MASTER", "master_down", 100),
    ]
    assert set(a.node.history.store.saved) == {"web"}  # type: ignore[attr-defined]


async def test_events_carry_transitions_and_priority_changes_with_their_reasons(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    a = await cluster.start("A", with_check(100))
    control: ControlHandler = DaemonControl(a.node, "/etc/pyvrrp/node.toml")
    subscription = control.subscribe_events()
    await cluster.start("C", with_check(75))
    await cluster.sleep_until(5)
    a.runner.set(COMMAND, FakeRun.fail())
    await cluster.sleep_until(8)
    a.runner.set(COMMAND, FakeRun.ok())
    await cluster.sleep_until(12)
    events = []
    while True:
        try:
            events.append(subscription.receive.receive_nowait())
        except trio.WouldBlock:
            break
    for event in events:
        assert event["time"] > 0 and event["instance"] == "vip58" and event["vrid"] == 58
        assert event["interface"] == "eth0.4000"
    summary = [(e["type"], e["from"], e["to"], e.get("cause"), e["reason"]) for e in events]
    assert summary == [
        (
            "transition",
            "BACKUP",
            "MASTER",
            "master_down",
            "no advertisement for Master_Down_Interval",
        ),
        ("priority", 100, 40, None, "40 = 100 base - 60 chk (bad)"),
        (
            "transition",
            "MASTER",
            "BACKUP",
            "higher_priority",
            "192.168.200.3 advertises priority 75 (ours 40)",
        ),
        ("priority", 40, 100, None, "100 = 100 base"),
        ("transition", "BACKUP", "MASTER", "preempt", "preempting a lower-priority master"),
    ]
    assert a.node.states() == {"vip58": State.MASTER}


async def test_notify_programs_run_as_global_script_user(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    node_config = config(
        {"vip58": instance(58, 100, VIP, notify_master=["/usr/local/bin/on-master"])},
        **{"global": {"script_user": "nobody", "script_group": "nogroup"}},
    )
    a = await cluster.start("A", node_config)
    await cluster.sleep_until(5)
    [call] = a.runner.calls_of(("/usr/local/bin/on-master",))
    assert (call.user, call.group) == ("nobody", "nogroup")


async def test_a_reload_with_a_new_priority_is_a_priority_event(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    a = await cluster.start("A", with_check(100))
    await cluster.sleep_until(5)
    with a.node.events.subscribe() as subscription:
        await cluster.reload("A", with_check(90))
        await cluster.sleep_until(6)
        event = subscription.receive.receive_nowait()
        assert (event["type"], event["from"], event["to"], event["reason"]) == (
            "priority",
            100,
            90,
            "90 = 90 base",
        )
        with pytest.raises(trio.WouldBlock):
            subscription.receive.receive_nowait()
