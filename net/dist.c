/* dist.c — the distribution layer, first part: otp_node (node.h).
 *
 * Shape (DESIGN.md, "Network and distribution"): one TCP connection per
 * remote node, owned by the node's home shard, a service there driving its
 * sockets through the shard's otp__io. Processes on any shard send through
 * it: they encode the frame on their own shard (otp__dist_send) and pass it
 * to the home shard as a job behind whatever they sent before, so the
 * order between a pair of processes holds; the home shard queues frames
 * per connection and writes them in batches (one writev of up to BATCH
 * frames). Reads happen on the home shard, which decodes each frame and
 * routes the message to its process's shard.
 *
 * Set-up: an outgoing connection starts on a short-lived thread (EPMD
 * lookup and connect block, and a shard never blocks), which hands the
 * connected socket to the home shard; the handshake (dist_handshake.c)
 * then runs on the shard, as it does for accepted connections.
 *
 * Framing: frames are encoded pass-through (112, then the control term and
 * the payload, each with its 131); toward a peer that negotiated header
 * mode (DIST_HDR_ATOM_CACHE or FRAGMENTS, which we advertise) the owner
 * rewrites them in place as a header with no atom references. Reading
 * both modes, the atom cache and fragments: dist_frame.c. Ticks: every
 * net_ticktime/4 a connection that wrote nothing sends an empty frame; one
 * that read nothing for net_ticktime is down.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"
#include "dist_handshake.h"
#include "epmd_internal.h"
#include "otp/etf.h"
#include "otp/gen_server.h"
#include "otp/node.h"
#include "rt.h"
#include "socket.h"

#define BATCH          64           /* frames per write */
#define MAX_FRAME      (256u << 20) /* a bigger length is a broken peer */
#define RBUF_START     (64u << 10)
#define PRE_MAX        (64u << 20) /* bytes queued for a node still connecting */
#define FRAG_DATA      65536u      /* term bytes per fragment, as OTP sends them */
#define QUEUED_BUCKETS 64

enum { C_CONNECTING, C_HANDSHAKE, C_UP, C_CLOSED };

/* Bytes to write: a frame, or handshake bytes. */
typedef struct blob {
    struct blob *next;
    size_t len;
    uint8_t *data; /* malloc'd (an otp_buf's) */
    /* A frame made by send_ctl, pass-through form: its control term's
     * length, so header mode can rewrite it in place (to_header_mode);
     * 0 for handshake bytes and ticks. */
    size_t ctl_len;
    bool payload;
    bool frame; /* a frame of send_ctl's (not handshake bytes or a tick) */
    bool alias; /* an ALIAS_SEND: only for a peer that negotiated ALIAS */
    /* The process the frame is from, OTP_NONE if not known. While a big
     * frame goes out in fragments, frames of other known senders may pass
     * it (they do not share an ordered pair with it); others wait. */
    otp_term sender;
    size_t frag_off;         /* fragments: term bytes written so far */
    uint64_t seq;            /* fragments: the sequence's id */
    _Atomic int64_t *queued; /* the count of bytes queued this frame is in, or NULL */
    bool small;              /* a BLOB_BLOCK from the cache; data may be inline */
} blob;

/* Small frames (a call, a reply, a monitor) are encoded straight into a
 * block that holds their blob too, and blocks are kept per thread: with
 * many calls in flight, a malloc and a realloc for the bytes plus a malloc
 * for the blob, and their frees, missed glibc's per-thread cache and were
 * an eighth of a busy node's time. A block freed on another thread joins
 * that thread's cache (blocks travel from senders to the home shard). */
#define BLOB_BLOCK 512u
#if defined(__SANITIZE_ADDRESS__)
#define BLOB_CACHE_MAX 0u /* let ASan see every use after free */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BLOB_CACHE_MAX 0u
#endif
#endif
#ifndef BLOB_CACHE_MAX
#define BLOB_CACHE_MAX 256u
#endif

static _Thread_local struct {
    blob *head;
    unsigned n;
    bool registered; /* blob_cache_key set: the thread's end drains it */
} blob_cache;
static pthread_key_t blob_cache_key;
static pthread_once_t blob_cache_once = PTHREAD_ONCE_INIT;

/* A thread that ends frees what its cache holds. */
static void blob_cache_drain(void *unused)
{
    (void)unused;
    while (blob_cache.head) {
        blob *b = blob_cache.head;
        blob_cache.head = b->next;
        free(b);
    }
    blob_cache.n = 0;
}

static void blob_cache_key_make(void)
{
    (void)pthread_key_create(&blob_cache_key, blob_cache_drain);
}

static uint8_t *blob_inline(blob *b)
{
    return (uint8_t *)(b + 1);
}

static blob *blob_small_get(void)
{
    blob *b = blob_cache.head;
    if (b) {
        blob_cache.head = b->next;
        blob_cache.n--;
    } else if (!(b = malloc(BLOB_BLOCK))) {
        return NULL;
    }
    b->small = true;
    return b;
}

static void blob_small_put(blob *b)
{
    if (blob_cache.n + 1 > BLOB_CACHE_MAX) {
        free(b);
        return;
    }
    if (!blob_cache.registered) {
        /* the first block this thread keeps: have it freed at the thread's end */
        pthread_once(&blob_cache_once, blob_cache_key_make);
        blob_cache.registered = pthread_setspecific(blob_cache_key, &blob_cache) == 0;
    }
    b->next = blob_cache.head;
    blob_cache.head = b;
    blob_cache.n++;
}

/* Pass-through [112][131 Ctl][131 Payload] to header mode with no atom
 * references [131][68][0][Ctl][Payload], in place: the same length with a
 * payload, one byte more without (send_ctl leaves room for it). */
static void to_header_mode(blob *b)
{
    if (!b->ctl_len)
        return;
    uint8_t *body = b->data + 4;
    memmove(body + 3, body + 2, b->ctl_len);
    body[0] = 131;
    body[1] = 68;
    body[2] = 0;
    if (!b->payload) {
        b->len++;
        uint32_t fl = (uint32_t)(b->len - 4);
        b->data[0] = (uint8_t)(fl >> 24);
        b->data[1] = (uint8_t)(fl >> 16);
        b->data[2] = (uint8_t)(fl >> 8);
        b->data[3] = (uint8_t)fl;
    }
    b->ctl_len = 0; /* done */
}

typedef struct conn conn;
struct conn {
    otp_node *n;
    conn *next;
    otp_term peer; /* node atom; 0 for an accepted one until its handshake names it */
    otp__sock fd;
    int state;
    bool initiator;
    bool close_after_write; /* a last handshake status is on its way */
    otp__hs *hs;
    otp__io_op rop, sop;
    int ops; /* io ops pending, plus 1 while a connector thread runs */
    uint8_t *rbuf;
    size_t rlen, rcap;
    blob *pre, *pre_tail; /* messages waiting for the connection to come up */
    size_t pre_bytes;
    blob *oq, *oq_tail; /* bytes to write */
    blob *sending;      /* the batch being written */
    struct iovec iov[BATCH];
    uint8_t fhdr[BATCH / 2][23]; /* the batch's fragment headers */
    uint64_t next_seq;           /* fragment sequence ids */
    bool writing;
    bool flush; /* frames queued this turn: kick the writer at its end */
    uint64_t flags;
    bool header_mode; /* DIST_HDR_ATOM_CACHE or FRAGMENTS negotiated */
    uint64_t last_rx, last_tx, deadline;
    otp__dist_rx rx; /* atom cache and fragments of what we read */
};

struct otp_node {
    otp__service svc; /* first */
    otp_runtime *rt;
    otp__shard *sh;
    unsigned home;
    char name[OTP__HS_MAX_NAME + 1];
    otp_term node;
    uint32_t creation;
    char cookie[1024];
    size_t cookie_len;
    uint64_t flags;
    uint64_t tick_ms;
    unsigned setup_ms;
    uint16_t port;
    otp__sock lfd;
    otp__io_op aop;
    int ops; /* the accept */
    conn *conns;
    unsigned live_conns; /* allocated, closed or not */
    otp__stimer tick;
    bool stopping;
    otp_epmd *epmd;
    otp_term net_kernel, rex, global, pg;
    otp_term *scopes; /* pg scopes started by otp_pg_start_scope, under lock */
    size_t nscopes;
    /* Bytes encoded toward each peer and not yet written, by a hash of the
     * peer's atom (peers that share a bucket are held back together:
     * conservative, never wrong). Senders on any shard read them. */
    _Atomic int64_t queued[QUEUED_BUCKETS];
    int64_t busy_limit;
    _Atomic(otp__waiter *) stop_waiter;
    _Atomic bool finished;
    pthread_mutex_t lock; /* `up`, read by otp_node_connected */
    otp_term *up;
    bool *uphidden; /* up[i] is a hidden node */
    size_t nup, capup;
    /* Connector threads, joined by otp_node_stop (a thread's last act, its
     * wake of the home shard, touches the shard's io: the runtime must not
     * be freed under it). Home shard only, until otp_node_stop. */
    pthread_t *threads;
    size_t nthreads, capthreads;
    struct rpc_fn *fns; /* under lock */
    /* monitor_node registrations: home shard only */
    struct nodemon {
        otp_term pid, node;
    } * nodemons;
    size_t nnodemons, capnodemons;
    /* monitor_nodes subscribers, one entry per `true`: home shard only */
    otp_term *nodesubs;
    size_t nnodesubs, capnodesubs;
};

static otp_term a_is_auth, a_yes, a_net_kernel, a_empty;

static _Atomic int64_t *queued_of(otp_node *n, otp_term peer)
{
    return &n->queued[(peer >> 3) % QUEUED_BUCKETS];
}

static void dlog(const otp_node *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void dlog(const otp_node *n, const char *fmt, ...)
{
    char line[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "libotp: node %s: %s\n", n->name, line);
}

static void blob_free_list(blob *b)
{
    while (b) {
        blob *next = b->next;
        if (b->queued) /* written or dropped: no longer holds its sender back */
            atomic_fetch_sub_explicit(b->queued, (int64_t)b->len, memory_order_relaxed);
        if (b->small) {
            if (b->data != blob_inline(b))
                free(b->data);
            blob_small_put(b);
        } else {
            free(b->data);
            free(b);
        }
        b = next;
    }
}

/* ------------------------------------------------------- connected list */

static void up_add(otp_node *n, otp_term peer, bool hidden)
{
    pthread_mutex_lock(&n->lock);
    if (n->nup == n->capup) {
        size_t cap = n->capup ? n->capup * 2 : 8;
        otp_term *p = realloc(n->up, cap * sizeof *p);
        if (p)
            n->up = p;
        bool *h = p ? realloc(n->uphidden, cap * sizeof *h) : NULL;
        if (h) {
            n->uphidden = h;
            n->capup = cap;
        }
    }
    if (n->nup < n->capup) {
        n->uphidden[n->nup] = hidden;
        n->up[n->nup++] = peer;
    }
    pthread_mutex_unlock(&n->lock);
}

static void up_del(otp_node *n, otp_term peer)
{
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < n->nup; i++)
        if (n->up[i] == peer) {
            n->nup--;
            n->up[i] = n->up[n->nup];
            n->uphidden[i] = n->uphidden[n->nup];
            break;
        }
    pthread_mutex_unlock(&n->lock);
}

size_t otp__node_up(otp_node *n, otp_term *nodes, size_t max, int which)
{
    pthread_mutex_lock(&n->lock);
    size_t k = 0;
    for (size_t i = 0; i < n->nup; i++) {
        if ((which == 1 && n->uphidden[i]) || (which == 2 && !n->uphidden[i]))
            continue;
        if (k < max)
            nodes[k] = n->up[i];
        k++;
    }
    pthread_mutex_unlock(&n->lock);
    return k;
}

