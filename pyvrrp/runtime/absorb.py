"""A backup's routine advertisements taken in the kernel (eBPF), not read by the daemon.

A backup hears its master's advertisement every Advertisement_Interval, and all but the
first of them change nothing but counters and the Master_Down_Timer: the master sends the
same bytes each time. Reading each one costs a wake-up of the process, on a virtual machine
about as much CPU as the whole advertisement costs keepalived (docs/benchmarks.md, "Why the
K=1 rows stay out of reach"). So an IPv4 transport's advertisement socket gets an eBPF
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

An entry is turned off before it is rewritten and on again last, so the program never
matches half of one packet and half of another on x86 (stores in program order); arm64
orders the daemon's stores less strictly, and a packet matched during an update could be
compared with a mix of the two, which no real advertisement is (a forged one could match
it, once, as it could match the entry itself). A packet the kernel counts while an update
runs may be credited to the next entry (or to none): one advertisement less restarts the
timer, as if it had been lost on the wire.

Nothing here is required: a kernel or a process that cannot load the program (no CAP_BPF
or CAP_SYS_ADMIN, an old kernel, a seccomp filter) keeps the classic filter, and every
advertisement is read as before. The map is an array of one entry per VRID shared with the
kernel through ``mmap`` (``BPF_F_MMAPABLE``): reading it is a memory access, no system call.
"""

from __future__ import annotations

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

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import VRRP_TTL
from pyvrrp.runtime.sockfilter import Instruction

# bpf(2) system call numbers of the architectures pyvrrp runs on (little-endian only: the
# instruction encoding below packs the two register numbers of a byte in that order).
_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "armv7l": 386}
_BPF_MAP_CREATE = 0
_BPF_PROG_LOAD = 5
_BPF_PROG_TEST_RUN = 10
_BPF_MAP_TYPE_ARRAY = 2
_BPF_PROG_TYPE_SOCKET_FILTER = 1
_BPF_F_MMAPABLE = 1 << 10
_BPF_PSEUDO_MAP_FD = 1
SO_ATTACH_BPF = 50
_HELPER_MAP_LOOKUP = 1
_HELPER_KTIME_GET_NS = 5

# The map entry of one VRID: u32 words (0: absorb nothing), u32 IPv4 total length,
# u64 last arrival (ns, CLOCK_MONOTONIC), u64 count, u32 source, u32 destination, then the
# VRRP message, one u32 per 4 bytes (each word as the program loads it: host order).
MAX_WORDS = 32  # a VRRP message of up to 128 bytes: 30 IPv4 addresses in VRRPv3
_WORDS, _LENGTH, _LAST, _COUNT, _SOURCE, _DESTINATION, _MESSAGE = 0, 4, 8, 16, 24, 28, 32
VALUE_SIZE = _MESSAGE + 4 * MAX_WORDS
ENTRIES = 256  # VRIDs 0-255 (0 is never used)
_IPV4_HEADER = 20

# eBPF instruction classes, sizes, modes and operations (linux/bpf.h, linux/bpf_common.h).
_LD, _LDX, _STX, _ALU, _JMP, _JMP32, _ALU64 = 0x00, 0x01, 0x03, 0x04, 0x05, 0x06, 0x07
_W, _H, _B, _DW = 0x00, 0x08, 0x10, 0x18
_IMM, _ABS, _IND, _MEM, _ATOMIC = 0x00, 0x20, 0x40, 0x60, 0xC0
_K, _X = 0x00, 0x08
_ADD, _SUB, _AND, _LSH, _MOV = 0x00, 0x10, 0x50, 0x60, 0xB0
_JA, _JEQ, _JGE, _JNE, _JLT, _CALL, _EXIT = 0x00, 0x10, 0x30, 0x50, 0xA0, 0x80, 0x90

# Classic BPF opcodes the socket filters use (pyvrrp/runtime/sockfilter.py).
_C_LD_W_ABS, _C_LD_B_ABS, _C_LD_B_IND, _C_LDX_B_MSH = 0x20, 0x30, 0x50, 0xB1
_C_LD_W_LEN, _C_ALU_SUB_X, _C_JMP_JGE_K, _C_JMP_JA = 0x80, 0x1C, 0x35, 0x05
_C_JMP_JEQ_K, _C_RET_K = 0x15, 0x06

