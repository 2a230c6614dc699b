/* proc.c — processes: their table on each shard, the signals they exchange
 * (messages, exits, links, monitors) with Erlang's semantics, mailboxes and
 * selective receive, timers, and the public process API.
 *
 * Every signal is handled on the target's shard, in arrival order, by
 * otp__deliver. Between one sender and one receiver the order is the send
 * order: both travel the same path (the shard's local queue, or one SPSC
 * ring), which is what Erlang guarantees and no more.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist.h"
#include "rt.h"

static otp_term atom_exit, atom_down, atom_process, atom_noproc, atom_killed, atom_kill,
    atom_shutdown, atom_alias;

static void atoms_once(void)
{
    atom_exit = otp_atom("EXIT");
    atom_down = otp_atom("DOWN");
    atom_process = otp_atom("process");
    atom_noproc = otp_atom("noproc");
    atom_killed = otp_atom("killed");
    atom_kill = otp_atom("kill");
    atom_shutdown = otp_atom("shutdown");
    atom_alias = otp_atom("alias");
}

/* Called by every shard before it handles signals (any thread). */
void otp__proc_atoms_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, atoms_once);
}

/* ------------------------------------------------------------- refs */

uint64_t otp__ref_new(otp__shard *sh)
{
    return (++sh->next_ref << OTP__SHARD_BITS) | sh->index;
}

/* Three words like the BEAM's own refs: the first holds 18 bits, as a BEAM
 * expects of refs it did not make; the third carries a marker so that refs
 * we did not make are never mistaken for ours. */
otp_term otp__ref_term(otp_runtime *rt, otp_arena *a, uint64_t id)
{
    uint32_t w[3] = {(uint32_t)(id & 0x3ffff), (uint32_t)(id >> 18),
                     (uint32_t)(id >> 50) | (0x6c6fu << 16)};
    return otp_ref(a, rt->node, rt->creation, w, 3);
}

uint64_t otp__ref_id(otp_runtime *rt, otp_term ref)
{
    /* Read in place: every reply asks. */
    if (!otp__is_kind(ref, OTP__H_REF))
        return 0;
    const otp__ref *r = otp__ptr(ref);
    const uint32_t *w = r->words;
    if (otp__hdr_size(r->hdr) != 3 || r->node != rt->node || r->creation != rt->creation ||
        (w[2] >> 16) != 0x6c6fu || w[0] > 0x3ffff)
        return 0;
    return (uint64_t)w[0] | (uint64_t)w[1] << 18 | (uint64_t)(w[2] & 0x3fff) << 50;
}

/* Aliases carry their process: the three words of an ordinary ref of ours,
 * then the pid's id and serial, so a message to one finds its way without
 * a table (as the BEAM's pid-refs do). Five words need V4_NC, which every
 * peer of ours has. */
static otp_term alias_term(otp_runtime *rt, otp_arena *a, uint64_t id, otp_term pid)
{
    uint32_t w[5] = {(uint32_t)(id & 0x3ffff), (uint32_t)(id >> 18),
                     (uint32_t)(id >> 50) | (0x6c6fu << 16), otp__lpid_id(pid),
                     otp__lpid_serial(pid)};
    return otp_ref(a, rt->node, rt->creation, w, 5);
}

uint64_t otp__alias_of(otp_runtime *rt, otp_term ref, otp_term *pid)
{
    otp_term node;
    uint32_t creation, w[5];
    size_t n;
    if (otp_ref_parts(ref, &node, &creation, w, &n) < 0 || n != 5 || node != rt->node ||
        creation != rt->creation || (w[2] >> 16) != 0x6c6fu || w[0] > 0x3ffff ||
        w[4] > OTP__LPID_SERIAL_MAX)
        return 0;
    *pid = otp__mk_lpid(rt->node_slot, w[3], w[4]);
    return (uint64_t)w[0] | (uint64_t)w[1] << 18 | (uint64_t)(w[2] & 0x3fff) << 50;
}

otp_term otp__local_pid(otp_runtime *rt, otp_term t)
{
    if (otp__is_lpid(t))
        return otp__lpid_slot(t) == rt->node_slot ? t : 0;
    otp__pidv v;
    if (!otp_is_pid(t))
        return 0;
    otp__pid_view(t, &v);
    if (v.node != rt->node || v.creation != rt->creation || v.serial > OTP__LPID_SERIAL_MAX)
        return 0;
    return otp__mk_lpid(rt->node_slot, v.id, v.serial);
}

/* -------------------------------------------------------- the table */

otp_proc *otp__proc_lookup(otp__shard *sh, otp_term pid)
{
    if (!otp__is_lpid(pid) || otp__pid_shard(pid) != sh->index)
        return NULL;
    uint32_t slot = otp__pid_slot(pid);
    if (slot >= sh->nslots)
        return NULL;
    otp_proc *p = sh->procs[slot];
    return p && p->pid == pid ? p : NULL;
}

otp_proc *otp__proc_new(otp__shard *sh)
{
    uint32_t slot;
    if (sh->nfree) {
        slot = sh->free_slots[--sh->nfree];
    } else {
        if (sh->nslots == sh->capslots) {
            uint32_t cap = sh->capslots ? sh->capslots * 2 : 256;
            if (cap > OTP__MAX_SLOTS)
                return NULL;
            otp_proc **np = realloc(sh->procs, cap * sizeof *np);
            if (!np)
                return NULL;
            sh->procs = np;
            uint32_t *ns = realloc(sh->serials, cap * sizeof *ns);
            if (!ns)
                return NULL;
            sh->serials = ns;
            uint32_t *nf = realloc(sh->free_slots, cap * sizeof *nf);
            if (!nf)
                return NULL;
            sh->free_slots = nf;
            sh->capslots = cap;
        }
        slot = sh->nslots++;
        sh->serials[slot] = 0;
        sh->procs[slot] = NULL;
    }
    otp_proc *p = calloc(1, sizeof *p);
    if (!p) {
        sh->free_slots[sh->nfree++] = slot;
        return NULL;
    }
    p->sh = sh;
    p->slot = slot;
    p->pid =
        otp__mk_lpid(sh->rt->node_slot, slot << OTP__SHARD_BITS | sh->index, sh->serials[slot]);
    p->name = OTP_NONE;
    p->timer.kind = OTP__TK_PROC;
    otp__sigq_init(&p->mq);
    sh->procs[slot] = p;
    sh->nprocs++;
    atomic_fetch_add_explicit(&sh->rt->live, 1, memory_order_relaxed);
    return p;
}

static otp_arena *proc_arena(otp_proc *p)
{
    if (!p->arena) {
        otp__shard *sh = p->sh;
        p->arena = sh->nspare ? sh->spare_arenas[--sh->nspare] : otp_arena_new();
    }
    return p->arena;
}

/* A behaviour between callbacks gives its arena back to the shard. */
void otp__proc_arena_release(otp_proc *p)
{
    otp_arena *a = p->arena;
    if (!a)
        return;
    p->arena = NULL;
    otp__shard *sh = p->sh;
    otp_arena_reset(a);
    if (sh->nspare < 64 && otp_arena_bytes(a) <= 64 * 1024) {
        sh->spare_arenas[sh->nspare++] = a;
        return;
    }
    otp_arena_free(a);
}

/* ------------------------------------------------------------ timeouts
 *
 * A receive or call timeout goes into the wheel only when the shard's loop
 * comes round (otp__lazy_timers_arm): most calls are answered within the
 * same run of hand-offs and then never touch the wheel. Timers fire only in
 * the loop, and the deadline is fixed when the timeout starts, so arming it
 * later changes nothing about when it fires. */

static void timeout_start(otp__shard *sh, otp_proc *p, uint64_t at)
{
    otp__tlink *l = &p->timer.t.link, *head = &sh->lazy_timers;
    p->timer.t.deadline = at;
    p->lazy_timer = true;
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}

static void timeout_stop(otp__shard *sh, otp_proc *p)
{
    otp__tlink *l = &p->timer.t.link;
    if (p->lazy_timer) {
        l->prev->next = l->next;
        l->next->prev = l->prev;
        l->next = l->prev = NULL;
        p->lazy_timer = false;
    } else if (otp__timer_pending(&p->timer.t)) {
        otp__wheel_cancel(&sh->wheel, &p->timer.t);
    }
}

void otp__lazy_timers_arm(otp__shard *sh)
{
    otp__tlink *head = &sh->lazy_timers;
    if (head->next == head)
        return;
    /* A call's deadline is counted from the turn's clock, read when the
     * turn began, so that a call reads no clock. A turn that ran long (a
     * busy shard, a slow machine) would make it short: every deadline set
     * this turn moves by the turn's age, so none fires before its time
     * (one clock read per turn that left timeouts, not per call). */
    uint64_t age = otp__now_ms() - sh->now_ms;
    while (head->next != head) {
        otp__tlink *l = head->next;
        head->next = l->next;
        l->next->prev = head;
        l->next = l->prev = NULL;
        otp__timer *t = (otp__timer *)l; /* the link is the timer's first member */
        otp_proc *p = (otp_proc *)((char *)t - offsetof(otp_proc, timer));
        p->lazy_timer = false;
        if (t->deadline < UINT64_MAX - 1 - age)
            t->deadline += age;
        otp__wheel_add(&sh->wheel, t, t->deadline);
    }
}

