/* etf_encode.c — term_to_binary: terms to External Term Format bytes.
 *
 * The encoder writes straight into a growable otp_buf or a caller's fixed
 * buffer, picking the forms term_to_binary(T, [{minor_version, 2}]) picks.
 * Nesting is walked with an explicit stack, never C recursion; the sizing
 * pass (otp_encoded_size) walks the same way. Also: otp_buf, and tag 80.
 */
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "etf_internal.h"
#include "otp/etf.h"
#include "term_internal.h"

/* ------------------------------------------------------------- otp_buf */

void otp_buf_free(otp_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int otp_buf_reserve(otp_buf *b, size_t extra)
{
    if (!b)
        return -OTP_EBADARG;
    if (OTP_LIKELY(b->cap - b->len >= extra))
        return 0;
    if (extra > SIZE_MAX / 2 - b->len)
        return -OTP_ENOMEM;
    /* Doubling keeps appends amortised O(1) and reallocs rare. */
    size_t cap = b->cap < 256 ? 256 : b->cap * 2;
    if (cap < b->len + extra)
        cap = b->len + extra;
    uint8_t *d = realloc(b->data, cap);
    if (!d)
        return -OTP_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

/* ------------------------------------------------------- shared helpers */

static inline bool latin1_atoms(unsigned flags)
{
    return flags & (OTP_ENC_MINOR1 | OTP_ENC_MINOR0);
}

/* A string for STRING_EXT: a proper list of bytes, at most 65535 long.
 * Walks the list once; *n gets the element count before the tail. */
static inline bool list_scan(otp_term t, size_t *n)
{
    size_t len = 0;
    bool bytes = true;
    while (otp_is_cons(t)) {
        const otp__cons *c = otp__ptr(t);
        /* A small in 0..255 is the word (v << 1) | 1 <= 511. */
        bytes &= (c->head & 1) && c->head <= 511;
        len++;
        t = c->tail;
    }
    *n = len;
    return bytes && t == OTP_NIL && len <= 65535;
}

static inline unsigned mag_bytes(uint64_t m)
{
    return m ? 8 - (unsigned)__builtin_clzll(m) / 8 : 0;
}

static inline size_t int64_size(int64_t v)
{
    if ((uint64_t)v <= 255)
        return 2;
    if (v >= INT32_MIN && v <= INT32_MAX)
        return 5;
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return 3 + mag_bytes(m);
}

/* Digit bytes of a normalised bignum. */
static inline size_t big_bytes(const otp__big *b)
{
    size_t n = (size_t)otp__hdr_size(b->hdr);
    return (n - 1) * 8 + mag_bytes(b->limb[n - 1]);
}

static inline size_t atom_size(otp_term atom, unsigned flags)
{
    const otp__atom_entry *e = otp__atom_entry_of(atom);
    if (latin1_atoms(flags) && e->latin1)
        return 3 + e->nchars;
    return e->len <= 255 ? 2 + e->len : 3 + e->len;
}

/* Encoded size of an integer term (small or bignum); 0 if not an integer. */
static inline size_t int_size(otp_term t)
{
    if (otp_is_small(t))
        return int64_size(otp_small_value(t));
    if (otp_is_boxed(t) && (otp__kind(t) == OTP__H_POSBIG || otp__kind(t) == OTP__H_NEGBIG)) {
        size_t n = big_bytes(otp__ptr(t));
        return n <= 255 ? 3 + n : 6 + n;
    }
    return 0;
}

/* ------------------------------------------------------------ the walk */

/* Containers still being encoded. A sequence frame walks an array of
 * words (tuple elements, map pairs, free variables); a list frame walks
 * cons cells and ends with the tail. A fun's frame remembers where its
 * Size field is, to fill it in when the fun is complete. The innermost
 * frame lives in a local (`top`, registers); the outer ones in stk[0..sp),
 * above a root frame that ends the walk. */
typedef struct eframe {
    const otp_term *next; /* sequence: next word; list: current cons cell */
    size_t left;          /* sequence: words still to come; or LIST_FRAME, ROOT_FRAME */
    size_t patch;         /* offset of a NEW_FUN_EXT Size field, or NO_PATCH */
} eframe;

#define LIST_FRAME     SIZE_MAX
#define ROOT_FRAME     (SIZE_MAX - 1)
#define NO_PATCH       SIZE_MAX
#define INLINE_EFRAMES 32

/* A frame stack twice as big (the old one stays valid on failure). */
__attribute__((noinline)) static eframe *estack_grow(eframe *s, size_t cap, eframe *inline_s)
{
    if (cap > SIZE_MAX / 2 / sizeof *s)
        return NULL;
    if (s != inline_s)
        return realloc(s, 2 * cap * sizeof *s);
    eframe *n = malloc(2 * cap * sizeof *s);
    if (n)
        memcpy(n, s, cap * sizeof *s);
    return n;
}

#define EPUSH(next_, left_, patch_)                                                                \
    do {                                                                                           \
        if (OTP_UNLIKELY(sp == cap)) {                                                             \
            eframe *ns_ = estack_grow(stk, cap, inline_s);                                         \
            if (!ns_)                                                                              \
                goto nomem;                                                                        \
            stk = ns_;                                                                             \
            cap *= 2;                                                                              \
        }                                                                                          \
        stk[sp++] = top;                                                                           \
        top = (eframe){(next_), (left_), (patch_)};                                                \
    } while (0)

/* Sets t to the next term to encode, closing finished frames (CLOSE_FUN
 * runs for a fun's frame, with its Size offset); jumps to `done` at the end. */
#define ENEXT(CLOSE_FUN)                                                                           \
    for (;;) {                                                                                     \
        /* 1 <= left < ROOT_FRAME: a sequence with words left (the common case) */                 \
        if (OTP_LIKELY(top.left - 1 < ROOT_FRAME - 1)) {                                           \
            top.left--;                                                                            \
            t = *top.next++;                                                                       \
            break;                                                                                 \
        }                                                                                          \
        if (top.left == LIST_FRAME) {                                                              \
            otp_term tail_ = ((const otp__cons *)top.next)->tail;                                  \
            if (otp_is_cons(tail_)) {                                                              \
                top.next = otp__ptr(tail_);                                                        \
                t = *top.next; /* the head */                                                      \
            } else {                                                                               \
                t = tail_; /* the tail ends the list */                                            \
                top = stk[--sp];                                                                   \
            }                                                                                      \
            break;                                                                                 \
        }                                                                                          \
        if (top.left == ROOT_FRAME)                                                                \
            goto done;                                                                             \
        if (top.patch != NO_PATCH)                                                                 \
            CLOSE_FUN(top.patch);                                                                  \
        top = stk[--sp];                                                                           \
    }

/* --------------------------------------------------------------- sizing */

/* Bytes of t's encoding without the version byte, or a negative error. */
static int64_t term_size(otp_term t, unsigned flags)
{
    eframe inline_s[INLINE_EFRAMES], *stk = inline_s, top = {NULL, ROOT_FRAME, NO_PATCH};
    size_t sp = 0, cap = INLINE_EFRAMES;
    uint64_t size = 0;
    int64_t rc = 0;
    for (;;) {
        if (otp_is_small(t)) {
            size += int64_size(otp_small_value(t));
        } else if (otp_is_atom(t)) {
            size += atom_size(t, flags);
        } else if (t == OTP_NIL) {
            size += 1;
        } else if (otp_is_cons(t)) {
            size_t n;
            if (list_scan(t, &n)) {
                size += 3 + n;
            } else {
                if (n > UINT32_MAX)
                    goto badarg;
                size += 5;
                const otp__cons *c = otp__ptr(t);
                EPUSH((const otp_term *)c, LIST_FRAME, NO_PATCH);
                t = c->head;
                continue;
            }
        } else if (otp__is_lpid(t)) {
            otp__pidv v;
            otp__pid_view(t, &v);
            if (!otp_is_atom(v.node))
                goto badarg;
            size += 13 + atom_size(v.node, flags);
        } else if (otp_is_boxed(t)) {
            const uint64_t *o = otp__ptr(t);
            size_t n = (size_t)otp__hdr_size(*o);
            switch (otp__hdr_kind(*o)) {
            case OTP__H_TUPLE:
                if (n > UINT32_MAX)
                    goto badarg;
                size += n <= 255 ? 2 : 5;
                if (n)
                    EPUSH(o + 1, n, NO_PATCH);
                break;
            case OTP__H_MAP:
                if (n > UINT32_MAX)
                    goto badarg;
                size += 5;
                if (n)
                    EPUSH(o + 1, 2 * n, NO_PATCH);
                break;
            case OTP__H_POSBIG:
            case OTP__H_NEGBIG:
                if (n == 0)
                    goto badarg;
                size += int_size(t);
                break;
            case OTP__H_FLOAT:
                size += (flags & OTP_ENC_MINOR0) ? 1 + OTP__ETF_FLOAT_TEXT : 9;
                break;
            case OTP__H_BINARY: {
                const otp__binary *b = (const otp__binary *)o;
                size += (b->bits % 8 ? 6 : 5) + (b->bits + 7) / 8;
                break;
            }
            case OTP__H_PID:
                if (!otp_is_atom(((const otp__pid *)o)->node))
                    goto badarg;
                size += 13 + atom_size(((const otp__pid *)o)->node, flags);
                break;
            case OTP__H_PORT: {
                const otp__port *p = (const otp__port *)o;
                if (!otp_is_atom(p->node))
                    goto badarg;
                size += (p->id > OTP__ETF_MAX_V3_PORT ? 13 : 9) + atom_size(p->node, flags);
                break;
            }
            case OTP__H_REF:
                if (n > 5 || !otp_is_atom(((const otp__ref *)o)->node))
                    goto badarg;
                size += 7 + 4 * n + atom_size(((const otp__ref *)o)->node, flags);
                break;
            case OTP__H_EXPORT: {
                const otp__export *e = (const otp__export *)o;
                if (e->arity > INT64_MAX || !otp_is_atom(e->module) || !otp_is_atom(e->function))
                    goto badarg;
                size += 1 + atom_size(e->module, flags) + atom_size(e->function, flags) +
                        int64_size((int64_t)e->arity);
                break;
            }
            case OTP__H_FUN: {
                const otp__fun *f = (const otp__fun *)o;
                size_t oi = int_size(f->old_index), ou = int_size(f->old_uniq);
                if (!oi || !ou || !otp_is_pid(f->pid) || !otp_is_atom(f->module))
                    goto badarg;
                otp__pidv pid;
                otp__pid_view(f->pid, &pid);
                if (!otp_is_atom(pid.node))
                    goto badarg;
                size +=
                    30 + atom_size(f->module, flags) + oi + ou + 13 + atom_size(pid.node, flags);
                if (n)
                    EPUSH(f->free, n, NO_PATCH);
                break;
            }
            default:
                goto badarg;
            }
        } else {
            goto badarg; /* OTP_NONE or garbage */
        }
#define IGNORE_PATCH(off) ((void)(off))
        ENEXT(IGNORE_PATCH)
#undef IGNORE_PATCH
    }
done:
    rc = size > INT64_MAX ? -OTP_ENOMEM : (int64_t)size;
    goto out;
badarg:
    rc = -OTP_EBADARG;
    goto out;
nomem:
    rc = -OTP_ENOMEM;
out:
    if (stk != inline_s)
        free(stk);
    return rc;
}

/* -------------------------------------------------------------- writing */

typedef struct enc {
    uint8_t *p, *end; /* write cursor and limit */
    uint8_t *start;   /* first byte of the buffer (fun Size fields are patched by offset) */
    otp_buf *b;       /* growable target, or NULL for a caller's fixed buffer */
    unsigned flags;
    otp_iobuf *iov;  /* term_to_iovec mode: large binaries are referenced, not copied */
    unsigned in_fun; /* open closures: their Size counts bytes, so copy inside them */
} enc;

/* Records that the len bytes at data go at offset `at` of the iobuf. */
static int iov_ref(otp_iobuf *v, size_t at, const uint8_t *data, size_t len)
{
    if (v->nrefs == v->caprefs) {
        size_t cap = v->caprefs ? v->caprefs * 2 : 8;
        otp_iobuf_ref *n = realloc(v->refs, cap * sizeof *n);
        if (!n)
            return -OTP_ENOMEM;
        v->refs = n;
        v->caprefs = cap;
    }
    v->refs[v->nrefs++] = (otp_iobuf_ref){at, data, len};
    return 0;
}

/* Makes room for n more bytes: a fixed buffer simply fails. */
__attribute__((noinline)) static int enc_grow(enc *e, size_t n)
{
    if (!e->b)
        return -OTP_ENOSPC;
    e->b->len = (size_t)(e->p - e->b->data);
    /* Reserve generously: a term seldom ends right after the write that
     * overflowed, and each growth costs a copy. */
    int rc = otp_buf_reserve(e->b, n < 4096 ? 4096 : n);
    if (rc < 0)
        return rc;
    e->start = e->b->data;
    e->p = e->b->data + e->b->len;
    e->end = e->b->data + e->b->cap;
    return 0;
}

#define ROOM(n)                                                                                    \
    do {                                                                                           \
        if (OTP_UNLIKELY((size_t)(e->end - e->p) < (size_t)(n)) && (rc = enc_grow(e, (n))) < 0)    \
            goto fail;                                                                             \
    } while (0)

/* Writers for leaf terms; the caller made room for their worst case
 * where noted, otherwise they make their own. */

static inline uint8_t *put_i64(uint8_t *p, int64_t v) /* room: int64_size(v) */
{
    if ((uint64_t)v <= 255) {
        p[0] = OTP__ETF_SMALL_INTEGER;
        p[1] = (uint8_t)v;
        return p + 2;
    }
    if (v >= INT32_MIN && v <= INT32_MAX) {
        p[0] = OTP__ETF_INTEGER;
        otp__wr32(p + 1, (uint32_t)v);
        return p + 5;
    }
    uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    unsigned n = mag_bytes(m);
    p[0] = OTP__ETF_SMALL_BIG;
    p[1] = (uint8_t)n;
    p[2] = v < 0;
    p += 3;
    for (unsigned i = 0; i < n; i++, m >>= 8)
        *p++ = (uint8_t)m;
    return p;
}

static int put_big(enc *e, const otp__big *b)
{
    int rc;
    size_t n = big_bytes(b);
    ROOM(n <= 255 ? 3 + n : 6 + n);
    if (n <= 255) {
        *e->p++ = OTP__ETF_SMALL_BIG;
        *e->p++ = (uint8_t)n;
    } else {
        *e->p++ = OTP__ETF_LARGE_BIG;
        otp__wr32(e->p, (uint32_t)n);
        e->p += 4;
    }
    *e->p++ = otp__hdr_kind(b->hdr) == OTP__H_NEGBIG;
    memcpy(e->p, b->limb, n); /* little-endian host: limb bytes are digit bytes */
    e->p += n;
    return 0;
fail:
    return rc;
}

static int put_int_term(enc *e, otp_term t)
{
    int rc;
    if (otp_is_small(t)) {
        int64_t v = otp_small_value(t);
        ROOM(int64_size(v));
        e->p = put_i64(e->p, v);
        return 0;
    }
    if (otp_is_boxed(t) && (otp__kind(t) == OTP__H_POSBIG || otp__kind(t) == OTP__H_NEGBIG) &&
        otp__hdr_size(*(const uint64_t *)otp__ptr(t)) > 0)
        return put_big(e, otp__ptr(t));
    return -OTP_EBADARG;
fail:
    return rc;
}

/* Atom texts are short: overlapping fixed-size moves beat a memcpy call.
 * Every load stays inside src[0..len). */
static inline void copy_text(uint8_t *dst, const uint8_t *src, size_t len)
{
    if (len >= 8 && len <= 16) {
        uint64_t a, b;
        memcpy(&a, src, 8);
        memcpy(&b, src + len - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + len - 8, &b, 8);
    } else if (len >= 4 && len < 8) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, src + len - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + len - 4, &b, 4);
    } else if (len < 4) {
        for (size_t i = 0; i < len; i++)
            dst[i] = src[i];
    } else {
        memcpy(dst, src, len);
    }
}

