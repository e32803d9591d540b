"""The control socket server and client on real Unix sockets (no root needed).

The server runs against :class:`FakeHandler`. Real sockets mean real time: the one test
that waits for a silent client shortens the request timeout, and its margins are wide.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from pyvrrp.runtime import control
from pyvrrp.runtime.control import (
    MAX_LINE,
    ControlError,
    ControlSocketInUse,
    ReloadRejected,
    UnknownInstance,
    request,
    serve_control,
)
from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.events import SUBSCRIBER_QUEUE, EventBus, Subscription
from pyvrrp.runtime.status import CountersStatus, InstanceStatus, NodeStatus

STATES = {"vip58": "MASTER", "vip59": "BACKUP", "vip60": "FAULT"}


def instance_status(state: str, *, faults: list[str], maintenance: bool) -> InstanceStatus:
    """An instance's status, with what the control server reads set from the arguments."""
    return InstanceStatus(
        state=state,
        in_state_for=3.0,
        last_transition=1_700_000_000.0,
        interface="eth0.4000",
        vrid=58,
        family="ipv4",
        base_priority=100,
        effective_priority=100,
        maintenance=maintenance,
        faults=faults,
        trackers=[],
        master=None,
        advert_interval=1.0,
        master_advert_interval=1.0,
        holding_addresses=state == "MASTER",
        addresses=["1.2.3.58/29"],
        excluded_addresses=[],
        unicast_peers=[],
        vrrp_version="3",
        peers={},
        counters=CountersStatus(0, 0, 0, 0, 0, {}, 0),
    )


class FakeHandler:
    """A daemon with three instances; records every maintenance call."""

    def __init__(self) -> None:
        self.maintenance: set[str] = set()
        self.calls: list[tuple[bool, list[str]]] = []
        self.reloads = 0
        self.reject_reload = False
        self.events = EventBus()
        self.queue = SUBSCRIBER_QUEUE

    def status(self) -> NodeStatus:
        return NodeStatus(
            router_id="node-a",
            pid=os.getpid(),
            version="0.1.0",
            uptime=12.5,
            instances={
                name: instance_status(
                    state,
                    faults=["chk_other"] if state == "FAULT" else [],
                    maintenance=name in self.maintenance,
                )
                for name, state in STATES.items()
            },
            scripts={},
            notifications={},
            interface_drops={},
        )

    async def set_maintenance(self, on: bool, instances: Sequence[str]) -> list[str]:
        unknown = [name for name in instances if name not in STATES]
        if unknown:
            raise UnknownInstance(unknown, list(STATES))
        self.calls.append((on, list(instances)))
        changed = []
        for name in instances or STATES:
            if (name in self.maintenance) != on:
                changed.append(name)
                (self.maintenance.add if on else self.maintenance.discard)(name)
        return changed

    async def reload(self) -> dict[str, Any]:
        self.reloads += 1
        if self.reject_reload:
            raise ReloadRejected(["node.toml: instances.vip58.vrid: 300 is out of range 1..255"])
        return {"summary": "1 unchanged", "kept": ["vip58"]}

    def subscribe_events(self) -> Subscription:
        return self.events.subscribe(self.queue)


class BrokenHandler(FakeHandler):
    """A daemon with a bug in status()."""

    def status(self) -> NodeStatus:
        raise AssertionError("a bug")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # pytest's tmp_path can be longer than the 107 bytes a Unix socket path may have.
    directory = tempfile.mkdtemp(prefix="pyvrrp-ctl-", dir="/tmp")
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def path(sock_dir: Path) -> str:
    return str(sock_dir / "pyvrrp.sock")


@pytest.fixture
async def handler(path: str) -> AsyncIterator[FakeHandler]:
    fake = FakeHandler()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, fake)
        yield fake
        nursery.cancel_scope.cancel()