/* ------------------------------------------------------------ sending */

/* Sends a signal built from our own terms: copies them, routes by `to`. */
static void send_sig(otp__shard *sh, unsigned kind, otp_term to, otp_term from, otp_term a,
                     otp_term b, otp_term c, uint8_t flags)
{
    otp__sig *s = otp__sig_new(kind, to, from, a, b, c);
    if (!s)
        return; /* out of memory: the signal is lost, as a dead link would be */
    s->flags = flags;
    otp__route(sh, s);
}

void otp__send_mon_sig(otp__shard *sh, unsigned kind, otp_term to, otp_term from, uint64_t id,
                       otp_term b, otp_term c)
{
    otp__sig *s = otp__sig_new(kind, to, from, OTP_NONE, b, c);
    if (!s)
        return;          /* out of memory: lost, as send_sig's are */
    s->a = (otp_term)id; /* an id, not a term: no copy, no arena */
    otp__route(sh, s);
}

/* A message into p's mailbox (the signal becomes a MSG). */
static void enqueue_msg(otp_proc *p, otp__sig *s)
{
    otp__sigq_push(&p->mq, s);
    if (p->state == OTP__P_WAITING || p->state == OTP__P_IDLE)
        otp__make_runnable(p);
}

/* Builds a message in the shard's scratch arena and queues it for p. */
static void enqueue_built(otp_proc *p, otp_term msg)
{
    otp__sig *s = otp__sig_new(OTP__SIG_MSG, p->pid, OTP_NONE, msg, OTP_NONE, OTP_NONE);
    otp_arena_reset(p->sh->scratch);
    if (s)
        enqueue_msg(p, s);
}

/* ------------------------------------------------------- links, monitors */

/* A remote pid (boxed) equals its copy by value; local pids are immediates. */
static bool same_pid(otp_term a, otp_term b)
{
    return a == b || (otp_is_boxed(a) && otp_is_boxed(b) && otp_exact_eq(a, b));
}

/* Keeps a remote term for as long as p lives (in its small own arena). */
static otp_term keep(otp_proc *p, otp_term t)
{
    /* no compaction here: a caller may hold a term kept a moment ago */
    if (!otp_is_boxed(t) && !otp_is_cons(t))
        return t;
    if (!p->mon_arena && !(p->mon_arena = otp_arena_new()))
        return OTP_NONE;
    return otp_copy(p->mon_arena, t);
}

#define MON_COMPACT_MIN 8192u

static otp_term rekeep(otp_arena *a, otp_term t)
{
    return otp_is_boxed(t) || otp_is_cons(t) ? otp_copy(a, t) : t;
}

/* mon_arena only grows, while links and monitors come and go: a process
 * that monitors remote processes all its life would grow without bound.
 * Once the arena has doubled since its last compaction, the live terms move
 * to a fresh one, so it stays within twice what is live (amortised O(1)
 * per term kept). Called before anything is kept, never in between. */
static void mon_compact(otp_proc *p)
{
    size_t at = p->mon_compact_at ? p->mon_compact_at : MON_COMPACT_MIN;
    if (!p->mon_arena || otp_arena_bytes(p->mon_arena) < at)
        return;
    otp_arena *b = otp_arena_new();
    if (!b)
        return; /* it grows for now; the next keep tries again */
    for (uint32_t i = 0; i < p->nlinks; i++)
        p->links[i] = rekeep(b, p->links[i]);
    for (uint32_t i = 0; i < p->nmons; i++) {
        otp__mon *m = &p->mons[i];
        bool same = m->named == m->other;
        m->other = rekeep(b, m->other);
        m->named = same ? m->other : rekeep(b, m->named);
        if (m->rref != OTP_NONE)
            m->rref = rekeep(b, m->rref);
    }
    otp_arena_free(p->mon_arena);
    p->mon_arena = b;
    size_t live = otp_arena_bytes(b);
    at = 2 * live > MON_COMPACT_MIN ? 2 * live : MON_COMPACT_MIN;
    p->mon_compact_at = at > UINT32_MAX ? UINT32_MAX : (uint32_t)at;
}

static bool has_link(otp_proc *p, otp_term pid, uint32_t *at)
{
    for (uint32_t i = 0; i < p->nlinks; i++)
        if (same_pid(p->links[i], pid)) {
            if (at)
                *at = i;
            return true;
        }
    return false;
}

static void add_link(otp_proc *p, otp_term pid)
{
    if (has_link(p, pid, NULL))
        return;
    mon_compact(p);
    if ((pid = keep(p, pid)) == OTP_NONE)
        return;
    if (p->nlinks == p->caplinks) {
        uint32_t cap = p->caplinks ? p->caplinks * 2 : 4;
        otp_term *n = realloc(p->links, cap * sizeof *n);
        if (!n)
            return;
        p->links = n;
        p->caplinks = cap;
    }
    p->links[p->nlinks++] = pid;
}

static bool del_link(otp_proc *p, otp_term pid)
{
    uint32_t i;
    if (!has_link(p, pid, &i))
        return false;
    p->links[i] = p->links[--p->nlinks];
    return true;
}

/* Is alias id active in p? A reply-once alias is used up by the message. */
static bool alias_take(otp_proc *p, uint64_t id)
{
    for (uint32_t i = 0; i < p->naliases; i++)
        if (p->aliases[i] >> 1 == id) {
            if (p->aliases[i] & 1)
                p->aliases[i] = p->aliases[--p->naliases];
            return true;
        }
    return false;
}

/* Two refs (both checked to be refs) by their parts: a server that many
 * remote callers monitor compares one DEMONITOR_P's ref with each of them,
 * once per call, and the generic term order costs too much for that. */
static bool same_ref(otp_term a, otp_term b)
{
    if (a == b)
        return true;
    if (!otp_is_boxed(a) || !otp_is_boxed(b))
        return false;
    const otp__ref *x = otp__ptr(a), *y = otp__ptr(b);
    return x->hdr == y->hdr && x->words[0] == y->words[0] && x->node == y->node &&
           x->creation == y->creation && otp__hdr_size(x->hdr) <= 5 &&
           !memcmp(x->words, y->words, otp__hdr_size(x->hdr) * sizeof x->words[0]);
}

static otp__mon *find_mon(otp_proc *p, uint64_t ref, bool origin)
{
    if (p->cmon.ref == ref && ref && p->cmon.origin == origin)
        return &p->cmon;
    for (uint32_t i = 0; i < p->nmons; i++)
        if (p->mons[i].ref == ref && p->mons[i].origin == origin)
            return &p->mons[i];
    return NULL;
}

/* Out of line: a call's monitor (add_call_mon) stays small without it. */
static OTP__NOINLINE bool add_mon(otp_proc *p, uint64_t ref, otp_term other, otp_term named,
                                  bool origin)
{
    if (p->nmons == p->capmons) {
        uint32_t cap = p->capmons ? p->capmons * 2 : 4;
        otp__mon *n = realloc(p->mons, cap * sizeof *n);
        if (!n)
            return false;
        p->mons = n;
        p->capmons = cap;
    }
    /* {Name, Node} and remote pids: kept in the process's own small arena */
    mon_compact(p);
    bool same = named == other;
    if ((other = keep(p, other)) == OTP_NONE)
        return false;
    named = same ? other : keep(p, named);
    if (named == OTP_NONE)
        return false;
    p->mons[p->nmons++] = (otp__mon){ref, other, named, OTP_NONE, origin};
    return true;
}

static void del_mon(otp_proc *p, otp__mon *m)
{
    if (m == &p->cmon)
        p->cmon.ref = 0;
    else
        *m = p->mons[--p->nmons];
}

/* A call's monitor (either end): in p->cmon when it is free and both ends
 * are local (nothing to keep), else in mons[]. */
static inline bool add_call_mon(otp_proc *p, uint64_t ref, otp_term other, otp_term named,
                                bool origin)
{
    if (!p->cmon.ref && ref && !otp_is_boxed(other) && !otp_is_boxed(named) &&
        !otp_is_cons(named)) {
        p->cmon = (otp__mon){ref, other, named, OTP_NONE, origin};
        return true;
    }
    return add_mon(p, ref, other, named, origin);
}

/* Every monitor of p, cmon's too: n of them, m(i) the i-th. */
static uint32_t mon_count(const otp_proc *p)
{
    return p->nmons + (p->cmon.ref != 0);
}

static otp__mon *mon_at(otp_proc *p, uint32_t i)
{
    return i < p->nmons ? &p->mons[i] : &p->cmon;
}

/* ------------------------------------------------------------- exits */

static void tmsg_drop(otp__shard *sh, otp__tmsg *tm);

/* What MONITOR_P / DEMONITOR_P name for an origin monitor of a remote
 * target: the pid, or the name of {Name, Node}. */
static otp_term mon_target(const otp__mon *m)
{
    return otp_is_tuple(m->named) ? otp_tuple_get(m->named, 0) : m->other;
}

/* Cancels the other end of an origin monitor (local signal or DEMONITOR_P). */
static void mon_cancel(otp__shard *sh, otp_proc *self, const otp__mon *m)
{
    if (!otp_is_boxed(m->other)) {
        otp__send_mon_sig(sh, OTP__SIG_DEMONITOR, m->other, self->pid, m->ref, OTP_NONE, OTP_NONE);
        return;
    }
    uint64_t buf[16];
    otp_arena win = otp__arena_window(buf, sizeof buf), *a = &win;
    otp__dist_ctl(sh->rt, sh, otp__dist_node_of(m->other),
                  OTP_TUPLE(a, otp_small(OTP__CTL_DEMONITOR_P), self->pid, mon_target(m),
                            otp__ref_term(sh->rt, a, m->ref)));
}

