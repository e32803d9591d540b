"""Trackers in trio's virtual time: scripts on a FakeProcessRunner, links on a FakeNetlink.

Times are exact: the autojump clock jumps to each deadline, and a fake run lasts exactly its
scripted duration. ``t`` below is seconds since the trackers started.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from pyvrrp.core.config import NodeConfig, parse_node
from pyvrrp.core.tracking import Health
from pyvrrp.runtime.netlink import NetlinkError
from pyvrrp.runtime.trackers import Trackers
from pyvrrp.testing.fakenetlink import FakeNetlink
from pyvrrp.testing.fakeprocess import FakeProcessRunner, FakeRun

CHK = "chk_nginx_ingress"
COMMAND = ("curl", "-fsS", "http://localhost:80/healthz")
INTERFACE = "eth0.4000"


def config(
    *,
    script: Mapping[str, Any] | None = None,
    track_interfaces: list[Any] | None = None,
    priority: int = 100,
    **top: Any,
) -> NodeConfig:
    """vip58 on eth0.4000; with ``script``, it tracks chk_nginx_ingress (``script`` adds keys
    to the seed's check: interval 2, fall 2, rise 2, weight -60)."""
    instance: dict[str, Any] = {
        "interface": INTERFACE,
        "vrid": 58,
        "priority": priority,
        "addresses": ["1.2.3.58/29"],
    }
    data: dict[str, Any] = {"instances": {"vip58": instance}, **top}
    if script is not None:
        defaults = {"command": list(COMMAND), "interval": 2.0, "fall": 2, "rise": 2}
        data["scripts"] = {CHK: {**defaults, "weight": -60, **script}}
        instance["track_scripts"] = [CHK]
    if track_interfaces is not None:
        instance["track_interfaces"] = track_interfaces
    return parse_node(data)


@attrs.define
class Harness:
    trackers: Trackers
    netlink: FakeNetlink
    runner: FakeProcessRunner
    t0: float
    reports: list[tuple[float, str, Health]] = attrs.Factory(list)

    def now(self) -> float:
        return trio.current_time() - self.t0

    async def sleep_until(self, t: float) -> None:
        await trio.sleep_until(self.t0 + t)

    def report_times(self) -> list[float]:
        return [round(t, 9) for t, _, _ in self.reports]

    def priorities(self) -> list[tuple[float, int]]:
        return [(round(t, 9), h.priority) for t, _, h in self.reports]

    def starts(self, command: Any = COMMAND) -> list[float]:
        return [round(c.started - self.t0, 9) for c in self.runner.calls_of(command)]


@asynccontextmanager
async def running(
    node: NodeConfig,
    *,
    runner: FakeProcessRunner | None = None,
    netlink: FakeNetlink | None = None,
    links: tuple[str, ...] = (INTERFACE,),
) -> AsyncIterator[Harness]:
    if netlink is None:
        netlink = FakeNetlink()
        for name in links:
            netlink.add_link(name)
    runner = runner if runner is not None else FakeProcessRunner()
    harness: Harness

    def on_health(instance: str, health: Health) -> None:
        harness.reports.append((harness.now(), instance, health))

    trackers = Trackers(node, netlink, runner, on_health)
    harness = Harness(trackers, netlink, runner, trio.current_time())
    async with trio.open_nursery() as nursery:
        await nursery.start(trackers.run)
        yield harness
        nursery.cancel_scope.cancel()


# Startup.


async def test_initial_health_of_every_instance_is_reported_before_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = config(script={}, track_interfaces=["dummy0"])
    netlink = FakeNetlink()
    netlink.add_link(INTERFACE)
    netlink.add_link("dummy0", up=False)
    runner = FakeProcessRunner(FakeRun.ok(duration=0.5))
    async with running(node, netlink=netlink, runner=runner) as h:
        # Already there when start() returned: the links were read, no script has run yet.
        assert len(h.reports) == 1
        t, instance, health = h.reports[0]
        assert (t, instance) == (0.0, "vip58")
        assert health.faults == {"interface dummy0"}
        states = {c.name: c.state for c in health.contributions}
        assert states == {INTERFACE: "up", "dummy0": "down", CHK: "unknown"}
        assert h.trackers.tracking.interfaces() == {INTERFACE: True, "dummy0": False}


async def test_missing_interface_at_startup_counts_as_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(config(track_interfaces=["dummy0"])) as h:
        assert h.reports[0][2].faults == {"interface dummy0"}
        h.netlink.add_link("dummy0")
        await trio.sleep(1)
        assert h.reports[-1][2].faults == frozenset()
        assert h.report_times() == [0.0, 0.0]


async def test_first_run_starts_at_once_then_every_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(duration=0.3))
    async with running(config(script={}), runner=runner) as h:
        await h.sleep_until(7)
        assert h.starts() == [0.0, 2.0, 4.0, 6.0]
        assert [c.timeout for c in runner.calls] == [2.0] * 4  # timeout defaults to interval


