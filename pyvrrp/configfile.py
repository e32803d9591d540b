"""node.toml on disk: reading it, and the checks that depend on the host.

:func:`load` turns a file into a :class:`~pyvrrp.core.config.NodeConfig`; everything that can
go wrong (a missing or unreadable file, bad UTF-8, bad TOML, an invalid configuration) is a
:class:`~pyvrrp.core.config.ConfigError`. Problems with the file itself are
:class:`ConfigFileError`, whose single problem has the file name as its path.

:func:`check_environment` finds what the pure model cannot know: whether the programs and
users the configuration names exist on this host. ``pyvrrp check`` reports those problems and
the daemon logs them at startup.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tomllib
from pathlib import Path

from pyvrrp.core.config import (
    ConfigError,
    InstanceConfig,
    NodeConfig,
    Problem,
    key_path,
    parse_node,
)

__all__ = ["ConfigError", "ConfigFileError", "check_environment", "load", "problem_lines"]


_KEEPALIVED_CONF = re.compile(r"^\s*(vrrp_instance|vrrp_script|global_defs)\s", re.MULTILINE)


class ConfigFileError(ConfigError):
    """The file could not be read as TOML at all; its one problem's path is the file name."""


def problem_lines(file: str | os.PathLike[str], problems: ConfigError | list[Problem]) -> list[str]:
    """One line per problem, each starting with the file name (once)."""
    if isinstance(problems, ConfigFileError):
        return [str(problem) for problem in problems.problems]
    items = problems.problems if isinstance(problems, ConfigError) else problems
    return [f"{os.fspath(file)}: {problem}" for problem in items]


def _file_problem(name: str, message: str) -> ConfigFileError:
    return ConfigFileError([Problem(name, message)])


def load(path: str | os.PathLike[str]) -> NodeConfig:
    """Read and validate a node.toml. Raises ConfigError (ConfigFileError for file problems)."""
    name = os.fspath(path)
    try:
        raw = Path(path).read_bytes()
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
                "; this looks like a keepalived.conf: pyvrrp reads TOML (see "
                'docs/configuration.md, "Coming from keepalived")'
            )
        raise _file_problem(name, f"invalid TOML: {error}{hint}") from None
    except RecursionError:
        raise _file_problem(name, "invalid TOML: arrays or tables nested too deeply") from None
    return parse_node(data)


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
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"user {user!r} does not exist on this host; create it or change user"
    return None


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
    """Problems that depend on this host: missing or non-executable programs of scripts and
    notifications given as argv arrays, and users that do not exist.

    Shell-string commands are not checked: only the shell knows what they run.
    """
    problems: list[Problem] = []

    def check_command(path: str, command: tuple[str, ...] | str) -> None:
        if isinstance(command, tuple):
            message = _program_problem(command[0])
            if message is not None:
                problems.append(Problem(f"{path}[0]", message))

    def check_user(path: str, user: str | None) -> None:
        if user is not None:
            message = _user_problem(user)
            if message is not None:
                problems.append(Problem(path, message))

    for name, script in config.scripts.items():
        path = key_path("scripts", name)
        check_command(key_path(path, "command"), script.command)
        check_user(key_path(path, "user"), script.user)
    for name, instance in config.instances.items():
        path = key_path("instances", name)
        for key, command in _instance_commands(instance):
            check_command(key_path(path, key), command)
        check_user(key_path(path, "notify_user"), instance.notify_user)
    return problems
