"""What the pyvrrp cluster tests share: the seed's addresses, RFC 9568 timers, the module lab
fixture's body, and the log checks for both daemons.

Timing bounds in the tests come from RFC 9568 §6.1 with margins for a busy 2-core machine
(the lab, three daemons, the probe and pytest share two cores): a deadline of the protocol
plus 0.5-1.5 s of scheduling slack, never a bound so tight that a slow CI run breaks it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping

import pytest
from nslab import ClusterSpec, DaemonKind, Lab, Probe, ProbeReport, seed_cluster
from nslab.sniff import Advert, AdvertWatch
from nslab.system import pid_alive

from pyvrrp.core import timers
from tests.conftest import netns_unavailable_reason

V4 = {"A": "1.2.3.58", "B": "1.2.3.59", "C": "1.2.3.60"}
V6 = {
    "A": "2a03:4444:fff0:59:88::58",
    "B": "2a03:4444:fff0:59:88::59",
    "C": "2a03:4444:fff0:59:88::60",
}
VRID = {"A": 58, "B": 59, "C": 60}
# docs/hetzner-vswitch.md: each node is master of its own VIP and excluded address.
SEED_TABLE = {addr[n]: [n] for addr in (V4, V6) for n in "ABC"}
# Priorities of vip58 (docs/hetzner-vswitch.md): A 100, C 75, B 50.
PRIO_58 = {"A": 100, "B": 50, "C": 75}


def skew_time(priority: int, advert_interval: float = 1.0) -> float:
    """Skew_Time (RFC 9568 §6.1) in seconds, as the core computes it (pyvrrp.core.timers)."""
    return timers.skew_time(priority, _us(advert_interval)) / timers.US_PER_SECOND


def master_down_interval(priority: int, advert_interval: float = 1.0) -> float:
    """Master_Down_Interval (RFC 9568 §6.1) in seconds, as the core computes it."""
    return timers.master_down_interval(priority, _us(advert_interval)) / timers.US_PER_SECOND


def _us(seconds: float) -> int:
    return round(seconds * timers.US_PER_SECOND)


def require_lab_environment(*, keepalived: bool = False) -> None:
    """Module fixtures run before conftest's per-test guard: apply its policy here too."""
    reason = netns_unavailable_reason()
    if reason is None:
        for tool in ("nft", "tcpdump", "curl", *(["keepalived"] if keepalived else [])):
            if shutil.which(tool) is None:
                reason = f"{tool} is missing (`make system-deps` installs it)"
                break
    if reason is not None:
        if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
            pytest.fail(f"{reason} (PYVRRP_REQUIRE_NETNS=1 forbids skipping)")
        pytest.skip(reason)


def running_lab(
    cluster: ClusterSpec | None = None,
    daemons: DaemonKind | Mapping[str, DaemonKind] | None = "pyvrrp",
    *,
    keepalived: bool = False,
    timeout: float = 30.0,
) -> Iterator[Lab]:
    """The body of a lab fixture: build, start `daemons` (one kind or `{node: kind}`; None:
    none, the test starts them) and wait for convergence, yield; tear everything down
    whatever happens, then check that nothing is left (namespaces, processes)."""
    require_lab_environment(keepalived=keepalived)
    lab = Lab(cluster or seed_cluster())
    pids: list[int] = []
    try:
        lab.up()
        if daemons is not None:
            for node in lab.nodes:
                lab.start(node, daemons if isinstance(daemons, str) else daemons[node])
            lab.wait_converged(timeout=timeout)
        yield lab
    finally:
        pids = lab.processes()
        lab.down()
    assert lab.namespaces() == []
    assert [p for p in pids if pid_alive(p)] == []


lab_context = contextlib.contextmanager(running_lab)
"""`running_lab` as a context manager, for a lab used by one test only."""


