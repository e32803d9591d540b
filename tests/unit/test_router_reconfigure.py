"""Reconfigure: a reload changes a router's parameters without a flap (RFC-independent)."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import attrs
import pytest

from pyvrrp.core.actions import SendAdvert, State
from pyvrrp.core.errors import UsageError
from pyvrrp.core.events import HealthChanged, Reconfigure, Startup, Timeout
from pyvrrp.core.router import RouterParams, VirtualRouter

VIP = IPv4Address("192.0.2.100")
NEW_VIP = IPv4Address("192.0.2.101")
LOCAL = IPv4Address("192.0.2.10")
S = 1_000_000
MDI_100 = 3_609_375
MDI_50 = 3_804_687  # 3 s + 206 s / 256, floored
BASE = RouterParams(vrid=1, addresses=(VIP,), local_address=LOCAL, garp_delay_us=0)


def master() -> VirtualRouter:
    router = VirtualRouter(BASE)
    router.handle(Startup(), 0)
    router.handle(Timeout(), MDI_100)
    assert router.state is State.MASTER
    return router


def test_unchanged_parameters_change_nothing() -> None:
    router = master()
    deadline = router.deadline()
    assert router.handle(Reconfigure(BASE, 100), 4 * S) == []
    assert router.deadline() == deadline


def test_a_master_advertises_new_addresses_and_priority_once_and_rearms_its_timer() -> None:
    router = master()
    new = attrs.evolve(BASE, addresses=(VIP, NEW_VIP), priority=150, advert_interval_cs=50)
    actions = router.handle(Reconfigure(new, 90), 4 * S)
    assert len(actions) == 1
    assert isinstance(actions[0], SendAdvert)
    advert = actions[0].advert
    assert (advert.priority, advert.addresses, advert.max_advert_interval) == (
        90,
        (VIP, NEW_VIP),
        50,
    )
    assert router.priority == 90
    assert router.deadline() == 4 * S + S // 2
    assert router.statistics().master_priority == 90
    assert router.state is State.MASTER and router.holding_addresses


def test_a_master_starts_and_stops_periodic_announcements_with_garp_refresh() -> None:
    router = master()
    router.handle(Reconfigure(attrs.evolve(BASE, garp_refresh_us=30 * S)), 4 * S)
    assert router.deadline() == 4 * S + S  # the advert timer comes first
    router.handle(Reconfigure(attrs.evolve(BASE, garp_refresh_us=2 * S // 10)), 4 * S + 1)
    assert router.deadline() == 4 * S + 1 + 2 * S // 10
    router.handle(Reconfigure(BASE), 4 * S + 2)
    assert router.deadline() == 4 * S + 2 + S


def test_a_backup_recomputes_its_running_down_timer_with_the_new_priority() -> None:
    router = VirtualRouter(BASE)
    router.handle(Startup(), 0)
    assert router.deadline() == MDI_100
    assert router.handle(Reconfigure(attrs.evolve(BASE, priority=50), 50), S) == []
    assert router.deadline() == MDI_50  # from the start of the timer, not from the reload
    assert router.state is State.BACKUP


def test_becoming_the_owner_and_back() -> None:
    router = VirtualRouter(BASE)
    router.handle(Startup(), 0)
    router.handle(Reconfigure(attrs.evolve(BASE, priority=255), 100), S)
    assert router.priority == 255
    router.handle(Reconfigure(attrs.evolve(BASE, priority=254)), 2 * S)
    assert router.priority == 254  # the base priority until trackers say more


@pytest.mark.parametrize(
    "change",
    [{"vrid": 2}, {"local_address": IPv4Address("192.0.2.11")}],
)
def test_identity_cannot_change(change: dict[str, Any]) -> None:
    router = master()
    with pytest.raises(UsageError, match="cannot change the VRID"):
        router.handle(Reconfigure(attrs.evolve(BASE, **change)), 4 * S)


def test_an_out_of_range_priority_is_a_bug() -> None:
    router = master()
    with pytest.raises(ValueError, match=r"priority must be in 1\.\.254"):
        router.handle(Reconfigure(BASE, 255), 4 * S)


def test_a_router_in_fault_takes_new_parameters_silently_and_stays_in_fault() -> None:
    router = VirtualRouter(BASE)
    router.handle(HealthChanged(100, frozenset({"eth0"})), 0)
    router.handle(Startup(), 0)
    assert router.state is State.FAULT
    new = attrs.evolve(BASE, addresses=(VIP, NEW_VIP))
    assert router.handle(Reconfigure(new, 90), S) == []
    assert (router.state, router.deadline()) == (State.FAULT, None)
    assert (router.params, router.priority) == (new, 90)
