#!/usr/bin/env python3
"""The ONNX Runtime peer for `squeeze bench quantized-bert`: the same BERT, fp32 and int8, in ORT.

    ort_peer.py MODEL_DIR [--threads 2] [--rounds 10] [--warmup 2] [--json]

Builds an ONNX graph (opset 17) of the BERT encoder + pooler (tanh dense on token 0) + a
2-label classifier straight from the checkpoint's safetensors with `onnx.helper`: Gather
embeddings (word + position + token type 0), LayerNormalization, MatMul + Add per linear,
12-head attention (scaled QK^T + additive mask, Softmax), exact erf GELU, residuals.
Inputs: input_ids and attention_mask, int64 [B, T]; outputs: logits [B, 2] and
last_hidden_state [B, T, H].

The checkpoint has no classifier weights (a BertModel: encoder + pooler only), so the
classifier is random, normal(0, 0.02) from numpy seed 0, zero bias: enough for timing and
for comparing the int8 models with fp32, not for accuracy.

Then:
1. parity: the fp32 model's last hidden state against the project's numpy oracle
   (../shared/tools/bert_reference.py, run as a subprocess) on 2 x 16 tokens, one row
   padded; exits 1 when the max abs difference exceeds 1e-3;
2. quantizes with onnxruntime.quantization: static (QDQ, per-channel int8 weights, u8
   activations, MatMul outputs left f32, MinMax calibration on 4 random batches of 8 x 64
   tokens) and dynamic
   (int8 weights, per channel). Only the linear layers' MatMuls are quantized; the attention
   products (QK^T, PV) stay fp32, as in squeeze's int8 model. Reports each int8 model's
   logits (max abs difference, argmax agreement) and last hidden state (max abs difference,
   mean cosine per token) against fp32 on 16 x 64 random tokens;
3. times fp32, static int8 and dynamic int8 InferenceSessions (CPUExecutionProvider,
   intra-op threads = --threads, inter-op 1, ORT_ENABLE_ALL) at batch 32 x 64 and batch
   1 x 32 random ids (>= 1000, no padding), `--warmup` untimed rounds, then `--rounds`
   rounds at batch 32 (10x as many at batch 1), each running the three models in turn;
   medians, and ratios fp32 / int8 as the median of per-round ratios, like squeeze's bench.
"""
import argparse
import json
import math
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

DEFAULT_ORACLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/tools/bert_reference.py")
PARITY_TOLERANCE = 1e-3
# Products take u8 activations x s8 weights to f32 (ORT fuses them into MatMulIntegerToFloat), as
# squeeze's quantizedLinear does; quantizing the MatMul outputs too (QLinearMatMul, before the bias)
# and sharing one Q/DQ pair with the f32 residual consumers cost accuracy: mean cosine of the last
# hidden state to fp32 0.86 instead of 0.98 on this checkpoint.
STATIC_EXTRA_OPTIONS = {"OpTypesToExcludeOutputQuantization": ["MatMul"], "DedicatedQDQPair": True}
NUM_LABELS = 2
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def load_safetensors(path):
    """name -> numpy array; a safetensors file is an 8-byte header length, a JSON header, raw data."""
    with open(path, "rb") as f:
        (header_length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_length))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_length)
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[begin:end].view(SAFETENSORS_DTYPES[entry["dtype"]])
        tensors[name] = np.array(raw).reshape(entry["shape"])
    return tensors


class GraphBuilder:
    """Collects nodes and initializers; every helper returns the name of its output."""

    def __init__(self):
        self.nodes = []
        self.initializers = []
        self.counter = 0

    def fresh(self, stem):
        self.counter += 1
        return f"{stem}_{self.counter}"

    def constant(self, stem, array):
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, stem, name=None, output=None, **attributes):
        output = output or self.fresh(stem)
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name or output, **attributes))
        return output

    def linear(self, x, weight, bias, stem, output=None):
        """x @ weight.T + bias with a [in, out] initializer, as ORT's quantizers expect for MatMul."""
        w = self.constant(stem + ".weight_t", np.ascontiguousarray(weight.T.astype(np.float32)))
        b = self.constant(stem + ".bias", bias.astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, w], stem + ".matmul", name=stem + "/linear"), b], stem, output=output)

    def layer_norm(self, x, weight, bias, eps, stem, output=None):
        w = self.constant(stem + ".weight", weight.astype(np.float32))
        b = self.constant(stem + ".bias", bias.astype(np.float32))
        return self.op("LayerNormalization", [x, w, b], stem, output=output, axis=-1, epsilon=eps)


