#!/usr/bin/env bash
# Runs a peer's benchmark harness with its load generator at a lower priority, the way
# `loadtest --bots-nice N` runs Tickwire's bots, so the two are compared on equal terms
# (README, "Load testing on one machine").
#
#   benches/nice-load.sh NICE PATTERN -- COMMAND [ARGS...]
#   benches/nice-load.sh 10 floor-client -- /tmp/floor/run.sh 2000 20 30
#   benches/nice-load.sh 10 'node load.js' -- /tmp/colyseus/run.sh 1000 20
#
# Starts COMMAND and, until it ends, sets every thread of each of its descendant processes
# whose command line contains PATTERN to nice value NICE (Linux keeps one per thread).
# Touches no process it did not start; waits for COMMAND and returns its status.
set -euo pipefail

[[ $# -ge 4 && "$3" == "--" ]] || { echo "usage: $0 NICE PATTERN -- COMMAND [ARGS...]" >&2; exit 64; }
NICE="$1"
PATTERN="$2"
shift 3
[[ "$NICE" =~ ^[0-9]+$ ]] && (( 10#$NICE <= 19 )) || { echo "NICE must be 0..19" >&2; exit 64; }
NICE=$(( 10#$NICE ))

"$@" &
ROOT=$!
# Ctrl-C or a timeout's TERM stops the command too (a background job ignores SIGINT).
trap 'kill -TERM "$ROOT" 2>/dev/null; wait "$ROOT"; exit 130' INT TERM

descendants() { # every process below $1
  local c
  for c in $(pgrep -P "$1" || true); do
    echo "$c"
    descendants "$c"
  done
}

# Until COMMAND ends: once a second, give every thread of each matching descendant the nice
# value (absolute: `renice N`, not `-n`, which some versions read as an increment), skipping
# threads that have it already (field 19 of /proc/TID/stat).
declare -A seen=()
while kill -0 "$ROOT" 2>/dev/null; do
  for p in $(descendants "$ROOT"); do
    cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
    [[ "$cmd" == *"$PATTERN"* ]] || continue
    if [[ -z "${seen[$p]:-}" ]]; then
      seen[$p]=1
      echo "[nice-load] nice $NICE: $p $cmd" >&2
    fi
    for t in /proc/"$p"/task/*; do
      stat=$(cat "$t/stat" 2>/dev/null) || continue
      fields=(${stat##*) })
      [[ "${fields[16]:-}" == "$NICE" ]] && continue
      renice "$NICE" -p "${t##*/}" >/dev/null 2>&1 || true
    done
  done
  sleep 1
done
(( ${#seen[@]} > 0 )) || echo "[nice-load] warning: no process matched '$PATTERN'" >&2
wait "$ROOT"
