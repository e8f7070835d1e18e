#!/usr/bin/env bash
# Benchmarks jobfleet's thumbnailing against libvips' vipsthumbnail, side by
# side, on one generated photo-like corpus, at the same parallelism, three ways:
#   jobfleet e2e   a private redis-server, one jobfleet-worker with
#                  --concurrency THREADS, and `jobfleet thumbnail DIR --wait`
#                  (submit, claim, decode, resize, encode, write, ack, wait);
#   pipeline       the jobfleet-thumbnail crate alone, THREADS threads;
#   vipsthumbnail  THREADS processes.
#
#   scripts/bench-thumbnail.sh            # THREADS = nproc
#   THREADS=1 ROUNDS=5 scripts/bench-thumbnail.sh
#
# Both sides run THREADS jobs at a time, each job single-threaded, as a worker
# with --concurrency THREADS would: the crate as THREADS threads in one
# process; vipsthumbnail as THREADS processes with VIPS_CONCURRENCY=1, each
# handed an equal share of the files (so its start-up is paid THREADS times,
# not once per photo). Every output is one 256 px JPEG at quality 80.
# Wall time is the best of ROUNDS (that run's CPU time and RSS are shown);
# CPU time (user+sys) is the steadier figure on a shared machine. Peak RSS is
# GNU time's maximum resident set size (for vips, summed over its processes).
set -euo pipefail

THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-256}
QUALITY=${QUALITY:-80}
WORK=${BENCH_DIR:-/tmp/jobfleet-thumbbench}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib.sh"
TARGET=$(cd "$ROOT" && target_dir)

need_apt=()
command -v vipsthumbnail >/dev/null || need_apt+=(libvips-tools)
[ -x /usr/bin/time ] || need_apt+=(time)
command -v bc >/dev/null || need_apt+=(bc)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} with apt-get (needed for the comparison)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "building thumbbench, jobfleet and jobfleet-worker (release)" >&2
(cd "$ROOT" && cargo build --quiet --release --example thumbbench -p jobfleet-thumbnail \
    -p jobfleet-cli -p jobfleet-worker)
BIN=$TARGET/release/examples/thumbbench
JOBFLEET=$TARGET/release/jobfleet
WORKER=$TARGET/release/jobfleet-worker
need_bin "$BIN" "$JOBFLEET" "$WORKER"

# A private redis-server for the end-to-end runs, stopped on exit.
port=6400
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
mkdir -p "$WORK"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" --logfile "$WORK/redis.log" &
REDIS_PID=$!
WORKER_PID=""
trap 'kill $WORKER_PID $REDIS_PID 2>/dev/null || true' EXIT
export JOBFLEET_REDIS=redis://127.0.0.1:$port
wait_for 10 "redis-server did not answer on port $port" "$WORK/redis.log" "$REDIS_PID" redis_up "$port"

CORPUS=$WORK/corpus
if [ ! -f "$CORPUS/.complete" ]; then
    echo "generating corpus in $CORPUS (deterministic, ~220 MB)" >&2
    rm -rf "$CORPUS"
    "$BIN" gen "$CORPUS"
    touch "$CORPUS/.complete"
fi

# Prints "wall_seconds cpu_seconds peak_rss_kib" for the crate on one set.
run_ours() {
    local src=$1 out=$WORK/out-ours
    rm -rf "$out"
    /usr/bin/time -f '%M %U %S' -o "$WORK/rss-ours" \
        "$BIN" run "$src" "$out" --threads "$THREADS" --size "$SIZE" --quality "$QUALITY" >"$WORK/ours.txt"
    local seconds
    seconds=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$WORK/ours.txt")
    read -r rss user sys <<<"$(tail -n1 "$WORK/rss-ours")"
    echo "$seconds $(echo "$user + $sys" | bc -l) $rss"
}

# Prints "wall_seconds cpu_seconds peak_rss_kib" for jobfleet end to end on
# one set: the worker's CPU time over the run and its peak RSS since it started.
run_e2e() {
    local src=$1 out=$WORK/out-e2e
    rm -rf "$out"
    local cpu0 start end
    cpu0=$(worker_cpu)
    start=$(date +%s.%N)
    "$JOBFLEET" thumbnail "$src" --out "$out" --size "$SIZE" --quality "$QUALITY" --wait >/dev/null 2>"$WORK/e2e.txt" ||
        { cat "$WORK/e2e.txt" >&2; exit 1; }
    end=$(date +%s.%N)
    local rss
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$WORKER_PID/status")
    echo "$(echo "$end - $start" | bc -l) $(echo "$(worker_cpu) - $cpu0" | bc -l) $rss"
}

