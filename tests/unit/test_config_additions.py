"""The node.toml additions: VRRP version and auth_pass, unicast_peers_only, log_level,
watch_config, script_user/script_group, e-mail, keepalived-style instance names, routing
tables by name, and the warnings channel."""

from __future__ import annotations

import tomllib
from ipaddress import IPv4Address

import pytest

from pyvrrp.core.config import (
    ConfigError,
    EmailConfig,
    GlobalConfig,
    InstanceConfig,
    NodeConfig,
    Problem,
    VrrpVersion,
    parse_node,
)
from pyvrrp.runtime.node import router_params

V4 = {"interface": '"eth0"', "vrid": "58", "addresses": '["1.2.3.58/29"]'}
V6 = {"interface": '"eth0"', "vrid": "60", "addresses": '["fe80::60/64", "2001:db8::60/64"]'}


def instance(name: str = "vip58", base: dict[str, str] | None = None, /, **keys: str) -> str:
    merged = {**(V4 if base is None else base), **keys}
    header = name if name.replace("_", "").replace("-", "").isalnum() else f'"{name}"'
    return f"[instances.{header}]\n" + "".join(f"{k} = {v}\n" for k, v in merged.items())


def parse(text: str, table_names: dict[str, int] | None = None) -> NodeConfig:
    return parse_node(tomllib.loads(text), table_names=table_names)


def only_problem(text: str, table_names: dict[str, int] | None = None) -> Problem:
    with pytest.raises(ConfigError) as caught:
        parse(text, table_names)
    problems = caught.value.problems
    assert len(problems) == 1, problems
    return problems[0]


def vip(text: str, name: str = "vip58") -> InstanceConfig:
    return parse(text).instances[name]


# ------------------------------------------------------------------------- VRRP version


def test_version_defaults_to_3() -> None:
    node = parse(instance())
    assert node.global_.version is VrrpVersion.V3
    assert node.instances["vip58"].version is VrrpVersion.V3
    assert node.instances["vip58"].auth_pass is None


@pytest.mark.parametrize(
    ("literal", "version"),
    [("2", VrrpVersion.V2), ("3", VrrpVersion.V3), ('"2+3"', VrrpVersion.V2_AND_V3)],
)
def test_global_version_is_the_default_of_ipv4_instances(
    literal: str, version: VrrpVersion
) -> None:
    node = parse(f"[global]\nversion = {literal}\n" + instance())
    assert node.global_.version is version
    assert node.instances["vip58"].version is version


def test_instance_version_overrides_global() -> None:
    text = (
        "[global]\nversion = 2\n"
        + instance(version="3")
        + instance("b", vrid="59", addresses='["1.2.3.59/29"]', version='"2+3"')
    )
    node = parse(text)
    assert node.instances["vip58"].version is VrrpVersion.V3
    assert node.instances["b"].version is VrrpVersion.V2_AND_V3


def test_ipv6_instance_speaks_3_whatever_the_global_default() -> None:
    assert vip("[global]\nversion = 2\n" + instance("v6", V6), "v6").version is VrrpVersion.V3


@pytest.mark.parametrize("literal", ["2", '"2+3"'])
def test_ipv6_instance_with_version_2_is_an_error(literal: str) -> None:
    problem = only_problem(instance("v6", V6, version=literal))
    assert problem.path == "instances.v6.version"
    assert "VRRPv2 is IPv4-only" in problem.message


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("4", '4 is not a VRRP version pyvrrp speaks; expected 3, 2 or "2+3"'),
        ('"3"', '"3" is a string; write 3 without quotes'),
        ('"3+2"', 'write "2+3"'),
        ("2.0", 'expected 3, 2 or "2+3", got a float (2.0)'),
        ("true", 'expected 3, 2 or "2+3", got a boolean'),
    ],
)
def test_bad_versions(literal: str, message: str) -> None:
    problem = only_problem(instance(version=literal))
    assert problem.path == "instances.vip58.version"
    assert message in problem.message
    problem = only_problem(f"[global]\nversion = {literal}\n" + instance())
    assert problem.path == "global.version"


def test_v2_advert_interval_is_whole_seconds_up_to_255() -> None:
    assert vip(instance(version="2", advert_interval="255")).advert_interval_cs == 25_500
    assert vip(instance(version="2", advert_interval="3.0")).advert_interval_cs == 300
    problem = only_problem(instance(version="2", advert_interval="1.5"))
    assert problem.path == "instances.vip58.advert_interval"
    assert "1.5 is not a whole number of seconds, which version 2 needs" in problem.message
    assert "use 1 or 2" in problem.message
    assert (
        "out of range 1..255" in only_problem(instance(version="2", advert_interval="256")).message
    )


