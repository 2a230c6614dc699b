/* test_epmd.c — EPMD without Erlang: the wire protocol, the server against
 * good and bad clients (malformed and oversized requests, a client that
 * sends a byte at a time, a flood of connections), and a node's EPMD agent
 * (embedded server, client, takeover, static routes). Every server case
 * runs under both I/O backends. Real Erlang nodes: test_epmd_erl.c.
 */
/* otp-test: threads */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "io.h"
#include "otp.h"
#include "proto.h"
#include "server.h"

static otp__io_backend g_backend;
static const char *g_backend_name;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A port nobody listens on right now. */
static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------------------ protocol */

static void test_parse_requests(void **state)
{
    /* ALIVE2 as OTP 25 sends it (dist-protocol.md §1.3, without the length) */
    static const uint8_t otp25[] = {0x78, 0xb7, 0xfd, 0x4d, 0,   0,   6,   0, 5,
                                    0,    5,    'r',  's',  'h', '_', 'b', 0, 0};
    otp__epmd_req r;
    const char *why = NULL;
    size_t at = 0;
    assert_int_equal(otp__epmd_parse_req(otp25, sizeof otp25, &r, &why, &at), 0);
    assert_int_equal(r.code, OTP__EPMD_ALIVE2_REQ);
    assert_int_equal(r.node.port, 47101);
    assert_int_equal(r.node.type, 'M');
    assert_int_equal(r.node.highest, 6);
    assert_int_equal(r.node.lowest, 5);
    assert_int_equal(r.node.name_len, 5);
    assert_memory_equal(r.node.name, "rsh_b", 5);
    assert_int_equal(r.node.extra_len, 0);

    /* the builder makes exactly those bytes */
    uint8_t out[64];
    int n = otp__epmd_build_alive2(out, sizeof out, &r.node);
    assert_int_equal(n, 2 + (int)sizeof otp25);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], sizeof otp25);
    assert_memory_equal(out + 2, otp25, sizeof otp25);

    /* PORT_PLEASE2 tolerates one trailing NUL */
    assert_int_equal(otp__epmd_parse_req((const uint8_t *)"zfoo\0", 5, &r, &why, &at), 0);
    assert_int_equal(r.name_len, 3);

    struct {
        const char *bytes;
        size_t len;
        const char *why;
        size_t at;
    } bad[] = {
        {"", 0, "empty request", 0},
        {"q", 1, "unknown request code", 0},
        {"a", 1, "obsolete request (ALIVE_REQ/PORT_REQ) not served", 0},
        {"z", 1, "empty node name", 1},
        {"zf\0o", 4, "node name contains a NUL byte", 1},
        {"z\xff\xfe", 3, "node name is not valid UTF-8", 1},
        {"x\x01\x02M\0\0\6\0\5", 9, "ALIVE2_REQ shorter than its fixed fields", 9},
        {"x\x01\x02M\0\0\6\0\5\0\x09"
         "abc\0\0",
         16, "ALIVE2_REQ name length runs past the request", 9},
        {"x\x01\x02M\0\0\6\0\5\0\x03"
         "abc\0\x05xy",
         18, "ALIVE2_REQ extra length runs past the request", 14},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        assert_int_equal(
            otp__epmd_parse_req((const uint8_t *)bad[i].bytes, bad[i].len, &r, &why, &at), -1);
        assert_string_equal(why, bad[i].why);
        assert_int_equal(at, bad[i].at);
    }

    /* names: 255 characters (of 4 bytes each) pass, 256 do not */
    uint8_t name[2 + 256 * 4];
    name[0] = 'z';
    for (int i = 0; i < 255; i++)
        memcpy(name + 1 + i * 4, "\xf0\x9f\x98\x80", 4);
    assert_int_equal(otp__epmd_parse_req(name, 1 + 255 * 4, &r, &why, &at), 0);
    uint8_t ascii[258];
    ascii[0] = 'z';
    memset(ascii + 1, 'n', 256);
    assert_int_equal(otp__epmd_parse_req(ascii, 257, &r, &why, &at), -1);
    assert_string_equal(why, "node name longer than 255 characters");
    /* the whole request is bounded */
    static uint8_t huge[OTP__EPMD_MAX_REQ + 1] = {'n'};
    assert_int_equal(otp__epmd_parse_req(huge, sizeof huge, &r, &why, &at), -1);
    assert_string_equal(why, "request longer than the server takes");
}

