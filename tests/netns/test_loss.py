"""30 % advertisement loss for 60 s on the seed cluster (pyvrrp on every node, interval 1 s).

What the lab can honestly assert, and why not "no spurious failover"
---------------------------------------------------------------------
The loss is applied to VRRP packets only (IP protocol 112, an nftables rule on every node's
input hook), independently per packet and per receiver, in both directions: a lossy path for
the adverts, while ARP/ND and the client's traffic pass untouched. So the test measures how
the protocol tolerates lost adverts, not how a lossy data path hurts clients.

A backup takes over when it hears nothing for Master_Down_Interval = 3 intervals + Skew_Time
(RFC 9568 §6.1), that is when the 3 adverts after one it heard are all lost: 0.3^3 = 2.7 %
of the ~42 adverts per minute it does hear. That is ~1.1 spurious takeovers per minute for
each of the 6 (instance, backup) pairs, ~7 per minute in the cluster (measured: 2 to 8).
VRRP does not promise "no spurious failover" under independent loss; no implementation can
keep it. What must hold:

1. **The master stays master.** No advert ever carries a priority above the master's, so it
   never yields (RFC 9568 §6.4.3): it holds its VIP at every moment and its log never shows
   it leaving MASTER. Deterministic.
2. **Spurious takeovers are rare: a backup tolerates two lost adverts in a row.** At most 20
   takeovers by an expired Master_Down_Timer in the minute (expected ~7; a down timer of two
   intervals would give ~23, one interval ~76). Poisson(7) exceeds 20 with probability 1e-5.
3. **A spurious master yields quickly.** It yields to the first advert of the real master it
   hears, and the real master re-asserts at once each time it hears the intruder: a second
   holder of a VIP lasts < 5 s (measured <= 1.1 s; a 5 s run of losses of both kinds of
   advert has a probability far below 1e-4).
4. **No split brain seen by the client:** never two nodes answering one VIP interleaved for
   longer than the few milliseconds between two announcement bursts (a probe answered by
   the intruder between the master's and the intruder's gratuitous ARPs is possible; a
   sustained flap is not).
5. **Recovery when the loss ends:** the seed table within one advert interval (every
   intruder hears its real master's next advert), and the client on every master soon after.
6. **Outages the client sees end within one neighbour unreachability detection (NUD) cycle
   of the last intrusion.** An intruder's gratuitous ARP / unsolicited NA moves the client's
   entry to its MAC (STALE); it yields at the real master's next advertisement and drops the
   VIP, and the client's packets go nowhere until the real master announces again, or until
   Linux NUD gives up on the intruder's MAC: the next packet starts a 5 s DELAY, 3 unicast
   probes 1 s apart go unanswered, then a broadcast query finds the real master: ~8.2 s after
   the intrusion (measured), 10 s with slack (`NUD_RECOVERY_S`).

   The real master announces again whenever it hears one of the intruder's advertisements
   (its takeover advertisement, a periodic one, or its parting one when it yields). Its
   answer to the *takeover* advertisement used to reach the client a millisecond before the
   intruder's own announcements (a new master advertises, then installs, then announces),
   so only the parting advertisement repaired the client, and it is lost 30 % of the time:
   the core now announces once more `REASSERT_REANNOUNCE` (0.3 s) after any lower priority
   it hears. What remains is the master hearing none of the intruder's advertisements
   (takeover and parting both lost: ~0.3^2 of the takeovers): then the client waits for NUD.

   A second such intrusion of the same VIP inside that cycle moves the client to the new
   intruder and restarts the cycle (its STALE entry gets a new MAC, so a new DELAY): the
   outage lasts up to ~8.2 s after the *last* intrusion, not after the first (seen at 45 %
   loss before the fix: no answer for 13.5 s, ending 7.8 s after the second of two
   intrusions 6.7 s apart). That is how a fresh-clone CI run saw
   12.0 s on 2a03:...::59 while 1.2.3.59, same instance, never exceeded 8.2 s: the two
   families' entries run their own NUD, and the real master's own NUD probes of the client
   (a unicast ARP request or NS sent from the VIP, carrying its MAC) repair one family's
   entry and not the other's, by chance (seen: IPv4 repaired 4.1 s before IPv6). So the
   bound is checked per outage against the mechanism: each outage must end within
   `NUD_RECOVERY_S` of its start or of the last takeover of that VIP during it (from the
   daemons' logs), whichever is later.

   Not covered, and rare enough not to be seen in a minute: an intruder that the client is
   probing (unicast, the last 3 s of a cycle on its MAC) when it takes over *again*, unheard
   again, answers the probe, so the client's entry turns REACHABLE at its MAC and stays
   there for the kernel's reachable time (15-45 s) after it yields (seen once at 45 % loss
   before the fix; estimated well under 1 % of runs at 30 %). A master that announced again
   on seeing another host's gratuitous ARP / unsolicited NA for its own address would repair
   that and every unheard intrusion; it is not done (a packet socket per link, and two
   masters of a real split brain would answer each other's announcements).

Runtime: ~70 s (the minute of loss, the lab around it), and ~16 s for the second test.
"""

