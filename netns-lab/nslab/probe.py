"""What clients feel: a UDP prober in the client namespace, and the analysis of what it saw.

The prober (`python -m nslab.probe`, started by `Lab.probe`) is one process with two
non-blocking sockets: every `interval` (5 ms) it sends one datagram `<seq> nslab-probe` to each
target, and it records every answer (`<node> <seq> <dst>` from the agent) with a
CLOCK_MONOTONIC timestamp in ns. It writes text lines to a record file:

    B <start_ns> <interval_ns> <target> ...      once, first
    A <t_ns> <seq> <node> <target>               one per answer
    S <t_ns> <ticks_sent>                         every 50 ms
    E <stop_sending_ns> <ticks_sent>              once, after a 200 ms linger for late answers

CLOCK_MONOTONIC is shared by all namespaces, so the lab's `Probe.mark()` timestamps line up
with the answers. `analyse()` turns the record into a `ProbeReport`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import selectors
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Handover",
    "ProbeReport",
    "Segment",
    "SplitBrain",
    "TargetReport",
    "analyse",
]

_FLUSH_NS = 50_000_000
_LINGER_NS = 200_000_000
# Answers to the last requests may still be in flight in a live report: not lost yet.
_IN_FLIGHT_NS = 100_000_000
SPLIT_BRAIN_WINDOW_S = 0.050


def _canonical(address: str) -> str:
    return str(ipaddress.ip_address(address))


def run_prober(
    targets: list[str], out: Path, interval_ns: int, port: int, ready: Path | None
) -> None:
    """Probe `targets` until SIGTERM/SIGINT, recording into `out`."""
    stop = False

    def on_signal(_signo: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sel = selectors.DefaultSelector()
    socks: dict[int, socket.socket] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        # Room for a few seconds of answers if the prober is descheduled on a busy machine.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        socks[family] = sock
        sel.register(sock, selectors.EVENT_READ)
    dests = [(socks[socket.AF_INET6 if ":" in t else socket.AF_INET], (t, port)) for t in targets]
    canon = {_canonical(t) for t in targets}

    with out.open("w", buffering=1 << 16) as rec:
        start = time.monotonic_ns()
        rec.write(f"B {start} {interval_ns} {' '.join(sorted(canon))}\n")
        rec.flush()
        if ready is not None:
            ready.write_text("ready\n")
        seq = 0
        next_tick = start
        last_flush = start

        def drain() -> None:
            for sock in socks.values():
                while True:
                    try:
                        data, peer = sock.recvfrom(512)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue  # an ICMP error queued on the socket: skip it
                    now = time.monotonic_ns()
                    fields = data.split()
                    if len(fields) < 2:
                        continue
                    source = _canonical(peer[0])
                    if source not in canon and len(fields) >= 3:
                        source = fields[2].decode(errors="replace")
                    rec.write(f"A {now} {fields[1].decode()} {fields[0].decode()} {source}\n")

        while not stop:
            now = time.monotonic_ns()
            if now >= next_tick:
                payload = b"%d nslab-probe" % seq
                for sock, addr in dests:
                    # Unreachable right now: it shows as a lost request.
                    with contextlib.suppress(OSError):
                        sock.sendto(payload, addr)
                seq += 1
                next_tick += interval_ns
                if now - next_tick > 20 * interval_ns:
                    # Descheduled for a while: resume the pace instead of sending a burst.
                    next_tick = now + interval_ns
            if now - last_flush >= _FLUSH_NS:
                rec.write(f"S {now} {seq}\n")
                rec.flush()
                last_flush = now
            wait = max(0, next_tick - time.monotonic_ns()) / 1e9
            if sel.select(timeout=wait):
                drain()
        stopped = time.monotonic_ns()
        while time.monotonic_ns() - stopped < _LINGER_NS:
            if sel.select(timeout=0.02):
                drain()
        rec.write(f"E {stopped} {seq}\n")


@dataclass(frozen=True)
class Segment:
    """A run of answers from one node without a gap longer than the timeline's threshold."""

    node: str
    start_s: float
    end_s: float
    answers: int


