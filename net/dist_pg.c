/* dist_pg.c — pg scopes (the default one registered as `pg`) of a visible node,
 * speaking OTP's pg protocol (dist-protocol.md §6.5) so that groups are
 * shared with Erlang and Elixir nodes (Phoenix.PubSub-style clusters):
 *
 *   {discover, Peer}          -> cast {sync, Self, [{Group, Pids}]} to Peer;
 *                                a new peer is monitored and discovered back
 *   '$gen_cast' {sync, Peer, Groups}   the peer's whole membership
 *   {join, Peer, Group, PidOrPids}, {leave, Peer, PidOrPids, Groups}
 *   'DOWN' of a peer scope    forget its members
 *   a local member's 'DOWN'   it leaves all its groups (broadcast)
 *
 * Erlang's pg crashes on messages it does not expect, so nothing else is
 * ever sent to a peer. Like pg, a scope monitors nodes and sends
 * {discover, Self} to {Scope, Node} for every visible node that comes up.
 * Calls from C: {join_local, Group, Pid},
 * {leave_local, Group, Pid}, {members, Group} (see node.h).
 */
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "otp/gen_server.h"
#include "otp/node.h"

typedef struct member {
    otp_term group, pid; /* in the scope's arena */
    int peer;            /* index in peers, or -1 for ours */
    bool gone;
} member;

typedef struct pgpeer {
    otp_term scope; /* the remote scope's pid (in the arena) */
    bool gone;
} pgpeer;

typedef struct pgscope {
    otp_term name; /* the scope, an atom: our registered name and our peers' */
    otp_arena *a;  /* grows with what it has seen; freed with the scope */
    member *m;
    size_t nm, capm;
    pgpeer *p;
    size_t np, capp;
    otp_term *watched; /* local pids we monitor */
    size_t nw, capw;
} pgscope;

static otp_term a_discover, a_sync, a_join, a_leave, a_down, a_gen_cast, a_nodeup;

static int find_peer(pgscope *s, otp_term pid)
{
    for (size_t i = 0; i < s->np; i++)
        if (!s->p[i].gone && otp_exact_eq(s->p[i].scope, pid))
            return (int)i;
    return -1;
}

static int add_peer(otp_proc *self, pgscope *s, otp_term pid)
{
    int i = find_peer(s, pid);
    if (i >= 0 || !otp__grow((void **)&s->p, &s->capp, s->np, sizeof *s->p))
        return i;
    s->p[s->np] = (pgpeer){otp_copy(s->a, pid), false};
    otp_term ref;
    otp_monitor(self, pid, &ref); /* its DOWN (or noconnection) forgets it */
    return (int)s->np++;
}

static void add_member(pgscope *s, otp_term group, otp_term pid, int peer)
{
    for (size_t i = 0; i < s->nm; i++)
        if (!s->m[i].gone && s->m[i].peer == peer && otp_exact_eq(s->m[i].pid, pid) &&
            otp_exact_eq(s->m[i].group, group))
            return; /* pg allows joining twice; once is enough here */
    if (!otp__grow((void **)&s->m, &s->capm, s->nm, sizeof *s->m))
        return;
    s->m[s->nm++] = (member){otp_copy(s->a, group), otp_copy(s->a, pid), peer, false};
}

/* Removes pid from group (every group when group is OTP_NONE). */
static void del_member(pgscope *s, otp_term group, otp_term pid, int peer)
{
    for (size_t i = 0; i < s->nm; i++)
        if (!s->m[i].gone && s->m[i].peer == peer && otp_exact_eq(s->m[i].pid, pid) &&
            (group == OTP_NONE || otp_exact_eq(s->m[i].group, group)))
            s->m[i].gone = true;
}

