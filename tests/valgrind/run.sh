#!/usr/bin/env bash
# run: the integration suites once with every silklive they start under valgrind memcheck.
# A definite leak or an invalid access makes silklive exit 99, which fails the test that stopped
# it. Slow (each silklive runs ~20x slower), so not part of .ci/run; docs/RELIABILITY.md has the
# last run. Usage: tests/valgrind/run.sh [ctest -R regex]
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake --build build -j"$(nproc)" >/dev/null
gcc -shared -fPIC -O2 -o build/hwy_timer.so tests/valgrind/hwy_timer.c
export SILKLIVE_WRAPPER="env LD_PRELOAD=$PWD/build/hwy_timer.so valgrind --quiet \
--error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
--show-leak-kinds=definite --track-origins=no --suppressions=$PWD/tests/valgrind/valgrind.supp"
export CK_DEFAULT_TIMEOUT=900
ctest --test-dir build --output-on-failure -R "${1:-^(test_http|test_chat|test_commerce|test_ingest|test_faults)$}"
