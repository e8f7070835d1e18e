#!/usr/bin/env bash
# How long a failover stalls the fleet: runs the failover tests (a primary,
# two replicas, three sentinels, a steady load of submits and jobs; see
# tests/failover.rs) ROUNDS times and prints, per fault, the longest time
# without an acknowledged submit after the fault: p50 and max.
#
#   scripts/failover.sh            # 5 rounds, a few minutes
#   ROUNDS=2 scripts/failover.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-5}
LOG=$(mktemp /tmp/jobfleet-failover.XXXXXX)
for ((r = 1; r <= ROUNDS; r++)); do
    echo "== round $r of $ROUNDS" >&2
    cargo test --locked -q -p jobfleet-e2e --test failover -- --nocapture 2>&1 | tee -a "$LOG" |
        grep -E 'stalled|test result' >&2
done
python3 - "$LOG" <<'PY'
import re, statistics, sys
stalls = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+) with --replicas (\d+): .* submits stalled ([0-9.]+)(ms|s|µs),", line)
    if m:
        value = float(m.group(3)) * {"s": 1.0, "ms": 1e-3, "µs": 1e-6}[m.group(4)]
        stalls.setdefault(f"{m.group(1)} --replicas {m.group(2)}", []).append(value)
for name, values in sorted(stalls.items()):
    print(f"{name}: stall p50 {statistics.median(values):.2f} s, max {max(values):.2f} s over {len(values)} runs")
PY
