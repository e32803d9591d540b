"""Sending the gratuitous ARP / unsolicited NA burst for an instance's addresses.

:mod:`pyvrrp.runtime.frames` builds the frames and owns the AF_PACKET sockets; this module
decides which frames go out of which interface. Nothing here waits: the interface's MAC
comes from the packet socket bound to it (no netlink round trip), and the first round of the
burst leaves frame by frame as each is built, so the first GARP of a new master goes out
before the next frame is even prepared.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from pyvrrp.runtime.frames import (
    AnnounceError,
    Announcer,
    gratuitous_arp,
    ipv6_forwarding,
    unsolicited_na,
)
from pyvrrp.runtime.netlink import AddressSpec

log = logging.getLogger("pyvrrp")


class Announcements(Protocol):
    """Announces addresses to the segment (the runtime's view; tests record instead)."""

    async def announce(self, specs: Sequence[AddressSpec], repeat: int) -> None: ...

    def forget(self, interface: str) -> None:
        """The interface changed or was recreated: what is cached about it is stale."""


class LinkAnnouncements:
    """The real announcer: frames on AF_PACKET sockets, one per interface."""

    def __init__(self) -> None:
        self._announcers: dict[str, Announcer] = {}
        self._not_ethernet: set[str] = set()

    def forget(self, interface: str) -> None:
        """The interface changed (or was recreated): open it again next time."""
        self._not_ethernet.discard(interface)
        announcer = self._announcers.pop(interface, None)
        if announcer is not None:
            announcer.close()

    async def announce(self, specs: Sequence[AddressSpec], repeat: int) -> None:
        if repeat < 1:
            return
        bursts: dict[str, list[bytes]] = {}
        failed: set[str] = set()
        for spec in specs:
            if spec.dev in failed:
                continue
            announcer = self._announcer(spec.dev)
            frame = None if announcer is None else self._frame(announcer, spec)
            if announcer is None or frame is None:
                failed.add(spec.dev)
                continue
            if self._send(announcer, [frame]):  # the first round, frame by frame
                bursts.setdefault(spec.dev, []).append(frame)
            else:
                failed.add(spec.dev)
        for _ in range(repeat - 1):
            for dev, frames in bursts.items():
                announcer = self._announcers.get(dev)
                if dev in failed or announcer is None or not self._send(announcer, frames):
                    failed.add(dev)

    def _announcer(self, dev: str) -> Announcer | None:
        announcer = self._announcers.get(dev)
        if announcer is None:
            try:
                announcer = self._announcers[dev] = Announcer(dev)
            except AnnounceError as exc:
                log.error("cannot announce addresses on %s: %s", dev, exc)
                return None
        return announcer

    def _send(self, announcer: Announcer, frames: list[bytes]) -> bool:
        try:
            announcer.send(frames)
        except AnnounceError as exc:
            log.error("cannot announce addresses on %s: %s", announcer.interface, exc)
            self.forget(announcer.interface)
            return False
        return True

    def _frame(self, announcer: Announcer, spec: AddressSpec) -> bytes | None:
        mac = announcer.mac
        if len(mac) != 6:
            if spec.dev not in self._not_ethernet:
                self._not_ethernet.add(spec.dev)
                log.warning(
                    "%s has no Ethernet address (%s): its addresses are not announced",
                    spec.dev,
                    mac.hex(":") or "none",
                )
            return None
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
