%% bench_dist.erl — the Erlang side of perf/bench_dist: two-node scenarios.
%%
%%   erl -sname S -setcookie C -noshell -pa DIR -run bench_dist server
%%       Registers bench_srv, a gen_server whose calls return the request
%%       and whose casts count; {count} returns (and resets) the count.
%%       Prints "ready"; halts when stdin closes.
%%
%%   erl -sname S -setcookie C -noshell -pa DIR -run bench_dist client
%%       Reads lines "run SCENARIO NODE MS" and answers
%%       "result SCENARIO VALUE [P50 P99 P999]": the client side of each
%%       scenario against {bench_srv, NODE}, timed over about MS
%%       milliseconds after a warm-up. Scenarios and units (the C sides do
%%       the same):
%%         call_num call_str call_pid call_1mb   ns per sequential call, and
%%                                               percentiles of the per-call
%%                                               times (each call timed)
%%         call_par                              calls/s, 120 callers
%%         cast                                  casts/s (then one call)
-module(bench_dist).
-export([server/0, client/0]).
-export([init/1, handle_call/3, handle_cast/2]).

server() ->
    {ok, _} = gen_server:start({local, bench_srv}, ?MODULE, [], []),
    io:format("ready~n"),
    _ = io:get_line(''),
    halt().

init([]) -> {ok, 0}.
handle_call({count}, _From, N) -> {reply, N, 0};
handle_call(Req, _From, N) -> {reply, Req, N}.
handle_cast(_Msg, N) -> {noreply, N + 1}.

client() ->
    io:format("ready~n"),
    loop().

loop() ->
    case io:get_line('') of
        eof -> halt();
        Line ->
            case string:lexemes(string:trim(Line), " ") of
                ["run", Sc, Node, Ms] ->
                    case run(list_to_atom(Sc), list_to_atom(Node), list_to_integer(Ms)) of
                        {V, P50, P99, P999} ->
                            io:format("result ~s ~p ~p ~p ~p~n", [Sc, V, P50, P99, P999]);
                        V ->
                            io:format("result ~s ~p~n", [Sc, V])
                    end;
                _ ->
                    ok
            end,
            loop()
    end.

payload(call_num) -> 42;
payload(call_str) -> "hello, world";
payload(call_pid) -> self();
payload(call_1mb) -> binary:copy(<<7>>, 1024 * 1024).

now_ns() -> erlang:monotonic_time(nanosecond).

%% Warms up by doubling a batch until it lasts Ms / 4, then times every
%% call for Ms: {mean, p50, p99, p99.9} in ns (nearest rank).
seq(Fun, Ms) ->
    _ = calibrate(Fun, 1, Ms * 1000000 div 4),
    T0 = now_ns(),
    {T, Lat} = timed(Fun, T0, T0 + Ms * 1000000, []),
    N = length(Lat),
    S = list_to_tuple(lists:sort(Lat)),
    {(T - T0) / N, pct(S, N, 0.5), pct(S, N, 0.99), pct(S, N, 0.999)}.

pct(S, N, P) ->
    K = trunc(P * N + 0.999999),
    element(max(1, min(N, K)), S).

calibrate(Fun, B, Want) ->
    T0 = now_ns(),
    times(Fun, B),
    case now_ns() - T0 >= Want of
        true -> B;
        false -> calibrate(Fun, B * 2, Want)
    end.

timed(Fun, T, End, Lat) ->
    Fun(),
    T1 = now_ns(),
    case T1 >= End of
        true -> {T1, [T1 - T | Lat]};
        false -> timed(Fun, T1, End, [T1 - T | Lat])
    end.

times(_, 0) -> ok;
times(Fun, K) -> Fun(), times(Fun, K - 1).

run(call_par, Node, Ms) ->
    Srv = {bench_srv, Node},
    Parent = self(),
    Stop = now_ns() + Ms * 1000000,
    Pids = [spawn_link(fun() -> par_loop(Srv, Stop, 0, Parent) end) || _ <- lists:seq(1, 120)],
    T0 = now_ns(),
    Total = lists:sum([receive {done, P, C} -> C end || P <- Pids]),
    Total / ((now_ns() - T0) / 1.0e9);
run(cast, Node, Ms) ->
    Srv = {bench_srv, Node},
    gen_server:call(Srv, {count}),
    N = max(1000, Ms * 200),
    T0 = now_ns(),
    times(fun() -> gen_server:cast(Srv, x) end, N),
    N = gen_server:call(Srv, {count}, 60000),
    N / ((now_ns() - T0) / 1.0e9);
run(Sc, Node, Ms) ->
    Srv = {bench_srv, Node},
    P = payload(Sc),
    seq(fun() -> P = gen_server:call(Srv, P) end, Ms).

par_loop(Srv, Stop, C, Parent) ->
    case now_ns() >= Stop of
        true -> Parent ! {done, self(), C};
        false -> x = gen_server:call(Srv, x), par_loop(Srv, Stop, C + 1, Parent)
    end.
