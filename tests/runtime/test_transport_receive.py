"""RawTransport's receive path on a datagram socket pair (no root, no raw socket).

One wake-up drains what the socket holds; the queued datagrams are then handed out one per
scheduler turn, in order, header errors in their place.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest
import trio

from pyvrrp.core.events import PacketReceived
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


class Other:
    """Another task: counts its turns, one per scheduler batch."""

    def __init__(self) -> None:
        self.ran = 0

    async def run(self) -> None:
        while True:
            self.ran += 1
            await trio.lowlevel.checkpoint()


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
    other = Other()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other.run)
        first = await t.receive()
        # The first wake-up read all five: the socket is empty already.
        with pytest.raises(BlockingIOError):
            ours.recv(65535, socket.MSG_DONTWAIT)
        before = other.ran
        rest = [await t.receive() for _ in range(4)]
        # ...and each one is handed out in its own scheduler turn (the other task runs in
        # each, before or after us): a driver taking one event per turn keeps up, and a
        # flood stays in the socket instead of the inboxes.
        assert other.ran - before >= 3
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
    other = Other()

    received = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other.run)
        for _ in range(count):
            received.append(peek_vrid((await t.receive()).message))
        nursery.cancel_scope.cancel()
    assert received == [1 + i % 255 for i in range(count)]
    # The other task ran in the turn of (about) every datagram, batch or not.
    assert other.ran >= count // 2


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


async def test_receive_batch_hands_out_what_one_wake_up_read_at_once_in_order(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    theirs.send(advert_datagram(7))
    theirs.send(b"\x45\x00garbage")
    theirs.send(advert_datagram(8))
    t = transport(ours)
    with trio.fail_after(5):
        batch = await t.receive_batch()
    assert len(batch) == 3
    first, error, last = batch
    assert isinstance(first, PacketReceived) and peek_vrid(first.message) == 7
    assert isinstance(error, DecodeError) and error.reason is DropReason.IP_HEADER
    assert isinstance(last, PacketReceived) and peek_vrid(last.message) == 8
    # The socket is empty: the next call waits (and can be cancelled).
    with trio.move_on_after(0.05) as scope:
        await t.receive_batch()
    assert scope.cancelled_caught


async def test_after_a_full_batch_the_others_run_before_the_next_one_is_read(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    count = 2 * RECEIVE_BATCH + 10  # what the socket pair holds without blocking the sender
    for i in range(count):
        theirs.send(advert_datagram(1 + i % 255))
    t = transport(ours)
    other = Other()

    sizes: list[int] = []
    vrids: list[int | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other.run)
        while len(vrids) < count:
            batch = await t.receive_batch()
            sizes.append(len(batch))
            vrids.extend(peek_vrid(p.message) for p in batch if isinstance(p, PacketReceived))
        nursery.cancel_scope.cancel()
    assert sizes == [RECEIVE_BATCH, RECEIVE_BATCH, 10]
    assert vrids == [1 + i % 255 for i in range(count)]
    # Each call after a full batch let the others run first (trio runs each task once per
    # scheduler batch, in random order): a flood cannot keep the routers' timers waiting.
    assert other.ran >= 2


def test_poll_reads_what_is_queued_without_waiting(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    t = transport(ours)
    assert t.poll() == []
    theirs.send(advert_datagram(5))
    (packet,) = t.poll()
    assert isinstance(packet, PacketReceived) and peek_vrid(packet.message) == 5
    assert t.poll() == []


class RecordingSocket:
    """Stands in for the raw socket's sending side."""

    def __init__(self) -> None:
        self.sent: list[tuple[object, ...]] = []

    def sendto(self, data: bytes, address: object) -> int:
        self.sent.append(("sendto", data, address))
        return len(data)

    def sendmsg(self, buffers: list[bytes], ancillary: object, flags: int, address: object) -> int:
        self.sent.append(("sendmsg", b"".join(buffers), ancillary, address))
        return 0


