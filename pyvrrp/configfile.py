"""node.toml on disk: reading it, and the checks that depend on the host.

:func:`load` turns a file into a :class:`~pyvrrp.core.config.NodeConfig`; everything that can
go wrong (a missing or unreadable file, bad UTF-8, bad TOML, an invalid configuration) is a
:class:`~pyvrrp.core.config.ConfigError`. Problems with the file itself are
:class:`ConfigFileError`, whose single problem has the file name as its path.

:func:`check_environment` finds what the pure model cannot know: whether the programs and
users the configuration names exist on this host. ``pyvrrp check`` reports those problems and
the daemon logs them at startup.

Routing table names (``table = "vswitch"``) are resolved here, from the rt_tables files as
``ip`` reads them, because the core reads no file: :func:`table_names`.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import stat
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from pyvrrp.core.config import (
    ConfigError,
    InstanceConfig,
    NodeConfig,
    Problem,
    key_path,
    parse_node,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_PROBLEMS_SHOWN",
    "ConfigError",
    "ConfigFileError",
    "check_environment",
    "insecure_reason",
    "load",
    "problem_lines",
    "table_names",
    "warning_lines",
]

# A node.toml is a few kB; anything this big is the wrong file, and parsing it would list
# problems by the hundred thousand (a 10 MB file once gave 582,542 lines and 834 MB).
MAX_CONFIG_BYTES = 1024 * 1024
# What a reader can act on; the rest is counted.
MAX_PROBLEMS_SHOWN = 100
# Where iproute2 keeps rt_tables: /etc first; Debian 12's iproute2 also ships its defaults
# under /usr/share. PYVRRP_IPROUTE2_DIRS (colon-separated) replaces them (tests, odd hosts).
IPROUTE2_DIRS = ("/etc/iproute2", "/usr/share/iproute2")
IPROUTE2_DIRS_ENV = "PYVRRP_IPROUTE2_DIRS"


_KEEPALIVED_CONF = re.compile(r"^\s*(vrrp_instance|vrrp_script|global_defs)\s", re.MULTILINE)


class ConfigFileError(ConfigError):
    """The file could not be read as TOML at all; its one problem's path is the file name."""


def problem_lines(
    file: str | os.PathLike[str],
    problems: ConfigError | Sequence[Problem],
    *,
    limit: int = MAX_PROBLEMS_SHOWN,
) -> list[str]:
    """One line per problem, each starting with the file name (once); after ``limit`` of
    them, one line saying how many more there are."""
    if isinstance(problems, ConfigFileError):
        return [str(problem) for problem in problems.problems]
    items = problems.problems if isinstance(problems, ConfigError) else problems
    lines = [f"{os.fspath(file)}: {problem}" for problem in items[:limit]]
    if len(items) > limit:
        more = len(items) - limit
        lines.append(f"{os.fspath(file)}: and {more} more problem{'s' if more > 1 else ''}")
    return lines


def warning_lines(file: str | os.PathLike[str], config: NodeConfig) -> list[str]:
    """One line per warning of a valid configuration: 'FILE: key.path: warning: message'."""
    return [
        f"{os.fspath(file)}: {warning.path}: warning: {warning.message}"
        for warning in config.warnings
    ]


def _file_problem(name: str, message: str) -> ConfigFileError:
    return ConfigFileError([Problem(name, message)])


def load(path: str | os.PathLike[str], *, iproute2_dirs: Sequence[str] | None = None) -> NodeConfig:
    """Read and validate a node.toml. Raises ConfigError (ConfigFileError for file problems).

    Routing table names resolve through the rt_tables files under ``iproute2_dirs`` (default:
    $PYVRRP_IPROUTE2_DIRS, else /etc/iproute2 then /usr/share/iproute2).
    """
    name = os.fspath(path)
    try:
        with Path(path).open("rb") as file:
            # Never more than the limit in memory, whatever the file (or device) is.
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise _file_problem(name, "no such file") from None
    except IsADirectoryError:
        raise _file_problem(name, "is a directory, not a configuration file") from None
    except PermissionError:
        raise _file_problem(
            name, "permission denied: cannot read it (check its mode and owner)"
        ) from None
    except OSError as error:
        raise _file_problem(name, f"cannot read it: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise _file_problem(
            name,
            f"is larger than {MAX_CONFIG_BYTES // 1024} KiB ({MAX_CONFIG_BYTES} bytes), the most "
            "a node.toml may be (one is a few kB); is this the right file?",
        )
    try:
        # utf-8-sig: tolerate the byte order mark some editors write.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise _file_problem(
            name,
            f"is not UTF-8 text: invalid byte 0x{raw[error.start]:02x} on line {line}; "
            "TOML files must be UTF-8",
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # tomllib's message ends with "(at line L, column C)".
        hint = ""
        if _KEEPALIVED_CONF.search(text):
            hint = (
                "; this looks like a keepalived.conf: pyvrrp reads TOML; convert it with "
                f"`pyvrrp import-keepalived {name} -o node.toml` (docs/import-keepalived.md)"
            )
        raise _file_problem(name, f"invalid TOML: {error}{hint}") from None
    except RecursionError:
        raise _file_problem(name, "invalid TOML: arrays or tables nested too deeply") from None
    return parse_node(data, table_names=table_names(iproute2_dirs))


