/* term_internal.h — the bit layout of terms and of the objects in arenas.
 *
 * Shared by core/ and codec/ only. The word (see term.h) is tagged in its
 * low 3 bits:
 *   xx1  small integer, value in bits 63..1 (63-bit signed)
 *   000  boxed: pointer to an object that starts with a header word
 *   010  cons:  pointer to {head, tail}, tag added
 *   100  other immediates; bits 5..3 say which:
 *        000 atom (index in bits 63..6), 001 special ([] and NONE)
 *   110  local pid of a runtime in this OS process: bits 6..3 the node
 *        slot (otp__local_nodes), 38..7 the id, 63..39 the serial
 *        (25 bits). Its node and creation live in the slot table.
 * Objects are 8-byte aligned, which is what frees the 3 tag bits.
 */
#ifndef OTP_CORE_TERM_INTERNAL_H
#define OTP_CORE_TERM_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otp/term.h"

#ifndef NDEBUG
#include <assert.h>
#define OTP_ASSERT(c) assert(c)
#else
/* Release builds keep running: callers handle the "impossible" case too. */
#define OTP_ASSERT(c) ((void)0)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define OTP__NOINLINE __attribute__((noinline))
#else
#define OTP__NOINLINE
#endif

_Static_assert(sizeof(void *) == 8, "libotp needs a 64-bit platform");

#define OTP__TAG_BOXED 0u
#define OTP__TAG_CONS  2u

static inline void *otp__ptr(otp_term t)
{
    return (void *)(uintptr_t)(t & ~(uint64_t)7);
}
static inline otp_term otp__boxed(const void *p)
{
    return (otp_term)(uintptr_t)p;
}
static inline otp_term otp__mkcons(const void *p)
{
    return (otp_term)(uintptr_t)p | OTP__TAG_CONS;
}
static inline uint32_t otp__atom_index(otp_term t)
{
    return (uint32_t)(t >> 6);
}

/* Object header word: bits 5..0 the kind, bits 63..6 a size whose meaning
 * depends on the kind (arity, limb count, pair count, id words, free vars). */
enum {
    OTP__H_TUPLE = 1,  /* size = arity;  followed by arity terms */
    OTP__H_POSBIG = 2, /* size = limbs;  followed by 64-bit limbs, least significant first */
    OTP__H_NEGBIG = 3,
    OTP__H_FLOAT = 4,  /* followed by one double */
    OTP__H_BINARY = 5, /* otp__binary */
    OTP__H_MAP = 6,    /* size = pairs;  followed by k0 v0 k1 v1 ... keys in otp_cmp_exact order */
    OTP__H_PID = 7,    /* otp__pid */
    OTP__H_PORT = 8,   /* otp__port */
    OTP__H_REF = 9,    /* size = id words (0..5) */
    OTP__H_EXPORT = 10,
    OTP__H_FUN = 11, /* size = free variables */
};

static inline uint64_t otp__mkhdr(unsigned kind, uint64_t size)
{
    return (size << 6) | kind;
}
static inline unsigned otp__hdr_kind(uint64_t h)
{
    return (unsigned)(h & 0x3f);
}
static inline uint64_t otp__hdr_size(uint64_t h)
{
    return h >> 6;
}
/* Kind of a boxed term (caller checked otp_is_boxed). */
static inline unsigned otp__kind(otp_term t)
{
    return otp__hdr_kind(*(const uint64_t *)otp__ptr(t));
}
static inline bool otp__is_kind(otp_term t, unsigned kind)
{
    return otp_is_boxed(t) && otp__kind(t) == kind;
}

/* ---- local pids: one word, no arena (see the tag table above) */

#define OTP__TAG_LPID        6u
#define OTP__NODE_SLOTS      16u
#define OTP__LPID_SERIAL_MAX ((1u << 25) - 1)

