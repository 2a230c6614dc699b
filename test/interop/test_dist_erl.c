/* test_dist_erl.c — a libotp node in a cluster with real erl nodes: it
 * serves EPMD itself, erl pings it (pong), sends to its registered C
 * process and gets the echo, calls its GenServer, and receives what a C
 * process sends to a registered Erlang process; a send to a node we are
 * not connected to connects first, as in Erlang. A wrong cookie is
 * refused and the node carries on.
 */
/* otp-test: threads */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "interop/harness.h"
#include "otp.h"
#include "otp/node.h"

static char g_erl[512], g_host[256], g_node[300];
static uint16_t g_epmd_port;
static otp_runtime *g_rt;
static otp_node *g_n;

static bool find_erl(void)
{
    return find_prog("erl", g_erl, sizeof g_erl);
}

static child erl_start(const char *sname, const char *cookie, const char *eval)
{
    char *argv[] = {g_erl,      "-sname", (char *)sname, "-setcookie", (char *)cookie,
                    "-noshell", "-eval",  (char *)eval,  NULL};
    return child_start(argv);
}

static void expect_line(child *c, const char *want, unsigned timeout_ms)
{
    expect_line_in(c, want, timeout_ms, false);
}

/* ---- the C side: a registered echo process and a GenServer */

static void echo_main(otp_proc *self, void *arg)
{
    for (;;) {
        otp_term m;
        if (otp_receive(self, NULL, NULL, OTP_INFINITY, &m) < 0)
            return;
        if (otp_is_tuple(m) && otp_tuple_arity(m) == 2)
            otp_send(self, otp_tuple_get(m, 0), otp_tuple_get(m, 1));
        otp_arena_reset(otp_proc_arena(self));
    }
}

static int gs_init(otp_proc *self, otp_term args, void **state, otp_term *reason)
{
    *state = NULL;
    return OTP_GS_INIT_OK;
}

static otp_gs_ret gs_call(otp_proc *self, otp_term req, const otp_from *from, void *state)
{
    otp_arena *a = otp_proc_arena(self);
    return otp_gs_reply(OTP_TUPLE(a, otp_atom("pong"), req));
}

static const otp_gen_server_ops gs_ops = {.init = gs_init, .handle_call = gs_call};

/* rpc targets: echo:echo/1 returns its argument; echo:thrower/1 throws it;
 * echo:boom/0 fails with an error. */
static int rpc_echo(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    *result = otp_head(args);
    return OTP_RPC_RETURN;
}

static int rpc_thrower(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    *result = otp_head(args);
    return OTP_RPC_THROW;
}

static int rpc_boom(otp_proc *self, otp_term args, otp_term *result, void *arg)
{
    *result = otp_atom("boom_reason");
    return OTP_RPC_ERROR;
}

/* A process that sends one message and exits: dest and msg from a pair. */
typedef struct send_job {
    otp_term dest_name, dest_node;
} send_job;

static void sender_main(otp_proc *self, void *arg)
{
    send_job *j = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_send(self, OTP_TUPLE(a, j->dest_name, j->dest_node),
             OTP_TUPLE(a, otp_atom("from_c"), otp_self(self)));
}

static int setup(void **state)
{
    g_epmd_port = free_port();
    char port[16];
    snprintf(port, sizeof port, "%u", g_epmd_port);
    setenv("ERL_EPMD_PORT", port, 1);
    setenv("ERL_CRASH_DUMP_SECONDS", "0", 1);
    snprintf(g_node, sizeof g_node, "cnode%d@%s", (int)getpid(), g_host);
    otp_runtime_config rc = {.shards = 2, .no_pin = true, .node_name = g_node};
    assert_int_equal(otp_runtime_new(&g_rt, &rc), 0);
    assert_int_equal(otp_runtime_start(g_rt), 0);
    otp_node_config nc = {.cookie = "distcookie", .epmd_port = g_epmd_port};
    otp_error err;
    int r = otp_node_start(g_rt, &nc, &g_n, &err);
    if (r < 0)
        fprintf(stderr, "otp_node_start: %s\n", err.message);
    assert_int_equal(r, 0);
    assert_true(otp_epmd_serving(otp_node_epmd(g_n)));
    assert_int_equal(otp_runtime_creation(g_rt), otp_epmd_creation(otp_node_epmd(g_n)));
    assert_int_equal(otp_node_register_fn(g_n, "echo", "echo", 1, rpc_echo, NULL), 0);
    assert_int_equal(otp_node_register_fn(g_n, "echo", "thrower", 1, rpc_thrower, NULL), 0);
    assert_int_equal(otp_node_register_fn(g_n, "echo", "boom", 0, rpc_boom, NULL), 0);
    otp_spawn_opts so = {.shard = 1, .name = otp_atom("echo")};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, echo_main, NULL, &so, &pid, NULL), 0);
    otp_gen_server_opts go = {.shard = 0, .name = otp_atom("gs")};
    assert_int_equal(otp_gen_server_start(g_rt, NULL, &gs_ops, OTP_NIL, &go, &pid, NULL), 0);
    return 0;
}

