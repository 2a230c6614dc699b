/* shard.c — one shard: its loop (rings in, timers, run queue, rings out,
 * sleep), its tasks (fibers that processes run on), and the two ways work
 * crosses into it: the SPSC rings from other shards, and the external queue
 * from threads outside the runtime.
 *
 * A loop turn: take signals from the external queue and the rings and
 * deliver them; fire due timers; run the runnable processes (each until it
 * blocks or spends its budget), delivering what they send to this shard as
 * they go; publish what they sent elsewhere, one batch per ring; and when
 * nothing is left, sleep in the I/O backend until a timer is due or another
 * shard wakes us.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "rt.h"

/* processes run per turn (hand-offs included) before the shard looks at its rings */
#define RUN_BUDGET    64
#define RING_BATCH    64 /* signals taken from one ring per turn */
#define OUT_LIMIT_MUL 16 /* outbox over this many rings' worth: the sender waits */

static _Thread_local otp__shard *tl_shard;

otp__shard *otp__this_shard(void)
{
    return tl_shard;
}

uint64_t otp__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------ tasks */

static void worker_main(void *arg);
static void proc_main(void *arg);

otp__task *otp__task_get(otp__shard *sh, bool worker)
{
    if (worker && sh->idle_tasks) {
        otp__task *t = sh->idle_tasks;
        sh->idle_tasks = t->next;
        t->next = NULL;
        return t;
    }
    otp__task *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    if (otp__stack_get(&sh->stacks, &t->stack) < 0) {
        free(t);
        return NULL;
    }
    t->shard = sh;
    t->worker = worker;
    otp__fiber_make(&t->fiber, t->stack, worker ? worker_main : proc_main, t);
    return t;
}

/* A task whose fiber will never run again (finished, or its process was
 * killed while suspended on it). */
static void task_free(otp__shard *sh, otp__task *t)
{
    otp__stack_put(&sh->stacks, t->stack);
    free(t);
}

/* Behaviour callbacks run here: the task loops, serving whichever process
 * the shard hands it, and parks in the idle list between processes. */
static void drain_local(otp__shard *sh);
static otp_proc *next_runnable(otp__shard *sh);

static void worker_main(void *arg)
{
    otp__task *t = arg;
    otp__shard *sh = t->shard;
    for (;;) {
        otp_proc *p = t->proc;
        p->beh->run(p);
        /* The callback returned without blocking for good: the process no
         * longer needs a stack. */
        p->task = NULL;
        t->proc = NULL;
        if (p->state == OTP__P_RUNNING) {
            p->state = OTP__P_IDLE;
            if (p->mq.head)
                otp__make_runnable(p); /* budget spent with mail left */
        }
        /* Hand the CPU on without a trip through the loop: deliver what
         * was sent here, and if the next runnable process is a behaviour
         * without a stack, serve it on this very task (no switch at all). */
        drain_local(sh);
        otp_proc *next = next_runnable(sh);
        if (next && !next->task && next->beh) {
            t->proc = next;
            next->task = t;
            next->state = OTP__P_RUNNING;
            sh->current = next;
            continue;
        }
        t->next = sh->idle_tasks;
        sh->idle_tasks = t;
        if (next && next->task) {
            next->state = OTP__P_RUNNING;
            sh->current = next;
            otp__fiber_switch(&t->fiber, &next->task->fiber);
            continue;
        }
        if (next) {
            /* a new plain process: the loop gives it its task */
            next->state = OTP__P_WAITING;
            otp__make_runnable(next);
        }
        sh->current = NULL;
        otp__fiber_switch(&t->fiber, &sh->main);
    }
}

static void proc_main(void *arg)
{
    otp__task *t = arg;
    otp_proc *p = t->proc;
    p->fn(p, p->arg);
    otp__proc_exit_self(p, OTP_ATOM_NORMAL);
}

/* --------------------------------------------------------- run queue */

