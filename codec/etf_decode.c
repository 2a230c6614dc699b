/* etf_decode.c — binary_to_term: External Term Format bytes to terms.
 *
 * One pass over the input; objects are bump-allocated in the arena; nesting
 * is walked with an explicit stack of frames (never C recursion), and every
 * length is checked against the bytes left before anything is allocated.
 * Compressed terms (tag 80) are inflated incrementally, then decoded.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include "etf_internal.h"
#include "otp/etf.h"
#include "term_internal.h"

/* A container whose children are still being decoded. Children land in
 * consecutive words (tuples, maps, free variables) or, for lists, in the
 * heads of a pre-linked run of cons cells and then the last tail. */
typedef struct frame {
    otp_term *next; /* slot of the next child */
    size_t left;    /* children still to come (a list's tail included) */
    uintptr_t obj;  /* the map, for its final key check; kind in the low bits */
    size_t start;   /* offset of the container's tag, for messages */
} frame;

enum { K_SEQ = 0, K_LIST = 1, K_MAP = 2, K_ROOT = 3, K_MASK = 3 };

/* Most terms nest a few levels; only deeper ones pay for a malloc. */
#define INLINE_FRAMES 32

typedef struct dec {
    otp_arena *a;
    const uint8_t *base; /* offsets in messages are relative to this */
    const uint8_t *end;
    const otp_term *atom_refs;
    size_t n_atom_refs;
    size_t max_depth;
    otp_error *err;
    otp__refc *share; /* binaries above the heap size may point into this block */
    bool share_held;  /* the arena holds a reference to it for this call */
    bool inflated;    /* decoding the inflated bytes of a compressed term */
    size_t zoff;      /* then: offset of its tag 80 in the caller's input */
    frame *stack;
    size_t cap;
    frame inline_stack[INLINE_FRAMES];
} dec;

static const char *const tag_names[128] = {
    [OTP__ETF_NEW_FLOAT] = "NEW_FLOAT_EXT",
    [OTP__ETF_BIT_BINARY] = "BIT_BINARY_EXT",
    [OTP__ETF_COMPRESSED] = "compressed term",
    [OTP__ETF_ATOM_CACHE_REF] = "ATOM_CACHE_REF",
    [OTP__ETF_NEW_PID] = "NEW_PID_EXT",
    [OTP__ETF_NEW_PORT] = "NEW_PORT_EXT",
    [OTP__ETF_NEWER_REFERENCE] = "NEWER_REFERENCE_EXT",
    [OTP__ETF_SMALL_INTEGER] = "SMALL_INTEGER_EXT",
    [OTP__ETF_INTEGER] = "INTEGER_EXT",
    [OTP__ETF_FLOAT] = "FLOAT_EXT",
    [OTP__ETF_ATOM] = "ATOM_EXT",
    [OTP__ETF_REFERENCE] = "REFERENCE_EXT",
    [OTP__ETF_PORT] = "PORT_EXT",
    [OTP__ETF_PID] = "PID_EXT",
    [OTP__ETF_SMALL_TUPLE] = "SMALL_TUPLE_EXT",
    [OTP__ETF_LARGE_TUPLE] = "LARGE_TUPLE_EXT",
    [OTP__ETF_NIL] = "NIL_EXT",
    [OTP__ETF_STRING] = "STRING_EXT",
    [OTP__ETF_LIST] = "LIST_EXT",
    [OTP__ETF_BINARY] = "BINARY_EXT",
    [OTP__ETF_SMALL_BIG] = "SMALL_BIG_EXT",
    [OTP__ETF_LARGE_BIG] = "LARGE_BIG_EXT",
    [OTP__ETF_NEW_FUN] = "NEW_FUN_EXT",
    [OTP__ETF_EXPORT] = "EXPORT_EXT",
    [OTP__ETF_NEW_REFERENCE] = "NEW_REFERENCE_EXT",
    [OTP__ETF_SMALL_ATOM] = "SMALL_ATOM_EXT",
    [OTP__ETF_MAP] = "MAP_EXT",
    [OTP__ETF_FUN] = "FUN_EXT",
    [OTP__ETF_ATOM_UTF8] = "ATOM_UTF8_EXT",
    [OTP__ETF_SMALL_ATOM_UTF8] = "SMALL_ATOM_UTF8_EXT",
    [OTP__ETF_V4_PORT] = "V4_PORT_EXT",
    [OTP__ETF_LOCAL] = "LOCAL_EXT",
};

static const char *tag_name(unsigned tag)
{
    return tag < 128 && tag_names[tag] ? tag_names[tag] : "unknown tag";
}

/* Every failure goes through here, so the hot paths stay small. */
__attribute__((cold, noinline, format(printf, 4, 5))) static int
fail(dec *d, const uint8_t *at, int code, const char *fmt, ...)
{
    if (d->err) {
        otp_error *e = d->err;
        size_t off = (size_t)(at - d->base);
        int n;
        e->code = code;
        if (d->inflated) {
            e->offset = d->zoff;
            n = snprintf(e->message, sizeof e->message, "offset %zu: inflated byte %zu: ", d->zoff,
                         off);
        } else {
            e->offset = off;
            n = snprintf(e->message, sizeof e->message, "offset %zu: ", off);
        }
        if (n < 0 || (size_t)n >= sizeof e->message)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message + n, sizeof e->message - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return code;
}

__attribute__((cold, noinline)) static int truncated(dec *d, const uint8_t *tp, const uint8_t *p,
                                                     size_t need)
{
    return fail(d, tp, -OTP_EDECODE, "%s needs %zu more bytes at offset %zu, only %zu left",
                tag_name(*tp), need, (size_t)(p - d->base), (size_t)(d->end - p));
}

__attribute__((cold, noinline)) static int no_memory(dec *d, const uint8_t *tp)
{
    return fail(d, tp, -OTP_ENOMEM, "out of memory decoding %s", tag_name(*tp));
}

#define LEFT() ((size_t)(end - p))
#define NEED(n)                                                                                    \
    do {                                                                                           \
        if (OTP_UNLIKELY(LEFT() < (size_t)(n)))                                                    \
            return truncated(d, tp, p, (size_t)(n));                                               \
    } while (0)

/* ----------------------------------------------------------------- atoms */

static inline bool is_ascii(const uint8_t *s, size_t len)
{
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        acc |= w;
    }
    for (; i < len; i++)
        acc |= s[i];
    return (acc & UINT64_C(0x8080808080808080)) == 0;
}

