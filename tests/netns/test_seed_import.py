"""The seed's own keepalived.conf files, converted by `pyvrrp import-keepalived`, checked and
run as the seed cluster in the netns lab: the seed's table, VRRPv2 on the wire, failover on a
cut link and what happens when the link returns, as keepalived does it.

What the lab changes in the imported files, and why (nothing else is touched):

- `control_socket` and `state_dir` go into the lab's per-node directory: the three nodes share
  one file system here, not in the seed.
- The email alerts (`[global.email]`, `email = true` from `smtp_alert`) are left out: the lab
  runs no mail server, and failed deliveries would only add log noise.

What needs no change: the interfaces (the lab's nodes have `eth0.4000`, and port-less bridges
named `eth0` and `dummy0` stand in for the uplink and the maintenance interface, so the seed's
`track_interface { eth0 dummy0 }` tracks real links); the unicast sources and peers (the
lab's vSwitch addresses are the seed's 192.168.200.1-3); the health script, whose command
`/usr/bin/curl GET http://localhost:80/healthz` reaches the lab's agent on 127.0.0.1:80 in
each node's namespace and runs as `script_user nobody`. The files have no routes or rules (the
seed's `vswitch` table is set up by its if-up.d hooks, not by keepalived), so no rt_tables are
needed. `pyvrrp check --host` runs in each node's namespace to check all of that.

The seed's table with the weights: every instance tracks `chk_nginx_ingress` with weight +2,
so a healthy node advertises its base priority plus 2 (vip58: A 102, C 77, B 52). The check
is `curl` without `--fail`, which exits 0 on an HTTP 500: only an endpoint that does not answer
at all makes it fail, for keepalived as for pyvrrp (both go by the exit status). The test
shows it: B's /healthz answers 500 for a while and its priority does not move.

What the seed's files decide, as keepalived would: each node's own instance (58 on A, 59 on B,
60 on C) says `state MASTER` and `nopreempt`. keepalived ignores nopreempt with state MASTER
(it warns and clears it), and so does the import (a note, no `preempt = false`); the other
instances say `state BACKUP` and keep their nopreempt. So the owner of each VIP preempts
whoever holds it, and the cluster reaches the seed's table whatever order the nodes start in.
When A's cable is back after a pull (carrier loss: A was in FAULT and C took 1.2.3.58), A
comes back as backup, hears C's 77 below its 102 and preempts: the VIP and its IPv6 twin move
back to A. Had nopreempt held, they would stay on C.

A vSwitch failure (A's port detached, A keeping carrier) is the other cut: A hears nobody and
is master of all three VIPs behind it, C takes 1.2.3.58 (77 beats B's 52), and when the port is
back the masters meet and the lower ones yield (RFC 3768 §6.4.3): the table is back without
preemption being involved.

Timing bounds: RFC 3768 §6.1 (the files say `version = 2`, keepalived's default for IPv4) with
the effective priorities above, plus slack for a busy 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nslab import Lab, seed_cluster
from nslab.sniff import AdvertWatch
from nslab.system import python

from pyvrrp.core import timers
from tests.netns.labtools import SEED_TABLE, V4, V6, VRID, daemon_problems, running_lab

DATA = Path(__file__).parents[1] / "data" / "keepalived"
MACHINE = {"A": "machine-a", "B": "machine-b", "C": "machine-c"}
SOURCE = {"A": "192.168.200.1", "B": "192.168.200.2", "C": "192.168.200.3"}
INSTANCE = {n: V4[n] for n in "ABC"}  # the seed's instances are named after their VIP
# chk_nginx_ingress's weight in the seed's files: a healthy node advertises base + 2.
WEIGHT = 2
# vip58's base priorities in the seed's files.
BASE_58 = {"A": 100, "B": 50, "C": 75}
SLACK = 2.0


def mdi_v2(priority: int) -> float:
    """Master_Down_Interval of RFC 3768 §6.1 at a 1 s advert interval, in seconds."""
    interval = timers.US_PER_SECOND
    return timers.master_down_interval_v2(priority, interval) / timers.US_PER_SECOND


def skew_v2(priority: int) -> float:
    """Skew_Time of RFC 3768 §6.1, in seconds."""
    return timers.skew_time_v2(priority) / timers.US_PER_SECOND


def pyvrrp_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    """`pyvrrp ARGV` as an operator runs it."""
    command = [python(), "-m", "pyvrrp", *argv]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def lab_adjusted(imported: str, run_dir: Path) -> str:
    """The imported node.toml with the lab's two changes (module docstring)."""
    lab_keys = (
        f"control_socket = {json.dumps(str(run_dir / 'pyvrrp.sock'))}\n"
        f"state_dir = {json.dumps(str(run_dir / 'state'))}\n"
    )
    head, sep, rest = imported.partition("\n[global]\n")
    assert sep, imported
    global_keys, sep, rest = rest.partition("\n[global.email]\n")
    assert sep, imported
    # [global.email] runs up to the next blank line.
    _, sep, rest = rest.partition("\n\n")
    assert sep, imported
    text = f"{head}\n[global]\n{lab_keys}{global_keys}\n{rest}"
    assert text.count("email = true  # smtp_alert\n") == 3, text
    text = text.replace("email = true  # smtp_alert\n", "")
    assert "email" not in text.split("\n[global]\n", 1)[1], text
    return text


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """The seed lab with no daemon running: the test starts pyvrrp with the imported files."""
    yield from running_lab(seed_cluster(), None)


