/* test_wheel.c — the timing wheel against a plain reference model: seeded
 * random runs of adds, cancels and advances (callbacks that add and cancel
 * included) must fire the very same timers in the very same order, and
 * next_deadline must never overshoot; then the edge cases one by one: ties,
 * past deadlines, far deadlines, huge jumps, callbacks re-arming themselves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wheel.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static otp__wheel *wheel_new(uint64_t now)
{
    otp__wheel *w = malloc(sizeof(*w));
    assert_non_null(w);
    otp__wheel_init(w, now);
    return w;
}

/* ------------------------------------------------------- the model check */

#define NT 512

typedef struct ref_timer {
    bool pending;
    bool due; /* added with a deadline not after the clock */
    uint64_t deadline;
    uint64_t seq;     /* order of adds, for ties */
    uint64_t due_gen; /* advances started before it was added */
} ref_timer;

typedef struct model {
    otp__wheel *w;
    otp__timer timers[NT];
    ref_timer ref[NT];
    uint64_t clock;  /* what otp__wheel_now must read, inside callbacks too */
    uint64_t target; /* of the advance in progress */
    uint64_t seq, advances, rng;
    size_t pending, fired, max_pending;
    uint64_t ties, last_fired_deadline;
    int profile; /* 0 dense (many ties), 1 mixed, 2 far */
} model;

static uint64_t gen_deadline(model *m, uint64_t c)
{
    uint64_t x = rng_next(&m->rng), r = rng_next(&m->rng);
    unsigned pick = (unsigned)(x % 100);
    if (m->profile == 0) /* a few hundred ms: crowded slots, many equal deadlines */
        return pick < 10 ? c - (c < 5 ? c : r % 5) : sat_add(c, r % 300);
    if (m->profile == 2 && pick < 50) /* anywhere up to the end of time */
        return pick < 5 ? UINT64_MAX - r % 3 : sat_add(c, r >> (x >> 58));
    if (pick < 25)
        return sat_add(c, r % 70);
    if (pick < 45)
        return sat_add(c, r % 5000);
    if (pick < 60)
        return sat_add(c, r % (1u << 20));
    if (pick < 70)
        return sat_add(c, r % (1ull << 40));
    if (pick < 75)
        return r; /* any 64-bit time: often long past, sometimes far ahead */
    if (pick < 88)
        return c - (c < 100 ? c : r % 100); /* past */
    if (pick < 95)
        return c; /* now */
    return UINT64_MAX - r % 2;
}

static void ref_add(model *m, int id, uint64_t deadline)
{
    ref_timer *r = &m->ref[id];
    if (!r->pending)
        m->pending++;
    *r = (ref_timer){.pending = true,
                     .due = deadline <= m->clock,
                     .deadline = deadline,
                     .seq = ++m->seq,
                     .due_gen = m->advances};
}

static bool ref_cancel(model *m, int id)
{
    if (!m->ref[id].pending)
        return false;
    m->ref[id].pending = false;
    m->pending--;
    return true;
}

/* The timer the reference fires next in the advance in progress, or -1:
 * first the due timers added before this advance began, by add order; then
 * the rest by (deadline, add order), up to the target. */
static int ref_next(model *m)
{
    int best = -1;
    for (int i = 0; i < NT; i++) {
        ref_timer *r = &m->ref[i];
        if (r->pending && r->due && r->due_gen < m->advances &&
            (best < 0 || r->seq < m->ref[best].seq))
            best = i;
    }
    if (best >= 0)
        return best;
    for (int i = 0; i < NT; i++) {
        ref_timer *r = &m->ref[i];
        if (!r->pending || r->due || r->deadline > m->target)
            continue;
        if (best < 0 || r->deadline < m->ref[best].deadline ||
            (r->deadline == m->ref[best].deadline && r->seq < m->ref[best].seq))
            best = i;
    }
    return best;
}

static void do_add(model *m, int id, uint64_t deadline)
{
    otp__wheel_add(m->w, &m->timers[id], deadline);
    ref_add(m, id, deadline);
}

static void do_cancel(model *m, int id)
{
    bool was = otp__wheel_cancel(m->w, &m->timers[id]);
    assert_int_equal(was, ref_cancel(m, id));
}