size_t otp_node_connected(otp_node *n, otp_term *nodes, size_t max)
{
    pthread_mutex_lock(&n->lock);
    size_t k = n->nup;
    for (size_t i = 0; i < k && i < max; i++)
        nodes[i] = n->up[i];
    pthread_mutex_unlock(&n->lock);
    return k;
}

/* ---------------------------------------------------------- connections */

static void maybe_finished(otp_node *n);
static void arm_recv(conn *c);
static void on_recv(otp__io_op *op, int64_t res);
static void on_sent(otp__io_op *op, int64_t res);
static const char *spawn_request(conn *c, otp_term ctl, otp_term args);
static int send_ctl(otp_node *n, otp__shard *sh, otp_term peer, otp_term ctl, otp_term msg);
static int send_ctl_from(otp_node *n, otp__shard *sh, otp_term peer, otp_term ctl, otp_term msg,
                         otp_term sender);
static int send_frame(otp_node *n, otp__shard *sh, otp_term peer, otp_term ctl, otp_term msg,
                      otp_term sender, bool alias);
static void kick_writer(conn *c);

static conn *find_conn(otp_node *n, otp_term peer)
{
    for (conn *c = n->conns; c; c = c->next)
        if (c->peer == peer && c->state != C_CLOSED)
            return c;
    return NULL;
}

