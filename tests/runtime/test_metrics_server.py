"""The metrics HTTP server on real loopback sockets, in real time (waits kept short).

Each test starts :func:`serve_metrics` on an ephemeral port in pytest-trio's nursery (which
cancels it at the end) and talks raw HTTP/1.1 to it, so every byte on the wire is the
test's choice: well-formed scrapes, garbage, slow and trickling clients, floods.
"""

from __future__ import annotations

import errno
import functools
import logging
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp.runtime.errors import EnvironmentProblem
from pyvrrp.runtime.metrics import (
    CONTENT_TYPE,
    INSTANCE_LABELS,
    MAX_REQUEST_HEAD,
    METRICS,
    MetricsError,
    render,
    serve_metrics,
)
from tests.unit.test_metrics_render import parse_exposition, snapshot

from .cluster import Cluster, config, instance

LOCALHOST = "127.0.0.1"
GET = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n"
# Generous against a busy 2-core machine: a request that works finishes in milliseconds.
DEADLINE = 5.0


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class Response:
    """A parsed HTTP response: status, headers (lower-case names), body."""

    def __init__(self, raw: bytes) -> None:
        head, separator, self.body = raw.partition(b"\r\n\r\n")
        assert separator, f"no end of headers in {raw[:200]!r}"
        status_line, *lines = head.decode("latin-1").split("\r\n")
        match = re.fullmatch(r"HTTP/1\.1 (\d{3}) [A-Za-z -]+", status_line)
        assert match, status_line
        self.status = int(match.group(1))
        self.headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(": ")
            assert name.lower() not in self.headers, f"repeated header {name}"
            self.headers[name.lower()] = value

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def exchange(
    port: int, request: bytes, *, host: str = LOCALHOST, eof: bool = False
) -> Response:
    """Send ``request``, read until the server closes, parse the answer."""
    with trio.fail_after(DEADLINE):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(request)
            if eof:
                await stream.send_eof()
            return Response(await read_until_closed(stream))


Status = Callable[[], Mapping[str, Any]]


async def start(
    nursery: trio.Nursery, status: Status = snapshot, *, host: str = LOCALHOST, **options: Any
) -> int:
    """Start a server on an ephemeral port; return the port."""
    options.setdefault("process_metrics", False)
    bound: list[tuple[str, int]] = await nursery.start(
        functools.partial(serve_metrics, host, 0, status, **options)
    )
    assert len(bound) == 1
    return bound[0][1]


# ---------------------------------------------------------------------------- scrapes