def test_v2_interval_rule_names_the_global_default_it_came_from() -> None:
    problem = only_problem("[global]\nversion = 2\n" + instance(advert_interval="0.5"))
    assert "version 2 (from [global])" in problem.message
    assert problem.message.endswith("; use 1")


def test_2_and_3_interval_fits_both_advertisements() -> None:
    assert vip(instance(version='"2+3"', advert_interval="40")).advert_interval_cs == 4000
    problem = only_problem(instance(version='"2+3"', advert_interval="41"))
    assert "out of range 1..40" in problem.message
    assert "VRRPv3 adverts carry at most 40.95 s" in problem.message


def test_v3_keeps_centisecond_intervals() -> None:
    assert vip(instance(advert_interval="0.25")).advert_interval_cs == 25


def test_auth_pass_with_version_2() -> None:
    assert vip(instance(version="2", auth_pass='"secret12"')).auth_pass == "secret12"
    assert vip(instance(version='"2+3"', auth_pass='"pw"')).auth_pass == "pw"
    text = "[global]\nversion = 2\n" + instance(auth_pass='"pw"')
    assert vip(text).auth_pass == "pw"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"auth_pass": '"secret12"'}, 'needs version = 2 or "2+3"'),
        ({"version": "2", "auth_pass": '"secret123"'}, "is 9 bytes in UTF-8"),
        ({"version": "2", "auth_pass": '"motdepassé"'}, "is 11 bytes in UTF-8"),
        ({"version": "2", "auth_pass": '""'}, "must not be empty"),
        ({"version": "2", "auth_pass": "12345678"}, "expected a string, got an integer"),
        ({"version": "2", "auth_pass": '"a\\u0000b"'}, "NUL"),
    ],
)
def test_bad_auth_pass(keys: dict[str, str], message: str) -> None:
    problem = only_problem(instance(**keys))
    assert problem.path == "instances.vip58.auth_pass"
    assert message in problem.message


def test_keepalived_authentication_block_points_to_auth_pass() -> None:
    problem = only_problem(instance(authentication='{ auth_type = "PASS" }'))
    assert 'auth_pass = "..." (with version = 2)' in problem.message


def test_vrrp_version_keepalived_name_points_to_version() -> None:
    problem = only_problem("[global]\nvrrp_version = 2\n" + instance())
    assert problem.path == "global.vrrp_version"
    assert "keepalived's vrrp_version is version in pyvrrp" in problem.message


# ------------------------------------------------------------------- unicast_peers_only

UNICAST = {"unicast_source": '"192.168.200.1"', "unicast_peers": '["192.168.200.2"]'}


def test_unicast_peers_only_defaults_to_true_and_reaches_the_router() -> None:
    config = vip(instance(**UNICAST))
    assert config.unicast_peers_only is True
    assert router_params(config, IPv4Address("192.168.200.1")).unicast_peers_only is True


def test_unicast_peers_only_false_reaches_the_router() -> None:
    config = vip(instance(**UNICAST, unicast_peers_only="false"))
    assert config.unicast_peers_only is False
    assert router_params(config, IPv4Address("192.168.200.1")).unicast_peers_only is False


def test_unicast_peers_only_without_peers_is_a_warning() -> None:
    node = parse(instance(unicast_peers_only="false"))
    assert node.warnings == (
        Problem(
            "instances.vip58.unicast_peers_only",
            "has no effect without unicast_peers (multicast hears every router of the VRID)",
        ),
    )


def test_unicast_peers_only_must_be_a_boolean() -> None:
    problem = only_problem(instance(**UNICAST, unicast_peers_only='"no"'))
    assert problem.path == "instances.vip58.unicast_peers_only"


# ------------------------------------------------------ log_level, watch_config, script user


def test_global_defaults_of_the_new_keys() -> None:
    assert parse(instance()).global_ == GlobalConfig()
    g = GlobalConfig()
    assert (g.log_level, g.watch_config, g.script_user, g.script_group, g.email) == (
        "info",
        False,
        None,
        None,
        None,
    )


def test_global_new_keys() -> None:
    text = (
        '[global]\nlog_level = "debug"\nwatch_config = true\n'
        'script_user = "nobody"\nscript_group = "nogroup"\n' + instance()
    )
    g = parse(text).global_
    assert (g.log_level, g.watch_config, g.script_user, g.script_group) == (
        "debug",
        True,
        "nobody",
        "nogroup",
    )


