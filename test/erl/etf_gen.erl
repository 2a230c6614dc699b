%% etf_gen — the Erlang half of test/test_etf_live.c: seeded random terms of
%% every type with term_to_binary's bytes, ~w text and term order facts, and
%% the check that Erlang decodes libotp's encodings to =:= terms. Files only,
%% no distribution: the C side runs `erl -noshell -run etf_gen gen|check ...`.
-module(etf_gen).
-export([gen/1, check/1]).

%% Flags per record; keep in sync with LIVE_F_* in test_etf_live.c.
-define(F_TEXT, 1).   % ~w text is comparable with libotp's printer
-define(F_PARSE, 2).  % ~w text is a literal (no pids/ports/refs/funs)
-define(F_MINOR1, 4). % the record carries minor version 1 bytes too
-define(F_DETERM, 8). % the expected bytes needed `deterministic` (big maps)

-define(MAGIC, <<"ETFLIVE1">>).
-define(MISSING, 16#FFFFFFFF).

%% ------------------------------------------------------------ entry points

%% erl -run etf_gen gen Seed NTerms NPairs OutFile
gen([SeedS, NS, NPairsS, File]) ->
    run(fun() ->
                Seed = list_to_integer(SeedS),
                rand:seed(exsss, Seed),
                setup_env(),
                N = list_to_integer(NS),
                Terms = [record_term(I) || I <- lists:seq(0, N - 1)],
                Pairs = [pair() || _ <- lists:seq(1, list_to_integer(NPairsS))],
                write_gen(File, Seed, Terms, Pairs)
        end).

%% erl -run etf_gen check GenFile OursFile ResultFile
check([GenFile, OursFile, ResultFile]) ->
    run(fun() -> check(GenFile, OursFile, ResultFile) end).

%% A crash must end the VM with a non-zero status: under -run, an uncaught
%% exception would leave it running until the C side's deadline.
run(F) ->
    try
        F(),
        erlang:halt(0)
    catch
        C:E:St ->
            io:format(standard_error, "etf_gen: ~p:~p~n~p~n", [C, E, St]),
            erlang:halt(3)
    end.

%% ------------------------------------------------------------ the gen file
%%
%% The layout test_etf_live.c reads; integers are u32 big-endian unless
%% said otherwise, a blob is a u32 length and that many bytes:
%%   "ETFLIVE1" seed node:blob nterms record*nterms npairs pair*npairs
%%   record = flags expected:blob text:blob minor1:blob
%%   pair   = a:blob b:blob atext:blob btext:blob lt:u8 gt:u8 eq:u8 exact:u8
%% expected = term_to_binary(T, [deterministic, {minor_version, 2}]), which
%% differs from the plain encoding only for maps of more than 32 keys (Erlang
%% encodes those in hash order, libotp always in key order). minor1 is the
%% same with OTP 25's default minor version 1, empty unless F_MINOR1; text is
%% ~w as UTF-8. In a pair, a and b are encoded like expected, lt = A < B,
%% gt = B < A, eq = A == B, exact = A =:= B.
write_gen(File, Seed, Terms, Pairs) ->
    Node = atom_to_binary(node(), utf8),
    Recs = [encode_record(I, T) || {I, T} <- lists:zip(lists:seq(0, length(Terms) - 1), Terms)],
    PairRecs = [[blob(enc(A)), blob(enc(B)), blob(text(A)), blob(text(B)),
                 bool(A < B), bool(B < A), bool(A == B), bool(A =:= B)]
                || {A, B} <- Pairs],
    ok = file:write_file(File, [?MAGIC, <<Seed:32>>, blob(Node), <<(length(Recs)):32>>, Recs,
                                <<(length(PairRecs)):32>>, PairRecs]).

encode_record(I, T) ->
    Exp = enc(T),
    Plain = term_to_binary(T, [{minor_version, 2}]),
    Text = text(T),
    Minor1 = case I rem 4 of
                 0 -> term_to_binary(T, [deterministic]);
                 _ -> <<>>
             end,
    Flags = flag(text_comparable(T), ?F_TEXT) bor flag(parseable(T), ?F_PARSE)
        bor flag(Minor1 =/= <<>>, ?F_MINOR1) bor flag(Exp =/= Plain, ?F_DETERM),
    [<<Flags:32>>, blob(Exp), blob(Text), blob(Minor1)].

enc(T) -> term_to_binary(T, [deterministic, {minor_version, 2}]).
text(T) -> unicode:characters_to_binary(io_lib:format("~w", [T])).
blob(B) -> [<<(byte_size(B)):32>>, B].
bool(true) -> 1;
bool(false) -> 0.
flag(true, F) -> F;
flag(false, _) -> 0.

%% libotp prints other nodes' pids/ports/refs with its own node numbers (N in
%% <N.ID.Serial> is node-local in Erlang too), and big maps Erlang prints in
%% hash order: neither can match byte for byte. Nor can `fun M:F/A` with a
%% non-ASCII atom: ~w takes that text from erlang:fun_to_list/1, which gives
%% the atoms' UTF-8 bytes as if each were a character ('é' comes out as
%% "Ã©"). Fun environments are not printed, so they are not walked.
text_comparable(T) ->
    all(T, fun(X) when is_pid(X); is_port(X); is_reference(X) -> node(X) =:= node();
              (X) when is_map(X) -> map_size(X) =< 32;
              (X) when is_function(X) -> ascii_export(X);
              (_) -> true
           end).

