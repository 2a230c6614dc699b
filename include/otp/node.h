/* node.h — distribution: the runtime's node joins an Erlang cluster.
 *
 * otp_node_start makes the runtime's node (otp_runtime_config.node_name,
 * "name@host") reachable: it listens for distribution connections,
 * registers with EPMD (serving it itself when the port is free, see
 * epmd.h), and starts the node's own services (net_kernel, so that
 * net_adm:ping answers pong; rex, for rpc; global and pg on a visible
 * node). From then on otp_send, otp_gen_server_reply
 * and the other sends accept remote pids and {Name, 'node@host'}: the first
 * send to a node connects to it, as in Erlang.
 *
 * What works: the handshake both ways, short and long names, ticks, both
 * framing modes (the atom cache and fragments are read; we send header
 * frames without atom references, fragmented above 64 KiB as OTP does),
 * sends by pid, by name and to aliases (ALIAS_SEND both ways; replies to
 * [alias|Ref] call tags go to the alias), links, exits and monitors across nodes
 * (noconnection when a node is lost or cannot be reached), monitor_node
 * and monitor_nodes, gen_server calls both ways, spawn requests (rpc:call,
 * erpc:call into C functions), rpc from C (otp_rpc_call), and, on a
 * visible node, global's connection protocol and pg scopes; a sender
 * waits while too much is queued toward a node (busy_dist_port). We do not
 * send atom cache references (we read them).
 */
#ifndef OTP_NODE_H
#define OTP_NODE_H

#include <stdbool.h>
#include <stdint.h>

#include "otp/common.h"
#include "otp/epmd.h"
#include "otp/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct otp_node otp_node;

typedef struct otp_node_config {
    const char *cookie;        /* NULL: the contents of ~/.erlang.cookie, as erl reads it */
    uint16_t port;             /* distribution listen port; 0: any free one */
    uint16_t port_max;         /* with port: the first free one in port..port_max
                                * (inet_dist_listen_min/max); 0: port alone */
    bool hidden;               /* a hidden node (not in the peers' nodes()) */
    unsigned net_ticktime;     /* seconds; 0: 60, Erlang's default */
    uint16_t epmd_port;        /* 0: ERL_EPMD_PORT or 4369 */
    bool epmd_client_only;     /* never serve EPMD ourselves */
    unsigned shard;            /* the shard that owns the listener and connections */
    unsigned setup_timeout_ms; /* connection set-up (net_setuptime); 0: 7000 */
    /* Bytes queued toward a node beyond which a process sending to it waits
     * until they are written (busy_dist_port; Erlang's +zdbbl). 0: 1 MiB. */
    size_t dist_buf_busy_limit;
} otp_node_config;

/* Starts distribution for rt's node. Call it from a thread, after
 * otp_runtime_start and before spawning processes: the node takes the
 * creation EPMD gives, which every pid and ref then carries. Returns 0 and
 * *out (the caller's until otp_node_stop), or -OTP_EBADARG (the runtime's
 * node name is not name@host), -OTP_EEXIST (the name is registered with
 * EPMD already), -OTP_EIO (no cookie, cannot listen, EPMD unreachable: err
 * says which), -OTP_ECONTEXT. err may be NULL. */
int otp_node_start(otp_runtime *rt, const otp_node_config *cfg, otp_node **out, otp_error *err);

/* Closes every connection, unregisters from EPMD, frees n. From a thread,
 * before otp_runtime_free (after otp_runtime_stop is fine). */
void otp_node_stop(otp_node *n);

/* The port the node listens on, and its EPMD presence (for static routes). */
uint16_t otp_node_port(const otp_node *n);
otp_epmd *otp_node_epmd(otp_node *n);

/* Bytes encoded toward node and not yet written (any thread): what
 * dist_buf_busy_limit is measured against. 0, -OTP_EBADARG. */
int otp_node_queued(otp_node *n, const char *node, size_t *bytes);

/* Connected nodes (any thread): writes up to max node atoms, returns how
 * many there are. */
size_t otp_node_connected(otp_node *n, otp_term *nodes, size_t max);

/* Connects to node ("name@host") now, as net_kernel:connect_node does
 * (sends connect by themselves). Blocks up to timeout_ms (0: the set-up
 * timeout); 0 once connected, -OTP_EIO if not (the node's log says why),
 * -OTP_EBADARG. From a thread. */
int otp_node_connect(otp_node *n, const char *node, unsigned timeout_ms, otp_error *err);
/* Closes the connection to node, as erlang:disconnect_node: links break
 * with noconnection, monitors fire. 0 (it goes shortly), -OTP_ENOTFOUND.
 * From a thread or a process (from a process, after what it sent before). */