static void proc_free(otp_proc *p)
{
    otp__shard *sh = p->sh;
    otp__sig *s;
    /* An answer that arrived but was never read; one still travelling is
     * freed when it finds us gone. */
    if (p->pending && atomic_load_explicit(&p->pending->done, memory_order_relaxed))
        free(p->pending);
    if (p->on_exit)
        p->on_exit(p->on_exit_arg);
    /* Erlang cancels send_after timers aimed at a pid that exits. */
    while (p->timers)
        tmsg_drop(sh, p->timers);
    while ((s = otp__sigq_pop(&p->mq)))
        otp__sig_free(s);
    if (p->beh && p->beh->free)
        p->beh->free(p);
    if (p->arena) {
        otp_arena_free(p->arena);
        p->arena = NULL;
    }
    otp_arena_free(p->mon_arena);
    free(p->links);
    free(p->mons);
    free(p->aliases);
    sh->procs[p->slot] = NULL;
    sh->serials[p->slot] = (sh->serials[p->slot] + 1) & OTP__LPID_SERIAL_MAX;
    sh->free_slots[sh->nfree++] = p->slot;
    sh->nprocs--;
    free(p);
    otp__live_release(sh);
}

void otp__live_release(otp__shard *sh)
{
    /* release: a shard that reads 0 sees every exit's signals queued */
    if (atomic_fetch_sub_explicit(&sh->rt->live, 1, memory_order_acq_rel) == 1 &&
        atomic_load_explicit(&sh->rt->state, memory_order_acquire) >= OTP__RT_STOPPING) {
        otp_runtime *rt = sh->rt;
        for (unsigned i = 0; i < rt->nshards; i++)
            if (i != sh->index)
                otp__io_wake(rt->shards[i]->io);
    }
}

/* The signals a process sends as it dies, then its memory. reason may live
 * in p's own arena: every signal copies it before the arena goes. */
static void proc_die(otp_proc *p, otp_term reason)
{
    otp__shard *sh = p->sh;
    p->state = OTP__P_EXITING;
    timeout_stop(sh, p);
    otp_arena *ra = NULL; /* control messages to other nodes, if any */
    for (uint32_t i = 0; i < p->nlinks; i++) {
        otp_term l = p->links[i];
        if (!otp_is_boxed(l)) {
            send_sig(sh, OTP__SIG_EXIT, l, p->pid, reason, OTP_NONE, OTP_NONE, OTP__SIGF_LINK);
        } else if (ra || (ra = otp_arena_new())) {
            otp__dist_ctl(sh->rt, sh, otp__dist_node_of(l),
                          OTP_TUPLE(ra, otp_small(OTP__CTL_EXIT), p->pid, l, reason));
        }
    }
    for (uint32_t i = 0, n = mon_count(p); i < n; i++) {
        otp__mon *m = mon_at(p, i);
        if (!otp_is_boxed(m->other)) {
            if (m->origin)
                otp__send_mon_sig(sh, OTP__SIG_DEMONITOR, m->other, p->pid, m->ref, OTP_NONE,
                                  OTP_NONE);
            else
                otp__send_mon_sig(sh, OTP__SIG_DOWN, m->other, p->pid, m->ref, m->named, reason);
        } else if (ra || (ra = otp_arena_new())) {
            otp_term node = otp__dist_node_of(m->other);
            if (m->origin)
                otp__dist_ctl(sh->rt, sh, node,
                              OTP_TUPLE(ra, otp_small(OTP__CTL_DEMONITOR_P), p->pid, mon_target(m),
                                        otp__ref_term(sh->rt, ra, m->ref)));
            else
                otp__dist_ctl(sh->rt, sh, node,
                              OTP_TUPLE(ra, otp_small(OTP__CTL_MONITOR_P_EXIT), m->named, m->other,
                                        m->rref, reason));
        }
    }
    otp_arena_free(ra);
    if (p->name != OTP_NONE)
        otp__name_release(sh->rt, p->name, p->pid);
}

void otp__proc_terminate(otp_proc *p, otp_term reason)
{
    otp__shard *sh = p->sh;
    OTP_ASSERT(p != sh->current);
    if (p->state == OTP__P_EXITING)
        return;
    /* Out of the run queue: it must not be picked after it is freed. */
    if (p->state == OTP__P_RUNNABLE) {
        otp_proc **pp = &sh->rq_head, *prev = NULL;
        while (*pp && *pp != p) {
            prev = *pp;
            pp = &(*pp)->rq_next;
        }
        if (*pp) {
            *pp = p->rq_next;
            if (sh->rq_tail == p)
                sh->rq_tail = prev;
        }
    }
    proc_die(p, reason);
    if (p->task) {
        /* Suspended mid-function or mid-callback: its C frames are dropped,
         * as a killed Erlang process runs no more code. */
        otp__task *t = p->task;
        p->task = NULL;
        otp__stack_put(&sh->stacks, t->stack);
        free(t);
    }
    proc_free(p);
}

_Noreturn void otp__proc_exit_self(otp_proc *p, otp_term reason)
{
    otp__shard *sh = p->sh;
    otp__task *t = p->task;
    proc_die(p, reason);
    p->task = NULL;
    proc_free(p);
    sh->dead_task = t;
    otp__fiber_exit(&t->fiber, &sh->main);
}

/* An exit signal reaches p (not running, or p itself via otp_exit). */
static void exit_signal(otp_proc *p, otp_term from, otp_term reason, bool link)
{
    otp__shard *sh = p->sh;
    if (link && !del_link(p, from))
        return; /* unlinked meanwhile: the signal is void */
    bool self = sh->current == p;
    otp_term die = OTP_NONE;
    if (!link && reason == atom_kill) {
        die = atom_killed;
    } else if (p->trap_exit) {
        otp_arena *a = sh->scratch;
        enqueue_built(p, OTP_TUPLE(a, atom_exit, from, reason));
        return;
    } else if (reason == OTP_ATOM_NORMAL) {
        if (from != p->pid)
            return;
        die = OTP_ATOM_NORMAL;
    } else {
        die = reason;
    }
    if (self)
        otp__proc_exit_self(p, die);
    otp__proc_terminate(p, die);
}

/* ------------------------------------------------------------ delivery */

static void deliver_dead(otp__shard *sh, otp__sig *s)
{
    if (s->flags & OTP__SIGF_REMOTE) {
        /* From another node: answer as Erlang does, over the connection. */
        otp_arena *a = otp_arena_new();
        if (a && s->kind == OTP__SIG_LINK)
            otp__dist_ctl(sh->rt, sh, otp__dist_node_of(s->b),
                          OTP_TUPLE(a, otp_small(OTP__CTL_EXIT), s->to, s->b, atom_noproc));
        else if (a && s->kind == OTP__SIG_MONITOR)
            otp__dist_ctl(
                sh->rt, sh, otp__dist_node_of(s->b),
                OTP_TUPLE(a, otp_small(OTP__CTL_MONITOR_P_EXIT), s->c, s->b, s->a, atom_noproc));
        otp_arena_free(a);
        otp__sig_free(s);
        return;
    }
    switch (s->kind) {
    case OTP__SIG_LINK:
        /* link/1 to a process that does not exist: noproc back */
        send_sig(sh, OTP__SIG_EXIT, s->from, s->to, atom_noproc, OTP_NONE, OTP_NONE,
                 OTP__SIGF_LINK);
        /* the linker added the link already: let the EXIT find it */
        break;
    case OTP__SIG_MONITOR:
        otp__send_mon_sig(sh, OTP__SIG_DOWN, s->from, s->to, (uint64_t)s->a, s->b, atom_noproc);
        break;
    case OTP__SIG_MSG:
        if (s->flags & OTP__SIGF_MONITOR) {
            /* A call to a dead server: the caller's monitor fires, noproc. */
            otp__send_mon_sig(sh, OTP__SIG_DOWN, s->from, s->to, (uint64_t)(uintptr_t)s->ptr, s->to,
                              atom_noproc);
        }
        break;
    default:
        break; /* messages to the dead are dropped */
    }
    otp__sig_free(s);
}

static void deliver_other(otp__shard *sh, otp__sig *s);

/* Messages and replies (a call is one of each) take the short way; every
 * other signal, and anything for a process that is gone, the long one. */
void otp__deliver(otp__shard *sh, otp__sig *s)
{
    otp_proc *p;
    if (OTP_LIKELY(s->kind == OTP__SIG_MSG || s->kind == OTP__SIG_REPLY) &&
        (p = otp__proc_lookup(sh, s->to)) != NULL && p->state != OTP__P_EXITING) {
        if (OTP_LIKELY(!(s->flags & (OTP__SIGF_TO_ALIAS | OTP__SIGF_MONITOR | OTP__SIGF_ALIAS))) ||
            (s->flags == OTP__SIGF_MONITOR &&
             add_call_mon(p, (uint64_t)(uintptr_t)s->ptr, s->from, s->from, false)) ||
            (s->kind == OTP__SIG_REPLY && (s->flags & OTP__SIGF_ALIAS) && p->alias &&
             (uint64_t)(uintptr_t)s->ptr == p->alias)) {
            enqueue_msg(p, s);
            return;
        }
    }
    deliver_other(sh, s);
}

