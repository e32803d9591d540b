"""Running scripts: health checks and notifications share this process runner.

Processes are started by a :class:`ProcessRunner`: :class:`RealProcessRunner` in the daemon,
``pyvrrp.testing.fakeprocess.FakeProcessRunner`` in virtual-time tests; both
:mod:`pyvrrp.runtime.trackers` and :mod:`pyvrrp.runtime.notify` use them. The real one never
blocks trio's thread for longer than an ``exec``: a script that runs as the daemon's own user
is started in trio's thread (``subprocess`` then uses ``vfork``: the daemon pauses only until
the script's ``exec``, 0.2-0.3 ms typically, a few ms at worst) and its exit is waited for on
a pidfd, so a run costs the daemon about half the CPU of a hand-off to a worker thread and
back (docs/benchmarks.md, "The seed cluster: what a real node pays"); a script with a user or
group to switch to is started in a worker thread, user lookup included (``subprocess`` cannot
``vfork`` then: it forks the whole daemon); where the kernel has no pidfd (before Linux 5.3)
the exit is polled for, every 50 ms.

Health checks inherit the daemon's environment, as keepalived's ``vrrp_script`` does (a check
may need what the service unit sets, a proxy for instance); the notifier passes an ``env`` of
its own, which is then the whole environment. Standard streams go to /dev/null, so a chatty
script cannot block on a full pipe, and each run gets its own process group (a new session), so
a timeout kills everything the script started: SIGTERM to the group, then SIGKILL to whatever
is left of the group when the script has exited or 2 s later (keepalived's timeout handling). A
run that times out counts as a failure when it is over, whatever its exit status.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import signal
import subprocess
from collections.abc import Mapping
from typing import Final, Protocol, cast

import attrs
import trio

__all__ = [
    "KILL_DELAY",
    "SHELL",
    "ProcessRunner",
    "RealProcessRunner",
    "ScriptOutcome",
    "shell_argv",
]

#: Seconds between the SIGTERM and the SIGKILL of a script that timed out (keepalived's).
KILL_DELAY: Final = 2.0
SHELL: Final = "/bin/sh"


@attrs.frozen
class ScriptOutcome:
    """How one run of a script ended.

    Exactly one of these describes the end: ``exit_status`` (it exited), ``signal`` (a
    signal killed it; with ``timed_out`` it was our SIGTERM or SIGKILL) or ``error`` (it
    could not be started: missing program, not executable, unknown user...). ``duration`` is
    seconds from start to end, the kill included.
    """

    exit_status: int | None = None
    signal: int | None = None
    timed_out: bool = False
    error: str | None = None
    duration: float = 0.0

    @property
    def success(self) -> bool:
        """Exit status 0, in time. Anything else is a failure (docs/keepalived.md)."""
        return self.exit_status == 0 and not self.timed_out and self.error is None

    def describe(self) -> str:
        """For logs and status: ``exit status 1``, ``killed by SIGSEGV``,
        ``timed out: killed by SIGTERM after 2.01 s``, or why it could not start."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return f"timed out: {_ending(self)} after {self.duration:.3g} s"
        return _ending(self)

    @classmethod
    def from_returncode(
        cls, returncode: int, *, duration: float, timed_out: bool = False
    ) -> ScriptOutcome:
        """From a ``subprocess`` return code (negative: killed by that signal)."""
        if returncode < 0:
            return cls(signal=-returncode, timed_out=timed_out, duration=duration)
        return cls(exit_status=returncode, timed_out=timed_out, duration=duration)


def _ending(outcome: ScriptOutcome) -> str:
    if outcome.signal is not None:
        try:
            name = signal.Signals(outcome.signal).name
        except ValueError:
            name = f"signal {outcome.signal}"
        return f"killed by {name}"
    return f"exit status {outcome.exit_status}"


class ProcessRunner(Protocol):
    """Runs a script's command once (see the module docstring)."""

    async def run(
        self,
        command: tuple[str, ...] | str,
        *,
        timeout: float,
        user: str | None,
        group: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ScriptOutcome:
        """Run ``command`` (argv, or a string for ``/bin/sh -c``) as ``user`` (None: as
        ourselves) and ``group`` (None: the user's primary group), killing it after
        ``timeout`` seconds. User and group are names or numeric ids. ``env`` is the whole
        environment of the process (its ``PATH`` also finds a bare program name); None
        inherits ours. Never raises for a failing or missing command: that is an outcome."""
        ...


def shell_argv(command: tuple[str, ...] | str) -> list[str]:
    """The argv to execute: a string runs through ``/bin/sh -c``."""
    if isinstance(command, str):
        return [SHELL, "-c", command]
    return list(command)


class _CannotStart(Exception):
    """The run cannot start; the message says why and what to do."""


@attrs.frozen
class _Credentials:
    uid: int
    gid: int
    groups: tuple[int, ...]


def _lookup_group(group: str) -> int:
    if group.isdigit():
        return int(group)  # a numeric id needs no entry in the group database
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise _CannotStart(f"cannot run as group {group}: no such group") from None


def _lookup(user: str | None, group: str | None) -> _Credentials:
    """The credentials of ``user`` and ``group`` (see :meth:`ProcessRunner.run`).

    Runs in a worker thread: NSS may ask LDAP or sssd, which can take long. A user keeps
    its supplementary groups (as ``su`` gives them); without a user, only the uid stays ours
    and ``group`` is the one group.
    """
    if user is None:
        assert group is not None
        gid = _lookup_group(group)
        return _Credentials(os.geteuid(), gid, (gid,))
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        if not user.isdigit():
            raise _CannotStart(f"cannot run as user {user}: no such user") from None
        # A numeric uid without a passwd entry (a container's): no name, no group list.
        gid = _lookup_group(group) if group is not None else int(user)
        return _Credentials(int(user), gid, (gid,))
    gid = _lookup_group(group) if group is not None else entry.pw_gid
    groups = tuple(dict.fromkeys([gid, *os.getgrouplist(entry.pw_name, gid)]))
    return _Credentials(entry.pw_uid, gid, groups)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, signum)


