#!/usr/bin/env bash
# bench/reserve/cost: instructions silklive spends per reservation (valgrind callgrind), for one
# or more binaries side by side. Wall-clock rates on a shared 2-core VM move by ±20-50 % between
# runs of the same binary; an instruction count does not, so a change of a few percent shows.
# Each binary serves 2,000 and then 4,000 reservations over one keep-alive connection (500
# buyers cycled, a 500-unit sale: after it sells out, mostly sold_out, like bench/reserve/run.sh);
# the difference over 2,000 is the steady cost of one, without start-up and first token checks.
# Usage: bench/reserve/cost.sh [binary...]   (default: build/silklive)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_need valgrind redis-tools
(($#)) || set -- build/silklive

# Reservations over one connection; prints the count of each status.
client() {
  python3 - "$HP" "$SECRET" "$1" "$2" <<'PY'
import sys, hmac, hashlib, base64, json, time, http.client
port, secret, sale, n = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3], int(sys.argv[4])
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
toks = []
for i in range(500):
    body = b64(json.dumps({"sub": f"buyer{i}", "role": "viewer", "exp": int(time.time()) + 86400}).encode())
    toks.append(f"{head}.{body}." + b64(hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()))
conn, codes = http.client.HTTPConnection("127.0.0.1", port), {}
for i in range(n):
    conn.request("POST", f"/api/v1/sales/{sale}/reservations", body='{"qty":1}',
                 headers={"Authorization": "Bearer " + toks[i % 500], "Content-Type": "application/json",
                          "Idempotency-Key": f"k{i}"})
    r = conn.getresponse(); r.read()
    codes[r.status] = codes.get(r.status, 0) + 1
print(" ".join(f"{k}:{v}" for k, v in sorted(codes.items())))
PY
}

# Instructions of one silklive run serving n reservations.
instructions() {
  local bin=$1 n=$2
  SL_BIN=$bin SL_WRAP="valgrind --tool=callgrind --log-file=$BENCH_OUT/vg.log --callgrind-out-file=$BENCH_OUT/cg.out" \
    commerce_bench_up --appendonly no >/dev/null
  local sale
  sale=$(api POST /api/v1/sales "$CONSUL" '{"channel":"b1","sku":"p1","quantity":500,"per_user_limit":2,"hold_ttl_s":3600}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  echo "  $bin, $n reservations: $(client "$sale" "$n")" >&2
  commerce_bench_down
  trap - EXIT
  callgrind_annotate "$BENCH_OUT/cg.out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

BENCH_OUT=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'rm -rf "$BENCH_OUT"' EXIT
printf '| binary | instructions per reservation |\n| --- | --- |\n' >"$BENCH_OUT/table"
for bin in "$@"; do
  a=$(instructions "$bin" 2000)
  b=$(instructions "$bin" 4000)
  printf '| %s | %d |\n' "$bin" $(((b - a) / 2000)) >>"$BENCH_OUT/table"
done
cat "$BENCH_OUT/table"
