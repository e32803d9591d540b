"""Importing keepalived configurations (``pyvrrp import-keepalived``).

:mod:`~pyvrrp.keepalived.parser` reads keepalived.conf syntax (includes, comments, blocks) into
nodes that know their file and line; :mod:`~pyvrrp.keepalived.convert` turns them into
node.toml text that ``pyvrrp check`` accepts, reporting what it could not express;
:mod:`~pyvrrp.keepalived.render` writes the TOML. See docs/import-keepalived.md.
"""

from __future__ import annotations

from pyvrrp.keepalived.convert import (
    ImportResult,
    NothingToImportError,
    Report,
    convert_parsed,
    import_keepalived,
)
from pyvrrp.keepalived.parser import KeepalivedSyntaxError, Location, Node, parse_file

__all__ = [
    "ImportResult",
    "KeepalivedSyntaxError",
    "Location",
    "Node",
    "NothingToImportError",
    "Report",
    "convert_parsed",
    "import_keepalived",
    "parse_file",
]
