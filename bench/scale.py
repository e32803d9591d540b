"""Cost at scale: pyvrrp and keepalived side by side, K VRIDs on one interface, in the netns lab.

Usage: sudo .venv/bin/python bench/scale.py [--k 1,50,200,255] [--interval 1,0.1,0.01]
                                            [--daemons pyvrrp,keepalived] [--window 30]
                                            [--no-seed] [--json FILE]

One lab: two nodes (A, B) on one bridge (the vSwitch), K VRRPv3 instances (VRIDs 1..K, one
IPv4 VIP each) on `eth0.4000`, multicast adverts. A is master of the odd VRIDs (priority 150
against B's 100), B of the even ones: each node is master of half and backup of the other
half. No health checks and no tracked interfaces, so both daemons do the protocol's work
only. keepalived 2.2.7 gets `version 3` in every instance (its `advert_int` takes fractions
only in VRRPv3), so both daemons speak the same protocol.

For every advert interval, every K and every daemon (one row each), both nodes start the
daemon, the lab waits for every VIP to be on its master, lets the cluster settle (SETTLE_S),
then measures over the window (`--window`, default 30 s):

- CPU: time on a CPU of every thread of each node's daemon over the window, from
  /proc/PID/task/*/schedstat (nanoseconds; keepalived's VRRP and checker children counted
  too; sampled every 0.5 s so that a thread ending during the window keeps what it used,
  see TaskMeter), as a percentage of one CPU, both nodes together; the user / system split
  comes from /proc/PID/stat (10 ms ticks);
- RSS: VmRSS at the end of the window (keepalived: parent and children summed), the larger
  of the two nodes;
- wakeups per second: voluntary and involuntary context switches of every thread of both
  daemons over the window (/proc/PID/task/*/status);
- the advert send interval: tcpdump on each node's bridge port (inbound: what the node sends)
  writes a pcap with the kernel's timestamps; the intervals between consecutive adverts of
  one VRID from its sender, pooled over every VRID of both nodes: p50, p99, max;
- spurious transitions: state changes logged by either daemon during the window, plus
  adverts of a VRID sent by the node that should be its backup (both must be zero: nothing
  fails during the window).

Before the rows, the seed cluster (three nodes, three instances each, unicast, a health check
and two tracked interfaces per instance) runs each daemon: the largest node's RSS after
SEED_RUN_S, then the three nodes' CPU together over the window (`--no-seed` skips it; the CPU
is reported, not a goal: what the seed's deployment pays, health checks and trackers included).

Goals (issue "Cost at scale"; exit status 1 when one is missed, 3 when the lab cannot run):
- pyvrrp's CPU no more than 2x keepalived's at every row (both daemons measured);
- pyvrrp's advert send interval p50 within nominal + 1 ms at every row, p99 within
  nominal + 5 ms at K=200, 0.1 s;
- pyvrrp's RSS no more than 30 MB for the seed's node and 35 MB at K=255;
- zero spurious transitions at K=255, 0.01 s.

The full matrix (4 K x 3 intervals x 2 daemons, 30 s windows) takes about 14 minutes.
Everything the run starts is stopped by pid and the namespaces are removed on the way out,
also on Ctrl-C, SIGTERM and errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from failover import machine, progress

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-lab"))  # nslab, from a checkout

from nslab import (  # noqa: E402
    ClusterSpec,
    DaemonKind,
    InstanceSpec,
    Lab,
    LabError,
    NodeSpec,
    keepalived_config,
    pyvrrp_config,
    seed_cluster,
)
from nslab.system import ns_argv  # noqa: E402

DAEMONS: tuple[DaemonKind, ...] = ("pyvrrp", "keepalived")
KS = (1, 50, 200, 255)
INTERVALS = (1.0, 0.1, 0.01)
NODES = ("A", "B")
MASTER_PRIORITY, BACKUP_PRIORITY = 150, 100
SETTLE_S = 1.0  # after every VIP is on its master: the masters' first announcement bursts
SEED_RUN_S = 3.0
VIP_RANGE = "198.18.0.0/16"  # every VIP: 198.18.<vrid>.1/32
CONVERGE_S = 30.0  # beyond Master_Down_Interval, for every VIP to reach its master
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# Goals (see the module docstring).
CPU_RATIO = 2.0
P50_MARGIN_MS = 1.0
P99_MARGIN_MS = 5.0
P99_ROW = (200, 0.1)
SEED_RSS_MB = 30.0
K255_RSS_MB = 35.0
SPURIOUS_ROW = (255, 0.01)

# State changes as each daemon logs them.
_PYVRRP_TRANSITION = re.compile(r": (INIT|BACKUP|MASTER|FAULT) -> (INIT|BACKUP|MASTER|FAULT) \(")
_KEEPALIVED_TRANSITION = re.compile(r"Entering (MASTER|BACKUP|FAULT) STATE")


def master_of(vrid: int) -> str:
    """The node that is master of `vrid`: A the odd ones, B the even ones."""
    return NODES[(vrid + 1) % 2]


def scale_cluster(k: int, interval: float) -> ClusterSpec:
    """Two nodes, K instances (VRIDs 1..K, VIP 198.18.<vrid>.1), multicast, no trackers."""
    nodes = tuple(
        NodeSpec(name, f"192.168.200.{i + 1}", f"fd00:200::{i + 1}") for i, name in enumerate(NODES)
    )
    instances = tuple(
        InstanceSpec(
            name=f"v{vrid}",
            vrid=vrid,
            priorities={
                n: MASTER_PRIORITY if n == master_of(vrid) else BACKUP_PRIORITY for n in NODES
            },
            addresses=(f"198.18.{vrid}.1/32",),
            master=master_of(vrid),
            advert_interval=interval,
            track_interfaces=(),
            health_check=False,
        )
        for vrid in range(1, k + 1)
    )
    return ClusterSpec(nodes=nodes, instances=instances, unicast=False, health=None)


@dataclasses.dataclass(frozen=True)
class Row:
    """One daemon at one (K, interval), both nodes."""

    daemon: str
    k: int
    interval: float
    window: float
    load: float  # 1-minute load average at the start of the window
    cpu_s: float  # both nodes, user + system (schedstat: exact)
    user_s: float  # both nodes (10 ms ticks)
    system_s: float
    rss_mb: float  # the larger node
    wakeups_per_s: float  # both nodes, every thread
    adverts: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    spurious_logged: int  # state changes in the daemons' logs
    spurious_wire: int  # adverts from a VRID's backup node
    capture_drops: int
    error: str | None = None
    # The whole machine's softirq time over the window, % of one core: the kernel's receive
    # path (and a BPF socket filter in it) is charged to no process. Both daemons' rows
    # include the lab's own (the bridge, the veths, the captures).
    softirq_percent: float = 0.0

    @property
    def spurious(self) -> int:
        """Every sign of a state change during the window."""
        return self.spurious_logged + self.spurious_wire

    @property
    def cpu_percent(self) -> float:
        """User + system CPU of both nodes, as a percentage of one CPU over the window."""
        return self.cpu_s / self.window * 100


# ---- /proc


@dataclasses.dataclass(frozen=True)
class Usage:
    """What /proc says about a set of processes at one moment (CPU time: TaskMeter)."""

    user_ticks: int
    system_ticks: int
    rss_kib: int


def _stat_fields(pid: int) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()  # field 3 (state) is index 0


def _status_value(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def softirq_ticks() -> int:
    """The machine's softirq time so far, all CPUs (/proc/stat, clock ticks)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[7])  # cpu user nice system idle iowait irq softirq


