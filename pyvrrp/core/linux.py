"""Linux names and limits that both the configuration and the runtime rely on.

Pure values (no I/O): the configuration validates against them and the runtime puts them on
the wire to the kernel, so each is written once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

IFNAMSIZ: Final = 16
"""linux/if.h: an interface name's buffer, the terminating NUL included (15 bytes of name)."""

SCOPES: Final[Mapping[str, int]] = MappingProxyType(
    {"global": 0, "site": 200, "link": 253, "host": 254}
)
"""Address and route scopes by the name ``ip`` uses, to their RT_SCOPE_* value
(linux/rtnetlink.h); the configuration accepts these names."""
