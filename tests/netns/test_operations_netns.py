"""Operating pyvrrp on the real kernel: metrics, reload, SIGHUP, cleanup after SIGKILL,
re-assertion of what was removed behind its back, and a second daemon refused.

The seed cluster (docs/hetzner-vswitch.md) with pyvrrp on A, B and C, each node's generated
node.toml plus `metrics_listen = "127.0.0.1:9650"` (in the node's own namespace) and, on vip58,
a virtual route and rule (docs/configuration.md, "Virtual routes and rules") so that cleanup and
re-assertion have routes and rules to work on:

    virtual_routes = [{ to = "198.51.100.0/24", dev = "eth0.4000", table = 101 }]
    virtual_rules = [{ from = "1.2.3.58/32", to = "198.51.100.0/24", table = 101,
                       priority = 900 }]

Hardening on the same lab: advertisements from a host outside `unicast_peers` (the client's
namespace, given an address on the segment for the test) are dropped, counted and logged
once, and accepted with `unicast_peers_only = false`; a master whose excluded address is
already on its interface with another prefix gives vip58 up to C three intervals after
taking it, and takes it back once the conflict is gone.

One lab serves the module. Before each test every node's file is put back (a test that edits
one restores it itself; a failed one may not have) and `Lab.reset` restarts missing daemons and
waits for the seed table: A masters vip58 (1.2.3.58 and its excluded IPv6 twin), C (75) is its
best backup.

Timing bounds come from RFC 9568 §6.1 (Skew_Time(75) = 0.707 s for C, Skew_Time(100) =
0.609 s for a preempting A) plus margins for a busy 2-core machine, explained where used.
Measured on the 2-core development machine (idle, and again with two CPU hogs or the other
netns modules running beside): a reload answers in 0.15 s; removing vip58 by reload moved it
to C 0.717 s after A's priority-0 advert (bound 0.957 s) with no lost probe
(HANDOVER_RACE_LOSS); a deleted VIP was back in 5-13 ms with no lost probe; a deleted virtual
route and rule were back after 7-9 s (REASSERT_INTERVAL is 10 s); the whole module takes
about 35 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from nslab import ClusterSpec, Lab, pyvrrp_config, seed_cluster

from pyvrrp.runtime.netlink import in_netns
from pyvrrp.runtime.node import REASSERT_INTERVAL
from tests.netns.labtools import (
    PRIO_58,
    SEED_TABLE,
    V4,
    V6,
    LogMark,
    adverts_seen,
    first_advert,
    first_answer,
    lab_context,
    probe_origin,
    skew_time,
)

INTERVAL = 1.0  # advert_interval of every seed instance
METRICS = "127.0.0.1:9650"
ROUTE_NET = "198.51.100.0/24"
RULE_PRIORITY = 900
VIRTUAL = (
    f'virtual_routes = [{{ to = "{ROUTE_NET}", dev = "eth0.4000", table = 101 }}]\n'
    f'virtual_rules = [{{ from = "1.2.3.58/32", to = "{ROUTE_NET}", table = 101, '
    f"priority = {RULE_PRIORITY} }}]\n"
)
EXTRA_VIP = "1.2.3.61"  # in the seed's /29, used by no instance
VIP58 = (V4["A"], V6["A"])
# Scheduling slack on a busy 2-core machine, added to the protocol's deadlines where a test
# waits for something: generous, because a wait that ends early costs nothing.
SLACK = 1.0
# A takeover's budget, as in test_tracking_netns: the daemon's 100 ms (timer wake-up, advert,
# netlink, gratuitous ARP / NA) and a busy machine's 150 ms (each wake-up in the chain may wait
# a scheduling period for a CPU).
TAKEOVER_MARGIN = 0.1 + 0.15
TRANSITION = re.compile(r" \w+ -> \w+ \(")
# A graceful handover loses no probe (see test_tracking_netns: the leaving master keeps its
# addresses until HANDOVER_GRACE after the new master's first advertisement).
HANDOVER_RACE_LOSS = 0


def ops_config(lab: Lab, node: str, cluster: ClusterSpec | None = None) -> str:
    """`node`'s node.toml: the lab's generated one, metrics on, vip58's route and rule."""
    text = pyvrrp_config(
        node, cluster or lab.cluster, run_dir=lab.node_dir(node), metrics_listen=METRICS
    )
    header = "[instances.vip58]\n"
    return text.replace(header, header + VIRTUAL) if header in text else text


def with_vip58(lab: Lab, change: Any) -> ClusterSpec:
    """The lab's cluster with vip58 replaced by `change(vip58)` (None: removed)."""
    instances = []
    for inst in lab.cluster.instances:
        if inst.name == "vip58":
            inst = change(inst)
        if inst is not None:
            instances.append(inst)
    return dataclasses.replace(lab.cluster, instances=tuple(instances))


def extra_vip_config(lab: Lab) -> str:
    """A's file with a second VIP on vip58."""
    cluster = with_vip58(
        lab, lambda i: dataclasses.replace(i, addresses=(*i.addresses, f"{EXTRA_VIP}/29"))
    )
    return ops_config(lab, "A", cluster)


