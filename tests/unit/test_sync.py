"""Sync groups: members fault, become master and yield together (keepalived semantics)."""

from __future__ import annotations

from ipaddress import ip_address

from pyvrrp.core.actions import Cause, RemoveVirtual, SendAdvert, State, StateChanged
from pyvrrp.core.events import HealthChanged, MaintenanceChanged, Startup, SyncFault, SyncState
from pyvrrp.core.router import RouterParams, VirtualRouter
from pyvrrp.core.sync import sync_events
from pyvrrp.core.timers import US_PER_SECOND as S
from pyvrrp.core.timers import master_down_interval, skew_time
from pyvrrp.testing.sim import SimLan

HOST_ADDRESS = {"A": "10.0.0.1", "B": "10.0.0.2"}


def params(host: str, vrid: int, priority: int) -> RouterParams:
    return RouterParams(
        vrid=vrid,
        addresses=(ip_address(f"192.0.2.{vrid}"),),
        local_address=ip_address(HOST_ADDRESS[host]),
        priority=priority,
        garp_delay_us=0,
    )


def state(router: VirtualRouter) -> State:
    return router.state  # a call, so that type checkers do not narrow it between events


def two_members() -> dict[str, VirtualRouter]:
    members = {"v1": VirtualRouter(params("A", 1, 100)), "v2": VirtualRouter(params("A", 2, 100))}
    for router in members.values():
        router.handle(Startup(), 0)
    return members


def test_a_member_fault_holds_the_others_in_fault_until_it_clears() -> None:
    members = two_members()
    actions = members["v1"].handle(HealthChanged(100, frozenset({"interface dummy0"})), S)
    changes = [a for a in actions if isinstance(a, StateChanged)]
    events = sync_events("g", members, "v1", changes)
    assert events == [("v2", SyncFault(True, "sync group g: v1 in FAULT", planned=False))]
    actions = members["v2"].handle(events[0][1], S)
    assert state(members["v2"]) is State.FAULT
    assert actions[-1] == StateChanged(
        State.BACKUP, State.FAULT, Cause.SYNC_GROUP, "sync group g: v1 in FAULT", 100
    )
    # Nothing more to say while nothing changes.
    changes = [a for a in actions if isinstance(a, StateChanged)]
    assert sync_events("g", members, "v2", changes) == []
    members["v1"].handle(HealthChanged(100), 2 * S)
    events = sync_events("g", members, "v1")
    assert events == [("v2", SyncFault(False, "", planned=True))]
    members["v2"].handle(events[0][1], 2 * S)
    assert state(members["v2"]) is State.BACKUP
    assert members["v2"].deadline() == 2 * S + master_down_interval(100, S)


def test_a_member_keeps_its_own_fault_when_the_group_fault_clears() -> None:
    members = two_members()
    members["v1"].handle(HealthChanged(100, frozenset({"script a"})), S)
    for name, event in sync_events("g", members, "v1"):
        members[name].handle(event, S)
    members["v2"].handle(HealthChanged(100, frozenset({"script b"})), S)
    # v1 recovers, but v2 is faulty on its own: v1 is now held by v2.
    members["v1"].handle(HealthChanged(100), 2 * S)
    events = sync_events("g", members, "v1")
    assert events == [
        ("v1", SyncFault(True, "sync group g: v2 in FAULT", planned=False)),
        ("v2", SyncFault(False, "", planned=True)),
    ]
    for name, event in events:
        members[name].handle(event, 2 * S)
    assert members["v1"].state is State.FAULT
    assert members["v2"].state is State.FAULT


def test_maintenance_of_a_member_is_a_planned_fault_for_the_group() -> None:
    members = two_members()
    members["v1"].handle(MaintenanceChanged(True), S)
    assert sync_events("g", members, "v1") == [
        ("v2", SyncFault(True, "sync group g: v1 in FAULT", planned=True))
    ]