static void unlink_conn(otp_node *n, conn *c)
{
    for (conn **pp = &n->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

static void conn_free(conn *c)
{
    otp_node *n = c->n;
    blob_free_list(c->pre);
    blob_free_list(c->oq);
    blob_free_list(c->sending);
    free(c->hs);
    free(c->rbuf);
    otp__dist_rx_free(&c->rx);
    free(c);
    n->live_conns--;
    maybe_finished(n);
}

typedef struct node_down_job {
    otp_term node;
} node_down_job;

static void node_down_here(otp__shard *sh, void *arg)
{
    node_down_job *j = arg;
    otp__proc_node_down(sh, j->node);
    free(j);
}

/* {What, Node} (nodeup, nodedown) to pid, from the home shard sh: the
 * message of monitor_node and monitor_nodes. Lost if out of memory, as a
 * message to a dead process would be. */
static void node_msg(otp__shard *sh, otp_term pid, const char *what, otp_term node)
{
    otp__sig *s = otp__sig_new(OTP__SIG_MSG, pid, OTP_NONE,
                               OTP_TUPLE(sh->scratch, otp_atom(what), node), OTP_NONE, OTP_NONE);
    otp_arena_reset(sh->scratch);
    if (s)
        otp__route(sh, s);
}

/* net_kernel:monitor_nodes: {nodeup|nodedown, Node} to every subscriber.
 * Like Erlang's default (no {node_type, all}), hidden peers are not
 * reported. */
static void node_event(otp_node *n, conn *c, const char *what)
{
    if (!(c->flags & OTP__DF_PUBLISHED))
        return;
    for (size_t i = 0; i < n->nnodesubs; i++) {
        node_msg(n->sh, n->nodesubs[i], what, c->peer);
    }
}

static void conn_close(conn *c, const char *why)
{
    otp_node *n = c->n;
    if (c->state == C_CLOSED)
        return;
    if (why)
        dlog(n, "connection to %s closed: %s", c->peer ? otp_atom_cstr(c->peer) : "(handshake)",
             why);
    /* A connection that gives way to a newer one to the same node (a
     * simultaneous connect) is no nodedown. */
    bool replaced = false;
    for (conn *o = n->conns; o && c->peer; o = o->next)
        replaced |= o != c && o->peer == c->peer && o->state != C_CLOSED;
    if (c->peer && !replaced) {
        /* monitor_node: {nodedown, Node} to each process that asked, once */
        for (size_t i = 0; i < n->nnodemons;) {
            if (n->nodemons[i].node != c->peer) {
                i++;
                continue;
            }
            node_msg(n->sh, n->nodemons[i].pid, "nodedown", c->peer);
            n->nodemons[i] = n->nodemons[--n->nnodemons];
        }
    }
    if (c->state == C_UP) {
        up_del(n, c->peer);
        node_event(n, c, "nodedown");
    }
    if (c->state == C_UP || (c->peer && !replaced)) {
        /* Every shard breaks its links to the node and fires its monitors
         * of it (noconnection): also when it never came up, for what was
         * linked or monitored while it was being set up, as in Erlang. */
        for (unsigned i = 0; i < n->rt->nshards; i++) {
            node_down_job *j = malloc(sizeof *j);
            if (!j)
                continue;
            j->node = c->peer;
            if (otp__shard_post(n->rt, i, node_down_here, j) < 0)
                free(j);
        }
    }
    c->state = C_CLOSED;
    unlink_conn(n, c);
    if (c->fd >= 0) {
        otp__io_close(n->sh->io, c->fd);
        c->fd = -1;
    }
    if (c->ops == 0)
        conn_free(c);
}

/* One op of c is back; true if c is closed (maybe freed): hands off. */
static bool op_back(conn *c)
{
    c->ops--;
    if (c->state != C_CLOSED)
        return false;
    if (c->ops == 0)
        conn_free(c);
    return true;
}

static conn *conn_new(otp_node *n, otp_term peer, bool initiator)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->n = n;
    c->peer = peer;
    c->fd = -1;
    otp__dist_rx_init(&c->rx);
    c->initiator = initiator;
    c->state = initiator ? C_CONNECTING : C_HANDSHAKE;
    c->rop.data = c->sop.data = c;
    c->rop.done = on_recv;
    c->sop.done = on_sent;
    c->deadline = otp__now_ms() + n->setup_ms;
    c->next = n->conns;
    n->conns = c;
    n->live_conns++;
    return c;
}

static int queue_bytes(conn *c, const uint8_t *p, size_t len)
{
    blob *b = malloc(sizeof *b);
    uint8_t *d = malloc(len ? len : 1);
    if (!b || !d) {
        free(b);
        free(d);
        return -1;
    }
    memcpy(d, p, len);
    b->data = d;
    b->len = len;
    b->next = NULL;
    b->ctl_len = 0;
    b->payload = false;
    b->frame = false;
    b->alias = false;
    b->queued = NULL;
    b->sender = OTP_NONE;
    b->frag_off = 0;
    b->small = false;
    if (c->oq_tail)
        c->oq_tail->next = b;
    else
        c->oq = b;
    c->oq_tail = b;
    kick_writer(c);
    return 0;
}

static void on_sent(otp__io_op *op, int64_t res)
{
    conn *c = op->data;
    blob *done = c->sending;
    c->sending = NULL;
    c->writing = false;
    blob_free_list(done);
    if (op_back(c))
        return;
    if (res < 0) {
        conn_close(c, strerror((int)-res));
        return;
    }
    c->last_tx = otp__now_ms();
    if (c->close_after_write && !c->oq) {
        conn_close(c, NULL);
        return;
    }
    kick_writer(c);
}

/* A frame big enough to go in fragments (header mode, FRAGMENTS
 * negotiated): [len][131 68 0][terms...] with more than FRAG_DATA bytes of
 * terms. */
static bool fragmentable(const conn *c, const blob *b)
{
    return b->frame && c->header_mode && (c->flags & OTP__DF_FRAGMENTS) && b->ctl_len == 0 &&
           b->len > 7 + FRAG_DATA && b->data[4] == 131 && b->data[5] == 68 && b->data[6] == 0;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

/* The next fragment of b into two iovecs (its header in hdr): the start
 * frame [131 69 Seq FragId 0] first, then [131 70 Seq FragId]; FragId
 * counts down to 1. True once the last one is out. */
static bool next_fragment(conn *c, blob *b, uint8_t *hdr, struct iovec *iov)
{
    size_t total = b->len - 7, off = b->frag_off;
    size_t chunk = total - off < FRAG_DATA ? total - off : FRAG_DATA;
    uint64_t frags = (total + FRAG_DATA - 1) / FRAG_DATA, id = frags - off / FRAG_DATA;
    bool first = off == 0;
    if (first)
        b->seq = ++c->next_seq;
    size_t hl = first ? 23 : 22;
    uint32_t fl = (uint32_t)(hl - 4 + chunk);
    hdr[0] = (uint8_t)(fl >> 24);
    hdr[1] = (uint8_t)(fl >> 16);
    hdr[2] = (uint8_t)(fl >> 8);
    hdr[3] = (uint8_t)fl;
    hdr[4] = 131;
    hdr[5] = first ? 69 : 70;
    put_be64(hdr + 6, b->seq);
    put_be64(hdr + 14, id);
    if (first)
        hdr[22] = 0; /* no atom cache references */
    iov[0] = (struct iovec){hdr, hl};
    iov[1] = (struct iovec){b->data + 7 + off, chunk};
    b->frag_off = off + chunk;
    return b->frag_off == total;
}

/* Takes *link (owned by prev, NULL for the queue's head) out of the queue
 * and onto the list being written. */
static void take(conn *c, blob **link, blob *prev, blob ***sent)
{
    blob *b = *link;
    *link = b->next;
    if (c->oq_tail == b)
        c->oq_tail = prev;
    b->next = NULL;
    **sent = b;
    *sent = &b->next;
}

static void kick_writer(conn *c)
{
    if (c->writing || !c->oq || c->fd < 0 || c->state == C_CLOSED)
        return;
    int k = 0, f = 0;
    blob *sending = NULL, **sent = &sending;
    blob **pp = &c->oq, *owner = NULL;         /* the next candidate and its owner */
    blob **big_link = NULL, *big_owner = NULL; /* a frame going in fragments */
    while (k + 2 <= BATCH) {
        blob *big = big_link ? *big_link : NULL, *b = *pp;
        if (big &&
            !(b && b->sender != OTP_NONE && big->sender != OTP_NONE && b->sender != big->sender)) {
            /* nothing may pass it: its next fragment */
            if (next_fragment(c, big, c->fhdr[f++], &c->iov[k])) {
                take(c, big_link, big_owner, &sent);
                if (pp == &big->next) {
                    pp = big_link;
                    owner = big_owner;
                }
                big_link = NULL;
            }
            k += 2;
            continue;
        }
        if (!b)
            break;
        if (!big && fragmentable(c, b)) {
            big_link = pp;
            big_owner = owner;
            next_fragment(c, b, c->fhdr[f++], &c->iov[k]);
            k += 2;
            pp = &b->next;
            owner = b;
            continue;
        }
        c->iov[k++] = (struct iovec){b->data, b->len};
        take(c, pp, owner, &sent);
    }
    c->sending = sending;
    if (otp__io_send(c->n->sh->io, &c->sop, c->fd, c->iov, k) != 0) {
        conn_close(c, "cannot queue a send");
        return;
    }
    c->ops++;
    c->writing = true;
}

static void flush_hs(conn *c)
{
    size_t n;
    const uint8_t *o = otp__hs_out(c->hs, &n);
    if (n && queue_bytes(c, o, n) < 0)
        conn_close(c, "out of memory");
    otp__hs_sent(c->hs);
}

static void go_up(conn *c)
{
    otp_node *n = c->n;
    c->flags = c->hs->flags;
    if (!c->peer)
        c->peer = otp_atom(c->hs->peer_name);
    /* A connection that lost a simultaneous connect leaves its waiting
     * messages to this one, in order. */
    for (conn *o = n->conns, *next; o; o = next) {
        next = o->next;
        if (o == c || o->peer != c->peer || o->state == C_CLOSED)
            continue;
        if (o->pre) {
            if (c->pre_tail)
                c->pre_tail->next = o->pre;
            else
                c->pre = o->pre;
            c->pre_tail = o->pre_tail;
            o->pre = o->pre_tail = NULL;
        }
        conn_close(o, "replaced by a newer connection");
    }
    c->header_mode = c->flags & (OTP__DF_DIST_HDR_ATOM_CACHE | OTP__DF_FRAGMENTS);
    free(c->hs);
    c->hs = NULL;
    c->state = C_UP;
    c->last_rx = c->last_tx = otp__now_ms();
    up_add(n, c->peer, !(c->flags & OTP__DF_PUBLISHED));
    node_event(n, c, "nodeup");
    if (!(c->flags & OTP__DF_ALIAS)) { /* sends to aliases it cannot take */
        blob **pp = &c->pre, *last = NULL;
        while (*pp) {
            blob *b = *pp;
            if (!b->alias) {
                last = b;
                pp = &b->next;
                continue;
            }
            *pp = b->next;
            b->next = NULL;
            blob_free_list(b);
        }
        c->pre_tail = last;
    }
    if (c->pre) {
        if (c->header_mode)
            for (blob *b = c->pre; b; b = b->next)
                to_header_mode(b);
        if (c->oq_tail)
            c->oq_tail->next = c->pre;
        else
            c->oq = c->pre;
        c->oq_tail = c->pre_tail;
        c->pre = c->pre_tail = NULL;
        c->pre_bytes = 0;
    }
    kick_writer(c);
}

/* Delivers msg to a local pid or registered name; a dead or unknown
 * destination drops it, as Erlang does. */
static void deliver(otp_node *n, otp_term dest, otp_term msg)
{
    otp_term to = otp_is_atom(dest) ? otp_whereis(n->rt, dest) : otp__local_pid(n->rt, dest);
    if (!to || to == OTP_NONE)
        return;
    /* {Ref, Reply} with one of our refs answers a call a process of ours
     * made to this node: as a REPLY the waiting call finds it (anyone else
     * gets it as the ordinary message it also is). */
    uint64_t id = 0;
    if (otp_is_tuple(msg) && otp_tuple_arity(msg) == 2 && otp_is_ref(otp_tuple_get(msg, 0)))
        id = otp__ref_id(n->rt, otp_tuple_get(msg, 0));
    otp__sig *s =
        otp__sig_new(id ? OTP__SIG_REPLY : OTP__SIG_MSG, to, OTP_NONE, msg, OTP_NONE, OTP_NONE);
    if (!s)
        return;
    s->ptr = (void *)(uintptr_t)id;
    otp__route(n->sh, s);
}

/* A link, exit or monitor signal from a process of the peer node to one
 * of ours (see OTP__SIGF_REMOTE). */
static void route_remote(otp_node *n, unsigned kind, otp_term to, uint8_t flags, otp_term a,
                         otp_term b, otp_term c)
{
    otp__sig *s = otp__sig_new(kind, to, OTP_NONE, a, b, c);
    if (!s)
        return;
    s->flags = flags | OTP__SIGF_REMOTE;
    otp__route(n->sh, s);
}

/* The local pid a control message names, or 0. */
static otp_term local_of(otp_node *n, otp_term t)
{
    if (otp_is_atom(t)) {
        otp_term p = otp_whereis(n->rt, t);
        return p == OTP_NONE ? 0 : p;
    }
    return otp_is_pid(t) ? otp__local_pid(n->rt, t) : 0;
}

/* Links, exits and monitors from the peer (dist-protocol.md §4, §4.1). */
static const char *link_or_monitor(conn *c, int64_t op, otp_term ctl, otp_term payload)
{
    otp_node *n = c->n;
    size_t ar = otp_tuple_arity(ctl);
    otp_arena *ta = NULL;
    switch (op) {
    case OTP__CTL_LINK: /* {1, From, To} */
    case OTP__CTL_UNLINK: {
        otp_term from = otp_tuple_get(ctl, 1), to = local_of(n, otp_tuple_get(ctl, 2));
        if (ar != 3 || !otp_is_pid(from))
            return "LINK/UNLINK of the wrong shape";
        if (to)
            route_remote(n, op == OTP__CTL_LINK ? OTP__SIG_LINK : OTP__SIG_UNLINK, to, 0, OTP_NONE,
                         from, OTP_NONE);
        else if (op == OTP__CTL_LINK && (ta = otp_arena_new())) /* a dead pid: noproc back */
            send_ctl(n, n->sh, c->peer,
                     OTP_TUPLE(ta, otp_small(OTP__CTL_EXIT), otp_tuple_get(ctl, 2), from,
                               otp_atom("noproc")),
                     OTP_NONE);
        break;
    }
    case OTP__CTL_UNLINK_ID: { /* {35, Id, From, To}: unlink, then the ack */
        otp_term from = otp_tuple_get(ctl, 2), to = local_of(n, otp_tuple_get(ctl, 3));
        if (ar != 4 || !otp_is_pid(from))
            return "UNLINK_ID of the wrong shape";
        if (to)
            route_remote(n, OTP__SIG_UNLINK, to, 0, OTP_NONE, from, OTP_NONE);
        if ((ta = otp_arena_new()))
            send_ctl(n, n->sh, c->peer,
                     OTP_TUPLE(ta, otp_small(OTP__CTL_UNLINK_ID_ACK), otp_tuple_get(ctl, 1),
                               otp_tuple_get(ctl, 3), from),
                     OTP_NONE);
        break;
    }
    case OTP__CTL_UNLINK_ID_ACK:
        break;                   /* our unlink is done: nothing was kept waiting for it */
    case OTP__CTL_EXIT:          /* {3, From, To, Reason} */
    case OTP__CTL_EXIT2:         /* {8, From, To, Reason} */
    case OTP__CTL_PAYLOAD_EXIT:  /* {24, From, To} + Reason */
    case OTP__CTL_PAYLOAD_EXIT2: /* {26, From, To} + Reason */
    case OTP__CTL_EXIT_TT:
    case OTP__CTL_EXIT2_TT:
    case OTP__CTL_PAYLOAD_EXIT_TT:
    case OTP__CTL_PAYLOAD_EXIT2_TT: {
        bool payload_form = op >= OTP__CTL_PAYLOAD_EXIT;
        bool link = op == OTP__CTL_EXIT || op == OTP__CTL_EXIT_TT || op == OTP__CTL_PAYLOAD_EXIT ||
                    op == OTP__CTL_PAYLOAD_EXIT_TT;
        otp_term from = otp_tuple_get(ctl, 1), to = local_of(n, otp_tuple_get(ctl, 2));
        otp_term reason = payload_form ? payload
                          : (op == OTP__CTL_EXIT_TT || op == OTP__CTL_EXIT2_TT)
                              ? otp_tuple_get(ctl, 4)
                              : otp_tuple_get(ctl, 3);
        if (ar < 3 || !otp_is_pid(from) || reason == OTP_NONE)
            return "EXIT of the wrong shape";
        if (to)
            route_remote(n, OTP__SIG_EXIT, to, link ? OTP__SIGF_LINK : 0, reason, from, OTP_NONE);
        break;
    }
    case OTP__CTL_MONITOR_P:     /* {19, From, ToProc, Ref} */
    case OTP__CTL_DEMONITOR_P: { /* {20, From, ToProc, Ref} */
        otp_term from = otp_tuple_get(ctl, 1), proc = otp_tuple_get(ctl, 2);
        otp_term ref = otp_tuple_get(ctl, 3), to = local_of(n, proc);
        if (ar != 4 || !otp_is_pid(from) || !otp_is_ref(ref))
            return "MONITOR_P/DEMONITOR_P of the wrong shape";
        if (to)
            route_remote(n, op == OTP__CTL_MONITOR_P ? OTP__SIG_MONITOR : OTP__SIG_DEMONITOR, to, 0,
                         ref, from, proc);
        else if (op == OTP__CTL_MONITOR_P && (ta = otp_arena_new()))
            send_ctl(n, n->sh, c->peer,
                     OTP_TUPLE(ta, otp_small(OTP__CTL_MONITOR_P_EXIT), proc, from, ref,
                               otp_atom("noproc")),
                     OTP_NONE);
        break;
    }
    case OTP__CTL_MONITOR_P_EXIT:           /* {21, FromProc, ToPid, Ref, Reason} */
    case OTP__CTL_PAYLOAD_MONITOR_P_EXIT: { /* {28, FromProc, ToPid, Ref} + Reason */
        otp_term to = local_of(n, otp_tuple_get(ctl, 2)), ref = otp_tuple_get(ctl, 3);
        otp_term reason = op == OTP__CTL_MONITOR_P_EXIT ? otp_tuple_get(ctl, 4) : payload;
        if (ar < 4 || !otp_is_ref(ref) || reason == OTP_NONE)
            return "MONITOR_P_EXIT of the wrong shape";
        uint64_t id = otp__ref_id(n->rt, ref);
        if (to && id)
            otp__send_mon_sig(n->sh, OTP__SIG_DOWN, to, OTP_NONE, id, OTP_NONE, reason);
        break;
    }
    default:
        break;
    }
    otp_arena_free(ta);
    return NULL;
}

/* One frame body (after the length). Returns NULL, or why the connection
 * must close. */
static const char *handle_frame(conn *c, const uint8_t *b, size_t len, char *why, size_t cap)
{
    otp_node *n = c->n;
    otp_arena *a = n->sh->scratch;
    int64_t op = 0;
    otp_term ctl, msg;
    int r = otp__dist_decode_frame(&c->rx, a, b, len, &op, &ctl, &msg, why, cap);
    if (r == 0) {
        switch (op) {
        case OTP__CTL_SEND:
        case OTP__CTL_SEND_TT:
        case OTP__CTL_SEND_SENDER:
        case OTP__CTL_SEND_SENDER_TT:
            deliver(n, otp_tuple_get(ctl, 2), msg);
            break;
        case OTP__CTL_REG_SEND:
        case OTP__CTL_REG_SEND_TT:
            deliver(n, otp_tuple_get(ctl, 3), msg);
            break;
        case OTP__CTL_ALIAS_SEND:
        case OTP__CTL_ALIAS_SEND_TT:
            /* to the process owning the alias, if it still has it */
            otp__alias_deliver(n->sh, otp_tuple_get(ctl, 2), msg);
            break;
        case OTP__CTL_SPAWN_REQUEST:
        case OTP__CTL_SPAWN_REQUEST_TT: {
            const char *bad = spawn_request(c, ctl, msg);
            if (bad) {
                snprintf(why, cap, "%s", bad);
                r = -1;
            }
            break;
        }
        default: {
            const char *bad = link_or_monitor(c, op, ctl, msg);
            if (bad) {
                snprintf(why, cap, "%s", bad);
                r = -1;
            }
            /* Others (GROUP_LEADER, spawn replies to requests we never
             * make) are dropped. */
            break;
        }
        }
    }
    otp_arena_reset(a);
    return r < 0 ? why : NULL;
}

static void process_input(conn *c)
{
    char why[256];
    size_t pos = 0;
    if (c->state == C_HANDSHAKE) {
        size_t used = 0;
        int r = otp__hs_feed(c->hs, c->rbuf, c->rlen, &used);
        pos = used;
        flush_hs(c);
        if (c->state == C_CLOSED)
            return;
        if (r < 0) {
            const char *peer = c->hs->peer_name[0] ? c->hs->peer_name : "an unnamed node";
            dlog(c->n, "handshake with %s failed: %s", peer, c->hs->why);
            if (c->oq || c->writing) {
                c->close_after_write = true; /* the last status goes out first */
                c->rlen = 0;
                return;
            }
            conn_close(c, NULL);
            return;
        }
        if (r == OTP__HS_UP)
            go_up(c);
    }
    while (c->state == C_UP && c->rlen - pos >= 4) {
        const uint8_t *p = c->rbuf + pos;
        uint32_t fl = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (fl > MAX_FRAME) {
            snprintf(why, sizeof why, "frame of %u bytes is over the limit", fl);
            conn_close(c, why);
            return;
        }
        if (c->rlen - pos < 4 + (size_t)fl)
            break;
        const char *bad = handle_frame(c, p + 4, fl, why, sizeof why);
        if (bad) {
            conn_close(c, bad);
            return;
        }
        pos += 4 + fl;
    }
    memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
    c->rlen -= pos;
}

static void on_recv(otp__io_op *op, int64_t res)
{
    conn *c = op->data;
    if (op_back(c))
        return;
    if (res <= 0) {
        conn_close(c, res == 0 ? "the peer closed the connection" : strerror((int)-res));
        return;
    }
    if (c->close_after_write)
        return; /* a failed handshake: ignore what else comes */
    c->rlen += (size_t)res;
    c->last_rx = otp__now_ms();
    c->ops++; /* held: processing may close c */
    process_input(c);
    if (op_back(c))
        return;
    arm_recv(c);
}

static void arm_recv(conn *c)
{
    size_t need = c->rlen + 4096;
    if (c->state == C_UP && c->rlen >= 4) {
        uint32_t fl = (uint32_t)c->rbuf[0] << 24 | (uint32_t)c->rbuf[1] << 16 |
                      (uint32_t)c->rbuf[2] << 8 | c->rbuf[3];
        if ((size_t)fl + 4 > need)
            need = (size_t)fl + 4; /* the whole frame at once */
    }
    if (c->rcap > 4 * RBUF_START && need <= RBUF_START) {
        /* A big frame went through: give its buffer back rather than keep
         * megabytes per idle connection. */
        uint8_t *p = realloc(c->rbuf, RBUF_START);
        if (p) {
            c->rbuf = p;
            c->rcap = RBUF_START;
        }
    }
    if (need > c->rcap) {
        size_t cap = c->rcap ? c->rcap : RBUF_START;
        while (cap < need)
            cap *= 2;
        uint8_t *p = realloc(c->rbuf, cap);
        if (!p) {
            conn_close(c, "out of memory for a frame");
            return;
        }
        c->rbuf = p;
        c->rcap = cap;
    }
    c->rop.done = on_recv;
    if (otp__io_recv(c->n->sh->io, &c->rop, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen) != 0) {
        conn_close(c, "cannot queue a receive");
        return;
    }
    c->ops++;
}

/* -------------------------------------------------------------- handshake */

static const char *hs_status(void *arg, const char *peer, uint64_t flags)
{
    conn *c = arg;
    otp_node *n = c->n;
    otp_term pa = otp_atom(peer);
    for (conn *o = n->conns; o; o = o->next) {
        if (o == c || o->peer != pa || o->state == C_CLOSED)
            continue;
        if (o->state == C_UP)
            return "alive";
        /* Both sides connect at once: the greater name's attempt wins. */
        if (strcmp(n->name, peer) > 0)
            return "nok";
        return "ok_simultaneous"; /* ours gives way once this one is up */
    }
    return "ok";
}

static int hs_begin(conn *c)
{
    otp_node *n = c->n;
    c->hs = malloc(sizeof *c->hs);
    if (!c->hs)
        return -1;
    otp__hs_config hc = {.initiator = c->initiator,
                         .name = n->name,
                         .creation = n->creation,
                         .flags = n->flags,
                         .cookie = n->cookie,
                         .cookie_len = n->cookie_len,
                         .peer = c->initiator ? otp_atom_cstr(c->peer) : NULL,
                         .status = hs_status,
                         .arg = c};
    if (otp__hs_start(c->hs, &hc) < 0)
        return -1;
    c->state = C_HANDSHAKE;
    c->deadline = otp__now_ms() + n->setup_ms;
    flush_hs(c);
    arm_recv(c);
    return 0;
}

static void on_accept(otp__io_op *op, int64_t res)
{
    otp_node *n = op->data;
    if (!otp__io_op_pending(op)) {
        n->ops--;
        if (res != -ECANCELED && !n->stopping)
            dlog(n, "accepting connections failed: %s", strerror((int)-res));
        maybe_finished(n);
        if (res < 0)
            return;
    }
    if (res < 0)
        return;
    if (n->stopping) {
        close((int)res);
        return;
    }
    conn *c = conn_new(n, 0, false);
    if (!c) {
        close((int)res);
        return;
    }
    c->fd = (int)res;
    c->ops++; /* held: starting may close c */
    if (hs_begin(c) < 0)
        conn_close(c, "cannot start the handshake");
    op_back(c);
}

/* ------------------------------------------------------ outgoing set-up */

typedef struct connect_job {
    otp_node *n;
    conn *c;
    char peer[OTP__HS_MAX_NAME + 1];
    int fd;
    char why[300];
} connect_job;

static void connected_here(otp__shard *sh, void *arg)
{
    connect_job *j = arg;
    conn *c = j->c;
    if (op_back(c)) {
        if (j->fd >= 0)
            close(j->fd);
        free(j);
        return;
    }
    if (j->fd < 0) {
        conn_close(c, j->why);
        free(j);
        return;
    }
    c->fd = j->fd;
    free(j);
    c->ops++; /* held: starting may close c */
    if (hs_begin(c) < 0)
        conn_close(c, "cannot start the handshake");
    op_back(c);
}

static void *connector(void *arg)
{
    connect_job *j = arg;
    otp_node *n = j->n;
    j->fd = -1;
    otp_epmd_node_info info;
    otp_error err;
    char *at = strchr(j->peer, '@');
    uint64_t start = otp__now_ms();
    if (otp_epmd_lookup(n->epmd, j->peer, n->setup_ms, &info, &err) < 0) {
        snprintf(j->why, sizeof j->why, "%s", err.message);
    } else if (info.highest < 6) {
        snprintf(j->why, sizeof j->why, "%.200s speaks distribution versions %u..%u, not 6",
                 j->peer, info.lowest, info.highest);
    } else {
        int fd = otp__epmd_connect(at + 1, info.port, start + n->setup_ms, &err);
        if (fd < 0)
            snprintf(j->why, sizeof j->why, "%s", err.message);
        else
            j->fd = fd;
    }
    if (otp__shard_post(n->rt, n->home, connected_here, j) < 0) {
        /* out of memory: nothing can tell the shard; leak rather than crash */
        if (j->fd >= 0)
            close(j->fd);
    }
    return NULL;
}

static conn *connect_to(otp_node *n, otp_term peer)
{
    const char *name = otp_atom_cstr(peer);
    if (!strchr(name, '@') || strlen(name) > OTP__HS_MAX_NAME)
        return NULL;
    conn *c = conn_new(n, peer, true);
    connect_job *j = calloc(1, sizeof *j);
    if (!c || !j) {
        free(j);
        if (c)
            conn_close(c, NULL);
        return NULL;
    }
    j->n = n;
    j->c = c;
    strcpy(j->peer, name);
    /* Reap the connector threads that are done, then keep the new one. */
    size_t k = 0;
    for (size_t i = 0; i < n->nthreads; i++)
        if (pthread_tryjoin_np(n->threads[i], NULL) != 0)
            n->threads[k++] = n->threads[i];
    n->nthreads = k;
    if (n->nthreads == n->capthreads) {
        size_t cap = n->capthreads ? n->capthreads * 2 : 4;
        pthread_t *t = realloc(n->threads, cap * sizeof *t);
        if (!t) {
            free(j);
            conn_close(c, "out of memory");
            return NULL;
        }
        n->threads = t;
        n->capthreads = cap;
    }
    if (pthread_create(&n->threads[n->nthreads], NULL, connector, j) != 0) {
        free(j);
        conn_close(c, "cannot start a connector thread");
        return NULL;
    }
    n->nthreads++;
    c->ops++; /* the connector's answer */
    return c;
}

/* ----------------------------------------------------------------- sends */

/* On the home shard: a frame for peer. */
static void enqueue(otp_node *n, otp_term peer, blob *b)
{
    conn *c = find_conn(n, peer);
    if (!c)
        c = connect_to(n, peer);
    if (!c) {
        blob_free_list(b);
        return;
    }
    if (c->state == C_UP) {
        if (b->alias && !(c->flags & OTP__DF_ALIAS)) {
            blob_free_list(b); /* OTP drops a send to an alias it cannot pass on */
            return;
        }
        if (c->header_mode)
            to_header_mode(b);
        if (c->oq_tail)
            c->oq_tail->next = b;
        else
            c->oq = b;
        c->oq_tail = b;
        /* Written at the end of this turn, with whatever else the shard's
         * processes queue meanwhile: one writev for a call's monitor, its
         * request and its demonitor, not three. */
        c->flush = true;
        otp__service_want_flush(n->sh, &n->svc);
        return;
    }
    if (c->pre_bytes + b->len > PRE_MAX) {
        blob_free_list(b); /* a node that never comes up does not eat memory */
        return;
    }
    c->pre_bytes += b->len;
    if (c->pre_tail)
        c->pre_tail->next = b;
    else
        c->pre = b;
    c->pre_tail = b;
}

typedef struct send_job {
    otp_term peer;
    blob *b;
} send_job;

static void send_here(otp__shard *sh, void *arg)
{
    send_job *j = arg;
    /* acquire: pairs with otp_node_start's release */
    otp_node *n = atomic_load_explicit(&sh->rt->dist, memory_order_acquire);
    if (n && !n->stopping) {
        enqueue(n, j->peer, j->b);
    } else {
        /* The node is gone (or going): its queued counts with it. */
        for (blob *b = j->b; b; b = b->next)
            b->queued = NULL;
        blob_free_list(j->b);
    }
    free(j);
}

static otp_node *dist_of(otp_runtime *rt)
{
    return atomic_load_explicit(&rt->dist, memory_order_acquire);
}

bool otp__dist_is_remote(otp_runtime *rt, otp_term dest)
{
    otp_node *n = dist_of(rt);
    if (!n)
        return false;
    otp_term node;
    uint32_t id, serial, creation;
    if (otp_is_pid(dest) && otp_pid_parts(dest, &node, &id, &serial, &creation) == 0)
        return node != n->node || creation != n->creation;
    if (otp_is_tuple(dest) && otp_tuple_arity(dest) == 2 && otp_is_atom(otp_tuple_get(dest, 0)) &&
        otp_is_atom(otp_tuple_get(dest, 1)))
        return otp_tuple_get(dest, 1) != n->node;
    return false;
}

/* Encodes the frame 112, ctl[, msg] (msg OTP_NONE: none) and hands it to
 * the connection to peer: here if sh is the home shard, else as a job
 * behind what this shard or thread sent before. */
static int send_ctl(otp_node *n, otp__shard *sh, otp_term peer, otp_term ctl, otp_term msg)
{
    return send_ctl_from(n, sh, peer, ctl, msg, OTP_NONE);
}

/* send_ctl for a frame whose sending process is known. */
static int send_ctl_from(otp_node *n, otp__shard *sh, otp_term peer, otp_term ctl, otp_term msg,
                         otp_term sender)
{
    return send_frame(n, sh, peer, ctl, msg, sender, false);
}

static int send_frame(otp_node *n, otp__shard *sh, otp_term peer, otp_term ctl, otp_term msg,
                      otp_term sender, bool alias)
{
    otp_buf buf = {0};
    size_t ctl_len = 0;
    int rc = 0;
    /* A small frame goes straight into a cached block; one that does not
     * fit is encoded into a growing buffer instead. The room kept back is
     * header mode's extra byte (to_header_mode). */
    blob *b = blob_small_get();
    if (b) {
        uint8_t *d = blob_inline(b);
        size_t room = BLOB_BLOCK - sizeof *b - 1;
        int64_t k = otp__encode_fit(ctl, 0, d + 5, room - 5), m = 0;
        if (k > 0 && msg != OTP_NONE)
            m = otp__encode_fit(msg, 0, d + 5 + k, room - 5 - (size_t)k);
        if (k > 0 && m >= 0) {
            d[4] = 112;
            buf.data = d;
            buf.len = 5 + (size_t)k + (size_t)m;
            ctl_len = (size_t)k - 1; /* without its 131 */
        } else {
            rc = k < 0 && k != -OTP_ENOSPC ? (int)k : m < 0 && m != -OTP_ENOSPC ? (int)m : 0;
            if (rc < 0) {
                blob_small_put(b);
                return rc;
            }
        }
    }
    if (!buf.data) {
        rc = otp_buf_reserve(&buf, 64);
        if (rc == 0) {
            buf.len = 5;
            buf.data[4] = 112;
            rc = otp_encode_buf(&buf, ctl, 0);
            ctl_len = buf.len - 6; /* without its 131 */
        }
        if (rc == 0 && msg != OTP_NONE)
            rc = otp_encode_buf(&buf, msg, 0);
        if (rc == 0 && msg == OTP_NONE)
            rc = otp_buf_reserve(&buf, 1); /* room for header mode's extra byte */
        if (!b && rc == 0 && (b = malloc(sizeof *b)) != NULL)
            b->small = false;
        if (rc < 0 || !b) {
            otp_buf_free(&buf);
            if (b && b->small)
                blob_small_put(b);
            else
                free(b);
            return rc ? rc : -OTP_ENOMEM;
        }
    }
    uint32_t fl = (uint32_t)(buf.len - 4);
    buf.data[0] = (uint8_t)(fl >> 24);
    buf.data[1] = (uint8_t)(fl >> 16);
    buf.data[2] = (uint8_t)(fl >> 8);
    buf.data[3] = (uint8_t)fl;
    b->data = buf.data;
    b->len = buf.len;
    b->next = NULL;
    b->ctl_len = ctl_len;
    b->payload = msg != OTP_NONE;
    b->frame = true;
    b->alias = alias;
    b->sender = sender;
    /* counted from now until written or dropped: what busy_dist_port
     * measures (see wait_not_busy) */
    b->queued = queued_of(n, peer);
    atomic_fetch_add_explicit(b->queued, (int64_t)b->len, memory_order_relaxed);
    b->frag_off = 0;
    if (sh && sh->index == n->home) {
        enqueue(n, peer, b);
        return 0;
    }
    send_job *j = malloc(sizeof *j);
    if (!j) {
        blob_free_list(b);
        return -OTP_ENOMEM;
    }
    j->peer = peer;
    j->b = b;
    if (otp__shard_post(n->rt, n->home, send_here, j) < 0) {
        blob_free_list(b);
        free(j);
        return -OTP_ENOMEM;
    }
    return 0;
}

static otp_term pid_node(otp_term pid)
{
    otp_term node;
    uint32_t id, serial, creation;
    return otp_pid_parts(pid, &node, &id, &serial, &creation) == 0 ? node : OTP_NONE;
}

bool otp__local_pid_of(otp_proc *self, otp_term pid)
{
    return otp__local_pid(otp_proc_runtime(self), pid) != 0;
}

otp_runtime *otp__node_runtime(otp_node *n)
{
    return n->rt;
}

otp_term otp__dist_node_of(otp_term t)
{
    if (otp_is_pid(t))
        return pid_node(t);
    if (otp_is_tuple(t) && otp_tuple_arity(t) == 2)
        return otp_tuple_get(t, 1);
    return OTP_NONE;
}

int otp__dist_ctl(otp_runtime *rt, otp__shard *sh, otp_term node, otp_term ctl)
{
    otp_node *n = dist_of(rt);
    if (!n)
        return -OTP_EBADARG;
    /* LINK, EXIT, MONITOR_P...: element 1 is the local process it is from */
    otp_term from = otp_tuple_arity(ctl) > 1 ? otp_tuple_get(ctl, 1) : OTP_NONE;
    return send_ctl_from(n, sh, node, ctl, OTP_NONE, otp_is_pid(from) ? from : OTP_NONE);
}

/* busy_dist_port: a sender whose messages toward peer are still queued
 * beyond the limit waits until the connection has written them down
 * (or dropped them with the connection), as an Erlang process is
 * suspended on a busy distribution port. A process sleeps in 1 ms steps
 * (other processes of its shard run), a thread in 1 ms naps; the shards'
 * own sends (sh without self: spawn replies, monitor exits) never wait. */
static bool wait_not_busy(otp_runtime *rt, otp_node *n, otp__shard *sh, otp_proc *self,
                          otp_term peer)
{
    if (atomic_load_explicit(queued_of(n, peer), memory_order_relaxed) <= n->busy_limit ||
        (sh && !self))
        return true;
    for (;;) {
        if (self)
            otp_sleep(self, 1);
        else
            usleep(1000);
        /* otp_node_stop may have run meanwhile (a sleeping process lets its
         * shard's quiesce job by): n is not ours to touch once it is gone */
        if (dist_of(rt) != n)
            return false;
        if (atomic_load_explicit(queued_of(n, peer), memory_order_relaxed) <= n->busy_limit)
            return true;
    }
}

int otp_node_queued(otp_node *n, const char *node, size_t *bytes)
{
    otp_term peer = node ? otp_atom(node) : OTP_NONE;
    if (!n || peer == OTP_NONE || !bytes)
        return -OTP_EBADARG;
    int64_t v = atomic_load_explicit(queued_of(n, peer), memory_order_relaxed);
    *bytes = v > 0 ? (size_t)v : 0;
    return 0;
}

int otp__dist_alias_send(otp_runtime *rt, otp__shard *sh, otp_proc *self, otp_term alias,
                         otp_term msg)
{
    otp_node *n = dist_of(rt);
    if (!n)
        return 0; /* no distribution: nobody to reach, dropped */
    otp_term peer;
    uint32_t creation, w[5];
    size_t nw;
    if (otp_ref_parts(alias, &peer, &creation, w, &nw) < 0 || peer == n->node)
        return 0;
    if (!wait_not_busy(rt, n, sh, self, peer))
        return 0; /* the node stopped: dropped */
    uint64_t buf[8];
    otp_arena win = otp__arena_window(buf, sizeof buf);
    otp_term from = self ? otp_self(self) : n->net_kernel;
    return send_frame(n, sh, peer, OTP_TUPLE(&win, otp_small(OTP__CTL_ALIAS_SEND), from, alias),
                      msg, self ? from : OTP_NONE, true);
}

int otp__dist_send(otp_runtime *rt, otp__shard *sh, otp_proc *self, otp_term dest, otp_term msg)
{
    otp_node *n = dist_of(rt);
    if (!n)
        return -OTP_EBADARG;
    otp_term peer, ctl;
    uint64_t buf[8];
    otp_arena win = otp__arena_window(buf, sizeof buf), *a = &win;
    if (otp_is_pid(dest)) {
        peer = pid_node(dest);
        ctl = OTP_TUPLE(a, otp_small(OTP__CTL_SEND), a_empty, dest);
    } else {
        peer = otp_tuple_get(dest, 1);
        ctl = OTP_TUPLE(a, otp_small(OTP__CTL_REG_SEND), self ? otp_self(self) : n->net_kernel,
                        a_empty, otp_tuple_get(dest, 0));
    }
    if (!wait_not_busy(rt, n, sh, self, peer))
        return 0; /* the node stopped: dropped */
    return send_ctl_from(n, sh, peer, ctl, msg, self ? otp_self(self) : OTP_NONE);
}

/* -------------------------------------------------------------- rpc, erpc
 *
 * OTP 25's rpc:call and erpc:call arrive as SPAWN_REQUEST of
 * erpc:execute_call/4 (dist-protocol.md §6.3): we answer SPAWN_REPLY with
 * the pid of a process that runs the registered C function, and when that
 * process ends, MONITOR_P_EXIT carries the outcome as execute_call would
 * exit. Casts are execute_cast/3, answered the same way without the
 * monitor. A function that is not registered fails with undef, exactly as
 * on an Erlang node. */

typedef struct rpc_fn {
    struct rpc_fn *next;
    otp_term module, function;
    unsigned arity;
    otp_rpc_fn fn;
    void *arg;
} rpc_fn;

typedef struct rpc_job {
    otp_node *n;
    otp_arena *a; /* the job's terms */
    otp_term peer, req_id, from, res_ref, module, function, args;
    bool monitor, call;
    /* rex's requests (rpc:call's {call, M, F, A, Gl}): the result goes to
     * rex_from as a gen_server reply, or to ei_from as {rex, Result} */
    bool rex;
    otp_from rex_from;
    otp_term ei_from;
    const rpc_fn *f;
    otp_term reason; /* how the process ended, set before it returns */
    otp_term pid;
} rpc_job;

int otp_node_register_fn(otp_node *n, const char *module, const char *function, unsigned arity,
                         otp_rpc_fn fn, void *arg)
{
    if (!n || !module || !function || !fn)
        return -OTP_EBADARG;
    rpc_fn *f = malloc(sizeof *f);
    if (!f)
        return -OTP_ENOMEM;
    f->module = otp_atom(module);
    f->function = otp_atom(function);
    if (f->module == OTP_NONE || f->function == OTP_NONE) {
        free(f);
        return -OTP_EBADARG;
    }
    f->arity = arity;
    f->fn = fn;
    f->arg = arg;
    pthread_mutex_lock(&n->lock);
    f->next = n->fns;
    n->fns = f;
    pthread_mutex_unlock(&n->lock);
    return 0;
}

static const rpc_fn *find_fn(otp_node *n, otp_term m, otp_term f, size_t arity)
{
    const rpc_fn *r = NULL;
    pthread_mutex_lock(&n->lock);
    for (const rpc_fn *x = n->fns; x; x = x->next)
        if (x->module == m && x->function == f && x->arity == arity) {
            r = x;
            break;
        }
    pthread_mutex_unlock(&n->lock);
    return r;
}

static size_t list_len(otp_term l)
{
    size_t k = 0;
    while (otp_is_cons(l)) {
        k++;
        l = otp_tail(l);
    }
    return l == OTP_NIL ? k : SIZE_MAX;
}

/* rex's answer, as rpc:call gives it: rex catches what the function
 * raises, so a throw is a value and anything else {badrpc, {'EXIT', R}}. */
static void rex_answer(otp_proc *self, rpc_job *j, int kind, otp_term result)
{
    otp_arena *a = otp_proc_arena(self);
    otp_term stack = otp_cons(
        a, OTP_TUPLE(a, j->module, j->function, j->f ? otp_small(j->f->arity) : j->args, OTP_NIL),
        OTP_NIL);
    otp_term r = result, why = OTP_NONE;
    if (!j->f)
        why = OTP_TUPLE(a, otp_atom("undef"), stack);
    else if (kind == OTP_RPC_ERROR)
        why = OTP_TUPLE(a, result, stack);
    else if (kind == OTP_RPC_EXIT)
        why = result;
    if (why != OTP_NONE)
        r = OTP_TUPLE(a, otp_atom("badrpc"), OTP_TUPLE(a, otp_atom("EXIT"), why));
    if (!j->call)
        return;
    if (j->ei_from != OTP_NONE)
        otp_send(self, j->ei_from, OTP_TUPLE(a, otp_atom("rex"), r));
    else
        otp_gen_server_reply(self, &j->rex_from, r);
}

static void rpc_main(otp_proc *self, void *arg)
{
    rpc_job *j = arg;
    otp_arena *a = j->a;
    if (j->rex) {
        otp_term result = otp_atom("undefined");
        int kind = OTP_RPC_RETURN;
        if (j->f) {
            kind = j->f->fn(self, j->args, &result, j->f->arg);
            if (result == OTP_NONE)
                result = otp_atom("undefined");
        }
        rex_answer(self, j, kind, result);
        j->reason = otp_atom("normal");
        return;
    }
    otp_term undef =
        OTP_TUPLE(a, j->res_ref, otp_atom("error"), otp_atom("undef"),
                  otp_cons(a, OTP_TUPLE(a, j->module, j->function, j->args, OTP_NIL), OTP_NIL));
    if (!j->f) {
        j->reason = j->call ? undef : otp_atom("normal");
        return;
    }
    otp_term result = OTP_NONE;
    int kind = j->f->fn(self, j->args, &result, j->f->arg);
    if (!j->call) {
        j->reason = otp_atom("normal");
        return;
    }
    /* The result lives in the process's arena; the reason must outlive it. */
    result = result == OTP_NONE ? otp_atom("undefined") : otp_copy(a, result);
    switch (kind) {
    case OTP_RPC_RETURN:
        j->reason = OTP_TUPLE(a, j->res_ref, otp_atom("return"), result);
        break;
    case OTP_RPC_THROW:
        j->reason = OTP_TUPLE(a, j->res_ref, otp_atom("throw"), result);
        break;
    case OTP_RPC_EXIT:
        j->reason = OTP_TUPLE(a, j->res_ref, otp_atom("exit"), result);
        break;
    default:
        j->reason = OTP_TUPLE(a, j->res_ref, otp_atom("error"), result, OTP_NIL);
        break;
    }
}

/* The rpc process is being freed (it returned, or was killed): tell the
 * caller how it ended. */
static void rpc_done(void *arg)
{
    rpc_job *j = arg;
    otp_node *n = j->n;
    otp__shard *sh = otp__this_shard();
    if (j->monitor && dist_of(n->rt) == n) {
        otp_term reason = j->reason ? j->reason : otp_atom("killed");
        otp_term ctl =
            OTP_TUPLE(j->a, otp_small(OTP__CTL_MONITOR_P_EXIT), j->pid, j->from, j->req_id, reason);
        send_ctl(n, sh, j->peer, ctl, OTP_NONE);
    }
    otp_arena_free(j->a);
    free(j);
}

/* SPAWN_REQUEST {29, ReqId, From, GL, {M, F, Arity}, Opts} + Args, on the
 * home shard. Returns NULL or why the frame is invalid. */
static const char *spawn_request(conn *c, otp_term ctl, otp_term args)
{
    otp_node *n = c->n;
    otp__shard *sh = n->sh;
    if (otp_tuple_arity(ctl) < 6)
        return "SPAWN_REQUEST of the wrong arity";
    otp_term req_id = otp_tuple_get(ctl, 1), from = otp_tuple_get(ctl, 2);
    otp_term mfa = otp_tuple_get(ctl, 4), opts = otp_tuple_get(ctl, 5);
    int64_t arity;
    if (!otp_is_pid(from) || !otp_is_tuple(mfa) || otp_tuple_arity(mfa) != 3 ||
        !otp_is_atom(otp_tuple_get(mfa, 0)) || !otp_is_atom(otp_tuple_get(mfa, 1)) ||
        otp_get_int64(otp_tuple_get(mfa, 2), &arity) < 0 || list_len(opts) == SIZE_MAX ||
        list_len(args) != (size_t)arity)
        return "SPAWN_REQUEST with a bad shape";
    bool monitor = false, link = false;
    otp_term bad = OTP_NONE;
    for (otp_term l = opts; otp_is_cons(l); l = otp_tail(l)) {
        otp_term o = otp_head(l);
        if (o == otp_atom("monitor"))
            monitor = true;
        else if (o == otp_atom("link"))
            link = true;
        /* priority, heap sizes, message_queue_data... have no meaning for
         * a C process: accepted and ignored */
    }
    otp_term m = otp_tuple_get(mfa, 0), f = otp_tuple_get(mfa, 1);
    if (link)
        bad = otp_atom("notsup"); /* links across nodes come with the link protocol */
    rpc_job *j = bad == OTP_NONE ? calloc(1, sizeof *j) : NULL;
    otp_arena *a = j ? otp_arena_new() : NULL;
    if (bad == OTP_NONE && !a) {
        free(j);
        bad = otp_atom("system_limit");
    }
    if (bad == OTP_NONE) {
        j->n = n;
        j->a = a;
        j->peer = c->peer;
        j->req_id = otp_copy(a, req_id);
        j->from = otp_copy(a, from);
        j->monitor = monitor;
        otp_term em = otp_atom("erpc");
        if (m == em && f == otp_atom("execute_call") && arity == 4) {
            /* [ResRef, M, F, Args] */
            otp_term l = args;
            j->res_ref = otp_copy(a, otp_head(l));
            l = otp_tail(l);
            j->module = otp_head(l);
            l = otp_tail(l);
            j->function = otp_head(l);
            j->args = otp_copy(a, otp_head(otp_tail(l)));
            j->call = true;
        } else if (m == em && f == otp_atom("execute_cast") && arity == 3) {
            j->module = otp_head(args);
            j->function = otp_head(otp_tail(args));
            j->args = otp_copy(a, otp_head(otp_tail(otp_tail(args))));
        } else {
            j->module = m; /* spawn(Node, M, F, A) */
            j->function = f;
            j->args = otp_copy(a, args);
        }
        size_t al = list_len(j->args);
        if (!otp_is_atom(j->module) || !otp_is_atom(j->function) || al == SIZE_MAX) {
            otp_arena_free(a);
            free(j);
            bad = otp_atom("badarg");
        } else {
            j->f = find_fn(n, j->module, j->function, al);
        }
    }
    otp_arena *ta = otp_arena_new();
    if (!ta)
        return "out of memory";
    if (bad == OTP_NONE) {
        otp__spawn_req *rq = calloc(1, sizeof *rq);
        int rc = rq ? 0 : -OTP_ENOMEM;
        if (rq) {
            rq->fn = rpc_main;
            rq->arg = j;
            rq->on_exit = rpc_done;
            rq->on_exit_arg = j;
            rc = otp__spawn_here(sh, rq);
            j->pid = rq->pid;
            free(rq);
        }
        if (rc < 0) {
            otp_arena_free(j->a);
            free(j);
            bad = otp_atom("system_limit");
        } else {
            /* The reply goes out before anything the process sends: it is
             * queued now, the process runs later on this shard. */
            send_ctl(n, sh, c->peer,
                     OTP_TUPLE(ta, otp_small(OTP__CTL_SPAWN_REPLY), req_id, from,
                               otp_small(monitor ? 2 : 0), j->pid),
                     OTP_NONE);
        }
    }
    if (bad != OTP_NONE)
        send_ctl(n, sh, c->peer,
                 OTP_TUPLE(ta, otp_small(OTP__CTL_SPAWN_REPLY), req_id, from, otp_small(0), bad),
                 OTP_NONE);
    otp_arena_free(ta);
    return NULL;
}

/* ------------------------------------- connect, disconnect, monitor_node */

typedef struct node_job {
    otp_term node, pid;
    int what; /* 0 connect, 1 disconnect, 2 monitor, 3 demonitor, 4/5 monitor_nodes on/off */
} node_job;

static void node_job_here(otp__shard *sh, void *arg)
{
    node_job *j = arg;
    otp_node *n = dist_of(sh->rt);
    if (!n || n->stopping) {
        free(j);
        return;
    }
    conn *c = find_conn(n, j->node);
    switch (j->what) {
    case 0:
        if (!c)
            connect_to(n, j->node);
        break;
    case 1:
        if (c)
            conn_close(c, "disconnected on request");
        break;
    case 2: {
        if (!otp__grow((void **)&n->nodemons, &n->capnodemons, n->nnodemons, sizeof *n->nodemons))
            break;
        n->nodemons[n->nnodemons++] = (struct nodemon){j->pid, j->node};
        if (!c && !connect_to(n, j->node)) {
            /* cannot even try: nodedown at once, as Erlang does */
            n->nnodemons--;
            node_msg(sh, j->pid, "nodedown", j->node);
        }
        break;
    }
    case 3:
        for (size_t i = 0; i < n->nnodemons; i++)
            if (n->nodemons[i].pid == j->pid && n->nodemons[i].node == j->node) {
                n->nodemons[i] = n->nodemons[--n->nnodemons];
                break;
            }
        break;
    case 6: /* the subscriber wants the visible nodes up now as well */
        for (conn *o = n->conns; o; o = o->next) {
            if (o->state != C_UP || !(o->flags & OTP__DF_PUBLISHED))
                continue;
            node_msg(sh, j->pid, "nodeup", o->peer);
        }
        /* and it subscribes */
        __attribute__((fallthrough));
    case 4:
        if (!otp__grow((void **)&n->nodesubs, &n->capnodesubs, n->nnodesubs, sizeof *n->nodesubs))
            break;
        n->nodesubs[n->nnodesubs++] = j->pid;
        break;
    case 5: /* like Erlang, `false` ends every subscription of the process */
        for (size_t i = 0; i < n->nnodesubs;)
            if (n->nodesubs[i] == j->pid)
                n->nodesubs[i] = n->nodesubs[--n->nnodesubs];
            else
                i++;
        break;
    }
    free(j);
}

static int node_job_post(otp_runtime *rt, otp_term node, otp_term pid, int what)
{
    otp_node *n = dist_of(rt);
    if (!n)
        return -OTP_EBADARG;
    if (what < 4 && (!otp_is_atom(node) || !strchr(otp_atom_cstr(node), '@')))
        return -OTP_EBADARG;
    node_job *j = malloc(sizeof *j);
    if (!j)
        return -OTP_ENOMEM;
    j->node = node;
    j->pid = pid;
    j->what = what;
    if (otp__shard_post(rt, n->home, node_job_here, j) < 0) {
        free(j);
        return -OTP_ENOMEM;
    }
    return 0;
}

static bool is_connected(otp_node *n, otp_term node)
{
    bool up = false;
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < n->nup && !up; i++)
        up = n->up[i] == node;
    pthread_mutex_unlock(&n->lock);
    return up;
}

int otp_node_connect(otp_node *n, const char *node, unsigned timeout_ms, otp_error *err)
{
    otp_term a = node ? otp_atom(node) : OTP_NONE;
    if (a == OTP_NONE || a == n->node)
        return otp__epmd_fail(err, OTP_EBADARG, "not a node to connect to: %s", node ? node : "");
    if (is_connected(n, a))
        return 0;
    int rc = node_job_post(n->rt, a, OTP_NONE, 0);
    if (rc < 0)
        return otp__epmd_fail(err, -rc, "cannot connect to %s: %s", node, otp_strerror(rc));
    uint64_t deadline = otp__now_ms() + (timeout_ms ? timeout_ms : n->setup_ms + 1000);
    while (!is_connected(n, a)) {
        if (otp__now_ms() >= deadline)
            return otp__epmd_fail(err, OTP_EIO, "cannot connect to %s (see the node's log)", node);
        usleep(2000);
    }
    return 0;
}

int otp_node_disconnect(otp_node *n, const char *node)
{
    otp_term a = node ? otp_atom(node) : OTP_NONE;
    if (a == OTP_NONE)
        return -OTP_EBADARG;
    if (!is_connected(n, a))
        return -OTP_ENOTFOUND;
    return node_job_post(n->rt, a, OTP_NONE, 1);
}

int otp_monitor_node(otp_proc *self, otp_term node, bool on)
{
    if (!self)
        return -OTP_EBADARG;
    return node_job_post(otp_proc_runtime(self), node, otp_self(self), on ? 2 : 3);
}

int otp__monitor_nodes_replay(otp_proc *self)
{
    return node_job_post(otp_proc_runtime(self), OTP_NONE, otp_self(self), 6);
}

int otp__node_add_scope(otp_node *n, otp_term pid)
{
    pthread_mutex_lock(&n->lock);
    otp_term *p = realloc(n->scopes, (n->nscopes + 1) * sizeof *p);
    if (p) {
        p[n->nscopes++] = pid;
        n->scopes = p;
    }
    pthread_mutex_unlock(&n->lock);
    return p ? 0 : -OTP_ENOMEM;
}

unsigned otp__node_home(const otp_node *n)
{
    return n->home;
}

bool otp__node_hidden(const otp_node *n)
{
    return !(n->flags & OTP__DF_PUBLISHED);
}

int otp_monitor_nodes(otp_proc *self, bool on)
{
    if (!self)
        return -OTP_EBADARG;
    return node_job_post(otp_proc_runtime(self), OTP_NONE, otp_self(self), on ? 4 : 5);
}

/* ------------------------------------------------------------------ ticks */

static void on_tick(otp__shard *sh, otp__stimer *t)
{
    otp_node *n = (otp_node *)((char *)t - offsetof(otp_node, tick));
    uint64_t now = otp__now_ms();
    static const uint8_t tick[4] = {0, 0, 0, 0};
    for (conn *c = n->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == C_UP) {
            if (now - c->last_rx > n->tick_ms) {
                conn_close(c, "not responding (no tick within net_ticktime)");
                continue;
            }
            if (now - c->last_tx >= n->tick_ms / 4 && !c->oq && !c->writing)
                queue_bytes(c, tick, 4);
        } else if (c->state == C_HANDSHAKE && now > c->deadline) {
            conn_close(c, "handshake timed out");
        }
    }
    if (!n->stopping)
        otp__stimer_start(sh, &n->tick, n->tick_ms / 4 < 250 ? n->tick_ms / 4 : 250);
}

