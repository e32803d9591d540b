"""The ``pyvrrp`` command line: argument parsing and dispatch only.

``pyvrrp -c node.toml`` (no subcommand) runs the daemon; subcommands are registered in
:func:`build_parser` and dispatched through ``_COMMANDS``. To add one (``status``,
``maintenance``, ``reload``, ``cleanup``), add an ``_add_NAME_parser`` function, call it in
:func:`build_parser`, and map the name to a ``_cmd_NAME(args) -> int`` handler.

Exit codes follow design.md: 0 success, 1 failure, 2 bad configuration or bad usage,
3 an environment problem (for the daemon). A user error is never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from pyvrrp import __version__
from pyvrrp.configfile import check_environment, load, problem_lines
from pyvrrp.core.config import DEFAULT_CONTROL_SOCKET, ConfigError, summary

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

_CONFIG_HELP = "the node configuration file (node.toml)"
_SOCKET_HELP = (
    "the daemon's control socket, for status, maintenance and reload "
    f"(default: control_socket from -c FILE, else {DEFAULT_CONTROL_SOCKET})"
)


def _add_config_option(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    # SUPPRESS in subcommands so that `pyvrrp -c F check` and `pyvrrp check -c F` both work:
    # a subparser's default would otherwise overwrite the value given before the subcommand.
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=_CONFIG_HELP,
        default=argparse.SUPPRESS if in_subcommand else None,
    )


def _add_socket_option(parser: argparse.ArgumentParser, *, in_subcommand: bool) -> None:
    parser.add_argument(
        "-s",
        "--socket",
        metavar="PATH",
        help=_SOCKET_HELP,
        default=argparse.SUPPRESS if in_subcommand else None,
    )


def _add_check_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help="validate a configuration file and exit",
        description=(
            "Validate FILE: print every problem as 'FILE: key.path: message' and exit 2, or "
            "print a one-line summary and exit 0. Also checks that the programs and users "
            "it names exist on this host."
        ),
    )
    _add_config_option(check, in_subcommand=True)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; subcommands store their name in ``args.command``."""
    parser = argparse.ArgumentParser(
        prog="pyvrrp",
        description=(
            "A VRRPv3 router (RFC 9568). With no command, run the daemon in the foreground "
            "with the configuration given by -c."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pyvrrp {__version__}")
    _add_config_option(parser, in_subcommand=False)
    _add_socket_option(parser, in_subcommand=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_check_parser(commands)
    return parser


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        print(line, file=sys.stderr)


def _cmd_check(args: argparse.Namespace) -> int:
    file: str = args.config
    try:
        config = load(file)
    except ConfigError as error:
        _print_lines(problem_lines(file, error))
        return EXIT_CONFIG
    problems = check_environment(config)
    if problems:
        _print_lines(problem_lines(file, problems))
        return EXIT_CONFIG
    print(f"{file}: OK: {summary(config)}")
    return EXIT_OK


def _run_daemon(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground (``pyvrrp -c node.toml``)."""
    from pyvrrp.runtime.daemon import run_daemon  # trio and pyroute2 only when needed

    return run_daemon(args.config)


# Subcommands that need -c FILE.
_NEEDS_CONFIG = frozenset({"check"})
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"check": _cmd_check}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyvrrp`` and ``python -m pyvrrp``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None and args.config is None:
            parser.error("the daemon needs -c FILE (or give a COMMAND)")
        if args.command in _NEEDS_CONFIG and args.config is None:
            parser.error(f"{args.command} needs -c FILE")
    except SystemExit as exit_:
        # argparse exits 2 after printing usage (0 for --help); return it instead so that
        # main() can be called from tests and embedding code.
        code = exit_.code
        return code if isinstance(code, int) else EXIT_CONFIG if code else EXIT_OK
    if args.command is None:
        return _run_daemon(args)
    return _COMMANDS[args.command](args)
