/* test_text.c — terms as text (codec/text_print.c, codec/text_parse.c):
 * ~w and ~p output checked against tables produced by Erlang/OTP 25's
 * io_lib:format, parse/print round trips, parse errors with their offsets,
 * million-deep nesting, otp_format holes and otp_match patterns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "otp.h"
#include "term_internal.h"

/* Parses `in`, failing the test with the parser's message if it does not. */
static otp_term parse_ok(otp_arena *a, const char *in)
{
    otp_term t = OTP_NONE;
    otp_error err;
    int rc = otp_parse(a, in, strlen(in), &t, NULL, &err);
    if (rc != 0)
        fail_msg("parse of <%s> failed: %s", in, err.message);
    return t;
}

/* ~w of t as a NUL-terminated string owned by the caller's buffer. */
static const char *print_w(otp_buf *b, otp_term t, const otp_print_opts *o)
{
    b->len = 0;
    assert_int_equal(otp_print(b, t, o), 0);
    assert_int_equal(otp_buf_reserve(b, 1), 0);
    b->data[b->len] = 0;
    return (const char *)b->data;
}

static const char *print_p(otp_buf *b, otp_term t, const otp_print_opts *o)
{
    b->len = 0;
    assert_int_equal(otp_print_pretty(b, t, o), 0);
    assert_int_equal(otp_buf_reserve(b, 1), 0);
    b->data[b->len] = 0;
    return (const char *)b->data;
}

/* (Erlang text, io_lib:format("~w", [erl_parse:parse_term(Text)])) as
 * OTP 25 gives them, UTF-8. */
