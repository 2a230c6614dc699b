/* test_gen_server.c — the GenServer behaviour and the thread-side calls:
 * start (linked, registered, init's verdicts), call/cast/info with every
 * return, deferred replies, timeouts and late replies, noproc and crashes
 * during a call, stop, runtime stop, blocked callbacks, calls from plain
 * threads, cross-shard calls, trap_exit and the parent, idle memory, and a
 * stress run with exact replies.
 *
 * cmocka's asserts longjmp, so they are used on the test's own thread only;
 * code running in processes and helper threads records failures with
 * CHECK, and the test thread asserts there were none. Every wait is bounded.
 */
/* otp-test: threads */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "otp.h"

#define WAIT_MS 30000 /* the bound on every wait for something that must happen */

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

/* Timeouts are kept in whole milliseconds of a truncated clock, so one may
 * end up to 1 ms before its time (Erlang rounds up and never ends early);
 * the tests allow that millisecond. */
#define EARLY_US 1000

/* ------------------------------------------------- failures off-thread */

static pthread_mutex_t g_fail_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_failures;
static char g_first_failure[512];

static void check_failed(const char *file, int line, const char *fmt, ...)
{
    pthread_mutex_lock(&g_fail_lock);
    if (g_failures++ == 0) {
        int n = snprintf(g_first_failure, sizeof g_first_failure, "%s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_first_failure + n, sizeof g_first_failure - (size_t)n, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&g_fail_lock);
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            check_failed(__FILE__, __LINE__, "%s", #c);                                            \
    } while (0)
#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                              \
        if (a_ != b_)                                                                              \
            check_failed(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, (long long)a_,      \
                         (long long)b_);                                                           \
    } while (0)
/* t printed as ~w must be `text` */
#define CHECK_TERM(t, text)                                                                        \
    do {                                                                                           \
        char buf_[256];                                                                            \
        term_text((t), buf_, sizeof buf_);                                                         \
        if (strcmp(buf_, (text)) != 0)                                                             \
            check_failed(__FILE__, __LINE__, "%s is %s, not %s", #t, buf_, (text));                \
    } while (0)

static void term_text(otp_term t, char *out, size_t cap)
{
    if (t == OTP_NONE) {
        snprintf(out, cap, "NONE");
        return;
    }
    otp_buf b = {0};
    if (otp_print(&b, t, NULL) < 0)
        snprintf(out, cap, "?");
    else
        snprintf(out, cap, "%.*s", (int)b.len, (const char *)b.data);
    otp_buf_free(&b);
}

static void assert_no_failures(void)
{
    pthread_mutex_lock(&g_fail_lock);
    int n = g_failures;
    char first[512];
    memcpy(first, g_first_failure, sizeof first);
    g_failures = 0;
    pthread_mutex_unlock(&g_fail_lock);
    if (n)
        fail_msg("%d check(s) failed in processes; first: %s", n, first);
}

/* --------------------------------------------------------------- latches */

typedef struct latch {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int count;
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

static void latch_add(latch *l, int n)
{
    pthread_mutex_lock(&l->lock);
    l->count += n;
    pthread_cond_broadcast(&l->cond);
    pthread_mutex_unlock(&l->lock);
}

/* Waits until the count reaches n, at most ms: true if it did. */
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

static int latch_count(latch *l)
{
    pthread_mutex_lock(&l->lock);
    int n = l->count;
    pthread_mutex_unlock(&l->lock);
    return n;
}

/* -------------------------------------------------------------- runtime */

static otp_runtime *start_rt(unsigned shards)
{
    otp_runtime *rt = NULL;
    otp_runtime_config cfg = {.shards = shards, .node_name = "gs@localhost", .no_pin = true};
    assert_int_equal(otp_runtime_new(&rt, &cfg), 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    return rt;
}

static void stop_rt(otp_runtime *rt)
{
    assert_int_equal(otp_runtime_stop(rt), 0);
    otp_runtime_free(rt);
}

/* Runs fn(self, ctx) in a fresh process on `shard` and waits for it. */
typedef void (*body_fn)(otp_proc *self, void *ctx);
typedef struct job {
    body_fn fn;
    void *ctx;
    latch done;
} job;

static void job_main(otp_proc *self, void *arg)
{
    job *j = arg;
    j->fn(self, j->ctx);
    latch_add(&j->done, 1);
}

static void run_in_proc(otp_runtime *rt, int shard, body_fn fn, void *ctx)
{
    job *j = calloc(1, sizeof *j);
    assert_non_null(j);
    j->fn = fn;
    j->ctx = ctx;
    latch_init(&j->done);
    otp_spawn_opts o = {.shard = shard};
    assert_int_equal(otp_spawn(rt, NULL, job_main, j, &o, NULL, NULL), 0);
    bool done = latch_wait(&j->done, 1, WAIT_MS);
    if (!done)
        fail_msg("a test process did not finish within %d ms", WAIT_MS);
    latch_destroy(&j->done);
    free(j);
    assert_no_failures();
}

/* -------------------------------------------------------- the test server
 *
 * Its state is an integer `value` and what the protocol below needs. States
 * are allocated through a tracked list, so a test can tell which servers
 * ended without terminate (and free them: a killed server leaves its state
 * to nobody, as a killed Erlang process runs no terminate).
 */

typedef struct ts_state {
    int64_t value, id;
    int64_t calls, infos, exits;
    otp_from held; /* a caller waiting for a deferred reply */
    bool holding;
    struct ts_state *prev, *next; /* the tracked list */
} ts_state;

static struct {
    pthread_mutex_t lock;
    ts_state *live; /* states whose terminate has not run */
    int inits, terminates, shutdowns;
    char last_reason[256];
    char last_exit[256]; /* the last {'EXIT', _, Reason} a server got, Reason as ~w */
    otp_term init_self;
    unsigned init_shard;
} g_trk = {.lock = PTHREAD_MUTEX_INITIALIZER};

static latch g_held;        /* +1 each time a server holds a caller */
static latch g_blocked_now; /* +1 when a callback is about to block */
static latch g_exits;       /* +1 each time a server handles an 'EXIT' message */

static void trk_reset(void)
{
    pthread_mutex_lock(&g_trk.lock);
    g_trk.inits = g_trk.terminates = g_trk.shutdowns = 0;
    g_trk.last_reason[0] = g_trk.last_exit[0] = 0;
    pthread_mutex_unlock(&g_trk.lock);
    g_held.count = g_blocked_now.count = g_exits.count = 0;
}

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* Frees the states of servers that never ran terminate; returns how many.
 * Called after the runtime stopped, every shard thread joined. Under TSan
 * the states are counted but not freed: about one run in eight TSan
 * reports the free as racing with the killed server's last callback, which
 * ran on a fiber whose switches it does not always connect to the join
 * (nothing can still run then; the free is only there for LeakSanitizer). */
static int trk_free_orphans(void)
{
    pthread_mutex_lock(&g_trk.lock);
    int n = 0;
    while (g_trk.live) {
        ts_state *s = g_trk.live;
        g_trk.live = s->next;
#ifndef UNDER_TSAN
        free(s);
#endif
        n++;
    }
    pthread_mutex_unlock(&g_trk.lock);
    return n;
}

static int trk_get(int *field)
{
    pthread_mutex_lock(&g_trk.lock);
    int v = *field;
    pthread_mutex_unlock(&g_trk.lock);
    return v;
}

static void trk_text(char *field, char *out, size_t cap)
{
    pthread_mutex_lock(&g_trk.lock);
    snprintf(out, cap, "%s", field);
    pthread_mutex_unlock(&g_trk.lock);
}

static int64_t int_of(otp_term t)
{
    int64_t v = INT64_MIN;
    otp_get_int64(t, &v);
    return v;
}

/* init args: N | {N, Id} | {stop, Reason} | ignore | {call_in_init, Server} */
static int ts_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    otp_term v[2];
    pthread_mutex_lock(&g_trk.lock);
    g_trk.inits++;
    g_trk.init_self = otp_self(self);
    g_trk.init_shard = otp_proc_shard(self);
    pthread_mutex_unlock(&g_trk.lock);
    if (otp_match("{stop, R}", args, v, 1) == 0) {
        *reason = v[0];
        return OTP_GS_INIT_STOP;
    }
    if (args == otp_atom("ignore"))
        return OTP_GS_INIT_IGNORE;
    ts_state *s = calloc(1, sizeof *s);
    if (!s) {
        *reason = otp_atom("enomem");
        return OTP_GS_INIT_STOP;
    }
    if (otp_is_integer(args)) {
        s->value = int_of(args);
    } else if (otp_match("{call_in_init, S}", args, v, 1) == 0) {
        /* init may block: it is a callback like the others */
        otp_term r;
        CHECK_INT(otp_gen_server_call(self, v[0], otp_atom("get"), 5000, &r), 0);
        s->value = int_of(r) + 1;
    } else if (otp_match("{N, Id}", args, v, 2) == 0) {
        s->value = int_of(v[0]);
        s->id = int_of(v[1]);
    } else {
        CHECK(!"init args");
    }
    pthread_mutex_lock(&g_trk.lock);
    s->next = g_trk.live;
    if (s->next)
        s->next->prev = s;
    g_trk.live = s;
    pthread_mutex_unlock(&g_trk.lock);
    *state = s;
    return OTP_GS_INIT_OK;
}

static void ts_terminate(otp_proc *self, otp_term reason, void *state)
{
    (void)self;
    ts_state *s = state;
    char text[256];
    term_text(reason, text, sizeof text);
    pthread_mutex_lock(&g_trk.lock);
    g_trk.terminates++;
    if (reason == OTP_ATOM_SHUTDOWN)
        g_trk.shutdowns++;
    snprintf(g_trk.last_reason, sizeof g_trk.last_reason, "%s", text);
    if (s) {
        if (s->prev)
            s->prev->next = s->next;
        else
            g_trk.live = s->next;
        if (s->next)
            s->next->prev = s->prev;
    }
    pthread_mutex_unlock(&g_trk.lock);
    free(s);
}

/* The pid a from names (to notify the caller itself). */
static otp_term from_pid(otp_proc *self, const otp_from *f)
{
    return otp_pid(otp_proc_arena(self), f->pid_node, f->pid_id, f->pid_serial, f->pid_creation);
}

static otp_gs_ret ts_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    ts_state *s = state;
    otp_arena *a = otp_proc_arena(self);
    otp_term v[4];
    s->calls++;
    if (req == otp_atom("get"))
        return otp_gs_reply(otp_int(a, s->value));
    if (req == otp_atom("calls"))
        return otp_gs_reply(otp_int(a, s->calls));
    if (req == otp_atom("infos"))
        return otp_gs_reply(otp_int(a, s->infos));
    if (req == otp_atom("exits"))
        return otp_gs_reply(otp_int(a, s->exits));
    if (req == otp_atom("noreply"))
        return otp_gs_noreply(); /* never answers */
    if (req == otp_atom("self_call")) {
        otp_term r;
        return otp_gs_reply(otp_int(a, otp_gen_server_call(self, otp_self(self), req, 100, &r)));
    }
    if (req == otp_atom("hold")) {
        s->held = *from;
        s->holding = true;
        latch_add(&g_held, 1);
        return otp_gs_noreply();
    }
    if (otp_match("{add, N}", req, v, 1) == 0) {
        s->value += int_of(v[0]);
        return otp_gs_reply(otp_int(a, s->value));
    }
    if (otp_match("{mul, X}", req, v, 1) == 0)
        return otp_gs_reply(otp_int(a, int_of(v[0]) * 3 + s->id));
    if (otp_match("{stop, R}", req, v, 1) == 0)
        return otp_gs_stop(v[0]);
    if (otp_match("{stop_reply, R, Reply}", req, v, 2) == 0)
        return otp_gs_stop_reply(v[0], v[1]);
    if (otp_match("{hand_to, Pid}", req, v, 1) == 0) {
        /* otp_from is a plain value: it travels as bytes */
        otp_send(self, v[0], OTP_TUPLE(a, otp_atom("from"), otp_binary(a, from, sizeof *from)));
        return otp_gs_noreply();
    }
    if (otp_match("{late, Ms, V}", req, v, 2) == 0) {
        /* answer V after Ms, then tell the caller the answer went out */
        otp_send_after(self, (uint64_t)int_of(v[0]), otp_self(self),
                       OTP_TUPLE(a, otp_atom("late_fire"), v[1], otp_binary(a, from, sizeof *from)),
                       NULL);
        return otp_gs_noreply();
    }
    if (otp_match("{sleep, Ms}", req, v, 1) == 0) {
        latch_add(&g_blocked_now, 1);
        otp_sleep(self, (uint64_t)int_of(v[0]));
        return otp_gs_reply(otp_atom("slept"));
    }
    if (otp_match("{call, S, Req, T}", req, v, 3) == 0) {
        /* a callback that blocks in a call of its own */
        otp_term r = OTP_NONE;
        latch_add(&g_blocked_now, 1);
        int rc = otp_gen_server_call(self, v[0], v[1], (uint64_t)int_of(v[2]), &r);
        return otp_gs_reply(OTP_TUPLE(a, otp_small(rc), r == OTP_NONE ? otp_atom("none") : r));
    }
    if (otp_match("{link, P}", req, v, 1) == 0)
        return otp_gs_reply(otp_small(otp_link(self, v[0])));
    if (otp_match("{echo, T}", req, v, 1) == 0)
        return otp_gs_reply(OTP_TUPLE(a, otp_atom("echoed"), v[0]));
    if (otp_is_tuple(req) && otp_tuple_arity(req) >= 1 &&
        otp_tuple_get(req, 0) == otp_atom("mirror"))
        return otp_gs_reply(req); /* the request itself, whatever its size */
    if (otp_match("{reply_now, V}", req, v, 1) == 0) {
        /* answered from inside the callback, which then says noreply */
        CHECK_INT(otp_gen_server_reply(self, from, v[0]), 0);
        return otp_gs_noreply();
    }
    if (otp_match("{reply_twice, V}", req, v, 1) == 0) {
        /* both reach the caller's queue before its call returns, so the
         * second stays there as a stray message, as in Erlang (OTP 25:
         * gen_server:reply twice leaves {[alias | Ref], again} behind) */
        CHECK_INT(otp_gen_server_reply(self, from, v[0]), 0);
        CHECK_INT(otp_gen_server_reply(self, from, otp_atom("again")), 0);
        return otp_gs_noreply();
    }
    check_failed(__FILE__, __LINE__, "unexpected call");
    return otp_gs_reply(otp_atom("unexpected"));
}

static otp_gs_ret ts_cast(otp_proc *self, otp_term msg, void *state)
{
    ts_state *s = state;
    otp_term v[2];
    if (otp_match("{add, N}", msg, v, 1) == 0) {
        s->value += int_of(v[0]);
        return otp_gs_noreply();
    }
    if (otp_match("{stop, R}", msg, v, 1) == 0)
        return otp_gs_stop(v[0]);
    if (msg == otp_atom("release")) {
        /* answer the held caller with the value, from the server itself */
        CHECK(s->holding);
        if (s->holding)
            CHECK_INT(otp_gen_server_reply(self, &s->held, otp_int(otp_proc_arena(self), s->value)),
                      0);
        s->holding = false;
        return otp_gs_noreply();
    }
    check_failed(__FILE__, __LINE__, "unexpected cast");
    return otp_gs_noreply();
}

static otp_gs_ret ts_info(otp_proc *self, otp_term msg, void *state)
{
    ts_state *s = state;
    otp_term v[2];
    s->infos++;
    if (otp_match("{add, N}", msg, v, 1) == 0) {
        s->value += int_of(v[0]);
        return otp_gs_noreply();
    }
    if (otp_match("{stop, R}", msg, v, 1) == 0)
        return otp_gs_stop(v[0]);
    if (otp_match("{late_fire, V, From}", msg, v, 2) == 0) {
        otp_from f;
        size_t len = 0;
        const uint8_t *bytes = otp_binary_data(v[1], &len);
        CHECK_INT(len, sizeof f);
        memcpy(&f, bytes, sizeof f);
        CHECK_INT(otp_gen_server_reply(self, &f, v[0]), 0);
        otp_send(self, from_pid(self, &f),
                 OTP_TUPLE(otp_proc_arena(self), otp_atom("late_sent"), v[0]));
        return otp_gs_noreply();
    }
    if (otp_match("{'EXIT', _, R}", msg, v, 1) == 0) {
        char text[256];
        term_text(v[0], text, sizeof text);
        pthread_mutex_lock(&g_trk.lock);
        snprintf(g_trk.last_exit, sizeof g_trk.last_exit, "%s", text);
        pthread_mutex_unlock(&g_trk.lock);
        s->exits++;
        latch_add(&g_exits, 1);
        return otp_gs_noreply();
    }
    return otp_gs_noreply(); /* anything else: counted */
}

static const otp_gen_server_ops ts_ops = {
    .init = ts_init,
    .handle_call = ts_call,
    .handle_cast = ts_cast,
    .handle_info = ts_info,
    .terminate = ts_terminate,
};

/* Starts a test server from the test thread. */
static otp_term start_ts(otp_runtime *rt, int shard, otp_term name, int64_t value)
{
    otp_gen_server_opts o = {.shard = shard, .name = name};
    otp_term pid = OTP_NONE;
    assert_int_equal(otp_gen_server_start(rt, NULL, &ts_ops, otp_small(value), &o, &pid, NULL), 0);
    assert_true(otp_is_pid(pid));
    return pid;
}

/* A call from the test thread that must succeed; the reply as an integer. */
static int64_t tcall_int(otp_runtime *rt, otp_term server, const char *req_text)
{
    otp_arena *a = otp_arena_new();
    otp_term reply = OTP_NONE;
    int rc = otp_runtime_call(rt, server, otp_parse_str(a, req_text), 5000, a, &reply);
    int64_t v = int_of(reply);
    otp_arena_free(a);
    assert_int_equal(rc, 0);
    return v;
}

/* Waits until a server process is gone, from inside a process. */
static bool wait_down(otp_proc *self, otp_term pid, otp_term *reason)
{
    otp_term ref, msg, v[1];
    if (otp_monitor(self, pid, &ref) < 0)
        return false;
    otp_arena *a = otp_proc_arena(self);
    for (;;) {
        if (otp_receive(self, NULL, NULL, WAIT_MS, &msg) < 0)
            return false;
        if (otp_match("{'DOWN', Ref, process, _, R}", msg, v, 1) == 0 ||
            otp_match("{'DOWN', _, process, _, R}", msg, v, 1) == 0) {
            if (!otp_exact_eq(otp_tuple_get(msg, 1), ref))
                continue;
            if (reason)
                *reason = otp_copy(a, v[0]);
            return true;
        }
    }
}

/* A process's mailbox is empty (nothing arrived that it did not take). */
static size_t mailbox_len(otp_proc *self)
{
    otp_proc_info info;
    if (otp_process_info(otp_proc_runtime(self), self, otp_self(self), &info) < 0)
        return SIZE_MAX;
    return info.message_queue_len;
}

/* ====================================================== the gs_atoms race */

/* ================================================================ start */

typedef struct start_ctx {
    otp_runtime *rt;
    otp_term pid;
} start_ctx;

static void start_from_proc(otp_proc *self, void *arg)
{
    start_ctx *c = arg;
    otp_runtime *rt = c->rt;
    otp_term pid, other, reason = OTP_NONE;
    otp_proc_info info;
    /* start_link, registered, on the other shard */
    otp_gen_server_opts o = {.shard = 1, .link = true, .name = otp_atom("gs_linked")};
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(5), &o, &pid, &reason), 0);
    CHECK(otp_whereis(rt, otp_atom("gs_linked")) == pid);
    CHECK_INT(otp_process_info(rt, self, pid, &info), 0);
    CHECK_INT(info.links, 1);
    CHECK(info.registered_name == otp_atom("gs_linked"));
    CHECK_INT(otp_process_info(rt, self, otp_self(self), &info), 0);
    CHECK_INT(info.links, 1);
    /* the name is taken: nothing starts, init does not run */
    int inits = trk_get(&g_trk.inits);
    o.link = false;
    other = OTP_ATOM_OK;
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(6), &o, &other, NULL), -OTP_EEXIST);
    CHECK_INT(trk_get(&g_trk.inits), inits);
    /* unlinked, unregistered, on our shard */
    otp_gen_server_opts u = {.shard = OTP_SHARD_ANY};
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(7), &u, &other, NULL), 0);
    CHECK_INT(otp_process_info(rt, self, other, &info), 0);
    CHECK_INT(info.links, 0);
    CHECK(info.registered_name == OTP_NONE);
    CHECK_INT(otp_pid_parts(other, &(otp_term){0}, &(uint32_t){0}, &(uint32_t){0}, &(uint32_t){0}),
              0);
    pthread_mutex_lock(&g_trk.lock);
    CHECK(g_trk.init_self == other); /* init ran in the server, before start returned */
    CHECK_INT(g_trk.init_shard, otp_proc_shard(self));
    pthread_mutex_unlock(&g_trk.lock);
    otp_term r;
    CHECK_INT(otp_gen_server_call(self, otp_atom("gs_linked"), otp_atom("get"), 1000, &r), 0);
    CHECK_INT(int_of(r), 5);
    CHECK_INT(otp_gen_server_call(self, other, otp_atom("get"), 1000, &r), 0);
    CHECK_INT(int_of(r), 7);
    /* init that blocks in a call */
    otp_term third;
    otp_arena *a = otp_proc_arena(self);
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops,
                                   OTP_TUPLE(a, otp_atom("call_in_init"), otp_atom("gs_linked")),
                                   &u, &third, NULL),
              0);
    CHECK_INT(otp_gen_server_call(self, third, otp_atom("get"), 1000, &r), 0);
    CHECK_INT(int_of(r), 6);
    /* stop the linked one with normal: no exit signal kills us */
    CHECK_INT(otp_gen_server_stop(self, pid, OTP_ATOM_NORMAL, 1000), 0);
    CHECK_INT(otp_gen_server_stop(self, other, OTP_ATOM_NORMAL, 1000), 0);
    CHECK_INT(otp_gen_server_stop(self, third, OTP_ATOM_NORMAL, 1000), 0);
    CHECK(otp_whereis(rt, otp_atom("gs_linked")) == OTP_NONE);
    c->pid = pid;
}