def usage(pids: Iterable[int]) -> Usage:
    """Summed CPU ticks (fields 14, 15 of /proc/PID/stat: every thread of the process, ended
    ones included) and VmRSS of `pids`; a pid that is gone counts 0."""
    user = system = rss = 0
    for pid in pids:
        try:
            fields = _stat_fields(pid)
            user += int(fields[11])
            system += int(fields[12])
            rss += _status_value(Path(f"/proc/{pid}/status"), "VmRSS")
        except (OSError, ValueError, IndexError):
            continue
    return Usage(user, system, rss)


class TaskMeter:
    """CPU time and context switches of every thread of `pids` over a window, threads that
    end during it included.

    Summing /proc/PID/task/* at both ends misses a thread that ends in between, and
    subtracts what it had used before the window: trio's worker threads (history and state
    writes at start-up) exit after 10 s idle, often inside the window. So every thread is
    sampled every `EVERY_S`: a thread there at the start counts from its value then, a new
    one from zero, each up to the last value seen (a thread ending idle loses nothing)."""

    EVERY_S = 0.5

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self._first: dict[tuple[int, int], tuple[int, int]] = {}
        self._last: dict[tuple[int, int], tuple[int, int]] = {}
        self._sample(initial=True)

    def sample(self) -> None:
        self._sample(initial=False)

    def _sample(self, *, initial: bool) -> None:
        for pid in self.pids:
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                try:
                    ns = int((task / "schedstat").read_text().split()[0])
                    status = task / "status"
                    switches = _status_value(status, "voluntary_ctxt_switches")
                    switches += _status_value(status, "nonvoluntary_ctxt_switches")
                except (OSError, ValueError, IndexError):
                    continue
                key = (pid, int(task.name))
                if key not in self._first:
                    self._first[key] = (ns, switches) if initial else (0, 0)
                self._last[key] = (ns, switches)

    @property
    def cpu_ns(self) -> int:
        return sum(last[0] - self._first[key][0] for key, last in self._last.items())

    @property
    def switches(self) -> int:
        return sum(last[1] - self._first[key][1] for key, last in self._last.items())