static inline int put_atom(enc *e, otp_term atom)
{
    int rc;
    const otp__atom_entry *a = otp__atom_entry_of(atom);
    size_t len = a->len;
    bool latin1 = OTP_UNLIKELY(latin1_atoms(e->flags)) && a->latin1;
    ROOM(latin1 ? 3 + a->nchars : len <= 255 ? 2 + len : 3 + len);
    uint8_t *p = e->p;
    if (latin1) {
        p[0] = OTP__ETF_ATOM;
        otp__wr16(p + 1, (uint16_t)a->nchars);
        p += 3;
        if (a->nchars == len) {
            copy_text(p, a->text, len);
            p += len;
        } else {
            /* Every character is <= 255, so lead bytes are 0xc2/0xc3. */
            for (size_t i = 0; i < len; i++) {
                uint8_t c = a->text[i];
                if (c < 0x80) {
                    *p++ = c;
                } else {
                    *p++ = (uint8_t)((c & 0x1f) << 6 | (a->text[i + 1] & 0x3f));
                    i++;
                }
            }
        }
    } else if (len <= 255) {
        p[0] = OTP__ETF_SMALL_ATOM_UTF8;
        p[1] = (uint8_t)len;
        copy_text(p + 2, a->text, len);
        p += 2 + len;
    } else {
        p[0] = OTP__ETF_ATOM_UTF8;
        otp__wr16(p + 1, (uint16_t)len);
        memcpy(p + 3, a->text, len);
        p += 3 + len;
    }
    e->p = p;
    return 0;
fail:
    return rc;
}