@pytest.fixture(scope="module")
def ops_lab() -> Iterator[Lab]:
    with lab_context(seed_cluster(), None) as lab:
        for node in lab.nodes:
            lab.start(node, "pyvrrp", ops_config(lab, node))
        lab.wait_converged(timeout=30)
        yield lab


@pytest.fixture
def lab(ops_lab: Lab) -> Lab:
    changed = []
    for node in ops_lab.nodes:
        conf = ops_lab.node_dir(node) / "node.toml"
        if conf.read_text() != ops_config(ops_lab, node):
            conf.write_text(ops_config(ops_lab, node))
            if ops_lab.running(node):
                changed.append(node)
    # reset() starts them again, with the file's text; the test is over: no handover to wait.
    ops_lab.stop_many(changed, immediate=True)
    ops_lab.reset(timeout=40)
    return ops_lab


# --------------------------------------------------------------------------- helpers


def pyvrrp(lab: Lab, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`pyvrrp ARGS -c node.toml` in `node`'s namespace (the daemon's own file), not checked."""
    conf = str(lab.node_dir(node) / "node.toml")
    return lab.run_in(node, sys.executable, "-m", "pyvrrp", *args, "-c", conf, check=False)


def write_config(lab: Lab, node: str, text: str) -> None:
    (lab.node_dir(node) / "node.toml").write_text(text)


def sighup(lab: Lab, node: str) -> None:
    """SIGHUP to `node`'s daemon (`ip netns exec` execs it: the pid the lab started)."""
    (pid,) = lab.daemon_pids(node)
    os.kill(pid, signal.SIGHUP)


def holds(lab: Lab, node: str, address: str) -> bool:
    return address in lab.addresses(node)


def has_route(lab: Lab, node: str) -> bool:
    return ROUTE_NET in lab.run_in(node, "ip", "route", "show", "table", "101").stdout


def has_rule(lab: Lab, node: str) -> bool:
    rules = lab.run_in(node, "ip", "rule", "show").stdout
    return re.search(rf"^{RULE_PRIORITY}:\s", rules, re.MULTILINE) is not None


def transitions(text: str) -> list[str]:
    return [line for line in text.splitlines() if TRANSITION.search(line)]


def wait_log(lab: Lab, mark: LogMark, node: str, text: str, timeout: float = 5) -> None:
    lab.wait_for(lambda: text in mark.new(node), timeout, what=f"{text!r} in {node}'s log")


def assert_seed_untouched(lab: Lab, report: Any, mark: LogMark) -> None:
    """Every VIP answered by its own master only, no probe lost, no state change logged."""
    for node in "ABC":
        for target in (V4[node], V6[node]):
            t = report[target]
            assert (t.nodes, t.lost) == ({node}, 0), report.format()
        assert transitions(mark.new(node)) == [], mark.new(node)


ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


class Announcements:
    """The gratuitous ARPs and unsolicited NAs a node sends, read on its vSwitch port (an
    AF_PACKET socket in the switch namespace; frames towards the node are left out)."""

    def __init__(self, lab: Lab, node: str) -> None:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((f"port-{node}", 0))
            sock.setblocking(False)
            return sock

        self._sock = in_netns(lab.switch_ns, make)
        self.seen: Counter[str] = Counter()

    def read(self) -> Counter[str]:
        """How many announcements each address got so far."""
        while True:
            try:
                frame, address = self._sock.recvfrom(65535)
            except BlockingIOError:
                return self.seen
            if address[2] != PACKET_OUTGOING:
                announced = _announced_address(frame)
                if announced is not None:
                    self.seen[announced] += 1

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Announcements:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _announced_address(frame: bytes) -> str | None:
    """The address a gratuitous ARP (sender = target, RFC 5227 §3) or an unsolicited NA
    (Solicited flag clear, RFC 4861 §7.2.6) announces; None for any other frame."""
    kind = int.from_bytes(frame[12:14], "big")
    if kind == 0x0806 and len(frame) >= 42 and frame[28:32] == frame[38:42]:
        return str(ipaddress.IPv4Address(frame[28:32]))
    icmpv6 = kind == 0x86DD and len(frame) >= 78 and frame[20] == 58
    if icmpv6 and frame[54] == 136 and not frame[58] & 0x40:
        return str(ipaddress.IPv6Address(frame[62:78]))
    return None


# --------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """A parsed Prometheus text exposition (the samples; comments are skipped)."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            assert match is not None, f"not a sample line: {line!r}"
            labels = dict(_LABEL.findall(match.group(2) or ""))
            self.samples.append((match.group(1), labels, float(match.group(3))))

    def find(self, name: str, **labels: str) -> list[float]:
        """Values of the samples of `name` whose labels include `labels`."""
        return [
            value
            for sample, have, value in self.samples
            if sample == name and labels.items() <= have.items()
        ]

    def one(self, name: str, **labels: str) -> float:
        values = self.find(name, **labels)
        assert len(values) == 1, (name, labels, values)
        return values[0]


def scrape(lab: Lab, node: str) -> tuple[str, Metrics]:
    """GET /metrics inside `node`'s namespace: (the headers, the parsed body)."""
    done = lab.run_in(node, "curl", "-sS", "-i", "--max-time", "10", f"http://{METRICS}/metrics")
    # Text mode turned the CRLFs of the head into newlines.
    head, _, body = done.stdout.partition("\n\n")
    return head, Metrics(body)


