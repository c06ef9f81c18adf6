#!/usr/bin/env python3
"""Serves squeeze's ONNX exports with ONNX Runtime and sets them beside squeeze's own eval.

    ort_serving.py --run RUN_DIR --test TEST_TSV NAME=EXPORT_DIR ... [--threads 2] [--repeats 10]

RUN_DIR is the `squeeze run` of Benchmarks/export/serving.yaml that made the exports and
evaluated the same models with `eval/classification` in this session; its `eval` metrics are
squeeze's side. Each EXPORT_DIR holds model.onnx and vocab.txt (export/onnx).

For every model, the way squeeze's eval measures it:
- accuracy over every sentence of TEST_TSV, one sentence at a time at its own length
  (WordPiece from the export's vocab.txt via `tokenizers`, lowercase, truncated to
  --max-seq-len with [CLS]/[SEP]), and the confusion matrix;
- batch-1 latency: the first --latency-samples test sentences one at a time after one
  warm-up; p50 and p95;
- the fixed shape: one batch of 32 x 64 random ids (numpy seed 0, ids in [1000, vocab),
  mask all ones), 2 warm-ups, then --repeats rounds that run the models in turn
  (round-robin, as squeeze's eval interleaves them); the median.
ORT: CPUExecutionProvider, intra-op threads --threads, inter-op 1, ORT_ENABLE_ALL.
Prints a Markdown table and, with --json, the numbers.
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import onnxruntime as ort
from tokenizers import BertWordPieceTokenizer


def cpu_description():
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if ":" in line:
                    key, value = (part.strip() for part in line.split(":", 1))
                    if key in ("model name", "cpu family", "model") and key not in fields:
                        fields[key] = value
    except OSError:
        pass
    return f'{fields.get("model name", platform.processor())}, family {fields.get("cpu family", "?")}, model {fields.get("model", "?")}, {os.cpu_count()} cores'


def read_test(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        text_column, label_column = header.index("sentence"), header.index("label")
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) > max(text_column, label_column):
                rows.append((parts[text_column], int(parts[label_column])))
    return rows


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def feeds(sess, ids, mask):
    names = {i.name for i in sess.get_inputs()}
    out = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        out["token_type_ids"] = np.zeros_like(ids)
    return {k: v for k, v in out.items() if k in names}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", help="NAME=EXPORT_DIR")
    parser.add_argument("--run", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with open(os.path.join(args.run, "run.json"), encoding="utf-8") as f:
        record = json.load(f)
    squeeze = next(s for s in record["stages"] if s["id"] == "eval")["metrics"]
    rows = read_test(args.test)

    models = {}
    for spec in args.models:
        name, directory = spec.split("=", 1)
        tokenizer = BertWordPieceTokenizer(os.path.join(directory, "vocab.txt"), lowercase=True)
        tokenizer.enable_truncation(args.max_seq_len)
        models[name] = (session(os.path.join(directory, "model.onnx"), args.threads), tokenizer)

    results = {}
    for name, (sess, tokenizer) in models.items():
        encodings = tokenizer.encode_batch([text for text, _ in rows])
        confusion = [[0, 0], [0, 0]]
        for encoding, (_, label) in zip(encodings, rows):
            ids = np.asarray([encoding.ids], dtype=np.int64)
            logits = sess.run(["logits"], feeds(sess, ids, np.ones_like(ids)))[0]
            confusion[label][int(np.argmax(logits[0]))] += 1
        correct = confusion[0][0] + confusion[1][1]
        times = []
        for index in range(-1, args.latency_samples):
            ids = np.asarray([encodings[max(index, 0) % len(encodings)].ids], dtype=np.int64)
            started = time.perf_counter()
            sess.run(["logits"], feeds(sess, ids, np.ones_like(ids)))
            if index >= 0:
                times.append(time.perf_counter() - started)
        times.sort()
        rank = lambda q: times[min(max(int(np.ceil(q * len(times))) - 1, 0), len(times) - 1)]  # noqa: E731
        results[name] = {
            "accuracy": correct / len(rows), "correct": correct, "confusion": confusion,
            "latency_b1_p50_ms": rank(0.5) * 1000, "latency_b1_p95_ms": rank(0.95) * 1000,
            "onnx_bytes": os.path.getsize(os.path.join(dict(s.split("=", 1) for s in args.models)[name], "model.onnx")),
        }

    draw = np.random.default_rng(0)
    vocab = min(tok.get_vocab_size() for _, tok in models.values())
    ids = draw.integers(1000, vocab, size=(32, 64), dtype=np.int64)
    mask = np.ones_like(ids)
    samples = {name: [] for name in models}
    for round_index in range(2 + args.repeats):
        for name, (sess, _) in models.items():
            started = time.perf_counter()
            sess.run(["logits"], feeds(sess, ids, mask))
            if round_index >= 2:
                samples[name].append(time.perf_counter() - started)
    for name in models:
        results[name]["latency_b32_t64_ms"] = statistics.median(samples[name]) * 1000

    examples = len(rows)
    print(f"CPU: {cpu_description()}; onnxruntime {ort.__version__}, {args.threads} intra-op threads; run {record['id']}")
    print()
    print("| model | squeeze accuracy | ORT accuracy | Δ sentences | squeeze B=1 p50 | ORT B=1 p50 | squeeze B=32×64 | ORT B=32×64 | ORT / squeeze (B=32×64) | model.onnx |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, result in results.items():
        s_acc = squeeze.get(f"{name}.accuracy")
        s_b1 = squeeze.get(f"{name}.latency_b1_p50_ms")
        s_b32 = squeeze.get(f"{name}.latency_b32_t64_ms")
        delta = "" if s_acc is None else f"{result['correct'] - round(s_acc * examples):+d}"
        ratio = "" if not s_b32 else f"{result['latency_b32_t64_ms'] / s_b32:.2f}×"
        fmt = lambda v, unit="": "" if v is None else f"{v:.2f}{unit}"  # noqa: E731
        print(f"| {name} | {fmt(s_acc and s_acc * 100, '%')} | {result['accuracy'] * 100:.2f}% | {delta} | "
              f"{fmt(s_b1, ' ms')} | {result['latency_b1_p50_ms']:.2f} ms | {fmt(s_b32, ' ms')} | "
              f"{result['latency_b32_t64_ms']:.2f} ms | {ratio} | {result['onnx_bytes'] / 1e6:.1f} MB |")
    if args.json:
        print(json.dumps({"cpu": cpu_description(), "run": record["id"], "ort": results,
                          "squeeze": {k: v for k, v in squeeze.items() if isinstance(v, (int, float))}}))


if __name__ == "__main__":
    main()
