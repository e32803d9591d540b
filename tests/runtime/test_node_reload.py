"""``Node.reload``: a new configuration applied to a running node without a flap.

A (100) and C (75) hold vip58 (and sometimes vip59) at a 1 s interval; A is master from
3.609375 s and advertises at 3.609375 + k. Reloads happen at t = RELOAD (10.25), between two
of A's advertisements and between two periodic re-assertions (at 10 and 20, which call
``add_address`` for what a master holds). What a reload does to the host is read from
``FakeNetlink.operations`` (every mutating call), the advertisements A sends, and the
transitions it publishes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import State
from pyvrrp.core.config import RouteConfig, RuleConfig
from pyvrrp.core.events import MaintenanceChanged
from pyvrrp.core.router import HANDOVER_GRACE
from pyvrrp.core.timers import US_PER_SECOND as SECOND
from pyvrrp.core.timers import master_down_interval, skew_time
from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.netlink import AddressSpec, describe_address, describe_route, describe_rule
from pyvrrp.runtime.node import ReloadResult
from pyvrrp.runtime.statefile import maintenance_path
from pyvrrp.testing.fakeprocess import FakeRun

from .cluster import Cluster, Host, config, instance

VIP = "1.2.3.58/29"
VIP_NEW = "1.2.3.61/29"
VIP59 = "1.2.3.59/29"
VIP60 = "1.2.3.60/29"
EXCLUDED = "2a03:4444:fff0:59:88::58/64"
CHK = "chk"
COMMAND = ("/usr/local/bin/chk",)
SKEW_75 = skew_time(75, SECOND) / SECOND  # 0.707031
MASTER_DOWN_100 = master_down_interval(100, SECOND) / SECOND  # 3.609375
GATEWAY = "192.168.200.254"
RELOAD = 10.25

STATIC_ROUTES = [
    {"to": "default", "via": GATEWAY, "dev": "eth0.4000", "table": 100},
    {"to": "10.0.0.0/8", "via": GATEWAY, "table": 100},
]
STATIC_RULES = [{"from": "1.2.3.56/29", "table": 100, "priority": 1000}]


def seed(priority: int = 100, **extra: Any) -> dict[str, Any]:
    return instance(58, priority, VIP, excluded=EXCLUDED, **extra)


def describe(operation: tuple[str, object]) -> str:
    name, argument = operation
    if isinstance(argument, AddressSpec):
        return f"{name} {describe_address(argument)}"
    if isinstance(argument, RouteConfig):
        return f"{name} {describe_route(argument)}"
    assert isinstance(argument, RuleConfig)
    return f"{name} {describe_rule(argument)}"


class Watch:
    """What a host does from now on: netlink operations, announcements, transitions."""

    def __init__(self, cluster: Cluster, host: Host) -> None:
        self.cluster = cluster
        self.host = host
        self.operations = len(host.netlink.operations)
        self.announcements = len(host.announcements.records)
        self.transitions = len(host.transitions)
        self.sent = len(cluster.sent)

    def new_operations(self) -> list[str]:
        return [describe(op) for op in self.host.netlink.operations[self.operations :]]

    def new_announcements(self) -> list[tuple[float, list[str]]]:
        return [
            (self.cluster.at(r.time), [str(address) for _, address in r.addresses])
            for r in self.host.announcements.records[self.announcements :]
        ]

    def new_transitions(self) -> list[tuple[float, str, State, State]]:
        return [
            (self.cluster.at(t.time), t.instance, t.old, t.new)
            for t in self.host.transitions[self.transitions :]
        ]

    def new_adverts(self) -> list[tuple[float, int, int]]:
        return [
            (self.cluster.at(s.time), s.advert.vrid, s.advert.priority)
            for s in self.cluster.sent[self.sent :]
            if s.host == self.host.name
        ]


async def start(cluster: Cluster, a_config: Any, c_config: Any | None = None) -> Host:
    a = await cluster.start("A", a_config)
    await cluster.start("C", c_config if c_config is not None else config({"vip58": seed(75)}))
    await cluster.sleep_until(RELOAD)
    return a


async def test_unchanged_configuration_touches_nothing(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    node_config = config(
        {"vip58": seed(virtual_routes=[{"to": "10.58.0.0/16", "via": GATEWAY}])},
        routes=STATIC_ROUTES,
        rules=STATIC_RULES,
    )
    a = await start(cluster, node_config)
    watch = Watch(cluster, a)
    result = await cluster.reload("A", node_config)
    assert result == ReloadResult(kept=("vip58",), changed=(), added=(), removed=())
    assert result.summary() == "1 unchanged"
    await cluster.sleep_until(19)
    assert watch.new_operations() == []
    assert watch.new_announcements() == []
    assert watch.new_transitions() == []
    # No priority 0, no extra advertisement: the Adver_Timer carries on.
    assert watch.new_adverts() == [(t + 0.609375, 58, 100) for t in range(10, 19)]
    assert cluster.masters("vip58") == ["A"]


async def test_added_address_on_a_master_is_added_and_announced_alone(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await start(cluster, config({"vip58": seed()}))
    watch = Watch(cluster, a)
    new = config({"vip58": seed(addresses=[VIP, VIP_NEW])})
    assert await cluster.reload("A", new) == ReloadResult(("vip58",), ("vip58",), (), ())
    await cluster.sleep_until(10.5)
    assert watch.new_operations() == [f"add_address {VIP_NEW} dev eth0.4000"]
    assert watch.new_announcements() == [(RELOAD, ["1.2.3.61"])]
    assert watch.new_transitions() == []
    assert a.holds(VIP) and a.holds(VIP_NEW) and a.holds(EXCLUDED)
    # The master tells its backups at once (its address list changed).
    sent = [s for s in cluster.sent if s.host == "A" and cluster.at(s.time) == RELOAD]
    assert [str(x) for x in sent[-1].advert.addresses] == ["1.2.3.58", "1.2.3.61"]


async def test_removed_address_on_a_master_is_removed_alone(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await start(cluster, config({"vip58": seed(addresses=[VIP, VIP_NEW])}))
    assert a.holds(VIP_NEW)
    watch = Watch(cluster, a)
    await cluster.reload("A", config({"vip58": seed()}))
    await cluster.sleep_until(11)
    assert watch.new_operations() == [f"remove_address {VIP_NEW} dev eth0.4000"]
    assert watch.new_announcements() == []
    assert watch.new_transitions() == []
    assert a.holds(VIP) and a.holds(EXCLUDED) and not a.holds(VIP_NEW)
    # Our own removal is not mistaken for someone else's: it is not put back, not even
    # by the periodic re-assertion at 20.
    await cluster.sleep_until(25)
    assert not a.holds(VIP_NEW)


async def test_virtual_routes_and_rules_of_a_master_are_diffed(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    old_route = {"to": "10.58.0.0/16", "via": GATEWAY, "table": 100}
    kept_route = {"to": "10.59.0.0/16", "via": GATEWAY, "table": 100}
    new_route = {"to": "10.60.0.0/16", "via": GATEWAY, "table": 100}
    old_rule = {"from": "1.2.3.56/29", "table": 100}
    new_rule = {"from": "1.2.3.56/29", "table": 101}
    a = await start(
        cluster,
        config({"vip58": seed(virtual_routes=[old_route, kept_route], virtual_rules=[old_rule])}),
    )
    watch = Watch(cluster, a)
    await cluster.reload(
        "A",
        config({"vip58": seed(virtual_routes=[kept_route, new_route], virtual_rules=[new_rule])}),
    )
    await cluster.sleep_until(11)
    assert watch.new_operations() == [
        f"add_route 10.60.0.0/16 via {GATEWAY} table 100",
        "add_rule from 1.2.3.56/29 lookup 101",
        "remove_rule from 1.2.3.56/29 lookup 100",
        f"remove_route 10.58.0.0/16 via {GATEWAY} table 100",
    ]
    assert {str(r.to) for r in a.netlink.routes} == {"10.59.0.0/16", "10.60.0.0/16"}
    assert [r.table for r in a.netlink.rules] == [101]


async def test_static_routes_and_rules_are_diffed(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    new_routes = [STATIC_ROUTES[0], {"to": "10.1.0.0/16", "via": GATEWAY, "table": 101}]
    a = await start(cluster, config({"vip58": seed()}, routes=STATIC_ROUTES, rules=STATIC_RULES))
    watch = Watch(cluster, a)
    await cluster.reload("A", config({"vip58": seed()}, routes=new_routes))
    await cluster.sleep_until(11)
    assert watch.new_operations() == [
        f"add_route 10.1.0.0/16 via {GATEWAY} table 101",
        "remove_rule priority 1000 from 1.2.3.56/29 lookup 100",
        f"remove_route 10.0.0.0/8 via {GATEWAY} table 100",
    ]
    assert [str(r.to) for r in a.netlink.routes] == ["0.0.0.0/0", "10.1.0.0/16"]
    assert a.netlink.rules == ()
    assert watch.new_transitions() == []


async def test_removed_master_instance_hands_over_then_its_vrid_is_forgotten(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    both = {"vip58": seed(), "vip59": instance(59, 100, VIP59, notify=["/bin/notify"])}
    backups = {"vip58": seed(75), "vip59": instance(59, 75, VIP59)}
    a = await start(cluster, config(both), config(backups))
    c = cluster.hosts["C"]
    assert cluster.masters("vip59") == ["A"]
    watch = Watch(cluster, a)
    removed = a.node.instances["vip59"]
    result = await cluster.reload("A", config({"vip58": seed()}))
    assert result == ReloadResult(("vip58",), (), (), ("vip59",))
    assert result.summary() == "removed: vip59; 1 unchanged"
    assert list(a.node.instances) == ["vip58"]
    await trio.testing.wait_all_tasks_blocked()
    # Priority 0 at once; the addresses stay until C takes over, a Skew_Time later, and
    # HANDOVER_GRACE more.
    assert (RELOAD, 59, 0) in watch.new_adverts()
    assert a.holds(VIP59)
    await cluster.sleep_until(RELOAD + SKEW_75 - 0.000001)
    assert a.holds(VIP59)
    await cluster.sleep_until(RELOAD + SKEW_75)
    await trio.testing.wait_all_tasks_blocked()
    assert cluster.changes("C", "vip59")[-1] == (
        RELOAD + SKEW_75,
        State.BACKUP,
        State.MASTER,
    )
    assert a.holds(VIP59) and c.holds(VIP59)
    await cluster.sleep_until(RELOAD + SKEW_75 + HANDOVER_GRACE / 1_000_000)
    await trio.testing.wait_all_tasks_blocked()
    assert not a.holds(VIP59) and c.holds(VIP59)
    assert watch.new_operations() == [f"remove_address {VIP59} dev eth0.4000"]
    assert watch.new_transitions() == [(RELOAD, "vip59", State.MASTER, State.INITIALIZE)]
    # The STOP notification of the removed instance ran, as on SIGTERM.
    assert [call.command for call in a.runner.calls][-1] == (
        "/bin/notify",
        "INSTANCE",
        "vip59",
        "STOP",
        "100",
    )
    # Once stopped, its VRID is no longer demultiplexed: C's advertisements for 59 are
    # dropped as unknown, one a second (11.957031 ... 14.957031).
    await cluster.sleep_until(15)
    assert a.node.drops() == {"eth0.4000/ipv4": {"unknown_vrid": 4}}
    assert [v for _, v, _ in watch.new_adverts()].count(59) == 1
    assert cluster.masters("vip58") == ["A"]
    # Its driver has ended: an event posted to it now is never handled.
    assert removed.router.stopped and removed.stopped.is_set()
    removed.post(MaintenanceChanged(True))
    await cluster.sleep_until(16)
    assert removed.statistics().maintenance is False


async def test_added_instance_starts_as_backup(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    a = await start(cluster, config({"vip58": seed()}))
    watch = Watch(cluster, a)
    result = await cluster.reload("A", config({"vip58": seed(), "vip60": instance(60, 100, VIP60)}))
    assert result == ReloadResult(("vip58",), (), ("vip60",), ())
    await cluster.sleep_until(20)
    # Nobody else has VRID 60: master after a whole Master_Down_Interval.
    assert watch.new_transitions() == [
        (RELOAD, "vip60", State.INITIALIZE, State.BACKUP),
        (RELOAD + MASTER_DOWN_100, "vip60", State.BACKUP, State.MASTER),
    ]
    assert a.holds(VIP60)
    assert a.node.status()["instances"]["vip60"]["state"] == "MASTER"
    assert cluster.masters("vip58") == ["A"]


async def test_renamed_instance_keeps_its_state_addresses_and_maintenance_flag(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery, tmp_path)
        a = await start(
            cluster,
            config({"vip58": seed(notify=["/bin/notify"]), "vip59": instance(59, 100, VIP59)}),
            config({"vip58": seed(75)}),
        )
        await cluster.set_maintenance("A", True, ["vip59"])
        await cluster.sleep_until(14)
        watch = Watch(cluster, a)
        renamed = config({"web58": seed(notify=["/bin/notify"]), "web59": instance(59, 100, VIP59)})
        result = await cluster.reload("A", renamed)
        assert result == ReloadResult(("web58", "web59"), ("web58", "web59"), (), ())
        await cluster.sleep_until(19.5)
        assert watch.new_transitions() == []
        assert watch.new_operations() == []
        assert [p for _, _, p in watch.new_adverts()] == [100] * 5
        assert a.node.states() == {"web58": State.MASTER, "web59": State.FAULT}
        assert a.holds(VIP)
        status = a.node.status()["instances"]
        assert status["web59"]["maintenance"] is True
        assert status["web58"]["counters"]["became_master"] == 1
        state_file = Path(maintenance_path(str(cluster.state_dir("A"))))
        assert json.loads(state_file.read_text()) == {"maintenance": ["web59"]}
        # The new name is used from now on: in transitions and notifications.
        await cluster.set_maintenance("A", True, ["web58"])
        await cluster.sleep_until(21)
        assert watch.new_transitions() == [(19.5, "web58", State.MASTER, State.FAULT)]
        assert a.runner.calls[-1].command == ("/bin/notify", "INSTANCE", "web58", "FAULT", "100")
        with pytest.raises(KeyError):
            a.node.instances["vip58"]
        nursery.cancel_scope.cancel()


async def test_changed_priority_is_advertised_at_once(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await start(cluster, config({"vip58": seed()}))
    watch = Watch(cluster, a)
    await cluster.reload("A", config({"vip58": seed(40)}))
    await cluster.sleep_until(12)
    adverts = watch.new_adverts()
    # 40 goes out once at the reload (never 100 first); C (75) preempts one Skew_Time
    # later, and A yields with a parting advertisement (still 40).
    assert adverts == [(RELOAD, 58, 40), (RELOAD + SKEW_75, 58, 40)]
    assert cluster.changes("C", "vip58")[-1] == (
        RELOAD + SKEW_75,
        State.BACKUP,
        State.MASTER,
    )
    assert watch.new_transitions() == [(RELOAD + SKEW_75, "vip58", State.MASTER, State.BACKUP)]
    vip58 = a.node.status()["instances"]["vip58"]
    assert (vip58["base_priority"], vip58["effective_priority"]) == (40, 40)


def versions_sent(cluster: Cluster, host: str, since: float) -> list[tuple[float, int]]:
    """(seconds since t0, VRRP version) of every advertisement ``host`` sent from ``since``."""
    return [
        (cluster.at(s.time), s.advert.version)
        for s in cluster.sent
        if s.host == host and cluster.at(s.time) >= since
    ]


@pytest.mark.parametrize(
    ("before", "after", "sent_after"),
    [("2+3", 3, [3]), (2, "2+3", [2, 3]), (3, "2+3", [2, 3]), ("2+3", 2, [2])],
)
async def test_changing_the_vrrp_version_by_reload_moves_nothing(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
    before: int | str,
    after: int | str,
    sent_after: list[int],
) -> None:
    """The migration's steps: the instance's key (VRID, family, interface, source) is the
    same, so A stays master and C its backup while each is reloaded in turn; A advertises in
    its new version(s) at once, v2 first."""
    a = await start(
        cluster,
        config({"vip58": seed(version=before)}),
        config({"vip58": seed(75, version=before)}),
    )
    watch = Watch(cluster, a)
    assert {v for _, v in versions_sent(cluster, "A", RELOAD - 1)} == (
        {2, 3} if before == "2+3" else {int(before)}
    )
    await cluster.reload("A", config({"vip58": seed(version=after)}))
    await cluster.sleep_until(RELOAD + 4)
    await cluster.reload("C", config({"vip58": seed(75, version=after)}))
    await cluster.sleep_until(RELOAD + 9.5)  # before the periodic re-assertion at 20
    sent = versions_sent(cluster, "A", RELOAD)
    # An advertisement at the reload (which restarts the Adver_Timer), then one a second.
    assert sent == [(RELOAD + k, v) for k in range(10) for v in sent_after]
    assert watch.new_transitions() == []
    assert cluster.changes("C", "vip58")[-1][2] is State.BACKUP
    assert len(cluster.changes("C", "vip58")) == 1  # startup only
    assert watch.new_operations() == []
    status = a.node.status()["instances"]["vip58"]
    assert status["vrrp_version"] == str(after)
    # C heard A in both versions at some point of each of these migrations.
    peers = cluster.hosts["C"].node.status()["instances"]["vip58"]["peers"]
    assert peers["192.168.200.1"]["versions"] == [2, 3]


async def test_scripts_keep_their_fall_position_across_a_reload(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    scripts = {CHK: {"command": list(COMMAND), "interval": 2.0, "fall": 2, "rise": 2}}
    tracked = config({"vip58": seed(track_scripts=[{"name": CHK, "weight": -60}])}, scripts=scripts)
    a = await cluster.start("A", tracked)
    await cluster.start("C", config({"vip58": seed(75)}))
    await cluster.sleep_until(9)
    a.runner.set(COMMAND, FakeRun.fail())
    await cluster.sleep_until(10.5)
    assert a.node.status()["scripts"][CHK]["position"] == "1/2 failures to fall"
    await cluster.reload("A", tracked)
    await cluster.sleep_until(10.75)
    # The reload runs the check at once (10.5); with the failure at 10 carried over that
    # is the second in a row: bad, and the priority drops.
    script = a.node.status()["scripts"][CHK]
    assert (script["state"], script["consecutive_failures"]) == ("bad", 2)
    assert a.node.status()["instances"]["vip58"]["effective_priority"] == 40
    starts = [cluster.at(call.started) for call in a.runner.calls_of(COMMAND)]
    assert starts == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 10.5]


async def test_missing_interface_fails_the_reload_and_changes_nothing(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    scripts = {CHK: {"command": list(COMMAND), "interval": 2.0}}
    node_config = config({"vip58": seed(track_scripts=[CHK])}, scripts=scripts)
    a = await start(cluster, node_config)
    watch = Watch(cluster, a)
    broken = config(
        {
            "vip58": seed(40),
            "vip59": instance(59, 100, VIP59),
            "vip61": instance(61, 100, "1.2.3.62/29", interface="eth9"),
        },
        routes=STATIC_ROUTES,
    )
    with pytest.raises(EnvironmentProblem, match=r"instance vip61: interface eth9 does not"):
        await cluster.reload("A", broken)
    await cluster.sleep_until(19)
    assert a.node.config.instances.keys() == {"vip58"}
    assert list(a.node.instances) == ["vip58"]
    assert watch.new_operations() == []
    assert watch.new_transitions() == []
    assert watch.new_adverts() == [(t + 0.609375, 58, 100) for t in range(10, 19)]
    # The trackers were not restarted: the check keeps its grid.
    starts = [cluster.at(call.started) for call in a.runner.calls_of(COMMAND)]
    assert starts == [float(t) for t in range(0, 19, 2)]
