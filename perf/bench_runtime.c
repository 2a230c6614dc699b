/* bench_runtime.c — the runtime scenarios of perf/README.md ("bench_runtime")
 * in libotp, side by side in one run with Erlang/OTP doing the same with
 * gen_server, spawn, ! and receive (perf/bench_runtime.erl, started by this
 * program): sequential calls (small term, 1 MiB binary), 120 calling pairs,
 * a cross-shard ping-pong, message streams on one shard and across shards,
 * and a million idle GenServers. Rounds are interleaved (one libotp round,
 * one Erlang round, again); medians and ratios go to stdout as markdown.
 *
 * Method, the same on both sides: every round sets its processes up afresh,
 * warms up by doubling a batch until it lasts `warm`, times one batch of that
 * length, sizes the batch to `budget`, and times one batch of that size with
 * CLOCK_MONOTONIC around the whole batch (never per operation).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <semaphore.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "otp/gen_server.h"
#include "otp/runtime.h"
#include "otp/term.h"

extern char **environ;

#ifndef BENCH_ERL
#define BENCH_ERL ""
#endif
#ifndef BENCH_BEAM_DIR
#define BENCH_BEAM_DIR ""
#endif

#define MAX_ROUNDS 31
#define SHARDS     2
#define PAIRS      120
#define MIB        (1024 * 1024)
#define SAMPLE     1000 /* spawn_idle: processes whose process_info memory is summed */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_runtime: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------ configuration */

/* The Erlang side's cfg/2: ns per timed batch, the warm-up's batch length,
 * call_par's window and warm-up, spawn_idle's count. */
typedef struct cfg {
    uint64_t budget, warm, par, par_warm;
    size_t spawn_n;
    unsigned yield_every; /* stream senders yield every this many sends */
} cfg;

static cfg make_cfg(bool quick, unsigned ms)
{
    const uint64_t M = 1000000u;
    cfg c = quick ? (cfg){30 * M, 5 * M, 200 * M, 50 * M, 100000, 256}
                  : (cfg){200 * M, 20 * M, 1000 * M, 200 * M, 1000000, 256};
    if (ms) {
        c.budget = ms * M;
        c.warm = c.budget / 4 < 20 * M ? c.budget / 4 : 20 * M;
        c.par = ms * M;
        c.par_warm = c.budget / 5 > 20 * M ? c.budget / 5 : 20 * M;
    }
    return c;
}

/* ------------------------------------------------------------ atoms */

static otp_term a_get, a_ok, a_ping, a_pong, a_msg, a_sync, a_count, a_stop, a_error;

static void atoms_init(void)
{
    a_get = otp_atom("get");
    a_ok = otp_atom("ok");
    a_ping = otp_atom("ping");
    a_pong = otp_atom("pong");
    a_msg = otp_atom("msg");
    a_sync = otp_atom("sync");
    a_count = otp_atom("count");
    a_stop = otp_atom("stop");
    a_error = otp_atom("error");
}

/* ------------------------------------------------------------ the GenServer
 * One callback set for every server, as in bench_runtime.erl: {get, N} ->
 * {ok, N}; a binary -> its byte_size. init is trivial (no state). */

/* The data pointer of the last binary request a server saw: call_1mb checks
 * that the 1 MiB request reached the server by reference, not by copy. */
static _Atomic(const uint8_t *) g_seen_bin;

static int srv_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    *state = NULL;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret srv_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    otp_arena *a = otp_proc_arena(self);
    if (otp_tuple_arity(req) == 2 && otp_tuple_get(req, 0) == a_get)
        return otp_gs_reply(OTP_TUPLE(a, a_ok, otp_tuple_get(req, 1)));
    size_t len;
    const uint8_t *d = otp_binary_data(req, &len);
    if (d) {
        atomic_store_explicit(&g_seen_bin, d, memory_order_relaxed);
        return otp_gs_reply(otp_int(a, (int64_t)len));
    }
    return otp_gs_reply(a_error);
}

static otp_gs_ret srv_cast(otp_proc *self, otp_term msg, void *state)
{
    return otp_gs_noreply();
}

static const otp_gen_server_ops srv_ops = {
    .init = srv_init, .handle_call = srv_call, .handle_cast = srv_cast};

/* ------------------------------------------------------------ timed batches */

/* A batch runs n operations in the measuring process; 0 or an error. */
typedef int (*batch_fn)(otp_proc *self, void *ctx, uint64_t n);

/* ns per operation of one batch of n. The process's arena is reset first
 * (Erlang collects the process and its peer before each batch). */
static int time_batch(otp_proc *self, batch_fn fn, void *ctx, uint64_t n, double *per)
{
    otp_arena_reset(otp_proc_arena(self));
    uint64_t t0 = now_ns();
    int rc = fn(self, ctx, n);
    *per = (double)(now_ns() - t0) / (double)n;
    return rc;
}

/* Warm-up by doubling until a batch lasts c->warm, one more batch of that
 * length on warm caches, then one batch sized to c->budget: *out is its ns
 * per operation. The same procedure as bench_runtime.erl's measure/3. */
static int measure(otp_proc *self, batch_fn fn, void *ctx, const cfg *c, double *out)
{
    uint64_t n = 1;
    double per;
    int rc;
    for (;;) {
        if ((rc = time_batch(self, fn, ctx, n, &per)) < 0)
            return rc;
        if (per * (double)n >= (double)c->warm)
            break;
        n *= 2;
    }
    if ((rc = time_batch(self, fn, ctx, (uint64_t)llround((double)c->warm / per) + 1, &per)) < 0)
        return rc;
    uint64_t big = (uint64_t)llround((double)c->budget / per);
    return time_batch(self, fn, ctx, big ? big : 1, out);
}

/* ------------------------------------------------------------ scenarios */

enum {
    SC_CALL_SMALL,
    SC_CALL_1MB,
    SC_CALL_PAR,
    SC_PINGPONG,
    SC_MSG_ONE,
    SC_MSG_CROSS,
    SC_SPAWN,
    N_SC
};

#define MAX_METRICS 6

/* One libotp round of one scenario: what the driver process fills in. */
typedef struct job {
    otp_runtime *rt;
    const cfg *c;
    int sc;
    double v[MAX_METRICS];
    int rc;
    const char *what; /* where rc came from */
    bool by_ref;      /* call_1mb: the server saw the client's bytes */
    sem_t done;
} job;

typedef struct call_ctx {
    otp_term server, request, expect;
} call_ctx;

static int batch_call(otp_proc *self, void *arg, uint64_t n)
{
    call_ctx *cc = arg;
    otp_arena *a = otp_proc_arena(self);
    for (uint64_t i = 0; i < n; i++) {
        otp_term reply;
        int rc = otp_gen_server_call(self, cc->server, cc->request, OTP_GS_DEFAULT_TIMEOUT, &reply);
        if (rc < 0)
            return rc;
        if (!otp_exact_eq(reply, cc->expect))
            return -OTP_EBADARG;
        otp_arena_reset(a);
    }
    return 0;
}

