/* agent.c — otp_epmd, a node's presence in EPMD (otp/epmd.h).
 *
 * A service on one shard, a small state machine over that shard's otp__io:
 *
 *   attempt:    listen on the EPMD port. Free -> serve it (embedded EPMD)
 *               and register ourselves in our own table: SERVING.
 *               Taken -> connect to it as a client: CONNECTING.
 *   CONNECTING -> send ALIVE2, read the answer: REGISTERED, with one
 *               receive left pending on the socket as a watch.
 *   REGISTERED: the watch completes (EPMD went away, or wrote to us) ->
 *               attempt again at once: the first node to bind the port
 *               serves, the others connect to it and re-register.
 *   A refused connect (the port is free between a server dying and a new
 *   one listening, or nobody serves and we may not) retries every 100 ms.
 *
 * The creation of the first registration is the node's for life: pids
 * already out carry it, so a takeover's new creation is not used.
 *
 * Threads: everything above runs on the shard. Callers on other threads see
 * only the atomics (creation, serving, registrations), the route table
 * (under its mutex), and the start/stop hand-shakes (otp__waiter).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "epmd_internal.h"
#include "otp/epmd.h"
#include "proto.h"
#include "rt.h"
#include "server.h"
#include "socket.h"

#define RETRY_MS 100
#define TICK_MS  1000

enum { A_IDLE, A_SERVING, A_CONNECTING, A_ASKING, A_REGISTERED, A_WAITING, A_STOPPING };

typedef struct route {
    struct route *next;
    uint16_t port;
    char node[];
} route;

struct otp_epmd {
    otp__service svc; /* first */
    otp_runtime *rt;
    otp__shard *sh;
    char name[OTP__EPMD_MAX_NAME + 1];
    char *addresses;
    uint16_t port, epmd_port;
    bool hidden, client_only;
    /* ---- the shard's */
    int state;
    otp__epmd_srv *srv;
    otp__sock fd;
    otp__io_op cop, sop, rop;
    int ops;
    struct iovec iov;
    uint8_t req[2 + 13 + OTP__EPMD_MAX_NAME];
    size_t req_len;
    uint8_t ans[16];
    size_t have;
    otp__stimer retry, tick;
    uint64_t start_deadline;
    bool srv_open;      /* srv not yet closed-and-freed */
    const char *whynot; /* the last failure, for the start error */
    int last_err;
    /* ---- hand-shakes with the caller's thread */
    otp__waiter *starting; /* set until the first registration or failure */
    int start_rc;
    _Atomic(otp__waiter *) stopping;
    _Atomic bool finished; /* the service is done: nothing on the shard refers to ep */
    /* ---- read from any thread */
    _Atomic uint32_t creation;
    _Atomic bool serving;
    _Atomic uint64_t registrations;
    pthread_mutex_t lock; /* routes */
    route *routes;
};

static void attempt(otp_epmd *ep);

static void start_answer(otp_epmd *ep, int rc)
{
    if (!ep->starting)
        return;
    otp__waiter *w = ep->starting;
    ep->starting = NULL;
    ep->start_rc = rc;
    otp__waiter_signal(w);
}

static void registered(otp_epmd *ep, uint32_t creation)
{
    uint32_t zero = 0;
    atomic_compare_exchange_strong(&ep->creation, &zero, creation);
    atomic_fetch_add(&ep->registrations, 1);
    start_answer(ep, 0);
}

/* Everything the agent started has come back: the service is over. */
static void maybe_done(otp_epmd *ep)
{
    if (ep->state != A_STOPPING || ep->ops || ep->srv_open)
        return;
    otp__stimer_cancel(ep->sh, &ep->retry);
    otp__stimer_cancel(ep->sh, &ep->tick);
    start_answer(ep, -OTP_ESTOPPED);
    otp__service_done(ep->sh, &ep->svc);
    /* Whoever takes the waiter signals it: here, or stop_on_shard if the
     * runtime's stop finished the service before otp_epmd_stop asked. */
    atomic_store(&ep->finished, true);
    otp__waiter *w = atomic_exchange(&ep->stopping, NULL);
    if (w)
        otp__waiter_signal(w);
}

