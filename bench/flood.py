"""Hostile traffic: a million crafted VRRP packets at pyvrrp, then at keepalived, side by side.

Usage: sudo .venv/bin/python bench/flood.py [--packets 1000000] [--paced-rate 10000]
                                            [--paced-seconds 30] [--seed 1] [--json FILE]

One lab (netns-lab's seed cluster, with every VIP's IPv6 twin turned into an IPv6 instance
of its own, `fe80::VRID` first, so both families have virtual routers) runs pyvrrp, then
keepalived 2.2.7 (with `check_unicast_src`, the equivalent of pyvrrp's default
`unicast_peers_only = true`), on nodes A, B and C. A sender in the client namespace writes
prebuilt Ethernet frames to an AF_PACKET socket on the vSwitch, addressed to node A (MAC and
unicast address): A is the master of VRID 58 and a backup of VRID 59, in both families.

The frames come from one table built once from `--seed` (see `TableBuilder.build`): random bytes;
every field of a valid advertisement mutated, with the checksum left stale (from a peer) or
recomputed (from a host that is not a peer); wrong VRIDs; the other checksum forms (IPv4
without the pseudo-header, or with 224.0.0.18 as the destination); TTL / hop limit below 255;
truncated messages and truncated IP packets; oversized messages; IPv6 sources that are not
link-local and adverts whose first address is not; adverts from hosts that are not unicast
peers; IPv4 headers the kernel rejects (bad header checksum, IHL < 5). None of them is a valid
advertisement from a peer: a daemon must change no state. Each frame's fate is computed by
`expect()`, an independent reading of RFC 9568 §7.1 in pyvrrp's order (the kernel, then the
VRID demultiplexer, then TTL, length, version, type, count, interval, checksum, link-local,
peer).

Each daemon gets `--packets` frames in two phases: `--paced-seconds` at `--paced-rate`
packets/s (the master's advert interval p99 is measured there from a capture on A's vSwitch
port; the goal is within 5 ms of the nominal 1 s), then the rest as fast as the Python
sender goes (its rate is reported). Figures per daemon and phase: crashes (the daemon's pids
changed or died), state changes (on every node), what reached A (interface counters), what
the kernel dropped (IP header errors, truncated packets, raw socket queue overflows in
/proc/net/raw), the daemon's drop counters by reason against what was sent (pyvrrp: `pyvrrp
status --json`, instances' counters.drops and interface_drops; keepalived: its SIGUSR2
statistics, which count only some reasons), CPU seconds per 100k packets, peak RSS.

Bounded: the frames, the rates and the time are bounded; everything runs in namespaces the
lab creates and aims only at the lab's own addresses; the lab and every process are removed
at the end, on failure and on Ctrl-C/SIGTERM. Exit status 1 if pyvrrp crashed, changed
state, miscounted or missed the interval goal; 3 if the lab cannot run.

Why the module is over the project's ~700 lines: a benchmark is run as one file
(`python bench/flood.py`, no package of its own under bench/), and its parts (the crafted
packets with the fate each must meet, the sender, the counters of both daemons, the report)
are used by this benchmark alone; the lab it drives is already in netns-lab/nslab.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import ipaddress
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "netns-lab"))  # nslab, from a checkout

from nslab import (  # noqa: E402
    ClusterSpec,
    DaemonKind,
    InstanceSpec,
    Lab,
    LabError,
    keepalived_config,
    pyvrrp_config,
    seed_cluster,
)
from nslab.sniff import AdvertWatch  # noqa: E402
from nslab.system import ns_argv, python, run  # noqa: E402

TARGET = "A"
VRIDS = (58, 59)  # A is the master of 58 and a backup of 59
PEERS4 = ("192.168.200.2", "192.168.200.3")
PEERS6 = ("fd00:200::2", "fd00:200::3")
OWN4, OWN6 = "192.168.200.1", "fd00:200::1"
STRANGER4 = ("192.168.200.77", "192.168.200.4")
STRANGER6 = ("fd00:200::77", "fe80::77", "2a03:4444:fff0:59::77")
MULTICAST4 = "224.0.0.18"
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
VRRP = 112
NOMINAL = 1.0
INTERVAL_GOAL = 0.005

# Fates: ("kernel", what), ("iface", reason), (vrid, reason) for an instance, ("accepted", "").
Fate = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Frame:
    """One prebuilt frame and what must become of it."""

    category: str
    family: int
    data: bytes
    fate: Fate


def flood_cluster() -> ClusterSpec:
    """The seed cluster with each VIP's IPv6 twin as an IPv6 instance (same VRID, same
    priorities), so both families have virtual routers on every node."""
    seed = seed_cluster()
    instances: list[InstanceSpec] = []
    for inst in seed.instances:
        instances.append(dataclasses.replace(inst, excluded_addresses=()))
        v6 = inst.excluded_addresses[0]
        instances.append(
            dataclasses.replace(
                inst,
                name=f"{inst.name}v6",
                addresses=(f"fe80::{inst.vrid}/64", v6),
                excluded_addresses=(),
            )
        )
    return dataclasses.replace(seed, instances=tuple(instances))


# ---- packets


def csum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo(family: int, src: str, dst: str, length: int) -> bytes:
    """The pseudo-header VRRPv3's checksum covers (RFC 9568 §5.2.8)."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    if family == 4:
        return s + d + struct.pack("!BBH", 0, VRRP, length)
    return s + d + struct.pack("!I3xB", length, VRRP)