def import_seed_file(lab: Lab, node: str) -> str:
    """`pyvrrp import-keepalived` of `node`'s keepalived.conf: asserts its report, checks the
    result, writes it to the node's directory and returns the node.toml text."""
    conf = DATA / f"{MACHINE[node]}.conf"
    out = lab.node_dir(node) / "imported.toml"
    done = pyvrrp_cli("import-keepalived", str(conf), "-o", str(out), "--force")
    # One thing is dropped (SNMP: keepalived's snmp_socket), hence exit 1 and --force.
    assert done.returncode == 1, done.stderr
    dropped = [x for x in done.stderr.splitlines() if x.startswith("dropped: ")]
    assert len(dropped) == 1 and "snmp_socket" in dropped[0], done.stderr
    if node == "A":
        assert "1.2.3.58: nopreempt is cleared because of state MASTER" in done.stderr
    imported = out.read_text()
    checked = pyvrrp_cli("check", "-c", str(out))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return imported


def instance_status(lab: Lab, node: str, instance: str) -> dict[str, Any]:
    """`pyvrrp status --json` of one instance on `node`."""
    status: dict[str, Any] = lab.status(node)["instances"][instance]
    return status


def transitions_since(lab: Lab, node: str, instance: str, since: float) -> list[tuple[str, str]]:
    """(to-state, cause) of `instance`'s transitions on `node` at or after wall time `since`."""
    history = instance_status(lab, node, instance)["history"]
    return [(h["to"], h["cause"]) for h in history if h["time"] >= since]


