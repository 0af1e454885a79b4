#!/usr/bin/env bash
# bench/payments: paid orders/s end to end through the HTTP API (a payment intent, WeChat Pay's
# native prepay at a provider stand-in, then the provider's signed notification making the order),
# beside the old confirm (hold -> order directly, the code of commit fa2481a) in the same run, both
# with Redis under `appendonly yes` + `appendfsync always`.
#
#  1. peer: silklive built at fa2481a (cached in $BENCH_CACHE, default /tmp/silklive-bench-cache),
#     the round of bench/confirm/run.sh: CONFIRM_N holds piped in with the reserve script, then
#     `wrk -t1 -c$CONNS -d$SECS` of POST /reservations/{rid}/confirm; then the same confirm sent
#     open-loop at half the measured rate on holds wrk did not touch (latency).
#  2. silklive at HEAD (the working tree, built into build-bench/ with -j1, JOBS to change) started
#     with a [wechatpay] section for a provider stand-in (standin.mjs, node's crypto only: the
#     merchant's and the platform's keys, the APIv3 key). N holds piped in with HEAD's reserve
#     script; (timed) the payment intents, POST /reservations/{rid}/payment with provider
#     wechatpay (intent.lua), wrk for at most $SECS s: each intent makes the server sign a prepay
#     request and call the stand-in's POST /v3/pay/transactions/native, which answers from a pool
#     of answers it signed beforehand; (timed) the stand-in's TRANSACTION.SUCCESS notifications,
#     signed and sealed beforehand, one for every intent answered 201 (the out_trade_no and total
#     the server gave the provider), each sent once by wrk (notify.lua) to POST
#     /payments/wechatpay/notify (204 = the order is stored). The wrk scripts stop once every line
#     is answered and time their own window (first request to last answer). Checks: orders in the
#     sale's order hash == notifications answered 204, sold == orders, available+held+sold ==
#     quantity, customs outbox XLEN == orders. End to end = orders / (t intents + t notifications).
#  3. latency: a second sale with as many holds and intents (not timed) as half the measured
#     notification rate fills in $SECS s, then their notifications sent open-loop at that rate
#     (openloop.mjs: due times fixed beforehand, latency from the due time; the notify route
#     answers 204 only once the order is stored, so this is notification-to-order).
#
# silklive on core 0; Redis, wrk, the stand-in and the open-loop sender on core 1 (the signing
# beforehand runs on both cores, outside every timed window). The notifications' timestamps are
# those of their signing: each set is sent well inside WeChat Pay's 300 s window.
# Usage: bench/payments/run.sh [seconds] [N]   (default 10 10000; N: holds for the paid path)
#   CONFIRM_N (150000): holds for the old confirm round; CONNS (64): wrk connections;
#   SKIP_OLD=1: only HEAD (no peer, no ratio); KEEP=1: keep the run's files (/var/tmp/payments.*);
#   PERF_DIR=dir: perf record silklive in the timed phases of HEAD; LAT_RATE=r: the latency
#   round at r notifications/s instead of half the measured rate; HEAD_BIN=path: that binary
#   instead of building the working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SECS=${1:-10}
N=${2:-10000}
CONFIRM_N=${CONFIRM_N:-150000}
CONNS=${CONNS:-64}
OLD_COMMIT=${OLD_COMMIT:-fa2481a}
CACHE=${BENCH_CACHE:-/tmp/silklive-bench-cache}
HERE=bench/payments
# shellcheck source=bench/lib.sh
source bench/lib.sh
bench_need wrk redis-tools redis-server curl
command -v node >/dev/null || bench_need nodejs
say() { echo "bench/payments: $*" >&2; }
die() { say "$*"; exit 1; }

