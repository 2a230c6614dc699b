/* gen_server.c — the GenServer behaviour on top of the process runtime.
 *
 * A server is a process with a behaviour hook: when it has mail, the shard
 * lends it a worker task and gs_run takes messages one by one, decodes the
 * gen_server protocol and calls the user's callbacks. Between messages the
 * server has no stack and its arena goes back to the shard. Starting waits
 * for init (gen_server:start semantics); calls use a monitor and a reply
 * ref, and only look at messages that arrived after the request.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otp/etf.h"
#include "otp/gen_server.h"
#include "otp/text.h"
#include "dist.h"
#include "rt.h"

#define GS_BUDGET 64 /* messages per turn before the server lets others run */

static otp_term a_gen_call, a_gen_cast, a_system, a_terminate, a_exit, a_undef, a_ok, a_alias,
    a_normal, a_shutdown;

static void gs_atoms_once(void)
{
    a_gen_call = otp_atom("$gen_call");
    a_gen_cast = otp_atom("$gen_cast");
    a_system = otp_atom("system");
    a_terminate = otp_atom("terminate");
    a_exit = otp_atom("EXIT");
    a_undef = otp_atom("undef");
    a_ok = otp_atom("ok");
    a_alias = otp_atom("alias");
    a_normal = OTP_ATOM_NORMAL;
    a_shutdown = otp_atom("shutdown");
}

/* Atoms are made once per process; every thread may come through here.
 * Calls come through every time: the flag spares them pthread_once. */
static _Atomic bool gs_atoms_ready;

static void gs_atoms_init(void)
{
    gs_atoms_once();
    /* release: the atoms above are written before the flag says so */
    atomic_store_explicit(&gs_atoms_ready, true, memory_order_release);
}

static void gs_atoms(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    if (OTP_LIKELY(atomic_load_explicit(&gs_atoms_ready, memory_order_acquire)))
        return;
    pthread_once(&once, gs_atoms_init);
}

/* The start request: a spawn whose answer waits for init (a deferred
 * xcall, see rt.h), so it never points into the starter's stack. */
typedef struct gs_start {
    otp__spawn_req rq; /* first: the xcall */
    otp__sig *reason;  /* init's stop reason, a copy */
} gs_start;

typedef struct gs {
    const otp_gen_server_ops *ops;
    void *state;
    otp__sig *args;  /* init's argument, until init */
    gs_start *start; /* the starter's request, until init has run */
    otp_term parent; /* start_link: the linked starter */
    bool inited;
    bool shutdown;   /* the runtime is stopping: terminate(shutdown) next */
    uint64_t cb_gen; /* callbacks run so far: tells a from still in its callback */
    otp__sig *msg;   /* the message a callback is handling: its terms live here */
} gs;

static void start_done(otp_proc *p, gs *g, int rc, otp_term reason);

static void gs_free(otp_proc *p)
{
    gs *g = p->beh_data;
    if (!g)
        return;
    if (g->start) /* it died before init ran: the starter must hear of it */
        start_done(p, g, -OTP_EEXIT, OTP_NONE);
    if (g->args)
        otp__sig_free(g->args);
    otp__sig_free(g->msg); /* it died in a callback */
    free(g);
    p->beh_data = NULL;
}

static void gs_shutdown(otp_proc *p)
{
    gs *g = p->beh_data;
    /* Blocked inside a callback or not, terminate runs once the current
     * callback returns (the processes it waits on are stopping too, so it
     * will); the shard kills what is left after a deadline. */
    g->shutdown = true;
    if (p->task)
        return;
    if (p->state == OTP__P_IDLE || p->state == OTP__P_WAITING)
        otp__make_runnable(p);
}

static void gs_run(otp_proc *p);
static const otp__behaviour gs_behaviour = {gs_run, gs_free, gs_shutdown};

/* Tells the starter how init went (from the server's shard). */
static void start_done(otp_proc *p, gs *g, int rc, otp_term reason)
{
    gs_start *st = g->start;
    g->start = NULL;
    if (!st)
        return;
    st->rq.x.rc = rc;
    st->rq.pid = p->pid;
    if (reason != OTP_NONE)
        st->reason = otp__sig_new(OTP__SIG_MSG, 0, OTP_NONE, reason, OTP_NONE, OTP_NONE);
    otp__xcall_answer(p->sh, &st->rq.x);
}

