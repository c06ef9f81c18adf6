#!/usr/bin/env python3
"""Table of the CoFi sparsity curve from squeeze run records (runs/<id>/run.json).

    summarize.py [--runs-dir runs] RUN_ID...       one row per pruned stage (instance) of
                                                   sst2-cofi.yaml / sst2-cofi-int8.yaml runs,
                                                   plain or swept (`pruned[sparsity=0.8]`)
    summarize.py --run-id-of LOG.jsonl             the run id in a `squeeze run --json` log
"""
import argparse
import json
import pathlib
import sys


def run_id_of(log):
    for line in pathlib.Path(log).read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "run_finished":
            return event["run"]["id"]
    sys.exit(f"{log}: no run_finished event (did the run fail?)")


def instance_values(stage_id):
    """`pruned[observer=mse,sparsity=0.8]` -> {"observer": "mse", "sparsity": "0.8"}."""
    if "[" not in stage_id or not stage_id.endswith("]"):
        return {}
    inner = stage_id[stage_id.index("[") + 1:-1]
    return dict(part.split("=", 1) for part in inner.split(",") if "=" in part)


def base_id(stage_id):
    return stage_id.split("[", 1)[0]


def rows(record):
    stages = record["stages"]
    stages = stages if isinstance(stages, list) else list(stages.values())
    metrics = {stage["id"]: stage.get("metrics", {}) for stage in stages}
    for stage_id, pruned in metrics.items():
        if base_id(stage_id) != "pruned":
            continue
        values = instance_values(stage_id)
        # The eval instance of the same combination; with an observer sweep, the mse one.
        evals = [i for i in metrics if base_id(i) == "eval"
                 and all(instance_values(i).get(k) == v for k, v in values.items())]
        evals.sort(key=lambda i: instance_values(i).get("observer") != "mse")
        evaluation = metrics[evals[0]] if evals else {}
        yield row(record, pruned, evaluation)


def row(record, pruned, evaluation):
    final = "recovered" if "recovered.accuracy" in evaluation else "pruned"
    teacher = evaluation.get("teacher.accuracy")
    accuracy = evaluation.get(f"{final}.accuracy")
    return {
        "target": pruned.get("target_sparsity"),
        "realised": pruned.get("realised_sparsity"),
        "params_m": evaluation.get(f"{final}.parameters", 0) / 1e6,
        "size_mb": evaluation.get(f"{final}.size_bytes", 0) / 1e6,
        "hidden": pruned.get("hidden_size"),
        "heads": pruned.get("layer_heads"),
        "ffn": pruned.get("layer_ffn_units"),
        "acc_pruned": evaluation.get("pruned.accuracy") if final == "recovered" else None,
        "dev_pruned": pruned.get("dev_accuracy"),
        "acc_final": accuracy,
        "final": final,
        "teacher": teacher,
        "drop": None if teacher is None or accuracy is None else teacher - accuracy,
        "speedup": evaluation.get(f"{final}.speedup_b32_t64"),
        "latency_ms": evaluation.get(f"{final}.latency_b32_t64_ms"),
        "int8_acc": evaluation.get("int8.accuracy"),
        "int8_speedup": evaluation.get("int8.speedup_b32_t64"),
        "run": record["id"],
    }


def points(value):
    return "—" if value is None else f"{100 * value:.2f}"


def percent(value):
    return "—" if value is None else f"{100 * value:.2f}%"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--run-id-of")
    parser.add_argument("runs", nargs="*")
    args = parser.parse_args()
    if args.run_id_of:
        print(run_id_of(args.run_id_of))
        return
    table = [r for run in args.runs
             for r in rows(json.loads((pathlib.Path(args.runs_dir) / run / "run.json").read_text()))]
    table.sort(key=lambda r: r["target"] or 0)
    print("| target | realised | params (M) | file (MB) | hidden | heads per layer | FFN per layer "
          "| dev acc. after pruning | test acc. after pruning | test acc. final | drop vs teacher "
          "| B32 T64 speedup | int8 test acc. | int8 speedup | run |")
    print("|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in table:
        def times(x):
            return "—" if x is None else f"{x:.2f}×"
        print(f"| {percent(r['target'])} | {percent(r['realised'])} | {r['params_m']:.2f} | {r['size_mb']:.1f} "
              f"| {r['hidden']} | {r['heads']} | {r['ffn']} | {percent(r['dev_pruned'])} | {percent(r['acc_pruned'])} "
              f"| {percent(r['acc_final'])} ({r['final']}) | {points(r['drop'])} | {times(r['speedup'])} "
              f"| {percent(r['int8_acc'])} | {times(r['int8_speedup'])} | {r['run']} |")
    teachers = {r["teacher"] for r in table if r["teacher"] is not None}
    for teacher in sorted(teachers):
        print(f"\nteacher test accuracy {percent(teacher)}")


if __name__ == "__main__":
    main()
