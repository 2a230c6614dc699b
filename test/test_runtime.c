/* test_runtime.c — the runtime on one node: start and stop, spawning on
 * every shard, messages and selective receive, receive timeouts, the
 * registry (including a race for one name), send_after, process_info, and
 * a stress run with exact per-pair counts and order.
 */
/* otp-test: threads */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "otp.h"
#include "otp/gen_server.h"
#include "otp/runtime.h"

static otp_runtime *start_rt(unsigned shards)
{
    otp_runtime *rt = NULL;
    otp_runtime_config cfg = {.shards = shards, .node_name = "test@localhost", .no_pin = true};
    assert_int_equal(otp_runtime_new(&rt, &cfg), 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    return rt;
}

static void stop_rt(otp_runtime *rt)
{
    assert_int_equal(otp_runtime_stop(rt), 0);
    otp_runtime_free(rt);
}

/* A thread-side mailbox: processes report results here. */
typedef struct report {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int64_t values[64];
    int n;
} report;

static void report_init(report *r)
{
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    r->n = 0;
}
static void report_put(report *r, int64_t v)
{
    pthread_mutex_lock(&r->lock);
    if (r->n < 64)
        r->values[r->n++] = v;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}
/* Waits for n reports (the test's timeout bounds it). */
static void report_wait(report *r, int n)
{
    pthread_mutex_lock(&r->lock);
    while (r->n < n)
        pthread_cond_wait(&r->cond, &r->lock);
    pthread_mutex_unlock(&r->lock);
}
static void report_destroy(report *r)
{
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
}

/* ------------------------------------------------------------ basics */

static void echo_main(otp_proc *self, void *arg)
{
    report *r = arg;
    otp_term msg;
    assert_int_equal(otp_receive(self, NULL, NULL, OTP_INFINITY, &msg), 0);
    int64_t v = -1;
    otp_get_int64(msg, &v);
    report_put(r, v);
}

static void test_start_stop(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(2);
    assert_int_equal(otp_runtime_shards(rt), 2);
    report r;
    report_init(&r);
    for (int shard = 0; shard < 2; shard++) {
        otp_term pid;
        otp_spawn_opts o = {.shard = shard};
        assert_int_equal(otp_spawn(rt, NULL, echo_main, &r, &o, &pid, NULL), 0);
        assert_true(otp_is_pid(pid));
        assert_int_equal(otp_runtime_send(rt, pid, otp_small(40 + shard)), 0);
    }
    report_wait(&r, 2);
    assert_int_equal(r.values[0] + r.values[1], 81);
    stop_rt(rt);
    report_destroy(&r);
}

/* A process blocked forever is ended by stop. */
static void forever_main(otp_proc *self, void *arg)
{
    (void)arg;
    otp_receive(self, NULL, NULL, OTP_INFINITY, NULL);
}

static void test_stop_ends_blocked(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(2);
    for (int i = 0; i < 100; i++) {
        otp_spawn_opts o = {.shard = OTP_SHARD_NEXT};
        assert_int_equal(otp_spawn(rt, NULL, forever_main, NULL, &o, NULL, NULL), 0);
    }
    stop_rt(rt);
}

/* -------------------------------------------------- selective receive */

static bool is_even(otp_term msg, void *ctx)
{
    (void)ctx;
    return otp_is_small(msg) && otp_small_value(msg) % 2 == 0;
}

static void selective_main(otp_proc *self, void *arg)
{
    report *r = arg;
    otp_term pid = otp_self(self);
    for (int i = 1; i <= 6; i++)
        otp_send(self, pid, otp_small(i));
    otp_term m;
    int64_t acc = 0;
    /* evens first, in order; then the odds are still there, in order */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(otp_receive(self, is_even, NULL, 0, &m), 0);
        acc = acc * 10 + otp_small_value(m);
    }
    assert_int_equal(otp_receive(self, is_even, NULL, 0, &m), -OTP_ETIMEDOUT);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(otp_receive(self, NULL, NULL, 0, &m), 0);
        acc = acc * 10 + otp_small_value(m);
    }
    /* a timeout that expires */
    assert_int_equal(otp_receive(self, NULL, NULL, 20, &m), -OTP_ETIMEDOUT);
    report_put(r, acc);
}

