"""Throughput of the VRRP codec (pyvrrp.core.packet) on one CPU core.

Usage: .venv/bin/python bench/codec.py [--seconds N] [--cpu K]

Measures encode/s and decode+validate/s (pseudo-header checksum mode) for IPv4 with 1 and 8
addresses and IPv6 with 2, VRRPv2 (RFC 3768) for IPv4 with 1 address without and with a
password, and parse_ipv4 + decode+validate for a whole IPv4 datagram, pinned to one CPU. It
also reports how busy the other CPUs were during the run, since a figure measured next to a
busy core is not comparable. The target (docs/benchmarks.md, "Codec") is at
least 100,000 per second for each.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .`

from pyvrrp.core.packet import (  # noqa: E402
    Advertisement,
    IPAddress,
    build_ipv4,
    decode,
    encode,
    encode_v2,
    parse_ipv4,
)

IPV4_SOURCE = IPv4Address("192.0.2.1")
IPV4_GROUP = IPv4Address("224.0.0.18")
IPV6_SOURCE = IPv6Address("fe80::1")
IPV6_GROUP = IPv6Address("ff02::12")
ONE_IPV4 = Advertisement(51, 100, 100, (IPv4Address("192.0.2.100"),))
ONE_IPV4_V2 = Advertisement(51, 100, 100, (IPv4Address("192.0.2.100"),), version=2)
V2 = frozenset({2})

TARGET = 100_000
ROUNDS = 5
BATCH = 2_000


def cpu_times() -> dict[int, tuple[int, int]]:
    """(busy, total) jiffies per CPU from /proc/stat."""
    times: dict[int, tuple[int, int]] = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(field) for field in fields]
                idle = values[3] + values[4]  # idle + iowait
                times[int(name[3:])] = (sum(values) - idle, sum(values))
    return times


def busy_fraction(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpu: int
) -> float:
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return busy / total if total else 0.0


def rate(call: Callable[[], object], seconds: float) -> float:
    """Calls per second: the median of ROUNDS rounds of about seconds / ROUNDS each."""
    rates: list[float] = []
    for _ in range(ROUNDS):
        calls = 0
        start = time.perf_counter()
        deadline = start + seconds / ROUNDS
        now = start
        while now < deadline:
            for _ in range(BATCH):
                call()
            calls += BATCH
            now = time.perf_counter()
        rates.append(calls / (now - start))
    return statistics.median(rates)


def cases() -> list[tuple[str, Advertisement, IPAddress, IPAddress]]:
    return [
        ("IPv4, 1 address", ONE_IPV4, IPV4_SOURCE, IPV4_GROUP),
        (
            "IPv4, 8 addresses",
            Advertisement(51, 100, 100, tuple(IPv4Address(f"192.0.2.{100 + n}") for n in range(8))),
            IPV4_SOURCE,
            IPV4_GROUP,
        ),
        (
            "IPv6, 2 addresses",
            Advertisement(51, 100, 100, (IPv6Address("fe80::100"), IPv6Address("2001:db8::100"))),
            IPV6_SOURCE,
            IPV6_GROUP,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="time per measurement (default 2)"
    )
    parser.add_argument(
        "--cpu", type=int, default=None, help="CPU to pin to (default: the last allowed one)"
    )
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, pinned to CPU {cpu},"
        f" {args.seconds:g} s per figure, pseudo-header checksum mode"
    )
    print()
    print(f"| {'case':<18} | {'bytes':>5} | {'encode/s':>10} | {'decode+validate/s':>17} |")
    print(f"|{'-' * 20}|{'-' * 7}|{'-' * 12}|{'-' * 19}|")
    before = cpu_times()
    below_target = False
    for name, advert, source, destination in cases():
        message = encode(advert, source=source, destination=destination)
        if decode(message, source=source, destination=destination, ttl=255) != advert:
            raise AssertionError(f"{name}: the codec does not round-trip")
        encode_one = partial(encode, advert, source=source, destination=destination)
        decode_one = partial(decode, message, source=source, destination=destination, ttl=255)
        encoded = rate(encode_one, args.seconds)
        decoded = rate(decode_one, args.seconds)
        below_target |= min(encoded, decoded) < TARGET
        print(f"| {name:<18} | {len(message):>5} | {encoded:>10,.0f} | {decoded:>17,.0f} |")
    for name, password in (("IPv4 v2, 1 address", b""), ("IPv4 v2, 1, PASS", b"secret")):
        message = encode_v2(ONE_IPV4_V2, auth_pass=password)
        decode_v2 = partial(
            decode,
            message,
            source=IPV4_SOURCE,
            destination=IPV4_GROUP,
            ttl=255,
            versions=V2,
            auth_pass=password,
        )
        if decode_v2() != ONE_IPV4_V2:
            raise AssertionError(f"{name}: the codec does not round-trip")
        encoded = rate(partial(encode_v2, ONE_IPV4_V2, auth_pass=password), args.seconds)
        decoded = rate(decode_v2, args.seconds)
        below_target |= min(encoded, decoded) < TARGET
        print(f"| {name:<18} | {len(message):>5} | {encoded:>10,.0f} | {decoded:>17,.0f} |")
    # What the IPv4 receive path really costs: raw sockets deliver the IP header too.
    datagram = build_ipv4(
        encode(ONE_IPV4, source=IPV4_SOURCE, destination=IPV4_GROUP),
        source=IPV4_SOURCE,
        destination=IPV4_GROUP,
    )

    def receive_ipv4() -> Advertisement:
        parsed = parse_ipv4(datagram)
        return decode(
            parsed.payload, source=parsed.source, destination=parsed.destination, ttl=parsed.ttl
        )

    received = rate(receive_ipv4, args.seconds)
    below_target |= received < TARGET
    after = cpu_times()
    print()
    print(f"IPv4, 1 address, parse_ipv4 + decode+validate: {received:,.0f}/s")
    others = [c for c in sorted(after) if c != cpu]
    for other in others:
        print(f"CPU {other} was {busy_fraction(before, after, other):.0%} busy during the run")
    print(f"target: >= {TARGET:,}/s each: {'NOT MET' if below_target else 'met'}")
    return 1 if below_target else 0


if __name__ == "__main__":
    sys.exit(main())
