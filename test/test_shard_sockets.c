/* test_shard_sockets.c — sockets on the shards of a running runtime: a
 * shard listens, accepts and reads with its own io, then hands the
 * connection to another shard, which finishes the exchange with its io;
 * under both backends. (The I/O backends themselves: test_io.c.)
 */
/* otp-test: threads */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "rt.h"
#include "socket.h"

static const char *g_backend;

/* The state one connection's server side needs, on whichever shard has it. */
typedef struct server {
    otp__io_op aop, rop, sop;
    int lfd, fd;
    uint8_t buf[256];
    struct iovec iov;
    _Atomic int accepted_on, echoed_on; /* shard indexes, -1 until then */
    _Atomic int echoes;
    _Atomic bool closed;
    _Atomic uint16_t port;
} server;

static void echo_recv(otp__shard *sh, server *s);

static void on_echo_sent(otp__io_op *op, int64_t res)
{
    server *s = op->data;
    otp__shard *sh = otp__this_shard();
    atomic_fetch_add(&s->echoes, 1);
    if (res < 0) {
        otp__io_close(sh->io, s->fd);
        atomic_store(&s->closed, true);
        return;
    }
    echo_recv(sh, s);
}

static void on_echo_recv(otp__io_op *op, int64_t res)
{
    server *s = op->data;
    otp__shard *sh = otp__this_shard();
    if (res <= 0) {
        otp__io_close(sh->io, s->fd);
        atomic_store(&s->closed, true);
        return;
    }
    atomic_store(&s->echoed_on, (int)sh->index);
    s->iov.iov_base = s->buf;
    s->iov.iov_len = (size_t)res;
    s->sop.done = on_echo_sent;
    s->sop.data = s;
    assert_int_equal(otp__io_send(sh->io, &s->sop, s->fd, &s->iov, 1), 0);
}

static void echo_recv(otp__shard *sh, server *s)
{
    s->rop.done = on_echo_recv;
    s->rop.data = s;
    assert_int_equal(otp__io_recv(sh->io, &s->rop, s->fd, s->buf, sizeof s->buf), 0);
}

/* On shard 1: the socket is ours now. */
static void take_over(otp__shard *sh, int fd, void *arg)
{
    server *s = arg;
    s->fd = fd;
    memset(&s->rop, 0, sizeof s->rop);
    memset(&s->sop, 0, sizeof s->sop);
    /* answer the greeting shard 0 read, then echo */
    static const char ok[] = "moved";
    s->iov.iov_base = (void *)ok;
    s->iov.iov_len = 5;
    s->sop.done = on_echo_sent;
    s->sop.data = s;
    assert_int_equal(otp__io_send(sh->io, &s->sop, s->fd, &s->iov, 1), 0);
}

static void on_greeting(otp__io_op *op, int64_t res)
{
    server *s = op->data;
    otp__shard *sh = otp__this_shard();
    assert_int_equal(res, 5);
    assert_memory_equal(s->buf, "hello", 5);
    /* No op pending on it any more: hand it to shard 1. */
    assert_int_equal(otp__sock_handoff(sh, s->fd, 1, take_over, s), 0);
}

static void on_accept(otp__io_op *op, int64_t res)
{
    server *s = op->data;
    otp__shard *sh = otp__this_shard();
    if (res < 0)
        return; /* the listener's end */
    s->fd = (int)res;
    atomic_store(&s->accepted_on, (int)sh->index);
    otp__io_close(sh->io, s->lfd); /* one connection is all this test wants */
    s->rop.done = on_greeting;
    s->rop.data = s;
    assert_int_equal(otp__io_recv(sh->io, &s->rop, s->fd, s->buf, 5), 0);
}

static void listen_here(otp__shard *sh, void *arg)
{
    server *s = arg;
    uint16_t port = 0;
    s->lfd = otp__tcp_listen("127.0.0.1", 0, 8, &port);
    assert_true(s->lfd >= 0);
    s->aop.done = on_accept;
    s->aop.data = s;
    assert_int_equal(otp__io_accept(sh->io, &s->aop, s->lfd), 0);
    atomic_store(&s->port, port);
}

static void test_handoff_between_shards(void **state)
{
    otp_runtime_config cfg = {.shards = 2, .no_pin = true, .io_backend = g_backend};
    otp_runtime *rt;
    assert_int_equal(otp_runtime_new(&rt, &cfg), 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    server *s = calloc(1, sizeof *s);
    atomic_store(&s->accepted_on, -1);
    atomic_store(&s->echoed_on, -1);
    assert_int_equal(otp__shard_post(rt, 0, listen_here, s), 0);
    while (!atomic_load(&s->port))
        usleep(1000);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(atomic_load(&s->port)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(send(c, "hello", 5, 0), 5);
    char buf[64];
    assert_int_equal(recv(c, buf, 5, MSG_WAITALL), 5);
    assert_memory_equal(buf, "moved", 5);
    for (int i = 0; i < 50; i++) {
        char msg[32];
        int n = snprintf(msg, sizeof msg, "ping %d", i);
        assert_int_equal(send(c, msg, (size_t)n, 0), n);
        assert_int_equal(recv(c, buf, (size_t)n, MSG_WAITALL), n);
        assert_memory_equal(buf, msg, (size_t)n);
    }
    assert_int_equal(atomic_load(&s->accepted_on), 0);
    assert_int_equal(atomic_load(&s->echoed_on), 1);
    close(c);
    while (!atomic_load(&s->closed))
        usleep(1000);
    assert_int_equal(otp_runtime_stop(rt), 0);
    otp_runtime_free(rt);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_handoff_between_shards)};
    int failed = 0;
    const char *backends[] = {"epoll", "io_uring"};
    for (int i = 0; i < 2; i++) {
        g_backend = backends[i];
        char name[64];
        snprintf(name, sizeof name, "shard sockets (%s)", g_backend);
        failed += cmocka_run_group_tests_name(name, tests, NULL, NULL);
    }
    return failed ? 1 : 0;
}
