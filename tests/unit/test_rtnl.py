"""The hand-written rtnetlink codec, with pyroute2's message classes as the independent oracle.

pyroute2 decodes what we encode (address requests) and encodes what we decode (link and
address notifications); acknowledgements are built here byte by byte, as the kernel lays
them out (linux/netlink.h), and tests/netns/test_netlink.py sees real ones.
"""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from pyvrrp.runtime.netlink import rtnl
from pyvrrp.runtime.netlink.rtnl import (
    Ack,
    AddressMessage,
    AddressRequest,
    AddressSocket,
    LinkMessage,
    decode_acks,
    decode_notifications,
    encode_address_request,
)

EXAMPLES = settings(max_examples=200, deadline=None)
NLM_F_REQUEST_ACK = 0x1 | 0x4
NLM_F_CREATE_EXCL = 0x400 | 0x200


@st.composite
def requests(draw: st.DrawFn) -> AddressRequest:
    ipv6 = draw(st.booleans())
    return AddressRequest(
        adding=draw(st.booleans()),
        family=socket.AF_INET6 if ipv6 else socket.AF_INET,
        address=draw(st.binary(min_size=16 if ipv6 else 4, max_size=16 if ipv6 else 4)),
        prefixlen=draw(st.integers(0, 128 if ipv6 else 32)),
        index=draw(st.integers(1, 2**31 - 1)),
        label=None if ipv6 else draw(st.none() | st.text("abcdef0123456789.:", max_size=15)),
        scope=draw(st.sampled_from([0, 200, 253, 254])),
        flags=draw(st.sampled_from([0, 0x02, 0x100])),
        preferred_lifetime_zero=draw(st.booleans()),
    )


def address_text(family: int, packed: bytes) -> str:
    return str(IPv4Address(packed) if family == socket.AF_INET else IPv6Address(packed))


def pyroute2_decode(data: bytes) -> Any:
    message = ifaddrmsg(data)
    message.decode()
    return message


@EXAMPLES
@given(requests(), st.integers(1, 2**32 - 1))
def test_pyroute2_reads_our_address_requests_as_we_meant_them(
    request: AddressRequest, sequence: int
) -> None:
    data = encode_address_request(request, sequence)
    decoded = pyroute2_decode(data)
    header = decoded["header"]

    assert header["length"] == len(data)
    assert header["sequence_number"] == sequence
    assert header["pid"] == 0
    if request.adding:
        assert header["type"] == rtnl.RTM_NEWADDR
        assert header["flags"] == NLM_F_REQUEST_ACK | NLM_F_CREATE_EXCL
    else:
        assert header["type"] == rtnl.RTM_DELADDR
        assert header["flags"] == NLM_F_REQUEST_ACK
    assert (decoded["family"], decoded["prefixlen"], decoded["index"]) == (
        request.family,
        request.prefixlen,
        request.index,
    )
    text = address_text(request.family, request.address)
    assert decoded.get_attr("IFA_LOCAL") == text
    assert decoded.get_attr("IFA_ADDRESS") == text
    if not request.adding:  # a removal names the address and nothing else
        assert (decoded["flags"], decoded["scope"]) == (0, 0)
        assert [name for name, _ in decoded["attrs"]] == ["IFA_LOCAL", "IFA_ADDRESS"]
        return
    assert decoded["scope"] == request.scope
    assert decoded["flags"] == request.flags & 0xFF
    assert decoded.get_attr("IFA_FLAGS") == (request.flags or None)
    assert decoded.get_attr("IFA_LABEL") == request.label
    cacheinfo = decoded.get_attr("IFA_CACHEINFO")
    if request.preferred_lifetime_zero:
        assert (cacheinfo["ifa_preferred"], cacheinfo["ifa_valid"]) == (0, 0xFFFFFFFF)
    else:
        assert cacheinfo is None


