"""Our own rtnetlink messages: the takeover's address requests and the monitor's events.

A new master installs its addresses between its first advertisement and its first gratuitous
ARP, so the time an address add takes is the time the segment waits to learn the new MAC.
Through pyroute2 on the netlink owner thread (:mod:`pyvrrp.runtime.netlink.kernel`) an add cost
0.7-1 ms of CPU in a daemon that has been idle for a second (pyroute2 runs about a thousand
Python calls and an asyncio loop per request; an idle process runs them cold), plus two
thread hand-overs: two adds put the first GARP about 2 ms after the advertisement
(docs/benchmarks.md, "Announcement latency").

Adding or removing an address is one ``sendmsg`` the kernel handles synchronously: the
address is in place and the acknowledgement queued on our socket by the time the call
returns. This module encodes RTM_NEWADDR / RTM_DELADDR by hand (``ip addr add`` sends the
same message) and :class:`AddressSocket` sends it from trio's thread and reads the
acknowledgement: 25 µs per address warm, up to 0.2 ms cold. It also decodes the link and
address notifications (and the link dump) the netlink monitor reads, for the same reason:
pyroute2 decoding them cost more than the requests. Reads, routes and rules stay with
pyroute2.

One thing an address add does *not* finish synchronously: a new IPv6 address (NODAD
included) gets its local route, the one that makes the kernel deliver packets sent to it,
from the kernel's address work queue (addrconf's DAD work), after the acknowledgement; until
then packets for it are routed as for any on-link address and dropped. That took up to 5 ms
on the 2-core development machine (often nothing: the work may run before the adding process
goes on), and more under load. :meth:`AddressSocket.route_type` asks the kernel how it
routes an address now (``ip route get``: RTN_LOCAL once it is ours), so a new master
announces an IPv6 address only once it is.

Encoding and decoding are pure functions (tested against pyroute2's own message classes).
The address socket is only ever read for the answers to its own requests (it joins no
multicast group), so its buffer cannot fill, and the one way to block is the kernel's rtnl
lock, the lock every ``ip`` command takes too.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from collections.abc import Callable, Iterator
from typing import Final, TypeVar

import attrs
import trio

from pyvrrp.core.linux import IFNAMSIZ

_T = TypeVar("_T")

__all__ = [
    "Ack",
    "AddressEntry",
    "AddressMessage",
    "AddressRequest",
    "AddressSocket",
    "LinkMessage",
    "decode_acks",
    "decode_address_dump",
    "decode_notifications",
    "decode_route_answers",
    "dump_links",
    "encode_address_dump",
    "encode_address_request",
    "encode_link_dump",
    "encode_route_query",
    "interface_index",
    "interface_name",
    "open_socket",
]

# linux/netlink.h, linux/rtnetlink.h, linux/if_addr.h, linux/sockios.h
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
RTM_NEWROUTE: Final = 24
RTM_GETROUTE: Final = 26
RTA_DST: Final = 1
#: rtm_type of a route to an address of this host (linux/rtnetlink.h).
RTN_LOCAL: Final = 2
NLM_F_DUMP: Final = 0x300
IFLA_ADDRESS: Final = 1
IFLA_IFNAME: Final = 3
IFLA_MTU: Final = 4
NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLM_F_EXCL: Final = 0x200
NLM_F_CREATE: Final = 0x400
NLM_F_CAPPED: Final = 0x100
NLM_F_ACK_TLVS: Final = 0x200
SOL_NETLINK: Final = 270
NETLINK_CAP_ACK: Final = 10
NETLINK_EXT_ACK: Final = 11
NLMSGERR_ATTR_MSG: Final = 1
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_LABEL: Final = 3
IFA_CACHEINFO: Final = 6
IFA_FLAGS: Final = 8
INFINITY_LIFE_TIME: Final = 0xFFFFFFFF
SIOCGIFNAME: Final = 0x8910
SIOCGIFINDEX: Final = 0x8933

_HEADER: Final = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_IFADDRMSG: Final = struct.Struct("=BBBBi")  # family, prefix length, flags, scope, index
_IFINFOMSG: Final = struct.Struct("=BxHiII")  # family, type, index, flags, change
# family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG: Final = struct.Struct("=BBBBBBBBI")
_NLA: Final = struct.Struct("=HH")  # length, type
_IFREQ: Final = struct.Struct("=16si20x")  # ifr_name, ifr_ifindex; sizeof(struct ifreq) 40
_ERROR: Final = struct.Struct("=i")

#: How long to wait for an acknowledgement the kernel did not queue at once (it always does
#: for address requests; this bounds the wait if a future kernel does not).
ACK_TIMEOUT: Final = 1.0


@attrs.frozen
class AddressRequest:
    """One address to add or remove, in the kernel's terms."""

    adding: bool
    family: int  # socket.AF_INET or socket.AF_INET6
    address: bytes  # packed: 4 or 16 bytes
    prefixlen: int
    index: int
    label: str | None = None
    scope: int = 0
    flags: int = 0
    preferred_lifetime_zero: bool = False