def build_bert_classifier(model_dir):
    """The ONNX ModelProto of BERT + pooler + a random 2-label classifier, from MODEL_DIR."""
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    tensors = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""

    def t(name):
        return tensors[prefix + name]

    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    g = GraphBuilder()
    zero = g.constant("zero", np.array(0, np.int64))
    one = g.constant("one", np.array(1, np.int64))
    one_f = g.constant("one_f", np.array(1.0, np.float32))

    # Embeddings: word[ids] + position[0:T] + token_type[0].
    words = g.op("Gather", [g.constant("word_embeddings", t("embeddings.word_embeddings.weight")), "input_ids"], "words")
    length = g.op("Gather", [g.op("Shape", ["input_ids"], "ids_shape"), one], "length", axis=0)
    positions = g.op(
        "Gather",
        [
            g.constant("position_embeddings", t("embeddings.position_embeddings.weight")),
            g.op("Range", [zero, length, one], "position_ids"),
        ],
        "positions",
        axis=0,
    )
    token_type = g.constant("token_type_0", t("embeddings.token_type_embeddings.weight")[0])
    x = g.op("Add", [g.op("Add", [words, positions], "embed"), token_type], "embed")
    x = g.layer_norm(x, t("embeddings.LayerNorm.weight"), t("embeddings.LayerNorm.bias"), eps, "embeddings.LayerNorm")

    # Additive mask [B, 1, 1, T]: 0 for tokens, -1e9 for padding (as the oracle).
    mask = g.op("Cast", ["attention_mask"], "mask_f32", to=TensorProto.FLOAT)
    mask = g.op("Mul", [g.op("Sub", [one_f, mask], "mask_inv"), g.constant("neg", np.array(-1e9, np.float32))], "mask_add")
    mask = g.op("Unsqueeze", [mask, g.constant("axes", np.array([1, 2], np.int64))], "mask_bias")

    split_heads = g.constant("heads_shape", np.array([0, 0, heads, head_dim], np.int64))
    merge_heads = g.constant("merged_shape", np.array([0, 0, hidden], np.int64))
    scale = g.constant("scale", np.array(1.0 / math.sqrt(head_dim), np.float32))
    sqrt2 = g.constant("sqrt2", np.array(math.sqrt(2.0), np.float32))
    half = g.constant("half", np.array(0.5, np.float32))

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(inp, name):
            return g.linear(inp, t(p + name + ".weight"), t(p + name + ".bias"), p + name)

        def heads_of(y, perm, stem):
            return g.op("Transpose", [g.op("Reshape", [y, split_heads], stem + "_split")], stem, perm=perm)

        q = heads_of(g.op("Mul", [lin(x, "attention.self.query"), scale], p + "q_scaled"), [0, 2, 1, 3], p + "q")
        k_t = heads_of(lin(x, "attention.self.key"), [0, 2, 3, 1], p + "k_t")
        v = heads_of(lin(x, "attention.self.value"), [0, 2, 1, 3], p + "v")
        scores = g.op("MatMul", [q, k_t], p + "scores", name=p + "attention/qk")
        probs = g.op("Softmax", [g.op("Add", [scores, mask], p + "scores_masked")], p + "probs", axis=-1)
        context = g.op("MatMul", [probs, v], p + "context", name=p + "attention/pv")
        context = g.op("Reshape", [g.op("Transpose", [context], p + "context_t", perm=[0, 2, 1, 3]), merge_heads], p + "context_merged")
        x = g.layer_norm(
            g.op("Add", [x, lin(context, "attention.output.dense")], p + "attn_residual"),
            t(p + "attention.output.LayerNorm.weight"), t(p + "attention.output.LayerNorm.bias"), eps,
            p + "attention.output.LayerNorm")
        h = lin(x, "intermediate.dense")
        # x * 0.5 * (1 + erf(x / sqrt 2)): the pattern ORT's GeluFusion recognises (as exported from PyTorch).
        erf = g.op("Erf", [g.op("Div", [h, sqrt2], p + "gelu_scaled")], p + "gelu_erf")
        h = g.op("Mul", [g.op("Mul", [h, half], p + "gelu_half"), g.op("Add", [erf, one_f], p + "gelu_1p")], p + "gelu")
        x = g.layer_norm(
            g.op("Add", [x, lin(h, "output.dense")], p + "ffn_residual"),
            t(p + "output.LayerNorm.weight"), t(p + "output.LayerNorm.bias"), eps, p + "output.LayerNorm",
            output="last_hidden_state" if i == config["num_hidden_layers"] - 1 else None)

    cls = g.op("Gather", [x, zero], "cls", axis=1)
    pooled = g.op("Tanh", [g.linear(cls, t("pooler.dense.weight"), t("pooler.dense.bias"), "pooler.dense")], "pooled")
    rng = np.random.default_rng(0)
    classifier_weight = rng.normal(0.0, 0.02, size=(NUM_LABELS, hidden)).astype(np.float32)
    g.linear(pooled, classifier_weight, np.zeros(NUM_LABELS, np.float32), "classifier", output="logits")

    graph = helper.make_graph(
        g.nodes,
        "bert_classifier",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", NUM_LABELS]),
            helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", hidden]),
        ],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="squeeze-ort-peer")
    model.ir_version = 8
    onnx.checker.check_model(model)
    # Shapes in value_info let ORT's optimizer fuse SkipLayerNormalization (the quantizers infer them too).
    return onnx.shape_inference.infer_shapes(model), config


