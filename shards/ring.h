/* ring.h — the bounded single-producer/single-consumer ring between two
 * shards, and the sleeping flag (otp__waker) a consumer shard shares among
 * all of its incoming rings. This is where threads meet on the hot path:
 * every field says which thread writes it, every atomic its memory order.
 * The batch operations are inline; ring.c holds set-up and tear-down.
 */
#ifndef OTP_SHARDS_RING_H
#define OTP_SHARDS_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "otp/common.h"
#include "term_internal.h" /* OTP_ASSERT */

#define OTP__CACHE_LINE 64

/* A ring of `capacity` fixed-size slots (a power of two). Indexes run free
 * (64 bits never wrap in practice) and are reduced with `mask`; head == tail
 * is empty, tail - head == capacity is full, so every slot is usable and a
 * capacity of 1 works.
 *
 * The producer writes slots [tail, tail + n) then publishes them with one
 * release store of tail; the consumer reads slots [head, tail) and hands them
 * back with one release store of head. Each side caches the other's index and
 * reads the other side's cache line only when its cached view cannot satisfy
 * a request. The geometry (slots, mask, stride) is copied into each side's
 * line so neither touches a third line. */
typedef struct otp__ring {
    /* Producer's line. Written only by the producer; the consumer reads tail. */
    struct {
        alignas(OTP__CACHE_LINE) _Atomic uint64_t tail; /* next slot to publish */
        uint64_t head_cache;                            /* last head seen: a lower bound */
        unsigned char *slots;
        uint64_t mask;
        uint32_t stride;
        uint32_t reserved; /* slots handed out by the last reserve */
    } prod;
    /* Consumer's line. Written only by the consumer; the producer reads head. */
    struct {
        alignas(OTP__CACHE_LINE) _Atomic uint64_t head; /* next slot to consume */
        uint64_t tail_cache;                            /* last tail seen: a lower bound */
        unsigned char *slots;
        uint64_t mask;
        uint32_t stride;
        uint32_t peeked; /* slots handed out by the last peek */
    } cons;
} otp__ring;

/* Set up an empty ring in caller-owned memory `r` (which must be 64-byte
 * aligned: static, on the stack, or from aligned_alloc). The slot array is
 * allocated here and freed by otp__ring_destroy. `capacity` must be a power
 * of two in [1, 2^31]; `slot_size` in [1, 65536] bytes is rounded up to a
 * multiple of 8 so slots hold pointers aligned. Returns 0, -OTP_EBADARG or
 * -OTP_ENOMEM. Not thread-safe: publish `r` to the two threads afterwards
 * (thread creation or another release/acquire pair does that). */
int otp__ring_init(otp__ring *r, uint32_t capacity, uint32_t slot_size);

/* Free the slot array; neither side may use `r` any more. Safe on a ring
 * whose init failed or that is zeroed. */
void otp__ring_destroy(otp__ring *r);

/* ---------------------------------------------------------------- producer */

/* Reserve up to n slots for writing; returns how many are free, possibly
 * fewer than n, 0 when the ring is full. A full ring is back-pressure: the
 * caller decides what to do (suspend the sender, try later); the ring never
 * blocks or spins. The reservation is only a view: it is the caller's until
 * it publishes, and a later reserve replaces it. */
static inline uint32_t otp__ring_reserve(otp__ring *r, uint32_t n)
{
    /* relaxed: tail is written only by this thread */
    uint64_t tail = atomic_load_explicit(&r->prod.tail, memory_order_relaxed);
    uint64_t cap = r->prod.mask + 1;
    uint64_t room = cap - (tail - r->prod.head_cache);
    if (room < n) {
        /* acquire: pairs with the consumer's release of head, so its reads of
         * the freed slots happen before we overwrite them */
        r->prod.head_cache = atomic_load_explicit(&r->cons.head, memory_order_acquire);
        room = cap - (tail - r->prod.head_cache);
    }
    uint32_t got = room < n ? (uint32_t)room : n;
    r->prod.reserved = got;
    return got;
}

