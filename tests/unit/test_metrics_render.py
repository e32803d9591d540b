"""The Prometheus text renderer, and the docs built on its metric names.

A small strict parser of the text exposition format 0.0.4 (:func:`parse_exposition`, also
used by the server tests) checks everything the renderer writes: HELP then TYPE once per
family, samples contiguous under their family, valid names, escapes and values, no duplicate
series, ``_total`` on counters. docs/metrics.md, docs/grafana-dashboard.json and
docs/alerts.yml are checked against :data:`pyvrrp.runtime.metrics.METRICS`: every metric
and label they name is one the renderer emits.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyvrrp import __version__
from pyvrrp.core.packet import DropReason
from pyvrrp.runtime.metrics import (
    INSTANCE_DROP_REASONS,
    INTERFACE_DROP_REASONS,
    METRICS,
    QUEUE_OVERFLOW,
    STATES,
    ProcessStats,
    escape_label_value,
    read_process_stats,
    render,
)

DOCS = Path(__file__).parents[2] / "docs"
SPECS = {spec.name: spec for spec in METRICS}
PROCESS_NAMES = [spec.name for spec in METRICS if spec.name.startswith("process_")]
# Labels Prometheus adds to every scraped series, and its synthetic per-target series.
# Added by Prometheus (instance, job) or by the scrape config (cluster: docs/metrics.md,
# "Scraping"), not by the renderer.
TARGET_LABELS = {"instance", "job", "cluster"}
SYNTHETIC_METRICS = {"up"}

# ---------------------------------------------------------------------------- the parser

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_VALUE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class ExpositionError(AssertionError):
    """The text is not valid (strict) Prometheus text exposition."""


@dataclass
class Family:
    """One parsed metric family."""

    name: str
    type: str
    help: str
    samples: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def value(self, **labels: str) -> float:
        """The value of the one sample whose labels include ``labels``."""
        found = [v for key, v in self.samples.items() if labels.items() <= dict(key).items()]
        if len(found) != 1:
            raise KeyError(f"{len(found)} samples of {self.name} match {labels}")
        return found[0]


def _unescape(text: str, *, quote: bool) -> str:
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None or escaped not in _ESCAPES or (escaped == '"' and not quote):
                raise ExpositionError(f"bad escape in {text!r}")
            out.append(_ESCAPES[escaped])
        else:
            out.append(char)
    return "".join(out)


def _labels(text: str, line: str) -> tuple[tuple[str, str], ...]:
    """Parse ``name="value",...`` (the inside of the braces)."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        name = _LABEL_NAME.match(text, position)
        if name is None or text[name.end() : name.end() + 2] != '="':
            raise ExpositionError(f"bad label at column {position}: {line!r}")
        start = position = name.end() + 2
        while position < len(text) and text[position] != '"':
            position += 2 if text[position] == "\\" else 1
        if position >= len(text):
            raise ExpositionError(f"unterminated label value: {line!r}")
        pairs.append((name.group(), _unescape(text[start:position], quote=True)))
        position += 1
        if position < len(text):
            if text[position] != ",":
                raise ExpositionError(f"expected a comma after a label: {line!r}")
            position += 1
            if position == len(text):
                raise ExpositionError(f"trailing comma: {line!r}")
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ExpositionError(f"repeated label name: {line!r}")
    return tuple(pairs)


def parse_exposition(text: str) -> dict[str, Family]:
    """Parse the text exposition format strictly, as pyvrrp writes it.

    Stricter than Prometheus: every family has HELP then TYPE and only counters and gauges,
    no comments or blank lines or timestamps, counters end in ``_total``.
    """
    if not text.endswith("\n"):
        raise ExpositionError("the text must end with a newline")
    families: dict[str, Family] = {}
    current: Family | None = None
    lines = text[:-1].split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            type_line = lines[index + 1] if index + 1 < len(lines) else ""
            kind = type_line.removeprefix(f"# TYPE {name} ")
            if not _NAME.fullmatch(name) or name in families:
                raise ExpositionError(f"bad or repeated family {name!r}")
            if kind == type_line or kind not in ("counter", "gauge"):
                raise ExpositionError(f"HELP of {name} not followed by its TYPE: {type_line!r}")
            if (kind == "counter") != name.endswith("_total"):
                raise ExpositionError(f"{name}: counters, and only counters, end in _total")
            current = families[name] = Family(name, kind, _unescape(help_text, quote=False))
            index += 2
            continue
        if line.startswith("#") or not line:
            raise ExpositionError(f"unexpected line {line!r}")
        match = re.fullmatch(r"([^{ ]+)(?:\{(.*)\})? (\S+)", line)
        if match is None:
            raise ExpositionError(f"malformed sample {line!r}")
        name, labels_text, value = match.groups()
        if current is None or name != current.name:
            raise ExpositionError(f"sample outside its family: {line!r}")
        if not _VALUE.fullmatch(value):
            raise ExpositionError(f"bad value {value!r}")
        labels = _labels(labels_text, line) if labels_text else ()
        if labels in current.samples:
            raise ExpositionError(f"duplicate series {line!r}")
        current.samples[labels] = float(value)
        index += 1
    return families


