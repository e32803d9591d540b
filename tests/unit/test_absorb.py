"""The absorbing program's assembly and the transport's fallback, without root
(pyvrrp/runtime/absorb.py; the kernel runs the program in tests/netns/test_absorb_netns.py).
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest
import trio

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import Family
from pyvrrp.runtime import absorb, sockfilter, transport
from pyvrrp.runtime.absorb import (
    MAX_WORDS,
    Absorber,
    Unavailable,
    clock_is_monotonic,
    entry_fields,
    program,
)
from pyvrrp.runtime.sockfilter import Instruction, Wanted
from pyvrrp.runtime.sockfilter import program as classic_program
from pyvrrp.runtime.transport import RawTransport

PEER = IPv4Address("192.168.200.2")
GROUP = IPv4Address("224.0.0.18")
LD_IMM64 = 0x18
MAP_FD = 1234
WANTED = Wanted(Family.IPV4, frozenset({3}), frozenset({58}), None)

# ------------------------------------------------------------------------------ entry_fields


def test_an_entry_holds_the_length_addresses_and_message_as_on_the_wire() -> None:
    message = bytes([0x31, 58, 100, 1, 0, 100, 0xAB, 0xCD]) + bytes([192, 168, 200, 100])
    assert entry_fields(PacketReceived(message, PEER, GROUP, 255)) == (
        32,
        bytes([192, 168, 200, 2]),
        bytes([224, 0, 0, 18]),
        message,
    )
    longest = PacketReceived(b"\x31\x3a" + b"\0" * (4 * MAX_WORDS - 2), PEER, GROUP, 255)
    fields = entry_fields(longest)
    assert fields is not None and len(fields[3]) == 4 * MAX_WORDS


@pytest.mark.parametrize(
    "packet",
    [
        PacketReceived(b"\x31\x3a" + b"\0" * 10, IPv6Address("fe80::2"), GROUP, 255),
        PacketReceived(b"\x31\x3a" + b"\0" * 10, PEER, IPv6Address("ff02::12"), 255),
        PacketReceived(b"\x31\x3a" + b"\0" * 10, PEER, GROUP, 254),
        PacketReceived(b"\x31\x3a" + b"\0" * 9, PEER, GROUP, 255),
        PacketReceived(b"\x31\x3a" + b"\0" * 2, PEER, GROUP, 255),
        PacketReceived(b"", PEER, GROUP, 255),
        PacketReceived(b"\x31\x3a" + b"\0" * (4 * MAX_WORDS + 2), PEER, GROUP, 255),
    ],
    ids=["ipv6 source", "ipv6 destination", "ttl 254", "11 bytes", "4 bytes", "empty", "long"],
)
def test_no_entry_for_a_packet_the_program_cannot_match(packet: PacketReceived) -> None:
    assert entry_fields(packet) is None


# --------------------------------------------------------------------------------- program


def slots(code: bytes) -> list[tuple[int, int, int, int, int]]:
    """The program's 8-byte slots: (opcode, dst, src, off, imm)."""
    assert len(code) % 8 == 0
    out = []
    for at in range(0, len(code), 8):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, at)
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def test_the_map_load_takes_two_slots_and_jumps_count_slots() -> None:
    code = slots(program(classic_program(WANTED), MAP_FD))
    loads = [i for i, s in enumerate(code) if s[0] == LD_IMM64]
    assert len(loads) == 1
    at = loads[0]
    assert code[at][2:] == (1, 0, MAP_FD)  # BPF_PSEUDO_MAP_FD, the map's fd
    assert code[at + 1] == (0, 0, 0, 0, 0)  # its upper half
    # The checks before the map load jump across it to the classic program, which starts
    # with A = 0 and X = 0 (two 32-bit moves): counted in slots, they land exactly there.
    before = [
        (i, s) for i, s in enumerate(code[:at]) if s[0] & 0x07 in (0x05, 0x06) and s[0] != 0x85
    ]
    assert before  # the length, version and TTL checks
    targets = {i + 1 + s[3] for i, s in before}
    assert len(targets) == 1
    (start,) = targets
    assert code[start] == (0xB4, 0, 0, 0, 0)
    assert code[start + 1] == (0xB4, 7, 0, 0, 0)
    # No jump anywhere lands inside the map load or outside the program.
    for i, (op, _, _, off, _) in enumerate(code):
        if op & 0x07 in (0x05, 0x06) and op not in (0x85, 0x95):
            assert 0 <= i + 1 + off < len(code)
            assert i + 1 + off != at + 1


def test_an_unknown_classic_opcode_is_refused() -> None:
    with pytest.raises(ValueError, match="0x7 is not translated"):
        program([(0x07, 0, 0, 0)], MAP_FD)  # tax: no filter of ours uses it


