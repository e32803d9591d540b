"""CPU cost of encoding one address request: by hand (struct) vs pyroute2's ifaddrmsg.

Prints the thread CPU time (``time.thread_time_ns``) of one encode, cold and warm, for both
encoders, and checks that both produce the same bytes. "Cold" is the first encode after the
process slept for a second (what a master taking over after an idle advert interval pays:
caches and branch predictors hold other work by then); "first" is the very first encode in
the process (pyroute2's classes compile their field layouts on first use). "Warm" is the
median of a tight loop. Results and why the hand encoder stays: docs/benchmarks.md,
"Address encoding".

    .venv/bin/python bench/address_encode.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg

from pyvrrp.runtime.netlink import rtnl
from pyvrrp.runtime.netlink.rtnl import AddressRequest, encode_address_request


def encode_address_request_pyroute2(request: AddressRequest, sequence: int) -> bytes:
    """The same message as :func:`encode_address_request`, built with pyroute2's ifaddrmsg."""
    msg = ifaddrmsg()
    text = socket.inet_ntop(request.family, request.address)
    attributes: list[tuple[str, object]] = [("IFA_LOCAL", text), ("IFA_ADDRESS", text)]
    if request.adding:
        if request.label is not None:
            attributes.append(("IFA_LABEL", request.label))
        if request.flags:
            attributes.append(("IFA_FLAGS", request.flags))
        if request.preferred_lifetime_zero:
            forever = rtnl.INFINITY_LIFE_TIME
            cacheinfo = {"ifa_preferred": 0, "ifa_valid": forever, "cstamp": 0, "tstamp": 0}
            attributes.append(("IFA_CACHEINFO", cacheinfo))
        kind = rtnl.RTM_NEWADDR
        flags = rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK | rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL
    else:
        kind, flags = rtnl.RTM_DELADDR, rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
    msg["family"] = request.family
    msg["prefixlen"] = request.prefixlen
    msg["flags"] = request.flags & 0xFF if request.adding else 0
    msg["scope"] = request.scope if request.adding else 0
    msg["index"] = request.index
    msg["attrs"] = attributes
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = sequence
    msg.encode()
    return bytes(msg.data)


REQUESTS = [
    AddressRequest(True, socket.AF_INET, IPv4Address("1.2.3.58").packed, 24, 4, label="eth0:58"),
    AddressRequest(
        True,
        socket.AF_INET6,
        IPv6Address("2a03:4444:fff0:59:88::58").packed,
        64,
        4,
        flags=0x02,
        preferred_lifetime_zero=True,
    ),
]


def _cpu_us(fn: Callable[[], Any]) -> float:
    start = time.thread_time_ns()
    fn()
    return (time.thread_time_ns() - start) / 1000


def _measure(encode: Callable[[AddressRequest, int], bytes], rounds: int) -> dict[str, float]:
    first = _cpu_us(lambda: encode(REQUESTS[0], 1))
    cold = []
    for _ in range(rounds):
        time.sleep(1.0)
        cold.append(_cpu_us(lambda: [encode(r, 2) for r in REQUESTS]) / len(REQUESTS))
    warm = []
    for _ in range(2000):
        warm.append(_cpu_us(lambda: [encode(r, 3) for r in REQUESTS]) / len(REQUESTS))
    return {
        "first": first,
        "cold median": statistics.median(cold),
        "cold max": max(cold),
        "warm median": statistics.median(warm),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="cold samples (1 s apart)")
    args = parser.parse_args()
    for request in REQUESTS:
        for adding in (True, False):
            same = AddressRequest(
                adding,
                request.family,
                request.address,
                request.prefixlen,
                request.index,
                request.label,
                request.scope,
                request.flags,
                request.preferred_lifetime_zero,
            )
            mine = encode_address_request(same, 7)
            theirs = encode_address_request_pyroute2(same, 7)
            if mine != theirs:
                raise SystemExit(f"the encoders disagree on {same}:\n{mine.hex()}\n{theirs.hex()}")
    print("both encoders produce the same bytes for the seed's requests")
    print("µs of thread CPU per message (2 messages: IPv4 VIP with label, IPv6 nodad)")
    for name, encode in (
        ("by hand (struct)", encode_address_request),
        ("pyroute2 ifaddrmsg", encode_address_request_pyroute2),
    ):
        figures = _measure(encode, args.rounds)
        print(f"{name:20} " + "  ".join(f"{k} {v:7.1f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