async def test_first_failure_decides_at_once_despite_fall(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.fail(duration=0.5))
    async with running(config(script={}), runner=runner) as h:
        await h.sleep_until(1)
        assert h.priorities() == [(0.0, 100), (0.5, 40)]
        assert h.trackers.tracking.script(CHK).state == "bad"


async def test_first_success_decides_at_once_despite_rise(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(duration=0.5))
    async with running(config(script={}), runner=runner) as h:
        await h.sleep_until(1)
        # unknown -> good: the priority is the same, the status is not
        assert h.priorities() == [(0.0, 100), (0.5, 100)]
        assert h.reports[-1][2].contributions[0].state == "good"  # the script comes first


# fall / rise timing.


async def test_check_failing_from_t10_turns_bad_exactly_at_the_second_failing_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok())
    async with running(config(script={}), runner=runner) as h:
        await h.sleep_until(9)
        runner.set(COMMAND, FakeRun.fail(exit_status=7))  # runs from t=10 on fail
        await h.sleep_until(19)
        runner.set(COMMAND, FakeRun.ok())  # from t=20 on succeed
        await h.sleep_until(29)
        # fall 2: the runs at 10 and 12 fail, bad at 12; rise 2: good again at 22.
        assert h.priorities() == [(0.0, 100), (0.0, 100), (12.0, 40), (22.0, 100)]
        stats = h.trackers.script_statistics(CHK)
        assert (stats.runs, stats.failures) == (15, 5)


async def test_fall_and_rise_timing_includes_the_run_duration(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(duration=0.25))
    async with running(config(script={"fall": 3, "rise": 2}), runner=runner) as h:
        await h.sleep_until(1)
        runner.set(COMMAND, FakeRun.fail(duration=0.25))
        await h.sleep_until(9)
        assert h.priorities()[-1] == (6.25, 40)  # failures at 2, 4, 6 (+0.25 each)
        runner.queue(COMMAND, FakeRun.ok(), FakeRun.fail(), FakeRun.ok(), FakeRun.ok())
        await h.sleep_until(17)
        # successes at 10, 14 and 16: the failure at 12 resets rise, good at 16.
        assert h.priorities()[-1] == (16.0, 100)


async def test_repeated_results_report_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok())
    async with running(config(script={}, track_interfaces=["eth1"]), runner=runner) as h:
        h.netlink.add_link("eth1")  # unknown -> up
        h.netlink.add_link("eth9")  # not tracked
        h.netlink.set_link_up("eth9", False)
        await h.sleep_until(60)
        assert len(runner.calls) == 30
        assert h.report_times() == [0.0, 0.0, 0.0]  # initial, eth1 up, first result


# Skipping, timeouts, users.


async def test_run_still_going_when_the_next_is_due_is_skipped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(duration=2.5))
    node = config(script={"interval": 1.0, "timeout": 5.0})
    async with running(node, runner=runner) as h:
        await h.sleep_until(9.5)
        assert h.starts() == [0.0, 3.0, 6.0, 9.0]
        stats = h.trackers.script_statistics(CHK)
        assert (stats.runs, stats.skipped, stats.running) == (3, 6, True)
        assert stats.last_run == pytest.approx(h.t0 + 6.0)
        assert stats.last_duration == pytest.approx(2.5)


async def test_timed_out_run_is_a_failure_at_its_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.hangs())
    node = config(script={"timeout": 1.5, "fall": 1})
    async with running(node, runner=runner) as h:
        await h.sleep_until(5)
        assert h.priorities() == [(0.0, 100), (1.5, 40)]
        assert h.starts() == [0.0, 2.0, 4.0]
        outcome = runner.calls[0].outcome
        assert outcome is not None
        assert outcome.timed_out and outcome.signal == signal.SIGTERM
        assert not outcome.success
        assert outcome.describe() == "timed out: killed by SIGTERM after 1.5 s"


async def test_script_ignoring_sigterm_is_killed_2s_later_and_blocks_the_next_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.hangs(ignore_term=True))
    node = config(script={"timeout": 1.0, "fall": 1})
    async with running(node, runner=runner) as h:
        await h.sleep_until(5)
        # SIGTERM at 1, SIGKILL at 3: the run due at 2 is skipped, the next starts at 4.
        assert h.priorities() == [(0.0, 100), (3.0, 40)]
        assert h.starts() == [0.0, 4.0]
        first = runner.calls[0]
        assert first.ended == pytest.approx(h.t0 + 3.0)
        assert first.outcome is not None and first.outcome.signal == signal.SIGKILL
        stats = h.trackers.script_statistics(CHK)
        assert (stats.skipped, stats.timeouts, stats.failures, stats.runs) == (1, 1, 1, 1)
        assert stats.last_exit_status is None


