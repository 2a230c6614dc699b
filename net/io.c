/* io.c — backend choice and the checks every submission shares.
 *
 * Picks io_uring or epoll (config, then OTP_IO_BACKEND, then io_uring with a
 * fallback), validates arguments and op state once for both backends, then
 * dispatches through the instance's ops table. otp__io_wake lives here: both
 * backends wake through the same eventfd.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_backend.h"

static bool refused(int err)
{
    return err == -ENOSYS || err == -EPERM || err == -EACCES;
}

int otp__io_create(otp__io **out, const otp__io_config *cfg)
{
    otp__io_config c = {0};
    if (!out)
        return -EINVAL;
    *out = NULL;
    if (cfg)
        c = *cfg;
    /* Buffer ids are 16 bits and a buffer ring holds at most 2^15 entries;
     * a receive's result must fit an int. */
    if (c.pool_bufs == 0)
        c.pool_bufs = 64;
    if (c.pool_buf_size == 0)
        c.pool_buf_size = 16384;
    if (c.pool_bufs > 32768 || c.pool_buf_size > INT_MAX)
        return -EINVAL;
    bool automatic = false;
    if (c.backend == OTP__IO_AUTO) {
        const char *env = getenv("OTP_IO_BACKEND");
        if (env && *env) {
            if (strcmp(env, "epoll") == 0) {
                c.backend = OTP__IO_EPOLL;
            } else if (strcmp(env, "io_uring") == 0) {
                c.backend = OTP__IO_URING;
            } else {
                fprintf(stderr, "libotp: OTP_IO_BACKEND=%s is neither io_uring nor epoll\n", env);
                return -EINVAL;
            }
        } else {
            c.backend = OTP__IO_URING;
            automatic = true;
        }
    }
    if (c.backend == OTP__IO_EPOLL)
        return otp__io_epoll_create(out, &c);
    if (c.backend != OTP__IO_URING)
        return -EINVAL;
    int ur = otp__io_uring_create(out, &c);
    if (ur == 0 || !automatic || !refused(ur))
        return ur;
    c.backend = OTP__IO_EPOLL;
    int r = otp__io_epoll_create(out, &c);
    if (r == 0)
        fprintf(stderr, "libotp: io_uring refused (%s); using the epoll backend\n", strerror(-ur));
    return r;
}

void otp__io_destroy(otp__io *io)
{
    if (io)
        io->ops->destroy(io);
}

const char *otp__io_backend_name(const otp__io *io)
{
    return io->ops->name;
}

const char *otp__io_features(const otp__io *io)
{
    return io->features;
}

void otp__io_get_stats(const otp__io *io, otp__io_stats *out)
{
    *out = io->stats;
}

/* The part of a submission both backends would otherwise repeat. */
static int begin(otp__io_op *op, otp__sock fd, uint8_t kind)
{
    if (!op || !op->done || fd < 0)
        return -EINVAL;
    if (otp__io_op_pending(op))
        return -EBUSY;
    op->priv.fd = fd;
    op->priv.kind = kind;
    op->priv.flags = 0;
    op->priv.heap = -1;
    op->priv.next = op->priv.prev = NULL;
    return 0;
}

/* A failed submission leaves the op idle: it was never pending. */
static int end(otp__io_op *op, int r)
{
    if (r < 0)
        op->priv.state = 0;
    return r;
}

int otp__io_accept(otp__io *io, otp__io_op *op, otp__sock listen_fd)
{
    int r = begin(op, listen_fd, OTP__IO_K_ACCEPT);
    return r ? r : end(op, io->ops->accept(io, op));
}

int otp__io_connect(otp__io *io, otp__io_op *op, otp__sock fd, const struct sockaddr *sa,
                    socklen_t len, uint64_t timeout_ms)
{
    if (!sa || len == 0 || len > sizeof(op->priv.u.connect.addr))
        return -EINVAL;
    int r = begin(op, fd, OTP__IO_K_CONNECT);
    if (timeout_ms == UINT64_MAX)
        timeout_ms = 0;
    return r ? r : end(op, io->ops->connect(io, op, sa, len, timeout_ms));
}

int otp__io_recv(otp__io *io, otp__io_op *op, otp__sock fd, void *buf, size_t len)
{
    /* A zero-length receive would complete with 0, which means end of stream. */
    if (!buf || len == 0)
        return -EINVAL;
    int r = begin(op, fd, OTP__IO_K_RECV);
    return r ? r : end(op, io->ops->recv(io, op, buf, len));
}

int otp__io_recv_pooled(otp__io *io, otp__io_op *op, otp__sock fd)
{
    int r = begin(op, fd, OTP__IO_K_RECV_POOLED);
    if (r)
        return r;
    op->priv.u.recv.buf = NULL;
    op->priv.u.recv.len = 0;
    return end(op, io->ops->recv_pooled(io, op));
}

