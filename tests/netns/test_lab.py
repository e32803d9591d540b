"""The netns lab, validated with real keepalived 2.2.7 as every node's daemon.

One seed cluster (module fixture) serves the failover tests; before each test `Lab.reset()`
undoes every fault and waits until the cluster is back on the seed table, so a test that fails
half-way does not poison the next one. Timing bounds come from RFC 9568 §6.1 with keepalived's
1 s advert interval: Master_Down_Interval = 3 * 1 + Skew_Time, Skew_Time = (256 - prio) / 256,
so C (priority 75) waits 3.71 s; margins are wide enough for a busy 2-core machine.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator

import pytest
from nslab import (
    ClusterSpec,
    InstanceSpec,
    Lab,
    LabError,
    analyse,
    keepalived_config,
    pyvrrp_config,
    seed_cluster,
)
from nslab.system import pid_alive

from tests.conftest import netns_unavailable_reason
from tests.netns.labtools import master_down_interval

V4 = {"A": "1.2.3.58", "B": "1.2.3.59", "C": "1.2.3.60"}
V6 = {
    "A": "2a03:4444:fff0:59:88::58",
    "B": "2a03:4444:fff0:59:88::59",
    "C": "2a03:4444:fff0:59:88::60",
}
# docs/hetzner-vswitch.md: each node is master of its own VIP and excluded address.
SEED_TABLE = {addr[n]: [n] for addr in (V4, V6) for n in "ABC"}


def _require_lab_environment() -> None:
    """Module fixtures run before conftest's per-test guard: apply its policy here too."""
    reason = netns_unavailable_reason()
    if reason is None and shutil.which("keepalived") is None:
        reason = "keepalived is missing (apt-get install keepalived)"
    if reason is not None:
        if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
            pytest.fail(f"{reason} (PYVRRP_REQUIRE_NETNS=1 forbids skipping)")
        pytest.skip(reason)


def _host_nft_tables() -> str:
    return subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=False
    ).stdout


def assert_torn_down(lab: Lab, pids: list[int]) -> None:
    """Nothing the lab created is left: namespaces, processes, nft tables, temp dir."""
    assert lab.namespaces() == []
    assert [p for p in pids if pid_alive(p)] == []
    assert not lab.tmp.exists()
    assert lab.nft_tables() == []
    assert "nslab" not in _host_nft_tables()


@pytest.fixture(scope="module")
def seed_lab() -> Iterator[Lab]:
    _require_lab_environment()
    lab = Lab(seed_cluster())
    pids: list[int] = []
    try:
        lab.up()
        lab.start_all("keepalived")
        lab.wait_converged(timeout=30)
        yield lab
    finally:
        pids = lab.processes()
        lab.down()
    assert_torn_down(lab, pids)


@pytest.fixture
def lab(seed_lab: Lab) -> Lab:
    seed_lab.reset(timeout=40)
    return seed_lab


def test_generated_keepalived_configs_pass_keepalived_config_test(lab: Lab) -> None:
    c = seed_cluster()
    v6_only = InstanceSpec(
        name="v6only",
        vrid=61,
        priorities={"A": 100, "B": 90, "C": 80},
        addresses=("2a03:4444:fff0:59:88::61/64",),
        master="A",
    )
    variants = {
        "seed": c,
        "multicast": dataclasses.replace(c, unicast=False),
        "nopreempt": dataclasses.replace(
            c,
            instances=tuple(
                dataclasses.replace(i, preempt=False, advert_interval=0.3) for i in c.instances
            ),
        ),
        "ipv6-only": dataclasses.replace(c, instances=(v6_only,)),
        "extra-node": c.with_nodes("D"),
        # keepalived's default VRRPv2 (no version line) with a PASS password.
        "vrrpv2-pass": dataclasses.replace(
            c,
            instances=tuple(
                dataclasses.replace(i, version=2, auth_pass="secret") for i in c.instances
            ),
        ),
    }
    for name, spec in variants.items():
        text = keepalived_config("A", spec)
        v3 = [i for i in spec.instances_of("A") if i.version == 3]
        assert text.count("version 3") == len(v3), name
        conf = lab.node_dir("A") / f"check-{name}.conf"
        conf.write_text(text)
        # keepalived -t resolves interfaces, so it runs inside a node namespace.
        done = lab.run_in("A", "keepalived", "-t", "-f", str(conf), check=False)
        assert done.returncode == 0, f"{name}: {done.stderr}"
    assert "unicast_peer" not in keepalived_config("A", variants["multicast"])
    nopreempt = keepalived_config("A", variants["nopreempt"])
    assert "nopreempt" in nopreempt
    assert "state MASTER" not in nopreempt  # keepalived ignores nopreempt with state MASTER
    v2 = keepalived_config("A", variants["vrrpv2-pass"])
    assert "version" not in v2 and v2.count("auth_pass secret") == 3