def assert_metrics_match_status(lab: Lab, node: str) -> Any:
    """Scrape `node`'s /metrics between two `pyvrrp status --json` and check that every
    metric says what the status says (docs/metrics.md, "From pyvrrp status to metrics"):
    gauges equal (nothing moves meanwhile), counters between the two snapshots. Returns the
    later status."""
    before = lab.status(node)
    head, metrics = scrape(lab, node)
    after = lab.status(node)
    assert head.startswith("HTTP/1.1 200"), head
    assert "Content-Type: text/plain; version=0.0.4; charset=utf-8" in head, head
    info = {"router_id": node, "version": before["version"]}
    assert metrics.one("pyvrrp_build_info", **info) == 1

    for name, first in before["instances"].items():
        last = after["instances"][name]
        labels = {
            "vrrp_instance": name,
            "vrid": str(first["vrid"]),
            "interface": first["interface"],
            "family": first["family"],
        }

        def gauge(metric: str, **extra: str) -> float:
            return metrics.one(f"pyvrrp_{metric}", **labels, **extra)  # noqa: B023

        for key in ("state", "effective_priority", "master", "maintenance", "faults"):
            assert first[key] == last[key], (node, name, key, first[key], last[key])
        for state in ("INIT", "BACKUP", "MASTER", "FAULT"):
            assert gauge("instance_state", state=state) == (first["state"] == state)
        assert gauge("instance_base_priority") == first["base_priority"]
        assert gauge("instance_effective_priority") == first["effective_priority"]
        master = metrics.find("pyvrrp_instance_master_priority", **labels)
        # Absent while no master is known (in FAULT, for one).
        assert master == ([first["master"]["priority"]] if first["master"] else []), master
        assert gauge("instance_holding_addresses") == first["holding_addresses"]
        assert gauge("instance_maintenance") == first["maintenance"]
        assert gauge("instance_advert_interval_seconds") == first["advert_interval"]
        interval = gauge("instance_master_advert_interval_seconds")
        assert interval == first["master_advert_interval"]
        since = gauge("instance_last_transition_timestamp_seconds")
        # Both are "now - time in state", from the wall clock and trio's clock read a
        # microsecond apart, rounded to the millisecond.
        assert abs(since - first["last_transition"]) < 0.01, (since, first["last_transition"])
        for t in first["trackers"]:
            tracker = {"kind": t["kind"], "tracker": t["name"]}
            assert gauge("tracker_priority_effect", **tracker) == t["effect"]
            assert gauge("tracker_fault", **tracker) == t["fault"]
        # Counters only grow: the scrape lies between the snapshots around it.
        counters = {
            "adverts_sent_total": "adverts_sent",
            "adverts_received_total": "adverts_received",
            "priority_zero_adverts_sent_total": "priority_zero_sent",
            "priority_zero_adverts_received_total": "priority_zero_received",
            "transitions_to_master_total": "became_master",
        }
        for metric, key in counters.items():
            low, high = first["counters"][key], last["counters"][key]
            assert low <= gauge(metric) <= high, (node, name, metric, low, high)
        for reason, count in last["counters"]["drops"].items():
            low = first["counters"]["drops"].get(reason, 0)
            assert low <= gauge("adverts_dropped_total", reason=reason) <= count
        # Every known reason has a series (0 when nothing happened: docs/metrics.md).
        assert gauge("adverts_dropped_total", reason="checksum") >= 0
        notes = (before["notifications"][name]["run"], after["notifications"][name]["run"])
        assert notes[0] <= gauge("notifications_total") <= notes[1]

    for name, first in before["scripts"].items():
        last = after["scripts"][name]
        assert metrics.one("pyvrrp_script_good", script=name) == first["good"] == last["good"]
        assert metrics.one("pyvrrp_script_fall", script=name) == first["fall"]
        assert metrics.one("pyvrrp_script_rise", script=name) == first["rise"]
        runs = metrics.one("pyvrrp_script_runs_total", script=name)
        assert first["runs"] <= runs <= last["runs"], (runs, first, last)
    started = metrics.one("process_start_time_seconds")
    assert abs(time.time() - after["uptime"] - started) < 5, (after["uptime"], started)
    return after


def test_metrics_scraped_in_the_namespace_match_pyvrrp_status_of_the_same_moment(
    lab: Lab,
) -> None:
    for node in ("A", "B"):
        status = assert_metrics_match_status(lab, node)
        # The master sends, the backups hear: the counters compared are not all zero.
        instances = status["instances"].values()
        assert sum(i["counters"]["adverts_sent"] for i in instances) > 0, status
        assert sum(i["counters"]["adverts_received"] for i in instances) > 0, status
        # Each node masters one instance and backs the two others up.
        assert sorted(i["state"] for i in instances) == ["BACKUP", "BACKUP", "MASTER"], status
        (script,) = status["scripts"].values()
        assert script["runs"] >= 1, script


# --------------------------------------------------------------------------- reload


