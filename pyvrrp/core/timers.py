"""VRRP timer arithmetic (RFC 9568 §6.1), exact in integer microseconds.

Intervals travel on the wire in centiseconds; the core keeps every time in integer
microseconds so that no float rounding can make two routers disagree about a deadline.
Divisions round down (the RFC's division is over centiseconds; flooring at a microsecond is
within the precision any implementation can keep).
"""

from __future__ import annotations

US_PER_CENTISECOND = 10_000
US_PER_SECOND = 1_000_000


def centiseconds(cs: int) -> int:
    """A wire interval in centiseconds as microseconds."""
    return cs * US_PER_CENTISECOND


def skew_time(priority: int, master_adver_interval: int) -> int:
    """Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256  (RFC 9568 §6.1)."""
    return ((256 - priority) * master_adver_interval) // 256


def master_down_interval(priority: int, master_adver_interval: int) -> int:
    """Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time  (RFC 9568 §6.1)."""
    return 3 * master_adver_interval + skew_time(priority, master_adver_interval)


def release_timeout(master_adver_interval: int) -> int:
    """How long a leaving master keeps its addresses at most (graceful handover).

    A backup of priority p takes over Skew_Time(p) after hearing our priority 0; the largest
    skew any backup can have is that of priority 1. Two more intervals cover its first
    advertisement reaching us.
    """
    return skew_time(1, master_adver_interval) + 2 * master_adver_interval


def skew_time_v2(priority: int) -> int:
    """Skew_Time = (256 - Priority) / 256 seconds  (RFC 3768 §6.1).

    VRRPv2's skew does not scale with the interval (keepalived computes it so too): equal to
    :func:`skew_time` at a 1 s interval, shorter at longer ones.
    """
    return ((256 - priority) * US_PER_SECOND) // 256


def master_down_interval_v2(priority: int, advertisement_interval: int) -> int:
    """Master_Down_Interval = 3 * Advertisement_Interval + Skew_Time  (RFC 3768 §6.1)."""
    return 3 * advertisement_interval + skew_time_v2(priority)