# Registers: the classic accumulator and index as the kernel's own translation has them.
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

    def add(self, code: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> None:
        self.code.append(_insn(code, dst, src, off, imm))

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"label {name} twice")  # pragma: no cover
        self.labels[name] = len(self.code)

    def ld_abs(self, size: int, offset: int) -> None:
        self.add(_LD | _ABS | size, imm=offset)

    def jump(self, target: str) -> None:
        self.add(_JMP | _JA, off=target)

    def ret(self, value: int) -> None:
        self.add(_ALU | _MOV | _K, _A, imm=_s32(value))
        self.add(_JMP | _EXIT)

    def assemble(self) -> bytes:
        # A 64-bit load (a map's address) takes two slots: jumps count slots.
        slots = [0]
        for code, *_ in self.code:
            slots.append(slots[-1] + (2 if code == _LD | _IMM | _DW else 1))
        out = bytearray()
        for index, (code, dst, src, off, imm) in enumerate(self.code):
            if isinstance(off, str):
                off = slots[self.labels[off]] - slots[index + 1]
            out += struct.pack("<BBhi", code, src << 4 | dst, off, imm)
            if code == _LD | _IMM | _DW:  # its second half: the upper 32 bits, zero
                out += struct.pack("<BBhi", 0, 0, 0, 0)
        return bytes(out)


def translate(classic: Sequence[Instruction], b: _Builder, prefix: str = "c") -> None:
    """Append the classic program ``classic`` to ``b`` as eBPF with the same verdicts.

    Only the instructions pyvrrp's filters use are known (ValueError for any other). The
    accumulator is r0 and the index register r7, both zero at the start as in classic BPF;
    a load past the packet ends the program with 0 in both. Instructions no path reaches
    are left out: the eBPF verifier refuses a program with dead code.
    """
    b.add(_ALU | _MOV | _K, _A, imm=0)
    b.add(_ALU | _MOV | _K, _X_REG, imm=0)
    reachable = _reachable(classic)
    for index, (code, jt, jf, k) in enumerate(classic):
        b.label(f"{prefix}{index}")
        if index not in reachable:
            # The kernel's classic checker takes dead code (a source chain with no source
            # ends in an unreachable "accept"), the eBPF verifier refuses the program.
            continue

        def to(offset: int, index: int = index) -> str:
            return f"{prefix}{index + 1 + offset}"

        if code in (_C_LD_W_ABS, _C_LD_B_ABS):
            b.ld_abs(_W if code == _C_LD_W_ABS else _B, _s32(k))
        elif code == _C_LD_B_IND:
            b.add(_LD | _IND | _B, src=_X_REG, imm=_s32(k))
        elif code == _C_LDX_B_MSH:  # X = 4 * (P[k] & 0xf); A is kept
            b.add(_ALU64 | _MOV | _X, _ENTRY, _A)
            b.ld_abs(_B, _s32(k))
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


def program(classic: Sequence[Instruction], map_fd: int) -> bytes:
    """The advertisement socket's eBPF program: absorb a routine advertisement (module
    docstring), else the verdict of ``classic``."""
    b = _Builder()
    b.add(_ALU64 | _MOV | _X, _CTX, 1)
    b.add(_LDX | _MEM | _W, _LEN, _CTX, 0)  # skb->len: the IPv4 total length
    b.add(_JMP32 | _JLT | _K, _LEN, off="classic", imm=_IPV4_HEADER + 8)
    b.ld_abs(_B, 0)
    b.add(_JMP32 | _JNE | _K, _A, off="classic", imm=0x45)  # IPv4, no options
    b.ld_abs(_B, 8)
    b.add(_JMP32 | _JNE | _K, _A, off="classic", imm=VRRP_TTL)
    b.ld_abs(_B, _IPV4_HEADER + 1)  # the VRID: the map's key
    b.add(_STX | _MEM | _W, _FP, _A, -4)
    b.add(_LD | _IMM | _DW, 1, _BPF_PSEUDO_MAP_FD, imm=map_fd)
    b.add(_ALU64 | _MOV | _X, 2, _FP)
    b.add(_ALU64 | _ADD | _K, 2, imm=-4)
    b.add(_JMP | _CALL, imm=_HELPER_MAP_LOOKUP)
    b.add(_JMP | _JEQ | _K, _A, off="classic", imm=0)
    b.add(_ALU64 | _MOV | _X, _ENTRY, _A)
    b.add(_LDX | _MEM | _W, _X_REG, _ENTRY, _WORDS)
    b.add(_JMP32 | _JEQ | _K, _X_REG, off="classic", imm=0)
    b.add(_LDX | _MEM | _W, 1, _ENTRY, _LENGTH)
    b.add(_JMP32 | _JNE | _X, _LEN, 1, off="classic")
    # The length matched: every load below is inside the packet.
    for at, field in ((12, _SOURCE), (16, _DESTINATION)):
        b.ld_abs(_W, at)
        b.add(_LDX | _MEM | _W, 1, _ENTRY, field)
        b.add(_JMP32 | _JNE | _X, _A, 1, off="classic")
    for word in range(MAX_WORDS):
        b.add(_JMP32 | _JEQ | _K, _X_REG, off="match", imm=word)
        b.ld_abs(_W, _IPV4_HEADER + 4 * word)
        b.add(_LDX | _MEM | _W, 1, _ENTRY, _MESSAGE + 4 * word)
        b.add(_JMP32 | _JNE | _X, _A, 1, off="classic")
    b.label("match")
    b.add(_JMP | _CALL, imm=_HELPER_KTIME_GET_NS)
    b.add(_STX | _MEM | _DW, _ENTRY, _A, _LAST)
    b.add(_ALU64 | _MOV | _K, 1, imm=1)
    b.add(_STX | _ATOMIC | _DW, _ENTRY, 1, _COUNT, imm=_ADD)
    b.ret(0)
    b.label("classic")
    translate(classic, b)
    return b.assemble()