def advert(
    family: int,
    vrid: int,
    priority: int,
    addresses: list[str],
    *,
    src: str,
    dst: str,
    version_type: int = 0x31,
    count: int | None = None,
    interval: int = 100,
    checksum: str = "pseudo",
) -> bytes:
    """A VRRPv3 advertisement with its checksum (`pseudo`, `message`: no pseudo-header,
    `multicast`: pseudo-header with 224.0.0.18, `zero`: left 0)."""
    body = b"".join(ipaddress.ip_address(a).packed for a in addresses)
    n = len(addresses) if count is None else count
    head = struct.pack("!BBBBH", version_type, vrid, priority, n, interval)
    message = head + b"\0\0" + body
    if checksum == "pseudo":
        value = csum(pseudo(family, src, dst, len(message)) + message)
    elif checksum == "multicast":
        value = csum(pseudo(family, src, MULTICAST4, len(message)) + message)
    elif checksum == "message":
        value = csum(message)
    else:
        value = 0
    return head + struct.pack("!H", value) + body


def ipv4(payload: bytes, src: str, dst: str, *, ttl: int = 255, bad_checksum: bool = False,
         ihl: int = 5, extra_length: int = 0) -> bytes:  # fmt: skip
    """An IPv4 header (options none) carrying `payload` as protocol 112."""
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0xC0,
        20 + len(payload) + extra_length,
        0,
        0x4000,
        ttl,
        VRRP,
        0,
        ipaddress.ip_address(src).packed,
        ipaddress.ip_address(dst).packed,
    )
    check = csum(header) ^ (0x5555 if bad_checksum else 0)
    return header[:10] + struct.pack("!H", check) + header[12:] + payload


def ipv6(
    payload: bytes, src: str, dst: str, *, hop_limit: int = 255, extra_length: int = 0
) -> bytes:
    """An IPv6 header carrying `payload` as next header 112."""
    return (
        struct.pack("!IHBB", 0x60000000, len(payload) + extra_length, VRRP, hop_limit)
        + ipaddress.ip_address(src).packed
        + ipaddress.ip_address(dst).packed
        + payload
    )


def expect(family: int, src: str, dst: str, ttl: int, message: bytes) -> Fate:
    """What pyvrrp must do with a VRRP message that reached its raw socket: RFC 9568 §7.1 in
    its order (docs/protocol.md), written apart from pyvrrp's code."""
    vrid = message[1] if len(message) > 1 else None
    if vrid not in (58, 59, 60):
        return ("iface", "unknown_vrid")
    key = str(vrid)
    if ttl != 255:
        return (key, "ttl")
    if len(message) < 8:
        return (key, "too_short")
    if message[0] != 0x31:
        return (key, "version" if message[0] >> 4 != 3 else "type")
    count = message[3]
    if count == 0:
        return (key, "count_zero")
    size = 4 if family == 4 else 16
    length = 8 + size * count
    if len(message) < length:
        return (key, "too_short")
    if int.from_bytes(message[4:6], "big") & 0x0FFF == 0:
        return (key, "interval_zero")
    covered = pseudo(family, src, dst, length) + message[:length]
    if csum(covered) != 0:
        whole = pseudo(family, src, dst, len(message)) + message
        if len(message) == length or csum(whole) != 0:
            return (key, "checksum")
    if family == 6 and not ipaddress.ip_address(message[8:24]).is_link_local:
        return (key, "not_link_local")
    if src in (OWN4, OWN6):
        return (key, "own_advert")
    if src not in PEERS4 + PEERS6:
        return (key, "not_a_peer")
    return ("accepted", "")


