"""The VirtualRouter state machine (RFC 9568 §6.4 plus keepalived's FAULT), rule by rule.

Each test drives one router by hand, walking ``now`` forward, and asserts the exact actions
(types and order) and the exact ``deadline()`` in microseconds. Times are written as sums of
hand-computed constants (see tests/unit/test_timers.py for the arithmetic).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import attrs
import pytest

from pyvrrp.core.actions import (
    Action,
    Announce,
    Cause,
    Datagram,
    Dropped,
    InstallVirtual,
    Notice,
    NoticeKind,
    RemoveVirtual,
    SendAdvert,
    State,
    StateChanged,
)
from pyvrrp.core.errors import UsageError
from pyvrrp.core.events import (
    AdvertiseNow,
    AdvertReceived,
    HealthChanged,
    MaintenanceChanged,
    PacketReceived,
    Reconfigure,
    Shutdown,
    Startup,
    Timeout,
)
from pyvrrp.core.packet import (
    IPV4_MULTICAST,
    VRRP_TTL,
    Advertisement,
    ChecksumMode,
    DropReason,
    IPAddress,
    encode,
)
from pyvrrp.core.router import (
    HANDOVER_GRACE,
    HANDOVER_REANNOUNCE,
    REASSERT_REANNOUNCE,
    PeerStatistics,
    RouterParams,
    RouterStatistics,
    VirtualRouter,
)

V4 = IPv4Address
VIP = V4("192.0.2.100")
LOCAL = V4("192.0.2.10")
LOWER = V4("192.0.2.5")  # a peer whose address is below ours
HIGHER = V4("192.0.2.20")  # a peer whose address is above ours
OTHER_VIP = V4("198.51.100.7")

S = 1_000_000  # one second in microseconds
# Hand-computed RFC 9568 §6.1 values (floored to the microsecond), 1 s interval unless named.
SKEW_100 = 609_375  # (256 - 100) * 1 s / 256
MDI_100 = 3_609_375
SKEW_200 = 218_750
MDI_200 = 3_218_750
SKEW_255 = 3_906
MDI_255 = 3_003_906
MDI_100_HALF_SECOND = 1_804_687  # 3 * 0.5 s + 156 * 0.5 s / 256 (304687.5, floored)
SKEW_100_HALF_SECOND = 304_687
RELEASE_1S = 2_996_093  # release_timeout(1 s) = Skew_Time(1, 1 s) + 2 s

BASE = RouterParams(vrid=1, addresses=(VIP,), local_address=LOCAL, garp_delay_us=0)
ETH0_DOWN = frozenset({"eth0"})


def params(**changes: Any) -> RouterParams:
    """The test router's parameters (garp_delay off unless a test turns it on)."""
    return attrs.evolve(BASE, **changes)


def make(**changes: Any) -> VirtualRouter:
    return VirtualRouter(params(**changes))


def adv(
    priority: int,
    *,
    interval_cs: int = 100,
    addresses: tuple[IPAddress, ...] = (VIP,),
    vrid: int = 1,
) -> Advertisement:
    return Advertisement(
        vrid=vrid, priority=priority, max_advert_interval=interval_cs, addresses=addresses
    )


def rx(
    priority: int,
    source: IPAddress = HIGHER,
    *,
    interval_cs: int = 100,
    addresses: tuple[IPAddress, ...] = (VIP,),
) -> AdvertReceived:
    return AdvertReceived(source, adv(priority, interval_cs=interval_cs, addresses=addresses))


def send(
    priority: int,
    interval_cs: int = 100,
    *,
    source: IPAddress = LOCAL,
    destinations: tuple[IPAddress, ...] = (IPV4_MULTICAST,),
) -> SendAdvert:
    """The SendAdvert the test router makes: the advertisement and its encoded datagrams."""
    advert = adv(priority, interval_cs=interval_cs)
    return SendAdvert(
        advert,
        tuple(
            Datagram(encode(advert, source=source, destination=d), source, d) for d in destinations
        ),
    )


def changed(old: State, new: State, cause: Cause, reason: str, priority: int = 100) -> StateChanged:
    return StateChanged(old, new, cause, reason, priority)


TO_MASTER_DOWN = changed(
    State.BACKUP, State.MASTER, Cause.MASTER_DOWN, "no advertisement for Master_Down_Interval"
)
TO_MASTER_LEFT = changed(
    State.BACKUP, State.MASTER, Cause.MASTER_LEFT, "the master left (priority 0)"
)
TO_MASTER_PREEMPT = changed(
    State.BACKUP, State.MASTER, Cause.PREEMPT, "preempting a lower-priority master"
)


def fire(router: VirtualRouter) -> tuple[int, list[Action]]:
    """Deliver ``Timeout`` at exactly ``deadline()``, checking that no busy loop follows."""
    now = router.deadline()
    assert now is not None
    actions = router.handle(Timeout(), now)
    after = router.deadline()
    assert after is None or after > now, f"busy loop: deadline {after} after Timeout at {now}"
    return now, actions


def backup(now: int = 0, **changes: Any) -> VirtualRouter:
    """A started non-owner router (BACKUP, down timer running from ``now``)."""
    router = make(**changes)
    router.handle(Startup(), now)
    assert router.state is State.BACKUP
    return router


def master(**changes: Any) -> tuple[VirtualRouter, int]:
    """A non-owner router that became master when its down timer fired; and that time."""
    router = backup(**changes)
    now, _ = fire(router)
    assert router.state is State.MASTER
    return router, now


def holding(router: VirtualRouter) -> bool:
    """``holding_addresses``, read through a call so that type checkers do not narrow it."""
    return router.holding_addresses


def stopped(router: VirtualRouter) -> bool:
    return router.stopped


