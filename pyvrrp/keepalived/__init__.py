"""Importing keepalived configurations (``pyvrrp import-keepalived``).

:mod:`~pyvrrp.keepalived.parser` reads keepalived.conf syntax (includes, comments, blocks) into
nodes that know their file and line; :mod:`~pyvrrp.keepalived.convert` turns them into
node.toml (global_defs, scripts, sync groups, static routes and rules there,
:mod:`~pyvrrp.keepalived.instance` for each vrrp_instance, :mod:`~pyvrrp.keepalived.values`
for the values, :mod:`~pyvrrp.keepalived.advice` for what to say about what is not converted);
:mod:`~pyvrrp.keepalived.validate` makes sure ``pyvrrp check`` accepts the result and
:mod:`~pyvrrp.keepalived.render` writes the commented TOML. See docs/import-keepalived.md.
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
