"""State that survives a restart: which instances are in maintenance.

``pyvrrp maintenance on vip58`` must still hold after a reboot or a daemon restart, or a node
taken out of service for work would take its addresses back the moment pyvrrp restarts.
The flags live in ``maintenance.json`` in ``[global] state_dir``::

    {"maintenance": ["vip58", "vip59"]}

The file is replaced atomically (a temporary file, fsync, rename, fsync of the directory), so
a crash leaves the old file or the new one, never half of one. Reading never fails: a file
that is missing is "no instance in maintenance", one that is corrupt or unreadable is logged
and treated the same way. Names that are no longer instances are the caller's to ignore.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from typing import Final, Protocol

import trio

log = logging.getLogger("pyvrrp")

MAINTENANCE_FILE: Final = "maintenance.json"


class StateFileError(Exception):
    """The state could not be saved; the message names the file and the reason."""


def maintenance_path(state_dir: str) -> str:
    """The path of the maintenance flags file in ``state_dir``."""
    return os.path.join(state_dir, MAINTENANCE_FILE)


def load_maintenance(state_dir: str) -> frozenset[str]:
    """The instances saved as in maintenance; empty when there is no file or it is unusable."""
    path = maintenance_path(state_dir)
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read())
    except FileNotFoundError:
        return frozenset()
    except OSError as exc:
        log.error(
            "cannot read %s: %s; starting with no instance in maintenance",
            path,
            exc.strerror or exc,
        )
        return frozenset()
    except (ValueError, RecursionError):
        log.error("%s is not valid JSON; starting with no instance in maintenance", path)
        return frozenset()
    names = data.get("maintenance") if isinstance(data, dict) else None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        log.error(
            '%s is not {"maintenance": [instance names]}; starting with no instance in maintenance',
            path,
        )
        return frozenset()
    return frozenset(names)


def save_maintenance(state_dir: str, instances: Iterable[str]) -> None:
    """Replace the saved maintenance flags with ``instances``, atomically.

    Creates ``state_dir`` (mode 0700) when it is missing. Raises :class:`StateFileError`
    when the file cannot be written.
    """
    text = json.dumps({"maintenance": sorted(set(instances))}) + "\n"
    write_atomically(state_dir, MAINTENANCE_FILE, text)


def write_atomically(state_dir: str, name: str, text: str) -> None:
    """Replace ``name`` in ``state_dir`` with ``text``: a temporary file, fsync, rename, fsync
    of the directory. Creates ``state_dir`` (mode 0700) when it is missing. Raises
    :class:`StateFileError` when the file cannot be written."""
    path = os.path.join(state_dir, name)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        # mkstemp makes the file mode 0600 in the same directory, so the rename is atomic.
        fd, temporary = tempfile.mkstemp(dir=state_dir, prefix=f".{name}.")
    except OSError as exc:
        raise StateFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise StateFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    _fsync_directory(state_dir)


def _fsync_directory(directory: str) -> None:
    # The rename is durable only once the directory is on disk; some file systems cannot
    # fsync a directory, and the file is already correct, so a failure here is not an error.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "MAINTENANCE_FILE",
    "StateFileError",
    "load_maintenance",
    "maintenance_path",
    "save_maintenance",
    "write_atomically",
]


class MaintenanceStore(Protocol):
    """Where a node keeps its maintenance flags across restarts."""

    async def load(self) -> frozenset[str]: ...

    async def save(self, instances: Iterable[str]) -> None:
        """Raises StateFileError when the flags cannot be kept."""


class StateDirStore:
    """The real store: ``maintenance.json`` in ``state_dir``, read and written (with fsync)
    on a worker thread so the routers never wait for the disk."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    async def load(self) -> frozenset[str]:
        return await trio.to_thread.run_sync(load_maintenance, self.state_dir)

    async def save(self, instances: Iterable[str]) -> None:
        names = list(instances)
        await trio.to_thread.run_sync(save_maintenance, self.state_dir, names)