static int teardown(void **state)
{
    otp_node_stop(g_n);
    otp_runtime_stop(g_rt);
    otp_runtime_free(g_rt);
    return 0;
}

static void test_erl_pings_sends_calls(void **state)
{
    char sname[64], eval[2048];
    snprintf(sname, sizeof sname, "e1_%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "N = '%s',"
             "io:format(\"ping ~p~n\", [net_adm:ping(N)]),"
             "{echo, N} ! {self(), hello},"
             "receive M -> io:format(\"echo ~p~n\", [M]) after 5000 -> io:format(\"echo "
             "timeout~n\") end,"
             "io:format(\"call ~p~n\", [gen_server:call({gs, N}, {ping, [1,2,3], <<\"bin\">>}, "
             "5000)]),"
             "io:format(\"multi ~p~n\", [gen_server:multi_call([N], gs, m, 5000)]),"
             "register(erlbox, self()), io:format(\"registered~n\"),"
             "receive {from_c, P} when node(P) =:= N -> io:format(\"got from_c~n\") after 10000 "
             "-> io:format(\"got timeout~n\") end,"
             "io:format(\"nodes ~p~n\", [nodes()]),"
             "halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "ping pong", 20000);
    expect_line(&e, "echo hello", 5000);
    expect_line(&e, "call {pong,{ping,[1,2,3],<<\"bin\">>}}", 5000);
    char multi[400];
    snprintf(multi, sizeof multi, "multi {[{%s,{pong,m}}],[]}", g_node);
    expect_line(&e, multi, 5000);
    expect_line(&e, "registered", 5000);
    /* our node is connected to it now */
    otp_term nodes[8];
    char full[320];
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    assert_int_equal(otp_node_connected(g_n, nodes, 8), 1);
    assert_int_equal(nodes[0], otp_atom(full));
    static send_job j;
    j.dest_name = otp_atom("erlbox");
    j.dest_node = otp_atom(full);
    otp_spawn_opts so = {.shard = 1};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, sender_main, &j, &so, &pid, NULL), 0);
    expect_line(&e, "got from_c", 5000);
    char want[400];
    snprintf(want, sizeof want, "nodes [%s]", g_node);
    expect_line(&e, want, 5000);
    reap(&e);
}

