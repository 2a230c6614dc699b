/* test_struct.c — struct mapping (codec/struct_map.c): round trips in the
 * tuple, record, map and proplist forms for every field type, nested structs
 * and lists, and each error class with the field path it must name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "otp.h"

typedef struct address {
    char street[16];
    uint32_t zip;
} address;

static const otp_field address_fields[] = {
    OTP_FIELD_CHARS(address, street),
    OTP_FIELD(address, zip, OTP_F_UINT32),
};
static const otp_struct_desc address_desc = OTP_STRUCT_DESC(address, address_fields);

typedef struct user {
    int64_t id;
    char name[8];
    double score;
    bool active;
    otp_term role;       /* ATOM */
    const char *bio;     /* CSTR */
    otp_bytes avatar;    /* BINARY */
    otp_term extra;      /* TERM */
    address addr;        /* STRUCT */
    otp_list_field nums; /* LIST of INT32 */
    otp_list_field past; /* LIST of STRUCT address */
    otp_list_field tags; /* LIST of CSTR */
} user;

static const otp_field user_fields[] = {
    OTP_FIELD(user, id, OTP_F_INT64),
    OTP_FIELD_CHARS(user, name),
    OTP_FIELD(user, score, OTP_F_DOUBLE),
    OTP_FIELD(user, active, OTP_F_BOOL),
    OTP_FIELD(user, role, OTP_F_ATOM),
    OTP_FIELD(user, bio, OTP_F_CSTR),
    OTP_FIELD(user, avatar, OTP_F_BINARY),
    OTP_FIELD(user, extra, OTP_F_TERM),
    OTP_FIELD_STRUCT(user, addr, &address_desc),
    OTP_FIELD_LIST(user, nums, OTP_F_INT32, NULL),
    OTP_FIELD_LIST(user, past, OTP_F_STRUCT, &address_desc),
    OTP_FIELD_LIST(user, tags, OTP_F_CSTR, NULL),
};
static const otp_struct_desc user_desc = OTP_STRUCT_DESC(user, user_fields);

typedef struct ints {
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64;
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
} ints;

static const otp_field ints_fields[] = {
    OTP_FIELD(ints, i8, OTP_F_INT8),    OTP_FIELD(ints, i16, OTP_F_INT16),
    OTP_FIELD(ints, i32, OTP_F_INT32),  OTP_FIELD(ints, i64, OTP_F_INT64),
    OTP_FIELD(ints, u8, OTP_F_UINT8),   OTP_FIELD(ints, u16, OTP_F_UINT16),
    OTP_FIELD(ints, u32, OTP_F_UINT32), OTP_FIELD(ints, u64, OTP_F_UINT64),
};
static const otp_struct_desc ints_desc = OTP_STRUCT_DESC(ints, ints_fields);

typedef struct opts {
    bool verbose;
    int32_t level;
    otp_term mode;     /* optional ATOM */
    const char *label; /* optional CSTR */
} opts;

static const otp_field opts_fields[] = {
    OTP_FIELD(opts, verbose, OTP_F_BOOL),
    OTP_FIELD_OPT(opts, level, OTP_F_INT32),
    OTP_FIELD_OPT(opts, mode, OTP_F_ATOM),
    OTP_FIELD_OPT(opts, label, OTP_F_CSTR),
};
static const otp_struct_desc opts_desc = OTP_STRUCT_DESC(opts, opts_fields);

static otp_arena *A;

static int setup(void **state)
{
    A = otp_arena_new();
    return A ? 0 : -1;
}

static int teardown(void **state)
{
    otp_arena_free(A);
    return 0;
}

static otp_term parse(const char *text)
{
    otp_term t = otp_parse_str(A, text);
    if (t == OTP_NONE)
        fail_msg("test input does not parse: %s", text);
    return t;
}

static void assert_term(otp_term got, const char *expected)
{
    assert_int_not_equal(got, OTP_NONE);
    otp_term want = parse(expected);
    if (!otp_exact_eq(got, want))
        fail_msg("got %s, want %s", otp_sprint(A, got), expected);
}

