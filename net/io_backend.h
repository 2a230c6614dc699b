/* io_backend.h — what io.c shares with the backends: the instance header
 * every backend struct starts with, and the ops table io.c dispatches
 * through. The table exists because the choice between io_uring and epoll
 * is made at run time, on the same build.
 */
#ifndef OTP_NET_IO_BACKEND_H
#define OTP_NET_IO_BACKEND_H

#include "io.h"

#ifndef NDEBUG
#include <assert.h>
#define OTP__IO_ASSERT(c) assert(c)
#else
#define OTP__IO_ASSERT(c) ((void)0)
#endif

typedef struct otp__io_ops {
    const char *name;
    void (*destroy)(otp__io *io);
    /* Submissions: io.c has validated the arguments, checked the op is idle
     * and filled op->priv.fd, kind, flags = 0 and heap = -1. */
    int (*accept)(otp__io *io, otp__io_op *op);
    int (*connect)(otp__io *io, otp__io_op *op, const struct sockaddr *sa, socklen_t len,
                   uint64_t timeout_ms);
    int (*recv)(otp__io *io, otp__io_op *op, void *buf, size_t len);
    int (*recv_pooled)(otp__io *io, otp__io_op *op);
    int (*send)(otp__io *io, otp__io_op *op, const struct iovec *iov, int iovcnt, uint64_t total);
    int (*cancel)(otp__io *io, otp__io_op *op);
    int (*close)(otp__io *io, otp__sock fd);
    int (*detach)(otp__io *io, otp__sock fd);
    /* Buffer i of the pool is back from the caller (io.c has checked that
     * it was out); the backend marks it in and may hand it on at once. */
    void (*buf_release)(otp__io *io, unsigned i);
    int (*wait)(otp__io *io, uint64_t timeout_ms);
    /* NULL: otp__io_wake_from is a plain otp__io_wake. */
    void (*wake_from)(otp__io *self, otp__io *target);
    /* A descriptor that polls readable when wait has something to do. */
    int (*pollfd)(otp__io *io);
} otp__io_ops;

/* The receive pool behind otp__io_recv_pooled: one block of nbufs buffers
 * of size bytes, allocated at the first pooled receive. `out` says which
 * buffers a caller holds, which is what lets a release be checked. The
 * free stack is the user-space pool's (epoll, and io_uring without a buffer
 * ring); last in, first out, so the buffer just used, warm in the cache, is
 * the next one handed out. Owner thread only. */
typedef struct otp__io_pool {
    unsigned char *mem; /* NULL until the first pooled receive */
    size_t size;
    unsigned nbufs, nfree;
    uint16_t *free; /* nfree buffer indices */
    uint8_t *out;   /* per buffer: 1 while a caller holds it */
} otp__io_pool;

struct otp__io {
    const otp__io_ops *ops;
    otp__io_config cfg;
    /* The eventfd behind otp__io_wake. Set at creation and never changed;
     * the one field other threads touch (they write(2) to it). */
    int wake_fd;
    otp__io_stats stats; /* owner thread only */
    otp__io_pool pool;   /* owner thread only */
    char features[192];
};

/* Each returns 0 with *out set, or -errno. The io_uring one fails with
 * -ENOSYS, -EPERM or -EACCES when the kernel refuses it or lacks an opcode
 * this backend needs; io.c decides whether to fall back. */
int otp__io_uring_create(otp__io **out, const otp__io_config *cfg);
int otp__io_epoll_create(otp__io **out, const otp__io_config *cfg);

/* Advance a send op's (idx, off) cursor past n bytes just written. */
void otp__io_send_advance(otp__io_op *op, size_t n);

/* Allocates the pool from io->cfg with every buffer on the free stack, and
 * appends `label` to io->features. 0 or -ENOMEM. */
int otp__io_pool_init(otp__io *io, const char *label);
void otp__io_pool_fini(otp__io_pool *p);

static inline void *otp__io_pool_buf(const otp__io_pool *p, unsigned i)
{
    return p->mem + (size_t)i * p->size;
}

/* The user-space free stack: a buffer marked out, or NULL when empty; and
 * back in (a receive that found nothing to read). */
static inline void *otp__io_pool_take(otp__io_pool *p)
{
    if (p->nfree == 0)
        return NULL;
    unsigned i = p->free[--p->nfree];
    p->out[i] = 1;
    return otp__io_pool_buf(p, i);
}

static inline void otp__io_pool_put(otp__io_pool *p, unsigned i)
{
    OTP__IO_ASSERT(p->nfree < p->nbufs);
    p->out[i] = 0;
    p->free[p->nfree++] = (uint16_t)i;
}

static inline unsigned otp__io_pool_index(const otp__io_pool *p, const void *buf)
{
    return (unsigned)(((const unsigned char *)buf - p->mem) / p->size);
}

#endif
