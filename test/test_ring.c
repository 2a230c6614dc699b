/* test_ring.c — the SPSC ring between shards: argument checks, batching
 * edge cases and wraparound on one thread (capacities 1, 2 and up), the
 * sleeping-flag protocol step by step, then two-thread stress runs that check
 * every sequence number arrives exactly once and in order, one of them with
 * consumers that really sleep on an eventfd (no wake-up may be lost).
 * OTP_TEST_RING_N overrides the number of messages of the big stress run.
 */
/* otp-test: threads */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ring.h"

/* The envelope the stress runs carry: 24 bytes, like a runtime message (a
 * pointer and two words), with redundancy that shows a torn or stale slot. */
typedef struct msg {
    uint64_t seq;
    uint64_t inv;  /* ~seq */
    uint64_t mult; /* seq * odd constant */
} msg;

#define MULT 0x9e3779b97f4a7c15ull

static void msg_put(void *slot, uint64_t seq)
{
    msg *m = slot;
    m->seq = seq;
    m->inv = ~seq;
    m->mult = seq * MULT;
}

static uint64_t msg_get(const void *slot)
{
    const msg *m = slot;
    assert_int_equal(m->inv, ~m->seq);
    assert_int_equal(m->mult, m->seq * MULT);
    return m->seq;
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: fast, and each thread has its own state */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static otp__ring *ring_new(uint32_t capacity, uint32_t slot_size)
{
    otp__ring *r = aligned_alloc(OTP__CACHE_LINE, sizeof(otp__ring));
    assert_non_null(r);
    assert_int_equal(otp__ring_init(r, capacity, slot_size), 0);
    return r;
}

static void ring_free(otp__ring *r)
{
    otp__ring_destroy(r);
    free(r);
}

/* ------------------------------------------------------------ one thread */

static void test_init_args(void **state)
{
    (void)state;
    _Static_assert(sizeof(otp__ring) == 2 * OTP__CACHE_LINE, "one line per side");
    _Static_assert(offsetof(otp__ring, cons) == OTP__CACHE_LINE, "head apart from tail");
    _Static_assert(sizeof(otp__waker) == OTP__CACHE_LINE, "waker alone on its line");

    otp__ring *r = aligned_alloc(OTP__CACHE_LINE, sizeof(otp__ring));
    assert_non_null(r);
    assert_int_equal(otp__ring_init(r, 0, 16), -OTP_EBADARG);
    otp__ring_destroy(r); /* safe after a failed init */
    assert_int_equal(otp__ring_init(r, 3, 16), -OTP_EBADARG);
    assert_int_equal(otp__ring_init(r, 12, 16), -OTP_EBADARG);
    assert_int_equal(otp__ring_init(r, 0x80000001u, 16), -OTP_EBADARG);
    assert_int_equal(otp__ring_init(r, 8, 0), -OTP_EBADARG);
    assert_int_equal(otp__ring_init(r, 8, 65537), -OTP_EBADARG);

    /* A 12-byte slot is laid out every 16 bytes, so pointers stay aligned. */
    assert_int_equal(otp__ring_init(r, 8, 12), 0);
    assert_int_equal(otp__ring_reserve(r, 2), 2);
    unsigned char *s0 = otp__ring_wslot(r, 0), *s1 = otp__ring_wslot(r, 1);
    assert_int_equal(s1 - s0, 16);
    assert_int_equal((uintptr_t)s0 % OTP__CACHE_LINE, 0);
    otp__ring_destroy(r);
    free(r);
}

static void test_batches(void **state)
{
    (void)state;
    otp__ring *r = ring_new(8, 24);

    /* Empty: nothing to peek, everything to reserve. */
    assert_int_equal(otp__ring_peek(r, 4), 0);
    assert_int_equal(otp__ring_reserve(r, 0), 0);
    assert_int_equal(otp__ring_reserve(r, 3), 3);
    for (uint32_t i = 0; i < 3; i++)
        msg_put(otp__ring_wslot(r, i), i);
    /* Not visible before publish. */
    assert_int_equal(otp__ring_peek(r, 8), 0);
    otp__ring_publish(r, 3);
    assert_int_equal(otp__ring_peek(r, 8), 3);
    assert_int_equal(otp__ring_peek(r, 2), 2); /* at most what was asked */
    assert_int_equal(otp__ring_peek(r, 0), 0);

    /* Reserve more than is free: get what there is, 5. */
    assert_int_equal(otp__ring_reserve(r, 100), 5);
    for (uint32_t i = 0; i < 5; i++)
        msg_put(otp__ring_wslot(r, i), 3 + i);
    /* Partial publish: 2 now; the other 3 stay reserved, renumbered. */
    otp__ring_publish(r, 2);
    assert_int_equal(msg_get(otp__ring_wslot(r, 0)), 5);
    assert_int_equal(otp__ring_reserve(r, 1), 1); /* full view: 3 left, cached head */
    otp__ring_publish(r, 1);
    assert_int_equal(otp__ring_reserve(r, 8), 2);
    assert_int_equal(msg_get(otp__ring_wslot(r, 0)), 6);
    otp__ring_publish(r, 2);
    assert_int_equal(otp__ring_reserve(r, 1), 0); /* full */

    /* Consume in uneven batches; a partial release keeps the rest peeked. */
    assert_int_equal(otp__ring_peek(r, 3), 3);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(msg_get(otp__ring_rslot(r, i)), i);
    otp__ring_release(r, 1);
    assert_int_equal(msg_get(otp__ring_rslot(r, 0)), 1);
    otp__ring_release(r, 2);
    /* The producer sees the freed room only once its cached head runs out. */
    assert_int_equal(otp__ring_reserve(r, 8), 3);
    for (uint32_t i = 0; i < 3; i++)
        msg_put(otp__ring_wslot(r, i), 8 + i); /* these wrap around the array */
    otp__ring_publish(r, 3);
    assert_int_equal(otp__ring_peek(r, 100), 8);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(msg_get(otp__ring_rslot(r, i)), 3 + i);
    otp__ring_release(r, 8);
    assert_int_equal(otp__ring_peek(r, 1), 0);
    assert_int_equal(otp__ring_reserve(r, 9), 8);
    ring_free(r);
}

/* Random batch sizes through small rings, against a counter model: the
 * producer's view of free room and the consumer's view of ready slots must
 * be exact whenever the request is larger than the cached view. */
static void wrap_run(uint32_t capacity, uint64_t seed)
{
    otp__ring *r = ring_new(capacity, sizeof(msg));
    uint64_t sent = 0, got = 0;
    for (int step = 0; step < 200000; step++) {
        uint32_t want = (uint32_t)(rng_next(&seed) % (2 * capacity + 2));
        if (rng_next(&seed) & 1) {
            uint32_t n = otp__ring_reserve(r, want);
            uint64_t room = capacity - (sent - got);
            assert_int_equal(n, want < room ? want : room);
            for (uint32_t i = 0; i < n; i++)
                msg_put(otp__ring_wslot(r, i), sent + i);
            uint32_t pub = n ? (uint32_t)(rng_next(&seed) % (n + 1)) : 0;
            otp__ring_publish(r, pub);
            sent += pub;
        } else {
            uint32_t n = otp__ring_peek(r, want);
            uint64_t ready = sent - got;
            assert_int_equal(n, want < ready ? want : ready);
            for (uint32_t i = 0; i < n; i++)
                assert_int_equal(msg_get(otp__ring_rslot(r, i)), got + i);
            uint32_t rel = n ? (uint32_t)(rng_next(&seed) % (n + 1)) : 0;
            otp__ring_release(r, rel);
            got += rel;
        }
    }
    assert_true(sent > 1000);
    ring_free(r);
}

static void test_wraparound(void **state)
{
    (void)state;
    wrap_run(1, 1);
    wrap_run(2, 2);
    wrap_run(4, 3);
    wrap_run(64, 4);
}

static void test_capacity_one(void **state)
{
    (void)state;
    otp__ring *r = ring_new(1, sizeof(msg));
    for (uint64_t i = 0; i < 10; i++) {
        assert_int_equal(otp__ring_reserve(r, 5), 1);
        msg_put(otp__ring_wslot(r, 0), i);
        otp__ring_publish(r, 1);
        assert_int_equal(otp__ring_reserve(r, 1), 0);
        assert_int_equal(otp__ring_peek(r, 2), 1);
        assert_int_equal(msg_get(otp__ring_rslot(r, 0)), i);
        otp__ring_release(r, 1);
    }
    ring_free(r);
}

static void test_waker_steps(void **state)
{
    (void)state;
    otp__ring *a = ring_new(4, 16), *b = ring_new(4, 16);
    otp__waker *w = aligned_alloc(OTP__CACHE_LINE, sizeof(*w));
    assert_non_null(w);
    otp__waker_init(w);

    /* Awake consumer: nobody wakes it. */
    assert_int_equal(otp__ring_reserve(a, 1), 1);
    assert_false(otp__ring_publish_needs_wake(a, 1, w));
    assert_int_equal(otp__ring_peek(a, 4), 1);
    otp__ring_release(a, 1);

    /* Consumer prepares to sleep and its re-check finds both rings empty. */
    otp__waker_prepare_sleep(w);
    assert_true(otp__ring_recheck_empty(a));
    assert_true(otp__ring_recheck_empty(b));
    /* The first producer to publish wins the wake; the second does not. */
    assert_int_equal(otp__ring_reserve(b, 2), 2);
    assert_true(otp__ring_publish_needs_wake(b, 2, w));
    assert_int_equal(otp__ring_reserve(a, 1), 1);
    assert_false(otp__ring_publish_needs_wake(a, 1, w));
    otp__waker_awake(w);
    assert_int_equal(otp__ring_peek(b, 4), 2);
    assert_int_equal(otp__ring_peek(a, 4), 1);
    otp__ring_release(a, 1);
    otp__ring_release(b, 2);

    /* Publish lands before the re-check: the consumer sees it and stays up. */
    otp__waker_prepare_sleep(w);
    assert_int_equal(otp__ring_reserve(a, 1), 1);
    assert_true(otp__ring_publish_needs_wake(a, 1, w)); /* a spurious wake, harmless */
    assert_false(otp__ring_recheck_empty(a));
    otp__waker_awake(w);
    assert_int_equal(otp__ring_peek(a, 1), 1); /* the re-check refreshed the view */
    otp__ring_release(a, 1);

    free(w);
    ring_free(a);
    ring_free(b);
}

/* ------------------------------------------------------------ two threads */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 10) : dflt;
}