def test_the_seeds_imported_configs_run_as_the_seed_cluster(lab: Lab) -> None:
    # Import and check, as an operator migrating each node would.
    configs = {}
    for node in "ABC":
        imported = import_seed_file(lab, node)
        assert 'command = ["/usr/bin/curl", "GET", "http://localhost:80/healthz"]' in imported
        assert "version = 2  # keepalived's default for IPv4" in imported
        (lab.node_dir(node) / "state").mkdir(exist_ok=True)
        configs[node] = lab_adjusted(imported, lab.node_dir(node))
        lab_file = lab.node_dir(node) / "lab.toml"
        lab_file.write_text(configs[node])
        # --host, in the node's namespace: interfaces, unicast source, script user and program.
        argv = ["check", "--host", "-c", str(lab_file)]
        checked = lab.run_in(node, python(), "-m", "pyvrrp", *argv, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "OK: 3 instances" in checked.stdout, checked.stdout

    for node in "ABC":
        lab.start(node, "pyvrrp", configs[node])
    # A backup whose daemon started first may take a VIP from silence; the owner then
    # preempts it after Skew_Time.
    lab.wait_holders(SEED_TABLE, timeout=mdi_v2(50) + 10 + SLACK)
    watches: dict[str, AdvertWatch] = {n: lab.watch_adverts(n) for n in "ABC"}

    # VRRPv2 on the wire, unicast to the two peers, each node for its own VRID only, at the
    # priority the health check gives (base 100 + 2 once chk_nginx_ingress has risen).
    for node in "ABC":
        watches[node].next(10.0, vrid=VRID[node], priority=100 + WEIGHT)
    settled = time.monotonic()
    with lab.probe() as probe:
        time.sleep(1.5)
    report = probe.report()
    for node in "ABC":
        for target in (V4[node], V6[node]):
            assert report[target].nodes == {node}, report.format()
            assert report[target].split_brain == (), report.format()
        seen = [a for a in watches[node].adverts() if a.at >= settled]
        assert seen, f"no advertisement from {node}"
        peers = {SOURCE[n] for n in "ABC" if n != node}
        assert {(a.version, a.vrid, a.priority) for a in seen} == {(2, VRID[node], 102)}, seen
        assert {a.source for a in seen} == {SOURCE[node]}, seen
        assert {a.destination for a in seen} == peers, seen
    for watch in watches.values():
        watch.stop()
    b58 = instance_status(lab, "B", INSTANCE["A"])
    assert b58["state"] == "BACKUP"
    assert b58["vrrp_version"] == "2"
    assert b58["effective_priority"] == BASE_58["B"] + WEIGHT
    assert b58["master"] == {"address": SOURCE["A"], "priority": BASE_58["A"] + WEIGHT}
    assert b58["peers"][SOURCE["A"]]["versions"] == [2]

    # A vSwitch failure: A's port is detached, A keeps carrier. C (77) takes 1.2.3.58 and its
    # twin from silence, not B (52); A, hearing nobody, is master of all three behind the cut.
    # Meanwhile B's /healthz answers 500, which the seed's check does not notice (module
    # docstring): it stays good over its `fall` runs.
    runs_before = lab.status("B")["scripts"]["chk_nginx_ingress"]["runs"]
    lab.set_healthy("B", False)
    cut = time.time()
    lab.cut_link("A")
    isolated = {"A": ["A", "C"], "B": ["A", "B"], "C": ["A", "C"]}
    expected = {addr[n]: isolated[n] for addr in (V4, V6) for n in "ABC"}
    # The last to move is A's 1.2.3.60 (base 50, its lowest): Master_Down_Interval(52).
    lab.wait_holders(expected, timeout=mdi_v2(50 + WEIGHT) + SLACK)
    with lab.probe([V4["A"], V6["A"]]) as probe:
        probe.wait_answered_by(V4["A"], "C", timeout=SLACK)
        probe.wait_answered_by(V6["A"], "C", timeout=SLACK)
    assert transitions_since(lab, "C", INSTANCE["A"], cut) == [("MASTER", "master_down")]
    assert transitions_since(lab, "B", INSTANCE["A"], cut) == []
    lab.wait_for(
        # Three runs: at least two (its `fall`) began after /healthz went 500.
        lambda: lab.status("B")["scripts"]["chk_nginx_ingress"]["runs"] >= runs_before + 3,
        timeout=3 * 2 + SLACK,
        interval=0.5,
        what="three runs of B's health script while /healthz answers 500",
    )
    script = lab.status("B")["scripts"]["chk_nginx_ingress"]
    assert (script["state"], script["failures"], script["last_exit_status"]) == ("good", 0, 0)
    assert instance_status(lab, "B", INSTANCE["B"])["effective_priority"] == 100 + WEIGHT
    lab.set_healthy("B", True)
    # Back: the masters meet, and the lower ones yield (RFC 3768 §6.4.3).
    restored = time.time()
    lab.restore_link("A")
    lab.wait_holders(SEED_TABLE, timeout=1.0 + SLACK)
    assert transitions_since(lab, "C", INSTANCE["A"], restored) == [("BACKUP", "higher_priority")]
    assert transitions_since(lab, "A", INSTANCE["A"], cut) == []

    # A's cable is pulled: A is in FAULT (its own interface has no carrier) and drops its
    # addresses; C takes 1.2.3.58 and its twin after Master_Down_Interval.
    pulled = time.time()
    lab.set_link_down("A")
    without_a = {"A": ["C"], "B": ["B"], "C": ["C"]}
    expected = {addr[n]: without_a[n] for addr in (V4, V6) for n in "ABC"}
    lab.wait_holders(expected, timeout=mdi_v2(BASE_58["C"] + WEIGHT) + SLACK)
    assert transitions_since(lab, "A", INSTANCE["A"], pulled) == [("FAULT", "fault")]
    # The cable is back: A (102, state MASTER: nopreempt cleared, as keepalived does) comes
    # back as backup, hears C's 77 and preempts it.
    plugged = time.time()
    lab.set_link_up("A")
    lab.wait_holders(SEED_TABLE, timeout=skew_v2(BASE_58["A"] + WEIGHT) + 1.0 + SLACK)
    assert transitions_since(lab, "A", INSTANCE["A"], plugged) == [
        ("BACKUP", "recovered"),
        ("MASTER", "preempt"),
    ]
    assert transitions_since(lab, "C", INSTANCE["A"], plugged) == [("BACKUP", "higher_priority")]
    with lab.probe([V4["A"], V6["A"]]) as probe:
        probe.wait_answered_by(V4["A"], "A", timeout=SLACK)
        probe.wait_answered_by(V6["A"], "A", timeout=SLACK)
    assert daemon_problems(lab) == {}