static int intern(dec *d, const uint8_t *tp, const uint8_t *utf8, size_t len, otp_term *out)
{
    int rc = otp__atom_intern_valid(utf8, len, out);
    if (OTP_UNLIKELY(rc < 0))
        return fail(d, tp, rc == -OTP_ENOMEM ? rc : -OTP_ELIMIT, "cannot intern the atom of %s: %s",
                    tag_name(*tp), otp_strerror(rc));
    return 0;
}

/* Interning hashes the bytes and probes the shared table; but terms repeat
 * a few atoms (record tags, map keys, node names) over and over, so each
 * thread keeps a small direct-mapped cache from atom bytes to atoms. The key
 * holds up to 16 bytes of text exactly, so short atoms hit without touching
 * the atom table; longer ones are confirmed against the atom's own text. A
 * hit needs no UTF-8 check: the text was validated when the atom was made.
 * Atoms never die, so an entry never goes stale: the cache changes speed,
 * never results, and it is the only state the codec keeps between calls. */
typedef struct atom_slot {
    uint64_t x, y; /* the bytes: see atom_key() */
    uint64_t len;
    otp_term atom; /* 0: empty */
} atom_slot;

#define ATOM_CACHE_BITS 8
static _Thread_local atom_slot atom_cache[1u << ATOM_CACHE_BITS];

/* Two words that, with the length, determine up to 16 bytes exactly:
 * overlapping loads from both ends. */
static inline void atom_key(const uint8_t *s, size_t len, uint64_t *x, uint64_t *y)
{
    if (len >= 8) {
        memcpy(x, s, 8);
        memcpy(y, s + len - 8, 8);
    } else if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + len - 4, 4);
        *x = a;
        *y = b;
    } else {
        *x = len ? (uint64_t)s[0] | (uint64_t)s[len / 2] << 8 | (uint64_t)s[len - 1] << 16 : 0;
        *y = 0;
    }
}

/* The atom with these UTF-8 bytes. `checked`: the bytes are known valid
 * (converted from Latin-1); otherwise they are validated on a cache miss. */
static inline int atom_utf8(dec *d, const uint8_t *tp, const uint8_t *s, size_t len, bool checked,
                            otp_term *out)
{
    uint64_t x, y;
    atom_key(s, len, &x, &y);
    uint64_t h = (x ^ (y * UINT64_C(0xff51afd7ed558ccd)) ^ len) * UINT64_C(0x9e3779b97f4a7c15);
    /* Two ways per set, most recent first: a record tag and a field atom
     * that hash to the same set must not evict each other on every term. */
    atom_slot *c = &atom_cache[(h >> (64 - ATOM_CACHE_BITS)) & ~(uint64_t)1];
    for (int w = 0; w < 2; w++) {
        if (OTP_LIKELY(c[w].atom != 0 && c[w].x == x && c[w].y == y && c[w].len == len) &&
            (OTP_LIKELY(len <= 16) || memcmp(otp__atom_entry_of(c[w].atom)->text, s, len) == 0)) {
            *out = c[w].atom;
            return 0;
        }
    }
    if (!checked && (!is_ascii(s, len) || len > OTP_ATOM_MAX_CHARS)) {
        int64_t n = otp__utf8_count(s, len);
        if (n < 0)
            return fail(d, tp, -OTP_EDECODE, "%s holds invalid UTF-8", tag_name(*tp));
        if (n > OTP_ATOM_MAX_CHARS)
            return fail(d, tp, -OTP_EDECODE, "%s has %lld characters, more than 255", tag_name(*tp),
                        (long long)n);
    }
    int rc = intern(d, tp, s, len, out);
    if (rc == 0) {
        c[1] = c[0];
        c[0] = (atom_slot){x, y, len, *out};
    }
    return rc;
}

/* Decodes the atom at *pp (any atom encoding) and advances past it. Pids,
 * ports, refs, funs and exports embed their atoms through dec_atom(); the
 * term loop inlines this body. */
static inline __attribute__((always_inline)) int dec_atom_inline(dec *d, const uint8_t **pp,
                                                                 otp_term *out)
{
    const uint8_t *p = *pp, *end = d->end, *tp = p;
    size_t len;
    int rc;
    if (OTP_UNLIKELY(p == end))
        return fail(d, p, -OTP_EDECODE, "expected an atom, the input ends");
    uint8_t tag = *p++;
    switch (tag) {
    case OTP__ETF_SMALL_ATOM_UTF8:
        NEED(1);
        len = *p++;
        goto utf8;
    case OTP__ETF_ATOM_UTF8:
        NEED(2);
        len = otp__rd16(p);
        p += 2;
    utf8:
        NEED(len);
        if ((rc = atom_utf8(d, tp, p, len, false, out)) < 0)
            return rc;
        *pp = p + len;
        return 0;
    case OTP__ETF_ATOM:
        NEED(2);
        len = otp__rd16(p);
        p += 2;
        goto latin1;
    case OTP__ETF_SMALL_ATOM:
        NEED(1);
        len = *p++;
    latin1:
        if (OTP_UNLIKELY(len > OTP_ATOM_MAX_CHARS))
            return fail(d, tp, -OTP_EDECODE, "%s has %zu characters, more than 255", tag_name(tag),
                        len);
        NEED(len);
        if (OTP_LIKELY(is_ascii(p, len))) {
            rc = atom_utf8(d, tp, p, len, true, out);
        } else {
            /* Latin-1 to UTF-8: bytes 0x80..0xff become two bytes. */
            uint8_t buf[2 * OTP_ATOM_MAX_CHARS];
            size_t n = 0;
            for (size_t i = 0; i < len; i++) {
                uint8_t c = p[i];
                if (c < 0x80) {
                    buf[n++] = c;
                } else {
                    buf[n++] = (uint8_t)(0xc0 | (c >> 6));
                    buf[n++] = (uint8_t)(0x80 | (c & 0x3f));
                }
            }
            rc = atom_utf8(d, tp, buf, n, true, out);
        }
        if (rc < 0)
            return rc;
        *pp = p + len;
        return 0;
    case OTP__ETF_ATOM_CACHE_REF: {
        NEED(1);
        unsigned i = *p++;
        if (OTP_UNLIKELY(!d->atom_refs))
            return fail(d, tp, -OTP_EDECODE,
                        "ATOM_CACHE_REF %u outside distribution (no atom cache in use)", i);
        if (OTP_UNLIKELY(i >= d->n_atom_refs))
            return fail(d, tp, -OTP_EDECODE,
                        "ATOM_CACHE_REF %u, but the distribution header has %zu atom refs", i,
                        d->n_atom_refs);
        *out = d->atom_refs[i];
        *pp = p;
        return 0;
    }
    default:
        return fail(d, tp, -OTP_EDECODE,
                    "expected an atom (tag 82, 100, 115, 118 or 119), got %u (%s)", tag,
                    tag_name(tag));
    }
}