class LogMark:
    """Where each node's daemon log ended when created: `new(node)` is what came after."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.offsets = {n: len(lab.log(n)) for n in lab.nodes}

    def new(self, node: str) -> str:
        return self.lab.log(node)[self.offsets[node] :]


# What keepalived 2.2.7 logs when an advertisement it receives is wrong (vrrp.c,
# vrrp_check_packet and vrrp_state_*_rx; found with `strings $(which keepalived)`): bad
# checksum, length, TTL, version, type, address count or list, interval, unicast peer,
# multicast/unicast mismatch, authentication, and two routers claiming one address.
KEEPALIVED_PACKET_ERRORS = re.compile(
    r"Invalid VRRPv[23] checksum"
    r"|checksum to old version"
    r"|vrrp packet too (?:short|long)"
    r"|invalid TTL/HL|TTL/HL \d+ not in range"
    r"|wrong version"
    r"|Invalid packet type"
    r"|unexpected ip number count|expected \d+ VIPs but received"
    r"|not present in MASTER advert"
    r"|ip_tot_len mismatch"
    r"|advertisement interval mismatch"
    r"|not a unicast peer"
    r"|Expected \w+icast packet|discarding \w+icast packet"
    r"|auth(?:entication)? |AH header|invalid passwd"
    r"|equal priority advert received from remote host with our IP"
    r"|CONFIGURATION ERROR",
    re.IGNORECASE,
)

# pyvrrp: a dropped advertisement names its reason ("dropped advertisement from X: checksum
# (...)"); ERROR lines and tracebacks are bugs or environment problems.
PYVRRP_PROBLEMS = re.compile(r"dropped advertisement|dropped a packet| ERROR |Traceback")


def keepalived_packet_errors(text: str) -> list[str]:
    """The lines of a keepalived log that report a bad advertisement."""
    return [line for line in text.splitlines() if KEEPALIVED_PACKET_ERRORS.search(line)]


def pyvrrp_problems(text: str) -> list[str]:
    """The lines of a pyvrrp log that report dropped packets, errors or tracebacks."""
    return [line for line in text.splitlines() if PYVRRP_PROBLEMS.search(line)]


def daemon_problems(lab: Lab, mark: LogMark | None = None) -> dict[str, list[str]]:
    """Per node, the log lines since `mark` (or ever) that show a packet or daemon problem,
    of either daemon (a node's log holds every run, keepalived's and pyvrrp's)."""
    found: dict[str, list[str]] = {}
    for node in lab.nodes:
        text = mark.new(node) if mark else lab.log(node)
        lines = keepalived_packet_errors(text) + pyvrrp_problems(text)
        if lines:
            found[node] = lines
    return found


def client_neighbours(lab: Lab) -> str:
    """The client's neighbour table (`ip neigh`), for failure messages about stale caches."""
    done = subprocess.run(
        ["ip", "-n", lab.client_ns, "neigh", "show"], capture_output=True, text=True, check=False
    )
    return done.stdout


def probe_origin(probe: Probe) -> float:
    """The time.monotonic() of the probe's time 0 (its report counts seconds from there)."""
    before = time.monotonic()
    probe.mark("origin")
    marks = [at for label, at in probe.report().marks if label == "origin"]
    return before - marks[-1]


def first_answer(report: ProbeReport, target: str, node: str, after_s: float) -> float:
    """Seconds since the probe started of the first answer for `target` from `node` at or
    after `after_s` (AssertionError with the report if there is none)."""
    for segment in report[target].timeline:
        if segment.node == node and segment.start_s >= after_s:
            return segment.start_s
    raise AssertionError(f"no answer for {target} from {node} after {after_s}:\n{report.format()}")


def adverts_seen(watch: AdvertWatch, *, vrid: int, after: float) -> list[Advert]:
    """Every advertisement of `vrid` the watch has read since `after` (time.monotonic())."""
    return [a for a in watch.adverts() if a.vrid == vrid and a.at >= after]


def first_advert(
    watch: AdvertWatch, *, vrid: int, priority: int | None, after: float, timeout: float
) -> Advert:
    """The first advertisement of `vrid` (with `priority`, if given) read since `after`
    (time.monotonic()), waiting up to `timeout` s for it."""
    return watch.next(timeout, vrid=vrid, after=after, priority=priority)