/* Our members as [{Group, [Pid]}] for a sync. */
static otp_term local_groups(otp_arena *a, pgscope *s)
{
    otp_term out = OTP_NIL;
    for (size_t i = 0; i < s->nm; i++) {
        member *mi = &s->m[i];
        if (mi->gone || mi->peer != -1)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = !s->m[j].gone && s->m[j].peer == -1 && otp_exact_eq(s->m[j].group, mi->group);
        if (seen)
            continue;
        otp_term pids = OTP_NIL;
        for (size_t j = i; j < s->nm; j++)
            if (!s->m[j].gone && s->m[j].peer == -1 && otp_exact_eq(s->m[j].group, mi->group))
                pids = otp_cons(a, s->m[j].pid, pids);
        out = otp_cons(a, OTP_TUPLE(a, mi->group, pids), out);
    }
    return out;
}

static void broadcast(otp_proc *self, pgscope *s, otp_term msg)
{
    for (size_t i = 0; i < s->np; i++)
        if (!s->p[i].gone)
            otp_send(self, s->p[i].scope, msg);
}

static int pg_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    pgscope *s = calloc(1, sizeof *s);
    if (!s || !(s->a = otp_arena_new())) {
        free(s);
        *reason = otp_atom("enomem");
        return OTP_GS_INIT_STOP;
    }
    s->name = args;
    *state = s;
    /* As pg's init: every visible node, now and later, is told we exist
     * ({nodeup, Node} for those up already, then as they come). */
    otp__monitor_nodes_replay(self);
    return OTP_GS_INIT_OK;
}

static void pg_terminate(otp_proc *self, otp_term reason, void *state)
{
    pgscope *s = state;
    otp_arena_free(s->a);
    free(s->m);
    free(s->p);
    free(s->watched);
    free(s);
}

static otp_gs_ret pg_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    pgscope *s = state;
    otp_arena *a = otp_proc_arena(self);
    size_t ar = otp_is_tuple(req) ? otp_tuple_arity(req) : 0;
    otp_term tag = ar ? otp_tuple_get(req, 0) : OTP_NONE;
    if (ar == 3 && (tag == otp_atom("join_local") || tag == otp_atom("leave_local"))) {
        otp_term group = otp_tuple_get(req, 1), pid = otp_tuple_get(req, 2);
        if (!otp_is_pid(pid) || !otp__local_pid_of(self, pid))
            return otp_gs_reply(OTP_TUPLE(a, otp_atom("error"), otp_atom("nolocal")));
        if (tag == otp_atom("join_local")) {
            add_member(s, group, pid, -1);
            bool watched = false;
            for (size_t i = 0; i < s->nw && !watched; i++)
                watched = s->watched[i] == pid;
            if (!watched && otp__grow((void **)&s->watched, &s->capw, s->nw, sizeof *s->watched)) {
                s->watched[s->nw++] = pid;
                otp_term ref;
                otp_monitor(self, pid, &ref);
            }
            broadcast(self, s, OTP_TUPLE(a, a_join, otp_self(self), group, pid));
        } else {
            del_member(s, group, pid, -1);
            broadcast(self, s,
                      OTP_TUPLE(a, a_leave, otp_self(self), pid, otp_cons(a, group, OTP_NIL)));
        }
        return otp_gs_reply(otp_atom("ok"));
    }
    if (ar == 2 && tag == otp_atom("members")) {
        otp_term group = otp_tuple_get(req, 1), out = OTP_NIL;
        for (size_t i = s->nm; i-- > 0;)
            if (!s->m[i].gone && otp_exact_eq(s->m[i].group, group))
                out = otp_cons(a, s->m[i].pid, out);
        return otp_gs_reply(out);
    }
    return otp_gs_reply(OTP_TUPLE(a, otp_atom("error"), otp_atom("badarg")));
}

static void take_pids(pgscope *s, otp_term group, otp_term pids, int peer, bool join)
{
    if (otp_is_pid(pids)) {
        if (join)
            add_member(s, group, pids, peer);
        else
            del_member(s, group, pids, peer);
        return;
    }
    for (otp_term l = pids; otp_is_cons(l); l = otp_tail(l))
        if (otp_is_pid(otp_head(l)))
            take_pids(s, group, otp_head(l), peer, join);
}

