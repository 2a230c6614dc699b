/* bench_dist.c — two nodes on loopback, in one run (perf/README.md,
 * "bench_dist"): gen_server calls between nodes with a number, a string,
 * a pid and a 1 MiB binary, 120 callers in parallel, and cast throughput,
 * for every pair of libotp (io_uring, and again on epoll), Erlang and an
 * erl_interface C node (perf/bench_ei_node.c) — beside a raw loopback TCP
 * ping-pong (blocking sockets, 64 bytes) as the floor. Rounds are
 * interleaved (every pair once per round, again); medians and min–max go
 * to stdout as markdown, and with --tsv every round's sample to a file for
 * perf/run.
 *
 * Method, the same on every side: a batch is doubled until it lasts a
 * quarter of the window (the warm-up), then calls are timed one by one
 * for the window (--ms); the mean and the p50/p99/p99.9 of the per-call
 * times are reported; a caller checks every reply equals its request.
 *   usage: bench_dist [--rounds N] [--ms N] [--scenario S]... [--pair P]...
 *                     [--tsv FILE]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "otp.h"

extern char **environ;

#ifndef BENCH_ERL
#define BENCH_ERL ""
#endif
#ifndef BENCH_BEAM_DIR
#define BENCH_BEAM_DIR ""
#endif
#ifndef BENCH_EI_NODE
#define BENCH_EI_NODE "" /* built only where erl_interface is found */
#endif

#define MAX_ROUNDS 15
#define PAIRS      120

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_dist: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static const char *const scenarios[] = {"call_num", "call_str", "call_pid",
                                        "call_1mb", "call_par", "cast"};
enum { N_SC = 6, SC_PAR = 4, SC_CAST = 5 };
/* Client→server pairs, in the order each round runs them. libotp nodes use
 * io_uring, except the _EP pairs, which are the same on epoll. "ei" is
 * bench_ei_node. */
enum { P_LL, P_EE, P_XX, P_LE, P_XE, P_EL, P_EX, P_LL_EP, P_LE_EP, N_PAIRS };
static const char *const pair_names[] = {
    "libotp→libotp", "Erlang→Erlang",       "ei→ei",
    "libotp→Erlang", "ei→Erlang",           "Erlang→libotp",
    "Erlang→ei",     "libotp→libotp epoll", "libotp→Erlang epoll"};
static const char *const pair_codes[] = {"ll", "ee", "xx",       "le",      "xe",
                                         "el", "ex", "ll_epoll", "le_epoll"}; /* --pair */
enum { V_MEAN, V_P50, V_P99, V_P999, N_V }; /* per cell and round */

/* ------------------------------------------------------------ the C server */

static int srv_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    *state = calloc(1, sizeof(int64_t));
    return OTP_GS_INIT_OK;
}

static otp_gs_ret srv_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    int64_t *n = state;
    if (otp_is_tuple(req) && otp_tuple_arity(req) == 1 &&
        otp_tuple_get(req, 0) == otp_atom("count")) {
        otp_term r = otp_int(otp_proc_arena(self), *n);
        *n = 0;
        return otp_gs_reply(r);
    }
    return otp_gs_reply(req);
}

static otp_gs_ret srv_cast(otp_proc *self, otp_term msg, void *state)
{
    ++*(int64_t *)state;
    return otp_gs_noreply();
}

static void srv_terminate(otp_proc *self, otp_term reason, void *state)
{
    free(state);
}

static const otp_gen_server_ops srv_ops = {
    .init = srv_init, .handle_call = srv_call, .handle_cast = srv_cast, .terminate = srv_terminate};

/* ------------------------------------------------------------ the C client */

typedef struct job {
    int sc;
    otp_term server; /* {bench_srv, Node} */
    uint64_t ms;
    double value[N_V];
    int rc;
    sem_t done;
    /* call_par */
    _Atomic uint64_t calls;
    _Atomic int left;
    uint64_t stop;
} job;

static otp_term payload(otp_proc *self, int sc, otp_arena *keep)
{
    switch (sc) {
    case 0:
        return otp_small(42);
    case 1:
        return otp_string(keep, "hello, world");
    case 2:
        return otp_self(self);
    default: {
        static uint8_t mib[1 << 20];
        memset(mib, 7, sizeof mib);
        return otp_binary(keep, mib, sizeof mib);
    }
    }
}

