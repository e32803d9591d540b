"""In-memory maintenance and history stores, for tests in trio's virtual time (no disk, no
threads)."""

from __future__ import annotations

from collections.abc import Iterable

from pyvrrp.runtime.history import MemoryHistoryStore
from pyvrrp.runtime.statefile import StateFileError

__all__ = ["MemoryHistoryStore", "MemoryMaintenanceStore"]


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