class TableBuilder:
    """Collects frames for node A, each with its expected fate."""

    def __init__(self, seed: int, cluster: ClusterSpec, dst_mac: bytes, src_mac: bytes) -> None:
        self.rng = random.Random(seed)
        self.cluster = cluster
        self.eth4 = dst_mac + src_mac + struct.pack("!H", ETH_IPV4)
        self.eth6 = dst_mac + src_mac + struct.pack("!H", ETH_IPV6)
        self.frames: list[Frame] = []

    def addresses(self, family: int, vrid: int) -> list[str]:
        for inst in self.cluster.instances:
            if inst.vrid == vrid and inst.family == family:
                return [str(ipaddress.ip_interface(a).ip) for a in inst.addresses]
        return ["192.0.2.1"] if family == 4 else ["fe80::1"]

    def priority(self, vrid: int, node: str) -> int:
        found = [i.priorities[node] for i in self.cluster.instances if i.vrid == vrid]
        return found[0] if found else 100

    def add(self, category: str, family: int, message: bytes, *, src: str, ttl: int = 255,
            ip: str = "ok") -> None:  # fmt: skip
        """One frame carrying `message` from `src` to A; `ip` spoils the IP header: `csum`,
        `ihl`, `truncated` (the kernel drops those)."""
        dst = OWN4 if family == 4 else OWN6
        if family == 4:
            packet = ipv4(message, src, dst, ttl=ttl, bad_checksum=ip == "csum",
                          ihl=4 if ip == "ihl" else 5,
                          extra_length=40 if ip == "truncated" else 0)  # fmt: skip
            frame = self.eth4 + packet
        else:
            packet = ipv6(message, src, dst, hop_limit=ttl,
                          extra_length=40 if ip == "truncated" else 0)  # fmt: skip
            frame = self.eth6 + packet
        fate = ("kernel", ip) if ip != "ok" else expect(family, src, dst, ttl, message)
        if fate[0] == "accepted":
            return  # a valid advertisement from a peer is not hostile: never sent
        self.frames.append(Frame(category, family, frame, fate))

    def valid(self, family: int, vrid: int, *, src: str | None = None, **kw: Any) -> bytes:
        src = src or (PEERS4[0] if family == 4 else PEERS6[0])
        dst = OWN4 if family == 4 else OWN6
        kw.setdefault("priority", self.priority(vrid, "B"))
        priority = kw.pop("priority")
        return advert(family, vrid, priority, self.addresses(family, vrid), src=src, dst=dst, **kw)

    def build(self) -> list[Frame]:
        rng = self.rng
        for family in (4, 6):
            peer = PEERS4[0] if family == 4 else PEERS6[0]
            strangers = STRANGER4 if family == 4 else STRANGER6
            for vrid in VRIDS:
                base = self.valid(family, vrid)
                # Random bytes (the VRID byte mostly one of A's, else nothing passes the demux).
                for _ in range(150):
                    data = bytearray(rng.randbytes(rng.randint(0, 120)))
                    if len(data) > 1 and rng.random() < 0.9:
                        data[1] = vrid
                    self.add("random", family, bytes(data), src=peer)
                # Every field mutated; checksum stale (from a peer) or recomputed (a stranger).
                mutations: list[dict[str, Any]] = (
                    [{"version_type": v << 4 | 1} for v in (0, 1, 2, 4, 15)]
                    + [{"version_type": 0x30 | t} for t in (0, 2, 3, 15)]
                    + [{"priority": p} for p in (0, 1, 99, 101, 254, 255)]
                    + [{"count": c} for c in (0, 2, 3, 255)]
                    + [{"interval": i} for i in (0, 1, 4095, 0x1064, 0xF064)]
                )
                for m in mutations:
                    stale = bytearray(self.valid(family, vrid, **m))
                    stale[6:8] = base[6:8]
                    self.add("mutated", family, bytes(stale), src=peer)
                    for stranger in strangers:
                        self.add("mutated", family, self.valid(family, vrid, src=stranger, **m),
                                 src=stranger)  # fmt: skip
                for other in (0, 1, 57, 60, 61, 77, 255):  # the VRID byte, checksum stale
                    data = bytearray(base)
                    data[1] = other
                    self.add("mutated", family, bytes(data), src=peer)
                for value in (0, 0xFFFF, rng.randrange(0x10000)):  # the checksum itself
                    data = bytearray(base)
                    data[6:8] = value.to_bytes(2, "big")
                    self.add("mutated", family, bytes(data), src=peer)
                for i in range(8, len(base)):  # every address byte, checksum stale
                    data = bytearray(base)
                    data[i] ^= 0xFF
                    self.add("mutated", family, bytes(data), src=peer)
                # Wrong VRIDs, checksum right.
                for other in (1, 57, 61, 77, 200, 255):
                    self.add("wrong_vrid", family, self.valid(family, other), src=peer)
                # Other checksum forms.
                forms = ("message", "multicast", "zero") if family == 4 else ("message", "zero")
                for form in forms:
                    self.add("checksum_form", family, self.valid(family, vrid, checksum=form),
                             src=peer)  # fmt: skip
                # TTL / hop limit below 255.
                for ttl in (0, 1, 64, 128, 254):
                    self.add("ttl", family, base, src=peer, ttl=ttl)
                # Truncated messages, and IP packets shorter than their header says.
                for cut in range(len(base)):
                    self.add("truncated", family, base[:cut], src=peer)
                self.add("truncated_ip", family, base, src=peer, ip="truncated")
                # Oversized: many addresses (checksum stale), or a valid advert padded with
                # 1200 bytes, from a peer with the checksum spoiled or from a stranger.
                many = 200 if family == 4 else 80
                size = 4 if family == 4 else 16
                big = bytearray(base[:8]) + rng.randbytes(size * many)
                big[3] = many
                self.add("oversized", family, bytes(big), src=peer)
                padded = bytearray(base) + rng.randbytes(1200)
                padded[7] ^= 0x01
                self.add("oversized", family, bytes(padded), src=peer)
                self.add("oversized", family, self.valid(family, vrid, src=strangers[0])
                         + rng.randbytes(1200), src=strangers[0])  # fmt: skip
                # Strangers' valid adverts (not unicast peers), every priority class.
                for stranger in strangers:
                    for priority in (1, 50, 100, 254, 255):
                        self.add("not_a_peer", family,
                                 self.valid(family, vrid, src=stranger, priority=priority),
                                 src=stranger)  # fmt: skip
                if family == 6:
                    # The first address global, not link-local (RFC 9568 §5.2.9).
                    dst = OWN6
                    globl = [self.addresses(6, vrid)[1], self.addresses(6, vrid)[0]]
                    msg = advert(6, vrid, self.priority(vrid, "B"), globl, src=peer, dst=dst)
                    self.add("not_link_local", 6, msg, src=peer)
                else:
                    # IPv4 headers the kernel drops before any socket.
                    self.add("bad_ip_header", 4, base, src=peer, ip="csum")
                    self.add("bad_ip_header", 4, base, src=peer, ip="ihl")
        return self.frames


