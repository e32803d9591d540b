"""Queues that a stuck reader or a flood could grow stay bounded (docs/design.md, "Bounded
queues"): a subscriber that never reads the transitions misses the ones past
``SUBSCRIBER_QUEUE``, counted and logged once per window, the others still get everything;
packets beyond an instance's ``PACKET_QUEUE`` are dropped and counted."""

from __future__ import annotations

import logging
from ipaddress import ip_address

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import Cause, State, StateChanged
from pyvrrp.core.events import PacketReceived
from pyvrrp.runtime.node import PACKET_QUEUE, SUBSCRIBER_QUEUE

from .cluster import Cluster, config, instance


async def test_a_subscriber_that_never_reads_misses_transitions_past_its_queue(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    await cluster.sleep_until(5)
    node = a.node
    stuck = node.subscribe()
    reader = node.subscribe()
    vip58 = node.instances["vip58"]
    change = StateChanged(State.MASTER, State.BACKUP, Cause.HIGHER_PRIORITY, "test", 100)
    extra = 10
    with caplog.at_level(logging.WARNING, logger="pyvrrp"):
        for n in range(SUBSCRIBER_QUEUE + extra):
            node.publish(vip58, change, n)
            if n % 100 == 0:
                # The reader (and the cluster's recorder) keep up: they lose nothing.
                await trio.testing.wait_all_tasks_blocked()
                while True:
                    try:
                        reader.receive_nowait()
                    except trio.WouldBlock:
                        break
    assert stuck.statistics().current_buffer_used == SUBSCRIBER_QUEUE
    assert node.subscriber_overflows == extra
    warnings = [m for m in caplog.messages if "subscriber of the transitions" in m]
    assert warnings == [
        f"a subscriber of the transitions has {SUBSCRIBER_QUEUE} unread: dropped one of vip58"
    ]
    assert reader.statistics().current_buffer_used < SUBSCRIBER_QUEUE


async def test_a_flood_of_packets_fills_an_instances_queue_then_is_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", config({"vip58": instance(58, 100, "1.2.3.58/29")}))
    await cluster.sleep_until(5)
    vip58 = a.node.instances["vip58"]
    packet = PacketReceived(b"\x31\x3a", ip_address("192.168.200.9"), ip_address("224.0.0.18"), 255)
    with caplog.at_level(logging.WARNING, logger="pyvrrp"):
        # All at once, before the driver runs: the queue takes PACKET_QUEUE of them.
        for _ in range(PACKET_QUEUE + 44):
            vip58.post_packet(packet)
        await trio.testing.wait_all_tasks_blocked()
    status = a.node.status()["instances"]["vip58"]["counters"]
    assert status["queue_overflows"] == 44
    assert status["drops"] == {"too_short": PACKET_QUEUE}  # the queued ones met the rules
    overflow = [m for m in caplog.messages if "a flood?" in m]
    assert overflow == [
        f"vip58: dropped a packet from 192.168.200.9: {PACKET_QUEUE} already queued (a flood?)"
    ]
    # The queue drained: the next packet is queued again, not dropped.
    vip58.post_packet(packet)
    await trio.testing.wait_all_tasks_blocked()
    assert a.node.status()["instances"]["vip58"]["counters"]["queue_overflows"] == 44