static void test_parse_answers(void **state)
{
    int result = -1;
    uint32_t cr = 0;
    const char *why = NULL;
    const uint8_t x[] = {0x76, 0, 0x6b, 0x04, 0x00, 0x01};
    for (size_t i = 0; i < sizeof x; i++)
        assert_int_equal(otp__epmd_parse_alive_resp(x, i, &result, &cr, &why), 0);
    assert_int_equal(otp__epmd_parse_alive_resp(x, sizeof x, &result, &cr, &why), 6);
    assert_int_equal(result, 0);
    assert_int_equal(cr, 0x6b040001);
    const uint8_t y[] = {0x79, 0, 0, 2};
    assert_int_equal(otp__epmd_parse_alive_resp(y, 4, &result, &cr, &why), 4);
    assert_int_equal(cr, 2);
    assert_int_equal(otp__epmd_parse_alive_resp((const uint8_t *)"NO", 2, &result, &cr, &why), -1);

    const uint8_t p[] = {0x77, 0,   0xb7, 0xfd, 0x4d, 0,   0, 6, 0,   5,  0,
                         5,    'r', 's',  'h',  '_',  'b', 0, 2, 'e', 'x'};
    bool found = false;
    otp__epmd_node n;
    for (size_t i = 0; i < sizeof p; i++)
        assert_int_equal(otp__epmd_parse_port2_resp(p, i, &found, &n, &why), 0);
    assert_int_equal(otp__epmd_parse_port2_resp(p, sizeof p, &found, &n, &why), (int)sizeof p);
    assert_true(found);
    assert_int_equal(n.port, 47101);
    assert_int_equal(n.extra_len, 2);
    assert_memory_equal(n.extra, "ex", 2);
    assert_int_equal(otp__epmd_parse_port2_resp((const uint8_t *)"\x77\x01", 2, &found, &n, &why),
                     2);
    assert_false(found);
}

/* ------------------------------------------------- a server on a thread */

typedef struct srv_thread {
    pthread_t th;
    otp__epmd_srv_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
    int start_rc;
    otp__io *io;
    _Atomic bool quit;
    _Atomic bool killed;
    _Atomic unsigned conns, names;
    bool closed;
} srv_thread;

static void st_on_kill(void *arg)
{
    srv_thread *t = arg;
    atomic_store(&t->killed, true);
}

static void st_on_closed(void *arg)
{
    srv_thread *t = arg;
    t->closed = true;
}

static void *srv_main(void *arg)
{
    srv_thread *t = arg;
    otp__io_config ic = {.backend = g_backend};
    int r = otp__io_create(&t->io, &ic);
    otp__epmd_srv *srv = NULL;
    if (r == 0) {
        t->cfg.on_kill = st_on_kill;
        t->cfg.on_closed = st_on_closed;
        t->cfg.arg = t;
        r = otp__epmd_srv_start(t->io, &t->cfg, &srv);
    }
    pthread_mutex_lock(&t->lock);
    t->start_rc = r;
    t->ready = true;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (r < 0) {
        if (t->io)
            otp__io_destroy(t->io);
        return NULL;
    }
    while (!t->closed) {
        if (srv && (atomic_load(&t->quit) || atomic_load(&t->killed))) {
            otp__epmd_srv_close(srv);
            srv = NULL;
            continue;
        }
        otp__io_wait(t->io, 50);
        if (srv) {
            otp__epmd_srv_tick(srv, now_ms());
            atomic_store(&t->conns, otp__epmd_srv_conns(srv));
            atomic_store(&t->names, otp__epmd_srv_names(srv));
        }
    }
    return NULL; /* the io goes in srv_join: a late wake may still hit it */
}

static srv_thread *srv_start(uint16_t port, bool relaxed, unsigned packet_timeout,
                             unsigned max_conns)
{
    srv_thread *t = calloc(1, sizeof *t);
    t->cfg.port = port;
    t->cfg.addresses = "127.0.0.1";
    t->cfg.relaxed = relaxed;
    t->cfg.packet_timeout_s = packet_timeout;
    t->cfg.max_conns = max_conns;
    t->cfg.debug = getenv("OTP_EPMD_DEBUG") ? 1 : 0;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    pthread_create(&t->th, NULL, srv_main, t);
    pthread_mutex_lock(&t->lock);
    while (!t->ready)
        pthread_cond_wait(&t->cond, &t->lock);
    pthread_mutex_unlock(&t->lock);
    assert_int_equal(t->start_rc, 0);
    return t;
}

