"""Chaos soak: the seed cluster under random faults for a long time, invariants checked.

Usage: sudo .venv/bin/python bench/soak.py [--duration 1800] [--seed N] [--json FILE]
                                           [--margin 2.0] [--print-schedule]

One lab (netns-lab: nodes A, B, C, VIPs 1.2.3.58-60 and their IPv6 excluded twins, unicast
adverts at 1 s, the ingress health check, `eth0` and `dummy0` tracked) runs pyvrrp on every
node with a virtual route and rule per instance and a static route and rule per node, so that
every kind of object pyvrrp installs can be removed behind its back and checked after a stop.
One node's daemon (chosen by the seed) runs under libfaketime, its CLOCK_REALTIME offset read
from a control file the soak rewrites (CLOCK_MONOTONIC is left alone). A client probe asks
every VIP every 20 ms.

Faults come one at a time from a generator seeded with `--seed`: rounds of every fault kind
in a shuffled order, each with its node, parameters and hold time. The schedule (planned
offsets) is printed first and is identical for the same seed and duration; a fault starts at
its planned offset or, if the previous one took longer to settle, as soon as it has. Every
injection and undo is logged with its time since the start. Fault kinds:

- link: carrier loss of the node's vSwitch port (veth down), then up;
- partition: a silent partition of the node, either its port leaves the bridge (`cut`) or
  nftables drops IP protocol 112 in and out of its namespace (`nft`);
- kill: SIGKILL of the daemon, restarted after the hold;
- term: SIGTERM (graceful stop), started again after the hold;
- reload: `pyvrrp reload` with the same file (`valid`), with one priority changed and then
  back (`changed`), or with a broken file that must be refused (`broken`);
- maintenance: `pyvrrp maintenance on`, then off;
- health: the node's health endpoint fails (the check's fall/rise), then recovers;
- tracked: the tracked `dummy0` goes down, or is deleted, then comes back;
- delete: the node's VIP (IPv4 or IPv6), its virtual route or its virtual rule deleted with
  `ip` behind the daemon's back (it must put it back);
- loss: nftables drops 5-30 % of VRRP packets on every node (`numgen random mod 100 < N`);
- clock: the faketime node's CLOCK_REALTIME jumps by minutes to days, then back.

Invariants, checked on an event timeline of who holds each VIP (`ip monitor address` in every
node, counting only nodes whose daemon runs: a SIGKILLed daemon's addresses are a crash's
leftovers until it restarts) and reported as counts with the trace that broke them:

- dual: no VIP on two nodes longer than the fault allows after it healed: one
  Master_Down_Interval for partitions, carrier loss and packet loss (RFC 9568 §6.4.2: the
  lower-priority master yields to the first advert it hears); the daemon's start for a
  SIGKILL (it removes a crash's stale addresses); one advert interval otherwise (a
  preemption's overlap). Plus `--margin` each.
- none: no VIP on zero nodes longer than the fault allows (RFC 9568 §6.1 timers of the
  worst backup, priority 50: Master_Down_Interval for faults that silence or remove a master,
  Skew_Time for a graceful stop or maintenance, the put-back for deletions, 0 for reloads and
  clock jumps). Plus `--margin`.
- leftovers: after every SIGTERM stop (and at the end), no VIP, route or rule of pyvrrp left
  on that node.
- log: no traceback, unhandled error or CRITICAL line in any daemon log.
- resources: RSS and open fds per daemon process sampled every 5 s; fds flat, RSS growth per
  hour reported (and bounded for processes that lived 10 minutes).
- converged, reload, putback: after each fault the seed table is back within 30 s; a changed
  reload takes effect and a broken one is refused with the daemon still running; a deleted
  route or rule is back within the put-back bound.

Exit status 0 when every invariant held, 1 when one broke, 3 when the lab cannot run.
Everything runs in namespaces the soak creates; they and its processes are removed at the
end, on failure and on Ctrl-C/SIGTERM.

Why the module is over the project's ~700 lines: a benchmark is run as one file
(`python bench/soak.py`, no package of its own under bench/), and most of it is the `Soak`
class, where each fault kind's injection, undo and invariant bound sit together; the lab it
drives is already in netns-lab/nslab.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import ipaddress
import itertools
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-lab"))  # nslab, from a checkout

from nslab import ClusterSpec, Lab, LabError, LabTimeout, pyvrrp_config, seed_cluster  # noqa: E402
from nslab.system import Proc, python  # noqa: E402

KINDS = (
    "link",
    "partition",
    "kill",
    "term",
    "reload",
    "maintenance",
    "health",
    "tracked",
    "delete",
    "loss",
    "clock",
)
ADVERT_INTERVAL = 1.0
WORST_BACKUP = 50  # the lowest priority in the seed table
PROBE_INTERVAL = 0.02
SAMPLE_EVERY = 5.0
CONVERGE_TIMEOUT = 30.0
# From start to the stale addresses of a crash removed: interpreter start and imports on a busy
# 2-core machine.
STARTUP = 10.0
# A master puts back an address someone removed as soon as netlink tells it, and routes and
# rules at its next periodic check (REASSERT_INTERVAL, 10 s, in pyvrrp/runtime/node.py).
PUT_BACK = 1.0
PUT_BACK_ROUTE = 10.0
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
ROUTE_TABLE = 200
STATIC_TABLE = 201
STATIC_RULE_PRIORITY = 1900


def skew_time(priority: int, interval: float = ADVERT_INTERVAL) -> float:
    """Skew_Time (RFC 9568 §6.1)."""
    return (256 - priority) * interval / 256


def master_down_interval(priority: int, interval: float = ADVERT_INTERVAL) -> float:
    """Master_Down_Interval (RFC 9568 §6.1)."""
    return 3 * interval + skew_time(priority, interval)


MDI = master_down_interval(WORST_BACKUP)
# How long a VIP may be on no node during each kind of fault (before the margin).
NONE_BOUND = {
    "link": MDI,
    "partition": MDI,
    "kill": MDI,
    "term": skew_time(WORST_BACKUP),
    "maintenance": skew_time(WORST_BACKUP),
    "health": MDI,
    "tracked": MDI,
    "delete": PUT_BACK,
    "loss": MDI,
    "reload": 0.0,
    "clock": 0.0,
    "start": 0.0,
}
# How long after a fault healed a VIP may still be on two nodes (before the margin).
DUAL_AFTER_HEAL = {
    "link": MDI,
    "partition": MDI,
    "loss": MDI,
    "kill": STARTUP,
}
DUAL_DEFAULT = ADVERT_INTERVAL


@dataclasses.dataclass(frozen=True)
class Fault:
    """One planned fault: `at` seconds after the start, on `node`, undone after `hold` s."""

    index: int
    at: float
    kind: str
    node: str
    hold: float
    param: str

    def line(self) -> str:
        """The schedule line (the same for the same seed)."""
        return (
            f"#{self.index:03d} +{self.at:7.1f}s {self.kind:<11} {self.node} "
            f"hold {self.hold:4.1f}s {self.param}"
        )


def schedule(seed: int, duration: float, nodes: Sequence[str], clock_node: str) -> list[Fault]:
    """The faults of a run: rounds of every kind in a shuffled order, from `seed` alone."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = 5.0
    while True:
        kinds = list(KINDS)
        rng.shuffle(kinds)
        for kind in kinds:
            node = clock_node if kind == "clock" else rng.choice(list(nodes))
            param = ""
            hold = round(rng.uniform(2.0, 8.0), 1)
            if kind == "partition":
                param = rng.choice(["cut", "nft"])
                hold = round(rng.uniform(2.0, 10.0), 1)
            elif kind == "link":
                hold = round(rng.uniform(1.0, 8.0), 1)
            elif kind in ("kill", "term"):
                hold = round(rng.uniform(1.0, 6.0), 1)
            elif kind == "reload":
                param = rng.choice(["valid", "changed", "broken"])
            elif kind == "health":
                hold = round(rng.uniform(6.0, 14.0), 1)
            elif kind == "tracked":
                param = rng.choice(["down", "delete"])
            elif kind == "delete":
                param = rng.choice(["vip4", "vip6", "route", "rule"])
                hold = 0.0
            elif kind == "loss":
                param = f"{rng.randint(5, 30)}%"
                hold = round(rng.uniform(5.0, 20.0), 1)
            elif kind == "clock":
                sign = rng.choice(["+", "-"])
                param = f"{sign}{rng.choice([90, 3600, 86400, 7 * 86400, 400 * 86400])}"
                hold = round(rng.uniform(5.0, 15.0), 1)
            faults.append(Fault(len(faults), round(at, 1), kind, node, hold, param))
            # The next one once this one is undone and settled (estimated), plus a quiet gap.
            at += hold + 4.0 + rng.uniform(1.0, 4.0)
            if at >= duration - 10:
                return faults