static int batch_ping(otp_proc *self, void *arg, uint64_t n)
{
    otp_term echo = *(otp_term *)arg, me = otp_self(self);
    otp_arena *a = otp_proc_arena(self);
    for (uint64_t i = 0; i < n; i++) {
        otp_term m;
        int rc = otp_send(self, echo, OTP_TUPLE(a, a_ping, me));
        if (rc < 0)
            return rc;
        if ((rc = otp_receive(self, NULL, NULL, OTP_INFINITY, &m)) < 0)
            return rc;
        if (m != a_pong)
            return -OTP_EBADARG;
        otp_arena_reset(a);
    }
    return 0;
}

typedef struct stream_ctx {
    otp_term recv;
    unsigned yield_every;
} stream_ctx;

/* N {msg, I} to the counter, then {sync, Self}: the answer {count, N} comes
 * once the counter has taken all N out of its mailbox. C cannot be
 * preempted, so the sender yields every yield_every sends (Erlang's
 * scheduler preempts it after its reductions). */
static int batch_stream(otp_proc *self, void *arg, uint64_t n)
{
    stream_ctx *sc = arg;
    otp_arena *a = otp_proc_arena(self);
    for (uint64_t i = 0; i < n; i++) {
        int rc = otp_send(self, sc->recv, OTP_TUPLE(a, a_msg, otp_small((int64_t)i)));
        if (rc < 0)
            return rc;
        if ((i + 1) % sc->yield_every == 0) {
            otp_arena_reset(a);
            otp_yield(self);
        }
    }
    otp_term m;
    int rc = otp_send(self, sc->recv, OTP_TUPLE(a, a_sync, otp_self(self)));
    if (rc < 0 || (rc = otp_receive(self, NULL, NULL, OTP_INFINITY, &m)) < 0)
        return rc;
    if (otp_tuple_arity(m) != 2 || otp_tuple_get(m, 0) != a_count ||
        otp_tuple_get(m, 1) != otp_small((int64_t)n))
        return -OTP_EBADARG;
    return 0;
}

/* The echo of pingpong_cross: {ping, From} -> pong. */
static void echo_main(otp_proc *self, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    for (;;) {
        otp_term m;
        if (otp_receive(self, NULL, NULL, OTP_INFINITY, &m) < 0 || m == a_stop)
            return;
        if (otp_tuple_arity(m) == 2 && otp_tuple_get(m, 0) == a_ping)
            otp_send(self, otp_tuple_get(m, 1), a_pong);
        otp_arena_reset(a);
    }
}

/* The counter of msg_one / msg_cross. */
static void counter_main(otp_proc *self, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    int64_t count = 0;
    for (;;) {
        otp_term m;
        if (otp_receive(self, NULL, NULL, OTP_INFINITY, &m) < 0 || m == a_stop)
            return;
        size_t ar = otp_tuple_arity(m);
        otp_term tag = ar == 2 ? otp_tuple_get(m, 0) : OTP_NONE;
        if (tag == a_msg) {
            count++;
        } else if (tag == a_sync) {
            otp_send(self, otp_tuple_get(m, 1), OTP_TUPLE(a, a_count, otp_small(count)));
            count = 0;
        }
        otp_arena_reset(a);
    }
}

#define FAIL(j, rc_, what_)                                                                        \
    do {                                                                                           \
        (j)->rc = (rc_);                                                                           \
        (j)->what = (what_);                                                                       \
        goto out;                                                                                  \
    } while (0)

/* The driver of the one-process scenarios, on shard 0. */
static void driver_main(otp_proc *self, void *arg)
{
    job *j = arg;
    otp_runtime *rt = j->rt;
    otp_arena *keep = otp_arena_new(); /* the request: built once (Erlang: a literal) */
    otp_term peer = OTP_NONE;
    int rc = 0;
    double per = 0;
    if (!keep)
        FAIL(j, -OTP_ENOMEM, "arena");
    switch (j->sc) {
    case SC_CALL_SMALL:
    case SC_CALL_1MB: {
        otp_gen_server_opts o = {.shard = 0};
        if ((rc = otp_gen_server_start(rt, self, &srv_ops, OTP_NIL, &o, &peer, NULL)) != 0)
            FAIL(j, rc < 0 ? rc : -OTP_EBADARG, "otp_gen_server_start");
        call_ctx cc = {.server = peer};
        const uint8_t *bytes = NULL;
        if (j->sc == SC_CALL_SMALL) {
            cc.request = OTP_TUPLE(keep, a_get, otp_small(42));
            cc.expect = OTP_TUPLE(keep, a_ok, otp_small(42));
        } else {
            uint8_t *d;
            cc.request = otp_binary_new(keep, MIB, &d);
            if (cc.request == OTP_NONE)
                FAIL(j, -OTP_ENOMEM, "otp_binary_new");
            for (size_t i = 0; i < MIB; i++)
                d[i] = (uint8_t)(i * 131 + (i >> 11));
            bytes = d;
            cc.expect = otp_small(MIB);
            atomic_store(&g_seen_bin, NULL);
        }
        rc = measure(self, batch_call, &cc, j->c, &per);
        if (j->sc == SC_CALL_1MB)
            j->by_ref = atomic_load(&g_seen_bin) == bytes;
        int rs = otp_gen_server_stop(self, peer, OTP_ATOM_NORMAL, 5000);
        if (rc < 0)
            FAIL(j, rc, "otp_gen_server_call");
        if (rs < 0)
            FAIL(j, rs, "otp_gen_server_stop");
        j->v[0] = per;
        if (j->sc == SC_CALL_1MB)
            j->v[1] = MIB * 1e9 / per;
        break;
    }
    case SC_PINGPONG: {
        otp_spawn_opts o = {.shard = 1};
        if ((rc = otp_spawn(rt, self, echo_main, NULL, &o, &peer, NULL)) < 0)
            FAIL(j, rc, "otp_spawn");
        rc = measure(self, batch_ping, &peer, j->c, &per);
        otp_send(self, peer, a_stop);
        if (rc < 0)
            FAIL(j, rc, "ping");
        j->v[0] = per;
        break;
    }
    case SC_MSG_ONE:
    case SC_MSG_CROSS: {
        otp_spawn_opts o = {.shard = j->sc == SC_MSG_ONE ? 0 : 1};
        if ((rc = otp_spawn(rt, self, counter_main, NULL, &o, &peer, NULL)) < 0)
            FAIL(j, rc, "otp_spawn");
        stream_ctx sc = {peer, j->c->yield_every};
        rc = measure(self, batch_stream, &sc, j->c, &per);
        otp_send(self, peer, a_stop);
        if (rc < 0)
            FAIL(j, rc, "stream");
        j->v[0] = 1e9 / per;
        j->v[1] = per;
        break;
    }
    }
out:
    otp_arena_free(keep);
    sem_post(&j->done);
}

