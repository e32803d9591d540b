"""Maintenance flags kept in state_dir across restarts: atomic, and never a crash on reading."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pyvrrp.runtime.statefile import (
    MAINTENANCE_FILE,
    StateFileError,
    load_maintenance,
    save_maintenance,
)


def test_saved_instances_are_loaded_back(tmp_path: Path) -> None:
    save_maintenance(str(tmp_path), ["vip59", "vip58", "vip59"])
    assert load_maintenance(str(tmp_path)) == frozenset({"vip58", "vip59"})
    assert json.loads((tmp_path / MAINTENANCE_FILE).read_text()) == {
        "maintenance": ["vip58", "vip59"]
    }


def test_saving_nothing_clears_the_flags(tmp_path: Path) -> None:
    save_maintenance(str(tmp_path), ["vip58"])
    save_maintenance(str(tmp_path), [])
    assert load_maintenance(str(tmp_path)) == frozenset()


def test_no_file_means_no_instance_in_maintenance(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert load_maintenance(str(tmp_path / "never-created")) == frozenset()
    assert caplog.records == []


def test_a_missing_state_dir_is_created_private(tmp_path: Path) -> None:
    state_dir = tmp_path / "var" / "lib" / "pyvrrp"
    save_maintenance(str(state_dir), ["vip58"])
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / MAINTENANCE_FILE).stat().st_mode) == 0o600
    assert load_maintenance(str(state_dir)) == {"vip58"}


def test_an_existing_state_dir_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    save_maintenance(str(tmp_path), ["vip58"])
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b'{"maintenance": ["vip58"', "is not valid JSON"),
        (b"\xff\xfe", "is not valid JSON"),
        (b"", "is not valid JSON"),
        (b'["vip58"]', 'is not {"maintenance": [instance names]}'),
        (b'{"maintenance": "vip58"}', 'is not {"maintenance": [instance names]}'),
        (b'{"maintenance": [58]}', 'is not {"maintenance": [instance names]}'),
        (b'{"other": []}', 'is not {"maintenance": [instance names]}'),
    ],
)
def test_a_corrupt_file_is_logged_and_treated_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, complaint: str
) -> None:
    (tmp_path / MAINTENANCE_FILE).write_bytes(content)
    assert load_maintenance(str(tmp_path)) == frozenset()
    [record] = caplog.records
    assert record.levelname == "ERROR"
    assert record.getMessage() == (
        f"{tmp_path / MAINTENANCE_FILE} {complaint}; starting with no instance in maintenance"
    )


def test_an_unreadable_file_is_logged_and_treated_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / MAINTENANCE_FILE).mkdir()  # reading a directory fails even for root
    assert load_maintenance(str(tmp_path)) == frozenset()
    assert caplog.messages == [
        f"cannot read {tmp_path / MAINTENANCE_FILE}: Is a directory; starting with no "
        "instance in maintenance"
    ]


def test_the_new_file_is_on_disk_before_it_replaces_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(f"fsync {kind}")
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        calls.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_maintenance(str(tmp_path), ["vip58"])
    assert calls == ["fsync file", "replace", "fsync directory"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_maintenance(str(tmp_path), ["vip58"])

    def replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StateFileError) as error:
        save_maintenance(str(tmp_path), ["vip59"])
    assert str(error.value) == (
        f"cannot write {tmp_path / MAINTENANCE_FILE}: No space left on device"
    )
    assert load_maintenance(str(tmp_path)) == {"vip58"}
    assert os.listdir(tmp_path) == [MAINTENANCE_FILE]


def test_a_state_dir_that_is_a_file_cannot_be_saved_to(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("")
    with pytest.raises(StateFileError, match=r"cannot write .*/state/maintenance\.json: "):
        save_maintenance(str(blocker), ["vip58"])
