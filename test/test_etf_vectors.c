/* test_etf_vectors.c — the ETF codec against golden vectors from OTP 25
 * (test/data/etf_vectors.txt): every numbered vector decodes to the term
 * it names and re-encodes byte for byte; legacy encodings (L*) decode and
 * re-encode in the modern forms or fail like binary_to_term; edge cases (E*).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otp.h"

/* ------------------------------------------------------ vector file */

typedef struct vec {
    char id[8];     /* "01".."62", "L1".."L21" */
    uint8_t *bytes; /* the hex line, decoded */
    size_t len;
    bool abbreviated; /* the hex line ends in "..." (vectors 39, 40) */
    char result[256]; /* the result: line (legacy vectors) */
} vec;

static vec vecs[128];
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

/* Hex digits until the first non-hex character; *n gets the byte count. */
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
    vec *cur = NULL;
    while (fgets(line, sizeof line, f)) {
        if (line[0] >= '0' && line[0] <= '9' && line[1] >= '0' && line[1] <= '9' &&
            line[2] == ' ') {
            cur = &vecs[nvecs++];
            memcpy(cur->id, line, 2);
        } else if (line[0] == 'L' && line[1] >= '0' && line[1] <= '9') {
            cur = &vecs[nvecs++];
            size_t i = 0;
            while (i < 7 && line[i] != ' ')
                i++;
            memcpy(cur->id, line, i);
        } else if (line[0] != ' ') {
            cur = NULL;
        } else if (cur && strncmp(line, "  hex:", 6) == 0) {
            const char *h = line + 6;
            while (*h == ' ')
                h++;
            cur->bytes = unhex(h, &cur->len);
            cur->abbreviated = strstr(h, "...") != NULL;
        } else if (cur && strncmp(line, "  result:", 9) == 0) {
            size_t n = strnlen(line + 9, sizeof cur->result - 1);
            memcpy(cur->result, line + 9, n);
            cur->result[n] = 0;
        }
        if (nvecs == sizeof vecs / sizeof vecs[0])
            break;
    }
    fclose(f);
    return nvecs > 80 ? 0 : -1;
}

static int free_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < nvecs; i++)
        free(vecs[i].bytes);
    return 0;
}

static const vec *find(const char *id)
{
    for (size_t i = 0; i < nvecs; i++)
        if (strcmp(vecs[i].id, id) == 0)
            return &vecs[i];
    fail_msg("vector %s missing from etf_vectors.txt", id);
    return NULL;
}

/* ------------------------------------------------------------ helpers */

static void hexdump(const char *what, const uint8_t *p, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes): ", what, n);
    for (size_t i = 0; i < n && i < 96; i++)
        fprintf(stderr, "%02x", p[i]);
    fprintf(stderr, n > 96 ? "...\n" : "\n");
}

static void assert_bytes(const char *id, const uint8_t *got, size_t ngot, const uint8_t *want,
                         size_t nwant)
{
    if (ngot != nwant || memcmp(got, want, nwant) != 0) {
        fprintf(stderr, "vector %s: encoding differs\n", id);
        hexdump("want", want, nwant);
        hexdump("got ", got, ngot);
        fail();
    }
}

static otp_term decode_ok(otp_arena *a, const char *id, const uint8_t *p, size_t n)
{
    otp_term t;
    otp_error err;
    int rc = otp_decode_exact(a, p, n, NULL, &t, &err);
    if (rc != 0) {
        fprintf(stderr, "vector %s: decode failed (%s): %s\n", id, otp_strerror(rc), err.message);
        fail();
    }
    return t;
}

/* Encodes t with flags through all three entry points and checks that each
 * gives `want`. */
static void check_encode(const char *id, otp_term t, unsigned flags, const uint8_t *want,
                         size_t nwant)
{
    otp_buf b = {0};
    assert_int_equal(otp_encode_buf(&b, t, flags), 0);
    assert_bytes(id, b.data, b.len, want, nwant);
    assert_int_equal(otp_encoded_size(t, flags), (int64_t)nwant);
    uint8_t *fixed = malloc(nwant + 1);
    assert_non_null(fixed);
    assert_int_equal(otp_encode(t, flags, fixed, nwant), (int64_t)nwant);
    assert_memory_equal(fixed, want, nwant);
    assert_int_equal(otp_encode(t, flags, fixed, nwant - 1), -OTP_ENOSPC);
    free(fixed);
    otp_buf_free(&b);
}

static otp_term A(const char *s)
{
    otp_term t = otp_atom(s);
    assert_true(t != OTP_NONE);
    return t;
}

static otp_term big_bytes(otp_arena *a, bool neg, size_t n, const uint8_t *le)
{
    return otp_bignum_from_bytes(a, neg, le, n);
}

/* The vector generator's node. */
#define VEC_CREATION 1795457249u

static otp_term vec_pid(otp_arena *a, uint32_t id)
{
    return otp_pid(a, A("vecnode@vm"), id, 0, VEC_CREATION);
}

static otp_term vec_ref53(otp_arena *a)
{
    uint32_t w[3] = {0x0003402d, 0x0a740001, 0xf4848b14};
    return otp_ref(a, A("vecnode@vm"), VEC_CREATION, w, 3);
}