static int put_pid(enc *e, otp_term t)
{
    int rc;
    otp__pidv v, *pid = &v;
    otp__pid_view(t, &v);
    if (!otp_is_atom(pid->node))
        return -OTP_EBADARG;
    ROOM(1);
    *e->p++ = OTP__ETF_NEW_PID;
    if ((rc = put_atom(e, pid->node)) < 0)
        return rc;
    ROOM(12);
    otp__wr32(e->p, pid->id);
    otp__wr32(e->p + 4, pid->serial);
    otp__wr32(e->p + 8, pid->creation);
    e->p += 12;
    return 0;
fail:
    return rc;
}

/* Writes the float in its 70 (or legacy 99) form. */
static int put_float(enc *e, double d)
{
    int rc;
    if (OTP_UNLIKELY(e->flags & OTP_ENC_MINOR0)) {
        char text[64];
        int n = snprintf(text, sizeof text, "%.20e", d);
        if (n < 0 || n >= OTP__ETF_FLOAT_TEXT)
            return -OTP_EBADARG; /* NaN/Inf never get here; finite doubles fit */
        ROOM(1 + OTP__ETF_FLOAT_TEXT);
        *e->p++ = OTP__ETF_FLOAT;
        memset(e->p, 0, OTP__ETF_FLOAT_TEXT);
        memcpy(e->p, text, (size_t)n);
        e->p += OTP__ETF_FLOAT_TEXT;
        return 0;
    }
    ROOM(9);
    uint64_t u;
    memcpy(&u, &d, 8);
    e->p[0] = OTP__ETF_NEW_FLOAT;
    otp__wr64(e->p + 1, u);
    e->p += 9;
    return 0;
fail:
    return rc;
}

