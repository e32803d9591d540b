"""docs/library.md's example runs as documented, and the page shows the file as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "library_demo.py"


def test_library_example_runs_and_prints_the_documented_failover() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "  3.219s  a is MASTER",
        "          a holds 192.0.2.100/24",
        "  3.828s  b: BACKUP -> MASTER (the master left (priority 0))",
        "          b holds 192.0.2.100/24",
    ]
    page = (ROOT / "docs" / "library.md").read_text()
    assert EXAMPLE.read_text() in page
    assert "\n".join(result.stdout.splitlines()) in page