@pytest.mark.parametrize(
    ("line", "path", "message"),
    [
        ('log_level = "verbose"', "global.log_level", '"debug" or "info" or "warning" or "error"'),
        ('log_level = "INFO"', "global.log_level", 'write "info"'),
        ('watch_config = "yes"', "global.watch_config", "expected true or false"),
        ('script_user = ""', "global.script_user", "must not be empty"),
        ('script_user = "no body"', "global.script_user", 'contains " "; write one user name'),
        ('script_group = "a:b"', "global.script_group", 'contains ":"; write one group name'),
    ],
)
def test_bad_global_new_keys(line: str, path: str, message: str) -> None:
    problem = only_problem(f"[global]\n{line}\n" + instance())
    assert problem.path == path
    assert message in problem.message


def test_script_group_notify_group_and_script_security() -> None:
    text = (
        "[global]\nscript_security = false\n"
        '[scripts.chk]\ncommand = ["/bin/true"]\nuser = "haproxy"\ngroup = "123"\n'
        + instance(notify_user='"nobody"', notify_group='"nogroup"')
    )
    node = parse(text)
    assert node.global_.script_security is False
    assert (node.scripts["chk"].user, node.scripts["chk"].group) == ("haproxy", "123")
    assert (node.instances["vip58"].notify_user, node.instances["vip58"].notify_group) == (
        "nobody",
        "nogroup",
    )
    assert GlobalConfig().script_security is True


@pytest.mark.parametrize(
    ("own_user", "own_group", "expected"),
    [
        (None, None, ("nobody", "nogroup")),  # [global]'s pair
        (None, "daemon", ("nobody", "daemon")),  # its own group, the default user
        ("haproxy", None, ("haproxy", None)),  # its own user, with that user's group
        ("haproxy", "daemon", ("haproxy", "daemon")),
    ],
)
def test_run_as_pairs_a_user_with_its_group(
    own_user: str | None, own_group: str | None, expected: tuple[str | None, str | None]
) -> None:
    defaults = GlobalConfig(script_user="nobody", script_group="nogroup")
    assert defaults.run_as(own_user, own_group) == expected
    assert GlobalConfig().run_as(None, None) == (None, None)


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("[global]\nscript_security = 1\n", "global.script_security", "expected true or false"),
        (
            '[scripts.chk]\ncommand = ["/bin/true"]\ngroup = "a b"\n',
            "scripts.chk.group",
            'contains " "; write one group name',
        ),
        ("", "instances.vip58.notify_group", 'contains ","; write one group name'),
    ],
)
def test_bad_user_and_group_keys(text: str, path: str, message: str) -> None:
    extra = {"notify_group": '"a,b"'} if path.endswith("notify_group") else {}
    problem = only_problem(text + instance(**extra))
    assert problem.path == path
    assert message in problem.message


def test_keepalived_enable_script_security_points_to_script_security() -> None:
    problem = only_problem("[global]\nenable_script_security = true\n" + instance())
    assert problem.path == "global.enable_script_security"
    assert "script_security" in problem.message


# ----------------------------------------------------------------------------- e-mail

EMAIL = (
    '[global.email]\nserver = "127.0.0.1:25"\nfrom = "pyvrrp@example.com"\n'
    'to = ["ops@example.com"]\n'
)


def test_email_table_and_defaults() -> None:
    node = parse(EMAIL + instance(email="true"))
    assert node.global_.email == EmailConfig(
        host="127.0.0.1", port=25, sender="pyvrrp@example.com", recipients=("ops@example.com",)
    )
    assert node.global_.email.starttls is False
    assert node.global_.email.username == ""
    assert node.instances["vip58"].email is True


def test_instance_email_defaults_to_false() -> None:
    assert vip(EMAIL + instance()).email is False


@pytest.mark.parametrize(
    ("server", "host", "port"),
    [
        ("smtp.example.com", "smtp.example.com", 25),
        ("127.0.0.1", "127.0.0.1", 25),
        ("smtp.example.com:587", "smtp.example.com", 587),
        ("[2001:db8::25]:2525", "2001:db8::25", 2525),
        ("[::1]", "::1", 25),
    ],
)
def test_email_server_port_defaults_to_25(server: str, host: str, port: int) -> None:
    email = parse(EMAIL.replace("127.0.0.1:25", server) + instance()).global_.email
    assert email is not None
    assert (email.host, email.port) == (host, port)


