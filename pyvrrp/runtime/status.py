"""The status snapshot as typed records: what ``pyvrrp status --json`` prints.

Each record holds JSON-ready values in the order the JSON shows them, and is built by its own
``of`` classmethod next to its fields: adding a field to the status is a change in this
module only (the field, and the line that fills it). :meth:`NodeStatus.to_json` is the dict
the control socket sends and metrics render.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from pyvrrp._version import __version__
from pyvrrp.core.router import PeerStatistics
from pyvrrp.core.tracking import Contribution
from pyvrrp.core.tracking import ScriptStatus as ScriptState
from pyvrrp.runtime.history import HistoryEntry
from pyvrrp.runtime.instance import Instance
from pyvrrp.runtime.notify import NotifyStatistics
from pyvrrp.runtime.trackers import ScriptStatistics


@attrs.frozen
class MasterStatus:
    """The master an instance hears (its address and advertised priority)."""

    address: str
    priority: int | None


@attrs.frozen
class CountersStatus:
    """An instance's counters; ``drops`` by drop reason (its value), sorted."""

    adverts_sent: int
    adverts_received: int
    priority_zero_sent: int
    priority_zero_received: int
    became_master: int
    drops: dict[str, int]
    queue_overflows: int


@attrs.frozen
class PeerStatus:
    """One peer an instance accepted advertisements from: the VRRP versions it was heard
    speaking (sorted) and, per version (a string key, as JSON has them), how many were
    accepted and when the last one was (wall-clock time, and seconds ago)."""

    versions: list[int]
    adverts: dict[str, int]
    last_seen: dict[str, float]
    last_seen_ago: dict[str, float]

    @classmethod
    def of(cls, peer: PeerStatistics, now: float, wall: float) -> PeerStatus:
        """``peer`` at trio time ``now`` and wall-clock time ``wall``; its times are the
        router's microseconds on the trio clock."""
        ago = {v: now - t / 1_000_000 for v, t in sorted(peer.last_seen.items())}
        return cls(
            versions=sorted(peer.versions),
            adverts={str(v): n for v, n in sorted(peer.adverts.items())},
            last_seen={str(v): round(wall - a, 3) for v, a in ago.items()},
            last_seen_ago={str(v): round(a, 3) for v, a in ago.items()},
        )


@attrs.frozen
class InstanceStatus:
    """One instance: its state, priorities, configuration highlights and counters."""

    state: str
    in_state_for: float
    last_transition: float  # wall-clock time (seconds since the epoch)
    interface: str
    vrid: int
    family: str  # "ipv4" / "ipv6"
    base_priority: int
    effective_priority: int
    maintenance: bool
    faults: list[str]
    trackers: list[Contribution]
    master: MasterStatus | None
    advert_interval: float
    master_advert_interval: float
    holding_addresses: bool
    addresses: list[str]
    excluded_addresses: list[str]
    unicast_peers: list[str]
    vrrp_version: str  # node.toml's version: "3", "2" or "2+3"
    peers: dict[str, PeerStatus]
    counters: CountersStatus
    # Its last transitions, oldest first (runtime.history's HistoryEntry.to_json()).
    history: list[dict[str, Any]] = attrs.field(factory=list)

    @classmethod
    def of(
        cls,
        instance: Instance,
        now: float,
        wall: float,
        history: Iterable[HistoryEntry] = (),
    ) -> InstanceStatus:
        """``instance`` at trio time ``now`` and wall-clock time ``wall``, with its kept
        transitions ``history``."""
        stats = instance.statistics()
        config = instance.config
        in_state = now - stats.state_since / 1_000_000
        master = None
        if stats.master_address is not None:
            master = MasterStatus(str(stats.master_address), stats.master_priority)
        health = instance.health
        return cls(
            state=stats.state.value,
            in_state_for=round(in_state, 3),
            last_transition=round(wall - in_state, 3),
            interface=config.interface,
            vrid=config.vrid,
            family=f"ipv{config.family.value}",
            base_priority=stats.base_priority,
            effective_priority=stats.effective_priority,
            maintenance=stats.maintenance,
            faults=sorted(stats.faults),
            trackers=list(health.contributions) if health else [],
            master=master,
            advert_interval=config.advert_interval_cs / 100,
            master_advert_interval=stats.master_adver_interval / 1_000_000,
            holding_addresses=stats.holding_addresses,
            addresses=[str(a.address) for a in config.addresses],
            excluded_addresses=[str(a.address) for a in config.excluded_addresses],
            unicast_peers=[str(p) for p in config.unicast_peers],
            vrrp_version=str(config.version.value),
            peers={
                str(source): PeerStatus.of(peer, now, wall)
                for source, peer in sorted(stats.peers.items())
            },
            counters=CountersStatus(
                adverts_sent=stats.adverts_sent,
                adverts_received=stats.adverts_received,
                priority_zero_sent=stats.priority_zero_sent,
                priority_zero_received=stats.priority_zero_received,
                became_master=stats.became_master,
                drops={
                    r.value: n for r, n in sorted(stats.drops.items(), key=lambda i: i[0].value)
                },
                queue_overflows=instance.queue_overflows,
            ),
            history=[entry.to_json() for entry in history],
        )