static void test_selective_receive(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(1);
    report r;
    report_init(&r);
    assert_int_equal(otp_spawn(rt, NULL, selective_main, &r, NULL, NULL, NULL), 0);
    report_wait(&r, 1);
    assert_int_equal(r.values[0], 246135);
    stop_rt(rt);
    report_destroy(&r);
}

/* ------------------------------------------------------------ aliases */

/* alias(), alias([reply]) and unalias(): messages to an active alias
 * arrive, from another shard and from a thread; a reply-once alias takes
 * one; after unalias nothing more does. */
typedef struct alias_ctx {
    report *r;
    otp_arena *keep; /* the aliases, for the sender and the thread */
    otp_term a1, a2, a3, owner;
    _Atomic int stage;
} alias_ctx;

static void alias_sender_main(otp_proc *self, void *arg)
{
    alias_ctx *c = arg;
    otp_term m;
    otp_receive(self, NULL, NULL, 5000, &m); /* go */
    otp_send(self, c->a1, otp_atom("one"));
    otp_send(self, c->a2, otp_atom("two"));
    otp_send(self, c->a2, otp_atom("three")); /* the reply-once alias is used up */
    otp_send(self, c->owner, otp_atom("sent1"));
    otp_receive(self, NULL, NULL, 5000, &m); /* again */
    otp_send(self, c->a1, otp_atom("four")); /* unaliased meanwhile */
    otp_send(self, c->owner, otp_atom("sent2"));
}

static int64_t code_of(otp_term m)
{
    static const char *const names[] = {"one", "two", "three", "sent1", "four", "sent2", "five"};
    for (int i = 0; i < 7; i++)
        if (m == otp_atom(names[i]))
            return i + 1;
    return 99;
}

static void alias_owner_main(otp_proc *self, void *arg)
{
    alias_ctx *c = arg;
    otp_term a1, a2, a3, m;
    assert_int_equal(otp_alias(self, OTP_ALIAS_EXPLICIT, &a1), 0);
    assert_int_equal(otp_alias(self, OTP_ALIAS_REPLY, &a2), 0);
    assert_int_equal(otp_alias(self, OTP_ALIAS_EXPLICIT, &a3), 0);
    c->a1 = otp_copy(c->keep, a1);
    c->a2 = otp_copy(c->keep, a2);
    c->a3 = otp_copy(c->keep, a3);
    c->owner = otp_self(self);
    otp_spawn_opts so = {.shard = 1};
    otp_term sender;
    assert_int_equal(
        otp_spawn(otp_proc_runtime(self), self, alias_sender_main, c, &so, &sender, NULL), 0);
    otp_send(self, sender, otp_atom("go"));
    for (int i = 0; i < 3; i++) { /* one, two, sent1: never three */
        assert_int_equal(otp_receive(self, NULL, NULL, 5000, &m), 0);
        report_put(c->r, code_of(m));
    }
    assert_int_equal(otp_unalias(self, a1), 1);
    assert_int_equal(otp_unalias(self, a1), 0);
    assert_int_equal(otp_unalias(self, a2), 0); /* used up */
    otp_send(self, sender, otp_atom("again"));
    assert_int_equal(otp_receive(self, NULL, NULL, 5000, &m), 0); /* sent2, not four */
    report_put(c->r, code_of(m));
    atomic_store(&c->stage, 1);
    assert_int_equal(otp_receive(self, NULL, NULL, 5000, &m), 0); /* five, from a thread */
    report_put(c->r, code_of(m));
    report_put(c->r, otp_receive(self, NULL, NULL, 50, &m) == -OTP_ETIMEDOUT ? 0 : 98);
}