async def test_script_runs_as_its_user(autojump_clock: trio.testing.MockClock) -> None:
    runner = FakeProcessRunner(users={"nobody"})
    async with running(config(script={"user": "nobody"}), runner=runner) as h:
        await h.sleep_until(1)
        assert [c.user for c in runner.calls] == ["nobody"]
        assert h.trackers.tracking.script(CHK).state == "good"


async def test_scripts_inherit_the_daemons_environment(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # keepalived's vrrp_script runs with the daemon's environment; so do ours (env=None),
    # unlike notification scripts, which get one of their own.
    runner = FakeProcessRunner()
    async with running(config(script={}), runner=runner) as h:
        await h.sleep_until(3)
        assert [c.env for c in runner.calls] == [None, None]


async def test_script_with_an_unknown_user_fails(autojump_clock: trio.testing.MockClock) -> None:
    runner = FakeProcessRunner(users={"root"})
    async with running(config(script={"user": "ghost"}), runner=runner) as h:
        await h.sleep_until(1)
        stats = h.trackers.script_statistics(CHK)
        assert stats.state == "bad"
        assert stats.last_outcome is not None
        assert stats.last_outcome.error == "cannot run as user ghost: no such user"


async def test_program_that_cannot_start_is_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.cannot_start("cannot run curl: not found in PATH"))
    async with running(config(script={"weight": 0}), runner=runner) as h:
        await h.sleep_until(1)
        assert h.reports[-1][2].faults == {f"script {CHK}"}


async def test_killed_by_a_signal_is_a_failure(autojump_clock: trio.testing.MockClock) -> None:
    runner = FakeProcessRunner(FakeRun.killed(signal.SIGSEGV))
    async with running(config(script={}), runner=runner) as h:
        await h.sleep_until(1)
        outcome = h.trackers.script_statistics(CHK).last_outcome
        assert outcome is not None and outcome.describe() == "killed by SIGSEGV"
        assert h.trackers.tracking.script(CHK).state == "bad"


async def test_untracked_script_never_runs(autojump_clock: trio.testing.MockClock) -> None:
    node = config(scripts={"spare": {"command": "true"}})
    runner = FakeProcessRunner()
    async with running(node, runner=runner) as h:
        await h.sleep_until(5)
        assert runner.calls == []
        stats = h.trackers.statistics().scripts["spare"]
        assert (stats.tracked, stats.runs, stats.state) == (False, 0, "unknown")


async def test_stopping_cancels_a_running_script(autojump_clock: trio.testing.MockClock) -> None:
    runner = FakeProcessRunner(FakeRun.hangs())
    node = config(script={"timeout": 100.0})
    async with running(node, runner=runner) as h:
        await h.sleep_until(1)
    assert runner.calls[0].cancelled
    assert runner.running == 0