def sample_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


# ---------------------------------------------------------------------------- fixtures


def snapshot() -> dict[str, Any]:
    """The status dict of the contract (as ``pyvrrp status --json`` prints it)."""
    return {
        "router_id": "node-a",
        "pid": 1234,
        "version": "0.1.0",
        "uptime": 12.5,
        "instances": {
            "vip58": {
                "state": "MASTER",
                "in_state_for": 8.1,
                "last_transition": 1764250000.123,
                "interface": "eth0.4000",
                "vrid": 58,
                "family": "ipv4",
                "base_priority": 100,
                "effective_priority": 40,
                "maintenance": False,
                "faults": [],
                "trackers": [
                    {
                        "kind": "script",
                        "name": "chk_nginx_ingress",
                        "weight": -60,
                        "state": "bad",
                        "effect": -60,
                        "fault": False,
                        "implicit": False,
                    }
                ],
                "master": {"address": "192.168.200.1", "priority": 100},
                "advert_interval": 1.0,
                "master_advert_interval": 1.0,
                "holding_addresses": True,
                "addresses": ["1.2.3.58/29"],
                "excluded_addresses": ["2a03:4444:fff0:59:88::58/64"],
                "vrrp_version": "2+3",
                "peers": {
                    "192.168.200.2": {
                        "versions": [2, 3],
                        "adverts": {"2": 5, "3": 6},
                        "last_seen": {"2": 1764250001.25, "3": 1764250009.5},
                        "last_seen_ago": {"2": 8.5, "3": 0.25},
                    }
                },
                "counters": {
                    "adverts_sent": 10,
                    "adverts_received": 0,
                    "priority_zero_sent": 0,
                    "priority_zero_received": 0,
                    "became_master": 1,
                    "drops": {"checksum": 2},
                },
            }
        },
        "scripts": {
            "chk_nginx_ingress": {
                "state": "bad",
                "good": False,
                "consecutive_successes": 0,
                "consecutive_failures": 2,
                "rise": 2,
                "fall": 2,
                "last_exit_status": 22,
                "last_duration": 0.012,
                "last_run": 1764250000.5,
                "runs": 12,
                "failures": 2,
                "skipped": 0,
                "timeouts": 0,
            }
        },
        "interface_drops": {"eth0.4000/ipv4": {"unknown_vrid": 3}},
    }


L = 'vrrp_instance="vip58",vrid="58",interface="eth0.4000",family="ipv4"'
S = 'script="chk_nginx_ingress"'
EXPECTED_SAMPLES = [
    'pyvrrp_build_info{router_id="node-a",version="0.1.0"} 1',
    f'pyvrrp_instance_state{{{L},state="INIT"}} 0',
    f'pyvrrp_instance_state{{{L},state="BACKUP"}} 0',
    f'pyvrrp_instance_state{{{L},state="MASTER"}} 1',
    f'pyvrrp_instance_state{{{L},state="FAULT"}} 0',
    f"pyvrrp_instance_last_transition_timestamp_seconds{{{L}}} 1764250000.123",
    f"pyvrrp_instance_base_priority{{{L}}} 100",
    f"pyvrrp_instance_effective_priority{{{L}}} 40",
    f"pyvrrp_instance_master_priority{{{L}}} 100",
    f"pyvrrp_instance_advert_interval_seconds{{{L}}} 1.0",
    f"pyvrrp_instance_master_advert_interval_seconds{{{L}}} 1.0",
    f"pyvrrp_instance_holding_addresses{{{L}}} 1",
    f"pyvrrp_instance_maintenance{{{L}}} 0",
    f'pyvrrp_tracker_priority_effect{{{L},kind="script",tracker="chk_nginx_ingress"}} -60',
    f'pyvrrp_tracker_fault{{{L},kind="script",tracker="chk_nginx_ingress"}} 0',
    f"pyvrrp_adverts_sent_total{{{L}}} 10",
    f"pyvrrp_adverts_received_total{{{L}}} 0",
    f"pyvrrp_priority_zero_adverts_sent_total{{{L}}} 0",
    f"pyvrrp_priority_zero_adverts_received_total{{{L}}} 0",
    f"pyvrrp_transitions_to_master_total{{{L}}} 1",
    f'pyvrrp_adverts_dropped_total{{{L},reason="ttl"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="version"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="type"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="too_short"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="checksum"}} 2',
    f'pyvrrp_adverts_dropped_total{{{L},reason="count_zero"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="interval_zero"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="not_link_local"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="not_a_peer"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="own_advert"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="auth_type"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="auth_pass"}} 0',
    f'pyvrrp_adverts_dropped_total{{{L},reason="interval_mismatch"}} 0',
    f'pyvrrp_peer_adverts_received_total{{{L},peer="192.168.200.2",version="2"}} 5',
    f'pyvrrp_peer_adverts_received_total{{{L},peer="192.168.200.2",version="3"}} 6',
    f'pyvrrp_peer_last_advert_timestamp_seconds{{{L},peer="192.168.200.2",version="2"}}'
    " 1764250001.25",
    f'pyvrrp_peer_last_advert_timestamp_seconds{{{L},peer="192.168.200.2",version="3"}}'
    " 1764250009.5",
    'pyvrrp_interface_adverts_dropped_total{interface="eth0.4000",family="ipv4",'
    'reason="ip_header"} 0',
    'pyvrrp_interface_adverts_dropped_total{interface="eth0.4000",family="ipv4",'
    'reason="unknown_vrid"} 3',
    f"pyvrrp_script_good{{{S}}} 0",
    f"pyvrrp_script_last_exit_status{{{S}}} 22",
    f"pyvrrp_script_last_duration_seconds{{{S}}} 0.012",
    f"pyvrrp_script_last_run_timestamp_seconds{{{S}}} 1764250000.5",
    f"pyvrrp_script_consecutive_successes{{{S}}} 0",
    f"pyvrrp_script_consecutive_failures{{{S}}} 2",
    f"pyvrrp_script_rise{{{S}}} 2",
    f"pyvrrp_script_fall{{{S}}} 2",
    f"pyvrrp_script_runs_total{{{S}}} 12",
    f"pyvrrp_script_failures_total{{{S}}} 2",
    f"pyvrrp_script_skipped_total{{{S}}} 0",
    f"pyvrrp_script_timeouts_total{{{S}}} 0",
]


