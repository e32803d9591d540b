"""The router's two shortcuts for what happens every interval (pyvrrp/core/router.py).

``routine_packet`` / ``heard_again``: a backup's repetitions of its master's advertisement,
counted elsewhere (the kernel), must leave the router exactly where handling each would
have; ``routine_advert``: a master's Adver_Timer without the Timeout event must be exactly
``handle(Timeout(), now)``. Both must refuse (None, UsageError) whenever the event would do
anything more. Virtual time in integer microseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyvrrp.core import timers
from pyvrrp.core.actions import State
from pyvrrp.core.errors import UsageError
from pyvrrp.core.events import (
    AdvertiseNow,
    AdvertReceived,
    Event,
    HealthChanged,
    InstallFailed,
    MaintenanceChanged,
    PacketReceived,
    Reconfigure,
    Startup,
    SyncFault,
    Timeout,
)
from pyvrrp.core.packet import IPV4_MULTICAST, VRRP_TTL, Advertisement, encode, encode_v2
from pyvrrp.core.params import V2_AND_V3, V2_ONLY, V3_ONLY
from pyvrrp.core.router import REASSERT_REANNOUNCE, RouterParams, VirtualRouter

VIP = IPv4Address("192.0.2.100")
OTHER_VIP = IPv4Address("198.51.100.7")
LOCAL = IPv4Address("192.0.2.10")
MASTER = IPv4Address("192.0.2.20")
PEERS = (IPv4Address("192.0.2.21"), IPv4Address("192.0.2.22"))
S = 1_000_000


def params(**changes: Any) -> RouterParams:
    base = RouterParams(vrid=1, addresses=(VIP,), local_address=LOCAL, garp_delay_us=0)
    return attrs.evolve(base, **changes)


def backup(now: int = 0, **changes: Any) -> VirtualRouter:
    router = VirtualRouter(params(**changes))
    router.handle(Startup(), now)
    assert router.state is State.BACKUP
    return router


def packet(
    priority: int = 150,
    *,
    version: int = 3,
    interval_cs: int = 100,
    addresses: tuple[IPv4Address, ...] = (VIP,),
    source: IPv4Address = MASTER,
    ttl: int = VRRP_TTL,
) -> PacketReceived:
    """An advertisement from ``source`` to the multicast group, as a transport hands it."""
    advert = Advertisement(
        vrid=1,
        priority=priority,
        max_advert_interval=interval_cs,
        addresses=addresses,
        version=version,
    )
    if version == 2:
        message = encode_v2(advert)
    else:
        message = encode(advert, source=source, destination=IPV4_MULTICAST)
    return PacketReceived(message, source, IPV4_MULTICAST, ttl)


def routine(router: VirtualRouter) -> PacketReceived | None:
    """``routine_packet``, read through a call so that type checkers do not narrow it."""
    return router.routine_packet


def assert_same(a: VirtualRouter, b: VirtualRouter) -> None:
    """Everything visible of the two routers is the same, now and on what comes next."""
    assert a.statistics() == b.statistics()
    assert a.deadline() == b.deadline()
    assert a.adver_timer == b.adver_timer
    assert a.routine_packet == b.routine_packet
    assert a.state is b.state


# ----------------------------------------------------------- routine_packet, heard_again


@st.composite
def routine_cases(draw: st.DrawFn) -> tuple[RouterParams, PacketReceived]:
    """A backup's parameters and an advertisement it accepts as routine."""
    versions = draw(st.sampled_from([V3_ONLY, V2_ONLY, V2_AND_V3]))
    if versions == V3_ONLY:
        interval_cs = draw(st.sampled_from([1, 7, 100, 350, 4095]))
    else:
        interval_cs = draw(st.sampled_from([100, 300]))
    ours = draw(st.integers(1, 254))
    preempt = draw(st.booleans())
    # Preempting, only an equal or higher priority is accepted; without, any above 0.
    theirs = draw(st.integers(ours if preempt else 1, 255))
    version = (
        2 if versions == V2_ONLY else 3 if versions == V3_ONLY else draw(st.sampled_from([2, 3]))
    )
    router_params = params(
        priority=ours,
        preempt=preempt,
        preempt_delay_us=draw(st.sampled_from([0, 2 * S])),
        advert_interval_cs=interval_cs,
        versions=versions,
    )
    return router_params, packet(theirs, version=version, interval_cs=interval_cs)