/* Joins the thread and frees t; true if the server ended by a KILL. */
static bool srv_join(srv_thread *t)
{
    pthread_join(t->th, NULL);
    bool killed = atomic_load(&t->killed);
    otp__io_destroy(t->io);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->cond);
    free(t);
    return killed;
}

static void srv_stop(srv_thread *t)
{
    atomic_store(&t->quit, true);
    otp__io_wake(t->io);
    assert_false(srv_join(t));
}

/* A raw client: a blocking socket to the server. */
static int raw_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Everything the server sends until it closes (or timeout_ms passes, which
 * fails the test). Returns the length; -1 if reset. */
static int read_to_eof(int fd, uint8_t *buf, size_t cap, unsigned timeout_ms)
{
    size_t have = 0;
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = now_ms();
        assert_true(now < deadline);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        ssize_t n = recv(fd, buf + have, cap - have, 0);
        if (n == 0)
            return (int)have;
        if (n < 0)
            return errno == ECONNRESET ? -1 : (fail(), -1);
        have += (size_t)n;
        assert_true(have < cap);
    }
}

static int raw_request(uint16_t port, const void *req, size_t len, uint8_t *ans, size_t cap)
{
    int fd = raw_connect(port);
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    int n = read_to_eof(fd, ans, cap, 5000);
    close(fd);
    return n;
}

/* Waits (bounded) until port_please's answer for name is `want` (0 found,
 * -OTP_ENOTFOUND gone). */
static void wait_lookup(uint16_t port, const char *name, int want)
{
    uint64_t deadline = now_ms() + 5000;
    otp_epmd_node_info info;
    int r;
    while ((r = otp_epmd_port_please(NULL, port, name, 1000, &info, NULL)) != want) {
        assert_true(now_ms() < deadline);
        usleep(5000);
    }
}

static void test_register_lookup_names(void **state)
{
    uint16_t port = free_port();
    srv_thread *t = srv_start(port, false, 0, 0);
    uint32_t cr = 0;
    int fd = -1;
    otp_error err;
    assert_int_equal(otp_epmd_alive2(port, "alpha", 40001, false, 0, &cr, &fd, &err), 0);
    assert_true(cr >= 4);
    otp_epmd_node_info info;
    assert_int_equal(otp_epmd_port_please(NULL, port, "alpha", 0, &info, &err), 0);
    assert_int_equal(info.port, 40001);
    assert_int_equal(info.type, 'M');
    assert_int_equal(info.highest, 6);
    assert_int_equal(info.lowest, 5);
    assert_string_equal(info.name, "alpha");
    assert_int_equal(otp_epmd_port_please(NULL, port, "beta", 0, &info, &err), -OTP_ENOTFOUND);
    assert_non_null(strstr(err.message, "does not know beta"));
    char *text = NULL;
    assert_true(otp_epmd_names(NULL, port, 0, &text, &err) > 0);
    assert_string_equal(text, "name alpha at port 40001\n");
    free(text);
    /* The same name again is refused; the first stays. */
    int fd2 = -1;
    uint32_t cr2 = 0;
    assert_int_equal(otp_epmd_alive2(port, "alpha", 40002, false, 0, &cr2, &fd2, &err),
                     -OTP_EEXIST);
    /* Closing the registration socket unregisters at once. */
    close(fd);
    wait_lookup(port, "alpha", -OTP_ENOTFOUND);
    /* Coming back: the next creation. */
    assert_int_equal(otp_epmd_alive2(port, "alpha", 40003, true, 0, &cr2, &fd, &err), 0);
    assert_int_equal(cr2, cr + 1);
    assert_int_equal(otp_epmd_port_please(NULL, port, "alpha", 0, &info, &err), 0);
    assert_int_equal(info.type, 'H');
    close(fd);
    srv_stop(t);
}

