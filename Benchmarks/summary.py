#!/usr/bin/env python3
"""Summaries of Squeeze's benchmark results, comparing each case with its peer.

The Swift benchmarks (Benchmarks/Hashing, Benchmarks/Planning) and
cached-rerun.sh leave one JSON file per case in the results directory
($SQUEEZE_BENCH_RESULTS, default Benchmarks/.results):
    {"suite": ..., "name": ..., "unit": "s", "samples": [...], "details": {...}}

    summary.py line [SUITE...]     one line per suite, to paste into notes
    summary.py table               a Markdown table of every suite
    summary.py record --suite S --name N [--detail k=v]... SECONDS...
                                   writes a case file (used by cached-rerun.sh)
Exits 1 when a suite's results are present but incomplete.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SUITES = ["Hashing", "Planning", "CachedRerun"]


def results_directory():
    return os.environ.get("SQUEEZE_BENCH_RESULTS") or os.path.join(HERE, ".results")


def load_cases():
    """{suite: {name: case}} from every *.json file in the results directory."""
    cases = {}
    directory = results_directory()
    if not os.path.isdir(directory):
        return cases
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(".json"):
            continue
        with open(os.path.join(directory, entry), encoding="utf-8") as handle:
            case = json.load(handle)
        if case.get("samples"):
            cases.setdefault(case["suite"], {})[case["name"]] = case
    return cases


def median(case):
    return statistics.median(case["samples"])


def n(case):
    return len(case["samples"])


class Incomplete(Exception):
    pass


def need(cases, *names):
    missing = [name for name in names if name not in cases]
    if missing:
        raise Incomplete("missing " + ", ".join(missing))
    return [cases[name] for name in names]


def verdict(met):
    return "met" if met else "MISSED"


def hashing(cases):
    """(one-line summary, table rows) for the Hashing suite."""
    ours, peer = need(cases, "squeeze", "sha256sum")
    size = int(ours["details"]["bytes"])
    ours_rate = size / median(ours) / 1e9
    peer_rate = size / median(peer) / 1e9
    goal = ours_rate >= 1.5
    line = (f"Hashing (SHA-256, {size / 2**30:.0f} GiB page-cached, median of {n(ours)}/{n(peer)}): "
            f"squeeze {ours_rate:.2f} GB/s, sha256sum {peer_rate:.2f} GB/s, "
            f"ratio {ours_rate / peer_rate:.2f}x; goal >= 1.5 GB/s {verdict(goal)}")
    rows = [("SHA-256 of 1 GiB (page cache)", f"{ours_rate:.2f} GB/s", f"sha256sum {peer_rate:.2f} GB/s",
             f"{ours_rate / peer_rate:.2f}x", f">= 1.5 GB/s: {verdict(goal)}")]
    if "openssl" in cases:
        openssl_rate = size / median(cases["openssl"]) / 1e9
        line += f" (openssl dgst -sha256 {openssl_rate:.2f} GB/s, ratio {ours_rate / openssl_rate:.2f}x)"
        rows.append(("SHA-256 of 1 GiB (page cache)", f"{ours_rate:.2f} GB/s", f"openssl dgst {openssl_rate:.2f} GB/s",
                     f"{ours_rate / openssl_rate:.2f}x", "reference (SHA-NI)"))
    return line, rows


def planning(cases):
    parts = []
    rows = []
    for state in ("warm", "cold"):
        if state not in cases:
            continue
        total, load, plan = need(cases, state, f"{state}-load", f"{state}-plan")
        stages = total["details"].get("stages", "?")
        ms = median(total) * 1e3
        parts.append(f"{state} {ms:.0f} ms (load {median(load) * 1e3:.0f} + open/plan {median(plan) * 1e3:.0f})")
        rows.append((f"load + plan, {stages} stages, {state} cache", f"{ms:.0f} ms",
                     f"load {median(load) * 1e3:.0f} ms, plan {median(plan) * 1e3:.0f} ms", "",
                     f"< 1 s: {verdict(ms < 1000)}"))
    if not parts:
        raise Incomplete("missing warm and cold")
    worst = max(median(cases[s]) for s in ("warm", "cold") if s in cases)
    stages = next(iter(cases.values()))["details"].get("stages", "?")
    line = f"Planning ({stages} stages, median): " + ", ".join(parts) + f"; goal < 1 s {verdict(worst < 1)}"
    return line, rows


def cached_rerun(cases):
    ours, peer = need(cases, "squeeze-cached", "dvc-cached")
    ours_ms, peer_ms = median(ours) * 1e3, median(peer) * 1e3
    ratio = peer_ms / ours_ms
    goal = ours_ms < 100 and ratio >= 10
    line = (f"Cached rerun (6 stages, {ours['details'].get('artifacts', '?')} artifacts, median of {n(ours)}): "
            f"squeeze run {ours_ms:.0f} ms, dvc repro {peer_ms:.0f} ms, squeeze {ratio:.1f}x faster; "
            f"goal < 100 ms and >= 10x {verdict(goal)}")
    rows = [("fully cached rerun, 6 stages", f"{ours_ms:.0f} ms", f"dvc repro {peer_ms:.0f} ms",
             f"{ratio:.1f}x faster", f"< 100 ms and >= 10x: {verdict(goal)}")]
    if "squeeze-cold" in cases and "dvc-cold" in cases:
        cold_ours, cold_peer = median(cases["squeeze-cold"]), median(cases["dvc-cold"])
        line += f" (cold: squeeze {cold_ours:.2f} s, dvc {cold_peer:.2f} s)"
        rows.append(("first (cold) run, 6 stages", f"{cold_ours:.2f} s", f"dvc repro {cold_peer:.2f} s",
                     f"{cold_peer / cold_ours:.1f}x faster", "context only"))
    return line, rows


SUMMARIES = {"Hashing": hashing, "Planning": planning, "CachedRerun": cached_rerun}


def summarize(selected):
    """Yields (suite, line, rows) for each selected suite with results; exit status."""
    cases = load_cases()
    status = 0
    out = []
    for suite in selected:
        if suite not in cases:
            continue
        try:
            line, rows = SUMMARIES[suite](cases[suite])
        except Incomplete as problem:
            line, rows, status = f"{suite}: incomplete results ({problem})", [], 1
        out.append((suite, line, rows))
    return out, status


def record(args):
    details = {}
    for item in args.detail:
        key, _, value = item.partition("=")
        details[key] = value
    case = {"suite": args.suite, "name": args.name, "unit": "s",
            "samples": [float(value) for value in args.samples], "details": details}
    directory = results_directory()
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{args.suite}.{args.name}.json")
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(case, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    line = commands.add_parser("line")
    line.add_argument("suites", nargs="*", metavar="SUITE", help=", ".join(SUITES))
    commands.add_parser("table")
    rec = commands.add_parser("record")
    rec.add_argument("--suite", required=True)
    rec.add_argument("--name", required=True)
    rec.add_argument("--detail", action="append", default=[])
    rec.add_argument("samples", nargs="+")
    args = parser.parse_args()

    if args.command == "record":
        record(args)
        return 0
    if args.command == "line":
        unknown = [suite for suite in args.suites if suite not in SUITES]
        if unknown:
            parser.error(f"unknown suite {', '.join(unknown)} (known: {', '.join(SUITES)})")
        summaries, status = summarize(args.suites or SUITES)
        if not summaries:
            print(f"no results in {results_directory()}", file=sys.stderr)
            return 1
        for _, text, _ in summaries:
            print(text)
        return status
    summaries, status = summarize(SUITES)
    print("| benchmark | squeeze | peer | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    for _, _, rows in summaries:
        for row in rows:
            print("| " + " | ".join(row) + " |")
    return status


if __name__ == "__main__":
    sys.exit(main())
