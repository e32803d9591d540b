"""In-memory maintenance and history stores, for tests in trio's virtual time (no disk, no
threads)."""

from __future__ import annotations

from collections.abc import Iterable

import trio

from pyvrrp.runtime.history import HistoryEntry
from pyvrrp.runtime.statefile import StateFileError


class MemoryMaintenanceStore:
    """Keeps the maintenance flags in memory; share one between two runs to test restarts.

    ``fail_saves`` makes every save raise StateFileError (a full or read-only disk).
    """

    def __init__(self, instances: Iterable[str] = ()) -> None:
        self.instances = frozenset(instances)
        self.saves = 0
        self.fail_saves = False

    async def load(self) -> frozenset[str]:
        return self.instances

    async def save(self, instances: Iterable[str]) -> None:
        if self.fail_saves:
            raise StateFileError("cannot write maintenance.json: read-only file system")
        self.saves += 1
        self.instances = frozenset(instances)


class MemoryHistoryStore:
    """Keeps the transition history in memory (share one between two runs to test restarts).

    ``fail_saves`` makes every save raise StateFileError; ``saved`` is the last saved copy.
    """

    def __init__(self, saved: dict[str, list[HistoryEntry]] | None = None) -> None:
        self.saved: dict[str, list[HistoryEntry]] = dict(saved or {})
        self.saves = 0
        self.fail_saves = False

    async def load(self) -> dict[str, list[HistoryEntry]]:
        return {name: list(entries) for name, entries in self.saved.items()}

    async def save(self, history: dict[str, list[HistoryEntry]]) -> None:
        await trio.lowlevel.checkpoint()  # as the real store's thread: others run meanwhile
        if self.fail_saves:
            raise StateFileError("cannot write history.json: read-only file system")
        self.saves += 1
        self.saved = {name: list(entries) for name, entries in history.items()}
