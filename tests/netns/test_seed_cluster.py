"""The seed deployment with pyvrrp on every node, in the netns lab: what users feel.

One seed cluster (module fixture: nodes A, B, C, VIPs 1.2.3.58-60 with their IPv6 excluded
twins, unicast adverts, advert interval 1 s) serves every test; before each test
`Lab.reset("pyvrrp", default_configs=True)` undoes every fault, restarts daemons that a test
stopped or started with another configuration, and waits until the cluster is back on the
seed table, so a test that fails half-way does not poison the next one.

Timing bounds come from RFC 9568 §6.1 (see tests/netns/labtools.py) with vip58's priorities
A 100, C 75, B 50: C takes over from a silent A after Master_Down_Interval(75) = 3.71 s and
from a leaving A (priority 0) after Skew_Time(75) = 0.71 s. Margins are for a busy 2-core
machine: the lab, three daemons, the probe and pytest share two cores.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from nslab import Lab, Probe, pyvrrp_config

from tests.netns.labtools import (
    PRIO_58,
    SEED_TABLE,
    V4,
    V6,
    VRID,
    LogMark,
    client_neighbours,
    daemon_problems,
    master_down_interval,
    skew_time,
)

# Scheduling slack on a busy 2-core machine: a daemon or the probe may be descheduled for a
# few hundred milliseconds; the protocol's own deadlines are added to this.
SLACK = 1.0
# garp_delay's default: a new master repeats its announcements 5 s later (docs/keepalived.md).
GARP_DELAY = 5.0


# A cut off from B and C: master of every VIP on its side, while B and C keep theirs.
ISOLATED_A = {V4["A"]: ["A", "C"], V4["B"]: ["A", "B"], V4["C"]: ["A", "C"]}


def log_time(line: str) -> float:
    """Seconds since midnight of a pyvrrp log line (`15:13:37.012 INFO ...`)."""
    stamp = datetime.datetime.strptime(line.split()[0], "%H:%M:%S.%f")
    return stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6


def seconds_since_master(lab: Lab, node: str, instance: str) -> float:
    """How long ago `node`'s log last showed `instance` becoming MASTER (inf if never)."""
    lines = [x for x in lab.log(node).splitlines() if re.search(rf"{instance}: \w+ -> MASTER", x)]
    if not lines:
        return math.inf
    now = datetime.datetime.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    since = (now - midnight).total_seconds() - log_time(lines[-1])
    return since if since >= 0 else since + 86400  # the line is from before midnight


def log_line(text: str, pattern: str) -> str:
    """The first line of `text` matching `pattern` (AssertionError with the text if none)."""
    for line in text.splitlines():
        if re.search(pattern, line):
            return line
    raise AssertionError(f"no line matches {pattern!r} in:\n{text}")


def wait_log(lab: Lab, mark: LogMark, node: str, pattern: str, timeout: float) -> str:
    """Wait until `node`'s log since `mark` has a line matching `pattern`; return it."""
    found: list[str] = []

    def check() -> bool:
        found[:] = [x for x in mark.new(node).splitlines() if re.search(pattern, x)]
        return bool(found)

    lab.wait_for(check, timeout, what=f"{pattern!r} in {node}'s log")
    return found[0]


def answered_only_by_masters(probe: Probe) -> None:
    report = probe.report()
    for node in "ABC":
        for target in (V4[node], V6[node]):
            t = report[target]
            assert t.nodes == {node}, report.format()
            assert t.split_brain == (), report.format()


def test_seed_cluster_converges_to_the_seed_table_and_each_vip_answers_from_its_master(
    lab: Lab,
) -> None:
    assert lab.holders() == SEED_TABLE
    with lab.probe() as probe:
        time.sleep(1.0)
    report = probe.report()
    assert report.finished
    answered_only_by_masters(probe)
    for target in SEED_TABLE:
        t = report[target]
        assert t.sent >= 100, report.format()
        assert t.lost <= t.sent // 50, report.format()
        assert t.max_gap_s < 0.5, report.format()
    for node in "ABC":
        assert "pyvrrp started: vip58 (VRID 58 on eth0.4000" in lab.log(node)
    # Each node became master of its own instance. (Not necessarily of nothing else: on a busy
    # machine one daemon may start a second late, and a backup then holds its VIP until the
    # late master preempts it.)
    for node in "ABC":
        assert f"vip{VRID[node]}: BACKUP -> MASTER" in lab.log(node), lab.log(node)
    assert daemon_problems(lab) == {}