static OTP__NOINLINE void deliver_other(otp__shard *sh, otp__sig *s)
{
    if (s->kind == OTP__SIG_RUN) {
        void (**fn)(otp__shard *, void *) = s->ptr;
        (*fn)(sh, fn);
        otp__sig_free(s);
        return;
    }
    otp_proc *p = otp__proc_lookup(sh, s->to);
    if (!p || p->state == OTP__P_EXITING) {
        deliver_dead(sh, s);
        return;
    }
    switch (s->kind) {
    case OTP__SIG_MSG:
        if ((s->flags & OTP__SIGF_TO_ALIAS) && !alias_take(p, (uint64_t)(uintptr_t)s->ptr))
            break; /* the alias is gone: dropped, as Erlang drops it */
        if (s->flags & OTP__SIGF_MONITOR)
            add_call_mon(p, (uint64_t)(uintptr_t)s->ptr, s->from, s->from, false);
        enqueue_msg(p, s);
        return;
    case OTP__SIG_REPLY:
        /* A reply to an alias ([alias | Ref]) lives only as long as the
         * call that made it; a reply to a plain ref tag is an ordinary
         * message, whoever asked. */
        if (!(s->flags & OTP__SIGF_ALIAS) ||
            (p->alias && (uint64_t)(uintptr_t)s->ptr == p->alias)) {
            enqueue_msg(p, s);
            return;
        }
        break; /* a late reply to a call that gave up: dropped */
    case OTP__SIG_EXIT: {
        otp_term from = s->flags & OTP__SIGF_REMOTE ? s->b : s->from, reason = s->a;
        bool link = s->flags & OTP__SIGF_LINK;
        /* The reason lives in s: keep s until the signal is handled. */
        exit_signal(p, from, reason, link);
        break;
    }
    case OTP__SIG_LINK:
        add_link(p, s->flags & OTP__SIGF_REMOTE ? s->b : s->from);
        break;
    case OTP__SIG_UNLINK:
        del_link(p, s->flags & OTP__SIGF_REMOTE ? s->b : s->from);
        break;
    case OTP__SIG_MONITOR:
        if (s->flags & OTP__SIGF_REMOTE) {
            /* MONITOR_P: its ref and what it named are kept for the exit */
            if (add_mon(p, otp__ref_new(sh), s->b, s->c, false)) {
                otp_term rref = keep(p, s->a);
                if (rref == OTP_NONE)
                    p->nmons--;
                else
                    p->mons[p->nmons - 1].rref = rref;
            }
            break;
        }
        add_mon(p, (uint64_t)s->a, s->from, s->from, false);
        break;
    case OTP__SIG_DEMONITOR: {
        otp__mon *m = NULL;
        if (s->flags & OTP__SIGF_REMOTE) {
            for (uint32_t i = 0; i < p->nmons && !m; i++)
                if (!p->mons[i].origin && p->mons[i].rref != OTP_NONE &&
                    same_ref(p->mons[i].rref, s->a))
                    m = &p->mons[i];
        } else {
            m = find_mon(p, (uint64_t)s->a, false);
        }
        if (m)
            del_mon(p, m);
        break;
    }
    case OTP__SIG_DOWN: {
        otp__mon *m = find_mon(p, (uint64_t)s->a, true);
        if (!m)
            break;                 /* demonitored meanwhile */
        otp_term named = m->named; /* as the monitor named it: pid or {Name, Node} */
        del_mon(p, m);
        otp_arena *a = sh->scratch;
        otp_term ref = otp__ref_term(sh->rt, a, (uint64_t)s->a);
        otp__sig *d = otp__sig_new(OTP__SIG_MSG, p->pid, s->from,
                                   OTP_TUPLE(a, atom_down, ref, atom_process, named, s->c),
                                   OTP_NONE, OTP_NONE);
        otp_arena_reset(a);
        if (d) {
            d->flags = OTP__SIGF_DOWN;
            d->ptr = (void *)(uintptr_t)s->a;
            enqueue_msg(p, d);
        }
        break;
    }
    default:
        break;
    }
    otp__sig_free(s);
}

/* ------------------------------------------------------------- receive */

/* Scans from *start for a match; waits up to timeout. */
static int recv_from(otp_proc *self, otp__sig **start, otp_match_fn match, void *ctx,
                     uint64_t timeout_ms, otp_term *msg)
{
    otp__shard *sh = self->sh;
    otp__sig **pp = start ? start : &self->mq.head;
    bool armed = false;
    for (;;) {
        for (; *pp; pp = &(*pp)->next) {
            otp__sig *s = *pp;
            if (match && !match(s->a, ctx))
                continue;
            otp__sigq_unlink(&self->mq, pp);
            if (armed)
                timeout_stop(sh, self);
            self->timed_out = false; /* a timer that fired as this arrived */
            otp_term m = s->a;
            otp__sig_adopt(s, proc_arena(self));
            if (msg)
                *msg = m;
            return 0;
        }
        if (timeout_ms == 0 || self->timed_out) {
            self->timed_out = false;
            return -OTP_ETIMEDOUT;
        }
        if (!armed && timeout_ms != OTP_INFINITY) {
            self->timed_out = false;
            /* +1: the clock is in whole ms, and a timeout is never short */
            uint64_t at = otp__now_ms() + 1;
            at = timeout_ms > UINT64_MAX - 1 - at ? UINT64_MAX - 1 : at + timeout_ms;
            timeout_start(sh, self, at);
            armed = true;
        }
        otp__suspend(self, OTP__P_WAITING);
    }
}

int otp_receive(otp_proc *self, otp_match_fn match, void *ctx, uint64_t timeout_ms, otp_term *msg)
{
    if (!self || otp__this_shard() != self->sh || self->sh->current != self)
        return -OTP_ECONTEXT;
    return recv_from(self, NULL, match, ctx, timeout_ms, msg);
}

int otp__take(otp_proc *p, otp_arena *a, otp_term *msg)
{
    otp__sig *s = otp__sigq_pop(&p->mq);
    if (!s)
        return -OTP_ETIMEDOUT;
    *msg = s->a;
    otp__sig_adopt(s, a ? a : proc_arena(p));
    return 0;
}

static bool match_none(otp_term msg, void *ctx)
{
    (void)msg;
    (void)ctx;
    return false;
}

void otp_sleep(otp_proc *self, uint64_t ms)
{
    if (!self || self->sh->current != self)
        return;
    recv_from(self, NULL, match_none, NULL, ms, NULL);
}

void otp_yield(otp_proc *self)
{
    if (self && self->sh->current == self)
        otp__suspend(self, OTP__P_RUNNABLE);
}

/* ------------------------------------------------------------ the API */

otp_term otp_self(const otp_proc *self)
{
    return self->pid;
}
otp_runtime *otp_proc_runtime(const otp_proc *self)
{
    return self->sh->rt;
}
unsigned otp_proc_shard(const otp_proc *self)
{
    return self->sh->index;
}
otp_arena *otp_proc_arena(otp_proc *self)
{
    return proc_arena(self);
}
void *otp_proc_arg(const otp_proc *self)
{
    return self->arg;
}

/* The pid a destination names: a pid of ours, a name registered here. */
static otp_term resolve(otp_runtime *rt, otp_term dest)
{
    if (otp_is_tuple(dest) && otp_tuple_arity(dest) == 2 && otp_tuple_get(dest, 1) == rt->node)
        dest = otp_tuple_get(dest, 0); /* {Name, OurNode} */
    if (otp_is_atom(dest)) {
        otp_term pid = otp_whereis(rt, dest);
        return pid == OTP_NONE ? 0 : pid;
    }
    return otp__local_pid(rt, dest);
}

/* Alias ! Msg: to the process the alias names, if it still has it (checked
 * there, on arrival); to another node's alias through ALIAS_SEND; any
 * other ref is no one, and the message is dropped as Erlang drops it. */
static int send_alias(otp__shard *sh, otp_proc *self, otp_term ref, otp_term msg)
{
    otp_runtime *rt = sh->rt;
    otp_term to;
    uint64_t id = otp__alias_of(rt, ref, &to);
    if (!id) {
        otp_term node;
        uint32_t creation, w[5];
        size_t n;
        if (otp_ref_parts(ref, &node, &creation, w, &n) == 0 && node != rt->node)
            return otp__dist_alias_send(rt, sh, self, ref, msg);
        return 0;
    }
    otp__sig *s =
        otp__sig_new(OTP__SIG_MSG, to, self ? self->pid : OTP_NONE, msg, OTP_NONE, OTP_NONE);
    if (!s)
        return -OTP_ENOMEM;
    s->flags = OTP__SIGF_TO_ALIAS;
    s->ptr = (void *)(uintptr_t)id;
    otp__route(sh, s);
    return 0;
}

int otp__alias_deliver(otp__shard *sh, otp_term ref, otp_term msg)
{
    otp_term to;
    return otp__alias_of(sh->rt, ref, &to) ? send_alias(sh, NULL, ref, msg) : 0;
}

