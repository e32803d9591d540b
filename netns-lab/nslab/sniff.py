"""Watching the VRRP advertisements a node sends, as the vSwitch sees them.

`Lab.watch_adverts(node)` runs `tcpdump` in the switch namespace on the node's bridge port,
inbound direction only (frames coming from the node), so it sees the node's advertisements
even while a partition or a cut drops them further on. Tests use it to act at a chosen phase
of a node's advertisement timer: for example, to heal a split brain just after one side
advertised, which decides whose advertisement crosses first (RFC 9568 §6.4.3: a master that
hears a higher priority yields, one that hears a lower priority re-asserts).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from nslab.system import LabError, Proc, ns_argv, start_time_of

__all__ = ["Advert", "AdvertWatch"]

# tcpdump's one-line summary of a VRRP packet, e.g.
# "IP 192.168.200.3 > 192.168.200.1: VRRPv3, Advertisement, vrid 58, prio 75, intvl 100cs, ..."
_LINE = re.compile(
    r"(?P<src>[0-9a-f.:]+) > (?P<dst>[0-9a-f.:]+): VRRPv(?P<version>\d), Advertisement, "
    r"vrid (?P<vrid>\d+), prio (?P<prio>\d+)"
)


@dataclass(frozen=True)
class Advert:
    """One advertisement seen leaving a node: `captured` is the kernel's capture time (epoch
    seconds, like time.time(): exact even when the reader runs late on a busy machine), `at`
    is time.monotonic() when the lab read it."""

    at: float
    captured: float
    source: str
    destination: str
    version: int
    vrid: int
    priority: int


class AdvertWatch:
    """The advertisements one node sends; a context manager (`with lab.watch_adverts("A")`).

    Lines are read by a thread as tcpdump prints them (`--immediate-mode -l`: no capture
    buffering), so `Advert.at` is within a few milliseconds of the frame leaving the node.
    """

    def __init__(self, switch_ns: str, port: str, log_path: str) -> None:
        self._argv = ns_argv(
            switch_ns,
            [
                "tcpdump",
                "-l",
                "-n",
                "--immediate-mode",
                "-tt",
                "-Q",
                "in",
                "-i",
                port,
                "ip proto 112 or ip6 proto 112",
            ],
        )
        self._log_path = log_path
        self._seen: list[Advert] = []
        self._changed = threading.Condition()
        self._popen: subprocess.Popen[str] | None = None
        self.proc: Proc | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> AdvertWatch:
        """Start tcpdump and wait until it captures."""
        if shutil.which("tcpdump") is None:
            raise LabError("tcpdump is missing: apt-get install tcpdump")
        log = open(self._log_path, "w")  # noqa: SIM115 (tcpdump's stderr lives as long as it)
        try:
            self._popen = subprocess.Popen(
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        finally:
            log.close()
        popen = self._popen
        self.proc = Proc("tcpdump", popen.pid, start_time_of(popen.pid), None)
        self._thread = threading.Thread(target=self._reader, name="advert-watch", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        # tcpdump says "listening on PORT" on stderr once the capture is open.
        while "listening on" not in _read(self._log_path):
            if popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise LabError(f"tcpdump did not start: {_read(self._log_path).strip()}")
            time.sleep(0.02)
        return self

    def _reader(self) -> None:
        assert self._popen is not None
        assert self._popen.stdout is not None
        for line in self._popen.stdout:
            m = _LINE.search(line)
            if m:
                advert = Advert(
                    at=time.monotonic(),
                    captured=float(line.split(maxsplit=1)[0]),
                    source=m["src"],
                    destination=m["dst"],
                    version=int(m["version"]),
                    vrid=int(m["vrid"]),
                    priority=int(m["prio"]),
                )
                with self._changed:
                    self._seen.append(advert)
                    self._changed.notify_all()

    def _wait_for(self, match: Callable[[Advert], bool], timeout: float, what: str) -> Advert:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for advert in self._seen:
                    if match(advert):
                        return advert
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(f"no advertisement {what} within {timeout} s")
                self._changed.wait(left)

    def next(
        self,
        timeout: float,
        *,
        vrid: int | None = None,
        after: float | None = None,
        priority: int | None = None,
    ) -> Advert:
        """The first advertisement (of `vrid` and with `priority`, if given) read after
        `after` (monotonic time, default: now); LabError if none comes within `timeout` s.
        It does not consume: asked twice, it answers the same advertisement."""
        since = time.monotonic() if after is None else after
        return self._wait_for(
            lambda a: a.at >= since and vrid in (None, a.vrid) and priority in (None, a.priority),
            timeout,
            f"(vrid {vrid}, priority {priority})",
        )

    def first_captured(self, since: float, timeout: float, *, vrid: int | None = None) -> Advert:
        """The first advertisement (of `vrid`, if given) captured at or after `since` (epoch
        seconds, time.time()), waiting up to `timeout` s for it."""
        return self._wait_for(
            lambda a: a.captured >= since and vrid in (None, a.vrid),
            timeout,
            f"(vrid {vrid}) captured after {since:.3f}",
        )

    def adverts(self) -> list[Advert]:
        """Every advertisement seen so far."""
        with self._changed:
            return list(self._seen)

    def stop(self) -> None:
        """Stop tcpdump (idempotent)."""
        if self._popen is not None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(5.0)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(5.0)
        if self._thread is not None:
            self._thread.join(5.0)  # it ends at the pipe's EOF
            self._thread = None
        if self._popen is not None:
            if self._popen.stdout is not None:
                self._popen.stdout.close()
            self._popen = None

    def __enter__(self) -> AdvertWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""
