"""``pyvrrp check --host``: interfaces, source addresses and script security on this machine.

Interfaces and addresses are checked against a FakeNetlink (no root); script security on
real files in the test's directory, whose owners and modes the tests set (root needed for
chown: without it these fail when PYVRRP_REQUIRE_NETNS=1, else they are skipped). One test
runs the command line against this machine's real interfaces (netlink reads need no root).
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

import pytest

from pyvrrp.cli import main
from pyvrrp.configfile import check_environment, insecure_reason
from pyvrrp.core.config import parse_node
from pyvrrp.runtime.daemon import warn_host
from pyvrrp.runtime.hostcheck import check_host
from pyvrrp.runtime.netlink import LinkState, NetlinkError
from pyvrrp.testing.fakenetlink import FakeNetlink

NOBODY = pwd.getpwnam("nobody").pw_uid
DAEMON_GROUP = grp.getgrnam("daemon").gr_gid


def instance(**keys: object) -> dict[str, object]:
    return {"interface": "eth0.4000", "vrid": 58, "addresses": ["1.2.3.58/29"], **keys}


def netlink_with_eth0() -> FakeNetlink:
    netlink = FakeNetlink()
    netlink.add_link("eth0.4000", addresses=[ip_interface("192.168.200.1/24")])
    netlink.add_link("eth0")
    return netlink


async def test_a_config_that_fits_the_host_has_no_problem() -> None:
    config = parse_node(
        {
            "instances": {
                "vip58": instance(
                    unicast_source="192.168.200.1",
                    unicast_peers=["192.168.200.2"],
                    track_interfaces=["eth0", {"name": "eth0.4000", "weight": -10}],
                    addresses=[{"address": "1.2.3.58/29", "dev": "eth0"}],
                )
            }
        }
    )
    assert await check_host(config, netlink_with_eth0()) == []


async def test_missing_interfaces_and_a_foreign_source_are_problems_naming_the_key() -> None:
    config = parse_node(
        {
            "instances": {
                "vip58": instance(
                    unicast_source="192.168.200.9",
                    unicast_peers=["192.168.200.2"],
                    track_interfaces=["eth0", "dummy0", {"name": "bond0", "weight": -20}],
                    excluded_addresses=[{"address": "2a03:4444::58/64", "dev": "eth1"}],
                ),
                "vip59": {
                    "virtual_routes": [{"to": "10.9.0.0/16", "dev": "eth9"}],
                    "interface": "eth9",
                    "vrid": 59,
                    "addresses": ["1.2.3.59/29"],
                    "unicast_source": "10.0.0.1",
                    "unicast_peers": ["10.0.0.2"],
                },
            },
            "routes": [{"to": "10.8.0.0/16", "dev": "eth0"}, {"to": "10.7.0.0/16", "dev": "eth8"}],
        }
    )
    found = {p.path: p.message for p in await check_host(config, netlink_with_eth0())}
    fix = "create it, or correct the name (`ip link show` lists the interfaces)"
    assert found == {
        "instances.vip58.track_interfaces[1]": (
            f"interface dummy0 does not exist on this host (the instance stays in FAULT); {fix}"
        ),
        "instances.vip58.track_interfaces[2]": (
            "interface bond0 does not exist on this host (its weight -20 applies as if it "
            f"were down); {fix}"
        ),
        "instances.vip58.excluded_addresses[0].dev": (
            f"interface eth1 does not exist on this host (2a03:4444::58/64 cannot be added); {fix}"
        ),
        "instances.vip58.unicast_source": (
            "192.168.200.9 is not an address of eth0.4000 (its addresses: 192.168.200.1); "
            "advertisements would leave from an address this host does not have; write one "
            "of its addresses, or add it to the interface"
        ),
        # No address check on a missing interface: one problem, the real one.
        "instances.vip59.interface": (
            f"interface eth9 does not exist on this host (the instance cannot start); {fix}"
        ),
        "instances.vip59.virtual_routes[0].dev": (
            "interface eth9 does not exist on this host (the route to 10.9.0.0/16 cannot be "
            f"added); {fix}"
        ),
        "routes[1].dev": (
            "interface eth8 does not exist on this host (the route to 10.7.0.0/16 cannot be "
            f"added); {fix}"
        ),
    }


@pytest.fixture
def _root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
            pytest.fail("chown needs root (PYVRRP_REQUIRE_NETNS=1 forbids skipping)")
        pytest.skip("chown needs root")


def program(directory: Path, name: str = "check.sh", mode: int = 0o755) -> Path:
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(mode)
    return path


@pytest.mark.usefixtures("_root")
def test_insecure_reason_follows_keepalived_script_security(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)  # pytest's directories are root's and 0700 on the way down
    safe = program(tmp_path / "safe")
    assert insecure_reason(str(safe)) is None
    # Group-writable is fine when the group is root's.
    os.chmod(safe, 0o775)
    assert insecure_reason(str(safe)) is None
    world = program(tmp_path / "world", mode=0o757)
    assert insecure_reason(str(world)) == f"{world} is writable by every user"
    group = program(tmp_path / "group", mode=0o775)
    os.chown(group, 0, DAEMON_GROUP)
    assert insecure_reason(str(group)) == f"{group} is writable by group daemon (gid 1)"
    owned = program(tmp_path / "owned")
    os.chown(owned, NOBODY, 0)
    assert insecure_reason(str(owned)) == f"{owned} is owned by user nobody (uid {NOBODY})"
    # A directory above it: anyone could rename the file away and put another in its place.
    open_dir = tmp_path / "open"
    inner = program(open_dir / "bin")
    open_dir.chmod(0o777)
    assert insecure_reason(str(inner)) == f"{open_dir} is writable by every user"
    # ... unless it is sticky (/tmp): no one may remove another user's file there.
    open_dir.chmod(0o777 | stat.S_ISVTX)
    assert insecure_reason(str(inner)) is None
    # A symbolic link is checked where it is and where it leads.
    link = tmp_path / "safe" / "link"
    link.symlink_to(owned)
    assert insecure_reason(str(link)) == f"{owned} is owned by user nobody (uid {NOBODY})"


@pytest.mark.usefixtures("_root")
def test_programs_run_as_root_must_be_root_s_alone_unless_allowed(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)
    unsafe = program(tmp_path / "bin", mode=0o757)
    doc: dict[str, Any] = {
        "scripts": {
            "as_root": {"command": [str(unsafe)]},
            "as_nobody": {"command": [str(unsafe)], "user": "nobody"},
            "shell": {"command": f"{unsafe} --quiet"},
        },
        "instances": {
            "vip58": instance(notify_master=[str(unsafe)], track_scripts=["as_root"]),
            "vip59": {
                **instance(vrid=59, addresses=["1.2.3.59/29"]),
                "notify": [str(unsafe)],
                "notify_user": "nobody",
            },
        },
    }
    found = {p.path: p.message for p in check_environment(parse_node(doc))}
    reason = f"{unsafe} is writable by every user"
    assert found == {
        "scripts.as_root.command[0]": (
            f"{unsafe} runs as root, but {reason}: that user could make it run anything as "
            "root; make it root's alone (chown root:root, chmod go-w), run it as another "
            'user (user = "nobody"), or allow it with [global] script_security = false'
        ),
        "scripts.shell.command": found["scripts.shell.command"],
        "instances.vip58.notify_master[0]": found["instances.vip58.notify_master[0]"],
    }
    assert 'notify_user = "nobody"' in found["instances.vip58.notify_master[0]"]
    assert found["scripts.shell.command"].startswith(f"{unsafe} runs as root, but {reason}")
    # [global] script_user makes every program run as nobody: nothing runs as root.
    as_nobody = {**doc, "global": {"script_user": "nobody"}}
    assert check_environment(parse_node(as_nobody)) == []
    # ... unless one says root.
    as_root = {**doc, "global": {"script_user": "nobody"}}
    as_root["scripts"] = {**doc["scripts"], "s": {"command": [str(unsafe)], "user": "0"}}
    assert [p.path for p in check_environment(parse_node(as_root))] == ["scripts.s.command[0]"]
    allowed = {**doc, "global": {"script_security": False}}
    assert check_environment(parse_node(allowed)) == []


def test_unknown_groups_are_problems() -> None:
    config = parse_node(
        {
            "scripts": {"s": {"command": ["/bin/true"], "group": "pyvrrp-no-group"}},
            "instances": {"vip58": instance(notify_group="pyvrrp-no-group2")},
        }
    )
    found = {p.path: p.message for p in check_environment(config)}
    assert found == {
        "scripts.s.group": (
            "group 'pyvrrp-no-group' does not exist on this host; create it or change group"
        ),
        "instances.vip58.notify_group": (
            "group 'pyvrrp-no-group2' does not exist on this host; create it or change notify_group"
        ),
    }


def test_cli_check_host_against_this_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "pyvrrpno0"
    assert not Path("/sys/class/net", missing).exists()
    body = """