def table_names(dirs: Sequence[str] | None = None) -> dict[str, int]:
    """Routing table names as ``ip`` reads them (iproute2 lib/rt_names.c): ``rt_tables`` from
    the first of ``dirs`` that has one, then every ``rt_tables.d/*.conf``; the first
    definition of a name wins. Missing or unreadable files are skipped, as ip skips them."""
    if dirs is None:
        from_env = os.environ.get(IPROUTE2_DIRS_ENV)
        dirs = [d for d in from_env.split(":") if d] if from_env is not None else IPROUTE2_DIRS
    files: list[Path] = []
    main = next((Path(d, "rt_tables") for d in dirs if Path(d, "rt_tables").is_file()), None)
    if main is not None:
        files.append(main)
    for directory in dirs:
        try:
            files.extend(sorted(Path(directory, "rt_tables.d").glob("*.conf")))
        except OSError:
            continue
    names: dict[str, int] = {}
    for file in files:
        for name, number in _rt_tables_entries(file):
            names.setdefault(name, number)
    return names


def _rt_tables_entries(file: Path) -> Iterable[tuple[str, int]]:
    """'ID NAME' lines (ID decimal or 0x hex; '#' comments). ip stops reading a file at its
    first malformed line; so does this."""
    try:
        text = file.read_text("utf-8", errors="replace")
    except OSError:
        return []
    entries: list[tuple[str, int]] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue  # whatever follows ID and NAME on a line is ignored, comments included
        if len(fields) < 2:
            break
        number_text, name = fields[0], fields[1]
        try:
            number = int(number_text, 16) if number_text[:2].lower() == "0x" else int(number_text)
        except ValueError:
            break
        if 0 <= number <= 2**32 - 1:
            entries.append((name, number))
    return entries


def _program_problem(program: str) -> str | None:
    """Why ``program`` (argv[0]) cannot be run, or None when it can."""
    if "/" not in program:
        if shutil.which(program) is None:
            search = os.environ.get("PATH", os.defpath)
            return (
                f"program {program!r} is not found in PATH ({search}); install it or write "
                "its absolute path"
            )
        return None
    if not os.path.exists(program):
        return f"program {program} does not exist"
    if os.path.isdir(program):
        return f"program {program} is a directory"
    if not os.access(program, os.X_OK):
        return f"program {program} is not executable (chmod +x {program})"
    return None


def _user_problem(user: str) -> str | None:
    if user.isdigit():
        return None  # a numeric uid needs no passwd entry
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"user {user!r} does not exist on this host; create it or change user"
    return None


def _group_problem(group: str, key: str) -> str | None:
    if group.isdigit():
        return None
    try:
        grp.getgrnam(group)
    except KeyError:
        return f"group {group!r} does not exist on this host; create it or change {key}"
    return None


def _runs_as_root(user: str | None) -> bool:
    """Whether a program run as ``user`` (None: as the daemon, which runs as root) is root."""
    if user is None:
        return True
    if user.isdigit():
        return int(user) == 0
    try:
        return pwd.getpwnam(user).pw_uid == 0
    except KeyError:
        return False  # reported as a missing user


def _program_path(command: tuple[str, ...] | str) -> str | None:
    """The file a command runs, when it can be known: argv[0] (searched in PATH when bare),
    or the first word of a shell string when that is an absolute path."""
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError:
            return None
        return words[0] if words and words[0].startswith("/") else None
    program = command[0]
    return program if "/" in program else shutil.which(program)


