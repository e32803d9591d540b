"""The router owns the wire: ``SendAdvert`` carries the datagrams to send, encoded by the core.

The runtime and the simulator only put ``SendAdvert.datagrams`` on a socket, so what is
checked here is what goes on the wire: one datagram per unicast peer in configured order
(or one to the family's multicast group), each a message that the receiving side decodes
with the sender's checksum convention, and bytes built once, not at every Adver_Timer.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

import attrs
import pytest

from pyvrrp.core.actions import Action, SendAdvert, State
from pyvrrp.core.errors import UsageError
from pyvrrp.core.events import HealthChanged, Reconfigure, Shutdown, Startup, Timeout
from pyvrrp.core.packet import (
    IPV4_MULTICAST,
    IPV6_MULTICAST,
    VRRP_TTL,
    ChecksumMode,
    DecodeError,
    DropReason,
    decode,
)
from pyvrrp.core.params import RouterParams
from pyvrrp.core.router import VirtualRouter

VIP = IPv4Address("192.0.2.100")
LOCAL = IPv4Address("192.0.2.10")
PEER_A = IPv4Address("192.0.2.30")
PEER_B = IPv4Address("192.0.2.20")
BASE = RouterParams(vrid=7, addresses=(VIP,), local_address=LOCAL, garp_delay_us=0)


def sends(actions: list[Action]) -> list[SendAdvert]:
    return [a for a in actions if isinstance(a, SendAdvert)]


def master(params: RouterParams) -> tuple[VirtualRouter, int, SendAdvert]:
    """A router that became master by its down timer; the time and the advert it sent."""
    router = VirtualRouter(params)
    router.handle(Startup(), 0)
    now = router.deadline()
    assert now is not None
    [send] = sends(router.handle(Timeout(), now))
    assert router.state is State.MASTER
    return router, now, send


def decoded(send: SendAdvert, checksum_mode: ChecksumMode) -> list[Any]:
    return [
        decode(
            d.message,
            source=d.source,
            destination=d.destination,
            ttl=VRRP_TTL,
            checksum_mode=checksum_mode,
        )
        for d in send.datagrams
    ]


def test_multicast_sends_one_datagram_to_the_group_that_decodes_to_the_advert() -> None:
    _, _, send = master(BASE)
    assert [(d.source, d.destination) for d in send.datagrams] == [(LOCAL, IPV4_MULTICAST)]
    assert decoded(send, ChecksumMode.PSEUDO_HEADER) == [send.advert]
    assert send.advert.priority == 100 and send.advert.vrid == 7


def test_unicast_sends_one_datagram_per_peer_in_configured_order() -> None:
    _, _, send = master(attrs.evolve(BASE, unicast_peers=(PEER_A, PEER_B)))
    assert [d.destination for d in send.datagrams] == [PEER_A, PEER_B]
    assert {d.source for d in send.datagrams} == {LOCAL}
    # The pseudo-header covers each peer's address, so the messages differ in checksum.
    assert send.datagrams[0].message != send.datagrams[1].message
    assert decoded(send, ChecksumMode.PSEUDO_HEADER) == [send.advert, send.advert]


def test_the_routers_own_checksum_mode_builds_the_datagrams() -> None:
    _, _, send = master(attrs.evolve(BASE, checksum_mode=ChecksumMode.MESSAGE_ONLY))
    assert decoded(send, ChecksumMode.MESSAGE_ONLY) == [send.advert]
    with pytest.raises(DecodeError) as caught:
        decoded(send, ChecksumMode.PSEUDO_HEADER)
    assert caught.value.reason is DropReason.CHECKSUM


def test_ipv6_goes_to_its_multicast_group() -> None:
    local = IPv6Address("fe80::10")
    params = RouterParams(
        vrid=7, addresses=(IPv6Address("fe80::1"),), local_address=local, garp_delay_us=0
    )
    _, _, send = master(params)
    assert [(d.source, d.destination) for d in send.datagrams] == [(local, IPV6_MULTICAST)]
    assert decoded(send, ChecksumMode.MESSAGE_ONLY) == [send.advert]  # IPv6: always pseudo


def test_a_master_sends_the_same_bytes_every_interval_without_rebuilding_them() -> None:
    router, now, first = master(BASE)
    for _ in range(3):
        now = router.deadline() or 0
        [again] = sends(router.handle(Timeout(), now))
        assert again is first  # the cached action, bytes included
    assert router.statistics().adverts_sent == 4


def test_a_priority_change_rebuilds_the_bytes() -> None:
    router, now, first = master(BASE)
    [changed] = sends(router.handle(HealthChanged(priority=90), now + 1))
    assert changed.advert.priority == 90
    assert decoded(changed, ChecksumMode.PSEUDO_HEADER) == [changed.advert]
    assert changed.datagrams[0].message != first.datagrams[0].message
    [zero] = sends(router.handle(Shutdown(), now + 2))
    assert zero.advert.priority == 0
    assert decoded(zero, ChecksumMode.PSEUDO_HEADER) == [zero.advert]


def test_reconfigure_rebuilds_the_bytes_for_new_peers_and_checksum_mode() -> None:
    router, now, _ = master(attrs.evolve(BASE, unicast_peers=(PEER_A,)))
    new = attrs.evolve(
        BASE, unicast_peers=(PEER_B, PEER_A), checksum_mode=ChecksumMode.MESSAGE_ONLY
    )
    [send] = sends(router.handle(Reconfigure(new, 100), now + 1))
    assert [d.destination for d in send.datagrams] == [PEER_B, PEER_A]
    assert decoded(send, ChecksumMode.MESSAGE_ONLY) == [send.advert, send.advert]
    # The next interval sends the rebuilt bytes, not the old ones.
    [again] = sends(router.handle(Timeout(), router.deadline() or 0))
    assert again is send


def test_router_params_keep_peers_in_order_and_name_their_destinations() -> None:
    params = attrs.evolve(BASE, unicast_peers=[PEER_A, PEER_B])
    assert params.unicast_peers == (PEER_A, PEER_B)
    assert params.destinations == (PEER_A, PEER_B)
    assert BASE.destinations == (IPV4_MULTICAST,)


def test_a_peer_listed_twice_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="lists a peer twice"):
        attrs.evolve(BASE, unicast_peers=(PEER_A, PEER_A))