/* ------------------------------------------------------ start and stop */

static void maybe_finished(otp_node *n)
{
    /* Closed connections leave the list at once but live until their last
     * op is back: live_conns counts them too. */
    if (!n->stopping || n->ops || n->live_conns || atomic_load(&n->finished))
        return;
    otp__stimer_cancel(n->sh, &n->tick);
    otp__service_done(n->sh, &n->svc);
    atomic_store(&n->finished, true);
    otp__waiter *w = atomic_exchange(&n->stop_waiter, NULL);
    if (w)
        otp__waiter_signal(w);
}

static void stop_here(otp__shard *sh, otp__service *svc)
{
    otp_node *n = (otp_node *)svc;
    if (n->stopping)
        return;
    n->stopping = true;
    otp__stimer_cancel(sh, &n->tick);
    if (n->lfd >= 0) {
        otp__io_close(sh->io, n->lfd);
        n->lfd = -1;
    }
    while (n->conns)
        conn_close(n->conns, NULL);
    maybe_finished(n);
}

static void flush_here(otp__shard *sh, otp__service *svc)
{
    otp_node *n = (otp_node *)svc;
    for (conn *c = n->conns, *next; c; c = next) {
        next = c->next; /* kick_writer may close c */
        if (c->flush) {
            c->flush = false;
            kick_writer(c);
        }
    }
}

