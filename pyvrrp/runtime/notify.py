"""Notifications: the ``notify_*`` scripts of an instance, run in order, never blocking a router.

The state machine's driver calls :meth:`Notifier.notify` (a plain function: it only enqueues)
when an instance changes state. Each instance has its own queue and runs one script at a time,
in the order of its transitions: keepalived forks notify scripts without waiting, so two quick
transitions can run their scripts concurrently and finish in either order, and users see
"BACKUP" handled after "MASTER" although it happened before. Instances are independent: a slow
script of one instance never delays another's.

For a transition to MASTER, BACKUP, FAULT or STOP (the instance stopped at shutdown) the
matching ``notify_<state>`` runs first, then the generic ``notify`` with keepalived's
arguments appended (``INSTANCE <name> <state> <priority>``). Every script gets the
``PYVRRP_*`` environment variables and a ``PATH`` (nothing else of the daemon's environment)
and a timeout. Processes are run by the health checks'
:class:`~pyvrrp.runtime.process.ProcessRunner` (its own process group, SIGTERM then SIGKILL
to the group on timeout, output to /dev/null), which is given that environment.
docs/notifications.md is the user's description.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

import attrs
import trio

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.config import GlobalConfig, InstanceConfig, NotifyCommand
from pyvrrp.runtime.logs import RateLimiter
from pyvrrp.runtime.process import KILL_DELAY, ProcessRunner, ScriptOutcome

log = logging.getLogger("pyvrrp")

# Long enough for what notify scripts really do (restart a service, move a cloud IP through
# an API, update DNS: several seconds on a bad day), short enough that a hung script is killed
# and reported, and that a shutdown's STOP notifications (notify_stop then notify: 2 x (30 s +
# the 2 s kill delay) = 64 s) fit in systemd's default TimeoutStopSec of 90 s.
DEFAULT_TIMEOUT: Final = 30.0
# Transitions waiting per instance. A flapping instance whose script hangs would otherwise
# queue without bound; the oldest are dropped, so the last transition always runs.
MAX_PENDING: Final = 64
# The environment of every script: nothing of the daemon's leaks in (secrets, systemd's
# variables), and programs are found in the usual places whatever the daemon's PATH.
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the shell exits with when it cannot run the program of a command string.
_EXEC_FAILURES: Final = {126: "the program is not executable", 127: "the program was not found"}

# The word keepalived passes for each state, as the third argument of ``notify``.
_WORDS: Final = {State.MASTER: "MASTER", State.BACKUP: "BACKUP", State.FAULT: "FAULT"}
STOP: Final = "STOP"


@attrs.frozen
class NotifyStatistics:
    """Counters of one instance's notifications; scripts, not transitions, are counted.

    ``failed`` counts every run that did not exit with status 0, timeouts and scripts that
    could not start included; ``timed_out`` is the part of them killed at their timeout.
    ``dropped`` scripts were never run because the queue overflowed. ``pending`` is a gauge:
    scripts waiting now (the running one not included).
    """

    queued: int
    run: int
    failed: int
    timed_out: int
    dropped: int
    pending: int
    running: bool
    last_error: str | None


class TransitionLike(Protocol):
    """What :meth:`Notifier.notify_transition` reads (``pyvrrp.runtime.node.Transition``)."""

    @property
    def instance(self) -> str: ...
    @property
    def old(self) -> State: ...
    @property
    def new(self) -> State: ...
    @property
    def cause(self) -> Cause: ...
    @property
    def reason(self) -> str: ...
    @property
    def priority(self) -> int: ...


@attrs.frozen
class _Script:
    key: str  # the configuration key: notify_master, ..., notify
    argv: tuple[str, ...]
    display: str  # the command as configured, for the log
    shell: bool  # a string, run by /bin/sh -c


@attrs.frozen
class _Job:
    word: str  # MASTER, BACKUP, FAULT or STOP
    scripts: tuple[_Script, ...]
    env: Mapping[str, str]


class _Queue:
    def __init__(self, config: InstanceConfig) -> None:
        self.config = config
        # At most MAX_PENDING: a list (an empty deque takes a 64-slot block, 760 bytes, per
        # instance: most never queue anything).
        self.jobs: list[_Job] = []
        self.current: _Job | None = None
        self.working = False  # a task runs its jobs (only while there are some)
        self.queued = 0
        self.run = 0
        self.failed = 0
        self.timed_out = 0
        self.dropped = 0
        self.pending = 0
        self.last_error: str | None = None
        self.removed = False  # its instance left the configuration (a reload)

    def busy(self) -> bool:
        return self.current is not None or bool(self.jobs)


def _shell_append_problem(command: str) -> str | None:
    """Why arguments appended to this shell string may not reach its last command, if so."""
    stripped = command.rstrip()
    if stripped.endswith((";", "&", "|")):
        return f"it ends with {stripped[-1]!r}"
    if re.search(r"(?:^|\s)#", command):
        return "it contains a comment, which would swallow them"
    return None


def _addresses(config: InstanceConfig, excluded: bool) -> str:
    addresses = config.excluded_addresses if excluded else config.addresses
    return " ".join(str(a.address) for a in addresses)


class Notifier:
    """Runs the notification scripts of a node's instances: in order per instance, in parallel
    across instances, each with a timeout.

    ``instances`` is the node's ``NodeConfig.instances`` (or its values); ``runner`` runs
    processes (``process.RealProcessRunner`` in the daemon, ``testing.fakeprocess``'s
    ``FakeProcessRunner`` in tests); ``timeout`` bounds each script. ``defaults`` is the
    node's ``[global]``: its ``script_user`` and ``script_group`` are the user and group of
    instances without ``notify_user`` / ``notify_group``. Call :meth:`notify` (it never
    blocks) and run :meth:`run` in a nursery.
    """

    def __init__(
        self,
        instances: Mapping[str, InstanceConfig] | Iterable[InstanceConfig],
        runner: ProcessRunner,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_pending: int = MAX_PENDING,
        defaults: GlobalConfig | None = None,
    ) -> None:
        if not timeout > 0 or math.isinf(timeout):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending!r}")
        configs = instances.values() if isinstance(instances, Mapping) else instances
        self.runner = runner
        self.timeout = timeout
        self.max_pending = max_pending
        self.defaults = defaults if defaults is not None else GlobalConfig()
        self._queues = {config.name: _Queue(config) for config in configs}
        self._idle = trio.lowlevel.ParkingLot()
        self._running = False
        self._nursery: trio.Nursery | None = None
        self._logs = RateLimiter()
        for config in self._queues.values():
            self._check_commands(config.config)

    def reconfigure(
        self,
        instances: Mapping[str, InstanceConfig] | Iterable[InstanceConfig],
        defaults: GlobalConfig | None = None,
    ) -> None:
        """Apply a reload without losing the order: each queue carries on with its waiting
        scripts and counters, under the instance's new configuration for what comes next
        (and the new ``defaults``, when given).

        A new instance gets a queue. A removed instance keeps its queue, so that its STOP
        notification still runs in order, but it no longer shows in :meth:`statistics`.
        """
        configs = list(instances.values() if isinstance(instances, Mapping) else instances)
        names = {config.name for config in configs}
        if defaults is not None:
            self.defaults = defaults
        for config in configs:
            queue = self._queues.get(config.name)
            if queue is None:
                queue = self._queues[config.name] = _Queue(config)
            queue.config = config
            queue.removed = False
            self._check_commands(config)
        for name, queue in self._queues.items():
            queue.removed = name not in names

    @staticmethod
    def _check_commands(config: InstanceConfig) -> None:
        if isinstance(config.notify, str):
            problem = _shell_append_problem(config.notify)
            if problem is not None:
                log.warning(
                    "%s: notify %r: the arguments INSTANCE %s <state> <priority> are appended "
                    "to this shell command, but %s; give an argv array, or end the string "
                    "with the command that should receive them",
                    config.name,
                    config.notify,
                    config.name,
                    problem,
                )

    # ------------------------------------------------------------------ enqueueing

    def notify(
        self,
        instance: str,
        state: State,
        priority: int,
        *,
        old_state: State,
        cause: Cause,
        reason: str = "",
    ) -> None:
        """Queue the notifications of a transition of ``instance`` to ``state``; never blocks.

        ``state`` INITIALIZE with cause SHUTDOWN is a STOP; any other transition to
        INITIALIZE notifies nothing. ``priority`` is the effective priority at the
        transition. Raises KeyError for an instance the notifier does not know: one a reload
        is adding or removing, whose transitions the node does not notify.
        """
        queue = self._queues[instance]
        if state is State.INITIALIZE:
            if cause is not Cause.SHUTDOWN:
                return
            word = STOP
        else:
            word = _WORDS[state]
        config = queue.config
        scripts: list[_Script] = []
        specific_key = f"notify_{word.lower()}"
        specific: NotifyCommand = getattr(config, specific_key)
        if specific is not None:
            scripts.append(_script(specific_key, specific, ()))
        if config.notify is not None:
            words = ("INSTANCE", instance, word, str(priority))
            scripts.append(_script("notify", config.notify, words))
        if not scripts:
            return
        env = {
            "PATH": DEFAULT_PATH,
            "PYVRRP_INSTANCE": instance,
            "PYVRRP_STATE": word,
            "PYVRRP_OLD_STATE": old_state.value,
            "PYVRRP_PRIORITY": str(priority),
            "PYVRRP_REASON": reason.replace("\0", ""),
            "PYVRRP_CAUSE": cause.value,
            "PYVRRP_VRID": str(config.vrid),
            "PYVRRP_INTERFACE": config.interface,
            "PYVRRP_ADDRESSES": _addresses(config, excluded=False),
            "PYVRRP_EXCLUDED_ADDRESSES": _addresses(config, excluded=True),
        }
        if len(queue.jobs) >= self.max_pending:
            dropped = queue.jobs.pop(0)
            queue.dropped += len(dropped.scripts)
            queue.pending -= len(dropped.scripts)
            self._logs.log(
                log,
                logging.WARNING,
                ("notify-overflow", instance),
                "%s: %d transitions are waiting for their notifications; dropped the oldest "
                "(%s) (is a notify script hanging?)",
                instance,
                self.max_pending,
                dropped.word,
            )
        queue.jobs.append(_Job(word, tuple(scripts), env))
        queue.queued += len(scripts)
        queue.pending += len(scripts)
        self._start_work(queue)

    def notify_transition(self, transition: TransitionLike) -> None:
        """:meth:`notify` for a ``pyvrrp.runtime.node.Transition`` (or any such record)."""
        self.notify(
            transition.instance,
            transition.new,
            transition.priority,
            old_state=transition.old,
            cause=transition.cause,
            reason=transition.reason,
        )

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the queues until cancelled: one task per instance that has jobs, while it has
        some (a task per instance, waiting, would cost about 2 kB each at 255 instances).

        Cancelling it kills the scripts running at that moment (see :meth:`drain`).
        """
        if self._running:
            raise RuntimeError("this Notifier is already running")
        self._running = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for queue in self._queues.values():
                    self._start_work(queue)  # what was queued before it ran
                task_status.started()
                await trio.sleep_forever()  # the nursery for the queues' tasks, until cancelled
        finally:
            self._nursery = None
            self._running = False
            self._idle.unpark_all()

    def _start_work(self, queue: _Queue) -> None:
        if queue.jobs and not queue.working and self._nursery is not None:
            queue.working = True
            self._nursery.start_soon(self._work, queue)

    async def _work(self, queue: _Queue) -> None:
        """Run ``queue``'s jobs in order until it has none left (one task per queue at most:
        :attr:`_Queue.working`)."""
        try:
            while queue.jobs:
                job = queue.jobs.pop(0)
                queue.current = job
                try:
                    for script in job.scripts:
                        queue.pending -= 1
                        user, group = self.defaults.run_as(
                            queue.config.notify_user, queue.config.notify_group
                        )
                        outcome = await self.runner.run(
                            script.argv, timeout=self.timeout, user=user, group=group, env=job.env
                        )
                        self._record(queue, job, script, outcome)
                finally:
                    queue.current = None
                    if not self.busy():
                        self._idle.unpark_all()
        finally:
            queue.working = False

    def _record(self, queue: _Queue, job: _Job, script: _Script, outcome: ScriptOutcome) -> None:
        name = queue.config.name
        queue.run += 1
        if outcome.success:
            log.info(
                "%s: %s: %s %s finished (%.2f s)",
                name,
                job.word,
                script.key,
                script.display,
                outcome.duration,
            )
            return
        queue.failed += 1
        level = logging.WARNING
        if outcome.error is not None:
            status = outcome.error
            level = logging.ERROR  # a setup problem: it will fail every time until fixed
        elif outcome.timed_out:
            queue.timed_out += 1
            status = f"timed out after {self.timeout:g} s"
            if outcome.signal is not None or outcome.exit_status:
                status += f", then {attrs.evolve(outcome, timed_out=False).describe()}"
        else:
            status = outcome.describe()
            # An argv program that cannot start is an error outcome of the runner; only the
            # shell turns it into an exit status.
            hint = _EXEC_FAILURES.get(outcome.exit_status or 0) if script.shell else None
            if hint is not None:
                status += f" ({hint}?)"
        queue.last_error = f"{job.word}: {script.key} {script.display}: {status}"
        log.log(
            level, "%s: %s: %s %s failed: %s", name, job.word, script.key, script.display, status
        )

    # ------------------------------------------------------------------ stopping

    def busy(self) -> bool:
        """True while a script runs or waits to run."""
        return any(queue.busy() for queue in self._queues.values())

    def worst_case_drain(self) -> float:
        """An upper bound in seconds for :meth:`drain` to finish what is queued now.

        Every queue runs in parallel; each of its scripts takes at most its timeout plus the
        kill grace.
        """
        longest = max(
            (queue.pending + (queue.current is not None) for queue in self._queues.values()),
            default=0,
        )
        return longest * (self.timeout + KILL_DELAY)

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued notification has run, for at most ``timeout`` seconds.

        The daemon calls it after stopping the routers (which queued the STOP notifications)
        and before cancelling :meth:`run`. Returns True if everything ran; else logs what is
        left (cancelling :meth:`run` then kills the scripts still running).
        """
        if self.busy() and not self._running:
            log.warning("notifications are queued but the notifier is not running")
            return False
        with trio.move_on_after(timeout):
            while self.busy() and self._running:
                await self._idle.park()
        if not self.busy():
            return True
        left = {
            name: queue.pending + (queue.current is not None)
            for name, queue in self._queues.items()
            if queue.busy()
        }
        log.warning(
            "gave up waiting for notifications after %g s: %s",
            timeout,
            ", ".join(f"{name}: {count} script(s) not finished" for name, count in left.items()),
        )
        return False

    def statistics(self) -> dict[str, NotifyStatistics]:
        """Per instance counters, for ``pyvrrp status`` and metrics."""
        return {
            name: NotifyStatistics(
                queued=queue.queued,
                run=queue.run,
                failed=queue.failed,
                timed_out=queue.timed_out,
                dropped=queue.dropped,
                pending=queue.pending,
                running=queue.current is not None,
                last_error=queue.last_error,
            )
            for name, queue in self._queues.items()
            if not queue.removed
        }


def _script(key: str, command: tuple[str, ...] | str, words: tuple[str, ...]) -> _Script:
    """The argv of a notification command with ``words`` appended.

    A shell string gets the words as positional parameters of ``/bin/sh -c`` and ``"$@"``
    appended: they reach the command as arguments without ever being parsed by the shell,
    whatever characters they contain.
    """
    if isinstance(command, str):
        script = f'{command} "$@"' if words else command
        return _Script(key, ("/bin/sh", "-c", script, "sh", *words), command, shell=True)
    return _Script(key, (*command, *words), shlex.join(command), shell=False)


__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_TIMEOUT",
    "MAX_PENDING",
    "STOP",
    "NotifyStatistics",
    "Notifier",
    "TransitionLike",
]