static int dec_atom(dec *d, const uint8_t **pp, otp_term *out)
{
    return dec_atom_inline(d, pp, out);
}

/* ----------------------------------------------- pids, ports, references */

static int dec_pid(dec *d, const uint8_t **pp, otp_term *out)
{
    const uint8_t *p = *pp, *end = d->end, *tp = p;
    if (OTP_UNLIKELY(p == end))
        return fail(d, p, -OTP_EDECODE, "expected a pid, the input ends");
    uint8_t tag = *p++;
    if (OTP_UNLIKELY(tag != OTP__ETF_NEW_PID && tag != OTP__ETF_PID))
        return fail(d, tp, -OTP_EDECODE, "expected a pid (tag 88 or 103), got %u (%s)", tag,
                    tag_name(tag));
    otp_term node;
    int rc = dec_atom(d, &p, &node);
    if (rc < 0)
        return rc;
    uint32_t creation;
    if (tag == OTP__ETF_NEW_PID) {
        NEED(12);
        creation = otp__rd32(p + 8);
    } else {
        NEED(9);
        creation = p[8];
    }
    otp__pid *o = otp__alloc(d->a, sizeof(otp__pid));
    if (OTP_UNLIKELY(!o))
        return no_memory(d, tp);
    *o = (otp__pid){otp__mkhdr(OTP__H_PID, 0), node, otp__rd32(p), otp__rd32(p + 4), creation, 0};
    *out = otp__boxed(o);
    *pp = p + (tag == OTP__ETF_NEW_PID ? 12 : 9);
    return 0;
}

static int dec_port(dec *d, const uint8_t **pp, otp_term *out)
{
    const uint8_t *p = *pp, *end = d->end, *tp = p;
    uint8_t tag = *p++;
    otp_term node;
    int rc = dec_atom(d, &p, &node);
    if (rc < 0)
        return rc;
    uint64_t id;
    uint32_t creation;
    if (tag == OTP__ETF_NEW_PORT) {
        NEED(8);
        id = otp__rd32(p);
        creation = otp__rd32(p + 4);
        p += 8;
    } else if (tag == OTP__ETF_V4_PORT) {
        NEED(12);
        id = otp__rd64(p);
        creation = otp__rd32(p + 8);
        p += 12;
    } else {
        NEED(5);
        id = otp__rd32(p);
        creation = p[4];
        p += 5;
    }
    otp__port *o = otp__alloc(d->a, sizeof(otp__port));
    if (OTP_UNLIKELY(!o))
        return no_memory(d, tp);
    *o = (otp__port){otp__mkhdr(OTP__H_PORT, 0), node, id, creation, 0};
    *out = otp__boxed(o);
    *pp = p;
    return 0;
}

/* OTP rejects legacy references (101, 114) whose first id word needs more
 * than 18 bits; NEWER_REFERENCE_EXT has no such limit. */
#define LEGACY_REF_MAX (1u << 18)

static int dec_ref(dec *d, const uint8_t **pp, otp_term *out)
{
    const uint8_t *p = *pp, *end = d->end, *tp = p;
    uint8_t tag = *p++;
    size_t n = 1;
    if (tag != OTP__ETF_REFERENCE) {
        NEED(2);
        n = otp__rd16(p);
        p += 2;
        if (OTP_UNLIKELY(n > 5))
            return fail(d, tp, -OTP_EDECODE, "%s has %zu id words, at most 5 are allowed",
                        tag_name(tag), n);
    }
    otp_term node;
    int rc = dec_atom(d, &p, &node);
    if (rc < 0)
        return rc;
    uint32_t creation;
    if (tag == OTP__ETF_NEWER_REFERENCE) {
        NEED(4 + 4 * n);
        creation = otp__rd32(p);
        p += 4;
    } else if (tag == OTP__ETF_NEW_REFERENCE) {
        NEED(1 + 4 * n);
        creation = *p++;
    } else {
        NEED(5);
        creation = p[4];
    }
    otp__ref *o = otp__alloc(d->a, sizeof(otp__ref));
    if (OTP_UNLIKELY(!o))
        return no_memory(d, tp);
    o->hdr = otp__mkhdr(OTP__H_REF, n);
    o->node = node;
    o->creation = creation;
    for (size_t i = 0; i < 5; i++)
        o->words[i] = i < n ? otp__rd32(p + 4 * i) : 0;
    if (tag != OTP__ETF_NEWER_REFERENCE && n > 0 && OTP_UNLIKELY(o->words[0] >= LEGACY_REF_MAX))
        return fail(d, tp, -OTP_EDECODE, "%s first id word %u does not fit 18 bits", tag_name(tag),
                    o->words[0]);
    if (tag == OTP__ETF_REFERENCE)
        p++; /* the creation byte after the id */
    *out = otp__boxed(o);
    *pp = p + 4 * n;
    return 0;
}

/* ------------------------------------------------------------- numbers */

