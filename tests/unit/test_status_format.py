"""What `pyvrrp status` and `pyvrrp maintenance` print, from the daemon's JSON (no sockets)."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from pyvrrp.core.config import parse_node
from pyvrrp.core.tracking import Tracking
from pyvrrp.status_format import (
    format_duration,
    format_maintenance,
    format_status,
    format_status_json,
    priority_breakdown,
)

# The status of node A in the seed deployment, as the daemon sends it.
SEED_STATUS_JSON = """
{"router_id": "node-a", "pid": 1234, "version": "0.1.0", "uptime": 12.5,
 "instances": {"vip58": {
   "state": "MASTER", "in_state_for": 8.1, "interface": "eth0.4000", "vrid": 58, "family": "ipv4",
   "base_priority": 100, "effective_priority": 40, "maintenance": false, "faults": [],
   "trackers": [
     {"kind": "script", "name": "chk_nginx_ingress", "weight": -60, "state": "bad",
      "effect": -60, "fault": false, "implicit": false},
     {"kind": "interface", "name": "dummy0", "weight": 0, "state": "up", "effect": 0,
      "fault": false, "implicit": false},
     {"kind": "interface", "name": "eth0.4000", "weight": 0, "state": "up", "effect": 0,
      "fault": false, "implicit": true}],
   "master": {"address": "192.168.200.1", "priority": 100},
   "advert_interval": 1.0, "master_advert_interval": 1.0, "holding_addresses": true,
   "addresses": ["1.2.3.58/29"], "excluded_addresses": ["2a03:4444:fff0:59:88::58/64"],
   "unicast_peers": ["192.168.200.2", "192.168.200.3"],
   "counters": {"adverts_sent": 10, "adverts_received": 0, "priority_zero_sent": 0,
                "priority_zero_received": 0, "became_master": 1, "drops": {"checksum": 2}}}},
 "scripts": {"chk_nginx_ingress": {
   "state": "bad", "position": "2 failures (fall 2)", "last_result": "exit status 22",
   "last_duration": 0.012, "last_run_ago": 0.8, "runs": 12, "failures": 2, "skipped": 0}},
 "interface_drops": {"eth0.4000/ipv4": {"unknown_vrid": 3}}}
"""
SEED_STATUS: dict[str, Any] = json.loads(SEED_STATUS_JSON)

SEED_TEXT = """\
node-a: pyvrrp 0.1.0, pid 1234, up 12s; 1 instance: 1 MASTER

vip58  MASTER for 8.1s  (VRID 58 on eth0.4000, IPv4)
  priority     40 = 100 base - 60 chk_nginx_ingress (bad)
  tracking     script chk_nginx_ingress: bad (weight -60: subtracts 60 while bad)
               interface dummy0: up (down = FAULT)
               interface eth0.4000: up (down = FAULT) [implicit]
  master       192.168.200.1, priority 100, advert interval 1s
  addresses    1.2.3.58/29 (held here)
  excluded     2a03:4444:fff0:59:88::58/64
  unicast      to 192.168.200.2, 192.168.200.3
  counters     adverts sent 10, received 0; priority 0 sent 0, received 0; became master 1
  drops        checksum 2

scripts:
  chk_nginx_ingress: bad, 2 failures (fall 2)
    last run 0.8s ago: exit status 22 (took 12ms); 12 runs, 2 failures, 0 skipped

dropped before reaching an instance:
  eth0.4000/ipv4: unknown_vrid 3
  (unknown_vrid: advertisements for a VRID no instance here has; another cluster on the same \
link?)"""


def seed_instance(**changes: Any) -> dict[str, Any]:
    instance: dict[str, Any] = copy.deepcopy(SEED_STATUS["instances"]["vip58"])
    instance.update(changes)
    return instance


def status_with(**instances: dict[str, Any]) -> dict[str, Any]:
    return {"router_id": "node-a", "version": "0.1.0", "instances": instances}


def block(text: str, name: str) -> list[str]:
    """The lines of one instance's block."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}  "))
    end = next((i for i in range(start, len(lines)) if not lines[i]), len(lines))
    return lines[start:end]


def line(text: str, name: str, label: str) -> str:
    [found] = [row for row in block(text, name) if row.startswith(f"  {label} ")]
    return found[2:].removeprefix(label).strip()


def test_the_seed_status_reads_like_this() -> None:
    assert format_status(SEED_STATUS) == SEED_TEXT