def test_a_master_member_held_in_fault_by_a_planned_fault_keeps_addresses_until_heard() -> None:
    router = VirtualRouter(params("A", 2, 255))
    router.handle(Startup(), 0)
    actions = router.handle(SyncFault(True, "sync group g: v1 in FAULT", planned=True), S)
    assert isinstance(actions[0], SendAdvert)
    assert actions[0].advert.priority == 0
    assert not any(isinstance(a, RemoveVirtual) for a in actions)
    assert router.holding_addresses
    actions = router.handle(SyncFault(True, "sync group g: v1 in FAULT", planned=False), S)
    assert router.state is State.FAULT


def test_sync_transitions_are_not_propagated_again() -> None:
    members = two_members()
    change = StateChanged(State.BACKUP, State.MASTER, Cause.SYNC_GROUP, "follow", 100)
    assert sync_events("g", members, "v1", [change]) == []


def test_sync_state_only_moves_backup_to_master_and_master_to_backup() -> None:
    router = VirtualRouter(params("A", 1, 100))
    assert router.handle(SyncState(State.MASTER), 0) == []  # Initialize: ignored
    router.handle(Startup(), 0)
    assert router.handle(SyncState(State.BACKUP), S) == []  # already backup
    actions = router.handle(SyncState(State.MASTER, "sync group g: v2 became MASTER"), S)
    assert state(router) is State.MASTER
    assert actions[-1].cause is Cause.SYNC_GROUP  # type: ignore[union-attr]
    actions = router.handle(SyncState(State.BACKUP, "sync group g: v2 became BACKUP"), 2 * S)
    assert state(router) is State.BACKUP
    assert RemoveVirtual() in actions


def host_pair() -> SimLan:
    lan = SimLan()
    for host, priority in (("A", 100), ("B", 75)):
        for vrid in (1, 2):
            lan.add(f"{host}{vrid}", params(host, vrid, priority))
        lan.sync_group(f"g{host}", f"{host}1", f"{host}2")
    lan.start_all()
    lan.run_for(10 * S)
    assert lan.masters(1) == ["A1"]
    assert lan.masters(2) == ["A2"]
    return lan


def test_a_fault_on_one_member_moves_the_whole_group_to_the_other_host() -> None:
    lan = host_pair()
    lan.inject("A1", HealthChanged(100, frozenset({"interface dummy0"})), at=20 * S)
    lan.run_until(20 * S + skew_time(75, S) + 1000)
    assert lan.masters(1) == ["B1"]
    assert lan.masters(2) == ["B2"]
    assert lan.nodes["A2"].state is State.FAULT
    lan.inject("A1", HealthChanged(100), at=30 * S)
    lan.run_until(40 * S)
    assert lan.masters(1) == ["A1"]
    assert lan.masters(2) == ["A2"]


def test_members_become_master_together_and_yield_together() -> None:
    lan = host_pair()
    # Host B gets better: B1 at 200 preempts after its Skew_Time and pulls B2 (101, whose own
    # Skew_Time is longer) along at once; A1 yields to B1 and pulls A2 along.
    lan.inject("B1", HealthChanged(200), at=20 * S)
    lan.inject("B2", HealthChanged(101), at=20 * S)
    lan.run_until(25 * S)
    assert lan.masters(1) == ["B1"]
    assert lan.masters(2) == ["B2"]
    b1_time, _, b1 = lan.transitions("B1")[-1]
    b2_time, _, b2 = lan.transitions("B2")[-1]
    assert b1.cause is Cause.PREEMPT
    assert b2.cause is Cause.SYNC_GROUP
    assert b1_time == b2_time
    # A's adverts leave at x.609375 s and arrive 100 us later; B2 alone would have preempted
    # Skew_Time(101) after the first one it heard at the raised priority.
    assert b2_time < 20_609_475 + skew_time(101, S)
    a1_time, _, a1 = lan.transitions("A1")[-1]
    a2_time, _, a2 = lan.transitions("A2")[-1]
    assert (a1.new, a1.cause) == (State.BACKUP, Cause.HIGHER_PRIORITY)
    # A2 yields in the same instant: to its group, or to B2's first advert, whichever
    # reached it first.
    assert a2.new is State.BACKUP
    assert a2_time == a1_time
    lan.run_until(60 * S)
    assert lan.masters(1) == ["B1"]
    assert lan.masters(2) == ["B2"]
