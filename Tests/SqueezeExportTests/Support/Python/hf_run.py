"""Loads Hugging Face checkpoint directories with transformers (CPU, float32, eval) and runs them.

    python3 hf_run.py REQUEST.json RESULT.json

REQUEST: {"jobs": [JOB, ...]}, each JOB one of
  {"kind": "logits", "dir": D, "auto": "sequence-classification"|"causal-lm",
   "batches": [{"input_ids": [[...]], "attention_mask": [[...]]?, "token_type_ids": [[...]]?}], "dequantize": bool?}
      -> {"class": model class name, "batches": [{"shape": [...], "data": [...]}]}
  {"kind": "tokenize", "dir": D, "texts": [...], "max_length": N?}
      -> {"class": tokenizer class name, "ids": [[...], ...]}
  {"kind": "dequantize", "dir": D, "modules": [...]}
      -> {"weights": {module: {"shape": [...], "data": [...]}}}: compressed-tensors' own
         decompression (PackedQuantizationCompressor.decompress) of each module's stored tensors.
RESULT:  {"versions": {...}, "jobs": [{"ok": true, ...} | {"ok": false, "error": "..."}]}
Torch is imported once for all jobs (it takes seconds). Exit 3 when an import fails.
"""
import contextlib
import io
import json
import os
import shutil
import sys
import traceback

try:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
except Exception as error:  # noqa: BLE001
    print(f"cannot import torch/transformers: {error}", file=sys.stderr)
    sys.exit(3)

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()


def flat(tensor):
    tensor = tensor.detach().to(torch.float32).contiguous()
    return {"shape": list(tensor.shape), "data": tensor.reshape(-1).tolist()}


def logits(job):
    auto = {"sequence-classification": AutoModelForSequenceClassification, "causal-lm": AutoModelForCausalLM}[job["auto"]]
    options = {}
    if job.get("dequantize"):
        # transformers 5.25 + compressed-tensors 0.20 load a packed asymmetric zero point only this way.
        from transformers import CompressedTensorsConfig

        options["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    model = auto.from_pretrained(job["dir"], dtype=torch.float32, **options).eval()
    batches = []
    with torch.no_grad():
        for batch in job["batches"]:
            inputs = {name: torch.tensor(values, dtype=torch.long) for name, values in batch.items()}
            batches.append(flat(model(**inputs).logits))
    return {"class": type(model).__name__, "batches": batches}


def tokenize(job):
    tokenizer = AutoTokenizer.from_pretrained(job["dir"])
    ids = []
    for text in job["texts"]:
        options = {"truncation": True, "max_length": job["max_length"]} if job.get("max_length") else {}
        ids.append(tokenizer(text, **options)["input_ids"])
    return {"class": type(tokenizer).__name__, "ids": ids}


def dequantize(job):
    from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
    from compressed_tensors.quantization import QuantizationScheme
    from safetensors import safe_open

    with open(job["dir"] + "/config.json", encoding="utf-8") as f:
        section = json.load(f)["quantization_config"]
    assert section["format"] == "pack-quantized", section["format"]
    group = section["config_groups"]["group_0"]
    scheme = QuantizationScheme(targets=group["targets"], weights=group["weights"])
    weights = {}
    with safe_open(job["dir"] + "/model.safetensors", "pt") as f:
        names = set(f.keys())
        for module in job["modules"]:
            state = {
                suffix: f.get_tensor(f"{module}.{suffix}")
                for suffix in ("weight_packed", "weight_scale", "weight_zero_point", "weight_shape")
                if f"{module}.{suffix}" in names
            }
            weights[module] = flat(PackedQuantizationCompressor.decompress(state, scheme)["weight"])
    return {"weights": weights}


request_path, result_path = sys.argv[1:3]
with open(request_path, encoding="utf-8") as f:
    request = json.load(f)
results = []
for job in request["jobs"]:
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            result = {"logits": logits, "tokenize": tokenize, "dequantize": dequantize}[job["kind"]](job)
        result["ok"] = True
    except Exception:  # noqa: BLE001
        # transformers prints its load report (which tensors failed and why) before raising.
        result = {"ok": False, "error": printed.getvalue()[-3000:] + traceback.format_exc()[-3000:]}
        if os.environ.get("HF_RUN_KEEP"):
            # For debugging a failing load: a copy of the directory survives the test's temporary one.
            shutil.copytree(job["dir"], os.path.join(os.environ["HF_RUN_KEEP"], os.path.basename(job["dir"])), dirs_exist_ok=True)
    results.append(result)
versions = {"torch": torch.__version__, "transformers": transformers.__version__}
try:
    import compressed_tensors

    versions["compressed_tensors"] = compressed_tensors.__version__
except Exception:  # noqa: BLE001
    pass
with open(result_path, "w", encoding="utf-8") as f:
    json.dump({"versions": versions, "jobs": results}, f)