static otp_term repeat_atom(const char *unit, int times)
{
    char buf[1100];
    size_t n = 0, u = strlen(unit);
    for (int i = 0; i < times; i++, n += u)
        memcpy(buf + n, unit, u);
    otp_term t;
    assert_int_equal(otp_atom_intern(buf, n, &t), 0);
    return t;
}

static otp_term small_map33(otp_arena *a)
{
    otp_term kv[66];
    for (int i = 0; i < 33; i++)
        kv[2 * i] = kv[2 * i + 1] = otp_small(i + 1);
    return otp_map_kv_v(a, 33, kv);
}

/* The term each numbered vector names, built with the constructors, or
 * OTP_NONE where the test checks it some other way. */
static otp_term expected(otp_arena *a, int id)
{
    static const uint8_t two64[9] = {0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t max64[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    uint8_t big2048[257] = {0};
    big2048[256] = 1;
    switch (id) {
    case 1:
        return otp_small(0);
    case 2:
        return otp_small(255);
    case 3:
        return otp_small(256);
    case 4:
        return otp_small(-1);
    case 5:
        return otp_int(a, 2147483647);
    case 6:
        return otp_int(a, -2147483648LL);
    case 7:
        return otp_int(a, 2147483648LL);
    case 8:
        return otp_int(a, -2147483649LL);
    case 9:
        return big_bytes(a, false, 9, two64);
    case 10:
        return big_bytes(a, true, 8, max64);
    case 11:
        return otp_int(a, -(INT64_C(1) << 59));
    case 12:
        return big_bytes(a, false, 257, big2048);
    case 13:
        return otp_float(a, 1.0);
    case 14:
        return otp_float(a, -0.0);
    case 15:
        return otp_float(a, 3.141592653589793);
    case 16:
        return otp_float(a, 3.14159);
    case 17:
    case 18:
        return A("hello");
    case 19:
        return OTP_ATOM_EMPTY;
    case 20:
        return A("\xce\xbbx\xf0\x9f\x98\x80");
    case 21:
    case 22:
        return A("\xc3\xa9");
    case 23:
        return repeat_atom("a", 255);
    case 24:
        return repeat_atom("\xce\xbb", 100);
    case 25:
        return repeat_atom("\xce\xbb", 200);
    case 26:
        return OTP_TUPLE(a, OTP_ATOM_TRUE, OTP_ATOM_FALSE);
    case 27:
        return otp_tuple_v(a, 0, NULL);
    case 28:
        return OTP_TUPLE(a, otp_small(1), A("a"), otp_string(a, "b"));
    case 29: {
        otp_term el[256];
        for (int i = 0; i < 256; i++)
            el[i] = otp_small(0);
        return otp_tuple_v(a, 256, el);
    }
    case 30:
        return OTP_NIL;
    case 31:
        return otp_string(a, "abc");
    case 32:
        return OTP_LIST(a, otp_small(0), otp_small(255), otp_small(10));
    case 33:
        return OTP_LIST(a, otp_small(955), otp_small(120));
    case 34:
        return OTP_LIST(a, otp_small(1), A("a"), OTP_NIL);
    case 35:
        return otp_list_tail_v(a, 2, (otp_term[]){otp_small(1), otp_small(2)}, otp_small(3));
    case 36:
        return otp_cons(a, A("a"), A("b"));
    case 37:
        return otp_list_tail_v(a, 2, (otp_term[]){otp_small(1), otp_small(2)},
                               otp_binary(a, "", 0));
    case 38:
        return OTP_LIST(a, otp_string(a, "ab"), OTP_NIL);
    case 41:
        return otp_binary(a, "", 0);
    case 42:
        return otp_binary(a, "\x01\x02\x03", 3);
    case 43:
        return otp_bitstring(a, "\x20", 3);
    case 44:
        return otp_bitstring(a, "\xff\x70", 12);
    case 45:
        return otp_map_kv_v(a, 0, NULL);
    case 46:
        return OTP_MAP(a, A("a"), otp_small(1), A("b"), otp_small(2));
    case 47:
        return OTP_MAP(a, otp_small(1), A("one"), A("a"), A("atom"), otp_string(a, "s"), A("str"),
                       OTP_TUPLE(a, A("t")), A("tup"));
    case 48:
    case 49:
        return small_map33(a);
    case 50:
        return OTP_MAP(a, A("k"), otp_map_kv_v(a, 0, NULL), A("l"),
                       OTP_LIST(a, OTP_MAP(a, A("x"), otp_float(a, 1.5))));
    case 51:
        return vec_pid(a, 9);
    case 52:
        return vec_pid(a, 0);
    case 53:
        return vec_ref53(a);
    case 54: {
        uint32_t w[3] = {0x00034030, 0x0a750001, 0xf4848b14};
        return otp_ref(a, A("vecnode@vm"), VEC_CREATION, w, 3);
    }
    case 55:
        return otp_port(a, A("vecnode@vm"), 8, VEC_CREATION);
    case 56:
        return otp_export(a, A("lists"), A("reverse"), 1);
    case 60: {
        otp_term el[100];
        for (int i = 0; i < 100; i++)
            el[i] = otp_small('a');
        return otp_list_v(a, 100, el);
    }
    case 61:
        return OTP_TUPLE(a, A("$gen_call"),
                         OTP_TUPLE(a, vec_pid(a, 9), otp_cons(a, A("alias"), vec_ref53(a))),
                         OTP_TUPLE(a, A("is_auth"), A("vecnode@vm")));
    case 62:
        return OTP_TUPLE(a, A("ok"),
                         OTP_LIST(a, OTP_TUPLE(a, A("k"), otp_binary(a, "v", 1)),
                                  OTP_TUPLE(a, A("n"), otp_small(-7))),
                         OTP_MAP(a, A("list"), otp_string(a, "xy")), otp_float(a, 2.5),
                         otp_cons(a, otp_small(1), otp_small(2)));
    default:
        return OTP_NONE;
    }
}

/* -------------------------------------------------------------- tests */

static void test_numbered_vectors(void **state)
{
    (void)state;
    int checked = 0;
    for (size_t i = 0; i < nvecs; i++) {
        const vec *v = &vecs[i];
        if (v->id[0] == 'L' || v->abbreviated)
            continue;
        int id = atoi(v->id);
        otp_arena *a = otp_arena_new();
        otp_term t = decode_ok(a, v->id, v->bytes, v->len);

        otp_term want = expected(a, id);
        if (want != OTP_NONE && !otp_exact_eq(t, want)) {
            fprintf(stderr, "vector %s decodes to a different term\n", v->id);
            fail();
        }
        if (id == 14) { /* -0.0 keeps its sign */
            double d;
            assert_int_equal(otp_get_double(t, &d), 0);
            assert_true(d == 0.0 && signbit(d));
        }

        if (id == 48) {
            /* A hashmap on the wire; ours is sorted: [deterministic] order. */
            const vec *v49 = find("49");
            check_encode(v->id, t, 0, v49->bytes, v49->len);
        } else if (id == 60) {
            otp_buf b = {0};
            assert_int_equal(otp_encode_compressed_buf(&b, t, 0, 6), 0);
            assert_bytes(v->id, b.data, b.len, v->bytes, v->len);
            otp_buf_free(&b);
        } else {
            unsigned flags = id == 16 ? OTP_ENC_MINOR0 : id == 18 || id == 22 ? OTP_ENC_MINOR1 : 0;
            check_encode(v->id, t, flags, v->bytes, v->len);
        }
        otp_arena_free(a);
        checked++;
    }
    assert_int_equal(checked, 60); /* 62 minus the two abbreviated ones */
}

static void test_funs(void **state)
{
    (void)state;
    static const char *ids[] = {"57", "58", "59"};
    static const uint32_t arities[] = {0, 1, 1}; /* f2(A, B) returns fun(X) -> ... */
    for (int k = 0; k < 3; k++) {
        const vec *v = find(ids[k]);
        otp_arena *a = otp_arena_new();
        otp_term t = decode_ok(a, v->id, v->bytes, v->len);
        bool is_export = true;
        otp_term mod = OTP_NONE;
        uint32_t arity = 99;
        size_t nfree = 99;
        assert_true(otp_is_fun(t));
        assert_int_equal(otp_fun_info(t, &is_export, &mod, NULL, &arity, &nfree), 0);
        assert_false(is_export);
        assert_true(mod == A("vecfuns"));
        assert_int_equal(arity, arities[k]);
        assert_int_equal(nfree, (size_t)k);
        /* A fun equals itself decoded again, and differs from its siblings. */
        otp_term again = decode_ok(a, v->id, v->bytes, v->len);
        assert_true(otp_exact_eq(t, again));
        if (k) {
            const vec *prev = find(ids[k - 1]);
            assert_false(otp_exact_eq(t, decode_ok(a, prev->id, prev->bytes, prev->len)));
        }
        /* Minor 1 writes its atoms as ATOM_EXT, which changes Size: OTP
         * gives 0x4a for vecfuns:f1(42) (checked with erl). */
        if (k == 1) {
            otp_buf b = {0};
            assert_int_equal(otp_encode_buf(&b, t, OTP_ENC_MINOR1), 0);
            assert_int_equal(b.data[1], 112);
            assert_int_equal(b.data[5], 0x4a);
            otp_term back;
            assert_int_equal(otp_decode_exact(a, b.data, b.len, NULL, &back, NULL), 0);
            assert_true(otp_exact_eq(back, t));
            otp_buf_free(&b);
        }
        otp_arena_free(a);
    }
}

/* 39 and 40 are abbreviated in the file; build them here. */
static void test_long_byte_lists(void **state)
{
    (void)state;
    for (size_t n = 65535; n <= 65536; n++) {
        otp_arena *a = otp_arena_new();
        otp_term *el = malloc(n * sizeof *el);
        for (size_t i = 0; i < n; i++)
            el[i] = otp_small(1);
        otp_term t = otp_list_v(a, n, el);
        free(el);

        size_t len = n == 65535 ? 65539 : 131079;
        uint8_t *want = malloc(len);
        want[0] = 131;
        if (n == 65535) { /* 40: STRING_EXT */
            memcpy(want + 1, "\x6b\xff\xff", 3);
            memset(want + 4, 1, n);
        } else { /* 39: LIST_EXT of SMALL_INTEGER_EXT, then NIL_EXT */
            memcpy(want + 1, "\x6c\x00\x01\x00\x00", 5);
            for (size_t i = 0; i < n; i++)
                memcpy(want + 6 + 2 * i, "\x61\x01", 2);
            want[len - 1] = 106;
        }
        check_encode(n == 65535 ? "40" : "39", t, 0, want, len);
        otp_term back = decode_ok(a, "39/40", want, len);
        assert_true(otp_exact_eq(back, t));
        assert_int_equal(otp_list_length(back), (int64_t)n);
        free(want);
        otp_arena_free(a);
    }
}

/* Legacy and foreign encodings: the result line says what OTP does. */
static void test_legacy_vectors(void **state)
{
    (void)state;
    int checked = 0;
    for (size_t i = 0; i < nvecs; i++) {
        const vec *v = &vecs[i];
        if (v->id[0] != 'L')
            continue;
        otp_arena *a = otp_arena_new();
        otp_term t;
        otp_error err;
        size_t used = 0;
        int rc = otp_decode(a, v->bytes, v->len, NULL, &t, &used, &err);
        if (strstr(v->result, "badarg")) {
            if (rc == 0) {
                fprintf(stderr, "vector %s: decoded, but OTP raises badarg\n", v->id);
                fail();
            }
            assert_int_equal(rc, -OTP_EDECODE);
            assert_int_equal(err.code, rc);
            assert_true(err.offset <= v->len);
            assert_true(err.message[0] != 0);
        } else {
            if (rc != 0) {
                fprintf(stderr, "vector %s: %s\n", v->id, err.message);
                fail();
            }
            const char *re = strstr(v->result, "re-encoded:");
            assert_non_null(re);
            re += strlen("re-encoded:");
            while (*re == ' ')
                re++;
            size_t nwant;
            uint8_t *want = unhex(re, &nwant);
            check_encode(v->id, t, 0, want, nwant);
            free(want);
            if (strcmp(v->id, "L19") == 0) {
                assert_int_equal(used, 3); /* trailing garbage is left over */
                assert_int_equal(otp_decode_exact(a, v->bytes, v->len, NULL, &t, &err),
                                 -OTP_EDECODE);
                assert_int_equal(err.offset, 3);
            } else {
                assert_int_equal(used, v->len);
            }
        }
        otp_arena_free(a);
        checked++;
    }
    assert_int_equal(checked, 21);
}

/* What the legacy vectors decode to, field by field. */
static void test_legacy_terms(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term ab = A("a@b"), t, node;
    uint32_t id, serial, creation, words[5];
    uint64_t pid64;
    size_t nw;

#define DEC(vid) decode_ok(a, vid, find(vid)->bytes, find(vid)->len)
    assert_true(DEC("L1") == A("abc"));
    assert_true(DEC("L2") == A("abc"));

    t = DEC("L3");
    assert_int_equal(otp_pid_parts(t, &node, &id, &serial, &creation), 0);
    assert_true(node == ab);
    assert_int_equal(id, 1);
    assert_int_equal(serial, 2);
    assert_int_equal(creation, 1);

    t = DEC("L4");
    assert_int_equal(otp_pid_parts(t, &node, &id, &serial, &creation), 0);
    assert_int_equal(id, 0x00123456);
    assert_int_equal(serial, 0x00abcdef);
    assert_int_equal(creation, 5);

    t = DEC("L5");
    assert_int_equal(otp_port_parts(t, &node, &pid64, &creation), 0);
    assert_true(node == ab);
    assert_int_equal(pid64, 7);
    assert_int_equal(creation, 1);

    t = DEC("L6");
    assert_int_equal(otp_port_parts(t, &node, &pid64, &creation), 0);
    assert_int_equal(pid64, UINT64_C(0x0000000100000002));
    assert_int_equal(creation, 9);

    t = DEC("L8");
    assert_int_equal(otp_ref_parts(t, &node, &creation, words, &nw), 0);
    assert_int_equal(nw, 1);
    assert_int_equal(words[0], 5);
    assert_int_equal(creation, 1);

    t = DEC("L9");
    assert_int_equal(otp_ref_parts(t, &node, &creation, words, &nw), 0);
    assert_int_equal(nw, 3);
    assert_int_equal(words[0], 1);
    assert_int_equal(words[2], 3);

    t = DEC("L10");
    assert_int_equal(otp_ref_parts(t, &node, &creation, words, &nw), 0);
    assert_int_equal(nw, 5);
    assert_int_equal(words[4], 5);
    assert_int_equal(creation, 9);

    double d;
    assert_int_equal(otp_get_double(DEC("L11"), &d), 0);
    assert_true(d == 1.5);
    assert_true(DEC("L13") == otp_small(5));
    assert_true(DEC("L15") == otp_small(1));
    assert_true(DEC("L16") == otp_small(0));
    assert_true(DEC("L17") == otp_small(5));
#undef DEC
    otp_arena_free(a);
}

typedef struct edge {
    const char *id;
    const char *hex;
    int rc; /* 0, or the error expected */
} edge;

static void test_edge_cases(void **state)
{
    (void)state;
    static const edge edges[] = {
        {"E1", "83467ff8000000000000", -OTP_EDECODE},
        {"E2", "83467ff0000000000000", -OTP_EDECODE},
        {"E2-", "8346fff0000000000000", -OTP_EDECODE},
        {"E3", "836e0000", 0},
        {"E4", "836b0000", 0},
        {"E5", "834d0000000100ff", -OTP_EDECODE},
        {"E6", "834d0000000108ff", 0},
        {"E7", "834d0000000000", 0},
        {"E8", "834d000000010333", 0},
        {"E10", "8374000000027701626102770161610101", 0},
        {"E11", "83587703614062000000010000000000000000", 0},
        {"E12", "835a0000770361406200000001", 0},
        {"E14", "8371770171770166620000000b", 0},
    };
    otp_arena *a = otp_arena_new();
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        size_t n;
        uint8_t *b = unhex(edges[i].hex, &n);
        otp_term t;
        otp_error err;
        int rc = otp_decode(a, b, n, NULL, &t, NULL, &err);
        if (rc != edges[i].rc) {
            fprintf(stderr, "%s: rc %d, want %d (%s)\n", edges[i].id, rc, edges[i].rc, err.message);
            fail();
        }
        if (strcmp(edges[i].id, "E3") == 0 || strcmp(edges[i].id, "E4") == 0)
            assert_true(t == (edges[i].id[1] == '3' ? otp_small(0) : OTP_NIL));
        if (strcmp(edges[i].id, "E6") == 0)
            assert_true(otp_exact_eq(t, otp_binary(a, "\xff", 1)));
        if (strcmp(edges[i].id, "E7") == 0)
            assert_true(otp_exact_eq(t, otp_binary(a, "", 0)));
        if (strcmp(edges[i].id, "E8") == 0) {
            assert_true(otp_exact_eq(t, otp_bitstring(a, "\x20", 3)));
            otp_buf eb = {0};
            assert_int_equal(otp_encode_buf(&eb, t, 0), 0);
            assert_bytes("E8", eb.data, eb.len, (const uint8_t *)"\x83\x4d\0\0\0\x01\x03\x20", 8);
            otp_buf_free(&eb);
        }
        if (strcmp(edges[i].id, "E10") == 0) {
            assert_true(otp_exact_eq(t, OTP_MAP(a, A("a"), otp_small(1), A("b"), otp_small(2))));
            size_t used;
            assert_int_equal(otp_decode(a, b, n, NULL, &t, &used, NULL), 0);
            assert_int_equal(used, n - 1); /* the trailing 01 */
        }
        if (strcmp(edges[i].id, "E11") == 0) {
            uint32_t creation = 7;
            assert_int_equal(otp_pid_parts(t, NULL, NULL, NULL, &creation), 0);
            assert_int_equal(creation, 0);
        }
        if (strcmp(edges[i].id, "E12") == 0) {
            size_t nw = 9;
            assert_int_equal(otp_ref_parts(t, NULL, NULL, NULL, &nw), 0);
            assert_int_equal(nw, 0);
            otp_buf eb = {0};
            assert_int_equal(otp_encode_buf(&eb, t, 0), 0);
            assert_bytes("E12", eb.data, eb.len, b, n);
            otp_buf_free(&eb);
        }
        if (strcmp(edges[i].id, "E14") == 0) {
            assert_true(otp_exact_eq(t, otp_export(a, A("q"), A("f"), 11)));
            otp_buf eb = {0}; /* re-encoded with the canonical 97 */
            assert_int_equal(otp_encode_buf(&eb, t, 0), 0);
            assert_bytes("E14", eb.data, eb.len,
                         (const uint8_t *)"\x83\x71\x77\x01q\x77\x01"
                                          "f\x61\x0b",
                         10);
            otp_buf_free(&eb);
        }
        free(b);
    }

    /* E9: ATOM_EXT of 256 Latin-1 characters; 255 is fine. */
    uint8_t atom[4 + 256] = {131, 100, 1, 0};
    memset(atom + 4, 'a', 256);
    otp_term t;
    otp_error err;
    assert_int_equal(otp_decode(a, atom, sizeof atom, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_int_equal(err.offset, 1);
    atom[2] = 0;
    atom[3] = 255;
    assert_int_equal(otp_decode_exact(a, atom, 4 + 255, NULL, &t, NULL), 0);
    assert_true(t == repeat_atom("a", 255));

    /* E13: NEWER_REFERENCE_EXT with 6 words; 5 is the limit (L10). */
    uint8_t ref[4 + 5 + 4 + 24] = {131, 90, 0, 6, 119, 3, 'a', '@', 'b', 0, 0, 0, 1};
    assert_int_equal(otp_decode(a, ref, sizeof ref, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "6 id words"));

    /* E15: a compressed term whose UncompressedSize is one byte short. */
    const vec *v60 = find("60");
    uint8_t *z = malloc(v60->len);
    memcpy(z, v60->bytes, v60->len);
    assert_int_equal(z[5], 0x67);
    z[5] = 0x66;
    assert_int_equal(otp_decode(a, z, v60->len, NULL, &t, NULL, &err), -OTP_EDECODE);
    z[5] = 0x68;
    assert_int_equal(otp_decode(a, z, v60->len, NULL, &t, NULL, &err), -OTP_EDECODE);
    free(z);

    /* E16: the sign of zero survives a round trip. */
    otp_buf eb = {0};
    assert_int_equal(otp_encode_buf(&eb, otp_float(a, -0.0), 0), 0);
    assert_bytes("E16", eb.data, eb.len, (const uint8_t *)"\x83\x46\x80\0\0\0\0\0\0\0", 10);
    eb.len = 0;
    assert_int_equal(otp_encode_buf(&eb, otp_float(a, 0.0), 0), 0);
    assert_bytes("E16", eb.data, eb.len, (const uint8_t *)"\x83\x46\0\0\0\0\0\0\0\0", 10);
    otp_buf_free(&eb);
    otp_arena_free(a);
}

/* Behaviour checked against erl (OTP 25) beyond the vector file. */
static void test_otp_quirks(void **state)
{
    (void)state;
    static const edge cases[] = {
        /* Bignum sign: any non-zero byte means negative. */
        {"sign2", "836e010205", 0},
        /* REFERENCE_EXT/NEW_REFERENCE_EXT: first word must fit 18 bits; NEWER need not. */
        {"ref101-big",
         "8365770361406200040000"
         "03",
         -OTP_EDECODE},
        {"ref101-ok", "836577036140620003ffff03", 0},
        {"ref114-big",
         "837200017703614062"
         "03"
         "ffffffff",
         -OTP_EDECODE},
        {"ref90-big",
         "835a00017703614062"
         "00000003"
         "ffffffff",
         0},
        {"ref114-len0", "83720000770361406203", 0},
        /* EXPORT_EXT arity: any non-negative fixnum (97, 98 or a bignum form). */
        {"exp-neg", "837177017177016662ffffffff", -OTP_EDECODE},
        {"exp-big",
         "83717701717701666e01"
         "0005",
         0},
        {"exp-atom", "8371770171770166770178", -OTP_EDECODE},
        {"exp-2^59",
         "83717701717701666e0800"
         "0000000000000008",
         -OTP_EDECODE},
        {"exp-modint", "837161017701666101", -OTP_EDECODE},
        /* FLOAT_EXT syntax, as sys_chars_to_double checks it. */
        {"f-plus",
         "83632b312e35"
         "00000000000000000000000000000000000000000000000000000000",
         0},
        {"f-comma",
         "8363312c35"
         "0000000000000000000000000000000000000000000000000000000000",
         0},
        {"f-nodot",
         "83633135"
         "000000000000000000000000000000000000000000000000000000000000",
         -OTP_EDECODE},
        {"f-space",
         "836320312e35"
         "00000000000000000000000000000000000000000000000000000000",
         -OTP_EDECODE},
        {"f-1e400",
         "8363312e30653430"
         "300000000000000000000000000000000000000000000000",
         -OTP_EDECODE},
        {"f-1e-400",
         "8363312e3065"
         "2d3430300000000000000000000000000000000000000000000000",
         0},
        {"f-nonul",
         "8363312e"
         "31313131313131313131313131313131313131313131313131313131313131"
         "31313131313131313131313131313131313131313131313131313131",
         -OTP_EDECODE},
        /* BIT_BINARY_EXT: bits 9, or bits with an empty binary. */
        {"bits9", "834d0000000109ff", -OTP_EDECODE},
        {"bits-empty", "834d0000000003", -OTP_EDECODE},
        /* Tags that are not terms here. */
        {"tag121", "83790000", -OTP_EDECODE},
        {"tag69", "83450000", -OTP_EDECODE},
        {"noversion", "6101", -OTP_EDECODE},
        {"version-only", "83", -OTP_EDECODE},
        {"empty", "", -OTP_EDECODE},
        /* The pid's node must be an atom; '' is one. */
        {"pid-intnode",
         "835861010000000100000000"
         "00000001",
         -OTP_EDECODE},
        {"pid-emptynode",
         "8358770000000001000000000000"
         "0001",
         0},
        /* 0.0 and -0.0 are the same key in OTP 25. */
        {"map-zeros",
         "837400000002460000000000000000"
         "61014680000000000000006102",
         -OTP_EDECODE},
        {"map-1-1.0",
         "8374000000024"
         "63ff000000000000061016101"
         "6102",
         0},
    };
    otp_arena *a = otp_arena_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n;
        uint8_t *b = unhex(cases[i].hex, &n);
        otp_term t;
        otp_error err = {0};
        int rc = otp_decode(a, b, n, NULL, &t, NULL, &err);
        if (rc != cases[i].rc) {
            fprintf(stderr, "%s: rc %d, want %d (%s)\n", cases[i].id, rc, cases[i].rc, err.message);
            fail();
        }
        if (rc < 0)
            assert_true(err.offset <= n && err.message[0]);
        free(b);
    }
    otp_arena_free(a);
}

/* FUN_EXT, LOCAL_EXT and ATOM_CACHE_REF: clear messages. */
static void test_rejections_explain(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term t;
    otp_error err;
    const vec *l12 = find("L12");
    assert_int_equal(otp_decode(a, l12->bytes, l12->len, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "FUN_EXT"));
    assert_int_equal(err.offset, 1);

    const vec *l18 = find("L18");
    assert_int_equal(otp_decode(a, l18->bytes, l18->len, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "ATOM_CACHE_REF"));

    /* With the dist header's refs, tag 82 resolves, with or without 131. */
    otp_term refs[2] = {A("rex"), A("features_request")};
    otp_decode_opts o = {.atom_refs = refs, .n_atom_refs = 2, .no_version = true};
    assert_int_equal(otp_decode_exact(a, l18->bytes, l18->len, &o, &t, &err), 0);
    assert_true(t == refs[0]);
    static const uint8_t tup[] = {104, 2, 82, 1, 82, 0};
    assert_int_equal(otp_decode_exact(a, tup, sizeof tup, &o, &t, &err), 0);
    assert_true(otp_exact_eq(t, OTP_TUPLE(a, refs[1], refs[0])));
    static const uint8_t oob[] = {82, 2};
    assert_int_equal(otp_decode(a, oob, 2, &o, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "2 atom refs"));
    /* Without no_version the tag must follow 131. */
    o.no_version = false;
    assert_int_equal(otp_decode(a, tup, sizeof tup, &o, &t, NULL, &err), -OTP_EDECODE);
    assert_int_equal(err.offset, 0);

    static const uint8_t local[] = {131, 121, 1, 2, 3};
    assert_int_equal(otp_decode(a, local, sizeof local, NULL, &t, NULL, &err), -OTP_EDECODE);
    assert_non_null(strstr(err.message, "LOCAL_EXT"));

    /* Compressed terms can be refused (distribution never carries them). */
    const vec *v60 = find("60");
    otp_decode_opts nz = {.reject_compressed = true};
    assert_int_equal(otp_decode(a, v60->bytes, v60->len, &nz, &t, NULL, &err), -OTP_EDECODE);
    otp_arena_free(a);
}

/* Encoder choices: flags, Latin-1 atoms, ports, compression fallback. */
static void test_encode_forms(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_buf b = {0};
#define ENC(t, flags, hex)                                                                         \
    do {                                                                                           \
        size_t n_;                                                                                 \
        uint8_t *w_ = unhex(hex, &n_);                                                             \
        check_encode(hex, (t), (flags), w_, n_);                                                   \
        free(w_);                                                                                  \
    } while (0)
    /* term_to_binary('\x{3bb}x') in OTP 25 (minor 1): not Latin-1, so UTF-8. */
    ENC(A("\xce\xbbx"), OTP_ENC_MINOR1, "837703cebb78");
    /* minor 0: Latin-1 atoms as ATOM_EXT and floats as text. */
    ENC(OTP_LIST(a, A("\xce\xbbx"), A("abc"), otp_float(a, 1.5)), OTP_ENC_MINOR0,
        "836c000000037703cebb7864000361626363312e35303030303030303030303030303030303030"
        "30652b303000000000006a");
    ENC(otp_float(a, 0.1), OTP_ENC_MINOR0,
        "8363312e3030303030303030303030303030303035353531652d30310000000000");
    ENC(otp_float(a, -0.0), OTP_ENC_MINOR0,
        "83632d302e3030303030303030303030303030303030303030652b303000000000");
    ENC(otp_float(a, 5e-324), OTP_ENC_MINOR0,
        "8363342e3934303635363435383431323436353434313737652d33323400000000");
    ENC(otp_float(a, 1.5), OTP_ENC_MINOR1, "83463ff8000000000000");
    ENC(OTP_ATOM_EMPTY, OTP_ENC_MINOR1, "83640000");
    /* Pid nodes follow the atom flags too. */
    ENC(otp_pid(a, A("nonode@nohost"), 0, 0, 0), OTP_ENC_MINOR1,
        "835864000d6e6f6e6f6465406e6f686f7374000000000000000000000000");
    /* No version byte. */
    ENC(otp_small(1), OTP_ENC_NO_VERSION, "6101");
    ENC(OTP_TUPLE(a, A("a")), OTP_ENC_NO_VERSION | OTP_ENC_MINOR1, "680164000161");
    /* Ports: NEW_PORT_EXT up to 28 bits, then V4_PORT_EXT (checked with erl). */
    ENC(otp_port(a, A("a@b"), 0xfffffff, 9), 0, "835977036140620fffffff00000009");
    ENC(otp_port(a, A("a@b"), 0x20000000, 9), 0, "83787703614062000000002000000000000009");
    /* Integers at the form boundaries. */
    ENC(otp_small(-2147483649LL), 0, "836e040101000080");
    ENC(otp_int(a, OTP_SMALL_MAX), 0, "836e0800ffffffffffffff3f");
    ENC(otp_int(a, OTP_SMALL_MIN), 0, "836e08010000000000000040");
    ENC(otp_uint(a, UINT64_MAX), 0, "836e0800ffffffffffffffff");
    ENC(otp_int(a, INT64_MIN), 0, "836e08010000000000000080");
    /* An export with a large arity takes INTEGER_EXT, as in OTP. */
    ENC(otp_export(a, A("q"), A("f"), 256), 0, "83717701717701666200000100");
    /* Improper byte lists are not strings. */
    ENC(otp_list_tail_v(a, 2, (otp_term[]){otp_small(1), otp_small(2)}, otp_small(3)), 0,
        "836c00000002610161026103");
    /* A unicode atom of 255 characters (1020 bytes). */
    otp_term big_atom = repeat_atom("\xf0\x9f\x98\x80", 255);
    assert_int_equal(otp_encode_buf(&b, big_atom, 0), 0);
    assert_int_equal(b.len, 4 + 1020);
    assert_int_equal(b.data[1], 118);
    otp_term back;
    assert_int_equal(otp_decode_exact(a, b.data, b.len, NULL, &back, NULL), 0);
    assert_true(back == big_atom);
    b.len = 0;

    /* Compression: small terms stay plain, level 0 stays plain. */
    assert_int_equal(otp_encode_compressed_buf(&b, A("a"), OTP_ENC_MINOR1, 6), 0);
    assert_bytes("compress a", b.data, b.len, (const uint8_t *)"\x83\x64\x00\x01\x61", 5);
    b.len = 0;
    otp_term l100 = expected(a, 60);
    assert_int_equal(otp_encode_compressed_buf(&b, l100, 0, 0), 0);
    assert_int_equal(b.len, 1 + 3 + 100);
    assert_int_equal(b.data[1], 107);
    b.len = 0;
    /* Levels 1 and 9 write zlib headers 78 01 and 78 da, like OTP. */
    assert_int_equal(otp_encode_compressed_buf(&b, l100, 0, 1), 0);
    assert_bytes("level 1", b.data, b.len,
                 (const uint8_t *)"\x83\x50\x00\x00\x00\x67\x78\x01\xcb\x66\x48\x49\xa4\x03\x00"
                                  "\x00\xcc\xcb\x26\xb4",
                 20);
    b.len = 0;
    assert_int_equal(otp_encode_compressed_buf(&b, l100, OTP_ENC_NO_VERSION, 9), 0);
    assert_int_equal(b.data[0], 80);
    otp_decode_opts nv = {.no_version = true};
    assert_int_equal(otp_decode_exact(a, b.data, b.len, &nv, &back, NULL), 0);
    assert_true(otp_exact_eq(back, l100));
    b.len = 0;
    assert_int_equal(otp_encode_compressed_buf(&b, l100, 0, 10), -OTP_EBADARG);

    /* Invalid terms. */
    assert_int_equal(otp_encode_buf(&b, OTP_NONE, 0), -OTP_EBADARG);
    assert_int_equal(b.len, 0);
    otp_term bad = OTP_TUPLE(a, otp_small(1), otp_small(2));
    ((otp_term *)otp_tuple_elems(bad))[1] = OTP_NONE;
    assert_int_equal(otp_encode_buf(&b, bad, 0), -OTP_EBADARG);
    assert_int_equal(b.len, 0);
    assert_int_equal(otp_encoded_size(bad, 0), -OTP_EBADARG);
    uint8_t small[4];
    assert_int_equal(otp_encode(bad, 0, small, sizeof small), -OTP_EBADARG);
    assert_int_equal(otp_encode(otp_small(1), 0, small, 0), -OTP_ENOSPC);
    assert_int_equal(otp_encode(otp_small(1), 0, small, 3), 3);

    /* Appending keeps what the buffer held. */
    b.len = 0;
    assert_int_equal(otp_encode_buf(&b, otp_small(1), 0), 0);
    assert_int_equal(otp_encode_buf(&b, otp_small(2), OTP_ENC_NO_VERSION), 0);
    assert_bytes("append", b.data, b.len, (const uint8_t *)"\x83\x61\x01\x61\x02", 5);
    otp_buf_free(&b);
    assert_null(b.data);
    otp_buf_free(NULL);
#undef ENC
    otp_arena_free(a);
}

/* Pids, ports, refs and funs survive decode/encode/decode exactly. */
static void test_roundtrip_built_terms(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    uint32_t w5[5] = {1, 2, 3, 4, 0xffffffff};
    otp_term terms[] = {
        otp_ref(a, A("x@y"), 0, w5, 5),
        otp_pid(a, A("\xce\xbb@h"), 0xffffffff, 0xffffffff, 0xffffffff),
        otp_map_kv_v(a, 0, NULL),
        OTP_MAP(a, otp_float(a, 1.0), A("f"), otp_small(1), A("i")),
        otp_bitstring(a, "\xff", 1),
        otp_binary(a, "0123456789012345678901234567890123456789012345678901234567890123456789", 70),
        otp_string(a, "\xce\xbb"),
        otp_int(a, -5),
    };
    otp_buf b = {0};
    for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {
        assert_true(terms[i] != OTP_NONE);
        for (unsigned flags = 0; flags < 8; flags++) {
            b.len = 0;
            assert_int_equal(otp_encode_buf(&b, terms[i], flags), 0);
            otp_term back;
            otp_decode_opts o = {.no_version = true};
            otp_error err;
            if (otp_decode_exact(a, b.data, b.len, &o, &back, &err) != 0) {
                fprintf(stderr, "term %zu flags %u: %s\n", i, flags, err.message);
                fail();
            }
            assert_true(otp_exact_eq(back, terms[i]));
            assert_int_equal(otp_encoded_size(terms[i], flags), (int64_t)b.len);
        }
    }
    otp_buf_free(&b);
    otp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbered_vectors), cmocka_unit_test(test_funs),
        cmocka_unit_test(test_long_byte_lists),  cmocka_unit_test(test_legacy_vectors),
        cmocka_unit_test(test_legacy_terms),     cmocka_unit_test(test_edge_cases),
        cmocka_unit_test(test_otp_quirks),       cmocka_unit_test(test_rejections_explain),
        cmocka_unit_test(test_encode_forms),     cmocka_unit_test(test_roundtrip_built_terms),
    };
    return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