ascii_export(F) ->
    case erlang:fun_info(F, type) of
        {type, external} ->
            {module, M} = erlang:fun_info(F, module),
            {name, N} = erlang:fun_info(F, name),
            lists:all(fun(C) -> C < 128 end, atom_to_list(M) ++ atom_to_list(N));
        _ -> true
    end.

parseable(T) ->
    all(T, fun(X) -> not (is_pid(X) orelse is_port(X) orelse is_reference(X)
                          orelse is_function(X)) end).

%% True when Pred holds for T and every subterm outside fun environments.
%% Iterative over lists, so 65536-element strings cost no stack.
all(T, Pred) -> all_of([T], Pred).

all_of([], _) -> true;
all_of([T | Rest], Pred) ->
    case Pred(T) of
        false -> false;
        true -> all_of(children(T) ++ Rest, Pred)
    end.

children(T) when is_tuple(T) -> tuple_to_list(T);
children(T) when is_map(T) -> lists:append([[K, V] || {K, V} <- maps:to_list(T)]);
children([H | T]) -> [H, T];
children(_) -> [].

%% ------------------------------------------------------------ the check
%%
%% ours file: n, then n blobs, a length of 16#FFFFFFFF marking a record the
%% C side could not encode (it has failed the test already).
%% Result: "ok N skipped K\n", or "fail M\n" and one paragraph per mismatch.
check(GenFile, OursFile, ResultFile) ->
    {ok, Gen} = file:read_file(GenFile),
    <<"ETFLIVE1", _Seed:32, NL:32, _Node:NL/binary, N:32, Recs/binary>> = Gen,
    Expected = read_records(N, Recs, []),
    {ok, <<M:32, OursBin/binary>>} = file:read_file(OursFile),
    M = N,
    Ours = read_blobs(N, OursBin, []),
    {Ok, Skipped, Fails} = compare_all(lists:zip3(lists:seq(0, N - 1), Expected, Ours), 0, 0, []),
    Out = case Fails of
              [] -> io_lib:format("ok ~b skipped ~b~n", [Ok, Skipped]);
              _ -> [io_lib:format("fail ~b~n", [length(Fails)])
                    | lists:sublist(lists:reverse(Fails), 20)]
          end,
    ok = file:write_file(ResultFile, unicode:characters_to_binary(Out)).

read_records(0, _, Acc) -> lists:reverse(Acc);
read_records(N, <<_Flags:32, EL:32, Exp:EL/binary, TL:32, _:TL/binary, ML:32, _:ML/binary,
                  Rest/binary>>, Acc) ->
    read_records(N - 1, Rest, [Exp | Acc]).