def pyroute2_link(kind: int, index: int, name: str, mac: str, mtu: int, family: int = 0) -> bytes:
    message = ifinfmsg()
    message["header"]["type"] = kind
    message["family"] = family
    message["index"] = index
    message["flags"] = 0x11043
    message["attrs"] = [("IFLA_IFNAME", name), ("IFLA_ADDRESS", mac), ("IFLA_MTU", mtu)]
    message.encode()
    return bytes(message.data)


def pyroute2_address(kind: int, family: int, index: int, prefixlen: int, attrs: list[Any]) -> bytes:
    message = ifaddrmsg()
    message["header"]["type"] = kind
    message["family"] = family
    message["prefixlen"] = prefixlen
    message["index"] = index
    message["attrs"] = attrs
    message.encode()
    return bytes(message.data)


def test_link_and_address_notifications_in_one_datagram_decode_in_order() -> None:
    data = (
        pyroute2_link(rtnl.RTM_NEWLINK, 3, "eth0.4000", "02:00:00:00:58:01", 1400)
        + pyroute2_address(rtnl.RTM_NEWADDR, socket.AF_INET, 3, 29,
                           [("IFA_ADDRESS", "1.2.3.58"), ("IFA_LOCAL", "1.2.3.58")])
        + pyroute2_address(rtnl.RTM_DELADDR, socket.AF_INET6, 3, 64,
                           [("IFA_ADDRESS", "2001:db8::58"), ("IFA_FLAGS", 2)])
        + pyroute2_link(rtnl.RTM_DELLINK, 4, "dummy0", "02:00:00:00:00:04", 1500, family=7)
    )  # fmt: skip

    assert decode_notifications(data) == [
        LinkMessage(True, 0, 3, 0x11043, "eth0.4000", bytes.fromhex("020000005801"), 1400),
        AddressMessage(True, socket.AF_INET, 3, 29, IPv4Address("1.2.3.58").packed),
        AddressMessage(False, socket.AF_INET6, 3, 64, IPv6Address("2001:db8::58").packed),
        LinkMessage(False, 7, 4, 0x11043, "dummy0", bytes.fromhex("020000000004"), 1500),
    ]


def test_ifa_local_is_the_address_where_ifa_address_is_a_peer() -> None:
    point_to_point = pyroute2_address(
        rtnl.RTM_NEWADDR, socket.AF_INET, 5, 32,
        [("IFA_ADDRESS", "10.0.0.2"), ("IFA_LOCAL", "10.0.0.1")],
    )  # fmt: skip

    (message,) = decode_notifications(point_to_point)

    assert isinstance(message, AddressMessage)
    assert message.address == IPv4Address("10.0.0.1").packed


def test_other_messages_and_attributeless_addresses_are_skipped() -> None:
    route = struct.pack("=IHHII", 28, 24, 0, 0, 0) + bytes(12)  # RTM_NEWROUTE
    bare = pyroute2_address(rtnl.RTM_NEWADDR, socket.AF_INET, 3, 24, [])

    assert decode_notifications(route + bare) == []


def ack(sequence: int, error: int, *, message: str | None = None, echoed: bytes = b"") -> bytes:
    """An NLMSG_ERROR as the kernel builds it, capped (header only echoed) or not."""
    request = struct.pack("=IHHII", 16 + len(echoed), rtnl.RTM_NEWADDR, 0x605, sequence, 0)
    payload = struct.pack("=i", -error) + request + echoed
    flags = 0 if echoed else 0x100  # NLM_F_CAPPED
    if message is not None:
        text = message.encode() + b"\0"
        payload += struct.pack("=HH", 4 + len(text), 1) + text + bytes(-len(text) % 4)
        flags |= 0x200  # NLM_F_ACK_TLVS
    return struct.pack("=IHHII", 16 + len(payload), rtnl.NLMSG_ERROR, flags, sequence, 7) + payload


