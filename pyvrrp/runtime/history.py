"""Each instance's last transitions, kept across restarts.

``pyvrrp status`` answers "what is it doing now"; after a night of flapping an operator also
asks "what happened, and why". Every transition (wall-clock time, from, to, cause, reason,
priority) is kept in memory, the last :data:`HISTORY_LENGTH` per instance, and saved in
``history.json`` in ``[global] state_dir``::

    {"version": 1, "instances": {"vip58": [{"time": 1765000000.123, "from": "BACKUP",
     "to": "MASTER", "cause": "master_down", "reason": "...", "priority": 100}, ...]}}

Recording never waits for the disk: :meth:`History.record` only appends and wakes
:meth:`History.run`, a task that writes the latest state on a worker thread
:data:`SAVE_DELAY` later (the same atomic replace as the maintenance flags: a crash leaves the
old file or the new one), so a burst of transitions costs one write and the write never
competes with the transition's own work. A missing file is an empty history; one that is corrupt or
unreadable is logged and replaced by an empty one; entries that do not look like entries
are skipped. Instances no longer configured are forgotten at the next write.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

import attrs
import trio

from pyvrrp.runtime.statefile import StateFileError, write_atomically

__all__ = [
    "HISTORY_FILE",
    "HISTORY_LENGTH",
    "SAVE_DELAY",
    "History",
    "HistoryEntry",
    "HistoryStore",
    "MemoryHistoryStore",
    "StateDirHistoryStore",
    "load_history",
    "save_history",
]

log = logging.getLogger("pyvrrp")

HISTORY_FILE: Final = "history.json"
HISTORY_LENGTH: Final = 50
"""Transitions kept per instance (the oldest go first)."""
SAVE_DELAY: Final = 0.1
"""Seconds from a transition to its save. The save runs on a worker thread, and starting one
(trio keeps idle threads for 10 s only) takes trio's thread for a moment: right at the
transition it would hold up the new master's address installation and announcements. Other
transitions within the delay join the same write."""
_FORMAT_VERSION: Final = 1


@attrs.frozen
class HistoryEntry:
    """One transition: ``time`` is the wall clock (seconds since the epoch), ``old`` and
    ``new`` the states' names (``BACKUP``, ``MASTER``...), ``priority`` the effective priority
    then."""

    time: float
    old: str
    new: str
    cause: str
    reason: str
    priority: int

    def to_json(self) -> dict[str, Any]:
        """The entry as ``history.json`` and ``pyvrrp status --json`` show it."""
        return {
            "time": round(self.time, 3),
            "from": self.old,
            "to": self.new,
            "cause": self.cause,
            "reason": self.reason,
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, data: object) -> HistoryEntry | None:
        """The entry ``data`` describes, or None when it is not one."""
        if not isinstance(data, dict):
            return None
        time, priority = data.get("time"), data.get("priority")
        texts = [data.get(key) for key in ("from", "to", "cause", "reason")]
        if (
            isinstance(time, bool)
            or not isinstance(time, int | float)
            or not math.isfinite(time)
            or isinstance(priority, bool)
            or not isinstance(priority, int)
            or not all(isinstance(text, str) for text in texts)
        ):
            return None
        old, new, cause, reason = (str(text) for text in texts)
        return cls(float(time), old, new, cause, reason, priority)


def history_path(state_dir: str) -> str:
    """The path of the history file in ``state_dir``."""
    return os.path.join(state_dir, HISTORY_FILE)


def load_history(state_dir: str) -> dict[str, list[HistoryEntry]]:
    """The saved history by instance, oldest first; empty when there is none or it is unusable
    (logged)."""
    path = history_path(state_dir)
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.error("cannot read %s: %s; starting with no history", path, exc.strerror or exc)
        return {}
    except (ValueError, RecursionError):
        log.error("%s is not valid JSON; starting with no history", path)
        return {}
    instances = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(instances, dict):
        log.error('%s has no "instances" object; starting with no history', path)
        return {}
    result: dict[str, list[HistoryEntry]] = {}
    skipped = 0
    for name, items in instances.items():
        if not isinstance(items, list):
            skipped += 1
            continue
        entries = [HistoryEntry.from_json(item) for item in items]
        skipped += entries.count(None)
        result[name] = [entry for entry in entries if entry is not None][-HISTORY_LENGTH:]
    if skipped:
        log.error("%s: skipped %d malformed history entries", path, skipped)
    return result


def save_history(state_dir: str, history: Mapping[str, Iterable[HistoryEntry]]) -> None:
    """Replace the saved history, atomically; raises :class:`StateFileError`."""
    data = {
        "version": _FORMAT_VERSION,
        "instances": {name: [e.to_json() for e in entries] for name, entries in history.items()},
    }
    write_atomically(state_dir, HISTORY_FILE, json.dumps(data, separators=(",", ":")) + "\n")


class HistoryStore(Protocol):
    """Where a node keeps its history across restarts."""

    async def load(self) -> dict[str, list[HistoryEntry]]: ...

    async def save(self, history: dict[str, list[HistoryEntry]]) -> None:
        """Raises StateFileError when the history cannot be kept."""


class StateDirHistoryStore:
    """The real store: ``history.json`` in ``state_dir``, on a worker thread."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    async def load(self) -> dict[str, list[HistoryEntry]]:
        return await trio.to_thread.run_sync(load_history, self.state_dir)

    async def save(self, history: dict[str, list[HistoryEntry]]) -> None:
        await trio.to_thread.run_sync(save_history, self.state_dir, history)


