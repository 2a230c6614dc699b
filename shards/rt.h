/* rt.h — the runtime's internals: the runtime object, shards, processes
 * and the tasks (fiber + stack) they run on. Shared by runtime.c (set-up,
 * registry, embedding), shard.c (the loop, rings, timers, scheduling),
 * proc.c (signals, mailboxes, links, monitors) and the behaviours.
 *
 * Threads meet only in the rings, the waker, the external queue (ext_*),
 * the registry and the runtime's state word; everything else in a shard
 * belongs to its thread.
 */
#ifndef OTP_SHARDS_RT_H
#define OTP_SHARDS_RT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "fiber.h"
#include "io.h"
#include "msg.h"
#include "otp/runtime.h"
#include "ring.h"
#include "term_internal.h"
#include "wheel.h"

#define OTP__SHARD_BITS 8 /* pid id = slot << 8 | shard */
#define OTP__MAX_SHARDS (1u << OTP__SHARD_BITS)
#define OTP__MAX_SLOTS  (1u << 24)

typedef struct otp__shard otp__shard;
typedef struct otp__task otp__task;
typedef struct otp__xcall otp__xcall;

/* A fiber and its stack. A plain process owns one for life; a behaviour
 * borrows one from the shard's idle list for as long as a callback runs. */
struct otp__task {
    otp__fiber fiber;
    otp__stack *stack;
    otp_proc *proc; /* the process it runs, NULL while idle */
    otp__task *next;
    otp__shard *shard;
    bool worker; /* runs behaviour callbacks (loops); else runs one process's function */
};

typedef enum otp__pstate {
    OTP__P_RUNNABLE = 1, /* in the run queue */
    OTP__P_RUNNING,
    OTP__P_WAITING, /* blocked in receive/call/sleep (has a task) */
    OTP__P_IDLE,    /* behaviour with nothing to do (no task) */
    OTP__P_EXITING,
} otp__pstate;

/* Behaviours plug in here: run is called on a task when the process has
 * mail (it takes messages with otp__take and returns when done or out of
 * budget); terminate when it is stopped from outside (shutdown, exit
 * signal it traps... decided by the behaviour), free when it is gone. */
typedef struct otp__behaviour {
    void (*run)(otp_proc *p);
    void (*free)(otp_proc *p);     /* release the behaviour's data (after exit) */
    void (*shutdown)(otp_proc *p); /* the runtime stops: end with `shutdown` */
} otp__behaviour;

/* Timers of a shard's wheel, told apart by kind when they fire. */
enum { OTP__TK_PROC = 1, OTP__TK_MSG, OTP__TK_FN };
typedef struct otp__ktimer {
    otp__timer t; /* first */
    uint32_t kind;
} otp__ktimer;

/* A monitor, seen from either end. */
typedef struct otp__mon {
    uint64_t ref;   /* our ref id (see otp__ref_*): unique per runtime */
    otp_term other; /* the other process (pid; a remote one lives in mon_arena) */
    otp_term named; /* what a DOWN names: the pid, or {Name, Node} (in mon_arena) */
    otp_term rref;  /* a remote monitor of us: its ref (in mon_arena); else OTP_NONE */
    bool origin;    /* true: we monitor `other`; false: `other` monitors us */
} otp__mon;

