#!/usr/bin/env python3
"""The PyTorch peer for `squeeze bench bert`: the same model, shapes and steps.

    pytorch_peer.py MODEL_DIR --threads 2 --steps 10 [--warmup 3] > peer.json

Measures, on MiniLM-L6-H384 loaded with `transformers.BertForSequenceClassification`
(2 labels, the setup of a plain PyTorch fine-tune):
- train_step_b32_t64: forward + backward + AdamW (all parameters) + zero_grad,
  batch 32 x 64 tokens, dropout on (train mode), median seconds over `steps`;
- infer_b32_t64, infer_b1_t32: eval-mode forward under no_grad, median seconds;
- sgemm GFLOPS of numpy at the model's GEMM shapes;
- peak resident memory (ru_maxrss) after the training steps, and before them.
Inputs are random token ids from a fixed seed; both sides use the same shapes.
"""
import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch
from transformers import BertForSequenceClassification

GEMM_SHAPES = [  # (M, N, K): rows = batch 32 x 64 tokens
    (2048, 384, 384),
    (2048, 1536, 384),
    (2048, 384, 1536),
]


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_time(fn, steps, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def numpy_sgemm(steps):
    rng = np.random.default_rng(0)
    results = {}
    for m, n, k in GEMM_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        seconds, _ = median_time(lambda: a @ b, steps * 5, 3)
        results[f"{m}x{n}x{k}"] = 2.0 * m * n * k / seconds / 1e9
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--sgemm-only", action="store_true", help="measure only numpy sgemm")
    args = parser.parse_args()
    if args.sgemm_only:
        print(json.dumps({"peer": f"numpy {np.__version__}", "sgemm_gflops": numpy_sgemm(args.steps)}, indent=2))
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(args.model_dir, num_labels=2)
    vocab = model.config.vocab_size

    def batch(b, t):
        ids = torch.randint(1000, vocab, (b, t), generator=generator)
        mask = torch.ones(b, t, dtype=torch.long)
        labels = torch.randint(0, 2, (b,), generator=generator)
        return ids, mask, labels

    model.eval()
    ids32, mask32, _ = batch(32, 64)
    ids1, mask1, _ = batch(1, 32)
    with torch.no_grad():
        infer32, _ = median_time(lambda: model(input_ids=ids32, attention_mask=mask32), args.steps, args.warmup)
        infer1, _ = median_time(lambda: model(input_ids=ids1, attention_mask=mask1), args.steps * 5, args.warmup)
    rss_before_training = peak_rss_mib()

    model.train()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=5e-5)
    ids, mask, labels = batch(32, 64)

    def train_step():
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train, train_times = median_time(train_step, args.steps, args.warmup)
    print(json.dumps({
        "peer": f"pytorch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "train_step_b32_t64": train,
        "train_step_times": train_times,
        "infer_b32_t64": infer32,
        "infer_b1_t32": infer1,
        "sgemm_gflops": numpy_sgemm(args.steps),
        "peak_rss_mib_before_training": rss_before_training,
        "peak_rss_mib": peak_rss_mib(),
    }, indent=2))


if __name__ == "__main__":
    main()
