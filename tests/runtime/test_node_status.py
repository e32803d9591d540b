"""``Node.status()`` (what ``pyvrrp status --json`` prints and metrics are made of), in
virtual time: every documented key with its value, before and after a failover.

A (100) and C (75) hold vip58 and track the seed's check (interval 2, fall 2, rise 2, weight
-60). Times are seconds since the cluster started: A is master from 3.609375 s and
advertises every second; its check fails from the run at 10 on, so it drops to 40 at 12 and
C preempts it.
"""

from __future__ import annotations

import json
import os
import time
from ipaddress import ip_address
from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp import __version__
from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import DecodeError, DropReason, Family
from pyvrrp.core.timers import US_PER_SECOND as SECOND
from pyvrrp.core.timers import skew_time
from pyvrrp.status_format import format_status
from pyvrrp.testing.fakeprocess import FakeRun

from .cluster import Cluster, config, instance

VIP = "1.2.3.58/29"
EXCLUDED = "2a03:4444:fff0:59:88::58/64"
CHK = "chk_nginx_ingress"
COMMAND = ("/usr/local/bin/chk",)
# VRID 58, priority 100, with a wrong checksum; and the same for VRID 7, which nobody has.
BAD_CHECKSUM = bytes.fromhex("313a6401006405720102033a")
UNKNOWN_VRID = b"\x31\x07" + BAD_CHECKSUM[2:]
# A's check fails from 10 on, each run taking 12 ms: bad when the run at 12 ends, and C (75)
# preempts A (40) one Skew_Time(75) later.
TAKEOVER = 12.012 + skew_time(75, SECOND) / SECOND


def node_config(priority: int, **top: Any) -> Any:
    table = instance(
        58,
        priority,
        VIP,
        excluded=EXCLUDED,
        track_scripts=[CHK],
        track_interfaces=["eth0", {"name": "dummy0", "weight": -10}],
    )
    scripts = {
        CHK: {"command": list(COMMAND), "interval": 2.0, "fall": 2, "rise": 2, "weight": -60},
        "unused": {"command": ["/bin/true"]},
    }
    return config({"vip58": table}, scripts=scripts, **top)


def tracker(
    kind: str,
    name: str,
    weight: int,
    state: str,
    effect: int = 0,
    *,
    fault: bool = False,
    implicit: bool = False,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "name": name,
        "weight": weight,
        "state": state,
        "effect": effect,
        "fault": fault,
        "implicit": implicit,
    }


