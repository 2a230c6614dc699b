/* dist_frame.c — one received distribution frame to a control message and
 * its payload (dist-protocol.md §3.2–3.4): pass-through frames (112), and
 * header mode — the normal header with its atom cache (131, 68) and
 * fragmented messages (131, 69 start, 131, 70 continuation). Untrusted
 * input: every length is checked, and fragments are bounded in number and
 * in bytes per connection. Fuzzed by fuzz_dist_frame.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "otp/etf.h"
#include "term_internal.h"

#define MAX_SEQS       256          /* fragmented messages in progress */
#define MAX_FRAG_BYTES (512u << 20) /* their bytes together */

typedef struct frag_seq {
    uint64_t seq, next; /* the FragId the next fragment must carry */
    otp_term *refs;
    size_t nrefs;
    /* The message so far, in a refcounted block: its big binaries are
     * decoded as references into it, so a 1 MB payload is not copied again
     * on its way to the process. */
    otp__refc *blk;
    size_t len;
} frag_seq;

void otp__dist_rx_init(otp__dist_rx *rx)
{
    memset(rx, 0, sizeof *rx);
}

static void seq_free(frag_seq *s)
{
    free(s->refs);
    if (s->blk)
        otp__refc_release(s->blk);
}

void otp__dist_rx_free(otp__dist_rx *rx)
{
    for (size_t i = 0; i < rx->nseqs; i++)
        seq_free(&rx->seqs[i]);
    free(rx->seqs);
    memset(rx, 0, sizeof *rx);
}