@attrs.frozen
class Ack:
    """The kernel's answer to request ``sequence``: ``error`` 0 or an errno, and the extended
    acknowledgement's message when the kernel gave one."""

    sequence: int
    error: int
    message: str = ""


@attrs.frozen
class LinkMessage:
    """An RTM_NEWLINK (``present``) or RTM_DELLINK notification, or a link dump entry."""

    present: bool
    family: int
    index: int
    flags: int
    name: str
    mac: bytes
    mtu: int


@attrs.frozen
class AddressMessage:
    """An RTM_NEWADDR (``present``) or RTM_DELADDR notification: ``address`` is IFA_LOCAL
    (the address itself) or, where there is none, IFA_ADDRESS."""

    present: bool
    family: int
    index: int
    prefixlen: int
    address: bytes


@attrs.frozen
class AddressEntry:
    """One address of an RTM_GETADDR dump: ``address`` as :class:`AddressMessage` has it,
    ``flags`` the whole IFA_F_* set (IFA_FLAGS when the kernel sends it), ``scope`` RT_SCOPE_*."""

    family: int
    index: int
    prefixlen: int
    address: bytes
    flags: int
    scope: int


def _nla(kind: int, payload: bytes) -> bytes:
    length = _NLA.size + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def encode_address_request(request: AddressRequest, sequence: int) -> bytes:
    """The RTM_NEWADDR (with create-exclusive) or RTM_DELADDR message ``ip addr`` would send.

    IFA_LOCAL and IFA_ADDRESS both carry the address (equal: no peer); the flags go in the
    header's byte and, whole, in IFA_FLAGS; ``preferred_lifetime_zero`` sends a cacheinfo of
    preferred 0, valid forever.
    """
    attributes = [
        _nla(IFA_LOCAL, request.address),
        _nla(IFA_ADDRESS, request.address),
    ]
    if request.adding:
        if request.label is not None:
            attributes.append(_nla(IFA_LABEL, request.label.encode() + b"\0"))
        if request.flags:
            attributes.append(_nla(IFA_FLAGS, struct.pack("=I", request.flags)))
        if request.preferred_lifetime_zero:
            cacheinfo = struct.pack("=IIII", 0, INFINITY_LIFE_TIME, 0, 0)
            attributes.append(_nla(IFA_CACHEINFO, cacheinfo))
        kind, flags = RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    else:
        kind, flags = RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK
    body = _IFADDRMSG.pack(
        request.family,
        request.prefixlen,
        request.flags & 0xFF if request.adding else 0,
        request.scope if request.adding else 0,
        request.index,
    ) + b"".join(attributes)
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, sequence, 0) + body


def _messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, sequence, start and end of the payload) of each message in ``data``."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, sequence, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            return  # truncated: the kernel never sends that, so nothing we could use
        yield kind, flags, sequence, offset + _HEADER.size, offset + length
        offset += (length + 3) & ~3


