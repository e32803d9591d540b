"""keepalived.conf syntax: files, includes, comments, quoting and blocks, into a tree of nodes.

keepalived's configuration is line based. A line holds a keyword and its arguments; ``{``
opens a block (on the same line or the next) and ``}`` closes it, also on the same line as
other words (``track_script { chk }``). ``#`` and ``!`` start a comment outside double quotes;
a backslash at the end of a line continues it on the next. ``include PATTERN`` reads the files
matching a glob pattern, relative to the directory of the including file, where it stands
(inside a block too). Lines starting with ``@ID`` (or ``@^ID``) are kept only when keepalived
runs with that config id (``-i ID``), or without it; ``$NAME=value`` defines a variable that
later lines use as ``$NAME`` or ``${NAME}``.

:func:`parse_file` returns the top-level :class:`Node` list, each node knowing the file and
line it came from. Everything that stops it from reading the configuration (an unreadable or
binary file, a missing include, an include cycle, an unterminated string, unbalanced braces) is
a :class:`KeepalivedSyntaxError` whose message starts with ``file:line``. What it reads but
skips (a conditional line without a config id) is listed in :attr:`Parsed.skipped`.
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import attrs

__all__ = ["KeepalivedSyntaxError", "Location", "Node", "Parsed", "Skipped", "parse_file"]

_GLOB_CHARS = frozenset("*?[")
_VARIABLE_DEFINITION = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)")
_VARIABLE_USE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_CONDITIONAL = re.compile(r"@(\^?)(\S*)\s*(.*)")
# keepalived's own nesting is shallow (3 levels at most); this only stops a runaway include.
_MAX_INCLUDE_DEPTH = 32
# A keepalived.conf is kilobytes; this only stops an include of something huge.
_MAX_FILE_BYTES = 16 * 2**20


@attrs.frozen
class Location:
    """Where a node comes from: a file name (as given or as the include pattern made it)
    and a line number counted from 1."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@attrs.frozen
class Node:
    """One keyword line: ``keyword args...`` and, when a ``{ }`` block follows, its children.

    ``children`` is None for a line without a block and a (possibly empty) tuple for a block.
    """

    keyword: str
    args: tuple[str, ...]
    location: Location
    children: tuple[Node, ...] | None = None

    @property
    def words(self) -> tuple[str, ...]:
        """The keyword and its arguments, as keepalived's list lines (addresses, routes) are
        read: the first word is data, not a keyword."""
        return (self.keyword, *self.args)


@attrs.frozen
class Skipped:
    """A line read but not used, with why (a conditional line without a config id)."""

    location: Location
    message: str


@attrs.frozen
class Parsed:
    """What :func:`parse_file` read: the top-level nodes, the files read and what was skipped."""

    nodes: tuple[Node, ...]
    files: tuple[str, ...]
    skipped: tuple[Skipped, ...]


class KeepalivedSyntaxError(Exception):
    """The configuration cannot be read; the message says where (file:line) and what was
    expected there."""


@attrs.frozen
class _Token:
    text: str
    location: Location
    # A quoted "{" is a word, not a brace; a newline token ends a line.
    kind: str  # "word", "open", "close", "newline"


