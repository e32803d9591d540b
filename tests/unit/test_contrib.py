"""The deployment files in contrib/ are valid as shipped."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "contrib" / "pyvrrp.service"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze (Debian package systemd) is needed"
    # verify checks that every Exec* program exists: point them at this checkout's pyvrrp.
    pyvrrp = Path(sys.executable).with_name("pyvrrp")
    assert pyvrrp.exists()
    unit = tmp_path / "pyvrrp.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/pyvrrp", str(pyvrrp)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    # Unknown keys are only warnings for systemd-analyze: treat any output as a failure.
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize(
    "directive",
    ["Type=notify", "ExecReload=", "ExecStopPost=", "CapabilityBoundingSet=CAP_NET_ADMIN"],
)
def test_systemd_unit_uses_notify_reload_cleanup_and_capabilities(directive: str) -> None:
    assert any(line.startswith(directive) for line in UNIT.read_text().splitlines())


def test_systemd_unit_does_not_grant_full_root() -> None:
    text = UNIT.read_text()
    capabilities = next(
        line for line in text.splitlines() if line.startswith("CapabilityBoundingSet=")
    )
    assert "CAP_SYS_ADMIN" not in capabilities
    assert set(capabilities.split("=", 1)[1].split()) <= {
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_SETUID",
        "CAP_SETGID",
        "CAP_KILL",
        "CAP_BPF",
    }
