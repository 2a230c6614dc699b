/* fuzz_decode.c — libFuzzer target for the ETF decoder.
 *
 * Decodes the input three ways (stand-alone with 131; dist header mode with
 * no version byte and a small atom-cache table; tight depth and inflate
 * limits). A failure must come with a well-formed error; a success must
 * re-encode (every flag set), report its exact size, and decode again to an
 * =:= term; the zero-copy decode and iovec encode must agree with the
 * copying paths.
 */
#include <stdlib.h>
#include <string.h>

#include "otp.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static void roundtrip(otp_arena *a, otp_term t, unsigned flags)
{
    otp_buf b = {0};
    CHECK(otp_encode_buf(&b, t, flags) == 0);
    CHECK(otp_encoded_size(t, flags) == (int64_t)b.len);

    uint8_t *fixed = malloc(b.len);
    CHECK(fixed != NULL);
    CHECK(otp_encode(t, flags, fixed, b.len) == (int64_t)b.len);
    CHECK(memcmp(fixed, b.data, b.len) == 0);
    CHECK(otp_encode(t, flags, fixed, b.len - 1) == -OTP_ENOSPC);
    free(fixed);

    otp_decode_opts o = {.no_version = (flags & OTP_ENC_NO_VERSION) != 0};
    otp_term back;
    otp_error err;
    CHECK(otp_decode_exact(a, b.data, b.len, &o, &back, &err) == 0);
    CHECK(otp_exact_eq(back, t));

    /* Our own output is canonical: encoding it again gives the same bytes. */
    otp_buf again = {0};
    CHECK(otp_encode_buf(&again, back, flags) == 0);
    CHECK(again.len == b.len && memcmp(again.data, b.data, b.len) == 0);
    otp_buf_free(&again);
    otp_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static otp_arena *a;
    static otp_term refs[4];
    if (!a) {
        a = otp_arena_new();
        refs[0] = OTP_ATOM_OK;
        refs[1] = OTP_ATOM_EMPTY;
        refs[2] = otp_atom("rex");
        refs[3] = otp_atom("vecnode@vm");
    }
    const otp_decode_opts modes[3] = {
        {0},
        {.atom_refs = refs, .n_atom_refs = 4, .no_version = true},
        {.max_depth = 16, .max_inflated = 4096, .reject_compressed = (size & 1) != 0},
    };
    for (int m = 0; m < 3; m++) {
        otp_term t = OTP_ATOM_OK;
        size_t used = SIZE_MAX;
        otp_error err;
        memset(&err, 0x5a, sizeof err);
        int rc = otp_decode(a, data, size, m ? &modes[m] : NULL, &t, &used, &err);
        if (rc < 0) {
            CHECK(rc == -OTP_EDECODE || rc == -OTP_ELIMIT || rc == -OTP_ENOMEM);
            CHECK(err.code == rc);
            CHECK(err.offset <= size);
            CHECK(err.message[0] != 0 && memchr(err.message, 0, sizeof err.message));
            CHECK(t == OTP_ATOM_OK); /* untouched on failure */
            continue;
        }
        CHECK(err.code == 0);
        CHECK(used >= 1 && used <= size);
        roundtrip(a, t, 0);
        roundtrip(a, t, OTP_ENC_NO_VERSION | OTP_ENC_MINOR1);
        roundtrip(a, t, OTP_ENC_MINOR0);

        otp_buf z = {0};
        CHECK(otp_encode_compressed_buf(&z, t, 0, 1 + (int)(size % 9)) == 0);
        otp_term back;
        CHECK(otp_decode_exact(a, z.data, z.len, NULL, &back, NULL) == 0);
        CHECK(otp_exact_eq(back, t));
        otp_buf_free(&z);

        if (m == 0) {
            /* The zero-copy paths agree with the copying ones. */
            otp_term in = otp_binary(a, data, size), shared;
            size_t used2;
            CHECK(otp_decode_binary(a, in, NULL, &shared, &used2, NULL) == 0);
            CHECK(used2 == used && otp_exact_eq(shared, t));
            otp_iobuf v = {0};
            otp_buf flat = {0};
            CHECK(otp_encode_iov(&v, shared, 0) == 0);
            CHECK(otp_encode_buf(&flat, t, 0) == 0);
            CHECK(otp_iobuf_size(&v) == flat.len);
            size_t niov = otp_iobuf_iovec(&v, NULL, 0), at = 0;
            struct iovec *iov = malloc((niov ? niov : 1) * sizeof *iov);
            CHECK(iov && otp_iobuf_iovec(&v, iov, niov) == niov);
            for (size_t i = 0; i < niov; i++) {
                CHECK(memcmp(flat.data + at, iov[i].iov_base, iov[i].iov_len) == 0);
                at += iov[i].iov_len;
            }
            CHECK(at == flat.len);
            free(iov);
            otp_buf_free(&flat);
            otp_iobuf_free(&v);
        }
    }
    otp_arena_reset(a);
    return 0;
}
