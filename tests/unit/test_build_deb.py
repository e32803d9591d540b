"""deb/build_deb.py and deb/manpage.py without dpkg: the dependency walk, the pure-Python
check, and the man page generated from the command line's parser."""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import build_deb
import manpage
import pytest

from pyvrrp.cli import build_parser


def fake_distribution(tmp_path: Path, *, purelib: bool, record: list[str]) -> metadata.Distribution:
    info = tmp_path / "fake-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake\nVersion: 1.0\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: {str(purelib).lower()}\n")
    (info / "RECORD").write_text("".join(f"{path},,\n" for path in record))
    return metadata.PathDistribution(info)


def test_dependency_walk_follows_requirements_of_requirements() -> None:
    names = {d.metadata["Name"].lower() for d in build_deb.runtime_distributions()}
    # pyvrrp names trio, pyroute2, attrs, outcome; trio brings sniffio, sortedcontainers, idna.
    assert {"trio", "pyroute2", "attrs", "outcome", "sniffio", "sortedcontainers", "idna"} <= names
    # Markers are evaluated: trio's cffi is for Windows, exceptiongroup for Python < 3.11.
    assert not names & {"cffi", "exceptiongroup", "pytest", "pyvrrp"}


def test_a_distribution_that_is_not_pure_python_is_refused(tmp_path: Path) -> None:
    dist = fake_distribution(tmp_path, purelib=False, record=["fake/__init__.py"])
    with pytest.raises(build_deb.BuildError, match="fake is not a pure-Python distribution"):
        list(build_deb._dist_files(dist))


def test_a_compiled_extension_is_refused(tmp_path: Path) -> None:
    dist = fake_distribution(tmp_path, purelib=True, record=["fake/_speedups.so"])
    with pytest.raises(build_deb.BuildError, match=r"compiled extension \(fake/_speedups.so\)"):
        list(build_deb._dist_files(dist))


def test_scripts_bytecode_and_venv_records_are_left_out(tmp_path: Path) -> None:
    record = [
        "fake/__init__.py",
        "fake/__pycache__/__init__.cpython-311.pyc",
        "../../bin/fake",
        "fake-1.0.dist-info/METADATA",
        "fake-1.0.dist-info/RECORD",
        "fake-1.0.dist-info/licenses/LICENSE",
    ]
    dist = fake_distribution(tmp_path, purelib=True, record=record)
    kept = {str(path) for path, _ in build_deb._dist_files(dist)}
    assert kept == {
        "fake/__init__.py",
        "fake-1.0.dist-info/METADATA",
        "fake-1.0.dist-info/licenses/LICENSE",
    }


def test_licences_debian_ships_are_referred_to_not_copied() -> None:
    apache = "\n                                 Apache License\n   Version 2.0, January 2004\n"
    assert "/usr/share/common-licenses/Apache-2.0" in (build_deb._common_licence(apache) or "")
    assert build_deb._common_licence("The MIT License (MIT)\n\nCopyright ...") is None


PAGE = manpage.render(date=datetime.date(2026, 1, 2))


def all_options(parser: argparse.ArgumentParser) -> set[str]:
    names = {name for action in parser._actions for name in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= all_options(sub)
    return names


def test_man_page_has_every_command_and_option_of_the_parser() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        assert f".SS {manpage.escape(name)}\n" in PAGE  # import\-keepalived
        assert manpage.escape(sub.description or "") in PAGE
    for option in all_options(parser):
        assert f"\\fB{manpage.escape(option)}\\fR" in PAGE, option
    assert PAGE.startswith('.TH PYVRRP 8 "2026-01-02" "pyvrrp ')


def test_roff_escapes_backslashes_hyphens_and_leading_dots() -> None:
    assert manpage.escape("a\\b --json") == "a\\eb \\-\\-json"
    assert manpage.escape(".not a request\n'nor this") == "\\&.not a request\n\\&'nor this"


def test_man_page_renders_without_groff_warnings() -> None:
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff is not installed")
    result = subprocess.run(
        [groff, "-man", "-ww", "-z", "-Tutf8"],
        input=PAGE,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stderr == ""


def run_packaging_test(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """One packaging test in a child pytest whose PATH has python but no dpkg."""
    root = Path(__file__).parents[2]
    env = {k: v for k, v in os.environ.items() if k != "PYVRRP_REQUIRE_NETNS"}
    env |= {"PATH": str(Path(sys.executable).parent), **env_extra}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-cov",
            "tests/packaging/test_deb.py::test_control_fields_say_what_the_package_needs",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=root,
        env=env,
    )


def test_packaging_tests_fail_without_dpkg_in_ci_and_skip_elsewhere() -> None:
    ci = run_packaging_test({"PYVRRP_REQUIRE_NETNS": "1"})
    assert ci.returncode == 1, ci.stdout
    assert "`dpkg-deb` (Debian package dpkg) is missing" in ci.stdout
    assert "forbids skipping" in ci.stdout
    elsewhere = run_packaging_test({})
    assert elsewhere.returncode == 0, elsewhere.stdout
    assert "1 skipped" in elsewhere.stdout