# ---- capture


class Capture:
    """tcpdump writing the VRRP frames a node sends (its bridge port, inbound) to a pcap
    file, with the kernel's capture timestamps; stopped by pid."""

    def __init__(self, lab: Lab, node: str, directory: Path) -> None:
        self.node = node
        self.pcap = directory / f"scale-{node}.pcap"
        self.log = directory / f"scale-{node}.tcpdump.log"
        self.pcap.unlink(missing_ok=True)
        argv = ns_argv(
            lab.switch_ns,
            ["tcpdump", "-n", "-Q", "in", "-i", f"port-{node}", "-s", "64", "-B", "16384",
             "-w", str(self.pcap), "ip proto 112"],
        )  # fmt: skip
        with self.log.open("w") as errors:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )
        try:
            self._wait_listening()
        except BaseException:  # Ctrl-C too: the caller never gets this object to stop
            self.stop()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while "listening on" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise LabError(f"tcpdump did not start: {self.log.read_text().strip()}")
            time.sleep(0.02)

    def stop(self) -> int:
        """Stop tcpdump (SIGINT flushes the file; SIGKILL if it does not exit); the number
        of frames the kernel dropped (tcpdump's own count)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        m = re.search(r"(\d+) packets dropped by kernel", self.log.read_text())
        return int(m[1]) if m else 0


def read_pcap(path: Path) -> Iterator[tuple[float, int, int]]:
    """(capture time, VRID, priority) of every IPv4 VRRP frame in a pcap of Ethernet frames."""
    data = path.read_bytes()
    if len(data) < 24:
        return
    magic = struct.unpack_from("<I", data)[0]
    if magic == 0xA1B2C3D4:
        endian, scale = "<", 1e-6
    elif magic == 0xA1B23C4D:
        endian, scale = "<", 1e-9
    else:
        raise LabError(f"{path}: not a little-endian pcap file (magic {magic:#x})")
    record = struct.Struct(endian + "IIII")
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, caplen, _ = record.unpack_from(data, offset)
        offset += 16
        frame = data[offset : offset + caplen]
        offset += caplen
        if len(frame) < 14 + 20 + 3 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 112:
            continue
        vrrp = 14 + (frame[14] & 0x0F) * 4
        if len(frame) >= vrrp + 3:
            yield seconds + fraction * scale, frame[vrrp + 1], frame[vrrp + 2]


def quantile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile of sorted values."""
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def intervals_ms(adverts: dict[str, list[tuple[float, int, int]]]) -> tuple[list[float], int]:
    """Sorted intervals (ms) between consecutive adverts of one VRID from its master, and the
    adverts a node sent for a VRID it should be backup of (a transition on the wire)."""
    intervals: list[float] = []
    foreign = 0
    for node, frames in adverts.items():
        last: dict[int, float] = {}
        for at, vrid, priority in frames:
            if master_of(vrid) != node:
                foreign += 1
                continue
            if priority == 0:
                continue
            if vrid in last:
                intervals.append((at - last[vrid]) * 1000)
            last[vrid] = at
    intervals.sort()
    return intervals, foreign


