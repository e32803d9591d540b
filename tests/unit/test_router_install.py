"""A master that cannot install its addresses gives them up after a bounded time.

The runtime reports ``InstallFailed`` (and keeps retrying); the router stays master for
``install_timeout`` (three advertisement intervals, at least one second), then sends priority
0, releases and enters FAULT with the error as its reason; ``InstallSucceeded`` ends it.
Times are exact, in microseconds.
"""

from __future__ import annotations

import pytest

from pyvrrp.core import timers
from pyvrrp.core.actions import (
    Announce,
    Cause,
    InstallVirtual,
    RemoveVirtual,
    SendAdvert,
    State,
    StateChanged,
)
from pyvrrp.core.events import (
    HealthChanged,
    InstallFailed,
    InstallSucceeded,
    MaintenanceChanged,
    Shutdown,
    Timeout,
)
from tests.unit.test_router import MDI_100, S, backup, changed, master, owner, rx, send

ERROR = "192.0.2.100/24 dev eth0: interface eth0 does not exist"


def test_install_timeout_is_three_intervals_and_at_least_one_second() -> None:
    assert timers.install_timeout(S) == 3 * S
    assert timers.install_timeout(2 * S) == 6 * S
    assert timers.install_timeout(100_000) == S  # 3 x 0.1 s is under the floor
    assert timers.install_timeout(400_000) == 1_200_000


def test_a_master_still_failing_after_three_intervals_gives_its_addresses_up() -> None:
    router, became = master()
    assert router.handle(InstallFailed(ERROR), became + 10) == []
    give_up = became + 10 + 3 * S
    # The adverts keep going meanwhile; the give-up time is one of the router's deadlines.
    assert router.deadline() == became + S
    assert router.handle(Timeout(), became + S) == [send(100)]
    assert router.handle(InstallFailed("again"), became + S + 5) == []  # deadline unchanged
    assert router.handle(Timeout(), became + 2 * S) == [send(100)]
    assert router.handle(Timeout(), became + 3 * S) == [send(100)]
    assert router.deadline() == give_up
    actions = router.handle(Timeout(), give_up)
    assert actions == [
        send(0),
        RemoveVirtual(),
        changed(State.MASTER, State.FAULT, Cause.FAULT, "cannot install again"),
    ]
    assert router.statistics().state is State.FAULT
    assert router.install_fault == "again"
    assert router.statistics().install_fault == "again"
    assert router.own_fault and not router.planned_fault
    assert router.deadline() is None  # FAULT is silent


def test_the_timeout_is_counted_from_the_first_failure_and_is_at_least_a_second() -> None:
    router, became = master(advert_interval_cs=10)  # 0.1 s: the floor of one second applies
    router.handle(InstallFailed(ERROR), became + 7)
    give_up = became + 7 + S
    for now in range(became + 100_000, give_up, 100_000):
        assert router.handle(Timeout(), now) == [send(100, interval_cs=10)]
    assert router.deadline() == give_up
    assert router.handle(Timeout(), give_up)[-1] == changed(
        State.MASTER, State.FAULT, Cause.FAULT, f"cannot install {ERROR}"
    )


def test_a_retry_that_succeeds_in_time_keeps_the_master() -> None:
    router, became = master()
    router.handle(InstallFailed(ERROR), became)
    assert router.handle(InstallSucceeded(), became + 200_000) == []
    assert router.deadline() == became + S  # only Adver_Timer remains
    for tick in (1, 2, 3, 4):
        assert router.handle(Timeout(), became + tick * S) == [send(100)]
    assert router.statistics().state is State.MASTER
    assert router.install_fault is None


def test_success_clears_the_fault_and_the_router_restarts_as_backup() -> None:
    router, became = master()
    router.handle(InstallFailed(ERROR), became)
    router.handle(Timeout(), became + 3 * S)
    assert router.statistics().state is State.FAULT
    # Retries in FAULT that fail again change nothing, not even the reason.
    assert router.handle(InstallFailed("other"), became + 4 * S) == []
    assert router.install_fault == ERROR
    later = became + 10 * S
    assert router.handle(InstallSucceeded(), later) == [
        changed(State.FAULT, State.BACKUP, Cause.RECOVERED, "faults cleared")
    ]
    assert router.statistics().install_fault is None
    assert router.deadline() == later + MDI_100


def test_an_owner_that_recovers_installs_again() -> None:
    router = owner()
    router.handle(InstallFailed(ERROR), 0)
    router.handle(Timeout(), S)
    router.handle(Timeout(), 2 * S)
    actions = router.handle(Timeout(), 3 * S)
    assert actions[-1] == changed(
        State.MASTER, State.FAULT, Cause.FAULT, f"cannot install {ERROR}", 255
    )
    actions = router.handle(InstallSucceeded(), 4 * S)
    assert [type(a) for a in actions] == [SendAdvert, InstallVirtual, Announce, StateChanged]
    assert router.statistics().state is State.MASTER


def test_a_failure_reported_to_a_backup_does_not_fault_it() -> None:
    router = backup()
    assert router.handle(InstallFailed(ERROR), 10) == []
    assert router.deadline() == MDI_100
    assert router.install_fault is None


def test_leaving_master_for_another_reason_forgets_the_failure() -> None:
    router, became = master()
    router.handle(InstallFailed(ERROR), became)
    router.handle(rx(200), became + 100)  # a higher priority: we yield
    assert router.statistics().state is State.BACKUP
    # The give-up time is gone with the master role.
    assert router.deadline() == became + 100 + timers.master_down_interval(100, S)
    # Becoming master again later starts with a clean slate.
    now = router.deadline()
    assert now is not None
    router.handle(Timeout(), now)
    assert router.statistics().state is State.MASTER
    assert router.deadline() == now + S


@pytest.mark.parametrize("other", ["maintenance", "tracker"])
def test_an_install_fault_and_another_fault_both_have_to_clear(other: str) -> None:
    router, became = master()
    router.handle(InstallFailed(ERROR), became)
    router.handle(Timeout(), became + 3 * S)
    assert router.statistics().state is State.FAULT
    if other == "maintenance":
        router.handle(MaintenanceChanged(True), became + 4 * S)
    else:
        router.handle(HealthChanged(100, frozenset({"chk"})), became + 4 * S)
    assert router.handle(InstallSucceeded(), became + 5 * S) == []
    assert router.statistics().state is State.FAULT
    if other == "maintenance":
        actions = router.handle(MaintenanceChanged(False), became + 6 * S)
    else:
        actions = router.handle(HealthChanged(100), became + 6 * S)
    assert actions == [changed(State.FAULT, State.BACKUP, Cause.RECOVERED, "faults cleared")]


def test_shutdown_in_an_install_fault_stops_cleanly() -> None:
    router, became = master()
    router.handle(InstallFailed(ERROR), became)
    router.handle(Timeout(), became + 3 * S)
    actions = router.handle(Shutdown(), became + 4 * S)
    assert actions == [changed(State.FAULT, State.INITIALIZE, Cause.SHUTDOWN, "shutdown")]
    assert router.stopped
