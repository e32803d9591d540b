"""The quiet wait (pyvrrp/runtime/quiet.py): while nothing else is to run, the schedule's
task waits for the routers' deadlines and advertisements in a blocking epoll of its own, and
hands back to trio as soon as anything else wants the loop. Real time (trio's own clock):
the bounds are loose, what is asserted is who woke and that nothing waited for the quiet
wait's own far deadline."""

from __future__ import annotations

import math
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing

from pyvrrp.runtime import quiet
from pyvrrp.runtime.quiet import TrioLoop
from pyvrrp.runtime.schedule import Schedule

# A deadline the quiet wait would sleep until: every test here must end long before it.
FAR = 30.0
# Bound on a hand-back on a busy 2-core machine (it takes about a millisecond).
PROMPT = 2.0


class Steps(trio.abc.Instrument):
    """Counts the task steps of the schedule's task."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if "Schedule.run" in task.name:
            self.steps += 1


@contextmanager
def counting() -> Iterator[Steps]:
    steps = Steps()
    trio.lowlevel.add_instrument(steps)
    try:
        yield steps
    finally:
        trio.lowlevel.remove_instrument(steps)


def periodic(schedule: Schedule, period: float, fired: list[float], owner: str = "r") -> None:
    """Arm ``owner`` every ``period`` from now, appending the times it fired to ``fired``."""

    def due() -> None:
        fired.append(trio.current_time())
        arm()

    def arm() -> None:
        base = fired[-1] if fired else trio.current_time()
        schedule.set(owner, round((base + period) * 1_000_000), due)

    arm()


async def test_the_running_trio_has_what_the_quiet_wait_needs() -> None:
    # A trio whose internals moved would turn the quiet wait off silently: fail here instead.
    loop = TrioLoop.current()
    assert loop is not None
    assert loop.fd >= 0
    assert loop.next_deadline() == math.inf or loop.next_deadline() > trio.current_time()


async def test_no_quiet_wait_under_a_test_clock(autojump_clock: trio.testing.MockClock) -> None:
    assert TrioLoop.current() is None


def test_no_quiet_wait_for_trio_as_a_guest_of_another_loop() -> None:
    # The host loop's thread runs trio's tasks: blocking it would block the host.
    host: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()

    async def main() -> TrioLoop | None:
        return TrioLoop.current()

    trio.lowlevel.start_guest_run(
        main,
        run_sync_soon_threadsafe=lambda fn: host.put(("call", fn)),
        done_callback=lambda outcome: host.put(("done", outcome)),
    )
    while True:
        kind, item = host.get(timeout=PROMPT)
        if kind == "done":
            assert item.unwrap() is None  # type: ignore[attr-defined]
            break
        item()  # type: ignore[operator]


@pytest.mark.parametrize("quiet", [True, False])
async def test_owners_fire_on_time_with_the_task_in_one_step_when_quiet(quiet: bool) -> None:
    schedule = Schedule(quiet=quiet)
    fired: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(schedule.run)
        with counting() as steps:
            start = trio.current_time()
            periodic(schedule, 0.01, fired)
            while len(fired) < 20:
                await trio.sleep(0.05)  # the test's own wake-ups: hands back to trio
        nursery.cancel_scope.cancel()
    times = [t - start for t in fired[:20]]
    # Never early; each on its own tick (late only by what a busy machine adds).
    for n, at in enumerate(times, 1):
        assert at >= n * 0.01 - 1e-6
    assert times[-1] < 20 * 0.01 + PROMPT
    if quiet:
        # Up to five fires per step of the schedule's task: the test's task wakes every
        # 50 ms and the quiet wait hands back for it; within, the fires cost no trio step.
        assert steps.steps <= len(fired) // 2
    else:
        assert steps.steps >= len(fired)


async def test_another_task_s_deadline_ends_the_quiet_wait() -> None:
    schedule = Schedule()
    async with trio.open_nursery() as nursery:
        await nursery.start(schedule.run)
        schedule.set("far", round((trio.current_time() + FAR) * 1_000_000), lambda: None)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        await trio.sleep(0.05)
        assert 0.05 <= trio.current_time() - start < PROMPT
        nursery.cancel_scope.cancel()


async def test_io_another_task_waits_for_ends_the_quiet_wait() -> None:
    schedule = Schedule()
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        async with trio.open_nursery() as nursery:
            await nursery.start(schedule.run)
            schedule.set("far", round((trio.current_time() + FAR) * 1_000_000), lambda: None)
            timer = threading.Timer(0.05, b.send, (b"x",))
            timer.start()
            with trio.fail_after(PROMPT):  # broken, it would wait until FAR
                await trio.lowlevel.wait_readable(a)
            assert a.recv(1) == b"x"
            timer.join()
            nursery.cancel_scope.cancel()


async def test_a_thread_s_call_into_trio_ends_the_quiet_wait() -> None:
    schedule = Schedule()
    ran = trio.Event()
    token = trio.lowlevel.current_trio_token()
    async with trio.open_nursery() as nursery:
        await nursery.start(schedule.run)
        schedule.set("far", round((trio.current_time() + FAR) * 1_000_000), lambda: None)
        timer = threading.Timer(0.05, token.run_sync_soon, (ran.set,))
        timer.start()
        with trio.fail_after(PROMPT):
            await ran.wait()
        timer.join()
        nursery.cancel_scope.cancel()


async def test_another_task_waiting_for_idle_is_not_kept_waiting() -> None:
    schedule = Schedule()
    async with trio.open_nursery() as nursery:
        await nursery.start(schedule.run)
        schedule.set("far", round((trio.current_time() + FAR) * 1_000_000), lambda: None)
        for cushion in (0.0, 0.05):
            with trio.fail_after(PROMPT):  # broken, it would never return
                await trio.testing.wait_all_tasks_blocked(cushion)
        nursery.cancel_scope.cancel()


async def test_an_earlier_deadline_set_after_a_hand_back_is_kept() -> None:
    schedule = Schedule()
    fired = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(schedule.run)
        schedule.set("r", round((trio.current_time() + FAR) * 1_000_000), lambda: None)
        await trio.sleep(0.02)  # the schedule's task waits quietly meanwhile
        start = trio.current_time()
        schedule.set("r", round((start + 0.03) * 1_000_000), fired.set)
        with trio.fail_after(PROMPT):
            await fired.wait()
        assert trio.current_time() - start >= 0.03 - 1e-6
        nursery.cancel_scope.cancel()


async def test_a_source_is_read_inside_the_quiet_wait() -> None:
    schedule = Schedule()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.setblocking(False)
        read: list[bytes] = []
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def source() -> bool:
            while True:
                try:
                    read.append(a.recv(100))
                except BlockingIOError:
                    break
            if len(read) == 5:
                token.run_sync_soon(done.set)  # a hand-back, from inside
            return True

        schedule.sources = lambda: {a.fileno(): source}
        async with trio.open_nursery() as nursery:
            await nursery.start(schedule.run)
            schedule.set("far", round((trio.current_time() + FAR) * 1_000_000), lambda: None)
            await trio.testing.wait_all_tasks_blocked()
            with counting() as steps:
                sender = threading.Thread(
                    target=lambda: [
                        (b.send(bytes([n])), threading.Event().wait(0.02)) for n in range(5)
                    ]
                )
                sender.start()
                with trio.fail_after(PROMPT):
                    await done.wait()
                sender.join()
            nursery.cancel_scope.cancel()
        assert read == [bytes([n]) for n in range(5)]
        # Five reads without a step of the schedule's task (its return to trio at the end
        # is at most one).
        assert steps.steps <= 1


@pytest.mark.parametrize("full", [True, False])
async def test_a_source_that_filled_a_batch_ends_the_wait(full: bool) -> None:
    loop = TrioLoop.current()
    assert loop is not None
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        calls = 0

        def source() -> bool:
            nonlocal calls
            calls += 1
            a.recv(100)
            return not full  # full: "more may be waiting", trio's reader takes over

        b.send(b"1")
        start = trio.current_time()
        with trio.move_on_after(0.3):  # a deadline of trio's: the wait ends there at last
            quiet.wait(loop, lambda: start + FAR, lambda: None, {a.fileno(): source})
        elapsed = trio.current_time() - start
        await trio.lowlevel.checkpoint()
    assert calls == 1
    if full:
        assert elapsed < 0.3
    else:
        assert 0.3 <= elapsed < PROMPT
