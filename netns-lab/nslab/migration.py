"""The keepalived -> pyvrrp migration, rehearsed on the seed cluster (`make demo-migration`,
tests/netns/test_migration.py).

The seed's three real keepalived.conf files (tests/data/keepalived/machine-{a,b,c}.conf) run in
the lab with keepalived's default VRRP version (v2 for IPv4: the files say no `vrrp_version`),
changed only where the lab must differ (`lab_keepalived_conf`), on nodes set up as deployed:
the seed's if-up.d hooks (tests/data/hooks/) make the `vswitch` table's routes and rules, and
a firewall lets VRRP in from the unicast peers only. A client probes every VIP and IPv6 twin
every 5 ms throughout. Then each node in turn goes from keepalived to pyvrrp as
docs/migrating-from-keepalived.md tells an operator to:

    pyvrrp import-keepalived keepalived.conf -o node.toml --vrrp-version 2+3
                      (migration mode, RFC 9568 §8.4; the seed's file as deployed: exit 1,
                       SNMP dropped, then --force)
    the hooks' routes and rules appended to node.toml        (HOOK_ROUTES_TOML)
    pyvrrp check --host -c node.toml                         (on the node)
    stop keepalived (SIGTERM), start pyvrrp, pyvrrp status

Optionally one node is rolled back (pyvrrp stopped, the hooks run again, keepalived started)
and moved forward again. Once all three run pyvrrp, each in turn switches to VRRPv3:

    sed -i 's/^version = .*/version = 3/' node.toml
    pyvrrp reload -c node.toml                                (what SIGHUP does)

What is measured: the client's outage per address in every step (from the probe's record:
each unanswered request is 5 ms without service), and every moment two nodes held one address
(`ip monitor address` in every node namespace, from the kernel's own notifications, so even a
few milliseconds of overlap are seen).

Why the module is over the project's ~700 lines: it is one scenario, step by step (the seed's
files adapted to the lab, keepalived, each node's swap, the rollback, the switch to VRRPv3,
and the measurement of each step), read top to bottom as the migration guide is; splitting it
would scatter the order of the steps, which is what it checks.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nslab.lab import Lab, Probe
from nslab.spec import HealthCheckSpec
from nslab.system import LabError, Proc, ns_argv, python, python_env, run, spawn, terminate

__all__ = [
    "HOOK_ROUTES_TOML",
    "SEED_DATA",
    "SEED_FILE",
    "AddressResult",
    "AddressWatch",
    "ImportOutcome",
    "MigrationReport",
    "Overlap",
    "Rehearsal",
    "keepalived_skew_time",
    "lab_keepalived_conf",
    "sigterm_gap_bound",
]

# The seed's real files, as deployed (the repository's copy; `machine-b.conf` really says
# `router_id machine-c`).
SEED_DATA = Path(__file__).resolve().parents[2] / "tests" / "data" / "keepalived"
SEED_FILE = {"A": "machine-a.conf", "B": "machine-b.conf", "C": "machine-c.conf"}
# The ifupdown hooks that made the `vswitch` table's routes and rules (if-up.d/, if-down.d/).
SEED_HOOKS = SEED_DATA.parent / "hooks"
HOOKS = ("z90-route-eth0", "z90-rule-eth0")

# What the hooks did, in node.toml: pyvrrp installs these at start and removes them at stop
# (docs/configuration.md, "Routes and rules"). docs/migrating-from-keepalived.md shows this
# text as it is.
HOOK_ROUTES_TOML = """\
# The vswitch table and its rules, from /etc/network/if-up.d/z90-route-eth0 and z90-rule-eth0
[[routes]]
to = "1.2.3.57/32"
dev = "eth0.4000"
table = "vswitch"

[[routes]]
to = "default"
via = "1.2.3.57"
dev = "eth0.4000"
table = "vswitch"

[[rules]]
to = "1.2.3.56/29"
table = "vswitch"

