"""What ``pyvrrp status`` and ``pyvrrp maintenance`` print.

Pure functions from the daemon's JSON answers to text; no I/O. The daemon may be newer or
older than this command, so every field is optional here: a missing one is shown as "?" or
left out, an unknown one is ignored, a value of an unexpected type never raises.

The human status answers the questions keepalived cannot: which state each instance is in
and since when, who is master, and *why* the effective priority is what it is::

    vip58  MASTER for 8.1s  (VRID 58 on eth0.4000, IPv4)
      priority   40 = 100 base - 60 chk_nginx_ingress (bad)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pyvrrp.core.tracking import explain_priority

_LABEL_WIDTH: Final = 13
HISTORY_SHOWN: Final = 5
"""Transitions of each instance the text status shows (the JSON has every one kept)."""
_KNOWN_COUNTERS: Final = (
    "adverts_sent",
    "adverts_received",
    "priority_zero_sent",
    "priority_zero_received",
    "became_master",
    "drops",
)


# The instance's "vrrp_version" (node.toml's version key) as the header shows it.
_VERSIONS: Final = {"2": "VRRPv2", "3": "VRRPv3", "2+3": "VRRPv2+v3 (migration)"}


def format_status_json(status: Mapping[str, Any]) -> str:
    """``pyvrrp status --json``: the daemon's answer, indented, keys sorted (stable for diffs)."""
    return json.dumps(status, indent=2, sort_keys=True)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object, default: str = "?") -> str:
    if value is None:
        return default
    return str(value)


def format_duration(seconds: object) -> str:
    """A time span as a person reads it: 0.8s, 8.1s, 42s, 3m 12s, 2h 5m, 3d 4h."""
    value = _number(seconds)
    if value is None or not math.isfinite(value) or value < 0:
        return "?"
    if value < 10:
        return f"{value:.1f}s"
    whole = int(value)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _interval(seconds: object) -> str:
    """An advertisement interval or a run time: 1s, 0.5s, 12ms."""
    value = _number(seconds)
    if value is None or not math.isfinite(value):
        return "?"
    if 0 < value < 1:
        return f"{value * 1000:.0f}ms"
    return f"{value:g}s"


def _line(label: str, value: str) -> str:
    return f"  {label:<{_LABEL_WIDTH}}{value}"


def _effects(trackers: Sequence[Any]) -> list[tuple[int, str, str]]:
    result = []
    for tracker in trackers:
        t = _mapping(tracker)
        effect = _int(t.get("effect"))
        if effect:
            result.append((effect, _text(t.get("name")), _text(t.get("state"))))
    return result


def priority_breakdown(instance: Mapping[str, Any]) -> str:
    """Why the effective priority is what it is: ``40 = 100 base - 60 chk_nginx_ingress (bad)``.

    The wording is the logs' (:func:`pyvrrp.core.tracking.explain_priority`), from the
    instance's status: every tracker that changes the priority is a term, with its state; a
    sum outside 1..254 says it was clamped (keepalived's rule); an owner (255) is never
    changed by trackers. Without a base priority, only the effective one is shown.
    """
    base = _int(instance.get("base_priority"))
    effective = _int(instance.get("effective_priority"))
    if base is None:
        return _text(effective)
    return explain_priority(base, effective, _effects(_list(instance.get("trackers"))))


def _tracker_line(tracker: Mapping[str, Any]) -> str:
    kind = _text(tracker.get("kind"), "tracker")
    name = _text(tracker.get("name"))
    state = _text(tracker.get("state"))
    weight = _int(tracker.get("weight"))
    bad = "down" if kind == "interface" else "bad"
    if weight == 0:
        rule = f"{bad} = FAULT"
    elif weight is not None and weight < 0:
        rule = f"weight {weight}: subtracts {-weight} while {bad}"
    elif weight is not None:
        rule = f"weight +{weight}: adds {weight} while {'up' if kind == 'interface' else 'good'}"
    else:
        rule = "weight ?"
    notes = []
    if tracker.get("implicit") is True:
        notes.append("implicit")
    if tracker.get("fault") is True:
        notes.append("FAULT now")
    suffix = f" [{', '.join(notes)}]" if notes else ""
    return f"{kind} {name}: {state} ({rule}){suffix}"


def _family(value: object) -> str:
    return {"ipv4": "IPv4", "ipv6": "IPv6"}.get(str(value), _text(value))


def _names(values: Sequence[Any]) -> str:
    return ", ".join(_text(v) for v in values)


def _nonzero(counts: Mapping[str, Any]) -> str:
    items = [f"{reason} {count}" for reason, count in counts.items() if _number(count)]
    return ", ".join(items)


