/* server.c — the EPMD server (see server.h): listeners with multishot
 * accept, one small state machine per connection, a table of registered
 * nodes and a bounded list of names that went away (so a name that comes
 * back gets the next creation, as with Erlang's epmd).
 *
 * A connection reads one request (u16 length + body) into its own fixed
 * buffer, answers, and closes — except a successful ALIVE2, which keeps the
 * socket with a receive pending: any completion on it (EOF, error, or a
 * byte, which Erlang's epmd also treats as the end) unregisters the node.
 * Connection memory is freed only once its last op has completed.
 */
#define _GNU_SOURCE
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "socket.h"

#define MAX_LISTENERS 8

typedef struct node node;
typedef struct conn conn;

struct node {
    node *next;
    conn *owner; /* the registration socket's connection; NULL: registered in-process */
    uint32_t creation;
    uint16_t port, highest, lowest, name_len, extra_len;
    uint8_t type, proto;
    uint8_t *extra;
    uint8_t name[]; /* name_len bytes + NUL */
};

typedef struct old_name {
    struct old_name *next;
    uint32_t creation;
    uint16_t len;
    uint8_t name[];
} old_name;

enum { C_READ, C_SEND, C_REGISTERED, C_CLOSED };

struct conn {
    otp__epmd_srv *srv;
    conn *next, *prev; /* in accept order: the oldest first */
    otp__sock fd;
    uint8_t state;
    bool local;
    bool kill_after; /* KILL answered: tell the owner once sent */
    int ops;         /* ops pending */
    uint64_t deadline_ms;
    node *reg;
    otp__io_op rop, sop;
    struct iovec iov;
    uint8_t *out; /* the answer (heap for NAMES/DUMP, else small[]) */
    size_t have;
    uint8_t small[16];
    uint8_t in[2 + OTP__EPMD_MAX_REQ];
};

typedef struct listener {
    otp__epmd_srv *srv;
    otp__sock fd;
    otp__io_op op;
    bool failed; /* the accept ended on an error: re-armed by tick */
} listener;