@dataclasses.dataclass
class Injected:
    """A fault as it happened (monotonic times)."""

    fault: Fault
    start: float
    healed: float | None = None
    settled: float | None = None
    outage: float = 0.0  # the longest client gap in its window, any VIP
    outage_target: str = ""
    outage_at: float = 0.0  # monotonic start of that gap


@dataclasses.dataclass
class Interval:
    """A VIP on zero (`none`) or on two or more (`dual`) running nodes, from `start` to `end`."""

    kind: str
    address: str
    start: float
    end: float
    nodes: tuple[str, ...]


@dataclasses.dataclass
class Breach:
    """A broken invariant and what shows it."""

    invariant: str
    at: float
    what: str
    trace: list[str]


class Holders:
    """Who holds each VIP, from `ip monitor address` in every node, and the intervals where a
    VIP is on none or on several of the nodes whose daemon runs."""

    def __init__(self, lab: Lab, addresses: Sequence[str]) -> None:
        self.lab = lab
        self.addresses = tuple(addresses)
        self.lock = threading.Lock()
        self.present: dict[str, set[str]] = {n: set() for n in lab.nodes}
        self.running: dict[str, bool] = dict.fromkeys(lab.nodes, False)
        # (address, "none"/"dual") -> (start, the nodes holding it then)
        self.since: dict[tuple[str, str], tuple[float, tuple[str, ...]]] = {}
        self.intervals: list[Interval] = []
        self.events: list[tuple[float, str, str]] = []  # (t, node, text)
        self.monitors: list[Proc] = []
        self.threads: list[threading.Thread] = []
        self.active = False

    def start(self) -> None:
        """Start one `ip monitor address` per node, then read the current addresses."""
        for node in self.lab.nodes:
            argv = ["ip", "-o", "-n", self.lab.ns(node), "monitor", "address"]
            popen = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
            )
            self.monitors.append(Proc(name=f"monitor-{node}", pid=popen.pid, start_time=None))
            thread = threading.Thread(target=self._read, args=(node, popen), daemon=True)
            thread.start()
            self.threads.append(thread)
        time.sleep(0.3)
        for node in self.lab.nodes:
            held = set(self.lab.addresses(node)) & set(self.addresses)
            with self.lock:
                self.present[node] = held

    def stop(self) -> None:
        """Kill the monitors (by pid) and close open intervals."""
        for proc in self.monitors:
            proc.signal(signal.SIGKILL)
        for thread in self.threads:
            thread.join(2.0)
        with self.lock:
            now = time.monotonic()
            for (address, kind), (start, nodes) in list(self.since.items()):
                self.intervals.append(Interval(kind, address, start, now, nodes))
            self.since.clear()
            self.active = False

    def watch(self) -> None:
        """From now on, intervals count (the cluster has converged)."""
        with self.lock:
            self.active = True
            self._update(time.monotonic())

    def set_running(self, node: str, running: bool) -> None:
        """The soak started or stopped `node`'s daemon."""
        with self.lock:
            self.running[node] = running
            now = time.monotonic()
            self.events.append((now, node, "daemon " + ("runs" if running else "stopped")))
            self._update(now)

    def _read(self, node: str, popen: subprocess.Popen[bytes]) -> None:
        assert popen.stdout is not None
        wanted = set(self.addresses)
        for raw in popen.stdout:
            now = time.monotonic()
            line = raw.decode(errors="replace")
            m = re.search(r"\binet6? (\S+)/\d+", line)
            if m is None:
                continue
            address = str(ipaddress.ip_address(m.group(1)))
            if address not in wanted:
                continue
            deleted = line.startswith("Deleted")
            with self.lock:
                if deleted:
                    self.present[node].discard(address)
                else:
                    self.present[node].add(address)
                self.events.append((now, node, ("-" if deleted else "+") + address))
                self._update(now)

    def holders(self, address: str) -> tuple[str, ...]:
        """The running nodes holding `address` now (call with the lock held)."""
        return tuple(n for n in self.lab.nodes if self.running[n] and address in self.present[n])

    def _update(self, now: float) -> None:
        if not self.active:
            return
        for address in self.addresses:
            nodes = self.holders(address)
            for kind, on in (("none", not nodes), ("dual", len(nodes) >= 2)):
                key = (address, kind)
                if on and key not in self.since:
                    self.since[key] = (now, nodes)
                elif not on and key in self.since:
                    start, then = self.since.pop(key)
                    self.intervals.append(Interval(kind, address, start, now, then))

    def trace(self, start: float, end: float) -> list[str]:
        """Address and daemon events between `start` and `end`."""
        with self.lock:
            return [f"{t:.3f} {n} {text}" for t, n, text in self.events if start <= t <= end]


