"""Maintenance through whole nodes, in virtual time: graceful handover, persistence, restart.

The seed's vip58 (A 100 master, C 75, B 50, 1 s interval). Times are seconds since the
cluster started: A is master from 3.609375 s and advertises every second.
"""

from __future__ import annotations

import json
import logging
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.router import HANDOVER_GRACE
from pyvrrp.core.timers import US_PER_SECOND as SECOND
from pyvrrp.core.timers import skew_time
from pyvrrp.runtime.control import UnknownInstance
from pyvrrp.runtime.netlink import AddressSpec
from pyvrrp.runtime.statefile import maintenance_path
from pyvrrp.testing.fakenetlink import FakeNetlink
from pyvrrp.testing.fakestate import MemoryMaintenanceStore

from .cluster import INTERFACE, Cluster, config, instance

GRACE = HANDOVER_GRACE / 1_000_000
VIP = "1.2.3.58/29"
VIP59 = "1.2.3.59/29"
SEED = {"A": 100, "B": 50, "C": 75}
SKEW_75 = skew_time(75, SECOND) / SECOND  # 0.707031
SKEW_100 = skew_time(100, SECOND) / SECOND  # 0.609375


def seed_config(priority: int, **extra: Any) -> Any:
    return config({"vip58": instance(58, priority, VIP, **extra)})


def two_instances(priority58: int, priority59: int) -> Any:
    return config(
        {
            "vip58": instance(58, priority58, VIP),
            "vip59": instance(59, priority59, VIP59),
        }
    )


async def start_seed(cluster: Cluster) -> None:
    for name, priority in SEED.items():
        await cluster.start(name, seed_config(priority))


def saved(state_dir: Path) -> Any:
    return json.loads(Path(maintenance_path(str(state_dir))).read_text())