# ---- running one row


def transitions(log_text: str, daemon: str) -> int:
    """State changes in a piece of a daemon's log."""
    pattern = _PYVRRP_TRANSITION if daemon == "pyvrrp" else _KEEPALIVED_TRANSITION
    return len(pattern.findall(log_text))


def log_size(lab: Lab, node: str) -> int:
    """The size of `node`'s daemon log (where the window's part begins)."""
    path = lab.node_dir(node) / "daemon.log"
    return path.stat().st_size if path.exists() else 0


def log_since(lab: Lab, node: str, offset: int) -> str:
    """`node`'s daemon log from `offset` on."""
    with (lab.node_dir(node) / "daemon.log").open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def stop_daemons(lab: Lab) -> None:
    """SIGKILL both daemons (the fastest switch) and remove the VIPs they leave (one flush
    per node: up to 255 `ip addr del` would take seconds)."""
    running = [n for n in lab.nodes if lab.running(n)]
    if running:
        lab.stop_many(running, signal.SIGKILL)
    for node in lab.nodes:
        lab.run_in(node, "ip", "addr", "flush", "dev", "eth0.4000", "to", VIP_RANGE)


def start_cluster(lab: Lab, daemon: DaemonKind, cluster: ClusterSpec, timeout: float) -> None:
    """`daemon` on both nodes with `cluster`'s configs; wait for every VIP on its master."""
    stop_daemons(lab)
    for node in lab.nodes:
        if daemon == "pyvrrp":
            text = pyvrrp_config(node, cluster, run_dir=lab.node_dir(node))
        else:
            text = keepalived_config(node, cluster)
        lab.start(node, daemon, text)
    lab.wait_holders(cluster.expected_holders(), timeout=timeout)


def master_down_interval(interval: float) -> float:
    """Master_Down_Interval of the backups (RFC 9568 §6.1)."""
    return 3 * interval + (256 - BACKUP_PRIORITY) * interval / 256