static void retry_later(otp_epmd *ep)
{
    ep->state = A_WAITING;
    if (ep->starting && otp__now_ms() >= ep->start_deadline) {
        start_answer(ep, ep->last_err ? ep->last_err : -OTP_EIO);
    }
    otp__stimer_start(ep->sh, &ep->retry, RETRY_MS);
}

static void close_client(otp_epmd *ep)
{
    if (ep->fd >= 0) {
        otp__io_close(ep->sh->io, ep->fd);
        ep->fd = -1;
    }
}

/* ---- client */

static void on_watch(otp__io_op *op, int64_t res)
{
    otp_epmd *ep = op->data;
    ep->ops--;
    if (ep->state == A_STOPPING) {
        maybe_done(ep);
        return;
    }
    if (ep->state != A_REGISTERED)
        return;
    /* EPMD closed our registration (it died, or was told to forget us). */
    close_client(ep);
    attempt(ep);
}

static void on_answer(otp__io_op *op, int64_t res)
{
    otp_epmd *ep = op->data;
    ep->ops--;
    if (ep->state == A_STOPPING) {
        maybe_done(ep);
        return;
    }
    if (res <= 0) {
        ep->whynot = res == 0 ? "EPMD closed the connection without answering ALIVE2"
                              : "receiving the ALIVE2 answer failed";
        close_client(ep);
        retry_later(ep);
        return;
    }
    ep->have += (size_t)res;
    int result = 0;
    uint32_t creation = 0;
    const char *why = NULL;
    int n = otp__epmd_parse_alive_resp(ep->ans, ep->have, &result, &creation, &why);
    if (n == 0) {
        if (otp__io_recv(ep->sh->io, &ep->rop, ep->fd, ep->ans + ep->have,
                         sizeof ep->ans - ep->have) == 0)
            ep->ops++;
        else
            close_client(ep), retry_later(ep);
        return;
    }
    if (n < 0 || result != 0 || (size_t)n != ep->have) {
        close_client(ep);
        if (n > 0 && result != 0 && ep->starting) {
            ep->whynot = "the name is registered already";
            start_answer(ep, -OTP_EEXIST);
            ep->state = A_IDLE;
            return;
        }
        ep->whynot = n < 0 ? why : result ? "EPMD refused the registration" : "extra bytes";
        retry_later(ep);
        return;
    }
    ep->state = A_REGISTERED;
    registered(ep, creation);
    /* The watch: nothing more comes on this socket until it ends. */
    ep->rop.done = on_watch;
    if (otp__io_recv(ep->sh->io, &ep->rop, ep->fd, ep->ans, sizeof ep->ans) == 0)
        ep->ops++;
    else
        close_client(ep), attempt(ep);
}

static void on_sent(otp__io_op *op, int64_t res)
{
    otp_epmd *ep = op->data;
    ep->ops--;
    if (ep->state == A_STOPPING)
        maybe_done(ep);
    /* a failed send shows up as the answer's failure */
}

static void on_connected(otp__io_op *op, int64_t res)
{
    otp_epmd *ep = op->data;
    ep->ops--;
    if (ep->state == A_STOPPING) {
        maybe_done(ep);
        return;
    }
    if (res < 0) {
        ep->whynot = "cannot connect to EPMD";
        ep->last_err = -OTP_EIO;
        close_client(ep);
        retry_later(ep);
        return;
    }
    ep->state = A_ASKING;
    ep->iov.iov_base = ep->req;
    ep->iov.iov_len = ep->req_len;
    ep->have = 0;
    ep->rop.done = on_answer;
    if (otp__io_send(ep->sh->io, &ep->sop, ep->fd, &ep->iov, 1) == 0)
        ep->ops++;
    if (otp__io_recv(ep->sh->io, &ep->rop, ep->fd, ep->ans, sizeof ep->ans) == 0)
        ep->ops++;
    else
        close_client(ep), retry_later(ep);
}