static otp_gs_ret pg_cast(otp_proc *self, otp_term msg, void *state)
{
    pgscope *s = state;
    /* {sync, Peer, [{Group, Pids}]}: the peer's whole membership */
    if (otp_is_tuple(msg) && otp_tuple_arity(msg) == 3 && otp_tuple_get(msg, 0) == a_sync &&
        otp_is_pid(otp_tuple_get(msg, 1))) {
        int pi = add_peer(self, s, otp_tuple_get(msg, 1));
        if (pi < 0)
            return otp_gs_noreply();
        for (size_t i = 0; i < s->nm; i++)
            if (s->m[i].peer == pi)
                s->m[i].gone = true;
        for (otp_term l = otp_tuple_get(msg, 2); otp_is_cons(l); l = otp_tail(l)) {
            otp_term g = otp_head(l);
            if (otp_is_tuple(g) && otp_tuple_arity(g) == 2)
                take_pids(s, otp_tuple_get(g, 0), otp_tuple_get(g, 1), pi, true);
        }
    }
    return otp_gs_noreply();
}

static otp_gs_ret pg_info(otp_proc *self, otp_term msg, void *state)
{
    pgscope *s = state;
    otp_arena *a = otp_proc_arena(self);
    size_t ar = otp_is_tuple(msg) ? otp_tuple_arity(msg) : 0;
    otp_term tag = ar ? otp_tuple_get(msg, 0) : OTP_NONE;
    if (ar == 2 && tag == a_discover && otp_is_pid(otp_tuple_get(msg, 1))) {
        otp_term peer_pid = otp_tuple_get(msg, 1);
        otp_send(
            self, peer_pid,
            OTP_TUPLE(a, a_gen_cast, OTP_TUPLE(a, a_sync, otp_self(self), local_groups(a, s))));
        if (find_peer(s, peer_pid) < 0 && add_peer(self, s, peer_pid) >= 0)
            otp_send(self, peer_pid, OTP_TUPLE(a, a_discover, otp_self(self)));
        return otp_gs_noreply();
    }
    if (ar == 2 && tag == a_nodeup && otp_is_atom(otp_tuple_get(msg, 1))) {
        otp_send(self, OTP_TUPLE(a, s->name, otp_tuple_get(msg, 1)),
                 OTP_TUPLE(a, a_discover, otp_self(self)));
        return otp_gs_noreply();
    }
    if (ar == 4 && (tag == a_join || tag == a_leave)) {
        int pi = find_peer(s, otp_tuple_get(msg, 1));
        if (pi < 0)
            return otp_gs_noreply();
        if (tag == a_join) {
            take_pids(s, otp_tuple_get(msg, 2), otp_tuple_get(msg, 3), pi, true);
        } else {
            for (otp_term l = otp_tuple_get(msg, 3); otp_is_cons(l); l = otp_tail(l))
                take_pids(s, otp_head(l), otp_tuple_get(msg, 2), pi, false);
        }
        return otp_gs_noreply();
    }
    if (ar == 5 && tag == a_down) {
        otp_term pid = otp_tuple_get(msg, 3);
        int pi = find_peer(s, pid);
        if (pi >= 0) { /* a peer scope went: its members with it */
            s->p[pi].gone = true;
            for (size_t i = 0; i < s->nm; i++)
                if (s->m[i].peer == pi)
                    s->m[i].gone = true;
            return otp_gs_noreply();
        }
        /* one of ours: it leaves every group it was in */
        otp_term groups = OTP_NIL;
        for (size_t i = 0; i < s->nm; i++)
            if (!s->m[i].gone && s->m[i].peer == -1 && otp_exact_eq(s->m[i].pid, pid)) {
                groups = otp_cons(a, s->m[i].group, groups);
                s->m[i].gone = true;
            }
        for (size_t i = 0; i < s->nw; i++)
            if (s->watched[i] == pid) {
                s->watched[i] = s->watched[--s->nw];
                break;
            }
        if (groups != OTP_NIL)
            broadcast(self, s, OTP_TUPLE(a, a_leave, otp_self(self), pid, groups));
        return otp_gs_noreply();
    }
    return otp_gs_noreply();
}