@settings(max_examples=300, deadline=None)
@given(case=routine_cases(), data=st.data())
def test_repetitions_heard_again_leave_the_router_as_handling_each_would(
    case: tuple[RouterParams, PacketReceived], data: st.DataObject
) -> None:
    router_params, routine = case
    handled = VirtualRouter(router_params)
    absorbed = VirtualRouter(router_params)
    for router in (handled, absorbed):
        router.handle(Startup(), 0)
    first_deadline = handled.deadline()
    assert first_deadline is not None
    t0 = data.draw(st.integers(0, first_deadline - 1), label="t0")
    for router in (handled, absorbed):
        assert router.handle(routine, t0) == []
        assert router.routine_packet is None  # one copy: not yet a steady master
    accepted = handled.deadline()
    assert accepted is not None
    t1 = data.draw(st.integers(t0 + 1, accepted - 1), label="t1")
    for router in (handled, absorbed):
        assert router.handle(routine, t1) == []
        assert router.routine_packet == routine
    deadline = handled.deadline()
    assert deadline is not None
    down_interval = deadline - t1
    gaps = data.draw(st.lists(st.integers(1, down_interval - 1), min_size=1, max_size=25))
    # Each repetition is handled by the second router too, or absorbed: a run of absorbed
    # ones is reported by one heard_again at its end, or split where "flush" says.
    modes = data.draw(
        st.lists(
            st.sampled_from(["handle", "absorb", "flush"]),
            min_size=len(gaps),
            max_size=len(gaps),
        )
    )
    now = t1
    pending = 0
    calls = 0
    for gap, mode in zip(gaps, modes, strict=True):
        now += gap
        assert handled.handle(routine, now) == []
        if mode == "handle":
            if pending:
                absorbed.heard_again(pending, now - gap)
                pending, calls = 0, calls + 1
            assert absorbed.handle(routine, now) == []
        else:
            pending += 1
            if mode == "flush":
                absorbed.heard_again(pending, now)
                pending, calls = 0, calls + 1
    if pending:
        absorbed.heard_again(pending, now)
    assert absorbed.routine_packet == routine
    assert_same(handled, absorbed)
    stats = absorbed.statistics()
    assert stats.adverts_received == 2 + len(gaps)
    assert stats.peers[MASTER].last == now
    assert absorbed.deadline() == now + down_interval
    # The hidden half of the Master_Down_Timer (when it started, and why) agrees too: a new
    # priority recomputes it from its start, and its firing says why.
    new_priority = data.draw(st.integers(1, 254), label="new priority")
    for router in (handled, absorbed):
        router.handle(HealthChanged(new_priority), now + 1)
    assert_same(handled, absorbed)
    at = handled.deadline()
    assert at is not None
    assert handled.handle(Timeout(), at) == absorbed.handle(Timeout(), at)
    assert_same(handled, absorbed)


def test_heard_again_counts_per_peer_and_restarts_the_timer_from_the_last_copy() -> None:
    router = backup()
    routine = packet(150)
    router.handle(routine, S - 1)
    router.handle(routine, S)
    down_interval = router.deadline()
    assert down_interval is not None
    down_interval -= S
    router.heard_again(4, 5 * S)
    stats = router.statistics()
    assert stats.adverts_received == 6
    assert stats.peers[MASTER].adverts == {3: 6}
    assert stats.peers[MASTER].last_seen == {3: 5 * S}
    assert (stats.master_address, stats.master_priority) == (MASTER, 150)
    assert router.deadline() == 5 * S + down_interval
    assert router.routine_packet == routine
    # Counted as heard: the timer does not fire at its old time.
    assert router.handle(Timeout(), S + down_interval) == []
    assert router.state is State.BACKUP


def test_heard_again_of_nothing_changes_nothing() -> None:
    router = backup()
    routine = packet(150)
    router.handle(routine, S - 1)
    router.handle(routine, S)
    before = router.statistics(), router.deadline()
    router.heard_again(0, 3 * S)
    assert (router.statistics(), router.deadline()) == before
    assert router.routine_packet == routine


def test_a_last_copy_before_the_accepted_packet_does_not_move_the_timer_earlier() -> None:
    router = backup()
    router.handle(packet(150), 2 * S - 1)
    router.handle(packet(150), 2 * S)
    deadline = router.deadline()
    assert deadline is not None
    router.heard_again(3, 2 * S - 700_000)
    assert router.deadline() == deadline
    stats = router.statistics()
    assert stats.adverts_received == 5
    assert stats.peers[MASTER].last == 2 * S
    # Nor one before a later report.
    router.heard_again(1, 4 * S)
    router.heard_again(2, 3 * S)
    assert router.deadline() == deadline + 2 * S
    assert router.statistics().peers[MASTER].last == 4 * S