/* An integer embedded in a fun or export (arity, OldIndex, OldUniq): OTP
 * reads it as a general term and insists on a fixnum, which is at most 60
 * bits on a 64-bit node. */
#define FIXNUM_MAX ((INT64_C(1) << 59) - 1)

static int dec_fixnum(dec *d, const uint8_t **pp, const char *what, int64_t *out)
{
    const uint8_t *p = *pp, *end = d->end, *tp = p;
    if (OTP_UNLIKELY(p == end))
        return fail(d, p, -OTP_EDECODE, "expected the integer %s, the input ends", what);
    uint8_t tag = *p++;
    switch (tag) {
    case OTP__ETF_SMALL_INTEGER:
        NEED(1);
        *out = *p++;
        break;
    case OTP__ETF_INTEGER:
        NEED(4);
        *out = (int32_t)otp__rd32(p);
        p += 4;
        break;
    case OTP__ETF_SMALL_BIG:
    case OTP__ETF_LARGE_BIG: {
        size_t n;
        if (tag == OTP__ETF_SMALL_BIG) {
            NEED(2);
            n = p[0];
            p += 1;
        } else {
            NEED(5);
            n = otp__rd32(p);
            p += 4;
        }
        bool neg = *p++ != 0;
        NEED(n);
        uint64_t m = 0;
        for (size_t i = n; i-- > 0;) {
            if (m >> 56)
                return fail(d, tp, -OTP_EDECODE, "the integer %s does not fit 60 bits", what);
            m = (m << 8) | p[i];
        }
        if (m > (uint64_t)FIXNUM_MAX + neg)
            return fail(d, tp, -OTP_EDECODE, "the integer %s does not fit 60 bits", what);
        *out = neg ? -(int64_t)m : (int64_t)m;
        p += n;
        break;
    }
    default:
        return fail(d, tp, -OTP_EDECODE, "expected the integer %s, got tag %u (%s)", what, tag,
                    tag_name(tag));
    }
    *pp = p;
    return 0;
}

/* Bignum digits (little-endian bytes) to a small integer or a bignum. */
static int dec_big(dec *d, const uint8_t *tp, const uint8_t *p, size_t n, bool neg, otp_term *out)
{
    if (n <= 8) {
        uint64_t m = 0;
        for (size_t i = n; i-- > 0;)
            m = (m << 8) | p[i];
        if (!neg && m <= (uint64_t)OTP_SMALL_MAX) {
            *out = otp_small((int64_t)m);
            return 0;
        }
        if (neg && m <= (uint64_t)OTP_SMALL_MAX + 1) {
            *out = m ? otp_small(-(int64_t)(m - 1) - 1) : otp_small(0);
            return 0;
        }
        otp__big *b = otp__big_alloc(d->a, 1, neg);
        if (OTP_UNLIKELY(!b))
            return no_memory(d, tp);
        b->limb[0] = m;
        *out = otp__boxed(b);
        return 0;
    }
    size_t nl = (n + 7) / 8;
    otp__big *b = otp__big_alloc(d->a, nl, neg);
    if (OTP_UNLIKELY(!b))
        return no_memory(d, tp);
    b->limb[nl - 1] = 0;
    memcpy(b->limb, p, n); /* little-endian host: digit bytes are limb bytes */
    *out = otp__big_finish(b);
    return 0;
}

/* FLOAT_EXT: "%.20e"-style text, NUL padded to 31 bytes. The syntax check
 * is OTP's (sys_chars_to_double): [+-]digits[.,]digits[(e|E)[+-]digits]. */
static int dec_float_text(dec *d, const uint8_t *tp, const uint8_t *p, double *out)
{
    char buf[OTP__ETF_FLOAT_TEXT + 1];
    memcpy(buf, p, OTP__ETF_FLOAT_TEXT);
    buf[OTP__ETF_FLOAT_TEXT] = 0;
    if (!memchr(buf, 0, OTP__ETF_FLOAT_TEXT))
        return fail(d, tp, -OTP_EDECODE, "FLOAT_EXT text is not NUL-terminated within 31 bytes");
    char *s = buf, *dp;
    if (*s == '+' || *s == '-')
        s++;
    if (*s < '0' || *s > '9')
        goto bad;
    while (*s >= '0' && *s <= '9')
        s++;
    if (*s != '.' && *s != ',')
        goto bad;
    dp = s++;
    if (*s < '0' || *s > '9')
        goto bad;
    while (*s >= '0' && *s <= '9')
        s++;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            goto bad;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s)
        goto bad;
    /* strtod follows LC_NUMERIC; like OTP, retry with the other radix
     * character when the first one is not the locale's. */
    for (int attempt = 0; attempt < 2; attempt++) {
        char *e;
        errno = 0;
        double v = strtod(buf, &e);
        if (e == s) {
            if (errno == ERANGE && isinf(v))
                return fail(d, tp, -OTP_EDECODE, "FLOAT_EXT \"%s\" overflows a double", buf);
            *out = v;
            return 0;
        }
        *dp = *dp == '.' ? ',' : '.';
    }
bad:
    return fail(d, tp, -OTP_EDECODE, "FLOAT_EXT text \"%.31s\" is not a float", buf);
}

/* --------------------------------------------------------------- maps */

/* Checks a decoded map's keys: any order is accepted on the wire, but keys
 * must be unique, and we store them sorted. Sorted input (what OTP emits for
 * small maps, and what we emit) costs one comparison per key. */