class Resources:
    """RSS and open fds of every daemon process, sampled every SAMPLE_EVERY s."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pids: dict[str, int] = {}
        self.samples: dict[tuple[str, int], list[tuple[float, int, int]]] = defaultdict(list)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def track(self, node: str, pid: int | None) -> None:
        """Sample `pid` as `node`'s daemon from now on (None: no daemon)."""
        with self.lock:
            if pid is None:
                self.pids.pop(node, None)
            else:
                self.pids[node] = pid

    def _run(self) -> None:
        while not self.stopped.wait(SAMPLE_EVERY):
            with self.lock:
                pids = dict(self.pids)
            for node, pid in pids.items():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    fds = len(os.listdir(f"/proc/{pid}/fd"))
                except OSError:
                    continue
                m = re.search(r"VmRSS:\s+(\d+) kB", status)
                if m:
                    self.samples[(node, pid)].append((time.monotonic(), int(m.group(1)), fds))

    def report(self, warmup: float = 30.0) -> list[dict[str, Any]]:
        """Per daemon process: lifetime, RSS and fds at start and end of the steady part,
        least-squares growth per hour."""
        rows = []
        for (node, pid), samples in self.samples.items():
            if not samples:
                continue
            t0 = samples[0][0]
            steady = [s for s in samples if s[0] - t0 >= warmup]
            if len(steady) < 6:
                continue
            span = steady[-1][0] - steady[0][0]
            rows.append(
                {
                    "node": node,
                    "pid": pid,
                    "steady_s": round(span, 1),
                    "rss_kb_first": steady[0][1],
                    "rss_kb_last": steady[-1][1],
                    "rss_kb_max": max(s[1] for s in steady),
                    "rss_kb_per_hour": round(_slope([(s[0], s[1]) for s in steady]) * 3600, 1),
                    "fds_first": steady[0][2],
                    "fds_last": steady[-1][2],
                    "fds_max": max(s[2] for s in steady),
                    "fds_per_hour": round(_slope([(s[0], s[2]) for s in steady]) * 3600, 2),
                }
            )
        return sorted(rows, key=lambda r: -float(r["steady_s"]))


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of y over x (per second)."""
    n = len(points)
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    den = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / den if den else 0.0


def soak_config(lab: Lab, node: str, cluster: ClusterSpec) -> str:
    """node.toml of the lab plus a virtual route and rule per instance and a static route and
    rule, so every kind of object pyvrrp installs is exercised."""
    text = pyvrrp_config(node, cluster, run_dir=lab.node_dir(node))
    for inst in cluster.instances_of(node):
        header = f"[instances.{inst.name}]\n"
        extra = (
            f'virtual_routes = [{{ to = "198.51.100.{inst.vrid}/32", dev = "eth0.4000", '
            f"table = {ROUTE_TABLE} }}]\n"
            f'virtual_rules = [{{ from = "198.51.100.{inst.vrid}/32", table = {ROUTE_TABLE}, '
            f"priority = {2000 + inst.vrid} }}]\n"
        )
        text = text.replace(header, header + extra)
    return text + (
        "\n[[routes]]\n"
        'to = "203.0.113.0/24"\n'
        'dev = "eth0.4000"\n'
        f"table = {STATIC_TABLE}\n"
        "\n[[rules]]\n"
        'from = "203.0.113.0/24"\n'
        f"table = {STATIC_TABLE}\n"
        f"priority = {STATIC_RULE_PRIORITY}\n"
    )


def changed_cluster(cluster: ClusterSpec, node: str) -> tuple[ClusterSpec, str, int]:
    """The cluster with `node`'s priority in one instance it does not lead moved by one
    (the order of the members stays the same): (cluster, instance, new priority)."""
    for inst in cluster.instances_of(node):
        if inst.members[0] != node:
            prio = inst.priorities[node] + 1
            new = dataclasses.replace(inst, priorities={**inst.priorities, node: prio})
            instances = tuple(new if i.name == inst.name else i for i in cluster.instances)
            return dataclasses.replace(cluster, instances=instances), inst.name, prio
    raise LabError(f"{node} leads every instance")


def pyvrrp_cli(lab: Lab, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`pyvrrp ARGS -c node.toml` inside `node`'s namespace."""
    conf = str(lab.node_dir(node) / "node.toml")
    return lab.run_in(node, python(), "-m", "pyvrrp", *args, "-c", conf, check=False)


