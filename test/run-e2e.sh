#!/usr/bin/env bash
# Runs an end-to-end command with a private scratch root and, whatever happens, stops
# every VM and daemon started under it (found by the BERTH_E2E_ROOT they inherit, or by
# the root in their command line), so nothing outlives the run.
set -uo pipefail
work=$(mktemp -d /tmp/berth-e2e.XXXXXX)
export BERTH_E2E_ROOT="$work"
# The suite runs as root on the build machines; berth refuses root unless told.
export BERTH_ALLOW_ROOT="${BERTH_ALLOW_ROOT:-1}"
ours() {
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    [ "$pid" = $$ ] && continue
    if grep -qsz "^BERTH_E2E_ROOT=$work\$" "$d/environ" 2>/dev/null || grep -qsF "$work" "$d/cmdline" 2>/dev/null; then
      echo "$pid"
    fi
  done
}
cleanup() {
  pids=$(ours)
  if [ -n "$pids" ]; then
    echo "run-e2e: stopping leftover processes: $pids" >&2
    kill -TERM $pids 2>/dev/null
    sleep 3
    pids=$(ours); [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$@"
