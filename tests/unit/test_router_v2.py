"""VRRPv2 (RFC 3768) and migration mode (RFC 9568 §8.4, "2+3") in the VirtualRouter.

One state machine for every version: these tests drive routers with ``versions`` {2} and
{2, 3} through real encoded packets (``PacketReceived``) and assert the exact actions, drops
and deadlines in microseconds, then run mixed clusters in the simulator. The times are
hand-computed from RFC 3768 §6.1: Skew_Time = (256 - priority) / 256 s whatever the interval,
Master_Down_Interval = 3 x interval + Skew_Time.
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
    RemoveVirtual,
    SendAdvert,
    State,
    StateChanged,
)
from pyvrrp.core.errors import UsageError
from pyvrrp.core.events import (
    AdvertReceived,
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
    DropReason,
    IPAddress,
    decode,
    encode,
    encode_v2,
)
from pyvrrp.core.params import V2_AND_V3, V2_ONLY, V3_ONLY, RouterParams
from pyvrrp.core.router import PEER_LIMIT, PeerStatistics, VirtualRouter
from pyvrrp.testing.sim import SimLan

V4 = IPv4Address
VIP = V4("192.0.2.100")
LOCAL = V4("192.0.2.10")
LOWER = V4("192.0.2.5")
HIGHER = V4("192.0.2.20")
PEER_B = V4("192.0.2.30")

S = 1_000_000
# RFC 3768 §6.1, floored to the microsecond.
SKEW_V2_100 = 609_375  # 156 / 256 s
SKEW_V2_150 = 414_062  # 106 / 256 s (414062.5)
SKEW_V2_200 = 218_750  # 56 / 256 s
MDI_V2_100 = 3 * S + SKEW_V2_100
MDI_V2_100_2S = 6 * S + SKEW_V2_100  # not 6 s + 2 x 609375 µs as VRRPv3 would have it
MDI_V2_150 = 3 * S + SKEW_V2_150
MDI_V2_200 = 3 * S + SKEW_V2_200

BASE = RouterParams(
    vrid=1, addresses=(VIP,), local_address=LOCAL, garp_delay_us=0, versions=V2_ONLY
)


def params(**changes: Any) -> RouterParams:
    return attrs.evolve(BASE, **changes)


def backup(now: int = 0, **changes: Any) -> VirtualRouter:
    router = VirtualRouter(params(**changes))
    router.handle(Startup(), now)
    assert router.state is State.BACKUP
    return router


def fire(router: VirtualRouter) -> tuple[int, list[Action]]:
    """Deliver ``Timeout`` at exactly ``deadline()``."""
    now = router.deadline()
    assert now is not None
    return now, router.handle(Timeout(), now)


def master(**changes: Any) -> tuple[VirtualRouter, int]:
    router = backup(**changes)
    now, _ = fire(router)
    assert router.state is State.MASTER
    return router, now


def adv(priority: int, interval_cs: int = 100, vrid: int = 1) -> Advertisement:
    return Advertisement(
        vrid=vrid, priority=priority, max_advert_interval=interval_cs, addresses=(VIP,)
    )


def v2(
    priority: int,
    source: IPAddress = HIGHER,
    *,
    interval_cs: int = 100,
    auth_pass: bytes = b"",
    destination: IPAddress = IPV4_MULTICAST,
) -> PacketReceived:
    """A VRRPv2 advertisement as a socket delivers it."""
    message = encode_v2(adv(priority, interval_cs), auth_pass=auth_pass)
    return PacketReceived(message, source, destination, VRRP_TTL)


def v3(
    priority: int,
    source: IPAddress = HIGHER,
    *,
    interval_cs: int = 100,
    destination: IPAddress = IPV4_MULTICAST,
) -> PacketReceived:
    message = encode(adv(priority, interval_cs), source=source, destination=destination)
    return PacketReceived(message, source, destination, VRRP_TTL)


def versions_sent(action: SendAdvert) -> list[tuple[int, IPAddress]]:
    """Each datagram's VRRP version (the high nibble of its first byte) and destination."""
    return [(d.message[0] >> 4, d.destination) for d in action.datagrams]


def sends(actions: list[Action]) -> list[SendAdvert]:
    return [a for a in actions if isinstance(a, SendAdvert)]


