"""The per-node agent, run inside a node namespace: `python -m nslab.agent --node A ...`.

It plays the node's ingress for the lab, in one single-threaded process (cheap on 2 cores):
- an HTTP server on 127.0.0.1:80 answering `GET /healthz` with 200, or 500 while the flag file
  exists (`Lab.set_healthy(node, False)` creates it): the seed's curl health check runs on it;
- a UDP responder on the wildcard addresses (IPv4 and IPv6) that answers each datagram
  `<seq> ...` with `<node> <seq> <destination address>`, sent from that destination address
  (IP_PKTINFO / IPV6_RECVPKTINFO), so the probe learns which node holds a VIP.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import struct
import time
from pathlib import Path

# Linux values; Python 3.11's socket module lacks IP_PKTINFO.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_IN_PKTINFO = struct.Struct("=I4s4s")  # ipi_ifindex, ipi_spec_dst, ipi_addr
_IN6_PKTINFO = struct.Struct("=16sI")  # ipi6_addr, ipi6_ifindex
_HTTP_MAX_REQUEST = 8192
_HTTP_CONN_TIMEOUT = 5.0


def _udp_socket(family: int, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        sock.bind(("::", port))
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.bind(("0.0.0.0", port))
    sock.setblocking(False)
    return sock


def answer_datagram(sock: socket.socket, node: bytes) -> None:
    """Answer every datagram waiting on `sock` from the address it was sent to."""
    while True:
        try:
            data, ancdata, _flags, peer = sock.recvmsg(512, 256)
        except BlockingIOError:
            return
        dst: str | None = None
        cmsgs: list[tuple[int, int, bytes]] = []
        for level, kind, cdata in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                _ifindex, _spec_dst, addr = _IN_PKTINFO.unpack_from(cdata)
                dst = socket.inet_ntop(socket.AF_INET, addr)
                # ipi_spec_dst sets the reply's source: answer from the VIP asked.
                cmsgs = [(level, kind, _IN_PKTINFO.pack(0, addr, bytes(4)))]
            elif level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                addr6, _ifindex6 = _IN6_PKTINFO.unpack_from(cdata)
                dst = socket.inet_ntop(socket.AF_INET6, addr6)
                cmsgs = [(level, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(addr6, 0))]
        fields = data.split()
        seq = fields[0] if fields else b"-"
        reply = b"%s %s %s" % (node, seq, (dst or "?").encode())
        # The address may have just been removed (a failover): the probe counts a loss.
        with contextlib.suppress(OSError):
            sock.sendmsg([reply], cmsgs, 0, peer)


class _HttpConn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.opened = time.monotonic()


def _http_response(request: bytes, flag: Path) -> bytes:
    line = request.split(b"\r\n", 1)[0].split()
    path = line[1].decode(errors="replace") if len(line) >= 2 else ""
    if path.split("?")[0] != "/healthz":
        status, body = "404 Not Found", b"not found\n"
    elif flag.exists():
        status, body = "500 Internal Server Error", b"unhealthy\n"
    else:
        status, body = "200 OK", b"ok\n"
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def serve(node: str, flag: Path, udp_port: int, http_port: int, ready: Path | None) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    stop = False

    def on_signal(_signo: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sel = selectors.DefaultSelector()
    udp = [_udp_socket(socket.AF_INET, udp_port), _udp_socket(socket.AF_INET6, udp_port)]
    for s in udp:
        sel.register(s, selectors.EVENT_READ, "udp")
    http = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    http.bind(("127.0.0.1", http_port))
    http.listen(16)
    http.setblocking(False)
    sel.register(http, selectors.EVENT_READ, "listen")
    conns: dict[int, _HttpConn] = {}
    if ready is not None:
        ready.write_text(f"{os.getpid()}\n")
    name = node.encode()

    def close(conn: _HttpConn) -> None:
        sel.unregister(conn.sock)
        conns.pop(conn.sock.fileno(), None)
        conn.sock.close()

    while not stop:
        for key, _mask in sel.select(timeout=1.0):
            if key.data == "udp":
                answer_datagram(key.fileobj, name)  # type: ignore[arg-type]
            elif key.data == "listen":
                try:
                    client, _ = http.accept()
                except BlockingIOError:
                    continue
                client.setblocking(False)
                conn = _HttpConn(client)
                conns[client.fileno()] = conn
                sel.register(client, selectors.EVENT_READ, conn)
            else:
                conn = key.data
                try:
                    chunk = conn.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    close(conn)
                    continue
                conn.buf += chunk
                if b"\r\n\r\n" in conn.buf or not chunk or len(conn.buf) > _HTTP_MAX_REQUEST:
                    if chunk:
                        # A response of a few hundred bytes fits any fresh socket buffer.
                        with contextlib.suppress(OSError):
                            conn.sock.send(_http_response(conn.buf, flag))
                    close(conn)
        now = time.monotonic()
        for conn in [c for c in conns.values() if now - c.opened > _HTTP_CONN_TIMEOUT]:
            close(conn)


def main(argv: list[str] | None = None) -> int:
    """Command line of the agent (started by `Lab`, not by users)."""
    parser = argparse.ArgumentParser(prog="python -m nslab.agent")
    parser.add_argument("--node", required=True)
    parser.add_argument("--unhealthy-flag", type=Path, required=True)
    parser.add_argument("--udp-port", type=int, default=7777)
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    serve(args.node, args.unhealthy_flag, args.udp_port, args.http_port, args.ready_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
