"""The netlink monitor: a trio task reading the kernel's link and address notifications.

It reads a non-blocking netlink socket bound to RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR and
RTNLGRP_IPV6_IFADDR and decodes with :mod:`pyvrrp.runtime.netlink.rtnl`: the kernel pushes
every change and nothing polls on a timer. It used to be a thread decoding with pyroute2; the
notifications of a master's own address adds woke it in the middle of the takeover, and its
GIL hand-overs cost 0.3-0.5 ms there. As a task it reads them once the driver yields.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
from collections.abc import Iterable
from ipaddress import IPv4Interface, IPv6Interface
from typing import Final

import trio

from pyvrrp.runtime.netlink.contract import (
    AddressEvent,
    EventHub,
    LinkEvent,
    LinkState,
    NetlinkError,
    NetlinkEvent,
)
from pyvrrp.runtime.netlink.netns import in_netns
from pyvrrp.runtime.netlink.rtnl import (
    AddressMessage,
    LinkMessage,
    decode_notifications,
    dump_links,
    interface_name,
    open_socket,
)

__all__ = ["Monitor", "link_state"]

logger = logging.getLogger(__name__)

# linux/if.h, linux/rtnetlink.h
IFF_UP: Final = 0x1
IFF_RUNNING: Final = 0x40
RTMGRP_LINK: Final = 0x1
RTMGRP_IPV4_IFADDR: Final = 0x10
RTMGRP_IPV6_IFADDR: Final = 0x100

_MONITOR_GROUPS: Final = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
# Room for a burst of notifications (an interface with many addresses going away) while
# the monitor task waits for its turn.
_MONITOR_RCVBUF: Final = 4 * 1024 * 1024


def link_state(message: LinkMessage) -> LinkState:
    """The :class:`LinkState` a link message describes."""
    return LinkState(
        name=message.name,
        index=message.index,
        up=bool(message.flags & IFF_UP) and bool(message.flags & IFF_RUNNING),
        mac=message.mac,
        mtu=message.mtu,
    )


class _Translator:
    """Turns rtnetlink notifications into events; ``sock`` names unknown interfaces."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._links: dict[int, LinkState] = {}

    def seed(self, messages: Iterable[LinkMessage]) -> None:
        self._links = {}
        for message in messages:
            if message.family == socket.AF_UNSPEC:
                self._links[message.index] = link_state(message)

    def translate(self, messages: Iterable[LinkMessage | AddressMessage]) -> list[NetlinkEvent]:
        events: list[NetlinkEvent] = []
        for message in messages:
            if isinstance(message, LinkMessage):
                # AF_BRIDGE notifications describe bridge ports, not the link itself: a port
                # leaving its bridge comes as an AF_BRIDGE RTM_DELLINK.
                if message.family == socket.AF_UNSPEC:
                    self._link(message, events)
                continue
            name = self._name(message.index)
            if name is None:
                logger.debug("address event on unknown interface %s", message.index)
                continue
            address = (message.address, message.prefixlen)
            interface = (
                IPv4Interface(address) if len(message.address) == 4 else IPv6Interface(address)
            )
            events.append(AddressEvent(name, interface, message.present))
        return events

    def _link(self, message: LinkMessage, events: list[NetlinkEvent]) -> None:
        state = link_state(message)
        old = self._links.pop(state.index, None)
        if not message.present:
            events.append(LinkEvent(old.name if old is not None else state.name, None))
            return
        self._links[state.index] = state
        if old is not None and old.name != state.name:
            events.append(LinkEvent(old.name, None))  # renamed: the old name is gone
        if state != old:
            events.append(LinkEvent(state.name, state))

    def _name(self, index: int) -> str | None:
        known = self._links.get(index)
        if known is not None:
            return known.name
        return interface_name(self._socket, index)


#: Datagrams the monitor reads before it lets other tasks run.
_MONITOR_BATCH: Final = 64


def _discard_queued(sock: socket.socket) -> None:
    """Empty the monitor socket's queue (up to a bound, should changes keep coming)."""
    for _ in range(_MONITOR_BATCH * 100):
        try:
            sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise


def _read_events(sock: socket.socket, translator: _Translator) -> list[NetlinkEvent]:
    """The events in what is waiting on the monitor socket (up to a batch)."""
    events: list[NetlinkEvent] = []
    for _ in range(_MONITOR_BATCH):
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            break
        events += translator.translate(decode_notifications(data))
    return events


class Monitor:
    """The monitor task of one netlink object: publishes what the kernel announces on ``hub``.

    :meth:`start` opens the socket (in namespace ``netns``), reads the links and starts the
    task as a trio system task (the netlink object has no nursery for it to live in); it
    must not raise, so a failure is kept in :attr:`error` and ends every subscription.
    """

    def __init__(self, hub: EventHub, *, netns: str | None = None) -> None:
        self._hub = hub
        self._netns = netns
        self._scope = trio.CancelScope()
        self._done: trio.Event | None = None
        #: Why the monitor stopped, if it failed; subscribing then raises it.
        self.error: NetlinkError | None = None
        #: How many times the kernel dropped notifications (ENOBUFS).
        self.kernel_overflows = 0

    async def start(self) -> None:
        """Open the socket, read the links, start the task; raises NetlinkError."""
        try:
            sock = in_netns(
                self._netns,
                functools.partial(open_socket, groups=_MONITOR_GROUPS, rcvbuf=_MONITOR_RCVBUF),
            )
        except OSError as exc:
            raise NetlinkError(f"cannot open netlink: {exc.strerror or exc}") from None
        try:
            # Bound first, dumped second: no change can fall between the two.
            translator = _Translator(sock)
            translator.seed(await self._dump_links())
        except BaseException:
            sock.close()
            raise
        self._done = trio.Event()
        trio.lowlevel.spawn_system_task(self._main, sock, translator, name="pyvrrp-netlink-monitor")

    async def aclose(self) -> None:
        """Stop the task (if it was started) and wait for it."""
        self._scope.cancel()
        if self._done is not None:
            await self._done.wait()

    async def _dump_links(self) -> list[LinkMessage]:
        try:
            return await trio.to_thread.run_sync(in_netns, self._netns, dump_links)
        except OSError as exc:
            raise NetlinkError(f"cannot list the interfaces: {exc.strerror or exc}") from None

    async def _main(self, sock: socket.socket, translator: _Translator) -> None:
        try:
            with self._scope:
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        events = _read_events(sock, translator)
                    except OSError as exc:
                        if exc.errno != errno.ENOBUFS:
                            raise
                        # The kernel dropped notifications: our view and the subscribers' are
                        # stale. It drops every further one, without saying so again, until
                        # the queue has been emptied: empty it (what is queued is older than
                        # the dump), re-read the links, tell subscribers to re-read theirs.
                        _discard_queued(sock)
                        translator.seed(await self._dump_links())
                        self._kernel_overflow()
                        continue
                    self._hub.publish(events)
        except Exception as exc:
            logger.exception("the netlink monitor stopped")
            self._failed(exc)
        finally:
            sock.close()
            assert self._done is not None
            self._done.set()

    def _failed(self, exc: BaseException) -> None:
        self.error = (
            exc
            if isinstance(exc, NetlinkError)
            else NetlinkError(f"cannot watch netlink events: {exc}")
        )
        self._hub.lost()

    def _kernel_overflow(self) -> None:
        self.kernel_overflows += 1
        logger.warning("the kernel dropped netlink events; subscribers re-read the state")
        self._hub.lost()