/* Encodes t at e->p (growing or failing as e allows). */
static int enc_term(enc *e, otp_term t)
{
    eframe inline_s[INLINE_EFRAMES], *stk = inline_s, top = {NULL, ROOT_FRAME, NO_PATCH};
    size_t sp = 0, cap = INLINE_EFRAMES;
    int rc = 0;
    for (;;) {
        if (otp_is_small(t)) {
            int64_t v = otp_small_value(t);
            ROOM(int64_size(v));
            e->p = put_i64(e->p, v);
        } else if (otp_is_atom(t)) {
            if ((rc = put_atom(e, t)) < 0)
                goto fail;
        } else if (t == OTP_NIL) {
            ROOM(1);
            *e->p++ = OTP__ETF_NIL;
        } else if (otp_is_cons(t)) {
            /* Optimistically a STRING_EXT: write the bytes while walking the
             * list, and fall back to LIST_EXT if it turns out not to be one.
             * A fixed buffer too small for the string is too small for the
             * list too (LIST_EXT takes at least two bytes per element). */
            size_t at = (size_t)(e->p - e->start), n = 0;
            ROOM(3);
            uint8_t *p = e->p + 3;
            otp_term l = t;
            while (otp_is_cons(l)) {
                const otp__cons *c = otp__ptr(l);
                /* A small in 0..255 is the word (v << 1) | 1 <= 511. */
                if (!((c->head & 1) && c->head <= 511) || n == 65535)
                    break;
                if (OTP_UNLIKELY(p == e->end)) {
                    e->p = p;
                    if ((rc = enc_grow(e, 1)) < 0)
                        goto fail;
                    p = e->p;
                }
                *p++ = (uint8_t)(c->head >> 1);
                n++;
                l = c->tail;
            }
            if (l == OTP_NIL) {
                uint8_t *h = e->start + at;
                h[0] = OTP__ETF_STRING;
                otp__wr16(h + 1, (uint16_t)n);
                e->p = p;
            } else {
                e->p = e->start + at;
                for (; otp_is_cons(l); l = ((const otp__cons *)otp__ptr(l))->tail)
                    n++;
                if (n > UINT32_MAX) {
                    rc = -OTP_EBADARG;
                    goto fail;
                }
                ROOM(5);
                e->p[0] = OTP__ETF_LIST;
                otp__wr32(e->p + 1, (uint32_t)n);
                e->p += 5;
                const otp__cons *c = otp__ptr(t);
                EPUSH((const otp_term *)c, LIST_FRAME, NO_PATCH);
                t = c->head;
                continue;
            }
        } else if (otp__is_lpid(t)) {
            if ((rc = put_pid(e, t)) < 0)
                goto fail;
        } else if (otp_is_boxed(t)) {
            const uint64_t *o = otp__ptr(t);
            size_t n = (size_t)otp__hdr_size(*o);
            switch (otp__hdr_kind(*o)) {
            case OTP__H_TUPLE:
                if (n <= 255) {
                    ROOM(2);
                    e->p[0] = OTP__ETF_SMALL_TUPLE;
                    e->p[1] = (uint8_t)n;
                    e->p += 2;
                } else {
                    if (n > UINT32_MAX) {
                        rc = -OTP_EBADARG;
                        goto fail;
                    }
                    ROOM(5);
                    e->p[0] = OTP__ETF_LARGE_TUPLE;
                    otp__wr32(e->p + 1, (uint32_t)n);
                    e->p += 5;
                }
                if (n)
                    EPUSH(o + 1, n, NO_PATCH);
                break;
            case OTP__H_MAP:
                if (n > UINT32_MAX) {
                    rc = -OTP_EBADARG;
                    goto fail;
                }
                ROOM(5);
                e->p[0] = OTP__ETF_MAP;
                otp__wr32(e->p + 1, (uint32_t)n);
                e->p += 5;
                if (n)
                    EPUSH(o + 1, 2 * n, NO_PATCH);
                break;
            case OTP__H_POSBIG:
            case OTP__H_NEGBIG:
                if ((rc = put_int_term(e, t)) < 0)
                    goto fail;
                break;
            case OTP__H_FLOAT:
                if ((rc = put_float(e, ((const otp__float *)o)->d)) < 0)
                    goto fail;
                break;
            case OTP__H_BINARY: {
                const otp__binary *b = (const otp__binary *)o;
                size_t len = (size_t)((b->bits + 7) / 8);
                unsigned tail = (unsigned)(b->bits % 8);
                if (len > UINT32_MAX) {
                    rc = -OTP_EBADARG;
                    goto fail;
                }
                if (e->iov && b->refc && !tail && !e->in_fun) {
                    ROOM(5);
                    e->p[0] = OTP__ETF_BINARY;
                    otp__wr32(e->p + 1, (uint32_t)len);
                    e->p += 5;
                    if ((rc = iov_ref(e->iov, (size_t)(e->p - e->start), b->data, len)) < 0)
                        goto fail;
                    break;
                }
                ROOM((tail ? 6 : 5) + len);
                if (!tail) {
                    e->p[0] = OTP__ETF_BINARY;
                    otp__wr32(e->p + 1, (uint32_t)len);
                    e->p += 5;
                } else {
                    e->p[0] = OTP__ETF_BIT_BINARY;
                    otp__wr32(e->p + 1, (uint32_t)len);
                    e->p[5] = (uint8_t)tail;
                    e->p += 6;
                }
                memcpy(e->p, b->data, len);
                if (tail) /* unused low bits go out as zeros */
                    e->p[len - 1] &= (uint8_t)(0xff00u >> tail);
                e->p += len;
                break;
            }
            case OTP__H_PID:
                if ((rc = put_pid(e, t)) < 0)
                    goto fail;
                break;
            case OTP__H_PORT: {
                const otp__port *pt = (const otp__port *)o;
                bool v4 = pt->id > OTP__ETF_MAX_V3_PORT;
                if (!otp_is_atom(pt->node)) {
                    rc = -OTP_EBADARG;
                    goto fail;
                }
                ROOM(1);
                *e->p++ = v4 ? OTP__ETF_V4_PORT : OTP__ETF_NEW_PORT;
                if ((rc = put_atom(e, pt->node)) < 0)
                    goto fail;
                ROOM(v4 ? 12 : 8);
                if (v4) {
                    otp__wr64(e->p, pt->id);
                    e->p += 8;
                } else {
                    otp__wr32(e->p, (uint32_t)pt->id);
                    e->p += 4;
                }
                otp__wr32(e->p, pt->creation);
                e->p += 4;
                break;
            }
            case OTP__H_REF: {
                const otp__ref *r = (const otp__ref *)o;
                if (n > 5 || !otp_is_atom(r->node)) {
                    rc = -OTP_EBADARG;
                    goto fail;
                }
                ROOM(3);
                e->p[0] = OTP__ETF_NEWER_REFERENCE;
                otp__wr16(e->p + 1, (uint16_t)n);
                e->p += 3;
                if ((rc = put_atom(e, r->node)) < 0)
                    goto fail;
                ROOM(4 + 4 * n);
                otp__wr32(e->p, r->creation);
                for (size_t i = 0; i < n; i++)
                    otp__wr32(e->p + 4 + 4 * i, r->words[i]);
                e->p += 4 + 4 * n;
                break;
            }
            case OTP__H_EXPORT: {
                const otp__export *x = (const otp__export *)o;
                if (!otp_is_atom(x->module) || !otp_is_atom(x->function) || x->arity > INT64_MAX) {
                    rc = -OTP_EBADARG;
                    goto fail;
                }
                ROOM(1);
                *e->p++ = OTP__ETF_EXPORT;
                if ((rc = put_atom(e, x->module)) < 0 || (rc = put_atom(e, x->function)) < 0)
                    goto fail;
                ROOM(int64_size((int64_t)x->arity));
                e->p = put_i64(e->p, (int64_t)x->arity);
                break;
            }
            case OTP__H_FUN: {
                const otp__fun *f = (const otp__fun *)o;
                if (!otp_is_atom(f->module) || !otp_is_pid(f->pid)) {
                    rc = -OTP_EBADARG;
                    goto fail;
                }
                ROOM(30);
                size_t patch = (size_t)(e->p + 1 - e->start);
                uint8_t *p = e->p;
                p[0] = OTP__ETF_NEW_FUN;
                p[5] = (uint8_t)f->arity;
                memcpy(p + 6, f->uniq, 16);
                otp__wr32(p + 22, f->index);
                otp__wr32(p + 26, (uint32_t)n);
                e->p += 30;
                if ((rc = put_atom(e, f->module)) < 0 || (rc = put_int_term(e, f->old_index)) < 0 ||
                    (rc = put_int_term(e, f->old_uniq)) < 0 || (rc = put_pid(e, f->pid)) < 0)
                    goto fail;
                /* The frame stays even without free variables: closing it
                 * writes Size. */
                EPUSH(f->free, n, patch);
                e->in_fun++;
                break;
            }
            default:
                rc = -OTP_EBADARG;
                goto fail;
            }
        } else {
            rc = -OTP_EBADARG; /* OTP_NONE or garbage */
            goto fail;
        }
/* Size counts itself and everything after it, not the tag. */
#define WRITE_FUN_SIZE(off)                                                                        \
    (otp__wr32(e->start + (off), (uint32_t)((size_t)(e->p - e->start) - (off))), e->in_fun--)
        ENEXT(WRITE_FUN_SIZE)
#undef WRITE_FUN_SIZE
    }
done:
    rc = 0;
    goto fail;
nomem:
    rc = -OTP_ENOMEM;
fail:
    if (stk != inline_s)
        free(stk);
    return rc;
}