run=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}" payments.XXXXXX)
STANDIN_PID=
# lib.sh's commerce_bench_up sets its EXIT trap to commerce_bench_down: that stops the stand-in too
eval "lib_bench_down() $(declare -f commerce_bench_down | tail -n +2)"
commerce_bench_down() {
  local st=0
  if [[ -n "${SL_PID:-}" ]] && kill "$SL_PID" 2>/dev/null; then
    wait "$SL_PID" 2>/dev/null || st=$?
    ((st == 0)) || say "silklive (pid $SL_PID) exited with status $st when stopped (SIGTERM)"
  fi
  SL_PID=''
  lib_bench_down || true
  if [[ -n "$STANDIN_PID" ]]; then kill "$STANDIN_PID" 2>/dev/null || true; STANDIN_PID=; fi
  aof_watch_kill
  return 0
}
cleanup() {
  commerce_bench_down
  if [[ -n "${KEEP:-}" ]]; then say "kept $run"; else rm -rf "$run"; fi
}
trap cleanup EXIT

# A load generator on core 1: its stdout to $1, its CPU ticks (utime+stime) to $1.ticks.
on_core1() {
  local out=$1
  shift
  # shellcheck disable=SC2016 # expanded by the inner bash
  taskset -c 1 bash -c '"$@" >"$0"; rc=$?; awk "{print \$16 + \$17}" /proc/$$/stat >"$0.ticks"; exit $rc' "$out" "$@"
}
# wrk with intent.lua or notify.lua on core 1: the script logs its first request and last answer
# ("start", "answered") and stops; wrk itself would idle out its -d, so it is interrupted then.
# $1 wrk's stdout (CPU ticks to $1.ticks), $2 the script's log, then wrk's arguments.
run_wrk() {
  local out=$1 log=$2 w
  shift 2
  rm -f "$log" "$out.pid"
  # shellcheck disable=SC2016 # expanded by the inner bash
  taskset -c 1 bash -c '"$@" >"$0" & echo $! >"$0.pid"; wait $!; rc=$?; awk "{print \$16 + \$17}" /proc/$$/stat >"$0.ticks"; exit $rc' "$out" "$@" &
  w=$!
  while kill -0 "$w" 2>/dev/null; do
    if [[ -s "$out.pid" ]] && grep -q '^answered' "$log" 2>/dev/null; then
      kill -INT "$(cat "$out.pid")" 2>/dev/null || true
      break
    fi
    sleep 0.05
  done
  wait "$w"
}
# PERF_DIR=dir: perf record -g of silklive during each timed phase of HEAD (perf's cost is in
# the figures then: for where the time goes, not for the table)
PERF_PID=
perf_start() {
  [[ -n "${PERF_DIR:-}" ]] || return 0
  mkdir -p "$PERF_DIR"
  perf record -g -o "$PERF_DIR/$1.data" -p "$SL_PID" >/dev/null 2>&1 &
  PERF_PID=$!
}
perf_stop() {
  [[ -n "$PERF_PID" ]] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" || true
  PERF_PID=
}
# seconds from the first request to the last answer, per the script's log (empty if unfinished)
window() { awk -F'\t' '$1 == "start" {s = $2} $1 == "answered" {e = $3} END {if (s && e) printf "%.3f", (e - s) / 1e9}' "$1"; }
answered_201() { awk -F'\t' 'NF == 2 && $1 ~ /_/' "$1"; }
pct_of_core() { echo "$1 $2" | awk '{printf "%d", $1 / ($2 * 100) * 100}'; } # ticks seconds
# Redis's counters: commands, reads (one read of at most 16 KB per client per event-loop turn,
# and with appendfsync always one fsync per turn before the replies), input bytes
rd_stats() { redis-cli -p "$RP" INFO stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" {c = $2} $1 == "total_reads_processed" {r = $2} $1 == "total_net_input_bytes" {b = $2} END {print c, r, b}'; }
rd_per_read() { # before after orders
  echo "$1 $2 $3" | awk '{c = $4 - $1; r = $5 - $2; b = $6 - $3; if (r > 0) printf "%d commands (with those in scripts) in %d reads (%.1f KB a read), %.2f KB of commands an order", c, r, b / r / 1024, b / $7 / 1024}'
}
# When Redis rewrites its AOF during a latency round (a fork, then tens of MB written: fsyncs
# stall meanwhile): "epoch ms: in progress 0|1" at each change, polled every 100 ms; shown in ms
# from the open-loop sender's start (its started_at_ms).
AOFW_PID=
aof_watch_start() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  taskset -c 1 bash -c 'p=0; while :; do v=$(redis-cli -p "$1" INFO persistence | tr -d "\r" | awk -F: "\$1 == \"aof_rewrite_in_progress\" {print \$2}"); [[ $v != "$p" ]] && echo "$(date +%s%3N) $v" && p=$v; sleep 0.1; done' _ "$RP" >"$1" &
  AOFW_PID=$!
}
aof_watch_kill() {
  if [[ -n "${AOFW_PID:-}" ]]; then kill "$AOFW_PID" 2>/dev/null || true; fi
  AOFW_PID=
}
aof_watch_show() { # file started_at_ms
  awk -v t0="$2" '{printf "%s at %d ms; ", ($2 == 1 ? "rewrite starts" : "rewrite done"), $1 - t0}' "$1"
}
wrk_field() { awk -v k="$2" '$1 == k {print $2}' "$1"; }
wrk_secs() { awk '/requests in/ {d = $4; sub(/,$/, "", d); m = d ~ /m$/; gsub(/[ms]/, "", d); print m ? d * 60 : d}' "$1"; }