int otp__send_from(otp__shard *sh, otp_proc *self, otp_term dest, otp_term msg, unsigned kind,
                   otp_term alias)
{
    otp_runtime *rt = sh->rt;
    /* a local pid or a name is never boxed: only a bit test on their path */
    if (kind == OTP__SIG_MSG && otp_is_boxed(dest) && otp_is_ref(dest))
        return send_alias(sh, self, dest, msg);
    otp_term to = resolve(rt, dest);
    if (!to) {
        if (kind == OTP__SIG_MSG && otp__dist_is_remote(rt, dest))
            return otp__dist_send(rt, sh, self, dest, msg);
        return otp_is_atom(dest) ? -OTP_ENOPROC : (otp_is_pid(dest) ? 0 : -OTP_EBADARG);
    }
    otp__sig *s = otp__sig_new(kind, to, self ? self->pid : OTP_NONE, msg, alias, OTP_NONE);
    if (!s)
        return -OTP_ENOMEM;
    unsigned dshard = otp__pid_shard(to);
    otp__route(sh, s);
    if (dshard != sh->index && self)
        otp__send_backpressure(sh, self, dshard);
    return 0;
}

int otp_send(otp_proc *self, otp_term dest, otp_term msg)
{
    if (!self || otp__this_shard() != self->sh)
        return -OTP_ECONTEXT;
    return otp__send_from(self->sh, self, dest, msg, OTP__SIG_MSG, OTP_NONE);
}

int otp_alias(otp_proc *self, unsigned flags, otp_term *alias)
{
    if (!self || otp__this_shard() != self->sh || !alias)
        return -OTP_EBADARG;
    if (self->naliases == self->capaliases) {
        uint32_t cap = self->capaliases ? self->capaliases * 2 : 2;
        uint64_t *n = realloc(self->aliases, cap * sizeof *n);
        if (!n)
            return -OTP_ENOMEM;
        self->aliases = n;
        self->capaliases = cap;
    }
    uint64_t id = otp__ref_new(self->sh);
    otp_term t = alias_term(self->sh->rt, proc_arena(self), id, self->pid);
    if (t == OTP_NONE)
        return -OTP_ENOMEM;
    self->aliases[self->naliases++] = id << 1 | (flags & OTP_ALIAS_REPLY ? 1 : 0);
    *alias = t;
    return 0;
}

int otp_unalias(otp_proc *self, otp_term alias)
{
    if (!self || otp__this_shard() != self->sh)
        return -OTP_EBADARG;
    otp_term pid;
    uint64_t id = otp__alias_of(self->sh->rt, alias, &pid);
    if (!id || pid != self->pid)
        return 0;
    for (uint32_t i = 0; i < self->naliases; i++)
        if (self->aliases[i] >> 1 == id) {
            self->aliases[i] = self->aliases[--self->naliases];
            return 1;
        }
    return 0;
}

int otp_runtime_send(otp_runtime *rt, otp_term dest, otp_term msg)
{
    otp__shard *sh = otp__this_shard();
    if (sh && sh->rt == rt)
        return otp__send_from(sh, NULL, dest, msg, OTP__SIG_MSG, OTP_NONE);
    if (otp_is_ref(dest)) {
        otp_term pid;
        uint64_t id = otp__alias_of(rt, dest, &pid);
        if (!id)
            return otp__dist_is_remote(rt, dest) ? otp__dist_alias_send(rt, NULL, NULL, dest, msg)
                                                 : 0;
        otp__sig *s = otp__sig_new(OTP__SIG_MSG, pid, OTP_NONE, msg, OTP_NONE, OTP_NONE);
        if (!s)
            return -OTP_ENOMEM;
        s->flags = OTP__SIGF_TO_ALIAS;
        s->ptr = (void *)(uintptr_t)id;
        otp__inject(rt, otp__pid_shard(pid), s);
        return 0;
    }
    otp_term to = resolve(rt, dest);
    if (!to) {
        if (otp__dist_is_remote(rt, dest))
            return otp__dist_send(rt, NULL, NULL, dest, msg);
        return otp_is_atom(dest) ? -OTP_ENOPROC : (otp_is_pid(dest) ? 0 : -OTP_EBADARG);
    }
    otp__sig *s = otp__sig_new(OTP__SIG_MSG, to, OTP_NONE, msg, OTP_NONE, OTP_NONE);
    if (!s)
        return -OTP_ENOMEM;
    otp__inject(rt, otp__pid_shard(to), s);
    return 0;
}

static bool is_self_call(otp_proc *self)
{
    return self && otp__this_shard() == self->sh && self->sh->current == self;
}

int otp_link(otp_proc *self, otp_term pid)
{
    if (!is_self_call(self))
        return -OTP_ECONTEXT;
    otp__shard *sh = self->sh;
    otp_term to = otp__local_pid(sh->rt, pid);
    if (!to && otp_is_pid(pid) && otp__dist_is_remote(sh->rt, pid)) {
        /* LINK to the other node; its EXIT noproc comes back if it is dead */
        if (has_link(self, pid, NULL))
            return 0;
        add_link(self, pid);
        otp_arena *a = otp_arena_new();
        if (!a)
            return -OTP_ENOMEM;
        int rc = otp__dist_ctl(sh->rt, sh, otp__dist_node_of(pid),
                               OTP_TUPLE(a, otp_small(OTP__CTL_LINK), self->pid, pid));
        otp_arena_free(a);
        return rc < 0 ? rc : 0;
    }
    if (!to)
        return otp_is_pid(pid) ? -OTP_ENOPROC : -OTP_EBADARG;
    if (to == self->pid)
        return 0;
    if (otp__pid_shard(to) == sh->index && !has_link(self, to, NULL)) {
        /* On our shard we can tell at once whether it exists, as link/1
         * does for local pids; the link itself still travels as a signal,
         * behind whatever we sent it before. */
        otp_proc *p = otp__proc_lookup(sh, to);
        if (!p || p->state == OTP__P_EXITING) {
            if (self->trap_exit)
                enqueue_built(self, OTP_TUPLE(sh->scratch, atom_exit, to, atom_noproc));
            return -OTP_ENOPROC;
        }
    }
    add_link(self, to);
    send_sig(sh, OTP__SIG_LINK, to, self->pid, OTP_NONE, OTP_NONE, OTP_NONE, 0);
    return 0;
}

int otp_unlink(otp_proc *self, otp_term pid)
{
    if (!is_self_call(self))
        return -OTP_ECONTEXT;
    otp__shard *sh = self->sh;
    otp_term to = otp__local_pid(sh->rt, pid);
    if (!to && otp_is_pid(pid) && otp__dist_is_remote(sh->rt, pid)) {
        if (!del_link(self, pid))
            return 0;
        otp_arena *a = otp_arena_new();
        if (!a)
            return -OTP_ENOMEM;
        /* UNLINK_ID: the id only has to be unique per link; our ref ids are */
        otp__dist_ctl(sh->rt, sh, otp__dist_node_of(pid),
                      OTP_TUPLE(a, otp_small(OTP__CTL_UNLINK_ID),
                                otp_int(a, (int64_t)(otp__ref_new(sh) & INT64_MAX)), self->pid,
                                pid));
        otp_arena_free(a);
        return 0;
    }
    if (!to)
        return otp_is_pid(pid) ? 0 : -OTP_EBADARG;
    if (del_link(self, to))
        send_sig(sh, OTP__SIG_UNLINK, to, self->pid, OTP_NONE, OTP_NONE, OTP_NONE, 0);
    return 0;
}

int otp_monitor(otp_proc *self, otp_term target, otp_term *ref)
{
    if (!is_self_call(self))
        return -OTP_ECONTEXT;
    otp__shard *sh = self->sh;
    otp_runtime *rt = sh->rt;
    otp_term to, named;
    otp_arena *a = proc_arena(self);
    if (otp__dist_is_remote(rt, target)) {
        /* MONITOR_P to the other node; its MONITOR_P_EXIT becomes our DOWN */
        uint64_t id = otp__ref_new(sh);
        if (ref)
            *ref = otp__ref_term(rt, a, id);
        if (!add_mon(self, id, target, target, true))
            return -OTP_ENOMEM;
        const otp__mon *m = &self->mons[self->nmons - 1];
        otp__dist_ctl(rt, sh, otp__dist_node_of(target),
                      OTP_TUPLE(a, otp_small(OTP__CTL_MONITOR_P), self->pid, mon_target(m),
                                otp__ref_term(rt, a, id)));
        return 0;
    }
    if (otp_is_tuple(target) && otp_tuple_arity(target) == 2 &&
        otp_tuple_get(target, 1) == rt->node)
        target = otp_tuple_get(target, 0); /* {Name, OurNode} */
    if (otp_is_atom(target)) {
        to = resolve(rt, target);
        named = OTP_TUPLE(a, target, rt->node);
    } else {
        to = otp__local_pid(rt, target);
        named = to;
        if (!to)
            return -OTP_EBADARG;
    }
    uint64_t id = otp__ref_new(sh);
    if (ref)
        *ref = otp__ref_term(rt, a, id);
    if (to == self->pid)
        return 0; /* monitoring oneself makes no monitor in Erlang */
    if (!to) {
        /* No such name: the monitor fires at once. */
        enqueue_built(self, OTP_TUPLE(sh->scratch, atom_down, otp__ref_term(rt, sh->scratch, id),
                                      atom_process, named, atom_noproc));
        return 0;
    }
    if (!add_mon(self, id, to, named, true))
        return -OTP_ENOMEM;
    otp__send_mon_sig(sh, OTP__SIG_MONITOR, to, self->pid, id, named, OTP_NONE);
    return 0;
}

