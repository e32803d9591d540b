"""The command line's side of ``pyvrrp events``: subscribe on the control socket, read lines.

The server's side and the events' format are in :mod:`pyvrrp.runtime.events`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Generator, Iterator
from typing import Any

# _connect: the same connection errors, worded the same way, as every other command.
from pyvrrp.runtime.control import ControlError, _connect

__all__ = ["receive_events"]


def receive_events(path: str, *, timeout: float = 5.0) -> Generator[dict[str, Any], None, None]:
    """Subscribe on the control socket at ``path`` and yield each event as it comes.

    Raises :class:`ControlError` when the daemon cannot be reached or refuses, when it goes
    away (the stream ends), and when it cut this client off (the message says why).
    """
    sock = _connect(path, timeout)
    with sock:
        try:
            sock.sendall(b'{"command":"events"}\n')
        except OSError as exc:
            raise ControlError(f"lost the connection to pyvrrp on {path}: {exc}") from None
        lines = _lines(sock, path)
        first = _decode(next(lines, None), path, waiting="an answer")
        if first.get("ok") is not True:
            message = first.get("error")
            raise ControlError(message if isinstance(message, str) else f"{path}: refused")
        sock.settimeout(None)  # events may be hours apart
        for line in lines:
            event = _decode(line, path, waiting="events")
            if event.get("type") == "error":
                raise ControlError(str(event.get("error", "pyvrrp ended the events stream")))
            yield event
    raise ControlError(
        f"pyvrrp closed the events stream on {path} (the daemon stopped or restarted)"
    )


def _lines(sock: socket.socket, path: str) -> Iterator[bytes]:
    buffer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise ControlError(
                f"pyvrrp did not answer on {path} (is it stuck? see its log)"
            ) from None
        except OSError as exc:
            raise ControlError(f"lost the connection to pyvrrp on {path}: {exc}") from None
        if not chunk:
            return
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from complete
        if len(buffer) > 1024 * 1024:
            raise ControlError(f"malformed events from {path}: a line over 1 MiB")


def _decode(line: bytes | None, path: str, *, waiting: str) -> dict[str, Any]:
    if line is None:
        raise ControlError(f"pyvrrp closed the connection on {path} while sending {waiting}")
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        raise ControlError(f"malformed line from {path}: {line[:80]!r} (is it pyvrrp?)") from None
    if not isinstance(value, dict):
        raise ControlError(f"malformed line from {path}: not an object (is it pyvrrp?)")
    return value
