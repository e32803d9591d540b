"""pyvrrp and keepalived 2.2.7 in its default configuration (no `version` line: VRRPv2 for
IPv4, RFC 3768) in one cluster, the first step of a migration without a flag day.

Two nodes of the seed (A and B; vip58: A 100, B 50; vip59: B 100, A 75), A running
keepalived and B pyvrrp, so each test sees both directions at once: keepalived master with a
pyvrrp backup (vip58) and pyvrrp master with a keepalived backup (vip59). One lab serves the
module; each test starts the daemons with the configs it needs (rendered by nslab from one
spec, so both sides agree) and stops them at the end.

Timing bounds: RFC 3768 §6.1 at a 1 s interval (the same values as RFC 9568's), plus slack
for a busy 2-core machine.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Iterator

import pytest
from nslab import ClusterSpec, Lab, LabError, keepalived_config, pyvrrp_config, seed_cluster

from tests.netns.labtools import (
    V4,
    V6,
    LogMark,
    daemon_problems,
    master_down_interval,
    pyvrrp_problems,
    running_lab,
    skew_time,
)

SLACK = 1.5
TABLE = {V4["A"]: ["A"], V6["A"]: ["A"], V4["B"]: ["B"], V6["B"]: ["B"]}
# Each node's backup instance takes the other's addresses.
ALL_ON = {
    "A": {V4["A"]: ["A"], V6["A"]: ["A"], V4["B"]: ["A"], V6["B"]: ["A"]},
    "B": {V4["A"]: ["B"], V6["A"]: ["B"], V4["B"]: ["B"], V6["B"]: ["B"]},
}


def cluster(*, unicast: bool, version: int | str = 2, auth_pass: str | None = None) -> ClusterSpec:
    """The seed's nodes A and B (no health script: it plays no part here)."""
    base = seed_cluster(2)
    return dataclasses.replace(
        base,
        unicast=unicast,
        health=None,
        instances=tuple(
            dataclasses.replace(i, version=version, auth_pass=auth_pass, health_check=False)
            for i in base.instances
        ),
    )


@pytest.fixture(scope="module")
def v2_lab() -> Iterator[Lab]:
    yield from running_lab(cluster(unicast=True), None, keepalived=True)


@pytest.fixture
def lab(v2_lab: Lab) -> Iterator[Lab]:
    yield v2_lab
    # The test is over: no graceful handover to wait out, and the next test starts cold.
    for node in v2_lab.nodes:
        if v2_lab.running(node):
            v2_lab.kill(node)
        v2_lab.remove_vips(node)


def start(lab: Lab, spec: ClusterSpec, *, pyvrrp_spec: ClusterSpec | None = None) -> None:
    """keepalived on A, pyvrrp on B, with configs rendered from `spec` (B's from
    `pyvrrp_spec` when given: a 2+3 node among v2 ones)."""
    keepalived = keepalived_config("A", spec)
    assert "version" not in keepalived  # keepalived's default: VRRPv2
    lab.start("A", "keepalived", keepalived)
    node_toml = pyvrrp_config("B", pyvrrp_spec or spec, run_dir=lab.node_dir("B"))
    lab.start("B", "pyvrrp", node_toml)


def peers_of(lab: Lab, node: str, instance: str) -> dict[str, list[int]]:
    """`pyvrrp status --json`: peer address -> the versions accepted from it."""
    status = lab.status(node)["instances"][instance]
    return {peer: entry["versions"] for peer, entry in status["peers"].items()}


def drops_of(lab: Lab, node: str, instance: str) -> dict[str, int]:
    return dict(lab.status(node)["instances"][instance]["counters"]["drops"])


@pytest.mark.parametrize(
    ("unicast", "auth_pass"),
    [(True, None), (True, "secret"), (False, None), (False, "pw2")],
    ids=["unicast", "unicast-pass", "multicast", "multicast-pass"],
)
def test_default_keepalived_and_pyvrrp_v2_elect_and_take_over_both_ways(
    lab: Lab, unicast: bool, auth_pass: str | None
) -> None:
    spec = cluster(unicast=unicast, auth_pass=auth_pass)
    mark = LogMark(lab)
    start(lab, spec)
    # Both start as backups; the priority-100 node of each VIP wins after its
    # Master_Down_Interval, whichever daemon it runs.
    lab.wait_holders(TABLE, timeout=master_down_interval(100) + 3 * SLACK)
    assert "vip58 (VRID 58 on eth0.4000, priority 50, VRRPv2)" in mark.new("B")
    assert peers_of(lab, "B", "vip58") == {"192.168.200.1": [2]}
    # keepalived master -> pyvrrp backup: A leaves (priority 0), B (50) takes vip58 after
    # Skew_Time(50).
    lab.stop("A")
    lab.wait_holders(ALL_ON["B"], timeout=skew_time(50) + 2 * SLACK)
    # pyvrrp master -> keepalived: A comes back at 100 and preempts vip58 from B.
    lab.start("A", "keepalived", keepalived_config("A", spec))
    lab.wait_holders(TABLE, timeout=master_down_interval(100) + 2 * SLACK)
    # pyvrrp master -> keepalived backup: B leaves gracefully, A (75) takes vip59.
    lab.stop("B")
    lab.wait_holders(ALL_ON["A"], timeout=skew_time(75) + 2 * SLACK)
    text = mark.new("A")
    assert "(vip59) Backup received priority 0 advertisement" in text, text
    assert "(vip59) Entering MASTER STATE" in text, text
    # And keepalived -> pyvrrp: B returns at 100 and preempts vip59 from A.
    lab.start("B", "pyvrrp", pyvrrp_config("B", spec, run_dir=lab.node_dir("B")))
    lab.wait_holders(TABLE, timeout=master_down_interval(100) + 2 * SLACK)
    assert "vip59: BACKUP -> MASTER (preempting a lower-priority master)" in mark.new("B")
    assert daemon_problems(lab, mark) == {}


