"""``[global] watch_config = true``: reload when the configuration file changes.

In Kubernetes a ConfigMap is mounted as symbolic links: ``node.toml -> ..data/node.toml``,
``..data -> ..2026_12_06_04_30_00.123``; an update writes a new directory and re-points
``..data`` in one rename. Nothing writes to the file the daemon opened, so inotify on it
sees nothing; and systemd's path units do not exist there. So the watcher polls, once a
second (:data:`WATCH_INTERVAL`), the identity of the path *as resolved*
(``os.stat`` follows the links): device, inode, modification time and size. Any change,
a swap included, makes it read the file and compare its content with the content that
runs, so that a ``touch`` or a swap to the same content is not a reload. (The content itself,
at most :data:`~pyvrrp.configfile.MAX_CONFIG_BYTES`, not a hash of it: hashlib would load
OpenSSL's libcrypto, ~3.4 MB of resident memory, to tell apart a few kilobytes.)

A changed content is reloaded as SIGHUP does (the daemon's ``reload``). A content that the
reload rejects (invalid, or an interface that does not exist) is remembered by its hash:
the old configuration keeps running and the same broken content is not tried again every
second; the next change of the file is. A file that disappears for a moment (a swap seen
half done, an editor's rename) is waited for; the running configuration stays.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Final

import trio

from pyvrrp.configfile import MAX_CONFIG_BYTES

__all__ = ["WATCH_INTERVAL", "ConfigWatcher", "FileIdentity", "file_content", "file_identity"]

log = logging.getLogger("pyvrrp")

WATCH_INTERVAL: Final = 1.0
"""Seconds between two looks at the configuration file."""

FileIdentity = tuple[int, int, int, int]
"""(st_dev, st_ino, st_mtime_ns, st_size) of the resolved path."""


def file_identity(path: str) -> FileIdentity | None:
    """The identity of what ``path`` leads to now; None when it leads nowhere."""
    try:
        info = os.stat(path)  # follows symbolic links: a re-pointed ..data changes the inode
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)


def file_content(path: str) -> bytes | None:
    """The file's content (at most what ``load`` reads); None when unreadable."""
    try:
        with open(path, "rb") as file:
            return file.read(MAX_CONFIG_BYTES + 1)
    except OSError:
        return None


async def _in_thread_identity(path: str) -> FileIdentity | None:
    # A network file system can block: never on trio's thread.
    return await trio.to_thread.run_sync(file_identity, path)


async def _in_thread_content(path: str) -> bytes | None:
    return await trio.to_thread.run_sync(file_content, path)


class ConfigWatcher:
    """Polls ``path`` and calls ``reload`` when its content changed (module docstring).

    ``reload`` returns True when the new configuration was applied, False when it was
    rejected (it logs why). ``enabled`` is asked at each look and after each :meth:`rebase`
    (a reload may turn ``watch_config`` on or off); while it is False nothing is read and the
    watcher sleeps until the next :meth:`rebase`. ``identity`` and
    ``content`` read the file (tests give fakes, to run in virtual time).
    """

    def __init__(
        self,
        path: str,
        reload: Callable[[], Awaitable[bool]],
        *,
        enabled: Callable[[], bool] = lambda: True,
        interval: float = WATCH_INTERVAL,
        identity: Callable[[str], Awaitable[FileIdentity | None]] = _in_thread_identity,
        content: Callable[[str], Awaitable[bytes | None]] = _in_thread_content,
    ) -> None:
        self.path = path
        self.interval = interval
        self._reload = reload
        self._enabled = enabled
        self._identity = identity
        self._content = content
        self._seen: FileIdentity | None = None
        self._running: bytes | None = None  # the content the daemon runs
        self._rejected: bytes | None = None  # the last content a reload refused
        self._baseline_due = True
        self._missing = False
        self._reloaded = trio.Event()
        self.reloads = 0
        """Reloads started by a change of the file (applied or rejected)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until cancelled. What the file holds when this starts is taken as what the
        daemon runs."""
        if self._enabled():
            await self._take_baseline()
        task_status.started()
        while True:
            if not self._enabled():
                # Off: nothing to look at until a reload (which calls rebase) turns it on. No
                # wake-up every second for nothing: at one advertisement a second that doubled
                # what an idle node costs (docs/benchmarks.md, "Cost at scale").
                self._baseline_due = True
                await self._reloaded.wait()
                self._reloaded = trio.Event()
                continue
            await trio.sleep(self.interval)
            await self.check()

    def rebase(self) -> None:
        """The daemon reloaded the file by other means (SIGHUP, ``pyvrrp reload``): take what
        the file holds at the next look as what runs, without reloading it again. (A reload
        is also what may turn ``watch_config`` on: a watcher that is off waits for this.)"""
        self._baseline_due = True
        self._reloaded.set()

    async def _take_baseline(self) -> None:
        self._seen = await self._identity(self.path)
        self._running = await self._content(self.path)
        self._rejected = None
        self._baseline_due = False

    async def check(self) -> None:
        """One look at the file: reload if its content changed since the last look."""
        if not self._enabled():
            self._baseline_due = True  # looked at afresh when turned on again
            return
        if self._baseline_due:
            await self._take_baseline()
            return
        identity = await self._identity(self.path)
        if identity is None:
            if not self._missing:
                log.warning(
                    "watch_config: %s cannot be read now; keeping the running configuration",
                    self.path,
                )
            self._missing = True
            return
        self._missing = False
        if identity == self._seen:
            return
        self._seen = identity
        content = await self._content(self.path)
        if content is None or content in (self._running, self._rejected):
            return  # touched, swapped to the same content, or already refused
        log.info("watch_config: %s changed: reloading", self.path)
        self.reloads += 1
        applied = await self._reload()
        self._baseline_due = False  # the reload's own rebase(): this one knows what it applied
        if applied:
            self._running, self._rejected = content, None
        else:
            self._rejected = content
            log.warning(
                "watch_config: the new %s was rejected; the old configuration keeps running "
                "until the file changes again",
                self.path,
            )