static void model_cb(otp__timer *t, void *ctx)
{
    model *m = ctx;
    int id = (int)(t - m->timers);
    assert_int_equal(id, ref_next(m));
    ref_timer *r = &m->ref[id];
    if (!r->due)
        m->clock = r->deadline;
    assert_int_equal(otp__wheel_now(m->w), m->clock);
    assert_int_equal(t->deadline, r->deadline);
    assert_false(otp__timer_pending(t));
    r->pending = false;
    m->pending--;
    m->fired++;
    m->ties += !r->due && r->deadline == m->last_fired_deadline;
    m->last_fired_deadline = r->due ? 0 : r->deadline;

    /* What a runtime's callbacks do: re-arm (themselves or others, maybe
     * "now"), cancel timers, some of them due in this same advance. */
    uint64_t x = rng_next(&m->rng);
    if (x % 100 < 15)
        do_add(m, id, x % 100 < 3 ? m->clock : gen_deadline(m, m->clock));
    if ((x >> 8) % 100 < 25)
        do_add(m, (int)((x >> 16) % NT), gen_deadline(m, m->clock));
    if ((x >> 32) % 100 < 20)
        do_cancel(m, (int)((x >> 40) % NT));
}

static void check_next(model *m)
{
    otp__wheel *w = m->w;
    assert_int_equal(w->count, m->pending);
    assert_int_equal(otp__wheel_now(w), m->clock);
    uint64_t nd = otp__wheel_next_deadline(w), min = UINT64_MAX;
    bool any = false, due = false;
    for (int i = 0; i < NT; i++) {
        if (!m->ref[i].pending)
            continue;
        any = true;
        due |= m->ref[i].due;
        if (!m->ref[i].due && m->ref[i].deadline < min)
            min = m->ref[i].deadline;
    }
    if (due) {
        assert_int_equal(nd, m->clock);
    } else if (!any) {
        assert_int_equal(nd, UINT64_MAX);
    } else {
        assert_true(nd <= min);
        assert_true(nd > m->clock);
        if ((min ^ m->clock) < 64) /* in level 0: exact */
            assert_int_equal(nd, min);
    }
}

static void advance_to(model *m, uint64_t target)
{
    m->advances++;
    m->target = target;
    size_t before = m->fired;
    size_t n = otp__wheel_advance(m->w, target, model_cb, m);
    assert_int_equal(n, m->fired - before);
    assert_int_equal(ref_next(m), -1); /* nothing left behind */
    if (target > m->clock)
        m->clock = target;
}

static void model_run(uint64_t seed, int ops, int profile, uint64_t start)
{
    model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->rng = seed;
    m->profile = profile;
    m->clock = start;
    m->w = wheel_new(start);
    uint64_t adds = 0, cancels = 0;
    for (int op = 0; op < ops; op++) {
        uint64_t x = rng_next(&m->rng);
        unsigned pick = (unsigned)(x % 100);
        int id = (int)((x >> 8) % NT);
        /* Alternate crowded stretches (mostly adds, the clock creeping) with
         * ordinary ones, so slots hold hundreds of timers at times. */
        bool crowd = (op / 4000) % 2 == 1;
        if (crowd && pick >= 80) {
            advance_to(m, sat_add(m->clock, rng_next(&m->rng) % 3));
        } else if (crowd || pick < 45) {
            do_add(m, id, gen_deadline(m, m->clock));
            adds++;
        } else if (pick < 62) {
            do_cancel(m, id);
            cancels++;
        } else {
            uint64_t r = rng_next(&m->rng), c = m->clock, to;
            unsigned how = (unsigned)(r % 100);
            if (how < 35)
                to = sat_add(c, r % 11);
            else if (how < 55)
                to = sat_add(c, r % 200);
            else if (how < 68)
                to = sat_add(c, r % 100000);
            else if (how < 83) /* exactly where next_deadline says */
                to = otp__wheel_next_deadline(m->w) == UINT64_MAX ? c
                                                                  : otp__wheel_next_deadline(m->w);
            else if (how < (profile == 0 ? 84 : 88)) /* the machine slept */
                to = sat_add(c, (r >> 8) % (1ull << 36));
            else if (how < 96)
                to = c;
            else /* a clock behind ours: only what is already due fires */
                to = c - (c < 50 ? c : r % 50);
            if (profile != 2 && to > (1ull << 62))
                to = c; /* keep the run from ending at the end of time */
            advance_to(m, to);
        }
        check_next(m);
        if (m->pending > m->max_pending)
            m->max_pending = m->pending;
    }
    fprintf(stderr,
            "wheel model (seed %llu, profile %d): %d ops, %llu adds, %llu cancels, %zu fired "
            "(%llu tied with the one before), up to %zu pending, clock %llu\n",
            (unsigned long long)seed, profile, ops, (unsigned long long)adds,
            (unsigned long long)cancels, m->fired, (unsigned long long)m->ties, m->max_pending,
            (unsigned long long)m->clock);
    assert_true(m->fired > (size_t)ops / 10);
    free(m->w);
    free(m);
}