def ours(lab: Lab, node: str, cluster: ClusterSpec) -> list[str]:
    """What pyvrrp installed and still is on `node`: VIPs, routes of its tables, its rules."""
    found = []
    vips = set(cluster.vip_addresses())
    found += [f"address {a}" for a in lab.addresses(node) if a in vips]
    for family in ("-4", "-6"):
        routes = json.loads(lab.run_in(node, "ip", "-j", family, "route", "show", "table", "all")
                            .stdout or "[]")  # fmt: skip
        for r in routes:
            if str(r.get("table")) in (str(ROUTE_TABLE), str(STATIC_TABLE)):
                found.append(f"route {r.get('dst')} table {r.get('table')}")
        rules = json.loads(lab.run_in(node, "ip", "-j", family, "rule").stdout or "[]")
        for r in rules:
            if str(r.get("table")) in (str(ROUTE_TABLE), str(STATIC_TABLE)):
                found.append(f"rule {r.get('priority')} from {r.get('src')} table {r.get('table')}")
    return found


class Soak:
    """One soak run: the lab, the faults, the observers, the verdict."""

    def __init__(self, lab: Lab, args: argparse.Namespace, clock_node: str) -> None:
        self.lab = lab
        self.args = args
        self.margin: float = args.margin
        self.cluster = lab.cluster
        self.clock_node = clock_node
        self.faketime = lab.tmp / "faketime"
        self.holders = Holders(lab, self.cluster.vip_addresses())
        self.resources = Resources()
        self.injected: list[Injected] = []
        self.breaches: list[Breach] = []
        self.t0 = time.monotonic()
        self.wall0 = time.time() - self.t0  # wall clock = monotonic + wall0
        self.clock_checks: list[str] = []
        self.log_out = sys.stdout

    # ---- helpers

    def say(self, text: str) -> None:
        """One line of the run's log, with the time since the start."""
        print(f"[{time.monotonic() - self.t0:8.2f}] {text}", file=self.log_out, flush=True)

    def rel(self, t: float) -> float:
        return t - self.t0

    def breach(self, invariant: str, at: float, what: str, trace: list[str] | None = None) -> None:
        self.breaches.append(Breach(invariant, self.rel(at), what, trace or []))
        self.say(f"INVARIANT BROKEN {invariant}: {what}")

    def env(self, node: str) -> dict[str, str] | None:
        if node != self.clock_node or not LIBFAKETIME.exists():
            return None
        # Only CLOCK_REALTIME is offset (the control file is re-read every second); the
        # monotonic clock pyvrrp's timers use is left alone.
        return {
            "LD_PRELOAD": str(LIBFAKETIME),
            "FAKETIME_TIMESTAMP_FILE": str(self.faketime),
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_CACHE_DURATION": "1",
        }

    def start(self, node: str, cluster: ClusterSpec | None = None) -> None:
        self.lab.start(
            node, "pyvrrp", soak_config(self.lab, node, cluster or self.cluster), env=self.env(node)
        )
        self.holders.set_running(node, True)
        pids = self.lab.daemon_pids(node)
        self.resources.track(node, pids[0] if pids else None)

    def write_config(self, node: str, cluster: ClusterSpec | None = None) -> None:
        path = self.lab.node_dir(node) / "node.toml"
        path.write_text(soak_config(self.lab, node, cluster or self.cluster))

    # ---- the run

    def setup(self) -> None:
        """Start every daemon, the probe and the observers; wait for the seed table."""
        self.faketime.write_text("+0\n")
        for node in self.lab.nodes:
            self.start(node)
        self.holders.start()
        self.lab.wait_converged(60)
        self.lab.flush_client_neighbours()
        self.probe = self.lab.probe(interval=PROBE_INTERVAL)
        self.resources.thread.start()
        self.holders.watch()
        self.say(f"converged; faketime on {self.clock_node}; probe every {PROBE_INTERVAL}s")

    def run(self, faults: list[Fault], deadline: float) -> None:
        """Inject `faults` one at a time until done or `deadline` (monotonic)."""
        for fault in faults:
            planned = self.t0 + fault.at
            if planned > deadline:
                break
            time.sleep(max(0.0, planned - time.monotonic()))
            if time.monotonic() > deadline:
                break
            record = Injected(fault, time.monotonic())
            self.injected.append(record)
            self.say(f"inject {fault.line()}")
            try:
                self.inject(record)
            except LabError as exc:
                self.breach("fault", time.monotonic(), f"{fault.line()}: {exc}")
            if record.healed is None:
                record.healed = time.monotonic()
            self.settle(record)
        self.say("schedule done")

    def settle(self, record: Injected) -> None:
        try:
            self.lab.wait_converged(CONVERGE_TIMEOUT)
        except LabTimeout as exc:
            self.breach(
                "converged",
                time.monotonic(),
                f"{record.fault.line()}: not back on the seed table {CONVERGE_TIMEOUT} s "
                f"after it healed: {exc}",
            )
        record.settled = time.monotonic()
        for node in self.lab.nodes:
            if not self.lab.running(node):
                self.breach(
                    "daemon",
                    time.monotonic(),
                    f"the daemon of {node} is gone after {record.fault.line()}; "
                    f"end of its log: {self.lab.log(node)[-800:]}",
                )
                self.lab.remove_vips(node)
                self.start(node)
        self.say(
            f"settled in {record.settled - (record.healed or record.start):.2f}s after the undo"
        )

    def inject(self, record: Injected) -> None:
        f = record.fault
        lab, node = self.lab, f.node
        if f.kind == "link":
            lab.set_link_down(node)
            time.sleep(f.hold)
            lab.set_link_up(node)
        elif f.kind == "partition":
            if f.param == "cut":
                lab.cut_link(node)
                time.sleep(f.hold)
                lab.restore_link(node)
            else:
                self.nft_partition(node, on=True)
                time.sleep(f.hold)
                self.nft_partition(node, on=False)
        elif f.kind == "kill":
            self.holders.set_running(node, False)
            self.resources.track(node, None)
            lab.kill(node)
            time.sleep(f.hold)
            record.healed = time.monotonic()
            self.start(node)
        elif f.kind == "term":
            lab.stop(node, signal.SIGTERM, timeout=15.0)
            self.holders.set_running(node, False)
            self.resources.track(node, None)
            self.check_leftovers(node, f"after {f.line()}")
            time.sleep(f.hold)
            record.healed = time.monotonic()
            self.start(node)
        elif f.kind == "reload":
            self.reload(record)
        elif f.kind == "maintenance":
            for mode in ("on", "off"):
                done = pyvrrp_cli(lab, node, "maintenance", mode)
                if done.returncode != 0:
                    self.breach("reload", time.monotonic(), f"maintenance {mode}: {done.stderr}")
                if mode == "on":
                    time.sleep(f.hold)
        elif f.kind == "health":
            lab.set_healthy(node, False)
            time.sleep(f.hold)
            lab.set_healthy(node, True)
        elif f.kind == "tracked":
            if f.param == "down":
                lab.dummy_down(node)
                time.sleep(f.hold)
                lab.dummy_up(node)
            else:
                lab.delete_dummy(node)
                time.sleep(f.hold)
                lab.recreate_dummy(node)
        elif f.kind == "delete":
            self.delete_behind(record)
        elif f.kind == "loss":
            lab.set_vrrp_loss(int(f.param.rstrip("%")))
            time.sleep(f.hold)
            lab.clear_loss()
        elif f.kind == "clock":
            self.clock_jump(record)
        else:
            raise LabError(f"unknown fault kind {f.kind}")

    def nft_partition(self, node: str, *, on: bool) -> None:
        """Drop VRRP (IP protocol 112) in and out of `node`'s namespace: a silent partition."""
        ns = self.lab.ns(node)
        if not on:
            self.lab.run_in(node, "nft", "delete", "table", "inet", "soak_partition", check=False)
            return
        script = (
            "table inet soak_partition {\n"
            "    chain input { type filter hook input priority 0; meta l4proto vrrp drop; }\n"
            "    chain output { type filter hook output priority 0; meta l4proto vrrp drop; }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=script,
            text=True,
            check=True,
            capture_output=True,
        )

    def reload(self, record: Injected) -> None:
        f, lab, node = record.fault, self.lab, record.fault.node
        if f.param == "valid":
            done = pyvrrp_cli(lab, node, "reload")
            if done.returncode != 0:
                self.breach("reload", time.monotonic(), f"valid reload refused: {done.stderr}")
            return
        if f.param == "changed":
            cluster, instance, prio = changed_cluster(self.cluster, node)
            self.write_config(node, cluster)
            done = pyvrrp_cli(lab, node, "reload")
            base = None
            if done.returncode == 0:
                status = lab.status(node)
                base = status["instances"][instance]["base_priority"]
            if done.returncode != 0 or base != prio:
                self.breach(
                    "reload",
                    time.monotonic(),
                    f"changed reload ({instance} priority {prio}) not applied: rc "
                    f"{done.returncode}, base priority {base}: {done.stderr.strip()}",
                )
            time.sleep(f.hold)
            self.write_config(node)
            done = pyvrrp_cli(lab, node, "reload")
            if done.returncode != 0:
                self.breach("reload", time.monotonic(), f"reload back refused: {done.stderr}")
            return
        path = lab.node_dir(node) / "node.toml"
        good = path.read_text()
        # Alternately a file that is not TOML and a valid TOML file with a value out of range.
        if f.index % 2:
            path.write_text(good + "\n[instances.\n")
        else:
            path.write_text(good.replace("vrid = ", "vrid = 3", 1))
        try:
            done = pyvrrp_cli(lab, node, "reload")
            alive = lab.running(node)
            if done.returncode == 0 or not alive:
                self.breach(
                    "reload",
                    time.monotonic(),
                    f"broken file: reload exit {done.returncode}, daemon running {alive}: "
                    f"{(done.stdout + done.stderr).strip()[:300]}",
                )
            else:
                self.say(f"broken reload refused: {done.stderr.strip().splitlines()[-1:]}")
        finally:
            path.write_text(good)

    def delete_behind(self, record: Injected) -> None:
        """Remove one of the node's objects with `ip`; the master must put it back."""
        f, lab, node = record.fault, self.lab, record.fault.node
        inst = next(i for i in self.cluster.instances if i.members[0] == node)
        if f.param in ("vip4", "vip6"):
            addrs = inst.addresses + inst.excluded_addresses
            addr = next(a for a in addrs if (":" in a) == (f.param == "vip6"))
            lab.run_in(node, "ip", "addr", "del", addr, "dev", "eth0.4000")
            return
        if f.param == "route":
            argv = ["ip", "route", "del", f"198.51.100.{inst.vrid}/32", "table", str(ROUTE_TABLE)]
            want = f"route 198.51.100.{inst.vrid} table {ROUTE_TABLE}"
        else:
            argv = ["ip", "rule", "del", "priority", str(2000 + inst.vrid)]
            want = f"rule {2000 + inst.vrid} from 198.51.100.{inst.vrid} table {ROUTE_TABLE}"
        lab.run_in(node, *argv)
        removed = time.monotonic()
        bound = PUT_BACK_ROUTE + self.margin
        try:
            lab.wait_for(
                lambda: want in ours(lab, node, self.cluster), bound, interval=0.25, what=want
            )
            self.say(f"{want} put back after {time.monotonic() - removed:.2f}s")
        except LabTimeout:
            self.breach(
                "putback",
                removed,
                f"{f.line()}: `{want}` not put back within {bound:.1f} s; "
                f"now: {ours(lab, node, self.cluster)}",
            )

    def clock_jump(self, record: Injected) -> None:
        f = record.fault
        if self.env(f.node) is None:
            self.say("clock: libfaketime is missing, skipped")
            return
        offset = int(f.param)
        self.faketime.write_text(f"{f.param}\n")
        time.sleep(f.hold)
        # The daemon's wall clock shows in `pyvrrp status` (last_transition = wall - age).
        seen = self.daemon_clock_offset(f.node)
        self.clock_checks.append(f"offset {offset:+d} s: daemon's wall clock off by {seen} s")
        if seen is None or abs(seen - offset) > 5:
            self.breach(
                "clock", time.monotonic(), f"the clock jump did not reach the daemon: {seen}"
            )
        self.faketime.write_text("+0\n")
        time.sleep(1.5)

    def daemon_clock_offset(self, node: str) -> int | None:
        try:
            status = self.lab.status(node)
        except LabError:
            return None
        inst = next(iter(status["instances"].values()))
        wall = float(inst["last_transition"]) + float(inst["in_state_for"])
        return round(wall - time.time())

    def check_leftovers(self, node: str, when: str) -> None:
        left = ours(self.lab, node, self.cluster)
        if left:
            self.breach("leftovers", time.monotonic(), f"{node} {when}: {left}")

    # ---- verdict

    def window(self, t: float) -> Injected | None:
        """The fault whose window (injection to the next injection) holds `t`."""
        found = None
        for record in self.injected:
            if record.start <= t:
                found = record
        return found

    def check_intervals(self) -> None:
        for iv in self.holders.intervals:
            record = self.window(iv.start)
            kind = record.fault.kind if record else "start"
            label = record.fault.line() if record else "before the first fault"
            duration = iv.end - iv.start
            if iv.kind == "none":
                bound = NONE_BOUND[kind] + self.margin
                ok = duration <= bound
                what = (
                    f"{iv.address} on no node for {duration:.2f} s (bound {bound:.2f} s) "
                    f"during {label}"
                )
            else:
                # A handover's overlap is always allowed; faults that split the cluster may
                # leave two masters until one Master_Down_Interval after they healed.
                healed = record.healed if record and record.healed else iv.start
                after = DUAL_AFTER_HEAL.get(kind)
                ok = duration <= DUAL_DEFAULT + self.margin or (
                    after is not None and iv.end <= healed + after + self.margin
                )
                allowed = f"{DUAL_DEFAULT + self.margin:.2f} s" + (
                    f" or until {after + self.margin:.2f} s after the heal" if after else ""
                )
                what = (
                    f"{iv.address} on {', '.join(iv.nodes) or 'several nodes'} for "
                    f"{duration:.2f} s, until {iv.end - healed:.2f} s after the heal (allowed "
                    f"{allowed}) during {label}"
                )
            if not ok:
                trace = self.holders.trace(iv.start - 5, iv.end + 1)
                trace += self.log_lines(iv.start - 5, iv.end + 1)
                self.breach(iv.kind, iv.start, what, trace)

    def log_lines(self, start: float, end: float) -> list[str]:
        """Daemon log lines whose time of day falls in [start, end] (monotonic)."""
        lo = datetime.datetime.fromtimestamp(self.wall0 + start).strftime("%H:%M:%S.%f")[:12]
        hi = datetime.datetime.fromtimestamp(self.wall0 + end).strftime("%H:%M:%S.%f")[:12]
        out = []
        for node in self.lab.nodes:
            for line in self.lab.log(node).splitlines():
                stamp = line[:12]
                if re.match(r"\d\d:\d\d:\d\d\.\d{3}", stamp) and lo <= stamp <= hi:
                    out.append(f"{node}: {line}")
        return out

    def check_logs(self) -> dict[str, int]:
        """Tracebacks and unhandled errors are breaches; ERROR/WARNING lines are counted."""
        levels: Counter[str] = Counter()
        for node in self.lab.nodes:
            lines = self.lab.log(node).splitlines()
            for i, line in enumerate(lines):
                if re.search(r"Traceback|[Uu]nhandled|CRITICAL|Exception", line):
                    self.breach("log", time.monotonic(), f"{node}: {line}", lines[i : i + 30])
                m = re.match(r"\S+ (ERROR|WARNING) (.*)", line)
                if m:
                    message = re.sub(r"\d+(\.\d+)?", "N", m.group(2))[:90]
                    levels[f"{m.group(1)} {message}"] += 1
        return dict(levels.most_common())

    def check_resources(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if row["fds_last"] > row["fds_first"] + 4:
                self.breach(
                    "resources",
                    time.monotonic(),
                    f"{row['node']} pid {row['pid']}: fds {row['fds_first']} -> "
                    f"{row['fds_last']} over {row['steady_s']} s",
                )
            if row["steady_s"] >= 600 and row["rss_kb_per_hour"] > 16 * 1024:
                self.breach(
                    "resources",
                    time.monotonic(),
                    f"{row['node']} pid {row['pid']}: RSS grows {row['rss_kb_per_hour']} kB/h",
                )

    def outages(self) -> dict[str, dict[str, float]]:
        """Per fault kind, the client's longest gap (any VIP) per fault: count, median, max.
        A gap counts for the fault in force when it ended."""
        record_file = self.probe.record
        answers: dict[str, list[float]] = defaultdict(list)
        start_ns = 0
        for line in record_file.read_text(errors="replace").splitlines():
            fields = line.split()
            if fields and fields[0] == "B":
                start_ns = int(fields[1])
            elif len(fields) == 5 and fields[0] == "A":
                answers[fields[4]].append(int(fields[1]) / 1e9)
        del start_ns
        for target, times in answers.items():
            times.sort()
            for a, b in itertools.pairwise(times):
                if b - a > 3 * PROBE_INTERVAL:
                    # The gap begins at the last answer before the fault: it belongs to the
                    # fault in force when answers came back.
                    record = self.window(b)
                    if record is not None and b - a > record.outage:
                        record.outage, record.outage_target, record.outage_at = b - a, target, a
        by_kind: dict[str, list[float]] = defaultdict(list)
        for record in self.injected:
            by_kind[record.fault.kind].append(record.outage)
        return {
            kind: {
                "faults": len(gaps),
                "median_s": round(statistics.median(gaps), 3),
                "max_s": round(max(gaps), 3),
            }
            for kind, gaps in sorted(by_kind.items())
        }

    def finish(self) -> dict[str, Any]:
        """Stop the observers and every daemon (checking leftovers), then judge."""
        report = self.probe.stop()
        self.holders.stop()
        self.resources.stopped.set()
        self.resources.thread.join(SAMPLE_EVERY + 1)
        for node in self.lab.nodes:
            if self.lab.running(node):
                self.lab.stop(node, signal.SIGTERM, timeout=15.0)
                self.check_leftovers(node, "after the final SIGTERM")
        self.check_intervals()
        levels = self.check_logs()
        rows = self.resources.report()
        self.check_resources(rows)
        kinds = Counter(
            f"{r.fault.kind} {r.fault.param}".strip() if r.fault.kind != "loss" else "loss"
            for r in self.injected
        )
        counts = Counter(b.invariant for b in self.breaches)
        lost = sum(t.lost for t in report.targets.values())
        outages = self.outages()
        sent = sum(t.sent for t in report.targets.values())
        return {
            "seed": self.args.seed,
            "lab": self.lab.id,
            "duration_s": round(time.monotonic() - self.t0, 1),
            "faults": len(self.injected),
            "faults_by_kind": dict(sorted(kinds.items())),
            "invariants": {
                name: counts.get(name, 0)
                for name in (
                    "dual",
                    "none",
                    "leftovers",
                    "log",
                    "resources",
                    "converged",
                    "reload",
                    "putback",
                    "daemon",
                    "clock",
                    "fault",
                )
            },
            "breaches": [dataclasses.asdict(b) for b in self.breaches],
            "log": [
                {
                    "fault": r.fault.line(),
                    "start_s": round(self.rel(r.start), 3),
                    "healed_s": round(self.rel(r.healed or r.start), 3),
                    "settled_s": round(self.rel(r.settled or r.start), 3),
                    "outage_s": round(r.outage, 3),
                    "outage_target": r.outage_target,
                    "outage_at_s": round(self.rel(r.outage_at), 3) if r.outage else None,
                }
                for r in self.injected
            ],
            "intervals": {
                "none": len([i for i in self.holders.intervals if i.kind == "none"]),
                "dual": len([i for i in self.holders.intervals if i.kind == "dual"]),
                "none_max_s": round(
                    max(
                        [i.end - i.start for i in self.holders.intervals if i.kind == "none"],
                        default=0.0,
                    ),
                    3,
                ),
                "dual_max_s": round(
                    max(
                        [i.end - i.start for i in self.holders.intervals if i.kind == "dual"],
                        default=0.0,
                    ),
                    3,
                ),
            },
            "client": {
                "requests": sent,
                "lost": lost,
                "split_brain_events": sum(len(t.split_brain) for t in report.targets.values()),
                "outage_by_fault": outages,
            },
            "resources": rows,
            "log_levels": levels,
            "clock_checks": self.clock_checks,
        }


def render(result: dict[str, Any]) -> list[str]:
    """The human summary of a run's result."""
    lines = [
        f"seed {result['seed']}, {result['duration_s']} s, {result['faults']} faults",
        "faults by kind: " + ", ".join(f"{k} {v}" for k, v in result["faults_by_kind"].items()),
        "invariants broken: " + ", ".join(f"{k} {v}" for k, v in result["invariants"].items()),
        f"intervals: {result['intervals']}",
        f"client: {result['client']['requests']} requests, {result['client']['lost']} lost, "
        f"{result['client']['split_brain_events']} split-brain events",
        "client outage per fault (longest gap of any VIP): count / median / max",
    ]
    for kind, o in result["client"]["outage_by_fault"].items():
        lines.append(f"  {kind:<12} {o['faults']:>3} / {o['median_s']:.3f} s / {o['max_s']:.3f} s")
    lines.append("daemon processes (steady part): RSS first/last/max kB, per hour; fds")
    for r in result["resources"]:
        lines.append(
            f"  {r['node']} pid {r['pid']:>7} {r['steady_s']:>7.0f} s: RSS {r['rss_kb_first']}/"
            f"{r['rss_kb_last']}/{r['rss_kb_max']} ({r['rss_kb_per_hour']:+.0f} kB/h); fds "
            f"{r['fds_first']}/{r['fds_last']}/{r['fds_max']} ({r['fds_per_hour']:+.1f}/h)"
        )
    lines.append(f"clock jumps: {result['clock_checks']}")
    lines.append("log lines by level and message:")
    lines += [f"  {n:>5} {m}" for m, n in result["log_levels"].items()]
    for b in result["breaches"]:
        lines.append(f"BROKEN {b['invariant']} at {b['at']:.2f}s: {b['what']}")
        lines += [f"    {t}" for t in b["trace"][:60]]
    return lines


def _raise_interrupt(_signo: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the soak; print the schedule, the log and the verdict; 0 if every invariant held."""
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds (default 1800)")
    parser.add_argument("--seed", type=int, default=1, help="the fault generator's seed")
    parser.add_argument(
        "--margin", type=float, default=2.0, help="scheduling slack added to every bound (s)"
    )
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument("--print-schedule", action="store_true", help="print the schedule and exit")
    args = parser.parse_args(argv)
    if args.duration < 30 or args.margin < 0:
        parser.error("--duration at least 30 s, --margin not negative")
    cluster = seed_cluster()
    clock_node = random.Random(args.seed).choice(list(cluster.node_names))
    faults = schedule(args.seed, args.duration, cluster.node_names, clock_node)
    text = "\n".join(f.line() for f in faults)
    print(f"# bench/soak.py --duration {args.duration:g} --seed {args.seed}")
    print(
        f"# schedule: {len(faults)} faults, sha256 {hashlib.sha256(text.encode()).hexdigest()[:16]}"
    )
    print(text, flush=True)
    if args.print_schedule:
        return 0
    if os.geteuid() != 0:
        print("bench/soak.py: needs root (network namespaces)", file=sys.stderr)
        return 3
    for tool in ("ip", "nft", "curl"):
        if shutil.which(tool) is None:
            print(f"bench/soak.py: {tool} is missing: `make system-deps`", file=sys.stderr)
            return 3
    if not LIBFAKETIME.exists():
        print("bench/soak.py: libfaketime is missing (apt-get install faketime): no clock jumps")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Hard bound: whatever happens, the run ends (and the lab is torn down) by then.
    hard_stop = args.duration + 300

    def alarm(_signo: int, _frame: FrameType | None) -> NoReturn:
        raise TimeoutError(f"the soak overran its bound of {hard_stop:.0f} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(hard_stop))
    result: dict[str, Any] | None = None
    try:
        with Lab(cluster, prefix="soak") as lab:
            soak = Soak(lab, args, clock_node)
            soak.setup()
            try:
                soak.run(faults, soak.t0 + args.duration)
            finally:
                result = soak.finish()
                soak.holders.stop()
    except KeyboardInterrupt:
        print("interrupted: the lab has been torn down", file=sys.stderr)
        return 130
    except (LabError, TimeoutError) as exc:
        print(f"bench/soak.py: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    assert result is not None
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print("\n".join(render(result)))
    broken = sum(result["invariants"].values())
    print("every invariant held" if not broken else f"{broken} invariant breaches")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
