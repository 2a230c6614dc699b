/* msg.c — signal blocks: an envelope and a private copy of its terms in one
 * malloc, sized exactly before copying; and their hand-over to an arena.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "msg.h"

/* Small signals come from a per-thread cache: a call and its reply are two
 * of them, and malloc/free was a sixth of a call's time. A block freed on
 * another thread joins that thread's cache (the ring or queue that carried
 * it ordered the hand-over). Traffic between shards frees on one thread what
 * another allocates, so a full cache hands batches of blocks to a shared
 * pool and an empty one takes a batch back: one lock per SIG_BATCH blocks,
 * where free and malloc across threads would cost a slow path each. */
#define SIG_SMALL (sizeof(otp__sig) + OTP__SIG_ROOM) /* bytes, header included */
_Static_assert(sizeof(otp__sig) + OTP__SIG_ROOM == 256, "a small signal is 256 bytes");
#if defined(__SANITIZE_ADDRESS__)
#define SIG_CACHE_MAX 0 /* let ASan see every use after free */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIG_CACHE_MAX 0
#endif
#endif
#ifndef SIG_CACHE_MAX
#define SIG_CACHE_MAX 512
#endif
#define SIG_BATCH    64
#define SIG_POOL_MAX 1024 /* batches kept in the shared pool (16 MiB) */

static _Thread_local struct {
    struct otp__block *head;
    unsigned n;
} sig_cache;

/* Batches of SIG_BATCH blocks, chained through their `base` fields (unused
 * while a block is cached). */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct otp__block *pool; /* guarded by pool_lock */
static unsigned pool_n;         /* guarded by pool_lock */

static void free_chain(struct otp__block *b)
{
    while (b) {
        struct otp__block *n = b->next;
        free(b);
        b = n;
    }
}

static void sig_recycle(struct otp__block *b)
{
#if SIG_CACHE_MAX == 0
    free(b);
#else
    b->next = sig_cache.head;
    sig_cache.head = b;
    if (++sig_cache.n < SIG_CACHE_MAX)
        return;
    /* Full: the first SIG_BATCH go to the pool. */
    struct otp__block *first = sig_cache.head, *last = first;
    for (unsigned i = 1; i < SIG_BATCH; i++)
        last = last->next;
    sig_cache.head = last->next;
    sig_cache.n -= SIG_BATCH;
    last->next = NULL;
    pthread_mutex_lock(&pool_lock);
    bool kept = pool_n < SIG_POOL_MAX;
    if (kept) {
        first->base = (uint8_t *)pool;
        pool = first;
        pool_n++;
    }
    pthread_mutex_unlock(&pool_lock);
    if (!kept)
        free_chain(first);
#endif
}

void otp__sig_cache_drain(void)
{
    free_chain(sig_cache.head);
    sig_cache.head = NULL;
    sig_cache.n = 0;
}

/* An empty cache takes a batch from the pool, if it has one. */
static struct otp__block *cache_refill(void)
{
    pthread_mutex_lock(&pool_lock);
    struct otp__block *batch = pool;
    if (batch) {
        pool = (struct otp__block *)batch->base;
        pool_n--;
    }
    pthread_mutex_unlock(&pool_lock);
    if (batch) {
        sig_cache.head = batch;
        sig_cache.n = SIG_BATCH;
    }
    return batch;
}

/* Out of line: the cached case below stays free of register spills. */
static OTP__NOINLINE otp__sig *sig_alloc_slow(size_t data)
{
    otp__sig *s;
    if (sizeof *s + data <= SIG_SMALL) {
        struct otp__block *b = SIG_CACHE_MAX ? cache_refill() : NULL;
        if (b) {
            sig_cache.head = b->next;
            sig_cache.n--;
            s = (otp__sig *)b;
        } else if (!(s = malloc(SIG_SMALL))) {
            return NULL;
        }
        s->blk.release = sig_recycle;
        return s;
    }
    if (!(s = malloc(sizeof *s + data)))
        return NULL;
    s->blk.release = NULL;
    return s;
}

static inline otp__sig *sig_alloc(size_t data)
{
    struct otp__block *b = sig_cache.head;
    if (OTP_LIKELY(b && sizeof(otp__sig) + data <= SIG_SMALL)) {
        sig_cache.head = b->next;
        sig_cache.n--;
        otp__sig *s = (otp__sig *)b;
        s->blk.release = sig_recycle;
        return s;
    }
    return sig_alloc_slow(data);
}

static size_t term_bytes(otp_term t)
{
    return otp_is_boxed(t) || otp_is_cons(t) ? otp_copy_size(t) : 0;
}

static inline bool is_compound(otp_term t)
{
    return otp_is_boxed(t) || otp_is_cons(t);
}

/* A signal with room for `size` bytes of terms, its envelope filled in. */
static inline otp__sig *sig_start(unsigned kind, otp_term to, otp_term from, size_t size)
{
    if (OTP_UNLIKELY(size > UINT32_MAX))
        return NULL;
    otp__sig *s = sig_alloc(size);
    if (!s)
        return NULL;
    s->next = NULL;
    s->kind = (uint8_t)kind;
    s->flags = 0;
    s->nrefcs = 0;
    s->data_size = (uint32_t)size;
    s->to = to;
    s->from = from;
    s->ptr = NULL;
    s->refcs = NULL;
    s->a = s->b = s->c = OTP_NONE;
    return s;
}

