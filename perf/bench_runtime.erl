%% bench_runtime.erl — the Erlang side of perf/bench_runtime: the runtime
%% scenarios (gen_server calls, message passing, spawning idle gen_servers)
%% done with ordinary OTP — gen_server, spawn, !, receive — so the C program
%% can run libotp's equivalents side by side in the same run.
%%
%% Two entries:
%%
%%   erl -noshell ... -pa DIR -run bench_runtime main
%%       The protocol, for the C program (perf/README.md, "bench_runtime").
%%       Prints "info KEY VALUE" lines and "ready"; then, per line on stdin:
%%         run SCENARIO ROUNDS QUICK [MS]
%%           -> "result SCENARIO METRIC VALUE" per metric (the median over
%%              ROUNDS timed batches), or "error SCENARIO REASON";
%%              then "done SCENARIO".
%%         quit (or EOF) -> halt.
%%       QUICK is 0 or 1 (smaller counts and durations). MS, optional,
%%       overrides the time per timed batch (per window for call_par); it
%%       is ignored by spawn_idle, whose size is fixed (1,000,000; quick
%%       100,000). To interleave with the C side, send ROUNDS = 1 once per
%%       round; every run sets up its processes, warms up and calibrates
%%       afresh, so the caches the C side just used do not matter.
%%
%%   erl -noshell +P 2000000 -pa DIR -run bench_runtime standalone [quick]
%%       Runs every scenario (7 rounds, spawn_idle 3; quick: 3 and 2) and
%%       prints a table, for trying the Erlang side alone.
%%
%% Placement. Where the processes run decides the numbers more than
%% anything else, so every scenario places them explicitly with
%% spawn_opt(..., [{scheduler, N}]): not in OTP 25's documentation, but
%% accepted, and it binds the process to scheduler N's run queue (it stays
%% there; checked when this was written). Where it is refused (badarg) the
%% module says "info pinning no", one-scheduler scenarios set
%% schedulers_online to 1 for their duration instead, and cross-scheduler
%% ones just spawn (with +S 2 the two usually, not always, end up apart).
%%
%%   call_small, call_1mb  client and server on scheduler 1: a local call's
%%                         best case (no cross-scheduler wake-up per call).
%%   call_par              120 pairs; "calls_per_s" with OTP's own placement
%%                         and balancing, "calls_per_s_pinned" with pair I's
%%                         client and server both on scheduler 1 + I rem S.
%%   pingpong_cross        the two processes on schedulers 1 and 2.
%%   msg_one               sender and receiver on scheduler 1.
%%   msg_cross             sender on 1, receiver on 2.
%%   spawn_idle            the spawner and every spawned gen_server on
%%                         scheduler 1 ("per core").
%%
%% Knobs that matter (the flags the C side should use are in
%% perf/README.md; in short, one node for everything:
%%   erl -noshell +S 2 +sbwt none +sbwtdcpu none +sbwtdio none +P 2000000
%% and, for the cross-scheduler numbers with OTP's default spinning, a
%% second node without the +sbwt* flags):
%%   +S N        schedulers; the cross scenarios need 2. With pinning, +S 2
%%               serves the one-scheduler scenarios too: the second
%%               scheduler sleeps, as none of their processes may run
%%               there.
%%   +sbwt none (+sbwtdcpu none +sbwtdio none)
%%               no busy-waiting when a scheduler runs out of work. Keeps an
%%               idle node from eating the CPU the C side measures on; but
%%               every cross-scheduler message then wakes a sleeping thread
%%               (a futex), which can make pingpong_cross, msg_cross and
%%               call_par's default placement slower than under OTP's
%%               default (+sbwt medium). Measure those both ways.
%%   +P N        process limit; the default 262,144 is too small for
%%               spawn_idle's 1,000,000 (the quick 100,000 fits).
%%   +sbt        scheduler-to-core binding; left unbound (the default).
%%
%% Hygiene: every scenario garbage-collects every process before it starts;
%% the measuring process collects itself and its peers before each timed
%% batch; times are erlang:monotonic_time(nanosecond) around whole batches
%% (never per operation), and each batch is sized by doubling warm-up to
%% last the budget; the loops are plain tail recursions that check every
%% reply, so nothing is optimised away.
-module(bench_runtime).
-behaviour(gen_server).

