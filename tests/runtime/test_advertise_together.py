"""Masters of one Advertisement_Interval advertise together (pyvrrp/runtime/schedule.py,
docs/design.md "Masters advertise together"): when the first of them is due, the others
advertise early with it once and keep its step, so a node with many masters wakes once per
interval to send, and its backups receive the advertisements together."""

from __future__ import annotations

import itertools
import statistics

import trio
import trio.testing

from pyvrrp.core.actions import State

from .cluster import Cluster, config, instance


async def test_masters_of_one_interval_fall_into_step_after_their_first_advertisement(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    # Alone on the LAN each takes over at its own Master_Down_Interval (RFC 9568 §6.1):
    # vip59 (priority 200) at 3.21875 s, vip58 (180) at 3.296875 s and vip57 (150) at
    # 3.4140625 s, less than half an interval later: brought forward to vip59's step; vip60
    # (2 s interval) at 7.21875 s: another interval, its own step.
    await cluster.start(
        "A",
        config(
            {
                "vip57": instance(57, 150, "1.2.3.57/29"),
                "vip58": instance(58, 180, "1.2.3.58/29"),
                "vip59": instance(59, 200, "1.2.3.59/29"),
                "vip60": instance(60, 100, "1.2.3.60/29", advert_interval=2),
            }
        ),
    )
    await cluster.sleep_until(12)
    assert cluster.masters("vip58") == cluster.masters("vip59") == ["A"]
    times = {vrid: [t for t, _ in cluster.adverts("A", vrid)] for vrid in (57, 58, 59, 60)}
    # Each one's first advertisement goes out as it takes over; the second with vip59's.
    assert times[59][:3] == [3.21875, 4.21875, 5.21875]
    assert times[58][:3] == [3.296875, 4.21875, 5.21875]
    assert times[57][:3] == [3.414062, 4.21875, 5.21875]
    assert times[57][1:] == times[58][1:] == times[59][1:]
    assert times[60] == [7.21875, 9.21875, 11.21875]
    # Nothing is sent late or twice: every later interval is exactly the configured one.
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times[58][1:])]
    assert set(gaps) == {1.0}


async def test_the_step_due_first_within_half_an_interval_brings_the_other_along(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    # vip59 (200) takes over at 3.21875 s, vip58 (50) at 3.8046875 s: vip58 is 0.59 s after
    # vip59's step, so vip59 is 0.41 s after vip58's: when vip58 is next due (its takeover is
    # not a step), vip59 moves to vip58's step (a backup taking over one router keeps the
    # offset it took over with).
    await cluster.start(
        "A",
        config(
            {"vip58": instance(58, 50, "1.2.3.58/29"), "vip59": instance(59, 200, "1.2.3.59/29")}
        ),
    )
    await cluster.sleep_until(8)
    times = {vrid: [t for t, _ in cluster.adverts("A", vrid)] for vrid in (58, 59)}
    assert times[58][:3] == [3.804687, 4.804687, 5.804687]
    assert times[59][:4] == [3.21875, 4.21875, 4.804687, 5.804687]


async def test_a_backup_in_step_with_nothing_is_never_woken_early(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    # B is master of vip58, backup of vip59 (A's): B's backup never advertises, early or not,
    # and neither master's interval is disturbed by the other node.
    await cluster.start(
        "A",
        config(
            {"vip58": instance(58, 100, "1.2.3.58/29"), "vip59": instance(59, 200, "1.2.3.59/29")}
        ),
    )
    await cluster.start(
        "B",
        config(
            {"vip58": instance(58, 200, "1.2.3.58/29"), "vip59": instance(59, 100, "1.2.3.59/29")}
        ),
    )
    await cluster.sleep_until(20)
    assert cluster.masters("vip58") == ["B"] and cluster.masters("vip59") == ["A"]
    assert cluster.hosts["B"].state("vip59") is State.BACKUP
    assert [t for t, _ in cluster.adverts("B", 59)] == []
    assert [t for t, _ in cluster.adverts("A", 58)] == []
    for host, vrid in (("A", 59), ("B", 58)):
        times = [t for t, _ in cluster.adverts(host, vrid)]
        gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
        assert len(gaps) > 10 and statistics.median(gaps) == 1.0 and max(gaps) == 1.0
