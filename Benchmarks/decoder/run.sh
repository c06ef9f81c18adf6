#!/usr/bin/env bash
# The PyTorch peer of squeeze's decoder benchmark: training step, prefill and KV-cached decode.
#
#   Benchmarks/decoder/run.sh [CONFIG] [torch_peer.py options...]   # default CONFIG: small-llama.json
#
# Environment: SQUEEZE_BENCH_THREADS (2). CONFIG is a model directory, a JSON file or a JSON
# object (LlamaConfig fields); weights are random. Creates .cache/torch-venv (torch,
# transformers, numpy from PyPI) when it is missing, like Benchmarks/bert/run.sh; torch is
# never a dependency of squeeze itself. Prints the peer's JSON.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
config="${1:-$repo/Benchmarks/decoder/small-llama.json}"
shift $(( $# > 0 ? 1 : 0 ))
threads="${SQUEEZE_BENCH_THREADS:-2}"
venv="$repo/.cache/torch-venv"

if ! "$venv/bin/python" -c "import torch, transformers, numpy" 2>/dev/null; then
    echo "== creating $venv (torch, transformers, numpy)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch transformers numpy
fi

echo "$(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)" >&2
exec "$venv/bin/python" "$repo/Benchmarks/decoder/torch_peer.py" "$config" --threads "$threads" "$@"