static void test_start_variants(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    /* from a thread: unlinked, unregistered and registered */
    otp_term a = start_ts(rt, 0, OTP_NONE, 1);
    pthread_mutex_lock(&g_trk.lock);
    assert_true(g_trk.init_self == a);
    assert_int_equal(g_trk.init_shard, 0);
    pthread_mutex_unlock(&g_trk.lock);
    otp_term name = otp_atom("gs_named");
    otp_term b = start_ts(rt, 1, name, 2);
    assert_true(otp_whereis(rt, name) == b);
    otp_proc_info info;
    assert_int_equal(otp_process_info(rt, NULL, b, &info), 0);
    assert_true(info.registered_name == name);
    assert_int_equal(info.links, 0);
    /* the name is taken */
    otp_gen_server_opts o = {.shard = 0, .name = name};
    otp_term pid = OTP_ATOM_OK;
    int inits = trk_get(&g_trk.inits);
    assert_int_equal(otp_gen_server_start(rt, NULL, &ts_ops, otp_small(3), &o, &pid, NULL),
                     -OTP_EEXIST);
    assert_int_equal(trk_get(&g_trk.inits), inits);
    /* a thread has no process to link to */
    otp_gen_server_opts l = {.shard = 0, .link = true};
    assert_int_equal(otp_gen_server_start(rt, NULL, &ts_ops, otp_small(3), &l, &pid, NULL),
                     -OTP_EBADARG);
    assert_int_equal(tcall_int(rt, a, "get"), 1);
    assert_int_equal(tcall_int(rt, name, "get"), 2);
    /* from a process */
    start_ctx c = {rt, OTP_NONE};
    run_in_proc(rt, 0, start_from_proc, &c);
    assert_int_equal(trk_get(&g_trk.terminates), 3);
    stop_rt(rt);
    assert_int_equal(trk_get(&g_trk.terminates), 5);
    assert_int_equal(trk_free_orphans(), 0);
}