def test_acknowledgements_carry_the_errno_and_the_kernels_message() -> None:
    data = (
        ack(1, 0)
        + ack(2, errno.EEXIST, message="ipv4: Address already assigned")
        + ack(3, errno.EINVAL, echoed=bytes(24))  # uncapped: the whole request is echoed
        + ack(4, errno.EINVAL, message="bad", echoed=bytes(8))
    )

    assert decode_acks(data) == [
        Ack(1, 0),
        Ack(2, errno.EEXIST, "ipv4: Address already assigned"),
        Ack(3, errno.EINVAL),
        Ack(4, errno.EINVAL, "bad"),
    ]


@EXAMPLES
@given(st.binary(max_size=300))
def test_garbage_never_raises(data: bytes) -> None:
    decode_acks(data)
    decode_notifications(data)
    rtnl.decode_route_answers(data)


@EXAMPLES
@given(st.data())
def test_truncated_or_corrupted_messages_never_raise(data: st.DataObject) -> None:
    valid = (
        pyroute2_link(rtnl.RTM_NEWLINK, 3, "eth0.4000", "02:00:00:00:58:01", 1400)
        + pyroute2_address(rtnl.RTM_NEWADDR, socket.AF_INET, 3, 29, [("IFA_LOCAL", "1.2.3.58")])
        + ack(9, errno.EEXIST, message="exists")
    )
    cut = data.draw(st.integers(0, len(valid)))
    position = data.draw(st.integers(0, len(valid) - 1))
    corrupted = bytearray(valid[:cut])
    if position < cut:
        corrupted[position] = data.draw(st.integers(0, 255))

    decode_acks(bytes(corrupted))
    decode_notifications(bytes(corrupted))
    rtnl.decode_route_answers(bytes(corrupted))


# --- AddressSocket when the answer is late: a datagram socketpair plays the kernel ---------

REQUEST = AddressRequest(True, socket.AF_INET, IPv4Address("1.2.3.58").packed, 29, 3)


@pytest.fixture
def fake_kernel() -> Any:
    """An AddressSocket talking to the returned end of a socketpair instead of netlink."""
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    address_socket = AddressSocket()
    address_socket._socket.close()
    address_socket._socket = ours
    yield address_socket, kernel
    address_socket.close()
    kernel.close()


def sequence_of(request: bytes) -> int:
    sequence: int = struct.unpack_from("=IHHII", request)[3]
    return sequence


async def test_an_answer_already_there_returns_without_yielding(fake_kernel: Any) -> None:
    address_socket, kernel = fake_kernel
    # The fake kernel answers sequence 1 before it is asked, as the real one does in sendmsg.
    kernel.send(ack(1, 0))

    with trio.testing.assert_no_checkpoints():
        answer = await address_socket.request(REQUEST)

    assert answer == Ack(1, 0)
    assert sequence_of(kernel.recv(1024)) == 1
    assert address_socket.requests == 1


async def test_a_late_answer_is_waited_for_and_others_answers_kept(fake_kernel: Any) -> None:
    address_socket, kernel = fake_kernel
    answers: list[Ack] = []

    async def ask() -> None:
        answers.append(await address_socket.request(REQUEST))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        first, second = sequence_of(kernel.recv(1024)), sequence_of(kernel.recv(1024))
        kernel.send(ack(second, errno.EEXIST) + ack(first, 0))  # out of order, one datagram

    assert sorted(answers, key=lambda a: a.sequence) == [Ack(first, 0), Ack(second, errno.EEXIST)]


async def test_no_answer_is_a_timeout_and_the_late_answer_is_dropped(
    fake_kernel: Any, autojump_clock: trio.testing.MockClock
) -> None:
    address_socket, kernel = fake_kernel

    start = trio.current_time()
    answer = await address_socket.request(REQUEST)

    assert answer.error == errno.ETIMEDOUT
    assert trio.current_time() - start == pytest.approx(rtnl.ACK_TIMEOUT)
    kernel.send(ack(answer.sequence, 0))  # too late: nobody waits for it
    kernel.send(ack(answer.sequence + 1, 0))
    assert await address_socket.request(REQUEST) == Ack(answer.sequence + 1, 0)
    assert address_socket._acks == {}


