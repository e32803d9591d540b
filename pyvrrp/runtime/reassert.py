"""Re-assertion: a master puts back what someone else removed.

NetworkManager, systemd-networkd or an operator may remove a master's address, route or rule.
Address removals and links coming back up arrive as netlink events and are answered at once;
routes and rules (whose removal the kernel does not always report) are checked every
:data:`REASSERT_INTERVAL`, with the node's static routes and rules.

The periodic check is only for routes and rules: a node that has none sleeps until a reload
gives it some. Addresses are never re-added blindly: each pass that puts addresses back (a
link back up, lost netlink events) reads each interface's addresses once and adds only the
missing ones. Adding an address that is there makes the kernel answer EEXIST, and telling
"there as asked" from a conflict takes a dump of the interface's addresses through pyroute2:
with K masters on one interface, re-adding every address every 10 s decoded K x K address
messages per pass (40,000 at K = 200), which was most of the daemon's CPU at scale and held
the GIL away from trio's thread for long enough to delay advertisements by up to 200 ms
(docs/benchmarks.md, "Where the time went").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import trio

from pyvrrp.core.config import IPInterface, NodeConfig
from pyvrrp.runtime.holdings import Holdings
from pyvrrp.runtime.instance import Instance
from pyvrrp.runtime.netlink import (
    AddressEvent,
    AddressSpec,
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
        self._changed = trio.Event()  # set by config_changed(): the periodic check re-looks

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

    def config_changed(self) -> None:
        """The node's configuration changed (a reload): there may be routes or rules to check
        now, or none any more."""
        self._changed.set()

    def _periodic_work(self) -> bool:
        """Whether there is anything the periodic check looks at: routes or rules, static or
        an instance's (held or not: an instance may become master later)."""
        config = self._config()
        return bool(config.routes or config.rules) or any(
            instance.holdings.routes or instance.holdings.rules for instance in self._instances()
        )

    async def reassert_loop(self) -> None:
        """Every :data:`REASSERT_INTERVAL` from the start, :meth:`reassert_routes`; without
        routes or rules to check, asleep until a reload brings some."""
        due = trio.current_time() + REASSERT_INTERVAL
        while True:
            if not self._periodic_work():
                self._changed = trio.Event()
                await self._changed.wait()
                continue
            # Each check due a whole interval after the previous one, whatever it cost.
            now = trio.current_time()
            if due < now:
                due += (now - due) // REASSERT_INTERVAL * REASSERT_INTERVAL + REASSERT_INTERVAL
            await trio.sleep_until(due)
            due += REASSERT_INTERVAL
            await self.reassert_routes()

    async def reassert_routes(self) -> None:
        """Put back the routes and rules a master holds, and the static ones, that someone
        removed (the kernel does not always report their removal)."""
        for instance in list(self._instances()):
            if not instance.router.holding_addresses:
                continue
            holdings = instance.holdings
            if holdings.routes or holdings.rules:
                await instance.install(
                    Holdings(routes=holdings.routes, rules=holdings.rules), reassert=True
                )
        await self._reassert_static_all()

    async def reassert_all(self, *, announce_all: bool = False) -> None:
        """Put back what a master holds and someone removed; announce what was put back
        (everything with ``announce_all``).

        Only missing addresses are added (see the module docstring); each interface's
        addresses are read once per call.
        """
        present: dict[str, set[IPInterface] | None] = {}
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
            missing = Holdings(
                tuple([s for s in up.addresses if not await self._there(s, present)]),
                tuple([s for s in up.excluded if not await self._there(s, present)]),
                up.routes,
                up.rules,
            )
            added = await instance.install(missing, reassert=True)
            for spec in added:
                known = present.get(spec.dev)
                if known is not None:
                    known.add(spec.address)
            if announce_all or added:
                await instance.announce(list(up.specs) if announce_all else added)
        await self._reassert_static_all()

    async def _there(self, spec: AddressSpec, present: dict[str, set[IPInterface] | None]) -> bool:
        """Whether ``spec`` is on its interface, as read once per pass (False when the read
        failed: then it is added, and the kernel says whether it was there)."""
        if spec.dev not in present:
            try:
                present[spec.dev] = set(await self._netlink.addresses(spec.dev))
            except NetlinkError as exc:
                log.error("cannot read the addresses of %s: %s", spec.dev, exc)
                present[spec.dev] = None
        known = present[spec.dev]
        return known is not None and spec.address in known

    async def _reassert_static_all(self) -> None:
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