static int run_driver(otp_runtime *rt, job *j)
{
    sem_init(&j->done, 0, 0);
    otp_spawn_opts o = {.shard = 0};
    int rc = otp_spawn(rt, NULL, driver_main, j, &o, NULL, NULL);
    if (rc < 0) {
        j->rc = rc;
        j->what = "otp_spawn";
    } else {
        while (sem_wait(&j->done) < 0 && errno == EINTR)
            ;
    }
    sem_destroy(&j->done);
    return j->rc;
}

/* ---- call_par: 120 pairs, pair I (client and server) on shard I mod 2. */

typedef struct par_client {
    _Alignas(64) _Atomic uint64_t calls; /* written by its client only: a line of its own */
    otp_term server;
    int rc;
    struct par_state *st;
} par_client;

typedef struct par_state {
    par_client cl[PAIRS];
    _Atomic int stop;
    _Atomic int running; /* clients alive, plus one for the coordinator */
    sem_t all_done;      /* posted by whoever takes running to 0 */
} par_state;

static void par_main(otp_proc *self, void *arg)
{
    par_client *c = arg;
    par_state *st = c->st;
    otp_arena *a = otp_proc_arena(self);
    otp_term want = otp_small(c - st->cl); /* {get, I} -> {ok, I} */
    otp_term req = OTP_TUPLE(a, a_get, want);
    uint64_t n = 0;
    while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
        otp_term reply;
        int rc = otp_gen_server_call(self, c->server, req, OTP_GS_DEFAULT_TIMEOUT, &reply);
        if (rc < 0 || otp_tuple_arity(reply) != 2 || otp_tuple_get(reply, 0) != a_ok ||
            otp_tuple_get(reply, 1) != want) {
            c->rc = rc < 0 ? rc : -OTP_EBADARG;
            break;
        }
        atomic_store_explicit(&c->calls, ++n, memory_order_relaxed);
        /* the arena holds every call's terms: reset it now and then, and
         * build the request again after */
        if ((n & 63) == 0) {
            otp_arena_reset(a);
            req = OTP_TUPLE(a, a_get, want);
        }
    }
    if (atomic_fetch_sub(&st->running, 1) == 1)
        sem_post(&st->all_done);
}

static uint64_t par_sum(par_state *st)
{
    uint64_t s = 0;
    for (int i = 0; i < PAIRS; i++)
        s += atomic_load_explicit(&st->cl[i].calls, memory_order_relaxed);
    return s;
}

static int run_call_par(otp_runtime *rt, const cfg *c, job *j)
{
    par_state *st = aligned_alloc(64, sizeof *st);
    if (!st)
        return j->rc = -OTP_ENOMEM;
    memset(st, 0, sizeof *st);
    sem_init(&st->all_done, 0, 0);
    int rc = 0, started = 0;
    otp_term servers[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        otp_gen_server_opts o = {.shard = i % SHARDS};
        if ((rc = otp_gen_server_start(rt, NULL, &srv_ops, OTP_NIL, &o, &servers[i], NULL)) != 0) {
            j->what = "otp_gen_server_start";
            goto stop_servers;
        }
        started++;
    }
    atomic_store(&st->running, 1);
    int spawned = 0;
    for (int i = 0; i < PAIRS; i++) {
        st->cl[i].server = servers[i];
        st->cl[i].st = st;
        otp_spawn_opts o = {.shard = i % SHARDS};
        atomic_fetch_add(&st->running, 1);
        if ((rc = otp_spawn(rt, NULL, par_main, &st->cl[i], &o, NULL, NULL)) < 0) {
            atomic_fetch_sub(&st->running, 1);
            j->what = "otp_spawn";
            break;
        }
        spawned++;
    }
    if (rc == 0) {
        sleep_ns(c->par_warm);
        uint64_t c0 = par_sum(st), t0 = now_ns();
        sleep_ns(c->par);
        uint64_t c1 = par_sum(st), t1 = now_ns();
        j->v[0] = (double)(c1 - c0) * 1e9 / (double)(t1 - t0);
    }
    atomic_store(&st->stop, 1);
    if (atomic_fetch_sub(&st->running, 1) != 1)
        while (sem_wait(&st->all_done) < 0 && errno == EINTR)
            ;
    for (int i = 0; i < spawned && rc == 0; i++)
        if (st->cl[i].rc < 0) {
            rc = st->cl[i].rc;
            j->what = "otp_gen_server_call";
        }
stop_servers:
    for (int i = 0; i < started; i++) {
        int rs = otp_runtime_stop_server(rt, servers[i], OTP_ATOM_NORMAL, 5000);
        if (rs < 0 && rc == 0) {
            rc = rs;
            j->what = "otp_runtime_stop_server";
        }
    }
    sem_destroy(&st->all_done);
    free(st);
    return j->rc = rc < 0 ? rc : (rc > 0 ? -OTP_EBADARG : 0);
}

/* ---- spawn_idle: a runtime of its own per round, so that stopping it is
 * the teardown and its memory is measured from a clean start. */

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/* Bytes malloc has handed out and not had back (every arena, and mmap'd
 * chunks): unlike RSS it does not depend on what the allocator caches. */
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

typedef struct spawn_job {
    otp_runtime *rt;
    size_t n;
    otp_term *pids;
    uint64_t ns;
    int rc;
    sem_t done;
} spawn_job;

static void spawner_main(otp_proc *self, void *arg)
{
    spawn_job *sj = arg;
    otp_gen_server_opts o = {.shard = 0};
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < sj->n; i++) {
        int rc = otp_gen_server_start(sj->rt, self, &srv_ops, OTP_NIL, &o, &sj->pids[i], NULL);
        if (rc != 0) {
            sj->rc = rc < 0 ? rc : -OTP_EBADARG;
            fprintf(stderr, "bench_runtime: spawn_idle: start %zu of %zu failed: %d\n", i + 1,
                    sj->n, rc);
            break;
        }
    }
    sj->ns = now_ns() - t0;
    sem_post(&sj->done);
}

enum { SP_SPAWNS, SP_RSS, SP_HEAP, SP_INFO, SP_STOPS, SP_LEFT };

