"""Failover as a client feels it: pyvrrp and keepalived side by side, in the netns lab.

Usage: sudo .venv/bin/python bench/failover.py [--trials N] [--intervals 1.0,0.1]
                                               [--faults cut,kill,term] [--json FILE]

One lab (the seed cluster of netns-lab: nodes A, B, C, unicast adverts, vip58 with A 100,
C 75, B 50) runs the whole benchmark. For each advertisement interval and each trial, both
daemons take their turn on every node (the one going first alternates), and each turn injects
three faults into A, the master of 1.2.3.58, one at a time, with a reset in between:

- `cut`: A's vSwitch port leaves the bridge (A keeps carrier; C must notice the silence);
- `kill`: SIGKILL of A's daemon (A's kernel keeps the VIP and answers until C's GARP/NA);
- `term`: SIGTERM of A's daemon (a graceful stop: priority 0, then C after Skew_Time).

The fault is injected at a controlled phase of A's advertisement timer: trial k of N waits
(k + 0.5) / N intervals after an advert of A seen on the vSwitch, for both daemons alike, so
the two are compared at the same phases (a link cut's outage is Master_Down_Interval minus
that phase; with random phases a 5-trial median would mostly measure luck).

Per trial, from the client's probe (a UDP request to 1.2.3.58 and its IPv6 twin every 2 ms,
`--probe-interval`: the resolution of every figure):
- outage: the longest time without an answer around the handover (the worse of the two
  addresses), what a client feels;
- takeover: from the fault to C's first answer (for SIGKILL the outage is ~0 while the
  takeover still takes Master_Down_Interval);
- late: takeover minus what RFC 9568 §6.1 predicts from the phase (Master_Down_Interval after
  A's last advert for cut and kill, Skew_Time after the priority-0 advert for term): the
  daemon's own reaction time.

Targets (docs/benchmarks.md, "Failover"), for pyvrrp at every interval: median outage within
Master_Down_Interval + 30 ms for a cut and within Skew_Time + 30 ms for SIGTERM, and a
median outage no worse than keepalived's in the same run (for cut and term, within one probe
interval). Exit status 1 if a target is missed, 3 if the lab cannot run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-lab"))  # nslab, from a checkout

from nslab import (  # noqa: E402
    ClusterSpec,
    DaemonKind,
    Lab,
    LabError,
    keepalived_config,
    pyvrrp_config,
    seed_cluster,
)

DAEMONS: tuple[DaemonKind, ...] = ("pyvrrp", "keepalived")
FAULTS = ("cut", "kill", "term")
TARGETS = ("1.2.3.58", "2a03:4444:fff0:59:88::58")
MASTER, TAKER, VRID = "A", "C", 58
PRIORITY = {"A": 100, "C": 75}
TARGET_MARGIN = 0.030


def skew_time(priority: int, interval: float) -> float:
    """Skew_Time (RFC 9568 §6.1)."""
    return (256 - priority) * interval / 256


def master_down_interval(priority: int, interval: float) -> float:
    """Master_Down_Interval (RFC 9568 §6.1)."""
    return 3 * interval + skew_time(priority, interval)


@dataclasses.dataclass(frozen=True)
class Trial:
    """One fault injected into one daemon's cluster."""

    interval: float
    daemon: str
    fault: str
    index: int
    phase: float  # seconds from A's last advert seen on the vSwitch to the fault
    outage: float
    takeover: float
    late: float


def cluster_at(interval: float) -> ClusterSpec:
    """The seed cluster with every instance at `interval`."""
    seed = seed_cluster()
    return dataclasses.replace(
        seed,
        instances=tuple(dataclasses.replace(i, advert_interval=interval) for i in seed.instances),
    )


def use(lab: Lab, daemon: DaemonKind, interval: float) -> None:
    """Run `daemon` at `interval` on every node and wait for the seed table."""
    lab.undo_faults()  # the previous turn's last trial may have left A's link cut
    running = [n for n in lab.nodes if lab.running(n)]
    if running:
        # SIGKILL: the fastest switch (a graceful stop of every master at once waits out the
        # release timeout); the addresses it leaves are removed before the next start.
        lab.stop_many(running, signal.SIGKILL)
    cluster = cluster_at(interval)
    for node in lab.nodes:
        lab.remove_vips(node)
        if daemon == "pyvrrp":
            text = pyvrrp_config(node, cluster, run_dir=lab.node_dir(node))
        else:
            text = keepalived_config(node, cluster)
        lab.start(node, daemon, text)
    lab.wait_converged(timeout=master_down_interval(50, interval) + 30)