static int call_once(otp_proc *self, job *j, otp_term p)
{
    otp_term r;
    int rc = otp_gen_server_call(self, j->server, p, 60000, &r);
    if (rc < 0)
        return rc;
    if (!otp_exact_eq(r, p))
        return -OTP_EBADARG;
    otp_arena_reset(otp_proc_arena(self));
    return 0;
}

/* Mean and percentiles of the per-call times lat[0..n) (sorted here). */
static void summarize(job *j, uint64_t *lat, size_t n, uint64_t total)
{
    qsort(lat, n, sizeof *lat, cmp_u64);
    j->value[V_MEAN] = (double)total / (double)n;
    j->value[V_P50] = pct(lat, n, 0.5);
    j->value[V_P99] = pct(lat, n, 0.99);
    j->value[V_P999] = pct(lat, n, 0.999);
}

static void seq_main(otp_proc *self, void *arg)
{
    job *j = arg;
    otp_arena *keep = otp_arena_new();
    otp_term p = payload(self, j->sc, keep);
    uint64_t b = 1, want = j->ms * 1000000 / 4;
    int rc = 0;
    for (;;) { /* warm up: double the batch until it lasts a quarter window */
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < b && rc == 0; i++)
            rc = call_once(self, j, p);
        if (rc < 0 || now_ns() - t0 >= want)
            break;
        b *= 2;
    }
    size_t cap = 4096, n = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    uint64_t t0 = now_ns(), end = t0 + j->ms * 1000000, t = t0;
    while (rc == 0 && t < end) {
        rc = call_once(self, j, p);
        uint64_t t1 = now_ns();
        if (n == cap)
            lat = realloc(lat, (cap *= 2) * sizeof *lat);
        lat[n++] = t1 - t;
        t = t1;
    }
    if (rc == 0)
        summarize(j, lat, n, t - t0);
    free(lat);
    j->rc = rc;
    otp_arena_free(keep);
    sem_post(&j->done);
}

static void par_main(otp_proc *self, void *arg)
{
    job *j = arg;
    otp_term x = otp_atom("x");
    uint64_t c = 0;
    while (now_ns() < j->stop) {
        otp_term r;
        if (otp_gen_server_call(self, j->server, x, 60000, &r) < 0) {
            j->rc = -1;
            break;
        }
        c++;
        otp_arena_reset(otp_proc_arena(self));
    }
    atomic_fetch_add(&j->calls, c);
    if (atomic_fetch_sub(&j->left, 1) == 1)
        sem_post(&j->done);
}

static void cast_main(otp_proc *self, void *arg)
{
    job *j = arg;
    otp_term r, count = OTP_TUPLE(otp_proc_arena(self), otp_atom("count"));
    otp_gen_server_call(self, j->server, count, 60000, &r);
    uint64_t n = j->ms * 200 < 1000 ? 1000 : j->ms * 200;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        otp_gen_server_cast(self, j->server, otp_atom("x"));
        if ((i & 255) == 255)
            otp_yield(self);
    }
    int64_t got = 0;
    j->rc = otp_gen_server_call(self, j->server, count, 60000, &r);
    if (j->rc == 0 && (otp_get_int64(r, &got) < 0 || (uint64_t)got != n))
        j->rc = -OTP_EBADARG;
    j->value[V_MEAN] = (double)n / ((double)(now_ns() - t0) / 1e9);
    sem_post(&j->done);
}

static void c_client(otp_runtime *rt, int sc, otp_term node, uint64_t ms, double out[N_V])
{
    job *j = calloc(1, sizeof *j);
    sem_init(&j->done, 0, 0);
    j->sc = sc;
    j->ms = ms;
    otp_arena *a = otp_arena_new();
    j->server = OTP_TUPLE(a, otp_atom("bench_srv"), node);
    otp_term pid;
    if (sc == SC_PAR) {
        j->stop = now_ns() + ms * 1000000;
        atomic_store(&j->left, PAIRS);
        uint64_t t0 = now_ns();
        for (int i = 0; i < PAIRS; i++) {
            otp_spawn_opts so = {.shard = OTP_SHARD_NEXT};
            if (otp_spawn(rt, NULL, par_main, j, &so, &pid, NULL) < 0)
                die("spawn failed");
        }
        sem_wait(&j->done);
        j->value[V_MEAN] = (double)atomic_load(&j->calls) / ((double)(now_ns() - t0) / 1e9);
    } else {
        otp_spawn_opts so = {.shard = 0};
        if (otp_spawn(rt, NULL, sc == SC_CAST ? cast_main : seq_main, j, &so, &pid, NULL) < 0)
            die("spawn failed");
        sem_wait(&j->done);
    }
    for (int k = 0; k < N_V; k++)
        out[k] = j->rc == 0 ? j->value[k] : NAN;
    if (j->rc)
        fprintf(stderr, "bench_dist: %s: libotp client failed: %d\n", scenarios[sc], j->rc);
    sem_destroy(&j->done);
    otp_arena_free(a);
    free(j);
}

