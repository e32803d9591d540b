"""RealProcessRunner with real processes, in real time.

Intervals are short (0.1-0.3 s) and the margins wide, so these hold on a busy 2-core machine.
Every process started here is in a process group of its own (the runner's
start_new_session), and the tests check that no member of a killed group survives.
"""

from __future__ import annotations

import os
import pwd
import signal
from pathlib import Path

import pytest
import trio

from pyvrrp.core.config import parse_node
from pyvrrp.core.tracking import Health
from pyvrrp.runtime.trackers import RealProcessRunner, ScriptOutcome, Trackers
from pyvrrp.testing.fakenetlink import FakeNetlink

# Slack for process start-up and scheduling on a loaded machine.
MARGIN = 1.5


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # it exited while we looked
        fields = text.rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


async def wait_group_gone(pgid: int) -> list[int]:
    """The group's survivors after giving SIGKILL a moment to be delivered."""
    with trio.move_on_after(1.0):
        while group_members(pgid):
            await trio.sleep(0.01)
    return group_members(pgid)


async def run(command: tuple[str, ...] | str, timeout: float = 5.0) -> ScriptOutcome:
    return await RealProcessRunner().run(command, timeout=timeout, user=None)


async def test_true_succeeds_and_false_fails() -> None:
    ok = await run(("true",))
    assert ok == ScriptOutcome(exit_status=0, duration=ok.duration)
    assert ok.success and 0 < ok.duration < MARGIN
    failed = await run(("false",))
    assert failed.exit_status == 1 and not failed.success


async def test_shell_string_runs_through_sh() -> None:
    outcome = await run("test -d / && exit 3")
    assert outcome.exit_status == 3
    killed = await run("kill -USR1 $$")
    assert killed.signal == signal.SIGUSR1
    assert killed.describe() == "killed by SIGUSR1"


async def test_missing_program_is_a_failed_run_saying_so() -> None:
    outcome = await run(("/nonexistent/check-nginx",))
    assert not outcome.success
    assert outcome.error == "cannot run /nonexistent/check-nginx: not found"
    bare = await run(("pyvrrp-no-such-program-xyz",))
    assert bare.error == "cannot run pyvrrp-no-such-program-xyz: not found in PATH"


