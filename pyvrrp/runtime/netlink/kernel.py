"""The kernel's :class:`~pyvrrp.runtime.netlink.contract.Netlink`: addresses, routes, rules and
link/address events.

This module decides nothing: it adds and removes what the driver asks for, answers questions
about interfaces, and forwards the kernel's link and address notifications as events.

Who does what, and why
----------------------
Addresses are on the clock: a new master installs them between its first advertisement and
its first gratuitous ARP, which must leave within a millisecond. :class:`PyrouteNetlink`
therefore splits the work three ways (docs/design.md, "Why addresses bypass pyroute2"):

- *addresses* are added and removed on trio's thread through
  :mod:`pyvrrp.runtime.netlink.rtnl`: a message encoded by hand on a netlink socket of our
  own. The kernel handles it inside
  ``sendmsg`` and queues the acknowledgement before the call returns, so nothing waits (one
  request costs 25 µs warm, up to 0.2 ms in a process idle for a second). Only "already
  there" (EEXIST) needs a second look, an address dump, and that goes to the owner thread.
  :meth:`Netlink.apply` does not yield between addresses: the driver's advertisement, its
  addresses and its announcement run back to back.
- *reads* (links, addresses, the source address) are dumps read on trio's thread through
  the same socket (:mod:`pyvrrp.runtime.netlink.reads`), also the one behind an "already
  there" (EEXIST) answer; so is :meth:`PyrouteNetlink.delivers_locally`, one route question
  (a new IPv6 address is delivered locally only once the kernel's address work has run);
- the *owner* thread creates one pyroute2 ``IPRoute`` and runs routes and rules, one
  request at a time and in the order they were made, from a queue. It starts, and pyroute2
  (about 12 MB of memory) is imported, with the first route or rule: a node without any
  never loads it.
  pyroute2 0.9's synchronous ``IPRoute`` drives a private asyncio event loop kept in
  thread-local storage: it belongs to the thread that created it, never trio's. The owner
  reports each result with ``TrioToken.run_sync_soon``, which is safe from any thread and
  never blocks it; the waiting trio task sleeps in ``trio.lowlevel.wait_task_rescheduled``.
  We do not use ``trio.to_thread.run_sync``: its threads come from a shared cache, so two
  requests could run on different threads, and the ``IPRoute`` would be used off its
  thread. ``trio.from_thread.run_sync`` would block the worker until trio picks the result
  up.
- the *monitor* (:mod:`pyvrrp.runtime.netlink.monitor`), a trio system task (the object
  has no nursery to live in), reads the kernel's link and address notifications and
  publishes them as events; it reads the notifications of a master's own adds once the
  driver yields, not in the middle of the takeover.

Cancellation: a request to the owner thread whose caller is cancelled before the thread has
started it is dropped. One already started runs to completion (netlink requests take a
fraction of a millisecond and cannot be interrupted) and returns its result; the
cancellation is delivered at the caller's next checkpoint, so the caller never loses track of
whether, say, a route was added. Address requests complete before anything can cancel them.

Namespaces: ``open_netlink(netns=NAME)`` moves its owner thread (only it: setns(2) acts per
thread) into that network namespace and creates its netlink sockets there, so interface
names resolve there and the rest of the process stays where it is. The lab and the tests use
this; the daemon uses its own namespace.

What the events and the answers mean is in :mod:`pyvrrp.runtime.netlink.contract`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import queue
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import outcome
import trio

from pyvrrp.core.config import IPInterface, RouteConfig, RuleConfig
from pyvrrp.core.packet import Family, IPAddress
from pyvrrp.runtime.netlink import reads
from pyvrrp.runtime.netlink.contract import (
    AddressSpec,
    Change,
    EventHub,
    LinkState,
    NetlinkError,
    NetlinkEvent,
    NetlinkStatistics,
    interface_missing,
    kernel_error,
)
from pyvrrp.runtime.netlink.monitor import Monitor
from pyvrrp.runtime.netlink.netns import enter_netns, in_netns
from pyvrrp.runtime.netlink.rtnl import AddressSocket

__all__ = ["PyrouteNetlink", "open_netlink"]

_T = TypeVar("_T")


class _Job:
    """One request for the owner thread, and the trio task waiting for it."""

    QUEUED, RUNNING, ABANDONED = range(3)

    def __init__(self, fn: Callable[[Any], Any], task: trio.lowlevel.Task) -> None:
        self.fn = fn
        self.task = task
        self.state = self.QUEUED
        self.lock = threading.Lock()

    def begin(self) -> bool:
        with self.lock:
            if self.state == self.ABANDONED:
                return False
            self.state = self.RUNNING
            return True

    def abort(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        with self.lock:
            if self.state == self.QUEUED:
                self.state = self.ABANDONED
                return trio.lowlevel.Abort.SUCCEEDED
        return trio.lowlevel.Abort.FAILED  # running: wait for it, then deliver the cancel


class PyrouteNetlink:
    """:class:`Netlink` on the kernel, through pyroute2 (see the module docstring).

    Use as ``async with open_netlink() as nl:``. ``netns`` runs it inside that network
    namespace (an ``ip netns`` name); only its own thread and sockets move there.
    """

    def __init__(self, *, netns: str | None = None) -> None:
        self._netns = netns
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._hub = EventHub()
        self._token: trio.lowlevel.TrioToken | None = None
        self._owner: threading.Thread | None = None
        self._owner_done = trio.Event()
        self._monitor = Monitor(self._hub, netns=netns)
        self._addresses: AddressSocket | None = None
        self._opened = False
        self._closed = False
        self._requests = 0

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True):
            await self.aclose()

    async def open(self) -> None:
        """Start the owner thread and the monitor; raises NetlinkError if netlink cannot be
        opened."""
        if self._opened:
            raise RuntimeError("PyrouteNetlink.open() called twice")
        self._opened = True
        self._token = trio.lowlevel.current_trio_token()
        try:
            try:
                self._addresses = in_netns(self._netns, AddressSocket)
            except OSError as exc:
                raise NetlinkError(f"cannot open netlink: {exc.strerror or exc}") from None
            await self._monitor.start()
        except BaseException:
            with trio.CancelScope(shield=True):
                await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop the monitor and the owner thread, end every subscription. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._hub.close()
        await self._monitor.aclose()
        if self._addresses is not None:
            self._addresses.close()
        if self._owner is not None:
            self._jobs.put(None)
            await self._owner_done.wait()
            self._owner.join()

    def statistics(self) -> NetlinkStatistics:
        """Counters since open."""
        return NetlinkStatistics(
            requests=self._requests + (self._addresses.requests if self._addresses else 0),
            events=self._hub.events,
            subscribers=self._hub.subscribers,
            subscriber_overflows=self._hub.overflows,
            kernel_overflows=self._monitor.kernel_overflows,
        )

    # The protocol.

    async def link(self, name: str) -> LinkState | None:
        return await reads.get_link(self._address_socket(), name)

    async def primary_address(self, interface: str, family: Family) -> IPAddress | None:
        return await reads.get_primary_address(self._address_socket(), interface, family)

    async def addresses(self, interface: str) -> list[IPInterface]:
        return await reads.get_addresses(self._address_socket(), interface)

    async def delivers_locally(self, address: IPAddress) -> bool:
        return await reads.delivers_locally(self._address_socket(), address)

    async def add_address(self, spec: AddressSpec) -> bool:
        await trio.lowlevel.checkpoint_if_cancelled()
        added = await self._address(spec, adding=True)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return added

    async def remove_address(self, spec: AddressSpec) -> bool:
        await trio.lowlevel.checkpoint_if_cancelled()
        removed = await self._address(spec, adding=False)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return removed

    async def add_route(self, route: RouteConfig) -> bool:
        return await self._call(lambda ipr: _requests().add_route(ipr, route=route))

    async def remove_route(self, route: RouteConfig) -> bool:
        return await self._call(lambda ipr: _requests().remove_route(ipr, route=route))

    async def add_rule(self, rule: RuleConfig) -> bool:
        return await self._call(lambda ipr: _requests().add_rule(ipr, rule=rule))

    async def remove_rule(self, rule: RuleConfig) -> bool:
        return await self._call(lambda ipr: _requests().remove_rule(ipr, rule=rule))

    async def apply(self, changes: Sequence[Change]) -> list[bool | NetlinkError]:
        # Addresses on trio's thread, routes and rules on the owner thread, in order. Not a
        # schedule point unless a route or rule is among the changes: between a master's
        # advertisement, its addresses and its announcement, no other task runs.
        await trio.lowlevel.checkpoint_if_cancelled()
        results: list[bool | NetlinkError] = []
        others: list[Change] = []
        for change in changes:
            if not isinstance(change.item, AddressSpec):
                others.append(change)
                continue
            if others:
                results += await self._apply_others(others)
                others = []
            try:
                results.append(await self._address(change.item, adding=change.add))
            except NetlinkError as exc:
                results.append(exc)
        if others:
            results += await self._apply_others(others)
        return results

    async def _apply_others(self, changes: Sequence[Change]) -> list[bool | NetlinkError]:
        frozen = tuple(changes)
        return await self._call(lambda ipr: _requests().apply_changes(ipr, changes=frozen))

    def subscribe(self) -> trio.MemoryReceiveChannel[NetlinkEvent]:
        if self._monitor.error is not None:
            raise NetlinkError(
                f"the netlink monitor stopped: {self._monitor.error}; restart pyvrrp"
            )
        return self._hub.subscribe()

    # Addresses, on trio's thread (see pyvrrp.runtime.netlink.rtnl for why).

    def _address_socket(self) -> AddressSocket:
        if self._closed or self._addresses is None:
            raise trio.ClosedResourceError("netlink is closed")
        return self._addresses

    async def _address(self, spec: AddressSpec, *, adding: bool) -> bool:
        sock = self._address_socket()
        index = sock.index(spec.dev)
        if index is not None:
            ack = await sock.request(reads.address_request(spec, index, adding=adding))
            if ack.error == 0:
                return True
            if adding and ack.error == errno.EEXIST:
                return await reads.existing_address(sock, spec)
            if not adding and ack.error == errno.EADDRNOTAVAIL:
                return False
            if ack.error != errno.ENODEV:  # else the interface went away meanwhile
                raise kernel_error(reads.address_operation(spec, adding), ack.error, ack.message)
        # An interface that does not exist holds no address.
        if adding:
            raise interface_missing(reads.address_operation(spec, adding), spec.dev)
        return False

    # Talking to the owner thread.

    async def _call(self, fn: Callable[[Any], _T]) -> _T:
        if self._closed or not self._opened:
            raise trio.ClosedResourceError("netlink is closed")
        await trio.lowlevel.checkpoint_if_cancelled()  # don't queue work nobody will wait for
        if self._owner is None:  # the first route or rule: pyroute2 loads now
            self._owner = threading.Thread(
                target=self._owner_main, name="pyvrrp-netlink", daemon=True
            )
            self._owner.start()
        self._requests += 1
        job = _Job(fn, trio.lowlevel.current_task())
        self._jobs.put(job)
        # The owner thread reschedules us with the outcome: its value or its exception.
        result: _T = await trio.lowlevel.wait_task_rescheduled(job.abort)
        return result

    def _to_trio(self, fn: Callable[[], object]) -> None:
        assert self._token is not None
        with contextlib.suppress(trio.RunFinishedError):  # trio is gone: nobody waits
            self._token.run_sync_soon(fn)

    def _owner_main(self) -> None:
        ipr: Any = None
        startup: BaseException | None = None
        try:
            if self._netns is not None:
                enter_netns(self._netns)
            from pyroute2 import IPRoute  # about 12 MB: only for routes and rules

            ipr = IPRoute(groups=0, ext_ack=True)
        except NetlinkError as exc:
            startup = exc
        except OSError as exc:
            startup = NetlinkError(
                f"cannot open netlink: {exc.strerror or exc}; run as root or grant CAP_NET_ADMIN",
                errno=exc.errno,
            )
        try:
            while (job := self._jobs.get()) is not None:
                if not job.begin():
                    continue
                if startup is not None:
                    result: outcome.Outcome[Any] = outcome.Error(startup)
                else:
                    result = outcome.capture(job.fn, ipr)
                self._to_trio(functools.partial(trio.lowlevel.reschedule, job.task, result))
        finally:
            if ipr is not None:
                ipr.close()
            self._to_trio(self._owner_done.set)


def _requests() -> Any:
    """:mod:`pyvrrp.runtime.netlink.requests` (and pyroute2 with it), loaded on first use by
    the owner thread."""
    from pyvrrp.runtime.netlink import requests

    return requests


def open_netlink(*, netns: str | None = None) -> PyrouteNetlink:
    """The kernel's netlink, to use as ``async with open_netlink() as nl:``.

    ``netns`` (an ``ip netns`` name) works inside that namespace: for the lab and tests.
    """
    return PyrouteNetlink(netns=netns)