def inject(lab: Lab, fault: str) -> None:
    """The fault on the master, A."""
    if fault == "cut":
        lab.cut_link(MASTER)
    elif fault == "kill":
        lab.kill(MASTER)
    else:
        lab.stop(MASTER)


def run_trial(
    lab: Lab,
    daemon: str,
    fault: str,
    *,
    interval: float,
    index: int,
    trials: int,
    probe_interval: float,
) -> Trial:
    """Reset, inject `fault` at phase (index + 0.5) / trials of A's advert timer, measure."""
    lab.reset(timeout=master_down_interval(50, interval) + 30)
    phase_wanted = (index + 0.5) / trials * interval
    mdi = master_down_interval(PRIORITY[TAKER], interval)
    with lab.probe(TARGETS, interval=probe_interval) as probe:
        time.sleep(0.2)
        with lab.watch_adverts(MASTER) as watch:
            advert = watch.next(timeout=3 * interval + 5, vrid=VRID)
            time.sleep(max(0.0, advert.at + phase_wanted - time.monotonic()))
            probe.mark(fault)
            faulted = time.monotonic()
            inject(lab, fault)
        for target in TARGETS:
            probe.wait_answered_by(target, TAKER, timeout=mdi + 10)
        time.sleep(0.1)
    report = probe.report()
    [(_, fault_at)] = report.marks
    outages, takeovers = [], []
    for target in TARGETS:
        t = report[target]
        first = next(h for h in t.handovers if h.new == TAKER)
        outages.append(first.gap_s)
        takeovers.append(first.at_s - fault_at)
    phase = faulted - advert.at
    takeover = max(takeovers)
    expected = skew_time(PRIORITY[TAKER], interval) if fault == "term" else mdi - phase
    return Trial(
        interval=interval,
        daemon=daemon,
        fault=fault,
        index=index,
        phase=round(phase, 4),
        outage=round(max(outages), 4),
        takeover=round(takeover, 4),
        late=round(takeover - expected, 4),
    )


def summary(results: list[Trial], interval: float, fault: str, daemon: str) -> list[Trial]:
    return [r for r in results if (r.interval, r.fault, r.daemon) == (interval, fault, daemon)]


def table(results: list[Trial], intervals: list[float], faults: list[str]) -> list[str]:
    """Markdown tables, one per interval: median / max per fault and daemon."""
    names = {"cut": "link cut", "kill": "SIGKILL", "term": "SIGTERM"}
    lines = []
    for interval in intervals:
        mdi = master_down_interval(PRIORITY[TAKER], interval)
        skew = skew_time(PRIORITY[TAKER], interval)
        lines += [
            f"Advert interval {interval:g} s: Master_Down_Interval(75) = {mdi:.3f} s, "
            f"Skew_Time(75) = {skew:.3f} s.",
            "",
            "| fault | daemon | outage median / max | takeover median / max | late median |",
            "|---|---|---:|---:|---:|",
        ]
        for fault in faults:
            for daemon in DAEMONS:
                rs = summary(results, interval, fault, daemon)
                if not rs:
                    continue
                out = [r.outage for r in rs]
                tko = [r.takeover for r in rs]
                late = [r.late for r in rs]
                lines.append(
                    f"| {names[fault]} | {daemon} | {_ms(statistics.median(out))} / "
                    f"{_ms(max(out))} | {_ms(statistics.median(tko))} / {_ms(max(tko))} | "
                    f"{_ms(statistics.median(late))} |"
                )
        lines.append("")
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def check_targets(
    results: list[Trial], intervals: list[float], faults: list[str], resolution: float
) -> list[str]:
    """The targets pyvrrp misses (empty: all met)."""
    missed = []
    for interval in intervals:
        limits = {
            "cut": master_down_interval(PRIORITY[TAKER], interval) + TARGET_MARGIN,
            "term": skew_time(PRIORITY[TAKER], interval) + TARGET_MARGIN,
        }
        for fault, limit in limits.items():
            if fault not in faults:
                continue
            ours = statistics.median(r.outage for r in summary(results, interval, fault, "pyvrrp"))
            theirs = statistics.median(
                r.outage for r in summary(results, interval, fault, "keepalived")
            )
            if ours > limit:
                missed.append(f"{fault} at {interval:g} s: median {_ms(ours)} > {_ms(limit)}")
            if ours > theirs + resolution:
                missed.append(
                    f"{fault} at {interval:g} s: median {_ms(ours)} worse than keepalived's "
                    f"{_ms(theirs)}"
                )
    return missed