def test_dead_classic_code_is_left_out_of_the_translation() -> None:
    # The eBPF verifier refuses unreachable instructions, the classic checker does not (a
    # chain of no accepted source ends in an "accept" nothing reaches).
    live: list[Instruction] = [(0x30, 0, 0, 8), (0x15, 0, 1, 255), (0x06, 0, 0, 1), (0x06, 0, 0, 0)]
    dead: list[Instruction] = [
        (0x30, 0, 0, 8),
        (0x15, 0, 2, 255),
        (0x06, 0, 0, 1),
        (0x06, 0, 0, 0xFFFF_FFFF),  # after a return, and no jump reaches it
        (0x06, 0, 0, 0),
    ]
    assert program(dead, MAP_FD) == program(live, MAP_FD)
    nowhere = classic_program(Wanted(Family.IPV4, frozenset({3}), frozenset({58}), frozenset()))
    assert (0x06, 0, 0, 0xFFFF_FFFF) in nowhere  # the dead "accept" of no source
    returns = [s[4] for s in slots(program(nowhere, MAP_FD)) if s[0] == 0xB4 and s[1] == 0]
    assert -1 not in returns  # and it is gone: nothing accepts


# -------------------------------------------------------------------------------- fallback


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, rest = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with ours, rest:
        yield ours, rest


def owned_transport(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> tuple[RawTransport, list[tuple[socket.socket, list[Instruction]]]]:
    """A transport on a socket pair that sets filters as on its own raw sockets (the rest
    socket is the pair's other end); and the classic filters it attaches."""
    ours, rest = pair
    t = RawTransport("lo", Family.IPV4, multicast=False, raw_socket=ours)
    t._owned = True  # filters as on a raw socket of its own
    monkeypatch.setattr(t, "_open", lambda what, program=None: rest)
    attached: list[tuple[socket.socket, list[Instruction]]] = []
    real = sockfilter.attach

    def attach(sock: socket.socket, instructions: list[Instruction]) -> None:
        attached.append((sock, instructions))
        real(sock, instructions)

    monkeypatch.setattr("pyvrrp.runtime.transport.attach", attach)
    return t, attached


def _refuse(*_: object) -> object:
    raise OSError(errno.EPERM, "Operation not permitted")


async def test_without_bpf_the_transport_says_so_once_and_keeps_the_classic_filter(
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert clock_is_monotonic()  # pytest-trio's default clock: the transport would absorb
    monkeypatch.setattr(absorb._Bpf, "call", _refuse)
    t, attached = owned_transport(pair, monkeypatch)
    caplog.set_level(logging.INFO, logger=transport.log.name)
    t.set_wanted(WANTED)
    assert t.absorber is None
    assert (pair[0], classic_program(WANTED)) in attached
    said = [r for r in caplog.records if r.name == transport.log.name]
    assert [(r.levelno, r.getMessage()) for r in said] == [
        (
            logging.INFO,
            "lo: backups read every advertisement (cannot create a BPF map: Operation not "
            "permitted; with CAP_BPF the kernel takes the routine ones)",
        )
    ]
    # Another change of what is wanted: the classic filter again, and no second line.
    other = Wanted(Family.IPV4, frozenset({3}), frozenset({58, 59}), None)
    t.set_wanted(other)
    assert (pair[0], classic_program(other)) in attached
    assert len([r for r in caplog.records if r.name == transport.log.name]) == 1


async def test_an_absorber_that_cannot_load_is_closed_and_the_classic_filter_stays(
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[bool] = []

    class NoProgram:
        def attach(self, sock: socket.socket, classic: list[Instruction]) -> None:
            raise Unavailable("cannot load the BPF program: Operation not permitted")

        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(transport, "Absorber", NoProgram)
    t, attached = owned_transport(pair, monkeypatch)
    caplog.set_level(logging.INFO, logger=transport.log.name)
    t.set_wanted(WANTED)
    assert t.absorber is None
    assert closed == [True]
    assert (pair[0], classic_program(WANTED)) in attached
    assert "cannot load the BPF program" in caplog.text


async def test_under_a_tests_clock_the_transport_does_not_absorb(
    pair: tuple[socket.socket, socket.socket],
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.abc.Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The kernel's arrival times are CLOCK_MONOTONIC; a virtual clock has no such relation.
    assert not clock_is_monotonic()
    made: list[bool] = []
    monkeypatch.setattr(transport, "Absorber", lambda: made.append(True))
    t, attached = owned_transport(pair, monkeypatch)
    caplog.set_level(logging.INFO, logger=transport.log.name)
    t.set_wanted(WANTED)
    assert made == []
    assert t.absorber is None
    assert (pair[0], classic_program(WANTED)) in attached
    assert caplog.text == ""


def test_outside_trio_the_clock_is_not_monotonic() -> None:
    assert not clock_is_monotonic()


def test_bpf_refused_is_unavailable_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(absorb._Bpf, "call", _refuse)
    with pytest.raises(Unavailable, match="cannot create a BPF map: Operation not permitted"):
        Absorber()