/* init's verdicts: stop (with a reason) and ignore. */
static void init_verdicts_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term pid = OTP_ATOM_OK, reason = OTP_NONE;
    otp_gen_server_opts o = {.shard = 1, .name = otp_atom("gs_v")};
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_parse_str(a, "{stop, {bad, 42}}"), &o,
                                   &pid, &reason),
              -OTP_EEXIT);
    CHECK(pid == OTP_NONE);
    CHECK_TERM(reason, "{bad,42}");
    pid = OTP_ATOM_OK;
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_atom("ignore"), &o, &pid, &reason), 1);
    CHECK(pid == OTP_NONE);
    /* a linked start whose init stops with normal: we are not hurt */
    o.link = true;
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_parse_str(a, "{stop, normal}"), &o, &pid,
                                   &reason),
              -OTP_EEXIT);
    CHECK(reason == OTP_ATOM_NORMAL);
    /* after a failed init the name is free again, and init's process gone */
    o.link = false;
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(1), &o, &pid, NULL), 0);
    CHECK_INT(otp_gen_server_stop(self, pid, OTP_ATOM_NORMAL, 1000), 0);
}

static void test_init_verdicts(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    otp_arena *a = otp_arena_new();
    otp_term pid = OTP_ATOM_OK, reason = OTP_NONE;
    otp_gen_server_opts o = {.shard = 1};
    /* from a thread an atom reason comes back as is... */
    assert_int_equal(otp_gen_server_start(rt, NULL, &ts_ops, otp_parse_str(a, "{stop, nope}"), &o,
                                          &pid, &reason),
                     -OTP_EEXIT);
    assert_true(pid == OTP_NONE);
    assert_true(reason == otp_atom("nope"));
    /* ...and another term as OTP_NONE (a thread has no arena to give) */
    reason = OTP_ATOM_OK;
    assert_int_equal(otp_gen_server_start(rt, NULL, &ts_ops, otp_parse_str(a, "{stop, {bad, 1}}"),
                                          &o, &pid, &reason),
                     -OTP_EEXIT);
    assert_true(reason == OTP_NONE);
    assert_int_equal(otp_gen_server_start(rt, NULL, &ts_ops, otp_atom("ignore"), &o, &pid, NULL),
                     1);
    assert_true(pid == OTP_NONE);
    run_in_proc(rt, 0, init_verdicts_proc, rt);
    /* terminate never runs for a server whose init did not succeed */
    assert_int_equal(trk_get(&g_trk.terminates), 1);
    otp_arena_free(a);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* Was a bug, kept as a regression test: after start returns -OTP_EEXIT (init stop) or 1 (ignore),
 * the server may still hold its registered name: gs_init acks the starter (start_done) before
 * otp__proc_exit_self releases the name, so a restart under the same name on another shard, right
 * away, can get -OTP_EEXIST (0.1% to 9% of tries here). Erlang's gen_server:init_it unregisters the
 * name before proc_lib:init_ack, so a supervisor's immediate restart succeeds. Racy by nature: 5000
 * tries make it show in nearly every run. */
#define NRESTART 5000
static void test_init_stop_name_still_taken(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    otp_arena *a = otp_arena_new();
    otp_term name = otp_atom("gs_restart");
    otp_term verdicts[2] = {otp_parse_str(a, "{stop, failed}"), otp_atom("ignore")};
    int taken = 0;
    for (int i = 0; i < NRESTART; i++) {
        otp_gen_server_opts o = {.shard = i & 1, .name = name};
        otp_term pid;
        int rc = otp_gen_server_start(rt, NULL, &ts_ops, verdicts[i / 2 % 2], &o, &pid, NULL);
        assert_true(rc == -OTP_EEXIT || rc == 1 || rc == -OTP_EEXIST);
        if (rc == -OTP_EEXIST) { /* the last round's failed server, still */
            taken++;
            continue;
        }
        /* the retry on the other shard: nothing orders it after the exit */
        o.shard = 1 - (i & 1);
        rc = otp_gen_server_start(rt, NULL, &ts_ops, otp_small(i), &o, &pid, NULL);
        if (rc == -OTP_EEXIST) {
            taken++;
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(otp_runtime_stop_server(rt, pid, OTP_ATOM_NORMAL, 5000), 0);
    }
    otp_arena_free(a);
    stop_rt(rt);
    trk_free_orphans();
    if (taken)
        fail_msg("the name was still taken after a failed init in %d of %d restarts", taken,
                 NRESTART);
}

/* ====================================================== call, cast, info */

static void call_cast_info_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term r, reason;
    for (int shard = 0; shard < 2; shard++) {
        otp_gen_server_opts o = {.shard = shard};
        otp_term s;
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(10), &o, &s, NULL), 0);
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("get"), OTP_GS_DEFAULT_TIMEOUT, &r), 0);
        CHECK_INT(int_of(r), 10);
        CHECK_INT(otp_gen_server_call(self, s, otp_parse_str(a, "{add, 5}"), 1000, &r), 0);
        CHECK_INT(int_of(r), 15);
        /* casts and infos are handled in order, before a later call */
        for (int i = 0; i < 10; i++) {
            CHECK_INT(otp_gen_server_cast(self, s, otp_parse_str(a, "{add, 1}")), 0);
            CHECK_INT(otp_send(self, s, otp_parse_str(a, "{add, 100}")), 0);
            CHECK_INT(otp_send(self, s, otp_atom("whatever")), 0);
        }
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("get"), 1000, &r), 0);
        CHECK_INT(int_of(r), 15 + 10 * 101);
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("infos"), 1000, &r), 0);
        CHECK_INT(int_of(r), 20);
        /* a big reply and request travel whole */
        char big[4096];
        memset(big, 'x', sizeof big);
        otp_term bin = otp_binary(a, big, sizeof big);
        CHECK_INT(otp_gen_server_call(self, s,
                                      OTP_TUPLE(a, otp_atom("stop_reply"), OTP_ATOM_NORMAL,
                                                OTP_TUPLE(a, otp_atom("big"), bin)),
                                      1000, &r),
                  0);
        /* stop with a reply: we got the reply, then it is gone */
        CHECK(otp_exact_eq(r, OTP_TUPLE(a, otp_atom("big"), bin)));
        CHECK(wait_down(self, s, &reason));
        CHECK(reason == OTP_ATOM_NORMAL || reason == OTP_ATOM_NOPROC);
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("get"), 1000, &r), -OTP_ENOPROC);

        /* stop from a call without a reply: the caller gets the reason */
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(1), &o, &s, NULL), 0);
        CHECK_INT(otp_gen_server_call(self, s, otp_parse_str(a, "{stop, {crashed, 7}}"), 1000, &r),
                  -OTP_EEXIT);
        CHECK_TERM(r, "{crashed,7}");
        /* stop from a cast and from an info */
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(1), &o, &s, NULL), 0);
        otp_term ref;
        CHECK_INT(otp_monitor(self, s, &ref), 0);
        CHECK_INT(otp_gen_server_cast(self, s, otp_parse_str(a, "{stop, by_cast}")), 0);
        CHECK_INT(otp_receive(self, NULL, NULL, WAIT_MS, &r), 0);
        CHECK_TERM(otp_tuple_get(r, 4), "by_cast");
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(1), &o, &s, NULL), 0);
        CHECK_INT(otp_monitor(self, s, &ref), 0);
        CHECK_INT(otp_send(self, s, otp_parse_str(a, "{stop, {by_info, 1}}")), 0);
        CHECK_INT(otp_receive(self, NULL, NULL, WAIT_MS, &r), 0);
        CHECK_TERM(otp_tuple_get(r, 4), "{by_info,1}");
        /* a cast to a dead pid is dropped silently */
        CHECK_INT(otp_gen_server_cast(self, s, otp_atom("nothing")), 0);
        otp_arena_reset(a);
    }
    /* calling oneself is refused, not a deadlock */
    CHECK_INT(otp_gen_server_call(self, otp_self(self), otp_atom("get"), 100, &r), -OTP_EBADARG);
    CHECK_INT(mailbox_len(self), 0);
}

static void test_call_cast_info(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, call_cast_info_proc, rt);
    /* 2 x (stop_reply, stop from call, from cast, from info) */
    assert_int_equal(trk_get(&g_trk.terminates), 8);
    char last[256];
    trk_text(g_trk.last_reason, last, sizeof last);
    assert_string_equal(last, "{by_info,1}");
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* Missing callbacks: a call or cast with no handler ends the server with
 * undef; an info without a handler is dropped. */
static int bare_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    (void)self;
    (void)args;
    (void)reason;
    *state = NULL;
    return OTP_GS_INIT_OK;
}
static const otp_gen_server_ops bare_ops = {.init = bare_init};

static void missing_callbacks_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_term s, r, reason;
    otp_gen_server_opts o = {.shard = 1};
    CHECK_INT(otp_gen_server_start(rt, self, &bare_ops, OTP_NIL, &o, &s, NULL), 0);
    CHECK_INT(otp_send(self, s, otp_atom("dropped")), 0);
    CHECK_INT(otp_gen_server_call(self, s, otp_atom("x"), 1000, &r), -OTP_EEXIT);
    CHECK(r == otp_atom("undef"));
    CHECK_INT(otp_gen_server_start(rt, self, &bare_ops, OTP_NIL, &o, &s, NULL), 0);
    CHECK_INT(otp_gen_server_cast(self, s, otp_atom("x")), 0);
    CHECK(wait_down(self, s, &reason));
    CHECK(reason == otp_atom("undef") || reason == OTP_ATOM_NOPROC);
}

static void test_missing_callbacks(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, missing_callbacks_proc, rt);
    stop_rt(rt);
}

/* A message shaped almost like a call is an ordinary message. */
static void not_quite_call_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term s, r;
    otp_gen_server_opts o = {.shard = 1};
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(0), &o, &s, NULL), 0);
    CHECK_INT(otp_send(self, s, otp_parse_str(a, "{'$gen_call', notfrom, get}")), 0);
    CHECK_INT(otp_send(self, s, otp_parse_str(a, "{'$gen_cast'}")), 0);
    CHECK_INT(otp_gen_server_call(self, s, otp_atom("infos"), 1000, &r), 0);
    CHECK_INT(int_of(r), 2);
    CHECK_INT(otp_gen_server_stop(self, s, OTP_ATOM_NORMAL, 1000), 0);
}

static void test_not_quite_call(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, not_quite_call_proc, rt);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* ====================================================== deferred replies */

typedef struct defer_ctx {
    otp_runtime *rt;
    otp_term server;
    int64_t got;
    int rc;
    latch done;
} defer_ctx;

static void hold_caller(otp_proc *self, void *arg)
{
    defer_ctx *c = arg;
    otp_term r = OTP_NONE;
    c->rc = otp_gen_server_call(self, c->server, otp_atom("hold"), 10000, &r);
    c->got = int_of(r);
    latch_add(&c->done, 1);
}

/* the helper that gets a from and replies in the server's stead */
static void replier_main(otp_proc *self, void *arg)
{
    (void)arg;
    otp_term msg, v[1];
    if (otp_receive(self, NULL, NULL, WAIT_MS, &msg) < 0) {
        CHECK(!"replier got nothing");
        return;
    }
    CHECK_INT(otp_match("{from, B}", msg, v, 1), 0);
    size_t len = 0;
    const uint8_t *bytes = otp_binary_data(v[0], &len);
    CHECK_INT(len, sizeof(otp_from));
    otp_from f;
    memcpy(&f, bytes, sizeof f);
    CHECK_INT(otp_gen_server_reply(self, &f, otp_parse_str(otp_proc_arena(self), "{helped, 7}")),
              0);
}