[[rules]]
from = "1.2.3.56/29"
table = "vswitch"
"""

# The seed: advert_int 1; the best backup of every VIP has priority 75 (docs/hetzner-vswitch.md).
ADVERT_INTERVAL_S = 1.0
BEST_BACKUP_PRIORITY = 75
# On top of Skew_Time, a keepalived SIGTERM handover costs the new master's GARP/NA reaching
# the client and the scheduling of a busy 2-core machine: 0.3 s is generous (measured ~5 ms,
# docs/benchmarks.md "Failover").
SIGTERM_GAP_SLACK_S = 0.3
# A handover by preemption makes the new master add the address right after sending its
# advertisement, and the old one remove it when that advertisement arrives (RFC 9568 §6.4.3):
# both hold it for the advert's transit and processing, a few milliseconds. A stopping pyvrrp
# master keeps its addresses until 0.1 s after it hears the new master (graceful_handover,
# docs/configuration.md). Anything longer than this is two masters, not one handover (a real
# split lasts at least an advert interval).
HANDOVER_OVERLAP_S = 0.25

# What the lab drops from the seed's files: it runs no mail server and no SNMP agent.
_DROPPED_KEYWORDS = {
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_alert",
    "snmp_socket",
}


def keepalived_skew_time(priority: int, advert_interval_s: float = ADVERT_INTERVAL_S) -> float:
    """Skew_Time of a VRRPv2 backup: (256 - Priority) / 256 s (RFC 3768 §6.1), scaled by the
    advert interval as VRRPv3 does (RFC 9568 §6.1; the same for a 1 s interval)."""
    return (256 - priority) * advert_interval_s / 256


def sigterm_gap_bound() -> float:
    """One keepalived SIGTERM gap, generously: keepalived drops its addresses at once and sends
    priority 0, the best backup takes over after its Skew_Time (RFC 3768 §6.4.2), then the
    client learns the new holder from its gratuitous ARP / unsolicited NA."""
    return keepalived_skew_time(BEST_BACKUP_PRIORITY) + SIGTERM_GAP_SLACK_S


def lab_keepalived_conf(seed_text: str, health_command: Sequence[str]) -> tuple[str, list[str]]:
    """The seed's keepalived.conf as the lab runs it, and what was changed, one line each.

    Only what the lab must change: the mail and SNMP lines go (no mail server or SNMP agent in
    the lab), and the health check's `script` calls the lab agent's endpoint (the seed's
    `curl GET http://localhost:80/healthz` would first look up a host named `GET`, a DNS query
    the namespaces have no server for). Interface names, addresses, priorities, unicast peers,
    `nopreempt`, `script_user`, `router_id` (machine-b's `machine-c` too) stay as deployed.
    """
    out: list[str] = []
    changes: list[str] = []
    in_email_block = False
    for line in seed_text.splitlines():
        words = line.split()
        if in_email_block:
            if words[:1] == ["}"]:
                in_email_block = False
            continue
        if words[:2] == ["notification_email", "{"]:
            in_email_block = True
            changes.append("dropped the notification_email block (no mail server in the lab)")
            continue
        if words and words[0] in _DROPPED_KEYWORDS:
            change = f"dropped `{line.strip()}`"
            if change not in changes:
                changes.append(change)
            continue
        if words and words[0] == "script":
            command = " ".join(health_command)
            out.append(f'  script "{command}"')
            changes.append(f'health check: `{line.strip()}` -> `script "{command}"`')
            continue
        out.append(line)
    return "\n".join(out) + "\n", changes


# ---- two holders


@dataclass(frozen=True)
class Overlap:
    """A time when several nodes held one address (seconds since the rehearsal started)."""

    address: str
    nodes: tuple[str, ...]
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        """How long the address had several holders."""
        return self.end_s - self.start_s


_MONITOR_LINE = re.compile(
    r"^\[(?P<ts>[^\]]+)\] (?P<deleted>Deleted )?\d+: \S+\s+inet6? (?P<addr>[0-9a-fA-F:.]+)/"
)


class AddressWatch:
    """`ip -ts monitor address` in every node namespace, logged to the lab's temp dir: every
    address added or deleted, with the time the kernel's notification was read."""

    def __init__(self, lab: Lab, addresses: Iterable[str]) -> None:
        self.lab = lab
        self.addresses = set(addresses)
        self._procs: dict[str, Proc] = {}
        self._initial: dict[str, set[str]] = {}
        self.started_at = 0.0

    def log_path(self, node: str) -> Path:
        """Where the monitor of `node` writes."""
        return self.lab.tmp / f"ipmon-{node}.log"

    def start(self) -> AddressWatch:
        """Start the monitors, then take what every node holds now as the initial state."""
        for n in self.lab.nodes:
            argv = ["ip", "-ts", "-n", self.lab.ns(n), "monitor", "address"]
            self._procs[n] = spawn(f"ipmon-{n}", argv, log=self.log_path(n))
        time.sleep(0.2)  # the monitors subscribe before the first change we care about
        self.started_at = time.time()
        self._initial = {
            n: {a for a in self.lab.addresses(n) if a in self.addresses} for n in self.lab.nodes
        }
        return self

    def stop(self) -> None:
        """Stop the monitors (by pid). Safe to call twice."""
        for proc in self._procs.values():
            terminate(proc, grace=2.0)
        self._procs.clear()

    def events(self) -> list[tuple[float, str, str, bool]]:
        """(time.time(), node, address, added) for every change of a watched address."""
        found: list[tuple[float, str, str, bool]] = []
        for n in self.lab.nodes:
            path = self.log_path(n)
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            for line in lines:
                m = _MONITOR_LINE.match(line)
                if not m or m["addr"] not in self.addresses:
                    continue
                # `ip -ts` prints local time without a zone; .timestamp() reads it back as such.
                at = datetime.fromisoformat(m["ts"]).timestamp()
                found.append((at, n, m["addr"], m["deleted"] is None))
        return sorted(found)

    def overlaps(self, since: float, origin: float) -> list[Overlap]:
        """Every time after `since` (time.time()) when two or more nodes held one address;
        times in the result are seconds since `origin` (time.time())."""
        holders = {a: {n for n, held in self._initial.items() if a in held} for a in self.addresses}
        opened: dict[str, tuple[float, set[str]]] = {}
        result: list[Overlap] = []

        def update(at: float, addr: str) -> None:
            now = holders[addr]
            if len(now) >= 2:
                start, nodes = opened.get(addr, (at, set()))
                opened[addr] = (start, nodes | now)
            elif addr in opened:
                start, nodes = opened.pop(addr)
                if at > since:
                    result.append(
                        Overlap(addr, tuple(sorted(nodes)), max(start, since) - origin, at - origin)
                    )

        for at, node, addr, added in self.events():
            if added:
                holders[addr].add(node)
            else:
                holders[addr].discard(node)
            update(at, addr)
        end = time.time()
        for addr, (start, nodes) in opened.items():
            overlap = Overlap(addr, tuple(sorted(nodes)), max(start, since) - origin, end - origin)
            result.append(overlap)
        return sorted(result, key=lambda o: o.start_s)


# ---- the client's outage, per step


def outage_by_step(
    record: Path, steps: Sequence[tuple[str, int]]
) -> dict[str, tuple[float, float, dict[str, float]]]:
    """Per probed address: (total outage s, longest outage s, {step label: outage s}) from the
    prober's record (nslab.probe): every request without an answer is one probe interval
    without service. A run of unanswered requests is charged to the step under way halfway
    between the answers around it: a step's fault starts right after its mark, so the answer
    before it may still come before the mark. `steps` are (label, time.monotonic_ns()) in
    order."""
    start = interval = sent = stopped = 0
    targets: list[str] = []
    answered: dict[str, dict[int, int]] = {}
    for line in record.read_text(errors="replace").splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "B":
            start, interval, targets = int(f[1]), int(f[2]), f[3:]
            answered = {t: {} for t in targets}
        elif f[0] == "A" and len(f) == 5 and f[4] in answered:
            answered[f[4]].setdefault(int(f[2]), int(f[1]))
        elif f[0] == "E" and len(f) == 3:
            stopped, sent = int(f[1]), int(f[2])
    if not start or not sent:
        raise LabError(f"the probe record {record} is incomplete: was the probe stopped?")

    def step_of(t_ns: int) -> str:
        label = steps[0][0]
        for name, at in steps:
            if at <= t_ns:
                label = name
        return label

    result: dict[str, tuple[float, float, dict[str, float]]] = {}
    for target in targets:
        got = answered[target]
        per_step = {label: 0.0 for label, _ in steps}
        total = longest = 0
        last_t, run_len = start, 0
        for seq in range(sent + 1):
            if seq < sent and seq not in got:
                run_len += 1
                continue
            if run_len:
                after = got[seq] if seq < sent else stopped
                per_step[step_of((last_t + after) // 2)] += run_len * interval / 1e9
                total += run_len
                longest = max(longest, run_len)
                run_len = 0
            if seq < sent:
                last_t = got[seq]
        result[target] = (total * interval / 1e9, longest * interval / 1e9, per_step)
    return result


# ---- the rehearsal


@dataclass(frozen=True)
class ImportOutcome:
    """What `pyvrrp import-keepalived` said about one node's file: the seed's file as deployed
    (with SNMP, mail), and the lab's (without them) that the lab then runs."""

    node: str
    seed_exit: int  # the seed's file without --force
    seed_dropped: tuple[str, ...]
    seed_forced_exit: int  # then with --force
    seed_checked: bool  # `pyvrrp check --host` passed on what --force wrote
    exit_status: int  # the lab's file
    dropped: tuple[str, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class AddressResult:
    """What the client and the kernel saw of one address over the whole migration."""

    address: str
    outage_s: float
    longest_s: float
    per_step: dict[str, float]
    overlaps: tuple[Overlap, ...]
    split_brain: int  # the probe's view: two nodes answering interleaved (nslab.probe)

    def outage_in(self, steps: Iterable[str]) -> float:
        """The outage during `steps` (labels)."""
        return sum(self.per_step.get(label, 0.0) for label in steps)

    @property
    def two_holders(self) -> tuple[Overlap, ...]:
        """Overlaps longer than one preemption's handover (`HANDOVER_OVERLAP_S`)."""
        return tuple(o for o in self.overlaps if o.duration_s > HANDOVER_OVERLAP_S)

    @property
    def max_overlap_s(self) -> float:
        """The longest time this address had two holders (0 if never)."""
        return max((o.duration_s for o in self.overlaps), default=0.0)


@dataclass
class MigrationReport:
    """The figures of one rehearsal."""

    steps: list[tuple[str, float]] = field(default_factory=list)  # label, seconds since start
    imports: dict[str, ImportOutcome] = field(default_factory=dict)
    addresses: dict[str, AddressResult] = field(default_factory=dict)
    # Per address, the outage of its master's swap: keepalived's SIGTERM gap, and pyvrrp taking
    # the VIP back.
    sigterm_gaps: dict[str, float] = field(default_factory=dict)
    bound_s: float = field(default_factory=sigterm_gap_bound)
    # Where each node's daemon log ended once every node had spoken VRRPv3 only for 3 s.
    log_marks: dict[str, int] = field(default_factory=dict)
    # The steps of the rollback (a node back to keepalived, then to pyvrrp again): not part
    # of the migration's outage, measured on their own.
    rollback_steps: list[str] = field(default_factory=list)
    # `pyvrrp status` of each node right after its swap, and `pyvrrp status --json` then and
    # at the end (every node on VRRPv3 for 3 s or more).
    status: dict[str, str] = field(default_factory=dict)
    status_json: dict[str, Any] = field(default_factory=dict)
    final_status_json: dict[str, Any] = field(default_factory=dict)

    def migration_outage(self, address: str) -> float:
        """The client's outage of `address` over the migration, the rollback left out."""
        result = self.addresses[address]
        return result.outage_s - result.outage_in(self.rollback_steps)

    duration_s: float = 0.0

    def failures(self) -> list[str]:
        """The goals not met, one line each (empty: the migration met its goals)."""
        problems = []
        for a in self.addresses.values():
            migration = self.migration_outage(a.address)
            if migration > self.bound_s:
                worst = max(a.per_step, key=lambda s: a.per_step[s])
                problems.append(
                    f"{a.address}: {migration:.3f} s without service over the migration, more "
                    f"than one keepalived SIGTERM gap ({self.bound_s:.3f} s); worst step: "
                    f"{worst} ({a.per_step[worst]:.3f} s)"
                )
            rollback = a.outage_in(self.rollback_steps)
            if rollback > self.bound_s:
                problems.append(
                    f"{a.address}: {rollback:.3f} s without service in the rollback, more than "
                    f"one keepalived SIGTERM gap ({self.bound_s:.3f} s)"
                )
            for o in a.two_holders:
                problems.append(
                    f"{a.address}: held by {' and '.join(o.nodes)} for {o.duration_s:.3f} s "
                    f"at {o.start_s:.2f} s"
                )
            if a.split_brain:
                problems.append(f"{a.address}: the client was answered by two nodes in turn")
        return problems

    def step_at(self, at_s: float) -> str:
        """The label of the step under way `at_s` seconds after the start."""
        label = self.steps[0][0] if self.steps else ""
        for name, start in self.steps:
            if start <= at_s:
                label = name
        return label

    def format(self) -> str:
        """The per-address table and the per-step outages."""
        lines = [
            f"{'address':<26} {'migration':>9} {'rollback':>8} {'longest':>8} {'overlaps':>8} "
            f"{'max ovl':>8} {'2 holders':>9}",
        ]
        for a in self.addresses.values():
            lines.append(
                f"{a.address:<26} {self.migration_outage(a.address) * 1000:>7.0f}ms "
                f"{a.outage_in(self.rollback_steps) * 1000:>6.0f}ms {a.longest_s * 1000:>6.0f}ms "
                f"{len(a.overlaps):>8} {a.max_overlap_s * 1000:>6.1f}ms {len(a.two_holders):>9}"
            )
        overlaps = sorted((o for a in self.addresses.values() for o in a.overlaps), key=_start)
        if overlaps:
            lines.append("every overlap (two holders for a moment: a handover, see above):")
        for o in overlaps:
            lines.append(
                f"  {o.address:<26} {'+'.join(o.nodes):<5} {o.duration_s * 1000:>6.1f}ms at "
                f"{o.start_s:6.2f}s ({self.step_at(o.start_s)})"
            )
        lines.append("outage per step (ms), addresses in the order above:")
        for label, _ in self.steps:
            row = [a.per_step.get(label, 0.0) for a in self.addresses.values()]
            if any(row):
                lines.append(f"  {label:<34} " + " ".join(f"{v * 1000:>5.0f}" for v in row))
        return "\n".join(lines)


class Rehearsal:
    """Runs the migration on a lab that is up with no daemon running (see the module doc).

    `say` prints a timeline line, `more` an indented detail (both default to nothing)."""

    def __init__(
        self,
        lab: Lab,
        *,
        say: Callable[[str], None] | None = None,
        more: Callable[[str], None] | None = None,
        seed_data: Path = SEED_DATA,
        settle_s: float = 1.0,
        rollback: str | None = None,
    ) -> None:
        self.lab = lab
        self.say = say or (lambda _text: None)
        self.more = more or (lambda _text: None)
        self.seed_data = seed_data
        self.settle_s = settle_s
        self.rollback = rollback
        self.report = MigrationReport()
        self._etc_netns: list[Path] = []
        self._lab_texts: dict[str, str] = {}
        self._start_ns = time.monotonic_ns()
        self._steps: list[tuple[str, int]] = []

    # ---- helpers

    def step(self, label: str, *, rollback: bool = False) -> None:
        """Start a step of the timeline: outages are charged to the current step."""
        if rollback:
            self.report.rollback_steps.append(label)
        now = time.monotonic_ns()
        self._steps.append((label, now))
        self.report.steps.append((label, (now - self._start_ns) / 1e9))
        self.say(label)

    def pyvrrp(
        self, *args: str, node: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`pyvrrp ARGS` with the lab's interpreter (the project's virtualenv), on `node` (in
        its namespace, where `vswitch` names table 100) or on the machine."""
        argv = [python(), "-m", "pyvrrp", *args]
        done = subprocess.run(
            ns_argv(self.lab.ns(node), argv) if node else argv,
            capture_output=True,
            text=True,
            env=python_env(),
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise LabError(
                f"`pyvrrp {' '.join(args)}` exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return done

    def status_json(self, node: str) -> Any:
        """`pyvrrp status --json` of `node`'s daemon, parsed."""
        done = self.pyvrrp("status", "--json", "-c", str(self.node_toml(node)), node=node)
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise LabError(f"`pyvrrp status --json` on {node} printed no JSON: {exc}") from exc

    def node_toml(self, node: str) -> Path:
        """Where `node`'s imported node.toml lives (what pyvrrp runs and reloads)."""
        return self.lab.node_dir(node) / "node.toml"

    def keepalived_conf(self, node: str) -> Path:
        """The keepalived.conf `node`'s keepalived runs (written by `Lab.start`)."""
        return self.lab.node_dir(node) / "keepalived.conf"

    def set_version(self, node: str, version: int) -> None:
        """The operator's edit: `sed -i 's/^version = .*/version = VERSION/' node.toml`."""
        path = self.node_toml(node)
        run(["sed", "-i", f"s/^version = .*/version = {version}/", str(path)])
        self.expect_version(node, int(version))

    def expect_version(self, node: str, want: object) -> None:
        """LabError unless every instance of `node`'s node.toml says `version = want`."""
        path = self.node_toml(node)
        instances = tomllib.loads(path.read_text()).get("instances", {})
        wrong = [name for name, inst in instances.items() if inst.get("version") != want]
        if not instances or wrong:
            raise LabError(f"{path}: version {want!r} not set on instances {wrong}")

    def wait_seed_table(self, probe: Probe, timeout: float) -> None:
        """Wait until each address is held by its master alone and the client reaches it."""
        expected = self.lab.expected_holders()
        self.lab.wait_holders(expected, timeout)
        for addr, nodes in expected.items():
            probe.wait_answered_by(addr, nodes[0], timeout=timeout)

    # ---- the node's surroundings: routing table names, hooks, firewall

    def name_vswitch_table(self) -> None:
        """Make `vswitch` name the lab's table 100 in every node namespace, as the seed's
        /etc/iproute2/rt_tables does: `ip netns exec` mounts /etc/netns/NS/iproute2 over
        /etc/iproute2 for what it runs (the daemons, the hooks, `pyvrrp check`). Removed by
        `forget_vswitch_table`."""
        for n in self.lab.nodes:
            etc = Path("/etc/netns") / self.lab.ns(n)
            self._etc_netns.append(etc)
            if Path("/etc/iproute2").is_dir():
                shutil.copytree(
                    "/etc/iproute2", etc / "iproute2", symlinks=True, dirs_exist_ok=True
                )
            (etc / "iproute2" / "rt_tables.d").mkdir(parents=True, exist_ok=True)
            table = self.lab.cluster.routing_table
            (etc / "iproute2" / "rt_tables.d" / "vswitch.conf").write_text(f"{table} vswitch\n")

    def forget_vswitch_table(self) -> None:
        """Undo `name_vswitch_table` (only the lab's own directories)."""
        for etc in self._etc_netns:
            shutil.rmtree(etc, ignore_errors=True)
        self._etc_netns.clear()
        with contextlib.suppress(OSError):
            Path("/etc/netns").rmdir()  # only if empty: someone else's stay

    def run_hooks(self, node: str) -> None:
        """The seed's if-up.d hooks, as ifupdown runs them at boot (`IFACE=--all`)."""
        for hook in HOOKS:
            script = SEED_HOOKS / "if-up.d" / hook
            argv = ns_argv(self.lab.ns(node), ["env", "IFACE=--all", "bash", str(script)])
            run(argv)

    def firewall(self, node: str) -> list[str]:
        """The host firewall of docs/migrating-from-keepalived.md: VRRP (IP protocol 112)
        accepted from the unicast peers, with nftables (iptables on node B, so both of the
        guide's examples are rehearsed). The lab's input policy stays accept (the probe and
        the health check need it), so a last rule drops every other VRRP packet, as a drop
        policy would: the migration then runs through exactly these rules."""
        own = self.lab.cluster.node(node).vswitch_ip
        peers = [n.vswitch_ip for n in self.lab.cluster.nodes if n.vswitch_ip != own]
        if node == "B":
            commands = [
                ["iptables", "-A", "INPUT", "-p", "vrrp", "-s", ",".join(peers), "-j", "ACCEPT"],
                ["iptables", "-A", "INPUT", "-p", "vrrp", "-j", "DROP"],
            ]
        else:
            commands = [
                ["nft", "add", "table", "inet", "filter"],
                ["nft", "add", "chain", "inet", "filter", "input",
                 "{ type filter hook input priority 0; policy accept; }"],
                ["nft", "add", "rule", "inet", "filter", "input",
                 "ip", "saddr", f"{{ {', '.join(peers)} }}", "ip", "protocol", "vrrp", "accept"],
                ["nft", "add", "rule", "inet", "filter", "input", "ip", "protocol", "vrrp", "drop"],
            ]  # fmt: skip
        for argv in commands:
            run(ns_argv(self.lab.ns(node), argv))
        return [" ".join(a if " " not in a else f"'{a}'" for a in argv) for argv in commands]

    # ---- the steps

    def start_keepalived(self) -> None:
        """Render the lab's keepalived.conf from the seed's files and start keepalived."""
        health = self.lab.cluster.health or HealthCheckSpec()
        for n in self.lab.nodes:
            seed = self.seed_data / SEED_FILE[n]
            text, changes = lab_keepalived_conf(seed.read_text(), health.command)
            self._lab_texts[n] = text
            self.lab.start(n, "keepalived", text)
            if n == self.lab.nodes[0]:
                self.more(f"the lab's changes to the seed's files ({seed.name} shown):")
                for change in changes:
                    self.more(f"  {change}")

    def import_node(self, node: str) -> ImportOutcome:
        """`pyvrrp import-keepalived` of the seed's file as deployed (exit 1: SNMP dropped;
        then --force) and of the lab's, which the lab runs: the lab's socket and state dir,
        the hooks' routes and rules, `pyvrrp check --host`; `--vrrp-version 2+3` for both."""
        seed = self.seed_data / SEED_FILE[node]
        seed_toml = self.lab.node_dir(node) / "seed-node.toml"
        mode = ("--vrrp-version", "2+3")
        args = ("import-keepalived", str(seed), "-o", str(seed_toml), *mode)
        first = self.pyvrrp(*args, check=False)
        seed_dropped = tuple(x for x in first.stderr.splitlines() if x.startswith("dropped"))
        self.more(
            f"the seed's file as deployed: pyvrrp import-keepalived {seed.name} -o node.toml "
            f"--vrrp-version 2+3: exit {first.returncode}"
        )
        for line in seed_dropped:
            self.more(f"  {line.replace(str(seed), seed.name)}")
        forced = self.pyvrrp(*args, "--force", check=False)
        # --force writes the file and still exits 1: something was dropped.
        checked = self.pyvrrp("check", "--host", "-c", str(seed_toml), node=node, check=False)
        seed_checked = seed_toml.exists() and checked.returncode == 0
        self.more(
            f"  with --force: exit {forced.returncode}, node.toml written; "
            f"pyvrrp check --host -c node.toml: {'OK' if seed_checked else 'FAILED'}"
        )

        conf, toml = self.keepalived_conf(node), self.node_toml(node)
        toml.unlink(missing_ok=True)
        done = self.pyvrrp("import-keepalived", str(conf), "-o", str(toml), *mode, check=False)
        if done.returncode != 0 or not toml.exists():
            raise LabError(
                f"pyvrrp import-keepalived {conf} exited {done.returncode}: {done.stderr.strip()}"
            )
        stderr = done.stderr.splitlines()
        outcome = ImportOutcome(
            node=node,
            seed_exit=first.returncode,
            seed_dropped=seed_dropped,
            seed_forced_exit=forced.returncode,
            seed_checked=seed_checked,
            exit_status=done.returncode,
            dropped=tuple(x for x in stderr if x.startswith("dropped")),
            notes=tuple(x for x in stderr if x.startswith("note")),
        )
        self.more(
            f"the lab's file: pyvrrp import-keepalived keepalived.conf -o node.toml "
            f"--vrrp-version 2+3: exit {outcome.exit_status}, {len(outcome.dropped)} dropped, "
            f"{len(outcome.notes)} notes"
        )
        for line in outcome.dropped + outcome.notes:
            self.more(f"  {line.replace(str(conf), 'keepalived.conf')}")
        # Lab only: three nodes share one machine, so each gets its own socket and state dir.
        run_dir = self.lab.node_dir(node)
        (run_dir / "state").mkdir(exist_ok=True)
        lab_keys = (
            f"control_socket = {json.dumps(str(run_dir / 'pyvrrp.sock'))}\n"
            f"state_dir = {json.dumps(str(run_dir / 'state'))}\n"
        )
        text = toml.read_text()
        if "\n[global]\n" not in text:
            raise LabError(f"{toml}: the import wrote no [global] table")
        text = text.replace("\n[global]\n", f"\n[global]\n{lab_keys}", 1)
        toml.write_text(f"{text.rstrip()}\n\n{HOOK_ROUTES_TOML}")
        self.more("the if-up.d hooks' routes and rules appended as [[routes]] and [[rules]]")
        self.expect_version(node, "2+3")  # --vrrp-version 2+3: migration mode (RFC 9568 §8.4)
        summary = self.pyvrrp("check", "--host", "-c", str(toml), node=node).stdout.strip()
        self.more(f"pyvrrp check --host -c node.toml: {summary.replace(str(toml), 'node.toml')}")
        return outcome

    def run(self) -> MigrationReport:
        """The whole rehearsal; the report's `failures()` says whether it met its goals."""
        lab = self.lab
        watch = AddressWatch(lab, lab.cluster.vip_addresses()).start()
        origin = time.time() - (time.monotonic_ns() - self._start_ns) / 1e9
        try:
            self.step("the nodes as deployed: vswitch table, if-up.d hooks, VRRP firewall")
            self.name_vswitch_table()
            for node in lab.nodes:
                self.run_hooks(node)
                rules = self.firewall(node)
                self.more(f"firewall of {node}: {'; '.join(rules)}")
            self.step("keepalived 2.2.7 on A, B, C (the seed's files, VRRPv2: its default)")
            self.start_keepalived()
            lab.wait_converged(timeout=30)
            converged = time.time()
            with lab.probe() as probe:
                self.wait_seed_table(probe, timeout=10)
                self.step("converged: each node master of its VIP; client probing every 5 ms")
                for node in lab.nodes:
                    self.swap(node, probe)
                    if node == self.rollback:
                        self.roll_back(node, probe)
                for node in lab.nodes:
                    self.to_v3(node, probe)
                self.report.log_marks = {n: len(lab.log(n)) for n in lab.nodes}
                time.sleep(self.settle_s)
                self.report.final_status_json = {n: self.status_json(n) for n in lab.nodes}
                self.step("end")
            watch.stop()
            self._analyse(probe, watch, since=converged, origin=origin)
        finally:
            watch.stop()
        self.report.duration_s = (time.monotonic_ns() - self._start_ns) / 1e9
        return self.report

    def close(self) -> None:
        """Remove what the rehearsal put outside the lab (/etc/netns/NS); call after the lab
        is down (`ip netns exec` no longer runs anything there)."""
        self.forget_vswitch_table()

    def swap(self, node: str, probe: Probe) -> None:
        """`node` from keepalived to pyvrrp in migration mode."""
        self.step(f"{node}: import, 2+3, check")
        self.report.imports[node] = self.import_node(node)
        self.step(f"{node}: keepalived SIGTERM, pyvrrp started (2+3)")
        self.lab.stop(node)
        self.lab.start(node, "pyvrrp", self.node_toml(node).read_text())
        self.more("keepalived has exited; pyvrrp started")
        self.wait_seed_table(probe, timeout=15)
        time.sleep(self.settle_s)
        self.more(f"{node} is master of its VIP again, the client reaches it")
        toml = str(self.node_toml(node))
        status = self.pyvrrp("status", "-c", toml, node=node).stdout
        self.report.status[node] = status
        self.report.status_json[node] = self.status_json(node)
        self.more("pyvrrp status -c node.toml (each instance's headline and peers):")
        for line in status.splitlines():
            if line.strip() and (not line.startswith(" ") or re.search(r": v[23] ", line)):
                self.more(f"  {line}")

    def roll_back(self, node: str, probe: Probe) -> None:
        """Going back: pyvrrp stopped (it removes its routes and rules), the hooks run again,
        keepalived started; then forward again (keepalived SIGTERM, pyvrrp)."""
        self.step(f"{node}: rollback: pyvrrp SIGTERM, hooks, keepalived", rollback=True)
        self.lab.stop(node)
        self.run_hooks(node)
        self.lab.start(node, "keepalived", self._lab_texts[node])
        self.wait_seed_table(probe, timeout=15)
        time.sleep(self.settle_s)
        self.more(f"{node} runs keepalived again, master of its VIP; the others still 2+3")
        self.step(f"{node}: forward again: keepalived SIGTERM, pyvrrp", rollback=True)
        self.lab.stop(node)
        self.lab.start(node, "pyvrrp", self.node_toml(node).read_text())
        self.wait_seed_table(probe, timeout=15)
        time.sleep(self.settle_s)

    def to_v3(self, node: str, probe: Probe) -> None:
        """`node` from migration mode to VRRPv3: edit, check, reload."""
        self.step(f"{node}: version = 3, reload")
        self.set_version(node, 3)
        toml = str(self.node_toml(node))
        self.more("sed -i 's/^version = .*/version = 3/' node.toml")
        # No separate `pyvrrp check`: reload validates first and refuses a bad file (exit 2).
        reply = self.pyvrrp("reload", "-c", toml, node=node).stdout.strip()
        self.more(f"pyvrrp reload -c node.toml: {reply or 'ok'}")
        # Three advert intervals: a peer that stopped hearing this node would take over by now.
        time.sleep(3 * ADVERT_INTERVAL_S + 0.2)
        self.wait_seed_table(probe, timeout=5)

    def _analyse(self, probe: Probe, watch: AddressWatch, *, since: float, origin: float) -> None:
        final = probe.stop()
        outages = outage_by_step(probe.record, self._steps)
        overlaps = watch.overlaps(since, origin)
        for addr in self.lab.cluster.vip_addresses():
            total, longest, per_step = outages[addr]
            self.report.addresses[addr] = AddressResult(
                address=addr,
                outage_s=total,
                longest_s=longest,
                per_step=per_step,
                overlaps=tuple(o for o in overlaps if o.address == addr),
                split_brain=len(final[addr].split_brain),
            )
        for owner_addrs in _by_owner(self.lab).items():
            node, addrs = owner_addrs
            for addr in addrs:
                self.report.sigterm_gaps[addr] = self.report.addresses[addr].per_step.get(
                    f"{node}: keepalived SIGTERM, pyvrrp started (2+3)", 0.0
                )


def _start(overlap: Overlap) -> float:
    return overlap.start_s


def _by_owner(lab: Lab) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for addr, nodes in lab.expected_holders().items():
        owners.setdefault(nodes[0], []).append(addr)
    return owners