void otp__make_runnable(otp_proc *p)
{
    if (p->state == OTP__P_RUNNABLE || p->state == OTP__P_RUNNING || p->state == OTP__P_EXITING)
        return;
    otp__shard *sh = p->sh;
    p->state = OTP__P_RUNNABLE;
    p->rq_next = NULL;
    if (sh->rq_tail)
        sh->rq_tail->rq_next = p;
    else
        sh->rq_head = p;
    sh->rq_tail = p;
}

/* The next process to run from inside a process (a direct hand-off), or
 * NULL when the loop must take over: its budget for the turn is spent, or
 * the shard is holding back senders. */
static otp_proc *next_runnable(otp__shard *sh)
{
    otp_proc *p = sh->rq_head;
    if (!p || sh->handoffs == 0 || sh->held)
        return NULL;
    sh->handoffs--;
    sh->rq_head = p->rq_next;
    if (!sh->rq_head)
        sh->rq_tail = NULL;
    return p;
}

void otp__suspend(otp_proc *p, otp__pstate state)
{
    otp__shard *sh = p->sh;
    OTP_ASSERT(sh->current == p && p->task);
    p->state = (uint8_t)OTP__P_WAITING;
    if (state == OTP__P_RUNNABLE)
        otp__make_runnable(p);
    /* Switch straight to the next runnable process when there is one: a
     * call then costs two switches (to the server and back), not four. */
    drain_local(sh);
    otp_proc *next = next_runnable(sh);
    if (next == p) {
        p->state = OTP__P_RUNNING; /* nothing else to run: carry on */
        return;
    }
    if (next && !next->task) {
        otp__task *t = otp__task_get(sh, next->beh != NULL);
        if (t) {
            t->proc = next;
            next->task = t;
        } else {
            next->state = OTP__P_WAITING;
            otp__make_runnable(next);
            next = NULL;
        }
    }
    if (next) {
        next->state = OTP__P_RUNNING;
        sh->current = next;
        otp__fiber_switch(&p->task->fiber, &next->task->fiber);
    } else {
        sh->current = NULL;
        otp__fiber_switch(&p->task->fiber, &sh->main);
    }
    /* Resumed (by the loop or by a hand-off): we are RUNNING again. */
}

static void run_one(otp__shard *sh, otp_proc *p)
{
    if (!p->task) {
        otp__task *t = otp__task_get(sh, p->beh != NULL);
        if (!t) {
            /* No stack to run on (memory, or the kernel's map count): try
             * again next turn rather than fail. It left the queue when it
             * was picked, so it goes back in. */
            p->state = OTP__P_WAITING;
            otp__make_runnable(p);
            return;
        }
        t->proc = p;
        p->task = t;
    }
    p->state = OTP__P_RUNNING;
    sh->current = p;
    otp__fiber_switch(&sh->main, &p->task->fiber);
    sh->current = NULL;
    if (sh->dead_task) {
        task_free(sh, sh->dead_task);
        sh->dead_task = NULL;
    }
}

/* ------------------------------------------------------------- routing */

void otp__route(otp__shard *sh, otp__sig *s)
{
    unsigned to = otp__pid_shard(s->to);
    if (to == sh->index) {
        /* A process's message to itself is in its mailbox when send
         * returns, as in Erlang; the rest waits for the loop, so that a
         * chain of exits is walked iteratively, not on a fiber's stack. */
        if (sh->current && s->to == sh->current->pid && s->kind == OTP__SIG_MSG) {
            otp__deliver(sh, s);
            return;
        }
        otp__sigq_push(&sh->local, s);
        return;
    }
    otp__sigq_push(&sh->out[to], s);
    sh->out_mask[to / 64] |= UINT64_C(1) << (to % 64);
}

/* Publishes what waits in the outboxes, one batch per ring, and wakes the
 * shards that were asleep. Returns true if something is still waiting. */