def test_link_cut_moves_vip_to_the_best_backup_after_master_down_interval(lab: Lab) -> None:
    targets = [V4["A"], V6["A"]]
    mark = LogMark(lab)
    with lab.probe([*targets, V4["B"], V4["C"]]) as probe:
        time.sleep(0.3)
        probe.mark("cut")
        lab.cut_link("A")
        for target in targets:
            probe.wait_answered_by(target, "C", timeout=master_down_interval(75) + 2 * SLACK)
        # A hears nothing and stays master (a partition): both hold the VIP. It also becomes
        # master of vip59 and vip60 (nobody to hear); wait for it, or its announcements could
        # reach the client right after the restore and move those VIPs for a moment.
        assert lab.holders()[V4["A"]] == ["A", "C"]
        lab.wait_holders(ISOLATED_A, timeout=1.0 + SLACK)
        time.sleep(0.3)
        probe.mark("restore")
        restored = time.monotonic()
        lab.restore_link("A")
        # The first advert to cross ends it: C hears A's 100 and yields, or A hears C's 75 and
        # re-asserts (RFC 9568 §6.4.3); either way within one advert interval.
        lab.wait_holders(SEED_TABLE, timeout=1.0 + SLACK)
        healed = time.monotonic() - restored
        time.sleep(0.3)
    report = probe.report()
    mdi = master_down_interval(PRIO_58["C"])
    for target in targets:
        t = report[target]
        assert [s.node for s in t.timeline][:2] == ["A", "C"], report.format()
        # C waits Master_Down_Interval after the last advert it heard, sent <= 1 s before the
        # cut: the outage is at least mdi - 1 s and at most mdi (plus slack).
        assert mdi - 1.0 - 0.1 < t.max_gap_s < mdi + SLACK, report.format()
    # The other VIPs never moved.
    assert report[V4["B"]].nodes == {"B"}
    assert report[V4["C"]].nodes == {"C"}
    assert healed < 1.0 + SLACK
    log_line(mark.new("C"), r"vip58: BACKUP -> MASTER \(no advertisement for Master_Down_Interval")
    assert daemon_problems(lab, mark) == {}


def test_sigkill_of_the_master_moves_vip_after_master_down_interval_and_restart_cleans_up(
    lab: Lab,
) -> None:
    with lab.probe([V4["A"], V6["A"]]) as probe:
        time.sleep(0.3)
        probe.mark("kill")
        lab.kill("A")
        # A crash sends nothing and leaves the addresses behind: A's kernel keeps answering
        # until C's gratuitous ARP / unsolicited NA after Master_Down_Interval.
        assert {V4["A"], V6["A"]} <= set(lab.addresses("A"))
        for target in (V4["A"], V6["A"]):
            probe.wait_answered_by(target, "C", timeout=master_down_interval(75) + 2 * SLACK)
        time.sleep(0.3)
    report = probe.report()
    [(_, killed_at)] = report.marks
    mdi = master_down_interval(PRIO_58["C"])
    for target in (V4["A"], V6["A"]):
        t = report[target]
        [handover] = t.handovers
        assert (handover.old, handover.new) == ("A", "C")
        assert mdi - 1.0 - 0.1 < handover.at_s - killed_at < mdi + SLACK, t.timeline_text()
        assert t.max_gap_s < 0.5, t.timeline_text()  # the client lost (next to) nothing
    assert lab.holders()[V4["A"]] == ["A", "C"]  # the stale copy on A

    # Restart A deaf to VRRP, so it cannot become master for Master_Down_Interval(100) = 3.6 s:
    # if its startup cleanup did not remove the stale VIP, we would see it now.
    lab.set_vrrp_loss(100, node="A")
    mark = LogMark(lab)
    lab.start("A", "pyvrrp")
    wait_log(lab, mark, "A", "pyvrrp started", timeout=10)
    holders = lab.holders()
    assert holders[V4["A"]] == ["C"] and holders[V6["A"]] == ["C"], holders
    log_line(mark.new("A"), r"removed 1\.2\.3\.58/29 .*left by a previous run")
    log_line(mark.new("A"), r"removed 2a03:4444:fff0:59:88::58/64 .*left by a previous run")
    lab.clear_loss()
    lab.wait_holders(SEED_TABLE, timeout=1.0 + skew_time(100) + 2 * SLACK)


