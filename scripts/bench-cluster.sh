#!/usr/bin/env bash
# What decides how far one queue scales over Redis Cluster: the Redis CPU
# each primary spends per 100,000 no-op jobs (INFO used_cpu_sys + user,
# before and after), how evenly a sharded queue splits that work over the
# primaries, and the end-to-end rate, for one plain Redis (the comparison)
# and for clusters of 1, 2 and 3 primaries (no replicas), all in this run.
#
#   scripts/bench-cluster.sh                  # 3 rounds of 100,000 jobs per setup
#   ROUNDS=1 JOBS=20000 scripts/bench-cluster.sh
#
# Each round runs every setup once (single, then clusters of 1, 2 and 3),
# so all see the same machine; the summary gives medians over the rounds.
# Environment: JOBS (100000), ROUNDS (3), SHARDS_PER_PRIMARY (2), WORKERS (2),
# CONCURRENCY (64), BENCH_BIN_DIR (take the binaries from there).
# On a machine with few cores the workers and producer share the CPU with
# Redis, so the end-to-end rate is bounded by the machine; the CPU cost per
# primary is what projects the ceiling: 1 / (cost per job on the busiest
# primary) jobs/s per Redis core.
#
# Three busy Redis processes cost more per job than one on a small machine
# whatever they run, so a second part compares like with like: three
# independent plain servers and one cluster of three, each carrying three
# fleets at once (a producer of JOBS/3 jobs, a worker and a queue each; on
# the cluster each queue has 2 shards).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib.sh"
JOBS=${JOBS:-100000}
ROUNDS=${ROUNDS:-3}
PER=${SHARDS_PER_PRIMARY:-2}
WORKERS=${WORKERS:-2}
CONC=${CONCURRENCY:-64}
WORK=$(mktemp -d /tmp/jobfleet-cluster.XXXXXX)
# Servers start inside command substitutions: their pids go to a file.
cleanup() {
    local pid
    for pid in $(cat "$WORK/pids" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

bench_bins "$ROOT"
awk -v n="$JOBS" 'BEGIN { for (i = 0; i < n; i++) print "{}" }' >"$WORK/payloads"
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
cpu() { redis-cli -p "$1" info cpu | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.3f", s }'; }
calls() { redis-cli -p "$1" info commandstats | awk -F'[=,]' '/^cmdstat_evalsha:/ { print $2 }'; }

# Starts a server on a fresh port (a cluster node when $1 is "cluster");
# prints the port.
start_node() {
    local port dir
    port=$(free_port)
    dir="$WORK/$port"
    mkdir -p "$dir"
    if [ "$1" = cluster ]; then
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
            --cluster-enabled yes --cluster-config-file nodes.conf --logfile "$dir/log" >/dev/null 2>&1 &
    else
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
            --logfile "$dir/log" >/dev/null 2>&1 &
    fi
    echo $! >>"$WORK/pids"
    wait_for 10 "redis on $port to answer" "$dir/log" "$!" redis_up "$port"
    echo "$port"
}

# A cluster of $1 primaries: slots split evenly by hand (redis-cli --cluster
# create wants three at least), then every node meets the first.
start_cluster() {
    local n=$1 i from to ports=()
    for ((i = 0; i < n; i++)); do ports+=("$(start_node cluster)"); done
    for ((i = 0; i < n; i++)); do
        from=$((16384 * i / n))
        to=$((16384 * (i + 1) / n - 1))
        redis-cli -p "${ports[$i]}" cluster addslotsrange "$from" "$to" >/dev/null
        [ "$i" -gt 0 ] && redis-cli -p "${ports[$i]}" cluster meet 127.0.0.1 "${ports[0]}" >/dev/null
    done
    ok() {
        local p
        for p in "${ports[@]}"; do
            redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || return 1
            [ "$(redis-cli -p "$p" cluster info | awk -F: '/cluster_known_nodes/ { print $2+0 }')" = "$n" ] || return 1
        done
    }
    wait_for 30 "the cluster of $n to be ok" "$WORK/${ports[0]}/log" "" ok
    echo "${ports[*]}"
}

# One end-to-end run of $JOBS no-op jobs on queue "bench" with $2 shards
# against the nodes in $1 (space-separated ports); prints the rate and the
# CPU each node spent.
run() {
    local ports=($1) shards=$2 name=$3 url pids=() p i before=() e2e line total=0 scripts=0 shares=()
    url="redis://127.0.0.1:${ports[0]}"
    "$JF" --redis "$url" queue create bench --shards "$shards" >/dev/null
    for ((i = 1; i <= WORKERS; i++)); do
        "$JW" --redis "$url" -q bench --concurrency "$CONC" >"$WORK/worker-$i.log" 2>&1 &
        pids+=($!)
        echo $! >>"$WORK/pids"
    done
    "$JB" --redis "$url" ready --workers "$WORKERS" >/dev/null
    for p in "${ports[@]}"; do
        before+=("$(cpu "$p")")
        redis-cli -p "$p" config resetstat >/dev/null
    done
    e2e=$("$JB" --redis "$url" -q bench run --expect "$JOBS" --jobs "$JOBS" --stdin-file "$WORK/payloads" -- \
        "$JF" --redis "$url" submit noop --stdin -q bench)
    line="rate $(field "$e2e" e2e_per_s) jobs/s; redis cpu s per 100k jobs:"
    i=0
    for p in "${ports[@]}"; do
        local used
        used=$(python3 -c "print(round(($(cpu "$p") - ${before[$i]}) * 100000 / $JOBS, 3))")
        line="$line :$p $used"
        total=$(python3 -c "print(round($total + $used, 3))")
        scripts=$((scripts + $(calls "$p")))
        shares+=("$used")
        i=$((i + 1))
    done
    echo "$line; all primaries $total; $((scripts * 100000 / JOBS)) script calls per 100k jobs"
    echo "$name $(field "$e2e" e2e_per_s) $total $(python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(round(max(v)/ (sum(v)/len(v)), 3))" "${shares[@]}")" >>"$WORK/runs"
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}

echo "== $ROUNDS rounds of $JOBS no-op jobs per setup, $WORKERS workers x $CONC, $PER shards per primary" >&2
SINGLE=$(start_node single)
CLUSTERS=()
for n in 1 2 3; do CLUSTERS+=("$(start_cluster "$n")"); done
for ((r = 1; r <= ROUNDS; r++)); do
    echo "round $r"
    redis-cli -p "$SINGLE" flushall >/dev/null
    echo "  single redis, 1 shard:   $(run "$SINGLE" 1 single 2>/dev/null)"
    for n in 1 2 3; do
        for p in ${CLUSTERS[$((n - 1))]}; do redis-cli -p "$p" flushall >/dev/null; done
        echo "  cluster of $n, $((n * PER)) shards: $(run "${CLUSTERS[$((n - 1))]}" $((n * PER)) "cluster-$n" 2>/dev/null)"
    done
done
# Part two: three fleets at once on three plain servers, then on the
# cluster of three.
fair() {
    local name=$1 ports=($2) urls=($3) before=() pids=() p i total n=$((JOBS / 3))
    awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) print "{}" }' >"$WORK/third"
    for p in "${ports[@]}"; do redis-cli -p "$p" flushall >/dev/null; done
    for i in 0 1 2; do
        [ "$name" = cluster ] && "$JF" --redis "${urls[$i]}" queue create "fair$i" --shards 2 >/dev/null
        "$JW" --redis "${urls[$i]}" -q "fair$i" --concurrency "$CONC" >"$WORK/fair-$i.log" 2>&1 &
        pids+=($!)
        echo $! >>"$WORK/pids"
    done
    for i in 0 1 2; do "$JB" --redis "${urls[$i]}" ready --workers 1 >/dev/null; done
    for p in "${ports[@]}"; do before+=("$(cpu "$p")"); done
    local benches=()
    for i in 0 1 2; do
        "$JB" --redis "${urls[$i]}" -q "fair$i" run --expect "$n" --jobs "$n" --stdin-file "$WORK/third" -- \
            "$JF" --redis "${urls[$i]}" submit noop --stdin -q "fair$i" >/dev/null 2>&1 &
        benches+=($!)
    done
    wait "${benches[@]}"
    total=0
    i=0
    for p in "${ports[@]}"; do
        total=$(python3 -c "print($total + $(cpu "$p") - ${before[$i]})")
        i=$((i + 1))
    done
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    local per=$(python3 -c "print(round($total * 100000 / (3 * $n), 3))")
    echo "  three fleets at once on $name: redis cpu s per 100k jobs, all servers: $per"
    echo "$name $per" >>"$WORK/fair"
}
SINGLES=()
for i in 0 1 2; do SINGLES+=("$(start_node single)"); done
SINGLE_URLS="redis://127.0.0.1:${SINGLES[0]} redis://127.0.0.1:${SINGLES[1]} redis://127.0.0.1:${SINGLES[2]}"
C3=(${CLUSTERS[2]})
C3_URL="redis://127.0.0.1:${C3[0]},127.0.0.1:${C3[1]},127.0.0.1:${C3[2]}"
for ((r = 1; r <= ROUNDS; r++)); do
    echo "fair round $r"
    fair singles "${SINGLES[*]}" "$SINGLE_URLS"
    fair cluster "${CLUSTERS[2]}" "$C3_URL $C3_URL $C3_URL"