/* Spinning on a full or empty ring is the test's choice, not the ring's;
 * yield soon, since CI machines may have fewer cores than threads. */
static void backoff(unsigned *spins)
{
    if (++*spins > 64)
        sched_yield();
}

typedef struct stress {
    otp__ring *ring;
    uint64_t n;
    uint64_t seed;
    uint32_t max_batch;
    uint64_t full, empty; /* how often each side found nothing to do */
} stress;

static void *stress_producer(void *arg)
{
    stress *s = arg;
    uint64_t seed = s->seed, seq = 0;
    unsigned spins = 0;
    while (seq < s->n) {
        uint64_t left = s->n - seq;
        uint32_t want = 1 + (uint32_t)(rng_next(&seed) % s->max_batch);
        if (want > left)
            want = (uint32_t)left;
        uint32_t got = otp__ring_reserve(s->ring, want);
        if (!got) {
            s->full++;
            backoff(&spins);
            continue;
        }
        spins = 0;
        for (uint32_t i = 0; i < got; i++)
            msg_put(otp__ring_wslot(s->ring, i), seq + i);
        otp__ring_publish(s->ring, got);
        seq += got;
    }
    return NULL;
}

static void stress_run(uint64_t n, uint32_t capacity, uint32_t max_batch)
{
    stress s = {.ring = ring_new(capacity, sizeof(msg)), .n = n, .seed = 7, .max_batch = max_batch};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stress_producer, &s), 0);

    /* Consumer on this thread: every value once, in order; checks are plain
     * compares so the stress stays a stress. */
    uint64_t seed = 11, expect = 0, bad = 0;
    unsigned spins = 0;
    while (expect < n) {
        uint32_t want = 1 + (uint32_t)(rng_next(&seed) % max_batch);
        uint32_t got = otp__ring_peek(s.ring, want);
        if (!got) {
            s.empty++;
            backoff(&spins);
            continue;
        }
        spins = 0;
        for (uint32_t i = 0; i < got; i++) {
            const msg *m = otp__ring_rslot(s.ring, i);
            bad += (m->seq != expect) | (m->inv != ~expect) | (m->mult != expect * MULT);
            expect++;
        }
        otp__ring_release(s.ring, got);
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(bad, 0);
    assert_int_equal(otp__ring_peek(s.ring, 1), 0); /* nothing extra, nothing duplicated */
    fprintf(stderr, "ring stress: %llu msgs, capacity %u, batches 1..%u: full %llu, empty %llu\n",
            (unsigned long long)n, capacity, max_batch, (unsigned long long)s.full,
            (unsigned long long)s.empty);
    ring_free(s.ring);
}