static bool flush_out(otp__shard *sh)
{
    otp_runtime *rt = sh->rt;
    bool left = false;
    for (unsigned w = 0; w < (rt->nshards + 63) / 64; w++) {
        uint64_t m = sh->out_mask[w];
        while (m) {
            unsigned to = w * 64 + (unsigned)__builtin_ctzll(m);
            m &= m - 1;
            otp__sigq *q = &sh->out[to];
            otp__ring *r = &rt->rings[sh->index * rt->nshards + to];
            uint32_t want = q->len > UINT32_MAX ? UINT32_MAX : (uint32_t)q->len;
            uint32_t n = otp__ring_reserve(r, want);
            for (uint32_t i = 0; i < n; i++)
                *(otp__sig **)otp__ring_wslot(r, i) = otp__sigq_pop(q);
            if (n && otp__ring_publish_needs_wake(r, n, &rt->shards[to]->waker))
                otp__io_wake_from(sh->io, rt->shards[to]->io);
            if (q->len) {
                /* Full: ask the consumer to wake us when it frees slots.
                 * relaxed + the fence: Dekker with drain_rings, as the
                 * waker is (either it sees the flag, or we see the room). */
                _Atomic uint32_t *room = &rt->room_wait[sh->index * rt->nshards + to];
                atomic_store_explicit(room, 1, memory_order_relaxed);
                atomic_thread_fence(memory_order_seq_cst);
                if (otp__ring_reserve(r, 1))
                    atomic_store_explicit(room, 0, memory_order_relaxed);
                left = true;
            } else {
                sh->out_mask[w] &= ~(UINT64_C(1) << (to % 64));
            }
        }
    }
    return left;
}

void otp__send_backpressure(otp__shard *sh, otp_proc *self, unsigned shard)
{
    size_t limit = (size_t)sh->rt->cfg.ring_capacity * OUT_LIMIT_MUL;
    if (sh->out[shard].len <= limit)
        return;
    flush_out(sh);
    /* A behaviour runs on a borrowed stack: suspending it here would pin a
     * stack per blocked sender. Its callback finishes instead, and the
     * shard stops starting callbacks until the outbox drains (see turn).
     * A plain process owns its stack, so it simply waits its turn. */
    while (sh->out[shard].len > limit && self && self->task && !self->beh) {
        otp__suspend(self, OTP__P_RUNNABLE);
        flush_out(sh);
    }
}

/* True while some outbox is over its limit: the shard then only moves
 * signals (in and out) and runs no process, so every sender is held back
 * without holding a stack. */
static bool throttled(otp__shard *sh)
{
    size_t limit = (size_t)sh->rt->cfg.ring_capacity * OUT_LIMIT_MUL;
    for (unsigned w = 0; w < (sh->rt->nshards + 63) / 64; w++)
        for (uint64_t m = sh->out_mask[w]; m; m &= m - 1)
            if (sh->out[w * 64 + (unsigned)__builtin_ctzll(m)].len > limit)
                return true;
    return false;
}

void otp__inject(otp_runtime *rt, unsigned to, otp__sig *s)
{
    otp__shard *sh = rt->shards[to];
    pthread_mutex_lock(&sh->ext_lock);
    otp__sigq_push(&sh->ext_q, s);
    pthread_mutex_unlock(&sh->ext_lock);
    /* relaxed + fence: the same Dekker pairing as a ring's publish (ring.h):
     * either the shard's re-check after its fence sees ext_pending, or our
     * load after this fence sees it sleeping */
    atomic_store_explicit(&sh->ext_pending, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&sh->waker.sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&sh->waker.sleeping, 0, memory_order_relaxed))
        otp__io_wake(sh->io);
}

/* ------------------------------------------------------------ delivery */

static void drain_ext(otp__shard *sh)
{
    /* relaxed: the mutex below orders the queue itself */
    if (!atomic_load_explicit(&sh->ext_pending, memory_order_relaxed))
        return;
    otp__sigq q;
    otp__sigq_init(&q);
    pthread_mutex_lock(&sh->ext_lock);
    atomic_store_explicit(&sh->ext_pending, 0, memory_order_relaxed);
    otp__sigq_splice(&q, &sh->ext_q);
    pthread_mutex_unlock(&sh->ext_lock);
    otp__sig *s;
    while ((s = otp__sigq_pop(&q)))
        otp__deliver(sh, s);
}