def test_email_login_and_starttls() -> None:
    text = EMAIL + 'starttls = true\nusername = "pyvrrp"\npassword_file = "/etc/pyvrrp/smtp"\n'
    email = parse(text + instance()).global_.email
    assert email is not None
    assert (email.starttls, email.username, email.password_file) == (
        True,
        "pyvrrp",
        "/etc/pyvrrp/smtp",
    )


@pytest.mark.parametrize(
    ("replace", "path", "message"),
    [
        (('server = "127.0.0.1:25"\n', ""), "global.email.server", "missing: the SMTP server"),
        (('from = "pyvrrp@example.com"\n', ""), "global.email.from", "missing: the sender"),
        (('to = ["ops@example.com"]\n', ""), "global.email.to", "missing: the recipients"),
        (('["ops@example.com"]', "[]"), "global.email.to", "is empty; list the recipients"),
        (('["ops@example.com"]', '"ops@example.com"'), "global.email.to", "expected an array"),
        (("ops@example.com", "Ops <ops@example.com>"), "global.email.to[0]", "is not an e-mail"),
        (("pyvrrp@example.com", "pyvrrp"), "global.email.from", "is not an e-mail address"),
        (("127.0.0.1:25", "127.0.0.1:0"), "global.email.server", "not in range 1..65535"),
        (("127.0.0.1:25", "2001:db8::1"), "global.email.server", "put an IPv6 address in brackets"),
        (("127.0.0.1:25", "bad host!"), "global.email.server", "is not an IP address or host name"),
    ],
)
def test_bad_email(replace: tuple[str, str], path: str, message: str) -> None:
    problem = only_problem(EMAIL.replace(*replace) + instance())
    assert problem.path == path
    assert message in problem.message


def test_email_login_needs_both_username_and_password_file() -> None:
    problem = only_problem(EMAIL + 'username = "pyvrrp"\n' + instance())
    assert problem.path == "global.email.password_file"
    problem = only_problem(EMAIL + 'password_file = "/etc/pyvrrp/smtp"\n' + instance())
    assert problem.path == "global.email.username"
    problem = only_problem(EMAIL + 'username = "u"\npassword_file = "smtp"\n' + instance())
    assert problem.path == "global.email.password_file"
    assert "is not an absolute path" in problem.message


def test_email_login_needs_starttls() -> None:
    login = 'username = "pyvrrp"\npassword_file = "/etc/pyvrrp/smtp"\n'
    problem = only_problem(EMAIL + login + instance())
    assert problem.path == "global.email.starttls"
    assert problem.message.startswith(
        'must be true to log in as "pyvrrp": pyvrrp sends the password only over STARTTLS'
    )
    assert only_problem(EMAIL + "starttls = false\n" + login + instance()).path == (
        "global.email.starttls"
    )


def test_email_keepalived_names_are_pointed_to() -> None:
    problem = only_problem('[global]\nnotification_email = ["a@b"]\n' + instance())
    assert "keepalived's notification_email is [global.email] to in pyvrrp" in problem.message
    problem = only_problem(EMAIL + 'smtp_server = "x"\n' + instance())
    assert problem.path == "global.email.smtp_server"
    assert "keepalived's smtp_server is server in pyvrrp" in problem.message
    problem = only_problem(instance(smtp_alert="true"))
    assert "keepalived's smtp_alert is email = true in pyvrrp" in problem.message


def test_instance_email_needs_global_email() -> None:
    problem = only_problem(instance(email="true"))
    assert problem.path == "instances.vip58.email"
    assert "needs a [global.email] table" in problem.message


def test_instance_email_is_not_reported_twice_when_global_email_is_broken() -> None:
    problem = only_problem(EMAIL.replace("pyvrrp@example.com", "nobody") + instance(email="true"))
    assert problem.path == "global.email.from"


# ---------------------------------------------------------------------- instance names


@pytest.mark.parametrize("name", ["1.2.3.58", "VI_1", "vip-58", "2a03:4444::58", "vip@eth0", "a+b"])
def test_instance_names_as_keepalived_writes_them(name: str) -> None:
    node = parse(instance(name) + f'[sync_groups.g]\ninstances = ["{name}"]\n')
    assert list(node.instances) == [name]
    assert node.instances[name].name == name


