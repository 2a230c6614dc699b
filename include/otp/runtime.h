/* runtime.h — the node runtime: shards, processes, messages, links,
 * monitors, exit signals, registered names and timers.
 *
 * A runtime is one node: N shards, each a thread pinned to a core that owns
 * its processes outright. A process is either a C function running on a
 * fiber of its own (otp_spawn) or a behaviour such as a GenServer
 * (gen_server.h), which holds no stack while it waits for messages.
 *
 * Two kinds of callers:
 *   - code running inside a process gets an `otp_proc *self`; the calls that
 *     take one may only be made by that process, on its shard;
 *   - any other thread (a host daemon's) uses the otp_runtime_* calls, which
 *     are thread-safe and block where said.
 *
 * Pids of this node are immediate terms (one word, no arena): they can be
 * stored anywhere, compared with ==, and stay valid (though the process may
 * have exited) until the runtime is freed.
 *
 * MEMORY: messages a process receives, and terms it builds, live in its own
 * arena (otp_proc_arena). A behaviour's arena is reset after every callback
 * returns; a plain process resets its own when it likes
 * (otp_arena_reset(otp_proc_arena(self))). Keep terms longer by copying them
 * into an arena you own (otp_copy), the one rule of term.h.
 */
#ifndef OTP_RUNTIME_H
#define OTP_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "term.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Errors of the runtime (negated like the others). */
enum {
    OTP_ETIMEDOUT = 20, /* a receive or call timed out */
    OTP_ENOPROC = 21,   /* no such process (or it exited before answering) */
    OTP_EEXIST = 22,    /* a name is taken, or a process already has a name */
    OTP_ESTOPPED = 23,  /* the runtime is stopping or stopped */
    OTP_EEXIT = 24,     /* the callee exited during a call: see the reason */
    OTP_ECONTEXT = 25,  /* called from the wrong thread or process */
};

#define OTP_INFINITY UINT64_MAX /* timeouts in milliseconds */
#define OTP_NO_SPIN  UINT32_MAX

typedef struct otp_runtime otp_runtime;
typedef struct otp_proc otp_proc;

/* ------------------------------------------------------------- runtime */

typedef struct otp_runtime_config {
    unsigned shards;        /* 0: one per online CPU */
    bool no_pin;            /* do not pin shard threads to cores */
    uint32_t spin_us;       /* an idle shard polls this long before it sleeps; 0: 50 us;
                               OTP_NO_SPIN: sleep at once */
    const char *node_name;  /* "name@host"; NULL: "nonode@nohost" */
    uint32_t creation;      /* 0: chosen from the clock (never 0) */
    uint32_t ring_capacity; /* slots in each shard-to-shard ring (power of two); 0: 1024 */
    size_t stack_size;      /* usable bytes of a fiber stack; 0: 64 KiB */
    uint64_t embedded;      /* bit i set: the host runs shard i (otp_shard_run*) */
    const char *io_backend; /* "io_uring", "epoll" or NULL (env OTP_IO_BACKEND, then io_uring) */
    bool wake_msg_ring;     /* io_uring: wake other shards with IORING_OP_MSG_RING, not eventfd */
} otp_runtime_config;

/* Creates a runtime (cfg may be NULL for defaults). Nothing runs until
 * otp_runtime_start. The caller owns *out and frees it with
 * otp_runtime_free. Returns 0, -OTP_EBADARG, -OTP_ENOMEM, -OTP_ELIMIT (more
 * than 16 runtimes alive in this process) or -OTP_EIO. */
int otp_runtime_new(otp_runtime **out, const otp_runtime_config *cfg);

/* Starts the shard threads (all but the embedded ones). */
int otp_runtime_start(otp_runtime *rt);

/* Stops the node: every process exits with reason `shutdown` (terminate
 * callbacks run), then the shard threads end and are joined. Embedded shards
 * must keep being run until their otp_shard_run returns 1. Blocks until done;
 * call from a thread outside the runtime. Idempotent. */
int otp_runtime_stop(otp_runtime *rt);

/* Frees a stopped (or never started) runtime and everything it holds. */
void otp_runtime_free(otp_runtime *rt);

unsigned otp_runtime_shards(const otp_runtime *rt);
otp_term otp_runtime_node(const otp_runtime *rt); /* the node name atom */
uint32_t otp_runtime_creation(const otp_runtime *rt);

