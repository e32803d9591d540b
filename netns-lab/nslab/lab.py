"""`Lab`: the seed deployment's cluster in Linux network namespaces, its daemons and faults.

Topology (see README.md for the picture): one switch namespace with a Linux bridge (the
vSwitch), one namespace per node with `eth0.4000` (a veth whose peer is a bridge port),
`eth0` and `dummy0` (port-less bridges: the tracked uplink and the maintenance interface), the
seed's policy routing in table 100, and a client namespace on the bridge that owns the
gateway addresses and runs the probe. Everything the lab creates is torn down by `down()`,
which `with Lab(...)`, `up()` failures, Ctrl-C and interpreter exit all reach.

Why the module is over the project's ~700 lines: it is the `Lab` class, whose methods share
one teardown record (every namespace, nftables table and process it made, undone by `down()`), so
building, running daemons and injecting faults stay in one place; what does not touch that
record already lives in its own modules (spec, configs, probe, sniff, system, agent).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from nslab.configs import keepalived_config, pyvrrp_config
from nslab.probe import ProbeReport, analyse
from nslab.sniff import AdvertWatch
from nslab.spec import ClusterSpec, seed_cluster
from nslab.system import (
    NETNS_DIR,
    LabError,
    Proc,
    group_members,
    ns_argv,
    pid_alive,
    python,
    python_env,
    run,
    spawn,
    start_time_of,
    terminate,
)

__all__ = ["DaemonKind", "Lab", "LabTimeout", "Probe", "cleanup", "lab_owner", "list_labs"]

DaemonKind = Literal["keepalived", "pyvrrp"]
T = TypeVar("T")

BRIDGE = "br0"
NODE_IF = "eth0.4000"
CLIENT_IF = "eth0"
PARTITION_TABLE = "nslab_partition"
LOSS_TABLE = "nslab_loss"
STATE_FILE = "lab.json"
MARKER_FILE = ".nslab"
# What pyvrrp logs when it takes a SIGTERM/SIGINT (pyvrrp.runtime.daemon): a second one now
# stops it at once.
STOPPING_LINE = "stopping (send it again to stop at once)"
_ID = re.compile(r"^[0-9a-z]{1,8}$")
_RESERVED_NODE_NAMES = {"vswitch", "client"}


class LabTimeout(LabError, AssertionError):
    """A `wait_*` condition did not become true in time (an AssertionError for pytest)."""


def _port(node: str) -> str:
    """The bridge port of `node` in the switch namespace (at most 15 bytes)."""
    return f"port-{node}"


def _namespaces() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


@dataclass
class _Daemon:
    kind: DaemonKind
    proc: Proc
    config: Path
    child_pidfiles: tuple[Path, ...] = ()

    def children(self) -> list[Proc]:
        """keepalived's forked children (VRRP, checkers), from the pidfiles it writes."""
        found = []
        # A stale pidfile could name a reused pid: only members of the daemon's own process
        # group count (keepalived's children stay in it, see nslab.system).
        group = set(group_members(self.proc.pid))
        for pidfile in self.child_pidfiles:
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if pid in group:
                found.append(Proc(name=f"{self.proc.name}-child", pid=pid, start_time=None))
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "proc": self.proc.to_json(),
            "config": str(self.config),
            "child_pidfiles": [str(p) for p in self.child_pidfiles],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Daemon:
        kind: DaemonKind = "pyvrrp" if data["kind"] == "pyvrrp" else "keepalived"
        return cls(
            kind=kind,
            proc=Proc.from_json(data["proc"]),
            config=Path(data["config"]),
            child_pidfiles=tuple(Path(p) for p in data["child_pidfiles"]),
        )


