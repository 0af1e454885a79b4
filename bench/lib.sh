# shellcheck shell=bash
# bench/lib.sh: shared by the bench scripts (sourced): packages, free ports, CPU ticks.

# Install Debian packages that are missing (the benchmarks' peers and load generators).
bench_need() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# utime + stime of a process, in clock ticks
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Wait (at most 120 s) until a process is idle: a server that fell behind in its round is still
# writing out its backlog after the load generator left, and would share the core with the next
# round's server.
wait_idle() {
  local t0 t1
  for _ in $(seq 240); do
    t0=$(cpu_ticks "$1"); sleep 0.5; t1=$(cpu_ticks "$1")
    ((t1 - t0 <= 2)) && return 0
  done
  echo "bench: process $1 still busy after 120 s" >&2
}

# The commerce benchmarks' set-up: Redis on core 1 (the given redis-server arguments added to a
# plain one) and silklive --modules commerce on core 0, both stopped at exit; pavilion CL,
# channel b1 and product p1 (100 fen) seeded. Sets work, RP, HP, RD_PID, SL_PID, SECRET, ADMIN
# and CONSUL, and defines tok (mint a token) and api (METHOD PATH TOKEN BODY). SL_BIN picks the
# binary (build/silklive), SL_WRAP a command to run it under (valgrind ...), SL_CONFIG a config
# file to start it with (--config).
commerce_bench_up() {
  work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
  trap commerce_bench_down EXIT
  RP=$(free_port); HP=$(free_port)
  taskset -c 1 redis-server --port "$RP" --bind 127.0.0.1 --save '' --dir "$work" \
    --daemonize no "$@" >/dev/null &
  RD_PID=$!
  until redis-cli -p "$RP" ping >/dev/null 2>&1; do sleep 0.05; done
  SECRET=bench-secret
  # shellcheck disable=SC2086 # SL_WRAP is a command line (valgrind and its options)
  taskset -c 0 ${SL_WRAP:-} "${SL_BIN:-build/silklive}" serve --listen "127.0.0.1:$HP" --data-dir "$work/data" \
    --media-dir "$work/media" --redis "redis://127.0.0.1:$RP" --secret "$SECRET" \
    --modules commerce --log-level warning ${SL_CONFIG:+--config "$SL_CONFIG"} &
  SL_PID=$!
  until curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null; do
    kill -0 "$SL_PID" 2>/dev/null || { echo "bench: silklive exited at start" >&2; return 1; }
    sleep 0.1
  done
  tok() { "${SL_BIN:-build/silklive}" token --secret "$SECRET" "$@"; }
  api() { curl -sf -X "$1" "http://127.0.0.1:$HP$2" -H "Authorization: Bearer $3" -d "$4"; }
  ADMIN=$(tok --role admin --sub root); CONSUL=$(tok --role consul --sub c1 --pavilion CL)
  api POST /api/v1/pavilions "$ADMIN" '{"code":"CL","name":{"en":"Chile"},"currency":"CLP"}' >/dev/null
  api POST /api/v1/pavilions/CL/channels "$CONSUL" '{"id":"b1","title":{"en":"bench"}}' >/dev/null
  api POST /api/v1/pavilions/CL/products "$CONSUL" '{"sku":"p1","title":{"en":"x"},"price":{"amount_minor":100,"currency":"CLP"},"price_cny_fen":100,"stock_location":"overseas"}' >/dev/null
}

commerce_bench_down() {
  [[ -n "${SL_PID:-}" ]] && kill "$SL_PID" 2>/dev/null && wait "$SL_PID" 2>/dev/null
  [[ -n "${RD_PID:-}" ]] && kill "$RD_PID" 2>/dev/null
  rm -rf "$work"
}

# The source of room/lua/NAME.lua as silklive runs it: each `--! include X` line replaced by
# room/lua/lib/X.lua (the rule room/CMakeLists.txt builds the scripts with).
lua_script() {
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ ^--!\ include\ ([a-z_]+)$ ]]; then
      cat "room/lua/lib/${BASH_REMATCH[1]}.lua"
    else
      printf '%s\n' "$line"
    fi
  done <"room/lua/$1.lua"
}