bool otp__match_down(otp_term msg, void *ctx)
{
    otp_term ref = *(otp_term *)ctx;
    return otp_tuple_arity(msg) == 5 && otp_tuple_get(msg, 0) == atom_down &&
           otp_exact_eq(otp_tuple_get(msg, 1), ref);
}

int otp_demonitor(otp_proc *self, otp_term ref, unsigned flags)
{
    if (!is_self_call(self))
        return -OTP_ECONTEXT;
    otp__shard *sh = self->sh;
    uint64_t id = otp__ref_id(sh->rt, ref);
    int was = 0;
    otp__mon *m = id ? find_mon(self, id, true) : NULL;
    if (m) {
        mon_cancel(sh, self, m);
        del_mon(self, m);
        was = 1;
    }
    if (flags & OTP_DEMONITOR_FLUSH)
        recv_from(self, NULL, otp__match_down, &ref, 0, NULL);
    return was; /* as demonitor(Ref, [info]): was the monitor active */
}

int otp_exit(otp_proc *self, otp_term pid, otp_term reason)
{
    if (!is_self_call(self))
        return -OTP_ECONTEXT;
    otp__shard *sh = self->sh;
    otp_term to = otp__local_pid(sh->rt, pid);
    if (!to && otp_is_pid(pid) && otp__dist_is_remote(sh->rt, pid)) {
        otp_arena *a = otp_arena_new();
        if (!a)
            return -OTP_ENOMEM;
        otp__dist_ctl(sh->rt, sh, otp__dist_node_of(pid),
                      OTP_TUPLE(a, otp_small(OTP__CTL_EXIT2), self->pid, pid, reason));
        otp_arena_free(a);
        return 0;
    }
    if (!to)
        return otp_is_pid(pid) ? 0 : -OTP_EBADARG;
    if (to == self->pid) {
        exit_signal(self, self->pid, reason, false);
        return 0;
    }
    send_sig(sh, OTP__SIG_EXIT, to, self->pid, reason, OTP_NONE, OTP_NONE, 0);
    return 0;
}

_Noreturn void otp_proc_exit(otp_proc *self, otp_term reason)
{
    if (!is_self_call(self)) {
        fprintf(stderr, "libotp: otp_proc_exit called outside its process\n");
        abort();
    }
    otp__proc_exit_self(self, reason);
}

bool otp_trap_exit(otp_proc *self, bool on)
{
    bool old = self->trap_exit;
    self->trap_exit = on;
    return old;
}

/* ---------------------------------------------------------- send_after
 *
 * A timer lives on its target's shard when the target is a pid (so that
 * it dies with the process, as Erlang's do), on the caller's shard when it
 * is a name. Its id says which: id = ref id << 8 | owner shard. */

static otp__tmsg **tbucket(otp__shard *sh, uint64_t id)
{
    return &sh->tbuckets[(id * 0x9e3779b97f4a7c15ull) >> 54 & (sh->ntbuckets - 1)];
}

static bool tmsg_unhash(otp__shard *sh, otp__tmsg *tm)
{
    for (otp__tmsg **pp = tbucket(sh, tm->id); *pp; pp = &(*pp)->hnext)
        if (*pp == tm) {
            *pp = tm->hnext;
            return true;
        }
    return false;
}

static void tmsg_unlink_proc(otp__tmsg *tm)
{
    if (tm->pprev) {
        *tm->pprev = tm->pnext;
        if (tm->pnext)
            tm->pnext->pprev = tm->pprev;
        tm->pprev = NULL;
        tm->pnext = NULL;
    }
}

static void tmsg_drop(otp__shard *sh, otp__tmsg *tm)
{
    otp__wheel_cancel(&sh->wheel, &tm->kt.t);
    tmsg_unhash(sh, tm);
    tmsg_unlink_proc(tm);
    otp__sig_free(tm->sig);
    free(tm);
}

void otp__tmsg_fire(otp__shard *sh, otp__tmsg *tm)
{
    tmsg_unhash(sh, tm);
    tmsg_unlink_proc(tm);
    otp__sig *s = tm->sig;
    free(tm);
    otp_term to = resolve(sh->rt, s->to);
    if (!to) {
        otp__sig_free(s);
        return;
    }
    s->to = to;
    otp__route(sh, s);
}

/* Arms a timer on this shard (its owner). */
static void tmsg_create(otp__shard *sh, uint64_t id, uint64_t deadline, otp__sig *sig)
{
    otp_proc *target = NULL;
    if (!otp_is_atom(sig->to)) {
        target = otp__proc_lookup(sh, sig->to);
        if (!target || target->state == OTP__P_EXITING) {
            otp__sig_free(sig); /* aimed at a dead pid: cancelled at once */
            return;
        }
    }
    if (!sh->tbuckets) {
        sh->ntbuckets = 1024;
        if (!(sh->tbuckets = calloc(sh->ntbuckets, sizeof *sh->tbuckets))) {
            otp__sig_free(sig);
            return;
        }
    }
    otp__tmsg *tm = calloc(1, sizeof *tm);
    if (!tm) {
        otp__sig_free(sig);
        return;
    }
    tm->kt.kind = OTP__TK_MSG;
    tm->id = id;
    tm->sig = sig;
    otp__tmsg **b = tbucket(sh, id);
    tm->hnext = *b;
    *b = tm;
    if (target) {
        tm->pnext = target->timers;
        if (tm->pnext)
            tm->pnext->pprev = &tm->pnext;
        target->timers = tm;
        tm->pprev = &target->timers;
    }
    otp__wheel_add(&sh->wheel, &tm->kt.t, deadline);
}

typedef struct tmsg_req {
    void (*fn)(otp__shard *, void *); /* first: a SIG_RUN function */
    uint64_t id, deadline;
    otp__sig *sig;
} tmsg_req;

static void tmsg_create_run(otp__shard *sh, void *arg)
{
    tmsg_req *rq = arg;
    tmsg_create(sh, rq->id, rq->deadline, rq->sig);
    free(rq);
}

int otp_send_after(otp_proc *self, uint64_t ms, otp_term dest, otp_term msg, otp_term *tref)
{
    if (!is_self_call(self))
        return -OTP_ECONTEXT;
    otp__shard *sh = self->sh;
    otp_term to = otp_is_atom(dest) ? dest : otp__local_pid(sh->rt, dest);
    if (!to)
        return -OTP_EBADARG;
    unsigned owner = otp_is_atom(to) ? sh->index : otp__pid_shard(to);
    uint64_t id = otp__ref_new(sh) << 8 | owner;
    otp__sig *sig = otp__sig_new(OTP__SIG_MSG, to, self->pid, msg, OTP_NONE, OTP_NONE);
    if (!sig)
        return -OTP_ENOMEM;
    uint64_t deadline = otp__now_ms() + 1; /* whole ms: round up */
    deadline = ms > UINT64_MAX - 1 - deadline ? UINT64_MAX - 1 : deadline + ms;
    if (owner == sh->index) {
        tmsg_create(sh, id, deadline, sig);
    } else {
        tmsg_req *rq = malloc(sizeof *rq);
        otp__sig *run =
            rq ? otp__sig_new(OTP__SIG_RUN, to, OTP_NONE, OTP_NONE, OTP_NONE, OTP_NONE) : NULL;
        if (!run) {
            free(rq);
            otp__sig_free(sig);
            return -OTP_ENOMEM;
        }
        *rq = (tmsg_req){tmsg_create_run, id, deadline, sig};
        run->ptr = rq;
        otp__route(sh, run);
    }
    if (tref)
        *tref = otp__ref_term(sh->rt, proc_arena(self), id);
    return 0;
}

/* Milliseconds left and the timer gone, or -OTP_ENOTFOUND. */
static int64_t cancel_here(otp__shard *sh, uint64_t id)
{
    if (!sh->tbuckets)
        return -OTP_ENOTFOUND;
    for (otp__tmsg *tm = *tbucket(sh, id); tm; tm = tm->hnext)
        if (tm->id == id) {
            uint64_t now = otp__now_ms(),
                     left = tm->kt.t.deadline > now ? tm->kt.t.deadline - now : 0;
            tmsg_drop(sh, tm);
            return (int64_t)left;
        }
    return -OTP_ENOTFOUND;
}

typedef struct cancel_req {
    otp__xcall x; /* first */
    uint64_t id;
    int64_t left;
} cancel_req;

static void cancel_work(otp__shard *sh, otp__xcall *x)
{
    cancel_req *rq = (cancel_req *)x;
    rq->left = cancel_here(sh, rq->id);
}

int64_t otp_cancel_timer(otp_proc *self, otp_term tref)
{
    if (!is_self_call(self))
        return -OTP_ECONTEXT;
    otp__shard *sh = self->sh;
    uint64_t id = otp__ref_id(sh->rt, tref);
    if (!id)
        return -OTP_ENOTFOUND;
    unsigned owner = (unsigned)(id & (OTP__MAX_SHARDS - 1));
    if (owner >= sh->rt->nshards)
        return -OTP_ENOTFOUND;
    if (owner == sh->index)
        return cancel_here(sh, id);
    cancel_req *rq = calloc(1, sizeof *rq);
    if (!rq)
        return -OTP_ENOMEM;
    rq->x.work = cancel_work;
    rq->x.target = owner;
    rq->id = id;
    int rc = otp__xcall_run(sh->rt, self, &rq->x);
    int64_t left = rc < 0 ? rc : rq->left;
    free(rq);
    return left;
}

