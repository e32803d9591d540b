"""Socket filters (classic BPF) that split a VRRP socket's traffic in the kernel.

Under a flood, a raw socket's queue fills with whatever arrives, and the peers' real
advertisements are dropped with the rest: a backup then hears nothing for
Master_Down_Interval and takes over (docs/benchmarks.md, "Hostile traffic"). So each
transport has two sockets with complementary filters:

- the *advertisement* socket takes only what could be an advertisement this node waits for:
  TTL / hop limit 255 (RFC 9568 §7.1), a VRRP version and type some instance accepts
  (advertisement, version 3 and/or 2), one of the VRIDs configured on the link and, when
  every instance on the link accepts only its unicast peers, a peer's source address;
- the *rest* socket takes everything else, so that every packet is still read, dropped for
  its reason and counted (a flood of it overflows only that socket's queue, which the
  kernel counts in /proc/net/raw).

The filters only sort: the core still checks every packet in full. The programs are built
by :func:`program` (a pure function, tested against an interpreter of the same semantics
and, in netns, by the kernel) and attached with :func:`attach`; ``SO_ATTACH_FILTER``
replaces a socket's program atomically, so a reload changes it in place.
"""

from __future__ import annotations

import array
import socket
import struct
from collections.abc import Iterable

import attrs

from pyvrrp.core.packet import VRRP_TTL, Family, IPAddress

SO_ATTACH_FILTER = 26  # Linux, every architecture pyvrrp runs on (asm-generic/socket.h)
# Offsets from the network header (the IP header), whatever the socket's data starts with:
# an IPv4 raw socket's data is the IP header, an IPv6 raw socket's the VRRP message.
SKF_NET_OFF = -0x100000
BPF_MAXINSNS = 4096
# The first byte of an advertisement: version << 4 | type (1, ADVERTISEMENT).
ADVERT_BYTE = {2: 0x21, 3: 0x31}

# Classic BPF opcodes (linux/filter.h, linux/bpf_common.h).
_LD_W_ABS = 0x20
_LD_B_ABS = 0x30
_LD_B_IND = 0x50
_LDX_B_MSH = 0xB1
_LD_W_LEN = 0x80
_ALU_SUB_X = 0x1C
_JMP_JGE_K = 0x35
_JMP_JA = 0x05
_JMP_JEQ_K = 0x15
_RET_K = 0x06

ACCEPT = 0xFFFF_FFFF  # the whole packet
REJECT = 0

Instruction = tuple[int, int, int, int]  # code, jt, jf, k: struct sock_filter


@attrs.frozen
class Wanted:
    """What the advertisement socket of one (interface, family) takes."""

    family: Family
    versions: frozenset[int]  # VRRP versions some instance accepts (2, 3)
    vrids: frozenset[int]
    sources: frozenset[IPAddress] | None  # None: any source (some instance accepts anyone)

    @classmethod
    def of(
        cls,
        family: Family,
        instances: Iterable[tuple[int, Iterable[int], Iterable[IPAddress] | None]],
    ) -> Wanted:
        """From each instance's (VRID, versions, accepted sources or None for any)."""
        vrids: set[int] = set()
        versions: set[int] = set()
        sources: set[IPAddress] | None = set()
        for vrid, its_versions, its_sources in instances:
            vrids.add(vrid)
            versions.update(its_versions)
            if its_sources is None or sources is None:
                sources = None
            else:
                sources.update(its_sources)
        return cls(
            family,
            frozenset(versions),
            frozenset(vrids),
            None if sources is None else frozenset(sources),
        )