# ---------------------------------------------------------------------------- rendering


def test_the_contract_snapshot_renders_exactly_these_samples() -> None:
    assert sample_lines(render(snapshot())) == EXPECTED_SAMPLES


def test_each_family_has_help_and_type_before_its_samples() -> None:
    text = render(snapshot())
    assert text.startswith(
        "# HELP pyvrrp_build_info Always 1; labels: the pyvrrp version and this node's "
        "router_id.\n"
        "# TYPE pyvrrp_build_info gauge\n"
        'pyvrrp_build_info{router_id="node-a",version="0.1.0"} 1\n'
        "# HELP pyvrrp_instance_state "
    )
    families = parse_exposition(text)
    expected = [spec.name for spec in METRICS if spec.name not in PROCESS_NAMES]
    assert list(families) == expected
    for name, family in families.items():
        assert (family.type, family.help) == (SPECS[name].type, SPECS[name].help)
        for labels in family.samples:
            assert tuple(label for label, _ in labels) == SPECS[name].labels


def test_every_declared_metric_follows_the_naming_conventions() -> None:
    units = ("_seconds", "_bytes", "_total", "_info", "_fds", "_priority", "_status")
    for spec in METRICS:
        assert re.fullmatch(r"(pyvrrp|process)_[a-z0-9_]+", spec.name), spec.name
        assert (spec.type == "counter") == spec.name.endswith("_total"), spec.name
        assert "instance" not in spec.labels, "Prometheus owns the `instance` label"
        assert spec.help.endswith("."), spec.name
        assert not re.search(r"_(ms|milliseconds|minutes|kb|mb)\b", spec.name), spec.name
        if "time" in spec.name or "duration" in spec.name or "interval" in spec.name:
            assert spec.name.endswith(units), spec.name


def test_rendering_twice_or_from_reordered_dicts_gives_the_same_text() -> None:
    first = snapshot()
    first["instances"]["vip59"] = dict(first["instances"]["vip58"], vrid=59)
    first["instances"]["a_first"] = dict(first["instances"]["vip58"], vrid=1)
    reordered = copy.deepcopy(first)
    reordered["instances"] = dict(reversed(list(first["instances"].items())))
    assert render(first) == render(first) == render(reordered)
    states = parse_exposition(render(first))["pyvrrp_instance_state"]
    assert [dict(k)["vrrp_instance"] for k in states.samples][::4] == ["a_first", "vip58", "vip59"]


@pytest.mark.parametrize("state", STATES)
def test_state_gauge_has_one_series_per_state_and_only_the_current_one_is_1(state: str) -> None:
    status = snapshot()
    status["instances"]["vip58"]["state"] = state
    family = parse_exposition(render(status))["pyvrrp_instance_state"]
    assert {dict(k)["state"]: v for k, v in family.samples.items()} == {
        s: float(s == state) for s in ("INIT", "BACKUP", "MASTER", "FAULT")
    }


def test_a_state_this_version_does_not_know_is_shown_rather_than_all_zeros() -> None:
    status = snapshot()
    status["instances"]["vip58"]["state"] = "STOPPED"
    family = parse_exposition(render(status))["pyvrrp_instance_state"]
    assert {dict(k)["state"]: v for k, v in family.samples.items()} == {
        "INIT": 0,
        "BACKUP": 0,
        "MASTER": 0,
        "FAULT": 0,
        "STOPPED": 1,
    }


