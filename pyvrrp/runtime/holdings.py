"""What an instance holds while it is master, written once.

A master installs its virtual addresses, then its excluded addresses, then its virtual routes,
then its virtual rules (a route may need an address to be there, a rule a route); everything
else runs in the reverse order. The same :class:`Holdings` serves installing and removing
(:mod:`pyvrrp.runtime.instance`), a reload's diff, the removal at startup of what a crashed
run left behind (:func:`remove_stale`) and ``pyvrrp cleanup`` (:mod:`pyvrrp.runtime.cleanup`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs

from pyvrrp.core.config import InstanceConfig, RouteConfig, RuleConfig
from pyvrrp.runtime.netlink import AddressSpec, Change, Netlink, NetlinkError, describe_item

log = logging.getLogger("pyvrrp")

Item = AddressSpec | RouteConfig | RuleConfig


@attrs.frozen
class Holdings:
    """An instance's addresses, routes and rules, each kind in configuration order."""

    addresses: tuple[AddressSpec, ...] = ()
    excluded: tuple[AddressSpec, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()

    @classmethod
    def of(cls, config: InstanceConfig) -> Holdings:
        """Everything ``config`` installs as master."""
        return cls(
            tuple(AddressSpec.from_config(a, config.interface) for a in config.addresses),
            tuple(AddressSpec.from_config(a, config.interface) for a in config.excluded_addresses),
            tuple(config.virtual_routes),
            tuple(config.virtual_rules),
        )

    @property
    def specs(self) -> tuple[AddressSpec, ...]:
        """The addresses, virtual then excluded (what is announced)."""
        return (*self.addresses, *self.excluded)

    def install_order(self) -> list[Item]:
        """Addresses (virtual, then excluded), routes, rules."""
        return [*self.addresses, *self.excluded, *self.routes, *self.rules]

    def removal_order(self) -> list[Item]:
        """The reverse of :meth:`install_order`."""
        return self.install_order()[::-1]

    def minus(self, other: Holdings) -> Holdings:
        """What this holds and ``other`` does not (a reload's diff)."""
        return Holdings(
            tuple(a for a in self.addresses if a not in other.specs),
            tuple(a for a in self.excluded if a not in other.specs),
            tuple(r for r in self.routes if r not in other.routes),
            tuple(r for r in self.rules if r not in other.rules),
        )


async def remove_items(netlink: Netlink, items: Sequence[Item]) -> list[bool | NetlinkError]:
    """Remove ``items`` in one request; per item: True removed, False absent (or its
    interface is gone), or the error."""
    if not items:
        return []
    return await netlink.apply([Change(False, item) for item in items])


async def remove_stale(netlink: Netlink, name: str, holdings: Holdings) -> None:
    """Remove what a crashed previous run of instance ``name`` left behind, logging each."""
    items = holdings.removal_order()
    for item, result in zip(items, await remove_items(netlink, items), strict=True):
        if isinstance(result, NetlinkError):
            log.error("%s: cannot remove %s: %s", name, describe_item(item), result)
        elif result:
            # An address is what makes a node look master: say why it is gone.
            why = " (we start as backup)" if isinstance(item, AddressSpec) else ""
            log.warning("%s: removed %s, left by a previous run%s", name, describe_item(item), why)
