"""Prometheus metrics: the text exposition format, rendered from the status snapshot, on HTTP.

Two halves:

- :func:`render` turns the daemon's status dict (the one ``pyvrrp status --json`` prints) into
  the Prometheus text exposition format 0.0.4. Metrics are derived from that one snapshot and
  nothing else, so ``pyvrrp status`` and a scrape can never disagree. Every metric the
  renderer may emit is declared in :data:`METRICS` (name, type, labels, help), in output
  order; docs/metrics.md, the Grafana dashboard and the alert rules are tested against it.
- :func:`serve_metrics` serves it on ``GET /metrics`` through :mod:`pyvrrp.runtime.httpserver`
  (HTTP/1.1 on h11): one task per connection, one request per connection (``Connection:
  close``); the request head is bounded in size and time, and so is sending the answer, so a
  slow or malicious client holds nothing for long.

Why no dependency on ``prometheus_client``: what pyvrrp needs from it is the text format, a
few dozen lines. Its instrumentation model (a process-global registry of live counters) is the
wrong shape for metrics computed from a snapshot, and its HTTP server runs a thread per
request, which has no place in a trio daemon. So the renderer follows its conventions instead:
snake_case names, ``_total`` counters, base units (seconds, bytes), ``HELP``/``TYPE`` lines,
label values escaped the same way, every family in a fixed order, and the process metrics
under the names its process collector uses, read from ``/proc`` the same way.

Conventions of the label set: every per-instance series carries ``vrrp_instance`` (the
instance's name), ``vrid``, ``interface`` and ``family``. The instance's name is not in a
label called ``instance`` because Prometheus attaches its own ``instance`` label (the scraped
target) to every series and would rename ours to ``exported_instance``. Which node a series
comes from is the target's ``instance`` label; ``pyvrrp_build_info`` carries the node's
``router_id``. Known label values are filled in with zeros (every state, every drop reason)
so that ``rate()`` and ``increase()`` see a counter's first increment.

Why the module is over 700 lines: about 220 of them are :data:`METRICS`, the declaration of
every metric with its help text, kept in one table because the docs and dashboards are
tested against it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import attrs
import trio

from pyvrrp._version import __version__
from pyvrrp.core.actions import State
from pyvrrp.core.packet import DropReason
from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.httpserver import Page, display_address, listen, serve_pages

__all__ = [
    "CONTENT_TYPE",
    "INSTANCE_DROP_REASONS",
    "INTERFACE_DROP_REASONS",
    "INSTANCE_LABELS",
    "MAX_CLIENTS",
    "MAX_REQUEST_HEAD",
    "METRICS",
    "QUEUE_OVERFLOW",
    "REQUEST_TIMEOUT",
    "SEND_TIMEOUT",
    "STATES",
    "MetricSpec",
    "MetricsError",
    "ProcessStats",
    "escape_label_value",
    "read_process_stats",
    "render",
    "serve_metrics",
]

log = logging.getLogger("pyvrrp")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of the Prometheus text exposition format (what prometheus_client sends)."""
MAX_REQUEST_HEAD: Final = 8 * 1024
"""The longest request line plus headers the server reads, in bytes."""
REQUEST_TIMEOUT: Final = 10.0
"""Seconds a client has, from connecting, to send its whole request head."""
SEND_TIMEOUT: Final = 10.0
"""Seconds the server spends, at most, handing a client its answer."""
MAX_CLIENTS: Final = 32
"""Connections served at once; more are answered 503 at once and closed."""

STATES: Final = tuple(state.value for state in State)
"""The values of ``pyvrrp_instance_state``'s ``state`` label, in output order."""
INTERFACE_DROP_REASONS: Final = (DropReason.IP_HEADER.value, DropReason.UNKNOWN_VRID.value)
"""Drop reasons counted per interface, before demultiplexing to an instance."""
INSTANCE_DROP_REASONS: Final = tuple(
    reason.value for reason in DropReason if reason.value not in INTERFACE_DROP_REASONS
)
"""Drop reasons counted per instance, by the receive rules of RFC 9568 §7.1."""
QUEUE_OVERFLOW: Final = "queue_overflow"
"""The drop reason of packets an instance had no room to queue (a flood), before any rule."""
INSTANCE_LABELS: Final = ("vrrp_instance", "vrid", "interface", "family")
"""The labels of every per-instance series, in this order."""