static int run_spawn_idle(const cfg *c, job *j)
{
    size_t n = c->spawn_n;
    spawn_job sj = {.n = n};
    sj.pids = malloc(n * sizeof *sj.pids);
    if (!sj.pids)
        return j->rc = -OTP_ENOMEM;
    memset(sj.pids, 0, n * sizeof *sj.pids); /* touched: not part of the delta */
    malloc_trim(0);
    size_t heap_base = heap_in_use();
    otp_runtime_config rc_cfg = {.shards = SHARDS};
    int rc = otp_runtime_new(&sj.rt, &rc_cfg);
    if (rc < 0 || (rc = otp_runtime_start(sj.rt)) < 0) {
        free(sj.pids);
        j->what = "otp_runtime_new/start";
        return j->rc = rc;
    }
    sem_init(&sj.done, 0, 0);
    /* Let the shard threads settle (their first allocations, stacks), then
     * take the "before" figures. */
    sleep_ns(20000000);
    malloc_trim(0);
    long rss0 = rss_bytes();
    size_t heap0 = heap_in_use();
    otp_spawn_opts o = {.shard = 0};
    if ((rc = otp_spawn(sj.rt, NULL, spawner_main, &sj, &o, NULL, NULL)) < 0) {
        j->what = "otp_spawn";
    } else {
        while (sem_wait(&sj.done) < 0 && errno == EINTR)
            ;
        rc = sj.rc;
        j->what = "otp_gen_server_start";
    }
    long rss1 = rss_bytes();
    size_t heap1 = heap_in_use();
    /* process_info of a sample, spread over the whole range */
    size_t info_sum = 0, info_n = 0;
    for (size_t i = 0; rc == 0 && i < n; i += n / SAMPLE ? n / SAMPLE : 1) {
        otp_proc_info pi;
        if (otp_process_info(sj.rt, NULL, sj.pids[i], &pi) == 0) {
            info_sum += pi.memory;
            info_n++;
        }
    }
    uint64_t t0 = now_ns();
    int rs = otp_runtime_stop(sj.rt);
    uint64_t stop_ns = now_ns() - t0;
    otp_runtime_free(sj.rt);
    sem_destroy(&sj.done);
    free(sj.pids);
    malloc_trim(0);
    size_t heap2 = heap_in_use();
    if (rc == 0 && rs < 0) {
        rc = rs;
        j->what = "otp_runtime_stop";
    }
    if (rc < 0)
        return j->rc = rc;
    j->v[SP_SPAWNS] = (double)n * 1e9 / (double)sj.ns;
    j->v[SP_RSS] = (double)(rss1 - rss0) / (double)n;
    j->v[SP_HEAP] = ((double)heap1 - (double)heap0) / (double)n;
    j->v[SP_INFO] = info_n ? (double)info_sum / (double)info_n : 0;
    j->v[SP_STOPS] = (double)n * 1e9 / (double)stop_ns;
    j->v[SP_LEFT] = ((double)heap2 - (double)heap_base) / (double)n;
    return 0;
}

/* ------------------------------------------------------------ what is reported */

typedef enum { K_TIME, K_RATE, K_BYTES } kind;
typedef enum { T_NONE, T_TENTH, T_KB, T_MSPS } target;

typedef struct metric {
    const char *name;
    kind k;
    int erl, erl_alt; /* indexes into the scenario's erl[], -1: none */
    target t;
    bool no_ratio;
} metric;

typedef struct scenario {
    const char *name;
    bool cross; /* also run on Erlang node B (OTP's default busy-waiting) */
    int nm;
    metric m[MAX_METRICS];
    int ne;
    const char *erl[MAX_METRICS]; /* the metrics bench_runtime.erl reports */
} scenario;

static const scenario scenarios[N_SC] = {
    [SC_CALL_SMALL] = {"call_small",
                       false,
                       1,
                       {{"ns_per_call", K_TIME, 0, -1, T_TENTH, false}},
                       1,
                       {"ns_per_call"}},
    [SC_CALL_1MB] = {"call_1mb",
                     false,
                     2,
                     {{"ns_per_call", K_TIME, 0, -1, T_NONE, false},
                      {"bytes_per_s", K_RATE, 1, -1, T_NONE, false}},
                     2,
                     {"ns_per_call", "bytes_per_s"}},
    [SC_CALL_PAR] = {"call_par",
                     true,
                     1,
                     {{"calls_per_s", K_RATE, 0, 1, T_NONE, false}},
                     2,
                     {"calls_per_s", "calls_per_s_pinned"}},
    [SC_PINGPONG] = {"pingpong_cross",
                     true,
                     1,
                     {{"ns_per_round_trip", K_TIME, 0, -1, T_NONE, false}},
                     1,
                     {"ns_per_round_trip"}},
    [SC_MSG_ONE] = {"msg_one",
                    false,
                    2,
                    {{"msgs_per_s", K_RATE, 0, -1, T_NONE, false},
                     {"ns_per_msg", K_TIME, 1, -1, T_NONE, false}},
                    2,
                    {"msgs_per_s", "ns_per_msg"}},
    [SC_MSG_CROSS] = {"msg_cross",
                      true,
                      2,
                      {{"msgs_per_s", K_RATE, 0, -1, T_NONE, false},
                       {"ns_per_msg", K_TIME, 1, -1, T_NONE, false}},
                      2,
                      {"msgs_per_s", "ns_per_msg"}},
    [SC_SPAWN] = {"spawn_idle",
                  false,
                  6,
                  {[SP_SPAWNS] = {"spawns_per_s", K_RATE, 0, -1, T_MSPS, false},
                   [SP_RSS] = {"bytes_per_proc (RSS)", K_BYTES, 1, -1, T_KB, false},
                   [SP_HEAP] = {"heap_bytes_per_proc (malloc)", K_BYTES, 1, -1, T_KB, false},
                   [SP_INFO] = {"info_bytes_per_proc", K_BYTES, 2, -1, T_NONE, false},
                   [SP_STOPS] = {"stops_per_s", K_RATE, 3, -1, T_NONE, false},
                   [SP_LEFT] = {"leftover_bytes_per_proc", K_BYTES, 4, -1, T_NONE, true}},
                  5,
                  {"spawns_per_s", "bytes_per_proc", "proc_bytes_per_proc", "kills_per_s",
                   "leftover_bytes_per_proc"}},
};

static int scenario_index(const char *name)
{
    for (int s = 0; s < N_SC; s++)
        if (strcmp(scenarios[s].name, name) == 0)
            return s;
    return -1;
}

/* ------------------------------------------------------------ the Erlang side */

enum { NODE_A, NODE_B, N_NODES };

typedef struct erl_peer {
    const char *label;
    pid_t pid;
    FILE *in;  /* its stdout */
    FILE *out; /* its stdin */
    bool ok;
    char pinning[8];
} erl_peer;

