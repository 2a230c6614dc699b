/* test_embed.c — shards run by the host: otp_shard_run_forever on a host
 * thread, otp_shard_fd + otp_shard_run inside a host's poll() loop (timers
 * firing while the host polls, calls from threads and from the other
 * shard), stopping the runtime with an embedded shard, and the misuses the
 * API refuses. Every wait is bounded.
 */
/* otp-test: threads */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "otp.h"

#define WAIT_MS 30000

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
    return now_us() / 1000u;
}

/* --------------------------------------------------------------- latches */

typedef struct latch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int count;
    int64_t values[16]; /* what processes report, in order */
} latch;

static void latch_init(latch *l)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->cond, &ca);
    pthread_condattr_destroy(&ca);
    l->count = 0;
}

static void latch_destroy(latch *l)
{
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->cond);
}

static void latch_put(latch *l, int64_t v)
{
    pthread_mutex_lock(&l->lock);
    if (l->count < 16)
        l->values[l->count] = v;
    l->count++;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

static bool latch_wait(latch *l, int n, uint64_t ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->lock);
    int rc = 0;
    while (l->count < n && rc == 0)
        rc = pthread_cond_timedwait(&l->cond, &l->lock, &dl);
    bool ok = l->count >= n;
    pthread_mutex_unlock(&l->lock);
    return ok;
}

/* ------------------------------------------------------------ the host
 *
 * A host thread runs one shard: forever, or in a poll() loop on the
 * shard's fd with the timeout otp_shard_run gives. cap_ms bounds each poll
 * (what a host's own timers would do); UINT64_MAX trusts next_ms alone.
 */

typedef struct host {
    otp_runtime *rt;
    unsigned shard;
    bool forever;
    uint64_t cap_ms;
    int rc;                 /* otp_shard_run*'s last result */
    _Atomic int stop_rc;    /* otp_runtime_stop tried from the host thread */
    _Atomic long polls;     /* poll() calls */
    _Atomic long poll_naps; /* polls that ended by their timeout */
    _Atomic bool try_stop;  /* ask the host to try otp_runtime_stop itself */
    _Atomic bool in_poll;   /* about to poll, or polling */
    _Atomic bool finished;
    pthread_t thread;
} host;

static void *host_main(void *arg)
{
    host *h = arg;
    if (h->forever) {
        h->rc = otp_shard_run_forever(h->rt, h->shard);
        atomic_store(&h->finished, true);
        return NULL;
    }
    int fd = otp_shard_fd(h->rt, h->shard);
    for (;;) {
        uint64_t next = UINT64_MAX;
        int rc = otp_shard_run(h->rt, h->shard, &next);
        if (rc != 0) {
            h->rc = rc;
            break;
        }
        if (atomic_exchange(&h->try_stop, false))
            atomic_store(&h->stop_rc, otp_runtime_stop(h->rt)); /* refused, not a deadlock */
        uint64_t wait = next < h->cap_ms ? next : h->cap_ms;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        atomic_store(&h->in_poll, true);
        int n = poll(&p, 1, wait == UINT64_MAX ? -1 : (int)wait);
        atomic_store(&h->in_poll, false);
        atomic_fetch_add(&h->polls, 1);
        if (n == 0)
            atomic_fetch_add(&h->poll_naps, 1);
    }
    atomic_store(&h->finished, true);
    return NULL;
}

static otp_runtime *new_rt(uint64_t embedded)
{
    otp_runtime *rt = NULL;
    otp_runtime_config cfg = {
        .shards = 2, .node_name = "embed@localhost", .no_pin = true, .embedded = embedded};
    assert_int_equal(otp_runtime_new(&rt, &cfg), 0);
    return rt;
}

static void host_start(host *h, otp_runtime *rt, unsigned shard, bool forever, uint64_t cap_ms)
{
    memset(h, 0, sizeof *h);
    h->rt = rt;
    h->shard = shard;
    h->forever = forever;
    h->cap_ms = cap_ms;
    h->rc = -1000;
    assert_int_equal(pthread_create(&h->thread, NULL, host_main, h), 0);
}