done

python3 - "$WORK/fair" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, cpu = line.split()
    rows.setdefault(name, []).append(float(cpu))
s, c = statistics.median(rows["singles"]), statistics.median(rows["cluster"])
print(f"medians, three fleets at once: three plain servers {s:.3f}, a cluster of three {c:.3f} redis cpu s per 100k jobs: {c / s:.2f}x")
PY
python3 - "$WORK/runs" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rate, cpu, skew = line.split()
    rows.setdefault(name, []).append((float(rate), float(cpu), float(skew)))
base = statistics.median(c for _, c, _ in rows["single"])
print("medians: setup, jobs/s end to end, redis cpu s per 100k jobs (all primaries), vs single, busiest primary / mean, projected ceiling (jobs/s, a core per primary)")
for name in ["single", "cluster-1", "cluster-2", "cluster-3"]:
    r = rows[name]
    rate = statistics.median(x for x, _, _ in r)
    cpu = statistics.median(c for _, c, _ in r)
    skew = statistics.median(s for _, _, s in r)
    n = 1 if name == "single" else int(name.split("-")[1])
    ceiling = n / (cpu / 100000) / skew
    print(f"  {name:10} {rate:9.0f} {cpu:6.3f} {cpu / base:5.2f}x {skew:5.3f} {ceiling:9.0f}")
PY
