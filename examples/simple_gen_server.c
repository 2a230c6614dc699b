/* simple_gen_server.c — a GenServer in a few lines, the counterpart of
 * Ergo's classic "simple" example. The server starts with 100 and is cast
 * "hey"; then, once a second, it casts or sends itself a message and counts
 * up, and after 106 it stops with `normal`. The main thread waits until the
 * server is gone, prints "exited" and stops the node.
 */
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include "otp.h"

typedef struct simple {
    int64_t value;
} simple;

/* "HandleCast: "hey" (state value 100)": the message as ~p prints it. */
static void show(const char *callback, otp_term msg, const simple *s)
{
    otp_buf text = {0};
    otp_print_pretty(&text, msg, NULL);
    printf("%s: %.*s (state value %lld)\n", callback, (int)text.len, (const char *)text.data,
           (long long)s->value);
    otp_buf_free(&text);
}

/* Sends msg to ourselves in a second. A cast is just the message
 * {'$gen_cast', Msg} of the gen_server protocol, so a timer can send one. */
static void in_a_second(otp_proc *self, otp_term msg)
{
    otp_send_after(self, 1000, otp_self(self), msg, NULL);
}

static int init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    printf("Init: args %s\n", otp_sprint(otp_proc_arena(self), args));
    simple *s = calloc(1, sizeof *s);
    if (!s || otp_get_int64(otp_head(args), &s->value) < 0) {
        free(s);
        *reason = otp_atom("badarg");
        return OTP_GS_INIT_STOP;
    }
    *state = s; /* ours until terminate */
    return OTP_GS_INIT_OK;
}

static otp_gs_ret handle_cast(otp_proc *self, otp_term msg, void *state)
{
    simple *s = state;
    otp_arena *a = otp_proc_arena(self); /* terms built here live until we return */
    show("HandleCast", msg, s);
    s->value++;
    if (s->value > 103)
        in_a_second(self, otp_string(a, "hello"));
    else
        in_a_second(self, OTP_TUPLE(a, otp_atom("$gen_cast"), otp_string(a, "hi")));
    return otp_gs_noreply();
}

static otp_gs_ret handle_info(otp_proc *self, otp_term msg, void *state)
{
    simple *s = state;
    show("HandleInfo", msg, s);
    s->value++;
    if (s->value > 106)
        return otp_gs_stop(OTP_ATOM_NORMAL);
    in_a_second(self, otp_string(otp_proc_arena(self), "hello"));
    return otp_gs_noreply();
}

static void terminate(otp_proc *self, otp_term reason, void *state)
{
    printf("Terminate: \"%s\"\n", otp_sprint(otp_proc_arena(self), reason));
    free(state);
}

static const otp_gen_server_ops simple_ops = {
    .init = init,
    .handle_cast = handle_cast,
    .handle_info = handle_info,
    .terminate = terminate,
};

/* Ergo's process.Wait(): a thread cannot receive messages, so a process
 * monitors the server for it and posts a semaphore when the DOWN comes. */
typedef struct waiter {
    otp_term server;
    sem_t gone;
} waiter;

static void wait_for_down(otp_proc *self, void *arg)
{
    waiter *w = arg;
    otp_monitor(self, w->server, NULL);
    otp_receive(self, NULL, NULL, OTP_INFINITY, NULL); /* the only message: the DOWN */
    sem_post(&w->gone);
}

int main(void)
{
    otp_runtime *rt;
    if (otp_runtime_new(&rt, NULL) < 0 || otp_runtime_start(rt) < 0) {
        fprintf(stderr, "simple_gen_server: cannot start the runtime\n");
        return 1;
    }
    otp_arena *a = otp_arena_new(); /* this thread's terms */
    waiter w;
    sem_init(&w.gone, 0, 0);
    /* returns once init has run */
    int rc = otp_gen_server_start(rt, NULL, &simple_ops, OTP_LIST(a, otp_small(100)), NULL,
                                  &w.server, NULL);
    if (rc == 0)
        rc = otp_spawn(rt, NULL, wait_for_down, &w, NULL, NULL, NULL);
    if (rc == 0)
        rc = otp_runtime_cast(rt, w.server, otp_string(a, "hey"));
    if (rc == 0) {
        sem_wait(&w.gone);
        printf("exited\n");
    } else {
        fprintf(stderr, "simple_gen_server: %s\n", otp_strerror(rc));
    }
    otp_runtime_stop(rt);
    otp_runtime_free(rt);
    otp_arena_free(a);
    sem_destroy(&w.gone);
    return rc == 0 ? 0 : 1;
}
