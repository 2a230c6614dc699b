/* test_term.c — the term model: atoms (including concurrent interning),
 * constructors and accessors, integer boundaries and bignums, Erlang's term
 * order and equality (cases checked in erl, OTP 25), hashing, copying and
 * arena lifetimes.
 */
/* otp-test: threads */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "otp.h"
#include "term_internal.h"

static void test_atoms(void **state)
{
    (void)state;
    assert_int_equal(otp_atom("true"), OTP_ATOM_TRUE);
    assert_int_equal(otp_atom("false"), OTP_ATOM_FALSE);
    assert_int_equal(otp_atom(""), OTP_ATOM_EMPTY);
    assert_int_equal(otp_atom("nonode@nohost"), OTP_ATOM_NONODE);
    otp_term a = otp_atom("hello"), b = otp_atom("hello");
    assert_int_equal(a, b);
    assert_true(otp_is_atom(a));
    size_t len;
    assert_memory_equal(otp_atom_text(a, &len), "hello", 5);
    assert_int_equal(len, 5);
    assert_string_equal(otp_atom_cstr(OTP_ATOM_OK), "ok");

    /* UTF-8 validity and the 255-character limit (characters, not bytes). */
    otp_term x;
    assert_int_equal(otp_atom_intern("\xc3\x28", 2, &x), -OTP_EBADARG);
    assert_int_equal(otp_atom_intern("\xed\xa0\x80", 3, &x), -OTP_EBADARG); /* surrogate */
    assert_int_equal(otp_atom_intern("\xc0\x80", 2, &x), -OTP_EBADARG);     /* overlong */
    char buf[1024];
    memset(buf, 'a', 256);
    assert_int_equal(otp_atom_intern(buf, 255, &x), 0);
    assert_int_equal(otp_atom_intern(buf, 256, &x), -OTP_ELIMIT);
    for (int i = 0; i < 255; i++)
        memcpy(buf + 2 * i, "\xce\xbb", 2); /* lambda: 255 chars, 510 bytes */
    assert_int_equal(otp_atom_intern(buf, 510, &x), 0);
    assert_int_equal(otp_atom_intern(buf, 512, &x) == 0 ? 1 : 0, 0);

    /* Latin-1 interning gives the same atom as its UTF-8 spelling. */
    otp_term e1, e2;
    assert_int_equal(otp_atom_intern_latin1("\xe9", 1, &e1), 0);
    assert_int_equal(otp_atom_intern("\xc3\xa9", 2, &e2), 0);
    assert_int_equal(e1, e2);
    /* NUL is a valid atom character in Erlang. */
    otp_term z;
    assert_int_equal(otp_atom_intern("a\0b", 3, &z), 0);
    assert_int_equal(otp_atom_text(z, &len)[2], 'b');
}

enum { NTHREADS = 4, NATOMS = 20000 };
static otp_term thread_atoms[NTHREADS][NATOMS];

static void *intern_many(void *arg)
{
    size_t t = (size_t)arg;
    char name[32];
    for (int i = 0; i < NATOMS; i++) {
        /* Every thread interns the same names, in different orders. */
        int k = (int)((i * 7919u + t * 104729u) % NATOMS);
        int n = snprintf(name, sizeof name, "race_%d", k);
        otp_term a;
        if (otp_atom_intern(name, (size_t)n, &a) != 0)
            return (void *)1;
        thread_atoms[t][k] = a;
    }
    return NULL;
}

static void test_atoms_concurrent(void **state)
{
    (void)state;
    pthread_t th[NTHREADS];
    for (size_t t = 0; t < NTHREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, intern_many, (void *)t), 0);
    for (size_t t = 0; t < NTHREADS; t++) {
        void *rv;
        pthread_join(th[t], &rv);
        assert_null(rv);
    }
    for (int k = 0; k < NATOMS; k++) {
        for (size_t t = 1; t < NTHREADS; t++)
            assert_int_equal(thread_atoms[t][k], thread_atoms[0][k]);
        char name[32];
        snprintf(name, sizeof name, "race_%d", k);
        assert_string_equal(otp_atom_cstr(thread_atoms[0][k]), name);
    }
}