class _Reader:
    """Reads files into tokens, following includes; remembers variables and skipped lines."""

    def __init__(self, config_id: str | None) -> None:
        self.config_id = config_id
        self.variables: dict[str, str] = {}
        self.stack: list[str] = []  # real paths of the files being read, for cycle detection
        self.files: list[str] = []
        self.skipped: list[Skipped] = []
        self.tokens: list[_Token] = []

    def read_file(self, path: str, shown: str, included_at: Location | None) -> None:
        real = os.path.realpath(path)
        if real in self.stack:
            chain = " -> ".join([*self.stack[self.stack.index(real) :], real])
            raise KeepalivedSyntaxError(
                f"{included_at}: include cycle: {chain}; remove one of these includes"
            )
        if len(self.stack) >= _MAX_INCLUDE_DEPTH:
            raise KeepalivedSyntaxError(
                f"{included_at}: includes nested more than {_MAX_INCLUDE_DEPTH} deep"
            )
        text = _read_text(path, shown, included_at)
        self.stack.append(real)
        self.files.append(shown)
        try:
            for number, line, continued in _logical_lines(text):
                self._line(line, Location(shown, number), path, continued=continued)
        finally:
            self.stack.pop()

    def _line(self, line: str, location: Location, path: str, *, continued: bool) -> None:
        stripped = line.strip()
        if stripped.startswith("@"):
            kept = self._conditional(stripped, location)
            if kept is None:
                return
            stripped = kept
        definition = _VARIABLE_DEFINITION.fullmatch(stripped)
        if definition is not None:
            if continued:
                # keepalived expands a multi-line definition into several lines.
                self.skipped.append(
                    Skipped(
                        location,
                        f"${definition.group(1)}: multi-line definitions are not supported; "
                        "write the lines out where it is used",
                    )
                )
                return
            self.variables[definition.group(1)] = definition.group(2).strip()
            return
        if "$" in stripped:
            stripped = self._substitute(stripped)
        words = list(_tokenize(stripped, location))
        if words and words[0].kind == "word" and words[0].text == "include":
            self._include(words, location, path)
            return
        self.tokens.extend(words)
        self.tokens.append(_Token("", location, "newline"))

    def _conditional(self, line: str, location: Location) -> str | None:
        match = _CONDITIONAL.fullmatch(line)
        if match is None:  # pragma: no cover - the pattern matches any line starting with @
            return None
        negated, ident, rest = match.group(1) == "^", match.group(2), match.group(3)
        if self.config_id is None:
            when = f"not {ident}" if negated else ident
            self.skipped.append(
                Skipped(
                    location,
                    f"line only for keepalived's config id {when} (@{'^' if negated else ''}"
                    f"{ident}) skipped; give --config-id ID to import the lines of that node",
                )
            )
            return None
        if (ident == self.config_id) == negated:
            return None
        return rest

    def _substitute(self, line: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            # keepalived leaves an undefined $NAME as it is (a script's own shell variable).
            return self.variables.get(name, match.group(0))

        return _VARIABLE_USE.sub(value, line)

    def _include(self, words: list[_Token], location: Location, path: str) -> None:
        if len(words) != 2 or words[1].kind != "word":
            raise KeepalivedSyntaxError(
                f"{location}: include needs exactly one file name or glob pattern, "
                'e.g. include "/etc/keepalived/conf.d/*.conf"'
            )
        pattern = words[1].text
        base = os.path.dirname(path)
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        if _GLOB_CHARS.isdisjoint(pattern):
            if not os.path.exists(full):
                raise KeepalivedSyntaxError(
                    f"{location}: include {pattern}: no such file ({full}); fix the path or "
                    "remove the include"
                )
            matches = [full]
        else:
            # keepalived skips the directories a pattern matches (glob with GLOB_MARK).
            matches = sorted(m for m in glob.glob(full) if not os.path.isdir(m))
            if not matches:
                self.skipped.append(
                    Skipped(location, f"include {pattern}: no file matches {full} (as keepalived)")
                )
                return
        shown_base = os.path.dirname(location.file)
        for match in matches:
            if os.path.isabs(pattern):
                shown = match
            else:
                shown = os.path.normpath(os.path.join(shown_base, os.path.relpath(match, base)))
            self.read_file(match, shown, location)


def _read_text(path: str, shown: str, included_at: Location | None) -> str:
    where = f"{included_at}: include {shown}" if included_at is not None else shown
    try:
        with Path(path).open("rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                # A device or a FIFO would never end (keepalived reads regular files only).
                raise KeepalivedSyntaxError(f"{where}: is not a regular file")
            raw = file.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeepalivedSyntaxError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise KeepalivedSyntaxError(f"{where}: is a directory, not a keepalived.conf") from None
    except PermissionError:
        raise KeepalivedSyntaxError(
            f"{where}: permission denied: cannot read it (run as root or fix its mode)"
        ) from None
    except OSError as error:
        raise KeepalivedSyntaxError(f"{where}: cannot read it: {error.strerror or error}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise KeepalivedSyntaxError(
            f"{where}: larger than {_MAX_FILE_BYTES // 2**20} MiB: this is not a keepalived.conf"
        )
    if b"\0" in raw:
        line = raw[: raw.index(b"\0")].count(b"\n") + 1
        raise KeepalivedSyntaxError(
            f"{shown}:{line}: binary data (a NUL byte): this is not a keepalived.conf"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise KeepalivedSyntaxError(
            f"{shown}:{line}: invalid byte 0x{raw[error.start]:02x}: not UTF-8 text; "
            "convert the file to UTF-8 (iconv) first"
        ) from None


def _logical_lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(first line number, line, whether it was continued) with backslash-continued lines
    joined."""
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        yield start, " ".join(pending), len(pending) > 1
        pending = []
    if pending:
        yield start, " ".join(pending), True


def _tokenize(line: str, location: Location) -> Iterator[_Token]:
    """Words, braces; a comment (# or !, even inside a word, as keepalived) ends the line
    outside double quotes."""
    i = 0
    n = len(line)
    while i < n:
        char = line[i]
        if char.isspace():
            i += 1
        elif char in "#!":
            return
        elif char == "{":
            yield _Token("{", location, "open")
            i += 1
        elif char == "}":
            yield _Token("}", location, "close")
            i += 1
        elif char == '"':
            end = line.find('"', i + 1)
            if end < 0:
                raise KeepalivedSyntaxError(
                    f'{location}: unterminated quoted string: expected a closing " '
                    f"after {line[i : i + 40]}"
                )
            yield _Token(line[i + 1 : end], location, "word")
            i = end + 1
        else:
            word: list[str] = []
            while i < n and not line[i].isspace() and line[i] not in '{}"#!':
                # keepalived: \# and \! outside quotes are the characters, not a comment.
                if line[i] == "\\" and line[i + 1 : i + 2] in ("#", "!"):
                    i += 1
                word.append(line[i])
                i += 1
            yield _Token("".join(word), location, "word")


def _build(tokens: list[_Token]) -> tuple[Node, ...]:
    """Statements and blocks from the token stream (iteratively: no recursion limit)."""
    root: list[Node] = []
    # Each open block: (its node's keyword line, the list its children go into).
    stack: list[tuple[list[_Token], Location, list[Node]]] = []
    current = root
    words: list[_Token] = []
    # A statement that ended at a newline may still get a block on a following line.
    pending: tuple[list[_Token], list[Node]] | None = None

    def finish(into: list[Node]) -> None:
        nonlocal words
        if words:
            into.append(
                Node(words[0].text, tuple(w.text for w in words[1:]), words[0].location, None)
            )
            words = []

    for token in tokens:
        if token.kind == "word":
            if pending is not None:
                pending = None
            words.append(token)
        elif token.kind == "newline":
            if words:
                pending = (words, current)
                finish(current)
        elif token.kind == "open":
            if words:
                owner = words
                words = []
            elif pending is not None:
                owner, into = pending
                if into is current and current and current[-1].location == owner[0].location:
                    current.pop()
            else:
                raise KeepalivedSyntaxError(
                    f"{token.location}: '{{' without a keyword before it; expected KEYWORD {{"
                )
            pending = None
            stack.append((owner, token.location, current))
            current = []
        else:  # close
            pending = None
            if not stack:
                raise KeepalivedSyntaxError(
                    f"{token.location}: '}}' closes no block; remove it or add the block's "
                    "opening line"
                )
            finish(current)
            owner, _, parent = stack.pop()
            parent.append(
                Node(
                    owner[0].text,
                    tuple(w.text for w in owner[1:]),
                    owner[0].location,
                    tuple(current),
                )
            )
            current = parent
    finish(current)
    if stack:
        owner, opened, _ = stack[-1]
        raise KeepalivedSyntaxError(
            f"{opened}: the block of {owner[0].text} opened here is never closed; "
            "expected '}' before the end of the configuration"
        )
    return tuple(root)


def parse_file(path: str | os.PathLike[str], config_id: str | None = None) -> Parsed:
    """Read a keepalived.conf and its includes. Raises :class:`KeepalivedSyntaxError`."""
    name = os.fspath(path)
    reader = _Reader(config_id)
    reader.read_file(name, name, None)
    return Parsed(_build(reader.tokens), tuple(reader.files), tuple(reader.skipped))