/* Frees the shard's pending send_after timers (at the end). */
void otp__tmsg_free_all(otp__shard *sh);
void otp__tmsg_free_all(otp__shard *sh)
{
    for (size_t i = 0; sh->tbuckets && i < sh->ntbuckets; i++) {
        otp__tmsg *tm = sh->tbuckets[i];
        while (tm) {
            otp__tmsg *n = tm->hnext;
            otp__sig_free(tm->sig);
            free(tm);
            tm = n;
        }
    }
    free(sh->tbuckets);
    sh->tbuckets = NULL;
}

/* ------------------------------------------------------------ info */

static void fill_info(otp_proc *p, otp_proc_info *out, bool asking_self)
{
    out->status = asking_self                   ? OTP_PROC_RUNNING
                  : p->state == OTP__P_RUNNABLE ? OTP_PROC_RUNNABLE
                  : p->state == OTP__P_EXITING  ? OTP_PROC_EXITING
                                                : OTP_PROC_WAITING;
    out->message_queue_len = p->mq.len;
    out->links = p->nlinks;
    size_t mine = 0;
    for (uint32_t i = 0, n = mon_count(p); i < n; i++)
        mine += mon_at(p, i)->origin;
    out->monitors = mine;
    out->monitored_by = mon_count(p) - mine;
    out->registered_name = p->name;
    out->trap_exit = p->trap_exit;
    size_t mem = sizeof *p + p->caplinks * sizeof(otp_term) + p->capmons * sizeof(otp__mon);
    for (otp__sig *s = p->mq.head; s; s = s->next)
        mem += sizeof *s + s->data_size;
    if (p->arena)
        mem += otp_arena_bytes(p->arena);
    if (p->mon_arena)
        mem += otp_arena_bytes(p->mon_arena);
    if (p->task)
        mem += p->task->stack->size;
    out->memory = mem;
}

typedef struct info_req {
    otp__xcall x; /* first */
    otp_term pid;
    otp_proc_info info;
} info_req;

static void info_work(otp__shard *sh, otp__xcall *x)
{
    info_req *rq = (info_req *)x;
    otp_proc *p = otp__proc_lookup(sh, rq->pid);
    if (p && p->state != OTP__P_EXITING) {
        fill_info(p, &rq->info, false);
        x->rc = 0;
    } else {
        x->rc = -OTP_ENOPROC;
    }
}

int otp_process_info(otp_runtime *rt, otp_proc *self, otp_term pid, otp_proc_info *out)
{
    otp_term to = otp__local_pid(rt, pid);
    if (!to || !out)
        return otp_is_pid(pid) && out ? -OTP_ENOPROC : -OTP_EBADARG;
    otp__shard *here = otp__this_shard();
    if (here && here->rt != rt)
        here = NULL;
    if (here && otp__pid_shard(to) == here->index) {
        /* What this shard sent before the question is delivered first, as
         * Erlang orders process_info after the asker's earlier signals. */
        otp__drain_local(here);
        otp_proc *p = otp__proc_lookup(here, to);
        if (!p || p->state == OTP__P_EXITING)
            return -OTP_ENOPROC;
        fill_info(p, out, p == here->current);
        return 0;
    }
    if (here && !(self && is_self_call(self)))
        return -OTP_ECONTEXT; /* a shard's loop cannot block */
    info_req *rq = calloc(1, sizeof *rq);
    if (!rq)
        return -OTP_ENOMEM;
    rq->x.work = info_work;
    rq->x.target = otp__pid_shard(to);
    rq->pid = to;
    int rc = otp__xcall_run(rt, here ? self : NULL, &rq->x);
    if (rc == 0 && (rc = rq->x.rc) == 0)
        *out = rq->info;
    free(rq);
    return rc;
}

/* ----------------------------------------------------- calls (behaviours) */

void otp__add_link_pub(otp_proc *p, otp_term pid)
{
    add_link(p, pid);
}

int otp__add_mon_pub(otp_proc *p, uint64_t ref, otp_term other)
{
    return add_mon(p, ref, other, other, true) ? 0 : -OTP_ENOMEM;
}

bool otp__drop_call_monitor(otp_proc *self, uint64_t ref, otp_term caller)
{
    otp__mon *m = find_mon(self, ref, false);
    if (!m || m->other != caller)
        return false;
    del_mon(self, m);
    return true;
}

typedef struct call_msg {
    otp_runtime *rt;
    otp_term tag, self, req;
    uint64_t id;
} call_msg;

/* [alias | Ref] for ref id `id`, written in place: what otp__ref_term and
 * otp_cons would make, without their calls. */
typedef struct alias_tag {
    otp__ref ref;
    otp__cons cons;
} alias_tag;

static otp_term alias_tag_write(alias_tag *t, otp_runtime *rt, uint64_t id)
{
    t->ref.hdr = otp__mkhdr(OTP__H_REF, 3);
    t->ref.node = rt->node;
    t->ref.creation = rt->creation;
    t->ref.words[0] = (uint32_t)(id & 0x3ffff);
    t->ref.words[1] = (uint32_t)(id >> 18);
    t->ref.words[2] = (uint32_t)(id >> 50) | (0x6c6fu << 16);
    t->ref.words[3] = t->ref.words[4] = 0;
    t->cons.head = atom_alias;
    t->cons.tail = otp__boxed(&t->ref);
    return otp__mkcons(&t->cons);
}

/* The objects of {Tag, {Self, [alias | Ref]}, Request} but the request,
 * in one allocation written in place: this runs on every call. */
typedef struct call_envelope {
    alias_tag tag;
    uint64_t from[3];
    uint64_t msg[4];
} call_envelope;

static otp_term envelope_write(call_envelope *e, otp_runtime *rt, otp_term tag, otp_term self,
                               otp_term req, uint64_t id)
{
    otp_term alias = alias_tag_write(&e->tag, rt, id);
    e->from[0] = otp__mkhdr(OTP__H_TUPLE, 2);
    e->from[1] = self;
    e->from[2] = alias;
    e->msg[0] = otp__mkhdr(OTP__H_TUPLE, 3);
    e->msg[1] = tag;
    e->msg[2] = otp__boxed(e->from);
    e->msg[3] = req;
    return otp__boxed(e->msg);
}

static size_t call_size(void *ctx)
{
    call_msg *c = ctx;
    return sizeof(call_envelope) +
           (otp_is_boxed(c->req) || otp_is_cons(c->req) ? otp_copy_size(c->req) : 0);
}

/* {Tag, {Self, Ref}, Request}, built inside the signal. */
static otp_term build_call(otp_arena *a, void *ctx)
{
    call_msg *c = ctx;
    /* [alias | Ref], as OTP 24+'s gen:call: the reply goes to an alias
     * that dies with the call, so a late one is dropped on arrival. */
    otp_term req = otp_is_boxed(c->req) || otp_is_cons(c->req) ? otp_copy(a, c->req) : c->req;
    if (req == OTP_NONE)
        return OTP_NONE;
    call_envelope *e = otp__alloc(a, sizeof *e);
    if (!e)
        return OTP_NONE;
    return envelope_write(e, c->rt, c->tag, c->self, req, c->id);
}