static user sample_user(void)
{
    static int32_t nums[] = {1, -2, 300};
    static address past[] = {{"Old Road 1", 1000}, {"Elm St", 4242}};
    static const char *tags[] = {"a", "bé"};
    static const uint8_t pic[] = {0, 1, 2, 255};
    user u = {
        .id = -7,
        .name = "Zoë",
        .score = 2.5,
        .active = true,
        .role = otp_atom("admin"),
        .bio = "likes C",
        .avatar = {pic, sizeof(pic)},
        .extra = OTP_TUPLE(A, OTP_ATOM_OK, otp_int(A, 1)),
        .addr = {"Main St 5", 12345},
        .nums = {nums, 3},
        .past = {past, 2},
        .tags = {tags, 2},
    };
    return u;
}

static void assert_user_eq(const user *a, const user *b)
{
    assert_int_equal(a->id, b->id);
    assert_string_equal(a->name, b->name);
    assert_true(a->score == b->score);
    assert_int_equal(a->active, b->active);
    assert_int_equal(a->role, b->role);
    assert_string_equal(a->bio, b->bio);
    assert_int_equal(a->avatar.len, b->avatar.len);
    assert_memory_equal(a->avatar.data, b->avatar.data, a->avatar.len);
    assert_true(otp_exact_eq(a->extra, b->extra));
    assert_string_equal(a->addr.street, b->addr.street);
    assert_int_equal(a->addr.zip, b->addr.zip);
    assert_int_equal(a->nums.count, b->nums.count);
    assert_memory_equal(a->nums.items, b->nums.items, a->nums.count * sizeof(int32_t));
    assert_int_equal(a->past.count, b->past.count);
    for (size_t i = 0; i < a->past.count; i++) {
        const address *x = (const address *)a->past.items + i;
        const address *y = (const address *)b->past.items + i;
        assert_string_equal(x->street, y->street);
        assert_int_equal(x->zip, y->zip);
    }
    assert_int_equal(a->tags.count, b->tags.count);
    for (size_t i = 0; i < a->tags.count; i++)
        assert_string_equal(((const char **)a->tags.items)[i], ((const char **)b->tags.items)[i]);
}

static void round_trip(otp_struct_form form)
{
    user u = sample_user(), back;
    memset(&back, 0xa5, sizeof(back));
    otp_term t = otp_struct_to_term(&user_desc, form, &u, A);
    assert_int_not_equal(t, OTP_NONE);
    otp_error e;
    int rc = otp_struct_from_term(&user_desc, form, t, A, &back, &e);
    if (rc < 0)
        fail_msg("form %d: %s", (int)form, e.message);
    assert_user_eq(&u, &back);
    assert_int_equal(e.code, 0);
}

static void test_round_trip_all_forms(void **state)
{
    round_trip(OTP_STRUCT_TUPLE);
    round_trip(OTP_STRUCT_RECORD);
    round_trip(OTP_STRUCT_MAP);
    round_trip(OTP_STRUCT_PROPLIST);
}

/* The exact terms each form produces: binaries for text, atoms for atoms. */
static void test_encode_shapes(void **state)
{
    address ad = {"Main", 7};
    assert_term(otp_struct_to_term(&address_desc, OTP_STRUCT_TUPLE, &ad, A), "{<<\"Main\">>, 7}");
    assert_term(otp_struct_to_term(&address_desc, OTP_STRUCT_RECORD, &ad, A),
                "{address, <<\"Main\">>, 7}");
    assert_term(otp_struct_to_term(&address_desc, OTP_STRUCT_MAP, &ad, A),
                "#{street => <<\"Main\">>, zip => 7}");
    assert_term(otp_struct_to_term(&address_desc, OTP_STRUCT_PROPLIST, &ad, A),
                "[{street, <<\"Main\">>}, {zip, 7}]");

    user u = sample_user();
    assert_term(otp_struct_to_term(&user_desc, OTP_STRUCT_MAP, &u, A),
                "#{id => -7, name => <<\"Zo\", 195, 171>>, score => 2.5, active => true,"
                " role => admin, bio => <<\"likes C\">>, avatar => <<0,1,2,255>>,"
                " extra => {ok, 1}, addr => #{street => <<\"Main St 5\">>, zip => 12345},"
                " nums => [1, -2, 300],"
                " past => [#{street => <<\"Old Road 1\">>, zip => 1000},"
                "          #{street => <<\"Elm St\">>, zip => 4242}],"
                " tags => [<<\"a\">>, <<\"b\", 195, 169>>]}");
    assert_term(otp_struct_to_term(&user_desc, OTP_STRUCT_RECORD, &u, A),
                "{user, -7, <<\"Zo\", 195, 171>>, 2.5, true, admin, <<\"likes C\">>,"
                " <<0,1,2,255>>, {ok, 1}, {address, <<\"Main St 5\">>, 12345}, [1, -2, 300],"
                " [{address, <<\"Old Road 1\">>, 1000}, {address, <<\"Elm St\">>, 4242}],"
                " [<<\"a\">>, <<\"b\", 195, 169>>]}");
}

