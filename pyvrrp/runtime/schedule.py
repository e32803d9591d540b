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

Masters advertise together: an owner armed with a ``group`` (a master whose next deadline is
its Adver_Timer; the group is its Advertisement_Interval in µs) is woken *early* with the
group's base time whenever another member of its group is due at that base and its own time
comes later by less than half the period (ALIGN_FRACTION): its advertisement goes out
now and its Adver_Timer runs in step with the others' from then on. Many masters of one
interval then cost one wake-up per interval instead of one each, on the senders and on the
receivers, whose advertisements arrive together (docs/design.md, "Masters advertise together").

While trio has nothing else to run, the task waits quietly: in an epoll of its own that holds
trio's and the advertisement sockets (:attr:`Schedule.sources`), without a trip through
trio's run loop per wake-up (pyvrrp/runtime/quiet.py).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Hashable, Mapping

import trio

from pyvrrp.runtime import quiet as quiet_

# A master is brought forward to its group's advertisement when its own comes less than this
# fraction of the interval later: at most half an interval early, once. Any two steps are
# less than half an interval apart one way round, so a node's masters of one interval end up
# in one step: the one due first within that half brings the other along.
ALIGN_FRACTION = 2


class Schedule:
    """Wake-up times of many owners (the node's instances), one sleeping task for all.

    :meth:`set` (re)arms an owner's wake-up; :meth:`run` is the task that calls each owner's
    callback once its time has come. An owner has at most one wake-up: setting a new one
    replaces the old. The task sleeps until the earliest wake-up there is *now*: a backup's
    Master_Down_Timer moves later with every advertisement it hears, and a heap that woke for
    the replaced times too would wake the task for each of them (measured: 3.5 times the
    context switches of per-router timers at K = 200). So the times live in a dict (the
    truth) and a heap (the order): a heap entry whose time is no longer its owner's is stale,
    skipped when it reaches the top, never slept for. Finding the earliest and the due owners
    is then O(log K) per change instead of a scan of every owner at each wake-up.
    """

    def __init__(self, lead: float = 0.0, *, quiet: bool = True) -> None:
        """``lead`` (seconds): owners are woken that much before the time they ask for.
        ``quiet``: wait without trio's run loop while nothing else is to run, where the
        running trio allows it (pyvrrp/runtime/quiet.py)."""
        self.lead = lead
        self.quiet = quiet
        # The sockets a quiet wait reads itself (the node: its demultiplexer's).
        self.sources: Callable[[], Mapping[int, quiet_.Source]] = dict
        self._at: dict[Hashable, int] = {}  # each owner's deadline (µs)
        self._due: dict[Hashable, Callable[[], None]] = {}
        # (deadline µs, the owner's first-armed rank: ties in that order, a unique number,
        # owner); woken at wake_time(deadline)
        self._heap: list[tuple[int, int, int, Hashable]] = []
        self._rank: dict[Hashable, int] = {}
        self._count = itertools.count()
        self._sleep: trio.CancelScope | None = None
        # Groups (see the module's docstring): period (µs) -> members (in joining order) and
        # each one's early callback (called with the base).
        self._groups: dict[int, dict[Hashable, Callable[[int], None]]] = {}
        self._group_of: dict[Hashable, int] = {}

    def wake_time(self, deadline_us: int | None) -> float:
        """The trio time at which an owner due at ``deadline_us`` (µs) is woken."""
        return math.inf if deadline_us is None else deadline_us / 1_000_000 - self.lead

    def set(
        self,
        owner: Hashable,
        deadline_us: int | None,
        due: Callable[[], None],
        group: int | None = None,
        early: Callable[[int], None] | None = None,
    ) -> None:
        """Call ``due()`` at :meth:`wake_time` of ``deadline_us`` (None: never).

        With a ``group`` (a period in µs) and ``early``: when another member of the group is
        due at ``base`` and ``deadline_us`` comes less than ``group // ALIGN_FRACTION`` after
        it, ``early(base)`` is called in that wake-up
        instead (the owner then arms its new time)."""
        if self._group_of.get(owner) != group:
            self._regroup(owner, group, early)
        elif group is not None and early is not None:
            self._groups[group][owner] = early  # the same group: the latest callback
        old = self._at.get(owner)
        if old == deadline_us:
            return
        if deadline_us is None:
            self.cancel(owner)
            return
        self._at[owner] = deadline_us
        self._due[owner] = due
        rank = self._rank.get(owner)
        if rank is None:
            rank = self._rank[owner] = next(self._count)
        heapq.heappush(self._heap, (deadline_us, rank, next(self._count), owner))
        if len(self._heap) > 4 * len(self._at) + 1024:
            self._compact()
        sleep = self._sleep
        if sleep is not None:
            at = self.wake_time(deadline_us)
            if at < sleep.deadline:
                sleep.deadline = at  # the sleeping task wakes earlier
            elif self.wake_time(old) == sleep.deadline:
                sleep.deadline = self._earliest()  # or later: no wake-up for nothing

    def _regroup(
        self, owner: Hashable, group: int | None, early: Callable[[int], None] | None
    ) -> None:
        old = self._group_of.pop(owner, None)
        if old is not None:
            members = self._groups[old]
            del members[owner]
            if not members:
                del self._groups[old]
        if group is not None and early is not None:
            self._group_of[owner] = group
            self._groups.setdefault(group, {})[owner] = early

    def cancel(self, owner: Hashable) -> None:
        """Forget ``owner``'s wake-up (it stopped)."""
        if owner in self._group_of:
            self._regroup(owner, None, None)
        old = self._at.pop(owner, None)
        self._due.pop(owner, None)
        self._rank.pop(owner, None)
        if self._sleep is not None and self.wake_time(old) == self._sleep.deadline:
            self._sleep.deadline = self._earliest()

    def armed(self) -> int:
        """How many owners have a wake-up set."""
        return len(self._at)

    def _earliest(self) -> float:
        """The trio time of the earliest wake-up there is now (inf: none)."""
        heap, at = self._heap, self._at
        while heap:
            deadline, _, _, owner = heap[0]
            if at.get(owner) == deadline:
                return self.wake_time(deadline)
            heapq.heappop(heap)  # stale: its owner has another time now, or none
        return math.inf

    def _compact(self) -> None:
        """Drop the stale entries (owners re-armed many times before their old times came)."""
        self._heap = [
            (deadline, self._rank[owner], next(self._count), owner)
            for owner, deadline in self._at.items()
        ]
        heapq.heapify(self._heap)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The one task: sleep until the earliest wake-up, call every owner that is due, in
        time order (ties: in the order they were first armed)."""
        task_status.started()
        loop = quiet_.TrioLoop.current() if self.quiet else None
        quietly = True
        while True:
            idle = False
            with trio.CancelScope(deadline=self._earliest()) as self._sleep:
                if loop is None or not quietly:
                    await trio.sleep_forever()
                else:  # wait through trio until nothing else is to run, then quietly
                    await loop.wait_for_idle()
                    idle = True
            self._sleep = None
            quietly = True
            if idle and loop is not None:
                if loop.others_wait_for_idle():
                    # Another task waits for trio to be idle longer (a larger cushion than
                    # ours): this once, sleep through trio, or the quiet wait would come
                    # back every millisecond and trio would never be idle that long.
                    quietly = False
                else:
                    quiet_.wait(loop, self._earliest, self.fire_due, self.sources())
            self.fire_due()

    def fire_due(self) -> None:
        """Call every owner that is due now, in time order (ties: in the order they were
        first armed). The task does it when it wakes; a receive loop does it before it hands
        out a batch, so that advertisements due now are not sent after the batch's work
        (trio runs the tasks woken together in either order)."""
        now = trio.current_time()
        heap = self._heap  # (compaction replaces the list)
        wake_time = self.wake_time
        if not heap or wake_time(heap[0][0]) > now:
            return
        at = self._at
        due: list[Hashable] = []
        bases: dict[int, int] = {}  # group -> the earliest due member's deadline (µs)
        group_of = self._group_of
        while heap and wake_time(heap[0][0]) <= now:
            deadline, _, _, owner = heapq.heappop(heap)
            if at.get(owner) == deadline:
                del at[owner]
                due.append(owner)
                group = group_of.get(owner)
                if group is not None and group not in bases:
                    bases[group] = deadline
        # Called after the due ones are known. One that an earlier callback re-armed (a
        # backup's poll hands a packet to another backup on the link) or cancelled is not
        # called now: its new time is in the heap.
        for owner in due:
            if owner in at:
                continue
            callback = self._due.pop(owner, None)
            if callback is not None:
                callback()
        for group, base in bases.items():
            self._pull(group, base)
        if self._sleep is not None:  # called from elsewhere: the task sleeps until what is left
            self._sleep.deadline = self._earliest()

    def _pull(self, group: int, base: int) -> None:
        """Wake early the members of ``group`` whose time comes less than half the period
        after ``base`` (the ones due at ``base`` have moved on by a period: not them
        again)."""
        members = self._groups.get(group)
        if not members:
            return
        at = self._at
        window = group // ALIGN_FRACTION
        for owner, early in list(members.items()):
            deadline = at.get(owner)
            if deadline is not None and base < deadline < base + window:
                early(base)
