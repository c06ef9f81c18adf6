"""Which ops ONNX Runtime (CPU, all graph optimizations) runs for a model.

    python3 onnx_optimized_ops.py MODEL.onnx RESULT.json

RESULT: {"ops": {op_type: count}} of the optimized graph that ORT writes
through `SessionOptions.optimized_model_filepath` (domain-qualified as
"com.microsoft.MatMulIntegerToFloat" outside the default domain).
"""
import json
import os
import sys
import tempfile

import onnx
import onnxruntime as ort

model_path, result_path = sys.argv[1:3]
with tempfile.TemporaryDirectory() as directory:
    optimized_path = os.path.join(directory, "optimized.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = optimized_path
    ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(optimized_path)

ops = {}
for node in optimized.graph.node:
    name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
    ops[name] = ops.get(name, 0) + 1
with open(result_path, "w", encoding="utf-8") as f:
    json.dump({"ops": ops}, f)