/* Ends the server: terminate (if any), then exit. */
static _Noreturn void gs_exit(otp_proc *p, gs *g, otp_term reason)
{
    if (g->ops->terminate && g->inited)
        g->ops->terminate(p, reason, g->state);
    otp__proc_exit_self(p, reason);
}

/* The from's private part: the call's own terms, for a reply from the
 * callback that received it (id: its ref id for a call from this node). */
static inline void from_priv(otp_proc *self, const gs *g, otp_from *f, otp_term pid, otp_term tag,
                             otp_term ref, uint64_t id)
{
    f->priv_pid = pid;
    f->priv_tag = tag;
    f->priv_ref = ref;
    f->priv_proc = self;
    f->priv_gen = g->cb_gen;
    f->priv_id = id;
}

static bool from_parts(otp_proc *self, gs *g, otp_term from_term, otp_from *f)
{
    /* {Pid, Tag}; Tag is a ref or [alias | Ref]. Read straight from the
     * objects: this runs on every call a server takes. */
    if (!otp_is_boxed(from_term) || otp__kind(from_term) != OTP__H_TUPLE)
        return false;
    const otp__tuple *ft = otp__ptr(from_term);
    if (otp__hdr_size(ft->hdr) != 2)
        return false;
    otp_term pid = ft->el[0], tag = ft->el[1], ref = tag;
    bool alias = false;
    f->tag_len = 0;
    if (otp_is_cons(tag)) {
        const otp__cons *c = otp__ptr(tag);
        if (c->head == a_alias) {
            alias = true;
            ref = c->tail;
        }
    }
    if (!otp__is_lpid(pid) && !otp__is_kind(pid, OTP__H_PID))
        return false;
    if (!otp__is_kind(ref, OTP__H_REF)) {
        /* Another tag (gen_server:multi_call's {Ref, Node}): kept encoded,
         * when it is small enough to travel in the from. */
        int64_t n = otp_encode(tag, 0, f->tag_etf, sizeof f->tag_etf);
        if (n <= 0)
            return false;
        f->tag_len = (uint8_t)n;
        alias = false;
        ref = OTP_NONE;
    }
    otp__pidv pv;
    otp__pid_view(pid, &pv);
    f->pid_node = pv.node;
    f->pid_id = pv.id;
    f->pid_serial = pv.serial;
    f->pid_creation = pv.creation;
    if (ref != OTP_NONE) {
        const otp__ref *r = otp__ptr(ref);
        size_t n = (size_t)otp__hdr_size(r->hdr);
        f->ref_node = r->node;
        f->ref_creation = r->creation;
        /* all five: a fixed-size copy, no library call (unused ones are 0) */
        memcpy(f->ref_words, r->words, sizeof f->ref_words);
        f->ref_nwords = (uint8_t)n;
    } else {
        f->ref_node = OTP_NONE;
        f->ref_nwords = 0;
    }
    f->alias = alias;
    from_priv(self, g, f, pid, tag, ref, 0);
    return true;
}

/* from_parts for a call otp__call made on this node (its signal says so):
 * the envelope is {Tag, {Pid, [alias | Ref]}, Request} as build_call wrote
 * it, so nothing needs checking, and the reply can go by the ref's id. */
static void from_local(otp_proc *self, gs *g, const otp__sig *s, otp_term from_term, otp_from *f)
{
    otp_runtime *rt = self->sh->rt;
    const otp__tuple *ft = otp__ptr(from_term);
    otp_term pid = s->from, tag = ft->el[1];
    otp_term ref = ((const otp__cons *)otp__ptr(tag))->tail;
    const otp__ref *r = otp__ptr(ref);
    f->pid_node = rt->node;
    f->pid_id = otp__lpid_id(pid);
    f->pid_serial = otp__lpid_serial(pid);
    f->pid_creation = rt->creation;
    f->ref_node = rt->node;
    f->ref_creation = rt->creation;
    memcpy(f->ref_words, r->words, sizeof f->ref_words);
    f->ref_nwords = 3;
    f->alias = true;
    f->tag_len = 0;
    from_priv(self, g, f, pid, tag, ref, (uint64_t)(uintptr_t)s->ptr);
}