static void deferred_other_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    for (int shard = 0; shard < 2; shard++) {
        otp_term s, helper, r;
        otp_gen_server_opts o = {.shard = shard};
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(0), &o, &s, NULL), 0);
        otp_spawn_opts so = {.shard = 1 - shard};
        CHECK_INT(otp_spawn(rt, self, replier_main, NULL, &so, &helper, NULL), 0);
        CHECK_INT(otp_gen_server_call(self, s, OTP_TUPLE(a, otp_atom("hand_to"), helper), 5000, &r),
                  0);
        CHECK_TERM(r, "{helped,7}");
        /* the call left no monitor behind on either side */
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("get"), 1000, &r), 0);
        otp_proc_info info;
        CHECK_INT(otp_process_info(rt, self, s, &info), 0);
        CHECK_INT(info.monitored_by, 0);
        CHECK_INT(otp_process_info(rt, self, otp_self(self), &info), 0);
        CHECK_INT(info.monitors, 0);
        CHECK_INT(info.message_queue_len, 0);
        CHECK_INT(otp_gen_server_stop(self, s, OTP_ATOM_NORMAL, 1000), 0);
    }
}

static void test_deferred_reply(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    /* from the server itself: a caller is held until a cast releases it */
    for (int shard = 0; shard < 2; shard++) {
        defer_ctx c = {.rt = rt, .server = start_ts(rt, shard, OTP_NONE, 41)};
        latch_init(&c.done);
        int held = latch_count(&g_held);
        otp_spawn_opts o = {.shard = 1 - shard};
        assert_int_equal(otp_spawn(rt, NULL, hold_caller, &c, &o, NULL, NULL), 0);
        assert_true(latch_wait(&g_held, held + 1, WAIT_MS));
        /* the server keeps serving while a caller is held */
        assert_int_equal(tcall_int(rt, c.server, "{add, 1}"), 42);
        assert_int_equal(latch_count(&c.done), 0);
        assert_int_equal(otp_runtime_cast(rt, c.server, otp_atom("release")), 0);
        assert_true(latch_wait(&c.done, 1, WAIT_MS));
        assert_int_equal(c.rc, 0);
        assert_int_equal(c.got, 42);
        otp_proc_info info;
        assert_int_equal(otp_process_info(rt, NULL, c.server, &info), 0);
        assert_int_equal(info.monitored_by, 0);
        latch_destroy(&c.done);
    }
    /* from another process, given the from as bytes */
    run_in_proc(rt, 0, deferred_other_proc, rt);
    assert_no_failures();
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* ============================================================== timeouts */

static bool is_late_sent(otp_term msg, void *ctx)
{
    (void)ctx;
    return otp_tuple_arity(msg) == 2 && otp_tuple_get(msg, 0) == otp_atom("late_sent");
}

static void timeout_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    for (int shard = 0; shard < 2; shard++) {
        otp_term s, r = OTP_NONE, msg;
        otp_gen_server_opts o = {.shard = shard};
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(0), &o, &s, NULL), 0);
        /* never answered */
        uint64_t t0 = now_us();
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("noreply"), 50, &r), -OTP_ETIMEDOUT);
        uint64_t took = now_us() - t0;
        if (took + EARLY_US < 50000 || took >= 5000000)
            check_failed(__FILE__, __LINE__, "a 50 ms call timeout took %llu us",
                         (unsigned long long)took);
        /* answered at 150 ms, after we gave up at 30 ms: the late reply is
         * dropped, and the server's note that follows it is all we get */
        CHECK_INT(otp_gen_server_call(self, s, otp_parse_str(a, "{late, 150, first}"), 30, &r),
                  -OTP_ETIMEDOUT);
        CHECK_INT(otp_receive(self, is_late_sent, NULL, WAIT_MS, &msg), 0);
        CHECK_TERM(msg, "{late_sent,first}");
        CHECK_INT(mailbox_len(self), 0);
        CHECK_INT(otp_receive(self, NULL, NULL, 0, &msg), -OTP_ETIMEDOUT);
        /* a late reply to an old call is not the answer to the next one */
        CHECK_INT(otp_gen_server_call(self, s, otp_parse_str(a, "{late, 100, old}"), 20, &r),
                  -OTP_ETIMEDOUT);
        CHECK_INT(otp_gen_server_call(self, s, otp_parse_str(a, "{late, 300, new}"), 5000, &r), 0);
        CHECK_TERM(r, "new");
        for (int i = 0; i < 2; i++) {
            CHECK_INT(otp_receive(self, is_late_sent, NULL, WAIT_MS, &msg), 0);
        }
        CHECK_INT(mailbox_len(self), 0);
        /* nothing left on the server either: every monitor of ours is gone */
        otp_proc_info info;
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("get"), 1000, &r), 0);
        CHECK_INT(otp_process_info(rt, self, s, &info), 0);
        CHECK_INT(info.monitored_by, 0);
        CHECK_INT(otp_process_info(rt, self, otp_self(self), &info), 0);
        CHECK_INT(info.monitors, 0);
        /* the server dies after we gave up on it: no DOWN comes to us */
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("hold"), 10, &r), -OTP_ETIMEDOUT);
        CHECK_INT(otp_gen_server_stop(self, s, otp_atom("after_timeout"), 1000), 0);
        CHECK_INT(otp_receive(self, NULL, NULL, 50, &msg), -OTP_ETIMEDOUT);
        CHECK_INT(mailbox_len(self), 0);
        otp_arena_reset(a);
    }
}

static void test_call_timeout(void **state)
{
    (void)state;
    trk_reset();
    assert_int_equal(OTP_GS_DEFAULT_TIMEOUT, 5000);
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, timeout_proc, rt);
    /* and from a thread */
    otp_term s = start_ts(rt, 1, OTP_NONE, 0);
    otp_arena *a = otp_arena_new();
    otp_term r = OTP_ATOM_OK;
    uint64_t t0 = now_us();
    assert_int_equal(otp_runtime_call(rt, s, otp_atom("noreply"), 40, a, &r), -OTP_ETIMEDOUT);
    assert_true(now_us() - t0 + EARLY_US >= 40000);
    assert_true(r == OTP_NONE);
    assert_int_equal(tcall_int(rt, s, "get"), 0);
    otp_arena_free(a);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* Requests and replies travel in a small signal block when they fit and
 * in one sized to them when they do not: every size must arrive whole. */
static void call_sizes_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    static uint8_t bytes[4096];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 7);
    for (int shard = 0; shard < 2; shard++) {
        otp_term s, r;
        otp_gen_server_opts o = {.shard = shard};
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(0), &o, &s, NULL), 0);
        for (size_t n = 0; n <= 64; n = n ? n * 2 : 1) {
            otp_term list = OTP_NIL;
            for (size_t i = n; i-- > 0;)
                list = otp_cons(a, otp_small((int64_t)i), list);
            otp_term t = OTP_TUPLE(a, list, otp_binary(a, bytes, n), otp_binary(a, bytes, n * 64),
                                   otp_float(a, (double)n / 3), otp_self(self));
            CHECK_INT(otp_gen_server_call(self, s, OTP_TUPLE(a, otp_atom("echo"), t), 5000, &r), 0);
            if (!otp_exact_eq(r, OTP_TUPLE(a, otp_atom("echoed"), t)))
                check_failed(__FILE__, __LINE__, "echo of size %zu came back different", n);
            otp_arena_reset(a);
        }
        CHECK_INT(otp_gen_server_stop(self, s, OTP_ATOM_NORMAL, 1000), 0);
    }
}

/* Requests and replies on both sides of the flat fast path (an immediate,
 * or a tuple of up to four immediates, written straight into the signal)
 * and the replies a callback sends itself, to callers on the server's
 * shard and on the other one. */
static void call_flat_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term m = otp_atom("mirror");
    for (int shard = 0; shard < 2; shard++) {
        otp_term s, r;
        otp_gen_server_opts o = {.shard = shard};
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(0), &o, &s, NULL), 0);
        otp_term reqs[] = {
            OTP_TUPLE(a, m),
            OTP_TUPLE(a, m, otp_small(1)),
            OTP_TUPLE(a, m, otp_atom("a"), otp_self(self)),
            OTP_TUPLE(a, m, otp_small(-1), OTP_NIL, otp_small(OTP_SMALL_MAX)),       /* 4: flat */
            OTP_TUPLE(a, m, otp_small(1), otp_small(2), otp_small(3), otp_small(4)), /* 5 */
            OTP_TUPLE(a, m, otp_string(a, "str")),
            OTP_TUPLE(a, m, otp_float(a, 1.5)),
            OTP_TUPLE(a, m, otp_int(a, INT64_MAX)),
            OTP_TUPLE(a, m, OTP_TUPLE(a, otp_small(1))),
        };
        for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
            CHECK_INT(otp_gen_server_call(self, s, reqs[i], 5000, &r), 0);
            if (!otp_exact_eq(r, reqs[i]))
                check_failed(__FILE__, __LINE__, "mirror %zu came back different", i);
        }
        otp_term vals[] = {otp_small(7), OTP_TUPLE(a, otp_atom("ok"), otp_small(7)),
                           otp_list(a, 2, otp_small(1), otp_small(2)),
                           otp_binary(a, (const uint8_t *)"0123456789", 10)};
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            CHECK_INT(otp_gen_server_call(self, s, OTP_TUPLE(a, otp_atom("reply_now"), vals[i]),
                                          5000, &r),
                      0);
            if (!otp_exact_eq(r, vals[i]))
                check_failed(__FILE__, __LINE__, "reply_now %zu came back different", i);
        }
        CHECK_INT(otp_gen_server_call(self, s, OTP_TUPLE(a, otp_atom("reply_twice"), otp_small(8)),
                                      5000, &r),
                  0);
        CHECK(r == otp_small(8));
        otp_term stray, w[1];
        CHECK_INT(otp_receive(self, NULL, NULL, 0, &stray), 0);
        CHECK_INT(otp_match("{[alias | Ref], again}", stray, w, 1), 0);
        CHECK(otp_is_ref(w[0]));
        /* and nothing else is left behind */
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("get"), 5000, &r), 0);
        CHECK_INT(mailbox_len(self), 0);
        CHECK_INT(otp_gen_server_stop(self, s, OTP_ATOM_NORMAL, 1000), 0);
        otp_arena_reset(a);
    }
}

static void test_call_flat(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, call_flat_proc, rt);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

static void test_call_sizes(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, call_sizes_proc, rt);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* A call's timeout reaches the timing wheel only when the shard's loop
 * comes round, not when the caller suspends. A shard kept busy by
 * processes that hand the CPU to each other must still come round, and
 * the timeout must still fire on time. */
typedef struct busy_shard_ctx {
    otp_runtime *rt;
    _Atomic int stop;
} busy_shard_ctx;

static void busy_shard_spinner(otp_proc *self, void *arg)
{
    busy_shard_ctx *b = arg;
    /* relaxed: a flag polled in a loop; nothing else travels with it */
    while (!atomic_load_explicit(&b->stop, memory_order_relaxed))
        otp_yield(self);
}

static void busy_timeout_proc(otp_proc *self, void *arg)
{
    busy_shard_ctx *b = arg;
    otp_spawn_opts so = {.shard = 0};
    otp_gen_server_opts o = {.shard = 0};
    otp_term s, r, msg;
    CHECK_INT(otp_gen_server_start(b->rt, self, &ts_ops, otp_small(0), &o, &s, NULL), 0);
    for (int i = 0; i < 2; i++)
        CHECK_INT(otp_spawn(b->rt, self, busy_shard_spinner, b, &so, NULL, NULL), 0);
    for (int round = 0; round < 3; round++) {
        uint64_t t0 = now_us();
        CHECK_INT(otp_gen_server_call(self, s, otp_atom("noreply"), 30, &r), -OTP_ETIMEDOUT);
        uint64_t took = now_us() - t0;
        if (took + EARLY_US < 30000 || took >= 5000000)
            check_failed(__FILE__, __LINE__, "a 30 ms call timeout on a busy shard took %llu us",
                         (unsigned long long)took);
        /* answered calls in between leave no timer behind that could fire */
        for (int i = 0; i < 100; i++)
            CHECK_INT(otp_gen_server_call(self, s, otp_atom("get"), 20, &r), 0);
        t0 = now_us();
        CHECK_INT(otp_receive(self, NULL, NULL, 20, &msg), -OTP_ETIMEDOUT);
        if (now_us() - t0 + EARLY_US < 20000)
            check_failed(__FILE__, __LINE__, "a 20 ms receive timeout fired early");
    }
    atomic_store_explicit(&b->stop, 1, memory_order_relaxed);
    CHECK_INT(mailbox_len(self), 0);
}

