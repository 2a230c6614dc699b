/* test_etf_malformed.c — the ETF decoder on hostile input: every truncation
 * of every golden vector, bad tags, lying lengths, compressed bombs, nesting
 * a million levels deep (decode and encode, no C recursion), the depth
 * limit, and a few thousand seeded random mutations. Nothing may crash;
 * every failure names an offset inside the input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otp.h"

/* ------------------------------------------------------ vector file */

typedef struct vec {
    uint8_t *bytes;
    size_t len;
} vec;

static vec vecs[160];
static size_t nvecs;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static uint8_t *unhex(const char *s, size_t *n)
{
    size_t len = 0;
    while (hexval((unsigned char)s[len]) >= 0)
        len++;
    uint8_t *out = malloc(len / 2 + 1);
    assert_non_null(out);
    for (size_t i = 0; i + 1 < len; i += 2)
        out[i / 2] = (uint8_t)(hexval((unsigned char)s[i]) << 4 | hexval((unsigned char)s[i + 1]));
    *n = len / 2;
    return out;
}

static void add_vec(uint8_t *b, size_t n)
{
    if (nvecs < sizeof vecs / sizeof vecs[0])
        vecs[nvecs++] = (vec){b, n};
    else
        free(b);
}

/* Every complete hex line of the vector file (numbered and legacy), plus the
 * one-line edge cases (E*) whose hex is written out in full. */
static int load_vectors(void **state)
{
    (void)state;
    const char *dir = getenv("OTP_TEST_DATA");
    char path[1024];
    snprintf(path, sizeof path, "%s/etf_vectors.txt", dir ? dir : "test/data");
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        const char *h = NULL;
        if (strncmp(line, "  hex:", 6) == 0 && !strstr(line, "...")) {
            h = line + 6;
        } else if (line[0] == 'E' && line[1] >= '0' && line[1] <= '9') {
            /* "E1  NAME  83467ff8...  -> result": the first token of hex digits
             * that starts with 83 and is not cut short. */
            const char *s = strstr(line, " 83");
            if (s) {
                size_t k = 1;
                while (hexval((unsigned char)s[k]) >= 0)
                    k++;
                if (s[k] == ' ' && k > 5)
                    h = s;
            }
        }
        if (!h)
            continue;
        while (*h == ' ')
            h++;
        size_t n;
        uint8_t *b = unhex(h, &n);
        add_vec(b, n);
    }
    fclose(f);
    return nvecs > 90 ? 0 : -1;
}

static int free_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvecs; i++)
        free(vecs[i].bytes);
    return 0;
}

/* ------------------------------------------------------------ helpers */

/* Decodes and, on failure, checks the error report is well formed. */
static int decode_checked(otp_arena *a, const uint8_t *p, size_t n, const otp_decode_opts *o,
                          otp_term *t, size_t *used)
{
    otp_error err;
    memset(&err, 0x5a, sizeof err);
    int rc = otp_decode(a, p, n, o, t, used, &err);
    if (rc < 0) {
        assert_int_equal(err.code, rc);
        assert_true(rc == -OTP_EDECODE || rc == -OTP_ELIMIT || rc == -OTP_ENOMEM);
        assert_true(err.offset <= n);
        assert_true(err.message[0] != 0);
        assert_non_null(memchr(err.message, 0, sizeof err.message));
    } else {
        assert_int_equal(err.code, 0);
    }
    return rc;
}

/* A decoded term must re-encode, and decode again to an =:= term. */
static void check_roundtrip(otp_arena *a, otp_term t)
{
    otp_buf b = {0};
    assert_int_equal(otp_encode_buf(&b, t, 0), 0);
    assert_int_equal(otp_encoded_size(t, 0), (int64_t)b.len);
    otp_term back;
    otp_error err;
    int rc = otp_decode_exact(a, b.data, b.len, NULL, &back, &err);
    if (rc != 0) {
        fprintf(stderr, "re-decode failed: %s\n", err.message);
        fail();
    }
    assert_true(otp_exact_eq(back, t));
    otp_buf_free(&b);
}

