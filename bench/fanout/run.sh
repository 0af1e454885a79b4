#!/usr/bin/env bash
# bench/fanout: chat fan-out, 1 room x N subscribers, open-loop publisher with timestamps,
# silklive's hub beside a Node `ws` broadcast server (npm ws) in the same run; then idle
# connections held and server RSS per connection for both.
# Server on core 0, load generator (and Redis) on core 1.
# Usage: bench/fanout/run.sh [subscribers] [seconds] [rates...|none]   (default 1000 10 500 1000 2000 4000)
set -euo pipefail
cd "$(dirname "$0")/../.."
SUBS=${1:-1000}
SECS=${2:-10}
shift 2 || true
RATES=("$@")
((${#RATES[@]})) || RATES=(500 1000 2000 4000)
# "none": only the idle rounds, on fresh servers. After load rounds both heaps hold freed memory
# (silklive's allocator reuses it, understating growth; Node's GC returns it, making it negative).
[[ "${RATES[0]}" == none ]] && RATES=()
# The issue's points (10k/25k/50k) need more than 50k descriptors per process (server and load
# generator each hold one per connection); under a lower hard limit, what fits below it.
hard_fds=$(ulimit -Hn); [[ $hard_fds == unlimited ]] && hard_fds=1048576
if ((hard_fds >= 60000)); then IDLE=${IDLE:-10000 25000 50000}; else IDLE=${IDLE:-5000 10000 18000}; fi
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_need redis-server redis-tools
command -v node >/dev/null || bench_need nodejs npm
bash deploy/setup.sh >/dev/null
(cd bench/fanout && [[ -d node_modules/ws ]] || npm install --silent --no-audit --no-fund >/dev/null)
work=$(mktemp -d)
cc -O2 -Wall -o "$work/fanout" bench/fanout/fanout.c
ulimit -n "$(ulimit -Hn)" # this sandbox caps it at 20000: more connections need a higher hard limit
cleanup() {
  for p in ${SL_PID:-} ${RD_PID:-} ${PEER_PID:-} ${GEN_PID:-}; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

RP=$(free_port); HP=$(free_port); NP=$(free_port)
taskset -c 1 redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  --daemonize no >/dev/null &
RD_PID=$!
until redis-cli -p "$RP" ping >/dev/null 2>&1; do sleep 0.05; done
SECRET=bench-secret
printf '[chat]\nrate_messages = 1000000\nrate_window_ms = 1000\nframe_rate = 1000000\nqueue_frames = 4096\nqueue_bytes = 8388608\n' >"$work/chat.ini"
taskset -c 0 build/silklive serve --listen "127.0.0.1:$HP" --data-dir "$work/data" \
  --media-dir "$work/media" --redis "redis://127.0.0.1:$RP" --secret "$SECRET" \
  --modules chat,commerce --config "$work/chat.ini" --log-level warning &
SL_PID=$!
until curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null; do sleep 0.1; done
tok() { build/silklive token --secret "$SECRET" "$@"; }
ADMIN=$(tok --role admin --sub root); CONSUL=$(tok --role consul --sub c1 --pavilion CL)
HOST=$(tok --role host --sub h1 --pavilion CL)
api() { curl -sf -X "$1" "http://127.0.0.1:$HP$2" -H "Authorization: Bearer $3" -d "$4" >/dev/null; }
api POST /api/v1/pavilions "$ADMIN" '{"code":"CL","name":{"en":"Chile"},"currency":"CLP"}'
api POST /api/v1/pavilions/CL/channels "$CONSUL" '{"id":"b1","title":{"en":"bench"}}'
api POST /api/v1/pavilions/CL/channels "$CONSUL" '{"id":"b2","title":{"en":"idle"}}'
taskset -c 0 node bench/fanout/peer.js "$NP" >/dev/null &
PEER_PID=$!
sleep 1

# One round: fanout against a server; prints "deliveries_per_s p50 p99 cpu%" on stdout.
round() {
  local pid=$1; shift
  local t0 c0 line
  wait_idle "$SL_PID"; wait_idle "$PEER_PID"
  t0=$(date +%s%N); c0=$(cpu_ticks "$pid")
  line=$(taskset -c 1 "$work/fanout" "$@")
  local t1 c1
  t1=$(date +%s%N); c1=$(cpu_ticks "$pid")
  local cpu
  cpu=$(awk -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.0f", 100 * c / hz / (t / 1e9)}')
  echo "$line cpu% $cpu"
}
field() { awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }

echo "| rate (msg/s) | subscribers | silklive deliveries/s | p50 / p99 ms | server CPU % | ws deliveries/s | p50 / p99 ms | server CPU % | ratio |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for r in "${RATES[@]}"; do
  a=$(round "$SL_PID" --port "$HP" --subs "$SUBS" --rate "$r" --seconds "$SECS" --channel b1 --token "$HOST")
  b=$(round "$PEER_PID" --port "$NP" --subs "$SUBS" --rate "$r" --seconds "$SECS" --plain 1)
  da=$(field deliveries_per_s <<<"$a"); db=$(field deliveries_per_s <<<"$b")
  echo "| $r | $SUBS | $da ($(field deliveries <<<"$a")/$(field expected <<<"$a")) | $(field p50_ms <<<"$a") / $(field p99_ms <<<"$a") | $(field cpu% <<<"$a") | $db ($(field deliveries <<<"$b")/$(field expected <<<"$b")) | $(field p50_ms <<<"$b") / $(field p99_ms <<<"$b") | $(field cpu% <<<"$b") | $(awk -v a="$da" -v b="$db" 'BEGIN {printf "%.2f", a / b}') |"
done

echo
echo "| idle connections | silklive RSS over its baseline | per connection | ws RSS over its baseline | per connection |"
echo "| --- | --- | --- | --- | --- |"
# One baseline per server, before the first idle round: memory freed after a round stays in
# the allocator and is reused by the next, so growth from the previous round would understate.
declare -A base=([sl]=$(rss_kb "$SL_PID") [peer]=$(rss_kb "$PEER_PID"))
for n in $IDLE; do
  row="| $n"
  for target in sl peer; do
    if [[ $target == sl ]]; then pid=$SL_PID; args=(--port "$HP" --channel b2); else pid=$PEER_PID; args=(--port "$NP" --plain 1); fi
    taskset -c 1 "$work/fanout" "${args[@]}" --subs "$n" --idle 1 >"$work/idle.out" &
    GEN_PID=$!
    for _ in $(seq 600); do
      grep -q ready "$work/idle.out" 2>/dev/null && break
      kill -0 "$GEN_PID" 2>/dev/null || break
      sleep 0.2
    done
    sleep 3
    now=$(rss_kb "$pid")
    kill "$GEN_PID"; wait "$GEN_PID" 2>/dev/null || true; GEN_PID=
    sleep 3
    grown=$((now - base[$target]))
    row="$row | $((grown / 1024)) MiB | $(awk -v g="$grown" -v n="$n" 'BEGIN {printf "%.2f KiB", g / n}')"
  done
  echo "$row |"
done