/* Node name and creation of each runtime alive in this OS process. Written
 * when a runtime claims its slot (before any of its pids exist) and read by
 * every thread that looks inside a local pid: release/acquire pairs them. */
typedef struct otp__node_slot {
    _Atomic otp_term node; /* 0 when the slot is free */
    _Atomic uint32_t creation;
} otp__node_slot;
extern otp__node_slot otp__local_nodes[OTP__NODE_SLOTS];

/* Claims a free slot for (node, creation); returns it, or -OTP_ELIMIT when
 * every slot is taken. */
int otp__node_slot_claim(otp_term node, uint32_t creation);
void otp__node_slot_release(unsigned slot);

static inline bool otp__is_lpid(otp_term t)
{
    return (t & 7) == OTP__TAG_LPID;
}
static inline otp_term otp__mk_lpid(unsigned slot, uint32_t id, uint32_t serial)
{
    return (otp_term)OTP__TAG_LPID | (otp_term)(slot & 15) << 3 | (otp_term)id << 7 |
           (otp_term)(serial & OTP__LPID_SERIAL_MAX) << 39;
}
static inline unsigned otp__lpid_slot(otp_term t)
{
    return (unsigned)(t >> 3) & 15;
}
static inline uint32_t otp__lpid_id(otp_term t)
{
    return (uint32_t)(t >> 7);
}
static inline uint32_t otp__lpid_serial(otp_term t)
{
    return (uint32_t)(t >> 39);
}

/* A pid's identity, whichever form it has. */
typedef struct otp__pidv {
    otp_term node;
    uint32_t id, serial, creation;
} otp__pidv;

typedef struct otp__cons {
    otp_term head;
    otp_term tail;
} otp__cons;

typedef struct otp__tuple {
    uint64_t hdr;
    otp_term el[];
} otp__tuple;

typedef struct otp__big {
    uint64_t hdr;
    uint64_t limb[]; /* normalised: no zero top limb, never fits a small */
} otp__big;

typedef struct otp__float {
    uint64_t hdr;
    double d;
} otp__float;

/* A shared, reference-counted block of binary data. Arenas hold one
 * reference each; the last release frees it. refs is touched by every thread
 * that holds a term pointing here. */
typedef struct otp__refc {
    _Atomic uint64_t refs;
    size_t size;
    uint8_t data[];
} otp__refc;

typedef struct otp__binary {
    uint64_t hdr;
    uint64_t bits;       /* total length in bits */
    const uint8_t *data; /* first byte; inline data follows the struct when refc is NULL */
    otp__refc *refc;     /* NULL for heap binaries */
} otp__binary;

typedef struct otp__pid {
    uint64_t hdr;
    otp_term node;
    uint32_t id;
    uint32_t serial;
    uint32_t creation;
    uint32_t pad_;
} otp__pid;

/* Fills v from a pid in either form (the caller checked otp_is_pid). */
static inline void otp__pid_view(otp_term t, otp__pidv *v)
{
    if (otp__is_lpid(t)) {
        const otp__node_slot *s = &otp__local_nodes[otp__lpid_slot(t)];
        /* acquire: pairs with the release in otp__node_slot_claim */
        v->node = atomic_load_explicit(&s->node, memory_order_acquire);
        v->creation = atomic_load_explicit(&s->creation, memory_order_relaxed);
        v->id = otp__lpid_id(t);
        v->serial = otp__lpid_serial(t);
    } else {
        const otp__pid *p = otp__ptr(t);
        *v = (otp__pidv){p->node, p->id, p->serial, p->creation};
    }
}

typedef struct otp__port {
    uint64_t hdr;
    otp_term node;
    uint64_t id;
    uint32_t creation;
    uint32_t pad_;
} otp__port;

typedef struct otp__ref {
    uint64_t hdr; /* size = words */
    otp_term node;
    uint32_t creation;
    uint32_t words[5]; /* wire order: words[0] first on the wire */
} otp__ref;

