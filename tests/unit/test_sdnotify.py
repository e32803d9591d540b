"""systemd's notify protocol: what pyvrrp tells a Type=notify unit, and when it stays quiet."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvrrp.runtime import sdnotify


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[socket.socket]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        yield server


def test_ready_reports_the_status_line(notify_socket: socket.socket) -> None:
    assert sdnotify.ready("vip58 MASTER, vip59 BACKUP")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=vip58 MASTER, vip59 BACKUP"


def test_reloading_carries_the_monotonic_time(notify_socket: socket.socket) -> None:
    assert sdnotify.reloading()
    fields = notify_socket.recv(4096).decode().split("\n")
    assert fields[0] == "RELOADING=1"
    assert fields[1].startswith("MONOTONIC_USEC=")
    assert int(fields[1].split("=")[1]) > 0


def test_stopping(notify_socket: socket.socket) -> None:
    assert sdnotify.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1"


def test_abstract_socket_names_start_with_an_at_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"pyvrrp-test-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.stopping()
        assert server.recv(4096) == b"STOPPING=1"


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False


def test_a_vanished_socket_is_not_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.ready("x") is False