static const struct {
    const char *in, *w;
} w_table[] = {
    {"0", "0"},
    {"-5", "-5"},
    {"+3", "3"},
    {"1_000", "1000"},
    {"16#FF", "255"},
    {"2#101", "5"},
    {"36#zz", "1295"},
    {"16#ff_ff", "65535"},
    {"$a", "97"},
    {"$\\n", "10"},
    {"$\\x{3bb}", "955"},
    {"$\\101", "65"},
    {"$\\s", "32"},
    {"-$a", "-97"},
    {"4611686018427387903", "4611686018427387903"},
    {"4611686018427387904", "4611686018427387904"},
    {"-4611686018427387904", "-4611686018427387904"},
    {"-4611686018427387905", "-4611686018427387905"},
    {"18446744073709551616", "18446744073709551616"},
    {"-18446744073709551616", "-18446744073709551616"},
    {"340282366920938463463374607431768211456", "340282366920938463463374607431768211456"},
    {"123456789012345678901234567890123456789012345678901234567890",
     "123456789012345678901234567890123456789012345678901234567890"},
    {"-99999999999999999999", "-99999999999999999999"},
    {"16#FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
     "1461501637330902918203684832716283019655932542975"},
    {"1.0e10", "1.0e10"},
    {"1.0e21", "1.0e21"},
    {"1.2345678901234568e20", "1.2345678901234568e20"},
    {"0.1", "0.1"},
    {"0.0001", "0.0001"},
    {"1.5e-5", "1.5e-5"},
    {"100.0", "100.0"},
    {"1.0e15", "1.0e15"},
    {"1.0e16", "1.0e16"},
    {"2.0e20", "2.0e20"},
    {"1.234e-7", "1.234e-7"},
    {"5.0e-324", "5.0e-324"},
    {"1.7976931348623157e308", "1.7976931348623157e308"},
    {"-0.0", "-0.0"},
    {"3.14", "3.14"},
    {"1.5", "1.5"},
    {"-2.0e-3", "-0.002"},
    {"1.0E10", "1.0e10"},
    {"0.5e-1_0", "5.0e-11"},
    {"9007199254740992.0", "9.007199254740992e15"},
    {"123456.0", "123456.0"},
    {"1000.0", "1.0e3"},
    {"0.001234", "0.001234"},
    {"0.00012", "1.2e-4"},
    {"2.2250738585072014e-308", "2.2250738585072014e-308"},
    {"1.0e-320", "1.0e-320"},
    {"ok", "ok"},
    {"'hello world'", "'hello world'"},
    {"'\303\251'", "\303\251"},
    {"'\316\273x'", "'\\x{3BB}x'"},
    {"'a\\n\\0\\x7f'", "'a\\n\\000\\d'"},
    {"'and'", "'and'"},
    {"'A'", "'A'"},
    {"'_a'", "'_a'"},
    {"a@b", "a@b"},
    {"'a-b'", "'a-b'"},
    {"''", "''"},
    {"'\303\237'", "\303\237"},
    {"'\303\277\303\267'", "'\303\277\303\267'"},
    {"'a\303\200'", "a\303\200"},
    {"'a\303\227'", "'a\303\227'"},
    {"'\\x{A0}'", "'\302\240'"},
    {"'\\x{9F}'", "'\\237'"},
    {"'it\\'s'", "'it\\'s'"},
    {"'a\\\\b'", "'a\\\\b'"},
    {"'a\"b'", "'a\"b'"},
    {"true", "true"},
    {"maybe", "maybe"},
    {"'else'", "else"},
    {"'\316\251'", "'\\x{3A9}'"},
    {"'\303\2511@_Z'", "\303\2511@_Z"},
    {"'\\e\\d\\s'", "'\\e\\d '"},
    {"'\\x{10FFFF}'", "'\\x{10FFFF}'"},
    {"foo@bar", "foo@bar"},
    {"[]", "[]"},
    {"[1,2,3]", "[1,2,3]"},
    {"\"abc\"", "[97,98,99]"},
    {"\"a\\nb\"", "[97,10,98]"},
    {"\"ab\" \"cd\"", "[97,98,99,100]"},
    {"\"\\x41\\x{41}\\101\\1\\18\"", "[65,65,65,1,1,56]"},
    {"\"\\^a\\^z\\^?\"", "[1,26,31]"},
    {"\"\\z\\q\"", "[122,113]"},
    {"[a|b]", "[a|b]"},
    {"[1,2|3]", "[1,2|3]"},
    {"[[]]", "[[]]"},
    {"{}", "{}"},
    {"{a,b}", "{a,b}"},
    {"{a,{b,{c}}}", "{a,{b,{c}}}"},
    {"#{}", "#{}"},
    {"#{1 => 2, a => 1}", "#{1 => 2,a => 1}"},
    {"#{a => 1, a => 2}", "#{a => 2}"},
    {"#{a => 1, b => 2, a => 3}", "#{a => 3,b => 2}"},
    {"#{1 => a, 1.0 => b}", "#{1 => a,1.0 => b}"},
    {"#{{x,y} => [1], \"s\" => <<\"b\">>}", "#{{x,y} => [1],[115] => <<98>>}"},
    {"<<>>", "<<>>"},
    {"<< >>", "<<>>"},
    {"<<\"abc\">>", "<<97,98,99>>"},
    {"<<1,2,3>>", "<<1,2,3>>"},
    {"<<1:3>>", "<<1:3>>"},
    {"<<255,7:4>>", "<<255,7:4>>"},
    {"<<300:16>>", "<<1,44>>"},
    {"<<\"\303\251\"/utf8>>", "<<195,169>>"},
    {"<<\"\316\273\">>", "<<187>>"},
    {"<<1.5/float>>", "<<63,248,0,0,0,0,0,0>>"},
    {"<<1.5:32/float>>", "<<63,192,0,0>>"},
    {"<<1:16/float>>", "<<60,0>>"},
    {"<<1.0e10:16/float>>", "<<124,0>>"},
    {"<<1.0e300:32/float>>", "<<127,128,0,0>>"},
    {"<<300:16/little>>", "<<44,1>>"},
    {"<<-1:12>>", "<<255,15:4>>"},
    {"<<\"ab\":16>>", "<<0,97,0,98>>"},
    {"<<1:3, 2:5/unit:2>>", "<<32,2:5>>"},
    {"<<<<1,2>>/binary,3>>", "<<1,2,3>>"},
    {"<<16#123:12/little>>", "<<35,1:4>>"},
    {"<<-2:12/little>>", "<<254,15:4>>"},
    {"<<1:3, 16#123:12/little>>", "<<36,49:7>>"},
    {"<<65536/utf16>>", "<<216,0,220,0>>"},
    {"<<\"ab\"/utf16-little>>", "<<97,0,98,0>>"},
    {"<<$a/utf32>>", "<<0,0,0,97>>"},
    {"<<1:8/unit:3>>", "<<0,0,1>>"},
    {"<<<<1,2>>:1/binary>>", "<<1>>"},
    {"<<<<1,2>>:3/bits>>", "<<0:3>>"},
    {"<<1:16/signed-little-integer>>", "<<1,0>>"},
    {"<<1.5:64/float-little>>", "<<0,0,0,0,0,0,248,63>>"},
    {"<<\"a\"/float>>", "<<64,88,64,0,0,0,0,0>>"},
    {"<<-$a>>", "<<159>>"},
    {"<<1:3,1:8/unit:1>>", "<<32,1:3>>"},
    {"<<1:257/unit:1>>", "<<0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1:1>>"},
    {"<<1:0>>", "<<>>"},
    {"(1)", "1"},
    {"[(1)]", "[1]"},
    {"{(a), [b]}", "{a,[b]}"},
    {"{ok, [1, 2], <<\"x\">>, #{k => \"v\"}}", "{ok,[1,2],<<120>>,#{k => [118]}}"},
};

