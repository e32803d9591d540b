"""What one wake-up costs a Python process on this machine, before any VRRP work.

Usage: .venv/bin/python bench/wakeup_floor.py [--interval 1.0] [--wakeups 20]

A master with one virtual router wakes once per advertisement interval, sends one datagram
and sleeps again. This measures the floor of that for a Python process: CPU time
(/proc/self/schedstat: every nanosecond on a CPU, user and kernel) per wake-up of
- `epoll`: a bare loop, `select.epoll.poll()` until the next tick, then one `sendto`;
- `trio`: the same with `trio.sleep_until()` (the event loop pyvrrp runs on);
- `quiet`: the same through pyvrrp's `Schedule` and its quiet wait (pyvrrp/runtime/quiet.py:
  the schedule's task waits in an epoll of its own while trio has nothing else to run);
- `thread`: a trio process whose main thread waits in trio while a plain thread of its own
  sleeps (`time.sleep`) until the next tick and sends (what a daemon that kept its routine
  advertisements out of trio's loop would pay per advertisement);
- `kernel`: every datagram queued in the kernel beforehand through io_uring (an absolute
  timeout linked to a `sendmsg`, per tick; ctypes, no library), the process idle in
  `select.epoll.poll()` meanwhile: the kernel sends on time and the process only comes back to
  user space for an instant (the `EINTR` that Python retries in C) per datagram. The CPU
  counted starts before the queueing, so it is in the figure (one horizon of `--wakeups`
  ticks queued at once). Not used by pyvrrp: it measures what a kernel-timed advertisement
  would cost ("unavailable" where io_uring is not, e.g. under a container's seccomp profile);
- `kernel-wait`: the same queue, but each send waits on a periodic timerfd (a `read` linked
  to the `sendmsg`: a timeout's completion would wake the waiter) and the process waits in
  `io_uring_enter` itself, where the kernel runs the sends without returning to user space:
  what is left is the wake-up of the task in the kernel;
each in a process of its own, started fresh, the wake-ups spaced `--interval` apart (a
process idle for a second runs with cold caches, which is what a K=1 node at 1 s pays).

Compare with keepalived's CPU per advertisement in bench/scale.py's K=1 rows (both nodes'
CPU over the window, divided by the adverts sent: one wake-up to send on the master, one to
receive on the backup). docs/benchmarks.md, "Cost at scale", has the figures.
"""

from __future__ import annotations

import argparse
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import os, select, socket, sys, threading, time
mode, interval, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setblocking(False)
message = bytes(20)
def cpu():  # every thread's
    total = 0
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total
if mode == "epoll":
    poller = select.epoll()
    start = cpu(); tick = time.monotonic()
    for _ in range(n):
        tick += interval
        poller.poll(max(0.0, tick - time.monotonic()))
        sock.sendto(message, ("127.0.0.1", 9))
    print((cpu() - start) / n)
elif mode == "thread":
    import trio
    def sender():
        start = cpu(); tick = time.monotonic()
        for _ in range(n):
            tick += interval
            time.sleep(max(0.0, tick - time.monotonic()))
            sock.sendto(message, ("127.0.0.1", 9))
        print((cpu() - start) / n)
    async def main():
        thread = threading.Thread(target=sender)
        thread.start()
        await trio.to_thread.run_sync(thread.join)
    trio.run(main)
elif mode == "quiet":
    import trio
    from pyvrrp.runtime.schedule import Schedule
    async def main():
        schedule = Schedule()
        done = trio.Event()
        sent = 0
        def due():
            nonlocal sent
            sock.sendto(message, ("127.0.0.1", 9))
            sent += 1
            if sent == n:
                done.set()
            else:
                schedule.set("r", round((tick + (sent + 1) * interval) * 1e6), due)
        async with trio.open_nursery() as nursery:
            await nursery.start(schedule.run)
            start = cpu(); tick = trio.current_time()
            schedule.set("r", round((tick + interval) * 1e6), due)
            await done.wait()
            print((cpu() - start) / n)
            nursery.cancel_scope.cancel()
    trio.run(main)
