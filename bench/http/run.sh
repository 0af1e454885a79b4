#!/usr/bin/env bash
# bench/http: wrk against silklive's GET /healthz and against nginx serving a static file of the
# same body size, then both serving the same 1 MiB HLS segment (SEGMENT_KB) from disk, in the
# same run, each server pinned to core 0 and wrk to core 1.
# Prints one markdown table per path, a row per round and the medians.
# Usage: bench/http/run.sh [rounds] [secs]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
SECS=${2:-8}
CONNS=${CONNS:-64}

# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_need wrk nginx-light
bash deploy/setup.sh >/dev/null

work=$(mktemp -d)
cleanup() {
  [[ -n "${SL_PID:-}" ]] && kill "$SL_PID" 2>/dev/null && wait "$SL_PID" 2>/dev/null
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

SL_PORT=$(free_port)
NG_PORT=$(free_port)

taskset -c 0 build/silklive serve --listen "127.0.0.1:$SL_PORT" --data-dir "$work/data" \
  --media-dir "$work/media" --log-level warning &
SL_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SL_PORT/healthz" >/dev/null && break; sleep 0.1; done
body=$(curl -sf "http://127.0.0.1:$SL_PORT/healthz")

mkdir -p "$work/www/hls/ch1" "$work/media/ch1"
printf '%s' "$body" >"$work/www/healthz"
head -c "$((${SEGMENT_KB:-1024} * 1024))" /dev/urandom >"$work/media/ch1/seg1.ts"
cp "$work/media/ch1/seg1.ts" "$work/www/hls/ch1/seg1.ts"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/json;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$NG_PORT; root $work/www; }
}
NGINX
chmod 755 "$work" # nginx's worker runs as nobody: mktemp's 0700 made it answer 403 to everything
taskset -c 0 nginx -c "$work/nginx.conf"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$NG_PORT/healthz" >/dev/null && break; sleep 0.1; done
# both servers must answer the same bytes, or the rounds compare different work
for path in /healthz /hls/ch1/seg1.ts; do
  if ! cmp -s <(curl -sf "http://127.0.0.1:$SL_PORT$path") <(curl -sf "http://127.0.0.1:$NG_PORT$path"); then
    echo "bench/http: silklive and nginx do not serve the same $path" >&2
    exit 1
  fi
done

rps() { taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f", m}'; }

NG_WORKER=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
# rounds PATH: ROUNDS alternating rounds of wrk on PATH, silklive then nginx; one table.
rounds() {
  echo
  echo "GET $1"
  echo
  echo "| round | silklive req/s | silklive CPU % | nginx req/s | nginx CPU % | ratio |"
  echo "| --- | --- | --- | --- | --- | --- |"
  : >"$work/sl"; : >"$work/ng"
  local r a b t0 t1 n0 n1
  for r in $(seq "$ROUNDS"); do
    t0=$(cpu_ticks "$SL_PID"); a=$(rps "http://127.0.0.1:$SL_PORT$1"); t1=$(cpu_ticks "$SL_PID")
    n0=$(cpu_ticks "$NG_WORKER"); b=$(rps "http://127.0.0.1:$NG_PORT$1"); n1=$(cpu_ticks "$NG_WORKER")
    echo "$a" >>"$work/sl"; echo "$b" >>"$work/ng"
    printf '| %s | %.0f | %d | %.0f | %d | %.2f |\n' "$r" "$a" $(((t1 - t0) * 100 / SECS / 100)) "$b" \
      $(((n1 - n0) * 100 / SECS / 100)) "$(echo "$a / $b" | bc -l)"
  done
  local ms mn
  ms=$(median <"$work/sl"); mn=$(median <"$work/ng")
  printf '| median | %s | | %s | | %.2f |\n' "$ms" "$mn" "$(echo "$ms / $mn" | bc -l)"
}
rounds /healthz
rounds /hls/ch1/seg1.ts
echo "silklive peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$SL_PID/status")"