static void erl_start(erl_peer *e, const char *label, const char *erl, const char *beam_dir,
                      bool busy_wait_default)
{
    int to_erl[2], from_erl[2];
    memset(e, 0, sizeof *e);
    e->label = label;
    /* Node A: no busy-waiting schedulers, which would take the CPU the C
     * side measures on. Node B: OTP's default spinning (the cross
     * scenarios' best case). */
    char *argv_a[] = {
        (char *)erl, "-noshell",      "+S",   "2",  "+sbwt",   "none", "+sbwtdcpu",
        "none",      "+sbwtdio",      "none", "+P", "2000000", "-pa",  (char *)beam_dir,
        "-run",      "bench_runtime", "main", NULL};
    char *argv_b[] = {(char *)erl, "-noshell",      "+S",   "2", "-pa", (char *)beam_dir,
                      "-run",      "bench_runtime", "main", NULL};
    /* close-on-exec: a node started later must not hold this one's stdin
     * open, or this one never sees EOF (its dup2'd copies stay open) */
    if (pipe2(to_erl, O_CLOEXEC) < 0 || pipe2(from_erl, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_erl[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_erl[1], 1);
    posix_spawn_file_actions_addclose(&fa, to_erl[1]);
    posix_spawn_file_actions_addclose(&fa, from_erl[0]);
    int rc = posix_spawnp(&e->pid, erl, &fa, NULL, busy_wait_default ? argv_b : argv_a, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(to_erl[0]);
    close(from_erl[1]);
    if (rc != 0) {
        fprintf(stderr, "bench_runtime: cannot start %s: %s\n", erl, strerror(rc));
        e->pid = 0;
        close(to_erl[1]);
        close(from_erl[0]);
        return;
    }
    e->in = fdopen(from_erl[0], "r");
    e->out = fdopen(to_erl[1], "w");
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, e->in) > 0) {
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, "ready") == 0) {
            e->ok = true;
            break;
        }
        sscanf(line, "info pinning %7s", e->pinning);
        fprintf(stderr, "erl %s: %s\n", label, line);
    }
    free(line);
    if (!e->ok)
        fprintf(stderr, "bench_runtime: Erlang node %s did not start\n", label);
}

static void erl_stop(erl_peer *e)
{
    if (e->out)
        fclose(e->out); /* EOF on its stdin: it halts */
    if (e->in)
        fclose(e->in);
    if (e->pid > 0)
        waitpid(e->pid, NULL, 0);
}

/* One round of scenario sc on e: res[k] gets erl metric k (NAN if not
 * reported). Returns 0, or -1 if the node died or answered an error. */
static int erl_round(erl_peer *e, int sc, bool quick, unsigned ms, double *res, char *err,
                     size_t errcap)
{
    const scenario *s = &scenarios[sc];
    for (int k = 0; k < s->ne; k++)
        res[k] = NAN;
    if (!e->ok)
        return -1;
    if (ms)
        fprintf(e->out, "run %s 1 %d %u\n", s->name, quick, ms);
    else
        fprintf(e->out, "run %s 1 %d\n", s->name, quick);
    fflush(e->out);
    char *line = NULL, w[16], name[64], mname[64], done[80];
    size_t cap = 0;
    int rc = -1;
    bool failed = false;
    snprintf(done, sizeof done, "done %s", s->name);
    while (getline(&line, &cap, e->in) > 0) {
        double v;
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, done) == 0) {
            rc = failed ? -1 : 0;
            break;
        }
        if (sscanf(line, "%15s %63s %63s %lf", w, name, mname, &v) == 4 &&
            strcmp(w, "result") == 0 && strcmp(name, s->name) == 0) {
            for (int k = 0; k < s->ne; k++)
                if (strcmp(mname, s->erl[k]) == 0)
                    res[k] = v;
        } else if (strncmp(line, "error ", 6) == 0) {
            failed = true;
            snprintf(err, errcap, "%s", line + 6);
            fprintf(stderr, "erl %s: %s\n", e->label, line);
        } else {
            fprintf(stderr, "erl %s: %s\n", e->label, line);
        }
    }
    free(line);
    if (rc < 0 && !failed) {
        fprintf(stderr, "bench_runtime: Erlang node %s died\n", e->label);
        e->ok = false;
    }
    return rc;
}

/* ------------------------------------------------------------ reporting */

/* The median of the values that are not NAN (NAN if none). */
static void fmt_val(char *out, size_t cap, double v, kind k)
{
    if (isnan(v))
        snprintf(out, cap, "n/a");
    else if (k == K_RATE && v >= 1e9)
        snprintf(out, cap, "%.2fG", v / 1e9);
    else if (k == K_RATE && v >= 1e6)
        snprintf(out, cap, "%.2fM", v / 1e6);
    else if (k == K_RATE && v >= 1e4)
        snprintf(out, cap, "%.1fk", v / 1e3);
    else if (fabs(v) < 100)
        snprintf(out, cap, "%.1f", v);
    else
        snprintf(out, cap, "%.0f", v);
}

/* libotp's advantage: >1 when libotp is better (less time or memory, a
 * higher rate). */
static double advantage(double ours, double theirs, kind k)
{
    if (isnan(ours) || isnan(theirs) || ours <= 0 || theirs <= 0)
        return NAN;
    return k == K_RATE ? ours / theirs : theirs / ours;
}

static const char *target_text(target t, double ours, double adv, char *buf, size_t cap)
{
    switch (t) {
    case T_NONE:
        return "—";
    case T_TENTH:
        if (isnan(adv))
            return "n/a (≥ 10x)";
        snprintf(buf, cap, "%s (≥ 10x)", adv >= 10 ? "met" : "missed");
        return buf;
    case T_KB:
        if (isnan(ours))
            return "n/a (≤ 1024 B)";
        snprintf(buf, cap, "%s (≤ 1024 B)", ours <= 1024 ? "met" : "missed");
        return buf;
    case T_MSPS:
        if (isnan(ours))
            return "n/a (> 1M/s/core)";
        snprintf(buf, cap, "%s (> 1M/s/core)", ours > 1e6 ? "met" : "missed");
        return buf;
    }
    return "—";
}

typedef struct results {
    bool ran[N_SC];
    int rounds[N_SC];
    double c[N_SC][MAX_METRICS][MAX_ROUNDS];
    double e[N_NODES][N_SC][MAX_METRICS][MAX_ROUNDS];
    unsigned ring; /* --ring, or 0 */
    bool pinned;   /* the main runtime's shards are pinned (the default) */
    bool unpinned; /* the cross scenarios also ran on a runtime of unpinned shards */
    bool by_ref;
    bool by_ref_known;
    char erl_err[N_SC][128];
} results;

/* Metrics of scenario s: its own, then for the cross scenarios the same
 * again measured on the runtime of unpinned shards. */
static int n_rows(const results *r, const scenario *sc)
{
    return sc->nm * (sc->cross && r->unpinned ? 2 : 1);
}

