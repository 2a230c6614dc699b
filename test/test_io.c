/* test_io.c — the I/O backends (net/io.h), every case under epoll and then
 * under io_uring: accept/connect/echo over 200 connections, a 64 MB send
 * checked byte for byte, a peer closing mid-transfer, connect timeouts,
 * cancellation, 100k cross-thread wakes, pooled receives (a starved pool,
 * end of stream, reset, cancel and close while waiting for a buffer, 8 MiB)
 * and a socket handed to another instance on another thread. If the kernel
 * refuses io_uring the epoll half still runs and the suite exits 77
 * (skipped), never 0.
 */
/* otp-test: threads */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "io.h"
#include "socket.h"

/* Generous bounds: the sanitizer builds are several times slower. */
#define STEP_LIMIT_MS 60000

typedef struct backend {
    const char *name;
    otp__io_config cfg;
} backend;

static backend be_epoll = {"epoll", {.backend = OTP__IO_EPOLL}};
static backend be_uring = {"io_uring", {.backend = OTP__IO_URING}};
/* io_uring as a 5.6 kernel would have it: every fallback path taken. */
static backend be_uring_old = {"io_uring",
                               {.backend = OTP__IO_URING, .uring_without = OTP__IO_URING_BASELINE}};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static otp__io *make_io(const backend *b, const otp__io_config *over)
{
    otp__io *io = NULL;
    int r = otp__io_create(&io, over ? over : &b->cfg);
    if (r != 0)
        fail_msg("otp__io_create(%s): %s", b->name, strerror(-r));
    assert_string_equal(otp__io_backend_name(io), b->name);
    return io;
}

/* Drives the loop until cond holds; fails (never hangs) past the limit. */
#define RUN_UNTIL(io, cond, what)                                                                  \
    do {                                                                                           \
        uint64_t deadline_ = now_ms() + STEP_LIMIT_MS;                                             \
        while (!(cond)) {                                                                          \
            int r_ = otp__io_wait((io), 100);                                                      \
            if (r_ < 0)                                                                            \
                fail_msg("otp__io_wait: %s (waiting for %s)", strerror(-r_), what);                \
            if (now_ms() > deadline_)                                                              \
                fail_msg("timed out waiting for %s", what);                                        \
        }                                                                                          \
    } while (0)

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* ---- a connected pair, through the backend itself ---- */

typedef struct pair_state {
    int accepted;
    int64_t accept_final;
    int64_t connect_res;
    int connects;
} pair_state;

static void pair_accepted(otp__io_op *op, int64_t res)
{
    pair_state *ps = op->data;
    if (res >= 0)
        ps->accepted = (int)res;
    else
        ps->accept_final = res;
}

static void pair_connected(otp__io_op *op, int64_t res)
{
    pair_state *ps = op->data;
    ps->connect_res = res;
    ps->connects++;
}

static void make_pair(otp__io *io, int *client, int *server)
{
    uint16_t port;
    int lfd = otp__tcp_listen("127.0.0.1", 0, 16, &port);
    assert_true(lfd >= 0);
    pair_state ps = {.accepted = -1, .connect_res = 1};
    otp__io_op aop = {.done = pair_accepted, .data = &ps};
    otp__io_op cop = {.done = pair_connected, .data = &ps};
    assert_int_equal(otp__io_accept(io, &aop, lfd), 0);
    int c = otp__tcp_socket(AF_INET);
    assert_true(c >= 0);
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(otp__sockaddr_parse("127.0.0.1", port, &ss, &len), 0);
    assert_int_equal(otp__io_connect(io, &cop, c, (struct sockaddr *)&ss, len, 0), 0);
    RUN_UNTIL(io, ps.accepted >= 0 && ps.connects == 1, "pair accept+connect");
    assert_int_equal(ps.connect_res, 0);
    assert_int_equal(otp__io_cancel(io, &aop), 0);
    RUN_UNTIL(io, ps.accept_final != 0, "accept's final completion");
    assert_int_equal(ps.accept_final, -ECANCELED);
    assert_int_equal(otp__io_close(io, lfd), 0);
    *client = c;
    *server = ps.accepted;
}

/* ---- backend choice ---- */

static void test_select(void **state)
{
    (void)state;
    otp__io *io;
    unsetenv("OTP_IO_BACKEND");
    setenv("OTP_IO_BACKEND", "epoll", 1);
    assert_int_equal(otp__io_create(&io, NULL), 0);
    assert_string_equal(otp__io_backend_name(io), "epoll");
    otp__io_destroy(io);
    setenv("OTP_IO_BACKEND", "kqueue-on-linux", 1);
    assert_int_equal(otp__io_create(&io, NULL), -EINVAL);
    /* The config wins over the environment. */
    otp__io_config cfg = {.backend = OTP__IO_EPOLL};
    setenv("OTP_IO_BACKEND", "io_uring", 1);
    assert_int_equal(otp__io_create(&io, &cfg), 0);
    assert_string_equal(otp__io_backend_name(io), "epoll");
    otp__io_destroy(io);
    unsetenv("OTP_IO_BACKEND");
    assert_int_equal(otp__io_create(&io, NULL), 0);
    printf("# default backend here: %s (%s)\n", otp__io_backend_name(io), otp__io_features(io));
    otp__io_destroy(io);
}

/* A child whose seccomp filter refuses io_uring_setup with EPERM, as Docker's
 * default profile does: the default choice must fall back to epoll, say so
 * in exactly one stderr line, and an explicit io_uring must fail. */
static int fallback_child(int errfd)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return 77;
    if (dup2(errfd, 2) < 0)
        return 10;
    unsetenv("OTP_IO_BACKEND");
    otp__io *io;
    if (otp__io_create(&io, NULL) != 0)
        return 11;
    if (strcmp(otp__io_backend_name(io), "epoll") != 0)
        return 12;
    otp__io_destroy(io);
    otp__io_config cfg = {.backend = OTP__IO_URING};
    if (otp__io_create(&io, &cfg) != -EPERM)
        return 13;
    return 0;
}

