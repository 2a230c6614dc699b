%% bench_codec.erl — the Erlang side of perf/bench_codec: times
%% term_to_binary(T, [{minor_version,2}]), term_to_iovec(T, [{minor_version,2}])
%% and binary_to_term(B) on the mix the C program wrote to a file. Started
%% once by that program (erl -noshell -run bench_codec main File BudgetMs);
%% runs one round per "round" line on stdin and answers with
%% "enc|enc_iov|dec Name NsPerOp" lines, then "done".
-module(bench_codec).
-export([main/1]).

-define(OPTS, [{minor_version, 2}]).

main([File, BudgetMs]) ->
    {ok, Bin} = file:read_file(File),
    Budget = list_to_integer(BudgetMs) * 1000000,
    Warm = min(Budget div 4, 5000000),
    Items = [{Name, B, binary_to_term(B)} || {Name, B} <- parse(Bin)],
    [io:format("check ~s ~s~n", [Name, same_bytes(T, B)]) || {Name, B, T} <- Items],
    [io:format("check_iov ~s ~s~n", [Name, same_iov_bytes(T, B)]) || {Name, B, T} <- Items],
    Calibrated = [{Name, B, T, calibrate(enc, T, Warm, Budget), calibrate(enc_iov, T, Warm, Budget),
                   calibrate(dec, B, Warm, Budget)}
                  || {Name, B, T} <- Items],
    io:format("ready~n"),
    serve(Calibrated).

%% The file holds, per item: <<NameLen:16, Name, Len:32, Bytes>>. Each payload
%% is copied out so it is a binary of its own, not a slice of the file.
parse(<<>>) -> [];
parse(<<NL:16, Name:NL/binary, L:32, B:L/binary, Rest/binary>>) ->
    [{Name, binary:copy(B)} | parse(Rest)].

same_bytes(T, B) ->
    case term_to_binary(T, ?OPTS) =:= B of
        true -> same;
        false -> diff
    end.

%% term_to_iovec's binaries, concatenated, are term_to_binary's bytes.
same_iov_bytes(T, B) ->
    case iolist_to_binary(term_to_iovec(T, ?OPTS)) =:= B of
        true -> same;
        false -> diff
    end.

serve(Items) ->
    case io:get_line("") of
        "round\n" ->
            [begin
                 io:format("enc ~s ~.3f~n", [Name, time_loop(enc, T, NE)]),
                 io:format("enc_iov ~s ~.3f~n", [Name, time_loop(enc_iov, T, NI)]),
                 io:format("dec ~s ~.3f~n", [Name, time_loop(dec, B, ND)])
             end || {Name, B, T, NE, NI, ND} <- Items],
            io:format("done~n"),
            serve(Items);
        _ ->
            halt(0)
    end.

%% Doubles the batch until it lasts Warm ns (that is the warm-up), times one
%% more batch of that length now that caches are warm, then sizes the batch
%% to last Budget ns. The same procedure as the C side's.
calibrate(Op, Arg, Warm, Budget) ->
    Per = warm_up(Op, Arg, Warm, 1),
    Per2 = time_loop(Op, Arg, round(Warm / Per) + 1),
    max(1, round(Budget / Per2)).

warm_up(Op, Arg, Warm, N) ->
    T0 = erlang:monotonic_time(nanosecond),
    _ = loop(Op, N, Arg),
    Dt = erlang:monotonic_time(nanosecond) - T0,
    if
        Dt >= Warm -> Dt / N;
        true -> warm_up(Op, Arg, Warm, N * 2)
    end.

%% ns per operation. A collection first, so one measurement does not pay
%% for the previous one's garbage.
time_loop(Op, Arg, N) ->
    erlang:garbage_collect(),
    T0 = erlang:monotonic_time(nanosecond),
    _ = loop(Op, N, Arg),
    (erlang:monotonic_time(nanosecond) - T0) / N.

%% The loop is chosen by an atom, not passed in as `fun enc_loop/3`: OTP
%% 25.2.3's compiler miscompiles a list comprehension over a function that
%% calls such a fun and ignores its result (the comprehension's result and
%% the code after it were lost).
loop(enc, N, T) -> enc_loop(N, T, 0);
loop(enc_iov, N, T) -> enc_iov_loop(N, T, 0);
loop(dec, N, B) -> dec_loop(N, B, 0).

%% Each iteration's result feeds the accumulator, so no call can be dropped.
enc_loop(0, _T, Acc) -> Acc;
enc_loop(N, T, Acc) -> enc_loop(N - 1, T, Acc + byte_size(term_to_binary(T, ?OPTS))).

%% term_to_iovec returns a list of binaries, large refc binaries referenced
%% rather than copied; iolist_size/1 walks that short list (the C side sums
%% its iovec lengths the same way).
enc_iov_loop(0, _T, Acc) -> Acc;
enc_iov_loop(N, T, Acc) -> enc_iov_loop(N - 1, T, Acc + iolist_size(term_to_iovec(T, ?OPTS))).

dec_loop(0, _B, Acc) -> Acc;
dec_loop(N, B, _Acc) -> dec_loop(N - 1, B, binary_to_term(B)).
