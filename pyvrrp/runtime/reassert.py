"""Re-assertion: a master puts back what someone else removed.

NetworkManager, systemd-networkd or an operator may remove a master's address, route or rule.
Address removals and links coming back up arrive as netlink events and are answered at once;
routes and rules (whose removal the kernel does not always report) are checked every
:data:`REASSERT_INTERVAL`, with the node's static routes and rules.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import trio

from pyvrrp.core.config import NodeConfig
from pyvrrp.runtime.holdings import Holdings
from pyvrrp.runtime.instance import Instance
from pyvrrp.runtime.netlink import (
    AddressEvent,
    LinkEvent,
    Netlink,
    NetlinkError,
    describe_route,
    describe_rule,
)

if TYPE_CHECKING:
    from pyvrrp.runtime.announcer import Announcements

log = logging.getLogger("pyvrrp")

# How often a master checks that its addresses, routes and rules are still installed
# (address removals are also noticed at once through netlink events).
REASSERT_INTERVAL = 10.0


class Reasserter:
    """Watches netlink and periodically puts back what the node's masters hold."""

    def __init__(
        self,
        netlink: Netlink,
        announcements: Announcements,
        instances: Callable[[], Iterable[Instance]],
        config: Callable[[], NodeConfig],
    ) -> None:
        """``instances`` and ``config`` give the node's current ones (a reload changes them)."""
        self._netlink = netlink
        self._announcements = announcements
        self._instances = instances
        self._config = config
        self._links_up: dict[str, bool] = {}

    async def watch_netlink(self) -> None:
        """Forget cached link details on link changes; put back addresses removed from a
        master by someone else (NetworkManager, systemd-networkd, an operator)."""
        while True:
            channel = self._netlink.subscribe()
            async with channel:
                async for event in channel:
                    if isinstance(event, LinkEvent):
                        was_up = self._links_up.get(event.name, True)
                        up = event.state is not None and event.state.up
                        self._links_up[event.name] = up
                        self._announcements.forget(event.name)
                        if up and not was_up:
                            # The kernel flushed the link's IPv6 addresses and routes when it
                            # went down; a master still holding them puts them back now,
                            # not at the next periodic check, and announces them all again
                            # (neighbours may have forgotten us while the link was down).
                            await self.reassert_all(announce_all=True)
                    elif not event.present:
                        await self._address_removed(event)
            # The subscription was closed (overflow): subscribe again, re-check everything.
            await self.reassert_all()

    async def _address_removed(self, event: AddressEvent) -> None:
        if not self._links_up.get(event.interface, True):
            return  # a link going down flushes its IPv6 addresses; trackers handle that
        for instance in list(self._instances()):
            if not instance.router.holding_addresses:
                continue
            removed = Holdings(
                tuple(
                    s
                    for s in instance.all_specs
                    if s.dev == event.interface and s.address == event.address
                )
            )
            added = await instance.install(removed, reassert=True)
            if added:
                await instance.announce(added)

    async def reassert_loop(self) -> None:
        """Every :data:`REASSERT_INTERVAL`, :meth:`reassert_all`."""
        while True:
            await trio.sleep(REASSERT_INTERVAL)
            await self.reassert_all()

    async def reassert_all(self, *, announce_all: bool = False) -> None:
        """Put back what a master holds and someone removed; announce what was put back
        (everything with ``announce_all``)."""
        for instance in list(self._instances()):
            if not instance.router.holding_addresses:
                continue
            holdings = instance.holdings
            up = Holdings(
                tuple(s for s in holdings.addresses if self._links_up.get(s.dev, True)),
                tuple(s for s in holdings.excluded if self._links_up.get(s.dev, True)),
                holdings.routes,
                holdings.rules,
            )
            added = await instance.install(up, reassert=True)
            if announce_all or added:
                await instance.announce(list(up.specs) if announce_all else added)
        config = self._config()
        for route in config.routes:
            await self._reassert_static(describe_route(route), self._netlink.add_route(route))
        for rule in config.rules:
            await self._reassert_static(describe_rule(rule), self._netlink.add_rule(rule))

    async def _reassert_static(self, what: str, operation: Awaitable[bool]) -> None:
        try:
            if await operation:
                log.warning("static %s had been removed by someone else: put it back", what)
        except NetlinkError as exc:
            log.error("cannot put back static %s: %s", what, exc)
