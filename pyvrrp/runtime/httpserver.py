"""A minimal HTTP/1.1 server for a few fixed pages (the metrics endpoint), on h11.

h11 parses the request head and frames the answer (RFC 9112); this module adds what h11
leaves to its user, and :mod:`pyvrrp.runtime.server` the connection limit and deadlines.
One request per connection, answered with ``Connection: close``:

- ``GET`` or ``HEAD`` of a known path: 200 with the page (``HEAD``: its headers only, RFC 9110
  §9.3.2); an unknown path 404; another method on a known path 405 with ``Allow``; a page
  whose body raises 500 (logged: the daemon keeps routing);
- the request target in origin-form (its query ignored), absolute-form (``http(s)://``), or
  ``*`` for ``OPTIONS`` (RFC 9112 §3.2); anything else 400;
- a malformed head 400 (h11's verdict, plus obs-fold, which RFC 9112 §5.2 lets a server
  reject and h11 would unfold); HTTP other than 1.x 505; a head, with the empty lines that
  may precede it (RFC 9112 §2.2: ignored, but counted), longer than ``max_request_head``
  bytes 431; one not complete within the request timeout 408; a connection beyond the limit
  503.

The request head is read with a bounded buffer, so a client sending one byte at a time costs
linear work, and an endless head is cut off at the limit without waiting for the timeout.
"""

from __future__ import annotations

import email.utils
import errno
import http
import logging
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Final
from urllib.parse import urlsplit

import attrs
import h11
import trio

from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.server import BoundedServer, Reply

__all__ = ["Page", "display_address", "listen", "serve_pages"]

log = logging.getLogger("pyvrrp")

_OBS_FOLD: Final = re.compile(rb"\n[ \t]")


@attrs.frozen
class Page:
    """What ``GET path`` answers: ``body()`` is called for each request."""

    content_type: str
    body: Callable[[], bytes]
    #: What ``body`` renders, for the log line when it fails: "rendering the status failed".
    what: str = "the page"


@attrs.frozen
class _Request:
    method: str
    path: str


class _Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _response(
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
    extra: Sequence[tuple[str, str]] = (),
) -> Reply:
    """The whole answer, framed by h11 (its Content-Length given, so never chunked)."""
    # A fresh connection object per answer: after a malformed request the reading one is in
    # its ERROR state, and one answer per connection needs no state carried over.
    connection = h11.Connection(h11.SERVER)
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Date", email.utils.formatdate(usegmt=True)),
        ("Connection", "close"),
        *extra,
    ]
    reason = http.HTTPStatus(status).phrase.encode("ascii")
    data = connection.send(h11.Response(status_code=status, headers=headers, reason=reason))
    assert data is not None
    if head_only:  # GET's headers, Content-Length included; this connection ends here
        return Reply(data)
    data += connection.send(h11.Data(data=body)) or b""
    return Reply(data + (connection.send(h11.EndOfMessage()) or b""))


def _error(
    status: int, message: str, *, head_only: bool = False, extra: Sequence[tuple[str, str]] = ()
) -> Reply:
    return _response(status, f"{message}\n".encode(), head_only=head_only, extra=extra)


def _path(method: str, target: str, home: str) -> str:
    """The path a request target names (RFC 9112 §3.2); CONNECT's authority-form is no use."""
    if target.startswith("/"):
        return target.partition("?")[0]
    if target.lower().startswith(("http://", "https://")):
        return urlsplit(target).path or "/"
    if target == "*" and method == "OPTIONS":
        return target
    raise _Rejected(400, f"bad request target {target[:100]!r}; use {home}")


