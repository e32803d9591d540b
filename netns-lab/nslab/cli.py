"""`netns-lab/lab.py`: build, drive and tear down a lab from the shell.

    lab.py up [--daemon keepalived|pyvrrp] [--id ID] [--nodes N] [--detach]
    lab.py down --id ID          lab.py cleanup          lab.py status --id ID
    lab.py cut|restore|kill|stop|start|healthy|unhealthy|dummy-down|dummy-up NODE --id ID
    lab.py probe --id ID --seconds S

Exit codes follow the project's policy: 2 for a bad command line, 3 when the environment
(root, tools, an existing lab) stops us; never a traceback for those.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

from nslab.lab import DaemonKind, Lab, cleanup, lab_owner, list_labs
from nslab.spec import seed_cluster
from nslab.system import LabError

NODE_ACTIONS: dict[str, tuple[str, Callable[[Lab, str], None]]] = {
    "cut": ("detach NODE's port from the vSwitch (no carrier change)", Lab.cut_link),
    "restore": ("re-attach NODE's port to the vSwitch", Lab.restore_link),
    "link-down": ("carrier loss on NODE's eth0.4000", Lab.set_link_down),
    "link-up": ("carrier back on NODE's eth0.4000", Lab.set_link_up),
    "kill": ("SIGKILL NODE's daemon (a crash)", Lab.kill),
    "stop": ("SIGTERM NODE's daemon (a graceful stop)", Lab.stop),
    "start": ("start NODE's daemon again (the lab's daemon kind)", Lab.restart),
    "dummy-down": ("ip link set dummy0 down on NODE (maintenance)", Lab.dummy_down),
    "dummy-up": ("ip link set dummy0 up on NODE", Lab.dummy_up),
    "unhealthy": ("make NODE's /healthz answer 500", lambda lab, n: lab.set_healthy(n, False)),
    "healthy": ("make NODE's /healthz answer 200", lambda lab, n: lab.set_healthy(n, True)),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lab.py",
        description="The seed VRRP cluster in Linux network namespaces (needs root).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="build the cluster and start a daemon on every node")
    up.add_argument("--daemon", choices=["keepalived", "pyvrrp"], default="keepalived")
    up.add_argument("--id", help="lab id (default: random 4 hex digits)")
    up.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3: A B C)")
    up.add_argument(
        "--detach", action="store_true", help="leave it running; `lab.py down --id` removes it"
    )
    down = sub.add_parser("down", help="tear a lab down")
    down.add_argument("--id", required=True)
    cl = sub.add_parser(
        "cleanup", help="remove stale nslab-* labs (namespaces, processes, temp dirs)"
    )
    cl.add_argument(
        "--all", action="store_true", help="also labs whose owner (a test, `up`) still runs"
    )
    sub.add_parser("list", help="list labs that have namespaces")
    st = sub.add_parser("status", help="who holds each VIP, which daemons run")
    st.add_argument("--id", required=True)
    for name, (text, _fn) in NODE_ACTIONS.items():
        a = sub.add_parser(name, help=text)
        a.add_argument("node", metavar="NODE")
        a.add_argument("--id", required=True)
    pr = sub.add_parser("probe", help="probe every VIP from the client and print the report")
    pr.add_argument("--id", required=True)
    pr.add_argument("--seconds", type=float, default=10.0)
    return p


def _holders_text(lab: Lab) -> str:
    lines = [f"{'address':<28} held by"]
    expected = lab.expected_holders()
    for addr, nodes in lab.holders().items():
        note = "" if nodes == expected.get(addr) else f"   (converged: {expected[addr][0]})"
        lines.append(f"{addr:<28} {' '.join(nodes) or '-'}{note}")
    daemons = []
    for n in lab.nodes:
        pids = lab.daemon_pids(n)
        daemons.append(f"{n}: {'pids ' + ','.join(map(str, pids)) if pids else 'no daemon'}")
    lines.append("daemons: " + "; ".join(daemons))
    return "\n".join(lines)


def _raise_interrupt(_signo: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def _up(args: argparse.Namespace) -> int:
    daemon: DaemonKind = "pyvrrp" if args.daemon == "pyvrrp" else "keepalived"
    lab = Lab(seed_cluster(args.nodes), lab_id=args.id)
    if not args.detach:
        # `kill PID` tears down as Ctrl-C does; SIGINT explicitly too, because a shell starts
        # background jobs with SIGINT ignored and Python then keeps ignoring it.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        lab.up()
        print(f"lab {lab.id}: namespaces {', '.join(lab.namespaces())}")
        lab.start_all(daemon)
        print(f"started {daemon} on {' '.join(lab.nodes)}; waiting for convergence...")
        t0 = time.monotonic()
        try:
            lab.wait_converged(30.0)
            print(f"converged in {time.monotonic() - t0:.1f} s")
        except LabError as exc:
            print(f"not converged: {exc}")
        print(_holders_text(lab))
        if args.detach:
            lab.detach()
            print(f"detached: `{sys.argv[0]} down --id {lab.id}` tears it down")
            return 0
        print(f"running; try `{sys.argv[0]} cut A --id {lab.id}`. Ctrl-C tears down.")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\ntearing down...")
        return 0
    finally:
        if lab.owned and lab.is_up:
            if lab.state_file.exists():
                lab.reload_state()  # other lab.py invocations may have started daemons
            lab.down(raise_errors=False)
            print(f"lab {lab.id} removed")


def main(argv: list[str] | None = None) -> int:
    """Entry point of netns-lab/lab.py."""
    args = _parser().parse_args(argv)
    if os.geteuid() != 0:
        print("lab.py: needs root (network namespaces)", file=sys.stderr)
        return 3
    try:
        if args.command == "up":
            return _up(args)
        if args.command == "cleanup":
            removed, skipped = cleanup(include_owned=args.all)
            for r in removed:
                print(f"removed {r}")
            for r in skipped:
                print(f"skipped {r} (--all removes it)")
            if not removed and not skipped:
                print("nothing to clean up")
            return 0
        if args.command == "list":
            labs = list_labs()
            for lab_id, namespaces in labs.items():
                owner = lab_owner(lab_id)
                who = f"owned by pid {owner}" if owner else "detached or stale"
                print(f"{lab_id}: {' '.join(namespaces)} ({who})")
            if not labs:
                print("no lab")
            return 0
        lab = Lab.attach(args.id)
        if args.command == "down":
            lab.down()
            print(f"lab {args.id} removed")
        elif args.command == "status":
            print(_holders_text(lab))
        elif args.command == "probe":
            with lab.probe() as probe:
                time.sleep(args.seconds)
            print(probe.report().format())
        else:
            _text, action = NODE_ACTIONS[args.command]
            if args.node not in lab.nodes:
                print(f"lab.py: no node {args.node} (nodes: {' '.join(lab.nodes)})")
                return 2
            action(lab, args.node)
            print(f"{args.command} {args.node}: done")
    except KeyboardInterrupt:
        return 130
    except LabError as exc:
        print(f"lab.py: {exc}", file=sys.stderr)
        return 3
    return 0