/* ------------------------------------------------------------------ API */

int otp_encode_buf(otp_buf *b, otp_term t, unsigned flags)
{
    if (!b)
        return -OTP_EBADARG;
    int rc = otp_buf_reserve(b, 256);
    if (rc < 0)
        return rc;
    size_t start = b->len;
    enc e = {b->data + b->len, b->data + b->cap, b->data, b, flags, NULL, 0};
    if (!(flags & OTP_ENC_NO_VERSION))
        *e.p++ = OTP_ETF_VERSION;
    rc = enc_term(&e, t);
    /* On failure the buffer keeps only what it held before. */
    b->len = rc < 0 ? start : (size_t)(e.p - b->data);
    return rc;
}

int otp_encode_iov(otp_iobuf *v, otp_term t, unsigned flags)
{
    if (!v)
        return -OTP_EBADARG;
    otp_buf *b = &v->bytes;
    int rc = otp_buf_reserve(b, 256);
    if (rc < 0)
        return rc;
    size_t start = b->len, nrefs = v->nrefs;
    enc e = {b->data + b->len, b->data + b->cap, b->data, b, flags, v, 0};
    if (!(flags & OTP_ENC_NO_VERSION))
        *e.p++ = OTP_ETF_VERSION;
    rc = enc_term(&e, t);
    if (rc < 0) {
        b->len = start;
        v->nrefs = nrefs;
        return rc;
    }
    b->len = (size_t)(e.p - b->data);
    return 0;
}

