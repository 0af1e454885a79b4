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
# The tracked sources in a git checkout; every C file of the tree otherwise (a tarball, a copy).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t sources < <(git ls-files '*.c' '*.h')
else
  mapfile -t sources < <(find . -name '*.[ch]' -not -path './build*' -not -path '*/node_modules/*' \
    -not -path './tests/fuzz/corpus/*' | sort)
fi
if ((${#sources[@]} == 0)); then
  failures+=("format: no C sources found to check")
  failed=$((failed + 1))
elif ! clang-format --dry-run --Werror "${sources[@]}" 2>/tmp/silklive-format.log; then
  head -20 /tmp/silklive-format.log
  failures+=("format: run clang-format -i on the files above")
  failed=$((failed + 1))
else
  passed=$((passed + 1))
fi

# A test dependency must never leak into the product: configure and build it with every
# test-only package's pkg-config file hidden (Check is the one the build would find), and it
# must come out whole, without the test suites.
echo "== the product builds without the test packages"
pc_hidden=$(mktemp -d)
IFS=: read -ra pc_dirs <<<"$(pkg-config --variable pc_path pkg-config)"
for d in "${pc_dirs[@]}"; do
  for f in "$d"/*.pc; do
    [[ -e $f ]] || continue
    name=$(basename "$f" .pc)
    [[ $name == check ]] && continue
    [[ -e $pc_hidden/$name.pc ]] || ln -s "$f" "$pc_hidden/$name.pc"
  done
done
if PKG_CONFIG_LIBDIR=$pc_hidden bash deploy/build.sh build-product \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSILKLIVE_TESTS=AUTO &&
  [[ -x build-product/silklive && ! -e build-product/tests ]]; then
  passed=$((passed + 1))
else
  failures+=("the product does not build without the test packages (above)")
  failed=$((failed + 1))
fi
rm -rf "$pc_hidden"

run_ctest build "tests (RelWithDebInfo)"

echo "== building with AddressSanitizer + UndefinedBehaviorSanitizer"
if bash deploy/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DSILKLIVE_SANITIZE=ON \
  -DSILKLIVE_TESTS=ON; then
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0 UBSAN_OPTIONS=print_stacktrace=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
    run_ctest build-asan "tests (ASan+UBSan)"
else
  failures+=("ASan build failed")
  failed=$((failed + 1))
fi

echo "== fuzz targets (clang libFuzzer, ${SILKLIVE_FUZZ_SECONDS:-20} s each)"
fuzz_targets=$(grep -ho 'sl_fuzz_target([a-z0-9_]*' tests/fuzz/CMakeLists.txt | sed 's/.*(//')
if CC=clang SL_BUILD_TARGETS="$fuzz_targets" bash deploy/build.sh build-fuzz \
  -DCMAKE_BUILD_TYPE=Debug -DSILKLIVE_FUZZ=ON -DSILKLIVE_TESTS=ON \
  -DSL_FUZZ_SECONDS="${SILKLIVE_FUZZ_SECONDS:-20}"; then
  run_ctest build-fuzz "fuzz" -L fuzz
else
  failures+=("fuzz build failed")
  failed=$((failed + 1))
fi

echo
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "total: $passed passed, $failed failed"
((failed == 0))
