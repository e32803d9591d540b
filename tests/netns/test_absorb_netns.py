"""The absorbing eBPF program (pyvrrp/runtime/absorb.py) in a real kernel.

- Equivalence: on everything but the routine packet, the eBPF program's verdict (run with
  BPF_PROG_TEST_RUN) is the classic program's, as tests/unit/test_sockfilter.py's
  interpreter computes it; with an empty map and with an entry for a packet that differs
  from the one tested.
- Absorption: the packet of an entry, and only it, is dropped and counted with its arrival
  time; an entry changed before its count was taken hands the absorbed packet back.
- A real socket: a RawTransport on a veth (the segment of tests/netns/test_sockfilter_netns.py)
  never reads the routine advertisement, reads every other one, and the map counts it.

Loading a program needs CAP_BPF (root): these tests fail without it under
PYVRRP_REQUIRE_NETNS=1, as every netns test does.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import ClassVar

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import Advertisement, Family, build_ipv4, encode
from pyvrrp.runtime.absorb import (
    MAX_WORDS,
    RING_SIZE,
    Absorber,
    Unavailable,
    entry_fields,
    run_program,
)
from pyvrrp.runtime.netlink import in_netns
from pyvrrp.runtime.sockfilter import ACCEPT, Wanted, program
from pyvrrp.runtime.transport import RawTransport
from tests.netns import test_sockfilter_netns as sockfilter_netns
from tests.netns.test_sockfilter_netns import NODE_IF, PEER4, SWITCH_IF, Segment, frame, read_all
from tests.unit.test_sockfilter import ipv4_packet, run

segment = sockfilter_netns.segment  # the fixture: a node and a switch joined by a veth

GROUP = IPv4Address("224.0.0.18")
VIP = IPv4Address("192.168.200.100")
PEERS = [IPv4Address(f"192.168.200.{i}") for i in range(1, 6)]


# One absorber and one loaded program per Wanted for the whole module (made lazily, inside
# a test: the netns guard runs first, and says why without root).
class _Shared:
    absorber: ClassVar[Absorber | None] = None
    programs: ClassVar[dict[Wanted, int]] = {}


def shared_absorber() -> Absorber:
    if _Shared.absorber is None:
        _Shared.absorber = Absorber()
    return _Shared.absorber


def loaded(wanted: Wanted) -> int:
    fd = _Shared.programs.get(wanted)
    if fd is None:
        if len(_Shared.programs) >= 200:  # well below the limit of open files
            _close_programs()
        fd = _Shared.programs[wanted] = shared_absorber().load(program(wanted))
    return fd


def _close_programs() -> None:
    for fd in _Shared.programs.values():
        os.close(fd)
    _Shared.programs.clear()


@pytest.fixture(scope="module", autouse=True)
def _close_shared() -> Iterator[None]:
    yield
    _close_programs()
    if _Shared.absorber is not None:
        _Shared.absorber.close()
        _Shared.absorber = None


# ----------------------------------------------------------------------------- equivalence


@st.composite
def cases(draw: st.DrawFn) -> tuple[Wanted, bytes, PacketReceived | None]:
    """A Wanted, an IPv4 packet (maybe with options, maybe short or empty), and the packet
    whose entry is set for the tested packet's VRID (None: an empty map)."""
    sources = draw(st.none() | st.frozensets(st.sampled_from(PEERS)))
    wanted = Wanted(
        Family.IPV4,
        draw(st.frozensets(st.sampled_from([2, 3]), min_size=1)),
        draw(st.frozensets(st.integers(1, 255), min_size=1, max_size=255)),
        sources,
    )
    ttl = draw(st.sampled_from([255, 255, 254, 1, 0]))
    source = draw(st.sampled_from(PEERS))
    ihl = draw(st.sampled_from([5, 5, 5, 6, 7, 15]))
    first = draw(st.sampled_from([0x31, 0x21, 0x32, 0x11, 0x00, 0xFF]))
    vrid = draw(st.sampled_from([*sorted(wanted.vrids)[:3], 0, 1, 58, 255]))
    tail = draw(
        st.sampled_from([0, 1, 2, 6, 10, 4 * MAX_WORDS - 2, 4 * MAX_WORDS + 2]).flatmap(
            lambda n: st.binary(min_size=n, max_size=n)
        )
    )
    message = draw(st.sampled_from([b"", bytes([first]), bytes([first, vrid]) + tail]))
    packet = ipv4_packet(ttl, source, message, ihl=ihl)
    if not draw(st.booleans()):
        return wanted, packet, None
    # An entry for a packet that differs from this one in one place the program compares
    # (or, when this one cannot be absorbed anyway, a real advertisement of its VRID).
    key = message[1] if len(message) >= 2 else vrid
    entry_message = bytes([0x31, key, 100, 1, 0, 100, 0, 0]) + VIP.packed
    entry = PacketReceived(entry_message, source, GROUP, 255)
    same = PacketReceived(message, source, GROUP, 255)
    if entry_fields(same) is not None and (ttl != 255 or ihl != 5):
        entry = same  # the same message and addresses, but TTL or header length differ
    elif entry_fields(same) is not None:
        change = draw(st.sampled_from(["source", "destination", "byte"]))
        if change == "source":
            other = PEERS[(PEERS.index(source) + 1) % len(PEERS)]
            entry = PacketReceived(message, other, GROUP, 255)
        elif change == "destination":
            entry = PacketReceived(message, source, IPv4Address("192.168.200.1"), 255)
        else:
            at = draw(st.integers(0, len(message) - 1).filter(lambda i: i != 1))
            changed = bytearray(message)
            changed[at] ^= 1 << draw(st.integers(0, 7))
            entry = PacketReceived(bytes(changed), source, GROUP, 255)
    assert entry_fields(entry) is not None
    return wanted, packet, entry


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_the_ebpf_program_gives_the_classic_programs_verdict_to_what_it_does_not_absorb(
    case: tuple[Wanted, bytes, PacketReceived | None],
) -> None:
    wanted, packet, entry = case
    absorber = shared_absorber()
    vrid = 0 if entry is None else entry.message[1]
    try:
        if entry is not None:
            absorber.update(vrid, entry)
        assert run_program(loaded(wanted), packet) == run(program(wanted), packet, 0)
        assert absorber.take(vrid) is None
    finally:
        absorber.update(vrid, None)