def drops(actions: list[Action]) -> list[DropReason]:
    return [a.reason for a in actions if isinstance(a, Dropped)]


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"advert_interval_cs": 150}, "whole number of seconds in 100..25500"),
        ({"advert_interval_cs": 25_600}, "whole number of seconds in 100..25500"),
        ({"advert_interval_cs": 50}, "whole number of seconds"),
        ({"versions": V2_AND_V3, "advert_interval_cs": 4_100}, "in 100..4000"),
        ({"versions": V2_AND_V3, "advert_interval_cs": 250}, "in 100..4000"),
        ({"versions": {4}}, "versions must be {3}, {2} or {2, 3}"),
        ({"versions": ()}, "versions must be"),
        ({"versions": V3_ONLY, "auth_pass": b"secret"}, "VRRPv3 has no authentication"),
        ({"auth_pass": b"123456789"}, "at most 8 bytes"),
        ({"auth_pass": b"a\0b"}, "NUL"),
    ],
)
def test_params_check_what_vrrpv2_can_carry(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("{", r"\{").replace("}", r"\}")):
        params(**changes)


def test_params_refuse_vrrpv2_over_ipv6() -> None:
    with pytest.raises(UsageError, match="IPv4 only"):
        RouterParams(
            vrid=1,
            addresses=(IPv6Address("fe80::1"),),
            local_address=IPv6Address("fe80::2"),
            versions=V2_AND_V3,
        )


def test_params_accept_vrrpv2_intervals_up_to_255_seconds() -> None:
    assert params(advert_interval_cs=25_500).advert_interval_cs == 25_500
    assert params(versions=V2_AND_V3, advert_interval_cs=4_000).advert_interval_cs == 4_000
    # VRRPv3 alone keeps its centisecond range.
    assert params(versions=V3_ONLY, advert_interval_cs=4_095).advert_interval_cs == 4_095
    with pytest.raises(UsageError):
        params(versions=V3_ONLY, advert_interval_cs=25_500)


def test_params_versions_are_the_canonical_sets() -> None:
    assert params(versions=[3, 2]).versions is V2_AND_V3
    assert params(versions=(2,)).versions is V2_ONLY
    assert RouterParams(vrid=1, addresses=(VIP,), local_address=LOCAL).versions is V3_ONLY
    assert params().speaks_v2 and params(versions=V2_AND_V3).speaks_v2
    assert not params(versions=V3_ONLY).speaks_v2


# --------------------------------------------------------------------------- VRRPv2 alone


def test_v2_backup_waits_rfc_3768_master_down_interval_then_sends_v2() -> None:
    router = backup()
    assert router.deadline() == MDI_V2_100
    now, actions = fire(router)
    assert now == MDI_V2_100
    advert = attrs.evolve(adv(100), version=2)
    assert actions == [
        SendAdvert(advert, (Datagram(encode_v2(advert), LOCAL, IPV4_MULTICAST),)),
        InstallVirtual(),
        Announce(),
        StateChanged(
            State.BACKUP,
            State.MASTER,
            Cause.MASTER_DOWN,
            "no advertisement for Master_Down_Interval",
            100,
        ),
    ]
    # The next advertisement one interval later, the same bytes.
    later, actions = fire(router)
    assert later == now + S
    assert [s.datagrams for s in sends(actions)] == [
        (Datagram(encode_v2(advert), LOCAL, IPV4_MULTICAST),)
    ]


def test_v2_skew_time_does_not_scale_with_the_interval() -> None:
    # RFC 3768 §6.1 (and keepalived): Skew_Time is (256 - priority) / 256 s at any interval.
    router = backup(advert_interval_cs=200)
    assert router.deadline() == MDI_V2_100_2S
    assert router.statistics().master_adver_interval == 2 * S


def test_v2_sends_its_password_and_unicast_datagrams() -> None:
    router, _ = master(auth_pass=b"secret", unicast_peers=(HIGHER, PEER_B))
    action = sends(router.handle(v2(0, auth_pass=b"secret", destination=LOCAL), S * 10))[0]
    message = encode_v2(attrs.evolve(adv(100), version=2), auth_pass=b"secret")
    assert action.datagrams == (
        Datagram(message, LOCAL, HIGHER),
        Datagram(message, LOCAL, PEER_B),
    )
    assert message.endswith(b"secret\0\0")