size_t otp_iobuf_size(const otp_iobuf *v)
{
    size_t n = v->bytes.len;
    for (size_t i = 0; i < v->nrefs; i++)
        n += v->refs[i].len;
    return n;
}

size_t otp_iobuf_iovec(const otp_iobuf *v, struct iovec *iov, size_t max)
{
    size_t n = 0, at = 0;
    for (size_t i = 0; i <= v->nrefs; i++) {
        size_t upto = i < v->nrefs ? v->refs[i].at : v->bytes.len;
        if (upto > at) {
            if (n < max)
                iov[n] = (struct iovec){v->bytes.data + at, upto - at};
            n++;
            at = upto;
        }
        if (i < v->nrefs) {
            if (n < max)
                iov[n] = (struct iovec){(void *)v->refs[i].data, v->refs[i].len};
            n++;
        }
    }
    return n;
}

void otp_iobuf_reset(otp_iobuf *v)
{
    v->bytes.len = 0;
    v->nrefs = 0;
}

void otp_iobuf_free(otp_iobuf *v)
{
    if (!v)
        return;
    otp_buf_free(&v->bytes);
    free(v->refs);
    v->refs = NULL;
    v->nrefs = v->caprefs = 0;
}

int64_t otp_encoded_size(otp_term t, unsigned flags)
{
    int64_t n = term_size(t, flags);
    if (n < 0)
        return n;
    return n + !(flags & OTP_ENC_NO_VERSION);
}

