#!/bin/bash
# Cost of two pyvrrp nodes idling with K VRIDs: CPU, context switches, RSS, advert intervals.
#
# Usage: sudo bench/cost_pair.sh K INTERVAL WINDOW [SETTLE]
#   PYVRRP_TREE=/path/to/a/checkout's/parent-of-pyvrrp  runs that tree's pyvrrp instead
#   (e.g. `git archive COMMIT pyvrrp | tar -x -C /tmp/old`, then PYVRRP_TREE=/tmp/old).
#
# Two namespaces (pyvrrp-costA, pyvrrp-costB) joined by one veth pair, K instances (VRIDs
# 1..K, one IPv4 VIP each, multicast): A is master of the odd VRIDs (priority 150 against
# 100), B of the even ones. After SETTLE seconds (default 15) it measures WINDOW seconds:
# CPU time of every thread of each daemon (/proc/PID/task/*/schedstat, ns), voluntary and
# involuntary context switches (/proc/PID/task/*/status), VmRSS at the end, state changes
# logged during the window (should be 0), and the interval between consecutive adverts of
# each of A's VRIDs as B's side of the veth receives them (tcpdump, kernel timestamps).
# Everything it starts is stopped by pid and both namespaces are removed on exit.
# bench/scale.py is the full comparison with keepalived; this is the quick loop for
# profiling one change (py-spy record --native --threads -p PID while it runs).
set -euo pipefail
K=${1:?K}; IV=${2:?INTERVAL}; W=${3:?WINDOW}; SETTLE=${4:-15}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
TREE=${PYVRRP_TREE:-}
RUN=$(mktemp -d /tmp/pyvrrp-cost.XXXX)
A=pyvrrp-costA; B=pyvrrp-costB
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 1
  ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT INT TERM
ip netns add $A; ip netns add $B
ip link add costa type veth peer name costb
ip link set costa netns $A; ip link set costb netns $B
ip -n $A link set costa name eth0; ip -n $B link set costb name eth0
ip -n $A addr add 192.168.250.1/24 dev eth0; ip -n $B addr add 192.168.250.2/24 dev eth0
for ns in $A $B; do ip -n $ns link set eth0 up; ip -n $ns link set lo up; done
for node in A B; do
  mkdir -p "$RUN/$node"
  {
    printf '[global]\nrouter_id = "%s"\ncontrol_socket = "%s"\nstate_dir = "%s"\n\n' \
      "$node" "$RUN/$node/pyvrrp.sock" "$RUN/$node/state"
    for v in $(seq 1 "$K"); do
      if [ $((v % 2)) = 1 ]; then master=A; else master=B; fi
      if [ $master = $node ]; then prio=150; else prio=100; fi
      printf '[instances.v%d]\ninterface = "eth0"\nvrid = %d\npriority = %d\n' "$v" "$v" "$prio"
      printf 'advert_interval = %s\naddresses = ["198.18.%d.1/32"]\n\n' "$IV" "$v"
    done
  } > "$RUN/$node/node.toml"
done
cd "$RUN"  # python -m puts the working directory first on sys.path: not a checkout
ip netns exec $A env PYTHONPATH="$TREE" "$PY" -m pyvrrp -c "$RUN/A/node.toml" 2>"$RUN/A/log" &
PA=$!; PIDS+=($PA)
ip netns exec $B env PYTHONPATH="$TREE" "$PY" -m pyvrrp -c "$RUN/B/node.toml" 2>"$RUN/B/log" &
PB=$!; PIDS+=($PB)
echo "# pids: A $PA, B $PB; load $(cut -d' ' -f1-3 /proc/loadavg)"
sleep "$SETTLE"
# CPU ns and context switches of every thread of each daemon over W seconds, sampled every
# 0.5 s: a thread that ends during the window (trio's workers exit after 10 s idle) keeps
# what it used, and one that starts counts from zero (as bench/scale.py's TaskMeter).
meter() {
  python3 - "$W" "$@" <<'PY'
import pathlib, sys, time
window, pids = float(sys.argv[1]), sys.argv[2:]
first, last = {}, {}
def sample(initial):
    for pid in pids:
        try:
            tasks = list(pathlib.Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                ns = int((task / "schedstat").read_text().split()[0])
                cs = sum(int(l.split()[1]) for l in (task / "status").read_text().splitlines()
                         if "ctxt_switches:" in l)
            except (OSError, ValueError):
                continue
            key = (pid, task.name)
            first.setdefault(key, (ns, cs) if initial else (0, 0))
            last[key] = (ns, cs)
sample(True)
end = time.monotonic() + window
while (left := end - time.monotonic()) > 0:
    time.sleep(min(left, 0.5))
    sample(False)
for pid in pids:
    keys = [k for k in last if k[0] == pid]
    print(pid, sum(last[k][0] - first[k][0] for k in keys), sum(last[k][1] - first[k][1] for k in keys))
PY
}
transitions() { cat "$RUN/A/log" "$RUN/B/log" | grep -c " -> " || true; }
ip netns exec $B timeout "$W" tcpdump -i eth0 -n -tt -Q in -w "$RUN/adverts.pcap" \
  'ip proto 112' 2>/dev/null &
PT=$!
t1=$(transitions); usage=$(meter $PA $PB); t2=$(transitions)
wait $PT || true
python3 - "$usage" "$W" "$((t2 - t1))" "$RUN/adverts.pcap" <<'PY'
import re, subprocess, sys
usage, window, changes, pcap = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
for name, line in zip("AB", usage.splitlines()):
    pid, ns, cs = line.split()
    cpu = int(ns) / 1e9
    rss = next(l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")).split()[1]
    print(f"{name}: CPU {cpu:.3f} s ({100 * cpu / window:.2f} %), "
          f"context switches {int(cs) / window:.0f}/s, RSS {int(rss) / 1024:.1f} MB")
print(f"state changes in the window: {changes}")
out = subprocess.run(["tcpdump", "-r", pcap, "-n", "-tt"], capture_output=True, text=True).stdout
last, gaps = {}, []
for line in out.splitlines():
    m = re.search(r"vrid (\d+)", line)
    if m:
        t, v = float(line.split()[0]), int(m.group(1))
        if v in last:
            gaps.append((t - last[v]) * 1000)
        last[v] = t
gaps.sort()
if gaps:
    print(f"A's advert intervals: n {len(gaps)}, p50 {gaps[len(gaps) // 2]:.1f}, "
          f"p99 {gaps[int(len(gaps) * 0.99)]:.1f}, max {gaps[-1]:.1f} ms")
PY
