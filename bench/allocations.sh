#!/bin/bash
# Python object allocations per advertisement, per node: two pyvrrp nodes (bench/cost_pair.sh)
# with K VRIDs, and a uprobe on CPython's PyObject_Malloc counting every call of each daemon
# for WINDOW seconds.
#
# Usage: sudo bench/allocations.sh K INTERVAL [WINDOW]      (WINDOW default 10)
#        sudo bench/allocations.sh core
#
# `core`: the core alone, in one process (no runtime, no trio): a backup's VirtualRouter.handle
# of its master's repeated advertisement (the PacketReceived event made for each, as the
# transport does), and a master's handle of its Adver_Timer's Timeout; calls per event from
# the difference between 10,000 events and none.
#
# Each node is master of K/2 VRIDs and backup of the rest, so in WINDOW seconds it sends and
# receives K/2 advertisements per interval each (at K = 1, A only sends and B only receives):
# the script prints each node's calls per advertisement it handled. A uprobe costs a trap
# per call (a microsecond or two): the daemons run slower while counted, so keep K x rate
# moderate (K = 200 at 0.1 s is too much: the backups miss their masters and flap) and
# take CPU figures from bench/cost_pair.sh or bench/scale.py, not from this run.
# Needs perf (linux-perf) and uprobes; the probe is removed on exit.
set -euo pipefail
K=${1:?K}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
REAL=$(readlink -f "$PY")
LIB=$("$REAL" -c 'import sysconfig, os; print(os.path.join(sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("INSTSONAME")))')
[ -e "$LIB" ] || LIB=$REAL  # a statically linked interpreter: the symbol is in the binary
EVENT=$(perf probe -x "$LIB" --add PyObject_Malloc 2>&1 | grep -o 'probe_[a-z0-9_]*:PyObject_Malloc' | head -1)
[ -n "$EVENT" ] || { echo "cannot add a uprobe on PyObject_Malloc in $LIB" >&2; exit 3; }
LOG=$(mktemp /tmp/pyvrrp-allocs.XXXX)
cleanup() { perf probe -d "$EVENT" >/dev/null 2>&1 || true; rm -f "$LOG" "$LOG".*; }
trap cleanup EXIT INT TERM
if [ "$K" = core ]; then
  cat > "$LOG.py" <<'PY'
import sys
from ipaddress import IPv4Address
from pyvrrp.core.events import PacketReceived, Startup, Timeout
from pyvrrp.core.packet import Advertisement, Family, encode
from pyvrrp.core.router import RouterParams, VirtualRouter
role, n = sys.argv[1], int(sys.argv[2])
vip, local, peer = (IPv4Address(a) for a in ("192.0.2.100", "192.0.2.10", "192.0.2.20"))
group = Family.IPV4.multicast_group
priority = 100 if role == "backup" else 255
router = VirtualRouter(RouterParams(vrid=1, addresses=(vip,), local_address=local, priority=priority))
now = 0
router.handle(Startup(), now)
message = encode(
    Advertisement(vrid=1, priority=200, max_advert_interval=100, addresses=(vip,)),
    source=peer, destination=group,
)
for _ in range(n + 100):  # the first 100 warm up, in both runs
    if role == "backup":
        now += 1_000_000
        router.handle(PacketReceived(message, peer, group, 255), now)
    else:
        now = router.deadline()
        router.handle(Timeout(), now)
assert router.state.name == ("BACKUP" if role == "backup" else "MASTER")
PY
  for role in backup master; do
    none=$(perf stat -x, -e "$EVENT" "$PY" "$LOG.py" $role 0 2>&1 >/dev/null | cut -d, -f1)
    many=$(perf stat -x, -e "$EVENT" "$PY" "$LOG.py" $role 10000 2>&1 >/dev/null | cut -d, -f1)
    echo "core, $role: $(( (many - none) / 10000 )) PyObject_Malloc calls per event"
  done
  exit 0
fi
IV=${2:?INTERVAL}; W=${3:-10}
SETTLE=8
"$ROOT/bench/cost_pair.sh" "$K" "$IV" "$((W + 4))" "$SETTLE" > "$LOG" 2>&1 &
PAIR=$!
for _ in $(seq 50); do grep -q "pids:" "$LOG" && break; sleep 0.1; done
read -r PA PB < <(sed -n 's/.*pids: A \([0-9]*\), B \([0-9]*\);.*/\1 \2/p' "$LOG")
sleep "$((SETTLE + 2))"
for pid in $PA $PB; do
  perf stat -x, -e "$EVENT" -p "$pid" sleep "$W" 2> "$LOG.$pid" &
done
wait "$PAIR" || true
python3 - "$K" "$IV" "$W" "$(cut -d, -f1 "$LOG.$PA")" "$(cut -d, -f1 "$LOG.$PB")" <<'PY'
import math, sys
k, interval, window, a, b = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), *map(int, sys.argv[4:])
intervals = window / interval
masters = {"A": math.ceil(k / 2), "B": k // 2}  # A is master of the odd VRIDs
for node, calls in (("A", a), ("B", b)):
    # what a node handles: its masters' adverts sent, and its peer's masters' received
    handled = intervals * (masters[node] + masters["B" if node == "A" else "A"])
    print(f"{node}: {calls} PyObject_Malloc calls in {window:g} s, "
          f"{calls / handled:.0f} per advertisement sent or received ({handled:.0f})")
PY
grep -E "state changes|intervals" "$LOG"
