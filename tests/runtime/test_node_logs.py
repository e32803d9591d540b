"""A node's transition log lines carry the transition as fields (``--log-format json``)."""

from __future__ import annotations

import json
import logging

import pytest
import trio
import trio.testing

from pyvrrp.runtime.logs import JsonFormatter

from .cluster import Cluster, config, instance


async def test_transition_lines_in_json_have_instance_vrid_states_reason_and_priority(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "pyvrrp")
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery)
        await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
        await cluster.sleep_until(5)
        nursery.cancel_scope.cancel()
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    transitions = [line for line in lines if line.get("event") == "transition"]
    fields = ("instance", "vrid", "from", "to", "reason", "cause", "priority")
    assert [{key: line[key] for key in fields} for line in transitions] == [
        {
            "instance": "vip58",
            "vrid": 58,
            "from": "INIT",
            "to": "BACKUP",
            "reason": "startup",
            "cause": "startup",
            "priority": 100,
        },
        {
            "instance": "vip58",
            "vrid": 58,
            "from": "BACKUP",
            "to": "MASTER",
            "reason": "no advertisement for Master_Down_Interval",
            "cause": "master_down",
            "priority": 100,
        },
    ]
    assert transitions[1]["message"] == (
        "vip58: BACKUP -> MASTER (no advertisement for Master_Down_Interval), priority 100"
    )
    assert transitions[1]["level"] == "info"