/* (Erlang text, io_lib:format("~p", [Term])) from OTP 25. */
static const struct {
    const char *in, *p;
} p_table[] = {
    {"\"abc\"", "\"abc\""},
    {"[]", "[]"},
    {"\"a\\nb\\t\\\"q\\\"\"", "\"a\\nb\\t\\\"q\\\"\""},
    {"<<\"abc\">>", "<<\"abc\">>"},
    {"<<\"\303\251\">>", "<<\"\303\251\">>"},
    {"\"\303\251\"", "\"\303\251\""},
    {"[955]", "[955]"},
    {"'\316\273'", "'\\x{3BB}'"},
    {"<<\"ab\", 1:3>>", "<<97,98,1:3>>"},
    {"{\"x\", <<>>}", "{\"x\",<<>>}"},
    {"#{\"a\" => <<\"b\">>}", "#{\"a\" => <<\"b\">>}"},
    {"[1|2]", "[1|2]"},
    {"\"\\e\\d\"", "[27,127]"},
    {"<<200>>", "<<\"\303\210\">>"},
    {"<<\"\\t\\n\">>", "<<\"\\t\\n\">>"},
    {"[<<\"abc\">>, \"abc\", [], \"a\\nb\", <<1,2,3>>]",
     "[<<\"abc\">>,\"abc\",[],\"a\\nb\",<<1,2,3>>]"},
    {"{ok, \"hello\", [1,2,3], #{name => <<\"joe\">>}}",
     "{ok,\"hello\",[1,2,3],#{name => <<\"joe\">>}}"},
    {"[[97,98],[1,2]]", "[\"ab\",[1,2]]"},
    {"[97,98|99]", "[97,98|99]"},
    {"{aaaaaaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb, cccccccccccccccccccccccccccccc, "
     "ddddddd}",
     "{aaaaaaaaaaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb,\n                          "
     "cccccccccccccccccccccccccccccc,ddddddd}"},
    {"[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33]",
     "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,\n "
     "29,30,31,32,33]"},
    {"#{aaaaaaaaaaaaaaaaaaaa => 1, bbbbbbbbbbbbbbbbbbbbbb => [1,2,3], cccccccccccccccccc => {x, y, "
     "\"zzzzzzzzzzzz\"}}",
     "#{aaaaaaaaaaaaaaaaaaaa => 1,\n  bbbbbbbbbbbbbbbbbbbbbb => [1,2,3],\n  cccccccccccccccccc => "
     "{x,y,\"zzzzzzzzzzzz\"}}"},
    {"{state, [{key, value}, {other_key, \"other value\"}], #{config => #{nested => "
     "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}}}",
     "{state,[{key,value},{other_key,\"other value\"}],\n       #{config => #{nested => "
     "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}}}"},
    {"<<0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,"
     "33,34,35,36,37,38,39,40>>",
     "<<0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,\n  "
     "29,30,31,32,33,34,35,36,37,38,39,40>>"},
    {"[{a_rather_long_tag_name_here, \"some string value that is long\", 12345678901234567890}, "
     "{x, y}]",
     "[{a_rather_long_tag_name_here,\"some string value that is long\",\n                          "
     "    12345678901234567890},\n {x,y}]"},
    {"{[1,2,3], {a, b, c}, \"a long string that makes the tuple longer than the line width\"}",
     "{[1,2,3],\n {a,b,c},\n \"a long string that makes the tuple longer than the line width\"}"},
};

static void test_print_w_table(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_buf b = {0};
    for (size_t i = 0; i < sizeof w_table / sizeof *w_table; i++) {
        otp_term t = parse_ok(a, w_table[i].in);
        const char *got = print_w(&b, t, NULL);
        if (strcmp(got, w_table[i].w) != 0)
            fail_msg("~w of <%s>: want <%s> got <%s>", w_table[i].in, w_table[i].w, got);
        /* What ~w prints reads back as the same term. */
        otp_term u = parse_ok(a, w_table[i].w);
        if (!otp_exact_eq(t, u))
            fail_msg("<%s> does not read back as <%s>", w_table[i].w, w_table[i].in);
    }
    otp_buf_free(&b);
    otp_arena_free(a);
}

static void test_print_p_table(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_buf b = {0};
    for (size_t i = 0; i < sizeof p_table / sizeof *p_table; i++) {
        otp_term t = parse_ok(a, p_table[i].in);
        const char *got = print_p(&b, t, NULL);
        if (strcmp(got, p_table[i].p) != 0)
            fail_msg("~p of <%s>:\nwant <%s>\ngot  <%s>", p_table[i].in, p_table[i].p, got);
    }
    /* A narrower line breaks earlier. */
    otp_print_opts o = {.width = 20};
    otp_term t = parse_ok(a, "[alpha, beta, gamma, delta, epsilon]");
    assert_string_equal(print_p(&b, t, &o), "[alpha,beta,gamma,\n delta,epsilon]");
    otp_buf_free(&b);
    otp_arena_free(a);
}

