"""The keepalived -> pyvrrp migration, rehearsed on the seed cluster (nslab.migration, the same
run as `make demo-migration`), against the goals of docs/migrating-from-keepalived.md.

The seed's real keepalived.conf files run under keepalived 2.2.7 in its default VRRP version
(v2); each node in turn is imported with `pyvrrp import-keepalived --vrrp-version 2+3`,
checked, stopped (SIGTERM) and started as pyvrrp; then each node in turn goes to `version = 3`
by an edit and `pyvrrp reload`. The nodes are set up as deployed: the seed's if-up.d hooks
made the `vswitch` table's routes and rules (pyvrrp takes them over from node.toml), and a
firewall lets VRRP in from the unicast peers only (the guide's nftables rule). Node A is rolled
back to keepalived after its swap (the guide's "going back") and forward again; those steps are
measured on their own. A client probes every VIP and IPv6 twin every 5 ms throughout;
`ip monitor address` in every node records who holds what.

Goals:
- never two holders of an address after the first advert exchange. A preemption (pyvrrp
  taking its VIP back from the keepalived or pyvrrp backup that covered for it) makes the new
  master add the address right after its advertisement and the old one remove it when that
  advertisement arrives (RFC 9568 §6.4.3): an overlap of the advert's transit, milliseconds.
  Anything over 250 ms (`HANDOVER_OVERLAP_S`) is two masters: a version mismatch or a lost
  election lasts at least an advert interval. The client must never be answered by two nodes
  in turn (the probe's split-brain check). The longest overlap seen is in the rollback, about
  100 ms, and it is pyvrrp's graceful handover (docs/configuration.md, "Handover"): stopped,
  pyvrrp A sends priority 0 but keeps its addresses until 0.1 s after it hears the new master
  C, so the client is served throughout.
- the client's total outage per address, over the whole migration, is at most one keepalived
  SIGTERM gap. The bound (`sigterm_gap_bound`): keepalived drops its addresses at once and
  sends priority 0, so the best backup (priority 75 in the seed) takes over after its
  Skew_Time, (256 - 75) / 256 s = 0.707 s (RFC 3768 §6.1, advert_int 1 as in the seed), plus
  0.3 s for the new master's gratuitous ARP / NA to reach the client on a busy 2-core machine:
  1.007 s. Each VIP pays that gap once, when its own master's keepalived stops; nothing else
  in the migration (pyvrrp taking the VIP back, the reloads to VRRPv3) may cost more than the
  slack.

The seed's advert interval (1 s) is kept: VRRPv2 only has whole seconds, and keepalived speaks
v2 here. The run takes about 50 s (45 s of rehearsal, lab up and down).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from nslab import Lab, seed_cluster
from nslab.migration import (
    BEST_BACKUP_PRIORITY,
    HOOK_ROUTES_TOML,
    SEED_DATA,
    SEED_FILE,
    MigrationReport,
    Rehearsal,
    keepalived_skew_time,
    lab_keepalived_conf,
    sigterm_gap_bound,
)
from nslab.spec import HealthCheckSpec

from tests.netns.labtools import SEED_TABLE, V4, V6, lab_context, pyvrrp_problems


@pytest.fixture(scope="module")
def rehearsed() -> Iterator[tuple[Lab, MigrationReport]]:
    """One rehearsal for the whole module (it takes ~45 s); the lab stays up for inspection."""
    with lab_context(seed_cluster(), None, keepalived=True) as lab:
        rehearsal = Rehearsal(lab, rollback="A")
        try:
            yield lab, rehearsal.run()
        finally:
            rehearsal.close()
    assert not any(Path("/etc/netns", lab.ns(n)).exists() for n in lab.nodes)


def test_the_lab_runs_the_seed_files_changed_only_where_it_must() -> None:
    seed = (SEED_DATA / SEED_FILE["B"]).read_text()
    text, changes = lab_keepalived_conf(seed, HealthCheckSpec().command)
    diff = list(difflib.ndiff(seed.splitlines(), text.splitlines()))
    removed = [line[2:].strip() for line in diff if line.startswith("- ")]
    added = [line[2:].strip() for line in diff if line.startswith("+ ")]
    assert added == ['script "/usr/bin/curl -fsS -o /dev/null http://127.0.0.1:80/healthz"']
    # Mail, SNMP and the health check's command: nothing else.
    assert sorted(removed) == sorted(
        [
            "notification_email {",
            "ops@example.com",
            "}",
            "notification_email_from infra+keepalived@dtone.com",
            "smtp_server 127.0.0.1",
            "smtp_connect_timeout 30",
            "snmp_socket unix:/var/agentx/master",
            'script    "/usr/bin/curl GET http://localhost:80/healthz"',
            *["smtp_alert"] * 3,
        ]
    )
    assert "router_id machine-c" in text  # machine-b's copy-paste error, as deployed
    assert "vrrp_version" not in text and "version 3" not in text  # keepalived's default: v2
    assert len(changes) == 7


def test_every_node_imports_faithfully_and_runs_pyvrrp_with_vrrpv3_at_the_end(
    rehearsed: tuple[Lab, MigrationReport],
) -> None:
    lab, report = rehearsed
    for node in "ABC":
        outcome = report.imports[node]
        # The file as deployed: SNMP is the one thing dropped; --force writes a file that checks.
        assert outcome.seed_exit == 1 and outcome.seed_forced_exit == 1, outcome
        assert [d.split(": ", 2)[-1].split(":")[0] for d in outcome.seed_dropped] == [
            "global_defs snmp_socket"
        ], outcome
        assert outcome.seed_checked, outcome
        # The lab's file (mail and SNMP left out) imports faithfully.
        assert (outcome.exit_status, outcome.dropped) == (0, ()), outcome
        assert any("nopreempt is cleared because of state MASTER" in n for n in outcome.notes)
        assert lab.daemon_kind(node) == "pyvrrp"
        config = tomllib.loads((lab.node_dir(node) / "node.toml").read_text())
        assert {i["version"] for i in config["instances"].values()} == {3}
        # The import keeps machine-b's router_id as deployed (the guide says to fix it).
        router_id = {"A": "machine-a", "B": "machine-c", "C": "machine-c"}[node]
        assert config["global"]["router_id"] == router_id
        # A node on `version = 3` drops the v2 adverts of the peers still in 2+3 (and says
        # so); once all are on 3, nothing is dropped. Nothing else is ever a problem.
        pyvrrp_log = lab.log(node).split("starting pyvrrp")[-1]
        problems = pyvrrp_problems(pyvrrp_log)
        assert [p for p in problems if "sent a VRRPv2 advertisement" not in p] == []
        assert pyvrrp_problems(lab.log(node)[report.log_marks[node] :]) == []
    assert lab.holders() == SEED_TABLE
    # Right after its swap, each node was master of its own VIP, under the router_id its file
    # gave it (machine-b's says machine-c).
    for node, vip in V4.items():
        status = report.status[node]
        router_id = {"A": "machine-a", "B": "machine-c", "C": "machine-c"}[node]
        assert status.startswith(f"{router_id}: pyvrrp"), status
        assert re.search(rf"^{re.escape(vip)}\s+MASTER\b", status, re.MULTILINE), status


def test_migration_mode_speaks_vrrpv2_with_keepalived_and_the_cluster_ends_on_vrrpv3(
    rehearsed: tuple[Lab, MigrationReport],
) -> None:
    _, report = rehearsed
    node_of = {"192.168.200.1": "A", "192.168.200.2": "B", "192.168.200.3": "C"}
    swapped: list[str] = []
    for node in "ABC":
        # Right after its swap, a node in "2+3" had heard the masters it met (only masters
        # advertise): keepalived ones speaking VRRPv2 only, pyvrrp ones swapped before it both.
        for name, inst in report.status_json[node]["instances"].items():
            assert inst["vrrp_version"] == "2+3", (name, inst)
            heard = {node_of[peer]: p["versions"] for peer, p in inst["peers"].items()}
            assert heard, (node, name, inst)
            for peer, versions in heard.items():
                assert versions == ([2, 3] if peer in swapped else [2]), (node, name, heard)
        swapped.append(node)
    for node in "ABC":
        # At the end, the master of every instance this node backs up has been speaking
        # VRRPv3 only since its reload (3 s or more before; adverts come every second).
        for name, inst in report.final_status_json[node]["instances"].items():
            assert inst["vrrp_version"] == "3", (name, inst)
            if inst["state"] == "MASTER":
                continue
            ago = inst["peers"][inst["master"]["address"]]["last_seen_ago"]
            assert ago["3"] < 2.0 and ago.get("2", 1e9) > 2.0, (node, name, ago)


def test_pyvrrp_owns_the_routes_and_rules_the_if_up_hooks_made(
    rehearsed: tuple[Lab, MigrationReport],
) -> None:
    lab, _ = rehearsed
    table = str(lab.cluster.routing_table)
    for node in "ABC":
        routes = lab.run_in(node, "ip", "route", "show", "table", table).stdout
        assert "1.2.3.57 dev eth0.4000" in routes, routes
        assert "default via 1.2.3.57 dev eth0.4000" in routes, routes
        # Run in the node's namespace, `ip` names table 100 `vswitch`, as on the seed's nodes.
        rules = lab.run_in(node, "ip", "-4", "rule", "show").stdout
        assert "from 1.2.3.56/29 lookup vswitch" in rules, rules
        assert "from all to 1.2.3.56/29 lookup vswitch" in rules, rules
        config = tomllib.loads((lab.node_dir(node) / "node.toml").read_text())
        assert {r["table"] for r in config["routes"] + config["rules"]} == {"vswitch"}


def test_no_address_ever_has_two_holders_after_the_first_advert_exchange(
    rehearsed: tuple[Lab, MigrationReport],
) -> None:
    _, report = rehearsed
    for result in report.addresses.values():
        assert result.two_holders == (), report.format()
        assert result.split_brain == 0, report.format()


def test_each_address_loses_at_most_one_keepalived_sigterm_gap_over_the_whole_migration(
    rehearsed: tuple[Lab, MigrationReport],
) -> None:
    _, report = rehearsed
    assert report.bound_s == pytest.approx(keepalived_skew_time(BEST_BACKUP_PRIORITY) + 0.3)
    assert report.bound_s == sigterm_gap_bound()
    assert set(report.addresses) == {*V4.values(), *V6.values()}
    for node in "ABC":
        for addr in (V4[node], V6[node]):
            migration = report.migration_outage(addr)
            assert migration <= report.bound_s, report.format()
            # The measurement is real: keepalived's SIGTERM of this VIP's master did cost the
            # client about a Skew_Time (keepalived has no graceful handover).
            gap = report.sigterm_gaps[addr]
            assert gap >= keepalived_skew_time(BEST_BACKUP_PRIORITY + 2) - 0.2, report.format()
            # Everything else (pyvrrp taking the VIP back, the reloads) costs at most the slack.
            assert migration - gap <= 0.3, report.format()
    assert not report.failures()


def test_rolling_a_node_back_to_keepalived_and_forward_again_costs_one_sigterm_gap(
    rehearsed: tuple[Lab, MigrationReport],
) -> None:
    _, report = rehearsed
    assert len(report.rollback_steps) == 2
    for addr in (V4["A"], V6["A"]):
        result = report.addresses[addr]
        # pyvrrp's SIGTERM hands over gracefully (no outage); keepalived's costs its gap.
        assert result.per_step[report.rollback_steps[0]] <= 0.3, report.format()
        assert result.outage_in(report.rollback_steps) <= report.bound_s, report.format()
    for addr in (V4["B"], V6["B"], V4["C"], V6["C"]):
        assert report.addresses[addr].outage_in(report.rollback_steps) == 0.0, report.format()


GUIDE = Path(__file__).parents[2] / "docs" / "migrating-from-keepalived.md"


def test_the_guide_shows_what_the_rehearsal_runs() -> None:
    guide = GUIDE.read_text()
    assert HOOK_ROUTES_TOML in guide
    for command in (
        "pyvrrp import-keepalived /etc/keepalived/keepalived.conf -o /etc/pyvrrp/node.toml"
        " --vrrp-version 2+3",
        " --vrrp-version 2+3 --force",
        "pyvrrp check --host -c /etc/pyvrrp/node.toml",
        "sed -i 's/^version = .*/version = 3/' /etc/pyvrrp/node.toml",
        "pyvrrp reload -c /etc/pyvrrp/node.toml",
        "ip saddr { 192.168.200.2, 192.168.200.3 } ip protocol vrrp accept",
    ):
        assert command in guide, command