static void test_call_timeout_busy_shard(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    busy_shard_ctx b = {.rt = rt};
    run_in_proc(rt, 0, busy_timeout_proc, &b);
    assert_no_failures();
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* ======================================================== noproc, crashes */

static void noproc_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_term r, dead[2];
    for (int shard = 0; shard < 2; shard++) {
        otp_gen_server_opts o = {.shard = shard};
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(0), &o, &dead[shard], NULL), 0);
        CHECK_INT(otp_gen_server_stop(self, dead[shard], OTP_ATOM_NORMAL, 1000), 0);
        CHECK_INT(otp_gen_server_call(self, dead[shard], otp_atom("get"), 1000, &r), -OTP_ENOPROC);
        CHECK_INT(otp_gen_server_stop(self, dead[shard], OTP_ATOM_NORMAL, 1000), -OTP_ENOPROC);
    }
    CHECK_INT(otp_gen_server_call(self, otp_atom("gs_nobody"), otp_atom("get"), 1000, &r),
              -OTP_ENOPROC);
    CHECK_INT(otp_gen_server_cast(self, otp_atom("gs_nobody"), otp_atom("x")), -OTP_ENOPROC);
    CHECK_INT(otp_gen_server_stop(self, otp_atom("gs_nobody"), OTP_ATOM_NORMAL, 100), -OTP_ENOPROC);
    CHECK_INT(mailbox_len(self), 0);
    otp_proc_info info;
    CHECK_INT(otp_process_info(rt, self, otp_self(self), &info), 0);
    CHECK_INT(info.monitors, 0);
}

static void test_noproc(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, noproc_proc, rt);
    otp_arena *a = otp_arena_new();
    otp_term r;
    otp_term s = start_ts(rt, 1, OTP_NONE, 0);
    assert_int_equal(otp_runtime_stop_server(rt, s, OTP_ATOM_NORMAL, 1000), 0);
    assert_int_equal(otp_runtime_call(rt, s, otp_atom("get"), 1000, a, &r), -OTP_ENOPROC);
    assert_int_equal(otp_runtime_call(rt, otp_atom("gs_nobody"), otp_atom("get"), 1000, a, &r),
                     -OTP_ENOPROC);
    assert_int_equal(otp_runtime_cast(rt, otp_atom("gs_nobody"), otp_atom("x")), -OTP_ENOPROC);
    assert_int_equal(otp_runtime_cast(rt, s, otp_atom("x")), 0);
    assert_int_equal(otp_runtime_stop_server(rt, s, OTP_ATOM_NORMAL, 1000), -OTP_ENOPROC);
    assert_int_equal(otp_runtime_stop_server(rt, otp_atom("gs_nobody"), OTP_ATOM_NORMAL, 1000),
                     -OTP_ENOPROC);
    otp_arena_free(a);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* The server dies while we wait for a reply: a stop from elsewhere, an
 * exit signal, a kill. */
typedef struct crash_ctx {
    otp_runtime *rt;
    otp_term server;
    int rc;
    char reason[128];
    latch done;
} crash_ctx;

static void crash_caller(otp_proc *self, void *arg)
{
    crash_ctx *c = arg;
    otp_term r = OTP_NONE;
    c->rc = otp_gen_server_call(self, c->server, otp_atom("hold"), 10000, &r);
    term_text(r, c->reason, sizeof c->reason);
    latch_add(&c->done, 1);
}

typedef struct killer_arg {
    otp_term target;
    const char *reason;
} killer_arg;

static void killer_main(otp_proc *self, void *arg)
{
    killer_arg *k = arg;
    otp_exit(self, k->target, otp_parse_str(otp_proc_arena(self), k->reason));
}

static void test_crash_during_call(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    struct {
        const char *how, *expect;
    } cases[] = {
        {"{stop, {oops, 3}}", "{oops,3}"}, /* a cast makes it stop */
        {"{kaboom, 1}", "{kaboom,1}"},     /* an exit signal it does not trap */
        {"kill", "killed"},
    };
    for (int i = 0; i < 3; i++) {
        for (int shard = 0; shard < 2; shard++) {
            crash_ctx c = {.rt = rt, .server = start_ts(rt, shard, OTP_NONE, 0)};
            latch_init(&c.done);
            int held = latch_count(&g_held);
            otp_spawn_opts o = {.shard = 1 - shard};
            assert_int_equal(otp_spawn(rt, NULL, crash_caller, &c, &o, NULL, NULL), 0);
            assert_true(latch_wait(&g_held, held + 1, WAIT_MS));
            if (i == 0) {
                otp_arena *a = otp_arena_new();
                assert_int_equal(otp_runtime_cast(rt, c.server, otp_parse_str(a, cases[i].how)), 0);
                otp_arena_free(a);
            } else {
                killer_arg k = {.target = c.server, .reason = cases[i].how};
                otp_spawn_opts ko = {.shard = shard};
                assert_int_equal(otp_spawn(rt, NULL, killer_main, &k, &ko, NULL, NULL), 0);
                assert_true(latch_wait(&c.done, 1, WAIT_MS));
            }
            assert_true(latch_wait(&c.done, 1, WAIT_MS));
            assert_int_equal(c.rc, -OTP_EEXIT);
            assert_string_equal(c.reason, cases[i].expect);
            latch_destroy(&c.done);
        }
    }
    /* from a thread: the reason is copied into the thread's arena */
    otp_term s = start_ts(rt, 0, OTP_NONE, 0);
    otp_arena *a = otp_arena_new();
    otp_term r = OTP_NONE;
    assert_int_equal(otp_runtime_call(rt, s, otp_parse_str(a, "{stop, {crash, 9}}"), 1000, a, &r),
                     -OTP_EEXIT);
    char text[64];
    term_text(r, text, sizeof text);
    assert_string_equal(text, "{crash,9}");
    otp_arena_free(a);
    stop_rt(rt);
    /* terminate ran for the stops (2 + 1), not for the signals (4) */
    assert_int_equal(trk_get(&g_trk.terminates), 3);
    assert_int_equal(trk_free_orphans(), 4);
}

/* Callers on the server's own shard: a call's monitor is kept in the
 * process rather than in its list, one at a time; the counts and a death
 * mid-call are as for any monitor, with a second caller and a monitor of
 * the caller's own beside it. */
typedef struct mon_caller {
    otp_term server, req, pid;
    bool user_mon;
    int rc;
    char reason[128], down[128];
    latch done;
} mon_caller;

static void mon_caller_main(otp_proc *self, void *arg)
{
    mon_caller *c = arg;
    otp_term r = OTP_NONE, ref = OTP_NONE, msg;
    if (c->user_mon)
        CHECK_INT(otp_monitor(self, c->server, &ref), 0);
    c->rc = otp_gen_server_call(self, c->server, c->req, 10000, &r);
    term_text(r, c->reason, sizeof c->reason);
    if (c->user_mon && otp_receive(self, NULL, NULL, WAIT_MS, &msg) == 0)
        term_text(otp_tuple_get(msg, 4), c->down, sizeof c->down);
    latch_add(&c->done, 1);
}

static bool wait_monitored_by(otp_runtime *rt, otp_term pid, size_t n)
{
    otp_proc_info info;
    for (int i = 0; i < WAIT_MS; i++) {
        if (otp_process_info(rt, NULL, pid, &info) == 0 && info.monitored_by == n)
            return true;
        usleep(1000);
    }
    return false;
}

static void test_same_shard_call_monitor(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    otp_term s = start_ts(rt, 0, OTP_NONE, 0);
    mon_caller a = {.server = s, .req = otp_atom("hold"), .user_mon = true};
    mon_caller b = {.server = s, .req = otp_atom("noreply")};
    latch_init(&a.done);
    latch_init(&b.done);
    otp_spawn_opts o = {.shard = 0};
    int held = latch_count(&g_held);
    assert_int_equal(otp_spawn(rt, NULL, mon_caller_main, &a, &o, &a.pid, NULL), 0);
    assert_true(latch_wait(&g_held, held + 1, WAIT_MS));
    otp_proc_info info;
    /* a's call and a's own monitor, on either side */
    assert_int_equal(otp_process_info(rt, NULL, s, &info), 0);
    assert_int_equal(info.monitored_by, 2);
    assert_int_equal(info.monitors, 0);
    assert_int_equal(otp_process_info(rt, NULL, a.pid, &info), 0);
    assert_int_equal(info.monitors, 2);
    assert_int_equal(info.monitored_by, 0);
    /* a second caller, never answered */
    assert_int_equal(otp_spawn(rt, NULL, mon_caller_main, &b, &o, &b.pid, NULL), 0);
    assert_true(wait_monitored_by(rt, s, 3));
    assert_int_equal(otp_process_info(rt, NULL, b.pid, &info), 0);
    assert_int_equal(info.monitors, 1);
    /* the server dies: both calls end with its reason, a's monitor fires */
    killer_arg k = {.target = s, .reason = "{kaboom, 7}"};
    assert_int_equal(otp_spawn(rt, NULL, killer_main, &k, &o, NULL, NULL), 0);
    assert_true(latch_wait(&a.done, 1, WAIT_MS));
    assert_true(latch_wait(&b.done, 1, WAIT_MS));
    assert_int_equal(a.rc, -OTP_EEXIT);
    assert_string_equal(a.reason, "{kaboom,7}");
    assert_string_equal(a.down, "{kaboom,7}");
    assert_int_equal(b.rc, -OTP_EEXIT);
    assert_string_equal(b.reason, "{kaboom,7}");
    /* a call to it now: noproc, and nothing is left behind */
    mon_caller c = {.server = s, .req = otp_atom("get")};
    latch_init(&c.done);
    assert_int_equal(otp_spawn(rt, NULL, mon_caller_main, &c, &o, &c.pid, NULL), 0);
    assert_true(latch_wait(&c.done, 1, WAIT_MS));
    assert_int_equal(c.rc, -OTP_ENOPROC);
    latch_destroy(&a.done);
    latch_destroy(&b.done);
    latch_destroy(&c.done);
    assert_no_failures();
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 1);
}

/* ================================================================== stop */

static void stop_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_proc_info info;
    otp_term s;
    for (int shard = 0; shard < 2; shard++) {
        otp_gen_server_opts o = {.shard = shard, .name = otp_atom("gs_stopme")};
        CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(0), &o, &s, NULL), 0);
        int before = trk_get(&g_trk.terminates);
        CHECK_INT(
            otp_gen_server_stop(self, otp_atom("gs_stopme"), otp_parse_str(a, "{custom, 1}"), 1000),
            0);
        /* gone when stop returns, terminate ran once with the reason */
        CHECK_INT(otp_process_info(rt, self, s, &info), -OTP_ENOPROC);
        CHECK(otp_whereis(rt, otp_atom("gs_stopme")) == OTP_NONE);
        CHECK_INT(trk_get(&g_trk.terminates), before + 1);
        char last[256];
        trk_text(g_trk.last_reason, last, sizeof last);
        CHECK(strcmp(last, "{custom,1}") == 0);
        CHECK_INT(mailbox_len(self), 0);

        otp_arena_reset(a);
    }
}

/* A stop that times out: the server is busy in a callback. */
typedef struct busy_ctx {
    otp_runtime *rt;
    otp_term server;
} busy_ctx;

