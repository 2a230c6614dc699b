/* io_epoll.c — the epoll backend: completions emulated over edge-triggered
 * readiness. Every op tries its syscall at once; only on EAGAIN does it
 * queue on its socket (a read queue and a write queue per fd) until the next
 * edge. Results go to a ready list that otp__io_wait delivers. Connect
 * timeouts sit in a small binary heap.
 *
 * The edge-triggered invariant everything here keeps: a socket's queue is
 * either empty, or its head has seen EAGAIN since the last edge. So an op
 * arriving at an empty queue must try first (an edge may have gone by
 * unseen), and running a queue goes on until it empties or hits EAGAIN.
 *
 * Pooled receives take a buffer from the user-space pool for each attempt
 * and give it back on EAGAIN. A head that finds the pool empty has not seen
 * EAGAIN, so no edge will come for it: its socket goes on the starved list,
 * and each release runs the starved sockets' read queues again.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "io_backend.h"

enum { ST_QUEUED = 1, ST_READY = 2, ST_DELIVERING = 3 }; /* op->priv.state */

#define WAKE_KEY   UINT64_MAX /* epoll data of the eventfd; sockets carry their fd */
#define MAX_EVENTS 256
#define SEND_IOV   64 /* iovec elements one sendmsg takes from a send */

typedef struct fdq {
    otp__io_op *rhead, *rtail; /* accept, recv */
    otp__io_op *whead, *wtail; /* connect, send */
    bool registered;
    bool starved;     /* on the starved list: rhead waits for a buffer */
    int sprev, snext; /* the starved list, by fd; -1 ends it */
} fdq;

/* attempt()'s answer when a pooled receive finds the pool empty; outside
 * the -errno range, so a recv(2) error cannot be taken for it. */
#define NO_BUF INT64_MIN

typedef struct ep {
    otp__io base;
    int epfd;
    fdq *fds; /* indexed by fd */
    size_t nfds;
    otp__io_op *ready, *ready_tail;
    size_t nready;
    otp__io_op **heap; /* connects with a deadline, earliest first */
    size_t heap_len, heap_cap;
    otp__io_op *delivering;         /* the accept whose callback is running */
    int starved_head, starved_tail; /* sockets whose read queue waits for a buffer */
    size_t nstarved;
    bool polled; /* the last wait called epoll_wait */
    struct epoll_event events[MAX_EVENTS];
} ep;