struct otp_proc {
    otp_term pid; /* local pid immediate */
    otp__shard *sh;
    uint32_t slot;
    uint8_t state; /* otp__pstate */
    bool trap_exit;
    otp_term name;     /* registered name or OTP_NONE */
    otp__sigq mq;      /* the mailbox: messages only */
    otp__sig **scan;   /* receive resumes its scan here (NULL: from the head) */
    otp__task *task;   /* the fiber it runs on, if any */
    otp_arena *arena;  /* received messages and built terms */
    otp__ktimer timer; /* receive / sleep timeout */
    bool timed_out;
    /* The timeout is not in the wheel yet (see otp__lazy_timers_arm): the
     * timer's link is on the shard's lazy_timers, its deadline set. */
    bool lazy_timer;
    otp_proc *rq_next; /* run queue */
    otp_term *links;   /* linked pids */
    uint32_t nlinks, caplinks;
    otp__mon *mons;
    uint32_t nmons, capmons;
    otp_arena *mon_arena;    /* remote pids, {Name, Node} and refs of links and monitors */
    uint32_t mon_compact_at; /* mon_arena's size that triggers its compaction */
    uint64_t *aliases;       /* active aliases: ref id << 1 | 1 if reply-once */
    uint32_t naliases, capaliases;
    uint64_t alias; /* the call this process waits on (ref id), 0 none */
    /* A call's monitor between local processes, at either end, kept here
     * rather than in mons[] (a call pays for no array, no arena check):
     * one of them at a time, the others go to mons[]. ref 0: none. */
    otp__mon cmon;
    otp_proc_fn fn;
    void *arg; /* fn's argument, or the behaviour's state */
    const otp__behaviour *beh;
    void *beh_data;
    otp__xcall *pending;        /* the request this process waits on, if any */
    void (*on_exit)(void *arg); /* called as it is freed (a waiting thread's hook) */
    void *on_exit_arg;
    struct otp__tmsg *timers; /* send_after timers aimed at this process */
};

/* A timer made by send_after, found again by its ref id on cancel. */
typedef struct otp__tmsg {
    otp__ktimer kt; /* first */
    uint64_t id;
    otp__sig *sig; /* the message, its `to` a pid or a name */
    struct otp__tmsg *hnext;
    struct otp__tmsg *pnext, **pprev; /* the target process's timers */
} otp__tmsg;

/* ---- services: code that lives on a shard's thread without being a
 * process (the EPMD agent and server, later the distribution connections).
 * They use the shard's otp__io directly and these timers. A registered
 * service keeps the runtime from finishing its stop: stop() is called on
 * the shard thread when the runtime stops; it closes what it holds and
 * calls otp__service_done once its last I/O completion has come back. */
typedef struct otp__service otp__service;
struct otp__service {
    void (*stop)(otp__shard *sh, otp__service *svc);
    /* Optional: runs once per turn of the loop, after the processes ran and
     * before the shard sleeps, when the service asked with
     * otp__service_want_flush (a connection writes everything its
     * processes queued this turn in one go). */
    void (*flush)(otp__shard *sh, otp__service *svc);
    bool flush_wanted;
    otp__service *next, **pprev;
};
void otp__service_want_flush(otp__shard *sh, otp__service *svc);
void otp__service_add(otp__shard *sh, otp__service *svc);
void otp__service_done(otp__shard *sh, otp__service *svc);

/* A timer for a service: fn runs on the shard thread when it fires. */
typedef struct otp__stimer {
    otp__ktimer kt; /* first */
    void (*fn)(otp__shard *sh, struct otp__stimer *t);
} otp__stimer;
void otp__stimer_start(otp__shard *sh, otp__stimer *t, uint64_t ms);
void otp__stimer_cancel(otp__shard *sh, otp__stimer *t);

/* Runs fn(sh, arg) on shard `index` (from any thread, a process or a
 * shard): the job travels as a signal, so it runs after what that shard
 * already has queued from the same sender. 0 or -OTP_ENOMEM. */
int otp__shard_post(otp_runtime *rt, unsigned index, void (*fn)(otp__shard *sh, void *arg),
                    void *arg);
/* Hands socket fd, owned by shard sh (no op pending on it), to shard `to`:
 * detaches it from sh's io and runs fn(to's shard, fd, arg) there, where
 * it is used with that shard's io. 0, -EBUSY (ops pending), -OTP_ENOMEM. */
int otp__sock_handoff(otp__shard *sh, int fd, unsigned to,
                      void (*fn)(otp__shard *sh, int fd, void *arg), void *arg);

/* One fewer live thing (a process or a service); the last one during a
 * stop wakes the other shards so they notice. */
void otp__live_release(otp__shard *sh);