MetricType = Literal["gauge", "counter"]
Number = int | float


@attrs.frozen
class MetricSpec:
    """One metric family: its name (counters end in ``_total``), type, label names, help."""

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str


def _instance(name: str, type_: MetricType, extra: tuple[str, ...], help_: str) -> MetricSpec:
    return MetricSpec(name, type_, (*INSTANCE_LABELS, *extra), help_)


_SCRIPT = ("script",)
_PROCESS_PREFIX: Final = "process_"

METRICS: Final[tuple[MetricSpec, ...]] = (
    MetricSpec(
        "pyvrrp_build_info",
        "gauge",
        ("router_id", "version"),
        "Always 1; labels: the pyvrrp version and this node's router_id.",
    ),
    _instance(
        "pyvrrp_instance_state",
        "gauge",
        ("state",),
        "1 for the state the instance is in (INIT, BACKUP, MASTER, FAULT), 0 for the others.",
    ),
    _instance(
        "pyvrrp_instance_last_transition_timestamp_seconds",
        "gauge",
        (),
        "Unix time of the instance's last state change.",
    ),
    _instance(
        "pyvrrp_instance_base_priority",
        "gauge",
        (),
        "Configured priority (255 = address owner).",
    ),
    _instance(
        "pyvrrp_instance_effective_priority",
        "gauge",
        (),
        "Priority advertised: base plus tracker effects, clamped to 1..254 (owner stays 255).",
    ),
    _instance(
        "pyvrrp_instance_master_priority",
        "gauge",
        (),
        "Priority of the current master, as last heard; absent while no master is known.",
    ),
    _instance(
        "pyvrrp_instance_advert_interval_seconds",
        "gauge",
        (),
        "Configured advertisement interval.",
    ),
    _instance(
        "pyvrrp_instance_master_advert_interval_seconds",
        "gauge",
        (),
        "Master_Adver_Interval: the interval learned from the master (RFC 9568 6.4.2).",
    ),
    _instance(
        "pyvrrp_instance_holding_addresses",
        "gauge",
        (),
        "1 while this node has the instance's virtual addresses installed.",
    ),
    _instance(
        "pyvrrp_instance_maintenance",
        "gauge",
        (),
        "1 while the instance is in maintenance (pyvrrp maintenance on).",
    ),
    _instance(
        "pyvrrp_tracker_priority_effect",
        "gauge",
        ("kind", "tracker"),
        "What a tracked script or interface adds to the effective priority now (0 or weight).",
    ),
    _instance(
        "pyvrrp_tracker_fault",
        "gauge",
        ("kind", "tracker"),
        "1 while a tracked script or interface puts the instance in FAULT.",
    ),
    _instance(
        "pyvrrp_adverts_sent_total",
        "counter",
        (),
        "Advertisements sent (once per advertisement, not per unicast peer or version).",
    ),
    _instance(
        "pyvrrp_adverts_received_total",
        "counter",
        (),
        "Valid advertisements received for the instance.",
    ),
    _instance(
        "pyvrrp_priority_zero_adverts_sent_total",
        "counter",
        (),
        "Advertisements with priority 0 sent (this node left the master role).",
    ),
    _instance(
        "pyvrrp_priority_zero_adverts_received_total",
        "counter",
        (),
        "Advertisements with priority 0 received (the master left).",
    ),
    _instance(
        "pyvrrp_transitions_to_master_total",
        "counter",
        (),
        "Times the instance became MASTER.",
    ),
    _instance(
        "pyvrrp_adverts_dropped_total",
        "counter",
        ("reason",),
        "Packets for the instance dropped by a receive rule (RFC 9568 7.1) or a full queue.",
    ),
    _instance(
        "pyvrrp_peer_adverts_received_total",
        "counter",
        ("peer", "version"),
        "Advertisements accepted from one peer (its source address), by VRRP version (2, 3);"
        " at most 32 peers per instance.",
    ),
    _instance(
        "pyvrrp_peer_last_advert_timestamp_seconds",
        "gauge",
        ("peer", "version"),
        "Unix time of the last advertisement accepted from a peer in this VRRP version.",
    ),
    MetricSpec(
        "pyvrrp_interface_adverts_dropped_total",
        "counter",
        ("interface", "family", "reason"),
        "Packets dropped before reaching an instance (bad IP header, unknown VRID).",
    ),
    _instance(
        "pyvrrp_notifications_total",
        "counter",
        (),
        "Notification scripts run (notify, notify_master, ...).",
    ),
    _instance(
        "pyvrrp_notification_failures_total",
        "counter",
        (),
        "Notification scripts that failed: non-zero exit, timeout, or could not start.",
    ),
    _instance(
        "pyvrrp_notification_timeouts_total",
        "counter",
        (),
        "Notification scripts killed at their timeout.",
    ),
    _instance(
        "pyvrrp_notifications_dropped_total",
        "counter",
        (),
        "Notification scripts never run because the instance's queue overflowed.",
    ),
    _instance(
        "pyvrrp_notifications_pending",
        "gauge",
        (),
        "Notification scripts waiting to run (the running one not included).",
    ),
    MetricSpec(
        "pyvrrp_email_sent_total",
        "counter",
        (),
        "Alert mails the SMTP server accepted (one per burst of transitions).",
    ),
    MetricSpec(
        "pyvrrp_email_failures_total",
        "counter",
        (),
        "Attempts to send an alert mail that failed (each retry that fails counts).",
    ),
    MetricSpec(
        "pyvrrp_email_retries_total",
        "counter",
        (),
        "Attempts to send an alert mail again after a failure.",
    ),
    MetricSpec(
        "pyvrrp_email_dropped_total",
        "counter",
        (),
        "Alert mails given up: the queue was full while the server was unreachable.",
    ),
    MetricSpec(
        "pyvrrp_email_pending",
        "gauge",
        (),
        "Alert mails queued or being sent.",
    ),
    MetricSpec(
        "pyvrrp_email_last_sent_timestamp_seconds",
        "gauge",
        (),
        "Unix time the SMTP server last accepted an alert mail; absent before the first.",
    ),
    MetricSpec(
        "pyvrrp_script_good",
        "gauge",
        _SCRIPT,
        "1 while the health check counts as good (also before its first result), 0 when bad.",
    ),
    MetricSpec(
        "pyvrrp_script_last_exit_status",
        "gauge",
        _SCRIPT,
        "Exit status of the last finished run; absent if a signal ended it or it never started.",
    ),
    MetricSpec(
        "pyvrrp_script_last_duration_seconds",
        "gauge",
        _SCRIPT,
        "How long the last finished run took.",
    ),
    MetricSpec(
        "pyvrrp_script_last_run_timestamp_seconds",
        "gauge",
        _SCRIPT,
        "Unix time the last finished run started.",
    ),
    MetricSpec(
        "pyvrrp_script_consecutive_successes",
        "gauge",
        _SCRIPT,
        "Successes in a row: a bad script turns good when this reaches rise.",
    ),
    MetricSpec(
        "pyvrrp_script_consecutive_failures",
        "gauge",
        _SCRIPT,
        "Failures in a row: a good script turns bad when this reaches fall.",
    ),
    MetricSpec("pyvrrp_script_rise", "gauge", _SCRIPT, "Configured rise."),
    MetricSpec("pyvrrp_script_fall", "gauge", _SCRIPT, "Configured fall."),
    MetricSpec("pyvrrp_script_runs_total", "counter", _SCRIPT, "Finished runs."),
    MetricSpec(
        "pyvrrp_script_failures_total",
        "counter",
        _SCRIPT,
        "Failed runs: non-zero exit, killed by a signal, or timed out.",
    ),
    MetricSpec(
        "pyvrrp_script_skipped_total",
        "counter",
        _SCRIPT,
        "Runs not started because the previous run was still going.",
    ),
    MetricSpec(
        "pyvrrp_script_timeouts_total",
        "counter",
        _SCRIPT,
        "Runs killed for exceeding the timeout.",
    ),
    MetricSpec(
        "process_cpu_seconds_total",
        "counter",
        (),
        "Total user and system CPU time spent in seconds.",
    ),
    MetricSpec("process_resident_memory_bytes", "gauge", (), "Resident memory size in bytes."),
    MetricSpec("process_virtual_memory_bytes", "gauge", (), "Virtual memory size in bytes."),
    MetricSpec(
        "process_start_time_seconds",
        "gauge",
        (),
        "Start time of the process since unix epoch in seconds.",
    ),
    MetricSpec("process_open_fds", "gauge", (), "Number of open file descriptors."),
    MetricSpec("process_max_fds", "gauge", (), "Maximum number of open file descriptors."),
)
"""Every metric family the renderer may emit, in output order."""

