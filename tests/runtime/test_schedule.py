"""The shared schedule: one task wakes every router whose deadline has come, in time order."""

from __future__ import annotations

import functools
from collections.abc import Callable

import trio
import trio.testing

from pyvrrp.runtime.schedule import Schedule

from .cluster import TaskSteps


async def test_owners_are_woken_at_their_times_less_the_lead_in_time_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    schedule = Schedule(lead=0.001)
    woken: list[tuple[str, float]] = []

    def due(name: str) -> None:
        woken.append((name, trio.current_time()))

    async with trio.open_nursery() as nursery:
        await nursery.start(schedule.run)
        start = trio.current_time()
        schedule.set("b", round((start + 2) * 1_000_000), lambda: due("b"))
        schedule.set("a", round((start + 1) * 1_000_000), lambda: due("a"))
        schedule.set("c", None, lambda: due("c"))  # no deadline: never
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert [(name, round(at - start, 6)) for name, at in woken] == [("a", 0.999), ("b", 1.999)]
    assert schedule.armed() == 0


async def test_a_new_time_replaces_the_old_one_earlier_or_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    schedule = Schedule()
    woken: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(schedule.run)
        start = trio.current_time()

        def at(seconds: float) -> int:
            return round((start + seconds) * 1_000_000)

        def due(name: str) -> None:
            woken.append((name, round(trio.current_time() - start, 6)))

        schedule.set("a", at(5), lambda: due("a"))
        await trio.sleep(1)
        # Earlier than what the task sleeps until: it wakes for it.
        schedule.set("a", at(2), lambda: due("a"))
        schedule.set("b", at(3), lambda: due("b"))
        schedule.set("b", at(4), lambda: due("b"))  # later: the entry at 3 is skipped
        schedule.set("c", at(3.5), lambda: due("c"))
        schedule.cancel("c")
        await trio.sleep(10)
        nursery.cancel_scope.cancel()
    assert woken == [("a", 2.0), ("b", 4.0)]


async def test_owners_due_together_are_woken_in_one_wake_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    schedule = Schedule()
    woken: list[int] = []
    wake_ups = TaskSteps("Schedule.run")

    async with trio.open_nursery() as nursery:
        await nursery.start(schedule.run)
        start = trio.current_time()
        deadline = round((start + 1) * 1_000_000)
        for owner in range(200):
            schedule.set(owner, deadline, functools.partial(woken.append, owner))
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(wake_ups)
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert woken == list(range(200))
    assert wake_ups.steps == 2  # the wake-up at 1 s, and the cancellation at the end