def attention_nodes(model):
    """The activation x activation products, kept fp32 like squeeze's int8 model."""
    return [n.name for n in model.graph.node if n.name.endswith("attention/qk") or n.name.endswith("attention/pv")]


def random_ids(rng, batch, tokens, vocab):
    low = 1000 if vocab > 1000 else 0
    return rng.integers(low, vocab, size=(batch, tokens), dtype=np.int64)


def feed(ids, mask=None):
    return {"input_ids": ids, "attention_mask": np.ones_like(ids) if mask is None else mask}


class RandomTokens(CalibrationDataReader):
    def __init__(self, batches):
        self.batches = iter(batches)

    def get_next(self):
        return next(self.batches, None)


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def check_parity(fp32, oracle, model_dir, workdir):
    """Max abs difference of the last hidden state against the numpy oracle on 2 x 16 tokens."""
    ids = np.array(
        [[101] + list(range(2000, 2014)) + [102], [101] + list(range(3000, 3008)) + [102] + [0] * 6], np.int64)
    mask = (ids != 0).astype(np.int64)
    ids_path = os.path.join(workdir, "ids.json")
    out_path = os.path.join(workdir, "oracle.npy")
    with open(ids_path, "w") as f:
        json.dump({"input_ids": ids.tolist(), "attention_mask": mask.tolist()}, f)
    subprocess.run([sys.executable, oracle, model_dir, ids_path, out_path], check=True)
    expected = np.load(out_path)
    (actual,) = fp32.run(["last_hidden_state"], feed(ids, mask))
    return float(np.max(np.abs(actual - expected)))


def compare_outputs(reference, candidate, inputs):
    """An int8 model against fp32: logits (random head: small values) and the last hidden state."""
    want_logits, want_hidden = reference.run(["logits", "last_hidden_state"], inputs)
    got_logits, got_hidden = candidate.run(["logits", "last_hidden_state"], inputs)
    cosine = np.sum(want_hidden * got_hidden, -1) / (
        np.linalg.norm(want_hidden, axis=-1) * np.linalg.norm(got_hidden, axis=-1))
    return {
        "logits_max_abs_diff": float(np.max(np.abs(got_logits - want_logits))),
        "fp32_logits_max_abs": float(np.max(np.abs(want_logits))),
        "argmax_agreement": float(np.mean(np.argmax(got_logits, -1) == np.argmax(want_logits, -1))),
        "hidden_max_abs_diff": float(np.max(np.abs(got_hidden - want_hidden))),
        "hidden_mean_cosine": float(np.mean(cosine)),
    }


