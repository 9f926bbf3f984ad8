#!/usr/bin/env bash
# Runs a peer's benchmark harness with its load generator at a lower priority, the way
# `loadtest --bots-nice N` runs Tickwire's bots, so the two are compared on equal terms
# (README, "Load testing on one machine").
#
#   benches/nice-load.sh NICE PATTERN -- COMMAND [ARGS...]
#   benches/nice-load.sh 10 floor-client -- /tmp/floor/run.sh 2000 20 30
#   benches/nice-load.sh 10 'node load.js' -- /tmp/colyseus/run.sh 1000 20
#
# Starts COMMAND, and for its first 15 seconds sets every thread of each of its descendant
# processes whose command line contains PATTERN to nice value NICE (Linux keeps one per
# thread). Touches no process it did not start; waits for COMMAND and returns its status.
set -euo pipefail

[[ $# -ge 4 && "$3" == "--" ]] || { echo "usage: $0 NICE PATTERN -- COMMAND [ARGS...]" >&2; exit 64; }
NICE="$1"
PATTERN="$2"
shift 3
[[ "$NICE" =~ ^[0-9]+$ ]] && (( NICE <= 19 )) || { echo "NICE must be 0..19" >&2; exit 64; }

"$@" &
ROOT=$!

descendants() { # every process below $1
  local c
  for c in $(pgrep -P "$1" || true); do
    echo "$c"
    descendants "$c"
  done
}

for _ in $(seq 1 30); do
  kill -0 "$ROOT" 2>/dev/null || break
  for p in $(descendants "$ROOT"); do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$PATTERN"; then
      for t in /proc/"$p"/task/*; do
        renice -n "$NICE" -p "${t##*/}" >/dev/null 2>&1 || true
      done
    fi
  done
  sleep 0.5
done
wait "$ROOT"