def test_a_datagram_is_built_once_per_distinct_message_and_sent_as_built(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyvrrp.runtime.transport as transport_module
    from pyvrrp.core.packet import parse_ipv4

    ours, _theirs = pair
    t = transport(ours)
    fake = RecordingSocket()
    monkeypatch.setattr(t, "_raw", fake)
    built: list[bytes] = []

    def counting_build(message: bytes, *, source: IPv4Address, destination: IPv4Address) -> bytes:
        built.append(message)
        return build_ipv4(message, source=source, destination=destination)

    monkeypatch.setattr(transport_module, "build_ipv4", counting_build)
    assert isinstance(GROUP, IPv4Address)
    one, two = advert_datagram(1)[20:], advert_datagram(2)[20:]
    for message in (one, one, two, one):
        assert t.send_now(message, SOURCE, GROUP)
    assert built == [one, two]  # the repeats were sent as built the first time
    assert [(kind, address) for kind, _, address in fake.sent] == [
        ("sendto", ("224.0.0.18", 0))
    ] * 4
    datagrams = [parse_ipv4(data) for _, data, _ in fake.sent]  # type: ignore[arg-type]
    assert [d.payload for d in datagrams] == [one, one, two, one]
    assert {(d.source, d.destination, d.ttl) for d in datagrams} == {(SOURCE, GROUP, 255)}
    v6 = transport(ours, Family.IPV6)
    monkeypatch.setattr(v6, "_raw", fake)
    source6, group6 = IPv6Address("fe80::1"), Family.IPV6.multicast_group
    assert v6.send_now(b"message", source6, group6)
    kind, data, ancillary, address = fake.sent[-1]
    assert (kind, data) == ("sendmsg", b"message")
    assert address == ("ff02::12", 0, 0, socket.if_nametoindex("lo"))
    assert ancillary == [
        (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, source6.packed + struct.pack("I", 1))
    ]


class FailingSocket(RecordingSocket):
    """A sending side whose next sends fail with ``outcomes`` (None: sent)."""

    def __init__(self, outcomes: list[BaseException | None]) -> None:
        super().__init__()
        self.outcomes = outcomes

    def sendto(self, data: bytes, address: object) -> int:
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return super().sendto(data, address)


@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6])
def test_a_prepared_sender_sends_what_send_now_sends(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch, family: Family
) -> None:
    # A master's routine wake-up sends through senders prepared once per advertisement
    # (RawTransport.sender): on the wire exactly what send_now puts there, and counted alike.
    ours, _theirs = pair
    t = transport(ours, family)
    fake = RecordingSocket()
    monkeypatch.setattr(t, "_raw", fake)
    source: IPv4Address | IPv6Address = SOURCE
    message, group = advert_datagram(7)[20:], GROUP
    if family is Family.IPV6:
        message, source, group = b"message", IPv6Address("fe80::1"), Family.IPV6.multicast_group
    send = t.sender(message, source, group)
    assert fake.sent == []  # prepared, not sent
    assert send() and send()
    assert t.send_now(message, source, group)
    assert len(fake.sent) == 3
    assert fake.sent[0] == fake.sent[1] == fake.sent[2]
    assert t.statistics.sent == 3


@pytest.mark.parametrize("prepared", [False, True], ids=["send_now", "sender"])
def test_sending_says_when_the_socket_would_block_and_counts_failures(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch, prepared: bool
) -> None:
    ours, _theirs = pair
    t = transport(ours)
    fake = FailingSocket([BlockingIOError(), None, OSError(100, "Network is down")])
    monkeypatch.setattr(t, "_raw", fake)
    message = advert_datagram(7)[20:]
    prepared_send = t.sender(message, SOURCE, GROUP)

    def send() -> bool:
        return prepared_send() if prepared else t.send_now(message, SOURCE, GROUP)

    assert send() is False
    assert send() is True
    with pytest.raises(OSError):
        send()
    assert len(fake.sent) == 1
    assert (t.statistics.sent, t.statistics.send_errors) == (1, 1)
    assert t.statistics.last_send_error == "Network is down"