static void busy_caller(otp_proc *self, void *arg)
{
    busy_ctx *c = arg;
    otp_term r;
    CHECK_INT(otp_gen_server_call(self, c->server,
                                  otp_parse_str(otp_proc_arena(self), "{sleep, 400}"), 5000, &r),
              0);
}

static void stop_timeout_proc(otp_proc *self, void *arg)
{
    busy_ctx *c = arg;
    otp_term reason, msg;
    int before = trk_get(&g_trk.terminates);
    uint64_t t0 = now_ms();
    CHECK_INT(otp_gen_server_stop(self, c->server, otp_parse_str(otp_proc_arena(self), "late"), 50),
              -OTP_ETIMEDOUT);
    CHECK(now_ms() - t0 < 1000);
    CHECK_INT(trk_get(&g_trk.terminates), before);
    /* it stops once its callback returns */
    CHECK(wait_down(self, c->server, &reason));
    CHECK_TERM(reason, "late");
    CHECK_INT(trk_get(&g_trk.terminates), before + 1);
    /* the answer to our stop came after we gave up: dropped */
    CHECK_INT(otp_receive(self, NULL, NULL, 100, &msg), -OTP_ETIMEDOUT);
    CHECK_INT(mailbox_len(self), 0);
}

typedef struct racing_stop {
    otp_runtime *rt;
    otp_term server;
    _Atomic int ok, other;
} racing_stop;

static void *stop_thread(void *arg)
{
    racing_stop *rs = arg;
    int rc = otp_runtime_stop_server(rs->rt, rs->server, otp_atom("raced"), 5000);
    if (rc == 0)
        atomic_fetch_add(&rs->ok, 1);
    else if (rc != -OTP_ENOPROC)
        atomic_fetch_add(&rs->other, 1);
    return NULL;
}

static void test_stop(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, stop_proc, rt);
    for (int shard = 0; shard < 2; shard++) {
        busy_ctx c = {rt, start_ts(rt, shard, OTP_NONE, 0)};
        int blocked = latch_count(&g_blocked_now);
        otp_spawn_opts o = {.shard = 1 - shard};
        assert_int_equal(otp_spawn(rt, NULL, busy_caller, &c, &o, NULL, NULL), 0);
        assert_true(latch_wait(&g_blocked_now, blocked + 1, WAIT_MS));
        run_in_proc(rt, 1 - shard, stop_timeout_proc, &c);
    }
    /* from a thread, with the reason */
    otp_term s = start_ts(rt, 1, OTP_NONE, 0);
    int before = trk_get(&g_trk.terminates);
    otp_arena *a = otp_arena_new();
    assert_int_equal(otp_runtime_stop_server(rt, s, otp_parse_str(a, "{thread_stop, 2}"), 1000), 0);
    otp_arena_free(a);
    assert_int_equal(trk_get(&g_trk.terminates), before + 1);
    char last[256];
    trk_text(g_trk.last_reason, last, sizeof last);
    assert_string_equal(last, "{thread_stop,2}");
    otp_proc_info info;
    assert_int_equal(otp_process_info(rt, NULL, s, &info), -OTP_ENOPROC);
    /* three threads stop one server at once: terminate runs once */
    for (int round = 0; round < 20; round++) {
        racing_stop rs = {.rt = rt, .server = start_ts(rt, round % 2, OTP_NONE, 0)};
        before = trk_get(&g_trk.terminates);
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            assert_int_equal(pthread_create(&t[i], NULL, stop_thread, &rs), 0);
        for (int i = 0; i < 3; i++)
            pthread_join(t[i], NULL);
        assert_int_equal(atomic_load(&rs.other), 0);
        assert_true(atomic_load(&rs.ok) >= 1);
        assert_int_equal(trk_get(&g_trk.terminates), before + 1);
    }
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* ========================================================= runtime stop */

static void test_runtime_stop_terminates_all(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    enum { N = 60 };
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "gs_rs_%d", i);
        start_ts(rt, i % 2, i % 3 == 0 ? otp_atom(name) : OTP_NONE, i);
    }
    /* some with mail waiting */
    otp_arena *ta = otp_arena_new();
    for (int i = 0; i < N; i += 3) {
        snprintf(name, sizeof name, "gs_rs_%d", i);
        for (int k = 0; k < 50; k++)
            assert_int_equal(otp_runtime_cast(rt, otp_atom(name), otp_parse_str(ta, "{add, 0}")),
                             0);
    }
    otp_arena_free(ta);
    stop_rt(rt);
    assert_int_equal(trk_get(&g_trk.terminates), N);
    assert_int_equal(trk_get(&g_trk.shutdowns), N);
    assert_int_equal(trk_free_orphans(), 0);
    assert_no_failures();
}

/* Was a bug, kept as a regression test: a server blocked inside a callback when the runtime stops
 * (here in otp_sleep; the same for a call to another server) is ended without its terminate:
 * gs_shutdown calls otp__proc_terminate when p->task is set. The docs say runtime stop runs every
 * terminate with `shutdown`, and terminate is where the state is freed, so the state leaks.
 * (Erlang: the shutdown is an exit signal; a trapping server sees it when the callback returns and
 * runs terminate.) */
static void test_runtime_stop_blocked_server(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    busy_ctx c = {rt, start_ts(rt, 0, OTP_NONE, 0)};
    int blocked = latch_count(&g_blocked_now);
    otp_spawn_opts o = {.shard = 1};
    assert_int_equal(otp_spawn(rt, NULL, busy_caller, &c, &o, NULL, NULL), 0);
    assert_true(latch_wait(&g_blocked_now, blocked + 1, WAIT_MS));
    stop_rt(rt);
    int orphans = trk_free_orphans();
    pthread_mutex_lock(&g_fail_lock);
    g_failures = 0; /* the busy caller's call fails: expected */
    pthread_mutex_unlock(&g_fail_lock);
    assert_int_equal(orphans, 0);
    assert_int_equal(trk_get(&g_trk.terminates), 1);
}

/* ============================================ blocked callback, others run */

typedef struct chain_ctx {
    otp_runtime *rt;
    otp_term a, b, c;
    int rc;
    char reply[128];
    latch done;
} chain_ctx;

static void chain_caller(otp_proc *self, void *arg)
{
    chain_ctx *c = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term r = OTP_NONE;
    /* a asks b for "hold": a blocks in its callback until b is released */
    otp_term req = OTP_TUPLE(a, otp_atom("call"), c->b, otp_atom("hold"), otp_small(20000));
    c->rc = otp_gen_server_call(self, c->a, req, 30000, &r);
    term_text(r, c->reply, sizeof c->reply);
    latch_add(&c->done, 1);
}

static void many_calls(otp_proc *self, void *arg)
{
    chain_ctx *c = arg;
    otp_term r;
    for (int i = 0; i < 200; i++) {
        CHECK_INT(otp_gen_server_call(self, c->c, otp_parse_str(otp_proc_arena(self), "{add, 1}"),
                                      1000, &r),
                  0);
        otp_arena_reset(otp_proc_arena(self));
    }
    CHECK_INT(int_of(r), 200);
}

static void test_blocked_callback(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    /* a and c share shard 0, b is on shard 1 */
    chain_ctx c = {.rt = rt};
    c.a = start_ts(rt, 0, OTP_NONE, 0);
    c.b = start_ts(rt, 1, OTP_NONE, 5);
    c.c = start_ts(rt, 0, OTP_NONE, 0);
    latch_init(&c.done);
    otp_proc_info info;
    assert_int_equal(otp_process_info(rt, NULL, c.a, &info), 0);
    size_t idle_mem = info.memory;
    int held = latch_count(&g_held);
    otp_spawn_opts o = {.shard = 1};
    assert_int_equal(otp_spawn(rt, NULL, chain_caller, &c, &o, NULL, NULL), 0);
    assert_true(latch_wait(&g_held, held + 1, WAIT_MS));
    /* a is blocked: it holds a stack now, and its mail waits */
    assert_int_equal(otp_process_info(rt, NULL, c.a, &info), 0);
    assert_int_equal(info.status, OTP_PROC_WAITING);
    size_t blocked_mem = info.memory;
    assert_true(blocked_mem > idle_mem);
    otp_arena *ta = otp_arena_new();
    for (int i = 0; i < 5; i++)
        assert_int_equal(otp_runtime_cast(rt, c.a, otp_parse_str(ta, "{add, 1}")), 0);
    otp_arena_free(ta);
    assert_int_equal(otp_process_info(rt, NULL, c.a, &info), 0);
    assert_int_equal(info.message_queue_len, 5);
    /* meanwhile c, on a's shard, serves 2 x 200 calls */
    run_in_proc(rt, 0, many_calls, &c);
    assert_int_equal(tcall_int(rt, c.c, "{add, -200}"), 0);
    run_in_proc(rt, 1, many_calls, &c);
    assert_int_equal(latch_count(&c.done), 0);
    /* release b's held caller (a): a answers its own caller */
    assert_int_equal(otp_runtime_cast(rt, c.b, otp_atom("release")), 0);
    assert_true(latch_wait(&c.done, 1, WAIT_MS));
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.reply, "{0,5}");
    assert_int_equal(tcall_int(rt, c.a, "get"), 5);
    assert_int_equal(otp_process_info(rt, NULL, c.a, &info), 0);
    assert_true(info.memory < blocked_mem);
    printf("# server memory: idle %zu bytes, blocked in a call %zu bytes, idle again %zu bytes\n",
           idle_mem, blocked_mem, info.memory);
    latch_destroy(&c.done);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* Two servers calling each other: the inner call times out, as in Erlang,
 * and the answer that comes later is dropped. */
static void mutual_proc(otp_proc *self, void *arg)
{
    chain_ctx *c = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term r;
    /* a calls b, b calls a back (a is busy): b's call times out after 100 */
    otp_term inner = OTP_TUPLE(a, otp_atom("call"), c->a, otp_atom("get"), otp_small(100));
    otp_term req = OTP_TUPLE(a, otp_atom("call"), c->b, inner, otp_small(5000));
    CHECK_INT(otp_gen_server_call(self, c->a, req, 10000, &r), 0);
    CHECK_TERM(r, "{0,{-20,none}}");
    /* both serve again, and b's mailbox holds no stray reply */
    CHECK_INT(otp_gen_server_call(self, c->b, otp_atom("get"), 1000, &r), 0);
    CHECK_INT(otp_gen_server_call(self, c->a, otp_atom("get"), 1000, &r), 0);
    CHECK_INT(otp_gen_server_call(self, c->b, otp_atom("infos"), 1000, &r), 0);
    CHECK_INT(int_of(r), 0);
    otp_proc_info info;
    CHECK_INT(otp_process_info(otp_proc_runtime(self), self, c->b, &info), 0);
    CHECK_INT(info.message_queue_len, 0);
    CHECK_INT(info.monitors, 0);
    CHECK_INT(info.monitored_by, 0);
}