static void test_old_version_and_extra(void **state)
{
    uint16_t port = free_port();
    srv_thread *t = srv_start(port, false, 0, 0);
    /* highest 5: the old answer, 'y' with a 16-bit creation in 1..3 */
    const uint8_t extra[] = {1, 2, 3};
    otp__epmd_node n = {.port = 40010,
                        .type = 'M',
                        .highest = 5,
                        .lowest = 5,
                        .name = (const uint8_t *)"old",
                        .name_len = 3,
                        .extra = extra,
                        .extra_len = 3};
    uint8_t req[64], ans[64];
    int len = otp__epmd_build_alive2(req, sizeof req, &n);
    int fd = raw_connect(port);
    assert_int_equal(send(fd, req, (size_t)len, 0), len);
    assert_int_equal(recv(fd, ans, 4, MSG_WAITALL), 4);
    assert_int_equal(ans[0], OTP__EPMD_ALIVE2_RESP);
    assert_int_equal(ans[1], 0);
    assert_int_equal(ans[2], 0);
    assert_true(ans[3] >= 1 && ans[3] <= 3);
    /* Extra comes back verbatim. */
    otp_epmd_node_info info;
    assert_int_equal(otp_epmd_port_please(NULL, port, "old", 0, &info, NULL), 0);
    assert_int_equal(info.extra_len, 3);
    assert_memory_equal(info.extra, extra, 3);
    /* Any byte on a registration socket ends the registration. */
    assert_int_equal(send(fd, "x", 1, 0), 1);
    assert_true(read_to_eof(fd, ans, sizeof ans, 5000) <= 0);
    close(fd);
    wait_lookup(port, "old", -OTP_ENOTFOUND);
    srv_stop(t);
}

static void test_bad_requests(void **state)
{
    uint16_t port = free_port();
    srv_thread *t = srv_start(port, false, 0, 0);
    uint32_t cr;
    int reg = -1;
    assert_int_equal(otp_epmd_alive2(port, "keeper", 40020, false, 0, &cr, &reg, NULL), 0);
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\0\0", 2}, /* length 0 */
        {"\xff\xff"
         "zabc",
         6},            /* longer than the server takes */
        {"\0\x01q", 3}, /* unknown code */
        {"\0\x01"
         "a",
         3},                    /* obsolete ALIVE_REQ */
        {"\0\x03z\xff\xfe", 5}, /* name not UTF-8 */
        {"\0\x04zab\0"
         "c",
         7},                                  /* two requests on one connection */
        {"\0\x0ax\x01\x02M\0\0\6\0\5\0", 12}, /* ALIVE2 cut short */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t ans[64];
        int n = raw_request(port, bad[i].bytes, bad[i].len, ans, sizeof ans);
        assert_true(n <= 0); /* closed with no answer */
        /* everyone else is still served */
        otp_epmd_node_info info;
        assert_int_equal(otp_epmd_port_please(NULL, port, "keeper", 0, &info, NULL), 0);
    }
    /* A name of 256 characters. */
    uint8_t req[300] = {1, 1, 'z'}; /* length 257: the code and 256 bytes */
    memset(req + 3, 'n', 256);
    uint8_t ans[16];
    assert_true(raw_request(port, req, 3 + 256, ans, sizeof ans) <= 0);
    close(reg);
    srv_stop(t);
}

/* A client that sends one byte at a time is cut off at the packet timeout;
 * meanwhile everyone else is served. */
static void test_slow_client(void **state)
{
    uint16_t port = free_port();
    srv_thread *t = srv_start(port, false, 1, 0);
    int slow = raw_connect(port);
    uint64_t start = now_ms();
    const uint8_t req[] = {0, 4, 'z', 'a', 'b', 'c'};
    bool closed = false;
    for (size_t i = 0; i < sizeof req && !closed; i++) {
        if (send(slow, req + i, 1, MSG_NOSIGNAL) != 1) {
            closed = true;
            break;
        }
        char *text = NULL;
        assert_true(otp_epmd_names(NULL, port, 1000, &text, NULL) >= 0);
        free(text);
        struct pollfd p = {.fd = slow, .events = POLLIN};
        if (poll(&p, 1, 400) > 0)
            closed = true;
    }
    uint8_t buf[16];
    int n = read_to_eof(slow, buf, sizeof buf, 5000);
    assert_true(n <= 0);
    uint64_t took = now_ms() - start;
    assert_true(took >= 900 && took < 4000);
    close(slow);
    srv_stop(t);
}

/* More connections than the table holds: the oldest idle ones go, the
 * registrations stay, new clients are served, the count stays bounded. */