static void test_fallback(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        _exit(fallback_child(p[1]));
    }
    close(p[1]);
    char buf[1024];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf - 1 && (k = read(p[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = 0;
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) {
        printf("# seccomp unavailable here: fallback not exercised\n");
        skip();
    }
    assert_int_equal(WEXITSTATUS(st), 0);
    int lines = 0;
    for (size_t i = 0; i < n; i++)
        lines += buf[i] == '\n';
    assert_int_equal(lines, 1);
    assert_non_null(strstr(buf, "io_uring"));
    assert_non_null(strstr(buf, "epoll"));
    printf("# fallback said: %s", buf);
}

/* ---- wait with nothing to do ---- */

static void test_wait_timeout(void **state)
{
    const backend *b = *state;
    otp__io *io = make_io(b, NULL);
    assert_int_equal(otp__io_wait(io, 0), 0);
    /* wait may return early (a signal, or io_uring task work left from an
     * earlier ring on this thread interrupting the sleep), so sleep to the
     * deadline in a loop and require that it took few calls: it slept. */
    uint64_t t0 = now_ms(), dt;
    int calls = 0;
    while ((dt = now_ms() - t0) < 60) {
        assert_int_equal(otp__io_wait(io, 60 - dt), 0);
        calls++;
    }
    assert_true(calls <= 5);
    assert_true(dt < 10000);
    otp__io_op op = {0};
    assert_int_equal(otp__io_cancel(io, &op), -ENOENT);
    assert_int_equal(otp__io_recv(io, &op, 0, (char[1]){0}, 1), -EINVAL); /* no done */
    otp__io_destroy(io);
}

/* ---- echo over many concurrent connections ---- */

#define ECHO_CLIENTS 200
#define ECHO_ROUNDS  10
#define ECHO_MAX     4000

typedef struct echo_ctx echo_ctx;
typedef struct echo_conn {
    otp__io_op rop, wop, cop;
    echo_ctx *ctx;
    int fd, id, round;
    size_t len, got;
    bool sent, received;
    struct iovec iov;
    unsigned char out[ECHO_MAX], in[ECHO_MAX];
} echo_conn;

struct echo_ctx {
    otp__io *io;
    otp__io_op aop;
    int64_t accept_final;
    echo_conn *servers[ECHO_CLIENTS + 8];
    int nservers, servers_closed, clients_done, errors;
    char first_error[160];
};

static void echo_error(echo_ctx *x, const char *what, int64_t res)
{
    if (!x->errors++)
        snprintf(x->first_error, sizeof x->first_error, "%s: %" PRId64 " (%s)", what, res,
                 res < 0 ? strerror((int)-res) : "");
}

static void server_recv_done(otp__io_op *op, int64_t res);

static void server_sent(otp__io_op *op, int64_t res)
{
    echo_conn *c = op->data;
    if (res != (int64_t)c->iov.iov_len)
        echo_error(c->ctx, "server send", res);
    if (otp__io_recv(c->ctx->io, &c->rop, c->fd, c->in, sizeof c->in) != 0)
        echo_error(c->ctx, "server resubmit recv", 0);
}

static void server_recv_done(otp__io_op *op, int64_t res)
{
    echo_conn *c = op->data;
    if (res > 0) {
        c->iov.iov_base = c->in;
        c->iov.iov_len = (size_t)res;
        if (otp__io_send(c->ctx->io, &c->wop, c->fd, &c->iov, 1) != 0)
            echo_error(c->ctx, "server submit send", 0);
        return;
    }
    if (res < 0)
        echo_error(c->ctx, "server recv", res);
    otp__io_close(c->ctx->io, c->fd);
    c->ctx->servers_closed++;
}

static void echo_accepted(otp__io_op *op, int64_t res)
{
    echo_ctx *x = op->data;
    if (res < 0) {
        x->accept_final = res;
        return;
    }
    if (x->nservers == ECHO_CLIENTS + 8) {
        echo_error(x, "too many accepts", res);
        close((int)res);
        return;
    }
    echo_conn *c = calloc(1, sizeof *c);
    assert_non_null(c);
    x->servers[x->nservers++] = c;
    c->ctx = x;
    c->fd = (int)res;
    c->rop = (otp__io_op){.done = server_recv_done, .data = c};
    c->wop = (otp__io_op){.done = server_sent, .data = c};
    if (otp__io_recv(x->io, &c->rop, c->fd, c->in, sizeof c->in) != 0)
        echo_error(x, "server submit recv", 0);
}

static void client_round(echo_conn *c);

static void client_next(echo_conn *c)
{
    if (!c->sent || !c->received)
        return;
    if (memcmp(c->in, c->out, c->len) != 0)
        echo_error(c->ctx, "echo mismatch", c->id);
    if (++c->round == ECHO_ROUNDS) {
        otp__io_close(c->ctx->io, c->fd);
        c->ctx->clients_done++;
        return;
    }
    client_round(c);
}

static void client_sent(otp__io_op *op, int64_t res)
{
    echo_conn *c = op->data;
    if (res != (int64_t)c->len)
        echo_error(c->ctx, "client send", res);
    c->sent = true;
    client_next(c);
}

static void client_recv_done(otp__io_op *op, int64_t res)
{
    echo_conn *c = op->data;
    if (res <= 0) {
        echo_error(c->ctx, "client recv", res);
        return;
    }
    c->got += (size_t)res;
    if (c->got < c->len) {
        if (otp__io_recv(c->ctx->io, &c->rop, c->fd, c->in + c->got, c->len - c->got) != 0)
            echo_error(c->ctx, "client resubmit recv", 0);
        return;
    }
    c->received = true;
    client_next(c);
}

static void client_round(echo_conn *c)
{
    c->len = 1 + ((size_t)c->id * 131 + (size_t)c->round * 977) % ECHO_MAX;
    for (size_t i = 0; i < c->len; i++)
        c->out[i] = (unsigned char)(c->id * 7 + c->round * 13 + i);
    c->got = 0;
    c->sent = c->received = false;
    c->iov.iov_base = c->out;
    c->iov.iov_len = c->len;
    if (otp__io_send(c->ctx->io, &c->wop, c->fd, &c->iov, 1) != 0 ||
        otp__io_recv(c->ctx->io, &c->rop, c->fd, c->in, c->len) != 0)
        echo_error(c->ctx, "client submit", 0);
}

static void client_connected(otp__io_op *op, int64_t res)
{
    echo_conn *c = op->data;
    if (res != 0) {
        echo_error(c->ctx, "connect", res);
        return;
    }
    client_round(c);
}

static void test_echo_many(void **state)
{
    const backend *b = *state;
    int fds_before = count_fds();
    echo_ctx *x = calloc(1, sizeof *x);
    echo_conn *clients = calloc(ECHO_CLIENTS, sizeof *clients);
    assert_non_null(x);
    assert_non_null(clients);
    x->io = make_io(b, NULL);
    uint16_t port;
    int lfd = otp__tcp_listen("127.0.0.1", 0, 1024, &port);
    assert_true(lfd >= 0);
    x->aop = (otp__io_op){.done = echo_accepted, .data = x};
    assert_int_equal(otp__io_accept(x->io, &x->aop, lfd), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(otp__sockaddr_parse("127.0.0.1", port, &ss, &len), 0);
    for (int i = 0; i < ECHO_CLIENTS; i++) {
        echo_conn *c = &clients[i];
        c->ctx = x;
        c->id = i;
        c->fd = otp__tcp_socket(AF_INET);
        assert_true(c->fd >= 0);
        c->cop = (otp__io_op){.done = client_connected, .data = c};
        c->rop = (otp__io_op){.done = client_recv_done, .data = c};
        c->wop = (otp__io_op){.done = client_sent, .data = c};
        assert_int_equal(otp__io_connect(x->io, &c->cop, c->fd, (struct sockaddr *)&ss, len, 10000),
                         0);
    }
    RUN_UNTIL(x->io,
              x->errors || (x->clients_done == ECHO_CLIENTS && x->servers_closed == ECHO_CLIENTS),
              "all echo rounds");
    if (x->errors)
        fail_msg("%d errors, first: %s", x->errors, x->first_error);
    assert_int_equal(x->nservers, ECHO_CLIENTS);
    assert_int_equal(otp__io_cancel(x->io, &x->aop), 0);
    RUN_UNTIL(x->io, x->accept_final != 0, "accept's final completion");
    assert_int_equal(x->accept_final, -ECANCELED);
    assert_int_equal(otp__io_close(x->io, lfd), 0);
    otp__io_stats st;
    otp__io_get_stats(x->io, &st);
    /* 200 connects + 200 accepts + per round 2 client + 2 server + the end */
    assert_true(st.completions >= (uint64_t)ECHO_CLIENTS * (2 + 4 * ECHO_ROUNDS));
    otp__io_destroy(x->io);
    for (int i = 0; i < x->nservers; i++)
        free(x->servers[i]);
    free(clients);
    free(x);
    assert_int_equal(count_fds(), fds_before); /* every socket closed, nothing leaked */
}

/* ---- 64 MB through one socket ---- */

#define BULK_TOTAL (64u << 20)
#define BULK_IOVS  1500 /* more than IOV_MAX: the backend must split */
#define BULK_RBUF  (256u << 10)

typedef struct bulk {
    otp__io *io;
    otp__io_op sop, rop;
    int cfd, sfd;
    unsigned char *src, *rbuf;
    struct iovec iov[BULK_IOVS];
    size_t received, rlimit;
    int64_t send_res, recv_err;
    int sends, mismatch_at;
    bool eof;
} bulk;

static void bulk_sent(otp__io_op *op, int64_t res)
{
    bulk *k = op->data;
    k->send_res = res;
    k->sends++;
}

static void bulk_recv(otp__io_op *op, int64_t res)
{
    bulk *k = op->data;
    if (res < 0) {
        k->recv_err = res;
        return;
    }
    if (res == 0) {
        k->eof = true;
        return;
    }
    if (k->mismatch_at < 0 && memcmp(k->rbuf, k->src + k->received, (size_t)res) != 0)
        for (int64_t i = 0; i < res; i++)
            if (k->rbuf[i] != k->src[k->received + (size_t)i]) {
                k->mismatch_at = (int)(k->received + (size_t)i);
                break;
            }
    k->received += (size_t)res;
    if (k->received < k->rlimit) {
        size_t want = k->rlimit - k->received;
        if (otp__io_recv(k->io, &k->rop, k->sfd, k->rbuf, want < BULK_RBUF ? want : BULK_RBUF))
            k->recv_err = -EIO;
    }
}

static void bulk_fill(bulk *k)
{
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < BULK_TOTAL; i += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        memcpy(k->src + i, &x, 8);
    }
    /* Uneven elements, some empty, covering the buffer exactly. */
    size_t off = 0;
    uint32_t r = 12345;
    for (int i = 0; i < BULK_IOVS; i++) {
        r = r * 1103515245u + 12345u;
        size_t len = i % 97 == 5 ? 0 : (r >> 8) % (2 * BULK_TOTAL / BULK_IOVS);
        if (i == BULK_IOVS - 1 || off + len > BULK_TOTAL)
            len = BULK_TOTAL - off;
        k->iov[i].iov_base = k->src + off;
        k->iov[i].iov_len = len;
        off += len;
    }
}

static bulk *bulk_new(void)
{
    bulk *k = calloc(1, sizeof *k);
    assert_non_null(k);
    k->src = malloc(BULK_TOTAL);
    k->rbuf = malloc(BULK_RBUF);
    assert_non_null(k->src);
    assert_non_null(k->rbuf);
    bulk_fill(k);
    return k;
}

static void bulk_free(bulk *k)
{
    free(k->src);
    free(k->rbuf);
    free(k);
}

static void bulk_run(const backend *b, bulk *k, const otp__io_config *cfg, const char *label,
                     bool expect_short)
{
    k->io = make_io(b, cfg);
    k->received = 0;
    k->sends = 0;
    k->send_res = 0;
    k->recv_err = 0;
    k->mismatch_at = -1;
    k->eof = false;
    k->rlimit = BULK_TOTAL;
    make_pair(k->io, &k->cfd, &k->sfd);
    k->sop = (otp__io_op){.done = bulk_sent, .data = k};
    k->rop = (otp__io_op){.done = bulk_recv, .data = k};
    uint64_t t0 = now_ms();
    assert_int_equal(otp__io_send(k->io, &k->sop, k->cfd, k->iov, BULK_IOVS), 0);
    assert_int_equal(otp__io_recv(k->io, &k->rop, k->sfd, k->rbuf, BULK_RBUF), 0);
    RUN_UNTIL(k->io, k->recv_err || (k->sends && k->received == BULK_TOTAL), "64 MB transfer");
    uint64_t dt = now_ms() - t0;
    assert_int_equal(k->recv_err, 0);
    assert_int_equal(k->sends, 1);
    assert_int_equal(k->send_res, (int64_t)BULK_TOTAL);
    assert_int_equal(k->mismatch_at, -1);
    otp__io_stats st;
    otp__io_get_stats(k->io, &st);
    printf("# %s %s: 64 MB in %" PRIu64 " ms, %" PRIu64 " short writes continued\n", b->name, label,
           dt, st.short_sends);
    if (expect_short)
        assert_true(st.short_sends > 0);
    otp__io_close(k->io, k->cfd);
    otp__io_close(k->io, k->sfd);
    otp__io_destroy(k->io);
}

static void test_large_transfer(void **state)
{
    const backend *b = *state;
    bulk *k = bulk_new();
    otp__io_config cfg = b->cfg;
    /* epoll meets a full socket buffer; io_uring's MSG_WAITALL retries in
     * the kernel, so short writes there are counted, not required. */
    bulk_run(b, k, &cfg, "default", b->cfg.backend == OTP__IO_EPOLL);
    if (b->cfg.backend == OTP__IO_URING) {
        cfg.send_no_waitall = true;
        bulk_run(b, k, &cfg, "no MSG_WAITALL", true);
    }
    /* A cap that cuts elements in odd places: the cursor's offset path. */
    cfg = b->cfg;
    cfg.send_chunk_max = 100003;
    bulk_run(b, k, &cfg, "100003-byte chunks", true);
    bulk_free(k);
}

/* ---- the peer goes away ---- */

static void test_peer_close(void **state)
{
    const backend *b = *state;
    bulk *k = bulk_new();
    k->io = make_io(b, NULL);
    k->mismatch_at = -1;

    /* 1: the peer sends 1000 bytes and closes: data, then recv returns 0. */
    make_pair(k->io, &k->cfd, &k->sfd);
    struct iovec one = {k->src, 1000};
    k->sop = (otp__io_op){.done = bulk_sent, .data = k};
    k->rop = (otp__io_op){.done = bulk_recv, .data = k};
    k->rlimit = SIZE_MAX;
    assert_int_equal(otp__io_send(k->io, &k->sop, k->cfd, &one, 1), 0);
    RUN_UNTIL(k->io, k->sends == 1, "1000-byte send");
    assert_int_equal(k->send_res, 1000);
    assert_int_equal(otp__io_close(k->io, k->cfd), 0);
    assert_int_equal(otp__io_recv(k->io, &k->rop, k->sfd, k->rbuf, BULK_RBUF), 0);
    RUN_UNTIL(k->io, k->eof || k->recv_err, "end of stream");
    assert_int_equal(k->recv_err, 0);
    assert_int_equal(k->received, 1000);
    assert_int_equal(k->mismatch_at, -1);
    otp__io_close(k->io, k->sfd);

    /* 2: the peer reads 1 MB of 64 and closes with data unread (an RST):
     * the send completes once, with EPIPE or ECONNRESET, and no SIGPIPE
     * (this test does not ignore it). */
    make_pair(k->io, &k->cfd, &k->sfd);
    k->sends = 0;
    k->received = 0;
    k->rlimit = 1u << 20;
    k->eof = false;
    assert_int_equal(otp__io_send(k->io, &k->sop, k->cfd, k->iov, BULK_IOVS), 0);
    assert_int_equal(otp__io_recv(k->io, &k->rop, k->sfd, k->rbuf, BULK_RBUF), 0);
    RUN_UNTIL(k->io, k->received >= k->rlimit || k->recv_err, "the first megabyte");
    assert_int_equal(k->recv_err, 0);
    assert_int_equal(otp__io_close(k->io, k->sfd), 0);
    RUN_UNTIL(k->io, k->sends, "the failed send");
    if (k->send_res != -EPIPE && k->send_res != -ECONNRESET)
        fail_msg("send after the peer closed: %" PRId64, k->send_res);
    assert_int_equal(k->sends, 1);
    /* The same op is idle again and can be reused. */
    assert_false(otp__io_op_pending(&k->sop));
    otp__io_close(k->io, k->cfd);
    otp__io_destroy(k->io);
    bulk_free(k);
}

/* ---- connect timeouts ---- */

typedef struct conn_try {
    otp__io_op op;
    int64_t res;
    int calls;
} conn_try;

static void conn_try_done(otp__io_op *op, int64_t res)
{
    conn_try *t = op->data;
    t->res = res;
    t->calls++;
}

static int64_t connect_once(otp__io *io, int *fd_out, const struct sockaddr_storage *ss,
                            socklen_t len, uint64_t timeout_ms, uint64_t *elapsed)
{
    conn_try t = {.op = {.done = conn_try_done}};
    t.op.data = &t;
    int fd = otp__tcp_socket(ss->ss_family);
    assert_true(fd >= 0);
    uint64_t t0 = now_ms();
    assert_int_equal(otp__io_connect(io, &t.op, fd, (const struct sockaddr *)ss, len, timeout_ms),
                     0);
    RUN_UNTIL(io, t.calls, "connect completion");
    *elapsed = now_ms() - t0;
    assert_int_equal(t.calls, 1);
    *fd_out = fd;
    return t.res;
}

static void test_connect_timeout(void **state)
{
    const backend *b = *state;
    otp__io *io = make_io(b, NULL);
    struct sockaddr_storage ss;
    socklen_t len;
    uint64_t dt;
    int fd;

    /* Deterministic: a listener with backlog 0 that never accepts holds
     * one connection; after that the kernel drops SYNs and the connect
     * hangs until our timeout. */
    uint16_t port;
    int lfd = otp__tcp_listen("127.0.0.1", 0, 0, &port);
    assert_true(lfd >= 0);
    assert_int_equal(otp__sockaddr_parse("127.0.0.1", port, &ss, &len), 0);
    int held[8], nheld = 0;
    int64_t res = 0;
    while (nheld < 8) {
        res = connect_once(io, &fd, &ss, len, 200, &dt);
        if (res != 0)
            break;
        held[nheld++] = fd;
    }
    assert_int_equal(res, -ETIMEDOUT);
    assert_true(nheld >= 1);
    assert_true(dt >= 190 && dt < 10000);
    printf("# %s: backlog full after %d connection(s); timed out after %" PRIu64 " ms\n", b->name,
           nheld, dt);
    otp__io_close(io, fd);

    /* Cancelling a connect that has a timeout: -ECANCELED, not -ETIMEDOUT. */
    conn_try t = {.op = {.done = conn_try_done}};
    t.op.data = &t;
    fd = otp__tcp_socket(AF_INET);
    assert_int_equal(otp__io_connect(io, &t.op, fd, (struct sockaddr *)&ss, len, 5000), 0);
    assert_int_equal(otp__io_wait(io, 0) >= 0, 1);
    assert_int_equal(otp__io_cancel(io, &t.op), 0);
    RUN_UNTIL(io, t.calls, "cancelled connect");
    assert_int_equal(t.res, -ECANCELED);
    otp__io_close(io, fd);
    for (int i = 0; i < nheld; i++)
        otp__io_close(io, held[i]);
    otp__io_close(io, lfd);

    /* Refused: a port nobody listens on. */
    lfd = otp__tcp_listen("127.0.0.1", 0, 1, &port);
    close(lfd);
    assert_int_equal(otp__sockaddr_parse("127.0.0.1", port, &ss, &len), 0);
    res = connect_once(io, &fd, &ss, len, 5000, &dt);
    assert_int_equal(res, -ECONNREFUSED);
    otp__io_close(io, fd);

    /* Non-routable: times out on an ordinary network; a sandbox may answer
     * unreachable at once, or (a transparent proxy) even connect. */
    assert_int_equal(otp__sockaddr_parse("10.255.255.1", 9, &ss, &len), 0);
    res = connect_once(io, &fd, &ss, len, 300, &dt);
    printf("# %s: connect to 10.255.255.1:9 -> %s after %" PRIu64 " ms\n", b->name,
           res ? strerror((int)-res) : "connected (proxied network)", dt);
    assert_true(res == 0 || res == -ETIMEDOUT || res == -ENETUNREACH || res == -EHOSTUNREACH ||
                res == -ECONNREFUSED || res == -EACCES || res == -EPERM);
    otp__io_close(io, fd);
    otp__io_destroy(io);
}

/* ---- cancellation ---- */

typedef struct counted {
    otp__io_op op;
    int calls;
    int64_t res;
} counted;

static void counted_done(otp__io_op *op, int64_t res)
{
    counted *c = op->data;
    c->calls++;
    c->res = res;
}

static void counted_init(counted *c)
{
    *c = (counted){.op = {.done = counted_done}};
    c->op.data = c;
}

static void test_cancel(void **state)
{
    const backend *b = *state;
    otp__io *io = make_io(b, NULL);
    int cfd, sfd;
    make_pair(io, &cfd, &sfd);
    char buf[64];
    counted r1, r2, r3, s1;
    counted_init(&r1);
    counted_init(&r2);
    counted_init(&r3);
    counted_init(&s1);

    /* A recv that has reached the kernel (or its socket queue). */
    assert_int_equal(otp__io_recv(io, &r1.op, cfd, buf, sizeof buf), 0);
    assert_true(otp__io_wait(io, 0) >= 0);
    assert_true(otp__io_wait(io, 0) >= 0);
    assert_int_equal(r1.calls, 0);
    assert_int_equal(otp__io_recv(io, &r1.op, cfd, buf, sizeof buf), -EBUSY);
    assert_int_equal(otp__io_cancel(io, &r1.op), 0);
    assert_int_equal(otp__io_cancel(io, &r1.op), -EALREADY);
    RUN_UNTIL(io, r1.calls, "cancelled recv");
    assert_int_equal(r1.res, -ECANCELED);
    assert_int_equal(otp__io_cancel(io, &r1.op), -ENOENT);

    /* The cancelled recv is really gone: new data goes to the next recv. */
    struct iovec v = {"hello", 5};
    assert_int_equal(otp__io_send(io, &s1.op, sfd, &v, 1), 0);
    assert_int_equal(otp__io_recv(io, &r2.op, cfd, buf, sizeof buf), 0);
    RUN_UNTIL(io, r2.calls && s1.calls, "recv after cancel");
    assert_int_equal(r2.res, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(r1.calls, 1);

    /* Cancelled before it ever reached the kernel (same loop iteration). */
    counted_init(&r2);
    assert_int_equal(otp__io_recv(io, &r2.op, cfd, buf, sizeof buf), 0);
    assert_int_equal(otp__io_cancel(io, &r2.op), 0);
    RUN_UNTIL(io, r2.calls, "recv cancelled before submission");
    assert_int_equal(r2.res, -ECANCELED);

    /* Closing a socket cancels what is pending on it. */
    assert_int_equal(otp__io_recv(io, &r3.op, cfd, buf, sizeof buf), 0);
    assert_true(otp__io_wait(io, 0) >= 0);
    assert_int_equal(otp__io_close(io, cfd), 0);
    RUN_UNTIL(io, r3.calls, "recv on a closed socket");
    assert_int_equal(r3.res, -ECANCELED);
    /* Nothing more arrives for any of them. */
    assert_true(otp__io_wait(io, 0) >= 0);
    assert_int_equal(r1.calls + r2.calls + r3.calls, 3);
    otp__io_close(io, sfd);
    otp__io_destroy(io);
}

/* An accept that ends itself from a connection's callback, by cancel or by
 * closing its listener: the connections it had taken, then exactly one
 * -ECANCELED. */
typedef struct self_end {
    otp__io *io;
    otp__io_op op;
    int lfd, conns, finals, fds[4];
    int64_t final;
    bool by_close;
} self_end;

static void self_end_done(otp__io_op *op, int64_t res)
{
    self_end *x = op->data;
    if (res < 0) {
        x->finals++;
        x->final = res;
        return;
    }
    if (x->conns < 4)
        x->fds[x->conns] = (int)res;
    else
        close((int)res);
    if (x->conns++ == 0) {
        int r = x->by_close ? otp__io_close(x->io, x->lfd) : otp__io_cancel(x->io, op);
        if (r != 0)
            x->finals += 100; /* reported by the count check */
    }
}

static void test_accept_ends_itself(void **state)
{
    const backend *b = *state;
    for (int by_close = 0; by_close < 2; by_close++) {
        self_end x = {.by_close = by_close};
        x.io = make_io(b, NULL);
        x.op = (otp__io_op){.done = self_end_done, .data = &x};
        uint16_t port;
        x.lfd = otp__tcp_listen("127.0.0.1", 0, 16, &port);
        assert_true(x.lfd >= 0);
        assert_int_equal(otp__io_accept(x.io, &x.op, x.lfd), 0);
        struct sockaddr_storage ss;
        socklen_t len;
        assert_int_equal(otp__sockaddr_parse("127.0.0.1", port, &ss, &len), 0);
        counted c[3];
        int cfd[3];
        for (int i = 0; i < 3; i++) {
            counted_init(&c[i]);
            cfd[i] = otp__tcp_socket(AF_INET);
            assert_int_equal(
                otp__io_connect(x.io, &c[i].op, cfd[i], (struct sockaddr *)&ss, len, 0), 0);
        }
        RUN_UNTIL(x.io, x.finals, "the accept's end");
        assert_true(otp__io_wait(x.io, 0) >= 0);
        assert_int_equal(x.finals, 1);
        assert_int_equal(x.final, -ECANCELED);
        assert_true(x.conns >= 1 && x.conns <= 3);
        assert_false(otp__io_op_pending(&x.op));
        for (int i = 0; i < x.conns && i < 4; i++)
            otp__io_close(x.io, x.fds[i]);
        if (!by_close)
            otp__io_close(x.io, x.lfd);
        /* The clients' connects all end one way or another (refused or
         * reset once the listener is gone, or connected). */
        RUN_UNTIL(x.io, c[0].calls && c[1].calls && c[2].calls, "the clients' connects");
        for (int i = 0; i < 3; i++)
            otp__io_close(x.io, cfd[i]);
        otp__io_destroy(x.io);
    }
}

/* ---- pooled receives ---- */

typedef struct pooled {
    otp__io_op op;
    int calls;
    int64_t res;
    unsigned char *buf;
} pooled;

static void pooled_done(otp__io_op *op, int64_t res)
{
    pooled *p = op->data;
    p->calls++;
    p->res = res;
    p->buf = otp__io_pooled_buf(op);
}

static void pooled_init(pooled *p)
{
    *p = (pooled){.op = {.done = pooled_done}};
    p->op.data = p;
}

static otp__io_config pool_cfg(const backend *b, unsigned bufs, size_t size)
{
    otp__io_config cfg = b->cfg;
    cfg.pool_bufs = bufs;
    cfg.pool_buf_size = size;
    return cfg;
}

/* Which pool the instance's first pooled receive set up, from its
 * features: "buf_ring", "user_pool", or NULL before any. */
static const char *pool_label(const otp__io *io)
{
    const char *f = otp__io_features(io);
    return strstr(f, "buf_ring") ? "buf_ring" : strstr(f, "user_pool") ? "user_pool" : NULL;
}

/* What this backend's pool is with the default geometry: epoll and the
 * baseline io_uring must use the user-space pool; io_uring uses the buffer
 * ring wherever the kernel has one. Tests compare against it, so that a
 * buffer ring refused for some geometry or thread would not go unnoticed
 * behind the silent fallback. */
static const char *expected_pool(const backend *b)
{
    if (b->cfg.backend == OTP__IO_EPOLL || (b->cfg.uring_without & OTP__IO_URING_NO_BUF_RING))
        return "user_pool";
    otp__io *io = make_io(b, NULL);
    int cfd, sfd;
    make_pair(io, &cfd, &sfd);
    counted c;
    counted_init(&c);
    assert_int_equal(otp__io_recv_pooled(io, &c.op, sfd), 0);
    assert_int_equal(otp__io_close(io, cfd), 0);
    RUN_UNTIL(io, c.calls, "end of stream");
    const char *label = pool_label(io);
    assert_non_null(label);
    otp__io_close(io, sfd);
    otp__io_destroy(io);
    return label;
}

/* Sends len bytes on fd through the backend and waits for the send. */
static void send_all(otp__io *io, int fd, const void *data, size_t len)
{
    counted s;
    counted_init(&s);
    struct iovec v = {(void *)data, len};
    assert_int_equal(otp__io_send(io, &s.op, fd, &v, 1), 0);
    RUN_UNTIL(io, s.calls, "a send");
    assert_int_equal(s.res, (int64_t)len);
}

/* 16 connections, each echoing 8 messages of up to 2000 bytes through a pool
 * of 4 buffers of 512 bytes that both sides share: every message needs
 * several buffers and the pool runs dry all the time. The server sends each
 * chunk straight from its pool buffer and then keeps the buffer; the test
 * loop hands kept buffers back a few at a time in a shuffled order, while
 * the clients release theirs inside their callbacks. */
#define PE_CONNS  16
#define PE_ROUNDS 8
#define PE_MAX    2000
#define PE_BUF    512

typedef struct pe_ctx pe_ctx;
typedef struct pe_conn {
    pe_ctx *x;
    otp__io_op srop, swop, crop, cwop;
    int cfd, sfd, id, round;
    size_t len, got;
    bool sent;
    unsigned char *sbuf; /* the pool buffer the server is sending from */
    struct iovec siov, civ;
    unsigned char out[PE_MAX], in[PE_MAX];
} pe_conn;

struct pe_ctx {
    otp__io *io;
    unsigned char *kept[PE_CONNS];
    int nkept, done, errors;
    uint64_t echoed;
    char first_error[160];
};

static void pe_error(pe_ctx *x, const char *what, int id, int64_t res)
{
    if (!x->errors++)
        snprintf(x->first_error, sizeof x->first_error, "conn %d: %s: %" PRId64, id, what, res);
}

static void pe_round(pe_conn *c);

static void pe_server_recv(otp__io_op *op, int64_t res)
{
    pe_conn *c = op->data;
    if (res == 0)
        return; /* the client is done */
    unsigned char *buf = otp__io_pooled_buf(op);
    if (res < 0 || res > PE_BUF || !buf) {
        pe_error(c->x, "server pooled recv", c->id, res);
        return;
    }
    c->sbuf = buf;
    c->siov = (struct iovec){buf, (size_t)res};
    if (otp__io_send(c->x->io, &c->swop, c->sfd, &c->siov, 1) != 0)
        pe_error(c->x, "server send submit", c->id, 0);
}

static void pe_server_sent(otp__io_op *op, int64_t res)
{
    pe_conn *c = op->data;
    if (res != (int64_t)c->siov.iov_len)
        pe_error(c->x, "server send", c->id, res);
    c->x->kept[c->x->nkept++] = c->sbuf; /* released later, by the test loop */
    c->sbuf = NULL;
    if (otp__io_recv_pooled(c->x->io, &c->srop, c->sfd) != 0)
        pe_error(c->x, "server pooled recv submit", c->id, 0);
}

static void pe_client_next(pe_conn *c)
{
    if (!c->sent || c->got < c->len)
        return;
    if (memcmp(c->in, c->out, c->len) != 0)
        pe_error(c->x, "echo mismatch", c->id, c->round);
    c->x->echoed += c->len;
    if (++c->round == PE_ROUNDS)
        c->x->done++;
    else
        pe_round(c);
}

static void pe_client_recv(otp__io_op *op, int64_t res)
{
    pe_conn *c = op->data;
    unsigned char *buf = otp__io_pooled_buf(op);
    if (res <= 0 || res > PE_BUF || !buf || c->got + (size_t)res > c->len) {
        pe_error(c->x, "client pooled recv", c->id, res);
        otp__io_buf_release(c->x->io, buf);
        return;
    }
    memcpy(c->in + c->got, buf, (size_t)res);
    c->got += (size_t)res;
    otp__io_buf_release(c->x->io, buf); /* at once, inside the callback */
    if (c->got < c->len && otp__io_recv_pooled(c->x->io, &c->crop, c->cfd) != 0)
        pe_error(c->x, "client pooled recv submit", c->id, 0);
    pe_client_next(c);
}

static void pe_client_sent(otp__io_op *op, int64_t res)
{
    pe_conn *c = op->data;
    if (res != (int64_t)c->len)
        pe_error(c->x, "client send", c->id, res);
    c->sent = true;
    pe_client_next(c);
}

static void pe_round(pe_conn *c)
{
    c->len = 1 + ((size_t)c->id * 389 + (size_t)c->round * 1231) % PE_MAX;
    for (size_t i = 0; i < c->len; i++)
        c->out[i] = (unsigned char)(c->id * 31 + c->round * 7 + i * 3);
    c->got = 0;
    c->sent = false;
    c->civ = (struct iovec){c->out, c->len};
    if (otp__io_send(c->x->io, &c->cwop, c->cfd, &c->civ, 1) != 0 ||
        otp__io_recv_pooled(c->x->io, &c->crop, c->cfd) != 0)
        pe_error(c->x, "client submit", c->id, 0);
}

static bool pe_servers_idle(const pe_conn *conns)
{
    for (int i = 0; i < PE_CONNS; i++)
        if (otp__io_op_pending(&conns[i].srop) || otp__io_op_pending(&conns[i].swop))
            return false;
    return true;
}

static void test_pooled_echo(void **state)
{
    const backend *b = *state;
    otp__io_config cfg = pool_cfg(b, 4, PE_BUF);
    pe_ctx *x = calloc(1, sizeof *x);
    pe_conn *conns = calloc(PE_CONNS, sizeof *conns);
    assert_non_null(x);
    assert_non_null(conns);
    x->io = make_io(b, &cfg);
    for (int i = 0; i < PE_CONNS; i++) {
        pe_conn *c = &conns[i];
        c->x = x;
        c->id = i;
        make_pair(x->io, &c->cfd, &c->sfd);
        c->srop = (otp__io_op){.done = pe_server_recv, .data = c};
        c->swop = (otp__io_op){.done = pe_server_sent, .data = c};
        c->crop = (otp__io_op){.done = pe_client_recv, .data = c};
        c->cwop = (otp__io_op){.done = pe_client_sent, .data = c};
        assert_int_equal(otp__io_recv_pooled(x->io, &c->srop, c->sfd), 0);
    }
    assert_string_equal(pool_label(x->io), expected_pool(b));
    printf("# %s pool: %s\n", b->name, otp__io_features(x->io));
    for (int i = 0; i < PE_CONNS; i++)
        pe_round(&conns[i]);
    uint32_t rnd = 7;
    uint64_t deadline = now_ms() + STEP_LIMIT_MS;
    while (!x->errors && x->done < PE_CONNS) {
        int r = otp__io_wait(x->io, 100);
        if (r < 0)
            fail_msg("otp__io_wait: %s", strerror(-r));
        if (now_ms() > deadline)
            fail_msg("timed out: %d of %d connections done, %d buffers kept", x->done, PE_CONNS,
                     x->nkept);
        /* Some of the kept buffers, in a shuffled order; at least one, so
         * the loop always moves. */
        rnd = rnd * 1103515245u + 12345u;
        int n = x->nkept ? 1 + (int)((rnd >> 16) % (unsigned)x->nkept) : 0;
        while (n--) {
            rnd = rnd * 1103515245u + 12345u;
            int k = (int)((rnd >> 16) % (unsigned)x->nkept);
            otp__io_buf_release(x->io, x->kept[k]);
            x->kept[k] = x->kept[--x->nkept];
        }
    }
    if (x->errors)
        fail_msg("%d errors, first: %s", x->errors, x->first_error);
    otp__io_stats st;
    otp__io_get_stats(x->io, &st);
    printf("# %s: %" PRIu64 " bytes echoed through 4 x %d-byte buffers, %" PRIu64
           " waits for a buffer\n",
           b->name, x->echoed, PE_BUF, st.pool_waits);
    assert_true(st.pool_waits > 0);
    while (x->nkept)
        otp__io_buf_release(x->io, x->kept[--x->nkept]);
    /* The servers' pooled receives see the clients go: end of stream. */
    for (int i = 0; i < PE_CONNS; i++)
        otp__io_close(x->io, conns[i].cfd);
    RUN_UNTIL(x->io, pe_servers_idle(conns), "the servers' end of stream");
    for (int i = 0; i < PE_CONNS; i++)
        otp__io_close(x->io, conns[i].sfd);
    otp__io_destroy(x->io);
    free(conns);
    free(x);
}

/* End of stream and a reset, each with the receive waiting in the backend
 * before the peer acts. */
static void test_pooled_eof_reset(void **state)
{
    const backend *b = *state;
    otp__io *io = make_io(b, NULL);
    int cfd, sfd;
    pooled p;

    make_pair(io, &cfd, &sfd);
    pooled_init(&p);
    assert_int_equal(otp__io_recv_pooled(io, &p.op, sfd), 0);
    assert_true(otp__io_wait(io, 0) >= 0);
    assert_int_equal(p.calls, 0);
    send_all(io, cfd, "0123456789", 10);
    RUN_UNTIL(io, p.calls, "pooled data");
    assert_int_equal(p.res, 10);
    assert_non_null(p.buf);
    assert_memory_equal(p.buf, "0123456789", 10);
    otp__io_buf_release(io, p.buf);
    assert_int_equal(otp__io_recv_pooled(io, &p.op, sfd), 0);
    assert_null(otp__io_pooled_buf(&p.op)); /* pending: nothing to show */
    assert_true(otp__io_wait(io, 0) >= 0);
    assert_int_equal(otp__io_close(io, cfd), 0);
    RUN_UNTIL(io, p.calls == 2, "pooled end of stream");
    assert_int_equal(p.res, 0);
    assert_null(p.buf);
    otp__io_close(io, sfd);

    /* An abortive close (linger 0) sends a reset. */
    make_pair(io, &cfd, &sfd);
    pooled_init(&p);
    assert_int_equal(otp__io_recv_pooled(io, &p.op, sfd), 0);
    assert_true(otp__io_wait(io, 0) >= 0);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    assert_int_equal(otp__io_close(io, cfd), 0);
    RUN_UNTIL(io, p.calls, "pooled receive of a reset");
    assert_int_equal(p.res, -ECONNRESET);
    assert_null(p.buf);
    otp__io_close(io, sfd);
    otp__io_destroy(io);
}

/* A one-buffer pool: the second receive has to wait for the first one's
 * buffer. Cancelled or closed while it waits, it ends with -ECANCELED and
 * takes nothing with it; a release hands the buffer to the next waiter. */
static void test_pooled_parked(void **state)
{
    const backend *b = *state;
    otp__io_config cfg = pool_cfg(b, 1, 512);
    otp__io *io = make_io(b, &cfg);
    int cfd[4], sfd[4];
    pooled p[4];
    for (int i = 0; i < 4; i++) {
        make_pair(io, &cfd[i], &sfd[i]);
        pooled_init(&p[i]);
        send_all(io, cfd[i], "abcd", 1 + (size_t)i);
    }
    otp__io_stats st;

    assert_int_equal(otp__io_recv_pooled(io, &p[0].op, sfd[0]), 0);
    assert_string_equal(pool_label(io), expected_pool(b));
    RUN_UNTIL(io, p[0].calls, "the pool's one buffer");
    assert_int_equal(p[0].res, 1);
    unsigned char *only = p[0].buf;
    assert_non_null(only);

    /* Parked, then cancelled. */
    assert_int_equal(otp__io_recv_pooled(io, &p[1].op, sfd[1]), 0);
    RUN_UNTIL(io, (otp__io_get_stats(io, &st), st.pool_waits >= 1), "a wait for a buffer");
    for (int i = 0; i < 3; i++)
        assert_true(otp__io_wait(io, 0) >= 0);
    assert_int_equal(p[1].calls, 0);
    assert_int_equal(otp__io_detach(io, sfd[1]), -EBUSY);
    /* A plain receive on the same socket (queued behind the waiting one,
     * under epoll) gets the data once the waiting one is cancelled. */
    counted plain;
    counted_init(&plain);
    char pbuf[8];
    assert_int_equal(otp__io_recv(io, &plain.op, sfd[1], pbuf, sizeof pbuf), 0);
    assert_int_equal(otp__io_cancel(io, &p[1].op), 0);
    assert_int_equal(otp__io_cancel(io, &p[1].op), -EALREADY);
    RUN_UNTIL(io, p[1].calls && plain.calls, "the cancelled wait");
    assert_int_equal(p[1].res, -ECANCELED);
    assert_null(p[1].buf);
    assert_int_equal(plain.res, 2);
    assert_memory_equal(pbuf, "ab", 2);

    /* Parked, then its socket closed. */
    assert_int_equal(otp__io_recv_pooled(io, &p[2].op, sfd[2]), 0);
    RUN_UNTIL(io, (otp__io_get_stats(io, &st), st.pool_waits >= 2), "a second wait");
    assert_int_equal(otp__io_close(io, sfd[2]), 0);
    RUN_UNTIL(io, p[2].calls, "the wait on a closed socket");
    assert_int_equal(p[2].res, -ECANCELED);

    /* Parked, then given the buffer. */
    assert_int_equal(otp__io_recv_pooled(io, &p[3].op, sfd[3]), 0);
    RUN_UNTIL(io, (otp__io_get_stats(io, &st), st.pool_waits >= 3), "a third wait");
    assert_int_equal(p[3].calls, 0);
    otp__io_buf_release(io, only);
    RUN_UNTIL(io, p[3].calls, "the released buffer");
    assert_int_equal(p[3].res, 4);
    assert_ptr_equal(p[3].buf, only);
    assert_memory_equal(p[3].buf, "abcd", 4);

    /* The cancelled ones left the pool whole: the buffer goes round again,
     * on the socket that had the cancel. */
    otp__io_buf_release(io, only);
    send_all(io, cfd[1], "xyz", 3);
    pooled_init(&p[1]);
    assert_int_equal(otp__io_recv_pooled(io, &p[1].op, sfd[1]), 0);
    RUN_UNTIL(io, p[1].calls, "the cancelled socket's data");
    assert_int_equal(p[1].res, 3);
    assert_ptr_equal(p[1].buf, only);
    assert_memory_equal(p[1].buf, "xyz", 3);
    otp__io_buf_release(io, p[1].buf);
    for (int i = 0; i < 4; i++) {
        otp__io_close(io, cfd[i]);
        if (i != 2)
            otp__io_close(io, sfd[i]);
    }
    /* Nothing more for any of them. */
    assert_true(otp__io_wait(io, 0) >= 0);
    assert_int_equal(p[1].calls + p[2].calls + p[3].calls, 3);
    otp__io_destroy(io);
}

/* 8 MiB through pooled receives, checked byte for byte; up to three
 * buffers kept at a time and given back in a scrambled order. */
#define PL_TOTAL (8u << 20)

typedef struct pl {
    otp__io *io;
    otp__io_op rop;
    int sfd;
    const unsigned char *src;
    size_t received;
    unsigned char *kept[3];
    int nkept, mismatch_at, errors;
    size_t max_chunk;
    uint32_t rnd;
    bool eof;
} pl;

static void pl_recv(otp__io_op *op, int64_t res)
{
    pl *k = op->data;
    unsigned char *buf = otp__io_pooled_buf(op);
    if (res == 0) {
        k->eof = true;
        return;
    }
    if (res < 0 || !buf || (size_t)res > k->max_chunk || k->received + (size_t)res > PL_TOTAL) {
        k->errors++;
        return;
    }
    if (k->mismatch_at < 0 && memcmp(buf, k->src + k->received, (size_t)res) != 0)
        for (int64_t i = 0; i < res; i++)
            if (buf[i] != k->src[k->received + (size_t)i]) {
                k->mismatch_at = (int)(k->received + (size_t)i);
                break;
            }
    k->received += (size_t)res;
    if (k->nkept == 3) {
        k->rnd = k->rnd * 1103515245u + 12345u;
        int i = (int)((k->rnd >> 16) % 3);
        otp__io_buf_release(k->io, k->kept[i]);
        k->kept[i] = k->kept[--k->nkept];
    }
    k->kept[k->nkept++] = buf;
    if (otp__io_recv_pooled(k->io, &k->rop, k->sfd) != 0)
        k->errors++;
}

static void test_pooled_large(void **state)
{
    const backend *b = *state;
    unsigned char *src = malloc(PL_TOTAL);
    assert_non_null(src);
    uint64_t v = 0x243F6A8885A308D3u;
    for (size_t i = 0; i < PL_TOTAL; i += 8) {
        v ^= v << 13, v ^= v >> 7, v ^= v << 17;
        memcpy(src + i, &v, 8);
    }
    static const struct {
        unsigned bufs;
        size_t size;
    } geo[] = {{0, 0}, {4, 1000}};
    for (size_t g = 0; g < sizeof geo / sizeof geo[0]; g++) {
        otp__io_config cfg = pool_cfg(b, geo[g].bufs, geo[g].size);
        pl k = {.src = src, .mismatch_at = -1, .rnd = 99};
        k.max_chunk = geo[g].size ? geo[g].size : 16384;
        k.io = make_io(b, &cfg);
        int cfd;
        make_pair(k.io, &cfd, &k.sfd);
        k.rop = (otp__io_op){.done = pl_recv, .data = &k};
        counted s;
        counted_init(&s);
        struct iovec iov = {src, PL_TOTAL};
        uint64_t t0 = now_ms();
        assert_int_equal(otp__io_send(k.io, &s.op, cfd, &iov, 1), 0);
        assert_int_equal(otp__io_recv_pooled(k.io, &k.rop, k.sfd), 0);
        assert_string_equal(pool_label(k.io), expected_pool(b));
        RUN_UNTIL(k.io, k.errors || (s.calls && k.received == PL_TOTAL), "8 MiB, pooled");
        assert_int_equal(k.errors, 0);
        assert_int_equal(s.res, (int64_t)PL_TOTAL);
        assert_int_equal(k.mismatch_at, -1);
        printf("# %s: 8 MiB through %u x %zu-byte pooled buffers in %" PRIu64 " ms\n", b->name,
               geo[g].bufs ? geo[g].bufs : 64, k.max_chunk, now_ms() - t0);
        otp__io_close(k.io, cfd);
        RUN_UNTIL(k.io, k.eof || k.errors, "end of stream");
        while (k.nkept)
            otp__io_buf_release(k.io, k.kept[--k.nkept]);
        otp__io_close(k.io, k.sfd);
        otp__io_destroy(k.io);
    }
    free(src);
}

/* ---- handing a socket to another instance on another thread ---- */

#define DT_ROUNDS 20

typedef struct dt_server {
    int fd;
    const otp__io_config *cfg;
    /* Written by the server thread; read by the test after the join. */
    int64_t error;
    const char *what, *pool;
    uint64_t echoed;
    bool eof;
} dt_server;

typedef struct dt_loop {
    otp__io *io;
    otp__io_op rop, wop;
    dt_server *s;
    unsigned char *buf;
    struct iovec iov;
} dt_loop;

static void dt_fail(dt_server *s, const char *what, int64_t res)
{
    if (!s->what) {
        s->what = what;
        s->error = res;
    }
}

static void dt_sent(otp__io_op *op, int64_t res)
{
    dt_loop *l = op->data;
    if (res != (int64_t)l->iov.iov_len)
        dt_fail(l->s, "echo send", res);
    l->s->echoed += l->iov.iov_len;
    otp__io_buf_release(l->io, l->buf);
    if (otp__io_recv_pooled(l->io, &l->rop, l->s->fd) != 0)
        dt_fail(l->s, "pooled recv submit", 0);
}

static void dt_recv(otp__io_op *op, int64_t res)
{
    dt_loop *l = op->data;
    if (res <= 0) {
        if (res < 0)
            dt_fail(l->s, "pooled recv", res);
        l->s->eof = true;
        return;
    }
    l->buf = otp__io_pooled_buf(op);
    l->iov = (struct iovec){l->buf, (size_t)res};
    if (otp__io_send(l->io, &l->wop, l->s->fd, &l->iov, 1) != 0)
        dt_fail(l->s, "echo send submit", 0);
}

/* Thread 2: its own instance, created here, echoing on the handed-over
 * socket until the peer closes. No cmocka calls off the test thread. */
static void *dt_thread(void *arg)
{
    dt_server *s = arg;
    dt_loop l = {.s = s};
    int r = otp__io_create(&l.io, s->cfg);
    if (r) {
        dt_fail(s, "otp__io_create", r);
        return NULL;
    }
    l.rop = (otp__io_op){.done = dt_recv, .data = &l};
    l.wop = (otp__io_op){.done = dt_sent, .data = &l};
    /* Before this thread's first wait: the ring is not bound to it yet. */
    if (otp__io_recv_pooled(l.io, &l.rop, s->fd) != 0)
        dt_fail(s, "first pooled recv submit", 0);
    s->pool = pool_label(l.io);
    uint64_t deadline = now_ms() + STEP_LIMIT_MS;
    while (!s->what && !s->eof) {
        if ((r = otp__io_wait(l.io, 100)) < 0)
            dt_fail(s, "otp__io_wait", r);
        if (now_ms() > deadline)
            dt_fail(s, "timed out", 0);
    }
    if (!s->what && (r = otp__io_close(l.io, s->fd)) != 0)
        dt_fail(s, "otp__io_close", r);
    otp__io_destroy(l.io);
    return NULL;
}

static void test_detach(void **state)
{
    const backend *b = *state;
    otp__io *a = make_io(b, NULL);
    int cfd, sfd;
    make_pair(a, &cfd, &sfd); /* accepted on A, on this thread */
    pooled p;
    pooled_init(&p);
    send_all(a, cfd, "on A", 4);
    assert_int_equal(otp__io_recv_pooled(a, &p.op, sfd), 0);
    RUN_UNTIL(a, p.calls, "a read on A");
    assert_int_equal(p.res, 4);
    assert_memory_equal(p.buf, "on A", 4);
    otp__io_buf_release(a, p.buf);

    /* Not while an op on it is pending here, in the backend or queued... */
    counted r;
    counted_init(&r);
    char tmp[8];
    assert_int_equal(otp__io_recv(a, &r.op, sfd, tmp, sizeof tmp), 0);
    assert_int_equal(otp__io_detach(a, sfd), -EBUSY);
    assert_true(otp__io_wait(a, 0) >= 0);
    assert_int_equal(otp__io_detach(a, sfd), -EBUSY);
    assert_int_equal(otp__io_cancel(a, &r.op), 0);
    /* ...nor while its completion is on the way. */
    assert_int_equal(otp__io_detach(a, sfd), -EBUSY);
    RUN_UNTIL(a, r.calls, "the cancelled recv");
    assert_int_equal(r.res, -ECANCELED);
    assert_int_equal(otp__io_detach(a, sfd), 0);

    /* Data sent before the hand-over must reach the new owner. */
    dt_server s = {.fd = sfd, .cfg = &b->cfg};
    unsigned char out[DT_ROUNDS * 300], in[sizeof out];
    for (size_t i = 0; i < sizeof out; i++)
        out[i] = (unsigned char)(i * 7 + 1);
    send_all(a, cfd, out, 300);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, dt_thread, &s), 0);
    size_t got = 0;
    for (int round = 0; round < DT_ROUNDS; round++) {
        if (round > 0)
            send_all(a, cfd, out + round * 300, 300);
        while (got < (size_t)(round + 1) * 300) {
            counted_init(&r);
            assert_int_equal(otp__io_recv(a, &r.op, cfd, in + got, sizeof in - got), 0);
            RUN_UNTIL(a, r.calls, "the echo from thread 2");
            if (r.res <= 0)
                fail_msg("echo from thread 2: %" PRId64, r.res);
            got += (size_t)r.res;
        }
    }
    assert_memory_equal(in, out, sizeof out);
    otp__io_close(a, cfd);
    pthread_join(th, NULL);
    if (s.what)
        fail_msg("thread 2: %s: %" PRId64, s.what, s.error);
    assert_true(s.eof);
    assert_int_equal(s.echoed, sizeof out);
    assert_string_equal(s.pool, expected_pool(b));
    otp__io_destroy(a);
}

