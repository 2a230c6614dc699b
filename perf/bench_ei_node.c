/* bench_ei_node.c — the erl_interface C node of perf/bench_dist: what a C
 * programmer would otherwise write to join a cluster (ei_connect /
 * ei_accept, a blocking loop of ei_xreceive_msg and ei_send), serving and
 * making the same gen_server calls as the libotp and Erlang sides.
 *
 *   bench_ei_node server SNAME HOST COOKIE
 *       Listens, registers with EPMD (ERL_EPMD_PORT), prints "ready", and
 *       serves `bench_srv` on every connection: {'$gen_call', {Pid, Tag},
 *       Req} is answered {Tag, Req} (Tag and Req copied as they came),
 *       {count} returns and resets the number of {'$gen_cast', _} seen.
 *       Ends when stdin closes.
 *   bench_ei_node client SNAME HOST COOKIE
 *       Prints "ready", then reads "run SCENARIO NODE MS" and answers
 *       "result SCENARIO VALUE [P50 P99 P999]" exactly as bench_dist.erl's
 *       client does, calling {bench_srv, NODE} over one connection per node.
 */
#define _GNU_SOURCE
#define _REENTRANT /* erl_errno through __erl_errno_place(), as libei.a is built */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "ei.h"

#define PAIRS    120
#define MAX_CONN 16

static void die(const char *what)
{
    fprintf(stderr, "bench_ei_node: %s (erl_errno %d, errno %d)\n", what, erl_errno, errno);
    exit(1);
}

/* ------------------------------------------------------------ the server */

/* Answers one message from fd. 0, or -1 when the connection is gone. */
static int serve_one(int fd, ei_x_buff *in, ei_x_buff *out, long *casts)
{
    erlang_msg msg;
    int rc = ei_xreceive_msg(fd, &msg, in);
    if (rc == ERL_TICK)
        return 0;
    if (rc == ERL_ERROR)
        return erl_errno == EAGAIN || erl_errno == ETIMEDOUT ? 0 : -1;
    if (msg.msgtype != ERL_REG_SEND && msg.msgtype != ERL_SEND)
        return 0; /* link, unlink, exit, monitor signals: nothing to do */
    const char *b = in->buff;
    int i = 0, ver, arity;
    char tag[MAXATOMLEN_UTF8];
    if (ei_decode_version(b, &i, &ver) < 0 || ei_decode_tuple_header(b, &i, &arity) < 0 ||
        ei_decode_atom(b, &i, tag) < 0)
        return 0;
    if (arity == 2 && !strcmp(tag, "$gen_cast")) {
        ++*casts;
        return 0;
    }
    erlang_pid from;
    int fa;
    if (arity != 3 || strcmp(tag, "$gen_call") || ei_decode_tuple_header(b, &i, &fa) < 0 ||
        fa != 2 || ei_decode_pid(b, &i, &from) < 0)
        return 0;
    int tag0 = i;
    if (ei_skip_term(b, &i) < 0)
        return 0;
    int req0 = i;
    if (ei_skip_term(b, &i) < 0)
        return 0;
    int req1 = i, k = req0, ra;
    char atom[MAXATOMLEN_UTF8];
    out->index = 0;
    ei_x_encode_version(out);
    ei_x_encode_tuple_header(out, 2);
    ei_x_append_buf(out, b + tag0, req0 - tag0);
    if (ei_decode_tuple_header(b, &k, &ra) == 0 && ra == 1 && ei_decode_atom(b, &k, atom) == 0 &&
        !strcmp(atom, "count")) {
        ei_x_encode_long(out, *casts);
        *casts = 0;
    } else {
        ei_x_append_buf(out, b + req0, req1 - req0);
    }
    return ei_send(fd, &from, out->buff, out->index) < 0 ? -1 : 0;
}