static bool drain_rings(otp__shard *sh)
{
    otp_runtime *rt = sh->rt;
    bool any = false;
    for (unsigned from = 0; from < rt->nshards; from++) {
        if (from == sh->index)
            continue;
        otp__ring *r = &rt->rings[from * rt->nshards + sh->index];
        uint32_t n = otp__ring_peek(r, RING_BATCH);
        if (!n)
            continue;
        any = true;
        otp__sig *batch[RING_BATCH];
        for (uint32_t i = 0; i < n; i++)
            batch[i] = *(otp__sig **)otp__ring_rslot(r, i);
        otp__ring_release(r, n);
        /* seq_cst fence, then the flag (relaxed): pairs with flush_out's
         * fence, so a producer waiting for room is never missed */
        _Atomic uint32_t *room = &rt->room_wait[from * rt->nshards + sh->index];
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(room, memory_order_relaxed) &&
            atomic_exchange_explicit(room, 0, memory_order_relaxed))
            otp__io_wake_from(sh->io, rt->shards[from]->io);
        for (uint32_t i = 0; i < n; i++)
            otp__deliver(sh, batch[i]);
    }
    return any;
}

static void drain_local(otp__shard *sh)
{
    otp__sig *s;
    while ((s = otp__sigq_pop(&sh->local)))
        otp__deliver(sh, s);
}

void otp__drain_local(otp__shard *sh)
{
    drain_local(sh);
}

static void timer_fired(otp__timer *t, void *ctx)
{
    otp__shard *sh = ctx;
    /* Two kinds: a process's own (receive timeout, sleep), and send_after's. */
    otp__ktimer *k = (otp__ktimer *)t;
    if (k->kind == OTP__TK_FN) {
        otp__stimer *st = (otp__stimer *)k;
        st->fn(sh, st);
        return;
    }
    if (k->kind == OTP__TK_PROC) {
        otp_proc *p = (otp_proc *)((char *)k - offsetof(otp_proc, timer));
        p->timed_out = true;
        if (p->state == OTP__P_WAITING)
            otp__make_runnable(p);
        return;
    }
    otp__tmsg_fire(sh, (otp__tmsg *)k);
}

/* ------------------------------------------------------------ services */

void otp__stimer_start(otp__shard *sh, otp__stimer *t, uint64_t ms)
{
    if (otp__timer_pending(&t->kt.t))
        otp__wheel_cancel(&sh->wheel, &t->kt.t);
    t->kt.kind = OTP__TK_FN;
    otp__wheel_add(&sh->wheel, &t->kt.t, otp__now_ms() + ms);
}

void otp__stimer_cancel(otp__shard *sh, otp__stimer *t)
{
    if (otp__timer_pending(&t->kt.t))
        otp__wheel_cancel(&sh->wheel, &t->kt.t);
}

void otp__service_add(otp__shard *sh, otp__service *svc)
{
    atomic_fetch_add_explicit(&sh->rt->live, 1, memory_order_relaxed);
    svc->next = sh->services;
    svc->pprev = &sh->services;
    if (sh->services)
        sh->services->pprev = &svc->next;
    sh->services = svc;
}

void otp__service_want_flush(otp__shard *sh, otp__service *svc)
{
    svc->flush_wanted = true;
    sh->flush_wanted = true;
}

void otp__service_done(otp__shard *sh, otp__service *svc)
{
    *svc->pprev = svc->next;
    if (svc->next)
        svc->next->pprev = svc->pprev;
    svc->next = NULL;
    svc->pprev = NULL;
    otp__live_release(sh);
}