/* ------------------------------------------------------------ Erlang and ei nodes */

typedef struct peer {
    pid_t pid;
    FILE *in, *out;
} peer;

static void peer_start(peer *e, const char *what, char *const argv[])
{
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
        die("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    if (posix_spawn(&e->pid, argv[0], &fa, NULL, argv, environ) != 0)
        die("cannot start %s", argv[0]);
    posix_spawn_file_actions_destroy(&fa);
    close(to[0]);
    close(from[1]);
    e->in = fdopen(from[0], "r");
    e->out = fdopen(to[1], "w");
    char line[256];
    while (fgets(line, sizeof line, e->in))
        if (strncmp(line, "ready", 5) == 0)
            return;
    die("%s did not start", what);
}

static void erl_start(peer *e, const char *sname, const char *cookie, const char *entry)
{
    /* no busy-waiting schedulers: they would take the CPU the other side
     * measures on (as bench_runtime's node A) */
    char *argv[] = {BENCH_ERL,    "-sname",      (char *)sname, "-setcookie",   (char *)cookie,
                    "-noshell",   "+sbwt",       "none",        "+sbwtdcpu",    "none",
                    "+sbwtdio",   "none",        "-pa",         BENCH_BEAM_DIR, "-run",
                    "bench_dist", (char *)entry, NULL};
    peer_start(e, sname, argv);
}

static void ei_start(peer *e, const char *sname, const char *host, const char *cookie,
                     const char *role)
{
    char *argv[] = {BENCH_EI_NODE, (char *)role, (char *)sname, (char *)host, (char *)cookie, NULL};
    peer_start(e, sname, argv);
}

/* One client run on an Erlang or ei client node: "run SC NODE MS" ->
 * "result SC VALUE [P50 P99 P999]". */
static void peer_client(peer *e, int sc, const char *node, uint64_t ms, double out[N_V])
{
    fprintf(e->out, "run %s %s %llu\n", scenarios[sc], node, (unsigned long long)ms);
    fflush(e->out);
    char line[256], what[32];
    for (int k = 0; k < N_V; k++)
        out[k] = NAN;
    while (fgets(line, sizeof line, e->in))
        if (sscanf(line, "result %31s %lf %lf %lf %lf", what, &out[V_MEAN], &out[V_P50],
                   &out[V_P99], &out[V_P999]) >= 2)
            return;
    die("client node ended");
}

static void peer_stop(peer *e)
{
    if (!e->out)
        return;
    fclose(e->out);
    waitpid(e->pid, NULL, 0);
    fclose(e->in);
}

/* ------------------------------------------------------------ raw TCP */

static int g_lfd;

static void *raw_echo(void *arg)
{
    int fd = accept(g_lfd, NULL, NULL);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_WAITALL);
        if (n <= 0)
            break;
        send(fd, buf, (size_t)n, 0);
    }
    close(fd);
    return NULL;
}