/* rpc:call and erpc:call reach registered C functions; others are undef. */
static void test_rpc(void **state)
{
    char sname[64], eval[2048];
    snprintf(sname, sizeof sname, "e5_%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "N = '%s',"
             "io:format(\"rpc ~p~n\", [rpc:call(N, echo, echo, [{hi, 1}])]),"
             "io:format(\"erpc ~p~n\", [erpc:call(N, echo, echo, [<<\"x\">>])]),"
             "io:format(\"undef ~p~n\", [rpc:call(N, nomod, nofun, [1])]),"
             "io:format(\"throw ~p~n\", [catch erpc:call(N, echo, thrower, [t])]),"
             "io:format(\"err ~p~n\", [try erpc:call(N, echo, boom, []) catch error:E -> E "
             "end]),"
             "io:format(\"rpcerr ~p~n\", [rpc:call(N, echo, boom, [])]),"
             "ok = erpc:cast(N, echo, echo, [x]),"
             "io:format(\"after ~p~n\", [rpc:call(N, echo, echo, [done])]),"
             "halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "rpc {hi,1}", 20000);
    expect_line(&e, "erpc <<\"x\">>", 5000);
    expect_line(&e, "undef {badrpc,{'EXIT',{undef,[{nomod,nofun,[1],[]}]}}}", 5000);
    expect_line(&e, "throw t", 5000);
    expect_line(&e, "err {exception,boom_reason,[]}", 5000);
    expect_line(&e, "rpcerr {badrpc,{'EXIT',{boom_reason,[]}}}", 5000);
    expect_line(&e, "after done", 5000);
    reap(&e);
}

/* A process that links to and monitors whoever sends it {watch, Pid},
 * then reports what the loss of that node does to both. */
static _Atomic int g_watch_exit, g_watch_down; /* 1 once seen with noconnection */

static void watcher_main(otp_proc *self, void *arg)
{
    otp_trap_exit(self, true);
    otp_term noconn = otp_atom("noconnection");
    for (;;) {
        otp_term m;
        if (otp_receive(self, NULL, NULL, OTP_INFINITY, &m) < 0)
            return;
        if (otp_tuple_arity(m) == 2 && otp_tuple_get(m, 0) == otp_atom("watch")) {
            otp_term pid = otp_tuple_get(m, 1), ref;
            assert_int_equal(otp_link(self, pid), 0);
            assert_int_equal(otp_monitor(self, pid, &ref), 0);
            otp_send(self, pid, otp_atom("watching"));
        } else if (otp_tuple_arity(m) == 3 && otp_tuple_get(m, 0) == otp_atom("EXIT") &&
                   otp_tuple_get(m, 2) == noconn) {
            atomic_store(&g_watch_exit, 1);
        } else if (otp_tuple_arity(m) == 5 && otp_tuple_get(m, 0) == otp_atom("DOWN") &&
                   otp_tuple_get(m, 4) == noconn) {
            atomic_store(&g_watch_down, 1);
        }
        if (atomic_load(&g_watch_exit) && atomic_load(&g_watch_down))
            return;
    }
}

/* Losing a node breaks links (noconnection) and fires monitors. */
static void test_noconnection(void **state)
{
    otp_spawn_opts so = {.shard = 1, .name = otp_atom("watcher")};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, watcher_main, NULL, &so, &pid, NULL), 0);
    char sname[64], eval[1024];
    snprintf(sname, sizeof sname, "e6_%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "{watcher, '%s'} ! {watch, self()},"
             "receive watching -> io:format(\"watching~n\") after 10000 -> "
             "io:format(\"timeout~n\") end,"
             "timer:sleep(60000).",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "watching", 20000);
    reap(&e); /* SIGKILL: the connection just drops */
    uint64_t deadline = now_ms() + 5000;
    while (!(atomic_load(&g_watch_exit) && atomic_load(&g_watch_down)))
        assert_true(now_ms() < deadline), usleep(1000);
}

