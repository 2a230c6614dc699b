/* test_etf_zerocopy.c — the codec paths that do not copy large binaries:
 * otp_decode_binary (binaries point into the input's block) and
 * otp_encode_iov (binaries referenced by the iovecs). Both must give
 * exactly what the copying paths give, and keep blocks alive correctly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "otp.h"
#include "term_internal.h"

/* {big, [small, big2 | tail], <<bits:3>>, 7} with big binaries of 1000 and
 * 65 bytes (just over the heap limit) and a 64-byte one (just under). */
static otp_term sample(otp_arena *a)
{
    uint8_t big[1000], b65[65], b64[64];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);
    memset(b65, 0x41, sizeof b65);
    memset(b64, 0x42, sizeof b64);
    uint8_t bits = 0xa0;
    otp_term l = otp_cons(a, otp_binary(a, b64, sizeof b64),
                          otp_cons(a, otp_binary(a, b65, sizeof b65), otp_atom("tail")));
    return OTP_TUPLE(a, otp_binary(a, big, sizeof big), l, otp_bitstring(a, &bits, 3),
                     otp_small(7));
}

static bool points_into(otp_term bin, const uint8_t *lo, size_t len)
{
    size_t n;
    uint64_t bits;
    const uint8_t *d = otp_bitstring_data(bin, &bits);
    n = (size_t)((bits + 7) / 8);
    return d && (uintptr_t)d >= (uintptr_t)lo && (uintptr_t)(d + n) <= (uintptr_t)(lo + len);
}

static void test_decode_binary_shares(void **state)
{
    (void)state;
    otp_arena *src = otp_arena_new(), *dst = otp_arena_new();
    otp_term t = sample(src);
    otp_buf buf = {0};
    assert_int_equal(otp_encode_buf(&buf, t, 0), 0);
    otp_term input = otp_binary(src, buf.data, buf.len); /* refcounted: > 64 bytes */
    size_t in_len;
    const uint8_t *in = otp_binary_data(input, &in_len);

    otp_term out = OTP_NONE;
    size_t used = 0;
    otp_error err;
    assert_int_equal(otp_decode_binary(dst, input, NULL, &out, &used, &err), 0);
    assert_int_equal(used, buf.len);
    assert_true(otp_exact_eq(out, t));

    /* The 1000- and 65-byte binaries point into the input; the 64-byte one
     * and the bitstring were copied. */
    otp_term big = otp_tuple_get(out, 0), lst = otp_tuple_get(out, 1);
    assert_true(points_into(big, in, in_len));
    assert_false(points_into(otp_head(lst), in, in_len));
    assert_true(points_into(otp_head(otp_tail(lst)), in, in_len));
    assert_false(points_into(otp_tuple_get(out, 2), in, in_len));

    /* The input's arena can go: the result holds the block. */
    otp_arena_free(src);
    assert_true(otp_exact_eq(otp_tuple_get(out, 0), otp_tuple_get(out, 0)));
    size_t n;
    const uint8_t *d = otp_binary_data(big, &n);
    assert_int_equal(n, 1000);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(d[i], (uint8_t)(i * 7));

    /* A copy into a third arena shares the block too, and outlives dst. */
    otp_arena *third = otp_arena_new();
    otp_term kept = otp_copy(third, big);
    otp_arena_free(dst);
    d = otp_binary_data(kept, &n);
    assert_int_equal(n, 1000);
    assert_int_equal(d[999], (uint8_t)(999 * 7));
    otp_arena_free(third);
    otp_buf_free(&buf);
}

static void test_decode_binary_edges(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term out;
    otp_error err;
    /* Not a binary: a precise error. */
    assert_int_equal(otp_decode_binary(a, otp_small(1), NULL, &out, NULL, &err), -OTP_EBADARG);
    assert_non_null(strstr(err.message, "not a binary"));
    /* A heap binary input decodes (nothing to share). */
    const uint8_t small[] = {131, 97, 5};
    assert_int_equal(
        otp_decode_binary(a, otp_binary(a, small, sizeof small), NULL, &out, NULL, &err), 0);
    assert_true(otp_exact_eq(out, otp_small(5)));
    /* A sub-binary input: offsets count from its first byte. */
    uint8_t raw[200];
    memset(raw, 0xee, sizeof raw);
    otp_buf buf = {0};
    uint8_t payload[100];
    memset(payload, 3, sizeof payload);
    assert_int_equal(otp_encode_buf(&buf, otp_binary(a, payload, sizeof payload), 0), 0);
    memcpy(raw + 50, buf.data, buf.len);
    otp_term whole = otp_binary(a, raw, sizeof raw);
    otp__binary *sub = otp_arena_alloc(a, sizeof *sub);
    *sub = *(const otp__binary *)otp__ptr(whole);
    sub->data += 50;
    sub->bits = (uint64_t)buf.len * 8;
    size_t used;
    assert_int_equal(otp_decode_binary(a, otp__boxed(sub), NULL, &out, &used, &err), 0);
    assert_int_equal(used, buf.len);
    assert_true(otp_exact_eq(out, otp_binary(a, payload, sizeof payload)));
    /* Truncated: the error names an offset inside the binary. */
    sub->bits -= 8;
    assert_int_equal(otp_decode_binary(a, otp__boxed(sub), NULL, &out, &used, &err), -OTP_EDECODE);
    assert_int_equal(err.offset, 1);
    /* Compressed input: inflated bytes are private, so binaries are copied. */
    otp_buf z = {0};
    uint8_t zeros[4096] = {0};
    otp_term zt = otp_binary(a, zeros, sizeof zeros);
    assert_int_equal(otp_encode_compressed_buf(&z, zt, 0, 6), 0);
    assert_int_equal(z.data[1], 80);
    otp_arena *b = otp_arena_new();
    otp_term zin = otp_binary(a, z.data, z.len);
    assert_int_equal(otp_decode_binary(b, zin, NULL, &out, NULL, &err), 0);
    otp_arena_free(a); /* the input goes; the result is a copy */
    size_t n;
    const uint8_t *d = otp_binary_data(out, &n);
    assert_int_equal(n, sizeof zeros);
    assert_memory_equal(d, zeros, n);
    otp_arena_free(b);
    otp_buf_free(&buf);
    otp_buf_free(&z);
}