static void test_integers(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    int64_t v;
    uint64_t u;
    const int64_t cases[] = {
        0,         1,        -1, OTP_SMALL_MAX, OTP_SMALL_MIN, OTP_SMALL_MAX + 1, OTP_SMALL_MIN - 1,
        INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        otp_term t = otp_int(a, cases[i]);
        assert_true(otp_is_integer(t));
        assert_int_equal(otp_get_int64(t, &v), 0);
        assert_true(v == cases[i]);
        assert_int_equal(otp_is_small(t), cases[i] >= OTP_SMALL_MIN && cases[i] <= OTP_SMALL_MAX);
    }
    assert_int_equal(otp_get_uint64(otp_uint(a, UINT64_MAX), &u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(otp_get_int64(otp_uint(a, UINT64_MAX), &v), -OTP_ERANGE);
    assert_int_equal(otp_get_uint64(otp_int(a, -1), &u), -OTP_ERANGE);
    int32_t i32;
    assert_int_equal(otp_get_int32(otp_int(a, INT32_MAX + 1LL), &i32), -OTP_ERANGE);
    assert_int_equal(otp_get_int64(OTP_ATOM_OK, &v), -OTP_ETYPE);

    /* 2^64 from wire bytes, and a bignum that normalises to a small. */
    const uint8_t two64[] = {0, 0, 0, 0, 0, 0, 0, 0, 1};
    otp_term big = otp_bignum_from_bytes(a, false, two64, sizeof two64);
    assert_true(otp_is_bignum(big));
    assert_int_equal(otp_get_uint64(big, &u), -OTP_ERANGE);
    const uint8_t one[] = {1, 0, 0};
    assert_int_equal(otp_bignum_from_bytes(a, true, one, 3), otp_small(-1));
    assert_int_equal(otp_bignum_from_bytes(a, true, one, 0), otp_small(0)); /* -0 is 0 */
    uint8_t le[16];
    size_t n;
    bool neg;
    assert_int_equal(otp_get_bignum_bytes(big, &neg, le, sizeof le, &n), 0);
    assert_int_equal(n, 9);
    assert_memory_equal(le, two64, 9);
    assert_int_equal(otp_get_bignum_bytes(big, &neg, le, 4, &n), -OTP_ENOSPC);

    double d;
    assert_int_equal(otp_get_double(otp_float(a, 2.5), &d), 0);
    assert_true(d == 2.5);
    assert_int_equal(otp_float(a, NAN), OTP_NONE);
    assert_int_equal(otp_float(a, INFINITY), OTP_NONE);
    otp_arena_free(a);
}

static void test_containers(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term t = OTP_TUPLE(a, OTP_ATOM_OK, OTP_LIST(a, otp_small(1), otp_small(2), otp_small(3)),
                           otp_binary(a, "x", 1));
    assert_true(otp_is_tuple(t));
    assert_int_equal(otp_tuple_arity(t), 3);
    assert_int_equal(otp_tuple_get(t, 0), OTP_ATOM_OK);
    assert_int_equal(otp_tuple_get(t, 3), OTP_NONE);
    otp_term l = otp_tuple_get(t, 1);
    assert_int_equal(otp_list_length(l), 3);
    assert_int_equal(otp_head(otp_tail(l)), otp_small(2));
    size_t len;
    const uint8_t *d = otp_binary_data(otp_tuple_get(t, 2), &len);
    assert_int_equal(len, 1);
    assert_int_equal(d[0], 'x');

    /* OTP_NONE propagates out of nested construction. */
    assert_int_equal(OTP_TUPLE(a, OTP_ATOM_OK, OTP_LIST(a, OTP_NONE)), OTP_NONE);
    assert_int_equal(otp_tuple(a, 2, OTP_ATOM_OK, OTP_NONE), OTP_NONE);

    /* Improper lists and strings. */
    otp_term imp = otp_list_tail_v(a, 2, (otp_term[]){otp_small(1), otp_small(2)}, otp_small(3));
    assert_int_equal(otp_list_length(imp), -OTP_ETYPE);
    otp_term s = otp_string(a, "a\xce\xbb");
    assert_int_equal(otp_list_length(s), 2);
    assert_int_equal(otp_head(otp_tail(s)), otp_small(955));
    assert_int_equal(otp_string(a, ""), OTP_NIL);
    assert_int_equal(otp_string(a, "\xff"), OTP_NONE);

    /* Bitstrings keep their bit length and zero the unused bits. */
    uint8_t junk = 0x3f;
    otp_term bs = otp_bitstring(a, &junk, 3);
    uint64_t bits;
    assert_int_equal(otp_bitstring_data(bs, &bits)[0], 0x20);
    assert_true(bits == 3);
    assert_false(otp_is_binary(bs));
    assert_true(otp_is_bitstring(bs));

    /* Large binaries are refcounted and survive copying. */
    char big[1000];
    memset(big, 'z', sizeof big);
    otp_term bb = otp_binary(a, big, sizeof big);
    otp_arena *b = otp_arena_new();
    otp_term bc = otp_copy(b, bb);
    otp_arena_free(a);
    assert_non_null(otp_binary_data(bc, &len));
    assert_int_equal(len, 1000);
    assert_int_equal(otp_binary_data(bc, &len)[999], 'z');
    otp_arena_free(b);
}

static void test_maps(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term one = otp_small(1), onef = otp_float(a, 1.0);
    /* 1 and 1.0 are different keys; the later duplicate wins. */
    otp_term m = OTP_MAP(a, onef, otp_atom("f"), OTP_ATOM_OK, otp_small(0), one, otp_atom("i"),
                         OTP_ATOM_OK, otp_small(7));
    assert_int_equal(otp_map_size(m), 3);
    assert_int_equal(otp_map_get(m, OTP_ATOM_OK), otp_small(7));
    assert_int_equal(otp_map_get(m, one), otp_atom("i"));
    assert_int_equal(otp_map_get(m, onef), otp_atom("f"));
    assert_int_equal(otp_map_get(m, otp_atom("missing")), OTP_NONE);
    /* Key order: integers before floats, then atoms. */
    otp_term k;
    otp_map_at(m, 0, &k, NULL);
    assert_int_equal(k, one);
    otp_map_at(m, 2, &k, NULL);
    assert_int_equal(k, OTP_ATOM_OK);
    otp_term m2 = otp_map_put(a, m, otp_small(0), OTP_NIL);
    assert_int_equal(otp_map_size(m2), 4);
    assert_int_equal(otp_map_size(m), 3);
    otp_term m3 = otp_map_put(a, m2, OTP_ATOM_OK, OTP_ATOM_TRUE);
    assert_int_equal(otp_map_size(m3), 4);
    assert_int_equal(otp_map_get(m3, OTP_ATOM_OK), OTP_ATOM_TRUE);
    otp_arena_free(a);
}

/* Each row: a < b, a == b, a =:= b as erl -noshell answered them. */
static void test_order(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term node_a = otp_atom("a@x"), node_b = otp_atom("b@x"), node_c = otp_atom("c@x");
    uint32_t w123[] = {1, 2, 3}, w223[] = {2, 2, 3}, w124[] = {1, 2, 4}, w12[] = {1, 2},
             w120[] = {1, 2, 0}, w500[] = {5, 0, 0}, w9999[] = {9, 9, 9, 9};
    const uint8_t two64[] = {0, 0, 0, 0, 0, 0, 0, 0, 1};
    otp_term big64 = otp_bignum_from_bytes(a, false, two64, 9);
    struct {
        otp_term x, y;
        int lt, eq, exact;
    } rows[] = {
        /* numbers */
        {otp_small(1), otp_float(a, 1.0), 0, 1, 0},
        {otp_small(1), otp_float(a, 1.5), 1, 0, 0},
        {otp_float(a, 0.0), otp_float(a, -0.0), 0, 1, 1},
        {big64, otp_float(a, 18446744073709551616.0), 0, 1, 0},
        {otp_float(a, 1e300), otp_bignum_from_bytes(a, false, (uint8_t[126]){[125] = 1}, 126), 1, 0,
         0},
        {otp_int(a, 9007199254740993LL), otp_float(a, 9007199254740992.0), 0, 0, 0},
        {otp_float(a, 9007199254740992.0), otp_int(a, 9007199254740993LL), 1, 0, 0},
        {otp_int(a, -5), otp_small(3), 1, 0, 0},
        {otp_int(a, INT64_MIN), otp_int(a, INT64_MAX), 1, 0, 0},
        /* type order: number < atom < ref < fun < port < pid < tuple < map < [] < list < bits */
        {otp_small(99), OTP_ATOM_OK, 1, 0, 0},
        {OTP_ATOM_OK, otp_ref(a, node_a, 1, w123, 3), 1, 0, 0},
        {otp_ref(a, node_a, 1, w123, 3), otp_export(a, OTP_ATOM_OK, OTP_ATOM_OK, 1), 1, 0, 0},
        {otp_export(a, OTP_ATOM_OK, OTP_ATOM_OK, 1), otp_port(a, node_a, 1, 1), 1, 0, 0},
        {otp_port(a, node_a, 1, 1), otp_pid(a, node_a, 1, 1, 1), 1, 0, 0},
        {otp_pid(a, node_a, 1, 1, 1), OTP_TUPLE(a, OTP_ATOM_OK), 1, 0, 0},
        {OTP_TUPLE(a, OTP_ATOM_OK, OTP_ATOM_OK), OTP_MAP(a, OTP_ATOM_OK, OTP_ATOM_OK), 1, 0, 0},
        {OTP_MAP(a, OTP_ATOM_OK, OTP_ATOM_OK), OTP_NIL, 1, 0, 0},
        {OTP_NIL, OTP_LIST(a, OTP_ATOM_OK), 1, 0, 0},
        {OTP_LIST(a, OTP_ATOM_OK), otp_binary(a, "", 0), 1, 0, 0},
        /* atoms by text */
        {otp_atom("abc"), otp_atom("abd"), 1, 0, 0},
        {otp_atom("ab"), otp_atom("abc"), 1, 0, 0},
        {otp_atom("Z"), otp_atom("a"), 1, 0, 0},
        /* pids: serial, id, node, creation */
        {otp_pid(a, node_a, 2, 1, 5), otp_pid(a, node_a, 1, 2, 5), 1, 0, 0},
        {otp_pid(a, node_a, 1, 2, 6), otp_pid(a, node_b, 1, 2, 5), 1, 0, 0},
        {otp_pid(a, node_c, 0, 0, 1), otp_pid(a, node_a, 1, 2, 5), 1, 0, 0},
        {otp_pid(a, node_a, 1, 2, 5), otp_pid(a, node_a, 1, 2, 6), 1, 0, 0},
        /* ports: node, creation, id */
        {otp_port(a, node_a, 2, 5), otp_port(a, node_a, 1, 6), 1, 0, 0},
        {otp_port(a, node_a, 1, 6), otp_port(a, node_b, 1, 5), 1, 0, 0},
        /* refs: node, creation, words from the top, zero-extended */
        {otp_ref(a, node_a, 5, w223, 3), otp_ref(a, node_a, 5, w124, 3), 1, 0, 0},
        {otp_ref(a, node_a, 5, w12, 2), otp_ref(a, node_a, 5, w123, 3), 1, 0, 0},
        {otp_ref(a, node_a, 5, w9999, 4), otp_ref(a, node_a, 6, w123, 3), 1, 0, 0},
        {otp_ref(a, node_a, 5, w500, 3), otp_ref(a, node_a, 5, w12, 2), 1, 0, 0},
        {otp_ref(a, node_a, 5, w12, 2), otp_ref(a, node_a, 5, w120, 3), 0, 1, 1},
        /* exports: module, function, arity */
        {otp_export(a, otp_atom("erlang"), otp_atom("abs"), 1),
         otp_export(a, otp_atom("erlang"), otp_atom("abs"), 2), 1, 0, 0},
        {otp_export(a, otp_atom("a"), otp_atom("b"), 2),
         otp_export(a, otp_atom("b"), otp_atom("a"), 1), 1, 0, 0},
        /* compounds */
        {OTP_TUPLE(a, otp_small(1)), OTP_TUPLE(a, otp_float(a, 1.0)), 0, 1, 0},
        {OTP_TUPLE(a, otp_small(9)), OTP_TUPLE(a, otp_small(0), otp_small(0)), 1, 0, 0},
        {OTP_LIST(a, otp_small(1)), OTP_LIST(a, otp_float(a, 1.0)), 0, 1, 0},
        {OTP_LIST(a, otp_small(1)), OTP_LIST(a, otp_small(1), otp_small(0)), 1, 0, 0},
        {OTP_MAP(a, otp_small(1), OTP_ATOM_OK), OTP_MAP(a, otp_float(a, 1.0), OTP_ATOM_OK), 1, 0,
         0},
        {OTP_MAP(a, OTP_ATOM_OK, otp_small(1)), OTP_MAP(a, OTP_ATOM_OK, otp_float(a, 1.0)), 0, 1,
         0},
        {OTP_MAP(a, otp_atom("b"), otp_small(0)),
         OTP_MAP(a, OTP_ATOM_OK, otp_small(0), otp_atom("b"), otp_small(0)), 1, 0, 0},
        /* bitstrings: bitwise, then shorter first */
        {otp_binary(a, "\x01", 1), otp_bitstring(a, "\x20", 3), 1, 0, 0},
        {otp_bitstring(a, "\x80", 1), otp_binary(a, "\x80", 1), 1, 0, 0},
        {otp_binary(a, "\x01\x02", 2), otp_bitstring(a, "\x01\x02\x00", 17), 1, 0, 0},
        {otp_binary(a, "", 0), otp_bitstring(a, "\x00", 1), 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        otp_term x = rows[i].x, y = rows[i].y;
        assert_true(x != OTP_NONE && y != OTP_NONE);
        int c = otp_cmp(x, y);
        if ((c < 0) != rows[i].lt || otp_eq(x, y) != rows[i].eq ||
            otp_exact_eq(x, y) != rows[i].exact)
            fail_msg("row %zu: cmp=%d eq=%d exact=%d", i, c, otp_eq(x, y), otp_exact_eq(x, y));
        /* Antisymmetry, and the exact order agrees with =:=. */
        assert_int_equal(otp_cmp(y, x) < 0, !rows[i].lt && !rows[i].eq);
        assert_int_equal(otp_cmp_exact(x, y) == 0, rows[i].exact);
        if (rows[i].exact)
            assert_true(otp_hash(x) == otp_hash(y));
    }
    /* In the map-key order every integer sorts below every float. */
    assert_true(otp_cmp_exact(otp_small(2), otp_float(a, 0.5)) < 0);
    assert_true(otp_cmp(otp_small(2), otp_float(a, 0.5)) > 0);
    otp_arena_free(a);
}

/* Builds [[[...[]...]]] n deep. */
static otp_term deep_list(otp_arena *a, size_t n)
{
    otp_term t = OTP_NIL;
    for (size_t i = 0; i < n; i++)
        t = otp_cons(a, t, OTP_NIL);
    return t;
}

static void test_deep_terms(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term x = deep_list(a, 1000000), y = deep_list(a, 1000000);
    assert_true(otp_exact_eq(x, y));
    assert_true(otp_hash(x) == otp_hash(y));
    otp_term z = deep_list(a, 999999);
    assert_true(otp_cmp(z, x) < 0);
    otp_arena *b = otp_arena_new();
    otp_term c = otp_copy(b, x);
    assert_true(otp_exact_eq(c, x));
    assert_true(otp_copy_size(x) >= 16 * 1000000);
    /* A long flat list too. */
    otp_term flat = OTP_NIL;
    for (int i = 0; i < 1000000; i++)
        flat = otp_cons(a, otp_small(i), flat);
    otp_term fc = otp_copy(b, flat);
    assert_int_equal(otp_list_length(fc), 1000000);
    assert_true(otp_exact_eq(fc, flat));
    otp_arena_free(a);
    otp_arena_free(b);
}

static void test_copy_and_hash(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    char big[200];
    memset(big, 7, sizeof big);
    uint32_t w[] = {1, 2, 3};
    otp_term t = OTP_TUPLE(a, otp_int(a, INT64_MIN), otp_float(a, -2.5), otp_binary(a, big, 200),
                           otp_binary(a, "abc", 3), otp_bitstring(a, "\xff\xe0", 11),
                           OTP_MAP(a, otp_atom("k"), OTP_LIST(a, otp_small(1))),
                           otp_pid(a, otp_atom("n@h"), 1, 2, 3), otp_port(a, otp_atom("n@h"), 9, 3),
                           otp_ref(a, otp_atom("n@h"), 3, w, 3),
                           otp_export(a, otp_atom("lists"), otp_atom("map"), 2),
                           otp_list_tail_v(a, 1, (otp_term[]){OTP_NIL}, otp_small(5)));
    assert_true(t != OTP_NONE);
    otp_arena *b = otp_arena_new();
    otp_term c = otp_copy(b, t);
    assert_true(c != t);
    assert_true(otp_exact_eq(c, t));
    assert_true(otp_hash(c) == otp_hash(t));
    assert_true(otp_copy_size(t) >= 11 * 8 + sizeof(otp__binary) * 3);
    otp_arena_free(a);
    /* The copy stands alone. */
    size_t len;
    assert_int_equal(otp_binary_data(otp_tuple_get(c, 2), &len)[199], 7);
    assert_int_equal(otp_hash(otp_small(1)) == otp_hash(otp_small(2)), 0);
    otp_arena_free(b);
}

static void test_arena(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 100000; i++)
            assert_non_null(otp_arena_alloc(a, (size_t)(i % 100) + 1));
        char big[5000];
        memset(big, round, sizeof big);
        otp_term b = otp_binary(a, big, sizeof big);
        assert_true(b != OTP_NONE);
        assert_non_null(otp_arena_alloc(a, 3u << 20)); /* an oversized block */
        otp_arena_reset(a);
    }
    /* Pointers are 8-byte aligned whatever was asked before. */
    for (size_t i = 1; i < 40; i++)
        assert_int_equal((uintptr_t)otp_arena_alloc(a, i) % 8, 0);
    otp_arena_free(a);
    otp_arena_free(NULL);
}

/* Local pids are one word whose node and creation live in a slot table;
 * they must be indistinguishable from the boxed pid with the same parts. */
static void test_local_pids(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term node = otp_atom("local@host");
    int slot = otp__node_slot_claim(node, 7);
    assert_true(slot >= 0);
    otp_term lp = otp__mk_lpid((unsigned)slot, 4242, 3);
    otp_term bp = otp_pid(a, node, 4242, 3, 7);
    assert_true(otp_is_pid(lp));
    assert_int_equal(otp_type_of(lp), OTP_T_PID);
    otp_term n;
    uint32_t id, serial, creation;
    assert_int_equal(otp_pid_parts(lp, &n, &id, &serial, &creation), 0);
    assert_true(n == node && id == 4242 && serial == 3 && creation == 7);
    assert_true(otp_exact_eq(lp, bp) && otp_exact_eq(bp, lp) && otp_cmp(lp, bp) == 0);
    assert_int_equal(otp_hash(lp), otp_hash(bp));
    /* Order against other pids is by (serial, id, node, creation). */
    assert_true(otp_cmp(lp, otp_pid(a, node, 4243, 3, 7)) < 0);
    assert_true(otp_cmp(otp__mk_lpid((unsigned)slot, 9, 4), lp) > 0);
    /* Same bytes on the wire, same text. */
    otp_buf x = {0}, y = {0};
    assert_int_equal(otp_encode_buf(&x, OTP_TUPLE(a, lp), 0), 0);
    assert_int_equal(otp_encode_buf(&y, OTP_TUPLE(a, bp), 0), 0);
    assert_int_equal(x.len, y.len);
    assert_memory_equal(x.data, y.data, x.len);
    /* Copying keeps the word; it needs no arena. */
    assert_true(otp_copy(a, lp) == lp);
    /* A map keyed by both forms holds one key. */
    otp_term keys[2] = {lp, bp}, vals[2] = {otp_small(1), otp_small(2)};
    assert_int_equal(otp_map_size(otp_map_v(a, 2, keys, vals)), 1);
    otp__node_slot_release((unsigned)slot);
    otp_buf_free(&x);
    otp_buf_free(&y);
    otp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_atoms),      cmocka_unit_test(test_atoms_concurrent),
        cmocka_unit_test(test_integers),   cmocka_unit_test(test_containers),
        cmocka_unit_test(test_maps),       cmocka_unit_test(test_order),
        cmocka_unit_test(test_deep_terms), cmocka_unit_test(test_copy_and_hash),
        cmocka_unit_test(test_arena),      cmocka_unit_test(test_local_pids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