def test_heard_again_without_a_routine_packet_is_a_usage_error() -> None:
    router = backup()
    with pytest.raises(UsageError, match="routine_packet is None"):
        router.heard_again(1, S)
    assert router.statistics().adverts_received == 0


def test_a_backup_accepting_a_lower_priority_master_without_preemption_is_routine() -> None:
    router = backup(preempt=False)
    routine = packet(50)
    assert router.handle(routine, S) == []
    assert router.routine_packet is None  # the first copy: a master not yet steady
    assert router.handle(routine, 2 * S) == []
    assert router.routine_packet == routine


def test_a_master_yielding_is_not_routine_its_copies_as_a_backup_are() -> None:
    router, now = in_master()
    advert = packet(150)
    assert router.handle(advert, now + 1) != []  # parting advertisement, Backup
    assert router.state is State.BACKUP
    assert router.routine_packet is None
    assert router.handle(advert, now + S) == []
    assert routine(router) is None  # accepted once as a backup: not yet
    assert router.handle(advert, now + 2 * S) == []
    assert router.routine_packet == advert


def test_a_routine_packet_needs_the_same_packet_just_before_it() -> None:
    # While senders change (a new master, the old one's parting advertisement), copies
    # taken elsewhere and counted late could be put out of order: only a master heard
    # twice in a row, with nothing between, is routine.
    router = backup()
    first, second = packet(150), packet(200, source=IPv4Address("192.0.2.30"))
    for at, event, expected in [
        (S, first, None),
        (2 * S, second, None),
        (3 * S, first, None),
        (4 * S, first, first),
        (5 * S, first, first),
    ]:
        assert router.handle(event, at) == []
        assert routine(router) == expected, at


def test_a_new_routine_packet_replaces_the_old_one() -> None:
    router = backup()
    router.handle(packet(150), S)
    router.handle(packet(150), S + 1)
    other = packet(200, source=IPv4Address("192.0.2.30"))
    router.handle(other, 2 * S)
    router.handle(other, 2 * S + 1)
    assert router.routine_packet == other
    router.heard_again(2, 3 * S)
    stats = router.statistics()
    assert stats.peers[IPv4Address("192.0.2.30")].adverts == {3: 4}
    assert stats.peers[MASTER].adverts == {3: 2}


def in_master() -> tuple[VirtualRouter, int]:
    router = backup()
    now = router.deadline()
    assert now is not None
    router.handle(Timeout(), now)
    assert router.state is State.MASTER
    return router, now


def master_hears_a_lower_priority() -> tuple[VirtualRouter, PacketReceived, int]:
    router, now = in_master()
    return router, packet(50), now + 1


def in_initialize() -> tuple[VirtualRouter, PacketReceived, int]:
    return VirtualRouter(params()), packet(150), S


def in_fault() -> tuple[VirtualRouter, PacketReceived, int]:
    router = backup()
    router.handle(HealthChanged(100, frozenset({"eth0"})), S)
    assert router.state is State.FAULT
    return router, packet(150), 2 * S


def preempting() -> tuple[VirtualRouter, PacketReceived, int]:
    return backup(), packet(50), S  # RFC 9568 §6.4.2: discarded (fast preemption)


def delaying_preemption() -> tuple[VirtualRouter, PacketReceived, int]:
    return backup(preempt_delay_us=5 * S), packet(50), S


def delay_over() -> tuple[VirtualRouter, PacketReceived, int]:
    router = backup(preempt_delay_us=5 * S)
    router.handle(packet(50), S)
    return router, packet(50), S + 3_000_000  # within Master_Down_Interval, delay not over


def priority_zero() -> tuple[VirtualRouter, PacketReceived, int]:
    return backup(), packet(0), S


def other_addresses() -> tuple[VirtualRouter, PacketReceived, int]:
    return backup(), packet(150, addresses=(OTHER_VIP,)), S


def other_interval() -> tuple[VirtualRouter, PacketReceived, int]:
    return backup(), packet(150, interval_cs=200), S


def during_a_graceful_handover() -> tuple[VirtualRouter, PacketReceived, int]:
    router, now = in_master()
    router.handle(MaintenanceChanged(True), now + 1)
    assert router.holding_addresses
    return router, packet(150), now + 2


def wrong_ttl() -> tuple[VirtualRouter, PacketReceived, int]:
    router = backup()
    router.handle(packet(150), S - 1)
    router.handle(packet(150), S)
    assert router.routine_packet is not None
    return router, packet(150, ttl=64), 2 * S


