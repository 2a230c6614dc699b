/* io_uring.c — the io_uring backend: one ring per instance, owned by one
 * thread. Ops go in as SQEs and are handed to the kernel once per
 * otp__io_wait (or when the SQ fills); CQEs come back tagged with the op.
 * Features newer than the 5.6 baseline (multishot accept, cancel by fd,
 * MSG_RING, deferred task work, buffer rings) are probed and used only
 * where present.
 *
 * Pooled receives: with a registered buffer ring the kernel picks the
 * buffer and names it in the CQE; without one, a POLL_ADD says when the
 * socket is readable and recv(2) reads into a buffer from the user-space
 * pool. Either way an op that meets an empty pool parks on a list of ours
 * until a buffer is released.
 */
#define _GNU_SOURCE /* IOV_MAX */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "io_backend.h"

/* user_data: the op's address (8-aligned, below 2^48) | the op's 16-bit
 * submission generation << 48 | a tag in the low 3 bits. The generation
 * keeps a late ASYNC_CANCEL from hitting a later submission of the same op. */
enum {
    TAG_OP = 0,           /* the op's own SQE */
    TAG_IGNORE = 1,       /* cancels, closes, MSG_RING sends: nothing to do */
    TAG_WAKE_READ = 2,    /* the eventfd read that otp__io_wake completes */
    TAG_WAKE_MSG = 3,     /* a CQE another ring posted with MSG_RING */
    TAG_LINK_TIMEOUT = 4, /* a connect's timeout; user_data names the connect */
};
#define UD_TAG_MASK UINT64_C(7)
#define UD_PTR_MASK UINT64_C(0x0000FFFFFFFFFFF8)

enum { ST_INFLIGHT = 1, ST_LOCAL = 2, ST_PARKED = 3 }; /* op->priv.state */

#define BGID 0 /* our one buffer group */

typedef struct uring {
    otp__io base;
    struct io_uring ring;
    otp__io_op *inflight;             /* ops the kernel may still complete */
    otp__io_op *local, *local_tail;   /* ops we complete ourselves, FIFO */
    otp__io_op *parked, *parked_tail; /* pooled receives waiting for a buffer */
    bool retry_parked;                /* parked ops met a full SQ: unpark at the next wait */
    /* The registered buffer ring, or NULL for the user-space pool. */
    struct io_uring_buf_ring *br;
    unsigned br_entries;
    /* Buffers put in the ring minus those CQEs have shown taken: at least
     * what the kernel has, since a CQE not reaped yet may have taken more. */
    unsigned br_avail;
    bool disabled;   /* created R_DISABLED, not yet enabled */
    bool wake_armed; /* the eventfd read is queued or in flight */
    bool destroying;
    bool multishot_accept, cancel_fd, msg_ring, cqe_skip;
    /* Set (release) once the ring is enabled; wake_from on other threads
     * reads it (acquire) before posting MSG_RING, which a disabled ring
     * would refuse. Never goes back to false. */
    atomic_bool enabled;
    uint64_t wake_buf; /* where the eventfd read lands */
} uring;

static uring *U(otp__io *io)
{
    return (uring *)io;
}

static uint64_t ud_op(const otp__io_op *op, unsigned tag)
{
    uintptr_t p = (uintptr_t)op;
    OTP__IO_ASSERT((p & ~UD_PTR_MASK) == 0);
    return (uint64_t)p | ((uint64_t)op->priv.gen << 48) | tag;
}

static otp__io_op *ud_to_op(uint64_t ud)
{
    return (otp__io_op *)(uintptr_t)(ud & UD_PTR_MASK);
}

static void inflight_add(uring *u, otp__io_op *op)
{
    op->priv.prev = NULL;
    op->priv.next = u->inflight;
    if (u->inflight)
        u->inflight->priv.prev = op;
    u->inflight = op;
    op->priv.state = ST_INFLIGHT;
}

static void inflight_del(uring *u, otp__io_op *op)
{
    if (op->priv.prev)
        op->priv.prev->priv.next = op->priv.next;
    else
        u->inflight = op->priv.next;
    if (op->priv.next)
        op->priv.next->priv.prev = op->priv.prev;
    op->priv.next = op->priv.prev = NULL;
}

/* Complete an op from user space at the next wait (its result is final). */
static void local_push(uring *u, otp__io_op *op, int64_t res)
{
    op->priv.res = res;
    op->priv.state = ST_LOCAL;
    op->priv.next = NULL;
    if (u->local_tail)
        u->local_tail->priv.next = op;
    else
        u->local = op;
    u->local_tail = op;
}

static void parked_add(uring *u, otp__io_op *op)
{
    op->priv.next = NULL;
    op->priv.prev = u->parked_tail;
    if (u->parked_tail)
        u->parked_tail->priv.next = op;
    else
        u->parked = op;
    u->parked_tail = op;
    op->priv.state = ST_PARKED;
}