typedef struct otp__export {
    uint64_t hdr;
    otp_term module;
    otp_term function;
    uint64_t arity;
} otp__export;

/* NEW_FUN_EXT carried faithfully: every field needed to re-encode it. */
typedef struct otp__fun {
    uint64_t hdr; /* size = number of free variables */
    otp_term module;
    otp_term old_index; /* an integer term, as on the wire */
    otp_term old_uniq;  /* an integer term */
    otp_term pid;
    uint32_t arity;
    uint32_t index;
    uint8_t uniq[16];
    otp_term free[];
} otp__fun;

/* Inline tuple access for the runtime's hot paths: the arity (0 when t is
 * not a tuple), and element i of a tuple the caller checked is that big. */
static inline size_t otp__tuple_arity(otp_term t)
{
    return otp__is_kind(t, OTP__H_TUPLE) ? (size_t)otp__hdr_size(*(const uint64_t *)otp__ptr(t))
                                         : 0;
}
static inline otp_term otp__tuple_el(otp_term t, size_t i)
{
    return ((const otp__tuple *)otp__ptr(t))->el[i];
}

/* Flat terms, copied without a walk: the words a copy of t takes when t
 * is an immediate (0) or a tuple of up to four immediates (1 + arity), the
 * commonest requests and replies ({get, 42}, {ok, Pid}); SIZE_MAX for
 * anything else. Tags 000 (boxed) and 010 (cons) are the ones with bits 0
 * and 2 clear; NONE is no term, so never flat. */
static inline size_t otp__flat_words(otp_term t)
{
    if (!otp_is_boxed(t))
        return otp_is_cons(t) || t == OTP_NONE ? SIZE_MAX : 0;
    const otp__tuple *ot = otp__ptr(t);
    size_t n = (size_t)otp__hdr_size(ot->hdr);
    if (otp__hdr_kind(ot->hdr) != OTP__H_TUPLE || n > 4)
        return SIZE_MAX;
    for (size_t i = 0; i < n; i++)
        if ((ot->el[i] & 5) == 0 || ot->el[i] == OTP_NONE)
            return SIZE_MAX;
    return n + 1;
}
/* Copies flat t (otp__flat_words gave `words`) to dst. */
static inline otp_term otp__flat_copy(uint64_t *dst, otp_term t, size_t words)
{
    if (!words)
        return t;
    const uint64_t *src = otp__ptr(t);
    for (size_t i = 0; i < words; i++)
        dst[i] = src[i];
    return otp__boxed(dst);
}

/* ---- arena internals used by the codec's fast paths */

/* Registers a reference to r held by arena a (released on reset/free).
 * Takes over one reference the caller already holds. */
int otp__arena_adopt_refc(otp_arena *a, otp__refc *r);
/* A new refc block with one reference (the caller's). NULL on OOM. */
otp__refc *otp__refc_new(size_t size);
void otp__refc_retain(otp__refc *r);
void otp__refc_release(otp__refc *r);
/* otp_decode of buf[0..len), which lies inside share's block: binaries
 * over OTP_BINARY_HEAP_MAX bytes point into it rather than being copied
 * (codec/etf_decode.c; what otp_decode_binary does for a binary term). */
struct otp_decode_opts;
int otp__decode_shared(otp_arena *a, const uint8_t *buf, size_t len,
                       const struct otp_decode_opts *opts, otp__refc *share, otp_term *out,
                       size_t *used, otp_error *err);

/* otp_encode without its second pass: -OTP_ENOSPC when buf is too small
 * (for a caller that then encodes into a growing buffer instead), or
 * another error for a term that cannot be encoded. */
int64_t otp__encode_fit(otp_term t, unsigned flags, uint8_t *buf, size_t cap);

/* Allocates n words in the arena (NULL on OOM). Inline fast path. */
void *otp__arena_alloc_slow(otp_arena *a, size_t bytes);
/* A block of an arena: malloc'd memory whose usable bytes start at base.
 * Blocks made elsewhere (a message's storage) can be adopted whole. */
