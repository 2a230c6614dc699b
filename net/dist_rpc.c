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