static void parked_del(uring *u, otp__io_op *op)
{
    if (op->priv.prev)
        op->priv.prev->priv.next = op->priv.next;
    else
        u->parked = op->priv.next;
    if (op->priv.next)
        op->priv.next->priv.prev = op->priv.prev;
    else
        u->parked_tail = op->priv.prev;
    op->priv.next = op->priv.prev = NULL;
}

static int enable(uring *u)
{
    if (!u->disabled)
        return 0;
    /* Enabling binds a SINGLE_ISSUER ring to the calling thread, which is
     * why it waits for the owner's first kernel entry. (liburing 2.3 declares
     * io_uring_enable_rings but does not export it.) */
    int r = io_uring_register(u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (r < 0)
        return r;
    u->disabled = false;
    /* release: a waker that sees true may post MSG_RING to this ring. */
    atomic_store_explicit(&u->enabled, true, memory_order_release);
    return 0;
}

/* Make room for n SQEs, handing the queued ones to the kernel if the SQ is
 * full. Linked SQEs must be taken together after one reserve, so that no
 * flush falls between them. */
static int reserve(uring *u, unsigned n)
{
    if (io_uring_sq_space_left(&u->ring) >= n)
        return 0;
    int r = enable(u);
    if (r < 0)
        return r;
    r = io_uring_submit(&u->ring);
    if (r < 0 && r != -EBUSY && r != -EAGAIN)
        return r;
    return io_uring_sq_space_left(&u->ring) >= n ? 0 : -EAGAIN;
}

static struct io_uring_sqe *sqe_get(uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    OTP__IO_ASSERT(sqe); /* reserve() made room */
    return sqe;
}

static void arm_wake(uring *u)
{
    if (u->wake_armed || u->destroying || reserve(u, 1) < 0)
        return; /* retried at the next wait */
    struct io_uring_sqe *sqe = sqe_get(u);
    io_uring_prep_read(sqe, u->base.wake_fd, &u->wake_buf, sizeof u->wake_buf, 0);
    sqe->user_data = TAG_WAKE_READ;
    u->wake_armed = true;
}

static void prep_accept(uring *u, otp__io_op *op)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (op->priv.flags & OTP__IO_F_MULTISHOT)
        io_uring_prep_multishot_accept(sqe, op->priv.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, op->priv.fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    sqe->user_data = ud_op(op, TAG_OP);
}

/* The SENDMSG for what is left of a send. The caller's iovec array is
 * const, so a partly sent element goes alone, through the op's own `head`;
 * whole elements go straight from the caller's array. */
static void prep_send(uring *u, otp__io_op *op)
{
    struct otp__io_send_state *s = &op->priv.u.send;
    size_t cap = u->base.cfg.send_chunk_max ? u->base.cfg.send_chunk_max : SIZE_MAX;
    const struct iovec *cur = &s->iov[s->idx];
    memset(&s->msg, 0, sizeof s->msg);
    if (s->off > 0 || cur->iov_len > cap) {
        s->head.iov_base = (char *)cur->iov_base + s->off;
        s->head.iov_len = cur->iov_len - s->off < cap ? cur->iov_len - s->off : cap;
        s->msg.msg_iov = &s->head;
        s->msg.msg_iovlen = 1;
    } else {
        int n = 0;
        size_t bytes = 0;
        while (s->idx + n < s->iovcnt && n < IOV_MAX && s->iov[s->idx + n].iov_len <= cap - bytes) {
            bytes += s->iov[s->idx + n].iov_len;
            n++;
        }
        s->msg.msg_iov = (struct iovec *)cur;
        s->msg.msg_iovlen = (size_t)n;
    }
    /* MSG_WAITALL makes the kernel itself retry a short send (5.19+ for
     * io_uring); our loop in handle_send covers older kernels and caps. */
    unsigned flags = MSG_NOSIGNAL | (u->base.cfg.send_no_waitall ? 0 : MSG_WAITALL);
    struct io_uring_sqe *sqe = sqe_get(u);
    /* One segment goes as a plain SEND: the kernel then has no msghdr and
     * iovec to import (and keep, if the socket is full). */
    if (s->msg.msg_iovlen == 1)
        io_uring_prep_send(sqe, op->priv.fd, s->msg.msg_iov[0].iov_base, s->msg.msg_iov[0].iov_len,
                           (int)flags);
    else
        io_uring_prep_sendmsg(sqe, op->priv.fd, &s->msg, flags);
    sqe->user_data = ud_op(op, TAG_OP);
}

static int u_accept(otp__io *io, otp__io_op *op)
{
    uring *u = U(io);
    int r = reserve(u, 1);
    if (r)
        return r;
    op->priv.gen++;
    if (u->multishot_accept)
        op->priv.flags |= OTP__IO_F_MULTISHOT;
    prep_accept(u, op);
    inflight_add(u, op);
    return 0;
}

static int u_connect(otp__io *io, otp__io_op *op, const struct sockaddr *sa, socklen_t len,
                     uint64_t timeout_ms)
{
    uring *u = U(io);
    int r = reserve(u, timeout_ms ? 2 : 1);
    if (r)
        return r;
    struct otp__io_connect_state *c = &op->priv.u.connect;
    /* Copied: the kernel reads the address when the SQE is submitted, which
     * is at the next wait, after the caller's sockaddr may be gone. */
    memcpy(&c->addr, sa, len);
    c->len = len;
    c->timeout_res = 0;
    op->priv.gen++;
    struct io_uring_sqe *sqe = sqe_get(u);
    io_uring_prep_connect(sqe, op->priv.fd, (struct sockaddr *)&c->addr, len);
    sqe->user_data = ud_op(op, TAG_OP);
    op->priv.cqes = 1;
    if (timeout_ms) {
        _Static_assert(sizeof c->ts == sizeof(struct __kernel_timespec), "timespec layout");
        struct __kernel_timespec *ts = (struct __kernel_timespec *)c->ts;
        ts->tv_sec = (long long)(timeout_ms / 1000);
        ts->tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
        sqe->flags |= IOSQE_IO_LINK;
        sqe = sqe_get(u);
        io_uring_prep_link_timeout(sqe, ts, 0);
        sqe->user_data = ud_op(op, TAG_LINK_TIMEOUT);
        /* Both CQEs always come; the op is delivered after the second, so
         * the timeout's CQE never names an op its owner has freed. */
        op->priv.cqes = 2;
        op->priv.flags |= OTP__IO_F_TIMEOUT;
    }
    inflight_add(u, op);
    return 0;
}

static int u_recv(otp__io *io, otp__io_op *op, void *buf, size_t len)
{
    uring *u = U(io);
    int r = reserve(u, 1);
    if (r)
        return r;
    op->priv.gen++;
    op->priv.u.recv.buf = buf;
    op->priv.u.recv.len = len;
    struct io_uring_sqe *sqe = sqe_get(u);
    io_uring_prep_recv(sqe, op->priv.fd, buf, len > INT_MAX ? INT_MAX : len, 0);
    sqe->user_data = ud_op(op, TAG_OP);
    inflight_add(u, op);
    return 0;
}

/* ---- pooled receives ---- */

/* Registers the buffer ring, or says why not (EINVAL before 5.19). The ring
 * is ours, mapped, rather than the kernel's (IOU_PBUF_RING_MMAP, 6.4), so
 * that 5.19 will do. */
static int br_setup(uring *u)
{
    unsigned entries = 1;
    while (entries < u->base.cfg.pool_bufs)
        entries <<= 1;
    size_t bytes = entries * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    struct io_uring_buf_ring *br = mem;
    io_uring_buf_ring_init(br);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)mem, .ring_entries = entries, .bgid = BGID};
    int r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (r < 0) {
        munmap(mem, bytes);
        return r;
    }
    u->br = br;
    u->br_entries = entries;
    return 0;
}