static void test_model_dense(void **state)
{
    (void)state;
    model_run(1, 150000, 0, 0);
}

static void test_model_mixed(void **state)
{
    (void)state;
    model_run(2, 200000, 1, 123456789);
    model_run(3, 50000, 1, (1ull << 40) - 7); /* start just before a high-level boundary */
}

static void test_model_far(void **state)
{
    (void)state;
    model_run(4, 100000, 2, 0);
}

/* ------------------------------------------------------------ edge cases */

typedef struct log {
    otp__timer *fired[64];
    uint64_t at[64]; /* the clock when each fired */
    int n;
    otp__wheel *w;
} log;

static void log_cb(otp__timer *t, void *ctx)
{
    log *l = ctx;
    assert_true(l->n < 64);
    l->at[l->n] = otp__wheel_now(l->w);
    l->fired[l->n++] = t;
}

static void test_basics(void **state)
{
    (void)state;
    otp__wheel *w = wheel_new(1000);
    assert_int_equal(otp__wheel_next_deadline(w), UINT64_MAX);
    assert_int_equal(otp__wheel_timeout(w, 1000), UINT64_MAX);
    log l = {.w = w};
    assert_int_equal(otp__wheel_advance(w, 5000, log_cb, &l), 0);
    assert_int_equal(otp__wheel_now(w), 5000);

    otp__timer zeroed, t;
    memset(&zeroed, 0, sizeof zeroed);
    otp__timer_init(&t);
    assert_false(otp__wheel_cancel(w, &zeroed)); /* never added */
    assert_false(otp__timer_pending(&t));
    otp__wheel_add(w, &t, 5010);
    assert_true(otp__timer_pending(&t));
    assert_int_equal(w->count, 1);
    assert_int_equal(otp__wheel_next_deadline(w), 5010);
    assert_int_equal(otp__wheel_timeout(w, 5004), 6);
    assert_true(otp__wheel_cancel(w, &t));
    assert_false(otp__wheel_cancel(w, &t)); /* twice */
    assert_int_equal(w->count, 0);
    assert_int_equal(otp__wheel_next_deadline(w), UINT64_MAX);

    /* Re-arming a pending timer moves it. */
    otp__wheel_add(w, &t, 5020);
    otp__wheel_add(w, &t, 5030);
    assert_int_equal(w->count, 1);
    assert_int_equal(otp__wheel_advance(w, 5029, log_cb, &l), 0);
    assert_int_equal(otp__wheel_advance(w, 5030, log_cb, &l), 1);
    assert_ptr_equal(l.fired[0], &t);
    assert_int_equal(l.at[0], 5030);
    assert_false(otp__wheel_cancel(w, &t)); /* expired */
    free(w);
}

static void test_ties_and_order(void **state)
{
    (void)state;
    otp__wheel *w = wheel_new(0);
    log l = {.w = w};
    otp__timer t[6] = {0};
    /* a and b share a deadline but b is added after a has cascaded down
     * twice; c is earlier, d equal again, e later, f earlier than all. */
    otp__wheel_add(w, &t[0], 5000);
    assert_int_equal(otp__wheel_advance(w, 4990, log_cb, &l), 0);
    otp__wheel_add(w, &t[1], 5000);
    otp__wheel_add(w, &t[2], 4995);
    otp__wheel_add(w, &t[3], 5000);
    otp__wheel_add(w, &t[4], 5001);
    otp__wheel_add(w, &t[5], 4991);
    assert_int_equal(otp__wheel_advance(w, 6000, log_cb, &l), 6);
    otp__timer *want[] = {&t[5], &t[2], &t[0], &t[1], &t[3], &t[4]};
    uint64_t at[] = {4991, 4995, 5000, 5000, 5000, 5001};
    for (int i = 0; i < 6; i++) {
        assert_ptr_equal(l.fired[i], want[i]);
        assert_int_equal(l.at[i], at[i]);
    }
    free(w);
}

