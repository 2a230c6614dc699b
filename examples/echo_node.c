/* echo_node.c — a libotp node for Erlang clusters to talk to, with an exact
 * contract other tools depend on:
 *
 *   echo_node -sname NAME | -name NAME@HOST  [-setcookie COOKIE]
 *
 * prints "ready NODENAME" once it is registered and reachable, and runs
 * until SIGINT or SIGTERM, then exits cleanly. It serves:
 *
 *   echo (registered GenServer): a call returns its request; a cast
 *     {reply_to, Pid, T} sends T to Pid; a plain message {Pid, T} sends T
 *     to Pid.
 *   lab (registered GenServer), for process semantics:
 *     {spawn_linked_to, Pid} -> CPid: a C process that traps exits and links
 *       to Pid; on an exit signal it sends {lab_exit, CPid, From, Reason} to
 *       the caller, then exits with Reason.
 *     {spawn} -> CPid: a C process that waits to be told to exit;
 *     {exit, CPid, Reason} -> ok: makes it exit with Reason.
 *     {monitor, Pid} -> ok once a C process monitors Pid; when Pid goes
 *       down, {lab_down, Pid, Reason} goes to the caller.
 *     {call, ServerRef, Req} -> the reply of a gen_server call made from C
 *       to ServerRef (a pid or {Name, Node}).
 *   echo:echo(X) -> X through rpc:call and erpc:call.
 *
 * Without -setcookie the cookie is ~/.erlang.cookie, as erl reads it. The
 * node serves EPMD itself if no EPMD runs (ERL_EPMD_PORT is honoured).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "otp.h"

static otp_term a_reply_to, a_spawn_linked_to, a_spawn, a_exit, a_monitor, a_call, a_ok, a_lab_exit,
    a_lab_down, a_lab_stop, a_error, a_badarg, a_exit_atom, a_down;

/* ------------------------------------------------------------------ echo */

static int echo_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    *state = NULL;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret echo_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    return otp_gs_reply(req);
}

static otp_gs_ret echo_cast(otp_proc *self, otp_term msg, void *state)
{
    if (otp_tuple_arity(msg) == 3 && otp_tuple_get(msg, 0) == a_reply_to)
        otp_send(self, otp_tuple_get(msg, 1), otp_tuple_get(msg, 2));
    return otp_gs_noreply();
}

static otp_gs_ret echo_info(otp_proc *self, otp_term msg, void *state)
{
    if (otp_tuple_arity(msg) == 2 && otp_is_pid(otp_tuple_get(msg, 0)))
        otp_send(self, otp_tuple_get(msg, 0), otp_tuple_get(msg, 1));
    return otp_gs_noreply();
}

static const otp_gen_server_ops echo_ops = {.init = echo_init,
                                            .handle_call = echo_call,
                                            .handle_cast = echo_cast,
                                            .handle_info = echo_info};

/* ------------------------------------------------------------------- lab */

/* What a lab child needs: the call to answer, the caller, a target. Its
 * terms live in its own arena (the lab's are gone after the callback). */
typedef struct job {
    otp_arena *a;
    otp_from from;
    otp_term caller, target, req;
} job;

static job *job_new(otp_proc *lab, const otp_from *from, otp_term target, otp_term req)
{
    job *j = calloc(1, sizeof *j);
    if (!j || !(j->a = otp_arena_new())) {
        free(j);
        return NULL;
    }
    j->from = *from;
    j->caller = otp_pid(j->a, from->pid_node, from->pid_id, from->pid_serial, from->pid_creation);
    j->target = otp_copy(j->a, target);
    j->req = req == OTP_NONE ? OTP_NONE : otp_copy(j->a, req);
    return j;
}

static void job_free(job *j)
{
    otp_arena_free(j->a);
    free(j);
}

/* {spawn_linked_to, Pid}: trap exits, link, answer with our pid, then
 * report the first exit signal and die of it. */