static void test_flood(void **state)
{
    enum { MAX = 32, FLOOD = 200 };
    uint16_t port = free_port();
    srv_thread *t = srv_start(port, false, 0, MAX);
    uint32_t cr;
    int reg = -1;
    assert_int_equal(otp_epmd_alive2(port, "survivor", 40030, false, 0, &cr, &reg, NULL), 0);
    int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++)
        fds[i] = raw_connect(port);
    otp_epmd_node_info info;
    assert_int_equal(otp_epmd_port_please(NULL, port, "survivor", 0, &info, NULL), 0);
    assert_int_equal(info.port, 40030);
    /* let the server catch up with the accepts, then check its bound */
    uint64_t deadline = now_ms() + 5000;
    while (atomic_load(&t->conns) != MAX - 1 && atomic_load(&t->conns) != MAX)
        assert_true(now_ms() < deadline), usleep(2000);
    assert_true(atomic_load(&t->conns) <= MAX);
    /* The oldest idle connections were closed. */
    uint8_t buf[8];
    assert_true(read_to_eof(fds[0], buf, sizeof buf, 5000) <= 0);
    for (int i = 0; i < FLOOD; i++)
        close(fds[i]);
    deadline = now_ms() + 5000;
    while (atomic_load(&t->conns) != 1)
        assert_true(now_ms() < deadline), usleep(2000);
    assert_int_equal(atomic_load(&t->names), 1);
    close(reg);
    srv_stop(t);
}

static void test_kill_and_stop(void **state)
{
    uint8_t ans[64];
    const uint8_t kill_req[] = {0, 1, 'k'};
    /* strict: KILL refused while a node lives; STOP not served at all */
    uint16_t port = free_port();
    srv_thread *t = srv_start(port, false, 0, 0);
    uint32_t cr;
    int reg = -1;
    assert_int_equal(otp_epmd_alive2(port, "alive", 40040, false, 0, &cr, &reg, NULL), 0);
    assert_int_equal(raw_request(port, kill_req, 3, ans, sizeof ans), 2);
    assert_memory_equal(ans, "NO", 2);
    const uint8_t stop_req[] = {0, 6, 's', 'a', 'l', 'i', 'v', 'e'};
    assert_true(raw_request(port, stop_req, sizeof stop_req, ans, sizeof ans) <= 0);
    wait_lookup(port, "alive", 0);
    close(reg);
    wait_lookup(port, "alive", -OTP_ENOTFOUND);
    assert_int_equal(raw_request(port, kill_req, 3, ans, sizeof ans), 2);
    assert_memory_equal(ans, "OK", 2);
    assert_true(srv_join(t)); /* KILL closed the server: the thread ends by itself */

    /* relaxed: STOP unregisters, and KILL is allowed with nodes */
    port = free_port();
    t = srv_start(port, true, 0, 0);
    assert_int_equal(otp_epmd_alive2(port, "alive", 40041, false, 0, &cr, &reg, NULL), 0);
    const uint8_t stop_x[] = {0, 3, 's', 'x', 'x'};
    assert_int_equal(raw_request(port, stop_x, sizeof stop_x, ans, sizeof ans), 14);
    assert_memory_equal(ans, "NOEXISTSTOPPED", 14);
    assert_int_equal(raw_request(port, stop_req, sizeof stop_req, ans, sizeof ans), 7);
    assert_memory_equal(ans, "STOPPED", 7);
    assert_true(read_to_eof(reg, ans, sizeof ans, 5000) <= 0); /* its socket was closed */
    close(reg);
    wait_lookup(port, "alive", -OTP_ENOTFOUND);
    assert_int_equal(otp_epmd_alive2(port, "again", 40042, false, 0, &cr, &reg, NULL), 0);
    assert_int_equal(raw_request(port, kill_req, 3, ans, sizeof ans), 2);
    assert_memory_equal(ans, "OK", 2);
    assert_true(srv_join(t));
    close(reg);
}