static void test_aliases(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(2);
    report r;
    report_init(&r);
    alias_ctx c = {.r = &r, .keep = otp_arena_new()};
    otp_spawn_opts so = {.shard = 0};
    assert_int_equal(otp_spawn(rt, NULL, alias_owner_main, &c, &so, NULL, NULL), 0);
    report_wait(&r, 4);
    while (!atomic_load(&c.stage))
        ;
    assert_int_equal(otp_runtime_send(rt, c.a3, otp_atom("five")), 0);
    report_wait(&r, 6);
    int64_t want[] = {1, 2, 4, 6, 7, 0};
    for (int i = 0; i < 6; i++)
        assert_int_equal(r.values[i], want[i]);
    /* an alias whose process is gone: dropped */
    assert_int_equal(otp_runtime_send(rt, c.a3, otp_atom("late")), 0);
    stop_rt(rt);
    otp_arena_free(c.keep);
    report_destroy(&r);
}

/* ---------------------------------------------------------- registry */

typedef struct watch_arg {
    otp_term pid;
    report *r;
} watch_arg;

static void watch_main(otp_proc *self, void *arg)
{
    watch_arg *wa = arg;
    otp_term ref, m;
    otp_monitor(self, wa->pid, &ref);
    report_put(wa->r, 0);
    otp_receive(self, NULL, NULL, OTP_INFINITY, &m);
    report_put(wa->r, otp_tuple_arity(m));
}

static void test_registry(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(2);
    otp_term a, b;
    otp_spawn_opts o0 = {.shard = 0}, o1 = {.shard = 1};
    assert_int_equal(otp_spawn(rt, NULL, forever_main, NULL, &o0, &a, NULL), 0);
    assert_int_equal(otp_spawn(rt, NULL, forever_main, NULL, &o1, &b, NULL), 0);
    otp_term name = otp_atom("reg_test");
    assert_true(otp_whereis(rt, name) == OTP_NONE);
    assert_int_equal(otp_register(rt, name, a), 0);
    assert_true(otp_whereis(rt, name) == a);
    assert_int_equal(otp_register(rt, name, b), -OTP_EEXIST);              /* name taken */
    assert_int_equal(otp_register(rt, otp_atom("other"), a), -OTP_EEXIST); /* pid named */
    assert_int_equal(otp_unregister(rt, name), 0);
    assert_true(otp_whereis(rt, name) == OTP_NONE);
    assert_int_equal(otp_register(rt, name, b), 0);
    assert_true(otp_whereis(rt, name) == b);
    /* a name is freed when its process exits: an observer's DOWN says
     * when that has happened */
    report r;
    report_init(&r);
    watch_arg wa = {b, &r};
    assert_int_equal(otp_spawn(rt, NULL, watch_main, &wa, &o0, NULL, NULL), 0);
    report_wait(&r, 1); /* the monitor is in place */
    assert_int_equal(otp_runtime_send(rt, name, OTP_ATOM_OK), 0);
    report_wait(&r, 2); /* DOWN */
    report_destroy(&r);
    assert_true(otp_whereis(rt, name) == OTP_NONE);
    assert_int_equal(otp_runtime_send(rt, name, OTP_ATOM_OK), -OTP_ENOPROC);
    stop_rt(rt);
}

/* ------------------------------------------------------------- stress */

/* 100k servers across the shards; each sends K numbered messages to two
 * others; each receiver checks that every sender's numbers arrive exactly
 * once and in order, and reports when it has them all. */
#define STRESS_PROCS 100000
#define STRESS_K     5

typedef struct stress {
    otp_term *pids;
    _Atomic int finished;
    _Atomic int errors;
    report *done;
} stress;

typedef struct stress_state {
    stress *st;
    uint32_t index;
    uint32_t from[2];
    int32_t next[2];
    int got;
} stress_state;

static stress *g_stress;

static uint32_t peer(uint32_t i, int k)
{
    return k == 0 ? (i + 1) % STRESS_PROCS : (uint32_t)(((uint64_t)i * 7 + 3) % STRESS_PROCS);
}

