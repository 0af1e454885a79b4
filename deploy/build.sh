#!/usr/bin/env bash
# build: configures a build dir and builds it, for setup.sh and test.sh. A configure that was
# interrupted or failed is started over; any error fails with CMake's or the compiler's messages.
# Usage: deploy/build.sh DIR [CMAKE_ARGS...]; SL_BUILD_TARGETS="a b" builds only those targets.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1
shift

# CMake writes the generator's Makefile last: a cache without it is what an interrupted or failed
# configure leaves, and its cached answers (a compiler not found, a package missing) would stick.
if [[ -f $dir/CMakeCache.txt && ! -f $dir/Makefile ]]; then
  rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cmake -S . -B "$dir" "$@" >"$log" 2>&1; then
  grep -vE '^-- ' "$log" >&2 || cat "$log" >&2
  echo "build: configuring $dir failed (above)" >&2
  exit 1
fi
targets=()
for t in ${SL_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
if ! cmake --build "$dir" -j "$(nproc)" "${targets[@]}" -- --no-print-directory >"$log" 2>&1; then
  grep -vE '^\[ *[0-9]+%\] |^(Consolidate compiler generated|Scanning dependencies)' "$log" |
    tail -n 200 >&2
  echo "build: building $dir failed (above)" >&2
  exit 1
fi
