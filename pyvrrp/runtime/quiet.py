"""The quiet wait: when trio has nothing else to do, the schedule's task waits for the
routers' next deadline and their advertisements itself, in one blocking ``epoll``, instead
of through trio's run loop.

Why: a node whose routers are in a steady state wakes once per advertisement interval (a
master to send, a backup to hear its master), and on this project's machines a wake-up
through trio (``trio.sleep_until``, a task woken by ``wait_readable``) costs about 1.6 times
what a plain ``epoll`` loop pays for it: trio's run loop, a cancel scope and a ``Cancelled``
exception per timed wake-up, a task switch (docs/benchmarks.md, "Cost at scale"). While the
routers are steady nothing else in the process is waiting to run, so the schedule's task can
block the thread itself for as long as trio would have slept, reading the advertisement
sockets and calling the routers due as they come, and hand back to trio the moment trio has
anything to do:

- it enters only when trio's run queue is empty and no other task waits for the loop to be
  idle (it is woken by trio's own "all tasks blocked" wake-up, with a cushion of its own so
  that no other idle waiter is woken in the same batch);
- its ``epoll`` holds trio's own epoll file descriptor: any I/O any other task waits for (a
  control command, a signal, netlink, a track script's pipe, a thread's ``run_sync_soon``)
  makes it return, and so does the first of the other tasks' deadlines;
- what it reads and hands out may make a task runnable (an advertisement that is not
  routine goes to its router's driver task): it returns then too.

The routers' work is the same code either way (the schedule's ``fire_due``, the
demultiplexer's hand-out); only the waiting differs. It needs four things of trio that are
not public API: the run loop's epoll descriptor, run queue, idle waiters and next deadline.
:meth:`TrioLoop.current` checks for them and returns None when the running trio does not
have them (another I/O backend, a test's ``MockClock``, trio in guest mode, a trio whose
internals moved): the schedule then sleeps through trio exactly as before.
"""

from __future__ import annotations

import math
import select
from collections.abc import Callable, Mapping
from typing import Any

import trio

# The quiet wait's cushion in trio's "wait until every task is blocked" queue: trio wakes
# the waiters of the smallest cushion together, so one of its own (not a test's 0) keeps
# the schedule's task alone in its batch. trio's epoll rounds it up to 1 ms: entering the
# quiet wait after trio ran something costs one more wake-up, 1 ms later.
CUSHION = 1e-9

# A source: reads what its socket holds and hands it out; False when it filled a batch (more
# may be waiting: trio's receive loop takes over, letting the other tasks run in between).
Source = Callable[[], bool]


class TrioLoop:
    """What the quiet wait needs of the running trio loop."""

    def __init__(self, runner: Any, wait_all_tasks_blocked: Any) -> None:
        self._wait_all_tasks_blocked = wait_all_tasks_blocked
        self._runq = runner.runq
        self._waiting_for_idle = runner.waiting_for_idle
        self._deadlines = runner.deadlines
        self.fd: int = runner.io_manager._epoll.fileno()
        self._trio_ready = select.poll()
        self._trio_ready.register(self.fd, select.POLLIN)

    @classmethod
    def current(cls) -> TrioLoop | None:
        """The running loop, or None when the quiet wait cannot run in it."""
        try:
            from trio._core import _run

            runner = _run.GLOBAL_RUN_CONTEXT.runner
            if type(runner.clock) is not _run.SystemClock:
                return None  # a test's clock: its time is not the epoll's
            if runner.is_guest:
                return None  # trio as a guest of another loop: that loop's thread
            loop = cls(runner, _run.wait_all_tasks_blocked)
            loop.next_deadline()
            len(loop._runq)
            len(loop._waiting_for_idle)
        except (ImportError, AttributeError, TypeError):
            return None
        return loop

    async def wait_for_idle(self) -> None:
        """Wait until every other task is blocked, alone in the batch trio then wakes."""
        await self._wait_all_tasks_blocked(CUSHION)

    def busy(self) -> bool:
        """Some task is runnable, or waits for trio's loop to go idle."""
        return bool(self._runq) or bool(self._waiting_for_idle)

    def others_wait_for_idle(self) -> bool:
        """Another task waits for trio's loop to go idle (a larger cushion than ours)."""
        return bool(self._waiting_for_idle)

    def next_deadline(self) -> float:
        """The earliest deadline of any cancel scope (inf: none)."""
        deadline: float = self._deadlines.next_deadline()
        return deadline

    def has_events(self) -> bool:
        """trio's epoll has something to report now."""
        return bool(self._trio_ready.poll(0))


def wait(
    loop: TrioLoop,
    next_wake: Callable[[], float],
    fire_due: Callable[[], None],
    sources: Mapping[int, Source],
) -> None:
    """Block the thread: call ``fire_due`` at each ``next_wake()`` (trio time) and each
    source when its socket is readable, until trio has something to do."""
    poller = select.epoll(len(sources) + 1)
    try:
        poller.register(loop.fd, select.EPOLLIN)
        for fd in sources:
            poller.register(fd, select.EPOLLIN)
        while not loop.busy():
            other = loop.next_deadline()
            wake = min(next_wake(), other)
            now = trio.current_time()
            if wake > now:
                ready = poller.poll(wake - now if wake < math.inf else -1)
                trio_ready = False
                for fd, _ in ready:
                    if fd == loop.fd:
                        trio_ready = True
                    elif not sources[fd]():
                        return
                # trio's epoll also watches the advertisement sockets (their receive loops
                # wait on them): readable because of them only, it is quiet again now that
                # they are read.
                if trio_ready and (len(ready) == 1 or loop.has_events()):
                    return
                now = trio.current_time()
            if other <= now:
                return
            fire_due()
    finally:
        poller.close()