def test_reload_of_an_unchanged_file_sends_nothing_unusual_and_clients_lose_nothing(
    lab: Lab,
) -> None:
    mark = LogMark(lab)
    statuses = {n: lab.status(n) for n in lab.nodes}
    before = {n: s["instances"] for n, s in statuses.items()}
    with lab.watch_adverts("A") as from_a, lab.probe() as probe:
        for node in "ABC":
            for target in (V4[node], V6[node]):
                probe.wait_answered_by(target, node, timeout=5)
        reloaded = time.monotonic()
        for node in lab.nodes:
            done = pyvrrp(lab, node, "reload")
            assert (done.returncode, done.stdout) == (0, "reloaded: 3 unchanged\n"), done
        # Two more advertisement intervals: the masters go on as before.
        time.sleep(2 * INTERVAL + 0.3)
        adverts = adverts_seen(from_a, vrid=58, after=reloaded)
    report = probe.report()
    print(report.format())
    assert_seed_untouched(lab, report, mark)
    # A keeps advertising vip58 at its priority, never 0 (RFC 9568 §5.2.4: 0 = leaving).
    assert len(adverts) >= 2, adverts
    assert {a.priority for a in adverts} == {PRIO_58["A"]}, adverts
    for node in lab.nodes:
        assert "configuration reloaded: 3 unchanged" in mark.new(node)
        for name, now in lab.status(node)["instances"].items():
            then = before[node][name]
            # Nothing restarted: same state since the same moment, no priority 0 either way.
            assert (now["state"], now["last_transition"]) == (
                then["state"],
                then["last_transition"],
            ), (node, name)
            for key in ("priority_zero_sent", "priority_zero_received", "became_master"):
                assert now["counters"][key] == then["counters"][key], (node, name, key)
        # The health check's counters go on counting (a reload is not a restart: metrics
        # counters start at 0 when the daemon starts), and its last result is still known.
        (script,) = lab.status(node)["scripts"].values()
        (earlier,) = statuses[node]["scripts"].values()
        assert script["runs"] >= earlier["runs"] >= 1, (script, earlier)
        assert script["last_result"] == "exit status 0", script


def test_reload_while_a_tracker_holds_fault_keeps_the_fault_sends_nothing_logs_no_change(
    lab: Lab,
) -> None:
    lab.dummy_down("A")
    lab.wait_holders({V4["A"]: ["C"], V6["A"]: ["C"]}, timeout=skew_time(PRIO_58["C"]) + SLACK)
    lab.wait_for(
        lambda: {i["state"] for i in lab.status("A")["instances"].values()} == {"FAULT"},
        2,
        what="every instance of A in FAULT",
    )
    mark = LogMark(lab)
    with lab.watch_adverts("A") as from_a:
        reloaded = time.monotonic()
        done = pyvrrp(lab, "A", "reload")
        assert (done.returncode, done.stdout) == (0, "reloaded: 3 unchanged\n"), done
        # The new trackers know dummy0 is down before anything runs: a FAULT instance must
        # not come out of it, not even for the moment it would take to read the interface.
        time.sleep(2 * INTERVAL + 0.3)
        adverts = [
            a for vrid in (58, 59, 60) for a in adverts_seen(from_a, vrid=vrid, after=reloaded)
        ]
    assert adverts == [], adverts
    log = mark.new("A")
    assert transitions(log) == [], log
    # Nothing changed at the reload, so nothing is logged as if it had.
    assert "tracked interface dummy0" not in log, log
    # What the metrics say of FAULT: the state, the tracker at fault, no master known.
    status = assert_metrics_match_status(lab, "A")
    for name, info in status["instances"].items():
        assert (info["state"], info["faults"]) == ("FAULT", ["interface dummy0"]), (name, info)
        assert (info["master"], info["holding_addresses"]) == (None, False), (name, info)
    assert lab.holders() == {**SEED_TABLE, V4["A"]: ["C"], V6["A"]: ["C"]}
    lab.dummy_up("A")
    lab.wait_holders(SEED_TABLE, timeout=INTERVAL + skew_time(PRIO_58["A"]) + SLACK)


def test_reload_adding_a_vip_installs_and_announces_it_on_the_master_and_moves_nothing(
    lab: Lab,
) -> None:
    mark = LogMark(lab)
    with Announcements(lab, "A") as announced, lab.probe([*SEED_TABLE, EXTRA_VIP]) as probe:
        for node in "ABC":
            probe.wait_answered_by(V4[node], node, timeout=5)
        write_config(lab, "A", extra_vip_config(lab))
        done = pyvrrp(lab, "A", "reload")
        assert (done.returncode, done.stdout) == (0, "reloaded: changed: vip58; 2 unchanged\n")
        # The reload answers once it is applied: the address is there already.
        assert EXTRA_VIP in lab.addresses("A")
        lab.wait_for(lambda: announced.read()[EXTRA_VIP] >= 1, 2, what="a GARP for the new VIP")
        probe.wait_answered_by(EXTRA_VIP, "A", timeout=2)
        time.sleep(0.3)

        # Back to the original file: the VIP goes, the rest stays.
        write_config(lab, "A", ops_config(lab, "A"))
        done = pyvrrp(lab, "A", "reload")
        assert (done.returncode, done.stdout) == (0, "reloaded: changed: vip58; 2 unchanged\n")
        assert EXTRA_VIP not in lab.addresses("A")
        time.sleep(0.2)
    report = probe.report()
    print(report.format())
    assert_seed_untouched(lab, report, mark)
    assert report[EXTRA_VIP].nodes == {"A"}, report.format()
    assert lab.holders() == SEED_TABLE
    assert not any(EXTRA_VIP in lab.addresses(n) for n in "BC")
    assert has_route(lab, "A") and has_rule(lab, "A")


