#!/usr/bin/env python3
"""The table of Benchmarks/decoder/compare.sh: `squeeze bench decoder --json` runs against torch_peer.py runs.

    compare.py --config CONFIG --load-start "L1 L5 L15" --load-end "L1 L5 L15" --tiers native avx2 --rounds N DIR

DIR holds squeeze-<tier>-<round>.json and torch-<round>.json. Each value is the median over the
rounds of each run's own median. Times are compared as squeeze / PyTorch (goal <= 0.9; for
decode, the inverse ratio of tokens/s, i.e. of time per token); weight-only decode as squeeze's
int tokens/s over its fp32 tokens/s (the median of the runs' per-round speedups; goal for int4:
>= 1.5). Every tier is its own block of rows.
"""
import argparse
import json
import os
import statistics
import sys

TIME_GOAL = 0.9
INT4_GOAL = 1.5


def load(path):
    with open(path) as f:
        return json.load(f)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def field(report, *keys):
    for key in keys:
        if not isinstance(report, dict) or key not in report:
            return None
        report = report[key]
    return report


def verdict(ratio, goal, at_most):
    if ratio is None:
        return "n/a"
    met = ratio <= goal if at_most else ratio >= goal
    return f"{'<=' if at_most else '>='} {goal}: {'met' if met else 'NOT met'}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--load-start", required=True)
    parser.add_argument("--load-end", required=True)
    parser.add_argument("--tiers", nargs="+", required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("directory")
    args = parser.parse_args()

    def runs(prefix):
        paths = [os.path.join(args.directory, f"{prefix}-{r}.json") for r in range(1, args.rounds + 1)]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            sys.exit(f"compare.py: missing {', '.join(missing)}")
        return [load(p) for p in paths]

    torch = runs("torch")
    squeeze = {tier: runs(f"squeeze-{tier}") for tier in args.tiers}

    first = squeeze[args.tiers[0]][0]
    model, settings = first["model"], first["settings"]
    cpu = torch[0].get("cpu", {})
    print(f"decoder benchmark: {args.config}")
    print(f"  {model['model_type']}, hidden {model['hidden_size']}, {model['num_hidden_layers']} layers, "
          f"{model['num_attention_heads']} heads / {model['num_key_value_heads']} KV heads, FFN {model['intermediate_size']}, "
          f"vocab {model['vocab_size']}, tied embeddings {str(model['tie_word_embeddings']).lower()}, "
          f"{model['parameters']:,} parameters (PyTorch: {torch[0]['model']['parameters']:,}), float32, random weights")
    print(f"  training B={settings['batch']} T={settings['seq_len']}; prompt {settings['prompt_len']} tokens, "
          f"{settings['decode_tokens']} decode steps at batch 1; weight-only groups of {settings['group_size']}; "
          f"medians of {settings['repeats']} after {settings['warmup']} warm-ups, {args.rounds} round(s)")
    print(f"CPU: {cpu.get('model_name')} (family {cpu.get('family')}, model {cpu.get('model')})")
    print(f"threads: squeeze {first['threads']}, PyTorch {torch[0]['threads']}")
    print(f"peer: {torch[0]['peer']}, attention {torch[0]['model'].get('attn_implementation')}")
    for tier in args.tiers:
        machine = squeeze[tier][0]["machine"]
        print(f"squeeze {first['squeeze']}, {tier} run: kernel tier {machine['kernel_tier']} ({machine['kernel_variant']}); "
              f"{machine['gemm']}")
    print(f"load average (1, 5, 15 min): start {args.load_start}, end {args.load_end}"
          + ("   ** above 1.5: the machine is busy, numbers are not final **"
             if max(float(x) for x in (args.load_start.split() + args.load_end.split())[::3]) > 1.5 else ""))
    print()

    torch_train = median([field(r, "train_step", "ms") for r in torch])
    torch_prefill = median([field(r, "prefill", "ms") for r in torch])
    torch_decode = median([field(r, "decode", "tokens_per_s") for r in torch])

    header = f"| {'tier':<8} | {'measurement':<30} | {'squeeze':>16} | {'PyTorch':>14} | {'ratio':>16} | {'goal':<16} |"
    print(header)
    print("|" + "|".join("-" * len(c) for c in header.split("|")[1:-1]) + "|")

    def row(tier, label, ours, theirs, ratio, ratio_text, goal):
        print(f"| {tier:<8} | {label:<30} | {ours:>16} | {theirs:>14} | {ratio_text:>16} | {goal:<16} |")

    for tier in args.tiers:
        reports = squeeze[tier]
        name = reports[0]["machine"]["kernel_tier"] if tier == "native" else tier
        train = median([field(r, "train_step", "ms") for r in reports])
        prefill = median([field(r, "prefill", "ms") for r in reports])
        decode = median([field(r, "decode", "tokens_per_s") for r in reports])
        ratio = train / torch_train
        row(name, f"train step B={settings['batch']} T={settings['seq_len']}", f"{train:.1f} ms", f"{torch_train:.1f} ms",
            ratio, f"{ratio:.2f}", verdict(ratio, TIME_GOAL, True))
        ratio = prefill / torch_prefill
        row(name, f"prefill T={settings['prompt_len']}", f"{prefill:.2f} ms", f"{torch_prefill:.2f} ms",
            ratio, f"{ratio:.2f}", verdict(ratio, TIME_GOAL, True))
        ratio = torch_decode / decode
        row(name, "decode fp32", f"{decode:.0f} tok/s", f"{torch_decode:.0f} tok/s", ratio, f"{ratio:.2f} (time)",
            verdict(ratio, TIME_GOAL, True))
        for bits in (4, 8):
            key = f"decode_int{bits}"
            rate = median([field(r, key, "tokens_per_s") for r in reports])
            speedup = median([field(r, key, "speedup_over_fp32") for r in reports])
            versus_torch = torch_decode / rate
            row(name, f"decode int{bits} g{settings['group_size']}", f"{rate:.0f} tok/s", "-", speedup,
                f"{speedup:.2f}x fp32", verdict(speedup, INT4_GOAL, False) if bits == 4 else "report")
            row(name, f"  int{bits} vs PyTorch fp32 decode", "", "", versus_torch, f"{versus_torch:.2f} (time)", "report")
    print()
    print("ratio: squeeze time / PyTorch time (decode: PyTorch tokens/s / squeeze tokens/s); "
          "int4/int8: squeeze's weight-only decode over its own fp32 decode, median of per-round ratios.")
    for tier in args.tiers:
        for r in squeeze[tier]:
            print(f"{tier}: same greedy tokens as fp32 before diverging: int4 {field(r, 'decode_int4', 'same_tokens_as_fp32')}, "
                  f"int8 {field(r, 'decode_int8', 'same_tokens_as_fp32')} of {settings['decode_tokens'] + 1}; "
                  f"block linears fp32 {field(r, 'decode', 'block_linear_bytes') / 1e6:.2f} MB, "
                  f"int4 {field(r, 'decode_int4', 'block_linear_bytes') / 1e6:.2f} MB, "
                  f"int8 {field(r, 'decode_int8', 'block_linear_bytes') / 1e6:.2f} MB; "
                  f"load during the run {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}")
    for r in torch:
        print(f"PyTorch: load during the run {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}")


if __name__ == "__main__":
    main()