static void linked_main(otp_proc *self, void *arg)
{
    job *j = arg;
    otp_trap_exit(self, true);
    otp_link(self, j->target);
    otp_gen_server_reply(self, &j->from, otp_self(self));
    otp_term reason = otp_atom("normal");
    for (;;) {
        otp_term m;
        if (otp_receive(self, NULL, NULL, OTP_INFINITY, &m) < 0)
            break;
        if (otp_tuple_arity(m) == 3 && otp_tuple_get(m, 0) == a_exit_atom) {
            otp_arena *a = otp_proc_arena(self);
            reason = otp_tuple_get(m, 2); /* in our arena until we are gone */
            otp_send(self, j->caller,
                     OTP_TUPLE(a, a_lab_exit, otp_self(self), otp_tuple_get(m, 1), reason));
            break;
        }
    }
    job_free(j);
    otp_proc_exit(self, reason);
}

/* {spawn}: waits for {lab_stop, Reason} and exits with it. */
static void waiter_main(otp_proc *self, void *arg)
{
    (void)arg;
    for (;;) {
        otp_term m;
        if (otp_receive(self, NULL, NULL, OTP_INFINITY, &m) < 0)
            return;
        if (otp_tuple_arity(m) == 2 && otp_tuple_get(m, 0) == a_lab_stop)
            otp_proc_exit(self, otp_tuple_get(m, 1));
    }
}

/* {monitor, Pid}: monitor, answer ok, report the DOWN. */
static void monitor_main(otp_proc *self, void *arg)
{
    job *j = arg;
    otp_term ref;
    otp_monitor(self, j->target, &ref);
    otp_gen_server_reply(self, &j->from, a_ok);
    for (;;) {
        otp_term m;
        if (otp_receive(self, NULL, NULL, OTP_INFINITY, &m) < 0)
            break;
        if (otp_tuple_arity(m) == 5 && otp_tuple_get(m, 0) == a_down) {
            otp_arena *a = otp_proc_arena(self);
            otp_send(self, j->caller, OTP_TUPLE(a, a_lab_down, j->target, otp_tuple_get(m, 4)));
            break;
        }
    }
    job_free(j);
}

/* {call, ServerRef, Req}: a gen_server call from C; the reply is lab's. */
static void call_main(otp_proc *self, void *arg)
{
    job *j = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term reply;
    int rc = otp_gen_server_call(self, j->target, j->req, OTP_GS_DEFAULT_TIMEOUT, &reply);
    if (rc < 0)
        reply =
            OTP_TUPLE(a, a_error,
                      rc == -OTP_EEXIT || rc == -OTP_ENOPROC ? reply : otp_atom(otp_strerror(rc)));
    otp_gen_server_reply(self, &j->from, reply);
    job_free(j);
}

static int lab_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    *state = NULL;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret spawn_job(otp_proc *self, otp_proc_fn fn, const otp_from *from, otp_term target,
                            otp_term req)
{
    job *j = job_new(self, from, target, req);
    otp_term pid;
    if (!j || otp_spawn(otp_proc_runtime(self), self, fn, j, NULL, &pid, NULL) < 0) {
        if (j)
            job_free(j);
        return otp_gs_reply(OTP_TUPLE(otp_proc_arena(self), a_error, otp_atom("system_limit")));
    }
    return otp_gs_noreply(); /* the child answers */
}

static otp_gs_ret lab_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    otp_arena *a = otp_proc_arena(self);
    size_t ar = otp_tuple_arity(req);
    otp_term tag = ar ? otp_tuple_get(req, 0) : OTP_NONE;
    if (ar == 2 && tag == a_spawn_linked_to && otp_is_pid(otp_tuple_get(req, 1)))
        return spawn_job(self, linked_main, from, otp_tuple_get(req, 1), OTP_NONE);
    if (ar == 1 && tag == a_spawn) {
        otp_term pid;
        if (otp_spawn(otp_proc_runtime(self), self, waiter_main, NULL, NULL, &pid, NULL) < 0)
            return otp_gs_reply(OTP_TUPLE(a, a_error, otp_atom("system_limit")));
        return otp_gs_reply(pid);
    }
    if (ar == 3 && tag == a_exit && otp_is_pid(otp_tuple_get(req, 1))) {
        otp_send(self, otp_tuple_get(req, 1), OTP_TUPLE(a, a_lab_stop, otp_tuple_get(req, 2)));
        return otp_gs_reply(a_ok);
    }
    if (ar == 2 && tag == a_monitor)
        return spawn_job(self, monitor_main, from, otp_tuple_get(req, 1), OTP_NONE);
    if (ar == 3 && tag == a_call)
        return spawn_job(self, call_main, from, otp_tuple_get(req, 1), otp_tuple_get(req, 2));
    return otp_gs_reply(OTP_TUPLE(a, a_error, a_badarg));
}

