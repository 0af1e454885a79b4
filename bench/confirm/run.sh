#!/usr/bin/env bash
# bench/confirm: confirmed orders/s through the HTTP API with Redis under `appendonly yes` +
# `appendfsync always` (every reply after its fsync), beside the same confirm script sent
# straight to the same Redis, pipelined, in the same run. Each side confirms its own N held
# reservations (10k distinct buyers), so every call does the full confirm (hold → order).
# The peer is `redis-cli --pipe`, not redis-benchmark: redis-benchmark only has random keys, and
# confirming random reservation ids repeats ids, whose second confirm is the cheap read-only
# "existing" path. silklive on core 0; Redis on core 1 with the client of each round (wrk, then
# redis-cli), so both rounds load Redis's core the same way.
# Usage: bench/confirm/run.sh [seconds] [holds per side]
set -euo pipefail
cd "$(dirname "$0")/../.."
# Since issue 20 a confirm answers 402 until the payment is verified: this first-round benchmark
# measures commit fa2481a's confirm only, which bench/payments/run.sh builds and runs beside the
# paid path in one run.
if [[ ${SL_BIN:-} == "" ]]; then
  echo "bench/confirm: HEAD makes orders only from verified payments; run bench/payments/run.sh" >&2
  exit 2
fi
SECS=${1:-10}
N=${2:-150000}
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_need wrk redis-tools redis-server
bash deploy/setup.sh >/dev/null
commerce_bench_up --appendonly yes --appendfsync always
per_user=$((2 * N / 10000 + 10))
SALE=$(api POST /api/v1/sales "$CONSUL" "{\"channel\":\"b1\",\"sku\":\"p1\",\"quantity\":$((2 * N + 1000)),\"per_user_limit\":$per_user,\"hold_ttl_s\":3600}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
NOW=$(date +%s%3N)
YEAR=$(TZ=Asia/Shanghai date +%Y)
RSHA=$(redis-cli -p "$RP" SCRIPT LOAD "$(lua_script commerce_reserve)")
CSHA=$(redis-cli -p "$RP" SCRIPT LOAD "$(lua_script commerce_confirm)")
# 2N holds: a0..a(N-1) for the API, p0..p(N-1) for the peer (not timed)
python3 bench/confirm/gen.py reserve "$RSHA" "$SALE" 0 "$N" a "$YEAR" "$NOW" >"$work/hold_a.resp"
python3 bench/confirm/gen.py reserve "$RSHA" "$SALE" 0 "$N" p "$YEAR" "$NOW" >"$work/hold_p.resp"
redis-cli -p "$RP" --pipe <"$work/hold_a.resp" >/dev/null
redis-cli -p "$RP" --pipe <"$work/hold_p.resp" >/dev/null
held=$(redis-cli -p "$RP" HGET "sl:{sale:$SALE}:inv" held)
[[ "$held" == "$((2 * N))" ]] || { echo "bench/confirm: expected $((2 * N)) holds, got $held" >&2; exit 1; }
python3 bench/confirm/gen.py tokens "$SECRET" "$SALE" 0 "$N" a >"$work/wrk_input"
python3 bench/confirm/gen.py confirm "$CSHA" "$SALE" 0 "$N" p "$YEAR" "$NOW" >"$work/confirm_p.resp"

# --- silklive through HTTP ---
t0=$(cpu_ticks "$SL_PID")
taskset -c 1 wrk -t1 -c"${CONNS:-64}" -d"${SECS}s" --latency -s bench/confirm/confirm.lua \
  "http://127.0.0.1:$HP" -- "$work/wrk_input" >"$work/wrk.txt"
t1=$(cpu_ticks "$SL_PID")
requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt"); non2xx=${non2xx:-0}
dur=$(awk '/requests in/ {print $4}' "$work/wrk.txt" | tr -d 's,')
((requests <= N)) || { echo "bench/confirm: wrk sent $requests > $N holds; raise N" >&2; exit 1; }
api_ops=$(echo "($requests - $non2xx) / $dur" | bc -l)
api_p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt"); api_p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")

# --- peer: the same confirm script, pipelined into the same Redis ---
p0=$(date +%s%N)
taskset -c 1 redis-cli -p "$RP" --pipe <"$work/confirm_p.resp" >"$work/pipe.txt"
p1=$(date +%s%N)
peer_ops=$(echo "$N / (($p1 - $p0) / 1000000000)" | bc -l)

sold=$(redis-cli -p "$RP" HGET "sl:{sale:$SALE}:inv" sold)
orders=$(redis-cli -p "$RP" XLEN "sl:{sale:$SALE}:orders")
sale_json=$(curl -sf "http://127.0.0.1:$HP/api/v1/sales/$SALE")
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); ok=s["available"]+s["held"]+s["sold"]==s["quantity"] and min(s["available"],s["held"],s["sold"])>=0; print("invariant", "holds" if ok else "BROKEN")' "$sale_json"
echo "orders in the stream: $orders, units sold: $sold, API confirms answered 200: $((requests - non2xx)), peer confirms: $N"
printf '| what | silklive HTTP | same script pipelined (redis-cli --pipe) | ratio |\n| --- | --- | --- | --- |\n'
printf '| confirmed orders/s, appendfsync always | %.0f | %.0f | %.2f |\n' "$api_ops" "$peer_ops" "$(echo "$api_ops / $peer_ops" | bc -l)"
printf '| API latency p50 / p99 (%s conns) | %s / %s | | |\n' "${CONNS:-64}" "$api_p50" "$api_p99"
printf '| silklive CPU during the API run | %d %% of a core | | |\n' $(((t1 - t0) * 100 / SECS / 100))
echo "silklive peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$SL_PID/status")"