read_blobs(0, _, Acc) -> lists:reverse(Acc);
read_blobs(N, <<?MISSING:32, Rest/binary>>, Acc) -> read_blobs(N - 1, Rest, [missing | Acc]);
read_blobs(N, <<L:32, B:L/binary, Rest/binary>>, Acc) -> read_blobs(N - 1, Rest, [B | Acc]).

compare_all([], Ok, Skipped, Fails) -> {Ok, Skipped, Fails};
compare_all([{_, _, missing} | Rest], Ok, Skipped, Fails) ->
    compare_all(Rest, Ok, Skipped + 1, Fails);
compare_all([{I, Exp, Ours} | Rest], Ok, Skipped, Fails) ->
    T = binary_to_term(Exp),
    Fail = try binary_to_term(Ours) of
               O when O =:= T -> none;
               O -> io_lib:format("record ~b: not =:=~n  erlang: ~ts~n  ours:   ~ts~n"
                                  "  first differing byte: ~b~n",
                                  [I, brief(T), brief(O), first_diff(Exp, Ours)])
           catch
               error:Why -> io_lib:format("record ~b: binary_to_term(ours) failed: ~w~n"
                                          "  erlang: ~ts~n  ours bytes: ~ts~n"
                                          "  first differing byte: ~b~n",
                                          [I, Why, brief(T), brief(Ours), first_diff(Exp, Ours)])
           end,
    case Fail of
        none -> compare_all(Rest, Ok + 1, Skipped, Fails);
        _ -> compare_all(Rest, Ok, Skipped, [Fail | Fails])
    end.

%% At most 400 characters of a term, so a report stays readable.
brief(T) ->
    S = lists:flatten(io_lib:format("~W", [T, 10])),
    case length(S) > 400 of
        true -> lists:sublist(S, 400) ++ "...";
        false -> S
    end.

first_diff(A, B) -> first_diff(A, B, 0).
first_diff(<<X, A/binary>>, <<X, B/binary>>, N) -> first_diff(A, B, N + 1);
first_diff(_, _, N) -> N.

%% ------------------------------------------------------------ local things
%%
%% Pids, ports and refs of this node must come from real processes, ports
%% and references: Erlang rejects made-up local ones.
setup_env() ->
    Spawned = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, 6)],
    Pids = [self() | Spawned] ++ [P || Name <- [init, code_server, user, kernel_sup],
                                       P <- [whereis(Name)], is_pid(P)],
    Port = open_port({spawn, "cat"}, []),
    Ports = [Port | erlang:ports()],
    Refs = [make_ref() || _ <- lists:seq(1, 4)]
        ++ [alias() || _ <- lists:seq(1, 2)]
        ++ [erlang:monitor(process, P, [{alias, explicit_unalias}]) || P <- Spawned]
        ++ [ets:new(etf_gen_tab, [])],
    put(etf_env, {list_to_tuple(Pids), list_to_tuple(Ports), list_to_tuple(Refs)}).

pick(L) when is_list(L) -> lists:nth(rand:uniform(length(L)), L);
pick(T) when is_tuple(T) -> element(rand:uniform(tuple_size(T)), T).

local_pid() -> pick(element(1, get(etf_env))).
local_port() -> pick(element(2, get(etf_env))).
local_ref() -> pick(element(3, get(etf_env))).

%% ------------------------------------------------------------ other nodes
%%
%% Erlang makes no other node's pid from nothing, so build the external
%% forms by hand (NEW_PID_EXT, NEW_PORT_EXT/V4_PORT_EXT, NEWER_REFERENCE_EXT)
%% with full 32-bit (ports: 64-bit) ids and creations.
foreign_node() ->
    atom_to_binary(pick(['other@host', 'n2@some.host', 'b@x', 'z\x{e9}@h\x{f6}st']), utf8).

node_ext() ->
    N = foreign_node(),
    <<118, (byte_size(N)):16, N/binary>>.

u32() -> rand:uniform(1 bsl 32) - 1.
small_u32() -> pick([0, 1, rand:uniform(1000), rand:uniform(1 bsl 15) - 1, u32()]).