/* Stops the runtime from this (outside) thread; the host must then end. */
static void stop_and_join(otp_runtime *rt, host *h)
{
    assert_int_equal(otp_runtime_stop(rt), 0);
    pthread_join(h->thread, NULL);
    assert_true(atomic_load(&h->finished));
    assert_int_equal(h->rc, h->forever ? 0 : 1);
    otp_runtime_free(rt);
}

/* --------------------------------------------------------- a counter server */

static _Atomic int g_terminates, g_shutdowns;

static int ctr_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    (void)self;
    (void)reason;
    int64_t *v = malloc(sizeof *v);
    *v = 0;
    otp_get_int64(args, v);
    *state = v;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret ctr_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    (void)from;
    int64_t *v = state, n = 0;
    otp_get_int64(req, &n);
    *v += n;
    return otp_gs_reply(otp_int(otp_proc_arena(self), *v));
}

static void ctr_terminate(otp_proc *self, otp_term reason, void *state)
{
    (void)self;
    atomic_fetch_add(&g_terminates, 1);
    if (reason == OTP_ATOM_SHUTDOWN)
        atomic_fetch_add(&g_shutdowns, 1);
    free(state);
}

static const otp_gen_server_ops ctr_ops = {
    .init = ctr_init, .handle_call = ctr_call, .terminate = ctr_terminate};

static otp_term start_ctr(otp_runtime *rt, int shard, otp_term name)
{
    otp_gen_server_opts o = {.shard = shard, .name = name};
    otp_term pid = OTP_NONE;
    assert_int_equal(otp_gen_server_start(rt, NULL, &ctr_ops, otp_small(0), &o, &pid, NULL), 0);
    return pid;
}

static int64_t call_add(otp_runtime *rt, otp_term server, int64_t n)
{
    otp_arena *a = otp_arena_new();
    otp_term r = OTP_NONE;
    int rc = otp_runtime_call(rt, server, otp_int(a, n), 5000, a, &r);
    int64_t v = -1;
    otp_get_int64(r, &v);
    otp_arena_free(a);
    assert_int_equal(rc, 0);
    return v;
}

/* A process that calls a server `n` times and reports the last reply. */
typedef struct caller_arg {
    otp_term server;
    int n;
    latch *done;
} caller_arg;

static void caller_main(otp_proc *self, void *arg)
{
    caller_arg *c = arg;
    otp_term r = OTP_NONE;
    int64_t v = -1;
    for (int i = 0; i < c->n; i++) {
        if (otp_gen_server_call(self, c->server, otp_small(1), 5000, &r) != 0) {
            latch_put(c->done, -1);
            return;
        }
        otp_arena_reset(otp_proc_arena(self));
    }
    otp_get_int64(r, &v);
    latch_put(c->done, v);
}

/* ======================================================= run forever */

static void test_run_forever(void **state)
{
    (void)state;
    atomic_store(&g_terminates, 0);
    atomic_store(&g_shutdowns, 0);
    otp_runtime *rt = new_rt(1u << 1);
    assert_int_equal(otp_runtime_start(rt), 0);
    host h;
    host_start(&h, rt, 1, true, UINT64_MAX);
    /* a server on the host's shard, one on the runtime's */
    otp_term a = start_ctr(rt, 1, otp_atom("emb_a"));
    otp_term b = start_ctr(rt, 0, OTP_NONE);
    for (int i = 1; i <= 100; i++)
        assert_int_equal(call_add(rt, a, 1), i);
    /* processes on both shards call the host's server */
    latch done;
    latch_init(&done);
    caller_arg ca = {a, 200, &done};
    for (int shard = 0; shard < 2; shard++) {
        otp_spawn_opts o = {.shard = shard};
        assert_int_equal(otp_spawn(rt, NULL, caller_main, &ca, &o, NULL, NULL), 0);
    }
    assert_true(latch_wait(&done, 2, WAIT_MS));
    assert_true(done.values[0] > 0 && done.values[1] > 0);
    assert_int_equal(call_add(rt, otp_atom("emb_a"), 0), 100 + 2 * 200);
    assert_int_equal(call_add(rt, b, 5), 5);
    /* misuse: run a shard the host does not own, or from another thread */
    assert_int_equal(otp_shard_run_forever(rt, 0), -OTP_EBADARG);
    uint64_t next;
    assert_int_equal(otp_shard_run(rt, 0, &next), -OTP_EBADARG);
    assert_int_equal(otp_shard_run(rt, 1, &next), -OTP_ECONTEXT);
    assert_int_equal(otp_shard_run(rt, 7, &next), -OTP_EBADARG);
    stop_and_join(rt, &h);
    assert_int_equal(atomic_load(&g_terminates), 2);
    assert_int_equal(atomic_load(&g_shutdowns), 2);
    latch_destroy(&done);
}