def owner(**changes: Any) -> VirtualRouter:
    router = make(priority=255, **changes)
    router.handle(Startup(), 0)
    assert router.state is State.MASTER
    return router


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    "changes",
    [
        {"vrid": 0},
        {"vrid": 256},
        {"priority": 0},
        {"priority": 256},
        {"advert_interval_cs": 0},
        {"advert_interval_cs": 4096},
        {"addresses": ()},
        {"addresses": (IPv6Address("fe80::1"),)},
        {"unicast_peers": frozenset({IPv6Address("fe80::2")})},
        {"preempt_delay_us": -1},
        {"garp_delay_us": -1},
        {"garp_refresh_us": -1},  # would re-arm in the past: a busy loop
    ],
)
def test_router_params_reject_values_outside_the_protocol(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        params(**changes)


def test_router_params_defaults_match_keepalived() -> None:
    p = RouterParams(vrid=1, addresses=(VIP,), local_address=LOCAL)
    assert (p.priority, p.advert_interval_cs, p.preempt, p.preempt_delay_us) == (100, 100, True, 0)
    assert (p.garp_delay_us, p.garp_refresh_us, p.graceful_handover) == (5 * S, 0, True)
    assert p.checksum_mode is ChecksumMode.PSEUDO_HEADER
    assert p.family == 4
    assert not p.owner
    assert params(priority=255).owner


# ------------------------------------------------------------------------------- startup


def test_owner_starts_as_master_at_once_advert_first_then_addresses_then_announce() -> None:
    # RFC 9568 §6.4.1: priority 255 sends an advertisement, announces and becomes Master.
    router = make(priority=255)
    assert router.handle(Startup(), 1_000) == [
        send(255),
        InstallVirtual(),
        Announce(),
        changed(State.INITIALIZE, State.MASTER, Cause.OWNER, "address owner (priority 255)", 255),
    ]
    assert router.deadline() == 1_000 + S  # Adver_Timer
    assert holding(router)


@pytest.mark.parametrize(("priority", "down"), [(100, MDI_100), (200, MDI_200), (1, 3_996_093)])
def test_non_owner_starts_as_backup_with_master_down_interval(priority: int, down: int) -> None:
    router = make(priority=priority)
    assert router.handle(Startup(), 1_000) == [
        changed(State.INITIALIZE, State.BACKUP, Cause.STARTUP, "startup", priority)
    ]
    assert router.deadline() == 1_000 + down
    assert not holding(router)


@pytest.mark.parametrize("priority", [100, 255])
def test_startup_with_a_recorded_fault_enters_fault(priority: int) -> None:
    router = make(priority=priority)
    assert router.handle(HealthChanged(100, frozenset({"eth1", "chk"})), 0) == []
    assert router.state is State.INITIALIZE  # recorded, Startup decides
    assert router.handle(Startup(), 5) == [
        changed(State.INITIALIZE, State.FAULT, Cause.FAULT, "fault: chk, eth1", priority)
    ]
    assert router.deadline() is None
    assert not holding(router)


def test_startup_in_maintenance_enters_fault_for_maintenance() -> None:
    router = make()
    assert router.handle(MaintenanceChanged(on=True), 0) == []
    assert router.handle(Startup(), 0) == [
        changed(State.INITIALIZE, State.FAULT, Cause.MAINTENANCE, "maintenance mode")
    ]
    assert router.deadline() is None


def test_health_before_startup_sets_the_priority_startup_uses() -> None:
    router = make()
    assert router.handle(HealthChanged(200), 0) == []
    router.handle(Startup(), 0)
    assert router.deadline() == MDI_200


def test_startup_twice_is_a_usage_error() -> None:
    router = backup()
    with pytest.raises(UsageError):
        router.handle(Startup(), 1)


def test_startup_after_shutdown_is_a_usage_error() -> None:
    router = make()
    assert router.handle(Shutdown(), 0) == []
    assert stopped(router)
    with pytest.raises(UsageError):
        router.handle(Startup(), 1)


def test_an_unknown_event_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        make().handle(object(), 0)  # type: ignore[arg-type]


def test_timeout_with_nothing_due_does_nothing() -> None:
    router = backup()
    assert router.handle(Timeout(), MDI_100 - 1) == []  # an early wake-up is not expiry
    assert router.state is State.BACKUP
    assert router.deadline() == MDI_100
    idle = make()
    assert idle.handle(Timeout(), 10) == []
    assert idle.deadline() is None


# -------------------------------------------------------------------------------- backup


def test_backup_becomes_master_when_master_down_timer_fires() -> None:
    # RFC 9568 §6.4.2: advertise, then addresses, then the announcement burst.
    router = backup()
    now, actions = fire(router)
    assert now == MDI_100
    assert actions == [send(100), InstallVirtual(), Announce(), TO_MASTER_DOWN]
    assert router.deadline() == MDI_100 + S  # Adver_Timer at our own interval


def test_new_master_repeats_announcements_once_after_garp_delay() -> None:
    router, t = master(garp_delay_us=2_500_000)
    steps = [fire(router) for _ in range(6)]
    assert steps == [
        (t + S, [send(100)]),
        (t + 2 * S, [send(100)]),
        (t + 2_500_000, [Announce()]),
        (t + 3 * S, [send(100)]),
        (t + 4 * S, [send(100)]),
        (t + 5 * S, [send(100)]),  # only one repeat
    ]


def test_garp_delay_due_with_an_advert_comes_after_it() -> None:
    router, t = master(garp_delay_us=5 * S)
    steps = [fire(router) for _ in range(6)]
    assert steps[4] == (t + 5 * S, [send(100), Announce()])
    assert steps[5] == (t + 6 * S, [send(100)])


def test_garp_refresh_announces_periodically_while_master() -> None:
    router, t = master(garp_refresh_us=1_500_000)
    steps = [fire(router) for _ in range(7)]
    assert steps == [
        (t + S, [send(100)]),
        (t + 1_500_000, [Announce()]),
        (t + 2 * S, [send(100)]),
        (t + 3 * S, [send(100), Announce()]),
        (t + 4 * S, [send(100)]),
        (t + 4_500_000, [Announce()]),
        (t + 5 * S, [send(100)]),
    ]


def test_a_late_timeout_sends_one_advert_and_one_announce_and_rearms_from_now() -> None:
    # A runtime that wakes 3.5 s late must not catch up with a burst.
    router, t = master(garp_refresh_us=1_500_000)
    late = t + 4_500_000
    assert router.handle(Timeout(), late) == [send(100), Announce()]
    assert router.deadline() == late + S
    assert fire(router) == (late + S, [send(100)])
    assert fire(router) == (late + 1_500_000, [Announce()])


def test_no_announcement_after_becoming_master_when_delay_and_refresh_are_zero() -> None:
    router, t = master()
    for k in range(1, 61):
        assert fire(router) == (t + k * S, [send(100)])


def test_backup_arms_skew_time_on_priority_zero() -> None:
    # RFC 9568 §6.4.2: "Set the Master_Down_Timer to Skew_Time".
    router = backup()
    router.handle(rx(150), S // 2)
    assert router.handle(rx(0), S) == []
    assert router.deadline() == S + SKEW_100
    assert router.statistics().master_address is None
    now, actions = fire(router)
    assert now == S + SKEW_100
    assert actions == [send(100), InstallVirtual(), Announce(), TO_MASTER_LEFT]


def test_priority_zero_skew_uses_the_learned_interval() -> None:
    router = backup()
    router.handle(rx(150, interval_cs=50), S)
    router.handle(rx(0, interval_cs=50), 2 * S)
    assert router.deadline() == 2 * S + SKEW_100_HALF_SECOND


@pytest.mark.parametrize("priority", [100, 150, 254, 255])
def test_backup_accepts_higher_or_equal_priority_and_learns_its_interval(priority: int) -> None:
    router = backup()
    assert router.handle(rx(priority, interval_cs=50), S) == [
        Notice(
            NoticeKind.INTERVAL_MISMATCH,
            HIGHER,
            "advertises every 0.5 s, we are configured for 1 s",
        )
    ]
    # 3 * 0.5 s + Skew_Time(100, 0.5 s), from now.
    assert router.deadline() == S + MDI_100_HALF_SECOND
    stats = router.statistics()
    assert (stats.master_address, stats.master_priority) == (HIGHER, priority)
    assert stats.master_adver_interval == 500_000
    # Every accepted advertisement restarts the timer.
    router.handle(rx(priority, interval_cs=50), S + 500_000)
    assert router.deadline() == S + 500_000 + MDI_100_HALF_SECOND


def test_backup_accepts_a_lower_address_at_equal_priority_no_tie_break() -> None:
    router = backup()
    assert router.handle(rx(100, LOWER), S) == []
    assert router.deadline() == S + MDI_100


def test_backup_preempts_a_lower_priority_master_after_skew_time() -> None:
    # Fast preemption (router.py docstring): Skew_Time instead of waiting out the down timer.
    router = backup()
    assert router.handle(rx(50, LOWER), S) == []
    assert router.deadline() == S + SKEW_100
    stats = router.statistics()
    assert (stats.master_address, stats.master_priority) == (LOWER, 50)
    now, actions = fire(router)
    assert now == S + SKEW_100
    assert actions == [send(100), InstallVirtual(), Announce(), TO_MASTER_PREEMPT]


def test_fast_preemption_never_postpones_an_earlier_timer() -> None:
    router = backup()
    # Down timer at MDI_100 = 3.609375 s; 3.5 s + Skew_Time would be later: keep it.
    assert router.handle(rx(50, LOWER), 3_500_000) == []
    assert router.deadline() == MDI_100
    now, actions = fire(router)
    assert now == MDI_100
    assert actions[-1] == TO_MASTER_DOWN


def test_repeated_lower_priority_adverts_keep_the_first_preemption_time() -> None:
    router = backup()
    router.handle(rx(50, LOWER), S)
    router.handle(rx(50, LOWER), S + 500_000)
    assert router.deadline() == S + SKEW_100


def test_a_discarded_lower_priority_advert_does_not_teach_its_interval() -> None:
    router = backup()
    router.handle(rx(50, LOWER, interval_cs=50), S)
    assert router.statistics().master_adver_interval == S
    assert router.deadline() == S + SKEW_100


def test_a_higher_priority_master_cancels_a_pending_preemption() -> None:
    router = backup()
    router.handle(rx(50, LOWER), S)
    router.handle(rx(150), S + 100_000)
    assert router.deadline() == S + 100_000 + MDI_100


@pytest.mark.parametrize(("interval_cs", "down"), [(100, MDI_100), (200, 7_218_750)])
def test_backup_without_preemption_accepts_a_lower_priority_master(
    interval_cs: int, down: int
) -> None:
    # RFC 9568 §6.4.2: with Preempt_Mode False any advertisement is accepted.
    # 200 cs: 3 * 2 s + 156 * 2 s / 256 = 6 s + 1.21875 s.
    router = backup(preempt=False)
    actions = router.handle(rx(50, LOWER, interval_cs=interval_cs), S)
    assert [a for a in actions if not isinstance(a, Notice)] == []
    assert router.deadline() == S + down
    assert router.statistics().master_adver_interval == interval_cs * 10_000


def test_preempt_delay_accepts_a_lower_priority_master_until_the_delay_since_startup() -> None:
    router = backup(preempt_delay_us=10 * S)
    for k in range(1, 10):
        assert router.handle(rx(50, LOWER), k * S) == []
        assert router.deadline() == k * S + MDI_100  # accepted like a higher priority
    assert router.handle(rx(50, LOWER), 10 * S) == []
    assert router.deadline() == 10 * S + SKEW_100  # delay over: fast preemption
    now, actions = fire(router)
    assert now == 10 * S + SKEW_100
    assert actions[-1] == TO_MASTER_PREEMPT


def test_preempt_delay_counts_from_when_a_lower_priority_master_is_first_seen() -> None:
    router = backup(preempt_delay_us=10 * S)
    for k in range(1, 20):  # a higher-priority master: the startup delay no longer applies
        router.handle(rx(150), k * S)
    for k in range(20, 30):  # it is gone; a lower-priority master first seen at 20 s
        assert router.handle(rx(50, LOWER), k * S) == []
        assert router.deadline() == k * S + MDI_100
    router.handle(rx(50, LOWER), 30 * S)
    assert router.deadline() == 30 * S + SKEW_100


def test_preempt_delay_restarts_when_recovering_from_fault() -> None:
    # keepalived restarts preempt_delay on leaving FAULT, as at startup.
    router = backup(preempt_delay_us=10 * S)
    router.handle(HealthChanged(100, ETH0_DOWN), S)
    router.handle(HealthChanged(100), 20 * S)
    router.handle(rx(50, LOWER), 29 * S)
    assert router.deadline() == 29 * S + MDI_100
    router.handle(rx(50, LOWER), 30 * S)
    assert router.deadline() == 30 * S + SKEW_100


def test_owner_in_backup_preempts_even_with_preemption_off() -> None:
    # Two owners: the lower address yields (RFC 9568 §6.4.3), then preempts a lower priority.
    router = owner(preempt=False)
    assert router.handle(rx(255), S) == [
        Notice(
            NoticeKind.OWNER_CONFLICT, HIGHER, "also claims to own the addresses (priority 255)"
        ),
        send(255),  # the parting advertisement
        RemoveVirtual(),
        changed(
            State.MASTER,
            State.BACKUP,
            Cause.HIGHER_PRIORITY,
            "192.0.2.20 advertises priority 255 (ours 255)",
            255,
        ),
    ]
    assert router.deadline() == S + MDI_255
    assert router.handle(rx(100, LOWER), 2 * S) == []
    assert router.deadline() == 2 * S + SKEW_255
    _, actions = fire(router)
    assert actions == [
        send(255),
        InstallVirtual(),
        Announce(),
        changed(
            State.BACKUP, State.MASTER, Cause.PREEMPT, "preempting a lower-priority master", 255
        ),
    ]


# -------------------------------------------------------------------------------- master


def test_master_advertises_its_priority_and_configured_interval_on_adver_timer() -> None:
    router, t = master(advert_interval_cs=50)
    assert t == MDI_100_HALF_SECOND
    assert fire(router) == (t + 500_000, [send(100, interval_cs=50)])
    assert router.deadline() == t + 1_000_000


def test_adver_timer_runs_from_its_deadline_when_the_timeout_is_handled_late() -> None:
    # A runtime woken 3 ms late sends late, but the next advertisement stays on the
    # schedule: the interval does not drift by the lateness of every wake-up.
    router, t = master()
    assert router.handle(Timeout(), t + 1_003_000) == [send(100)]
    assert router.deadline() == t + 2_000_000
    # Late by more than a whole interval (a stalled process): no burst to catch up.
    assert router.handle(Timeout(), t + 3_500_000) == [send(100)]
    assert router.deadline() == t + 4_500_000


def test_advertise_now_sends_early_and_runs_the_adver_timer_from_then() -> None:
    # The runtime aligns masters of one interval: 0.4 s before its Adver_Timer, this one
    # advertises with another and keeps that step.
    router, t = master()
    assert router.adver_timer == router.deadline() == t + S
    assert router.handle(AdvertiseNow(), t + 600_000) == [send(100)]
    assert router.adver_timer == router.deadline() == t + 1_600_000
    assert fire(router) == (t + 1_600_000, [send(100)])
    assert router.statistics().adverts_sent == 3
    # Already due: the same as its Timeout (from the deadline, not from now).
    assert router.handle(AdvertiseNow(), t + 2_600_500) == [send(100)]
    assert router.deadline() == t + 3_600_000


def test_advertise_now_is_ignored_outside_master() -> None:
    router = backup()
    assert router.adver_timer is None
    assert router.handle(AdvertiseNow(), 1_000) == []
    assert router.deadline() == MDI_100
    assert router.statistics().adverts_sent == 0


def test_master_advertises_its_own_interval_not_the_one_it_learned_as_backup() -> None:
    router = backup()
    router.handle(rx(150, interval_cs=200), S)
    assert router.deadline() == S + 7_218_750
    router.handle(rx(0, interval_cs=200), 2 * S)
    assert router.deadline() == 2 * S + 1_218_750  # Skew_Time(100, 2 s)
    now, actions = fire(router)
    assert actions == [send(100), InstallVirtual(), Announce(), TO_MASTER_LEFT]
    # The handover's extra announcement comes first, then our own interval.
    assert router.deadline() == now + HANDOVER_REANNOUNCE
    assert fire(router) == (now + HANDOVER_REANNOUNCE, [Announce()])
    assert router.deadline() == now + S
    assert router.statistics().master_adver_interval == S
    assert fire(router) == (now + S, [send(100)])


def test_a_master_that_took_over_from_a_leaving_master_announces_again_once_it_let_go() -> None:
    # The old master keeps the addresses until HANDOVER_GRACE after hearing us (graceful
    # handover); a client that re-resolved the address meanwhile may hold its MAC.
    router = backup(garp_delay_us=0)
    router.handle(rx(0), S)
    now, actions = fire(router)
    assert actions == [send(100), InstallVirtual(), Announce(), TO_MASTER_LEFT]
    assert HANDOVER_REANNOUNCE > HANDOVER_GRACE
    assert fire(router) == (now + HANDOVER_REANNOUNCE, [Announce()])
    assert fire(router) == (now + S, [send(100)])  # once only


def test_a_master_that_took_over_after_silence_announces_no_extra_round() -> None:
    router = backup(garp_delay_us=0)
    now, actions = fire(router)  # Master_Down_Interval: nobody to hand over from
    assert Announce() in actions
    assert fire(router) == (now + S, [send(100)])


def test_master_answers_priority_zero_with_an_immediate_advert() -> None:
    # RFC 9568 §6.4.3: send an ADVERTISEMENT, reset the Adver_Timer.
    router, t = master()
    assert router.handle(rx(0, LOWER), t + 300_000) == [send(100)]
    assert router.deadline() == t + 300_000 + S
    assert router.state is State.MASTER


def test_master_yields_to_a_higher_priority_without_priority_zero() -> None:
    router, t = master(garp_delay_us=2 * S)
    now = t + 900_000
    assert router.handle(rx(150, interval_cs=50), now) == [
        Notice(
            NoticeKind.INTERVAL_MISMATCH,
            HIGHER,
            "advertises every 0.5 s, we are configured for 1 s",
        ),
        # Not priority 0: a parting advertisement at our own priority, so that the new master
        # hears a lower one and re-announces (healing caches after a split brain).
        send(100),
        RemoveVirtual(),
        changed(
            State.MASTER,
            State.BACKUP,
            Cause.HIGHER_PRIORITY,
            "192.0.2.20 advertises priority 150 (ours 100)",
        ),
    ]
    # Down timer on the learned 0.5 s interval; the pending garp repeat (t + 2 s) is gone.
    assert router.deadline() == now + MDI_100_HALF_SECOND
    assert now + MDI_100_HALF_SECOND > t + 2 * S
    stats = router.statistics()
    assert (stats.master_address, stats.master_priority) == (HIGHER, 150)
    assert stats.master_adver_interval == 500_000
    assert stats.priority_zero_sent == 0
    assert not holding(router)


def test_master_yields_to_equal_priority_from_a_higher_address() -> None:
    router, t = master()
    assert router.handle(rx(100, HIGHER), t + 1) == [
        send(100),
        RemoveVirtual(),
        changed(
            State.MASTER,
            State.BACKUP,
            Cause.HIGHER_PRIORITY,
            "192.0.2.20 advertises priority 100 (ours 100)",
        ),
    ]
    assert router.deadline() == t + 1 + MDI_100


@pytest.mark.parametrize(("priority", "source"), [(100, LOWER), (99, HIGHER), (1, LOWER)])
def test_master_reasserts_against_equal_lower_address_or_lower_priority(
    priority: int, source: IPAddress
) -> None:
    # RFC 9568 §6.4.3 (new in RFC 9568): answer with an advertisement; keepalived repeats GARPs.
    router, t = master()
    assert router.handle(rx(priority, source), t + 250_000) == [send(100), Announce()]
    assert router.state is State.MASTER
    # Once more after the other router's own announcements, then the Adver_Timer from the
    # advertisement just sent.
    assert fire(router) == (t + 250_000 + REASSERT_REANNOUNCE, [Announce()])
    assert router.deadline() == t + 250_000 + S


def test_a_master_announces_again_after_an_intruders_takeover_burst() -> None:
    # A backup that missed three of our advertisements takes over: its advertisement comes
    # first, its gratuitous ARP / unsolicited NA a moment later (it installs the addresses
    # in between). Our immediate answer reaches clients before its announcements; the second
    # one, REASSERT_REANNOUNCE later, after them, whether or not its parting advertisement
    # (when it yields to ours) reaches us.
    router, t = master(garp_delay_us=0)
    takeover = t + 400_000
    assert router.handle(rx(50, LOWER), takeover) == [send(100), Announce()]
    assert REASSERT_REANNOUNCE >= 100_000  # far after a takeover's advert-to-GARP (~1 ms)
    assert REASSERT_REANNOUNCE < S  # before our next advertisement, long before client NUD
    assert fire(router) == (takeover + REASSERT_REANNOUNCE, [Announce()])
    assert fire(router) == (takeover + S, [send(100)])  # once per lower priority heard
    assert fire(router) == (takeover + 2 * S, [send(100)])


def test_each_lower_priority_heard_moves_the_second_announcement_after_it() -> None:
    # The intruder's parting advertisement arrives 2 ms after its takeover advertisement:
    # the second announcement is due REASSERT_REANNOUNCE after the later one.
    router, t = master(garp_delay_us=0)
    router.handle(rx(50, LOWER), t + 400_000)
    assert router.handle(rx(50, LOWER), t + 402_000) == [send(100), Announce()]
    assert fire(router) == (t + 402_000 + REASSERT_REANNOUNCE, [Announce()])
    assert fire(router) == (t + 402_000 + S, [send(100)])


def test_a_master_that_yields_drops_its_pending_second_announcement() -> None:
    router, t = master(garp_delay_us=0)
    router.handle(rx(50, LOWER), t + 400_000)
    actions = router.handle(rx(150), t + 500_000)
    assert router.state is State.BACKUP
    assert RemoveVirtual() in actions
    # Not t + 700_000: the next thing due is the Master_Down_Timer.
    assert router.deadline() == t + 500_000 + MDI_100


@pytest.mark.parametrize(
    ("local", "peer", "yields"),
    [
        (V4("10.0.0.1"), V4("200.0.0.1"), True),  # 200.x has the top bit set: unsigned compare
        (V4("200.0.0.1"), V4("10.0.0.1"), False),
        (IPv6Address("fe80::1"), IPv6Address("fe80::ffff:0:0:1"), True),
        (IPv6Address("fe80::ffff:0:0:1"), IPv6Address("fe80::1"), False),
    ],
)
def test_equal_priority_tie_break_compares_addresses_unsigned(
    local: IPAddress, peer: IPAddress, yields: bool
) -> None:
    vip: IPAddress = V4("10.9.9.9") if local.version == 4 else IPv6Address("fe80::100")
    router, t = master(local_address=local, addresses=(vip,))
    router.handle(rx(100, peer, addresses=(vip,)), t + 1)
    assert router.state is (State.BACKUP if yields else State.MASTER)


# --------------------------------------------------------------------------------- drops


def test_own_advertisement_is_dropped_and_counted() -> None:
    router, t = master()
    assert router.handle(rx(100, LOCAL), t + 1) == [
        Dropped(DropReason.OWN_ADVERT, LOCAL, "our own advertisement")
    ]
    assert router.deadline() == t + S
    stats = router.statistics()
    assert stats.drops == {DropReason.OWN_ADVERT: 1}
    assert stats.adverts_received == 0


def test_unicast_mode_accepts_only_listed_peers() -> None:
    router = backup(unicast_peers=frozenset({HIGHER}))
    assert router.handle(rx(150, LOWER), S) == [
        Dropped(DropReason.NOT_A_PEER, LOWER, "192.0.2.5 is not in unicast_peers")
    ]
    assert router.deadline() == MDI_100  # not restarted
    assert router.handle(rx(150, HIGHER), S) == []
    assert router.deadline() == S + MDI_100
    assert router.statistics().drops == {DropReason.NOT_A_PEER: 1}


def test_unicast_peers_only_false_accepts_other_routers() -> None:
    # keepalived-style unicast where the peer list is where we send, not whom we hear.
    router = backup(unicast_peers=frozenset({HIGHER}), unicast_peers_only=False)
    assert router.handle(rx(150, LOWER), S) == []
    assert router.deadline() == S + MDI_100
    assert router.statistics().drops == {}


def packet(
    advert: Advertisement,
    *,
    source: IPAddress = HIGHER,
    ttl: int = VRRP_TTL,
    checksum_mode: ChecksumMode = ChecksumMode.PSEUDO_HEADER,
) -> PacketReceived:
    message = encode(advert, source=source, destination=IPV4_MULTICAST, checksum_mode=checksum_mode)
    return PacketReceived(message, source, IPV4_MULTICAST, ttl)


def corrupt_checksum(event: PacketReceived) -> PacketReceived:
    message = bytearray(event.message)
    message[7] ^= 0xFF
    return attrs.evolve(event, message=bytes(message))


def as_vrrp_v2(event: PacketReceived) -> PacketReceived:
    return attrs.evolve(event, message=b"\x21" + event.message[1:])


@pytest.mark.parametrize(
    ("event", "reason", "words"),
    [
        (packet(adv(150), ttl=64), DropReason.TTL, "TTL/hop limit 64"),
        (packet(adv(150), ttl=1), DropReason.TTL, "TTL/hop limit 1"),
        (corrupt_checksum(packet(adv(150))), DropReason.CHECKSUM, "checksum"),
        (as_vrrp_v2(packet(adv(150))), DropReason.VERSION, "VRRPv2"),
        (packet(adv(150, vrid=2)), DropReason.UNKNOWN_VRID, "VRID 2"),
        (
            packet(adv(150), checksum_mode=ChecksumMode.MESSAGE_ONLY),
            DropReason.CHECKSUM,
            "message-only",
        ),
    ],
)
def test_invalid_packets_are_dropped_counted_and_change_nothing(
    event: PacketReceived, reason: DropReason, words: str
) -> None:
    router, t = master()
    before = router.statistics()
    actions = router.handle(event, t + 1)
    assert len(actions) == 1
    dropped = actions[0]
    assert isinstance(dropped, Dropped)
    assert (dropped.reason, dropped.source) == (reason, HIGHER)
    assert words in dropped.detail
    assert router.state is State.MASTER
    assert router.deadline() == t + S
    stats = router.statistics()
    assert stats.drops == {reason: 1}
    assert stats.dropped == 1
    assert attrs.evolve(stats, drops={}) == attrs.evolve(before, drops={})


def test_a_valid_packet_is_decoded_and_processed() -> None:
    router, t = master()
    assert router.handle(packet(adv(150)), t + 1)[-1] == changed(
        State.MASTER,
        State.BACKUP,
        Cause.HIGHER_PRIORITY,
        "192.0.2.20 advertises priority 150 (ours 100)",
    )


def test_packets_are_checked_with_the_configured_checksum_mode() -> None:
    router, t = master(checksum_mode=ChecksumMode.MESSAGE_ONLY)
    drop = router.handle(packet(adv(150)), t + 1)  # pseudo-header form: not ours
    assert [type(a) for a in drop] == [Dropped]
    router.handle(packet(adv(150), checksum_mode=ChecksumMode.MESSAGE_ONLY), t + 2)
    assert router.state is State.BACKUP


def test_an_advert_of_the_other_family_is_an_unknown_vrid() -> None:
    router = backup()
    link_local = IPv6Address("fe80::2")
    event = AdvertReceived(link_local, adv(150, addresses=(IPv6Address("fe80::100"),)))
    assert router.handle(event, S) == [Dropped(DropReason.UNKNOWN_VRID, link_local, "VRID 1")]
    assert router.deadline() == MDI_100


# ------------------------------------------------------------------------------- notices


def test_address_list_mismatch_is_noticed_and_the_advert_still_processed() -> None:
    router = backup()
    assert router.handle(rx(150, addresses=(OTHER_VIP,)), S) == [
        Notice(
            NoticeKind.ADDRESS_MISMATCH,
            HIGHER,
            "advertises 198.51.100.7 for VRID 1, we have 192.0.2.100: a misconfiguration or"
            " another cluster using the same VRID",
        )
    ]
    assert router.deadline() == S + MDI_100


def test_a_mismatch_is_noticed_each_time_until_a_reload_fixes_it() -> None:
    # The router remembers the notices of the last advertisement it checked: the same one
    # again is noticed again, and a reload that fixes the mismatch ends them.
    router = backup()
    event = rx(150, addresses=(OTHER_VIP,))
    assert [type(a) for a in router.handle(event, S)] == [Notice]
    assert [type(a) for a in router.handle(event, 2 * S)] == [Notice]
    router.handle(Reconfigure(attrs.evolve(BASE, addresses=(OTHER_VIP,))), 2 * S + 1)
    assert router.handle(event, 3 * S) == []
    assert router.deadline() == 3 * S + MDI_100


def test_the_same_addresses_in_another_order_are_no_mismatch() -> None:
    router = backup(addresses=(VIP, OTHER_VIP))
    assert router.handle(rx(150, addresses=(OTHER_VIP, VIP)), S) == []


def test_priority_zero_with_another_interval_is_no_interval_mismatch() -> None:
    router = backup()
    assert router.handle(rx(0, interval_cs=50), S) == []


def test_owner_conflict_is_noticed_and_the_owner_reasserts_against_a_lower_address() -> None:
    # RFC 9568 erratum 8298: an owner processes adverts and logs the conflict.
    router = owner()
    assert router.handle(rx(255, LOWER), S // 2) == [
        Notice(NoticeKind.OWNER_CONFLICT, LOWER, "also claims to own the addresses (priority 255)"),
        send(255),
        Announce(),
    ]
    assert fire(router) == (S // 2 + REASSERT_REANNOUNCE, [Announce()])
    assert router.deadline() == S // 2 + S


def test_a_non_owner_hearing_priority_255_notes_no_owner_conflict() -> None:
    router = backup()
    assert router.handle(rx(255), S) == []


def test_notices_come_first_in_a_fixed_order() -> None:
    router = owner()
    actions = router.handle(rx(255, interval_cs=50, addresses=(OTHER_VIP,)), S)
    assert [a.kind for a in actions if isinstance(a, Notice)] == [
        NoticeKind.ADDRESS_MISMATCH,
        NoticeKind.INTERVAL_MISMATCH,
        NoticeKind.OWNER_CONFLICT,
    ]
    assert [type(a) for a in actions[3:]] == [SendAdvert, RemoveVirtual, StateChanged]


# -------------------------------------------------------------------------------- health


def test_lowering_a_masters_priority_advertises_it_at_once() -> None:
    router, t = master()
    now = t + 300_000
    assert router.handle(HealthChanged(80), now) == [send(80)]
    assert router.deadline() == now + S
    assert router.priority == 80
    stats = router.statistics()
    assert (stats.effective_priority, stats.base_priority) == (80, 100)
    assert stats.master_priority == 80
    assert fire(router) == (now + S, [send(80)])


def test_raising_a_masters_priority_advertises_it_at_once() -> None:
    router, t = master()
    assert router.handle(HealthChanged(120), t + 1) == [send(120)]


def test_health_without_a_change_does_nothing() -> None:
    router, t = master()
    assert router.handle(HealthChanged(100), t + 1) == []
    assert router.deadline() == t + S
    idle = backup()
    assert idle.handle(HealthChanged(100), S) == []
    assert idle.deadline() == MDI_100


def test_changing_a_backups_priority_recomputes_its_down_timer_from_its_start() -> None:
    router = backup()  # down timer started at 0
    assert router.handle(HealthChanged(200), S) == []
    assert router.deadline() == MDI_200
    router.handle(HealthChanged(50), 2 * S)
    assert router.deadline() == 3 * S + 804_687  # Skew_Time(50, 1 s) = 206 s / 256, floored


def test_changing_priority_recomputes_a_skew_timer_and_keeps_its_cause() -> None:
    router = backup()
    router.handle(rx(0), S)
    router.handle(HealthChanged(200), S + 100_000)
    assert router.deadline() == S + SKEW_200
    assert fire(router)[1][-1] == changed(
        State.BACKUP, State.MASTER, Cause.MASTER_LEFT, "the master left (priority 0)", 200
    )


def test_changing_priority_keeps_a_pending_preemption() -> None:
    router = backup()
    router.handle(rx(50, LOWER), S)
    router.handle(HealthChanged(200), S + 100_000)
    assert router.deadline() == S + SKEW_200
    assert fire(router)[1][-1] == changed(
        State.BACKUP, State.MASTER, Cause.PREEMPT, TO_MASTER_PREEMPT.reason, 200
    )


def test_changing_priority_recomputes_with_the_learned_interval() -> None:
    router = backup()
    router.handle(rx(150, interval_cs=50), S)
    router.handle(HealthChanged(200), S + 200_000)
    assert router.deadline() == S + 1_500_000 + 109_375  # Skew_Time(200, 0.5 s)


def test_a_raised_priority_whose_down_interval_already_ran_out_takes_over_at_next_timeout() -> None:
    router = backup(priority=1)  # Master_Down_Interval 3.996093 s
    now = 3_500_000
    assert router.handle(HealthChanged(254), now) == []
    assert router.deadline() == 3_007_812  # already past: the runtime fires at max(it, clock)
    actions = router.handle(Timeout(), now)
    assert actions[-1] == changed(
        State.BACKUP, State.MASTER, Cause.MASTER_DOWN, TO_MASTER_DOWN.reason, 254
    )
    assert router.deadline() == now + S


def test_fault_on_a_master_sends_priority_zero_then_releases_at_once() -> None:
    router, t = master()
    now = t + 400_000
    assert router.handle(HealthChanged(100, ETH0_DOWN), now) == [
        send(0),
        RemoveVirtual(),
        changed(State.MASTER, State.FAULT, Cause.FAULT, "fault: eth0"),
    ]
    assert router.deadline() is None
    assert not holding(router)
    stats = router.statistics()
    assert (stats.priority_zero_sent, stats.faults, stats.master_address) == (1, ETH0_DOWN, None)


def test_fault_on_a_backup_is_silent() -> None:
    router = backup()
    assert router.handle(HealthChanged(100, ETH0_DOWN), S) == [
        changed(State.BACKUP, State.FAULT, Cause.FAULT, "fault: eth0")
    ]
    assert router.deadline() is None


@pytest.mark.parametrize("priority", [0, 150, 50, 255])
def test_fault_ignores_advertisements_except_for_counting(priority: int) -> None:
    router = backup()
    router.handle(HealthChanged(100, ETH0_DOWN), S)
    assert router.handle(rx(priority), 2 * S) == []
    assert router.state is State.FAULT
    assert router.deadline() is None
    stats = router.statistics()
    assert stats.adverts_received == 1
    assert stats.priority_zero_received == (1 if priority == 0 else 0)


def test_clearing_faults_returns_to_backup_with_a_full_down_timer() -> None:
    router = backup()
    router.handle(rx(150, interval_cs=50), S // 2)  # learned 0.5 s from a master
    router.handle(HealthChanged(100, ETH0_DOWN), S)
    assert router.handle(HealthChanged(100), 10 * S) == [
        changed(State.FAULT, State.BACKUP, Cause.RECOVERED, "faults cleared")
    ]
    # Like a restart (keepalived resets the learned interval when leaving FAULT).
    assert router.deadline() == 10 * S + MDI_100
    assert router.statistics().master_adver_interval == S


def test_changes_while_in_fault_are_silent_and_recovery_uses_the_new_priority() -> None:
    router = backup()
    router.handle(HealthChanged(100, ETH0_DOWN), S)
    assert router.handle(HealthChanged(100, frozenset({"eth0", "chk"})), 2 * S) == []
    assert router.handle(HealthChanged(200, ETH0_DOWN), 3 * S) == []
    assert router.state is State.FAULT
    router.handle(HealthChanged(200), 4 * S)
    assert router.deadline() == 4 * S + MDI_200


def test_owner_ignores_priority_changes() -> None:
    router = owner()
    assert router.handle(HealthChanged(50), S // 2) == []
    assert router.priority == 255
    assert router.statistics().effective_priority == 255
    assert router.deadline() == S


def test_owner_enters_fault_and_takes_back_over_at_once_when_it_clears() -> None:
    router = owner()
    assert router.handle(HealthChanged(100, ETH0_DOWN), S // 2) == [
        send(0),
        RemoveVirtual(),
        changed(State.MASTER, State.FAULT, Cause.FAULT, "fault: eth0", 255),
    ]
    assert router.handle(HealthChanged(100), 7 * S) == [
        send(255),
        InstallVirtual(),
        Announce(),
        changed(State.FAULT, State.MASTER, Cause.RECOVERED, "faults cleared", 255),
    ]
    assert router.deadline() == 8 * S


@pytest.mark.parametrize("priority", [0, 255, -1, 1000])
def test_out_of_range_priority_for_a_non_owner_is_a_value_error(priority: int) -> None:
    router, t = master()
    with pytest.raises(ValueError):
        router.handle(HealthChanged(priority), t + 1)
    assert (router.state, router.priority, router.deadline()) == (State.MASTER, 100, t + S)


# --------------------------------------------------------------------------- maintenance


def test_maintenance_on_a_master_sends_priority_zero_and_keeps_addresses() -> None:
    router, t = master()
    now = t + 300_000
    assert router.handle(MaintenanceChanged(on=True), now) == [
        send(0),
        changed(State.MASTER, State.FAULT, Cause.MAINTENANCE, "maintenance mode"),
    ]
    assert holding(router)  # graceful handover
    assert router.deadline() == now + RELEASE_1S
    stats = router.statistics()
    assert (stats.maintenance, stats.holding_addresses) == (True, True)


def test_maintenance_handover_releases_when_the_new_master_is_heard() -> None:
    router, t = master()
    router.handle(MaintenanceChanged(on=True), t)
    assert router.handle(rx(0), t + 1) == []  # priority 0 is not a new master
    assert holding(router)
    # The new master is heard: the addresses go HANDOVER_GRACE later, once it has
    # installed and announced them.
    assert router.handle(rx(50, LOWER), t + SKEW_100) == []
    assert holding(router)
    assert router.deadline() == t + SKEW_100 + HANDOVER_GRACE
    assert fire(router) == (t + SKEW_100 + HANDOVER_GRACE, [RemoveVirtual()])
    assert not holding(router)
    assert router.state is State.FAULT
    assert router.deadline() is None


def test_maintenance_handover_releases_after_release_timeout() -> None:
    router, t = master()
    router.handle(MaintenanceChanged(on=True), t)
    assert router.handle(Timeout(), t + RELEASE_1S - 1) == []
    assert fire(router) == (t + RELEASE_1S, [RemoveVirtual()])
    assert router.deadline() is None
    assert router.state is State.FAULT


def test_maintenance_without_graceful_handover_releases_at_once() -> None:
    router, t = master(graceful_handover=False)
    assert router.handle(MaintenanceChanged(on=True), t + 1) == [
        send(0),
        RemoveVirtual(),
        changed(State.MASTER, State.FAULT, Cause.MAINTENANCE, "maintenance mode"),
    ]
    assert router.deadline() is None


def test_a_real_fault_during_a_maintenance_handover_releases_at_once() -> None:
    router, t = master()
    router.handle(MaintenanceChanged(on=True), t)
    assert router.handle(HealthChanged(100, ETH0_DOWN), t + 1) == [RemoveVirtual()]
    assert router.deadline() is None
    assert router.handle(MaintenanceChanged(on=False), t + 2) == []  # still faulty
    assert router.handle(HealthChanged(100), 9 * S) == [
        changed(State.FAULT, State.BACKUP, Cause.RECOVERED, "faults cleared")
    ]


def test_maintenance_off_returns_to_backup_with_a_full_down_timer() -> None:
    router, t = master()
    router.handle(MaintenanceChanged(on=True), t)
    fire(router)
    now = t + 10 * S
    assert router.handle(MaintenanceChanged(on=False), now) == [
        changed(State.FAULT, State.BACKUP, Cause.RECOVERED, "faults cleared")
    ]
    assert router.deadline() == now + MDI_100


def test_maintenance_off_during_the_handover_releases_and_returns_to_backup() -> None:
    router, t = master()
    router.handle(MaintenanceChanged(on=True), t)
    assert router.handle(MaintenanceChanged(on=False), t + 1) == [
        RemoveVirtual(),
        changed(State.FAULT, State.BACKUP, Cause.RECOVERED, "faults cleared"),
    ]
    assert router.deadline() == t + 1 + MDI_100


def test_owner_maintenance_keeps_addresses_and_takes_back_over_without_reinstalling() -> None:
    router = owner()
    assert router.handle(MaintenanceChanged(on=True), 100) == [
        send(0),
        changed(State.MASTER, State.FAULT, Cause.MAINTENANCE, "maintenance mode", 255),
    ]
    assert router.handle(MaintenanceChanged(on=False), 200) == [
        send(255),
        Announce(),
        changed(State.FAULT, State.MASTER, Cause.RECOVERED, "faults cleared", 255),
    ]
    assert router.deadline() == 200 + S


def test_maintenance_on_a_backup_enters_fault_silently() -> None:
    router = backup()
    assert router.handle(MaintenanceChanged(on=True), S) == [
        changed(State.BACKUP, State.FAULT, Cause.MAINTENANCE, "maintenance mode")
    ]
    assert router.deadline() is None


def test_maintenance_while_in_fault_waits_for_both_to_clear() -> None:
    router = backup()
    router.handle(HealthChanged(100, ETH0_DOWN), S)
    assert router.handle(MaintenanceChanged(on=True), 2 * S) == []
    assert router.statistics().maintenance
    assert router.handle(HealthChanged(100), 3 * S) == []
    assert router.state is State.FAULT
    assert router.handle(MaintenanceChanged(on=False), 4 * S) == [
        changed(State.FAULT, State.BACKUP, Cause.RECOVERED, "faults cleared")
    ]


# ------------------------------------------------------------------------------ shutdown


SHUTDOWN_FROM_MASTER = changed(State.MASTER, State.INITIALIZE, Cause.SHUTDOWN, "shutdown")


def test_master_shutdown_sends_priority_zero_and_keeps_addresses_until_the_new_master() -> None:
    router, t = master()
    now = t + 300_000
    assert router.handle(Shutdown(), now) == [send(0), SHUTDOWN_FROM_MASTER]
    assert holding(router)
    assert not stopped(router)
    assert router.deadline() == now + RELEASE_1S
    assert router.handle(rx(50, LOWER), now + SKEW_100) == []
    assert not stopped(router)
    # A later advert of the new master does not push the release back.
    assert router.handle(rx(50, LOWER), now + SKEW_100 + 50_000) == []
    assert fire(router) == (now + SKEW_100 + HANDOVER_GRACE, [RemoveVirtual()])
    assert stopped(router)
    assert router.deadline() is None


def test_master_shutdown_releases_after_release_timeout() -> None:
    router, t = master()
    router.handle(Shutdown(), t)
    assert fire(router) == (t + RELEASE_1S, [RemoveVirtual()])
    assert stopped(router)
    assert router.deadline() is None


@pytest.mark.parametrize(("immediate", "graceful"), [(True, True), (True, False), (False, False)])
def test_immediate_or_non_graceful_master_shutdown_releases_at_once(
    immediate: bool, graceful: bool
) -> None:
    # docs/keepalived.md: priority-0 advert, then remove addresses, then the STOP notification.
    router, t = master(graceful_handover=graceful)
    assert router.handle(Shutdown(immediate=immediate), t + 1) == [
        send(0),
        RemoveVirtual(),
        SHUTDOWN_FROM_MASTER,
    ]
    assert stopped(router)
    assert router.deadline() is None


def test_backup_shutdown_is_silent() -> None:
    router = backup()
    assert router.handle(Shutdown(), S) == [
        changed(State.BACKUP, State.INITIALIZE, Cause.SHUTDOWN, "shutdown")
    ]
    assert stopped(router)
    assert router.deadline() is None
    assert router.statistics().adverts_sent == 0


@pytest.mark.parametrize("changes", [{}, {"graceful_handover": False}])
def test_immediate_backup_shutdown_is_silent_too(changes: dict[str, Any]) -> None:
    router = backup(**changes)
    assert router.handle(Shutdown(immediate=True), S) == [
        changed(State.BACKUP, State.INITIALIZE, Cause.SHUTDOWN, "shutdown")
    ]
    assert stopped(router)


def test_shutdown_twice_is_harmless() -> None:
    router, t = master()
    router.handle(Shutdown(), t)
    assert router.handle(Shutdown(), t + 1) == []
    assert holding(router)
    assert router.deadline() == t + RELEASE_1S
    silent = backup()
    silent.handle(Shutdown(), S)
    assert silent.handle(Shutdown(), 2 * S) == []
    assert silent.handle(Shutdown(immediate=True), 3 * S) == []


def test_immediate_shutdown_during_a_handover_releases_at_once() -> None:
    router, t = master()
    router.handle(Shutdown(), t)
    assert router.handle(Shutdown(immediate=True), t + 1) == [RemoveVirtual()]
    assert stopped(router)
    assert router.deadline() is None


def test_a_real_fault_during_a_shutdown_handover_releases_at_once() -> None:
    router, t = master()
    router.handle(Shutdown(), t)
    assert router.handle(HealthChanged(100, ETH0_DOWN), t + 1) == [RemoveVirtual()]
    assert stopped(router)
    assert router.deadline() is None


def test_shutdown_before_startup_stops_at_once() -> None:
    router = make()
    assert router.handle(Shutdown(), 0) == []
    assert stopped(router)
    assert router.deadline() is None


def test_shutdown_in_fault_is_silent() -> None:
    router = backup()
    router.handle(HealthChanged(100, ETH0_DOWN), S)
    assert router.handle(Shutdown(), 2 * S) == [
        changed(State.FAULT, State.INITIALIZE, Cause.SHUTDOWN, "shutdown")
    ]
    assert stopped(router)


def test_shutdown_during_a_maintenance_handover_keeps_its_release_time() -> None:
    router, t = master()
    router.handle(MaintenanceChanged(on=True), t)
    assert router.handle(Shutdown(), t + S) == [
        changed(State.FAULT, State.INITIALIZE, Cause.SHUTDOWN, "shutdown")
    ]
    assert not stopped(router)
    assert fire(router) == (t + RELEASE_1S, [RemoveVirtual()])
    assert stopped(router)


def test_a_stopped_router_ignores_adverts_and_health() -> None:
    router = backup()
    router.handle(Shutdown(), S)
    assert router.handle(rx(50, LOWER), 2 * S) == []
    assert router.handle(HealthChanged(100, ETH0_DOWN), 3 * S) == []
    assert router.handle(MaintenanceChanged(on=True), 4 * S) == []
    assert router.state is State.INITIALIZE
    assert router.deadline() is None


# ---------------------------------------------------------------------------- statistics


def test_statistics_count_everything() -> None:
    router = make()
    expected = RouterStatistics(
        state=State.INITIALIZE,
        state_since=0,
        base_priority=100,
        effective_priority=100,
        faults=frozenset(),
        maintenance=False,
        holding_addresses=False,
        master_address=None,
        master_priority=None,
        master_adver_interval=S,
        adverts_sent=0,
        adverts_received=0,
        priority_zero_sent=0,
        priority_zero_received=0,
        became_master=0,
        drops={},
    )
    assert router.statistics() == expected

    router.handle(Startup(), 7)
    expected = attrs.evolve(expected, state=State.BACKUP, state_since=7)
    assert router.statistics() == expected

    router.handle(rx(150, interval_cs=50), S)
    expected = attrs.evolve(
        expected,
        master_address=HIGHER,
        master_priority=150,
        master_adver_interval=500_000,
        adverts_received=1,
        peers={HIGHER: PeerStatistics({3: 1}, {3: S})},
    )
    assert router.statistics() == expected

    router.handle(rx(0, interval_cs=50), 2 * S)
    expected = attrs.evolve(
        expected,
        master_address=None,
        master_priority=None,
        adverts_received=2,
        priority_zero_received=1,
        peers={HIGHER: PeerStatistics({3: 2}, {3: 2 * S})},
    )
    assert router.statistics() == expected

    now, _ = fire(router)
    assert now == 2 * S + SKEW_100_HALF_SECOND
    expected = attrs.evolve(
        expected,
        state=State.MASTER,
        state_since=now,
        holding_addresses=True,
        master_address=LOCAL,
        master_priority=100,
        master_adver_interval=S,
        adverts_sent=1,
        became_master=1,
    )
    assert router.statistics() == expected

    router.handle(rx(100, LOCAL), now + 1)
    router.handle(packet(adv(150), ttl=1), now + 2)
    router.handle(packet(adv(150), ttl=2), now + 3)
    router.handle(rx(90, LOWER), now + 4)  # answered with an advert
    expected = attrs.evolve(
        expected,
        drops={DropReason.OWN_ADVERT: 1, DropReason.TTL: 2},
        adverts_received=3,
        adverts_sent=2,
        peers={
            HIGHER: PeerStatistics({3: 2}, {3: 2 * S}),
            LOWER: PeerStatistics({3: 1}, {3: now + 4}),
        },
    )
    assert router.statistics() == expected
    assert router.statistics().dropped == 3

    router.handle(HealthChanged(90, frozenset({"chk"})), now + 5)
    expected = attrs.evolve(
        expected,
        state=State.FAULT,
        state_since=now + 5,
        effective_priority=90,
        faults=frozenset({"chk"}),
        holding_addresses=False,
        master_address=None,
        master_priority=None,
        adverts_sent=3,
        priority_zero_sent=1,
    )
    assert router.statistics() == expected

    router.handle(HealthChanged(90), now + 6)
    router.handle(MaintenanceChanged(on=True), now + 7)
    expected = attrs.evolve(
        expected,
        state=State.FAULT,
        state_since=now + 7,
        faults=frozenset(),
        maintenance=True,
    )
    assert router.statistics() == expected


def test_statistics_are_a_snapshot() -> None:
    router = backup()
    before = router.statistics()
    router.handle(rx(100, LOCAL), S)
    assert before.drops == {}
    assert router.statistics().drops == {DropReason.OWN_ADVERT: 1}