def test_json_output_is_the_daemons_answer_indented_with_sorted_keys() -> None:
    text = format_status_json(SEED_STATUS)
    assert json.loads(text) == SEED_STATUS
    assert text.startswith('{\n  "instances": {\n    "vip58": {\n      "addresses": [')
    assert format_status_json(json.loads(text)) == text  # stable


@pytest.mark.parametrize(
    ("trackers", "base", "effective", "expected"),
    [
        ([], 100, 100, "100 = 100 base"),
        ([("chk_a", "good", 10)], 100, 110, "110 = 100 base + 10 chk_a (good)"),
        (
            [("chk_a", "bad", -60), ("eth1", "up", 20), ("chk_b", "good", 0)],
            100,
            60,
            "60 = 100 base - 60 chk_a (bad) + 20 eth1 (up)",
        ),
        ([("chk_a", "bad", -60)], 50, 1, "1 = 50 base - 60 chk_a (bad) = -10, clamped to 1..254"),
        (
            [("chk_a", "good", 50)],
            250,
            254,
            "254 = 250 base + 50 chk_a (good) = 300, clamped to 1..254",
        ),
        ([("chk_a", "bad", -60)], 255, 255, "255 (address owner: trackers never change it)"),
        (
            [("chk_a", "bad", -60)],
            100,
            90,
            "90 = 100 base - 60 chk_a (bad) (the terms add up to 40)",
        ),
    ],
)
def test_the_priority_breakdown_names_every_tracker_that_changes_it(
    trackers: list[tuple[str, str, int]], base: int, effective: int, expected: str
) -> None:
    instance = {
        "base_priority": base,
        "effective_priority": effective,
        "trackers": [
            {"kind": "script", "name": name, "state": state, "weight": effect, "effect": effect}
            for name, state, effect in trackers
        ],
    }
    assert priority_breakdown(instance) == expected


@pytest.mark.parametrize(
    ("priority", "weight", "expected"),
    [
        (100, -60, "40 = 100 base - 60 chk_nginx_ingress (bad)"),
        (50, -60, "1 = 50 base - 60 chk_nginx_ingress (bad) = -10, clamped to 1..254"),
        (255, 0, "255 (address owner: trackers never change it)"),
    ],
)
def test_status_says_why_in_the_words_of_the_logs(
    priority: int, weight: int, expected: str
) -> None:
    node = parse_node(
        {
            "scripts": {"chk_nginx_ingress": {"command": ["true"], "weight": weight}},
            "instances": {
                "vip58": {
                    "interface": "eth0.4000",
                    "vrid": 58,
                    "priority": priority,
                    "addresses": ["1.2.3.58/29"],
                    "track_scripts": ["chk_nginx_ingress"],
                }
            },
        }
    )
    tracking = Tracking(node)
    tracking.script_result("chk_nginx_ingress", False)
    health = tracking.health("vip58")
    # The daemon's status of the instance, as pyvrrp.runtime.node builds it.
    instance = {
        "base_priority": health.base,
        "effective_priority": health.priority,
        "trackers": json.loads(json.dumps([attrs.asdict(c) for c in health.contributions])),
    }
    assert priority_breakdown(instance) == health.explain_priority() == expected
    assert health.explain().endswith(f"priority {expected}")


def test_trackers_explain_their_weight() -> None:
    trackers = [
        {"kind": "script", "name": "chk_up", "weight": 10, "state": "good", "effect": 10},
        {"kind": "script", "name": "chk_w0", "weight": 0, "state": "bad", "fault": True},
        {"kind": "interface", "name": "eth1", "weight": -20, "state": "up", "effect": 0},
        {"kind": "interface", "name": "eth2", "weight": 5, "state": "up", "effect": 5},
    ]
    text = format_status(status_with(vip=seed_instance(trackers=trackers)))
    tracking = [row.strip().removeprefix("tracking").strip() for row in block(text, "vip")[2:6]]
    assert tracking == [
        "script chk_up: good (weight +10: adds 10 while good)",
        "script chk_w0: bad (bad = FAULT) [FAULT now]",
        "interface eth1: up (weight -20: subtracts 20 while down)",
        "interface eth2: up (weight +5: adds 5 while up)",
    ]


def test_a_fault_shows_its_causes_and_that_the_priority_is_not_advertised() -> None:
    instance = seed_instance(state="FAULT", faults=["chk_w0", "eth0 down"], master=None)
    text = format_status(status_with(vip=instance))
    assert block(text, "vip")[0].startswith("vip  FAULT for 8.1s")
    assert line(text, "vip", "faults") == "chk_w0, eth0 down"
    assert line(text, "vip", "priority").endswith("; not advertised in FAULT")
    assert line(text, "vip", "master") == "none heard, advert interval 1s"