_COUNTERS: Final = (
    ("adverts_sent", "pyvrrp_adverts_sent_total"),
    ("adverts_received", "pyvrrp_adverts_received_total"),
    ("priority_zero_sent", "pyvrrp_priority_zero_adverts_sent_total"),
    ("priority_zero_received", "pyvrrp_priority_zero_adverts_received_total"),
    ("became_master", "pyvrrp_transitions_to_master_total"),
)
_INSTANCE_GAUGES: Final = (
    ("last_transition", "pyvrrp_instance_last_transition_timestamp_seconds"),
    ("base_priority", "pyvrrp_instance_base_priority"),
    ("effective_priority", "pyvrrp_instance_effective_priority"),
    ("advert_interval", "pyvrrp_instance_advert_interval_seconds"),
    ("master_advert_interval", "pyvrrp_instance_master_advert_interval_seconds"),
    ("holding_addresses", "pyvrrp_instance_holding_addresses"),
    ("maintenance", "pyvrrp_instance_maintenance"),
)
_NOTIFICATIONS: Final = (
    ("run", "pyvrrp_notifications_total"),
    ("failed", "pyvrrp_notification_failures_total"),
    ("timed_out", "pyvrrp_notification_timeouts_total"),
    ("dropped", "pyvrrp_notifications_dropped_total"),
    ("pending", "pyvrrp_notifications_pending"),
)
_EMAIL: Final = (
    ("sent", "pyvrrp_email_sent_total"),
    ("failures", "pyvrrp_email_failures_total"),
    ("retries", "pyvrrp_email_retries_total"),
    ("dropped", "pyvrrp_email_dropped_total"),
    ("pending", "pyvrrp_email_pending"),
    ("last_sent", "pyvrrp_email_last_sent_timestamp_seconds"),
)
_SCRIPT_VALUES: Final = (
    ("last_exit_status", "pyvrrp_script_last_exit_status"),
    ("last_duration", "pyvrrp_script_last_duration_seconds"),
    ("last_run", "pyvrrp_script_last_run_timestamp_seconds"),
    ("consecutive_successes", "pyvrrp_script_consecutive_successes"),
    ("consecutive_failures", "pyvrrp_script_consecutive_failures"),
    ("rise", "pyvrrp_script_rise"),
    ("fall", "pyvrrp_script_fall"),
    ("runs", "pyvrrp_script_runs_total"),
    ("failures", "pyvrrp_script_failures_total"),
    ("skipped", "pyvrrp_script_skipped_total"),
    ("timeouts", "pyvrrp_script_timeouts_total"),
)