static void start_here(otp__shard *sh, void *arg)
{
    otp_node *n = arg;
    n->sh = sh;
    otp__service_add(sh, &n->svc);
    n->aop.done = on_accept;
    n->aop.data = n;
    if (otp__io_accept(sh->io, &n->aop, n->lfd) == 0)
        n->ops++;
    else
        dlog(n, "cannot accept connections");
    otp__timer_init(&n->tick.kt.t);
    n->tick.fn = on_tick;
    otp__stimer_start(sh, &n->tick, 250);
    if (sh->stopping)
        stop_here(sh, &n->svc);
}

static void stop_job(otp__shard *sh, void *arg)
{
    otp_node *n = arg;
    /* The node's own servers end as the runtime's stop ends them: their
     * terminate runs once they are out of the callback they are in. */
    const otp_term servers[] = {n->net_kernel, n->rex, n->global, n->pg};
    pthread_mutex_lock(&n->lock);
    for (size_t i = 0; i < sizeof servers / sizeof servers[0] + n->nscopes; i++) {
        otp_term pid = i < 4 ? servers[i] : n->scopes[i - 4];
        otp_proc *p = pid ? otp__proc_lookup(sh, pid) : NULL;
        if (p && p->state != OTP__P_EXITING && p->beh && p->beh->shutdown)
            p->beh->shutdown(p);
    }
    pthread_mutex_unlock(&n->lock);
    if (!n->stopping) {
        stop_here(sh, &n->svc);
        return;
    }
    if (atomic_load(&n->finished)) {
        otp__waiter *w = atomic_exchange(&n->stop_waiter, NULL);
        if (w)
            otp__waiter_signal(w);
    }
}

