/* etf.h — the External Term Format: term_to_binary and binary_to_term.
 *
 * The decoder never trusts its input: every length is checked against the
 * bytes that remain, nesting is walked with an explicit stack (never the C
 * stack), and every failure reports the byte offset and the reason.
 */
#ifndef OTP_ETF_H
#define OTP_ETF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common.h"
#include "term.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OTP_ETF_VERSION 131

/* Default limits; 0 in otp_decode_opts selects them. */
#define OTP_DECODE_DEFAULT_MAX_DEPTH    10000000u              /* nesting levels */
#define OTP_DECODE_DEFAULT_MAX_INFLATED (256u * 1024u * 1024u) /* compressed terms */

typedef struct otp_decode_opts {
    /* The dist layer's atom-cache references for this frame, in header
     * order: ATOM_CACHE_REF i decodes to atom_refs[i]. NULL outside
     * distribution, where tag 82 is an error. Borrowed for the call. */
    const otp_term *atom_refs;
    size_t n_atom_refs;
    /* Deepest nesting accepted (tuples, lists, maps, funs inside each
     * other). 0 = OTP_DECODE_DEFAULT_MAX_DEPTH. Deeper input fails with
     * -OTP_ELIMIT. */
    size_t max_depth;
    /* Largest inflated size of a compressed term (tag 80). 0 = default. */
    size_t max_inflated;
    /* Accept the version byte 131 only (false), or also accept input that
     * starts directly with a tag (true; distribution header mode). */
    bool no_version;
    /* Accept tag 80 (compressed). Distribution frames never carry it. */
    bool reject_compressed;
} otp_decode_opts;

/* Decodes one term from buf[0..len). With opts == NULL: the input starts with
 * 131 and compressed terms are accepted. The term is allocated in `a`.
 * *used (if not NULL) gets the bytes consumed, so trailing data (the payload
 * after a control message) can be found; trailing bytes are not an error.
 * Returns 0, or a negative code with *err (if not NULL) saying where and
 * why. On failure nothing decoded remains referenced (the arena may have
 * grown). */
int otp_decode(otp_arena *a, const uint8_t *buf, size_t len, const otp_decode_opts *opts,
               otp_term *out, size_t *used, otp_error *err);

/* Same, and checks that exactly len bytes were used. */
int otp_decode_exact(otp_arena *a, const uint8_t *buf, size_t len, const otp_decode_opts *opts,
                     otp_term *out, otp_error *err);

/* binary_to_term(Bin): decodes the ETF bytes held by the binary term bin.
 * Unlike otp_decode, binaries in the result larger than
 * OTP_BINARY_HEAP_MAX bytes are not copied when bin is refcounted: they
 * point into bin's block, and `a` holds a reference to it. The block lives
 * as long as any of them does, so a small binary kept for long pins it all;
 * copy such a binary's bytes with otp_binary() to let the block go. This is
 * how the distribution layer decodes frames without copying large payloads.
 * Otherwise the same results and errors as otp_decode; *used counts from
 * the binary's first byte. */
int otp_decode_binary(otp_arena *a, otp_term bin, const otp_decode_opts *opts, otp_term *out,
                      size_t *used, otp_error *err);

/* Encoding options (bit flags). The default (0) gives term_to_binary(T,
 * [{minor_version, 2}]) — the form OTP 26+ uses by default and every node
 * uses on the wire: UTF-8 atoms, NEW_FLOAT_EXT. */
enum {
    OTP_ENC_NO_VERSION = 1 << 0, /* omit the leading 131 (dist header mode) */
    OTP_ENC_MINOR1 = 1 << 1,     /* OTP 25's default term_to_binary: Latin-1 atoms as ATOM_EXT */
    OTP_ENC_MINOR0 = 1 << 2,     /* legacy: FLOAT_EXT text floats, Latin-1 atoms */
};

/* A growable byte buffer owned by the caller. Initialise with {0} (it then
 * allocates with malloc) and release with otp_buf_free(). */
typedef struct otp_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} otp_buf;
void otp_buf_free(otp_buf *b);
int otp_buf_reserve(otp_buf *b, size_t extra);

/* Appends the encoding of t to b. Returns 0, -OTP_ENOMEM, or -OTP_EBADARG if
 * t is not a valid term (OTP_NONE somewhere inside). */
int otp_encode_buf(otp_buf *b, otp_term t, unsigned flags);
/* Exact number of bytes otp_encode will write for t with these flags, or a
 * negative error. */
int64_t otp_encoded_size(otp_term t, unsigned flags);
/* Encodes straight into a caller's buffer. Returns the number of bytes
 * written, or -OTP_ENOSPC if cap is too small (nothing useful written). */
int64_t otp_encode(otp_term t, unsigned flags, uint8_t *buf, size_t cap);
/* term_to_iovec(T): the encoding as segments, with every refcounted binary
 * (more than OTP_BINARY_HEAP_MAX bytes, whole bytes) referenced in place
 * instead of copied — what a connection hands to writev or io_uring, so a
 * 1 MB binary costs a pointer, not a copy. Binaries inside a closure's
 * environment are copied. Initialise with {0}; otp_encode_iov appends.
 * The referenced bytes belong to the terms' binaries: the iovecs are valid
 * while those terms live (keep their arena) and the iobuf is unchanged. */
typedef struct otp_iobuf_ref {
    size_t at;           /* offset in bytes where this binary's data goes */
    const uint8_t *data; /* borrowed from the term */
    size_t len;
} otp_iobuf_ref;
typedef struct otp_iobuf {
    otp_buf bytes; /* the encoding, minus the referenced binaries' data */
    otp_iobuf_ref *refs;
    size_t nrefs, caprefs;
} otp_iobuf;
/* Appends t's encoding. Returns 0, -OTP_ENOMEM or -OTP_EBADARG (the iobuf
 * is then as before). */
int otp_encode_iov(otp_iobuf *v, otp_term t, unsigned flags);
/* Bytes on the wire: bytes.len plus every referenced binary. */
size_t otp_iobuf_size(const otp_iobuf *v);
/* Fills iov[0..max) in wire order; returns how many entries the whole
 * encoding needs (more than max means iov holds only the first max). */
size_t otp_iobuf_iovec(const otp_iobuf *v, struct iovec *iov, size_t max);
void otp_iobuf_reset(otp_iobuf *v); /* empties it, keeps its memory */
void otp_iobuf_free(otp_iobuf *v);  /* frees its memory; {0} again */

/* term_to_binary(T, [compressed | {compressed, Level}]): tag 80 with zlib,
 * level 0..9 (Erlang's default is 6). Like Erlang, falls back to the plain
 * encoding when compression does not make it smaller. */
int otp_encode_compressed_buf(otp_buf *b, otp_term t, unsigned flags, int level);

#ifdef __cplusplus
}
#endif
#endif