static const char *row_label(const scenario *sc, int m, char *buf, size_t cap)
{
    if (m < sc->nm)
        return sc->m[m].name;
    snprintf(buf, cap, "%s, shards unpinned", sc->m[m % sc->nm].name);
    return buf;
}

static void report(const results *r, const cfg *c, bool quick, int rounds, int spawn_rounds,
                   const erl_peer *nodes, bool erl_ran, bool node_b)
{
    printf("## Runtime: libotp vs Erlang/OTP\n\n");
    printf("libotp: one runtime of %d shards, %s%s. Erlang: %s. Median of %d interleaved rounds "
           "(spawn_idle: %d); %s; batches of %.0f ms after a %.0f ms warm-up, call_par windows of "
           "%.0f ms.\n\n",
           SHARDS, r->pinned ? "each thread pinned to its core (the default)" : "unpinned (no_pin)",
           r->unpinned ? "; the cross scenarios (call_par, pingpong_cross, msg_cross) also on a "
                         "second runtime of 2 unpinned shards (no_pin), as Erlang's schedulers "
                         "are unbound by default"
                       : "",
           !erl_ran ? "not run"
           : node_b ? "node A `+S 2 +sbwt none +sbwtdcpu none +sbwtdio none +P 2000000`, and for "
                      "the cross scenarios also node B `+S 2` (OTP's default busy-waiting); the "
                      "better of A and B is shown, marked (B) when it was B"
                    : "node `+S 2 +sbwt none +sbwtdcpu none +sbwtdio none +P 2000000`",
           rounds, spawn_rounds, quick ? "quick" : "full", (double)c->budget / 1e6,
           (double)c->warm / 1e6, (double)c->par / 1e6);
    printf("| scenario | metric | libotp | Erlang | ratio | target met? |\n");
    printf("| --- | --- | ---: | ---: | ---: | --- |\n");
    for (int s = 0; s < N_SC; s++) {
        if (!r->ran[s])
            continue;
        const scenario *sc = &scenarios[s];
        int n = r->rounds[s];
        for (int m = 0; m < n_rows(r, sc); m++) {
            const metric *mt = &sc->m[m % sc->nm];
            char lb[96];
            double ours = median_range(r->c[s][m], n, NULL, NULL);
            double theirs = NAN;
            int from = -1;
            for (int node = 0; node < N_NODES; node++) {
                for (int alt = 0; alt < 2; alt++) {
                    int idx = alt ? mt->erl_alt : mt->erl;
                    if (idx < 0)
                        continue;
                    double v = median_range(r->e[node][s][idx], n, NULL, NULL);
                    if (isnan(v))
                        continue;
                    bool better = isnan(theirs) || (mt->k == K_RATE ? v > theirs : v < theirs);
                    if (better) {
                        theirs = v;
                        from = node;
                    }
                }
            }
            char co[32], eo[48], ro[32], tb[64];
            fmt_val(co, sizeof co, ours, mt->k);
            fmt_val(eo, sizeof eo, theirs, mt->k);
            if (from == NODE_B)
                strncat(eo, " (B)", sizeof eo - strlen(eo) - 1);
            double adv = advantage(ours, theirs, mt->k);
            if (mt->no_ratio || isnan(adv))
                snprintf(ro, sizeof ro, "—");
            else
                snprintf(ro, sizeof ro, "%.2fx", adv);
            printf("| %s | %s | %s | %s | %s | %s |\n", sc->name, row_label(sc, m, lb, sizeof lb),
                   co, eo, ro, target_text(m < sc->nm ? mt->t : T_NONE, ours, adv, tb, sizeof tb));
        }
    }
    printf("\nratio: Erlang/libotp for times and bytes, libotp/Erlang for rates (above 1: libotp "
           "is better).\n");

    printf("\nRound-to-round spread (min–max):\n\n");
    printf("| scenario | metric | libotp | Erlang A | Erlang B |\n");
    printf("| --- | --- | --- | --- | --- |\n");
    for (int s = 0; s < N_SC; s++) {
        if (!r->ran[s])
            continue;
        const scenario *sc = &scenarios[s];
        int n = r->rounds[s];
        for (int m = 0; m < n_rows(r, sc); m++) {
            const metric *mt = &sc->m[m % sc->nm];
            char lb[96];
            char cell[3][80];
            double lo, hi;
            char a[32], b[32];
            median_range(r->c[s][m], n, &lo, &hi);
            fmt_val(a, sizeof a, lo, mt->k);
            fmt_val(b, sizeof b, hi, mt->k);
            snprintf(cell[0], sizeof cell[0], "%s–%s", a, b);
            for (int node = 0; node < N_NODES; node++) {
                snprintf(cell[1 + node], sizeof cell[0], "—");
                if (mt->erl < 0)
                    continue;
                char txt[80] = "";
                for (int alt = 0; alt < 2; alt++) {
                    int idx = alt ? mt->erl_alt : mt->erl;
                    if (idx < 0)
                        continue;
                    median_range(r->e[node][s][idx], n, &lo, &hi);
                    if (isnan(lo))
                        continue;
                    fmt_val(a, sizeof a, lo, mt->k);
                    fmt_val(b, sizeof b, hi, mt->k);
                    size_t l = strlen(txt);
                    snprintf(txt + l, sizeof txt - l, "%s%s%s–%s", l ? "; " : "",
                             alt ? "pinned " : "", a, b);
                }
                if (txt[0])
                    snprintf(cell[1 + node], sizeof cell[0], "%s", txt);
            }
            printf("| %s | %s | %s | %s | %s |\n", sc->name, row_label(sc, m, lb, sizeof lb),
                   cell[0], cell[1], cell[2]);
        }
    }

    printf("\nNotes:\n\n");
    if (r->ran[SC_CALL_1MB])
        printf("- call_1mb: the 1 MiB request is a refcounted binary in libotp (as a refc binary "
               "in Erlang): a message copies its header and takes a reference; the server %s the "
               "client's bytes (same data pointer).\n",
               !r->by_ref_known ? "(not checked)"
               : r->by_ref      ? "saw"
                                : "did NOT see");
    if (r->ran[SC_CALL_PAR]) {
        printf("- call_par: libotp pair I (client and server) on shard I mod 2. Erlang: the "
               "better of OTP's own placement and pair I on scheduler 1 + I rem 2");
        for (int node = 0; node < N_NODES; node++) {
            double d = median_range(r->e[node][SC_CALL_PAR][0], r->rounds[SC_CALL_PAR], NULL, NULL);
            double p = median_range(r->e[node][SC_CALL_PAR][1], r->rounds[SC_CALL_PAR], NULL, NULL);
            if (isnan(d) && isnan(p))
                continue;
            char a[32], b[32];
            fmt_val(a, sizeof a, d, K_RATE);
            fmt_val(b, sizeof b, p, K_RATE);
            printf("; node %s: %s default, %s pinned", node ? "B" : "A", a, b);
        }
        printf(".\n");
    }
    if (r->ran[SC_MSG_ONE] || r->ran[SC_MSG_CROSS])
        printf("- msg_one / msg_cross: the libotp sender calls otp_yield every %u sends (C "
               "cannot be preempted; Erlang's scheduler preempts the sender after its "
               "reductions).\n",
               c->yield_every);
    if (r->ran[SC_SPAWN])
        printf("- spawn_idle: %zu GenServers started one after the other (otp_gen_server_start, "
               "synchronous, trivial init) by one process on shard 0, all on shard 0: 1 shard of "
               "%d used, so spawns_per_s is per core (Erlang: scheduler 1). bytes_per_proc (RSS): "
               "VmRSS after minus before, over N (malloc_trim before; the pid array is "
               "allocated before); heap_bytes_per_proc: malloc's bytes in use (mallinfo2) after "
               "minus before; info_bytes_per_proc: the mean of otp_process_info memory over %d "
               "of them (Erlang column: memory(processes) per process). The Erlang column of both "
               "byte rows is memory(total) per process. stops_per_s: N over the time of "
               "otp_runtime_stop (every server exits with shutdown, then the shard threads are "
               "joined); Erlang: exit(P, kill) on each. leftover: malloc's bytes in use after "
               "otp_runtime_free and malloc_trim, minus before the runtime was made, over N.\n",
               c->spawn_n, SHARDS, SAMPLE);
    if (r->ring)
        printf("- ring_capacity %u (--ring), not the library's default.\n", r->ring);
    for (int s = 0; s < N_SC; s++)
        if (r->erl_err[s][0])
            printf("- %s: the Erlang side answered `error %s`.\n", scenarios[s].name,
                   r->erl_err[s]);
    if (erl_ran && nodes[NODE_A].pinning[0])
        printf("- Erlang spawn_opt {scheduler, N} pinning: %s.\n", nodes[NODE_A].pinning);
    {
        double l[3];
        if (getloadavg(l, 3) == 3)
            printf("- load average at the end: %.2f %.2f %.2f (%ld CPUs online).\n", l[0], l[1],
                   l[2], sysconf(_SC_NPROCESSORS_ONLN));
    }
}