def test_maintenance_says_how_to_end_it() -> None:
    text = format_status(status_with(vip60=seed_instance(state="FAULT", maintenance=True)))
    assert line(text, "vip60", "maintenance") == (
        "on: FAULT on purpose; `pyvrrp maintenance off vip60` ends it"
    )
    assert "maintenance" not in "\n".join(block(format_status(SEED_STATUS), "vip58"))


def test_a_learned_advert_interval_is_shown_next_to_ours() -> None:
    instance = seed_instance(state="BACKUP", master_advert_interval=2.0, advert_interval=0.5)
    text = format_status(status_with(vip=instance))
    assert line(text, "vip", "master") == (
        "192.168.200.1, priority 100, advert interval 2s (learned; ours is 500ms)"
    )


def test_the_vrrp_version_and_each_peers_versions_are_shown() -> None:
    peers = {
        "192.168.200.2": {
            "versions": [2, 3],
            "adverts": {"2": 40, "3": 41},
            "last_seen_ago": {"2": 12.5, "3": 0.4},
        },
        "192.168.200.3": {"versions": [2], "adverts": {"2": 1}, "last_seen_ago": {"2": 0.7}},
    }
    instance = seed_instance(vrrp_version="2+3", peers=peers)
    text = format_status(status_with(vip=instance))
    assert block(text, "vip")[0].endswith("(VRID 58 on eth0.4000, IPv4, VRRPv2+v3 (migration))")
    rows = block(text, "vip")
    at = next(i for i, row in enumerate(rows) if row.startswith("  peers "))
    assert rows[at : at + 2] == [
        "  peers        192.168.200.2: v2 12s ago (40 adverts), v3 0.4s ago (41 adverts)",
        "               192.168.200.3: v2 0.7s ago (1 advert)",
    ]
    for version, shown in (("2", "VRRPv2"), ("3", "VRRPv3"), ("4", "4")):
        text = format_status(status_with(vip=seed_instance(vrrp_version=version)))
        assert block(text, "vip")[0].endswith(f", IPv4, {shown})")


@pytest.mark.parametrize("peer", [None, {}, {"versions": "2"}, {"adverts": {"2": "x"}}])
def test_odd_peer_entries_never_break_the_output(peer: object) -> None:
    text = format_status(status_with(vip=seed_instance(peers={"192.0.2.1": peer})))
    assert "192.0.2.1: " in text


def test_only_non_zero_drops_are_shown() -> None:
    counters = seed_instance()["counters"]
    counters["drops"] = {"checksum": 0, "ttl": 4, "auth": 0}
    text = format_status(
        {
            **status_with(vip=seed_instance(counters=counters)),
            "interface_drops": {"eth0.4000/ipv4": {"unknown_vrid": 0}, "eth1/ipv6": {"ip": 2}},
        }
    )
    assert line(text, "vip", "drops") == "ttl 4"
    assert text.endswith("dropped before reaching an instance:\n  eth1/ipv6: ip 2")
    counters["drops"] = {"checksum": 0}
    text = format_status(status_with(vip=seed_instance(counters=counters)))
    assert not [row for row in block(text, "vip") if "drops" in row]
    assert "dropped before" not in text


def test_email_counters_are_shown_when_email_is_configured() -> None:
    email = {
        "enabled": True,
        "sent": 3,
        "failures": 2,
        "retries": 2,
        "dropped": 0,
        "pending": 1,
        "transitions": 7,
        "last_sent": 1764250000.5,
        "last_error": "127.0.0.1:25: Connection refused",
    }
    text = format_status({**status_with(vip=seed_instance()), "email": email})
    assert text.endswith(
        "\n\ne-mail:\n"
        "  3 sent, 1 pending; 2 failed attempts, 2 retries, 0 dropped\n"
        "  last failure: 127.0.0.1:25: Connection refused"
    )
    email.update(enabled=False)
    assert "e-mail" not in format_status({**status_with(vip=seed_instance()), "email": email})


