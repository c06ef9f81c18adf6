"""Times an exported decoder with a KV cache (`export/onnx`, kv_cache: true) in
ONNX Runtime on the CPU, as `squeeze bench decoder` times Squeeze's decode:
batch 1, a prefill of --prompt-len tokens, then --decode-tokens greedy
one-token steps feeding `present` back as `past`; each number the median of
--repeats runs after --warmup untimed ones.

    python3 ort_decode.py MODEL.onnx [--prompt-len 64] [--decode-tokens 32] [--threads 1] [--repeats 5]
        [--accuracy-level N]   # session.qdq_matmulnbits_accuracy_level (weight-only models)

Prints one JSON object: prefill_ms, decode_ms_per_token, tokens_per_second, and the session settings.
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--prompt-len", type=int, default=64)
parser.add_argument("--decode-tokens", type=int, default=32)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--repeats", type=int, default=5)
parser.add_argument("--warmup", type=int, default=1)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--accuracy-level", type=int, default=None)
args = parser.parse_args()

options = ort.SessionOptions()
options.intra_op_num_threads = args.threads
options.inter_op_num_threads = 1
if args.accuracy_level is not None:
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(args.accuracy_level))
session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
pasts = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
outputs = [o.name for o in session.get_outputs()]
vocabulary = session.get_outputs()[0].shape[-1]
prompt = np.random.default_rng(args.seed).integers(0, vocabulary, size=(1, args.prompt_len), dtype=np.int64)


def run_once():
    feeds = {"input_ids": prompt, "attention_mask": np.ones_like(prompt)}
    for spec in pasts:
        feeds[spec.name] = np.zeros((1, spec.shape[1], 0, spec.shape[3]), dtype=np.float32)
    start = time.perf_counter()
    values = dict(zip(outputs, session.run(outputs, feeds)))
    prefilled = time.perf_counter()
    length = args.prompt_len
    token = int(values["logits"][0, -1].argmax())
    for _ in range(args.decode_tokens):
        length += 1
        feeds = {"input_ids": np.array([[token]], dtype=np.int64), "attention_mask": np.ones((1, length), dtype=np.int64)}
        for spec in pasts:
            feeds[spec.name] = values[spec.name.replace("past_key_values.", "present.")]
        values = dict(zip(outputs, session.run(outputs, feeds)))
        token = int(values["logits"][0, -1].argmax())
    finished = time.perf_counter()
    return prefilled - start, (finished - prefilled) / args.decode_tokens


for _ in range(args.warmup):
    run_once()
runs = [run_once() for _ in range(args.repeats)]
prefill = statistics.median(r[0] for r in runs)
decode = statistics.median(r[1] for r in runs)
print(json.dumps({
    "model": os.path.basename(os.path.dirname(os.path.abspath(args.model))),
    "onnxruntime": ort.__version__,
    "threads": args.threads,
    "prompt_len": args.prompt_len,
    "decode_tokens": args.decode_tokens,
    "prefill_ms": round(prefill * 1e3, 3),
    "decode_ms_per_token": round(decode * 1e3, 3),
    "tokens_per_second": round(1 / decode, 1),
    "accuracy_level": args.accuracy_level,
    "load_average": os.getloadavg(),
}))