static void test_decode_from_erlang_text(void **state)
{
    user u;
    memset(&u, 0, sizeof(u));
    otp_error e;
    /* Text given as a string, an atom and a binary; a float given as an
     * integer; a bignum kept as a term. */
    otp_term t = parse("#{id => 1, name => \"José\", score => 3, active => false, role => user,"
                       " bio => 'hello world', avatar => <<>>, extra => 1180591620717411303424,"
                       " addr => #{zip => 4294967295, street => <<\"x\">>, ignored => 1},"
                       " nums => \"AB\", past => [], tags => [\"t1\", t2, <<\"t3\">>],"
                       " unknown_key => yes}");
    int rc = otp_struct_from_term(&user_desc, OTP_STRUCT_MAP, t, A, &u, &e);
    if (rc < 0)
        fail_msg("%s", e.message);
    assert_int_equal(u.id, 1);
    assert_string_equal(u.name, "Jos\xc3\xa9");
    assert_true(u.score == 3.0);
    assert_false(u.active);
    assert_int_equal(u.role, otp_atom("user"));
    assert_string_equal(u.bio, "hello world");
    assert_int_equal(u.avatar.len, 0);
    assert_true(otp_is_bignum(u.extra));
    assert_string_equal(u.addr.street, "x");
    assert_int_equal(u.addr.zip, UINT32_MAX);
    assert_int_equal(u.nums.count, 2);
    assert_int_equal(((int32_t *)u.nums.items)[0], 'A');
    assert_int_equal(((int32_t *)u.nums.items)[1], 'B');
    assert_int_equal(u.past.count, 0);
    assert_int_equal(u.tags.count, 3);
    assert_string_equal(((const char **)u.tags.items)[0], "t1");
    assert_string_equal(((const char **)u.tags.items)[1], "t2");
    assert_string_equal(((const char **)u.tags.items)[2], "t3");
}

static void test_tuple_form_accepts_record(void **state)
{
    address ad;
    otp_error e;
    assert_int_equal(otp_struct_from_term(&address_desc, OTP_STRUCT_TUPLE,
                                          parse("{address, \"a\", 1}"), A, &ad, &e),
                     0);
    assert_string_equal(ad.street, "a");
    assert_int_equal(ad.zip, 1);
    assert_int_equal(
        otp_struct_from_term(&address_desc, OTP_STRUCT_TUPLE, parse("{<<\"b\">>, 2}"), A, &ad, &e),
        0);
    assert_string_equal(ad.street, "b");
    /* The record form insists on the tag. */
    assert_int_equal(
        otp_struct_from_term(&address_desc, OTP_STRUCT_RECORD, parse("{<<\"b\">>, 2}"), A, &ad, &e),
        -OTP_ETYPE);
    assert_string_equal(e.message, "expected a record 'address' of 3 elements, got a tuple of 2");
    assert_int_equal(
        otp_struct_from_term(&address_desc, OTP_STRUCT_TUPLE, parse("{1, 2, 3, 4}"), A, &ad, &e),
        -OTP_ETYPE);
    assert_string_equal(e.message, "expected a tuple of 2 elements, got one of 4");
}