def test_sigterm_hands_over_gracefully_without_losing_a_probe(lab: Lab) -> None:
    targets = [V4["A"], V6["A"]]
    mark = LogMark(lab)
    with lab.probe(targets) as probe:
        time.sleep(0.3)
        probe.mark("sigterm")
        started = time.monotonic()
        lab.stop("A")  # returns when the daemon has exited
        stop_took = time.monotonic() - started
        for target in targets:
            probe.wait_answered_by(target, "C", timeout=2.0)
        time.sleep(0.3)
    report = probe.report()
    [(_, stopped_at)] = report.marks
    for target in targets:
        t = report[target]
        [handover] = t.handovers
        # Priority 0 makes C wait Skew_Time(75) = 0.71 s (RFC 9568 §6.4.2); A keeps answering
        # meanwhile (graceful handover) and drops the VIP once it hears C.
        assert skew_time(75) - 0.1 < handover.at_s - stopped_at < skew_time(75) + SLACK, (
            t.timeline_text()
        )
        assert handover.gap_s < 0.05, t.timeline_text()
        assert t.lost <= 2, report.format()  # zero, or one request in flight at the switch
        assert t.split_brain == (), report.format()
    # A released as soon as it heard C, well before its release timeout (about 3 s).
    assert stop_took < skew_time(75) + SLACK
    assert V4["A"] not in lab.addresses("A")
    text = mark.new("A")
    log_line(text, r"vip58: MASTER -> INIT \(shutdown\)")
    log_line(text, r"pyvrrp stopped")
    log_line(mark.new("C"), r"vip58: BACKUP -> MASTER \(the master left \(priority 0\)\)")


def test_restarted_master_preempts_back_within_skew_time_of_hearing_the_backup(lab: Lab) -> None:
    lab.stop("A")
    lab.wait_holders({V4["A"]: ["C"]}, timeout=2.0)
    mark = LogMark(lab)
    with lab.probe([V4["A"], V6["A"]]) as probe:
        lab.start("A", "pyvrrp")
        lab.wait_holders(SEED_TABLE, timeout=10)
        for target in (V4["A"], V6["A"]):
            probe.wait_answered_by(target, "A", timeout=2.0)
        time.sleep(0.3)
    text = mark.new("A")
    started = log_time(log_line(text, "pyvrrp started"))
    preempted = log_time(
        log_line(text, r"vip58: BACKUP -> MASTER \(preempting a lower-priority master\)")
    )
    # Fast preemption (docs/design.md): A hears C's priority 75 within one advert interval
    # and takes over Skew_Time(100) = 0.61 s later, not after Master_Down_Interval (3.61 s).
    assert preempted - started < 1.0 + skew_time(100) + 0.5, text
    report = probe.report()
    for target in (V4["A"], V6["A"]):
        t = report[target]
        assert [s.node for s in t.timeline] == ["C", "A"], t.timeline_text()
        assert t.handovers[0].gap_s < 0.1, t.timeline_text()
        assert t.split_brain == (), t.timeline_text()


def test_nopreempt_backup_does_not_take_its_vip_back_but_takes_over_when_needed(
    lab: Lab,
) -> None:
    nopreempt = dataclasses.replace(
        lab.cluster,
        instances=tuple(dataclasses.replace(i, preempt=False) for i in lab.cluster.instances),
    )
    config = pyvrrp_config("A", nopreempt, run_dir=lab.node_dir("A"))
    assert 'state = "backup"' in config and "preempt = false" in config
    lab.stop("A")
    lab.wait_holders({V4["A"]: ["C"]}, timeout=2.0)
    mark = LogMark(lab)
    lab.start("A", "pyvrrp", config)
    wait_log(lab, mark, "A", "pyvrrp started", timeout=10)
    # Preemption would happen Skew_Time(100) = 0.61 s after A hears C's first advert (<= 1 s):
    # 2.5 s is two of C's adverts and more.
    time.sleep(2.5)
    assert lab.holders()[V4["A"]] == ["C"]
    assert "vip58: BACKUP -> MASTER" not in mark.new("A")
    # nopreempt does not mean never: when C leaves, A (100) beats B (50).
    lab.stop("C")
    lab.wait_holders({V4["A"]: ["A"], V4["C"]: ["B"]}, timeout=skew_time(100) + 2 * SLACK)