def test_reload_removing_the_masters_instance_hands_its_vip_over_gracefully(lab: Lab) -> None:
    mark = LogMark(lab)
    skew_c = skew_time(PRIO_58["C"])
    with lab.watch_adverts("A") as from_a, lab.probe(VIP58) as probe:
        for target in VIP58:
            probe.wait_answered_by(target, "A", timeout=5)
        write_config(lab, "A", ops_config(lab, "A", with_vip58(lab, lambda i: None)))
        origin = probe_origin(probe)
        asked = time.monotonic()
        done = pyvrrp(lab, "A", "reload")
        assert (done.returncode, done.stdout) == (0, "reloaded: removed: vip58; 2 unchanged\n")
        # A removed instance stops as on SIGTERM: priority 0, then C after its Skew_Time.
        leaving = first_advert(from_a, vrid=58, priority=0, after=asked, timeout=2)
        for target in VIP58:
            probe.wait_answered_by(target, "C", timeout=skew_c + SLACK)
        time.sleep(0.2)  # answers in flight: a lost probe shows only after them
    report = probe.report()
    took = {t: first_answer(report, t, "C", asked - origin) + origin - leaving.at for t in VIP58}
    print(f"reload removed vip58; C answers {took} s after A's priority 0")
    print(report.format())
    for target in VIP58:
        # Skew_Time(75) from the priority-0 advert (as tcpdump read it: its latency only
        # makes the bound more lenient) to the client's first answer from C.
        assert took[target] <= skew_c + TAKEOVER_MARGIN, took
        t = report[target]
        assert [s.node for s in t.timeline] == ["A", "C"], report.format()
        # A keeps the addresses until it hears C (graceful_handover): nothing is lost.
        assert t.lost <= HANDOVER_RACE_LOSS, report.format()
    c_answers = report[V4["A"]].handovers[0]
    assert c_answers.gap_s < 0.05, report.format()
    assert lab.holders() == {**SEED_TABLE, V4["A"]: ["C"], V6["A"]: ["C"]}
    assert "vip58" not in lab.status("A")["instances"]
    assert "vip58: MASTER -> INIT (shutdown)" in mark.new("A")
    assert "vip58: BACKUP -> MASTER (the master left (priority 0))" in mark.new("C")
    # The route and rule left with the role: C has them now, A has not.
    assert (has_route(lab, "A"), has_rule(lab, "A")) == (False, False)
    assert (has_route(lab, "C"), has_rule(lab, "C")) == (True, True)
    # The other instances did not move.
    assert [t for t in transitions(mark.new("A")) if "vip58" not in t] == []

    # Back: a new instance starts as backup and preempts C after its next advert.
    write_config(lab, "A", ops_config(lab, "A"))
    done = pyvrrp(lab, "A", "reload")
    assert (done.returncode, done.stdout) == (0, "reloaded: added: vip58; 2 unchanged\n")
    lab.wait_holders(SEED_TABLE, timeout=INTERVAL + skew_time(PRIO_58["A"]) + SLACK)
    lab.wait_for(lambda: has_route(lab, "A") and has_rule(lab, "A"), 2, what="A's route")


def broken_config(lab: Lab) -> str:
    """A's file with two problems in two instances."""
    text = ops_config(lab, "A")
    text = text.replace("[instances.vip58]\n", "[instances.vip58]\nadvert_interval_x = 1\n")
    return text.replace("vrid = 59\npriority = 75\n", "vrid = 59\npriority = 300\n")


def test_reload_of_a_broken_file_exits_2_listing_each_problem_and_keeps_running(lab: Lab) -> None:
    mark = LogMark(lab)
    conf = str(lab.node_dir("A") / "node.toml")
    with lab.probe() as probe:
        for node in "ABC":
            probe.wait_answered_by(V4[node], node, timeout=5)
        write_config(lab, "A", broken_config(lab))
        done = pyvrrp(lab, "A", "reload")
        time.sleep(1.2)  # a little more than an advert interval: anything moving would show
        problems = [line for line in done.stderr.splitlines() if line.startswith(f"{conf}: ")]
    print(done.stderr)
    assert done.returncode == 2, done
    assert "the new configuration was rejected; pyvrrp keeps running the old one" in done.stderr
    assert any(p.startswith(f"{conf}: instances.vip58.advert_interval_x: ") for p in problems)
    assert any(p.startswith(f"{conf}: instances.vip59.priority: ") for p in problems)
    assert "Traceback" not in done.stderr
    log = mark.new("A")
    assert "reload rejected: " in log and "instances.vip59.priority" in log, log
    report = probe.report()
    assert_seed_untouched(lab, report, mark)
    assert lab.running("A")
    vip58 = lab.status("A")["instances"]["vip58"]
    assert (vip58["state"], vip58["effective_priority"]) == ("MASTER", PRIO_58["A"])
    assert has_route(lab, "A") and has_rule(lab, "A")

    # Fixed, it reloads normally: the rejected file left nothing half-applied.
    write_config(lab, "A", ops_config(lab, "A"))
    done = pyvrrp(lab, "A", "reload")
    assert (done.returncode, done.stdout) == (0, "reloaded: 3 unchanged\n"), done