static ep *E(otp__io *io)
{
    return (ep *)io;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- queues and the ready list ---- */

static void q_push(otp__io_op **head, otp__io_op **tail, otp__io_op *op)
{
    op->priv.next = NULL;
    op->priv.prev = *tail;
    if (*tail)
        (*tail)->priv.next = op;
    else
        *head = op;
    *tail = op;
    op->priv.state = ST_QUEUED;
}

static void q_del(otp__io_op **head, otp__io_op **tail, otp__io_op *op)
{
    if (op->priv.prev)
        op->priv.prev->priv.next = op->priv.next;
    else
        *head = op->priv.next;
    if (op->priv.next)
        op->priv.next->priv.prev = op->priv.prev;
    else
        *tail = op->priv.prev;
    op->priv.next = op->priv.prev = NULL;
}

static bool reads(const otp__io_op *op)
{
    return op->priv.kind == OTP__IO_K_ACCEPT || op->priv.kind == OTP__IO_K_RECV ||
           op->priv.kind == OTP__IO_K_RECV_POOLED;
}

static void q_unlink(ep *e, otp__io_op *op)
{
    fdq *q = &e->fds[op->priv.fd];
    if (reads(op))
        q_del(&q->rhead, &q->rtail, op);
    else
        q_del(&q->whead, &q->wtail, op);
}

static void ready_push(ep *e, otp__io_op *op, int64_t res)
{
    op->priv.res = res;
    op->priv.state = ST_READY;
    op->priv.next = op->priv.prev = NULL;
    if (e->ready_tail)
        e->ready_tail->priv.next = op;
    else
        e->ready = op;
    e->ready_tail = op;
    e->nready++;
}

/* ---- the starved list: sockets in FIFO order, so none waits forever ---- */

static void starve(ep *e, otp__sock fd)
{
    fdq *q = &e->fds[fd];
    if (q->starved)
        return;
    q->starved = true;
    q->snext = -1;
    q->sprev = e->starved_tail;
    if (e->starved_tail >= 0)
        e->fds[e->starved_tail].snext = fd;
    else
        e->starved_head = fd;
    e->starved_tail = fd;
    e->nstarved++;
    e->base.stats.pool_waits++;
}

static void unstarve(ep *e, otp__sock fd)
{
    fdq *q = &e->fds[fd];
    if (!q->starved)
        return;
    if (q->sprev >= 0)
        e->fds[q->sprev].snext = q->snext;
    else
        e->starved_head = q->snext;
    if (q->snext >= 0)
        e->fds[q->snext].sprev = q->sprev;
    else
        e->starved_tail = q->sprev;
    q->starved = false;
    e->nstarved--;
}

/* ---- the connect-timer heap ---- */

static bool heap_less(ep *e, size_t a, size_t b)
{
    return e->heap[a]->priv.u.connect.deadline_ms < e->heap[b]->priv.u.connect.deadline_ms;
}

static void heap_swap(ep *e, size_t a, size_t b)
{
    otp__io_op *t = e->heap[a];
    e->heap[a] = e->heap[b];
    e->heap[b] = t;
    e->heap[a]->priv.heap = (int32_t)a;
    e->heap[b]->priv.heap = (int32_t)b;
}

static void heap_fix(ep *e, size_t i)
{
    while (i > 0 && heap_less(e, i, (i - 1) / 2)) {
        heap_swap(e, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < e->heap_len && heap_less(e, l, m))
            m = l;
        if (l + 1 < e->heap_len && heap_less(e, l + 1, m))
            m = l + 1;
        if (m == i)
            return;
        heap_swap(e, i, m);
        i = m;
    }
}

static int heap_push(ep *e, otp__io_op *op)
{
    if (e->heap_len == e->heap_cap) {
        size_t cap = e->heap_cap ? e->heap_cap * 2 : 16;
        otp__io_op **h = realloc(e->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        e->heap = h;
        e->heap_cap = cap;
    }
    e->heap[e->heap_len] = op;
    op->priv.heap = (int32_t)e->heap_len++;
    heap_fix(e, e->heap_len - 1);
    return 0;
}

static void heap_del(ep *e, otp__io_op *op)
{
    if (op->priv.heap < 0)
        return;
    size_t i = (size_t)op->priv.heap;
    op->priv.heap = -1;
    if (i != --e->heap_len) {
        e->heap[i] = e->heap[e->heap_len];
        e->heap[i]->priv.heap = (int32_t)i;
        heap_fix(e, i);
    }
}

/* ---- sockets ---- */

static int fd_slot(ep *e, otp__sock fd)
{
    if ((size_t)fd < e->nfds)
        return 0;
    size_t n = e->nfds ? e->nfds : 64;
    while (n <= (size_t)fd)
        n *= 2;
    fdq *f = realloc(e->fds, n * sizeof *f);
    if (!f)
        return -ENOMEM;
    memset(f + e->nfds, 0, (n - e->nfds) * sizeof *f);
    e->fds = f;
    e->nfds = n;
    return 0;
}

/* Registered once, for both directions, at the first op on the socket; from
 * then on parking an op costs no syscall. otp__io_close deregisters. */
static int fd_register(ep *e, otp__sock fd)
{
    int r = fd_slot(e, fd);
    if (r)
        return r;
    fdq *q = &e->fds[fd];
    if (q->registered)
        return 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)fd};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 &&
        (errno != EEXIST || epoll_ctl(e->epfd, EPOLL_CTL_MOD, fd, &ev) < 0))
        return -errno;
    q->registered = true;
    return 0;
}