def test_v2_backup_follows_a_higher_priority_master() -> None:
    router = backup()
    assert router.handle(v2(200), S) == []
    assert router.deadline() == S + MDI_V2_100
    stats = router.statistics()
    assert (stats.master_address, stats.master_priority) == (HIGHER, 200)
    assert stats.peers == {HIGHER: PeerStatistics({2: 1}, {2: S})}


def test_v2_master_yields_to_a_higher_priority_v2_advert() -> None:
    router, now = master()
    actions = router.handle(v2(200), now + 1)
    assert versions_sent(sends(actions)[0]) == [(2, IPV4_MULTICAST)]  # parting advert
    assert RemoveVirtual() in actions
    assert router.state is State.BACKUP
    assert router.deadline() == now + 1 + MDI_V2_100


def test_v2_equal_priority_tie_breaks_on_the_address() -> None:
    router, now = master()
    actions = router.handle(v2(100, LOWER), now + 1)
    assert [type(a) for a in actions] == [SendAdvert, Announce]  # a lower address: reassert
    actions = router.handle(v2(100, HIGHER), now + 2)
    assert actions[-1] == StateChanged(
        State.MASTER,
        State.BACKUP,
        Cause.HIGHER_PRIORITY,
        f"{HIGHER} advertises priority 100 (ours 100)",
        100,
    )


def test_v2_preemption_after_skew_time() -> None:
    router = backup(priority=200)
    assert router.handle(v2(100, LOWER), S) == []
    assert router.deadline() == S + SKEW_V2_200
    _now, actions = fire(router)
    assert actions[-1] == StateChanged(
        State.BACKUP, State.MASTER, Cause.PREEMPT, "preempting a lower-priority master", 200
    )


def test_v2_no_preemption_when_preempt_is_off() -> None:
    router = backup(priority=200, preempt=False)
    router.handle(v2(100, LOWER), S)
    assert router.deadline() == S + MDI_V2_200


def test_v2_priority_zero_means_skew_time() -> None:
    router = backup()
    router.handle(v2(200), S)
    router.handle(v2(0), 2 * S)
    assert router.deadline() == 2 * S + SKEW_V2_100
    _, actions = fire(router)
    assert actions[-1] == StateChanged(
        State.BACKUP, State.MASTER, Cause.MASTER_LEFT, "the master left (priority 0)", 100
    )


def test_v2_shutdown_sends_priority_zero_as_v2() -> None:
    router, now = master()
    actions = router.handle(Shutdown(immediate=True), now + 1)
    (send,) = sends(actions)
    assert send.advert.priority == 0
    assert decode(
        send.datagrams[0].message,
        source=LOCAL,
        destination=IPV4_MULTICAST,
        ttl=VRRP_TTL,
        versions=V2_ONLY,
    ) == attrs.evolve(adv(0), version=2)


# ------------------------------------------------------------------ RFC 3768 §7.1 drops


def test_v2_interval_mismatch_is_dropped_not_learned() -> None:
    router = backup()
    actions = router.handle(v2(200, interval_cs=300), S)
    assert len(actions) == 1 and isinstance(actions[0], Dropped)
    drop = actions[0]
    assert (drop.reason, drop.source) == (DropReason.INTERVAL_MISMATCH, HIGHER)
    assert "every 3 s" in drop.detail and "configured for 1 s" in drop.detail
    assert "advert_int" in drop.detail and "RFC 3768 §7.1" in drop.detail
    stats = router.statistics()
    assert stats.drops == {DropReason.INTERVAL_MISMATCH: 1}
    assert (stats.adverts_received, stats.master_address, stats.peers) == (0, None, {})
    assert stats.master_adver_interval == S  # nothing learned
    assert router.deadline() == MDI_V2_100  # the down timer runs on


def test_v2_master_ignores_a_higher_priority_with_another_interval() -> None:
    router, now = master()
    assert drops(router.handle(v2(254, interval_cs=200), now + 1)) == [DropReason.INTERVAL_MISMATCH]
    assert router.state is State.MASTER


