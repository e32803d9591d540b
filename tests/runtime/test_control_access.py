"""Who may use the control socket: root, ``control_group``, ``status_group`` (read-only).

The rules (:class:`Access`) are tested as values; then on a real Unix socket with client
processes running as ``nobody`` (switched in the child, with or without a group), so that
the kernel's SO_PEERCRED/SO_PEERGROUPS and the socket file's mode are what decide. The
groups are numbers no account uses, given to the child with setgroups(): the test creates
no group on the host.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from pyvrrp.runtime.control import (
    READ_ONLY_COMMANDS,
    Access,
    Caller,
    dispatch,
    serve_control,
)
from tests.runtime.test_control import FakeHandler

STATUS_GID = 64242
CONTROL_GID = 64243


def caller(uid: int, *groups: int) -> Caller:
    return Caller(pid=4242, uid=uid, gid=uid, groups=frozenset({uid, *groups}))


# ---------------------------------------------------------------------------- the rules


def test_root_and_the_daemons_own_user_may_do_everything() -> None:
    access = Access(owner=998)
    for command in ("status", "maintenance", "reload", "events"):
        assert access.may(command, caller(0))
        assert access.may(command, caller(998))
        assert not access.may(command, caller(1000))


def test_control_group_may_change_state_status_group_may_only_read() -> None:
    access = Access("ops", "monitoring", CONTROL_GID, STATUS_GID, owner=0)
    assert {"status", "events"} == READ_ONLY_COMMANDS
    for command in ("status", "events", "maintenance", "reload"):
        assert access.may(command, caller(1000, CONTROL_GID))
    assert access.may("status", caller(1001, STATUS_GID))
    assert access.may("events", caller(1001, STATUS_GID))
    assert not access.may("maintenance", caller(1001, STATUS_GID))
    assert not access.may("reload", caller(1001, STATUS_GID))
    assert not access.may_connect(caller(1002, 5))
    assert access.may_connect(caller(1001, STATUS_GID))


def test_a_refusal_names_the_command_the_caller_and_what_is_needed() -> None:
    access = Access("ops", "monitoring", CONTROL_GID, STATUS_GID, owner=0)
    assert access.refusal("maintenance", caller(1001, STATUS_GID)) == (
        "maintenance: permission denied for uid 1001: this needs root or group ops "
        "([global] control_group)"
    )
    assert access.refusal("status", caller(1002)) == (
        "status: permission denied for uid 1002: this needs root or group ops "
        "([global] control_group) or group monitoring ([global] status_group)"
    )
    assert Access(owner=0).refusal("reload", caller(1002)) == (
        "reload: permission denied for uid 1002: this needs root; set [global] control_group "
        "(or status_group, for status) to open it to a group"
    )


def test_groups_are_names_or_numbers_and_a_missing_one_is_an_environment_problem() -> None:
    assert Access.of(None, "64242").status_gid == STATUS_GID
    assert Access.of("root", None).control_gid == 0
    from pyvrrp.runtime.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem, match="control_group: group 'no-such-group-x' does"):
        Access.of("no-such-group-x", None)


def test_socket_mode_follows_the_groups() -> None:
    assert Access(owner=0).socket_mode() == (0o600, None)
    assert Access(None, "m", None, STATUS_GID, owner=0).socket_mode() == (0o660, STATUS_GID)
    assert Access("o", "o", CONTROL_GID, CONTROL_GID, owner=0).socket_mode() == (
        0o660,
        CONTROL_GID,
    )
    assert Access("o", "m", CONTROL_GID, STATUS_GID, owner=0).socket_mode() == (0o666, None)


async def test_dispatch_refuses_with_code_forbidden_and_changes_nothing() -> None:
    handler = FakeHandler()
    access = Access("ops", "monitoring", CONTROL_GID, STATUS_GID, owner=0)
    response = await dispatch(
        handler,
        b'{"command": "maintenance", "on": true}',
        access=access,
        caller=caller(1001, STATUS_GID),
    )
    assert response == {
        "ok": False,
        "error": access.refusal("maintenance", caller(1001, STATUS_GID)),
        "code": "forbidden",
    }
    assert handler.calls == []
    unknown = await dispatch(handler, b'{"command": "status"}', access=access, caller=None)
    assert unknown["code"] == "forbidden"


# ---------------------------------------------------------------------------- a real socket

# The client: the standard library only, so that it runs as any user from any directory.
CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print(json.dumps({"connect": "EACCES"}))
    sys.exit(0)
try:
    s.sendall(sys.argv[2].encode() + b"\\n")
except (BrokenPipeError, ConnectionResetError):
    pass  # refused before the request was read: the answer is waiting
data = b""
while not data.endswith(b"\\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode().strip())
"""