static void test_mutual_call_timeout(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    chain_ctx c = {.rt = rt};
    for (int shard = 0; shard < 2; shard++) {
        c.a = start_ts(rt, 0, OTP_NONE, 0);
        c.b = start_ts(rt, shard, OTP_NONE, 0);
        run_in_proc(rt, 1, mutual_proc, &c);
    }
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* ========================================================= cross shards */

typedef struct cross_ctx {
    otp_runtime *rt;
    otp_term srv[4]; /* shards 0, 1, 0, 1 */
    latch done;
} cross_ctx;

static void cross_caller(otp_proc *self, void *arg)
{
    cross_ctx *c = arg;
    for (int i = 0; i < 200; i++) {
        otp_arena *a = otp_proc_arena(self);
        otp_term add = OTP_TUPLE(a, otp_atom("add"), otp_small(1));
        otp_term r3 = OTP_TUPLE(a, otp_atom("call"), c->srv[3], add, otp_small(5000));
        otp_term r2 = OTP_TUPLE(a, otp_atom("call"), c->srv[2], r3, otp_small(5000));
        otp_term r1 = OTP_TUPLE(a, otp_atom("call"), c->srv[1], r2, otp_small(5000));
        otp_term r;
        CHECK_INT(otp_gen_server_call(self, c->srv[0], r1, 10000, &r), 0);
        /* {0, {0, {0, N}}} */
        otp_term v[1];
        CHECK_INT(otp_match("{0, {0, {0, N}}}", r, v, 1), 0);
        CHECK(int_of(v[0]) >= 1);
        otp_arena_reset(a);
    }
    latch_add(&c->done, 1);
}

static void test_cross_shard_calls(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    cross_ctx c = {.rt = rt};
    latch_init(&c.done);
    for (int i = 0; i < 4; i++)
        c.srv[i] = start_ts(rt, i % 2, OTP_NONE, 0);
    for (int k = 0; k < 6; k++) {
        otp_spawn_opts o = {.shard = k % 2};
        assert_int_equal(otp_spawn(rt, NULL, cross_caller, &c, &o, NULL, NULL), 0);
    }
    assert_true(latch_wait(&c.done, 6, WAIT_MS * 2));
    assert_no_failures();
    assert_int_equal(tcall_int(rt, c.srv[3], "get"), 6 * 200);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tcall_int(rt, c.srv[i], "calls"), 6 * 200 + 1);
    latch_destroy(&c.done);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* ===================================================== plain threads too */

typedef struct mixed_ctx {
    otp_runtime *rt;
    otp_term srv[2];
    latch done;
} mixed_ctx;

#define MIXED_N 300

static void *mixed_thread(void *arg)
{
    mixed_ctx *c = arg;
    otp_arena *a = otp_arena_new();
    otp_term add = OTP_TUPLE(a, otp_atom("add"), otp_small(1));
    for (int i = 0; i < MIXED_N; i++) {
        otp_term r = OTP_NONE;
        CHECK_INT(otp_runtime_call(c->rt, c->srv[i % 2], add, 5000, a, &r), 0);
        CHECK(int_of(r) >= 1);
        CHECK_INT(otp_runtime_cast(c->rt, c->srv[(i + 1) % 2], add), 0);
        if (i % 64 == 0) {
            otp_arena_reset(a);
            add = OTP_TUPLE(a, otp_atom("add"), otp_small(1));
        }
    }
    /* A call after our casts to the same server is answered after them:
     * only then are they counted for sure. */
    otp_term r = OTP_NONE;
    for (int k = 0; k < 2; k++)
        CHECK_INT(otp_runtime_call(c->rt, c->srv[k], otp_atom("get"), 5000, a, &r), 0);
    otp_arena_free(a);
    latch_add(&c->done, 1);
    return NULL;
}

static void mixed_proc(otp_proc *self, void *arg)
{
    mixed_ctx *c = arg;
    otp_arena *a = otp_proc_arena(self);
    /* a process may not use the thread-side calls */
    otp_term r;
    CHECK_INT(otp_runtime_call(c->rt, c->srv[0], otp_atom("get"), 100, a, &r), -OTP_ECONTEXT);
    CHECK_INT(otp_runtime_stop_server(c->rt, c->srv[0], OTP_ATOM_NORMAL, 100), -OTP_ECONTEXT);
    for (int i = 0; i < MIXED_N; i++) {
        CHECK_INT(otp_gen_server_call(self, c->srv[i % 2], otp_parse_str(a, "{add, 1}"), 5000, &r),
                  0);
        CHECK_INT(otp_gen_server_cast(self, c->srv[(i + 1) % 2], otp_parse_str(a, "{add, 1}")), 0);
        otp_arena_reset(a);
    }
    /* our casts may still be on their way to the other shard: a call to
     * each server, ordered behind them, says they have arrived */
    for (int k = 0; k < 2; k++)
        CHECK_INT(otp_gen_server_call(self, c->srv[k], otp_atom("get"), 5000, &r), 0);
    latch_add(&c->done, 1);
}

static void test_thread_and_process_calls(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    mixed_ctx c = {.rt = rt};
    latch_init(&c.done);
    c.srv[0] = start_ts(rt, 0, otp_atom("gs_mixed0"), 0);
    c.srv[1] = start_ts(rt, 1, OTP_NONE, 0);
    enum { THREADS = 4, PROCS = 8 };
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, mixed_thread, &c), 0);
    for (int i = 0; i < PROCS; i++) {
        otp_spawn_opts o = {.shard = i % 2};
        assert_int_equal(otp_spawn(rt, NULL, mixed_proc, &c, &o, NULL, NULL), 0);
    }
    bool ok = latch_wait(&c.done, THREADS + PROCS, WAIT_MS * 4);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_true(ok);
    assert_no_failures();
    /* every call and every cast counted exactly once */
    int64_t total = tcall_int(rt, c.srv[0], "get") + tcall_int(rt, c.srv[1], "get");
    assert_int_equal(total, (int64_t)(THREADS + PROCS) * MIXED_N * 2);
    /* stop one from a thread */
    assert_int_equal(otp_runtime_stop_server(rt, otp_atom("gs_mixed0"), otp_atom("done"), 2000), 0);
    assert_true(otp_whereis(rt, otp_atom("gs_mixed0")) == OTP_NONE);
    char last[256];
    trk_text(g_trk.last_reason, last, sizeof last);
    assert_string_equal(last, "done");
    latch_destroy(&c.done);
    stop_rt(rt);
    assert_int_equal(trk_get(&g_trk.terminates), 2);
    assert_int_equal(trk_free_orphans(), 0);
}

/* ================================================= trap_exit and parent */

typedef struct parent_ctx {
    otp_runtime *rt;
    bool trap;
    const char *reason; /* the parent's exit reason, as text */
    otp_term watcher;
} parent_ctx;

/* Starts a linked server, tells the watcher, exits when told to. */
static void parent_main(otp_proc *self, void *arg)
{
    parent_ctx *c = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_gen_server_opts o = {.shard = 1, .link = true, .trap_exit = c->trap};
    otp_term server = OTP_NONE, msg;
    CHECK_INT(otp_gen_server_start(c->rt, self, &ts_ops, otp_small(0), &o, &server, NULL), 0);
    CHECK_INT(otp_send(self, c->watcher, OTP_TUPLE(a, otp_atom("started"), server)), 0);
    CHECK_INT(otp_receive(self, NULL, NULL, WAIT_MS, &msg), 0); /* "die now" */
    otp_proc_exit(self, otp_parse_str(a, c->reason));
}

static void parent_watch(otp_proc *self, void *arg)
{
    parent_ctx *c = arg;
    otp_spawn_opts o = {.shard = 0};
    otp_term parent, ref, msg, v[1];
    c->watcher = otp_self(self);
    CHECK_INT(otp_spawn(c->rt, self, parent_main, c, &o, &parent, NULL), 0);
    CHECK_INT(otp_receive(self, NULL, NULL, WAIT_MS, &msg), 0);
    CHECK_INT(otp_match("{started, S}", msg, v, 1), 0);
    otp_term server = v[0];
    CHECK_INT(otp_monitor(self, server, &ref), 0);
    int before = trk_get(&g_trk.terminates);
    CHECK_INT(otp_send(self, parent, OTP_ATOM_OK), 0);
    bool dies = c->trap || strcmp(c->reason, "normal") != 0;
    if (dies) {
        CHECK_INT(otp_receive(self, NULL, NULL, WAIT_MS, &msg), 0);
        char got[128];
        term_text(otp_tuple_get(msg, 4), got, sizeof got);
        if (strcmp(got, c->reason) != 0)
            check_failed(__FILE__, __LINE__, "trap %d: DOWN reason %s, not %s", c->trap, got,
                         c->reason);
        /* terminate runs only for a server that traps exits */
        CHECK_INT(trk_get(&g_trk.terminates), before + (c->trap ? 1 : 0));
        if (c->trap) {
            char last[256];
            trk_text(g_trk.last_reason, last, sizeof last);
            if (strcmp(last, c->reason) != 0)
                check_failed(__FILE__, __LINE__, "terminate reason %s, not %s", last, c->reason);
        }
    } else {
        /* not trapping, parent exits normal: the server lives on */
        otp_term r;
        CHECK_INT(otp_gen_server_call(self, server, otp_atom("get"), 1000, &r), 0);
        CHECK_INT(otp_gen_server_stop(self, server, OTP_ATOM_NORMAL, 1000), 0);
        otp_demonitor(self, ref, OTP_DEMONITOR_FLUSH);
    }
}

/* Links itself to a server, then exits with {other, 1}. */
static void other_link_main(otp_proc *self, void *arg)
{
    otp_term *server = arg;
    otp_term r;
    CHECK_INT(otp_gen_server_call(self, *server,
                                  OTP_TUPLE(otp_proc_arena(self), otp_atom("link"), otp_self(self)),
                                  1000, &r),
              0);
    CHECK_INT(int_of(r), 0);
    otp_proc_exit(self, otp_parse_str(otp_proc_arena(self), "{other, 1}"));
}

static void test_trap_exit_parent(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    struct {
        bool trap;
        const char *reason;
    } cases[] = {{true, "{parent_died,1}"},
                 {true, "normal"},
                 {true, "shutdown"},
                 {false, "{parent_died,2}"},
                 {false, "normal"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parent_ctx c = {.rt = rt, .trap = cases[i].trap, .reason = cases[i].reason};
        run_in_proc(rt, 0, parent_watch, &c);
    }
    /* a trapping server gets {'EXIT', Pid, Reason} from a linked non-parent
     * as a message, and lives on */
    otp_gen_server_opts o = {.shard = 1, .trap_exit = true};
    otp_term s;
    assert_int_equal(otp_gen_server_start(rt, NULL, &ts_ops, otp_small(0), &o, &s, NULL), 0);
    int exits = latch_count(&g_exits);
    otp_spawn_opts so = {.shard = 0};
    assert_int_equal(otp_spawn(rt, NULL, other_link_main, &s, &so, NULL, NULL), 0);
    assert_true(latch_wait(&g_exits, exits + 1, WAIT_MS));
    char last[128];
    trk_text(g_trk.last_exit, last, sizeof last);
    assert_string_equal(last, "{other,1}");
    assert_int_equal(tcall_int(rt, s, "exits"), 1);
    assert_no_failures();
    stop_rt(rt);
    /* the non-trapping server killed by its parent ran no terminate */
    assert_int_equal(trk_free_orphans(), 1);
}

/* ================================================ Erlang-style raw calls */

static otp_term g_raw_ref;
static bool is_raw_reply(otp_term msg, void *ctx)
{
    (void)ctx;
    return otp_tuple_arity(msg) == 2 && otp_exact_eq(otp_tuple_get(msg, 0), g_raw_ref);
}

/* Was a bug, kept as a regression test: a process that speaks the gen_server protocol itself (as an
 * Erlang process does: send {'$gen_call', {self(), Ref}, Req}, receive {Ref, Reply}) never gets the
 * reply from a libotp server on this node: otp__reply sends a REPLY signal, which otp__deliver
 * drops unless the receiver is inside otp__call waiting for that ref (p->alias). Erlang delivers
 * {Ref, Reply} as an ordinary message. gen_server.h promises the protocol so Erlang processes can
 * call libotp servers. */
static void raw_call_proc(otp_proc *self, void *arg)
{
    otp_runtime *rt = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term s, msg;
    otp_gen_server_opts o = {.shard = 1};
    CHECK_INT(otp_gen_server_start(rt, self, &ts_ops, otp_small(33), &o, &s, NULL), 0);
    uint32_t words[3] = {1, 2, 3};
    g_raw_ref = otp_ref(a, otp_runtime_node(rt), otp_runtime_creation(rt), words, 3);
    otp_term req = OTP_TUPLE(a, otp_atom("$gen_call"), OTP_TUPLE(a, otp_self(self), g_raw_ref),
                             otp_atom("get"));
    CHECK_INT(otp_send(self, s, req), 0);
    CHECK_INT(otp_receive(self, is_raw_reply, NULL, 2000, &msg), 0);
    CHECK_INT(int_of(otp_tuple_get(msg, 1)), 33);
    /* a tag that is not a ref, as gen_server:multi_call's {Ref, Node}:
     * answered from the callback, and later by another process */
    g_raw_ref = OTP_TUPLE(a, otp_atom("tag"), otp_small(7));
    CHECK_INT(otp_send(self, s,
                       OTP_TUPLE(a, otp_atom("$gen_call"), OTP_TUPLE(a, otp_self(self), g_raw_ref),
                                 otp_atom("get"))),
              0);
    CHECK_INT(otp_receive(self, is_raw_reply, NULL, 2000, &msg), 0);
    CHECK_INT(int_of(otp_tuple_get(msg, 1)), 33);
    otp_term helper;
    otp_spawn_opts so = {.shard = 0};
    CHECK_INT(otp_spawn(rt, self, replier_main, NULL, &so, &helper, NULL), 0);
    g_raw_ref = OTP_TUPLE(a, otp_atom("tag"), otp_small(8));
    CHECK_INT(otp_send(self, s,
                       OTP_TUPLE(a, otp_atom("$gen_call"), OTP_TUPLE(a, otp_self(self), g_raw_ref),
                                 OTP_TUPLE(a, otp_atom("hand_to"), helper))),
              0);
    CHECK_INT(otp_receive(self, is_raw_reply, NULL, 2000, &msg), 0);
    CHECK_TERM(otp_tuple_get(msg, 1), "{helped,7}");
    CHECK_INT(otp_gen_server_stop(self, s, OTP_ATOM_NORMAL, 1000), 0);
}

static void test_raw_protocol_call(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    run_in_proc(rt, 0, raw_call_proc, rt);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* ================================================================ memory */

static void test_idle_memory(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    otp_term s = start_ts(rt, 0, OTP_NONE, 0);
    otp_proc_info info;
    assert_int_equal(otp_process_info(rt, NULL, s, &info), 0);
    size_t fresh = info.memory;
    /* traffic leaves nothing behind: the arena goes back after each
     * callback (the first call leaves room for monitors, kept) */
    size_t after[2];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 100; i++)
            assert_int_equal(tcall_int(rt, s, "{add, 1}"), round * 100 + i + 1);
        assert_int_equal(otp_process_info(rt, NULL, s, &info), 0);
        assert_int_equal(info.status, OTP_PROC_WAITING);
        assert_int_equal(info.message_queue_len, 0);
        assert_int_equal(info.monitored_by, 0);
        after[round] = info.memory;
    }
    printf("# idle GenServer: process_info memory %zu bytes fresh, %zu after 100 calls, "
           "%zu after 200; target <= 1024\n",
           fresh, after[0], after[1]);
    assert_true(fresh <= 1024);
    assert_true(after[0] <= 1024);
    assert_int_equal(after[1], after[0]);
    stop_rt(rt);
    assert_int_equal(trk_free_orphans(), 0);
}