async def test_an_owner_re_armed_or_cancelled_by_an_earlier_callback_is_not_called_now(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    schedule = Schedule()
    await nursery.start(schedule.run)
    calls: list[tuple[str, float]] = []

    def first() -> None:
        calls.append(("first", trio.current_time()))
        schedule.set("second", 3_000_000, lambda: calls.append(("second", trio.current_time())))
        schedule.cancel("third")

    schedule.set("first", 1_000_000, first)
    schedule.set("second", 1_000_000, lambda: calls.append(("second early", 0.0)))
    schedule.set("third", 1_000_000, lambda: calls.append(("third", 0.0)))
    await trio.sleep(5)
    assert calls == [("first", 1.0), ("second", 3.0)]
    assert schedule.armed() == 0


async def test_stale_times_never_wake_the_task_and_do_not_pile_up(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    schedule = Schedule()
    await nursery.start(schedule.run)
    woken: list[float] = []
    # A backup hearing its master: its time moves later 10,000 times before it comes.
    for i in range(10_000):
        schedule.set("backup", 1_000_000 + i, lambda: woken.append(trio.current_time()))
    assert len(schedule._heap) <= 4 * schedule.armed() + 1024
    await trio.sleep(2)
    assert woken == [1.009999]


async def test_a_due_group_member_wakes_the_others_of_its_period_early_with_its_time(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    schedule = Schedule()
    await nursery.start(schedule.run)
    calls: list[tuple[str, str, float, int | None]] = []
    period = 1_000_000  # µs

    def arm(name: str, deadline: int, group: int | None = period) -> None:
        def due() -> None:
            calls.append((name, "due", trio.current_time(), None))
            arm(name, deadline + (group or period), group)  # a master's next Adver_Timer

        def early(base: int) -> None:
            calls.append((name, "early", trio.current_time(), base))
            arm(name, base + (group or period), group)  # AdvertiseNow: from the base on

        if group is None:
            schedule.set(name, deadline, due)
        else:
            schedule.set(name, deadline, due, group, early)

    arm("a", 1_000_000)
    arm("b", 1_040_000)
    arm("c", 1_499_999)  # less than half the period after a's: brought forward
    arm("g", 1_500_000)  # half or more: keeps its own step
    arm("d", 1_020_000, group=400_000)  # another interval: its own group
    arm("e", 1_030_000, group=None)  # not a master: never early
    await trio.sleep(0.5)
    arm("f", 2_450_000)  # within half a period after a's next time
    await trio.sleep(1.55)
    assert calls[:5] == [
        ("a", "due", 1.0, None),
        ("b", "early", 1.0, 1_000_000),
        ("c", "early", 1.0, 1_000_000),
        ("d", "due", 1.02, None),
        ("e", "due", 1.03, None),
    ]
    # From then on a, b and c are due together: one wake-up, no early calls among them; f
    # is woken early at their next time and joins them; g keeps its step.
    assert [(n, kind, at) for n, kind, at, _ in calls[5:]] == [
        ("d", "due", 1.42),
        ("g", "due", 1.5),
        ("d", "due", 1.82),
        ("a", "due", 2.0),
        ("b", "due", 2.0),
        ("c", "due", 2.0),
        ("f", "early", 2.0),
        ("e", "due", 2.03),
    ]


async def test_leaving_a_group_or_cancelling_stops_early_wake_ups(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    schedule = Schedule()
    await nursery.start(schedule.run)
    calls: list[str] = []

    def early(name: str) -> Callable[[int], None]:
        return lambda base: calls.append(f"{name} early")

    schedule.set("a", 1_000_000, lambda: calls.append("a due"), 1_000_000, early("a"))
    schedule.set("b", 1_050_000, lambda: calls.append("b due"), 1_000_000, early("b"))
    schedule.set("c", 1_060_000, lambda: calls.append("c due"), 1_000_000, early("c"))
    schedule.set("b", 1_050_000, lambda: calls.append("b due"))  # a backup now
    schedule.cancel("c")
    await trio.sleep(3)
    assert calls == ["a due", "b due"]
    assert schedule.armed() == 0


async def test_a_receive_loop_can_fire_what_is_due_first_and_the_task_then_sleeps_on(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    # Woken together with the schedule's task (trio runs them in either order), a receive
    # loop sends the advertisements due now before it handles its batch.
    schedule = Schedule()
    await nursery.start(schedule.run)
    calls: list[tuple[str, float]] = []
    steps = TaskSteps("Schedule.run")

    schedule.set("a", 1_000_000, lambda: calls.append(("a", trio.current_time())))
    schedule.set("b", 3_000_000, lambda: calls.append(("b", trio.current_time())))
    schedule.fire_due()  # nothing due yet: nothing called
    assert calls == []
    await trio.testing.wait_all_tasks_blocked()
    trio.lowlevel.add_instrument(steps)
    autojump_clock.jump(1.0)
    schedule.fire_due()  # before the task's own wake-up
    assert calls == [("a", 1.0)]
    await trio.sleep(1.5)
    assert calls == [("a", 1.0)] and steps.steps == 0  # not twice, and no wake-up for nothing
    await trio.sleep(1)
    assert calls == [("a", 1.0), ("b", 3.0)]