def test_v2_priority_zero_with_another_interval_is_dropped_too() -> None:
    # keepalived drops it as well: a mismatched router is not part of this virtual router.
    router = backup()
    router.handle(v2(200), S)
    assert drops(router.handle(v2(0, interval_cs=200), 2 * S)) == [DropReason.INTERVAL_MISMATCH]
    assert router.deadline() == S + MDI_V2_100


def test_a_repeated_advertisement_is_judged_again_under_new_parameters() -> None:
    # The router remembers the last packet it decoded (a master repeats the same bytes);
    # a reload that changes the password must not let the old verdict stand, either way.
    router = backup(auth_pass=b"secret")
    packet = v2(200, auth_pass=b"secret")
    assert router.handle(packet, S) == []
    assert router.handle(packet, 2 * S) == []
    assert router.statistics().adverts_received == 2
    router.handle(Reconfigure(params(auth_pass=b"public")), 2 * S + 1)
    assert drops(router.handle(packet, 3 * S)) == [DropReason.AUTH_PASS]
    router.handle(Reconfigure(params(auth_pass=b"secret")), 3 * S + 1)
    assert router.handle(packet, 4 * S) == []
    assert router.statistics().adverts_received == 3
    assert router.deadline() == 4 * S + MDI_V2_100


@pytest.mark.parametrize(
    ("ours", "theirs", "reason"),
    [
        (b"secret", b"", DropReason.AUTH_TYPE),
        (b"", b"secret", DropReason.AUTH_TYPE),
        (b"secret", b"public", DropReason.AUTH_PASS),
        (b"secret", b"secret1", DropReason.AUTH_PASS),
    ],
)
def test_v2_authentication_mismatches_are_counted_drops(
    ours: bytes, theirs: bytes, reason: DropReason
) -> None:
    router = backup(auth_pass=ours)
    actions = router.handle(v2(200, auth_pass=theirs), S)
    assert drops(actions) == [reason]
    assert router.statistics().drops == {reason: 1}
    assert router.statistics().adverts_received == 0
    assert router.deadline() == MDI_V2_100
    # The right password is accepted.
    assert router.handle(v2(200, auth_pass=ours), 2 * S) == []
    assert router.deadline() == 2 * S + MDI_V2_100


def test_a_v2_router_drops_v3_and_a_v3_router_drops_v2() -> None:
    router = backup()
    actions = router.handle(v3(200), S)
    assert drops(actions) == [DropReason.VERSION]
    assert "speaks VRRPv2 only" in actions[0].detail  # type: ignore[union-attr]
    v3_router = backup(versions=V3_ONLY)
    assert drops(v3_router.handle(v2(200), S)) == [DropReason.VERSION]
    # A decoded advert handed over directly obeys the same rule.
    assert drops(router.handle(AdvertReceived(HIGHER, adv(200)), S)) == [DropReason.VERSION]


# -------------------------------------------------------------------------- migration mode


def test_2_and_3_sends_v2_first_then_v3_to_every_destination() -> None:
    router, _ = master(versions=V2_AND_V3)
    action = sends(router.handle(v2(0), 10 * S))[0]
    assert versions_sent(action) == [(2, IPV4_MULTICAST), (3, IPV4_MULTICAST)]
    assert action.advert == adv(100)  # version 3: it speaks both
    assert action.datagrams[1].message == encode(adv(100), source=LOCAL, destination=IPV4_MULTICAST)
    unicast, _ = master(versions=V2_AND_V3, unicast_peers=(HIGHER, PEER_B))
    action = sends(unicast.handle(v2(0), 10 * S))[0]
    assert versions_sent(action) == [(2, HIGHER), (2, PEER_B), (3, HIGHER), (3, PEER_B)]


def test_2_and_3_accepts_both_versions_and_records_them_per_peer() -> None:
    router = backup(versions=V2_AND_V3)
    assert router.handle(v2(200), S) == []
    assert router.deadline() == S + MDI_V2_100
    assert router.handle(v3(200), S + 10) == []
    assert router.deadline() == S + 10 + MDI_V2_100
    assert router.handle(v2(150, PEER_B), S + 20) == []
    stats = router.statistics()
    assert stats.adverts_received == 3
    assert stats.peers == {
        HIGHER: PeerStatistics({2: 1, 3: 1}, {2: S, 3: S + 10}),
        PEER_B: PeerStatistics({2: 1}, {2: S + 20}),
    }
    assert stats.peers[HIGHER].versions == {2, 3}
    assert stats.peers[HIGHER].last == S + 10


