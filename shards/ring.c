/* ring.c — setting up and tearing down the SPSC rings between shards. The
 * hot path (reserve, publish, peek, release and the sleeping flag) is inline
 * in ring.h; this file only sizes and allocates the slot array.
 */
#include <stdlib.h>
#include <string.h>

#include "ring.h"

#define SLOT_MAX 65536u

int otp__ring_init(otp__ring *r, uint32_t capacity, uint32_t slot_size)
{
    memset(r, 0, sizeof(*r));
    if (capacity == 0 || (capacity & (capacity - 1)) != 0 || capacity > (1u << 31))
        return -OTP_EBADARG;
    if (slot_size == 0 || slot_size > SLOT_MAX)
        return -OTP_EBADARG;
    OTP_ASSERT(((uintptr_t)r & (OTP__CACHE_LINE - 1)) == 0);

    /* Multiples of 8 keep pointers in envelopes aligned; 16- and 32-byte
     * envelopes then pack 4 or 2 to a cache line without straddling. */
    uint32_t stride = (slot_size + 7u) & ~7u;
    size_t bytes = (size_t)capacity * stride;
    /* aligned_alloc wants a multiple of the alignment; the array starts on a
     * line of its own so no slot shares a line with anything else. */
    bytes = (bytes + OTP__CACHE_LINE - 1) & ~(size_t)(OTP__CACHE_LINE - 1);
    unsigned char *slots = aligned_alloc(OTP__CACHE_LINE, bytes);
    if (!slots)
        return -OTP_ENOMEM;

    r->prod.slots = r->cons.slots = slots;
    r->prod.mask = r->cons.mask = (uint64_t)capacity - 1;
    r->prod.stride = r->cons.stride = stride;
    /* relaxed: no other thread sees the ring before the caller publishes it */
    atomic_store_explicit(&r->prod.tail, 0, memory_order_relaxed);
    atomic_store_explicit(&r->cons.head, 0, memory_order_relaxed);
    return 0;
}

void otp__ring_destroy(otp__ring *r)
{
    free(r->prod.slots);
    r->prod.slots = r->cons.slots = NULL;
}
