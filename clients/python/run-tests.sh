#!/usr/bin/env bash
# Installs the client (not editable: the installed package is what is tested)
# with its test extra into a virtualenv, then runs its tests against a private
# redis-server and real jobfleet workers.
#
#   JOBFLEET_BIN_DIR=target/debug clients/python/run-tests.sh [pytest args...]
#
# JOBFLEET_BIN_DIR holds the jobfleet and jobfleet-worker binaries (default:
# the workspace's target/debug). JOBFLEET_PY_VENV picks the virtualenv
# (default: clients/python/.venv); PYTHON the interpreter that makes it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin_dir="${JOBFLEET_BIN_DIR:-$here/../../target/debug}"
if [[ ! -x "$bin_dir/jobfleet" || ! -x "$bin_dir/jobfleet-worker" ]]; then
  echo "run-tests.sh: no jobfleet binaries in $bin_dir: build the workspace or set JOBFLEET_BIN_DIR" >&2
  exit 2
fi
export JOBFLEET_BIN_DIR="$(cd "$bin_dir" && pwd)"
if ! command -v redis-server >/dev/null; then
  echo "run-tests.sh: redis-server is not on PATH (Debian: apt-get install redis-server)" >&2
  exit 2
fi

python="${PYTHON:-python3}"
venv="${JOBFLEET_PY_VENV:-$here/.venv}"
if [[ ! -x "$venv/bin/python" ]]; then
  # Debian ships venv's pip bootstrap separately (python3-venv); without it,
  # make the virtualenv bare and drive it with the system's pip.
  "$python" -m venv "$venv" 2>/dev/null || { rm -rf "$venv"; "$python" -m venv --without-pip "$venv"; }
fi
if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  pip=("$venv/bin/python" -m pip)
else
  pip=("$python" -m pip --python "$venv/bin/python")
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
"${pip[@]}" install --quiet "$here[test]"
# A same-version reinstall: the tree may have changed since the last run.
"${pip[@]}" install --quiet --no-deps --force-reinstall "$here"

# The source sits under src/, so `import jobfleet` finds the installed package.
cd "$here"
exec "$venv/bin/python" -m pytest "$@"
