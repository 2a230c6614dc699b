/* bench_ring.c — throughput and cost of the SPSC ring between shards:
 * messages per second and ns per message from one thread to another, for
 * batches of 1, 8, 32 and 256, with the plain publish and with the waker's
 * publish (its seq_cst fence); the same on one thread (no cache-line
 * traffic: the instructions alone); and a one-message ping-pong for latency.
 * Prints a markdown table; the median of --rounds runs per cell.
 *   bench_ring [--n MSGS] [--rounds R] [--cap C] [--slot BYTES] [--no-pin]
 */
#define _GNU_SOURCE /* pthread_setaffinity_np, CPU_SET */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ring.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int pin_cpus = 1;

static void pin(int cpu)
{
    if (!pin_cpus)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % CPU_SETSIZE, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0)
        fprintf(stderr, "bench_ring: could not pin to CPU %d, running unpinned\n", cpu);
}

/* An envelope like the runtime's: a pointer and three words. */
typedef struct env {
    uint64_t seq;
    uint64_t words[3];
} env;

typedef struct run {
    otp__ring *ring;
    otp__waker *waker;
    uint64_t n;
    uint32_t batch;
    int use_waker;
    int cpu;
    uint64_t sum; /* the consumer's checksum, so the reads are real */
} run;

static void *producer(void *arg)
{
    run *r = arg;
    pin(r->cpu);
    uint64_t seq = 0;
    while (seq < r->n) {
        uint64_t left = r->n - seq;
        uint32_t got = otp__ring_reserve(r->ring, left < r->batch ? (uint32_t)left : r->batch);
        if (!got) {
            cpu_relax();
            continue;
        }
        for (uint32_t i = 0; i < got; i++) {
            env *e = otp__ring_wslot(r->ring, i);
            e->seq = seq + i;
            e->words[0] = 1;
        }
        if (r->use_waker)
            (void)otp__ring_publish_needs_wake(r->ring, got, r->waker);
        else
            otp__ring_publish(r->ring, got);
        seq += got;
    }
    return NULL;
}

static void consume(run *r)
{
    uint64_t got_total = 0, sum = 0;
    while (got_total < r->n) {
        uint32_t got = otp__ring_peek(r->ring, r->batch);
        if (!got) {
            cpu_relax();
            continue;
        }
        for (uint32_t i = 0; i < got; i++) {
            const env *e = otp__ring_rslot(r->ring, i);
            sum += e->seq + e->words[0];
        }
        otp__ring_release(r->ring, got);
        got_total += got;
    }
    r->sum = sum;
}

static otp__ring *ring_new(uint32_t cap, uint32_t slot)
{
    otp__ring *r = aligned_alloc(OTP__CACHE_LINE, sizeof(otp__ring));
    if (!r || otp__ring_init(r, cap, slot) != 0) {
        fprintf(stderr, "bench_ring: ring_init failed\n");
        exit(1);
    }
    return r;
}

/* ns per message, producer and consumer on two threads (two CPUs if pinned). */
static double two_threads(uint64_t n, uint32_t cap, uint32_t slot, uint32_t batch, int use_waker)
{
    otp__waker *w = aligned_alloc(OTP__CACHE_LINE, sizeof(*w));
    otp__waker_init(w);
    run r = {.ring = ring_new(cap, slot),
             .waker = w,
             .n = n,
             .batch = batch,
             .use_waker = use_waker,
             .cpu = 1};
    pin(0);
    uint64_t t0 = now_ns();
    pthread_t th;
    if (pthread_create(&th, NULL, producer, &r) != 0)
        exit(1);
    consume(&r);
    pthread_join(th, NULL);
    uint64_t t1 = now_ns();
    uint64_t expect = n * (n - 1) / 2 + n;
    if (r.sum != expect) {
        fprintf(stderr, "bench_ring: checksum mismatch\n");
        exit(1);
    }
    otp__ring_destroy(r.ring);
    free(r.ring);
    free(w);
    return (double)(t1 - t0) / (double)n;
}

