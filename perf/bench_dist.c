/* bench_dist.c — two nodes on loopback, in one run (perf/README.md,
 * "bench_dist"): gen_server calls between nodes with a number, a string,
 * a pid and a 1 MiB binary, 120 callers in parallel, and cast throughput,
 * for four pairs — libotp→libotp, libotp→Erlang, Erlang→Erlang and
 * Erlang→libotp — beside a raw loopback TCP ping-pong (blocking sockets,
 * 64 bytes) as the floor. Rounds are interleaved (every pair once per
 * round, again); medians and min–max go to stdout as markdown.
 *
 * Method, the same on both sides: a batch is doubled until it lasts a
 * quarter of the window, then batches are timed for the window (--ms);
 * a caller checks every reply equals its request.
 *   usage: bench_dist [--rounds N] [--ms N] [--scenario S]...
 */
#define _GNU_SOURCE
#include <errno.h>
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

#include "otp.h"

extern char **environ;

#ifndef BENCH_ERL
#define BENCH_ERL ""
#endif
#ifndef BENCH_BEAM_DIR
#define BENCH_BEAM_DIR ""
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

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *const scenarios[] = {"call_num", "call_str", "call_pid",
                                        "call_1mb", "call_par", "cast"};
enum { N_SC = 6 };
enum { P_LL, P_LE, P_EE, P_EL, N_PAIRS };
static const char *const pair_names[] = {"libotp→libotp", "libotp→Erlang", "Erlang→Erlang",
                                         "Erlang→libotp"};

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
    double value;
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

static int call_batch(otp_proc *self, job *j, otp_term p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        otp_term r;
        int rc = otp_gen_server_call(self, j->server, p, 60000, &r);
        if (rc < 0)
            return rc;
        if (!otp_exact_eq(r, p))
            return -OTP_EBADARG;
        otp_arena_reset(otp_proc_arena(self));
    }
    return 0;
}

static void seq_main(otp_proc *self, void *arg)
{
    job *j = arg;
    otp_arena *keep = otp_arena_new();
    otp_term p = payload(self, j->sc, keep);
    uint64_t b = 1, want = j->ms * 1000000 / 4;
    int rc = 0;
    for (;;) { /* calibrate (and warm up) */
        uint64_t t0 = now_ns();
        if ((rc = call_batch(self, j, p, b)) < 0)
            break;
        if (now_ns() - t0 >= want)
            break;
        b *= 2;
    }
    uint64_t n = 0, t0 = now_ns(), end = t0 + j->ms * 1000000;
    while (rc == 0) {
        rc = call_batch(self, j, p, b);
        n += b;
        if (now_ns() >= end)
            break;
    }
    j->value = rc == 0 ? (double)(now_ns() - t0) / (double)n : 0;
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
    j->value = (double)n / ((double)(now_ns() - t0) / 1e9);
    sem_post(&j->done);
}

static double c_client(otp_runtime *rt, int sc, otp_term node, uint64_t ms)
{
    job *j = calloc(1, sizeof *j);
    sem_init(&j->done, 0, 0);
    j->sc = sc;
    j->ms = ms;
    otp_arena *a = otp_arena_new();
    j->server = OTP_TUPLE(a, otp_atom("bench_srv"), node);
    otp_term pid;
    if (sc == 4) {
        j->stop = now_ns() + ms * 1000000;
        atomic_store(&j->left, PAIRS);
        uint64_t t0 = now_ns();
        for (int i = 0; i < PAIRS; i++) {
            otp_spawn_opts so = {.shard = OTP_SHARD_NEXT};
            if (otp_spawn(rt, NULL, par_main, j, &so, &pid, NULL) < 0)
                die("spawn failed");
        }
        sem_wait(&j->done);
        j->value = (double)atomic_load(&j->calls) / ((double)(now_ns() - t0) / 1e9);
    } else {
        otp_spawn_opts so = {.shard = 0};
        if (otp_spawn(rt, NULL, sc == 5 ? cast_main : seq_main, j, &so, &pid, NULL) < 0)
            die("spawn failed");
        sem_wait(&j->done);
    }
    double v = j->rc == 0 ? j->value : 0;
    sem_destroy(&j->done);
    otp_arena_free(a);
    free(j);
    return v;
}

/* ------------------------------------------------------------ Erlang nodes */

typedef struct erl_node {
    pid_t pid;
    FILE *in, *out;
} erl_node;