#if defined(__SANITIZE_THREAD__)
#define STRESS_N_DEFAULT 10000000ull /* TSan: 50M take 40 s, and races show up early */
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_N_DEFAULT 10000000ull
#endif
#endif
#ifndef STRESS_N_DEFAULT
#define STRESS_N_DEFAULT 50000000ull
#endif

static void test_stress(void **state)
{
    (void)state;
    uint64_t n = env_u64("OTP_TEST_RING_N", STRESS_N_DEFAULT);
    stress_run(n, 1024, 64);
    stress_run(n / 50, 2, 3);  /* tiny ring: full and empty all the time */
    stress_run(n / 10, 64, 1); /* batches of one */
}

/* The protocol's one race, isolated and repeated: in each round the
 * consumer announces sleep and re-checks while the producer publishes and
 * asks whether to wake. The consumer's delay adapts, round by round, to
 * where the two sequences overlap (later when it re-checked before the
 * publish, earlier when the producer missed its flag), plus some jitter. A
 * round in which the consumer finds the ring empty and the producer is told
 * not to wake is a lost wake-up. Without either fence, x86 store buffering
 * produces such rounds (this is the store-buffering litmus test). */
typedef struct dekker {
    otp__ring *ring;
    otp__waker *waker;
    _Atomic uint32_t go;   /* round number the producer may run */
    _Atomic uint32_t done; /* rounds the producer finished */
    uint32_t rounds;
    bool *woke;
} dekker;

