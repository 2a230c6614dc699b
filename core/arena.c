/* arena.c — bump-pointer arenas that hold terms, and the reference-counted
 * blocks behind large binaries.
 *
 * An arena is a chain of blocks; allocation bumps a pointer, and everything
 * is released at once on reset or free. Binaries too large to copy cheaply
 * live in shared refc blocks; each arena that points at one holds a
 * reference, dropped when the arena is reset or freed.
 */
#include <stdlib.h>

#include "term_internal.h"

#define BLOCK_MIN 4096u
#define BLOCK_MAX (1u << 20)

static size_t block_header(void)
{
    return (sizeof(struct otp__block) + 7) & ~(size_t)7;
}

otp_arena *otp_arena_new(void)
{
    otp_arena *a = calloc(1, sizeof(*a));
    return a;
}

static void release_refcs(otp_arena *a)
{
    for (size_t i = 0; i < a->nrefcs; i++)
        otp__refc_release(a->refcs[i]);
    a->nrefcs = 0;
}

void otp_arena_free(otp_arena *a)
{
    if (!a)
        return;
    release_refcs(a);
    free(a->refcs);
    struct otp__block *b = a->blocks;
    while (b) {
        struct otp__block *n = b->next;
        otp__block_release(b);
        b = n;
    }
    free(a);
}

void otp_arena_reset(otp_arena *a)
{
    struct otp__block *first = a->blocks;
    if (OTP_LIKELY(!a->nrefcs && first && !first->next)) {
        /* The common case (one block, no shared binaries): rewind it. */
        a->top = first->base;
        a->end = first->base + first->size;
        a->bytes = first->size;
        return;
    }
    release_refcs(a);
    /* Keep the most recent block (the largest, since sizes grow) so a
     * per-message arena stops calling malloc once warm. */
    struct otp__block *keep = a->blocks;
    if (!keep) {
        a->top = a->end = NULL;
        a->bytes = 0;
        return;
    }
    struct otp__block *b = keep->next;
    while (b) {
        struct otp__block *n = b->next;
        otp__block_release(b);
        b = n;
    }
    keep->next = NULL;
    a->blocks = keep;
    a->top = keep->base;
    a->end = keep->base + keep->size;
    a->bytes = keep->size;
}

void *otp__arena_alloc_slow(otp_arena *a, size_t bytes)
{
    if (a->fixed)
        return NULL;
    /* Blocks double with the arena's size, so an arena that decodes one
     * large term makes O(log n) mallocs; oversized requests get a block of
     * their own and leave the current block in service. */
    size_t want = a->bytes < BLOCK_MIN ? BLOCK_MIN : a->bytes;
    if (want > BLOCK_MAX)
        want = BLOCK_MAX;
    bool own = bytes > want / 2;
    size_t size = own ? bytes : want;
    if (size < bytes || size > SIZE_MAX - block_header())
        return NULL;
    struct otp__block *b = malloc(block_header() + size);
    if (!b)
        return NULL;
    b->size = size;
    b->release = NULL;
    b->base = (uint8_t *)b + block_header();
    a->bytes += size;
    if (own && a->blocks) {
        /* Insert behind the current block so its free space stays usable. */
        b->next = a->blocks->next;
        a->blocks->next = b;
        return b->base;
    }
    b->next = a->blocks;
    a->blocks = b;
    a->top = b->base + bytes;
    a->end = b->base + size;
    return b->base;
}

void *otp_arena_alloc(otp_arena *a, size_t bytes)
{
    return otp__alloc(a, bytes);
}

size_t otp_arena_bytes(const otp_arena *a)
{
    return a->bytes;
}

int otp__arena_adopt_refc(otp_arena *a, otp__refc *r)
{
    if (a->nrefcs == a->caprefcs) {
        size_t cap = a->caprefcs ? a->caprefcs * 2 : 8;
        otp__refc **n = realloc(a->refcs, cap * sizeof(*n));
        if (!n)
            return -OTP_ENOMEM;
        a->refcs = n;
        a->caprefcs = cap;
    }
    a->refcs[a->nrefcs++] = r;
    return 0;
}

otp__refc *otp__refc_new(size_t size)
{
    if (size > SIZE_MAX - sizeof(otp__refc))
        return NULL;
    otp__refc *r = malloc(sizeof(otp__refc) + size);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    r->size = size;
    return r;
}

void otp__refc_retain(otp__refc *r)
{
    /* Relaxed: a new reference is only made from an existing one, which
     * already keeps the block alive (the same argument as shared_ptr). */
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void otp__refc_release(otp__refc *r)
{
    /* acq_rel: the last releaser must see every other thread's reads of the
     * data completed before it frees the block. */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        free(r);
}

void otp__arena_adopt_block(otp_arena *a, struct otp__block *b)
{
    /* Behind the current block, so the bump space in use stays in use; an
     * empty arena takes it as its first block (a reset will then reuse the
     * message's memory for new terms). */
    a->bytes += b->size;
    if (a->blocks) {
        b->next = a->blocks->next;
        a->blocks->next = b;
    } else {
        b->next = NULL;
        a->blocks = b;
    }
}