/* =================================================== in a poll() loop */

/* Waits for `ticks` send_after timers of `ms` each, one after the other,
 * and reports how long each took, in microseconds. */
typedef struct ticker_arg {
    int ticks;
    uint64_t ms;
    latch *report;
} ticker_arg;

static void ticker_main(otp_proc *self, void *arg)
{
    ticker_arg *t = arg;
    otp_term msg;
    for (int i = 0; i < t->ticks; i++) {
        uint64_t t0 = now_us();
        if (otp_send_after(self, t->ms, otp_self(self), otp_small(i), NULL) != 0 ||
            otp_receive(self, NULL, NULL, WAIT_MS, &msg) != 0 || msg != otp_small(i)) {
            latch_put(t->report, -1);
            return;
        }
        latch_put(t->report, (int64_t)(now_us() - t0));
    }
}

static void test_poll_loop_timers(void **state)
{
    (void)state;
    atomic_store(&g_terminates, 0);
    otp_runtime *rt = new_rt(1u << 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    assert_true(otp_shard_fd(rt, 0) >= 0);
    /* polls wait as long as next_ms says: only the timers wake the host
     * (the cap, 2 s, is far above the ticks) */
    host h;
    host_start(&h, rt, 0, false, 2000);
    latch report;
    latch_init(&report);
    ticker_arg t = {.ticks = 5, .ms = 120, .report = &report};
    otp_spawn_opts o = {.shard = 0};
    assert_int_equal(otp_spawn(rt, NULL, ticker_main, &t, &o, NULL, NULL), 0);
    assert_true(latch_wait(&report, 5, WAIT_MS));
    long polls = atomic_load(&h.polls);
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 5; i++) {
        /* not early (the runtime's clock is whole, truncated milliseconds:
         * up to 1 ms early is its resolution); late by far less than the
         * 2 s cap would allow */
        assert_true(report.values[i] >= 119000);
        assert_true(report.values[i] < 1120000);
        lo = report.values[i] < lo ? report.values[i] : lo;
        hi = report.values[i] > hi ? report.values[i] : hi;
    }
    printf("# poll loop: 5 timers of 120 ms fired after %.1f..%.1f ms; %ld polls so far\n",
           lo / 1000.0, hi / 1000.0, polls);
    /* no busy loop: a few polls per timer (the wheel may wake early once
     * per level), not thousands */
    assert_true(polls < 200);
    stop_and_join(rt, &h);
    latch_destroy(&report);
}

/* The host stops the runtime from a third thread while it polls; every
 * server's terminate runs, on both shards; the host's own attempt to stop
 * (it runs a shard) is refused instead of waiting for itself. */