static void spin_for(uint64_t n)
{
    for (volatile uint64_t i = 0; i < n; i++)
        ;
}

static void wait_round(_Atomic uint32_t *v, uint32_t round)
{
    unsigned spins = 0;
    /* acquire: pairs with the release that announced the round, so the
     * other side's writes of the previous round are visible */
    while (atomic_load_explicit(v, memory_order_acquire) < round)
        if (++spins > 2000) /* a few us: longer than any handoff between cores */
            sched_yield();
}

static void *dekker_producer(void *arg)
{
    dekker *d = arg;
    uint64_t seed = 5;
    for (uint32_t round = 1; round <= d->rounds; round++) {
        wait_round(&d->go, round);
        spin_for(rng_next(&seed) % 64);
        if (otp__ring_reserve(d->ring, 1) != 1)
            abort(); /* the consumer emptied the ring before this round */
        msg_put(otp__ring_wslot(d->ring, 0), round);
        d->woke[round - 1] = otp__ring_publish_needs_wake(d->ring, 1, d->waker);
        /* release: our woke[] write is visible once the consumer sees done */
        atomic_store_explicit(&d->done, round, memory_order_release);
    }
    return NULL;
}

static void test_wake_race(void **state)
{
    (void)state;
    dekker d = {.ring = ring_new(4, sizeof(msg)),
                .rounds = (uint32_t)(env_u64("OTP_TEST_RING_N", STRESS_N_DEFAULT) / 250)};
    d.waker = aligned_alloc(OTP__CACHE_LINE, sizeof(otp__waker));
    d.woke = calloc(d.rounds, sizeof(bool));
    assert_non_null(d.waker);
    assert_non_null(d.woke);
    otp__waker_init(d.waker);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, dekker_producer, &d), 0);

    uint64_t seed = 6, lost = 0, slept = 0, woken = 0, both = 0, delay = 0;
    for (uint32_t round = 1; round <= d.rounds; round++) {
        /* release: the ring is empty and the flag down before the round */
        atomic_store_explicit(&d.go, round, memory_order_release);
        spin_for(delay + rng_next(&seed) % 32);
        otp__waker_prepare_sleep(d.waker);
        bool empty = otp__ring_recheck_empty(d.ring);
        wait_round(&d.done, round);
        bool woke = d.woke[round - 1];
        lost += empty && !woke;
        slept += empty;
        woken += woke;
        both += !empty && woke;            /* true overlap: each saw the other */
        if (empty && woke && delay < 2048) /* bounded: the producer may be off-CPU */
            delay += 4;
        else if (!empty && !woke && delay >= 4)
            delay -= 4;
        otp__waker_awake(d.waker);
        assert_int_equal(otp__ring_peek(d.ring, 2), 1);
        assert_int_equal(msg_get(otp__ring_rslot(d.ring, 0)), round);
        otp__ring_release(d.ring, 1);
    }
    assert_int_equal(pthread_join(th, NULL), 0);
    fprintf(stderr,
            "ring wake race: %u rounds: re-check empty %llu, producer woke %llu, both saw "
            "each other %llu, lost %llu (final delay %llu)\n",
            d.rounds, (unsigned long long)slept, (unsigned long long)woken,
            (unsigned long long)both, (unsigned long long)lost, (unsigned long long)delay);
    assert_int_equal(lost, 0);
    free(d.woke);
    free(d.waker);
    ring_free(d.ring);
}

