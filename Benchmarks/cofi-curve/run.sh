#!/usr/bin/env bash
# The CoFi sparsity curve on SST-2: runs pipelines/sst2-cofi.yaml once per target
# sparsity (the teacher is cached and shared), then prints one table of realised
# sparsity, size, accuracy and measured speedup from the run records.
#
#   Benchmarks/cofi-curve/run.sh                  # 0.5 0.6 0.7 0.8 0.9 0.95
#   Benchmarks/cofi-curve/run.sh 0.6 0.9          # chosen targets
#   SQUEEZE_SET="vars.recover_epochs=1" Benchmarks/cofi-curve/run.sh   # extra --set
#
# Each target is one pruning epoch plus the recovery distillation on 2 cores
# (30-45 minutes); a target already run with the same settings is a cache hit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(0.5 0.6 0.7 0.8 0.9 0.95)
extra=()
for assignment in ${SQUEEZE_SET:-}; do extra+=(--set "$assignment"); done

swift build -c release --product squeeze >&2
squeeze=$(swift build -c release --show-bin-path)/squeeze
log_dir=$(mktemp -d)
run_ids=()
for target in "${targets[@]}"; do
  echo "== sparsity $target" >&2
  "$squeeze" run pipelines/sst2-cofi.yaml --set "vars.sparsity=$target" "${extra[@]}" --json \
    > "$log_dir/$target.jsonl"
  run_ids+=("$(python3 "$here/summarize.py" --run-id-of "$log_dir/$target.jsonl")")
done
python3 "$here/summarize.py" --runs-dir "${SQUEEZE_RUNS:-runs}" "${run_ids[@]}"
