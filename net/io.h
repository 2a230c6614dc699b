/* io.h — the I/O backend interface a shard sleeps and does its socket I/O in.
 *
 * Completion-shaped: submit an operation, get exactly one completion for it
 * (a multishot accept gets one per connection, then one final). Backends are
 * chosen at run time through a small ops table: io_uring, and epoll which
 * emulates completions with edge-triggered readiness. Internal API.
 */
#ifndef OTP_NET_IO_H
#define OTP_NET_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* How the interface maps onto backends not built yet (it must admit them as
 * it is; only the private part of otp__io_op changes per platform):
 *
 * kqueue (BSD, macOS) is epoll's twin: each socket registered once with
 *   EVFILT_READ and EVFILT_WRITE, EV_CLEAR (edge); every op tries its syscall
 *   first and parks on its socket's read or write queue on EAGAIN.
 *   accept  -> accept() on EVFILT_READ of the listener, one completion per
 *              connection, until cancelled or an error;
 *   connect -> connect() then EVFILT_WRITE, SO_ERROR and getpeername decide;
 *              the timeout is an EVFILT_TIMER (ident = the op) or the same
 *              small heap the epoll backend keeps;
 *   recv / send -> recv() / sendmsg() with the same short-write loop;
 *   cancel  -> unlink the op from its queue, deliver -ECANCELED;
 *   close   -> cancel the socket's queued ops, close() (kqueue drops the
 *              filters itself);
 *   wait    -> kevent() with the timeout; wake -> EVFILT_USER + NOTE_TRIGGER,
 *              which any thread may post;
 *   recv_pooled -> the epoll backend's path unchanged: recv() into a buffer
 *              from the user-space free list, parked on EVFILT_READ on
 *              EAGAIN, and on the instance's starved list when the pool is
 *              empty;
 *   detach  -> EV_DELETE of both filters in one kevent() call, and the
 *              socket's queue record cleared; the new owner adds them to its
 *              own kqueue at its first op.
 * IOCP (Windows) is completion-shaped like io_uring: the op's private part
 *   holds the OVERLAPPED, sockets are associated with the port once, and
 *   otp__sock becomes SOCKET.
 *   accept  -> AcceptEx with a fresh socket per round, re-posted after each
 *              connection (the single-shot re-arm path of the io_uring
 *              backend);
 *   connect -> ConnectEx (after binding to the wildcard address), timeout
 *              from the backend's heap, then CancelIoEx;
 *   recv    -> WSARecv; send -> WSASend from the iovec converted to WSABUFs
 *              (a bounded stack copy, as the epoll backend already does),
 *              looping on short completions;
 *   cancel  -> CancelIoEx(socket, &overlapped): ERROR_OPERATION_ABORTED
 *              becomes -ECANCELED;
 *   close   -> closesocket, which aborts the socket's pending ops;
 *   wait    -> GetQueuedCompletionStatusEx with the timeout;
 *   wake    -> PostQueuedCompletionStatus with a reserved key, from any
 *              thread;
 *   recv_pooled -> a zero-byte WSARecv (the usual IOCP way to learn that a
 *              socket is readable without pinning a buffer), then a
 *              non-blocking WSARecv into a pool buffer, as the io_uring
 *              backend's user-space pool does after its poll;
 *   detach  -> a socket is associated with one completion port for life,
 *              and WSADuplicateSocket (meant for handing a socket to another
 *              process: the duplicate shares the underlying socket) is no
 *              way out. We pick forwarding: the socket stays on the old
 *              port, an op submitted by the new owner names its instance in
 *              its private part, and the old instance's wait re-posts each
 *              such completion to the new owner's port with
 *              PostQueuedCompletionStatus. One extra thread hop per
 *              completion, and the old instance must outlive the socket;
 *              shards hand sockets over rarely (balancing after accept).
 *   Results stay -errno style: WSA error codes map to their errno names.
 *
 * Threads: an otp__io and its ops belong to one thread (the shard's), which
 * makes every call below except otp__io_wake. otp__io_create may run on
 * another thread; the instance binds to the thread of its first
 * otp__io_wait (or of a submission that finds the io_uring SQ full before
 * that). Callbacks run inside otp__io_wait, never inside a submission
 * call; a callback may submit, cancel and close, but must not call
 * otp__io_wait or otp__io_destroy. A socket is used with one instance at a
 * time; otp__io_detach hands it to another.
 *
 * Errors: every function returns 0 (or a count) or -errno. A submission that
 * fails synchronously (bad arguments, op already pending, no memory) never
 * calls its callback; anything the socket itself reports (refused, reset,
 * timed out, cancelled) arrives as the completion's result instead.
 */

typedef int otp__sock; /* a socket; SOCKET under IOCP */

typedef struct otp__io otp__io; /* one per shard, opaque */
typedef struct otp__io_op otp__io_op;

/* res: bytes received or sent, the accepted socket, 0 for a connect, or
 * -errno. For a send it is always the whole length or an error. */
typedef void (*otp__io_done_fn)(otp__io_op *op, int64_t res);

/* One operation. Caller-owned memory: it stays valid and untouched from
 * submission until its final completion has been delivered, after which the
 * caller may reuse (resubmit) or free it — inside the callback too. The
 * buffers and the iovec array given to recv and send follow the same rule;
 * the sockaddr given to connect is copied. */
struct otp__io_op {
    otp__io_done_fn done; /* set by the caller before submitting */
    void *data;           /* the caller's, never touched by the backend */

    /* Private to the backend while the op is pending. Zero-initialise an op
     * before its first use (zero means idle). */
    struct otp__io_op_priv {
        struct otp__io_op *next, *prev; /* epoll: socket queue or ready list;
                                           io_uring: in-flight list */
        int64_t res;                    /* a result waiting to be delivered */
        otp__sock fd;
        uint8_t kind;   /* OTP__IO_K_* */
        uint8_t state;  /* 0 idle; otherwise backend-specific */
        uint16_t flags; /* OTP__IO_F_* */
        uint16_t gen;   /* io_uring: tells this submission from older ones */
        uint16_t cqes;  /* io_uring: completions still expected */
        int32_t heap;   /* epoll: index in the connect-timer heap, or -1 */
        union {
            struct otp__io_recv_state {
                void *buf; /* pooled: the buffer delivered, or NULL */
                size_t len;
            } recv;
            struct otp__io_send_state {
                const struct iovec *iov;
                int iovcnt, idx; /* next element to send */
                size_t off;      /* bytes of iov[idx] already sent */
                uint64_t total, sent;
                struct msghdr msg; /* io_uring: what the SQE points at */
                struct iovec head; /* io_uring: the rest of a cut element */
            } send;
            struct otp__io_connect_state {
                struct sockaddr_storage addr;
                socklen_t len;
                uint64_t deadline_ms; /* epoll: CLOCK_MONOTONIC ms, 0 none */
                int64_t ts[2];        /* io_uring: the link timeout's timespec */
                int64_t timeout_res;  /* io_uring: the link timeout's result */
            } connect;
        } u;
    } priv;
};

enum {
    OTP__IO_K_NONE,
    OTP__IO_K_ACCEPT,
    OTP__IO_K_CONNECT,
    OTP__IO_K_RECV,
    OTP__IO_K_SEND,
    OTP__IO_K_RECV_POOLED,
};
enum {
    OTP__IO_F_CANCEL = 1,    /* cancellation requested: end with -ECANCELED */
    OTP__IO_F_MULTISHOT = 2, /* io_uring: the accept SQE is multishot */
    OTP__IO_F_TIMEOUT = 4,   /* io_uring: a link timeout rides with the connect */
};

/* True from submission until the final completion has been delivered. */
static inline bool otp__io_op_pending(const otp__io_op *op)
{
    return op->priv.state != 0;
}

/* The buffer a pooled receive completed into (see otp__io_recv_pooled):
 * non-NULL after a completion with res > 0, until the op is submitted
 * again; NULL otherwise. */
static inline void *otp__io_pooled_buf(const otp__io_op *op)
{
    if (op->priv.kind != OTP__IO_K_RECV_POOLED || otp__io_op_pending(op))
        return NULL;
    return op->priv.u.recv.buf;
}

typedef enum otp__io_backend {
    OTP__IO_AUTO = 0, /* env OTP_IO_BACKEND, else io_uring falling back to epoll */
    OTP__IO_URING,
    OTP__IO_EPOLL,
} otp__io_backend;

typedef enum otp__io_wake_mode {
    OTP__IO_WAKE_EVENTFD = 0, /* default: an eventfd the target always listens on */
    OTP__IO_WAKE_MSG_RING,    /* io_uring: otp__io_wake_from posts a CQE ring to ring */
} otp__io_wake_mode;

typedef struct otp__io_config {
    otp__io_backend backend;
    unsigned entries;       /* io_uring SQ entries (0: 256); CQ is 8x */
    otp__io_wake_mode wake; /* how otp__io_wake_from wakes another instance */
    bool send_no_waitall;   /* io_uring: leave short sends to our own loop
                               instead of MSG_WAITALL's in-kernel retry */
    size_t send_chunk_max;  /* testing: cap each send syscall / SQE at this
                               many bytes (0: no cap) to force short writes */
    unsigned uring_without; /* testing: OTP__IO_URING_NO_* features to act as
                               if the kernel lacked, to run the fallbacks */
    unsigned pool_bufs;     /* buffers behind otp__io_recv_pooled (0: 64;
                               at most 32768) */
    size_t pool_buf_size;   /* bytes in each (0: 16384; below 2^31) */
} otp__io_config;

enum {
    OTP__IO_URING_NO_MULTISHOT = 1,   /* re-armed single-shot accepts (< 5.19) */
    OTP__IO_URING_NO_CANCEL_FD = 2,   /* close cancels op by op (< 5.19) */
    OTP__IO_URING_NO_MSG_RING = 4,    /* wake_from uses the eventfd (< 5.18) */
    OTP__IO_URING_NO_SETUP_FLAGS = 8, /* no DEFER/COOP_TASKRUN, SUBMIT_ALL (< 5.18) */
    OTP__IO_URING_NO_CQE_SKIP = 16,   /* every cancel posts a CQE (< 5.17) */
    OTP__IO_URING_NO_EXT_ARG = 32,    /* timed waits through a timeout SQE (< 5.11) */
    OTP__IO_URING_NO_BUF_RING = 64,   /* pooled receives: poll + recv(2) from the
                                         user-space pool (< 5.19) */
    OTP__IO_URING_BASELINE = 127,     /* all of them: the 5.6 kernel this needs */
};

typedef struct otp__io_stats {
    uint64_t completions; /* callbacks made */
    uint64_t short_sends; /* partial writes the backend continued */
    uint64_t wakes;       /* wake events consumed (coalesced wakes count once) */
    uint64_t pool_waits;  /* pooled receives parked because the pool was empty */
} otp__io_stats;

/* Creates an instance; *out is the caller's until otp__io_destroy. cfg may be
 * NULL (defaults) and is copied. The backend is cfg->backend, else the
 * environment's OTP_IO_BACKEND (io_uring or epoll; anything else: -EINVAL),
 * else io_uring; only that last, automatic choice falls back to epoll when
 * the kernel refuses io_uring (ENOSYS, EPERM, EACCES, or missing opcodes),
 * printing one line to stderr. A runtime creating many instances passes the
 * first one's backend explicitly to the rest, so it says so only once.
 * -EINVAL also for a pool geometry out of range (see otp__io_config). */
int otp__io_create(otp__io **out, const otp__io_config *cfg);

/* Frees the instance. Pending ops are dropped without completions; by the
 * time it returns the kernel no longer touches their memory (io_uring:
 * drained when called on the owner thread; elsewhere, the thread that owned
 * the ring must have exited). Sockets are not closed. The receive pool goes
 * with it: buffers callers still hold from otp__io_recv_pooled are freed
 * too, so stop using them first. */
void otp__io_destroy(otp__io *io);

const char *otp__io_backend_name(const otp__io *io); /* "io_uring" or "epoll" */
/* What the probe found. After the first otp__io_recv_pooled it also names
 * the pool: "buf_ring" (io_uring's registered buffer ring) or "user_pool". */
const char *otp__io_features(const otp__io *io);
void otp__io_get_stats(const otp__io *io, otp__io_stats *out);

/* Submissions. None blocks; io_uring hands them to the kernel at the next
 * otp__io_wait. Each returns 0 when op is now pending, or -EINVAL (bad
 * argument, op->done unset), -EBUSY (op already pending), -ENOMEM, or
 * -EAGAIN (io_uring: the kernel would not take more submissions now). */

/* Accept connections on a listening socket: done(op, fd) per connection (fd
 * non-blocking and close-on-exec, inheriting the listener's TCP_NODELAY),
 * until a completion with res < 0 — an error or -ECANCELED — which is the
 * last. The op stays pending in between. */
int otp__io_accept(otp__io *io, otp__io_op *op, otp__sock listen_fd);

/* Connect a non-blocking socket; res 0 or -errno, -ETIMEDOUT after
 * timeout_ms (0 or UINT64_MAX: no timeout). After any failure the socket's
 * state is unspecified: close it. */
int otp__io_connect(otp__io *io, otp__io_op *op, otp__sock fd, const struct sockaddr *sa,
                    socklen_t len, uint64_t timeout_ms);

/* Receive up to len bytes; res 0 means the peer closed its side. */
int otp__io_recv(otp__io *io, otp__io_op *op, otp__sock fd, void *buf, size_t len);

/* Receive into a buffer the backend picks from this instance's pool, so an
 * idle connection pins no receive buffer of its own. res as for
 * otp__io_recv: bytes received (> 0), 0 when the peer closed its side, or
 * -errno. On res > 0, otp__io_pooled_buf(op) is the buffer (res bytes of
 * data, at most cfg.pool_buf_size); the caller owns it until it hands it
 * back with otp__io_buf_release. An empty pool is never an error: the op
 * waits for a release (stats.pool_waits counts these), and cancel and close
 * end it with -ECANCELED like any other. The pool (cfg.pool_bufs buffers of
 * cfg.pool_buf_size bytes) is allocated at the first call, which may also
 * fail with -ENOMEM. io_uring uses a registered buffer ring where the
 * kernel has one (5.19+), else polls and recv(2)s from a user-space pool as
 * epoll does. */
int otp__io_recv_pooled(otp__io *io, otp__io_op *op, otp__sock fd);

/* Give a buffer from otp__io_pooled_buf back to the pool; it may go
 * straight to a receive waiting for one. Owner thread only; inside a
 * callback too. A NULL buf is ignored; a buffer that is not out (released
 * twice, or not from this pool) is a bug: asserted in debug builds,
 * ignored otherwise. */
void otp__io_buf_release(otp__io *io, void *buf);

/* Send every byte of iov[0..iovcnt): completes with the total once all are
 * written (the backend continues short writes itself), or with -errno
 * (-EPIPE, -ECONNRESET...; never SIGPIPE). iovcnt may exceed IOV_MAX. */
int otp__io_send(otp__io *io, otp__io_op *op, otp__sock fd, const struct iovec *iov, int iovcnt);

/* Ask a pending op to end. Returns 0, after which the op completes exactly
 * once more: with -ECANCELED, or with its own result if it had already
 * finished (an accept may also deliver connections it had already taken).
 * -ENOENT if op is not pending, -EALREADY if cancellation is already asked. */
int otp__io_cancel(otp__io *io, otp__io_op *op);

/* Close a socket used with this instance (sockets must be closed this way,
 * not with close(2)): its pending ops complete with -ECANCELED (or their own
 * result, as for otp__io_cancel). With ops pending, io_uring closes it at the
 * next wait, after cancelling them; otherwise it is closed on return. */
int otp__io_close(otp__io *io, otp__sock fd);

/* Forget a socket without closing it, so that another instance (another
 * shard's thread) may use it: -EBUSY if ops on it are pending here (cancel
 * them and let their completions arrive first), else 0. epoll takes it off
 * its epoll set; io_uring keeps nothing per socket. From then on the socket
 * is the new owner's, which closes it; this instance may use it again only
 * if it is handed back the same way. */
int otp__io_detach(otp__io *io, otp__sock fd);

/* The shard's sleep. Flushes submissions and delivers completions; blocks
 * for at most timeout_ms (0: never, UINT64_MAX: no limit) and only if
 * nothing is ready yet. Returns the number of completions delivered: 0 after
 * a timeout, a wake, or an interruption (a signal; kernel task work), so a
 * caller loops and rechecks its own state. -errno on failure. Owner thread
 * only; not from a callback. */
int otp__io_wait(otp__io *io, uint64_t timeout_ms);

/* A descriptor a host event loop can poll for readability: it is readable
 * when otp__io_wait would find work (epoll: the epoll fd; io_uring: the
 * ring's fd, which needs no deferred task work to be reliable — embedded
 * shards therefore use epoll). */
int otp__io_pollfd(otp__io *io);

/* Any thread: the target's current or next otp__io_wait returns promptly.
 * Wakes are never lost and may coalesce. Async-signal-safe. Costs a write(2)
 * every time; skipping it when the target is busy is the caller's business. */
void otp__io_wake(otp__io *target);

/* Like otp__io_wake, called by the thread that owns `self` (a shard waking
 * another shard). With wake = OTP__IO_WAKE_MSG_RING in self's config and
 * io_uring on both sides, the wake travels as an IORING_OP_MSG_RING from
 * self's ring; otherwise it is otp__io_wake(target). */
void otp__io_wake_from(otp__io *self, otp__io *target);

#endif
