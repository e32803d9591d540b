"""`pyvrrp import-keepalived`: keepalived.conf in, a node.toml that `pyvrrp check` accepts out.

Every conversion here is checked the way `pyvrrp check` checks a file (``configfile.load``):
the import promises that its output always passes. The fixtures under tests/data/keepalived
are a real three-node cluster's configs; the loop over Debian's samples makes sure every
VRRP-side construct they use either converts or is reported.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Callable
from ipaddress import ip_address, ip_interface
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyvrrp.cli import main
from pyvrrp.configfile import load
from pyvrrp.core.config import NodeConfig, TrackInterface, TrackScript, VrrpVersion
from pyvrrp.keepalived import (
    KeepalivedSyntaxError,
    NothingToImportError,
    import_keepalived,
    parse_file,
)
from pyvrrp.keepalived.values import command_value

DATA = Path(__file__).parents[1] / "data" / "keepalived"
SAMPLES = Path("/usr/share/doc/keepalived/samples")
SAMPLE_FILES = sorted(SAMPLES.glob("keepalived.conf*")) if SAMPLES.is_dir() else []


# Helpers ---------------------------------------------------------------------------------


@pytest.fixture
def conf(tmp_path: Path) -> Callable[..., Path]:
    """Write a keepalived.conf into tmp_path and return its path."""

    def write(text: str, name: str = "keepalived.conf") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """Run `pyvrrp import-keepalived ARGV...`: (exit code, stdout, stderr lines)."""
    code = main(["import-keepalived", *argv])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def checked(tmp_path: Path, text: str) -> tuple[NodeConfig, dict[str, Any]]:
    """What `pyvrrp check` reads from ``text``: the model (or ConfigError) and the raw TOML."""
    path = tmp_path / "imported-node.toml"
    path.write_text(text)
    return load(path), tomllib.loads(text)


def imported(tmp_path: Path, path: Path, config_id: str | None = None) -> Any:
    """Import and check: the result, its model and raw TOML."""
    result = import_keepalived(path, config_id)
    config, raw = checked(tmp_path, result.text)
    return result, config, raw


def messages(reports: Any) -> str:
    return "\n".join(str(report) for report in reports)


INSTANCE = """
vrrp_instance {name} {{
    interface eth0
    virtual_router_id {vrid}
    {body}
    virtual_ipaddress {{
        {vip}
    }}
}}
"""


def instance(body: str, name: str = "VI_1", vrid: int = 51, vip: str = "") -> str:
    """A vrrp_instance; each VRID gets its own address unless ``vip`` says otherwise."""
    vip = vip or f"192.168.200.{vrid - 35}/24"
    return INSTANCE.format(body=body, name=name, vrid=vrid, vip=vip)


# The real cluster --------------------------------------------------------------------------

# node -> (own address, this node's unicast source, its peers); VIP -> priority per node.
SEED_NODES = {
    "machine-a": ("192.168.200.1", ["192.168.200.2", "192.168.200.3"]),
    "machine-b": ("192.168.200.2", ["192.168.200.1", "192.168.200.3"]),
    "machine-c": ("192.168.200.3", ["192.168.200.1", "192.168.200.2"]),
}
SEED_PRIORITIES = {
    "machine-a": {"1.2.3.58": 100, "1.2.3.59": 75, "1.2.3.60": 50},
    "machine-b": {"1.2.3.58": 50, "1.2.3.59": 100, "1.2.3.60": 75},
    "machine-c": {"1.2.3.58": 75, "1.2.3.59": 50, "1.2.3.60": 100},
}


@pytest.mark.parametrize("node", sorted(SEED_NODES))
def test_seed_config_imports_checks_clean_and_matches_the_cluster_table(
    node: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, peers = SEED_NODES[node]
    code, out, err = run(capsys, str(DATA / f"{node}.conf"))
    # snmp_socket is the one thing pyvrrp cannot do: reported, so exit 1.
    assert code == 1
    dropped = [line for line in err if line.startswith("dropped: ")]
    assert len(dropped) == 1
    assert "snmp_socket" in dropped[0]
    assert "metrics_listen" in dropped[0]
    assert not any("pyvrrp refuses it" in line for line in err)
    assert "# NOT CONVERTED (1)" in out

    config, raw = checked(tmp_path, out)
    assert list(config.instances) == ["1.2.3.58", "1.2.3.59", "1.2.3.60"]
    assert raw["global"]["script_user"] == "nobody"
    assert raw["global"]["email"] == {
        "server": "127.0.0.1:25",
        "from": "infra+keepalived@dtone.com",
        "to": ["ops@example.com"],
    }
    script = config.scripts["chk_nginx_ingress"]
    assert script.command == ("/usr/bin/curl", "GET", "http://localhost:80/healthz")
    assert (script.interval_us, script.timeout_us, script.fall, script.rise, script.weight) == (
        2_000_000,
        2_000_000,
        2,
        2,
        2,
    )
    for name, priority in SEED_PRIORITIES[node].items():
        vip = config.instances[name]
        table = raw["instances"][name]
        last = name.rsplit(".", 1)[1]
        assert vip.interface == "eth0.4000"
        assert vip.vrid == int(last)
        assert vip.priority == priority
        master = priority == 100
        assert vip.initial_state == ("master" if master else "backup")
        # keepalived clears nopreempt on a MASTER; the backups keep it.
        assert vip.preempt is master
        assert table["version"] == 2  # no vrrp_version in the file: keepalived's IPv4 default
        assert vip.version is VrrpVersion.V2
        assert vip.email is True
        assert vip.unicast_peers_only is False
        assert vip.advert_interval_cs == 100
        assert vip.garp_delay_us == 5_000_000
        assert [a.address for a in vip.addresses] == [ip_interface(f"{name}/29")]
        assert [a.dev for a in vip.addresses] == [None]  # dev eth0.4000 is the interface
        assert [a.address for a in vip.excluded_addresses] == [
            ip_interface(f"2a03:4444:fff0:59:88::{last}/64")
        ]
        assert vip.unicast_source == ip_address(source)
        assert list(vip.unicast_peers) == [ip_address(p) for p in peers]
        assert vip.track_interfaces == (TrackInterface("eth0", 0), TrackInterface("dummy0", 0))
        assert vip.track_scripts == (TrackScript("chk_nginx_ingress", None),)
    # Each node is the master of exactly one VIP (its own).
    masters = [n for n, i in config.instances.items() if i.initial_state == "master"]
    assert len(masters) == 1


@pytest.mark.parametrize("node", sorted(SEED_NODES))
def test_seed_import_passes_pyvrrp_check(
    node: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "node.toml"
    assert run(capsys, str(DATA / f"{node}.conf"), "-o", str(output), "--force")[0] == 1
    # `check` alone checks the file, not this host (where curl or nobody may be missing).
    assert main(["check", "-c", str(output)]) == 0
    out, err = capsys.readouterr()
    assert (
        out
        == f"{output}: OK: 3 instances (1.2.3.58, 1.2.3.59, 1.2.3.60), 1 script, 0 sync groups\n"
    )
    assert err == ""


def test_seed_for_a_migration_speaks_both_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "node.toml"
    code, _, _ = run(
        capsys, str(DATA / "machine-a.conf"), "--vrrp-version", "2+3", "-o", str(output), "--force"
    )
    assert code == 1  # snmp_socket, as without the option
    config = load(output)
    assert {i.version for i in config.instances.values()} == {VrrpVersion.V2_AND_V3}
    assert 'version = "2+3"  # --vrrp-version 2+3; keepalived speaks 2 here' in output.read_text()


def test_vrrp_version_option(conf: Any, tmp_path: Path) -> None:
    auth = "authentication {\n auth_type PASS\n auth_pass secret\n }"
    v6 = instance("", "V6", 52).replace("192.168.200.17/24", "fe80::52/64")
    path = conf(instance(auth + "\n advert_int 2") + v6)
    result = import_keepalived(path, vrrp_version="2+3")
    config, raw = checked(tmp_path, result.text)
    assert config.instances["VI_1"].version is VrrpVersion.V2_AND_V3
    assert config.instances["VI_1"].auth_pass == "secret"
    assert "version" not in raw["instances"]["V6"]  # IPv6 is VRRPv3 whatever the option says
    assert result.faithful
    result = import_keepalived(path, vrrp_version=3)
    config, raw = checked(tmp_path, result.text)
    assert config.instances["VI_1"].version is VrrpVersion.V3
    assert config.instances["VI_1"].auth_pass is None
    assert "VRRPv3 (--vrrp-version 3) carries no password" in messages(result.dropped)
    with pytest.raises(ValueError, match="expected 2, 3 or '2\\+3'"):
        import_keepalived(path, vrrp_version="4")


def test_seed_router_ids_come_from_the_files(tmp_path: Path) -> None:
    # The file rendered for machine-b says machine-c: the import keeps what the file says.
    ids = {
        node: imported(tmp_path, DATA / f"{node}.conf")[1].global_.router_id for node in SEED_NODES
    }
    assert ids == {"machine-a": "machine-a", "machine-b": "machine-c", "machine-c": "machine-c"}


def test_seed_notes_say_what_keepalived_clears(tmp_path: Path) -> None:
    result, _, _ = imported(tmp_path, DATA / "machine-a.conf")
    notes = messages(result.notes)
    assert "machine-a.conf:29: vrrp_instance 1.2.3.58: nopreempt is cleared" in notes
    # enable_script_security is pyvrrp's default (script_security = true): nothing to say.
    assert "script_security" not in notes
    assert "script_security" not in result.text
    assert "smtp_connect_timeout" in notes


def test_seed_output_is_commented_and_names_the_source(tmp_path: Path) -> None:
    result, _, _ = imported(tmp_path, DATA / "machine-a.conf")
    text = result.text
    assert text.startswith(f"# node.toml imported from {DATA / 'machine-a.conf'}")
    assert '[instances."1.2.3.58"]' in text
    assert "# vrrp_instance 1.2.3.58 (" in text
    assert "version = 2  # keepalived's default for IPv4" in text
    assert "preempt = false  # nopreempt" in text


# Debian's samples --------------------------------------------------------------------------


def test_debian_samples_are_installed() -> None:
    if not SAMPLE_FILES:
        message = f"keepalived's samples are missing ({SAMPLES}); make system-deps installs them"
        if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    assert len(SAMPLE_FILES) >= 20


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_debian_sample_converts_or_reports(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "node.toml"
    code, out, err = run(capsys, str(sample), "-o", str(output), "--force")
    assert code in (0, 1, 2)
    assert not any("Traceback" in line for line in err)
    if code == 2:
        # Only LVS inside (no vrrp_instance): what was found is listed, nothing is written.
        assert not output.exists()
        assert out == ""
        assert err[-1] == (
            f"{sample}: no vrrp_instance could be imported (pyvrrp needs at least one): "
            "nothing to write"
        )
        assert all(line.startswith(f"dropped: {sample}:") for line in err[:-1])
        assert err[:-1]
        return
    dropped = [line for line in err if line.startswith("dropped: ")]
    assert bool(dropped) == (code == 1)
    # Every dropped line says where it comes from (file:line) or which key pyvrrp refused.
    assert all(str(sample) in line or "refuses" in line for line in dropped)
    assert not any("pyvrrp refuses it" in line for line in dropped), dropped
    checked(tmp_path, output.read_text())
    header = output.read_text().split("\n\n", 1)[0]
    assert all(line.removeprefix("dropped: ") in header for line in dropped)


def sample(name: str) -> Path:
    path = SAMPLES / name
    if not path.exists():
        if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
            pytest.fail(f"{path} is missing; make system-deps installs keepalived")
        pytest.skip(f"{path} is missing")
    return path


def test_sample_vrrp_auth_garp_and_duplicate_address(tmp_path: Path) -> None:
    result, config, raw = imported(tmp_path, sample("keepalived.conf.vrrp"))
    # The sample mails "acassen", a local user of the SMTP server: not an address pyvrrp
    # can send to, so the alerts are reported instead of converted.
    assert [r.message for r in result.dropped] == [
        "notification_email acassen is not an e-mail address (user@domain), which pyvrrp "
        "needs; write the full address"
    ]
    assert "email" not in raw.get("global", {})
    vi1 = raw["instances"]["VI_1"]
    assert vi1["auth_pass"] == "1111"
    assert config.instances["VI_1"].auth_pass == "1111"
    assert config.instances["VI_1"].version is VrrpVersion.V2
    assert vi1["version"] == 2
    assert "email" not in vi1
    assert config.instances["VI_1"].garp_delay_us == 10_000_000
    assert config.instances["VI_1"].initial_state == "master"
    assert [str(a.address.ip) for a in config.instances["VI_1"].addresses] == [
        "192.168.200.16",
        "192.168.200.17",
        "192.168.200.18",
    ]
    assert "192.168.200.18 is listed twice" in messages(result.notes)
    assert config.instances["VI_2"].priority == 50
    assert config.instances["VI_2"].initial_state == "backup"


def test_email_settings(conf: Any, tmp_path: Path) -> None:
    global_defs = (
        "global_defs {{\n notification_email {{\n a@example.com\n b@example.com\n }}\n"
        " {0}\n smtp_server {1}\n}}\n"
    )
    path = conf(
        global_defs.format("notification_email_from k@example.com", "10.0.0.9 2525")
        + instance("smtp_alert")
        + instance("smtp_alert false", "VI_2", 52)
    )
    result, _, raw = imported(tmp_path, path)
    assert result.faithful
    assert raw["global"]["email"] == {
        "server": "10.0.0.9:2525",
        "from": "k@example.com",
        "to": ["a@example.com", "b@example.com"],
    }
    assert raw["instances"]["VI_1"]["email"] is True
    assert "email" not in raw["instances"]["VI_2"]
    # keepalived's default sender is keepalived@ the host name.
    result, _, raw = imported(
        tmp_path, conf(global_defs.format("", "::1") + instance("smtp_alert"))
    )
    assert raw["global"]["email"]["server"] == "[::1]:25"
    assert raw["global"]["email"]["from"].startswith("keepalived@")
    assert "keepalived's default" in messages(result.notes)


def test_sample_localcheck_weights(tmp_path: Path) -> None:
    result, config, _ = imported(tmp_path, sample("keepalived.conf.vrrp.localcheck"))
    vi1 = config.instances["VI_1"]
    assert vi1.track_interfaces == (
        TrackInterface("eth1", 2),
        TrackInterface("eth2", -2),
        TrackInterface("eth3", 0),
    )
    assert vi1.track_scripts[:2] == (TrackScript("chk_sshd", None), TrackScript("chk_haproxy", 2))
    assert config.scripts["chk_sshd"].weight == -4
    assert config.scripts["chk_sshd"].command == ("killall", "-0", "sshd")
    # A bash redirection is not a program: it runs through the shell, with a note saying so.
    assert config.scripts["chk_http_port"].command == "</dev/tcp/127.0.0.1/80"
    assert "chk_http_port: the command uses shell syntax" in messages(result.notes)
    assert "no script_user: keepalived runs scripts as keepalived_script" in messages(result.notes)


def test_sample_routes_convert_or_are_reported(tmp_path: Path) -> None:
    result, config, _ = imported(tmp_path, sample("keepalived.conf.vrrp.routes"))
    routes = config.instances["VI_1"].virtual_routes
    assert [str(r.to) for r in routes] == [
        "192.168.109.0/24",
        "192.168.110.0/24",
        "192.168.111.0/24",
        "192.168.112.0/24",
        "0.0.0.0/0",
    ]
    assert str(routes[0].src) == "192.168.100.1"
    assert routes[4].table == 100
    assert [(str(r.to), r.scope) for r in config.routes][3:] == [
        ("192.168.212.0/24", "site"),
        ("192.168.213.0/24", "link"),
    ]
    dropped = messages(result.dropped)
    assert "multipath routes are not supported" in dropped
    assert "blackhole routes are not supported" in dropped
    assert len(result.dropped) == 2


def test_sample_rules_with_bad_networks_are_reported(tmp_path: Path) -> None:
    result, config, _ = imported(tmp_path, sample("keepalived.conf.vrrp.rules"))
    assert [(str(r.from_), r.table) for r in config.rules] == [("192.168.100.0/24", 1)]
    assert [(str(r.from_), r.table) for r in config.instances["VI_1"].virtual_rules] == [
        ("192.168.200.0/24", 2)
    ]
    assert "'192.168.100./24' is not an IP network" in messages(result.dropped)


def test_sample_sync_groups_and_group_notify(tmp_path: Path) -> None:
    result, config, _ = imported(tmp_path, sample("keepalived.conf.vrrp.sync"))
    assert config.sync_groups["G1"].instances == (
        "VI_1",
        "VI_2",
        "VI_5",
        "VI_6",
        "VI_7",
        "VI_8",
        "VI_9",
    )
    assert config.sync_groups["G2"].instances == ("VI_3", "VI_4")
    assert len(result.dropped) == 3
    assert all("sync groups have no notifications" in str(r) for r in result.dropped)


def test_sample_notify_commands_become_argv(tmp_path: Path) -> None:
    _, config, _ = imported(tmp_path, sample("keepalived.conf.vrrp.scripts"))
    vi1 = config.instances["VI_1"]
    assert vi1.notify_master == ("/usr/local/bin/vrrp.sh", "MASTER", "VI_1")
    assert vi1.notify_backup == ("/usr/local/bin/vrrp.sh", "BACKUP", "VI_1")
    assert vi1.notify_fault == ("/usr/local/bin/vrrp.sh", "FAULT", "VI_1")


def test_sample_conditional_lines(tmp_path: Path) -> None:
    path = sample("keepalived.conf.conditional_conf")
    skipped, _, _ = imported(tmp_path, path)
    assert "config id high (@high) skipped; give --config-id ID" in messages(skipped.dropped)
    high, config, raw = imported(tmp_path, path, "high")
    assert config.instances["VI_0"].priority == 170
    assert raw["instances"]["VI_0"]["version"] == 3
    assert config.scripts["check_VI_0"].command == ("/etc/keepalived/scripts/check_high_VI_0.sh",)
    assert config.instances["VI_0"].track_interfaces == (
        TrackInterface("eth3", 0),
        TrackInterface("eth2", 20),
    )
    dropped = messages(high.dropped)
    assert "use_vmac" in dropped
    assert "net_namespace" in dropped
    _, low, _ = imported(tmp_path, path, "low")
    assert low.instances["VI_0"].priority == 85


def test_sample_lvs_only_file_has_nothing_to_import(capsys: pytest.CaptureFixture[str]) -> None:
    path = sample("keepalived.conf.IPv6")
    code, out, err = run(capsys, str(path))
    assert (code, out) == (2, "")
    assert [line.split(": LVS")[0] for line in err[:-1]] == [
        f"dropped: {path}:7: virtual_server_group IPv6_group",
        f"dropped: {path}:13: virtual_server ae00::1",
    ]
    with pytest.raises(NothingToImportError) as raised:
        import_keepalived(path)
    assert len(raised.value.dropped) == 2


# Syntax --------------------------------------------------------------------------------------


def test_blocks_on_one_line_next_line_comments_quotes_and_continuations(
    conf: Any, tmp_path: Path
) -> None:
    path = conf(
        """! a comment