def time_models(sessions, inputs, runs, warmup):
    """Seconds per model, rounds running every model in turn."""
    times = {name: [] for name in sessions}
    for round_index in range(warmup + runs):
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(["logits"], inputs)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds at batch 32 (batch 1 runs 10x)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--oracle", default=DEFAULT_ORACLE, help="the project's numpy reference (bert_reference.py)")
    args = parser.parse_args()
    if args.threads < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--threads and --rounds must be >= 1, --warmup >= 0")
    if not os.path.isfile(os.path.join(args.model_dir, "model.safetensors")):
        print(f"error: {args.model_dir}/model.safetensors is missing", file=sys.stderr)
        return 2
    if not os.path.isfile(args.oracle):
        print(f"error: the numpy oracle {args.oracle} is missing (see --oracle)", file=sys.stderr)
        return 2

    def log(message):
        print(f"== {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="ort-peer-") as workdir:
        log("building the ONNX graph")
        model, config = build_bert_classifier(args.model_dir)
        vocab = config["vocab_size"]
        paths = {name: os.path.join(workdir, f"{name}.onnx") for name in ("fp32", "static int8", "dynamic int8")}
        onnx.save(model, paths["fp32"])
        fp32 = session(paths["fp32"], args.threads)

        log("parity against bert_reference.py")
        parity = check_parity(fp32, args.oracle, args.model_dir, workdir)
        log(f"last hidden state max abs diff {parity:.2e}")
        if parity > PARITY_TOLERANCE:
            print(f"error: fp32 ONNX model differs from the oracle by {parity:.3e} > {PARITY_TOLERANCE}", file=sys.stderr)
            return 1

        rng = np.random.default_rng(0)
        excluded = attention_nodes(model)
        log("quantize_static (QDQ, per-channel s8 weights, u8 activations, f32 outputs, MinMax)")
        quantize_static(
            paths["fp32"], paths["static int8"],
            RandomTokens([feed(random_ids(rng, 8, 64, vocab)) for _ in range(4)]),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, extra_options=STATIC_EXTRA_OPTIONS)
        log("quantize_dynamic (per-channel s8 weights)")
        quantize_dynamic(
            paths["fp32"], paths["dynamic int8"], op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded,
            per_channel=True, weight_type=QuantType.QInt8)
        sessions = {"fp32": fp32}
        sessions.update({name: session(paths[name], args.threads) for name in ("static int8", "dynamic int8")})

        check_inputs = feed(random_ids(rng, 16, 64, vocab))
        accuracy = {name: compare_outputs(fp32, sessions[name], check_inputs) for name in ("static int8", "dynamic int8")}

        timings = []
        for batch, tokens, runs in [(32, 64, args.rounds), (1, 32, args.rounds * 10)]:
            log(f"timing B={batch} T={tokens}: {args.warmup} warm-up + {runs} rounds")
            times = time_models(sessions, feed(random_ids(rng, batch, tokens, vocab)), runs, args.warmup)
            row = {"batch": batch, "tokens": tokens, "rounds": runs}
            for name, samples in times.items():
                row[name] = statistics.median(samples)
                if name != "fp32":
                    row[name + " speedup"] = statistics.median(f / q for f, q in zip(times["fp32"], samples))
            timings.append(row)

    report = {
        "runner": f"onnxruntime {ort.__version__}",
        "onnx": onnx.__version__,
        "model": args.model_dir,
        "threads": args.threads,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu_name()}",
        "classifier": "random normal(0, 0.02), numpy seed 0 (the checkpoint has none)",
        "parity_last_hidden_max_abs_diff": parity,
        "int8_vs_fp32_16x64": accuracy,
        "timings": timings,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['runner']}, CPUExecutionProvider, {args.threads} threads, {args.model_dir}, "
          f"medians of {args.rounds} rounds (B=1: {args.rounds * 10})")
    print(f"fp32 vs numpy oracle: last hidden state max abs diff {parity:.2e}")
    for name, stats in accuracy.items():
        print(f"{name:<13} vs fp32 on 16x64: logits max abs diff {stats['logits_max_abs_diff']:.4f} "
              f"(fp32 logits up to {stats['fp32_logits_max_abs']:.4f}), argmax agreement {stats['argmax_agreement']:.1%}; "
              f"last hidden state max abs diff {stats['hidden_max_abs_diff']:.3f}, mean cosine {stats['hidden_mean_cosine']:.4f}")
    for row in timings:
        print(f"B={row['batch']} T={row['tokens']:<3} fp32 {row['fp32'] * 1e3:9.2f} ms"
              f"  static int8 {row['static int8'] * 1e3:9.2f} ms ({row['static int8 speedup']:.2f}x)"
              f"  dynamic int8 {row['dynamic int8'] * 1e3:9.2f} ms ({row['dynamic int8 speedup']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