int otp_gen_server_reply(otp_proc *self, const otp_from *from, otp_term reply)
{
    if (!self || !from)
        return -OTP_EBADARG;
    otp_runtime *rt = self->sh->rt;
    if (from->priv_proc == self && self->beh == &gs_behaviour &&
        from->priv_gen == ((gs *)self->beh_data)->cb_gen) {
        /* Replying from the callback that got the call: its terms are
         * still alive in our arena. */
        if (from->priv_id)
            return otp__reply_local(self, from->priv_pid, from->priv_id, reply);
        otp_term to = otp__local_pid(rt, from->priv_pid);
        if (to)
            return otp__reply(self, to, from->priv_tag, from->priv_ref, reply);
    }
    otp_arena *a = otp_proc_arena(self);
    otp_term pid = otp_pid(a, from->pid_node, from->pid_id, from->pid_serial, from->pid_creation);
    otp_term ref = OTP_NONE, tag;
    if (from->tag_len) {
        /* a tag that is not a ref: as the caller sent it */
        if (otp_decode(a, from->tag_etf, from->tag_len, NULL, &tag, NULL, NULL) < 0)
            return -OTP_EBADARG;
    } else {
        ref = otp_ref(a, from->ref_node, from->ref_creation, from->ref_words, from->ref_nwords);
        tag = from->alias ? otp_cons(a, a_alias, ref) : ref;
    }
    otp_term to = otp__local_pid(rt, pid);
    if (!to) {
        /* A caller on another node: {Tag, Reply} to its alias for an
         * [alias | Ref] tag, as gen:reply does (a caller that gave up has
         * ended the alias, and the late reply is dropped there), else to
         * its pid. */
        if (!otp__dist_is_remote(rt, pid))
            return -OTP_EBADARG;
        if (from->alias)
            return otp__dist_alias_send(rt, self->sh, self, ref, OTP_TUPLE(a, tag, reply));
        return otp__dist_send(rt, self->sh, self, pid, OTP_TUPLE(a, tag, reply));
    }
    return otp__reply(self, to, tag, ref, reply);
}

static void handle_ret(otp_proc *p, gs *g, otp_gs_ret r, const otp_from *from)
{
    switch (r.action) {
    case OTP_GS_REPLY:
        if (from)
            otp_gen_server_reply(p, from, r.reply);
        return;
    case OTP_GS_NOREPLY:
        return;
    case OTP_GS_STOP:
        if (from && r.reply && r.reply != OTP_NONE)
            otp_gen_server_reply(p, from, r.reply);
        gs_exit(p, g, r.reason ? r.reason : a_normal);
    }
}

static void gs_init(otp_proc *p, gs *g)
{
    otp_term args = OTP_NIL, reason = OTP_NONE;
    if (g->args) {
        args = g->args->a;
        otp__sig_adopt(g->args, otp_proc_arena(p));
        g->args = NULL;
    }
    void *state = NULL;
    int v = g->ops->init(p, args, &state, &reason);
    g->state = state;
    p->arg = state;
    if (v == OTP_GS_INIT_OK) {
        g->inited = true;
        start_done(p, g, 0, OTP_NONE);
        return;
    }
    /* The name goes before the starter hears of it, so that it can start
     * the server again under the same name at once, as in Erlang. */
    if (p->name != OTP_NONE) {
        otp__name_release(p->sh->rt, p->name, p->pid);
        p->name = OTP_NONE;
    }
    if (v == OTP_GS_INIT_IGNORE) {
        start_done(p, g, 1, OTP_NONE);
        otp__proc_exit_self(p, a_normal);
    }
    if (reason == OTP_NONE)
        reason = a_normal;
    start_done(p, g, -OTP_EEXIT, reason);
    otp__proc_exit_self(p, reason);
}

