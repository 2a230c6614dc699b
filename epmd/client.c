/* client.c — the blocking EPMD client calls of otp/epmd.h: one TCP
 * connection per request, as EPMD wants, with one deadline over connect,
 * send and the answer. Plain sockets and poll(2): these run on a caller's
 * thread, never on a shard.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "epmd_internal.h"
#include "otp/epmd.h"
#include "proto.h"

uint16_t otp_epmd_default_port(void)
{
    const char *env = getenv("ERL_EPMD_PORT");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == 0 && v > 0 && v < 65536)
            return (uint16_t)v;
    }
    return OTP__EPMD_PORT;
}

int otp__epmd_fail(otp_error *err, int code, const char *fmt, ...)
{
    if (err) {
        err->code = -code;
        err->offset = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return -code;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int left_ms(uint64_t deadline)
{
    uint64_t now = mono_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* Waits for fd to be ready for `events` before the deadline: 0, or -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, left_ms(deadline));
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

int otp__epmd_connect(const char *host, uint16_t port, uint64_t deadline, otp_error *err)
{
    if (!host)
        host = "127.0.0.1";
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC}, *res = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    int g = getaddrinfo(host, service, &hints, &res);
    if (g != 0)
        return otp__epmd_fail(err, OTP_EIO, "cannot resolve host %s: %s", host, gai_strerror(g));
    int last = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            r = wait_fd(fd, POLLOUT, deadline);
            if (r == 0) {
                int so = 0;
                socklen_t sl = sizeof so;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
                r = so ? -1 : 0;
                errno = so;
            } else {
                errno = -r;
                r = -1;
            }
        }
        if (r == 0) {
            freeaddrinfo(res);
            return fd;
        }
        last = errno;
        close(fd);
    }
    freeaddrinfo(res);
    return otp__epmd_fail(err, OTP_EIO, "cannot connect to %s port %u: %s", host, port,
                          strerror(last));
}

int otp__epmd_send_all(int fd, const uint8_t *p, size_t len, uint64_t deadline)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r < 0)
                return r;
            continue;
        }
        return -errno;
    }
    return 0;
}

/* Reads until `parse` says the answer is whole (returns > 0), or until EOF
 * when parse is NULL. Grows *buf; returns the bytes read or -errno /
 * -EPROTO (with *why from parse). */
typedef int (*parse_fn)(const uint8_t *b, size_t len, void *ctx, const char **why);

static int read_answer(int fd, uint64_t deadline, size_t max, parse_fn parse, void *ctx,
                       uint8_t **buf, size_t *len, const char **why)
{
    size_t cap = 256;
    uint8_t *b = malloc(cap);
    if (!b)
        return -ENOMEM;
    size_t have = 0;
    for (;;) {
        if (parse) {
            int r = parse(b, have, ctx, why);
            if (r > 0)
                break;
            if (r < 0) {
                free(b);
                return -EPROTO;
            }
        }
        if (have == cap) {
            if (cap >= max) {
                free(b);
                *why = "answer longer than any EPMD answer";
                return -EPROTO;
            }
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return -ENOMEM;
            }
            b = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, b + have, cap - have, 0);
        if (n > 0) {
            have += (size_t)n;
            continue;
        }
        if (n == 0) {
            if (!parse)
                break;
            free(b);
            *why = have ? "EPMD closed the connection in the middle of its answer"
                        : "EPMD closed the connection without answering";
            return -EPROTO;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            int r = wait_fd(fd, POLLIN, deadline);
            if (r < 0) {
                free(b);
                return r;
            }
            continue;
        }
        int e = -errno;
        free(b);
        return e;
    }
    *buf = b;
    *len = have;
    return 0;
}

int otp__epmd_request(const char *host, uint16_t port, const uint8_t *req, size_t req_len,
                      unsigned timeout_ms, uint8_t **ans, size_t *ans_len, otp_error *err)
{
    uint64_t deadline = mono_ms() + (timeout_ms ? timeout_ms : 10000);
    int fd = otp__epmd_connect(host, port, deadline, err);
    if (fd < 0)
        return fd;
    int r = otp__epmd_send_all(fd, req, req_len, deadline);
    const char *why = NULL;
    if (r == 0)
        r = read_answer(fd, deadline, 1u << 24, NULL, NULL, ans, ans_len, &why);
    close(fd);
    if (r < 0)
        return otp__epmd_fail(err, OTP_EIO, "EPMD at %s:%u: %s", host ? host : "127.0.0.1", port,
                              r == -ETIMEDOUT ? "no answer before the timeout" : strerror(-r));
    return 0;
}

typedef struct port2_ctx {
    bool found;
    otp__epmd_node n;
} port2_ctx;

static int parse_port2(const uint8_t *b, size_t len, void *ctx, const char **why)
{
    port2_ctx *c = ctx;
    return otp__epmd_parse_port2_resp(b, len, &c->found, &c->n, why);
}