foreign_pid() ->
    binary_to_term(<<131, 88, (node_ext())/binary, (small_u32()):32, (small_u32()):32,
                     (small_u32()):32>>).

foreign_port() ->
    case rand:uniform(2) of
        1 -> binary_to_term(<<131, 89, (node_ext())/binary, (small_u32()):32, (u32()):32>>);
        2 ->
            Id = rand:uniform(1 bsl pick([33, 40, 64])) - 1,
            binary_to_term(<<131, 120, (node_ext())/binary, Id:64, (u32()):32>>)
    end.

foreign_ref() ->
    %% Not 0 words: OTP 25 decodes such a ref alone but fails on one inside
    %% a list or a map key, even from its own term_to_binary. Not 1 word in
    %% the keys of a map over 32 keys: OTP 25 then decodes the same bytes to
    %% a broken map (not =:= to itself, lookups fail).
    Words = case get(big_map_keys) of
                true -> 1 + rand:uniform(4);
                _ -> rand:uniform(5)
            end,
    Ids = << <<(small_u32()):32>> || _ <- lists:seq(1, Words) >>,
    binary_to_term(<<131, 90, Words:16, (node_ext())/binary, (u32()):32, Ids/binary>>).

%% ------------------------------------------------------------ leaves

edge_ints() ->
    [0, 1, -1, 255, 256, -255, -256, 2147483647, 2147483648, -2147483648, -2147483649,
     (1 bsl 32) - 1, 1 bsl 32, (1 bsl 59) - 1, 1 bsl 59, -(1 bsl 59), -(1 bsl 59) - 1,
     (1 bsl 60) - 1, 1 bsl 60, -(1 bsl 60), -(1 bsl 60) - 1,
     (1 bsl 62) - 1, 1 bsl 62, -(1 bsl 62), -(1 bsl 62) - 1, (1 bsl 63) - 1, 1 bsl 63,
     -(1 bsl 63), -(1 bsl 63) - 1, (1 bsl 64) - 1, 1 bsl 64, -(1 bsl 64) + 1, -(1 bsl 64),
     1 bsl 53, (1 bsl 53) + 1, -(1 bsl 53) - 1,
     %% 255 magnitude bytes is the last SMALL_BIG_EXT, 256 the first LARGE_BIG_EXT
     (1 bsl 2040) - 1, 1 bsl 2040, -(1 bsl 2040), (1 bsl 2048) - 1, 1 bsl 2048].

int() ->
    case rand:uniform(7) of
        1 -> rand:uniform(256) - 1;
        2 -> rand:uniform(1 bsl 32) - (1 bsl 31) - 1;
        3 -> pick(edge_ints());
        4 -> rand:uniform(1 bsl 64) - (1 bsl 63) - 1;
        5 -> bignum();
        6 -> -bignum();
        7 -> rand:uniform(100) - 50
    end.

%% Up to a few thousand bits, with a random top byte (may be small after all).
bignum() ->
    Bytes = case rand:uniform(4) of
                4 -> rand:uniform(500);
                _ -> rand:uniform(24)
            end,
    binary:decode_unsigned(rand:bytes(Bytes), little).

edge_floats() ->
    [0.0, -0.0, 5.0e-324, -5.0e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
     1.7976931348623157e308, -1.7976931348623157e308, 1.0e21, 1.0e20, 1.0e22, 1.0e23,
     9.999999999999999e22, 0.1, 0.2, 0.3, 1.0, -1.0, 0.5, 1.5, 100.0, 123.456, 1.0e15,
     1.0e16, 1.0e17, 1.0e-5, 1.0e-4, 1.0e-3, 9007199254740992.0, 9007199254740994.0,
     4503599627370495.5, 1.2345678901234567e-300, 3.141592653589793, 2.0e-323, 1.0e308,
     0.30000000000000004, 5.0e-324 * 3, 1.0 / 3.0, 2.5e-8, 7.0e-10].

float() ->
    case rand:uniform(5) of
        1 -> pick(edge_floats());
        2 -> float_bits();
        3 -> float_bits();
        4 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(40) - 20);
        5 -> float(rand:uniform(2000) - 1000)
    end.

