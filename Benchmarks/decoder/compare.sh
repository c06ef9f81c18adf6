#!/usr/bin/env bash
# Squeeze vs PyTorch on a decoder (Llama family) with random weights: one training step,
# prefill, KV-cached greedy decode in fp32, and squeeze's weight-only int4 / int8 decode.
#
#   Benchmarks/decoder/compare.sh [CONFIG]     # default CONFIG: wikitext-llama.json (the shipped pipeline's model)
#   Benchmarks/decoder/compare.sh Benchmarks/decoder/small-llama.json
#
# Each round runs `squeeze bench decoder --json` once per kernel tier, then torch_peer.py, on the
# same config and settings; the table shows medians over rounds, the ratio squeeze time / PyTorch
# time (goal <= 0.9), the int4 and int8 decode speedups over squeeze's fp32 decode (goal: int4
# >= 1.5x), the CPU (model name, family, model), kernel tier, threads and the load average at the
# start and the end. Do not take the numbers as final while the load average is above ~1.5.
#
# Environment:
#   SQUEEZE_BENCH_TIERS    kernel tiers squeeze runs, each its own rows (default "native avx2":
#                          the CPU's own tier, then SQUEEZE_KERNELS=avx2 as on a CPU without AVX-512;
#                          "native" alone skips the second)
#   SQUEEZE_BENCH_ROUNDS   rounds (1)
#   SQUEEZE_BENCH_THREADS (2), SQUEEZE_BENCH_BATCH (16), SQUEEZE_BENCH_SEQ_LEN (128),
#   SQUEEZE_BENCH_PROMPT_LEN (128), SQUEEZE_BENCH_DECODE_TOKENS (64), SQUEEZE_BENCH_REPEATS (5),
#   SQUEEZE_BENCH_WARMUP (2), SQUEEZE_BENCH_GROUP_SIZE (squeeze's default: 128 where it divides every
#                          block layer's input width, else the largest divisor of them all, e.g. 16 for small-llama's FFN 688)
#   SQUEEZE_BENCH_KEEP     a directory to keep every JSON in (default: a temporary one, removed)
#   SQUEEZE_BENCH_NO_BUILD=1  use the existing .build/release/squeeze
# Creates .cache/torch-venv (torch, transformers, numpy from PyPI) when it is missing (run.sh);
# builds squeeze with `swift build -c release --product squeeze`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
config="${1:-$repo/Benchmarks/decoder/wikitext-llama.json}"
read -r -a tiers <<< "${SQUEEZE_BENCH_TIERS:-native avx2}"
rounds="${SQUEEZE_BENCH_ROUNDS:-1}"
threads="${SQUEEZE_BENCH_THREADS:-2}"
settings=(
    --batch "${SQUEEZE_BENCH_BATCH:-16}" --seq-len "${SQUEEZE_BENCH_SEQ_LEN:-128}"
    --prompt-len "${SQUEEZE_BENCH_PROMPT_LEN:-128}" --decode-tokens "${SQUEEZE_BENCH_DECODE_TOKENS:-64}"
    --repeats "${SQUEEZE_BENCH_REPEATS:-5}" --warmup "${SQUEEZE_BENCH_WARMUP:-2}"
)
group_size=()
[[ -n "${SQUEEZE_BENCH_GROUP_SIZE:-}" ]] && group_size=(--group-size "$SQUEEZE_BENCH_GROUP_SIZE")
squeeze="$repo/.build/release/squeeze"

for tier in "${tiers[@]}"; do
    case "$tier" in
        native | avx2 | baseline) ;;
        *) echo "error: SQUEEZE_BENCH_TIERS: unknown tier '$tier' (native, avx2 or baseline)" >&2; exit 2 ;;
    esac
done
if [[ ! -e "$config" ]]; then
    echo "error: $config does not exist" >&2
    exit 2
fi
if [[ "${SQUEEZE_BENCH_NO_BUILD:-}" != 1 ]]; then
    echo "== swift build -c release --product squeeze" >&2
    swift build -c release --product squeeze --package-path "$repo" >&2
fi

if [[ -n "${SQUEEZE_BENCH_KEEP:-}" ]]; then
    work="$SQUEEZE_BENCH_KEEP"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
fi

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$rounds"); do
    for tier in "${tiers[@]}"; do
        echo "== round $round/$rounds: squeeze bench decoder ($tier tier)" >&2
        environment=()
        [[ "$tier" != native ]] && environment=(SQUEEZE_KERNELS="$tier")
        env "${environment[@]}" "$squeeze" bench decoder "$config" --threads "$threads" "${settings[@]}" \
            "${group_size[@]}" --json > "$work/squeeze-$tier-$round.json"
    done
    echo "== round $round/$rounds: pytorch" >&2
    SQUEEZE_BENCH_THREADS="$threads" "$repo/Benchmarks/decoder/run.sh" "$config" "${settings[@]}" \
        > "$work/torch-$round.json" 2> "$work/torch-$round.log" || { cat "$work/torch-$round.log" >&2; exit 1; }
done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

python3 "$repo/Benchmarks/decoder/compare.py" --config "$config" --load-start "$load_start" --load-end "$load_end" \
    --tiers "${tiers[@]}" --rounds "$rounds" "$work"
