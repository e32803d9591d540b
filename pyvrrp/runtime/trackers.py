"""Trackers: run the health scripts, watch the tracked interfaces, report each instance's health.

This module decides nothing: :class:`pyvrrp.core.tracking.Tracking` turns results into a
:class:`~pyvrrp.core.tracking.Health` per instance. :class:`Trackers` feeds it and calls
back whenever an instance's health changes; the node turns that into a
:class:`~pyvrrp.core.events.HealthChanged` for the router.

Scripts
-------
Each script tracked by at least one instance runs at once, then every ``interval`` (start to
start, on a fixed grid so it never drifts). A run still going when the next one is due is
skipped and counted (keepalived does the same). Scripts no instance tracks do not run, as in
keepalived.

Processes are started by a :class:`ProcessRunner`: :class:`RealProcessRunner` in the daemon,
``pyvrrp.testing.fakeprocess.FakeProcessRunner`` in virtual-time tests. The real one
never blocks trio's thread: the fork/exec and the user lookup run in worker threads, waiting
for the exit uses a pidfd. Health checks inherit the daemon's environment, as keepalived's
``vrrp_script`` does (a check may need what the service unit sets, a proxy for instance); the
notifier passes an ``env`` of its own, which is then the whole environment. Standard streams
go to /dev/null, so a chatty script cannot block on a full pipe, and each run gets its own
process group (a new session), so a timeout kills everything the script started: SIGTERM to
the group, then SIGKILL to whatever is left of the group when the script has exited or 2 s
later (keepalived's timeout handling). A run that times out counts as a failure when it is
over, whatever its exit status.

Interfaces
----------
The tracked interfaces' states are read through :class:`~pyvrrp.runtime.netlink.Netlink`
after subscribing to its events (in that order, so no change falls between the two); then
every :class:`~pyvrrp.runtime.netlink.LinkEvent` of a tracked name updates it. Nothing polls.
A subscriber that falls behind gets its channel closed by the netlink object: we subscribe
again and re-read every tracked interface.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import signal
import subprocess
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final, Protocol

import attrs
import trio

from pyvrrp.core.config import US_PER_SECOND, NodeConfig
from pyvrrp.core.events import HealthChanged
from pyvrrp.core.tracking import Health, ScriptStatus, Tracking
from pyvrrp.runtime.netlink import LinkEvent, LinkState, Netlink, NetlinkError, NetlinkEvent

__all__ = [
    "KILL_DELAY",
    "HealthCallback",
    "ProcessRunner",
    "RealProcessRunner",
    "ScriptOutcome",
    "ScriptStatistics",
    "Trackers",
    "TrackersStatistics",
    "shell_argv",
]

log = logging.getLogger("pyvrrp")

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
        env: Mapping[str, str] | None = None,
    ) -> ScriptOutcome:
        """Run ``command`` (argv, or a string for ``/bin/sh -c``) as ``user`` (None: as
        ourselves), killing it after ``timeout`` seconds. ``env`` is the whole environment
        of the process (its ``PATH`` also finds a bare program name); None inherits ours.
        Never raises for a failing or missing command: that is an outcome."""
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


def _lookup_user(user: str) -> _Credentials:
    # Runs in a worker thread: NSS may ask LDAP or sssd, which can take long.
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise _CannotStart(f"cannot run as user {user}: no such user") from None
    groups = tuple(os.getgrouplist(user, entry.pw_gid))
    return _Credentials(entry.pw_uid, entry.pw_gid, groups)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, signum)


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
        env: Mapping[str, str] | None = None,
    ) -> ScriptOutcome:
        """See :meth:`ProcessRunner.run`."""
        started = trio.current_time()
        argv = shell_argv(command)
        try:
            process = await self._spawn(argv, user, env)
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
        assert process.returncode is not None
        return ScriptOutcome.from_returncode(
            process.returncode, duration=trio.current_time() - started, timed_out=timed_out
        )

    async def _spawn(
        self, argv: list[str], user: str | None, env: Mapping[str, str] | None
    ) -> trio.Process:
        credentials: _Credentials | None = None
        if user is not None:
            credentials = await trio.to_thread.run_sync(_lookup_user, user)
            if credentials.uid == os.geteuid():
                credentials = None  # already that user: nothing to switch
            elif os.geteuid() != 0:
                raise _CannotStart(
                    f"cannot run as user {user}: pyvrrp is not running as root "
                    "(remove user, or run pyvrrp as root)"
                )
        program = argv[0]
        try:
            # trio runs the fork/exec in a worker thread.
            return await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own process group, killed as a whole
                cwd="/",  # never depend on the daemon's working directory
                # subprocess searches a bare program name in this env's PATH, as execvpe.
                env=dict(env) if env is not None else None,
                user=credentials.uid if credentials else None,
                group=credentials.gid if credentials else None,
                extra_groups=credentials.groups if credentials else None,
            )
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

    async def _stop(self, process: trio.Process) -> None:
        """SIGTERM to the process group; SIGKILL to what is left once the script has exited
        or after ``kill_delay``."""
        # start_new_session=True: the process group id is the script's pid, and the kernel
        # does not reuse it while any member of the group lives.
        _signal_group(process.pid, signal.SIGTERM)
        with trio.move_on_after(self.kill_delay):
            await process.wait()
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()


@attrs.frozen
class ScriptStatistics:
    """One script's counters and state, for ``pyvrrp status`` and metrics.

    ``consecutive_successes`` / ``consecutive_failures`` are its position towards ``rise`` /
    ``fall``, and ``position`` says it in words (``1/2 failures to fall``; empty when the
    last result agreed with the state). ``runs`` counts finished runs, ``failures`` failed
    ones (``timeouts`` of which timed out), ``skipped`` the runs not started because the
    previous one was still going. ``last_run`` is the trio time the last finished run
    started (trio time, not wall-clock time). ``tracked`` False: no instance tracks it, so it
    never runs.
    """

    name: str
    tracked: bool
    state: ScriptStatus
    position: str
    consecutive_successes: int
    consecutive_failures: int
    rise: int
    fall: int
    runs: int
    failures: int
    timeouts: int
    skipped: int
    running: bool
    last_outcome: ScriptOutcome | None
    last_run: float | None

    @property
    def last_duration(self) -> float | None:
        """Seconds the last finished run took."""
        return self.last_outcome.duration if self.last_outcome is not None else None

    @property
    def last_exit_status(self) -> int | None:
        """The exit status of the last finished run (None: signal, or it could not start)."""
        return self.last_outcome.exit_status if self.last_outcome is not None else None


@attrs.frozen
class TrackersStatistics:
    """Every script's statistics, and how often the netlink subscription was renewed."""

    scripts: Mapping[str, ScriptStatistics]
    resubscriptions: int