-export([main/0, main/1, standalone/0, standalone/1]).
-export([init/1, handle_call/3, handle_cast/2]).

-define(SCENARIOS,
        [call_small, call_1mb, call_par, pingpong_cross, msg_one, msg_cross, spawn_idle]).
-define(PAIRS, 120).
-define(MIB, 1048576).

%% ------------------------------------------------------------ the gen_server
%% One callback module for every server: {get, N} -> {ok, N}; a binary ->
%% its byte_size. init/1 is trivial, as spawn_idle asks.

init(State) -> {ok, State}.

handle_call({get, N}, _From, State) -> {reply, {ok, N}, State};
handle_call(Bin, _From, State) when is_binary(Bin) -> {reply, byte_size(Bin), State}.

handle_cast(_Msg, State) -> {noreply, State}.

%% ------------------------------------------------------------ configuration

%% budget: ns per timed batch; warm: the warm-up's target batch length.
%% par_ns: call_par's measured window, par_warm_ns its warm-up.
cfg(Quick, Ms) ->
    Base = case Quick of
               false -> #{budget => ms(200), warm => ms(20), par_ns => ms(1000),
                          par_warm_ns => ms(200), spawn_n => 1000000};
               true -> #{budget => ms(30), warm => ms(5), par_ns => ms(200),
                         par_warm_ns => ms(50), spawn_n => 100000}
           end,
    case Ms of
        undefined -> Base;
        _ -> Base#{budget := ms(Ms), warm := min(ms(Ms) div 4, ms(20)), par_ns := ms(Ms),
                   par_warm_ns := max(ms(Ms) div 5, ms(20))}
    end.

ms(N) -> N * 1000000.

%% ------------------------------------------------------------ protocol entry

main() -> main([]).

main(_Args) ->
    print_info(),
    io:format("ready~n"),
    serve().

print_info() ->
    io:format("info otp ~s~n", [erlang:system_info(otp_release)]),
    io:format("info schedulers ~b~n", [erlang:system_info(schedulers_online)]),
    io:format("info pinning ~s~n", [yes_no(pinning())]),
    io:format("info process_limit ~b~n", [erlang:system_info(process_limit)]).

yes_no(true) -> "yes";
yes_no(false) -> "no".

serve() ->
    case io:get_line("") of
        Line when is_list(Line) ->
            case string:lexemes(Line, " \t\r\n") of
                ["run", Sc, Rounds, Quick | Rest] ->
                    case parse_run(Rounds, Quick, Rest) of
                        {ok, R, Q, Ms} -> protocol_run(Sc, R, Q, Ms);
                        error -> io:format("error ~s bad_request~ndone ~s~n", [Sc, Sc])
                    end,
                    serve();
                ["quit"] ->
                    halt(0);
                [] ->
                    serve();
                _ ->
                    io:format("error - bad_request~n"),
                    serve()
            end;
        _ ->
            halt(0)
    end.

%% ROUNDS >= 1, QUICK 0 or 1, MS (optional) >= 1.
parse_run(RoundsS, QuickS, Rest) ->
    try
        Rounds = list_to_integer(RoundsS),
        true = Rounds >= 1,
        Quick = case QuickS of "0" -> false; "1" -> true end,
        Ms = case Rest of
                 [] -> undefined;
                 [M] -> true = list_to_integer(M) >= 1, list_to_integer(M)
             end,
        {ok, Rounds, Quick, Ms}
    catch
        _:_ -> error
    end.

protocol_run(Sc, Rounds, Quick, Ms) ->
    case scenario_atom(Sc) of
        undefined ->
            io:format("error ~s unknown_scenario~n", [Sc]);
        Name ->
            case run(Name, Rounds, cfg(Quick, Ms)) of
                {ok, Metrics} ->
                    [io:format("result ~s ~s ~.3f~n", [Sc, Metric, float(median(Vs))])
                     || {Metric, Vs} <- Metrics];
                {error, Reason} ->
                    io:format("error ~s ~s~n", [Sc, Reason])
            end
    end,
    io:format("done ~s~n", [Sc]).

scenario_atom(S) ->
    case [A || A <- ?SCENARIOS, atom_to_list(A) =:= S] of
        [A] -> A;
        [] -> undefined
    end.

%% ------------------------------------------------------------ standalone

standalone() -> standalone([]).

