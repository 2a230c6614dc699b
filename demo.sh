#!/usr/bin/env bash
# The demo: installs what is missing, builds, and has a real Erlang node
# produce a term that libotp decodes and prints next to Erlang's own text.
#   ./demo.sh                      the built-in rich term
#   ./demo.sh '{hello, [1,2,3]}'   any Erlang expression
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target decode_term >/dev/null
exec build/bin/decode_term "$@"