def test_a_program_for_every_vrid_and_many_peers_loads_and_sorts_as_the_classic_one() -> None:
    # The longest jumps: 255 VRIDs and a chain of sources, all across the map's 64-bit load.
    peers = frozenset(IPv4Address(f"10.0.{i // 250}.{i % 250 + 1}") for i in range(600))
    wanted = Wanted(Family.IPV4, frozenset({2, 3}), frozenset(range(1, 256)), peers)
    fd = loaded(wanted)
    for source, vrid in ((IPv4Address("10.0.2.99"), 255), (IPv4Address("10.9.9.9"), 1)):
        packet = ipv4_packet(255, source, bytes([0x31, vrid, 100, 1]) + b"\0" * 8)
        assert run_program(fd, packet) == run(program(wanted), packet, 0)
    assert run_program(fd, ipv4_packet(255, IPv4Address("10.0.2.99"), b"\x31\xff")) == ACCEPT


def test_a_classic_program_with_dead_code_is_translated_without_it() -> None:
    # No accepted source (an empty set): the classic "accept" after the source chain is
    # never reached, which the eBPF verifier refuses ("unreachable insn").
    wanted = Wanted(Family.IPV4, frozenset({3}), frozenset({58}), frozenset())
    fd = loaded(wanted)
    packet = ipv4_packet(255, PEERS[0], bytes([0x31, 58, 100, 1]) + b"\0" * 8)
    assert run(program(wanted), packet, 0) == 0
    assert run_program(fd, packet) == 0


# ------------------------------------------------------------------------------ absorption

WANTED = Wanted(Family.IPV4, frozenset({3}), frozenset({58, 59}), None)


def advert(vrid: int = 58, priority: int = 100, source: IPv4Address = PEER4) -> PacketReceived:
    """A real VRRPv3 advertisement from ``source`` to the group, as the transport reads it."""
    message = encode(
        Advertisement(vrid=vrid, priority=priority, max_advert_interval=100, addresses=(VIP,)),
        source=source,
        destination=GROUP,
    )
    return PacketReceived(message, source, GROUP, 255)