async def test_get_metrics_answers_200_with_the_rendered_status(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    response = await exchange(port, GET)
    assert response.status == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert response.headers["connection"] == "close"
    assert int(response.headers["content-length"]) == len(response.body)
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", response.headers["date"])
    assert response.text == render(snapshot())


async def test_process_metrics_are_served_unless_turned_off(nursery: trio.Nursery) -> None:
    with_process = await start(nursery, process_metrics=True)
    families = parse_exposition((await exchange(with_process, GET)).text)
    assert families["process_open_fds"].value() > 0
    assert families["process_resident_memory_bytes"].value() > 1 << 20
    without = await start(nursery)
    assert "process_" not in (await exchange(without, GET)).text


async def test_each_scrape_renders_the_status_of_that_moment(nursery: trio.Nursery) -> None:
    calls = 0

    def status() -> Mapping[str, Any]:
        nonlocal calls
        calls += 1
        current = snapshot()
        current["instances"]["vip58"]["counters"]["adverts_sent"] = calls * 100
        return current

    port = await start(nursery, status)
    for expected in (100, 200, 300):
        families = parse_exposition((await exchange(port, GET)).text)
        assert families["pyvrrp_adverts_sent_total"].value(vrrp_instance="vip58") == expected
    assert calls == 3


async def test_head_answers_the_get_headers_without_a_body(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    get = await exchange(port, GET)
    head = await exchange(port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-type"] == CONTENT_TYPE
    missing = await exchange(port, b"HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (missing.status, missing.body) == (404, b"")
    assert int(missing.headers["content-length"]) > 0


async def test_the_root_page_points_to_metrics(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    response = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert 'href="/metrics"' in response.text


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /metrics?name[]=up HTTP/1.1",
        b"GET http://127.0.0.1:9650/metrics HTTP/1.1",
        b"GET /metrics HTTP/1.0",
    ],
    ids=["query", "absolute-form", "http-1.0"],
)
async def test_equivalent_request_forms_get_the_metrics(
    nursery: trio.Nursery, request_line: bytes
) -> None:
    port = await start(nursery)
    response = await exchange(port, request_line + b"\r\nHost: x\r\n\r\n")
    assert response.status == 200
    assert response.text == render(snapshot())


async def test_http_1_0_needs_no_host_header(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    assert (await exchange(port, b"GET /metrics HTTP/1.0\r\n\r\n")).status == 200


async def test_bare_lf_line_ends_and_leading_empty_lines_are_accepted(
    nursery: trio.Nursery,
) -> None:
    port = await start(nursery)
    assert (await exchange(port, b"GET /metrics HTTP/1.1\nHost: x\n\n")).status == 200
    assert (await exchange(port, b"\r\n\r\n" + GET)).status == 200


async def test_a_request_sent_one_byte_at_a_time_is_served(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    with trio.fail_after(DEADLINE):
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        async with stream:
            for byte in GET:
                await stream.send_all(bytes([byte]))
                await trio.sleep(0)
            assert Response(await read_until_closed(stream)).status == 200


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "path", [b"/metrics/", b"/metric", b"/favicon.ico", b"/%6Detrics", b"http://x/other"]
)
async def test_other_paths_are_404(nursery: trio.Nursery, path: bytes) -> None:
    port = await start(nursery)
    response = await exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 404
    assert "/metrics" in response.text


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get"])
async def test_other_methods_are_405_with_allow(nursery: trio.Nursery, method: bytes) -> None:
    port = await start(nursery)
    response = await exchange(port, method + b" /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert response.status == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"hello\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1 \r\nHost: x\r\n\r\n",
        b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET ftp://x/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /m\xc3\xa9trics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nNo-colon\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
    ],
    ids=[
        "garbage",
        "http-0.9",
        "double-space",
        "trailing-space",
        "relative-target",
        "asterisk-for-get",
        "not-http-url",
        "non-ascii-target",
        "no-host",
        "two-hosts",
        "space-before-colon",
        "obs-fold",
        "no-colon",
        "nul-in-value",
        "bare-cr",
        "binary",
    ],
)
async def test_malformed_requests_are_400(nursery: trio.Nursery, request_bytes: bytes) -> None:
    port = await start(nursery)
    response = await exchange(port, request_bytes)
    assert response.status == 400
    assert response.headers["connection"] == "close"


async def test_a_request_cut_short_by_the_client_is_400(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    response = await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n", eof=True)
    assert response.status == 400


async def test_tls_or_http2_instead_of_http1_get_an_answer_not_a_hang(
    nursery: trio.Nursery,
) -> None:
    port = await start(nursery)
    http2 = await exchange(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert http2.status == 505
    client_hello = bytes.fromhex("16030100a5010000a10303") + bytes(range(32))
    assert (await exchange(port, client_hello, eof=True)).status == 400


async def test_a_client_that_closes_without_a_request_gets_nothing(
    nursery: trio.Nursery,
) -> None:
    port = await start(nursery)
    with trio.fail_after(DEADLINE):
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        async with stream:
            await stream.send_eof()
            assert await read_until_closed(stream) == b""


def padded(size: int) -> bytes:
    """A valid GET whose head (terminating blank line included) is exactly ``size`` bytes."""
    base = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n"
    return base.replace(b"X-Pad: ", b"X-Pad: " + b"a" * (size - len(base)))


async def test_request_heads_up_to_the_limit_are_served_and_larger_ones_are_431(
    nursery: trio.Nursery,
) -> None:
    port = await start(nursery)
    assert len(padded(MAX_REQUEST_HEAD)) == MAX_REQUEST_HEAD
    assert (await exchange(port, padded(MAX_REQUEST_HEAD))).status == 200
    assert (await exchange(port, padded(MAX_REQUEST_HEAD + 1))).status == 431


async def test_an_endless_head_is_cut_off_at_the_limit_without_waiting(
    nursery: trio.Nursery,
) -> None:
    port = await start(nursery, request_timeout=30)
    with trio.fail_after(DEADLINE):
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000)
            response = Response(await read_until_closed(stream))
    assert response.status == 431


async def test_endless_empty_lines_count_towards_the_limit(nursery: trio.Nursery) -> None:
    port = await start(nursery, request_timeout=30)
    with trio.fail_after(DEADLINE):
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        async with stream:
            await stream.send_all(b"\r\n" * 10000)
            response = Response(await read_until_closed(stream))
    assert response.status == 431


async def test_a_status_provider_that_raises_gives_500_and_the_server_goes_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    broken = True

    def status() -> Mapping[str, Any]:
        if broken:
            raise RuntimeError("bug in the status provider")
        return snapshot()

    port = await start(nursery, status)
    with caplog.at_level(logging.ERROR, logger="pyvrrp"):
        response = await exchange(port, GET)
    assert response.status == 500
    assert "rendering the status failed" in caplog.text
    assert "bug in the status provider" in caplog.text
    broken = False
    assert (await exchange(port, GET)).status == 200


async def test_unread_request_bytes_do_not_reset_the_connection_before_the_answer(
    nursery: trio.Nursery,
) -> None:
    # Without a lingering close, closing with these bytes unread sends a RST that makes
    # the client lose the response it has not read yet.
    port = await start(nursery)
    for _ in range(5):
        response = await exchange(port, GET + b"x" * 32768, eof=True)
        assert response.status == 200
        assert response.text == render(snapshot())


# ---------------------------------------------------------------------------- slow clients


async def test_a_silent_client_gets_408_after_the_request_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # Virtual time: the clock jumps only when every task waits, so the answer comes at
    # exactly the request timeout, not earlier and not later.
    port = await start(nursery, request_timeout=0.3)
    start_time = trio.current_time()
    with trio.fail_after(DEADLINE):
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        async with stream:
            await stream.send_all(b"GET /metr")
            response = Response(await read_until_closed(stream))
    elapsed = trio.current_time() - start_time
    assert response.status == 408
    assert elapsed == pytest.approx(0.3, abs=1e-6)


async def test_a_trickling_client_cannot_extend_its_deadline(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    port = await start(nursery, request_timeout=0.3)
    start_time = trio.current_time()
    with trio.fail_after(DEADLINE):
        stream = await trio.open_tcp_stream(LOCALHOST, port)
        async with stream, trio.open_nursery() as client:

            async def trickle() -> None:
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
                for _ in range(200):  # 10 s of one byte every 50 ms, if never cut off
                    try:
                        await stream.send_all(b"a")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    await trio.sleep(0.05)

            client.start_soon(trickle)
            response = Response(await read_until_closed(stream))
            client.cancel_scope.cancel()
    elapsed = trio.current_time() - start_time
    assert response.status == 408
    # Cut off at the request timeout, on the first byte sent after it (every 50 ms).
    assert 0.3 <= elapsed < 0.3 + 0.05 + 1e-6


async def test_concurrent_scrapes_are_served_while_slow_clients_wait(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    port = await start(nursery, request_timeout=3.0)
    slow = [await trio.open_tcp_stream(LOCALHOST, port) for _ in range(5)]
    for stream in slow:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\n")
    statuses: list[int] = []

    async def scrape() -> None:
        statuses.append((await exchange(port, GET)).status)

    start_time = trio.current_time()
    async with trio.open_nursery() as scrapers:
        for _ in range(20):
            scrapers.start_soon(scrape)
    elapsed = trio.current_time() - start_time
    assert statuses == [200] * 20
    # Virtual time: had a scrape waited behind a slow client, the clock would have jumped
    # to that client's 3 s timeout.
    assert elapsed < 3.0, "scrapes must not wait behind the slow clients (3 s timeout)"
    for stream in slow:
        await stream.aclose()


async def wait_for_status(port: int, expected: int) -> None:
    """Scrape until the answer has ``expected`` status (the server accepts asynchronously)."""
    with trio.fail_after(DEADLINE):
        while (await exchange(port, GET)).status != expected:
            await trio.sleep(0.01)


async def test_connections_over_the_limit_get_503_until_a_slot_frees(
    nursery: trio.Nursery,
) -> None:
    port = await start(nursery, max_clients=2, request_timeout=DEADLINE)
    idle = [await trio.open_tcp_stream(LOCALHOST, port) for _ in range(2)]
    await wait_for_status(port, 503)
    response = await exchange(port, GET)
    assert response.status == 503
    for stream in idle:
        await stream.aclose()
    await wait_for_status(port, 200)


# ---------------------------------------------------------------------------- listening


async def test_a_port_in_use_raises_metrics_error_with_what_to_change() -> None:
    with socket.socket() as blocker:
        blocker.bind((LOCALHOST, 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(MetricsError) as caught:
            await serve_metrics(LOCALHOST, port, snapshot)
    assert str(caught.value) == (
        f"cannot listen on 127.0.0.1:{port} for metrics: address in use; "
        "change global.metrics_listen"
    )
    assert isinstance(caught.value, EnvironmentProblem), "the daemon exits 3 on these"


async def test_a_second_server_on_the_same_port_is_refused(nursery: trio.Nursery) -> None:
    port = await start(nursery)
    with pytest.raises(MetricsError, match="address in use"):
        await serve_metrics(LOCALHOST, port, snapshot)
    assert (await exchange(port, GET)).status == 200, "the first one still serves"


async def test_an_address_this_host_does_not_have_is_a_clear_error() -> None:
    # 192.0.2.0/24 is TEST-NET-1: binding fails locally, no packet is sent.
    with pytest.raises(MetricsError, match=r"192\.0\.2\.1:9650 .*no interface of this host"):
        await serve_metrics("192.0.2.1", 9650, snapshot)


class NoSuchHost(trio.abc.HostnameResolver):
    """A resolver that knows no names, so no test waits on DNS."""

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getnameinfo(self, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_a_name_that_does_not_resolve_is_a_clear_error() -> None:
    trio.socket.set_custom_hostname_resolver(NoSuchHost())  # for this trio run only
    with pytest.raises(MetricsError) as caught:
        await serve_metrics("metrics.example", 9650, snapshot)
    assert str(caught.value) == (
        "cannot listen on metrics.example:9650 for metrics: cannot resolve 'metrics.example' "
        "(Name or service not known); change global.metrics_listen"
    )


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_hosts_are_written_in_brackets(nursery: trio.Nursery) -> None:
    port = await start(nursery, host="::1")
    assert (await exchange(port, GET, host="::1")).status == 200
    with pytest.raises(MetricsError, match=rf"cannot listen on \[::1\]:{port} for metrics"):
        await serve_metrics("::1", port, snapshot)


async def test_a_host_name_is_served_on_its_addresses(nursery: trio.Nursery) -> None:
    bound: list[tuple[str, int]] = await nursery.start(
        functools.partial(serve_metrics, "localhost", 0, snapshot, process_metrics=False)
    )
    assert bound
    host, port = bound[0]
    assert (await exchange(port, GET, host=host)).status == 200


async def test_cancelling_the_server_closes_its_port() -> None:
    async with trio.open_nursery() as nursery:
        port = await start(nursery)
        nursery.cancel_scope.cancel()
    with pytest.raises(OSError) as refused:
        await trio.open_tcp_stream(LOCALHOST, port)
    assert refused.value.errno in (errno.ECONNREFUSED, None)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            functools.partial(serve_metrics, LOCALHOST, port, snapshot, process_metrics=False)
        )
        assert bound == [(LOCALHOST, port)]
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------- a real node


async def test_a_running_nodes_status_gives_every_per_instance_metric(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The contract with Node.status(): what a real node reports renders completely."""
    vip = "1.2.3.58/29"
    untracked = {"chk_spare": {"command": ["/bin/true"]}}  # configured, never run
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery)
        a = await cluster.start("A", config({"vip58": instance(58, 100, vip)}, scripts=untracked))
        b = await cluster.start("B", config({"vip58": instance(58, 50, vip)}, scripts=untracked))
        # Settle first: a node's start waits on a thread (the maintenance file), during
        # which the autojump clock may run the other node ahead.
        await trio.sleep(10)
        before = (
            parse_exposition(render(a.node.status())),
            parse_exposition(render(b.node.status())),
        )
        await trio.sleep(10)
        master = parse_exposition(render(a.node.status()))
        backup = parse_exposition(render(b.node.status()))
        nursery.cancel_scope.cancel()
    per_instance = [s.name for s in METRICS if s.labels[:4] == INSTANCE_LABELS]
    for families in (master, backup):
        for name in per_instance:
            if families is master and name.startswith("pyvrrp_peer_"):
                continue  # the master hears no peer: its backup sends nothing
            found = [dict(k) for k in families[name].samples]
            assert any(k["vrrp_instance"] == "vip58" and k["vrid"] == "58" for k in found), name
    assert not master["pyvrrp_peer_adverts_received_total"].samples
    [(peer_labels, heard)] = backup["pyvrrp_peer_adverts_received_total"].samples.items()
    assert dict(peer_labels)["version"] == "3" and heard >= 10
    for name, family in master.items():
        # A script that never ran has no last exit status, duration or run time.
        if name.startswith("pyvrrp_script_") and "_last_" not in name:
            assert family.samples, f"{name}: no sample for a configured script"
    labels = {"interface": "eth0.4000", "family": "ipv4"}
    assert master["pyvrrp_instance_state"].value(state="MASTER", **labels) == 1
    assert backup["pyvrrp_instance_state"].value(state="BACKUP", **labels) == 1
    assert master["pyvrrp_instance_effective_priority"].value() == 100
    assert backup["pyvrrp_instance_master_priority"].value() == 100
    assert master["pyvrrp_instance_holding_addresses"].value() == 1
    assert backup["pyvrrp_instance_holding_addresses"].value() == 0
    assert master["pyvrrp_transitions_to_master_total"].value() == 1
    # One advertisement a second, each one received by the backup.
    sent = (
        master["pyvrrp_adverts_sent_total"].value() - before[0]["pyvrrp_adverts_sent_total"].value()
    )
    received = (
        backup["pyvrrp_adverts_received_total"].value()
        - before[1]["pyvrrp_adverts_received_total"].value()
    )
    assert 9 <= sent <= 11
    assert abs(sent - received) <= 1
    assert master["pyvrrp_interface_adverts_dropped_total"].value(reason="unknown_vrid") == 0
    assert master["pyvrrp_script_good"].value(script="chk_spare") == 1