def _chain(path: str) -> list[str]:
    """``path`` and every directory above it, for the path as written and as resolved
    (a symlink's own directory matters as much as its target's)."""
    chain: list[str] = []
    for start in dict.fromkeys([os.path.abspath(path), os.path.realpath(path)]):
        current = start
        while True:
            if current not in chain:
                chain.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
    return chain


def _owner(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"group {grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def insecure_reason(program: str) -> str | None:
    """Why a non-root user could change what ``program`` is, or None when only root can.

    keepalived's rule (enable_script_security): the file and every directory above it
    must be owned by root, and none writable by a group other than root's or by everyone;
    a directory with the sticky bit (/tmp) may be writable by everyone, as no one can replace
    another user's file in it. A symbolic link is checked where it is and where it leads.
    """
    for path in _chain(program):
        try:
            info = os.lstat(path)
        except OSError:
            continue  # a missing program is reported as such
        if stat.S_ISLNK(info.st_mode):
            continue  # only its directory can re-point it; the target is in the chain too
        if info.st_uid != 0:
            return f"{path} is owned by {_owner(info.st_uid)}"
        if stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX:
            continue
        if info.st_mode & stat.S_IWOTH:
            return f"{path} is writable by every user"
        if info.st_gid != 0 and info.st_mode & stat.S_IWGRP:
            return f"{path} is writable by {_group(info.st_gid)}"
    return None


def _security_problem(program: str, user_key: str) -> str | None:
    reason = insecure_reason(program)
    if reason is None:
        return None
    return (
        f"{program} runs as root, but {reason}: that user could make it run anything as "
        f"root; make it root's alone (chown root:root, chmod go-w), run it as another user "
        f"({user_key}), or allow it with [global] script_security = false"
    )


def _instance_commands(instance: InstanceConfig) -> list[tuple[str, tuple[str, ...] | str]]:
    commands = [
        ("notify_master", instance.notify_master),
        ("notify_backup", instance.notify_backup),
        ("notify_fault", instance.notify_fault),
        ("notify_stop", instance.notify_stop),
        ("notify", instance.notify),
    ]
    return [(key, command) for key, command in commands if command is not None]


def check_environment(config: NodeConfig) -> list[Problem]:
    """Problems that depend on this host's files and accounts: missing or non-executable
    programs of scripts and notifications, users and groups that do not exist, and programs
    run as root that another user could change (unless ``[global] script_security`` is
    false).

    A shell string's program is only known when its first word is an absolute path; a
    program given by name is looked up in PATH.
    """
    problems: list[Problem] = []
    global_ = config.global_

    def check_command(
        path: str, command: tuple[str, ...] | str, user: str | None, user_key: str
    ) -> None:
        where = f"{path}[0]" if isinstance(command, tuple) else path
        if isinstance(command, tuple):
            message = _program_problem(command[0])
            if message is not None:
                problems.append(Problem(where, message))
                return
        program = _program_path(command)
        if program is None or not global_.script_security or not _runs_as_root(user):
            return
        message = _security_problem(program, user_key)
        if message is not None:
            problems.append(Problem(where, message))

    def check_account(path: str, name: str | None, kind: str) -> None:
        if name is None:
            return
        key = path.rsplit(".", 1)[-1]
        message = _user_problem(name) if kind == "user" else _group_problem(name, key)
        if message is not None:
            problems.append(Problem(path, message))

    check_account(key_path("global", "script_user"), global_.script_user, "user")
    check_account(key_path("global", "script_group"), global_.script_group, "group")
    for name, script in config.scripts.items():
        path = key_path("scripts", name)
        user, _ = global_.run_as(script.user, script.group)
        check_command(key_path(path, "command"), script.command, user, 'user = "nobody"')
        check_account(key_path(path, "user"), script.user, "user")
        check_account(key_path(path, "group"), script.group, "group")
    for name, instance in config.instances.items():
        path = key_path("instances", name)
        user, _ = global_.run_as(instance.notify_user, instance.notify_group)
        for key, command in _instance_commands(instance):
            check_command(key_path(path, key), command, user, 'notify_user = "nobody"')
        check_account(key_path(path, "notify_user"), instance.notify_user, "user")
        check_account(key_path(path, "notify_group"), instance.notify_group, "group")
    return problems
