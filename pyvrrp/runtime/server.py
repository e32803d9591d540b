"""A small server for one-request connections: the control socket and the metrics endpoint.

Both answer one request per connection, from clients that may be slow, silent or hostile,
inside a daemon that must keep routing. This module holds what they share; the protocol
(JSON lines, HTTP/1.1) is a :class:`Service`'s:

- the accept loop: one task per connection. Accept errors that mean "out of resources for
  now" (EMFILE, ENFILE, ENOMEM, ENOBUFS) are logged and retried after a pause, as
  ``trio.serve_listeners`` does, instead of ending the server during a flood of clients;
- the connection limit: past ``max_clients`` connections at once, a new one gets the
  service's busy answer (given :data:`BUSY_TIMEOUT` to be taken) and is closed;
- the deadlines of each connection: the whole request within ``request_timeout`` from the
  connection (a client trickling a byte at a time cannot extend it), the answer taken
  within ``send_timeout``; what the service does in between (a reload, a render) is not
  timed, so it is never cut off half done;
- for HTTP, a lingering close: closing with unread request bytes in the kernel's buffer
  sends a RST that can destroy the answer before the client reads it, so the server says it
  is done (EOF) and lets the client close first, bounded in time and bytes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Sequence
from typing import Final, Generic, NoReturn, Protocol, TypeVar

import attrs
import trio

__all__ = ["BUSY_TIMEOUT", "BoundedServer", "Reply", "Service"]

log = logging.getLogger("pyvrrp")

BUSY_TIMEOUT: Final = 1.0
"""Seconds a client turned away (too many connections) has to take its answer."""
_ACCEPT_RETRY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_ACCEPT_RETRY_SLEEP: Final = 0.1
_LINGER_TIMEOUT: Final = 1.0
_LINGER_BYTES: Final = 64 * 1024

RequestT = TypeVar("RequestT")


@attrs.frozen
class Reply:
    """The bytes to send back before closing the connection."""

    data: bytes


class Service(Protocol[RequestT]):
    """The protocol a :class:`BoundedServer` speaks."""

    async def receive(self, stream: trio.SocketStream) -> RequestT | Reply | None:
        """Read one request: the request, a :class:`Reply` to send at once (the request is
        malformed or too long), or None when the client left without asking. Runs under the
        request timeout; a broken connection may raise trio's stream errors."""
        ...

    def timed_out(self) -> Reply:
        """The answer to a client whose request did not arrive within the request timeout."""
        ...

    def busy(self) -> Reply:
        """The answer to a client beyond the connection limit."""
        ...

    async def answer(self, request: RequestT, stream: trio.SocketStream) -> Reply:
        """The answer to ``request`` (``stream`` says who asked). Must not raise."""
        ...


class BoundedServer(Generic[RequestT]):
    """Serves ``service`` on listeners with a connection limit and deadlines (see above)."""

    def __init__(
        self,
        name: str,
        service: Service[RequestT],
        *,
        max_clients: int,
        request_timeout: float,
        send_timeout: float,
        linger: bool = False,
    ) -> None:
        self.name = name
        self.service = service
        self.max_clients = max_clients
        self.request_timeout = request_timeout
        self.send_timeout = send_timeout
        self.linger = linger
        #: Connections being served now (those turned away as busy are not counted).
        self.clients = 0

    async def serve(self, listeners: Sequence[trio.SocketListener]) -> NoReturn:
        """Accept on every listener and serve each connection in its own task, until
        cancelled; the listeners are closed then. Raises what accept raises, except a
        temporary lack of resources."""
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept, listener, nursery)
        raise AssertionError("the accept loops never return")  # pragma: no cover

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:  # closed when the server stops, as trio.serve_listeners does
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_RETRY_ERRNOS:
                        raise
                    log.error("%s: cannot accept a connection: %s", self.name, exc)
                    await trio.sleep(_ACCEPT_RETRY_SLEEP)
                    continue
                nursery.start_soon(self.connection, stream)

    async def connection(self, stream: trio.SocketStream) -> None:
        """Serve one connection: read a request, answer it, close."""
        async with stream:
            if self.clients >= self.max_clients:
                await self._send(stream, self.service.busy(), BUSY_TIMEOUT)
                return
            self.clients += 1
            try:
                reply = await self._exchange(stream)
                if reply is not None:
                    await self._send(stream, reply, self.send_timeout)
            finally:
                self.clients -= 1

    async def _exchange(self, stream: trio.SocketStream) -> Reply | None:
        try:
            with trio.fail_after(self.request_timeout):
                received = await self.service.receive(stream)
        except trio.TooSlowError:
            return self.service.timed_out()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None  # the client went away
        if received is None or isinstance(received, Reply):
            return received
        return await self.service.answer(received, stream)

    async def _send(self, stream: trio.SocketStream, reply: Reply, timeout: float) -> None:
        # A client that never reads must not hold its task forever.
        with (
            trio.move_on_after(timeout),
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await stream.send_all(reply.data)
            if not self.linger:
                return
            await stream.send_eof()
            with trio.move_on_after(_LINGER_TIMEOUT):
                drained = 0
                while drained <= _LINGER_BYTES:
                    chunk = await stream.receive_some(_LINGER_BYTES)
                    if not chunk:
                        break
                    drained += len(chunk)
