# scripts/lib.sh: helpers the scripts share (sourced, not run).
#
#   target_dir               where cargo puts build output: CARGO_TARGET_DIR, a
#                            config's build.target-dir, or ./target (cargo metadata)
#   need_bin PATH...         fails at once, naming the path, when a binary is missing
#   wait_for SECS WHAT LOG PIDS CMD...
#                            runs CMD until it succeeds; gives up after SECS, or at
#                            once when one of PIDS (space-separated, may be "") has
#                            exited, saying what it waited for and where the log is
#   redis_up PORT            true when a Redis answers PING on 127.0.0.1:PORT
#   bench_bins ROOT          sets JF, JW, JB to the release jobfleet, jobfleet-worker
#                            and jobfleet-bench: built from ROOT, or taken from
#                            BENCH_BIN_DIR when set
#   free_port                a free loopback port below 55536 (a Redis Cluster
#                            node also listens on its port + 10000)

target_dir() {
  local dir
  dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  if [ -z "$dir" ]; then
    echo "error: cargo metadata did not say where cargo puts its build output (is cargo installed?)" >&2
    exit 1
  fi
  echo "$dir"
}

need_bin() {
  local bin
  for bin in "$@"; do
    if [ ! -x "$bin" ]; then
      echo "error: $bin does not exist or is not executable: the build put its binaries elsewhere or failed" >&2
      exit 1
    fi
  done
}

wait_for() {
  local secs=$1 what=$2 log=$3 pids=$4 pid
  shift 4
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    for pid in $pids; do
      if ! kill -0 "$pid" 2>/dev/null; then
        echo "error: $what: the process (pid $pid) exited; see $log" >&2
        [ -f "$log" ] && tail -n 5 "$log" | sed 's/^/  | /' >&2
        exit 1
      fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "error: $what within $secs s; see $log" >&2
      [ -f "$log" ] && tail -n 5 "$log" | sed 's/^/  | /' >&2
      exit 1
    fi
    sleep 0.1
  done
}

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}

bench_bins() {
  local bin
  if [ -n "${BENCH_BIN_DIR:-}" ]; then
    bin=$BENCH_BIN_DIR
  else
    (cd "$1" && cargo build --release --locked -q -p jobfleet-cli -p jobfleet-worker -p jobfleet-bench)
    bin=$(cd "$1" && target_dir)/release
  fi
  JF=$bin/jobfleet JW=$bin/jobfleet-worker JB=$bin/jobfleet-bench
  need_bin "$JF" "$JW" "$JB"
}

free_port() {
  python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p <= 55535: print(p); break'
}