elif mode in ("kernel", "kernel-wait"):
    import ctypes, mmap, struct
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(425, 2 * n, params)  # io_uring_setup
    if fd < 0:
        print("nan"); sys.exit()
    sq_entries, cq_entries = struct.unpack_from("2I", params.raw, 0)
    sq_head, sq_tail, sq_mask, _, _, _, sq_array = struct.unpack_from("7I", params.raw, 40)
    cqes_offset = struct.unpack_from("6I", params.raw, 80)[5]
    shared = mmap.MAP_SHARED | 0x8000  # MAP_POPULATE
    rw = mmap.PROT_READ | mmap.PROT_WRITE
    ring = mmap.mmap(fd, max(sq_array + 4 * sq_entries, cqes_offset + 16 * cq_entries), shared, rw)
    sqes = mmap.mmap(fd, 64 * sq_entries, shared, rw, offset=0x10000000)
    dest = ctypes.create_string_buffer(
        struct.pack("<HH4s8x", socket.AF_INET, socket.htons(9), socket.inet_aton("127.0.0.1"))
    )
    payload = ctypes.create_string_buffer(message)
    iov = (ctypes.c_uint64 * 2)(ctypes.addressof(payload), len(message))
    msghdr = ctypes.create_string_buffer(
        struct.pack("QI4xQQQQi4x", ctypes.addressof(dest), 16, ctypes.addressof(iov), 1, 0, 0, 0)
    )
    times = (ctypes.c_int64 * (2 * n))()
    def push(opcode, flags, fd, addr, length, op_flags, offset=0):
        tail = struct.unpack_from("I", ring, sq_tail)[0]
        slot = tail & struct.unpack_from("I", ring, sq_mask)[0]
        sqes[64 * slot:64 * slot + 64] = struct.pack(
            "BBHiQQII", opcode, flags, 0, fd, offset, addr, length, op_flags
        ).ljust(64, b"\0")
        struct.pack_into("I", ring, sq_array + 4 * slot, slot)
        struct.pack_into("I", ring, sq_tail, tail + 1)
    start = cpu(); tick = time.monotonic()
    if mode == "kernel":
        for i in range(n):
            tick += interval
            times[2 * i], times[2 * i + 1] = divmod(round(tick * 1e9), 10**9)
            # IORING_OP_TIMEOUT, IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS,
            # IORING_TIMEOUT_ABS | IORING_TIMEOUT_ETIME_SUCCESS (CLOCK_MONOTONIC)
            push(11, 4 | 64, -1, ctypes.addressof(times) + 16 * i, 1, 1 | 32)
            push(9, 64, sock.fileno(), ctypes.addressof(msghdr), 1, 0)  # IORING_OP_SENDMSG
        if libc.syscall(426, fd, 2 * n, 0, 0, None, 0) != 2 * n:  # io_uring_enter
            print("nan"); sys.exit()
        poller = select.epoll()
        while time.monotonic() < tick:
            poller.poll(tick - time.monotonic() + 0.001)
    else:
        # A periodic timerfd (CLOCK_MONOTONIC, absolute, blocking: io_uring polls it), and per
        # tick IORING_OP_READ of it linked to the send, both IOSQE_CQE_SKIP_SUCCESS.
        timerfd = libc.timerfd_create(1, 0o2000000)
        first = tick + interval
        spec = (ctypes.c_int64 * 4)(
            *divmod(round(interval * 1e9), 10**9), *divmod(round(first * 1e9), 10**9)
        )
        if timerfd < 0 or libc.timerfd_settime(timerfd, 1, spec, None) != 0:
            print("nan"); sys.exit()
        expirations = ctypes.create_string_buffer(8)
        for i in range(n):
            push(22, 4 | 64, timerfd, ctypes.addressof(expirations), 8, 0, offset=2**64 - 1)
            push(9, 64, sock.fileno(), ctypes.addressof(msghdr), 1, 0)
        tick += n * interval
        long = ctypes.c_long
        if libc.syscall(long(426), long(fd), long(2 * n), long(0), long(0), None, long(0)) != 2 * n:
            print("nan"); sys.exit()
        while (left := tick + 0.01 - time.monotonic()) > 0:
            # Wait for one completion (none comes: every success is skipped) until the end:
            # IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, struct io_uring_getevents_arg.
            timeout = (ctypes.c_int64 * 2)(*divmod(round(left * 1e9), 10**9))
            arg = struct.pack("QIIQ", 0, 0, 0, ctypes.addressof(timeout))
            arg = ctypes.create_string_buffer(arg)
            libc.syscall(long(426), long(fd), long(0), long(1), long(1 | 8), arg, long(24))
    cq_head, cq_tail = struct.unpack_from("2I", params.raw, 80)
    failed = struct.unpack_from("I", ring, cq_tail)[0] - struct.unpack_from("I", ring, cq_head)[0]
    print("nan" if failed else (cpu() - start) / n)
else:
    import trio
    async def main():
        start = cpu(); tick = trio.current_time()
        for _ in range(n):
            tick += interval
            await trio.sleep_until(tick)
            sock.sendto(message, ("127.0.0.1", 9))
        print((cpu() - start) / n)
    trio.run(main)
"""


def measure(mode: str, interval: float, wakeups: int) -> float:
    """Microseconds of CPU per wake-up."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(interval), str(wakeups)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout) / 1000  # nan: the loop cannot run here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between wake-ups")
    parser.add_argument("--wakeups", type=int, default=20)
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {socket.gethostname()}, load {load}")
    print(f"# interval {args.interval} s, {args.wakeups} wake-ups per process")
    print("| loop | CPU per wake-up (µs) |")
    print("|---|---:|")
    for mode in ("epoll", "trio", "quiet", "thread", "kernel", "kernel-wait"):
        cost = measure(mode, args.interval, args.wakeups)
        print(f"| {mode} | {'unavailable' if math.isnan(cost) else f'{cost:.0f}'} |")


if __name__ == "__main__":
    main()