static int stress_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    (void)self;
    (void)reason;
    stress_state *s = calloc(1, sizeof *s);
    int64_t i;
    otp_get_int64(args, &i);
    s->st = g_stress;
    s->index = (uint32_t)i;
    s->from[0] = s->from[1] = UINT32_MAX;
    *state = s;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret stress_info(otp_proc *self, otp_term msg, void *state)
{
    stress_state *s = state;
    stress *st = s->st;
    if (msg == OTP_ATOM_OK) { /* go: send our messages */
        otp_arena *a = otp_proc_arena(self);
        for (int n = 0; n < STRESS_K; n++)
            for (int k = 0; k < 2; k++)
                otp_send(self, st->pids[peer(s->index, k)],
                         OTP_TUPLE(a, otp_small(s->index), otp_small(n)));
        return otp_gs_noreply();
    }
    int64_t from, n;
    otp_get_int64(otp_tuple_get(msg, 0), &from);
    otp_get_int64(otp_tuple_get(msg, 1), &n);
    /* a sender may be both peers of ours (then it counts twice) */
    int slot = -1;
    for (int k = 0; k < 2 && slot < 0; k++)
        if (s->from[k] == (uint32_t)from)
            slot = k;
    for (int k = 0; k < 2 && slot < 0; k++)
        if (s->from[k] == UINT32_MAX) {
            s->from[k] = (uint32_t)from;
            slot = k;
        }
    bool twice = peer((uint32_t)from, 0) == s->index && peer((uint32_t)from, 1) == s->index;
    int32_t want = twice ? s->next[slot] / 2 : s->next[slot];
    if (slot < 0 || n != want)
        atomic_fetch_add(&st->errors, 1);
    s->next[slot]++;
    if (++s->got == 2 * STRESS_K && atomic_fetch_add(&st->finished, 1) + 1 == STRESS_PROCS)
        report_put(st->done, 1);
    return otp_gs_noreply();
}

static void stress_terminate(otp_proc *self, otp_term reason, void *state)
{
    (void)self;
    (void)reason;
    free(state);
}

static const otp_gen_server_ops stress_ops = {
    .init = stress_init, .handle_info = stress_info, .terminate = stress_terminate};

typedef struct spawner_arg {
    stress *st;
    uint32_t from, to;
    report *r;
} spawner_arg;

static void spawner_main(otp_proc *self, void *arg)
{
    spawner_arg *sa = arg;
    otp_runtime *rt = otp_proc_runtime(self);
    otp_gen_server_opts o = {.shard = OTP_SHARD_ANY};
    for (uint32_t i = sa->from; i < sa->to; i++) {
        if (otp_gen_server_start(rt, self, &stress_ops, otp_small(i), &o, &sa->st->pids[i], NULL) !=
            0)
            atomic_fetch_add(&sa->st->errors, 1);
        if ((i & 1023) == 0)
            otp_arena_reset(otp_proc_arena(self));
    }
    report_put(sa->r, 1);
}

static void test_stress_100k(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(2);
    unsigned nsh = otp_runtime_shards(rt);
    stress st = {.pids = calloc(STRESS_PROCS, sizeof(otp_term))};
    report done, spawned;
    report_init(&done);
    report_init(&spawned);
    st.done = &done;
    g_stress = &st;
    spawner_arg sa[2];
    for (unsigned k = 0; k < nsh && k < 2; k++) {
        sa[k] = (spawner_arg){&st, k * STRESS_PROCS / 2, (k + 1) * STRESS_PROCS / 2, &spawned};
        otp_spawn_opts o = {.shard = (int)k};
        assert_int_equal(otp_spawn(rt, NULL, spawner_main, &sa[k], &o, NULL, NULL), 0);
    }
    report_wait(&spawned, 2);
    assert_int_equal(atomic_load(&st.errors), 0);
    for (uint32_t i = 0; i < STRESS_PROCS; i++)
        assert_int_equal(otp_runtime_send(rt, st.pids[i], OTP_ATOM_OK), 0);
    report_wait(&done, 1);
    assert_int_equal(atomic_load(&st.errors), 0);
    assert_int_equal(atomic_load(&st.finished), STRESS_PROCS);
    stop_rt(rt); /* terminate frees every state */
    free(st.pids);
    report_destroy(&done);
    report_destroy(&spawned);
}

