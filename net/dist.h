/* dist.h — what the runtime asks of the distribution layer (net/dist.c).
 * Internal API. */
#ifndef OTP_NET_DIST_H
#define OTP_NET_DIST_H

#include "otp/term.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdint.h>

#include "otp/runtime.h"

struct otp__shard;
struct otp_node;

/* Room for one more element in the array *arr of n elements of size
 * bytes and capacity *cap (doubling, from 16): false when out of memory,
 * the array then as it was. */
static inline bool otp__grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, c * size);
    if (!p)
        return false;
    *arr = p;
    *cap = c;
    return true;
}

/* True if dest names a process on another node: a pid of another node, or
 * {Name, Node} with Node not ours. */
bool otp__dist_is_remote(otp_runtime *rt, otp_term dest);

/* Sends msg to a remote dest (see otp__dist_is_remote) from self (NULL
 * outside a process). Encodes here, on the caller's shard (sh) or thread
 * (sh NULL); the connection's shard writes it, connecting first if needed.
 * Returns 0 (a send to an unreachable node is dropped, as Erlang drops
 * it), -OTP_ENOMEM, or -OTP_EBADARG when the runtime has no distribution
 * started. */
int otp__dist_send(otp_runtime *rt, struct otp__shard *sh, otp_proc *self, otp_term dest,
                   otp_term msg);

/* Alias ! Msg for an alias of another node: ALIAS_SEND {33, From, Alias}
 * + msg, if the connection negotiated ALIAS (dropped otherwise, as OTP
 * drops it). Like otp__dist_send otherwise. */
int otp__dist_alias_send(otp_runtime *rt, struct otp__shard *sh, otp_proc *self, otp_term alias,
                         otp_term msg);

/* Sends a control message with no payload (LINK, EXIT, MONITOR_P...) to
 * `node`, from the shard sh (or a thread, sh NULL), behind what sh sent
 * there before. 0, or a negative code (dropped). */
int otp__dist_ctl(otp_runtime *rt, struct otp__shard *sh, otp_term node, otp_term ctl);

/* True if pid is a process of self's node. */
bool otp__local_pid_of(otp_proc *self, otp_term pid);
/* The runtime a node runs on. */
otp_runtime *otp__node_runtime(struct otp_node *n);
/* Starts a pg scope registered as scope (dist_pg.c) on shard. */
int otp__pg_start(otp_runtime *rt, unsigned shard, otp_term scope, otp_term *pid);
/* pg's atoms, made once before any node starts (otp_node_start). */
void otp__pg_init_atoms(void);
/* A node's home shard (its connections, services and scopes live there),
 * and whether it is hidden. */
unsigned otp__node_home(const struct otp_node *n);
/* The nodes connected now: which 0 all, 1 visible, 2 hidden. Writes up to
 * max, returns how many there are. Any thread. */
size_t otp__node_up(struct otp_node *n, otp_term *nodes, size_t max, int which);
/* erlang's BIFs that tools ask of a node by rpc (dist_rpc.c). */
int otp__node_builtin_fns(struct otp_node *n);

/* Makes a scope's pid one of the node's servers, ended by otp_node_stop. */
int otp__node_add_scope(struct otp_node *n, otp_term pid);
bool otp__node_hidden(const struct otp_node *n);
/* monitor_nodes(true) for self, plus {nodeup, Node} at once for every
 * visible node up now: a subscriber that must know every node, as pg's
 * init does with nodes(), misses none between the two. */
int otp__monitor_nodes_replay(otp_proc *self);

/* The node a remote pid or {Name, Node} belongs to; OTP_NONE otherwise. */
otp_term otp__dist_node_of(otp_term t);

/* Control message numbers (dist-protocol.md §4), for the runtime, the
 * connections and the frame reader. */
enum {
    OTP__CTL_LINK = 1,
    OTP__CTL_SEND = 2,
    OTP__CTL_EXIT = 3,
    OTP__CTL_UNLINK = 4,
    OTP__CTL_REG_SEND = 6,
    OTP__CTL_GROUP_LEADER = 7,
    OTP__CTL_EXIT2 = 8,
    OTP__CTL_SEND_TT = 12,
    OTP__CTL_EXIT_TT = 13,
    OTP__CTL_REG_SEND_TT = 16,
    OTP__CTL_EXIT2_TT = 18,
    OTP__CTL_MONITOR_P = 19,
    OTP__CTL_DEMONITOR_P = 20,
    OTP__CTL_MONITOR_P_EXIT = 21,
    OTP__CTL_SEND_SENDER = 22,
    OTP__CTL_SEND_SENDER_TT = 23,
    OTP__CTL_PAYLOAD_EXIT = 24,
    OTP__CTL_PAYLOAD_EXIT_TT = 25,
    OTP__CTL_PAYLOAD_EXIT2 = 26,
    OTP__CTL_PAYLOAD_EXIT2_TT = 27,
    OTP__CTL_PAYLOAD_MONITOR_P_EXIT = 28,
    OTP__CTL_SPAWN_REQUEST = 29,
    OTP__CTL_SPAWN_REQUEST_TT = 30,
    OTP__CTL_SPAWN_REPLY = 31,
    OTP__CTL_SPAWN_REPLY_TT = 32,
    OTP__CTL_ALIAS_SEND = 33,
    OTP__CTL_ALIAS_SEND_TT = 34,
    OTP__CTL_UNLINK_ID = 35,
    OTP__CTL_UNLINK_ID_ACK = 36,
    OTP__CTL_MAX = 37, /* ALTACT_SIG_SEND (OTP 28) */
};

/* What a connection keeps to read header-mode frames: its atom cache (one
 * per direction, filled by the peer's headers) and the fragmented messages
 * it is assembling (dist_frame.c). */
typedef struct otp__dist_rx {
    otp_term cache[2048];
    struct frag_seq *seqs;
    size_t nseqs, capseqs;
    size_t frag_bytes;
} otp__dist_rx;
void otp__dist_rx_init(otp__dist_rx *rx);
void otp__dist_rx_free(otp__dist_rx *rx); /* abandoned sequences go with it */

/* Decodes one frame body (the bytes after the u32 length) into arena a:
 * pass-through (112), a normal header with atom cache references (131,
 * 68), or a fragment (131, 69 / 131, 70). Returns 0 with the control
 * message's number, the control tuple and the payload (OTP_NONE when there
 * is none); 1 when there is nothing to act on yet (a tick, or a fragment
 * of an unfinished message); -1 with why (the connection must close).
 * Checks the shape of the control messages the node acts on. Untrusted
 * input: fuzzed. */
int otp__dist_decode_frame(otp__dist_rx *rx, otp_arena *a, const uint8_t *b, size_t len,
                           int64_t *op, otp_term *ctl, otp_term *msg, char *why, size_t cap);

#endif