static int map_finish(dec *d, otp__tuple *m, size_t start)
{
    size_t n = (size_t)otp__hdr_size(m->hdr);
    for (size_t i = 1; i < n; i++) {
        otp_term x = m->el[2 * i - 2], y = m->el[2 * i];
        int c;
        if (otp_is_small(x) && otp_is_small(y)) {
            c = (int64_t)x < (int64_t)y ? -1 : 1; /* tagged smalls order like their values */
            if (x == y)
                c = 0;
        } else if (otp_is_atom(x) && otp_is_atom(y)) {
            /* Atom keys (records, structs) are the common case. This must
             * agree with cmp_atoms in core/compare.c: UTF-8 bytes, then length. */
            const otp__atom_entry *ex = otp__atom_entry_of(x), *ey = otp__atom_entry_of(y);
            c = memcmp(ex->text, ey->text, ex->len < ey->len ? ex->len : ey->len);
            if (c == 0)
                c = ex->len < ey->len ? -1 : ex->len > ey->len;
        } else {
            c = otp_cmp_exact(x, y);
        }
        if (c >= 0)
            goto unsorted;
    }
    return 0;
unsorted:;
    int rc = otp__map_sort_check(m);
    if (rc == -OTP_EBADARG)
        return fail(d, d->base + start, -OTP_EDECODE, "MAP_EXT of %zu pairs has duplicate keys", n);
    if (rc < 0)
        return fail(d, d->base + start, -OTP_ENOMEM, "out of memory sorting a MAP_EXT");
    return 0;
}

/* --------------------------------------------------------------- terms */

__attribute__((noinline)) static int grow_stack(dec *d, const uint8_t *tp)
{
    size_t cap = d->cap * 2;
    frame *s;
    if (d->stack == d->inline_stack) {
        s = malloc(cap * sizeof(frame));
        if (s)
            memcpy(s, d->stack, d->cap * sizeof(frame));
    } else {
        s = realloc(d->stack, cap * sizeof(frame));
    }
    if (!s)
        return fail(d, tp, -OTP_ENOMEM, "out of memory for %zu nesting levels", cap);
    d->stack = s;
    d->cap = cap;
    return 0;
}

#define PUSH(slot, count, kind, objp)                                                              \
    do {                                                                                           \
        if (OTP_UNLIKELY(sp >= d->max_depth))                                                      \
            return fail(d, tp, -OTP_ELIMIT, "%s nests deeper than the limit of %zu levels",        \
                        tag_name(tag), d->max_depth);                                              \
        if (OTP_UNLIKELY(sp == d->cap)) {                                                          \
            int rc_ = grow_stack(d, tp);                                                           \
            if (rc_ < 0)                                                                           \
                return rc_;                                                                        \
            stk = d->stack;                                                                        \
        }                                                                                          \
        stk[sp++] = top;                                                                           \
        top = (frame){(slot), (count), (uintptr_t)(objp) | (kind), (size_t)(tp - d->base)};        \
    } while (0)

/* Decodes one term starting at p into *out; *endp gets the first byte after
 * it. Containers are allocated when their header is read and filled in
 * place as their children arrive. The innermost open container lives in
 * `top` (registers); the ones around it are saved in stk[0..sp). At the
 * bottom sits a root pseudo-container with one child: the term itself. */