static int server(ei_cnode *ec)
{
    int port = 0;
    int lfd = ei_listen(ec, &port, 16);
    if (lfd < 0)
        die("ei_listen");
    if (ei_publish(ec, port) < 0)
        die("ei_publish");
    printf("ready\n");
    fflush(stdout);
    struct pollfd p[MAX_CONN + 2] = {{.fd = 0, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
    int n = 2;
    long casts = 0;
    ei_x_buff in, out;
    ei_x_new(&in);
    ei_x_new(&out);
    for (;;) {
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        if (p[0].revents)
            break; /* stdin closed: done */
        if (p[1].revents & POLLIN) {
            ErlConnect conn;
            int fd = ei_accept(ec, lfd, &conn);
            if (fd >= 0 && n < MAX_CONN + 2)
                p[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
            else if (fd >= 0)
                close(fd);
        }
        for (int c = 2; c < n; c++) {
            if (!p[c].revents)
                continue;
            if (serve_one(p[c].fd, &in, &out, &casts) < 0) {
                close(p[c].fd);
                p[c--] = p[--n];
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------ the client */

typedef struct conn {
    char node[MAXNODELEN + 1];
    int fd;
} conn;

static conn g_conn[MAX_CONN];
static int g_nconn;
static ei_cnode *g_ec;
static ei_x_buff g_tx, g_rx;
static char *g_mib;

static int conn_fd(const char *node)
{
    for (int c = 0; c < g_nconn; c++)
        if (!strcmp(g_conn[c].node, node))
            return g_conn[c].fd;
    if (g_nconn == MAX_CONN)
        die("too many nodes");
    int fd = ei_connect(g_ec, (char *)node);
    if (fd < 0)
        die("ei_connect");
    snprintf(g_conn[g_nconn].node, sizeof g_conn[0].node, "%s", node);
    g_conn[g_nconn++].fd = fd;
    return fd;
}

enum { SC_NUM, SC_STR, SC_PID, SC_1MB, SC_PAR, SC_CAST, SC_COUNT };

/* The request of a scenario, encoded the way a C programmer would. */
static void encode_req(ei_x_buff *x, int sc)
{
    switch (sc) {
    case SC_NUM:
        ei_x_encode_long(x, 42);
        break;
    case SC_STR:
        ei_x_encode_string(x, "hello, world");
        break;
    case SC_PID:
        ei_x_encode_pid(x, ei_self(g_ec));
        break;
    case SC_1MB:
        ei_x_encode_binary(x, g_mib, 1 << 20);
        break;
    case SC_COUNT:
        ei_x_encode_tuple_header(x, 1);
        ei_x_encode_atom(x, "count");
        break;
    default:
        ei_x_encode_atom(x, "x");
        break;
    }
}

/* Sends {'$gen_call', {Self, Ref}, Req} to bench_srv; *req0 is where Req
 * starts in g_tx. */
static void send_call(int fd, int sc, erlang_ref *ref, int *req0)
{
    ei_make_ref(g_ec, ref);
    g_tx.index = 0;
    ei_x_encode_version(&g_tx);
    ei_x_encode_tuple_header(&g_tx, 3);
    ei_x_encode_atom(&g_tx, "$gen_call");
    ei_x_encode_tuple_header(&g_tx, 2);
    ei_x_encode_pid(&g_tx, ei_self(g_ec));
    ei_x_encode_ref(&g_tx, ref);
    *req0 = g_tx.index;
    encode_req(&g_tx, sc);
    if (ei_reg_send(g_ec, fd, "bench_srv", g_tx.buff, g_tx.index) < 0)
        die("ei_reg_send");
}

static int same_ref(const erlang_ref *a, const erlang_ref *b)
{
    return a->len == b->len && a->creation == b->creation && !strcmp(a->node, b->node) &&
           !memcmp(a->n, b->n, (size_t)a->len * sizeof a->n[0]);
}

/* Receives the next {Ref, Reply}; *at is where Reply starts in g_rx. */
static void recv_reply(int fd, erlang_ref *ref, int *at)
{
    for (;;) {
        erlang_msg msg;
        int rc = ei_xreceive_msg(fd, &msg, &g_rx);
        if (rc == ERL_TICK)
            continue;
        if (rc == ERL_ERROR)
            die("ei_xreceive_msg");
        if (msg.msgtype != ERL_SEND)
            continue;
        int i = 0, ver, arity;
        if (ei_decode_version(g_rx.buff, &i, &ver) < 0 ||
            ei_decode_tuple_header(g_rx.buff, &i, &arity) < 0 || arity != 2 ||
            ei_decode_ref(g_rx.buff, &i, ref) < 0)
            continue;
        *at = i;
        return;
    }
}

/* The reply equals the request: the same bytes, or for a pid the same pid
 * (its encoding may differ). */
static int reply_ok(int sc, int req0, int at)
{
    int a = req0, b = at;
    if (ei_skip_term(g_tx.buff, &a) < 0 || ei_skip_term(g_rx.buff, &b) < 0)
        return 0;
    if (a - req0 == b - at && !memcmp(g_tx.buff + req0, g_rx.buff + at, (size_t)(a - req0)))
        return 1;
    if (sc != SC_PID)
        return 0;
    erlang_pid p, q;
    a = req0;
    b = at;
    return ei_decode_pid(g_tx.buff, &a, &p) == 0 && ei_decode_pid(g_rx.buff, &b, &q) == 0 &&
           p.num == q.num && p.serial == q.serial && p.creation == q.creation &&
           !strcmp(p.node, q.node);
}

static void call(int fd, int sc)
{
    erlang_ref ref, got;
    int req0, at;
    send_call(fd, sc, &ref, &req0);
    recv_reply(fd, &got, &at);
    if (!same_ref(&ref, &got) || (sc != SC_COUNT && !reply_ok(sc, req0, at)))
        die("wrong reply");
}

static long call_count(int fd)
{
    erlang_ref ref, got;
    int req0, at;
    long n;
    send_call(fd, SC_COUNT, &ref, &req0);
    recv_reply(fd, &got, &at);
    if (!same_ref(&ref, &got) || ei_decode_long(g_rx.buff, &at, &n) < 0)
        die("wrong count reply");
    return n;
}

static void run(int sc, const char *name, int fd, uint64_t ms)
{
    if (sc == SC_PAR) {
        /* 120 callers: 120 calls outstanding on the one connection, each
         * reply answered by the next call of that caller. */
        erlang_ref refs[PAIRS];
        int req0, at;
        uint64_t t0 = now_ns(), stop = t0 + ms * 1000000, calls = 0;
        for (int c = 0; c < PAIRS; c++)
            send_call(fd, sc, &refs[c], &req0);
        int live = PAIRS;
        while (live) {
            erlang_ref got;
            recv_reply(fd, &got, &at);
            int c = 0;
            while (c < PAIRS && !same_ref(&refs[c], &got))
                c++;
            if (c == PAIRS || !reply_ok(sc, req0, at))
                die("wrong reply");
            calls++;
            if (now_ns() < stop)
                send_call(fd, sc, &refs[c], &req0);
            else
                live--;
        }
        printf("result %s %.3f\n", name, (double)calls / ((double)(now_ns() - t0) / 1e9));
    } else if (sc == SC_CAST) {
        call_count(fd);
        uint64_t n = ms * 200 < 1000 ? 1000 : ms * 200, t0 = now_ns();
        for (uint64_t k = 0; k < n; k++) {
            g_tx.index = 0;
            ei_x_encode_version(&g_tx);
            ei_x_encode_tuple_header(&g_tx, 2);
            ei_x_encode_atom(&g_tx, "$gen_cast");
            ei_x_encode_atom(&g_tx, "x");
            if (ei_reg_send(g_ec, fd, "bench_srv", g_tx.buff, g_tx.index) < 0)
                die("ei_reg_send");
        }
        if ((uint64_t)call_count(fd) != n)
            die("casts lost");
        printf("result %s %.3f\n", name, (double)n / ((double)(now_ns() - t0) / 1e9));
    } else {
        uint64_t b = 1, want = ms * 1000000 / 4;
        for (;;) { /* warm up: double the batch until it lasts a quarter window */
            uint64_t t0 = now_ns();
            for (uint64_t k = 0; k < b; k++)
                call(fd, sc);
            if (now_ns() - t0 >= want)
                break;
            b *= 2;
        }
        size_t cap = 4096, n = 0;
        uint64_t *lat = malloc(cap * sizeof *lat);
        uint64_t t0 = now_ns(), end = t0 + ms * 1000000, t = t0;
        while (t < end) {
            call(fd, sc);
            uint64_t t1 = now_ns();
            if (n == cap)
                lat = realloc(lat, (cap *= 2) * sizeof *lat);
            lat[n++] = t1 - t;
            t = t1;
        }
        qsort(lat, n, sizeof *lat, cmp_u64);
        printf("result %s %.3f %.0f %.0f %.0f\n", name, (double)(t - t0) / (double)n,
               pct(lat, n, 0.5), pct(lat, n, 0.99), pct(lat, n, 0.999));
        free(lat);
    }
    fflush(stdout);
}

static int client(void)
{
    static const char *const names[] = {"call_num", "call_str", "call_pid",
                                        "call_1mb", "call_par", "cast"};
    g_mib = malloc(1 << 20);
    memset(g_mib, 7, 1 << 20);
    ei_x_new(&g_tx);
    ei_x_new(&g_rx);
    printf("ready\n");
    fflush(stdout);
    char line[512], sc[32], node[MAXNODELEN + 1];
    unsigned long long ms;
    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "run %31s %255s %llu", sc, node, &ms) != 3)
            continue;
        int k = 0;
        while (k < SC_COUNT && strcmp(names[k], sc))
            k++;
        if (k == SC_COUNT) {
            printf("result %s 0\n", sc);
            fflush(stdout);
            continue;
        }
        run(k, sc, conn_fd(node), ms);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "server") && strcmp(argv[1], "client"))) {
        fprintf(stderr, "usage: bench_ei_node server|client SNAME HOST COOKIE\n");
        return 2;
    }
    static ei_cnode ec;
    char full[MAXNODELEN + 1];
    snprintf(full, sizeof full, "%s@%s", argv[2], argv[3]);
    struct in_addr lo = {.s_addr = htonl(INADDR_LOOPBACK)};
    ei_init();
    if (ei_connect_xinit(&ec, argv[3], argv[2], full, (Erl_IpAddr)&lo, argv[4],
                         (unsigned)time(NULL) % 65000 + 1) < 0)
        die("ei_connect_xinit");
    g_ec = &ec;
    return !strcmp(argv[1], "server") ? server(&ec) : client();
}