def entry_words(packet: PacketReceived) -> tuple[int, int, int, list[int]] | None:
    """What a map entry holds to absorb ``packet`` (IPv4 length, source, destination, the
    message's words), or None when the program cannot match it."""
    message = packet.message
    if (
        packet.ttl != VRRP_TTL
        or not isinstance(packet.source, IPv4Address)
        or not isinstance(packet.destination, IPv4Address)
        or len(message) % 4
        or not 8 <= len(message) <= 4 * MAX_WORDS
    ):
        return None
    words = list(struct.unpack(f"!{len(message) // 4}I", message))
    return (
        _IPV4_HEADER + len(message),
        int(packet.source),
        int(packet.destination),
        words,
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


class Absorber:
    """The map and program of one IPv4 advertisement socket.

    :meth:`attach` puts the program (with the socket's classic filter inside) on the socket;
    :meth:`set` makes an entry absorb a packet (or nothing); :meth:`read` says how many were
    absorbed so far and when the last one arrived.
    """

    def __init__(self) -> None:
        try:
            self._bpf = _Bpf()
            attr = struct.pack(
                "=IIIIIII16s",
                _BPF_MAP_TYPE_ARRAY,
                4,
                VALUE_SIZE,
                ENTRIES,
                _BPF_F_MMAPABLE,
                0,
                0,
                b"pyvrrp_routine",
            )
            self.map_fd, _ = self._bpf.call(_BPF_MAP_CREATE, attr)
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
        self.closed = False

    def load(self, classic: Sequence[Instruction]) -> int:
        """Load the program around ``classic``; its file descriptor (the caller closes it)."""
        code = program(classic, self.map_fd)
        log_buffer = ctypes.create_string_buffer(1 << 16)
        license = ctypes.create_string_buffer(b"MIT")
        insns = ctypes.create_string_buffer(code, len(code))
        for level in (0, 1):  # again with the verifier's log to say why it refused
            attr = struct.pack(
                "=IIQQIIQII16s",
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

    def update(self, vrid: int, packet: PacketReceived | None) -> PacketReceived | None:
        """Absorb ``packet`` for ``vrid`` from now on (None, or a packet the program cannot
        match: nothing). Returns the packet the entry absorbed before, when it absorbed one
        since the last :meth:`take`: the router must still hear it (late)."""
        current = self._set.get(vrid)
        if packet == current or self.closed:
            return None
        base = vrid * VALUE_SIZE
        view = self._view
        struct.pack_into("=I", view, base + _WORDS, 0)  # off first: nothing matches halfway
        count: int = struct.unpack_from("=Q", view, base + _COUNT)[0]
        late = current if count != self._seen.get(vrid, count) else None
        self._seen[vrid] = count
        fields = None if packet is None else entry_words(packet)
        if fields is None:
            self._set.pop(vrid, None)
            return late
        assert packet is not None
        length, source, destination, words = fields
        struct.pack_into("=I", view, base + _LENGTH, length)
        struct.pack_into("=II", view, base + _SOURCE, source, destination)
        struct.pack_into(f"={len(words)}I", view, base + _MESSAGE, *words)
        struct.pack_into("=I", view, base + _WORDS, len(words))  # last: the entry is on
        self._set[vrid] = packet
        return late

    def absorbing(self, vrid: int) -> PacketReceived | None:
        """The packet the entry of ``vrid`` absorbs, if any."""
        return self._set.get(vrid)

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
        # Read after the count: the kernel writes the time first, so it is at least that
        # of the packet counted last.
        last: int = struct.unpack_from("=Q", self._view, base + _LAST)[0]
        return new, last

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._set.clear()
        self._view.release()
        self._memory.close()
        os.close(self.map_fd)


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