/* Round trips of 64 bytes for the window, timed one by one as the calls. */
static void raw_rtt(uint64_t ms, double out[N_V])
{
    g_lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(g_lfd, (struct sockaddr *)&a, sizeof a);
    listen(g_lfd, 1);
    getsockname(g_lfd, (struct sockaddr *)&a, &l);
    pthread_t th;
    pthread_create(&th, NULL, raw_echo, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    connect(fd, (struct sockaddr *)&a, sizeof a);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64] = {1};
    uint64_t w0 = now_ns();
    while (now_ns() - w0 < ms * 1000000 / 4) { /* warm-up, as long as the calls' */
        send(fd, buf, sizeof buf, 0);
        recv(fd, buf, sizeof buf, MSG_WAITALL);
    }
    size_t cap = 4096, n = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    uint64_t t0 = now_ns(), end = t0 + ms * 1000000, t = t0;
    while (t < end) {
        send(fd, buf, sizeof buf, 0);
        recv(fd, buf, sizeof buf, MSG_WAITALL);
        uint64_t t1 = now_ns();
        if (n == cap)
            lat = realloc(lat, (cap *= 2) * sizeof *lat);
        lat[n++] = t1 - t;
        t = t1;
    }
    job j;
    summarize(&j, lat, n, t - t0);
    memcpy(out, j.value, sizeof j.value);
    free(lat);
    close(fd);
    pthread_join(th, NULL);
    close(g_lfd);
}

/* ------------------------------------------------------------ main */

/* Median, min and max of the values that are not NAN (NAN if none). */
static void print_cell(const double *v, int rounds)
{
    double lo, hi, m = median_range(v, rounds, &lo, &hi);
    if (isnan(m))
        printf(" — |");
    else
        printf(" %.0f (%.0f–%.0f) |", m, lo, hi);
}

/* --tsv: one line per sample for perf/run's table ("S section row impl
 * round value"), what each row is ("R section row unit better"), and the
 * targets of DESIGN.md that apply ("T section row peer need text"). */
static FILE *g_tsv;

static void tsv_row(const char *sec, const char *row, const char *unit, const char *better)
{
    if (g_tsv)
        fprintf(g_tsv, "R\t%s\t%s\t%s\t%s\n", sec, row, unit, better);
}

static void tsv_samples(const char *sec, const char *row, const char *impl, const double *v,
                        int rounds, int stride)
{
    for (int r = 0; g_tsv && r < rounds; r++)
        if (!isnan(v[r * stride]))
            fprintf(g_tsv, "S\t%s\t%s\t%s\t%d\t%.1f\n", sec, row, impl, r + 1, v[r * stride]);
}

static double g_v[N_SC][N_PAIRS][MAX_ROUNDS][N_V], g_raw[MAX_ROUNDS][N_V];

