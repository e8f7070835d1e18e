#!/usr/bin/env bash
# The cost of durable writes: enqueue and end-to-end throughput of no-op jobs
# with --replicas 0 and --replicas 1, on a private primary with one replica
# (both on this machine), alternating the two settings round by round so
# both see the same machine.
#
#   scripts/bench-replicas.sh                 # 3 rounds of 50,000 jobs
#   ROUNDS=1 JOBS=10000 scripts/bench-replicas.sh
#
# Prints one line per run and the medians, with the ratio replicas 1 / 0.
# Environment: JOBS (50000), ROUNDS (3), WORKERS (2), CONCURRENCY (64),
# BENCH_BIN_DIR (take the binaries from there instead of building).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib.sh"
JOBS=${JOBS:-50000}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-2}
CONC=${CONCURRENCY:-64}
WORK=$(mktemp -d /tmp/jobfleet-replicas.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

bench_bins "$ROOT"

PRIMARY=$(free_port)
REPLICA=$(free_port)
redis-server --port "$PRIMARY" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --logfile "$WORK/primary.log" &
PIDS+=($!)
wait_for 10 "the primary to answer" "$WORK/primary.log" "$!" redis_up "$PRIMARY"
redis-server --port "$REPLICA" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --replicaof 127.0.0.1 "$PRIMARY" --logfile "$WORK/replica.log" &
PIDS+=($!)
wait_for 10 "the replica to answer" "$WORK/replica.log" "$!" redis_up "$REPLICA"
in_sync() { redis-cli -p "$PRIMARY" info replication | grep -q 'state=online'; }
wait_for 20 "the replica to sync" "$WORK/replica.log" "" in_sync
URL=redis://127.0.0.1:$PRIMARY
awk -v n="$JOBS" 'BEGIN { for (i = 0; i < n; i++) print "{}" }' >"$WORK/payloads"

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# One round with --replicas $1: enqueue alone, then end to end.
round() {
    local n=$1 pids=() i enqueue e2e
    redis-cli -p "$PRIMARY" flushall >/dev/null
    in_sync || sleep 1
    enqueue=$("$JB" --redis "$URL" run --jobs "$JOBS" --stdin-file "$WORK/payloads" -- \
        "$JF" --redis "$URL" --replicas "$n" submit noop --stdin)
    redis-cli -p "$PRIMARY" flushall >/dev/null
    for ((i = 1; i <= WORKERS; i++)); do
        "$JW" --redis "$URL" --replicas "$n" --concurrency "$CONC" >"$WORK/worker-$n-$i.log" 2>&1 &
        pids+=($!)
        PIDS+=($!)
    done
    "$JB" --redis "$URL" ready --workers "$WORKERS" >/dev/null
    e2e=$("$JB" --redis "$URL" run --expect "$JOBS" --jobs "$JOBS" --stdin-file "$WORK/payloads" -- \
        "$JF" --redis "$URL" --replicas "$n" submit noop --stdin)
    for i in "${pids[@]}"; do kill -TERM "$i" 2>/dev/null || true; done
    for i in "${pids[@]}"; do wait "$i" 2>/dev/null || true; done
    echo "replicas $n: enqueue $(field "$enqueue" enqueue_per_s) jobs/s, end to end $(field "$e2e" e2e_per_s) jobs/s" >&2
    echo "$n $(field "$enqueue" enqueue_per_s) $(field "$e2e" e2e_per_s)" >>"$WORK/runs"
}

echo "== $ROUNDS rounds of $JOBS no-op jobs, $WORKERS workers x $CONC, primary :$PRIMARY, replica :$REPLICA" >&2
for ((r = 1; r <= ROUNDS; r++)); do
    round 0
    round 1
done
python3 - "$WORK/runs" <<'PY'
import statistics, sys
runs = [line.split() for line in open(sys.argv[1])]
med = {}
for n in ("0", "1"):
    rows = [r for r in runs if r[0] == n]
    med[n] = (statistics.median(float(r[1]) for r in rows), statistics.median(float(r[2]) for r in rows))
    print(f"median replicas {n}: enqueue {med[n][0]:,.0f} jobs/s, end to end {med[n][1]:,.0f} jobs/s")
print(f"replicas 1 / replicas 0: enqueue {med['1'][0] / med['0'][0]:.2f}x, end to end {med['1'][1] / med['0'][1]:.2f}x")
PY