# ---------------------------------------------------------------------------- rendering


def escape_label_value(value: str) -> str:
    """A label value as the text format writes it between double quotes."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: Number) -> str:
    if isinstance(value, int):
        return str(int(value))  # an IntEnum or other subclass writes its number too
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))  # the shortest text that reads back as the same float


class _Family:
    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self.samples: dict[tuple[str, ...], Number] = {}

    def add(self, labels: tuple[str, ...], value: Number | None) -> None:
        # First one wins: a duplicate series would make Prometheus reject the sample.
        if value is not None and labels not in self.samples:
            self.samples[labels] = value

    def lines(self) -> Iterable[str]:
        spec = self.spec
        yield f"# HELP {spec.name} {_escape_help(spec.help)}"
        yield f"# TYPE {spec.name} {spec.type}"
        for values, value in self.samples.items():
            if spec.labels:
                pairs = ",".join(
                    f'{name}="{escape_label_value(v)}"'
                    for name, v in zip(spec.labels, values, strict=True)
                )
                yield f"{spec.name}{{{pairs}}} {_format_value(value)}"
            else:
                yield f"{spec.name} {_format_value(value)}"


def _mapping(value: object) -> Mapping[Any, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _number(value: object) -> Number | None:
    """A sample value: numbers as they are, booleans as 1/0, anything else absent."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    return None


