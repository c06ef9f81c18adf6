#!/usr/bin/env bash
# The flagship's exports served by ONNX Runtime, beside squeeze's own eval of the same models.
#
#   Benchmarks/export/run.sh [--kernels avx2] [ort_serving.py options...]
#
# Runs the flagship (pipelines/sst2-cofi-int8.yaml; everything but the eval is normally cached)
# with two more export/onnx stages, for the teacher and the pruned model (the flagship exports
# its int8 model itself), from a temporary copy of the recipe beside it, forcing `eval` so
# squeeze's latencies are measured in this session. Then Benchmarks/export/ort_serving.py runs
# the three ONNX files in ONNX Runtime: accuracy on the 872 test sentences and the latencies
# the way squeeze's eval measures them. `--kernels avx2` runs squeeze's eval with the AVX2 tier
# (SQUEEZE_KERNELS=avx2); that changes the tensor stages' keys, so it is only cheap when those
# were run with that tier before. ONNX Runtime picks its own kernels (MLAS) for the CPU.
# Needs python3 with onnxruntime, numpy and tokenizers (scripts/bootstrap installs them);
# onnxruntime is never a dependency of squeeze itself.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
environment=()
if [[ "${1:-}" == "--kernels" ]]; then
    environment=("SQUEEZE_KERNELS=$2")
    shift 2
fi
swift build -c release --product squeeze >&2
squeeze="$repo/.build/release/squeeze"
recipe="$repo/pipelines/.sst2-cofi-int8.exports-bench.yaml"
trap 'rm -f "$recipe"' EXIT
cp pipelines/sst2-cofi-int8.yaml "$recipe"
cat >> "$recipe" <<'YAML'

  export_teacher:
    uses: export/onnx
    with:
      model: ${finetuned.model}

  export_pruned:
    uses: export/onnx
    with:
      model: ${recovered.model}
YAML
env "${environment[@]}" "$squeeze" run "$recipe" --force eval --json > /tmp/squeeze-export-bench.jsonl
run_id="$(python3 -c "
import json, sys
for line in open('/tmp/squeeze-export-bench.jsonl'):
    event = json.loads(line)
    if isinstance(event, dict) and event.get('event') == 'run_finished':
        print(event['run']['id'])
")"
outputs="$repo/runs/$run_id/outputs"
data="${SQUEEZE_DATA:-$repo/../shared/data}"
echo "== run $run_id (${environment[*]:-default kernels})" >&2
python3 "$repo/Benchmarks/export/ort_serving.py" --run "$repo/runs/$run_id" --test "$data/sst2/test.tsv" \
    "teacher=$outputs/export_teacher/model" "pruned=$outputs/export_pruned/model" "int8=$outputs/export/model" "$@"