static void connect_client(otp_epmd *ep)
{
    struct sockaddr_storage ss;
    socklen_t len;
    otp__sockaddr_parse("127.0.0.1", ep->epmd_port, &ss, &len);
    int fd = otp__tcp_socket(AF_INET);
    if (fd < 0) {
        ep->whynot = "no socket";
        retry_later(ep);
        return;
    }
    ep->fd = fd;
    ep->state = A_CONNECTING;
    if (otp__io_connect(ep->sh->io, &ep->cop, fd, (struct sockaddr *)&ss, len, 2000) == 0) {
        ep->ops++;
    } else {
        close_client(ep);
        retry_later(ep);
    }
}

/* ---- server */

static void srv_closed(void *arg)
{
    otp_epmd *ep = arg;
    ep->srv_open = false;
    maybe_done(ep);
}

static void on_tick(otp__shard *sh, otp__stimer *t)
{
    otp_epmd *ep = (otp_epmd *)((char *)t - offsetof(otp_epmd, tick));
    if (ep->state != A_SERVING)
        return;
    otp__epmd_srv_tick(ep->srv, otp__now_ms());
    otp__stimer_start(sh, &ep->tick, TICK_MS);
}

static bool try_serve(otp_epmd *ep)
{
    otp__epmd_srv_config cfg = {
        .port = ep->epmd_port, .addresses = ep->addresses, .on_closed = srv_closed, .arg = ep};
    otp__epmd_srv *srv;
    int r = otp__epmd_srv_start(ep->sh->io, &cfg, &srv);
    if (r < 0)
        return false; /* taken (or not ours to take): be a client */
    otp__epmd_node n = {.port = ep->port,
                        .type = ep->hidden ? 'H' : 'M',
                        .highest = 6,
                        .lowest = 5,
                        .name = (const uint8_t *)ep->name,
                        .name_len = (uint16_t)strlen(ep->name)};
    uint32_t creation;
    ep->srv = srv;
    ep->srv_open = true;
    if (otp__epmd_srv_register(srv, &n, &creation) < 0) {
        otp__epmd_srv_close(srv);
        ep->srv = NULL;
        return false;
    }
    ep->state = A_SERVING;
    atomic_store(&ep->serving, true);
    otp__stimer_start(ep->sh, &ep->tick, TICK_MS);
    registered(ep, creation);
    return true;
}

static void attempt(otp_epmd *ep)
{
    atomic_store(&ep->serving, false);
    if (!ep->client_only && !ep->srv_open && try_serve(ep))
        return;
    connect_client(ep);
}

static void on_retry(otp__shard *sh, otp__stimer *t)
{
    otp_epmd *ep = (otp_epmd *)((char *)t - offsetof(otp_epmd, retry));
    if (ep->state == A_WAITING)
        attempt(ep);
}

/* ---- start and stop, on the shard */

static void stop_here(otp__shard *sh, otp__service *svc)
{
    otp_epmd *ep = (otp_epmd *)svc;
    if (ep->state == A_STOPPING)
        return;
    ep->state = A_STOPPING;
    atomic_store(&ep->serving, false);
    otp__stimer_cancel(sh, &ep->retry);
    otp__stimer_cancel(sh, &ep->tick);
    close_client(ep);
    if (ep->srv_open && ep->srv) {
        otp__epmd_srv *srv = ep->srv;
        ep->srv = NULL;
        otp__epmd_srv_close(srv); /* srv_closed follows */
        return;
    }
    maybe_done(ep);
}

static void start_on_shard(otp__shard *sh, void *arg)
{
    otp_epmd *ep = arg;
    ep->sh = sh;
    otp__service_add(sh, &ep->svc);
    if (sh->stopping) {
        stop_here(sh, &ep->svc);
        return;
    }
    ep->start_deadline = otp__now_ms() + ep->start_deadline;
    attempt(ep);
}