static void test_print_identities(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_buf b = {0};
    otp_term me = otp_atom("me@host"), other = otp_atom("other@host");
    otp_print_opts local = {.local_node = me};
    otp_print_opts names = {.local_node = me, .node_names = true};
    char want[128];

    otp_term pid = otp_pid(a, me, 85, 0, 1);
    assert_string_equal(print_w(&b, pid, &local), "<0.85.0>");
    otp_term rpid = otp_pid(a, other, 7, 3, 1);
    snprintf(want, sizeof want, "<%u.7.3>", otp__atom_index(other));
    assert_string_equal(print_w(&b, rpid, &local), want);
    /* The node as its ~w form: quoted only when the atom needs it. */
    assert_string_equal(print_w(&b, rpid, &names), "<other@host.7.3>");
    assert_string_equal(print_w(&b, otp_pid(a, otp_atom("n-1@h"), 7, 3, 1), &names),
                        "<'n-1@h'.7.3>");
    /* Without a local node every pid is somebody else's. */
    snprintf(want, sizeof want, "<%u.85.0>", otp__atom_index(me));
    assert_string_equal(print_w(&b, pid, NULL), want);

    assert_string_equal(print_w(&b, otp_port(a, me, 5, 1), &local), "#Port<0.5>");
    assert_string_equal(print_w(&b, otp_port(a, other, 5, 1), &names), "#Port<other@host.5>");

    /* Wire words 00012160 fa700001 ed862d27 print in reverse (dist doc §5.8). */
    const uint32_t words[3] = {0x00012160, 0xfa700001, 0xed862d27};
    otp_term ref = otp_ref(a, me, 1, words, 3);
    assert_string_equal(print_w(&b, ref, &local), "#Ref<0.3984993575.4201644033.74080>");

    assert_string_equal(print_w(&b, otp_export(a, otp_atom("lists"), otp_atom("map"), 2), NULL),
                        "fun lists:map/2");
    assert_string_equal(print_w(&b, otp_export(a, otp_atom("A"), otp_atom("b c"), 0), NULL),
                        "fun 'A':'b c'/0");
    /* Export funs take the emulator's quoting (erlang:fun_to_list/1), not
     * io_lib's; each pair below is what OTP 25 prints. */
    static const struct {
        const char *mod, *fun, *w;
    } ex[] = {
        {"Foo", "after", "fun 'Foo':after/1"}, /* reserved words stay bare */
        {"a@b", "x y", "fun 'a@b':'x y'/1"},   /* '@' forces quotes */
        {"it's", "\n\t\\", "fun 'it\\'s':'\\n\\t\\\\'/1"},
        {"a\x7f\x01", "b\xc3\x88\xc3\xbf", "fun 'a\x7f\\001':b\xc3\x88\xc3\xbf/1"},
        {"a\xc2\x82", "\xce\xbb", "fun 'a\\202':'\xce\xbb'/1"}, /* U+82, U+3BB */
        {"", "\xc3\xbf", "fun '':\xc3\xbf/1"},
    };
    for (size_t i = 0; i < sizeof ex / sizeof *ex; i++) {
        otp_term m = OTP_NONE, fn = OTP_NONE;
        assert_int_equal(otp_atom_intern(ex[i].mod, strlen(ex[i].mod), &m), 0);
        assert_int_equal(otp_atom_intern(ex[i].fun, strlen(ex[i].fun), &fn), 0);
        assert_string_equal(print_w(&b, otp_export(a, m, fn, 1), NULL), ex[i].w);
    }

    /* fun(X) -> X + 1 end in module g: io_lib prints #Fun<g.0.4450233>. */
    otp__fun *f = otp_arena_alloc(a, sizeof(otp__fun));
    memset(f, 0, sizeof *f);
    f->hdr = otp__mkhdr(OTP__H_FUN, 0);
    f->module = otp_atom("g");
    f->old_index = otp_small(0);
    f->old_uniq = otp_small(4450233);
    f->pid = pid;
    f->arity = 1;
    assert_string_equal(print_w(&b, otp__boxed(f), NULL), "#Fun<g.0.4450233>");

    /* ~p prints them the same way. */
    assert_string_equal(print_p(&b, OTP_LIST(a, pid, ref), &local),
                        "[<0.85.0>,#Ref<0.3984993575.4201644033.74080>]");

    /* OTP_NONE inside a term is refused and nothing is appended. */
    otp_term bad = otp_tuple_new(a, 2);
    otp_tuple_set_init(bad, 0, OTP_ATOM_OK);
    otp_tuple_set_init(bad, 1, OTP_NONE);
    b.len = 0;
    assert_int_equal(otp_print(&b, bad, NULL), -OTP_EBADARG);
    assert_int_equal(b.len, 0);
    assert_int_equal(otp_print_pretty(&b, bad, NULL), -OTP_EBADARG);
    assert_int_equal(b.len, 0);

    assert_string_equal(otp_sprint(a, OTP_TUPLE(a, OTP_ATOM_OK, otp_int(a, -1))), "{ok,-1}");
    otp_buf_free(&b);
    otp_arena_free(a);
}