/* Garbage on the distribution port costs only that connection. */
static void test_garbage_on_dist_port(void **state)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(otp_node_port(g_n)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char junk[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(send(fd, junk, sizeof junk - 1, 0), (ssize_t)sizeof junk - 1);
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    char buf[16];
    assert_true(recv(fd, buf, sizeof buf, 0) <= 0); /* closed, nothing said */
    close(fd);
    /* a lying length in a send_name: also just that connection */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const unsigned char lie[] = {0, 40, 'N', 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(send(fd, lie, sizeof lie, 0), (ssize_t)sizeof lie);
    close(fd); /* and gone before the rest: the node drops it */
    char sname[64], eval[512];
    snprintf(sname, sizeof sname, "e7_%d", (int)getpid());
    snprintf(eval, sizeof eval, "io:format(\"ping ~p~n\", [net_adm:ping('%s')]), halt().", g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "ping pong", 20000);
    reap(&e);
}

/* A 64 MB binary each way through the echo process. */
static void test_big_message(void **state)
{
    char sname[64], eval[1024];
    snprintf(sname, sizeof sname, "e8_%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "B = crypto:strong_rand_bytes(64 * 1024 * 1024),"
             "{echo, '%s'} ! {self(), B},"
             "receive B -> io:format(\"big ok~n\"); _ -> io:format(\"big wrong~n\") after "
             "30000 -> io:format(\"big timeout~n\") end, halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "big ok", 60000);
    reap(&e);
}

/* Two libotp nodes in one OS process talk to each other (the second is an
 * EPMD client of the first's embedded server). */
static _Atomic int g_pong;
static otp_term g_peer_echo_node;

static void pinger_main(otp_proc *self, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    otp_send(self, OTP_TUPLE(a, otp_atom("echo"), g_peer_echo_node),
             OTP_TUPLE(a, otp_self(self), otp_atom("across")));
    otp_term m;
    if (otp_receive(self, NULL, NULL, 10000, &m) == 0 && m == otp_atom("across"))
        atomic_store(&g_pong, 1);
}

static void test_two_libotp_nodes(void **state)
{
    char nodeb[320];
    snprintf(nodeb, sizeof nodeb, "cnodeb%d@%s", (int)getpid(), g_host);
    otp_runtime_config rc = {.shards = 1, .no_pin = true, .node_name = nodeb};
    otp_runtime *rb;
    assert_int_equal(otp_runtime_new(&rb, &rc), 0);
    assert_int_equal(otp_runtime_start(rb), 0);
    otp_node_config nc = {.cookie = "distcookie", .epmd_port = g_epmd_port};
    otp_node *nb;
    otp_error err;
    assert_int_equal(otp_node_start(rb, &nc, &nb, &err), 0);
    assert_false(otp_epmd_serving(otp_node_epmd(nb)));
    otp_spawn_opts eo = {.name = otp_atom("echo")};
    otp_term pid;
    assert_int_equal(otp_spawn(rb, NULL, echo_main, NULL, &eo, &pid, NULL), 0);
    g_peer_echo_node = otp_atom(nodeb);
    otp_spawn_opts so = {.shard = 0};
    assert_int_equal(otp_spawn(g_rt, NULL, pinger_main, NULL, &so, &pid, NULL), 0);
    uint64_t deadline = now_ms() + 10000;
    while (!atomic_load(&g_pong))
        assert_true(now_ms() < deadline), usleep(1000);
    otp_term nodes[4];
    assert_true(otp_node_connected(nb, nodes, 4) >= 1);
    otp_node_stop(nb);
    otp_runtime_stop(rb);
    otp_runtime_free(rb);
}

/* An Elixir node calls the echo GenServer and rpc's into C. */
static void test_elixir(void **state)
{
    char elixir[512];
    snprintf(elixir, sizeof elixir, "%.*s/elixir", (int)(strrchr(g_erl, '/') - g_erl), g_erl);
    if (access(elixir, X_OK) != 0) {
        printf("SKIP: no elixir next to erl\n");
        skip();
    }
    char sname[64], eval[1024];
    snprintf(sname, sizeof sname, "ex_%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "n = :\"%s\"; IO.inspect(Node.ping(n)); "
             "IO.inspect(GenServer.call({:gs, n}, {:hello, \"from elixir\"})); "
             "IO.inspect(:rpc.call(n, :echo, :echo, [%%{elixir: true}]))",
             g_node);
    char *argv[] = {elixir, "--sname", sname, "--cookie", "distcookie", "-e", eval, NULL};
    child e = child_start(argv);
    expect_line(&e, ":pong", 30000);
    expect_line(&e, "{:pong, {:hello, \"from elixir\"}}", 10000);
    expect_line(&e, "%{elixir: true}", 10000);
    reap(&e);
}

/* global:sync() returns with a visible libotp node in the cluster, and
 * global names still work (dist-protocol.md §6.4). Two Erlang nodes, so
 * global also has a peer of its own kind to sync with. */
static void test_global_sync(void **state)
{
    char s1[64], s2[64], eval[1024], full2[320];
    snprintf(s1, sizeof s1, "g1_%d", (int)getpid());
    snprintf(s2, sizeof s2, "g2_%d", (int)getpid());
    snprintf(full2, sizeof full2, "%s@%s", s2, g_host);
    child e2 =
        erl_start(s2, "distcookie", "io:format(\"up~n\"), receive after 30000 -> ok end, halt().");
    expect_line(&e2, "up", 20000);
    snprintf(eval, sizeof eval,
             "pong = net_adm:ping('%s'), pong = net_adm:ping('%s'),"
             "io:format(\"sync ~p~n\", [global:sync()]),"
             "io:format(\"reg ~p~n\", [global:register_name(gname, self())]),"
             "io:format(\"where ~p~n\", [global:whereis_name(gname) =:= self()]),"
             "io:format(\"sync ~p~n\", [global:sync()]),"
             "halt().",
             g_node, full2);
    child e1 = erl_start(s1, "distcookie", eval);
    expect_line(&e1, "sync ok", 20000);
    expect_line(&e1, "reg yes", 10000);
    expect_line(&e1, "where true", 10000);
    expect_line(&e1, "sync ok", 10000);
    reap(&e1);
    reap(&e2);
}

/* pg: members join on either side and are seen on the other. */
static void member_main(otp_proc *self, void *arg)
{
    otp_term m;
    otp_receive(self, NULL, NULL, 30000, &m); /* until told to go */
}

static size_t pg_count(otp_term group)
{
    otp_arena *a = otp_arena_new();
    otp_term pids = OTP_NIL;
    size_t k = 0;
    if (otp_pg_members(g_n, NULL, group, a, &pids) == 0)
        for (otp_term l = pids; otp_is_cons(l); l = otp_tail(l))
            k++;
    otp_arena_free(a);
    return k;
}

static void test_pg(void **state)
{
    otp_term group = otp_atom("grp");
    otp_spawn_opts so = {.shard = 1};
    otp_term member;
    assert_int_equal(otp_spawn(g_rt, NULL, member_main, NULL, &so, &member, NULL), 0);
    assert_int_equal(otp_pg_join(g_n, NULL, group, member), 0);
    assert_int_equal(pg_count(group), 1);
    char sname[64], eval[1200];
    snprintf(sname, sizeof sname, "p1_%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "N = '%s', pong = net_adm:ping(N), {ok, _} = pg:start_link(),"
             "W = fun W(0, _) -> timeout; W(K, F) -> case F() of true -> ok; false -> "
             "timer:sleep(20), W(K - 1, F) end end,"
             "io:format(\"remote member ~p~n\", [W(250, fun() -> [node(P) || P <- "
             "pg:get_members(grp)] =:= [N] end)]),"
             "ok = pg:join(grp, self()), io:format(\"joined~n\"),"
             "receive leave -> ok after 20000 -> ok end,"
             "ok = pg:leave(grp, self()), io:format(\"left~n\"),"
             "io:format(\"member gone ~p~n\", [W(250, fun() -> pg:get_members(grp) =:= [] "
             "end)]), halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "remote member ok", 20000);
    expect_line(&e, "joined", 5000);
    uint64_t deadline = now_ms() + 5000;
    while (pg_count(group) != 2)
        assert_true(now_ms() < deadline), usleep(10000);
    /* tell the Erlang member to leave: find it among the members */
    char full[320];
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    otp_arena *a = otp_arena_new();
    otp_term pids;
    assert_int_equal(otp_pg_members(g_n, NULL, group, a, &pids), 0);
    for (otp_term l = pids; otp_is_cons(l); l = otp_tail(l))
        if (otp_head(l) != member)
            otp_runtime_send(g_rt, otp_head(l), otp_atom("leave"));
    otp_arena_free(a);
    expect_line(&e, "left", 5000);
    deadline = now_ms() + 5000;
    while (pg_count(group) != 1)
        assert_true(now_ms() < deadline), usleep(10000);
    /* our member exits: it leaves, and the Erlang side sees it go */
    otp_runtime_send(g_rt, member, otp_atom("go"));
    expect_line(&e, "member gone ok", 10000);
    reap(&e);
}

/* Ticks with a short net_ticktime on both sides keep an idle connection
 * up; a peer that goes silent (SIGSTOP) is dropped after about
 * net_ticktime; a connection that never finishes its handshake is closed
 * at the set-up timeout. A node of its own, with short timers. */
static void test_ticks_and_stalls(void **state)
{
    char nodet[320];
    snprintf(nodet, sizeof nodet, "cnodet%d@%s", (int)getpid(), g_host);
    otp_runtime_config rc = {.shards = 1, .no_pin = true, .node_name = nodet};
    otp_runtime *rt;
    assert_int_equal(otp_runtime_new(&rt, &rc), 0);
    assert_int_equal(otp_runtime_start(rt), 0);
    otp_node_config nc = {.cookie = "distcookie",
                          .epmd_port = g_epmd_port,
                          .net_ticktime = 4,
                          .setup_timeout_ms = 1000};
    otp_node *n;
    otp_error err;
    assert_int_equal(otp_node_start(rt, &nc, &n, &err), 0);

    /* a connection that says nothing is closed after the set-up time */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(otp_node_port(n)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    uint64_t t0 = now_ms();
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 5000), 1);
    char buf[8];
    assert_true(recv(fd, buf, sizeof buf, 0) <= 0);
    uint64_t stalled = now_ms() - t0;
    assert_true(stalled >= 900 && stalled < 3000);
    close(fd);

    char sname[64], eval[512], full[320];
    snprintf(sname, sizeof sname, "t1_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    snprintf(eval, sizeof eval,
             "pong = net_adm:ping('%s'), io:format(\"up~n\"), timer:sleep(9000),"
             "io:format(\"still ~p~n\", [nodes()]), timer:sleep(60000).",
             nodet);
    char *argv[] = {g_erl,          "-sname", sname,      "-setcookie", "distcookie", "-kernel",
                    "net_ticktime", "4",      "-noshell", "-eval",      eval,         NULL};
    child e = child_start(argv);
    expect_line(&e, "up", 20000);
    char want[400];
    snprintf(want, sizeof want, "still [%s]", nodet);
    expect_line(&e, want, 15000); /* 9 s idle: ticks kept it */
    otp_term nodes[4];
    assert_int_equal(otp_node_connected(n, nodes, 4), 1);
    /* silence: the node declares the peer down after about net_ticktime */
    kill(e.pid, SIGSTOP);
    t0 = now_ms();
    while (otp_node_connected(n, nodes, 4) != 0)
        assert_true(now_ms() - t0 < 9000), usleep(20000);
    uint64_t down = now_ms() - t0;
    fprintf(stderr, "  silent peer dropped after %llu ms (net_ticktime 4 s)\n",
            (unsigned long long)down);
    assert_true(down >= 3000);
    kill(e.pid, SIGCONT);
    reap(&e);
    otp_node_stop(n);
    otp_runtime_stop(rt);
    otp_runtime_free(rt);
}

/* Explicit connect and disconnect, and monitor_node. */
static _Atomic int g_nodedown;
static otp_term g_watch_node;

static void node_watcher_main(otp_proc *self, void *arg)
{
    /* both requests travel to the node's shard in this order */
    otp_monitor_node(self, g_watch_node, true);
    otp_node_disconnect(g_n, otp_atom_cstr(g_watch_node));
    otp_term m;
    if (otp_receive(self, NULL, NULL, 20000, &m) == 0 && otp_tuple_arity(m) == 2 &&
        otp_tuple_get(m, 0) == otp_atom("nodedown") && otp_tuple_get(m, 1) == g_watch_node)
        atomic_store(&g_nodedown, 1);
}

static void test_connect_disconnect(void **state)
{
    char sname[64], full[320];
    snprintf(sname, sizeof sname, "e9_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    child e = erl_start(sname, "distcookie",
                        "io:format(\"up~n\"), receive after 30000 -> ok end, halt().");
    expect_line(&e, "up", 20000);
    otp_error err;
    assert_int_equal(otp_node_connect(g_n, full, 10000, &err), 0);
    otp_term nodes[8];
    size_t k = otp_node_connected(g_n, nodes, 8);
    bool found = false;
    for (size_t i = 0; i < k && i < 8; i++)
        found |= nodes[i] == otp_atom(full);
    assert_true(found);
    g_watch_node = otp_atom(full);
    otp_term pid;
    otp_spawn_opts so = {.shard = 1};
    assert_int_equal(otp_spawn(g_rt, NULL, node_watcher_main, NULL, &so, &pid, NULL), 0);
    uint64_t deadline = now_ms() + 5000;
    while (!atomic_load(&g_nodedown))
        assert_true(now_ms() < deadline), usleep(1000);
    /* a node nobody runs: the connect fails, with a reason in the log */
    char none[320];
    snprintf(none, sizeof none, "nobody_%d@%s", (int)getpid(), g_host);
    assert_int_equal(otp_node_connect(g_n, none, 3000, &err), -OTP_EIO);
    reap(&e);
}

/* Order between a pair of processes holds across the connection, both
 * ways, with the sender on a shard that is not the connection's. */
static _Atomic int g_order_ok;

static void order_sender_main(otp_proc *self, void *arg)
{
    otp_term m;
    /* {go, ErlPid}: 20000 numbered messages to it, then receive its own */
    if (otp_receive(self, NULL, NULL, 20000, &m) < 0 || otp_tuple_arity(m) != 2)
        return;
    otp_arena *keep = otp_arena_new(), *a = otp_proc_arena(self);
    otp_term peer = otp_copy(keep, otp_tuple_get(m, 1)); /* outlives the resets below */
    for (int64_t i = 1; i <= 20000; i++) {
        otp_send(self, peer, OTP_TUPLE(a, otp_atom("n"), otp_small(i)));
        if (i % 256 == 0) {
            otp_arena_reset(a);
            otp_yield(self);
        }
    }
    otp_send(self, peer, otp_atom("done"));
    int64_t want = 1;
    for (;;) {
        if (otp_receive(self, NULL, NULL, 20000, &m) < 0)
            break;
        if (m == otp_atom("done"))
            break;
        int64_t v;
        if (otp_tuple_arity(m) != 2 || otp_get_int64(otp_tuple_get(m, 1), &v) < 0 || v != want)
            break;
        want++;
        otp_arena_reset(a);
    }
    if (want == 20001)
        atomic_store(&g_order_ok, 1);
    otp_arena_free(keep);
}

static void test_order_both_ways(void **state)
{
    otp_spawn_opts so = {.shard = 1, .name = otp_atom("order")}; /* home is shard 0 */
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, order_sender_main, NULL, &so, &pid, NULL), 0);
    char sname[64], eval[1200];
    snprintf(sname, sizeof sname, "o1_%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "N = '%s', {order, N} ! {go, self()},"
             "R = fun R(I) -> receive {n, I} -> R(I + 1); done -> I; Other -> {bad, I, Other} "
             "after 20000 -> timeout end end,"
             "io:format(\"received ~p~n\", [R(1)]),"
             "[{order, N} ! {n, I} || I <- lists:seq(1, 20000)], {order, N} ! done,"
             "timer:sleep(2000), halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "received 20001", 30000);
    uint64_t deadline = now_ms() + 20000;
    while (!atomic_load(&g_order_ok))
        assert_true(now_ms() < deadline), usleep(1000);
    reap(&e);
}

/* A send to a node we have no connection to connects to it. */
static void test_first_send_connects(void **state)
{
    char sname[64], eval[1024], full[320];
    snprintf(sname, sizeof sname, "e2_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    snprintf(eval, sizeof eval,
             "register(box, self()), io:format(\"ready~n\"),"
             "receive {from_c, P} -> io:format(\"got ~p~n\", [node(P)]) after 15000 -> "
             "io:format(\"timeout~n\") end, halt().");
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "ready", 20000);
    static send_job j;
    j.dest_name = otp_atom("box");
    j.dest_node = otp_atom(full);
    otp_spawn_opts so = {.shard = 0};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, sender_main, &j, &so, &pid, NULL), 0);
    char want[400];
    snprintf(want, sizeof want, "got %s", g_node);
    expect_line(&e, want, 10000);
    reap(&e);
}