def test_sighup_reloads_like_the_reload_command(lab: Lab) -> None:
    mark = LogMark(lab)
    with lab.probe([*SEED_TABLE, EXTRA_VIP]) as probe:
        for node in "ABC":
            probe.wait_answered_by(V4[node], node, timeout=5)
        write_config(lab, "A", extra_vip_config(lab))
        sighup(lab, "A")
        wait_log(lab, mark, "A", "configuration reloaded: changed: vip58; 2 unchanged")
        assert EXTRA_VIP in lab.addresses("A")
        probe.wait_answered_by(EXTRA_VIP, "A", timeout=2)

        # An unreadable file: logged, rejected, the running configuration (with the extra VIP)
        # stays as it is.
        write_config(lab, "A", "[instances.vip58\n")
        sighup(lab, "A")
        wait_log(lab, mark, "A", "invalid TOML")
        time.sleep(1.2)  # a little more than an advert interval: anything moving would show
        assert lab.running("A")
        assert EXTRA_VIP in lab.addresses("A")

        write_config(lab, "A", ops_config(lab, "A"))
        sighup(lab, "A")
        lab.wait_for(lambda: EXTRA_VIP not in lab.addresses("A"), 5, what="the VIP to go")
        time.sleep(0.2)
    report = probe.report()
    print(report.format())
    log = mark.new("A")
    assert log.count("received SIGHUP: reloading") == 3, log
    assert log.count("configuration reloaded: changed: vip58; 2 unchanged") == 2, log
    assert re.search(r"ERROR reload rejected: .*invalid TOML", log), log
    assert_seed_untouched(lab, report, mark)
    assert lab.holders() == SEED_TABLE


# --------------------------------------------------------------------------- cleanup


def test_cleanup_removes_what_a_killed_master_left_and_refuses_while_a_daemon_runs(
    lab: Lab,
) -> None:
    # While the daemon runs the addresses are in use: cleanup refuses and touches nothing.
    (pid,) = lab.daemon_pids("A")
    done = pyvrrp(lab, "A", "cleanup")
    assert done.returncode == 1, done
    assert f"pyvrrp is running (pid {pid}" in done.stderr, done.stderr
    assert lab.holders() == SEED_TABLE
    assert has_route(lab, "A") and has_rule(lab, "A")

    lab.kill("A")  # SIGKILL: no goodbye, nothing removed
    assert set(VIP58) <= set(lab.addresses("A"))
    assert has_route(lab, "A") and has_rule(lab, "A")
    lab_rules = [r for r in lab.run_in("A", "ip", "rule").stdout.splitlines() if "lookup 100" in r]

    done = pyvrrp(lab, "A", "cleanup")
    print(done.stdout)
    assert done.returncode == 0, done
    removed = done.stdout.splitlines()
    assert all(line.startswith("removed vip58: ") for line in removed), removed
    assert sorted(line.split(": ", 1)[1] for line in removed) == sorted(
        [
            f"{V4['A']}/29 dev eth0.4000",
            f"{V6['A']}/64 dev eth0.4000",
            f"{ROUTE_NET} dev eth0.4000 table 101",
            f"priority {RULE_PRIORITY} from 1.2.3.58/32 to {ROUTE_NET} lookup 101",
        ]
    )
    assert not set(SEED_TABLE) & set(lab.addresses("A"))
    assert (has_route(lab, "A"), has_rule(lab, "A")) == (False, False)
    # What the file does not name (the lab's own table 100 and its rules) stays.
    rules = lab.run_in("A", "ip", "rule").stdout.splitlines()
    assert [r for r in rules if "lookup 100" in r] == lab_rules
    assert len(lab_rules) == 2, lab_rules
    assert "default via 1.2.3.57" in lab.run_in("A", "ip", "route", "show", "table", "100").stdout

    again = pyvrrp(lab, "A", "cleanup")  # idempotent
    assert (again.returncode, again.stdout) == (0, "nothing to clean up\n"), again


# --------------------------------------------------------------------------- re-assertion