def machine() -> str:
    """CPU model and count, kernel, Python, keepalived version: what the numbers depend on."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    keepalived = subprocess.run(
        ["keepalived", "--version"], capture_output=True, text=True, check=False
    )
    version = (keepalived.stderr or keepalived.stdout).splitlines()[0:1]
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, {version[0] if version else 'keepalived ?'}"
    )


def progress(text: str) -> None:
    """One line per trial on stderr, so a long run shows it is alive."""
    print(text, file=sys.stderr, flush=True)


def _raise_interrupt(_signo: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print Markdown tables; 0 if pyvrrp meets its targets."""
    parser = argparse.ArgumentParser(prog="bench/failover.py", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="trials per fault (default 5)")
    parser.add_argument("--intervals", default="1.0,0.1", help="advert intervals (seconds)")
    parser.add_argument("--faults", default=",".join(FAULTS), help="cut,kill,term")
    parser.add_argument(
        "--probe-interval",
        type=float,
        default=0.002,
        help="seconds between two probes of one address: the resolution (default 0.002)",
    )
    parser.add_argument("--json", type=Path, help="also write every trial to this file")
    args = parser.parse_args(argv)
    intervals = [float(x) for x in args.intervals.split(",")]
    faults = [f for f in args.faults.split(",") if f]
    if not set(faults) <= set(FAULTS) or args.trials < 1:
        parser.error(f"faults are {', '.join(FAULTS)}; trials at least 1")
    if os.geteuid() != 0:
        print("bench/failover.py: needs root (network namespaces)", file=sys.stderr)
        return 3
    for tool in ("ip", "nft", "tcpdump", "curl", "keepalived"):
        if shutil.which(tool) is None:
            print(f"bench/failover.py: {tool} is missing: `make system-deps`", file=sys.stderr)
            return 3
    signal.signal(signal.SIGTERM, _raise_interrupt)
    command = "sudo .venv/bin/python bench/failover.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    started = time.monotonic()
    print(f"# {command.strip()}")
    print(f"# {datetime.date.today().isoformat()}, {machine()}")
    results: list[Trial] = []
    try:
        with Lab(seed_cluster()) as lab:
            for interval in intervals:
                for index in range(args.trials):
                    order = DAEMONS if index % 2 == 0 else DAEMONS[::-1]
                    for daemon in order:
                        use(lab, daemon, interval)
                        for fault in faults:
                            trial = run_trial(
                                lab,
                                daemon,
                                fault,
                                interval=interval,
                                index=index,
                                trials=args.trials,
                                probe_interval=args.probe_interval,
                            )
                            results.append(trial)
                            progress(
                                f"{interval:g}s {daemon:<10} {fault:<4} #{index}: phase "
                                f"{_ms(trial.phase)} outage {_ms(trial.outage)} takeover "
                                f"{_ms(trial.takeover)} late {_ms(trial.late)}"
                            )
    except KeyboardInterrupt:
        print("interrupted: the lab has been torn down", file=sys.stderr)
        return 130
    except LabError as exc:
        print(f"bench/failover.py: {exc}", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    print(f"# {len(results)} trials in {time.monotonic() - started:.0f} s")
    print()
    print("\n".join(table(results, intervals, faults)))
    missed = check_targets(results, intervals, faults, args.probe_interval)
    for line in missed:
        print(f"TARGET MISSED: {line}")
    if not missed:
        print("every target met")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