@attrs.frozen
class ScriptStatus:
    """One health script: its state, its position towards rise/fall, its last run."""

    state: ScriptState
    good: bool
    tracked: bool
    position: str
    consecutive_successes: int
    consecutive_failures: int
    rise: int
    fall: int
    last_result: str | None
    last_exit_status: int | None
    last_duration: float | None
    last_run: float | None  # wall-clock time
    last_run_ago: float | None
    runs: int
    failures: int
    timeouts: int
    skipped: int

    @classmethod
    def of(cls, s: ScriptStatistics, now: float, wall: float) -> ScriptStatus:
        """``s`` at trio time ``now`` and wall-clock time ``wall``."""
        outcome = s.last_outcome
        return cls(
            state=s.state,
            good=s.state != "bad",
            tracked=s.tracked,
            position=s.position,
            consecutive_successes=s.consecutive_successes,
            consecutive_failures=s.consecutive_failures,
            rise=s.rise,
            fall=s.fall,
            last_result=outcome.describe() if outcome is not None else None,
            last_exit_status=s.last_exit_status,
            last_duration=None if s.last_duration is None else round(s.last_duration, 6),
            last_run=None if s.last_run is None else round(wall - (now - s.last_run), 3),
            last_run_ago=None if s.last_run is None else round(now - s.last_run, 3),
            runs=s.runs,
            failures=s.failures,
            timeouts=s.timeouts,
            skipped=s.skipped,
        )


@attrs.frozen
class NodeStatus:
    """The whole node; :meth:`to_json` is what ``pyvrrp status --json`` prints."""

    router_id: str
    pid: int
    version: str
    uptime: float
    instances: dict[str, InstanceStatus]
    scripts: dict[str, ScriptStatus]
    notifications: dict[str, NotifyStatistics]
    interface_drops: dict[str, dict[str, int]]
    # More top-level keys, JSON-able already, from outside the node (the daemon's "email").
    sections: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def of(
        cls,
        *,
        router_id: str | None,
        uptime: float,
        instances: Mapping[str, InstanceStatus],
        scripts: Iterable[tuple[str, ScriptStatus]],
        notifications: Mapping[str, NotifyStatistics],
        interface_drops: dict[str, dict[str, int]],
        sections: Mapping[str, Any] | None = None,
    ) -> NodeStatus:
        """This process's node (its pid, the package version); ``router_id`` None: the host
        name."""
        return cls(
            router_id=router_id or os.uname().nodename,
            pid=os.getpid(),
            version=__version__,
            uptime=uptime,
            instances=dict(instances),
            scripts=dict(scripts),
            notifications=dict(notifications),
            interface_drops=interface_drops,
            sections=dict(sections or {}),
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON-able dict (records become objects, tuples lists)."""
        result = attrs.asdict(self, filter=lambda a, _: a.name != "sections")
        return {**result, **self.sections}