async def test_maintenance_on_master_hands_over_gracefully_and_is_saved(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        await start_seed(cluster)
        a, c = cluster.hosts["A"], cluster.hosts["C"]
        await cluster.sleep_until(10)
        assert await cluster.set_maintenance("A", True, ["vip58"]) == ["vip58"]
        await trio.testing.wait_all_tasks_blocked()
        fault = a.transitions_of("vip58")[-1]
        assert (cluster.at(fault.time), fault.new, fault.cause) == (
            10.0,
            State.FAULT,
            Cause.MAINTENANCE,
        )
        assert cluster.adverts("A")[-1] == (10.0, 0)
        # Graceful handover: the addresses stay until C's first advertisement, one Skew_Time
        # of C's later, and go HANDOVER_GRACE after it (C installs and announces meanwhile).
        assert a.holds(VIP)
        assert a.node.status()["instances"]["vip58"]["holding_addresses"] is True
        await cluster.sleep_until(10 + SKEW_75 - 0.000001)
        assert a.holds(VIP) and not c.holds(VIP)
        await cluster.sleep_until(10 + SKEW_75)
        await trio.testing.wait_all_tasks_blocked()
        assert cluster.changes("C", "vip58")[-1] == (10 + SKEW_75, State.BACKUP, State.MASTER)
        assert c.holds(VIP) and a.holds(VIP)
        await cluster.sleep_until(10 + SKEW_75 + GRACE - 0.000001)
        assert a.holds(VIP)
        await cluster.sleep_until(10 + SKEW_75 + GRACE)
        await trio.testing.wait_all_tasks_blocked()
        assert c.holds(VIP) and not a.holds(VIP)
        assert saved(cluster.state_dir("A")) == {"maintenance": ["vip58"]}
        status = a.node.status()["instances"]["vip58"]
        assert (status["state"], status["maintenance"], status["holding_addresses"]) == (
            "FAULT",
            True,
            False,
        )
        # In maintenance A stays silent: the priority-0 advertisement was its last.
        await cluster.sleep_until(20)
        assert cluster.adverts("A")[-1] == (10.0, 0)
        assert cluster.masters("vip58") == ["C"]
        nursery.cancel_scope.cancel()


async def test_restart_in_maintenance_never_becomes_master_until_maintenance_off(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        await start_seed(cluster)
        a = cluster.hosts["A"]
        await cluster.sleep_until(10)
        await cluster.set_maintenance("A", True, ["vip58"])
        await cluster.sleep_until(12)
        await cluster.stop("A")
        assert cluster.at(trio.current_time()) == 12.0  # nothing to hand over in FAULT
        restarted = await cluster.start("A", seed_config(100), netlink=a.netlink)
        await cluster.sleep_until(20)
        # Started in FAULT and stayed there: no BACKUP, no MASTER, not for a moment, and
        # not a single advertisement.
        assert cluster.changes("A", "vip58") == [(12.0, State.INITIALIZE, State.FAULT)]
        assert restarted.transitions_of("vip58")[0].cause is Cause.MAINTENANCE
        assert [t for t, _ in cluster.adverts("A") if t >= 12] == []
        assert not restarted.holds(VIP)
        assert restarted.node.status()["instances"]["vip58"]["maintenance"] is True
        assert cluster.masters("vip58") == ["C"]
        # Maintenance off: BACKUP at once, then A (100) preempts C (75) when it next hears it
        # (20.707031), after its Skew_Time.
        assert await cluster.set_maintenance("A", False, ["vip58"]) == ["vip58"]
        await cluster.sleep_until(25)
        assert cluster.changes("A", "vip58")[1:] == [
            (20.0, State.FAULT, State.BACKUP),
            (20 + SKEW_75 + SKEW_100, State.BACKUP, State.MASTER),
        ]
        assert restarted.holds(VIP)
        assert cluster.masters("vip58") == ["A"]
        assert saved(cluster.state_dir("A")) == {"maintenance": []}
        nursery.cancel_scope.cancel()


async def test_unknown_instance_changes_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        a = await cluster.start("A", seed_config(100))
        await cluster.sleep_until(10)
        with pytest.raises(UnknownInstance) as raised:
            await cluster.set_maintenance("A", True, ["vip58", "vip99"])
        assert raised.value.names == ("vip99",)
        assert str(raised.value) == "unknown instance vip99 (instances: vip58)"
        await cluster.sleep_until(12)
        assert a.state("vip58") is State.MASTER
        assert a.node.status()["instances"]["vip58"]["maintenance"] is False
        assert not Path(maintenance_path(str(cluster.state_dir("A")))).exists()
        assert [p for _, p in cluster.adverts("A")] == [100] * len(cluster.adverts("A"))
        nursery.cancel_scope.cancel()


async def test_empty_list_means_every_instance_and_repeats_change_nothing(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        a = await cluster.start("A", two_instances(100, 75))
        await cluster.sleep_until(10)
        assert a.node.states() == {"vip58": State.MASTER, "vip59": State.MASTER}
        assert await cluster.set_maintenance("A", True) == ["vip58", "vip59"]
        assert await cluster.set_maintenance("A", True, []) == []
        await cluster.sleep_until(11)
        assert a.node.states() == {"vip58": State.FAULT, "vip59": State.FAULT}
        assert saved(cluster.state_dir("A")) == {"maintenance": ["vip58", "vip59"]}
        # Nobody answered: the addresses go after the release timeout (2.996093 s at 1 s).
        await cluster.sleep_until(14)
        assert not a.holds(VIP) and not a.holds(VIP59)
        assert await cluster.set_maintenance("A", False, ["vip59"]) == ["vip59"]
        await cluster.sleep_until(15)
        assert a.node.states() == {"vip58": State.FAULT, "vip59": State.BACKUP}
        assert saved(cluster.state_dir("A")) == {"maintenance": ["vip58"]}
        assert await cluster.set_maintenance("A", False) == ["vip58"]
        await cluster.sleep_until(16)
        assert a.node.states() == {"vip58": State.BACKUP, "vip59": State.BACKUP}
        nursery.cancel_scope.cancel()


async def test_maintenance_on_a_backup_changes_nothing_on_the_wire(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        await start_seed(cluster)
        await cluster.sleep_until(10)
        assert await cluster.set_maintenance("C", True, ["vip58"]) == ["vip58"]
        await cluster.sleep_until(20)
        assert cluster.changes("C", "vip58") == [
            (0.0, State.INITIALIZE, State.BACKUP),
            (10.0, State.BACKUP, State.FAULT),
        ]
        assert cluster.adverts("C") == []
        assert cluster.masters("vip58") == ["A"]
        # A backup in FAULT does not compete: with A gone, B (50) takes over, not C (75).
        cluster.crash("A")
        await cluster.sleep_until(30)
        assert cluster.masters("vip58") == ["B"]
        nursery.cancel_scope.cancel()


async def test_corrupt_state_file_is_logged_and_instances_start_in_service(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "A"
    state_dir.mkdir()
    Path(maintenance_path(str(state_dir))).write_text("{not json")
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        with caplog.at_level(logging.ERROR, logger="pyvrrp"):
            a = await cluster.start("A", seed_config(100))
        await cluster.sleep_until(5)
        assert a.state("vip58") is State.MASTER
        assert "is not valid JSON; starting with no instance in maintenance" in caplog.text
        nursery.cancel_scope.cancel()


async def test_owner_restarted_in_maintenance_never_installs_its_addresses(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # An address owner becomes master at Startup: the saved flag must be known before then.
    state_dir = tmp_path / "A"
    state_dir.mkdir()
    Path(maintenance_path(str(state_dir))).write_text('{"maintenance": ["vip58", "gone"]}')
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        a = await cluster.start("A", seed_config(255))
        await cluster.sleep_until(10)
        assert cluster.changes("A", "vip58") == [(0.0, State.INITIALIZE, State.FAULT)]
        assert cluster.adverts("A") == []
        assert [op for op, _ in a.netlink.operations if op == "add_address"] == []
        assert a.announcements.records == []
        assert await cluster.set_maintenance("A", False) == ["vip58"]
        await cluster.sleep_until(11)
        # The owner takes over at once (RFC 9568 §6.4.1); the unknown name was dropped.
        assert cluster.changes("A", "vip58")[-1] == (10.0, State.FAULT, State.MASTER)
        assert a.holds(VIP)
        assert saved(cluster.state_dir("A")) == {"maintenance": []}
        nursery.cancel_scope.cancel()


async def test_a_failed_save_is_logged_and_maintenance_still_applies(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    store = MemoryMaintenanceStore()
    store.fail_saves = True
    a = await cluster.start("A", seed_config(100), store=store)
    await cluster.sleep_until(10)
    with caplog.at_level(logging.ERROR, logger="pyvrrp"):
        assert await a.node.set_maintenance(True, ["vip58"]) == ["vip58"]
    assert cluster.at(trio.current_time()) == 10.0  # no thread: the clock stood still
    assert caplog.messages == [
        "maintenance is in effect but cannot be kept across a restart: "
        "cannot write maintenance.json: read-only file system"
    ]
    await cluster.sleep_until(11)
    assert a.state("vip58") is State.FAULT
    assert a.node.status()["instances"]["vip58"]["maintenance"] is True
    # Shared between two runs, a working store is a restart's memory.
    store.fail_saves = False
    assert await a.node.set_maintenance(False) == ["vip58"]
    assert await a.node.set_maintenance(True) == ["vip58"]
    assert store.instances == {"vip58"}


class _GatedNetlink(FakeNetlink):
    """Holds every add_address until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: trio.Event | None = None

    async def add_address(self, spec: AddressSpec) -> bool:
        if self.gate is not None:
            await self.gate.wait()
        return await super().add_address(spec)


async def test_maintenance_requested_during_a_reload_is_kept(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    netlink = _GatedNetlink()
    netlink.add_link(INTERFACE, addresses=[IPv4Interface("192.168.200.1/24")])
    store = MemoryMaintenanceStore()
    a = await cluster.start("A", seed_config(100), netlink=netlink, store=store)
    await cluster.sleep_until(10.25)
    # A reload that adds an address to the master waits on netlink; meanwhile an
    # operator asks for maintenance.
    netlink.gate = trio.Event()
    bigger = config({"vip58": instance(58, 100, VIP, addresses=[VIP, "1.2.3.61/29"])})
    changed: list[list[str]] = []

    async def maintenance() -> None:
        changed.append(await a.node.set_maintenance(True, ["vip58"]))

    async with trio.open_nursery() as inner:
        inner.start_soon(cluster.reload, "A", bigger)
        await trio.testing.wait_all_tasks_blocked()
        inner.start_soon(maintenance)
        await trio.testing.wait_all_tasks_blocked()
        netlink.gate.set()
    await trio.testing.wait_all_tasks_blocked()
    assert changed == [["vip58"]]
    assert a.state("vip58") is State.FAULT
    # The flag is known and kept: status says so, the store has it, and turning it off
    # works (a lost flag would make "off" a no-op and leave vip58 in FAULT for good).
    assert a.node.status()["instances"]["vip58"]["maintenance"] is True
    assert store.instances == {"vip58"}
    assert await a.node.set_maintenance(False) == ["vip58"]
    await cluster.sleep_until(11)
    assert a.state("vip58") is State.BACKUP