def test_label_values_are_escaped_and_parse_back_to_the_original() -> None:
    odd = 'we"ird\\name\nline two'
    assert escape_label_value(odd) == 'we\\"ird\\\\name\\nline two'
    status = snapshot()
    status["router_id"] = odd
    status["instances"] = {odd: status["instances"]["vip58"]}
    status["scripts"] = {"é ✓": status["scripts"]["chk_nginx_ingress"]}
    text = render(status)
    assert 'pyvrrp_build_info{router_id="we\\"ird\\\\name\\nline two",version="0.1.0"} 1' in (
        text.splitlines()
    )
    assert text.count("\n") == len(text.splitlines()), "no raw newline inside a line"
    families = parse_exposition(text)
    assert families["pyvrrp_build_info"].value(router_id=odd) == 1
    assert families["pyvrrp_instance_base_priority"].value(vrrp_instance=odd) == 100
    assert families["pyvrrp_script_runs_total"].value(script="é ✓") == 12


def test_help_text_escapes_backslash_and_newline() -> None:
    from pyvrrp.runtime.metrics import _escape_help

    assert _escape_help("a\\b\nc") == "a\\\\b\\nc"


def test_values_keep_integers_and_write_special_floats_as_go_does() -> None:
    status: dict[str, Any] = {
        "instances": {
            "x": {
                "base_priority": 255,
                "advert_interval": 0.01,
                "master_advert_interval": math.inf,
                "last_transition": math.nan,
                "effective_priority": -math.inf,
                "maintenance": True,
            }
        }
    }
    values = {line.split("{")[0]: line.rsplit(" ", 1)[1] for line in sample_lines(render(status))}
    assert values["pyvrrp_instance_base_priority"] == "255"
    assert values["pyvrrp_instance_advert_interval_seconds"] == "0.01"
    assert values["pyvrrp_instance_master_advert_interval_seconds"] == "+Inf"
    assert values["pyvrrp_instance_last_transition_timestamp_seconds"] == "NaN"
    assert values["pyvrrp_instance_effective_priority"] == "-Inf"
    assert values["pyvrrp_instance_maintenance"] == "1"


# ---------------------------------------------------------------------------- absent fields


def test_an_empty_status_renders_build_info_and_empty_families() -> None:
    families = parse_exposition(render({}))
    assert families["pyvrrp_build_info"].samples == {
        (("router_id", ""), ("version", __version__)): 1
    }
    assert all(not f.samples for name, f in families.items() if name != "pyvrrp_build_info")


def test_master_priority_is_absent_while_no_master_is_known() -> None:
    for master in (None, {}, {"address": None, "priority": None}):
        status = snapshot()
        status["instances"]["vip58"]["master"] = master
        assert not parse_exposition(render(status))["pyvrrp_instance_master_priority"].samples
    status = snapshot()
    del status["instances"]["vip58"]["master"]
    assert not parse_exposition(render(status))["pyvrrp_instance_master_priority"].samples


def test_missing_instance_fields_leave_their_series_out_but_keep_the_rest() -> None:
    status = {"instances": {"vip58": {"state": "BACKUP", "vrid": 58}}}
    families = parse_exposition(render(status))
    assert families["pyvrrp_instance_state"].value(state="BACKUP", vrid="58") == 1
    labels = dict(next(iter(families["pyvrrp_instance_state"].samples)))
    assert labels["interface"] == labels["family"] == ""
    for name in ("pyvrrp_instance_base_priority", "pyvrrp_adverts_sent_total"):
        assert not families[name].samples
    assert not families["pyvrrp_adverts_dropped_total"].samples, "no counters: no zeros either"
    assert not families["pyvrrp_interface_adverts_dropped_total"].samples


def test_a_script_before_its_first_result_has_no_exit_status_duration_or_run_time() -> None:
    status = {
        "scripts": {"chk": {"state": "unknown", "good": True, "runs": 0, "last_exit_status": None}}
    }
    families = parse_exposition(render(status))
    assert families["pyvrrp_script_good"].value(script="chk") == 1
    assert families["pyvrrp_script_runs_total"].value(script="chk") == 0
    for name in (
        "pyvrrp_script_last_exit_status",
        "pyvrrp_script_last_duration_seconds",
        "pyvrrp_script_last_run_timestamp_seconds",
    ):
        assert not families[name].samples


@pytest.mark.parametrize(("state", "expected"), [("good", 1), ("bad", 0)])
def test_script_good_falls_back_on_the_state_when_the_good_flag_is_missing(
    state: str, expected: int
) -> None:
    family = parse_exposition(render({"scripts": {"chk": {"state": state}}}))["pyvrrp_script_good"]
    assert family.value(script="chk") == expected