def wire(packet: PacketReceived) -> bytes:
    assert isinstance(packet.source, IPv4Address)
    assert isinstance(packet.destination, IPv4Address)
    return build_ipv4(
        packet.message, source=packet.source, destination=packet.destination, ttl=packet.ttl
    )


@pytest.fixture
def absorber() -> Iterator[Absorber]:
    made = Absorber()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def prog(absorber: Absorber) -> Iterator[int]:
    fd = absorber.load(program(WANTED))
    try:
        yield fd
    finally:
        os.close(fd)


def test_the_routine_packet_is_dropped_and_counted_with_its_arrival_time(
    absorber: Absorber, prog: int
) -> None:
    p = advert()
    assert run_program(prog, wire(p)) == ACCEPT  # no entry yet: the classic verdict
    assert absorber.update(58, p) is None
    assert absorber.absorbing(58) == p
    assert absorber.take(58) is None
    before = time.monotonic_ns()
    assert run_program(prog, wire(p)) == 0
    after = time.monotonic_ns()
    taken = absorber.take(58)
    assert taken is not None
    count, last = taken
    assert count == 1
    assert before <= last <= after
    assert absorber.take(58) is None  # taken once
    for _ in range(3):
        assert run_program(prog, wire(p)) == 0
    taken = absorber.take(58)
    assert taken is not None and taken[0] == 3 and taken[1] >= after
    assert absorber.update(58, p) is None  # the same packet again: nothing changes
    assert run_program(prog, wire(p)) == 0
    assert absorber.take(58) is not None


def _options(packet: PacketReceived) -> bytes:
    assert isinstance(packet.source, IPv4Address)
    return ipv4_packet(255, packet.source, packet.message, ihl=6)


def _flip(at: int) -> Callable[[PacketReceived], bytes]:
    def change(packet: PacketReceived) -> bytes:
        message = bytearray(packet.message)
        message[at] ^= 0x01
        return wire(PacketReceived(bytes(message), packet.source, packet.destination, 255))

    return change


VARIANTS: dict[str, Callable[[PacketReceived], bytes]] = {
    "ttl 254": lambda p: wire(PacketReceived(p.message, p.source, p.destination, 254)),
    "source": lambda p: wire(PacketReceived(p.message, PEERS[3], p.destination, 255)),
    "destination": lambda p: wire(
        PacketReceived(p.message, p.source, IPv4Address("192.168.200.1"), 255)
    ),
    # Every byte of the 12-byte message but the VRID (byte 1: another entry's key).
    **{f"message byte {at}": _flip(at) for at in (0, *range(2, 12))},
    "a word more": lambda p: wire(
        PacketReceived(p.message + VIP.packed, p.source, p.destination, 255)
    ),
    "a word less": lambda p: wire(PacketReceived(p.message[:-4], p.source, p.destination, 255)),
    "two bytes more": lambda p: wire(
        PacketReceived(p.message + b"\0\0", p.source, p.destination, 255)
    ),
    "ip options": _options,
}


@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_a_packet_that_differs_anywhere_is_not_absorbed_and_gets_the_classic_verdict(
    absorber: Absorber, prog: int, variant: str
) -> None:
    p = advert()
    assert len(p.message) == 12  # the flipped bytes cover the whole message
    absorber.update(58, p)
    packet = VARIANTS[variant](p)
    assert run_program(prog, packet) == run(program(WANTED), packet, 0)
    assert absorber.take(58) is None
    assert run_program(prog, wire(p)) == 0  # the entry itself still absorbs
    assert absorber.take(58) is not None


def test_each_vrid_has_its_own_entry(absorber: Absorber, prog: int) -> None:
    p58, p59 = advert(58), advert(59)
    absorber.update(58, p58)
    assert run_program(prog, wire(p59)) == ACCEPT  # no entry for 59
    absorber.update(59, p59)
    assert run_program(prog, wire(p59)) == 0
    assert run_program(prog, wire(p59)) == 0
    assert absorber.take(58) is None
    assert absorber.take(59) is not None
    assert run_program(prog, wire(p58)) == 0
    taken = absorber.take(58)
    assert taken is not None and taken[0] == 1