class _Program:
    """Instructions with symbolic jump targets, resolved by :meth:`assemble`."""

    def __init__(self) -> None:
        self.code: list[tuple[int, int | str, int | str, int]] = []
        self.labels: dict[str, int] = {}

    def add(self, code: int, k: int = 0, jt: int | str = 0, jf: int | str = 0) -> None:
        self.code.append((code, jt, jf, k & 0xFFFF_FFFF))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def member(self, values: Iterable[int], ok: str, fail: str) -> None:
        """Jump to ``ok`` if the accumulator is one of ``values``, else to ``fail`` (with
        long jumps: a chain of 255 VRIDs is longer than a conditional jump reaches)."""
        for value in sorted(values):
            self.add(_JMP_JEQ_K, value, jt=0, jf=1)  # equal: the jump below; else past it
            self.jump(ok)
        self.jump(fail)

    def unless(self, code: int, k: int, fail: str) -> None:
        """Go on if the conditional jump ``code`` with ``k`` holds, else jump to ``fail``."""
        self.add(code, k, jt=1, jf=0)
        self.jump(fail)

    def jump(self, target: str) -> None:
        self.code.append((_JMP_JA, target, 0, 0))

    def assemble(self) -> list[Instruction]:
        out: list[Instruction] = []
        for index, (code, jt, jf, k) in enumerate(self.code):
            if code == _JMP_JA and isinstance(jt, str):
                out.append((code, 0, 0, self.labels[jt] - index - 1))
                continue
            out.append((code, self._offset(jt, index), self._offset(jf, index), k))
        return out

    def _offset(self, target: int | str, index: int) -> int:
        if isinstance(target, int):
            return target
        offset = self.labels[target] - index - 1
        if not 0 <= offset <= 255:
            raise ValueError(f"conditional jump of {offset} instructions")  # pragma: no cover
        return offset


def program(wanted: Wanted, *, rest: bool = False) -> list[Instruction]:
    """The filter of the advertisement socket (``rest``: of the rest socket, which takes
    exactly what the other one does not)."""
    p = _Program()
    if wanted.family is Family.IPV4:
        p.add(_LD_B_ABS, SKF_NET_OFF + 8)  # TTL
    else:
        p.add(_LD_B_ABS, SKF_NET_OFF + 7)  # hop limit
    p.unless(_JMP_JEQ_K, VRRP_TTL, "no")
    if wanted.family is Family.IPV4:
        p.add(_LDX_B_MSH, 0)  # X = the IPv4 header's length: the VRRP message follows
    # (an IPv6 raw socket's data is the VRRP message: X stays 0)
    # At least the two bytes read below: a load past the end would end the program with
    # "drop" in both sockets' filters, and the packet would go uncounted.
    p.add(_LD_W_LEN)
    p.add(_ALU_SUB_X)
    p.unless(_JMP_JGE_K, 2, "no")
    p.add(_LD_B_IND, 0)  # version and type
    p.member((ADVERT_BYTE[v] for v in wanted.versions if v in ADVERT_BYTE), "version", "no")
    p.label("version")
    p.add(_LD_B_IND, 1)  # VRID
    p.member(wanted.vrids, "vrid", "no")
    p.label("vrid")
    if wanted.sources is not None:
        words = 1 if wanted.family is Family.IPV4 else 4
        at = SKF_NET_OFF + (12 if wanted.family is Family.IPV4 else 8)
        for n, source in enumerate(sorted(wanted.sources, key=lambda a: a.packed)):
            if source.version != wanted.family.value:
                continue
            values = struct.unpack(f"!{words}I", source.packed)
            for i, value in enumerate(values):
                p.add(_LD_W_ABS, at + 4 * i)
                p.add(_JMP_JEQ_K, value, jt=0, jf=f"next{n}")
            p.jump("yes")
            p.label(f"next{n}")
        p.jump("no")
    p.label("yes")
    p.add(_RET_K, REJECT if rest else ACCEPT)
    p.label("no")
    p.add(_RET_K, ACCEPT if rest else REJECT)
    code = p.assemble()
    if len(code) > BPF_MAXINSNS:
        # Thousands of peers: sort by VRID and version only (the core checks sources).
        return program(attrs.evolve(wanted, sources=None), rest=rest)
    return code


def attach(sock: socket.socket, instructions: list[Instruction]) -> None:
    """Attach a classic BPF program to ``sock`` (replacing the one it has)."""
    buffer = array.array("B", b"".join(struct.pack("=HBBI", *i) for i in instructions))
    address, _ = buffer.buffer_info()
    fprog = struct.pack("HP", len(instructions), address)  # struct sock_fprog, native layout
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it