@dataclass(frozen=True)
class Handover:
    """The answering node changed: the last answer from `old`, then the first from `new`."""

    at_s: float
    old: str
    new: str
    gap_s: float


@dataclass(frozen=True)
class SplitBrain:
    """Two nodes answering one target interleaved within 50 ms (X, Y, X), or one request
    answered by two nodes: both hold the address and the client's neighbour cache flaps."""

    start_s: float
    end_s: float
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class TargetReport:
    """What the client saw of one target."""

    target: str
    sent: int
    answers: int
    lost: int
    duplicates: int
    max_gap_s: float
    max_gap_at_s: float  # when the longest gap began (seconds since the probe started)
    timeline: tuple[Segment, ...]
    handovers: tuple[Handover, ...]
    split_brain: tuple[SplitBrain, ...]

    @property
    def nodes(self) -> set[str]:
        """Every node that answered."""
        return {s.node for s in self.timeline}

    @property
    def last_node(self) -> str | None:
        """The node that answered last, if any."""
        return self.timeline[-1].node if self.timeline else None

    def timeline_text(self) -> str:
        """`A 0.00-2.31 | C 5.90-9.00`: who answered when (seconds since the probe started)."""
        if not self.timeline:
            return "(no answer)"
        return " | ".join(f"{s.node} {s.start_s:.2f}-{s.end_s:.2f}" for s in self.timeline)


@dataclass(frozen=True)
class ProbeReport:
    """Per target results of one probe run; `marks` are `Probe.mark()` labels with times."""

    duration_s: float
    interval_s: float
    finished: bool
    targets: dict[str, TargetReport]
    marks: tuple[tuple[str, float], ...]

    def __getitem__(self, target: str) -> TargetReport:
        return self.targets[_canonical(target)]

    def format(self) -> str:
        """A short human-readable table."""
        lines = [
            f"probe: {self.duration_s:.2f} s, one request per target every "
            f"{self.interval_s * 1000:g} ms",
            f"{'target':<28} {'answers':>7} {'lost':>5} {'max gap':>8}  split  timeline",
        ]
        for t in self.targets.values():
            lines.append(
                f"{t.target:<28} {t.answers:>7} {t.lost:>5} {t.max_gap_s:>7.3f}s  "
                f"{len(t.split_brain):>5}  {t.timeline_text()}"
            )
        if self.marks:
            lines.append("marks: " + ", ".join(f"{label} @{at:.2f}s" for label, at in self.marks))
        return "\n".join(lines)


