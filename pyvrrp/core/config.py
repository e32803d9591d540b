"""The validated model of a node's configuration (see docs/configuration.md).

File parsing lives in :mod:`pyvrrp.configfile`; every rule about what a valid node is lives
here, so the library, the daemon and ``pyvrrp check`` agree.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network

import attrs

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = IPv4Network | IPv6Network


@attrs.frozen
class AddressConfig:
    """A virtual or excluded address, as in ``addresses`` and ``excluded_addresses``.

    ``dev`` None means the instance's interface. ``scope`` is one of "global", "site",
    "link", "host" (None = the kernel's default for the address).
    """

    address: IPInterface
    dev: str | None = None
    label: str | None = None
    scope: str | None = None


@attrs.frozen
class RouteConfig:
    """A route, as in ``virtual_routes`` and ``[[routes]]``. ``to`` "default" is 0/0 or ::/0."""

    to: IPNetwork
    via: IPAddress | None = None
    dev: str | None = None
    table: int | None = None
    metric: int | None = None
    src: IPAddress | None = None
    scope: str | None = None


@attrs.frozen
class RuleConfig:
    """A policy routing rule, as in ``virtual_rules`` and ``[[rules]]`` (key ``from``)."""

    family: int  # 4 or 6, from the networks (or the instance's family when neither is set)
    table: int
    from_: IPNetwork | None = None
    to: IPNetwork | None = None
    priority: int | None = None
    iif: str | None = None
    oif: str | None = None