def test_duplicate_trackers_give_one_series() -> None:
    status = snapshot()
    tracker = status["instances"]["vip58"]["trackers"][0]
    status["instances"]["vip58"]["trackers"] = [tracker, dict(tracker, effect=-1)]
    family = parse_exposition(render(status))["pyvrrp_tracker_priority_effect"]
    assert list(family.samples.values()) == [-60]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    sorted(
        set(snapshot())
        | set(snapshot()["instances"]["vip58"])
        | set(snapshot()["scripts"]["chk_nginx_ingress"])
        | {"priority", "drops", "kind", "name", "effect", "fault"}
    )
)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """The contract snapshot with random values put at random known keys."""

    def mutate(changes: list[tuple[list[str], Any]]) -> dict[str, Any]:
        status = snapshot()
        for path, value in changes:
            target: Any = status
            for key in path[:-1]:
                if not isinstance(target, dict):
                    break
                target = target.setdefault(key, {})
            if isinstance(target, dict):
                target[path[-1]] = value
        return status

    paths = st.lists(KEYS, min_size=1, max_size=4).map(
        lambda keys: ["instances", "vip58", *keys] if keys[0] not in snapshot() else keys
    )
    return st.lists(st.tuples(paths, JSON), max_size=6).map(mutate)


@settings(max_examples=300, deadline=None)
@given(status=_mutations() | st.dictionaries(KEYS, JSON, max_size=6))
def test_any_json_shaped_status_renders_valid_exposition_without_raising(
    status: dict[str, Any],
) -> None:
    families = parse_exposition(render(status))
    assert next(iter(families)) == "pyvrrp_build_info"


# ---------------------------------------------------------------------------- drop reasons


def test_every_drop_reason_is_counted_per_instance_or_per_interface() -> None:
    assert set(INSTANCE_DROP_REASONS) | set(INTERFACE_DROP_REASONS) == {r.value for r in DropReason}
    assert not set(INSTANCE_DROP_REASONS) & set(INTERFACE_DROP_REASONS)
    assert set(INTERFACE_DROP_REASONS) == {"ip_header", "unknown_vrid"}


@pytest.mark.parametrize("reason", [r.value for r in DropReason])
def test_each_drop_reason_shows_its_count(reason: str) -> None:
    status = snapshot()
    status["instances"]["vip58"]["counters"]["drops"] = {reason: 7}
    status["interface_drops"] = {"eth0.4000/ipv4": {reason: 5}}
    families = parse_exposition(render(status))
    instance = families["pyvrrp_adverts_dropped_total"]
    interface = families["pyvrrp_interface_adverts_dropped_total"]
    assert instance.value(reason=reason) == 7
    assert interface.value(reason=reason, interface="eth0.4000", family="ipv4") == 5
    # The other known reasons are there as zeros, so rate() sees a first increment.
    assert {dict(k)["reason"] for k in instance.samples} == {*INSTANCE_DROP_REASONS, reason}
    assert {dict(k)["reason"] for k in interface.samples} == {*INTERFACE_DROP_REASONS, reason}
    assert sum(instance.samples.values()) == 7
    assert sum(interface.samples.values()) == 5


def test_an_unknown_drop_reason_is_shown_after_the_known_ones() -> None:
    status = snapshot()
    status["instances"]["vip58"]["counters"]["drops"] = {"queue_full": 4, "checksum": 1}
    family = parse_exposition(render(status))["pyvrrp_adverts_dropped_total"]
    reasons = [dict(k)["reason"] for k in family.samples]
    assert reasons == [*INSTANCE_DROP_REASONS, "queue_full"]
    assert family.value(reason="queue_full") == 4


def test_queue_overflows_are_drops_with_their_own_reason() -> None:
    status = snapshot()
    status["instances"]["vip58"]["counters"]["queue_overflows"] = 9
    family = parse_exposition(render(status))["pyvrrp_adverts_dropped_total"]
    assert [dict(k)["reason"] for k in family.samples] == [*INSTANCE_DROP_REASONS, QUEUE_OVERFLOW]
    assert family.value(reason=QUEUE_OVERFLOW) == 9


def test_interface_drops_have_zeros_for_every_link_an_instance_uses() -> None:
    status = snapshot()
    status["instances"]["vip58v6"] = dict(status["instances"]["vip58"], family="ipv6")
    status["interface_drops"] = {"eth1/ipv4": {"ip_header": 1}, "odd": {"unknown_vrid": 2}}
    family = parse_exposition(render(status))["pyvrrp_interface_adverts_dropped_total"]
    links = [(dict(k)["interface"], dict(k)["family"]) for k in family.samples]
    assert links == [
        ("eth0.4000", "ipv4"),
        ("eth0.4000", "ipv4"),
        ("eth0.4000", "ipv6"),
        ("eth0.4000", "ipv6"),
        ("eth1", "ipv4"),
        ("eth1", "ipv4"),
        ("odd", ""),
        ("odd", ""),
    ]
    assert family.value(interface="eth1", reason="ip_header") == 1
    assert family.value(interface="odd", reason="unknown_vrid") == 2


# ---------------------------------------------------------------------------- notifications


