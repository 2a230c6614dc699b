/* bench_util.h — what every benchmark program in perf/ measures and
 * summarises with: the clock, medians over rounds, and per-call
 * percentiles. Header-only (static inline): each program is one file, and
 * bench_ei_node links no libotp. */
#ifndef OTP_BENCH_UTIL_H
#define OTP_BENCH_UTIL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

#define BENCH_MEDIAN_CAP 64

/* The median of v[0..n) (n at most BENCH_MEDIAN_CAP), leaving out NaNs
 * (rounds that did not run); *lo and *hi (each may be NULL) get the least
 * and greatest. NaN when nothing is left. */
static inline double median_range(const double *v, int n, double *lo, double *hi)
{
    double s[BENCH_MEDIAN_CAP];
    int m = 0;
    for (int i = 0; i < n && m < BENCH_MEDIAN_CAP; i++)
        if (!isnan(v[i]))
            s[m++] = v[i];
    if (lo)
        *lo = NAN;
    if (hi)
        *hi = NAN;
    if (!m)
        return NAN;
    qsort(s, (size_t)m, sizeof *s, cmp_double);
    if (lo)
        *lo = s[0];
    if (hi)
        *hi = s[m - 1];
    return m % 2 ? s[m / 2] : (s[m / 2 - 1] + s[m / 2]) / 2;
}

/* The p-th percentile of the sorted s[0..n), by nearest rank, as
 * bench_dist.erl computes it too. */
static inline double pct(const uint64_t *s, size_t n, double p)
{
    size_t k = (size_t)(p * (double)n + 0.999999);
    return (double)s[k ? (k > n ? n : k) - 1 : 0];
}

#endif