class MemoryHistoryStore:
    """Keeps the history in memory: a node given a maintenance store of its own (a test's,
    a library user's) keeps its history here unless given a history store too, so that
    nothing is written to ``state_dir``. Share one between two runs to test restarts.

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


class History:
    """The last transitions of every instance (see the module docstring).

    Call :meth:`load` once before recording, run :meth:`run` in a nursery to save, and
    :meth:`record` each transition. ``length`` bounds the entries kept per instance.
    """

    def __init__(self, store: HistoryStore, *, length: int = HISTORY_LENGTH) -> None:
        if length < 1:
            raise ValueError(f"length must be at least 1, not {length!r}")
        self.store = store
        self.length = length
        self.saves = 0
        """Successful writes (for tests and statistics)."""
        # Lists cut to ``length``, not deque(maxlen=...): a deque takes a 64-slot block (760
        # bytes) for its first entry, and most instances keep only a few (255 instances).
        self._entries: dict[str, list[HistoryEntry]] = {}
        self._instances: frozenset[str] | None = None
        self._dirty = False
        self._wakeup = trio.Event()
        self._failing = False

    async def load(self, instances: Iterable[str]) -> None:
        """Read what the store kept, for the configured ``instances``."""
        saved = await self.store.load()
        self.keep(instances)
        for name, entries in saved.items():
            if self._instances is None or name in self._instances:
                recorded = self._entries.get(name, [])
                self._entries[name] = [*entries, *recorded][-self.length :]

    def keep(self, instances: Iterable[str], *, renamed: Mapping[str, str] | None = None) -> None:
        """Only these instances are configured now (at start, after a reload): the others'
        histories are forgotten at the next write. ``renamed`` maps old names to new ones
        (a reload matches instances by VRID and interface, not name): their history
        follows them."""
        self._instances = frozenset(instances)
        moved = {
            new: self._entries.pop(old)
            for old, new in (renamed or {}).items()
            if old in self._entries
        }
        self._entries.update(moved)
        if moved:
            self._changed()
        for name in list(self._entries):
            if name not in self._instances:
                del self._entries[name]
                self._changed()

    def record(self, instance: str, entry: HistoryEntry) -> None:
        """Add one transition; it is saved soon after, never while the caller waits. An
        instance no longer configured (one a reload removed, stopping) is not recorded."""
        if self._instances is not None and instance not in self._instances:
            return
        entries = self._entries.setdefault(instance, [])
        entries.append(entry)
        del entries[: -self.length]  # the oldest beyond ``length``
        self._changed()

    def entries(self, instance: str) -> list[HistoryEntry]:
        """The kept transitions of ``instance``, oldest first."""
        return list(self._entries.get(instance, ()))

    def _changed(self) -> None:
        self._dirty = True
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Save :data:`SAVE_DELAY` after something changed, until cancelled; a change made while
        saving is saved right after. A write in progress when cancelled is finished."""
        task_status.started()
        while True:
            await self._wakeup.wait()
            await trio.sleep(SAVE_DELAY)  # the node's stop flushes what is left
            self._wakeup = trio.Event()
            with trio.CancelScope(shield=True):
                await self.flush()

    async def flush(self) -> None:
        """Save now if anything changed since the last save; failures are logged (once
        until a save works again) and retried at the next change."""
        if not self._dirty:
            return
        self._dirty = False
        snapshot = {name: list(entries) for name, entries in self._entries.items()}
        try:
            await self.store.save(snapshot)
        except StateFileError as exc:
            if not self._failing:
                log.error("transition history cannot be kept across a restart: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("transition history is saved again")
        self._failing = False
        self.saves += 1
