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
each in a process of its own, started fresh, the wake-ups spaced `--interval` apart (a
process idle for a second runs with cold caches, which is what a K=1 node at 1 s pays).

Compare with keepalived's CPU per advertisement in bench/scale.py's K=1 rows (both nodes'
CPU over the window, divided by the adverts sent: one wake-up to send on the master, one to
receive on the backup). docs/benchmarks.md, "Cost at scale", has the figures.
"""

from __future__ import annotations

import argparse
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
    return float(done.stdout) / 1000


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
    for mode in ("epoll", "trio", "quiet", "thread"):
        print(f"| {mode} | {measure(mode, args.interval, args.wakeups):.0f} |")


if __name__ == "__main__":
    main()
