#!/usr/bin/env bash
# Fully cached reruns: `squeeze run` against `dvc repro` on the same six-stage
# pipeline (a DAG of shell commands writing ~110 MB of deterministic files),
# wall time per invocation including process start. Goal: squeeze under 100 ms
# and at least 10x faster than DVC. The first (cold) run of each is timed too,
# for context.
#
# Usage: Benchmarks/cached-rerun.sh [RUNS]        (RUNS timed reruns each, default 20)
# Environment:
#   SQUEEZE_BENCH_VENV     where DVC is installed with pip (default Benchmarks/.venv)
#   SQUEEZE_BENCH_RESULTS  where per-case results go for summary.py (default Benchmarks/.results)
#   SQUEEZE_BENCH_WORK     parent of the temporary projects (default $TMPDIR or /tmp)
# DVC is only ever installed here, for the comparison; Squeeze does not depend on it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=${1:-20}
warmups=2
dvc_version=3.67.1
venv=${SQUEEZE_BENCH_VENV:-$here/.venv}
export SQUEEZE_BENCH_RESULTS=${SQUEEZE_BENCH_RESULTS:-$here/.results}
summary="$here/summary.py"

case $runs in
  '' | *[!0-9]* | 0) echo "usage: $0 [RUNS] (a positive number of timed reruns)" >&2; exit 2 ;;
esac

log() { printf 'cached-rerun: %s\n' "$*" >&2; }

# --- Tools -------------------------------------------------------------------

log "building squeeze (swift build -c release)"
(cd "$root" && swift build -c release --product squeeze >&2)
squeeze="$(cd "$root" && swift build -c release --show-bin-path)/squeeze"

if [ "$("$venv/bin/dvc" --version 2>/dev/null)" != "$dvc_version" ]; then
  log "installing dvc==$dvc_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "dvc==$dvc_version"
fi
dvc="$venv/bin/dvc"
export DVC_NO_ANALYTICS=1

if ! command -v hyperfine >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing hyperfine (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq hyperfine >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq hyperfine >/dev/null 2>&1; } \
    || log "hyperfine unavailable; timing with a bash loop"
fi

# --- Projects ----------------------------------------------------------------

work=$(mktemp -d "${SQUEEZE_BENCH_WORK:-${TMPDIR:-/tmp}}/squeeze-cached-rerun-XXXXXX")
# The content store makes its entries read-only; make them writable to delete.
cleanup() { chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# The six commands, shared by both tools. `@numbers@` etc. stand for the file
# another stage wrote and `@out@` for where this stage writes; each tool fills
# them in its own way (Squeeze: ${stage.out} references into its store; DVC:
# paths under data/). DAG: numbers -> squares, evens; words -> sorted;
# squares + evens + sorted -> report.
stages=(numbers words squares evens sorted report)
declare -A command deps
command[numbers]='seq 1 3000000 > @out@/numbers.txt'
command[words]='awk '\''BEGIN { for (i = 0; i < 2000000; i++) printf "w%07d\n", (i * 7919) % 2000000 }'\'' > @out@/words.txt'
command[squares]='awk '\''{ printf "%.0f\n", $1 * $1 }'\'' @numbers@/numbers.txt > @out@/squares.txt'
command[evens]='awk '\''$1 % 2 == 0'\'' @numbers@/numbers.txt > @out@/evens.txt'
command[sorted]='LC_ALL=C sort @words@/words.txt > @out@/sorted.txt'
command[report]='cat @squares@/squares.txt @evens@/evens.txt @sorted@/sorted.txt | cksum > @out@/report.txt'
deps[numbers]=''
deps[words]=''
deps[squares]='numbers:numbers.txt'
deps[evens]='numbers:numbers.txt'
deps[sorted]='words:words.txt'
deps[report]='squares:squares.txt evens:evens.txt sorted:sorted.txt'
output_of() { # the file a stage writes
  case $1 in numbers) echo numbers.txt ;; words) echo words.txt ;; squares) echo squares.txt ;;
    evens) echo evens.txt ;; sorted) echo sorted.txt ;; report) echo report.txt ;; esac
}