static void test_names_and_dump(void **state)
{
    uint16_t port = free_port();
    srv_thread *t = srv_start(port, false, 0, 0);
    int fds[3];
    uint32_t cr;
    const char *names[] = {"n1", "n2", "n3"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            otp_epmd_alive2(port, names[i], (uint16_t)(40050 + i), false, 0, &cr, &fds[i], NULL),
            0);
    uint8_t ans[512];
    const uint8_t names_req[] = {0, 1, 'n'};
    int n = raw_request(port, names_req, 3, ans, sizeof ans);
    const char want[] = "name n3 at port 40052\nname n2 at port 40051\nname n1 at port 40050\n";
    assert_int_equal(n, 4 + (int)strlen(want));
    assert_int_equal(ans[2] << 8 | ans[3], port);
    assert_memory_equal(ans + 4, want, strlen(want));
    close(fds[0]);
    wait_lookup(port, "n1", -OTP_ENOTFOUND);
    const uint8_t dump_req[] = {0, 1, 'd'};
    n = raw_request(port, dump_req, 3, ans, sizeof ans);
    assert_true(n > 4);
    ans[n] = 0;
    /* each line ends in a NUL; the first is the newest active name */
    const char *line = (const char *)ans + 4;
    assert_true(strncmp(line, "active name     <n3> at port 40052, fd = ", 41) == 0);
    line += strlen(line) + 1;
    assert_true(strncmp(line, "active name     <n2> at port 40051, fd = ", 41) == 0);
    line += strlen(line) + 1;
    assert_string_equal(line, "old/unused name <n1>, port = 0, fd = -1 \n");
    close(fds[1]);
    close(fds[2]);
    srv_stop(t);
}

/* ----------------------------------------------------------- the agent */

