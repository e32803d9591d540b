"""Sending the gratuitous ARP / unsolicited NA burst for an instance's addresses.

:mod:`pyvrrp.runtime.announce` builds the frames and owns the AF_PACKET sockets; this module
decides which frames go out of which interface, with that interface's MAC, learned from
netlink once and cached so the first frame leaves without a netlink round trip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from pyvrrp.runtime.announce import (
    AnnounceError,
    Announcer,
    gratuitous_arp,
    ipv6_forwarding,
    unsolicited_na,
)
from pyvrrp.runtime.netlink import AddressSpec, Netlink

log = logging.getLogger("pyvrrp")


class Announcements(Protocol):
    """Announces addresses to the segment (the runtime's view; tests record instead)."""

    async def announce(self, specs: Sequence[AddressSpec], repeat: int) -> None: ...

    def forget(self, interface: str) -> None:
        """The interface changed or was recreated: what is cached about it is stale."""


class LinkAnnouncements:
    """The real announcer: frames on AF_PACKET sockets, one per interface."""

    def __init__(self, netlink: Netlink) -> None:
        self._netlink = netlink
        self._announcers: dict[str, Announcer] = {}
        self._macs: dict[str, bytes] = {}

    def forget(self, interface: str) -> None:
        """The interface changed (or was recreated): look it up again next time."""
        self._macs.pop(interface, None)
        announcer = self._announcers.pop(interface, None)
        if announcer is not None:
            announcer.close()

    async def announce(self, specs: Sequence[AddressSpec], repeat: int) -> None:
        by_dev: dict[str, list[bytes]] = {}
        for spec in specs:
            frame = await self._frame(spec)
            if frame is not None:
                by_dev.setdefault(spec.dev, []).append(frame)
        for dev, frames in by_dev.items():
            try:
                announcer = self._announcers.get(dev)
                if announcer is None:
                    announcer = self._announcers[dev] = Announcer(dev)
                for _ in range(repeat):
                    announcer.send(frames)
            except AnnounceError as exc:
                log.error("cannot announce addresses on %s: %s", dev, exc)
                self.forget(dev)

    async def _frame(self, spec: AddressSpec) -> bytes | None:
        mac = self._macs.get(spec.dev)
        if mac is None:
            link = await self._netlink.link(spec.dev)
            if link is None:
                return None
            mac = self._macs[spec.dev] = link.mac
        address = spec.address.ip
        if isinstance(address, IPv4Address):
            return gratuitous_arp(mac, address)
        assert isinstance(address, IPv6Address)
        # keepalived (vrrp_ndisc.c) sends the NA from the announced address itself.
        return unsolicited_na(mac, address, address, router=ipv6_forwarding(spec.dev))

    def close(self) -> None:
        for announcer in self._announcers.values():
            announcer.close()
        self._announcers.clear()