def _label(value: object) -> str:
    return "" if value is None else str(value)


def _sorted_items(value: object) -> list[tuple[str, Any]]:
    return sorted(((str(key), item) for key, item in _mapping(value).items()), key=_first)


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _counts(
    families: Mapping[str, _Family],
    name: str,
    labels: tuple[str, ...],
    counts: object,
    known: Sequence[str],
) -> None:
    """Counters by reason: every known reason (0 when absent), then any others the status has."""
    family = families[name]
    by_reason = _mapping(counts)
    for reason in known:
        family.add((*labels, reason), _number(by_reason.get(reason, 0)))
    for reason, value in _sorted_items(by_reason):
        family.add((*labels, reason), _number(value))


def _collect_instance(
    families: Mapping[str, _Family], name: str, instance: Mapping[Any, Any]
) -> tuple[str, ...]:
    labels = (
        name,
        _label(instance.get("vrid")),
        _label(instance.get("interface")),
        _label(instance.get("family")),
    )
    state = instance.get("state")
    for known in STATES:
        families["pyvrrp_instance_state"].add((*labels, known), int(state == known))
    if isinstance(state, str):
        # A state this version does not know still shows up, rather than all zeros.
        families["pyvrrp_instance_state"].add((*labels, state), 1)
    for key, metric in _INSTANCE_GAUGES:
        families[metric].add(labels, _number(instance.get(key)))
    master = _mapping(instance.get("master"))
    families["pyvrrp_instance_master_priority"].add(labels, _number(master.get("priority")))
    for item in _sequence(instance.get("trackers")):
        tracker = _mapping(item)
        tracker_labels = (*labels, _label(tracker.get("kind")), _label(tracker.get("name")))
        families["pyvrrp_tracker_priority_effect"].add(
            tracker_labels, _number(tracker.get("effect"))
        )
        families["pyvrrp_tracker_fault"].add(tracker_labels, _number(tracker.get("fault")))
    counters = instance.get("counters")
    if isinstance(counters, Mapping):
        for key, metric in _COUNTERS:
            families[metric].add(labels, _number(counters.get(key)))
        _counts(
            families,
            "pyvrrp_adverts_dropped_total",
            labels,
            counters.get("drops"),
            INSTANCE_DROP_REASONS,
        )
        families["pyvrrp_adverts_dropped_total"].add(
            (*labels, QUEUE_OVERFLOW), _number(counters.get("queue_overflows"))
        )
    # Which versions each peer speaks (migration from VRRPv2: docs/operations.md).
    for peer, item in _sorted_items(instance.get("peers")):
        entry = _mapping(item)
        for version, count in _sorted_items(entry.get("adverts")):
            families["pyvrrp_peer_adverts_received_total"].add(
                (*labels, peer, version), _number(count)
            )
        for version, at in _sorted_items(entry.get("last_seen")):
            families["pyvrrp_peer_last_advert_timestamp_seconds"].add(
                (*labels, peer, version), _number(at)
            )
    return labels


def _collect_script(families: Mapping[str, _Family], name: str, script: Mapping[Any, Any]) -> None:
    labels = (name,)
    good = script.get("good")
    if not isinstance(good, bool) and script.get("state") in ("good", "bad"):
        good = script.get("state") == "good"
    families["pyvrrp_script_good"].add(labels, _number(good))
    for key, metric in _SCRIPT_VALUES:
        families[metric].add(labels, _number(script.get(key)))


