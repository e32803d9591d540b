"""The configuration model: defaults, conversions and every validation rule of parse_node()."""

from __future__ import annotations

import tomllib
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

import attrs
import pytest

from pyvrrp.core.config import (
    AddressConfig,
    ConfigError,
    GlobalConfig,
    InstanceConfig,
    NodeConfig,
    Problem,
    RouteConfig,
    RuleConfig,
    ScriptConfig,
    TrackInterface,
    TrackScript,
    parse_node,
    summary,
)
from pyvrrp.core.packet import ChecksumMode, Family

BASE_INSTANCE = {
    "interface": '"eth0.4000"',
    "vrid": "58",
    "addresses": '["1.2.3.58/29"]',
}


def instance_toml(name: str = "vip58", **keys: str | None) -> str:
    """An instance table: BASE_INSTANCE with ``keys`` (TOML literals) added or replaced;
    a key given as None is left out."""
    merged = {**BASE_INSTANCE, **keys}
    lines = [f"[instances.{name}]"] + [f"{k} = {v}" for k, v in merged.items() if v is not None]
    return "\n".join(lines) + "\n"


SCRIPTS = """
[scripts.chk_nginx]
command = ["/usr/bin/curl", "-fsS", "http://localhost/healthz"]
weight = -60

[scripts.chk_zero]
command = "exit 0"
"""


def parse(text: str) -> NodeConfig:
    return parse_node(tomllib.loads(text))


def parse_other(text: str) -> NodeConfig:
    """``text`` (no instance in it) parsed with a valid instance added."""
    return parse(with_an_instance(text))


def with_an_instance(text: str) -> str:
    """``text`` with a valid instance added if it has none (a node without is an error)."""
    if "[instances" in text or text.startswith("instances"):
        return text
    # Last: a table header ends the tables before it, and top-level keys must come first.
    return text + "\n" + instance_toml("other", vrid="200", addresses='["10.9.9.9/24"]')


