#!/usr/bin/env python3
"""The PyTorch peer for squeeze's decoder benchmark: a training step, prefill and KV-cached decode.

    torch_peer.py CONFIG [--threads 2] [--batch 8] [--seq-len 128] [--prompt-len 128]
                  [--decode-tokens 64] [--repeats 5] [--warmup 2] [--seed 0] > peer.json

CONFIG is a Hugging Face model directory (its config.json is read, the weights are not), a JSON
file, or a JSON object on the command line; JSON without "model_type" is read as LlamaConfig
fields. The model is built from the config with random weights (transformers' own init after
torch.manual_seed(--seed)), float32, PyTorch's default attention for the model (recorded as
"attn_implementation"). Token ids are uniform in [0, vocab), from the same seed.

Measures, each the median of --repeats timed runs after --warmup untimed ones:
- train_step: forward + causal-LM cross-entropy (labels = input ids, shifted inside the model)
  + backward + torch.optim.AdamW step + zero_grad, on --batch x --seq-len tokens, train mode;
- prefill: an eval-mode forward under no_grad over --prompt-len tokens at batch 1 with
  use_cache=True (the KV cache is built, as generation would), logits for every prompt position
  as a plain forward computes them (generate() would keep only the last row);
- decode: after an untimed prefill of --prompt-len tokens, --decode-tokens greedy steps at
  batch 1, each a forward of one token with the growing KV cache (transformers 5 calls it
  `cache`, formerly `past_key_values`) and an argmax; only the steps are timed. The tokens are
  those of model.generate(do_sample=False) (checked once by hand on this config).
Prints one JSON object: the numbers (ms and tokens/s, with every sample), the model's shape and
parameter count, torch/transformers versions, threads, CPU (model name, family, model) and
the load average before and after.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig


def read_config(source):
    """A model directory, a JSON file or a JSON object -> a transformers config."""
    if os.path.isdir(source):
        return AutoConfig.from_pretrained(source)
    if source.lstrip().startswith("{"):
        fields = json.loads(source)
    else:
        with open(source) as f:
            fields = json.load(f)
    if not isinstance(fields, dict):
        raise ValueError(f"{source}: a config must be a JSON object")
    if "model_type" in fields:
        fields = dict(fields)
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    return LlamaConfig(**fields)


def cpu():
    """model name, cpu family and model from /proc/cpuinfo (the first processor)."""
    info = {"model_name": platform.processor(), "family": None, "model": None}
    keys = {"model name": "model_name", "cpu family": "family", "model": "model"}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                field = keys.get(key.strip())
                if field is not None:
                    value = value.strip()
                    info[field] = int(value) if field != "model_name" and value.isdigit() else value
    except OSError:
        pass
    return info


def timed(fn, repeats, warmup):
    """Median and all samples of fn()'s seconds; fn may return its own measured seconds."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        inner = fn()
        samples.append(inner if inner is not None else time.perf_counter() - start)
    return statistics.median(samples), samples


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="model directory, JSON file or JSON object (LlamaConfig fields)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args()
    for name in ("threads", "batch", "seq_len", "prompt_len", "decode_tokens", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    try:
        config = read_config(args.config)
    except (OSError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    positions = getattr(config, "max_position_embeddings", None)
    needed = max(args.seq_len, args.prompt_len + args.decode_tokens)
    if positions is not None and needed > positions:
        print(f"error: {needed} positions needed, the config allows max_position_embeddings={positions}", file=sys.stderr)
        sys.exit(2)

    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(args.seed)
    train_ids = torch.randint(0, vocab, (args.batch, args.seq_len), generator=generator)
    prompt = torch.randint(0, vocab, (1, args.prompt_len), generator=generator)

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)

    def train_step():
        loss = model(input_ids=train_ids, labels=train_ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train, train_samples = timed(train_step, args.repeats, args.warmup)
    optimizer = None

    model.eval()

    @torch.no_grad()
    def prefill():
        model(input_ids=prompt, use_cache=True)

    @torch.no_grad()
    def decode():
        out = model(input_ids=prompt, use_cache=True)
        cache = out.cache
        token = out.logits[:, -1:].argmax(dim=-1)
        start = time.perf_counter()
        for _ in range(args.decode_tokens):
            out = model(input_ids=token, cache=cache, use_cache=True)
            cache = out.cache
            token = out.logits[:, -1:].argmax(dim=-1)
        return time.perf_counter() - start

    prefill_time, prefill_samples = timed(prefill, args.repeats, args.warmup)
    decode_time, decode_samples = timed(decode, args.repeats, args.warmup)

    train_tokens = args.batch * args.seq_len
    result = {
        "peer": f"pytorch {torch.__version__}, transformers {transformers.__version__}",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "model": {
            "model_type": model.config.model_type,
            "hidden_size": model.config.hidden_size,
            "num_hidden_layers": model.config.num_hidden_layers,
            "num_attention_heads": model.config.num_attention_heads,
            "num_key_value_heads": getattr(model.config, "num_key_value_heads", model.config.num_attention_heads),
            "intermediate_size": getattr(model.config, "intermediate_size", None),
            "vocab_size": vocab,
            "tie_word_embeddings": getattr(model.config, "tie_word_embeddings", None),
            "parameters": sum(p.numel() for p in model.parameters()),
            "attn_implementation": model.config._attn_implementation,
            "dtype": "float32",
        },
        "settings": {
            "batch": args.batch,
            "seq_len": args.seq_len,
            "prompt_len": args.prompt_len,
            "decode_tokens": args.decode_tokens,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "seed": args.seed,
        },
        "train_step": {
            "ms": train * 1e3,
            "tokens_per_s": train_tokens / train,
            "samples_ms": [s * 1e3 for s in train_samples],
        },
        "prefill": {
            "ms": prefill_time * 1e3,
            "tokens_per_s": args.prompt_len / prefill_time,
            "samples_ms": [s * 1e3 for s in prefill_samples],
        },
        "decode": {
            "ms": decode_time * 1e3,
            "ms_per_token": decode_time * 1e3 / args.decode_tokens,
            "tokens_per_s": args.decode_tokens / decode_time,
            "samples_ms": [s * 1e3 for s in decode_samples],
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
