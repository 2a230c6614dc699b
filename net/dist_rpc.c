/* dist_rpc.c — rpc:call from C into another node (node.h).
 *
 * The request goes to the peer's rex server as the gen_server call
 * {call, M, F, A, user}, the form every OTP release's rex still serves
 * (erl_interface's ei_rpc uses it too). Group leader `user` sends any
 * output of the function to the peer's own console: we have no group
 * leader process to lend it, and a pid of ours that did not answer the
 * io protocol would hang the function at its first io:format.
 *
 * rex catches what the function raises and replies {badrpc, {'EXIT', R}};
 * a throw is caught and returned as a value, exactly as rpc:call does on
 * an Erlang node. What rex cannot say (the node is gone, the call timed
 * out) we make up the way rpc:call does: {badrpc, nodedown} and
 * {badrpc, timeout}.
 */
#include <stdlib.h>

#include "dist.h"
#include "otp/gen_server.h"
#include "otp/node.h"

int otp_rpc_call(otp_node *n, otp_proc *self, otp_term node, otp_term module, otp_term function,
                 otp_term args, uint64_t timeout_ms, otp_arena *a, otp_term *result)
{
    if (!n || !result || (!self && !a) || !otp_is_atom(node) || !otp_is_atom(module) ||
        !otp_is_atom(function) || !otp_is_list(args))
        return -OTP_EBADARG;
    otp_runtime *rt = otp__node_runtime(n);
    otp_arena *t = self ? otp_proc_arena(self) : a;
    otp_term rex = OTP_TUPLE(t, otp_atom("rex"), node);
    otp_term req = OTP_TUPLE(t, otp_atom("call"), module, function, args, otp_atom("user"));
    otp_term reply = OTP_NONE;
    int rc = self ? otp_gen_server_call(self, rex, req, timeout_ms, &reply)
                  : otp_runtime_call(rt, rex, req, timeout_ms, a, &reply);
    switch (rc) {
    case 0:
        *result = reply;
        return 0;
    case -OTP_ETIMEDOUT:
        *result = OTP_TUPLE(t, otp_atom("badrpc"), otp_atom("timeout"));
        return 0;
    case -OTP_ENOPROC:
        *result = OTP_TUPLE(t, otp_atom("badrpc"), otp_atom("nodedown"));
        return 0;
    case -OTP_EEXIT:
        /* rex went down under the call: noconnection is the node going */
        if (reply == otp_atom("noconnection"))
            *result = OTP_TUPLE(t, otp_atom("badrpc"), otp_atom("nodedown"));
        else
            *result = OTP_TUPLE(t, otp_atom("badrpc"), OTP_TUPLE(t, otp_atom("EXIT"), reply));
        return 0;
    default:
        return rc;
    }
}

/* ---- erlang's BIFs that tools call on a node by rpc
 *
 * observer, remote consoles and monitoring scripts ask a node about itself
 * with rpc:call(Node, erlang, F, A). These answer as an Erlang node would,
 * for what a libotp node has: its name and connections, its registry, and
 * its processes (process_info with the items we keep). */

static otp_term node_list(otp_node *n, otp_arena *a, int which)
{
    otp_term buf[256], out = OTP_NIL;
    size_t k = otp__node_up(n, buf, 256, which);
    for (size_t i = k < 256 ? k : 256; i-- > 0;)
        out = otp_cons(a, buf[i], out);
    return out;
}

static int bif_node(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    *result = otp_runtime_node(otp_proc_runtime(self));
    return OTP_RPC_RETURN;
}

static int badarg(otp_term *result)
{
    *result = otp_atom("badarg");
    return OTP_RPC_ERROR;
}

static int bif_nodes(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    otp_node *n = arg;
    otp_arena *a = otp_proc_arena(self);
    if (args == OTP_NIL) {
        *result = node_list(n, a, 1);
        return OTP_RPC_RETURN;
    }
    /* nodes(Arg): an atom or a list of visible | hidden | connected | this | known */
    otp_term what = otp_head(args), out = OTP_NIL;
    otp_term one[1] = {what};
    size_t nw = 1;
    otp_term *w = one, many[8];
    if (otp_is_list(what)) {
        nw = 0;
        for (otp_term l = what; otp_is_cons(l) && nw < 8; l = otp_tail(l))
            many[nw++] = otp_head(l);
        w = many;
    }
    bool vis = false, hid = false, me = false;
    for (size_t i = 0; i < nw; i++) {
        if (w[i] == otp_atom("visible"))
            vis = true;
        else if (w[i] == otp_atom("hidden"))
            hid = true;
        else if (w[i] == otp_atom("connected"))
            vis = hid = true;
        else if (w[i] == otp_atom("known"))
            vis = hid = me = true;
        else if (w[i] == otp_atom("this"))
            me = true;
        else
            return badarg(result);
    }
    if (vis && hid)
        out = node_list(n, a, 0);
    else if (vis || hid)
        out = node_list(n, a, vis ? 1 : 2);
    if (me)
        out = otp_cons(a, otp_runtime_node(otp_proc_runtime(self)), out);
    *result = out;
    return OTP_RPC_RETURN;
}

