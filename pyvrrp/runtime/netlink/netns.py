"""Network namespaces for the netlink threads and sockets (the lab and the tests use them;
the daemon works in its own namespace)."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from typing import Final, TypeVar

import outcome

from pyvrrp.runtime.netlink.contract import NetlinkError

__all__ = ["enter_netns", "in_netns"]

CLONE_NEWNET: Final = 0x40000000  # linux/sched.h

_T = TypeVar("_T")


def enter_netns(name: str) -> None:
    """Move the calling *thread* into the network namespace ``name`` (``ip netns`` name).

    Only the calling thread moves (setns(2) acts per thread), so this is for threads that
    belong to one object: the netlink owner thread, or a short-lived thread creating a socket.
    Sockets keep the namespace they were created in.
    """
    path = name if "/" in name else f"/run/netns/{name}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetlinkError(
            f"cannot enter network namespace {name}: it does not exist (ip netns list)",
            errno=errno.ENOENT,
        ) from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise NetlinkError(
                f"cannot enter network namespace {name}: {os.strerror(code).lower()}; "
                f"run as root or grant CAP_SYS_ADMIN",
                errno=code,
            )
    finally:
        os.close(fd)


def in_netns(name: str | None, fn: Callable[[], _T]) -> _T:
    """Run ``fn`` on a short-lived thread inside namespace ``name`` (here if None).

    For creating a socket in a namespace without moving the caller's thread.
    """
    if name is None:
        return fn()
    box: list[outcome.Outcome[_T]] = []

    def run() -> None:
        def entered() -> _T:
            enter_netns(name)
            return fn()

        box.append(outcome.capture(entered))

    thread = threading.Thread(target=run, name=f"pyvrrp-netns-{name}", daemon=True)
    thread.start()
    thread.join()
    return box[0].unwrap()
