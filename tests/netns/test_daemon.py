"""The daemon (`python -m pyvrrp -c node.toml`) on the real kernel, in the netns lab.

Two nodes on the lab's vSwitch (a bridge in its own namespace), A (priority 100) and B (50),
each running three instances with a 1 s advertisement interval:

- ``mc4``: IPv4, multicast (224.0.0.18), VIP 1.2.3.60;
- ``uc4``: IPv4, unicast between the nodes, VIP 1.2.3.61 and an excluded IPv6 address;
- ``v6``: IPv6, multicast (ff02::12), a link-local first address (RFC 9568 §5.2.9) and a
  global one.

One lab serves the module; before every test ``Lab.reset`` restarts missing daemons and waits
until A holds every address again, so tests stay independent. The ground truth for "who holds
a VIP" is ``ip -j addr`` in each namespace (``Lab.holders``); frames are captured on the
switch's ports with AF_PACKET sockets and decoded with scapy, an implementation independent of
pyvrrp's codec.

Timing bounds come from RFC 9568 §6.1 (Skew_Time, Master_Down_Interval) plus margins for a busy
2-core machine, explained where they are used. Measured on the 2-core development machine: a
SIGTERM moves every VIP to B 4-16 ms after B's Skew_Time (0.805 s) with no client-visible
outage beyond 25 ms; a cut link moves them after B's Master_Down_Interval (3.7-3.8 s).

Drop counters are read with ``pyvrrp status --json``. The daemons of the README and SIGTERM
tests are started by the test itself (``own_daemon``) because the Lab does not report exit
statuses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from nslab import ClusterSpec, InstanceSpec, Lab, NodeSpec
from nslab.system import pid_alive
from scapy.layers.inet import IP, in4_chksum
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6NDOptDstLLAddr,
    IPv6,
    in6_chksum,
)
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vrrp import VRRPv3
from scapy.packet import Raw

from pyvrrp.core.packet import decode
from pyvrrp.runtime.daemon import missing_capabilities
from pyvrrp.runtime.netlink import in_netns
from tests.conftest import netns_unavailable_reason
from tests.mailserver import HOST, Server, free_port
from tests.netns.labtools import master_down_interval, skew_time

ROOT = Path(__file__).resolve().parents[2]
INTERFACE = "eth0.4000"
INTERVAL = 1.0  # advert_interval of every instance, seconds
GARP_REPEAT = 3
PRIORITY = {"A": 100, "B": 50}

MC4_VIP = "1.2.3.60"
UC4_VIP = "1.2.3.61"
UC4_EXCLUDED = "2a03:4444:fff0:59:88::61"
V6_LINK_LOCAL = "fe80::62"
V6_VIP = "2a03:4444:fff0:59:88::62"
VRIDS = {"mc4": 60, "uc4": 61, "v6": 62}

MC4 = InstanceSpec(
    name="mc4", vrid=VRIDS["mc4"], priorities=PRIORITY, addresses=(f"{MC4_VIP}/29",), master="A"
)
UC4 = InstanceSpec(
    name="uc4",
    vrid=VRIDS["uc4"],
    priorities=PRIORITY,
    addresses=(f"{UC4_VIP}/29",),
    excluded_addresses=(f"{UC4_EXCLUDED}/64",),
    master="A",
)
V6 = InstanceSpec(
    name="v6",
    vrid=VRIDS["v6"],
    priorities=PRIORITY,
    addresses=(f"{V6_LINK_LOCAL}/64", f"{V6_VIP}/64"),
    master="A",
)
CLUSTER = ClusterSpec(
    nodes=(
        NodeSpec("A", "192.168.200.1", "fd00:200::1"),
        NodeSpec("B", "192.168.200.2", "fd00:200::2"),
    ),
    instances=(MC4, UC4, V6),
    unicast=False,  # per instance below: the lab's generator cannot mix the two modes
    health=None,
)
NODE_IP = {n.name: n.vswitch_ip for n in CLUSTER.nodes}
ALL_AT_A = {a: ["A"] for a in CLUSTER.vip_addresses()}
ALL_AT_B = {a: ["B"] for a in CLUSTER.vip_addresses()}
# The addresses a client can reach (the link-local VIP is not probed: it needs a scope).
PROBED = (MC4_VIP, UC4_VIP, UC4_EXCLUDED, V6_VIP)

IPV4_GROUP = "224.0.0.18"
IPV6_GROUP = "ff02::12"
IPV4_GROUP_MAC = "01:00:5e:00:00:12"  # RFC 1112 §6.4
IPV6_GROUP_MAC = "33:33:00:00:00:12"  # RFC 2464 §7
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def node_toml(lab: Lab, node: str) -> str:
    """The node.toml of ``node``: the three instances, control files in the node's dir."""
    peer = next(n for n in NODE_IP if n != node)
    run_dir = lab.node_dir(node)
    common = (
        f'interface = "{INTERFACE}"\n'
        f"priority = {PRIORITY[node]}\n"
        f"advert_interval = {INTERVAL}\n"
        f"garp_repeat = {GARP_REPEAT}\n"
        "garp_delay = 0.0\n"  # one burst only: the announcement test counts frames exactly
    )
    return (
        "[global]\n"
        f'router_id = "{node}"\n'
        f'control_socket = "{run_dir / "pyvrrp.sock"}"\n'
        f'state_dir = "{run_dir / "state"}"\n'
        "\n[instances.mc4]\n"
        f"vrid = {VRIDS['mc4']}\n{common}"
        f'addresses = ["{MC4_VIP}/29"]\n'
        "\n[instances.uc4]\n"
        f"vrid = {VRIDS['uc4']}\n{common}"
        f'unicast_source = "{NODE_IP[node]}"\n'
        f'unicast_peers = ["{NODE_IP[peer]}"]\n'
        f'addresses = ["{UC4_VIP}/29"]\n'
        f'excluded_addresses = ["{UC4_EXCLUDED}/64"]\n'
        "\n[instances.v6]\n"
        f"vrid = {VRIDS['v6']}\n{common}"
        f'addresses = ["{V6_LINK_LOCAL}/64", "{V6_VIP}/64"]\n'
    )


def _require_lab_environment() -> None:
    """Module fixtures run before conftest's per-test guard: apply its policy here too."""
    reason = netns_unavailable_reason()
    if reason is not None:
        if os.environ.get("PYVRRP_REQUIRE_NETNS") == "1":
            pytest.fail(f"{reason} (PYVRRP_REQUIRE_NETNS=1 forbids skipping)")
        pytest.skip(reason)


