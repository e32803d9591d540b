#!/usr/bin/env python3
"""`make demo`: the seed cluster in network namespaces, a link cut, and what a client feels.

Builds the seed deployment (three nodes behind a vSwitch, three VIPs, each node master of one,
unicast adverts every second), starts pyvrrp on every node, shows who holds what, cuts node
A's vSwitch port, shows 1.2.3.58 moving to C and the outage a client measured, restores A,
shows the final state and tears everything down: about 25 s. Ctrl-C or an error tears down
too; the exit status is 0 when every step did what it should, 1 when one did not, 3 when the
machine cannot run the lab (not root, a tool missing), 130 after Ctrl-C.

    sudo .venv/bin/python netns-lab/demo.py [--daemon pyvrrp|keepalived]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn

# Run as a script: netns-lab/ is not on sys.path when started from elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nslab import DaemonKind, Lab, LabError, Probe, seed_cluster

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130

CUT_NODE = "A"
VIP = "1.2.3.58"  # A's VIP (vip58: A 100, C 75, B 50)
VIP6 = "2a03:4444:fff0:59:88::58"
TAKER = "C"
ADVERT_INTERVAL = 1.0


class Timeline:
    """Prints `[  4.2s] text` lines, seconds since the demo started."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:5.1f}s] {text}", flush=True)

    def more(self, text: str) -> None:
        print(f"         {text}", flush=True)


def skew_time(priority: int) -> float:
    """RFC 9568 §6.1."""
    return (256 - priority) * ADVERT_INTERVAL / 256


def master_down_interval(priority: int) -> float:
    """RFC 9568 §6.1."""
    return 3 * ADVERT_INTERVAL + skew_time(priority)


def holders_table(lab: Lab, probe: Probe | None) -> list[str]:
    """One line per VIP: the node holding it (from `ip addr` in every node) and the node the
    client's probe reaches."""
    holders = lab.holders()
    lines = [f"{'VIP':<11} {'IPv6 twin (excluded address)':<27} {'held by':<8} client reaches"]
    for inst in lab.cluster.instances:
        v4, v6 = inst.all_addresses()
        held = "+".join(holders[v4]) or "nobody"
        reached = (probe.last_node(v4) if probe else None) or "-"
        lines.append(f"{v4:<11} {v6:<27} {held:<8} {reached}")
    return lines