standalone(Args) ->
    Quick = lists:member("quick", Args),
    Cfg = cfg(Quick, undefined),
    {R, RSpawn} = case Quick of
                      true -> {3, 2};
                      false -> {7, 3}
                  end,
    io:format("bench_runtime (~s): OTP ~s, ~b schedulers online, pinning ~s, "
              "process limit ~b~n~n",
              [case Quick of true -> "quick"; false -> "full" end,
               erlang:system_info(otp_release), erlang:system_info(schedulers_online),
               yes_no(pinning()), erlang:system_info(process_limit)]),
    io:format("| scenario | metric | median | min | max | rounds |~n"
              "| --- | --- | ---: | ---: | ---: | ---: |~n"),
    lists:foreach(
      fun(Sc) ->
              Rounds = case Sc of spawn_idle -> RSpawn; _ -> R end,
              case run(Sc, Rounds, Cfg) of
                  {ok, Metrics} ->
                      lists:foreach(
                        fun({Metric, Vs}) ->
                                io:format("| ~s | ~s | ~s | ~s | ~s | ~b |~n",
                                          [Sc, Metric, fmt(median(Vs)), fmt(lists:min(Vs)),
                                           fmt(lists:max(Vs)), length(Vs)])
                        end, Metrics);
                  {error, Reason} ->
                      io:format("| ~s | error: ~s | | | | |~n", [Sc, Reason])
              end
      end, ?SCENARIOS),
    halt(0).

%% Three significant digits or more, with a k/M/G suffix for large values.
fmt(V) when abs(V) >= 1.0e9 -> io_lib:format("~.2fG", [V / 1.0e9]);
fmt(V) when abs(V) >= 1.0e6 -> io_lib:format("~.2fM", [V / 1.0e6]);
fmt(V) when abs(V) >= 1.0e4 -> io_lib:format("~.1fk", [V / 1.0e3]);
fmt(V) -> io_lib:format("~.1f", [float(V)]).

median(Vs) ->
    S = lists:sort(Vs),
    N = length(S),
    case N rem 2 of
        1 -> lists:nth(N div 2 + 1, S);
        0 -> (lists:nth(N div 2, S) + lists:nth(N div 2 + 1, S)) / 2
    end.

%% ------------------------------------------------------------ scenarios

%% Returns {ok, [{Metric, [PerRoundValue]}]} or {error, Reason}.
run(Sc, Rounds, Cfg) when Rounds >= 1 ->
    gc_all(),
    try scenario(Sc, Rounds, Cfg) of
        {error, _} = E -> E;
        PerRound -> {ok, transpose(PerRound)}
    catch
        C:Why:St ->
            {error, lists:flatten(io_lib:format("~p:~0p ~0p", [C, Why, hd(St)]))}
    after
        gc_all()
    end.

%% [[{M, V}]] per round -> [{M, [V per round]}], metrics in their order.
transpose([First | _] = PerRound) ->
    [{M, [proplists:get_value(M, R) || R <- PerRound]} || {M, _} <- First].

scenario(call_small, Rounds, Cfg) ->
    on_one_scheduler(
      fun() ->
              Opts = pin(1),
              {ok, S} = gen_server:start(?MODULE, [], [{spawn_opt, Opts}]),
              Ns = run_in(Opts, fun() -> measure({call, S, {get, 42}, {ok, 42}}, Rounds, Cfg) end),
              ok = gen_server:stop(S),
              [[{ns_per_call, X}] || X <- Ns]
      end);
scenario(call_1mb, Rounds, Cfg) ->
    %% A local message carries a refc binary by reference (only its
    %% ProcBin is copied), so this is call overhead plus the refc binary's
    %% handling and the virtual-heap collections it causes, not a memcpy.
    on_one_scheduler(
      fun() ->
              Opts = pin(1),
              {ok, S} = gen_server:start(?MODULE, [], [{spawn_opt, Opts}]),
              Ns = run_in(Opts,
                          fun() ->
                                  Bin = rand:bytes(?MIB),
                                  measure({call, S, Bin, ?MIB}, Rounds, Cfg)
                          end),
              ok = gen_server:stop(S),
              [[{ns_per_call, X}, {bytes_per_s, ?MIB * 1.0e9 / X}] || X <- Ns]
      end);
