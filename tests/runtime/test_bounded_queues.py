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


async def test_events_streams_are_capped_so_commands_always_find_a_connection(
    nursery: trio.Nursery,
) -> None:
    import json
    import shutil
    import tempfile

    from pyvrrp.runtime.control import MAX_CLIENTS, MAX_EVENT_STREAMS, serve_control
    from tests.runtime.test_control import FakeHandler

    assert MAX_EVENT_STREAMS < MAX_CLIENTS
    directory = tempfile.mkdtemp(prefix="pyvrrp-ev-", dir="/tmp")
    path = f"{directory}/pyvrrp.sock"
    handler = FakeHandler()
    await nursery.start(serve_control, path, handler)

    async def ask(request: bytes) -> tuple[trio.SocketStream, dict[str, object]]:
        stream = await trio.open_unix_socket(path)
        await stream.send_all(request + b"\n")
        data = b""
        while b"\n" not in data:
            data += await stream.receive_some()
        return stream, json.loads(data.split(b"\n")[0])

    try:
        with trio.fail_after(10):
            streams = []
            for _ in range(MAX_EVENT_STREAMS):
                stream, answer = await ask(b'{"command": "events"}')
                assert answer == {"ok": True, "result": {"events": "subscribed"}}
                streams.append(stream)
            extra, answer = await ask(b'{"command": "events"}')
            assert answer == {
                "ok": False,
                "error": f"pyvrrp is busy: {MAX_EVENT_STREAMS} events streams are open already",
                "code": "busy",
            }
            await extra.aclose()
            # Commands still get through, and the refused stream left no subscription.
            status, answer = await ask(b'{"command": "status"}')
            assert answer["ok"] is True
            await status.aclose()
            assert handler.events.subscribers == MAX_EVENT_STREAMS
            # One stream leaves: another may open.
            await streams.pop().aclose()
            while handler.events.subscribers != MAX_EVENT_STREAMS - 1:
                await trio.sleep(0.01)
            stream, answer = await ask(b'{"command": "events"}')
            assert answer["ok"] is True
            streams.append(stream)
            for stream in streams:
                await stream.aclose()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
