#!/usr/bin/env bash
# The 60-second tour, on this machine, from a fresh clone:
#   builds release binaries; uses the Redis at $JOBFLEET_REDIS, or starts a
#   private redis-server on a free port (installing Debian's redis-server if
#   it is missing and it can); starts two workers; submits a batch of jobs
#   with --wait; shows stats; stops everything it started.
# Usage: scripts/demo.sh [JOBS]   (default 20000)
#   DEMO_PROFILE=dev builds unoptimized binaries instead (quicker to build).
# Every wait gives up within seconds with what it waited for and its log.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
JOBS=${1:-20000}
PROFILE=${DEMO_PROFILE:-release}

echo "== building $PROFILE binaries (the first build takes a few minutes)"
cargo build --profile "$PROFILE" --locked -q -p jobfleet-cli -p jobfleet-worker
if [ "$PROFILE" = dev ]; then BIN=$(target_dir)/debug; else BIN=$(target_dir)/$PROFILE; fi
need_bin "$BIN/jobfleet" "$BIN/jobfleet-worker"
echo "== binaries in $BIN"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  # Logs stay when something went wrong: the error names them.
  if [ "$status" -eq 0 ]; then rm -rf "$WORK"; else echo "(logs kept in $WORK)" >&2; fi
}
trap cleanup EXIT

if [ -n "${JOBFLEET_REDIS:-}" ]; then
  echo "== using the Redis at JOBFLEET_REDIS"
else
  if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "== installing Debian's redis-server"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
      echo "redis-server is not installed: install it (apt-get install redis-server) or set JOBFLEET_REDIS" >&2
      exit 1
    fi
  fi
  port=6390
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --logfile "$WORK/redis.log" &
  redis_pid=$!
  PIDS+=("$redis_pid")
  export JOBFLEET_REDIS="redis://127.0.0.1:$port"
  wait_for 10 "redis-server did not answer on port $port" "$WORK/redis.log" "$redis_pid" redis_up "$port"
  echo "== started a private redis-server on port $port"
fi
if ! "$BIN/jobfleet" stats >"$WORK/stats.log" 2>&1; then
  echo "error: jobfleet cannot use the Redis at $JOBFLEET_REDIS:" >&2
  sed 's/^/  | /' "$WORK/stats.log" >&2
  exit 1
fi
# A prefix of its own, so the demo never touches other data on that Redis.
export JOBFLEET_PREFIX="demo-$$"

echo "== starting two workers (logs in $WORK)"
workers=()
for i in 1 2; do
  "$BIN/jobfleet-worker" --concurrency 8 2>"$WORK/worker-$i.log" &
  PIDS+=($!)
  workers+=($!)
done
two_workers() { [ "$("$BIN/jobfleet" workers --json | grep -c '"id"')" -ge 2 ]; }
wait_for 20 "two workers did not register" "$WORK/worker-1.log and $WORK/worker-2.log" "${workers[*]}" two_workers
"$BIN/jobfleet" workers

echo
echo "== submitting $JOBS echo jobs from stdin, waiting for all of them"
seq 1 "$JOBS" | sed 's/.*/{"n": &}/' | "$BIN/jobfleet" submit echo --stdin --wait >/dev/null

echo
echo "== one job, its result, and its record"
id=$("$BIN/jobfleet" submit sleep '{"ms": 250}')
"$BIN/jobfleet" wait "$id"
"$BIN/jobfleet" status "$id"

echo
echo "== a job that fails for good (exit code 1 is expected)"
"$BIN/jobfleet" submit fail '{"message": "no such customer", "permanent": true}' --wait || true
"$BIN/jobfleet" dead list

echo
echo "== stats"
"$BIN/jobfleet" stats