/* Resident memory per idle server, all in (what process_info does not see:
 * the behaviour's record, the state, malloc's overhead). Printed, not
 * asserted: sanitizers and allocators make RSS a report, not a test. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = 0;
    fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct many_ctx {
    otp_runtime *rt;
    int from, to;
    latch *done;
} many_ctx;

static int tiny_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    (void)self;
    (void)args;
    (void)reason;
    *state = NULL;
    return OTP_GS_INIT_OK;
}
static otp_gs_ret tiny_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    (void)self;
    (void)from;
    (void)state;
    return otp_gs_reply(req);
}
static const otp_gen_server_ops tiny_ops = {.init = tiny_init, .handle_call = tiny_call};

static void many_spawner(otp_proc *self, void *arg)
{
    many_ctx *m = arg;
    otp_gen_server_opts o = {.shard = OTP_SHARD_ANY};
    for (int i = m->from; i < m->to; i++)
        CHECK_INT(otp_gen_server_start(m->rt, self, &tiny_ops, OTP_NIL, &o, NULL, NULL), 0);
    latch_add(m->done, 1);
}

static void test_idle_memory_rss(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(2);
    enum { N = 50000 };
    latch done;
    latch_init(&done);
    many_ctx m[2] = {{rt, 0, N / 2, &done}, {rt, N / 2, N, &done}};
    long before = rss_kb();
    uint64_t t0 = now_ms();
    for (int k = 0; k < 2; k++) {
        otp_spawn_opts o = {.shard = k};
        assert_int_equal(otp_spawn(rt, NULL, many_spawner, &m[k], &o, NULL, NULL), 0);
    }
    assert_true(latch_wait(&done, 2, WAIT_MS * 4));
    uint64_t took = now_ms() - t0;
    long after = rss_kb();
    assert_no_failures();
    printf("# %d idle GenServers: RSS +%ld KiB, %.0f bytes each; started in %llu ms "
           "(%.0f/s, 2 shards)\n",
           N, after - before, (double)(after - before) * 1024.0 / N, (unsigned long long)took,
           took ? N * 1000.0 / (double)took : 0.0);
    latch_destroy(&done);
    stop_rt(rt);
}

/* ================================================================ stress */

#define ST_SERVERS 1000
#define ST_CLIENTS 100
#define ST_CALLS   1000 /* per client: each server gets ST_CLIENTS x ST_CALLS / ST_SERVERS */

typedef struct stress_ctx {
    otp_runtime *rt;
    otp_term servers[ST_SERVERS];
    _Atomic int64_t bad;
    latch done;
} stress_ctx;

typedef struct client_arg {
    stress_ctx *st;
    int index;
} client_arg;

static void stress_client(otp_proc *self, void *arg)
{
    client_arg *ca = arg;
    stress_ctx *st = ca->st;
    otp_arena *a = otp_proc_arena(self);
    otp_term mul = otp_atom("mul");
    for (int i = 0; i < ST_CALLS; i++) {
        int s = (i + ca->index * 10) % ST_SERVERS;
        int64_t x = (int64_t)ca->index * 100000 + i;
        otp_term r = OTP_NONE;
        int rc =
            otp_gen_server_call(self, st->servers[s], OTP_TUPLE(a, mul, otp_int(a, x)), 10000, &r);
        if (rc != 0 || int_of(r) != x * 3 + s) {
            if (atomic_fetch_add(&st->bad, 1) == 0)
                check_failed(__FILE__, __LINE__, "client %d call %d to %d: rc %d", ca->index, i, s,
                             rc);
        }
        if ((i & 63) == 63)
            otp_arena_reset(a);
    }
    latch_add(&st->done, 1);
}

static void test_stress_calls(void **state)
{
    (void)state;
    trk_reset();
    otp_runtime *rt = start_rt(2);
    stress_ctx *st = calloc(1, sizeof *st);
    assert_non_null(st);
    st->rt = rt;
    latch_init(&st->done);
    otp_arena *a = otp_arena_new();
    for (int i = 0; i < ST_SERVERS; i++) {
        otp_gen_server_opts o = {.shard = OTP_SHARD_NEXT};
        assert_int_equal(otp_gen_server_start(rt, NULL, &ts_ops,
                                              OTP_TUPLE(a, otp_small(0), otp_small(i)), &o,
                                              &st->servers[i], NULL),
                         0);
        otp_arena_reset(a);
    }
    client_arg ca[ST_CLIENTS];
    uint64_t t0 = now_ms();
    for (int c = 0; c < ST_CLIENTS; c++) {
        ca[c] = (client_arg){st, c};
        otp_spawn_opts o = {.shard = OTP_SHARD_NEXT};
        assert_int_equal(otp_spawn(rt, NULL, stress_client, &ca[c], &o, NULL, NULL), 0);
    }
    bool ok = latch_wait(&st->done, ST_CLIENTS, 240000);
    uint64_t took = now_ms() - t0;
    assert_true(ok);
    assert_no_failures();
    assert_int_equal(atomic_load(&st->bad), 0);
    printf("# stress: %d calls (%d clients, %d servers, 2 shards) in %llu ms\n",
           ST_CLIENTS * ST_CALLS, ST_CLIENTS, ST_SERVERS, (unsigned long long)took);
    /* each server got exactly its share (plus this call) */
    for (int i = 0; i < ST_SERVERS; i++)
        assert_int_equal(tcall_int(rt, st->servers[i], "calls"),
                         ST_CLIENTS * ST_CALLS / ST_SERVERS + 1);
    otp_arena_free(a);
    latch_destroy(&st->done);
    stop_rt(rt);
    assert_int_equal(trk_get(&g_trk.terminates), ST_SERVERS);
    assert_int_equal(trk_free_orphans(), 0);
    free(st);
}

/* A thread blocked in otp_runtime_call on a server that never answers is
 * released when the runtime stops (its proxy is ended), not left hanging. */
static int mute_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    (void)self;
    (void)args;
    (void)reason;
    *state = NULL;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret mute_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    (void)self;
    (void)req;
    (void)from;
    (void)state;
    return otp_gs_noreply(); /* and never replies */
}

static const otp_gen_server_ops mute_ops = {.init = mute_init, .handle_call = mute_call};

typedef struct blocked_caller {
    otp_runtime *rt;
    otp_term server;
    int rc;
    sem_t entered;
} blocked_caller;

static void *blocked_call_thread(void *arg)
{
    blocked_caller *bc = arg;
    otp_arena *a = otp_arena_new();
    otp_term reply;
    sem_post(&bc->entered);
    bc->rc = otp_runtime_call(bc->rt, bc->server, otp_atom("hello"), OTP_INFINITY, a, &reply);
    otp_arena_free(a);
    return NULL;
}

static void test_thread_call_released_by_stop(void **state)
{
    (void)state;
    otp_runtime *rt = start_rt(2);
    blocked_caller bc = {.rt = rt};
    sem_init(&bc.entered, 0, 0);
    otp_gen_server_opts o = {.shard = 1};
    assert_int_equal(otp_gen_server_start(rt, NULL, &mute_ops, OTP_NIL, &o, &bc.server, NULL), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocked_call_thread, &bc), 0);
    sem_wait(&bc.entered);
    /* the call may or may not have reached the server yet: either way stop
     * must release the thread */
    assert_int_equal(otp_runtime_stop(rt), 0);
    pthread_join(th, NULL);
    assert_true(bc.rc < 0);
    otp_runtime_free(rt);
    sem_destroy(&bc.entered);
}

int main(void)
{
    latch_init(&g_held);
    latch_init(&g_blocked_now);
    latch_init(&g_exits);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_variants),
        cmocka_unit_test(test_init_verdicts),
        cmocka_unit_test(test_init_stop_name_still_taken),
        cmocka_unit_test(test_call_cast_info),
        cmocka_unit_test(test_missing_callbacks),
        cmocka_unit_test(test_not_quite_call),
        cmocka_unit_test(test_deferred_reply),
        cmocka_unit_test(test_call_timeout),
        cmocka_unit_test(test_call_timeout_busy_shard),
        cmocka_unit_test(test_call_sizes),
        cmocka_unit_test(test_call_flat),
        cmocka_unit_test(test_same_shard_call_monitor),
        cmocka_unit_test(test_noproc),
        cmocka_unit_test(test_crash_during_call),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_runtime_stop_terminates_all),
        cmocka_unit_test(test_thread_call_released_by_stop),
        cmocka_unit_test(test_runtime_stop_blocked_server),
        cmocka_unit_test(test_blocked_callback),
        cmocka_unit_test(test_mutual_call_timeout),
        cmocka_unit_test(test_cross_shard_calls),
        cmocka_unit_test(test_thread_and_process_calls),
        cmocka_unit_test(test_trap_exit_parent),
        cmocka_unit_test(test_raw_protocol_call),
        cmocka_unit_test(test_idle_memory),
        cmocka_unit_test(test_idle_memory_rss),
        cmocka_unit_test(test_stress_calls),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    latch_destroy(&g_held);
    latch_destroy(&g_blocked_now);
    latch_destroy(&g_exits);
    return rc;
}
