"""`make deb`: the package is built, inspected, installed into a throw-away root and run.

The package is built once per module with ``deb/build_deb.py`` (what ``make deb`` runs), then
looked at with dpkg-deb, installed with ``dpkg --root`` into a temporary directory, and the
installed ``/usr/bin/pyvrrp`` is run from there by the system python3, as it would be on a
host: --help, --version, ``check`` of the shipped example, and the daemon itself in a
network namespace. lintian checks it where it is installed.
"""

from __future__ import annotations

import configparser
import gzip
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from pyvrrp._version import __version__
from pyvrrp.cli import build_parser
from pyvrrp.core.timers import release_timeout
from pyvrrp.runtime.mailer import STOP_FLUSH
from pyvrrp.runtime.node import STOP_MARGIN
from pyvrrp.runtime.notify import DEFAULT_TIMEOUT
from pyvrrp.runtime.trackers import KILL_DELAY

ROOT = Path(__file__).parents[2]
VERSION = f"{__version__}-1"
DEB_NAME = f"pyvrrp_{VERSION}_all.deb"
EXPECTED_FILES = {
    "./usr/bin/pyvrrp",
    "./lib/systemd/system/pyvrrp.service",
    "./etc/pyvrrp/node.toml.example",
    "./usr/share/man/man8/pyvrrp.8.gz",
    "./usr/share/doc/pyvrrp/copyright",
    "./usr/share/doc/pyvrrp/changelog.gz",
    "./usr/share/doc/pyvrrp/changelog.Debian.gz",
    "./usr/share/doc/pyvrrp/README.md",
    "./usr/share/lintian/overrides/pyvrrp",
}
# Installed in .venv for the tests and the linters only: never bundled.
DEV_ONLY = {"pytest", "hypothesis", "scapy", "mypy", "ruff", "coverage", "packaging"}
# The runtime dependency tree as of this writing (pyvrrp's own requirements and theirs).
RUNTIME = {"trio", "pyroute2", "attrs", "outcome", "sniffio", "sortedcontainers", "idna", "h11"}


def run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output as text, never raise on its exit status."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(a) for a in args], capture_output=True, text=True, check=False, **kwargs
    )


def host_env() -> dict[str, str]:
    """A host's environment: the system PATH, without this test's venv or PYTHON* vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of one build: pyvrrp.pyz and the .deb."""
    out = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    result = run(sys.executable, ROOT / "deb" / "build_deb.py", "--out", out)
    assert result.returncode == 0, result.stderr
    # make test runs this build: keep it quick.
    assert time.monotonic() - started < 60
    return out


@pytest.fixture(scope="module")
def deb(built: Path) -> Path:
    path = built / DEB_NAME
    assert path.is_file(), sorted(p.name for p in built.iterdir())
    return path


