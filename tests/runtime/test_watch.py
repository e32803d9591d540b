"""``watch_config``: reloading when the configuration file changes.

Most tests run in virtual time against a fake file (its identity and content set by the
test); one uses a real directory laid out as a Kubernetes ConfigMap mount, with its
``..data`` symbolic link swapped, in real time.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import trio
import trio.testing

from pyvrrp.runtime.watch import ConfigWatcher, FileIdentity, file_identity

from .cluster import TaskSteps


class FakeFile:
    """A file whose identity and content the test changes; reloads are recorded with the
    (virtual) time and the content they saw, and accepted unless the content is "broken"."""

    def __init__(self, content: str = "v1") -> None:
        self.inode = 1
        self.content: str | None = content
        self.reloads: list[tuple[float, str | None]] = []
        self.enabled = True

    def write(self, content: str) -> None:
        """Replace the file (a new inode, as a ConfigMap swap or an editor's rename)."""
        self.inode += 1
        self.content = content

    def touch(self) -> None:
        self.inode += 1

    async def identity(self, path: str) -> FileIdentity | None:
        await trio.lowlevel.checkpoint()
        if self.content is None:
            return None
        return (1, self.inode, 0, len(self.content))

    async def read(self, path: str) -> bytes | None:
        await trio.lowlevel.checkpoint()
        return None if self.content is None else self.content.encode()

    async def reload(self) -> bool:
        self.reloads.append((trio.current_time(), self.content))
        await trio.sleep(0.2)  # a reload takes a moment
        return self.content != "broken"

    def watcher(self) -> ConfigWatcher:
        return ConfigWatcher(
            "/etc/pyvrrp/node.toml",
            self.reload,
            enabled=lambda: self.enabled,
            identity=self.identity,
            content=self.read,
        )


async def test_a_changed_file_is_reloaded_within_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    file = FakeFile()
    async with trio.open_nursery() as nursery:
        await nursery.start(file.watcher().run)
        await trio.sleep(10.5)
        assert file.reloads == []  # nothing changed: nothing reloaded
        file.write("v2")  # at 10.5: the look at 11.0 sees it
        await trio.sleep(5)
        assert file.reloads == [(11.0, "v2")]
        nursery.cancel_scope.cancel()


async def test_the_same_content_is_not_reloaded(autojump_clock: trio.testing.MockClock) -> None:
    file = FakeFile()
    async with trio.open_nursery() as nursery:
        await nursery.start(file.watcher().run)
        file.touch()
        await trio.sleep(3)
        file.write("v1")  # swapped to a copy of the same content
        await trio.sleep(3)
        assert file.reloads == []
        nursery.cancel_scope.cancel()


async def test_broken_content_is_tried_once_and_the_next_change_is_tried(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    file = FakeFile()
    watcher = file.watcher()
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        file.write("broken")
        with caplog.at_level(logging.WARNING, logger="pyvrrp"):
            await trio.sleep(30)
        assert file.reloads == [(1.0, "broken")]  # not every second
        assert caplog.messages == [
            "watch_config: the new /etc/pyvrrp/node.toml was rejected; the old configuration "
            "keeps running until the file changes again"
        ]
        file.touch()  # still the same broken content
        await trio.sleep(3)
        assert len(file.reloads) == 1
        file.write("v1")  # back to what runs: nothing to do
        await trio.sleep(3)
        assert len(file.reloads) == 1
        file.write("broken")  # the content last refused, and nothing was applied since
        await trio.sleep(3)
        assert len(file.reloads) == 1
        file.write("v3")
        await trio.sleep(3)
        assert [content for _, content in file.reloads] == ["broken", "v3"]
        file.write("broken")  # refused before, but v3 ran since: a new attempt
        await trio.sleep(3)
        assert [content for _, content in file.reloads] == ["broken", "v3", "broken"]
        nursery.cancel_scope.cancel()


async def test_a_file_missing_for_a_moment_keeps_the_configuration(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    file = FakeFile()
    async with trio.open_nursery() as nursery:
        await nursery.start(file.watcher().run)
        file.content = None
        with caplog.at_level(logging.WARNING, logger="pyvrrp"):
            await trio.sleep(5)
        assert caplog.messages == [
            "watch_config: /etc/pyvrrp/node.toml cannot be read now; keeping the running "
            "configuration"
        ]  # once, not every second
        file.write("v2")
        await trio.sleep(1.5)
        assert [content for _, content in file.reloads] == ["v2"]
        nursery.cancel_scope.cancel()


async def test_turned_off_nothing_is_read_and_turned_on_the_file_as_it_is_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    file = FakeFile()
    file.enabled = False
    watcher = file.watcher()
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        file.write("v2")
        await trio.sleep(5)
        assert file.reloads == []
        file.enabled = True  # a reload with v2 turned it on: v2 is what runs
        watcher.rebase()
        await trio.sleep(5)
        assert file.reloads == []
        file.write("v3")
        await trio.sleep(1.5)
        assert [content for _, content in file.reloads] == ["v3"]
        nursery.cancel_scope.cancel()


async def test_turned_off_it_does_not_wake_up_until_a_reload(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A node that does not watch its file has no timer of its own: nothing wakes it between
    # advertisements.
    file = FakeFile()
    file.enabled = False
    watcher = file.watcher()
    steps = TaskSteps("ConfigWatcher.run")

    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.add_instrument(steps)
        await trio.sleep(60)
        assert steps.steps == 0
        file.enabled = True
        watcher.rebase()  # the reload that turned it on: it looks again, once a second
        await trio.sleep(1.5)
        file.write("v2")
        await trio.sleep(1.5)
        assert steps.steps > 0
        assert [content for _, content in file.reloads] == ["v2"]
        nursery.cancel_scope.cancel()


async def test_a_reload_by_sighup_is_not_repeated_by_the_watcher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    file = FakeFile()
    watcher = file.watcher()
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        await trio.sleep(0.2)
        file.write("v2")
        watcher.rebase()  # the daemon reloaded v2 on SIGHUP before the watcher looked
        await trio.sleep(5)
        assert file.reloads == []
        nursery.cancel_scope.cancel()


def configmap(root: Path, version: str, content: str) -> None:
    """Lay out (or update) ``root`` as the kubelet does: node.toml -> ..data/node.toml,
    ..data -> ..VERSION, swapped with one rename."""
    directory = root / f"..{version}"
    directory.mkdir()
    (directory / "node.toml").write_text(content)
    os.utime(directory / "node.toml", ns=(0, 0))  # same mtime and size: only the inode moves
    (root / "..data_tmp").symlink_to(directory.name)
    os.replace(root / "..data_tmp", root / "..data")
    if not (root / "node.toml").is_symlink():
        (root / "node.toml").symlink_to("..data/node.toml")


async def test_a_real_configmap_swap_is_noticed(tmp_path: Path) -> None:
    configmap(tmp_path, "2026_12_06_04_30_00.1", "vip = 58\n")
    path = str(tmp_path / "node.toml")
    seen: list[str] = []

    async def reload() -> bool:
        seen.append(Path(path).read_text())
        return True

    watcher = ConfigWatcher(path, reload, interval=0.05)
    before = file_identity(path)
    async with trio.open_nursery() as nursery:
        await nursery.start(watcher.run)
        configmap(tmp_path, "2026_12_06_04_31_00.2", "vip = 59\n")  # same size and mtime
        assert file_identity(path) != before
        with trio.fail_after(10):
            while not seen:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()
    assert seen == ["vip = 59\n"]
