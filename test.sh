#!/usr/bin/env bash
# The whole test suite: installs what is missing, then builds and runs every
# test in a normal build, again under ASan+UBSan, the threaded tests under
# TSan, and each libFuzzer target for a short bounded time.
#   OTP_FUZZ_SECONDS  seconds per fuzz target (default 20; 0 skips fuzzing)
#   OTP_JOBS          parallel build jobs (default: online CPUs)
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh

JOBS=${OTP_JOBS:-$(nproc)}
FUZZ_SECONDS=${OTP_FUZZ_SECONDS:-20}

build() { # dir, cmake args...
  local dir=$1; shift
  cmake -S . -B "$dir" -DOTP_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
}

echo "== normal build"
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
ctest --test-dir build --output-on-failure -j "$JOBS"

echo "== ASan + UBSan"
build build-asan -DCMAKE_BUILD_TYPE=Debug -DOTP_SANITIZE=address,undefined
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j "$JOBS"

echo "== TSan (tests that run threads)"
build build-tsan -DCMAKE_BUILD_TYPE=Debug -DOTP_SANITIZE=thread
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -L threads

if [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "== fuzz (${FUZZ_SECONDS}s per target)"
  CC=clang cmake -S . -B build-fuzz -DOTP_WERROR=ON -DCMAKE_BUILD_TYPE=Debug -DOTP_FUZZ=ON >/dev/null
  targets=$(for s in test/fuzz/fuzz_*.c; do basename "$s" .c; done)
  # shellcheck disable=SC2086
  cmake --build build-fuzz -j "$JOBS" --target $targets
  for f in build-fuzz/bin/fuzz_*; do
    name=$(basename "$f"); corpus=test/fuzz/corpus/${name#fuzz_}
    scratch=$(mktemp -d)
    # New inputs go to the scratch dir (first); the committed corpus is read-only.
    log=$(mktemp)
    if ! "$f" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
         -print_final_stats=0 "$scratch" "$corpus" >"$log" 2>&1; then
      tail -n 60 "$log"; echo "fuzz: $name failed (input saved as crash-*/leak-*/timeout-*)"
      exit 1
    fi
    echo "$name: $(grep -Eo 'Done [0-9]+ runs.*' "$log" | tail -n 1)"
    rm -rf "$scratch" "$log"
  done
fi
echo "== all test stages passed"