def test_an_entry_set_to_none_absorbs_nothing_more(absorber: Absorber, prog: int) -> None:
    p = advert()
    absorber.update(58, p)
    assert run_program(prog, wire(p)) == 0
    absorber.take(58)
    assert absorber.update(58, None) is None  # nothing absorbed since the take
    assert absorber.absorbing(58) is None
    assert run_program(prog, wire(p)) == ACCEPT
    assert absorber.take(58) is None


def test_a_change_hands_back_a_packet_absorbed_since_the_last_take(
    absorber: Absorber, prog: int
) -> None:
    p, q = advert(priority=100), advert(priority=120)
    absorber.update(58, p)
    assert run_program(prog, wire(p)) == 0
    # Not taken: the router has not heard it, so the change hands it back (late).
    assert absorber.update(58, q) == p
    assert absorber.absorbing(58) == q
    assert absorber.take(58) is None  # counted once: as the late packet, not again here
    assert run_program(prog, wire(p)) == ACCEPT
    assert run_program(prog, wire(q)) == 0
    assert absorber.take(58) is not None
    assert absorber.update(58, p) is None  # taken already: nothing to hand back
    assert run_program(prog, wire(p)) == 0
    assert absorber.update(58, None) == p  # turned off with one untaken: handed back too
    assert absorber.update(58, q) is None


def test_a_packet_the_program_cannot_match_turns_the_entry_off(
    absorber: Absorber, prog: int
) -> None:
    p = advert()
    absorber.update(58, p)
    assert run_program(prog, wire(p)) == 0
    hopeless = PacketReceived(p.message, p.source, p.destination, 254)
    assert absorber.update(58, hopeless) == p
    assert absorber.absorbing(58) is None
    assert run_program(prog, wire(p)) == ACCEPT
    assert run_program(prog, wire(hopeless)) == 0  # TTL 254: the classic filter's drop
    assert absorber.take(58) is None


def test_a_closed_absorber_ignores_updates_and_takes() -> None:
    absorber = Absorber()
    absorber.update(58, advert())
    absorber.close()
    assert absorber.update(58, advert(priority=120)) is None
    assert absorber.take(58) is None
    assert absorber.absorbing(58) is None
    absorber.close()  # twice: harmless


# ---------------------------------------------------------------------------- kernel timer

MS = 1_000_000  # ns


def _expiry(absorber: Absorber, within: float) -> int | None:
    """When (CLOCK_MONOTONIC ns) the ring buffer became readable, waiting at most ``within``
    seconds; None if it did not."""
    assert absorber.watch_fd is not None
    with select.epoll() as poller:
        poller.register(absorber.watch_fd, select.EPOLLIN)
        ready = poller.poll(within)
    return time.monotonic_ns() if ready else None


def test_the_timer_runs_from_each_absorbed_copy_and_its_expiry_names_the_vrid(
    absorber: Absorber, prog: int
) -> None:
    assert absorber.watch_fd is not None, absorber.watch_error
    p = advert()
    absorber.update(58, p, 60_000)  # µs
    assert not absorber.watching(58)
    # Copies every 20 ms for 200 ms: each restarts the 60 ms timer, which never expires.
    start = time.monotonic_ns()
    while time.monotonic_ns() - start < 200 * MS:
        assert run_program(prog, wire(p)) == 0
        time.sleep(0.02)
    taken = absorber.take(58)
    assert taken is not None
    count, last = taken
    assert count >= 5
    assert absorber.watching(58)  # a copy counted with the entry's timeout: the timer runs
    assert absorber.expired() == []
    # Silence: it expires 60 ms after the last copy, never before.
    expired_at = _expiry(absorber, 2.0)
    assert expired_at is not None
    assert expired_at - last >= 60 * MS
    assert absorber.expired() == [58]
    assert absorber.expired() == []  # read once
    assert _expiry(absorber, 0.0) is None
    # Once expired it stays quiet until a copy restarts it.
    assert _expiry(absorber, 0.15) is None
    assert run_program(prog, wire(p)) == 0
    assert _expiry(absorber, 2.0) is not None
    assert absorber.expired() == [58]