/* The i-th slot of the current reservation (i < what reserve returned).
 * Valid until the slot is published. */
static inline void *otp__ring_wslot(otp__ring *r, uint32_t i)
{
    OTP_ASSERT(i < r->prod.reserved);
    /* relaxed: own index */
    uint64_t tail = atomic_load_explicit(&r->prod.tail, memory_order_relaxed);
    return r->prod.slots + ((tail + i) & r->prod.mask) * r->prod.stride;
}

/* Make the first n reserved slots visible to the consumer, with one store
 * for the batch. n may be fewer than reserved: the rest stay reserved,
 * renumbered from 0, for a later publish (or are dropped by the next
 * reserve). Use
 * this only when the consumer never sleeps on a waker; otherwise use
 * otp__ring_publish_needs_wake. */
static inline void otp__ring_publish(otp__ring *r, uint32_t n)
{
    OTP_ASSERT(n <= r->prod.reserved);
    if (OTP_UNLIKELY(n > r->prod.reserved)) /* release builds: never publish unwritten slots */
        n = r->prod.reserved;
    /* relaxed: own index */
    uint64_t tail = atomic_load_explicit(&r->prod.tail, memory_order_relaxed);
    r->prod.reserved -= n;
    /* release: the slot writes above become visible before the new tail */
    atomic_store_explicit(&r->prod.tail, tail + n, memory_order_release);
}

/* ---------------------------------------------------------------- consumer */

/* How many slots are ready to read, at most n (0: empty). The producer's
 * line is read only when the cached tail shows fewer than n, so asking for
 * what one can process now (a batch, not UINT32_MAX) keeps it off the line
 * while a backlog lasts. */
static inline uint32_t otp__ring_peek(otp__ring *r, uint32_t n)
{
    /* relaxed: head is written only by this thread */
    uint64_t head = atomic_load_explicit(&r->cons.head, memory_order_relaxed);
    uint64_t avail = r->cons.tail_cache - head;
    if (avail < n) {
        /* acquire: pairs with the producer's release of tail, so the slot
         * contents written before it are visible to our reads */
        r->cons.tail_cache = atomic_load_explicit(&r->prod.tail, memory_order_acquire);
        avail = r->cons.tail_cache - head;
    }
    uint32_t got = avail < n ? (uint32_t)avail : n;
    r->cons.peeked = got;
    return got;
}

/* The i-th ready slot (i < what peek returned). Valid until released; the
 * consumer may read and modify it in place. */
static inline void *otp__ring_rslot(otp__ring *r, uint32_t i)
{
    OTP_ASSERT(i < r->cons.peeked);
    /* relaxed: own index */
    uint64_t head = atomic_load_explicit(&r->cons.head, memory_order_relaxed);
    return r->cons.slots + ((head + i) & r->cons.mask) * r->cons.stride;
}

/* Give the first n peeked slots back to the producer, with one store for
 * the batch. The rest stay peeked, renumbered from 0. */
static inline void otp__ring_release(otp__ring *r, uint32_t n)
{
    OTP_ASSERT(n <= r->cons.peeked);
    if (OTP_UNLIKELY(n > r->cons.peeked)) /* release builds: never free unread slots */
        n = r->cons.peeked;
    /* relaxed: own index */
    uint64_t head = atomic_load_explicit(&r->cons.head, memory_order_relaxed);
    r->cons.peeked -= n;
    /* release: our reads of the slots complete before the producer may reuse them */
    atomic_store_explicit(&r->cons.head, head + n, memory_order_release);
}

