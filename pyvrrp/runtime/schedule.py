"""One timer for every router of a node: one task sleeping until the earliest
wake-up of them all.

Each router has one deadline at a time (``VirtualRouter.deadline()``). Giving each driver
task its own timer (a ``trio.move_on_at`` around its inbox) put K cancel scopes in trio's
deadline heap and had every driver enter, re-register and tear one down for every event it
handled: at K = 200 and a 0.1 s interval that machinery was a large share of the main
thread's time (docs/benchmarks.md, "Where the time went"). Here the drivers wait on their
inboxes only; :class:`Schedule` keeps their wake-up times, sleeps until the earliest one and,
at that one wake-up, calls back every owner that is due: an instance whose driver is idle
handles its deadline there and then (its fast path), a busy one posts a "deadline due"
marker into its own inbox. Events and deadlines of one router are therefore handled one at
a time, in order, never interleaved with each other (pyvrrp/runtime/instance.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import trio


class Schedule:
    """Wake-up times of many owners (the node's instances), one sleeping task for all.

    :meth:`set` (re)arms an owner's wake-up; :meth:`run` is the task that calls each owner's
    callback once its time has come. An owner has at most one wake-up: setting a new one
    replaces the old. The task sleeps until the earliest wake-up there is *now*: a backup's
    Master_Down_Timer moves later with every advertisement it hears, and a heap that kept the
    replaced times would wake the task for each of them (measured: 3.5 times the context
    switches of per-router timers at K = 200). With a few hundred owners at most, the minimum
    of a dict's values (C speed, microseconds) is cheaper than a heap kept in Python.
    """

    def __init__(self, lead: float = 0.0) -> None:
        """``lead`` (seconds): owners are woken that much before the time they ask for."""
        self.lead = lead
        self._at: dict[Hashable, float] = {}  # in the order owners were first armed
        self._due: dict[Hashable, Callable[[], None]] = {}
        self._sleep: trio.CancelScope | None = None

    def wake_time(self, deadline_us: int | None) -> float:
        """The trio time at which an owner due at ``deadline_us`` (µs) is woken."""
        return math.inf if deadline_us is None else deadline_us / 1_000_000 - self.lead

    def set(self, owner: Hashable, deadline_us: int | None, due: Callable[[], None]) -> None:
        """Call ``due()`` at :meth:`wake_time` of ``deadline_us`` (None: never)."""
        at = self.wake_time(deadline_us)
        old = self._at.get(owner, math.inf)
        if old == at:
            return
        if at == math.inf:
            self.cancel(owner)
            return
        self._at[owner] = at
        self._due[owner] = due
        sleep = self._sleep
        if sleep is not None:
            if at < sleep.deadline:
                sleep.deadline = at  # the sleeping task wakes earlier
            elif old == sleep.deadline:
                sleep.deadline = self._earliest()  # or later: no wake-up for nothing

    def cancel(self, owner: Hashable) -> None:
        """Forget ``owner``'s wake-up (it stopped)."""
        old = self._at.pop(owner, math.inf)
        self._due.pop(owner, None)
        if self._sleep is not None and old == self._sleep.deadline:
            self._sleep.deadline = self._earliest()

    def armed(self) -> int:
        """How many owners have a wake-up set."""
        return len(self._at)

    def _earliest(self) -> float:
        return min(self._at.values(), default=math.inf)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The one task: sleep until the earliest wake-up, call every owner that is due, in
        time order (ties: in the order they were first armed)."""
        task_status.started()
        while True:
            with trio.CancelScope(deadline=self._earliest()) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None
            now = trio.current_time()
            at = self._at
            due = sorted([owner for owner, time in at.items() if time <= now], key=at.__getitem__)
            for owner in due:
                del at[owner]
                self._due.pop(owner)()