/* ------------------------------------------------------------ main */

/* --tsv: every round's sample for perf/run ("S section row impl round
 * value"), what each row is ("R section row unit better") and the targets
 * of DESIGN.md ("T section row peer need text"; peer "=" for a bound on
 * libotp's own value). Erlang's samples are those of its best placement,
 * as in the table. */
static void tsv_write(const results *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s", path);
    for (int s = 0; s < N_SC; s++) {
        if (!r->ran[s])
            continue;
        const scenario *sc = &scenarios[s];
        int n = r->rounds[s];
        for (int m = 0; m < n_rows(r, sc); m++) {
            const metric *mt = &sc->m[m % sc->nm];
            if (mt->no_ratio)
                continue;
            char row[128];
            snprintf(row, sizeof row, "%s %s%s", sc->name, mt->name, m < sc->nm ? "" : " unpinned");
            fprintf(f, "R\truntime\t%s\t%s\t%s\n", row,
                    mt->k == K_TIME   ? "ns"
                    : mt->k == K_RATE ? "/s"
                                      : "B",
                    mt->k == K_RATE ? "hi" : "lo");
            for (int i = 0; i < n; i++)
                if (!isnan(r->c[s][m][i]))
                    fprintf(f, "S\truntime\t%s\tlibotp\t%d\t%.1f\n", row, i + 1, r->c[s][m][i]);
            const double *best = NULL;
            double bv = NAN;
            for (int node = 0; node < N_NODES; node++)
                for (int alt = 0; alt < 2; alt++) {
                    int idx = alt ? mt->erl_alt : mt->erl;
                    if (idx < 0)
                        continue;
                    double v = median_range(r->e[node][s][idx], n, NULL, NULL);
                    if (!isnan(v) && (isnan(bv) || (mt->k == K_RATE ? v > bv : v < bv))) {
                        bv = v;
                        best = r->e[node][s][idx];
                    }
                }
            for (int i = 0; best && i < n; i++)
                if (!isnan(best[i]))
                    fprintf(f, "S\truntime\t%s\tErlang\t%d\t%.1f\n", row, i + 1, best[i]);
            if (m >= sc->nm)
                continue;
            if (mt->t == T_TENTH)
                fprintf(f, "T\truntime\t%s\tErlang\t10\t≥ 10x Erlang\n", row);
            else if (mt->t == T_KB)
                fprintf(f, "T\truntime\t%s\t=\t<=1024\t≤ 1 KB each\n", row);
            else if (mt->t == T_MSPS)
                fprintf(f, "T\truntime\t%s\t=\t>=1000000\t> 1M/s per core\n", row);
        }
    }
    fclose(f);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_runtime [--quick] [--rounds N] [--ms N] [--no-erlang] [--no-node-b]\n"
            "                     [--scenario NAME]... [--no-pin] [--ring N] [--yield N]\n"
            "                     [--erl PATH] [--beam-dir DIR] [--tsv FILE]\n"
            "  --quick        3 rounds (spawn_idle 2) of 30 ms batches, 100,000 spawns\n"
            "  --rounds N     rounds (default 7, at most %d; spawn_idle: at most 3)\n"
            "  --ms N         time per timed batch / call_par window (default 200 / 1000)\n"
            "  --no-erlang    libotp only\n"
            "  --no-node-b    no second Erlang node with OTP's default busy-waiting\n"
            "  --scenario S   only S (repeatable): call_small call_1mb call_par\n"
            "                 pingpong_cross msg_one msg_cross spawn_idle\n"
            "  --no-pin       the main runtime's shards unpinned (then no second runtime)\n"
            "  --ring N       ring_capacity of the runtimes (default: the library's, 1024)\n"
            "  --yield N      stream senders yield every N sends (default 256)\n"
            "  --tsv FILE     also write every round's sample to FILE (for perf/run)\n",
            MAX_ROUNDS);
    exit(2);
}