static int bad(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* The atom cache part of a header at b[*pos..len): fills refs[0..*n).
 * Returns 0 or -1 with why. */
static int parse_refs(otp__dist_rx *rx, const uint8_t *b, size_t len, size_t *pos, otp_term *refs,
                      size_t *n, char *why, size_t cap)
{
    size_t p = *pos;
    if (p >= len)
        return bad(why, cap, "header cut before its number of atom references");
    size_t nr = b[p++];
    *n = nr;
    if (nr == 0) {
        *pos = p;
        return 0;
    }
    size_t fl = nr / 2 + 1;
    if (len - p < fl)
        return bad(why, cap, "header cut in its flags");
    const uint8_t *flags = b + p;
    p += fl;
    bool longatoms = (flags[nr / 2] >> ((nr % 2) * 4)) & 1;
    for (size_t i = 0; i < nr; i++) {
        unsigned nib = (flags[i / 2] >> ((i % 2) * 4)) & 0xF;
        unsigned seg = nib & 7;
        if (p >= len)
            return bad(why, cap, "header cut in atom reference %zu", i);
        unsigned slot = seg << 8 | b[p++];
        if (nib & 8) {
            size_t al;
            if (longatoms) {
                if (len - p < 2)
                    return bad(why, cap, "header cut in atom reference %zu", i);
                al = (size_t)b[p] << 8 | b[p + 1];
                p += 2;
            } else {
                if (p >= len)
                    return bad(why, cap, "header cut in atom reference %zu", i);
                al = b[p++];
            }
            if (len - p < al)
                return bad(why, cap, "atom reference %zu runs past the frame", i);
            otp_term a;
            if (otp_atom_intern((const char *)b + p, al, &a) < 0)
                return bad(why, cap, "atom reference %zu is not a valid atom", i);
            p += al;
            rx->cache[slot] = a;
        } else if (!rx->cache[slot]) {
            return bad(why, cap, "atom reference %zu names empty cache slot %u", i, slot);
        }
        refs[i] = rx->cache[slot];
    }
    *pos = p;
    return 0;
}

/* Control and payload from b[0..len), terms without version bytes (header
 * mode) or with them (pass-through). */
static int decode_body(otp_arena *a, const uint8_t *b, size_t len, otp__refc *share,
                       const otp_term *refs, size_t nrefs, bool header, int64_t *op, otp_term *ctl,
                       otp_term *msg, char *why, size_t cap)
{
    otp_decode_opts o = {
        .atom_refs = header ? refs : NULL, .n_atom_refs = header ? nrefs : 0, .no_version = header};
    size_t used = 0, pused = 0;
    otp_error err;
    *msg = OTP_NONE;
    if (otp__decode_shared(a, b, len, &o, share, ctl, &used, &err) < 0)
        return bad(why, cap, "bad control message: %s at byte %zu", err.message, err.offset);
    if (used < len) {
        if (otp__decode_shared(a, b + used, len - used, &o, share, msg, &pused, &err) < 0)
            return bad(why, cap, "bad message payload: %s at byte %zu", err.message,
                       err.offset + used);
        if (pused != len - used)
            return bad(why, cap, "bad message payload: %zu bytes follow it", len - used - pused);
    }
    size_t ar = otp_is_tuple(*ctl) ? otp_tuple_arity(*ctl) : 0;
    if (ar == 0 || otp_get_int64(otp_tuple_get(*ctl, 0), op) < 0 || *op < 1 || *op > OTP__CTL_MAX)
        return bad(why, cap, "unknown control message");
    switch (*op) {
    case OTP__CTL_SEND:
    case OTP__CTL_SEND_TT:
    case OTP__CTL_SEND_SENDER:
    case OTP__CTL_SEND_SENDER_TT:
        if (ar < 3 || *msg == OTP_NONE || !otp_is_pid(otp_tuple_get(*ctl, 2)))
            return bad(why, cap, "SEND without a pid or a message");
        break;
    case OTP__CTL_REG_SEND:
    case OTP__CTL_REG_SEND_TT:
        if (ar < 4 || *msg == OTP_NONE || !otp_is_atom(otp_tuple_get(*ctl, 3)))
            return bad(why, cap, "REG_SEND without a name or a message");
        break;
    case OTP__CTL_ALIAS_SEND:
    case OTP__CTL_ALIAS_SEND_TT:
        if (ar < 3 || *msg == OTP_NONE || !otp_is_pid(otp_tuple_get(*ctl, 1)) ||
            !otp_is_ref(otp_tuple_get(*ctl, 2)))
            return bad(why, cap, "ALIAS_SEND without a pid, an alias or a message");
        break;
    case OTP__CTL_SPAWN_REQUEST:
    case OTP__CTL_SPAWN_REQUEST_TT:
        if (ar < 6 || *msg == OTP_NONE)
            return bad(why, cap, "SPAWN_REQUEST without its argument list");
        break;
    default:
        break;
    }
    return 0;
}

static frag_seq *find_seq(otp__dist_rx *rx, uint64_t seq)
{
    for (size_t i = 0; i < rx->nseqs; i++)
        if (rx->seqs[i].seq == seq)
            return &rx->seqs[i];
    return NULL;
}

static void drop_seq(otp__dist_rx *rx, frag_seq *s)
{
    rx->frag_bytes -= s->len;
    seq_free(s);
    *s = rx->seqs[--rx->nseqs];
}

static int append(otp__dist_rx *rx, frag_seq *s, const uint8_t *p, size_t n, char *why, size_t cap)
{
    if (n == 0)
        return 0; /* an empty fragment: nothing to keep (and maybe no buffer yet) */
    if (rx->frag_bytes + n > MAX_FRAG_BYTES)
        return bad(why, cap, "fragmented messages over %u bytes in all", MAX_FRAG_BYTES);
    size_t have = s->blk ? s->blk->size : 0;
    if (s->len + n > have) {
        /* Nobody else holds the block yet (refs is 1): it may move. */
        size_t c = have ? have : 1u << 16;
        while (c < s->len + n)
            c *= 2;
        otp__refc *d = s->blk ? realloc(s->blk, sizeof *d + c) : otp__refc_new(c);
        if (!d)
            return bad(why, cap, "out of memory for a fragmented message");
        d->size = c;
        s->blk = d;
    }
    memcpy(s->blk->data + s->len, p, n);
    s->len += n;
    rx->frag_bytes += n;
    return 0;
}

int otp__dist_decode_frame(otp__dist_rx *rx, otp_arena *a, const uint8_t *b, size_t len,
                           int64_t *op, otp_term *ctl, otp_term *msg, char *why, size_t cap)
{
    *msg = OTP_NONE;
    if (len == 0)
        return 1; /* a tick */
    if (b[0] == 112) {
        /* pass-through: each term with its own 131 */
        if (len < 2)
            return bad(why, cap, "pass-through frame without a control message");
        return decode_body(a, b + 1, len - 1, NULL, NULL, 0, false, op, ctl, msg, why, cap);
    }
    if (b[0] != 131 || len < 2)
        return bad(why, cap, "frame starts with %u: neither 112 nor a header (131)", b[0]);
    otp_term refs[256];
    size_t nrefs = 0, pos = 2;
    switch (b[1]) {
    case 68:
        if (parse_refs(rx, b, len, &pos, refs, &nrefs, why, cap) < 0)
            return -1;
        return decode_body(a, b + pos, len - pos, NULL, refs, nrefs, true, op, ctl, msg, why, cap);
    case 69: {
        if (len < 18)
            return bad(why, cap, "fragment header cut short");
        uint64_t seq = get64(b + 2), id = get64(b + 10);
        pos = 18;
        if (id == 0)
            return bad(why, cap, "fragment id 0");
        if (find_seq(rx, seq))
            return bad(why, cap, "fragmented message %llu started twice", (unsigned long long)seq);
        if (parse_refs(rx, b, len, &pos, refs, &nrefs, why, cap) < 0)
            return -1;
        if (id == 1) /* the whole message in one fragment */
            return decode_body(a, b + pos, len - pos, NULL, refs, nrefs, true, op, ctl, msg, why,
                               cap);
        if (rx->nseqs == MAX_SEQS)
            return bad(why, cap, "more than %d fragmented messages at once", MAX_SEQS);
        if (rx->nseqs == rx->capseqs) {
            size_t c = rx->capseqs ? rx->capseqs * 2 : 4;
            frag_seq *s = realloc(rx->seqs, c * sizeof *s);
            if (!s)
                return bad(why, cap, "out of memory for a fragmented message");
            rx->seqs = s;
            rx->capseqs = c;
        }
        frag_seq *s = &rx->seqs[rx->nseqs++];
        memset(s, 0, sizeof *s);
        s->seq = seq;
        s->next = id - 1;
        if (nrefs && !(s->refs = malloc(nrefs * sizeof *refs))) {
            rx->nseqs--;
            return bad(why, cap, "out of memory for a fragmented message");
        }
        if (nrefs)
            memcpy(s->refs, refs, nrefs * sizeof *refs);
        s->nrefs = nrefs;
        if (append(rx, s, b + pos, len - pos, why, cap) < 0) {
            drop_seq(rx, s);
            return -1;
        }
        return 1; /* more to come */
    }
    case 70: {
        if (len < 18)
            return bad(why, cap, "fragment header cut short");
        uint64_t seq = get64(b + 2), id = get64(b + 10);
        frag_seq *s = find_seq(rx, seq);
        if (!s)
            return bad(why, cap, "fragment of unknown message %llu", (unsigned long long)seq);
        if (id != s->next)
            return bad(why, cap, "fragment %llu of message %llu out of order (expected %llu)",
                       (unsigned long long)id, (unsigned long long)seq,
                       (unsigned long long)s->next);
        if (append(rx, s, b + 18, len - 18, why, cap) < 0)
            return -1;
        if (id > 1) {
            s->next--;
            return 1;
        }
        int r = s->len ? decode_body(a, s->blk->data, s->len, s->blk, s->refs, s->nrefs, true, op,
                                     ctl, msg, why, cap)
                       : bad(why, cap, "fragmented message %llu is empty", (unsigned long long)seq);
        drop_seq(rx, s);
        return r;
    }
    default:
        return bad(why, cap, "unknown header type %u", b[1]);
    }
}