/* ---- cross-thread wake ---- */

#define WAKE_ROUNDS 100000

typedef struct wake_ctx {
    otp__io *io;
    atomic_uint round; /* the sleeper is at this round (about to wait) */
    atomic_uint sent;  /* the waker has woken for this round */
    atomic_uint woken; /* the sleeper saw it */
    atomic_bool stop;
    atomic_int error;
    unsigned spurious;
} wake_ctx;

static void *sleeper(void *arg)
{
    wake_ctx *w = arg;
    for (unsigned i = 1; i <= WAKE_ROUNDS && !atomic_load(&w->stop); i++) {
        atomic_store_explicit(&w->round, i, memory_order_release);
        /* A wait that returns with no wake sent is spurious and waits again:
         * only a lost wake can keep this thread here. */
        for (;;) {
            int r = otp__io_wait(w->io, UINT64_MAX);
            if (r < 0) {
                atomic_store(&w->error, r);
                return NULL;
            }
            if (atomic_load_explicit(&w->sent, memory_order_acquire) >= i || atomic_load(&w->stop))
                break;
            w->spurious++;
        }
        atomic_store_explicit(&w->woken, i, memory_order_release);
    }
    return NULL;
}

static bool spin_until(atomic_uint *v, unsigned want, uint64_t limit_ms)
{
    uint64_t deadline = now_ms() + limit_ms;
    for (unsigned n = 0; atomic_load_explicit(v, memory_order_acquire) < want; n++) {
        if ((n & 1023) == 0 && now_ms() > deadline)
            return false;
        sched_yield();
    }
    return true;
}

