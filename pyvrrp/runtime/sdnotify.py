"""systemd's readiness protocol (sd_notify), without libsystemd.

With ``Type=notify`` systemd passes a datagram socket in ``$NOTIFY_SOCKET``; the daemon says
``READY=1`` once its routers run, ``RELOADING=1`` / ``READY=1`` around a reload and
``STOPPING=1`` when it stops. Outside systemd (no variable) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. "READY=1", "STATUS=...") to systemd; False outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    message = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError:
        return False
    return True


def ready(status: str) -> bool:
    return notify("READY=1", f"STATUS={status}")


def reloading() -> bool:
    # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload it asked for.
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")


def stopping() -> bool:
    return notify("STOPPING=1")