@attrs.define
class _Runs:
    runs: int = 0
    failures: int = 0
    timeouts: int = 0
    skipped: int = 0
    skipping: bool = False
    running: bool = False
    last_outcome: ScriptOutcome | None = None
    last_run: float | None = None


HealthCallback = Callable[[str, Health], None]


class Trackers:
    """Runs the scripts and watches the interfaces of ``config``; calls ``on_health(instance,
    health)`` with every instance's initial health, then whenever one changes.

    ``previous`` (on reload: the Trackers being replaced) carries the scripts' states,
    rise/fall positions, run counters and last results over.
    """

    def __init__(
        self,
        config: NodeConfig,
        netlink: Netlink,
        runner: ProcessRunner,
        on_health: HealthCallback,
        *,
        previous: Trackers | None = None,
    ) -> None:
        self._config = config
        self._netlink = netlink
        self._runner = runner
        self._on_health = on_health
        self._tracking = Tracking(
            config, previous=previous.tracking if previous is not None else None
        )
        self._runs = {name: _Runs() for name in config.scripts}
        for name, runs in (previous._runs if previous is not None else {}).items():
            if name in self._runs:
                # Counters and the last result go on; a run the reload cancelled is over.
                self._runs[name] = attrs.evolve(runs, running=False, skipping=False)
        self._seen: dict[str, str] = {}  # "up", "down", "absent": what we last logged
        self._resubscriptions = 0
        self._reported: dict[str, HealthChanged] = {}

    @property
    def tracking(self) -> Tracking:
        """The health of every instance and the state of every tracker."""
        return self._tracking

    def statistics(self) -> TrackersStatistics:
        """A snapshot of every script's counters (see :class:`ScriptStatistics`)."""
        return TrackersStatistics(
            scripts=MappingProxyType(
                {name: self.script_statistics(name) for name in self._config.scripts}
            ),
            resubscriptions=self._resubscriptions,
        )

    def script_statistics(self, name: str) -> ScriptStatistics:
        """A snapshot of script ``name``'s counters and state."""
        config = self._config.scripts[name]
        state = self._tracking.script(name)
        runs = self._runs[name]
        return ScriptStatistics(
            name=name,
            tracked=name in self._tracking.tracked_scripts(),
            state=state.state,
            position=state.position(),
            consecutive_successes=state.successes,
            consecutive_failures=state.failures,
            rise=config.rise,
            fall=config.fall,
            runs=runs.runs,
            failures=runs.failures,
            timeouts=runs.timeouts,
            skipped=runs.skipped,
            running=runs.running,
            last_outcome=runs.last_outcome,
            last_run=runs.last_run,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Track until cancelled. Every instance's initial health (interfaces read, scripts
        not run yet) is reported through the callback before ``task_status.started()``."""
        channel = self._netlink.subscribe() if self._tracking.tracked_interfaces() else None
        try:
            await self._read_links(initial=True)
            for instance, health in self._tracking.healths().items():
                log.debug("instance %s: %s", instance, health.explain())
                self._reported[instance] = health.event()
                self._on_health(instance, health)
            async with trio.open_nursery() as nursery:
                if channel is not None:
                    nursery.start_soon(self._watch_links, channel)
                    channel = None  # the watcher owns it now
                for name in self._config.scripts:
                    if name in self._tracking.tracked_scripts():
                        nursery.start_soon(self._script_loop, name)
                    else:
                        log.info("script %s is not tracked by any instance: not running it", name)
                task_status.started()
        finally:
            if channel is not None:
                channel.close()

    # Interfaces.

    async def _read_links(self, *, initial: bool = False) -> None:
        for name in sorted(self._tracking.tracked_interfaces()):
            try:
                state = await self._netlink.link(name)
            except NetlinkError as exc:
                log.warning("cannot read the state of tracked interface %s: %s", name, exc)
                continue
            self._set_link(name, state, initial=initial)

    async def _watch_links(self, channel: trio.MemoryReceiveChannel[NetlinkEvent]) -> None:
        tracked = self._tracking.tracked_interfaces()
        while True:
            async with channel:
                async for event in channel:
                    if isinstance(event, LinkEvent) and event.name in tracked:
                        self._set_link(event.name, event.state)
            # The netlink object closed our channel: we fell behind, or the kernel dropped
            # notifications. Subscribe again, then re-read, so no change falls in between.
            try:
                channel = self._netlink.subscribe()
            except trio.ClosedResourceError:
                log.info("netlink is closed: no longer watching the tracked interfaces")
                return
            self._resubscriptions += 1
            log.warning("missed link events: re-reading the tracked interfaces")
            await self._read_links()

    def _set_link(self, name: str, state: LinkState | None, *, initial: bool = False) -> None:
        up = state is not None and state.up
        seen = "up" if up else "down" if state is not None else "absent"
        before, self._seen[name] = self._seen.get(name), seen
        # After a reload the first reading is no news when the carried-over state agrees:
        # "dummy0 is down" logged again would read as dummy0 going down at the reload.
        known = initial and self._tracking.interfaces().get(name) is up
        changed = self._tracking.interface_state(name, up)
        if seen != before and not known:
            users = ", ".join(sorted(self._tracking.instances_tracking("interface", name)))
            if initial and up:
                log.debug("tracked interface %s is up (tracked by %s)", name, users)
            elif up:
                log.info("tracked interface %s is up (tracked by %s)", name, users)
            elif state is None and before is not None:
                log.warning("tracked interface %s was deleted (tracked by %s)", name, users)
            else:
                log.warning("tracked interface %s is %s (tracked by %s)", name, seen, users)
        if not initial:
            self._report(changed)

    # Scripts.

    async def _script_loop(self, name: str) -> None:
        config = self._config.scripts[name]
        interval = config.interval_us / US_PER_SECOND
        runs = self._runs[name]
        async with trio.open_nursery() as nursery:
            due = trio.current_time()
            while True:
                if runs.running:
                    runs.skipped += 1
                    if not runs.skipping:  # once per stuck run, not at every interval
                        log.warning(
                            "script %s is still running after its %g s interval: skipping "
                            "runs until it ends",
                            name,
                            interval,
                        )
                    runs.skipping = True
                else:
                    runs.running = True
                    runs.skipping = False
                    nursery.start_soon(self._run_script, name)
                due += interval
                # Held up for more than an interval (a stalled host): one run now rather
                # than a burst of catch-up runs.
                due = max(due, trio.current_time())
                await trio.sleep_until(due)

    async def _run_script(self, name: str) -> None:
        config = self._config.scripts[name]
        runs = self._runs[name]
        started = trio.current_time()
        try:
            outcome = await self._runner.run(
                config.command,
                timeout=config.timeout_us / US_PER_SECOND,
                user=config.user,
                env=None,  # the daemon's environment, as keepalived (module docstring)
            )
        finally:
            runs.running = False
        runs.runs += 1
        runs.failures += not outcome.success
        runs.timeouts += outcome.timed_out
        runs.last_outcome = outcome
        runs.last_run = started
        self._script_result(name, outcome)

    def _script_result(self, name: str, outcome: ScriptOutcome) -> None:
        script = self._tracking.script(name)
        before = script.state
        changed = self._tracking.script_result(name, outcome.success)
        if script.state != before:
            users = ", ".join(sorted(self._tracking.instances_tracking("script", name)))
            if before == "unknown":
                how = "first run"
            elif outcome.success:
                how = f"{script.successes} successful run{'s' if script.successes > 1 else ''}"
            else:
                how = f"{script.failures} failed run{'s' if script.failures > 1 else ''}"
            level = logging.INFO if outcome.success else logging.WARNING
            log.log(
                level,
                "script %s is %s after %s (%s; tracked by %s)",
                name,
                script.state,
                how,
                outcome.describe() if not outcome.success else "exit status 0",
                users,
            )
        self._report(changed)

    def _report(self, instances: frozenset[str]) -> None:
        for instance in self._config.instances:
            if instance in instances:
                health = self._tracking.health(instance)
                if health.event() != self._reported[instance]:
                    # Logged when what the router sees changes, not for a mere relabelling
                    # (a script's first success: unknown -> good).
                    log.info("instance %s: %s", instance, health.explain())
                self._reported[instance] = health.event()
                self._on_health(instance, health)