static void tsv_write(const bool *want, const bool *ran, int rounds)
{
    static const char *const pct_name[N_V] = {"", "p50", "p99", "p99.9"};
    char row[64];
    /* dist: the pairs where both ends are the same implementation */
    for (int sc = 0; sc < N_SC; sc++) {
        if (!want[sc])
            continue;
        bool rate = sc >= SC_PAR;
        tsv_row("dist", scenarios[sc], rate ? (sc == SC_PAR ? "calls/s" : "casts/s") : "ns/call",
                rate ? "hi" : "lo");
        const int pp[] = {P_LL, P_EE, P_XX};
        const char *pn[] = {"libotp↔libotp", "Erlang↔Erlang", "ei↔ei"};
        for (int k = 0; k < 3; k++)
            if (ran[pp[k]])
                tsv_samples("dist", scenarios[sc], pn[k], &g_v[sc][pp[k]][0][V_MEAN], rounds, N_V);
        if (sc == 0) {
            tsv_samples("dist", scenarios[sc], "raw TCP", &g_raw[0][V_MEAN], rounds, N_V);
            if (g_tsv)
                fprintf(
                    g_tsv,
                    "T\tdist\tcall_num\traw TCP\t0.8\ttime ≤ 1.25x raw TCP, i.e. ratio ≥ 0.8x\n");
            for (int q = V_P50; q <= V_P999; q++) {
                snprintf(row, sizeof row, "call_num %s", pct_name[q]);
                tsv_row("dist", row, "ns", "lo");
                for (int k = 0; k < 3; k++)
                    if (ran[pp[k]])
                        tsv_samples("dist", row, pn[k], &g_v[sc][pp[k]][0][q], rounds, N_V);
                tsv_samples("dist", row, "raw TCP", &g_raw[0][q], rounds, N_V);
            }
        }
        if (sc == 3 && g_tsv)
            fprintf(g_tsv, "T\tdist\tcall_1mb\tErlang↔Erlang\t2\t≥ 2x Erlang\n");
        if (sc == SC_PAR && g_tsv)
            fprintf(g_tsv, "T\tdist\tcall_par\tErlang↔Erlang\t4\t≥ 4x Erlang\n"
                           "T\tdist\tcall_par\tei↔ei\t2.5\t≥ 2.5x ei\n");
    }
    /* dist_client: each C side, and Erlang, calling an Erlang server;
     * dist_server: an Erlang client calling each kind of server */
    const struct {
        const char *sec;
        int p[3];
        const char *n[3];
    } mixed[] = {
        {"dist_client", {P_LE, P_XE, P_EE}, {"libotp→Erlang", "ei→Erlang", "Erlang→Erlang"}},
        {"dist_server", {P_EL, P_EX, P_EE}, {"Erlang→libotp", "Erlang→ei", "Erlang→Erlang"}},
        {"io", {P_LL, P_LL_EP, -1}, {"io_uring", "epoll", NULL}}};
    for (size_t m = 0; m < sizeof mixed / sizeof mixed[0]; m++)
        for (int sc = 0; sc < N_SC; sc++) {
            if (!want[sc])
                continue;
            bool rate = sc >= SC_PAR;
            const char *unit = rate ? (sc == SC_PAR ? "calls/s" : "casts/s") : "ns/call";
            for (int io = 0; io < (m == 2 ? 2 : 1); io++) {
                int p0 = io ? P_LE : P_LL, p1 = io ? P_LE_EP : P_LL_EP;
                int ps[3] = {mixed[m].p[0], mixed[m].p[1], mixed[m].p[2]};
                if (m == 2) {
                    ps[0] = p0;
                    ps[1] = p1;
                    snprintf(row, sizeof row, "%s %s", io ? "libotp→Erlang" : "libotp↔libotp",
                             scenarios[sc]);
                } else {
                    snprintf(row, sizeof row, "%s", scenarios[sc]);
                }
                tsv_row(mixed[m].sec, row, unit, rate ? "hi" : "lo");
                for (int k = 0; k < 3; k++)
                    if (ps[k] >= 0 && ran[ps[k]])
                        tsv_samples(mixed[m].sec, row, mixed[m].n[k], &g_v[sc][ps[k]][0][V_MEAN],
                                    rounds, N_V);
                if (sc != 0 || m == 2)
                    continue;
                for (int q = V_P50; q <= V_P999; q++) { /* latency of the small call */
                    snprintf(row, sizeof row, "call_num %s", pct_name[q]);
                    tsv_row(mixed[m].sec, row, "ns", "lo");
                    for (int k = 0; k < 3; k++)
                        if (ran[ps[k]])
                            tsv_samples(mixed[m].sec, row, mixed[m].n[k], &g_v[sc][ps[k]][0][q],
                                        rounds, N_V);
                }
            }
        }
}