def test_no_timer_without_a_timeout_and_none_watched_before_a_copy_of_the_new_one(
    absorber: Absorber, prog: int
) -> None:
    p = advert()
    absorber.update(58, p)
    assert run_program(prog, wire(p)) == 0
    assert absorber.take(58) is not None
    assert not absorber.watching(58)  # no timeout: no timer
    assert _expiry(absorber, 0.15) is None
    absorber.update(58, p, 30_000)  # only the timeout changes: the entry stays on
    assert not absorber.watching(58)
    assert run_program(prog, wire(p)) == 0
    absorber.take(58)
    assert absorber.watching(58)
    absorber.update(58, p, 40_000)
    assert not absorber.watching(58)  # the timer runs with the old one until the next copy
    assert _expiry(absorber, 2.0) is not None
    assert absorber.expired() == [58]
    absorber.update(58, None)
    assert not absorber.watching(58)


def test_a_full_ring_stays_readable_until_read(absorber: Absorber, prog: int) -> None:
    # Expiries the ring has no room for are not recorded, but the unread records keep its
    # descriptor readable: the daemon then looks at every backup of the link (demux.py).
    vrids = range(1, 256)
    for vrid in vrids:
        absorber.update(vrid, advert(vrid), 1_000)
    fired = 0
    while fired <= RING_SIZE // 16:
        for vrid in vrids:
            assert run_program(prog, wire(advert(vrid))) == 0
        time.sleep(0.05)  # every 1 ms timer expires
        fired += len(vrids)
    assert _expiry(absorber, 0.0) is not None
    named = absorber.expired()
    # The ring holds one record less than its size would (the kernel keeps one byte free).
    assert len(named) in (RING_SIZE // 16 - 1, RING_SIZE // 16)
    assert set(named) <= set(vrids)
    assert _expiry(absorber, 0.0) is None
    assert absorber.expired() == []


def test_an_absorber_without_timers_absorbs_all_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = Absorber(watch=False)
    try:
        assert plain.watch_fd is None
        assert plain.expired() == []
        fd = plain.load(program(WANTED))
        try:
            p = advert()
            plain.update(58, p, 60_000)
            assert run_program(fd, wire(p)) == 0
            assert plain.take(58) is not None
            assert not plain.watching(58)
        finally:
            os.close(fd)
    finally:
        plain.close()


# ----------------------------------------------------------------------------- real socket


def _packet_socket(segment: Segment) -> socket.socket:
    def make() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind((SWITCH_IF, 0))
        return sock

    return in_netns(segment.switch, make)


def _set_wanted_under_trio(segment: Segment, transport: RawTransport, wanted: Wanted) -> None:
    """set_wanted in the node's namespace, inside trio.run (its SystemClock: the kernel's
    arrival times are on its clock, so the transport absorbs)."""

    async def main() -> None:
        transport.set_wanted(wanted)

    in_netns(segment.node, lambda: trio.run(main))


async def test_a_transport_never_reads_the_routine_advert_and_reads_every_other(
    segment: Segment,
) -> None:
    transport = in_netns(segment.node, lambda: RawTransport(NODE_IF, Family.IPV4, multicast=True))
    try:
        _set_wanted_under_trio(segment, transport, WANTED)
        absorber = transport.absorber
        assert absorber is not None
        assert transport.rest is not None
        routine, other = advert(), advert(priority=120)
        absorber.update(58, routine)
        time.sleep(0.2)  # the group joined, the link up
        before = time.monotonic_ns()
        with _packet_socket(segment) as sender:
            for packet in (routine, other, routine):
                sender.send(frame(packet.source, 255, packet.message))
        main = read_all(transport.poll, time.monotonic() + 1.0)
        rest = read_all(transport.rest.poll, time.monotonic() + 0.1)
        after = time.monotonic_ns()
        assert [p.message for p in main] == [other.message]
        assert rest == []  # dropped by the program, not sorted to the rest socket
        taken = absorber.take(58)
        assert taken is not None
        assert taken[0] == 2
        assert before <= taken[1] <= after
        # The entry off: the same advertisement is read again.
        absorber.update(58, None)
        with _packet_socket(segment) as sender:
            sender.send(frame(routine.source, 255, routine.message))
        main = read_all(transport.poll, time.monotonic() + 1.0)
        assert main == [routine]
    finally:
        transport.close()
    assert absorber.closed  # closed with the transport


async def test_with_the_ebpf_program_the_two_sockets_split_traffic_as_with_the_classic_one(
    segment: Segment,
) -> None:
    # tests/netns/test_sockfilter_netns.py's cases, with the translated program in place.
    transport = in_netns(segment.node, lambda: RawTransport(NODE_IF, Family.IPV4, multicast=True))
    try:
        wanted = Wanted(Family.IPV4, frozenset({2, 3}), frozenset({58}), frozenset({PEER4}))
        _set_wanted_under_trio(segment, transport, wanted)
        assert transport.absorber is not None
        assert transport.rest is not None
        transport.absorber.update(58, advert(priority=200))  # in none of the cases
        table = sockfilter_netns.cases(Family.IPV4)
        time.sleep(0.2)
        with _packet_socket(segment) as sender:
            for source, ttl, message, _ in table.values():
                sender.send(frame(source, ttl, message))
        main = read_all(transport.poll, time.monotonic() + 1.0)
        others = read_all(transport.rest.poll, time.monotonic() + 0.1)
    finally:
        transport.close()
    assert sorted(p.message for p in main) == sorted(
        m for _, _, m, plausible in table.values() if plausible
    )
    assert sorted(p.message for p in others) == sorted(
        m for _, _, m, plausible in table.values() if not plausible
    )


async def test_no_absorber_for_ipv6_or_outside_trios_system_clock(segment: Segment) -> None:
    v6 = in_netns(segment.node, lambda: RawTransport(NODE_IF, Family.IPV6, multicast=True))
    v4 = in_netns(segment.node, lambda: RawTransport(NODE_IF, Family.IPV4, multicast=True))
    try:
        _set_wanted_under_trio(
            segment, v6, Wanted(Family.IPV6, frozenset({3}), frozenset({58}), None)
        )
        assert v6.rest is not None
        assert v6.absorber is None
        # No trio running (so no clock the kernel's times convert to): the classic filter.
        in_netns(segment.node, lambda: v4.set_wanted(WANTED))
        assert v4.rest is not None
        assert v4.absorber is None
    finally:
        v6.close()
        v4.close()


async def test_without_the_kernels_timers_the_transport_says_so_once_and_still_absorbs(
    segment: Segment, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_btf(self: Absorber) -> None:
        raise Unavailable("cannot load BTF: Invalid argument")

    monkeypatch.setattr(Absorber, "_open_watch", no_btf)
    caplog.set_level(logging.INFO, logger="pyvrrp")
    transport = in_netns(segment.node, lambda: RawTransport(NODE_IF, Family.IPV4, multicast=True))
    try:
        _set_wanted_under_trio(segment, transport, WANTED)
        _set_wanted_under_trio(
            segment, transport, Wanted(Family.IPV4, frozenset({3}), frozenset({58}), None)
        )
        absorber = transport.absorber
        assert absorber is not None
        assert absorber.watch_fd is None
        assert absorber.watch_error == "cannot load BTF: Invalid argument"
        said = [r.getMessage() for r in caplog.records if "Master_Down_Interval" in r.getMessage()]
        assert said == [
            f"{NODE_IF}: backups wake once per Master_Down_Interval (cannot load BTF: Invalid "
            "argument; on Linux 5.15 or later the kernel's timer watches their masters)"
        ]
        routine = advert()
        absorber.update(58, routine, 100_000)
        time.sleep(0.2)
        with _packet_socket(segment) as sender:
            sender.send(frame(routine.source, 255, routine.message))
        assert read_all(transport.poll, time.monotonic() + 0.3) == []
        assert absorber.take(58) is not None
        assert not absorber.watching(58)
    finally:
        transport.close()


# ------------------------------------------------------------------------------ the daemon

ADVERT_CS = 3  # 30 ms: a backup that woke at each Master_Down_Timer would wake 9 times a second


def _switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of ``pid`` so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def test_a_daemons_backup_does_not_wake_while_its_master_lives_and_takes_over_when_it_stops(
    segment: Segment, tmp_path: Path
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f'[global]\nrouter_id = "t"\ncontrol_socket = "{tmp_path}/pyvrrp.sock"\n'
        f'state_dir = "{tmp_path}/state"\n\n'
        f'[instances.v58]\ninterface = "{NODE_IF}"\nvrid = 58\npriority = 100\n'
        f'advert_interval = {ADVERT_CS / 100}\naddresses = ["{VIP}/32"]\n'
    )
    master = encode(
        Advertisement(vrid=58, priority=200, max_advert_interval=ADVERT_CS, addresses=(VIP,)),
        source=PEER4,
        destination=GROUP,
    )
    # Master_Down_Interval at priority 100: 3 x 30 ms + (256 - 100) / 256 x 30 ms.
    down = 3 * ADVERT_CS / 100 + (256 - 100) / 256 * ADVERT_CS / 100
    log = tmp_path / "log"
    with _packet_socket(segment) as sender, log.open("w") as stderr:

        def advertise_for(seconds: float) -> float:
            until = time.monotonic() + seconds
            while (now := time.monotonic()) < until:
                sender.send(frame(PEER4, 255, master))
                time.sleep(ADVERT_CS / 100)
            return now

        advertise_for(0.2)
        daemon = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                segment.node,
                sys.executable,
                "-m",
                "pyvrrp",
                "-c",
                str(config),
            ],
            stderr=stderr,
            cwd=tmp_path,
        )
        try:
            advertise_for(3.0)  # started, backup, its master heard: routine, then watched
            log_text = log.read_text()
            assert "INIT -> BACKUP" in log_text, log_text
            assert "MASTER" not in log_text.split("INIT -> BACKUP", 1)[1], log_text
            before = _switches(daemon.pid)
            advertise_for(1.5)
            woken = _switches(daemon.pid) - before
            # About 14 wake-ups in 1.5 s without the kernel's timer, 50 reading each one.
            assert woken <= 4, log.read_text()
            sender.send(frame(PEER4, 255, master))
            last = time.monotonic()
            while "BACKUP -> MASTER" not in log.read_text():
                assert time.monotonic() - last < down + 3.0, log.read_text()
                time.sleep(0.005)
            took = time.monotonic() - last
        finally:
            daemon.terminate()
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    # Master_Down_Interval after the last advertisement (not the 10 s backstop).
    assert down - 0.005 <= took <= down + 1.0, (took, log.read_text())


