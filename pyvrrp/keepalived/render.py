"""Writing the imported configuration as readable TOML, with comments.

The document is plain Python data in node.toml's shape: ``global`` (with an ``email`` sub-table),
``scripts``, ``instances`` and ``sync_groups`` (tables of tables), ``routes`` and ``rules``
(arrays of tables). Tables are written in that order, values inline; long arrays are written
one element per line. Comments are attached to tables (``table_comments``, lines above the
header) and to keys (``key_comments``, at the end of the line), both by the table's identity.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Comments", "render", "toml_key", "toml_value"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_LINE_WIDTH = 96


class Comments:
    """Comments for tables (lines above their header) and keys (end of line), by identity."""

    def __init__(self) -> None:
        self.tables: dict[int, list[str]] = {}
        self.keys: dict[tuple[int, str], str] = {}

    def table(self, table: Mapping[str, Any], line: str) -> None:
        """Add a comment line above ``table``'s header."""
        self.tables.setdefault(id(table), []).append(line)

    def key(self, table: Mapping[str, Any], key: str, comment: str) -> None:
        """Set the end-of-line comment of ``key`` in ``table``."""
        self.keys[(id(table), key)] = comment


def toml_key(key: str) -> str:
    """A key as TOML needs it: bare when it can be, else a quoted string."""
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes (\" \\ \n \t \uXXXX ...) are all valid in a TOML basic string; JSON
    # leaves DEL as it is, which TOML does not allow.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(text: str) -> str:
    """A comment line: control characters (which TOML forbids in comments) shown escaped, and
    the undecodable bytes of a file name (surrogate escapes, which UTF-8 cannot encode)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    clean = "".join(c if c == "\t" or (c >= " " and c != "\x7f") else repr(c)[1:-1] for c in text)
    return f"# {clean}" if clean else "#"


def toml_value(value: object) -> str:
    """A value written inline: strings, booleans, numbers, arrays, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be written to TOML")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _assignment(key: str, value: object, comment: str | None) -> list[str]:
    line = f"{toml_key(key)} = {toml_value(value)}"
    tail = f"  {_comment(comment)}" if comment else ""
    if len(line) + len(tail) <= _LINE_WIDTH or not isinstance(value, list) or len(value) < 2:
        return [line + tail]
    lines = [f"{toml_key(key)} = [{tail}"]
    lines.extend(f"    {toml_value(item)}," for item in value)
    lines.append("]")
    return lines


def _table(
    out: list[str], header: str, table: Mapping[str, Any], comments: Comments, array: bool = False
) -> None:
    out.append("")
    out.extend(_comment(line) for line in comments.tables.get(id(table), []))
    out.append(f"[[{header}]]" if array else f"[{header}]")
    subtables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            subtables.append((key, value))
            continue
        out.extend(_assignment(key, value, comments.keys.get((id(table), key))))
    for key, value in subtables:
        _table(out, f"{header}.{toml_key(key)}", value, comments)


def render(document: Mapping[str, Any], header: Sequence[str], comments: Comments) -> str:
    """The whole node.toml: ``header`` as comment lines, then the tables."""
    out = [_comment(line) for line in header]
    global_ = document.get("global")
    if global_:
        _table(out, "global", global_, comments)
    for section in ("scripts", "instances", "sync_groups"):
        for name, table in document.get(section, {}).items():
            _table(out, f"{section}.{toml_key(name)}", table, comments)
    for section in ("routes", "rules"):
        for table in document.get(section, []):
            _table(out, section, table, comments, array=True)
    return "\n".join(out).lstrip("\n") + "\n"
