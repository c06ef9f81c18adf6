"""Drives an exported decoder with a KV cache in ONNX Runtime (CPU), as a
generation loop does: each step feeds the previous step's `present.{i}.*`
back as `past_key_values.{i}.*` (empty, past length 0, at the first step).

    python3 onnx_decoder_loop.py REQUEST.json RESULT.json

REQUEST: {"models": [{"path": "MODEL.onnx", "session_config": {key: value},
                      "sequences": [{"steps": [{"input_ids": [[...], ...], "attention_mask": [[...], ...]}, ...]}, ...]}, ...],
          "optimization": "all"|"disabled", "threads": 1}
         Each model is checked with onnx.checker; each sequence starts from an empty cache; a step's
         attention_mask covers past + new tokens. Several models share one Python start.
RESULT:  {"models": [{"sequences": [{"steps": [{"logits": {"shape": [...], "data": [...]}, "present_length": N}]}]}]}
Exit 3 when onnx or onnxruntime cannot be imported.
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

request_path, result_path = sys.argv[1:3]
with open(request_path, encoding="utf-8") as f:
    request = json.load(f)


def run_model(spec):
    onnx.checker.check_model(onnx.load(spec["path"]), full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(request.get("threads", 1))
    if request.get("optimization", "all") == "disabled":
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for key, value in spec.get("session_config", {}).items():
        options.add_session_config_entry(key, str(value))
    session = ort.InferenceSession(spec["path"], options, providers=["CPUExecutionProvider"])
    past_inputs = [i for i in session.get_inputs() if i.name.startswith("past_key_values.")]
    output_names = [o.name for o in session.get_outputs()]
    sequences = []
    for sequence in spec["sequences"]:
        past = None
        steps = []
        for step in sequence["steps"]:
            ids = np.asarray(step["input_ids"], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.asarray(step["attention_mask"], dtype=np.int64)}
            for past_input in past_inputs:
                if past is None:
                    heads, dim = past_input.shape[1], past_input.shape[3]
                    feeds[past_input.name] = np.zeros((ids.shape[0], heads, 0, dim), dtype=np.float32)
                else:
                    feeds[past_input.name] = past[past_input.name.replace("past_key_values.", "present.")]
            values = dict(zip(output_names, session.run(output_names, feeds)))
            past = values
            logits = values["logits"]
            present_lengths = {v.shape[2] for k, v in values.items() if k.startswith("present.")}
            steps.append({
                "logits": {"shape": list(logits.shape), "data": logits.reshape(-1).astype(np.float64).tolist()},
                "present_length": present_lengths.pop() if len(present_lengths) == 1 else -1,
            })
        sequences.append({"steps": steps})
    return {"sequences": sequences}


results = [run_model(spec) for spec in request["models"]]

with open(result_path, "w", encoding="utf-8") as f:
    json.dump({"models": results}, f)