vrrp_script chk { script "/bin/check --tag #1 !x" }   # after a block
vrrp_instance VI_1
{
    interface eth0   ! bang comment
    virtual_router_id \\
        51
    track_script { chk weight -10 }
    virtual_ipaddress { 10.0.0.1/24 10.0.0.2/24 }
}
"""
    )
    result, config, _ = imported(tmp_path, path)
    # Inside double quotes # and ! are not comments.
    assert config.scripts["chk"].command == ("/bin/check", "--tag", "#1", "!x")
    vi1 = config.instances["VI_1"]
    assert vi1.vrid == 51
    assert vi1.track_scripts == (TrackScript("chk", -10),)
    # Each line of a list block is one item: "10.0.0.2/24" after the first is an option.
    assert "unknown option 10.0.0.2/24" in messages(result.dropped)


def test_variables_are_substituted(conf: Any, tmp_path: Path) -> None:
    path = conf(
        "$IF=eth1\n$VIP=10.0.0.7/24\n"
        + instance("", vip="${VIP}").replace("eth0", "$IF")
        + "vrrp_script chk {\n script \"/bin/sh -c 'echo $HOME'\"\n}\n"
    )
    _, config, _ = imported(tmp_path, path)
    assert config.instances["VI_1"].interface == "eth1"
    assert str(config.instances["VI_1"].addresses[0].address) == "10.0.0.7/24"
    # An undefined $NAME is left alone (it is the script's own).
    assert config.scripts["chk"].command == "/bin/sh -c 'echo $HOME'"


def test_comment_characters_inside_words_and_escaped(conf: Any, tmp_path: Path) -> None:
    auth = "authentication {{\n auth_type PASS\n auth_pass {0}\n }}"
    # As keepalived: an unquoted # starts a comment even inside a word; \# is the character.
    _, _, raw = imported(tmp_path, conf(instance(auth.format("pa#ss"))))
    assert raw["instances"]["VI_1"]["auth_pass"] == "pa"
    _, _, raw = imported(tmp_path, conf(instance(auth.format("pa\\#s\\!s"))))
    assert raw["instances"]["VI_1"]["auth_pass"] == "pa#s!s"
    _, _, raw = imported(tmp_path, conf(instance(auth.format('"p#s !x"'))))
    assert raw["instances"]["VI_1"]["auth_pass"] == "p#s !x"


def test_multi_line_definitions_are_reported(conf: Any, tmp_path: Path) -> None:
    path = conf("$ADDRS=10.0.0.1/24 \\\n 10.0.0.2/24\n" + instance(""))
    result, config, _ = imported(tmp_path, path)
    assert "VI_1" in config.instances
    assert f"{path}:1: $ADDRS: multi-line definitions are not supported" in messages(result.dropped)


def test_negated_conditionals(conf: Any, tmp_path: Path) -> None:
    path = conf(instance("@^a priority 10\n@a priority 20"))
    assert imported(tmp_path, path, "a")[1].instances["VI_1"].priority == 20
    assert imported(tmp_path, path, "b")[1].instances["VI_1"].priority == 10


def test_every_node_knows_its_file_and_line(conf: Any) -> None:
    conf("vrrp_script chk {\n  script /bin/true\n}\n", "conf.d/b.conf")
    path = conf("global_defs {\n  router_id x\n}\ninclude conf.d/*.conf\n")
    parsed = parse_file(path)
    assert [(n.keyword, str(n.location)) for n in parsed.nodes] == [
        ("global_defs", f"{path}:1"),
        ("vrrp_script", f"{path.parent / 'conf.d' / 'b.conf'}:1"),
    ]
    assert str(parsed.nodes[1].children[0].location).endswith("b.conf:2")  # type: ignore[index]


# Includes ------------------------------------------------------------------------------------


def test_includes_with_globs_relative_to_the_including_file(conf: Any, tmp_path: Path) -> None:
    conf(instance("priority 80", "VI_B", 52), "d/i/b.conf")
    conf(instance("priority 90"), "d/i/a.conf")
    conf("include i/*.conf\n", "d/sub.conf")
    conf("# not a .conf\n", "d/i/ignored.txt")
    path = conf("include d/sub.conf\n")
    result, config, _ = imported(tmp_path, path)
    assert result.faithful
    # Sorted, as keepalived's glob: a.conf before b.conf.
    assert list(config.instances) == ["VI_1", "VI_B"]
    assert [Path(f).name for f in result.files] == [
        "keepalived.conf",
        "sub.conf",
        "a.conf",
        "b.conf",
    ]
    assert "Included files: " in result.text


def test_include_inside_a_block(conf: Any, tmp_path: Path) -> None:
    conf("    virtual_ipaddress {\n        10.1.1.1/24\n    }\n", "vips.inc")
    path = conf(
        "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 9\n include vips.inc\n}\n"
    )
    _, config, _ = imported(tmp_path, path)
    assert str(config.instances["VI_1"].addresses[0].address) == "10.1.1.1/24"


def test_glob_matching_nothing_is_a_note(conf: Any, tmp_path: Path) -> None:
    path = conf("include conf.d/*.conf\n" + instance(""))
    result, _, _ = imported(tmp_path, path)
    assert result.faithful
    assert "no file matches" in messages(result.notes)


def test_include_cycle_is_an_error(conf: Any, capsys: pytest.CaptureFixture[str]) -> None:
    conf("include ../keepalived.conf\n", "sub/loop.conf")
    path = conf("include sub/loop.conf\n")
    code, out, err = run(capsys, str(path))
    assert code == 2
    assert out == ""
    assert len(err) == 1
    assert err[0].startswith(f"{path.parent / 'sub' / 'loop.conf'}:1: include cycle: ")
    assert err[0].endswith("remove one of these includes")


def test_self_include_is_a_cycle(conf: Any) -> None:
    path = conf("include keepalived.conf\n")
    with pytest.raises(KeepalivedSyntaxError, match=r"keepalived.conf:1: include cycle"):
        parse_file(path)


def test_missing_include_is_an_error(conf: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = conf("\ninclude /nonexistent/keepalived/extra.conf\n")
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert err == [
        f"{path}:2: include /nonexistent/keepalived/extra.conf: no such file "
        "(/nonexistent/keepalived/extra.conf); fix the path or remove the include"
    ]


# Errors: exit 2, file:line, never a traceback ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'vrrp_script x {\n  script "/bin/true\n}\n',
            ':2: unterminated quoted string: expected a closing "',
        ),
        (
            "vrrp_instance VI_1 {\n  interface eth0\n",
            ":1: the block of vrrp_instance opened here is never closed; expected '}'",
        ),
        ("global_defs {\n}\n}\n", ":3: '}' closes no block"),
        ("{\n}\n", ":1: '{' without a keyword before it; expected KEYWORD {"),
        ("include\n", ":1: include needs exactly one file name or glob pattern"),
        ("x\xff\n", ":1: invalid byte 0xff: not UTF-8 text"),
        ("ok\n\n\0\0\0", ":3: binary data (a NUL byte): this is not a keepalived.conf"),
    ],
    ids=["quote", "unclosed", "extra-close", "bare-open", "include-alone", "latin1", "binary"],
)
def test_unparseable_files_exit_2_with_file_and_line(
    text: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keepalived.conf"
    path.write_bytes(text.encode("latin-1"))
    output = tmp_path / "node.toml"
    code, out, err = run(capsys, str(path), "-o", str(output), "--force")
    assert code == 2
    assert out == ""
    assert len(err) == 1
    assert err[0].startswith(f"{path}{expected}")
    assert not output.exists()


def test_missing_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.conf"
    assert run(capsys, str(missing)) == (2, "", [f"{missing}: no such file"])
    assert run(capsys, str(tmp_path)) == (
        2,
        "",
        [f"{tmp_path}: is a directory, not a keepalived.conf"],
    )


def test_devices_and_huge_files_are_refused(
    conf: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = conf("include /dev/zero\n")
    code, _, err = run(capsys, str(path))
    assert (code, err) == (2, [f"{path}:1: include /dev/zero: is not a regular file"])
    huge = conf("#" * (16 * 2**20 + 1), "huge.conf")
    code, _, err = run(capsys, str(huge))
    assert (code, err) == (2, [f"{huge}: larger than 16 MiB: this is not a keepalived.conf"])


def test_glob_skips_directories(conf: Any, tmp_path: Path) -> None:
    (tmp_path / "conf.d" / "dir.conf").mkdir(parents=True)
    conf(instance(""), "conf.d/vi1.conf")
    result, config, _ = imported(tmp_path, conf("include conf.d/*.conf\n"))
    assert list(config.instances) == ["VI_1"]
    assert result.faithful


def test_unreadable_file(
    conf: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = conf(instance(""))

    def denied(self: Path, *args: object, **kwargs: object) -> Any:
        raise PermissionError(13, "Permission denied")

    # The tests run as root, whom file modes do not stop.
    monkeypatch.setattr(Path, "open", denied)
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert err == [f"{path}: permission denied: cannot read it (run as root or fix its mode)"]


def test_file_name_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = os.fsdecode(os.fsencode(tmp_path) + b"/k\xff.conf")
    Path(path).write_text(instance(""))
    code, out, _ = run(capsys, path)
    assert code == 0
    assert "# node.toml imported from " in out
    assert "k\\xff.conf" in out
    out.encode("utf-8")  # what a real stdout does: no surrogate left
    tomllib.loads(out)


def test_stdout_that_cannot_be_written_exits_2(
    conf: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Full:
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            pass

    path = conf(instance(""))
    monkeypatch.setattr("sys.stdout", Full())
    assert main(["import-keepalived", str(path)]) == 2
    assert capsys.readouterr().err == "cannot write to stdout: No space left on device\n"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-keepalived"]) == 2
    assert "KEEPALIVED.CONF" in capsys.readouterr().err


# CLI exit codes and output -----------------------------------------------------------------------


def test_faithful_import_exits_0_to_stdout(conf: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(conf(instance("priority 90"))))
    assert code == 0
    assert err == []
    assert "[instances.VI_1]" in out
    assert "NOT CONVERTED" not in out


def test_faithful_import_writes_the_file(
    conf: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out" / "node.toml"
    output.parent.mkdir()
    code, out, err = run(capsys, str(conf(instance(""))), "-o", str(output))
    assert code == 0
    assert out == ""
    assert err == [f"{output}: written; check it with: pyvrrp check -c {output}"]
    assert load(output).instances["VI_1"].vrid == 51
    assert [p.name for p in output.parent.iterdir()] == ["node.toml"]  # no temporary left


def test_dropped_import_is_not_written_without_force(
    conf: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = conf(instance("use_vmac"))
    output = tmp_path / "node.toml"
    code, out, err = run(capsys, str(path), "-o", str(output))
    assert code == 1
    assert out == ""
    assert err[0].startswith(f"dropped: {path}:5: vrrp_instance VI_1: use_vmac: VMAC")
    assert err[-1] == (
        f"{output}: not written: 1 item(s) could not be converted (listed above); review "
        "them, then run again with --force to write it anyway"
    )
    assert not output.exists()
    code, _, err = run(capsys, str(path), "-o", str(output), "--force")
    assert code == 1
    assert err[-1] == f"{output}: written; check it with: pyvrrp check -c {output}"
    text = output.read_text()
    assert f"#   {path}:5: vrrp_instance VI_1: use_vmac: VMAC" in text
    load(output)


def test_dropped_import_still_goes_to_stdout(conf: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(conf(instance("use_vmac"))))
    assert code == 1
    assert "[instances.VI_1]" in out
    assert "# NOT CONVERTED (1): review each line before using this file." in out
    assert len([line for line in err if line.startswith("dropped: ")]) == 1


def test_unwritable_output_exits_2(
    conf: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "missing-dir" / "node.toml"
    code, _, err = run(capsys, str(conf(instance(""))), "-o", str(output))
    assert code == 2
    assert err[-1].startswith(f"{output}: cannot write it: ")


# keepalived semantics ----------------------------------------------------------------------------


def test_state_master_without_priority_is_the_owner(conf: Any, tmp_path: Path) -> None:
    path = conf(
        instance("state MASTER\n nopreempt\n track_interface {\n eth1 weight 10\n eth2\n }")
    )
    result, config, raw = imported(tmp_path, path)
    vi1 = config.instances["VI_1"]
    assert (vi1.priority, vi1.initial_state, vi1.preempt) == (255, "master", True)
    # A weight cannot change an owner's priority, in keepalived as in pyvrrp: left out.
    assert vi1.track_interfaces == (TrackInterface("eth2", 0),)
    notes = messages(result.notes)
    assert "nopreempt is cleared for the address owner" in notes
    assert "track_interface eth1 (weight 10) is left out" in notes
    assert result.faithful
    assert raw["instances"]["VI_1"]["priority"] == 255


def test_backup_owner_starts_as_master_and_says_so(conf: Any, tmp_path: Path) -> None:
    result, config, raw = imported(tmp_path, conf(instance("state BACKUP\n priority 255")))
    assert config.instances["VI_1"].initial_state == "master"
    assert "state" not in raw["instances"]["VI_1"]
    assert "state BACKUP with priority 255: pyvrrp starts the address owner as master" in (
        messages(result.dropped)
    )


def test_no_state_no_priority_is_a_backup_at_100(conf: Any, tmp_path: Path) -> None:
    _, config, raw = imported(tmp_path, conf(instance("")))
    assert (config.instances["VI_1"].priority, config.instances["VI_1"].initial_state) == (
        100,
        "backup",
    )
    assert "state" not in raw["instances"]["VI_1"]


def test_nopreempt_on_backup_and_preempt_delay(conf: Any, tmp_path: Path) -> None:
    path = conf(
        instance("state BACKUP\n priority 90\n preempt_delay 30", "VI_A")
        + instance("state BACKUP\n priority 80\n nopreempt\n preempt_delay 30", vrid=52)
    )
    result, config, _ = imported(tmp_path, path)
    assert config.instances["VI_A"].preempt_delay_us == 30_000_000
    assert config.instances["VI_1"].preempt is False
    assert config.instances["VI_1"].preempt_delay_us == 0
    assert "preempt_delay is cleared because of nopreempt" in messages(result.notes)
    result, config, _ = imported(tmp_path, conf(instance("priority 255\n preempt_delay 30")))
    assert config.instances["VI_1"].preempt_delay_us == 0
    assert "preempt_delay is cleared because of a start as master" in messages(result.notes)


@pytest.mark.parametrize(
    ("global_defs", "body", "version"),
    [
        ("", "", 2),
        ("vrrp_version 3", "", 3),
        ("", "version 3", 3),
        ("vrrp_version 3", "version 2", 2),
    ],
)
def test_ipv4_version(global_defs: str, body: str, version: int, conf: Any, tmp_path: Path) -> None:
    path = conf(f"global_defs {{\n {global_defs}\n}}\n" + instance(body))
    _, _, raw = imported(tmp_path, path)
    assert raw["instances"]["VI_1"]["version"] == version


def test_ipv6_instance_has_no_version_and_puts_link_local_first(conf: Any, tmp_path: Path) -> None:
    text = instance("").replace("192.168.200.16/24", "2001:db8::16/64\n        fe80::51/64")
    result, config, raw = imported(tmp_path, conf(text))
    assert "version" not in raw["instances"]["VI_1"]
    assert [str(a.address) for a in config.instances["VI_1"].addresses] == [
        "fe80::51/64",
        "2001:db8::16/64",
    ]
    assert "fe80::51/64 moved first" in messages(result.notes)


def test_ipv6_instance_without_link_local_is_dropped_with_advice(conf: Any, tmp_path: Path) -> None:
    text = instance("", "V6").replace("192.168.200.16/24", "2001:db8::16/64")
    result, config, _ = imported(tmp_path, conf(text + instance("", vrid=52)))
    assert list(config.instances) == ["VI_1"]
    assert "add one (e.g. fe80::VRID/64) on every node: not imported" in messages(result.dropped)


def test_mixed_family_address_goes_to_excluded(conf: Any, tmp_path: Path) -> None:
    text = instance("").replace("192.168.200.16/24", "192.168.200.16/24\n        2001:db8::1/64")
    result, config, _ = imported(tmp_path, conf(text))
    assert [str(a.address) for a in config.instances["VI_1"].excluded_addresses] == [
        "2001:db8::1/64"
    ]
    assert not result.faithful


def test_authentication(conf: Any, tmp_path: Path) -> None:
    auth = "authentication {{\n auth_type {0}\n auth_pass {1}\n }}"
    result, _, raw = imported(tmp_path, conf(instance(auth.format("PASS", "longpassword"))))
    assert raw["instances"]["VI_1"]["auth_pass"] == "longpass"
    assert "auth_pass is cut to 8 bytes" in messages(result.notes)
    result, _, raw = imported(tmp_path, conf(instance(auth.format("AH", "x"))))
    assert "auth_pass" not in raw["instances"]["VI_1"]
    assert "auth_type AH is not supported" in messages(result.dropped)
    result, _, raw = imported(tmp_path, conf(instance("version 3\n" + auth.format("PASS", "x"))))
    assert "auth_pass" not in raw["instances"]["VI_1"]
    assert result.faithful
    assert "authentication is ignored with VRRPv3" in messages(result.notes)


def test_unicast(conf: Any, tmp_path: Path) -> None:
    peers = "unicast_src_ip 10.0.0.1\n unicast_peer {\n 10.0.0.2\n 10.0.0.3\n }"
    _, config, raw = imported(tmp_path, conf(instance(peers)))
    assert [str(p) for p in config.instances["VI_1"].unicast_peers] == ["10.0.0.2", "10.0.0.3"]
    assert raw["instances"]["VI_1"]["unicast_peers_only"] is False
    _, _, raw = imported(tmp_path, conf(instance(peers + "\n check_unicast_src")))
    assert "unicast_peers_only" not in raw["instances"]["VI_1"]
    checked_globally = "global_defs {\n vrrp_check_unicast_src\n}\n" + instance(peers)
    _, config, raw = imported(tmp_path, conf(checked_globally))
    assert "unicast_peers_only" not in raw["instances"]["VI_1"]
    assert config.instances["VI_1"].unicast_peers_only is True
    result, config, _ = imported(tmp_path, conf(instance("unicast_src_ip 10.0.0.1")))
    assert config.instances["VI_1"].unicast_source is None
    assert "unicast_src_ip without unicast_peer" in messages(result.dropped)


def test_repeats_are_ignored_as_keepalived_ignores_them(conf: Any, tmp_path: Path) -> None:
    path = conf(
        'vrrp_script chk {\n script "/bin/true"\n}\n'
        'vrrp_script chk {\n script "/bin/false"\n}\n'
        'vrrp_script "chk.x" {\n script "/bin/true"\n}\n'
        'vrrp_script chk_x {\n script "/bin/true"\n}\n'
        + instance(
            "unicast_src_ip 10.0.0.1\n unicast_peer {\n 10.0.0.2\n 10.0.0.2\n 10.0.0.1\n }\n"
            " track_interface {\n eth1\n eth1 weight 5\n }\n track_script {\n chk\n chk\n }"
        )
    )
    result, config, _ = imported(tmp_path, path)
    vi1 = config.instances["VI_1"]
    assert [str(p) for p in vi1.unicast_peers] == ["10.0.0.2"]
    assert vi1.track_interfaces == (TrackInterface("eth1", 0),)
    assert vi1.track_scripts == (TrackScript("chk", None),)
    assert config.scripts["chk"].command == ("/bin/true",)
    # chk.x would be chk_x, which another script is named as written: chk_x_2.
    assert list(config.scripts) == ["chk", "chk_x_2", "chk_x"]
    assert "vrrp_script chk is defined twice; the second is ignored" in messages(result.dropped)
    notes = messages(result.notes)
    assert "unicast_peer 10.0.0.2 is listed twice" in notes
    assert "unicast_peer 10.0.0.1 is this node's own unicast_src_ip: left out" in notes
    assert "track_interface eth1 is listed twice" in notes


def test_tracking_weights_and_reverse(conf: Any, tmp_path: Path) -> None:
    path = conf(
        'vrrp_script chk {\n script "/bin/true"\n weight 254\n}\n'
        'vrrp_script rev {\n script "/bin/true"\n weight -5 reverse\n}\n'
        + instance(
            "priority 100\n track_script {\n chk\n rev\n missing\n chk weight 3 noreverse\n }\n"
            " track_interface {\n eth1 weight -20 reverse\n eth2 weight 0\n }"
        )
    )
    result, config, _ = imported(tmp_path, path)
    assert config.scripts["chk"].weight == 253
    assert config.instances["VI_1"].track_scripts == (TrackScript("chk", None),)
    assert config.instances["VI_1"].track_interfaces == (TrackInterface("eth2", 0),)
    dropped = messages(result.dropped)
    assert "vrrp_script rev: weight ... reverse" in dropped
    assert "track_script missing: no such vrrp_script" in dropped
    assert "track_interface eth1 weight -20 reverse: reversed weights are not supported" in dropped
    assert "track_script chk: duplicate" not in dropped


def test_notify_with_user_and_script_options(conf: Any, tmp_path: Path) -> None:
    path = conf(
        'vrrp_script chk {\n script "/bin/check a"\n user nobody\n timeout 5\n interval 0.5\n}\n'
        + instance(
            'notify_master "/usr/bin/on-master --vip 16" vrrp\n'
            " notify /usr/local/bin/notify.sh vrrp\n track_script {\n chk\n }"
        )
    )
    result, config, _ = imported(tmp_path, path)
    assert result.faithful, result.dropped
    vi1 = config.instances["VI_1"]
    assert vi1.notify_master == ("/usr/bin/on-master", "--vip", "16")
    assert vi1.notify == ("/usr/local/bin/notify.sh",)
    assert vi1.notify_user == "vrrp"
    assert vi1.notify_group is None
    script = config.scripts["chk"]
    assert (script.user, script.timeout_us, script.interval_us) == ("nobody", 5_000_000, 500_000)


def test_users_and_groups(conf: Any, tmp_path: Path) -> None:
    path = conf(
        'vrrp_script chk {\n script "/bin/true"\n user nobody nogroup\n}\n'
        + instance("notify_master /bin/a u1 g1\n notify_backup /bin/b u1 g1")
    )
    result, config, raw = imported(tmp_path, path)
    assert result.faithful
    assert (config.scripts["chk"].user, config.scripts["chk"].group) == ("nobody", "nogroup")
    vi1 = config.instances["VI_1"]
    assert (vi1.notify_user, vi1.notify_group) == ("u1", "g1")
    # No enable_script_security: keepalived runs scripts others can change; so does the file.
    assert raw["global"]["script_security"] is False
    assert config.global_.script_security is False
    assert "script_security = false  # no enable_script_security" in result.text
    assert "no enable_script_security: keepalived runs scripts" in messages(result.notes)


def test_addresses_labels_and_options(conf: Any, tmp_path: Path) -> None:
    text = instance("").replace(
        "192.168.200.16/24",
        "192.168.200.16/24 dev eth0 label eth0:vip scope global\n"
        "        192.168.200.17/24 dev eth1 label eth0:bad\n"
        "        192.168.200.18 brd 192.168.200.255 no_track\n"
        "        not-an-address",
    )
    result, config, _ = imported(tmp_path, conf(text))
    addresses = config.instances["VI_1"].addresses
    assert [(str(a.address), a.dev, a.label, a.scope) for a in addresses] == [
        ("192.168.200.16/24", None, "eth0:vip", "global"),
        ("192.168.200.17/24", "eth1", None, None),
        ("192.168.200.18/32", None, None, None),
    ]
    dropped = messages(result.dropped)
    assert "label eth0:bad must start with eth1:" in dropped
    assert "brd 192.168.200.255: not supported" in dropped
    assert "'not-an-address' is not an IP address" in dropped
    assert "no_track: pyvrrp puts a deleted address back" in messages(result.notes)


def test_interface_after_the_addresses(conf: Any, tmp_path: Path) -> None:
    path = conf(
        "vrrp_instance VI_1 {\n virtual_ipaddress {\n 10.0.0.1/24 dev eth7 label eth7:v\n }\n"
        " virtual_router_id 9\n interface eth7\n}\n"
    )
    result, config, raw = imported(tmp_path, path)
    assert result.faithful
    assert raw["instances"]["VI_1"]["addresses"] == [{"address": "10.0.0.1/24", "label": "eth7:v"}]
    assert config.instances["VI_1"].addresses[0].label == "eth7:v"


def test_global_garp_defaults(conf: Any, tmp_path: Path) -> None:
    path = conf(
        "global_defs {\n vrrp_garp_master_repeat 3\n vrrp_garp_master_delay 0\n"
        " vrrp_garp_master_refresh 60\n}\n"
        + instance("garp_master_repeat 7")
        + instance("", "VI_2", 52)
    )
    result, config, _ = imported(tmp_path, path)
    assert result.faithful
    vi1, vi2 = config.instances["VI_1"], config.instances["VI_2"]
    assert (vi1.garp_repeat, vi1.garp_delay_us, vi1.garp_refresh_us) == (7, 0, 60_000_000)
    assert (vi2.garp_repeat, vi2.garp_delay_us, vi2.garp_refresh_us) == (3, 0, 60_000_000)


def test_default_interface(conf: Any, tmp_path: Path) -> None:
    path = conf(
        "global_defs {\n default_interface eth3\n vrrp_skip_check_adv_addr\n}\n"
        + instance("").replace(" interface eth0\n", "")
        + instance("", "VI_2", 52)
    )
    result, config, _ = imported(tmp_path, path)
    assert result.faithful
    assert [i.interface for i in config.instances.values()] == ["eth3", "eth0"]
    assert "pyvrrp does not compare the advertised address lists" in messages(result.notes)


def test_routes_and_rules_with_named_tables(
    conf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The node's rt_tables name the table, as the real cluster's do (`1 vswitch`).
    iproute2 = tmp_path / "iproute2"
    iproute2.mkdir()
    (iproute2 / "rt_tables").write_text("255 local\n254 main\n1 vswitch\n")
    monkeypatch.setenv("PYVRRP_IPROUTE2_DIRS", str(iproute2))
    path = conf(
        "static_routes {\n 1.2.3.57/32 dev eth0.4000 table vswitch\n"
        " 0.0.0.0/0 via 1.2.3.57 dev eth0.4000 table vswitch\n}\n"
        "static_rules {\n from 1.2.3.56/29 lookup vswitch\n to 1.2.3.56/29 table 7 priority 100\n"
        " from all lookup 9\n}\n" + instance("")
    )
    result, _, raw = imported(tmp_path, path)
    assert result.faithful, result.dropped
    assert raw["routes"] == [
        {"to": "1.2.3.57/32", "dev": "eth0.4000", "table": "vswitch"},
        {"to": "0.0.0.0/0", "via": "1.2.3.57", "dev": "eth0.4000", "table": "vswitch"},
    ]
    assert raw["rules"] == [
        {"from": "1.2.3.56/29", "table": "vswitch"},
        {"to": "1.2.3.56/29", "priority": 100, "table": 7},
        {"table": 9, "family": "ipv4"},
    ]
    assert not result.notes
    # Imported on a host that does not name it: kept as a name, with a note.
    monkeypatch.setenv("PYVRRP_IPROUTE2_DIRS", str(tmp_path / "nowhere"))
    result = import_keepalived(path)
    assert result.faithful
    assert 'table = "vswitch"' in result.text
    assert [r.message.split(";")[0] for r in result.notes] == [
        "routing table vswitch is not named in this host's rt_tables files"
    ]


def test_sync_group_trackers_go_to_the_members(conf: Any, tmp_path: Path) -> None:
    path = conf(
        'vrrp_script chk {\n script "/bin/true"\n weight -30\n}\n'
        + instance("", "A")
        + instance("", "B", 52)
        + "vrrp_sync_group G {\n group {\n A B C\n }\n track_interface {\n eth9\n }\n"
        " track_script {\n chk\n }\n}\n"
    )
    result, config, _ = imported(tmp_path, path)
    assert config.sync_groups["G"].instances == ("A", "B")
    for name in ("A", "B"):
        assert config.instances[name].track_interfaces == (TrackInterface("eth9", 0),)
        assert config.instances[name].track_scripts == (TrackScript("chk", 0),)
    assert "no vrrp_instance C was imported" in messages(result.dropped)


def test_global_defs_not_converted_are_listed_one_line_each(conf: Any, tmp_path: Path) -> None:
    path = conf(
        "global_defs {\n vrrp_strict\n lvs_id x\n enable_snmp_vrrp\n vrrp_mcast_group4 224.0.0.19\n"
        " something_new 1\n}\nvirtual_server 10.0.0.1 80 {\n real_server 10.0.0.2 80 {\n"
        " weight 1\n }\n}\n" + instance("")
    )
    result, _, _ = imported(tmp_path, path)
    lines = [str(r) for r in result.dropped]
    assert len(lines) == 6
    assert lines[0].startswith(f"{path}:2: global_defs vrrp_strict: strict mode")
    assert lines[1].startswith(f"{path}:3: global_defs lvs_id: LVS is outside pyvrrp")
    assert (
        lines[4] == f"{path}:6: global_defs something_new: not converted (pyvrrp has no equivalent)"
    )
    assert lines[5].startswith(f"{path}:8: virtual_server 10.0.0.1: LVS")


def test_instance_names_and_script_names(conf: Any, tmp_path: Path) -> None:
    path = conf(
        'vrrp_script "chk nginx.v2" {\n script "/bin/true"\n}\n'
        + instance('track_script {\n "chk nginx.v2"\n }', "10.0.0.1")
    )
    result, config, _ = imported(tmp_path, path)
    assert list(config.instances) == ["10.0.0.1"]
    assert list(config.scripts) == ["chk_nginx_v2"]
    assert config.instances["10.0.0.1"].track_scripts == (TrackScript("chk_nginx_v2", None),)
    assert "vrrp_script chk nginx.v2 is named chk_nginx_v2" in messages(result.notes)


def test_instance_names_pyvrrp_refuses_are_renamed(conf: Any, tmp_path: Path) -> None:
    path = conf(
        instance("", '"web front"')
        + instance('notify "/bin/notify"', "-x", 52)
        + 'vrrp_sync_group g {\n group {\n "web front"\n -x\n }\n}\n'
    )
    result, config, _ = imported(tmp_path, path)
    assert list(config.instances) == ["web_front", "_-x"]
    assert config.sync_groups["g"].instances == ("web_front", "_-x")
    assert "vrrp_instance web front is named web_front in node.toml" in messages(result.notes)
    # The generic notify gets the instance name: a rename changes what the script sees.
    assert "vrrp_instance -x is named _-x in node.toml (pyvrrp's name rules); its notify " in (
        messages(result.dropped)
    )


def test_what_pyvrrp_still_refuses_is_removed_and_reported(conf: Any, tmp_path: Path) -> None:
    # Two instances on one VRID and interface: keepalived runs them, pyvrrp refuses.
    path = conf(instance("") + instance("", "VI_2", vip="192.168.200.17/24"))
    result, config, _ = imported(tmp_path, path)
    assert "VI_2" not in config.instances or "VI_1" not in config.instances
    assert "pyvrrp refuses it: VRID 51 is already used" in messages(result.dropped)


def test_every_instance_refused_is_nothing_to_import(
    conf: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # keepalived would fail on this interface name too; pyvrrp refuses it, and then there is
    # no instance left to write.
    path = conf(instance("").replace("interface eth0", "interface averyveryverylongifname"))
    code, out, err = run(capsys, str(path))
    assert (code, out) == (2, "")
    assert err[0].startswith(f"dropped: {path}:2: instances.VI_1.interface: pyvrrp refuses it: ")
    assert err[-1] == (
        f"{path}: no vrrp_instance could be imported (pyvrrp needs at least one): nothing to write"
    )


def test_instance_without_required_keys_is_reported(conf: Any, tmp_path: Path) -> None:
    path = conf(
        "vrrp_instance X {\n interface eth0\n}\n"
        + "vrrp_instance Y {\n virtual_ipaddress {\n 10.9.9.9/24\n }\n}\n"
        + instance("")
    )
    result, config, _ = imported(tmp_path, path)
    assert list(config.instances) == ["VI_1"]
    assert (
        f"{path}:1: vrrp_instance X: has no virtual_router_id or virtual_ipaddress, which pyvrrp "
        "needs: not imported" in messages(result.dropped)
    )
    assert f"{path}:4: vrrp_instance Y: has no interface or virtual_router_id" in messages(
        result.dropped
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/usr/bin/curl -fsS http://x/healthz", ["/usr/bin/curl", "-fsS", "http://x/healthz"]),
        ("killall -0 'my proc'", ["killall", "-0", "my proc"]),
        ("pidof nginx | grep 1", "pidof nginx | grep 1"),
        ("</dev/tcp/127.0.0.1/80", "</dev/tcp/127.0.0.1/80"),
        ("bin/relative arg", "bin/relative arg"),
        ("unbalanced 'quote", "unbalanced 'quote"),
    ],
)
def test_command_value(text: str, expected: list[str] | str) -> None:
    assert command_value(text) == expected


# Fuzzing: any text either fails to parse (exit 2) or imports into a file that checks -------

WORDS = [
    "global_defs", "vrrp_script", "vrrp_instance", "vrrp_sync_group", "static_routes",
    "static_rules", "static_ipaddress", "virtual_ipaddress", "virtual_ipaddress_excluded",
    "virtual_routes", "virtual_rules", "track_interface", "track_script", "unicast_peer",
    "unicast_src_ip", "authentication", "auth_type", "auth_pass", "PASS", "AH", "group",
    "interface", "virtual_router_id", "priority", "state", "MASTER", "BACKUP", "nopreempt",
    "preempt_delay", "advert_int", "version", "vrrp_version", "weight", "reverse", "script",
    "interval", "timeout", "rise", "fall", "user", "notify_master", "notify", "smtp_alert",
    "smtp_server", "notification_email", "router_id", "script_user", "garp_master_delay",
    "garp_master_repeat", "garp_master_refresh", "dev", "label", "scope", "via", "src", "table",
    "from", "to", "lookup", "default", "eth0", "eth0:1", "VI_1", "chk", "1", "0", "2", "3",
    "51", "255", "256", "-10", "0.5", "10.0.0.1", "10.0.0.2/24", "10.0.0.0/24", "fe80::1/64",
    "2001:db8::1", "::/0", "0.0.0.0/0", "{", "}", "{", "}", '"/bin/true x"', "#", "!", "\n",
    "\n", "\n", "\n", "@a", "$X=1", "$X", "global", "link", "all", "blackhole", "or",
    "averyveryverylongifname", "224.0.0.18/32", "127.0.0.1", "0.0.0.0", "10.0.0.255/24",
    "1.2.3.58", "192.168.200.1", "ops@example.com", "nobody", "vswitch", "lo",
]  # fmt: skip


def imports_or_fails_cleanly(path: Path) -> None:
    """The import's two outcomes: an error naming the file, or a file that checks."""
    try:
        result = import_keepalived(path)
    except (KeepalivedSyntaxError, NothingToImportError) as error:
        message = str(error)
    else:
        out = path.with_name("node.toml")
        out.write_text(result.text)
        load(out)
        return
    assert message.startswith(str(path))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=80))