async def exchange(path: str, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return everything the server sends until it closes."""
    with trio.fail_after(timeout):
        stream = await trio.open_unix_socket(path)
        async with stream:
            if data:
                await stream.send_all(data)
            received = bytearray()
            try:
                while chunk := await stream.receive_some():
                    received += chunk
            except trio.BrokenResourceError:
                # A server that refuses a request without reading it (too long, busy) has
                # unread data when it closes: the kernel resets the connection, after
                # delivering the answer.
                if not received:
                    raise
    return bytes(received)


async def ask(path: str, data: bytes) -> dict[str, Any]:
    raw = await exchange(path, data)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    response: dict[str, Any] = json.loads(raw)
    return response


async def call(path: str, payload: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """The real client, in a thread (it is blocking, for the command line)."""
    return await trio.to_thread.run_sync(lambda: request(path, payload, timeout=timeout))


async def call_in_task(path: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A client on trio's own socket, for the autojump clock: a task waiting on a worker
    thread counts as idle, so the clock could jump past the server's timeouts mid-request."""
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = await stream.receive_some()
            assert chunk, "the server closed the connection without an answer"
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer


async def test_status_round_trip_returns_the_handlers_status_with_the_daemons_pid(
    handler: FakeHandler, path: str
) -> None:
    response = await call(path, {"command": "status"})
    assert response == {"ok": True, "result": handler.status().to_json()}


async def test_reload_returns_the_handlers_summary(handler: FakeHandler, path: str) -> None:
    response = await call(path, {"command": "reload"})
    assert response == {"ok": True, "result": {"summary": "1 unchanged", "kept": ["vip58"]}}
    assert handler.reloads == 1


async def test_a_rejected_reload_is_an_invalid_config_error_listing_the_problems(
    handler: FakeHandler, path: str
) -> None:
    handler.reject_reload = True
    response = await call(path, {"command": "reload"})
    assert response["ok"] is False
    assert response["code"] == "invalid_config"
    assert "keeps running the old one" in response["error"]
    assert "instances.vip58.vrid: 300 is out of range 1..255" in response["error"]


async def test_reload_takes_no_arguments(handler: FakeHandler, path: str) -> None:
    response = await call(path, {"command": "reload", "force": True})
    assert response["ok"] is False
    assert response["code"] == "bad_request"
    assert handler.reloads == 0


async def test_maintenance_on_named_instances_reports_what_changed_and_the_previous_state(
    handler: FakeHandler, path: str
) -> None:
    handler.maintenance.add("vip59")
    response = await call(
        path, {"command": "maintenance", "on": True, "instances": ["vip58", "vip59"]}
    )
    assert response == {
        "ok": True,
        "result": {
            "on": True,
            "changed": ["vip58"],
            "unchanged": ["vip59"],
            "previous": {
                "vip58": {
                    "state": "MASTER",
                    "effective_priority": 100,
                    "faults": [],
                    "maintenance": False,
                },
                "vip59": {
                    "state": "BACKUP",
                    "effective_priority": 100,
                    "faults": [],
                    "maintenance": True,
                },
            },
        },
    }
    assert handler.maintenance == {"vip58", "vip59"}


async def test_maintenance_with_no_instances_applies_to_every_instance(
    handler: FakeHandler, path: str
) -> None:
    response = await call(path, {"command": "maintenance", "on": True, "instances": []})
    assert response["result"]["changed"] == ["vip58", "vip59", "vip60"]
    assert handler.calls == [(True, [])]
    response = await call(path, {"command": "maintenance", "on": False})
    assert response["result"]["changed"] == ["vip58", "vip59", "vip60"]
    assert handler.maintenance == set()


async def test_unknown_instance_is_an_error_naming_the_known_ones_and_changes_nothing(
    handler: FakeHandler, path: str
) -> None:
    response = await call(
        path, {"command": "maintenance", "on": True, "instances": ["vip58", "vip99"]}
    )
    assert response == {
        "ok": False,
        "error": "unknown instance vip99 (instances: vip58, vip59, vip60)",
        "code": "unknown_instance",
    }
    assert handler.maintenance == set()


def test_unknown_instances_are_listed_together() -> None:
    assert str(UnknownInstance(["a", "b"], [])) == (
        "unknown instances a, b (instances: none configured)"
    )


MALFORMED = [
    (b"status\n", "the request is not JSON"),
    (b"\xff\xfe\n", "the request is not JSON"),
    (b"[" * 60_000 + b"\n", "the request is not JSON"),
    (b"1" * 10_000 + b"\n", "the request is not JSON"),
    (b'["status"]\n', "a request must be a JSON object"),
    (b"{}\n", 'the request has no "command" string; commands: events, maintenance, reload, status'),
    (b'{"command": 5}\n', 'the request has no "command" string'),
    (
        b'{"command": "reboot"}\n',
        'unknown command "reboot"; commands: events, maintenance, reload, status',
    ),
    (b'{"command": "status", "verbose": true}\n', 'status: unknown argument "verbose"'),
    (b'{"command": "maintenance"}\n', 'maintenance: "on" is missing; give true or false'),
    (b'{"command": "maintenance", "on": "yes"}\n', '"on" must be true or false, not "yes"'),
    (
        b'{"command": "maintenance", "on": true, "instances": "vip58"}\n',
        '"instances" must be a list of instance names',
    ),
    (
        b'{"command": "maintenance", "on": true, "instances": [58]}\n',
        '"instances" must be a list of instance names',
    ),
    (
        b'{"command": "maintenance", "on": true, "instance": ["vip58"]}\n',
        'maintenance: unknown argument "instance" (arguments: instances, on)',
    ),
    (b"\n", "empty request"),
    (b"  \t \n", "empty request"),
]


@pytest.mark.parametrize(("line", "message"), MALFORMED, ids=lambda v: repr(v)[:30])
async def test_malformed_requests_get_an_error_and_the_server_keeps_serving(
    handler: FakeHandler, path: str, line: bytes, message: str
) -> None:
    response = await ask(path, line)
    assert response["ok"] is False
    assert response["code"] == "bad_request"
    assert message in response["error"]
    assert handler.maintenance == set()
    assert (await call(path, {"command": "status"}))["ok"] is True


async def test_a_request_without_a_newline_is_ended_by_the_clients_eof(
    handler: FakeHandler, path: str
) -> None:
    with trio.fail_after(10):
        stream = await trio.open_unix_socket(path)
        async with stream:
            await stream.send_all(b'{"command": "status"}')
            await stream.send_eof()
            raw = await stream.receive_some()
    assert json.loads(raw)["ok"] is True


async def test_an_oversized_line_is_refused_without_reading_it_all(
    handler: FakeHandler, path: str
) -> None:
    line = b'{"command": "status", "pad": "' + b"x" * MAX_LINE + b'"}\n'
    response = await ask(path, line)
    assert response == {
        "ok": False,
        "error": f"request line longer than {MAX_LINE} bytes",
        "code": "too_long",
    }
    assert (await call(path, {"command": "status"}))["ok"] is True


async def test_a_line_of_exactly_the_limit_is_read(handler: FakeHandler, path: str) -> None:
    head = b'{"command": "status", "pad": "'
    line = head + b"x" * (MAX_LINE - len(head) - 2) + b'"}'
    assert len(line) == MAX_LINE
    response = await ask(path, line + b"\n")
    assert response["error"] == 'status: unknown argument "pad" (arguments: none)'


async def test_a_silent_client_is_answered_with_a_timeout_and_blocks_no_one(
    path: str, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setattr(control, "REQUEST_TIMEOUT", 0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, FakeHandler())
        silent = await trio.open_unix_socket(path)
        async with silent:
            start = trio.current_time()
            # Others are served at once while the silent client holds its connection.
            for _ in range(3):
                assert (await call_in_task(path, {"command": "status"}))["ok"] is True
            with trio.fail_after(10):
                raw = await silent.receive_some()
                assert await silent.receive_some() == b""  # then the server closes
            elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert json.loads(raw) == {
        "ok": False,
        "error": "no request line within 0.5 s; send one JSON object and a newline",
        "code": "timeout",
    }
    # Virtual time: the others were served without the clock moving; the silent one is
    # answered at exactly its timeout.
    assert elapsed == pytest.approx(0.5, abs=1e-6)


async def test_a_client_that_leaves_early_does_not_disturb_the_server(
    handler: FakeHandler, path: str
) -> None:
    for data in [b"", b'{"command": ', b'{"command": "status"}\n']:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with sock:
            await sock.connect(path)
            if data:
                await sock.send(data)
    assert (await call(path, {"command": "status"}))["ok"] is True


async def test_many_concurrent_clients_are_all_answered(handler: FakeHandler, path: str) -> None:
    answers: list[dict[str, Any]] = []
    # Half of them hold a connection open without a request while the others ask.
    holders: list[trio.SocketStream] = []

    async def client() -> None:
        answers.append(await ask(path, b'{"command": "status"}\n'))

    try:
        for _ in range(20):
            holders.append(await trio.open_unix_socket(path))
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(40):
                    nursery.start_soon(client)
    finally:
        for stream in holders:
            await stream.aclose()
    assert len(answers) == 40
    assert all(answer["ok"] and answer["result"]["router_id"] == "node-a" for answer in answers)


async def test_clients_beyond_the_limit_are_told_the_daemon_is_busy(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "MAX_CLIENTS", 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, FakeHandler())
        holders = [await trio.open_unix_socket(path) for _ in range(2)]
        try:
            await trio.sleep(0.2)  # let the server accept them
            response = await ask(path, b'{"command": "status"}\n')
        finally:
            for stream in holders:
                await stream.aclose()
        await trio.sleep(0.2)
        again = await ask(path, b'{"command": "status"}\n')
        nursery.cancel_scope.cancel()
    assert response == {
        "ok": False,
        "error": "pyvrrp is busy: too many control clients",
        "code": "busy",
    }
    assert again["ok"] is True


async def test_a_handler_bug_is_an_internal_error_not_a_crash(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, BrokenHandler())
        response = await call(path, {"command": "status"})
        # maintenance still works when status() is broken: the previous state is a courtesy.
        changed = await call(path, {"command": "maintenance", "on": True, "instances": []})
        nursery.cancel_scope.cancel()
    assert response == {
        "ok": False,
        "error": "internal error in pyvrrp (the daemon logged the details)",
        "code": "internal",
    }
    assert changed["result"] == {
        "on": True,
        "changed": ["vip58", "vip59", "vip60"],
        "unchanged": [],
        "previous": {},
    }
    assert "AssertionError: a bug" in caplog.text


async def test_maintenance_is_logged_with_the_requesting_process(
    handler: FakeHandler, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "pyvrrp")
    await call(path, {"command": "maintenance", "on": True, "instances": ["vip58"]})
    assert (
        f"control: maintenance on for vip58 requested by pid {os.getpid()} uid {os.getuid()} "
        "(changed: vip58)"
    ) in caplog.messages


async def test_the_socket_is_mode_0600_whatever_the_umask(path: str) -> None:
    old = os.umask(0)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, path, FakeHandler())
            mode = os.stat(path).st_mode
            nursery.cancel_scope.cancel()
    finally:
        os.umask(old)
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


async def test_the_socket_file_is_removed_on_exit(path: str) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, FakeHandler())
        assert os.path.exists(path)
        nursery.cancel_scope.cancel()
    assert not os.path.exists(path)