/* Takes over what the terms were copied through: `view` is an arena that
 * is just a window on s->data (the size is exact, so no block is ever
 * allocated), and the shared binaries' references it took become s's.
 * Returns s, or NULL (s freed) when a copy failed. */
static otp__sig *sig_finish(otp__sig *s, otp_arena *view, bool ok)
{
    s->refcs = view->refcs;
    s->nrefcs = (uint16_t)view->nrefcs;
    OTP_ASSERT(view->blocks == NULL); /* the sizes given are bounds */
    if (OTP_LIKELY(ok && !view->blocks && view->nrefcs <= UINT16_MAX))
        return s;
    if (view->nrefcs > UINT16_MAX) {
        for (size_t i = 0; i < view->nrefcs; i++)
            otp__refc_release(view->refcs[i]);
        s->nrefcs = 0;
    }
    for (struct otp__block *blk = view->blocks, *n; blk; blk = n) {
        n = blk->next;
        free(blk);
    }
    otp__sig_free(s);
    return NULL;
}

otp__sig *otp__sig_new(unsigned kind, otp_term to, otp_term from, otp_term a, otp_term b,
                       otp_term c)
{
    size_t size = term_bytes(a) + term_bytes(b) + term_bytes(c);
    otp__sig *s = sig_start(kind, to, from, size);
    if (!s)
        return NULL;
    if (size == 0) {
        s->a = a;
        s->b = b;
        s->c = c;
        return s;
    }
    otp_arena view = {.top = (uint8_t *)s->data, .end = (uint8_t *)s->data + size};
    s->a = is_compound(a) ? otp_copy(&view, a) : a;
    s->b = is_compound(b) ? otp_copy(&view, b) : b;
    s->c = is_compound(c) ? otp_copy(&view, c) : c;
    bool ok = (a == OTP_NONE || s->a != OTP_NONE) && (b == OTP_NONE || s->b != OTP_NONE) &&
              (c == OTP_NONE || s->c != OTP_NONE);
    return sig_finish(s, &view, ok);
}

otp__sig *otp__sig_small(unsigned kind, otp_term to, otp_term from)
{
    return sig_start(kind, to, from, OTP__SIG_ROOM);
}

otp__sig *otp__sig_build(unsigned kind, otp_term to, otp_term from, size_t size,
                         otp_term (*fn)(otp_arena *a, void *ctx), void *ctx)
{
    otp__sig *s = sig_start(kind, to, from, size);
    if (!s)
        return NULL;
    otp_arena view = {.top = (uint8_t *)s->data, .end = (uint8_t *)s->data + size};
    s->a = fn(&view, ctx);
    return sig_finish(s, &view, s->a != OTP_NONE);
}

otp__sig *otp__sig_build_small(unsigned kind, otp_term to, otp_term from, size_t (*size)(void *ctx),
                               otp_term (*fn)(otp_arena *a, void *ctx), void *ctx)
{
    size_t room = SIG_SMALL - sizeof(otp__sig);
    otp__sig *s = sig_start(kind, to, from, room);
    if (!s)
        return NULL;
    otp_arena view = {.top = (uint8_t *)s->data, .end = (uint8_t *)s->data + room, .fixed = true};
    otp_term t = fn(&view, ctx);
    if (OTP_LIKELY(t != OTP_NONE && view.nrefcs <= UINT16_MAX)) {
        s->a = t;
        s->data_size = (uint32_t)(view.top - (uint8_t *)s->data);
        s->refcs = view.refcs;
        s->nrefcs = (uint16_t)view.nrefcs;
        return s;
    }
    /* Too big for the small block (or a failure the exact build will meet
     * again): drop what the attempt took, and size it. */
    for (size_t i = 0; i < view.nrefcs; i++)
        otp__refc_release(view.refcs[i]);
    free(view.refcs);
    otp__sig_free(s);
    return otp__sig_build(kind, to, from, size(ctx), fn, ctx);
}

void otp__sig_free(otp__sig *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nrefcs; i++)
        otp__refc_release(s->refcs[i]);
    if (s->refcs)
        free(s->refcs);
    otp__block_release(&s->blk);
}

void otp__sig_adopt(otp__sig *s, otp_arena *a)
{
    for (size_t i = 0; i < s->nrefcs; i++) {
        /* If the arena cannot grow its list, keep the reference rather than
         * let a term dangle: the block then outlives its last user (a leak
         * under memory exhaustion, never a use after free). */
        (void)otp__arena_adopt_refc(a, s->refcs[i]);
    }
    if (s->refcs)
        free(s->refcs);
    if (s->data_size == 0) {
        otp__block_release(&s->blk);
        return;
    }
    s->blk.size = s->data_size;
    s->blk.base = (uint8_t *)s->data;
    otp__arena_adopt_block(a, &s->blk);
}