static void test_past_deadlines(void **state)
{
    (void)state;
    otp__wheel *w = wheel_new(1000);
    log l = {.w = w};
    otp__timer a = {0}, b = {0}, c = {0}, d = {0};
    otp__wheel_add(w, &d, 1001);
    otp__wheel_add(w, &a, 5);
    otp__wheel_add(w, &b, 1000); /* "now" is already past: the clock has done 1000 */
    otp__wheel_add(w, &c, 999);
    assert_int_equal(otp__wheel_next_deadline(w), 1000);
    assert_int_equal(otp__wheel_timeout(w, 1000), 0);
    /* An advance that does not move the clock still fires what is due, in
     * add order (they all count as due at 1000), and nothing else. */
    assert_int_equal(otp__wheel_advance(w, 1000, log_cb, &l), 3);
    assert_ptr_equal(l.fired[0], &a);
    assert_ptr_equal(l.fired[1], &b);
    assert_ptr_equal(l.fired[2], &c);
    assert_int_equal(l.at[0], 1000);
    /* A clock behind ours fires due timers only and does not go back. */
    otp__wheel_add(w, &a, 10);
    assert_int_equal(otp__wheel_advance(w, 400, log_cb, &l), 1);
    assert_ptr_equal(l.fired[3], &a);
    assert_int_equal(otp__wheel_now(w), 1000);
    assert_true(otp__timer_pending(&d));
    assert_int_equal(otp__wheel_advance(w, 1001, log_cb, &l), 1);
    assert_ptr_equal(l.fired[4], &d);
    free(w);
}

static void test_far_future(void **state)
{
    (void)state;
    const uint64_t year = 365ull * 24 * 3600 * 1000;
    otp__wheel *w = wheel_new(1700000000000ull); /* a wall-clock-like start */
    uint64_t t0 = otp__wheel_now(w);
    log l = {.w = w};
    otp__timer max = {0}, max1 = {0}, century = {0}, y1 = {0}, day = {0};
    otp__wheel_add(w, &max, UINT64_MAX);
    otp__wheel_add(w, &max1, UINT64_MAX - 1);
    otp__wheel_add(w, &century, t0 + 100 * year);
    otp__wheel_add(w, &y1, t0 + year);
    otp__wheel_add(w, &day, t0 + 24 * 3600 * 1000);
    assert_true(otp__wheel_next_deadline(w) <= t0 + 24 * 3600 * 1000);
    /* Each jump would take ages if advance walked the milliseconds. */
    assert_int_equal(otp__wheel_advance(w, t0 + year - 1, log_cb, &l), 1);
    assert_int_equal(otp__wheel_advance(w, t0 + year, log_cb, &l), 1);
    assert_int_equal(l.at[1], t0 + year);
    assert_int_equal(otp__wheel_advance(w, UINT64_MAX - 2, log_cb, &l), 1);
    assert_ptr_equal(l.fired[2], &century);
    assert_int_equal(otp__wheel_next_deadline(w), UINT64_MAX - 1);
    assert_int_equal(otp__wheel_advance(w, UINT64_MAX, log_cb, &l), 2);
    assert_ptr_equal(l.fired[3], &max1);
    assert_ptr_equal(l.fired[4], &max);
    assert_int_equal(l.at[4], UINT64_MAX);
    /* At the end of time every deadline is due. */
    otp__wheel_add(w, &day, UINT64_MAX);
    assert_int_equal(otp__wheel_next_deadline(w), UINT64_MAX);
    assert_int_equal(w->count, 1);
    assert_int_equal(otp__wheel_advance(w, UINT64_MAX, log_cb, &l), 1);
    free(w);
}

/* Many timers, one jump of two years: all fire, in (deadline, add) order. */
typedef struct jump {
    otp__timer *base;
    int last;
    uint64_t last_deadline;
    size_t n;
} jump;

static void jump_cb(otp__timer *t, void *ctx)
{
    jump *j = ctx;
    int id = (int)(t - j->base);
    assert_true(t->deadline > j->last_deadline ||
                (t->deadline == j->last_deadline && id > j->last));
    j->last = id;
    j->last_deadline = t->deadline;
    j->n++;
}

static void test_huge_jump(void **state)
{
    (void)state;
    enum { N = 100000 };
    otp__timer *t = calloc(N, sizeof(*t));
    assert_non_null(t);
    otp__wheel *w = wheel_new(42);
    uint64_t seed = 9;
    for (int i = 0; i < N; i++) /* ids rise with add order, so ties must rise too */
        otp__wheel_add(w, &t[i], 43 + rng_next(&seed) % (i % 2 ? 1000 : 365ull * 86400000));
    jump j = {.base = t, .last = -1};
    assert_int_equal(otp__wheel_advance(w, 2 * 365ull * 86400000, jump_cb, &j), N);
    assert_int_equal(j.n, N);
    assert_int_equal(w->count, 0);
    assert_int_equal(otp__wheel_next_deadline(w), UINT64_MAX);
    free(w);
    free(t);
}

/* Sleeping until next_deadline and advancing reaches a timer after at most
 * one early wake-up per level, and fires it exactly on time. */