static const otp_gen_server_ops pg_ops = {.init = pg_init,
                                          .handle_call = pg_call,
                                          .handle_cast = pg_cast,
                                          .handle_info = pg_info,
                                          .terminate = pg_terminate};

void otp__pg_init_atoms(void)
{
    a_discover = otp_atom("discover");
    a_sync = otp_atom("sync");
    a_join = otp_atom("join");
    a_leave = otp_atom("leave");
    a_down = otp_atom("DOWN");
    a_gen_cast = otp_atom("$gen_cast");
    a_nodeup = otp_atom("nodeup");
}

int otp__pg_start(otp_runtime *rt, unsigned shard, otp_term scope, otp_term *pid)
{
    otp_gen_server_opts o = {.shard = (int)shard, .name = scope};
    return otp_gen_server_start(rt, NULL, &pg_ops, scope, &o, pid, NULL);
}

/* ---- the C API (node.h) */

static int pg_request(otp_runtime *rt, otp_proc *self, otp_term scope, otp_term req, otp_arena *a,
                      otp_term *out)
{
    if (scope == OTP_NONE || scope == 0)
        scope = otp_atom("pg");
    if (!otp_is_atom(scope))
        return -OTP_EBADARG;
    if (self)
        return otp_gen_server_call(self, scope, req, OTP_GS_DEFAULT_TIMEOUT, out);
    return otp_runtime_call(rt, scope, req, OTP_GS_DEFAULT_TIMEOUT, a, out);
}

static int pg_change(otp_node *n, otp_proc *self, otp_term scope, const char *what, otp_term group,
                     otp_term pid)
{
    otp_runtime *rt = otp__node_runtime(n);
    if (otp__node_hidden(n))
        return -OTP_EBADARG;
    otp_arena *a = otp_arena_new();
    if (!a)
        return -OTP_ENOMEM;
    otp_term out;
    int rc = pg_request(rt, self, scope, OTP_TUPLE(a, otp_atom(what), group, pid), a, &out);
    if (rc == 0 && out != otp_atom("ok"))
        rc = -OTP_EBADARG;
    otp_arena_free(a);
    return rc;
}

int otp_pg_start_scope(otp_node *n, otp_term scope, otp_term *pid)
{
    if (!n || !otp_is_atom(scope) || otp__node_hidden(n))
        return -OTP_EBADARG;
    otp_term p;
    int rc = otp__pg_start(otp__node_runtime(n), otp__node_home(n), scope, &p);
    if (rc == 0)
        rc = otp__node_add_scope(n, p);
    if (rc == 0 && pid)
        *pid = p;
    return rc;
}

int otp_pg_join(otp_node *n, otp_proc *self, otp_term scope, otp_term group, otp_term pid)
{
    return pg_change(n, self, scope, "join_local", group, pid);
}

int otp_pg_leave(otp_node *n, otp_proc *self, otp_term scope, otp_term group, otp_term pid)
{
    return pg_change(n, self, scope, "leave_local", group, pid);
}

int otp_pg_members(otp_node *n, otp_proc *self, otp_term scope, otp_term group, otp_arena *a,
                   otp_term *pids)
{
    otp_runtime *rt = otp__node_runtime(n);
    if (otp__node_hidden(n))
        return -OTP_EBADARG;
    otp_arena *t = self ? otp_proc_arena(self) : a;
    return pg_request(rt, self, scope, OTP_TUPLE(t, otp_atom("members"), group), a, pids);
}