int64_t otp_encode(otp_term t, unsigned flags, uint8_t *buf, size_t cap)
{
    if (!buf && cap)
        return -OTP_EBADARG;
    enc e = {buf, buf + cap, buf, NULL, flags, NULL, 0};
    int rc = -OTP_ENOSPC;
    if (flags & OTP_ENC_NO_VERSION) {
        rc = enc_term(&e, t);
    } else if (cap) {
        *e.p++ = OTP_ETF_VERSION;
        rc = enc_term(&e, t);
    }
    if (rc == -OTP_ENOSPC) {
        /* Tell "too small" from "not a valid term" the way otp_encode_buf
         * would: a term that cannot be encoded at all reports EBADARG. */
        int64_t need = otp_encoded_size(t, flags);
        return need < 0 ? need : -OTP_ENOSPC;
    }
    if (rc < 0)
        return rc;
    return (int64_t)(e.p - buf);
}

int64_t otp__encode_fit(otp_term t, unsigned flags, uint8_t *buf, size_t cap)
{
    if (!cap)
        return -OTP_ENOSPC;
    enc e = {buf, buf + cap, buf, NULL, flags, NULL, 0};
    if (!(flags & OTP_ENC_NO_VERSION))
        *e.p++ = OTP_ETF_VERSION;
    int rc = enc_term(&e, t);
    return rc < 0 ? rc : (int64_t)(e.p - buf);
}