# ---------- binaries ----------
OLD_DIR=$CACHE/$OLD_COMMIT
OLD_BIN=$OLD_DIR/build/silklive
if [[ -z "${SKIP_OLD:-}" && ! -x $OLD_BIN ]]; then
  say "building $OLD_COMMIT into $OLD_DIR (once)"
  rm -rf "$OLD_DIR.partial"
  mkdir -p "$OLD_DIR.partial/src"
  git archive "$OLD_COMMIT" | tar -x -C "$OLD_DIR.partial/src"
  if ! { cmake -S "$OLD_DIR.partial/src" -B "$OLD_DIR.partial/build" -DCMAKE_BUILD_TYPE=Release \
    -DSILKLIVE_TESTS=OFF && cmake --build "$OLD_DIR.partial/build" -j"${JOBS:-1}"; } >"$run/build-old.log" 2>&1; then
    tail -20 "$run/build-old.log" >&2
    die "the build of $OLD_COMMIT failed"
  fi
  mv "$OLD_DIR.partial" "$OLD_DIR"
fi
if [[ -z "${HEAD_BIN:-}" ]]; then
  say "building HEAD (the working tree) into build-bench"
  { cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release -DSILKLIVE_TESTS=OFF &&
    cmake --build "$ROOT/build-bench" -j"${JOBS:-1}"; } >"$run/build-head.log" 2>&1 ||
    { tail -20 "$run/build-head.log" >&2; die "the build of HEAD failed"; }
  HEAD_BIN=$ROOT/build-bench/silklive
fi