def measure(lab: Lab, daemon: DaemonKind, k: int, interval: float, window: float) -> Row:
    """Run one row: start, converge, settle, measure over `window` seconds."""
    cluster = scale_cluster(k, interval)

    def failed(error: str) -> Row:
        return Row(daemon, k, interval, window, os.getloadavg()[0], 0, 0, 0, 0, 0, 0, None,
                   None, None, 0, 0, 0, error)  # fmt: skip

    timeout = master_down_interval(interval) + CONVERGE_S
    try:
        start_cluster(lab, daemon, cluster, timeout=timeout)
    except LabError:
        held = lab.holders()
        vips = [str(a) for a in cluster.vip_addresses()]
        both = sum(len(held.get(a, [])) > 1 for a in vips)
        none = sum(not held.get(a) for a in vips)
        dead = [n for n in lab.nodes if not lab.running(n)]
        return failed(
            f"no convergence in {timeout:.0f} s: {both} of {k} VIPs on both nodes, {none} on "
            f"none" + (f", daemon gone on {', '.join(dead)}" if dead else "")
        )
    time.sleep(SETTLE_S)
    pids = {n: lab.daemon_pids(n) for n in lab.nodes}
    offsets = {n: log_size(lab, n) for n in lab.nodes}
    captures: list[Capture] = []
    try:
        for node in lab.nodes:
            captures.append(Capture(lab, node, lab.tmp))
        load = os.getloadavg()[0]
        before = {n: usage(p) for n, p in pids.items()}
        softirq_before = softirq_ticks()
        meters = {n: TaskMeter(p) for n, p in pids.items()}
        started = time.monotonic()
        while (left := started + window - time.monotonic()) > 0:
            time.sleep(min(left, TaskMeter.EVERY_S))
            for meter in meters.values():
                meter.sample()
        after = {n: usage(p) for n, p in pids.items()}
        elapsed = time.monotonic() - started
        softirq = (softirq_ticks() - softirq_before) / CLK_TCK / elapsed * 100
        alive = all(lab.running(n) for n in lab.nodes)
    finally:
        drops = sum(c.stop() for c in captures)
    if not alive:
        return failed("a daemon died during the window")
    adverts = {c.node: list(read_pcap(c.pcap)) for c in captures}
    for c in captures:
        c.pcap.unlink(missing_ok=True)
    ordered, foreign = intervals_ms(adverts)
    logged = sum(transitions(log_since(lab, n, offsets[n]), daemon) for n in lab.nodes)
    user = sum(after[n].user_ticks - before[n].user_ticks for n in lab.nodes) / CLK_TCK
    system = sum(after[n].system_ticks - before[n].system_ticks for n in lab.nodes) / CLK_TCK
    cpu = sum(meters[n].cpu_ns for n in lab.nodes) / 1e9
    switches = sum(meters[n].switches for n in lab.nodes)
    return Row(
        daemon=daemon,
        k=k,
        interval=interval,
        window=round(elapsed, 3),
        load=load,
        cpu_s=round(cpu, 4),
        user_s=round(user, 2),
        system_s=round(system, 2),
        rss_mb=round(max(after[n].rss_kib for n in lab.nodes) * 1024 / MIB, 1),
        wakeups_per_s=round(switches / elapsed, 1),
        adverts=sum(len(a) for a in adverts.values()),
        p50_ms=round(quantile(ordered, 0.5), 2) if ordered else None,
        p99_ms=round(quantile(ordered, 0.99), 2) if ordered else None,
        max_ms=round(ordered[-1], 2) if ordered else None,
        spurious_logged=logged,
        spurious_wire=foreign,
        capture_drops=drops,
        softirq_percent=round(softirq, 2),
    )


@dataclasses.dataclass
class Seed:
    """The seed cluster under one daemon."""

    rss_mb: float  # the largest node's
    cpu_percent: float  # the three nodes' together, over the window, of one core


def seed_run(daemons: Sequence[DaemonKind], window: float) -> dict[str, Seed]:
    """The seed cluster's largest node RSS and CPU over `window` seconds, per daemon."""
    result: dict[str, Seed] = {}
    with Lab(seed_cluster()) as lab:
        for daemon in daemons:
            running = [n for n in lab.nodes if lab.running(n)]
            if running:
                lab.stop_many(running, signal.SIGKILL)
            for node in lab.nodes:
                lab.remove_vips(node)
            lab.start_all(daemon)
            lab.wait_converged(timeout=master_down_interval(1.0) + 30)
            time.sleep(SEED_RUN_S)
            sizes = [usage(lab.daemon_pids(n)).rss_kib for n in lab.nodes]
            meter = TaskMeter(p for n in lab.nodes for p in lab.daemon_pids(n))
            started = time.monotonic()
            while (left := started + window - time.monotonic()) > 0:
                time.sleep(min(TaskMeter.EVERY_S, left))
                meter.sample()
            cpu = round(meter.cpu_ns / 1e9 / (time.monotonic() - started) * 100, 3)
            result[daemon] = Seed(round(max(sizes) * 1024 / MIB, 1), cpu)
            progress(f"seed cluster, {daemon}: largest node RSS {result[daemon].rss_mb} MB, "
                     f"CPU of the three nodes {cpu:.2f} %")  # fmt: skip
    return result


