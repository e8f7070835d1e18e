#!/usr/bin/env bash
# A bounded soak: a steady mixed load of quick, slow, retried and failing jobs
# on chaos workers, a random worker killed with SIGKILL every 20 s, one Redis
# restart (append-only file, fsync always), then a drain and a report: jobs
# submitted, completed, dead, lost (must be 0), duplicate runs, recovery time
# after a kill, and Redis memory over time (flat once retention kicks in).
#
#   scripts/soak.sh                    # 10 minutes
#   SOAK_SECONDS=120 scripts/soak.sh   # shorter; also SOAK_RATE, SOAK_WORKERS,
#                                      # SOAK_KILL_EVERY, SOAK_KEEP_COMPLETED
# Exits 1 if any acknowledged job was lost.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is missing; installing Debian's redis-server package"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
. scripts/lib.sh
cargo build --release --locked -q -p jobfleet-e2e --bins
BIN=$(target_dir)/release
need_bin "$BIN/jobfleet-soak" "$BIN/jobfleet-chaos-worker"
exec "$BIN/jobfleet-soak"
