"""parse_node() gives a NodeConfig or a ConfigError for any input, never anything else.

This is h11's fuzzing invariant applied to configuration: garbage either parses or raises the
library's own error.
"""

from __future__ import annotations

import datetime
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyvrrp.core.config import ConfigError, NodeConfig, parse_node

EXAMPLE = tomllib.loads(
    (Path(__file__).parents[2] / "docs" / "examples" / "node-a.toml").read_text()
)

# Real key names make the fuzzer reach deep into the validation rules.
KEYS = [
    "global", "scripts", "instances", "routes", "rules", "sync_groups", "router_id",
    "control_socket", "state_dir", "metrics_listen", "log_format", "command", "interval",
    "timeout", "fall", "rise", "weight", "user", "interface", "vrid", "priority", "state",
    "advert_interval", "preempt", "preempt_delay", "accept", "ipv4_checksum", "unicast_source",
    "unicast_peers", "addresses", "excluded_addresses", "track_interfaces", "track_scripts",
    "virtual_routes", "virtual_rules", "notify_master", "notify", "notify_user", "garp_repeat",
    "garp_delay", "garp_refresh", "address", "dev", "label", "scope", "name", "to", "via",
    "src", "table", "metric", "from", "iif", "oif", "family", "vip58", "chk",
    "version", "auth_pass", "unicast_peers_only", "email", "log_level", "watch_config",
    "script_user", "script_group", "server", "starttls", "username", "password_file", "lookup",
]  # fmt: skip

SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-300, max_value=300),
    st.sampled_from([10**400, -(10**400), 2**64, -(2**63)]),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(
        [
            "default", "master", "backup", "eth0", "fe80::1/64", "1.2.3.58/29", "10.0.0.0/8",
            "2001:db8::1", "192.168.200.1", "127.0.0.1:9650", "[::1]:0", "/run/x", "ipv6",
            "message-only", "chk", "vip58", "eth0:1", "global", "json", "", "1.2.3.63/29",
            "2+3", "main", "vswitch", "unspec", "ops@example.com", "secret12", "debug",
        ]
    ),
    st.datetimes(),
    st.dates(),
    st.times(),
)  # fmt: skip

VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children, max_size=5
        ),
    ),
    max_leaves=30,
)


def _parses_or_config_error(data: object) -> None:
    try:
        result = parse_node(data)  # type: ignore[arg-type]
    except ConfigError as error:
        problems = error.problems
    else:
        assert isinstance(result, NodeConfig)
        return
    assert problems
    for problem in problems:
        assert isinstance(problem.path, str)
        assert problem.path
        assert isinstance(problem.message, str)
        assert problem.message


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(VALUES)
def test_random_documents_give_a_node_or_a_config_error(data: object) -> None:
    _parses_or_config_error(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEYS), VALUES, VALUES)
def test_random_global_and_email_around_a_valid_instance(
    key: str, value: object, email: object
) -> None:
    instance = {**EXAMPLE["instances"]["vip58"], "email": True, "version": 2}
    data = {**EXAMPLE, "global": {key: value, "email": email}, "instances": {"vip58": instance}}
    _parses_or_config_error(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEYS), VALUES)
def test_one_random_value_in_a_valid_instance(key: str, value: object) -> None:
    instance = dict(EXAMPLE["instances"]["vip58"])
    instance[key] = value
    _parses_or_config_error({**EXAMPLE, "instances": {"vip58": instance}})


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEYS), VALUES)
def test_one_random_value_in_a_valid_route_rule_and_script(key: str, value: object) -> None:
    route = {**EXAMPLE["routes"][1], key: value}
    rule = {**EXAMPLE["rules"][0], key: value}
    script = {**EXAMPLE["scripts"]["chk_nginx_ingress"], key: value}
    data: Mapping[str, object] = {
        **EXAMPLE,
        "routes": [route],
        "rules": [rule],
        "scripts": {"chk_nginx_ingress": script},
    }
    _parses_or_config_error(data)


def test_dates_and_times_are_type_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_node({"global": {"router_id": datetime.date(2024, 4, 1)}})
    assert str(caught.value.problems[0]) == "global.router_id: expected a string, got a date"