static int dec_run(dec *d, const uint8_t *p, otp_term *out, const uint8_t **endp)
{
    const uint8_t *const end = d->end;
    otp_arena *const a = d->a;
    frame *stk = d->stack;
    size_t sp = 0;
    frame top = {out, 1, K_ROOT, 0};
    otp_term *dst = out;
    int rc;

    for (;;) {
        const uint8_t *tp = p;
        if (OTP_UNLIKELY(p == end))
            return fail(d, p, -OTP_EDECODE, "expected a term, the input ends");
        uint8_t tag = *p++;
        otp_term v;
        size_t n;
        switch (tag) {
        case OTP__ETF_SMALL_INTEGER:
            NEED(1);
            v = otp_small(*p++);
            break;
        case OTP__ETF_INTEGER:
            NEED(4);
            v = otp_small((int32_t)otp__rd32(p));
            p += 4;
            break;
        case OTP__ETF_SMALL_ATOM_UTF8:
        case OTP__ETF_ATOM_UTF8:
        case OTP__ETF_ATOM:
        case OTP__ETF_SMALL_ATOM:
        case OTP__ETF_ATOM_CACHE_REF:
            p = tp;
            if ((rc = dec_atom_inline(d, &p, &v)) < 0)
                return rc;
            break;
        case OTP__ETF_NIL:
            v = OTP_NIL;
            break;
        case OTP__ETF_SMALL_TUPLE:
            NEED(1);
            n = *p++;
            goto tuple;
        case OTP__ETF_LARGE_TUPLE:
            NEED(4);
            n = otp__rd32(p);
            p += 4;
        tuple : {
            if (OTP_UNLIKELY(n > LEFT()))
                return fail(d, tp, -OTP_EDECODE, "%s arity %zu exceeds the %zu bytes left",
                            tag_name(tag), n, LEFT());
            otp__tuple *t = (otp__tuple *)otp__alloc_words(a, 1 + n);
            if (OTP_UNLIKELY(!t))
                return no_memory(d, tp);
            t->hdr = otp__mkhdr(OTP__H_TUPLE, n);
            v = otp__boxed(t);
            if (n == 0)
                break;
            *dst = v;
            PUSH(&t->el[0], n, K_SEQ, 0);
            dst = &t->el[0];
            continue;
        }
        case OTP__ETF_STRING: {
            NEED(2);
            n = otp__rd16(p);
            p += 2;
            if (OTP_UNLIKELY(n > LEFT()))
                return fail(d, tp, -OTP_EDECODE, "STRING_EXT length %zu exceeds the %zu bytes left",
                            n, LEFT());
            if (n == 0) {
                v = OTP_NIL;
                break;
            }
            otp__cons *c = otp__alloc(a, n * sizeof(otp__cons));
            if (OTP_UNLIKELY(!c))
                return no_memory(d, tp);
            for (size_t i = 0; i < n; i++) {
                c[i].head = otp_small(p[i]);
                c[i].tail = otp__mkcons(&c[i + 1]);
            }
            c[n - 1].tail = OTP_NIL;
            p += n;
            v = otp__mkcons(c);
            break;
        }
        case OTP__ETF_LIST: {
            NEED(4);
            n = otp__rd32(p);
            p += 4;
            /* n elements and a tail, each at least one byte. */
            if (OTP_UNLIKELY(n >= LEFT()))
                return fail(d, tp, -OTP_EDECODE,
                            "LIST_EXT length %zu needs at least %zu bytes, only %zu left", n, n + 1,
                            LEFT());
            if (n == 0)
                continue; /* non-canonical: the list is just its tail */
            otp__cons *c = otp__alloc(a, n * sizeof(otp__cons));
            if (OTP_UNLIKELY(!c))
                return no_memory(d, tp);
            for (size_t i = 0; i + 1 < n; i++)
                c[i].tail = otp__mkcons(&c[i + 1]);
            *dst = otp__mkcons(c);
            PUSH(&c[0].head, n + 1, K_LIST, 0);
            dst = &c[0].head;
            continue;
        }
        case OTP__ETF_BINARY: {
            NEED(4);
            n = otp__rd32(p);
            p += 4;
            if (OTP_UNLIKELY(n > LEFT()))
                return fail(d, tp, -OTP_EDECODE, "BINARY_EXT length %zu exceeds the %zu bytes left",
                            n, LEFT());
            if (d->share && n > OTP_BINARY_HEAP_MAX && !d->inflated) {
                /* A sub-binary of the input's block, as DESIGN.md allows:
                 * the arena's reference keeps the block alive. */
                otp__binary *b = otp__alloc(a, sizeof *b);
                if (OTP_UNLIKELY(!b))
                    return no_memory(d, tp);
                if (!d->share_held) { /* one reference covers the whole call */
                    otp__refc_retain(d->share);
                    if (OTP_UNLIKELY(otp__arena_adopt_refc(a, d->share) < 0)) {
                        otp__refc_release(d->share);
                        return no_memory(d, tp);
                    }
                    d->share_held = true;
                }
                b->hdr = otp__mkhdr(OTP__H_BINARY, 0);
                b->bits = (uint64_t)n * 8;
                b->data = p;
                b->refc = d->share;
                v = otp__boxed(b);
                p += n;
                break;
            }
            uint8_t *data;
            v = otp__binary_alloc(a, n, (uint64_t)n * 8, &data);
            if (OTP_UNLIKELY(v == OTP_NONE))
                return no_memory(d, tp);
            memcpy(data, p, n);
            p += n;
            break;
        }
        case OTP__ETF_BIT_BINARY: {
            NEED(5);
            n = otp__rd32(p);
            unsigned bits = p[4];
            p += 5;
            if (OTP_UNLIKELY(n == 0 ? bits != 0 : bits == 0 || bits > 8))
                return fail(d, tp, -OTP_EDECODE,
                            "BIT_BINARY_EXT of %zu bytes cannot end in %u bits (1..8, or 0 when "
                            "empty)",
                            n, bits);
            if (OTP_UNLIKELY(n > LEFT()))
                return fail(d, tp, -OTP_EDECODE,
                            "BIT_BINARY_EXT length %zu exceeds the %zu bytes left", n, LEFT());
            uint8_t *data;
            uint64_t total = n ? (uint64_t)(n - 1) * 8 + bits : 0;
            v = otp__binary_alloc(a, n, total, &data);
            if (OTP_UNLIKELY(v == OTP_NONE))
                return no_memory(d, tp);
            memcpy(data, p, n);
            if (bits && bits < 8)
                data[n - 1] &= (uint8_t)(0xff00u >> bits); /* unused bits are zero in our terms */
            p += n;
            break;
        }
        case OTP__ETF_SMALL_BIG:
        case OTP__ETF_LARGE_BIG: {
            bool neg;
            if (tag == OTP__ETF_SMALL_BIG) {
                NEED(2);
                n = p[0];
                neg = p[1] != 0;
                p += 2;
            } else {
                NEED(5);
                n = otp__rd32(p);
                neg = p[4] != 0;
                p += 5;
            }
            if (OTP_UNLIKELY(n > LEFT()))
                return fail(d, tp, -OTP_EDECODE, "%s of %zu digit bytes exceeds the %zu bytes left",
                            tag_name(tag), n, LEFT());
            if ((rc = dec_big(d, tp, p, n, neg, &v)) < 0)
                return rc;
            p += n;
            break;
        }
        case OTP__ETF_NEW_FLOAT:
        case OTP__ETF_FLOAT: {
            double x;
            if (tag == OTP__ETF_NEW_FLOAT) {
                NEED(8);
                uint64_t u = otp__rd64(p);
                if (OTP_UNLIKELY((u & UINT64_C(0x7ff0000000000000)) ==
                                 UINT64_C(0x7ff0000000000000)))
                    return fail(d, tp, -OTP_EDECODE, "NEW_FLOAT_EXT is %s, not a finite float",
                                (u << 12) ? "NaN" : "infinite");
                memcpy(&x, &u, 8);
                p += 8;
            } else {
                NEED(OTP__ETF_FLOAT_TEXT);
                if ((rc = dec_float_text(d, tp, p, &x)) < 0)
                    return rc;
                p += OTP__ETF_FLOAT_TEXT;
            }
            otp__float *f = otp__alloc(a, sizeof(otp__float));
            if (OTP_UNLIKELY(!f))
                return no_memory(d, tp);
            f->hdr = otp__mkhdr(OTP__H_FLOAT, 0);
            f->d = x;
            v = otp__boxed(f);
            break;
        }
        case OTP__ETF_MAP: {
            NEED(4);
            n = otp__rd32(p);
            p += 4;
            if (OTP_UNLIKELY(n > LEFT() / 2))
                return fail(d, tp, -OTP_EDECODE,
                            "MAP_EXT arity %zu needs at least %zu bytes, only %zu left", n, 2 * n,
                            LEFT());
            otp__tuple *m = (otp__tuple *)otp__alloc_words(a, 1 + 2 * n);
            if (OTP_UNLIKELY(!m))
                return no_memory(d, tp);
            m->hdr = otp__mkhdr(OTP__H_MAP, n);
            v = otp__boxed(m);
            if (n == 0)
                break;
            *dst = v;
            PUSH(&m->el[0], 2 * n, K_MAP, m);
            dst = &m->el[0];
            continue;
        }
        case OTP__ETF_NEW_PID:
        case OTP__ETF_PID:
            p = tp;
            if ((rc = dec_pid(d, &p, &v)) < 0)
                return rc;
            break;
        case OTP__ETF_NEW_PORT:
        case OTP__ETF_PORT:
        case OTP__ETF_V4_PORT:
            p = tp;
            if ((rc = dec_port(d, &p, &v)) < 0)
                return rc;
            break;
        case OTP__ETF_NEWER_REFERENCE:
        case OTP__ETF_NEW_REFERENCE:
        case OTP__ETF_REFERENCE:
            p = tp;
            if ((rc = dec_ref(d, &p, &v)) < 0)
                return rc;
            break;
        case OTP__ETF_EXPORT: {
            otp_term mod, fun;
            int64_t arity;
            if ((rc = dec_atom(d, &p, &mod)) < 0 || (rc = dec_atom(d, &p, &fun)) < 0 ||
                (rc = dec_fixnum(d, &p, "arity of EXPORT_EXT", &arity)) < 0)
                return rc;
            if (OTP_UNLIKELY(arity < 0))
                return fail(d, tp, -OTP_EDECODE, "EXPORT_EXT arity %lld is negative",
                            (long long)arity);
            otp__export *e = otp__alloc(a, sizeof(otp__export));
            if (OTP_UNLIKELY(!e))
                return no_memory(d, tp);
            *e = (otp__export){otp__mkhdr(OTP__H_EXPORT, 0), mod, fun, (uint64_t)arity};
            v = otp__boxed(e);
            break;
        }
        case OTP__ETF_NEW_FUN: {
            /* Size(4) Arity(1) Uniq(16) Index(4) NumFree(4). OTP ignores
             * Size when decoding, and so do we; the encoder recomputes it. */
            NEED(29);
            const uint8_t *hdr = p;
            n = otp__rd32(p + 25);
            p += 29;
            if (OTP_UNLIKELY(n > 255))
                return fail(d, tp, -OTP_EDECODE, "NEW_FUN_EXT has %zu free variables, at most 255",
                            n);
            otp_term mod, pid;
            int64_t old_index, old_uniq;
            if ((rc = dec_atom(d, &p, &mod)) < 0 ||
                (rc = dec_fixnum(d, &p, "OldIndex of NEW_FUN_EXT", &old_index)) < 0 ||
                (rc = dec_fixnum(d, &p, "OldUniq of NEW_FUN_EXT", &old_uniq)) < 0 ||
                (rc = dec_pid(d, &p, &pid)) < 0)
                return rc;
            if (OTP_UNLIKELY(n > LEFT()))
                return fail(d, tp, -OTP_EDECODE,
                            "NEW_FUN_EXT has %zu free variables but only %zu bytes are left", n,
                            LEFT());
            otp__fun *f = otp__alloc(a, sizeof(otp__fun) + n * sizeof(otp_term));
            if (OTP_UNLIKELY(!f))
                return no_memory(d, tp);
            f->hdr = otp__mkhdr(OTP__H_FUN, n);
            f->module = mod;
            f->old_index = otp_small(old_index);
            f->old_uniq = otp_small(old_uniq);
            f->pid = pid;
            f->arity = hdr[4];
            memcpy(f->uniq, hdr + 5, 16);
            f->index = otp__rd32(hdr + 21);
            v = otp__boxed(f);
            if (n == 0)
                break;
            *dst = v;
            PUSH(&f->free[0], n, K_SEQ, 0);
            dst = &f->free[0];
            continue;
        }
        case OTP__ETF_COMPRESSED:
            return fail(d, tp, -OTP_EDECODE,
                        "a compressed term (tag 80) is only allowed at the top level");
        case OTP__ETF_FUN:
            return fail(d, tp, -OTP_EDECODE,
                        "FUN_EXT (tag 117) is the pre-R8 fun format, not decoded since OTP 23");
        case OTP__ETF_LOCAL:
            return fail(d, tp, -OTP_EDECODE,
                        "LOCAL_EXT (tag 121) is private to the node that encoded it");
        default:
            return fail(d, tp, -OTP_EDECODE, "unknown term tag %u", tag);
        }

        *dst = v;
        /* Find the slot of the next child, closing finished containers. */
        for (;;) {
            if (OTP_LIKELY(--top.left)) {
                if ((top.obj & K_MASK) == K_LIST) {
                    top.next += 2;
                    if (top.left == 1) {
                        /* The tail: the list is done, so a tail that is itself
                         * a LIST_EXT does not count as deeper nesting. */
                        dst = top.next - 1;
                        top = stk[--sp];
                    } else {
                        dst = top.next;
                    }
                } else {
                    dst = ++top.next;
                }
                break;
            }
            unsigned kind = top.obj & K_MASK;
            if (kind == K_ROOT) {
                *endp = p;
                return 0;
            }
            if (kind == K_MAP &&
                (rc = map_finish(d, (otp__tuple *)(top.obj & ~(uintptr_t)K_MASK), top.start)) < 0)
                return rc;
            top = stk[--sp];
        }
    }
}