SPLIT_TARGETS = (V4["A"], V6["A"], V4["B"])
# How many times a split brain test partitions and heals before giving up on forcing the
# order of the first adverts (a heal that took too long on a busy machine is redone).
HEAL_ATTEMPTS = 3


def _partition_then_heal(lab: Lab, probe: Probe, first: str) -> float | None:
    """Partition A (master of vip58) from B, C and the client; wait until C is master too
    (a split brain); heal so that `first`'s vip58 advert is the first to cross.

    C's timer runs Master_Down_Interval(75) = 3.71 s behind A's last advert before the
    partition, so C advertises 0.71 s after A in every second: healing just after C's advert
    lets A's cross first (0.29 s later), healing just after A's lets C's cross first (0.71 s
    later). The kernel's capture times say whether that happened: the first advert after the
    heal must come from `first`, after the nft rule was gone and before the other side's next
    periodic advert (with 0.1 s to spare). Returns when it healed (time.monotonic()), or None
    if the order was not forced (a heal too slow on a busy machine): then try again.
    """
    interval = lab.cluster.instance("vip58").advert_interval
    probe.mark("partition")
    lab.partition([["A"], ["B", "C"]], client_with=1)
    for target in (V4["A"], V6["A"]):
        probe.wait_answered_by(target, "C", timeout=master_down_interval(75) + 2 * SLACK)
    lab.wait_holders(ISOLATED_A, timeout=1.0 + SLACK)  # see the link cut test
    with lab.watch_adverts("A") as watch_a, lab.watch_adverts("C") as watch_c:
        watches = {"A": watch_a, "C": watch_c}
        other = "C" if first == "A" else "A"
        while True:
            previous = watches[other].next(timeout=2.0 + 3 * SLACK, vrid=58)  # busy capture
            # A master repeats its announcements garp_delay (5 s) after becoming master: if
            # A's came after the heal, it would heal the client's cache by luck.
            if seconds_since_master(lab, "A", "vip58") > GARP_DELAY + 0.5:
                break
        started = time.time()
        lab.heal()
        done = time.time()
        healed = time.monotonic()
        winner = watches[first].first_captured(started, timeout=interval + SLACK, vrid=58)
    probe.mark("heal")
    if done <= winner.captured < previous.captured + interval - 0.1:
        return healed
    return None


def _assert_heals_within_one_advert_interval(lab: Lab, probe: Probe, healed: float) -> None:
    lab.wait_holders({V4["A"]: ["A"], V6["A"]: ["A"]}, timeout=1.0 + SLACK)
    assert time.monotonic() - healed < 1.0 + SLACK
    try:
        for target in (V4["A"], V6["A"]):
            probe.wait_answered_by(target, "A", timeout=healed + 1.0 + SLACK - time.monotonic())
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nclient neighbours:\n{client_neighbours(lab)}\n{probe.report().format()}"
        ) from None
    time.sleep(0.3)
    probe.stop()
    report = probe.report()
    assert report[V4["B"]].nodes == {"B"}, report.format()
    for target in (V4["A"], V6["A"]):
        t = report[target]
        assert t.last_node == "A", report.format()
        assert t.split_brain == (), report.format()


def _split_brain_heals(lab: Lab, first: str) -> None:
    for attempt in range(HEAL_ATTEMPTS):
        if attempt:
            lab.reset("pyvrrp", timeout=40)
        with lab.probe(SPLIT_TARGETS) as probe:
            healed = _partition_then_heal(lab, probe, first)
            if healed is not None:
                _assert_heals_within_one_advert_interval(lab, probe, healed)
                return
    pytest.fail(f"could not make {first}'s advert cross first in {HEAL_ATTEMPTS} heals")


def test_split_brain_heals_to_one_master_when_the_real_master_hears_the_intruder_first(
    lab: Lab,
) -> None:
    """C's advert crosses first: A (100) hears a lower priority, re-asserts at once and
    re-announces (RFC 9568 §6.4.3, docs/keepalived.md), C hears A and yields. The client, whose
    neighbour cache C's announcements had moved, follows A's announcements within one
    advert interval of the heal."""
    _split_brain_heals(lab, first="C")


def test_split_brain_heals_to_one_master_when_the_intruder_hears_the_real_master_first(
    lab: Lab,
) -> None:
    """A's advert crosses first: C (75) hears a higher priority and yields (RFC 9568
    §6.4.3). The client's neighbour cache still points at C, which no longer answers: someone
    must re-announce. C's parting advertisement (at its own priority, as keepalived's
    higher_prio_send_advert) makes A hear a lower priority, re-assert and re-announce; without
    it the client would wait for its own neighbour unreachability detection (about 8 s). The
    client must reach A within one advert interval, as when A hears C first."""
    _split_brain_heals(lab, first="A")