def _netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def daemon_lab() -> Iterator[Lab]:
    _require_lab_environment()
    lab = Lab(CLUSTER)
    pids: list[int] = []
    try:
        lab.up()
        for node in lab.nodes:
            lab.start(node, "pyvrrp", node_toml(lab, node))
        lab.wait_holders(ALL_AT_A, timeout=30)
        yield lab
    finally:
        pids = lab.processes()
        lab.down()
    # Nothing leaks: no namespace of this lab (`ip netns list`), no process it started.
    prefix = f"{lab.prefix}-{lab.id}-"
    assert [ns for ns in _netns_list() if ns.startswith(prefix)] == []
    assert [p for p in pids if pid_alive(p)] == []


@pytest.fixture
def lab(daemon_lab: Lab) -> Lab:
    # Restores links, restarts stopped daemons with their last config (always node_toml: the
    # tests that run another config put node_toml back) and waits until A holds everything.
    daemon_lab.reset(timeout=30)
    return daemon_lab


# --------------------------------------------------------------------------- observation


class Capture:
    """Every frame crossing a bridge port in the switch namespace (an AF_PACKET socket).

    ``from_node()`` are the frames the node sent (they enter the bridge on its port);
    frames the bridge sends to the node are PACKET_OUTGOING on the port and left out.
    """

    def __init__(self, lab: Lab, node: str) -> None:
        port = f"port-{node}"

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            sock.bind((port, 0))
            sock.setblocking(False)
            return sock

        self._sock = in_netns(lab.switch_ns, make)
        self._frames: list[tuple[int, bytes]] = []

    def _drain(self) -> None:
        while True:
            try:
                data, address = self._sock.recvfrom(65535)
            except BlockingIOError:
                return
            self._frames.append((address[2], data))

    def from_node(self) -> list[Any]:
        """Frames the node sent so far, decoded by scapy."""
        self._drain()
        return [Ether(data) for kind, data in self._frames if kind != PACKET_OUTGOING]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWADDR = 20
RTM_DELADDR = 21
IFA_ADDRESS = 1
IFA_LOCAL = 2


class AddressWatcher:
    """The kernel's address notifications in a namespace (rtnetlink, no polling).

    Times are taken when the notification is read: never earlier than the change, so a
    measured delay can only be overestimated.
    """

    def __init__(self, netns: str) -> None:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
            return sock

        self.sock = in_netns(netns, make)

    def read(self) -> list[tuple[bool, str]]:
        """The (added, address) notifications waiting now."""
        events: list[tuple[bool, str]] = []
        while select.select([self.sock], [], [], 0)[0]:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    break
                if kind in (RTM_NEWADDR, RTM_DELADDR):
                    events.append(
                        (kind == RTM_NEWADDR, _ifa_address(data[offset : offset + length]))
                    )
                offset += (length + 3) & ~3
        return events

    def close(self) -> None:
        self.sock.close()


