#!/usr/bin/env bash
# bench/transcode: what the default ladder (source + 720p 2500k + 480p 1200k + 360p 700k, x264
# veryfast, zerolatency) costs on a 720p30 source, beside the ffmpeg CLI doing the same ladder
# (decode once, split, scale, same preset/tune/bitrates/GOP, AAC copied) in the same run; then
# how many laddered channels this box keeps in real time, and how many passthrough channels
# alongside one laddered channel.
# Usage: [ROUNDS=n] [CPU_ONLY=1] [PERF=1] bench/transcode/run.sh [seconds-of-content]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-30}

# shellcheck source=bench/lib.sh
source bench/lib.sh
bash deploy/setup.sh --test >/dev/null

work=$(mktemp -d -p /var/tmp)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n "${SL_PID:-}" ]] && kill "$SL_PID" 2>/dev/null && wait "$SL_PID" 2>/dev/null
  [[ -n "${RD_PID:-}" ]] && kill "$RD_PID" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The source: 720p30, 2 s GOP without scene cuts, AAC; encoded once, published with -c copy.
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440 -t "$SECS" -c:v libx264 -preset veryfast -b:v 4000k -g 60 \
  -keyint_min 60 -sc_threshold 0 -c:a aac -b:a 128k -f flv "$work/src.flv"

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save '' --dir "$work" --daemonize no >/dev/null &
RD_PID=$!
until redis-cli -p "$RP" ping >/dev/null 2>&1; do sleep 0.05; done
export SILKLIVE_SECRET=bench-secret
HP=$(free_port)
RTMP=$(free_port)
cat >"$work/silklive.ini" <<INI
[transcode]
preset = veryfast
[ladder]
PT =
INI
build/silklive serve --config "$work/silklive.ini" --listen "127.0.0.1:$HP" \
  --rtmp-listen "127.0.0.1:$RTMP" --redis "redis://127.0.0.1:$RP" --data-dir "$work/data" \
  --media-dir "$work/media" --modules commerce,transcode,ingest --log-level warning &
SL_PID=$!
until curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null; do sleep 0.1; done
admin=$(build/silklive token --role admin --sub bench)
api() { curl -sf -H "Authorization: Bearer $admin" -d "$2" "http://127.0.0.1:$HP$1"; }
api /api/v1/pavilions '{"code":"CL","name":{"en":"Chile"},"currency":"CLP","languages":["es"]}' >/dev/null
api /api/v1/pavilions '{"code":"PT","name":{"en":"Passthrough"},"currency":"EUR","languages":["pt"]}' >/dev/null
key() { # pavilion channel → stream key
  api "/api/v1/pavilions/$1/channels" "{\"id\":\"$2\",\"title\":{\"en\":\"$2\"}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["stream_key"])'
}
publish() { # key [loop]
  ffmpeg -hide_banner -loglevel error -nostdin -re ${2:+-stream_loop -1} -i "$work/src.flv" \
    -c copy -f flv "rtmp://127.0.0.1:$RTMP/live/$1" &
  pids+=($!)
}
stop_publishers() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
shed() { curl -s "http://127.0.0.1:$HP/metrics" | awk '/^silklive_transcode_rungs_shed_total/ {print $2}'; }
hz=$(getconf CLK_TCK)

# ---- 1. CPU per content-second: silklive (one channel, real time) and ffmpeg (same ladder) ----
# The peer twice. Live, like silklive: an ffmpeg listening for RTMP (-listen 1), fed by the same
# real-time publisher, writing the same four renditions as 2 s HLS segments; its CPU is the
# listener's. And as a batch job reading the file as fast as it can (no RTMP, no idle waits).
ffmpeg_ladder() { # mode input output-prefix → CPU-s per content-second
  python3 - "$1" "$2" "$3" "$SECS" <<'PY'
import resource, subprocess, sys
mode, src, out, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
x264 = ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "60",
        "-keyint_min", "60", "-sc_threshold", "0"]
fmt = (["-f", "hls", "-hls_time", "2", "-hls_list_size", "6", "-hls_flags", "delete_segments"]
       if mode == "live" else ["-f", "mpegts"])
ext = "m3u8" if mode == "live" else "ts"
cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
cmd += ["-listen", "1"] if mode == "live" else []
cmd += ["-i", src, "-filter_complex",
        "[0:v]split=3[a][b][c];[a]scale=-2:720:flags=bilinear[v720];"
        "[b]scale=-2:480:flags=bilinear[v480];[c]scale=-2:360:flags=bilinear[v360]",
        "-map", "0:v", "-map", "0:a", "-c", "copy", *fmt, f"{out}-source.{ext}"]
