"""The real cluster's keepalived.conf files, imported with `pyvrrp import-keepalived`, run as
the seed cluster in the netns lab: each node master of its own VIP with the IPv6 twin, and
failover when a node's vSwitch link is cut.

The imported files are used as they come out of the import, with two lab adjustments: the
control socket and state directory go into the lab's per-node directory, and the email alerts
are left out (the lab runs no mail server). The files say `version = 2` (keepalived's default
for IPv4, as the nodes they replace speak); all three nodes run the same imported files, so the
cluster elects the same way whichever version the runtime puts on the wire.

Timing bounds: RFC 9568 §6.1 with vip58's priorities A 100, C 75, B 50 (C takes over from a
silent A after Master_Down_Interval(75)), plus slack for a busy 2-core machine.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nslab import Lab, seed_cluster

from pyvrrp.keepalived import import_keepalived
from tests.netns.labtools import (
    SEED_TABLE,
    V4,
    V6,
    daemon_problems,
    master_down_interval,
    running_lab,
)

DATA = Path(__file__).parents[1] / "data" / "keepalived"
MACHINE = {"A": "machine-a", "B": "machine-b", "C": "machine-c"}
SLACK = 2.0


def imported_config(lab: Lab, node: str, vrrp_version: str | None = None) -> str:
    """`node`'s real keepalived.conf imported (with `--vrrp-version` when given), with the
    lab's socket and state directory."""
    result = import_keepalived(DATA / f"{MACHINE[node]}.conf", vrrp_version=vrrp_version)
    run_dir = lab.node_dir(node)
    (run_dir / "state").mkdir(exist_ok=True)
    lab_keys = (
        f"control_socket = {json.dumps(str(run_dir / 'pyvrrp.sock'))}\n"
        f"state_dir = {json.dumps(str(run_dir / 'state'))}\n"
    )
    text = result.text.replace("\n[global]\n", f"\n[global]\n{lab_keys}", 1)
    # No mail server in the lab: without these, each transition would log a failed alert.
    text = re.sub(r"\n\[global\.email\]\n(?:[^\n]+\n)+", "\n", text)
    text = text.replace("email = true  # smtp_alert\n", "")
    assert "email" not in text.split("# vrrp_script", 1)[1]
    return text


@pytest.fixture(scope="module")
def imported_lab() -> Iterator[Lab]:
    """The seed lab with no daemon: the test starts pyvrrp with the imported configs."""
    yield from running_lab(seed_cluster(), None)


def test_imported_seed_configs_run_as_the_seed_cluster(imported_lab: Lab) -> None:
    lab = imported_lab
    for node in "ABC":
        lab.start(node, "pyvrrp", imported_config(lab, node))
    lab.wait_holders(SEED_TABLE, timeout=30)
    with lab.probe() as probe:
        time.sleep(1.0)
    report = probe.report()
    for node in "ABC":
        for target in (V4[node], V6[node]):
            assert report[target].nodes == {node}, report.format()
            assert report[target].split_brain == (), report.format()

    # A's vSwitch port is cut: C (75) takes 1.2.3.58 and its IPv6 twin once A is silent for
    # Master_Down_Interval(75). A, hearing nobody, keeps its own and takes the others too
    # (backups with nopreempt still take over from silence), behind the cut.
    lab.cut_link("A")
    isolated = {"A": ["A", "C"], "B": ["A", "B"], "C": ["A", "C"]}
    expected = {addr[n]: isolated[n] for addr in (V4, V6) for n in "ABC"}
    lab.wait_holders(expected, timeout=master_down_interval(50) + SLACK)
    with lab.probe([V4["A"], V6["A"]]) as probe:
        probe.wait_answered_by(V4["A"], "C", timeout=SLACK)
        probe.wait_answered_by(V6["A"], "C", timeout=SLACK)

    # Back: A (100, state MASTER: keepalived cleared its nopreempt) preempts C again.
    lab.restore_link("A")
    lab.wait_holders(SEED_TABLE, timeout=master_down_interval(75) + 3 * SLACK)
    assert daemon_problems(lab) == {}