static void test_record_wrong_tag(void **state)
{
    address ad;
    otp_error e;
    int rc = otp_struct_from_term(&address_desc, OTP_STRUCT_RECORD, parse("{person, \"a\", 1}"), A,
                                  &ad, &e);
    assert_int_equal(rc, -OTP_ETYPE);
    assert_int_equal(e.code, -OTP_ETYPE);
    assert_string_equal(e.message, "expected a record 'address', got one tagged 'person'");
    rc = otp_struct_from_term(&address_desc, OTP_STRUCT_TUPLE, parse("{person, \"a\", 1}"), A, &ad,
                              &e);
    assert_int_equal(rc, -OTP_ETYPE);
    rc = otp_struct_from_term(&address_desc, OTP_STRUCT_RECORD, parse("{1, \"a\", 1}"), A, &ad, &e);
    assert_int_equal(rc, -OTP_ETYPE);
    assert_string_equal(e.message,
                        "expected a record 'address', got a tuple starting with an integer");
    /* Nested: the path names the field holding the bad record. */
    user u = sample_user();
    otp_term t = otp_struct_to_term(&user_desc, OTP_STRUCT_RECORD, &u, A);
    otp_term el[13];
    memcpy(el, otp_tuple_elems(t), sizeof(el));
    el[9] = parse("{place, <<\"x\">>, 1}");
    rc = otp_struct_from_term(&user_desc, OTP_STRUCT_RECORD, otp_tuple_v(A, 13, el), A, &u, &e);
    assert_int_equal(rc, -OTP_ETYPE);
    assert_string_equal(e.message,
                        "field 'addr': expected a record 'address', got one tagged 'place'");
}

static void test_proplist_bare_atoms_and_duplicates(void **state)
{
    opts o = {.verbose = false, .level = 99, .mode = 0, .label = NULL};
    otp_error e;
    otp_term t = parse("[{level, 3}, other, {verbose, false}, verbose, {level, 4}, \"junk\","
                       " {mode, fast}, {mode, slow}]");
    int rc = otp_struct_from_term(&opts_desc, OTP_STRUCT_PROPLIST, t, A, &o, &e);
    if (rc < 0)
        fail_msg("%s", e.message);
    assert_false(o.verbose); /* {verbose, false} comes before the bare atom */
    assert_int_equal(o.level, 3);
    assert_int_equal(o.mode, otp_atom("fast"));
    assert_null(o.label); /* optional and missing: left as it was */

    o.level = 99;
    rc = otp_struct_from_term(&opts_desc, OTP_STRUCT_PROPLIST, parse("[verbose, {verbose, false}]"),
                              A, &o, &e);
    assert_int_equal(rc, 0);
    assert_true(o.verbose);
    assert_int_equal(o.level, 99);

    /* A bare atom is `true`, which is not an integer. */
    rc =
        otp_struct_from_term(&opts_desc, OTP_STRUCT_PROPLIST, parse("[verbose, level]"), A, &o, &e);
    assert_int_equal(rc, -OTP_ETYPE);
    assert_string_equal(e.message, "field 'level': expected an integer, got an atom");

    rc = otp_struct_from_term(&opts_desc, OTP_STRUCT_PROPLIST, parse("[{level, 1}]"), A, &o, &e);
    assert_int_equal(rc, -OTP_ENOTFOUND);
    assert_string_equal(e.message, "field 'verbose': missing from proplist");

    rc = otp_struct_from_term(&opts_desc, OTP_STRUCT_PROPLIST, parse("[{verbose, true, 1}]"), A, &o,
                              &e);
    assert_int_equal(rc, -OTP_ETYPE);
    assert_string_equal(e.message,
                        "field 'verbose': expected {verbose, Value}, got a tuple of 3 elements");

    rc =
        otp_struct_from_term(&opts_desc, OTP_STRUCT_PROPLIST, parse("[verbose | tail]"), A, &o, &e);
    assert_int_equal(rc, -OTP_ETYPE);
    assert_string_equal(e.message, "expected a proplist, got an improper list");
}

static void test_optional_fields_encode(void **state)
{
    opts o = {.verbose = true, .level = 2, .mode = 0, .label = NULL};
    assert_term(otp_struct_to_term(&opts_desc, OTP_STRUCT_MAP, &o, A),
                "#{verbose => true, level => 2}");
    assert_term(otp_struct_to_term(&opts_desc, OTP_STRUCT_PROPLIST, &o, A),
                "[{verbose, true}, {level, 2}]");
    assert_term(otp_struct_to_term(&opts_desc, OTP_STRUCT_TUPLE, &o, A),
                "{true, 2, undefined, undefined}");
    o.mode = otp_atom("fast");
    o.label = "L";
    assert_term(otp_struct_to_term(&opts_desc, OTP_STRUCT_MAP, &o, A),
                "#{verbose => true, level => 2, mode => fast, label => <<\"L\">>}");
}

