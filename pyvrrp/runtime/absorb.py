"""A backup's routine advertisements taken in the kernel (eBPF), not read by the daemon.

A backup hears its master's advertisement every Advertisement_Interval, and all but the
first of them change nothing but counters and the Master_Down_Timer: the master sends the
same bytes each time. Reading each one costs a wake-up of the process, on a virtual machine
about as much CPU as the whole advertisement costs keepalived (docs/benchmarks.md, "Why the
K=1 rows stayed out of reach"). So an IPv4 transport's advertisement socket gets an eBPF
socket filter in place of its classic one (pyvrrp/runtime/sockfilter.py): first, if the
packet is exactly the advertisement its VRID's router last accepted as routine (the same
IPv4 header fields that matter: version and header length, TTL 255, source, destination,
length; the same VRRP bytes), the program writes its arrival time (``bpf_ktime_get_ns``,
CLOCK_MONOTONIC) and a count into a map entry and drops it; everything else goes through
the classic program, translated instruction by instruction (:func:`translate`), so the
socket takes exactly what it took before.

The router says what is routine (``VirtualRouter.routine_packet``: a backup that accepted
that packet from its master and would do nothing on its repetition but restart the
Master_Down_Timer) and takes what the kernel counted with ``VirtualRouter.heard_again``
before anything else it handles, and before its Master_Down_Timer is allowed to fire
(pyvrrp/runtime/instance.py). The entry follows ``routine_packet`` after every event; one
absorbed between the last look and a change is handed to the router late, as a packet.

The Master_Down_Timer runs in the kernel too: the entry holds the router's
Master_Down_Interval, and each absorbed copy restarts its VRID's ``bpf_timer`` (a second
array map, its value type described in BTF built here) for that long. When it expires, its
callback writes the VRID to a ring buffer (:attr:`Absorber.watch_fd` readable,
:meth:`Absorber.expired` empties it), and the backups look at their deadlines. A backup
whose master lives then never wakes (:meth:`Absorber.watching`). A program with a callback
may not use ``LD_ABS``: its loads go through ``bpf_skb_load_bytes``. A timeout changed
without a change of packet is one 64-bit store the kernel reads whole; a copy matched just
before it may restart the timer with the old one, which is why an entry is not watched
again until the next copy is counted.

An entry is turned off before it is rewritten and on again last, so the program never
matches half of one packet and half of another on x86 (stores in program order); arm64
orders the daemon's stores less strictly, and a packet matched during an update could be
compared with a mix of the two, which no real advertisement is (a forged one could match
it, once, as it could match the entry itself). A packet the kernel counts while an update
runs may be credited to the next entry (or to none): one advertisement less restarts the
timer, as if it had been lost on the wire. The ring buffer is read the same way (the
producer's position, then each record's header, plain loads), so its records are only a
hint of which VRID expired: the runtime looks at every backup of the link whenever the ring
says anything (its descriptor readable is the kernel's word, after a system call), and an
expiry the full ring had no room for is found the same way (the ring stays readable).

Nothing here is required: a kernel or a process that cannot load the program (no CAP_BPF
or CAP_SYS_ADMIN, an old kernel, a seccomp filter) keeps the classic filter, and every
advertisement is read as before; a kernel without BPF timers (before 5.15, or no BTF) gets
the program without them, and a backup wakes once per Master_Down_Interval to look. The
map is an array of one entry per VRID shared with the kernel through ``mmap``
(``BPF_F_MMAPABLE``): reading it is a memory access, no system call.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import platform
import socket
import struct
import sys
from collections.abc import Sequence
from ipaddress import IPv4Address

import trio

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import VRRP_TTL
from pyvrrp.runtime.sockfilter import Instruction

# bpf(2) system call numbers of the architectures pyvrrp runs on (little-endian only: the
# instruction encoding below packs the two register numbers of a byte in that order).
_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "armv7l": 386}
_BPF_MAP_CREATE = 0
_BPF_PROG_LOAD = 5
_BPF_PROG_TEST_RUN = 10
_BPF_BTF_LOAD = 18
_BPF_MAP_TYPE_ARRAY = 2
_BPF_MAP_TYPE_RINGBUF = 27
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_BPF_F_MMAPABLE = 1 << 10
_BPF_PSEUDO_MAP_FD = 1
_BPF_PSEUDO_FUNC = 4
SO_ATTACH_BPF = 50
_HELPER_MAP_LOOKUP = 1
_HELPER_KTIME_GET_NS = 5
_HELPER_SKB_LOAD_BYTES = 26
_HELPER_SKB_LOAD_BYTES_RELATIVE = 68
_HELPER_RINGBUF_OUTPUT = 130
_HELPER_TIMER_INIT = 169
_HELPER_TIMER_SET_CALLBACK = 170
_HELPER_TIMER_START = 171
_BPF_HDR_START_NET = 1
_CLOCK_MONOTONIC = 1
SKF_NET_OFF = -0x100000
_RINGBUF_BUSY, _RINGBUF_DISCARD = 1 << 31, 1 << 30

# The map entry of one VRID: u32 words (4 bytes) of the VRRP message (0: absorb nothing), u32 IPv4
# total length, u64 last arrival (ns, CLOCK_MONOTONIC), u64 count, u64 the Master_Down_Interval
# the kernel's timer restarts with at each copy (ns; 0: no timer), then the packet's source
# and destination addresses and the VRRP message, as they are on the wire.
MAX_WORDS = 32  # a VRRP message of up to 128 bytes: 30 IPv4 addresses in VRRPv3
_WORDS, _LENGTH, _LAST, _COUNT, _TIMEOUT, _SOURCE, _DESTINATION, _MESSAGE = (
    0,
    4,
    8,
    16,
    24,
    32,
    36,
    40,
)
VALUE_SIZE = _MESSAGE + 4 * MAX_WORDS
ENTRIES = 256  # VRIDs 0-255 (0 is never used)
_IPV4_HEADER = 20
_LONGEST = _IPV4_HEADER + 4 * MAX_WORDS
# The program's stack (offsets from the frame pointer): the VRID (the maps' key), the packet
# (up to _LONGEST bytes, loaded at once), one classic load.
_KEY, _PACKET, _SCRATCH = -4, -8 - 8 * -(-_LONGEST // 8), -16 - 8 * -(-_LONGEST // 8)
RING_SIZE = 1 << 14  # 1024 wake-ups of 16 bytes: four for each VRID

# eBPF instruction classes, sizes, modes and operations (linux/bpf.h, linux/bpf_common.h).
_LD, _LDX, _ST, _STX, _ALU, _JMP, _JMP32, _ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
_W, _H, _B, _DW = 0x00, 0x08, 0x10, 0x18
_IMM, _MEM, _ATOMIC = 0x00, 0x60, 0xC0
_K, _X = 0x00, 0x08
_ADD, _SUB, _AND, _LSH, _MOV, _END = 0x00, 0x10, 0x50, 0x60, 0xB0, 0xD0
_TO_BE = 0x08
_JA, _JEQ, _JGT, _JGE, _JNE, _JLT, _CALL, _EXIT = 0x00, 0x10, 0x20, 0x30, 0x50, 0xA0, 0x80, 0x90

# Classic BPF opcodes the socket filters use (pyvrrp/runtime/sockfilter.py).
_C_LD_W_ABS, _C_LD_B_ABS, _C_LD_B_IND, _C_LDX_B_MSH = 0x20, 0x30, 0x50, 0xB1
_C_LD_W_LEN, _C_ALU_SUB_X, _C_JMP_JGE_K, _C_JMP_JA = 0x80, 0x1C, 0x35, 0x05
_C_JMP_JEQ_K, _C_RET_K = 0x15, 0x06

# Registers: the classic accumulator and index as the kernel's own translation has them;
# r6-r9 survive helper calls.
_A, _X_REG, _CTX, _ENTRY, _LEN, _FP = 0, 7, 6, 8, 9, 10


class Unavailable(Exception):
    """The kernel or the process cannot load the program (the message says why)."""


# An instruction with a symbolic jump target (a label, resolved by _assemble), or None.
_Insn = tuple[int, int, int, int | str, int]  # code, dst, src, off (or label), imm


def _insn(code: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> _Insn:
    return (code, dst, src, off, imm)


def _s32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class _Builder:
    def __init__(self) -> None:
        self.code: list[_Insn] = []
        self.labels: dict[str, int] = {}
        self.funcs: dict[int, str] = {}  # index of a 64-bit load -> the function it names

    def add(self, code: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> None:
        self.code.append(_insn(code, dst, src, off, imm))

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"label {name} twice")  # pragma: no cover
        self.labels[name] = len(self.code)

    def jump(self, target: str) -> None:
        self.add(_JMP | _JA, off=target)

    def ret(self, value: int) -> None:
        self.add(_ALU | _MOV | _K, _A, imm=_s32(value))
        self.add(_JMP | _EXIT)

    def load_map(self, register: int, fd: int) -> None:
        self.add(_LD | _IMM | _DW, register, _BPF_PSEUDO_MAP_FD, imm=fd)

    def load_function(self, register: int, name: str) -> None:
        self.funcs[len(self.code)] = name
        self.add(_LD | _IMM | _DW, register, _BPF_PSEUDO_FUNC)

    def call(self, helper: int) -> None:
        self.add(_JMP | _CALL, imm=helper)

    def lookup(self, map_fd: int, missing: str) -> None:
        """r0 = the map's value for the key on the stack (the VRID), else jump to
        ``missing``."""
        self.load_map(1, map_fd)
        self.add(_ALU64 | _MOV | _X, 2, _FP)
        self.add(_ALU64 | _ADD | _K, 2, imm=_KEY)
        self.call(_HELPER_MAP_LOOKUP)
        self.add(_JMP | _JEQ | _K, _A, off=missing, imm=0)

    def slots(self) -> list[int]:
        """Each instruction's first slot (and the end's): a 64-bit load takes two."""
        slots = [0]
        for code, *_ in self.code:
            slots.append(slots[-1] + (2 if code == _LD | _IMM | _DW else 1))
        return slots

    def assemble(self) -> bytes:
        # A 64-bit load (a map's address) takes two slots: jumps count slots.
        slots = self.slots()
        out = bytearray()
        for index, (code, dst, src, off, imm) in enumerate(self.code):
            if isinstance(off, str):
                off = slots[self.labels[off]] - slots[index + 1]
            if index in self.funcs:  # a function's address: its first slot, from the next
                imm = slots[self.labels[self.funcs[index]]] - slots[index] - 1
            out += struct.pack("<BBhi", code, src << 4 | dst, off, imm)
            if code == _LD | _IMM | _DW:  # its second half: the upper 32 bits, zero
                out += struct.pack("<BBhi", 0, 0, 0, 0)
        return bytes(out)


def _classic_load(b: _Builder, size: int, k: int, indexed: bool, fail: str) -> None:
    """A = the ``size`` bytes (1, 2 or 4) at ``k`` (plus X when ``indexed``) in host order,
    as classic BPF loads them; a load outside the packet jumps to ``fail``. Offsets from
    SKF_NET_OFF on are from the network header (where a raw IPv4 socket's data starts)."""
    relative = SKF_NET_OFF <= k < SKF_NET_OFF + 0x10000
    offset = k - SKF_NET_OFF if relative else k
    if offset < 0:
        raise ValueError(f"classic BPF load at {k} is not translated")
    b.add(_ALU64 | _MOV | _X, 1, _CTX)
    if indexed:
        b.add(_ALU64 | _MOV | _X, 2, _X_REG)
        b.add(_ALU64 | _ADD | _K, 2, imm=offset)
    else:
        b.add(_ALU64 | _MOV | _K, 2, imm=offset)
    b.add(_ALU64 | _MOV | _X, 3, _FP)
    b.add(_ALU64 | _ADD | _K, 3, imm=_SCRATCH)
    b.add(_ALU64 | _MOV | _K, 4, imm=size)
    if relative:
        b.add(_ALU64 | _MOV | _K, 5, imm=_BPF_HDR_START_NET)
        b.call(_HELPER_SKB_LOAD_BYTES_RELATIVE)
    else:
        b.call(_HELPER_SKB_LOAD_BYTES)
    b.add(_JMP | _JNE | _K, _A, off=fail, imm=0)
    width = {1: _B, 2: _H, 4: _W}[size]
    b.add(_LDX | _MEM | width, _A, _FP, _SCRATCH)
    if size > 1:
        b.add(_ALU | _END | _TO_BE, _A, imm=8 * size)


def translate(classic: Sequence[Instruction], b: _Builder, prefix: str = "c") -> None:
    """Append the classic program ``classic`` to ``b`` as eBPF with the same verdicts.

    Only the instructions pyvrrp's filters use are known (ValueError for any other). The
    accumulator is r0 and the index register r7, both zero at the start as in classic BPF;
    a load past the packet ends the program with 0, as in classic BPF. Loads go through
    ``bpf_skb_load_bytes`` (the kernel's own translation uses ``LD_ABS``, which the verifier
    does not allow in a program with a function besides the main one: the timer's). The
    program's context (the socket buffer) must be in r6. Instructions no path reaches are
    left out: the eBPF verifier refuses a program with dead code.
    """
    b.add(_ALU | _MOV | _K, _A, imm=0)
    b.add(_ALU | _MOV | _K, _X_REG, imm=0)
    reachable = _reachable(classic)
    fail = f"{prefix}fail"
    for index, (code, jt, jf, k) in enumerate(classic):
        b.label(f"{prefix}{index}")
        if index not in reachable:
            # The kernel's classic checker takes dead code (a source chain with no source
            # ends in an unreachable "accept"), the eBPF verifier refuses the program.
            continue

        def to(offset: int, index: int = index) -> str:
            return f"{prefix}{index + 1 + offset}"

        if code in (_C_LD_W_ABS, _C_LD_B_ABS):
            _classic_load(b, 4 if code == _C_LD_W_ABS else 1, _s32(k), False, fail)
        elif code == _C_LD_B_IND:
            _classic_load(b, 1, _s32(k), True, fail)
        elif code == _C_LDX_B_MSH:  # X = 4 * (P[k] & 0xf); A is kept
            b.add(_ALU64 | _MOV | _X, _ENTRY, _A)
            _classic_load(b, 1, _s32(k), False, fail)
            b.add(_ALU | _AND | _K, _A, imm=0xF)
            b.add(_ALU | _LSH | _K, _A, imm=2)
            b.add(_ALU64 | _MOV | _X, _X_REG, _A)
            b.add(_ALU64 | _MOV | _X, _A, _ENTRY)
        elif code == _C_LD_W_LEN:  # A = skb->len (the first field of struct __sk_buff)
            b.add(_LDX | _MEM | _W, _A, _CTX, 0)
        elif code == _C_ALU_SUB_X:
            b.add(_ALU | _SUB | _X, _A, _X_REG)
        elif code in (_C_JMP_JEQ_K, _C_JMP_JGE_K):
            op = _JEQ if code == _C_JMP_JEQ_K else _JGE
            b.add(_JMP32 | op | _K, _A, off=to(jt), imm=_s32(k))
            b.jump(to(jf))
        elif code == _C_JMP_JA:
            b.jump(to(_s32(k)))
        elif code == _C_RET_K:
            b.ret(k)
        else:
            raise ValueError(f"classic BPF opcode {code:#x} is not translated")
    b.label(f"{prefix}{len(classic)}")  # a jump past the end is the kernel's error, not ours
    b.label(fail)
    b.ret(0)


def _reachable(classic: Sequence[Instruction]) -> set[int]:
    """The indexes of the classic instructions some path from the first one reaches."""
    seen: set[int] = set()
    todo = [0]
    while todo:
        index = todo.pop()
        if index in seen or not 0 <= index < len(classic):
            continue
        seen.add(index)
        code, jt, jf, k = classic[index]
        if code == _C_RET_K:
            continue
        if code == _C_JMP_JA:
            todo.append(index + 1 + _s32(k))
        elif code in (_C_JMP_JEQ_K, _C_JMP_JGE_K):
            todo += (index + 1 + jt, index + 1 + jf)
        else:
            todo.append(index + 1)
    return seen


def program(
    classic: Sequence[Instruction], map_fd: int, watch: tuple[int, int] | None = None
) -> bytes:
    """The advertisement socket's eBPF program (:func:`_build`)."""
    return _build(classic, map_fd, watch).assemble()


def _build(
    classic: Sequence[Instruction], map_fd: int, watch: tuple[int, int] | None = None
) -> _Builder:
    """The advertisement socket's eBPF program: absorb a routine advertisement (module
    docstring), else the verdict of ``classic``. ``watch`` (the timer map's and the ring
    buffer's file descriptors): each absorbed copy also restarts its VRID's timer, whose
    expiry writes the VRID to the ring buffer."""
    b = _Builder()
    b.add(_ALU64 | _MOV | _X, _CTX, 1)
    b.add(_LDX | _MEM | _W, _LEN, _CTX, 0)  # skb->len: the IPv4 total length
    b.add(_JMP | _JLT | _K, _LEN, off="classic", imm=_IPV4_HEADER + 8)
    b.add(_JMP | _JGT | _K, _LEN, off="classic", imm=_LONGEST)
    # The buffer zeroed first: a helper may write a variable length to the stack only where
    # it is initialized, unless the process has CAP_PERFMON (systemd's unit gives CAP_BPF).
    for at in range(_PACKET, _KEY - 4, 8):
        b.add(_ST | _MEM | _DW, _FP, off=at, imm=0)
    b.add(_ALU64 | _MOV | _X, 1, _CTX)
    b.add(_ALU64 | _MOV | _K, 2, imm=0)
    b.add(_ALU64 | _MOV | _X, 3, _FP)
    b.add(_ALU64 | _ADD | _K, 3, imm=_PACKET)
    b.add(_ALU64 | _MOV | _X, 4, _LEN)
    b.call(_HELPER_SKB_LOAD_BYTES)  # the whole packet, on the stack
    b.add(_JMP | _JNE | _K, _A, off="classic", imm=0)
    b.add(_LDX | _MEM | _B, _A, _FP, _PACKET)
    b.add(_JMP32 | _JNE | _K, _A, off="classic", imm=0x45)  # IPv4, no options
    b.add(_LDX | _MEM | _B, _A, _FP, _PACKET + 8)
    b.add(_JMP32 | _JNE | _K, _A, off="classic", imm=VRRP_TTL)
    b.add(_LDX | _MEM | _B, _A, _FP, _PACKET + _IPV4_HEADER + 1)  # the VRID: the maps' key
    b.add(_STX | _MEM | _W, _FP, _A, _KEY)
    b.lookup(map_fd, "classic")
    b.add(_ALU64 | _MOV | _X, _ENTRY, _A)
    b.add(_LDX | _MEM | _W, _X_REG, _ENTRY, _WORDS)
    b.add(_JMP32 | _JEQ | _K, _X_REG, off="classic", imm=0)
    b.add(_LDX | _MEM | _W, 1, _ENTRY, _LENGTH)
    b.add(_JMP32 | _JNE | _X, _LEN, 1, off="classic")
    # The length matched: every word compared below is the packet's.
    for at, field in ((12, _SOURCE), (16, _DESTINATION)):
        b.add(_LDX | _MEM | _W, _A, _FP, _PACKET + at)
        b.add(_LDX | _MEM | _W, 1, _ENTRY, field)
        b.add(_JMP32 | _JNE | _X, _A, 1, off="classic")
    for word in range(MAX_WORDS):
        b.add(_JMP32 | _JEQ | _K, _X_REG, off="match", imm=word)
        b.add(_LDX | _MEM | _W, _A, _FP, _PACKET + _IPV4_HEADER + 4 * word)
        b.add(_LDX | _MEM | _W, 1, _ENTRY, _MESSAGE + 4 * word)
        b.add(_JMP32 | _JNE | _X, _A, 1, off="classic")
    b.label("match")
    b.call(_HELPER_KTIME_GET_NS)
    b.add(_STX | _MEM | _DW, _ENTRY, _A, _LAST)
    b.add(_ALU64 | _MOV | _K, 1, imm=1)
    b.add(_STX | _ATOMIC | _DW, _ENTRY, 1, _COUNT, imm=_ADD)
    if watch is not None:
        timer_fd, ring_fd = watch
        b.add(_LDX | _MEM | _DW, _LEN, _ENTRY, _TIMEOUT)
        b.add(_JMP | _JEQ | _K, _LEN, off="absorbed", imm=0)
        b.lookup(timer_fd, "absorbed")
        b.add(_ALU64 | _MOV | _X, _X_REG, _A)
        b.add(_ALU64 | _MOV | _X, 1, _X_REG)
        b.load_map(2, timer_fd)
        b.add(_ALU64 | _MOV | _K, 3, imm=_CLOCK_MONOTONIC)
        b.call(_HELPER_TIMER_INIT)  # -EBUSY once it is: its callback is set then
        b.add(_JMP | _JNE | _K, _A, off="start", imm=0)
        b.add(_ALU64 | _MOV | _X, 1, _X_REG)
        b.load_function(2, "expired")
        b.call(_HELPER_TIMER_SET_CALLBACK)
        b.label("start")
        b.add(_ALU64 | _MOV | _X, 1, _X_REG)
        b.add(_ALU64 | _MOV | _X, 2, _LEN)
        b.add(_ALU64 | _MOV | _K, 3, imm=0)
        b.call(_HELPER_TIMER_START)
    b.label("absorbed")
    b.ret(0)
    b.label("classic")
    translate(classic, b)
    if watch is not None:
        # The timer's callback (map, &key, &value): the VRID to the ring buffer, which
        # wakes the daemon (with no room there, the unread records keep it readable).
        b.label("expired")
        b.add(_LDX | _MEM | _W, 1, 2, 0)
        b.add(_STX | _MEM | _DW, _FP, 1, -8)
        b.load_map(1, ring_fd)
        b.add(_ALU64 | _MOV | _X, 2, _FP)
        b.add(_ALU64 | _ADD | _K, 2, imm=-8)
        b.add(_ALU64 | _MOV | _K, 3, imm=8)
        b.add(_ALU64 | _MOV | _K, 4, imm=0)
        b.call(_HELPER_RINGBUF_OUTPUT)
        b.ret(0)
    return b


def entry_fields(packet: PacketReceived) -> tuple[int, bytes, bytes, bytes] | None:
    """What a map entry holds to absorb ``packet`` (IPv4 length, source, destination, the
    message, as on the wire), or None when the program cannot match it."""
    message = packet.message
    if (
        packet.ttl != VRRP_TTL
        or not isinstance(packet.source, IPv4Address)
        or not isinstance(packet.destination, IPv4Address)
        or len(message) % 4
        or not 8 <= len(message) <= 4 * MAX_WORDS
    ):
        return None
    return (
        _IPV4_HEADER + len(message),
        packet.source.packed,
        packet.destination.packed,
        bytes(message),
    )


class _Bpf:
    """The bpf(2) system call through ctypes."""

    def __init__(self) -> None:
        number = _BPF_SYSCALL.get(platform.machine())
        if number is None or sys.byteorder != "little":
            raise Unavailable(f"no bpf(2) for {platform.machine()}")
        self._number = number
        libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long

    def call(
        self, command: int, attr: bytes | bytearray
    ) -> tuple[int, ctypes.Array[ctypes.c_char]]:
        buffer = ctypes.create_string_buffer(bytes(attr), len(attr))
        result = self._syscall(
            ctypes.c_long(self._number),
            ctypes.c_long(command),
            ctypes.c_void_p(ctypes.addressof(buffer)),
            ctypes.c_long(len(attr)),
        )
        if result < 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
        return result, buffer


def _timer_btf() -> bytes:
    """BTF (type information) for the timer map's value, a ``struct bpf_timer`` (the
    kernel finds a timer in a map value only through its type), and for the program's two
    functions (a program with a callback must say where its functions start)."""
    names = (
        b"\0u32\0u64\0bpf_timer\0a\0b\0pyvrrp_timer\0timer\0int\0pyvrrp_adverts\0pyvrrp_expired\0"
    )

    def name(text: bytes) -> int:
        return names.index(b"\0" + text + b"\0") + 1

    kind_int, kind_struct, kind_func, kind_func_proto = 1, 4, 12, 13
    types = b"".join(
        [
            # [1] u64
            struct.pack("=IIII", name(b"u64"), kind_int << 24, 8, 64),
            # [2] struct bpf_timer { u64 a; u64 b; }
            struct.pack("=III", name(b"bpf_timer"), kind_struct << 24 | 2, 16),
            struct.pack("=III", name(b"a"), 1, 0),
            struct.pack("=III", name(b"b"), 1, 64),
            # [3] struct pyvrrp_timer { struct bpf_timer timer; }
            struct.pack("=III", name(b"pyvrrp_timer"), kind_struct << 24 | 1, 16),
            struct.pack("=III", name(b"timer"), 2, 0),
            # [4] u32: the key
            struct.pack("=IIII", name(b"u32"), kind_int << 24, 4, 32),
            # [5] int; [6] int (void); [7] and [8]: the program's two functions
            struct.pack("=IIII", name(b"int"), kind_int << 24, 4, 1 << 24 | 32),
            struct.pack("=III", 0, kind_func_proto << 24, 5),
            struct.pack("=III", name(b"pyvrrp_adverts"), kind_func << 24, 6),
            struct.pack("=III", name(b"pyvrrp_expired"), kind_func << 24, 6),
        ]
    )
    header = struct.pack("=HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(names))
    return header + types + names


class Absorber:
    """The maps and program of one IPv4 advertisement socket.

    :meth:`attach` puts the program (with the socket's classic filter inside) on the socket;
    :meth:`update` makes an entry absorb a packet (or nothing); :meth:`take` says how many
    were absorbed since the last look and when the last one arrived.

    With ``watch`` (where the kernel has timers for BPF programs), each absorbed copy also
    restarts a timer of the entry's Master_Down_Interval in the kernel: :attr:`watch_fd` is
    readable when one expired (no copy for that long), :meth:`expired` empties the ring (its
    records name the VRIDs, as a hint). A backup then needs no wake-up of its own while its
    master lives (:meth:`watching`).
    """

    def __init__(self, *, watch: bool = True) -> None:
        try:
            self._bpf = _Bpf()
            self.map_fd = self._create(
                _BPF_MAP_TYPE_ARRAY,
                (4, VALUE_SIZE, ENTRIES),
                b"pyvrrp_routine",
                flags=_BPF_F_MMAPABLE,
            )
        except OSError as exc:
            raise Unavailable(f"cannot create a BPF map: {exc.strerror or exc}") from None
        except (AttributeError, TypeError) as exc:  # no libc.syscall here
            raise Unavailable(f"no bpf(2): {exc}") from None
        size = -(-ENTRIES * VALUE_SIZE // mmap.PAGESIZE) * mmap.PAGESIZE
        try:
            self._memory = mmap.mmap(self.map_fd, size, mmap.MAP_SHARED)
        except OSError as exc:
            os.close(self.map_fd)
            raise Unavailable(f"cannot map the BPF map: {exc.strerror or exc}") from None
        self._view = memoryview(self._memory)
        self._set: dict[int, PacketReceived] = {}  # VRID -> the packet its entry absorbs
        self._seen: dict[int, int] = {}  # VRID -> its entry's count already taken
        self._timeouts: dict[int, int] = {}  # VRID -> its entry's timer (µs)
        self._watched: set[int] = set()  # VRIDs whose timer runs with their entry's timeout
        self.closed = False
        # The kernel's timers: the ring buffer they write to (None: no timers).
        self.watch_fd: int | None = None
        self.watch_error: str | None = None  # why there are none, when asked for
        self._timers_fd: int | None = None
        self._btf_fd: int | None = None  # the types of the timer's value and the functions
        if watch:
            try:
                self._open_watch()
            except Unavailable as exc:
                self.watch_error = str(exc)
                self._close_watch()

    def _create(
        self,
        kind: int,
        sizes: tuple[int, int, int],
        name: bytes,
        *,
        flags: int = 0,
        btf: tuple[int, int, int] = (0, 0, 0),
    ) -> int:
        """A map: its type, (key size, value size, entries), name, flags and BTF (file
        descriptor, key type, value type)."""
        attr = struct.pack("=IIIIIII16sIIIII", kind, *sizes, flags, 0, 0, name, 0, *btf, 0)
        fd, _ = self._bpf.call(_BPF_MAP_CREATE, attr)
        return fd

    def _open_watch(self) -> None:
        btf = _timer_btf()
        data = ctypes.create_string_buffer(btf, len(btf))
        attr = struct.pack("=QQIII", ctypes.addressof(data), 0, len(btf), 0, 0)
        try:
            self._btf_fd, _ = self._bpf.call(_BPF_BTF_LOAD, attr)
        except OSError as exc:
            raise Unavailable(f"cannot load BTF: {exc.strerror or exc}") from None
        btf_fd = self._btf_fd
        try:
            self._timers_fd = self._create(
                _BPF_MAP_TYPE_ARRAY, (4, 16, ENTRIES), b"pyvrrp_timers", btf=(btf_fd, 4, 3)
            )
            self.watch_fd = self._create(
                _BPF_MAP_TYPE_RINGBUF, (0, 0, RING_SIZE), b"pyvrrp_expired"
            )
        except OSError as exc:
            raise Unavailable(f"cannot create the timers' maps: {exc.strerror or exc}") from None
        page = mmap.PAGESIZE
        try:
            self._consumer = mmap.mmap(self.watch_fd, page, mmap.MAP_SHARED)
            self._producer = mmap.mmap(
                self.watch_fd, page + 2 * RING_SIZE, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
            )
        except OSError as exc:
            raise Unavailable(f"cannot map the ring buffer: {exc.strerror or exc}") from None

    def _close_watch(self) -> None:
        for name in ("_consumer", "_producer"):
            memory = self.__dict__.pop(name, None)
            if memory is not None:
                memory.close()
        if self.watch_fd is not None:
            _notify_closing(self.watch_fd)
            os.close(self.watch_fd)
            self.watch_fd = None
        for name in ("_timers_fd", "_btf_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        self._watched.clear()

    def load(self, classic: Sequence[Instruction]) -> int:
        """Load the program around ``classic``; its file descriptor (the caller closes it).
        Without the timers when the kernel refuses them (:attr:`watch_error` says why)."""
        if self.watch_fd is not None and self._timers_fd is not None and self._btf_fd is not None:
            b = _build(classic, self.map_fd, (self._timers_fd, self.watch_fd))
            # Where each function starts (slots) and its type in the BTF (_timer_btf).
            functions = struct.pack("=IIII", 0, 7, b.slots()[b.labels["expired"]], 8)
            try:
                return self._load(b.assemble(), (self._btf_fd, functions))
            except Unavailable as exc:
                self.watch_error = str(exc)
                self._close_watch()
        return self._load(program(classic, self.map_fd))

    def _load(self, code: bytes, btf: tuple[int, bytes] | None = None) -> int:
        btf_fd, functions = btf if btf is not None else (0, b"")
        func_info = ctypes.create_string_buffer(functions, max(1, len(functions)))
        log_buffer = ctypes.create_string_buffer(1 << 16)
        # The timer helpers are for GPL-compatible programs: this generated code is the
        # project's (MIT), offered under either licence.
        license = ctypes.create_string_buffer(b"Dual MIT/GPL")
        insns = ctypes.create_string_buffer(code, len(code))
        for level in (0, 1):  # again with the verifier's log to say why it refused
            attr = struct.pack(
                "=IIQQIIQII16sIIIIQI",
                _BPF_PROG_TYPE_SOCKET_FILTER,
                len(code) // 8,
                ctypes.addressof(insns),
                ctypes.addressof(license),
                level,
                len(log_buffer) if level else 0,
                ctypes.addressof(log_buffer) if level else 0,
                0,
                0,
                b"pyvrrp_adverts",
                0,
                0,
                btf_fd,
                8 if functions else 0,
                ctypes.addressof(func_info) if functions else 0,
                len(functions) // 8,
            )
            try:
                fd, _ = self._bpf.call(_BPF_PROG_LOAD, attr)
                return fd
            except OSError as exc:
                if level or exc.errno in (errno.EPERM, errno.ENOSYS):
                    verifier = log_buffer.value.decode(errors="replace").strip()
                    last = verifier.splitlines()[-3:] if verifier else []
                    detail = f" ({'; '.join(last)})" if last else ""
                    raise Unavailable(
                        f"cannot load the BPF program: {exc.strerror or exc}{detail}"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def attach(self, sock: socket.socket, classic: Sequence[Instruction]) -> None:
        """Put the program around ``classic`` on ``sock`` (replacing its filter)."""
        fd = self.load(classic)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, fd)
        except OSError as exc:
            raise Unavailable(f"cannot attach the BPF program: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def update(
        self, vrid: int, packet: PacketReceived | None, timeout: int | None = None
    ) -> PacketReceived | None:
        """Absorb ``packet`` for ``vrid`` from now on (None, or a packet the program cannot
        match: nothing), each copy restarting the kernel's timer for ``timeout`` µs (None:
        no timer). Returns the packet the entry absorbed before, when it absorbed one since
        the last :meth:`take`: the router must still hear it (late)."""
        current = self._set.get(vrid)
        if self.closed:
            return None
        if self.watch_fd is None or packet is None:
            timeout = None
        if packet == current:
            if timeout != self._timeouts.get(vrid) and current is not None:
                # Only the timer changes: one store, read by the kernel after a match.
                self._set_timeout(vrid, timeout)
            return None
        base = vrid * VALUE_SIZE
        view = self._view
        struct.pack_into("=I", view, base + _WORDS, 0)  # off first: nothing matches halfway
        count: int = struct.unpack_from("=Q", view, base + _COUNT)[0]
        late = current if count != self._seen.get(vrid, count) else None
        self._seen[vrid] = count
        fields = None if packet is None else entry_fields(packet)
        if fields is None:
            self._set.pop(vrid, None)
            self._set_timeout(vrid, None)
            return late
        assert packet is not None
        length, source, destination, message = fields
        struct.pack_into("=I", view, base + _LENGTH, length)
        self._set_timeout(vrid, timeout)
        view[base + _SOURCE : base + _DESTINATION] = source
        view[base + _DESTINATION : base + _MESSAGE] = destination
        view[base + _MESSAGE : base + _MESSAGE + len(message)] = message
        struct.pack_into("=I", view, base + _WORDS, len(message) // 4)  # last: the entry is on
        self._set[vrid] = packet
        return late

    def _set_timeout(self, vrid: int, timeout: int | None) -> None:
        # Until the next copy restarts it, the timer runs (if at all) with the old one.
        self._watched.discard(vrid)
        if timeout is None:
            self._timeouts.pop(vrid, None)
        else:
            self._timeouts[vrid] = timeout
        struct.pack_into("=Q", self._view, vrid * VALUE_SIZE + _TIMEOUT, 1000 * (timeout or 0))

    def absorbing(self, vrid: int) -> PacketReceived | None:
        """The packet the entry of ``vrid`` absorbs, if any."""
        return self._set.get(vrid)

    def watching(self, vrid: int) -> bool:
        """Whether the kernel's timer of ``vrid`` runs from the last absorbed copy with the
        timeout :meth:`update` gave (it did absorb one since): :attr:`watch_fd` will say when
        that long passes without another."""
        return vrid in self._watched

    def take(self, vrid: int) -> tuple[int, int] | None:
        """What the entry of ``vrid`` absorbed since the last look: how many, and when the
        last one arrived (ns, CLOCK_MONOTONIC); None if nothing."""
        if vrid not in self._set:
            return None
        base = vrid * VALUE_SIZE
        count: int = struct.unpack_from("=Q", self._view, base + _COUNT)[0]
        new = count - self._seen[vrid]
        if not new:
            return None
        self._seen[vrid] = count
        if vrid in self._timeouts:
            self._watched.add(vrid)
        # Read after the count: the kernel writes the time first, so it is at least that
        # of the packet counted last.
        last: int = struct.unpack_from("=Q", self._view, base + _LAST)[0]
        return new, last

    def expired(self) -> list[int]:
        """The VRIDs whose timer expired since the last call, as the ring buffer names them
        (it is emptied). A hint: an expiry the full ring had no room for is not named, and
        a record is read with plain loads (module docstring); the runtime looks at every
        backup of the link whenever this says anything."""
        if self.watch_fd is None:
            return []
        page = mmap.PAGESIZE
        consumer: int = struct.unpack_from("=Q", self._consumer, 0)[0]
        producer: int = struct.unpack_from("=Q", self._producer, 0)[0]
        vrids: list[int] = []
        while consumer < producer:
            at = page + (consumer & (RING_SIZE - 1))
            header: int = struct.unpack_from("=I", self._producer, at)[0]
            if header & _RINGBUF_BUSY:
                break
            length = header & ~(_RINGBUF_BUSY | _RINGBUF_DISCARD)
            if not header & _RINGBUF_DISCARD and length >= 4:
                vrids.append(struct.unpack_from("=I", self._producer, at + 8)[0])
            consumer += (length + 8 + 7) & ~7
        struct.pack_into("=Q", self._consumer, 0, consumer)
        return vrids

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._set.clear()
        self._close_watch()
        self._view.release()
        self._memory.close()
        os.close(self.map_fd)


def _notify_closing(fd: int) -> None:
    """Tell trio a file descriptor it may wait on is closing (outside trio: nothing)."""
    with contextlib.suppress(RuntimeError):
        trio.lowlevel.notify_closing(fd)


def clock_is_monotonic() -> bool:
    """Whether the running trio's clock is its SystemClock (CLOCK_MONOTONIC plus a fixed
    offset), the clock the kernel's arrival times can be converted to; False under a test's
    clock, or outside trio."""
    try:
        from trio._core import _run

        return type(_run.GLOBAL_RUN_CONTEXT.runner.clock) is _run.SystemClock
    except (ImportError, AttributeError):
        return False


def run_program(prog_fd: int, ip_packet: bytes) -> int:
    """Run a loaded socket filter on ``ip_packet`` (BPF_PROG_TEST_RUN): its verdict."""
    frame = b"\0" * 12 + b"\x08\x00" + ip_packet
    data = ctypes.create_string_buffer(frame, len(frame))
    attr = struct.pack(
        "=IIIIQQII", prog_fd, 0, len(frame), 0, ctypes.addressof(data), 0, 1, 0
    ) + bytes(40)
    _, buffer = _Bpf().call(_BPF_PROG_TEST_RUN, attr)
    verdict: int = struct.unpack_from("=I", buffer.raw, 4)[0]
    return verdict
