#!/usr/bin/env bash
# verify: the deployment files are checked by the tools that will run them, so nothing shipped in
# deploy/ is untested: systemd-analyze verify on every unit, nginx -t on the example edge,
# redis-server on deploy/redis.conf and as Sentinel on the example, and silklive itself started
# with the example config. Usage: verify.sh SILKLIVE_BINARY
set -euo pipefail
bin=$(realpath "$1")
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() {
  local p
  # below the kernel's ephemeral range (32768-60999): a port there can be the local end of
  # another test's outgoing connection, which no connect() sees but bind() refuses
  while :; do
    p=$((20000 + RANDOM % 12000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
wait_for() { for _ in $(seq 100); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

echo "== systemd units (systemd-analyze verify)"
mkdir "$tmp/units"
for u in "$root"/deploy/systemd/*.service; do
  # the binary where this build has it; everything else exactly as shipped
  sed "s|/usr/local/bin/silklive|$bin|" "$u" >"$tmp/units/$(basename "$u")"
done
# the units run as user silklive, which this machine need not have
out=$(cd "$tmp/units" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify ./*.service 2>&1 |
  grep -v "User silklive\|group silklive\|silklive: no such" || true)
[[ -z "$out" ]] || fail "systemd-analyze verify: $out"
n=$(ls "$tmp/units" | wc -l)
((n == 4)) || fail "expected 4 units (all-in-one, media, chat, commerce), found $n"
for role in media:ingest,transcode chat:chat commerce:commerce; do
  grep -q -- "--modules ${role#*:}\$" "$tmp/units/silklive-${role%%:*}.service" ||
    fail "silklive-${role%%:*}.service does not run --modules ${role#*:}"
done

echo "== nginx edge (nginx -t)"
sed -e "s|/etc/silklive/edge.conf|$root/deploy/nginx/edge.conf|" \
  -e "s|/var/cache/nginx/silklive|$tmp/nginx-cache|" \
  -e "s|listen 80;|listen 127.0.0.1:$(free_port);|" \
  "$root/deploy/nginx/nginx.conf.example" >"$tmp/nginx.conf"
nginx -t -c "$tmp/nginx.conf" -g "pid $tmp/nginx.pid; error_log $tmp/nginx-error.log;" \
  >"$tmp/nginx-t.log" 2>&1 || { cat "$tmp/nginx-t.log"; fail "nginx -t"; }

echo "== redis.conf and the Sentinel example (redis-server)"
rport=$(free_port)
redis-server "$root/deploy/redis.conf" --port "$rport" --dir "$tmp" --daemonize no \
  >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_for "redis-cli -p $rport ping | grep -q PONG" || { cat "$tmp/redis.log"; fail "redis.conf"; }
[[ $(redis-cli -p "$rport" config get appendfsync | tail -1) == always ]] || fail "appendfsync"
sport=$(free_port)
sed -e "s|^port 26379|port $sport|" -e "s|^bind 0.0.0.0|bind 127.0.0.1|" \
  -e "s|10.0.0.5 6379 2|127.0.0.1 $rport 1|" \
  "$root/deploy/sentinel.conf.example" >"$tmp/sentinel.conf"
redis-server "$tmp/sentinel.conf" --sentinel >"$tmp/sentinel.log" 2>&1 &
pids+=($!)
wait_for "redis-cli -p $sport sentinel get-master-addr-by-name silklive | grep -q $rport" ||
  { cat "$tmp/sentinel.log"; fail "sentinel.conf.example"; }

echo "== silklive with the example config, through the Sentinel"
hport=$(free_port)
"$bin" serve --config "$root/deploy/silklive.conf.example" --listen "127.0.0.1:$hport" \
  --rtmp-listen "127.0.0.1:$(free_port)" --redis "sentinel://127.0.0.1:$sport/silklive" \
  --data-dir "$tmp/data" --media-dir "$tmp/media" --secret verify >"$tmp/silklive.log" 2>&1 &
spid=$!
pids+=($spid)
wait_for "curl -sf http://127.0.0.1:$hport/readyz" || { cat "$tmp/silklive.log"; fail "silklive did not get ready"; }
kill -TERM "$spid"
wait "$spid" || fail "silklive exited $? at SIGTERM"
echo "deploy files verified"