def test_dummy0_down_puts_the_master_in_fault_and_moves_its_vip_after_skew_time(lab: Lab) -> None:
    mark = LogMark(lab)
    with lab.probe([V4["A"], V6["A"]]) as probe:
        time.sleep(0.3)
        probe.mark("dummy0 down")
        lab.dummy_down("A")
        # FAULT sends priority 0 and removes the addresses at once (a fault is not a planned
        # handover): C takes over after Skew_Time(75) = 0.71 s, far below Master_Down_Interval.
        lab.wait_holders(
            {V4["A"]: ["C"], V6["A"]: ["C"], V4["B"]: ["B"]}, timeout=skew_time(75) + SLACK
        )
        assert not {V4["B"], V4["C"]} & set(lab.addresses("A"))
        log_line(mark.new("A"), r"vip58: MASTER -> FAULT")
        log_line(mark.new("A"), r"vip59: BACKUP -> FAULT")
        time.sleep(0.3)
        probe.mark("dummy0 up")
        lab.dummy_up("A")
        # Back to BACKUP with a full down timer, then A preempts C (fast preemption).
        lab.wait_holders(SEED_TABLE, timeout=1.0 + skew_time(100) + 2 * SLACK)
        probe.wait_answered_by(V4["A"], "A", timeout=2.0)
    report = probe.report()
    t = report[V4["A"]]
    assert [s.node for s in t.timeline] == ["A", "C", "A"], report.format()
    assert t.max_gap_s < skew_time(75) + SLACK, report.format()


def test_unhealthy_master_drops_below_its_backups_and_the_vip_moves(lab: Lab) -> None:
    hc = lab.cluster.health
    assert hc is not None
    started = time.monotonic()
    lab.set_healthy("A", False)
    # fall runs of the check (the first may start up to one interval later), then A
    # advertises 100 - 60 = 40 at once and C (75) preempts after Skew_Time(75).
    bound = (hc.fall + 1) * hc.interval + skew_time(75) + 2 * SLACK
    lab.wait_holders({V4["A"]: ["C"], V6["A"]: ["C"]}, timeout=bound)
    took = time.monotonic() - started
    assert took > (hc.fall - 1) * hc.interval, f"moved after {took:.1f} s: before fall checks"
    assert lab.holders()[V4["B"]] == ["B"]
    lab.set_healthy("A", True)
    lab.wait_holders(SEED_TABLE, timeout=(hc.rise + 1) * hc.interval + 1.0 + 2 * SLACK)


def _instances(status: Any) -> dict[str, Any]:
    instances = status.get("instances") if isinstance(status, dict) else None
    assert isinstance(instances, dict), status
    return instances


def test_pyvrrp_status_shows_each_instance_state_priority_and_master(lab: Lab) -> None:
    # docs/operations.md, `pyvrrp status --json`.
    for node in "ABC":
        instances = _instances(lab.status(node))
        assert set(instances) == {"vip58", "vip59", "vip60"}
        for name, info in instances.items():
            mine = name == f"vip{VRID[node]}"
            assert info["state"] == ("MASTER" if mine else "BACKUP"), info
            assert info["holding_addresses"] is mine, info
            assert info["base_priority"] == info["effective_priority"], info
        assert instances["vip58"]["master"]["address"] == "192.168.200.1"
        assert instances["vip58"]["master"]["priority"] == 100


def test_a_running_seed_daemon_has_not_loaded_openssl(lab: Lab) -> None:
    # docs/design.md, "The daemon's memory": ssl and hmac (OpenSSL, about 5 MB) load only when
    # a mail goes out with STARTTLS, which the seed does not send. Loaded, their extension
    # modules and libraries would be mapped into the daemon.
    for node in "ABC":
        (pid,) = lab.daemon_pids(node)
        libraries = {
            Path(line.split()[-1]).name
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if line.split()[-1].startswith("/")
        }
        assert any(name.startswith("libpython") or "python" in name for name in libraries)
        openssl = {
            name
            for name in libraries
            if name.startswith(("_ssl.", "_hashlib.", "libssl.", "libcrypto."))
        }
        assert openssl == set(), node