class Probe:
    """A running prober in the client namespace (see nslab.probe). Use as a context manager:
    `with lab.probe() as probe: ...`, then `probe.report()`."""

    def __init__(self, lab: Lab, targets: Sequence[str], interval: float, index: int) -> None:
        self.lab = lab
        self.targets = [str(ipaddress.ip_address(t)) for t in targets]
        self.interval = interval
        self.record = lab.tmp / f"probe-{index}.rec"
        self._marks: list[tuple[str, int]] = []
        self._lines: list[str] = []
        self._offset = 0
        self._last_node: dict[str, str] = {}
        self._proc: Proc | None = None
        self._final: ProbeReport | None = None

    def start(self) -> Probe:
        """Start the prober and wait until it sends."""
        ready = self.record.with_suffix(".ready")
        argv = ns_argv(
            self.lab.client_ns,
            [
                python(),
                "-m",
                "nslab.probe",
                "--out",
                str(self.record),
                "--interval",
                repr(self.interval),
                "--port",
                str(self.lab.cluster.responder_port),
                "--ready-file",
                str(ready),
                *self.targets,
            ],
        )
        log = self.record.with_suffix(".log")
        self._proc = spawn("probe", argv, log=log, env=python_env())
        proc = self._proc
        try:
            self.lab.wait_for(_started(ready, proc), 10.0, what="the probe to start")
        except LabTimeout:
            terminate(proc, grace=1.0)
            raise
        if not proc.alive():
            raise LabError(f"the probe exited at start: {log.read_text(errors='replace')}")
        return self

    def mark(self, label: str) -> None:
        """Remember the current time under `label` (shown in the report's `marks`)."""
        self._marks.append((label, time.monotonic_ns()))

    @property
    def running(self) -> bool:
        """Whether the prober still runs."""
        return self._proc is not None and self._proc.alive()

    def stop(self) -> ProbeReport:
        """Stop the prober (it waits 200 ms for late answers) and return the final report."""
        if self._final is None:
            if self._proc is not None:
                terminate(self._proc, grace=5.0)
            self._final = self._analyse()
        return self._final

    def report(self) -> ProbeReport:
        """The final report once stopped, else a live one from what was recorded so far."""
        return self._final if self._final is not None else self._analyse()

    def _read(self) -> None:
        """Take in what the prober appended since the last call (complete lines only: a live
        record may end in a line being written)."""
        with self.record.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            self._lines.append(line)
            fields = line.split()
            if len(fields) == 5 and fields[0] == "A":
                self._last_node[fields[4]] = fields[3]

    def _analyse(self) -> ProbeReport:
        self._read()
        return analyse(self._lines, self._marks)

    def last_node(self, target: str) -> str | None:
        """The node that answered `target` last so far (cheap: reads only new lines)."""
        self._read()
        return self._last_node.get(str(ipaddress.ip_address(target)))

    def wait_answered_by(self, target: str, node: str, timeout: float) -> None:
        """Wait until the latest answer for `target` comes from `node`."""
        self.lab.wait_for(
            lambda: self.last_node(target) == node, timeout, what=f"{node} to answer for {target}"
        )

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Lab:
    """One cluster in namespaces `<prefix>-<id>-<node>`, `-vswitch` and `-client`.

    `Lab(cluster)` only describes; `up()` builds (and refuses if namespaces of this id exist);
    `down()` removes everything it created. Use `with Lab() as lab:` to have both.
    """

    def __init__(
        self,
        cluster: ClusterSpec | None = None,
        *,
        lab_id: str | None = None,
        prefix: str = "nslab",
        tmp_root: Path | None = None,
        stop_grace: float = 5.0,
    ) -> None:
        self.cluster = cluster or seed_cluster()
        self.id = lab_id or secrets.token_hex(2)
        if not _ID.match(self.id):
            raise LabError(f"lab id {self.id!r}: use 1-8 lowercase letters or digits")
        if not re.match(r"^[a-z][a-z0-9]{0,7}$", prefix):
            raise LabError(f"prefix {prefix!r}: use 1-8 lowercase letters or digits")
        bad = _RESERVED_NODE_NAMES & set(self.cluster.node_names)
        if bad:
            raise LabError(f"node names {sorted(bad)} are reserved by the lab")
        self.prefix = prefix
        self.tmp = Path(tmp_root or tempfile.gettempdir()) / f"{prefix}-{self.id}"
        self.stop_grace = stop_grace
        self._created: list[str] = []
        self._daemons: dict[str, _Daemon] = {}
        self._last_daemon: dict[str, tuple[DaemonKind, str | None]] = {}
        self._agents: dict[str, Proc] = {}
        self._probes: list[Probe] = []
        self._watches: list[AdvertWatch] = []
        self._nft: set[tuple[str, str]] = set()  # (namespace, "family table")
        self._owner = True  # this process tears it down (False: attached or detached)
        self._owner_record: list[int | None] | None = _own_identity()
        self._up = False

    # ---- names

    @property
    def switch_ns(self) -> str:
        """The namespace of the vSwitch bridge."""
        return f"{self.prefix}-{self.id}-vswitch"

    @property
    def client_ns(self) -> str:
        """The namespace playing the outside world (gateway addresses, probes)."""
        return f"{self.prefix}-{self.id}-client"

    def ns(self, node: str) -> str:
        """The namespace of `node`."""
        self.cluster.node(node)
        return f"{self.prefix}-{self.id}-{node}"

    @property
    def nodes(self) -> tuple[str, ...]:
        """Node names."""
        return self.cluster.node_names

    def node_dir(self, node: str) -> Path:
        """The node's temp dir: configs, pidfiles, log, health flag, pyvrrp state."""
        return self.tmp / node

    def namespaces(self) -> list[str]:
        """Every namespace of this lab's id that exists now."""
        return [n for n in _namespaces() if n.startswith(f"{self.prefix}-{self.id}-")]

    # ---- lifecycle

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down(raise_errors=exc is None)

    def up(self) -> Lab:
        """Build the topology and start the per-node agents (health endpoint, responder).

        Daemons are started separately (`start`, `start_all`)."""
        if self._up:
            return self
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                raise LabError(f"`{tool}` is missing: apt-get install iproute2 nftables")
        existing = self.namespaces()
        if existing:
            raise LabError(
                f"namespaces of lab {self.id} already exist ({', '.join(existing)}): tear "
                f"that lab down with `netns-lab/lab.py down --id {self.id}`, or remove every "
                "stale lab with `netns-lab/lab.py cleanup`"
            )
        self._up = True
        atexit.register(self._down_at_exit)
        try:
            if (self.tmp / MARKER_FILE).exists():
                shutil.rmtree(self.tmp)  # a dead lab's leftovers: its namespaces are gone
            try:
                self.tmp.mkdir(mode=0o700, parents=True)
            except FileExistsError:
                raise LabError(f"{self.tmp} exists and is not a lab's: remove it") from None
            (self.tmp / MARKER_FILE).write_text(f"{self.prefix} {self.id}\n")
            self._build()
            self._start_agents()
            self.save_state()
        except BaseException:
            self.down(raise_errors=False)
            raise
        return self

    def _add_ns(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self._created.append(name)

    def _batch(self, ns: str, commands: Iterable[str], family: str = "-0") -> None:
        argv = ["ip", "-n", ns, "-batch", "-"]
        if family != "-0":
            argv.insert(1, family)
        run(argv, input_text="\n".join(commands) + "\n")

    def _sysctl(self, ns: str, settings: Mapping[str, str]) -> None:
        run(ns_argv(ns, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in settings.items())]))

    def _build(self) -> None:
        c = self.cluster
        for ns in (self.switch_ns, self.client_ns, *(self.ns(n) for n in self.nodes)):
            self._add_ns(ns)
        # The vSwitch carries frames only: no IPv6 on its ports (no RS/MLD noise).
        self._sysctl(
            self.switch_ns,
            {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
        )
        # DAD off before the interfaces appear, so link-local and VIP addresses work at once
        # (IPv6 VRRP adverts need a usable link-local source, RFC 9568 §5.1.2.1).
        no_dad = {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
        for ns in (self.client_ns, *(self.ns(n) for n in self.nodes)):
            self._sysctl(ns, no_dad)
        # Multicast snooping off: the bridge then floods VRRP multicast (224.0.0.18, ff02::12)
        # and ND's solicited-node groups to every port like the Hetzner vSwitch does, instead
        # of depending on IGMP/MLD reports and a querier that nobody runs here.
        switch = [
            f"link add {BRIDGE} type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
            f"link set {BRIDGE} up",
        ]
        for n in self.nodes:
            switch += [
                f"link add {_port(n)} type veth peer name {NODE_IF} netns {self.ns(n)}",
                f"link set {_port(n)} master {BRIDGE}",
                f"link set {_port(n)} up",
            ]
        switch += [
            f"link add {_port('client')} type veth peer name {CLIENT_IF} netns {self.client_ns}",
            f"link set {_port('client')} master {BRIDGE}",
            f"link set {_port('client')} up",
        ]
        self._batch(self.switch_ns, switch)
        table = c.routing_table
        for n in self.nodes:
            spec = c.node(n)
            self._batch(
                self.ns(n),
                [
                    "link set lo up",
                    # Port-less bridges stand in for the uplink and the maintenance dummy
                    # interface (this kernel has no dummy driver); up means carrier here.
                    "link add eth0 type bridge",
                    "link set eth0 up",
                    "link add dummy0 type bridge",
                    "link set dummy0 up",
                    f"link set {NODE_IF} up",
                    f"addr add {spec.vswitch_ip}/{c.vswitch_prefix} dev {NODE_IF}",
                    f"addr add {spec.vswitch_ipv6}/{c.vswitch_ipv6_prefix} dev {NODE_IF} nodad",
                    # The seed's `vswitch` table: replies from a VIP leave by the vSwitch.
                    f"route add {c.public_v4} dev {NODE_IF} table {table}",
                    f"route add default via {c.gateway_v4} dev {NODE_IF} table {table}",
                    f"route add {c.public_v6} dev {NODE_IF} table {table}",
                    f"route add ::/0 via {c.gateway_v6} dev {NODE_IF} table {table}",
                    f"rule add from {c.public_v4} lookup {table}",
                    f"rule add to {c.public_v4} lookup {table}",
                ],
            )
            # `ip rule` does not infer IPv6 from the prefix, and batch lines take no -6.
            self._batch(
                self.ns(n),
                [
                    f"rule add from {c.public_v6} lookup {table}",
                    f"rule add to {c.public_v6} lookup {table}",
                ],
                family="-6",
            )
        v4 = ipaddress.ip_network(c.public_v4)
        v6 = ipaddress.ip_network(c.public_v6)
        self._batch(
            self.client_ns,
            [
                "link set lo up",
                f"link set {CLIENT_IF} up",
                f"addr add {c.gateway_v4}/{v4.prefixlen} dev {CLIENT_IF}",
                f"addr add {c.client_v6}/{v6.prefixlen} dev {CLIENT_IF} nodad",
                f"addr add {c.gateway_v6}/64 dev {CLIENT_IF} nodad",
            ],
        )

    def _start_agents(self) -> None:
        ready: dict[str, Path] = {}
        for n in self.nodes:
            d = self.node_dir(n)
            d.mkdir(exist_ok=True)
            ready[n] = d / "agent.ready"
            argv = ns_argv(
                self.ns(n),
                [
                    python(),
                    "-m",
                    "nslab.agent",
                    "--node",
                    n,
                    "--unhealthy-flag",
                    str(d / "unhealthy"),
                    "--udp-port",
                    str(self.cluster.responder_port),
                    "--ready-file",
                    str(ready[n]),
                ],
            )
            self._agents[n] = spawn(f"agent-{n}", argv, log=d / "agent.log", env=python_env())
        for n in self.nodes:
            agent, flag = self._agents[n], ready[n]
            self.wait_for(_started(flag, agent), 15.0, what=f"agent {n} to start")
            if not agent.alive():
                log = (self.node_dir(n) / "agent.log").read_text(errors="replace")
                raise LabError(f"the agent of node {n} exited at start:\n{log}")

    def down(self, *, raise_errors: bool = True) -> None:
        """Tear down everything this lab created: probes, daemons (and keepalived's children),
        agents, nftables tables, namespaces, the temp dir. Safe to call twice; a second Ctrl-C
        cannot interrupt it."""
        if not self._up:
            return
        errors: list[str] = []
        with _sigint_deferred():
            for probe in self._probes:
                try:
                    probe.stop()
                except (LabError, OSError, ValueError) as exc:
                    errors.append(f"probe: {exc}")
            for watch in self._watches:
                watch.stop()
            self._watches.clear()
            # Immediate: the lab is going away, nobody is left to hand the addresses over to
            # (a graceful pyvrrp would wait ~3 s for a new master that never comes).
            self._stop_daemons(list(self._daemons), signal.SIGTERM, errors, immediate=True)
            agents = list(self._agents.values())
            for agent in agents:
                agent.signal(signal.SIGTERM)
            for agent in agents:
                if not agent.wait(2.0):
                    agent.signal_group(signal.SIGKILL)
                    agent.wait(2.0)
            self._agents.clear()
            for ns, table in sorted(self._nft):
                if ns in _namespaces():
                    run(ns_argv(ns, ["nft", "delete", "table", *table.split()]), check=False)
            self._nft.clear()
            for ns in reversed(self._created):
                try:
                    _remove_namespace(ns)
                except LabError as exc:
                    errors.append(str(exc))
            self._created.clear()
            if self.tmp.exists():
                shutil.rmtree(self.tmp, ignore_errors=True)
            self._up = False
            atexit.unregister(self._down_at_exit)
        if errors and raise_errors:
            raise LabError("teardown was incomplete:\n" + "\n".join(errors))

    def _down_at_exit(self) -> None:
        if self._owner:
            self.down(raise_errors=False)

    # ---- state file (detached labs driven by several lab.py invocations)

    @property
    def state_file(self) -> Path:
        """Where a lab's ids, pids and namespaces are saved for `lab.py down` and friends."""
        return self.tmp / STATE_FILE

    def save_state(self) -> None:
        """Write the state file (after every change of processes or nft tables)."""
        state = {
            "id": self.id,
            "prefix": self.prefix,
            "tmp": str(self.tmp),
            # The process that will tear this lab down (None: detached, nobody will).
            "owner": self._owner_record,
            "nodes": len(self.nodes),
            "namespaces": self._created,
            "agents": {n: p.to_json() for n, p in self._agents.items()},
            "daemons": {n: d.to_json() for n, d in self._daemons.items()},
            "last_daemon": {n: list(v) for n, v in self._last_daemon.items()},
            "nft": sorted(list(t) for t in self._nft),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_file)

    def reload_state(self) -> None:
        """Re-read the state file (another lab.py invocation may have started daemons)."""
        data = json.loads(self.state_file.read_text())
        self._created = list(data["namespaces"])
        self._agents = {n: Proc.from_json(p) for n, p in data["agents"].items()}
        self._daemons = {n: _Daemon.from_json(d) for n, d in data["daemons"].items()}
        self._last_daemon = {
            n: ("pyvrrp" if v[0] == "pyvrrp" else "keepalived", v[1])
            for n, v in data.get("last_daemon", {}).items()
        }
        self._nft = {(t[0], t[1]) for t in data["nft"]}
        self._owner_record = data.get("owner")

    @property
    def is_up(self) -> bool:
        """Whether the lab is built (between `up()` and `down()`)."""
        return self._up

    @property
    def owned(self) -> bool:
        """Whether this process tears the lab down (at `down()`, exit, or the end of `with`)."""
        return self._owner

    def detach(self) -> None:
        """Leave the lab running when this process exits; `Lab.attach(id).down()` (or
        `lab.py down --id ID`) removes it later."""
        self._owner = False
        self._owner_record = None
        atexit.unregister(self._down_at_exit)
        self.save_state()

    @classmethod
    def attach(cls, lab_id: str, *, prefix: str = "nslab", tmp_root: Path | None = None) -> Lab:
        """The lab `lab_id` that another process built (from its state file). Leaving the
        process does not tear it down; `down()` does."""
        stub = cls(seed_cluster(1), lab_id=lab_id, prefix=prefix, tmp_root=tmp_root)
        if not stub.state_file.exists():
            raise LabError(
                f"no lab {lab_id} here ({stub.state_file} is missing): "
                "`netns-lab/lab.py cleanup` lists and removes stale namespaces"
            )
        data = json.loads(stub.state_file.read_text())
        lab = cls(seed_cluster(int(data["nodes"])), lab_id=lab_id, prefix=prefix, tmp_root=tmp_root)
        lab.reload_state()
        lab._owner = False
        lab._up = True
        return lab

    # ---- running commands in namespaces

    def run_in(self, node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside `node`'s namespace ("client" and "vswitch" work too)."""
        return run(ns_argv(self._any_ns(node), argv), check=check)

    def _any_ns(self, name: str) -> str:
        if name == "client":
            return self.client_ns
        if name == "vswitch":
            return self.switch_ns
        return self.ns(name)

    # ---- daemons

    def start(
        self,
        node: str,
        daemon: DaemonKind = "keepalived",
        config_text: str | None = None,
        *,
        notify: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start `daemon` in `node`'s namespace with `config_text` (default: generated from
        the cluster spec); output goes to `log(node)`. `env` adds to the daemon's environment
        (e.g. libfaketime's LD_PRELOAD for one node)."""
        if node in self._daemons and self._daemons[node].proc.alive():
            raise LabError(f"a daemon already runs on {node}: stop it first")
        d = self.node_dir(node)
        log = d / "daemon.log"
        with log.open("a") as f:
            f.write(f"=== nslab: starting {daemon} on {node} at {time.strftime('%T')} ===\n")
        if daemon == "keepalived":
            if shutil.which("keepalived") is None:
                raise LabError("keepalived is missing: apt-get install keepalived")
            conf = d / "keepalived.conf"
            conf.write_text(config_text or keepalived_config(node, self.cluster, notify=notify))
            pids = {k: d / f"keepalived-{k}.pid" for k in ("main", "vrrp", "checkers")}
            for p in pids.values():
                p.unlink(missing_ok=True)
            argv = [
                "keepalived",
                "-f", str(conf),
                "-p", str(pids["main"]),
                "-r", str(pids["vrrp"]),
                "-c", str(pids["checkers"]),
                "-l", "-D", "-n",
                "-G",  # no syslog: the log file is the only log (-l writes to stderr)
            ]  # fmt: skip
            children: tuple[Path, ...] = (pids["vrrp"], pids["checkers"])
        elif daemon == "pyvrrp":
            conf = d / "node.toml"
            (d / "state").mkdir(exist_ok=True)
            conf.write_text(
                config_text or pyvrrp_config(node, self.cluster, run_dir=d, notify=notify)
            )
            argv = [python(), "-m", "pyvrrp", "-c", str(conf)]
            children = ()
        else:
            raise LabError(f"unknown daemon {daemon!r}: keepalived or pyvrrp")
        proc = spawn(
            f"{daemon}-{node}",
            ns_argv(self.ns(node), argv),
            log=log,
            env={**python_env(), **(env or {})},
        )
        self._daemons[node] = _Daemon(daemon, proc, conf, children)
        self._last_daemon[node] = (daemon, config_text)
        self.save_state()

    def start_all(self, daemon: DaemonKind = "keepalived") -> None:
        """Start `daemon` on every node that has none running."""
        for n in self.nodes:
            if not self.running(n):
                self.start(n, daemon)

    def running(self, node: str) -> bool:
        """Whether `node`'s daemon runs."""
        return node in self._daemons and self._daemons[node].proc.alive()

    def daemon_pids(self, node: str) -> list[int]:
        """The daemon's pid and, for keepalived, its children's (empty if none runs)."""
        d = self._daemons.get(node)
        if d is None or not d.proc.alive():
            return []
        return [d.proc.pid, *(c.pid for c in d.children())]

    def processes(self) -> list[int]:
        """Pids of every process the lab runs now: agents, daemons (and keepalived's
        children), probes. After `down()` none of them may be alive."""
        pids = [p.pid for p in self._agents.values() if p.alive()]
        for n in self._daemons:
            pids += self.daemon_pids(n)
        pids += [p._proc.pid for p in self._probes if p._proc is not None and p.running]
        pids += [w.proc.pid for w in self._watches if w.proc is not None and w.proc.alive()]
        return pids

    def stop(self, node: str, signo: int = signal.SIGTERM, *, timeout: float | None = None) -> None:
        """Send `signo` (SIGTERM: a graceful stop) to `node`'s daemon and wait for it, then
        SIGKILL whatever is left of it (keepalived's children included)."""
        errors: list[str] = []
        self._stop_daemons([node], signo, errors, timeout)
        if errors:
            raise LabError("; ".join(errors))

    def _stop_daemons(
        self,
        nodes: list[str],
        signo: int,
        errors: list[str],
        timeout: float | None = None,
        *,
        immediate: bool = False,
    ) -> None:
        grace = self.stop_grace if timeout is None else timeout
        victims = []
        logs: dict[str, int] = {}
        for n in nodes:
            d = self._daemons.pop(n, None)
            if d is not None:
                victims.append((n, d, d.children()))
                logs[n] = len(self.log(n))
                d.proc.signal(signo)
        if immediate and signo in (signal.SIGTERM, signal.SIGINT):
            self._signal_again([(n, d) for n, d, _ in victims], signo, logs)
        deadline = time.monotonic() + grace
        for n, d, children in victims:
            if not d.proc.wait(max(0.0, deadline - time.monotonic())):
                errors.append(f"{d.kind} on {n} ignored signal {signo} for {grace} s: killed")
            d.proc.signal_group(signal.SIGKILL)
            for child in children:
                child.signal(signal.SIGKILL)
            for proc in [d.proc, *children]:
                proc.wait(5.0)
        if victims and self._up:
            self.save_state()

    def _signal_again(
        self, victims: list[tuple[str, _Daemon]], signo: int, logs: Mapping[str, int]
    ) -> None:
        """Send `signo` a second time to the pyvrrp daemons among `victims`, each once its log
        shows it took the first one (a second signal stops pyvrrp at once, without the graceful
        handover; two signals sent back to back could arrive as one)."""
        pending = {n: d for n, d in victims if d.kind == "pyvrrp"}
        deadline = time.monotonic() + 2.0
        while pending:
            for n, d in list(pending.items()):
                if not d.proc.alive():
                    del pending[n]
                elif STOPPING_LINE in self.log(n)[logs[n] :] or time.monotonic() >= deadline:
                    d.proc.signal(signo)
                    del pending[n]
            if pending:
                time.sleep(0.02)

    def kill(self, node: str) -> None:
        """SIGKILL `node`'s daemon like a crash: no goodbye advert, addresses stay behind.

        keepalived's parent is stopped first (SIGSTOP) so it cannot respawn its VRRP child,
        then the children named in its pidfiles and the parent are killed."""
        d = self._daemons.pop(node, None)
        if d is None:
            raise LabError(f"no daemon runs on {node}")
        children = d.children()
        d.proc.signal(signal.SIGSTOP)
        for child in children:
            child.signal(signal.SIGKILL)
        d.proc.signal(signal.SIGKILL)
        d.proc.signal_group(signal.SIGKILL)
        for proc in [d.proc, *children]:
            proc.wait(5.0)
        self.save_state()

    def restart(self, node: str) -> None:
        """Stop `node`'s daemon (if running) and start it again with the same config."""
        kind, config_text = self._last_daemon.get(node, ("keepalived", None))
        if self.running(node):
            self.stop(node)
        self.start(node, kind, config_text)

    def log(self, node: str) -> str:
        """Everything `node`'s daemons wrote (all runs, each after a `=== nslab:` line)."""
        path = self.node_dir(node) / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def status(self, node: str) -> Any:
        """`pyvrrp status --json` of `node`'s daemon, parsed."""
        conf = self.node_dir(node) / "node.toml"
        if not conf.exists():
            conf.write_text(pyvrrp_config(node, self.cluster, run_dir=self.node_dir(node)))
        argv = [python(), "-m", "pyvrrp", "status", "--json", "-c", str(conf)]
        done = run(ns_argv(self.ns(node), argv), check=False)
        if done.returncode != 0:
            raise LabError(
                f"`pyvrrp status` on {node} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}"
            )
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise LabError(f"`pyvrrp status --json` on {node} printed no JSON: {exc}") from exc

    # ---- health endpoint

    def set_healthy(self, node: str, healthy: bool = True) -> None:
        """Make `node`'s /healthz answer 200 (healthy) or 500."""
        flag = self.node_dir(node) / "unhealthy"
        if healthy:
            flag.unlink(missing_ok=True)
        else:
            flag.write_text("unhealthy\n")

    # ---- faults

    def cut_link(self, node: str) -> None:
        """Detach `node`'s port from the bridge: its frames go nowhere, but its `eth0.4000`
        keeps carrier (a vSwitch failure, not a cable pull)."""
        run(["ip", "-n", self.switch_ns, "link", "set", _port(node), "nomaster"])

    def restore_link(self, node: str) -> None:
        """Undo `cut_link`."""
        run(["ip", "-n", self.switch_ns, "link", "set", _port(node), "master", BRIDGE])

    def set_link_down(self, node: str) -> None:
        """Carrier loss: the switch side of `node`'s veth goes down, so `eth0.4000` stays
        administratively up but loses carrier (NO-CARRIER), like a pulled cable."""
        run(["ip", "-n", self.switch_ns, "link", "set", _port(node), "down"])

    def set_link_up(self, node: str) -> None:
        """Undo `set_link_down`."""
        run(["ip", "-n", self.switch_ns, "link", "set", _port(node), "up"])

    def dummy_down(self, node: str) -> None:
        """The operator's maintenance switch: `ip link set dummy0 down` on `node`."""
        run(["ip", "-n", self.ns(node), "link", "set", "dummy0", "down"])

    def dummy_up(self, node: str) -> None:
        """Undo `dummy_down`."""
        run(["ip", "-n", self.ns(node), "link", "set", "dummy0", "up"])

    def delete_dummy(self, node: str) -> None:
        """Delete `dummy0` on `node` (what a network restart does to it)."""
        run(["ip", "-n", self.ns(node), "link", "del", "dummy0"])

    def recreate_dummy(self, node: str) -> None:
        """Create `dummy0` again, up (a tracker must follow the new interface by name)."""
        self._batch(self.ns(node), ["link add dummy0 type bridge", "link set dummy0 up"])

    def partition(self, groups: Sequence[Iterable[str]], *, client_with: int = 0) -> None:
        """Split the vSwitch: nodes in different `groups` cannot exchange frames; the client
        stays with `groups[client_with]`. Every node must be in exactly one group.

        An nftables `bridge` table in the switch namespace drops frames between the groups'
        ports on the forward hook (flooded frames pass it once per output port)."""
        sets = [set(g) for g in groups]
        listed = [n for g in sets for n in g]
        if sorted(listed) != sorted(self.nodes):
            raise LabError(f"partition: every node in exactly one group ({self.nodes})")
        if not 0 <= client_with < len(sets):
            raise LabError(f"partition: client_with={client_with} is not a group index")
        ports = [sorted(_port(n) for n in g) for g in sets]
        ports[client_with].append(_port("client"))
        rules = []
        for i, a in enumerate(ports):
            for j, b in enumerate(ports):
                if i != j:
                    rules.append(
                        f"        iifname {{ {', '.join(map(json.dumps, a))} }} "
                        f"oifname {{ {', '.join(map(json.dumps, b))} }} drop"
                    )
        self._nft_replace(
            self.switch_ns,
            f"bridge {PARTITION_TABLE}",
            "    chain forward {\n"
            "        type filter hook forward priority 0; policy accept;\n"
            + "\n".join(rules)
            + "\n    }\n",
        )

    def heal(self) -> None:
        """Undo `partition`."""
        self._nft_delete(self.switch_ns, f"bridge {PARTITION_TABLE}")

    def set_vrrp_loss(self, percent: int, node: str | None = None) -> None:
        """Drop `percent`% of VRRP packets (IP protocol 112) arriving at `node` (or at every
        node), at random, on the input hook of the node's namespace."""
        if not 0 <= percent <= 100:
            raise LabError(f"loss {percent}% is not in 0..100")
        for n in [node] if node else self.nodes:
            if percent == 0:
                self._nft_delete(self.ns(n), f"inet {LOSS_TABLE}")
                continue
            # numgen's range is 0..99, so 100% needs a rule without it. The first rule only
            # counts what arrives, the second what it drops (`vrrp_loss_counters`).
            match = "" if percent == 100 else f"numgen random mod 100 < {percent} "
            self._nft_replace(
                self.ns(n),
                f"inet {LOSS_TABLE}",
                "    chain input {\n"
                "        type filter hook input priority 0; policy accept;\n"
                "        meta l4proto vrrp counter\n"
                f"        meta l4proto vrrp {match}counter drop\n"
                "    }\n",
            )

    def vrrp_loss_counters(self, node: str) -> tuple[int, int]:
        """(VRRP packets that arrived at `node`, how many of them `set_vrrp_loss` dropped)
        since the loss was set; (0, 0) without loss on that node."""
        if (self.ns(node), f"inet {LOSS_TABLE}") not in self._nft:
            return (0, 0)
        out = run(ns_argv(self.ns(node), ["nft", "-j", "list", "table", "inet", LOSS_TABLE]))
        counts = [
            expr["counter"]["packets"]
            for item in json.loads(out.stdout)["nftables"]
            if "rule" in item
            for expr in item["rule"]["expr"]
            if "counter" in expr
        ]
        if len(counts) != 2:
            raise LabError(f"unexpected loss table in {self.ns(node)}: {out.stdout[:200]}")
        return counts[0], counts[1]

    def clear_loss(self) -> None:
        """Undo every `set_vrrp_loss`."""
        for n in self.nodes:
            self._nft_delete(self.ns(n), f"inet {LOSS_TABLE}")

    def _nft_replace(self, ns: str, table: str, body: str) -> None:
        # Declaring then deleting makes the delete valid whether or not the table existed; the
        # whole file is one transaction, so the rules change atomically.
        script = f"table {table}\ndelete table {table}\ntable {table} {{\n{body}}}\n"
        run(ns_argv(ns, ["nft", "-f", "-"]), input_text=script)
        self._nft.add((ns, table))
        self.save_state()

    def _nft_delete(self, ns: str, table: str) -> None:
        if (ns, table) in self._nft:
            run(ns_argv(ns, ["nft", "delete", "table", *table.split()]), check=False)
            self._nft.discard((ns, table))
            self.save_state()

    def nft_tables(self) -> list[tuple[str, str]]:
        """(namespace, "family name") of the nftables tables the lab added and keeps."""
        return sorted(self._nft)

    # ---- observation

    def addresses(self, node: str) -> list[str]:
        """Every address configured in `node`'s namespace (`ip -j addr`)."""
        out = run(["ip", "-j", "-n", self._any_ns(node), "addr", "show"]).stdout
        return [
            str(ipaddress.ip_address(a["local"]))
            for link in json.loads(out or "[]")
            for a in link.get("addr_info", [])
            if "local" in a
        ]

    def holders(self) -> dict[str, list[str]]:
        """For every VIP and excluded address of the cluster, the nodes holding it now."""
        result: dict[str, list[str]] = {a: [] for a in self.cluster.vip_addresses()}
        for n in self.nodes:
            for a in self.addresses(n):
                if a in result:
                    result[a].append(n)
        return result

    def expected_holders(self) -> dict[str, list[str]]:
        """`holders()` once converged with nothing failing (the seed table for the seed)."""
        return self.cluster.expected_holders()

    def wait_for(
        self,
        predicate: Callable[[], T | None],
        timeout: float,
        *,
        interval: float = 0.05,
        what: str = "a condition",
    ) -> T:
        """Poll `predicate` until it returns something true; return that. LabTimeout (an
        AssertionError) after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise LabTimeout(f"timed out after {timeout} s waiting for {what}")
            time.sleep(interval)

    def wait_holders(
        self, expected: Mapping[str, Iterable[str]], timeout: float, *, exact: bool = True
    ) -> dict[str, list[str]]:
        """Wait until each address in `expected` is held by exactly those nodes (or, with
        `exact=False`, at least by them). Returns the holders seen."""
        want = {str(ipaddress.ip_address(a)): sorted(n) for a, n in expected.items()}
        last: dict[str, list[str]] = {}

        def check() -> dict[str, list[str]] | None:
            nonlocal last
            last = self.holders()
            for addr, nodes in want.items():
                have = sorted(last.get(addr, []))
                if (have != nodes) if exact else not set(nodes) <= set(have):
                    return None
            return last

        try:
            return self.wait_for(check, timeout, interval=0.1, what=f"holders {want}")
        except LabTimeout as exc:
            raise LabTimeout(f"{exc}; holders now: {last}{self._dead_daemons()}") from None

    def _dead_daemons(self) -> str:
        """For timeout messages: daemons that were started and are gone, with their log's end."""
        notes = []
        for n in self.nodes:
            if n in self._last_daemon and not self.running(n):
                tail = "\n    ".join(self.log(n).splitlines()[-5:])
                notes.append(f"\n  no daemon runs on {n}; end of its log:\n    {tail}")
        return "".join(notes)

    def wait_converged(self, timeout: float = 30.0) -> dict[str, list[str]]:
        """Wait until `holders()` equals `expected_holders()`."""
        return self.wait_holders(self.expected_holders(), timeout)

    def probe(self, targets: Iterable[str] | None = None, *, interval: float = 0.005) -> Probe:
        """Start a prober in the client namespace sending to `targets` (default: every VIP
        and excluded address) every `interval` s."""
        chosen = list(targets) if targets is not None else list(self.cluster.vip_addresses())
        probe = Probe(self, chosen, interval, len(self._probes))
        self._probes.append(probe)
        return probe.start()

    def watch_adverts(self, node: str) -> AdvertWatch:
        """Start watching the advertisements `node` sends (tcpdump on its vSwitch port, see
        nslab.sniff); use as a context manager. Stopped by `down()` at the latest."""
        self.cluster.node(node)
        watch = AdvertWatch(
            self.switch_ns, _port(node), str(self.tmp / f"tcpdump-{len(self._watches)}.log")
        )
        self._watches.append(watch)
        return watch.start()

    # ---- reset

    def remove_vips(self, node: str) -> None:
        """Delete the cluster's VIPs and excluded addresses left on `node` (after a SIGKILL)."""
        vips = {
            str(ipaddress.ip_interface(a).ip): a
            for i in self.cluster.instances
            for a in i.addresses + i.excluded_addresses
        }
        for addr in self.addresses(node):
            if addr in vips:
                run(["ip", "-n", self.ns(node), "addr", "del", vips[addr], "dev", NODE_IF],
                    check=False)  # fmt: skip

    def daemon_kind(self, node: str) -> DaemonKind | None:
        """The kind of daemon `node` runs now (None if none runs)."""
        return self._daemons[node].kind if self.running(node) else None

    def custom_config(self, node: str) -> bool:
        """Whether `node`'s last daemon was started with a `config_text` of the caller's
        rather than the one generated from the cluster spec."""
        return self._last_daemon.get(node, ("keepalived", None))[1] is not None

    def reset(
        self,
        daemon: DaemonKind | Mapping[str, DaemonKind] | None = None,
        *,
        timeout: float = 30.0,
        default_configs: bool = False,
    ) -> None:
        """Undo every fault, make every node healthy, get the wanted daemons running and wait
        for convergence.

        `daemon` is the kind every node must run, or `{node: kind}` (nodes left out keep
        theirs), or None: each node's last kind. A node running another kind is stopped
        (`stop_many(immediate=True)`: the next test starts from a converged cluster, not from
        a handover) and started with the wanted one, so one lab can serve
        tests of several mixes of keepalived and pyvrrp. With `default_configs`, a daemon
        started with a custom `config_text` is restarted with the generated config too.
        Last, the client's neighbour caches are flushed (`flush_client_neighbours`).
        """
        self.undo_faults()
        wanted: dict[str, DaemonKind] = {}
        for n in self.nodes:
            last_kind, _ = self._last_daemon.get(n, ("keepalived", None))
            if daemon is None:
                wanted[n] = last_kind
            elif isinstance(daemon, str):
                wanted[n] = daemon
            else:
                wanted[n] = daemon.get(n, last_kind)
        replace = [
            n
            for n in self.nodes
            if self.running(n)
            and (self.daemon_kind(n) != wanted[n] or (default_configs and self.custom_config(n)))
        ]
        if replace:
            self.stop_many(replace, immediate=True)
        for n in self.nodes:
            if not self.running(n):
                last_kind, last_config = self._last_daemon.get(n, ("keepalived", None))
                keep = wanted[n] == last_kind and not default_configs
                self.remove_vips(n)
                self.start(n, wanted[n], last_config if keep else None)
        self.wait_converged(timeout)
        self.flush_client_neighbours()

    def undo_faults(self) -> None:
        """Heal partitions, clear packet loss, bring every vSwitch port, `dummy0` and health
        endpoint back (the first step of `reset`)."""
        self.heal()
        self.clear_loss()
        links = json.loads(run(["ip", "-j", "-n", self.switch_ns, "link", "show"]).stdout)
        by_name = {link["ifname"].split("@")[0]: link for link in links}
        for n in self.nodes:
            port = by_name.get(_port(n), {})
            if "UP" not in port.get("flags", []):
                self.set_link_up(n)
            if port.get("master") != BRIDGE:
                self.restore_link(n)
            own = json.loads(run(["ip", "-j", "-n", self.ns(n), "link", "show"]).stdout)
            dummy = [link for link in own if link["ifname"] == "dummy0"]
            if not dummy:
                self.recreate_dummy(n)
            elif "UP" not in dummy[0]["flags"]:
                self.dummy_up(n)
            self.set_healthy(n, True)

    def stop_cold(self) -> None:
        """`undo_faults`, stop every daemon at once (`stop_many(immediate=True)`), remove the
        VIPs a killed one left and flush the client's neighbour caches: the lab as a cold start
        finds it, without waiting for a convergence the caller would undo."""
        self.undo_faults()
        self.stop_many(self.nodes, immediate=True)
        for n in self.nodes:
            self.remove_vips(n)
        self.flush_client_neighbours()

    def flush_client_neighbours(self) -> None:
        """Empty the client's ARP and ND caches, so it asks who holds each address now: a
        test must not inherit a cache that a previous one left pointing at the wrong node
        (it would take the client's neighbour unreachability detection, ~8 s, to notice)."""
        run(["ip", "-n", self.client_ns, "neigh", "flush", "all"])

    def stop_many(
        self, nodes: Iterable[str], signo: int = signal.SIGTERM, *, immediate: bool = False
    ) -> None:
        """`stop` several nodes' daemons at once (they all get the signal, then are waited
        for), e.g. to switch a cluster from keepalived to pyvrrp. With `immediate`, pyvrrp
        daemons get SIGTERM (or SIGINT) twice: they stop at once, without waiting for a new
        master to hand their addresses over to (none comes when every node stops)."""
        errors: list[str] = []
        self._stop_daemons(list(nodes), signo, errors, immediate=immediate)
        if errors:
            raise LabError("; ".join(errors))


def _started(ready: Path, proc: Proc) -> Callable[[], bool]:
    """A wait_for predicate: `proc` wrote its ready file, or died trying."""
    return lambda: ready.exists() or not proc.alive()


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Ignore Ctrl-C while tearing down (in the main thread only: signals live there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _remove_namespace(ns: str) -> None:
    """Kill what still runs in `ns` (only the lab's processes can be there), then delete it."""
    if ns not in _namespaces():
        return
    pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            Proc(name="leftover", pid=int(pid), start_time=None).signal(signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ValueError):
            Proc(name="leftover", pid=int(pid), start_time=None).wait(5.0)
    run(["ip", "netns", "delete", ns])


def _own_identity() -> list[int | None]:
    pid = os.getpid()
    return [pid, start_time_of(pid)]


def lab_owner(lab_id: str, prefix: str = "nslab", tmp_root: Path | None = None) -> int | None:
    """The pid of the live process that owns lab `lab_id` (it will tear it down), or None if
    the lab is detached or its owner is gone."""
    path = Path(tmp_root or tempfile.gettempdir()) / f"{prefix}-{lab_id}" / STATE_FILE
    try:
        owner = json.loads(path.read_text()).get("owner")
    except (OSError, ValueError):
        return None
    if not owner or owner[0] == os.getpid():
        return None
    return int(owner[0]) if pid_alive(int(owner[0]), owner[1]) else None


def list_labs(prefix: str = "nslab") -> dict[str, list[str]]:
    """Lab ids that have namespaces now, with their namespaces."""
    labs: dict[str, list[str]] = {}
    pattern = re.compile(rf"^{re.escape(prefix)}-([0-9a-z]{{1,8}})-")
    for ns in _namespaces():
        m = pattern.match(ns)
        if m:
            labs.setdefault(m.group(1), []).append(ns)
    return labs


def cleanup(
    prefix: str = "nslab", tmp_root: Path | None = None, *, include_owned: bool = False
) -> tuple[list[str], list[str]]:
    """Remove every stale lab of `prefix`: processes in its namespaces, the namespaces, and
    temp dirs carrying the lab's marker file. A lab whose owning process still runs (a test,
    `lab.py up` in another terminal) is skipped unless `include_owned`; detached labs are
    removed. Returns (what was removed, what was skipped and why)."""
    removed: list[str] = []
    skipped: list[str] = []
    root = Path(tmp_root or tempfile.gettempdir())
    for lab_id, namespaces in list_labs(prefix).items():
        owner = lab_owner(lab_id, prefix, tmp_root)
        if owner is not None and not include_owned:
            skipped.append(f"lab {lab_id}: in use by pid {owner}")
            continue
        try:
            Lab.attach(lab_id, prefix=prefix, tmp_root=tmp_root).down()
        except LabError:
            for ns in namespaces:
                _remove_namespace(ns)
        removed += namespaces
    for d in root.glob(f"{prefix}-*"):
        lab_id = d.name.split("-", 1)[1]
        if (
            (d / MARKER_FILE).exists()
            and not list_labs(prefix).get(lab_id)
            and (include_owned or lab_owner(lab_id, prefix, tmp_root) is None)
        ):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed, skipped
