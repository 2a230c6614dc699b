/* bench_wheel.c — cost of the timing wheel in ns per operation: add then
 * cancel (the common case: a call answered before its timeout), add then
 * fire (advanced one millisecond at a time, and in one jump), for 10k timers
 * (cache-resident) and --n timers (1M: memory-bound, the lists are walked
 * in deadline order, not memory order), alone and with 1M other timers
 * pending; and next_deadline. Prints a markdown table; the median of
 * --rounds runs per cell.
 *   bench_wheel [--n TIMERS] [--rounds R]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wheel.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static size_t fired;
static volatile uint64_t sink;

static void count_cb(otp__timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
    fired++;
}

typedef struct setup {
    otp__wheel *w;
    otp__timer *timers, *background;
    uint64_t *deadlines; /* precomputed, so the RNG is not measured */
    size_t n, nbg;
} setup;

/* A wheel at a wall-clock-like time holding `nbg` timers 10..60 s ahead
 * (idle timeouts, ticks: still pending when the measured ones have fired),
 * and n deadlines 1 ms..10 s ahead for the measured ones. */
static setup make(size_t n, size_t nbg, uint64_t seed)
{
    setup s = {.n = n, .nbg = nbg};
    s.w = malloc(sizeof(*s.w));
    s.timers = malloc(n * sizeof(otp__timer));
    s.background = malloc((nbg ? nbg : 1) * sizeof(otp__timer));
    s.deadlines = malloc(n * sizeof(uint64_t));
    if (!s.w || !s.timers || !s.background || !s.deadlines) {
        fprintf(stderr, "bench_wheel: out of memory\n");
        exit(1);
    }
    /* Touch every page now: first-touch faults are not the wheel's cost. */
    memset(s.timers, 0, n * sizeof(otp__timer));
    memset(s.background, 0, (nbg ? nbg : 1) * sizeof(otp__timer));
    uint64_t t0 = 1700000000000ull;
    otp__wheel_init(s.w, t0);
    for (size_t i = 0; i < nbg; i++)
        otp__wheel_add(s.w, &s.background[i], t0 + 10001 + rng_next(&seed) % 50000);
    for (size_t i = 0; i < n; i++)
        s.deadlines[i] = t0 + 1 + rng_next(&seed) % 10000;
    return s;
}

static void unmake(setup *s)
{
    free(s->w);
    free(s->timers);
    free(s->background);
    free(s->deadlines);
}

/* Add one timer and cancel it right away, n times. */
static double add_cancel_hot(size_t n, size_t nbg)
{
    setup s = make(n, nbg, 1);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        otp__wheel_add(s.w, &s.timers[i], s.deadlines[i]);
        otp__wheel_cancel(s.w, &s.timers[i]);
    }
    double ns = (double)(now_ns() - t0) / (double)n;
    unmake(&s);
    return ns;
}

/* Add n timers, then cancel them all in another order. */
static double add_cancel_bulk(size_t n, size_t nbg)
{
    setup s = make(n, nbg, 2);
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        otp__wheel_add(s.w, &s.timers[i], s.deadlines[i]);
    for (size_t i = 0; i < n; i++)
        otp__wheel_cancel(s.w, &s.timers[(i * 7919) % n]);
    double ns = (double)(now_ns() - t0) / (double)n;
    unmake(&s);
    return ns;
}

/* Add n timers over the next 10 s, then advance 1 ms at a time until all
 * have fired (the background timers, further out, stay). The 10 000 advances
 * are part of the cost, as they are for a shard. */
static double add_fire(size_t n, size_t nbg, int jump)
{
    setup s = make(n, nbg, 3);
    fired = 0;
    uint64_t start = otp__wheel_now(s.w), t0 = now_ns();
    for (size_t i = 0; i < n; i++)
        otp__wheel_add(s.w, &s.timers[i], s.deadlines[i]);
    if (jump)
        otp__wheel_advance(s.w, start + 10000, count_cb, NULL);
    else
        for (uint64_t t = start + 1; t <= start + 10000; t++)
            otp__wheel_advance(s.w, t, count_cb, NULL);
    double ns = (double)(now_ns() - t0) / (double)n;
    if (fired != n) {
        fprintf(stderr, "bench_wheel: %zu fired, expected %zu\n", fired, n);
        exit(1);
    }
    unmake(&s);
    return ns;
}

static double next_deadline_cost(size_t nbg)
{
    setup s = make(1, nbg, 4);
    uint64_t acc = 0, t0 = now_ns();
    const size_t iters = 10000000;
    for (size_t i = 0; i < iters; i++) {
        acc += otp__wheel_next_deadline(s.w);
        __asm__ __volatile__("" : "+r"(acc)); /* one call per iteration, not hoisted */
    }
    double ns = (double)(now_ns() - t0) / (double)iters;
    sink = acc;
    unmake(&s);
    return ns;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MAX_ROUNDS 31

static double run_median(int rounds, double (*fn)(size_t, size_t, int), size_t n, size_t nbg,
                         int arg)
{
    double v[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++)
        v[r] = fn(n, nbg, arg);
    qsort(v, (size_t)rounds, sizeof(double), cmp_double);
    return v[rounds / 2];
}

static double hot(size_t n, size_t nbg, int arg)
{
    (void)arg;
    return add_cancel_hot(n, nbg);
}

static double bulk(size_t n, size_t nbg, int arg)
{
    (void)arg;
    return add_cancel_bulk(n, nbg);
}

static double next(size_t n, size_t nbg, int arg)
{
    (void)n;
    (void)arg;
    return next_deadline_cost(nbg);
}

int main(int argc, char **argv)
{
    size_t n = 1000000;
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc)
            n = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--n TIMERS] [--rounds R]\n", argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || n == 0) {
        fprintf(stderr, "bench_wheel: rounds 1..%d, n > 0\n", MAX_ROUNDS);
        return 2;
    }
    printf("timing wheel: measured timers with deadlines 1 ms..10 s ahead, alone or with 1M "
           "others 10..60 s ahead; median of %d runs, ns per timer\n\n",
           rounds);
    printf("| operation | 10k timers | %zu timers | %zu timers, 1M others |\n"
           "| --- | ---: | ---: | ---: |\n",
           n, n);
    const size_t cols_n[3] = {10000, n, n}, cols_bg[3] = {0, 0, 1000000};
    struct {
        const char *name;
        double (*fn)(size_t, size_t, int);
        int arg;
    } rows[] = {
        {"add + cancel at once", hot, 0},
        {"add all, then cancel all", bulk, 0},
        {"add + fire, advancing 1 ms at a time over 10 s", add_fire, 0},
        {"add + fire, one advance over 10 s", add_fire, 1},
        {"next_deadline (ns per call)", next, 0},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        printf("| %s |", rows[r].name);
        for (int c = 0; c < 3; c++)
            printf(" %.1f |", run_median(rounds, rows[r].fn, cols_n[c], cols_bg[c], rows[r].arg));
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