def problems(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return list(caught.value.problems)


def test_problem_prints_as_path_colon_message() -> None:
    problem = Problem("instances.vip58.advert_interval", "50.0 is out of range 0.01..40.95")
    assert str(problem) == "instances.vip58.advert_interval: 50.0 is out of range 0.01..40.95"


def test_config_error_requires_at_least_one_problem() -> None:
    with pytest.raises(ValueError, match="at least one problem"):
        ConfigError([])


def test_config_error_message_lists_every_problem() -> None:
    error = ConfigError([Problem("a", "one"), Problem("b", "two")])
    assert str(error) == "a: one\nb: two"


def test_minimal_instance_gets_keepalived_defaults() -> None:
    node = parse(instance_toml())
    vip = node.instances["vip58"]
    assert vip == InstanceConfig(
        name="vip58",
        interface="eth0.4000",
        vrid=58,
        addresses=(AddressConfig(IPv4Interface("1.2.3.58/29")),),
    )
    assert vip.priority == 100
    assert vip.initial_state == "backup"
    assert vip.advert_interval_cs == 100
    assert vip.preempt is True
    assert vip.preempt_delay_us == 0
    assert vip.accept is True
    assert vip.ipv4_checksum is ChecksumMode.PSEUDO_HEADER
    assert (vip.garp_repeat, vip.garp_delay_us, vip.garp_refresh_us) == (5, 5_000_000, 0)
    assert vip.family is Family.IPV4
    assert vip.unicast is False
    assert node.global_ == GlobalConfig(None, "/run/pyvrrp.sock", "/var/lib/pyvrrp", None, "text")
    assert node.routes == ()
    assert node.rules == ()


@pytest.mark.parametrize(
    "text", ["", "# rendered from an empty template\n", '[global]\nrouter_id = "a"', "[instances]"]
)
def test_a_node_without_instances_is_an_error(text: str) -> None:
    # An empty file (a template that rendered empty) must not pass check, nor a reload.
    (problem,) = problems(text)
    assert problem.path == "instances"
    assert "no instance is configured" in problem.message


def test_summary_counts_instances_scripts_and_groups() -> None:
    assert summary(NodeConfig()) == "0 instances, 0 scripts, 0 sync groups"


def test_state_master_without_priority_is_the_owner_as_in_keepalived() -> None:
    vip = parse(instance_toml(state='"master"')).instances["vip58"]
    assert (vip.priority, vip.initial_state) == (255, "master")


def test_priority_255_without_state_starts_as_master() -> None:
    vip = parse(instance_toml(priority="255")).instances["vip58"]
    assert vip.initial_state == "master"


def test_state_master_with_priority_keeps_that_priority() -> None:
    vip = parse(instance_toml(state='"master"', priority="100")).instances["vip58"]
    assert (vip.priority, vip.initial_state) == (100, "master")


def test_addresses_without_prefix_are_host_addresses() -> None:
    vip = parse(instance_toml(addresses='["1.2.3.58"]', excluded_addresses='["2001:db8::58"]'))
    instance = vip.instances["vip58"]
    assert instance.addresses[0].address == IPv4Interface("1.2.3.58/32")
    assert instance.excluded_addresses[0].address == IPv6Interface("2001:db8::58/128")


def test_durations_are_exact_integer_microseconds_and_interval_centiseconds() -> None:
    text = SCRIPTS.replace("weight = -60", "weight = -60\ninterval = 0.1") + instance_toml(
        advert_interval="0.07", preempt_delay="2.5", garp_delay="0.3", garp_refresh="60"
    )
    node = parse(text)
    vip = node.instances["vip58"]
    assert vip.advert_interval_cs == 7
    assert vip.preempt_delay_us == 2_500_000
    assert vip.garp_delay_us == 300_000
    assert vip.garp_refresh_us == 60_000_000
    chk = node.scripts["chk_nginx"]
    assert (chk.interval_us, chk.timeout_us) == (100_000, 100_000)


def test_largest_advert_interval_fits_the_12_bit_field() -> None:
    assert parse(instance_toml(advert_interval="40.95")).instances["vip58"].advert_interval_cs == (
        4095
    )


def test_script_defaults_match_keepalived() -> None:
    script = parse_other('[scripts.s]\ncommand = "true"').scripts["s"]
    assert script == ScriptConfig("s", "true", 1_000_000, 1_000_000, 1, 1, 0, None)


def test_script_timeout_defaults_to_its_interval_when_constructed_directly() -> None:
    assert ScriptConfig("s", ("true",), interval_us=3_000_000).timeout_us == 3_000_000


def test_address_table_form_keeps_dev_label_and_scope() -> None:
    text = instance_toml(
        addresses='[{ address = "1.2.3.58/29", dev = "eth1", label = "eth1:v", scope = "global" }]'
    )
    address = parse(text).instances["vip58"].addresses[0]
    assert address == AddressConfig(IPv4Interface("1.2.3.58/29"), "eth1", "eth1:v", "global")


def test_trackers_bare_and_table_forms() -> None:
    text = SCRIPTS + instance_toml(
        track_interfaces='["eth0", { name = "dummy0", weight = -20 }]',
        track_scripts='["chk_nginx", { name = "chk_zero", weight = 10 }]',
    )
    vip = parse(text).instances["vip58"]
    assert vip.track_interfaces == (TrackInterface("eth0", 0), TrackInterface("dummy0", -20))
    assert vip.track_scripts == (TrackScript("chk_nginx", None), TrackScript("chk_zero", 10))


def test_unicast_instance() -> None:
    text = instance_toml(
        unicast_source='"192.168.200.1"', unicast_peers='["192.168.200.2", "192.168.200.3"]'
    )
    vip = parse(text).instances["vip58"]
    assert vip.unicast is True
    assert vip.unicast_source == IPv4Address("192.168.200.1")
    assert vip.unicast_peers == (IPv4Address("192.168.200.2"), IPv4Address("192.168.200.3"))


def test_unicast_peers_without_source_is_allowed() -> None:
    vip = parse(instance_toml(unicast_peers='["192.168.200.2"]')).instances["vip58"]
    assert vip.unicast
    assert vip.unicast_source is None


def test_ipv6_instance_with_link_local_first() -> None:
    text = instance_toml(addresses='["fe80::58/64", "2001:db8::58/64"]')
    vip = parse(text).instances["vip58"]
    assert vip.family is Family.IPV6


def test_virtual_default_route_takes_the_instance_family() -> None:
    text = instance_toml(virtual_routes='[{ to = "default", dev = "eth0.4000", table = 100 }]')
    route = parse(text).instances["vip58"].virtual_routes[0]
    assert route == RouteConfig(IPv4Network("0.0.0.0/0"), dev="eth0.4000", table=100)


def test_default_route_takes_the_family_of_its_gateway() -> None:
    text = '[[routes]]\nto = "default"\nvia = "fe80::1"\ndev = "eth0"\ntable = 100\nmetric = 5'
    route = parse_other(text).routes[0]
    assert route.to == IPv6Network("::/0")
    assert route.metric == 5


def test_virtual_rule_without_networks_takes_the_instance_family() -> None:
    text = instance_toml(virtual_rules='[{ iif = "eth0", table = 100 }]')
    rule = parse(text).instances["vip58"].virtual_rules[0]
    assert rule == RuleConfig(Family.IPV4, 100, iif="eth0")


def test_static_rule_with_explicit_family() -> None:
    rule = parse_other('[[rules]]\nfamily = "ipv6"\noif = "eth0"\ntable = 7\npriority = 0').rules[0]
    assert rule == RuleConfig(6, 7, oif="eth0", priority=0)


def test_notify_commands_argv_or_shell_string() -> None:
    text = instance_toml(
        notify_master='["/usr/local/bin/on-master", "vip58"]',
        notify='"logger -t pyvrrp"',
        notify_user='"nobody"',
    )
    vip = parse(text).instances["vip58"]
    assert vip.notify_master == ("/usr/local/bin/on-master", "vip58")
    assert vip.notify == "logger -t pyvrrp"
    assert vip.notify_backup is None
    assert vip.notify_user == "nobody"


def test_global_table() -> None:
    text = """
[global]
router_id = "machine-a"
control_socket = "/run/pv.sock"
state_dir = "/srv/pyvrrp"
metrics_listen = "[::1]:9650"
log_format = "json"
"""
    assert parse_other(text).global_ == GlobalConfig(
        "machine-a", "/run/pv.sock", "/srv/pyvrrp", ("::1", 9650), "json"
    )


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("127.0.0.1:9650", ("127.0.0.1", 9650)), ("localhost:1", ("localhost", 1))],
)
def test_metrics_listen_host_and_port(listen: str, expected: tuple[str, int]) -> None:
    assert parse_other(f'[global]\nmetrics_listen = "{listen}"').global_.metrics_listen == expected


def test_owner_may_track_with_weight_zero() -> None:
    text = SCRIPTS + instance_toml(
        priority="255",
        track_interfaces='["eth0", { name = "dummy0", weight = 0 }]',
        track_scripts='["chk_zero", { name = "chk_nginx", weight = 0 }]',
    )
    assert parse(text).instances["vip58"].priority == 255


def test_same_vrid_on_other_interface_or_family_is_allowed() -> None:
    text = (
        instance_toml()
        + instance_toml("v6", addresses='["fe80::58/64"]')
        + instance_toml("other", interface='"eth1"', addresses='["10.0.0.1"]')
    )
    assert list(parse(text).instances) == ["vip58", "v6", "other"]