int main(int argc, char **argv)
{
    bool quick = false, use_erl = true, node_b = true, no_pin = false;
    uint32_t ring = 0;
    int rounds = -1;
    unsigned ms = 0, yield_every = 0;
    bool sc_on[N_SC] = {0}, any_sc = false;
    const char *erl = BENCH_ERL, *beam_dir = BENCH_BEAM_DIR, *tsv = NULL;
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--tsv") == 0 && k + 1 < argc) {
            tsv = argv[++k];
        } else if (strcmp(argv[k], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[k], "--rounds") == 0 && k + 1 < argc) {
            rounds = atoi(argv[++k]);
        } else if (strcmp(argv[k], "--ms") == 0 && k + 1 < argc) {
            ms = (unsigned)atoi(argv[++k]);
            if (!ms)
                usage();
        } else if (strcmp(argv[k], "--no-erlang") == 0) {
            use_erl = false;
        } else if (strcmp(argv[k], "--ring") == 0 && k + 1 < argc) {
            ring = (uint32_t)atoi(argv[++k]);
        } else if (strcmp(argv[k], "--no-pin") == 0) {
            no_pin = true;
        } else if (strcmp(argv[k], "--no-node-b") == 0) {
            node_b = false;
        } else if (strcmp(argv[k], "--scenario") == 0 && k + 1 < argc) {
            int s = scenario_index(argv[++k]);
            if (s < 0)
                usage();
            sc_on[s] = any_sc = true;
        } else if (strcmp(argv[k], "--yield") == 0 && k + 1 < argc) {
            yield_every = (unsigned)atoi(argv[++k]);
            if (!yield_every)
                usage();
        } else if (strcmp(argv[k], "--erl") == 0 && k + 1 < argc) {
            erl = argv[++k];
        } else if (strcmp(argv[k], "--beam-dir") == 0 && k + 1 < argc) {
            beam_dir = argv[++k];
        } else {
            usage();
        }
    }
    if (rounds < 0)
        rounds = quick ? 3 : 7;
    if (rounds < 1 || rounds > MAX_ROUNDS)
        usage();
    int spawn_rounds = rounds < (quick ? 2 : 3) ? rounds : (quick ? 2 : 3);
    for (int s = 0; s < N_SC; s++)
        sc_on[s] = sc_on[s] || !any_sc;
    cfg c = make_cfg(quick, ms);
    if (yield_every)
        c.yield_every = yield_every;
    signal(SIGPIPE, SIG_IGN);
    atoms_init();

    erl_peer nodes[N_NODES] = {{0}};
    bool erl_ran = false;
    bool want_b = false;
    for (int s = 0; s < N_SC; s++)
        want_b = want_b || (sc_on[s] && scenarios[s].cross);
    node_b = node_b && want_b;
    if (use_erl) {
        char beam[4096];
        snprintf(beam, sizeof beam, "%s/bench_runtime.beam", beam_dir);
        if (!erl[0] || !beam_dir[0] || access(beam, R_OK) != 0) {
            fprintf(stderr,
                    "bench_runtime: no erl or no %s (build the bench_runtime target): "
                    "Erlang column skipped\n",
                    beam);
        } else {
            erl_start(&nodes[NODE_A], "A", erl, beam_dir, false);
            if (node_b)
                erl_start(&nodes[NODE_B], "B", erl, beam_dir, true);
            erl_ran = nodes[NODE_A].ok;
        }
    }
    node_b = node_b && nodes[NODE_B].ok;

    otp_runtime *rt;
    otp_runtime_config rcfg = {.shards = SHARDS, .no_pin = no_pin, .ring_capacity = ring};
    if (ring)
        fprintf(stderr, "bench_runtime: ring_capacity %u (not the default)\n", ring);
    if (otp_runtime_new(&rt, &rcfg) < 0 || otp_runtime_start(rt) < 0)
        die("cannot start the runtime");
    /* The cross scenarios again on shards the kernel may place (and move)
     * as it likes, as Erlang's schedulers are by default: where waking a
     * thread on another CPU is slow (virtual machines), pinning decides. */
    otp_runtime *rt_free = NULL;
    if (want_b && !no_pin) {
        otp_runtime_config fcfg = rcfg;
        fcfg.no_pin = true;
        if (otp_runtime_new(&rt_free, &fcfg) < 0 || otp_runtime_start(rt_free) < 0)
            die("cannot start the second runtime");
    }

    static results r;
    memset(&r, 0, sizeof r);
    for (int s = 0; s < N_SC; s++)
        for (int m = 0; m < MAX_METRICS; m++)
            for (int i = 0; i < MAX_ROUNDS; i++) {
                r.c[s][m][i] = NAN;
                for (int node = 0; node < N_NODES; node++)
                    r.e[node][s][m][i] = NAN;
            }
    r.by_ref = true;
    r.unpinned = rt_free != NULL;
    r.pinned = !no_pin;
    r.ring = ring;

    /* Per scenario, interleaved rounds: libotp, Erlang A, Erlang B (the
     * cross scenarios and call_par), again. */
    for (int s = 0; s < N_SC; s++) {
        if (!sc_on[s])
            continue;
        const scenario *sc = &scenarios[s];
        int n = s == SC_SPAWN ? spawn_rounds : rounds;
        r.ran[s] = true;
        r.rounds[s] = n;
        for (int i = 0; i < n; i++) {
            fprintf(stderr, "bench_runtime: %s round %d/%d\n", sc->name, i + 1, n);
            for (int pass = 0; pass < (sc->cross && rt_free ? 2 : 1); pass++) {
                otp_runtime *on = pass ? rt_free : rt;
                job j = {.rt = on, .c = &c, .sc = s};
                for (int m = 0; m < MAX_METRICS; m++)
                    j.v[m] = NAN;
                int rc = s == SC_CALL_PAR ? run_call_par(on, &c, &j)
                         : s == SC_SPAWN  ? run_spawn_idle(&c, &j)
                                          : run_driver(on, &j);
                if (rc < 0)
                    fprintf(stderr, "bench_runtime: %s: %s failed: %d\n", sc->name,
                            j.what ? j.what : "?", rc);
                else
                    for (int m = 0; m < sc->nm; m++)
                        r.c[s][pass * sc->nm + m][i] = j.v[m];
                if (s == SC_CALL_1MB && rc == 0) {
                    r.by_ref_known = true;
                    r.by_ref = r.by_ref && j.by_ref;
                }
            }
            for (int node = 0; node < N_NODES; node++) {
                if (node == NODE_B && !(sc->cross && node_b))
                    continue;
                double res[MAX_METRICS];
                if (erl_round(&nodes[node], s, quick, ms, res, r.erl_err[s], sizeof r.erl_err[s]) ==
                    0)
                    for (int k = 0; k < sc->ne; k++)
                        r.e[node][s][k][i] = res[k];
                if (node == NODE_B)
                    sleep_ns(100000000); /* B's schedulers spin a while after a run */
            }
        }
    }
    otp_runtime_stop(rt);
    otp_runtime_free(rt);
    if (rt_free) {
        otp_runtime_stop(rt_free);
        otp_runtime_free(rt_free);
    }
    for (int node = 0; node < N_NODES; node++)
        erl_stop(&nodes[node]);
    report(&r, &c, quick, rounds, spawn_rounds, nodes, erl_ran, node_b);
    if (tsv)
        tsv_write(&r, tsv);
    return 0;
}