/* Decimal in and decimal out are independent code paths (limb
 * multiplication vs. division by 10^19), so agreeing on many sizes, around
 * every 10^19 boundary, checks both. */
static void test_bignums(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_buf b = {0};
    char text[700];
    for (int digits = 1; digits <= 600; digits++) {
        for (int variant = 0; variant < 3; variant++) {
            int n = 0;
            text[n++] = variant == 2 ? '-' : '9';
            if (variant == 2)
                text[n++] = '1';
            for (int i = 1; i < digits; i++)
                text[n++] = variant == 0 ? '9' : (char)('0' + (i * 7) % 10);
            text[n] = 0;
            otp_term t = parse_ok(a, text);
            assert_string_equal(print_w(&b, t, NULL), text);
        }
    }
    /* Powers of two across limb boundaries. */
    otp_term two = otp_small(1);
    for (int k = 0; k < 300; k++) {
        uint8_t le[40] = {0};
        le[k / 8] = (uint8_t)(1u << (k % 8));
        two = otp_bignum_from_bytes(a, k % 2, le, (size_t)(k / 8 + 1));
        const char *s = print_w(&b, two, NULL);
        otp_term back = parse_ok(a, s);
        assert_true(otp_exact_eq(two, back));
    }
    otp_buf_free(&b);
    otp_arena_free(a);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Every finite double prints in a form that reads back exactly; the
 * exact form is checked against Erlang in the tables above (and was checked
 * against 1.25M Erlang-printed doubles while writing the printer). */
static void test_float_roundtrip(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_buf b = {0};
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = rng();
        if (i % 4 == 0)
            bits &= ~(UINT64_C(0x7ff) << 52); /* subnormals */
        double d;
        memcpy(&d, &bits, 8);
        if (!isfinite(d))
            continue;
        const char *s = print_w(&b, otp_float(a, d), NULL);
        otp_term t = parse_ok(a, s);
        double back;
        assert_int_equal(otp_get_double(t, &back), 0);
        if (memcmp(&back, &d, 8) != 0)
            fail_msg("%.17g printed as %s reads back as %.17g", d, s, back);
    }
    otp_buf_free(&b);
    otp_arena_free(a);
}

static const struct {
    const char *in;
    size_t offset;
    const char *msg; /* a substring of the message */
} parse_errors[] = {
    {"{a, b]", 5, "offset 5: expected ',' or '}' in tuple, got ']'"},
    {"[1,2", 4, "expected ',', '|' or ']' in list, got end of input"},
    {"[1|2,3]", 4, "expected ']' after the tail of a list, got ','"},
    {"[a|b|c]", 4, "expected ']' after the tail of a list, got '|'"},
    {"#{a => }", 7, "expected a term, got '}'"},
    {"#{a, b}", 3, "expected '=>' in map, got ','"},
    {"#{a := 1}", 4, "expected '=>' in map, got ':='"},
    {"#[1]", 1, "expected '{' after '#', got '['"},
    {"{a,}", 3, "expected a term, got '}'"},
    {"", 0, "expected a term, got end of input"},
    {"  % only a comment\n", 19, "expected a term, got end of input"},
    {"1 2", 2, "expected the end of input after the term, got '2'"},
    {"ok. more", 4, "expected the end of input after the term, got 'more'"},
    {"\"abc", 0, "unterminated string"},
    {"[\"abc\\\"]", 1, "unterminated string"},
    {"'abc", 0, "unterminated quoted atom"},
    {"1.e5", 1, "unexpected '.'"},
    {"1.5e", 0, "malformed float"},
    {"1.0e309", 0, "float out of range"},
    {"and", 0, "reserved word 'and' must be quoted"},
    {"{ok, Foo}", 5, "variable 'Foo'"},
    {"{_}", 1, "variable '_'"},
    {"37#1", 0, "integer base must be 2..36"},
    {"2#2", 2, "expected digits of base 2"},
    {"2#12", 3, "'2' is not a digit of base 2"},
    {"$", 0, "'$' at end of input"},
    {"\"\\x{D800}\"", 1, "surrogate"},
    {"'\\x{110000}'", 1, "above 10FFFF"},
    {"\"\\xg\"", 1, "malformed \\x escape"},
    {"\"\\x{41\"", 1, "malformed \\x{...} escape"},
    {"[\xff]", 1, "invalid UTF-8"},
    {"\"a\xc3\"", 2, "invalid UTF-8"},
    {"{a, \xc3\x97}", 4, "unexpected character '\xc3\x97'"},
    {"<<a>>", 2, "an integer segment needs an integer"},
    {"<<1.5/integer>>", 2, "an integer segment needs an integer"},
    {"<<1:3/binary>>", 2, "a binary segment needs a bitstring"},
    {"<<\"ab\"/binary>>", 2, "a string cannot be a binary"},
    {"<<<<1:3>>/binary>>", 2, "not a multiple of the unit"},
    {"<<<<1:3>>:4/bits>>", 2, "size larger than the value"},
    {"<<1.5:8/float>>", 2, "float size must be 16, 32 or 64"},
    {"<<1/utf8-unit:8>>", 2, "utf8/16/32 take no size or unit"},
    {"<<16#110000/utf8>>", 2, "not a Unicode code point"},
    {"<<1:8/big-little>>", 10, "conflicting binary type specifier 'little'"},
    {"<<1/foo>>", 4, "unknown binary type specifier 'foo'"},
    {"<<1:1/unit:0>>", 6, "expected unit:1..256"},
    {"<<1:x>>", 4, "expected a segment size (an integer), got 'x'"},
    {"<<0:999999999999>>", 4, "binary segment size too large"},
    {"<<1 2>>", 4, "expected ',' or '>>' in binary, got '2'"},
    {"- a", 2, "expected a number after '-', got 'a'"},
    {"(1", 2, "expected ')', got end of input"},
    {"~i", 0, "unexpected '~'"},
    {"a = b", 2, "unexpected '='"},
};

