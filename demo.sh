#!/usr/bin/env bash
# The demo: installs what is missing, builds, starts a libotp node
# (build/bin/echo_node, serving EPMD itself) and has a real Erlang node
# connect to it, ping it, call its GenServer, rpc into a C function and
# swap messages, printing the exchange; then stops both.
#   ./demo.sh                         the node demo
#   ./demo.sh decode '{hello, [1,2]}' a real erl makes a term; libotp decodes it
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
if [[ "${1:-}" == decode ]]; then
  shift
  cmake --build build -j "$(nproc)" --target decode_term >/dev/null
  exec build/bin/decode_term "$@"
fi
cmake --build build -j "$(nproc)" --target echo_node >/dev/null

# An EPMD port of our own, so a system epmd (if any) is left alone.
port=43690
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
export ERL_EPMD_PORT=$port ERL_CRASH_DUMP_SECONDS=0
host=$(hostname -s)
cookie=demo_cookie_$$

out=$(mktemp)
build/bin/echo_node -sname libotp_demo -setcookie "$cookie" >"$out" 2>"$out.log" &
node_pid=$!
trap 'kill "$node_pid" 2>/dev/null || true; rm -f "$out" "$out.log"' EXIT
for _ in $(seq 100); do grep -q '^ready' "$out" && break; sleep 0.1; done
echo "libotp:  $(cat "$out")   (serving EPMD on port $port)"

erl -sname erl_demo -setcookie "$cookie" -noshell -eval "
  N = 'libotp_demo@$host',
  P = fun(What, Res) -> io:format(\"erlang: ~-44s -> ~s~n\", [What, io_lib:print(Res, 1, 200, -1)]) end,
  P(\"net_adm:ping(N)\", net_adm:ping(N)),
  P(\"gen_server:call({echo, N}, {hello, self()})\", gen_server:call({echo, N}, {hello, self()})),
  P(\"rpc:call(N, echo, echo, [#{answer => 42}])\", rpc:call(N, echo, echo, [#{answer => 42}])),
  P(\"rpc:call(N, nomod, nofun, [])\", rpc:call(N, nomod, nofun, [])),
  {echo, N} ! {self(), <<\"a message, and back\">>},
  P(\"{echo, N} ! {self(), Bin}, receive\", receive M -> M after 5000 -> timeout end),
  Lab = gen_server:call({lab, N}, {spawn}),
  Ref = erlang:monitor(process, Lab),
  gen_server:call({lab, N}, {exit, Lab, demo_over}),
  P(\"monitor a C process, make it exit\", receive {'DOWN', Ref, process, _, R} -> R after 5000 -> timeout end),
  P(\"nodes()\", nodes()),
  halt()."

kill -TERM "$node_pid"
wait "$node_pid" && echo "libotp:  stopped cleanly"