def _raise_interrupt(_signo: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def run_demo(daemon: DaemonKind, out: Timeline) -> bool:
    """The demo proper; True if everything behaved as it should."""
    ok = True
    cluster = seed_cluster()
    prio = cluster.instance("vip58").priorities
    mdi = master_down_interval(prio[TAKER])
    with Lab(cluster) as lab:
        out.say(
            f"built lab {lab.id}: a vSwitch (Linux bridge), nodes {', '.join(lab.nodes)}, "
            "and a client playing the Internet"
        )
        out.say(f"starting {daemon} on every node (adverts every {ADVERT_INTERVAL:g} s, unicast)")
        lab.start_all(daemon)
        lab.wait_converged(timeout=30)
        out.say("converged: each node is master of one VIP, as in the seed table")
        with lab.probe() as probe:
            for addr, nodes in lab.expected_holders().items():
                probe.wait_answered_by(addr, nodes[0], timeout=10)
            for line in holders_table(lab, probe):
                out.more(line)
            out.say(
                f"the client sends a UDP probe to every VIP every 5 ms; "
                f"now cutting node {CUT_NODE}'s vSwitch port"
            )
            probe.mark("cut")
            cut_at = time.monotonic()
            cut_demo = cut_at - out.start
            lab.cut_link(CUT_NODE)
            probe.wait_answered_by(VIP, TAKER, timeout=mdi + 5)
            probe.wait_answered_by(VIP6, TAKER, timeout=5)
            out.say(
                f"{VIP} now answered by {TAKER}, {time.monotonic() - cut_at:.2f} s after the cut"
            )
            for line in holders_table(lab, probe):
                out.more(line)
            out.more(f"({CUT_NODE} is cut off: hearing nobody, it keeps {VIP} and takes every VIP;")
            out.more(" nobody can reach it, so only the client's side counts)")
            time.sleep(1.0)
            out.say(f"restoring node {CUT_NODE}'s port")
            lab.restore_link(CUT_NODE)
            lab.wait_converged(timeout=10)
            out.say(
                f"{CUT_NODE} and {TAKER} hear each other: {CUT_NODE} (priority 100) is master again"
            )
            try:
                probe.wait_answered_by(VIP, CUT_NODE, timeout=10)
                probe.wait_answered_by(VIP6, CUT_NODE, timeout=10)
            except LabError:
                out.more(f"the client does not reach {CUT_NODE} again within 10 s (see below)")
                ok = False
            time.sleep(0.5)
        report = probe.report()
        out.say("final state:")
        for line in holders_table(lab, probe):
            out.more(line)
        if lab.holders() != lab.expected_holders():
            ok = False
        # Probe times count from the probe's start; the demo's from its own.
        [(_, cut_in_probe)] = report.marks
        offset = cut_demo - cut_in_probe
        out.say("who answered the client, on the demo's clock:")
        for target in (VIP, VIP6):
            segments = ", ".join(
                f"{s.node} {s.start_s + offset:.2f}-{s.end_s + offset:.2f}s"
                for s in report[target].timeline
            )
            out.more(f"{target:<27} {segments}")
        moves = {t: report[t].handovers for t in (VIP, VIP6)}
        for target, handovers in moves.items():
            if [(h.old, h.new) for h in handovers] != [(CUT_NODE, TAKER), (TAKER, CUT_NODE)]:
                out.more(f"unexpected: {target} should move {CUT_NODE} -> {TAKER} -> {CUT_NODE}")
                ok = False
        if not ok:
            return ok
        outage = max(moves[t][0].gap_s for t in (VIP, VIP6))
        back = max(moves[t][1].gap_s for t in (VIP, VIP6))
        out.more(f"outage after the cut: {outage:.2f} s; when {CUT_NODE} came back: {back:.3f} s")
        out.more(
            f"why {outage:.1f} s: {TAKER} takes over after hearing no advert for "
            f"Master_Down_Interval = 3 x {ADVERT_INTERVAL:g} s + Skew_Time "
            f"{skew_time(prio[TAKER]):.2f} s = {mdi:.2f} s"
        )
        out.more(
            f" (RFC 9568), counted from {CUT_NODE}'s last advert, sent 0 to "
            f"{ADVERT_INTERVAL:g} s before the cut."
        )
        if back > 1.0:
            out.more(
                f"(the client's neighbour cache still pointed at {TAKER}, which yielded to "
                f"{CUT_NODE} without {CUT_NODE} re-announcing: the client found {CUT_NODE} by "
                "itself, through neighbour unreachability detection)"
            )
        others = [t for a, t in report.targets.items() if a not in moves and t.max_gap_s > 0.5]
        out.more(
            "the other VIPs: "
            + (
                "no outage (their masters were not touched)"
                if not others
                else ", ".join(f"{t.target} {t.max_gap_s:.2f} s" for t in others)
            )
        )
        if not mdi - ADVERT_INTERVAL - 0.2 < outage < mdi + 1.5:
            out.more(f"unexpected: the outage should be between {mdi - 1:.2f} and {mdi:.2f} s")
            ok = False
        out.say("tearing down")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Entry point of `make demo`."""
    parser = argparse.ArgumentParser(
        prog="demo.py", description="The seed VRRP cluster, a link cut, and the client's view."
    )
    parser.add_argument("--daemon", choices=["pyvrrp", "keepalived"], default="pyvrrp")
    args = parser.parse_args(argv)
    daemon: DaemonKind = "pyvrrp" if args.daemon == "pyvrrp" else "keepalived"
    if os.geteuid() != 0:
        print("demo.py: needs root (network namespaces): sudo make demo", file=sys.stderr)
        return EXIT_ENVIRONMENT
    for tool in ("ip", "nft", "curl", *(["keepalived"] if daemon == "keepalived" else [])):
        if shutil.which(tool) is None:
            print(f"demo.py: `{tool}` is missing: `make system-deps` installs it", file=sys.stderr)
            return EXIT_ENVIRONMENT
    # `kill PID` tears down as Ctrl-C does; SIGINT explicitly too, because a shell starts
    # background jobs with SIGINT ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    out = Timeline()
    out.say(f"pyvrrp demo: the seed deployment in network namespaces, running {daemon}")
    try:
        ok = run_demo(daemon, out)
    except KeyboardInterrupt:
        out.say("interrupted: the lab has been torn down")
        return EXIT_INTERRUPTED
    except LabError as exc:
        out.say(f"failed: {exc}")
        out.more("the lab has been torn down")
        return EXIT_FAILED
    out.say("done: everything was torn down" if ok else "done, but something was not as expected")
    return EXIT_OK if ok else EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