int main(int argc, char **argv)
{
    int rounds = 3, shards = 1;
    uint64_t ms = 500;
    bool spin = false, use_ei = *BENCH_EI_NODE != 0, use_epoll = true;
    bool want[N_SC] = {0}, any = false, pair_on[N_PAIRS] = {0}, any_pair = false, raw_on = false;
    const char *tsv = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            shards = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--spin"))
            spin = true;
        else if (!strcmp(argv[i], "--no-ei"))
            use_ei = false;
        else if (!strcmp(argv[i], "--no-epoll"))
            use_epoll = false;
        else if (!strcmp(argv[i], "--pair") && i + 1 < argc) {
            const char *c = argv[++i];
            int k = 0;
            while (k < N_PAIRS && strcmp(c, pair_codes[k]))
                k++;
            if (k == N_PAIRS && strcmp(c, "raw"))
                die("unknown pair %s (ll ee xx le xe el ex ll_epoll le_epoll raw)", c);
            if (k < N_PAIRS)
                pair_on[k] = true;
            else
                raw_on = true;
            any_pair = true;
        } else if (!strcmp(argv[i], "--tsv") && i + 1 < argc)
            tsv = argv[++i];
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
            ms = (uint64_t)atoll(argv[++i]);
        else if (!strcmp(argv[i], "--scenario") && i + 1 < argc) {
            const char *s = argv[++i];
            int k = 0;
            while (k < N_SC && strcmp(s, scenarios[k]))
                k++;
            if (k == N_SC)
                die("unknown scenario %s", s);
            want[k] = any = true;
        } else
            die("usage: bench_dist [--rounds N] [--ms N] [--shards N] [--spin] [--no-ei] "
                "[--no-epoll] [--pair P]... [--tsv FILE] [--scenario S]...");
    }
    if (rounds < 1 || rounds > MAX_ROUNDS)
        die("--rounds between 1 and %d", MAX_ROUNDS);
    if (!any)
        for (int k = 0; k < N_SC; k++)
            want[k] = true;
    if (!*BENCH_ERL)
        die("needs erl (it compares with Erlang)");
    if (tsv && !(g_tsv = fopen(tsv, "w")))
        die("cannot write %s", tsv);
    signal(SIGPIPE, SIG_IGN);

    /* our own EPMD port: the first libotp node serves it */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in pa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t pl = sizeof pa;
    bind(probe, (struct sockaddr *)&pa, sizeof pa);
    getsockname(probe, (struct sockaddr *)&pa, &pl);
    close(probe);
    char port[16], host[256];
    snprintf(port, sizeof port, "%u", ntohs(pa.sin_port));
    setenv("ERL_EPMD_PORT", port, 1);
    gethostname(host, sizeof host);
    host[strcspn(host, ".")] = 0;
    int me = (int)getpid();
    /* node names: libotp A/B (io_uring), C/D (epoll), Erlang server and
     * client, ei server and client */
    char na[320], nb[320], nc2[320], nd[320], ns[320], nsn[64], nc[64], xs[320], xsn[64], xc[64];
    snprintf(na, sizeof na, "bda%d@%s", me, host);
    snprintf(nb, sizeof nb, "bdb%d@%s", me, host);
    snprintf(nc2, sizeof nc2, "bdc%d@%s", me, host);
    snprintf(nd, sizeof nd, "bdd%d@%s", me, host);
    snprintf(nsn, sizeof nsn, "bds%d", me);
    snprintf(ns, sizeof ns, "%s@%s", nsn, host);
    snprintf(nc, sizeof nc, "bde%d", me);
    snprintf(xsn, sizeof xsn, "bdx%d", me);
    snprintf(xs, sizeof xs, "%s@%s", xsn, host);
    snprintf(xc, sizeof xc, "bdy%d", me);
    const char *cookie = "bench_dist_cookie";

    /* Two libotp nodes per backend share this machine with two Erlang and
     * two ei nodes: one shard each and no spinning before sleep (spinning
     * shards would take the CPU from the peer they wait for). Idle nodes
     * sleep in their backend and cost nothing. */
    otp_runtime *rt[4] = {0};
    otp_node *node[4] = {0};
    const char *names[4] = {na, nb, nc2, nd};
    otp_error err;
    otp_node_config ncfg = {.cookie = cookie, .hidden = true};
    for (int k = 0; k < (use_epoll ? 4 : 2); k++) {
        otp_runtime_config cfg = {.shards = (unsigned)shards,
                                  .no_pin = true,
                                  .node_name = names[k],
                                  .spin_us = spin ? 0 : OTP_NO_SPIN,
                                  .io_backend = k < 2 ? "io_uring" : "epoll"};
        if (otp_runtime_new(&rt[k], &cfg) || otp_runtime_start(rt[k]) ||
            otp_node_start(rt[k], &ncfg, &node[k], &err))
            die("libotp node %s: %s", names[k], err.message);
        if (k % 2) {
            otp_term pid;
            otp_gen_server_opts so = {.shard = 0, .name = otp_atom("bench_srv")};
            if (otp_gen_server_start(rt[k], NULL, &srv_ops, OTP_NIL, &so, &pid, NULL) < 0)
                die("bench_srv on %s", names[k]);
        }
    }
    peer es = {0}, ec = {0}, xsrv = {0}, xcli = {0};
    erl_start(&es, nsn, cookie, "server");
    erl_start(&ec, nc, cookie, "client");
    if (use_ei) {
        ei_start(&xsrv, xsn, host, cookie, "server");
        ei_start(&xcli, xc, host, cookie, "client");
    }
    bool ran[N_PAIRS];
    for (int p = 0; p < N_PAIRS; p++)
        ran[p] = (use_ei || (p != P_XX && p != P_XE && p != P_EX)) &&
                 (use_epoll || (p != P_LL_EP && p != P_LE_EP)) && (!any_pair || pair_on[p]);
    raw_on = raw_on || !any_pair;

    for (int sc = 0; sc < N_SC; sc++)
        for (int p = 0; p < N_PAIRS; p++)
            for (int r = 0; r < MAX_ROUNDS; r++)
                for (int k = 0; k < N_V; k++)
                    g_v[sc][p][r][k] = NAN;
    otp_term node_b = otp_atom(nb), node_d = otp_atom(nd), node_s = otp_atom(ns);
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < N_V; k++)
            g_raw[r][k] = NAN;
        if (raw_on)
            raw_rtt(ms, g_raw[r]);
        for (int sc = 0; sc < N_SC; sc++) {
            if (!want[sc])
                continue;
            for (int p = 0; p < N_PAIRS; p++) {
                if (!ran[p])
                    continue;
                double *o = g_v[sc][p][r];
                switch (p) {
                case P_LL:
                    c_client(rt[0], sc, node_b, ms, o);
                    break;
                case P_LE:
                    c_client(rt[0], sc, node_s, ms, o);
                    break;
                case P_LL_EP:
                    c_client(rt[2], sc, node_d, ms, o);
                    break;
                case P_LE_EP:
                    c_client(rt[2], sc, node_s, ms, o);
                    break;
                case P_EE:
                    peer_client(&ec, sc, ns, ms, o);
                    break;
                case P_EL:
                    peer_client(&ec, sc, nb, ms, o);
                    break;
                case P_EX:
                    peer_client(&ec, sc, xs, ms, o);
                    break;
                case P_XX:
                    peer_client(&xcli, sc, xs, ms, o);
                    break;
                case P_XE:
                    peer_client(&xcli, sc, ns, ms, o);
                    break;
                }
            }
            fprintf(stderr, "bench_dist: round %d/%d %s done\n", r + 1, rounds, scenarios[sc]);
        }
    }

    printf("Two nodes on loopback, %d interleaved rounds of %llu ms, medians (min–max). libotp "
           "nodes: %d shard(s), io_uring unless marked epoll; ei: perf/bench_ei_node.c.\n\n",
           rounds, (unsigned long long)ms, shards);
    printf("| scenario | unit |");
    for (int p = 0; p < N_PAIRS; p++)
        if (ran[p])
            printf(" %s |", pair_names[p]);
    printf("\n| --- | --- |");
    for (int p = 0; p < N_PAIRS; p++)
        if (ran[p])
            printf(" ---: |");
    printf("\n");
    for (int sc = 0; sc < N_SC; sc++) {
        if (!want[sc])
            continue;
        bool rate = sc >= SC_PAR;
        for (int q = 0; q < (rate ? 1 : N_V); q++) {
            static const char *const qn[N_V] = {"", " p50", " p99", " p99.9"};
            printf("| %s%s | %s |", scenarios[sc], qn[q],
                   rate ? (sc == SC_PAR ? "calls/s" : "casts/s")
                   : q  ? "ns"
                        : "ns/call");
            for (int p = 0; p < N_PAIRS; p++)
                if (ran[p]) {
                    double v[MAX_ROUNDS];
                    for (int r = 0; r < rounds; r++)
                        v[r] = g_v[sc][p][r][q];
                    print_cell(v, rounds);
                }
            printf("\n");
        }
    }
    double rv[MAX_ROUNDS], lo, hi;
    if (raw_on)
        printf("\nRaw loopback TCP ping-pong, 64 bytes, blocking sockets, ns per round trip:");
    for (int q = 0; raw_on && q < N_V; q++) {
        static const char *const qn[N_V] = {"mean", "p50", "p99", "p99.9"};
        for (int r = 0; r < rounds; r++)
            rv[r] = g_raw[r][q];
        double m = median_range(rv, rounds, &lo, &hi);
        printf(" %s %.0f (%.0f–%.0f)%s", qn[q], m, lo, hi, q + 1 < N_V ? "," : ".\n");
    }
    if (g_tsv) {
        tsv_write(want, ran, rounds);
        fclose(g_tsv);
    }

    peer_stop(&xcli);
    peer_stop(&xsrv);
    peer_stop(&ec);
    peer_stop(&es);
    for (int k = 3; k >= 0; k--) {
        if (!rt[k])
            continue;
        otp_node_stop(node[k]);
        otp_runtime_stop(rt[k]);
        otp_runtime_free(rt[k]);
    }
    return 0;
}