static void br_put(uring *u, unsigned i)
{
    otp__io_pool *p = &u->base.pool;
    p->out[i] = 0;
    io_uring_buf_ring_add(u->br, otp__io_pool_buf(p, i), (unsigned)p->size, (unsigned short)i,
                          io_uring_buf_ring_mask(u->br_entries), 0);
    /* Publishes the entry with a release store of the tail: the kernel may
     * take the buffer from here on. */
    io_uring_buf_ring_advance(u->br, 1);
    u->br_avail++;
}

static int pool_start(uring *u)
{
    if (u->base.pool.mem)
        return 0;
    bool ring = !(u->base.cfg.uring_without & OTP__IO_URING_NO_BUF_RING) && br_setup(u) == 0;
    int r = otp__io_pool_init(&u->base, ring ? "buf_ring" : "user_pool");
    if (r < 0) {
        if (ring) {
            (void)io_uring_unregister_buf_ring(&u->ring, BGID);
            munmap(u->br, u->br_entries * sizeof(struct io_uring_buf));
            u->br = NULL;
        }
        return r;
    }
    if (ring) {
        /* Every buffer goes to the kernel; the free stack stays unused. */
        u->base.pool.nfree = 0;
        for (unsigned i = 0; i < u->base.pool.nbufs; i++)
            br_put(u, i);
    }
    return 0;
}

/* The ring: a RECV that picks its buffer from our group. The user-space
 * pool: a POLL_ADD, and the recv(2) after it. poll_first (5.19, as the ring
 * is) leaves a resubmitted op armed in the kernel without trying for a
 * buffer until data is there: a parked socket with nothing to read then
 * stops coming back with -ENOBUFS at every release. */