def test_addresses_routes_and_rules_removed_behind_the_masters_back_are_put_back(
    lab: Lab,
) -> None:
    mark = LogMark(lab)
    # The route and rule first: they are checked every REASSERT_INTERVAL, so their wait runs
    # while the addresses are tested.
    lab.run_in("A", "ip", "route", "del", ROUTE_NET, "table", "101")
    lab.run_in("A", "ip", "rule", "del", "priority", str(RULE_PRIORITY))
    routes_gone = time.monotonic()
    assert (has_route(lab, "A"), has_rule(lab, "A")) == (False, False)

    with Announcements(lab, "A") as announced, lab.probe(VIP58) as probe:
        for target in VIP58:
            probe.wait_answered_by(target, "A", timeout=5)
        announced.read().clear()
        took = {}
        for target, prefix in ((V4["A"], 29), (V6["A"], 64)):
            # What NetworkManager or an operator does; the daemon hears it through netlink.
            deleted = time.monotonic()
            lab.run_in("A", "ip", "addr", "del", f"{target}/{prefix}", "dev", "eth0.4000")
            lab.wait_for(functools.partial(holds, lab, "A", target), 1.0, interval=0.01)
            took[target] = round(time.monotonic() - deleted, 3)
        # Put back, and announced again (the client may have flushed its neighbour entry).
        lab.wait_for(lambda: set(VIP58) <= set(announced.read()), 2, what="announcements")
        time.sleep(0.2)
    report = probe.report()
    print(f"addresses back after {took} s")
    print(report.format())
    for target in VIP58:
        t = report[target]
        assert t.nodes == {"A"}, report.format()
        # The address is gone for the few ms the daemon needs to hear of it and add it back:
        # a probe every 5 ms loses a handful at most (20 = 100 ms on a busy machine).
        assert t.lost <= 20, report.format()
    log = mark.new("A")
    for address in (f"{V4['A']}/29", f"{V6['A']}/64"):
        assert f"vip58: {address} dev eth0.4000 had been removed by someone else: put it back" in (
            log
        ), log

    # The route and rule: back within one REASSERT_INTERVAL of their removal; SLACK for the
    # check itself on a busy machine and our own polling.
    remaining = routes_gone + REASSERT_INTERVAL + SLACK - time.monotonic()
    lab.wait_for(
        lambda: has_route(lab, "A") and has_rule(lab, "A"),
        max(remaining, 0.1),
        interval=0.2,
        what="the route and rule to be put back",
    )
    print(f"route and rule back after {time.monotonic() - routes_gone:.2f} s")
    log = mark.new("A")
    assert f"vip58: {ROUTE_NET} dev eth0.4000 table 101 had been removed by someone else" in log
    assert f"vip58: priority {RULE_PRIORITY} from 1.2.3.58/32" in log
    assert transitions(log) == [], log
    assert lab.holders() == SEED_TABLE


# --------------------------------------------------------------------------- second daemon


def test_a_second_daemon_with_the_same_config_exits_3_and_leaves_the_first_alone(
    lab: Lab,
) -> None:
    mark = LogMark(lab)
    (pid,) = lab.daemon_pids("A")
    conf = str(lab.node_dir("A") / "node.toml")
    with lab.probe(VIP58) as probe:
        for target in VIP58:
            probe.wait_answered_by(target, "A", timeout=5)
        # It must fail at its start, before removing "stale" addresses (the running
        # daemon's VIPs) or touching the control socket.
        done = lab.run_in("A", sys.executable, "-m", "pyvrrp", "-c", conf, check=False)
        time.sleep(0.2)
    output = done.stdout + done.stderr
    print(output)
    assert done.returncode == 3, output
    assert f"another pyvrrp is running with control socket {lab.node_dir('A')}" in output
    assert f"(pid {pid})" in output
    assert "Traceback" not in output
    report = probe.report()
    for target in VIP58:
        assert (report[target].nodes, report[target].lost) == ({"A"}, 0), report.format()
    assert lab.running("A") and lab.daemon_pids("A") == [pid]
    assert lab.holders() == SEED_TABLE
    assert has_route(lab, "A") and has_rule(lab, "A")
    # The first daemon still answers on its socket, and nothing changed for it.
    assert lab.status("A")["pid"] == pid
    assert transitions(mark.new("A")) == []


# --------------------------------------------------------------------------- hardening

STRANGER = "192.168.200.99"  # on the vSwitch segment, in no node's unicast_peers
# Sends COUNT advertisements for VRID 58 (priority 1, below every node's) from SOURCE to
# DESTINATION on a raw socket with a header of our own (TTL 255), as a router would.
SEND_ADVERTS = """
import socket, sys, time
from ipaddress import IPv4Address
from pyvrrp.core.packet import Advertisement, build_ipv4, encode
source, destination, count = IPv4Address(sys.argv[1]), IPv4Address(sys.argv[2]), int(sys.argv[3])
advert = Advertisement(vrid=58, priority=1, max_advert_interval=100,
                       addresses=(IPv4Address("1.2.3.58"),))
message = encode(advert, source=source, destination=destination)
with socket.socket(socket.AF_INET, socket.SOCK_RAW, 112) as s:
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    for _ in range(count):
        s.sendto(build_ipv4(message, source=source, destination=destination), (str(destination), 0))
        time.sleep(0.05)
"""


@contextlib.contextmanager
def stranger(lab: Lab) -> Iterator[None]:
    """The client's namespace gets an address on the vSwitch segment, for the test only."""
    ns = ["ip", "-n", lab.client_ns]
    subprocess.run([*ns, "addr", "add", f"{STRANGER}/24", "dev", "eth0"], check=True)
    try:
        yield
    finally:
        subprocess.run([*ns, "addr", "del", f"{STRANGER}/24", "dev", "eth0"], check=False)


def send_adverts(lab: Lab, destination: str, count: int) -> None:
    argv = [sys.executable, "-c", SEND_ADVERTS, STRANGER, destination, str(count)]
    subprocess.run(["ip", "netns", "exec", lab.client_ns, *argv], check=True, timeout=30)


def vip58_counters(lab: Lab, node: str) -> dict[str, Any]:
    counters: dict[str, Any] = lab.status(node)["instances"]["vip58"]["counters"]
    return counters