/* -------------------------------------------------------------- tests */

static void test_every_truncation(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    size_t cut = 0;
    for (size_t i = 0; i < nvecs; i++) {
        const vec *v = &vecs[i];
        otp_term t;
        size_t used = 0;
        int whole = decode_checked(a, v->bytes, v->len, NULL, &t, &used);
        if (whole < 0)
            used = v->len; /* an invalid vector: every prefix fails too */
        for (size_t n = 0; n < used; n++) {
            /* Copy the prefix so ASan sees any read past its end. */
            uint8_t *p = malloc(n ? n : 1);
            memcpy(p, v->bytes, n);
            int rc = decode_checked(a, p, n, NULL, &t, NULL);
            if (rc == 0) {
                fprintf(stderr, "vector %zu: prefix of %zu bytes decoded\n", i, n);
                fail();
            }
            free(p);
            cut++;
            otp_arena_reset(a);
        }
    }
    fprintf(stderr, "  %zu truncations of %zu vectors\n", cut, nvecs);
    assert_true(cut > 3000);
    otp_arena_free(a);
}

static void test_bad_tags(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    static const uint8_t valid[] = {70,  77,  88,  89,  90,  97,  98,  99,  100, 101,
                                    102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
                                    112, 113, 114, 115, 116, 118, 119, 120};
    for (int tag = 0; tag < 256; tag++) {
        bool ok = memchr(valid, tag, sizeof valid) != NULL;
        /* Enough zero bytes after the tag for any fixed-size form. */
        uint8_t buf[64] = {131, (uint8_t)tag};
        otp_term t;
        int rc = decode_checked(a, buf, sizeof buf, NULL, &t, NULL);
        if (!ok) {
            assert_int_equal(rc, -OTP_EDECODE);
        }
        /* Inside a tuple, too. */
        uint8_t in_tuple[66] = {131, 104, 1, (uint8_t)tag};
        rc = decode_checked(a, in_tuple, sizeof in_tuple, NULL, &t, NULL);
        if (!ok) {
            assert_int_equal(rc, -OTP_EDECODE);
        }
        otp_arena_reset(a);
    }
    otp_term t;
    otp_error err;
    static const uint8_t nested80[] = {131, 104, 1,   80, 0, 0, 0,   2, 120,
                                       156, 75,  100, 0,  0, 0, 200, 0, 98};
    assert_int_equal(otp_decode(a, nested80, sizeof nested80, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_int_equal(err.offset, 3);
    assert_non_null(strstr(err.message, "top level"));
    otp_arena_free(a);
}

typedef struct lie {
    const char *what;
    const char *hex;
    size_t offset; /* where the error must point */
    const char *says;
} lie;

/* Declared sizes far beyond the input fail before allocating anything. */
static void test_lying_lengths(void **state)
{
    (void)state;
    static const lie lies[] = {
        {"list", "836cffffffff6a6a", 1, "LIST_EXT length 4294967295"},
        {"list2", "836c000000026a", 1, "needs at least 3 bytes"},
        {"tuple", "8369ffffffff6a", 1, "LARGE_TUPLE_EXT arity 4294967295 exceeds the 1 bytes left"},
        {"small tuple", "8368c8616161", 1, "SMALL_TUPLE_EXT arity 200 exceeds the 3 bytes left"},
        {"map", "8374ffffffff6a6a", 1, "MAP_EXT arity 4294967295"},
        {"map odd", "8374000000016a", 1, "MAP_EXT arity 1"},
        {"binary", "836dffffffff00", 1, "BINARY_EXT length 4294967295 exceeds the 1 bytes left"},
        {"bits", "834dffffffff0300", 1, "BIT_BINARY_EXT length 4294967295"},
        {"string", "836bffff01", 1, "STRING_EXT length 65535 exceeds the 1 bytes left"},
        {"large big", "836fffffffff0001", 1, "LARGE_BIG_EXT of 4294967295 digit bytes"},
        {"small big", "836eff0001", 1, "SMALL_BIG_EXT of 255 digit bytes"},
        {"atom", "8376ffff6161", 1, "ATOM_UTF8_EXT needs 65535 more bytes"},
        {"small atom", "8377ff61", 1, "SMALL_ATOM_UTF8_EXT needs 255 more bytes"},
        {"fun free",
         "8370000000ff00"
         "0000000000000000000000000000000000000000"
         "000000ff"
         "770161"
         "6100"
         "6100"
         "58770161"
         "000000000000000000000001",
         1, "NEW_FUN_EXT has 255 free variables but only 0 bytes are left"},
        {"fun free 256",
         "8370000000ff00"
         "00000000000000000000000000000000"
         "00000000"
         "00000100",
         1, "at most 255"},
        {"ref len", "835affff", 1, "65535 id words"},
        {"ref words", "835a00037701610000000100000001", 1,
         "NEWER_REFERENCE_EXT needs 16 more bytes"},
        {"in tuple",
         "8368026101"
         "6cffffffff",
         5, "LIST_EXT length 4294967295"},
        {"integer", "836200", 1, "INTEGER_EXT needs 4 more bytes at offset 2, only 1 left"},
        {"float", "8346000000", 1, "NEW_FLOAT_EXT needs 8 more bytes"},
        {"pid atom", "83586101", 2, "expected an atom"},
        {"pid short", "8358770161000000", 1, "NEW_PID_EXT needs 12 more bytes"},
        {"export", "83717701617701", 5, "SMALL_ATOM_UTF8_EXT needs 1 more bytes"},
        {"trailing tuple", "83680361016101", 7, "expected a term, the input ends"},
    };
    otp_arena *a = otp_arena_new();
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        size_t n;
        uint8_t *b = unhex(lies[i].hex, &n);
        otp_term t;
        otp_error err;
        size_t before = otp_arena_bytes(a);
        int rc = otp_decode(a, b, n, NULL, &t, NULL, &err);
        if (rc != -OTP_EDECODE || err.offset != lies[i].offset ||
            !strstr(err.message, lies[i].says)) {
            fprintf(stderr, "%s: rc %d offset %zu: %s\n  (want offset %zu, \"%s\")\n", lies[i].what,
                    rc, err.offset, err.message, lies[i].offset, lies[i].says);
            fail();
        }
        /* Nothing big was allocated on the lie's word. */
        assert_true(otp_arena_bytes(a) - before < 65536);
        free(b);
    }
    otp_arena_free(a);
}

static uint8_t *compressed_term(const uint8_t *plain, size_t n, uint32_t declared, size_t *out_len)
{
    uLongf zlen = compressBound(n);
    uint8_t *out = malloc(6 + zlen);
    assert_non_null(out);
    out[0] = 131;
    out[1] = 80;
    out[2] = (uint8_t)(declared >> 24);
    out[3] = (uint8_t)(declared >> 16);
    out[4] = (uint8_t)(declared >> 8);
    out[5] = (uint8_t)declared;
    assert_int_equal(compress2(out + 6, &zlen, plain, n, 9), Z_OK);
    *out_len = 6 + zlen;
    return out;
}

static void test_compressed_bombs(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term t;
    otp_error err;

    /* Declares 4 GB: refused before inflating anything. */
    static const uint8_t huge[] = {131, 80, 0xff, 0xff, 0xff, 0xff, 0x78, 0x9c, 0x03, 0x00};
    assert_int_equal(otp_decode(a, huge, sizeof huge, NULL, &t, NULL, &err), -OTP_ELIMIT);
    assert_int_equal(err.offset, 1);

    /* 16 MB of a binary's zeros in about 16 KB of zlib. */
    size_t plain_len = 5 + (16u << 20);
    uint8_t *plain = calloc(1, plain_len);
    plain[0] = 109;
    plain[1] = 0x01; /* length 16 MB, big-endian */
    size_t zn;
    uint8_t *z = compressed_term(plain, plain_len, (uint32_t)plain_len, &zn);
    assert_true(zn < 64 * 1024);

    /* Within a 1 MB cap: refused from the header alone. */
    otp_decode_opts cap = {.max_inflated = 1u << 20};
    assert_int_equal(otp_decode(a, z, zn, &cap, &t, NULL, &err), -OTP_ELIMIT);
    /* With the default cap it is fine: a real 16 MB binary. */
    size_t used;
    assert_int_equal(otp_decode(a, z, zn, NULL, &t, &used, &err), 0);
    assert_int_equal(used, zn);
    size_t len;
    assert_non_null(otp_binary_data(t, &len));
    assert_int_equal(len, 16u << 20);
    otp_arena_reset(a);

    /* Declares fewer bytes than the stream holds: stops at declared + 1. */
    z[2] = 0;
    z[3] = 0;
    z[4] = 0x10;
    z[5] = 0;
    assert_int_equal(otp_decode(a, z, zn, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "more than the declared 4096"));
    /* Declares more than the stream holds. */
    z[2] = 0x02;
    assert_int_equal(otp_decode(a, z, zn, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "inflates to"));
    /* A cut stream. */
    z[2] = (uint8_t)(plain_len >> 24);
    z[3] = (uint8_t)(plain_len >> 16);
    z[4] = (uint8_t)(plain_len >> 8);
    z[5] = (uint8_t)plain_len;
    assert_int_equal(otp_decode(a, z, zn / 2, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "ends early"));
    /* Corrupt zlib data. */
    z[6] ^= 0xff;
    assert_int_equal(otp_decode(a, z, zn, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "zlib"));
    free(z);
    free(plain);

    /* Garbage inside: the error names the compressed term and the inflated byte. */
    static const uint8_t bad_inner[] = {104, 2, 97, 1, 200};
    z = compressed_term(bad_inner, sizeof bad_inner, sizeof bad_inner, &zn);
    assert_int_equal(otp_decode(a, z, zn, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_int_equal(err.offset, 1);
    assert_non_null(strstr(err.message, "inflated byte 4"));
    free(z);
    /* Declared 0. */
    static const uint8_t zero[] = {131, 80, 0, 0, 0, 0, 0x78, 0x9c, 0x03, 0x00, 0, 0, 0, 1};
    assert_int_equal(otp_decode(a, zero, sizeof zero, NULL, &t, NULL, &err), -OTP_EDECODE);
    /* Trailing bytes after the zlib stream are not consumed; inside the
     * inflated data they are ignored, as in OTP. */
    static const uint8_t inner_junk[] = {97, 7, 1, 2, 3};
    z = compressed_term(inner_junk, sizeof inner_junk, sizeof inner_junk, &zn);
    uint8_t *z2 = malloc(zn + 2);
    memcpy(z2, z, zn);
    z2[zn] = z2[zn + 1] = 9;
    assert_int_equal(otp_decode(a, z2, zn + 2, NULL, &t, &used, &err), 0);
    assert_true(t == otp_small(7));
    assert_int_equal(used, zn);
    free(z);
    free(z2);
    otp_arena_free(a);
}

#define DEEP 1000000u

/* [[[...[]...]]] and {{{...{}...}}} a million levels deep. */
static uint8_t *deep_list(size_t depth, size_t *n)
{
    size_t len = 1 + 5 * depth + 1 + depth;
    uint8_t *b = malloc(len), *p = b;
    *p++ = 131;
    for (size_t i = 0; i < depth; i++) {
        memcpy(p, "\x6c\x00\x00\x00\x01", 5);
        p += 5;
    }
    memset(p, 106, depth + 1);
    *n = len;
    return b;
}

static uint8_t *deep_tuple(size_t depth, size_t *n)
{
    size_t len = 1 + 2 * depth + 1;
    uint8_t *b = malloc(len), *p = b;
    *p++ = 131;
    for (size_t i = 0; i < depth; i++) {
        *p++ = 104;
        *p++ = 1;
    }
    *p = 106;
    *n = len;
    return b;
}

static void check_deep(uint8_t *(*make)(size_t, size_t *), bool is_list)
{
    size_t n;
    uint8_t *b = make(DEEP, &n);
    otp_arena *a = otp_arena_new();
    otp_term t;
    otp_error err;
    assert_int_equal(otp_decode_exact(a, b, n, NULL, &t, &err), 0);
    /* Walk down to check the shape without recursion. */
    otp_term x = t;
    for (size_t i = 0; i < DEEP; i++) {
        if (is_list) {
            assert_true(otp_is_cons(x));
            assert_true(otp_tail(x) == OTP_NIL);
            x = otp_head(x);
        } else {
            assert_int_equal(otp_tuple_arity(x), 1);
            x = otp_tuple_get(x, 0);
        }
    }
    assert_true(x == OTP_NIL);
    /* And back, byte for byte, through all three encoders. */
    assert_int_equal(otp_encoded_size(t, 0), (int64_t)n);
    otp_buf out = {0};
    assert_int_equal(otp_encode_buf(&out, t, 0), 0);
    assert_int_equal(out.len, n);
    assert_memory_equal(out.data, b, n);
    memset(out.data, 0, out.len);
    assert_int_equal(otp_encode(t, 0, out.data, n), (int64_t)n);
    assert_memory_equal(out.data, b, n);
    assert_int_equal(otp_encode(t, 0, out.data, n - 1), -OTP_ENOSPC);
    otp_buf_free(&out);

    /* The depth limit: exactly DEEP levels pass, one less refuses. */
    otp_decode_opts o = {.max_depth = DEEP};
    assert_int_equal(otp_decode_exact(a, b, n, &o, &t, &err), 0);
    o.max_depth = DEEP - 1;
    assert_int_equal(otp_decode_exact(a, b, n, &o, &t, &err), -OTP_ELIMIT);
    assert_int_equal(err.code, -OTP_ELIMIT);
    assert_true(err.offset < n);
    free(b);
    otp_arena_free(a);
}

static void test_deep_list(void **state)
{
    (void)state;
    check_deep(deep_list, true);
}

static void test_deep_tuple(void **state)
{
    (void)state;
    check_deep(deep_tuple, false);
}

/* A list whose tail is written as LIST_EXT again ([1|[2|[3|...]]] the long
 * way) is one list, not deep nesting: it decodes with max_depth 1. */
static void test_long_tail_chain(void **state)
{
    (void)state;
    size_t count = 100000, len = 1 + 7 * count + 1;
    uint8_t *b = malloc(len), *p = b;
    *p++ = 131;
    for (size_t i = 0; i < count; i++) {
        memcpy(p, "\x6c\x00\x00\x00\x01\x61\x05", 7);
        p += 7;
    }
    *p = 106;
    otp_arena *a = otp_arena_new();
    otp_term t;
    otp_decode_opts o = {.max_depth = 1};
    assert_int_equal(otp_decode_exact(a, b, len, &o, &t, NULL), 0);
    assert_int_equal(otp_list_length(t), (int64_t)count);
    /* Our encoding is the canonical one: a STRING_EXT of 100000 > 65535 bytes
     * is not allowed, so LIST_EXT of 100000 small ints. */
    assert_int_equal(otp_encoded_size(t, 0), (int64_t)(1 + 5 + 2 * count + 1));
    /* Non-canonical LIST_EXT of length 0 chained a million times. */
    free(b);
    len = 1 + 5 * DEEP + 2;
    b = malloc(len);
    p = b;
    *p++ = 131;
    for (size_t i = 0; i < DEEP; i++) {
        memcpy(p, "\x6c\x00\x00\x00\x00", 5);
        p += 5;
    }
    p[0] = 97;
    p[1] = 5;
    assert_int_equal(otp_decode_exact(a, b, len, &o, &t, NULL), 0);
    assert_true(t == otp_small(5));
    free(b);
    otp_arena_free(a);
}

/* Depth counts containers inside containers: maps and funs too. */
static void test_depth_limit(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term t;
    otp_error err;
    /* #{a => #{a => #{}}}: depth 2 (the innermost map is empty). */
    static const uint8_t maps[] = {131, 116, 0, 0,   0, 1,   119, 1, 'a', 116, 0,
                                   0,   0,   1, 119, 1, 'a', 116, 0, 0,   0,   0};
    otp_decode_opts o = {.max_depth = 2};
    assert_int_equal(otp_decode_exact(a, maps, sizeof maps, &o, &t, &err), 0);
    o.max_depth = 1;
    assert_int_equal(otp_decode_exact(a, maps, sizeof maps, &o, &t, &err), -OTP_ELIMIT);
    assert_int_equal(err.offset, 9);
    assert_non_null(strstr(err.message, "limit of 1"));
    /* Scalars need no depth at all; the default limit is large. */
    static const uint8_t one[] = {131, 97, 1};
    assert_int_equal(otp_decode_exact(a, one, sizeof one, &o, &t, &err), 0);
    otp_arena_free(a);
}

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_state = UINT64_C(0x9e3779b97f4a7c15);
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(0x2545f4914f6cdd1d);
}

static void test_random_mutations(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term refs[3] = {OTP_ATOM_OK, OTP_ATOM_ERROR, OTP_ATOM_UNDEFINED};
    size_t ok = 0, iterations = 20000;
    for (size_t it = 0; it < iterations; it++) {
        const vec *v = &vecs[rng() % nvecs];
        size_t cap = v->len + 8;
        uint8_t *b = malloc(cap);
        memcpy(b, v->bytes, v->len);
        size_t n = v->len;
        int edits = 1 + (int)(rng() % 4);
        for (int e = 0; e < edits; e++) {
            uint64_t r = rng();
            size_t at = n ? (size_t)(r >> 8) % n : 0;
            switch (r % 5) {
            case 0: /* random byte */
                if (n)
                    b[at] = (uint8_t)(r >> 40);
                break;
            case 1: /* flip a bit */
                if (n)
                    b[at] ^= (uint8_t)(1u << ((r >> 40) % 8));
                break;
            case 2: /* interesting values: lengths go extreme */
                if (n)
                    b[at] = (uint8_t[]){0, 1, 0x7f, 0x80, 0xff}[(r >> 40) % 5];
                break;
            case 3: /* delete a byte */
                if (n) {
                    memmove(b + at, b + at + 1, n - at - 1);
                    n--;
                }
                break;
            case 4: /* insert a byte */
                if (n < cap) {
                    memmove(b + at + 1, b + at, n - at);
                    b[at] = (uint8_t)(r >> 40);
                    n++;
                }
                break;
            }
        }
        otp_decode_opts o = {.atom_refs = refs, .n_atom_refs = 3, .no_version = it & 1};
        otp_term t;
        size_t used;
        if (decode_checked(a, b, n, (it & 2) ? &o : NULL, &t, &used) == 0) {
            assert_true(used <= n);
            check_roundtrip(a, t);
            ok++;
        }
        free(b);
        otp_arena_reset(a);
    }
    /* Sanity: mutations leave some inputs valid, so both paths ran. */
    assert_true(ok > 1000 && ok < iterations);
    otp_arena_free(a);
}

/* Errors leave *out alone, and a NULL otp_error is fine. */
static void test_error_contract(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term t = OTP_ATOM_OK;
    static const uint8_t bad[] = {131, 104, 2, 97};
    assert_int_equal(otp_decode(a, bad, sizeof bad, NULL, &t, NULL, NULL), -OTP_EDECODE);
    assert_true(t == OTP_ATOM_OK);
    assert_int_equal(otp_decode(NULL, bad, sizeof bad, NULL, &t, NULL, NULL), -OTP_EBADARG);
    assert_int_equal(otp_decode(a, NULL, 0, NULL, &t, NULL, NULL), -OTP_EDECODE);
    otp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_truncation), cmocka_unit_test(test_bad_tags),
        cmocka_unit_test(test_lying_lengths),    cmocka_unit_test(test_compressed_bombs),
        cmocka_unit_test(test_deep_list),        cmocka_unit_test(test_deep_tuple),
        cmocka_unit_test(test_long_tail_chain),  cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_random_mutations), cmocka_unit_test(test_error_contract),
    };
    return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