def _nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.fail("no user 'nobody' on this host")


def _python() -> str:
    """A Python that any user may run (this one may live in root's home)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable):
        mode = os.stat(candidate).st_mode if os.path.exists(candidate) else 0
        if mode & stat.S_IXOTH:
            return candidate
    pytest.fail("no Python executable by other users (tried /usr/bin/python3)")


def _need_root() -> None:
    if os.geteuid() != 0:
        reason = "running a client as another user needs root"
        if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
            pytest.fail(f"{reason} (PYVRRP_REQUIRE_NETNS=1 forbids skipping)")
        pytest.skip(reason)


async def as_nobody(path: str, request: dict[str, Any], groups: list[int]) -> dict[str, Any]:
    """Send ``request`` from a process running as nobody with ``groups``; its answer."""
    nobody = _nobody()
    result = await trio.run_process(
        [_python(), "-I", "-c", CLIENT, path, json.dumps(request)],
        capture_stdout=True,
        capture_stderr=True,
        user=nobody.pw_uid,
        group=nobody.pw_gid,
        extra_groups=groups,
        cwd="/",
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    directory = tempfile.mkdtemp(prefix="pyvrrp-acl-", dir="/tmp")
    os.chmod(directory, 0o755)  # searchable: the socket's own mode decides
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_nobody_in_the_status_group_may_read_but_not_change_state(
    nursery: trio.Nursery, sock_dir: Path
) -> None:
    _need_root()
    path = str(sock_dir / "pyvrrp.sock")
    handler = FakeHandler()
    access = Access(None, str(STATUS_GID), None, STATUS_GID)
    await nursery.start(
        lambda task_status: serve_control(path, handler, access=access, task_status=task_status)
    )
    info = os.stat(path)
    assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, STATUS_GID)

    status = await as_nobody(path, {"command": "status"}, [STATUS_GID])
    assert status["ok"] is True
    assert set(status["result"]["instances"]) == {"vip58", "vip59", "vip60"}

    events = await as_nobody(path, {"command": "events"}, [STATUS_GID])
    assert events == {"ok": True, "result": {"events": "subscribed"}}

    refused = await as_nobody(path, {"command": "maintenance", "on": True}, [STATUS_GID])
    uid = _nobody().pw_uid
    assert refused == {
        "ok": False,
        "error": f"maintenance: permission denied for uid {uid}: this needs root; set "
        "[global] control_group (or status_group, for status) to open it to a group",
        "code": "forbidden",
    }
    assert handler.calls == []
    # Without the group, the socket file's mode keeps nobody out before the daemon is asked.
    assert await as_nobody(path, {"command": "status"}, []) == {"connect": "EACCES"}


async def test_with_two_groups_the_credentials_decide_each_command(
    nursery: trio.Nursery, sock_dir: Path
) -> None:
    _need_root()
    path = str(sock_dir / "pyvrrp.sock")
    handler = FakeHandler()
    access = Access("ops", "monitoring", CONTROL_GID, STATUS_GID)
    await nursery.start(
        lambda task_status: serve_control(path, handler, access=access, task_status=task_status)
    )
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    uid = _nobody().pw_uid

    outsider = await as_nobody(path, {"command": "status"}, [])
    assert outsider == {
        "ok": False,
        "error": f"permission denied for uid {uid}: this needs root or group ops "
        "([global] control_group) or group monitoring ([global] status_group)",
        "code": "forbidden",
    }
    reader = await as_nobody(path, {"command": "reload"}, [STATUS_GID])
    assert reader["code"] == "forbidden"
    assert reader["error"].startswith("reload: permission denied")
    assert handler.reloads == 0
    operator = await as_nobody(path, {"command": "maintenance", "on": True}, [CONTROL_GID])
    assert operator["ok"] is True
    assert handler.calls == [(True, [])]
