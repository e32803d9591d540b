"""The two-minute chaos soak of test_soak.py, started in the background as soon as the session
knows it will run (tests/conftest.py), so that its two minutes overlap the unit and runtime
tests instead of adding to the suite's wall time.

The soak is a subprocess with its own lab (namespaces `soak-*`); the tests that run meanwhile
are the unit and runtime ones (tests/conftest.py orders every netns test after them and
test_soak.py first among those), which create no namespaces and have no network timing to
disturb. The soak's bounds already carry a margin for a busy 2-core machine (`--margin 3`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "soak.py"
SOAK_TEST = "tests/netns/test_soak.py::test_two_minute_soak_holds_every_invariant"
# The run's arguments: two minutes of faults with a fixed seed, as `make bench-soak` runs them.
SOAK_ARGS = ("--duration", "120", "--seed", "7", "--margin", "3")
# Seconds from the start to a verdict at most (the soak bounds itself to its duration + 300 s).
SOAK_TIMEOUT = 600.0


class SoakRun:
    """bench/soak.py running in the background, its output and JSON result in a temp dir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pyvrrp-soak-"))
        self.json = self.dir / "soak.json"
        self._out = (self.dir / "stdout").open("w")
        self._err = (self.dir / "stderr").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(SOAK), *SOAK_ARGS, "--json", str(self.json)],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            text=True,
        )

    def wait(self, timeout: float = SOAK_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Wait for the soak to end (TimeoutExpired after `timeout` s); its exit and output."""
        returncode = self.proc.wait(timeout)
        self._out.close()
        self._err.close()
        return subprocess.CompletedProcess(
            self.proc.args,
            returncode,
            (self.dir / "stdout").read_text(errors="replace"),
            (self.dir / "stderr").read_text(errors="replace"),
        )

    def close(self) -> None:
        """Stop the soak if it still runs (SIGTERM: it tears its lab down, then SIGKILL), and
        remove the temp dir."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()
        self._err.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# The run started for this session and not yet taken by the test (at most one).
_background: list[SoakRun] = []


def start_in_background() -> None:
    """Start the soak for test_soak.py now (once per session)."""
    if not _background:
        _background.append(SoakRun())


def take() -> SoakRun:
    """The soak started in the background, or a new one started now (the test runs alone
    or the session could not start it early)."""
    return _background.pop() if _background else SoakRun()


def stop_background() -> None:
    """End of the session: stop a soak nobody waited for (interrupted or deselected run)."""
    while _background:
        _background.pop().close()
