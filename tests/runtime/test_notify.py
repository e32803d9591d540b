"""Notifications in virtual time with the fake process runner: order, independence, timeouts.

The autojump clock makes every duration exact: a fake script "runs" by sleeping its duration
in virtual time, and a hanging one until the timeout the notifier gave it (then it dies of
the SIGTERM, as ``FakeProcessRunner`` does it).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from ipaddress import ip_interface
from signal import SIGSEGV
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.config import AddressConfig, InstanceConfig
from pyvrrp.runtime.node import Transition
from pyvrrp.runtime.notify import DEFAULT_PATH, Notifier
from pyvrrp.runtime.trackers import KILL_DELAY
from pyvrrp.testing.fakeprocess import FakeCall, FakeProcessRunner, FakeRun

VIP = "1.2.3.58/29"
EXCLUDED = "2a03:4444:fff0:59:88::58/64"


def words(call: FakeCall) -> tuple[str, ...]:
    """The last four arguments: keepalived's INSTANCE <name> <state> <priority>."""
    return tuple(call.command[-4:])


def state_word(call: FakeCall) -> str:
    return call.command[-2]


def env(call: FakeCall) -> Mapping[str, str]:
    """The environment the notifier gave the runner for this call (never None: never the
    daemon's own)."""
    assert call.env is not None
    return call.env


def instance(name: str = "vip58", vrid: int = 58, **notify: Any) -> InstanceConfig:
    return InstanceConfig(
        name=name,
        interface="eth0.4000",
        vrid=vrid,
        addresses=(AddressConfig(ip_interface(VIP)),),
        excluded_addresses=(AddressConfig(ip_interface(EXCLUDED)),),
        **notify,
    )


@asynccontextmanager
async def running(notifier: Notifier) -> AsyncIterator[Notifier]:
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        yield notifier
        nursery.cancel_scope.cancel()


def to(
    notifier: Notifier,
    state: State,
    *,
    name: str = "vip58",
    old: State = State.BACKUP,
    priority: int = 100,
    cause: Cause = Cause.MASTER_DOWN,
    reason: str = "no advertisement heard",
) -> None:
    notifier.notify(name, state, priority, old_state=old, cause=cause, reason=reason)


def stop(notifier: Notifier, *, name: str = "vip58", old: State = State.MASTER) -> None:
    notifier.notify(
        name, State.INITIALIZE, 100, old_state=old, cause=Cause.SHUTDOWN, reason="shutdown"
    )


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == "pyvrrp"]


async def test_transitions_queued_at_once_run_strictly_in_order_each_after_the_previous(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(duration=5))
    notifier = Notifier([instance(notify=("/bin/notify",))], runner)
    async with running(notifier):
        t0 = trio.current_time()
        to(notifier, State.MASTER, old=State.BACKUP)
        to(notifier, State.BACKUP, old=State.MASTER)
        to(notifier, State.FAULT, old=State.BACKUP)
        assert await notifier.drain(60)
    assert [state_word(call) for call in runner.calls] == ["MASTER", "BACKUP", "FAULT"]
    assert [call.started - t0 for call in runner.calls] == [0, 5, 10]
    for previous, call in zip(runner.calls, runner.calls[1:], strict=False):
        assert previous.ended is not None and call.started >= previous.ended