static void test_parse_errors(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    for (size_t i = 0; i < sizeof parse_errors / sizeof *parse_errors; i++) {
        otp_term t = OTP_ATOM_OK;
        otp_error err;
        const char *in = parse_errors[i].in;
        int rc = otp_parse(a, in, strlen(in), &t, NULL, &err);
        if (rc != -OTP_EPARSE)
            fail_msg("<%s> parsed (rc %d)", in, rc);
        assert_int_equal(t, OTP_NONE);
        assert_int_equal(err.code, -OTP_EPARSE);
        if (err.offset != parse_errors[i].offset || !strstr(err.message, parse_errors[i].msg))
            fail_msg("<%s>: want offset %zu and '%s', got offset %zu: '%s'", in,
                     parse_errors[i].offset, parse_errors[i].msg, err.offset, err.message);
    }
    /* Atoms stop at 255 characters. */
    char atom[300];
    memset(atom, 'a', 256);
    atom[256] = 0;
    assert_int_equal(otp_parse_str(a, atom), OTP_NONE);
    atom[255] = 0;
    assert_true(otp_is_atom(otp_parse_str(a, atom)));
    otp_arena_free(a);
}

static void test_parse_forms(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_buf b = {0};
    /* Whitespace, comments and the final dot. */
    otp_term t = parse_ok(a, "  % a comment\n {ok, % another\n [1,\t2]} . % trailing\n");
    assert_string_equal(print_w(&b, t, NULL), "{ok,[1,2]}");
    /* With `used`, parsing stops after the term and its dot. */
    const char *two = "{a, 1}. [b]. ";
    size_t used = 0;
    assert_int_equal(otp_parse(a, two, strlen(two), &t, &used, NULL), 0);
    assert_int_equal(used, 7);
    assert_int_equal(otp_parse(a, two + used, strlen(two) - used, &t, &used, NULL), 0);
    assert_string_equal(print_w(&b, t, NULL), "[b]");
    assert_int_equal(used, 5);
    assert_int_equal(otp_parse(a, "x y", 3, &t, &used, NULL), 0);
    assert_int_equal(used, 1);
    /* A dot glued to a term that could continue is not an end dot. */
    assert_true(otp_is_float(otp_parse_str(a, "1.5.")));
    assert_int_equal(otp_parse_str(a, "1."), otp_small(1));
    /* Latin-1 letters in bare atoms; U+00A0 is whitespace, as in erl_scan. */
    assert_string_equal(otp_atom_cstr(parse_ok(a, "\xc3\xa9t\xc3\xa9")), "\xc3\xa9t\xc3\xa9");
    assert_int_equal(parse_ok(a, "\xc2\xa0ok"), OTP_ATOM_OK);
    /* Strings are code points; adjacent strings join, also across comments. */
    assert_string_equal(print_w(&b, parse_ok(a, "\"\xce\xbb\" % c\n \"\\x{1F600}\""), NULL),
                        "[955,128512]");
    assert_string_equal(
        print_w(&b, parse_ok(a, "\"\\b\\d\\e\\f\\n\\r\\s\\t\\v\\\\\\\"\\'\""), NULL),
        "[8,127,27,12,10,13,32,9,11,92,34,39]");
    assert_string_equal(print_w(&b, parse_ok(a, "[$\\^a, $\\^Z, $\\777, $\\x{10FFFF}, $ ]"), NULL),
                        "[1,26,511,1114111,32]");
    assert_int_equal(otp_parse_str(a, "true"), OTP_ATOM_TRUE);
    assert_true(otp_parse_str(a, NULL) == OTP_NONE);
    otp_buf_free(&b);
    otp_arena_free(a);
}

