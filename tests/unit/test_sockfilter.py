"""The socket filters (pyvrrp/runtime/sockfilter.py), run by an interpreter of classic BPF
with the kernel's semantics for the instructions they use (a load past the end drops the
packet): the advertisement socket takes exactly the plausible advertisements, the rest
socket exactly everything else, so every packet is read once. The kernel runs them in
tests/netns/test_sockfilter_netns.py."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvrrp.core.packet import Family, IPAddress
from pyvrrp.runtime.sockfilter import (
    ACCEPT,
    ADVERT_BYTE,
    BPF_MAXINSNS,
    SKF_NET_OFF,
    Instruction,
    Wanted,
    program,
)


class OutOfBounds(Exception):
    pass


def run(instructions: list[Instruction], network: bytes, data_offset: int) -> int:
    """What the kernel would return for a packet whose network header is ``network`` and
    whose socket data starts ``data_offset`` bytes into it (IPv4 raw: 0; IPv6: 40)."""
    data = network[data_offset:]

    def load(offset: int, size: int) -> int:
        if offset >= SKF_NET_OFF and offset < 0:
            buffer, at = network, offset - SKF_NET_OFF
        else:
            buffer, at = data, offset
        if at < 0 or at + size > len(buffer):
            raise OutOfBounds
        return int.from_bytes(buffer[at : at + size], "big")

    a = x = 0
    pc = 0
    try:
        while True:
            code, jt, jf, k = instructions[pc]
            pc += 1
            signed_k = k - (1 << 32) if k & 0x8000_0000 else k
            if code == 0x30:  # ld b [k]
                a = load(signed_k, 1)
            elif code == 0x20:  # ld w [k]
                a = load(signed_k, 4)
            elif code == 0x50:  # ld b [x + k]
                a = load(x + signed_k, 1)
            elif code == 0xB1:  # ldx 4 * ([k] & 0xf)
                x = 4 * (load(signed_k, 1) & 0x0F)
            elif code == 0x80:  # ld len
                a = len(data)
            elif code == 0x1C:  # sub x
                a = (a - x) & 0xFFFF_FFFF
            elif code == 0x15:  # jeq k
                pc += jt if a == k else jf
            elif code == 0x35:  # jge k
                pc += jt if a >= k else jf
            elif code == 0x05:  # ja k
                pc += k
            elif code == 0x06:  # ret k
                return k
            else:
                raise AssertionError(f"opcode {code:#x}")
    except OutOfBounds:
        return 0


def ipv4_packet(ttl: int, source: IPv4Address, message: bytes, ihl: int = 5) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        20 + 4 * (ihl - 5) + len(message),
        0,
        0,
        ttl,
        112,
        0,
        source.packed,
        IPv4Address("224.0.0.18").packed,
    )
    return header + b"\0" * (4 * (ihl - 5)) + message


def ipv6_packet(hop_limit: int, source: IPv6Address, message: bytes) -> bytes:
    header = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(message),
        112,
        hop_limit,
        source.packed,
        IPv6Address("ff02::12").packed,
    )
    return header + message


def expected(wanted: Wanted, ttl: int, source: IPAddress, message: bytes) -> bool:
    """The filter's rule, written plainly."""
    return (
        ttl == 255
        and len(message) >= 2
        and message[0] in {ADVERT_BYTE[v] for v in wanted.versions}
        and message[1] in wanted.vrids
        and (wanted.sources is None or source in wanted.sources)
    )


def verdicts(wanted: Wanted, ttl: int, source: IPAddress, message: bytes) -> tuple[int, int]:
    if wanted.family is Family.IPV4:
        assert isinstance(source, IPv4Address)
        network, offset = ipv4_packet(ttl, source, message), 0
    else:
        assert isinstance(source, IPv6Address)
        network, offset = ipv6_packet(ttl, source, message), 40
    return run(program(wanted), network, offset), run(program(wanted, rest=True), network, offset)