def own_advert() -> tuple[VirtualRouter, PacketReceived, int]:
    router = backup()
    router.handle(packet(150), S)
    return router, packet(150, source=LOCAL), 2 * S


@pytest.mark.parametrize(
    "scenario",
    [
        master_hears_a_lower_priority,
        in_initialize,
        in_fault,
        preempting,
        delaying_preemption,
        delay_over,
        priority_zero,
        other_addresses,
        other_interval,
        during_a_graceful_handover,
        wrong_ttl,
        own_advert,
    ],
)
def test_a_packet_that_does_more_than_restart_the_timer_is_not_routine(
    scenario: Callable[[], tuple[VirtualRouter, PacketReceived, int]],
) -> None:
    router, event, now = scenario()
    router.handle(event, now)
    assert router.routine_packet is None
    # Again, now that the router has seen it once: still not.
    router.handle(event, now + 1)
    assert router.routine_packet is None
    with pytest.raises(UsageError):
        router.heard_again(1, now + 2)


@pytest.mark.parametrize(
    "event",
    [
        Timeout(),  # nothing due: no actions, but not the packet
        AdvertiseNow(),
        HealthChanged(100),
        HealthChanged(120),
        MaintenanceChanged(False),
        SyncFault(False),
        InstallFailed("eth0: No such device"),
        Reconfigure(params()),
        AdvertReceived(
            MASTER, Advertisement(vrid=1, priority=150, max_advert_interval=100, addresses=(VIP,))
        ),
    ],
    ids=repr,
)
def test_any_other_event_clears_the_routine_packet(event: Event) -> None:
    router = backup()
    router.handle(packet(150), S - 1)
    router.handle(packet(150), S)
    assert router.routine_packet is not None
    router.handle(event, 2 * S)
    assert router.state is State.BACKUP
    assert routine(router) is None
    with pytest.raises(UsageError):
        router.heard_again(1, 3 * S)
    # The packet handled twice again is routine again.
    router.handle(packet(150), 3 * S)
    assert routine(router) is None
    router.handle(packet(150), 3 * S + 1)
    assert routine(router) == packet(150)


# ---------------------------------------------------------------------- routine_advert


def twins(script: Callable[[], VirtualRouter]) -> tuple[VirtualRouter, VirtualRouter]:
    """Two routers put through the same script: one takes the shortcut, one the event."""
    a, b = script(), script()
    assert_same(a, b)
    return a, b


def master_router(**changes: Any) -> VirtualRouter:
    router = backup(**changes)
    now = router.deadline()
    assert now is not None
    router.handle(Timeout(), now)
    assert router.state is State.MASTER
    return router


@settings(max_examples=200, deadline=None)
@given(
    interval_cs=st.sampled_from([1, 100, 350]),
    versions=st.sampled_from([V3_ONLY, V2_AND_V3, V2_ONLY]),
    unicast=st.booleans(),
    lateness=st.lists(st.integers(0, 3_500_000), min_size=1, max_size=8),
)
def test_routine_advert_is_the_timeout_of_a_master_at_its_adver_timer(
    interval_cs: int, versions: frozenset[int], unicast: bool, lateness: list[int]
) -> None:
    if versions != V3_ONLY:
        interval_cs = max(100, interval_cs - interval_cs % 100)
    changes: dict[str, Any] = {"advert_interval_cs": interval_cs, "versions": versions}
    if unicast:
        changes["unicast_peers"] = PEERS
    shortcut, event = twins(lambda: master_router(**changes))
    interval = timers.centiseconds(interval_cs)
    for late in lateness:
        late %= 3 * interval + 1  # up to three intervals late: on time, less than one, more
        timer = shortcut.adver_timer
        assert timer is not None
        now = timer + late
        send = shortcut.routine_advert(now)
        actions = event.handle(Timeout(), now)
        assert send is not None
        assert actions == [send]  # the same advertisement, datagram bytes included
        assert_same(shortcut, event)
        # From the deadline; late by a whole interval or more, from now.
        expected = timer + interval if late < interval else now + interval
        assert shortcut.adver_timer == expected