def test_2_and_3_learns_no_interval_from_v3_either() -> None:
    # docs/design.md, "VRRPv2 and migration mode": the v2-only routers of the cluster cannot
    # learn, so a 2+3 router accepts exactly what they accept.
    router = backup(versions=V2_AND_V3, advert_interval_cs=200)
    actions = router.handle(v3(200, interval_cs=50), S)
    assert drops(actions) == [DropReason.INTERVAL_MISMATCH]
    assert 'migration mode ("2+3")' in actions[0].detail  # type: ignore[union-attr]
    assert router.statistics().master_adver_interval == 2 * S
    assert router.deadline() == MDI_V2_100_2S


def test_2_and_3_election_is_the_same_whichever_version_arrives() -> None:
    for packet in (v2, v3):
        router, now = master(versions=V2_AND_V3)
        router.handle(packet(200), now + 1)
        assert router.state is State.BACKUP
        assert router.statistics().master_address == HIGHER


def test_2_and_3_master_answers_both_copies_of_a_lower_priority() -> None:
    router, now = master(versions=V2_AND_V3)
    for packet in (v2, v3):
        actions = router.handle(packet(50, LOWER), now + 1)
        assert [type(a) for a in actions] == [SendAdvert, Announce]
    assert router.state is State.MASTER


def test_2_and_3_password_applies_to_v2_only() -> None:
    router = backup(versions=V2_AND_V3, auth_pass=b"pw")
    # A v2 advert without our password is dropped; its v3 twin (v3 has no password) is not.
    assert drops(router.handle(v2(200), S)) == [DropReason.AUTH_TYPE]
    assert router.handle(v3(200), S + 1) == []


def test_peer_statistics_are_bounded() -> None:
    router = backup(versions=V2_AND_V3)
    for n in range(PEER_LIMIT + 3):
        router.handle(v2(50, V4(f"192.0.2.{101 + n}")), S + n)
    peers = router.statistics().peers
    assert len(peers) == PEER_LIMIT
    # The three heard longest ago went.
    assert min(int(p) for p in peers) == int(V4("192.0.2.104"))


# ------------------------------------------------------------------- changing the version


def test_reload_from_2_and_3_to_3_keeps_the_master() -> None:
    router, now = master(versions=V2_AND_V3)
    actions = router.handle(Reconfigure(params(versions=V3_ONLY)), now + 1)
    assert router.state is State.MASTER
    assert not [a for a in actions if isinstance(a, StateChanged | RemoveVirtual)]
    (send,) = sends(actions)
    assert versions_sent(send) == [(3, IPV4_MULTICAST)]
    assert router.deadline() == now + 1 + S
    _, later = fire(router)
    assert versions_sent(sends(later)[0]) == [(3, IPV4_MULTICAST)]


def test_reload_from_2_to_2_and_3_keeps_the_master() -> None:
    router, now = master()
    actions = router.handle(Reconfigure(params(versions=V2_AND_V3)), now + 1)
    assert router.state is State.MASTER
    (send,) = sends(actions)
    assert versions_sent(send) == [(2, IPV4_MULTICAST), (3, IPV4_MULTICAST)]
    assert router.statistics().became_master == 1


def test_reload_of_the_version_keeps_a_backup_and_its_timer() -> None:
    router = backup()
    router.handle(v2(200), S)
    assert router.handle(Reconfigure(params(versions=V2_AND_V3)), 2 * S) == []
    assert router.state is State.BACKUP
    assert router.deadline() == S + MDI_V2_100  # from when the last advert arrived
    assert router.handle(Reconfigure(params(versions=V3_ONLY)), 2 * S + 1) == []
    # VRRPv3's Skew_Time at a 1 s interval is the same: the timer does not move.
    assert router.deadline() == S + MDI_V2_100


def test_reload_from_3_to_2_and_3_forgets_a_learned_interval() -> None:
    router = backup(versions=V3_ONLY)
    router.handle(v3(200, interval_cs=50), S)
    assert router.statistics().master_adver_interval == S // 2
    router.handle(Reconfigure(params(versions=V2_AND_V3)), S + 1)
    assert router.statistics().master_adver_interval == S
    assert router.deadline() == S + MDI_V2_100