def test_generated_node_toml_follows_the_contract(lab: Lab) -> None:
    run_dir = lab.node_dir("B")
    doc = tomllib.loads(pyvrrp_config("B", seed_cluster(), run_dir=run_dir))
    assert doc["global"]["control_socket"] == str(run_dir / "pyvrrp.sock")
    assert doc["global"]["state_dir"] == str(run_dir / "state")
    script = doc["scripts"]["chk_nginx_ingress"]
    assert (script["interval"], script["fall"], script["rise"], script["weight"]) == (
        2.0,
        2,
        2,
        -60,
    )
    vip59 = doc["instances"]["vip59"]
    assert vip59 == {
        "interface": "eth0.4000",
        "vrid": 59,
        "priority": 100,
        "state": "master",
        "advert_interval": 1.0,
        "preempt": True,
        "unicast_source": "192.168.200.2",
        "unicast_peers": ["192.168.200.1", "192.168.200.3"],
        "addresses": ["1.2.3.59/29"],
        "excluded_addresses": ["2a03:4444:fff0:59:88::59/64"],
        "track_interfaces": ["eth0", "dummy0"],
        "track_scripts": ["chk_nginx_ingress"],
    }
    assert {n: i["priority"] for n, i in doc["instances"].items()} == {
        "vip58": 50,
        "vip59": 100,
        "vip60": 75,
    }
    # pyvrrp's own validator accepts what the lab generates, for every node.
    for node in "ABC":
        conf = lab.node_dir(node) / "check-node.toml"
        conf.write_text(pyvrrp_config(node, seed_cluster(), run_dir=lab.node_dir(node)))
        done = lab.run_in(
            node, sys.executable, "-m", "pyvrrp", "check", "-c", str(conf), check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_vrrp_version_and_password_are_rendered_for_both_daemons(lab: Lab) -> None:
    base = seed_cluster()

    def spec(version: int | str, auth_pass: str | None) -> ClusterSpec:
        instances = tuple(
            dataclasses.replace(i, version=version, auth_pass=auth_pass) for i in base.instances
        )
        return dataclasses.replace(base, instances=instances)

    doc = tomllib.loads(pyvrrp_config("B", spec("2+3", "pw"), run_dir=lab.node_dir("B")))
    assert {(i["version"], i["auth_pass"]) for i in doc["instances"].values()} == {("2+3", "pw")}
    doc = tomllib.loads(pyvrrp_config("B", spec(2, None), run_dir=lab.node_dir("B")))
    assert {i["version"] for i in doc["instances"].values()} == {2}
    assert (
        "version"
        not in tomllib.loads(pyvrrp_config("B", base, run_dir=lab.node_dir("B")))["instances"][
            "vip59"
        ]
    )
    with pytest.raises(ValueError, match="keepalived has no migration mode"):
        keepalived_config("A", spec("2+3", None))
    with pytest.raises(ValueError, match="auth_pass needs version 2"):
        spec(3, "pw")
    with pytest.raises(ValueError, match="2, 3 or '2\\+3'"):
        spec(4, None)
    conf = lab.node_dir("B") / "check-v2.toml"
    conf.write_text(pyvrrp_config("B", spec("2+3", "pw"), run_dir=lab.node_dir("B")))
    done = lab.run_in("B", sys.executable, "-m", "pyvrrp", "check", "-c", str(conf), check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_seed_cluster_converges_to_the_seed_table(lab: Lab) -> None:
    assert lab.holders() == SEED_TABLE
    for node in "ABC":
        log = lab.log(node)
        assert "VRRP_Script(chk_nginx_ingress) succeeded" in log, "health check never ran"
        assert "SECURITY VIOLATION" not in log


def test_probe_sees_each_vip_answered_by_its_master(lab: Lab) -> None:
    with lab.probe() as probe:
        time.sleep(1.0)
    report = probe.report()
    assert report.finished
    for node in "ABC":
        for target in (V4[node], V6[node]):
            t = report[target]
            assert t.nodes == {node}, t.timeline_text()
            assert t.sent >= 100
            assert t.lost <= t.sent // 50, f"{target}: {t.lost} of {t.sent} lost"
            assert t.split_brain == ()
            assert t.max_gap_s < 0.5


def test_cutting_master_link_moves_vip_to_best_backup_and_restore_preempts_back(lab: Lab) -> None:
    targets = [V4["A"], V6["A"]]
    with lab.probe(targets) as probe:
        time.sleep(0.3)
        probe.mark("cut")
        lab.cut_link("A")
        for target in targets:
            probe.wait_answered_by(target, "C", timeout=15)
        # A hears nothing and stays master (a partition): both hold the VIP.
        assert lab.holders()[V4["A"]] == ["A", "C"]
        time.sleep(0.3)
        probe.mark("restore")
        lab.restore_link("A")
        lab.wait_holders(SEED_TABLE, timeout=15)
        for target in targets:
            probe.wait_answered_by(target, "A", timeout=10)
        time.sleep(0.3)
    report = probe.report()
    mdi = master_down_interval(75)
    for target in targets:
        t = report[target]
        assert [s.node for s in t.timeline] == ["A", "C", "A"], report.format()
        # C waits Master_Down_Interval after the last advert it heard, sent <= 1 s before the
        # cut: the outage is at least mdi - 1 s, and not much more than mdi.
        assert mdi - 1.0 - 0.2 < t.max_gap_s < 6.0, report.format()
        assert t.handovers[1].gap_s < 1.0, "preemption back to A should be seamless"


def test_dummy0_down_faults_master_and_dummy0_up_brings_vip_back(lab: Lab) -> None:
    targets = [V4["A"], V6["A"]]
    with lab.probe(targets) as probe:
        time.sleep(0.3)
        lab.dummy_down("A")
        # FAULT removes A's addresses at once and sends priority 0 (docs/keepalived.md): C takes
        # over after Skew_Time instead of Master_Down_Interval.
        lab.wait_holders({V4["A"]: ["C"], V6["A"]: ["C"], V4["B"]: ["B"]}, timeout=10)
        for target in targets:
            probe.wait_answered_by(target, "C", timeout=10)
        assert "(vip58) Entering FAULT STATE" in lab.log("A")
        assert not {V4["B"], V4["C"]} & set(lab.addresses("A"))
        lab.dummy_up("A")
        lab.wait_holders(SEED_TABLE, timeout=15)
        for target in targets:
            probe.wait_answered_by(target, "A", timeout=10)
    report = probe.report()
    for target in targets:
        t = report[target]
        assert [s.node for s in t.timeline] == ["A", "C", "A"], report.format()
        assert 0 < t.max_gap_s < master_down_interval(75), report.format()


def test_unhealthy_master_loses_vip_within_fall_times_interval_plus_master_down(lab: Lab) -> None:
    hc = lab.cluster.health
    assert hc is not None
    mdi = master_down_interval(75)
    # fall checks, the advert carrying the lowered priority (<= 1 advert interval later),
    # then C's Master_Down_Interval (RFC 9568 §6.4.2: a lower-priority advert is ignored).
    bound = hc.fall * hc.interval + 1.0 + mdi + 3.0
    start = time.monotonic()
    lab.set_healthy("A", False)
    lab.wait_holders({V4["A"]: ["C"], V6["A"]: ["C"]}, timeout=bound + 5)
    took = time.monotonic() - start
    assert took < bound, f"VIP moved after {took:.1f} s, bound {bound:.1f} s"
    assert took > mdi - 1.0, "a health check failure cannot beat Master_Down_Interval"
    assert lab.holders()[V4["B"]] == ["B"]
    lab.set_healthy("A", True)
    lab.wait_holders(SEED_TABLE, timeout=hc.rise * hc.interval + 1.0 + mdi + 8.0)


def test_sigterm_hands_over_after_skew_time_and_sigkill_after_master_down(lab: Lab) -> None:
    targets = [V4["A"]]
    with lab.probe(targets) as probe:
        time.sleep(0.3)
        lab.stop("A")  # keepalived's graceful stop: priority 0 advert, addresses removed
        assert V4["A"] not in lab.addresses("A")
        probe.wait_answered_by(V4["A"], "C", timeout=10)
    graceful = probe.report()[V4["A"]]
    assert graceful.max_gap_s < master_down_interval(75), graceful.timeline_text()

    lab.start("A")
    lab.wait_holders(SEED_TABLE, timeout=20)
    pids = lab.daemon_pids("A")
    assert len(pids) == 2, "keepalived forks its VRRP child"
    with lab.probe(targets) as probe:
        time.sleep(0.3)
        probe.mark("kill")
        lab.kill("A")
        assert [p for p in pids if pid_alive(p)] == []
        # A crash sends nothing and leaves the address behind: A's kernel keeps answering
        # until C's gratuitous ARPs after Master_Down_Interval move the client over.
        assert V4["A"] in lab.addresses("A")
        probe.wait_answered_by(V4["A"], "C", timeout=15)
        time.sleep(0.3)
    report = probe.report()
    crash = report[V4["A"]]
    [(_, killed_at)] = report.marks
    [handover] = crash.handovers
    mdi = master_down_interval(75)
    assert mdi - 1.0 - 0.2 < handover.at_s - killed_at < 6.0, crash.timeline_text()
    assert crash.max_gap_s < 1.0, crash.timeline_text()


def test_partition_keeps_client_with_chosen_group(lab: Lab) -> None:
    with lab.probe([V4["A"], V4["B"]]) as probe:
        time.sleep(0.3)
        lab.partition([["A"], ["B", "C"]], client_with=1)
        probe.wait_answered_by(V4["A"], "C", timeout=15)
        # Isolated A becomes master of everything; B and C keep theirs.
        lab.wait_holders({V4["B"]: ["A", "B"], V4["C"]: ["A", "C"]}, timeout=15)
        lab.heal()
        lab.wait_holders(SEED_TABLE, timeout=15)
    report = probe.report()
    assert report[V4["B"]].nodes == {"B"}, report.format()


def test_total_vrrp_loss_on_a_backup_makes_it_claim_every_vip(lab: Lab) -> None:
    lab.set_vrrp_loss(100, node="C")
    assert lab.nft_tables() == [(lab.ns("C"), "inet nslab_loss")]
    lab.wait_holders({V4["A"]: ["A", "C"], V4["B"]: ["B", "C"]}, timeout=15)
    lab.clear_loss()
    assert lab.nft_tables() == []
    lab.wait_holders(SEED_TABLE, timeout=15)


def test_teardown_removes_everything_even_when_the_body_raises() -> None:
    _require_lab_environment()
    lab = Lab(seed_cluster(2))
    seen: dict[str, list[int] | list[str]] = {}

    def use_then_fail() -> None:
        with lab:
            lab.start_all("keepalived")
            lab.wait_for(
                lambda: all(len(lab.daemon_pids(n)) == 2 for n in lab.nodes),
                10,
                what="keepalived's children",
            )
            lab.partition([["A"], ["B"]])
            lab.set_vrrp_loss(30)
            lab.probe()
            seen["pids"] = lab.processes()
            seen["namespaces"] = lab.namespaces()
            seen["nft"] = [len(lab.nft_tables())]
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        use_then_fail()
    pids = [int(p) for p in seen["pids"]]
    assert len(pids) == 2 * 2 + 2 + 1  # keepalived parent and child per node, agents, probe
    assert len(seen["namespaces"]) == 4
    assert seen["nft"] == [3]
    assert_torn_down(lab, pids)


def test_refuses_to_start_over_existing_namespaces_and_leaves_them_alone() -> None:
    _require_lab_environment()
    lab = Lab(seed_cluster(1))
    stale = f"{lab.prefix}-{lab.id}-A"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with pytest.raises(LabError, match=re.escape(f"lab.py down --id {lab.id}")):
            lab.up()
        assert lab.namespaces() == [stale]
    finally:
        subprocess.run(["ip", "netns", "delete", stale], check=False)


def test_stop_escalates_to_sigkill_for_a_daemon_ignoring_the_signal(lab: Lab) -> None:
    # SIGCONT changes nothing for a running process: stop() must still end the daemon.
    pids = lab.daemon_pids("B")
    with pytest.raises(LabError, match="killed"):
        lab.stop("B", signal.SIGCONT, timeout=1.0)
    assert [p for p in pids if pid_alive(p)] == []


def _record(answers: list[tuple[float, int, str]], sent: int) -> list[str]:
    """A synthetic prober record: answers (seconds, seq, node) for target 1.2.3.58."""
    ms = 1_000_000
    lines = [f"B {1000 * ms} {5 * ms} 1.2.3.58"]
    lines += [f"A {int((1 + t) * 1000 * ms)} {seq} {node} 1.2.3.58" for t, seq, node in answers]
    lines.append(f"E {int((1 + sent * 0.005) * 1000 * ms)} {sent}")
    return lines


def test_probe_analysis_reports_outage_handover_and_no_split_brain_for_clean_failover() -> None:
    answers = [(i * 0.005, i, "A") for i in range(100)]  # A until 0.495 s
    answers += [(i * 0.005, i, "C") for i in range(700, 800)]  # C from 3.5 s
    report = analyse(_record(answers, 800))
    t = report["1.2.3.58"]
    assert (t.sent, t.answers, t.lost) == (800, 200, 600)
    assert t.max_gap_s == pytest.approx(3.005)
    assert t.max_gap_at_s == pytest.approx(0.495)
    assert [(s.node, s.answers) for s in t.timeline] == [("A", 100), ("C", 100)]
    assert [(h.old, h.new) for h in t.handovers] == [("A", "C")]
    assert t.split_brain == ()


def test_probe_analysis_flags_interleaved_answers_from_two_nodes_as_split_brain() -> None:
    nodes = ["A", "A", "C", "A", "C", "C"] + ["C"] * 20
    answers = [(i * 0.005, i, n) for i, n in enumerate(nodes)]
    answers.append((0.0051, 1, "C"))  # request 1 answered by both
    t = analyse(_record(answers, len(nodes)))["1.2.3.58"]
    assert len(t.split_brain) == 1
    assert t.split_brain[0].nodes == ("A", "C")
    assert t.duplicates == 1
    assert t.lost == 0
