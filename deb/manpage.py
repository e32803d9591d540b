"""Generate pyvrrp(8), the man page, from the command line's own argparse parser.

The options and commands come from :func:`pyvrrp.cli.build_parser`, so the page cannot drift
from ``pyvrrp --help``; only the sections argparse has no place for (exit status, files, see
also) are written here. Usage: ``python deb/manpage.py [OUTPUT]`` (default: stdout).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

from pyvrrp._version import __version__
from pyvrrp.cli import build_parser

EXIT_STATUS = (
    ("0", "success; the daemon was stopped by SIGTERM or SIGINT"),
    (
        "1",
        "a command failed or the daemon does not answer; for the daemon itself, a bug "
        "(a traceback on stderr); for import-keepalived, something could not be converted "
        "(each listed on stderr)",
    ),
    ("2", "invalid configuration or bad usage: every problem is printed, one per line"),
    ("3", "the host lacks something the daemon needs (an interface, a capability)"),
)
FILES = (
    ("/etc/pyvrrp/node.toml", "the configuration the systemd unit runs"),
    ("/etc/pyvrrp/node.toml.example", "an annotated example to start from"),
    ("/run/pyvrrp.sock", "the default control socket (status, maintenance, reload)"),
    ("/var/lib/pyvrrp", "the default state directory (maintenance flags)"),
)
SEE_ALSO = "keepalived(8), systemctl(1), journalctl(1)"


def escape(text: str) -> str:
    """Roff-escape running text: backslashes, hyphens, and a control character at the start
    of a line (a leading ``.`` or ``'`` would be read as a request)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = [("\\&" + line) if line[:1] in {".", "'"} else line for line in text.splitlines()]
    return "\n".join(lines)


def _option_label(action: argparse.Action) -> str:
    """``-c, --config FILE`` in roff, bold names and italic metavar."""
    names = ", ".join(f"\\fB{escape(name)}\\fR" for name in action.option_strings)
    if action.nargs == 0:
        return names
    metavar = action.metavar or action.dest.upper()
    return f"{names} \\fI{escape(str(metavar))}\\fR"


def _positional_label(action: argparse.Action) -> str:
    metavar = action.metavar or action.dest
    return f"\\fI{escape(str(metavar))}\\fR"


def _help_text(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    text = action.help
    # argparse expands %(prog)s, %(default)s ... in help; do the same.
    if "%" in text:
        text = text % {"prog": parser.prog, "default": action.default}
    return escape(text)


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    """Roff for every argument of ``parser`` except the subcommands, one .TP each."""
    out: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        label = _option_label(action) if action.option_strings else _positional_label(action)
        out += [".TP", label, _help_text(action, parser)]
    return out


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = " ".join(parser.format_usage().split())
    return escape(usage.removeprefix("usage: "))


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices.items())
    return []


def render(parser: argparse.ArgumentParser | None = None, *, date: datetime.date) -> str:
    """The man page of ``parser`` (default: pyvrrp's), in the man(7) macros."""
    parser = parser or build_parser()
    out = [
        f'.TH PYVRRP 8 "{date.isoformat()}" "pyvrrp {__version__}" "System Administration"',
        ".SH NAME",
        "pyvrrp \\- a VRRPv3 and VRRPv2 router (RFC 9568, RFC 3768), keepalived's VRRP side "
        "in Python",
        ".SH SYNOPSIS",
        f".B {escape(parser.prog)}",
        "\\fB\\-c\\fR \\fIFILE\\fR",
        ".br",
        f".B {escape(parser.prog)}",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        escape(parser.description or ""),
        ".SH OPTIONS",
        *_arguments(parser),
        ".SH COMMANDS",
    ]
    for name, sub in _subcommands(parser):
        out += [".SS " + escape(name), _usage(sub), ".PP", escape(sub.description or "")]
        arguments = _arguments(sub)
        if arguments:
            out += [".PP", "Options:", ".RS", *arguments, ".RE"]
    out.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS:
        out += [".TP", f"\\fB{code}\\fR", escape(meaning)]
    out.append(".SH FILES")
    for path, meaning in FILES:
        out += [".TP", f"\\fI{escape(path)}\\fR", escape(meaning)]
    out += [
        ".SH SEE ALSO",
        escape(SEE_ALSO),
        ".PP",
        "The configuration reference, operations guide and migration guide from keepalived: "
        "\\fI/usr/share/doc/pyvrrp/README.md\\fR and the project's docs/ directory.",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the page to the file given, or to stdout."""
    args = sys.argv[1:] if argv is None else argv
    page = render(date=datetime.date.today())
    if args:
        Path(args[0]).write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