static void test_missing_field(void **state)
{
    address ad;
    otp_error e;
    int rc = otp_struct_from_term(&address_desc, OTP_STRUCT_MAP, parse("#{zip => 1}"), A, &ad, &e);
    assert_int_equal(rc, -OTP_ENOTFOUND);
    assert_int_equal(e.code, -OTP_ENOTFOUND);
    assert_string_equal(e.message, "field 'street': missing from map");

    user u = sample_user();
    otp_term t = otp_struct_to_term(&user_desc, OTP_STRUCT_MAP, &u, A);
    t = otp_map_put(A, t, otp_atom("addr"), parse("#{street => <<>>}"));
    rc = otp_struct_from_term(&user_desc, OTP_STRUCT_MAP, t, A, &u, &e);
    assert_int_equal(rc, -OTP_ENOTFOUND);
    assert_string_equal(e.message, "field 'addr.zip': missing from map");

    /* Optional fields may be missing; they keep their value. */
    opts o = {.verbose = false, .level = 5};
    rc = otp_struct_from_term(&opts_desc, OTP_STRUCT_MAP, parse("#{verbose => true}"), A, &o, &e);
    assert_int_equal(rc, 0);
    assert_true(o.verbose);
    assert_int_equal(o.level, 5);

    /* NULL err is allowed. */
    rc = otp_struct_from_term(&address_desc, OTP_STRUCT_MAP, parse("#{}"), A, &ad, NULL);
    assert_int_equal(rc, -OTP_ENOTFOUND);
}