def test_notification_counters_carry_the_instance_labels() -> None:
    status = snapshot()
    status["notifications"] = {
        "vip58": {"queued": 4, "run": 3, "failed": 2, "timed_out": 1, "dropped": 0, "pending": 1},
        "gone": {"run": 5},
    }
    families = parse_exposition(render(status))
    expected = {"vrrp_instance": "vip58", "vrid": "58", "interface": "eth0.4000", "family": "ipv4"}
    assert families["pyvrrp_notifications_total"].value(**expected) == 3
    assert families["pyvrrp_notification_failures_total"].value(**expected) == 2
    assert families["pyvrrp_notification_timeouts_total"].value(**expected) == 1
    assert families["pyvrrp_notifications_dropped_total"].value(**expected) == 0
    assert families["pyvrrp_notifications_pending"].value(**expected) == 1
    # An instance missing from "instances" still shows, with empty labels.
    assert families["pyvrrp_notifications_total"].value(vrrp_instance="gone", vrid="") == 5
    assert not families["pyvrrp_notifications_pending"].samples.keys() - {tuple(expected.items())}


def test_email_counters_are_rendered_from_the_email_section() -> None:
    status = snapshot()
    status["email"] = {
        "enabled": True,
        "sent": 4,
        "failures": 3,
        "retries": 2,
        "dropped": 1,
        "pending": 1,
        "transitions": 9,
        "last_sent": 1764250000.25,
        "last_error": "127.0.0.1:25: Connection refused",
    }
    families = parse_exposition(render(status))
    assert families["pyvrrp_email_sent_total"].value() == 4
    assert families["pyvrrp_email_failures_total"].value() == 3
    assert families["pyvrrp_email_retries_total"].value() == 2
    assert families["pyvrrp_email_dropped_total"].value() == 1
    assert families["pyvrrp_email_pending"].value() == 1
    assert families["pyvrrp_email_last_sent_timestamp_seconds"].value() == 1764250000.25


def test_email_families_have_no_samples_without_a_mailer_nor_before_the_first_mail() -> None:
    families = parse_exposition(render(snapshot()))  # a library Node: no "email" section
    assert not families["pyvrrp_email_sent_total"].samples
    status = snapshot()
    status["email"] = {"enabled": False, "sent": 0, "failures": 0, "last_sent": None}
    families = parse_exposition(render(status))
    assert families["pyvrrp_email_sent_total"].value() == 0
    assert not families["pyvrrp_email_last_sent_timestamp_seconds"].samples


# ---------------------------------------------------------------------------- process


def fake_proc(root: Path, *, fds: int = 3) -> None:
    (root / "self" / "fd").mkdir(parents=True)
    for fd in range(fds):
        (root / "self" / "fd" / str(fd)).touch()
    # comm holds spaces and a parenthesis, as a process may name itself.
    rest = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 6 + ["1000", "123456789", "2000"]
    (root / "self" / "stat").write_text(f"42 (py vrrp) x) {' '.join(rest)} 0 0\n")
    (root / "stat").write_text("cpu  1 2 3\nbtime 1764000000\nprocesses 9\n")
    (root / "self" / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max open files            1024                 4096                 files\n"
    )


def test_process_stats_are_read_as_prometheus_client_reads_them(tmp_path: Path) -> None:
    fake_proc(tmp_path)
    ticks = os.sysconf("SC_CLK_TCK")
    stats = read_process_stats(str(tmp_path))
    assert stats == ProcessStats(
        cpu_seconds=300 / ticks,
        resident_memory_bytes=2000 * os.sysconf("SC_PAGE_SIZE"),
        virtual_memory_bytes=123456789,
        start_time_seconds=1764000000 + 1000 / ticks,
        open_fds=3,
        max_fds=1024,
    )
    families = parse_exposition(render({}, process=stats))
    assert list(families)[-len(PROCESS_NAMES) :] == PROCESS_NAMES
    assert families["process_virtual_memory_bytes"].value() == 123456789
    assert families["process_max_fds"].value() == 1024


def test_process_stats_of_this_process_are_plausible() -> None:
    stats = read_process_stats()
    assert stats.cpu_seconds is not None and stats.cpu_seconds > 0
    assert stats.resident_memory_bytes is not None and stats.resident_memory_bytes > 1 << 20
    assert stats.virtual_memory_bytes is not None
    assert stats.virtual_memory_bytes >= stats.resident_memory_bytes
    assert stats.start_time_seconds is not None
    assert time.time() - 86400 * 30 < stats.start_time_seconds <= time.time() + 1
    assert stats.open_fds is not None and stats.open_fds >= 3
    assert stats.max_fds is not None and stats.max_fds >= stats.open_fds


def test_process_stats_that_cannot_be_read_are_left_out(tmp_path: Path) -> None:
    stats = read_process_stats(str(tmp_path / "missing"))
    assert stats == ProcessStats()
    families = parse_exposition(render({}, process=stats))
    assert all(not families[name].samples for name in PROCESS_NAMES)


def test_unlimited_max_fds_is_left_out(tmp_path: Path) -> None:
    fake_proc(tmp_path)
    (tmp_path / "self" / "limits").write_text(
        "Max open files            unlimited            unlimited            files\n"
    )
    assert read_process_stats(str(tmp_path)).max_fds is None


def test_process_families_only_appear_when_asked_for() -> None:
    assert "process_" not in render(snapshot())
    assert "\nprocess_open_fds " in render(snapshot(), process=read_process_stats())


# ---------------------------------------------------------------------------- docs


