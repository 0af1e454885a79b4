#!/usr/bin/env bash
# bench/reserve: reservations/s through the HTTP API (wrk, 10k distinct buyers, 1 sale of 5k
# units, per-user limit 2, a fresh Idempotency-Key per request) beside redis-benchmark -P 16
# running the same reserve script with EVALSHA against the same Redis, in the same run.
# silklive on core 0; Redis on core 1 with the load generator of the round.
# Usage: bench/reserve/run.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_need wrk redis-tools
bash deploy/setup.sh >/dev/null
commerce_bench_up --appendonly no
new_sale() { api POST /api/v1/sales "$CONSUL" '{"channel":"b1","sku":"p1","quantity":5000,"per_user_limit":2,"hold_ttl_s":3600}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
for i in $(seq 10000); do echo "buyer$i"; done >"$work/users"
python3 - "$work/users" "$SECRET" >"$work/tokens" <<'PY'
import sys, hmac, hashlib, base64, json, time
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
secret = sys.argv[2].encode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
for u in open(sys.argv[1]).read().split():
    body = b64(json.dumps({"sub": u, "role": "viewer", "exp": int(time.time()) + 86400}).encode())
    sig = b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest())
    print(f"{head}.{body}.{sig}")
PY

# --- silklive through HTTP ---
SALE=$(new_sale)
[[ -n "${PERF:-}" ]] && (perf record ${PERF_CG:--g} -p "$SL_PID" -o /tmp/reserve.perf -- sleep $((SECS - 2)) >/dev/null 2>&1 &)
t0=$(cpu_ticks "$SL_PID")
taskset -c 1 wrk -t1 -c64 -d"${SECS}s" --latency -s bench/reserve/reserve.lua \
  "http://127.0.0.1:$HP" -- "$work/tokens" "$SALE" >"$work/wrk.txt"
t1=$(cpu_ticks "$SL_PID")
api_rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
api_p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt"); api_p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
sale_json=$(curl -sf "http://127.0.0.1:$HP/api/v1/sales/$SALE")
# --- half load, for latency: fewer connections ---
SALE2=$(new_sale)
taskset -c 1 wrk -t1 -c4 -d"${SECS}s" --latency -s bench/reserve/reserve.lua \
  "http://127.0.0.1:$HP" -- "$work/tokens" "$SALE2" >"$work/wrk_half.txt"
half_rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk_half.txt")
half_p99=$(awk '$1=="99%" {print $2}' "$work/wrk_half.txt")

# --- peer: redis-benchmark, same script, same Redis, keys of a fresh sale ---
SALE3=$(new_sale)
SHA=$(redis-cli -p "$RP" SCRIPT LOAD "$(lua_script commerce_reserve)")
NOW=$(($(date +%s%3N)))
# like the API: a random buyer of 10k and a fresh idempotency key and reservation id per call
peer=$(taskset -c 0 redis-benchmark -p "$RP" -P 16 -c 64 -n 400000 -r 10000 -q \
  EVALSHA "$SHA" 6 "sl:{sale:$SALE3}:inv" "sl:{sale:$SALE3}:res" "sl:{sale:$SALE3}:exp" \
  "sl:{sale:$SALE3}:user" "sl:{sale:$SALE3}:idem:u__rand_int__:k__rand_int__" \
  "sl:{buyer:u__rand_int__}:spent:2026" "$NOW" "u__rand_int__" 1 "${SALE3}_r__rand_int__" 50 \
  2600000 500000 86400 | tr '\r' '\n' | grep -oE '[0-9.]+ requests per second' | tail -1 | cut -d' ' -f1)
echo "sale after the API run: $sale_json"
check=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print("invariant", "holds" if s["available"]+s["held"]+s["sold"]==s["quantity"] and min(s["available"],s["held"],s["sold"])>=0 else "BROKEN")' "$sale_json")
echo "$check"
printf '| what | silklive HTTP | redis-benchmark -P 16 EVALSHA | ratio |\n| --- | --- | --- | --- |\n'
printf '| reservations/s (64 conns) | %s | %s | %.2f |\n' "$api_rps" "$peer" "$(echo "$api_rps / $peer" | bc -l)"
printf '| latency p50 / p99 at 64 conns | %s / %s | | |\n' "$api_p50" "$api_p99"
printf '| at 4 conns: reservations/s, p99 | %s, %s | | |\n' "$half_rps" "$half_p99"
printf '| silklive CPU during the 64-conn run | %d %% of a core | | |\n' $(((t1 - t0) * 100 / SECS / 100))
echo "silklive peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$SL_PID/status")"