async def test_a_reload_keeps_each_queue_in_order_and_uses_the_new_commands_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(duration=5))
    notifier = Notifier([instance(notify=("/bin/old",))], runner)
    async with running(notifier):
        t0 = trio.current_time()
        to(notifier, State.FAULT, old=State.MASTER)  # runs 0..5 with the old command
        to(notifier, State.BACKUP, old=State.FAULT)  # queued before the reload
        await trio.sleep(1)
        new = ("/bin/new",)
        notifier.reconfigure([instance(notify=new), instance("vip61", 61, notify=new)])
        to(notifier, State.MASTER)  # after the reload: waits for the queue
        to(notifier, State.MASTER, name="vip61")  # a new instance gets its own queue
        assert await notifier.drain(60)
    started = sorted(
        (call.started - t0, call.command[-3], state_word(call), call.command[0])
        for call in runner.calls
    )
    assert started == [
        (0, "vip58", "FAULT", "/bin/old"),
        (1, "vip61", "MASTER", "/bin/new"),  # its own queue, in parallel
        (5, "vip58", "BACKUP", "/bin/old"),  # queued with the old configuration
        (10, "vip58", "MASTER", "/bin/new"),  # after the reload: waited its turn
    ]
    assert set(notifier.statistics()) == {"vip58", "vip61"}
    assert notifier.statistics()["vip58"].run == 3  # counters carried over


async def test_only_an_instance_with_notifications_to_run_has_a_task_and_only_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A waiting task per instance costs memory at 255 instances, most of which never notify.
    runner = FakeProcessRunner(FakeRun.ok(duration=5))
    configs = [instance(f"vip{vrid}", vrid, notify=("/bin/notify",)) for vrid in range(1, 101)]
    notifier = Notifier(configs, runner)
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        (run_task,) = nursery.child_tasks
        (queues,) = run_task.child_nurseries
        assert queues.child_tasks == frozenset()
        to(notifier, State.MASTER, name="vip7")
        to(notifier, State.BACKUP, name="vip7", old=State.MASTER)
        await trio.testing.wait_all_tasks_blocked()
        assert len(queues.child_tasks) == 1
        await trio.sleep(11)  # both scripts have run, one after the other
        assert [(c.command[-3], state_word(c)) for c in runner.calls] == [
            ("vip7", "MASTER"),
            ("vip7", "BACKUP"),
        ]
        assert queues.child_tasks == frozenset()
        to(notifier, State.FAULT, name="vip7")  # and a new task for what comes later
        assert await notifier.drain(60)
        assert len(runner.calls) == 3
        nursery.cancel_scope.cancel()


async def test_a_removed_instance_still_gets_its_stop_in_order_but_leaves_statistics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(duration=5))
    notifier = Notifier([instance(notify=("/bin/notify",))], runner)
    async with running(notifier):
        to(notifier, State.MASTER)
        notifier.reconfigure([])
        stop(notifier)
        assert await notifier.drain(60)
        assert notifier.statistics() == {}
    assert [state_word(call) for call in runner.calls] == ["MASTER", "STOP"]


async def test_a_hanging_script_of_one_instance_does_not_delay_another_instance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner()
    hang = ("/bin/hang", "INSTANCE", "vip58")
    runner.set((*hang, "MASTER", "100"), FakeRun.hangs())
    runner.set(("/bin/quick", "INSTANCE", "vip59", "MASTER", "100"), FakeRun.ok(1))
    runner.set(("/bin/quick", "INSTANCE", "vip59", "BACKUP", "100"), FakeRun.ok(1))
    notifier = Notifier(
        {
            "vip58": instance("vip58", 58, notify=("/bin/hang",)),
            "vip59": instance("vip59", 59, notify=("/bin/quick",)),
        },
        runner,
    )
    async with running(notifier):
        t0 = trio.current_time()
        to(notifier, State.MASTER, name="vip58")
        to(notifier, State.BACKUP, name="vip58", old=State.MASTER)
        to(notifier, State.MASTER, name="vip59")
        to(notifier, State.BACKUP, name="vip59", old=State.MASTER)
        await trio.sleep(5)
        quick = [call for call in runner.calls if call.command[0] == "/bin/quick"]
        assert [(state_word(c), c.started - t0, c.ended) for c in quick] == [
            ("MASTER", 0, t0 + 1),
            ("BACKUP", 1, t0 + 2),
        ]
        slow = [call for call in runner.calls if call.command[0] == "/bin/hang"]
        assert [(state_word(c), c.ended) for c in slow] == [("MASTER", None)]
        assert notifier.statistics()["vip58"].running
        assert not notifier.statistics()["vip59"].running


