"""The first step of the real migration: one node runs pyvrrp with its imported config while
the two others still run keepalived 2.2.7 with their real keepalived.conf files, unchanged
(VRRPv2, keepalived's default: the files have no `vrrp_version`). tests/netns/test_seed_import.py
runs the three imported files alone.

The keepalived files lose only what the lab cannot serve (the SNMP agent socket and the mail
alerts); the imported file gets the lab's socket and state directory and loses its mail
alerts too.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from nslab import Lab, seed_cluster

from pyvrrp.keepalived import import_keepalived
from tests.netns.labtools import (
    SEED_TABLE,
    V4,
    V6,
    LogMark,
    daemon_problems,
    lab_context,
    skew_time,
)

DATA = Path(__file__).parents[1] / "data" / "keepalived"
MACHINE = {"A": "machine-a", "B": "machine-b", "C": "machine-c"}
SLACK = 2.0


def imported_config(lab: Lab, node: str, vrrp_version: str | None = None) -> str:
    """`node`'s real keepalived.conf imported (with `--vrrp-version` when given), with the lab's
    socket and state directory and without the mail alerts (the lab runs no mail server)."""
    result = import_keepalived(DATA / f"{MACHINE[node]}.conf", vrrp_version=vrrp_version)
    run_dir = lab.node_dir(node)
    (run_dir / "state").mkdir(exist_ok=True)
    lab_keys = (
        f"control_socket = {json.dumps(str(run_dir / 'pyvrrp.sock'))}\n"
        f"state_dir = {json.dumps(str(run_dir / 'state'))}\n"
    )
    text = result.text.replace("\n[global]\n", f"\n[global]\n{lab_keys}", 1)
    text = re.sub(r"\n\[global\.email\]\n(?:[^\n]+\n)+", "\n", text)
    text = text.replace("email = true  # smtp_alert\n", "")
    assert "email" not in text.split("\n[global]\n", 1)[1]
    return text


def keepalived_config(node: str) -> str:
    """`node`'s real keepalived.conf without the SNMP socket and the mail alerts."""
    text = (DATA / f"{MACHINE[node]}.conf").read_text()
    for line in ("  snmp_socket unix:/var/agentx/master\n", "  smtp_alert\n"):
        assert line in text
        text = text.replace(line, "")
    return text


@pytest.mark.parametrize("vrrp_version", [None, "2+3"], ids=["as-imported", "migration-mode"])
def test_imported_node_joins_the_real_keepalived_cluster(vrrp_version: str | None) -> None:
    """As imported (`version = 2`, what the keepalived nodes speak) and in migration mode
    (`--vrrp-version 2+3`: v2 and v3 adverts; keepalived ignores the v3 ones)."""
    with lab_context(seed_cluster(), None, keepalived=True) as lab:
        for node in "BC":
            lab.start(node, "keepalived", keepalived_config(node))
        lab.start("A", "pyvrrp", imported_config(lab, "A", vrrp_version))
        lab.wait_holders(SEED_TABLE, timeout=30)
        with lab.probe() as probe:
            time.sleep(1.0)
        report = probe.report()
        for node in "ABC":
            for target in (V4[node], V6[node]):
                assert report[target].nodes == {node}, report.format()
                assert report[target].split_brain == (), report.format()

        # A leaves (SIGTERM, priority 0): C (75) takes 1.2.3.58 after Skew_Time, and A takes
        # it back when it returns (priority 100, state MASTER: keepalived cleared nopreempt).
        mark = LogMark(lab)
        lab.stop("A")
        moved = {**SEED_TABLE, V4["A"]: ["C"], V6["A"]: ["C"]}
        lab.wait_holders(moved, timeout=skew_time(75) + SLACK)
        lab.start("A", "pyvrrp", imported_config(lab, "A", vrrp_version))
        lab.wait_holders(SEED_TABLE, timeout=30)
        problems = daemon_problems(lab, mark)
        if vrrp_version == "2+3":
            # keepalived logs the v3 half of each migration-mode pair it ignores; nothing else.
            problems = {
                node: rest
                for node, lines in problems.items()
                if (rest := [x for x in lines if "wrong version. Received 3 and expect 2" not in x])
            }
        assert problems == {}
        assert Path(lab.node_dir("B") / "keepalived.conf").read_text() == keepalived_config("B")
