/* gen_server.h — the GenServer behaviour.
 *
 * A server is a process whose state is a C pointer and whose code is five
 * callbacks. It holds no fiber stack while it waits for messages: each
 * callback runs on a pooled stack and gives it back when it returns (a
 * callback that blocks, in a call to another server say, keeps its stack
 * until it returns). Terms a callback receives or builds live until it
 * returns (the runtime's MEMORY rule): keep what you need in the state, in
 * C values or copied into an arena the state owns.
 *
 * Messages follow Erlang's gen_server protocol ({'$gen_call', {Pid, Tag},
 * Request}, {'$gen_cast', Msg}, {system, From, {terminate, Reason}}), so
 * Erlang processes can call libotp servers and the other way round.
 */
#ifndef OTP_GEN_SERVER_H
#define OTP_GEN_SERVER_H

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Who is waiting for a reply. A plain value: copy it anywhere (into the
 * state, to another process) and reply later with otp_gen_server_reply. */
typedef struct otp_from {
    otp_term pid_node; /* the caller's pid, by parts */
    uint32_t pid_id, pid_serial, pid_creation;
    otp_term ref_node; /* the call's tag, a ref, by parts */
    uint32_t ref_creation;
    uint32_t ref_words[5];
    uint8_t ref_nwords;
    bool alias; /* the tag was [alias | Ref] (OTP 24+ callers) */
    /* Any other tag (gen_server:multi_call's {Ref, Node}, say), encoded;
     * tag_len 0 when the tag is a ref. */
    uint8_t tag_len;
    uint8_t tag_etf[96];
    /* Private: the call's own terms, valid while the callback that
     * received it runs (a reply from there reuses them). */
    otp_term priv_pid, priv_tag, priv_ref;
    const void *priv_proc;
    uint64_t priv_gen;
    uint64_t priv_id; /* a call from this node: its ref's id (else 0) */
} otp_from;

typedef enum otp_gs_action {
    OTP_GS_REPLY,   /* reply now with .reply */
    OTP_GS_NOREPLY, /* no reply now (handle_call: reply later, or never) */
    OTP_GS_STOP,    /* stop with .reason; a call is answered with .reply if set */
} otp_gs_action;

typedef struct otp_gs_ret {
    otp_gs_action action;
    otp_term reply;  /* OTP_NONE when unused */
    otp_term reason; /* OTP_GS_STOP */
} otp_gs_ret;

static inline otp_gs_ret otp_gs_reply(otp_term reply)
{
    otp_gs_ret r = {OTP_GS_REPLY, reply, 0};
    return r;
}
static inline otp_gs_ret otp_gs_noreply(void)
{
    otp_gs_ret r = {OTP_GS_NOREPLY, 0, 0};
    return r;
}
static inline otp_gs_ret otp_gs_stop(otp_term reason)
{
    otp_gs_ret r = {OTP_GS_STOP, 0, reason};
    return r;
}
static inline otp_gs_ret otp_gs_stop_reply(otp_term reason, otp_term reply)
{
    otp_gs_ret r = {OTP_GS_STOP, reply, reason};
    return r;
}

/* init's verdicts. */
enum { OTP_GS_INIT_OK = 0, OTP_GS_INIT_STOP = 1, OTP_GS_INIT_IGNORE = 2 };

typedef struct otp_gen_server_ops {
    /* Sets *state; returns OTP_GS_INIT_OK, or OTP_GS_INIT_STOP with *reason
     * (the start fails with it), or OTP_GS_INIT_IGNORE. Required. */
    int (*init)(otp_proc *self, otp_term args, void **state, otp_term *reason);
    /* A NULL handle_call or handle_cast makes the server exit with reason
     * undef when such a message comes (Erlang crashes too); a NULL
     * handle_info drops the message (Erlang logs it and drops it). */
    otp_gs_ret (*handle_call)(otp_proc *self, otp_term request, const otp_from *from, void *state);
    otp_gs_ret (*handle_cast)(otp_proc *self, otp_term msg, void *state);
    otp_gs_ret (*handle_info)(otp_proc *self, otp_term msg, void *state);
    /* Runs when the server stops: a callback returned STOP, a stop request,
     * the runtime stopping, or an exit signal from its parent while it
     * traps exits. Frees the state. May be NULL. */
    void (*terminate)(otp_proc *self, otp_term reason, void *state);
    /* The state as a term (built in self's arena), for sys:get_state and
     * sys:get_status, which tools such as observer use. May be NULL: they
     * then see the atom undefined. */
    otp_term (*format_state)(otp_proc *self, void *state);
} otp_gen_server_ops;

typedef struct otp_gen_server_opts {
    int shard;      /* as otp_spawn_opts.shard */
    bool link;      /* start_link: link to the calling process */
    otp_term name;  /* register under this atom (0 or OTP_NONE: none) */
    bool trap_exit; /* start with trap_exit set */
} otp_gen_server_opts;

/* gen_server:start/start_link: spawns the server and returns after its
 * init has run. ops must outlive the server; args is copied. caller is the
 * calling process, or NULL from a thread outside the runtime. *pid gets the
 * server. Returns 0; -OTP_EEXIST (name taken); -OTP_EEXIT when init asked
 * to stop (*reason, if not NULL, gets its reason in the caller's arena, or
 * an atom from a thread); 1 when init returned IGNORE; other errors as
 * otp_spawn. */
int otp_gen_server_start(otp_runtime *rt, otp_proc *caller, const otp_gen_server_ops *ops,
                         otp_term args, const otp_gen_server_opts *opts, otp_term *pid,
                         otp_term *reason);

/* gen_server:call(Server, Request, Timeout): Server is a pid or a name.
 * *reply lives in self's arena. Returns 0; -OTP_ETIMEDOUT (a late reply is
 * discarded); -OTP_ENOPROC (no such server); -OTP_EEXIT when the server
 * exited before replying (*reply then gets its exit reason). The default
 * timeout of Erlang is 5000 ms: OTP_GS_DEFAULT_TIMEOUT. */
#define OTP_GS_DEFAULT_TIMEOUT 5000u
int otp_gen_server_call(otp_proc *self, otp_term server, otp_term request, uint64_t timeout_ms,
                        otp_term *reply);

/* gen_server:cast(Server, Msg): never fails for a pid; -OTP_ENOPROC only
 * for a name nobody holds (Erlang drops it silently; we tell you). */
int otp_gen_server_cast(otp_proc *self, otp_term server, otp_term msg);

/* gen_server:reply(From, Reply), from any process (self is the sender). */
int otp_gen_server_reply(otp_proc *self, const otp_from *from, otp_term reply);

/* gen_server:stop(Server, Reason, Timeout): the server's terminate runs
 * with reason and it exits; returns once it is gone. -OTP_ENOPROC,
 * -OTP_ETIMEDOUT. */
int otp_gen_server_stop(otp_proc *self, otp_term server, otp_term reason, uint64_t timeout_ms);

/* The same from a thread outside the runtime (blocking; Ergo's "Direct").
 * otp_runtime_call's *reply is copied into arena a, which the caller owns. */
int otp_runtime_call(otp_runtime *rt, otp_term server, otp_term request, uint64_t timeout_ms,
                     otp_arena *a, otp_term *reply);
int otp_runtime_cast(otp_runtime *rt, otp_term server, otp_term msg);
int otp_runtime_stop_server(otp_runtime *rt, otp_term server, otp_term reason, uint64_t timeout_ms);

#ifdef __cplusplus
}
#endif
#endif