struct otp__shard {
    otp_runtime *rt;
    unsigned index;
    otp__io *io;
    otp__waker waker;
    /* ---- the shard thread's own state */
    otp__fiber main;
    otp__stack_pool stacks;
    otp__task *idle_tasks;
    otp__task *dead_task; /* finished on its own stack: freed by the loop */
    otp_proc *current;
    unsigned handoffs; /* process runs left this turn, hand-offs included */
    bool held;         /* an outbox is over its limit: no process runs */
    otp_proc *rq_head, *rq_tail;
    otp__tlink lazy_timers; /* timeouts not in the wheel yet (circular; see otp_proc) */
    otp__sigq local;        /* signals to this shard's processes */
    otp__sigq *out;         /* per destination shard: waiting for ring room */
    uint64_t out_mask[OTP__MAX_SHARDS / 64]; /* destinations with something in out[] */
    otp__wheel wheel;
    uint64_t now_ms;
    otp_proc **procs; /* by slot */
    uint32_t *serials;
    uint32_t nslots, capslots;
    uint32_t *free_slots;
    uint32_t nfree;
    size_t nprocs;
    otp_arena **spare_arenas; /* reset arenas for processes that need one */
    size_t nspare;
    otp_arena *scratch; /* the loop's own terms, reset after each use */
    uint64_t next_ref;
    otp__tmsg **tbuckets; /* send_after timers by id */
    size_t ntbuckets;
    bool stopping;          /* shutdown reached this shard */
    uint64_t stop_deadline; /* then: what still lives after it is killed */
    bool thread_bound;      /* embedded: the host thread is known */
    pthread_t thread;
    bool has_thread; /* a thread of the runtime's own runs it (joined by stop) */
    bool finished;   /* embedded: its loop ended (host thread only) */
    otp__service *services;
    bool flush_wanted; /* some service wants its flush this turn */
    /* ---- other threads: the external queue (calls from outside) */
    pthread_mutex_t ext_lock;
    otp__sigq ext_q;              /* guarded by ext_lock */
    _Atomic uint32_t ext_pending; /* 1 when ext_q may be non-empty */
};

enum { OTP__RT_NEW, OTP__RT_RUNNING, OTP__RT_STOPPING, OTP__RT_STOPPED };

struct otp_runtime {
    unsigned nshards;
    otp__shard **shards;
    otp__ring *rings; /* rings[from * nshards + to] */
    otp_term node;
    uint32_t creation;
    unsigned node_slot;
    _Atomic otp_term *names; /* by atom index: the pid registered, or 0 */
    size_t names_bytes;
    _Atomic int state;
    _Atomic unsigned rr;         /* round robin for OTP_SHARD_NEXT */
    _Atomic size_t live;         /* processes alive, all shards */
    _Atomic uint32_t *room_wait; /* [from * n + to]: from waits for room in that ring */
    otp_runtime_config cfg;
    pthread_mutex_t stop_lock;
    pthread_cond_t stop_cond;
    unsigned stopped_shards; /* guarded by stop_lock */
    /* The distribution layer once otp_node_start has run (net/dist.c). */
    _Atomic(struct otp_node *) dist;
};

/* ---- pids and refs */

static inline unsigned otp__pid_shard(otp_term pid)
{
    return otp__lpid_id(pid) & (OTP__MAX_SHARDS - 1);
}
static inline uint32_t otp__pid_slot(otp_term pid)
{
    return otp__lpid_id(pid) >> OTP__SHARD_BITS;
}
/* The local pid for t if it names a process of this runtime (either form),
 * else 0. */
otp_term otp__local_pid(otp_runtime *rt, otp_term t);

/* A ref of this runtime: id is unique per runtime (shard index in the low
 * bits). Built as a 3-word ref of our node when a term is needed. */
uint64_t otp__ref_new(otp__shard *sh);
otp_term otp__ref_term(otp_runtime *rt, otp_arena *a, uint64_t id);
uint64_t otp__ref_id(otp_runtime *rt, otp_term ref); /* 0 if not one of ours */
/* An alias of ours (otp_alias's five-word refs): its id, and the process it
 * names in *pid; 0 if ref is not one. */
uint64_t otp__alias_of(otp_runtime *rt, otp_term ref, otp_term *pid);
/* A message to an alias of ours (from the distribution layer): delivered
 * if the alias is still active there, dropped otherwise. */
int otp__alias_deliver(otp__shard *sh, otp_term ref, otp_term msg);