def promql_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) a PromQL expression uses."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # no names inside strings
    metrics = set(re.findall(r"\b((?:pyvrrp|process)_[a-z0-9_]+|up)\b(?!\s*\()", expr))
    labels: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        labels.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for group in re.findall(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr
    ):
        labels.update(name.strip() for name in group.split(",") if name.strip())
    return metrics, labels


def check_promql(expr: str, where: str) -> None:
    metrics, labels = promql_names(expr)
    assert metrics, f"{where}: {expr!r} names no metric"
    unknown = metrics - SPECS.keys() - SYNTHETIC_METRICS
    assert not unknown, f"{where}: {expr!r} names metrics the renderer never emits: {unknown}"
    known = set().union(*(SPECS[m].labels for m in metrics if m in SPECS)) | TARGET_LABELS
    if metrics <= SYNTHETIC_METRICS:
        known = TARGET_LABELS
    assert labels <= known, f"{where}: {expr!r} uses labels {labels - known} it cannot have"


def test_promql_checker_catches_wrong_metric_and_label_names() -> None:
    check_promql('sum by (vrid) (pyvrrp_instance_state{state="MASTER"})', "ok")
    with pytest.raises(AssertionError, match="never emits"):
        check_promql("pyvrrp_instance_status", "bad")
    with pytest.raises(AssertionError, match="labels"):
        check_promql('pyvrrp_script_good{vrrp_instance="x"}', "bad")
    with pytest.raises(AssertionError, match="labels"):
        check_promql("sum by (node) (pyvrrp_script_good)", "bad")