int otp__call(otp_proc *self, otp_term to, otp_term named, otp_term tag, otp_term req, uint64_t id,
              uint64_t timeout_ms, otp_term *reply)
{
    otp__shard *sh = self->sh;
    if (!(otp_is_boxed(to) ? add_mon : add_call_mon)(self, id, to, named, true))
        return -OTP_ENOMEM;
    /* Only what arrives after the request can be its answer. */
    otp__sig **pp = self->mq.tail;
    if (otp_is_boxed(to)) {
        /* On another node: MONITOR_P there, then the request with a plain
         * ref tag; the reply comes back as {Ref, Reply}, which the
         * distribution layer turns into a REPLY for this call. The terms
         * are encoded at once, so a stack window holds them. */
        uint64_t buf[32];
        otp_arena win = otp__arena_window(buf, sizeof buf), *a = &win;
        otp_term ref = otp__ref_term(sh->rt, a, id);
        otp_term node = otp__dist_node_of(to);
        otp__dist_ctl(sh->rt, sh, node,
                      OTP_TUPLE(a, otp_small(OTP__CTL_MONITOR_P), self->pid,
                                mon_target(&self->mons[self->nmons - 1]), ref));
        int rc = otp__dist_send(sh->rt, sh, self, to,
                                OTP_TUPLE(a, tag, OTP_TUPLE(a, self->pid, ref), req));
        if (rc < 0) {
            otp__mon *m = find_mon(self, id, true);
            mon_cancel(sh, self, m);
            del_mon(self, m);
            return rc;
        }
    } else {
        otp__sig *s;
        size_t words = otp__flat_words(req);
        if (words <= 5) {
            /* A flat request: the envelope and its copy written straight
             * into a small signal. */
            _Static_assert(sizeof(call_envelope) + 5 * 8 <= OTP__SIG_ROOM, "room for a call");
            s = otp__sig_small(OTP__SIG_MSG, to, self->pid);
            if (s) {
                call_envelope *e = (call_envelope *)(void *)s->data;
                s->a = envelope_write(e, sh->rt, tag, self->pid,
                                      otp__flat_copy((uint64_t *)(e + 1), req, words), id);
                s->data_size = (uint32_t)(sizeof *e + words * 8);
            }
        } else {
            call_msg cm = {sh->rt, tag, self->pid, req, id};
            s = otp__sig_build_small(OTP__SIG_MSG, to, self->pid, call_size, build_call, &cm);
        }
        if (!s) {
            del_mon(self, find_mon(self, id, true));
            return -OTP_ENOMEM;
        }
        s->flags = OTP__SIGF_MONITOR;
        s->ptr = (void *)(uintptr_t)id;
        self->alias = id;
        otp__route(sh, s);
        if (otp__pid_shard(to) != sh->index)
            otp__send_backpressure(sh, self, otp__pid_shard(to));
    }
    bool armed = false;
    self->timed_out = false;
    for (;;) {
        for (; *pp; pp = &(*pp)->next) {
            otp__sig *r = *pp;
            bool is_reply = r->kind == OTP__SIG_REPLY && (uint64_t)(uintptr_t)r->ptr == id;
            bool is_down = (r->flags & OTP__SIGF_DOWN) && (uint64_t)(uintptr_t)r->ptr == id;
            if (!is_reply && !is_down)
                continue;
            otp__sigq_unlink(&self->mq, pp);
            if (armed)
                timeout_stop(sh, self);
            self->timed_out = false;
            self->alias = 0;
            otp_term m = r->a;
            if (is_reply) {
                otp__mon *mon = find_mon(self, id, true);
                if (mon) {
                    if (!(r->flags & OTP__SIGF_DEMON))
                        mon_cancel(sh, self, mon);
                    del_mon(self, mon);
                }
            }
            otp__sig_adopt(r, proc_arena(self));
            if (is_reply) {
                *reply = otp__tuple_el(m, 1); /* {Tag, Reply}, as otp__reply built it */
                return 0;
            }
            otp_term reason = otp_tuple_get(m, 4);
            *reply = reason;
            return reason == atom_noproc ? -OTP_ENOPROC : -OTP_EEXIT;
        }
        if (self->timed_out || timeout_ms == 0) {
            self->timed_out = false;
            self->alias = 0; /* a reply that still comes is dropped on arrival */
            otp__mon *mon = find_mon(self, id, true);
            if (mon) {
                mon_cancel(sh, self, mon);
                del_mon(self, mon);
            }
            return -OTP_ETIMEDOUT;
        }
        if (!armed && timeout_ms != OTP_INFINITY) {
            /* The turn's clock, one ms late so the timeout is never short:
             * a call must not pay for reading the clock. */
            uint64_t at = sh->now_ms + 1;
            at = timeout_ms > UINT64_MAX - at ? UINT64_MAX - 1 : at + timeout_ms;
            timeout_start(sh, self, at);
            armed = true;
        }
        otp__suspend(self, OTP__P_WAITING);
    }
}

void otp__proc_node_down(otp__shard *sh, otp_term node)
{
    otp_term noconn = otp_atom("noconnection");
    for (uint32_t slot = 0; slot < sh->nslots; slot++) {
        otp_proc *p = sh->procs[slot];
        if (!p || p->state == OTP__P_EXITING)
            continue;
        /* Monitors first: a process the broken links kill has nothing to
         * be told. Of them, ours fire (noconnection), theirs go. */
        for (uint32_t i = 0; i < p->nmons;) {
            otp__mon *m = &p->mons[i];
            if (!otp_is_boxed(m->other) || otp__dist_node_of(m->other) != node) {
                i++;
                continue;
            }
            if (m->origin) {
                otp_arena *a = sh->scratch;
                otp_term ref = otp__ref_term(sh->rt, a, m->ref);
                otp__sig *d =
                    otp__sig_new(OTP__SIG_MSG, p->pid, OTP_NONE,
                                 OTP_TUPLE(a, atom_down, ref, atom_process, m->named, noconn),
                                 OTP_NONE, OTP_NONE);
                otp_arena_reset(a);
                if (d) {
                    d->flags = OTP__SIGF_DOWN;
                    d->ptr = (void *)(uintptr_t)m->ref;
                    enqueue_msg(p, d);
                }
            }
            del_mon(p, m);
        }
        /* Links: each breaks with noconnection; exit_signal may end p. */
        for (uint32_t i = 0; sh->procs[slot] == p && i < p->nlinks;) {
            otp_term l = p->links[i];
            if (!otp_is_boxed(l) || otp__dist_node_of(l) != node) {
                i++;
                continue;
            }
            if (p->state == OTP__P_EXITING)
                break;
            exit_signal(p, l, noconn, true); /* removes the link */
        }
    }
}

typedef struct reply_msg {
    otp_runtime *rt;
    otp_term tag, reply;
    uint64_t alias; /* the tag is [alias | Ref] of our ref with this id; else 0 */
} reply_msg;

static otp_term copy_in(otp_arena *a, otp_term t)
{
    return otp_is_boxed(t) || otp_is_cons(t) ? otp_copy(a, t) : t;
}

static size_t copy_bytes(otp_term t)
{
    return otp_is_boxed(t) || otp_is_cons(t) ? otp_copy_size(t) : 0;
}

static size_t reply_size(void *ctx)
{
    reply_msg *r = ctx;
    return 3 * 8 + (r->alias ? sizeof(alias_tag) : copy_bytes(r->tag)) + copy_bytes(r->reply);
}

/* {Tag, Reply}, built inside the signal. */
static otp_term build_reply(otp_arena *a, void *ctx)
{
    reply_msg *r = ctx;
    otp_term reply = copy_in(a, r->reply), tag;
    if (r->alias) {
        alias_tag *t = otp__alloc(a, sizeof *t);
        tag = t ? alias_tag_write(t, r->rt, r->alias) : OTP_NONE;
    } else {
        tag = copy_in(a, r->tag);
    }
    otp_term *msg = otp__alloc_words(a, 3);
    if (!msg || tag == OTP_NONE || reply == OTP_NONE)
        return OTP_NONE;
    msg[0] = otp__mkhdr(OTP__H_TUPLE, 2);
    msg[1] = tag;
    msg[2] = reply;
    return otp__boxed(msg);
}

/* Sends the reply signal s (NULL: out of memory) for the call with ref id
 * `id` (0: not one of ours); alias: its tag is [alias | Ref]. */
static int reply_send(otp_proc *self, otp__sig *s, otp_term to, uint64_t id, bool alias)
{
    if (!s)
        return -OTP_ENOMEM;
    s->ptr = (void *)(uintptr_t)id;
    if (alias)
        s->flags |= OTP__SIGF_ALIAS;
    if (id && otp__drop_call_monitor(self, id, to))
        s->flags |= OTP__SIGF_DEMON;
    otp__route(self->sh, s);
    return 0;
}

/* The reply built by build_reply, rm saying how to write the tag. */
static int reply_route(otp_proc *self, otp_term to, uint64_t id, bool alias, reply_msg *rm)
{
    return reply_send(
        self, otp__sig_build_small(OTP__SIG_REPLY, to, self->pid, reply_size, build_reply, rm), to,
        id, alias);
}

int otp__reply(otp_proc *self, otp_term to, otp_term tag, otp_term ref, otp_term reply)
{
    otp__shard *sh = self->sh;
    /* The alias this reply is for, as an id: the receiver and the waiting
     * call compare it without looking inside the ref. */
    uint64_t id = otp__ref_id(sh->rt, ref);
    const otp__cons *tc = otp_is_cons(tag) ? otp__ptr(tag) : NULL;
    bool alias = tc && tc->head == atom_alias;
    reply_msg rm = {sh->rt, tag, reply, 0};
    /* A tag our own calls made is written anew rather than copied. */
    if (alias && id && tc->tail == ref &&
        ((const otp__ref *)otp__ptr(ref))->words[2] == ((uint32_t)(id >> 50) | (0x6c6fu << 16)))
        rm.alias = id;
    return reply_route(self, to, id, alias, &rm);
}

int otp__reply_local(otp_proc *self, otp_term to, uint64_t id, otp_term reply)
{
    size_t words = otp__flat_words(reply);
    if (words > 5) {
        reply_msg rm = {self->sh->rt, OTP_NONE, reply, id};
        return reply_route(self, to, id, true, &rm);
    }
    /* A flat reply: {[alias | Ref], Reply} written straight into a small
     * signal. */
    struct flat_reply {
        alias_tag tag;
        uint64_t msg[3];
        uint64_t reply[5];
    };
    _Static_assert(sizeof(struct flat_reply) <= OTP__SIG_ROOM, "room for a reply");
    otp__sig *s = otp__sig_small(OTP__SIG_REPLY, to, self->pid);
    if (s) {
        struct flat_reply *r = (struct flat_reply *)(void *)s->data;
        r->msg[0] = otp__mkhdr(OTP__H_TUPLE, 2);
        r->msg[1] = alias_tag_write(&r->tag, self->sh->rt, id);
        r->msg[2] = otp__flat_copy(r->reply, reply, words);
        s->a = otp__boxed(r->msg);
        s->data_size = (uint32_t)(offsetof(struct flat_reply, reply) + words * 8);
    }
    return reply_send(self, s, to, id, true);
}