@pytest.fixture(scope="module")
def installed(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away root with the package installed by dpkg, maintainer scripts included
    (run without chroot, with DPKG_ROOT set, so they must leave the host's systemd alone)."""
    root = tmp_path_factory.mktemp("root")
    admin = root / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True)
    (admin / "status").touch()
    result = dpkg(root, "--force-depends", "-i", deb)
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def dpkg(root: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(
        "dpkg",
        f"--root={root}",
        "--force-script-chrootless",
        "--log=/dev/null",
        *args,
        env=host_env(),
    )


def deb_files(deb: Path) -> dict[str, str]:
    """Path -> "mode owner/group" of every file (not directory) in the package."""
    listing = run("dpkg-deb", "-c", deb)
    assert listing.returncode == 0, listing.stderr
    files = {}
    for line in listing.stdout.splitlines():
        mode, owner, _size, _date, _time, path = line.split(maxsplit=5)
        if not mode.startswith("d"):
            files[path] = f"{mode} {owner}"
    return files


def control_file(deb: Path, name: str) -> str:
    out = subprocess.run(
        ["dpkg-deb", "--info", str(deb), name], capture_output=True, text=True, check=True
    )
    return out.stdout


# ------------------------------------------------------------------------------ the package


def test_package_holds_the_program_unit_example_man_page_and_debian_docs(deb: Path) -> None:
    files = deb_files(deb)
    assert set(files) == EXPECTED_FILES
    assert files["./usr/bin/pyvrrp"] == "-rwxr-xr-x root/root"
    assert all(v.endswith("root/root") for v in files.values()), files


def test_control_fields_say_what_the_package_needs(deb: Path) -> None:
    def field(name: str) -> str:
        return run("dpkg-deb", "--field", deb, name).stdout.strip()

    assert field("Package") == "pyvrrp"
    assert field("Version") == VERSION
    assert field("Architecture") == "all"
    # The bundled dependencies are pure Python: the system interpreter is all it needs.
    assert field("Depends") == "python3 (>= 3.11)"
    installed_kib = int(field("Installed-Size"))
    assert 1000 < installed_kib < 20000


def test_only_the_example_is_a_conffile_and_md5sums_cover_every_file(deb: Path) -> None:
    assert control_file(deb, "conffiles").split() == ["/etc/pyvrrp/node.toml.example"]
    sums = {
        path: digest
        for digest, path in (
            line.split(maxsplit=1) for line in control_file(deb, "md5sums").splitlines()
        )
    }
    assert {f"./{path}" for path in sums} == EXPECTED_FILES
    program = hashlib.md5(run_extract(deb, "./usr/bin/pyvrrp")).hexdigest()
    assert sums["usr/bin/pyvrrp"] == program


def test_unit_runs_the_packaged_program_and_waits_for_a_configuration(
    deb: Path, tmp_path: Path
) -> None:
    run("dpkg-deb", "-x", deb, tmp_path)
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read_string((tmp_path / "lib/systemd/system/pyvrrp.service").read_text())
    commands = [v for k, v in unit["Service"].items() if k.startswith("Exec")]
    assert len(commands) == 4
    assert all(c.startswith("/usr/bin/pyvrrp ") for c in commands), commands
    # The package ships no node.toml: the service does not start until one is written.
    assert unit["Unit"]["ConditionPathExists"] == "/etc/pyvrrp/node.toml"
    assert not (tmp_path / "etc/pyvrrp/node.toml").exists()
    # A planned stop at the default 1 s interval: the handover, then notify_stop and notify,
    # each at its timeout and kill delay, then the last e-mails.
    handover = release_timeout(1_000_000) / 1_000_000 + STOP_MARGIN
    notifications = 2 * (DEFAULT_TIMEOUT + KILL_DELAY)
    assert int(unit["Service"]["TimeoutStopSec"]) >= handover + notifications + STOP_FLUSH


def test_maintainer_scripts_never_start_the_service(deb: Path, tmp_path: Path) -> None:
    run("dpkg-deb", "-e", deb, tmp_path)
    verbs = {}
    for script in ("postinst", "prerm", "postrm"):
        for line in (tmp_path / script).read_text().splitlines():
            words = line.split("#")[0].split()
            for tool in ("systemctl", "deb-systemd-invoke", "deb-systemd-helper"):
                if tool in words:
                    arguments = words[words.index(tool) + 1 :]
                    verb = next(word for word in arguments if not word.startswith("-"))
                    verbs[script, verb] = tool
    # An upgrade restarts only a running daemon; removal stops it; nothing starts or enables.
    assert set(verbs) == {
        ("postinst", "daemon-reload"),
        ("postinst", "try-restart"),
        ("prerm", "stop"),
        ("postrm", "daemon-reload"),
    }


def test_zipapp_bundles_the_runtime_dependency_tree_and_nothing_else(built: Path) -> None:
    with zipfile.ZipFile(built / "pyvrrp.pyz") as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names}
    bundled = {name.split("-")[0].lower() for name in top if name.endswith(".dist-info")}
    assert bundled >= RUNTIME, bundled
    assert not bundled & DEV_ONLY, bundled
    assert {"__main__.py", "pyvrrp", "trio", "pyroute2", "attr", "attrs"} <= top
    # Every module has its bytecode beside it (the legacy layout zipimport reads).
    sources = {n for n in names if n.endswith(".py") and n != "__main__.py"}
    assert {n[:-3] + ".pyc" for n in sources} <= set(names)
    with (built / "pyvrrp.pyz").open("rb") as f:
        assert f.readline() == b"#!/usr/bin/python3 -IS\n"


def test_copyright_names_every_bundled_distribution_and_its_licence(deb: Path) -> None:
    text = run_extract(deb, "./usr/share/doc/pyvrrp/copyright").decode()
    assert "License: MIT" in text
    for name in RUNTIME:
        assert f"\n{name} " in text, name
    assert "/usr/share/common-licenses/Apache-2.0" in text


def test_changelogs_are_gzipped_and_in_debian_format(deb: Path) -> None:
    debian = gzip.decompress(run_extract(deb, "./usr/share/doc/pyvrrp/changelog.Debian.gz"))
    assert debian.decode().startswith(f"pyvrrp ({VERSION}) unstable; urgency=medium\n")
    upstream = gzip.decompress(run_extract(deb, "./usr/share/doc/pyvrrp/changelog.gz"))
    assert upstream == (ROOT / "CHANGELOG.md").read_bytes()


def run_extract(deb: Path, member: str) -> bytes:
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True)
    out = subprocess.run(["tar", "-xO", member], input=tar.stdout, capture_output=True, check=True)
    return out.stdout


def test_lintian_finds_no_error_or_warning(deb: Path) -> None:
    if shutil.which("lintian") is None:
        pytest.skip("lintian is not installed (apt-get install lintian)")
    result = run("lintian", "--fail-on", "error,warning", "--pedantic", deb)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------ installed