for name, rate in (("720", "2500k"), ("480", "1200k"), ("360", "700k")):
    cmd += ["-map", f"[v{name}]", "-map", "0:a", *x264, "-b:v", rate, "-c:a", "copy",
            *fmt, f"{out}-{name}.{ext}"]
subprocess.run(cmd, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{(r.ru_utime + r.ru_stime) / secs:.3f}")
PY
}
# One channel on silklive, published in real time; its CPU over the broadcast.
silklive_ladder() { # channel → CPU-s per content-second
  local k c0 c1
  k=$(key CL "$1")
  c0=$(cpu_ticks "$SL_PID")
  publish "$k"
  # PERF=1: a profile of silklive during the first broadcast, in /tmp/transcode.perf
  [[ -n "${PERF:-}" && "$1" == l0-1 ]] &&
    (perf record -F 499 -g -p "$SL_PID" -o /tmp/transcode.perf -- sleep $((SECS - 5)) >/dev/null 2>&1 &)
  wait "${pids[0]}"
  sleep 3 # the last segments
  c1=$(cpu_ticks "$SL_PID")
  pids=()
  awk -v a="$c0" -v b="$c1" -v hz="$hz" -v s="$SECS" 'BEGIN {printf "%.3f", (b - a) / hz / s}'
}
# ROUNDS (default 1) alternate silklive and both peers, each round one table row.
rows=()
mkdir -p "$work/ff"
for round in $(seq "${ROUNDS:-1}"); do
  sl_cpu=$(silklive_ladder "l0-$round")
  PEER_RTMP=$(free_port)
  ffmpeg_ladder live "rtmp://127.0.0.1:$PEER_RTMP/live/peer" "$work/ff/live" >"$work/ff/live.cpu" &
  peer=$!
  sleep 1 # the listener's socket
  ffmpeg -hide_banner -loglevel error -nostdin -re -i "$work/src.flv" -c copy -f flv \
    "rtmp://127.0.0.1:$PEER_RTMP/live/peer"
  wait "$peer"
  ff_live=$(cat "$work/ff/live.cpu")
  ff_cpu=$(ffmpeg_ladder batch "$work/src.flv" "$work/ff/batch")
  rows+=("| $round | $sl_cpu | $ff_live | $(awk -v a="$sl_cpu" -v b="$ff_live" 'BEGIN {printf "%.2f", a / b}') | $ff_cpu | $(awk -v a="$sl_cpu" -v b="$ff_cpu" 'BEGIN {printf "%.2f", a / b}') |")
done
shed_after_one=$(shed)
rungs=$(grep -c STREAM-INF "$work/media/l0-1/master.m3u8" || true)

# ---- 2. laddered channels kept in real time (no rung shed); CPU_ONLY=1 skips 2 and 3 ----
sustained=0
tries=(1 2 3 4)
[[ -n "${CPU_ONLY:-}" ]] && tries=()
for n in "${tries[@]}"; do
  before=$(shed)
  for i in $(seq "$n"); do publish "$(key CL "l$n-$i")" loop; done
  sleep 25
  after=$(shed)
  stop_publishers
  sleep 3
  [[ "$after" == "$before" ]] || break
  sustained=$n
done

# ---- 3. passthrough channels beside one laddered channel ----
pt_ok=0
tries=(10 20 40 80)
[[ -n "${CPU_ONLY:-}" ]] && tries=()
for m in "${tries[@]}"; do
  before=$(shed)
  publish "$(key CL "lp$m")" loop
  for i in $(seq "$m"); do publish "$(key PT "p$m-$i")" loop; done
  sleep 25
  after=$(shed)
  live=$(find "$work/media" -path "*/p$m-*/source/index.m3u8" -newermt '-4 seconds' | wc -l)
  stop_publishers
  sleep 3
  [[ "$after" == "$before" && "$live" -eq "$m" ]] || break
  pt_ok=$m
done

echo
echo "CPU-s per content-second, default ladder on 720p30 ($rungs renditions); peer live = ffmpeg listening for"
echo "the same real-time RTMP publish, writing HLS; peer batch = ffmpeg on the file, as fast as it can"
echo
echo "| round | silklive | ffmpeg live | ratio (target ≤ 1.1) | ffmpeg batch | ratio |"
echo "| --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
echo
echo "rungs shed while measuring one channel: $shed_after_one"
echo "laddered channels kept in real time (no rung shed, 25 s each, 1..4 tried): $sustained"
echo "passthrough channels beside one laddered channel, all listing in real time (10/20/40/80 tried): $pt_ok"
