#!/usr/bin/env bash
# Throughput, latency and memory of jobfleet for no-op jobs, with Sidekiq
# measured side by side in the same run, each on its own private Redis.
#
#   scripts/bench.sh                    # full run, a few minutes
#   BENCH_QUICK=1 scripts/bench.sh      # smaller N everywhere, under a minute
#
# What it reports (every figure also lands in $BENCH_DIR/results.json):
#   enqueue    `jobfleet submit noop --stdin` of BENCH_JOBS `{}` lines, no workers
#   memory     Redis used_memory per pending no-op job (BENCH_MEMORY_JOBS backlog),
#              and per job left behind by the completed-record retention after a run
#   e2e        BENCH_WORKERS idle `jobfleet-worker --concurrency BENCH_CONCURRENCY`
#              processes, then the same submit: jobs/s from the start of the submit
#              to the last completion (the queue's completed counter, polled)
#   scaling    e2e with each worker count in BENCH_SCALE
#   latency    submit -> completion event seen by the producer, one job at a time on
#              an idle fleet, BENCH_LATENCY_JOBS jobs (jobfleet-bench latency)
#   backlog    drain rate of a prefilled backlog of each size in BENCH_BACKLOGS:
#              flat when claim and ack are O(1) in the backlog
#   sidekiq    the same N through Sidekiq (Debian's ruby-sidekiq): push_bulk in
#              batches of 1,000 (and Redis bytes per pending job), and two
#              `sidekiq -c 10` processes draining it, then end to end (BENCH_SIDEKIQ=0 skips)
#   bullmq     latency reference: the same one-at-a-time probe against BullMQ from
#              npm, installed into BENCH_NODE_DIR (BENCH_BULLMQ=0 skips; on when
#              node and npm are there)
# Per phase it also records Redis' commandstats (EVALSHA calls and usec per
# call) and the CPU seconds of Redis, each worker and the submitting process.
#
# Environment: BENCH_JOBS (200000; quick 20000), BENCH_LATENCY_JOBS (1000;
# 300), BENCH_MEMORY_JOBS (100000; 20000), BENCH_BACKLOGS ("10000 100000
# 1000000"; "10000"; N is always added), BENCH_SCALE ("1 2 4"), BENCH_WORKERS (2),
# BENCH_CONCURRENCY (64, the best of 16..256 measured here), BENCH_SIDEKIQ (1),
# BENCH_BULLMQ, BENCH_ONLY (the phases to run, space-separated; default all:
# enqueue memory e2e scaling latency backlog sidekiq bullmq), BENCH_DIR (work
# and results folder; default a fresh temp folder), BENCH_BIN_DIR (take the
# binaries from there instead of building), BENCH_REDIS_SERVER (redis-server
# to run).
#
# The machine is shared and small: compare figures taken in the same run
# (the ratios), not across runs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib.sh"
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    JOBS=${BENCH_JOBS:-20000}
    LAT_JOBS=${BENCH_LATENCY_JOBS:-300}
    MEM_JOBS=${BENCH_MEMORY_JOBS:-20000}
    BACKLOGS=${BENCH_BACKLOGS:-"10000"}
else
    JOBS=${BENCH_JOBS:-200000}
    LAT_JOBS=${BENCH_LATENCY_JOBS:-1000}
    MEM_JOBS=${BENCH_MEMORY_JOBS:-100000}
    BACKLOGS=${BENCH_BACKLOGS:-"10000 100000 1000000"}
fi
SCALE=${BENCH_SCALE:-"1 2 4"}
WORKERS=${BENCH_WORKERS:-2}
CONC=${BENCH_CONCURRENCY:-64}
SIDEKIQ=${BENCH_SIDEKIQ:-1}
BULLMQ=${BENCH_BULLMQ:-$(command -v node >/dev/null && command -v npm >/dev/null && echo 1 || echo 0)}
NODE_DIR=${BENCH_NODE_DIR:-/tmp/jobfleet-bench-node}
ONLY=${BENCH_ONLY:-"enqueue memory e2e scaling latency backlog sidekiq bullmq"}
REDIS_SERVER=${BENCH_REDIS_SERVER:-redis-server}
if [ -n "${BENCH_DIR:-}" ]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/jobfleet-bench.XXXXXX)
fi
RESULTS=$WORK/results.json

