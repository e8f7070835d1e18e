#!/usr/bin/env bash
# Refreshes the Lua scripts shipped in the package from the jobfleet CLI
# (`jobfleet protocol scripts`), for when the scripts test says they drifted.
#
#   clients/python/sync-scripts.sh      # uses $JOBFLEET_BIN_DIR/jobfleet (default: target/debug)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jobfleet="${JOBFLEET_BIN_DIR:-$here/../../target/debug}/jobfleet"
scripts="$here/src/jobfleet/scripts"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

"$jobfleet" protocol scripts --out "$out" >/dev/null
for shipped in "$scripts"/*.lua; do
  name="$(basename "$shipped")"
  if [[ ! -f "$out/$name" ]]; then
    echo "sync-scripts.sh: the CLI no longer writes $name" >&2
    exit 1
  fi
  if cmp -s "$out/$name" "$shipped"; then
    echo "unchanged $name"
  else
    cp "$out/$name" "$shipped"
    echo "updated   $name"
  fi
done
