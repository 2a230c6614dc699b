#!/bin/sh
# run_codec.sh — builds bench_codec in a Release tree of its own and runs it.
# Arguments go to the program (--quick, --rounds N, --ms N, --no-erlang).
# BUILD_DIR overrides the tree (default: build-perf next to the sources).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build-perf}
cmake -B "$build" -S "$src" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_codec >/dev/null
exec "$build/bin/bench_codec" "$@"