/* ---- scheduling (shard.c) */

/* The shard this thread runs, or NULL outside the runtime's threads. */
otp__shard *otp__this_shard(void);
uint64_t otp__now_ms(void);
/* Queues p to run (from waiting or idle). */
void otp__make_runnable(otp_proc *p);
/* The running process gives up the CPU in `state` (WAITING or RUNNABLE);
 * returns when it runs again. */
void otp__suspend(otp_proc *p, otp__pstate state);
/* Routes a signal to its target's shard: the local queue, or the outbox of
 * the ring to another shard. The signal's `to` must be a local pid. */
void otp__route(otp__shard *sh, otp__sig *s);
/* From a thread outside the runtime: queues s on shard `to` and wakes it. */
void otp__inject(otp_runtime *rt, unsigned to, otp__sig *s);
/* Back-pressure: the caller (a process) waits while the outbox to `shard`
 * is over its limit. */
void otp__send_backpressure(otp__shard *sh, otp_proc *self, unsigned shard);
/* Hands out / takes back a task. */
otp__task *otp__task_get(otp__shard *sh, bool worker);

/* ---- processes (proc.c) */

otp_proc *otp__proc_lookup(otp__shard *sh, otp_term pid);
otp_proc *otp__proc_new(otp__shard *sh);
void otp__proc_atoms_init(void);
/* Handles one signal on the target's shard (to: local pid of this shard). */
void otp__deliver(otp__shard *sh, otp__sig *s);
/* Ends p with reason (copied) from the shard loop or from p itself. */
void otp__proc_terminate(otp_proc *p, otp_term reason);
/* The running process exits (from its own task); does not return. */
_Noreturn void otp__proc_exit_self(otp_proc *p, otp_term reason);
/* A behaviour takes its next message: 0 and *msg, or -OTP_ETIMEDOUT when
 * the mailbox is empty. The message lives in arena a. */
int otp__take(otp_proc *p, otp_arena *a, otp_term *msg);
/* Puts the timeouts that processes set since the last call into the wheel
 * (the loop, before it reads the wheel). */
void otp__lazy_timers_arm(otp__shard *sh);
/* Runs a timer-fired send. */
void otp__tmsg_fire(otp__shard *sh, otp__tmsg *tm);
/* Ends every process of the shard with reason shutdown. */
void otp__shard_shutdown(otp__shard *sh);

/* ---- the registry (runtime.c) */
/* Sets or clears names[name] from the owner shard; returns 0 or -OTP_EEXIST. */
int otp__name_claim(otp_runtime *rt, otp_term name, otp_term pid);
void otp__name_release(otp_runtime *rt, otp_term name, otp_term pid);

/* ---- thread waiters (calls from outside the runtime) */
typedef struct otp__waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
} otp__waiter;
void otp__waiter_init(otp__waiter *w);
void otp__waiter_destroy(otp__waiter *w);
void otp__waiter_wait(otp__waiter *w);
void otp__waiter_signal(otp__waiter *w);

/* ---- requests to another shard (xcall)
 *
 * A process or a thread asks another shard to do something and waits for
 * the answer. The request lives on the heap, never on the asker's stack: a
 * process may be killed while it waits, and the other shard must never
 * write into a stack that went back to the pool. The answer travels back
 * as a signal to the asker's shard, which hands it over only if the asker
 * is still alive and still waiting for it; otherwise it frees it. */
struct otp__xcall {
    void (*entry)(otp__shard *, void *); /* first: the SIG_RUN function */
    /* On the target shard: do the work, fill the answer. */
    void (*work)(otp__shard *sh, otp__xcall *x);
    /* On the asker's shard when the answer arrives; asker is NULL when it
     * died meanwhile (then undo what must be undone). May be NULL. */
    void (*back)(otp__shard *sh, otp__xcall *x, otp_proc *asker);
    otp_term asker;      /* the waiting process, 0 for a thread */
    otp__waiter *thread; /* a waiting thread */
    unsigned target;     /* shard */
    bool returning;      /* travelling back */
    bool deferred;       /* work() set it: the answer comes later (otp__xcall_answer) */
    _Atomic int done;
    int rc;
};