# ------------------------------------------------------------------- mixed clusters (sim)


def _cluster(**nodes: tuple[frozenset[int], int]) -> SimLan:
    lan = SimLan(delay=200)
    for index, (name, (versions, priority)) in enumerate(nodes.items()):
        lan.add(
            name,
            params(local_address=V4(f"192.0.2.{11 + index}"), priority=priority, versions=versions),
        )
    return lan


def _one_master_at_every_step(lan: SimLan, end: int, step: int = 50_000) -> list[int]:
    """Run to ``end`` checking the number of masters every ``step``; return those counts."""
    counts: list[int] = []
    for at in range(lan.now + step, end + 1, step):
        lan.call_at(at, lambda: counts.append(len(lan.masters(1))))
    lan.run_until(end)
    return counts


@pytest.mark.parametrize(
    "nodes",
    [
        # keepalived-like v2 nodes are the masters, a 2+3 node is a backup ...
        {"k1": (V2_ONLY, 200), "k2": (V2_ONLY, 150), "p": (V2_AND_V3, 100)},
        # ... or the 2+3 node is the master of v2 backups ...
        {"k1": (V2_ONLY, 100), "k2": (V2_ONLY, 150), "p": (V2_AND_V3, 200)},
        # ... or half way: 2+3 nodes with a v2 node in the middle.
        {"p1": (V2_AND_V3, 120), "k": (V2_ONLY, 150), "p2": (V2_AND_V3, 200)},
    ],
)
def test_mixed_v2_and_2_and_3_clusters_elect_one_master_and_never_flap(
    nodes: dict[str, tuple[frozenset[int], int]],
) -> None:
    lan = _cluster(**nodes)
    lan.start_all()
    ranked = sorted(nodes, key=lambda n: nodes[n][1], reverse=True)
    # Converged after the first Master_Down_Interval: exactly one master from then on.
    lan.run_until(MDI_V2_200 + 10_000)
    assert lan.masters(1) == [ranked[0]]
    assert set(_one_master_at_every_step(lan, 60 * S)) == {1}
    assert [t.new for _, _, t in lan.transitions()].count(State.MASTER) == 1
    # The master crashes: the next in priority takes over, once, and nobody flaps.
    before = len(lan.transitions())
    lan.crash(ranked[0])
    assert set(_one_master_at_every_step(lan, 120 * S)[100:]) == {1}
    assert lan.masters(1) == [ranked[1]]
    assert [(name, t.new) for _, name, t in lan.transitions()[before:]] == [
        (ranked[1], State.MASTER)
    ]
    # No router dropped anything but the other version (v2-only routers cannot read v3).
    for node in lan.nodes.values():
        assert set(node.router.statistics().drops) <= {DropReason.VERSION}


def test_a_2_and_3_node_preempts_a_v2_master_once() -> None:
    lan = _cluster(k=(V2_ONLY, 150), p=(V2_AND_V3, 200))
    lan.start("k")
    lan.run_until(10 * S)
    assert lan.masters(1) == ["k"]
    lan.start("p")
    lan.run_until(20 * S)
    assert lan.masters(1) == ["p"]
    assert [(name, t.new) for _, name, t in lan.transitions()] == [
        ("k", State.BACKUP),
        ("k", State.MASTER),
        ("p", State.BACKUP),
        ("p", State.MASTER),
        ("k", State.BACKUP),
    ]
    # p preempted one Skew_Time after hearing k: RFC 3768's, at priority 200.
    (at,) = [t for t, name, c in lan.transitions() if name == "p" and c.new is State.MASTER]
    heard = next(
        e.time
        for e in lan.trace
        if e.node == "k" and isinstance(e.action, SendAdvert) and e.time > 10 * S
    )
    assert at == heard + 200 + SKEW_V2_200