class _Child:
    """A started script; its exit is waited for on a pidfd (None: polled, when the pidfd
    could not be opened)."""

    POLL_EVERY = 0.05

    def __init__(self, popen: subprocess.Popen[bytes], pidfd: int | None) -> None:
        self._popen = popen
        self._pidfd = pidfd
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        if self._pidfd is not None:
            await trio.lowlevel.wait_readable(self._pidfd)  # readable once it has exited
            self._popen.wait()  # reaps it: nothing to wait for any more
            self.close()
        while self._popen.poll() is None:
            await trio.sleep(self.POLL_EVERY)
        return cast(int, self._popen.returncode)

    def close(self) -> None:
        """Release the pidfd of a script that is not waited for any more."""
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


def _start(argv: list[str], env: dict[str, str] | None, credentials: _Credentials | None) -> _Child:
    """Start a script: standard streams on /dev/null, a session (a process group) of its own,
    "/" as its directory, ``env`` (None: the daemon's; a bare program name is searched in its
    PATH, as execvpe), the user and groups of ``credentials``."""
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, killed as a whole
        cwd="/",  # never depend on the daemon's working directory
        env=env,
        user=credentials.uid if credentials else None,
        group=credentials.gid if credentials else None,
        extra_groups=credentials.groups if credentials else None,
    )
    try:
        pidfd: int | None = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        # No pidfds (a Python built without os.pidfd_open, Linux before 5.3), out of
        # descriptors: the script runs all the same, polled for.
        pidfd = None
    return _Child(popen, pidfd)


class RealProcessRunner:
    """Runs scripts as real processes (see the module docstring for how)."""

    def __init__(self, *, kill_delay: float = KILL_DELAY) -> None:
        self.kill_delay = kill_delay

    async def run(
        self,
        command: tuple[str, ...] | str,
        *,
        timeout: float,
        user: str | None,
        group: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ScriptOutcome:
        """See :meth:`ProcessRunner.run`."""
        started = trio.current_time()
        argv = shell_argv(command)
        try:
            process = await self._spawn(argv, user, group, env)
        except _CannotStart as cannot:
            return ScriptOutcome(error=str(cannot), duration=trio.current_time() - started)
        timed_out = False
        try:
            with trio.move_on_after(timeout) as waiting:
                await process.wait()
            if waiting.cancelled_caught:
                timed_out = True
                await self._stop(process)
        finally:
            if process.returncode is None:
                # We are being cancelled (shutdown): leave no process behind.
                with trio.CancelScope(shield=True):
                    await self._stop(process)
            process.close()
        assert process.returncode is not None
        return ScriptOutcome.from_returncode(
            process.returncode, duration=trio.current_time() - started, timed_out=timed_out
        )

    async def _spawn(
        self,
        argv: list[str],
        user: str | None,
        group: str | None,
        env: Mapping[str, str] | None,
    ) -> _Child:
        credentials: _Credentials | None = None
        if user is not None or group is not None:
            credentials = await trio.to_thread.run_sync(_lookup, user, group)
            if credentials.uid == os.geteuid() and (
                group is None or credentials.gid == os.getegid()
            ):
                credentials = None  # already that user (and group): nothing to switch
            elif os.geteuid() != 0:
                what = f"user {user}" if user is not None else f"group {group}"
                key = "user" if user is not None else "group"
                raise _CannotStart(
                    f"cannot run as {what}: pyvrrp is not running as root "
                    f"(remove {key}, or run pyvrrp as root)"
                )
        program = argv[0]
        environment = dict(env) if env is not None else None
        try:
            if credentials is None:
                return _start(argv, environment, None)  # vfork: back at the exec
            # Switching user, subprocess forks the whole daemon: not in trio's thread.
            return await trio.to_thread.run_sync(_start, argv, environment, credentials)
        except FileNotFoundError:
            where = "" if "/" in program else " in PATH"
            raise _CannotStart(f"cannot run {program}: not found{where}") from None
        except PermissionError:
            raise _CannotStart(
                f"cannot run {program}: permission denied (is it executable? chmod +x)"
            ) from None
        except OSError as exc:
            if exc.errno == errno.ENOEXEC:
                raise _CannotStart(
                    f"cannot run {program}: not an executable format (a script needs a #! line)"
                ) from None
            raise _CannotStart(f"cannot run {program}: {exc.strerror or exc}") from None

    async def _stop(self, process: _Child) -> None:
        """SIGTERM to the process group; SIGKILL to what is left once the script has exited
        or after ``kill_delay``."""
        # start_new_session=True: the process group id is the script's pid, and the kernel
        # does not reuse it while any member of the group lives.
        _signal_group(process.pid, signal.SIGTERM)
        with trio.move_on_after(self.kill_delay):
            await process.wait()
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()