static void test_wrong_types(void **state)
{
    user u = sample_user();
    otp_error e;
    otp_term t = otp_struct_to_term(&user_desc, OTP_STRUCT_MAP, &u, A);
    static const struct {
        const char *key, *value, *message;
    } cases[] = {
        {"addr", "#{street => <<>>, zip => <<\"1\">>}",
         "field 'addr.zip': expected an integer, got a binary"},
        {"addr", "[1]", "field 'addr': expected a map, got a list"},
        {"id", "1.0", "field 'id': expected an integer, got a float"},
        {"score", "x", "field 'score': expected a number, got an atom"},
        {"active", "1", "field 'active': expected a boolean, got an integer"},
        {"role", "\"admin\"", "field 'role': expected an atom, got a list"},
        {"name", "{}", "field 'name': expected text (a binary, string or atom), got a tuple"},
        {"name", "<<1:3>>",
         "field 'name': expected text (a binary, string or atom), got a bitstring"},
        {"name", "[104, x]",
         "field 'name': expected text, got a list whose element 1 is not a character"},
        {"name", "[16#D800]",
         "field 'name': expected text, got a list whose element 0 is not a character"},
        {"name", "[104 | 105]", "field 'name': expected text, got an improper list"},
        {"bio", "#{}", "field 'bio': expected text (a binary, string or atom), got a map"},
        {"avatar", "\"abc\"", "field 'avatar': expected a binary, got a list"},
        {"nums", "<<1>>", "field 'nums': expected a list, got a binary"},
        {"nums", "[1 | 2]", "field 'nums': expected a list, got an improper list"},
        {"nums", "[1, 2, a]", "field 'nums[2]': expected an integer, got an atom"},
        {"past", "[#{street => <<>>, zip => 1}, #{street => 5, zip => 1}]",
         "field 'past[1].street': expected text (a binary, string or atom), got an integer"},
        {"tags", "[\"ok\", 1.5]",
         "field 'tags[1]': expected text (a binary, string or atom), got a float"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        otp_term bad = otp_map_put(A, t, otp_atom(cases[i].key), parse(cases[i].value));
        int rc = otp_struct_from_term(&user_desc, OTP_STRUCT_MAP, bad, A, &u, &e);
        if (rc != -OTP_ETYPE || strcmp(e.message, cases[i].message) != 0)
            fail_msg("case %zu: rc %d, message \"%s\"", i, rc, e.message);
        assert_int_equal(e.code, -OTP_ETYPE);
    }
    int rc = otp_struct_from_term(&user_desc, OTP_STRUCT_MAP, parse("[]"), A, &u, &e);
    assert_int_equal(rc, -OTP_ETYPE);
    assert_string_equal(e.message, "expected a map, got an empty list");
    rc = otp_struct_from_term(&user_desc, OTP_STRUCT_PROPLIST, parse("#{}"), A, &u, &e);
    assert_int_equal(rc, -OTP_ETYPE);
    assert_string_equal(e.message, "expected a proplist, got a map");
}

static void expect_range(const char *text, const char *message)
{
    ints v;
    otp_error e;
    int rc = otp_struct_from_term(&ints_desc, OTP_STRUCT_TUPLE, parse(text), A, &v, &e);
    if (rc != -OTP_ERANGE || strcmp(e.message, message) != 0)
        fail_msg("%s: rc %d, message \"%s\"", text, rc, e.message);
}

static void test_integer_ranges(void **state)
{
    ints v;
    otp_error e;
    int rc = otp_struct_from_term(&ints_desc, OTP_STRUCT_TUPLE,
                                  parse("{-128, -32768, -2147483648, -9223372036854775808,"
                                        " 255, 65535, 4294967295, 18446744073709551615}"),
                                  A, &v, &e);
    if (rc < 0)
        fail_msg("%s", e.message);
    assert_int_equal(v.i8, INT8_MIN);
    assert_int_equal(v.i16, INT16_MIN);
    assert_int_equal(v.i32, INT32_MIN);
    assert_true(v.i64 == INT64_MIN);
    assert_int_equal(v.u8, UINT8_MAX);
    assert_int_equal(v.u16, UINT16_MAX);
    assert_int_equal(v.u32, UINT32_MAX);
    assert_true(v.u64 == UINT64_MAX);
    /* And back: the extremes survive the trip out and in. */
    otp_term t = otp_struct_to_term(&ints_desc, OTP_STRUCT_TUPLE, &v, A);
    assert_term(t, "{-128, -32768, -2147483648, -9223372036854775808,"
                   " 255, 65535, 4294967295, 18446744073709551615}");

    expect_range("{128, 0, 0, 0, 0, 0, 0, 0}", "field 'i8': 128 does not fit in int8 (-128..127)");
    expect_range("{0, -32769, 0, 0, 0, 0, 0, 0}",
                 "field 'i16': -32769 does not fit in int16 (-32768..32767)");
    expect_range("{0, 0, 2147483648, 0, 0, 0, 0, 0}",
                 "field 'i32': 2147483648 does not fit in int32 (-2147483648..2147483647)");
    expect_range("{0, 0, 0, 9223372036854775808, 0, 0, 0, 0}",
                 "field 'i64': integer does not fit in int64");
    expect_range("{0, 0, 0, 0, -1, 0, 0, 0}", "field 'u8': -1 does not fit in uint8 (0..255)");
    expect_range("{0, 0, 0, 0, 0, 65536, 0, 0}",
                 "field 'u16': 65536 does not fit in uint16 (0..65535)");
    expect_range("{0, 0, 0, 0, 0, 0, 4294967296, 0}",
                 "field 'u32': 4294967296 does not fit in uint32 (0..4294967295)");
    expect_range("{0, 0, 0, 0, 0, 0, 0, 18446744073709551616}",
                 "field 'u64': integer does not fit in uint64");
    expect_range("{0, 0, 0, 0, 0, 0, 0, -1}",
                 "field 'u64': -1 does not fit in uint64 (0..18446744073709551615)");
    assert_int_equal(e.code, 0);
}

static void test_doubles(void **state)
{
    typedef struct {
        double d;
    } dbl;
    static const otp_field fields[] = {OTP_FIELD(dbl, d, OTP_F_DOUBLE)};
    static const otp_struct_desc desc = OTP_STRUCT_DESC(dbl, fields);
    dbl v;
    otp_error e;
    assert_int_equal(otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{-3}"), A, &v, &e), 0);
    assert_true(v.d == -3.0);
    assert_int_equal(
        otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{1180591620717411303424}"), A, &v, &e),
        0);
    assert_true(v.d == 1180591620717411303424.0);
    assert_int_equal(otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{0.1}"), A, &v, &e), 0);
    assert_true(v.d == 0.1);
    assert_term(otp_struct_to_term(&desc, OTP_STRUCT_TUPLE, &v, A), "{0.1}");
    assert_int_equal(otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{\"1\"}"), A, &v, &e),
                     -OTP_ETYPE);
    assert_string_equal(e.message, "field 'd': expected a number, got a list");
}

static void test_chars_fit(void **state)
{
    typedef struct {
        char s[4];
    } small;
    static const otp_field fields[] = {OTP_FIELD_CHARS(small, s)};
    static const otp_struct_desc desc = OTP_STRUCT_DESC(small, fields);
    small v;
    otp_error e;
    /* Three bytes plus the NUL fit in char[4]... */
    assert_int_equal(
        otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{<<\"abc\">>}"), A, &v, &e), 0);
    assert_string_equal(v.s, "abc");
    assert_int_equal(otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{\"é\"}"), A, &v, &e), 0);
    assert_string_equal(v.s, "\xc3\xa9");
    assert_int_equal(otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{''}"), A, &v, &e), 0);
    assert_string_equal(v.s, "");
    assert_int_equal(otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{[]}"), A, &v, &e), 0);
    assert_string_equal(v.s, "");
    /* ...four do not, nor does a string whose UTF-8 is four bytes. */
    assert_int_equal(otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{abcd}"), A, &v, &e),
                     -OTP_ERANGE);
    assert_string_equal(e.message, "field 's': text of 4 bytes does not fit in char[4]");
    assert_int_equal(otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{\"aéb\"}"), A, &v, &e),
                     -OTP_ERANGE);
    assert_string_equal(e.message, "field 's': text of 4 bytes does not fit in char[4]");
    /* A NUL inside would silently cut a C string short. */
    assert_int_equal(
        otp_struct_from_term(&desc, OTP_STRUCT_TUPLE, parse("{<<\"a\", 0>>}"), A, &v, &e),
        -OTP_ERANGE);
    assert_string_equal(e.message,
                        "field 's': text has a NUL byte at position 1, not valid in a C string");

    /* Encoding needs the NUL inside the array. */
    memcpy(v.s, "abcd", 4);
    assert_int_equal(otp_struct_to_term(&desc, OTP_STRUCT_TUPLE, &v, A), OTP_NONE);
}

/* A tree: a struct that holds a list of itself. Legitimate, but the depth of
 * the input decides the recursion, so it is capped. */
typedef struct tree {
    int64_t v;
    otp_list_field kids;
} tree;
static const otp_struct_desc tree_desc;
static const otp_field tree_fields[] = {
    OTP_FIELD(tree, v, OTP_F_INT64),
    OTP_FIELD_LIST(tree, kids, OTP_F_STRUCT, &tree_desc),
};
static const otp_struct_desc tree_desc = OTP_STRUCT_DESC(tree, tree_fields);

static otp_term deep_tree(size_t depth)
{
    otp_term t = OTP_TUPLE(A, otp_int(A, (int64_t)depth), OTP_NIL);
    for (size_t i = depth; i-- > 0;)
        t = OTP_TUPLE(A, otp_int(A, (int64_t)i), OTP_LIST(A, t));
    return t;
}

static void test_nested_depth_cap(void **state)
{
    tree root;
    otp_error e;
    assert_int_equal(
        otp_struct_from_term(&tree_desc, OTP_STRUCT_TUPLE, deep_tree(10), A, &root, &e), 0);
    const tree *n = &root;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(n->v, i);
        assert_int_equal(n->kids.count, 1);
        n = n->kids.items;
    }
    assert_int_equal(n->v, 10);
    assert_int_equal(n->kids.count, 0);
    assert_term(otp_struct_to_term(&tree_desc, OTP_STRUCT_TUPLE, &root, A),
                otp_sprint(A, deep_tree(10)));

    int rc = otp_struct_from_term(&tree_desc, OTP_STRUCT_TUPLE, deep_tree(200), A, &root, &e);
    assert_int_equal(rc, -OTP_ELIMIT);
    assert_int_equal(e.code, -OTP_ELIMIT);
    assert_non_null(strstr(e.message, "kids[0].kids[0]"));
    assert_non_null(strstr(e.message, "structs nested more than 64 deep"));
    assert_non_null(strstr(e.message, "field '..."));
}