[instances.vip58]
interface = "lo"
vrid = 58
addresses = ["1.2.3.58/29"]
unicast_source = "127.0.0.1"
unicast_peers = ["127.0.0.2"]
track_interfaces = [TRACKED]
"""
    good = tmp_path / "good.toml"
    good.write_text(body.replace("TRACKED", '"lo"'))
    assert main(["check", "--host", "-c", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: OK: 1 instance")
    bad = tmp_path / "bad.toml"
    bad.write_text(body.replace("TRACKED", f'"{missing}"').replace("127.0.0.1", "127.0.0.9"))
    assert main(["check", "-c", str(bad)]) == 0  # not looking at the host
    capsys.readouterr()
    assert main(["check", "--host", "-c", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "instances.vip58.track_interfaces[0]",
        "instances.vip58.unicast_source",
    ]
    assert lines[0].startswith(f"{bad}: instances.vip58.track_interfaces[0]: interface {missing}")


class _BrokenNetlink(FakeNetlink):
    async def link(self, name: str) -> LinkState | None:
        raise NetlinkError("netlink: connection refused")


async def test_the_daemon_logs_host_problems_and_a_failed_check_does_not_stop_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_node({"instances": {"vip58": instance(track_interfaces=["bond7"])}})
    with caplog.at_level(logging.WARNING, logger="pyvrrp"):
        await warn_host(config, "/etc/pyvrrp/node.toml", netlink_with_eth0())
        await warn_host(config, "/etc/pyvrrp/node.toml", _BrokenNetlink(), "reload: ")
    assert caplog.messages == [
        "host check: /etc/pyvrrp/node.toml: instances.vip58.track_interfaces[0]: interface "
        "bond7 does not exist on this host (the instance stays in FAULT); create it, or "
        "correct the name (`ip link show` lists the interfaces)",
        "reload: host check: cannot read the interfaces: netlink: connection refused",
    ]