static void stop_on_shard(otp__shard *sh, void *arg)
{
    otp_epmd *ep = arg;
    if (ep->state == A_STOPPING) {
        /* the runtime's stop got here first; maybe_done signals when over */
        if (atomic_load(&ep->finished)) {
            otp__waiter *w = atomic_exchange(&ep->stopping, NULL);
            if (w)
                otp__waiter_signal(w);
        }
        return;
    }
    stop_here(sh, &ep->svc);
}

static void free_ep(otp_epmd *ep)
{
    while (ep->routes) {
        route *r = ep->routes;
        ep->routes = r->next;
        free(r);
    }
    pthread_mutex_destroy(&ep->lock);
    free(ep->addresses);
    free(ep);
}

int otp_epmd_start(otp_runtime *rt, const otp_epmd_config *cfg, otp_epmd **out, otp_error *err)
{
    if (!rt || !cfg || !out || !cfg->name || !cfg->port)
        return otp__epmd_fail(err, OTP_EBADARG, "runtime, name, port and out are required");
    if (cfg->shard >= rt->nshards)
        return otp__epmd_fail(err, OTP_EBADARG, "shard %u out of range", cfg->shard);
    const char *why = NULL;
    size_t nl = strlen(cfg->name);
    if (nl > OTP__EPMD_MAX_NAME || otp__epmd_check_name((const uint8_t *)cfg->name, nl, &why) < 0)
        return otp__epmd_fail(err, OTP_EBADARG, "node name: %s", why ? why : "too long");
    otp__shard *here = otp__this_shard();
    if (here && here->rt == rt)
        return otp__epmd_fail(err, OTP_ECONTEXT, "otp_epmd_start blocks: call it from a thread");
    if (atomic_load(&rt->state) != OTP__RT_RUNNING)
        return otp__epmd_fail(err, OTP_ESTOPPED, "the runtime is not running");
    otp_epmd *ep = calloc(1, sizeof *ep);
    if (!ep)
        return otp__epmd_fail(err, OTP_ENOMEM, "no memory");
    memcpy(ep->name, cfg->name, nl + 1);
    if (cfg->addresses && !(ep->addresses = strdup(cfg->addresses))) {
        free(ep);
        return otp__epmd_fail(err, OTP_ENOMEM, "no memory");
    }
    ep->rt = rt;
    ep->port = cfg->port;
    ep->epmd_port = cfg->epmd_port ? cfg->epmd_port : otp_epmd_default_port();
    ep->hidden = cfg->hidden;
    ep->client_only = cfg->client_only;
    ep->fd = -1;
    ep->svc.stop = stop_here;
    ep->retry.fn = on_retry;
    ep->tick.fn = on_tick;
    otp__timer_init(&ep->retry.kt.t);
    otp__timer_init(&ep->tick.kt.t);
    ep->cop.done = on_connected;
    ep->sop.done = on_sent;
    ep->rop.done = on_answer;
    ep->cop.data = ep->sop.data = ep->rop.data = ep;
    pthread_mutex_init(&ep->lock, NULL);
    otp__epmd_node n = {.port = cfg->port,
                        .type = cfg->hidden ? 'H' : 'M',
                        .highest = 6,
                        .lowest = 5,
                        .name = (const uint8_t *)ep->name,
                        .name_len = (uint16_t)nl};
    ep->req_len = (size_t)otp__epmd_build_alive2(ep->req, sizeof ep->req, &n);
    /* relative until the shard makes it absolute on its clock */
    ep->start_deadline = cfg->start_timeout_ms ? cfg->start_timeout_ms : 10000;
    otp__waiter w;
    otp__waiter_init(&w);
    ep->starting = &w;
    if (otp__shard_post(rt, cfg->shard, start_on_shard, ep) < 0) {
        otp__waiter_destroy(&w);
        free_ep(ep);
        return otp__epmd_fail(err, OTP_ENOMEM, "no memory");
    }
    otp__waiter_wait(&w);
    otp__waiter_destroy(&w);
    int rc = ep->start_rc;
    if (rc < 0) {
        const char *wn = ep->whynot;
        otp_epmd_stop(ep);
        if (rc == -OTP_EEXIST)
            return otp__epmd_fail(err, OTP_EEXIST, "the name %s is registered with EPMD already",
                                  cfg->name);
        return otp__epmd_fail(err, -rc, "registering %s with EPMD at port %u: %s", cfg->name,
                              cfg->epmd_port ? cfg->epmd_port : otp_epmd_default_port(),
                              wn ? wn : otp_strerror(rc));
    }
    *out = ep;
    return 0;
}