/* Several producers, one consumer that sleeps on the waker and an eventfd,
 * exactly as a shard will. Producers sometimes wait until the consumer has
 * announced its sleep and publish right then, into the window between its
 * announcement and its re-check. A lost wake-up leaves the consumer asleep
 * with messages queued: its poll times out after 20 s and the test fails
 * (nothing here is timed otherwise). */
#define SLEEP_PRODUCERS 2

typedef struct sleepy {
    otp__ring *rings[SLEEP_PRODUCERS];
    otp__waker *waker;
    int efd;
    uint64_t n;             /* per producer */
    _Atomic uint64_t wakes; /* eventfd writes, from all producers */
} sleepy;

typedef struct sleepy_arg {
    sleepy *s;
    int id;
} sleepy_arg;

static void *sleepy_producer(void *arg)
{
    sleepy_arg *a = arg;
    sleepy *s = a->s;
    otp__ring *r = s->rings[a->id];
    uint64_t seed = 100 + (uint64_t)a->id, seq = 0;
    unsigned spins = 0;
    while (seq < s->n) {
        uint64_t x = rng_next(&seed);
        if (x % 8 == 0) {
            /* Wait until the consumer announces sleep (bounded: it may be busy
             * with the other producer, or already back up). relaxed: a hint */
            for (int i = 0;
                 i < 2000 && !atomic_load_explicit(&s->waker->sleeping, memory_order_relaxed); i++)
                sched_yield();
        }
        uint32_t want = 1 + (uint32_t)((x >> 8) % 16);
        if (want > s->n - seq)
            want = (uint32_t)(s->n - seq);
        uint32_t got = otp__ring_reserve(r, want);
        if (!got) {
            backoff(&spins);
            continue;
        }
        spins = 0;
        for (uint32_t i = 0; i < got; i++)
            msg_put(otp__ring_wslot(r, i), seq + i);
        if (otp__ring_publish_needs_wake(r, got, s->waker)) {
            uint64_t one = 1;
            if (write(s->efd, &one, sizeof one) != sizeof one)
                abort(); /* not cmocka's assert: this is not the test's thread */
            /* relaxed: a statistic */
            atomic_fetch_add_explicit(&s->wakes, 1, memory_order_relaxed);
        }
        seq += got;
    }
    return NULL;
}