def test_any_keepalived_like_text_imports_or_fails_cleanly(words: list[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "keepalived.conf"
        path.write_text(" ".join(words))
        imports_or_fails_cleanly(path)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_import_or_fail_cleanly(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "keepalived.conf"
        path.write_bytes(data)
        imports_or_fails_cleanly(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_real_configs_import_or_fail_cleanly(data: st.DataObject) -> None:
    # The real cluster's file with lines deleted, repeated, replaced or inserted: reaches
    # the converter's corners (an address before any interface, half an instance...).
    lines = (DATA / "machine-a.conf").read_text().splitlines()
    words = st.lists(st.sampled_from(WORDS), max_size=5).map(" ".join)
    for _ in range(data.draw(st.integers(0, 8))):
        i = data.draw(st.integers(0, len(lines) - 1))
        operation = data.draw(st.sampled_from(["delete", "repeat", "replace", "insert"]))
        if operation == "delete" and len(lines) > 1:
            del lines[i]
        elif operation == "repeat":
            lines.insert(i, lines[i])
        elif operation == "replace":
            lines[i] = data.draw(words)
        else:
            lines.insert(i, data.draw(words))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "keepalived.conf"
        path.write_text("\n".join(lines))
        imports_or_fails_cleanly(path)


# Every value keepalived would ignore or pyvrrp cannot take: one report line each ------------

SCRIPT = 'vrrp_script chk {{\n script "/bin/true"\n {0}\n}}\n'
GLOBAL = "global_defs {{\n {0}\n}}\n"


@pytest.mark.parametrize(
    ("text", "report"),
    [
        (instance("priority 300"), "priority 300 is out of range 1..255; ignored"),
        (instance("priority"), "priority: missing the priority; ignored (as keepalived)"),
        (instance("advert_int fast"), "advert_int 'fast' is not a number; ignored"),
        (instance("state SLAVE"), "state SLAVE is not MASTER or BACKUP; ignored"),
        (instance("smtp_alert maybe"), "'maybe' is not a boolean (true or false); ignored"),
        (instance("advert_int 1.5"), "advert_int 1.5 is not whole seconds, which VRRPv2 needs"),
        (
            instance("version 3\n advert_int 0.015"),
            "advert_int 0.015 is not a multiple of 0.01 s; rounded to 0.02",
        ),
        (instance("version 3\n advert_int 60"), "advert_int 60 is above VRRPv3's 40.95 s"),
        (instance("garp_master_repeat 0"), "garp_master_repeat 0: pyvrrp sends 1..100"),
        (
            instance("version 2", vip="fe80::1/64"),
            "VRRPv2 over IPv6 is not supported (RFC 3768 is IPv4 only); imported as version 3",
        ),
        (
            instance("authentication {\n auth_type PASS\n auth_pass x\n auth_extra y\n }"),
            "authentication auth_extra: not converted",
        ),
        (
            instance("authentication {\n auth_type MD5\n auth_pass x\n }"),
            "auth_type MD5: expected PASS or AH; authentication ignored (as keepalived)",
        ),
        (
            instance("notify_master /bin/a u1\n notify_backup /bin/b u2\n notify_fault /bin/c"),
            "notify commands run as different users (notify_master as u1, notify_backup as u2, "
            "notify_fault as script_user); pyvrrp runs an instance's notifications as one",
        ),
        (
            instance("unicast_peer {\n 10.0.0.2 min_ttl 250\n }"),
            "unicast_peer 10.0.0.2: min_ttl 250: TTL checks are not supported",
        ),
        (
            instance("unicast_peer {\n peer-one\n }"),
            "unicast_peer: 'peer-one' is not an IP address",
        ),
        (instance("track_interface {\n eth1 weigh 3\n }"), "expected NAME weight N, got eth1"),
        (instance("track_interface {\n eth1 weight 2 sideways\n }"), "unknown option sideways"),
        (instance("dont_track_primary"), "pyvrrp always tracks the instance's own interface"),
        (instance("some_new_keyword 1"), "some_new_keyword: not converted (pyvrrp has no"),
        (instance("accept"), "accept: accept mode is pyvrrp's default"),
        (
            instance("virtual_routes {\n 10.1.0.0/16 via 10.0.0.1 proto static\n }"),
            "route option proto is not supported; route not imported",
        ),
        (instance("virtual_routes {\n 10.1.0.0/16 via\n }"), "via without a value"),
        (instance("virtual_routes {\n 10.1.0.0/16 scope universe\n }"), "scope universe"),
        (instance("virtual_routes {\n via 10.0.0.1\n }"), "no destination; route not imported"),
        (instance("virtual_routes {\n 10.1.0.0/16 dev eth0 table 0\n }"), "table 0 is out of"),
        (instance("virtual_routes {\n 10.1.0.0/16 dev eth0 metric x\n }"), "metric 'x' is not"),
        (instance("virtual_routes {\n 10.1.0.0/16 nexthop via 10.0.0.1\n }"), "multipath"),
        (instance("virtual_routes {\n 10.1.0.1/16 dev eth0\n }"), "has host bits set"),
        (instance("virtual_rules {\n from 10.1.0.0/16 goto 5\n }"), "goto rules are not supported"),
        (instance("virtual_rules {\n from 10.1.0.0/16 fwmark 5\n }"), "rule option fwmark is not"),
        (instance("virtual_rules {\n from 10.1.0.0/16 table\n }"), "table without a value"),
        (instance("virtual_rules {\n from 10.1.0.0/16\n }"), "no table (lookup); rule not"),
        (instance("virtual_rules {\n from default table 5\n }"), "from default is not a network"),
        (
            instance("").replace("192.168.200.16/24", "192.168.200.16/24 scope nowhere"),
            "192.168.200.16/24: scope nowhere is not supported",
        ),
        (
            instance("").replace("192.168.200.16/24", "192.168.200.16/24\n 10.0.0.9/24 label"),
            "10.0.0.9/24: label without a value: ignored",
        ),
        (
            instance("").replace("192.168.200.16/24", "192.168.200.16/24 -nodad"),
            "192.168.200.16/24: -nodad: not supported",
        ),
        (
            instance("").replace("192.168.200.16/24", "fe80::16/64 label eth0:x"),
            "IPv6 addresses have no labels; dropped it",
        ),
        (SCRIPT.format("interval 0") + instance(""), "interval 0 is out of range"),
        (SCRIPT.format("rise often") + instance(""), "rise 'often' is not an integer"),
        (SCRIPT.format("weight 500") + instance(""), "weight 500 is out of range -254..254"),
        (SCRIPT.format("user") + instance(""), "user: missing the user; ignored"),
        (SCRIPT.format("init_fail") + instance(""), "init_fail: pyvrrp counts a script as good"),
        (SCRIPT.format("kill_after 3") + instance(""), "vrrp_script chk: kill_after: not"),
        ("vrrp_script {\n script /bin/true\n}\n" + instance(""), "vrrp_script without a name"),
        ("vrrp_instance {\n}\n" + instance(""), "vrrp_instance without a name"),
        (instance("") + instance(""), "vrrp_instance VI_1 is defined twice; the second is"),
        (GLOBAL.format("router_id") + instance(""), "router_id: missing the router id"),
        (GLOBAL.format("smtp_server 10.0.0.1 port25") + instance(""), "port 'port25' is not an"),
        (GLOBAL.format("vrrp_version 4") + instance(""), "vrrp_version 4 is out of range 2..3"),
        (GLOBAL.format("smtp_connect_timeout 30") + instance(""), "smtp_connect_timeout: pyvrrp"),
        (GLOBAL.format("lvs_sync_daemon eth0 VI_1") + instance(""), "LVS is outside pyvrrp"),
        (GLOBAL.format("enable_snmp_vrrp") + instance(""), "SNMP is not supported"),
        ("track_file f {\n file /tmp/x\n}\n" + instance(""), "track_file f: file tracking"),
        ("garbage_block {\n}\n" + instance(""), "garbage_block: unknown keyword, not converted"),
        (
            instance("") + "vrrp_sync_group G {\n group {\n VI_1\n }\n global_tracking\n}\n",
            "global_tracking: pyvrrp's sync group members always share tracking",
        ),
        (
            instance("") + "vrrp_sync_group G {\n group {\n VI_1\n }\n"
            " sync_group_tracking_weight\n}\n",
            "sync_group_tracking_weight: members of a pyvrrp sync group ignore weights",
        ),
        (
            instance("")
            + "vrrp_sync_group G {\n group {\n VI_1\n }\n track_script {\n no\n }\n}\n",
            "vrrp_sync_group G: track_script no: no such vrrp_script; ignored",
        ),
        (
            instance("") + "vrrp_sync_group G {\n group {\n VI_1\n }\n smtp_alert\n}\n",
            "vrrp_sync_group G: smtp_alert: sync groups have no notifications",
        ),
        (
            instance("") + "vrrp_sync_group G {\n group {\n VI_1\n }\n whatever\n}\n",
            "vrrp_sync_group G: whatever: not converted",
        ),
        (
            instance("") + "vrrp_sync_group G {\n group {\n VI_1\n }\n}\n"
            "vrrp_sync_group H {\n group {\n VI_1\n }\n}\n",
            "vrrp_sync_group H: VI_1 is already in another sync group; ignored",
        ),
        (instance("") + "vrrp_sync_group {\n}\n", "vrrp_sync_group without a name"),
        (
            instance("") + "vrrp_sync_group G {\n VI_1\n}\n",
            "vrrp_sync_group G: VI_1 read as a member (write group { })",
        ),
    ],
)
def test_each_value_keepalived_ignores_or_pyvrrp_cannot_take_is_reported(
    text: str, report: str, conf: Any, tmp_path: Path
) -> None:
    result, config, _ = imported(tmp_path, conf(text))
    assert config.instances
    assert report in messages(result.dropped) + "\n" + messages(result.notes)
