%% semantics — the Erlang half of test/test_semantics.c: runs the scenario
%% scripts of that file's table (links, monitors, exit signals, trap_exit,
%% names, timers) in a real erl and writes one `NAME OUTCOME` line each, so
%% the C side can check that its table says what Erlang does.
%%
%%   erl -noshell -pa DIR -run semantics main SCRIPTS OUTFILE
%%
%% SCRIPTS holds `{Name, Roles}.` terms (written by the C test from its
%% table). The interpreter below and the one in test_semantics.c implement
%% the same little language; keep them in step. A role is {Letter, Program}
%% or {Letter, Opts, Program}; Opts: trap (trap_exit from the start),
%% dynamic (not started by the director: a spawn op of another role starts
%% it). Letters a..h name roles (their pids); other atoms in a target place
%% are registered names. Ops:
%%   trap | untrap                 process_flag(trap_exit, true | false)
%%   {log, X}                      log X
%%   {send, T, M}                  T ! M; logs {badarg, T} if T is no name
%%   {send_seq, T, N}              T ! {m, 1}, ..., T ! {m, N}
%%   {recv, Tmo}                   receive any; logs it or `timeout`
%%   {recv_tag, Tag, Tmo}          receive Tag or a tuple tagged Tag
%%   {recv_down, K, Tmo}           receive the DOWN of monitor K
%%   {recv_seq, N}                 receive N messages: {seq, N} if they are
%%                                 {m, 1}..{m, N}, else {seq_bad, I, Msg}
%%   {await_queue, N}              wait (polling) until N messages are queued
%%   {link, T} | {unlink, T}       logs {link, noproc} when link/1 raises
%%   {monitor, T, K}               monitor(process, T), the ref kept as K
%%   {demonitor, K} | {demonitor, K, Opts}   logs {demonitor, K, R} with info
%%   {exit, T, R} | {die, R}       exit/2 | exit/1
%%   {spawn, L} | {spawn_link, L} | {spawn_monitor, L, K}   start role L
%%   {register, Name} | {register, Name, T}   logs {register, Name, badarg}
%%   {unregister, Name}            logs {unregister, Name, badarg}
%%   {whereis, Name}               logs {whereis, Name, PidOrUndefined}
%%   {send_after, Ms, T, M, K}     erlang:send_after, the ref kept as K
%%   {cancel_timer, K}             logs {cancel_timer, K, cancelled | false}
%%   {info, T, Item}               logs {info, T, Item, V}; V is a count for
%%                                 links/monitors/monitored_by, `none` for no
%%                                 registered_name, undefined if T is dead
%%   stay                          tell the director we live; block forever
%%   {sleep, Ms}                   timer:sleep(Ms)
%% The outcome: every role in letter order as `L=Reason [Log]`, joined by
%% "; ", with Reason the exit reason (top-level roles, from the director's
%% monitor), `alive` (stay), `running` (still busy at the deadline) or `dyn`
%% (dynamic roles). Pids print as their letters, refs as their keys.
-module(semantics).
-export([main/1]).

-define(DEADLINE_MS, 10000).

main([In, Out]) ->
    try
        {ok, Scenarios} = file:consult(In),
        Lines = [[atom_to_list(Name), " ", run_scenario(Roles), "\n"]
                 || {Name, Roles} <- Scenarios],
        ok = file:write_file(Out, Lines),
        erlang:halt(0)
    catch
        C:E:St ->
            io:format(standard_error, "semantics: ~p:~p~n~p~n", [C, E, St]),
            erlang:halt(3)
    end.

%% ------------------------------------------------------------ the director

run_scenario(Roles0) ->
    Roles = [norm_role(R) || R <- Roles0],
    Me = self(),
    {Dir, MRef} = spawn_monitor(fun() -> Me ! {self(), director(Roles)} end),
    receive
        {Dir, Text} ->
            receive {'DOWN', MRef, _, _, _} -> ok end,
            Text;
        {'DOWN', MRef, _, _, Reason} ->
            exit({director_died, Reason})
    end.

norm_role({L, Prog}) -> {L, [], Prog};
norm_role({L, Opts, Prog}) -> {L, Opts, Prog}.