/* A million levels, in and out, without touching the C stack's depth. */
static void test_deep_nesting(void **state)
{
    (void)state;
    const size_t depth = 1000000;
    for (int kind = 0; kind < 3; kind++) {
        const char *open = kind == 0 ? "[" : kind == 1 ? "{" : "#{a=>";
        const char *close = kind == 0 ? "]" : "}";
        size_t ol = strlen(open), n = depth * (ol + 1) + 2;
        char *text = malloc(n + 1), *p = text;
        assert_non_null(text);
        for (size_t i = 0; i < depth; i++, p += ol)
            memcpy(p, open, ol);
        *p++ = '1';
        for (size_t i = 0; i < depth; i++)
            *p++ = *close;
        *p = 0;
        otp_arena *a = otp_arena_new();
        otp_term t = parse_ok(a, text);
        otp_buf b = {0};
        const char *w = print_w(&b, t, NULL);
        /* ~w writes maps as #{a => ...}: compare shapes by reparsing. */
        if (kind < 2)
            assert_string_equal(w, text);
        else
            assert_true(otp_exact_eq(parse_ok(a, w), t));
        /* ~p gives up on layout that deep and prints one line. */
        const char *pp = print_p(&b, t, NULL);
        assert_true(otp_exact_eq(parse_ok(a, pp), t));
        otp_buf_free(&b);
        otp_arena_free(a);
        free(text);
    }
    /* A long flat list is not deep. */
    otp_arena *a = otp_arena_new();
    otp_term l = OTP_NIL;
    for (int i = 0; i < 200000; i++)
        l = otp_cons(a, otp_small(i % 10), l);
    otp_buf b = {0};
    assert_int_equal(otp_print(&b, l, NULL), 0);
    assert_int_equal(b.len, 400001);
    b.len = 0;
    assert_int_equal(otp_print_pretty(&b, l, NULL), 0);
    otp_buf_free(&b);
    otp_arena_free(a);
}

static void test_format(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_buf b = {0};
    otp_term inner = parse_ok(a, "{x, \"y\"}");
    otp_term t = otp_format(a, "{~a, [~i, ~i], ~w}", "ok", 1, 2, inner);
    assert_string_equal(print_w(&b, t, NULL), "{ok,[1,2],{x,[121]}}");
    t = otp_format(a, "[~s, ~b, ~B, ~l, ~u, ~L, ~f]", "h\xc3\xa9", "bin", "a\0b", (size_t)3,
                   LONG_MIN, ULONG_MAX, INT64_MIN, 1.5);
    assert_string_equal(print_w(&b, t, NULL),
                        "[[104,233],<<98,105,110>>,<<97,0,98>>,-9223372036854775808,"
                        "18446744073709551615,-9223372036854775808,1.5]");
    t = otp_format(a, "#{~a => ~i, <<~i:16, ~i/utf8>> => ~a}", "key", -7, 300, 955, "Quoted atom");
    assert_string_equal(print_w(&b, t, NULL), "#{key => -7,<<1,44,206,187>> => 'Quoted atom'}");
    /* Holes and literals mix freely, with the literal grammar intact. */
    t = otp_format(a, "{'EXIT', ~w, \"~s stays text\", 16#ff}.", OTP_ATOM_NORMAL);
    assert_string_equal(print_w(&b, t, NULL),
                        "{'EXIT',normal,[126,115,32,115,116,97,121,115,32,116,101,120,116],255}");
    assert_int_equal(otp_format(a, "~i", 42), otp_small(42));
    /* Malformed formats and bad arguments give OTP_NONE. */
    assert_int_equal(otp_format(a, "{~i", 1), OTP_NONE);
    assert_int_equal(otp_format(a, "~z"), OTP_NONE);
    assert_int_equal(otp_format(a, "~w", OTP_NONE), OTP_NONE);
    assert_int_equal(otp_format(a, "~a", "bad\xff"), OTP_NONE);
    assert_int_equal(otp_format(a, "~s", (const char *)NULL), OTP_NONE);
    assert_int_equal(otp_format(a, "~f", NAN), OTP_NONE);
    otp_buf_free(&b);
    otp_arena_free(a);
}