struct otp__epmd_srv {
    otp__io *io;
    otp__epmd_srv_config cfg;
    listener ls[MAX_LISTENERS];
    unsigned nls;
    conn *head, *tail;
    unsigned nconns;
    node *nodes;
    unsigned nnodes;
    old_name *old;
    unsigned nold;
    bool closing;
    int ops;         /* listener ops pending */
    unsigned nalloc; /* connections not yet freed (closed ones wait for their ops) */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Erlang's epmd log format: "epmd: Wed Dec  2 05:00:10 2026: text". */
static void dbg(const otp__epmd_srv *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dbg(const otp__epmd_srv *srv, int level, const char *fmt, ...)
{
    if (srv->cfg.debug < level)
        return;
    time_t now = time(NULL);
    char when[32];
    ctime_r(&now, when);
    when[strcspn(when, "\n")] = 0;
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "epmd: %s: %s\n", when, line);
}

static void maybe_closed(otp__epmd_srv *srv);

/* ------------------------------------------------------------- the table */

static node *find_node(otp__epmd_srv *srv, const uint8_t *name, size_t len)
{
    for (node *n = srv->nodes; n; n = n->next)
        if (n->name_len == len && memcmp(n->name, name, len) == 0)
            return n;
    return NULL;
}

/* The creation for a name registering now: the next after its last one if
 * it was here before, else the clock (so a restarted epmd does not hand out
 * a creation an old incarnation of the node may still use); never 0..3. */
static uint32_t next_creation(otp__epmd_srv *srv, const uint8_t *name, size_t len)
{
    old_name **pp = &srv->old;
    for (old_name *o = srv->old; o; pp = &o->next, o = o->next) {
        if (o->len == len && memcmp(o->name, name, len) == 0) {
            uint32_t c = o->creation + 1;
            *pp = o->next;
            free(o);
            srv->nold--;
            return c < 4 ? 4 : c;
        }
    }
    uint32_t c = (uint32_t)time(NULL);
    return c < 4 ? 4 : c;
}

static void remember(otp__epmd_srv *srv, const node *n)
{
    unsigned max = srv->cfg.max_old_names;
    old_name *o = malloc(sizeof *o + n->name_len);
    if (!o)
        return; /* only the next creation's continuity is lost */
    o->creation = n->creation;
    o->len = n->name_len;
    memcpy(o->name, n->name, n->name_len);
    o->next = srv->old;
    srv->old = o;
    if (++srv->nold > max) {
        /* drop the oldest: the list is newest first */
        old_name **pp = &srv->old;
        while ((*pp)->next)
            pp = &(*pp)->next;
        free(*pp);
        *pp = NULL;
        srv->nold--;
    }
}

static node *add_node(otp__epmd_srv *srv, const otp__epmd_node *in, conn *owner)
{
    node *n = calloc(1, sizeof *n + in->name_len + 1);
    if (!n)
        return NULL;
    if (in->extra_len) {
        n->extra = malloc(in->extra_len);
        if (!n->extra) {
            free(n);
            return NULL;
        }
        memcpy(n->extra, in->extra, in->extra_len);
    }
    n->owner = owner;
    n->port = in->port;
    n->type = in->type;
    n->proto = in->proto;
    n->highest = in->highest;
    n->lowest = in->lowest;
    n->name_len = in->name_len;
    n->extra_len = in->extra_len;
    memcpy(n->name, in->name, in->name_len);
    n->creation = next_creation(srv, in->name, in->name_len);
    /* Newest first, as Erlang's epmd lists them. */
    n->next = srv->nodes;
    srv->nodes = n;
    srv->nnodes++;
    dbg(srv, 1, "registering '%s:%u', port %u", n->name, n->creation, n->port);
    dbg(srv, 1, "type %u proto %u highvsn %u lowvsn %u", n->type, n->proto, n->highest, n->lowest);
    return n;
}

static void remove_node(otp__epmd_srv *srv, node *n)
{
    for (node **pp = &srv->nodes; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    }
    srv->nnodes--;
    dbg(srv, 1, "unregistering '%s:%u', port %u", n->name, n->creation, n->port);
    remember(srv, n);
    free(n->extra);
    free(n);
}

/* ------------------------------------------------------------ connections */

static void conn_free(conn *c)
{
    otp__epmd_srv *srv = c->srv;
    if (c->out != c->small)
        free(c->out);
    free(c);
    srv->nalloc--;
    maybe_closed(srv);
}

/* Closes the socket (unregistering its node); the memory goes with the
 * last completion. */
static void conn_close(conn *c)
{
    otp__epmd_srv *srv = c->srv;
    if (c->state == C_CLOSED)
        return;
    c->state = C_CLOSED;
    if (c->reg) {
        c->reg->owner = NULL;
        remove_node(srv, c->reg);
        c->reg = NULL;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        srv->tail = c->prev;
    srv->nconns--;
    otp__io_close(srv->io, c->fd);
    if (c->ops == 0)
        conn_free(c);
}

/* One op of c is back. True when c is closed (and maybe freed by now):
 * the caller must not touch it again. */
static bool op_done(conn *c)
{
    if (c->state != C_CLOSED) {
        c->ops--;
        return false;
    }
    if (--c->ops == 0)
        conn_free(c);
    return true;
}

static void on_recv(otp__io_op *op, int64_t res);

static void arm_recv(conn *c, void *buf, size_t len)
{
    if (otp__io_recv(c->srv->io, &c->rop, c->fd, buf, len) == 0)
        c->ops++;
    else
        conn_close(c);
}

static void on_sent(otp__io_op *op, int64_t res)
{
    conn *c = op->data;
    if (op_done(c))
        return;
    if (c->state == C_REGISTERED) {
        if (res < 0)
            conn_close(c); /* the node learns it is not registered */
        return;
    }
    bool kill = c->kill_after;
    otp__epmd_srv *srv = c->srv;
    conn_close(c);
    if (kill && srv->cfg.on_kill)
        srv->cfg.on_kill(srv->cfg.arg);
}

/* Sends out[0..len) and closes (the registration path sends by itself). */
static void reply(conn *c, uint8_t *out, size_t len)
{
    if (c->out && c->out != c->small && c->out != out)
        free(c->out);
    c->out = out;
    c->iov.iov_base = out;
    c->iov.iov_len = len;
    c->state = C_SEND;
    if (otp__io_send(c->srv->io, &c->sop, c->fd, &c->iov, 1) == 0)
        c->ops++;
    else
        conn_close(c);
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

/* A growing text answer for NAMES and DUMP. */
typedef struct text {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} text;

static void text_add(text *t, const void *s, size_t n)
{
    if (t->oom)
        return;
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        while (cap < t->len + n)
            cap *= 2;
        uint8_t *p = realloc(t->p, cap);
        if (!p) {
            t->oom = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

static void text_printf(text *t, bool nul, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void text_printf(text *t, bool nul, const char *fmt, ...)
{
    char buf[1400];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    text_add(t, buf, (size_t)n + (nul ? 1 : 0));
}

static void answer_names(conn *c, bool dump)
{
    otp__epmd_srv *srv = c->srv;
    text t = {0};
    uint8_t port[4];
    put32(port, otp__epmd_srv_port(srv));
    text_add(&t, port, 4);
    for (node *n = srv->nodes; n; n = n->next) {
        int fd = n->owner ? n->owner->fd : -1;
        if (dump)
            text_printf(&t, true, "active name     <%s> at port %u, fd = %d\n", n->name, n->port,
                        fd);
        else
            text_printf(&t, false, "name %s at port %u\n", n->name, n->port);
    }
    if (dump)
        for (old_name *o = srv->old; o; o = o->next)
            text_printf(&t, true, "old/unused name <%.*s>, port = 0, fd = -1 \n", (int)o->len,
                        o->name);
    if (t.oom) {
        free(t.p);
        conn_close(c);
        return;
    }
    dbg(srv, 1, "** sent %s_RESP", dump ? "DUMP" : "NAMES");
    reply(c, t.p, t.len);
}

static void handle(conn *c, const uint8_t *body, size_t len)
{
    otp__epmd_srv *srv = c->srv;
    otp__epmd_req r;
    const char *why = NULL;
    size_t at = 0;
    if (otp__epmd_parse_req(body, len, &r, &why, &at) < 0) {
        dbg(srv, 1, "bad request (code %u, %zu bytes): %s at byte %zu; closing", body[0], len, why,
            at);
        conn_close(c);
        return;
    }
    uint8_t *o = c->small;
    switch (r.code) {
    case OTP__EPMD_ALIVE2_REQ: {
        dbg(srv, 1, "** got ALIVE2_REQ");
        if (!c->local) {
            dbg(srv, 1, "ALIVE2_REQ from a non-local address; closing");
            conn_close(c);
            return;
        }
        bool x = r.node.highest >= 6;
        o[0] = x ? OTP__EPMD_ALIVE2_X_RESP : OTP__EPMD_ALIVE2_RESP;
        node *n = find_node(srv, r.node.name, r.node.name_len) ? NULL : add_node(srv, &r.node, c);
        if (!n) {
            /* Taken (or no memory): result 1, creation 99, as Erlang's epmd. */
            dbg(srv, 1, "** failed to register '%.*s'", (int)r.node.name_len, r.node.name);
            o[1] = 1;
            if (x)
                put32(o + 2, 99);
            else
                o[2] = 0, o[3] = 99;
            reply(c, o, x ? 6 : 4);
            return;
        }
        c->reg = n;
        o[1] = 0;
        if (x) {
            put32(o + 2, n->creation);
        } else {
            uint32_t cr = n->creation % 3 + 1;
            o[2] = 0, o[3] = (uint8_t)cr;
        }
        dbg(srv, 1, "** sent ALIVE2_RESP for \"%s\"", n->name);
        /* Registered: the answer goes out, then the socket only waits for
         * its end. */
        c->state = C_REGISTERED;
        c->out = o;
        c->iov.iov_base = o;
        c->iov.iov_len = x ? 6 : 4;
        if (otp__io_send(srv->io, &c->sop, c->fd, &c->iov, 1) != 0) {
            conn_close(c);
            return;
        }
        c->ops++;
        arm_recv(c, c->in, 1);
        return;
    }
    case OTP__EPMD_PORT2_REQ: {
        dbg(srv, 1, "** got PORT2_REQ");
        node *n = find_node(srv, r.name, r.name_len);
        if (!n) {
            o[0] = OTP__EPMD_PORT2_RESP;
            o[1] = 1;
            dbg(srv, 1, "** sent PORT2_RESP (error) for \"%.*s\"", (int)r.name_len, r.name);
            reply(c, o, 2);
            return;
        }
        size_t len2 = 14u + n->name_len + n->extra_len;
        uint8_t *p = malloc(len2), *q = p;
        if (!p) {
            conn_close(c);
            return;
        }
        *q++ = OTP__EPMD_PORT2_RESP;
        *q++ = 0;
        *q++ = (uint8_t)(n->port >> 8), *q++ = (uint8_t)n->port;
        *q++ = n->type;
        *q++ = n->proto;
        *q++ = (uint8_t)(n->highest >> 8), *q++ = (uint8_t)n->highest;
        *q++ = (uint8_t)(n->lowest >> 8), *q++ = (uint8_t)n->lowest;
        *q++ = (uint8_t)(n->name_len >> 8), *q++ = (uint8_t)n->name_len;
        memcpy(q, n->name, n->name_len);
        q += n->name_len;
        *q++ = (uint8_t)(n->extra_len >> 8), *q++ = (uint8_t)n->extra_len;
        if (n->extra_len)
            memcpy(q, n->extra, n->extra_len);
        dbg(srv, 1, "** sent PORT2_RESP (ok) for \"%s\"", n->name);
        reply(c, p, len2);
        return;
    }
    case OTP__EPMD_NAMES_REQ:
        dbg(srv, 1, "** got NAMES_REQ");
        answer_names(c, false);
        return;
    case OTP__EPMD_DUMP_REQ:
        dbg(srv, 1, "** got DUMP_REQ");
        if (!c->local) {
            conn_close(c);
            return;
        }
        answer_names(c, true);
        return;
    case OTP__EPMD_KILL_REQ:
        dbg(srv, 1, "** got KILL_REQ");
        if (!c->local) {
            conn_close(c);
            return;
        }
        if (srv->nnodes && !srv->cfg.relaxed) {
            dbg(srv, 1, "Disallowed KILL_REQ, live nodes");
            memcpy(o, "NO", 2);
            reply(c, o, 2);
            return;
        }
        dbg(srv, 1, "epmd killed");
        memcpy(o, "OK", 2);
        c->kill_after = true;
        reply(c, o, 2);
        return;
    case OTP__EPMD_STOP_REQ: {
        dbg(srv, 1, "** got STOP_REQ");
        if (!c->local || !srv->cfg.relaxed) {
            conn_close(c);
            return;
        }
        node *n = find_node(srv, r.name, r.name_len);
        if (!n) {
            dbg(srv, 1, "trying to unregister node with unknown name %.*s", (int)r.name_len,
                r.name);
            /* Erlang's epmd writes NOEXIST and then STOPPED. */
            memcpy(o, "NOEXISTSTOPPED", 14);
            reply(c, o, 14);
            return;
        }
        if (n->owner) {
            conn *owner = n->owner;
            conn_close(owner); /* unregisters */
        } else {
            remove_node(srv, n);
        }
        dbg(srv, 1, "** sent STOP_RESP STOPPED");
        memcpy(o, "STOPPED", 7);
        reply(c, o, 7);
        return;
    }
    default:
        conn_close(c);
        return;
    }
}

static void on_recv(otp__io_op *op, int64_t res)
{
    conn *c = op->data;
    if (op_done(c))
        return;
    if (c->state == C_REGISTERED || res <= 0) {
        /* A registration ends with any completion on its socket. */
        if (c->state == C_REGISTERED)
            dbg(c->srv, 1, "registration socket of '%s' %s", c->reg ? (char *)c->reg->name : "?",
                res == 0  ? "closed"
                : res < 0 ? "failed"
                          : "sent data");
        conn_close(c);
        return;
    }
    c->have += (size_t)res;
    if (c->have >= 2) {
        size_t want = (size_t)c->in[0] << 8 | c->in[1];
        if (want == 0 || want > OTP__EPMD_MAX_REQ) {
            dbg(c->srv, 1, "request length %zu out of range 1..%d; closing", want,
                OTP__EPMD_MAX_REQ);
            conn_close(c);
            return;
        }
        if (c->have > 2 + want) {
            /* more than one request on a connection: not allowed */
            dbg(c->srv, 1, "bytes after the request; closing");
            conn_close(c);
            return;
        }
        if (c->have == 2 + want) {
            handle(c, c->in + 2, want);
            return;
        }
    }
    arm_recv(c, c->in + c->have, sizeof c->in - c->have);
}

static bool is_local(int fd)
{
    struct sockaddr_storage peer, self;
    socklen_t pl = sizeof peer, sl = sizeof self;
    if (getpeername(fd, (struct sockaddr *)&peer, &pl) < 0 ||
        getsockname(fd, (struct sockaddr *)&self, &sl) < 0)
        return false;
    if (peer.ss_family == AF_INET) {
        const struct sockaddr_in *p = (const void *)&peer, *s = (const void *)&self;
        uint32_t a = ntohl(p->sin_addr.s_addr);
        return (a >> 24) == 127 || p->sin_addr.s_addr == s->sin_addr.s_addr;
    }
    if (peer.ss_family == AF_INET6) {
        const struct sockaddr_in6 *p = (const void *)&peer, *s = (const void *)&self;
        if (IN6_IS_ADDR_LOOPBACK(&p->sin6_addr))
            return true;
        if (IN6_IS_ADDR_V4MAPPED(&p->sin6_addr) && p->sin6_addr.s6_addr[12] == 127)
            return true;
        return memcmp(&p->sin6_addr, &s->sin6_addr, sizeof p->sin6_addr) == 0;
    }
    return false;
}

static void on_accept(otp__io_op *op, int64_t res)
{
    listener *l = op->data;
    otp__epmd_srv *srv = l->srv;
    if (!otp__io_op_pending(op)) {
        srv->ops--;
        if (!srv->closing && res != -ECANCELED) {
            dbg(srv, 1, "accept failed: %s; retrying", strerror((int)-res));
            l->failed = true;
        }
        maybe_closed(srv);
        if (res < 0)
            return;
    }
    if (res < 0)
        return;
    int fd = (int)res;
    if (srv->closing) {
        close(fd);
        return;
    }
    if (srv->nconns >= srv->cfg.max_conns) {
        /* Full: make room by closing the oldest connection that is not a
         * registration; if every one is, refuse this one. */
        conn *v = srv->head;
        while (v && v->state == C_REGISTERED)
            v = v->next;
        if (!v) {
            dbg(srv, 1, "too many registered nodes; refusing a connection");
            close(fd);
            return;
        }
        dbg(srv, 1, "connection table full; closing the oldest idle connection");
        conn_close(v);
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    srv->nalloc++;
    c->srv = srv;
    c->fd = fd;
    c->local = is_local(fd);
    c->deadline_ms = mono_ms() + (uint64_t)srv->cfg.packet_timeout_s * 1000;
    c->rop.done = on_recv;
    c->rop.data = c;
    c->sop.done = on_sent;
    c->sop.data = c;
    c->prev = srv->tail;
    if (srv->tail)
        srv->tail->next = c;
    else
        srv->head = c;
    srv->tail = c;
    srv->nconns++;
    arm_recv(c, c->in, sizeof c->in);
}

static int arm_accept(otp__epmd_srv *srv, listener *l)
{
    l->op.done = on_accept;
    l->op.data = l;
    int r = otp__io_accept(srv->io, &l->op, l->fd);
    if (r == 0) {
        srv->ops++;
        l->failed = false;
    }
    return r;
}

/* ------------------------------------------------------------- the server */

static void maybe_closed(otp__epmd_srv *srv)
{
    if (!srv->closing || srv->ops || srv->nalloc)
        return;
    void (*cb)(void *) = srv->cfg.on_closed;
    void *arg = srv->cfg.arg;
    while (srv->old) {
        old_name *o = srv->old;
        srv->old = o->next;
        free(o);
    }
    free(srv);
    if (cb)
        cb(arg);
}

static int add_listener(otp__epmd_srv *srv, const char *addr)
{
    if (srv->nls == MAX_LISTENERS)
        return -EINVAL;
    int fd = otp__tcp_listen(addr, srv->cfg.port, 128, NULL);
    if (fd < 0)
        return fd;
    listener *l = &srv->ls[srv->nls++];
    l->srv = srv;
    l->fd = fd;
    return 0;
}

int otp__epmd_srv_start(otp__io *io, const otp__epmd_srv_config *cfg, otp__epmd_srv **out)
{
    otp__epmd_srv *srv = calloc(1, sizeof *srv);
    if (!srv)
        return -ENOMEM;
    srv->io = io;
    srv->cfg = *cfg;
    if (!srv->cfg.port)
        srv->cfg.port = OTP__EPMD_PORT;
    if (!srv->cfg.packet_timeout_s)
        srv->cfg.packet_timeout_s = 60;
    if (!srv->cfg.max_conns)
        srv->cfg.max_conns = 1024;
    if (!srv->cfg.max_old_names)
        srv->cfg.max_old_names = srv->cfg.debug ? 5 : 1000;
    srv->cfg.addresses = NULL; /* not kept: the caller's string */
    int r = 0;
    if (!cfg->addresses) {
        /* IPv4 decides whether we serve; IPv6 is best effort (a host
         * without it, or another server that got there first). */
        r = add_listener(srv, "0.0.0.0");
        if (r == 0)
            (void)add_listener(srv, "::");
    } else {
        char buf[512];
        if (strlen(cfg->addresses) >= sizeof buf) {
            r = -EINVAL;
        } else {
            strcpy(buf, cfg->addresses);
            bool loop4 = false, loop6 = false, any6 = false;
            char *save = NULL;
            for (char *a = strtok_r(buf, ", ", &save); a && r == 0;
                 a = strtok_r(NULL, ", ", &save)) {
                if (strcmp(a, "127.0.0.1") == 0)
                    loop4 = true;
                if (strcmp(a, "::1") == 0)
                    loop6 = true;
                if (strchr(a, ':'))
                    any6 = true;
                r = add_listener(srv, a);
            }
            /* Erlang's epmd always listens on loopback too. */
            if (r == 0 && !loop4)
                r = add_listener(srv, "127.0.0.1");
            if (r == 0 && any6 && !loop6)
                (void)add_listener(srv, "::1");
        }
    }
    for (unsigned i = 0; r == 0 && i < srv->nls; i++)
        r = arm_accept(srv, &srv->ls[i]);
    if (r < 0) {
        for (unsigned i = 0; i < srv->nls; i++)
            otp__io_close(io, srv->ls[i].fd);
        /* Accepts already armed free the server once cancelled. */
        srv->closing = true;
        srv->cfg.on_closed = NULL;
        maybe_closed(srv);
        return r;
    }
    dbg(srv, 1, "epmd running - daemon = 0");
    *out = srv;
    return 0;
}

void otp__epmd_srv_close(otp__epmd_srv *srv)
{
    if (srv->closing)
        return;
    srv->closing = true;
    for (unsigned i = 0; i < srv->nls; i++)
        otp__io_close(srv->io, srv->ls[i].fd);
    while (srv->head)
        conn_close(srv->head);
    while (srv->nodes)
        remove_node(srv, srv->nodes);
    maybe_closed(srv);
}

void otp__epmd_srv_tick(otp__epmd_srv *srv, uint64_t now_ms)
{
    if (srv->closing)
        return;
    for (conn *c = srv->head, *next; c; c = next) {
        next = c->next;
        if (c->state != C_REGISTERED && now_ms >= c->deadline_ms) {
            dbg(srv, 1, "connection timed out before its request was complete");
            conn_close(c);
        }
    }
    for (unsigned i = 0; i < srv->nls; i++)
        if (srv->ls[i].failed)
            (void)arm_accept(srv, &srv->ls[i]);
}

int otp__epmd_srv_register(otp__epmd_srv *srv, const otp__epmd_node *n, uint32_t *creation)
{
    const char *why;
    if (otp__epmd_check_name(n->name, n->name_len, &why) < 0)
        return -EINVAL;
    if (find_node(srv, n->name, n->name_len))
        return -EEXIST;
    node *nn = add_node(srv, n, NULL);
    if (!nn)
        return -ENOMEM;
    *creation = nn->creation;
    return 0;
}

void otp__epmd_srv_unregister(otp__epmd_srv *srv, const char *name, size_t len)
{
    node *n = find_node(srv, (const uint8_t *)name, len);
    if (n && !n->owner)
        remove_node(srv, n);
}

unsigned otp__epmd_srv_conns(const otp__epmd_srv *srv)
{
    return srv->nconns;
}

unsigned otp__epmd_srv_names(const otp__epmd_srv *srv)
{
    return srv->nnodes;
}

uint16_t otp__epmd_srv_port(const otp__epmd_srv *srv)
{
    return srv->cfg.port;
}
