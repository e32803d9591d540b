"""A fake :class:`~pyvrrp.runtime.trackers.ProcessRunner`, for tests in trio's virtual time.

Real processes make trio's ``autojump_clock`` useless (a task waiting on a process is idle to
it, so virtual time would jump past the process's end), and real seconds make timing tests
slow and flaky. :class:`FakeProcessRunner` runs nothing: each command's behaviour is scripted
as :class:`FakeRun` values, and a run is a ``trio.sleep`` of its duration in virtual time,
so a test can assert exactly when a script ran and when it turned bad::

    runner = FakeProcessRunner()
    runner.set(CHECK, FakeRun.ok(duration=0.1))          # from now on
    runner.queue(CHECK, FakeRun.fail(), FakeRun.hang())  # the next two runs, then as set
    ...
    assert [call.started for call in runner.calls_of(CHECK)] == [0.0, 2.0, 4.0]

Timeouts behave as :class:`~pyvrrp.runtime.process.RealProcessRunner`'s: a run longer than
its timeout gets SIGTERM at the timeout and ends ``term_delay`` later (killed by SIGTERM), or,
if it ignores SIGTERM, ``kill_delay`` (2 s) later, killed by SIGKILL. Every call is recorded
with its arguments (the environment it was given included), trio times and outcome in
:attr:`FakeProcessRunner.calls`.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from signal import SIGKILL, SIGSEGV, SIGTERM

import attrs
import trio

from pyvrrp.runtime.process import KILL_DELAY, ScriptOutcome

__all__ = ["Command", "FakeCall", "FakeProcessRunner", "FakeRun"]

Command = tuple[str, ...] | str


@attrs.frozen
class FakeRun:
    """How one fake run behaves.

    It lasts ``duration`` virtual seconds (forever with ``hang``), then exits with
    ``exit_status``, or dies of ``signal`` when that is set. ``error`` means it cannot start
    (the message of the outcome). On timeout it ends ``term_delay`` seconds after SIGTERM,
    or, with ``ignore_term``, of SIGKILL ``kill_delay`` seconds after it.
    """

    exit_status: int = 0
    duration: float = 0.0
    hang: bool = False
    signal: int | None = None
    error: str | None = None
    term_delay: float = 0.0
    ignore_term: bool = False

    @classmethod
    def ok(cls, duration: float = 0.0) -> FakeRun:
        """Exit 0 after ``duration``."""
        return cls(duration=duration)

    @classmethod
    def fail(cls, exit_status: int = 1, duration: float = 0.0) -> FakeRun:
        """Exit with ``exit_status`` (not 0) after ``duration``."""
        return cls(exit_status=exit_status, duration=duration)

    @classmethod
    def hangs(cls, *, term_delay: float = 0.0, ignore_term: bool = False) -> FakeRun:
        """Never exit by itself: only the timeout ends it."""
        return cls(hang=True, term_delay=term_delay, ignore_term=ignore_term)

    @classmethod
    def killed(cls, signum: int = SIGSEGV, duration: float = 0.0) -> FakeRun:
        """Die of ``signum`` after ``duration``."""
        return cls(signal=signum, duration=duration)

    @classmethod
    def cannot_start(cls, error: str = "cannot run the program: not found") -> FakeRun:
        """Fail to start, as a missing or non-executable program does."""
        return cls(error=error)


@attrs.define
class FakeCall:
    """One call of :meth:`FakeProcessRunner.run`: its arguments, trio times and outcome.

    ``env`` is a copy of the environment the caller passed (None: it asked to inherit the
    daemon's); ``user`` and ``group`` are what it asked to run as. ``ended`` and ``outcome``
    are None while it runs; ``cancelled`` is True if the caller was cancelled (the daemon
    stopping) before it ended.
    """

    command: Command
    timeout: float
    user: str | None
    env: Mapping[str, str] | None
    started: float
    ended: float | None = None
    outcome: ScriptOutcome | None = None
    cancelled: bool = False
    group: str | None = None


class FakeProcessRunner:
    """A :class:`~pyvrrp.runtime.trackers.ProcessRunner` whose runs are scripted (see the
    module docstring).

    ``default`` is how a command without :meth:`set` or :meth:`queue` behaves. ``users``, when
    given, are the users that exist: any other ``user`` fails to start, as with the real
    runner.
    """

    def __init__(
        self,
        default: FakeRun = FakeRun(),
        *,
        users: Iterable[str] | None = None,
        kill_delay: float = KILL_DELAY,
    ) -> None:
        self.default = default
        self.users = frozenset(users) if users is not None else None
        self.kill_delay = kill_delay
        self.calls: list[FakeCall] = []
        """Every call, in the order they started."""
        self._set: dict[Command, FakeRun] = {}
        self._queued: defaultdict[Command, deque[FakeRun]] = defaultdict(deque)
        self._running = 0

    def set(self, command: Command, run: FakeRun) -> None:
        """From now on (after any queued runs), ``command`` behaves as ``run``."""
        self._set[command] = run

    def queue(self, command: Command, *runs: FakeRun) -> None:
        """The next runs of ``command`` behave as ``runs``, in order; then as :meth:`set`."""
        self._queued[command].extend(runs)

    @property
    def running(self) -> int:
        """How many runs are going on now."""
        return self._running

    def calls_of(self, command: Command) -> list[FakeCall]:
        """The calls of one command, in order."""
        return [call for call in self.calls if call.command == command]

    async def run(
        self,
        command: Command,
        *,
        timeout: float,
        user: str | None,
        group: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ScriptOutcome:
        """See :meth:`pyvrrp.runtime.trackers.ProcessRunner.run`."""
        call = FakeCall(
            command=command,
            timeout=timeout,
            user=user,
            group=group,
            env=dict(env) if env is not None else None,
            started=trio.current_time(),
        )
        self.calls.append(call)
        queued = self._queued.get(command)
        behaviour = queued.popleft() if queued else self._set.get(command, self.default)
        self._running += 1
        try:
            outcome = await self._behave(behaviour, timeout, user, call.started)
        except trio.Cancelled:
            call.cancelled = True
            raise
        finally:
            self._running -= 1
            call.ended = trio.current_time()
        call.outcome = outcome
        return outcome

    async def _behave(
        self, run: FakeRun, timeout: float, user: str | None, started: float
    ) -> ScriptOutcome:
        await trio.lowlevel.checkpoint()  # as a real spawn: other tasks run first
        if user is not None and self.users is not None and user not in self.users:
            return ScriptOutcome(error=f"cannot run as user {user}: no such user")
        if run.error is not None:
            return ScriptOutcome(error=run.error)
        lasts = math.inf if run.hang else run.duration
        if lasts <= timeout:
            await trio.sleep(lasts)
            duration = trio.current_time() - started
            if run.signal is not None:
                return ScriptOutcome(signal=run.signal, duration=duration)
            return ScriptOutcome(exit_status=run.exit_status, duration=duration)
        await trio.sleep(timeout)
        if run.ignore_term or run.term_delay >= self.kill_delay:
            await trio.sleep(self.kill_delay)
            signum = SIGKILL
        else:
            await trio.sleep(run.term_delay)
            signum = SIGTERM
        return ScriptOutcome(signal=signum, timed_out=True, duration=trio.current_time() - started)