int otp_epmd_port_please(const char *host, uint16_t epmd_port, const char *name,
                         unsigned timeout_ms, otp_epmd_node_info *out, otp_error *err)
{
    if (!name || !out)
        return otp__epmd_fail(err, OTP_EBADARG, "name and out are required");
    if (!epmd_port)
        epmd_port = otp_epmd_default_port();
    const char *hn = host ? host : "127.0.0.1";
    uint8_t req[2 + 1 + OTP__EPMD_MAX_NAME];
    const char *why = NULL;
    if (otp__epmd_check_name((const uint8_t *)name, strlen(name), &why) < 0)
        return otp__epmd_fail(err, OTP_EBADARG, "%s", why);
    int rl = otp__epmd_build_port2(req, sizeof req, name, strlen(name));
    uint64_t deadline = mono_ms() + (timeout_ms ? timeout_ms : 10000);
    int fd = otp__epmd_connect(host, epmd_port, deadline, err);
    if (fd < 0)
        return fd;
    int r = otp__epmd_send_all(fd, req, (size_t)rl, deadline);
    port2_ctx ctx;
    uint8_t *ans = NULL;
    size_t alen = 0;
    if (r == 0)
        r = read_answer(fd, deadline, 8192, parse_port2, &ctx, &ans, &alen, &why);
    close(fd);
    if (r == -EPROTO)
        return otp__epmd_fail(err, OTP_EIO, "EPMD at %s:%u: %s", hn, epmd_port, why);
    if (r < 0)
        return otp__epmd_fail(err, OTP_EIO, "EPMD at %s:%u: %s", hn, epmd_port,
                              r == -ETIMEDOUT ? "no answer before the timeout" : strerror(-r));
    if (!ctx.found) {
        free(ans);
        return otp__epmd_fail(err, OTP_ENOTFOUND, "EPMD at %s:%u does not know %s", hn, epmd_port,
                              name);
    }
    memset(out, 0, sizeof *out);
    out->port = ctx.n.port;
    out->type = ctx.n.type;
    out->protocol = ctx.n.proto;
    out->highest = ctx.n.highest;
    out->lowest = ctx.n.lowest;
    size_t nl = ctx.n.name_len < sizeof out->name ? ctx.n.name_len : sizeof out->name - 1;
    memcpy(out->name, ctx.n.name, nl);
    out->extra_len = ctx.n.extra_len < sizeof out->extra ? ctx.n.extra_len : sizeof out->extra;
    memcpy(out->extra, ctx.n.extra, out->extra_len);
    free(ans);
    return 0;
}

int otp_epmd_names(const char *host, uint16_t epmd_port, unsigned timeout_ms, char **text,
                   otp_error *err)
{
    if (!text)
        return otp__epmd_fail(err, OTP_EBADARG, "text is required");
    if (!epmd_port)
        epmd_port = otp_epmd_default_port();
    uint8_t req[3];
    otp__epmd_build_simple(req, sizeof req, OTP__EPMD_NAMES_REQ, NULL, 0);
    uint8_t *ans = NULL;
    size_t alen = 0;
    int r = otp__epmd_request(host, epmd_port, req, sizeof req, timeout_ms, &ans, &alen, err);
    if (r < 0)
        return r;
    uint32_t port =
        alen >= 4 ? (uint32_t)ans[0] << 24 | (uint32_t)ans[1] << 16 | (uint32_t)ans[2] << 8 | ans[3]
                  : 0;
    if (alen < 4 || port != epmd_port) {
        free(ans);
        return otp__epmd_fail(err, OTP_EIO,
                              "EPMD at %s:%u: NAMES answer does not start with its port",
                              host ? host : "127.0.0.1", epmd_port);
    }
    memmove(ans, ans + 4, alen - 4);
    ans[alen - 4] = 0;
    *text = (char *)ans;
    return (int)(alen - 4);
}

typedef struct alive_ctx {
    int result;
    uint32_t creation;
} alive_ctx;

static int parse_alive(const uint8_t *b, size_t len, void *ctx, const char **why)
{
    alive_ctx *c = ctx;
    return otp__epmd_parse_alive_resp(b, len, &c->result, &c->creation, why);
}

int otp_epmd_alive2(uint16_t epmd_port, const char *name, uint16_t port, bool hidden,
                    unsigned timeout_ms, uint32_t *creation, int *fdp, otp_error *err)
{
    if (!name || !creation || !fdp || !port)
        return otp__epmd_fail(err, OTP_EBADARG, "name, port, creation and fd are required");
    if (!epmd_port)
        epmd_port = otp_epmd_default_port();
    uint8_t req[2 + 13 + OTP__EPMD_MAX_NAME];
    otp__epmd_node n = {.port = port,
                        .type = hidden ? 'H' : 'M',
                        .highest = 6,
                        .lowest = 5,
                        .name = (const uint8_t *)name,
                        .name_len = (uint16_t)strlen(name)};
    const char *why = NULL;
    if (strlen(name) > OTP__EPMD_MAX_NAME || otp__epmd_check_name(n.name, strlen(name), &why) < 0)
        return otp__epmd_fail(err, OTP_EBADARG, "%s", why ? why : "name too long");
    int rl = otp__epmd_build_alive2(req, sizeof req, &n);
    uint64_t deadline = mono_ms() + (timeout_ms ? timeout_ms : 10000);
    int fd = otp__epmd_connect(NULL, epmd_port, deadline, err);
    if (fd < 0)
        return fd;
    int r = otp__epmd_send_all(fd, req, (size_t)rl, deadline);
    alive_ctx ctx = {0};
    uint8_t *ans = NULL;
    size_t alen = 0;
    if (r == 0)
        r = read_answer(fd, deadline, 64, parse_alive, &ctx, &ans, &alen, &why);
    free(ans);
    if (r < 0) {
        close(fd);
        return otp__epmd_fail(err, OTP_EIO, "registering %s with EPMD at port %u: %s", name,
                              epmd_port,
                              r == -EPROTO      ? why
                              : r == -ETIMEDOUT ? "no answer before the timeout"
                                                : strerror(-r));
    }
    if (ctx.result != 0) {
        close(fd);
        return otp__epmd_fail(err, OTP_EEXIST, "EPMD at port %u refused %s: name taken", epmd_port,
                              name);
    }
    *creation = ctx.creation;
    *fdp = fd;
    return 0;
}