# Replaces @out@ with $2 and @stage@ with $3-prefixed stage names ($3 may be a format with %s).
fill() { # fill COMMAND OUT FORMAT
  local text=$1 out=$2 format=$3 stage
  text=${text//@out@/$out}
  for stage in "${stages[@]}"; do
    # shellcheck disable=SC2059
    text=${text//@$stage@/$(printf "$format" "$stage")}
  done
  printf '%s' "$text"
}

squeeze_project="$work/squeeze"
mkdir -p "$squeeze_project"
{
  echo 'version: 1'
  echo 'name: cached-rerun'
  echo 'description: Six shell stages writing ~110 MB, the same as the dvc.yaml beside it.'
  echo 'stages:'
  for stage in "${stages[@]}"; do
    echo "  $stage:"
    echo "    uses: command"
    echo "    with:"
    echo "      shell: true"
    echo "      outputs: [$(output_of "$stage")]"
    echo "      run: |"
    echo "        $(fill "${command[$stage]}" '${out}' '${%s.out}')"
  done
} > "$squeeze_project/recipe.yaml"

dvc_project="$work/dvc"
mkdir -p "$dvc_project/data"
{
  echo 'stages:'
  for stage in "${stages[@]}"; do
    echo "  $stage:"
    echo "    cmd: >-"
    echo "      $(fill "${command[$stage]}" 'data' 'data')"
    if [ -n "${deps[$stage]}" ]; then
      echo "    deps:"
      for dep in ${deps[$stage]}; do echo "      - data/${dep#*:}"; done
    fi
    echo "    outs:"
    echo "      - data/$(output_of "$stage")"
  done
} > "$dvc_project/dvc.yaml"
(cd "$dvc_project" && "$dvc" init --no-scm --quiet \
  && "$dvc" config core.analytics false && "$dvc" config core.check_update false)

# --- Timing ------------------------------------------------------------------

now_ns() { date +%s%N; }

# time_once DIR COMMAND... : runs once, prints seconds; the command's output goes to stderr.
time_once() {
  local dir=$1 start end
  shift
  start=$(now_ns)
  (cd "$dir" && "$@") >&2
  end=$(now_ns)
  awk -v ns=$((end - start)) 'BEGIN { printf "%.6f\n", ns / 1e9 }'
}

# time_runs DIR COMMAND... : `runs` timed invocations after `warmups`; prints seconds, one per line.
time_runs() {
  local dir=$1 i start end
  shift
  if command -v hyperfine >/dev/null 2>&1; then
    local quoted json="$work/hyperfine.json"
    quoted=$(printf '%q ' "$@")
    (cd "$dir" && hyperfine --style basic --shell=none --warmup "$warmups" --runs "$runs" \
      --export-json "$json" -- "$quoted") >&2
    python3 -c 'import json, sys; print("\n".join(f"{t:.6f}" for t in json.load(open(sys.argv[1]))["results"][0]["times"]))' "$json"
  else
    for ((i = 0; i < warmups; i++)); do (cd "$dir" && "$@") >/dev/null 2>&1; done
    for ((i = 0; i < runs; i++)); do
      start=$(now_ns)
      (cd "$dir" && "$@") >/dev/null 2>&1
      end=$(now_ns)
      awk -v ns=$((end - start)) 'BEGIN { printf "%.6f\n", ns / 1e9 }'
    done
  fi
}

log "cold run: squeeze run"
squeeze_cold=$(time_once "$squeeze_project" "$squeeze" run recipe.yaml)
log "cold run: dvc repro"
dvc_cold=$(time_once "$dvc_project" "$dvc" repro --quiet)

# Both tools must have produced the same files before their reruns are compared.
for stage in "${stages[@]}"; do
  file=$(output_of "$stage")
  ours=
  for candidate in "$squeeze_project"/runs/*/outputs/"$stage"/out/"$file"; do
    if [ -f "$candidate" ]; then ours=$candidate; break; fi
  done
  if [ -z "$ours" ] || ! cmp -s "$ours" "$dvc_project/data/$file"; then
    log "error: stage $stage: squeeze's $file differs from dvc's (or is missing under runs/*/outputs)"
    exit 1
  fi
done
bytes=$(du -sb "$dvc_project/data" | cut -f1)
artifacts="$((bytes / 1000000)) MB"
log "both tools produced identical outputs ($artifacts)"

log "timing $runs cached reruns: squeeze run"
mapfile -t squeeze_times < <(time_runs "$squeeze_project" "$squeeze" run recipe.yaml)
log "timing $runs cached reruns: dvc repro"
mapfile -t dvc_times < <(time_runs "$dvc_project" "$dvc" repro)
if [ "${#squeeze_times[@]}" -ne "$runs" ] || [ "${#dvc_times[@]}" -ne "$runs" ]; then
  log "error: expected $runs timings each, got ${#squeeze_times[@]} (squeeze) and ${#dvc_times[@]} (dvc)"
  exit 1
fi

# Every timed squeeze rerun must have been fully cached, and DVC up to date.
python3 - "$squeeze_project/runs" <<'EOF'
import json, os, sys
root = sys.argv[1]
records = sorted(os.listdir(root))
reruns = [json.load(open(os.path.join(root, r, "run.json"))) for r in records]
not_cached = [(r["id"], s["id"], s["status"]) for r in reruns for s in r["stages"] if s["status"] != "cached"]
# Exactly the cold run executed stages (one record with 6 `ran`).
ran = [entry for entry in not_cached if entry[2] == "ran"]
if len(ran) != 6 or len(not_cached) != 6:
    sys.exit(f"cached-rerun: error: expected only the cold run to execute stages, got {not_cached[:10]}")
EOF
if [ "$(cd "$dvc_project" && "$dvc" status --json)" != "{}" ]; then
  log "error: dvc status is not clean after the reruns"
  exit 1
fi

python3 "$summary" record --suite CachedRerun --name squeeze-cached --detail "artifacts=$artifacts" "${squeeze_times[@]}"
python3 "$summary" record --suite CachedRerun --name dvc-cached --detail "artifacts=$artifacts" "${dvc_times[@]}"
python3 "$summary" record --suite CachedRerun --name squeeze-cold "$squeeze_cold"
python3 "$summary" record --suite CachedRerun --name dvc-cold "$dvc_cold"
python3 "$summary" line CachedRerun