async def test_a_stale_socket_file_is_replaced(path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", "pyvrrp")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # a daemon that was killed: the file stays, nothing listens
    with pytest.raises(ControlError, match="nothing listens on"):
        await call(path, {"command": "status"})
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, path, FakeHandler())
        assert (await call(path, {"command": "status"}))["ok"] is True
        nursery.cancel_scope.cancel()
    assert f"control: removing the stale socket {path} left by a previous run" in caplog.messages


async def test_a_second_server_on_a_live_socket_is_refused_naming_the_pid(
    handler: FakeHandler, path: str
) -> None:
    with pytest.raises(ControlSocketInUse) as refused:
        await serve_control(path, FakeHandler())
    assert str(refused.value) == (
        f"another pyvrrp is running with control socket {path} (pid {os.getpid()}); stop it "
        "first, or give this one another [global] control_socket"
    )
    assert isinstance(refused.value, EnvironmentProblem)
    # The refused server did not remove the live one's socket.
    assert (await call(path, {"command": "status"}))["ok"] is True


async def test_a_missing_directory_is_an_environment_problem(sock_dir: Path) -> None:
    path = str(sock_dir / "missing" / "pyvrrp.sock")
    with pytest.raises(EnvironmentProblem, match=r"directory .*/missing does not exist; create"):
        await serve_control(path, FakeHandler())