void otp__io_buf_release(otp__io *io, void *buf)
{
    otp__io_pool *p = &io->pool;
    if (!buf)
        return;
    /* A stray pointer or a second release would put one buffer in the pool
     * twice, and then under two receives at once: refuse it. */
    unsigned char *b = buf;
    bool ours = p->mem && b >= p->mem && b < p->mem + (size_t)p->nbufs * p->size &&
                (size_t)(b - p->mem) % p->size == 0;
    unsigned i = ours ? otp__io_pool_index(p, b) : 0;
    OTP__IO_ASSERT(ours && p->out[i]);
    if (ours && p->out[i])
        io->ops->buf_release(io, i);
}

int otp__io_send(otp__io *io, otp__io_op *op, otp__sock fd, const struct iovec *iov, int iovcnt)
{
    if (!iov || iovcnt <= 0)
        return -EINVAL;
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len)
            return -EINVAL;
        total += iov[i].iov_len;
    }
    if (total > INT64_MAX)
        return -EINVAL;
    int r = begin(op, fd, OTP__IO_K_SEND);
    if (r)
        return r;
    op->priv.u.send.iov = iov;
    op->priv.u.send.iovcnt = iovcnt;
    op->priv.u.send.idx = 0;
    op->priv.u.send.off = 0;
    op->priv.u.send.total = total;
    op->priv.u.send.sent = 0;
    otp__io_send_advance(op, 0); /* step over leading empty elements */
    return end(op, io->ops->send(io, op, iov, iovcnt, total));
}

int otp__io_cancel(otp__io *io, otp__io_op *op)
{
    if (!op)
        return -EINVAL;
    if (!otp__io_op_pending(op))
        return -ENOENT;
    if (op->priv.flags & OTP__IO_F_CANCEL)
        return -EALREADY;
    return io->ops->cancel(io, op);
}

int otp__io_close(otp__io *io, otp__sock fd)
{
    if (fd < 0)
        return -EBADF;
    return io->ops->close(io, fd);
}

int otp__io_detach(otp__io *io, otp__sock fd)
{
    if (fd < 0)
        return -EBADF;
    return io->ops->detach(io, fd);
}

int otp__io_wait(otp__io *io, uint64_t timeout_ms)
{
    return io->ops->wait(io, timeout_ms);
}

void otp__io_wake(otp__io *target)
{
    /* write(2) on an eventfd adds to its counter: a wake made while the
     * target is busy stays pending until its next wait consumes it, so none
     * is lost, and several coalesce into one. EAGAIN (the counter is full,
     * non-blocking eventfd) means a wake is pending already. */
    uint64_t one = 1;
    while (write(target->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

void otp__io_wake_from(otp__io *self, otp__io *target)
{
    if (self->ops->wake_from)
        self->ops->wake_from(self, target);
    else
        otp__io_wake(target);
}

void otp__io_send_advance(otp__io_op *op, size_t n)
{
    struct iovec const *iov = op->priv.u.send.iov;
    int idx = op->priv.u.send.idx;
    size_t off = op->priv.u.send.off;
    op->priv.u.send.sent += n;
    while (idx < op->priv.u.send.iovcnt) {
        size_t left = iov[idx].iov_len - off;
        if (n < left) {
            off += n;
            break;
        }
        n -= left;
        idx++;
        off = 0;
    }
    op->priv.u.send.idx = idx;
    op->priv.u.send.off = off;
}

int otp__io_pollfd(otp__io *io)
{
    return io->ops->pollfd ? io->ops->pollfd(io) : io->wake_fd;
}

int otp__io_pool_init(otp__io *io, const char *label)
{
    otp__io_pool *p = &io->pool;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t bytes = (size_t)io->cfg.pool_bufs * io->cfg.pool_buf_size;
    /* Page-aligned, so a buffer ring's kernel side maps whole pages and no
     * buffer shares a cache line with unrelated heap data. */
    void *mem = NULL;
    if (posix_memalign(&mem, page, (bytes + page - 1) / page * page) != 0)
        return -ENOMEM;
    p->free = malloc(io->cfg.pool_bufs * sizeof *p->free);
    p->out = calloc(io->cfg.pool_bufs, 1);
    if (!p->free || !p->out) {
        free(mem);
        free(p->free);
        free(p->out);
        p->free = NULL;
        p->out = NULL;
        return -ENOMEM;
    }
    p->mem = mem;
    p->size = io->cfg.pool_buf_size;
    p->nbufs = io->cfg.pool_bufs;
    /* Buffer 0 on top: handed out first. */
    for (unsigned i = 0; i < p->nbufs; i++)
        p->free[i] = (uint16_t)(p->nbufs - 1 - i);
    p->nfree = p->nbufs;
    size_t n = strlen(io->features);
    snprintf(io->features + n, sizeof io->features - n, " %s", label);
    return 0;
}

void otp__io_pool_fini(otp__io_pool *p)
{
    free(p->mem);
    free(p->free);
    free(p->out);
    memset(p, 0, sizeof *p);
}
