"""The node's transports and their receive loops: one per (interface, family) in use, each
handing a received packet to the instance with its VRID (what tells the virtual routers on
one link apart). A transport that reads in batches (:class:`BatchTransport`) has each batch
handed out in one go: the instances handle what they can at once (their fast path), so a
packet costs no task switch.

Packets that reach no instance (a header the transport rejected, a VRID nobody here runs)
are counted per interface and reason: the status reports them as ``interface_drops``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

import trio

from pyvrrp.core.config import InstanceConfig
from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import DecodeError, DropReason, Family, IPAddress, peek_vrid
from pyvrrp.runtime.instance import Instance
from pyvrrp.runtime.logs import RateLimiter
from pyvrrp.runtime.quiet import Source
from pyvrrp.runtime.sockfilter import Wanted
from pyvrrp.runtime.transport import BatchTransport, Receiver, Transport, TransportFactory

log = logging.getLogger("pyvrrp")

LinkKey = tuple[str, Family]


class Watcher(Protocol):
    """What the demultiplexer needs of an absorber with kernel timers (absorb.Absorber)."""

    watch_fd: int | None

    def expired(self) -> list[int]: ...


# While handing out a batch, the routers due are called (``before_batch``) again after every
# DUE_CHECK packets: a full batch of peers' advertisements is a few milliseconds of work, and
# a master's advertisement that came due meanwhile would otherwise wait for its end.
DUE_CHECK = 16


class Demux:
    """Opens, reopens and closes transports as the instances change; routes packets."""

    def __init__(self, transport_factory: TransportFactory) -> None:
        self._transport_factory = transport_factory
        self._transports: dict[LinkKey, Transport] = {}
        self._receivers: dict[LinkKey, list[trio.CancelScope]] = {}
        # Each transport's absorber with kernel timers (pyvrrp/runtime/absorb.py) and the
        # loop that hands its expired timers to their instances.
        self._watchers: dict[LinkKey, tuple[Watcher, trio.CancelScope]] = {}
        self._demux: dict[LinkKey, dict[int, Instance]] = {}
        self._unknown_vrid: dict[LinkKey, int] = {}
        self._header_errors: dict[LinkKey, int] = {}
        self._logs = RateLimiter()
        # Called before each batch of received packets is handed out and after every
        # DUE_CHECK packets of it (the node: the routers due now first,
        # pyvrrp/runtime/schedule.py Schedule.fire_due).
        self.before_batch: Callable[[], None] = _nothing

    def update(self, live: Iterable[Instance], nursery: trio.Nursery) -> None:
        """Open (or reopen) one transport per (interface, family) ``live`` uses; close the
        rest. Receive loops run in ``nursery``."""
        live = list(live)
        wanted: dict[LinkKey, bool] = {}
        for instance in live:
            key = (instance.config.interface, instance.config.family)
            wanted[key] = wanted.get(key, False) or not instance.config.unicast_peers
        for key in list(self._transports):
            if key not in wanted:
                self._close(key)
        self._demux = {key: {} for key in wanted}
        for key, multicast in wanted.items():
            transport = self._transports.get(key)
            if transport is not None and transport.multicast != multicast:
                self._close(key)
                transport = None
            if transport is None:
                transport = self._transport_factory(key[0], key[1], multicast=multicast)
                self._transports[key] = transport
                scope = trio.CancelScope()
                self._receivers[key] = [scope]
                nursery.start_soon(self._receive_loop, key, transport, scope)
        self._sort(live, nursery)
        polls: dict[LinkKey, Callable[[], None] | None] = {}
        for key, transport in self._transports.items():
            poll = getattr(transport, "poll", None)
            polls[key] = None if poll is None else partial(self._poll, key, poll)
        for instance in live:
            key = (instance.config.interface, instance.config.family)
            instance.transport = self._transports[key]
            instance.poll = polls[key]
            self._demux[key][instance.config.vrid] = instance

    def _sort(self, live: list[Instance], nursery: trio.Nursery) -> None:
        """Tell each transport that can sort its traffic what its instances accept, and read
        its second socket (what they do not: read to be counted) in a loop of its own."""
        for key, transport in self._transports.items():
            set_wanted = getattr(transport, "set_wanted", None)
            if set_wanted is None:
                continue
            accepts = [
                (c.vrid, c.version.numbers, _accepted_sources(c))
                for c in (i.config for i in live)
                if (c.interface, c.family) == key
            ]
            set_wanted(Wanted.of(key[1], accepts))
            self._watch(key, transport, nursery)
            rest = getattr(transport, "rest", None)
            if rest is not None and len(self._receivers[key]) == 1:
                scope = trio.CancelScope()
                self._receivers[key].append(scope)
                nursery.start_soon(self._rest_loop, key, rest, scope)

    def close_all(self) -> None:
        """Close every transport (the node is stopping; its nursery cancels the loops)."""
        for transport in self._transports.values():
            transport.close()

    def drops(self) -> dict[str, dict[str, int]]:
        """Packets dropped before reaching an instance, per interface and reason."""
        result: dict[str, dict[str, int]] = {}
        for counts, reason in (
            (self._unknown_vrid, DropReason.UNKNOWN_VRID),
            (self._header_errors, DropReason.IP_HEADER),
        ):
            for (interface, family), count in counts.items():
                result.setdefault(f"{interface}/ipv{family.value}", {})[reason.value] = count
        return result

    def _close(self, key: LinkKey) -> None:
        for scope in self._receivers.pop(key):
            scope.cancel()
        watcher = self._watchers.pop(key, None)
        if watcher is not None:
            watcher[1].cancel()
        self._transports.pop(key).close()

    async def _receive_loop(
        self, key: LinkKey, transport: Transport, scope: trio.CancelScope
    ) -> None:
        with scope:
            if isinstance(transport, BatchTransport):
                while True:
                    self._hand_out(key, await transport.receive_batch())
            while True:
                try:
                    packet: PacketReceived | DecodeError = await transport.receive()
                except DecodeError as exc:
                    packet = exc
                self._dispatch(key, packet)

    def _hand_out(self, key: LinkKey, batch: list[PacketReceived | DecodeError]) -> None:
        """Hand a batch out, the routers due called first and after every DUE_CHECK."""
        before = self.before_batch
        before()
        for index, item in enumerate(batch, 1):
            self._dispatch(key, item)
            if not index % DUE_CHECK:
                before()  # a deadline may have come while the batch was handled

    def quiet_sources(self) -> dict[int, Source]:
        """The advertisement sockets a quiet wait may read itself (pyvrrp/runtime/quiet.py),
        and the kernel timers' ring buffers: file descriptor -> read what it holds and hand
        it out."""
        sources: dict[int, Source] = {}
        for key, transport in self._transports.items():
            receiver = getattr(transport, "receiver", None)
            if isinstance(receiver, Receiver):
                sources[receiver.sock.fileno()] = partial(self._read_now, key, receiver)
        for key, (absorber, _) in self._watchers.items():
            if absorber.watch_fd is not None:
                sources[absorber.watch_fd] = partial(self._expired, key, absorber)
        return sources

    def _watch(self, key: LinkKey, transport: Transport, nursery: trio.Nursery) -> None:
        """Hand the expired kernel timers of ``key``'s absorber to their instances."""
        absorber = getattr(transport, "absorber", None)
        watcher = self._watchers.get(key)
        if watcher is not None and watcher[0] is absorber and absorber.watch_fd is not None:
            return
        if watcher is not None:
            watcher[1].cancel()
            del self._watchers[key]
        if absorber is None or getattr(absorber, "watch_fd", None) is None:
            return
        scope = trio.CancelScope()
        self._watchers[key] = (absorber, scope)
        nursery.start_soon(self._watch_loop, key, absorber, absorber.watch_fd, scope)

    async def _watch_loop(
        self, key: LinkKey, absorber: Watcher, fd: int, scope: trio.CancelScope
    ) -> None:
        with scope:
            while True:
                try:
                    await trio.lowlevel.wait_readable(fd)
                except (trio.ClosedResourceError, OSError):
                    return  # the absorber closed (its transport did, or gave up the timers)
                self._expired(key, absorber)

    def _expired(self, key: LinkKey, absorber: Watcher) -> bool:
        """A kernel timer of ``key``'s link expired: every instance on the link looks at
        its deadline (the ring's records only hint at which one; absorb.py)."""
        if absorber.expired():
            for instance in list(self._demux.get(key, {}).values()):
                instance.kernel_expired()
        return True

    def _read_now(self, key: LinkKey, receiver: Receiver) -> bool:
        self._hand_out(key, receiver.poll())
        return not receiver.full

    async def _rest_loop(self, key: LinkKey, rest: Receiver, scope: trio.CancelScope) -> None:
        """What the advertisement socket's filter left out: read only to be counted."""
        with scope:
            while True:
                for item in await rest.receive_batch():
                    self._dispatch(key, item)

    def _poll(self, key: LinkKey, poll: Callable[[], list[PacketReceived | DecodeError]]) -> None:
        """Hand out what ``key``'s transport holds now (an instance about to time out)."""
        for item in poll():
            self._dispatch(key, item)

    def _dispatch(self, key: LinkKey, packet: PacketReceived | DecodeError) -> None:
        """Hand one received packet to its instance, or count why it reaches none."""
        if isinstance(packet, DecodeError):
            self._header_errors[key] = self._header_errors.get(key, 0) + 1
            self._logs.log(
                log, logging.INFO, ("header", key), "%s: dropped a packet: %s", key[0], packet
            )
            return
        vrid = peek_vrid(packet.message)
        routes = self._demux.get(key, {})
        instance = routes.get(vrid) if vrid is not None else None
        if instance is None:
            self._unknown_vrid[key] = self._unknown_vrid.get(key, 0) + 1
            self._logs.log(
                log,
                logging.INFO,
                ("vrid", key),  # one line per interface, not per VRID: floods
                "%s: dropped an advertisement from %s for VRID %s: %s",
                key[0],
                packet.source,
                vrid,
                "no instance has this VRID here",
            )
            return
        instance.deliver(packet)


def _nothing() -> None:
    """``before_batch`` of a Demux without a schedule."""


def _accepted_sources(config: InstanceConfig) -> tuple[IPAddress, ...] | None:
    """The sources an instance accepts advertisements from, None for anyone: the router's
    rule (only a unicast instance with ``unicast_peers_only`` checks them)."""
    if config.unicast_peers and config.unicast_peers_only:
        return config.unicast_peers
    return None