/* ------------------------------------------------------ sleeping and waking
 *
 * One otp__waker per consumer shard, shared by the producers of all its
 * incoming rings. It is the classic store-fence-load pairing (Dekker):
 *
 *   consumer                              producer (any of them)
 *   otp__waker_prepare_sleep: sleeping=1  otp__ring_publish_needs_wake:
 *     seq_cst fence  (F1)                   tail += n (release)
 *   otp__ring_recheck_empty on EVERY        seq_cst fence  (F2)
 *     incoming ring: tail (acquire)         sleeping? (relaxed)
 *   all empty: sleep (eventfd read);        yes: exchange it to 0, and the
 *     woken: otp__waker_awake               one that saw 1 writes the eventfd
 *   one not empty: otp__waker_awake, run
 *
 * F1 and F2 are both seq_cst, so one precedes the other in the single total
 * order of seq_cst fences: if F1 comes first the producer's load after F2
 * sees sleeping=1 and wakes; if F2 comes first the consumer's re-check after
 * F1 sees the new tail and does not sleep. Either way no wake-up is lost.
 * The exchange makes the producers that raced to a sleeping consumer elect
 * one waker, so a burst from many shards costs one eventfd write, not many;
 * a wake that arrives after the consumer cancelled its sleep only makes its
 * next sleep return at once. (Message contents never depend on the fences:
 * they travel by the release/acquire pair on tail, which TSan checks.) */
typedef struct otp__waker {
    /* 1 while the consumer is (about to be) asleep. Written by the consumer
     * (1 and 0) and by the producer that wins the wake (0); read by every
     * producer after each publish. Alone on its line: producers read it on
     * every batch and must not share the line with hot writes. */
    alignas(OTP__CACHE_LINE) _Atomic uint32_t sleeping;
} otp__waker;

static inline void otp__waker_init(otp__waker *w)
{
    /* relaxed: set up before the threads that use it start */
    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
}

/* Consumer: announce that it is about to sleep. Then call
 * otp__ring_recheck_empty on every incoming ring before sleeping. */
static inline void otp__waker_prepare_sleep(otp__waker *w)
{
    /* relaxed: the fence below orders it before the re-check's loads */
    atomic_store_explicit(&w->sleeping, 1, memory_order_relaxed);
    /* seq_cst fence F1: pairs with F2 in otp__ring_publish_needs_wake */
    atomic_thread_fence(memory_order_seq_cst);
}

/* Consumer, after otp__waker_prepare_sleep: whether the ring is still empty,
 * read from the producer's line (not the cached view). */
static inline bool otp__ring_recheck_empty(otp__ring *r)
{
    /* acquire: if it is not empty, the new slots are readable right away;
     * coming after F1 is what makes the Dekker pairing hold */
    r->cons.tail_cache = atomic_load_explicit(&r->prod.tail, memory_order_acquire);
    /* relaxed: own index */
    return r->cons.tail_cache == atomic_load_explicit(&r->cons.head, memory_order_relaxed);
}

/* Consumer: it is awake again, either woken or because a re-check found
 * work. Producers stop trying to wake it. */
static inline void otp__waker_awake(otp__waker *w)
{
    /* relaxed: a producer that still reads the old 1 merely wakes a consumer
     * that is awake (a spurious wake, harmless); the next prepare_sleep is
     * ordered by its own fence */
    atomic_store_explicit(&w->sleeping, 0, memory_order_relaxed);
}

/* Producer: otp__ring_publish, then whether this producer must wake the
 * consumer that owns `w` (true for at most one of the producers racing to a
 * sleeping consumer). The caller does the actual wake (eventfd write,
 * IORING_OP_MSG_RING) after this returns true. */
static inline bool otp__ring_publish_needs_wake(otp__ring *r, uint32_t n, otp__waker *w)
{
    otp__ring_publish(r, n);
    /* seq_cst fence F2: pairs with F1 in otp__waker_prepare_sleep */
    atomic_thread_fence(memory_order_seq_cst);
    /* relaxed: ordered after our tail store by F2; usually 0, and reading it
     * keeps the line shared instead of writing it on every batch */
    if (OTP_LIKELY(atomic_load_explicit(&w->sleeping, memory_order_relaxed) == 0))
        return false;
    /* relaxed: the exchange only elects one waker; the eventfd write and
     * read order everything after it */
    return atomic_exchange_explicit(&w->sleeping, 0, memory_order_relaxed) == 1;
}

#endif