def _link(key: str) -> tuple[str, str]:
    """("eth0.4000", "ipv4") from the status key "eth0.4000/ipv4" (names never hold "/")."""
    interface, slash, family = key.rpartition("/")
    return (interface, family) if slash else (key, "")


def _collect(status: Mapping[str, Any]) -> dict[str, _Family]:
    families = {spec.name: _Family(spec) for spec in METRICS}
    families["pyvrrp_build_info"].add(
        (_label(status.get("router_id")), _label(status.get("version") or __version__)), 1
    )
    links: set[tuple[str, str]] = set()
    labels: dict[str, tuple[str, ...]] = {}
    for name, item in _sorted_items(status.get("instances")):
        instance = _mapping(item)
        labels[name] = _collect_instance(families, name, instance)
        links.add((_label(instance.get("interface")), _label(instance.get("family"))))
    interface_drops = status.get("interface_drops")
    if isinstance(interface_drops, Mapping):
        # Every (interface, family) an instance listens on gets its zeros, drops or not.
        by_link = {_link(key): value for key, value in _sorted_items(interface_drops)}
        for link in sorted(links | by_link.keys()):
            _counts(
                families,
                "pyvrrp_interface_adverts_dropped_total",
                link,
                by_link.get(link),
                INTERFACE_DROP_REASONS,
            )
    for name, item in _sorted_items(status.get("notifications")):
        counts = _mapping(item)
        # An instance's notifications carry its labels, for joins with its other series.
        instance_labels = labels.get(name, (name, "", "", ""))
        for key, metric in _NOTIFICATIONS:
            families[metric].add(instance_labels, _number(counts.get(key)))
    email = status.get("email")
    if isinstance(email, Mapping):  # the daemon's mailer (a library's Node has none)
        for key, metric in _EMAIL:
            families[metric].add((), _number(email.get(key)))
    for name, script in _sorted_items(status.get("scripts")):
        _collect_script(families, name, _mapping(script))
    return families


