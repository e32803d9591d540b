"""Properties of the state machine over random inputs (hypothesis).

Two levels: one router fed random events (structural invariants that must hold after every
event), and 2-5 routers on the simulated LAN put through random disturbances, which must
converge to the right single master once the network has been quiet long enough.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from pyvrrp.core import timers
from pyvrrp.core.actions import InstallVirtual, RemoveVirtual, SendAdvert, State, StateChanged
from pyvrrp.core.events import (
    AdvertReceived,
    Event,
    HealthChanged,
    MaintenanceChanged,
    Shutdown,
    Startup,
    Timeout,
)
from pyvrrp.core.packet import VRRP_VERSION_2 as V2
from pyvrrp.core.packet import Advertisement
from pyvrrp.core.params import V2_AND_V3, V2_ONLY, V3_ONLY
from pyvrrp.core.router import RouterParams, VirtualRouter
from pyvrrp.testing.sim import SimLan

VIP = IPv4Address("192.0.2.100")
LOCAL = IPv4Address("192.0.2.10")
PEERS = (IPv4Address("192.0.2.5"), IPv4Address("192.0.2.20"), LOCAL)
DELAY = 100

# ----------------------------------------------------------------- one router, any events


def adverts() -> st.SearchStrategy[Event]:
    return st.builds(
        AdvertReceived,
        source=st.sampled_from(PEERS),
        advert=st.builds(
            Advertisement,
            vrid=st.just(1),
            priority=st.sampled_from([0, 1, 50, 100, 150, 254, 255]),
            max_advert_interval=st.sampled_from([1, 50, 100, 300]),
            addresses=st.just((VIP,)),
            version=st.sampled_from([2, 3]),
        ),
    )


events: st.SearchStrategy[Event] = st.one_of(
    adverts(),
    st.builds(
        HealthChanged,
        priority=st.integers(1, 254),
        faults=st.sampled_from([frozenset(), frozenset({"eth0"})]),
    ),
    st.builds(MaintenanceChanged, on=st.booleans()),
    st.builds(Shutdown, immediate=st.booleans()),
    st.just(Timeout()),
)

# (event, microseconds to wait before it, None for no wait); a Timeout always comes at the
# router's deadline() instead.
steps = st.lists(
    st.tuples(events, st.none() | st.integers(0, 2_000_000)),
    max_size=60,
)


@settings(max_examples=400, deadline=None)
@given(
    priority=st.sampled_from([1, 100, 254, 255]),
    versions=st.sampled_from([V3_ONLY, V2_ONLY, V2_AND_V3]),
    interval_cs=st.sampled_from([1, 100, 4095]),
    preempt=st.booleans(),
    preempt_delay_us=st.sampled_from([0, 5_000_000]),
    garp_delay_us=st.sampled_from([0, 700_000]),
    garp_refresh_us=st.sampled_from([0, 1_300_000]),
    graceful=st.booleans(),
    script=steps,
)
def test_router_invariants_hold_after_every_event(
    priority: int,
    versions: frozenset[int],
    interval_cs: int,
    preempt: bool,
    preempt_delay_us: int,
    garp_delay_us: int,
    garp_refresh_us: int,
    graceful: bool,
    script: list[tuple[Event, int | None]],
) -> None:
    if V2 in versions:  # whole seconds, at most 40 s in 2+3
        interval_cs = {1: 100, 100: 100, 4095: 4000}[interval_cs]
    router = VirtualRouter(
        RouterParams(
            vrid=1,
            addresses=(VIP,),
            local_address=LOCAL,
            priority=priority,
            advert_interval_cs=interval_cs,
            preempt=preempt,
            preempt_delay_us=preempt_delay_us,
            garp_delay_us=garp_delay_us,
            garp_refresh_us=garp_refresh_us,
            graceful_handover=graceful,
            versions=versions,
        )
    )
    now = 0
    router.handle(Startup(), now)
    holding = router.holding_addresses
    for event, wait in script:
        deadline = router.deadline()
        if isinstance(event, Timeout):
            if deadline is None:
                continue
            now = max(now, deadline)  # the runtime's max(deadline, clock)
        elif wait is not None:
            now += wait
        actions = router.handle(event, now)
        after = router.deadline()
        if isinstance(event, Timeout):
            assert after is None or after > now, "busy loop"
        state = router.state
        # One timer in Backup and Master (RFC 9568 §6.4), none elsewhere but a release.
        if state in (State.BACKUP, State.MASTER):
            assert after is not None
        if state is State.MASTER:
            assert router.holding_addresses
        if state is State.BACKUP:
            assert not router.holding_addresses
        # Addresses kept by a graceful handover always have a release time.
        if router.holding_addresses and state is not State.MASTER:
            assert after is not None
            assert graceful
        # InstallVirtual / RemoveVirtual alternate and match holding_addresses.
        for action in actions:
            if isinstance(action, RemoveVirtual):
                assert holding
                holding = False
            elif isinstance(action, InstallVirtual):
                assert not holding
                holding = True
            elif isinstance(action, SendAdvert):
                assert action.advert.max_advert_interval == interval_cs
                # One datagram per destination and version, VRRPv2 first.
                sent = [d.message[0] >> 4 for d in action.datagrams]
                assert sent == sorted(versions)
            elif isinstance(action, StateChanged):
                assert action.new is not action.old
        assert holding == router.holding_addresses
        if router.stopped:
            assert after is None
            assert not router.holding_addresses


# ------------------------------------------------------------ several routers, disturbances

NAMES = "ABCDE"
ADDRESS = {name: IPv4Address(f"192.0.2.{i + 1}") for i, name in enumerate(NAMES)}
FAULT = frozenset({"eth0"})


@attrs.frozen
class Node:
    """One router of a generated cluster: its configured priority, preempt flag, versions."""

    priority: int
    preempt: bool
    versions: frozenset[int] = V3_ONLY


@attrs.define
class Tracked:
    """What the trackers last told a router, as the test remembers it."""

    priority: int
    faults: frozenset[str] = frozenset()
    maintenance: bool = False


@attrs.frozen
class Disturbance:
    """At ``at`` microseconds: ``kind`` with its arguments (see ``apply``)."""

    at: int
    kind: str
    node: str
    priority: int = 100
    flag: bool = False
    group: frozenset[str] = frozenset()
    loss: float = 0.0


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[Node], int]:
    count = draw(st.integers(2, 5))
    priorities = draw(
        st.lists(st.sampled_from([1, 50, 100, 100, 150, 200, 254]), min_size=count, max_size=count)
    )
    if draw(st.booleans()):
        priorities[draw(st.integers(0, count - 1))] = 255  # one address owner
    # Half the clusters preempt everywhere, where the winner is known, not only its count.
    preempt = [True] * count
    if draw(st.booleans()):
        preempt = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    if draw(st.booleans()):
        interval_cs = draw(st.sampled_from([1, 10, 100, 250]))
        versions = [V3_ONLY] * count
    else:
        # A cluster migrating from VRRPv2: v2-only and 2+3 routers mixed, whole seconds.
        interval_cs = draw(st.sampled_from([100, 200]))
        versions = draw(
            st.lists(st.sampled_from([V2_ONLY, V2_AND_V3]), min_size=count, max_size=count)
        )
    nodes = [Node(*n) for n in zip(priorities, preempt, versions, strict=True)]
    return nodes, interval_cs


@st.composite
def disturbances(draw: st.DrawFn, names: list[str], horizon: int) -> list[Disturbance]:
    kinds = ["partition", "heal", "health", "maintenance", "loss"]
    result = []
    for _ in range(draw(st.integers(0, 10))):
        result.append(
            Disturbance(
                at=draw(st.integers(0, horizon)),
                kind=draw(st.sampled_from(kinds)),
                node=draw(st.sampled_from(names)),
                priority=draw(st.sampled_from([1, 50, 100, 150, 200, 254])),
                flag=draw(st.booleans()),
                group=frozenset(draw(st.sets(st.sampled_from(names)))),
                loss=draw(st.sampled_from([0.3, 0.7, 1.0])),
            )
        )
    return result


def apply(lan: SimLan, d: Disturbance, names: list[str]) -> Callable[[], None]:
    """The scripted step for ``d``; health and maintenance are injected events instead."""

    def step() -> None:
        if d.kind == "partition":
            lan.partition(d.group, set(names) - d.group)
        elif d.kind == "heal":
            lan.heal()
        else:
            lan.loss = d.loss

    return step


@settings(max_examples=400, deadline=None)
@given(data=st.data(), cluster=clusters(), seed=st.integers(0, 2**16))
def test_after_a_quiet_period_the_best_router_is_the_only_master(
    data: st.DataObject, cluster: tuple[list[Node], int], seed: int
) -> None:
    nodes, interval_cs = cluster
    interval = timers.centiseconds(interval_cs)
    names = list(NAMES[: len(nodes)])
    horizon = 30 * interval
    script = data.draw(disturbances(names, horizon))

    lan = SimLan(delay=DELAY, seed=seed)
    for name, node in zip(names, nodes, strict=True):
        lan.add(
            name,
            RouterParams(
                vrid=1,
                addresses=(VIP,),
                local_address=ADDRESS[name],
                priority=node.priority,
                advert_interval_cs=interval_cs,
                preempt=node.preempt,
                versions=node.versions,
            ),
        )
    lan.start_all()
    # What each router should end with, kept by the test from the events it injects.
    model = {name: Tracked(node.priority) for name, node in zip(names, nodes, strict=True)}
    for d in sorted(script, key=lambda d: d.at):
        if d.kind == "health":
            faults = FAULT if d.flag else frozenset()
            lan.inject(d.node, HealthChanged(d.priority, faults), at=d.at)
            model[d.node].faults = faults
            if model[d.node].priority != 255:  # an owner ignores the trackers' priority
                model[d.node].priority = d.priority
        elif d.kind == "maintenance":
            lan.inject(d.node, MaintenanceChanged(on=d.flag), at=d.at)
            model[d.node].maintenance = d.flag
        else:
            lan.call_at(d.at, apply(lan, d, names))

    # Quiet from just after the last disturbance: no loss, no partition, for
    # Master_Down_Interval of the lowest priority plus one interval (and a few 100 us hops);
    # VRRPv3's is the longer one at whole seconds, so it covers VRRPv2 routers too.
    quiet_from = max((d.at for d in script), default=0) + 1
    lan.call_at(quiet_from, lan.heal)
    lan.call_at(quiet_from, lambda: setattr(lan, "loss", 0.0))
    lowest = min(m.priority for m in model.values())
    quiet = timers.master_down_interval(lowest, interval) + interval + 4 * DELAY
    lan.run_until(quiet_from + quiet)

    for name, tracked in model.items():
        router = lan.nodes[name].router
        assert router.priority == tracked.priority
        assert (router.state is State.FAULT) == bool(tracked.faults or tracked.maintenance)
    candidates = [name for name in names if lan.nodes[name].state is not State.FAULT]
    masters = lan.masters(1)
    if not candidates:
        assert masters == []
        return
    assert len(masters) == 1, f"masters {masters} at {lan.now}"
    preempting = all(node.preempt or node.priority == 255 for node in nodes)
    if preempting:
        best = max(lan.nodes[name].router.priority for name in candidates)
        # Equal priorities: a backup accepts an equal master (RFC 9568 §6.4.2), so the
        # address only breaks ties between two masters; any router at the top may win.
        assert lan.nodes[masters[0]].router.priority == best