/* Embedding. A shard listed in cfg->embedded is run by the host instead of
 * a thread of the runtime's:
 *   - otp_shard_run_forever(rt, i) on a host thread: returns when the
 *     runtime stops;
 *   - or inside the host's own event loop: poll otp_shard_fd(rt, i) for
 *     readability, and call otp_shard_run(rt, i, &ms) whenever it is
 *     readable or `ms` milliseconds have passed. otp_shard_run runs until
 *     the shard is idle and returns 0, or 1 once the runtime has stopped.
 * The first call fixes the thread: later calls must come from it. */
int otp_shard_fd(otp_runtime *rt, unsigned shard);
int otp_shard_run(otp_runtime *rt, unsigned shard, uint64_t *next_ms);
int otp_shard_run_forever(otp_runtime *rt, unsigned shard);

/* ----------------------------------------------------------- processes */

typedef void (*otp_proc_fn)(otp_proc *self, void *arg);

#define OTP_SHARD_ANY  (-1) /* the caller's shard inside a process; else round robin */
#define OTP_SHARD_NEXT (-2) /* round robin over all shards */

typedef struct otp_spawn_opts {
    int shard;      /* a shard index, OTP_SHARD_ANY (default) or OTP_SHARD_NEXT */
    bool link;      /* spawn_link: link to the caller (a process) */
    bool monitor;   /* spawn_monitor: *mref gets the monitor's ref */
    bool trap_exit; /* start with trap_exit set */
    otp_term name;  /* register under this atom, or 0 / OTP_NONE for none */
} otp_spawn_opts;

/* Spawns fn(self, arg) as a process with its own fiber. parent is the
 * calling process or NULL from outside the runtime (then link and monitor
 * are refused). When fn returns the process exits with reason `normal`.
 * arg is passed as is; it must stay valid for as long as fn uses it.
 * *pid gets the new pid; *mref (monitor only) a ref in parent's arena.
 * Returns 0, -OTP_ENOMEM, -OTP_EEXIST (name taken: nothing spawned) or
 * -OTP_ESTOPPED. */
int otp_spawn(otp_runtime *rt, otp_proc *parent, otp_proc_fn fn, void *arg,
              const otp_spawn_opts *opts, otp_term *pid, otp_term *mref);

otp_term otp_self(const otp_proc *self);
otp_runtime *otp_proc_runtime(const otp_proc *self);
unsigned otp_proc_shard(const otp_proc *self);
/* The process's arena (see MEMORY above). Valid while the process lives. */
otp_arena *otp_proc_arena(otp_proc *self);
/* The C pointer the process was given (otp_spawn's arg, or a behaviour's
 * state). */
void *otp_proc_arg(const otp_proc *self);

/* Lets other processes of this shard run; returns when this one is
 * scheduled again. A process that never receives, calls or yields keeps its
 * shard to itself: C cannot be preempted. */
void otp_yield(otp_proc *self);

/* ------------------------------------------------------------ messages */

/* Sends a copy of msg to dest: a pid (local or remote), a registered name
 * (atom), {Name, Node}, or an alias (a ref: see otp_alias). Never blocks on a local destination...
 * except for back-pressure: when the ring to dest's shard is full the sender is suspended until it
 * drains (order is kept, nothing is dropped). A message to a pid that no
 * longer exists is dropped silently, as in Erlang; a name that is not
 * registered gives -OTP_ENOPROC (Erlang raises badarg). */
int otp_send(otp_proc *self, otp_term dest, otp_term msg);

/* A filter for selective receive: true to take msg. */
typedef bool (*otp_match_fn)(otp_term msg, void *ctx);

/* Takes the first message in the mailbox that match accepts (any message
 * when match is NULL), waiting up to timeout_ms for one (0: just look).
 * Messages skipped stay in the mailbox, in order. *msg lives in the
 * process's arena. Returns 0, -OTP_ETIMEDOUT. */
int otp_receive(otp_proc *self, otp_match_fn match, void *ctx, uint64_t timeout_ms, otp_term *msg);

/* timer:sleep(ms): suspends the process; messages stay queued. */
void otp_sleep(otp_proc *self, uint64_t ms);

/* --------------------------------------------- links, monitors, exits */

/* link/1, unlink/1. Linking to a process that does not exist sends the
 * caller an exit signal with reason noproc (Erlang 25: link/1 to a dead
 * local pid raises noproc when not trapping exits; we report -OTP_ENOPROC
 * and, when trapping, deliver {'EXIT', Pid, noproc} as Erlang does). */
int otp_link(otp_proc *self, otp_term pid);
int otp_unlink(otp_proc *self, otp_term pid);

/* monitor(process, PidOrName): *ref (in self's arena) identifies it; the
 * monitor fires once with {'DOWN', Ref, process, PidOrName, Reason}
 * (reason noproc if the target does not exist). A name is resolved when
 * the monitor is set up, and the message carries {Name, Node}. */
