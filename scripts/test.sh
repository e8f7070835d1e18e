#!/usr/bin/env bash
# The whole check: formatting, lints, and every test (unit, Redis-backed
# integration, end-to-end with the real binaries, the dashboard in headless
# Chromium), then the core lifecycle tests and the CLI tests once more on a Redis
# Cluster, the Python and Node clients' tests against real workers, the
# deployment kit's checks (systemd units, Prometheus rules, Grafana), the
# libraries' docs, and `cargo package` of every published crate.
# Installs what the tests need when it is missing: redis-server, chromium and
# openssl (for the TLS test's certificate), from Debian's packages; the
# clients' dependencies from PyPI and the npm registry (Node.js 20 or later
# must be on PATH). Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages the tests need: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== the worker's OpenTelemetry export (feature otel), to a receiver the test owns"
cargo clippy --locked -p jobfleet-worker --features otel --all-targets -- -D warnings
cargo test --workspace --locked --features jobfleet-worker/otel --test otel
echo "== the lifecycle and CLI tests again, on a Redis Cluster (3 primaries, 3 replicas)"
# (--workspace, as above: the same features, so nothing is built again)
JOBFLEET_TEST_TOPOLOGY=cluster cargo test --workspace --locked --test transitions --test failure_paths --test cli
echo "== the Python and Node clients, against real workers"
cargo build --workspace --locked --bins
. scripts/lib.sh
bins="$(target_dir)/debug"
JOBFLEET_BIN_DIR="$bins" clients/python/run-tests.sh
JOBFLEET_BIN_DIR="$bins" clients/node/run-tests.sh
echo "== deploy/: systemd units, alert rules and their tests, the Grafana dashboard"
JOBFLEET_BIN_DIR="$bins" scripts/check-deploy.sh
echo "== library docs (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --lib \
  -p jobfleet-core -p jobfleet-worker -p jobfleet-thumbnail -p jobfleet-dashboard -p jobfleet-testkit
echo "== cargo package: every published crate builds from its packaged sources"
# Cargo verifies each crate against its siblings' packaged sources through a
# local registry, and unpacks those once into its registry cache: an earlier
# run's unpacked copy of the same version would stand in for today's sources.
rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/jobfleet-*-0.1.0
cargo package --locked --workspace --exclude jobfleet-bench --exclude jobfleet-e2e --exclude custom-task
