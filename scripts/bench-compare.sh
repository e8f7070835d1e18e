#!/usr/bin/env bash
# Two builds side by side in one command: the no-op end-to-end run and the
# one-at-a-time latency probe of scripts/bench.sh, for each build in turn,
# ROUNDS times (alternating, so drift on a shared machine hits both), then
# the medians and the ratios new/old. What it answers: does a change cost
# Redis time per job, throughput or latency?
#
#   scripts/bench-compare.sh OLD_BIN_DIR NEW_BIN_DIR [ROUNDS]
#
# Each BIN_DIR holds release builds of jobfleet, jobfleet-worker and
# jobfleet-bench, e.g. for an older commit REV:
#   git worktree add /tmp/old REV
#   (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old/target cargo build --release --locked \
#      -p jobfleet-cli -p jobfleet-worker -p jobfleet-bench)
#   scripts/bench-compare.sh /tmp/old/target/release target/release 3
#
# Environment: BENCH_JOBS (200000), BENCH_LATENCY_JOBS (1000), as for bench.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ $# -lt 2 ]; then
    echo "usage: scripts/bench-compare.sh OLD_BIN_DIR NEW_BIN_DIR [ROUNDS]" >&2
    exit 2
fi
OLD=$(cd "$1" && pwd)
NEW=$(cd "$2" && pwd)
ROUNDS=${3:-3}
OUT=$(mktemp -d)

for round in $(seq 1 "$ROUNDS"); do
    for side in old new; do
        bin=$OLD
        [ "$side" = new ] && bin=$NEW
        dir="$OUT/$side-$round"
        mkdir -p "$dir"
        echo "== round $round: $side ($bin)"
        BENCH_ONLY="e2e latency" BENCH_SIDEKIQ=0 BENCH_BULLMQ=0 BENCH_BIN_DIR="$bin" BENCH_DIR="$dir" \
            "$ROOT/scripts/bench.sh" >"$dir/log" 2>&1 || { cat "$dir/log"; exit 1; }
    done
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def figures(side):
    rows = []
    for r in range(1, rounds + 1):
        res = json.load(open(f"{out}/{side}-{r}/results.json"))
        e2e = res["e2e"]
        jobs = res["machine"]["jobs"]
        usec = e2e["commandstats"].get("evalsha", {}).get("usec", 0)
        rows.append({
            "jobs/s end to end": e2e["e2e_per_s"],
            "Redis us per job (EVALSHA)": usec / jobs,
            "latency p50 ms": res["latency"]["total"]["p50_ms"],
            "latency p99 ms": res["latency"]["total"]["p99_ms"],
        })
    return rows
old, new = figures("old"), figures("new")
print(f"\n{rounds} rounds each, medians (each run: " + ", ".join(str(round(r['jobs/s end to end'])) for r in new) + " jobs/s new)")
print("| figure | old | new | new / old |")
print("|---|---|---|---|")
for key in old[0]:
    o = statistics.median(r[key] for r in old)
    n = statistics.median(r[key] for r in new)
    print(f"| {key} | {o:,.2f} | {n:,.2f} | {n / o:.3f} |")
EOF
echo "(runs in $OUT)"