/* sys's requests other than terminate, as gen_server answers them for
 * what a C server can say: get_state and get_status (the state through
 * format_state), change_code (nothing to change: ok). suspend, resume,
 * replace_state and the debug options get {error, {unknown_system_msg,
 * Req}} at once, as sys answers what a process does not handle, rather
 * than leaving the caller to time out. */
static otp_term system_answer(otp_proc *p, gs *g, otp_term req)
{
    otp_arena *a = otp_proc_arena(p);
    otp_term state = g->ops->format_state ? g->ops->format_state(p, g->state) : OTP_NONE;
    if (state == OTP_NONE)
        state = otp_atom("undefined");
    if (req == otp_atom("get_state"))
        return state;
    if (req == otp_atom("get_status")) {
        otp_term self = otp_self(p), name = p->name;
        otp_term parent = g->parent ? g->parent : self;
        char header[300];
        snprintf(header, sizeof header, "Status for generic server %s",
                 name != OTP_NONE ? otp_atom_cstr(name) : otp_sprint(a, self));
        otp_term status = otp_list(a, 3, OTP_TUPLE(a, otp_string(a, "Status"), otp_atom("running")),
                                   OTP_TUPLE(a, otp_string(a, "Parent"), parent),
                                   OTP_TUPLE(a, otp_string(a, "Logged events"), OTP_NIL));
        otp_term misc =
            otp_list(a, 3, OTP_TUPLE(a, otp_atom("header"), otp_string(a, header)),
                     OTP_TUPLE(a, otp_atom("data"), status),
                     OTP_TUPLE(a, otp_atom("data"),
                               otp_list(a, 1, OTP_TUPLE(a, otp_string(a, "State"), state))));
        return OTP_TUPLE(a, otp_atom("status"), self,
                         OTP_TUPLE(a, otp_atom("module"), otp_atom("gen_server")),
                         otp_list(a, 5, OTP_NIL, otp_atom("running"), parent, OTP_NIL, misc));
    }
    if (otp_is_tuple(req) && otp_tuple_arity(req) == 4 &&
        otp_tuple_get(req, 0) == otp_atom("change_code"))
        return a_ok;
    return OTP_TUPLE(a, otp_atom("error"), OTP_TUPLE(a, otp_atom("unknown_system_msg"), req));
}

static void gs_dispatch(otp_proc *p, gs *g, otp_term msg)
{
    const otp_gen_server_ops *ops = g->ops;
    size_t ar = otp__tuple_arity(msg);
    otp_term tag = ar ? otp__tuple_el(msg, 0) : OTP_NONE;
    if (ar == 3 && tag == a_gen_call) {
        otp_from from;
        if (g->msg->flags & OTP__SIGF_MONITOR)
            from_local(p, g, g->msg, otp__tuple_el(msg, 1), &from);
        else if (!from_parts(p, g, otp__tuple_el(msg, 1), &from))
            goto info; /* not a well-formed call: an ordinary message */
        if (!ops->handle_call)
            gs_exit(p, g, a_undef);
        handle_ret(p, g, ops->handle_call(p, otp__tuple_el(msg, 2), &from, g->state), &from);
        return;
    }
    if (ar == 2 && tag == a_gen_cast) {
        if (!ops->handle_cast)
            gs_exit(p, g, a_undef);
        handle_ret(p, g, ops->handle_cast(p, otp_tuple_get(msg, 1), g->state), NULL);
        return;
    }
    if (ar == 3 && tag == a_system) {
        otp_term req = otp_tuple_get(msg, 2);
        if (otp_tuple_arity(req) == 2 && otp_tuple_get(req, 0) == a_terminate) {
            otp_from from;
            otp_term reason = otp_tuple_get(req, 1);
            if (from_parts(p, g, otp_tuple_get(msg, 1), &from)) {
                /* sys:terminate is answered ok once terminate has run */
                if (ops->terminate)
                    ops->terminate(p, reason, g->state);
                otp_gen_server_reply(p, &from, a_ok);
                otp__proc_exit_self(p, reason);
            }
            gs_exit(p, g, reason);
        }
        otp_from from;
        if (from_parts(p, g, otp_tuple_get(msg, 1), &from))
            otp_gen_server_reply(p, &from, system_answer(p, g, req));
        return;
    }
    if (ar == 3 && tag == a_exit && p->trap_exit && g->parent &&
        otp__local_pid(p->sh->rt, otp_tuple_get(msg, 1)) == g->parent) {
        /* The parent died: terminate with its reason, as gen_server does. */
        gs_exit(p, g, otp_tuple_get(msg, 2));
    }
info:
    if (ops->handle_info)
        handle_ret(p, g, ops->handle_info(p, msg, g->state), NULL);
}