def _attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """The attributes between ``start`` and ``end``, by type (the last one of a type wins)."""
    found = {}
    offset = start
    while offset + _NLA.size <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < _NLA.size or offset + length > end:
            break
        found[kind & 0x3FFF] = data[offset + _NLA.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _string(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode(errors="replace")


def decode_notifications(data: bytes) -> list[LinkMessage | AddressMessage]:
    """The link and address messages in one datagram; anything else is skipped."""
    decoded: list[LinkMessage | AddressMessage] = []
    for kind, _, _, payload, end in _messages(data):
        if kind in (RTM_NEWLINK, RTM_DELLINK) and payload + _IFINFOMSG.size <= end:
            family, _, index, flags, _ = _IFINFOMSG.unpack_from(data, payload)
            nla = _attributes(data, payload + _IFINFOMSG.size, end)
            mtu = nla.get(IFLA_MTU, b"")
            decoded.append(
                LinkMessage(
                    present=kind == RTM_NEWLINK,
                    family=family,
                    index=index,
                    flags=flags,
                    name=_string(nla.get(IFLA_IFNAME, b"")),
                    mac=nla.get(IFLA_ADDRESS, b""),
                    mtu=struct.unpack("=I", mtu)[0] if len(mtu) == 4 else 0,
                )
            )
        elif kind in (RTM_NEWADDR, RTM_DELADDR) and payload + _IFADDRMSG.size <= end:
            family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(data, payload)
            nla = _attributes(data, payload + _IFADDRMSG.size, end)
            address = nla.get(IFA_LOCAL) or nla.get(IFA_ADDRESS)
            if address is not None:
                decoded.append(
                    AddressMessage(kind == RTM_NEWADDR, family, index, prefixlen, address)
                )
    return decoded


def decode_address_dump(data: bytes) -> list[AddressEntry]:
    """The addresses (RTM_NEWADDR messages) in one datagram of an address dump."""
    entries: list[AddressEntry] = []
    for kind, _, _, payload, end in _messages(data):
        if kind != RTM_NEWADDR or payload + _IFADDRMSG.size > end:
            continue
        family, prefixlen, flags, scope, index = _IFADDRMSG.unpack_from(data, payload)
        nla = _attributes(data, payload + _IFADDRMSG.size, end)
        address = nla.get(IFA_LOCAL) or nla.get(IFA_ADDRESS)
        extended = nla.get(IFA_FLAGS, b"")
        if len(extended) == 4:
            (flags,) = struct.unpack("=I", extended)
        if address is not None:
            entries.append(AddressEntry(family, index, prefixlen, address, flags, scope))
    return entries


def encode_address_dump(family: int, sequence: int) -> bytes:
    """An RTM_GETADDR dump request for every address of ``family`` (``ip addr show``)."""
    body = _IFADDRMSG.pack(family, 0, 0, 0, 0)
    return (
        _HEADER.pack(_HEADER.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0)
        + body
    )


def encode_link_dump(sequence: int) -> bytes:
    """An RTM_GETLINK dump request for every link (``ip link show``)."""
    body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return (
        _HEADER.pack(_HEADER.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0)
        + body
    )


def encode_route_query(family: int, address: bytes, sequence: int) -> bytes:
    """An RTM_GETROUTE request for the route the kernel takes to ``address`` now, as
    ``ip route get ADDRESS`` sends it (a full-length destination, no dump)."""
    body = _RTMSG.pack(family, len(address) * 8, 0, 0, 0, 0, 0, 0, 0) + _nla(RTA_DST, address)
    return _HEADER.pack(_HEADER.size + len(body), RTM_GETROUTE, NLM_F_REQUEST, sequence, 0) + body


def decode_route_answers(data: bytes) -> dict[int, int]:
    """The route answers (RTM_NEWROUTE messages) in one datagram: rtm_type by sequence."""
    answers: dict[int, int] = {}
    for kind, _, sequence, payload, end in _messages(data):
        if kind == RTM_NEWROUTE and payload + _RTMSG.size <= end:
            answers[sequence] = _RTMSG.unpack_from(data, payload)[7]
    return answers


def open_socket(*, groups: int = 0, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking NETLINK_ROUTE socket in the calling thread's namespace, subscribed to
    the multicast ``groups`` (RTMGRP_* bits)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, groups))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def interface_index(sock: socket.socket, name: str) -> int | None:
    """The index of interface ``name`` in ``sock``'s namespace, or None if there is none."""
    encoded = name.encode()
    if len(encoded) >= IFNAMSIZ or b"\0" in encoded:  # could only match a truncated name
        return None
    try:
        answer = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, _IFREQ.pack(encoded, 0))
    except OSError:  # ENODEV
        return None
    index: int = _IFREQ.unpack(answer)[1]
    return index


