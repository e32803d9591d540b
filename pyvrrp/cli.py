"""The ``pyvrrp`` command line: argument parsing and dispatch only.

``pyvrrp -c node.toml`` (no subcommand) runs the daemon; subcommands are registered in
:func:`build_parser` and dispatched through ``_COMMANDS``. Each command has an
``_add_NAME_parser`` function, called in :func:`build_parser`, and a ``_cmd_NAME(args) ->
int`` handler mapped to its name; a new command follows the same pattern. Commands that talk
to the running daemon send their request with :func:`_control` (see
:mod:`pyvrrp.runtime.control`); what they print is made in :mod:`pyvrrp.status_format`.

Exit codes are tabled in docs/operations.md ("Exit codes"): 0 success, 1 failure, 2 bad
configuration or bad usage, 3 an environment problem (the daemon and ``cleanup``). A user
error is never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyvrrp._version import __version__
from pyvrrp.configfile import (
    ConfigFileError,
    load,
    problem_lines,
    warning_lines,
)
from pyvrrp.core.config import DEFAULT_CONTROL_SOCKET, ConfigError, Problem, summary
from pyvrrp.runtime.logs import LOG_FORMATS, LOG_LEVELS  # stdlib only: no trio for `check`

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

_CONFIG_HELP = "the node configuration file (node.toml)"
_SOCKET_HELP = (
    "the daemon's control socket, for status, maintenance, reload and events "
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
            "Validate FILE: print each problem as 'FILE: key.path: message' (the first 100, "
            "then how many more) and exit 2, or print a one-line summary and exit 0, with "
            "any warnings ('FILE: key.path: warning: message') on stderr. A file without "
            "instances, or over 1 MiB, is a problem. Without --host the check does not "
            "depend on the machine it runs on."
        ),
    )
    _add_config_option(check, in_subcommand=True)
    check.add_argument(
        "--host",
        action="store_true",
        help=(
            "also check FILE against this machine: interfaces and tracked interfaces exist, "
            "unicast_source is an address of its interface, scripts and notify programs "
            "exist and are executable, their users and groups exist, and a program run as "
            "root cannot be changed by another user (unless [global] script_security = false)"
        ),
    )


def _add_status_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = commands.add_parser(
        "status",
        help="show the state of every instance",
        description=(
            "Ask the running daemon for the state of each instance: how long it has been in "
            "it, its effective priority and why, the master, addresses, trackers, counters, "
            "scripts. Exits 1 if the daemon is not running."
        ),
    )
    _add_config_option(status, in_subcommand=True)
    _add_socket_option(status, in_subcommand=True)
    status.add_argument(
        "--json", action="store_true", help="print the daemon's answer as JSON (for scripts)"
    )


def _add_maintenance_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    maintenance = commands.add_parser(
        "maintenance",
        help="take instances out of service, or back in",
        description=(
            "on: put the instances (default: every instance) in FAULT on purpose; a master "
            "sends priority 0 and a backup takes over. off: back in service. The flag is "
            "kept in state_dir and survives restarts."
        ),
    )
    maintenance.add_argument("mode", choices=("on", "off"), help="on or off")
    maintenance.add_argument(
        "instances", nargs="*", metavar="INSTANCE", help="instance names (default: all)"
    )
    _add_config_option(maintenance, in_subcommand=True)
    _add_socket_option(maintenance, in_subcommand=True)


def _add_reload_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reload = commands.add_parser(
        "reload",
        help="make the running daemon re-read its configuration (as SIGHUP)",
        description=(
            "Ask the daemon to re-read and apply its configuration file without flapping: "
            "masters of unchanged instances keep their addresses. An invalid file is "
            "rejected (exit 2, every problem listed) and the daemon keeps running the old one."
        ),
    )
    _add_config_option(reload, in_subcommand=True)
    _add_socket_option(reload, in_subcommand=True)


def _add_events_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    events = commands.add_parser(
        "events",
        help="print transitions and priority changes as JSON lines, as they happen",
        description=(
            "Subscribe to the running daemon and print one JSON object per line for each "
            "transition and each change of effective priority, until interrupted (Ctrl-C "
            "exits 0). Exits 1 if the daemon is not running, stops, or cuts this reader off "
            "for falling behind. The fields are described in docs/operations.md."
        ),
    )
    _add_config_option(events, in_subcommand=True)
    _add_socket_option(events, in_subcommand=True)


def _add_cleanup_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cleanup = commands.add_parser(
        "cleanup",
        help="remove the addresses, routes and rules a killed daemon left behind",
        description=(
            "Remove every address, route and rule FILE can install (systemd runs it as "
            "ExecStopPost). Refuses while a daemon answers on the control socket."
        ),
    )
    _add_config_option(cleanup, in_subcommand=True)


def _add_import_keepalived_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    importer = commands.add_parser(
        "import-keepalived",
        help="convert a keepalived.conf to node.toml",
        description=(
            "Convert KEEPALIVED.CONF (with its includes) to a node.toml that behaves the same, "
            "written to stdout or to -o FILE. What cannot be expressed exactly is listed on "
            "stderr and at the top of the output. Exit 0: faithful; 1: something was dropped "
            "(-o FILE is written only with --force); 2: the file cannot be read or parsed, or "
            "holds no vrrp_instance to import."
        ),
    )
    importer.add_argument("keepalived_conf", metavar="KEEPALIVED.CONF", help="the file to convert")
    importer.add_argument("-o", "--output", metavar="FILE", help="write node.toml here")
    importer.add_argument(
        "--force", action="store_true", help="write -o FILE even when something was dropped"
    )
    importer.add_argument(
        "--vrrp-version",
        choices=("2", "3", "2+3"),
        help=(
            "the version IPv4 instances speak instead of keepalived's (2 unless vrrp_version 3): "
            '"2+3" for a node joining a keepalived cluster during a migration, 3 after it'
        ),
    )
    importer.add_argument(
        "--config-id",
        metavar="ID",
        help="keepalived's -i ID: keep the lines starting with @ID (default: skip @ lines)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; subcommands store their name in ``args.command``."""
    parser = argparse.ArgumentParser(
        prog="pyvrrp",
        description=(
            "A VRRP router: VRRPv3 (RFC 9568), VRRPv2 (RFC 3768), or both while migrating. "
            "With no command, run the daemon in the foreground with the configuration given "
            "by -c."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pyvrrp {__version__}")
    _add_config_option(parser, in_subcommand=False)
    _add_socket_option(parser, in_subcommand=False)
    parser.add_argument(
        "--log-level",
        choices=tuple(LOG_LEVELS),
        help="the daemon's log level (default: [global] log_level, else info); debug shows "
        "every decision, error only what needs a person",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="the daemon's log lines: text, or one JSON object per line with the fields of "
        "transitions (instance, vrid, from, to, reason, priority) as keys "
        "(default: [global] log_format, else text)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_check_parser(commands)
    _add_status_parser(commands)
    _add_maintenance_parser(commands)
    _add_reload_parser(commands)
    _add_events_parser(commands)
    _add_cleanup_parser(commands)
    _add_import_keepalived_parser(commands)
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
    _print_lines(warning_lines(file, config))
    problems: list[Problem] = []
    if args.host:
        import trio  # only when needed, as the runtime

        from pyvrrp.runtime.hostcheck import check_host_now
        from pyvrrp.runtime.netlink import NetlinkError

        try:
            problems = trio.run(check_host_now, config)
        except NetlinkError as error:
            print(f"{file}: cannot check the host: {error}", file=sys.stderr)
            return EXIT_FAILURE
    if problems:
        _print_lines(problem_lines(file, problems))
        return EXIT_CONFIG
    print(f"{file}: OK: {summary(config)}")
    return EXIT_OK


def _control_socket_of(file: str) -> str | None:
    """The control socket named by a configuration file; None after printing why not.

    A file with problems still names its socket: the daemon may be running an older, valid
    version of it, and that is exactly when an operator wants ``pyvrrp status``.
    """
    try:
        return load(file).global_.control_socket
    except ConfigFileError as error:
        _print_lines(problem_lines(file, error))
        return None
    except ConfigError:
        pass
    try:
        global_ = tomllib.loads(Path(file).read_text("utf-8-sig")).get("global")
    except (OSError, ValueError):  # changed under our feet: load() said it was TOML
        print(f"{file}: cannot read it again; give -s PATH", file=sys.stderr)
        return None
    path = global_.get("control_socket") if isinstance(global_, dict) else None
    if path is None:
        path = DEFAULT_CONTROL_SOCKET
    if not isinstance(path, str) or not path.startswith("/"):
        print(f"{file}: global.control_socket: not an absolute path; give -s PATH", file=sys.stderr)
        return None
    print(
        f"{file}: has problems (pyvrrp check -c {file} lists them); using control socket {path}",
        file=sys.stderr,
    )
    return path


def _socket_path(args: argparse.Namespace) -> str | None:
    """The control socket from -s, -c or the default; None after printing why not."""
    path: str | None = args.socket
    if path is None:
        path = DEFAULT_CONTROL_SOCKET if args.config is None else _control_socket_of(args.config)
    return path


def _control(args: argparse.Namespace, payload: dict[str, Any]) -> tuple[int, Any]:
    """Send a request to the daemon: (EXIT_OK, result), or (exit code, None) after saying why.

    An error the user can fix by changing the command line (an unknown instance) is exit 2;
    a daemon that is not running or fails is exit 1.
    """
    from pyvrrp.runtime.control import ControlError, request  # trio only when needed

    path = _socket_path(args)
    if path is None:
        return EXIT_CONFIG, None
    try:
        response = request(path, payload)
    except ControlError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILURE, None
    if not response["ok"]:
        print(response["error"], file=sys.stderr)
        usage = response.get("code") in {"unknown_instance", "bad_request", "invalid_config"}
        return EXIT_CONFIG if usage else EXIT_FAILURE, None
    return EXIT_OK, response["result"]


def _cmd_status(args: argparse.Namespace) -> int:
    from pyvrrp.status_format import format_status, format_status_json

    code, result = _control(args, {"command": "status"})
    if code != EXIT_OK:
        return code
    if not isinstance(result, dict):
        print("malformed status from pyvrrp: not an object", file=sys.stderr)
        return EXIT_FAILURE
    print(format_status_json(result) if args.json else format_status(result))
    return EXIT_OK


def _cmd_maintenance(args: argparse.Namespace) -> int:
    from pyvrrp.status_format import format_maintenance

    payload = {"command": "maintenance", "on": args.mode == "on", "instances": args.instances}
    code, result = _control(args, payload)
    if code != EXIT_OK:
        return code
    if not isinstance(result, dict):
        print("malformed answer from pyvrrp: not an object", file=sys.stderr)
        return EXIT_FAILURE
    for line in format_maintenance(result):
        print(line)
    return EXIT_OK


def _cmd_reload(args: argparse.Namespace) -> int:
    code, result = _control(args, {"command": "reload"})
    if code != EXIT_OK:
        return code
    summary_line = result.get("summary") if isinstance(result, dict) else None
    print(f"reloaded: {summary_line}" if summary_line else "reloaded")
    return EXIT_OK


def _cmd_events(args: argparse.Namespace) -> int:
    from pyvrrp.runtime.control import ControlError
    from pyvrrp.runtime.eventsclient import receive_events

    path = _socket_path(args)
    if path is None:
        return EXIT_CONFIG
    try:
        for event in receive_events(path):
            print(json.dumps(event, separators=(",", ":")), flush=True)
    except ControlError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how a stream is meant to end
    except BrokenPipeError:
        # The reader (| head) left: nothing more to say, and nowhere to say it.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    raise AssertionError("receive_events ends only by raising")  # pragma: no cover


def _cmd_cleanup(args: argparse.Namespace) -> int:
    from pyvrrp.runtime.cleanup import run_cleanup  # trio and pyroute2 only when needed

    return run_cleanup(args.config)


def _cmd_import_keepalived(args: argparse.Namespace) -> int:
    from pyvrrp.keepalived import KeepalivedSyntaxError, NothingToImportError, import_keepalived

    try:
        version = args.vrrp_version
        result = import_keepalived(
            args.keepalived_conf,
            args.config_id,
            int(version) if version in ("2", "3") else version,
        )
    except KeepalivedSyntaxError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    except NothingToImportError as error:
        for report in error.dropped:
            print(f"dropped: {report}", file=sys.stderr)
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    for report in result.dropped:
        print(f"dropped: {report}", file=sys.stderr)
    for report in result.notes:
        print(f"note: {report}", file=sys.stderr)
    code = EXIT_OK if result.faithful else EXIT_FAILURE
    if args.output is None:
        return code if _write_stdout(result.text) else EXIT_CONFIG
    if not result.faithful and not args.force:
        print(
            f"{args.output}: not written: {len(result.dropped)} item(s) could not be converted "
            "(listed above); review them, then run again with --force to write it anyway",
            file=sys.stderr,
        )
        return code
    try:
        _write_atomically(args.output, result.text)
    except OSError as error:
        print(f"{args.output}: cannot write it: {error.strerror or error}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.output}: written; check it with: pyvrrp check -c {args.output}", file=sys.stderr)
    return code


def _write_stdout(text: str) -> bool:
    """Write ``text`` to stdout; False after saying why when it cannot (a full disk, a closed
    pipe)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as error:
        print(f"cannot write to stdout: {error.strerror or error}", file=sys.stderr)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            # The interpreter flushes stdout again at exit: what is left must go nowhere.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
    return True


def _write_atomically(path: str, text: str) -> None:
    """Write ``path`` through a temporary file and a rename: never half a file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        temporary.write_text(text, "utf-8")
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)


def _run_daemon(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground (``pyvrrp -c node.toml``)."""
    from pyvrrp.runtime.deferred import DAEMON_DEFERRED, defer

    # Before trio is imported: it imports ssl and hmac (OpenSSL, ~5 MB of resident memory)
    # that the daemon uses only to send mail (pyvrrp/runtime/deferred.py).
    defer(DAEMON_DEFERRED)
    from pyvrrp.runtime.daemon import run_daemon  # trio and pyroute2 only when needed

    return run_daemon(args.config, log_level=args.log_level, log_format=args.log_format)


# Subcommands that need -c FILE.
_NEEDS_CONFIG = frozenset({"check", "cleanup"})
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": _cmd_check,
    "status": _cmd_status,
    "maintenance": _cmd_maintenance,
    "reload": _cmd_reload,
    "events": _cmd_events,
    "cleanup": _cmd_cleanup,
    "import-keepalived": _cmd_import_keepalived,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pyvrrp`` and ``python -m pyvrrp``; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None and args.config is None:
            parser.error("the daemon needs -c FILE (or give a COMMAND)")
        if args.command in _NEEDS_CONFIG and args.config is None:
            parser.error(f"{args.command} needs -c FILE")
        if args.command is not None:
            for option, value in (
                ("--log-level", args.log_level),
                ("--log-format", args.log_format),
            ):
                if value is not None:
                    parser.error(
                        f"{option} is for the daemon (pyvrrp -c FILE {option} {value}), "
                        f"not for {args.command}"
                    )
    except SystemExit as exit_:
        # argparse exits 2 after printing usage (0 for --help); return it instead so that
        # main() can be called from tests and embedding code.
        code = exit_.code
        return code if isinstance(code, int) else EXIT_CONFIG if code else EXIT_OK
    if args.command is None:
        return _run_daemon(args)
    return _COMMANDS[args.command](args)
