"""pyvrrp.runtime.deferred: modules whose code runs at their first use, not at import.

Each case runs in a fresh interpreter (placeholders go into ``sys.modules``), with probe
modules written for the test: their code records each run in a file, so that a test sees
when, and how many times, a module's code ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]

# A module whose code takes a while and records each run.
PROBE = """
import os, time
time.sleep(0.2)  # long enough for other threads to arrive while it runs
with open(os.environ["PROBE_RUNS"], "a") as runs:
    runs.write("ran\\n")
VALUE = 42
def answer():
    return VALUE
"""


def run(tmp_path: Path, script: str, **modules: str) -> tuple[list[str], int]:
    """Run ``script`` with ``modules`` (name: code) importable; its output lines, and how
    many times the probe modules' code ran."""
    for name, code in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(code))
    runs = tmp_path / "runs"
    runs.write_text("")
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "PROBE_RUNS": str(runs),
    }
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        check=False,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split(), len(runs.read_text().split())


def test_an_import_binds_the_placeholder_and_the_first_missing_name_runs_the_module(
    tmp_path: Path,
) -> None:
    lines, runs = run(
        tmp_path,
        """
        import sys, types
        from pyvrrp.runtime.deferred import defer
        print(defer(["probe"]))
        import probe
        print("imported", len(open(__import__("os").environ["PROBE_RUNS"]).read().split()))
        print(probe.__name__, type(probe) is types.ModuleType)  # metadata: still not run
        from probe import answer
        print(answer(), type(probe) is types.ModuleType, sys.modules["probe"] is probe)
        try:
            probe.missing
        except AttributeError as exc:
            print("AttributeError:", exc)
        """,
        probe=PROBE,
    )
    assert lines == [
        "['probe']",
        "imported",
        "0",
        "probe",
        "False",
        "42",
        "True",
        "True",
        "AttributeError:",
        "module",
        "'probe'",
        "has",
        "no",
        "attribute",
        "'missing'",
    ]
    assert runs == 1


def test_threads_reading_at_once_run_the_module_once_and_all_see_it_complete(
    tmp_path: Path,
) -> None:
    lines, runs = run(
        tmp_path,
        """
        import threading
        from pyvrrp.runtime.deferred import defer
        defer(["probe"])
        import probe
        seen = []
        threads = [threading.Thread(target=lambda: seen.append(probe.answer())) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(seen)
        """,
        probe=PROBE,
    )
    assert lines == ["[42,", "42,", "42,", "42,", "42,", "42,", "42,", "42]"]
    assert runs == 1


def test_a_module_reading_its_own_missing_name_while_it_runs_gets_an_attribute_error(
    tmp_path: Path,
) -> None:
    lines, _ = run(
        tmp_path,
        """
        from pyvrrp.runtime.deferred import defer
        defer(["early"])
        import early
        print(early.LATER, early.EARLY_READ)
        """,
        early="""
        import sys
        try:
            sys.modules[__name__].LATER
        except AttributeError:
            EARLY_READ = "failed"
        else:
            EARLY_READ = "succeeded"
        LATER = 1
        """,
    )
    assert lines == ["1", "failed"]


def test_only_modules_not_yet_imported_that_exist_and_are_not_packages_are_deferred(
    tmp_path: Path,
) -> None:
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "__init__.py").write_text("")
    lines, runs = run(
        tmp_path,
        """
        import probe, sys
        from pyvrrp.runtime.deferred import defer
        print(defer(["probe", "package", "no_such_module", "package.sub", "colorsys"]))
        print("colorsys" in sys.modules)
        """,
        probe=PROBE,
    )
    assert lines == ["['colorsys']", "True"]
    assert runs == 1  # imported as usual, before defer()


def test_a_deferred_ssl_loads_openssl_only_when_first_used(tmp_path: Path) -> None:
    lines, _ = run(
        tmp_path,
        """
        import sys
        from pyvrrp.runtime.deferred import DAEMON_DEFERRED, defer
        print(defer(DAEMON_DEFERRED))
        import trio, ssl, hmac
        print("_ssl" in sys.modules, "_hashlib" in sys.modules)
        context = ssl.create_default_context()
        print(isinstance(context, ssl.SSLContext), context.verify_mode == ssl.CERT_REQUIRED)
        print(hmac.new(b"key", b"message", "sha256").hexdigest()[:8])
        print("_ssl" in sys.modules, "_hashlib" in sys.modules)
        """,
    )
    assert lines[:4] == ["['ssl',", "'hmac']", "False", "False"]  # imported, not loaded
    assert lines[4:] == ["True", "True", "6e9ef29b", "True", "True"]  # working, loaded