def test_installed_program_runs_with_the_system_python(installed: Path) -> None:
    pyvrrp = installed / "usr/bin/pyvrrp"
    version = run(pyvrrp, "--version", env=host_env())
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"pyvrrp {__version__}"
    help_ = run(pyvrrp, "--help", env=host_env())
    assert help_.returncode == 0, help_.stderr
    assert help_.stdout.startswith("usage: pyvrrp ")


def test_installed_program_checks_the_shipped_example(installed: Path) -> None:
    example = installed / "etc/pyvrrp/node.toml.example"
    result = run(installed / "usr/bin/pyvrrp", "check", "-c", example, env=host_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{example}: OK: 1 instance (vip1)")


def test_installed_program_reports_a_bad_configuration(installed: Path, tmp_path: Path) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text('[instances.vip1]\ninterface = "eth0"\nvrid = 300\naddresses = ["10.0.0.1"]\n')
    result = run(installed / "usr/bin/pyvrrp", "check", "-c", bad, env=host_env())
    assert result.returncode == 2
    assert "instances.vip1.vrid" in result.stderr
    assert "Traceback" not in result.stderr


def test_installed_man_page_documents_every_command(installed: Path) -> None:
    page = gzip.decompress((installed / "usr/share/man/man8/pyvrrp.8.gz").read_bytes()).decode()
    commands = next(
        a for a in build_parser()._actions if a.dest == "command" and a.choices is not None
    )
    assert commands.choices is not None
    for name in commands.choices:
        # roff writes a hyphen in a name as \- (import\-keepalived), so it copies as typed.
        assert f".SS {name.replace('-', chr(92) + '-')}\n" in page, name


def test_remove_keeps_the_conffile_and_purge_leaves_nothing(deb: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    admin = root / "var/lib/dpkg"
    for sub in ("info", "updates", "triggers"):
        (admin / sub).mkdir(parents=True)
    (admin / "status").touch()
    assert dpkg(root, "--force-depends", "-i", deb).returncode == 0
    (root / "etc/pyvrrp/node.toml").write_text("# the operator's file\n")
    removed = dpkg(root, "--force-depends", "-r", "pyvrrp")
    assert removed.returncode == 0, removed.stderr
    assert not (root / "usr/bin/pyvrrp").exists()
    assert (root / "etc/pyvrrp/node.toml.example").exists()
    purged = dpkg(root, "--force-depends", "--purge", "pyvrrp")
    assert purged.returncode == 0, purged.stderr
    assert not (root / "etc/pyvrrp/node.toml.example").exists()
    # The operator's own file is not the package's to delete.
    assert (root / "etc/pyvrrp/node.toml").exists()
    assert not list((root / "usr").rglob("*pyvrrp*"))


def test_installed_daemon_becomes_master_and_stops_gracefully(
    installed: Path, tmp_path: Path
) -> None:
    """The whole runtime (trio, pyroute2, raw sockets, netlink) from the bundled zipapp: a
    single-node cluster on a veth pair in a namespace of its own."""
    if shutil.which("ip") is None:
        pytest.fail("the `ip` command (Debian package iproute2) is missing")
    ns = f"pyvrrp-deb-{uuid.uuid4().hex[:8]}"
    sock = tmp_path / "pyvrrp.sock"
    config = tmp_path / "node.toml"
    config.write_text(
        f'[global]\ncontrol_socket = "{sock}"\nstate_dir = "{tmp_path / "state"}"\n\n'
        '[instances.vip1]\ninterface = "v0"\nvrid = 51\npriority = 100\n'
        'advert_interval = 0.1\naddresses = ["10.9.0.10/24"]\n'
    )
    pyvrrp = installed / "usr/bin/pyvrrp"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    process = None
    try:
        for command in (
            "link add v0 type veth peer name v1",
            "addr add 10.9.0.1/24 dev v0",
            "link set v0 up",
            "link set v1 up",
        ):
            subprocess.run(["ip", "-n", ns, *command.split()], check=True)
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(pyvrrp), "-c", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env=host_env(),
        )
        deadline = time.monotonic() + 20
        state = ""
        while time.monotonic() < deadline and "MASTER" not in state:
            time.sleep(0.2)
            status = run(pyvrrp, "status", "-s", sock, env=host_env())
            state = status.stdout
        assert "vip1  MASTER" in state, state
        addresses = run("ip", "-n", ns, "-o", "addr", "show", "dev", "v0").stdout
        assert "10.9.0.10/24" in addresses
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
        addresses = run("ip", "-n", ns, "-o", "addr", "show", "dev", "v0").stdout
        assert "10.9.0.10/24" not in addresses
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        subprocess.run(["ip", "netns", "delete", ns], check=False)
