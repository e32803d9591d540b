"""RawTransport's receive path on a datagram socket pair (no root, no raw socket).

One wake-up drains what the socket holds; the queued datagrams are then handed out one per
scheduler turn, in order, header errors in their place.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest
import trio

from pyvrrp.core.packet import (
    Advertisement,
    DecodeError,
    DropReason,
    Family,
    build_ipv4,
    encode,
    peek_vrid,
)
from pyvrrp.runtime.transport import RECEIVE_BATCH, RawTransport

SOURCE = IPv4Address("192.0.2.1")
GROUP = Family.IPV4.multicast_group


def advert_datagram(vrid: int) -> bytes:
    """An IPv4 datagram carrying a valid advert for `vrid`, as the kernel delivers it."""
    assert isinstance(GROUP, IPv4Address)
    message = encode(
        Advertisement(vrid=vrid, priority=100, max_advert_interval=100, addresses=(SOURCE,)),
        source=SOURCE,
        destination=GROUP,
    )
    return build_ipv4(message, source=SOURCE, destination=GROUP)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    with ours, theirs:
        yield ours, theirs


def transport(sock: socket.socket, family: Family = Family.IPV4) -> RawTransport:
    return RawTransport("lo", family, multicast=False, raw_socket=sock)


async def test_one_wake_up_reads_every_queued_datagram_and_hands_them_out_in_turn(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    for vrid in (1, 2, 3, 4, 5):
        theirs.send(advert_datagram(vrid))
    t = transport(ours)
    other_ran = 0

    async def other() -> None:
        nonlocal other_ran
        while True:
            other_ran += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        first = await t.receive()
        # The first wake-up read all five: the socket is empty already.
        with pytest.raises(BlockingIOError):
            ours.recv(65535, socket.MSG_DONTWAIT)
        before = other_ran
        rest = [await t.receive() for _ in range(4)]
        # ...and each one is handed out in its own scheduler turn (the other task runs in
        # each, before or after us): a driver taking one event per turn keeps up, and a
        # flood stays in the socket instead of the inboxes.
        assert other_ran - before >= 3
        nursery.cancel_scope.cancel()
    assert [peek_vrid(p.message) for p in [first, *rest]] == [1, 2, 3, 4, 5]
    assert {(p.source, p.destination, p.ttl) for p in rest} == {(SOURCE, GROUP, 255)}


async def test_a_bad_header_is_raised_in_its_place_and_the_rest_still_arrive(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.send(advert_datagram(7))
    theirs.send(b"\x45\x00garbage")
    theirs.send(advert_datagram(8))
    t = transport(ours)
    assert peek_vrid((await t.receive()).message) == 7
    with pytest.raises(DecodeError) as raised:
        await t.receive()
    assert raised.value.reason is DropReason.IP_HEADER
    assert peek_vrid((await t.receive()).message) == 8


async def test_more_than_a_batch_arrives_whole_and_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    count = 2 * RECEIVE_BATCH + 10
    for i in range(count):
        theirs.send(advert_datagram(1 + i % 255))
    t = transport(ours)
    other_ran = 0

    async def other() -> None:
        nonlocal other_ran
        while True:
            other_ran += 1
            await trio.lowlevel.checkpoint()

    received = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for _ in range(count):
            received.append(peek_vrid((await t.receive()).message))
        nursery.cancel_scope.cancel()
    assert received == [1 + i % 255 for i in range(count)]
    # The other task ran in the turn of (about) every datagram, batch or not.
    assert other_ran >= count // 2


async def test_receive_waits_for_a_datagram_and_can_be_cancelled(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    t = transport(ours)
    with trio.move_on_after(0.05) as scope:
        await t.receive()
    assert scope.cancelled_caught
    theirs.send(advert_datagram(9))
    with trio.fail_after(5):
        assert peek_vrid((await t.receive()).message) == 9


async def test_ipv6_datagram_without_ancillary_data_is_a_header_error_not_a_crash(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.send(b"\x31\x09\x64\x00\x00\x64\x00\x00")
    t = transport(ours, Family.IPV6)
    with pytest.raises(DecodeError) as raised:
        await t.receive()
    assert raised.value.reason is DropReason.IP_HEADER