static void prep_recv_pooled(uring *u, otp__io_op *op, bool poll_first)
{
    struct io_uring_sqe *sqe = sqe_get(u);
    if (u->br) {
        io_uring_prep_recv(sqe, op->priv.fd, NULL, u->base.pool.size, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
        if (poll_first)
            sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    } else {
        io_uring_prep_poll_add(sqe, op->priv.fd, POLLIN);
    }
    sqe->user_data = ud_op(op, TAG_OP);
}

static int u_recv_pooled(otp__io *io, otp__io_op *op)
{
    uring *u = U(io);
    int r = pool_start(u);
    if (r == 0)
        r = reserve(u, 1);
    if (r)
        return r;
    op->priv.gen++;
    prep_recv_pooled(u, op, false);
    inflight_add(u, op);
    return 0;
}

static void park(uring *u, otp__io_op *op)
{
    u->base.stats.pool_waits++;
    parked_add(u, op);
}

/* The user-space pool, for an op on no list whose socket has polled
 * readable: the read, with a buffer held only if data came. Returns true
 * with the final result in *res; false when the op is parked again (no
 * buffer, or no room in the SQ) or in flight again (polling: it was a
 * false alarm, or someone else read the data first). */
static bool user_recv(uring *u, otp__io_op *op, int64_t *res)
{
    otp__io_pool *p = &u->base.pool;
    unsigned char *buf = otp__io_pool_take(p);
    if (!buf) {
        park(u, op);
        return false;
    }
    ssize_t n;
    while ((n = recv(op->priv.fd, buf, p->size, MSG_DONTWAIT)) < 0 && errno == EINTR) {
    }
    if (n > 0) {
        op->priv.u.recv.buf = buf;
        *res = n;
        return true;
    }
    int err = n < 0 ? errno : 0;
    otp__io_pool_put(p, otp__io_pool_index(p, buf));
    if (err != EAGAIN && err != EWOULDBLOCK) {
        *res = -err;
        return true;
    }
    if (reserve(u, 1) < 0) {
        parked_add(u, op);
        u->retry_parked = true;
        return false;
    }
    prep_recv_pooled(u, op, false);
    inflight_add(u, op);
    return false;
}

/* Parked ops go back to work after a release (or at the wait after one
 * that found the SQ full). With the ring every one is resubmitted: we
 * cannot tell which sockets have data, and one left parked while a buffer
 * sits in the ring would wait for another release that may never come.
 * Those that find the ring empty again park again. The user-space pool
 * knows its count and tries them in order while buffers last. */
static void unpark(uring *u)
{
    u->retry_parked = false;
    while (u->parked && (u->br || u->base.pool.nfree)) {
        otp__io_op *op = u->parked;
        if (u->br) {
            if (reserve(u, 1) < 0) {
                u->retry_parked = true;
                return;
            }
            parked_del(u, op);
            op->priv.gen++;
            prep_recv_pooled(u, op, true);
            inflight_add(u, op);
            continue;
        }
        parked_del(u, op);
        int64_t res;
        if (user_recv(u, op, &res))
            local_push(u, op, res);
        else if (op->priv.state == ST_PARKED)
            return; /* the SQ is full; retried at the next wait */
    }
}

static void u_buf_release(otp__io *io, unsigned i)
{
    uring *u = U(io);
    if (u->br)
        br_put(u, i);
    else
        otp__io_pool_put(&io->pool, i);
    if (u->parked)
        unpark(u);
}

static int u_send(otp__io *io, otp__io_op *op, const struct iovec *iov, int iovcnt, uint64_t total)
{
    uring *u = U(io);
    op->priv.gen++;
    if (total == 0) {
        local_push(u, op, 0);
        return 0;
    }
    int r = reserve(u, 1);
    if (r)
        return r;
    prep_send(u, op);
    inflight_add(u, op);
    return 0;
}

static int u_cancel(otp__io *io, otp__io_op *op)
{
    uring *u = U(io);
    if (op->priv.state == ST_LOCAL) {
        op->priv.flags |= OTP__IO_F_CANCEL; /* its result is final already */
        return 0;
    }
    if (op->priv.state == ST_PARKED) {
        op->priv.flags |= OTP__IO_F_CANCEL;
        parked_del(u, op);
        local_push(u, op, -ECANCELED);
        return 0;
    }
    int r = reserve(u, 1);
    if (r)
        return r;
    op->priv.flags |= OTP__IO_F_CANCEL;
    struct io_uring_sqe *sqe = sqe_get(u);
    io_uring_prep_cancel64(sqe, ud_op(op, TAG_OP), 0);
    sqe->user_data = TAG_IGNORE;
    if (u->cqe_skip)
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    return 0;
}

/* With ops pending on the socket: cancel them, then close it, both through
 * the ring, at the next wait; an fd closed under an in-flight request would
 * leave the request holding the socket open. Marking the ops keeps a short
 * send or an accept re-arm from resubmitting on a number that may belong to
 * a new socket by then. Finding them walks this shard's in-flight ops:
 * close is rare next to I/O, and it spares every op an fd table. With
 * nothing pending the socket is simply closed now. */
/* close(2) for sockets this ring owns. The kernel makes them (accept)
 * and may close them (IORING_OP_CLOSE) where ThreadSanitizer's fd
 * interceptors cannot see it; a plain close() would then be the one fd
 * event TSan sees, and a reused fd number would look like a race with
 * whichever thread last made that number with socket(). The raw syscall
 * keeps TSan's view consistent: none of these sockets' lives is in it. */
static int ring_close(int fd)
{
    return syscall(SYS_close, fd) < 0 && errno != EINTR ? -errno : 0;
}

static int u_close(otp__io *io, otp__sock fd)
{
    uring *u = U(io);
    for (otp__io_op *op = u->parked, *next; op; op = next) {
        next = op->priv.next;
        if (op->priv.fd == fd) {
            op->priv.flags |= OTP__IO_F_CANCEL;
            parked_del(u, op);
            local_push(u, op, -ECANCELED);
        }
    }
    unsigned n = 0;
    for (otp__io_op *op = u->inflight; op; op = op->priv.next)
        if (op->priv.fd == fd) {
            op->priv.flags |= OTP__IO_F_CANCEL;
            n++;
        }
    if (n == 0)
        return ring_close(fd);
    struct io_uring_sqe *sqe;
    if (u->cancel_fd) {
        int r = reserve(u, 2);
        if (r)
            return r;
        sqe = sqe_get(u);
        io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
        sqe->user_data = TAG_IGNORE;
        sqe->flags |= IOSQE_IO_HARDLINK; /* close after the cancel, whatever it found */
    } else {
        /* No cancel-by-fd (before 5.19): one cancel each. SQEs are issued in
         * order, so the close below still comes after all of them. */
        for (otp__io_op *op = u->inflight; op; op = op->priv.next) {
            if (op->priv.fd != fd)
                continue;
            int r = reserve(u, 1);
            if (r)
                return r;
            sqe = sqe_get(u);
            io_uring_prep_cancel64(sqe, ud_op(op, TAG_OP), 0);
            sqe->user_data = TAG_IGNORE;
        }
        int r = reserve(u, 1);
        if (r)
            return r;
    }
    sqe = sqe_get(u);
    io_uring_prep_close(sqe, fd);
    sqe->user_data = TAG_IGNORE;
    return 0;
}

/* Nothing pending on fd here: in flight (cancelled or not), parked, or
 * done and not yet delivered. The kernel keeps no per-socket state of ours
 * (no registered files), so that is the whole check. */
static int u_detach(otp__io *io, otp__sock fd)
{
    uring *u = U(io);
    otp__io_op *lists[3] = {u->inflight, u->parked, u->local};
    for (int i = 0; i < 3; i++)
        for (otp__io_op *op = lists[i]; op; op = op->priv.next)
            if (op->priv.fd == fd)
                return -EBUSY;
    return 0;
}

static int deliver(uring *u, otp__io_op *op, int64_t res)
{
    op->priv.state = 0;
    u->base.stats.completions++;
    op->done(op, res); /* may resubmit or free op: not touched after this */
    return 1;
}

static int finish(uring *u, otp__io_op *op, int64_t res)
{
    inflight_del(u, op);
    return deliver(u, op, res);
}

static int handle_accept(uring *u, otp__io_op *op, int32_t res, uint32_t cflags)
{
    if (res < 0)
        return finish(u, op, res);
    u->base.stats.completions++;
    op->done(op, res); /* the op stays pending: the caller may not free it */
    if ((op->priv.flags & OTP__IO_F_MULTISHOT) && (cflags & IORING_CQE_F_MORE))
        return 1;
    /* The SQE has ended: single-shot, or a multishot the kernel stopped
     * (it does when the CQ overflows). Go on unless asked to stop. */
    if (op->priv.flags & OTP__IO_F_CANCEL)
        return 1 + finish(u, op, -ECANCELED);
    int r = reserve(u, 1);
    if (r < 0)
        return 1 + finish(u, op, r);
    prep_accept(u, op);
    return 1;
}

static int handle_send(uring *u, otp__io_op *op, int32_t res)
{
    struct otp__io_send_state *s = &op->priv.u.send;
    if (res <= 0)
        return finish(u, op, res < 0 ? res : -EIO); /* 0 for a non-empty send: never */
    otp__io_send_advance(op, (size_t)res);
    if (s->sent == s->total)
        return finish(u, op, (int64_t)s->total);
    u->base.stats.short_sends++;
    if (op->priv.flags & OTP__IO_F_CANCEL)
        return finish(u, op, -ECANCELED);
    int r = reserve(u, 1);
    if (r < 0)
        return finish(u, op, r);
    prep_send(u, op);
    return 0;
}

static int handle_recv_pooled(uring *u, otp__io_op *op, int32_t res, uint32_t cflags)
{
    otp__io_pool *p = &u->base.pool;
    if (!u->br) {
        /* A poll: res is the events, or -errno (-ECANCELED among them). */
        if (res < 0)
            return finish(u, op, res);
        inflight_del(u, op);
        if (op->priv.flags & OTP__IO_F_CANCEL)
            return deliver(u, op, -ECANCELED); /* nothing read: nothing lost */
        int64_t r;
        return user_recv(u, op, &r) ? deliver(u, op, r) : 0;
    }
    if (cflags & IORING_CQE_F_BUFFER) {
        unsigned i = cflags >> IORING_CQE_BUFFER_SHIFT;
        OTP__IO_ASSERT(i < p->nbufs && !p->out[i]);
        u->br_avail--;
        if (res > 0) {
            p->out[i] = 1;
            op->priv.u.recv.buf = otp__io_pool_buf(p, i);
            return finish(u, op, res);
        }
        br_put(u, i); /* taken for an end of stream or an error: straight back */
    }
    if (res != -ENOBUFS)
        return finish(u, op, res);
    if (op->priv.flags & OTP__IO_F_CANCEL)
        return finish(u, op, -ECANCELED);
    inflight_del(u, op);
    /* The kernel found the ring empty when it tried, but buffers released
     * since then (before this CQE was reaped) are there now and their
     * releases found nothing parked: go again rather than wait for a
     * release that may not come. */
    if (u->br_avail > 0 && reserve(u, 1) == 0) {
        op->priv.gen++;
        prep_recv_pooled(u, op, true);
        inflight_add(u, op);
        return 0;
    }
    park(u, op);
    if (u->br_avail > 0)
        u->retry_parked = true; /* the SQ was full */
    return 0;
}

static int handle_connect(uring *u, otp__io_op *op, unsigned tag, int32_t res)
{
    if (tag == TAG_OP)
        op->priv.res = res;
    else
        op->priv.u.connect.timeout_res = res;
    if (--op->priv.cqes)
        return 0;
    int64_t r = op->priv.res;
    /* A fired link timeout cancels the connect: report it as what it is. */
    if (r == -ECANCELED && op->priv.u.connect.timeout_res == -ETIME)
        r = -ETIMEDOUT;
    return finish(u, op, r);
}

/* One CQE; returns the callbacks it made. */
static int handle(uring *u, uint64_t ud, int32_t res, uint32_t cflags)
{
    unsigned tag = (unsigned)(ud & UD_TAG_MASK);
    if (tag == TAG_WAKE_READ) {
        u->wake_armed = false;
        u->base.stats.wakes++;
        arm_wake(u);
        return 0;
    }
    if (tag == TAG_WAKE_MSG) {
        u->base.stats.wakes++;
        return 0;
    }
    if (tag != TAG_OP && tag != TAG_LINK_TIMEOUT)
        return 0; /* TAG_IGNORE, and liburing's own timeout CQEs */
    otp__io_op *op = ud_to_op(ud);
    OTP__IO_ASSERT(op->priv.state == ST_INFLIGHT && op->priv.gen == (uint16_t)(ud >> 48));
    if (op->priv.kind == OTP__IO_K_CONNECT)
        return handle_connect(u, op, tag, res);
    switch (op->priv.kind) {
    case OTP__IO_K_ACCEPT:
        return handle_accept(u, op, res, cflags);
    case OTP__IO_K_SEND:
        return handle_send(u, op, res);
    case OTP__IO_K_RECV_POOLED:
        return handle_recv_pooled(u, op, res, cflags);
    default:
        return finish(u, op, res);
    }
}

static int deliver_local(uring *u)
{
    /* Detach first: callbacks may queue more, which wait for the next call. */
    otp__io_op *op = u->local;
    u->local = u->local_tail = NULL;
    int n = 0;
    while (op) {
        otp__io_op *next = op->priv.next;
        op->priv.next = NULL;
        op->priv.state = 0;
        u->base.stats.completions++;
        op->done(op, op->priv.res);
        n++;
        op = next;
    }
    return n;
}

static int u_wait(otp__io *io, uint64_t timeout_ms)
{
    uring *u = U(io);
    int r = enable(u);
    if (r < 0)
        return r;
    arm_wake(u);
    if (u->retry_parked)
        unpark(u);
    bool ready = io_uring_cq_ready(&u->ring) > 0 || u->local;
    struct io_uring_cqe *cqe;
    if (ready) {
        r = io_uring_sq_ready(&u->ring) ? io_uring_submit(&u->ring) : 0;
    } else if (timeout_ms == 0) {
        /* Also runs deferred task work, which is what posts CQEs on a
         * DEFER_TASKRUN ring. */
        r = io_uring_submit_and_get_events(&u->ring);
    } else if (timeout_ms == UINT64_MAX) {
        r = io_uring_submit_and_wait(&u->ring, 1);
    } else {
        struct __kernel_timespec ts = {.tv_sec = (long long)(timeout_ms / 1000),
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    }
    /* ETIME: timed out; EINTR: a signal; EBUSY/EAGAIN: the CQ is backed up
     * and reaping below is the cure. */
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN)
        return r;
    /* Only the CQEs present now: new ones wait for the next call, which
     * bounds the work one wait does. */
    int n = 0;
    for (unsigned avail = io_uring_cq_ready(&u->ring); avail; avail--) {
        if (io_uring_peek_cqe(&u->ring, &cqe) != 0 || !cqe)
            break;
        uint64_t ud = cqe->user_data;
        int32_t res = cqe->res;
        uint32_t cflags = cqe->flags;
        io_uring_cqe_seen(&u->ring, cqe); /* before the callback, which may submit */
        n += handle(u, ud, res, cflags);
    }
    return n + deliver_local(u);
}

/* MSG_RING from our ring into the target's: one syscall, no eventfd read to
 * re-arm on the other side, and it could ride along with our own submits. */
static void u_wake_from(otp__io *self, otp__io *target)
{
    uring *u = U(self);
    if (self->cfg.wake != OTP__IO_WAKE_MSG_RING || !u->msg_ring || target->ops != self->ops ||
        /* acquire: pairs with enable(); a disabled ring refuses MSG_RING */
        !atomic_load_explicit(&U(target)->enabled, memory_order_acquire) || enable(u) < 0 ||
        reserve(u, 1) < 0) {
        otp__io_wake(target);
        return;
    }
    struct io_uring_sqe *sqe = sqe_get(u);
    io_uring_prep_msg_ring(sqe, U(target)->ring.ring_fd, 0, TAG_WAKE_MSG, 0);
    sqe->user_data = TAG_IGNORE;
    if (u->cqe_skip)
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    if (io_uring_submit(&u->ring) < 0)
        otp__io_wake(target);
}

/* Destroy's drain: CQEs are consumed without callbacks; an accepted socket
 * nobody will see is closed. */
static void drain_one(uring *u, uint64_t ud, int32_t res, uint32_t cflags)
{
    unsigned tag = (unsigned)(ud & UD_TAG_MASK);
    if (tag == TAG_WAKE_READ) {
        u->wake_armed = false;
        return;
    }
    if (tag != TAG_OP && tag != TAG_LINK_TIMEOUT)
        return;
    otp__io_op *op = ud_to_op(ud);
    if (op->priv.kind == OTP__IO_K_ACCEPT && res >= 0)
        ring_close(res);
    if (op->priv.kind == OTP__IO_K_CONNECT && --op->priv.cqes)
        return;
    if (op->priv.kind == OTP__IO_K_ACCEPT && (cflags & IORING_CQE_F_MORE))
        return;
    inflight_del(u, op);
    op->priv.state = 0;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void u_destroy(otp__io *io)
{
    uring *u = U(io);
    u->destroying = true;
    /* Cancel everything and wait for the kernel to let go of the ops'
     * memory. Only the owner thread can submit to a SINGLE_ISSUER ring (the
     * kernel says EEXIST otherwise); if the owner has exited, the kernel
     * cancelled its requests already. A 1 s bound keeps a stuck request
     * from hanging shutdown. */
    /* A ring never waited on may still hold queued closes: enabling it here
     * binds it to this thread, which is harmless at the end of its life. */
    if (enable(u) == 0 && (u->inflight || u->wake_armed) && reserve(u, 1) == 0) {
        struct io_uring_sqe *sqe = sqe_get(u);
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        sqe->user_data = TAG_IGNORE;
        uint64_t deadline = mono_ms() + 1000;
        while ((u->inflight || u->wake_armed) && mono_ms() < deadline) {
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000};
            struct io_uring_cqe *cqe;
            int r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
            if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY && r != -EAGAIN)
                break;
            while (io_uring_peek_cqe(&u->ring, &cqe) == 0 && cqe) {
                uint64_t ud = cqe->user_data;
                int32_t res = cqe->res;
                uint32_t cflags = cqe->flags;
                io_uring_cqe_seen(&u->ring, cqe);
                drain_one(u, ud, res, cflags);
            }
        }
    }
    /* No request uses a pool buffer any more. Unregistering is only tidy
     * (the ring's teardown would drop the group) and fails with EEXIST off
     * the owner thread, which is harmless. */
    if (u->br)
        (void)io_uring_unregister_buf_ring(&u->ring, BGID);
    io_uring_queue_exit(&u->ring);
    if (u->br)
        munmap(u->br, u->br_entries * sizeof(struct io_uring_buf));
    otp__io_pool_fini(&u->base.pool);
    close(u->base.wake_fd);
    free(u);
}

