"""Scripts and notify programs run as the user and group the configuration names.

Real processes in real time, started as root and switched to nobody; each checks its own
uid, gid and groups with ``id`` and exits 0 only when they are what the test expects (its
standard streams go to /dev/null, and nobody may not write in the test's directory).
Without root these tests fail when PYVRRP_REQUIRE_NETNS=1 (CI), else they are skipped.
"""

from __future__ import annotations

import grp
import os
import pwd
from ipaddress import ip_interface

import pytest
import trio

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.config import AddressConfig, GlobalConfig, InstanceConfig, parse_node
from pyvrrp.core.tracking import Health
from pyvrrp.runtime.notify import Notifier
from pyvrrp.runtime.process import RealProcessRunner, ScriptOutcome
from pyvrrp.runtime.trackers import Trackers
from pyvrrp.testing.fakenetlink import FakeNetlink

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrnam("nogroup").gr_gid
# A group nobody is not in and that is not its primary group: "daemon" (gid 1) on Debian.
OTHER_GROUP = grp.getgrnam("daemon")


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
            pytest.fail("switching users needs root (PYVRRP_REQUIRE_NETNS=1 forbids skipping)")
        pytest.skip("switching users needs root")


def expects(uid: int, gid: int, groups: list[int] | None = None) -> str:
    """A shell command exiting 0 only when run with this uid, gid (and exactly these groups),
    else 10, 11 or 12 (which one says what was wrong)."""
    check = f'test "$(id -u)" = {uid} || exit 10; test "$(id -g)" = {gid} || exit 11'
    if groups is not None:
        wanted = " ".join(str(g) for g in sorted(set(groups)))
        check += f'; test "$(id -G | tr " " "\\n" | sort -n | xargs)" = "{wanted}" || exit 12'
    return check


async def run(command: str, user: str | None, group: str | None) -> ScriptOutcome:
    return await RealProcessRunner().run(command, timeout=5, user=user, group=group)


async def test_user_and_group_nobody_nogroup() -> None:
    outcome = await run(expects(NOBODY.pw_uid, NOGROUP), "nobody", "nogroup")
    assert outcome.success, outcome.describe()


async def test_a_group_other_than_the_users_primary_one() -> None:
    groups = [OTHER_GROUP.gr_gid, *os.getgrouplist("nobody", OTHER_GROUP.gr_gid)]
    outcome = await run(expects(NOBODY.pw_uid, OTHER_GROUP.gr_gid, groups), "nobody", "daemon")
    assert outcome.success, outcome.describe()


async def test_numeric_user_and_group() -> None:
    outcome = await run(expects(NOBODY.pw_uid, OTHER_GROUP.gr_gid), str(NOBODY.pw_uid), "1")
    assert outcome.success, outcome.describe()


async def test_a_numeric_uid_without_a_passwd_entry_runs_with_that_uid() -> None:
    uid = 54321
    assert not any(entry.pw_uid == uid for entry in pwd.getpwall())
    outcome = await run(expects(uid, uid, [uid]), str(uid), None)
    assert outcome.success, outcome.describe()


async def test_a_group_alone_keeps_the_user_and_drops_the_other_groups() -> None:
    outcome = await run(expects(0, NOGROUP, [NOGROUP]), None, "nogroup")
    assert outcome.success, outcome.describe()


async def test_unknown_group_is_a_failed_run_saying_so() -> None:
    outcome = await run("true", "nobody", "pyvrrp-no-such-group")
    assert outcome.error == "cannot run as group pyvrrp-no-such-group: no such group"


async def test_health_checks_run_as_global_script_user_unless_they_name_their_own() -> None:
    node = parse_node(
        {
            "global": {"script_user": "nobody", "script_group": "nogroup"},
            "scripts": {
                # [global]'s pair
                "as_default": {"command": expects(NOBODY.pw_uid, NOGROUP), "interval": 0.2},
                # its own group, the default user
                "own_group": {
                    "command": expects(NOBODY.pw_uid, OTHER_GROUP.gr_gid),
                    "group": "daemon",
                    "interval": 0.2,
                },
                # its own user: that user's primary group, not [global] script_group
                "own_user": {
                    "command": expects(0, 0),
                    "user": "root",
                    "interval": 0.2,
                },
            },
            "instances": {
                "vip58": {
                    "interface": "eth0.4000",
                    "vrid": 58,
                    "addresses": ["1.2.3.58/29"],
                    "track_scripts": ["as_default", "own_group", "own_user"],
                }
            },
        }
    )
    netlink = FakeNetlink()
    netlink.add_link("eth0.4000")

    def on_health(instance: str, health: Health) -> None:
        pass

    trackers = Trackers(node, netlink, RealProcessRunner(), on_health)
    async with trio.open_nursery() as nursery:
        await nursery.start(trackers.run)
        with trio.fail_after(10):
            while any(trackers.script_statistics(n).runs == 0 for n in node.scripts):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    for name in node.scripts:
        outcome = trackers.script_statistics(name).last_outcome
        assert outcome is not None
        assert outcome.success, (name, outcome.describe())


def instance(**keys: object) -> InstanceConfig:
    return InstanceConfig(
        name="vip58",
        interface="eth0.4000",
        vrid=58,
        addresses=(AddressConfig(ip_interface("1.2.3.58/29")),),
        **keys,  # type: ignore[arg-type]
    )


async def test_notify_programs_run_as_script_user_or_their_own_notify_user() -> None:
    defaults = GlobalConfig(script_user="nobody", script_group="nogroup")
    as_default = Notifier(
        [instance(notify_master=expects(NOBODY.pw_uid, NOGROUP))],
        RealProcessRunner(),
        defaults=defaults,
    )
    own = Notifier(
        [
            instance(
                notify_master=expects(NOBODY.pw_uid, OTHER_GROUP.gr_gid),
                notify_user="nobody",
                notify_group="daemon",
            )
        ],
        RealProcessRunner(),
        defaults=GlobalConfig(script_user="root"),
    )
    for notifier in (as_default, own):
        async with trio.open_nursery() as nursery:
            await nursery.start(notifier.run)
            notifier.notify("vip58", State.MASTER, 100, old_state=State.BACKUP, cause=Cause.PREEMPT)
            assert await notifier.drain(10)
            nursery.cancel_scope.cancel()
        stats = notifier.statistics()["vip58"]
        assert (stats.run, stats.failed, stats.last_error) == (1, 0, None)
