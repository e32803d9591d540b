"""Reading a parsed node.toml into the model of :mod:`pyvrrp.core.model`, and every rule about
what a valid node is, so that the library, the daemon and ``pyvrrp check`` agree.

:func:`parse_node` takes what ``tomllib`` returns and gives a
:class:`~pyvrrp.core.model.NodeConfig`, or raises :class:`~pyvrrp.core.model.ConfigError`
listing *every* problem it found, each naming the key path as a user reads it
(``instances.vip58.addresses[1]``), what is wrong and what would be right. It never raises
anything else, whatever it is given.

Modules, each importing only those before it:

- ``keys``: the keys each table accepts, and keepalived's names for them;
- ``reading``: the problem collector (``_Ctx``) and typed access to a TOML table (``_Table``);
- ``values``: scalar parsers (addresses, durations, names, commands);
- ``sections``: tables below the top level (global, scripts, addresses, trackers, routes,
  rules);
- ``instance``: one ``[instances.NAME]`` and the rules inside it;
- ``node``: :func:`parse_node`, sync groups and the rules across instances.

Names with a leading underscore are private to this package: import the public ones from
:mod:`pyvrrp.core.config`.
"""

from __future__ import annotations

from pyvrrp.core.configparse.node import parse_node, summary
from pyvrrp.core.configparse.reading import key_path

__all__ = ["key_path", "parse_node", "summary"]