@attrs.frozen
class ProcessStats:
    """The process metrics, as prometheus-client's process collector reads them from /proc.

    A value that could not be read is None, and its metric is left out.
    """

    cpu_seconds: float | None = None
    resident_memory_bytes: int | None = None
    virtual_memory_bytes: int | None = None
    start_time_seconds: float | None = None
    open_fds: int | None = None
    max_fds: int | None = None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def read_process_stats(proc: str = "/proc") -> ProcessStats:
    """This process's CPU time, memory, start time and file descriptors, from ``proc``.

    Reads a few small procfs files synchronously, as prometheus-client does: procfs answers
    from memory, and a scrape is rare. Anything missing (not Linux) is None.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    page_size = os.sysconf("SC_PAGE_SIZE")
    values: dict[str, Any] = {}
    stat = _read(f"{proc}/self/stat")
    boot = _read(f"{proc}/stat")
    # proc(5): the fields after "(comm)", which may itself hold spaces and parentheses.
    fields = stat[stat.rfind(")") + 2 :].split() if stat else []
    with contextlib.suppress(ValueError, IndexError):
        values["cpu_seconds"] = (int(fields[11]) + int(fields[12])) / ticks
    with contextlib.suppress(ValueError, IndexError):
        values["virtual_memory_bytes"] = int(fields[20])
        values["resident_memory_bytes"] = int(fields[21]) * page_size
    if boot is not None:
        btime = [line.split()[1] for line in boot.splitlines() if line.startswith("btime ")]
        with contextlib.suppress(ValueError, IndexError):
            values["start_time_seconds"] = int(btime[0]) + int(fields[19]) / ticks
    with contextlib.suppress(OSError):
        values["open_fds"] = len(os.listdir(f"{proc}/self/fd"))
    for line in (_read(f"{proc}/self/limits") or "").splitlines():
        if line.startswith("Max open files"):
            with contextlib.suppress(ValueError, IndexError):
                values["max_fds"] = int(line.split()[3])  # "unlimited" stays absent
    return ProcessStats(**values)


def _process_samples(families: Mapping[str, _Family], stats: ProcessStats) -> None:
    families["process_cpu_seconds_total"].add((), stats.cpu_seconds)
    families["process_resident_memory_bytes"].add((), stats.resident_memory_bytes)
    families["process_virtual_memory_bytes"].add((), stats.virtual_memory_bytes)
    families["process_start_time_seconds"].add((), stats.start_time_seconds)
    families["process_open_fds"].add((), stats.open_fds)
    families["process_max_fds"].add((), stats.max_fds)


def render(status: Mapping[str, Any], *, process: ProcessStats | None = None) -> str:
    """The text exposition (format 0.0.4) of a status snapshot, and of ``process`` if given.

    Every family of :data:`METRICS` is written, in that order, with its HELP and TYPE lines
    even when it has no sample (no scripts configured); the process families only with
    ``process``. Series are ordered by instance, script and interface name, then by the
    fixed order of states and drop reasons. Missing or mistyped fields of the status leave
    their series out; they never raise.
    """
    families = _collect(status)
    if process is not None:
        _process_samples(families, process)
    lines: list[str] = []
    for spec in METRICS:
        if process is None and spec.name.startswith(_PROCESS_PREFIX):
            continue
        lines.extend(families[spec.name].lines())
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- HTTP


class MetricsError(EnvironmentProblem):
    """The metrics endpoint cannot listen; the message says why and what to change.

    An :class:`~pyvrrp.runtime.errors.EnvironmentProblem`: the daemon exits with status 3.
    """


_INDEX: Final = (
    b"<!DOCTYPE html>\n<html><head><title>pyvrrp</title></head>\n"
    b'<body><h1>pyvrrp</h1><p>Prometheus metrics are at <a href="/metrics">/metrics</a>.</p>'
    b"</body></html>\n"
)


async def serve_metrics(
    host: str,
    port: int,
    status: Callable[[], Mapping[str, Any]],
    *,
    process_metrics: bool = True,
    request_timeout: float = REQUEST_TIMEOUT,
    send_timeout: float = SEND_TIMEOUT,
    max_clients: int = MAX_CLIENTS,
    max_request_head: int = MAX_REQUEST_HEAD,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve Prometheus metrics over HTTP on ``host``:``port`` until cancelled.

    ``host`` is an address (IPv6 without brackets) or a name (every address it resolves to
    is served); ``status`` returns the status snapshot, called once per scrape.
    ``GET /metrics`` answers 200 with :func:`render`'s text (plus the process metrics unless
    ``process_metrics`` is False, for a program that exports its own); ``GET /`` a pointer
    to it; other paths 404; other methods 405; a malformed request 400, a head larger than
    ``max_request_head`` bytes 431, one not complete within ``request_timeout`` seconds 408;
    more than ``max_clients`` connections at once 503. ``HEAD`` works; every connection
    closes after one answer (:mod:`pyvrrp.runtime.httpserver`).

    Reports itself started (``nursery.start``) with the bound (address, port) pairs once
    clients can connect. Raises :class:`MetricsError` when it cannot listen (the port is in
    use, the address is not local, the name does not resolve).
    """
    listeners = await listen(
        host, port, purpose="metrics", advice="change global.metrics_listen", error=MetricsError
    )

    def metrics() -> bytes:
        process = read_process_stats() if process_metrics else None
        return render(status(), process=process).encode("utf-8")

    pages = {
        "/": Page("text/html; charset=utf-8", lambda: _INDEX),
        "/metrics": Page(CONTENT_TYPE, metrics, what="the status"),
    }
    bound = [listener.socket.getsockname()[:2] for listener in listeners]
    log.info("metrics: serving http://%s/metrics", ", ".join(display_address(*b) for b in bound))
    task_status.started(bound)
    await serve_pages(
        listeners,
        pages,
        name="metrics",
        home="/metrics",
        not_found="not found; Prometheus metrics are at /metrics",
        request_timeout=request_timeout,
        send_timeout=send_timeout,
        max_clients=max_clients,
        max_request_head=max_request_head,
    )