def interface_name(sock: socket.socket, index: int) -> str | None:
    """The name of interface ``index`` in ``sock``'s namespace, or None if there is none."""
    try:
        answer = fcntl.ioctl(sock.fileno(), SIOCGIFNAME, _IFREQ.pack(b"", index))
    except OSError:  # ENODEV
        return None
    return _string(_IFREQ.unpack(answer)[0])


def dump_links() -> list[LinkMessage]:
    """Every link of the calling thread's namespace, from a blocking one-off socket."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(encode_link_dump(1))
        links: list[LinkMessage] = []
        while True:
            data = sock.recv(1 << 20)
            links += [m for m in decode_notifications(data) if isinstance(m, LinkMessage)]
            for kind, _, _, payload, _ in _messages(data):
                if kind == NLMSG_DONE:  # often in the same datagram as the last links
                    return links
                if kind == NLMSG_ERROR:
                    (error,) = _ERROR.unpack_from(data, payload)
                    raise OSError(-error, os.strerror(-error))


def decode_acks(data: bytes) -> list[Ack]:
    """The acknowledgements (NLMSG_ERROR messages) in one datagram read from the socket."""
    acks = []
    for kind, flags, sequence, payload, end in _messages(data):
        if kind != NLMSG_ERROR or payload + _ERROR.size + _HEADER.size > end:
            continue
        (error,) = _ERROR.unpack_from(data, payload)
        echoed = payload + _ERROR.size
        (echoed_length,) = struct.unpack_from("=I", data, echoed)
        # With NETLINK_CAP_ACK the kernel echoes only the request's header.
        attributes = echoed + (_HEADER.size if flags & NLM_F_CAPPED else echoed_length)
        message = ""
        if flags & NLM_F_ACK_TLVS:
            message = _string(_attributes(data, attributes, end).get(NLMSGERR_ATTR_MSG, b""))
        acks.append(Ack(sequence, -error, message))
    return acks


class AddressSocket:
    """A NETLINK_ROUTE socket for address requests, used from trio's thread.

    Create it in the namespace it must act in (``pyvrrp.runtime.netlink.netns.in_netns``): the
    interface index lookup goes through the same socket, so both follow its namespace.
    """

    def __init__(self) -> None:
        self._socket = open_socket()
        try:
            for option in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                self._socket.setsockopt(SOL_NETLINK, option, 1)
        except BaseException:
            self._socket.close()
            raise
        self._sequence = 0
        self._acks: dict[int, Ack] = {}
        self._routes: dict[int, int] = {}  # route answers not taken yet: rtm_type by sequence
        self._abandoned: set[int] = set()
        self._waiting = trio.Lock()
        self.requests = 0

    def index(self, name: str) -> int | None:
        """The interface's index in the socket's namespace, or None if there is none."""
        return interface_index(self._socket, name)

    async def request(self, request: AddressRequest) -> Ack:
        """Send ``request`` and return the kernel's answer.

        The kernel answers before ``sendmsg`` returns, so this normally returns without
        yielding to trio: it is *not* a checkpoint (callers making several requests in a row
        checkpoint once, around all of them). Should the answer not be there, it waits for
        it (a checkpoint) for up to :data:`ACK_TIMEOUT`; a cancellation arriving then
        abandons the answer, not the request.
        """
        sequence = self._next_sequence()
        try:
            self._socket.send(encode_address_request(request, sequence))
        except OSError as exc:  # ENOBUFS, ENOMEM: the kernel could not take it
            return Ack(sequence, exc.errno or errno.EIO, "")
        ack = await self._answer(sequence, self._take)
        if ack is None:
            return Ack(sequence, errno.ETIMEDOUT, "no acknowledgement from the kernel")
        return ack

    async def route_type(self, family: int, address: bytes) -> int:
        """The type (``rtm_type``) of the route the kernel takes to ``address`` now:
        :data:`RTN_LOCAL` once packets for it are delivered to this host.

        Like :meth:`request`, not a checkpoint when the kernel answers inside ``sendmsg`` (it
        does). Raises OSError with the kernel's errno when it has no route (ENETUNREACH) or
        refuses the question, and ETIMEDOUT after :data:`ACK_TIMEOUT` without an answer.
        """
        sequence = self._next_sequence()
        self._socket.send(encode_route_query(family, address, sequence))
        answer: int | Ack | None = await self._answer(sequence, self._take_route)
        if answer is None:
            raise OSError(errno.ETIMEDOUT, "no answer from the kernel")
        if isinstance(answer, Ack):
            raise OSError(answer.error, os.strerror(answer.error))
        return answer

    async def _answer(self, sequence: int, take: Callable[[int], _T | None]) -> _T | None:
        """The answer to request ``sequence``, as ``take`` finds it: at once when the kernel
        answered inside ``sendmsg`` (no checkpoint), else waited for (a checkpoint) for up to
        :data:`ACK_TIMEOUT`; None after that. A cancellation or a timeout abandons the
        answer, not the request: it is dropped when it comes."""
        answer = take(sequence)
        if answer is not None:
            return answer
        try:
            with trio.move_on_after(ACK_TIMEOUT):
                async with self._waiting:  # one task at a time may wait on the socket
                    while (answer := take(sequence)) is None:
                        await trio.lowlevel.wait_readable(self._socket)
        finally:
            if answer is None:  # nobody will take it: drop it when it comes
                self._abandoned.add(sequence)
        return answer

    async def dump_addresses(self, family: int) -> list[AddressEntry]:
        """Every address of ``family`` (AF_UNSPEC: both) in the socket's namespace."""
        entries: list[AddressEntry] = []
        for data in await self._dump(encode_address_dump(family, self._next_sequence())):
            entries += decode_address_dump(data)
        return entries

    async def dump_links(self) -> list[LinkMessage]:
        """Every link in the socket's namespace."""
        links: list[LinkMessage] = []
        for data in await self._dump(encode_link_dump(self._next_sequence())):
            links += [m for m in decode_notifications(data) if isinstance(m, LinkMessage)]
        return links

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0xFFFFFFFF + 1
        self.requests += 1
        return self._sequence

    async def _dump(self, request: bytes) -> list[bytes]:
        """The datagrams answering dump ``request``, up to its NLMSG_DONE.

        The kernel fills the first part of a dump inside ``sendmsg`` and each next part
        inside the ``recvmsg`` that takes the previous one, so this normally reads it all
        without waiting (not a checkpoint); otherwise it waits, up to :data:`ACK_TIMEOUT`.
        """
        (sequence,) = struct.unpack_from("=I", request, 8)
        async with self._waiting:  # one reader of the socket at a time
            self._socket.send(request)
            parts: list[bytes] = []
            with trio.fail_after(ACK_TIMEOUT):
                while True:
                    try:
                        data = self._socket.recv(1 << 20)
                    except BlockingIOError:
                        await trio.lowlevel.wait_readable(self._socket)
                        continue
                    self._store(data, sequence)  # other requests' answers, read here
                    parts.append(data)
                    for kind, _, answer, payload, _ in _messages(data):
                        if answer != sequence:
                            continue
                        if kind == NLMSG_DONE:
                            return parts
                        if kind == NLMSG_ERROR:
                            (error,) = _ERROR.unpack_from(data, payload)
                            raise OSError(-error, os.strerror(-error))

    def _take(self, sequence: int) -> Ack | None:
        self._read()
        return self._acks.pop(sequence, None)

    def _take_route(self, sequence: int) -> int | Ack | None:
        """A route question's answer: its rtm_type, or the kernel's error as an Ack."""
        self._read()
        if sequence in self._routes:
            return self._routes.pop(sequence)
        return self._acks.pop(sequence, None)

    def _read(self) -> None:
        """Store every acknowledgement and route answer waiting on the socket."""
        while True:
            try:
                data = self._socket.recv(65536)
            except BlockingIOError:
                return
            self._store(data, None)

    def _store(self, data: bytes, skip: int | None) -> None:
        """Keep the acknowledgements and route answers in ``data`` for whoever asked, except
        those of sequence ``skip`` (a dump's own) and those nobody waits for any more."""
        answers: list[tuple[int, Ack | int]] = [(a.sequence, a) for a in decode_acks(data)]
        answers += decode_route_answers(data).items()
        for sequence, answer in answers:
            if sequence == skip:
                continue
            if sequence in self._abandoned:
                self._abandoned.discard(sequence)
            elif isinstance(answer, Ack):
                self._acks[sequence] = answer
            else:
                self._routes[sequence] = answer

    def close(self) -> None:
        self._socket.close()
