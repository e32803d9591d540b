"""The transition history: bounded per instance, saved atomically, tolerant of a bad file."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import trio
import trio.testing

from pyvrrp.runtime.history import (
    HISTORY_FILE,
    HISTORY_LENGTH,
    SAVE_DELAY,
    History,
    HistoryEntry,
    StateDirHistoryStore,
    load_history,
    save_history,
)
from pyvrrp.testing.fakestate import MemoryHistoryStore


def entry(n: int, new: str = "MASTER") -> HistoryEntry:
    return HistoryEntry(
        time=1_765_000_000.0 + n,
        old="BACKUP",
        new=new,
        cause="master_down",
        reason=f"transition {n}",
        priority=100,
    )


def test_save_and_load_round_trip_in_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"  # created on the first save
    history = {"vip58": [entry(1), entry(2, "BACKUP")], "vip59": [entry(3)]}
    save_history(str(state_dir), history)
    assert load_history(str(state_dir)) == history
    saved = json.loads((state_dir / HISTORY_FILE).read_text())
    assert saved["instances"]["vip58"][0] == {
        "time": 1_765_000_001.0,
        "from": "BACKUP",
        "to": "MASTER",
        "cause": "master_down",
        "reason": "transition 1",
        "priority": 100,
    }
    assert oct((state_dir / HISTORY_FILE).stat().st_mode & 0o777) == "0o600"
    # Atomic replace: no temporary file left behind.
    assert os.listdir(state_dir) == [HISTORY_FILE]


def test_missing_file_is_an_empty_history(tmp_path: Path) -> None:
    assert load_history(str(tmp_path)) == {}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not valid JSON; starting with no history"),
        (b"\xff\xfe", "is not valid JSON; starting with no history"),
        (b'["a list"]', 'has no "instances" object; starting with no history'),
        (b'{"instances": 3}', 'has no "instances" object; starting with no history'),
    ],
)
def test_corrupt_file_is_logged_and_an_empty_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, message: str
) -> None:
    (tmp_path / HISTORY_FILE).write_bytes(content)
    with caplog.at_level(logging.ERROR, logger="pyvrrp"):
        assert load_history(str(tmp_path)) == {}
    assert caplog.messages == [f"{tmp_path / HISTORY_FILE} {message}"]


def test_malformed_entries_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = entry(1).to_json()
    data = {
        "instances": {
            "vip58": [good, {**good, "priority": "high"}, {**good, "time": True}, "x"],
            "vip59": {"not": "a list"},
        }
    }
    (tmp_path / HISTORY_FILE).write_text(json.dumps(data))
    with caplog.at_level(logging.ERROR, logger="pyvrrp"):
        assert load_history(str(tmp_path)) == {"vip58": [entry(1)]}
    assert caplog.messages == [f"{tmp_path / HISTORY_FILE}: skipped 4 malformed history entries"]


def test_unreadable_file_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / HISTORY_FILE).mkdir()  # a directory where the file should be
    with caplog.at_level(logging.ERROR, logger="pyvrrp"):
        assert load_history(str(tmp_path)) == {}
    assert caplog.messages[0].startswith(f"cannot read {tmp_path / HISTORY_FILE}: ")


async def test_history_keeps_the_last_entries_per_instance_and_saves_once_per_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryHistoryStore({"vip58": [entry(n) for n in range(HISTORY_LENGTH)]})
    history = History(store)
    await history.load(["vip58", "vip59"])
    assert len(history.entries("vip58")) == HISTORY_LENGTH
    async with trio.open_nursery() as nursery:
        await nursery.start(history.run)
        for n in range(100, 103):
            history.record("vip58", entry(n))
        history.record("vip59", entry(200))
        await trio.sleep(1)
        # Four transitions in a burst: one write, with all of them.
        assert store.saves == 1
        kept = store.saved["vip58"]
        assert len(kept) == HISTORY_LENGTH
        assert kept[-3:] == [entry(100), entry(101), entry(102)]
        assert kept[0] == entry(3)  # the oldest went first
        assert store.saved["vip59"] == [entry(200)]
        history.record("vip59", entry(201))
        await trio.sleep(1)
        assert store.saves == 2 and store.saved["vip59"] == [entry(200), entry(201)]
        nursery.cancel_scope.cancel()


async def test_a_transition_is_saved_a_moment_later_not_while_it_happens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryHistoryStore()
    history = History(store)
    await history.load(["vip58"])
    async with trio.open_nursery() as nursery:
        await nursery.start(history.run)
        history.record("vip58", entry(1))
        await trio.sleep(SAVE_DELAY * 0.9)
        assert store.saves == 0  # the new master announces itself first
        history.record("vip58", entry(2))  # within the delay: the same write
        await trio.sleep(SAVE_DELAY * 0.2)
        assert store.saves == 1 and store.saved["vip58"] == [entry(1), entry(2)]
        nursery.cancel_scope.cancel()


async def test_history_of_instances_no_longer_configured_is_forgotten() -> None:
    store = MemoryHistoryStore({"vip58": [entry(1)], "old": [entry(2)]})
    history = History(store)
    await history.load(["vip58"])
    assert history.entries("old") == []
    history.keep(["vip59"])  # a reload replaced vip58 by vip59
    await history.flush()
    assert store.saved == {}


async def test_a_failing_save_is_logged_once_and_recording_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryHistoryStore()
    store.fail_saves = True
    history = History(store)
    await history.load(["vip58"])
    with caplog.at_level(logging.INFO, logger="pyvrrp"):
        for n in range(3):
            history.record("vip58", entry(n))
            await history.flush()
        store.fail_saves = False
        history.record("vip58", entry(3))
        await history.flush()
    assert caplog.messages == [
        "transition history cannot be kept across a restart: cannot write history.json: "
        "read-only file system",
        "transition history is saved again",
    ]
    assert store.saved["vip58"] == [entry(0), entry(1), entry(2), entry(3)]


async def test_the_real_store_survives_a_restart(tmp_path: Path) -> None:
    first = History(StateDirHistoryStore(str(tmp_path)), length=3)
    await first.load(["vip58"])
    for n in range(5):
        first.record("vip58", entry(n))
    await first.flush()
    second = History(StateDirHistoryStore(str(tmp_path)), length=3)
    await second.load(["vip58"])
    assert second.entries("vip58") == [entry(2), entry(3), entry(4)]
