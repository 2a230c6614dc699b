/* test_dist_handshake.c — the distribution handshake: MD5 and the digest
 * against known values (dist-protocol.md §2.3), the two roles against each
 * other in memory (every status, wrong cookies, missing flags, the old
 * 'n' form, NAME_ME, bytes fed one at a time), and against real erl nodes
 * in both directions (our standalone epmd serves them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dist_handshake.h"
#include "interop/harness.h"
#include "md5.h"
#include "otp/epmd.h"

#define OURS (OTP__DF_REQUIRED | OTP__DF_DIST_MONITOR | OTP__DF_DIST_MONITOR_NAME | OTP__DF_SPAWN)

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void test_md5_and_digest(void **state)
{
    static const struct {
        const char *in, *md5;
    } v[] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        otp__md5 m;
        uint8_t d[16];
        char h[33];
        otp__md5_init(&m);
        /* in two pieces, to cross the block buffer */
        size_t n = strlen(v[i].in), half = n / 3;
        otp__md5_update(&m, v[i].in, half);
        otp__md5_update(&m, v[i].in + half, n - half);
        otp__md5_final(&m, d);
        hex(d, 16, h);
        assert_string_equal(h, v[i].md5);
    }
    /* from a real capture, cookie first */
    uint8_t d[16];
    char h[33];
    otp__hs_digest("secretcookie", 12, 2773931039u, d);
    hex(d, 16, h);
    assert_string_equal(h, "27299d53d69840bb5b2cbcea9a656ba3");
    otp__hs_digest("secretcookie", 12, 3749696168u, d);
    hex(d, 16, h);
    assert_string_equal(h, "7201e0e0d3689564a44808d7ae7492e1");
}

/* Runs two state machines against each other, moving `chunk` bytes at a
 * time. Returns the pair's results. */
typedef struct pair {
    otp__hs a, b;
    int ra, rb;
} pair;

static void pump(pair *p, size_t chunk)
{
    p->ra = p->rb = OTP__HS_AGAIN;
    for (int guard = 0; guard < 10000; guard++) {
        size_t n;
        const uint8_t *o;
        bool moved = false;
        o = otp__hs_out(&p->a, &n);
        if (n && p->rb == OTP__HS_AGAIN) {
            for (size_t off = 0; off < n && p->rb == OTP__HS_AGAIN;) {
                size_t k = n - off < chunk ? n - off : chunk, used;
                p->rb = otp__hs_feed(&p->b, o + off, k, &used);
                off += used;
            }
            moved = true;
        }
        otp__hs_sent(&p->a);
        o = otp__hs_out(&p->b, &n);
        if (n && p->ra == OTP__HS_AGAIN) {
            for (size_t off = 0; off < n && p->ra == OTP__HS_AGAIN;) {
                size_t k = n - off < chunk ? n - off : chunk, used;
                p->ra = otp__hs_feed(&p->a, o + off, k, &used);
                off += used;
            }
            moved = true;
        }
        otp__hs_sent(&p->b);
        if (!moved)
            return;
    }
    fail();
}

static otp__hs_config cfg_of(bool initiator, const char *name, const char *cookie)
{
    otp__hs_config c = {.initiator = initiator,
                        .name = name,
                        .creation = initiator ? 0x11111111u : 0x22222222u,
                        .flags = OURS,
                        .cookie = cookie,
                        .cookie_len = strlen(cookie)};
    return c;
}

static void test_in_memory(void **state)
{
    for (size_t chunk = 1; chunk <= 4096; chunk *= 8) {
        pair p;
        otp__hs_config ca = cfg_of(true, "a@h", "cookie"), cb = cfg_of(false, "b@h", "cookie");
        ca.peer = "b@h";
        assert_int_equal(otp__hs_start(&p.a, &ca), 0);
        assert_int_equal(otp__hs_start(&p.b, &cb), 0);
        pump(&p, chunk);
        assert_int_equal(p.ra, OTP__HS_UP);
        assert_int_equal(p.rb, OTP__HS_UP);
        assert_string_equal(p.a.peer_name, "b@h");
        assert_string_equal(p.b.peer_name, "a@h");
        assert_int_equal(p.a.peer_creation, 0x22222222u);
        assert_int_equal(p.b.peer_creation, 0x11111111u);
        assert_true(p.a.flags & OTP__DF_SPAWN);
        assert_true((p.a.flags & OTP__DF_REQUIRED) == OTP__DF_REQUIRED);
    }
}

static const char *st_value;
static const char *status_cb(void *arg, const char *peer, uint64_t f)
{
    return st_value;
}
static bool alive_answer;
static bool alive_cb(void *arg)
{
    return alive_answer;
}