def test_sync_groups_and_order_is_preserved() -> None:
    text = (
        instance_toml("b", vrid="2", addresses='["10.0.0.2"]')
        + instance_toml("a", vrid="1", addresses='["10.0.0.1"]')
        + '[sync_groups.g]\ninstances = ["a", "b"]\n'
    )
    node = parse(text)
    assert list(node.instances) == ["b", "a"]
    assert node.sync_groups["g"].instances == ("a", "b")
    assert summary(node) == "2 instances (b, a), 0 scripts, 1 sync group"


def test_node_mappings_are_read_only() -> None:
    node = parse(instance_toml())
    with pytest.raises(TypeError):
        node.instances["x"] = node.instances["vip58"]  # type: ignore[index]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        node.instances["vip58"].vrid = 1  # type: ignore[misc]


# Each invalid configuration: (id, TOML text, the one problem's path, a distinctive part of
# its message). Every case must produce exactly that one problem: no cascades.
# fmt: off
S = SCRIPTS
I = instance_toml  # noqa: E741
INVALID: list[tuple[str, str, str, str]] = [
    # [global]
    ("router-id-type", '[global]\nrouter_id = 5', "global.router_id",
     "expected a string, got an integer (5)"),
    ("socket-relative", '[global]\ncontrol_socket = "run/x.sock"', "global.control_socket",
     '"run/x.sock" is not an absolute path'),
    ("socket-too-long", f'[global]\ncontrol_socket = "/{"x" * 120}"', "global.control_socket",
     "longer than the 107 bytes a Unix socket path may have"),
    ("state-dir-empty", '[global]\nstate_dir = ""', "global.state_dir", "must not be empty"),
    ("listen-no-port", '[global]\nmetrics_listen = "127.0.0.1"', "global.metrics_listen",
     '"127.0.0.1" is not a listen address; write "HOST:PORT" or "[IPV6]:PORT"'),
    ("listen-port-0", '[global]\nmetrics_listen = "127.0.0.1:0"', "global.metrics_listen",
     'port "0" in "127.0.0.1:0" is not in range 1..65535'),
    ("listen-port-big", '[global]\nmetrics_listen = "[::1]:70000"', "global.metrics_listen",
     "is not in range 1..65535"),
    ("listen-v6-brackets", '[global]\nmetrics_listen = "::1:9650"', "global.metrics_listen",
     "put an IPv6 address in brackets"),
    ("listen-bad-v6", '[global]\nmetrics_listen = "[nope]:9650"', "global.metrics_listen",
     '"nope" in "[nope]:9650" is not an IPv6 address'),
    ("listen-bad-host", '[global]\nmetrics_listen = "a b:9650"', "global.metrics_listen",
     "is not an IP address or host name"),
    ("log-format", '[global]\nlog_format = "xml"', "global.log_format",
     '"xml" is not valid; expected "text" or "json"'),
    ("log-format-case", '[global]\nlog_format = "JSON"', "global.log_format",
     '"JSON" is not valid; write "json"'),
    ("global-typo", '[global]\nrouterid = "a"', "global.routerid",
     "unknown key; did you mean router_id?"),
    ("global-not-table", "global = 5", "global", "expected a table ([global]), got an integer"),
    ("state-dir-nul", '[global]\nstate_dir = "/var/\\u0000"', "global.state_dir",
     "contains a NUL character"),
    ("listen-v6-no-port", '[global]\nmetrics_listen = "[::1]9650"', "global.metrics_listen",
     '"[::1]9650" is not a listen address'),
    # [scripts.NAME]
    ("script-command-nul", '[scripts.s]\ncommand = "true\\u0000"', "scripts.s.command",
     "the command contains a NUL character"),
    ("script-argument-nul", '[scripts.s]\ncommand = ["/bin/x", "\\u0000"]', "scripts.s.command",
     "argument [1] contains a NUL character"),
    ("script-program-blank", '[scripts.s]\ncommand = [" ", "x"]', "scripts.s.command",
     "the program (argument [0]) is empty"),
    ("script-no-command", "[scripts.s]\ninterval = 1", "scripts.s.command",
     "missing: the program to run"),
    ("script-empty-argv", "[scripts.s]\ncommand = []", "scripts.s.command",
     "the command is an empty array"),
    ("script-blank-string", '[scripts.s]\ncommand = "  "', "scripts.s.command",
     "the command is empty"),
    ("script-relative-program", '[scripts.s]\ncommand = ["./chk.sh"]', "scripts.s.command",
     '"./chk.sh" is a relative path'),
    ("script-argv-not-strings", '[scripts.s]\ncommand = ["/bin/x", 1]', "scripts.s.command",
     "argument [1] is an integer (1); every argument must be a string"),
    ("script-command-number", "[scripts.s]\ncommand = 5", "scripts.s.command",
     "expected a command, got an integer (5)"),
    ("script-interval-zero", '[scripts.s]\ncommand = "x"\ninterval = 0', "scripts.s.interval",
     "0 is out of range: must be more than 0 and at most 86400"),
    ("script-interval-string", '[scripts.s]\ncommand = "x"\ninterval = "2s"',
     "scripts.s.interval", 'expected a number of seconds, got a string ("2s")'),
    ("script-interval-tiny", '[scripts.s]\ncommand = "x"\ninterval = 1e-9', "scripts.s.interval",
     "1e-09 rounds to 0 microseconds; must be more than 0"),
    ("script-timeout-nan", '[scripts.s]\ncommand = "x"\ntimeout = nan', "scripts.s.timeout",
     "nan is not a finite number of seconds"),
    ("script-fall-zero", '[scripts.s]\ncommand = "x"\nfall = 0', "scripts.s.fall",
     "0 is out of range 1..1000000"),
    ("script-rise-bool", '[scripts.s]\ncommand = "x"\nrise = true', "scripts.s.rise",
     "expected an integer 1..1000000, got a boolean (true)"),
    ("script-weight-range", '[scripts.s]\ncommand = "x"\nweight = 254', "scripts.s.weight",
     "254 is out of range -253..253"),
    ("script-user-empty", '[scripts.s]\ncommand = "x"\nuser = ""', "scripts.s.user",
     "must not be empty"),
    ("script-keepalived-key", '[scripts.s]\nscript = "x"\ncommand = "x"', "scripts.s.script",
     "unknown key; keepalived's script is command in pyvrrp"),
    ("script-bad-name", '[scripts."chk nginx"]\ncommand = "x"', 'scripts."chk nginx"',
     '"chk nginx" is not a valid script name'),
    ("script-not-table", "[scripts]\ns = 5", "scripts.s", "expected a table"),
    # [instances.NAME]: types and ranges
    ("interface-missing", I(interface=None), "instances.vip58.interface", "missing:"),
    ("interface-colon", I(interface='"eth0.4000:v"'), "instances.vip58.interface",
     '"eth0.4000:v" contains ":"; Linux interface names are 1..15 bytes'),
    ("interface-too-long", I(interface='"eth0.4000-vlan-x"'), "instances.vip58.interface",
     '"eth0.4000-vlan-x" is 16 bytes, too long'),
    ("interface-space", I(interface='"eth 0"'), "instances.vip58.interface", 'contains " "'),
    ("interface-slash", I(interface='"eth0/1"'), "instances.vip58.interface", 'contains "/"'),
    ("interface-dot", I(interface='".."'), "instances.vip58.interface",
     '".." is not a valid interface name'),
    ("interface-empty", I(interface='""'), "instances.vip58.interface", "must not be empty"),
    ("vrid-zero", I(vrid="0"), "instances.vip58.vrid", "0 is out of range 1..255"),
    ("vrid-256", I(vrid="256"), "instances.vip58.vrid", "256 is out of range 1..255"),
    ("vrid-bool", I(vrid="true"), "instances.vip58.vrid",
     "expected an integer 1..255, got a boolean (true)"),
    ("vrid-string", I(vrid='"58"'), "instances.vip58.vrid", 'got a string ("58")'),
    ("vrid-float", I(vrid="58.0"), "instances.vip58.vrid", "got a float (58.0)"),
    ("vrid-missing", I(vrid=None), "instances.vip58.vrid", "missing: the virtual router id"),
    ("priority-zero", I(priority="0"), "instances.vip58.priority", "0 is out of range 1..255"),
    ("priority-256", I(priority="256"), "instances.vip58.priority", "256 is out of range"),
    ("state-upper", I(state='"MASTER"'), "instances.vip58.state",
     '"MASTER" is not valid; write "master"'),
    ("state-unknown", I(state='"primary"'), "instances.vip58.state",
     'expected "backup" or "master"'),
    ("advert-too-big", I(advert_interval="50.0"), "instances.vip58.advert_interval",
     "50.0 is out of range 0.01..40.95"),
    ("advert-too-small", I(advert_interval="0.005"), "instances.vip58.advert_interval",
     "0.005 is out of range 0.01..40.95"),
    ("advert-not-centiseconds", I(advert_interval="0.015"), "instances.vip58.advert_interval",
     "0.015 is not a multiple of 0.01 s (advertisements carry the interval in centiseconds); "
     "use 0.01 or 0.02"),
    ("advert-inf", I(advert_interval="inf"), "instances.vip58.advert_interval",
     "inf is not a finite number"),
    ("preempt-string", I(preempt='"yes"'), "instances.vip58.preempt",
     'expected true or false, got a string ("yes")'),
    ("preempt-quoted-bool", I(preempt='"false"'), "instances.vip58.preempt",
     "(write true or false, without quotes)"),
    ("preempt-delay-big", I(preempt_delay="1001"), "instances.vip58.preempt_delay",
     "1001 is out of range 0..1000"),
    ("preempt-delay-negative", I(preempt_delay="-1"), "instances.vip58.preempt_delay",
     "-1 is out of range 0..1000"),
    ("accept-int", I(accept="1"), "instances.vip58.accept", "got an integer (1)"),
    ("accept-false", I(accept="false"), "instances.vip58.accept",
     "false is not supported yet: pyvrrp always accepts packets addressed to the virtual"),
    ("checksum-unknown", I(ipv4_checksum='"strict"'), "instances.vip58.ipv4_checksum",
     '"strict" is not valid; expected "pseudo-header" or "message-only"'),
    ("checksum-on-ipv6", I(addresses='["fe80::58/64"]', ipv4_checksum='"message-only"'),
     "instances.vip58.ipv4_checksum", '"message-only" applies to IPv4 only'),
    ("garp-repeat-zero", I(garp_repeat="0"), "instances.vip58.garp_repeat",
     "0 is out of range 1..100"),
    ("garp-repeat-big", I(garp_repeat="101"), "instances.vip58.garp_repeat",
     "101 is out of range 1..100"),
    ("garp-delay-negative", I(garp_delay="-0.5"), "instances.vip58.garp_delay",
     "-0.5 is out of range 0..86400"),
    ("garp-refresh-big", I(garp_refresh="86401"), "instances.vip58.garp_refresh",
     "86401 is out of range 0..86400"),
    ("instance-typo", I(advert_intervall="1.0"), "instances.vip58.advert_intervall",
     "unknown key; did you mean advert_interval?"),
    ("instance-keepalived-vips", I(virtual_ipaddress='["1.2.3.59"]'),
     "instances.vip58.virtual_ipaddress",
     "unknown key; keepalived's virtual_ipaddress is addresses in pyvrrp"),
    ("required-key-typo", I(vrid=None, vird="58"), "instances.vip58.vird",
     "unknown key; did you mean vrid?"),
    ("keepalived-name-for-required-key",
     I(addresses=None, virtual_ipaddress='["1.2.3.58/29"]'), "instances.vip58.virtual_ipaddress",
     "keepalived's virtual_ipaddress is addresses in pyvrrp"),
    ("instance-nopreempt", I(nopreempt="true"), "instances.vip58.nopreempt",
     "keepalived's nopreempt is preempt = false in pyvrrp"),
    ("instance-version", I(version="4"), "instances.vip58.version",
     '4 is not a VRRP version pyvrrp speaks; expected 3, 2 or "2+3"'),
    ("instance-unknown-no-close-match", I(zzz="1"), "instances.vip58.zzz",
     "unknown key; valid keys here: interface, vrid,"),
    ("instance-bad-name", I('"vip 58"'), 'instances."vip 58"',
     '"vip 58" is not a valid instance name'),
    ("instance-not-table", "[instances]\nvip58 = 1", "instances.vip58", "expected a table"),
    ("instances-not-table", "instances = 1", "instances", "expected a table"),
    # addresses
    ("addresses-missing", I(addresses=None), "instances.vip58.addresses",
     'missing: the virtual addresses, e.g. addresses = ["1.2.3.58/29"]'),
    ("addresses-empty", I(addresses="[]"), "instances.vip58.addresses",
     "is empty; an instance needs at least one address"),
    ("addresses-string", I(addresses='"1.2.3.58/29"'), "instances.vip58.addresses",
     'expected an array, got a string ("1.2.3.58/29")'),
    ("address-bad-ip", I(addresses='["1.2.3.58", "1.2.3.300/29"]'),
     "instances.vip58.addresses[1]",
     '"1.2.3.300/29" is not an IP address with an optional prefix length'),
    ("address-bad-prefix", I(addresses='["1.2.3.58/33"]'), "instances.vip58.addresses[0]",
     "is not an IP address with an optional prefix length"),
    ("address-multicast", I(addresses='["224.0.0.18"]'), "instances.vip58.addresses[0]",
     '"224.0.0.18" is a multicast address; a virtual address must be unicast'),
    ("address-unspecified", I(addresses='["0.0.0.0"]'), "instances.vip58.addresses[0]",
     '"0.0.0.0" is the unspecified address'),
    ("address-loopback", I(addresses='["127.0.0.2"]'), "instances.vip58.addresses[0]",
     "is a loopback address"),
    ("address-broadcast", I(addresses='["1.2.3.63/29"]'), "instances.vip58.addresses[0]",
     '"1.2.3.63/29" is the broadcast address of 1.2.3.56/29'),
    ("address-zone", I(addresses='["fe80::1%eth0/64"]'), "instances.vip58.addresses[0]",
     "has a zone index"),
    ("address-mixed-family", I(addresses='["1.2.3.58/29", "2001:db8::58/64"]'),
     "instances.vip58.addresses[1]",
     '"2001:db8::58/64" is IPv6 but this instance advertises IPv4 '
     "(instances.vip58.addresses[0]); an instance advertises one family: move it to "
     "excluded_addresses or to an instance of its own"),
    ("ipv6-first-not-link-local", I(addresses='["2001:db8::58/64"]'),
     "instances.vip58.addresses[0]",
     '"2001:db8::58/64" is not link-local, but the first address of an IPv6 advertisement '
     "must be (RFC 9568 §5.2.9); receivers drop advertisements that break this (keepalived "
     'only warns); put a link-local address first, e.g. "fe80::58/64"'),
    ("ipv6-link-local-not-first", I(addresses='["2001:db8::58/64", "fe80::58/64"]'),
     "instances.vip58.addresses[0]",
     'move "fe80::58/64" (instances.vip58.addresses[1]) first'),
    ("address-twice", I(addresses='["1.2.3.58/29", "1.2.3.58/32"]'),
     "instances.vip58.addresses[1]",
     "1.2.3.58 is listed twice (also at instances.vip58.addresses[0]); remove one"),
    ("excluded-repeats-address", I(excluded_addresses='["1.2.3.58/29"]'),
     "instances.vip58.excluded_addresses[0]", "1.2.3.58 is listed twice"),
    ("address-table-no-address", I(addresses='[{ dev = "eth1" }]'),
     "instances.vip58.addresses[0].address", "missing: the address"),
    ("address-label-prefix", I(addresses='[{ address = "1.2.3.58", label = "eth1:v" }]'),
     "instances.vip58.addresses[0].label",
     '"eth1:v" must start with the device name and a colon, e.g. "eth0.4000:1"'),
    ("address-label-dev", I(addresses='[{ address = "1.2.3.58", dev = "eth1", label = "x" }]'),
     "instances.vip58.addresses[0].label", 'e.g. "eth1:1"'),
    ("address-label-long",
     I(addresses='[{ address = "1.2.3.58", label = "eth0.4000:vip58x" }]'),
     "instances.vip58.addresses[0].label", "is longer than 15 bytes (a kernel limit)"),
    ("address-label-ipv6",
     I(addresses='["fe80::1/64", { address = "2001:db8::1", label = "eth0.4000:v" }]'),
     "instances.vip58.addresses[1].label", "IPv6 addresses have no labels"),
    ("address-scope", I(addresses='[{ address = "1.2.3.58", scope = "universe" }]'),
     "instances.vip58.addresses[0].scope",
     '"universe" is not valid; expected "global" or "site" or "link" or "host"'),
    ("address-table-typo", I(addresses='[{ address = "1.2.3.58", lable = "eth0.4000:a" }]'),
     "instances.vip58.addresses[0].lable", "did you mean label?"),
    ("address-dev-invalid", I(addresses='[{ address = "1.2.3.58", dev = "a:b" }]'),
     "instances.vip58.addresses[0].dev", 'contains ":"'),
    ("address-number", I(addresses="[5]"), "instances.vip58.addresses[0]",
     "expected a table (an address string or"),
    # unicast
    ("unicast-source-without-peers", I(unicast_source='"192.168.200.1"'),
     "instances.vip58.unicast_source",
     "is set but unicast_peers is missing; list the other routers in unicast_peers (pyvrrp "
     "never falls back to multicast)"),
    ("unicast-peers-empty", I(unicast_source='"192.168.200.1"', unicast_peers="[]"),
     "instances.vip58.unicast_peers", "is empty, which would silently mean multicast"),
    ("unicast-peers-string", I(unicast_peers='"192.168.200.2"'), "instances.vip58.unicast_peers",
     "expected an array, got a string"),
    ("unicast-peer-family", I(unicast_peers='["fe80::2"]'), "instances.vip58.unicast_peers[0]",
     "fe80::2 is IPv6 but this instance advertises IPv4"),
    ("unicast-source-family", I(unicast_source='"fe80::1"', unicast_peers='["192.168.200.2"]'),
     "instances.vip58.unicast_source",
     "fe80::1 is IPv6 but this instance advertises IPv4; use this node's IPv4 address"),
    ("unicast-peer-is-source",
     I(unicast_source='"192.168.200.1"', unicast_peers='["192.168.200.2", "192.168.200.1"]'),
     "instances.vip58.unicast_peers[1]",
     "192.168.200.1 is the unicast_source itself; list only the other routers"),
    ("unicast-peer-twice", I(unicast_peers='["192.168.200.2", "192.168.200.2"]'),
     "instances.vip58.unicast_peers[1]", "192.168.200.2 is listed twice"),
    ("unicast-peer-multicast", I(unicast_peers='["224.0.0.18"]'),
     "instances.vip58.unicast_peers[0]", "is a multicast address; a unicast address is needed"),
    ("unicast-peer-with-prefix", I(unicast_peers='["192.168.200.2/24"]'),
     "instances.vip58.unicast_peers[0]", "is not an IP address (no prefix length here)"),
    ("unicast-source-is-a-vip", I(unicast_source='"1.2.3.58"', unicast_peers='["1.2.3.59"]'),
     "instances.vip58.unicast_source",
     "1.2.3.58 is a virtual address (instances.vip58.addresses[0]), which moves between "
     "nodes"),
    # trackers
    ("track-interface-twice", I(track_interfaces='["eth0", { name = "eth0", weight = -5 }]'),
     "instances.vip58.track_interfaces[1]",
     "duplicate tracked interface: the same as instances.vip58.track_interfaces[0]"),
    ("track-interface-weight", I(track_interfaces='[{ name = "eth0", weight = -254 }]'),
     "instances.vip58.track_interfaces[0].weight", "-254 is out of range -253..253"),
    ("track-interface-no-name", I(track_interfaces='[{ weight = -5 }]'),
     "instances.vip58.track_interfaces[0].name", "missing: the interface to track"),
    ("track-interface-bad-name", I(track_interfaces='["eth0:1"]'),
     "instances.vip58.track_interfaces[0]", 'contains ":"'),
    ("track-script-undefined", S + I(track_scripts='["chk_ngnix"]'),
     "instances.vip58.track_scripts[0]",
     "no script named chk_ngnix in [scripts] (defined: chk_nginx, chk_zero); "
     "did you mean chk_nginx?"),
    ("track-script-none-defined", I(track_scripts='["chk"]'),
     "instances.vip58.track_scripts[0]", "no script named chk in [scripts] (defined: none)"),
    ("track-script-bad-name", S + I(track_scripts='["chk nginx"]'),
     "instances.vip58.track_scripts[0]", '"chk nginx" is not a valid script name'),
    ("track-script-number", S + I(track_scripts="[1]"), "instances.vip58.track_scripts[0]",
     'expected a table (a script name or { name = "...", weight = -10 }), got an integer (1)'),
    ("track-interfaces-string", I(track_interfaces='"eth0"'), "instances.vip58.track_interfaces",
     'expected an array, got a string ("eth0")'),
    ("owner-with-broken-track-interfaces", I(priority="255", track_interfaces='"eth0"'),
     "instances.vip58.track_interfaces", "expected an array"),
    ("owner-with-broken-track-scripts", S + I(priority="255", track_scripts='"chk_nginx"'),
     "instances.vip58.track_scripts", "expected an array"),
    ("track-script-weight", S + I(track_scripts='[{ name = "chk_nginx", weight = 300 }]'),
     "instances.vip58.track_scripts[0].weight", "300 is out of range -253..253"),
    ("track-script-twice", S + I(track_scripts='["chk_nginx", "chk_nginx"]'),
     "instances.vip58.track_scripts[1]", "duplicate tracked script"),
    # owner and preemption rules
    ("owner-weighted-interface",
     I(priority="255", track_interfaces='[{ name = "eth0", weight = -10 }]'),
     "instances.vip58.track_interfaces[0].weight",
     "weight -10 on eth0 has no effect: an address owner's priority 255 is never changed by "
     "trackers; use weight = 0 (a failure means FAULT) or a priority below 255"),
    ("owner-script-override",
     S + I(priority="255", track_scripts='[{ name = "chk_zero", weight = 10 }]'),
     "instances.vip58.track_scripts[0].weight", "weight 10 on chk_zero has no effect"),
    ("owner-by-state-script-weight", S + I(state='"master"', track_scripts='["chk_nginx"]'),
     "instances.vip58.track_scripts[0]",
     "script chk_nginx has weight -60, which cannot change an address owner's priority 255 "
     '(state = "master" without priority); track it as { name = "chk_nginx", weight = 0 }'),
    ("owner-as-backup", I(priority="255", state='"backup"'), "instances.vip58.state",
     '"backup" contradicts priority 255: the address owner always starts as master'),
    # virtual routes and rules, static routes and rules
    ("route-no-to", I(virtual_routes='[{ via = "1.2.3.57" }]'),
     "instances.vip58.virtual_routes[0].to", 'missing: the destination: a network or "default"'),
    ("route-host-bits", I(virtual_routes='[{ to = "1.2.3.58/29" }]'),
     "instances.vip58.virtual_routes[0].to",
     '"1.2.3.58/29" has host bits set; did you mean "1.2.3.56/29"?'),
    ("route-bad-network", '[[routes]]\nto = "nowhere"', "routes[0].to",
     '"nowhere" is not an IP network (e.g. "1.2.3.56/29", "2001:db8::/64" or "default")'),
    ("route-via-family", I(virtual_routes='[{ to = "10.0.0.0/8", via = "2001:db8::1" }]'),
     "instances.vip58.virtual_routes[0].via",
     '"2001:db8::1" is IPv6 but the route is to IPv4 10.0.0.0/8'),
    ("route-src-family", '[[routes]]\nto = "::/0"\nsrc = "10.0.0.1"', "routes[0].src",
     '"10.0.0.1" is IPv4 but the route is to IPv6 ::/0'),
    ("route-link-local-via-without-dev", '[[routes]]\nto = "::/0"\nvia = "fe80::1"',
     "routes[0].via", 'the link-local gateway "fe80::1" needs dev'),
    ("route-table-zero", '[[routes]]\nto = "10.0.0.0/8"\ntable = 0', "routes[0].table",
     "0 is out of range 1..4294967295"),
    ("route-table-name", '[[routes]]\nto = "10.0.0.0/8"\ntable = "vswitch"', "routes[0].table",
     '"vswitch" is not a routing table this host names'),
    ("route-metric", '[[routes]]\nto = "10.0.0.0/8"\nmetric = -1', "routes[0].metric",
     "-1 is out of range 0..4294967295"),
    ("route-scope", '[[routes]]\nto = "10.0.0.0/8"\nscope = "nowhere"', "routes[0].scope",
     'expected "global" or "site" or "link" or "host"'),
    ("route-not-table", I(virtual_routes='["default"]'), "instances.vip58.virtual_routes[0]",
     'expected a table (a route, e.g. { to = "default", via = "1.2.3.57" }), got a string'),
    ("route-twice", '[[routes]]\nto = "10.0.0.0/8"\n[[routes]]\nto = "10.0.0.0/8"', "routes[1]",
     "duplicate route: the same as routes[0]; remove one"),
    ("route-default-ambiguous", '[[routes]]\nto = "default"\ndev = "eth0"', "routes[0].to",
     '"default" is ambiguous here; write "0.0.0.0/0" or "::/0", or give via or src'),
    ("route-typo", '[[routes]]\nto = "10.0.0.0/8"\ngateway = "10.0.0.1"', "routes[0].gateway",
     "unknown key; valid keys here: to, via, dev, table, metric, src, scope"),
    ("routes-not-array", '[routes]\nto = "10.0.0.0/8"', "routes", "expected an array, got a table"),
    ("rule-no-table", I(virtual_rules='[{ from = "1.2.3.56/29" }]'),
     "instances.vip58.virtual_rules[0].table", "missing: the routing table to look up"),
    ("rule-families-differ", '[[rules]]\nfrom = "10.0.0.0/8"\nto = "::/0"\ntable = 1',
     "rules[0].to", "::/0 is IPv6 but from (10.0.0.0/8) is IPv4; a rule matches one family"),
    ("rule-family-contradicts", '[[rules]]\nfrom = "10.0.0.0/8"\nfamily = "ipv6"\ntable = 1',
     "rules[0].family", '"ipv6" contradicts from = "10.0.0.0/8"'),
    ("rule-priority-range", '[[rules]]\nfrom = "10.0.0.0/8"\ntable = 1\npriority = 4294967296',
     "rules[0].priority", "4294967296 is out of range 0..4294967295"),
    ("rule-no-family", '[[rules]]\niif = "eth0"\ntable = 1', "rules[0]",
     'cannot tell the family: give from, to or family = "ipv4" | "ipv6"'),
    ("rule-from-all", '[[rules]]\nfrom = "all"\ntable = 1', "rules[0].from",
     "(omit the key to match any address)"),
    ("rule-host-bits", '[[rules]]\nfrom = "1.2.3.58/29"\ntable = 100', "rules[0].from",
     'did you mean "1.2.3.56/29"?'),
    ("rule-iif", '[[rules]]\nfrom = "10.0.0.0/8"\ntable = 1\niif = "eth 0"', "rules[0].iif",
     'contains " "'),
    ("rule-twice", '[[rules]]\nfrom = "10.0.0.0/8"\ntable = 1\n'
     '[[rules]]\nfrom = "10.0.0.0/8"\ntable = 1', "rules[1]", "duplicate rule"),
    ("rule-not-table", "rules = [1]", "rules[0]", "expected a table (a rule, e.g."),
    # notifications
    ("notify-empty", I(notify_master="[]"), "instances.vip58.notify_master",
     "the command is an empty array"),
    ("notify-number", I(notify="5"), "instances.vip58.notify", "expected a command"),
    ("notify-user-type", I(notify_user="0"), "instances.vip58.notify_user",
     "expected a string, got an integer (0)"),
    # across instances
    ("vrid-twice", I() + I("vip59", addresses='["1.2.3.59/29"]'), "instances.vip59.vrid",
     "VRID 58 is already used by instance vip58 on eth0.4000 for IPv4; a VRID must be unique "
     "per interface and family"),
    ("vip-in-two-instances", I()
     + I("vip59", vrid="59", addresses='["1.2.3.59"]', excluded_addresses='["1.2.3.58"]'),
     "instances.vip59.excluded_addresses[0]",
     "1.2.3.58 is also managed by instance vip58 (instances.vip58.addresses[0]); an address "
     "can belong to only one instance of a node"),
    # sync groups
    ("sync-undefined", I() + '[sync_groups.g]\ninstances = ["vip85"]',
     "sync_groups.g.instances[0]", 'no instance named "vip85" in [instances]; did you mean vip58?'),
    ("sync-two-groups",
     I() + '[sync_groups.g]\ninstances = ["vip58"]\n[sync_groups.h]\ninstances = ["vip58"]',
     "sync_groups.h.instances[0]",
     "vip58 is already in sync group g; an instance belongs to at most one sync group"),
    ("sync-twice", I() + '[sync_groups.g]\ninstances = ["vip58", "vip58"]',
     "sync_groups.g.instances[1]", "vip58 is listed twice in this group"),
    ("sync-no-instances", "[sync_groups.g]", "sync_groups.g.instances",
     "missing: the member instances"),
    ("sync-empty", "[sync_groups.g]\ninstances = []", "sync_groups.g.instances", "is empty"),
    ("sync-bad-name", I() + '[sync_groups."a b"]\ninstances = ["vip58"]', 'sync_groups."a b"',
     '"a b" is not a valid sync group name'),
    ("sync-group-not-table", "[sync_groups]\ng = 1", "sync_groups.g", "expected a table"),
    ("sync-groups-not-table", "sync_groups = 1", "sync_groups", "expected a table"),
    ("sync-instances-string", '[sync_groups.g]\ninstances = "vip58"', "sync_groups.g.instances",
     'expected an array, got a string ("vip58")'),
    ("sync-member-number", I() + "[sync_groups.g]\ninstances = [1]",
     "sync_groups.g.instances[0]", "expected a string, got an integer (1)"),
    ("sync-typo", I() + '[sync_groups.g]\ninstance = ["vip58"]', "sync_groups.g.instance",
     "did you mean instances?"),
    # top level
    ("top-keepalived", "[vrrp_instance.x]", "vrrp_instance",
     "unknown key; keepalived's vrrp_instance is [instances.NAME] in pyvrrp"),
    ("top-typo", "[instance.x]", "instance", "unknown key; did you mean instances?"),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "path", "message"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_configuration_is_reported_with_path_and_fix(
    text: str, path: str, message: str
) -> None:
    found = problems(with_an_instance(text))
    assert [p.path for p in found] == [path], found
    assert message in found[0].message


def test_there_are_many_distinct_invalid_configurations() -> None:
    assert len({case[0] for case in INVALID}) == len(INVALID) > 40


def test_exact_message_for_advert_interval_out_of_range() -> None:
    (problem,) = problems(instance_toml(advert_interval="50.0"))
    assert str(problem) == "instances.vip58.advert_interval: 50.0 is out of range 0.01..40.95"


def test_every_problem_is_reported_together() -> None:
    text = (
        '[global]\nlog_format = "xml"\n'
        + SCRIPTS.replace("weight = -60", "weight = -600")
        + instance_toml(vrid="300", advert_interval="0.015", addresses='["1.2.3.300"]')
        + instance_toml("vip59", addresses='["2001:db8::59/64"]', unicast_source='"1.1.1.1"')
        + '[[routes]]\nto = "default"\n'
        + '[sync_groups.g]\ninstances = ["vip5"]\n'
    )
    paths = [p.path for p in problems(text)]
    assert paths == [
        "global.log_format",
        "scripts.chk_nginx.weight",
        "instances.vip58.vrid",
        "instances.vip58.addresses[0]",
        # after the addresses: their family decides the version, which decides the range
        "instances.vip58.advert_interval",
        "instances.vip59.addresses[0]",
        "instances.vip59.unicast_source",
        "instances.vip59.unicast_source",
        "routes[0].to",
        "sync_groups.g.instances[0]",
    ]


def test_a_broken_instance_still_takes_part_in_node_wide_checks() -> None:
    # vip59 has a bad priority, but its VRID collision with vip58 is still found.
    text = instance_toml() + instance_toml("vip59", priority="0", addresses='["1.2.3.59"]')
    assert [p.path for p in problems(text)] == [
        "instances.vip59.priority",
        "instances.vip59.vrid",
    ]


def test_sync_group_naming_a_broken_instance_is_not_reported_twice() -> None:
    text = instance_toml(vrid="0") + '[sync_groups.g]\ninstances = ["vip58"]\n'
    assert [p.path for p in problems(text)] == ["instances.vip58.vrid"]


@pytest.mark.parametrize("data", [[], "x", 5, None])
def test_top_level_that_is_not_a_table(data: object) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_node(data)  # type: ignore[arg-type]
    assert caught.value.problems[0].path == "(top level)"


def test_non_string_keys_are_reported_not_crashed_on() -> None:
    data = {"instances": {1: {}}, "scripts": {2: {}}, "sync_groups": {3: {}}, 4: 5}
    with pytest.raises(ConfigError) as caught:
        parse_node(data)  # type: ignore[arg-type]
    assert [str(p) for p in caught.value.problems] == [
        "(top level): key 4 is not a string",
        "scripts: key 2 is not a string",
        "instances: key 1 is not a string",
        "sync_groups: key 3 is not a string",
    ]


@pytest.mark.parametrize("key", ["vrid", "advert_interval", "preempt_delay", "garp_delay"])
def test_huge_integer_is_out_of_range_and_shown_briefly(key: str) -> None:
    # TOML integers are 64-bit, but parse_node() accepts any Python object.
    with pytest.raises(ConfigError) as caught:
        parse_node({"instances": {"vip58": {**tomllib.loads(instance_toml())["instances"]["vip58"],
                                            key: 10**400}}})  # fmt: skip
    (problem,) = caught.value.problems
    assert problem.path == f"instances.vip58.{key}"
    assert problem.message.startswith("a very large integer is out of range ")