static void wake_rounds(const backend *b, bool from)
{
    wake_ctx *w = calloc(1, sizeof *w);
    assert_non_null(w);
    otp__io_config cfg = b->cfg;
    cfg.wake = OTP__IO_WAKE_MSG_RING;
    otp__io *src = from ? make_io(b, &cfg) : NULL;
    w->io = make_io(b, &b->cfg); /* created here, owned by the sleeper from its first wait */
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sleeper, w), 0);
    uint64_t t0 = now_ms();
    unsigned lost = 0;
    uint32_t rnd = 1;
    for (unsigned i = 1; i <= WAKE_ROUNDS; i++) {
        if (!spin_until(&w->round, i, 30000) || atomic_load(&w->error))
            break;
        /* Vary the moment: right away (the sleeper is about to wait), or
         * after a moment (it is asleep). */
        rnd = rnd * 1103515245u + 12345u;
        for (volatile unsigned d = 0; d < ((rnd >> 16) & 3) * 2000; d++) {
        }
        atomic_store_explicit(&w->sent, i, memory_order_release);
        if (from)
            otp__io_wake_from(src, w->io);
        else
            otp__io_wake(w->io);
        if (from && (i & 255) == 0)
            otp__io_wait(src, 0); /* reap our own MSG_RING CQEs, if any post */
        if (!spin_until(&w->woken, i, 30000)) {
            lost = i;
            break;
        }
    }
    uint64_t dt = now_ms() - t0;
    atomic_store(&w->stop, true);
    otp__io_wake(w->io);
    pthread_join(th, NULL);
    otp__io_stats st;
    otp__io_get_stats(w->io, &st);
    printf("# %s %s: %u rounds in %" PRIu64 " ms (%.2f us/round), %u spurious returns, %" PRIu64
           " wakes seen\n",
           b->name, from ? "wake_from" : "wake", WAKE_ROUNDS, dt, dt * 1000.0 / WAKE_ROUNDS,
           w->spurious, st.wakes);
    otp__io_destroy(w->io);
    if (src)
        otp__io_destroy(src);
    int err = atomic_load(&w->error);
    unsigned woken = atomic_load(&w->woken);
    free(w);
    if (err)
        fail_msg("otp__io_wait in the sleeper: %s", strerror(-err));
    if (lost)
        fail_msg("wake %u was lost (the sleeper never returned)", lost);
    assert_int_equal(woken, WAKE_ROUNDS);
}