def test_the_migration_end_to_end_in_the_simulator() -> None:
    """v2 cluster -> swap each node for 2+3 -> reload each to 3: one master throughout."""
    lan = _cluster(a=(V2_ONLY, 200), b=(V2_ONLY, 150), c=(V2_ONLY, 100))
    lan.start_all()
    lan.run_until(10 * S)
    assert lan.masters(1) == ["a"]
    t = 10 * S
    # Swap the backups first, then the master (its replacement preempts back).
    for name in ("c", "b", "a"):
        old = lan.nodes[name].router.params
        lan.stop(name, t)
        lan.run_until(t + 5 * S)
        lan.nodes[name].router = VirtualRouter(attrs.evolve(old, versions=V2_AND_V3))
        lan.nodes[name].scheduled = None
        lan.start(name, t + 5 * S)
        t += 15 * S
        assert set(_one_master_at_every_step(lan, t)) == {1}
    assert lan.masters(1) == ["a"]
    before = len(lan.transitions())
    for name in ("c", "b", "a"):
        router = lan.nodes[name].router
        lan.inject(name, Reconfigure(attrs.evolve(router.params, versions=V3_ONLY)), t)
        t += 5 * S
        assert set(_one_master_at_every_step(lan, t)) == {1}
    assert lan.transitions()[before:] == []  # the reloads moved nothing
    assert lan.masters(1) == ["a"]


def test_a_misconfigured_interval_is_ignored_alike_by_v2_and_2_and_3_routers() -> None:
    """docs/design.md, "VRRPv2 and migration mode": a 2+3 router hears exactly the peers a
    VRRPv2 router hears. p2 advertises every 2 s: keepalived-like k drops its VRRPv2 copy,
    and p1 drops both copies (it learns no interval from the VRRPv3 one), so k and p1 agree
    on one master between them and both count the same drops; p2, alone, is master too
    (the misconfiguration), and says so in its own drops."""
    lan = SimLan(delay=200)
    lan.add("k", params(local_address=V4("192.0.2.11"), priority=150))
    lan.add("p1", params(local_address=V4("192.0.2.12"), priority=100, versions=V2_AND_V3))
    lan.add(
        "p2",
        params(
            local_address=V4("192.0.2.13"),
            priority=200,
            versions=V2_AND_V3,
            advert_interval_cs=200,
        ),
    )
    lan.start_all()
    lan.run_until(30 * S)
    assert sorted(lan.masters(1)) == ["k", "p2"]
    k, p1, p2 = (lan.nodes[n].router.statistics() for n in ("k", "p1", "p2"))
    # k, master, hears nobody it accepts (p1 is its silent backup); p1 hears k alone.
    assert k.peers == {}
    assert list(p1.peers) == [V4("192.0.2.11")] and p1.peers[V4("192.0.2.11")].versions == {2}
    assert k.drops[DropReason.INTERVAL_MISMATCH] > 0
    # p1 drops each of p2's pairs twice (both copies), k once (it cannot read the v3 one).
    assert p1.drops[DropReason.INTERVAL_MISMATCH] == 2 * k.drops[DropReason.INTERVAL_MISMATCH]
    assert p2.drops[DropReason.INTERVAL_MISMATCH] > 0
    assert p2.peers == {}
    assert [t.new for _, n, t in lan.transitions() if n == "p1"] == [State.BACKUP]


def test_at_2_s_a_2_and_3_router_fires_before_a_lower_v2_router() -> None:
    """RFC 3768's Skew_Time in 2+3 mode: at a 2 s interval, p (2+3, 150) times out after
    6 s + 106/256 s, before k (v2, 100) at 6 s + 156/256 s. With VRRPv3's skew (scaled by the
    interval: 6 s + 212/256 s) k would fire first and p preempt it: a flap at every failover."""
    lan = SimLan(delay=200)
    two_seconds = {"advert_interval_cs": 200}
    lan.add("m", params(local_address=V4("192.0.2.11"), priority=250, **two_seconds))
    lan.add("k", params(local_address=V4("192.0.2.12"), priority=100, **two_seconds))
    lan.add(
        "p",
        params(local_address=V4("192.0.2.13"), priority=150, versions=V2_AND_V3, **two_seconds),
    )
    lan.start_all()
    lan.run_until(20 * S)
    assert lan.masters(1) == ["m"]
    before = len(lan.transitions())
    lan.crash("m")
    lan.run_until(60 * S)
    assert [(n, t.new) for _, n, t in lan.transitions()[before:]] == [("p", State.MASTER)]