%% Any finite double: random bits, retried while they spell NaN or infinity
%% (bit syntax refuses to match those).
float_bits() ->
    case <<(rand:uniform(1 bsl 64) - 1):64>> of
        <<F/float>> -> F;
        _ -> float_bits()
    end.

reserved_atoms() ->
    ['after', 'and', 'andalso', 'band', 'begin', 'bnot', 'bor', 'bsl', 'bsr', 'bxor', 'case',
     'catch', 'cond', 'div', 'end', 'fun', 'if', 'let', 'maybe', 'not', 'of', 'or', 'orelse',
     'receive', 'rem', 'try', 'when', 'xor'].

fixed_atoms() ->
    ['', ok, true, false, undefined, nil, nonode@nohost, 'EXIT', 'Hello', 'a b', 'a@b',
     'a.b', '_x', 'x_', 'aB9@_', '\n', '\t', '\'', '\\', '"', '\x{0}', '\x{7f}', '\x{80}',
     '\x{9f}', '\x{a0}', '\x{a1}', '\x{bf}', '\x{c0}', '\x{d7}', '\x{df}', '\x{e9}',
     '\x{f7}', '\x{ff}', 'a\x{c4}', '\x{2603}', 'a\x{1F600}b', '\x{10FFFF}']
        ++ reserved_atoms().