scenario(call_par, Rounds, Cfg) ->
    Default = call_par(Rounds, Cfg, fun(_) -> [] end),
    case pinning() of
        true ->
            S = erlang:system_info(schedulers_online),
            Pinned = call_par(Rounds, Cfg, fun(I) -> [{scheduler, 1 + I rem S}] end),
            [[{calls_per_s, D}, {calls_per_s_pinned, P}] || {D, P} <- lists:zip(Default, Pinned)];
        false ->
            [[{calls_per_s, D}] || D <- Default]
    end;
scenario(pingpong_cross, Rounds, Cfg) ->
    cross(fun() ->
                  Echo = spawn_opt(fun echo/0, pin(2)),
                  Ns = run_in(pin(1), fun() -> measure({ping, Echo}, Rounds, Cfg) end),
                  Echo ! stop,
                  [[{ns_per_round_trip, X}] || X <- Ns]
          end);
scenario(msg_one, Rounds, Cfg) ->
    on_one_scheduler(fun() -> stream(1, Rounds, Cfg) end);
scenario(msg_cross, Rounds, Cfg) ->
    cross(fun() -> stream(2, Rounds, Cfg) end);
scenario(spawn_idle, Rounds, Cfg) ->
    N = maps:get(spawn_n, Cfg),
    Free = erlang:system_info(process_limit) - erlang:system_info(process_count),
    if
        Free < N + 1000 ->
            {error, io_lib:format("process_limit_too_low_for_~b:_start_erl_with_+P_~b",
                                  [N, 2 * N])};
        true ->
            on_one_scheduler(fun() -> [spawn_round(N) || _ <- lists:seq(1, Rounds)] end)
    end.

%% msg_one / msg_cross: the sender on scheduler 1 streams {msg, I} to a
%% receiver on scheduler RecvSched that counts them. A batch is N sends and
%% one {sync, From} whose answer comes once the receiver has taken all N
%% out of its queue: N messages delivered and counted, over the time until
%% then. The receiver's queue grows while the sender is ahead of it.
stream(RecvSched, Rounds, Cfg) ->
    R = spawn_opt(fun() -> counter(0) end, pin(RecvSched)),
    Ns = run_in(pin(1), fun() -> measure({stream, R}, Rounds, Cfg) end),
    R ! stop,
    [[{msgs_per_s, 1.0e9 / X}, {ns_per_msg, X}] || X <- Ns].

counter(C) ->
    receive
        {msg, _} -> counter(C + 1);
        {sync, From} -> From ! {count, C}, counter(0);
        stop -> ok
    end.

echo() ->
    receive
        {ping, From} -> From ! pong, echo();
        stop -> ok
    end.

%% ------------------------------------------------------------ timed batches