/* net_kernel: answers {is_auth, Node} with yes, which is what
 * net_adm:ping asks. */
static int nk_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    *state = NULL;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret nk_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    if (otp_is_tuple(req) && otp_tuple_arity(req) == 2 && otp_tuple_get(req, 0) == a_is_auth)
        return otp_gs_reply(a_yes);
    return otp_gs_reply(otp_atom("error"));
}

static const otp_gen_server_ops nk_ops = {.init = nk_init, .handle_call = nk_call};

/* ---- rex: rpc's server, for the callers that do not use spawn requests
 * (otp_rpc_call, rpc:call from releases before OTP 23, erl_interface's
 * ei_rpc, erl_call): {call, M, F, A, Gl} as a call, {cast, M, F, A, Gl} as
 * a cast, and ei's {From, {call, M, F, A, Gl}} as a plain message answered
 * with {rex, Result}. Each runs in a process of its own, like an Erlang
 * rex, so a slow function holds up no other caller. */

static int rex_spawn(otp_proc *self, otp_term mfa, const otp_from *from, otp_term ei_from,
                     bool call)
{
    otp_node *n = dist_of(otp_proc_runtime(self));
    if (!n || !otp_is_tuple(mfa) || otp_tuple_arity(mfa) != 5)
        return -OTP_EBADARG;
    otp_term m = otp_tuple_get(mfa, 1), f = otp_tuple_get(mfa, 2), args = otp_tuple_get(mfa, 3);
    size_t al = list_len(args);
    if (!otp_is_atom(m) || !otp_is_atom(f) || al == SIZE_MAX)
        return -OTP_EBADARG;
    rpc_job *j = calloc(1, sizeof *j);
    otp_arena *a = otp_arena_new();
    otp__spawn_req *rq = calloc(1, sizeof *rq);
    int rc = j && a && rq ? 0 : -OTP_ENOMEM;
    if (rc == 0) {
        j->n = n;
        j->a = a;
        j->rex = true;
        j->call = call;
        j->module = m;
        j->function = f;
        j->args = otp_copy(a, args);
        j->ei_from = ei_from == OTP_NONE ? OTP_NONE : otp_copy(a, ei_from);
        if (from) {
            j->rex_from = *from;
            j->rex_from.priv_proc = NULL; /* replied from another process */
        }
        j->f = find_fn(n, m, f, al);
        rq->fn = rpc_main;
        rq->arg = j;
        rq->on_exit = rpc_done;
        rq->on_exit_arg = j;
        rc = otp__spawn_here(otp__this_shard(), rq);
    }
    if (rc < 0) {
        otp_arena_free(a);
        free(j);
    }
    free(rq);
    return rc;
}

