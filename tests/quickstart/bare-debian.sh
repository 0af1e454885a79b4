#!/usr/bin/env bash
# bare-debian: proves the README's Quick start from scratch. Bootstraps a minimal Debian 12 root,
# runs deploy/run.sh in it until the demo page is served and the demo channel's playlist lists
# segments, stops it, then runs deploy/test.sh in it, and prints how long each took.
# Too slow for every CI run: run it after any change to the set-up scripts (as root).
# --test-first runs the two commands the other way round (test.sh, then run.sh): each must work
# whether or not the other ran first. --run-only stops after run.sh (the product's set-up alone,
# a few minutes instead of twenty).
# Usage: tests/quickstart/bare-debian.sh [--keep] [--test-first|--run-only] [WORK_DIR]
#        (default WORK_DIR /var/tmp/silklive-bare)
set -euo pipefail
keep=0
test_first=0
run_only=0
while [[ ${1:-} == --* ]]; do
  case $1 in
    --keep) keep=1 ;;
    --test-first) test_first=1 ;;
    --run-only) run_only=1 ;;
    *) echo "bare-debian: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/var/tmp/silklive-bare}
root=$work/root
base=$work/minbase.tar # the pristine debootstrap output, reused: it is the base system only
log=$work/logs
mkdir -p "$work" "$log"
[[ $(id -u) -eq 0 ]] || { echo "bare-debian: run as root (debootstrap, chroot, mounts)" >&2; exit 2; }

say() { printf '%s bare-debian: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

mounts=()
cleanup() {
  [[ -n ${server_pid:-} ]] && kill -TERM -- "-$server_pid" 2>/dev/null || true
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
  if ((keep == 0)) && [[ -d $root ]]; then rm -rf --one-file-system "$root"; fi
}
trap cleanup EXIT
mnt() { mount "$@" && mounts+=("${!#}"); }

# 1. A minimal Debian 12 root, as debootstrap makes it (no compiler, no git, no Node.js).
command -v debootstrap >/dev/null || apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
if [[ -d $root ]]; then rm -rf --one-file-system "$root"; fi
mkdir -p "$root"
if [[ ! -s $base ]]; then
  say "debootstrap --variant=minbase bookworm from $mirror"
  t0=$SECONDS
  debootstrap --variant=minbase bookworm "$work/fresh" "$mirror" >"$log/debootstrap.log" 2>&1
  tar -C "$work/fresh" -cf "$base" . && rm -rf --one-file-system "$work/fresh"
  say "debootstrap took $((SECONDS - t0)) s"
fi
tar -C "$root" -xf "$base"

# 2. This machine's package-manager configuration (sources, the certificate authorities its
# network needs), as a real machine has its own; nothing of silklive's.
cp -a /etc/apt/sources.list.d/. "$root/etc/apt/sources.list.d/"
rm -f "$root"/etc/apt/sources.list.d/*disabled* "$root/etc/apt/sources.list"
[[ -f /etc/apt/sources.list ]] && cp /etc/apt/sources.list "$root/etc/apt/"
cp -a /etc/apt/apt.conf.d/. "$root/etc/apt/apt.conf.d/"
mkdir -p "$root/usr/local/share/ca-certificates"
cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
cp /etc/resolv.conf "$root/etc/resolv.conf"
npm_ca=()
[[ -n ${NODE_EXTRA_CA_CERTS:-} ]] && npm_ca=("NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS")

# 3. The root is a mount point as / is on a real machine, with the kernel's file systems.
mnt --bind "$root" "$root"
mnt -t proc proc "$root/proc"
mnt -t sysfs sys "$root/sys"
mnt --bind /dev "$root/dev"
mnt -t devpts devpts "$root/dev/pts" -o newinstance,ptmxmode=0666
mnt -t tmpfs tmpfs "$root/dev/shm"
mnt -t tmpfs tmpfs "$root/tmp"

# 4. The project as it is in this work tree (tracked and new files, not build output).
mkdir -p "$root/root/silklive"
(cd "$repo" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) |
  tar -C "$root/root/silklive" -xf -

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb "${npm_ca[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
rtmp_port=$(free_port)

# 5. Quick start #1: installs, builds, starts; the demo is live by itself.
quick_run() {
  say "./deploy/run.sh (HTTP $http_port, RTMP $rtmp_port)"
  t0=$SECONDS
  setsid chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb "${npm_ca[@]}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/silklive && exec ./deploy/run.sh --listen 127.0.0.1:$http_port --rtmp-listen 127.0.0.1:$rtmp_port" \
    >"$log/run.log" 2>&1 </dev/null &
  server_pid=$!
  served=0
  listed=0
  while ((SECONDS - t0 < 3600)); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      tail -40 "$log/run.log"
      say "FAILED: run.sh exited before the demo was live"
      exit 1
    fi
    if ((served == 0)) && curl -fsS "http://127.0.0.1:$http_port/c/cl-wine" 2>/dev/null | grep -q '<html'; then
      served=$((SECONDS - t0))
      say "the viewer page is served after $served s"
    fi
    if ((served > 0)); then
      segs=$(curl -fsS "http://127.0.0.1:$http_port/hls/cl-wine/source/index.m3u8" 2>/dev/null | grep -c '^#EXTINF' || true)
      if ((segs >= 2)); then
        listed=$((SECONDS - t0))
        break
      fi
    fi
    sleep 2
  done
  if ((listed == 0)); then
    tail -40 "$log/run.log"
    say "FAILED: the demo channel's playlist lists no segments after $((SECONDS - t0)) s"
    exit 1
  fi
  say "run.sh: the demo channel is live after $listed s (page served after $served s)"
  grep -E 'watch:|go live:|live now:' "$log/run.log" | sed 's/#token=.*/#token=…/' || true
  kill -TERM -- "-$server_pid"
  for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$server_pid" 2>/dev/null; then
    say "FAILED: silklive did not stop within 15 s of SIGTERM"
    exit 1
  fi
  server_pid=
}

# 6. Quick start #2: the same set-up plus the test packages, then every suite.
quick_test() {
  say "./deploy/test.sh"
  t0=$SECONDS
  set +e
  in_root bash -c 'cd /root/silklive && ./deploy/test.sh' >"$log/test.log" 2>&1 </dev/null
  status=$?
  set -e
  took=$((SECONDS - t0))
  grep -E '^(FAILED|total):' "$log/test.log" || true
  if ((status != 0)); then
    grep -E '^(==|FAILED)|tests failed|\*\*\*Failed' "$log/test.log" | tail -40
    say "FAILED: test.sh exited $status after $took s (log: $log/test.log)"
    exit 1
  fi
  say "test.sh passed in $took s"
}

if ((run_only)); then
  quick_run
  say "done: run.sh live after $listed s (logs in $log)"
  exit 0
fi
if ((test_first)); then
  quick_test
  quick_run
else
  quick_run
  quick_test
fi
say "done: run.sh live after $listed s, test.sh $took s (logs in $log)"