static void erl_start(erl_node *e, const char *sname, const char *cookie, const char *entry)
{
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
        die("pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    /* no busy-waiting schedulers: they would take the CPU the other side
     * measures on (as bench_runtime's node A) */
    char *argv[] = {BENCH_ERL,    "-sname",      (char *)sname, "-setcookie",   (char *)cookie,
                    "-noshell",   "+sbwt",       "none",        "+sbwtdcpu",    "none",
                    "+sbwtdio",   "none",        "-pa",         BENCH_BEAM_DIR, "-run",
                    "bench_dist", (char *)entry, NULL};
    if (posix_spawn(&e->pid, BENCH_ERL, &fa, NULL, argv, environ) != 0)
        die("cannot start erl");
    posix_spawn_file_actions_destroy(&fa);
    close(to[0]);
    close(from[1]);
    e->in = fdopen(from[0], "r");
    e->out = fdopen(to[1], "w");
    char line[256];
    while (fgets(line, sizeof line, e->in))
        if (strncmp(line, "ready", 5) == 0)
            return;
    die("erl %s did not start", sname);
}

static double erl_client(erl_node *e, int sc, const char *node, uint64_t ms)
{
    fprintf(e->out, "run %s %s %llu\n", scenarios[sc], node, (unsigned long long)ms);
    fflush(e->out);
    char line[256], what[32];
    double v;
    while (fgets(line, sizeof line, e->in))
        if (sscanf(line, "result %31s %lf", what, &v) == 2)
            return v;
    die("erl client ended");
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

static double raw_rtt(uint64_t ms)
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
    for (int i = 0; i < 1000; i++) { /* warm-up */
        send(fd, buf, sizeof buf, 0);
        recv(fd, buf, sizeof buf, MSG_WAITALL);
    }
    uint64_t n = 0, t0 = now_ns(), end = t0 + ms * 1000000;
    while (now_ns() < end)
        for (int i = 0; i < 100; i++, n++) {
            send(fd, buf, sizeof buf, 0);
            recv(fd, buf, sizeof buf, MSG_WAITALL);
        }
    double v = (double)(now_ns() - t0) / (double)n;
    close(fd);
    pthread_join(th, NULL);
    close(g_lfd);
    return v;
}

/* ------------------------------------------------------------ main */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int rounds = 3, shards = 1;
    uint64_t ms = 500;
    bool spin = false;
    bool want[N_SC] = {0}, any = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            shards = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--spin"))
            spin = true;
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
            ms = (uint64_t)atoll(argv[++i]);
        else if (!strcmp(argv[i], "--scenario") && i + 1 < argc) {
            const char *s = argv[++i];
            for (int k = 0; k < N_SC; k++)
                if (!strcmp(s, scenarios[k]))
                    want[k] = any = true;
        } else
            die("usage: bench_dist [--rounds N] [--ms N] [--shards N] [--spin] [--scenario S]...");
    }
    if (rounds < 1 || rounds > MAX_ROUNDS)
        die("--rounds between 1 and %d", MAX_ROUNDS);
    if (!any)
        for (int k = 0; k < N_SC; k++)
            want[k] = true;
    if (!*BENCH_ERL)
        die("needs erl (it compares with Erlang)");
    signal(SIGPIPE, SIG_IGN);

    /* our own EPMD port: the first libotp node serves it */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in pa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t pl = sizeof pa;
    bind(probe, (struct sockaddr *)&pa, sizeof pa);
    getsockname(probe, (struct sockaddr *)&pa, &pl);
    close(probe);
    char port[16], host[256], na[320], nb[320], ns[320], nc[64], nsn[64];
    snprintf(port, sizeof port, "%u", ntohs(pa.sin_port));
    setenv("ERL_EPMD_PORT", port, 1);
    gethostname(host, sizeof host);
    host[strcspn(host, ".")] = 0;
    int me = (int)getpid();
    snprintf(na, sizeof na, "bda%d@%s", me, host);
    snprintf(nb, sizeof nb, "bdb%d@%s", me, host);
    snprintf(nsn, sizeof nsn, "bds%d", me);
    snprintf(ns, sizeof ns, "%s@%s", nsn, host);
    snprintf(nc, sizeof nc, "bdc%d", me);
    const char *cookie = "bench_dist_cookie";

    otp_runtime *ra, *rb;
    otp_node *a, *b;
    otp_error err;
    /* Two nodes share this machine with two Erlang nodes: by default one
     * shard each and no spinning before sleep (spinning shards would take
     * the CPU from the peer they wait for). */
    otp_runtime_config ca = {.shards = (unsigned)shards,
                             .no_pin = true,
                             .node_name = na,
                             .spin_us = spin ? 0 : OTP_NO_SPIN};
    otp_runtime_config cb = ca;
    cb.node_name = nb;
    otp_node_config nca = {.cookie = cookie, .hidden = true};
    if (otp_runtime_new(&ra, &ca) || otp_runtime_start(ra) || otp_node_start(ra, &nca, &a, &err))
        die("node A: %s", err.message);
    if (otp_runtime_new(&rb, &cb) || otp_runtime_start(rb) || otp_node_start(rb, &nca, &b, &err))
        die("node B: %s", err.message);
    otp_term pid;
    otp_gen_server_opts so = {.shard = 0, .name = otp_atom("bench_srv")};
    if (otp_gen_server_start(rb, NULL, &srv_ops, OTP_NIL, &so, &pid, NULL) < 0)
        die("bench_srv on B");
    erl_node es, ec;
    erl_start(&es, nsn, cookie, "server");
    erl_start(&ec, nc, cookie, "client");

    double v[N_SC][N_PAIRS][MAX_ROUNDS] = {{{0}}}, raw[MAX_ROUNDS];
    otp_term node_b = otp_atom(nb), node_s = otp_atom(ns);
    for (int r = 0; r < rounds; r++) {
        raw[r] = raw_rtt(ms);
        for (int sc = 0; sc < N_SC; sc++) {
            if (!want[sc])
                continue;
            v[sc][P_LL][r] = c_client(ra, sc, node_b, ms);
            v[sc][P_LE][r] = c_client(ra, sc, node_s, ms);
            v[sc][P_EE][r] = erl_client(&ec, sc, ns, ms);
            v[sc][P_EL][r] = erl_client(&ec, sc, nb, ms);
            fprintf(stderr, "round %d %s: %.0f %.0f %.0f %.0f\n", r + 1, scenarios[sc], v[sc][0][r],
                    v[sc][1][r], v[sc][2][r], v[sc][3][r]);
        }
    }

    printf("Two nodes on loopback, %d interleaved rounds of %llu ms, medians (min–max).\n\n",
           rounds, (unsigned long long)ms);
    printf("| scenario | unit |");
    for (int p = 0; p < N_PAIRS; p++)
        printf(" %s |", pair_names[p]);
    printf(" libotp→libotp vs Erlang→Erlang |\n| --- | --- |");
    for (int p = 0; p < N_PAIRS; p++)
        printf(" ---: |");
    printf(" ---: |\n");
    for (int sc = 0; sc < N_SC; sc++) {
        if (!want[sc])
            continue;
        bool rate = sc >= 4;
        printf("| %s | %s |", scenarios[sc], rate ? (sc == 4 ? "calls/s" : "casts/s") : "ns/call");
        double med[N_PAIRS];
        for (int p = 0; p < N_PAIRS; p++) {
            med[p] = median(v[sc][p], rounds);
            double lo = v[sc][p][0], hi = lo;
            for (int r = 1; r < rounds; r++) {
                lo = v[sc][p][r] < lo ? v[sc][p][r] : lo;
                hi = v[sc][p][r] > hi ? v[sc][p][r] : hi;
            }
            printf(" %.0f (%.0f–%.0f) |", med[p], lo, hi);
        }
        double ratio = rate ? med[P_LL] / med[P_EE] : med[P_EE] / med[P_LL];
        printf(" %.2fx |\n", ratio);
    }
    double rawm = median(raw, rounds);
    printf("\nRaw loopback TCP ping-pong, 64 bytes, blocking sockets: %.0f ns per round trip; "
           "libotp→libotp call_num is %.2fx that.\n",
           rawm, want[0] ? median(v[0][P_LL], rounds) / rawm : 0.0);
    printf("Ratios: above 1x means libotp→libotp is faster than Erlang→Erlang.\n");

    fclose(es.out);
    fclose(ec.out);
    waitpid(es.pid, NULL, 0);
    waitpid(ec.pid, NULL, 0);
    otp_node_stop(b);
    otp_node_stop(a);
    otp_runtime_stop(rb);
    otp_runtime_stop(ra);
    otp_runtime_free(rb);
    otp_runtime_free(ra);
    return 0;
}