int otp_node_disconnect(otp_node *n, const char *node);
/* monitor_node(Node, true|false) for the calling process: {nodedown, Node}
 * arrives when the connection goes (or at once if it cannot be made);
 * each `true` asks for one message. Connects if not connected. */
int otp_monitor_node(otp_proc *self, otp_term node, bool on);
/* net_kernel:monitor_nodes(true|false) for the calling process: {nodeup,
 * Node} and {nodedown, Node} for every visible node that connects or goes
 * (hidden ones are not reported, as in Erlang without {node_type, all});
 * each `true` subscribes once more, `false` ends them all. 0,
 * -OTP_EBADARG (no process, or no distribution), -OTP_ENOMEM. */
int otp_monitor_nodes(otp_proc *self, bool on);

/* ---- C functions for rpc:call and erpc:call
 *
 * Erlang's rpc:call(Node, M, F, Args) and erpc:call reach fn when M:F with
 * length(Args) == arity is registered. fn runs in a process of its own (it
 * may send, receive and call); it returns how the call ends and sets
 * *result (a term built in otp_proc_arena(self)):
 *   OTP_RPC_RETURN  the call returns *result
 *   OTP_RPC_THROW   throw(*result)
 *   OTP_RPC_ERROR   error(*result)   (rpc:call gives {badrpc, {'EXIT', ...}})
 *   OTP_RPC_EXIT    exit(*result)
 * A function that is not registered fails with undef, as on an Erlang
 * node. rpc:cast and erpc:cast run fn and ignore its result. */
enum { OTP_RPC_RETURN = 0, OTP_RPC_THROW, OTP_RPC_ERROR, OTP_RPC_EXIT };
typedef int (*otp_rpc_fn)(otp_proc *self, otp_term args, otp_term *result, void *arg);

/* Registers fn as module:function/arity (any thread; arg is passed to fn
 * and must outlive the node). 0, -OTP_EBADARG, -OTP_ENOMEM. */
int otp_node_register_fn(otp_node *n, const char *module, const char *function, unsigned arity,
                         otp_rpc_fn fn, void *arg);

/* rpc:call(Node, Module, Function, Args, Timeout) from C: runs the function
 * on node (an Erlang node, or a libotp node with it registered) through
 * its rex server. self is the calling process, or NULL from a thread
 * outside the runtime (then the call blocks and a must be given).
 * *result gets what rpc:call returns there: the function's value (a
 * thrown value too), or {badrpc, Reason}: {'EXIT', {Error, Stack}} when it
 * raised, nodedown when node cannot be reached or is lost during the
 * call, timeout after timeout_ms (OTP_INFINITY: none), in self's arena or
 * in a. The function's output goes to node's console. Returns 0 whenever
 * *result is set, -OTP_EBADARG (node, module, function not atoms; args
 * not a list), -OTP_ENOMEM. */
int otp_rpc_call(otp_node *n, otp_proc *self, otp_term node, otp_term module, otp_term function,
                 otp_term args, uint64_t timeout_ms, otp_arena *a, otp_term *result);

/* ---- pg scopes (a visible node only), shared with Erlang's pg and
 * Elixir's. A scope is a process registered under the scope's name that
 * speaks OTP's pg protocol with the scopes of that name on other nodes.
 * The default scope, `pg`, runs from otp_node_start on; Phoenix.PubSub's
 * is 'Elixir.Phoenix.PubSub' (its groups are the pubsub adapters' names,
 * each member a process that takes {forward_to_local, Topic, Msg,
 * Dispatcher}).
 *
 * Starts the scope `scope` (pg:start_link(Scope)): 0 and *pid (may be
 * NULL), -OTP_EEXIST (running already), -OTP_EBADARG (a hidden node, or
 * no distribution), -OTP_ENOMEM. From a thread or a process. */
int otp_pg_start_scope(otp_node *n, otp_term scope, otp_term *pid);

/* self is the calling process, or NULL from a thread outside the runtime
 * (then the call blocks). scope is the scope's name (OTP_NONE: `pg`). A
 * member must be a process of this node; it leaves its groups when it
 * exits. group is any term. 0, -OTP_EBADARG (not a local pid, or a hidden
 * node: no pg), -OTP_ENOPROC (no such scope), or another call error. */
int otp_pg_join(otp_node *n, otp_proc *self, otp_term scope, otp_term group, otp_term pid);
int otp_pg_leave(otp_node *n, otp_proc *self, otp_term scope, otp_term group, otp_term pid);
/* Every member of group on every node the scope knows, as a list of pids:
 * in a (from a thread) or in self's arena. */
int otp_pg_members(otp_node *n, otp_proc *self, otp_term scope, otp_term group, otp_arena *a,
                   otp_term *pids);

#ifdef __cplusplus
}
#endif
#endif