atom() ->
    case rand:uniform(8) of
        1 -> pick(fixed_atoms());
        2 -> list_to_atom([$a + rand:uniform(26) - 1 | chars(ascii_name, rand:uniform(20) - 1)]);
        3 -> list_to_atom(chars(printable, rand:uniform(12) - 1));
        4 -> list_to_atom(chars(latin1, rand:uniform(10) - 1));
        5 -> list_to_atom(chars(unicode, rand:uniform(10)));
        6 -> list_to_atom(chars(pick([ascii_name, latin1, unicode]), 255));
        7 -> list_to_atom(lists:duplicate(255, pick([$a, 16#e9, 16#2603, 16#1F600])));
        8 -> list_to_atom(chars(ascii_name, rand:uniform(8)))
    end.

chars(Kind, N) -> [char(Kind) || _ <- lists:seq(1, N)].

char(ascii_name) -> pick("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@");
char(printable) -> 31 + rand:uniform(95);
char(latin1) -> rand:uniform(256) - 1;
char(bytes) -> rand:uniform(256) - 1;
char(unicode) ->
    case rand:uniform(4) of
        1 -> rand:uniform(256) - 1;
        2 -> 16#100 + rand:uniform(16#D800 - 16#100) - 1;
        3 -> 16#E000 + rand:uniform(16#10000 - 16#E000) - 1;
        4 -> 16#10000 + rand:uniform(16#100000) - 1
    end.

binary() ->
    case rand:uniform(5) of
        1 -> <<>>;
        2 -> rand:bytes(rand:uniform(64));
        3 -> rand:bytes(64 + rand:uniform(200));
        4 -> list_to_binary(chars(printable, rand:uniform(20)));
        5 -> rand:bytes(rand:uniform(10))
    end.

bitstring() ->
    Bits = rand:uniform(7),
    <<(binary())/binary, (rand:uniform(1 bsl Bits) - 1):Bits>>.

export_fun() ->
    case rand:uniform(3) of
        1 -> pick([fun lists:map/2, fun erlang:self/0, fun ?MODULE:gen/1, fun maps:get/3]);
        _ -> erlang:make_fun(atom(), atom(), rand:uniform(256) - 1)
    end.

leaf() ->
    case rand:uniform(20) of
        1 -> int();
        2 -> int();
        3 -> float();
        4 -> float();
        5 -> atom();
        6 -> atom();
        7 -> chars(bytes, rand:uniform(30));
        8 -> chars(unicode, rand:uniform(10));
        9 -> binary();
        10 -> bitstring();
        11 -> [];
        12 -> pick([local_pid(), local_pid(), foreign_pid()]);
        13 -> pick([local_port(), foreign_port()]);
        14 -> pick([local_ref(), local_ref(), foreign_ref()]);
        15 -> export_fun();
        16 -> {};
        17 -> #{};
        18 -> pick([1, 1.0, -0.0, 0, 0.0, 2, 2.0]);
        19 -> chars(printable, rand:uniform(12) - 1);
        20 -> pick(edge_ints())
    end.

%% ------------------------------------------------------------ containers

term(D) when D =< 0 -> leaf();
term(D) ->
    case rand:uniform(12) of
        N when N =< 4 -> leaf();
        5 -> list_to_tuple(terms(D - 1, rand:uniform(6) - 1));
        6 -> terms(D - 1, rand:uniform(6));
        7 -> improper(D - 1);
        8 -> map(D - 1, rand:uniform(8) - 1);
        9 -> closure(D - 1);
        10 -> {term(D - 1), term(D - 1)};
        11 -> [term(D - 1) | term(D - 1)];
        12 -> map(D - 1, rand:uniform(3))
    end.

terms(D, N) -> [term(D) || _ <- lists:seq(1, N)].

improper(D) ->
    Tail = case leaf() of
               L when is_list(L) -> pick([a, 1, <<>>, {}]); % keep it improper
               L -> L
           end,
    lists:foldl(fun(X, Acc) -> [X | Acc] end, Tail, terms(D, rand:uniform(4))).

%% Mixed key types, with the int/float twins 1 and 1.0 (distinct keys, equal
%% under ==) thrown in often, and compound keys holding such twins.
map(D, N) ->
    Keys = [key(D) || _ <- lists:seq(1, N)]
        ++ case rand:uniform(3) of
               1 -> [1, 1.0];
               2 -> [{1}, {1.0}, [2], [2.0]];
               3 -> []
           end,
    maps:from_list([{K, term(D)} || K <- Keys]).

key(D) ->
    case rand:uniform(4) of
        1 -> term(min(D, 1));
        _ -> leaf()
    end.

%% Closures of this module, with 0 to 3 free variables and arity 0 to 3.
%% Each fun below is its own entry (index/uniq) in the module.
closure(D) ->
    A = term(D),
    B = term(D),
    C = term(D),
    case rand:uniform(6) of
        1 -> fun() -> ok end;
        2 -> fun(X) -> {X, A} end;
        3 -> fun(X, Y) -> {X, Y, A, B} end;
        4 -> fun(X, Y, Z) -> [X, Y, Z, A, B, C] end;
        5 -> fun() -> [A, C] end;
        6 -> fun(X, Y, Z) -> X + Y + Z end
    end.

%% ------------------------------------------------------------ records
%%
%% Every 50th record is one of the rare big shapes; the rest are nested
%% random terms of bounded depth.
record_term(I) when I rem 50 =:= 7 -> rare((I div 50) rem 12);
record_term(I) when I rem 10 =:= 3 -> leaf();
record_term(_) -> term(rand:uniform(5)).

rare(0) -> chars(bytes, 65535);                 % the longest STRING_EXT
rare(1) -> chars(bytes, 65536);                 % one more: a LIST_EXT
rare(2) -> rand:bytes(100 * 1024);
rare(3) -> list_to_tuple(terms(1, 256 + rand:uniform(100)));  % LARGE_TUPLE_EXT
rare(4) ->
    put(big_map_keys, true),
    Keys = [key(1) || _ <- lists:seq(1, 33 + rand:uniform(40))],
    erase(big_map_keys),
    maps:from_list([{K, term(1)} || K <- Keys]);
rare(5) -> nest_list(1000 + rand:uniform(1000));
rare(6) -> nest_tuple(1000 + rand:uniform(1000));
rare(7) -> [terms(2, 300), rare(4)];
rare(8) -> maps:from_list([{I, I * 1.0} || I <- lists:seq(1, 33)] ++ [{1.0, one}, {a, b}]);
rare(9) -> chars(unicode, 5000);
rare(10) -> [chars(bytes, 65535) | chars(bytes, 3)];
rare(11) -> <<(rand:bytes(70000))/binary, 5:3>>.

nest_list(0) -> [];
nest_list(N) -> [nest_list(N - 1)].
nest_tuple(0) -> {};
nest_tuple(N) -> {nest_tuple(N - 1), N}.

%% ------------------------------------------------------------ pairs
%%
%% Pairs for term order and equality: unrelated terms (type order), numbers
%% of mixed representation close to each other, same-type pairs, a term and
%% a small mutation of it, a term and its copy, and a term and its "twin"
%% (integers replaced by equal floats: == but not =:=).
pair() ->
    case rand:uniform(10) of
        1 -> {term(3), term(3)};
        2 -> {num(), num()};
        3 -> N = num(), {N, num_twin(N)};
        4 -> G = pick([fun int/0, fun float/0, fun atom/0, fun binary/0, fun bitstring/0,
                       fun foreign_pid/0, fun local_pid/0, fun foreign_port/0,
                       fun foreign_ref/0, fun local_ref/0, fun export_fun/0,
                       fun() -> closure(1) end, fun() -> map(1, rand:uniform(4)) end,
                       fun() -> list_to_tuple(terms(1, rand:uniform(3))) end,
                       fun() -> chars(bytes, rand:uniform(4)) end]),
             {G(), G()};
        5 -> A = term(3), {A, mutate(A)};
        6 -> A = term(3), {A, binary_to_term(term_to_binary(A))};
        7 -> A = term(3), {A, twin(A)};
        8 -> A = term(2), B = twin(A), pick([{A, B}, {B, A}, {B, mutate(B)}]);
        9 -> A = map(1, rand:uniform(4)), {A, twin(A)};
        10 -> K = rand:uniform(5), V = leaf(), % only the keys differ, by type
              {#{K => V}, #{float(K) => V}}
    end.

%% Integers, floats and bignums near each other, including around 2^53 where
%% a float can no longer tell neighbouring integers apart.
num() ->
    case rand:uniform(6) of
        1 -> int();
        2 -> float();
        3 -> (1 bsl 53) + rand:uniform(5) - 3;
        4 -> float((1 bsl 53) + rand:uniform(5) - 3);
        5 -> pick([1 bsl 1024, -(1 bsl 1024), (1 bsl 1023) * 3, 1.7976931348623157e308,
                   -1.7976931348623157e308, 1 bsl 64, 18446744073709551616.0,
                   1 bsl 63, 9223372036854775808.0, 9223372036854775807]);
        6 -> float(rand:uniform(10))
    end.

num_twin(I) when is_integer(I) ->
    try float(I) catch error:badarg -> I + 1 end;
num_twin(F) when is_float(F), F == trunc(F) -> trunc(F);
num_twin(F) -> F + 1.0.

twin(I) when is_integer(I), abs(I) < (1 bsl 53) -> float(I);
twin(T) when is_tuple(T) -> list_to_tuple([twin(X) || X <- tuple_to_list(T)]);
twin([H | T]) -> [twin(H) | twin(T)];
twin(M) when is_map(M) -> maps:from_list([{twin(K), twin(V)} || {K, V} <- maps:to_list(M)]);
twin(X) -> X.

%% Changes one leaf somewhere inside.
mutate(T) when is_tuple(T), tuple_size(T) > 0 ->
    I = rand:uniform(tuple_size(T)),
    setelement(I, T, mutate(element(I, T)));
mutate([H | T]) ->
    case rand:uniform(2) of
        1 -> [mutate(H) | T];
        2 -> [H | mutate(T)]
    end;
mutate(M) when is_map(M), map_size(M) > 0 ->
    {K, V} = pick(maps:to_list(M)),
    case rand:uniform(3) of
        1 -> M#{K := mutate(V)};
        2 -> maps:put(mutate(K), V, maps:remove(K, M));
        3 -> maps:remove(K, M)
    end;
mutate(I) when is_integer(I) -> I + pick([-1, 1, 1 bsl 70]);
mutate(F) when is_float(F) -> pick([F / 2, -F, F + 1.0, float(trunc(F))]);
mutate(B) when is_binary(B), byte_size(B) > 0 ->
    <<B/binary, (rand:uniform(256) - 1)>>;
mutate(_) -> leaf().
