#!/usr/bin/env bash
# setup: installs the Debian 12 packages silklive needs (only those missing) and builds it into
# build/. Re-running it when everything is in place changes nothing and takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
# Build and run time. libwebsockets-evlib-ev is the plugin that runs lws' sockets on libev's epoll
# loop, which core/evloop.c drives from the GLib main loop (libev-dev for its header).
# GStreamer: base (appsrc/appsink, videoconvert, the demo's test sources), good (flvdemux,
# jpegenc), bad (h264parse, mpegtsmux, the H.264 SPS parser, rtmp2sink for the demo's own
# publisher), libav (avdec_h264, the posters, the demo's AAC), ugly (x264enc) make the HLS ladder
# and posters; x (pango) draws the demo's clock, in DejaVu. FFmpeg's libavcodec decodes the
# ladder's source, libswscale scales the rungs and libavformat cuts the highlight clips; the
# ffmpeg command is the go-live line the demo prints. ca-certificates: npm reaches its registry.
# libssl-dev: OpenSSL's libcrypto seals identity numbers (AES-256-GCM) and checks payment
# providers' signatures; libxml2 writes the customs declarations; libsoup (with glib-networking
# for TLS) is the HTTP client that calls payment providers and the customs gateway.
PACKAGES=(
  build-essential cmake pkg-config ca-certificates
  libglib2.0-dev libwebsockets-dev libwebsockets-evlib-ev libev-dev libhiredis-dev libjansson-dev
  libssl-dev libxml2-dev libsoup-3.0-dev glib-networking
  redis-server
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-x fonts-dejavu-core
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev ffmpeg
)
# The test suite: Check, clang with libFuzzer for the fuzz targets and llvm-symbolizer (package
# llvm) so sanitizer reports name functions and LeakSanitizer's suppressions can match them;
# clang-format and git for the style gate; real encoders (ffmpeg, GStreamer's rtmp2sink with
# x264 and libav's AAC) and ffprobe; procps for pgrep.
if [[ $mode == --test ]]; then
  PACKAGES+=(check clang libclang-rt-14-dev llvm clang-format git gstreamer1.0-tools procps)
fi
# The web client's front-end packages come from npm (Node.js and npm from Debian if absent: its
# Node.js 18 is what the browser tests are pinned to run on).
# The browser tests drive Debian's Chromium with playwright-core; Noto CJK renders the zh text.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)
# The multi-node test puts nginx in front (deploy/nginx/edge.conf); the deploy files are
# checked with systemd-analyze, nginx -t, redis-cli and curl; valgrind for the memcheck run.
if [[ $mode == --test ]]; then
  PACKAGES+=(chromium fonts-noto-cjk nginx-light systemd redis-tools curl valgrind)
fi
# The ingest benchmark's peer: nginx with Debian's RTMP module.
if [[ $mode == --bench ]]; then
  PACKAGES+=(nginx-light libnginx-mod-rtmp)
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
# builds of hls.js, uPlot and uqr (the QR code a desktop buyer scans with WeChat to pay), with
# their licences. Redone only when the lock file changes.
vendor=web/public/vendor
if [[ ! -f $vendor/.lock || web/package-lock.json -nt $vendor/.lock ]]; then
  echo "setup: vendoring the web client's npm packages"
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  rm -rf "$vendor" && mkdir -p "$vendor"
  cp web/node_modules/hls.js/dist/hls.min.mjs "$vendor/"
  cp web/node_modules/hls.js/LICENSE "$vendor/LICENSE.hls.js"
  cp web/node_modules/uplot/dist/uPlot.esm.js web/node_modules/uplot/dist/uPlot.min.css "$vendor/"
  cp web/node_modules/uplot/LICENSE "$vendor/LICENSE.uplot"
  cp web/node_modules/uqr/dist/index.mjs "$vendor/uqr.mjs"
  cp web/node_modules/uqr/LICENSE "$vendor/LICENSE.uqr"
  cp web/package-lock.json "$vendor/.lock"
fi
# The browser tests' packages; the stamp is written only once npm ci finished.
stamp=tests/web/node_modules/.installed
if [[ $mode == --test && ( ! -f $stamp || tests/web/package-lock.json -nt $stamp ) ]]; then
  (cd tests/web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$stamp"
fi

# Debian's redis-server package starts a system-wide Redis; silklive does not need it (its
# default is a private embedded one), and tests start their own on free ports.
# The product never needs a test package: with --test the suites are required, otherwise they are
# built only when Check is there.
tests=AUTO
[[ $mode == --test ]] && tests=ON
bash deploy/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSILKLIVE_TESTS=$tests
test -x build/silklive