def analyse(
    lines: Iterable[str], marks: Iterable[tuple[str, int]] = (), *, timeline_gap_s: float = 0.1
) -> ProbeReport:
    """Turn a prober record into a report. Works on a partial record (live probe) too: then
    requests sent in the last 100 ms are not counted as lost yet."""
    start = interval = 0
    targets: list[str] = []
    answers: dict[str, list[tuple[int, int, str]]] = {}
    progress: list[tuple[int, int]] = []
    end: tuple[int, int] | None = None
    for line in lines:
        f = line.split()
        if not f or (f[0] != "B" and not start):
            continue
        try:
            if f[0] == "B":
                start, interval, targets = int(f[1]), int(f[2]), f[3:]
                answers = {t: [] for t in targets}
            elif f[0] == "A" and len(f) == 5 and f[4] in answers:
                answers[f[4]].append((int(f[1]), int(f[2]), f[3]))
            elif f[0] == "S" and len(f) == 3:
                progress.append((int(f[1]), int(f[2])))
            elif f[0] == "E" and len(f) == 3:
                end = (int(f[1]), int(f[2]))
        except ValueError:
            continue  # a line cut short by a live read
    if not start:
        raise ValueError("the probe record has no header: the prober did not start")
    if end is not None:
        end_ns, sent = end
    elif progress:
        end_ns = progress[-1][0]
        settled = [p for p in progress if p[0] <= end_ns - _IN_FLIGHT_NS]
        sent = settled[-1][1] if settled else 0
    else:
        end_ns, sent = start, 0

    def rel(t: int) -> float:
        return (t - start) / 1e9

    reports: dict[str, TargetReport] = {}
    for target in targets:
        got = sorted(answers[target])
        seen: dict[int, str] = {}
        duplicates = 0
        double_answered: list[tuple[int, tuple[str, str]]] = []
        for t, seq, node in got:
            if seq in seen:
                duplicates += 1
                if seen[seq] != node:
                    double_answered.append((t, (seen[seq], node)))
            else:
                seen[seq] = node
        answered = sum(1 for s in seen if s < sent)
        times = [start] + [t for t, _, _ in got] + [max(end_ns, got[-1][0] if got else start)]
        gap, gap_at = 0, start
        for a, b in itertools.pairwise(times):
            if b - a > gap:
                gap, gap_at = b - a, a

        timeline: list[Segment] = []
        handovers: list[Handover] = []
        threshold = int(timeline_gap_s * 1e9)
        seg_node, seg_start, seg_end, seg_count = "", 0, 0, 0
        for t, _, node in got:
            if seg_count and node == seg_node and t - seg_end <= threshold:
                seg_end, seg_count = t, seg_count + 1
                continue
            if seg_count:
                timeline.append(Segment(seg_node, rel(seg_start), rel(seg_end), seg_count))
                if node != seg_node:
                    handovers.append(Handover(rel(t), seg_node, node, (t - seg_end) / 1e9))
            seg_node, seg_start, seg_end, seg_count = node, t, t, 1
        if seg_count:
            timeline.append(Segment(seg_node, rel(seg_start), rel(seg_end), seg_count))

        reports[target] = TargetReport(
            target=target,
            sent=sent,
            answers=len(got),
            lost=max(0, sent - answered),
            duplicates=duplicates,
            max_gap_s=gap / 1e9,
            max_gap_at_s=rel(gap_at),
            timeline=tuple(timeline),
            handovers=tuple(handovers),
            split_brain=_split_brain(got, double_answered, rel),
        )
    return ProbeReport(
        duration_s=rel(end_ns),
        interval_s=interval / 1e9,
        finished=end is not None,
        targets=reports,
        marks=tuple((label, rel(t)) for label, t in marks),
    )


def _split_brain(
    got: list[tuple[int, int, str]],
    double_answered: list[tuple[int, tuple[str, str]]],
    rel: Callable[[int], float],
) -> tuple[SplitBrain, ...]:
    """Interleaved answers from two nodes within the window, merged into events.

    A single clean handover (A..A C..C) is not a split brain even when the two answers are
    5 ms apart: that is the ideal failover. A node answering again after another one took over
    within the window (A C A) means both hold the address and the client flaps between them.
    """
    window = int(SPLIT_BRAIN_WINDOW_S * 1e9)
    hits: list[tuple[int, int, set[str]]] = [(t, t, set(pair)) for t, pair in double_answered]
    switches = [
        (got[i][0], got[i - 1][2], got[i][2])
        for i in range(1, len(got))
        if got[i][2] != got[i - 1][2]
    ]
    for (t1, a, b), (t2, _c, d) in itertools.pairwise(switches):
        if t2 - t1 <= window:
            hits.append((t1, t2, {a, b, d}))
    hits.sort(key=lambda h: h[0])
    events: list[tuple[int, int, set[str]]] = []
    for lo, hi, nodes in hits:
        if events and lo - events[-1][1] <= window:
            plo, phi, pnodes = events[-1]
            events[-1] = (plo, max(phi, hi), pnodes | nodes)
        else:
            events.append((lo, hi, set(nodes)))
    return tuple(SplitBrain(rel(lo), rel(hi), tuple(sorted(n))) for lo, hi, n in events)


def main(argv: list[str] | None = None) -> int:
    """Command line of the prober (started by `Lab.probe`, not by users)."""
    parser = argparse.ArgumentParser(prog="python -m nslab.probe")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=0.005)
    parser.add_argument("--port", type=int, default=7777)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args(argv)
    run_prober(args.targets, args.out, int(args.interval * 1e9), args.port, args.ready_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