async def test_a_hanging_script_is_given_up_at_its_timeout_and_the_next_one_starts_then(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeProcessRunner()
    runner.set(("/bin/hang",), FakeRun.hangs())
    notifier = Notifier(
        [instance(notify_master=("/bin/hang",), notify_backup=("/bin/ok",))], runner, timeout=3
    )
    async with running(notifier):
        t0 = trio.current_time()
        to(notifier, State.MASTER)
        to(notifier, State.BACKUP, old=State.MASTER)
        assert await notifier.drain(60)
    hang, ok = runner.calls
    assert hang.timeout == 3 and ok.timeout == 3
    assert ok.command == ("/bin/ok",)
    assert ok.started - t0 == 3
    assert messages(caplog, logging.WARNING) == [
        "vip58: MASTER: notify_master /bin/hang failed: timed out after 3 s, then killed by SIGTERM"
    ]
    stats = notifier.statistics()["vip58"]
    assert (stats.run, stats.failed, stats.timed_out) == (2, 1, 1)


async def test_a_script_ignoring_sigterm_delays_the_next_one_by_the_kill_delay_only(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeProcessRunner()
    runner.set(("/bin/hang",), FakeRun.hangs(ignore_term=True))
    notifier = Notifier(
        [instance(notify_master=("/bin/hang",), notify=("/bin/notify",))], runner, timeout=3
    )
    async with running(notifier):
        t0 = trio.current_time()
        to(notifier, State.MASTER)
        assert await notifier.drain(60)
    assert [call.started - t0 for call in runner.calls] == [0, 3 + KILL_DELAY]
    assert messages(caplog, logging.WARNING) == [
        "vip58: MASTER: notify_master /bin/hang failed: timed out after 3 s, then killed by SIGKILL"
    ]


async def test_a_failing_script_is_logged_with_its_status_and_the_next_one_runs(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeProcessRunner()
    runner.set(("/bin/fail", "two words"), FakeRun.fail(3))
    runner.set(("/bin/crash",), FakeRun.killed(SIGSEGV))
    runner.set(("/bin/sh", "-c", "/bin/missing", "sh"), FakeRun.fail(127))
    notifier = Notifier(
        [
            instance(
                notify_master=("/bin/fail", "two words"),
                notify_backup=("/bin/crash",),
                notify_fault=("/bin/ok",),
                notify_stop="/bin/missing",  # the shell says 127: not found
            )
        ],
        runner,
    )
    caplog.set_level(logging.INFO, logger="pyvrrp")
    async with running(notifier):
        to(notifier, State.MASTER)
        to(notifier, State.BACKUP, old=State.MASTER)
        to(notifier, State.FAULT, old=State.BACKUP)
        stop(notifier, old=State.FAULT)
        assert await notifier.drain(60)
    assert [call.command for call in runner.calls] == [
        ("/bin/fail", "two words"),
        ("/bin/crash",),
        ("/bin/ok",),
        ("/bin/sh", "-c", "/bin/missing", "sh"),
    ]
    assert messages(caplog, logging.WARNING) == [
        "vip58: MASTER: notify_master /bin/fail 'two words' failed: exit status 3",
        "vip58: BACKUP: notify_backup /bin/crash failed: killed by SIGSEGV",
        "vip58: STOP: notify_stop /bin/missing failed: exit status 127 "
        "(the program was not found?)",
    ]
    assert messages(caplog, logging.INFO) == [
        "vip58: FAULT: notify_fault /bin/ok finished (0.00 s)"
    ]
    stats = notifier.statistics()["vip58"]
    assert (stats.queued, stats.run, stats.failed, stats.timed_out) == (4, 4, 3, 0)
    assert stats.last_error == (
        "STOP: notify_stop /bin/missing: exit status 127 (the program was not found?)"
    )


async def test_a_missing_argv_program_is_an_error_and_its_own_exit_127_gets_no_hint(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The runner execs an argv program itself: a missing one never runs, and says so. Only a
    # shell reports "not found" as exit status 127; from any other program 127 means nothing.
    runner = FakeProcessRunner()
    runner.set(("/bin/gone",), FakeRun.cannot_start("cannot run /bin/gone: not found"))
    runner.set(("/bin/exits-127",), FakeRun.fail(127))
    notifier = Notifier(
        [instance(notify_master=("/bin/gone",), notify_backup=("/bin/exits-127",))], runner
    )
    async with running(notifier):
        to(notifier, State.MASTER)
        to(notifier, State.BACKUP, old=State.MASTER)
        assert await notifier.drain(60)
    assert messages(caplog, logging.ERROR) == [
        "vip58: MASTER: notify_master /bin/gone failed: cannot run /bin/gone: not found"
    ]
    assert messages(caplog, logging.WARNING) == [
        "vip58: BACKUP: notify_backup /bin/exits-127 failed: exit status 127"
    ]


async def test_a_script_that_cannot_start_as_notify_user_is_logged_as_an_error(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeProcessRunner(users={"root", "nobody"})
    notifier = Notifier(
        [
            instance("vip58", 58, notify=("/bin/notify",), notify_user="ghost"),
            instance("vip59", 59, notify=("/bin/notify",), notify_user="nobody"),
        ],
        runner,
    )
    async with running(notifier):
        to(notifier, State.MASTER, name="vip58")
        to(notifier, State.BACKUP, name="vip58", old=State.MASTER)
        to(notifier, State.MASTER, name="vip59")
        assert await notifier.drain(60)
    assert sorted((call.command[2], call.user) for call in runner.calls) == [
        ("vip58", "ghost"),
        ("vip58", "ghost"),
        ("vip59", "nobody"),
    ]
    error = "cannot run as user ghost: no such user"
    assert messages(caplog, logging.ERROR) == [
        f"vip58: MASTER: notify /bin/notify failed: {error}",
        f"vip58: BACKUP: notify /bin/notify failed: {error}",
    ]
    assert notifier.statistics()["vip58"].last_error == f"BACKUP: notify /bin/notify: {error}"
    assert notifier.statistics()["vip59"].failed == 0


@pytest.mark.parametrize(
    ("state", "priority", "word"),
    [(State.MASTER, 100, "MASTER"), (State.BACKUP, 75, "BACKUP"), (State.FAULT, 0, "FAULT")],
)
async def test_generic_notify_gets_keepalived_arguments_appended(
    autojump_clock: trio.testing.MockClock, state: State, priority: int, word: str
) -> None:
    runner = FakeProcessRunner()
    notifier = Notifier([instance(notify=("/usr/local/bin/notify", "--from", "pyvrrp"))], runner)
    async with running(notifier):
        to(notifier, state, priority=priority, old=State.INITIALIZE)
        assert await notifier.drain(60)
    [call] = runner.calls
    assert call.command == (
        "/usr/local/bin/notify",
        "--from",
        "pyvrrp",
        "INSTANCE",
        "vip58",
        word,
        str(priority),
    )


@pytest.mark.parametrize(
    ("state", "key", "word"),
    [
        (State.MASTER, "notify_master", "MASTER"),
        (State.BACKUP, "notify_backup", "BACKUP"),
        (State.FAULT, "notify_fault", "FAULT"),
        (State.INITIALIZE, "notify_stop", "STOP"),
    ],
)
async def test_the_state_script_runs_first_without_arguments_then_the_generic_notify(
    autojump_clock: trio.testing.MockClock, state: State, key: str, word: str
) -> None:
    runner = FakeProcessRunner()
    runner.set((f"/bin/{key}", "vip58"), FakeRun.ok(2))
    scripts: dict[str, Any] = {
        k: (f"/bin/{k}", "vip58")
        for k in ("notify_master", "notify_backup", "notify_fault", "notify_stop")
    }
    notifier = Notifier([instance(notify=("/bin/notify",), **scripts)], runner)
    async with running(notifier):
        t0 = trio.current_time()
        cause = Cause.SHUTDOWN if state is State.INITIALIZE else Cause.PREEMPT
        notifier.notify("vip58", state, 90, old_state=State.MASTER, cause=cause)
        assert await notifier.drain(60)
    specific, generic = runner.calls
    assert specific.command == (f"/bin/{key}", "vip58")
    assert generic.command == ("/bin/notify", "INSTANCE", "vip58", word, "90")
    assert generic.started - t0 == 2
    assert [env(call)["PYVRRP_STATE"] for call in runner.calls] == [word, word]


async def test_shell_strings_run_via_sh_with_the_arguments_as_positional_parameters(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner()
    notifier = Notifier(
        [instance(notify='logger -t "vrrp notify"', notify_master="systemctl start vip58")],
        runner,
    )
    async with running(notifier):
        to(notifier, State.MASTER, priority=100)
        assert await notifier.drain(60)
    assert [call.command for call in runner.calls] == [
        ("/bin/sh", "-c", "systemctl start vip58", "sh"),
        # The words are separate argv entries ($1..$4), never part of the script text.
        (
            "/bin/sh",
            "-c",
            'logger -t "vrrp notify" "$@"',
            "sh",
            "INSTANCE",
            "vip58",
            "MASTER",
            "100",
        ),
    ]


async def test_stop_at_shutdown_notifies_stop_and_drain_waits_for_the_scripts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(1))
    runner.set(("/bin/on-stop",), FakeRun.ok(4))
    notifier = Notifier(
        [
            instance("vip58", 58, notify_stop=("/bin/on-stop",), notify=("/bin/notify",)),
            instance("vip59", 59, notify=("/bin/notify",)),
        ],
        runner,
    )
    async with running(notifier):
        t0 = trio.current_time()
        stop(notifier, name="vip58", old=State.MASTER)
        stop(notifier, name="vip59", old=State.BACKUP)
        assert notifier.worst_case_drain() == 2 * (30 + KILL_DELAY)
        assert await notifier.drain(60)
        assert trio.current_time() - t0 == 5  # vip58: 4 s then 1 s; vip59 alongside
        assert not notifier.busy()
    calls = [(call.command, env(call)["PYVRRP_OLD_STATE"]) for call in runner.calls]
    assert sorted(calls) == [
        (("/bin/notify", "INSTANCE", "vip58", "STOP", "100"), "MASTER"),
        (("/bin/notify", "INSTANCE", "vip59", "STOP", "100"), "BACKUP"),
        (("/bin/on-stop",), "MASTER"),
    ]


async def test_a_transition_to_initialize_that_is_not_a_shutdown_notifies_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner()
    notifier = Notifier([instance(notify=("/bin/notify",), notify_stop=("/bin/stop",))], runner)
    async with running(notifier):
        notifier.notify("vip58", State.INITIALIZE, 100, old_state=State.BACKUP, cause=Cause.STARTUP)
        await trio.sleep(10)
    assert runner.calls == []
    assert notifier.statistics()["vip58"].queued == 0


async def test_a_state_without_scripts_queues_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner()
    notifier = Notifier([instance(notify_master=("/bin/on-master",))], runner)
    async with running(notifier):
        to(notifier, State.BACKUP)
        to(notifier, State.MASTER)
        to(notifier, State.FAULT, old=State.MASTER)
        stop(notifier, old=State.FAULT)
        assert await notifier.drain(60)
    assert [call.command for call in runner.calls] == [("/bin/on-master",)]
    assert notifier.statistics()["vip58"].queued == 1


async def test_drain_gives_up_after_its_timeout_and_says_what_is_left(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeProcessRunner(FakeRun.hangs())
    notifier = Notifier([instance(notify_stop=("/bin/hang",), notify=("/bin/notify",))], runner)
    async with running(notifier):
        t0 = trio.current_time()
        stop(notifier)
        assert not await notifier.drain(5)
        assert trio.current_time() - t0 == 5
    # Cancelling run() (the daemon exiting) cancels the running script.
    assert [call.cancelled for call in runner.calls] == [True]
    assert messages(caplog, logging.WARNING) == [
        "gave up waiting for notifications after 5 s: vip58: 2 script(s) not finished"
    ]


async def test_drain_returns_at_once_when_nothing_is_queued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = Notifier([instance(notify=("/bin/notify",))], FakeProcessRunner())
    async with running(notifier):
        t0 = trio.current_time()
        assert await notifier.drain(30)
        assert trio.current_time() == t0


async def test_drain_without_a_running_notifier_does_not_wait_in_vain(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier([instance(notify=("/bin/notify",))], FakeProcessRunner())
    stop(notifier)
    t0 = trio.current_time()
    assert not await notifier.drain(30)
    assert trio.current_time() == t0
    assert messages(caplog, logging.WARNING) == [
        "notifications are queued but the notifier is not running"
    ]


async def test_notify_never_awaits_even_while_a_script_hangs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert not inspect.iscoroutinefunction(Notifier.notify)
    assert not inspect.iscoroutinefunction(Notifier.notify_transition)
    runner = FakeProcessRunner(FakeRun.hangs())
    notifier = Notifier([instance(notify=("/bin/hang",))], runner)
    async with running(notifier):
        to(notifier, State.MASTER)
        await trio.testing.wait_all_tasks_blocked()
        assert len(runner.calls) == 1  # the first script hangs...
        with trio.testing.assert_no_checkpoints():  # ...and enqueueing still never yields
            for _ in range(10):
                to(notifier, State.BACKUP, old=State.MASTER)
                to(notifier, State.MASTER, old=State.BACKUP)
        assert notifier.statistics()["vip58"].pending == 20


async def test_notifications_queued_before_run_starts_run_once_it_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner()
    notifier = Notifier([instance(notify=("/bin/notify",))], runner)
    to(notifier, State.BACKUP, old=State.INITIALIZE, cause=Cause.STARTUP)
    to(notifier, State.MASTER)
    assert runner.calls == []
    async with running(notifier):
        assert await notifier.drain(60)
    assert [state_word(call) for call in runner.calls] == ["BACKUP", "MASTER"]


def expected_env(**changes: str) -> dict[str, str]:
    env = {
        "PATH": DEFAULT_PATH,
        "PYVRRP_INSTANCE": "vip58",
        "PYVRRP_STATE": "MASTER",
        "PYVRRP_OLD_STATE": "BACKUP",
        "PYVRRP_PRIORITY": "90",
        "PYVRRP_REASON": "no advertisement for 3.65 s",
        "PYVRRP_CAUSE": "master_down",
        "PYVRRP_VRID": "58",
        "PYVRRP_INTERFACE": "eth0.4000",
        "PYVRRP_ADDRESSES": "1.2.3.58/29 1.2.3.59/29",
        "PYVRRP_EXCLUDED_ADDRESSES": EXCLUDED,
    }
    env.update(changes)
    return env


async def test_every_script_gets_the_environment_of_its_transition(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner()
    config = attrs.evolve(
        instance(notify_master=("/bin/on-master",), notify=("/bin/notify",)),
        addresses=(AddressConfig(ip_interface(VIP)), AddressConfig(ip_interface("1.2.3.59/29"))),
    )
    notifier = Notifier([config], runner)
    async with running(notifier):
        notifier.notify(
            "vip58",
            State.MASTER,
            90,
            old_state=State.BACKUP,
            cause=Cause.MASTER_DOWN,
            reason="no advertisement for 3.65 s",
        )
        assert await notifier.drain(60)
    # The runner gets the environment itself, whole: the command is left as configured.
    assert [(call.command, call.env) for call in runner.calls] == [
        (("/bin/on-master",), expected_env()),
        (("/bin/notify", "INSTANCE", "vip58", "MASTER", "90"), expected_env()),
    ]


async def test_a_node_transition_record_is_accepted_as_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner()
    notifier = Notifier([instance(notify=("/bin/notify",))], runner)
    async with running(notifier):
        notifier.notify_transition(
            Transition("vip58", State.MASTER, State.INITIALIZE, Cause.SHUTDOWN, "shutdown", 100, 0)
        )
        assert await notifier.drain(60)
    [call] = runner.calls
    assert words(call) == ("INSTANCE", "vip58", "STOP", "100")
    assert env(call)["PYVRRP_OLD_STATE"] == "MASTER"


async def test_a_flapping_instance_behind_a_hanging_script_drops_its_oldest_transitions(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = FakeProcessRunner(FakeRun.hangs())
    notifier = Notifier([instance(notify=("/bin/notify",))], runner, timeout=10, max_pending=3)
    async with running(notifier):
        to(notifier, State.MASTER)
        await trio.testing.wait_all_tasks_blocked()  # MASTER's script runs (and hangs)
        for state in (State.BACKUP, State.FAULT, State.BACKUP, State.MASTER):
            to(notifier, state)
        assert await notifier.drain(60)
    # BACKUP, the oldest waiting, was dropped; the last transition always runs.
    assert [state_word(call) for call in runner.calls] == ["MASTER", "FAULT", "BACKUP", "MASTER"]
    stats = notifier.statistics()["vip58"]
    assert (stats.queued, stats.dropped, stats.run, stats.timed_out) == (5, 1, 4, 4)
    assert (
        "vip58: 3 transitions are waiting for their notifications; dropped the oldest (BACKUP) "
        "(is a notify script hanging?)" in messages(caplog, logging.WARNING)
    )


async def test_statistics_start_at_zero_for_every_instance() -> None:
    notifier = Notifier([instance("vip58", 58), instance("vip59", 59)], FakeProcessRunner())
    stats = notifier.statistics()
    assert list(stats) == ["vip58", "vip59"]
    assert attrs.asdict(stats["vip59"]) == {
        "queued": 0,
        "run": 0,
        "failed": 0,
        "timed_out": 0,
        "dropped": 0,
        "pending": 0,
        "running": False,
        "last_error": None,
    }


def test_an_unknown_instance_raises_key_error() -> None:
    notifier = Notifier([instance()], FakeProcessRunner())
    with pytest.raises(KeyError):
        to(notifier, State.MASTER, name="vip99")


@pytest.mark.parametrize("command", ["logger -t x # note", "logger -t x;", "logger -t x &"])
def test_a_shell_string_notify_that_would_lose_its_arguments_is_warned_about(
    command: str, caplog: pytest.LogCaptureFixture
) -> None:
    Notifier([instance(notify=command)], FakeProcessRunner())
    [warning] = messages(caplog, logging.WARNING)
    assert warning.startswith(f"vip58: notify {command!r}: the arguments INSTANCE vip58")


def test_a_plain_shell_string_notify_is_not_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Notifier([instance(notify="/usr/local/bin/notify --tag 'a#b'")], FakeProcessRunner())
    assert messages(caplog, logging.WARNING) == []


@pytest.mark.parametrize("timeout", [0, -1, math.inf, math.nan])
def test_a_timeout_must_be_a_positive_finite_number(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        Notifier([instance()], FakeProcessRunner(), timeout=timeout)


async def test_run_twice_at_once_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    notifier = Notifier([instance()], FakeProcessRunner())
    async with running(notifier):
        with pytest.raises(RuntimeError, match="already running"):
            await notifier.run()