static void test_statuses_and_failures(void **state)
{
    pair p;
    otp__hs_config ca = cfg_of(true, "a@h", "one"), cb = cfg_of(false, "b@h", "two");
    /* wrong cookie: the acceptor refuses the reply and sends no ack */
    otp__hs_start(&p.a, &ca);
    otp__hs_start(&p.b, &cb);
    pump(&p, 4096);
    assert_int_equal(p.rb, -OTP__HS_ECOOKIE);
    assert_int_equal(p.ra, OTP__HS_AGAIN);
    assert_string_equal(p.b.why, "invalid challenge reply: the cookies differ");

    /* the initiator called someone else */
    ca = cfg_of(true, "a@h", "c");
    cb = cfg_of(false, "b@h", "c");
    ca.peer = "x@h";
    otp__hs_start(&p.a, &ca);
    otp__hs_start(&p.b, &cb);
    pump(&p, 4096);
    assert_int_equal(p.ra, -OTP__HS_ENAME);

    /* statuses the acceptor gives */
    static const struct {
        const char *st;
        bool alive_go;
        int ra, rb;
    } cases[] = {
        {"ok_simultaneous", true, OTP__HS_UP, OTP__HS_UP},
        {"nok", true, -OTP__HS_EREFUSED, -OTP__HS_EDENIED},
        {"not_allowed", true, -OTP__HS_EREFUSED, -OTP__HS_EDENIED},
        {"alive", true, OTP__HS_UP, OTP__HS_UP},
        {"alive", false, -OTP__HS_EREFUSED, -OTP__HS_EREFUSED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ca = cfg_of(true, "a@h", "c");
        cb = cfg_of(false, "b@h", "c");
        st_value = cases[i].st;
        alive_answer = cases[i].alive_go;
        cb.status = status_cb;
        ca.alive_continue = alive_cb;
        otp__hs_start(&p.a, &ca);
        otp__hs_start(&p.b, &cb);
        pump(&p, 4096);
        assert_int_equal(p.ra, cases[i].ra);
        assert_int_equal(p.rb, cases[i].rb);
    }

    /* a peer without the flags we require gets not_allowed */
    ca = cfg_of(true, "a@h", "c");
    cb = cfg_of(false, "b@h", "c");
    cb.required_flags = OTP__DF_REQUIRED | OTP__DF_ALIAS;
    otp__hs_start(&p.a, &ca);
    otp__hs_start(&p.b, &cb);
    pump(&p, 4096);
    assert_int_equal(p.rb, -OTP__HS_EFLAGS);
    assert_int_equal(p.ra, -OTP__HS_EREFUSED);
    char miss[128];
    otp__hs_missing_flags(OTP__DF_MANDATORY_25_DIGEST, OTP__DF_REQUIRED, miss, sizeof miss);
    assert_string_equal(miss, "V4_NC,UNLINK_ID");

    /* garbage */
    cb = cfg_of(false, "b@h", "c");
    otp__hs_start(&p.b, &cb);
    size_t used;
    assert_int_equal(otp__hs_feed(&p.b, (const uint8_t *)"\0\3xyz", 5, &used), -OTP__HS_EPROTO);
    otp__hs_start(&p.b, &cb);
    assert_int_equal(otp__hs_feed(&p.b, (const uint8_t *)"\xff\xff", 2, &used), OTP__HS_AGAIN);
    assert_int_equal(otp__hs_feed(&p.b, (const uint8_t *)"N", 1, &used), -OTP__HS_EPROTO);
    assert_string_equal(p.b.why, "handshake message too long");
}

/* The old form an OTP 23/24 initiator sends: 'n', then 'c' after our 'N'. */
static void test_legacy_name_and_name_me(void **state)
{
    otp__hs b;
    otp__hs_config cb = cfg_of(false, "b@h", "c");
    otp__hs_start(&b, &cb);
    uint8_t m[64], *p = m + 2;
    *p++ = 'n';
    *p++ = 0, *p++ = 5;
    uint32_t lo = (uint32_t)(OURS | OTP__DF_MANDATORY_25_DIGEST);
    *p++ = (uint8_t)(lo >> 24), *p++ = (uint8_t)(lo >> 16), *p++ = (uint8_t)(lo >> 8),
    *p++ = (uint8_t)lo;
    memcpy(p, "old@h", 5);
    p += 5;
    m[0] = 0, m[1] = (uint8_t)(p - m - 2);
    size_t used, n;
    assert_int_equal(otp__hs_feed(&b, m, (size_t)(p - m), &used), OTP__HS_AGAIN);
    const uint8_t *o = otp__hs_out(&b, &n);
    assert_memory_equal(o, "\0\3sok", 5);
    assert_int_equal(o[7], 'N'); /* the new challenge */
    uint32_t challenge =
        (uint32_t)o[16] << 24 | (uint32_t)o[17] << 16 | (uint32_t)o[18] << 8 | o[19];
    otp__hs_sent(&b);
    /* the complement: high flags and creation */
    uint32_t hi = (uint32_t)(OURS >> 32);
    const uint8_t c[] = {0,
                         9,
                         'c',
                         (uint8_t)(hi >> 24),
                         (uint8_t)(hi >> 16),
                         (uint8_t)(hi >> 8),
                         (uint8_t)hi,
                         0x12,
                         0x34,
                         0x56,
                         0x78};
    assert_int_equal(otp__hs_feed(&b, c, sizeof c, &used), OTP__HS_AGAIN);
    assert_int_equal(b.peer_creation, 0x12345678u);
    uint8_t r[23] = {0, 21, 'r', 0, 0, 0, 7};
    otp__hs_digest("c", 1, challenge, r + 7);
    assert_int_equal(otp__hs_feed(&b, r, sizeof r, &used), OTP__HS_UP);
    assert_true(b.flags & OTP__DF_V4_NC);

    /* NAME_ME: the acceptor invents the name and says so */
    otp__hs_start(&b, &cb);
    p = m + 2;
    *p++ = 'N';
    uint64_t f = OURS | OTP__DF_NAME_ME;
    for (int i = 7; i >= 0; i--)
        *p++ = (uint8_t)(f >> (8 * i));
    *p++ = 0, *p++ = 0, *p++ = 0, *p++ = 0;
    *p++ = 0, *p++ = 4;
    memcpy(p, "host", 4);
    p += 4;
    m[0] = 0, m[1] = (uint8_t)(p - m - 2);
    assert_int_equal(otp__hs_feed(&b, m, (size_t)(p - m), &used), OTP__HS_AGAIN);
    assert_true(b.named);
    o = otp__hs_out(&b, &n);
    assert_memory_equal(o + 2, "snamed:", 7);
    assert_non_null(strstr(b.peer_name, "@host"));
}

/* ------------------------------------------------------------- live erl */

static char g_erl[512], g_bin[512], g_host[256];

static bool find_erl(void)
{
    return find_prog("erl", g_erl, sizeof g_erl);
}

/* A line from the child within timeout_ms, or fails. */
static void read_line(child *c, char *line, size_t cap, unsigned timeout_ms)
{
    assert_true(next_line(c, line, cap, now_ms() + timeout_ms));
}

typedef struct live {
    uint16_t epmd_port;
    child epmd;
} live;

static int live_setup(void **state)
{
    static live l;
    l.epmd_port = free_port();
    char port[16];
    snprintf(port, sizeof port, "%u", l.epmd_port);
    setenv("ERL_EPMD_PORT", port, 1);
    char *argv[] = {g_bin, "-port", port, NULL};
    l.epmd = child_start(argv);
    uint64_t deadline = now_ms() + 5000;
    char *text = NULL;
    while (otp_epmd_names(NULL, l.epmd_port, 500, &text, NULL) < 0)
        assert_true(now_ms() < deadline), usleep(10000);
    free(text);
    *state = &l;
    return 0;
}

static int live_teardown(void **state)
{
    live *l = *state;
    reap(&l->epmd);
    return 0;
}

/* Runs the handshake over a blocking socket; returns its result. */
static int run_hs(int fd, otp__hs *hs)
{
    for (;;) {
        size_t n;
        const uint8_t *o = otp__hs_out(hs, &n);
        if (n) {
            assert_int_equal(send(fd, o, n, MSG_NOSIGNAL), (ssize_t)n);
            otp__hs_sent(hs);
        }
        uint8_t buf[4096];
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 10000) <= 0)
            return -1000; /* stalled */
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0)
            return -1001; /* closed */
        size_t used;
        int r = otp__hs_feed(hs, buf, (size_t)k, &used);
        if (r != OTP__HS_AGAIN) {
            o = otp__hs_out(hs, &n);
            if (n)
                send(fd, o, n, MSG_NOSIGNAL); /* the last status or the ack */
            otp__hs_sent(hs);
            return r;
        }
    }
}