# ---------- 1. peer: the old confirm (fa2481a), as bench/confirm/run.sh ----------
if [[ -z "${SKIP_OLD:-}" ]]; then
  say "round 1: the old confirm at $OLD_COMMIT, $CONFIRM_N holds"
  SL_BIN=$OLD_BIN SL_CONFIG='' commerce_bench_up --appendonly yes --appendfsync always
  trap cleanup EXIT
  per_user=$((CONFIRM_N / 10000 + 10))
  OSALE=$(api POST /api/v1/sales "$CONSUL" "{\"channel\":\"b1\",\"sku\":\"p1\",\"quantity\":$((CONFIRM_N + 1000)),\"per_user_limit\":$per_user,\"hold_ttl_s\":3600}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  NOW=$(date +%s%3N)
  YEAR=$(TZ=Asia/Shanghai date +%Y)
  RSHA=$(redis-cli -p "$RP" SCRIPT LOAD "$(cd "$OLD_DIR/src" && lua_script commerce_reserve)")
  python3 "$OLD_DIR/src/bench/confirm/gen.py" reserve "$RSHA" "$OSALE" 0 "$CONFIRM_N" a "$YEAR" "$NOW" >"$run/old_hold.resp"
  redis-cli -p "$RP" --pipe <"$run/old_hold.resp" >/dev/null
  held=$(redis-cli -p "$RP" HGET "sl:{sale:$OSALE}:inv" held)
  [[ "$held" == "$CONFIRM_N" ]] || die "old round: expected $CONFIRM_N holds, got $held"
  python3 "$OLD_DIR/src/bench/confirm/gen.py" tokens "$SECRET" "$OSALE" 0 "$CONFIRM_N" a >"$run/old_wrk_input"
  t0=$(cpu_ticks "$SL_PID") r0=$(cpu_ticks "$RD_PID") q0=$(rd_stats)
  on_core1 "$run/old_wrk.txt" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency -s "$OLD_DIR/src/bench/confirm/confirm.lua" \
    "http://127.0.0.1:$HP" -- "$run/old_wrk_input"
  t1=$(cpu_ticks "$SL_PID") r1=$(cpu_ticks "$RD_PID") q1=$(rd_stats)
  o_req=$(awk '/requests in/ {print $1}' "$run/old_wrk.txt")
  o_non2xx=$(awk '/Non-2xx/ {print $NF}' "$run/old_wrk.txt")
  o_non2xx=${o_non2xx:-0}
  old_reads=$(rd_per_read "$q0" "$q1" $((o_req - o_non2xx)))
  o_dur=$(wrk_secs "$run/old_wrk.txt")
  ((o_req + CONNS < CONFIRM_N)) || die "old round: wrk sent $o_req of $CONFIRM_N holds; raise CONFIRM_N"
  old_ops=$(echo "($o_req - $o_non2xx) / $o_dur" | bc -l)
  old_cpu=$(pct_of_core $((t1 - t0)) "$o_dur")
  old_wrk_cpu=$(pct_of_core "$(cat "$run/old_wrk.txt.ticks")" "$o_dur")
  old_rd_cpu=$(pct_of_core $((r1 - r0)) "$o_dur")
  old_p50=$(wrk_field "$run/old_wrk.txt" 50%)
  old_p99=$(wrk_field "$run/old_wrk.txt" 99%)
  wait_idle "$SL_PID"
  # half load, open loop, on holds wrk never reached
  old_half=$(echo "$old_ops / 2" | bc)
  o_first=$((o_req + CONNS + 100))
  o_count=$((old_half * SECS))
  ((o_first + o_count <= CONFIRM_N)) || o_count=$((CONFIRM_N - o_first))
  sed -n "$((o_first + 1)),$((o_first + o_count))p" "$run/old_wrk_input" >"$run/old_half_input"
  say "round 1: half load, $o_count confirms open-loop at $old_half/s"
  aof_watch_start "$run/old_half.aof"
  t0=$(cpu_ticks "$SL_PID")
  on_core1 "$run/old_half.json" node "$HERE/openloop.mjs" confirm "127.0.0.1:$HP" "$run/old_half_input" "$old_half"
  t1=$(cpu_ticks "$SL_PID")

  old_lat=$(cat "$run/old_half.json")
  aof_watch_kill
  old_h_aof=$(aof_watch_show "$run/old_half.aof" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["started_at_ms"])' "$old_lat")")
  old_h_cpu=$(pct_of_core $((t1 - t0)) "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$old_lat")")
  o_half_ok=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["statuses"].get("200", 0))' "$old_lat")
  wait_idle "$SL_PID"
  o_orders=$(redis-cli -p "$RP" XLEN "sl:{sale:$OSALE}:orders")
  o_sold=$(redis-cli -p "$RP" HGET "sl:{sale:$OSALE}:inv" sold)
  o_inv=$(curl -sf "http://127.0.0.1:$HP/api/v1/sales/$OSALE" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("holds" if s["available"]+s["held"]+s["sold"]==s["quantity"] and min(s["available"],s["held"],s["sold"])>=0 else "BROKEN")')
  old_rss=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$SL_PID/status")
  old_aof=$(redis-cli -p "$RP" INFO persistence | tr -d '\r' | awk -F: '$1 == "aof_rewrites" {r = $2} $1 == "aof_current_size" {z = $2} END {printf "%d AOF rewrites, AOF %d MB", r, z / 1048576}')
  echo "old round ($OLD_COMMIT): wrk confirm latency p50 $old_p50, p99 $old_p99 ($CONNS conns, closed loop)"
  echo "old round ($OLD_COMMIT): confirms answered 200: $((o_req - o_non2xx)) by wrk + $o_half_ok open-loop; orders in the stream: $o_orders; sold: $o_sold; invariant $o_inv; $old_aof; CPU % of a core during wrk: silklive $old_cpu, Redis $old_rd_cpu, wrk $old_wrk_cpu; Redis during wrk: $old_reads"
  commerce_bench_down
  SL_PID='' RD_PID=''
fi

# ---------- 2. HEAD: intents, then notifications ----------
say "round 2: HEAD, $N holds"
PROV=$run/provider
SP=$(free_port)
SERIAL=$(node "$HERE/standin.mjs" keys "$PROV" "$SP")
taskset -c 1 node "$HERE/standin.mjs" serve "$PROV" "$SP" >"$run/standin.log" 2>&1 &
STANDIN_PID=$!
trap cleanup EXIT
until curl -sf "http://127.0.0.1:$SP/_standin/stats" >/dev/null; do
  kill -0 "$STANDIN_PID" 2>/dev/null || { cat "$run/standin.log" >&2; die "the stand-in did not start"; }
  sleep 0.1
done
SL_BIN=$HEAD_BIN SL_CONFIG=$PROV/wechatpay.ini commerce_bench_up --appendonly yes --appendfsync always
trap cleanup EXIT
curl -sf "http://127.0.0.1:$HP/api/v1/payments/providers" | grep -q wechatpay || die "HEAD does not offer wechatpay"
new_sale() { # quantity -> sale id
  api POST /api/v1/sales "$CONSUL" "{\"channel\":\"b1\",\"sku\":\"p1\",\"quantity\":$(($1 + 1000)),\"per_user_limit\":$(($1 / 10000 + 10)),\"hold_ttl_s\":3600}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
key() { echo "sl:{sale:$SALE}:$1"; }
SALE=$(new_sale "$N")
RSHA=$(redis-cli -p "$RP" SCRIPT LOAD "$(lua_script commerce_reserve)")

# holds, intents' input and the stand-in's answers for a set of reservations (not timed)
prepare() { # prefix count
  python3 "$HERE/gen.py" reserve "$RSHA" "$SALE" 0 "$2" "$1" "$(date +%s%3N)" >"$run/hold_$1.resp"
  redis-cli -p "$RP" --pipe <"$run/hold_$1.resp" >/dev/null
  python3 "$HERE/gen.py" intents "$SECRET" "$SALE" 0 "$2" "$1" >"$run/intents_$1"
  node "$HERE/standin.mjs" answers "$PROV" "$2" "$run/answers_$1"
  curl -sf -X POST "http://127.0.0.1:$SP/_standin/load" -d "$run/answers_$1" >/dev/null
}
# notifications for the intents answered 201, for the out_trade_no and the amount the server gave
# the provider at prepay (the reservation's own part, after its last '_', ties the two; the
# intent's answer must name the same amount)
notes() { # prefix
  curl -sf "http://127.0.0.1:$SP/_standin/prepaid" >"$run/prepaid"
  python3 - "$run/intents_$1.log" "$run/prepaid" "$run/notes_in_$1" <<'EOF'
import sys
log, prepaid, out = sys.argv[1:4]
asked = {}
for l in open(prepaid):
    if l.strip():
        no, total = l.rstrip("\n").split("\t")
        asked[no.rsplit("_", 1)[-1]] = (no, total)
good, bad, missing = [], 0, 0
for l in open(log):
    f = l.rstrip("\n").split("\t")
    if len(f) != 2 or "_" not in f[0]: continue  # "#status", "start", "answered" lines
    rid, amount = f
    no, total = asked.get(rid.rsplit("_", 1)[-1], (None, None))
    if no is None:
        missing += 1
        continue
    if total != amount: bad += 1
    good.append(f"{no}\t{total}\n")
open(out, "w").writelines(good)
if bad: print(f"bench/payments: {bad} intents' amount differs from what the provider was asked for", file=sys.stderr)
if missing: sys.exit(f"bench/payments: {missing} intents answered 201 without a prepay at the provider")
EOF
  node "$HERE/standin.mjs" notes "$PROV" "$run/notes_in_$1" "$run/notes_$1"
}

prepare a "$N"
held=$(redis-cli -p "$RP" HGET "$(key inv)" held)
[[ "$held" == "$N" ]] || die "expected $N holds, got $held"

say "round 2: payment intents (timed, at most ${SECS} s)"
perf_start intents
t0=$(cpu_ticks "$SL_PID") r0=$(cpu_ticks "$RD_PID") s0=$(cpu_ticks "$STANDIN_PID")
run_wrk "$run/wrk_intents.txt" "$run/intents_a.log" wrk -t1 -c"$CONNS" -d"${SECS}s" --timeout 10s --latency -s "$HERE/intent.lua" \
  "http://127.0.0.1:$HP" -- "$run/intents_a" "$run/intents_a.log"
t1=$(cpu_ticks "$SL_PID") r1=$(cpu_ticks "$RD_PID") s1=$(cpu_ticks "$STANDIN_PID")
perf_stop
i_dur=$(window "$run/intents_a.log")
i_dur=${i_dur:-$(wrk_secs "$run/wrk_intents.txt")}
i_ok=$(answered_201 "$run/intents_a.log" | wc -l)
i_bad=$(grep -c '^#' "$run/intents_a.log" || true)
i_rate=$(echo "$i_ok / $i_dur" | bc -l)
i_cpu=$(pct_of_core $((t1 - t0)) "$i_dur")
i_rd_cpu=$(pct_of_core $((r1 - r0)) "$i_dur")
i_si_cpu=$(pct_of_core $((s1 - s0)) "$i_dur")
i_wrk_cpu=$(pct_of_core "$(cat "$run/wrk_intents.txt.ticks")" "$i_dur")
i_p50=$(wrk_field "$run/wrk_intents.txt" 50%)
i_p99=$(wrk_field "$run/wrk_intents.txt" 99%)
grep -q '^answered' "$run/intents_a.log" && say "all $N holds were paid for before ${SECS} s: raise N for a full window"
wait_idle "$SL_PID"
standin_after_intents=$(curl -sf "http://127.0.0.1:$SP/_standin/stats")

notes a
n_notes=$(wc -l <"$run/notes_a")
say "round 2: $n_notes notifications (timed)"
perf_start notifications
t0=$(cpu_ticks "$SL_PID") r0=$(cpu_ticks "$RD_PID") q0=$(rd_stats)
run_wrk "$run/wrk_notify.txt" "$run/notify_a.log" wrk -t1 -c"$CONNS" -d"$((SECS * 30))s" --timeout 10s --latency -s "$HERE/notify.lua" \
  "http://127.0.0.1:$HP" -- "$run/notes_a" "$SERIAL" "$run/notify_a.log"
t1=$(cpu_ticks "$SL_PID") r1=$(cpu_ticks "$RD_PID") q1=$(rd_stats)
perf_stop
grep -q '^answered' "$run/notify_a.log" || die "the notifications were not all answered in $((SECS * 30)) s"
n_dur=$(window "$run/notify_a.log")
n_ok=$(awk '$1 == "answered" {print $5}' "$run/notify_a.log")
n_reads=$(rd_per_read "$q0" "$q1" "$n_ok")
n_bad=$(grep -c '^#' "$run/notify_a.log" || true)
n_rate=$(echo "$n_ok / $n_dur" | bc -l)
n_cpu=$(pct_of_core $((t1 - t0)) "$n_dur")
n_rd_cpu=$(pct_of_core $((r1 - r0)) "$n_dur")
n_wrk_cpu=$(pct_of_core "$(cat "$run/wrk_notify.txt.ticks")" "$n_dur")
n_p50=$(wrk_field "$run/wrk_notify.txt" 50%)
n_p99=$(wrk_field "$run/wrk_notify.txt" 99%)
wait_idle "$SL_PID"

check() { # label expected_orders expected_outbox (all sales)
  local orders sold outbox inv
  orders=$(redis-cli -p "$RP" HLEN "$(key orderdocs)")
  sold=$(redis-cli -p "$RP" HGET "$(key inv)" sold)
  outbox=$(redis-cli -p "$RP" XLEN "sl:{customs}:outbox")
  inv=$(curl -sf "http://127.0.0.1:$HP/api/v1/sales/$SALE" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("holds" if s["available"]+s["held"]+s["sold"]==s["quantity"] and min(s["available"],s["held"],s["sold"])>=0 else "BROKEN")')
  local verdict=ok
  [[ $orders == "$2" && $sold == "$orders" && $outbox == "$3" && $inv == holds ]] || verdict=FAILED
  echo "check $1 (sale $SALE): orders in the order hash $orders (notifications answered 204: $2), sold $sold, customs outbox $outbox (expected $3), invariant $inv: $verdict"
  [[ $verdict == ok ]] || CHECKS_FAILED=1
}
CHECKS_FAILED=
check "after the timed notifications" "$n_ok" "$n_ok"
e2e=$(echo "$n_ok / ($i_dur + $n_dur)" | bc -l)

# ---------- 3. latency at half the notification rate ----------
half=${LAT_RATE:-$(echo "$n_rate / 2" | bc)}
m2=$((half * SECS))
say "round 3: $m2 more holds (another sale) and intents (not timed), then their notifications open-loop at $half/s"
SALE1=$SALE
SALE=$(new_sale "$m2")
prepare b "$m2"
run_wrk "$run/wrk_intents_b.txt" "$run/intents_b.log" wrk -t1 -c"$CONNS" -d"$((SECS * 30))s" --timeout 10s -s "$HERE/intent.lua" \
  "http://127.0.0.1:$HP" -- "$run/intents_b" "$run/intents_b.log"
wait_idle "$SL_PID"
notes b
aof_watch_start "$run/half.aof"
t0=$(cpu_ticks "$SL_PID") r0=$(cpu_ticks "$RD_PID") q0=$(rd_stats)
on_core1 "$run/half.json" node "$HERE/openloop.mjs" notify "127.0.0.1:$HP" "$run/notes_b" "$half" "$SERIAL"
t1=$(cpu_ticks "$SL_PID") r1=$(cpu_ticks "$RD_PID") q1=$(rd_stats)
lat=$(cat "$run/half.json")
aof_watch_kill
h_aof=$(aof_watch_show "$run/half.aof" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["started_at_ms"])' "$lat")")
h_ok=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["statuses"].get("204", 0))' "$lat")
h_reads=$(rd_per_read "$q0" "$q1" "$h_ok")
h_secs=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$lat")
h_cpu=$(pct_of_core $((t1 - t0)) "$h_secs")
h_rd_cpu=$(pct_of_core $((r1 - r0)) "$h_secs")
wait_idle "$SL_PID"
check "after the half-load notifications" "$h_ok" "$((n_ok + h_ok))"
b_ok=$(answered_201 "$run/intents_b.log" | wc -l)
((b_ok == m2)) || say "round 3: only $b_ok of $m2 intents answered 201 (see intents_b.log)"
SALE=$SALE1
head_rss=$(awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$SL_PID/status")
standin=$(curl -sf "http://127.0.0.1:$SP/_standin/stats")
redis-cli -p "$RP" INFO commandstats >"$run/commandstats.txt"
redis-cli -p "$RP" INFO persistence >"$run/persistence.txt"
head_aof=$(tr -d '\r' <"$run/persistence.txt" | awk -F: '$1 == "aof_rewrites" {r = $2} $1 == "aof_current_size" {z = $2} END {printf "%d AOF rewrites, AOF %d MB", r, z / 1048576}')
metrics=$(curl -sf "http://127.0.0.1:$HP/metrics" | grep -E '^silklive_(payment_notifications_total|orders_total)' | tr '\n' ' ' || true)

# ---------- report ----------
echo "intents: $i_ok answered 201, $i_bad otherwise, in $i_dur s (p50 $i_p50, p99 $i_p99); CPU % of a core: silklive $i_cpu, Redis $i_rd_cpu, stand-in $i_si_cpu, wrk $i_wrk_cpu"
echo "notifications: $n_ok answered 204, $n_bad otherwise, in $n_dur s (p50 $n_p50, p99 $n_p99 at $CONNS connections, closed loop); CPU % of a core: silklive $n_cpu, Redis $n_rd_cpu, wrk $n_wrk_cpu; Redis: $n_reads"
echo "half load: CPU % of a core: silklive $h_cpu, Redis $h_rd_cpu; Redis: $h_reads; Redis over the whole HEAD round: $head_aof"
echo "half load: $lat"
echo "half load: Redis AOF rewrites around it (ms from its start): ${h_aof:-none}"
[[ -n "${SKIP_OLD:-}" ]] || echo "old confirm at half load: $old_lat"
[[ -n "${SKIP_OLD:-}" ]] || echo "old confirm at half load: Redis AOF rewrites around it (ms from its start): ${old_h_aof:-none}"
echo "stand-in after the timed intents: $standin_after_intents"
echo "stand-in at the end: $standin"
echo "metrics: $metrics"
for f in "$run/intents_a.log" "$run/notify_a.log" "$run/intents_b.log"; do
  grep -m3 '^#' "$f" | sed "s|^|$(basename "$f"): |" || true
done
jget() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])[sys.argv[2]]; print(f"{v:.1f}" if isinstance(v, float) else v)' "$1" "$2"; }
ratio() { echo "$1 $2" | awk '{printf "%.2f", $1 / $2}'; }
p50=$(jget "$lat" p50_ms) p99=$(jget "$lat" p99_ms)
if [[ -n "${SKIP_OLD:-}" ]]; then
  printf '\n| what | silklive |\n| --- | --- |\n'
  printf '| paid orders/s end to end (%d intents then their notifications) | %.0f |\n' "$i_ok" "$e2e"
  printf '| payment intents/s (p50 / p99) | %.0f (%s / %s) |\n' "$i_rate" "$i_p50" "$i_p99"
  printf '| notifications/s (p50 / p99) | %.0f (%s / %s) |\n' "$n_rate" "$n_p50" "$n_p99"
  printf '| p50 / p99 open loop at %s notifications/s | %s / %s ms |\n' "$half" "$p50" "$p99"
  printf '| silklive CPU: intents / notifications / open loop | %s / %s / %s %% |\n' "$i_cpu" "$n_cpu" "$h_cpu"
  printf '| silklive peak RSS | %s MB |\n' "$head_rss"
else
  op50=$(jget "$old_lat" p50_ms) op99=$(jget "$old_lat" p99_ms)
  printf '\n| what | silklive | peer | ratio |\n| --- | --- | --- | --- |\n'
  printf '| orders/s end to end, appendfsync always — silklive: paid (HEAD, %d intents then their notifications: N / (t intents + t notifications)); peer: confirmed (%s, wrk %d s) | %.0f | %.0f | **%s** (target ≥ 0.5) |\n' \
    "$i_ok" "$OLD_COMMIT" "$SECS" "$e2e" "$old_ops" "$(ratio "$e2e" "$old_ops")"
  printf '| payment intents/s, wechatpay native prepay (%d conns; p50 / p99) — ratio to the peer confirm/s | %.0f (%s / %s) | | %s |\n' \
    "$CONNS" "$i_rate" "$i_p50" "$i_p99" "$(ratio "$i_rate" "$old_ops")"
  printf '| notifications/s, verified → order stored → 204 (%d conns; p50 / p99) — ratio to the peer confirm/s | %.0f (%s / %s) | | %s |\n' \
    "$CONNS" "$n_rate" "$n_p50" "$n_p99" "$(ratio "$n_rate" "$old_ops")"
  printf '| p50 / p99 at half load, open loop — silklive: notification → order at %s/s; peer: confirm at %s/s (target p99 ≤ 20 ms) | %s / %s ms | %s / %s ms | %s (p99) |\n' \
    "$half" "$old_half" "$p50" "$p99" "$op50" "$op99" "$(ratio "$p99" "$op99")"
  printf '| silklive CPU, %% of its core — silklive: intents / notifications / half load; peer: confirm / half load | %s / %s / %s %% | %s / %s %% | |\n' \
    "$i_cpu" "$n_cpu" "$h_cpu" "$old_cpu" "$old_h_cpu"
  printf '| silklive peak RSS (VmHWM) | %s MB | %s MB | %s |\n' "$head_rss" "$old_rss" "$(ratio "$head_rss" "$old_rss")"
fi
[[ -z "$CHECKS_FAILED" ]] || die "a check FAILED (above)"