from __future__ import annotations

import datetime
import math
import re
import time

from nslab import seed_cluster
from nslab.probe import TargetReport

from tests.netns.labtools import SEED_TABLE, V4, V6, LogMark, lab_context

LOSS_PERCENT = 30
LOSS_SECONDS = 60.0
# A node's share of dropped adverts is off by more than this many standard deviations in
# fewer than 1 in 100,000 nodes; a loss not applied (0 %) is 5.1 of them at 60 adverts, 7.2 at
# 120.
LOSS_SIGMAS = 4.5
SAMPLE_EVERY = 0.2
SLACK = 1.0  # scheduling slack on a busy 2-core machine
MAX_TAKEOVERS = 20
MAX_EPISODE_S = 5.0
MAX_SPLIT_BRAIN_S = 0.1
# Linux neighbour unreachability detection (delay_first_probe_time 5 s, ucast_solicit 3 x
# retrans_time 1 s) then a broadcast query: ~8.2 s after the announcement that moved the
# client's entry, plus slack.
NUD_RECOVERY_S = 10.0
MASTER_OF = {"1.2.3.58": "A", "1.2.3.59": "B", "1.2.3.60": "C"}
# An outage: a stretch without any answer longer than the probe's own jitter.
OUTAGE_S = 0.1
# garp_delay's default: a new master repeats its announcements 5 s later.
GARP_DELAY = 5.0


def _log_seconds(line: str) -> float:
    """Seconds since local midnight of a pyvrrp log line (`15:13:37.012 INFO ...`)."""
    stamp = datetime.datetime.strptime(line.split()[0], "%H:%M:%S.%f")
    return stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6


def takeovers_on_probe_clock(
    log_text: str, vrid: str, wall_at: float, probe_at: float
) -> list[float]:
    """When the log shows `vip<vrid>` becoming master, in seconds of the probe's clock, given
    one instant read on both clocks (`wall_at` from time.time(), `probe_at` on the probe's)."""
    local = datetime.datetime.fromtimestamp(wall_at)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    times = []
    for line in log_text.splitlines():
        if f"vip{vrid}: BACKUP -> MASTER" in line:
            wall = midnight + _log_seconds(line)
            if wall - wall_at > 43_200:  # the line is from before midnight
                wall -= 86_400
            elif wall_at - wall > 43_200:  # the line is from after midnight
                wall += 86_400
            times.append(probe_at + wall - wall_at)
    return times


def outages(target: TargetReport, duration_s: float) -> list[tuple[float, float]]:
    """(start, end) of each stretch without an answer longer than `OUTAGE_S`, in seconds of
    the probe's clock (the probe's start and end count as answers, as for `max_gap_s`)."""
    edges = [0.0] + [t for s in target.timeline for t in (s.start_s, s.end_s)] + [duration_s]
    return [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a > OUTAGE_S]