%% In the measuring process: warm up by doubling the batch until it lasts
%% `warm` ns, time one batch of that length now that caches are warm, size
%% the batch from it to last `budget` ns, and time Rounds such batches.
%% Returns ns per operation for each. The same procedure as bench_codec's.
measure(Op, Rounds, #{budget := Budget, warm := Warm}) ->
    Per = warm_up(Op, Warm, 1),
    Per2 = time_batch(Op, round(Warm / Per) + 1),
    N = max(1, round(Budget / Per2)),
    [time_batch(Op, N) || _ <- lists:seq(1, Rounds)].

warm_up(Op, Warm, N) ->
    case time_batch(Op, N) * N of
        Dt when Dt >= Warm -> Dt / N;
        _ -> warm_up(Op, Warm, N * 2)
    end.

%% ns per operation of one batch of N. Collects itself and its peer first,
%% so a batch does not pay for the previous one's garbage.
time_batch(Op, N) ->
    erlang:garbage_collect(peer(Op)),
    erlang:garbage_collect(),
    T0 = erlang:monotonic_time(nanosecond),
    ok = batch(Op, N),
    (erlang:monotonic_time(nanosecond) - T0) / N.

peer({call, S, _, _}) -> S;
peer({ping, P}) -> P;
peer({stream, P}) -> P.

%% Dispatch on a tuple rather than a fun (see bench_codec.erl on OTP
%% 25.2.3's compiler and funs whose results are ignored).
batch({call, S, Req, Expect}, N) -> call_loop(N, S, Req, Expect);
batch({ping, P}, N) -> ping_loop(N, P);
batch({stream, R}, N) ->
    send_loop(N, R),
    R ! {sync, self()},
    receive {count, N} -> ok end.

%% Every reply is matched, so no call can be skipped.
call_loop(0, _S, _Req, _Expect) -> ok;
call_loop(N, S, Req, Expect) ->
    Expect = gen_server:call(S, Req),
    call_loop(N - 1, S, Req, Expect).

ping_loop(0, _P) -> ok;
ping_loop(N, P) ->
    P ! {ping, self()},
    receive pong -> ok end,
    ping_loop(N - 1, P).

send_loop(0, _R) -> ok;
send_loop(N, R) ->
    R ! {msg, N},
    send_loop(N - 1, R).

%% ------------------------------------------------------------ call_par

%% 120 gen_servers and 120 clients, client I calling server I in a loop and
%% counting in its own slot of a write_concurrency counters array (per
%% scheduler, so the count costs no cache-line traffic; a few ns against a
%% call's microsecond). The coordinator lets them run par_warm_ns, then reads
%% the sum and the clock at the start and end of Rounds windows of par_ns
%% each, back to back: calls completed in a window per second. A shared stop
%% flag ends them. Opts(I) gives pair I's spawn options.
call_par(Rounds, #{par_ns := Win, par_warm_ns := Warm}, Opts) ->
    Idx = lists:seq(1, ?PAIRS),
    Cnt = counters:new(?PAIRS, [write_concurrency]),
    Stop = atomics:new(1, []),
    Servers = [begin
                   {ok, S} = gen_server:start(?MODULE, [], [{spawn_opt, Opts(I)}]),
                   S
               end || I <- Idx],
    Clients = [spawn_opt(fun() -> par_client(S, I, Cnt, Stop) end, [monitor | Opts(I)])
               || {I, S} <- lists:zip(Idx, Servers)],
    lists:foreach(fun({C, _}) -> C ! go end, Clients),
    sleep_ns(Warm),
    Rates = par_windows(Rounds, Cnt, Win, []),
    atomics:put(Stop, 1, 1),
    lists:foreach(fun({_, M}) -> receive {'DOWN', M, _, _, normal} -> ok end end, Clients),
    lists:foreach(fun(S) -> ok = gen_server:stop(S) end, Servers),
    Rates.

par_windows(0, _Cnt, _Win, Acc) -> lists:reverse(Acc);
par_windows(K, Cnt, Win, Acc) ->
    C0 = par_sum(Cnt),
    T0 = erlang:monotonic_time(nanosecond),
    sleep_ns(Win),
    C1 = par_sum(Cnt),
    T1 = erlang:monotonic_time(nanosecond),
    par_windows(K - 1, Cnt, Win, [(C1 - C0) * 1.0e9 / (T1 - T0) | Acc]).

par_sum(Cnt) -> lists:sum([counters:get(Cnt, I) || I <- lists:seq(1, ?PAIRS)]).

par_client(S, I, Cnt, Stop) ->
    receive go -> ok end,
    par_loop(S, I, Cnt, Stop).

par_loop(S, I, Cnt, Stop) ->
    {ok, I} = gen_server:call(S, {get, I}),
    counters:add(Cnt, I, 1),
    case atomics:get(Stop, 1) of
        0 -> par_loop(S, I, Cnt, Stop);
        _ -> ok
    end.

sleep_ns(Ns) -> receive after max(1, Ns div 1000000) -> ok end.

%% ------------------------------------------------------------ spawn_idle

%% One round: a spawner on scheduler 1 starts N gen_servers with
%% gen_server:start/3 (unlinked, trivial init, also bound to scheduler 1),
%% keeping their pids in a list. Memory is erlang:memory/1 after minus
%% before, less the spawner's own growth (the pid list, 16 bytes a process),
%% divided by N: "bytes_per_proc" from memory(total) — everything the node
%% allocated for them, the figure to compare — and "proc_bytes_per_proc"
%% from memory(processes), the process structures and heaps alone. The
%% process table is preallocated for +P at boot, so neither counts its
%% 8 bytes a process. Then every one is killed (exit(P, kill)), and once
%% process_count is back where it was, the round checks that memory(total)
%% came back: "leftover_bytes_per_proc", memory(total) after minus before,
%% divided by N (allocator caches make it a few bytes either way; a real
%% leak would show as hundreds).
spawn_round(N) ->
    gc_all(),
    Base = erlang:system_info(process_count),
    [{total, Tot0}, {processes, Pr0}] = erlang:memory([total, processes]),
    Parent = self(),
    Ref = make_ref(),
    Opts = pin(1),
    {Sp, MRef} = spawn_opt(fun() -> spawner(Parent, Ref, N, Base, Opts) end, [monitor | Opts]),
    {SpawnNs, SpGrowth} = receive {Ref, spawned, Ns, G} -> {Ns, G} end,
    [{total, Tot1}, {processes, Pr1}] = erlang:memory([total, processes]),
    Sp ! {Ref, kill},
    KillNs = receive {Ref, killed, K} -> K end,
    receive {'DOWN', MRef, _, _, _} -> ok end,
    gc_all(),
    Tot2 = erlang:memory(total),
    [{spawns_per_s, N * 1.0e9 / SpawnNs},
     {bytes_per_proc, (Tot1 - Tot0 - SpGrowth) / N},
     {proc_bytes_per_proc, (Pr1 - Pr0 - SpGrowth) / N},
     {kills_per_s, N * 1.0e9 / KillNs},
     {leftover_bytes_per_proc, (Tot2 - Tot0) / N}].

spawner(Parent, Ref, N, Base, Opts) ->
    {memory, M0} = process_info(self(), memory),
    T0 = erlang:monotonic_time(nanosecond),
    Pids = start_idle(N, Opts, []),
    T1 = erlang:monotonic_time(nanosecond),
    erlang:garbage_collect(),
    {memory, M1} = process_info(self(), memory),
    Parent ! {Ref, spawned, T1 - T0, M1 - M0},
    receive {Ref, kill} -> ok end,
    T2 = erlang:monotonic_time(nanosecond),
    kill_all(Pids),
    wait_count(Base + 1),
    Parent ! {Ref, killed, erlang:monotonic_time(nanosecond) - T2}.

start_idle(0, _Opts, Acc) -> Acc;
start_idle(N, Opts, Acc) ->
    {ok, P} = gen_server:start(?MODULE, [], [{spawn_opt, Opts}]),
    start_idle(N - 1, Opts, [P | Acc]).

kill_all([]) -> ok;
kill_all([P | Ps]) ->
    exit(P, kill),
    kill_all(Ps).

%% Polls until at most Count processes exist (Base, plus the spawner).
wait_count(Count) ->
    case erlang:system_info(process_count) =< Count of
        true -> ok;
        false -> receive after 1 -> wait_count(Count) end
    end.

%% ------------------------------------------------------------ placement

%% Whether spawn_opt accepts {scheduler, N} (asked once, remembered).
pinning() ->
    case persistent_term:get({?MODULE, pinning}, undefined) of
        undefined ->
            P = try spawn_opt(fun() -> ok end, [{scheduler, 1}]) of
                    _ -> true
                catch
                    error:badarg -> false
                end,
            persistent_term:put({?MODULE, pinning}, P),
            P;
        P ->
            P
    end.

pin(N) ->
    case pinning() of
        true -> [{scheduler, N}];
        false -> []
    end.

%% Without pinning, a one-scheduler scenario runs with schedulers_online set
%% to 1 (restored after).
on_one_scheduler(Fun) ->
    case pinning() of
        true ->
            Fun();
        false ->
            Old = erlang:system_flag(schedulers_online, 1),
            try Fun() after erlang:system_flag(schedulers_online, Old) end
    end.

cross(Fun) ->
    case erlang:system_info(schedulers_online) >= 2 of
        true -> Fun();
        false -> {error, "needs_2_schedulers:_start_erl_with_+S_2"}
    end.

%% Runs Fun in a new process spawned with Opts; returns its result.
run_in(Opts, Fun) ->
    Parent = self(),
    Ref = make_ref(),
    {_, M} = spawn_opt(fun() -> Parent ! {Ref, Fun()} end, [monitor | Opts]),
    receive
        {Ref, R} ->
            receive {'DOWN', M, _, _, _} -> ok end,
            R;
        {'DOWN', M, _, _, Why} ->
            error({worker_died, Why})
    end.

gc_all() ->
    lists:foreach(fun erlang:garbage_collect/1, erlang:processes()).
