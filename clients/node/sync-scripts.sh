#!/usr/bin/env bash
# Regenerates the Lua scripts shipped in the package (scripts/*.lua) from the
# jobfleet CLI, which writes each one exactly as jobfleet sends it to Redis
# (common.lua followed by the transition). Run it when the scripts test says
# they drifted.
#
#   clients/node/sync-scripts.sh      # uses $JOBFLEET_BIN_DIR/jobfleet (default: target/debug)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jobfleet="${JOBFLEET_BIN_DIR:-$here/../../target/debug}/jobfleet"
if [[ ! -x "$jobfleet" ]]; then
  echo "sync-scripts.sh: no jobfleet binary at $jobfleet: build the workspace or set JOBFLEET_BIN_DIR" >&2
  exit 2
fi
# The scripts this client runs (see SCRIPT_NAMES in src/scripts.ts).
names=(submit.lua cancel.lua)
scripts="$here/scripts"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

"$jobfleet" protocol scripts --out "$out" >/dev/null
mkdir -p "$scripts"
for name in "${names[@]}"; do
  if [[ ! -f "$out/$name" ]]; then
    echo "sync-scripts.sh: the CLI no longer writes $name" >&2
    exit 1
  fi
  if [[ -f "$scripts/$name" ]] && cmp -s "$out/$name" "$scripts/$name"; then
    echo "unchanged $name"
  else
    cp "$out/$name" "$scripts/$name"
    echo "updated   $name"
  fi
done