def test_30_percent_advert_loss_for_a_minute_never_dethrones_a_master() -> None:
    with lab_context(seed_cluster(), "pyvrrp") as lab:
        mark = LogMark(lab)
        samples: list[tuple[float, dict[str, list[str]]]] = []
        with lab.probe() as probe:
            time.sleep(0.3)
            probe.mark("loss on")
            wall_at = time.time()  # the same instant on the logs' clock
            lab.set_vrrp_loss(LOSS_PERCENT)
            start = time.monotonic()
            while time.monotonic() - start < LOSS_SECONDS:
                samples.append((time.monotonic() - start, lab.holders()))
                time.sleep(SAMPLE_EVERY)
            counters = {n: lab.vrrp_loss_counters(n) for n in lab.nodes}
            lab.clear_loss()
            probe.mark("loss off")
            ended = time.monotonic()
            lab.wait_holders(SEED_TABLE, timeout=1.0 + SLACK)
            recovered = time.monotonic() - ended
            for address, nodes in SEED_TABLE.items():
                probe.wait_answered_by(address, nodes[0], timeout=NUD_RECOVERY_S)
            time.sleep(0.5)
        report = probe.report()
        summary = report.format()
        print(summary)  # the gaps of a passing run too (pytest -rP shows them)

        # The loss was real: about 30 % of the adverts each node received were dropped. Each
        # drop is an independent draw, so the share is binomial: within LOSS_SIGMAS standard
        # deviations (a fixed 0.2-0.4 failed one run in 16 at ~120 adverts per node).
        p = LOSS_PERCENT / 100
        for node, (arrived, dropped) in counters.items():
            assert arrived > 60, (node, counters)
            sigma = math.sqrt(p * (1 - p) / arrived)
            assert abs(dropped / arrived - p) < LOSS_SIGMAS * sigma, (node, counters)

        # 1. The master stays master.
        for at, holders in samples:
            for address, nodes in SEED_TABLE.items():
                assert nodes[0] in holders[address], f"at {at:.1f} s: {holders}"
        for address, node in MASTER_OF.items():
            vrid = address.rsplit(".", 1)[1]
            assert f"vip{vrid}: MASTER ->" not in mark.new(node), mark.new(node)

        # 2. Spurious takeovers: a backup tolerates two lost adverts in a row.
        takeovers = [
            line
            for node in lab.nodes
            for line in mark.new(node).splitlines()
            if re.search(r"BACKUP -> MASTER \(no advertisement for Master_Down_Interval", line)
        ]
        assert len(takeovers) <= MAX_TAKEOVERS, "\n".join(takeovers)

        # 3. A spurious master yields quickly.
        episodes: list[tuple[str, float, float]] = []
        since: dict[str, float] = {}
        for at, holders in samples:
            for address, nodes in holders.items():
                if len(nodes) > 1:
                    since.setdefault(address, at)
                elif address in since:
                    episodes.append((address, since[address], at - since.pop(address)))
        episodes += [(a, t, LOSS_SECONDS - t) for a, t in since.items()]
        assert all(d < MAX_EPISODE_S for _, _, d in episodes), episodes

        # 4. No split brain seen by the client (beyond an announcement race).
        for target in report.targets.values():
            for event in target.split_brain:
                assert event.end_s - event.start_s <= MAX_SPLIT_BRAIN_S, summary

        # 5. Recovery when the loss ends.
        assert recovered < 1.0 + SLACK

        # 6. Client-visible outages end within one NUD cycle of their start or of the last
        # intrusion during them (a second unrepaired intrusion restarts the cycle).
        probe_at = dict(report.marks)["loss on"]
        for address, target in report.targets.items():
            vrid = address.rsplit(".", 1)[-1].rsplit(":", 1)[-1]
            intrusions = sorted(
                t
                for node in lab.nodes
                for t in takeovers_on_probe_clock(mark.new(node), vrid, wall_at, probe_at)
            )
            for start, end in outages(target, report.duration_s):
                # An intrusion that ends the outage (the client follows the new intruder,
                # which answers) restarts nothing.
                during = [t for t in intrusions if start <= t < end - OUTAGE_S]
                restart = max([start, *during])
                assert end - restart < NUD_RECOVERY_S, (
                    f"{address}: no answer {start:.2f}-{end:.2f} s, last intrusion of vip{vrid}"
                    f" at {restart:.2f} s (intrusions: {[round(t, 2) for t in intrusions]})\n"
                    + summary
                )


def test_a_master_that_heard_an_intruder_announces_after_its_announcements() -> None:
    """B, master of vip59, hears only the takeover advertisement of A, which took over because
    it stopped hearing VRRP; then B stops hearing VRRP too, so nothing A sends later makes B
    announce again. A advertises before it installs and announces the address, so B's
    immediate answer can reach the client before A's gratuitous ARP / unsolicited NA; B's
    second announcement (REASSERT_REANNOUNCE, 0.3 s after the advertisement it heard) must
    bring the client back while both hold the address. Without it the client would stay on
    A (and, once A yields, wait for its own neighbour unreachability detection)."""
    with lab_context(seed_cluster(), "pyvrrp") as lab:
        # Every master's second burst (garp_delay, 5 s after it became master) is over: B's
        # would otherwise come ~0.3 s after A's takeover (the lab's start-up timing) and
        # bring the client back by luck.
        time.sleep(GARP_DELAY + SLACK)
        mark = LogMark(lab)
        with lab.probe() as probe:
            time.sleep(0.3)
            lab.set_vrrp_loss(100, node="A")
            # Master_Down_Interval of A (priority 75 for vip59): 3.7 s.
            lab.wait_for(
                lambda: "A" in lab.holders()[V4["B"]],
                timeout=3.7 + 1.0 + SLACK,
                interval=0.02,
                what="A to take vip59 over",
            )
            # Before A's next advertisement (1 s after its takeover one).
            lab.set_vrrp_loss(100, node="B")
            seen = time.monotonic()
            for address in (V4["B"], V6["B"]):
                # A's second burst (garp_delay, 5 s) would take the client back to A.
                probe.wait_answered_by(address, "B", timeout=seen + 1.0 + SLACK - time.monotonic())
            assert lab.holders()[V4["B"]] == ["A", "B"]  # still both: B's announcement did it
            lab.clear_loss()
            lab.wait_holders(SEED_TABLE, timeout=1.0 + SLACK)
        assert "vip59: BACKUP -> MASTER" in mark.new("A")
        assert "vip59: MASTER ->" not in mark.new("B")
