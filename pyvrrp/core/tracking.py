"""Health tracking: effective priority and FAULT from tracked scripts and interfaces.

This is keepalived's ``track_script`` / ``track_interface`` arithmetic (see docs/keepalived.md,
"Effective priority and FAULT"), with nothing else: results go in, a :class:`Health` per
instance comes out. Running the scripts and watching the links is the runtime's job
(:mod:`pyvrrp.runtime.trackers`); feeding the :class:`Health` to the router, as a
:class:`~pyvrrp.core.events.HealthChanged`, is the node's.

The rules, in one place:

- A script's result is success (exit 0) or failure (anything else). ``fall`` consecutive
  failures make a good script bad, ``rise`` consecutive successes make a bad script good.
  Until its first result a script is "unknown" and counts as good (keepalived's default);
  the first result decides at once, whatever ``rise`` and ``fall`` say.
- An interface is up or down (a deleted interface is down). Interfaces are tracked by name,
  so one deleted and recreated is tracked again. Until its state is known it counts as up.
  An instance tracks its own interface and the devices of its addresses and excluded
  addresses implicitly, with weight 0; an explicit ``track_interfaces`` entry for the same
  name sets the weight instead.
- Weight 0: bad (or down) puts the instance in FAULT. Weight > 0: added while good (up).
  Weight < 0: added (so subtracted) while bad (down).
- Effective priority = base + the contributions, clamped to 1..254. An address owner
  (priority 255) keeps 255 whatever the weights; its weight-0 faults still apply.
- A member of a sync group ignores weights, as keepalived does: any of its trackers going bad
  puts it in FAULT (its weight is taken as 0).

The core does no I/O and reads no clock (docs/design.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, Literal

import attrs

from pyvrrp.core.config import InstanceConfig, NodeConfig
from pyvrrp.core.errors import UsageError
from pyvrrp.core.events import HealthChanged
from pyvrrp.core.params import OWNER_PRIORITY

__all__ = [
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "Contribution",
    "Health",
    "InterfaceStatus",
    "ScriptState",
    "ScriptStatus",
    "Tracking",
    "explain_priority",
    "implicit_interfaces",
]

#: The effective priority of a non-owner stays in this range: 0 would mean "I am leaving"
#: and 255 "I own the addresses" (RFC 9568 §5.2.4).
MIN_PRIORITY: Final = 1
MAX_PRIORITY: Final = 254

ScriptStatus = Literal["good", "bad", "unknown"]
InterfaceStatus = Literal["up", "down", "unknown"]


@attrs.frozen
class Contribution:
    """What one tracker does to an instance right now.

    ``weight`` is the configured weight (the instance's override, else the script's own).
    ``effect`` is what it adds to the priority now (negative when it subtracts). ``fault`` is
    True when it is putting the instance in FAULT now. ``implicit`` marks an interface
    tracked because the instance uses it (its interface, the device of an address), not
    because ``track_interfaces`` lists it.
    """

    kind: Literal["script", "interface"]
    name: str
    weight: int
    state: ScriptStatus | InterfaceStatus
    effect: int
    fault: bool
    implicit: bool = False

    @property
    def label(self) -> str:
        """The tracker as logs and fault lists name it: ``script chk``, ``interface eth0``."""
        return f"{self.kind} {self.name}"


@attrs.frozen
class Health:
    """An instance's health: effective priority, faults, and why.

    ``priority`` is clamped to 1..254, or 255 for an address owner. ``faults`` names the
    trackers putting the instance in FAULT (``"script chk_nginx_ingress"``,
    ``"interface dummy0"``); empty means no fault. ``base`` is the configured priority and
    ``sync_group`` the group the instance belongs to (whose members ignore weights).
    """

    priority: int
    faults: frozenset[str]
    contributions: tuple[Contribution, ...]
    base: int
    sync_group: str | None = None

    @property
    def owner(self) -> bool:
        """True for an address owner, whose priority trackers never change."""
        return self.base == OWNER_PRIORITY

    def event(self) -> HealthChanged:
        """The event that tells the router about this health."""
        return HealthChanged(self.priority, self.faults)

    def explain_priority(self) -> str:
        """Why the priority is what it is: ``40 = 100 base - 60 chk_nginx_ingress (bad)``
        (see :func:`explain_priority`)."""
        terms = ((c.effect, c.name, c.state) for c in self.contributions)
        return explain_priority(self.base, self.priority, terms)

    def explain(self) -> str:
        """Why the instance has this health, in one line for the logs:
        ``priority 40 = 100 base - 60 chk_nginx_ingress (bad)``, or with faults
        ``FAULT (interface dummy0 down); priority 100 = 100 base``."""
        priority = f"priority {self.explain_priority()}"
        if not self.faults:
            return priority
        causes = ", ".join(f"{c.label} {c.state}" for c in self.contributions if c.fault)
        return f"FAULT ({causes}); {priority}"


def explain_priority(base: int, priority: int | None, terms: Iterable[tuple[int, str, str]]) -> str:
    """Why the effective ``priority`` is what it is, as the logs and ``pyvrrp status`` say it:
    ``40 = 100 base - 60 chk_nginx_ingress (bad)``.

    ``terms`` are the trackers as ``(effect, name, state)``; each whose effect is not 0 is one
    term. A sum outside 1..254 says it was clamped (``1 = 50 base - 60 chk (bad) = -10,
    clamped to 1..254``); an address owner (base 255) is never changed by trackers. A
    ``priority`` that the terms do not explain is shown with their sum, and None (not known)
    as ``?``.
    """
    shown = "?" if priority is None else str(priority)
    if base == OWNER_PRIORITY:
        return f"{shown} (address owner: trackers never change it)"
    words = [f"{base} base"]
    total = base
    for effect, name, state in terms:
        if effect:
            words.append(f"{'+' if effect > 0 else '-'} {abs(effect)} {name} ({state})")
            total += effect
    text = f"{shown} = {' '.join(words)}"
    if priority is not None and total != priority:
        if not MIN_PRIORITY <= total <= MAX_PRIORITY:
            text += f" = {total}, clamped to {MIN_PRIORITY}..{MAX_PRIORITY}"
        else:
            text += f" (the terms add up to {total})"
    return text


class ScriptState:
    """The fall/rise machine of one script (keepalived's ``vrrp_script`` result counter).

    ``state`` is "unknown" until the first result, which decides at once; afterwards
    ``fall`` consecutive failures turn a good script bad and ``rise`` consecutive successes
    turn a bad one good. ``successes`` and ``failures`` are the current run of consecutive
    results (one of them is 0), the script's position towards ``rise`` or ``fall``;
    ``results`` counts every result.
    """

    def __init__(self, *, fall: int = 1, rise: int = 1) -> None:
        if fall < 1 or rise < 1:
            raise UsageError(f"fall and rise must be at least 1, got fall={fall} rise={rise}")
        self.fall = fall
        self.rise = rise
        self._state: ScriptStatus = "unknown"
        self.successes = 0
        self.failures = 0
        self.results = 0

    @property
    def state(self) -> ScriptStatus:
        """ "good", "bad", or "unknown" before the first result."""
        return self._state

    @property
    def good(self) -> bool:
        """True unless the script is bad: an unknown script counts as good."""
        return self._state != "bad"

    def record(self, success: bool) -> bool:
        """Count one result; True when ``state`` changed."""
        self.results += 1
        if success:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0
        old = self._state
        if old == "unknown":
            self._state = "good" if success else "bad"
        elif old == "good" and self.failures >= self.fall:
            self._state = "bad"
        elif old == "bad" and self.successes >= self.rise:
            self._state = "good"
        return self._state != old

    def position(self) -> str:
        """Progress towards the other state, for status: ``1/2 failures to fall`` for a good
        script that failed once with ``fall = 2``, ``1/3 successes to rise`` for a bad one;
        empty when the last result agreed with the state."""
        if self._state == "good" and self.failures:
            return f"{self.failures}/{self.fall} failures to fall"
        if self._state == "bad" and self.successes:
            return f"{self.successes}/{self.rise} successes to rise"
        return ""

    def carry_over(self, previous: ScriptState) -> None:
        """Take ``previous``'s state and position (a reload keeps them, docs/keepalived.md)."""
        self._state = previous._state
        self.successes = previous.successes
        self.failures = previous.failures
        self.results = previous.results

    def __repr__(self) -> str:
        return (
            f"ScriptState({self._state}, successes={self.successes}, "
            f"failures={self.failures}, fall={self.fall}, rise={self.rise})"
        )


@attrs.frozen
class _Tracker:
    """One tracker of one instance, as configured."""

    kind: Literal["script", "interface"]
    name: str
    weight: int
    implicit: bool


def implicit_interfaces(instance: InstanceConfig) -> tuple[str, ...]:
    """The interfaces an instance uses and so tracks with weight 0, as keepalived does: its
    own interface, then the devices of its addresses and excluded addresses, in order."""
    names = [instance.interface]
    for address in (*instance.addresses, *instance.excluded_addresses):
        if address.dev is not None and address.dev not in names:
            names.append(address.dev)
    return tuple(names)


def _trackers(config: NodeConfig, instance: InstanceConfig) -> tuple[_Tracker, ...]:
    """An instance's trackers in the order status shows them: scripts and explicit interfaces
    as configured, then the implicit interfaces."""
    scripts = []
    for script in instance.track_scripts:
        configured = config.scripts.get(script.name)
        if configured is None:
            raise UsageError(
                f"instance {instance.name} tracks script {script.name}, which is not configured"
            )
        weight = script.weight if script.weight is not None else configured.weight
        scripts.append(_Tracker("script", script.name, weight, implicit=False))
    # An explicit entry sets the weight of an interface that would be tracked implicitly.
    explicit = [_Tracker("interface", t.name, t.weight, False) for t in instance.track_interfaces]
    listed = {t.name for t in explicit}
    implicit = [
        _Tracker("interface", name, 0, implicit=True)
        for name in implicit_interfaces(instance)
        if name not in listed
    ]
    return (*scripts, *explicit, *implicit)


class Tracking:
    """The health of every instance of a node, from its scripts' results and link states.

    Feed it with :meth:`script_result` and :meth:`interface_state`; both return the names of
    the instances whose :class:`Health` changed, to be read with :meth:`health`.

    ``previous`` (on reload) carries over the state and rise/fall position of scripts with
    the same name, and the known state of interfaces still tracked.
    """

    def __init__(self, config: NodeConfig, *, previous: Tracking | None = None) -> None:
        self._config = config
        self._scripts = {
            name: ScriptState(fall=script.fall, rise=script.rise)
            for name, script in config.scripts.items()
        }
        self._sync_group = {
            member: group.name
            for group in config.sync_groups.values()
            for member in group.instances
        }
        self._trackers = {
            name: _trackers(config, instance) for name, instance in config.instances.items()
        }
        self._by_script: dict[str, set[str]] = {}
        self._by_interface: dict[str, set[str]] = {}
        for instance, trackers in self._trackers.items():
            for tracker in trackers:
                index = self._by_script if tracker.kind == "script" else self._by_interface
                index.setdefault(tracker.name, set()).add(instance)
        self._links: dict[str, bool | None] = dict.fromkeys(self._by_interface)
        if previous is not None:
            for name, state in self._scripts.items():
                if name in previous._scripts:
                    state.carry_over(previous._scripts[name])
            for link in self._links:
                self._links[link] = previous._links.get(link)
        self._health = {name: self._compute(name) for name in config.instances}

    @property
    def config(self) -> NodeConfig:
        """The configuration this tracking was built from."""
        return self._config

    def script_result(self, name: str, success: bool) -> frozenset[str]:
        """Record a run of script ``name``; the instances whose health changed."""
        try:
            script = self._scripts[name]
        except KeyError:
            raise KeyError(f"no script named {name!r}") from None
        if not script.record(success):
            return frozenset()
        return self._refresh(self._by_script.get(name, ()))

    def interface_state(self, name: str, up: bool) -> frozenset[str]:
        """Record that interface ``name`` is up or down (a deleted one is down); the
        instances whose health changed. An interface nobody tracks is ignored."""
        if name not in self._links or self._links[name] is up:
            return frozenset()
        self._links[name] = up
        return self._refresh(self._by_interface[name])

    def health(self, instance: str) -> Health:
        """The current health of ``instance``."""
        return self._health[instance]

    def healths(self) -> Mapping[str, Health]:
        """The current health of every instance, in configuration order."""
        return MappingProxyType(dict(self._health))

    def script(self, name: str) -> ScriptState:
        """The state of script ``name`` (live: read it, do not :meth:`~ScriptState.record`)."""
        return self._scripts[name]

    def tracked_scripts(self) -> frozenset[str]:
        """The scripts at least one instance tracks (the others need not run)."""
        return frozenset(self._by_script)

    def interfaces(self) -> Mapping[str, bool | None]:
        """Every tracked interface: True up, False down or absent, None not known yet."""
        return MappingProxyType(dict(self._links))

    def tracked_interfaces(self) -> frozenset[str]:
        """The names of every tracked interface, implicit or explicit."""
        return frozenset(self._links)

    def instances_tracking(self, kind: Literal["script", "interface"], name: str) -> frozenset[str]:
        """The instances that track the script or interface ``name``."""
        index = self._by_script if kind == "script" else self._by_interface
        return frozenset(index.get(name, ()))

    def _refresh(self, instances: Iterable[str]) -> frozenset[str]:
        changed = set()
        for instance in instances:
            health = self._compute(instance)
            if health != self._health[instance]:
                self._health[instance] = health
                changed.add(instance)
        return frozenset(changed)

    def _compute(self, instance: str) -> Health:
        config = self._config.instances[instance]
        base = config.priority
        owner = base == OWNER_PRIORITY
        group = self._sync_group.get(instance)
        contributions = []
        for tracker in self._trackers[instance]:
            state: ScriptStatus | InterfaceStatus
            if tracker.kind == "script":
                script = self._scripts[tracker.name]
                state, good = script.state, script.good
            else:
                link = self._links[tracker.name]
                state = "unknown" if link is None else "up" if link else "down"
                good = link is not False
            # keepalived ignores the weights of sync group members: any failure is a FAULT.
            weight = 0 if group is not None else tracker.weight
            fault = weight == 0 and not good
            # A positive weight counts while good, a negative one while bad.
            counts = weight > 0 if good else weight < 0
            effect = weight if counts and not owner else 0
            contributions.append(
                Contribution(
                    kind=tracker.kind,
                    name=tracker.name,
                    weight=tracker.weight,
                    state=state,
                    effect=effect,
                    fault=fault,
                    implicit=tracker.implicit,
                )
            )
        if owner:
            priority = OWNER_PRIORITY
        else:
            total = base + sum(c.effect for c in contributions)
            priority = max(MIN_PRIORITY, min(MAX_PRIORITY, total))
        return Health(
            priority=priority,
            faults=frozenset(c.label for c in contributions if c.fault),
            contributions=tuple(contributions),
            base=base,
            sync_group=group,
        )