/* We call a real erl node. */
static void test_live_we_initiate(void **state)
{
    live *l = *state;
    char name[64], full[320], eval[600];
    snprintf(name, sizeof name, "hs_a%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "io:format(\"ready~n\"),"
             "F = fun F(0) -> io:format(\"timeout~n\"); F(N) -> case nodes(hidden) of [] -> "
             "timer:sleep(20), F(N-1); L -> io:format(\"seen ~p~n\", [L]) end end,"
             "F(500), halt().");
    char *argv[] = {g_erl,      "-sname", name, "-setcookie", "livecookie",
                    "-noshell", "-eval",  eval, NULL};
    child erl = child_start(argv);
    char line[512];
    read_line(&erl, line, sizeof line, 20000);
    assert_string_equal(line, "ready");
    otp_epmd_node_info info;
    assert_int_equal(otp_epmd_port_please(NULL, l->epmd_port, name, 0, &info, NULL), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(info.port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    snprintf(full, sizeof full, "%s@%s", name, g_host);
    char ours[320];
    snprintf(ours, sizeof ours, "c_hs%d@%s", (int)getpid(), g_host);
    otp__hs hs;
    otp__hs_config c = cfg_of(true, ours, "livecookie");
    c.peer = full;
    assert_int_equal(otp__hs_start(&hs, &c), 0);
    assert_int_equal(run_hs(fd, &hs), OTP__HS_UP);
    assert_string_equal(hs.peer_name, full);
    assert_true(hs.peer_creation != 0);
    read_line(&erl, line, sizeof line, 10000);
    char want[400];
    snprintf(want, sizeof want, "seen [%s]", ours);
    assert_string_equal(line, want);
    close(fd);
    reap(&erl);
}

/* A real erl node calls us (connect_node), with the right cookie and with
 * a wrong one. */
static void accept_from_erl(live *l, const char *tag, const char *erl_cookie, int want_rc,
                            const char *want_out)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(ls, 4), 0);
    getsockname(ls, (struct sockaddr *)&a, &al);
    char ours[64], full[320];
    snprintf(ours, sizeof ours, "c_%s%d", tag, (int)getpid());
    snprintf(full, sizeof full, "%s@%s", ours, g_host);
    uint32_t creation;
    int reg;
    assert_int_equal(
        otp_epmd_alive2(l->epmd_port, ours, ntohs(a.sin_port), true, 0, &creation, &reg, NULL), 0);
    char name[64], eval[600];
    snprintf(name, sizeof name, "hs_%s%d", tag, (int)getpid());
    snprintf(eval, sizeof eval, "io:format(\"~p~n\", [net_kernel:connect_node('%s')]), halt().",
             full);
    char *argv[] = {g_erl,      "-sname", name, "-setcookie", (char *)erl_cookie,
                    "-noshell", "-eval",  eval, NULL};
    child erl = child_start(argv);
    struct pollfd pf = {.fd = ls, .events = POLLIN};
    assert_true(poll(&pf, 1, 20000) > 0);
    int fd = accept(ls, NULL, NULL);
    otp__hs hs;
    otp__hs_config c = cfg_of(false, full, "livecookie");
    c.creation = creation;
    assert_int_equal(otp__hs_start(&hs, &c), 0);
    int r = run_hs(fd, &hs);
    if (r != want_rc)
        fprintf(stderr, "handshake: %d (%s)\n", r, hs.why ? hs.why : "");
    assert_int_equal(r, want_rc);
    if (r < 0)
        close(fd); /* as OTP does on a bad digest: no ack, just close */
    char line[512];
    read_line(&erl, line, sizeof line, 15000);
    assert_string_equal(line, want_out);
    if (r >= 0)
        close(fd);
    close(reg);
    close(ls);
    reap(&erl);
}

static void test_live_erl_initiates(void **state)
{
    accept_from_erl(*state, "ok", "livecookie", OTP__HS_UP, "true");
}

static void test_live_wrong_cookie(void **state)
{
    accept_from_erl(*state, "bad", "not_the_cookie", -OTP__HS_ECOOKIE, "false");
}

int main(void)
{
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(test_md5_and_digest),
        cmocka_unit_test(test_in_memory),
        cmocka_unit_test(test_statuses_and_failures),
        cmocka_unit_test(test_legacy_name_and_name_me),
    };
    int failed = cmocka_run_group_tests_name("handshake", unit, NULL, NULL);
    const char *bin = getenv("OTP_BIN_DIR");
    if (!find_erl() || !bin) {
        printf("SKIP: the live handshake cases need erl on PATH and OTP_BIN_DIR\n");
        return failed ? 1 : 77;
    }
    snprintf(g_bin, sizeof g_bin, "%s/epmd", bin);
    gethostname(g_host, sizeof g_host);
    g_host[strcspn(g_host, ".")] = 0; /* -sname uses the short host name */
    signal(SIGPIPE, SIG_IGN);
    setenv("ERL_CRASH_DUMP_SECONDS", "0", 1); /* no erl_crash.dump files */
    const struct CMUnitTest live_tests[] = {
        cmocka_unit_test(test_live_we_initiate),
        cmocka_unit_test(test_live_erl_initiates),
        cmocka_unit_test(test_live_wrong_cookie),
    };
    failed +=
        cmocka_run_group_tests_name("handshake with erl", live_tests, live_setup, live_teardown);
    return failed ? 1 : 0;
}