def _instance_block(name: str, instance: Mapping[str, Any]) -> list[str]:
    state = _text(instance.get("state"))
    where = [f"VRID {_text(instance.get('vrid'))} on {_text(instance.get('interface'))}"]
    if "family" in instance:
        where.append(_family(instance["family"]))
    if "vrrp_version" in instance:
        where.append(_VERSIONS.get(str(instance["vrrp_version"]), _text(instance["vrrp_version"])))
    lines = [
        f"{name}  {state} for {format_duration(instance.get('in_state_for'))}  ({', '.join(where)})"
    ]
    priority = priority_breakdown(instance)
    if state == "FAULT":
        priority += "; not advertised in FAULT"
    lines.append(_line("priority", priority))
    if instance.get("maintenance") is True:
        lines.append(
            _line("maintenance", f"on: FAULT on purpose; `pyvrrp maintenance off {name}` ends it")
        )
    faults = _list(instance.get("faults"))
    if faults:
        lines.append(_line("faults", _names(faults)))
    trackers = [_mapping(t) for t in _list(instance.get("trackers"))]
    for index, tracker in enumerate(trackers):
        lines.append(_line("tracking" if index == 0 else "", _tracker_line(tracker)))
    lines.append(_line("master", _master(instance)))
    peers = _mapping(instance.get("peers"))
    for index, (address, peer) in enumerate(peers.items()):
        lines.append(_line("peers" if index == 0 else "", _peer(address, _mapping(peer))))
    lines.extend(_addresses(instance))
    counters = _mapping(instance.get("counters"))
    if counters:
        lines.append(_line("counters", _counters(counters)))
        drops = _nonzero(_mapping(counters.get("drops")))
        if drops:
            lines.append(_line("drops", drops))
    lines.extend(_history(_list(instance.get("history"))))
    return lines


def _when(value: object) -> str:
    """A wall-clock time as local date and time, to the second (as journalctl shows them)."""
    seconds = _number(value)
    if seconds is None or not math.isfinite(seconds):
        return "?"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    except (OverflowError, OSError, ValueError):
        return "?"


def _history(history: Sequence[Any]) -> list[str]:
    """The last :data:`HISTORY_SHOWN` transitions, oldest first, and how many more are kept."""
    lines = []
    shown = history[-HISTORY_SHOWN:]
    for index, item in enumerate(shown):
        entry = _mapping(item)
        text = f"{_when(entry.get('time'))}  {_text(entry.get('from'))} -> {_text(entry.get('to'))}"
        if entry.get("reason"):
            text += f" ({_text(entry.get('reason'))})"
        elif entry.get("cause"):
            text += f" ({_text(entry.get('cause'))})"
        text += f", priority {_text(entry.get('priority'))}"
        lines.append(_line("history" if index == 0 else "", text))
    earlier = len(history) - len(shown)
    if earlier:
        lines.append(_line("", f"and {earlier} earlier (pyvrrp status --json shows them)"))
    return lines


def _master(instance: Mapping[str, Any]) -> str:
    master = instance.get("master")
    ours = instance.get("advert_interval")
    learned = instance.get("master_advert_interval")
    if isinstance(master, Mapping) and master.get("address") is not None:
        text = f"{_text(master.get('address'))}, priority {_text(master.get('priority'))}"
    else:
        text = "none heard"
    if learned is not None:
        text += f", advert interval {_interval(learned)}"
        if ours is not None and _number(ours) != _number(learned):
            text += f" (learned; ours is {_interval(ours)})"
    elif ours is not None:
        text += f", advert interval {_interval(ours)}"
    return text


def _peer(address: str, peer: Mapping[str, Any]) -> str:
    """``192.168.200.3: v2 12s ago (10 adverts), v3 0.4s ago (25 adverts)``: which versions
    a peer speaks, and whether it still does (migration mode)."""
    adverts = _mapping(peer.get("adverts"))
    ago = _mapping(peer.get("last_seen_ago"))
    versions = [str(v) for v in _list(peer.get("versions"))] or list(adverts)
    parts = []
    for version in versions:
        count = _int(adverts.get(version))
        noun = "advert" if count == 1 else "adverts"
        part = f"v{version} {format_duration(ago.get(version))} ago"
        if count is not None:
            part += f" ({count} {noun})"
        parts.append(part)
    return f"{address}: {', '.join(parts) or 'no advertisement accepted'}"


def _addresses(instance: Mapping[str, Any]) -> list[str]:
    lines = []
    addresses = _list(instance.get("addresses"))
    holding = instance.get("holding_addresses")
    if addresses:
        where = ""
        if holding is True:
            where = " (held here)"
        elif holding is False:
            where = " (not held here)"
        lines.append(_line("addresses", _names(addresses) + where))
    excluded = _list(instance.get("excluded_addresses"))
    if excluded:
        lines.append(_line("excluded", _names(excluded)))
    peers = _list(instance.get("unicast_peers"))
    if peers:
        lines.append(_line("unicast", f"to {_names(peers)}"))
    return lines


def _counters(counters: Mapping[str, Any]) -> str:
    def get(key: str) -> str:
        return _text(counters.get(key))

    parts = [
        f"adverts sent {get('adverts_sent')}, received {get('adverts_received')}",
        f"priority 0 sent {get('priority_zero_sent')}, received {get('priority_zero_received')}",
        f"became master {get('became_master')}",
    ]
    extra = [
        f"{key.replace('_', ' ')} {value}"
        for key, value in counters.items()
        if key not in _KNOWN_COUNTERS and _number(value) is not None
    ]
    if extra:
        parts.append(", ".join(extra))
    return "; ".join(parts)


