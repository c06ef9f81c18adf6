#!/usr/bin/env bash
# The nightly sweep's matrix with the local executor against the Slurm
# executor on the same machine (docs/cluster.md, "Numbers"): a one-node
# Slurm 22.05 on loopback (its own munged, slurmctld and slurmd, as the tests
# start it), then `squeeze run pipelines/nightly-sweep.yaml` from an empty
# cache with `--executor local` and with `--executor slurm`. Both runs compute
# every stage; the difference over the number of stages is the cost of a job.
#   Benchmarks/cluster/nightly-executors.sh [--set ...]   (root; Debian's slurmctld slurmd slurm-client munge;
#                                                          a release build: swift build -c release --product squeeze)
# Extra arguments go to both runs (e.g. shorter settings: --set vars.epochs=0.05).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
squeeze="$root/.build/release/squeeze"
[ -x "$squeeze" ] || { echo "build first: swift build -c release --product squeeze" >&2; exit 2; }
for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install slurmctld slurmd slurm-client munge" >&2; exit 2; }
done
work=$(mktemp -d /tmp/squeeze-executors-XXXXXX)
mkdir -p "$work/munge" "$work/log" "$work/state" "$work/spool"
chmod 700 "$work/munge"
stop() {
  for pid in "$work/slurmd.pid" "$work/slurmctld.pid" "$work/munge/munged.pid"; do
    [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
  done
  sleep 1
  rm -rf "$work"
}
trap stop EXIT
head -c 1024 /dev/urandom > "$work/munge/munge.key"; chmod 400 "$work/munge/munge.key"
munged --force --key-file="$work/munge/munge.key" --socket="$work/munge/munge.socket" \
  --pid-file="$work/munge/munged.pid" --log-file="$work/log/munged.log" --seed-file="$work/munge/munged.seed"
host=$(hostname -s)
cores=$(nproc)
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
port=$((20000 + RANDOM % 30000))
export SLURM_CONF="$work/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=sqbench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmUser=root
SlurmdUser=root
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cores RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld; slurmd
for _ in $(seq 240); do [ "$(sinfo -h -o %t 2>/dev/null)" = idle ] && break; sleep 0.25; done
[ "$(sinfo -h -o %t)" = idle ] || { echo "the node did not become idle" >&2; cat "$work/log/"*.log >&2; exit 1; }

grep -m1 'model name' /proc/cpuinfo; grep -m1 'cpu family' /proc/cpuinfo; grep -m1 '^model\s' /proc/cpuinfo; uptime
run() {
  local executor=$1; shift
  local start end
  start=$(date +%s.%N)
  "$squeeze" run "$root/pipelines/nightly-sweep.yaml" --executor "$executor" --cache-dir "$work/cache-$executor" \
    --runs-dir "$work/runs-$executor" "$@" > "$work/$executor.log" 2>&1 || { cat "$work/$executor.log" >&2; exit 1; }
  end=$(date +%s.%N)
  local stages
  stages=$(python3 -c 'import json,sys,glob; r=json.load(open(glob.glob(sys.argv[1]+"/*/run.json")[0])); print(sum(1 for s in r["stages"] if s["status"]=="ran"))' "$work/runs-$executor")
  echo "$executor: $(echo "$end - $start" | bc) s wall, $stages stages computed"
}
run local "$@"
run slurm "$@"
uptime
