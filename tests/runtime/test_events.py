"""``pyvrrp events``: the event bus, the control socket's stream and the command line.

The server runs on a real Unix socket against test_control's FakeHandler, whose event bus
the tests publish on; the blocking client runs in a thread.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from pyvrrp.cli import main
from pyvrrp.runtime.control import ControlError, serve_control
from pyvrrp.runtime.events import (
    EventBus,
    overflow_error,
    priority_event,
    transition_event,
)
from pyvrrp.runtime.eventsclient import receive_events
from tests.runtime.test_control import FakeHandler


@pytest.fixture
def path() -> Iterator[str]:
    # pytest's tmp_path can be longer than the 107 bytes a Unix socket path may have.
    directory = tempfile.mkdtemp(prefix="pyvrrp-ev-", dir="/tmp")
    try:
        yield os.path.join(directory, "pyvrrp.sock")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def transition(n: int) -> dict[str, Any]:
    return transition_event(
        instance="vip58",
        vrid=58,
        interface="eth0.4000",
        old="BACKUP",
        new="MASTER",
        cause="master_down",
        reason=f"event {n}",
        priority=100,
        wall=1_765_000_000.0 + n,
    )


def test_event_objects_carry_the_documented_fields() -> None:
    assert transition(1) == {
        "type": "transition",
        "time": 1_765_000_001.0,
        "instance": "vip58",
        "vrid": 58,
        "interface": "eth0.4000",
        "from": "BACKUP",
        "to": "MASTER",
        "cause": "master_down",
        "reason": "event 1",
        "priority": 100,
    }
    assert priority_event(
        instance="vip58",
        vrid=58,
        interface="eth0.4000",
        old=100,
        new=40,
        reason="40 = 100 base - 60 chk (bad)",
        wall=1.5,
    ) == {
        "type": "priority",
        "time": 1.5,
        "instance": "vip58",
        "vrid": 58,
        "interface": "eth0.4000",
        "from": 100,
        "to": 40,
        "reason": "40 = 100 base - 60 chk (bad)",
    }


async def test_bus_gives_every_subscriber_every_event_and_cuts_off_one_that_falls_behind() -> None:
    bus = EventBus()
    fast = bus.subscribe(4)
    slow = bus.subscribe(2)
    for n in range(3):
        bus.publish(transition(n))
        assert fast.receive.receive_nowait() == transition(n)
    # slow took nothing: two queued, the third cut it off (memory stays bounded).
    assert bus.subscribers == 1 and bus.cut_off == 1 and slow.overflowed
    assert [e async for e in slow.receive] == [transition(0), transition(1)]
    fast.close()
    assert bus.subscribers == 0
    bus.publish(transition(9))  # no one listening: nothing to do
    assert bus.published == 4


@pytest.fixture
async def served(path: str) -> AsyncIterator[tuple[FakeHandler, trio.CancelScope]]:
    handler = FakeHandler()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, handler)
        yield handler, nursery.cancel_scope
        nursery.cancel_scope.cancel()


async def wait_subscribers(bus: EventBus, count: int) -> None:
    with trio.fail_after(10):
        while bus.subscribers != count:
            await trio.sleep(0.01)


async def test_events_stream_to_the_client_in_order(
    served: tuple[FakeHandler, trio.CancelScope],
    path: str,
) -> None:
    handler, _ = served
    received: list[dict[str, Any]] = []

    def read(count: int) -> None:
        events = receive_events(path)
        for event in events:
            received.append(event)
            if len(received) == count:
                events.close()  # the client leaves
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, read, 3)
        await wait_subscribers(handler.events, 1)
        for n in range(3):
            handler.events.publish(transition(n))
            await trio.sleep(0.01)
    assert received == [transition(0), transition(1), transition(2)]
    # The server noticed the client left, without an event to send.
    await wait_subscribers(handler.events, 0)


async def flood_and_read(path: str, handler: FakeHandler, count: int) -> list[dict[str, Any]]:
    """Subscribe, publish ``count`` events in one go (the server's task cannot take any in
    between), then read everything the server sends until it closes."""
    with trio.fail_after(10):
        stream = await trio.open_unix_socket(path)
        async with stream:
            await stream.send_all(b'{"command": "events"}\n')
            data = b""
            while b"\n" not in data:
                data += await stream.receive_some()
            for n in range(count):
                handler.events.publish(transition(n))
            while chunk := await stream.receive_some():
                data += chunk
    return [json.loads(line) for line in data.splitlines()]


async def test_a_reader_that_falls_behind_is_cut_off_with_a_last_error_line(
    served: tuple[FakeHandler, trio.CancelScope],
    path: str,
) -> None:
    handler, _ = served
    handler.queue = 8
    lines = await flood_and_read(path, handler, 100)
    assert lines[0] == {"ok": True, "result": {"events": "subscribed"}}
    # Eight queued, plus one handed straight to the server's task if it was already waiting.
    delivered = len(lines) - 2
    assert delivered in (8, 9)
    assert lines[1:-1] == [transition(n) for n in range(delivered)]
    assert lines[-1] == {"type": "error", "code": "overflow", "error": overflow_error(8)}
    assert handler.events.subscribers == 0 and handler.events.cut_off == 1


async def test_the_client_reports_being_cut_off(
    served: tuple[FakeHandler, trio.CancelScope],
    path: str,
) -> None:
    handler, _ = served
    handler.queue = 1
    got: list[object] = []

    def read() -> None:
        try:
            for event in receive_events(path):
                got.append(event)
        except ControlError as error:
            got.append(str(error))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, read)
        await wait_subscribers(handler.events, 1)
        for n in range(3):
            handler.events.publish(transition(n))
    # One queued, one more if the server's task was waiting, then the last line.
    assert got[-1] == overflow_error(1)
    assert got[:-1] in ([transition(0)], [transition(0), transition(1)])


async def test_the_client_reports_the_daemon_going_away(path: str) -> None:
    handler = FakeHandler()
    got: list[object] = []

    def read() -> None:
        try:
            for event in receive_events(path):
                got.append(event)
        except ControlError as error:
            got.append(str(error))

    async with trio.open_nursery() as outer, trio.open_nursery() as daemon:
        await daemon.start(serve_control, path, handler)
        outer.start_soon(trio.to_thread.run_sync, read)
        await wait_subscribers(handler.events, 1)
        handler.events.publish(transition(1))
        await trio.sleep(0.1)
        daemon.cancel_scope.cancel()  # the daemon stops
    assert got == [
        transition(1),
        f"pyvrrp closed the events stream on {path} (the daemon stopped or restarted)",
    ]


async def test_events_takes_no_arguments(
    served: tuple[FakeHandler, trio.CancelScope],
    path: str,
) -> None:
    def read() -> str:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b'{"command": "events", "instance": "vip58"}\n')
            return sock.makefile().readline()

    answer = json.loads(await trio.to_thread.run_sync(read))
    assert answer["ok"] is False and answer["code"] == "bad_request"
    assert answer["error"] == 'events: unknown argument "instance" (arguments: none)'


@pytest.fixture
def fake_stream(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Replace the client with a scripted stream: events, then an exception to raise."""
    script: list[object] = []

    def receive(socket_path: str) -> Iterator[dict[str, Any]]:
        for item in script:
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, dict)
            yield item
        raise AssertionError("the script must end with an exception")

    monkeypatch.setattr("pyvrrp.runtime.eventsclient.receive_events", receive)
    return script


def test_cli_prints_json_lines_and_ctrl_c_exits_0_quietly(
    fake_stream: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stream[:] = [transition(1), transition(2), KeyboardInterrupt()]
    assert main(["events", "-s", "/run/x.sock"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line) for line in out.splitlines()] == [transition(1), transition(2)]
    assert err == ""


def test_cli_exits_1_when_the_daemon_goes_away(
    fake_stream: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_stream[:] = [transition(1), ControlError("pyvrrp closed the events stream on /x")]
    assert main(["events", "-s", "/run/x.sock"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out) == transition(1)
    assert err == "pyvrrp closed the events stream on /x\n"


def test_cli_without_a_daemon_exits_1(
    path: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["events", "-s", path]) == 1
    assert capsys.readouterr().err.startswith(f"pyvrrp is not running: no control socket at {path}")