static void test_wake(void **state)
{
    wake_rounds(*state, false);
}

static void test_wake_from(void **state)
{
    wake_rounds(*state, true);
}

/* ---- main: the common cases, then each backend ---- */

#define BACKEND_TESTS(b)                                                                           \
    {                                                                                              \
        cmocka_unit_test_prestate(test_wait_timeout, &b),                                          \
            cmocka_unit_test_prestate(test_cancel, &b),                                            \
            cmocka_unit_test_prestate(test_accept_ends_itself, &b),                                \
            cmocka_unit_test_prestate(test_echo_many, &b),                                         \
            cmocka_unit_test_prestate(test_large_transfer, &b),                                    \
            cmocka_unit_test_prestate(test_peer_close, &b),                                        \
            cmocka_unit_test_prestate(test_connect_timeout, &b),                                   \
            cmocka_unit_test_prestate(test_wake, &b),                                              \
            cmocka_unit_test_prestate(test_wake_from, &b),                                         \
            cmocka_unit_test_prestate(test_pooled_echo, &b),                                       \
            cmocka_unit_test_prestate(test_pooled_eof_reset, &b),                                  \
            cmocka_unit_test_prestate(test_pooled_parked, &b),                                     \
            cmocka_unit_test_prestate(test_pooled_large, &b),                                      \
            cmocka_unit_test_prestate(test_detach, &b),                                            \
    }

