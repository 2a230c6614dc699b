/* server.h — an EPMD server driven by one otp__io: the standalone
 * `epmd` program runs it in a loop of its own, a node runs it on a shard
 * (embedded EPMD). Single-threaded: every call below, and every callback,
 * on the thread that owns the io. Internal API.
 *
 * Bounds, so bad clients cost only themselves: at most max_conns
 * connections (when full, the oldest connection that is not a registration
 * is closed to make room), requests of at most OTP__EPMD_MAX_REQ bytes, and
 * a request must be complete within packet_timeout of the connection's
 * start, so one byte a second does not keep a connection forever.
 */
#ifndef OTP_EPMD_SERVER_H
#define OTP_EPMD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "io.h"
#include "proto.h"

typedef struct otp__epmd_srv otp__epmd_srv;

typedef struct otp__epmd_srv_config {
    uint16_t port;             /* 0: 4369 */
    const char *addresses;     /* comma-separated numeric addresses to listen on,
                                  loopback added; NULL: 0.0.0.0 and :: */
    bool relaxed;              /* -relaxed_command_check: KILL with nodes, STOP */
    int debug;                 /* > 0: log each request to stderr, as epmd -d does */
    unsigned packet_timeout_s; /* 0: 60, Erlang's default */
    unsigned max_conns;        /* 0: 1024 */
    unsigned max_old_names;    /* unregistered names kept for their creation; 0: 1000 */
    /* KILL was accepted and its answer sent: the owner should close the server. */
    void (*on_kill)(void *arg);
    /* The server is closed: every socket closed and every op completed. It
     * has freed itself when this runs. */
    void (*on_closed)(void *arg);
    void *arg;
} otp__epmd_srv_config;

/* Opens the listeners on io and starts serving. Returns 0 and *out, or
 * -errno: -EADDRINUSE when another server has the port (the caller then
 * is a client), -EINVAL for a bad address list. cfg is copied. */
int otp__epmd_srv_start(otp__io *io, const otp__epmd_srv_config *cfg, otp__epmd_srv **out);

/* Closes every socket; on_closed follows once the last completion is in.
 * Registered nodes lose their registration (their sockets close). */
void otp__epmd_srv_close(otp__epmd_srv *srv);

/* Closes connections past their packet timeout and re-arms a listener that
 * failed (out of descriptors). Call about once a second. */
void otp__epmd_srv_tick(otp__epmd_srv *srv, uint64_t now_ms);

/* A node in the same process registers without a socket (embedded EPMD).
 * Returns 0 and *creation, or -EEXIST if the name is taken, -EINVAL for a
 * bad name. */
int otp__epmd_srv_register(otp__epmd_srv *srv, const otp__epmd_node *n, uint32_t *creation);
void otp__epmd_srv_unregister(otp__epmd_srv *srv, const char *name, size_t len);

/* For tests and stats: live connections, registered names. */
unsigned otp__epmd_srv_conns(const otp__epmd_srv *srv);
unsigned otp__epmd_srv_names(const otp__epmd_srv *srv);
uint16_t otp__epmd_srv_port(const otp__epmd_srv *srv);

#endif