@pytest.mark.parametrize("name", ["vip 58", "-vip", ".vip", "a/b", "a$b", "a'b", "x" * 65, ""])
def test_instance_names_that_would_break_a_notify_script_are_refused(name: str) -> None:
    problem = only_problem(instance(name))
    assert "is not a valid instance name" in problem.message
    assert "'.'" in problem.message


def test_dotted_instance_name_without_quotes_is_explained() -> None:
    text = "[instances.1.2.3.58]\n" + "".join(f"{k} = {v}\n" for k, v in V4.items())
    problem = only_problem(text)
    assert problem.path == "instances.1"
    assert '[instances."1.2.3.58"]' in problem.message


def test_script_and_sync_group_names_take_the_same_characters() -> None:
    text = (
        '[scripts."chk.nginx"]\ncommand = "true"\n'
        + instance("1.2.3.58", track_scripts='["chk.nginx"]')
        + '[sync_groups."ingress.a"]\ninstances = ["1.2.3.58"]\n'
    )
    node = parse(text)
    assert list(node.scripts) == ["chk.nginx"]
    assert list(node.sync_groups) == ["ingress.a"]


# ------------------------------------------------------------------- routing table names

RT = {"vswitch": 100, "mgmt": 0x10}


def test_route_and_rule_tables_by_name() -> None:
    text = (
        instance(
            virtual_routes='[{ to = "default", via = "1.2.3.57", table = "vswitch" }]',
            virtual_rules='[{ from = "1.2.3.56/29", lookup = "vswitch" }]',
        )
        + '[[routes]]\nto = "1.2.3.57/32"\ndev = "eth0"\ntable = "mgmt"\n'
        + '[[rules]]\nto = "1.2.3.56/29"\ntable = "main"\n'
        + '[[rules]]\nto = "1.2.3.0/24"\ntable = "200"\n'
    )
    node = parse(text, RT)
    assert node.instances["vip58"].virtual_routes[0].table == 100
    assert node.instances["vip58"].virtual_rules[0].table == 100
    assert node.routes[0].table == 16
    assert [r.table for r in node.rules] == [254, 200]


def test_builtin_table_names_need_no_file() -> None:
    text = instance() + '[[rules]]\nto = "1.2.3.56/29"\nlookup = "local"\n'
    assert parse(text).rules[0].table == 255


def test_integer_tables_still_work() -> None:
    assert (
        parse(instance() + '[[rules]]\nto = "1.2.3.56/29"\ntable = 100\n', RT).rules[0].table == 100
    )


def test_unknown_table_name_lists_the_known_ones() -> None:
    problem = only_problem(
        instance() + '[[routes]]\nto = "10.0.0.0/8"\ndev = "eth0"\ntable = "vswtich"\n', RT
    )
    assert problem.path == "routes[0].table"
    assert problem.message.startswith('"vswtich" is not a routing table this host names')
    assert "did you mean vswitch?" in problem.message
    assert (
        "known: unspec (0), mgmt (16), vswitch (100), default (253), main (254), local (255)"
        in (problem.message)
    )


def test_unspec_is_not_a_table() -> None:
    problem = only_problem(instance() + '[[rules]]\nto = "1.2.3.0/24"\ntable = "unspec"\n')
    assert "table 0" in problem.message


def test_rule_with_both_lookup_and_table_is_an_error() -> None:
    problem = only_problem(instance() + '[[rules]]\nto = "1.2.3.0/24"\ntable = 1\nlookup = 1\n')
    assert problem.path == "rules[0].lookup"
    assert "keep one" in problem.message


def test_rule_without_a_table_says_what_is_missing() -> None:
    problem = only_problem(instance() + '[[rules]]\nto = "1.2.3.0/24"\n')
    assert problem.path == "rules[0].table"
    assert problem.message.startswith("missing: the routing table to look up")


# ------------------------------------------------------------------------ warnings


@pytest.mark.parametrize(
    ("keys", "why"),
    [
        ({"priority": "255", "preempt": "false"}, "the address owner (priority 255) always"),
        ({"state": '"master"', "priority": "100", "preempt": "false"}, 'with state "backup"'),
        ({"state": '"master"', "preempt": "false"}, "the address owner"),
    ],
)
def test_no_preempt_on_a_master_is_a_warning_and_keepalived_preempts(
    keys: dict[str, str], why: str
) -> None:
    node = parse(instance(**keys))
    assert node.instances["vip58"].preempt is True
    (warning,) = node.warnings
    assert warning.path == "instances.vip58.preempt"
    assert warning.message.startswith("false is ignored and this instance preempts")
    assert why in warning.message