typedef struct post_job {
    void (*entry)(otp__shard *, void *); /* first: the SIG_RUN function */
    void (*fn)(otp__shard *sh, void *arg);
    void *arg;
} post_job;

static void post_entry(otp__shard *sh, void *p)
{
    post_job *j = p;
    j->fn(sh, j->arg);
    free(j);
}

int otp__shard_post(otp_runtime *rt, unsigned index, void (*fn)(otp__shard *sh, void *arg),
                    void *arg)
{
    post_job *j = malloc(sizeof *j);
    otp__sig *s = j ? otp__sig_new(OTP__SIG_RUN, otp__mk_lpid(rt->node_slot, index, 0), OTP_NONE,
                                   OTP_NONE, OTP_NONE, OTP_NONE)
                    : NULL;
    if (!s) {
        free(j);
        return -OTP_ENOMEM;
    }
    j->entry = post_entry;
    j->fn = fn;
    j->arg = arg;
    s->ptr = j;
    otp__shard *here = otp__this_shard();
    if (here && here->rt == rt)
        otp__route(here, s);
    else
        otp__inject(rt, index, s);
    return 0;
}

typedef struct handoff_job {
    void (*fn)(otp__shard *sh, int fd, void *arg);
    int fd;
    void *arg;
} handoff_job;

static void handoff_run(otp__shard *sh, void *arg)
{
    handoff_job *j = arg;
    j->fn(sh, j->fd, j->arg);
    free(j);
}

int otp__sock_handoff(otp__shard *sh, int fd, unsigned to,
                      void (*fn)(otp__shard *sh, int fd, void *arg), void *arg)
{
    handoff_job *j = malloc(sizeof *j);
    if (!j)
        return -OTP_ENOMEM;
    int r = otp__io_detach(sh->io, fd);
    if (r < 0) {
        free(j);
        return r;
    }
    j->fn = fn;
    j->fd = fd;
    j->arg = arg;
    /* The job rides the ring behind what sh already sent to `to`. */
    if (otp__shard_post(sh->rt, to, handoff_run, j) < 0) {
        free(j);
        return -OTP_ENOMEM;
    }
    return 0;
}

/* ------------------------------------------------------------ the loop */

static bool rings_empty(otp__shard *sh)
{
    otp_runtime *rt = sh->rt;
    for (unsigned from = 0; from < rt->nshards; from++)
        if (from != sh->index &&
            !otp__ring_recheck_empty(&rt->rings[from * rt->nshards + sh->index]))
            return false;
    return true;
}

/* Polls the incoming rings and the external queue for up to `us`
 * microseconds; true as soon as something arrives. */