static void gs_run(otp_proc *p)
{
    gs *g = p->beh_data;
    if (!g->inited) {
        gs_init(p, g);
        otp__proc_arena_release(p);
    }
    for (int i = 0; i < GS_BUDGET; i++) {
        if (g->shutdown)
            gs_exit(p, g, a_shutdown);
        /* The message stays in its signal while its callback runs, and
         * is freed after it: a callback that builds nothing never takes
         * an arena, and none adopts the signal. */
        otp__sig *s = otp__sigq_pop(&p->mq);
        if (!s)
            break;
        g->msg = s;
        gs_dispatch(p, g, s->a);
        g->msg = NULL;
        otp__sig_free(s);
        g->cb_gen++;
        otp__proc_arena_release(p);
    }
}

/* ------------------------------------------------------------------ start */

/* On the server's shard: spawn it; the answer waits for init. */
static void gs_spawn_work(otp__shard *sh, otp__xcall *x)
{
    gs_start *st = (gs_start *)x;
    gs *g = st->rq.beh_data;
    g->start = st;
    x->rc = otp__spawn_here(sh, &st->rq);
    if (x->rc == 0)
        x->deferred = true; /* start_done answers */
    else
        g->start = NULL;
}

/* On the starter's shard: a starter that died meanwhile leaves its copy
 * of init's reason behind. */
static void gs_spawn_back(otp__shard *sh, otp__xcall *x, otp_proc *starter)
{
    gs_start *st = (gs_start *)x;
    otp__spawn_back(sh, x, starter); /* the starter's half of a link, as spawn does */
    if (!starter && st->reason) {
        otp__sig_free(st->reason);
        st->reason = NULL;
    }
}

int otp_gen_server_start(otp_runtime *rt, otp_proc *caller, const otp_gen_server_ops *ops,
                         otp_term args, const otp_gen_server_opts *opts, otp_term *pid,
                         otp_term *reason)
{
    gs_atoms();
    if (!rt || !ops || !ops->init)
        return -OTP_EBADARG;
    otp__shard *here = otp__this_shard();
    if (here && here->rt != rt)
        here = NULL;
    if (caller && (!here || here->current != caller))
        return -OTP_ECONTEXT;
    if (!caller && here)
        return -OTP_ECONTEXT; /* the shard loop itself cannot wait for init */
    if (!caller && opts && opts->link)
        return -OTP_EBADARG; /* a thread has no process to link to */
    if (atomic_load_explicit(&rt->state, memory_order_acquire) >= OTP__RT_STOPPING)
        return -OTP_ESTOPPED;
    gs *g = calloc(1, sizeof *g);
    gs_start *st = calloc(1, sizeof *st);
    if (!g || !st) {
        free(g);
        free(st);
        return -OTP_ENOMEM;
    }
    g->ops = ops;
    if (args != OTP_NIL && args != OTP_NONE) {
        g->args = otp__sig_new(OTP__SIG_MSG, 0, OTP_NONE, args, OTP_NONE, OTP_NONE);
        if (!g->args) {
            free(g);
            free(st);
            return -OTP_ENOMEM;
        }
    }
    otp__spawn_req *rq = &st->rq;
    rq->beh = &gs_behaviour;
    rq->beh_data = g;
    rq->opts.shard = opts ? opts->shard : OTP_SHARD_ANY;
    rq->opts.link = caller && opts && opts->link;
    rq->opts.trap_exit = opts && opts->trap_exit;
    rq->opts.name = opts ? opts->name : 0;
    rq->parent = rq->opts.link ? caller->pid : 0;
    g->parent = rq->parent;
    rq->x.work = gs_spawn_work;
    rq->x.back = gs_spawn_back;
    unsigned n = rt->nshards;
    int want = rq->opts.shard;
    rq->x.target = want >= 0 ? (unsigned)want % n
                   : want == OTP_SHARD_ANY && here
                       ? here->index
                       /* relaxed: only spreading */
                       : atomic_fetch_add_explicit(&rt->rr, 1, memory_order_relaxed) % n;
    int rc = otp__xcall_run(rt, caller, &rq->x);
    if (rc == 0)
        rc = rq->x.rc;
    if (rc < 0 && rc != -OTP_EEXIT) {
        /* never spawned: the behaviour data is still ours */
        gs_free(&(otp_proc){.beh_data = g});
    }
    if (st->reason) {
        if (reason)
            *reason = caller ? otp_copy(otp_proc_arena(caller), st->reason->a)
                             : (otp_is_atom(st->reason->a) ? st->reason->a : OTP_NONE);
        otp__sig_free(st->reason);
    }
    if (pid)
        *pid = rc == 0 ? rq->pid : OTP_NONE;
    free(st);
    return rc;
}

