#!/usr/bin/env bash
# test: Quick start #2 and what CI runs. The same set-up as run.sh, then the whole suite:
# formatting gate, every ctest suite, the same under ASan+UBSan, and each fuzz target for a
# bounded time over its seed corpus.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash deploy/setup.sh --test || exit 1
jobs=$(nproc)
passed=0
failed=0
declare -a failures=()

# Runs ctest in a build dir and adds its counts to the totals.
run_ctest() {
  local dir=$1 label=$2
  shift 2
  local log="$dir/ctest.log"
  echo "== $label"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs" "$@" 2>&1 | tee "$log" | grep -E '(Passed|Failed|\*\*\*|tests passed)' || true
  local line total bad
  line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$log" | tail -1)
  if [[ -z "$line" ]]; then
    failures+=("$label: ctest did not run")
    failed=$((failed + 1))
    return
  fi
  bad=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/' <<<"$line")
  total=$(sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/' <<<"$line")
  passed=$((passed + total - bad))
  failed=$((failed + bad))
  if ((bad > 0)); then
    failures+=("$label: $bad failed")
    # Check's failure lines (file:line:F:case:test) and sanitizer reports, so a red run says why
    grep -E ':[0-9]+:[EF]:|ERROR: AddressSanitizer|runtime error:|stuck in|Test timeout' "$log" | head -20
  fi
}

echo "== format (clang-format, .clang-format)"
mapfile -t sources < <(git ls-files '*.c' '*.h' 2>/dev/null)
if ((${#sources[@]})) && ! clang-format --dry-run --Werror "${sources[@]}" 2>/tmp/silklive-format.log; then
  head -20 /tmp/silklive-format.log
  failures+=("format: run clang-format -i on the files above")
  failed=$((failed + 1))
else
  passed=$((passed + 1))
fi

run_ctest build "tests (RelWithDebInfo)"

echo "== building with AddressSanitizer + UndefinedBehaviorSanitizer"
if [[ ! -f build-asan/CMakeCache.txt ]]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSILKLIVE_SANITIZE=ON >/dev/null
fi
if cmake --build build-asan -j "$jobs" >build-asan.log 2>&1; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0 UBSAN_OPTIONS=print_stacktrace=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
    run_ctest build-asan "tests (ASan+UBSan)"
else
  tail -30 build-asan.log
  failures+=("ASan build failed")
  failed=$((failed + 1))
fi

echo "== fuzz targets (clang libFuzzer, ${SILKLIVE_FUZZ_SECONDS:-20} s each)"
if [[ ! -f build-fuzz/CMakeCache.txt ]]; then
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSILKLIVE_FUZZ=ON >/dev/null
fi
cmake -S . -B build-fuzz -DSL_FUZZ_SECONDS="${SILKLIVE_FUZZ_SECONDS:-20}" >/dev/null
fuzz_targets=$(grep -ho 'sl_fuzz_target([a-z0-9_]*' tests/fuzz/CMakeLists.txt | sed 's/.*(//')
# shellcheck disable=SC2086
if cmake --build build-fuzz -j "$jobs" --target $fuzz_targets >build-fuzz.log 2>&1; then
  run_ctest build-fuzz "fuzz" -L fuzz
else
  tail -30 build-fuzz.log
  failures+=("fuzz build failed")
  failed=$((failed + 1))
fi

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "total: $passed passed, $failed failed"
((failed == 0))