static bool spin_for_work(otp__shard *sh, uint32_t us)
{
    otp_runtime *rt = sh->rt;
    uint64_t start = 0;
    for (unsigned i = 0;; i++) {
        /* relaxed: a hint; the turn that follows reads it properly */
        if (atomic_load_explicit(&sh->ext_pending, memory_order_relaxed))
            return true;
        for (unsigned from = 0; from < rt->nshards; from++)
            if (from != sh->index && otp__ring_peek(&rt->rings[from * rt->nshards + sh->index], 1))
                return true;
        if ((i & 63) == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
            if (!start)
                start = now;
            else if (now - start >= us)
                return false;
        }
#if defined(__x86_64__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    }
}

/* One turn; sleeps at most max_sleep_ms when there is nothing to do.
 * Returns true while the shard must keep running. */
static bool turn(otp__shard *sh, uint64_t max_sleep_ms, uint64_t *next_ms)
{
    otp_runtime *rt = sh->rt;
    sh->now_ms = otp__now_ms();
    drain_ext(sh);
    drain_rings(sh);
    drain_local(sh);
    otp__wheel_advance(&sh->wheel, sh->now_ms, timer_fired, sh);
    drain_local(sh);
    bool held = throttled(sh);
    sh->held = held;
    /* One budget for the processes the loop starts and those they hand
     * off to: a loop that ran out of hand-offs would otherwise run the
     * rest of its budget with two more switches per hand-over. */
    sh->handoffs = RUN_BUDGET;
    while (sh->handoffs && sh->rq_head && !held) {
        sh->handoffs--;
        otp_proc *p = sh->rq_head;
        sh->rq_head = p->rq_next;
        if (!sh->rq_head)
            sh->rq_tail = NULL;
        run_one(sh, p);
        drain_local(sh);
        if (throttled(sh)) {
            flush_out(sh);
            held = throttled(sh);
            sh->held = held;
        }
    }
    if (OTP_UNLIKELY(sh->stopping) && sh->now_ms > sh->stop_deadline && sh->nprocs) {
        for (uint32_t i = 0; i < sh->nslots; i++)
            if (sh->procs[i] && sh->procs[i]->state != OTP__P_EXITING)
                otp__proc_terminate(sh->procs[i], otp_atom("killed"));
    }
    if (sh->flush_wanted) {
        sh->flush_wanted = false;
        for (otp__service *svc = sh->services; svc; svc = svc->next)
            if (svc->flush_wanted) {
                svc->flush_wanted = false;
                svc->flush(sh, svc);
            }
    }
    otp__lazy_timers_arm(sh); /* before the wheel says how long to sleep */
    bool backlog = flush_out(sh);
    /* acquire: pairs with the release decrement of the last process */
    if (atomic_load_explicit(&rt->state, memory_order_acquire) >= OTP__RT_STOPPING &&
        atomic_load_explicit(&rt->live, memory_order_acquire) == 0 && !sh->rq_head && !backlog)
        return false;
    uint64_t timeout = otp__wheel_timeout(&sh->wheel, otp__now_ms());
    if (next_ms)
        *next_ms = timeout;
    if ((sh->rq_head && !held) || sh->local.head)
        return true;
    if (backlog && timeout > 1)
        timeout = 1; /* a full ring: look again soon */
    if (timeout > max_sleep_ms)
        timeout = max_sleep_ms;
    if (timeout == 0) {
        otp__io_wait(sh->io, 0);
        return true;
    }
    /* Spin a little before sleeping, as the BEAM's schedulers do: waking a
     * sleeping core costs microseconds (tens of them on some VMs), and
     * work often comes right back. */
    if (rt->cfg.spin_us && !backlog && spin_for_work(sh, rt->cfg.spin_us))
        return true;
    otp__waker_prepare_sleep(&sh->waker);
    /* relaxed: after the fence F1 in prepare_sleep (see otp__inject) */
    if (rings_empty(sh) && !atomic_load_explicit(&sh->ext_pending, memory_order_relaxed))
        otp__io_wait(sh->io, timeout);
    otp__waker_awake(&sh->waker);
    return true;
}

int otp__shard_loop(otp__shard *sh, bool embedded_once, uint64_t *next_ms);

int otp__shard_loop(otp__shard *sh, bool embedded_once, uint64_t *next_ms)
{
    tl_shard = sh;
    if (embedded_once) {
        /* Run until idle, never sleep: the host polls our fd. Going back
         * to the host is this shard's sleep, so it says so on the waker
         * (with the same re-check as a real sleep): other shards and
         * threads then write our eventfd, which makes the fd readable. */
        otp__waker_awake(&sh->waker);
        for (int guard = 0; guard < 1000; guard++) {
            if (!turn(sh, 0, next_ms))
                return 1;
            if (sh->rq_head || sh->local.head)
                continue;
            otp__waker_prepare_sleep(&sh->waker);
            /* relaxed: after the fence in prepare_sleep (see otp__inject) */
            if (rings_empty(sh) && !atomic_load_explicit(&sh->ext_pending, memory_order_relaxed))
                return 0; /* asleep until the host polls us readable */
            otp__waker_awake(&sh->waker);
        }
        return 0;
    }
    while (turn(sh, UINT64_MAX, NULL))
        ;
    return 1;
}
