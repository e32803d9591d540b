"""Loading node.toml from disk, the seed example, and the host-dependent checks."""

from __future__ import annotations

import os
import re
import tomllib
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path

import pytest

from pyvrrp.configfile import (
    MAX_CONFIG_BYTES,
    MAX_PROBLEMS_SHOWN,
    ConfigFileError,
    check_environment,
    load,
    problem_lines,
    table_names,
    warning_lines,
)
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
)
from pyvrrp.core.packet import ChecksumMode, Family

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "node-a.toml"

VALID = """
[instances.vip58]
interface = "eth0"
vrid = 58
addresses = ["1.2.3.58/29"]
"""


def write(tmp_path: Path, content: str | bytes, name: str = "node.toml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def file_problem(path: str | os.PathLike[str]) -> str:
    with pytest.raises(ConfigFileError) as caught:
        load(path)
    (problem,) = caught.value.problems
    assert problem.path == os.fspath(path)
    return problem.message


def test_seed_example_node_a_loads_with_every_important_field() -> None:
    node = load(EXAMPLE)
    assert node.global_.router_id == "node-a"
    assert node.global_.metrics_listen == ("192.168.200.1", 9650)
    assert list(node.instances) == ["vip58", "vip59", "vip60"]

    assert node.scripts["chk_nginx_ingress"] == ScriptConfig(
        name="chk_nginx_ingress",
        command=(
            "curl", "-fsS", "-o", "/dev/null", "--max-time", "1", "http://localhost:80/healthz",
        ),
        interval_us=2_000_000,
        timeout_us=2_000_000,
        fall=2,
        rise=2,
        weight=-60,
    )  # fmt: skip

    expected = {"vip58": (100, "master"), "vip59": (75, "backup"), "vip60": (50, "backup")}
    for name, (priority, state) in expected.items():
        vip = node.instances[name]
        number = int(name[3:])
        assert isinstance(vip, InstanceConfig)
        assert (vip.interface, vip.vrid) == ("eth0.4000", number)
        assert (vip.priority, vip.initial_state) == (priority, state)
        assert vip.family is Family.IPV4
        assert vip.unicast
        assert vip.unicast_source == IPv4Address("192.168.200.1")
        assert vip.unicast_peers == (IPv4Address("192.168.200.2"), IPv4Address("192.168.200.3"))
        assert vip.addresses == (AddressConfig(IPv4Interface(f"1.2.3.{number}/29")),)
        assert vip.excluded_addresses == (
            AddressConfig(IPv6Interface(f"2a03:4444:fff0:59:88::{number}/64")),
        )
        assert vip.track_interfaces == (TrackInterface("eth0", 0), TrackInterface("dummy0", 0))
        assert vip.track_scripts == (TrackScript("chk_nginx_ingress", None),)
        assert vip.advert_interval_cs == 100
        assert vip.preempt
        assert vip.notify == ("/usr/bin/logger", "-t", "pyvrrp")

    assert node.routes == (
        RouteConfig(IPv4Network("1.2.3.57/32"), dev="eth0.4000", table=100),
        RouteConfig(
            IPv4Network("0.0.0.0/0"), via=IPv4Address("1.2.3.57"), dev="eth0.4000", table=100
        ),
        RouteConfig(IPv6Network("::/0"), via=IPv6Address("fe80::1"), dev="eth0.4000", table=100),
    )
    v4 = IPv4Network("1.2.3.56/29")
    v6 = IPv6Network("2a03:4444:fff0:59::/64")
    assert node.rules == (
        RuleConfig(Family.IPV4, 100, from_=v4, priority=1000),
        RuleConfig(Family.IPV4, 100, to=v4, priority=1001),
        RuleConfig(Family.IPV6, 100, from_=v6, priority=1000),
        RuleConfig(Family.IPV6, 100, to=v6, priority=1001),
    )


def test_seed_example_health_weight_moves_the_vip() -> None:
    # docs/hetzner-vswitch.md: the weight must overturn the 100/75/50 gaps, or the VIP never moves.
    node = load(EXAMPLE)
    weight = node.scripts["chk_nginx_ingress"].weight
    priorities = sorted(i.priority for i in node.instances.values())
    assert max(priorities) + weight < min(priorities)


def test_load_accepts_str_and_pathlike(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    assert isinstance(load(path), NodeConfig)
    assert isinstance(load(str(path)), NodeConfig)


def test_load_tolerates_a_utf8_byte_order_mark(tmp_path: Path) -> None:
    assert load(write(tmp_path, b"\xef\xbb\xbf" + VALID.encode())).instances["vip58"].vrid == 58


def test_missing_file(tmp_path: Path) -> None:
    assert file_problem(tmp_path / "nope.toml") == "no such file"


def test_directory(tmp_path: Path) -> None:
    assert file_problem(tmp_path) == "is a directory, not a configuration file"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests run as root, who can read a mode-0 file: simulate the kernel's refusal.
    path = write(tmp_path, VALID)

    def refuse(self: Path, *args: object) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    assert file_problem(path) == "permission denied: cannot read it (check its mode and owner)"


def test_other_read_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: Path, *args: object) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Path, "open", fail)
    assert file_problem(tmp_path / "x.toml") == "cannot read it: Input/output error"