say() { echo "== $*" >&2; }
wants() { [[ " $ONLY " == *" $1 "* ]]; }

# ---- everything started here is stopped on exit, error or Ctrl-C ----------
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools -------------------------------------------------------------------
need_apt=()
command -v "$REDIS_SERVER" >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v python3 >/dev/null || need_apt+=(python3)
if [ "$SIDEKIQ" = 1 ] && wants sidekiq && ! command -v sidekiq >/dev/null; then need_apt+=(ruby-sidekiq); fi
if [ ${#need_apt[@]} -gt 0 ]; then
    say "installing ${need_apt[*]} with apt-get (needed by the benchmark)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -n "${BENCH_BIN_DIR:-}" ]; then
    BIN=$BENCH_BIN_DIR
else
    say "building release binaries"
    (cd "$ROOT" && cargo build --quiet --release -p jobfleet-cli -p jobfleet-worker -p jobfleet-bench)
    BIN=$(cd "$ROOT" && target_dir)/release
fi
JF=$BIN/jobfleet
JW=$BIN/jobfleet-worker
JB=$BIN/jobfleet-bench
need_bin "$JF" "$JW" "$JB"

# ---- a private redis-server on a free port -----------------------------------
port_free() { ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts redis-server; sets REDIS_PORT, REDIS_PID, REDIS_URL.
start_redis() {
    local name=$1 try
    for try in 1 2 3 4 5; do
        REDIS_PORT=$((20000 + RANDOM % 20000))
        port_free "$REDIS_PORT" || continue
        "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$WORK" --logfile "$WORK/redis-$name.log" &
        REDIS_PID=$!
        PIDS+=("$REDIS_PID")
        # Ours, not a server that took the port meanwhile (this script FLUSHALLs).
        for _ in $(seq 100); do
            if [ "$(redis-cli -p "$REDIS_PORT" info server 2>/dev/null |
                sed -n 's/^process_id:\([0-9]*\).*/\1/p')" = "$REDIS_PID" ]; then
                REDIS_URL=redis://127.0.0.1:$REDIS_PORT
                return 0
            fi
            kill -0 "$REDIS_PID" 2>/dev/null || break
            sleep 0.05
        done
        kill "$REDIS_PID" 2>/dev/null || true
    done
    echo "could not start $REDIS_SERVER (see $WORK/redis-$name.log)" >&2
    exit 1
}
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
reset_redis() { rcli flushall >/dev/null; rcli config resetstat >/dev/null; }
used_memory() { rcli info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
# INFO commandstats as JSON {cmd: {calls, usec}}.
cmdstats() {
    rcli info commandstats | python3 -c '
import json, sys
out = {}
for line in sys.stdin:
    if line.startswith("cmdstat_"):
        name, rest = line.strip()[8:].split(":", 1)
        f = dict(kv.split("=") for kv in rest.split(","))
        out[name] = {"calls": int(f["calls"]), "usec": int(f["usec"])}
print(json.dumps(out))'
}

# ---- workers -----------------------------------------------------------------
WORKER_PIDS=()
start_workers() {
    local n=$1 i
    for ((i = 1; i <= n; i++)); do
        "$JW" --redis "$REDIS_URL" --concurrency "$CONC" >"$WORK/worker-$i.log" 2>&1 &
        WORKER_PIDS+=($!)
        PIDS+=($!)
    done
    "$JB" --redis "$REDIS_URL" ready --workers "$n" >/dev/null ||
        { echo "error: $n workers did not register; see $WORK/worker-*.log" >&2; exit 1; }
}
stop_workers() {
    local pid
    for pid in "${WORKER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${WORKER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    WORKER_PIDS=()
}
# CPU ticks (utime + stime, 1/100 s) a process has used.
proc_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
worker_pid_args() {
    local i=0 pid
    for pid in "${WORKER_PIDS[@]}"; do i=$((i + 1)); echo "--pid" "worker$i=$pid"; done
}

# Records one result: record KEY JSON.
record() { python3 "$ROOT/scripts/bench/results.py" set "$RESULTS" "$1" "$2"; }

# e2e with the current workers; prints the run's JSON (with commandstats).
timed_submit() {
    local expect=$1
    # shellcheck disable=SC2046
    "$JB" --redis "$REDIS_URL" run --expect "$expect" --jobs "$JOBS" --stdin-file "$WORK/payloads" \
        --pid "redis=$REDIS_PID" $(worker_pid_args) -- "$JF" --redis "$REDIS_URL" submit noop --stdin
}
with_cmdstats() {
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["commandstats"]=json.loads(sys.argv[2]); print(json.dumps(r))' "$1" "$(cmdstats)"
}

# ---- the run -----------------------------------------------------------------
echo '{}' >"$RESULTS"
awk -v n="$JOBS" 'BEGIN { for (i = 0; i < n; i++) print "{}" }' >"$WORK/payloads"
record machine "$(python3 -c 'import json,sys; print(json.dumps({"nproc": int(sys.argv[1]), "redis": sys.argv[2], "jobs": int(sys.argv[3]), "concurrency": int(sys.argv[4]), "workers": int(sys.argv[5])}))' \
    "$(nproc)" "$("$REDIS_SERVER" --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')" "$JOBS" "$CONC" "$WORKERS")"

start_redis jobfleet
say "jobfleet on redis $REDIS_URL, results in $WORK"

if wants enqueue; then
    say "enqueue: $JOBS no-op jobs through jobfleet submit --stdin, no workers"
    reset_redis
    r=$("$JB" --redis "$REDIS_URL" run --jobs "$JOBS" --stdin-file "$WORK/payloads" --pid "redis=$REDIS_PID" \
        -- "$JF" --redis "$REDIS_URL" submit noop --stdin)
    record enqueue "$(with_cmdstats "$r")"
fi

if wants memory; then
    say "memory: backlog of $MEM_JOBS pending no-op jobs"
    reset_redis
    record memory "$("$JB" --redis "$REDIS_URL" memory --jobs "$MEM_JOBS")"
fi

if wants e2e; then
    say "e2e: $WORKERS workers x concurrency $CONC, $JOBS jobs"
    reset_redis
    start_workers "$WORKERS"
    before=$(used_memory)
    r=$(timed_submit "$JOBS")
    record e2e "$(with_cmdstats "$r")"
    stop_workers
    after=$(used_memory)
    record retained "$(python3 -c 'import json,sys; b,a,n=map(int,sys.argv[1:]); print(json.dumps({"jobs": n, "bytes": a-b, "bytes_per_job": round((a-b)/n,1)}))' "$before" "$after" "$JOBS")"
fi

if wants scaling; then
    for n in $SCALE; do
        say "scaling: $n worker process(es) x concurrency $CONC, $JOBS jobs"
        reset_redis
        start_workers "$n"
        r=$(timed_submit "$JOBS")
        record "scaling_$n" "$(with_cmdstats "$r")"
        stop_workers
    done
fi

if wants latency; then
    say "latency: $LAT_JOBS jobs one at a time, $WORKERS idle workers"
    reset_redis
    start_workers "$WORKERS"
    record latency "$("$JB" --redis "$REDIS_URL" latency --jobs "$LAT_JOBS")"
    stop_workers
fi

if wants backlog; then
    # N itself too, for the drain-versus-drain comparison with Sidekiq.
    sizes=$(printf '%s\n' $BACKLOGS "$JOBS" | sort -n -u)
    for b in $sizes; do
        say "backlog: $b pending, then $WORKERS workers drain it"
        reset_redis
        "$JB" --redis "$REDIS_URL" memory --jobs "$b" >/dev/null
        rcli config resetstat >/dev/null
        # The watcher starts first and counts from zero, so no completion is
        # missed while the workers start; their CPU is their whole lifetime's.
        "$JB" --redis "$REDIS_URL" run --expect "$b" --baseline 0 --pid "redis=$REDIS_PID" \
            >"$WORK/backlog-$b.json" &
        watcher=$!
        PIDS+=("$watcher")
        start_workers "$WORKERS"
        wait "$watcher"
        r=$(with_cmdstats "$(cat "$WORK/backlog-$b.json")")
        record "backlog_$b" "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); w=float(r["wall_s"]); r["cpu"].update({f"worker{i}": {"cpu_s": t/100, "util": round(t/100/w, 2)} for i, t in enumerate(map(int, sys.argv[2:]), 1)}); print(json.dumps(r))' "$r" $(for p in "${WORKER_PIDS[@]}"; do proc_ticks "$p"; done))"
        stop_workers
    done
fi
kill "$REDIS_PID" && wait "$REDIS_PID" 2>/dev/null || true

if wants sidekiq && [ "$SIDEKIQ" = 1 ]; then
    start_redis sidekiq
    say "sidekiq $(sidekiq --version 2>/dev/null | head -n1 || true) on redis $REDIS_URL"
    export REDIS_URL
    SK_PIDS=()
    start_sidekiq() {
        local i
        for i in 1 2; do
            (cd "$WORK" && exec sidekiq -r "$ROOT/scripts/bench/noop_job.rb" -c 10 -q default) \
                >"$WORK/sidekiq-$i.log" 2>&1 &
            SK_PIDS+=($!)
            PIDS+=($!)
        done
    }
    stop_sidekiq() {
        local pid
        for pid in "${SK_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for pid in "${SK_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
        SK_PIDS=()
    }
    sk() { ruby "$ROOT/scripts/bench/sidekiq_bench.rb" "$@"; }

    say "sidekiq enqueue: $JOBS jobs with push_bulk (batches of 1,000)"
    reset_redis
    before=$(used_memory)
    r=$(sk enqueue "$JOBS")
    after=$(used_memory)
    record sidekiq_enqueue "$(with_cmdstats "$r")"
    record sidekiq_memory "$(python3 -c 'import json,sys; b,a,n=map(int,sys.argv[1:]); print(json.dumps({"jobs": n, "bytes_per_job": round((a-b)/n,1)}))' "$before" "$after" "$JOBS")"
    say "sidekiq drain: two sidekiq -c 10 processes"
    rcli config resetstat >/dev/null
    start_sidekiq
    record sidekiq_drain "$(with_cmdstats "$(PROCESSED_BEFORE=0 sk drain "$JOBS")")"
    say "sidekiq e2e: push_bulk into two idle sidekiq processes"
    reset_redis
    sleep 1
    record sidekiq_e2e "$(with_cmdstats "$(sk e2e "$JOBS")")"
    stop_sidekiq
    kill "$REDIS_PID" && wait "$REDIS_PID" 2>/dev/null || true
fi

if wants bullmq && [ "$BULLMQ" = 1 ]; then
    if [ ! -d "$NODE_DIR/node_modules/bullmq" ] || [ ! -d "$NODE_DIR/node_modules/ioredis" ]; then
        say "installing bullmq and ioredis with npm into $NODE_DIR (latency reference)"
        mkdir -p "$NODE_DIR"
        (cd "$NODE_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } &&
            npm install --no-audit --no-fund --silent bullmq ioredis >/dev/null)
    fi
    start_redis bullmq
    export REDIS_URL NODE_PATH=$NODE_DIR/node_modules
    say "bullmq latency: $LAT_JOBS jobs one at a time, one idle worker process (concurrency 64)"
    node "$ROOT/scripts/bench/bullmq_latency.mjs" worker >"$WORK/bullmq-worker.log" 2>&1 &
    PIDS+=($!)
    bullmq_worker=$!
    sleep 1
    record bullmq_latency "$(node "$ROOT/scripts/bench/bullmq_latency.mjs" probe "$LAT_JOBS")"
    kill -TERM "$bullmq_worker" && wait "$bullmq_worker" 2>/dev/null || true
    kill "$REDIS_PID" && wait "$REDIS_PID" 2>/dev/null || true
fi

python3 "$ROOT/scripts/bench/results.py" report "$RESULTS"