async def test_a_path_that_is_not_a_socket_is_left_alone(path: str) -> None:
    Path(path).write_text("precious")
    with pytest.raises(EnvironmentProblem, match="exists and is not a socket"):
        await serve_control(path, FakeHandler())
    assert Path(path).read_text() == "precious"


async def test_a_path_too_long_for_a_unix_socket_is_an_environment_problem(
    sock_dir: Path,
) -> None:
    with pytest.raises(EnvironmentProblem, match="longer than the 107 bytes"):
        await serve_control(str(sock_dir / ("x" * 120)), FakeHandler())


def test_client_reports_a_daemon_that_is_not_running(path: str) -> None:
    with pytest.raises(ControlError) as error:
        request(path, {"command": "status"})
    assert str(error.value) == (
        f"pyvrrp is not running: no control socket at {path} (is the daemon started with this "
        "configuration?)"
    )


def test_client_reports_permission_denied_as_a_root_only_socket(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root passes every permission check, so the refusal is simulated here; the command
    # line tests run a real unprivileged client against a real socket.
    def refuse(self: socket.socket, address: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(ControlError) as error:
        request(path, {"command": "status"})
    assert str(error.value) == (
        f"permission denied on {path}: run as root, or as a member of the group of "
        "[global] control_group (or status_group, for status)"
    )


def fill_backlog(path: str) -> tuple[socket.socket, list[socket.socket]]:
    """A listener at ``path`` that accepts nothing, with its backlog full of clients."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    waiting: list[socket.socket] = []
    while True:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            client.connect(path)
        except BlockingIOError:
            client.close()
            return listener, waiting
        waiting.append(client)


def test_client_waits_for_room_while_the_daemons_backlog_is_full(path: str) -> None:
    # A burst of clients fills the listen backlog before the daemon accepts them; a Unix
    # socket with a timeout then fails its connect at once (EAGAIN) rather than wait.
    listener, waiting = fill_backlog(path)
    answered: list[bytes] = []

    def serve_later() -> None:
        time.sleep(0.3)
        listener.settimeout(3)
        for _ in range(len(waiting) + 1):
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                return
            with connection:
                connection.settimeout(2)
                line = connection.recv(1000)
                if line:
                    answered.append(line)
                    connection.sendall(b'{"ok":true,"result":"here"}\n')

    with listener:
        for client in waiting:
            client.close()  # still in the backlog until accepted: read as an empty request
        server = threading.Thread(target=serve_later)
        server.start()
        started = time.monotonic()
        try:
            response = request(path, {"command": "status"}, timeout=5)
        finally:
            server.join()
    assert response == {"ok": True, "result": "here"}
    assert answered == [b'{"command":"status"}\n']
    assert time.monotonic() - started >= 0.25


def test_client_gives_up_when_the_backlog_stays_full(path: str) -> None:
    listener, waiting = fill_backlog(path)
    with listener:
        started = time.monotonic()
        with pytest.raises(ControlError) as error:
            request(path, {"command": "status"}, timeout=0.4)
        elapsed = time.monotonic() - started
        for client in waiting:
            client.close()
    assert str(error.value) == (
        f"pyvrrp did not accept a connection on {path} within 0.4 s (is it stuck?)"
    )
    assert 0.3 <= elapsed < 2


async def fake_server(path: str, answer: bytes | None, task_status: Any) -> None:
    """A server that answers anything with ``answer`` (None: never answers)."""
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener:
        await listener.bind(path)
        listener.listen()
        task_status.started()
        while True:
            connection, _ = await listener.accept()
            with connection:
                await connection.recv(1000)
                if answer is None:
                    await trio.sleep_forever()
                await connection.send(answer)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"hello\n", "malformed response from {path}: not JSON"),
        (b"[1]\n", 'malformed response from {path}: no "ok" field'),
        (b'{"ok": true}\n', 'malformed response from {path}: "ok" without a "result"'),
        (b'{"ok": false}\n', 'malformed response from {path}: a failure without an "error"'),
        (b"", "pyvrrp closed the connection on {path} without answering"),
        (None, "pyvrrp did not answer on {path} within 0.3 s"),
    ],
)
async def test_client_rejects_a_bad_or_missing_answer(
    path: str, answer: bytes | None, message: str
) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(fake_server, path, answer)
        with pytest.raises(ControlError) as error:
            await call(path, {"command": "status"}, timeout=0.3)
        nursery.cancel_scope.cancel()
    assert str(error.value).startswith(message.format(path=path))