int main(void)
{
    const struct CMUnitTest common[] = {
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_fallback),
    };
    const struct CMUnitTest epoll_tests[] = BACKEND_TESTS(be_epoll);
    const struct CMUnitTest uring_tests[] = BACKEND_TESTS(be_uring);
    const struct CMUnitTest uring_old_tests[] = BACKEND_TESTS(be_uring_old);
    int failed = cmocka_run_group_tests_name("io common", common, NULL, NULL);
    failed += cmocka_run_group_tests_name("io epoll", epoll_tests, NULL, NULL);

    otp__io *io;
    int r = otp__io_create(&io, &be_uring.cfg);
    if (r == -ENOSYS || r == -EPERM || r == -EACCES) {
        printf("# io_uring refused by this kernel or sandbox (%s): the io_uring half is "
               "SKIPPED\n",
               strerror(-r));
        return failed ? 1 : 77;
    }
    if (r != 0) {
        printf("# otp__io_create(io_uring): %s\n", strerror(-r));
        return 1;
    }
    printf("# io_uring features: %s\n", otp__io_features(io));
    otp__io_destroy(io);
    failed += cmocka_run_group_tests_name("io io_uring", uring_tests, NULL, NULL);
    r = otp__io_create(&io, &be_uring_old.cfg);
    if (r != 0) {
        printf("# otp__io_create(io_uring, baseline): %s\n", strerror(-r));
        return 1;
    }
    printf("# io_uring with newer features switched off: %s\n", otp__io_features(io));
    otp__io_destroy(io);
    failed += cmocka_run_group_tests_name("io io_uring 5.6 baseline", uring_old_tests, NULL, NULL);
    return failed ? 1 : 0;
}
