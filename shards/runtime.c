/* runtime.c — the runtime object: creating and starting its shards, the
 * node-wide name registry, spawning, stopping, and the embedding entry
 * points for hosts that run a shard themselves.
 *
 * The registry is an array indexed by atom index (the atom table's size is
 * bounded), each entry a pid or 0, changed only by compare-and-swap: lookups
 * are one atomic load, and two shards racing for a name settle it in one
 * CAS. It is mapped with MAP_NORESERVE, so only the pages of names in use
 * cost memory.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

int otp__shard_loop(otp__shard *sh, bool embedded_once, uint64_t *next_ms);
void otp__tmsg_free_all(otp__shard *sh);

/* ---------------------------------------------------------------- waiters */

void otp__waiter_init(otp__waiter *w)
{
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->done = false;
}
void otp__waiter_destroy(otp__waiter *w)
{
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
}
void otp__waiter_wait(otp__waiter *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}
void otp__waiter_signal(otp__waiter *w)
{
    pthread_mutex_lock(&w->lock);
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* ------------------------------------------------------ cross-shard calls */

static void xcall_back(otp__shard *sh, otp__xcall *x)
{
    otp_proc *p = otp__proc_lookup(sh, x->asker);
    if (p && p->state != OTP__P_EXITING && p->pending == x) {
        if (x->back)
            x->back(sh, x, p);
        /* relaxed: the asker runs on this thread */
        atomic_store_explicit(&x->done, 1, memory_order_relaxed);
        if (p->state == OTP__P_WAITING)
            otp__make_runnable(p);
        return;
    }
    if (x->back)
        x->back(sh, x, NULL);
    free(x);
}

void otp__xcall_answer(otp__shard *sh, otp__xcall *x)
{
    if (x->thread) {
        otp__waiter *w = x->thread;
        /* release: the thread reads the answer after it sees done */
        atomic_store_explicit(&x->done, 1, memory_order_release);
        otp__waiter_signal(w);
        return;
    }
    if (otp__pid_shard(x->asker) == sh->index) {
        xcall_back(sh, x);
        return;
    }
    x->returning = true;
    otp__sig *s = otp__sig_new(OTP__SIG_RUN, x->asker, OTP_NONE, OTP_NONE, OTP_NONE, OTP_NONE);
    if (!s)
        return; /* out of memory: the asker waits in vain (and x leaks) */
    s->ptr = x;
    otp__route(sh, s);
}

static void xcall_entry(otp__shard *sh, void *arg)
{
    otp__xcall *x = arg;
    if (x->returning) {
        xcall_back(sh, x);
        return;
    }
    x->work(sh, x);
    if (!x->deferred)
        otp__xcall_answer(sh, x);
}

int otp__xcall_run(otp_runtime *rt, otp_proc *self, otp__xcall *x)
{
    x->entry = xcall_entry;
    otp__shard *here = otp__this_shard();
    if (here && here->rt != rt)
        here = NULL;
    if (here && (!self || here->current != self))
        return -OTP_ECONTEXT; /* the shard loop itself cannot wait */
    if (here) {
        x->asker = self->pid;
        self->pending = x;
        if (x->target == here->index) {
            x->work(here, x);
            if (!x->deferred) {
                self->pending = NULL;
                if (x->back)
                    x->back(here, x, self);
                return 0;
            }
        } else {
            otp__sig *s = otp__sig_new(OTP__SIG_RUN, otp__mk_lpid(rt->node_slot, x->target, 0),
                                       OTP_NONE, OTP_NONE, OTP_NONE, OTP_NONE);
            if (!s) {
                self->pending = NULL;
                return -OTP_ENOMEM;
            }
            s->ptr = x;
            otp__route(here, s);
        }
        /* acquire: pairs with the release of a thread answer (unused here,
         * but harmless); a shard answer is set on this very thread */
        while (!atomic_load_explicit(&x->done, memory_order_acquire))
            otp__suspend(self, OTP__P_WAITING);
        self->pending = NULL;
        return 0;
    }
    otp__sig *s = otp__sig_new(OTP__SIG_RUN, otp__mk_lpid(rt->node_slot, x->target, 0), OTP_NONE,
                               OTP_NONE, OTP_NONE, OTP_NONE);
    if (!s)
        return -OTP_ENOMEM;
    s->ptr = x;
    otp__waiter w;
    otp__waiter_init(&w);
    x->thread = &w;
    otp__inject(rt, x->target, s);
    otp__waiter_wait(&w);
    otp__waiter_destroy(&w);
    x->thread = NULL;
    return 0;
}

/* --------------------------------------------------------------- registry */

int otp__name_claim(otp_runtime *rt, otp_term name, otp_term pid)
{
    otp_term expect = 0;
    /* acq_rel: a winner's later unregister and a reader's whereis see a
     * consistent entry; failure needs nothing */
    return atomic_compare_exchange_strong_explicit(&rt->names[otp__atom_index(name)], &expect, pid,
                                                   memory_order_acq_rel, memory_order_relaxed)
               ? 0
               : -OTP_EEXIST;
}

void otp__name_release(otp_runtime *rt, otp_term name, otp_term pid)
{
    otp_term expect = pid;
    atomic_compare_exchange_strong_explicit(&rt->names[otp__atom_index(name)], &expect, 0,
                                            memory_order_acq_rel, memory_order_relaxed);
}

otp_term otp_whereis(otp_runtime *rt, otp_term name)
{
    if (!rt || !otp_is_atom(name))
        return OTP_NONE;
    /* acquire: pairs with the claim's release */
    otp_term pid = atomic_load_explicit(&rt->names[otp__atom_index(name)], memory_order_acquire);
    return pid ? pid : OTP_NONE;
}

size_t otp_registered(otp_runtime *rt, otp_term *names, size_t max)
{
    size_t k = 0, n = otp_atom_count();
    for (size_t i = 0; rt && i < n; i++)
        /* acquire: pairs with the claim's release */
        if (atomic_load_explicit(&rt->names[i], memory_order_acquire)) {
            if (k < max)
                names[k] = OTP__ATOM(i);
            k++;
        }
    return k;
}

/* A register that must happen on the pid's shard, where its `name` field
 * and its liveness are known. */
typedef struct reg_req {
    otp__xcall x; /* first */
    otp_term name, pid;
} reg_req;

static int register_here(otp__shard *sh, otp_term name, otp_term pid)
{
    otp_proc *p = otp__proc_lookup(sh, pid);
    if (!p || p->state == OTP__P_EXITING)
        return -OTP_ENOPROC;
    if (p->name != OTP_NONE)
        return -OTP_EEXIST;
    int rc = otp__name_claim(sh->rt, name, pid);
    if (rc == 0)
        p->name = name;
    return rc;
}

static void reg_work(otp__shard *sh, otp__xcall *x)
{
    reg_req *rq = (reg_req *)x;
    x->rc = register_here(sh, rq->name, rq->pid);
}

int otp_register(otp_runtime *rt, otp_term name, otp_term pid)
{
    if (!rt || !otp_is_atom(name) || name == otp_atom("undefined"))
        return -OTP_EBADARG;
    otp_term to = otp__local_pid(rt, pid);
    if (!to)
        return otp_is_pid(pid) ? -OTP_ENOPROC : -OTP_EBADARG;
    otp__shard *here = otp__this_shard();
    if (here && here->rt == rt && otp__pid_shard(to) == here->index) {
        otp__drain_local(here); /* signals sent before come first */
        return register_here(here, name, to);
    }
    reg_req *rq = calloc(1, sizeof *rq);
    if (!rq)
        return -OTP_ENOMEM;
    rq->x.work = reg_work;
    rq->x.target = otp__pid_shard(to);
    rq->name = name;
    rq->pid = to;
    int rc = otp__xcall_run(rt, here && here->rt == rt ? here->current : NULL, &rq->x);
    if (rc == 0)
        rc = rq->x.rc;
    free(rq);
    return rc;
}

typedef struct unreg_req {
    void (*fn)(otp__shard *, void *);
    otp_term name, pid;
} unreg_req;

static void unreg_run(otp__shard *sh, void *arg)
{
    unreg_req *rq = arg;
    otp_proc *p = otp__proc_lookup(sh, rq->pid);
    if (p && p->name == rq->name)
        p->name = OTP_NONE;
    free(rq);
}

int otp_unregister(otp_runtime *rt, otp_term name)
{
    if (!rt || !otp_is_atom(name))
        return -OTP_EBADARG;
    _Atomic otp_term *e = &rt->names[otp__atom_index(name)];
    /* acquire: we then tell the owner shard about this pid */
    otp_term pid = atomic_exchange_explicit(e, 0, memory_order_acq_rel);
    if (!pid)
        return -OTP_ENOTFOUND;
    /* The process's own record of its name is its shard's to clear. */
    otp__shard *here = otp__this_shard();
    if (here && here->rt == rt && otp__pid_shard(pid) == here->index) {
        otp_proc *p = otp__proc_lookup(here, pid);
        if (p && p->name == name)
            p->name = OTP_NONE;
        return 0;
    }
    unreg_req *rq = malloc(sizeof *rq);
    otp__sig *s =
        rq ? otp__sig_new(OTP__SIG_RUN, pid, OTP_NONE, OTP_NONE, OTP_NONE, OTP_NONE) : NULL;
    if (!s) {
        free(rq);
        return 0; /* the name is gone; the stale field only costs a no-op release later */
    }
    *rq = (unreg_req){unreg_run, name, pid};
    s->ptr = rq;
    if (here && here->rt == rt)
        otp__route(here, s);
    else
        otp__inject(rt, otp__pid_shard(pid), s);
    return 0;
}

/* ------------------------------------------------------------------ spawn */

int otp__spawn_here(otp__shard *sh, otp__spawn_req *rq)
{
    otp_runtime *rt = sh->rt;
    if (sh->stopping || atomic_load_explicit(&rt->state, memory_order_acquire) >= OTP__RT_STOPPING)
        return -OTP_ESTOPPED;
    otp_proc *p = otp__proc_new(sh);
    if (!p)
        return -OTP_ENOMEM;
    p->fn = rq->fn;
    p->arg = rq->arg;
    p->beh = rq->beh;
    p->beh_data = rq->beh_data;
    p->on_exit = rq->on_exit;
    p->on_exit_arg = rq->on_exit_arg;
    p->trap_exit = rq->opts.trap_exit;
    otp_term name = rq->opts.name;
    if (name && name != OTP_NONE) {
        if (otp__name_claim(rt, name, p->pid) < 0) {
            p->beh = NULL; /* the caller still owns beh_data */
            otp__proc_terminate(p, OTP_ATOM_NORMAL);
            return -OTP_EEXIST;
        }
        p->name = name;
    }
    if (rq->parent) {
        if (rq->opts.link) {
            otp__sig *s =
                otp__sig_new(OTP__SIG_LINK, p->pid, rq->parent, OTP_NONE, OTP_NONE, OTP_NONE);
            if (s)
                otp__deliver(sh, s);
        }
        if (rq->opts.monitor) {
            otp__sig *s =
                otp__sig_new(OTP__SIG_MONITOR, p->pid, rq->parent, OTP_NONE, OTP_NONE, OTP_NONE);
            if (s) {
                s->a = (otp_term)rq->mref;
                otp__deliver(sh, s);
            }
        }
    }
    rq->pid = p->pid;
    if (p->beh) {
        p->state = OTP__P_IDLE;
        otp__make_runnable(p); /* its init runs as the first callback */
    } else {
        otp__make_runnable(p);
    }
    return 0;
}

static void spawn_work(otp__shard *sh, otp__xcall *x)
{
    x->rc = otp__spawn_here(sh, (otp__spawn_req *)x);
}

/* On the parent's shard, before anything the child sends can arrive (it
 * travels the same way, later): the parent's half of link and monitor. */
void otp__spawn_back(otp__shard *sh, otp__xcall *x, otp_proc *parent)
{
    otp__spawn_req *rq = (otp__spawn_req *)x;
    if (x->rc != 0 || !rq->parent)
        return;
    if (parent) {
        if (rq->opts.link)
            otp__add_link_pub(parent, rq->pid);
        if (rq->opts.monitor)
            otp__add_mon_pub(parent, rq->mref, rq->pid);
        return;
    }
    /* The parent died before it learnt its child's pid: the child's half
     * of the link points at a dead process, which Erlang would have
     * signalled. */
    if (rq->opts.link) {
        otp__sig *s = otp__sig_new(OTP__SIG_EXIT, rq->pid, rq->parent, otp_atom("noproc"), OTP_NONE,
                                   OTP_NONE);
        if (s) {
            s->flags = OTP__SIGF_LINK;
            otp__route(sh, s);
        }
    }
    if (rq->opts.monitor)
        otp__send_mon_sig(sh, OTP__SIG_DEMONITOR, rq->pid, rq->parent, rq->mref, OTP_NONE,
                          OTP_NONE);
}

static unsigned pick_shard(otp_runtime *rt, otp__shard *here, int want)
{
    if (want >= 0)
        return (unsigned)want % rt->nshards;
    if (want == OTP_SHARD_ANY && here && here->rt == rt)
        return here->index;
    /* relaxed: only spreading, no ordering */
    return atomic_fetch_add_explicit(&rt->rr, 1, memory_order_relaxed) % rt->nshards;
}

int otp__spawn(otp_runtime *rt, otp_proc *parent, otp__spawn_req *rq, otp_term *pid, otp_term *mref)
{
    otp__shard *here = otp__this_shard();
    if (here && here->rt != rt)
        here = NULL;
    int rc = 0;
    if (parent && (!here || here->current != parent))
        rc = -OTP_ECONTEXT;
    else if (!parent && (rq->opts.link || rq->opts.monitor))
        rc = -OTP_EBADARG;
    else if (atomic_load_explicit(&rt->state, memory_order_acquire) >= OTP__RT_STOPPING)
        rc = -OTP_ESTOPPED;
    if (rc < 0) {
        free(rq);
        return rc;
    }
    rq->x.target = pick_shard(rt, here, rq->opts.shard);
    if (!rq->x.work)
        rq->x.work = spawn_work;
    if (!rq->x.back)
        rq->x.back = otp__spawn_back;
    rq->parent = parent ? parent->pid : 0;
    if (parent && rq->opts.monitor)
        rq->mref = otp__ref_new(here);
    rc = otp__xcall_run(rt, parent ? parent : (here ? here->current : NULL), &rq->x);
    if (rc == 0)
        rc = rq->x.rc;
    if (rc >= 0) {
        if (parent && rq->opts.monitor && mref)
            *mref = otp__ref_term(rt, otp_proc_arena(parent), rq->mref);
        if (pid)
            *pid = rq->pid;
    }
    free(rq);
    return rc;
}

int otp_spawn(otp_runtime *rt, otp_proc *parent, otp_proc_fn fn, void *arg,
              const otp_spawn_opts *opts, otp_term *pid, otp_term *mref)
{
    if (!rt || !fn)
        return -OTP_EBADARG;
    otp__spawn_req *rq = calloc(1, sizeof *rq);
    if (!rq)
        return -OTP_ENOMEM;
    rq->fn = fn;
    rq->arg = arg;
    if (opts)
        rq->opts = *opts;
    else
        rq->opts.shard = OTP_SHARD_ANY;
    return otp__spawn(rt, parent, rq, pid, mref);
}

/* ---------------------------------------------------------------- shards */

static int shard_init(otp_runtime *rt, unsigned i, otp__io_backend backend)
{
    otp__shard *sh = aligned_alloc(64, (sizeof *sh + 63) & ~(size_t)63);
    if (!sh)
        return -OTP_ENOMEM;
    memset(sh, 0, sizeof *sh);
    rt->shards[i] = sh;
    sh->rt = rt;
    sh->index = i;
    otp__waker_init(&sh->waker);
    otp__sigq_init(&sh->local);
    otp__sigq_init(&sh->ext_q);
    pthread_mutex_init(&sh->ext_lock, NULL);
    sh->out = calloc(rt->nshards, sizeof *sh->out);
    sh->spare_arenas = calloc(64, sizeof *sh->spare_arenas);
    sh->scratch = otp_arena_new();
    if (!sh->out || !sh->spare_arenas || !sh->scratch)
        return -OTP_ENOMEM;
    for (unsigned j = 0; j < rt->nshards; j++)
        otp__sigq_init(&sh->out[j]);
    if (otp__stack_pool_init(&sh->stacks, rt->cfg.stack_size, 256) < 0)
        return -OTP_EBADARG;
    otp__wheel_init(&sh->wheel, otp__now_ms());
    sh->lazy_timers.next = sh->lazy_timers.prev = &sh->lazy_timers;
    /* A host's event loop polls an embedded shard's fd: epoll's is always
     * pollable, io_uring's (with deferred task work) only once the owner
     * enters the kernel. */
    bool embedded = i < 64 && (rt->cfg.embedded >> i & 1);
    otp__io_config ic = {.backend = embedded ? OTP__IO_EPOLL : backend,
                         .wake =
                             rt->cfg.wake_msg_ring ? OTP__IO_WAKE_MSG_RING : OTP__IO_WAKE_EVENTFD};
    int rc = otp__io_create(&sh->io, &ic);
    if (rc < 0)
        return -OTP_EIO;
    return 0;
}

static void free_sig_queue(otp__sigq *q)
{
    otp__sig *s;
    while ((s = otp__sigq_pop(q)))
        otp__sig_free(s);
}

static void shard_free(otp_runtime *rt, otp__shard *sh)
{
    if (!sh)
        return;
    /* Processes left (a runtime freed without stop, or never started). */
    for (uint32_t i = 0; i < sh->nslots; i++)
        if (sh->procs && sh->procs[i]) {
            otp__shard *saved = NULL;
            (void)saved;
            otp__proc_terminate(sh->procs[i], OTP_ATOM_NORMAL);
        }
    free_sig_queue(&sh->local);
    free_sig_queue(&sh->ext_q);
    for (unsigned j = 0; sh->out && j < rt->nshards; j++)
        free_sig_queue(&sh->out[j]);
    otp__tmsg_free_all(sh);
    while (sh->idle_tasks) {
        otp__task *t = sh->idle_tasks;
        sh->idle_tasks = t->next;
        otp__stack_put(&sh->stacks, t->stack);
        free(t);
    }
    for (size_t i = 0; i < sh->nspare; i++)
        otp_arena_free(sh->spare_arenas[i]);
    free(sh->spare_arenas);
    otp_arena_free(sh->scratch);
    otp__stack_pool_destroy(&sh->stacks);
    if (sh->io)
        otp__io_destroy(sh->io);
    pthread_mutex_destroy(&sh->ext_lock);
    free(sh->out);
    free(sh->procs);
    free(sh->serials);
    free(sh->free_slots);
    free(sh);
}

static void shard_enter(otp__shard *sh)
{
    otp__fiber_thread_init();
    otp__fiber_init_main(&sh->main);
}

static void *shard_thread(void *arg)
{
    otp__shard *sh = arg;
    otp_runtime *rt = sh->rt;
    if (!rt->cfg.no_pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        CPU_SET(sh->index % (unsigned)(ncpu > 0 ? ncpu : 1), &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    shard_enter(sh);
    otp__shard_loop(sh, false, NULL);
    otp__fiber_thread_exit();
    otp__sig_cache_drain();
    return NULL;
}

int otp_runtime_new(otp_runtime **out, const otp_runtime_config *cfg)
{
    if (!out)
        return -OTP_EBADARG;
    *out = NULL;
    otp__proc_atoms_init();
    otp_runtime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return -OTP_ENOMEM;
    if (cfg)
        rt->cfg = *cfg;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    rt->nshards = rt->cfg.shards ? rt->cfg.shards : (unsigned)(ncpu > 0 ? ncpu : 1);
    if (rt->nshards > OTP__MAX_SHARDS ||
        (rt->cfg.ring_capacity && (rt->cfg.ring_capacity & (rt->cfg.ring_capacity - 1)))) {
        free(rt);
        return -OTP_EBADARG;
    }
    if (!rt->cfg.ring_capacity)
        rt->cfg.ring_capacity = 1024;
    rt->cfg.spin_us = rt->cfg.spin_us == OTP_NO_SPIN ? 0 : rt->cfg.spin_us ? rt->cfg.spin_us : 50;
    rt->node = otp_atom(rt->cfg.node_name ? rt->cfg.node_name : "nonode@nohost");
    rt->cfg.node_name = NULL; /* not kept: the atom is */
    if (rt->node == OTP_NONE) {
        free(rt);
        return -OTP_EBADARG;
    }
    rt->creation = rt->cfg.creation;
    if (!rt->creation) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        rt->creation = (uint32_t)ts.tv_sec ? (uint32_t)ts.tv_sec : 1;
    }
    int slot = otp__node_slot_claim(rt->node, rt->creation);
    if (slot < 0) {
        free(rt);
        return -OTP_ELIMIT;
    }
    rt->node_slot = (unsigned)slot;
    atomic_init(&rt->state, OTP__RT_NEW);
    pthread_mutex_init(&rt->stop_lock, NULL);
    pthread_cond_init(&rt->stop_cond, NULL);
    rt->names_bytes = (size_t)OTP_ATOM_MAX * sizeof(otp_term);
    void *names = mmap(NULL, rt->names_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    rt->shards = calloc(rt->nshards, sizeof *rt->shards);
    rt->room_wait = calloc((size_t)rt->nshards * rt->nshards, sizeof *rt->room_wait);
    rt->rings = aligned_alloc(64, sizeof *rt->rings * rt->nshards * rt->nshards);
    int rc = 0;
    if (names == MAP_FAILED || !rt->shards || !rt->rings || !rt->room_wait) {
        rc = -OTP_ENOMEM;
        rt->names = names == MAP_FAILED ? NULL : names;
        goto fail;
    }
    rt->names = names;
    memset(rt->rings, 0, sizeof *rt->rings * rt->nshards * rt->nshards);
    for (unsigned i = 0; i < rt->nshards * rt->nshards; i++)
        if (i / rt->nshards != i % rt->nshards &&
            (rc = otp__ring_init(&rt->rings[i], rt->cfg.ring_capacity, sizeof(void *))) < 0)
            goto fail;
    otp__io_backend backend = OTP__IO_AUTO;
    if (rt->cfg.io_backend) {
        if (!strcmp(rt->cfg.io_backend, "epoll"))
            backend = OTP__IO_EPOLL;
        else if (!strcmp(rt->cfg.io_backend, "io_uring"))
            backend = OTP__IO_URING;
        else {
            rc = -OTP_EBADARG;
            goto fail;
        }
    }
    rt->cfg.io_backend = NULL;
    for (unsigned i = 0; i < rt->nshards; i++) {
        if ((rc = shard_init(rt, i, backend)) < 0)
            goto fail;
        if (i == 0 && !(rt->cfg.embedded & 1)) /* the others follow: one fallback message */
            backend = strcmp(otp__io_backend_name(rt->shards[0]->io), "epoll") ? OTP__IO_URING
                                                                               : OTP__IO_EPOLL;
    }
    *out = rt;
    return 0;
fail:
    otp_runtime_free(rt);
    return rc;
}

int otp_runtime_start(otp_runtime *rt)
{
    if (!rt)
        return -OTP_EBADARG;
    int expect = OTP__RT_NEW;
    if (!atomic_compare_exchange_strong(&rt->state, &expect, OTP__RT_RUNNING))
        return -OTP_ESTOPPED;
    for (unsigned i = 0; i < rt->nshards; i++) {
        otp__shard *sh = rt->shards[i];
        if (i < 64 && (rt->cfg.embedded >> i & 1))
            continue;
        if (pthread_create(&sh->thread, NULL, shard_thread, sh) != 0) {
            otp_runtime_stop(rt);
            return -OTP_EIO;
        }
        sh->has_thread = true;
    }
    return 0;
}

static void shutdown_run(otp__shard *sh, void *arg)
{
    (void)arg;
    otp__shard_shutdown(sh);
}

void otp__shard_shutdown(otp__shard *sh)
{
    static void (*const fn)(otp__shard *, void *) = shutdown_run;
    (void)fn;
    sh->stopping = true;
    /* Servers finish the callback they are in before they terminate; one
     * that is still there after this long is killed, so stop ends. */
    sh->stop_deadline = otp__now_ms() + 5000;
    /* Services first: each closes its sockets and reports done once the
     * completions are back (the loop keeps turning until then). */
    for (otp__service *svc = sh->services, *next; svc; svc = next) {
        next = svc->next;
        svc->stop(sh, svc);
    }
    otp_term reason = otp_atom("shutdown");
    for (uint32_t i = 0; i < sh->nslots; i++) {
        otp_proc *p = sh->procs[i];
        if (!p || p->state == OTP__P_EXITING)
            continue;
        if (p->beh && p->beh->shutdown)
            p->beh->shutdown(p);
        else if (p == sh->current)
            continue; /* cannot happen from the loop */
        else
            otp__proc_terminate(p, reason);
    }
}

int otp_runtime_stop(otp_runtime *rt)
{
    if (!rt)
        return -OTP_EBADARG;
    otp__shard *here = otp__this_shard();
    if (here && here->rt == rt)
        return -OTP_ECONTEXT;
    int st = atomic_load(&rt->state);
    if (st == OTP__RT_NEW) {
        atomic_store(&rt->state, OTP__RT_STOPPED);
        return 0;
    }
    if (st == OTP__RT_RUNNING) {
        atomic_store_explicit(&rt->state, OTP__RT_STOPPING, memory_order_release);
        static void (*const fn)(otp__shard *, void *) = shutdown_run;
        for (unsigned i = 0; i < rt->nshards; i++) {
            otp__sig *s = otp__sig_new(OTP__SIG_RUN, otp__mk_lpid(rt->node_slot, i, 0), OTP_NONE,
                                       OTP_NONE, OTP_NONE, OTP_NONE);
            if (!s)
                return -OTP_ENOMEM;
            s->ptr = (void *)&fn;
            otp__inject(rt, i, s);
        }
    }
    for (unsigned i = 0; i < rt->nshards; i++) {
        otp__shard *sh = rt->shards[i];
        if (sh->has_thread) {
            pthread_join(sh->thread, NULL);
            sh->has_thread = false;
        }
    }
    /* Embedded shards finish on their hosts' threads; wait for them. */
    pthread_mutex_lock(&rt->stop_lock);
    unsigned embedded = 0;
    for (unsigned i = 0; i < rt->nshards && i < 64; i++)
        embedded += (unsigned)(rt->cfg.embedded >> i & 1);
    while (rt->stopped_shards < embedded)
        pthread_cond_wait(&rt->stop_cond, &rt->stop_lock);
    pthread_mutex_unlock(&rt->stop_lock);
    atomic_store(&rt->state, OTP__RT_STOPPED);
    return 0;
}

void otp_runtime_free(otp_runtime *rt)
{
    if (!rt)
        return;
    if (atomic_load(&rt->state) == OTP__RT_RUNNING || atomic_load(&rt->state) == OTP__RT_STOPPING)
        otp_runtime_stop(rt);
    if (rt->shards) {
        /* Signals still in the rings belong to nobody now. */
        for (unsigned i = 0; rt->rings && i < rt->nshards * rt->nshards; i++) {
            otp__ring *r = &rt->rings[i];
            if (i / rt->nshards == i % rt->nshards || !r->cons.slots)
                continue;
            uint32_t n;
            while ((n = otp__ring_peek(r, 64)) > 0) {
                for (uint32_t k = 0; k < n; k++)
                    otp__sig_free(*(otp__sig **)otp__ring_rslot(r, k));
                otp__ring_release(r, n);
            }
        }
        for (unsigned i = 0; i < rt->nshards; i++)
            shard_free(rt, rt->shards[i]);
    }
    for (unsigned i = 0; rt->rings && i < rt->nshards * rt->nshards; i++)
        otp__ring_destroy(&rt->rings[i]);
    free(rt->rings);
    free(rt->shards);
    free((void *)rt->room_wait);
    if (rt->names)
        munmap((void *)rt->names, rt->names_bytes);
    otp__node_slot_release(rt->node_slot);
    pthread_mutex_destroy(&rt->stop_lock);
    pthread_cond_destroy(&rt->stop_cond);
    free(rt);
    otp__sig_cache_drain(); /* what freeing the shards left on this thread */
}

unsigned otp_runtime_shards(const otp_runtime *rt)
{
    return rt->nshards;
}
otp_term otp_runtime_node(const otp_runtime *rt)
{
    return rt->node;
}
uint32_t otp_runtime_creation(const otp_runtime *rt)
{
    return rt->creation;
}

/* -------------------------------------------------------------- embedding */

static int embedded_shard(otp_runtime *rt, unsigned shard, otp__shard **out)
{
    if (!rt || shard >= rt->nshards || shard >= 64 || !(rt->cfg.embedded >> shard & 1))
        return -OTP_EBADARG;
    otp__shard *sh = rt->shards[shard];
    if (!sh->thread_bound) {
        sh->thread_bound = true;
        sh->thread = pthread_self();
        shard_enter(sh);
    } else if (!pthread_equal(sh->thread, pthread_self())) {
        return -OTP_ECONTEXT;
    }
    *out = sh;
    return 0;
}

static void embedded_done(otp_runtime *rt, otp__shard *sh)
{
    (void)sh;
    pthread_mutex_lock(&rt->stop_lock);
    rt->stopped_shards++;
    pthread_cond_broadcast(&rt->stop_cond);
    pthread_mutex_unlock(&rt->stop_lock);
}

int otp_shard_fd(otp_runtime *rt, unsigned shard)
{
    if (!rt || shard >= rt->nshards)
        return -OTP_EBADARG;
    return otp__io_pollfd(rt->shards[shard]->io);
}

int otp_shard_run(otp_runtime *rt, unsigned shard, uint64_t *next_ms)
{
    otp__shard *sh;
    int rc = embedded_shard(rt, shard, &sh);
    if (rc < 0)
        return rc;
    if (atomic_load(&rt->state) == OTP__RT_NEW)
        return -OTP_ESTOPPED;
    if (sh->finished)
        return 1;
    uint64_t next = UINT64_MAX;
    rc = otp__shard_loop(sh, true, &next);
    if (next_ms)
        *next_ms = next;
    if (rc == 1) {
        sh->finished = true; /* the host's thread only: report once */
        otp__sig_cache_drain();
        embedded_done(rt, sh);
    }
    return rc;
}

int otp_shard_run_forever(otp_runtime *rt, unsigned shard)
{
    otp__shard *sh;
    int rc = embedded_shard(rt, shard, &sh);
    if (rc < 0)
        return rc;
    otp__shard_loop(sh, false, NULL);
    otp__sig_cache_drain();
    embedded_done(rt, sh);
    return 0;
}
