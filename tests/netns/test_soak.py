"""The chaos soak (bench/soak.py) for two minutes with a fixed seed: every invariant holds.

The soak builds its own lab (namespaces `soak-*`), injects about ten faults of the seeded
schedule one at a time and judges the run itself (see its docstring for the invariants and
their bounds, RFC 9568 §6.1 timers plus a margin). This test runs it as `make bench-soak`
does, with a margin for a busy 2-core machine, and asserts on its JSON result. The run starts
in the background when the session starts (tests/netns/soakrun.py), so that its two minutes
overlap the unit and runtime tests; the test waits for it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from nslab import list_labs

from tests.netns import soakrun
from tests.netns.labtools import require_lab_environment

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "bench" / "soak.py"


def soak(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run bench/soak.py with `args`."""
    return subprocess.run(
        [sys.executable, str(SOAK), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_schedule_is_reproducible_from_its_seed() -> None:
    first = soak("--print-schedule", "--duration", "600", "--seed", "7", timeout=60)
    again = soak("--print-schedule", "--duration", "600", "--seed", "7", timeout=60)
    other = soak("--print-schedule", "--duration", "600", "--seed", "8", timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    assert first.stdout != other.stdout
    kinds = {
        m.group(1)
        for line in first.stdout.splitlines()
        if (m := re.match(r"#0\d\d \+ *[0-9.]+s (\S+)", line))
    }
    # Every fault kind comes up within one round (of 11 kinds).
    assert kinds == {
        "link", "partition", "kill", "term", "reload", "maintenance", "health", "tracked",
        "delete", "loss", "clock",
    }  # fmt: skip


def test_two_minute_soak_holds_every_invariant() -> None:
    require_lab_environment()
    run = soakrun.take()  # bench/soak.py --duration 120 --seed 7 --margin 3 --json FILE
    try:
        done = run.wait()
        out = run.json
        log = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-3000:]}"
        assert out.exists(), log
        result = json.loads(out.read_text())
    finally:
        run.close()
    assert result["faults"] >= 8, log
    broken = {name: n for name, n in result["invariants"].items() if n}
    assert broken == {}, log
    assert done.returncode == 0, log
    # The soak removed its lab (namespaces) on the way out.
    assert result["lab"] not in list_labs("soak"), list_labs("soak")