def test_the_systemd_units_capabilities_load_the_program_with_its_timers(
    segment: Segment,
) -> None:
    # CAP_BPF without CAP_PERFMON: the verifier is stricter (no uninitialized stack for a
    # helper's variable-length write, among others). The unit's own bounding set, read
    # from it, with root's user id as the unit has.
    root = Path(__file__).resolve().parents[2]
    unit = (root / "contrib" / "pyvrrp.service").read_text()
    (line,) = [x for x in unit.splitlines() if x.startswith("CapabilityBoundingSet=")]
    caps = [c.removeprefix("CAP_").lower() for c in line.split("=", 1)[1].split()]
    assert "bpf" in caps and "perfmon" not in caps and "sys_admin" not in caps
    script = (
        "import socket\n"
        "from pyvrrp.core.packet import Family\n"
        "from pyvrrp.runtime.absorb import Absorber\n"
        "from pyvrrp.runtime.sockfilter import Wanted, program\n"
        "a = Absorber()\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)\n"
        "a.attach(s, program(Wanted(Family.IPV4, frozenset({3}), frozenset({58}), None)))\n"
        "print('timers' if a.watch_fd is not None else a.watch_error)\n"
    )
    done = subprocess.run(
        [
            "ip", "netns", "exec", segment.node,
            "setpriv", "--bounding-set", ",".join(["-all", *(f"+{c}" for c in caps)]),
            sys.executable, "-c", script,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "timers"), done.stderr