def _script_block(name: str, script: Mapping[str, Any]) -> list[str]:
    head = f"  {name}: {_text(script.get('state'))}"
    if script.get("position"):
        head += f", {_text(script.get('position'))}"
    detail = []
    if "last_run_ago" in script or "last_result" in script:
        last = f"last run {format_duration(script.get('last_run_ago'))} ago"
        if script.get("last_result") is not None:
            last += f": {_text(script.get('last_result'))}"
        if script.get("last_duration") is not None:
            last += f" (took {_interval(script.get('last_duration'))})"
        detail.append(last)
    counts = [
        f"{_text(script.get(key))} {label}"
        for key, label in (("runs", "runs"), ("failures", "failures"), ("skipped", "skipped"))
        if key in script
    ]
    if counts:
        detail.append(", ".join(counts))
    return [head] + ([f"    {'; '.join(detail)}"] if detail else [])


def _header(status: Mapping[str, Any], instances: Mapping[str, Any]) -> str:
    parts = [f"pyvrrp {_text(status.get('version'))}"]
    if "pid" in status:
        parts.append(f"pid {_text(status.get('pid'))}")
    if "uptime" in status:
        parts.append(f"up {format_duration(status.get('uptime'))}")
    states: dict[str, int] = {}
    for instance in instances.values():
        state = _text(_mapping(instance).get("state"))
        states[state] = states.get(state, 0) + 1
    count = len(instances)
    summary = f"{count} instance{'' if count == 1 else 's'}"
    if states:
        summary += ": " + ", ".join(f"{n} {state}" for state, n in states.items())
    return f"{_text(status.get('router_id'))}: {', '.join(parts)}; {summary}"


def format_status(status: Mapping[str, Any]) -> str:
    """``pyvrrp status``: a header, one block per instance, the scripts, early drops."""
    instances = _mapping(status.get("instances"))
    lines = [_header(status, instances)]
    for name, instance in instances.items():
        lines.append("")
        lines.extend(_instance_block(name, _mapping(instance)))
    scripts = _mapping(status.get("scripts"))
    if scripts:
        lines += ["", "scripts:"]
        for name, script in scripts.items():
            lines.extend(_script_block(name, _mapping(script)))
    drops = [
        f"  {where}: {text}"
        for where, counts in _mapping(status.get("interface_drops")).items()
        if (text := _nonzero(_mapping(counts)))
    ]
    if drops:
        lines += ["", "dropped before reaching an instance:", *drops]
        if any("unknown_vrid" in line for line in drops):
            # docs/keepalived.md pain point 10: VRID collisions between clusters go unnoticed.
            lines.append(
                "  (unknown_vrid: advertisements for a VRID no instance here has; another "
                "cluster on the same link?)"
            )
    lines.extend(_email_block(_mapping(status.get("email"))))
    return "\n".join(lines)


def _email_block(email: Mapping[str, Any]) -> list[str]:
    """The mailer's counters, when ``[global.email]`` is configured."""
    if not email.get("enabled"):
        return []
    counts = (
        f"  {_text(email.get('sent'))} sent, {_text(email.get('pending'))} pending; "
        f"{_text(email.get('failures'))} failed attempts, {_text(email.get('retries'))} "
        f"retries, {_text(email.get('dropped'))} dropped"
    )
    lines = ["", "e-mail:", counts]
    if email.get("last_error"):
        lines.append(f"  last failure: {_text(email.get('last_error'))}")
    return lines


def _maintenance_on(name: str, previous: Mapping[str, Any]) -> str:
    state = previous.get("state")
    if state == "MASTER":
        what = "FAULT, priority 0 sent; the backup takes over within skew time"
    elif state == "BACKUP":
        what = "FAULT; it was BACKUP, so no address moves"
    elif state == "FAULT":
        faults = _names(_list(previous.get("faults")))
        what = f"it was already FAULT{': ' + faults if faults else ''}"
    else:
        what = "FAULT"
    return f"{name}: maintenance on ({what})"


def _maintenance_off(name: str, previous: Mapping[str, Any]) -> str:
    faults = _list(previous.get("faults"))
    if faults:
        what = f"still FAULT: {_names(faults)}"
    else:
        what = "BACKUP; it becomes master again if it has the highest priority and preempts"
    return f"{name}: maintenance off ({what})"


def format_maintenance(result: Mapping[str, Any]) -> list[str]:
    """``pyvrrp maintenance``: one line per instance, saying what changed and what follows."""
    on = result.get("on") is True
    previous = _mapping(result.get("previous"))
    lines = []
    for name in _list(result.get("changed")):
        before = _mapping(previous.get(name))
        lines.append(_maintenance_on(name, before) if on else _maintenance_off(name, before))
    for name in _list(result.get("unchanged")):
        lines.append(f"{name}: maintenance already {'on' if on else 'off'}")
    if not lines:
        lines.append("no instance changed")
    return lines


__all__ = [
    "format_duration",
    "format_maintenance",
    "format_status",
    "format_status_json",
    "priority_breakdown",
]
