#!/bin/sh
# Per-layer times of the one-shot algorithms (release, -O) on MiniLM shapes.
# Usage: Benchmarks/oneshot/time-oneshot.sh [tokens]   (run from the package root)
set -eu
out=${TMPDIR:-/tmp}/squeeze-oneshot-timing
sources=$(ls Sources/SqueezeCompress/OneShot/*.swift | grep -v '+Backend')
swiftc -O -module-name OneShotTiming $sources Benchmarks/oneshot/main.swift -o "$out" 2>&1 | grep -v warning || true
"$out" "$@"
