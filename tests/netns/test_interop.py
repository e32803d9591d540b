"""pyvrrp and keepalived 2.2.7 (`version 3`) in one cluster: a user can swap one node of a
keepalived cluster for pyvrrp and have the cluster behave the same (docs/keepalived.md).

Two mixes of the seed cluster run every test of the `mixed` group, one after the other on one
lab (`mix` is a module-scoped parameter, so pytest runs every test with the first mix before
switching to the second):

- `keepalived-A`: A (master of vip58) runs keepalived, B and C pyvrrp: keepalived master with
  pyvrrp backups for vip58, pyvrrp masters with a keepalived backup for vip59 and vip60;
- `pyvrrp-A`: A runs pyvrrp, B and C keepalived: the reverse.

Each test checks both daemons' logs for packet errors: keepalived's messages for a bad
advertisement (tests/netns/labtools.py, KEEPALIVED_PACKET_ERRORS, taken from the 2.2.7
binary) and pyvrrp's dropped-advertisement lines; one test proves those patterns catch what
the daemons actually log by giving a pyvrrp node the other IPv4 checksum convention.

Timing bounds: RFC 9568 §6.1 with vip58's priorities A 100, C 75, B 50 (see labtools), plus
slack for a busy 2-core machine.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator

import pytest
from nslab import ClusterSpec, DaemonKind, InstanceSpec, Lab, pyvrrp_config, seed_cluster

from tests.netns.labtools import (
    PRIO_58,
    SEED_TABLE,
    V4,
    V6,
    LogMark,
    daemon_problems,
    keepalived_packet_errors,
    lab_context,
    master_down_interval,
    pyvrrp_problems,
    running_lab,
    skew_time,
)

SLACK = 1.0  # scheduling slack on a busy 2-core machine, added to the protocol's deadlines

Mix = dict[str, DaemonKind]
MIXES: dict[str, Mix] = {
    "keepalived-A": {"A": "keepalived", "B": "pyvrrp", "C": "pyvrrp"},
    "pyvrrp-A": {"A": "pyvrrp", "B": "keepalived", "C": "keepalived"},
}


@pytest.fixture(scope="module")
def interop_lab() -> Iterator[Lab]:
    # No daemon yet: each mix's first test is the cold start, and `lab` starts the mix.
    yield from running_lab(seed_cluster(), None, keepalived=True)


@pytest.fixture(scope="module", params=list(MIXES))
def mix(request: pytest.FixtureRequest) -> Mix:
    return MIXES[request.param]


@pytest.fixture
def lab(interop_lab: Lab, mix: Mix) -> Lab:
    interop_lab.reset(mix, timeout=40, default_configs=True)
    return interop_lab


def other(kind: DaemonKind) -> DaemonKind:
    return "pyvrrp" if kind == "keepalived" else "keepalived"


@pytest.fixture
def cold_lab(interop_lab: Lab, mix: Mix) -> Lab:
    """The module's lab, faults undone, with no daemon running (not converged first: the test
    would only stop the daemons again)."""
    interop_lab.stop_cold()
    return interop_lab


def test_mixed_cluster_elects_by_priority_from_a_cold_start(cold_lab: Lab, mix: Mix) -> None:
    lab = cold_lab
    assert not any(lab.running(node) for node in lab.nodes)
    assert all(lab.holders()[a] == [] for a in SEED_TABLE)
    mark = LogMark(lab)
    for node in lab.nodes:
        lab.start(node, mix[node])
    # Every node starts as backup; the highest priority's down timer runs out first
    # (Master_Down_Interval(100) = 3.61 s), whichever daemon runs it.
    lab.wait_holders(SEED_TABLE, timeout=master_down_interval(100) + 3 * SLACK)
    with lab.probe() as probe:
        time.sleep(1.0)
    report = probe.report()
    for node in "ABC":
        for target in (V4[node], V6[node]):
            assert report[target].nodes == {node}, report.format()
            assert report[target].split_brain == (), report.format()
    assert lab.holders() == SEED_TABLE
    assert daemon_problems(lab, mark) == {}


def test_link_cut_of_the_master_moves_vip_to_the_other_implementation_and_back(
    lab: Lab, mix: Mix
) -> None:
    mark = LogMark(lab)
    with lab.probe([V4["A"], V6["A"]]) as probe:
        time.sleep(0.3)
        probe.mark("cut")
        lab.cut_link("A")
        for target in (V4["A"], V6["A"]):
            probe.wait_answered_by(target, "C", timeout=master_down_interval(75) + 2 * SLACK)
        time.sleep(0.3)
        lab.restore_link("A")
        # The first advert to cross after the restore ends the split brain (RFC 9568 §6.4.3).
        lab.wait_holders(SEED_TABLE, timeout=1.0 + SLACK)
    report = probe.report()
    mdi = master_down_interval(PRIO_58["C"])
    for target in (V4["A"], V6["A"]):
        t = report[target]
        assert [s.node for s in t.timeline][:2] == ["A", "C"], report.format()
        assert mdi - 1.0 - 0.1 < t.max_gap_s < mdi + SLACK, report.format()
    assert daemon_problems(lab, mark) == {}


def test_sigterm_of_the_master_hands_over_to_the_other_implementation(lab: Lab, mix: Mix) -> None:
    """A leaving master sends priority 0 and C (75) takes over after Skew_Time(75) = 0.71 s
    (RFC 9568 §6.4.2), whichever daemon runs on either side. keepalived removes its
    addresses at once, so clients lose Skew_Time of traffic; pyvrrp keeps them until it
    hears the new master (graceful handover), so clients lose nothing."""
    mark = LogMark(lab)
    with lab.probe([V4["A"], V6["A"]]) as probe:
        time.sleep(0.3)
        probe.mark("sigterm")
        lab.stop("A")
        for target in (V4["A"], V6["A"]):
            probe.wait_answered_by(target, "C", timeout=skew_time(75) + 2 * SLACK)
        time.sleep(0.3)
    report = probe.report()
    [(_, stopped_at)] = report.marks
    for target in (V4["A"], V6["A"]):
        t = report[target]
        [handover] = t.handovers
        taken = handover.at_s - stopped_at
        assert skew_time(75) - 0.1 < taken < skew_time(75) + SLACK, t.timeline_text()
        if mix["A"] == "pyvrrp":
            assert handover.gap_s < 0.05 and t.lost <= 2, report.format()
        else:
            # keepalived dropped the VIP at once: the client waited for C's Skew_Time.
            assert skew_time(75) - 0.1 < handover.gap_s < skew_time(75) + SLACK, t.timeline_text()
    if mix["C"] == "keepalived":
        text = mark.new("C")
        assert "(vip58) Backup received priority 0 advertisement" in text, text
        assert "(vip58) Entering MASTER STATE" in text, text
    else:
        assert "vip58: BACKUP -> MASTER (the master left (priority 0))" in mark.new("C")
    assert daemon_problems(lab, mark) == {}


def test_packet_error_patterns_catch_a_checksum_convention_mismatch(lab: Lab, mix: Mix) -> None:
    """The negative control of every `daemon_problems(...) == {}` in this file: a pyvrrp node
    using the message-only IPv4 checksum (RFC 9568 as written) is neither understood by
    keepalived, which includes the pseudo-header, nor understands it, and both logs say so."""
    node = next(n for n in lab.nodes if mix[n] == "pyvrrp")
    config = pyvrrp_config(node, lab.cluster, run_dir=lab.node_dir(node)).replace(
        "advert_interval = 1.0\n", 'advert_interval = 1.0\nipv4_checksum = "message-only"\n'
    )
    assert config.count("message-only") == 3
    lab.stop(node)
    mark = LogMark(lab)
    lab.start(node, "pyvrrp", config)
    keepalived_nodes = [n for n in lab.nodes if mix[n] == "keepalived"]

    def both_complain() -> bool:
        heard = any(
            re.search(r"\(vip\d+\) Invalid VRRPv3 checksum", mark.new(n)) for n in keepalived_nodes
        )
        return heard and bool(pyvrrp_problems(mark.new(node)))

    # The node hears nobody it can validate, becomes master after Master_Down_Interval and
    # advertises: then keepalived complains too.
    lab.wait_for(both_complain, master_down_interval(50) + 5.0, what="both to complain")
    problems = daemon_problems(lab, mark)
    # One keepalived node complaining is enough (the other may not have heard it yet).
    assert any(keepalived_packet_errors("\n".join(problems.get(n, []))) for n in keepalived_nodes)
    assert "sender includes the IPv4 pseudo-header" in "\n".join(problems[node])


def _tie_cluster(interval: float) -> ClusterSpec:
    """Two nodes with equal priorities for one instance: only the address can decide."""
    base = seed_cluster(2)
    tie = InstanceSpec(
        name="tie58",
        vrid=58,
        priorities={"A": 100, "B": 100},
        addresses=("1.2.3.58/29",),
        excluded_addresses=("2a03:4444:fff0:59:88::58/64",),
        advert_interval=interval,
        health_check=False,
    )
    return dataclasses.replace(base, instances=(tie,), health=None)


@pytest.mark.parametrize(
    "daemons",
    [{"A": "keepalived", "B": "pyvrrp"}, {"A": "pyvrrp", "B": "keepalived"}],
    ids=["keepalived-low-address", "pyvrrp-low-address"],
)
def test_equal_priorities_elect_the_higher_address_across_implementations(
    daemons: Mix,
) -> None:
    """RFC 9568 §6.4.3: a master hearing the same priority from a higher address yields. The
    tie-break applies between two masters only (a backup accepts an equal priority), so both
    nodes start partitioned, become master, and then hear each other: B (192.168.200.2)
    must win against A (192.168.200.1), whichever daemon each runs."""
    interval = 0.3  # the election does not depend on it; a short one keeps the test short
    cluster = _tie_cluster(interval)
    vip = "1.2.3.58"
    with lab_context(cluster, None, keepalived=True) as lab:
        lab.partition([["A"], ["B"]], client_with=1)
        for node in lab.nodes:
            lab.start(node, daemons[node])
        lab.wait_holders({vip: ["A", "B"]}, timeout=master_down_interval(100, interval) + 5.0)
        mark = LogMark(lab)
        lab.heal()
        lab.wait_holders({vip: ["B"]}, timeout=interval + SLACK)
        time.sleep(3 * interval)  # no flapping back
        assert lab.holders()[vip] == ["B"]
        text = mark.new("A")
        yielded = (
            "(tie58) Master received advert from 192.168.200.2 with same priority 100"
            if daemons["A"] == "keepalived"
            else "tie58: MASTER -> BACKUP (192.168.200.2 advertises priority 100 (ours 100))"
        )
        assert yielded in text, text
        assert daemon_problems(lab, mark) == {}


def test_multicast_mixed_cluster_elects_and_hands_over_both_ways() -> None:
    """The same cluster with multicast adverts (224.0.0.18, no unicast_peer): A and C run
    pyvrrp, B keepalived. vip60 goes from pyvrrp C to keepalived B (B is its backup at 75)
    and back; vip59 from keepalived B to pyvrrp A (75) and back."""
    cluster = dataclasses.replace(seed_cluster(), unicast=False)
    daemons: Mix = {"A": "pyvrrp", "B": "keepalived", "C": "pyvrrp"}
    with lab_context(cluster, daemons, keepalived=True) as lab:
        assert "unicast" not in (lab.node_dir("B") / "keepalived.conf").read_text()
        assert "unicast_peers" not in (lab.node_dir("A") / "node.toml").read_text()
        assert lab.holders() == SEED_TABLE
        mark = LogMark(lab)
        with lab.probe([V4["B"], V4["C"]]) as probe:
            time.sleep(0.3)
            lab.stop("C")  # pyvrrp -> keepalived: graceful, nothing lost
            probe.wait_answered_by(V4["C"], "B", timeout=skew_time(75) + 2 * SLACK)
            lab.stop("B")  # keepalived -> pyvrrp: vip59 goes to A (75), and so does vip60
            probe.wait_answered_by(V4["B"], "A", timeout=skew_time(75) + 2 * SLACK)
            time.sleep(0.3)
        report = probe.report()
        assert [s.node for s in report[V4["C"]].timeline] == ["C", "B", "A"], report.format()
        assert report[V4["C"]].handovers[0].gap_s < 0.05, report.format()
        assert [s.node for s in report[V4["B"]].timeline] == ["B", "A"], report.format()
        assert report[V4["B"]].handovers[0].gap_s < skew_time(75) + SLACK, report.format()
        lab.start("B", "keepalived")
        lab.start("C", "pyvrrp")
        lab.wait_holders(SEED_TABLE, timeout=master_down_interval(100) + 3 * SLACK)
        assert daemon_problems(lab, mark) == {}
