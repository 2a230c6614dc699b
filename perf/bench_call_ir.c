/* bench_call_ir.c — the one-node sequential call alone, for counting its
 * instructions: one shard, a GenServer answering {get, N} with {ok, N}, and
 * ROUNDS rounds of N calls from one process (bench_runtime's call_small
 * without Erlang, set-up or batching around it). Timings on a shared VM
 * swing by 2x between rounds; instructions do not, so the call path is
 * tuned against
 *
 *   valgrind --tool=callgrind build-perf/bin/bench_call_ir 40000
 *
 * whose total (Ir) divided by ROUNDS * N is the count per call (start-up
 * is under 0.1% of it). Run plainly it prints ns per call of each round.
 *   bench_call_ir [N] [io_backend]      (default 2000000, epoll)
 */
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "otp/gen_server.h"
#include "otp/runtime.h"
#include "otp/term.h"

#define ROUNDS 5

static otp_term a_get, a_ok;
static long n_calls;
static sem_t done;
static int failed;

static int srv_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    (void)self;
    (void)args;
    (void)reason;
    *state = NULL;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret srv_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    (void)from;
    (void)state;
    if (otp_tuple_arity(req) == 2 && otp_tuple_get(req, 0) == a_get)
        return otp_gs_reply(OTP_TUPLE(otp_proc_arena(self), a_ok, otp_tuple_get(req, 1)));
    return otp_gs_reply(a_ok);
}

static const otp_gen_server_ops srv_ops = {.init = srv_init, .handle_call = srv_call};

static void driver(otp_proc *self, void *arg)
{
    (void)arg;
    otp_arena *keep = otp_arena_new(); /* the request, built once */
    otp_term server;
    otp_gen_server_opts o = {.shard = 0};
    if (!keep || otp_gen_server_start(otp_proc_runtime(self), self, &srv_ops, OTP_NIL, &o, &server,
                                      NULL) != 0) {
        fprintf(stderr, "bench_call_ir: cannot start the server\n");
        failed = 1;
        otp_arena_free(keep);
        sem_post(&done);
        return;
    }
    otp_term req = OTP_TUPLE(keep, a_get, otp_small(42));
    otp_term want = OTP_TUPLE(keep, a_ok, otp_small(42));
    otp_arena *a = otp_proc_arena(self);
    for (int r = 0; r < ROUNDS && !failed; r++) {
        uint64_t t0 = now_ns();
        for (long i = 0; i < n_calls; i++) {
            otp_term reply;
            if (otp_gen_server_call(self, server, req, 5000, &reply) < 0 ||
                !otp_exact_eq(reply, want)) {
                fprintf(stderr, "bench_call_ir: call %ld failed\n", i);
                failed = 1;
                break;
            }
            otp_arena_reset(a);
        }
        if (!failed)
            printf("round %d: %.1f ns/call\n", r + 1, (double)(now_ns() - t0) / (double)n_calls);
    }
    otp_gen_server_stop(self, server, OTP_ATOM_NORMAL, 5000);
    otp_arena_free(keep);
    sem_post(&done);
}

int main(int argc, char **argv)
{
    n_calls = argc > 1 ? atol(argv[1]) : 2000000;
    if (n_calls <= 0) {
        fprintf(stderr, "usage: bench_call_ir [N] [io_uring|epoll]\n");
        return 2;
    }
    a_get = otp_atom("get");
    a_ok = otp_atom("ok");
    otp_runtime_config cfg = {.shards = 1, .io_backend = argc > 2 ? argv[2] : "epoll"};
    otp_runtime *rt;
    if (otp_runtime_new(&rt, &cfg) != 0 || otp_runtime_start(rt) != 0) {
        fprintf(stderr, "bench_call_ir: cannot start the runtime\n");
        return 1;
    }
    sem_init(&done, 0, 0);
    otp_spawn_opts so = {.shard = 0};
    if (otp_spawn(rt, NULL, driver, NULL, &so, NULL, NULL) < 0) {
        fprintf(stderr, "bench_call_ir: cannot spawn the driver\n");
        failed = 1;
    } else {
        while (sem_wait(&done) != 0)
            ;
    }
    otp_runtime_stop(rt);
    otp_runtime_free(rt);
    sem_destroy(&done);
    return failed;
}
