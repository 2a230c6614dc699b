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
    int (*send)(otp__io *io, otp__io_op *op, const struct iovec *iov, int iovcnt, uint64_t total);
    int (*cancel)(otp__io *io, otp__io_op *op);
    int (*close)(otp__io *io, otp__sock fd);
    int (*wait)(otp__io *io, uint64_t timeout_ms);
    /* NULL: otp__io_wake_from is a plain otp__io_wake. */
    void (*wake_from)(otp__io *self, otp__io *target);
    /* A descriptor that polls readable when wait has something to do. */
    int (*pollfd)(otp__io *io);
} otp__io_ops;

struct otp__io {
    const otp__io_ops *ops;
    otp__io_config cfg;
    /* The eventfd behind otp__io_wake. Set at creation and never changed;
     * the one field other threads touch (they write(2) to it). */
    int wake_fd;
    otp__io_stats stats; /* owner thread only */
    char features[192];
};

/* Each returns 0 with *out set, or -errno. The io_uring one fails with
 * -ENOSYS, -EPERM or -EACCES when the kernel refuses it or lacks an opcode
 * this backend needs; io.c decides whether to fall back. */
int otp__io_uring_create(otp__io **out, const otp__io_config *cfg);
int otp__io_epoll_create(otp__io **out, const otp__io_config *cfg);

/* Advance a send op's (idx, off) cursor past n bytes just written. */
void otp__io_send_advance(otp__io_op *op, size_t n);

#endif
