#!/usr/bin/env python3
"""Parity fixtures for the decoder-only models: tiny random checkpoints and what transformers computes from them.

    generate.py [--out DIR] [--check] [--check-only]

Each fixture is a folder under DIR (default: this script's folder) holding what
`save_pretrained(..., safe_serialization=True)` writes (config.json, generation_config.json,
model.safetensors or shards + model.safetensors.index.json) and expected.json:

    {"fixture": name, "transformers_version": ..., "torch_version": ...,
     "prompts": [[ids...] x 3],                    # lengths 1, 7, 13, ids in [0, vocab)
     "logits": [[[V floats] x T] x 3],             # the full forward pass, float32, model.eval()
     "greedy": [[32 ids] x 3],                     # model.generate(..., max_new_tokens=32, do_sample=False), new ids only
     "greedy_min_margin": [float x 3]}             # smallest top-1 minus top-2 logit over the 32 greedy steps

The random init is deliberately not transformers' own (N(0, 0.02) everywhere would make attention
uniform and logits ~0.1): every parameter is re-drawn, seeded, so that a wrong implementation shows
differences far above 1e-4:
  * linear / Conv1D weights N(0, 1/sqrt(fan_in)) (attention scores of order 1, so RoPE and masking matter),
  * token and position embeddings and the lm_head (tied or not) N(0, 0.3) (logits of order 1-10),
  * linear biases N(0, 0.1) (Qwen2's q/k/v biases, GPT-2's),
  * norm weights (RMSNorm, LayerNorm) U(0.5, 1.5), LayerNorm biases N(0, 0.1).
Floats are written with the shortest decimal that rounds back to the same float32.
Attention runs with the eager implementation, in float32, one thread: rerunning this script
rewrites the same bytes.

--check reloads every saved checkpoint with AutoModelForCausalLM.from_pretrained (float32) after
writing and compares its logits and greedy ids with expected.json; --check-only does only that,
on the fixtures already on disk. Exit status 1 when a check fails.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.pytorch_utils import Conv1D

VOCAB = 96
PROMPT_LENGTHS = (1, 7, 13)
PROMPT_SEED = 20261207
NEW_TOKENS = 32
PAD_ID = 0
# A reloaded checkpoint's weights are bit-identical, but where the mmapped tensors sit (their alignment)
# can steer BLAS to another kernel: logits of magnitude ~10 then move by an ulp or two (2.4e-6 seen).
CHECK_TOLERANCE = 1e-5

LLAMA_GQA = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    attention_bias=False,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=PAD_ID,
)


def llama_gqa():
    return LlamaForCausalLM(LlamaConfig(**LLAMA_GQA))


def llama_tied():
    config = dict(LLAMA_GQA, tie_word_embeddings=True, num_key_value_heads=4, rope_theta=500000.0)
    # Llama 3.1's rewrite keeps frequencies whose wavelength 2*pi/f is below original/high_freq_factor
    # (12 here), divides those above original/low_freq_factor (48) by factor and blends in between.
    # With head_dim 16 and theta 500000 the wavelengths are 6.3, 32.4, 168, ...: original 48 puts one
    # frequency in each branch (16 would leave the kept branch empty: 6.3 > 16/4).
    config["rope_scaling"] = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 48,
    }
    return LlamaForCausalLM(LlamaConfig(**config))


def llama_linear_rope():
    return LlamaForCausalLM(LlamaConfig(**LLAMA_GQA, rope_scaling={"rope_type": "linear", "factor": 2.0}))


def qwen2():
    config = {k: v for k, v in LLAMA_GQA.items() if k not in ("attention_bias",)}
    return Qwen2ForCausalLM(Qwen2Config(**dict(config, tie_word_embeddings=True)))


def mistral():
    config = {k: v for k, v in LLAMA_GQA.items() if k not in ("attention_bias",)}
    return MistralForCausalLM(MistralConfig(**config, sliding_window=4096))


def gpt2():
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=VOCAB,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=64,
            activation_function="gelu_new",
            bos_token_id=None,
            eos_token_id=None,
            pad_token_id=PAD_ID,
        )
    )


# name -> (builder, seed)
FIXTURES = {
    "llama-gqa": (llama_gqa, 1),
    "llama-tied": (llama_tied, 2),
    "llama-linear-rope": (llama_linear_rope, 3),
    "qwen2": (qwen2, 4),
    "mistral": (mistral, 5),
    "gpt2": (gpt2, 6),
}
# Derived from llama-gqa's weights: name -> how it is saved.
SHARDED = "llama-gqa-sharded"
BF16 = "llama-gqa-bf16"
SHARD_SIZE = "100KB"


def is_norm(module):
    return isinstance(module, torch.nn.LayerNorm) or type(module).__name__.endswith("RMSNorm")


@torch.no_grad()
def randomize(model, seed):
    """Re-draws every parameter (each once, tied ones included) from the distributions in the module doc."""
    generator = torch.Generator().manual_seed(seed)
    output_embeddings = model.get_output_embeddings().weight
    seen = set()
    for _, module in sorted(model.named_modules(), key=lambda item: item[0]):
        for name, parameter in sorted(module.named_parameters(recurse=False), key=lambda item: item[0]):
            if id(parameter) in seen:
                continue
            seen.add(id(parameter))
            shape = parameter.shape
            if is_norm(module):
                if name == "weight":
                    value = 0.5 + torch.rand(shape, generator=generator)
                else:
                    value = 0.1 * torch.randn(shape, generator=generator)
            elif isinstance(module, torch.nn.Embedding) or parameter is output_embeddings:
                # Tied or not, the token embeddings, the lm_head and GPT-2's position table.
                value = 0.3 * torch.randn(shape, generator=generator)
            elif isinstance(module, (torch.nn.Linear, Conv1D)) and name == "weight":
                # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
                fan_in = shape[0] if isinstance(module, Conv1D) else shape[1]
                value = torch.randn(shape, generator=generator) / fan_in**0.5
            elif name == "bias":
                value = 0.1 * torch.randn(shape, generator=generator)
            else:
                raise ValueError(f"no init rule for {type(module).__name__}.{name} {tuple(shape)}")
            parameter.copy_(value)


def prompts():
    generator = torch.Generator().manual_seed(PROMPT_SEED)
    return [torch.randint(0, VOCAB, (length,), generator=generator).tolist() for length in PROMPT_LENGTHS]


def prepare(model):
    model.eval()
    model.generation_config.eos_token_id = None
    model.generation_config.bos_token_id = None
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.do_sample = False
    return model


@torch.no_grad()
def outputs(model, prompt_ids):
    """Logits [T, V], 32 greedy ids and the smallest top-1/top-2 gap over them, per prompt."""
    logits, greedy, margins = [], [], []
    for ids in prompt_ids:
        input_ids = torch.tensor([ids])
        logits.append(model(input_ids).logits[0].to(torch.float32))
        generated = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        new_ids = generated.sequences[0, len(ids) :].tolist()
        if len(new_ids) != NEW_TOKENS:
            raise RuntimeError(f"generate returned {len(new_ids)} new ids, not {NEW_TOKENS}")
        greedy.append(new_ids)
        top2 = [torch.topk(step[0].to(torch.float32), 2).values for step in generated.scores]
        margins.append(min(float(t[0] - t[1]) for t in top2))
    return logits, greedy, margins


def f32(x):
    """The shortest decimal that reads back as the same float32."""
    return str(np.float32(x))


def write_expected(folder, name, prompt_ids, logits, greedy, margins):
    lines = [
        "{",
        f'  "fixture": {json.dumps(name)},',
        f'  "transformers_version": {json.dumps(transformers.__version__)},',
        f'  "torch_version": {json.dumps(torch.__version__)},',
        f'  "prompts": {json.dumps(prompt_ids)},',
        f'  "greedy": {json.dumps(greedy)},',
        f'  "greedy_min_margin": [{", ".join(f32(m) for m in margins)}],',
        '  "logits": [',
    ]
    for p, matrix in enumerate(logits):
        lines.append("    [")
        rows = matrix.tolist()
        for t, row in enumerate(rows):
            comma = "," if t + 1 < len(rows) else ""
            lines.append("      [" + ",".join(f32(v) for v in row) + "]" + comma)
        lines.append("    ]" + ("," if p + 1 < len(logits) else ""))
    lines += ["  ]", "}"]
    with open(os.path.join(folder, "expected.json"), "w") as f:
        f.write("\n".join(lines) + "\n")


def save(model, folder, **kwargs):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True, **kwargs)


def load(folder):
    return prepare(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager"))


def generate(out):
    prompt_ids = prompts()
    for name, (build, seed) in FIXTURES.items():
        torch.manual_seed(seed)
        model = build()
        model.config._attn_implementation = "eager"
        randomize(model, seed)
        prepare(model)
        folder = os.path.join(out, name)
        save(model, folder)
        logits, greedy, margins = outputs(model, prompt_ids)
        write_expected(folder, name, prompt_ids, logits, greedy, margins)
        report(name, logits, margins)
        if name == "llama-gqa":
            save(model, os.path.join(out, SHARDED), max_shard_size=SHARD_SIZE)
            write_expected(os.path.join(out, SHARDED), SHARDED, prompt_ids, logits, greedy, margins)
            report(SHARDED, logits, margins)
            # Expected outputs of the bf16 checkpoint come from reading it back widened to float32,
            # which is what a loader that widens bf16 to f32 computes.
            save(model.to(torch.bfloat16), os.path.join(out, BF16))
            widened = load(os.path.join(out, BF16))
            logits, greedy, margins = outputs(widened, prompt_ids)
            write_expected(os.path.join(out, BF16), BF16, prompt_ids, logits, greedy, margins)
            report(BF16, logits, margins)


def report(name, logits, margins):
    values = torch.cat([m.flatten() for m in logits])
    print(
        f"{name:18s} logits std {values.std():.3f} max |x| {values.abs().max():.3f}; "
        f"smallest greedy margin {min(margins):.4f}",
        file=sys.stderr,
    )


def check(out):
    """Reloads every fixture from disk and compares with its expected.json; returns whether all agree."""
    ok = True
    for name in list(FIXTURES) + [SHARDED, BF16]:
        folder = os.path.join(out, name)
        with open(os.path.join(folder, "expected.json")) as f:
            expected = json.load(f)
        logits, greedy, _ = outputs(load(folder), expected["prompts"])
        worst = max(
            float((got - torch.tensor(want, dtype=torch.float32)).abs().max())
            for got, want in zip(logits, expected["logits"])
        )
        same_greedy = greedy == expected["greedy"]
        passed = worst <= CHECK_TOLERANCE and same_greedy
        ok = ok and passed
        print(
            f"check {name:18s} max |logits - expected| {worst:.3g}, greedy {'same' if same_greedy else 'DIFFERENT'}: "
            f"{'ok' if passed else 'FAILED'}",
            file=sys.stderr,
        )
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    parser.add_argument("--check", action="store_true", help="reload the written fixtures and compare")
    parser.add_argument("--check-only", action="store_true", help="only compare the fixtures on disk")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    if not args.check_only:
        generate(args.out)
    if (args.check or args.check_only) and not check(args.out):
        sys.exit(1)


if __name__ == "__main__":
    main()