def test_unknown_counters_are_shown_and_unknown_keys_ignored() -> None:
    counters = {**seed_instance()["counters"], "queue_overflows": 7, "note": "x"}
    instance = seed_instance(counters=counters, future_field={"a": 1})
    text = format_status({**status_with(vip=instance), "future": [1, 2]})
    assert line(text, "vip", "counters").endswith("; became master 1; queue overflows 7")


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"instances": {"vip": {}}},
        {"instances": {"vip": None}, "scripts": {"chk": None}, "interface_drops": {"x": None}},
        {
            "instances": {
                "vip": {
                    "state": 5,
                    "in_state_for": "long",
                    "trackers": "none",
                    "faults": "many",
                    "counters": [],
                    "master": "me",
                    "base_priority": "high",
                    "addresses": None,
                    "holding_addresses": "yes",
                }
            },
            "scripts": {"chk": {"state": None, "runs": "x", "last_run_ago": float("nan")}},
            "interface_drops": {"eth0/ipv4": {"unknown_vrid": "3"}},
            "uptime": float("inf"),
        },
        {"instances": [], "scripts": [], "interface_drops": "none"},
    ],
)
def test_missing_or_odd_fields_never_break_the_output(status: dict[str, Any]) -> None:
    text = format_status(status)
    assert text.startswith("?: pyvrrp ?")


def test_a_minimal_instance_shows_question_marks_not_errors() -> None:
    text = format_status({"instances": {"vip": {}}})
    assert text == (
        "?: pyvrrp ?; 1 instance: 1 ?\n\nvip  ? for ?  (VRID ? on ?)\n"
        "  priority     ?\n  master       none heard"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.0s"),
        (0.8, "0.8s"),
        (9.96, "10.0s"),
        (12.5, "12s"),
        (59.9, "59s"),
        (192, "3m 12s"),
        (3725, "1h 2m"),
        (86400 * 3 + 3600 * 4 + 5, "3d 4h"),
        (-1, "?"),
        (None, "?"),
        (True, "?"),
        (float("nan"), "?"),
    ],
)
def test_durations_read_like_a_person_says_them(seconds: object, text: str) -> None:
    assert format_duration(seconds) == text


def test_maintenance_on_says_what_happens_to_each_instance() -> None:
    result = {
        "on": True,
        "changed": ["vip58", "vip59", "vip60", "vip61"],
        "unchanged": ["vip62"],
        "previous": {
            "vip58": {"state": "MASTER", "faults": []},
            "vip59": {"state": "BACKUP", "faults": []},
            "vip60": {"state": "FAULT", "faults": ["chk_x", "eth1 down"]},
        },
    }
    assert format_maintenance(result) == [
        "vip58: maintenance on (FAULT, priority 0 sent; the backup takes over within skew time)",
        "vip59: maintenance on (FAULT; it was BACKUP, so no address moves)",
        "vip60: maintenance on (it was already FAULT: chk_x, eth1 down)",
        "vip61: maintenance on (FAULT)",
        "vip62: maintenance already on",
    ]


def test_maintenance_off_says_whether_the_instance_competes_again() -> None:
    result = {
        "on": False,
        "changed": ["vip58", "vip60"],
        "unchanged": ["vip59"],
        "previous": {"vip58": {"state": "FAULT", "faults": []}, "vip60": {"faults": ["chk_x"]}},
    }
    assert format_maintenance(result) == [
        "vip58: maintenance off (BACKUP; it becomes master again if it has the highest "
        "priority and preempts)",
        "vip60: maintenance off (still FAULT: chk_x)",
        "vip59: maintenance already off",
    ]


def test_maintenance_with_nothing_to_change_says_so() -> None:
    assert format_maintenance({"on": True, "changed": [], "unchanged": []}) == [
        "no instance changed"
    ]


OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"


def doc_example(section: str) -> str:
    """The first ```text block of a section of docs/operations.md."""
    text = OPERATIONS.read_text()
    start = text.index(f"\n## {section}\n")
    block = text.index("```text\n", start) + len("```text\n")
    return text[block : text.index("```", block)].rstrip("\n")