/* Gathers an iobuf's segments into one buffer. */
static void gather(const otp_iobuf *v, otp_buf *out, size_t *nseg)
{
    size_t n = otp_iobuf_iovec(v, NULL, 0);
    struct iovec *iov = calloc(n ? n : 1, sizeof *iov);
    assert_int_equal(otp_iobuf_iovec(v, iov, n), n);
    out->len = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(otp_buf_reserve(out, iov[i].iov_len), 0);
        memcpy(out->data + out->len, iov[i].iov_base, iov[i].iov_len);
        out->len += iov[i].iov_len;
    }
    *nseg = n;
    free(iov);
}

static void test_encode_iov(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new();
    otp_term t = sample(a);
    otp_buf flat = {0}, joined = {0};
    otp_iobuf v = {0};
    assert_int_equal(otp_encode_buf(&flat, t, 0), 0);
    assert_int_equal(otp_encode_iov(&v, t, 0), 0);
    /* Two binaries referenced, so five segments: bytes, big, bytes, b65, bytes. */
    assert_int_equal(v.nrefs, 2);
    assert_int_equal(otp_iobuf_size(&v), flat.len);
    size_t nseg;
    gather(&v, &joined, &nseg);
    assert_int_equal(nseg, 5);
    assert_int_equal(joined.len, flat.len);
    assert_memory_equal(joined.data, flat.data, flat.len);
    /* A short iovec array gets the first entries and the count needed. */
    struct iovec two[2];
    assert_int_equal(otp_iobuf_iovec(&v, two, 2), 5);
    assert_int_equal(two[0].iov_len, 8); /* 131, SMALL_TUPLE_EXT 4, BINARY_EXT and length */

    /* Appending: a second term follows the first, flags respected. */
    otp_buf flat2 = {0};
    assert_int_equal(otp_encode_buf(&flat2, t, 0), 0);
    assert_int_equal(otp_encode_buf(&flat2, t, OTP_ENC_NO_VERSION), 0);
    otp_iobuf_reset(&v);
    assert_int_equal(otp_iobuf_size(&v), 0);
    assert_int_equal(otp_encode_iov(&v, t, 0), 0);
    assert_int_equal(otp_encode_iov(&v, t, OTP_ENC_NO_VERSION), 0);
    gather(&v, &joined, &nseg);
    assert_int_equal(joined.len, flat2.len);
    assert_memory_equal(joined.data, flat2.data, flat2.len);

    /* A failed encode leaves the iobuf as it was. */
    size_t len = v.bytes.len, nrefs = v.nrefs;
    otp_term bad = OTP_TUPLE(a, otp_tuple_get(t, 0), OTP_NONE);
    assert_int_equal(otp_encode_iov(&v, bad, 0), -OTP_EBADARG);
    assert_int_equal(v.bytes.len, len);
    assert_int_equal(v.nrefs, nrefs);

    /* Nothing large: one segment, equal to the flat bytes. */
    otp_iobuf_reset(&v);
    assert_int_equal(otp_encode_iov(&v, otp_atom("ok"), 0), 0);
    assert_int_equal(otp_iobuf_iovec(&v, NULL, 0), 1);

    otp_iobuf_free(&v);
    otp_buf_free(&flat);
    otp_buf_free(&flat2);
    otp_buf_free(&joined);
    otp_arena_free(a);
}

/* Decode without copying, then encode without copying: the 1 MB payload
 * is never copied, and the bytes match the copying paths. */
static void test_round_trip_large(void **state)
{
    (void)state;
    otp_arena *a = otp_arena_new(), *b = otp_arena_new();
    size_t size = 1u << 20;
    uint8_t *payload;
    otp_term big = otp_binary_new(a, size, &payload);
    for (size_t i = 0; i < size; i++)
        payload[i] = (uint8_t)(i ^ (i >> 8));
    otp_term t = OTP_TUPLE(a, otp_atom("data"), big);
    otp_buf flat = {0}, joined = {0};
    assert_int_equal(otp_encode_buf(&flat, t, 0), 0);
    otp_term wire = otp_binary(a, flat.data, flat.len);
    otp_term out;
    otp_error err;
    assert_int_equal(otp_decode_binary(b, wire, NULL, &out, NULL, &err), 0);
    otp_iobuf v = {0};
    assert_int_equal(otp_encode_iov(&v, out, 0), 0);
    size_t nseg;
    gather(&v, &joined, &nseg);
    assert_int_equal(nseg, 2);
    assert_int_equal(joined.len, flat.len);
    assert_memory_equal(joined.data, flat.data, flat.len);
    otp_iobuf_free(&v);
    otp_buf_free(&flat);
    otp_buf_free(&joined);
    otp_arena_free(a);
    otp_arena_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_binary_shares),
        cmocka_unit_test(test_decode_binary_edges),
        cmocka_unit_test(test_encode_iov),
        cmocka_unit_test(test_round_trip_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