class _Pages:
    """The :class:`~pyvrrp.runtime.server.Service` answering ``pages``."""

    def __init__(
        self,
        pages: Mapping[str, Page],
        *,
        name: str,
        home: str,
        not_found: str,
        max_request_head: int,
        request_timeout: float,
    ) -> None:
        self.pages = pages
        self.name = name
        self.home = home
        self.not_found = not_found
        self.max_request_head = max_request_head
        self.request_timeout = request_timeout

    async def receive(self, stream: trio.SocketStream) -> _Request | Reply | None:
        try:
            return await self._read(stream)
        except _Rejected as exc:
            return _error(exc.status, exc.message)

    async def _read(self, stream: trio.SocketStream) -> _Request | None:
        limit = self.max_request_head
        too_large = _Rejected(431, f"request line and headers longer than {limit} B")
        # RFC 9112 §2.2: empty lines before the request line are ignored; h11 refuses them,
        # so they are skipped here (and count towards the limit).
        skipped = 0
        first = b""
        while not first:
            chunk = await stream.receive_some(limit + 4)
            if not chunk:
                return None
            first = chunk.lstrip(b"\r\n")
            skipped += len(chunk) - len(first)
            if skipped > limit:
                raise too_large
        reader = h11.Connection(h11.SERVER, max_incomplete_event_size=limit - skipped)
        received = len(first)
        reader.receive_data(first)
        head = bytearray(first)
        while True:
            try:
                event = reader.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    raise too_large from None
                raise _Rejected(
                    400, f"malformed request ({exc}); expected like: GET {self.home} HTTP/1.1"
                ) from None
            if event is h11.NEED_DATA:
                chunk = await stream.receive_some(limit + 4)
                received += len(chunk)
                if len(head) <= limit:
                    head += chunk
                reader.receive_data(chunk)
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            assert isinstance(event, h11.Request)
            # The head's size: what was received minus what h11 has not parsed yet.
            if skipped + received - len(reader.trailing_data[0]) > limit:
                raise too_large
            if _OBS_FOLD.search(head, 0, received - len(reader.trailing_data[0])):
                raise _Rejected(400, "malformed header line (a folded header)")
            if event.http_version not in (b"1.0", b"1.1"):
                raise _Rejected(505, "only HTTP/1.x is supported")
            method = event.method.decode("ascii")
            return _Request(method, _path(method, event.target.decode("ascii"), self.home))

    def timed_out(self) -> Reply:
        return _error(408, f"no complete request within {self.request_timeout:g} s")

    def busy(self) -> Reply:
        return _error(503, "too many clients; retry")

    async def answer(self, request: _Request, stream: trio.SocketStream) -> Reply:
        # RFC 9110 §9.3.2: HEAD answers with GET's headers and no content, whatever the status.
        head_only = request.method == "HEAD"
        page = self.pages.get(request.path)
        if page is None:
            return _error(404, self.not_found, head_only=head_only)
        if request.method not in ("GET", "HEAD"):
            return _error(405, "only GET and HEAD are allowed", extra=[("Allow", "GET, HEAD")])
        try:
            body = page.body()
        except Exception:
            # A bug behind the page: this request fails and the log says why, but the daemon
            # keeps routing.
            log.exception("%s: rendering %s failed", self.name, page.what)
            return _error(500, "internal error; see the pyvrrp log", head_only=head_only)
        return _response(200, body, page.content_type, head_only=head_only)


def display_address(host: str, port: int) -> str:
    """``host:port``, IPv6 in brackets: ``[::1]:9650``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def listen(
    host: str, port: int, *, purpose: str, advice: str, error: type[EnvironmentProblem]
) -> list[trio.SocketListener]:
    """TCP listeners on every address ``host`` resolves to; raises ``error`` naming
    ``purpose`` (what the port is for), the reason and ``advice`` (what to change)."""
    where = display_address(host, port)
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except socket.gaierror as exc:
        raise error(
            f"cannot listen on {where} for {purpose}: cannot resolve {host!r} ({exc.strerror}); "
            f"{advice}"
        ) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "address in use"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "no interface of this host has that address"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        else:
            reason = exc.strerror or str(exc)
        raise error(f"cannot listen on {where} for {purpose}: {reason}; {advice}") from None


async def serve_pages(
    listeners: Sequence[trio.SocketListener],
    pages: Mapping[str, Page],
    *,
    name: str,
    home: str,
    not_found: str,
    request_timeout: float,
    send_timeout: float,
    max_clients: int,
    max_request_head: int,
) -> None:
    """Serve ``pages`` (path -> :class:`Page`) on ``listeners`` until cancelled. ``name``
    prefixes log lines, ``home`` is the path error messages point to, ``not_found`` the
    404's message."""
    service = _Pages(
        pages,
        name=name,
        home=home,
        not_found=not_found,
        max_request_head=max_request_head,
        request_timeout=request_timeout,
    )
    server = BoundedServer(
        name,
        service,
        max_clients=max_clients,
        request_timeout=request_timeout,
        send_timeout=send_timeout,
        linger=True,
    )
    await server.serve(listeners)