/* ------------------------------------------------------------ call, cast */

static int resolve_server(otp_runtime *rt, otp_arena *a, otp_term server, otp_term *to,
                          otp_term *named)
{
    if (otp_is_atom(server)) {
        otp_term pid = otp_whereis(rt, server);
        if (pid == OTP_NONE)
            return -OTP_ENOPROC;
        *to = pid;
        *named = OTP_TUPLE(a, server, rt->node);
        return 0;
    }
    *to = otp__local_pid(rt, server);
    *named = *to;
    return *to ? 0 : -OTP_EBADARG;
}

int otp_gen_server_call(otp_proc *self, otp_term server, otp_term request, uint64_t timeout_ms,
                        otp_term *reply)
{
    gs_atoms();
    otp__shard *sh = otp__this_shard();
    if (!self || sh != self->sh || sh->current != self)
        return -OTP_ECONTEXT;
    otp_runtime *rt = sh->rt;
    otp_term to, named;
    int rc = 0;
    if (otp__is_lpid(server) && (to = otp__local_pid(rt, server)) != 0)
        named = to; /* the common case, without the checks below */
    else if (otp__dist_is_remote(rt, server))
        to = named = server; /* on another node: otp__call monitors it there */
    else
        rc = resolve_server(rt, otp_proc_arena(self), server, &to, &named);
    if (rc < 0)
        return rc;
    if (to == self->pid)
        return -OTP_EBADARG; /* calling oneself deadlocks (Erlang: exit calling_self) */
    otp_term out = OTP_NONE;
    rc = otp__call(self, to, named, a_gen_call, request, otp__ref_new(sh), timeout_ms, &out);
    if (reply)
        *reply = out;
    return rc;
}

int otp_gen_server_cast(otp_proc *self, otp_term server, otp_term msg)
{
    gs_atoms();
    otp__shard *sh = otp__this_shard();
    if (!self || sh != self->sh)
        return -OTP_ECONTEXT;
    otp_arena *a = otp_proc_arena(self);
    return otp__send_from(sh, self, server, OTP_TUPLE(a, a_gen_cast, msg), OTP__SIG_MSG, OTP_NONE);
}

int otp_gen_server_stop(otp_proc *self, otp_term server, otp_term reason, uint64_t timeout_ms)
{
    gs_atoms();
    otp__shard *sh = otp__this_shard();
    if (!self || sh != self->sh || sh->current != self)
        return -OTP_ECONTEXT;
    otp_runtime *rt = sh->rt;
    otp_arena *a = otp_proc_arena(self);
    otp_term to, named;
    int rc = resolve_server(rt, a, server, &to, &named);
    if (rc < 0)
        return rc;
    /* proc_lib:stop: a system terminate request answered by ok, and the
     * monitor tells us it is gone. */
    otp_term mref;
    if ((rc = otp_monitor(self, to, &mref)) < 0)
        return rc;
    otp_term out;
    rc = otp__call(self, to, named, a_system, OTP_TUPLE(a, a_terminate, reason), otp__ref_new(sh),
                   timeout_ms, &out);
    if (rc == -OTP_EEXIT)
        rc = 0; /* gone before answering: stopped all the same */
    if (rc == 0) {
        /* wait for the DOWN, so the server is gone when we return */
        otp_term down;
        if (otp_receive(self, otp__match_down, &mref, timeout_ms, &down) < 0) {
            rc = -OTP_ETIMEDOUT;
            otp_demonitor(self, mref, OTP_DEMONITOR_FLUSH);
        }
    } else {
        otp_demonitor(self, mref, OTP_DEMONITOR_FLUSH);
    }
    return rc;
}