def test_adverts_from_a_host_not_in_unicast_peers_are_dropped_unless_the_key_says_otherwise(
    lab: Lab,
) -> None:
    a_address = lab.cluster.node("A").vswitch_ip
    mark = LogMark(lab)
    with stranger(lab):
        before = vip58_counters(lab, "A")
        send_adverts(lab, a_address, 5)
        lab.wait_for(
            lambda: (
                vip58_counters(lab, "A")["drops"].get("not_a_peer", 0)
                == before["drops"].get("not_a_peer", 0) + 5
            ),
            5,
            what="five not_a_peer drops on A",
        )
        after = vip58_counters(lab, "A")
        assert after["adverts_received"] == before["adverts_received"]
        # Logged, once for the five (rate-limited).
        lines = [line for line in mark.new("A").splitlines() if "not_a_peer" in line]
        assert len(lines) == 1, lines
        assert f"vip58: dropped advertisement from {STRANGER}: not_a_peer" in lines[0]

        # unicast_peers_only = false: the same adverts are accepted (a lower priority: A stays).
        header = "[instances.vip58]\n"
        write_config(
            lab, "A", ops_config(lab, "A").replace(header, header + "unicast_peers_only = false\n")
        )
        done = pyvrrp(lab, "A", "reload")
        assert (done.returncode, done.stdout) == (0, "reloaded: changed: vip58; 2 unchanged\n")
        before = vip58_counters(lab, "A")
        send_adverts(lab, a_address, 5)
        lab.wait_for(
            lambda: vip58_counters(lab, "A")["adverts_received"] >= before["adverts_received"] + 5,
            5,
            what="five adverts accepted by A",
        )
        assert vip58_counters(lab, "A")["drops"] == before["drops"]
    assert lab.holders() == SEED_TABLE
    assert transitions(mark.new("A")) == []


CONFLICT = f"{V6['A']}/128"  # vip58's excluded address with another prefix (it has /64)


def test_a_master_that_cannot_install_its_addresses_gives_them_up_to_the_backup(
    lab: Lab,
) -> None:
    skew_c = skew_time(PRIO_58["C"])
    lab.stop("A")
    lab.wait_for(lambda: holds(lab, "C", V4["A"]), 5, what="C holding vip58")
    # Someone put vip58's excluded address on A with another prefix: adding it fails (EEXIST).
    lab.run_in("A", "ip", "addr", "add", CONFLICT, "dev", "eth0.4000", "nodad")
    try:
        mark = LogMark(lab)
        lab.start("A", "pyvrrp", ops_config(lab, "A"))
        # A preempts C, fails to install, and gives the VIP up three intervals later.
        lab.wait_for(
            lambda: "vip58: MASTER -> FAULT (cannot install" in mark.new("A"),
            3 + 3 * INTERVAL + SLACK + 2,
            what="A giving vip58 up",
        )
        lab.wait_for(
            lambda: holds(lab, "C", V4["A"]) and not holds(lab, "A", V4["A"]),
            skew_c + SLACK,
            what="C taking vip58 back",
        )
        # The retries in FAULT take out again what they could put in: A never holds the
        # VIP beside C for longer than a retry's add and remove.
        time.sleep(5 + 0.5)
        assert not holds(lab, "A", V4["A"])
        log = mark.new("A")
        assert "vip58: BACKUP -> MASTER" in log
        became, gave_up = (
            re.search(rf"(\d\d:\d\d:\d\d\.\d+) \w+ vip58: {old} -> {new}", log)
            for old, new in (("BACKUP", "MASTER"), ("MASTER", "FAULT"))
        )
        assert became is not None and gave_up is not None
        stamp = [
            sum(float(x) * f for x, f in zip(m.group(1).split(":"), (3600, 60, 1), strict=True))
            for m in (became, gave_up)
        ]
        # 3 x advert_interval after the first failure (at the takeover), plus scheduling.
        assert 3 * INTERVAL - 0.05 <= stamp[1] - stamp[0] <= 3 * INTERVAL + 0.5, stamp
        vip58 = lab.status("A")["instances"]["vip58"]
        assert vip58["state"] == "FAULT"
        assert vip58["holdings_complete"] is False
        assert vip58["install_fault"].startswith(f"{V6['A']}/64 dev eth0.4000: {CONFLICT}")
        assert vip58["counters"]["install_failures"] >= 5
        assert vip58["counters"]["priority_zero_sent"] == 1
        assert "vip58: BACKUP -> MASTER (the master left (priority 0))" in mark.new("C")
    finally:
        lab.run_in("A", "ip", "addr", "del", CONFLICT, "dev", "eth0.4000", check=False)
    # The conflict is gone: a retry in FAULT (at most 5 s apart) clears the fault, and A
    # preempts C again.
    lab.wait_holders(SEED_TABLE, timeout=5 + 2 * INTERVAL + SLACK + 2)
    vip58 = lab.status("A")["instances"]["vip58"]
    assert (vip58["state"], vip58["holdings_complete"], vip58["install_fault"]) == (
        "MASTER",
        True,
        None,
    )
    assert "vip58: FAULT -> BACKUP (faults cleared)" in mark.new("A")