/* The target shard has the answer ready (after a deferred work()). */
void otp__xcall_answer(otp__shard *sh, otp__xcall *x);

/* Sends x to shard x->target and waits for the answer: self is the asking
 * process (NULL from a thread outside the runtime). On the same shard the
 * work runs at once. Returns 0 when x holds the answer (the caller then
 * frees it), or -OTP_ECONTEXT (the shard loop cannot wait; x is freed). */
int otp__xcall_run(otp_runtime *rt, otp_proc *self, otp__xcall *x);

/* ---- spawn requests, run on the target shard */
typedef struct otp__spawn_req {
    otp__xcall x; /* first */
    otp_proc_fn fn;
    void *arg;
    const otp__behaviour *beh;
    void *beh_data;
    otp_spawn_opts opts;
    otp_term parent;            /* pid or 0 */
    uint64_t mref;              /* monitor ref id when opts.monitor */
    void (*on_exit)(void *arg); /* see otp_proc */
    void *on_exit_arg;
    otp_term pid; /* the answer, with x.rc */
} otp__spawn_req;

int otp__spawn_here(otp__shard *sh, otp__spawn_req *rq);
/* A spawn's answer back on the parent's shard: the parent's halves of link
 * and monitor, or, if it died meanwhile, the signals that undo the child's. */
void otp__spawn_back(otp__shard *sh, otp__xcall *x, otp_proc *parent);

/* ---- for behaviours (proc.c) */
void otp__add_link_pub(otp_proc *p, otp_term pid);
int otp__add_mon_pub(otp_proc *p, uint64_t ref, otp_term other);
/* Routes a monitor signal (MONITOR, DEMONITOR, DOWN): `a` is the ref id, a
 * raw word, not a term. */
void otp__send_mon_sig(otp__shard *sh, unsigned kind, otp_term to, otp_term from, uint64_t id,
                       otp_term b, otp_term c);
/* A call: monitors `to` (as `named` in a DOWN), sends {tag, {Self, Ref},
 * req} marked as a call with ref id, and waits for the REPLY with that ref
 * or the DOWN. *reply:
 * the reply (0), or the exit reason (-OTP_EEXIT / -OTP_ENOPROC). */
int otp__call(otp_proc *self, otp_term to, otp_term named, otp_term tag, otp_term req, uint64_t id,
              uint64_t timeout_ms, otp_term *reply);
/* A reply to a call: sends {Tag, Reply} to `to`; ref is the call's ref (the
 * tag itself, or the ref inside [alias | Ref]). */
int otp__reply(otp_proc *self, otp_term to, otp_term tag, otp_term ref, otp_term reply);
/* The same for a call otp__call made on this node: `to` its caller (a
 * local pid), id its ref id, the tag [alias | Ref] written anew. */
int otp__reply_local(otp_proc *self, otp_term to, uint64_t id, otp_term reply);
/* Spawns per rq (heap-allocated; otp__spawn frees it). */
int otp__spawn(otp_runtime *rt, otp_proc *parent, otp__spawn_req *rq, otp_term *pid,
               otp_term *mref);
void otp__drain_local(otp__shard *sh);
void otp__proc_arena_release(otp_proc *p);
bool otp__drop_call_monitor(otp_proc *self, uint64_t ref, otp_term caller);
/* A gen call to a process on another node (a remote pid or {Name, Node}):
 * monitors it there (MONITOR_P), sends {tag, {Self, Ref}, req} and waits as
 * otp__call does. */
int otp__call_remote(otp_proc *self, otp_term server, otp_term tag, otp_term req, uint64_t id,
                     uint64_t timeout_ms, otp_term *reply);
/* On every shard when a connection to `node` is lost: links to its
 * processes break with noconnection, monitors of them fire, monitors from
 * them go. */
void otp__proc_node_down(otp__shard *sh, otp_term node);
/* A match function for otp_receive: the DOWN of the monitor whose ref is
 * *(otp_term *)ctx. */
bool otp__match_down(otp_term msg, void *ctx);
int otp__send_from(otp__shard *sh, otp_proc *self, otp_term dest, otp_term msg, unsigned kind,
                   otp_term alias);

#endif