async def test_a_request_the_kernel_refuses_to_take_is_an_answer(fake_kernel: Any) -> None:
    address_socket, kernel = fake_kernel
    kernel.close()  # sends now fail with ECONNREFUSED

    answer = await address_socket.request(REQUEST)

    assert answer.error == errno.ECONNREFUSED


def test_interface_names_and_indexes_resolve_in_the_sockets_namespace() -> None:
    with rtnl.open_socket() as sock:
        assert rtnl.interface_index(sock, "lo") == 1  # the loopback is always index 1
        assert rtnl.interface_name(sock, 1) == "lo"
        assert rtnl.interface_index(sock, "nope0") is None
        assert rtnl.interface_name(sock, 2**31 - 1) is None
        # The kernel would read this one as "lo".
        assert rtnl.interface_index(sock, "lo\0x") is None


def test_an_address_dump_decodes_flags_scope_and_the_address() -> None:
    with_flags = ifaddrmsg()
    with_flags["header"]["type"] = rtnl.RTM_NEWADDR
    with_flags["family"] = socket.AF_INET6
    with_flags["prefixlen"] = 64
    with_flags["flags"] = 0x80  # the header's byte: IFA_FLAGS below wins
    with_flags["scope"] = 253
    with_flags["index"] = 3
    with_flags["attrs"] = [("IFA_ADDRESS", "fe80::1"), ("IFA_FLAGS", 0x142)]
    with_flags.encode()
    data = (
        pyroute2_address(rtnl.RTM_NEWADDR, socket.AF_INET, 3, 29,
                         [("IFA_ADDRESS", "1.2.3.58"), ("IFA_LOCAL", "1.2.3.58")])
        + bytes(with_flags.data)
        + pyroute2_link(rtnl.RTM_NEWLINK, 3, "eth0.4000", "02:00:00:00:58:01", 1400)
    )  # fmt: skip

    assert rtnl.decode_address_dump(data) == [
        rtnl.AddressEntry(socket.AF_INET, 3, 29, IPv4Address("1.2.3.58").packed, 0, 0),
        rtnl.AddressEntry(socket.AF_INET6, 3, 64, IPv6Address("fe80::1").packed, 0x142, 253),
    ]


def test_an_address_dump_request_is_what_pyroute2_reads_as_one() -> None:
    message = ifaddrmsg(rtnl.encode_address_dump(socket.AF_INET6, 7))
    message.decode()

    assert message["header"]["type"] == rtnl.RTM_GETADDR
    assert message["header"]["flags"] == 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_DUMP
    assert message["header"]["sequence_number"] == 7
    assert message["family"] == socket.AF_INET6


# --- route questions: "how does the kernel route this address now?" (ip route get) ---------


@pytest.mark.parametrize(
    ("family", "address", "length"),
    [(socket.AF_INET6, "2a03:4444:fff0:59:88::58", 128), (socket.AF_INET, "1.2.3.58", 32)],
)
def test_a_route_question_is_what_pyroute2_reads_as_ip_route_get(
    family: int, address: str, length: int
) -> None:
    packed = socket.inet_pton(family, address)
    message = rtmsg(rtnl.encode_route_query(family, packed, 9))
    message.decode()

    assert message["header"]["type"] == rtnl.RTM_GETROUTE
    assert message["header"]["flags"] == 0x1  # NLM_F_REQUEST: one answer, not a dump
    assert message["header"]["sequence_number"] == 9
    assert (message["family"], message["dst_len"], message["src_len"]) == (family, length, 0)
    assert [(name, value) for name, value in message["attrs"]] == [("RTA_DST", address)]