/* ---------------------------------------------------------- compressed */

/* Tag 80: u32 UncompressedSize, then a zlib stream that must inflate to
 * exactly that many bytes. The output grows with what zlib actually
 * produces, so a tiny input that declares gigabytes costs nothing. */
static int dec_compressed(dec *d, const uint8_t *tp, size_t max_inflated, otp_term *out,
                          const uint8_t **endp)
{
    const uint8_t *p = tp + 1, *end = d->end;
    NEED(4);
    size_t size = otp__rd32(p);
    p += 4;
    if (size > max_inflated)
        return fail(d, tp, -OTP_ELIMIT,
                    "compressed term declares %zu inflated bytes, more than the limit of %zu", size,
                    max_inflated);
    if (size == 0)
        return fail(d, tp, -OTP_EDECODE, "compressed term declares 0 inflated bytes");

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit(&zs) != Z_OK)
        return no_memory(d, tp);
    /* One byte of slack catches a stream that inflates to more than declared. */
    size_t cap = size + 1 < 4096 ? size + 1 : 4096, got = 0;
    uint8_t *buf = malloc(cap);
    int rc = 0;
    if (!buf) {
        rc = no_memory(d, tp);
        goto out;
    }
    const uint8_t *in = p;
    size_t in_left = LEFT();
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            uInt chunk = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
            zs.next_in = (Bytef *)(uintptr_t)in;
            zs.avail_in = chunk;
            in += chunk;
            in_left -= chunk;
        }
        if (got == cap) {
            if (cap == size + 1) {
                rc = fail(d, tp, -OTP_EDECODE,
                          "compressed term inflates to more than the declared %zu bytes", size);
                goto out;
            }
            size_t ncap = cap * 2 < size + 1 ? cap * 2 : size + 1;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                rc = no_memory(d, tp);
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        zs.next_out = buf + got;
        zs.avail_out = cap - got > UINT_MAX ? UINT_MAX : (uInt)(cap - got);
        uInt out_before = zs.avail_out;
        int z = inflate(&zs, Z_NO_FLUSH);
        got += out_before - zs.avail_out;
        if (z == Z_STREAM_END)
            break;
        if (z == Z_MEM_ERROR) {
            rc = no_memory(d, tp);
            goto out;
        }
        if (z != Z_OK && z != Z_BUF_ERROR) {
            rc = fail(d, tp, -OTP_EDECODE, "compressed term: zlib error: %s",
                      zs.msg ? zs.msg : "corrupt data");
            goto out;
        }
        /* Room for output but nothing more to read: the stream is cut. */
        if (zs.avail_out != 0 && zs.avail_in == 0 && in_left == 0) {
            rc = fail(d, tp, -OTP_EDECODE,
                      "compressed term: the zlib stream ends early (%zu of %zu bytes inflated)",
                      got, size);
            goto out;
        }
    }
    if (got != size) {
        rc = fail(d, tp, -OTP_EDECODE, "compressed term inflates to %zu bytes, but declares %zu",
                  got, size);
        goto out;
    }
    {
        const uint8_t *zend = (const uint8_t *)zs.next_in, *ignored;
        const uint8_t *obase = d->base, *oend = d->end;
        d->inflated = true;
        d->zoff = (size_t)(tp - obase);
        d->base = buf;
        d->end = buf + size;
        /* Bytes left over in the inflated data are ignored, as OTP does. */
        rc = dec_run(d, buf, out, &ignored);
        d->base = obase;
        d->end = oend;
        d->inflated = false;
        *endp = zend;
    }
