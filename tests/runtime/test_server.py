"""The bounded-connection server the control socket and the metrics endpoint share.

Limits, deadlines and answers are tested through both users (test_control.py,
test_metrics_server.py); here, what neither can provoke: accept failing.
"""

from __future__ import annotations

import errno
import logging
from typing import cast

import pytest
import trio

from pyvrrp.runtime.server import BoundedServer, Reply


class Echo:
    """Answers the first bytes received, upper-cased."""

    async def receive(self, stream: trio.SocketStream) -> bytes | Reply | None:
        return await stream.receive_some() or None

    def timed_out(self) -> Reply:
        return Reply(b"TIMEOUT")

    def busy(self) -> Reply:
        return Reply(b"BUSY")

    async def answer(self, request: bytes, stream: trio.SocketStream) -> Reply:
        return Reply(request.upper())


class FailingListener:
    """A real TCP listener whose accept first fails with ``errors``, one per call."""

    def __init__(self, real: trio.SocketListener, errors: list[int]) -> None:
        self.real = real
        self.errors = errors

    async def accept(self) -> trio.SocketStream:
        if self.errors:
            await trio.lowlevel.checkpoint()
            code = self.errors.pop(0)
            raise OSError(code, "injected")
        return await self.real.accept()

    async def aclose(self) -> None:
        await self.real.aclose()

    async def __aenter__(self) -> FailingListener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def serve_failing(errors: list[int]) -> tuple[FailingListener, BoundedServer[bytes], int]:
    [real] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = real.socket.getsockname()[1]
    listener = FailingListener(real, errors)
    server = BoundedServer("test", Echo(), max_clients=4, request_timeout=5.0, send_timeout=5.0)
    return listener, server, port


async def ask(port: int, data: bytes) -> bytes:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(data)
            return await stream.receive_some()


async def test_running_out_of_file_descriptors_pauses_accepting_instead_of_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener, server, port = await serve_failing([errno.EMFILE, errno.ENOBUFS])
    with caplog.at_level(logging.ERROR, logger="pyvrrp"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.serve, [cast(trio.SocketListener, listener)])
            assert await ask(port, b"status") == b"STATUS"
            nursery.cancel_scope.cancel()
    failures = [r.getMessage() for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].startswith("test: cannot accept a connection:")


async def test_an_accept_error_that_will_not_pass_ends_the_server() -> None:
    listener, server, _ = await serve_failing([errno.EBADF])
    with pytest.RaisesGroup(pytest.RaisesExc(OSError, check=lambda e: e.errno == errno.EBADF)):
        await server.serve([cast(trio.SocketListener, listener)])
