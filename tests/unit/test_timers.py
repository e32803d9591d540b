"""RFC 9568 §6.1 timer arithmetic in exact integer microseconds.

Expected values are worked out by hand in the comments, not with the functions under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyvrrp.core import timers

ONE_SECOND = 1_000_000


def test_centiseconds_converts_wire_intervals_to_microseconds() -> None:
    assert timers.centiseconds(1) == 10_000
    assert timers.centiseconds(100) == ONE_SECOND
    assert timers.centiseconds(4095) == 40_950_000
    assert timers.US_PER_SECOND == 100 * timers.US_PER_CENTISECOND


def test_protocol_example_priority_100_one_second() -> None:
    # docs/protocol.md: (256 - 100) * 1 s / 256 = 0.609375 s; 3 s + that = 3.609375 s.
    assert timers.skew_time(100, ONE_SECOND) == 609_375
    assert timers.master_down_interval(100, ONE_SECOND) == 3_609_375


@pytest.mark.parametrize(
    ("priority", "interval", "skew", "down"),
    [
        # 56 * 1e6 / 256 = 218750 exactly.
        (200, ONE_SECOND, 218_750, 3_218_750),
        # 255 * 1e6 / 256 = 996093.75 -> 996093 (floored).
        (1, ONE_SECOND, 996_093, 3_996_093),
        # 2 * 1e6 / 256 = 7812.5 -> 7812.
        (254, ONE_SECOND, 7_812, 3_007_812),
        # 1 * 1e6 / 256 = 3906.25 -> 3906: the owner has the smallest skew.
        (255, ONE_SECOND, 3_906, 3_003_906),
        # 1 cs: 156 * 10000 / 256 = 6093.75 -> 6093; 3 * 10000 + 6093.
        (100, 10_000, 6_093, 36_093),
        # 1 cs, owner: 10000 / 256 = 39.0625 -> 39.
        (255, 10_000, 39, 30_039),
        # 1 cs, priority 1: 255 * 10000 / 256 = 9960.9375 -> 9960.
        (1, 10_000, 9_960, 39_960),
        # 4095 cs: 156 * 40950000 / 256 = 24953906.25 -> 24953906; 3 * 40.95 s + that.
        (100, 40_950_000, 24_953_906, 147_803_906),
        # 4095 cs, priority 1: 255 * 40950000 / 256 = 40790039.0625 -> 40790039.
        (1, 40_950_000, 40_790_039, 163_640_039),
        # 50 cs: 156 * 500000 / 256 = 304687.5 -> 304687.
        (100, 500_000, 304_687, 1_804_687),
    ],
)
def test_skew_time_and_master_down_interval_are_exact_and_floored(
    priority: int, interval: int, skew: int, down: int
) -> None:
    assert timers.skew_time(priority, interval) == skew
    assert timers.master_down_interval(priority, interval) == down


def test_release_timeout_covers_the_slowest_backup_and_two_intervals() -> None:
    # Skew_Time(1, 1 s) = 996093 (floored) + 2 s.
    assert timers.release_timeout(ONE_SECOND) == 2_996_093
    # 1 cs: 9960 + 20000.
    assert timers.release_timeout(10_000) == 29_960
    # 4095 cs: 40790039 + 81900000.
    assert timers.release_timeout(40_950_000) == 122_690_039


intervals = st.integers(1, 4095).map(timers.centiseconds)


@given(priority=st.integers(1, 255), interval=intervals)
def test_skew_time_is_shorter_than_one_interval(priority: int, interval: int) -> None:
    # A backup hearing priority 0 takes over before the next advertisement would be due.
    skew = timers.skew_time(priority, interval)
    assert 0 < skew < interval
    assert 3 * interval < timers.master_down_interval(priority, interval) < 4 * interval


@given(low=st.integers(1, 254), interval=intervals)
def test_a_higher_priority_always_has_a_shorter_skew_from_one_centisecond_up(
    low: int, interval: int
) -> None:
    # Backups fire in priority order: one priority step is at least interval/256 = 39 us.
    assert timers.skew_time(low + 1, interval) < timers.skew_time(low, interval)


@given(priority=st.integers(1, 255), interval=intervals)
def test_release_timeout_outlasts_every_backups_skew(priority: int, interval: int) -> None:
    assert timers.release_timeout(interval) > timers.skew_time(priority, interval) + interval
