#!/usr/bin/env bash
# bench/ingest: N concurrent RTMP publishers (ffmpeg -re -c copy of one pre-encoded FLV) remuxed
# to HLS by silklive and, in the same run, by nginx with Debian's libnginx-mod-rtmp (hls on, same
# fragment length). Each server pinned to core 0, the publishers to core 1. Reports CPU seconds
# per stream-minute, RSS, and first-frame → first-segment-listed latency, per server.
# Usage: [PER_FFMPEG=n] [PERF=1] bench/ingest/run.sh [publishers] [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-20}
SECS=${2:-30}
FRAG=2

# shellcheck source=bench/lib.sh
source bench/lib.sh
bash deploy/setup.sh --bench >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n "${SL_PID:-}" ]] && kill "$SL_PID" 2>/dev/null && wait "$SL_PID" 2>/dev/null
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  [[ -f "$work/redis.pid" ]] && kill "$(cat "$work/redis.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# One 720p30 source, 2 s GOP, encoded once: publishers only copy it.
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440 -t 20 -c:v libx264 -preset veryfast -b:v 2500k -g 60 \
  -keyint_min 60 -c:a aac -b:a 128k -f flv "$work/src.flv"

# PER_FFMPEG publishers per ffmpeg process (default 10; its tee muxer: one read of the file, that
# many RTMP connections, each ignoring the others' failures), so 100 publishers fit on one core
# in real time. PER_FFMPEG=1 gives every publisher its own process, each sending on its own pace.
publish_all() { # url-prefix keys-file
  local prefix=$1 outputs
  while mapfile -t -n "${PER_FFMPEG:-10}" batch && ((${#batch[@]})); do
    outputs=$(printf "[f=flv:onfail=ignore]$prefix/%s|" "${batch[@]}")
    taskset -c 1 ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 \
      -i "$work/src.flv" -map 0 -c copy -f tee "${outputs%|}" &
    pids+=($!)
  done <"$2"
}

stop_publishers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# Latency of the first stream: publish start → its playlist lists a segment.
first_segment_ms() { # playlist-path start-ms
  for _ in $(seq 200); do
    if [[ -f "$1" ]] && grep -q '\.ts' "$1"; then
      echo $(($(date +%s%3N) - $2))
      return
    fi
    sleep 0.05
  done
  echo "none"
}

measure() { # name pid playlist-of-first-stream url-prefix keys-file
  local name=$1 pid=$2 t0 c0 c1 lat rss
  t0=$(date +%s%3N)
  c0=$(cpu_ticks "$pid")
  publish_all "$4" "$5"
  # PERF=1: a profile of each server while it remuxes, in /tmp/ingest-<name>.perf
  [[ -n "${PERF:-}" ]] && (perf record -F 499 -g -p "$pid" -o "/tmp/ingest-$name.perf" -- sleep $((SECS - 5)) >/dev/null 2>&1 &)
  lat=$(first_segment_ms "$3" "$t0")
  sleep "$SECS"
  c1=$(cpu_ticks "$pid")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  stop_publishers
  local hz cpu_s
  hz=$(getconf CLK_TCK)
  cpu_s=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz}')
  echo "$name $cpu_s $rss $lat"
}

# ---- silklive ----
SL_PORT=$(free_port)
RTMP_PORT=$(free_port)
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --daemonize yes \
  --pidfile "$work/redis.pid" --dir "$work" >/dev/null
sleep 0.3
export SILKLIVE_SECRET=bench-secret
# Passthrough only, like nginx-rtmp's hls: no ladder, no poster.
printf '[transcode]\nladder =\nposter_s = 0\n' >"$work/silklive.ini"
taskset -c 0 build/silklive serve --config "$work/silklive.ini" --listen "127.0.0.1:$SL_PORT" --rtmp-listen "127.0.0.1:$RTMP_PORT" \
  --redis "redis://127.0.0.1:$REDIS_PORT" --data-dir "$work/data" --media-dir "$work/media" \
  --modules commerce,transcode,ingest --log-level warning &
SL_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SL_PORT/healthz" >/dev/null && break; sleep 0.1; done
admin=$(build/silklive token --role admin --sub bench --secret "$SILKLIVE_SECRET")
curl -sf -H "Authorization: Bearer $admin" -d '{"code":"CL","name":{"en":"Chile"},"currency":"CLP","languages":["es"]}' \
  "http://127.0.0.1:$SL_PORT/api/v1/pavilions" >/dev/null
: >"$work/sl-keys"
for i in $(seq "$N"); do
  curl -sf -H "Authorization: Bearer $admin" -d "{\"id\":\"ch$i\",\"title\":{\"en\":\"c$i\"}}" \
    "http://127.0.0.1:$SL_PORT/api/v1/pavilions/CL/channels" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["stream_key"])' >>"$work/sl-keys"
done
sl=$(measure silklive "$SL_PID" "$work/media/ch1/source/index.m3u8" \
  "rtmp://127.0.0.1:$RTMP_PORT/live" "$work/sl-keys")
dropped=$(curl -sf "http://127.0.0.1:$SL_PORT/metrics" |
  awk '/^silklive_(rtmp|transcode)_dropped_total/ {n += $2} END {print n + 0}')
kill "$SL_PID"
wait "$SL_PID" 2>/dev/null || true
SL_PID=
# Every stream's recording lists each segment it cut: a segment lost anywhere shows as a gap in
# its PROGRAM-DATE-TIMEs (each must start where the one before ended, within 100 ms).
recorded=$(python3 - "$work/media" <<'PY'
import datetime, glob, sys
segs = gaps = streams = 0
for pl in glob.glob(sys.argv[1] + "/*/vod/*/index.m3u8"):
    streams += 1
    prev_end = None
    pdt = None
    for line in open(pl):
        line = line.strip()
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = datetime.datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXTINF:"):
            dur = float(line[8:].rstrip(","))
            segs += 1
            if prev_end is not None and abs(pdt - prev_end) > 0.1:
                gaps += 1
            prev_end = pdt + dur
print(streams, segs, gaps)
PY
)

# ---- nginx-rtmp ----
NG_RTMP=$(free_port)
mkdir -p "$work/hls"
chmod 755 "$work" && chmod 777 "$work/hls" # nginx's worker runs as www-data
cat >"$work/nginx.conf" <<NGINX
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon on;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
rtmp {
  server {
    listen 127.0.0.1:$NG_RTMP;
    application live {
      live on;
      hls on;
      hls_path $work/hls;
      hls_fragment ${FRAG}s;
      hls_playlist_length 12s;
    }
  }
}
NGINX
taskset -c 0 nginx -c "$work/nginx.conf"
sleep 0.3
ng_pid=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
seq "$N" | sed 's/^/k/' >"$work/ng-keys"
ng=$(measure nginx-rtmp "$ng_pid" "$work/hls/k1.m3u8" "rtmp://127.0.0.1:$NG_RTMP/live" \
  "$work/ng-keys")

echo
echo "| server | publishers | CPU s in ${SECS} s | CPU per stream (% of a core) | RSS (MB) | first segment listed after (ms) |"
echo "| --- | --- | --- | --- | --- | --- |"
for row in "$sl" "$ng"; do
  read -r name cpu rss lat <<<"$row"
  per=$(awk -v c="$cpu" -v n="$N" -v s="$SECS" 'BEGIN {printf "%.2f", c / n / s * 100}')
  echo "| $name | $N | $cpu | $per | $((rss / 1024)) | $lat |"
done
ratio=$(awk -v a="$(echo "$sl" | cut -d' ' -f2)" -v b="$(echo "$ng" | cut -d' ' -f2)" \
  'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
echo
echo "silklive CPU / nginx-rtmp CPU: $ratio (target ≤ 1.0)"
read -r rec_streams rec_segs rec_gaps <<<"$recorded"
echo "silklive: $rec_streams recordings, $rec_segs segments, $rec_gaps gaps between segments, $dropped frames dropped"