/* ns per message with both sides on one thread: write a batch, read it. */
static double one_thread(uint64_t n, uint32_t cap, uint32_t slot, uint32_t batch)
{
    otp__ring *ring = ring_new(cap, slot);
    uint64_t sum = 0, t0 = now_ns();
    for (uint64_t seq = 0; seq < n;) {
        uint32_t got = otp__ring_reserve(ring, batch);
        for (uint32_t i = 0; i < got; i++) {
            env *e = otp__ring_wslot(ring, i);
            e->seq = seq + i;
            e->words[0] = 1;
        }
        otp__ring_publish(ring, got);
        got = otp__ring_peek(ring, batch);
        for (uint32_t i = 0; i < got; i++) {
            const env *e = otp__ring_rslot(ring, i);
            sum += e->seq + e->words[0];
        }
        otp__ring_release(ring, got);
        seq += got;
    }
    uint64_t t1 = now_ns();
    if (sum == 42) /* keep the reads */
        fputs("", stderr);
    otp__ring_destroy(ring);
    free(ring);
    return (double)(t1 - t0) / (double)n;
}

/* Ping-pong: one message each way per round trip, two rings. */
typedef struct pp {
    otp__ring *there, *back;
    uint64_t rounds;
} pp;

static void *pong(void *arg)
{
    pp *p = arg;
    pin(1);
    for (uint64_t i = 0; i < p->rounds; i++) {
        while (!otp__ring_peek(p->there, 1))
            cpu_relax();
        uint64_t v = ((const env *)otp__ring_rslot(p->there, 0))->seq;
        otp__ring_release(p->there, 1);
        while (!otp__ring_reserve(p->back, 1))
            cpu_relax();
        ((env *)otp__ring_wslot(p->back, 0))->seq = v + 1;
        otp__ring_publish(p->back, 1);
    }
    return NULL;
}

static double ping_pong(uint64_t rounds, uint32_t slot)
{
    pp p = {.there = ring_new(64, slot), .back = ring_new(64, slot), .rounds = rounds};
    pin(0);
    pthread_t th;
    if (pthread_create(&th, NULL, pong, &p) != 0)
        exit(1);
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < rounds; i++) {
        while (!otp__ring_reserve(p.there, 1))
            cpu_relax();
        ((env *)otp__ring_wslot(p.there, 0))->seq = i;
        otp__ring_publish(p.there, 1);
        while (!otp__ring_peek(p.back, 1))
            cpu_relax();
        if (((const env *)otp__ring_rslot(p.back, 0))->seq != i + 1)
            exit(1);
        otp__ring_release(p.back, 1);
    }
    uint64_t t1 = now_ns();
    pthread_join(th, NULL);
    otp__ring_destroy(p.there);
    otp__ring_destroy(p.back);
    free(p.there);
    free(p.back);
    return (double)(t1 - t0) / (double)rounds;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MAX_ROUNDS 31

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    uint64_t n = 20000000;
    int rounds = 5;
    uint32_t cap = 1024, slot = sizeof(env);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cap") && i + 1 < argc)
            cap = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--slot") && i + 1 < argc)
            slot = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--no-pin"))
            pin_cpus = 0;
        else {
            fprintf(stderr,
                    "usage: %s [--n MSGS] [--rounds R] [--cap C] [--slot BYTES] [--no-pin]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || slot < sizeof(env) || n == 0) {
        fprintf(stderr, "bench_ring: rounds 1..%d, slot >= %zu, n > 0\n", MAX_ROUNDS, sizeof(env));
        return 2;
    }

    printf("SPSC ring, %u slots of %u bytes, %llu messages per run, median of %d runs\n\n", cap,
           slot, (unsigned long long)n, rounds);
    printf("| batch | 2 threads ns/msg | 2 threads Mmsg/s | + waker publish ns/msg | 1 thread "
           "ns/msg |\n| ---: | ---: | ---: | ---: | ---: |\n");
    const uint32_t batches[] = {1, 8, 32, 256};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        uint32_t batch = batches[b] > cap ? cap : batches[b];
        double two[MAX_ROUNDS], waker[MAX_ROUNDS], one[MAX_ROUNDS];
        for (int r = 0; r < rounds; r++) { /* interleaved: a slow spell hurts all alike */
            two[r] = two_threads(n, cap, slot, batch, 0);
            waker[r] = two_threads(n, cap, slot, batch, 1);
            one[r] = one_thread(n, cap, slot, batch);
        }
        double t = median(two, rounds);
        printf("| %u | %.2f | %.1f | %.2f | %.2f |\n", batch, t, 1e3 / t, median(waker, rounds),
               median(one, rounds));
        fflush(stdout);
    }
    double rt[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        rt[r] = ping_pong(n / 20, slot);
    printf("\nping-pong (one message each way, batch 1): %.0f ns per round trip\n",
           median(rt, rounds));
    return 0;
}
