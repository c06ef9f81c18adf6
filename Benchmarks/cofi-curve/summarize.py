#!/usr/bin/env python3
"""Table of the CoFi sparsity curve from squeeze run records (runs/<id>/run.json).

    summarize.py [--runs-dir runs] RUN_ID...       one row per run of sst2-cofi.yaml
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


def stage_metrics(record):
    stages = record["stages"]
    stages = stages if isinstance(stages, list) else list(stages.values())
    return {stage["id"]: stage.get("metrics", {}) for stage in stages}


def row(record):
    metrics = stage_metrics(record)
    pruned, evaluation = metrics.get("pruned", {}), metrics.get("eval", {})
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
        "acc_pruned": evaluation.get("pruned.accuracy"),
        "acc_final": accuracy,
        "final": final,
        "teacher": teacher,
        "drop": None if teacher is None or accuracy is None else teacher - accuracy,
        "speedup": evaluation.get(f"{final}.speedup_b32_t64"),
        "latency_ms": evaluation.get(f"{final}.latency_b32_t64_ms"),
        "run": record["id"],
    }


def percent(value):
    return "—" if value is None else f"{100 * value:.2f}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--run-id-of")
    parser.add_argument("runs", nargs="*")
    args = parser.parse_args()
    if args.run_id_of:
        print(run_id_of(args.run_id_of))
        return
    rows = [row(json.loads((pathlib.Path(args.runs_dir) / run / "run.json").read_text())) for run in args.runs]
    rows.sort(key=lambda r: r["target"] or 0)
    print("| target | realised | params (M) | file (MB) | hidden | heads per layer | FFN per layer "
          "| test acc. after pruning | test acc. final | drop vs teacher | B32 T64 speedup | run |")
    print("|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|")
    for r in rows:
        speedup = "—" if r["speedup"] is None else f"{r['speedup']:.2f}×"
        print(f"| {percent(r['target'])}% | {percent(r['realised'])}% | {r['params_m']:.2f} | {r['size_mb']:.1f} "
              f"| {r['hidden']} | {r['heads']} | {r['ffn']} | {percent(r['acc_pruned'])}% "
              f"| {percent(r['acc_final'])}% ({r['final']}) | {percent(r['drop'])} | {speedup} | {r['run']} |")
    teachers = {r["teacher"] for r in rows if r["teacher"] is not None}
    for teacher in sorted(teachers):
        print(f"\nteacher test accuracy {percent(teacher)}%")


if __name__ == "__main__":
    main()
