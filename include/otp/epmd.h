/* epmd.h — EPMD, the Erlang Port Mapper: how nodes on a host find each
 * other's distribution ports.
 *
 * Two parts:
 * - Client calls that any thread may make (they block, so not from inside a
 *   process: that would stall its shard): look a node up, list the names,
 *   register a port the plain way and keep the socket.
 * - otp_epmd: a node's presence in EPMD, run by one shard of a runtime. It
 *   serves EPMD itself when the port is free (embedded EPMD) and is a client
 *   otherwise. If the node serving EPMD goes away, the others notice, one
 *   takes the port over and all re-register, within about a second. Static
 *   routes skip EPMD for the nodes they name.
 *
 * The EPMD port is the caller's, else ERL_EPMD_PORT from the environment
 * (as erl honours it), else 4369.
 */
#ifndef OTP_EPMD_H
#define OTP_EPMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otp/common.h"
#include "otp/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ERL_EPMD_PORT if set to a valid port, else 4369. */
uint16_t otp_epmd_default_port(void);

/* What EPMD knows of a node (PORT2_RESP). */
typedef struct otp_epmd_node_info {
    uint16_t port;    /* its distribution port */
    uint8_t type;     /* 'M' (77) normal, 'H' (72) hidden */
    uint8_t protocol; /* 0: TCP/IP */
    uint16_t highest; /* distribution versions it speaks */
    uint16_t lowest;
    char name[1024]; /* alive name, NUL-terminated */
    uint8_t extra[1024];
    size_t extra_len;
} otp_epmd_node_info;

/* Looks `name` (the alive name, before '@') up in the EPMD of `host` (a
 * host name or numeric address; NULL: 127.0.0.1). epmd_port 0: the
 * default. timeout_ms bounds the whole exchange (0: 10 s, like erl).
 * Returns 0 and *out, -OTP_ENOTFOUND when EPMD does not know the name, or
 * -OTP_EIO (no EPMD there, timeout, a malformed answer: err says which).
 * err may be NULL. */
int otp_epmd_port_please(const char *host, uint16_t epmd_port, const char *name,
                         unsigned timeout_ms, otp_epmd_node_info *out, otp_error *err);

/* NAMES: the text EPMD answers, "name N at port P\n" per node. *text is
 * malloc'd, NUL-terminated, the caller's to free. Returns its length or a
 * negative code as otp_epmd_port_please. */
int otp_epmd_names(const char *host, uint16_t epmd_port, unsigned timeout_ms, char **text,
                   otp_error *err);

/* Registers name/port with the local EPMD the plain way (ALIVE2): on
 * success *fd is the registration socket, which the caller keeps open for
 * as long as the node is registered, writes nothing to, and closes to
 * unregister. Returns 0 with *creation, -OTP_EEXIST when the name is
 * taken, or -OTP_EIO. */
int otp_epmd_alive2(uint16_t epmd_port, const char *name, uint16_t port, bool hidden,
                    unsigned timeout_ms, uint32_t *creation, int *fd, otp_error *err);

/* ------------------------------------------------------------ otp_epmd */

typedef struct otp_epmd otp_epmd;

typedef struct otp_epmd_config {
    const char *name;          /* alive name (before '@'); copied */
    uint16_t port;             /* the node's distribution port */
    bool hidden;               /* register as a hidden node ('H') */
    uint16_t epmd_port;        /* 0: otp_epmd_default_port() */
    bool client_only;          /* never serve EPMD, even when the port is free */
    const char *addresses;     /* embedded server: numeric addresses to listen on
                                  (comma-separated; loopback is added); NULL: all */
    unsigned shard;            /* the shard that runs it (its sockets, its timers) */
    unsigned start_timeout_ms; /* 0: 10 s to reach EPMD and register */
} otp_epmd_config;

/* Registers the node: serves EPMD if the port is free, else registers with
 * the EPMD there. Blocks until registered (call it from a thread, not from
 * a process). Returns 0 and *out (the caller's until otp_epmd_stop), or
 * -OTP_EEXIST (the name is registered already), -OTP_EIO (EPMD unreachable
 * before the timeout; err says why), -OTP_EBADARG. err may be NULL. */
int otp_epmd_start(otp_runtime *rt, const otp_epmd_config *cfg, otp_epmd **out, otp_error *err);

/* Unregisters, stops serving if it did (the other nodes take over), frees
 * ep. From a thread; also fine after otp_runtime_stop. */
void otp_epmd_stop(otp_epmd *ep);

/* The creation the first registration gave: it stamps the node's pids and
 * stays for the node's life, even when a takeover re-registers it. */
uint32_t otp_epmd_creation(const otp_epmd *ep);
/* True while this node serves EPMD. */
bool otp_epmd_serving(const otp_epmd *ep);
/* How many times the node has (re-)registered: 1 after start. */
uint64_t otp_epmd_registrations(const otp_epmd *ep);

/* Static routes: `node` ("name@host", or just "name") is at `port`, with no
 * EPMD asked. 0, -OTP_EBADARG, -OTP_ENOMEM; remove: -OTP_ENOTFOUND. */
int otp_epmd_add_static_route(otp_epmd *ep, const char *node, uint16_t port);
int otp_epmd_remove_static_route(otp_epmd *ep, const char *node);

/* Where is `node` ("name@host")? A static route first (the full name, then
 * the alive name), else PORT_PLEASE2 to the EPMD of host on this node's
 * EPMD port. Returns as otp_epmd_port_please. Any thread, blocking. */
int otp_epmd_lookup(otp_epmd *ep, const char *node, unsigned timeout_ms, otp_epmd_node_info *out,
                    otp_error *err);

#ifdef __cplusplus
}
#endif
#endif