/* ---- attempts: a result, or -EAGAIN to wait for the next edge ---- */

static int64_t try_accept(otp__io_op *op)
{
    for (;;) {
        int fd = accept4(op->priv.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            return fd;
        switch (errno) {
        /* The connection died in the queue, or (accept(2), Linux notes) a
         * network error of the new socket surfaced here: the listener is
         * fine, take the next one. */
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            continue;
        default:
            return -errno;
        }
    }
}

static int64_t try_recv(otp__io_op *op)
{
    for (;;) {
        ssize_t n = recv(op->priv.fd, op->priv.u.recv.buf, op->priv.u.recv.len, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

/* A buffer from the pool for this one attempt: kept if data came, given
 * back otherwise, so a socket waiting for data holds none. */
static int64_t try_recv_pooled(ep *e, otp__io_op *op)
{
    otp__io_pool *p = &e->base.pool;
    unsigned char *buf = otp__io_pool_take(p);
    if (!buf)
        return NO_BUF;
    for (;;) {
        ssize_t n = recv(op->priv.fd, buf, p->size, MSG_DONTWAIT);
        if (n > 0) {
            op->priv.u.recv.buf = buf;
            return n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        int64_t r = n < 0 ? -errno : 0;
        otp__io_pool_put(p, otp__io_pool_index(p, buf));
        return r;
    }
}

/* Writes until all is sent or EAGAIN. The caller's iovec array is const,
 * so each sendmsg takes a stack copy of up to SEND_IOV elements with the
 * first one trimmed by what is already sent. */
static int64_t try_send(ep *e, otp__io_op *op)
{
    struct otp__io_send_state *s = &op->priv.u.send;
    size_t cap = e->base.cfg.send_chunk_max ? e->base.cfg.send_chunk_max : SIZE_MAX;
    while (s->sent < s->total) {
        struct iovec v[SEND_IOV];
        int n = 0;
        size_t bytes = 0;
        for (int i = s->idx; i < s->iovcnt && n < SEND_IOV && bytes < cap; i++) {
            size_t off = i == s->idx ? s->off : 0;
            size_t len = s->iov[i].iov_len - off;
            if (len > cap - bytes)
                len = cap - bytes;
            v[n].iov_base = (char *)s->iov[i].iov_base + off;
            v[n].iov_len = len;
            bytes += len;
            n++;
        }
        struct msghdr msg = {.msg_iov = v, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(op->priv.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        otp__io_send_advance(op, (size_t)w);
        if (s->sent < s->total)
            e->base.stats.short_sends++;
    }
    return (int64_t)s->total;
}

/* Writable after connect(2): SO_ERROR names a failure; success needs a peer,
 * since a socket is also "writable" before its connect has finished (a fresh
 * socket reports EPOLLOUT|EPOLLHUP as soon as it is registered). */
static int64_t try_connected(otp__io_op *op)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(op->priv.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    if (err)
        return -err;
    struct sockaddr_storage peer;
    len = sizeof peer;
    if (getpeername(op->priv.fd, (struct sockaddr *)&peer, &len) == 0)
        return 0;
    return errno == ENOTCONN ? -EAGAIN : -errno;
}

static int64_t attempt(ep *e, otp__io_op *op)
{
    switch (op->priv.kind) {
    case OTP__IO_K_ACCEPT:
        return try_accept(op);
    case OTP__IO_K_RECV:
        return try_recv(op);
    case OTP__IO_K_RECV_POOLED:
        return try_recv_pooled(e, op);
    case OTP__IO_K_SEND:
        return try_send(e, op);
    default:
        return try_connected(op);
    }
}

/* An op arriving at its queue: try now if nobody is ahead, else line up. */
static void start(ep *e, otp__io_op *op)
{
    fdq *q = &e->fds[op->priv.fd];
    otp__io_op **head = reads(op) ? &q->rhead : &q->whead;
    otp__io_op **tail = reads(op) ? &q->rtail : &q->wtail;
    if (!*head) {
        int64_t r = attempt(e, op);
        if (r == NO_BUF)
            starve(e, op->priv.fd);
        else if (r != -EAGAIN) {
            ready_push(e, op, r);
            return;
        }
    }
    q_push(head, tail, op);
}

/* After an edge (or a buffer release): attempt queued ops in order until
 * EAGAIN, or until a pooled receive finds the pool empty. */
static void run_queue(ep *e, otp__io_op **head, otp__io_op **tail)
{
    while (*head) {
        otp__io_op *op = *head;
        int64_t r = attempt(e, op);
        if (r == NO_BUF)
            starve(e, op->priv.fd);
        if (r == -EAGAIN || r == NO_BUF)
            return;
        q_del(head, tail, op);
        heap_del(e, op);
        ready_push(e, op, r);
    }
}

/* ---- submissions ---- */

static int e_accept(otp__io *io, otp__io_op *op)
{
    ep *e = E(io);
    int r = fd_register(e, op->priv.fd);
    if (r)
        return r;
    start(e, op);
    return 0;
}

static int e_connect(otp__io *io, otp__io_op *op, const struct sockaddr *sa, socklen_t len,
                     uint64_t timeout_ms)
{
    ep *e = E(io);
    int r = fd_register(e, op->priv.fd);
    if (r)
        return r;
    op->priv.u.connect.deadline_ms = timeout_ms ? mono_ms() + timeout_ms : 0;
    if (timeout_ms && (r = heap_push(e, op)) < 0)
        return r;
    if (connect(op->priv.fd, sa, len) == 0) {
        heap_del(e, op);
        ready_push(e, op, 0);
        return 0;
    }
    if (errno != EINPROGRESS && errno != EINTR) { /* EINTR: it goes on in the background */
        heap_del(e, op);
        ready_push(e, op, -errno);
        return 0;
    }
    fdq *q = &e->fds[op->priv.fd];
    q_push(&q->whead, &q->wtail, op);
    return 0;
}

static int e_recv(otp__io *io, otp__io_op *op, void *buf, size_t len)
{
    ep *e = E(io);
    int r = fd_register(e, op->priv.fd);
    if (r)
        return r;
    op->priv.u.recv.buf = buf;
    op->priv.u.recv.len = len;
    start(e, op);
    return 0;
}

static int e_recv_pooled(otp__io *io, otp__io_op *op)
{
    ep *e = E(io);
    int r = io->pool.mem ? 0 : otp__io_pool_init(io, "user_pool");
    if (r == 0)
        r = fd_register(e, op->priv.fd);
    if (r)
        return r;
    start(e, op);
    return 0;
}

/* The starved sockets' read queues, oldest first, while buffers last. Only
 * those starved now: one that starves again goes to the back and waits for
 * the next release. */
static void feed_starved(ep *e)
{
    for (size_t n = e->nstarved; n && e->base.pool.nfree && e->starved_head >= 0; n--) {
        int fd = e->starved_head;
        unstarve(e, fd);
        run_queue(e, &e->fds[fd].rhead, &e->fds[fd].rtail);
    }
}

static void e_buf_release(otp__io *io, unsigned i)
{
    ep *e = E(io);
    otp__io_pool_put(&io->pool, i);
    feed_starved(e);
}

static int e_send(otp__io *io, otp__io_op *op, const struct iovec *iov, int iovcnt, uint64_t total)
{
    ep *e = E(io);
    int r = fd_register(e, op->priv.fd);
    if (r)
        return r;
    start(e, op);
    return 0;
}

static int e_cancel(otp__io *io, otp__io_op *op)
{
    ep *e = E(io);
    op->priv.flags |= OTP__IO_F_CANCEL;
    if (op->priv.state == ST_QUEUED) {
        fdq *q = &e->fds[op->priv.fd];
        bool starved_head = q->starved && q->rhead == op;
        q_unlink(e, op);
        heap_del(e, op);
        ready_push(e, op, -ECANCELED);
        /* The op behind a starved head has not tried yet and the socket may
         * be readable: no edge will tell, so try it now. */
        if (starved_head) {
            unstarve(e, op->priv.fd);
            run_queue(e, &q->rhead, &q->rtail);
        }
    }
    /* ST_READY: the result stands (an accept delivers its connection, then
     * -ECANCELED); ST_DELIVERING: the accept ends after its callback. */
    return 0;
}

static int e_close(otp__io *io, otp__sock fd)
{
    ep *e = E(io);
    if ((size_t)fd < e->nfds) {
        fdq *q = &e->fds[fd];
        otp__io_op *lists[2] = {q->rhead, q->whead};
        q->rhead = q->rtail = q->whead = q->wtail = NULL;
        for (int i = 0; i < 2; i++)
            for (otp__io_op *op = lists[i], *next; op; op = next) {
                next = op->priv.next;
                op->priv.flags |= OTP__IO_F_CANCEL;
                heap_del(e, op);
                ready_push(e, op, -ECANCELED);
            }
        /* An accept holding a connection for delivery must not go back to
         * accepting on this number, which may be someone else's by then. */
        for (otp__io_op *op = e->ready; op; op = op->priv.next)
            if (op->priv.fd == fd)
                op->priv.flags |= OTP__IO_F_CANCEL;
        if (e->delivering && e->delivering->priv.fd == fd)
            e->delivering->priv.flags |= OTP__IO_F_CANCEL;
        unstarve(e, fd);
        if (q->registered)
            (void)epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
        q->registered = false;
    }
    return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

/* Pending here means queued on the socket, or done and not yet delivered
 * (the ready list, an accept in its callback); walking the ready list is
 * fine for a call made once per hand-over. */
static int e_detach(otp__io *io, otp__sock fd)
{
    ep *e = E(io);
    if ((size_t)fd >= e->nfds)
        return 0;
    fdq *q = &e->fds[fd];
    if (q->rhead || q->whead || (e->delivering && e->delivering->priv.fd == fd))
        return -EBUSY;
    for (otp__io_op *op = e->ready; op; op = op->priv.next)
        if (op->priv.fd == fd)
            return -EBUSY;
    unstarve(e, fd);
    /* Its edges would otherwise keep arriving here, where nothing waits for
     * them, and the new owner's EPOLL_CTL_ADD is on another epoll set. */
    if (q->registered)
        (void)epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
    q->registered = false;
    return 0;
}

/* ---- the wait ---- */

static void expire(ep *e)
{
    uint64_t now = mono_ms();
    while (e->heap_len && e->heap[0]->priv.u.connect.deadline_ms <= now) {
        otp__io_op *op = e->heap[0];
        heap_del(e, op);
        q_unlink(e, op);
        ready_push(e, op, -ETIMEDOUT);
    }
}

static int deliver(ep *e)
{
    /* Only what is ready now: ops that callbacks submit and that succeed at
     * once are delivered by the next wait, so one wait is bounded. */
    size_t n = e->nready;
    int count = 0;
    while (n-- && e->ready) {
        otp__io_op *op = e->ready;
        e->ready = op->priv.next;
        if (!e->ready)
            e->ready_tail = NULL;
        e->nready--;
        op->priv.next = NULL;
        int64_t res = op->priv.res;
        count++;
        e->base.stats.completions++;
        if (op->priv.kind != OTP__IO_K_ACCEPT || res < 0) {
            op->priv.state = 0;
            op->done(op, res); /* may resubmit or free op */
            continue;
        }
        /* A connection: the accept stays pending through its callback. */
        op->priv.state = ST_DELIVERING;
        e->delivering = op;
        op->done(op, res);
        e->delivering = NULL;
        if (op->priv.flags & OTP__IO_F_CANCEL) {
            count++;
            e->base.stats.completions++;
            op->priv.state = 0;
            op->done(op, -ECANCELED);
            continue;
        }
        start(e, op); /* the queue may hold more: it gets no edge for them */
    }
    return count;
}

static int e_wait(otp__io *io, uint64_t timeout_ms)
{
    ep *e = E(io);
    int tmo;
    if (e->nready || timeout_ms == 0)
        tmo = 0;
    else
        tmo = timeout_ms == UINT64_MAX ? -1 : timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
    if (tmo != 0 && e->heap_len) {
        uint64_t now = mono_ms(), d = e->heap[0]->priv.u.connect.deadline_ms;
        int left = d <= now ? 0 : d - now > INT_MAX ? INT_MAX : (int)(d - now);
        if (tmo < 0 || left < tmo)
            tmo = left;
    }
    /* Ops that succeeded at their first try are ready without the kernel's
     * help: deliver them without polling, but never twice in a row, so other
     * sockets' events wait at most one round. Saves a syscall per
     * request/response turn. */
    int n = 0;
    if (tmo == 0 && e->nready && e->polled) {
        e->polled = false;
    } else {
        e->polled = true;
        n = epoll_wait(e->epfd, e->events, MAX_EVENTS, tmo);
        if (n < 0) {
            if (errno != EINTR)
                return -errno;
            n = 0;
        }
    }
    for (int i = 0; i < n; i++) {
        uint64_t key = e->events[i].data.u64;
        uint32_t ev = e->events[i].events;
        if (key == WAKE_KEY) {
            uint64_t v;
            while (read(e->base.wake_fd, &v, sizeof v) < 0 && errno == EINTR) {
            }
            e->base.stats.wakes++;
            continue;
        }
        if (key >= e->nfds)
            continue;
        fdq *q = &e->fds[key];
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            run_queue(e, &q->rhead, &q->rtail);
        if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
            run_queue(e, &q->whead, &q->wtail);
    }
    if (e->heap_len)
        expire(e);
    return deliver(e);
}

static void e_destroy(otp__io *io)
{
    ep *e = E(io);
    close(e->epfd);
    close(e->base.wake_fd);
    free(e->fds);
    free(e->heap);
    otp__io_pool_fini(&io->pool);
    free(e);
}

static int e_pollfd(otp__io *io)
{
    return ((ep *)io)->epfd;
}

static const otp__io_ops epoll_ops = {
    .name = "epoll",
    .destroy = e_destroy,
    .accept = e_accept,
    .connect = e_connect,
    .recv = e_recv,
    .recv_pooled = e_recv_pooled,
    .send = e_send,
    .cancel = e_cancel,
    .close = e_close,
    .detach = e_detach,
    .buf_release = e_buf_release,
    .wait = e_wait,
    .wake_from = NULL,
    .pollfd = e_pollfd,
};

int otp__io_epoll_create(otp__io **out, const otp__io_config *cfg)
{
    ep *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->base.ops = &epoll_ops;
    e->base.cfg = *cfg;
    e->starved_head = e->starved_tail = -1;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    /* Level-triggered and drained on each event: no edge to lose. */
    e->base.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_KEY};
    if (e->epfd < 0 || e->base.wake_fd < 0 ||
        epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->base.wake_fd, &ev) < 0) {
        int r = -errno;
        if (e->epfd >= 0)
            close(e->epfd);
        if (e->base.wake_fd >= 0)
            close(e->base.wake_fd);
        free(e);
        return r;
    }
    strcpy(e->base.features, "edge_triggered eventfd_wake");
    *out = &e->base;
    return 0;
}
