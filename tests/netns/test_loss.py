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
6. **Outages the client sees are bounded by its own neighbour unreachability detection**
   (Linux: the intruder's gratuitous ARP leaves the entry STALE, the next request starts a
   5 s DELAY, then 3 unicast probes 1 s apart go unanswered, then a broadcast query finds the
   real master: ~8 s, as long as the intruder yielded within the DELAY, which 3 ensures).
   They happen when an intruder's gratuitous ARP moved the client's cache and the intruder
   then yielded without the real master re-announcing (the split brain bug of
   test_seed_cluster; measured here at ~8 s per occurrence, for keepalived 2.2.7 as well).
   Bound: 10 s.

Runtime: ~70 s (the minute of loss, the lab around it).
"""

from __future__ import annotations

import re
import time

from nslab import seed_cluster

from tests.netns.labtools import SEED_TABLE, LogMark, lab_context

LOSS_PERCENT = 30
LOSS_SECONDS = 60.0
SAMPLE_EVERY = 0.2
SLACK = 1.0  # scheduling slack on a busy 2-core machine
MAX_TAKEOVERS = 20
MAX_EPISODE_S = 5.0
MAX_SPLIT_BRAIN_S = 0.1
# Linux neighbour unreachability detection (delay_first_probe_time 5 s, ucast_solicit 3 x
# retrans_time 1 s) then a broadcast query: ~8 s, plus slack.
NUD_RECOVERY_S = 10.0
MASTER_OF = {"1.2.3.58": "A", "1.2.3.59": "B", "1.2.3.60": "C"}


def test_30_percent_advert_loss_for_a_minute_never_dethrones_a_master() -> None:
    with lab_context(seed_cluster(), "pyvrrp") as lab:
        mark = LogMark(lab)
        samples: list[tuple[float, dict[str, list[str]]]] = []
        with lab.probe() as probe:
            time.sleep(0.3)
            probe.mark("loss on")
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

        # The loss was real: about 30 % of the adverts each node received were dropped.
        for node, (arrived, dropped) in counters.items():
            assert arrived > 60, (node, counters)
            assert 0.2 < dropped / arrived < 0.4, (node, counters)

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

        # 6. Client-visible outages are bounded by the client's neighbour unreachability
        # detection.
        for target in report.targets.values():
            assert target.max_gap_s < NUD_RECOVERY_S, summary
