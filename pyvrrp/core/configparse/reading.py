"""The reading machinery: problems collected as parsing goes on, typed access to TOML tables."""

from __future__ import annotations

import datetime
import enum
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final, TypeVar

from pyvrrp.core import linux
from pyvrrp.core.configparse.keys import _NOT_NEEDED
from pyvrrp.core.model import Problem

_T = TypeVar("_T")
_U = TypeVar("_U")


class _Bad(enum.Enum):
    """Marks a value that was present but invalid (its problem is already recorded)."""

    BAD = "bad"


_BAD: Final = _Bad.BAD


class _Invalid(Exception):
    """Raised by the scalar parsers below; the caller records it with the key's path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# Names of instances, scripts and sync groups. keepalived takes any word without spaces
# (its seed configs name instances after their address, "1.2.3.58"); pyvrrp takes the
# characters such names use and that stay one harmless word when a notify script passes the
# name on to a shell or a log: no quotes, '$', '/', '*' or spaces. Not starting with '-' so
# that a name is never taken for an option.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,63}")
_NAME_RULE = (
    "use 1..64 letters, digits, '_', '-', '.', ':', '@' or '+', starting with a letter, "
    "digit or '_'"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
UINT32_MAX: Final = 2**32 - 1
WEIGHT_RANGE: Final = (-253, 253)
SCOPES: Final = tuple(linux.SCOPES)  # the names, in the order errors list them
MAX_SECONDS: Final = 86_400  # a sane upper bound for delays and intervals: one day
UNIX_PATH_MAX: Final = 107  # sun_path is 108 bytes including the NUL


def key_path(path: str, key: str) -> str:
    """The path of ``key`` inside the table at ``path``, quoting keys as TOML would."""
    part = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{path}.{part}" if path else part


def _index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
    return f"a {type(value).__name__}"


def _show(value: object) -> str:
    """A value as the user wrote it in TOML, shortened for a one-line message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # int() -> str() refuses more than 4300 digits; nobody needs to see them all anyway.
        return str(value) if value.bit_length() <= 128 else "a very large integer"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    return _type_name(value)


def _describe(value: object) -> str:
    """The type and, for scalars, the value: 'an integer (58)', 'an array'."""
    shown = _show(value)
    name = _type_name(value)
    return name if shown == name else f"{name} ({shown})"


def _suggest(word: str, choices: Iterable[str]) -> str | None:
    import difflib  # only for a file with a mistake: not in a running daemon's memory

    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = _suggest(word, choices)
    return f"; did you mean {close}?" if close is not None else ""


def _invalid_name_message(name: str, kind: str) -> str:
    return f"{_show(name)} is not a valid {kind} name: {_NAME_RULE}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Ctx:
    """Collects problems (the configuration is refused) and warnings (it is accepted, but the
    user should hear about it) as parsing goes on.

    ``table_names`` resolves routing table names (``table = "vswitch"``) as ``ip`` does; the
    core reads no file, so :mod:`pyvrrp.configfile` reads the rt_tables files and passes them.
    """

    def __init__(self, table_names: Mapping[str, int] | None = None) -> None:
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.table_names: Mapping[str, int] = table_names if table_names is not None else {}

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path or "(top level)", message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Problem(path or "(top level)", message))

    def mark(self) -> int:
        return len(self.problems)

    def failed_since(self, mark: int) -> bool:
        return len(self.problems) > mark


class _Table:
    """A TOML table being read: typed getters that record problems under the key's path."""

    def __init__(
        self,
        ctx: _Ctx,
        path: str,
        data: Mapping[Any, object],
        known: Collection[str] | None,
        keepalived: Mapping[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.path = path
        self.data = data
        # Keys that an unknown key was taken for ("did you mean vrid?"): when one is required,
        # "missing: vrid" would only repeat that.
        self.suggested: set[str] = set()
        if known is not None:
            for key in data:
                if not isinstance(key, str):
                    ctx.add(path, f"key {_show(key)} is not a string")
                elif key not in known:
                    ctx.add(key_path(path, key), _unknown_key(key, known, keepalived or {}))
                    close = (keepalived or {}).get(key) or _suggest(key, known)
                    if close is not None:
                        self.suggested.add(close)

    def sub(self, key: str) -> str:
        return key_path(self.path, key)

    def get(self, key: str, parse: Callable[[object], _T], default: _U) -> _T | _U | _Bad:
        """The parsed value; ``default`` when the key is absent; _BAD when invalid (recorded)."""
        if key not in self.data:
            return default
        try:
            return parse(self.data[key])
        except _Invalid as problem:
            self.ctx.add(self.sub(key), problem.message)
            return _BAD

    def require(self, key: str, parse: Callable[[object], _T], what: str) -> _T | _Bad:
        if key not in self.data:
            if key not in self.suggested:
                self.ctx.add(self.sub(key), f"missing: {what}")
            return _BAD
        return self.get(key, parse, _BAD)

    def items(self, key: str) -> list[tuple[str, object]] | _Bad | None:
        """An array's elements with their paths; None when absent."""
        if key not in self.data:
            return None
        value = self.data[key]
        if not isinstance(value, list | tuple):
            self.ctx.add(self.sub(key), f"expected an array, got {_describe(value)}")
            return _BAD
        return [(_index(self.sub(key), i), item) for i, item in enumerate(value)]

    def element(self, path: str, value: object, parse: Callable[[object], _T]) -> _T | _Bad:
        try:
            return parse(value)
        except _Invalid as problem:
            self.ctx.add(path, problem.message)
            return _BAD


def _ok(value: _T | _Bad) -> _T:
    """Narrows a value to valid, where the caller knows no problem was recorded for it."""
    if value is _BAD:
        raise AssertionError("a value with a problem was used to build the model")
    return value


def _unknown_key(key: str, known: Collection[str], keepalived: Mapping[str, str]) -> str:
    if key in keepalived:
        return f"unknown key; keepalived's {key} is {keepalived[key]} in pyvrrp"
    if key in _NOT_NEEDED:
        return f"unknown key; {_NOT_NEEDED[key]}"
    close = _suggest(key, known)
    if close is not None:
        return f"unknown key; did you mean {close}?"
    return "unknown key; valid keys here: " + ", ".join(known)


def _table(ctx: _Ctx, path: str, value: object, what: str) -> Mapping[Any, object] | None:
    if isinstance(value, Mapping):
        return value
    ctx.add(path, f"expected a table ({what}), got {_describe(value)}")
    return None