director(Roles) ->
    Tab = ets:new(semantics, [public, set]),
    ets:insert(Tab, {{pid, self()}, director}),
    Top = [R || {_, Opts, _} = R <- Roles, not lists:member(dynamic, Opts)],
    Dir = self(),
    Mons = [begin
                Pid = spawn(fun() -> role_top(Tab, Dir, L, Opts, Roles, Prog) end),
                put_role(Tab, L, Pid),
                {erlang:monitor(process, Pid), L}
            end || {L, Opts, Prog} <- Top],
    %% every role has set its flags before any of them starts
    [receive {'$ready', L} -> ok end || {_, L} <- Mons],
    [role_pid(Tab, L) ! '$go' || {_, L} <- Mons],
    Deadline = erlang:monotonic_time(millisecond) + ?DEADLINE_MS,
    Fates = collect(Tab, maps:from_list(Mons), #{}, Deadline, #{}),
    Text = render(Tab, Roles, Fates),
    [exit(P, kill) || {{pid, P}, L} <- ets:tab2list(Tab), L =/= director],
    ets:delete(Tab),
    Text.

%% Fates: Letter => {top, Reason} | {top, alive} | dyn; logs are in Tab.
collect(_Tab, Pending, _Dyn, _Deadline, Fates) when map_size(Pending) =:= 0 ->
    Fates;
collect(Tab, Pending, Dyn, Deadline, Fates) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {'DOWN', Ref, process, _, Reason} ->
            case maps:take(Ref, Pending) of
                {L, Rest} ->
                    F = case maps:is_key(L, Dyn) of
                            true -> dyn;
                            false -> {top, Reason}
                        end,
                    collect(Tab, Rest, Dyn, Deadline, Fates#{L => F});
                error ->
                    collect(Tab, Pending, Dyn, Deadline, Fates)
            end;
        {'$stay', L} ->
            Pending1 = maps:filter(fun(_, V) -> V =/= L end, Pending),
            F = case maps:is_key(L, Dyn) of
                    true -> dyn;
                    false -> {top, alive}
                end,
            collect(Tab, Pending1, Dyn, Deadline, Fates#{L => F});
        {'$spawned', L, Pid} ->
            Ref = erlang:monitor(process, Pid),
            collect(Tab, Pending#{Ref => L}, Dyn#{L => true}, Deadline, Fates)
    after Left ->
            Running = maps:from_list([{L, {top, running}} || L <- maps:values(Pending)]),
            maps:merge(Fates, Running)
    end.

render(Tab, Roles, Fates) ->
    Parts = [render_role(Tab, L, maps:get(L, Fates, not_started))
             || {L, _, _} <- lists:keysort(1, Roles)],
    lists:join("; ", [P || P <- Parts, P =/= []]).

render_role(_Tab, _L, not_started) ->
    [];
render_role(Tab, L, Fate) ->
    Log = [T || {_, T} <- lists:sort(ets:match_object(Tab, {{log, L, '_'}, '_'}))],
    F = case Fate of
            dyn -> dyn;
            {top, alive} -> alive;
            {top, running} -> running;
            {top, R} -> subst(Tab, R)
        end,
    io_lib:format("~w=~w ~w", [L, F, subst(Tab, Log)]).

%% Pids become their role letters, refs their keys.
subst(Tab, T) when is_pid(T) ->
    case ets:lookup(Tab, {pid, T}) of
        [{_, L}] -> L;
        [] -> pid
    end;
subst(Tab, T) when is_reference(T) ->
    case ets:lookup(Tab, {refkey, T}) of
        [{_, K}] -> K;
        [] -> ref
    end;
subst(Tab, T) when is_tuple(T) ->
    list_to_tuple(subst(Tab, tuple_to_list(T)));
subst(Tab, [H | T]) ->
    [subst(Tab, H) | subst(Tab, T)];
subst(_Tab, T) ->
    T.

%% ------------------------------------------------------------ roles

put_role(Tab, L, Pid) ->
    ets:insert(Tab, [{{role, L}, Pid}, {{pid, Pid}, L}]).

role_pid(Tab, L) ->
    [{_, Pid}] = ets:lookup(Tab, {role, L}),
    Pid.

role_top(Tab, Dir, L, Opts, Roles, Prog) ->
    lists:member(trap, Opts) andalso process_flag(trap_exit, true),
    Dir ! {'$ready', L},
    receive '$go' -> ok end,
    run(#{tab => Tab, dir => Dir, me => L, roles => Roles, n => 0}, Prog).

role_dyn(Tab, Dir, L, Roles) ->
    {L, Opts, Prog} = lists:keyfind(L, 1, Roles),
    lists:member(trap, Opts) andalso process_flag(trap_exit, true),
    put_role(Tab, L, self()),
    run(#{tab => Tab, dir => Dir, me => L, roles => Roles, n => 0}, Prog).

is_role(A) when is_atom(A) ->
    case atom_to_list(A) of
        [C] when C >= $a, C =< $h -> true;
        _ -> false
    end;
is_role(_) ->
    false.

%% A target: a role's pid, else the term itself (a registered name).
target(S, T) ->
    case is_role(T) of
        true -> role_pid(maps:get(tab, S), T);
        false -> T
    end.

log(S = #{tab := Tab, me := L, n := N}, X) ->
    ets:insert(Tab, {{log, L, N}, X}),
    S#{n := N + 1}.

keep(#{tab := Tab}, K, Ref) ->
    ets:insert(Tab, [{{key, K}, Ref}, {{refkey, Ref}, K}]).

key(#{tab := Tab}, K) ->
    [{_, Ref}] = ets:lookup(Tab, {key, K}),
    Ref.

tmo(infinity) -> infinity;
tmo(Ms) when is_integer(Ms) -> Ms.

%% ------------------------------------------------------------ the ops

run(_S, []) ->
    ok;
run(S, [Op | Rest]) ->
    run(op(S, Op), Rest).

op(S, trap) ->
    process_flag(trap_exit, true),
    S;
op(S, untrap) ->
    process_flag(trap_exit, false),
    S;
op(S, {log, X}) ->
    log(S, X);
op(S, {send, T, M}) ->
    try
        target(S, T) ! M,
        S
    catch
        error:badarg -> log(S, {badarg, T})
    end;
op(S, {send_seq, T, N}) ->
    P = target(S, T),
    [P ! {m, I} || I <- lists:seq(1, N)],
    S;
op(S, {recv, Tmo}) ->
    receive
        M -> log(S, M)
    after tmo(Tmo) -> log(S, timeout)
    end;
op(S, {recv_tag, Tag, Tmo}) ->
    receive
        Tag -> log(S, Tag);
        M when is_tuple(M), tuple_size(M) > 0, element(1, M) =:= Tag -> log(S, M)
    after tmo(Tmo) -> log(S, timeout)
    end;
op(S, {recv_down, K, Tmo}) ->
    Ref = key(S, K),
    receive
        {'DOWN', Ref, _, _, _} = M -> log(S, M)
    after tmo(Tmo) -> log(S, timeout)
    end;
op(S, {recv_seq, N}) ->
    recv_seq(S, 1, N);
op(S, {await_queue, N}) ->
    await_queue(S, N, 5000);
op(S, {link, T}) ->
    try
        link(target(S, T)),
        S
    catch
        error:noproc -> log(S, {link, noproc})
    end;
op(S, {unlink, T}) ->
    unlink(target(S, T)),
    S;
op(S, {monitor, T, K}) ->
    keep(S, K, erlang:monitor(process, target(S, T))),
    S;
op(S, {demonitor, K}) ->
    erlang:demonitor(key(S, K)),
    S;
op(S, {demonitor, K, Opts}) ->
    R = erlang:demonitor(key(S, K), Opts),
    case lists:member(info, Opts) of
        true -> log(S, {demonitor, K, R});
        false -> S
    end;
op(S, {exit, T, R}) ->
    exit(target(S, T), R),
    S;
op(_S, {die, R}) ->
    exit(R);
op(S, {spawn, L}) ->
    spawned(S, L, spawn(spawn_fun(S, L)));
op(S, {spawn_link, L}) ->
    spawned(S, L, spawn_link(spawn_fun(S, L)));
op(S, {spawn_monitor, L, K}) ->
    {Pid, Ref} = spawn_monitor(spawn_fun(S, L)),
    keep(S, K, Ref),
    spawned(S, L, Pid);
op(S, {register, Name}) ->
    register_op(S, Name, self());
op(S, {register, Name, T}) ->
    register_op(S, Name, target(S, T));
op(S, {unregister, Name}) ->
    try
        unregister(Name),
        S
    catch
        error:badarg -> log(S, {unregister, Name, badarg})
    end;
op(S, {whereis, Name}) ->
    log(S, {whereis, Name, whereis(Name)});
op(S, {send_after, Ms, T, M, K}) ->
    keep(S, K, erlang:send_after(Ms, target(S, T), M)),
    S;
op(S, {cancel_timer, K}) ->
    R = case erlang:cancel_timer(key(S, K)) of
            false -> false;
            Left when is_integer(Left) -> cancelled
        end,
    log(S, {cancel_timer, K, R});
op(S, {info, T, Item}) ->
    V = case erlang:process_info(target(S, T), Item) of
            undefined -> undefined;
            {registered_name, Name} -> Name;
            [] when Item =:= registered_name -> none;
            {_, L} when is_list(L) -> length(L);
            {_, X} -> X
        end,
    log(S, {info, T, Item, V});
op(S = #{dir := Dir, me := L}, stay) ->
    Dir ! {'$stay', L},
    receive after infinity -> S end;
op(S, {sleep, Ms}) ->
    timer:sleep(Ms),
    S.

spawn_fun(#{tab := Tab, dir := Dir, roles := Roles}, L) ->
    fun() -> role_dyn(Tab, Dir, L, Roles) end.

spawned(S = #{tab := Tab, dir := Dir}, L, Pid) ->
    put_role(Tab, L, Pid),
    Dir ! {'$spawned', L, Pid},
    S.

register_op(S, Name, Pid) ->
    try
        register(Name, Pid),
        S
    catch
        error:badarg -> log(S, {register, Name, badarg})
    end.

recv_seq(S, I, N) when I > N ->
    log(S, {seq, N});
recv_seq(S, I, N) ->
    receive
        {m, I} -> recv_seq(S, I + 1, N);
        M -> log(S, {seq_bad, I, M})
    end.

await_queue(S, _N, 0) ->
    log(S, await_timeout);
await_queue(S, N, Tries) ->
    {message_queue_len, Len} = erlang:process_info(self(), message_queue_len),
    if
        Len >= N ->
            S;
        true ->
            receive after 1 -> ok end,
            await_queue(S, N, Tries - 1)
    end.