/* --------------------------------------------------- from outside threads */

typedef struct thread_call {
    otp_term server, request, reason;
    uint64_t timeout_ms;
    otp_arena *out_arena;
    otp_term reply;
    int rc;
    int kind; /* 0 call, 1 stop */
    otp__waiter w;
} thread_call;

static void proxy_main(otp_proc *self, void *arg)
{
    thread_call *tc = arg;
    otp_term reply = OTP_NONE;
    if (tc->kind == 0) {
        tc->rc = otp_gen_server_call(self, tc->server, tc->request, tc->timeout_ms, &reply);
        if (reply != OTP_NONE && tc->out_arena)
            tc->reply = otp_copy(tc->out_arena, reply);
    } else {
        tc->rc = otp_gen_server_stop(self, tc->server, tc->reason, tc->timeout_ms);
    }
    self->on_exit = NULL; /* answered here: the exit hook must not touch tc again */
    otp__waiter_signal(&tc->w);
}

/* The proxy was ended before it could answer (the runtime stopped, or it
 * was killed): the thread must not wait forever. */
static void proxy_gone(void *arg)
{
    otp__waiter_signal(&((thread_call *)arg)->w);
}

static int thread_op(otp_runtime *rt, thread_call *tc)
{
    otp__shard *here = otp__this_shard();
    if (here && here->rt == rt)
        return -OTP_ECONTEXT; /* a process uses otp_gen_server_call */
    /* The proxy runs on the server's shard when we know it: no hop. */
    otp_spawn_opts o = {.shard = OTP_SHARD_NEXT};
    otp_term to =
        otp_is_atom(tc->server) ? otp_whereis(rt, tc->server) : otp__local_pid(rt, tc->server);
    if (to && to != OTP_NONE)
        o.shard = (int)otp__pid_shard(to);
    otp__waiter_init(&tc->w);
    tc->rc = -OTP_ESTOPPED; /* unless the proxy answers */
    otp__spawn_req *rq = calloc(1, sizeof *rq);
    int rc = -OTP_ENOMEM;
    if (rq) {
        rq->fn = proxy_main;
        rq->arg = tc;
        rq->opts = o;
        rq->on_exit = proxy_gone;
        rq->on_exit_arg = tc;
        rc = otp__spawn(rt, NULL, rq, NULL, NULL);
    }
    if (rc == 0)
        otp__waiter_wait(&tc->w);
    otp__waiter_destroy(&tc->w);
    return rc < 0 ? rc : tc->rc;
}

int otp_runtime_call(otp_runtime *rt, otp_term server, otp_term request, uint64_t timeout_ms,
                     otp_arena *a, otp_term *reply)
{
    gs_atoms();
    thread_call tc = {.server = server,
                      .request = request,
                      .timeout_ms = timeout_ms,
                      .out_arena = a,
                      .reply = OTP_NONE};
    int rc = thread_op(rt, &tc);
    if (reply)
        *reply = tc.reply;
    return rc;
}

int otp_runtime_cast(otp_runtime *rt, otp_term server, otp_term msg)
{
    gs_atoms();
    otp_arena *a = otp_arena_new();
    if (!a)
        return -OTP_ENOMEM;
    int rc = otp_runtime_send(rt, server, OTP_TUPLE(a, a_gen_cast, msg));
    otp_arena_free(a);
    return rc;
}

int otp_runtime_stop_server(otp_runtime *rt, otp_term server, otp_term reason, uint64_t timeout_ms)
{
    gs_atoms();
    thread_call tc = {.server = server, .reason = reason, .timeout_ms = timeout_ms, .kind = 1};
    return thread_op(rt, &tc);
}