static otp_runtime *runtime_up(void)
{
    otp_runtime_config cfg = {.shards = 2, .no_pin = true, .io_backend = g_backend_name};
    otp_runtime *rt;
    assert_int_equal(otp_runtime_new(&rt, &cfg), 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    return rt;
}

static otp_epmd *agent(otp_runtime *rt, const char *name, uint16_t port, uint16_t epmd_port,
                       unsigned shard)
{
    otp_epmd_config c = {.name = name,
                         .port = port,
                         .epmd_port = epmd_port,
                         .shard = shard,
                         .addresses = "127.0.0.1"};
    otp_epmd *ep = NULL;
    otp_error err;
    int r = otp_epmd_start(rt, &c, &ep, &err);
    if (r != 0)
        fprintf(stderr, "otp_epmd_start(%s): %s\n", name, err.message);
    assert_int_equal(r, 0);
    return ep;
}

static void test_agent_serve_client_takeover(void **state)
{
    otp_runtime *rt = runtime_up();
    uint16_t port = free_port();
    otp_epmd *a = agent(rt, "agent_a", 41001, port, 0);
    assert_true(otp_epmd_serving(a));
    assert_true(otp_epmd_creation(a) >= 4);
    assert_int_equal(otp_epmd_registrations(a), 1);
    otp_epmd *b = agent(rt, "agent_b", 41002, port, 1);
    otp_epmd *c = agent(rt, "agent_c", 41003, port, 0);
    assert_false(otp_epmd_serving(b));
    assert_false(otp_epmd_serving(c));
    uint32_t cr_b = otp_epmd_creation(b);
    /* the name is taken */
    otp_epmd_config dup = {.name = "agent_b", .port = 41009, .epmd_port = port};
    otp_epmd *d = NULL;
    otp_error err;
    assert_int_equal(otp_epmd_start(rt, &dup, &d, &err), -OTP_EEXIST);
    /* lookups through the embedded server */
    otp_epmd_node_info info;
    assert_int_equal(otp_epmd_lookup(c, "agent_a@127.0.0.1", 0, &info, &err), 0);
    assert_int_equal(info.port, 41001);
    assert_int_equal(otp_epmd_lookup(a, "agent_b@localhost", 0, &info, &err), 0);
    assert_int_equal(info.port, 41002);
    assert_int_equal(otp_epmd_lookup(a, "nobody@127.0.0.1", 0, &info, &err), -OTP_ENOTFOUND);
    /* static routes skip EPMD */
    assert_int_equal(otp_epmd_add_static_route(a, "far@otherhost.invalid", 45000), 0);
    assert_int_equal(otp_epmd_lookup(a, "far@otherhost.invalid", 0, &info, &err), 0);
    assert_int_equal(info.port, 45000);
    assert_string_equal(info.name, "far");
    assert_int_equal(otp_epmd_add_static_route(a, "near", 45001), 0);
    assert_int_equal(otp_epmd_lookup(a, "near@127.0.0.1", 0, &info, &err), 0);
    assert_int_equal(info.port, 45001);
    assert_int_equal(otp_epmd_remove_static_route(a, "far@otherhost.invalid"), 0);
    assert_int_equal(otp_epmd_remove_static_route(a, "far@otherhost.invalid"), -OTP_ENOTFOUND);
    assert_int_equal(otp_epmd_lookup(a, "far@127.0.0.1", 0, &info, &err), -OTP_ENOTFOUND);

    /* The server goes away: one of the others takes over, both are back. */
    uint64_t t0 = now_ms();
    otp_epmd_stop(a);
    while (!((otp_epmd_serving(b) || otp_epmd_serving(c)) && otp_epmd_registrations(b) == 2 &&
             otp_epmd_registrations(c) == 2))
        assert_true(now_ms() - t0 < 2000), usleep(1000);
    uint64_t took = now_ms() - t0;
    assert_true(otp_epmd_serving(b) != otp_epmd_serving(c));
    assert_int_equal(otp_epmd_creation(b), cr_b); /* the node keeps its creation */
    assert_int_equal(otp_epmd_port_please(NULL, port, "agent_b", 0, &info, NULL), 0);
    assert_int_equal(info.port, 41002);
    assert_int_equal(otp_epmd_port_please(NULL, port, "agent_c", 0, &info, NULL), 0);
    assert_int_equal(otp_epmd_port_please(NULL, port, "agent_a", 0, &info, NULL), -OTP_ENOTFOUND);
    fprintf(stderr, "  [%s] takeover and re-registration: %llu ms\n", g_backend_name,
            (unsigned long long)took);
    /* The runtime's stop ends the agents still running; stop frees after. */
    otp_epmd_stop(c);
    assert_int_equal(otp_runtime_stop(rt), 0);
    otp_epmd_stop(b);
    otp_runtime_free(rt);
}

static void test_agent_client_only_unreachable(void **state)
{
    otp_runtime *rt = runtime_up();
    uint16_t port = free_port();
    otp_epmd_config c = {.name = "lonely",
                         .port = 41100,
                         .epmd_port = port,
                         .client_only = true,
                         .start_timeout_ms = 400};
    otp_epmd *ep = NULL;
    otp_error err;
    uint64_t t0 = now_ms();
    assert_int_equal(otp_epmd_start(rt, &c, &ep, &err), -OTP_EIO);
    assert_true(now_ms() - t0 < 3000);
    assert_non_null(strstr(err.message, "cannot connect to EPMD"));
    assert_null(ep);
    /* bad arguments */
    otp_epmd_config bad = {.name = "", .port = 1};
    assert_int_equal(otp_epmd_start(rt, &bad, &ep, &err), -OTP_EBADARG);
    assert_int_equal(otp_runtime_stop(rt), 0);
    otp_runtime_free(rt);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_register_lookup_names),
    cmocka_unit_test(test_old_version_and_extra),
    cmocka_unit_test(test_bad_requests),
    cmocka_unit_test(test_slow_client),
    cmocka_unit_test(test_flood),
    cmocka_unit_test(test_kill_and_stop),
    cmocka_unit_test(test_names_and_dump),
    cmocka_unit_test(test_agent_serve_client_takeover),
    cmocka_unit_test(test_agent_client_only_unreachable),
};

int main(void)
{
    const struct CMUnitTest proto[] = {
        cmocka_unit_test(test_parse_requests),
        cmocka_unit_test(test_parse_answers),
    };
    int failed = cmocka_run_group_tests_name("epmd protocol", proto, NULL, NULL);
    static const struct {
        otp__io_backend b;
        const char *name;
    } backends[] = {{OTP__IO_EPOLL, "epoll"}, {OTP__IO_URING, "io_uring"}};
    for (size_t i = 0; i < 2; i++) {
        otp__io *probe;
        otp__io_config ic = {.backend = backends[i].b};
        if (otp__io_create(&probe, &ic) < 0) {
            printf("SKIP: the %s backend is not available here\n", backends[i].name);
            continue;
        }
        otp__io_destroy(probe);
        g_backend = backends[i].b;
        g_backend_name = backends[i].name;
        char group[64];
        snprintf(group, sizeof group, "epmd server and agent (%s)", backends[i].name);
        failed += cmocka_run_group_tests_name(group, tests, NULL, NULL);
    }
    return failed ? 1 : 0;
}