# ---- the sender (runs in the client namespace: `flood.py --send`)


def send_main(table: Path, interface: str, rate: float, count: int, seed: int) -> int:
    """Send `count` frames drawn from `table` (length-prefixed frames, then the index
    stream), at `rate` packets/s (0: as fast as possible). Prints one JSON line."""
    raw = table.read_bytes()
    (n,) = struct.unpack_from("!I", raw)
    frames, offset = [], 4
    for _ in range(n):
        (length,) = struct.unpack_from("!H", raw, offset)
        frames.append(raw[offset + 2 : offset + 2 + length])
        offset += 2 + length
    order = random.Random(seed).choices(range(n), k=count)
    stream = [frames[i] for i in order]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((interface, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    send = sock.send
    errors = 0
    start = time.perf_counter()
    if rate <= 0:
        for frame in stream:
            try:
                send(frame)
            except OSError:
                errors += 1
    else:
        batch = max(1, int(rate / 1000))  # one batch per millisecond
        for i in range(0, count, batch):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            for frame in stream[i : i + batch]:
                try:
                    send(frame)
                except OSError:
                    errors += 1
    elapsed = time.perf_counter() - start
    counts = Counter(order)
    print(json.dumps({"sent": count - errors, "errors": errors, "seconds": elapsed,
                      "counts": {str(k): v for k, v in counts.items()}}))  # fmt: skip
    return 0


def write_table(frames: list[Frame], path: Path) -> None:
    path.write_bytes(
        struct.pack("!I", len(frames))
        + b"".join(struct.pack("!H", len(f.data)) + f.data for f in frames)
    )


# ---- observation


KERNEL_IP_COUNTERS = ("InHdrErrors", "InTruncatedPkts", "InCsumErrors", "InAddrErrors")


def ns_read(lab: Lab, node: str, path: str) -> str:
    return lab.run_in(node, "cat", path).stdout


def kernel_counters(lab: Lab) -> dict[str, int]:
    """A's IP-level drops and raw socket queue drops (protocol 112 sockets), and what its
    vSwitch interface received."""
    found: dict[str, int] = {}
    snmp = ns_read(lab, TARGET, "/proc/net/snmp").splitlines()
    netstat = ns_read(lab, TARGET, "/proc/net/netstat").splitlines()
    for lines in (snmp, netstat):
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            prefix = names.split(":")[0]
            for k, v in zip(names.split()[1:], values.split()[1:], strict=False):
                if prefix in ("Ip", "IpExt") and k in KERNEL_IP_COUNTERS:
                    found[f"{prefix}.{k}"] = int(v)
    for line in ns_read(lab, TARGET, "/proc/net/snmp6").splitlines():
        k, _, v = line.partition(" ")
        if k in ("Ip6InHdrErrors", "Ip6InTruncatedPkts", "Ip6InAddrErrors"):
            found[k] = int(v)
    drops = sockets = 0
    for path in ("/proc/net/raw", "/proc/net/raw6"):
        for line in ns_read(lab, TARGET, path).splitlines()[1:]:
            fields = line.split()
            if fields and fields[1].endswith(":0070"):  # local "address:protocol" 112
                drops += int(fields[-1])
                sockets += 1
    # Every raw socket of the protocol gets its own copy of each packet (and drops its own).
    found["raw_socket_drops"] = drops
    found["raw_sockets"] = sockets
    link = json.loads(lab.run_in(TARGET, "ip", "-j", "-s", "link", "show", "eth0.4000").stdout)
    found["rx_packets"] = int(link[0]["stats64"]["rx"]["packets"])
    found["rx_dropped"] = int(link[0]["stats64"]["rx"]["dropped"])
    # veth counts what its peer could not queue (the per-CPU backlog full) as a TX drop of
    # the sender: A's own adverts lost on the way to the bridge show here.
    found["tx_dropped"] = int(link[0]["stats64"]["tx"]["dropped"])
    found["tx_packets"] = int(link[0]["stats64"]["tx"]["packets"])
    return found


def adverts_sent(lab: Lab) -> dict[str, int]:
    """pyvrrp's count of adverts sent by A's VRID 58 instances, per family."""
    status = lab.status(TARGET)
    return {
        inst["family"]: int(inst["counters"]["adverts_sent"])
        for inst in status["instances"].values()
        if inst["vrid"] == 58
    }


def cpu_and_rss(pids: list[int]) -> tuple[float, int]:
    """CPU seconds (user + system) and RSS in kB summed over `pids`."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, rss = 0.0, 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu += (int(fields[11]) + int(fields[12])) / tick
        m = re.search(r"VmRSS:\s+(\d+)", status)
        rss += int(m.group(1)) if m else 0
    return cpu, rss


def transitions(lab: Lab, kind: DaemonKind) -> dict[str, int]:
    """Per node, the number of state changes its daemon logged so far."""
    pattern = r"\w+ -> \w+ \(" if kind == "pyvrrp" else r"Entering (MASTER|BACKUP|FAULT) STATE"
    return {n: len(re.findall(pattern, lab.log(n))) for n in lab.nodes}


def pyvrrp_counts(lab: Lab) -> Counter[str]:
    """A's drop counters by fate key (`iface:reason`, `VRID:reason`), both families."""
    status = lab.status(TARGET)
    counts: Counter[str] = Counter()
    for inst in status["instances"].values():
        fam = inst["family"][-1]
        for reason, n in inst["counters"]["drops"].items():
            counts[f"v{fam} {inst['vrid']}:{reason}"] += n
        counts[f"v{fam} {inst['vrid']}:accepted"] += inst["counters"]["adverts_received"]
    for key, reasons in status.get("interface_drops", {}).items():
        fam = key[-1]
        for reason, n in reasons.items():
            counts[f"v{fam} iface:{reason}"] += n
    return counts


def keepalived_counts(lab: Lab) -> Counter[str]:
    """keepalived's statistics for A (SIGUSR2 writes /tmp/keepalived.stats), per instance."""
    stats = Path("/tmp/keepalived.stats")
    stats.unlink(missing_ok=True)
    pids = lab.daemon_pids(TARGET)
    os.kill(pids[0], signal.SIGUSR2)
    lab.wait_for(lambda: stats.exists() and stats.stat().st_size > 0, 10.0,
                 what="keepalived's statistics")  # fmt: skip
    time.sleep(0.5)  # let it finish writing
    counts: Counter[str] = Counter()
    instance, section = "", ""
    for line in stats.read_text().splitlines():
        m = re.match(r"VRRP Instance: (\S+)", line)
        if m:
            instance, section = m.group(1), ""
            continue
        m = re.match(r"( +)(\S[^:]*):\s*(\d*)\s*$", line)
        if not m or not instance:
            continue
        indent, name, value = len(m.group(1)), m.group(2), m.group(3)
        if not value:
            section = name
        else:
            counts[f"keepalived {instance}:{f'{section}/' if indent > 2 else ''}{name}"] += int(
                value
            )
    stats.unlink(missing_ok=True)
    return counts


@dataclasses.dataclass
class Phase:
    """One phase's figures for one daemon."""

    daemon: str
    phase: str
    sent: int
    seconds: float
    rate: float
    crashed: bool
    state_changes: dict[str, int]
    cpu_s_per_100k: float
    processed: int
    cpu_s_per_100k_processed: float
    transitions: list[str]
    rss_kb_before: int
    rss_kb_peak: int
    kernel: dict[str, int]
    expected: dict[str, int]
    counted: dict[str, int]
    mismatches: list[str]
    advert_interval: dict[str, Any]
    master_adverts: dict[str, Any]
    capture: str
    log_problems: dict[str, int]


def expected_counts(frames: list[Frame], counts: dict[str, int]) -> Counter[str]:
    """What the daemon must count, by fate key, for the frames sent."""
    total: Counter[str] = Counter()
    for index, n in counts.items():
        f = frames[int(index)]
        scope, reason = f.fate
        if scope == "kernel":
            total[f"kernel:{reason}"] += n
        else:
            total[f"v{f.family} {scope}:{reason}"] += n
    return total


def interval_figures(adverts: list[tuple[float, str]]) -> dict[str, Any]:
    """Intervals between A's consecutive VRID 58 adverts, per family."""
    out: dict[str, Any] = {}
    for family in ("ipv4", "ipv6"):
        times = sorted(t for t, fam in adverts if fam == family)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        if len(gaps) < 2:
            out[family] = {"n": len(gaps)}
            continue
        gaps.sort()
        p99 = gaps[min(len(gaps) - 1, round(0.99 * (len(gaps) - 1)))]
        out[family] = {
            "n": len(gaps),
            "per_s": round(len(gaps) / (times[-1] - times[0]), 2),
            "median_s": round(statistics.median(gaps), 4),
            "p99_s": round(p99, 4),
            "max_s": round(gaps[-1], 4),
            "min_s": round(gaps[0], 4),
            "worst_deviation_ms": round(max(abs(g - NOMINAL) for g in gaps) * 1000, 1),
        }
    return out


class Flood:
    """The lab, the table and the phases."""

    def __init__(self, lab: Lab, args: argparse.Namespace) -> None:
        self.lab = lab
        self.args = args
        self.cluster = lab.cluster
        a_mac = self.mac(TARGET, "eth0.4000")
        c_mac = self.mac("client", "eth0")
        self.frames = TableBuilder(args.seed, self.cluster, a_mac, c_mac).build()
        # A switch forwards frames without looking at IP headers; with br_netfilter loaded
        # (Docker loads it) the bridge would validate them and drop the broken ones itself.
        for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
            lab.run_in("vswitch", "sysctl", "-q", "-w", f"net.bridge.{key}=0", check=False)
        self.table = lab.tmp / "frames.bin"
        write_table(self.frames, self.table)

    def mac(self, node: str, interface: str) -> bytes:
        link = json.loads(self.lab.run_in(node, "ip", "-j", "link", "show", interface).stdout)
        return bytes.fromhex(link[0]["address"].replace(":", ""))

    def use(self, daemon: DaemonKind) -> None:
        """Run `daemon` on every node and wait for the seed table."""
        running = [n for n in self.lab.nodes if self.lab.running(n)]
        if running:
            self.lab.stop_many(running)
        for node in self.lab.nodes:
            self.lab.remove_vips(node)
            if daemon == "pyvrrp":
                text = pyvrrp_config(node, self.cluster, run_dir=self.lab.node_dir(node))
            else:
                text = keepalived_config(node, self.cluster).replace(
                    "    version 3\n", "    version 3\n    check_unicast_src\n"
                )
            self.lab.start(node, daemon, text)
        self.lab.wait_converged(60)
        time.sleep(3)  # past the first announcements and script runs

    def phase(self, daemon: DaemonKind, name: str, count: int, rate: float, seed: int) -> Phase:
        lab = self.lab
        pids = lab.daemon_pids(TARGET)
        before_t = transitions(lab, daemon)
        log_mark = {n: len(lab.log(n)) for n in lab.nodes}
        before_k = kernel_counters(lab)
        before_c = pyvrrp_counts(lab) if daemon == "pyvrrp" else keepalived_counts(lab)
        cpu0, rss0 = cpu_and_rss(pids)
        sent0 = adverts_sent(lab) if daemon == "pyvrrp" else {}
        peak = [rss0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                peak[0] = max(peak[0], cpu_and_rss(pids)[1])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # Only A's own adverts: with the lab's plain "VRRP" filter tcpdump gets every flood
        # frame too, and its buffer overflows and loses adverts (seen: 21,124 frames dropped
        # by the kernel for tcpdump in a 30 s paced phase).
        watch = AdvertWatch(lab.switch_ns, f"port-{TARGET}", str(lab.tmp / f"tcpdump-{name[:5]}"))
        watch._argv[-1] = (
            f"(ip proto 112 and src host {OWN4}) or (ip6 proto 112 and src host {OWN6})"
        )
        watch.start()
        argv = [python(), str(Path(__file__).resolve()), "--send", str(self.table),
                "--interface", "eth0", "--rate", repr(rate), "--count", str(count),
                "--seed", str(seed)]  # fmt: skip
        try:
            bound = 120 + (count / rate if rate else count / 5_000)
            done = run(ns_argv(lab.client_ns, argv), timeout=bound)
        finally:
            time.sleep(1.0)  # the daemon drains its queue
            watch.stop()
            stop.set()
            sampler.join(2)
        sent = json.loads(done.stdout.strip().splitlines()[-1])
        # A sends each advert to every peer: one destination per family gives the intervals.
        seen = [a for a in watch.adverts() if a.vrid == 58]
        firsts = {}
        for fam in ("ipv4", "ipv6"):
            dests = Counter(a.destination for a in seen if (":" in a.source) == (fam == "ipv6"))
            if dests:
                firsts[fam] = dests.most_common(1)[0][0]
        adverts = [
            (a.captured, fam)
            for a in seen
            for fam in ("ipv6" if ":" in a.source else "ipv4",)
            if firsts.get(fam) == a.destination
        ]
        cpu1, _ = cpu_and_rss(pids)
        crashed = lab.daemon_pids(TARGET)[:1] != pids[:1] or not lab.running(TARGET)
        after_t = transitions(lab, daemon)
        after_k = kernel_counters(lab)
        after_c = pyvrrp_counts(lab) if daemon == "pyvrrp" else keepalived_counts(lab)
        kernel = {k: after_k[k] - before_k.get(k, 0) for k in after_k}
        kernel["raw_sockets"] = after_k["raw_sockets"]
        counted = {k: v - before_c.get(k, 0) for k, v in after_c.items() if v - before_c.get(k, 0)}
        expected = expected_counts(self.frames, sent["counts"])
        sent1 = adverts_sent(lab) if daemon == "pyvrrp" else {}
        master_adverts = {
            fam: {
                "daemon_sent": sent1[fam] - sent0.get(fam, 0),
                "captured": sum(1 for _, f in adverts if f == fam),
            }
            for fam in sent1
        }
        pattern = r" -> |Entering (MASTER|BACKUP|FAULT) STATE"
        changes = [
            f"{n}: {line}"
            for n in lab.nodes
            for line in lab.log(n)[log_mark[n] :].splitlines()
            if re.search(pattern, line)
        ]
        processed = sum(counted.values())
        # What the daemons complained about (rate-limited lines), by message shape.
        problems: Counter[str] = Counter()
        for n in lab.nodes:
            for line in lab.log(n)[log_mark[n] :].splitlines():
                if re.search(r"WARNING|ERROR|Traceback", line):
                    shape = re.sub(r"[0-9a-f:.]{4,}|\d+", "N", line.split(" ", 2)[-1])[:100]
                    problems[f"{n}: {shape}"] += 1
        stats = Path(watch._log_path).read_text(errors="replace")
        capture = " ".join(line for line in stats.splitlines() if "packets" in line)
        cpu = cpu1 - cpu0
        mismatches = []
        if daemon == "pyvrrp":
            mismatches = self.compare(expected, counted, kernel, sent["sent"])
        return Phase(
            daemon=daemon,
            phase=name,
            sent=sent["sent"],
            seconds=round(sent["seconds"], 2),
            rate=round(sent["sent"] / sent["seconds"]),
            crashed=crashed,
            state_changes={n: after_t[n] - before_t[n] for n in lab.nodes},
            cpu_s_per_100k=round(cpu / sent["sent"] * 100_000, 3),
            processed=processed,
            cpu_s_per_100k_processed=round(cpu / max(1, processed) * 100_000, 3),
            transitions=changes,
            rss_kb_before=rss0,
            rss_kb_peak=peak[0],
            kernel=kernel,
            expected=dict(sorted(expected.items())),
            counted=dict(sorted(counted.items())),
            mismatches=mismatches,
            advert_interval=interval_figures(adverts),
            master_adverts=master_adverts,
            capture=capture,
            log_problems=dict(problems.most_common(20)),
        )

    def compare(
        self, expected: Counter[str], counted: dict[str, int], kernel: dict[str, int], sent: int
    ) -> list[str]:
        """Where pyvrrp's counters differ from what was sent, given what the kernel dropped
        (a raw socket's full queue drops packets at random: then only totals can match)."""
        problems = []
        to_kernel = sum(v for k, v in expected.items() if k.startswith("kernel:"))
        by_kernel = (
            kernel["IpExt.InTruncatedPkts"] + kernel["Ip.InHdrErrors"]
            + kernel["Ip6InTruncatedPkts"] + kernel["Ip6InHdrErrors"]
        )  # fmt: skip
        if by_kernel != to_kernel:
            problems.append(f"kernel dropped {by_kernel}, {to_kernel} expected")
        ours = {k: v for k, v in expected.items() if not k.startswith("kernel:")}
        # Adverts the peers really sent during the phase count as accepted too.
        got = {k: v for k, v in counted.items() if not k.endswith(":accepted")}
        lost = kernel["raw_socket_drops"] + kernel["rx_dropped"]
        missing = sent - kernel["rx_packets"]
        if lost == 0 and missing <= 0:
            for key in sorted(set(ours) | set(got)):
                if ours.get(key, 0) != got.get(key, 0):
                    problems.append(f"{key}: counted {got.get(key, 0)}, sent {ours.get(key, 0)}")
        else:
            # A full socket queue drops the peers' real adverts too. pyvrrp reads each family
            # with two sockets (docs/design.md, "Two sockets per link") and the kernel counts
            # a drop on every full socket a packet meets, before that socket's filter says
            # whether the packet was its own: with both queues full, one packet can count
            # twice. So the check is two-sided: nothing counted that did not arrive, nothing
            # that arrived neither counted nor dropped by a queue.
            accepted = sum(v for k, v in counted.items() if k.endswith(":accepted"))
            handled = sum(got.values()) + accepted
            arrived = sum(ours.values()) - max(0, missing) - kernel["rx_dropped"]
            others = max(0, kernel["rx_packets"] - sent)
            # (+8: a peer's advert may arrive between reading the kernel's and the
            # daemon's counters.)
            if handled > arrived + others + 8:
                problems.append(
                    f"counted {sum(got.values())} + accepted {accepted} = {handled}, more than "
                    f"the {arrived} of ours and {others} other packets that arrived"
                )
            if handled + kernel["raw_socket_drops"] < arrived - 8:
                problems.append(
                    f"counted {sum(got.values())} + accepted {accepted} + socket drops "
                    f"{kernel['raw_socket_drops']} < the {arrived} of ours that arrived"
                )
            for key in sorted(set(got) - set(ours)):
                problems.append(f"{key}: counted {got[key]}, none sent")
        return problems


def render(phases: list[Phase]) -> list[str]:
    """Markdown tables: the figures per daemon and phase, then the drop reasons."""
    lines = [
        "| daemon | phase | packets | rate (pkt/s) | crashed | state changes | counted "
        "| CPU s / 100k sent (counted) | RSS before / peak (MB) "
        "| master's advert interval p99 v4 / v6 (worst dev.) |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for p in phases:
        iv = p.advert_interval
        v4, v6 = iv.get("ipv4", {}), iv.get("ipv6", {})
        lines.append(
            f"| {p.daemon} | {p.phase} | {p.sent} | {p.rate} | {'yes' if p.crashed else 'no'} | "
            f"{sum(p.state_changes.values())} | {p.processed} | {p.cpu_s_per_100k} "
            f"({p.cpu_s_per_100k_processed}) | "
            f"{p.rss_kb_before / 1024:.1f} / {p.rss_kb_peak / 1024:.1f} | "
            f"{v4.get('p99_s', '-')} / {v6.get('p99_s', '-')} s "
            f"({v4.get('worst_deviation_ms', '-')} / {v6.get('worst_deviation_ms', '-')} ms) |"
        )
    for p in phases:
        lines += ["", f"{p.daemon}, {p.phase}: kernel {p.kernel}"]
        lines += [f"    state change: {t}" for t in p.transitions]
        keys = sorted(set(p.expected) | set(p.counted))
        lines.append("| fate | sent | counted |")
        lines.append("|---|---:|---:|")
        for k in keys:
            lines.append(f"| {k} | {p.expected.get(k, '')} | {p.counted.get(k, '')} |")
        for m in p.mismatches:
            lines.append(f"MISMATCH {m}")
    return lines


def reason_summary(p: Phase) -> list[str]:
    """One row per drop reason (summed over families and instances): sent, counted."""
    sent: Counter[str] = Counter()
    got: Counter[str] = Counter()
    header, truncated = "kernel: bad IPv4 header (InHdrErrors)", "kernel: truncated (InTruncated)"
    names = {"kernel:csum": header, "kernel:ihl": header, "kernel:truncated": truncated}
    for key, n in p.expected.items():
        sent[names.get(key) or key.split(":", 1)[1]] += n
    for key, n in p.counted.items():
        if key.startswith("keepalived ") or not key.endswith(":accepted"):
            got[key.split(":", 1)[1]] += n
    k = p.kernel
    got[header] = k["Ip.InHdrErrors"] + k["Ip6InHdrErrors"]
    got[truncated] = k["IpExt.InTruncatedPkts"] + k["Ip6InTruncatedPkts"]
    got["raw socket queue full (/proc/net/raw drops)"] = k["raw_socket_drops"]
    rows = [f"| {r} | {sent.get(r, '')} | {got.get(r, '')} |" for r in sorted(set(sent) | set(got))]
    return [f"{p.daemon}, {p.phase}:", "", "| reason | sent | counted |", "|---|---:|---:|", *rows]


def _raise_interrupt(_signo: int, _frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the flood against pyvrrp then keepalived; print the figures."""
    parser = argparse.ArgumentParser(prog="bench/flood.py", description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000, help="per daemon")
    parser.add_argument("--paced-rate", type=float, default=10_000.0, help="packets/s")
    parser.add_argument("--paced-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--daemons", default="pyvrrp,keepalived")
    parser.add_argument("--json", type=Path)
    # The sender's own command line (run by the flood inside the client namespace).
    parser.add_argument("--send", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--interface", default="eth0", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.send:
        return send_main(args.send, args.interface, args.rate, args.count, args.seed)
    paced = int(args.paced_rate * args.paced_seconds)
    if not 0 < paced < args.packets <= 10_000_000:
        parser.error("--packets up to 10^7 and more than --paced-rate x --paced-seconds")
    daemons = [d for d in args.daemons.split(",") if d]
    if not set(daemons) <= {"pyvrrp", "keepalived"}:
        parser.error("--daemons: pyvrrp, keepalived")
    if os.geteuid() != 0:
        print("bench/flood.py: needs root (network namespaces)", file=sys.stderr)
        return 3
    for tool in ("ip", "nft", "tcpdump", "keepalived"):
        if shutil.which(tool) is None:
            print(f"bench/flood.py: {tool} is missing: `make system-deps`", file=sys.stderr)
            return 3
    signal.signal(signal.SIGTERM, _raise_interrupt)
    hard_stop = 1800

    def alarm(_signo: int, _frame: FrameType | None) -> NoReturn:
        raise TimeoutError(f"the flood overran its bound of {hard_stop} s")

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(hard_stop)
    command = "sudo .venv/bin/python bench/flood.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print(f"# {command.strip()}")
    print(f"# {datetime.date.today().isoformat()}, {os.cpu_count()} CPUs", flush=True)
    phases: list[Phase] = []
    try:
        with Lab(flood_cluster(), prefix="flood") as lab:
            flood = Flood(lab, args)
            cats = Counter(f"{f.category} v{f.family}" for f in flood.frames)
            print(f"# table: {len(flood.frames)} frames: {dict(sorted(cats.items()))}")
            for daemon in daemons:
                kind: DaemonKind = "pyvrrp" if daemon == "pyvrrp" else "keepalived"
                flood.use(kind)
                for name, count, rate, seed in (
                    (f"paced {args.paced_rate:g}/s", paced, args.paced_rate, args.seed),
                    ("full rate", args.packets - paced, 0.0, args.seed + 1),
                ):
                    p = flood.phase(kind, name, count, rate, seed)
                    phases.append(p)
                    print(
                        f"{daemon} {name}: {p.sent} in {p.seconds} s ({p.rate}/s), crashed "
                        f"{p.crashed}, state changes {p.state_changes}, mismatches "
                        f"{len(p.mismatches)}, intervals {p.advert_interval}",
                        flush=True,
                    )
    except KeyboardInterrupt:
        print("interrupted: the lab has been torn down", file=sys.stderr)
        return 130
    except (LabError, TimeoutError) as exc:
        print(f"bench/flood.py: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(p) for p in phases], indent=1))
    print("\n".join(render(phases)))
    for p in phases:
        print()
        print("\n".join(reason_summary(p)))
    failed = []
    for p in phases:
        if p.daemon != "pyvrrp":
            continue
        if p.crashed:
            failed.append(f"{p.phase}: crashed")
        if any(p.state_changes.values()):
            failed.append(f"{p.phase}: state changes {p.state_changes}")
        failed += [f"{p.phase}: {m}" for m in p.mismatches]
        if p.phase.startswith("paced"):
            for fam, figures in p.advert_interval.items():
                if "p99_s" in figures and abs(figures["p99_s"] - NOMINAL) > INTERVAL_GOAL:
                    failed.append(f"{p.phase}: {fam} advert interval p99 {figures['p99_s']} s")
    for line in failed:
        print(f"GOAL MISSED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