static otp_gs_ret rex_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    otp_arena *a = otp_proc_arena(self);
    if (otp_is_tuple(req) && otp_tuple_arity(req) == 5 &&
        otp_tuple_get(req, 0) == otp_atom("call")) {
        int rc = rex_spawn(self, req, from, OTP_NONE, true);
        if (rc == 0)
            return otp_gs_noreply();
        return otp_gs_reply(
            OTP_TUPLE(a, otp_atom("badrpc"),
                      rc == -OTP_EBADARG ? otp_atom("badarg") : otp_atom("system_limit")));
    }
    return otp_gs_reply(OTP_TUPLE(a, otp_atom("badrpc"), otp_atom("unknown_request")));
}

static otp_gs_ret rex_cast(otp_proc *self, otp_term msg, void *state)
{
    if (otp_is_tuple(msg) && otp_tuple_arity(msg) == 5 && otp_tuple_get(msg, 0) == otp_atom("cast"))
        rex_spawn(self, msg, NULL, OTP_NONE, false);
    return otp_gs_noreply();
}

static otp_gs_ret rex_info(otp_proc *self, otp_term msg, void *state)
{
    if (otp_is_tuple(msg) && otp_tuple_arity(msg) == 2 && otp_is_pid(otp_tuple_get(msg, 0))) {
        otp_term req = otp_tuple_get(msg, 1);
        if (otp_is_tuple(req) && otp_tuple_arity(req) == 5 &&
            otp_tuple_get(req, 0) == otp_atom("call") &&
            rex_spawn(self, req, NULL, otp_tuple_get(msg, 0), true) == -OTP_EBADARG)
            otp_send(
                self, otp_tuple_get(msg, 0),
                OTP_TUPLE(otp_proc_arena(self), otp_atom("rex"),
                          OTP_TUPLE(otp_proc_arena(self), otp_atom("badrpc"), otp_atom("badarg"))));
    }
    return otp_gs_noreply();
}

static const otp_gen_server_ops rex_ops = {
    .init = nk_init, .handle_call = rex_call, .handle_cast = rex_cast, .handle_info = rex_info};

/* ------------------------------------------------------------------ global
 *
 * A visible node must answer global's connection protocol, or
 * global:sync() blocks forever on every Erlang node that sees it
 * (dist-protocol.md §6.4). This server answers it as a node with no global
 * names of its own and no locks to defend: it acts as its own locker,
 * grants every lock, and sends the init_connect, lock_set, exchange and
 * resolved messages global (protocol 8) waits for, once per connection. */

typedef struct gpeer {
    otp_term node;
    otp_term his_tag; /* in the server's arena */
    int64_t my_tag;
    bool locked, exchanged;
} gpeer;

typedef struct gserv {
    otp_arena *a;
    gpeer *peers;
    size_t n, cap;
    int64_t next_tag;
} gserv;

static otp_term a_gns;

static gpeer *gpeer_of(gserv *g, otp_term node)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->peers[i].node == node)
            return &g->peers[i];
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        gpeer *p = realloc(g->peers, cap * sizeof *p);
        if (!p)
            return NULL;
        g->peers = p;
        g->cap = cap;
    }
    gpeer *p = &g->peers[g->n++];
    memset(p, 0, sizeof *p);
    p->node = node;
    p->his_tag = OTP_NONE;
    return p;
}

static int gs_global_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    gserv *g = calloc(1, sizeof *g);
    if (!g || !(g->a = otp_arena_new())) {
        free(g);
        *reason = otp_atom("enomem");
        return OTP_GS_INIT_STOP;
    }
    g->next_tag = -(INT64_C(1) << 59); /* where OTP's unique integers start */
    *state = g;
    return OTP_GS_INIT_OK;
}

static void gs_global_terminate(otp_proc *self, otp_term reason, void *state)
{
    gserv *g = state;
    otp_arena_free(g->a);
    free(g->peers);
    free(g);
}

static void gcast(otp_proc *self, otp_term node, otp_term msg)
{
    otp_arena *a = otp_proc_arena(self);
    otp_send(self, OTP_TUPLE(a, a_gns, node), OTP_TUPLE(a, otp_atom("$gen_cast"), msg));
}

static otp_gs_ret gs_global_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    size_t ar = otp_is_tuple(req) ? otp_tuple_arity(req) : 0;
    otp_term tag = ar ? otp_tuple_get(req, 0) : req;
    /* set_lock, del_lock, register, unregister, register_ext: granted */
    if (tag == otp_atom("get_known") || tag == otp_atom("get_synced") ||
        tag == otp_atom("get_names_ext"))
        return otp_gs_reply(OTP_NIL);
    if (tag == otp_atom("get_protocol_version"))
        return otp_gs_reply(otp_small(8));
    return otp_gs_reply(otp_atom("true"));
}