int otp_monitor(otp_proc *self, otp_term target, otp_term *ref);

/* demonitor(Ref) and demonitor(Ref, [flush]). Returns 1 if the monitor was
 * still active, 0 otherwise, as demonitor(Ref, [info]) answers (with flush,
 * a DOWN already queued is removed, and the answer is 0). */
#define OTP_DEMONITOR_FLUSH 1u
int otp_demonitor(otp_proc *self, otp_term ref, unsigned flags);

/* alias() and alias([reply]): a ref that works as an address of self.
 * otp_send to it (from any process, on any node that speaks ALIAS, which
 * OTP 24+ does) delivers to self while the alias is active; once it is not,
 * what is sent to it is dropped on arrival. OTP_ALIAS_EXPLICIT: active until
 * otp_unalias or exit; OTP_ALIAS_REPLY: also ends with the first message it
 * delivers. *alias lives in self's arena. 0, -OTP_EBADARG (not from self),
 * -OTP_ENOMEM. */
#define OTP_ALIAS_EXPLICIT 0u
#define OTP_ALIAS_REPLY    1u
int otp_alias(otp_proc *self, unsigned flags, otp_term *alias);
/* unalias(Alias): 1 if it was an active alias of self's (now ended), 0 if
 * not. */
int otp_unalias(otp_proc *self, otp_term alias);

/* exit(Pid, Reason): sends an exit signal. `kill` cannot be trapped and
 * makes the target exit with `killed`; `normal` is ignored by a target that
 * does not trap exits (unless the target is self). */
int otp_exit(otp_proc *self, otp_term pid, otp_term reason);

/* exit(Reason) for the calling process: never returns. Links and monitors
 * fire with reason; terminate callbacks of behaviours run first. */
_Noreturn void otp_proc_exit(otp_proc *self, otp_term reason);

/* process_flag(trap_exit, On): returns the old value. */
bool otp_trap_exit(otp_proc *self, bool on);

/* ------------------------------------------------------ registered names */

/* register/2, unregister/1, whereis/1 for this node. Any thread may call
 * them. register fails with -OTP_EEXIST when the name is taken or the pid
 * already has a name, -OTP_ENOPROC when pid is not a live local process;
 * when several shards race for one name exactly one wins. */
int otp_register(otp_runtime *rt, otp_term name, otp_term pid);
int otp_unregister(otp_runtime *rt, otp_term name);
otp_term otp_whereis(otp_runtime *rt, otp_term name); /* OTP_NONE when none */
/* registered(): writes up to max registered names, returns how many there
 * are (a snapshot: names come and go meanwhile). Any thread. */
size_t otp_registered(otp_runtime *rt, otp_term *names, size_t max);

/* ---------------------------------------------------------------- timers */

/* erlang:send_after(Ms, Dest, Msg): *tref (in self's arena) can cancel it.
 * Dest is a pid or a name resolved when the timer fires. */
int otp_send_after(otp_proc *self, uint64_t ms, otp_term dest, otp_term msg, otp_term *tref);
/* erlang:cancel_timer(TRef): milliseconds that were left, or -OTP_ENOTFOUND
 * when it already fired or was cancelled (Erlang's false). */
int64_t otp_cancel_timer(otp_proc *self, otp_term tref);

/* ------------------------------------------------------------------ info */

typedef enum otp_proc_status {
    OTP_PROC_RUNNING,  /* this is the process asking */
    OTP_PROC_RUNNABLE, /* ready, waiting for its turn */
    OTP_PROC_WAITING,  /* in a receive, a call or a sleep */
    OTP_PROC_EXITING,
} otp_proc_status;

typedef struct otp_proc_info {
    otp_proc_status status;
    size_t message_queue_len;
    size_t links;
    size_t monitors;          /* monitors this process holds on others */
    size_t monitored_by;      /* monitors others hold on it */
    otp_term registered_name; /* the atom, or OTP_NONE */
    bool trap_exit;
    size_t memory; /* bytes: the process, its mailbox, its arena, its stack */
} otp_proc_info;

/* process_info/1 of a local process. self may be NULL from outside (then it
 * blocks until the owning shard answers). -OTP_ENOPROC if not alive. */
int otp_process_info(otp_runtime *rt, otp_proc *self, otp_term pid, otp_proc_info *out);

/* ------------------------------------------- from outside the runtime */

/* The same as otp_send, from any thread that is not a shard's. */
int otp_runtime_send(otp_runtime *rt, otp_term dest, otp_term msg);

#ifdef __cplusplus
}
#endif
#endif