/* A node with the wrong cookie is refused; the node serves the next one. */
static void test_wrong_cookie(void **state)
{
    char sname[64], eval[1024];
    snprintf(sname, sizeof sname, "e3_%d", (int)getpid());
    snprintf(eval, sizeof eval, "io:format(\"ping ~p~n\", [net_adm:ping('%s')]), halt().", g_node);
    child e = erl_start(sname, "wrongcookie", eval);
    expect_line(&e, "ping pang", 20000);
    reap(&e);
    snprintf(sname, sizeof sname, "e4_%d", (int)getpid());
    e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "ping pong", 20000);
    reap(&e);
}

int main(void)
{
    if (!find_erl()) {
        printf("SKIP: test_dist_erl needs erl on PATH\n");
        return 77;
    }
    gethostname(g_host, sizeof g_host);
    g_host[strcspn(g_host, ".")] = 0;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_erl_pings_sends_calls),
        cmocka_unit_test(test_rpc),
        cmocka_unit_test(test_noconnection),
        cmocka_unit_test(test_garbage_on_dist_port),
        cmocka_unit_test(test_big_message),
        cmocka_unit_test(test_two_libotp_nodes),
        cmocka_unit_test(test_elixir),
        cmocka_unit_test(test_global_sync),
        cmocka_unit_test(test_pg),
        cmocka_unit_test(test_ticks_and_stalls),
        cmocka_unit_test(test_connect_disconnect),
        cmocka_unit_test(test_order_both_ways),
        cmocka_unit_test(test_first_send_connects),
        cmocka_unit_test(test_wrong_cookie),
    };
    return cmocka_run_group_tests_name("distribution with erl", tests, setup, teardown);
}
