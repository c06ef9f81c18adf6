#!/usr/bin/env bash
# Runs every Squeeze benchmark — the Swift ones (Hashing, Planning) and the
# cached-rerun comparison with DVC — and prints a summary table.
#
# Usage: Benchmarks/run-all.sh [RUNS]   (cached reruns timed per tool, default 20)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export SQUEEZE_BENCH_RESULTS=${SQUEEZE_BENCH_RESULTS:-$here/.results}
rm -f "$SQUEEZE_BENCH_RESULTS"/*.json

status=0
"$here/swift-benchmarks.sh" || status=$?
"$here/cached-rerun.sh" "${1:-20}" || status=$?

echo
echo "== Summary ($(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || uname -m)) =="
python3 "$here/summary.py" line || status=1
echo
python3 "$here/summary.py" table || status=1
exit "$status"