static void test_stop_with_embedded_shard(void **state)
{
    (void)state;
    atomic_store(&g_terminates, 0);
    atomic_store(&g_shutdowns, 0);
    otp_runtime *rt = new_rt(1u << 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    host h;
    host_start(&h, rt, 0, false, 50);
    for (int i = 0; i < 10; i++)
        start_ctr(rt, i % 2, OTP_NONE);
    otp_term a = start_ctr(rt, 0, otp_atom("emb_stop"));
    assert_int_equal(call_add(rt, a, 3), 3);
    atomic_store(&h.stop_rc, 1);
    atomic_store(&h.try_stop, true);
    /* the host tries after its next turn; calls make it take turns */
    for (int i = 0; i < 1000 && atomic_load(&h.stop_rc) == 1; i++)
        assert_int_equal(call_add(rt, a, 1), 4 + i);
    assert_int_equal(atomic_load(&h.stop_rc), -OTP_ECONTEXT);
    stop_and_join(rt, &h);
    assert_int_equal(atomic_load(&g_terminates), 11);
    assert_int_equal(atomic_load(&g_shutdowns), 11);
}

/* Both shards embedded, one in a poll loop, one run forever; processes
 * on each call the other's server. */
static void test_two_embedded_shards(void **state)
{
    (void)state;
    atomic_store(&g_terminates, 0);
    otp_runtime *rt = new_rt(3u);
    assert_int_equal(otp_runtime_start(rt), 0);
    host h[2];
    host_start(&h[0], rt, 0, false, 20);
    host_start(&h[1], rt, 1, true, UINT64_MAX);
    otp_term s[2] = {start_ctr(rt, 0, OTP_NONE), start_ctr(rt, 1, OTP_NONE)};
    latch done;
    latch_init(&done);
    caller_arg ca[2] = {{s[1], 100, &done}, {s[0], 100, &done}};
    for (int shard = 0; shard < 2; shard++) {
        otp_spawn_opts o = {.shard = shard};
        assert_int_equal(otp_spawn(rt, NULL, caller_main, &ca[shard], &o, NULL, NULL), 0);
    }
    assert_true(latch_wait(&done, 2, WAIT_MS));
    assert_int_equal(done.values[0], 100);
    assert_int_equal(done.values[1], 100);
    assert_int_equal(otp_runtime_stop(rt), 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(h[i].thread, NULL);
        assert_true(atomic_load(&h[i].finished));
    }
    assert_int_equal(h[0].rc, 1);
    assert_int_equal(h[1].rc, 0);
    otp_runtime_free(rt);
    assert_int_equal(atomic_load(&g_terminates), 2);
    latch_destroy(&done);
}

/* Waits (bounded) until the host sits in poll(). */
static void until_polling(host *h)
{
    for (int i = 0; i < 5000 && !atomic_load(&h->in_poll); i++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    assert_true(atomic_load(&h->in_poll));
}

/* Was a bug, kept as a regression test: a shard run with otp_shard_run is never woken through its
 * fd. turn() with max_sleep 0 returns before otp__waker_prepare_sleep, so the shard's waker never
 * says "sleeping", and otp__inject and the rings' publish (otp__ring_publish_needs_wake) never
 * write its eventfd: a host that polls otp_shard_fd with the timeout from next_ms (none pending:
 * forever) does not see a thread's call, a message from the other shard, or
 * the runtime's stop until something else wakes it. Here the host's cap
 * (3 s) stands in for that something; each should take well under 1 s.
 * (otp_shard_run_forever sleeps through turn() itself and is not hit.) */
static void test_poll_loop_wakeups(void **state)
{
    (void)state;
    otp_runtime *rt = new_rt(1u << 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    host h;
    host_start(&h, rt, 0, false, 3000);
    otp_term s = start_ctr(rt, 0, OTP_NONE);
    /* from a thread, while the host sits in poll() */
    until_polling(&h);
    uint64_t t0 = now_ms();
    assert_int_equal(call_add(rt, s, 1), 1);
    uint64_t thread_call = now_ms() - t0;
    /* from the other shard */
    latch done;
    latch_init(&done);
    caller_arg ca = {s, 1, &done};
    otp_spawn_opts o = {.shard = 1};
    until_polling(&h);
    t0 = now_ms();
    assert_int_equal(otp_spawn(rt, NULL, caller_main, &ca, &o, NULL, NULL), 0);
    assert_true(latch_wait(&done, 1, WAIT_MS));
    uint64_t cross = now_ms() - t0;
    /* the runtime's stop */
    until_polling(&h);
    t0 = now_ms();
    stop_and_join(rt, &h);
    uint64_t stop = now_ms() - t0;
    latch_destroy(&done);
    printf("# poll loop, host idle in poll(): a thread's call %llu ms, a call from the other "
           "shard %llu ms, stop %llu ms\n",
           (unsigned long long)thread_call, (unsigned long long)cross, (unsigned long long)stop);
    assert_true(thread_call < 1000);
    assert_true(cross < 1000);
    assert_true(stop < 1000);
}

/* Was a bug, kept as a regression test: otp_shard_run reuses sh->has_thread to mean "finished,
 * reported" (runtime.c), and otp_runtime_stop joins every shard with has_thread set: when the
 * host's shard finishes before stop's join loop reaches it, stop calls pthread_join on the host's
 * own thread. A host thread that goes on after its loop (here: until stop returns) makes stop hang;
 * a host that is the main thread and joins the stopping thread (embed_loop's shape with shard 1
 * embedded) deadlocks; a host thread that exits is joined twice (the host's own join is then
 * undefined). Unsynchronised, too: TSan reports the race on has_thread. Shard 1 is embedded so stop
 * joins shard 0 first, which gives the host time to finish. */
typedef struct late_host {
    host h;
    latch release;  /* the host thread lingers until this */
    latch finished; /* its loop has ended */
} late_host;

static void *lingering_host(void *arg)
{
    late_host *lh = arg;
    host_main(&lh->h);
    latch_put(&lh->finished, 1);
    latch_wait(&lh->release, 1, WAIT_MS);
    return NULL;
}

static void *stopper(void *arg)
{
    otp_runtime *rt = ((late_host *)arg)->h.rt;
    otp_runtime_stop(rt);
    latch_put(&((late_host *)arg)->release, 2); /* also: stop has returned */
    return NULL;
}

static void test_stop_joins_host_thread(void **state)
{
    (void)state;
    otp_runtime *rt = new_rt(1u << 1);
    assert_int_equal(otp_runtime_start(rt), 0);
    late_host lh;
    memset(&lh, 0, sizeof lh);
    lh.h.rt = rt;
    lh.h.shard = 1;
    lh.h.cap_ms = 1;
    latch_init(&lh.release);
    latch_init(&lh.finished);
    pthread_t host_thread, stop_thread;
    assert_int_equal(pthread_create(&host_thread, NULL, lingering_host, &lh), 0);
    for (int i = 0; i < 20; i++)
        start_ctr(rt, 1, OTP_NONE);
    assert_int_equal(pthread_create(&stop_thread, NULL, stopper, &lh), 0);
    /* the host finishes its loop, then lingers; stop must not wait for it
     * (the stopper's one put says stop returned) */
    bool stopped = latch_wait(&lh.release, 1, 3000);
    /* stop returns once the shard reported its end; the host's loop sees
     * that a moment later */
    bool host_done = latch_wait(&lh.finished, 1, WAIT_MS);
    if (!stopped)
        latch_put(&lh.release, 1); /* let the host thread go: stop's join returns */
    pthread_join(stop_thread, NULL);
    if (stopped)
        pthread_join(host_thread, NULL); /* else stop joined it already */
    otp_runtime_free(rt);
    latch_destroy(&lh.release);
    latch_destroy(&lh.finished);
    assert_true(host_done);
    if (!stopped)
        fail_msg("otp_runtime_stop waited for the host's thread to exit (it joined it)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_forever),
        cmocka_unit_test(test_poll_loop_timers),
        cmocka_unit_test(test_stop_with_embedded_shard),
        cmocka_unit_test(test_two_embedded_shards),
        cmocka_unit_test(test_poll_loop_wakeups),
        cmocka_unit_test(test_stop_joins_host_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