/* A descriptor that contains itself by value: broken, and must not loop. */
typedef struct loop {
    int64_t pad;
} loop;
static const otp_struct_desc loop_desc;
static const otp_field loop_fields[] = {
    {"self", 0, OTP_F_STRUCT, 0, OTP_F_TERM, &loop_desc, false},
};
static const otp_struct_desc loop_desc = OTP_STRUCT_DESC(loop, loop_fields);

static void test_descriptor_cycle(void **state)
{
    otp_term t = OTP_NIL;
    for (int i = 0; i < 100; i++)
        t = OTP_MAP(A, otp_atom("self"), t);
    loop l = {0};
    otp_error e;
    int rc = otp_struct_from_term(&loop_desc, OTP_STRUCT_MAP, t, A, &l, &e);
    assert_int_equal(rc, -OTP_ELIMIT);
    assert_non_null(strstr(e.message, "(a descriptor cycle?)"));
    assert_int_equal(otp_struct_to_term(&loop_desc, OTP_STRUCT_MAP, &l, A), OTP_NONE);
}

static void test_bad_descriptor_and_args(void **state)
{
    typedef struct {
        char s[1];
        otp_list_field l;
    } bad;
    static const otp_field f0[] = {
        {"s", offsetof(bad, s), OTP_F_CHARS, 0, OTP_F_TERM, NULL, false}};
    static const otp_struct_desc d0 = OTP_STRUCT_DESC(bad, f0);
    static const otp_field f1[] = {OTP_FIELD_LIST(bad, l, OTP_F_LIST, NULL)};
    static const otp_struct_desc d1 = OTP_STRUCT_DESC(bad, f1);
    static const otp_field f2[] = {OTP_FIELD(bad, l, OTP_F_STRUCT)};
    static const otp_struct_desc d2 = OTP_STRUCT_DESC(bad, f2);
    bad b;
    otp_error e;
    assert_int_equal(otp_struct_from_term(&d0, OTP_STRUCT_TUPLE, parse("{<<>>}"), A, &b, &e),
                     -OTP_EBADARG);
    assert_string_equal(e.message, "field 's': descriptor gives a CHARS field of size 0");
    assert_int_equal(otp_struct_from_term(&d1, OTP_STRUCT_TUPLE, parse("{[[]]}"), A, &b, &e),
                     -OTP_EBADARG);
    assert_int_equal(otp_struct_from_term(&d2, OTP_STRUCT_TUPLE, parse("{{}}"), A, &b, &e),
                     -OTP_EBADARG);
    assert_int_equal(otp_struct_from_term(NULL, OTP_STRUCT_TUPLE, OTP_NIL, A, &b, &e),
                     -OTP_EBADARG);
    assert_int_equal(otp_struct_from_term(&d0, OTP_STRUCT_TUPLE, OTP_NIL, A, NULL, &e),
                     -OTP_EBADARG);
    assert_int_equal(otp_struct_to_term(NULL, OTP_STRUCT_MAP, &b, A), OTP_NONE);
}

