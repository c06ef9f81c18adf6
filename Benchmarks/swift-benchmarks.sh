#!/usr/bin/env bash
# Runs the ordo-one benchmark targets (Hashing, Planning) in release mode,
# prints the harness's tables, then one summary line per suite with the
# numbers and the ratios against the peer measured in the same run.
#
# Usage: Benchmarks/swift-benchmarks.sh [swift package benchmark options...]
#   e.g. Benchmarks/swift-benchmarks.sh --target Hashing
# Environment: SQUEEZE_BENCH_RESULTS (default Benchmarks/.results),
#   SQUEEZE_BENCH_WORK (parent of the scratch files, default $TMPDIR or /tmp).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export SQUEEZE_BENCH_RESULTS=${SQUEEZE_BENCH_RESULTS:-$here/.results}
mkdir -p "$SQUEEZE_BENCH_RESULTS"
rm -f "$SQUEEZE_BENCH_RESULTS"/Hashing.*.json "$SQUEEZE_BENCH_RESULTS"/Planning.*.json

cd "$here"
# SwiftPM reuses its cached build plan when only the root package (..) gained
# or lost source files, and then misses them; dropping the plan costs seconds.
rm -f .build/release.yaml .build/*/release/description.json
# --disable-sandbox: the benchmarks write a 1 GiB scratch file and a cache
# outside the package (a no-op on Linux, needed under macOS's plugin sandbox).
swift package --disable-sandbox benchmark --no-progress "$@"
echo
python3 "$here/summary.py" line Hashing Planning
