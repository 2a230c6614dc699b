/* embed_loop.c — libotp inside a daemon that already has an event loop.
 *
 * The host keeps its main thread and its poll() loop. The runtime leaves
 * shard 0 to it (otp_runtime_config.embedded): the host polls the shard's
 * fd next to its own fds and runs the shard whenever the fd is readable or
 * the shard's next timer is due. Shard 1 runs on a thread of the runtime.
 *
 *   - `ticker`, a server on the host's shard, counts its own timer ticks;
 *   - `counter`, a server on shard 1, adds what it is given;
 *   - a worker thread calls both with otp_runtime_call, then stops the
 *     runtime; the host's loop ends when otp_shard_run says so.
 *
 * The host thread runs shard 0 and so counts as inside the runtime: the
 * blocking thread-side calls (start, call, stop) belong on other threads.
 */
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "otp.h"

/* ------------------------------------------------- the two servers */

/* Both keep one integer; the state pointer is that integer. */
static int init_value(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    int64_t *v = calloc(1, sizeof *v);
    if (!v) {
        *reason = otp_atom("enomem");
        return OTP_GS_INIT_STOP;
    }
    *state = v;
    if (otp_is_atom(args)) /* the ticker: its first tick in 100 ms */
        otp_send_after(self, 100, otp_self(self), otp_atom("tick"), NULL);
    return OTP_GS_INIT_OK;
}

static void free_value(otp_proc *self, otp_term reason, void *state)
{
    (void)self;
    (void)reason;
    free(state);
}

static otp_gs_ret ticker_info(otp_proc *self, otp_term msg, void *state)
{
    int64_t *ticks = state;
    if (msg == otp_atom("tick")) {
        ++*ticks;
        otp_send_after(self, 100, otp_self(self), otp_atom("tick"), NULL);
    }
    return otp_gs_noreply();
}

static otp_gs_ret reply_value(otp_proc *self, otp_term request, const otp_from *from, void *state)
{
    (void)from;
    int64_t *v = state, add = 0;
    otp_get_int64(request, &add); /* the ticker is asked with an atom: adds 0 */
    *v += add;
    return otp_gs_reply(otp_int(otp_proc_arena(self), *v));
}

static const otp_gen_server_ops ticker_ops = {.init = init_value,
                                              .handle_call = reply_value,
                                              .handle_info = ticker_info,
                                              .terminate = free_value};
static const otp_gen_server_ops counter_ops = {
    .init = init_value, .handle_call = reply_value, .terminate = free_value};

/* ------------------------------------------------- the worker thread */

static int64_t call(otp_runtime *rt, const char *name, otp_term request)
{
    otp_arena *a = otp_arena_new(); /* the reply is copied here */
    otp_term reply;
    int64_t v = -1;
    int rc = otp_runtime_call(rt, otp_atom(name), request, 5000, a, &reply);
    if (rc == 0)
        otp_get_int64(reply, &v);
    else
        fprintf(stderr, "worker: call to %s: %s\n", name, otp_strerror(rc));
    otp_arena_free(a);
    return v;
}

static void *worker(void *arg)
{
    otp_runtime *rt = arg;
    otp_gen_server_opts on_host = {.shard = 0, .name = otp_atom("ticker")};
    otp_gen_server_opts on_rt = {.shard = 1, .name = otp_atom("counter")};
    if (otp_gen_server_start(rt, NULL, &ticker_ops, otp_atom("ticker"), &on_host, NULL, NULL) ||
        otp_gen_server_start(rt, NULL, &counter_ops, OTP_NIL, &on_rt, NULL, NULL)) {
        fprintf(stderr, "worker: cannot start the servers\n");
    } else {
        int64_t sum = 0;
        for (int i = 1; i <= 10; i++)
            sum = call(rt, "counter", otp_small(i));
        printf("worker: counter is %lld\n", (long long)sum);
        nanosleep(&(struct timespec){0, 550 * 1000000L}, NULL); /* let the ticker tick */
        printf("worker: ticker has ticked %lld times\n",
               (long long)call(rt, "ticker", otp_atom("ticks")));
    }
    otp_runtime_stop(rt); /* returns once the host's shard has stopped too */
    return NULL;
}

/* ------------------------------------------------- the host */

int main(void)
{
    otp_runtime_config cfg = {.shards = 2, .embedded = 1u << 0};
    otp_runtime *rt;
    if (otp_runtime_new(&rt, &cfg) < 0 || otp_runtime_start(rt) < 0) {
        fprintf(stderr, "embed_loop: cannot start the runtime\n");
        return 1;
    }
    pthread_t th;
    if (pthread_create(&th, NULL, worker, rt) != 0)
        return 1;

    /* The host's own business: a housekeeping timer every 250 ms. */
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec every = {{0, 250 * 1000000L}, {0, 250 * 1000000L}};
    timerfd_settime(tfd, 0, &every, NULL);
    long housekeeping = 0, shard_runs = 0;

    uint64_t next_ms = 0; /* run the shard once right away */
    for (;;) {
        struct pollfd fds[2] = {{.fd = otp_shard_fd(rt, 0), .events = POLLIN},
                                {.fd = tfd, .events = POLLIN}};
        poll(fds, 2, next_ms > INT_MAX ? -1 : (int)next_ms);
        if (fds[1].revents & POLLIN) {
            uint64_t expirations;
            if (read(tfd, &expirations, sizeof expirations) > 0)
                housekeeping++;
        }
        /* Runs the shard until it is idle; next_ms: when its next timer is
         * due. 1 once the runtime has stopped. */
        shard_runs++;
        if (otp_shard_run(rt, 0, &next_ms) != 0)
            break;
    }
    printf("host: loop ended after %ld shard runs and %ld housekeeping ticks\n", shard_runs,
           housekeeping);
    pthread_join(th, NULL);
    close(tfd);
    otp_runtime_free(rt);
    printf("embed_loop: done\n");
    return 0;
}
