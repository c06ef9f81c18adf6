#!/usr/bin/env python3
"""Ratios of `squeeze bench bert --json` runs to `pytorch_peer.py` runs.

    compare.py OURS.json... -- PEER.json...

Each side's value of a metric is the median over its runs that measured it
(the runs are interleaved by run.sh, so machine noise hits both sides alike;
sgemm-only runs add samples to the sgemm rows); peak memory is the maximum.
Prints one row per target with the ratio ours/peer and whether the target is
met, then the per-round ratios.
"""
import json
import statistics
import sys

# (key, label, kind, goal): "time" ratios must be <= goal, "rate" ratios >= goal,
# "memory" ratios <= goal.
TARGETS = [
    ("train_step_b32_t64", "train step B=32 T=64", "time", 0.9),
    ("infer_b32_t64", "inference B=32 T=64", "time", 0.9),
    ("infer_b1_t32", "inference B=1 T=32", "time", 0.9),
    ("sgemm_gflops/2048x384x384", "sgemm 2048x384x384", "rate", 0.95),
    ("sgemm_gflops/2048x1536x384", "sgemm 2048x1536x384", "rate", 0.95),
    ("sgemm_gflops/2048x384x1536", "sgemm 2048x384x1536", "rate", 0.95),
    ("peak_rss_mib", "peak RSS after training", "memory", 1.5),
]


def value(report, key):
    for part in key.split("/"):
        if not isinstance(report, dict) or part not in report:
            return None
        report = report[part]
    return float(report)


def values(reports, key):
    return [v for v in (value(r, key) for r in reports) if v is not None]


def fmt(kind, x):
    if kind == "rate":
        return f"{x:.1f} GFLOP/s"
    if kind == "memory":
        return f"{x:.0f} MiB"
    return f"{x * 1000:.1f} ms" if x < 0.1 else f"{x:.3f} s"


def main(argv):
    if "--" not in argv:
        sys.exit("usage: compare.py OURS.json... -- PEER.json...")
    split = argv.index("--")
    ours = [json.load(open(p)) for p in argv[:split]]
    peer = [json.load(open(p)) for p in argv[split + 1:]]
    if not ours or not peer:
        sys.exit("compare.py: need at least one run of each side")
    machine = ours[0].get("machine", {})
    print(f"squeeze {ours[0].get('squeeze', '?')} ({machine.get('kernel_variant', '?')}, "
          f"BLAS core {machine.get('gemm_core', '?')}) vs "
          f"{peer[0].get('peer', '?')}, {ours[0].get('threads')} threads, {len(ours)}+{len(peer)} runs")
    print()
    header = f"| {'metric':<24} | {'squeeze':>14} | {'peer':>14} | {'ratio':>6} | {'goal':>7} | met |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for key, label, kind, goal in TARGETS:
        combine = max if kind == "memory" else statistics.median
        a = combine(values(ours, key))
        b = combine(values(peer, key))
        ratio = a / b
        met = ratio >= goal if kind == "rate" else ratio <= goal
        sign = ">=" if kind == "rate" else "<="
        print(f"| {label:<24} | {fmt(kind, a):>14} | {fmt(kind, b):>14} | {ratio:>6.2f} | {sign} {goal:<4} | "
              f"{'yes' if met else 'NO':<3} |")
    print()
    for key, label, kind, _ in TARGETS[:-1]:
        pairs = [(value(o, key), value(p, key)) for o, p in zip(ours, peer)]
        rounds = [o / p for o, p in pairs if o is not None and p is not None]
        print(f"{label}: per-round ratios " + ", ".join(f"{r:.2f}" for r in rounds))


if __name__ == "__main__":
    main(sys.argv[1:])