async def test_status_reports_every_key_and_follows_a_failover(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", node_config(100, **{"global": {"router_id": "node-a"}}))
    c = await cluster.start("C", node_config(75))
    source, group = ip_address("192.168.200.9"), ip_address("224.0.0.18")
    for message in (BAD_CHECKSUM, UNKNOWN_VRID, UNKNOWN_VRID):
        cluster.lan.inject("A", PacketReceived(message, source, group, 255), Family.IPV4)
    cluster.lan.inject("A", DecodeError(DropReason.IP_HEADER, "bad"), Family.IPV4)
    await cluster.sleep_until(9)
    a.runner.set(COMMAND, FakeRun.fail(7, duration=0.012))
    await cluster.sleep_until(10.5)

    status = a.node.status()
    json.dumps(status)  # JSON-able as it is
    assert status["router_id"] == "node-a"
    assert status["pid"] == os.getpid()
    assert status["version"] == __version__
    assert status["uptime"] == 10.5  # virtual time since run() started
    # In this order, as `pyvrrp status --json` has always printed them.
    assert list(status) == [
        "router_id",
        "pid",
        "version",
        "uptime",
        "instances",
        "scripts",
        "notifications",
        "interface_drops",
    ]
    assert list(status["instances"]["vip58"])[:6] == [
        "state",
        "in_state_for",
        "last_transition",
        "interface",
        "vrid",
        "family",
    ]
    assert list(status["instances"]["vip58"])[-5:] == [
        "unicast_peers",
        "vrrp_version",
        "peers",
        "counters",
        "history",
    ]
    vip58 = status["instances"]["vip58"]
    assert vip58["last_transition"] > 0  # a wall-clock timestamp
    del vip58["last_transition"]
    history = vip58.pop("history")
    times = [entry.pop("time") for entry in history]
    assert 0 < times[0] <= times[1]  # wall-clock timestamps, in order
    assert history == [
        {"from": "INIT", "to": "BACKUP", "cause": "startup", "reason": "startup", "priority": 100},
        {
            "from": "BACKUP",
            "to": "MASTER",
            "cause": "master_down",
            "reason": "no advertisement for Master_Down_Interval",
            "priority": 100,
        },
    ]
    assert vip58 == {
        "state": "MASTER",
        "in_state_for": round(10.5 - 3.609375, 3),
        "interface": "eth0.4000",
        "vrid": 58,
        "family": "ipv4",
        "base_priority": 100,
        "effective_priority": 100,
        "maintenance": False,
        "faults": [],
        "trackers": [
            tracker("script", CHK, -60, "good"),
            tracker("interface", "eth0", 0, "up"),
            tracker("interface", "dummy0", -10, "up"),
            tracker("interface", "eth0.4000", 0, "up", implicit=True),
        ],
        "master": {"address": "192.168.200.1", "priority": 100},
        "advert_interval": 1.0,
        "master_advert_interval": 1.0,
        "holding_addresses": True,
        "addresses": [VIP],
        "excluded_addresses": [EXCLUDED],
        "unicast_peers": [],
        "vrrp_version": "3",
        "peers": {},  # C, its backup, sends nothing
        "counters": {
            # Master from 3.609375: one advertisement a second, 3.609375 ... 9.609375.
            "adverts_sent": 7,
            "adverts_received": 0,
            "priority_zero_sent": 0,
            "priority_zero_received": 0,
            "became_master": 1,
            "drops": {"checksum": 1},
            "queue_overflows": 0,
        },
    }
    # The run at 10 failed (1 of 2 towards fall), the unused script never ran.
    assert status["scripts"] == {
        CHK: {
            "state": "good",
            "good": True,
            "tracked": True,
            "position": "1/2 failures to fall",
            "consecutive_successes": 0,
            "consecutive_failures": 1,
            "rise": 2,
            "fall": 2,
            "last_result": "exit status 7",
            "last_exit_status": 7,
            "last_duration": pytest.approx(0.012, abs=1e-9),
            "last_run": status["scripts"][CHK]["last_run"],
            "last_run_ago": 0.5,
            "runs": 6,
            "failures": 1,
            "timeouts": 0,
            "skipped": 0,
        },
        "unused": {
            "state": "unknown",
            "good": True,
            "tracked": False,
            "position": "",
            "consecutive_successes": 0,
            "consecutive_failures": 0,
            "rise": 1,
            "fall": 1,
            "last_result": None,
            "last_exit_status": None,
            "last_duration": None,
            "last_run": None,
            "last_run_ago": None,
            "runs": 0,
            "failures": 0,
            "timeouts": 0,
            "skipped": 0,
        },
    }
    assert status["interface_drops"] == {"eth0.4000/ipv4": {"unknown_vrid": 2, "ip_header": 1}}
    assert status["notifications"]["vip58"]["queued"] == 0
    # C, the backup, hears A.
    backup = c.node.status()["instances"]["vip58"]
    assert (backup["state"], backup["in_state_for"]) == ("BACKUP", 10.5)
    assert backup["master"] == {"address": "192.168.200.1", "priority": 100}
    assert backup["counters"]["adverts_received"] == 7
    # Which versions A speaks, and when C last heard it: at 9.609375 s, 0.890625 s ago.
    heard = backup["peers"]["192.168.200.1"]
    assert heard["versions"] == [3]
    assert heard["adverts"] == {"3": 7}
    assert heard["last_seen_ago"] == {"3": round(10.5 - 9.609375, 3)}
    assert heard["last_seen"]["3"] == pytest.approx(time.time() - 0.890625, abs=5)
    assert backup["counters"]["adverts_sent"] == 0
    assert backup["holding_addresses"] is False
    assert c.node.status()["router_id"] == os.uname().nodename  # the default

    # After the failover: A at 40 since the run at 12 ended (12.012), C master a
    # Skew_Time later.
    await cluster.sleep_until(15)
    status = a.node.status()
    vip58 = status["instances"]["vip58"]
    assert (vip58["state"], vip58["in_state_for"]) == ("BACKUP", round(15 - TAKEOVER, 3))
    assert (vip58["base_priority"], vip58["effective_priority"]) == (100, 40)
    assert vip58["trackers"][0] == tracker("script", CHK, -60, "bad", -60)
    assert vip58["master"] == {"address": "192.168.200.3", "priority": 75}
    assert vip58["holding_addresses"] is False
    counters = vip58["counters"]
    # 3.609375 ... 11.609375 at 100, 12.012 at 40, the parting one at 40 when it yields at
    # TAKEOVER; C's: its first, its re-assertion answering that parting one, and two more.
    assert (counters["adverts_sent"], counters["adverts_received"]) == (11, 4)
    assert counters["became_master"] == 1
    script = status["scripts"][CHK]
    assert (script["state"], script["good"], script["consecutive_failures"]) == (
        "bad",
        False,
        3,
    )
    assert (script["position"], script["runs"], script["failures"]) == ("", 8, 3)
    assert status["uptime"] == 15.0
    text = format_status(status)
    assert "priority     40 = 100 base - 60 chk_nginx_ingress (bad)" in text
    master = c.node.status()["instances"]["vip58"]
    assert (master["state"], master["in_state_for"]) == ("MASTER", round(15 - TAKEOVER, 3))
    assert master["master"] == {"address": "192.168.200.3", "priority": 75}
    assert master["counters"]["became_master"] == 1
    assert master["holding_addresses"] is True

    # dummy0 down on A: -10 more, then FAULT would need weight 0; here 40 - 10 = 30.
    a.netlink.set_link_up("dummy0", False)
    await cluster.sleep_until(16)
    vip58 = a.node.status()["instances"]["vip58"]
    assert vip58["effective_priority"] == 30
    assert vip58["trackers"][2] == tracker("interface", "dummy0", -10, "down", -10)
    # eth0 down: weight 0, FAULT; the tracker says so.
    a.netlink.set_link_up("eth0", False)
    await cluster.sleep_until(17)
    vip58 = a.node.status()["instances"]["vip58"]
    assert (vip58["state"], vip58["faults"]) == ("FAULT", ["interface eth0"])
    assert vip58["trackers"][1] == tracker("interface", "eth0", 0, "down", fault=True)
    assert vip58["master"] is None