def test_routine_advert_sends_the_advertisement_and_restarts_the_timer() -> None:
    router = master_router()
    timer = router.adver_timer
    assert timer is not None
    sent = router.statistics().adverts_sent
    send = router.routine_advert(timer + 250_000)
    assert send is not None
    assert send.advert.priority == 100
    assert [d.message for d in send.datagrams] == [
        encode(
            Advertisement(vrid=1, priority=100, max_advert_interval=100, addresses=(VIP,)),
            source=LOCAL,
            destination=IPV4_MULTICAST,
        )
    ]
    assert router.statistics().adverts_sent == sent + 1
    assert router.adver_timer == timer + S
    # Over two intervals late: from now, no burst.
    send = router.routine_advert(timer + 3_100_000)
    assert send is not None
    assert router.adver_timer == timer + 4_100_000


def not_yet_due() -> tuple[VirtualRouter, int]:
    router = master_router()
    timer = router.adver_timer
    assert timer is not None
    return router, timer - 1


def a_backup_at_its_down_timer() -> tuple[VirtualRouter, int]:
    router = backup()
    now = router.deadline()
    assert now is not None
    return router, now


def in_initialize_at_any_time() -> tuple[VirtualRouter, int]:
    return VirtualRouter(params()), 10 * S


def in_fault_at_any_time() -> tuple[VirtualRouter, int]:
    router = master_router()
    router.handle(HealthChanged(100, frozenset({"eth0"})), 5 * S)
    assert router.state is State.FAULT
    return router, 20 * S


def a_leaving_master_releasing() -> tuple[VirtualRouter, int]:
    router = master_router()
    router.handle(MaintenanceChanged(True), 5 * S)
    deadline = router.deadline()  # its release time
    assert router.holding_addresses and deadline is not None
    return router, deadline


def second_announcement_due() -> tuple[VirtualRouter, int]:
    router = master_router(garp_delay_us=S)  # garp_delay: the same time as the Adver_Timer
    timer = router.adver_timer
    assert timer is not None and router.deadline() == timer
    return router, timer


def second_announcement_overdue() -> tuple[VirtualRouter, int]:
    router = master_router(garp_delay_us=600_000)
    timer = router.adver_timer
    assert timer is not None
    return router, timer  # the announcement was due before, not handled yet


def reannouncement_due() -> tuple[VirtualRouter, int]:
    router = master_router()
    timer = router.adver_timer
    assert timer is not None
    # A lower priority heard: the router reasserts and announces again REASSERT_REANNOUNCE
    # later; its next Adver_Timer comes after that.
    heard = timer - 1
    router.handle(packet(50), heard)
    timer = router.adver_timer
    assert timer == heard + S and heard + REASSERT_REANNOUNCE < timer
    return router, timer


def refresh_due() -> tuple[VirtualRouter, int]:
    router = master_router(garp_refresh_us=S)
    timer = router.adver_timer
    assert timer is not None
    return router, timer


def install_deadline_due() -> tuple[VirtualRouter, int]:
    router = master_router()
    timer = router.adver_timer
    assert timer is not None
    router.handle(InstallFailed("eth0: No such device"), timer - S)
    install_deadline = timer - S + timers.install_timeout(S)
    for _ in range(2):  # the Adver_Timer fires in between, as a routine
        send = router.routine_advert(router.adver_timer or 0)
        assert send is not None
    assert router.adver_timer == install_deadline
    return router, install_deadline


@pytest.mark.parametrize(
    "scenario",
    [
        not_yet_due,
        a_backup_at_its_down_timer,
        in_initialize_at_any_time,
        in_fault_at_any_time,
        a_leaving_master_releasing,
        second_announcement_due,
        second_announcement_overdue,
        reannouncement_due,
        refresh_due,
        install_deadline_due,
    ],
)
def test_routine_advert_refuses_and_changes_nothing_when_more_is_due(
    scenario: Callable[[], tuple[VirtualRouter, int]],
) -> None:
    shortcut, event = twins(lambda: scenario()[0])
    _, now = scenario()
    assert shortcut.routine_advert(now) is None
    assert_same(shortcut, event)
    # The Timeout that follows does the same on both: the shortcut left no trace.
    assert shortcut.handle(Timeout(), now) == event.handle(Timeout(), now)
    assert_same(shortcut, event)


def test_a_master_without_the_other_timers_takes_the_shortcut_every_interval() -> None:
    # The case the refusals above are measured against: garp_delay and refresh done with.
    router = master_router(garp_delay_us=S // 2, garp_refresh_us=0)
    timer = router.adver_timer
    assert timer is not None
    router.handle(Timeout(), timer - S // 2)  # the second announcement
    for _ in range(5):
        timer = router.adver_timer
        assert timer is not None
        assert router.routine_advert(timer) is not None
    assert router.adver_timer == timer + S