def test_metrics_doc_documents_every_metric_and_no_other() -> None:
    text = (DOCS / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `((?:pyvrrp|process)_[a-z0-9_]+)` \|", text, re.M))
    assert documented == SPECS.keys()
    # Whole names only: not a prefix like pyvrrp_script_* nor the process_metrics= argument.
    mentioned = set(re.findall(r"\b((?:pyvrrp|process)_[a-z0-9_]*[a-z0-9])\b(?![=*])", text))
    assert mentioned - SPECS.keys() == set()
    for block in re.findall(r"```promql\n(.*?)```", text, re.S):
        for expr in re.split(r"\n\s*\n", block.strip()):
            expr = "\n".join(line for line in expr.splitlines() if not line.startswith("#"))
            if expr.strip():
                check_promql(expr, "docs/metrics.md")


def dashboard_exprs(node: object) -> Iterator[tuple[str, str]]:
    """(where, expr) for every target expression and variable query in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield "expr", value
            elif key in ("query", "definition") and isinstance(value, str) and "(" in value:
                yield key, value
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def test_grafana_dashboard_is_importable_json_using_only_emitted_metrics() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            check_promql(target["expr"], f"panel {panel['title']!r}")
            metrics, _ = promql_names(target["expr"])
            have = set().union(*(SPECS[m].labels for m in metrics if m in SPECS))
            for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
                assert label in have | TARGET_LABELS, (panel["title"], label)
    exprs = list(dashboard_exprs(dashboard))
    assert len(exprs) >= len(panels)
    for where, expr in exprs:
        check_promql(expr.replace("label_values", "lv"), f"dashboard {where}")
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("master", "state", "priority", "advert", "drop", "health check"):
        assert topic in titles, f"no panel about {topic}"


def alert_rules() -> list[dict[str, str]]:
    """Each rule of docs/alerts.yml as {key: text}: a parser of the simple YAML it uses."""
    rules: list[dict[str, str]] = []
    lines = (DOCS / "alerts.yml").read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        match = re.fullmatch(r"(\s*)(?:- )?(\w+):\s*(.*)", line)
        if match is None or line.lstrip().startswith("#"):
            continue
        indent, key, value = match.groups()
        if key == "alert":
            rules.append({})
        if not rules:
            continue
        if value in ("|", ">", "|-", ">-"):
            block = []
            while index < len(lines) and (
                not lines[index].strip()
                or len(lines[index]) - len(lines[index].lstrip()) > len(indent)
            ):
                block.append(lines[index].strip())
                index += 1
            value = " ".join(block).strip()
        rules[-1][key] = value.strip().strip("'\"")
    return rules


def test_alert_rules_use_only_emitted_metrics_and_say_what_to_do() -> None:
    text = (DOCS / "alerts.yml").read_text()
    assert text.startswith("groups:") or "\ngroups:\n" in text
    assert "\t" not in text
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert {"alert", "expr", "for", "severity", "summary", "description"} <= rule.keys(), rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
        check_promql(rule["expr"], f"alert {rule['alert']}")
    exprs = " ".join(rule["expr"] for rule in rules)
    for needed in (
        'state="MASTER"',
        'state="FAULT"',
        "pyvrrp_instance_maintenance",
        "pyvrrp_transitions_to_master_total",
        "pyvrrp_adverts_dropped_total",
        "pyvrrp_script_good",
    ):
        assert needed in exprs


# A real Prometheus rule engine, where promtool is installed (Debian package prometheus);
# not a dependency of the project.
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


@needs_promtool
def test_promtool_accepts_the_exposition_and_the_rules() -> None:
    assert PROMTOOL is not None
    lint = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=render(snapshot(), process=read_process_stats()),
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rules = subprocess.run(
        [PROMTOOL, "check", "rules", str(DOCS / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr


def _series(labels: Mapping[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"pyvrrp_instance_state{{{inner}}}", "values": values}


# The nodes of one cluster name the shared VLAN differently: the rules must still see one
# virtual router.
INTERFACES = {"a:9650": "enp0s31f6.4000", "b:9650": "enp9s0.4000"}
CLUSTER_LABELS = {"cluster": "ingress-4000", "vrid": "58", "family": "ipv4"}


def _state_series(node: str, states: str) -> list[dict[str, str]]:
    """One node's instance state as promtool input: one letter per sample (15 s apart).

    M, B, F: MASTER, BACKUP, FAULT; _: no sample (the node is not running yet).
    """
    letters = {"M": "MASTER", "B": "BACKUP", "F": "FAULT"}
    base = {"job": "pyvrrp", "instance": node, "vrrp_instance": "vip58", "vrid": "58"}
    base |= {"interface": INTERFACES[node], "family": "ipv4", "cluster": "ingress-4000"}

    def value(letter: str, state: str) -> str:
        return "_" if letter == "_" else str(int(letters[letter] == state))

    return [
        _series(base | {"state": state}, " ".join(value(c, state) for c in states))
        for state in ("MASTER", "BACKUP", "FAULT")
    ]


@needs_promtool
def test_alert_rules_fire_on_split_brain_and_no_master_but_not_on_a_failover(
    tmp_path: Path,
) -> None:
    """promtool test rules, samples every 15 s: failovers, a split brain, no master."""
    assert PROMTOOL is not None
    # promtool compares annotations too: test the rules without them.
    rules = tmp_path / "alerts.yml"
    rules.write_text(
        "".join(
            line
            for line in (DOCS / "alerts.yml").read_text().splitlines(keepends=True)
            if line.split(":")[0].strip() not in ("annotations", "summary", "description")
        )
    )
    scenario = {
        "rule_files": [str(rules)],
        "evaluation_interval": "15s",
        "tests": [
            {
                # a at 0..2m; a clean failover to b at 2m (one scrape shows both masters).
                "interval": "15s",
                "input_series": [
                    *_state_series("a:9650", "M" * 8 + "MB" + "B" * 30),
                    *_state_series("b:9650", "B" * 8 + "MM" + "M" * 30),
                ],
                "alert_rule_test": [
                    {"eval_time": t, "alertname": "PyvrrpSplitBrain", "exp_alerts": []}
                    for t in ("2m15s", "2m30s", "3m", "5m", "8m")
                ]
                # b is master, on another interface name than a: not "no master".
                + [
                    {"eval_time": t, "alertname": "PyvrrpNoMaster", "exp_alerts": []}
                    for t in ("1m", "5m", "8m")
                ],
            },
            {
                # b starts at 2m and takes over at once (an owner): a new series whose
                # only sample says MASTER, next to a's last MASTER sample.
                "interval": "15s",
                "input_series": [
                    *_state_series("a:9650", "M" * 8 + "MB" + "B" * 30),
                    *_state_series("b:9650", "_" * 8 + "MM" + "M" * 30),
                ],
                "alert_rule_test": [
                    {"eval_time": t, "alertname": "PyvrrpSplitBrain", "exp_alerts": []}
                    for t in ("2m", "2m15s", "2m30s", "3m", "5m")
                ],
            },
            {
                # a and b both MASTER from 2m on.
                "interval": "15s",
                "input_series": [
                    *_state_series("a:9650", "M" * 40),
                    *_state_series("b:9650", "B" * 8 + "M" * 32),
                ],
                "alert_rule_test": [
                    {"eval_time": "2m30s", "alertname": "PyvrrpSplitBrain", "exp_alerts": []},
                    {
                        "eval_time": "5m",
                        "alertname": "PyvrrpSplitBrain",
                        "exp_alerts": [{"exp_labels": {"severity": "critical", **CLUSTER_LABELS}}],
                    },
                ],
            },
            {
                # both in FAULT from 1m on: no master, and each instance in FAULT.
                "interval": "15s",
                "input_series": [
                    *_state_series("a:9650", "MMMM" + "F" * 36),
                    *_state_series("b:9650", "BBBB" + "F" * 36),
                ],
                "alert_rule_test": [
                    {"eval_time": "1m30s", "alertname": "PyvrrpNoMaster", "exp_alerts": []},
                    {
                        "eval_time": "5m",
                        "alertname": "PyvrrpNoMaster",
                        "exp_alerts": [{"exp_labels": {"severity": "critical", **CLUSTER_LABELS}}],
                    },
                ],
            },
        ],
    }
    # JSON is YAML: promtool reads the scenario without a YAML writer here.
    path = tmp_path / "alerts_test.yml"
    path.write_text(json.dumps(scenario, indent=1))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