def _ifa_address(message: bytes) -> str:
    """The address of an RTM_NEWADDR/RTM_DELADDR message (IFA_LOCAL, else IFA_ADDRESS)."""
    family = message[16]
    found: dict[int, bytes] = {}
    offset = 16 + 8  # nlmsghdr, ifaddrmsg
    while offset + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, offset)
        if length < 4:
            break
        found[kind] = message[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    raw = found.get(IFA_LOCAL, found.get(IFA_ADDRESS, b""))
    return socket.inet_ntop(family, raw) if raw else ""


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` every 20 ms; return how long it took. AssertionError on timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def holding(lab: Lab, node: str) -> set[str]:
    """The cluster's addresses ``node`` holds now (``ip -j addr``: the ground truth)."""
    return set(lab.addresses(node)) & set(CLUSTER.vip_addresses())


def transitions(log: str) -> list[str]:
    """The state changes in a daemon log (``vip58: BACKUP -> MASTER (...)``)."""
    return [line for line in log.splitlines() if re.search(r" \w+ -> \w+ \(", line)]


def mac_of(lab: Lab, node: str, interface: str = INTERFACE) -> str:
    (link,) = json.loads(lab.run_in(node, "ip", "-j", "link", "show", "dev", interface).stdout)
    return str(link["address"])


def link_local_of(lab: Lab, node: str) -> str:
    """The interface's own link-local address (not the VIP fe80::62)."""
    out = lab.run_in(node, "ip", "-j", "-6", "addr", "show", "dev", INTERFACE, "scope", "link")
    (link,) = json.loads(out.stdout)
    own = [a["local"] for a in link["addr_info"] if a.get("local", V6_LINK_LOCAL) != V6_LINK_LOCAL]
    assert len(own) == 1, own
    return str(own[0])


# --------------------------------------------------------------------------- the tests


def test_master_holds_every_vip_and_the_backup_none(lab: Lab) -> None:
    # Multicast IPv4, unicast IPv4 (with an excluded IPv6 address) and IPv6 instances.
    assert holding(lab, "A") == set(CLUSTER.vip_addresses())
    assert holding(lab, "B") == set()
    # What the daemons say agrees with the kernel, and B knows who its master is.
    master = {"mc4": NODE_IP["A"], "uc4": NODE_IP["A"], "v6": link_local_of(lab, "A")}
    at_a, at_b = lab.status("A")["instances"], lab.status("B")["instances"]
    for name in VRIDS:
        assert (at_a[name]["state"], at_a[name]["holding_addresses"]) == ("MASTER", True)
        assert (at_b[name]["state"], at_b[name]["holding_addresses"]) == ("BACKUP", False)
        assert at_b[name]["master"] == {"address": master[name], "priority": 100}


def _vrrp_checksum_ok(packet: Any) -> bool:
    """scapy's own checksum over the VRRP message with the IPv4/IPv6 pseudo-header."""
    layer = packet[VRRPv3]
    message = bytearray(bytes(layer))
    message[6:8] = b"\0\0"
    if IP in packet:
        expected = in4_chksum(112, packet[IP], bytes(message))
    else:
        expected = in6_chksum(112, packet[IPv6], bytes(message))  # type: ignore[no-untyped-call]
    return bool(expected == layer.chksum)


def test_adverts_on_the_wire_are_well_formed_and_unicast_goes_only_to_the_peer(
    lab: Lab,
) -> None:
    mac_b = mac_of(lab, "B")
    link_local_a = link_local_of(lab, "A")
    with Capture(lab, "A") as from_a, Capture(lab, "B") as from_b:
        # At least two adverts of each instance: 2 intervals plus a scheduling margin.
        time.sleep(2 * INTERVAL + 0.5)
        frames_a = from_a.from_node()
        frames_b = from_b.from_node()
    adverts = [f for f in frames_a if VRRPv3 in f]
    by_vrid: dict[int, list[Any]] = {}
    for frame in adverts:
        by_vrid.setdefault(frame[VRRPv3].vrid, []).append(frame)
    assert sorted(by_vrid) == sorted(VRIDS.values())
    expected = {
        VRIDS["mc4"]: (IPV4_GROUP, IPV4_GROUP_MAC, NODE_IP["A"], [MC4_VIP]),
        VRIDS["uc4"]: (NODE_IP["B"], mac_b, NODE_IP["A"], [UC4_VIP]),
        VRIDS["v6"]: (IPV6_GROUP, IPV6_GROUP_MAC, link_local_a, [V6_LINK_LOCAL, V6_VIP]),
    }
    for vrid, frames in by_vrid.items():
        destination, dst_mac, source, addresses = expected[vrid]
        assert len(frames) >= 2, f"VRID {vrid}: {len(frames)} adverts in 2.5 intervals"
        for frame in frames:
            ip = frame[IP] if IP in frame else frame[IPv6]
            vrrp = frame[VRRPv3]
            # RFC 9568 §5.1.1.3 / §5.1.2.3: TTL / hop limit 255.
            assert (ip.ttl if IP in frame else ip.hlim) == 255
            # Unicast adverts go to the peer only: its address and its MAC, never a group.
            assert (ip.dst, frame.dst, ip.src) == (destination, dst_mac, source)
            assert _vrrp_checksum_ok(frame), frame.show(dump=True)
            assert (vrrp.version, vrrp.type, vrrp.priority, vrrp.adv) == (3, 1, 100, 100)
            assert vrrp.ipcount == len(addresses)
            assert [str(ipaddress.ip_address(a)) for a in vrrp.addrlist] == addresses
    # The backup sends no advert at all (RFC 9568 §6.4.2).
    assert [f for f in frames_b if VRRPv3 in f] == []


def _icmpv6_checksum_ok(frame: Any) -> bool:
    icmp = bytearray(bytes(frame[ICMPv6ND_NA]))
    icmp[2:4] = b"\0\0"
    expected = in6_chksum(58, frame[IPv6], bytes(icmp))  # type: ignore[no-untyped-call]
    return bool(expected == frame[ICMPv6ND_NA].cksum)


def announcements(frames: list[Any]) -> tuple[list[Any], list[Any]]:
    """The gratuitous ARPs and unsolicited NAs among ``frames``.

    The kernel's own ARP requests (resolving a unicast peer) have sender != target; its own
    NAs answer solicitations (S=1); it sends no unsolicited NA (ndisc_notify is off).
    """
    garps = [f for f in frames if ARP in f and f[ARP].psrc == f[ARP].pdst]
    nas = [f for f in frames if ICMPv6ND_NA in f and not f[ICMPv6ND_NA].S]
    return garps, nas


def announced(frames: list[Any]) -> Counter[str]:
    """How many announcements each address got."""
    garps, nas = announcements(frames)
    return Counter(
        [f[ARP].psrc for f in garps] + [str(ipaddress.ip_address(f[ICMPv6ND_NA].tgt)) for f in nas]
    )


def test_new_master_announces_each_address_garp_repeat_times_with_its_mac(lab: Lab) -> None:
    mac_b = mac_of(lab, "B")
    # Every address once per repeat: ARP for IPv4, NA for IPv6, excluded addresses included;
    # twice over, since A left with priority 0: the burst at the takeover, and the same again
    # HANDOVER_REANNOUNCE (0.3 s) later, once A has let go of the addresses.
    expected = Counter(dict.fromkeys(CLUSTER.vip_addresses(), 2 * GARP_REPEAT))
    with Capture(lab, "B") as from_b:
        lab.stop("A")  # SIGTERM: B takes over after its Skew_Time
        lab.wait_holders(ALL_AT_B, timeout=master_down_interval(PRIORITY["B"]) + 5)
        # The bursts leave right after each instance's addresses are installed and 0.3 s
        # later: wait for them (3 s for a busy machine), then a little longer to see that
        # nothing more follows (garp_delay = 0: no second burst).
        wait_until(lambda: announced(from_b.from_node()) >= expected, 3, "B's announcements")
        time.sleep(0.5)
        frames = from_b.from_node()
    assert announced(frames) == expected
    garps, nas = announcements(frames)
    for frame in garps:
        arp = frame[ARP]
        # keepalived's gratuitous ARP: a broadcast request, sender = target = the VIP.
        assert (frame.dst, frame.src, frame.type) == ("ff:ff:ff:ff:ff:ff", mac_b, 0x0806)
        assert (arp.op, arp.hwsrc, arp.hwtype, arp.ptype) == (1, mac_b, 1, 0x0800)
    for frame in nas:
        na = frame[ICMPv6ND_NA]
        # RFC 4861 §7.2.6: to all-nodes, hop limit 255, Override set, our MAC as option.
        assert (frame.dst, frame.src) == ("33:33:00:00:00:01", mac_b)
        assert (frame[IPv6].dst, frame[IPv6].hlim) == ("ff02::1", 255)
        assert (na.O, na.S, na.R) == (1, 0, 0)  # R: the lab's nodes do not forward IPv6
        assert na[ICMPv6NDOptDstLLAddr].lladdr == mac_b
        assert _icmpv6_checksum_ok(frame), frame.show(dump=True)


@contextlib.contextmanager
def own_daemon(
    lab: Lab,
    node: str,
    config_text: str,
    name: str,
    wrapper: Sequence[str] = (),
    args: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m pyvrrp -c FILE ARGS`` in ``node``'s namespace, started by the test itself
    (``wrapper``: a command that execs it, such as ``private_run_dirs``).

    For when a test needs what the Lab does not give: the daemon's exit status. Killed (its
    whole process group, by pid) at the end if it still runs.
    """
    conf = lab.node_dir(node) / f"{name}.toml"
    conf.write_text(config_text)
    argv = ["ip", "netns", "exec", lab.ns(node), *wrapper, sys.executable, "-m", "pyvrrp"]
    with (lab.node_dir(node) / f"{name}.log").open("ab") as log:
        popen = subprocess.Popen(
            [*argv, "-c", str(conf), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
    try:
        yield popen
    finally:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(10)


def own_log(lab: Lab, node: str, name: str) -> str:
    return (lab.node_dir(node) / f"{name}.log").read_text(errors="replace")


def test_the_daemon_tells_systemd_when_it_is_ready_reloading_and_stopping(lab: Lab) -> None:
    """Type=notify (contrib/pyvrrp.service): READY=1 once the routers run, RELOADING=1 then
    READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM. B, the backup, plays the unit."""
    lab.stop("B")
    path = lab.node_dir("B") / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        systemd.settimeout(15)

        def fields() -> dict[str, str]:
            message = systemd.recv(4096).decode()
            return dict(line.split("=", 1) for line in message.split("\n"))

        wrapper = ["env", f"NOTIFY_SOCKET={path}"]
        with own_daemon(lab, "B", node_toml(lab, "B"), "notify", wrapper) as daemon:
            ready = fields()
            assert ready["READY"] == "1"
            # The status line systemctl shows: every instance and its state.
            assert all(f"{i.name} BACKUP" in ready["STATUS"] for i in CLUSTER.instances), ready
            daemon.send_signal(signal.SIGHUP)
            reloading = fields()
            assert reloading["RELOADING"] == "1"
            assert int(reloading["MONOTONIC_USEC"]) > 0
            assert fields()["READY"] == "1"
            daemon.send_signal(signal.SIGTERM)
            assert fields() == {"STOPPING": "1"}
            assert daemon.wait(15) == 0
    log = own_log(lab, "B", "notify")
    assert "received SIGHUP: reloading" in log
    assert "configuration reloaded" in log


def test_the_daemon_mails_its_transitions_and_logs_them_as_json(lab: Lab) -> None:
    """[global.email] and email = true on a real daemon, with --log-format json and
    --log-level debug: B's start (three instances to BACKUP) is one mail, its stop (three
    STOPs) another, sent before it exits; the SMTP server runs in B's namespace."""
    lab.stop("B")
    server = Server(free_port())
    in_netns(lab.ns("B"), server.start)  # the server's thread inherits the namespace
    try:
        email = (
            "\n[global.email]\n"
            f'server = "{HOST}:{server.port}"\n'
            'from = "pyvrrp@b.example.com"\n'
            'to = ["ops@example.com"]\n'
        )
        config = node_toml(lab, "B").replace("\n[instances.", f"{email}\n[instances.", 1)
        config = config.replace(
            f"vrid = {VRIDS['mc4']}\n", f"vrid = {VRIDS['mc4']}\nemail = true\n"
        )
        config = config.replace(
            f"vrid = {VRIDS['uc4']}\n", f"vrid = {VRIDS['uc4']}\nemail = true\n"
        )
        config = config.replace(f"vrid = {VRIDS['v6']}\n", f"vrid = {VRIDS['v6']}\nemail = true\n")
        args = ("--log-format", "json", "--log-level", "debug")
        with own_daemon(lab, "B", config, "email", args=args) as daemon:
            wait_until(lambda: len(server.inbox.received) == 1, 20, "the start's mail")
            status = json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pyvrrp",
                        "status",
                        "--json",
                        "-s",
                        str(lab.node_dir("B") / "pyvrrp.sock"),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=15,
                    cwd=ROOT,
                ).stdout
            )
            assert status["email"]["sent"] == 1
            assert status["email"]["failures"] == 0
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(20) == 0
    finally:
        server.stop()
    start, stop = (mail.message for mail in server.inbox.received)
    assert start["Subject"] == "[B] VRRP Instances mc4, uc4, v6 - Entering BACKUP state"
    assert start["From"] == "pyvrrp@b.example.com"
    assert "[B] uc4: INIT -> BACKUP (startup), priority 50" in start.get_content()
    # The instances stop concurrently: in any order.
    stopped = re.fullmatch(r"\[B\] VRRP Instances (.+) - Entering STOP state", stop["Subject"])
    assert stopped is not None, stop["Subject"]
    assert sorted(stopped.group(1).split(", ")) == ["mc4", "uc4", "v6"]
    assert "[B] uc4: BACKUP -> STOP (shutdown), priority 50" in stop.get_content()
    lines = [json.loads(line) for line in own_log(lab, "B", "email").splitlines()]
    moves = [
        (line["instance"], line["vrid"], line["from"], line["to"], line["priority"])
        for line in lines
        if line.get("event") == "transition"
    ]
    assert sorted(moves) == sorted(
        [(name, VRIDS[name], "INIT", "BACKUP", PRIORITY["B"]) for name in VRIDS]
        + [(name, VRIDS[name], "BACKUP", "INIT", PRIORITY["B"]) for name in VRIDS]
    )
    assert any(line["level"] == "debug" for line in lines)
    assert any(line["message"].startswith("e-mail sent to ops@example.com: ") for line in lines)


def test_sigterm_on_the_master_hands_the_vips_over_within_skew_time(lab: Lab) -> None:
    skew_b = skew_time(PRIORITY["B"])  # 0.805 s
    # The Lab does not report exit statuses: run A's daemon ourselves for this test.
    lab.stop("A")
    lab.wait_holders(ALL_AT_B, timeout=master_down_interval(PRIORITY["B"]) + 5)
    with own_daemon(lab, "A", node_toml(lab, "A"), "sigterm") as daemon:
        # A preempts B (fast preemption: Skew_Time of A after B's next advert).
        lab.wait_holders(ALL_AT_A, timeout=master_down_interval(PRIORITY["A"]) + 5)
        watch_a, watch_b = AddressWatcher(lab.ns("A")), AddressWatcher(lab.ns("B"))
        added_b: dict[str, float] = {}
        removed_a: dict[str, float] = {}
        exited: float | None = None
        wanted = set(CLUSTER.vip_addresses())
        with contextlib.ExitStack() as stack:
            stack.callback(watch_a.close)
            stack.callback(watch_b.close)
            probe = stack.enter_context(lab.probe(PROBED))
            for target in PROBED:
                probe.wait_answered_by(target, "A", timeout=5)
            probe.mark("SIGTERM")
            sent = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            # Long enough for the slowest bound below, and then some.
            deadline = sent + 1 + skew_b + 2 * INTERVAL + 2
            while time.monotonic() < deadline:
                select.select([watch_a.sock, watch_b.sock], [], [], 0.005)
                now = time.monotonic()
                for added, address in watch_b.read():
                    if added and address in wanted:
                        added_b.setdefault(address, now)
                for added, address in watch_a.read():
                    if not added and address in wanted:
                        removed_a.setdefault(address, now)
                if exited is None and daemon.poll() is not None:
                    exited = now
                if exited is not None and set(added_b) == set(removed_a) == wanted:
                    break
            time.sleep(1.0)  # the probe sees the client's traffic settle on B
        report = probe.report()
    timings = {
        a: (round(added_b.get(a, -1) - sent, 3), round(removed_a.get(a, -1) - sent, 3))
        for a in sorted(wanted)
    }
    gaps = {t: round(report[t].max_gap_s, 3) for t in PROBED}
    print(f"SIGTERM at 0: (B holds, A released) per address: {timings}; ", end="")
    print(f"exited at {None if exited is None else round(exited - sent, 3)}; client gaps {gaps}")
    assert set(added_b) == wanted, timings
    assert set(removed_a) == wanted, timings
    # Skew_Time of the backup, counted from its receipt of A's priority-0 advert, which
    # comes after the signal: B cannot hold a VIP sooner (1 ms for µs rounding).
    # The 100 ms is the daemons' own budget: A's reaction to the signal (wake-up, priority-0
    # advert) and B's timer wake-up, advert and netlink request take a few ms when idle.
    # BUSY_MARGIN is the test machine's: on a busy 2-core machine each of those four
    # wake-ups can wait for a CPU up to one CFS scheduling period (~24 ms with a handful of
    # runnable tasks), and our own read of the notification another.
    busy_margin = 0.15
    for address, taken in added_b.items():
        assert skew_b - 0.001 <= taken - sent <= skew_b + 0.1 + busy_margin, timings
        # Graceful handover: A keeps the address until it hears B's first advert, which B
        # sends just before installing its addresses, so A lets go at about the same time.
        assert removed_a[address] - taken <= 0.1 + busy_margin, timings
    assert daemon.returncode == 0, own_log(lab, "A", "sigterm")
    assert exited is not None
    # The daemon's own limit is release_timeout + STOP_MARGIN (it exits as soon as every
    # instance handed over, here right after B's first advert); the bound asked for is
    # 1 s + skew + 2 intervals.
    assert exited - sent <= 1 + skew_b + 2 * INTERVAL, exited - sent
    log = own_log(lab, "A", "sigterm")
    assert "received SIGTERM" in log and "pyvrrp stopped" in log
    assert "Traceback" not in log
    # What clients feel: no outage beyond a few probe intervals (keepalived, which releases
    # at once, leaves them without an answer for Skew_Time: 0.8 s here). Half of that is the
    # bound: a client that re-resolves the address during the 0.1 s overlap (both A and B
    # hold it) may take A's answer until B announces again (HANDOVER_REANNOUNCE, 0.3 s;
    # docs/design.md, "Graceful handover").
    for target in PROBED:
        t = report[target]
        assert t.last_node == "B", t.timeline_text()
        assert t.max_gap_s < skew_b / 2, (target, t.max_gap_s, t.timeline_text())
    assert holding(lab, "A") == set()


def test_events_stream_a_takeover_and_status_keeps_it_in_the_history(lab: Lab) -> None:
    """`pyvrrp events` on B's control socket while A stops: B's three takeovers arrive as
    JSON lines; Ctrl-C (SIGINT) ends the command with 0 and nothing on stderr; B's status
    lists the takeovers last in each instance's history."""
    sock = str(lab.node_dir("B") / "pyvrrp.sock")
    with subprocess.Popen(
        [sys.executable, "-m", "pyvrrp", "events", "-s", sock],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        start_new_session=True,
    ) as events:  # leaving it waits for the process and closes the pipes
        try:
            time.sleep(1.5)  # subscribed (a Python start on a busy machine, generously)
            lab.stop("A")
            taken: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + master_down_interval(PRIORITY["B"]) + 10
            assert events.stdout is not None and events.stderr is not None
            pending = b""
            while set(taken) != set(VRIDS) and time.monotonic() < deadline:
                # Raw reads: a buffered readline() would hide lines select() cannot see.
                ready, _, _ = select.select([events.stdout], [], [], 0.5)
                if not ready:
                    continue
                chunk = os.read(events.stdout.fileno(), 65536)
                assert chunk, f"the events stream ended: {events.stderr.read()!r}"
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    event = json.loads(line)
                    if event["type"] == "transition" and event["to"] == "MASTER":
                        taken[event["instance"]] = event
            assert set(taken) == set(VRIDS), taken
            for name, event in taken.items():
                assert (event["vrid"], event["from"], event["cause"]) == (
                    VRIDS[name],
                    "BACKUP",
                    "master_left",  # A's priority-0 advertisement on its way out
                )
            events.send_signal(signal.SIGINT)
            assert events.wait(10) == 0
            assert events.stderr.read() == b""
        finally:
            if events.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(events.pid, signal.SIGKILL)
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "pyvrrp", "status", "--json", "-s", sock],
            capture_output=True,
            text=True,
            check=True,
            timeout=15,
            cwd=ROOT,
        ).stdout
    )
    for name in VRIDS:
        last = status["instances"][name]["history"][-1]
        assert (last["from"], last["to"], last["cause"]) == ("BACKUP", "MASTER", "master_left")
        assert last["time"] == taken[name]["time"]


def test_the_daemon_logs_host_problems_at_start_and_runs_anyway(lab: Lab) -> None:
    """What `pyvrrp check --host` would refuse (here a tracked interface this host lacks) is
    a warning in the daemon's log, which still starts and stops cleanly."""
    lab.stop("B")
    config = node_toml(lab, "B").replace(
        f"vrid = {VRIDS['mc4']}\n",
        f'vrid = {VRIDS["mc4"]}\ntrack_interfaces = [{{ name = "nope0", weight = -10 }}]\n',
    )
    with own_daemon(lab, "B", config, "hostcheck") as daemon:
        wait_until(lambda: "pyvrrp started" in own_log(lab, "B", "hostcheck"), 20, "the start")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
    log = own_log(lab, "B", "hostcheck")
    conf = lab.node_dir("B") / "hostcheck.toml"
    assert (
        f"host check: {conf}: instances.mc4.track_interfaces[0]: interface nope0 does not "
        "exist on this host (its weight -10 applies as if it were down)"
    ) in log, log
    assert "Traceback" not in log


def test_cutting_the_masters_link_moves_the_vips_to_the_backup(lab: Lab) -> None:
    down_b = master_down_interval(PRIORITY["B"])  # 3.805 s
    log_offset = len(lab.log("B"))
    cut = time.monotonic()
    lab.cut_link("A")  # frames go nowhere; A keeps its carrier and stays master
    # B's Master_Down_Timer was restarted by A's last advert, at most one interval before
    # the cut: B takes over between down - interval and down after it (RFC 9568 §6.4.2).
    # One second of margin for a busy machine and the 100 ms polling of holders.
    lab.wait_holders(ALL_AT_B, timeout=down_b + 1.0, exact=False)
    took = time.monotonic() - cut
    print(f"link cut at 0: B holds every VIP at {took:.3f} s")
    assert took >= down_b - INTERVAL - 0.01, took
    new = lab.log("B")[log_offset:]
    for name in VRIDS:
        assert f"{name}: BACKUP -> MASTER (no advertisement for Master_Down_Interval)" in new
    # A hears nothing either, so it stays master: both hold the VIPs until the link heals.
    assert holding(lab, "A") == set(CLUSTER.vip_addresses())
    lab.restore_link("A")
    # B hears A's higher priority and steps down; A, hearing B's lower one, re-asserts.
    lab.wait_holders(ALL_AT_A, timeout=2 * INTERVAL + 3)


def test_startup_removes_a_vip_left_behind_and_logs_it(lab: Lab) -> None:
    lab.stop("B")
    # What a crashed (SIGKILLed) master leaves: its addresses on the interface.
    for address in (f"{MC4_VIP}/29", f"{UC4_EXCLUDED}/64"):
        lab.run_in("B", "ip", "addr", "add", address, "dev", INTERFACE)
    assert {MC4_VIP, UC4_EXCLUDED} <= holding(lab, "B")
    log_offset = len(lab.log("B"))
    lab.start("B", "pyvrrp", node_toml(lab, "B"))
    # The cleanup runs (and is logged) before the routers start.
    wait_until(lambda: "pyvrrp started" in lab.log("B")[log_offset:], 10, "B to start")
    assert holding(lab, "B") == set()
    new = lab.log("B")[log_offset:]
    for address, instance in ((f"{MC4_VIP}/29", "mc4"), (f"{UC4_EXCLUDED}/64", "uc4")):
        logged = rf"WARNING {instance}: removed {re.escape(address)}\b.*left by a previous run"
        assert re.search(logged, new), new
    # B starts as backup and stays one: A, the master, still holds everything.
    assert holding(lab, "A") == set(CLUSTER.vip_addresses())
    assert [t for t in transitions(new) if "MASTER" in t] == []


def run_pyvrrp(
    lab: Lab, node: str, config_text: str, *prefix: str
) -> subprocess.CompletedProcess[str]:
    """Run the daemon to completion in ``node``'s namespace (``prefix`` wraps it: setpriv)."""
    conf = lab.node_dir(node) / "env-error.toml"
    conf.write_text(config_text)
    argv = ["ip", "netns", "exec", lab.ns(node), *prefix, sys.executable, "-m", "pyvrrp"]
    try:
        # It must fail at startup, in well under a second; subprocess.run kills it (by pid:
        # `ip netns exec` and setpriv exec it) if it runs on instead.
        return subprocess.run(
            [*argv, "-c", str(conf)], capture_output=True, text=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the daemon did not exit: {exc.stdout!r} {exc.stderr!r}") from None


def spare_config(lab: Lab, interface: str) -> str:
    """A config for a second daemon beside the running one: its own VRID, VIP and control
    files, so that even if it started it could not touch the running instances."""
    run_dir = lab.node_dir("A")
    return (
        "[global]\n"
        f'control_socket = "{run_dir / "spare.sock"}"\n'
        f'state_dir = "{run_dir / "spare-state"}"\n'
        "[instances.spare]\n"
        f'interface = "{interface}"\n'
        "vrid = 99\n"
        'addresses = ["1.2.3.62/29"]\n'
    )


def test_a_missing_interface_exits_3_naming_it(lab: Lab) -> None:
    done = run_pyvrrp(lab, "A", spare_config(lab, "eth9"))
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert "interface eth9 does not exist" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("capability", ["net_raw", "net_admin"])
def test_running_without_a_needed_capability_exits_3_naming_it(lab: Lab, capability: str) -> None:
    # Root without one capability: drop it from the bounding set (what exec grants root) and
    # clear the inheritable set. Without CAP_NET_ADMIN the daemon used to run on as a master
    # that could install no address; it must refuse to start instead.
    no_cap = ("setpriv", "--inh-caps=-all", f"--bounding-set=-{capability}")
    done = run_pyvrrp(lab, "A", spare_config(lab, INTERFACE), *no_cap)
    output = done.stdout + done.stderr
    assert done.returncode == 3, output
    assert f"missing CAP_{capability.upper()}" in output
    assert "AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN" in output  # what to do
    assert "Traceback" not in output


def test_missing_capabilities_reads_the_effective_set(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t0000000000002000\n")
    assert missing_capabilities(str(status)) == ["CAP_NET_ADMIN"]  # bit 13 (NET_RAW) only
    status.write_text("CapEff:\t000001ffffffffff\n")
    assert missing_capabilities(str(status)) == []
    # Where /proc cannot tell, the first operation that needs a capability reports it.
    assert missing_capabilities(str(tmp_path / "absent")) == []


def readme_node_toml() -> str:
    """The node.toml example of README.md, exactly as the README shows it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A node.toml", 1)[1]
    match = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert match is not None, "README.md has no ```toml block under '## A node.toml'"
    return match.group(1)


# The README's config keeps the defaults control_socket = /run/pyvrrp.sock and state_dir =
# /var/lib/pyvrrp, which belong to the host (another test, or a real pyvrrp, may use them): the
# daemon gets private, empty ones in a mount namespace of its own (`unshare` makes its mounts
# private), then execs with the same pid.
PRIVATE_RUN_DIRS = (
    "unshare",
    "--mount",
    "sh",
    "-c",
    'mount -t tmpfs pyvrrp-test /run && mount -t tmpfs pyvrrp-test /var/lib && exec "$@"',
    "private-run-dirs",
)


def test_the_readme_example_config_runs_as_is(lab: Lab) -> None:
    text = readme_node_toml()
    assert 'interface = "eth0.4000"' in text  # the README still shows the seed's node A
    readme_vips = {"1.2.3.58", "2a03:4444:fff0:59:88::58"}
    # A runs the README's config instead of ours: B takes our instances over meanwhile.
    lab.stop("A")
    with own_daemon(lab, "A", text, "readme", PRIVATE_RUN_DIRS) as daemon:
        # Alone in VRID 58 (its unicast peers run no such instance), A becomes master after
        # Master_Down_Interval (priority 100: 3.61 s); margin for startup on a busy machine.
        wait_until(
            lambda: readme_vips <= set(lab.addresses("A")) or daemon.poll() is not None,
            master_down_interval(100) + 5,
            "A to hold the README's VIP and its excluded address",
        )
        log = own_log(lab, "A", "readme")
        assert daemon.poll() is None, log
        assert "vip58: BACKUP -> MASTER" in log
        assert not re.search(r" (ERROR|WARNING) |Traceback", log), log

        # Its health check runs and passes (the lab serves /healthz): `pyvrrp status` in the
        # daemon's own mount namespace, where its control socket is.
        def status() -> Any:
            enter = ["nsenter", "--target", str(daemon.pid), "--mount", "--net", "--"]
            done = subprocess.run(
                [*enter, sys.executable, "-m", "pyvrrp", "status", "--json"],  # default socket
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            return json.loads(done.stdout)

        wait_until(
            lambda: status()["scripts"]["chk_nginx_ingress"]["runs"] >= 1,
            10,
            "the health check to run",
        )
        report = status()
        assert report["scripts"]["chk_nginx_ingress"]["failures"] == 0, report["scripts"]
        vip58 = report["instances"]["vip58"]
        assert (vip58["state"], vip58["effective_priority"]) == ("MASTER", 100), vip58
        daemon.send_signal(signal.SIGTERM)
        # Graceful: no backup answers, so A lets go after release_timeout (3 s) at most.
        assert daemon.wait(timeout=10) == 0, own_log(lab, "A", "readme")
    assert readme_vips.isdisjoint(lab.addresses("A"))
    assert "pyvrrp stopped" in own_log(lab, "A", "readme")


# --------------------------------------------------------------------------- the flood

SPOOF4 = "192.168.200.99"  # on the vSwitch subnet (passes rp_filter), in no peer list
SPOOF6 = "fe80::99"
UNKNOWN_VRIDS = [v for v in range(1, 256) if v not in VRIDS.values()]
# Each mutation breaks exactly one receive rule (RFC 9568 §7.1) of an otherwise valid advert
# of a configured instance, with priority 254 (would make master A step down) or 0 (would
# make backup B take over): any of them accepted shows as a state change.
MUTATIONS = (
    "ttl",
    "version",
    "type",
    "checksum",
    "count_zero",
    "too_short",
    "interval_zero",
    "unknown_vrid",
    "not_link_local",  # IPv6 only
    "not_a_peer",  # uc4 only: a complete, valid advert from a source that is not a peer
)
# Garbage never has version 3 / type 1 (see garbage()), so it cannot reach the rules checked
# after those: these counters must show exactly the mutations sent.
EXACT = ("checksum", "count_zero", "interval_zero", "not_link_local", "not_a_peer")


@dataclasses.dataclass(frozen=True)
class Shot:
    """One frame of the flood, the nodes it reaches, and the counter that must count it:
    ``instance/reason`` or ``interface/ipvN/unknown_vrid`` (None: garbage, any counter)."""

    frame: bytes
    nodes: tuple[str, ...]
    counter: str | None


@dataclasses.dataclass(frozen=True)
class Segment:
    """What the flood needs to know about the lab's segment."""

    client_mac: str
    macs: dict[str, str]
    link_locals: dict[str, str]

    def destination(self, family: int, rng: random.Random) -> tuple[str, str, tuple[str, ...]]:
        """(MAC, IP, nodes reached): the VRRP group (both nodes) or one node, unicast."""
        target = rng.choice(["group", "A", "B"])
        if target == "group":
            group = IPV4_GROUP if family == 4 else IPV6_GROUP
            return (IPV4_GROUP_MAC if family == 4 else IPV6_GROUP_MAC), group, ("A", "B")
        address = NODE_IP[target] if family == 4 else self.link_locals[target]
        return self.macs[target], address, (target,)


def segment_of(lab: Lab) -> Segment:
    (link,) = json.loads(lab.run_in("client", "ip", "-j", "link", "show", "dev", "eth0").stdout)
    return Segment(
        client_mac=str(link["address"]),
        macs={n: mac_of(lab, n) for n in lab.nodes},
        link_locals={n: link_local_of(lab, n) for n in lab.nodes},
    )


def ip_frame(seg: Segment, family: int, mac: str, dst: str, payload: Any, *, ttl: int = 255) -> Any:
    ether = Ether(src=seg.client_mac, dst=mac)
    if family == 4:
        return ether / IP(src=SPOOF4, dst=dst, ttl=ttl, proto=112) / payload
    return ether / IPv6(src=SPOOF6, dst=dst, hlim=ttl, nh=112) / payload


def mutated_advert(seg: Segment, instance: str, reason: str, rng: random.Random) -> Shot:
    """A valid advert of ``instance`` changed to break exactly the rule ``reason`` (with
    ``reason="valid"``, not changed at all)."""
    family = 6 if instance == "v6" else 4
    mac, dst, nodes = seg.destination(family, rng)
    addresses = {"mc4": [MC4_VIP], "uc4": [UC4_VIP], "v6": [V6_LINK_LOCAL, V6_VIP]}[instance]
    fields: dict[str, Any] = {
        "vrid": VRIDS[instance],
        "priority": rng.choice([0, 254]),
        "adv": 100,
        "addrlist": addresses,
    }
    ttl = 255
    counter = f"{instance}/{reason}"
    if reason == "ttl":
        ttl = rng.randrange(0, 255)
    elif reason == "version":
        fields["version"] = rng.choice([v for v in range(16) if v != 3])
    elif reason == "type":
        fields["type"] = rng.choice([t for t in range(16) if t != 1])
    elif reason == "count_zero":
        fields["ipcount"] = 0
    elif reason == "too_short":
        fields["ipcount"] = len(addresses) + rng.randrange(1, 4)
    elif reason == "interval_zero":
        fields["adv"] = 0
    elif reason == "unknown_vrid":
        fields["vrid"] = rng.choice(UNKNOWN_VRIDS)
        counter = f"{INTERFACE}/ipv{family}/unknown_vrid"
    elif reason == "not_link_local":
        fields["addrlist"] = [V6_VIP]
    frame = ip_frame(seg, family, mac, dst, VRRPv3(**fields), ttl=ttl)
    if reason == "checksum":
        good = Ether(bytes(frame))[VRRPv3].chksum
        # One's complement: 0x0000 and 0xFFFF are the same sum, so avoid the other zero too.
        frame[VRRPv3].chksum = next(
            c for c in iter(lambda: rng.randrange(0x10000), None) if c % 0xFFFF != good % 0xFFFF
        )
    return Shot(bytes(frame), nodes, counter)


def garbage(seg: Segment, rng: random.Random) -> Shot:
    """Random bytes as the VRRP message, any TTL. Byte 0 is never 0x31 (version 3, type 1):
    random bytes that pass every check are astronomically unlikely, but impossible is better
    in a test; the mutations reach the checks behind that byte."""
    family = rng.choice([4, 6])
    mac, dst, nodes = seg.destination(family, rng)
    payload = bytearray(rng.randbytes(rng.randrange(0, 81)))
    if payload and payload[0] == 0x31:
        payload[0] ^= 0x80
    ttl = 255 if rng.random() < 0.5 else rng.randrange(0, 255)
    frame = ip_frame(seg, family, mac, dst, Raw(bytes(payload)), ttl=ttl)
    return Shot(bytes(frame), nodes, None)


def flood_shots(seg: Segment, count: int, seed: int) -> list[Shot]:
    """``count`` frames: 40 % garbage, the rest mutated adverts of every kind."""
    rng = random.Random(seed)
    shots = []
    for _ in range(count):
        if rng.random() < 0.4:
            shots.append(garbage(seg, rng))
            continue
        reason = rng.choice(MUTATIONS)
        if reason == "not_link_local":
            instance = "v6"
        elif reason == "not_a_peer":
            instance = "uc4"
        else:
            instance = rng.choice(list(VRIDS))
        shots.append(mutated_advert(seg, instance, reason, rng))
    return shots


class Sender:
    """Sends whole Ethernet frames from the client namespace (an AF_PACKET socket)."""

    def __init__(self, lab: Lab) -> None:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            sock.bind(("eth0", 0))
            return sock

        self._sock = in_netns(lab.client_ns, make)

    def send(self, frames: Iterable[bytes], rate: float) -> None:
        """Send ``frames`` at about ``rate`` per second, in 10 ms batches (inf: at once)."""
        start = time.monotonic()
        for index, frame in enumerate(frames):
            if rate != math.inf and index % max(1, int(rate / 100)) == 0:
                pause = start + index / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            self._sock.send(frame)

    def close(self) -> None:
        self._sock.close()


def kernel_drops(lab: Lab, node: str) -> int:
    """Packets the kernel dropped at the node's raw sockets (receive buffer full)."""
    total = 0
    for table in ("/proc/net/raw", "/proc/net/raw6"):
        lines = lab.run_in(node, "cat", table).stdout.splitlines()[1:]
        total += sum(int(line.split()[-1]) for line in lines if line.strip())
    return total


def drop_counters(lab: Lab, node: str) -> Counter[str]:
    """Every drop counter of ``pyvrrp status --json``: ``instance/reason`` (and
    ``instance/queue_overflow``: a full inbox) and ``interface/ipvN/reason``."""
    status = lab.status(node)
    counters: Counter[str] = Counter()
    for name, instance in status["instances"].items():
        for reason, count in instance["counters"]["drops"].items():
            counters[f"{name}/{reason}"] += count
        counters[f"{name}/queue_overflow"] += instance["counters"]["queue_overflows"]
    for where, reasons in status["interface_drops"].items():
        for reason, count in reasons.items():
            counters[f"{where}/{reason}"] += count
    return counters


def counted_flood(lab: Lab, shots: list[Shot], rate: float) -> dict[str, Counter[str]]:
    """Send ``shots``; per node, what its counters (and the kernel's drops) rose by.

    Waits until every frame delivered to a node is accounted for, as a drop of some reason,
    a queue overflow or a kernel drop (the daemon may still be working through its queue).
    """
    before = {n: drop_counters(lab, n) for n in lab.nodes}
    kernel_before = {n: kernel_drops(lab, n) for n in lab.nodes}
    sender = Sender(lab)
    try:
        sender.send([s.frame for s in shots], rate)
    finally:
        sender.close()
    delivered = {n: sum(n in s.nodes for s in shots) for n in lab.nodes}
    rose: dict[str, Counter[str]] = {}

    def accounted(node: str) -> bool:
        rose[node] = drop_counters(lab, node) - before[node]
        rose[node]["kernel"] = kernel_drops(lab, node) - kernel_before[node]
        return rose[node].total() >= delivered[node]

    for node in lab.nodes:
        try:
            wait_until(lambda node=node: accounted(node), 10, f"{node} to count the flood")  # type: ignore[misc]
        except AssertionError:
            raise AssertionError(f"{node}: {delivered[node]} delivered, {rose[node]}") from None
        assert rose[node].total() == delivered[node], (node, delivered[node], rose[node])
    return rose


FLOOD_SIZE = 10_000
# 2,000 frames/s (5 s): a flood for a daemon that sees one advert per second and instance,
# and a rate at which it takes every packet in (no kernel drop, no queue overflow: checked),
# so that every frame must show in the counters of the one rule it breaks.
FLOOD_RATE = 2_000.0


def test_a_flood_of_garbage_and_mutated_adverts_changes_nothing_and_is_counted(
    lab: Lab,
) -> None:
    seg = segment_of(lab)
    shots = flood_shots(seg, FLOOD_SIZE, seed=9568)
    # The mutated adverts are wrong only in the way they are meant to be: unmutated, each
    # would be accepted (a check of the generator, with pyvrrp's decoder).
    rng = random.Random(0)
    for instance in VRIDS:
        frame = Ether(mutated_advert(seg, instance, "valid", rng).frame)
        ip = frame[IP] if IP in frame else frame[IPv6]
        decode(
            bytes(frame[VRRPv3]),
            source=ipaddress.ip_address(ip.src),
            destination=ipaddress.ip_address(ip.dst),
            ttl=ip.ttl if IP in frame else ip.hlim,
        )
    offsets = {n: len(lab.log(n)) for n in lab.nodes}
    rose = counted_flood(lab, shots, FLOOD_RATE)
    for node in lab.nodes:
        log = lab.log(node)[offsets[node] :]
        print(f"{node}: {dict(rose[node])}; {len(log.splitlines())} log lines")
        assert lab.running(node)
        assert "Traceback" not in log
        # Nothing changed: no transition at all (and below: A still holds every address).
        assert transitions(log) == []
        # The daemon kept up, so each frame is counted under the rule it breaks.
        assert rose[node]["kernel"] == 0
        assert sum(rose[node][f"{i}/queue_overflow"] for i in VRIDS) == 0
        sent = Counter(s.counter for s in shots if node in s.nodes and s.counter is not None)
        for counter, count in sent.items():
            if counter.rsplit("/", 1)[1] in EXACT:
                assert rose[node][counter] == count, (counter, rose[node])
            else:  # garbage adds to these
                assert rose[node][counter] >= count, (counter, rose[node])
        # Drops are logged rate-limited: a flood must not flood the log.
        assert len(log.splitlines()) < FLOOD_SIZE // 10
    assert lab.holders() == ALL_AT_A

    # The same frames again, as one burst (~150,000 frames/s here): more than the daemon can
    # take in, so the kernel and the inbox drop some, but every frame is still accounted for
    # and nothing crashes or changes. The burst lasts well under one interval, so B loses at
    # most one of A's adverts: Master_Down_Interval after it, B must still be backup.
    offsets = {n: len(lab.log(n)) for n in lab.nodes}
    started = time.monotonic()
    rose = counted_flood(lab, shots, math.inf)
    for node in lab.nodes:
        print(f"{node} after a burst: {dict(rose[node])}")
    time.sleep(max(0.0, started + master_down_interval(PRIORITY["B"]) + 0.5 - time.monotonic()))
    for node in lab.nodes:
        log = lab.log(node)[offsets[node] :]
        assert lab.running(node)
        assert "Traceback" not in log
        assert transitions(log) == []
    assert lab.holders() == ALL_AT_A