async def test_non_executable_file_is_a_failed_run_saying_so(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    outcome = await run((str(script),))
    assert not outcome.success
    assert outcome.error == (f"cannot run {script}: permission denied (is it executable? chmod +x)")


async def test_script_without_interpreter_line_is_a_failed_run(tmp_path: Path) -> None:
    script = tmp_path / "check"
    script.write_bytes(b"\x7fELF garbage")
    script.chmod(0o755)
    outcome = await run((str(script),))
    assert outcome.error is not None and "not an executable format" in outcome.error


async def test_chatty_script_never_blocks_on_a_pipe() -> None:
    # 8 MB on stdout and stderr: far beyond a pipe buffer, harmless on /dev/null.
    outcome = await run("head -c 8000000 /dev/zero; head -c 8000000 /dev/zero >&2", timeout=10)
    assert outcome.success and outcome.duration < MARGIN


async def test_timeout_kills_the_script_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "pgid"
    command = f"echo $$ > {pidfile}; sleep 60 & sleep 60; wait"
    outcome = await run(command, timeout=0.3)
    assert outcome.timed_out and not outcome.success
    assert outcome.signal == signal.SIGTERM  # sh dies of the SIGTERM to its group
    assert 0.3 <= outcome.duration < 0.3 + MARGIN
    assert await wait_group_gone(int(pidfile.read_text())) == []


async def test_script_ignoring_sigterm_gets_sigkill_2s_later(tmp_path: Path) -> None:
    pidfile = tmp_path / "pgid"
    # The ignored SIGTERM is inherited by the child sleep, too.
    command = f"trap '' TERM; echo $$ > {pidfile}; sleep 60 & sleep 60; wait"
    outcome = await run(command, timeout=0.2)
    assert outcome.timed_out and outcome.signal == signal.SIGKILL
    assert outcome.describe().startswith("timed out: killed by SIGKILL after 2.")
    assert 2.2 <= outcome.duration < 2.2 + MARGIN
    assert await wait_group_gone(int(pidfile.read_text())) == []


async def test_children_surviving_their_parent_are_killed_after_a_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "pgid"
    # The child ignores SIGTERM, its parent does not: the SIGKILL follows as soon as the
    # parent is gone, without waiting the 2 s.
    command = f"echo $$ > {pidfile}; (trap '' TERM; sleep 60) & sleep 60"
    outcome = await run(command, timeout=0.2)
    assert outcome.signal == signal.SIGTERM
    assert outcome.duration < 0.2 + MARGIN
    assert await wait_group_gone(int(pidfile.read_text())) == []


async def test_cancelling_a_run_kills_its_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pgid"
    runner = RealProcessRunner()
    with trio.move_on_after(0.5):
        await runner.run(f"echo $$ > {pidfile}; sleep 60", timeout=30, user=None)
    assert await wait_group_gone(int(pidfile.read_text())) == []


async def test_event_loop_keeps_running_while_scripts_run() -> None:
    gaps: list[float] = []

    async def ticker() -> None:
        last = trio.current_time()
        while True:
            await trio.sleep(0.01)
            now = trio.current_time()
            gaps.append(now - last)
            last = now

    runner = RealProcessRunner()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        async with trio.open_nursery() as runs:
            for _ in range(5):
                runs.start_soon(lambda: runner.run(("sleep", "0.5"), timeout=5, user=None))
        nursery.cancel_scope.cancel()
    assert len(gaps) > 10
    assert max(gaps) < 0.3


def environment_writer(out: Path) -> tuple[str, ...]:
    """A command writing its own initial environment to ``out``, one ``NAME=value`` a line.

    It reads /proc/<pid>/environ, what the process was started with: a shell's own variables
    (PWD...) are not in it.
    """
    return ("/bin/sh", "-c", "tr '\\0' '\\n' < /proc/$$/environ > \"$0\"", str(out))


async def test_without_env_a_run_inherits_the_daemons_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYVRRP_TEST_INHERITED", "from the daemon")
    out = tmp_path / "env"
    outcome = await RealProcessRunner().run(environment_writer(out), timeout=5, user=None)
    assert outcome.success, outcome
    assert "PYVRRP_TEST_INHERITED=from the daemon" in out.read_text().splitlines()
    assert f"PATH={os.environ['PATH']}" in out.read_text().splitlines()


async def test_env_is_the_whole_environment_of_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYVRRP_TEST_SECRET", "must not leak")
    out = tmp_path / "env"
    env = {"PATH": "/usr/bin:/bin", "PYVRRP_STATE": "MASTER", "SPACES": "a b  c"}
    outcome = await RealProcessRunner().run(environment_writer(out), timeout=5, user=None, env=env)
    assert outcome.success, outcome
    assert sorted(out.read_text().splitlines()) == [
        "PATH=/usr/bin:/bin",
        "PYVRRP_STATE=MASTER",
        "SPACES=a b  c",
    ]


async def test_a_bare_program_name_is_searched_in_the_path_of_the_given_env(
    tmp_path: Path,
) -> None:
    program = tmp_path / "pyvrrp-test-only-here"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    runner = RealProcessRunner()
    found = await runner.run((program.name,), timeout=5, user=None, env={"PATH": str(tmp_path)})
    assert found.success, found
    # Not in the daemon's PATH: inheriting it, the same name is not found.
    missing = await runner.run((program.name,), timeout=5, user=None)
    assert missing.error == f"cannot run {program.name}: not found in PATH"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_script_runs_as_its_user_with_its_groups() -> None:
    nobody = pwd.getpwnam("nobody")
    groups = " ".join(str(g) for g in sorted(os.getgrouplist("nobody", nobody.pw_gid)))
    check = (
        f'test "$(id -u)" = {nobody.pw_uid} && test "$(id -g)" = {nobody.pw_gid} && '
        f'test "$(id -G | tr " " "\\n" | sort -n | tr "\\n" " ")" = "{groups} "'
    )
    outcome = await RealProcessRunner().run(check, timeout=5, user="nobody")
    assert outcome.success, outcome


async def test_unknown_user_is_a_failed_run_saying_so() -> None:
    outcome = await RealProcessRunner().run(("true",), timeout=5, user="pyvrrp-no-such-user")
    assert outcome.error == "cannot run as user pyvrrp-no-such-user: no such user"


async def test_switching_user_without_root_is_a_failed_run_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # the runner asks at each run
    outcome = await RealProcessRunner().run(("true",), timeout=5, user="nobody")
    assert outcome.error == (
        "cannot run as user nobody: pyvrrp is not running as root (remove user, or run "
        "pyvrrp as root)"
    )


async def test_trackers_turn_a_real_check_bad_and_good(tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    flag.touch()
    node = parse_node(
        {
            "scripts": {
                "chk": {
                    "command": ["test", "-e", str(flag)],
                    "interval": 0.2,
                    "fall": 2,
                    "rise": 2,
                    "weight": -60,
                }
            },
            "instances": {
                "vip58": {
                    "interface": "eth0.4000",
                    "vrid": 58,
                    "addresses": ["1.2.3.58/29"],
                    "track_scripts": ["chk"],
                }
            },
        }
    )
    netlink = FakeNetlink()
    netlink.add_link("eth0.4000")
    reports: list[tuple[float, int]] = []

    def on_health(instance: str, health: Health) -> None:
        reports.append((trio.current_time(), health.priority))

    trackers = Trackers(node, netlink, RealProcessRunner(), on_health)
    async with trio.open_nursery() as nursery:
        await nursery.start(trackers.run)
        with trio.fail_after(MARGIN):
            while trackers.tracking.script("chk").state != "good":
                await trio.sleep(0.02)
        broken = trio.current_time()
        flag.unlink()
        with trio.fail_after(0.4 + MARGIN):  # two failing runs, 0.2 s apart
            while trackers.tracking.health("vip58").priority != 40:
                await trio.sleep(0.02)
        assert trio.current_time() - broken >= 0.2  # not before the second failure
        flag.touch()
        with trio.fail_after(0.4 + MARGIN):
            while trackers.tracking.health("vip58").priority != 100:
                await trio.sleep(0.02)
        stats = trackers.script_statistics("chk")
        assert stats.failures >= 2 and stats.runs >= 5
        assert stats.last_outcome is not None and stats.last_outcome.success
        nursery.cancel_scope.cancel()
    assert [p for _, p in reports][-2:] == [40, 100]


# ---- where a run starts: in trio's thread (vfork, a pidfd) unless it switches user


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_a_run_as_the_daemons_user_starts_in_trios_thread_and_leaks_no_pidfd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_worker_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("a worker thread was asked to start the script")

    monkeypatch.setattr(trio.to_thread, "run_sync", no_worker_thread)
    runner = RealProcessRunner()
    before = open_fds()
    assert (await runner.run(("true",), timeout=5, user=None)).success
    assert (await runner.run("exit 3", timeout=5, user=None)).exit_status == 3
    assert (await runner.run(("no-such-program-here",), timeout=5, user=None)).error
    timed_out = await runner.run("sleep 60", timeout=0.2, user=None)
    assert timed_out.timed_out and timed_out.signal == signal.SIGTERM
    pidfile = tmp_path / "pgid"
    with trio.move_on_after(0.3):
        await runner.run(f"echo $$ > {pidfile}; exec sleep 60", timeout=30, user=None)
    assert await wait_group_gone(int(pidfile.read_text())) == []
    assert open_fds() == before  # every pidfd closed, whatever the ending


async def test_without_a_pidfd_a_run_still_ends_and_times_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = RealProcessRunner()

    def out_of_fds(pid: int) -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "pidfd_open", out_of_fds)
    ok = await runner.run(("true",), timeout=5, user=None)
    assert ok.success and ok.duration < MARGIN
    late = await runner.run("sleep 60", timeout=0.2, user=None)
    assert late.timed_out and late.signal == signal.SIGTERM and late.duration < 0.2 + MARGIN
    assert (await runner.run("exit 4", timeout=5, user=None)).exit_status == 4


async def test_a_python_without_pidfd_open_still_runs_scripts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A Python built against kernel headers older than 5.3 has no os.pidfd_open at all.
    monkeypatch.delattr(os, "pidfd_open")
    runner = RealProcessRunner()
    assert (await runner.run("exit 4", timeout=5, user=None)).exit_status == 4
    late = await runner.run("sleep 60", timeout=0.2, user=None)
    assert late.timed_out and late.duration < 0.2 + MARGIN
