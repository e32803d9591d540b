"""Build pyvrrp's single-file zipapp and its Debian package, with dpkg-deb alone.

``python deb/build_deb.py [--out DIR]`` (``make deb``) writes ``DIR/pyvrrp.pyz`` and
``DIR/pyvrrp_VERSION_all.deb``. The zipapp holds pyvrrp and every distribution it needs at
run time, found by walking the installed dependency tree from pyvrrp's requirements (markers
evaluated for this interpreter), each checked to be pure Python. Modules are stored with
their bytecode for this interpreter's Python version (unchecked hash-based .pyc files, which
zipimport uses as they are), so a start imports nothing from source on the same version and
still works, from source, on a later one. The package installs it as ``/usr/bin/pyvrrp``, run
by the system ``/usr/bin/python3``. docs/packaging.md explains the choice and the layout.

Nothing is downloaded: the build uses what is installed in the interpreter running it (the
project's .venv), and installing the package needs no network either.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import io
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath

import manpage
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pyvrrp._version import __version__

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PACKAGE = "pyvrrp"
# The Debian revision of a package built from this tree (policy §5.6.12).
DEBIAN_REVISION = "1"
INTERPRETER = "/usr/bin/python3"
# -I: ignore PYTHON* variables and the user's site-packages; -S: no site-packages at all, so
# that the bundled dependencies are the only ones (a missing one fails instead of silently
# using whatever the host has).
SHEBANG = f"#!{INTERPRETER} -IS\n"
MIN_PYTHON = "3.11"
MAINTAINER = os.environ.get("DEB_MAINTAINER", "pyvrrp developers <dev@pyvrrp.invalid>")
HOMEPAGE = "https://github.com/pyvrrp/pyvrrp"
# Files of an installed distribution's .dist-info that are worth shipping (metadata for
# importlib.metadata, licences); RECORD and friends describe the venv, not the zipapp.
DIST_INFO_KEEP = {"METADATA", "WHEEL", "top_level.txt", "entry_points.txt"}
# Tags that do not apply to a package built outside Debian's archive.
LINTIAN_OVERRIDES = """\
# Not uploaded to Debian: there is no ITP bug to close.
pyvrrp: initial-upload-closes-no-bugs
"""
ZIP_MAIN = "from pyvrrp.cli import main\n\nraise SystemExit(main())\n"


class BuildError(Exception):
    """The package cannot be built as asked; the message says why and what to do."""


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time, else now: every timestamp in the
    zipapp and the package, so that two builds of one commit are identical."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        return int(datetime.datetime.now(datetime.UTC).timestamp())


# ---------------------------------------------------------------------------- dependencies


def runtime_distributions(root: str = PACKAGE) -> list[metadata.Distribution]:
    """The installed distributions ``root`` needs at run time, ``root`` excluded: its
    requirements and theirs, without extras, markers evaluated for this interpreter."""
    found: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise BuildError(
                f"{name} is required by pyvrrp but not installed here: run `make install`"
            ) from None
        found[name] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            # evaluate(): this interpreter's environment, with no extra requested.
            if requirement.marker is None or requirement.marker.evaluate():
                todo.append(requirement.name)
    del found[canonicalize_name(root)]
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def _dist_files(dist: metadata.Distribution) -> Iterator[tuple[PurePosixPath, Path]]:
    """(path in the archive, file on disk) of what a dependency installed in site-packages."""
    name = dist.metadata["Name"]
    wheel = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: true" not in wheel:
        raise BuildError(f"{name} is not a pure-Python distribution: it cannot be bundled")
    for file in dist.files or []:
        path = PurePosixPath(str(file))
        if path.parts[0] == ".." or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue  # scripts in bin/, and bytecode of the venv's own
        if path.suffix in {".so", ".pyd"}:
            raise BuildError(f"{name} contains a compiled extension ({path}): not bundled")
        keep = path.name in DIST_INFO_KEEP or "licen" in str(path).lower()
        if path.parts[0].endswith(".dist-info") and not keep:
            continue
        yield path, Path(str(dist.locate_file(file)))


def _own_files() -> Iterator[tuple[PurePosixPath, Path]]:
    """pyvrrp's own modules, from this checkout (it is installed in editable mode)."""
    for path in sorted((ROOT / PACKAGE).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield PurePosixPath(path.relative_to(ROOT).as_posix()), path


# ---------------------------------------------------------------------------- zipapp


def _bytecode(source: Path, shown_as: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "module.pyc"
        py_compile.compile(
            str(source),
            cfile=str(target),
            dfile=shown_as,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
        return target.read_bytes()


def build_zipapp(output: Path, *, installed_as: str = f"/usr/bin/{PACKAGE}") -> list[str]:
    """Write the zipapp to ``output``; returns the bundled distributions as "name version".

    ``installed_as`` is the path tracebacks show for a module (``/usr/bin/pyvrrp/trio/...``,
    as zipimport names modules loaded from source).
    """
    epoch = source_date_epoch()
    stamp = datetime.datetime.fromtimestamp(max(epoch, 315532800), datetime.UTC)
    date_time = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    dists = runtime_distributions()
    files: dict[PurePosixPath, Path] = dict(_own_files())
    for dist in dists:
        for path, disk in _dist_files(dist):
            if path in files:
                raise BuildError(f"{path} is installed by two distributions")
            files[path] = disk

    def add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        archive.writestr(info, data)

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        add(archive, "__main__.py", ZIP_MAIN.encode())
        for path in sorted(files):
            add(archive, str(path), files[path].read_bytes())
            if path.suffix == ".py":
                # Legacy layout (module.pyc beside module.py): the one zipimport looks for.
                shown = f"{installed_as}/{path}"
                pyc = _bytecode(files[path], shown)
                add(archive, str(path.with_suffix(".pyc")), pyc)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(SHEBANG.encode() + buffer.getvalue())
    output.chmod(0o755)
    os.utime(output, (epoch, epoch))
    return [f"{d.metadata['Name']} {d.version}" for d in dists]


# ---------------------------------------------------------------------------- debian files


def deb_version() -> str:
    """The package's version: pyvrrp's, with the Debian revision."""
    return f"{__version__}-{DEBIAN_REVISION}"


def control(installed_size_kib: int) -> str:
    """DEBIAN/control (policy §5.3)."""
    return textwrap.dedent(f"""\
        Package: {PACKAGE}
        Version: {deb_version()}
        Architecture: all
        Maintainer: {MAINTAINER}
        Installed-Size: {installed_size_kib}
        Depends: python3 (>= {MIN_PYTHON})
        Suggests: curl
        Section: net
        Priority: optional
        Homepage: {HOMEPAGE}
        Description: VRRPv3/VRRPv2 router in Python, a drop-in for keepalived's VRRP
         pyvrrp runs VRRPv3 (RFC 9568) and VRRPv2 (RFC 3768) virtual routers on
         Linux, both at once while migrating, speaking with keepalived peers
         over multicast or unicast: IPv4 and IPv6 virtual addresses, routes
         and rules, gratuitous ARP and unsolicited neighbour advertisements,
         health-check scripts and tracked interfaces, notify scripts, graceful
         handovers, validated reloads that never flap a master,
         a status command and Prometheus metrics.
         .
         This package is a single-file program run by the system python3, with
         its pure-Python dependencies (trio, pyroute2, attrs and theirs) bundled.
        """)


def copyright_file(bundled: list[metadata.Distribution]) -> str:
    """usr/share/doc/pyvrrp/copyright: pyvrrp's licence, then every bundled distribution's
    name, version, licence and licence texts, from its own metadata (policy §12.5)."""
    parts = [
        "pyvrrp, a VRRPv3 router for Linux",
        f"Homepage: {HOMEPAGE}",
        "",
        "Copyright: pyvrrp developers",
        "License: MIT",
        "",
        (ROOT / "LICENSE").read_text().strip(),
        "",
        "/usr/bin/pyvrrp bundles the following Python distributions, each under its own",
        "licence. Apache-2.0 and GPL-2 are in /usr/share/common-licenses/.",
    ]
    for dist in bundled:
        meta = dist.metadata
        licence = meta["License-Expression"] or meta["License"] or "see below"
        parts += ["", "-" * 72, "", f"{meta['Name']} {dist.version}", f"License: {licence}"]
        for file in dist.files or []:
            path = PurePosixPath(str(file))
            if path.parts[0].endswith(".dist-info") and "licen" in str(path).lower():
                text = Path(str(dist.locate_file(file))).read_text(errors="replace").strip()
                parts += ["", f"{path.name}:", "", _common_licence(text) or text]
    return "\n".join(parts) + "\n"


def _common_licence(text: str) -> str | None:
    """A reference to /usr/share/common-licenses for a licence Debian ships there (policy
    §12.5 wants the reference, not a copy), else None."""
    head = " ".join(text[:600].split())
    if "Apache License" in head and "Version 2.0" in head:
        return "The Apache License, Version 2.0: /usr/share/common-licenses/Apache-2.0"
    if "GNU GENERAL PUBLIC LICENSE" in head and "Version 2" in head:
        return "The GNU General Public License, version 2: /usr/share/common-licenses/GPL-2"
    return None


def debian_changelog(epoch: int) -> str:
    """changelog.Debian: one entry for this build (policy §4.4); the project's own changelog
    is installed beside it as changelog.gz."""
    when = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime(
        "%a, %d %b %Y %H:%M:%S +0000"
    )
    return textwrap.dedent(f"""\
        {PACKAGE} ({deb_version()}) unstable; urgency=medium

          * Package of pyvrrp {__version__}, built with make deb; the changes are in
            /usr/share/doc/pyvrrp/changelog.gz.

         -- {MAINTAINER}  {when}
        """)


def _gzip(data: bytes, epoch: int) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=epoch, filename="") as f:
        f.write(data)
    return out.getvalue()


def build_deb(out_dir: Path) -> Path:
    """Build the zipapp and the .deb in ``out_dir``; returns the .deb's path."""
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise BuildError("dpkg-deb not found: install the Debian package dpkg")
    epoch = source_date_epoch()
    out_dir.mkdir(parents=True, exist_ok=True)
    pyz = out_dir / f"{PACKAGE}.pyz"
    build_zipapp(pyz)
    bundled = runtime_distributions()
    with tempfile.TemporaryDirectory(prefix="pyvrrp-deb-") as tmp:
        stage = Path(tmp) / "root"

        def put(relative: str, data: bytes, mode: int = 0o644) -> None:
            path = stage / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            path.chmod(mode)

        put(f"usr/bin/{PACKAGE}", pyz.read_bytes(), 0o755)
        # Debian 12 keeps units in /lib (usrmerge moves them to /usr/lib in Debian 13).
        put("lib/systemd/system/pyvrrp.service", (ROOT / "contrib/pyvrrp.service").read_bytes())
        put("etc/pyvrrp/node.toml.example", (HERE / "node.toml.example").read_bytes())
        page = manpage.render(date=datetime.datetime.fromtimestamp(epoch, datetime.UTC).date())
        put("usr/share/man/man8/pyvrrp.8.gz", _gzip(page.encode(), epoch))
        put(f"usr/share/doc/{PACKAGE}/copyright", copyright_file(bundled).encode())
        changes = (ROOT / "CHANGELOG.md").read_bytes()
        put(f"usr/share/doc/{PACKAGE}/changelog.gz", _gzip(changes, epoch))
        put(
            f"usr/share/doc/{PACKAGE}/changelog.Debian.gz",
            _gzip(debian_changelog(epoch).encode(), epoch),
        )
        put(f"usr/share/doc/{PACKAGE}/README.md", (ROOT / "README.md").read_bytes())
        put(f"usr/share/lintian/overrides/{PACKAGE}", LINTIAN_OVERRIDES.encode())
        sums = []
        size = 0
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            data = path.read_bytes()
            size += (len(data) + 1023) // 1024
            sums.append(f"{hashlib.md5(data).hexdigest()}  {path.relative_to(stage)}\n")
        size += sum(1 for p in stage.rglob("*") if p.is_dir())  # one KiB per directory
        put("DEBIAN/control", control(size).encode())
        put("DEBIAN/conffiles", b"/etc/pyvrrp/node.toml.example\n")
        put("DEBIAN/md5sums", "".join(sums).encode())
        for script in ("postinst", "prerm", "postrm"):
            put(f"DEBIAN/{script}", (HERE / script).read_bytes(), 0o755)
        for path in [stage, *stage.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
            os.utime(path, (epoch, epoch), follow_symlinks=False)
        deb = out_dir / f"{PACKAGE}_{deb_version()}_all.deb"
        subprocess.run(
            [dpkg_deb, "--root-owner-group", "-Zxz", "--build", str(stage), str(deb)],
            check=True,
            capture_output=True,
            env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
        )
    return deb


def main(argv: list[str] | None = None) -> int:
    """``make deb``: build, print what was built; exit 1 with the reason on failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="output directory (dist/)")
    args = parser.parse_args(argv)
    try:
        deb = build_deb(Path(args.out))
    except BuildError as error:
        print(f"make deb: {error}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"make deb: {error.cmd[0]} failed: {error.stderr.decode().strip()}", file=sys.stderr)
        return 1
    bundled = ", ".join(f"{d.metadata['Name']} {d.version}" for d in runtime_distributions())
    print(f"built {deb.parent / (PACKAGE + '.pyz')} and {deb}")
    print(f"bundled: {bundled}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