# The worker's user+system CPU seconds so far.
worker_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$WORKER_PID/stat"
}

start_worker() {
    "$WORKER" --concurrency "$THREADS" --allow-dir "$WORK" 2>"$WORK/worker.log" &
    WORKER_PID=$!
    worker_up() { "$JOBFLEET" workers --json | grep -q "\"pid\": $WORKER_PID"; }
    wait_for 20 "jobfleet-worker (pid $WORKER_PID) did not register" "$WORK/worker.log" "$WORKER_PID" worker_up
}

stop_worker() {
    kill -TERM "$WORKER_PID" && wait "$WORKER_PID" || true
}

# Prints "wall_seconds cpu_seconds peak_rss_kib" for vipsthumbnail on one set.
run_vips() {
    local src=$1 out=$WORK/out-vips
    rm -rf "$out" && mkdir -p "$out"
    local files=("$src"/*) i
    local start end
    start=$(date +%s.%N)
    for ((i = 0; i < THREADS; i++)); do
        local share=()
        local j
        for ((j = i; j < ${#files[@]}; j += THREADS)); do share+=("${files[j]}"); done
        [ ${#share[@]} -gt 0 ] || continue
        VIPS_CONCURRENCY=1 /usr/bin/time -f '%M %U %S' -o "$WORK/rss-vips-$i" \
            vipsthumbnail -s "$SIZE" -o "$out/%s_${SIZE}.jpg[Q=$QUALITY]" "${share[@]}" &
    done
    wait
    end=$(date +%s.%N)
    local rss=0 cpu=0 m u s
    for ((i = 0; i < THREADS; i++)); do
        [ -f "$WORK/rss-vips-$i" ] || continue
        read -r m u s <<<"$(tail -n1 "$WORK/rss-vips-$i")"
        rss=$((rss + m))
        cpu=$(echo "$cpu + $u + $s" | bc -l)
        rm -f "$WORK/rss-vips-$i"
    done
    echo "$(echo "$end - $start" | bc -l) $cpu $rss"
}

# Best (lowest) wall time of ROUNDS runs, with that run's RSS.
best_of() {
    local best="" line r
    for ((r = 0; r < ROUNDS; r++)); do
        line=$("$@")
        if [ -z "$best" ] || [ "$(echo "${line%% *} < ${best%% *}" | bc -l)" = 1 ]; then best=$line; fi
    done
    echo "$best"
}

echo
echo "jobfleet vs vipsthumbnail $(vipsthumbnail --vips-version 2>/dev/null | head -n1 || true)"
echo "$(nproc) cores, $THREADS jobs at a time, -> ${SIZE}px JPEG q$QUALITY, best of $ROUNDS"
printf '%-9s %-6s %-14s %9s %14s %13s %9s %10s\n' set photos tool photos/s wall_ms/photo cpu_ms/photo peak_MiB vs_vips
for set in jpeg12 jpeg24 png1080 webp1080; do
    src=$CORPUS/$set
    n=$(find "$src" -maxdepth 1 -type f | wc -l)
    cat "$src"/* >/dev/null # page cache warm for every side
    start_worker
    read -r e2e_s e2e_cpu e2e_rss <<<"$(best_of run_e2e "$src")"
    stop_worker
    read -r ours_s ours_cpu ours_rss <<<"$(best_of run_ours "$src")"
    read -r vips_s vips_cpu vips_rss <<<"$(best_of run_vips "$src")"
    for tool in e2e ours vips; do
        case $tool in
            e2e) s=$e2e_s cpu=$e2e_cpu rss=$e2e_rss name="jobfleet e2e" ;;
            ours) s=$ours_s cpu=$ours_cpu rss=$ours_rss name="pipeline" ;;
            vips) s=$vips_s cpu=$vips_cpu rss=$vips_rss name="vipsthumbnail" ;;
        esac
        ratio=$(printf '%.2fx' "$(echo "$vips_s / $s" | bc -l)")
        # wall_ms/photo is per core: wall time x jobs at a time / photos.
        printf '%-9s %-6s %-14s %9.1f %14.1f %13.1f %9.1f %10s\n' "$set" "$n" "$name" \
            "$(echo "$n / $s" | bc -l)" "$(echo "$s * $THREADS * 1000 / $n" | bc -l)" \
            "$(echo "$cpu * 1000 / $n" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$ratio"
    done
done
echo "vs_vips: vipsthumbnail wall time / this row's wall time (above 1 = faster than vips)."
echo "jobfleet e2e peak_MiB is the whole worker process (all $THREADS concurrent jobs)."