static const otp_gen_server_ops lab_ops = {.init = lab_init, .handle_call = lab_call};

/* ------------------------------------------------------------------- rpc */

static int rpc_echo(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    *result = otp_head(args);
    return OTP_RPC_RETURN;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr, "usage: echo_node -sname NAME | -name NAME@HOST [-setcookie COOKIE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *sname = NULL, *name = NULL, *cookie = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-sname") && i + 1 < argc)
            sname = argv[++i];
        else if (!strcmp(argv[i], "-name") && i + 1 < argc)
            name = argv[++i];
        else if (!strcmp(argv[i], "-setcookie") && i + 1 < argc)
            cookie = argv[++i];
        else
            usage();
    }
    if (!sname == !name)
        usage();
    char node[512];
    if (sname) {
        char host[256];
        gethostname(host, sizeof host);
        host[sizeof host - 1] = 0;
        host[strcspn(host, ".")] = 0; /* a short name's host, as erl -sname */
        snprintf(node, sizeof node, "%s@%s", sname, host);
    } else {
        if (!strchr(name, '@'))
            usage();
        snprintf(node, sizeof node, "%s", name);
    }
    a_reply_to = otp_atom("reply_to");
    a_spawn_linked_to = otp_atom("spawn_linked_to");
    a_spawn = otp_atom("spawn");
    a_exit = otp_atom("exit");
    a_monitor = otp_atom("monitor");
    a_call = otp_atom("call");
    a_ok = otp_atom("ok");
    a_lab_exit = otp_atom("lab_exit");
    a_lab_down = otp_atom("lab_down");
    a_lab_stop = otp_atom("$lab_stop");
    a_error = otp_atom("error");
    a_badarg = otp_atom("badarg");
    a_exit_atom = otp_atom("EXIT");
    a_down = otp_atom("DOWN");

    /* SIGINT and SIGTERM are waited for, not handled: blocked before any
     * thread starts, so every thread inherits the mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    otp_runtime_config rc = {.node_name = node};
    otp_runtime *rt;
    if (otp_runtime_new(&rt, &rc) < 0 || otp_runtime_start(rt) < 0) {
        fprintf(stderr, "echo_node: cannot start the runtime\n");
        return 1;
    }
    otp_node_config nc = {.cookie = cookie};
    otp_node *n;
    otp_error err;
    if (otp_node_start(rt, &nc, &n, &err) < 0) {
        fprintf(stderr, "echo_node: %s\n", err.message);
        otp_runtime_stop(rt);
        otp_runtime_free(rt);
        return 1;
    }
    otp_node_register_fn(n, "echo", "echo", 1, rpc_echo, NULL);
    otp_term pid;
    otp_gen_server_opts eo = {.shard = OTP_SHARD_NEXT, .name = otp_atom("echo")};
    otp_gen_server_opts lo = {.shard = OTP_SHARD_NEXT, .name = otp_atom("lab")};
    if (otp_gen_server_start(rt, NULL, &echo_ops, OTP_NIL, &eo, &pid, NULL) < 0 ||
        otp_gen_server_start(rt, NULL, &lab_ops, OTP_NIL, &lo, &pid, NULL) < 0) {
        fprintf(stderr, "echo_node: cannot start echo and lab\n");
        return 1;
    }
    printf("ready %s\n", node);
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    otp_node_stop(n);
    otp_runtime_stop(rt);
    otp_runtime_free(rt);
    return 0;
}
