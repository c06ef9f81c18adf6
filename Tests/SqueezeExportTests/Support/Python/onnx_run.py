"""Checks an ONNX model with onnx.checker and runs it in ONNX Runtime (CPU).

    python3 onnx_run.py MODEL.onnx REQUEST.json RESULT.json

REQUEST: {"runs": [{"inputs": {name: {"dtype": "float32"|"int64"|..., "shape": [...], "data": [...]}}}],
          "optimization": "all"|"disabled" (default "all"), "threads": 1}
RESULT:  {"opset": N, "ir_version": N, "runs": [{"outputs": {name: {"shape": [...], "data": [...]}}}],
          "providers": [...]}
Exit 3 when onnx or onnxruntime cannot be imported (the test skips or fails with the message).
"""
import json
import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except Exception as error:  # noqa: BLE001
    print(f"cannot import onnx/onnxruntime/numpy: {error}", file=sys.stderr)
    sys.exit(3)

model_path, request_path, result_path = sys.argv[1:4]
with open(request_path, encoding="utf-8") as f:
    request = json.load(f)

model = onnx.load(model_path)
onnx.checker.check_model(model, full_check=True)

options = ort.SessionOptions()
options.intra_op_num_threads = int(request.get("threads", 1))
if request.get("optimization", "all") == "disabled":
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])

runs = []
for run in request["runs"]:
    feeds = {
        name: np.asarray(spec["data"], dtype=spec["dtype"]).reshape(spec["shape"])
        for name, spec in run["inputs"].items()
    }
    names = [output.name for output in session.get_outputs()]
    values = session.run(names, feeds)
    runs.append({
        "outputs": {
            name: {"shape": list(value.shape), "data": value.reshape(-1).astype(np.float64 if value.dtype.kind == "f" else np.int64).tolist()}
            for name, value in zip(names, values)
        }
    })

with open(result_path, "w", encoding="utf-8") as f:
    json.dump({
        "opset": next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")),
        "ir_version": model.ir_version,
        "providers": session.get_providers(),
        "runs": runs,
    }, f)
