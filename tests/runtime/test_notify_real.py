"""Notifications with real processes in real time: order, arguments, environment, killing.

The notifier runs its scripts with the health checks' ``RealProcessRunner``. Timeouts are
short and the margins generous (they must hold on a busy 2-core machine). Each test kills, by
pid, any process its scripts left behind.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import signal
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

import pytest
import trio

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.config import AddressConfig, InstanceConfig
from pyvrrp.runtime.notify import DEFAULT_PATH, Notifier
from pyvrrp.runtime.trackers import KILL_DELAY, RealProcessRunner

EXCLUDED = "2a03:4444:fff0:59:88::58/64"


def instance(name: str = "vip58", **notify: Any) -> InstanceConfig:
    return InstanceConfig(
        name=name,
        interface="eth0.4000",
        vrid=58,
        addresses=(AddressConfig(ip_interface("1.2.3.58/29")),),
        excluded_addresses=(AddressConfig(ip_interface(EXCLUDED)),),
        **notify,
    )


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for its reaper is dead)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


async def wait_gone(*pids: int, within: float = 5) -> None:
    """Wait until every pid is dead: a SIGKILLed process may take a moment to go."""
    with trio.fail_after(within):
        while any(alive(pid) for pid in pids):
            await trio.sleep(0.02)


@contextmanager
def kill_leftovers(pid_file: Path) -> Iterator[None]:
    """Kill, by pid, the processes whose pids a test script wrote to ``pid_file``."""
    try:
        yield
    finally:
        if pid_file.exists():
            for pid in map(int, pid_file.read_text().split()):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


@asynccontextmanager
async def running(notifier: Notifier) -> AsyncIterator[Notifier]:
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        yield notifier
        nursery.cancel_scope.cancel()


def hanging_script(tmp_path: Path, pids: Path) -> str:
    """A script that starts a child, writes both pids and waits; both ignore SIGTERM."""
    return script(
        tmp_path / "hang",
        f"trap '' TERM\nsleep 300 &\necho \"$$ $!\" > {shlex.quote(str(pids))}\nwait\n",
    )


async def test_a_real_notify_script_sees_its_transitions_in_order_with_arguments_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYVRRP_TEST_SECRET", "the daemon's environment must not leak")
    out = tmp_path / "notify.log"
    q = shlex.quote(str(out))
    # Handling MASTER is slow: run concurrently (as keepalived does), BACKUP's line would
    # come first.
    generic = script(
        tmp_path / "notify",
        f'[ "$3" = MASTER ] && sleep 0.3\n'
        f'echo "$* | $PYVRRP_OLD_STATE -> $PYVRRP_STATE $PYVRRP_PRIORITY $PYVRRP_VRID '
        f"$PYVRRP_INTERFACE $PYVRRP_ADDRESSES + $PYVRRP_EXCLUDED_ADDRESSES "
        f'| $PYVRRP_CAUSE: $PYVRRP_REASON | $PATH ${{PYVRRP_TEST_SECRET-unset}}" >> {q}\n',
    )
    # A bare program name is found in the scripts' PATH.
    on_master = ("sh", "-c", f'echo "on-master $0: $PYVRRP_STATE" >> {q}', "vip58")
    notifier = Notifier(
        [instance(notify=(generic,), notify_master=on_master)], RealProcessRunner(), timeout=10
    )
    async with running(notifier):
        notifier.notify("vip58", State.BACKUP, 100, old_state=State.INITIALIZE, cause=Cause.STARTUP)
        notifier.notify(
            "vip58",
            State.MASTER,
            100,
            old_state=State.BACKUP,
            cause=Cause.MASTER_DOWN,
            reason="no advertisement",
        )
        notifier.notify("vip58", State.FAULT, 0, old_state=State.MASTER, cause=Cause.FAULT)
        notifier.notify("vip58", State.INITIALIZE, 0, old_state=State.FAULT, cause=Cause.SHUTDOWN)
        assert await notifier.drain(30)
    rest = f"58 eth0.4000 1.2.3.58/29 + {EXCLUDED}"
    tail = f"{DEFAULT_PATH} unset"
    assert out.read_text().splitlines() == [
        f"INSTANCE vip58 BACKUP 100 | INIT -> BACKUP 100 {rest} | startup:  | {tail}",
        "on-master vip58: MASTER",
        f"INSTANCE vip58 MASTER 100 | BACKUP -> MASTER 100 {rest} | master_down: "
        f"no advertisement | {tail}",
        f"INSTANCE vip58 FAULT 0 | MASTER -> FAULT 0 {rest} | fault:  | {tail}",
        f"INSTANCE vip58 STOP 0 | FAULT -> STOP 0 {rest} | shutdown:  | {tail}",
    ]
    stats = notifier.statistics()["vip58"]
    assert (stats.run, stats.failed) == (5, 0)


async def test_a_hanging_script_and_its_child_are_killed_and_the_next_script_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pids = tmp_path / "pids"
    out = tmp_path / "out"
    after = script(tmp_path / "after", f"echo after >> {shlex.quote(str(out))}\n")
    notifier = Notifier(
        [instance(notify_master=(hanging_script(tmp_path, pids),), notify_backup=(after,))],
        RealProcessRunner(),
        timeout=0.5,
    )
    with kill_leftovers(pids):
        async with running(notifier):
            t0 = trio.current_time()
            notifier.notify("vip58", State.MASTER, 100, old_state=State.BACKUP, cause=Cause.PREEMPT)
            notifier.notify(
                "vip58", State.BACKUP, 100, old_state=State.MASTER, cause=Cause.HIGHER_PRIORITY
            )
            assert await notifier.drain(20)
            elapsed = trio.current_time() - t0
        shell, child = map(int, pids.read_text().split())
        await wait_gone(shell, child)  # no survivors: SIGKILL went to the whole group
    assert out.read_text() == "after\n"
    # The timeout, then the kill delay (SIGTERM was ignored), then the next script.
    assert 0.5 + KILL_DELAY <= elapsed < 0.5 + KILL_DELAY + 3
    stats = notifier.statistics()["vip58"]
    assert (stats.run, stats.failed, stats.timed_out) == (2, 1, 1)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.endswith("failed: timed out after 0.5 s, then killed by SIGKILL")


async def test_cancelling_the_notifier_kills_the_running_script_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    notifier = Notifier(
        [instance(notify_stop=(hanging_script(tmp_path, pids),))], RealProcessRunner(), timeout=60
    )
    with kill_leftovers(pids):
        async with running(notifier):
            notifier.notify(
                "vip58", State.INITIALIZE, 100, old_state=State.MASTER, cause=Cause.SHUTDOWN
            )
            assert not await notifier.drain(1)
        # run() is cancelled: the daemon gave up waiting.
        shell, child = map(int, pids.read_text().split())
        await wait_gone(shell, child)


async def test_a_shell_string_gets_the_arguments_appended_without_injection(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    marker = tmp_path / "injected"
    # Configuration forbids such a name; the notifier must be safe even so.
    name = f'x"; touch {marker}; echo "$(touch {marker})'
    notifier = Notifier(
        [instance(name, notify=f"printf '%s\\n' given >> {shlex.quote(str(out))}")],
        RealProcessRunner(),
        timeout=10,
    )
    async with running(notifier):
        notifier.notify(name, State.MASTER, 100, old_state=State.BACKUP, cause=Cause.PREEMPT)
        assert await notifier.drain(20)
    assert out.read_text().splitlines() == ["given", "INSTANCE", name, "MASTER", "100"]
    assert not marker.exists()


async def test_a_script_writing_much_output_never_blocks() -> None:
    chatty = (
        "/bin/sh",
        "-c",
        "head -c 1000000 /dev/zero | tr '\\0' x; head -c 1000000 /dev/zero >&2",
    )
    notifier = Notifier([instance(notify_master=chatty)], RealProcessRunner(), timeout=20)
    async with running(notifier):
        notifier.notify("vip58", State.MASTER, 100, old_state=State.BACKUP, cause=Cause.PREEMPT)
        assert await notifier.drain(30)
    stats = notifier.statistics()["vip58"]
    assert (stats.run, stats.failed) == (1, 0)


async def test_a_missing_program_or_user_is_logged_and_the_next_script_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    notifier = Notifier(
        [
            instance(
                "vip58",
                notify_master=("/nonexistent/on-master",),
                notify=("sh", "-c", f"echo ran >> {shlex.quote(str(out))}"),
            ),
            instance("vip59", notify=("/bin/true",), notify_user="pyvrrp-no-such-user"),
        ],
        RealProcessRunner(),
        timeout=10,
    )
    async with running(notifier):
        for name in ("vip58", "vip59"):
            notifier.notify(name, State.MASTER, 100, old_state=State.BACKUP, cause=Cause.PREEMPT)
        assert await notifier.drain(20)
    assert out.read_text() == "ran\n"
    logged = sorted((r.levelno, r.getMessage()) for r in caplog.records if r.name == "pyvrrp")
    assert (
        logging.ERROR,
        "vip58: MASTER: notify_master /nonexistent/on-master failed: cannot run "
        "/nonexistent/on-master: not found",
    ) in logged
    assert (
        logging.ERROR,
        "vip59: MASTER: notify /bin/true failed: cannot run as user pyvrrp-no-such-user: "
        "no such user",
    ) in logged


async def test_a_bare_program_name_is_searched_in_the_scripts_path_not_the_daemons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    program = script(tmp_path / "pyvrrp-test-daemon-path-only", "exit 0\n")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    name = Path(program).name
    notifier = Notifier([instance(notify_master=(name,))], RealProcessRunner(), timeout=10)
    async with running(notifier):
        notifier.notify("vip58", State.MASTER, 100, old_state=State.BACKUP, cause=Cause.PREEMPT)
        assert await notifier.drain(20)
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "pyvrrp"] == [
        (
            logging.ERROR,
            f"vip58: MASTER: notify_master {name} failed: cannot run {name}: not found in PATH",
        )
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_notify_user_runs_the_scripts_as_that_user_with_its_groups() -> None:
    nobody = pwd.getpwnam("nobody")
    groups = " ".join(map(str, sorted(os.getgrouplist("nobody", nobody.pw_gid))))
    # Exits 0 only as nobody, with its groups; as root it would fail.
    check = (
        f'[ "$(id -u)" = {nobody.pw_uid} ] && [ "$(id -g)" = {nobody.pw_gid} ] && '
        f'[ "$(id -G | tr " " "\\n" | sort -n | tr "\\n" " ")" = "{groups} " ]'
    )
    notifier = Notifier(
        [instance(notify_master=check, notify_user="nobody")], RealProcessRunner(), timeout=10
    )
    async with running(notifier):
        notifier.notify("vip58", State.MASTER, 100, old_state=State.BACKUP, cause=Cause.PREEMPT)
        assert await notifier.drain(20)
    stats = notifier.statistics()["vip58"]
    assert (stats.run, stats.failed, stats.last_error) == (1, 0, None)
