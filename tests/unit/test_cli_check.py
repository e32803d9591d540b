"""`pyvrrp check -c FILE` and the command line around it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyvrrp.cli import main

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "node-a.toml"

VALID = """
[scripts.chk]
command = ["/bin/true"]
weight = -60

[instances.vip58]
interface = "eth0.4000"
vrid = 58
addresses = ["1.2.3.58/29"]
track_scripts = ["chk"]

[instances.vip59]
interface = "eth0.4000"
vrid = 59
addresses = ["1.2.3.59/29"]

[sync_groups.ingress]
instances = ["vip58", "vip59"]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def test_valid_file_prints_a_summary_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID)
    assert main(["check", "-c", path]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK: 2 instances (vip58, vip59), 1 script, 1 sync group\n"
    assert err == ""


def test_seed_example_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # curl and logger may be missing on a build machine: without --host, check does not look.
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["check", "-c", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == (
        f"{EXAMPLE}: OK: 3 instances (vip58, vip59, vip60), 1 script, 0 sync groups\n"
    )


def test_every_problem_is_printed_with_file_and_path_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID.replace("vrid = 58", "vrid = 0").replace('"vip59"]', '"vip95"]')
    path = write(tmp_path, text)
    assert main(["check", "-c", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}: instances.vip58.vrid: 0 is out of range 1..255",
        f'{path}: sync_groups.ingress.instances[1]: no instance named "vip95" in [instances]; '
        "did you mean vip59?",
    ]


def test_file_problems_are_printed_once_with_the_file_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.toml")
    assert main(["check", "-c", missing]) == 2
    assert capsys.readouterr().err == f"{missing}: no such file\n"


def test_toml_syntax_error_exits_2_with_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "[instances.vip58\n")
    assert main(["check", "-c", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: invalid TOML: ")
    assert "(at line 1, column 17)" in err


def test_without_host_the_check_does_not_look_at_this_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A program and an interface this machine lacks: --host reports them
    # (tests/runtime/test_hostcheck.py); a check for another machine does not.
    path = write(tmp_path, VALID.replace('"/bin/true"', '"/nonexistent/check"'))
    assert main(["check", "-c", path]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: OK: ")
    assert err == ""


def test_config_option_may_come_before_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID)
    assert main(["--config", path, "check"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK: ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check"], "check needs -c FILE"),
        ([], "the daemon needs -c FILE"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["check", "-c"], "expected one argument"),
        (["check", "-c", "x", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_usage_exits_2_with_usage(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pyvrrp")
    assert message in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "check" in capsys.readouterr().out


def test_daemon_refuses_an_invalid_configuration_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID.replace("vrid = 58", "vrid = 300"))
    assert main(["-c", path]) == 2
    err = capsys.readouterr().err
    assert "instances.vip58.vrid: 300 is out of range 1..255" in err
    assert "Traceback" not in err


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pyvrrp", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def test_python_m_pyvrrp_check_missing_file_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_module("check", "-c", "missing.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "missing.toml: no such file\n"
    assert "Traceback" not in result.stderr


def test_python_m_pyvrrp_bad_usage_exits_2_without_traceback(tmp_path: Path) -> None:
    result = run_module("check", "--nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: pyvrrp" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_m_pyvrrp_check_valid_file(tmp_path: Path) -> None:
    write(tmp_path, VALID)
    result = run_module("check", "-c", "node.toml", cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "node.toml: OK: 2 instances (vip58, vip59), 1 script, 1 sync group\n"


def test_a_file_without_instances_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "# rendered from an empty template\n")
    assert main(["check", "-c", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: instances: missing: no instance is configured")


def test_warnings_go_to_stderr_and_the_check_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path, VALID.replace("vrid = 59", 'vrid = 59\nstate = "master"\npreempt = false')
    )
    assert main(["check", "-c", path]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK: 2 instances (vip58, vip59), 1 script, 1 sync group\n"
    assert err.startswith(f"{path}: instances.vip59.preempt: warning: false is ignored")
    assert err.count("\n") == 1


def test_problems_are_capped_at_100(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Top-level keys must come before the tables: put them first.
    path = write(tmp_path, "".join(f"unknown{i} = 1\n" for i in range(300)) + VALID)
    assert main(["check", "-c", path]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 101
    assert lines[0].startswith(f"{path}: unknown0: unknown key")
    assert lines[-1] == f"{path}: and 200 more problems"


def test_a_huge_file_is_refused_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "x = 1\n" * 2_000_000)  # 12 MB
    assert main(["check", "-c", path]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"{path}: is larger than 1024 KiB")


def test_the_daemon_refuses_to_start_without_instances(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[global]\nrouter_id = "a"\n')
    assert main(["-c", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: instances: missing: no instance is configured")