static void test_next_deadline_walk(void **state)
{
    (void)state;
    const uint64_t dist[] = {1, 63, 64, 70, 5000, 3600000, 365ull * 86400000, 1ull << 50};
    for (size_t k = 0; k < sizeof dist / sizeof dist[0]; k++) {
        otp__wheel *w = wheel_new(1000003);
        log l = {.w = w};
        otp__timer t = {0};
        uint64_t deadline = 1000003 + dist[k];
        otp__wheel_add(w, &t, deadline);
        int wakes = 0;
        while (l.n == 0) {
            uint64_t nd = otp__wheel_next_deadline(w);
            assert_true(nd <= deadline && nd > otp__wheel_now(w));
            otp__wheel_advance(w, nd, log_cb, &l);
            wakes++;
        }
        assert_int_equal(l.at[0], deadline);
        assert_true(wakes <= OTP__WHEEL_LEVELS);
        if (dist[k] == 5000)
            assert_true(wakes <= 3);
        free(w);
    }
}

/* Callbacks that add and cancel, as documented in wheel.h. */
typedef struct cbtest {
    otp__wheel *w;
    otp__timer t[4];
    int order[32], n;
    int mode;
} cbtest;

static void cb_actions(otp__timer *t, void *ctx)
{
    cbtest *c = ctx;
    int id = (int)(t - c->t);
    assert_true(c->n < 32);
    c->order[c->n++] = id;
    uint64_t now = otp__wheel_now(c->w);
    switch (c->mode) {
    case 0: /* re-arm itself "now": due, waits for the next advance */
        otp__wheel_add(c->w, t, now);
        break;
    case 1: /* the first one cancels the others due in this advance */
        if (id == 0) {
            assert_false(otp__wheel_cancel(c->w, t)); /* itself: already fired */
            assert_true(otp__wheel_cancel(c->w, &c->t[1]));
            assert_true(otp__wheel_cancel(c->w, &c->t[2]));
        }
        break;
    case 2: /* a periodic tick of 10 ms; t[1] added in between */
        if (id == 0 && c->n < 10)
            otp__wheel_add(c->w, t, now + 10);
        if (id == 0 && now == 20)
            otp__wheel_add(c->w, &c->t[1], 25);
        break;
    }
}

static void test_callbacks(void **state)
{
    (void)state;
    cbtest c = {.w = wheel_new(0)};

    c.mode = 0;
    otp__wheel_add(c.w, &c.t[0], 5);
    assert_int_equal(otp__wheel_advance(c.w, 100, cb_actions, &c), 1);
    assert_true(otp__timer_pending(&c.t[0]));
    assert_int_equal(c.t[0].deadline, 5); /* re-armed at the clock of its firing */
    assert_int_equal(otp__wheel_next_deadline(c.w), 100);
    assert_int_equal(otp__wheel_advance(c.w, 100, cb_actions, &c), 1);
    assert_int_equal(c.t[0].deadline, 100);
    otp__wheel_cancel(c.w, &c.t[0]);

    c.mode = 1;
    c.n = 0;
    otp__wheel_add(c.w, &c.t[0], 110);
    otp__wheel_add(c.w, &c.t[1], 110);
    otp__wheel_add(c.w, &c.t[2], 120);
    otp__wheel_add(c.w, &c.t[3], 130);
    assert_int_equal(otp__wheel_advance(c.w, 200, cb_actions, &c), 2);
    assert_int_equal(c.order[0], 0);
    assert_int_equal(c.order[1], 3);

    otp__wheel_init(c.w, 0);
    c.mode = 2;
    c.n = 0;
    otp__wheel_add(c.w, &c.t[0], 10);
    otp__wheel_add(c.w, &c.t[2], 45);
    assert_int_equal(otp__wheel_advance(c.w, 1000, cb_actions, &c), 10);
    int want[] = {0, 0, 1, 0, 0, 2, 0, 0, 0, 0}; /* 10, 20, 25, 30, 40, 45, 50 ... 80 */
    for (int i = 0; i < 10; i++)
        assert_int_equal(c.order[i], want[i]);
    assert_int_equal(c.w->count, 0);
    free(c.w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),         cmocka_unit_test(test_ties_and_order),
        cmocka_unit_test(test_past_deadlines), cmocka_unit_test(test_far_future),
        cmocka_unit_test(test_huge_jump),      cmocka_unit_test(test_next_deadline_walk),
        cmocka_unit_test(test_callbacks),      cmocka_unit_test(test_model_dense),
        cmocka_unit_test(test_model_mixed),    cmocka_unit_test(test_model_far),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
