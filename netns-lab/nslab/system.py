"""Thin wrappers over `ip`, `nft` and processes: run a command, start and stop a process by pid.

Every process the lab starts gets its own session (`start_new_session=True`): a Ctrl-C in the
terminal then reaches only the lab, which stops its processes in order, and the process group
id is the pid we started, so `killpg` reaches the daemon's children (keepalived forks) and
nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LabError",
    "Proc",
    "group_members",
    "ns_argv",
    "pid_alive",
    "run",
    "spawn",
    "start_time_of",
    "terminate",
]

NETNS_DIR = Path("/run/netns")


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says what to do about it."""


def run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; on failure (with `check`) raise LabError with its stderr."""
    try:
        done = subprocess.run(
            list(argv),
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} not found: install it (see netns-lab/README.md)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` took more than {timeout} s") from exc
    if check and done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        if input_text:
            detail += "\n--- input ---\n" + input_text
        raise LabError(f"`{' '.join(argv)}` failed ({done.returncode}): {detail}")
    return done


def ns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """`argv` run inside network namespace `ns` (`ip netns exec` execs it: same pid)."""
    return ["ip", "netns", "exec", ns, *argv]


def start_time_of(pid: int) -> int | None:
    """The process start time in clock ticks (identifies a pid across reuse), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may contain spaces, so split after its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # a zombie is as good as gone
    return int(fields[19])


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """Whether `pid` runs (and, if `start_time` is given, is still the same process)."""
    current = start_time_of(pid)
    if current is None:
        return False
    return start_time is None or current == start_time


def group_members(pgid: int) -> list[int]:
    """The live processes whose process group is `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


@dataclass
class Proc:
    """A process the lab started: found again by pid and start time, even from another
    `lab.py` invocation (detached labs keep them in their state file)."""

    name: str
    pid: int
    start_time: int | None
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        """Whether it still runs."""
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid, self.start_time)

    def signal(self, signo: int) -> None:
        """Send `signo` to it, if it still runs."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signo)

    def signal_group(self, signo: int) -> None:
        """Send `signo` to every process of its group (it leads one: see the module
        docstring), also after the leader exited: Linux never hands out a pid still used as a
        process group id, so the members found are ours."""
        for pid in group_members(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signo)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for it to exit; True if it did."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def to_json(self) -> dict[str, object]:
        """For the state file of a detached lab."""
        return {"name": self.name, "pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Proc:
        """Inverse of `to_json` (without the Popen: another process started it)."""
        start = data.get("start_time")
        return cls(
            name=str(data["name"]),
            pid=int(str(data["pid"])),
            start_time=int(str(start)) if start is not None else None,
        )


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
) -> Proc:
    """Start `argv` in its own session, output appended to `log` (or discarded)."""
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} not found: install it (see netns-lab/README.md)") from exc
    finally:
        if not isinstance(out, int):
            out.close()
    return Proc(name=name, pid=popen.pid, start_time=start_time_of(popen.pid), popen=popen)


def python_env() -> dict[str, str]:
    """The environment for `python -m nslab.*` helpers: nslab importable wherever we run."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    return env


def python() -> str:
    """The interpreter running the lab (the project's virtualenv)."""
    return sys.executable


def terminate(proc: Proc, *, grace: float, signo: int = signal.SIGTERM) -> bool:
    """Send `signo`, wait `grace` s, then SIGKILL its whole group. True if it exited in time."""
    proc.signal(signo)
    if proc.wait(grace):
        proc.signal_group(signal.SIGKILL)  # leftovers of the group, if any
        return True
    proc.signal_group(signal.SIGKILL)
    proc.wait(5.0)
    return False