/* Many processes on every shard race to register one name: exactly one
 * wins, and whereis names the winner. */
typedef struct race_arg {
    _Atomic int wins;
    _Atomic int losses;
    _Atomic otp_term winner;
    report *r;
} race_arg;

static void racer_main(otp_proc *self, void *arg)
{
    race_arg *ra = arg;
    int rc = otp_register(otp_proc_runtime(self), otp_atom("the_one"), otp_self(self));
    if (rc == 0) {
        atomic_fetch_add(&ra->wins, 1);
        atomic_store(&ra->winner, otp_self(self));
    } else if (rc == -OTP_EEXIST) {
        atomic_fetch_add(&ra->losses, 1);
    }
    report_put(ra->r, rc);
    otp_receive(self, NULL, NULL, OTP_INFINITY, NULL); /* keep the name */
}

static void test_register_race(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        otp_runtime *rt = start_rt(2);
        report r;
        report_init(&r);
        race_arg ra = {.r = &r};
        for (int i = 0; i < 40; i++) {
            otp_spawn_opts o = {.shard = i % 2};
            assert_int_equal(otp_spawn(rt, NULL, racer_main, &ra, &o, NULL, NULL), 0);
        }
        report_wait(&r, 40);
        assert_int_equal(atomic_load(&ra.wins), 1);
        assert_int_equal(atomic_load(&ra.losses), 39);
        assert_true(otp_whereis(rt, otp_atom("the_one")) == atomic_load(&ra.winner));
        stop_rt(rt);
        report_destroy(&r);
    }
}

/* The same cross-shard traffic with IORING_OP_MSG_RING wake-ups. */
static void pong_main(otp_proc *self, void *arg)
{
    (void)arg;
    for (;;) {
        otp_term m;
        otp_receive(self, NULL, NULL, OTP_INFINITY, &m);
        otp_send(self, otp_tuple_get(m, 0), otp_tuple_get(m, 1));
        otp_arena_reset(otp_proc_arena(self));
    }
}

typedef struct ping_arg {
    otp_term pong;
    report *r;
} ping_arg;

static void ping_main(otp_proc *self, void *arg)
{
    ping_arg *pa = arg;
    int64_t sum = 0;
    for (int i = 0; i < 10000; i++) {
        otp_send(self, pa->pong, OTP_TUPLE(otp_proc_arena(self), otp_self(self), otp_small(i)));
        otp_term m;
        otp_receive(self, NULL, NULL, OTP_INFINITY, &m);
        sum += otp_small_value(m);
        otp_arena_reset(otp_proc_arena(self));
    }
    report_put(pa->r, sum);
}

static void test_msg_ring_wake(void **state)
{
    (void)state;
    otp_runtime *rt = NULL;
    otp_runtime_config cfg = {.shards = 2, .no_pin = true, .wake_msg_ring = true};
    assert_int_equal(otp_runtime_new(&rt, &cfg), 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    report r;
    report_init(&r);
    ping_arg pa = {.r = &r};
    otp_spawn_opts o1 = {.shard = 1}, o0 = {.shard = 0};
    assert_int_equal(otp_spawn(rt, NULL, pong_main, NULL, &o1, &pa.pong, NULL), 0);
    assert_int_equal(otp_spawn(rt, NULL, ping_main, &pa, &o0, NULL, NULL), 0);
    report_wait(&r, 1);
    assert_int_equal(r.values[0], 10000LL * 9999 / 2);
    stop_rt(rt);
    report_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_stop),        cmocka_unit_test(test_stop_ends_blocked),
        cmocka_unit_test(test_selective_receive), cmocka_unit_test(test_registry),
        cmocka_unit_test(test_register_race),     cmocka_unit_test(test_msg_ring_wake),
        cmocka_unit_test(test_stress_100k),       cmocka_unit_test(test_aliases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