async def test_statistics_show_state_and_position(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner(FakeRun.ok(duration=0.1))
    async with running(config(script={"fall": 3}), runner=runner) as h:
        await h.sleep_until(1)
        runner.set(COMMAND, FakeRun.fail(exit_status=22, duration=0.1))
        await h.sleep_until(5)
        stats = h.trackers.script_statistics(CHK)
        assert stats.state == "good"
        assert stats.position == "2/3 failures to fall"
        assert (stats.consecutive_successes, stats.consecutive_failures) == (0, 2)
        assert (stats.rise, stats.fall, stats.runs, stats.failures) == (2, 3, 3, 2)
        assert stats.last_outcome is not None
        assert stats.last_exit_status == 22
        assert stats.timeouts == 0
        assert stats.last_outcome.describe() == "exit status 22"


async def test_previous_tracking_carries_the_position_over(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = config(script={})
    runner = FakeProcessRunner(FakeRun.fail())
    async with running(node, runner=runner) as first:
        await first.sleep_until(1)  # one failure: bad at once (startup rule)
    assert first.trackers.tracking.script(CHK).state == "bad"
    reports: list[Health] = []
    trackers = Trackers(
        node,
        first.netlink,
        FakeProcessRunner(FakeRun.ok()),
        lambda _, health: reports.append(health),
        previous=first.trackers,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(trackers.run)
        assert reports[0].priority == 40  # still bad after the reload
        await trio.sleep(1)
        assert trackers.tracking.script(CHK).position() == "1/2 successes to rise"
        await trio.sleep(2)
        assert reports[-1].priority == 100  # rise 2, not "the first result decides"
        nursery.cancel_scope.cancel()


# Interfaces.


async def test_interface_down_and_up_is_reported_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = config(track_interfaces=["dummy0", {"name": "eth0", "weight": -30}])
    async with running(node, links=(INTERFACE, "dummy0", "eth0")) as h:
        await h.sleep_until(5)
        h.netlink.set_link_up("dummy0", False)
        await h.sleep_until(6)
        h.netlink.set_link_up("dummy0", True)
        h.netlink.set_link_up("eth0", False)
        await h.sleep_until(7)
        h.netlink.set_link_up("eth0", True)
        await h.sleep_until(8)
        summary = [(t, h.priority, sorted(h.faults)) for t, _, h in h.reports]
        assert summary == [
            (0.0, 100, []),
            (5.0, 100, ["interface dummy0"]),
            (6.0, 100, []),
            (6.0, 70, []),
            (7.0, 100, []),
        ]


async def test_interface_deleted_and_recreated_is_tracked_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(config(track_interfaces=["dummy0"]), links=(INTERFACE, "dummy0")) as h:
        await h.sleep_until(1)
        h.netlink.delete_link("dummy0")
        await h.sleep_until(2)
        assert h.reports[-1][2].faults == {"interface dummy0"}
        h.netlink.add_link("dummy0", up=False)  # recreated down: still a fault
        await h.sleep_until(3)
        h.netlink.set_link_up("dummy0", True)
        await h.sleep_until(4)
        assert [(t, sorted(h.faults)) for t, _, h in h.reports] == [
            (0.0, []),
            (1.0, ["interface dummy0"]),
            (3.0, []),
        ]


async def test_instance_interface_down_is_a_fault_without_being_listed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(config()) as h:
        h.netlink.set_link_up(INTERFACE, False)
        await trio.sleep(0.1)
        assert h.reports[-1][2].faults == {f"interface {INTERFACE}"}


async def test_unreadable_interface_counts_as_up_until_its_next_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    netlink = FakeNetlink()
    netlink.add_link(INTERFACE)
    netlink.add_link("dummy0", up=False)
    netlink.fail_next("link", NetlinkError("cannot read link dummy0: no buffer space"))
    async with running(config(track_interfaces=["dummy0"]), netlink=netlink) as h:
        assert h.trackers.tracking.interfaces()["dummy0"] is None  # "dummy0" is read first
        assert h.reports[0][2].faults == frozenset()
        netlink.set_link_up("dummy0", True)
        netlink.set_link_up("dummy0", False)
        await h.sleep_until(1)
        assert h.reports[-1][2].faults == {"interface dummy0"}


async def test_missed_link_events_resubscribe_and_reread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(config(track_interfaces=["dummy0"]), links=(INTERFACE, "dummy0")) as h:
        # More events than a subscriber's buffer, without letting the trackers run: the
        # netlink object cuts the subscriber off, which must then re-read the links.
        for _ in range(600):
            h.netlink.set_link_up("dummy0", False)
            h.netlink.set_link_up("dummy0", True)
        h.netlink.set_link_up("dummy0", False)
        await h.sleep_until(1)
        assert h.trackers.statistics().resubscriptions == 1
        assert h.trackers.tracking.interfaces()["dummy0"] is False
        assert h.reports[-1][2].faults == {"interface dummy0"}
        # Still subscribed: later changes arrive.
        h.netlink.set_link_up("dummy0", True)
        await h.sleep_until(2)
        assert h.reports[-1][2].faults == frozenset()


async def test_netlink_closing_ends_link_watching_but_not_the_scripts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner = FakeProcessRunner()
    async with running(config(script={}), runner=runner) as h:
        await h.sleep_until(1)
        await h.netlink.aclose()
        await h.sleep_until(5)
        assert h.starts() == [0.0, 2.0, 4.0]


# Logs.


async def test_state_changes_are_logged_once_not_per_run(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pyvrrp")
    runner = FakeProcessRunner(FakeRun.ok())
    node = config(script={}, track_interfaces=["dummy0"])
    async with running(node, runner=runner, links=(INTERFACE, "dummy0")) as h:
        await h.sleep_until(3)
        runner.set(COMMAND, FakeRun.fail(exit_status=7))
        h.netlink.set_link_up("dummy0", False)
        await h.sleep_until(20)
    messages = [r.getMessage() for r in caplog.records if r.name == "pyvrrp"]
    assert messages == [
        f"script {CHK} is good after first run (exit status 0; tracked by vip58)",
        "tracked interface dummy0 is down (tracked by vip58)",
        "instance vip58: FAULT (interface dummy0 down); priority 100 = 100 base",
        f"script {CHK} is bad after 2 failed runs (exit status 7; tracked by vip58)",
        f"instance vip58: FAULT (interface dummy0 down); priority 40 = 100 base - 60 {CHK} (bad)",
    ]