def pyroute2_route(sequence: int, kind: int, destination: str) -> bytes:
    message = rtmsg()
    message["header"]["type"] = rtnl.RTM_NEWROUTE
    message["header"]["sequence_number"] = sequence
    message["family"] = socket.AF_INET6
    message["dst_len"] = 128
    message["table"] = 255
    message["type"] = kind
    message["attrs"] = [("RTA_DST", destination), ("RTA_TABLE", 255), ("RTA_OIF", 3)]
    message.encode()
    return bytes(message.data)


def test_route_answers_decode_the_route_type_by_sequence() -> None:
    data = (
        pyroute2_route(5, rtnl.RTN_LOCAL, "2001:db8::1")
        + ack(6, errno.ENETUNREACH)
        + pyroute2_route(7, 1, "2001:db8::2")  # RTN_UNICAST: on-link, not ours (yet)
    )

    assert rtnl.decode_route_answers(data) == {5: rtnl.RTN_LOCAL, 7: 1}
    assert decode_acks(data) == [Ack(6, errno.ENETUNREACH)]


VIP6_PACKED = IPv6Address("2001:db8::1").packed


async def test_a_route_answer_already_there_returns_without_yielding(fake_kernel: Any) -> None:
    address_socket, kernel = fake_kernel
    kernel.send(pyroute2_route(1, rtnl.RTN_LOCAL, "2001:db8::1"))

    with trio.testing.assert_no_checkpoints():
        kind = await address_socket.route_type(socket.AF_INET6, VIP6_PACKED)

    assert kind == rtnl.RTN_LOCAL
    assert sequence_of(kernel.recv(1024)) == 1


async def test_a_route_the_kernel_has_not_is_its_errno(fake_kernel: Any) -> None:
    address_socket, kernel = fake_kernel
    kernel.send(ack(1, errno.ENETUNREACH))

    with pytest.raises(OSError) as caught:
        await address_socket.route_type(socket.AF_INET6, VIP6_PACKED)

    assert caught.value.errno == errno.ENETUNREACH


async def test_a_late_route_answer_is_waited_for_and_an_address_ack_kept(
    fake_kernel: Any,
) -> None:
    address_socket, kernel = fake_kernel
    kinds: list[int] = []
    acks: list[Ack] = []

    async def ask_route() -> None:
        kinds.append(await address_socket.route_type(socket.AF_INET6, VIP6_PACKED))

    async def ask_address() -> None:
        acks.append(await address_socket.request(REQUEST))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask_route)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ask_address)
        await trio.testing.wait_all_tasks_blocked()
        route, address = sequence_of(kernel.recv(1024)), sequence_of(kernel.recv(1024))
        # One datagram, the address's answer first: each goes to whoever asked.
        kernel.send(ack(address, 0) + pyroute2_route(route, 1, "2001:db8::1"))

    assert kinds == [1]
    assert acks == [Ack(address, 0)]
    assert (address_socket._acks, address_socket._routes) == ({}, {})


async def test_no_route_answer_is_a_timeout_and_the_late_answer_is_dropped(
    fake_kernel: Any, autojump_clock: trio.testing.MockClock
) -> None:
    address_socket, kernel = fake_kernel

    with pytest.raises(OSError) as caught:
        await address_socket.route_type(socket.AF_INET6, VIP6_PACKED)

    assert caught.value.errno == errno.ETIMEDOUT
    sequence = sequence_of(kernel.recv(1024))
    kernel.send(pyroute2_route(sequence, rtnl.RTN_LOCAL, "2001:db8::1"))  # too late
    kernel.send(pyroute2_route(sequence + 1, rtnl.RTN_LOCAL, "2001:db8::1"))
    assert await address_socket.route_type(socket.AF_INET6, VIP6_PACKED) == rtnl.RTN_LOCAL
    assert address_socket._routes == {}
