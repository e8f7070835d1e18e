#!/usr/bin/env bash
# Installs the client's dependencies from the lockfile (npm ci), builds it,
# then runs its tests (node --test) against private redis-server processes
# and real jobfleet workers.
#
#   JOBFLEET_BIN_DIR=target/debug clients/node/run-tests.sh [node --test args...]
#
# JOBFLEET_BIN_DIR holds the jobfleet and jobfleet-worker binaries (default:
# the workspace's target/debug). Extra arguments go to `node --test`, e.g.
# --test-name-pattern=cancel.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin_dir="${JOBFLEET_BIN_DIR:-$here/../../target/debug}"
if [[ ! -x "$bin_dir/jobfleet" || ! -x "$bin_dir/jobfleet-worker" ]]; then
  echo "run-tests.sh: no jobfleet binaries in $bin_dir: build the workspace or set JOBFLEET_BIN_DIR" >&2
  exit 2
fi
export JOBFLEET_BIN_DIR="$(cd "$bin_dir" && pwd)"
if ! command -v redis-server >/dev/null; then
  echo "run-tests.sh: redis-server (7.0 or later) is not on PATH (Debian: apt-get install redis-server)" >&2
  exit 2
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "run-tests.sh: Node.js 20 or later is needed, not $(node --version)" >&2
  exit 2
fi

cd "$here"
npm ci --no-audit --no-fund --loglevel=error
rm -rf dist build
npm run --silent build
npm run --silent build:test
# The test files run in parallel, each against its own redis-server.
exec node --test --test-concurrency=4 "$@" build/test/*.test.js
