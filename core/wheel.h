/* wheel.h — the per-shard hierarchical timing wheel: send_after, receive and
 * call timeouts, supervisor windows, ticks. Single-threaded (one shard owns
 * it), intrusive (the caller embeds otp__timer and owns its memory), and
 * clock-free: time is a uint64_t count of milliseconds passed in by the
 * caller, so the resolution is 1 ms and tests are deterministic.
 */
#ifndef OTP_CORE_WHEEL_H
#define OTP_CORE_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTP__WHEEL_BITS   6 /* 64 slots per level: one uint64_t bitmap each */
#define OTP__WHEEL_SLOTS  (1u << OTP__WHEEL_BITS)
#define OTP__WHEEL_LEVELS 11 /* 11 x 6 bits >= 64 bits of milliseconds */

typedef struct otp__tlink {
    struct otp__tlink *next, *prev;
} otp__tlink;

/* A timer, embedded by the caller in whatever it times (a process, a call).
 * Zeroed memory or otp__timer_init makes a timer that is not pending; only
 * the wheel writes it while it is pending. */
typedef struct otp__timer {
    otp__tlink link;   /* first: a link is a timer; next == NULL: not pending */
    uint64_t deadline; /* ms, as given to otp__wheel_add */
    uint32_t where;    /* internal: slot index, or the due or firing list */
} otp__timer;

/* Called by otp__wheel_advance for each timer that fires; the timer is no
 * longer pending when it is called and belongs to the caller again (it may
 * be freed, or added again). */
typedef void (*otp__wheel_cb)(otp__timer *t, void *ctx);

/* Level L, slot s holds the timers whose deadline agrees with `now` above
 * bit 6(L+1) and has s > now's digit L in bits 6L..6L+5; level 0's slots are
 * single milliseconds. As `now` reaches a slot of a higher level, its timers
 * move down (cascade); a timer moves at most once per level. */
typedef struct otp__wheel {
    uint64_t now;                         /* timers due at or before it have fired */
    uint64_t occupied[OTP__WHEEL_LEVELS]; /* bit s: slot s of that level is non-empty */
    uint32_t levels;                      /* bit L: occupied[L] != 0 */
    bool advancing;                       /* inside otp__wheel_advance */
    size_t count;                         /* pending timers */
    otp__tlink due;    /* added with a deadline not after `now`: first at the next advance */
    otp__tlink firing; /* the batch advance is firing */
    otp__tlink slots[OTP__WHEEL_LEVELS][OTP__WHEEL_SLOTS];
} otp__wheel;

static inline void otp__timer_init(otp__timer *t)
{
    t->link.next = t->link.prev = NULL;
    t->deadline = 0;
    t->where = 0;
}

static inline bool otp__timer_pending(const otp__timer *t)
{
    return t->link.next != NULL;
}

/* An empty wheel whose clock reads `now`. The caller owns `w` (about 11 KiB)
 * and may drop it once no timer is pending; nothing is allocated. */
void otp__wheel_init(otp__wheel *w, uint64_t now);

/* Arm `t` to fire at `deadline` (ms, same clock as advance); a pending `t` is
 * re-armed (moved, counted as newly added for ties). A deadline not after the
 * wheel's clock, otp__wheel_now(), is due: it fires at the start of the next
 * advance, before anything else, in the order such timers were added. Any
 * deadline works, up to UINT64_MAX (which fires only at advance(UINT64_MAX)).
 * O(1). `t` must stay valid until it fires or is cancelled. */
void otp__wheel_add(otp__wheel *w, otp__timer *t, uint64_t deadline);

/* Disarm `t`: true if it was pending (it will not fire), false if it had
 * fired, was cancelled, or was never added (zeroed or otp__timer_init). O(1). */
bool otp__wheel_cancel(otp__wheel *w, otp__timer *t);

/* Move the clock to `now` and fire, through cb, every timer due by then:
 * first those already due (see add), then the rest in deadline order, equal
 * deadlines in the order they were added. Returns how many fired. A `now`
 * earlier than the clock fires only the already-due timers and leaves the
 * clock. Cost: O(levels + fired + cascaded), never O(elapsed ms).
 *
 * While cb runs, the clock (otp__wheel_now) reads the firing timer's
 * deadline (for already-due timers, the clock as it was), and cb may add and
 * cancel any timer, itself included, with the meaning add and cancel have at
 * that clock: a timer added with a deadline after it and not after `now`
 * fires later in this same advance, in order; one added with a deadline not
 * after it is due and waits for the next advance (so a callback that re-arms
 * itself "immediately" cannot keep advance from returning); a cancelled one
 * does not fire, even if it was due in this advance. cb must not call
 * advance. */
size_t otp__wheel_advance(otp__wheel *w, uint64_t now, otp__wheel_cb cb, void *ctx);

/* When the shard must call advance next: never later than the earliest
 * deadline, UINT64_MAX when no timer is pending, the clock when one is
 * already due (so also UINT64_MAX once the clock has reached the end of
 * time; w->count tells these apart). O(1): it reads the bitmaps, not the timers. It is exact when
 * the earliest deadline lies in the clock's current 64 ms-aligned block
 * (level 0); otherwise it is when that timer's slot cascades, and a shard
 * that sleeps until then, advances and asks again reaches the deadline after
 * at most one such early wake-up per level (at most three for a 5 s
 * timeout): a few idle wake-ups traded for never scanning a slot's list. */
uint64_t otp__wheel_next_deadline(const otp__wheel *w);

/* The same as a sleep length from `now`: 0 if something is due, UINT64_MAX
 * if nothing is pending. */
static inline uint64_t otp__wheel_timeout(const otp__wheel *w, uint64_t now)
{
    uint64_t next = otp__wheel_next_deadline(w);
    if (next == UINT64_MAX)
        return UINT64_MAX;
    return next > now ? next - now : 0;
}

static inline uint64_t otp__wheel_now(const otp__wheel *w)
{
    return w->now;
}

#endif
