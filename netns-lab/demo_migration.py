#!/usr/bin/env python3
"""`make demo-migration`: the seed cluster moved from keepalived to pyvrrp, one node at a time.

Runs the seed's real keepalived.conf files (tests/data/keepalived/) under keepalived 2.2.7 in
its default VRRP version (v2), on nodes set up as deployed (the `vswitch` routing table made
by the seed's if-up.d hooks, a firewall letting VRRP in from the unicast peers only), with a
client probing every VIP and IPv6 twin every 5 ms. Then each node in turn: `pyvrrp
import-keepalived`, the hooks' routes and rules into node.toml, `version = "2+3"`, `pyvrrp
check`, keepalived stopped (SIGTERM), pyvrrp started; node A is rolled back to keepalived and
forward again on the way (`--no-rollback` skips that); then each node in turn switched to
`version = 3` by an edit and `pyvrrp reload`. Prints a timeline, then per address the client's
outage over the migration (and per step) and whether two nodes ever held it after the first
advert exchange (see nslab/migration.py). About 50 s. Exit status: 0 when the migration met
its goals (outage per address at most one keepalived SIGTERM gap, never two holders), 1 when
not, 3 when the machine cannot run the lab, 130 after Ctrl-C.

    sudo .venv/bin/python netns-lab/demo_migration.py [--no-rollback]
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

from nslab import Lab, LabError, seed_cluster
from nslab.migration import (
    BEST_BACKUP_PRIORITY,
    HANDOVER_OVERLAP_S,
    SIGTERM_GAP_SLACK_S,
    MigrationReport,
    Rehearsal,
    keepalived_skew_time,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_ENVIRONMENT = 3
EXIT_INTERRUPTED = 130


class Timeline:
    """Prints `[  4.2s] text` lines, seconds since the demo started."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:5.1f}s] {text}", flush=True)

    def more(self, text: str) -> None:
        print(f"         {text}", flush=True)


def _raise_interrupt(_signo: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def print_report(report: MigrationReport, out: Timeline) -> None:
    """The figures: per address, then per step, then the verdict."""
    out.say(f"the migration took {report.duration_s:.1f} s; what the client and the kernel saw:")
    for line in report.format().splitlines():
        out.more(line)
    if report.rollback_steps:
        out.more(
            "rollback: the outage of the steps "
            + ", ".join(f"'{s}'" for s in report.rollback_steps)
            + " (node A back to keepalived, then forward again), each within one SIGTERM gap too"
        )
    gaps = ", ".join(f"{a} {g * 1000:.0f} ms" for a, g in report.sigterm_gaps.items())
    out.more(f"keepalived SIGTERM gaps measured (each VIP when its master stopped): {gaps}")
    out.more(
        f"goal: at most one keepalived SIGTERM gap per address = Skew_Time of the best backup "
        f"({BEST_BACKUP_PRIORITY}) {keepalived_skew_time(BEST_BACKUP_PRIORITY):.3f} s + "
        f"{SIGTERM_GAP_SLACK_S} s = {report.bound_s:.3f} s"
    )
    out.more(
        f"two holders: overlaps longer than {HANDOVER_OVERLAP_S * 1000:.0f} ms (a preemption "
        "overlaps for the advert's transit: the new master adds first, the old one removes on "
        "receipt; a stopping pyvrrp keeps its VIP until 0.1 s after it hears the new master)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of `make demo-migration`."""
    parser = argparse.ArgumentParser(
        prog="demo_migration.py",
        description="The seed cluster moved from keepalived to pyvrrp, and what a client feels.",
    )
    parser.add_argument(
        "--no-rollback",
        action="store_true",
        help="skip rolling node A back to keepalived (and forward again) after its swap",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo_migration.py: needs root (network namespaces)", file=sys.stderr)
        return EXIT_ENVIRONMENT
    for tool in ("ip", "nft", "iptables", "curl", "keepalived", "sed"):
        if shutil.which(tool) is None:
            print(f"demo_migration.py: `{tool}` is missing: `make system-deps`", file=sys.stderr)
            return EXIT_ENVIRONMENT
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    out = Timeline()
    out.say("pyvrrp migration demo: the seed cluster from keepalived (VRRPv2) to pyvrrp (VRRPv3)")
    lab = Lab(seed_cluster())
    rehearsal = Rehearsal(
        lab, say=out.say, more=out.more, rollback=None if args.no_rollback else "A"
    )
    try:
        with lab:
            out.say(f"built lab {lab.id}: a vSwitch, nodes A, B, C, and a client")
            report = rehearsal.run()
            print_report(report, out)
            out.say("tearing down")
    except KeyboardInterrupt:
        out.say("interrupted: the lab has been torn down")
        return EXIT_INTERRUPTED
    except LabError as exc:
        out.say(f"failed: {exc}")
        out.more("the lab has been torn down")
        return EXIT_FAILED
    finally:
        rehearsal.close()
    failures = report.failures()
    if failures:
        out.say("the migration missed its goals:")
        for line in failures:
            out.more(line)
        return EXIT_FAILED
    out.say("done: never two holders, every outage within one keepalived SIGTERM gap")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