static void test_encode_unrepresentable(void **state)
{
    user u = sample_user();
    u.role = OTP_NIL; /* not an atom */
    assert_int_equal(otp_struct_to_term(&user_desc, OTP_STRUCT_MAP, &u, A), OTP_NONE);
    u = sample_user();
    u.bio = NULL; /* required */
    assert_int_equal(otp_struct_to_term(&user_desc, OTP_STRUCT_MAP, &u, A), OTP_NONE);
    u = sample_user();
    u.nums.items = NULL; /* count 3 and no items */
    assert_int_equal(otp_struct_to_term(&user_desc, OTP_STRUCT_MAP, &u, A), OTP_NONE);
    u = sample_user();
    u.score = NAN; /* NaN is no Erlang float */
    assert_int_equal(otp_struct_to_term(&user_desc, OTP_STRUCT_MAP, &u, A), OTP_NONE);
    u = sample_user();
    u.avatar.data = NULL;
    u.avatar.len = 0; /* an empty binary is fine */
    assert_int_not_equal(otp_struct_to_term(&user_desc, OTP_STRUCT_MAP, &u, A), OTP_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_all_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_from_erlang_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tuple_form_accepts_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_wrong_tag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proplist_bare_atoms_and_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_optional_fields_encode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integer_ranges, setup, teardown),
        cmocka_unit_test_setup_teardown(test_doubles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chars_fit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_depth_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_descriptor_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_descriptor_and_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_unrepresentable, setup, teardown),
    };
    return cmocka_run_group_tests_name("struct", tests, NULL, NULL);
}
