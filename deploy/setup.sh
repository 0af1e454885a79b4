#!/usr/bin/env bash
# setup: installs the Debian 12 packages silklive needs (only those missing) and builds it into
# build/. Re-running it when everything is in place changes nothing and takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build and run time. libwebsockets-evlib-ev is the plugin that runs lws' sockets on libev's epoll
# loop, which core/evloop.c drives from the GLib main loop (libev-dev for its header).
# GStreamer: base (appsrc/appsink, videoconvert), good (flvdemux, jpegenc), bad (h264parse,
# mpegtsmux, and the H.264 SPS parser), libav (avdec_h264, the posters), ugly (x264enc) make the
# HLS ladder and posters; FFmpeg's libavcodec decodes the ladder's source, libswscale scales the
# rungs and libavformat cuts the highlight clips.
PACKAGES=(
  build-essential cmake pkg-config
  libglib2.0-dev libwebsockets-dev libwebsockets-evlib-ev libev-dev libhiredis-dev libjansson-dev
  redis-server
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
)
# The test suite: Check, clang with libFuzzer for the fuzz targets, clang-format for the style
# gate; real encoders (ffmpeg, GStreamer's rtmp2sink with x264 and libav's AAC) and ffprobe.
if [[ "${1:-}" == "--test" ]]; then
  PACKAGES+=(check clang libclang-rt-14-dev clang-format ffmpeg gstreamer1.0-tools)
fi
# The web client's front-end packages come from npm (Node.js and npm from Debian if absent).
# The browser tests drive Debian's Chromium with playwright-core; Noto CJK renders the zh text.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)
# The multi-node test puts nginx in front (deploy/nginx/edge.conf); the deploy files are
# checked with systemd-analyze, nginx -t, redis-cli and curl; valgrind for the memcheck run.
if [[ "${1:-}" == "--test" ]]; then
  PACKAGES+=(chromium fonts-noto-cjk nginx-light systemd redis-tools curl valgrind)
fi
# The ingest benchmark's peer: nginx with Debian's RTMP module.
if [[ "${1:-}" == "--bench" ]]; then
  PACKAGES+=(ffmpeg nginx-light libnginx-mod-rtmp)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=()
  [[ "$(id -u)" -eq 0 ]] || SUDO=(sudo)
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# Vendor the front-end packages into the served files (no build step at run time): ES module
# builds of hls.js and uPlot, with their licences. Redone only when the lock file changes.
vendor=web/public/vendor
if [[ ! -f $vendor/.lock || web/package-lock.json -nt $vendor/.lock ]]; then
  echo "setup: vendoring the web client's npm packages"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  rm -rf "$vendor" && mkdir -p "$vendor"
  cp web/node_modules/hls.js/dist/hls.min.mjs "$vendor/"
  cp web/node_modules/hls.js/LICENSE "$vendor/LICENSE.hls.js"
  cp web/node_modules/uplot/dist/uPlot.esm.js web/node_modules/uplot/dist/uPlot.min.css "$vendor/"
  cp web/node_modules/uplot/LICENSE "$vendor/LICENSE.uplot"
  cp web/package-lock.json "$vendor/.lock"
fi
if [[ "${1:-}" == "--test" && ( ! -d tests/web/node_modules || tests/web/package-lock.json -nt tests/web/node_modules ) ]]; then
  (cd tests/web && npm ci --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules)
fi

# Debian's redis-server package starts a system-wide Redis; silklive does not need it (its
# default is a private embedded one), and tests start their own on free ports.
jobs=$(nproc)
if [[ ! -f build/CMakeCache.txt ]]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build build -j "$jobs" -- --no-print-directory | grep -vE '^\[ *[0-9]+%\]' || true
test -x build/silklive