static otp_gs_ret gs_global_cast(otp_proc *self, otp_term msg, void *state)
{
    gserv *g = state;
    otp_arena *a = otp_proc_arena(self);
    size_t ar = otp_is_tuple(msg) ? otp_tuple_arity(msg) : 0;
    otp_term tag = ar ? otp_tuple_get(msg, 0) : OTP_NONE;
    otp_term me = otp_runtime_node(otp_proc_runtime(self));
    if (tag == otp_atom("init_connect") && ar == 4) {
        /* {init_connect, {Vsn, HisTag}, Node, {locker, _, _, HisLocker}} */
        otp_term vsn = otp_tuple_get(msg, 1), node = otp_tuple_get(msg, 2);
        if (!otp_is_tuple(vsn) || otp_tuple_arity(vsn) < 2 || !otp_is_atom(node))
            return otp_gs_noreply();
        gpeer *p = gpeer_of(g, node);
        if (!p)
            return otp_gs_noreply();
        p->his_tag = otp_copy(g->a, otp_tuple_get(vsn, 1));
        p->my_tag = g->next_tag++;
        p->locked = p->exchanged = false;
        otp_term my_tag = otp_int(a, p->my_tag);
        /* ours first (it carries our tag), then the ack naming both */
        gcast(self, node,
              OTP_TUPLE(a, otp_atom("init_connect"), OTP_TUPLE(a, otp_small(8), my_tag), me,
                        OTP_TUPLE(a, otp_atom("locker"), otp_atom("no_longer_a_pid"),
                                  otp_map_v(a, 0, NULL, NULL), otp_self(self))));
        otp_send(self, OTP_TUPLE(a, a_gns, node),
                 OTP_TUPLE(a, otp_atom("init_connect_ack"), me, p->his_tag, my_tag));
        return otp_gs_noreply();
    }
    if (tag == otp_atom("lock_set") && ar >= 4) {
        otp_term pid = otp_tuple_get(msg, 1);
        otp_term node = otp_is_pid(pid) ? otp__dist_node_of(pid) : OTP_NONE;
        gpeer *p = node != OTP_NONE ? gpeer_of(g, node) : NULL;
        if (p && p->his_tag != OTP_NONE && !p->locked &&
            otp_tuple_get(msg, 2) == otp_atom("true")) {
            p->locked = true;
            gcast(self, node,
                  OTP_TUPLE(a, otp_atom("lock_set"), otp_self(self), otp_atom("true"), OTP_NIL,
                            p->his_tag));
        }
        return otp_gs_noreply();
    }
    if (tag == otp_atom("exchange") && ar == 5) {
        /* {exchange, Node, NameList, NameExtList, MyTag}: ours, then resolved */
        otp_term node = otp_tuple_get(msg, 1);
        gpeer *p = otp_is_atom(node) ? gpeer_of(g, node) : NULL;
        if (p && p->his_tag != OTP_NONE && !p->exchanged) {
            p->exchanged = true;
            gcast(self, node, OTP_TUPLE(a, otp_atom("exchange"), me, OTP_NIL, OTP_NIL, p->his_tag));
            gcast(self, node,
                  OTP_TUPLE(a, otp_atom("resolved"), me, OTP_NIL, OTP_NIL, otp_atom("unused"),
                            OTP_NIL, p->his_tag));
        }
        return otp_gs_noreply();
    }
    /* resolved, new_nodes, in_sync, async_del_*: nothing to keep */
    return otp_gs_noreply();
}

static const otp_gen_server_ops global_ops = {.init = gs_global_init,
                                              .handle_call = gs_global_call,
                                              .handle_cast = gs_global_cast,
                                              .terminate = gs_global_terminate};

static int read_cookie(char *out, size_t cap, size_t *len)
{
    const char *home = getenv("HOME");
    if (!home)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/.erlang.cookie", home);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        n--;
    out[n] = 0;
    *len = n;
    return n ? 0 : -1;
}

static void quiesce_job(otp__shard *sh, void *arg)
{
    otp__waiter *w = arg;
    otp__waiter_signal(w);
}

static void init_atoms(void)
{
    a_is_auth = otp_atom("is_auth");
    a_yes = otp_atom("yes");
    a_net_kernel = otp_atom("net_kernel");
    a_empty = otp_atom("");
    a_gns = otp_atom("global_name_server");
    otp__pg_init_atoms();
}

int otp_node_start(otp_runtime *rt, const otp_node_config *cfg, otp_node **out, otp_error *err)
{
    otp_node_config c = {0};
    if (cfg)
        c = *cfg;
    if (!rt || !out)
        return otp__epmd_fail(err, OTP_EBADARG, "rt and out are required");
    if (atomic_load(&rt->state) != OTP__RT_RUNNING)
        return otp__epmd_fail(err, OTP_ESTOPPED, "the runtime is not running");
    otp__shard *here = otp__this_shard();
    if (here && here->rt == rt)
        return otp__epmd_fail(err, OTP_ECONTEXT, "otp_node_start blocks: call it from a thread");
    if (c.shard >= rt->nshards)
        return otp__epmd_fail(err, OTP_EBADARG, "shard %u out of range", c.shard);
    const char *name = otp_atom_cstr(rt->node);
    const char *at = strchr(name, '@');
    if (!at || at == name || !at[1] || rt->node == OTP_ATOM_NONODE)
        return otp__epmd_fail(err, OTP_EBADARG,
                              "the runtime's node name must be name@host (node_name)");
    if (atomic_load(&rt->dist))
        return otp__epmd_fail(err, OTP_EEXIST, "the runtime's node is started already");
    /* once: the nodes of other runtimes read them from their shards */
    static pthread_once_t atoms_once = PTHREAD_ONCE_INIT;
    pthread_once(&atoms_once, init_atoms);
    otp_node *n = calloc(1, sizeof *n);
    if (!n)
        return otp__epmd_fail(err, OTP_ENOMEM, "no memory");
    snprintf(n->name, sizeof n->name, "%s", name);
    n->rt = rt;
    n->node = rt->node;
    n->home = c.shard;
    n->lfd = -1;
    n->tick_ms = (uint64_t)(c.net_ticktime ? c.net_ticktime : 60) * 1000;
    n->setup_ms = c.setup_timeout_ms ? c.setup_timeout_ms : 7000;
    n->svc.stop = stop_here;
    n->svc.flush = flush_here;
    pthread_mutex_init(&n->lock, NULL);
    /* Erlang's +zdbbl default, 1024 KB */
    n->busy_limit = c.dist_buf_busy_limit ? (int64_t)c.dist_buf_busy_limit : 1024 * 1024;
    /* What this layer handles: the mandatory set, and the optional
     * features it implements both ways. */
    n->flags = OTP__DF_REQUIRED | OTP__DF_UNICODE_IO | OTP__DF_SMALL_ATOM_TAGS | OTP__DF_SPAWN |
               OTP__DF_DIST_MONITOR | OTP__DF_DIST_MONITOR_NAME | OTP__DF_DIST_HDR_ATOM_CACHE |
               OTP__DF_FRAGMENTS | OTP__DF_ALIAS | (c.hidden ? 0 : OTP__DF_PUBLISHED);
    int rc;
    if (c.cookie) {
        n->cookie_len = strlen(c.cookie);
        if (n->cookie_len >= sizeof n->cookie) {
            rc = otp__epmd_fail(err, OTP_EBADARG, "cookie too long");
            goto fail;
        }
        memcpy(n->cookie, c.cookie, n->cookie_len + 1);
    } else if (read_cookie(n->cookie, sizeof n->cookie, &n->cookie_len) < 0) {
        rc = otp__epmd_fail(err, OTP_EIO, "no cookie given and no ~/.erlang.cookie to read");
        goto fail;
    }
    /* inet_dist_listen_min/max: the first port of the range that is free */
    unsigned last = c.port && c.port_max > c.port ? c.port_max : c.port;
    for (unsigned p = c.port;; p++) {
        n->lfd = otp__tcp_listen(NULL, (uint16_t)p, 128, &n->port);
        if (n->lfd != -EADDRINUSE || p >= last)
            break;
    }
    if (n->lfd < 0) {
        if (last != c.port)
            rc = otp__epmd_fail(err, OTP_EIO, "cannot listen on any port in %u-%u: %s", c.port,
                                last, strerror(-n->lfd));
        else
            rc = otp__epmd_fail(err, OTP_EIO, "cannot listen on port %u: %s", c.port,
                                strerror(-n->lfd));
        n->lfd = -1;
        goto fail;
    }
    char alive[OTP__HS_MAX_NAME + 1];
    snprintf(alive, sizeof alive, "%.*s", (int)(at - name), name);
    otp_epmd_config ec = {.name = alive,
                          .port = n->port,
                          .hidden = c.hidden,
                          .epmd_port = c.epmd_port,
                          .client_only = c.epmd_client_only,
                          .shard = c.shard};
    rc = otp_epmd_start(rt, &ec, &n->epmd, err);
    if (rc < 0)
        goto fail;
    /* The node takes EPMD's creation: no pid or ref of it exists yet. */
    n->creation = otp_epmd_creation(n->epmd);
    rt->creation = n->creation;
    atomic_store_explicit(&otp__local_nodes[rt->node_slot].creation, n->creation,
                          memory_order_release);
    if (otp__shard_post(rt, c.shard, start_here, n) < 0) {
        rc = otp__epmd_fail(err, OTP_ENOMEM, "no memory");
        otp_epmd_stop(n->epmd);
        goto fail;
    }
    /* release: senders on other shards read the node's fields after this */
    atomic_store_explicit(&rt->dist, n, memory_order_release);
    otp_gen_server_opts go = {.shard = (int)c.shard, .name = a_net_kernel};
    otp_term reason;
    if (otp_gen_server_start(rt, NULL, &nk_ops, OTP_NIL, &go, &n->net_kernel, &reason) < 0)
        dlog(n, "cannot start net_kernel");
    go.name = otp_atom("rex");
    if (otp_gen_server_start(rt, NULL, &rex_ops, OTP_NIL, &go, &n->rex, &reason) < 0)
        dlog(n, "cannot start rex");
    if (otp__node_builtin_fns(n) < 0)
        dlog(n, "cannot register erlang's BIFs for rpc");
    if (!c.hidden) {
        /* global talks to visible nodes only */
        otp_gen_server_opts gso = {.shard = (int)c.shard, .name = a_gns};
        if (otp_gen_server_start(rt, NULL, &global_ops, OTP_NIL, &gso, &n->global, &reason) < 0)
            dlog(n, "cannot start global_name_server");
        if (otp__pg_start(rt, c.shard, otp_atom("pg"), &n->pg) < 0)
            dlog(n, "cannot start the pg scope");
    }
    *out = n;
    return 0;
fail:
    if (n->lfd >= 0)
        close(n->lfd);
    pthread_mutex_destroy(&n->lock);
    free(n);
    return rc;
}

void otp_node_stop(otp_node *n)
{
    if (!n)
        return;
    otp_runtime *rt = n->rt;
    atomic_store_explicit(&rt->dist, NULL, memory_order_release);
    if (!atomic_load(&n->finished)) {
        /* Every shard passes a point after the store: no send in progress
         * still holds n. Then the home shard closes everything. */
        for (unsigned i = 0; i < rt->nshards && atomic_load(&rt->state) == OTP__RT_RUNNING; i++) {
            otp__waiter w;
            otp__waiter_init(&w);
            if (otp__shard_post(rt, i, quiesce_job, &w) == 0)
                otp__waiter_wait(&w);
            otp__waiter_destroy(&w);
        }
        otp__waiter w;
        otp__waiter_init(&w);
        atomic_store(&n->stop_waiter, &w);
        if (!atomic_load(&n->finished) && otp__shard_post(rt, n->home, stop_job, n) == 0)
            otp__waiter_wait(&w);
        otp__waiter_destroy(&w);
    }
    /* The home shard is done with them: no new connector can start. */
    for (size_t i = 0; i < n->nthreads; i++)
        pthread_join(n->threads[i], NULL);
    free(n->threads);
    free(n->nodemons);
    free(n->nodesubs);
    free(n->scopes);
    while (n->fns) {
        rpc_fn *f = n->fns;
        n->fns = f->next;
        free(f);
    }
    otp_epmd_stop(n->epmd);
    pthread_mutex_destroy(&n->lock);
    free(n->up);
    free(n->uphidden);
    free(n);
}

uint16_t otp_node_port(const otp_node *n)
{
    return n->port;
}

otp_epmd *otp_node_epmd(otp_node *n)
{
    return n->epmd;
}
