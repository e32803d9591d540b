"""`pyvrrp status` and `pyvrrp maintenance` against a real control server (no root needed).

The server runs with a fake daemon in a background thread (the command line is not a trio
program and blocks); exit codes and messages are checked through ``main()``, and once in a
subprocess, where a traceback would show.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from pyvrrp.cli import main
from pyvrrp.runtime.control import serve_control
from pyvrrp.status_format import format_status

from ..runtime.test_control import FakeHandler

ROOT = Path(__file__).parents[2]


class ThreadServer:
    """serve_control() with a FakeHandler, in its own thread with its own trio loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.handler = FakeHandler()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._scope = nursery.cancel_scope
            await nursery.start(serve_control, self.path, self.handler)
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "the control server did not start"
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        if self._token is not None and self._scope is not None:
            scope = self._scope
            self._token.run_sync_soon(scope.cancel)
        self._thread.join(10)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    directory = tempfile.mkdtemp(prefix="pyvrrp-cli-", dir="/tmp")
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server(sock_dir: Path) -> Iterator[ThreadServer]:
    running = ThreadServer(str(sock_dir / "pyvrrp.sock"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write_config(directory: Path, control_socket: str, *, broken: bool = False) -> str:
    path = directory / "node.toml"
    path.write_text(
        f"""
[global]
control_socket = "{control_socket}"

[instances.vip58]
interface = "eth0.4000"
vrid = {0 if broken else 58}
addresses = ["1.2.3.58/29"]
"""
    )
    return str(path)


def expected_status(server: ThreadServer) -> dict[str, Any]:
    return server.handler.status().to_json()


def test_status_prints_the_human_table_and_exits_0(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["status", "-s", server.path], capsys)
    assert (code, err) == (0, "")
    assert out == format_status(expected_status(server)) + "\n"
    assert out.startswith("node-a: pyvrrp 0.1.0, pid ")


def test_status_json_prints_the_daemons_answer(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["status", "--json", "-s", server.path], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == expected_status(server)


def test_the_socket_option_may_come_before_the_command(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["-s", server.path, "status", "--json"], capsys)
    assert code == 0 and json.loads(out)["router_id"] == "node-a"


def test_status_finds_the_socket_through_the_configuration(
    server: ThreadServer, sock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(sock_dir, server.path)
    code, out, err = run(["status", "--json", "-c", config], capsys)
    assert (code, err) == (0, "")
    assert json.loads(out) == expected_status(server)


def test_the_socket_option_overrides_the_configuration(
    server: ThreadServer, sock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(sock_dir, str(sock_dir / "other.sock"))
    code, _, err = run(["status", "-c", config, "-s", server.path], capsys)
    assert (code, err) == (0, "")


def test_a_configuration_with_problems_still_names_the_socket(
    server: ThreadServer, sock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The daemon keeps running its last good configuration while the file is being edited.
    config = write_config(sock_dir, server.path, broken=True)
    code, out, err = run(["status", "--json", "-c", config], capsys)
    assert code == 0 and json.loads(out)["router_id"] == "node-a"
    assert err == (
        f"{config}: has problems (pyvrrp check -c {config} lists them); using control "
        f"socket {server.path}\n"
    )


def test_a_missing_configuration_file_is_exit_2(
    sock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(sock_dir / "missing.toml")
    assert run(["status", "-c", missing], capsys) == (2, "", f"{missing}: no such file\n")


def test_status_without_a_daemon_is_exit_1_with_what_to_check(
    sock_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(sock_dir / "pyvrrp.sock")
    assert run(["status", "-s", path], capsys) == (
        1,
        "",
        f"pyvrrp is not running: no control socket at {path} (is the daemon started with "
        "this configuration?)\n",
    )


def test_without_options_status_uses_the_default_socket(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    default = str(sock_dir / "default.sock")
    monkeypatch.setattr("pyvrrp.cli.DEFAULT_CONTROL_SOCKET", default)
    code, _, err = run(["status"], capsys)
    assert code == 1 and f"no control socket at {default} " in err


def test_maintenance_on_prints_what_changed(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["maintenance", "on", "vip58", "vip59", "-s", server.path], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "vip58: maintenance on (FAULT, priority 0 sent; the backup takes over within skew time)",
        "vip59: maintenance on (FAULT; it was BACKUP, so no address moves)",
    ]
    assert server.handler.maintenance == {"vip58", "vip59"}
    code, out, _ = run(["maintenance", "on", "vip58", "-s", server.path], capsys)
    assert (code, out) == (0, "vip58: maintenance already on\n")


def test_maintenance_off_without_names_applies_to_every_instance(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler.maintenance.update({"vip58", "vip60"})
    code, out, _ = run(["maintenance", "off", "-s", server.path], capsys)
    assert code == 0
    assert out.splitlines() == [
        "vip58: maintenance off (BACKUP; it becomes master again if it has the highest "
        "priority and preempts)",
        "vip60: maintenance off (still FAULT: chk_other)",
        "vip59: maintenance already off",
    ]
    assert server.handler.calls == [(False, [])]
    assert server.handler.maintenance == set()


def test_maintenance_of_an_unknown_instance_is_exit_2_and_changes_nothing(
    server: ThreadServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["maintenance", "on", "vip58", "vip99", "-s", server.path], capsys) == (
        2,
        "",
        "unknown instance vip99 (instances: vip58, vip59, vip60)\n",
    )
    assert server.handler.maintenance == set()


@pytest.mark.parametrize(
    "argv",
    [
        ["maintenance", "maybe", "vip58"],
        ["maintenance"],
        ["status", "--verbose"],
        ["status", "-s"],
    ],
)
def test_bad_usage_is_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.startswith("usage: pyvrrp")


def pyvrrp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyvrrp", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=30,
    )


def test_the_real_command_prints_no_traceback_when_the_daemon_is_not_running(
    sock_dir: Path,
) -> None:
    path = str(sock_dir / "pyvrrp.sock")
    result = pyvrrp("status", "-s", path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"pyvrrp is not running: no control socket at {path} (is the daemon started with "
        "this configuration?)\n"
    )


def test_the_real_command_talks_to_the_daemon(server: ThreadServer) -> None:
    result = pyvrrp("maintenance", "on", "vip59", "-s", server.path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "vip59: maintenance on (FAULT; it was BACKUP, so no address moves)\n"


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


def as_user(user: pwd.struct_passwd, argv: list[str]) -> tuple[int, str]:
    """main(argv) in a forked child running as ``user``: (exit code, stderr).

    A fork, not a new interpreter: an unprivileged user may not be able to run this one.
    """
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads (3.12+)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 99
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
            os.write(write_end, err.getvalue().encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        err_bytes = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err_bytes.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
@pytest.mark.skipif(_nobody() is None, reason="no user 'nobody' on this host")
def test_an_unprivileged_user_is_told_to_run_as_root(server: ThreadServer) -> None:
    # The directory must be searchable so that the socket's own mode (0600) is what refuses.
    os.chmod(os.path.dirname(server.path), 0o755)
    nobody = _nobody()
    assert nobody is not None
    assert as_user(nobody, ["status", "-s", server.path]) == (
        1,
        f"permission denied on {server.path}: run as root (the socket is mode 0600)\n",
    )