out:
    inflateEnd(&zs);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------ API */

static int decode(otp_arena *a, const uint8_t *buf, size_t len, const otp_decode_opts *opts,
                  otp__refc *share, otp_term *out, size_t *used, otp_error *err)
{
    dec d;
    d.a = a;
    d.share = share;
    d.share_held = false;
    d.base = buf;
    d.end = buf + len;
    d.atom_refs = opts ? opts->atom_refs : NULL;
    d.n_atom_refs = opts ? opts->n_atom_refs : 0;
    d.max_depth = opts && opts->max_depth ? opts->max_depth : OTP_DECODE_DEFAULT_MAX_DEPTH;
    d.err = err;
    d.inflated = false;
    d.zoff = 0;
    d.stack = d.inline_stack;
    d.cap = INLINE_FRAMES;
    if (err) {
        err->code = 0;
        err->offset = 0;
        err->message[0] = 0;
    }
    if (!a || !out || (!buf && len))
        return fail(&d, buf, -OTP_EBADARG, "otp_decode: NULL arena, output or buffer");

    const uint8_t *p = buf, *e = NULL;
    if (len == 0)
        return fail(&d, p, -OTP_EDECODE, "empty input, expected the version byte 131");
    if (*p == OTP_ETF_VERSION)
        p++;
    else if (!(opts && opts->no_version))
        return fail(&d, p, -OTP_EDECODE, "expected the version byte 131, got %u", *p);

    otp_term t = OTP_NONE;
    int rc;
    if (p < d.end && *p == OTP__ETF_COMPRESSED) {
        if (opts && opts->reject_compressed)
            rc = fail(&d, p, -OTP_EDECODE, "compressed term (tag 80) not allowed here");
        else
            rc = dec_compressed(&d, p,
                                opts && opts->max_inflated ? opts->max_inflated
                                                           : OTP_DECODE_DEFAULT_MAX_INFLATED,
                                &t, &e);
    } else {
        rc = dec_run(&d, p, &t, &e);
    }
    if (d.stack != d.inline_stack)
        free(d.stack);
    if (rc < 0)
        return rc;
    *out = t;
    if (used)
        *used = (size_t)(e - buf);
    return 0;
}

int otp_decode(otp_arena *a, const uint8_t *buf, size_t len, const otp_decode_opts *opts,
               otp_term *out, size_t *used, otp_error *err)
{
    return decode(a, buf, len, opts, NULL, out, used, err);
}

int otp_decode_binary(otp_arena *a, otp_term bin, const otp_decode_opts *opts, otp_term *out,
                      size_t *used, otp_error *err)
{
    if (!otp_is_binary(bin)) {
        static const uint8_t none[1];
        dec d = {.base = none, .err = err};
        return fail(&d, none, -OTP_EBADARG, "otp_decode_binary: not a binary");
    }
    const otp__binary *b = otp__ptr(bin);
    return decode(a, b->data, (size_t)(b->bits / 8), opts, b->refc, out, used, err);
}

int otp__decode_shared(otp_arena *a, const uint8_t *buf, size_t len, const otp_decode_opts *opts,
                       otp__refc *share, otp_term *out, size_t *used, otp_error *err)
{
    return decode(a, buf, len, opts, share, out, used, err);
}

int otp_decode_exact(otp_arena *a, const uint8_t *buf, size_t len, const otp_decode_opts *opts,
                     otp_term *out, otp_error *err)
{
    size_t used;
    otp_term t;
    int rc = otp_decode(a, buf, len, opts, &t, &used, err);
    if (rc < 0)
        return rc;
    if (used != len) {
        dec d = {.base = buf, .err = err};
        return fail(&d, buf + used, -OTP_EDECODE, "%zu bytes follow the term", len - used);
    }
    *out = t;
    return 0;
}