static int u_pollfd(otp__io *io)
{
    return U(io)->ring.ring_fd;
}

static const otp__io_ops uring_ops = {
    .name = "io_uring",
    .destroy = u_destroy,
    .accept = u_accept,
    .connect = u_connect,
    .recv = u_recv,
    .recv_pooled = u_recv_pooled,
    .send = u_send,
    .cancel = u_cancel,
    .close = u_close,
    .detach = u_detach,
    .buf_release = u_buf_release,
    .wait = u_wait,
    .wake_from = u_wake_from,
    .pollfd = u_pollfd,
};

/* Setup flags, best first; a kernel that does not know one says EINVAL.
 * DEFER_TASKRUN (6.1) runs completion work only when the owner enters the
 * kernel — no interrupts of a busy shard — and needs SINGLE_ISSUER, which
 * R_DISABLED lets us bind at the first wait rather than at creation.
 * COOP_TASKRUN (5.19) is the next best; SUBMIT_ALL (5.18) keeps one bad SQE
 * from stalling the rest of a batch. */
static const unsigned setup_tiers[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
        IORING_SETUP_R_DISABLED,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_SUBMIT_ALL,
    0,
};

int otp__io_uring_create(otp__io **out, const otp__io_config *cfg)
{
    uring *u = calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    u->base.ops = &uring_ops;
    u->base.cfg = *cfg;
    u->base.wake_fd = -1;
    unsigned entries = cfg->entries ? cfg->entries : 256;
    struct io_uring_params p;
    int r = -EINVAL;
    unsigned without = cfg->uring_without;
    unsigned tier = without & OTP__IO_URING_NO_SETUP_FLAGS ? 3 : 0;
    for (; tier < sizeof setup_tiers / sizeof setup_tiers[0]; tier++) {
        memset(&p, 0, sizeof p);
        /* A deep CQ: multishot accepts and many sockets finish in bursts. */
        p.flags = setup_tiers[tier] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
        p.cq_entries = entries * 8;
        r = io_uring_queue_init_params(entries, &u->ring, &p);
        if (r != -EINVAL)
            break;
    }
    if (r < 0) {
        free(u);
        return r;
    }
    u->disabled = (p.flags & IORING_SETUP_R_DISABLED) != 0;
    atomic_init(&u->enabled, !u->disabled);

    /* The 5.6 baseline this backend needs; anything less is "refused". */
    static const struct {
        int op;
        const char *name;
    } need[] = {{IORING_OP_READ, "read"},
                {IORING_OP_RECV, "recv"},
                {IORING_OP_SENDMSG, "sendmsg"},
                {IORING_OP_SEND, "send"},
                {IORING_OP_ACCEPT, "accept"},
                {IORING_OP_CONNECT, "connect"},
                {IORING_OP_ASYNC_CANCEL, "async_cancel"},
                {IORING_OP_LINK_TIMEOUT, "link_timeout"},
                {IORING_OP_CLOSE, "close"},
                {IORING_OP_POLL_ADD, "poll_add"}};
    struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
    r = probe ? 0 : -ENOSYS;
    for (size_t i = 0; probe && i < sizeof need / sizeof need[0]; i++)
        if (!io_uring_opcode_supported(probe, need[i].op))
            r = -ENOSYS;
    if (r == 0 && !(p.features & IORING_FEAT_NODROP))
        r = -ENOSYS; /* a dropped CQE would be a lost completion */
    if (r < 0) {
        if (probe)
            io_uring_free_probe(probe);
        io_uring_queue_exit(&u->ring);
        free(u);
        return r;
    }
    /* No probe bit says "multishot accept" or "cancel by fd"; both came in
     * 5.19 with IORING_OP_SOCKET, whose bit does show. */
    bool v5_19 = io_uring_opcode_supported(probe, IORING_OP_SOCKET);
    u->multishot_accept = v5_19 && !(without & OTP__IO_URING_NO_MULTISHOT);
    u->cancel_fd = v5_19 && !(without & OTP__IO_URING_NO_CANCEL_FD);
    u->msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING) &&
                  !(without & OTP__IO_URING_NO_MSG_RING);
    u->cqe_skip = (p.features & IORING_FEAT_CQE_SKIP) && !(without & OTP__IO_URING_NO_CQE_SKIP);
    io_uring_free_probe(probe);
    /* liburing reads this bit to choose how to time a wait; clearing it
     * makes it use the pre-5.11 way (a timeout SQE of its own). */
    if (without & OTP__IO_URING_NO_EXT_ARG)
        u->ring.features &= ~IORING_FEAT_EXT_ARG;

    /* Blocking on purpose: io_uring completes a read of an O_NONBLOCK file
     * with -EAGAIN instead of waiting for it on older kernels. */
    u->base.wake_fd = eventfd(0, EFD_CLOEXEC);
    if (u->base.wake_fd < 0) {
        r = -errno;
        io_uring_queue_exit(&u->ring);
        free(u);
        return r;
    }
    arm_wake(u);
    snprintf(u->base.features, sizeof u->base.features, "%s%s%s%s%s%s%s",
             tier == 0   ? "defer_taskrun single_issuer"
             : tier == 1 ? "coop_taskrun"
                         : "plain_taskrun",
             u->multishot_accept ? " multishot_accept" : "", u->cancel_fd ? " cancel_fd" : "",
             u->msg_ring ? " msg_ring" : "", u->cqe_skip ? " cqe_skip" : "",
             (u->ring.features & IORING_FEAT_EXT_ARG) ? " ext_arg" : "",
             tier <= 2 ? " submit_all" : "");
    *out = &u->base;
    return 0;
}