int otp_encode_compressed_buf(otp_buf *b, otp_term t, unsigned flags, int level)
{
    if (!b || level < 0 || level > 9)
        return -OTP_EBADARG;
    otp_buf raw = {0};
    int rc = otp_encode_buf(&raw, t, flags | OTP_ENC_NO_VERSION);
    if (rc < 0) {
        otp_buf_free(&raw);
        return rc;
    }
    size_t hdr = (flags & OTP_ENC_NO_VERSION) ? 0 : 1;
    /* OTP compresses into room for the plain size minus 5 and keeps the
     * plain encoding when zlib does not fit there, so its tag 80 output is
     * never larger than the plain form: we do the same, for the same bytes. */
    if (raw.len > 5 && raw.len <= UINT32_MAX) {
        uLongf zlen = (uLongf)(raw.len - 5);
        if ((rc = otp_buf_reserve(b, hdr + 5 + zlen)) < 0)
            goto out;
        uint8_t *p = b->data + b->len;
        int z = compress2(p + hdr + 5, &zlen, raw.data, (uLong)raw.len, level);
        if (z == Z_OK) {
            if (hdr)
                p[0] = OTP_ETF_VERSION;
            p[hdr] = OTP__ETF_COMPRESSED;
            otp__wr32(p + hdr + 1, (uint32_t)raw.len);
            b->len += hdr + 5 + zlen;
            rc = 0;
            goto out;
        }
        if (z == Z_MEM_ERROR) {
            rc = -OTP_ENOMEM;
            goto out;
        }
        /* Z_BUF_ERROR: not smaller; fall through to the plain form. */
    }
    if ((rc = otp_buf_reserve(b, hdr + raw.len)) < 0)
        goto out;
    if (hdr)
        b->data[b->len] = OTP_ETF_VERSION;
    memcpy(b->data + b->len + hdr, raw.data, raw.len);
    b->len += hdr + raw.len;
    rc = 0;
out:
    otp_buf_free(&raw);
    return rc;
}