def test_no_preempt_on_a_backup_is_kept_without_warning() -> None:
    node = parse(instance(priority="100", preempt="false"))
    assert node.instances["vip58"].preempt is False
    assert node.warnings == ()


def test_warnings_do_not_make_configs_differ() -> None:
    with_warning = parse(instance(priority="255", preempt="false"))
    without = parse(instance(priority="255"))
    assert with_warning.warnings
    assert with_warning == without


# ------------------------------------------------- the contract's example, and the seed's

ADDITIONS = """
[global]
version = 3                             # default VRRP version for IPv4 instances
log_level = "info"
watch_config = false
script_user = "nobody"
script_group = "nogroup"

[global.email]
server = "127.0.0.1:25"
from = "pyvrrp@example.com"
to = ["ops@example.com"]
starttls = false
username = ""
password_file = ""

[instances.vip58]
interface = "eth0.4000"
vrid = 58
addresses = ["1.2.3.58/29"]
unicast_source = "192.168.200.1"        # as in the contract's whole example
unicast_peers = ["192.168.200.2", "192.168.200.3"]
version = 2                             # overrides [global] version (IPv4 only)
auth_pass = "secret12"                  # VRRPv2 simple password, up to 8 bytes
unicast_peers_only = true
email = true
"""


def test_the_additions_of_the_contract_mean_what_they_say() -> None:
    node = parse(ADDITIONS)
    assert node.global_ == GlobalConfig(
        version=VrrpVersion.V3,
        log_level="info",
        watch_config=False,
        script_user="nobody",
        script_group="nogroup",
        email=EmailConfig("127.0.0.1", "pyvrrp@example.com", ("ops@example.com",)),
    )
    vip58 = node.instances["vip58"]
    assert (vip58.version, vip58.auth_pass, vip58.unicast_peers_only, vip58.email) == (
        VrrpVersion.V2,
        "secret12",
        True,
        True,
    )
    assert node.warnings == ()


# The seed's keepalived.conf (machine A), as written by hand in node.toml: instance names
# that are addresses, nopreempt on a state MASTER instance, the vswitch table by name.
SEED = """
[global]
router_id = "machine-a"
version = 2
script_user = "nobody"

[global.email]
server = "127.0.0.1"
from = "infra+keepalived@example.com"
to = ["ops@example.com"]

[scripts.chk_nginx_ingress]
command = "/usr/bin/curl GET http://localhost:80/healthz"
interval = 2
weight = 2
fall = 2
rise = 2

[instances."1.2.3.58"]
interface = "eth0.4000"
state = "master"
vrid = 58
priority = 100
advert_interval = 1
garp_delay = 5
email = true
preempt = false
track_interfaces = ["eth0", "dummy0"]
track_scripts = ["chk_nginx_ingress"]
addresses = [{ address = "1.2.3.58/29", dev = "eth0.4000" }]
excluded_addresses = [{ address = "2a03:4444:fff0:59:88::58/64", dev = "eth0.4000" }]
unicast_source = "192.168.200.1"
unicast_peers = ["192.168.200.2", "192.168.200.3"]

[instances."1.2.3.59"]
interface = "eth0.4000"
state = "backup"
vrid = 59
priority = 75
email = true
preempt = false
addresses = [{ address = "1.2.3.59/29", dev = "eth0.4000" }]
unicast_source = "192.168.200.1"
unicast_peers = ["192.168.200.2", "192.168.200.3"]

[[routes]]
to = "1.2.3.57/32"
dev = "eth0.4000"
table = "vswitch"

[[routes]]
to = "0.0.0.0/0"
via = "1.2.3.57"
dev = "eth0.4000"
table = "vswitch"

[[rules]]
to = "1.2.3.56/29"
lookup = "vswitch"

[[rules]]
from = "1.2.3.56/29"
lookup = "vswitch"
"""


def test_the_seed_configuration_translates_with_a_warning() -> None:
    node = parse(SEED, {"vswitch": 100})
    assert list(node.instances) == ["1.2.3.58", "1.2.3.59"]
    master, backup = node.instances.values()
    assert (master.version, master.preempt, master.initial_state) == (
        VrrpVersion.V2,
        True,
        "master",
    )
    assert (backup.preempt, backup.initial_state) == (False, "backup")
    assert [w.path for w in node.warnings] == ['instances."1.2.3.58".preempt']
    assert {r.table for r in node.routes} | {r.table for r in node.rules} == {100}
    assert node.global_.email is not None
    assert node.global_.email.port == 25
