#!/usr/bin/env bash
# The 60-second tour, on this machine, from a fresh clone:
#   builds release binaries; uses the Redis at $JOBFLEET_REDIS, or starts a
#   private redis-server on a free port (installing Debian's redis-server if
#   it is missing and it can); starts two workers; submits a batch of jobs
#   with --wait; shows stats; stops everything it started.
# Usage: scripts/demo.sh [JOBS]   (default 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-20000}

echo "== building release binaries (the first build takes a few minutes)"
cargo build --release --locked -q -p jobfleet-cli -p jobfleet-worker
BIN=$PWD/target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
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
  PIDS+=($!)
  export JOBFLEET_REDIS="redis://127.0.0.1:$port"
  until "$BIN/jobfleet" stats >/dev/null 2>&1; do sleep 0.1; done
  echo "== started a private redis-server on port $port"
fi
# A prefix of its own, so the demo never touches other data on that Redis.
export JOBFLEET_PREFIX="demo-$$"

echo "== starting two workers (logs in $WORK)"
for i in 1 2; do
  "$BIN/jobfleet-worker" --concurrency 8 2>"$WORK/worker-$i.log" &
  PIDS+=($!)
done
until [ "$("$BIN/jobfleet" workers --json | grep -c '"id"')" -ge 2 ]; do sleep 0.1; done
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