struct otp__block {
    struct otp__block *next;
    size_t size; /* usable bytes at base */
    uint8_t *base;
    void (*release)(struct otp__block *b); /* NULL: free(b) */
};

static inline void otp__block_release(struct otp__block *b)
{
    if (b->release)
        b->release(b);
    else
        free(b);
}

/* Hands the malloc'd block b (with its terms) to arena a, which frees it on
 * free (and may reuse its memory after a reset). */
void otp__arena_adopt_block(otp_arena *a, struct otp__block *b);

struct otp_arena {
    uint8_t *top; /* next free byte in the current block */
    uint8_t *end; /* end of the current block */
    struct otp__block *blocks;
    otp__refc **refcs; /* references this arena holds */
    size_t nrefcs, caprefcs;
    size_t bytes;
    bool fixed; /* a window on memory given to it: allocation fails rather than grow */
};
/* A fixed arena over a caller's buffer: for the few small terms a send
 * builds and encodes at once (control tuples, a ref), where otp_arena_new
 * would cost a calloc, a block's malloc and two frees per send. Building
 * past its end fails with OTP_NONE, as in any fixed arena; it holds no
 * references, so it needs no freeing. */
static inline otp_arena otp__arena_window(void *buf, size_t bytes)
{
    return (otp_arena){.top = buf, .end = (uint8_t *)buf + bytes, .fixed = true};
}
static inline void *otp__alloc(otp_arena *a, size_t bytes)
{
    bytes = (bytes + 7) & ~(size_t)7;
    if (OTP_LIKELY((size_t)(a->end - a->top) >= bytes)) {
        void *p = a->top;
        a->top += bytes;
        return p;
    }
    return otp__arena_alloc_slow(a, bytes);
}
static inline otp_term *otp__alloc_words(otp_arena *a, size_t n)
{
    return (otp_term *)otp__alloc(a, n * sizeof(otp_term));
}

/* ---- helpers for building objects the codec fills in place */

/* A binary of len bytes (inline or refc as the size decides); *data gets the
 * writable bytes. bits must be <= len * 8 and > (len - 1) * 8. */
otp_term otp__binary_alloc(otp_arena *a, size_t len, uint64_t bits, uint8_t **data);
/* Bignum with room for n limbs; otp__big_finish() normalises it (and may
 * return a small integer instead). */
otp__big *otp__big_alloc(otp_arena *a, size_t nlimbs, bool negative);
otp_term otp__big_finish(otp__big *b);
/* Sorts a map's pairs into key order. Returns 0, or -OTP_EBADARG when two
 * keys are =:= equal (Erlang rejects such maps on decode). */
int otp__map_sort_check(otp__tuple *map);
/* Sorts, and on duplicates keeps the last value (maps:from_list semantics);
 * returns the possibly shrunk map term. */
otp_term otp__map_sort_dedup(otp__tuple *map);

/* float(Big), rounding toward the nearest; may give an infinity. */
double otp__big_to_double(const otp__big *b);

/* ---- atoms */
typedef struct otp__atom_entry {
    uint32_t len;    /* UTF-8 bytes */
    uint32_t nchars; /* characters */
    uint32_t hash;   /* of the UTF-8 bytes */
    uint8_t latin1;  /* every character <= 255 */
    uint8_t text[];  /* UTF-8, NUL-terminated for otp_atom_cstr */
} otp__atom_entry;
const otp__atom_entry *otp__atom_entry_of(otp_term atom);
/* Interns without validating (the bytes are known-valid UTF-8 of at most 255
 * characters) — the decoder's fast path once it has checked. */
int otp__atom_intern_valid(const uint8_t *utf8, size_t len, otp_term *out);
/* Validates UTF-8; returns the number of characters, or -1 if invalid. */
int64_t otp__utf8_count(const uint8_t *s, size_t len);

#endif
