#!/usr/bin/env bash
# A second machine's cached rerun through the remote cache against a local
# cached rerun (docs/cluster.md, "Measured"): nginx with WebDAV PUT on a
# loopback port, one computing run that uploads, then per round a cached
# rerun in a fresh cache directory with --remote and one in the first cache
# without it. Prints wall times and the bytes nginx sent.
#   Benchmarks/remote-cache/measure.sh [ROUNDS]     (default 3; needs nginx and a release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${1:-3}
squeeze="$root/.build/release/squeeze"
[ -x "$squeeze" ] || { echo "build first: swift build -c release --product squeeze" >&2; exit 2; }
work=$(mktemp -d)
chmod 755 "$work"   # the nginx worker runs unprivileged and must reach data/
port=$((20000 + RANDOM % 30000))
mkdir -p "$work/srv/data" "$work/srv/tmp" "$work/srv/logs"
chmod 777 "$work/srv/data" "$work/srv/tmp" "$work/srv/logs"
cat > "$work/srv/nginx.conf" <<CONF
daemon off;
pid $work/srv/nginx.pid;
error_log $work/srv/logs/error.log;
events {}
http {
  access_log $work/srv/logs/access.log;
  client_body_temp_path $work/srv/tmp;
  server {
    listen 127.0.0.1:$port;
    location / { root $work/srv/data; dav_methods PUT; create_full_put_path on; client_max_body_size 0; }
  }
}
CONF
nginx -c "$work/srv/nginx.conf" & server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
sleep 1
remote="http://127.0.0.1:$port/squeeze"
# Wall seconds of a command; its warnings (a remote that is not usable) go to stderr.
timed() {
  local start end
  start=$(date +%s.%N)
  "$@" > "$work/out.log" 2>&1
  end=$(date +%s.%N)
  grep 'warning:' "$work/out.log" >&2 || true
  echo "$end - $start" | bc
}
bytes_since() { tail -n +"$(($1 + 1))" "$work/srv/logs/access.log" | awk '{n++; b+=$10} END {print n " requests, " b " bytes sent"}'; }
run() { "$squeeze" run "$here/recipe.yaml" --runs-dir "$work/runs" "$@"; }

grep -m1 'model name' /proc/cpuinfo; uptime
echo "first run (computes, uploads): $(timed run --cache-dir "$work/a" --remote "$remote") s"
for round in $(seq "$rounds"); do
  before=$(wc -l < "$work/srv/logs/access.log")
  echo "round $round: remote rerun in a fresh cache $(timed run --cache-dir "$work/b$round" --remote "$remote") s ($(bytes_since "$before")); local rerun $(timed run --cache-dir "$work/a" --no-remote) s"
done
uptime