void otp_epmd_stop(otp_epmd *ep)
{
    if (!ep)
        return;
    if (!atomic_load(&ep->finished)) {
        otp__waiter w;
        otp__waiter_init(&w);
        atomic_store(&ep->stopping, &w);
        if (otp__shard_post(ep->rt, ep->sh->index, stop_on_shard, ep) == 0)
            otp__waiter_wait(&w);
        otp__waiter_destroy(&w);
    }
    free_ep(ep);
}

uint32_t otp_epmd_creation(const otp_epmd *ep)
{
    return atomic_load(&ep->creation);
}

bool otp_epmd_serving(const otp_epmd *ep)
{
    return atomic_load(&ep->serving);
}

uint64_t otp_epmd_registrations(const otp_epmd *ep)
{
    return atomic_load(&ep->registrations);
}

/* ---- static routes and lookup */

int otp_epmd_add_static_route(otp_epmd *ep, const char *node, uint16_t port)
{
    if (!ep || !node || !*node || !port)
        return -OTP_EBADARG;
    size_t len = strlen(node);
    route *r = malloc(sizeof *r + len + 1);
    if (!r)
        return -OTP_ENOMEM;
    memcpy(r->node, node, len + 1);
    r->port = port;
    pthread_mutex_lock(&ep->lock);
    for (route **pp = &ep->routes; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->node, node) == 0) {
            route *old = *pp;
            *pp = old->next;
            free(old);
            break;
        }
    }
    r->next = ep->routes;
    ep->routes = r;
    pthread_mutex_unlock(&ep->lock);
    return 0;
}

int otp_epmd_remove_static_route(otp_epmd *ep, const char *node)
{
    if (!ep || !node)
        return -OTP_EBADARG;
    int rc = -OTP_ENOTFOUND;
    pthread_mutex_lock(&ep->lock);
    for (route **pp = &ep->routes; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->node, node) == 0) {
            route *old = *pp;
            *pp = old->next;
            free(old);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&ep->lock);
    return rc;
}

static int route_port(otp_epmd *ep, const char *key, size_t len)
{
    int port = -1;
    pthread_mutex_lock(&ep->lock);
    for (route *r = ep->routes; r; r = r->next)
        if (strlen(r->node) == len && memcmp(r->node, key, len) == 0) {
            port = r->port;
            break;
        }
    pthread_mutex_unlock(&ep->lock);
    return port;
}

int otp_epmd_lookup(otp_epmd *ep, const char *node, unsigned timeout_ms, otp_epmd_node_info *out,
                    otp_error *err)
{
    if (!ep || !node || !out)
        return otp__epmd_fail(err, OTP_EBADARG, "ep, node and out are required");
    const char *at = strchr(node, '@');
    size_t alen = at ? (size_t)(at - node) : strlen(node);
    if (alen == 0 || alen >= sizeof out->name)
        return otp__epmd_fail(err, OTP_EBADARG, "bad node name %s", node);
    int port = route_port(ep, node, strlen(node));
    if (port < 0 && at)
        port = route_port(ep, node, alen);
    if (port > 0) {
        memset(out, 0, sizeof *out);
        out->port = (uint16_t)port;
        out->type = 'M';
        out->highest = 6;
        out->lowest = 5;
        memcpy(out->name, node, alen);
        return 0;
    }
    char alive[OTP__EPMD_MAX_NAME + 1];
    memcpy(alive, node, alen);
    alive[alen] = 0;
    return otp_epmd_port_please(at ? at + 1 : NULL, ep->epmd_port, alive, timeout_ms, out, err);
}
