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

Processes are started by a :class:`~pyvrrp.runtime.process.ProcessRunner`
(:mod:`pyvrrp.runtime.process`): the real one in the daemon,
``pyvrrp.testing.fakeprocess.FakeProcessRunner`` in virtual-time tests. Health checks inherit
the daemon's environment, as keepalived's ``vrrp_script`` does (a check may need what the
service unit sets, a proxy for instance). A run that times out counts as a failure.

Interfaces
----------
The tracked interfaces' states are read through :class:`~pyvrrp.runtime.netlink.Netlink`
after subscribing to its events (in that order, so no change falls between the two); then
every :class:`~pyvrrp.runtime.netlink.LinkEvent` of a tracked name updates it. Nothing polls.
A subscriber that falls behind gets its channel closed by the netlink object: we subscribe
again and re-read every tracked interface.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType

import attrs
import trio

from pyvrrp.core.config import NodeConfig
from pyvrrp.core.events import HealthChanged
from pyvrrp.core.timers import US_PER_SECOND
from pyvrrp.core.tracking import Health, ScriptStatus, Tracking
from pyvrrp.runtime.netlink import LinkEvent, LinkState, Netlink, NetlinkError, NetlinkEvent

# Re-exported: the process runner lived here before it was shared with notify.
from pyvrrp.runtime.process import (
    KILL_DELAY,
    ProcessRunner,
    RealProcessRunner,
    ScriptOutcome,
    shell_argv,
)

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
        user, group = self._config.global_.run_as(config.user, config.group)
        try:
            outcome = await self._runner.run(
                config.command,
                timeout=config.timeout_us / US_PER_SECOND,
                user=user,
                group=group,
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