static void test_sleep_wake(void **state)
{
    (void)state;
    sleepy s = {.n = env_u64("OTP_TEST_RING_N", STRESS_N_DEFAULT) / 50};
    s.waker = aligned_alloc(OTP__CACHE_LINE, sizeof(otp__waker));
    assert_non_null(s.waker);
    otp__waker_init(s.waker);
    s.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(s.efd >= 0);
    for (int i = 0; i < SLEEP_PRODUCERS; i++)
        s.rings[i] = ring_new(64, sizeof(msg));

    pthread_t th[SLEEP_PRODUCERS];
    sleepy_arg args[SLEEP_PRODUCERS];
    for (int i = 0; i < SLEEP_PRODUCERS; i++) {
        args[i] = (sleepy_arg){&s, i};
        assert_int_equal(pthread_create(&th[i], NULL, sleepy_producer, &args[i]), 0);
    }

    uint64_t expect[SLEEP_PRODUCERS] = {0}, total = 0, bad = 0;
    uint64_t announced = 0, slept = 0, rechecked_busy = 0;
    while (total < SLEEP_PRODUCERS * s.n) {
        bool any = false;
        for (int p = 0; p < SLEEP_PRODUCERS; p++) {
            uint32_t got = otp__ring_peek(s.rings[p], 32);
            for (uint32_t i = 0; i < got; i++) {
                const msg *m = otp__ring_rslot(s.rings[p], i);
                bad += (m->seq != expect[p]) | (m->inv != ~expect[p]);
                expect[p]++;
            }
            otp__ring_release(s.rings[p], got);
            total += got;
            any |= got > 0;
        }
        if (any || total == SLEEP_PRODUCERS * s.n)
            continue;

        /* Everything drained: sleep, by the protocol in ring.h. */
        otp__waker_prepare_sleep(s.waker);
        announced++;
        bool empty = true;
        for (int p = 0; p < SLEEP_PRODUCERS; p++)
            empty &= otp__ring_recheck_empty(s.rings[p]);
        if (empty) {
            struct pollfd pfd = {.fd = s.efd, .events = POLLIN};
            int rc;
            do
                rc = poll(&pfd, 1, 20000);
            while (rc < 0 && errno == EINTR);
            if (rc == 0)
                fail_msg("lost wake-up: asleep 20 s with %llu of %llu messages received",
                         (unsigned long long)total, (unsigned long long)(SLEEP_PRODUCERS * s.n));
            uint64_t cnt;
            assert_int_equal(read(s.efd, &cnt, sizeof cnt), sizeof cnt);
            slept++;
        } else {
            rechecked_busy++;
        }
        otp__waker_awake(s.waker);
    }
    for (int i = 0; i < SLEEP_PRODUCERS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(bad, 0);
    for (int p = 0; p < SLEEP_PRODUCERS; p++) {
        assert_int_equal(expect[p], s.n);
        assert_int_equal(otp__ring_peek(s.rings[p], 1), 0);
    }
    /* The producers' pauses make the consumer announce sleep for sure; how
     * often it really blocks depends on timing, so it is reported only. */
    assert_true(announced > 0);
    fprintf(stderr,
            "ring sleep/wake: %d x %llu msgs: announced sleep %llu, slept %llu, re-check found "
            "work %llu, eventfd writes %llu\n",
            SLEEP_PRODUCERS, (unsigned long long)s.n, (unsigned long long)announced,
            (unsigned long long)slept, (unsigned long long)rechecked_busy,
            (unsigned long long)atomic_load(&s.wakes));

    for (int i = 0; i < SLEEP_PRODUCERS; i++)
        ring_free(s.rings[i]);
    close(s.efd);
    free(s.waker);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_args),   cmocka_unit_test(test_batches),
        cmocka_unit_test(test_wraparound),  cmocka_unit_test(test_capacity_one),
        cmocka_unit_test(test_waker_steps), cmocka_unit_test(test_stress),
        cmocka_unit_test(test_wake_race),   cmocka_unit_test(test_sleep_wake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