def test_non_utf8_content_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, b'[global]\nrouter_id = "caf\xe9"\n')
    assert file_problem(path) == (
        "is not UTF-8 text: invalid byte 0xe9 on line 2; TOML files must be UTF-8"
    )


def test_invalid_toml_keeps_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[global]\nrouter_id = "a"\nlog_format "json"\n')
    message = file_problem(path)
    assert message.startswith("invalid TOML: ")
    assert "(at line 3, column 12)" in message


def test_keepalived_conf_is_recognised(tmp_path: Path) -> None:
    path = write(tmp_path, "global_defs {\n    router_id a\n}\nvrrp_instance VI_1 {\n}\n")
    assert file_problem(path).endswith(
        f"this looks like a keepalived.conf: pyvrrp reads TOML; convert it with "
        f"`pyvrrp import-keepalived {path} -o node.toml` (docs/import-keepalived.md)"
    )


def test_duplicate_key_is_a_toml_error(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + "vrid = 59\n")
    assert "invalid TOML: " in file_problem(path)


def test_deeply_nested_toml_is_reported_not_crashed_on(tmp_path: Path) -> None:
    path = write(tmp_path, "a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert file_problem(path).startswith("invalid TOML")


def test_invalid_configuration_is_a_config_error_with_key_paths(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("vrid = 58", "vrid = 300"))
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert not isinstance(caught.value, ConfigFileError)
    assert [str(p) for p in caught.value.problems] == [
        "instances.vip58.vrid: 300 is out of range 1..255"
    ]


def executable(tmp_path: Path, name: str, mode: int = 0o755) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


def test_environment_is_fine_when_programs_and_users_exist(tmp_path: Path) -> None:
    program = executable(tmp_path, "ok.sh")
    node = load(
        write(
            tmp_path,
            f"""
[scripts.by_path]
command = ["{program}"]
user = "root"
[scripts.by_name]
command = ["sh", "-c", "exit 0"]
[scripts.shell]
command = "no-such-program-here --whatever"
{VALID}
notify = ["{program}"]
notify_user = "root"
""",
        )
    )
    assert check_environment(node) == []


def test_environment_problems_name_the_key_and_the_fix(tmp_path: Path) -> None:
    not_executable = executable(tmp_path, "plain.sh", mode=0o644)
    node = load(
        write(
            tmp_path,
            f"""
[scripts.missing]
command = ["{tmp_path}/nope.sh"]
user = "no-such-user-pyvrrp"
[scripts.not_in_path]
command = ["no-such-program-pyvrrp", "-x"]
[scripts.not_executable]
command = ["{not_executable}"]
[scripts.directory]
command = ["{tmp_path}"]
{VALID}
notify_master = ["no-such-notifier-pyvrrp"]
notify_user = "no-such-user-pyvrrp"
""",
        )
    )
    found = {p.path: p.message for p in check_environment(node)}
    assert found == {
        "scripts.missing.command[0]": f"program {tmp_path}/nope.sh does not exist",
        "scripts.missing.user": (
            "user 'no-such-user-pyvrrp' does not exist on this host; create it or change user"
        ),
        "scripts.not_in_path.command[0]": found["scripts.not_in_path.command[0]"],
        "scripts.not_executable.command[0]": (
            f"program {not_executable} is not executable (chmod +x {not_executable})"
        ),
        "scripts.directory.command[0]": f"program {tmp_path} is a directory",
        "instances.vip58.notify_master[0]": found["instances.vip58.notify_master[0]"],
        "instances.vip58.notify_user": (
            "user 'no-such-user-pyvrrp' does not exist on this host; create it or change user"
        ),
    }
    assert found["scripts.not_in_path.command[0]"].startswith(
        "program 'no-such-program-pyvrrp' is not found in PATH ("
    )
    assert found["instances.vip58.notify_master[0]"].endswith(
        "install it or write its absolute path"
    )


def test_environment_check_uses_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    executable(tmp_path, "my-check")
    node = load(write(tmp_path, '[scripts.s]\ncommand = ["my-check"]\n' + VALID))
    monkeypatch.setenv("PATH", "/nonexistent")
    assert [p.path for p in check_environment(node)] == ["scripts.s.command[0]"]
    monkeypatch.setenv("PATH", str(tmp_path))
    assert check_environment(node) == []


def test_configuration_md_examples_are_valid_together() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    examples = doc[doc.index("## Examples") :]
    blocks = re.findall(r"```toml\n(.*?)```", examples, re.DOTALL)
    assert len(blocks) == 4
    node = parse_node(tomllib.loads("\n".join(blocks)))
    assert list(node.instances) == ["vip58", "web6", "db", "gw"]
    assert node.instances["db"].priority == 255
    assert node.instances["web6"].family is Family.IPV6


# The example of the configuration contract (docs/configuration.md), comments shortened, plus the
# script and instance it refers to without defining them.
CONTRACT = """
[global]
router_id = "machine-a"                 # default: the hostname
control_socket = "/run/pyvrrp.sock"     # pyvrrp status / maintenance talk to it (mode 0600)
state_dir = "/var/lib/pyvrrp"           # maintenance flags survive restarts here
metrics_listen = "127.0.0.1:9650"       # Prometheus text exposition; absent = off
log_format = "text"                     # or "json"

[scripts.chk_nginx_ingress]             # a health check, shared by instances
command = ["curl", "-fsS", "-o", "/dev/null", "http://localhost:80/healthz"]  # argv
interval = 2.0                          # default 1.0
timeout = 2.0                           # default = interval
fall = 2                                # default 1
rise = 2                                # default 1
weight = -60                            # default 0 (failure = FAULT); the instance may override
user = "nobody"                         # optional: run as this user

[instances.vip58]                       # the table key is the instance name
interface = "eth0.4000"
vrid = 58                               # 1..255
priority = 100                          # 1..255, default 100 (255 = address owner)
state = "backup"                        # "backup" | "master", as keepalived's `state`
advert_interval = 1.0                   # 0.01..40.95, default 1.0
preempt = true                          # default true; false = keepalived's nopreempt
preempt_delay = 0.0
accept = true
ipv4_checksum = "pseudo-header"         # or "message-only" (RFC 9568 strict)
unicast_source = "192.168.200.1"        # with unicast_peers: unicast mode
unicast_peers = ["192.168.200.2", "192.168.200.3"]
addresses = ["1.2.3.58/29"]             # advertised VIPs; they fix the instance's family
excluded_addresses = ["2a03:4444:fff0:59:88::58/64"]   # any family; installed, not advertised
track_interfaces = ["eth0", { name = "dummy0", weight = 0 }]      # bare name = weight 0
track_scripts = ["chk_nginx_ingress", { name = "chk_other", weight = 10 }]
virtual_routes = [{ to = "default", via = "1.2.3.57", dev = "eth0.4000", table = 100 }]
virtual_rules = [{ from = "1.2.3.56/29", table = 100, priority = 100 }]
notify_master = ["/usr/local/bin/on-master", "vip58"]   # argv; also notify_backup, ...
notify = ["/usr/local/bin/notify"]      # called with INSTANCE <name> <STATE> <priority>
garp_repeat = 5                         # announcements per address on becoming master
garp_delay = 5.0                        # second burst after this delay; 0 = none
garp_refresh = 0.0                      # periodic re-announce while master; 0 = off

[[routes]]                              # static: installed at start whatever the state
to = "1.2.3.57/32"
dev = "eth0.4000"
table = 100

[[rules]]                               # static
from = "1.2.3.56/29"
table = 100
priority = 1000

[sync_groups.ingress]                   # members move between states together
instances = ["vip58", "vip59"]

[scripts.chk_other]
command = "exit 0"

[instances.vip59]
interface = "eth0.4000"
vrid = 59
addresses = [{ address = "1.2.3.59/29", dev = "eth0.4000", label = "eth0.4000:v", scope = "global" }]
"""  # noqa: E501


def test_every_key_of_the_configuration_contract_means_what_it_says() -> None:
    node = parse_node(tomllib.loads(CONTRACT))
    assert node.global_ == GlobalConfig(
        "machine-a", "/run/pyvrrp.sock", "/var/lib/pyvrrp", ("127.0.0.1", 9650), "text"
    )
    chk = node.scripts["chk_nginx_ingress"]
    assert chk.command[0] == "curl"
    assert (chk.interval_us, chk.timeout_us, chk.fall, chk.rise) == (2_000_000, 2_000_000, 2, 2)
    assert (chk.weight, chk.user) == (-60, "nobody")
    vip = node.instances["vip58"]
    assert (vip.interface, vip.vrid, vip.priority, vip.initial_state) == (
        "eth0.4000", 58, 100, "backup",
    )  # fmt: skip
    assert (vip.advert_interval_cs, vip.preempt, vip.preempt_delay_us, vip.accept) == (
        100, True, 0, True,
    )  # fmt: skip
    assert vip.ipv4_checksum is ChecksumMode.PSEUDO_HEADER
    assert vip.unicast
    assert vip.unicast_source == IPv4Address("192.168.200.1")
    assert vip.track_interfaces == (TrackInterface("eth0", 0), TrackInterface("dummy0", 0))
    assert vip.track_scripts == (
        TrackScript("chk_nginx_ingress", None),
        TrackScript("chk_other", 10),
    )
    assert vip.virtual_routes == (
        RouteConfig(
            IPv4Network("0.0.0.0/0"), via=IPv4Address("1.2.3.57"), dev="eth0.4000", table=100
        ),
    )
    assert vip.virtual_rules == (
        RuleConfig(Family.IPV4, 100, from_=IPv4Network("1.2.3.56/29"), priority=100),
    )
    assert vip.notify_master == ("/usr/local/bin/on-master", "vip58")
    assert vip.notify == ("/usr/local/bin/notify",)
    assert (vip.garp_repeat, vip.garp_delay_us, vip.garp_refresh_us) == (5, 5_000_000, 0)
    assert node.instances["vip59"].addresses == (
        AddressConfig(IPv4Interface("1.2.3.59/29"), "eth0.4000", "eth0.4000:v", "global"),
    )
    assert node.sync_groups["ingress"].instances == ("vip58", "vip59")
    assert node.routes == (RouteConfig(IPv4Network("1.2.3.57/32"), dev="eth0.4000", table=100),)
    assert node.rules == (
        RuleConfig(Family.IPV4, 100, from_=IPv4Network("1.2.3.56/29"), priority=1000),
    )


# ----------------------------------------------------------- size cap and problem cap


def test_a_file_over_1_mib_is_refused_before_parsing(tmp_path: Path) -> None:
    # Valid TOML full of problems: parsed, it would list a problem per line.
    path = write(tmp_path, VALID + "x = 1\n" * (MAX_CONFIG_BYTES // 6 + 1))
    assert path.stat().st_size > MAX_CONFIG_BYTES
    with pytest.raises(ConfigFileError) as caught:
        load(path)
    (problem,) = caught.value.problems
    assert problem.path == str(path)
    assert "is larger than 1024 KiB (1048576 bytes)" in problem.message


def test_a_file_of_exactly_1_mib_is_read(tmp_path: Path) -> None:
    text = VALID + "#" * (MAX_CONFIG_BYTES - len(VALID) - 1) + "\n"
    path = write(tmp_path, text)
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert list(load(path).instances) == ["vip58"]


def test_problem_lines_are_capped_with_a_count_of_the_rest() -> None:
    problems = [Problem(f"k{i}", "bad") for i in range(250)]
    lines = problem_lines("node.toml", problems)
    assert len(lines) == MAX_PROBLEMS_SHOWN + 1
    assert lines[0] == "node.toml: k0: bad"
    assert lines[MAX_PROBLEMS_SHOWN - 1] == "node.toml: k99: bad"
    assert lines[-1] == "node.toml: and 150 more problems"
    assert problem_lines("f", problems[:101])[-1] == "f: and 1 more problem"
    assert len(problem_lines("f", problems[:100])) == 100


def test_warning_lines_name_the_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("vrid = 58", "vrid = 58\npriority = 255\npreempt = false"))
    config = load(path)
    (line,) = warning_lines(path, config)
    assert line.startswith(f"{path}: instances.vip58.preempt: warning: false is ignored")


# --------------------------------------------------------------------- rt_tables files


def rt_dir(root: Path, name: str, main: str | None = None, **conf: str) -> str:
    directory = root / name
    (directory / "rt_tables.d").mkdir(parents=True)
    if main is not None:
        (directory / "rt_tables").write_text(main)
    for file, text in conf.items():
        (directory / "rt_tables.d" / f"{file}.conf").write_text(text)
    return str(directory)


def test_table_names_read_as_ip_reads_them(tmp_path: Path) -> None:
    etc = rt_dir(
        tmp_path,
        "etc",
        "#\n# reserved values\n255\tlocal\n254 main\n  100 vswitch # the seed's table\n0x20 hex\n",
        extra="300 extra\n",
    )
    usr = rt_dir(tmp_path, "usr", "7 only_in_usr\n", vendor="400 vendor\n100 vswitch_too\n")
    names = table_names([etc, usr])
    # /etc's rt_tables hides /usr's; both rt_tables.d directories count.
    assert names == {
        "local": 255,
        "main": 254,
        "vswitch": 100,
        "hex": 32,
        "extra": 300,
        "vendor": 400,
        "vswitch_too": 100,
    }


def test_rt_tables_falls_back_to_usr_share(tmp_path: Path) -> None:
    etc = rt_dir(tmp_path, "etc")
    usr = rt_dir(tmp_path, "usr", "100 vswitch\n")
    assert table_names([etc, usr]) == {"vswitch": 100}


def test_rt_tables_first_definition_wins_and_a_corrupt_line_ends_the_file(tmp_path: Path) -> None:
    etc = rt_dir(tmp_path, "etc", "100 a\n101 a\nnot-a-number b\n102 c\n")
    assert table_names([etc]) == {"a": 100}


def test_missing_iproute2_directories_give_no_names(tmp_path: Path) -> None:
    assert table_names([str(tmp_path / "none")]) == {}


def test_load_resolves_table_names_from_the_env_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path, VALID + '[[rules]]\nfrom = "1.2.3.56/29"\nlookup = "vswitch"\n')
    etc = rt_dir(tmp_path, "etc")
    monkeypatch.setenv("PYVRRP_IPROUTE2_DIRS", etc)
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert "known: unspec (0), default (253), main (254), local (255)" in str(caught.value)
    Path(etc, "rt_tables.d", "seed.conf").write_text("100 vswitch\n")
    assert load(config).rules[0].table == 100
    # An explicit argument wins over the environment.
    with pytest.raises(ConfigError):
        load(config, iproute2_dirs=[str(tmp_path / "none")])


def test_environment_check_names_a_missing_script_user_and_group(tmp_path: Path) -> None:
    text = '[global]\nscript_user = "no-such-user-pyvrrp"\nscript_group = "no-such-group-pyvrrp"\n'
    node = load(write(tmp_path, text + VALID))
    found = {p.path: p.message for p in check_environment(node)}
    assert found == {
        "global.script_user": "user 'no-such-user-pyvrrp' does not exist on this host; create "
        "it or change user",
        "global.script_group": "group 'no-such-group-pyvrrp' does not exist on this host; "
        "create it or change script_group",
    }
    existing = load(
        write(tmp_path, '[global]\nscript_user = "root"\nscript_group = "root"\n' + VALID)
    )
    assert check_environment(existing) == []
