#!/usr/bin/env bash
# run: Quick start #1. Installs what is missing, builds, and starts silklive all-in-one with an
# embedded private Redis and a demo pavilion. Extra arguments go to `silklive serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
exec build/silklive serve --demo "$@"