static void test_match(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term v[4];
    otp_term t = parse_ok(a, "{ok, 1, [2, 3]}");
    assert_int_equal(otp_match("{ok, X, [Y | _]}", t, v, 2), 0);
    assert_int_equal(v[0], otp_small(1));
    assert_int_equal(v[1], otp_small(2));
    assert_int_equal(otp_match("{ok, X, [_ | T]}", t, v, 2), 0);
    assert_true(otp_exact_eq(v[1], parse_ok(a, "[3]")));
    assert_int_equal(otp_match("{error, _}", t, v, 0), -OTP_ENOMATCH);
    assert_int_equal(otp_match("{ok, _}", t, v, 0), -OTP_ENOMATCH);
    assert_int_equal(otp_match("_", t, NULL, 0), 0);
    /* A repeated variable must be =:= each time; _Name is a variable too. */
    assert_int_equal(otp_match("{X, X}", parse_ok(a, "{[a], [a]}"), v, 1), 0);
    assert_int_equal(otp_match("{X, X}", parse_ok(a, "{1, 1.0}"), v, 1), -OTP_ENOMATCH);
    assert_int_equal(otp_match("{_N, _N}", parse_ok(a, "{1, 2}"), v, 1), -OTP_ENOMATCH);
    assert_int_equal(otp_match("{_, _}", parse_ok(a, "{1, 2}"), v, 0), 0);
    /* Binds go in order of first appearance. */
    assert_int_equal(otp_match("{B, A, B}", parse_ok(a, "{1, 2, 1}"), v, 2), 0);
    assert_int_equal(v[0], otp_small(1));
    assert_int_equal(v[1], otp_small(2));
    /* Literals compare with =:=. */
    assert_int_equal(otp_match("1.0", otp_small(1), v, 0), -OTP_ENOMATCH);
    assert_int_equal(otp_match("{\"ab\", <<1,2>>, 18446744073709551616, -0.5}",
                               parse_ok(a, "{[97,98], <<1,2>>, 18446744073709551616, -0.5}"), v, 0),
                     0);
    /* Map patterns: the named keys must be present, others may be. */
    otp_term m = parse_ok(a, "#{k => 5, j => 6, {t} => [x]}");
    assert_int_equal(otp_match("#{k := V, {t} := [L]}", m, v, 2), 0);
    assert_int_equal(v[0], otp_small(5));
    assert_int_equal(v[1], otp_atom("x"));
    assert_int_equal(otp_match("#{j => 6}", m, v, 0), 0);
    assert_int_equal(otp_match("#{}", m, v, 0), 0);
    assert_int_equal(otp_match("#{z := _}", m, v, 0), -OTP_ENOMATCH);
    assert_int_equal(otp_match("#{k := 6}", m, v, 0), -OTP_ENOMATCH);
    assert_int_equal(otp_match("#{k := _}", parse_ok(a, "[k]"), v, 0), -OTP_ENOMATCH);
    /* Lists. */
    assert_int_equal(otp_match("[H | T]", parse_ok(a, "[1,2,3]"), v, 2), 0);
    assert_true(otp_exact_eq(v[1], parse_ok(a, "[2,3]")));
    assert_int_equal(otp_match("[H | T]", OTP_NIL, v, 2), -OTP_ENOMATCH);
    assert_int_equal(otp_match("[A, B]", parse_ok(a, "[1,2,3]"), v, 2), -OTP_ENOMATCH);
    /* Errors in the pattern itself. */
    assert_int_equal(otp_match("{A, B, C}", t, v, 2), -OTP_ENOSPC);
    assert_int_equal(otp_match("{X,", t, v, 2), -OTP_EPARSE);
    assert_int_equal(otp_match("#{X => 1}", m, v, 2), -OTP_EPARSE);
    assert_int_equal(otp_match("<<X>>", m, v, 2), -OTP_EPARSE);
    /* Deep patterns match without recursion too. */
    size_t depth = 100000;
    char *pat = malloc(2 * depth + 2);
    memset(pat, '[', depth);
    pat[depth] = 'X';
    memset(pat + depth + 1, ']', depth);
    pat[2 * depth + 1] = 0;
    pat[depth] = '7';
    otp_term deep = parse_ok(a, pat);
    pat[depth] = 'X';
    assert_int_equal(otp_match(pat, deep, v, 1), 0);
    assert_int_equal(v[0], otp_small(7));
    free(pat);
    otp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_print_w_table),    cmocka_unit_test(test_print_p_table),
        cmocka_unit_test(test_print_identities), cmocka_unit_test(test_bignums),
        cmocka_unit_test(test_float_roundtrip),  cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_forms),      cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_format),           cmocka_unit_test(test_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