static int bif_whereis(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    otp_term name = otp_head(args);
    if (!otp_is_atom(name))
        return badarg(result);
    otp_term pid = otp_whereis(otp_proc_runtime(self), name);
    *result = pid == OTP_NONE ? otp_atom("undefined") : pid;
    return OTP_RPC_RETURN;
}

static int bif_registered(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    otp_runtime *rt = otp_proc_runtime(self);
    otp_arena *a = otp_proc_arena(self);
    size_t k = otp_registered(rt, NULL, 0);
    otp_term *names = calloc(k + 1, sizeof *names);
    if (!names) {
        *result = otp_atom("system_limit");
        return OTP_RPC_ERROR;
    }
    k = otp_registered(rt, names, k); /* fewer now, maybe: never more than asked */
    otp_term out = OTP_NIL;
    for (size_t i = k; i-- > 0;)
        out = otp_cons(a, names[i], out);
    free(names);
    *result = out;
    return OTP_RPC_RETURN;
}

/* A pid of this node's, for the BIFs that take one: Erlang raises badarg
 * for a pid of another node. */
static bool local_pid_arg(otp_proc *self, otp_term pid)
{
    return otp_is_pid(pid) && otp__local_pid_of(self, pid);
}

static int bif_is_process_alive(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    otp_term pid = otp_head(args);
    if (!local_pid_arg(self, pid))
        return badarg(result);
    otp_proc_info info;
    *result = otp_atom(otp_process_info(otp_proc_runtime(self), self, pid, &info) == 0 ? "true"
                                                                                       : "false");
    return OTP_RPC_RETURN;
}

static otp_term info_item(otp_arena *a, const otp_proc_info *i, otp_term item)
{
    static const char *const status[] = {"running", "runnable", "waiting", "exiting"};
    otp_term v;
    if (item == otp_atom("registered_name")) {
        if (i->registered_name == OTP_NONE)
            return OTP_NIL; /* as Erlang answers for a process with no name */
        v = i->registered_name;
    } else if (item == otp_atom("status")) {
        v = otp_atom(status[i->status < 4 ? i->status : 2]);
    } else if (item == otp_atom("message_queue_len")) {
        v = otp_uint(a, i->message_queue_len);
    } else if (item == otp_atom("trap_exit")) {
        v = otp_atom(i->trap_exit ? "true" : "false");
    } else if (item == otp_atom("memory")) {
        v = otp_uint(a, i->memory);
    } else {
        return OTP_NONE;
    }
    return OTP_TUPLE(a, item, v);
}

static int bif_process_info(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    otp_term pid = otp_head(args);
    if (!local_pid_arg(self, pid))
        return badarg(result);
    otp_proc_info info;
    if (otp_process_info(otp_proc_runtime(self), self, pid, &info) < 0) {
        *result = otp_atom("undefined");
        return OTP_RPC_RETURN;
    }
    static const char *const all[] = {"registered_name", "status", "message_queue_len", "trap_exit",
                                      "memory"};
    otp_term items = OTP_NIL;
    bool single = false;
    if (otp_tail(args) == OTP_NIL) { /* process_info/1: what we keep */
        for (size_t k = sizeof all / sizeof all[0]; k-- > 0;)
            items = otp_cons(a, otp_atom(all[k]), items);
    } else {
        items = otp_head(otp_tail(args));
        single = otp_is_atom(items);
        if (single)
            items = otp_cons(a, items, OTP_NIL);
    }
    otp_term rev = OTP_NIL, out = OTP_NIL;
    for (otp_term l = items; otp_is_cons(l); l = otp_tail(l)) {
        otp_term t = info_item(a, &info, otp_head(l));
        if (t == OTP_NONE && single) {
            *result = otp_atom("undefined"); /* an item we do not keep */
            return OTP_RPC_RETURN;
        }
        if (t == OTP_NONE)
            continue;
        if (t == OTP_NIL && otp_tail(args) == OTP_NIL)
            continue; /* process_info/1 leaves out a missing name */
        if (single) {
            *result = t;
            return OTP_RPC_RETURN;
        }
        rev = otp_cons(a, t, rev);
    }
    for (; otp_is_cons(rev); rev = otp_tail(rev))
        out = otp_cons(a, otp_head(rev), out);
    *result = out;
    return OTP_RPC_RETURN;
}

int otp__node_builtin_fns(otp_node *n)
{
    static const struct {
        const char *f;
        unsigned arity;
        otp_rpc_fn fn;
    } bifs[] = {
        {"node", 0, bif_node},
        {"nodes", 0, bif_nodes},
        {"nodes", 1, bif_nodes},
        {"whereis", 1, bif_whereis},
        {"registered", 0, bif_registered},
        {"is_process_alive", 1, bif_is_process_alive},
        {"process_info", 1, bif_process_info},
        {"process_info", 2, bif_process_info},
    };
    for (size_t i = 0; i < sizeof bifs / sizeof bifs[0]; i++) {
        int rc = otp_node_register_fn(n, "erlang", bifs[i].f, bifs[i].arity, bifs[i].fn, n);
        if (rc < 0)
            return rc;
    }
    return 0;
}