V4_PEERS = [ip_address(f"192.168.200.{i}") for i in range(1, 6)]
V6_PEERS = [ip_address(f"fe80::{i}") for i in range(1, 6)]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Wanted, int, IPAddress, bytes]:
    family = draw(st.sampled_from([Family.IPV4, Family.IPV6]))
    peers = V4_PEERS if family is Family.IPV4 else V6_PEERS
    sources = draw(st.none() | st.frozensets(st.sampled_from(peers)))
    wanted = Wanted(
        family,
        draw(st.frozensets(st.sampled_from([2, 3]), min_size=1)),
        draw(st.frozensets(st.integers(1, 255), min_size=1, max_size=255)),
        sources,
    )
    ttl = draw(st.sampled_from([255, 254, 1, 0]))
    source = draw(st.sampled_from(peers))
    first = draw(st.sampled_from([0x31, 0x21, 0x32, 0x11, 0x00, 0xFF]))
    vrid = draw(st.sampled_from([*sorted(wanted.vrids)[:3], 0, 1, 58, 255]))
    message = draw(
        st.sampled_from(
            [b"", bytes([first]), bytes([first, vrid]), bytes([first, vrid]) + b"x" * 30]
        )
    )
    return wanted, ttl, source, message


@given(cases())
def test_the_advertisement_socket_takes_exactly_the_plausible_adverts_and_the_rest_the_rest(
    case: tuple[Wanted, int, IPAddress, bytes],
) -> None:
    wanted, ttl, source, message = case
    main, rest = verdicts(wanted, ttl, source, message)
    assert (main == ACCEPT) is expected(wanted, ttl, source, message)
    assert {main, rest} == {0, ACCEPT}  # read once: by one socket, never both or neither


def test_a_long_chain_of_vrids_and_peers_jumps_far_and_stays_within_the_kernels_limit() -> None:
    wanted = Wanted(Family.IPV6, frozenset({2, 3}), frozenset(range(1, 256)), frozenset(V6_PEERS))
    code = program(wanted)
    assert 512 < len(code) <= BPF_MAXINSNS
    message = bytes([0x31, 255]) + b"\0" * 30
    assert verdicts(wanted, 255, V6_PEERS[-1], message) == (ACCEPT, 0)
    assert verdicts(wanted, 255, ip_address("fe80::99"), message) == (0, ACCEPT)


def test_too_many_peers_for_one_program_sort_by_vrid_and_version_only() -> None:
    peers = frozenset(ip_address(f"fd00::{i:x}") for i in range(1, 2000))
    wanted = Wanted(Family.IPV6, frozenset({3}), frozenset({58}), peers)
    code = program(wanted)
    assert len(code) <= BPF_MAXINSNS
    stranger = ip_address("fd00::ffff")
    assert verdicts(wanted, 255, stranger, bytes([0x31, 58]) + b"\0" * 30) == (ACCEPT, 0)


def test_ipv4_options_move_the_message_and_the_filter_follows() -> None:
    wanted = Wanted(Family.IPV4, frozenset({3}), frozenset({58}), None)
    message = bytes([0x31, 58]) + b"\0" * 10
    packet = ipv4_packet(255, IPv4Address("192.168.200.1"), message, ihl=7)
    assert run(program(wanted), packet, 0) == ACCEPT
    packet = ipv4_packet(255, IPv4Address("192.168.200.1"), bytes([0x31, 59]), ihl=7)
    assert run(program(wanted), packet, 0) == 0


@pytest.mark.parametrize("versions", [{3}, {2}, {2, 3}])
def test_the_versions_an_instance_speaks_decide_the_first_byte(versions: set[int]) -> None:
    wanted = Wanted(Family.IPV4, frozenset(versions), frozenset({1}), None)
    source = V4_PEERS[0]
    for version in (2, 3):
        main, _ = verdicts(wanted, 255, source, bytes([ADVERT_BYTE[version], 1, 0, 0]))
        assert (main == ACCEPT) is (version in versions)


def test_wanted_of_instances_unions_vrids_and_versions_and_any_source_wins() -> None:
    a, b = V4_PEERS[0], V4_PEERS[1]
    both = Wanted.of(Family.IPV4, [(1, [3], [a]), (2, [2, 3], [b])])
    assert both == Wanted(Family.IPV4, frozenset({2, 3}), frozenset({1, 2}), frozenset({a, b}))
    anyone = Wanted.of(Family.IPV4, [(1, [3], [a]), (2, [3], None), (3, [3], [b])])
    assert anyone.sources is None