def test_a_wrong_password_is_a_counted_logged_drop(lab: Lab) -> None:
    right = cluster(unicast=True, auth_pass="secret")
    wrong = cluster(unicast=True, auth_pass="wrong")
    mark = LogMark(lab)
    start(lab, right, pyvrrp_spec=wrong)

    def dropped() -> bool:
        try:
            return drops_of(lab, "B", "vip58").get("auth_pass", 0) > 0
        except LabError:  # not listening on its control socket yet
            return False

    lab.wait_for(dropped, master_down_interval(100) + 2 * SLACK, what="an auth_pass drop")
    lines = pyvrrp_problems(mark.new("B"))
    assert any(
        re.search(r"vip58: dropped advertisement from 192\.168\.200\.1: auth_pass \(", line)
        for line in lines
    ), lines
    assert all("secret" not in line for line in lines)  # the peer's password is not echoed
    # Nobody hears anybody: both hold everything (the split brain a wrong password makes).
    lab.wait_holders({a: ["A", "B"] for a in TABLE}, timeout=master_down_interval(50) + 2 * SLACK)
    assert peers_of(lab, "B", "vip58") == {}


def test_a_2_and_3_pyvrrp_node_and_a_v2_keepalived_elect_one_master(lab: Lab) -> None:
    """Migration mode: B sends each advertisement as VRRPv2 then VRRPv3 and accepts both;
    keepalived reads the v2 one (and logs the v3 one as the wrong version), so each VIP has
    one holder, a takeover works both ways, and reloading B to another version moves
    nothing."""
    spec = cluster(unicast=True)
    mixed = cluster(unicast=True, version="2+3")
    assert 'version = "2+3"' in pyvrrp_config("B", mixed, run_dir=lab.node_dir("B"))
    mark = LogMark(lab)
    with lab.watch_adverts("B") as watch:
        start(lab, spec, pyvrrp_spec=mixed)
        lab.wait_holders(TABLE, timeout=master_down_interval(100) + 3 * SLACK)
        with lab.probe([V4["A"], V4["B"]]) as probe:
            time.sleep(2.5)  # two advertisement intervals: no second holder appears
        first = watch.first_captured(time.time(), 3.0, vrid=59)
        time.sleep(0.5)  # its twin follows within microseconds; the next pair 1 s later
        window = [
            a
            for a in watch.adverts()
            if a.vrid == 59 and first.captured <= a.captured < first.captured + 0.5
        ]
        pair = sorted(window, key=lambda a: a.captured)
    report = probe.report()
    for target in (V4["A"], V4["B"]):
        assert report[target].split_brain == (), report.format()
    assert [a.version for a in pair] == [2, 3]
    assert pair[1].captured - pair[0].captured < 0.01
    assert peers_of(lab, "B", "vip58") == {"192.168.200.1": [2]}
    # keepalived master -> 2+3 backup and back.
    lab.stop("A")
    lab.wait_holders(ALL_ON["B"], timeout=skew_time(50) + 2 * SLACK)
    lab.start("A", "keepalived", keepalived_config("A", spec))
    lab.wait_holders(TABLE, timeout=master_down_interval(100) + 2 * SLACK)
    # A reload of the version keeps B master of vip59 (here back to 2, keepalived still runs):
    # no transition, and only VRRPv2 advertisements from then on.
    before_reload = LogMark(lab)
    conf = lab.node_dir("B") / "node.toml"
    conf.write_text(pyvrrp_config("B", spec, run_dir=lab.node_dir("B")))
    with lab.watch_adverts("B") as watch, lab.probe([V4["B"]]) as probe:
        done = lab.run_in("B", sys.executable, "-m", "pyvrrp", "reload", "-c", str(conf))
        # The daemon answers once the new configuration is in effect.
        reloaded = time.time()
        assert done.stdout == "reloaded: changed: vip58, vip59; 0 unchanged\n", done
        time.sleep(3.2)
        after = [a for a in watch.adverts() if a.vrid == 59 and a.captured >= reloaded]
    assert len(after) >= 2 and {a.version for a in after} == {2}, after
    assert " -> " not in before_reload.new("B"), before_reload.new("B")
    assert probe.report()[V4["B"]].nodes == {"B"}, probe.report().format()
    assert lab.holders() == TABLE
    # pyvrrp dropped nothing; keepalived only the VRRPv3 copies.
    assert pyvrrp_problems(mark.new("B")) == []
    problems = daemon_problems(lab, mark).get("A", [])
    assert problems and all("wrong version" in line for line in problems), problems