# ---- report


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(rows: Sequence[Row]) -> list[str]:
    """The Markdown table, one line per row, keepalived's CPU beside pyvrrp's."""
    lines = [
        "| interval | K | daemon | CPU (both nodes) | user / sys s | vs keepalived "
        "| RSS MB | wakeups/s | send interval p50 / p99 / max ms | adverts "
        "| spurious (logged / wire) | machine softirq | load |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.error:
            lines.append(f"| {row.interval:g} s | {row.k} | {row.daemon} | {row.error} "
                         "| | | | | | | | | |")  # fmt: skip
            continue
        ratio = ""
        theirs = _peer(rows, row, "keepalived")
        if row.daemon == "pyvrrp" and theirs is not None and theirs.cpu_percent > 0:
            ratio = f"{row.cpu_percent / theirs.cpu_percent:.1f}x"
        lines.append(
            f"| {row.interval:g} s | {row.k} | {row.daemon} | {row.cpu_percent:.2f} % "
            f"| {row.user_s:.2f} / {row.system_s:.2f} | {ratio} | {row.rss_mb:.1f} "
            f"| {row.wakeups_per_s:.0f} | {_ms(row.p50_ms)} / {_ms(row.p99_ms)} / "
            f"{_ms(row.max_ms)} | {row.adverts} | {row.spurious_logged} / {row.spurious_wire} "
            f"| {row.softirq_percent:.2f} % | {row.load:.1f} |"
        )
    return lines


def _peer(rows: Sequence[Row], row: Row, daemon: str) -> Row | None:
    for other in rows:
        if (other.daemon, other.k, other.interval) == (daemon, row.k, row.interval):
            return None if other.error else other
    return None


def check_goals(rows: Sequence[Row], seed: dict[str, Seed]) -> list[str]:
    """The goals pyvrrp misses (empty: every goal that this run could check is met)."""
    missed = []
    for row in rows:
        if row.daemon != "pyvrrp":
            continue
        where = f"K={row.k} at {row.interval:g} s"
        if row.error:
            missed.append(f"{where}: {row.error}")
            continue
        nominal = row.interval * 1000
        theirs = _peer(rows, row, "keepalived")
        if theirs is not None and row.cpu_percent > CPU_RATIO * theirs.cpu_percent:
            missed.append(
                f"{where}: CPU {row.cpu_percent:.1f} % > {CPU_RATIO:g} x keepalived's "
                f"{theirs.cpu_percent:.1f} %"
            )
        if row.p50_ms is None or row.p50_ms > nominal + P50_MARGIN_MS:
            missed.append(f"{where}: send interval p50 {_ms(row.p50_ms)} ms > "
                          f"{nominal + P50_MARGIN_MS:g} ms")  # fmt: skip
        if (row.k, row.interval) == P99_ROW and (
            row.p99_ms is None or row.p99_ms > nominal + P99_MARGIN_MS
        ):
            missed.append(f"{where}: send interval p99 {_ms(row.p99_ms)} ms > "
                          f"{nominal + P99_MARGIN_MS:g} ms")  # fmt: skip
        if row.k == 255 and row.rss_mb > K255_RSS_MB:
            missed.append(f"{where}: RSS {row.rss_mb} MB > {K255_RSS_MB:g} MB")
        if (row.k, row.interval) == SPURIOUS_ROW and row.spurious:
            missed.append(f"{where}: {row.spurious} spurious transitions")
    ours = seed.get("pyvrrp")
    if ours is not None and ours.rss_mb > SEED_RSS_MB:
        missed.append(f"seed node: RSS {ours.rss_mb} MB > {SEED_RSS_MB:g} MB")
    return missed


def _raise_interrupt(_signo: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    """Run the matrix; print the Markdown table; 0 if pyvrrp meets every goal checked."""
    parser = argparse.ArgumentParser(prog="bench/scale.py", description=__doc__.split("\n")[0])
    parser.add_argument("--k", default=",".join(map(str, KS)), help="VRIDs per run (1-255)")
    parser.add_argument("--interval", default="1,0.1,0.01", help="advert intervals (s)")
    parser.add_argument("--daemons", default=",".join(DAEMONS), help="pyvrrp,keepalived")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured per row")
    parser.add_argument("--no-seed", action="store_true", help="skip the seed cluster's run")
    parser.add_argument("--json", type=Path, help="also write every row to this file")
    args = parser.parse_args(argv)
    try:
        ks = [int(x) for x in args.k.split(",") if x]
        intervals = _floats(args.interval)
    except ValueError:
        parser.error("--k takes integers, --interval numbers, comma-separated")
    daemons: list[DaemonKind] = []
    for name in args.daemons.split(","):
        if name not in DAEMONS:
            parser.error(f"--daemons: {name!r} is not one of {', '.join(DAEMONS)}")
        daemons.append("pyvrrp" if name == "pyvrrp" else "keepalived")
    if not ks or not all(1 <= k <= 255 for k in ks):
        parser.error("--k: VRIDs from 1 to 255")
    if not intervals or not all(0.01 <= i <= 40.95 for i in intervals):
        parser.error("--interval: from 0.01 to 40.95 s (VRRPv3's centiseconds)")
    if args.window < 1:
        parser.error("--window: at least 1 s")
    if os.geteuid() != 0:
        print("bench/scale.py: needs root (network namespaces)", file=sys.stderr)
        return 3
    needed = ["ip", "nft", "tcpdump", *(["keepalived"] if "keepalived" in daemons else [])]
    for tool in needed:
        if shutil.which(tool) is None:
            print(f"bench/scale.py: {tool} is missing: `make system-deps`", file=sys.stderr)
            return 3
    signal.signal(signal.SIGTERM, _raise_interrupt)
    command = "sudo .venv/bin/python bench/scale.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    started = time.monotonic()
    print(f"# {command.strip()}")
    print(f"# {datetime.date.today().isoformat()}, {machine()}")
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows: list[Row] = []
    seed: dict[str, Seed] = {}
    try:
        if not args.no_seed:
            seed = seed_run(daemons, args.window)
        with Lab(scale_cluster(max(ks), intervals[0])) as lab:
            for interval in intervals:
                for k in ks:
                    for daemon in daemons:
                        row = measure(lab, daemon, k, interval, args.window)
                        rows.append(row)
                        progress(
                            f"{interval:g}s K={k} {daemon}: "
                            + (row.error or f"CPU {row.cpu_percent:.1f} %, RSS {row.rss_mb} MB, "
                               f"p50/p99/max {_ms(row.p50_ms)}/{_ms(row.p99_ms)}/"
                               f"{_ms(row.max_ms)} ms, spurious {row.spurious}, "
                               f"load {row.load:.1f}")
                        )  # fmt: skip
                stop_daemons(lab)
    except KeyboardInterrupt:
        print("interrupted: the lab has been torn down", file=sys.stderr)
        return 130
    except LabError as exc:
        print(f"bench/scale.py: the lab failed: {exc}", file=sys.stderr)
        return 3
    if args.json:
        data = {
            "seed_rss_mb": {d: s.rss_mb for d, s in seed.items()},
            "seed_cpu_percent": {d: s.cpu_percent for d, s in seed.items()},
            "rows": [dataclasses.asdict(r) for r in rows],
        }
        args.json.write_text(json.dumps(data, indent=1))
    print(f"# {len(rows)} rows in {time.monotonic() - started:.0f} s; load average at end: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    print()
    if seed:
        print("Seed node (3 instances, unicast, health check, 2 tracked interfaces), largest "
              "RSS: " + ", ".join(f"{d} {s.rss_mb} MB" for d, s in seed.items()))  # fmt: skip
        print(
            "Seed cluster, the three nodes' CPU together: "
            + ", ".join(f"{d} {s.cpu_percent:.2f} %" for d, s in seed.items())
        )
        print()
    print("\n".join(table(rows)))
    drops = sum(r.capture_drops for r in rows)
    if drops:
        print(f"\nWARNING: tcpdump dropped {drops} frames: intervals may be overstated")
    missed = check_goals(rows, seed)
    print()
    for line in missed:
        print(f"GOAL MISSED: {line}")
    if not missed:
        print("every goal checked is met")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