def operations_status() -> dict[str, Any]:
    """Node A with a failing health check and vip60 in maintenance, as in the docs."""
    trackers = seed_instance()["trackers"]
    trackers[1]["name"] = "eth0"

    def instance(vrid: int, **changes: Any) -> dict[str, Any]:
        return seed_instance(
            vrid=vrid,
            trackers=copy.deepcopy(trackers),
            holding_addresses=False,
            addresses=[f"1.2.3.{vrid}/29"],
            excluded_addresses=[f"2a03:4444:fff0:59:88::{vrid}/64"],
            vrrp_version="3",
            **changes,
        )

    def heard(adverts: int) -> dict[str, Any]:
        return {
            "192.168.200.3": {
                "versions": [3],
                "adverts": {"3": adverts},
                "last_seen": {"3": 1765000000.4},
                "last_seen_ago": {"3": 0.4},
            }
        }

    def counters(sent: int, received: int, became_master: int) -> dict[str, Any]:
        return {
            "adverts_sent": sent,
            "adverts_received": received,
            "priority_zero_sent": 0,
            "priority_zero_received": 0,
            "became_master": became_master,
            "drops": {"checksum": 0},
        }

    status = copy.deepcopy(SEED_STATUS)
    status.update(pid=4242, uptime=3 * 86400 + 5 * 3600 + 120)
    status["instances"] = {
        "vip58": instance(
            58,
            state="BACKUP",
            in_state_for=95.2,
            master={"address": "192.168.200.3", "priority": 75},
            counters=counters(271210, 96, 2),
            peers=heard(96),
            history=[
                {
                    "time": 1796256725.02,
                    "from": "INIT",
                    "to": "BACKUP",
                    "cause": "startup",
                    "reason": "startup",
                    "priority": 100,
                },
                {
                    "time": 1796256728.631,
                    "from": "BACKUP",
                    "to": "MASTER",
                    "cause": "master_down",
                    "reason": "no advertisement for Master_Down_Interval",
                    "priority": 100,
                },
                {
                    "time": 1796534077.5,
                    "from": "MASTER",
                    "to": "BACKUP",
                    "cause": "higher_priority",
                    "reason": "192.168.200.3 advertises priority 75 (ours 40)",
                    "priority": 40,
                },
            ],
        ),
        "vip60": instance(
            60,
            state="FAULT",
            in_state_for=1830,
            base_priority=50,
            effective_priority=1,
            maintenance=True,
            master=None,
            counters=counters(0, 269460, 0),
            peers=heard(269460),
        ),
    }
    status["scripts"]["chk_nginx_ingress"].update(runs=135650, failures=49)
    return status


@pytest.mark.usefixtures("utc")
def test_the_status_example_in_the_operations_guide_is_what_the_command_prints() -> None:
    assert doc_example("`pyvrrp status`") == format_status(operations_status())


def test_the_maintenance_example_in_the_operations_guide_is_what_the_command_prints() -> None:
    result = {
        "on": True,
        "changed": ["vip58", "vip59"],
        "unchanged": ["vip60"],
        "previous": {"vip58": {"state": "MASTER"}, "vip59": {"state": "BACKUP"}},
    }
    assert doc_example("`pyvrrp maintenance`") == "\n".join(format_maintenance(result))


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC (the history shows local times)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def history_entry(seconds: int, old: str, new: str, reason: str, priority: int) -> dict[str, Any]:
    return {
        "time": 1_765_000_000 + seconds,  # 2025-12-06 05:46:40 UTC
        "from": old,
        "to": new,
        "cause": "x",
        "reason": reason,
        "priority": priority,
    }


@pytest.mark.usefixtures("utc")
def test_the_last_transitions_are_shown_oldest_first_with_how_many_more_are_kept() -> None:
    history = [
        history_entry(
            n, "BACKUP" if n % 2 else "MASTER", "MASTER" if n % 2 else "BACKUP", f"r{n}", 100
        )
        for n in range(7)
    ]
    text = format_status(status_with(vip58=seed_instance(history=history)))
    rows = block(text, "vip58")
    start = next(i for i, row in enumerate(rows) if row.startswith("  history"))
    assert rows[start:] == [
        "  history      2025-12-06 05:46:42  MASTER -> BACKUP (r2), priority 100",
        "               2025-12-06 05:46:43  BACKUP -> MASTER (r3), priority 100",
        "               2025-12-06 05:46:44  MASTER -> BACKUP (r4), priority 100",
        "               2025-12-06 05:46:45  BACKUP -> MASTER (r5), priority 100",
        "               2025-12-06 05:46:46  MASTER -> BACKUP (r6), priority 100",
        "               and 2 earlier (pyvrrp status --json shows them)",
    ]


def test_no_history_shows_no_history_lines_and_odd_entries_do_not_break_it() -> None:
    assert "history" not in format_status(status_with(vip58=seed_instance(history=[])))
    odd = format_status(status_with(vip58=seed_instance(history=[None, {"time": "x"}, 5])))
    assert "  history      ?  ? -> ?, priority ?" in odd
