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
    otp_term ms;
    if (otp_match("{slow, Ms}", req, &ms, 1) == 0) { /* a reply that comes late */
        int64_t v = 0;
        otp_get_int64(ms, &v);
        otp_sleep(self, (uint64_t)v);
    }
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
    /* otp_rpc_call between libotp nodes goes through our rex */
    assert_int_equal(otp_node_register_fn(nb, "echo", "echo", 1, rpc_echo, NULL), 0);
    otp_arena *a = otp_arena_new();
    otp_term res;
    assert_int_equal(otp_rpc_call(g_n, NULL, otp_atom(nodeb), otp_atom("echo"), otp_atom("echo"),
                                  otp_parse_str(a, "[{x, 1}]"), 5000, a, &res),
                     0);
    assert_string_equal(otp_sprint(a, res), "{x,1}");
    assert_int_equal(otp_rpc_call(g_n, NULL, otp_atom(nodeb), otp_atom("echo"), otp_atom("nope"),
                                  OTP_NIL, 5000, a, &res),
                     0);
    assert_string_equal(otp_sprint(a, res), "{badrpc,{'EXIT',{undef,[{echo,nope,[],[]}]}}}");
    otp_arena_free(a);
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
    if (otp_pg_members(g_n, NULL, OTP_NONE, group, a, &pids) == 0)
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
    assert_int_equal(otp_pg_join(g_n, NULL, OTP_NONE, group, member), 0);
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
    assert_int_equal(otp_pg_members(g_n, NULL, OTP_NONE, group, a, &pids), 0);
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

/* rpc from C into an Erlang node (otp_rpc_call), from a thread and from a
 * process, with every way rpc:call ends; and our own rex, reached the ways
 * pre-erpc callers and erl_interface reach Erlang's. */
static _Atomic int g_rpc_proc_ok;
static otp_term g_rpc_target;

static void rpc_caller_main(otp_proc *self, void *arg)
{
    otp_node *n = arg;
    otp_arena *a = otp_proc_arena(self);
    otp_term r;
    int rc = otp_rpc_call(n, self, g_rpc_target, otp_atom("erlang"), otp_atom("node"), OTP_NIL,
                          5000, NULL, &r);
    atomic_store(&g_rpc_proc_ok, rc == 0 && r == g_rpc_target ? 1 : -1);
    (void)a;
}

static void expect_rpc(otp_term node, const char *m, const char *f, const char *args,
                       uint64_t timeout, const char *pattern)
{
    otp_arena *a = otp_arena_new();
    otp_term r = OTP_NONE;
    assert_int_equal(otp_rpc_call(g_n, NULL, node, otp_atom(m), otp_atom(f), otp_parse_str(a, args),
                                  timeout, a, &r),
                     0);
    otp_term binds[2];
    if (otp_match(pattern, r, binds, 2) != 0)
        fail_msg("rpc %s:%s%s gave %s, not %s", m, f, args, otp_sprint(a, r), pattern);
    otp_arena_free(a);
}

static void test_rpc_from_c_and_rex(void **state)
{
    char sname[64], eval[2048], full[320];
    snprintf(sname, sizeof sname, "r1_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    snprintf(eval, sizeof eval,
             "N = '%s', pong = net_adm:ping(N),"
             "io:format(\"rex ~p~n\", [gen_server:call({rex, N}, {call, echo, echo, [r1], user})]),"
             "{rex, N} ! {self(), {call, echo, echo, [r2], user}},"
             "receive {rex, R2} -> io:format(\"eirex ~p~n\", [R2]) after 5000 -> "
             "io:format(\"eirex timeout~n\") end,"
             "io:format(\"rexundef ~p~n\", [gen_server:call({rex, N}, {call, nomod, f, [1], "
             "user})]),"
             "io:format(\"rexerr ~p~n\", [gen_server:call({rex, N}, {call, echo, boom, [], "
             "user})]),"
             "io:format(\"rexthrow ~p~n\", [gen_server:call({rex, N}, {call, echo, thrower, "
             "[t], user})]),"
             "gen_server:cast({rex, N}, {cast, echo, echo, [c], user}),"
             "io:format(\"up~n\"), receive after 30000 -> ok end, halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "rex r1", 20000);
    expect_line(&e, "eirex r2", 5000);
    expect_line(&e, "rexundef {badrpc,{'EXIT',{undef,[{nomod,f,[1],[]}]}}}", 5000);
    expect_line(&e, "rexerr {badrpc,{'EXIT',{boom_reason,[{echo,boom,0,[]}]}}}", 5000);
    expect_line(&e, "rexthrow t", 5000);
    expect_line(&e, "up", 5000);
    otp_term node = otp_atom(full);
    expect_rpc(node, "lists", "reverse", "[[1,2,3]]", 5000, "[3,2,1]");
    expect_rpc(node, "erlang", "throw", "[t]", 5000, "t");
    expect_rpc(node, "erlang", "error", "[oops]", 5000, "{badrpc, {'EXIT', {oops, _}}}");
    expect_rpc(node, "erlang", "exit", "[bye]", 5000, "{badrpc, {'EXIT', bye}}");
    expect_rpc(node, "nomod", "f", "[]", 5000, "{badrpc, {'EXIT', {undef, _}}}");
    expect_rpc(node, "timer", "sleep", "[3000]", 200, "{badrpc, timeout}");
    char nobody[320];
    snprintf(nobody, sizeof nobody, "nobody%d@%s", (int)getpid(), g_host);
    expect_rpc(otp_atom(nobody), "erlang", "node", "[]", 5000, "{badrpc, nodedown}");
    g_rpc_target = node;
    otp_spawn_opts so = {.shard = 1};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, rpc_caller_main, g_n, &so, &pid, NULL), 0);
    uint64_t deadline = now_ms() + 10000;
    while (!atomic_load(&g_rpc_proc_ok))
        assert_true(now_ms() < deadline), usleep(1000);
    assert_int_equal(atomic_load(&g_rpc_proc_ok), 1);
    /* bad arguments are the caller's error, not a badrpc */
    otp_arena *a = otp_arena_new();
    otp_term r;
    assert_int_equal(
        otp_rpc_call(g_n, NULL, node, otp_small(1), otp_atom("f"), OTP_NIL, 100, a, &r),
        -OTP_EBADARG);
    otp_arena_free(a);
    reap(&e);
}

/* monitor_nodes: nodeup and nodedown for a visible peer, not for a hidden
 * one. */
static _Atomic int g_mn_state; /* 1 subscribed, 2 nodeup seen, 3 nodedown seen, -1 wrong */
static otp_term g_mn_node;

static void nodes_watcher_main(otp_proc *self, void *arg)
{
    assert_int_equal(otp_monitor_nodes(self, true), 0);
    atomic_store(&g_mn_state, 1);
    for (;;) {
        otp_term m;
        if (otp_receive(self, NULL, NULL, 30000, &m) < 0)
            return;
        otp_term b[1];
        if (otp_match("{nodeup, N}", m, b, 1) == 0 && atomic_load(&g_mn_state) == 1)
            atomic_store(&g_mn_state, b[0] == g_mn_node ? 2 : -1);
        else if (otp_match("{nodedown, N}", m, b, 1) == 0 && atomic_load(&g_mn_state) == 2) {
            atomic_store(&g_mn_state, b[0] == g_mn_node ? 3 : -1);
            otp_monitor_nodes(self, false);
            return;
        } else
            atomic_store(&g_mn_state, -1);
        otp_arena_reset(otp_proc_arena(self));
    }
}

static void wait_state(_Atomic int *v, int want, unsigned ms)
{
    uint64_t deadline = now_ms() + ms;
    while (atomic_load(v) != want) {
        assert_true(atomic_load(v) >= 0);
        assert_true(now_ms() < deadline);
        usleep(1000);
    }
}

static void test_monitor_nodes(void **state)
{
    char hs[64], vs[64], full[320];
    snprintf(hs, sizeof hs, "h1_%d", (int)getpid());
    snprintf(vs, sizeof vs, "v1_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", vs, g_host);
    g_mn_node = otp_atom(full);
    otp_spawn_opts so = {.shard = 1};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, nodes_watcher_main, NULL, &so, &pid, NULL), 0);
    wait_state(&g_mn_state, 1, 5000);
    /* a hidden node comes and goes: nothing */
    char eval[400];
    snprintf(eval, sizeof eval, "pong = net_adm:ping('%s'), io:format(\"hidden up~n\"), halt().",
             g_node);
    char *hargv[] = {g_erl,     "-sname",   hs,      "-setcookie", "distcookie",
                     "-hidden", "-noshell", "-eval", eval,         NULL};
    child h = child_start(hargv);
    expect_line(&h, "hidden up", 20000);
    reap(&h);
    /* a visible one: nodeup, then nodedown when it halts */
    snprintf(eval, sizeof eval,
             "pong = net_adm:ping('%s'), io:format(\"visible up~n\"), "
             "receive after 1000 -> ok end, halt().",
             g_node);
    child v = erl_start(vs, "distcookie", eval);
    expect_line(&v, "visible up", 20000);
    wait_state(&g_mn_state, 2, 5000);
    reap(&v);
    wait_state(&g_mn_state, 3, 10000);
}

/* Phoenix.PubSub-style: a scope other than pg, started on both sides, and
 * a C member that takes {forward_to_local, ...} as PG2Worker does. */
static _Atomic int g_fwd_seen;

static void pubsub_worker_main(otp_proc *self, void *arg)
{
    otp_term m;
    while (otp_receive(self, NULL, NULL, 30000, &m) == 0) {
        otp_term b[2];
        if (otp_match("{forward_to_local, Topic, Msg, _}", m, b, 2) == 0 &&
            b[1] == otp_atom("hello")) {
            atomic_store(&g_fwd_seen, 1);
            return;
        }
    }
}

static void test_pubsub_scope(void **state)
{
    otp_term scope = otp_atom("Elixir.Phoenix.PubSub");
    otp_term group = otp_atom("Elixir.MyApp.PubSub");
    otp_term spid;
    assert_int_equal(otp_pg_start_scope(g_n, scope, &spid), 0);
    assert_int_equal(otp_pg_start_scope(g_n, scope, NULL), -OTP_EEXIST);
    otp_spawn_opts so = {.shard = 1};
    otp_term member;
    assert_int_equal(otp_spawn(g_rt, NULL, pubsub_worker_main, NULL, &so, &member, NULL), 0);
    assert_int_equal(otp_pg_join(g_n, NULL, scope, group, member), 0);
    /* an unknown scope is no process */
    assert_int_equal(otp_pg_join(g_n, NULL, otp_atom("noscope"), group, member), -OTP_ENOPROC);
    char sname[64], eval[1400];
    snprintf(sname, sizeof sname, "ps_%d", (int)getpid());
    /* The Erlang node starts its scope first and connects afterwards: the
     * scopes find each other through nodeup/discover, as pg's do. */
    snprintf(eval, sizeof eval,
             "S = 'Elixir.Phoenix.PubSub', G = 'Elixir.MyApp.PubSub', N = '%s',"
             "{ok, _} = pg:start_link(S), ok = pg:join(S, G, self()),"
             "pong = net_adm:ping(N),"
             "W = fun W(0, _) -> timeout; W(K, F) -> case F() of true -> ok; false -> "
             "timer:sleep(20), W(K - 1, F) end end,"
             "io:format(\"remote ~p~n\", [W(250, fun() -> [P || P <- pg:get_members(S, G), "
             "node(P) =:= N] =/= [] end)]),"
             "[P ! {forward_to_local, <<\"topic\">>, hello, 'Elixir.Phoenix.PubSub'} || P <- "
             "pg:get_members(S, G), node(P) =:= N],"
             "receive after 20000 -> ok end, halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "remote ok", 20000);
    uint64_t deadline = now_ms() + 10000;
    while (!atomic_load(&g_fwd_seen))
        assert_true(now_ms() < deadline), usleep(1000);
    /* and we see the Erlang member */
    deadline = now_ms() + 5000;
    for (;;) {
        otp_arena *a = otp_arena_new();
        otp_term pids;
        size_t k = 0;
        if (otp_pg_members(g_n, NULL, scope, group, a, &pids) == 0)
            for (otp_term l = pids; otp_is_cons(l); l = otp_tail(l))
                k += otp_head(l) != member;
        otp_arena_free(a);
        if (k == 1)
            break;
        assert_true(now_ms() < deadline);
        usleep(10000);
    }
    reap(&e);
}

/* A long-named node (-name, name@127.0.0.1) whose listen port comes from a
 * range whose first port is taken; erl -name talks to it both ways. */
static void test_long_names_and_port_range(void **state)
{
    /* hold the range's first port */
    int blocker = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(blocker, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(blocker, 1), 0);
    getsockname(blocker, (struct sockaddr *)&sa, &sl);
    uint16_t first = ntohs(sa.sin_port);
    char nodel[320], el[64], elfull[320];
    snprintf(nodel, sizeof nodel, "cl%d@127.0.0.1", (int)getpid());
    snprintf(el, sizeof el, "el%d@127.0.0.1", (int)getpid());
    snprintf(elfull, sizeof elfull, "%s", el);
    otp_runtime_config rc = {.shards = 1, .no_pin = true, .node_name = nodel};
    otp_runtime *rl;
    assert_int_equal(otp_runtime_new(&rl, &rc), 0);
    assert_int_equal(otp_runtime_start(rl), 0);
    otp_node_config nc = {.cookie = "distcookie",
                          .epmd_port = g_epmd_port,
                          .port = first,
                          .port_max = (uint16_t)(first + 20)};
    otp_node *nl;
    otp_error err;
    int r = otp_node_start(rl, &nc, &nl, &err);
    if (r < 0)
        fail_msg("otp_node_start: %s", err.message);
    assert_true(otp_node_port(nl) > first && otp_node_port(nl) <= first + 20);
    otp_spawn_opts eo = {.name = otp_atom("echo")};
    otp_term pid;
    assert_int_equal(otp_spawn(rl, NULL, echo_main, NULL, &eo, &pid, NULL), 0);
    char eval[800];
    snprintf(eval, sizeof eval,
             "N = '%s', io:format(\"ping ~p~n\", [net_adm:ping(N)]),"
             "{echo, N} ! {self(), long},"
             "receive M -> io:format(\"echo ~p~n\", [M]) after 5000 -> io:format(\"echo "
             "timeout~n\") end,"
             "receive after 20000 -> ok end, halt().",
             nodel);
    char *argv[] = {g_erl,      "-name", el,   "-setcookie", "distcookie",
                    "-noshell", "-eval", eval, NULL};
    child e = child_start(argv);
    expect_line(&e, "ping pong", 20000);
    expect_line(&e, "echo long", 5000);
    otp_arena *a = otp_arena_new();
    otp_term res;
    assert_int_equal(otp_rpc_call(nl, NULL, otp_atom(elfull), otp_atom("erlang"), otp_atom("node"),
                                  OTP_NIL, 5000, a, &res),
                     0);
    assert_int_equal(res, otp_atom(elfull));
    otp_arena_free(a);
    reap(&e);
    otp_node_stop(nl);
    otp_runtime_stop(rl);
    otp_runtime_free(rl);
    close(blocker);
}

/* Fragments on send: frames over 64 KiB go out as fragments, and while
 * they do, frames of other senders may pass them but never frames of the
 * same sender. One C process sends big and small messages alternately,
 * another streams small ones; Erlang checks each sender's order and every
 * byte. */
static otp_term g_frag_node;
#define FRAG_DEST(a) OTP_TUPLE((a), otp_atom("sink"), g_frag_node)

static void frag_big_main(otp_proc *self, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    for (int i = 0; i < 8; i++) {
        size_t len = i % 2 ? 10 : (size_t)(300000 + i * 70001);
        uint8_t *p = malloc(len);
        for (size_t k = 0; k < len; k++)
            p[k] = (uint8_t)(k * 7 + i);
        otp_send(self, FRAG_DEST(a),
                 OTP_TUPLE(a, otp_atom("a"), otp_small(i), otp_binary(a, p, len)));
        free(p);
        otp_arena_reset(a);
    }
}

static void frag_small_main(otp_proc *self, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    for (int i = 0; i < 200; i++) {
        otp_send(self, FRAG_DEST(a), OTP_TUPLE(a, otp_atom("b"), otp_small(i), otp_small(i)));
        otp_arena_reset(a);
    }
}

static void test_fragments_on_send(void **state)
{
    char sname[64], eval[1600], full[320];
    snprintf(sname, sizeof sname, "f1_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    snprintf(eval, sizeof eval,
             "register(sink, self()), pong = net_adm:ping('%s'), io:format(\"ready~n\"),"
             "Bin = fun(I) -> L = case I rem 2 of 1 -> 10; 0 -> 300000 + I * 70001 end,"
             "  list_to_binary([(K * 7 + I) band 255 || K <- lists:seq(0, L - 1)]) end,"
             "Loop = fun Loop(A, B) when A =:= 8, B =:= 200 -> ok;"
             "  Loop(A, B) -> receive {a, A, X} -> case X =:= Bin(A) of true -> Loop(A + 1, B);"
             "  false -> {bad_bin, A} end;"
             "  {b, B, B} -> Loop(A, B + 1);"
             "  Other -> {out_of_order, A, B, element(1, Other), element(2, Other)}"
             "  after 20000 -> {timeout, A, B} end end,"
             "io:format(\"frags ~p~n\", [Loop(0, 0)]), halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "ready", 20000);
    g_frag_node = otp_atom(full);
    otp_spawn_opts so0 = {.shard = 0}, so1 = {.shard = 1};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, frag_big_main, NULL, &so0, &pid, NULL), 0);
    assert_int_equal(otp_spawn(g_rt, NULL, frag_small_main, NULL, &so1, &pid, NULL), 0);
    expect_line(&e, "frags ok", 30000);
    reap(&e);
}

/* Links and monitors across nodes that come and go all a process's life
 * keep its memory bounded (the remote terms they keep are compacted). */
static _Atomic size_t g_churn_mem[2];
static _Atomic int g_churn_clean;
static otp_term g_churn_node;

static size_t self_memory(otp_proc *self)
{
    otp_proc_info info;
    if (otp_process_info(otp_proc_runtime(self), self, otp_self(self), &info) < 0)
        return 0;
    return info.memory;
}

static void churner_main(otp_proc *self, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    otp_term m;
    if (otp_receive(self, NULL, NULL, 20000, &m) < 0) /* the Erlang pid */
        return;
    otp_arena *own = otp_arena_new();
    otp_term epid = otp_copy(own, m);
    for (int i = 1; i <= 3000; i++) {
        otp_arena_reset(a);
        otp_term ref;
        int r1 = otp_monitor(self, OTP_TUPLE(a, otp_atom("churn"), g_churn_node), &ref);
        int r2 = r1 == 0 ? otp_demonitor(self, ref, 0) - 1 : r1; /* 1: it was active */
        int r3 = otp_link(self, epid);
        int r4 = otp_unlink(self, epid);
        if (r1 || r2 || r3 || r4) {
            fprintf(stderr, "churn round %d: %d %d %d %d\n", i, r1, r2, r3, r4);
            break;
        }
        if (i == 300)
            atomic_store(&g_churn_mem[0], self_memory(self));
        if (i == 3000)
            atomic_store(&g_churn_mem[1], self_memory(self));
    }
    otp_send(self, epid, otp_atom("done"));
    otp_receive(self, NULL, NULL, 20000, &m);
    /* every link and monitor gone both ways (the DEMONITOR_Ps may still be
     * on their way from the connection's shard) */
    for (int i = 0; i < 250; i++) {
        otp_proc_info info;
        if (otp_process_info(otp_proc_runtime(self), self, otp_self(self), &info) == 0 &&
            info.links == 0 && info.monitors == 0 && info.monitored_by == 0) {
            atomic_store(&g_churn_clean, 1);
            break;
        }
        otp_receive(self, NULL, NULL, 20, &m);
    }
    otp_arena_free(own);
}

static void test_remote_link_monitor_churn(void **state)
{
    char sname[64], eval[800], full[320];
    snprintf(sname, sizeof sname, "m1_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    g_churn_node = otp_atom(full);
    otp_spawn_opts so = {.shard = 1, .name = otp_atom("churner")};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, churner_main, NULL, &so, &pid, NULL), 0);
    snprintf(eval, sizeof eval,
             /* connected first: OTP 25 drops a DEMONITOR_P made while the
              * connection is still pending, between Erlang nodes too */
             "register(churn, self()), N = '%s', pong = net_adm:ping(N), {churner, N} ! self(),"
             "[demonitor(monitor(process, {churner, N})) || _ <- lists:seq(1, 3000)],"
             "receive done -> io:format(\"churned~n\") after 30000 -> io:format(\"timeout~n\") "
             "end, halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "churned", 30000);
    size_t m300 = atomic_load(&g_churn_mem[0]), m3000 = atomic_load(&g_churn_mem[1]);
    printf("  process memory after 300 rounds %zu, after 3000 %zu\n", m300, m3000);
    assert_true(m300 > 0);
    assert_true(m3000 < m300 + 32768);
    otp_runtime_send(g_rt, pid, otp_atom("go"));
    uint64_t deadline = now_ms() + 5000;
    while (!atomic_load(&g_churn_clean))
        assert_true(now_ms() < deadline), usleep(1000);
    reap(&e);
}

/* Aliases across nodes: Erlang sends to an alias of ours (ALIAS_SEND) and
 * it arrives until we unalias; an Erlang caller that timed out does not get
 * our late reply (we answer an [alias|Ref] tag through the alias). */
static _Atomic int g_alias_ok;
static otp_term g_alias_node;

static void alias_proc_main(otp_proc *self, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    otp_term alias, m;
    if (otp_alias(self, OTP_ALIAS_EXPLICIT, &alias) < 0)
        return;
    otp_term box = OTP_TUPLE(a, otp_atom("aliaser"), g_alias_node);
    otp_send(self, box, OTP_TUPLE(a, otp_atom("alias"), alias, otp_self(self)));
    if (otp_receive(self, NULL, NULL, 10000, &m) < 0 || m != otp_atom("via_alias"))
        return;
    otp_unalias(self, alias);
    otp_send(self, box, otp_atom("unaliased"));
    /* Erlang sends `late` to the alias, then `after_late` to the pid */
    if (otp_receive(self, NULL, NULL, 10000, &m) < 0 || m != otp_atom("after_late"))
        return;
    atomic_store(&g_alias_ok, 1);
}

static void test_aliases_across_nodes(void **state)
{
    char sname[64], eval[1600], full[320];
    snprintf(sname, sizeof sname, "a1_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    g_alias_node = otp_atom(full);
    snprintf(eval, sizeof eval,
             "register(aliaser, self()), N = '%s', pong = net_adm:ping(N), io:format(\"ready~n\"),"
             "receive {alias, A, P} -> A ! via_alias,"
             "  receive unaliased -> A ! late, P ! after_late end end,"
             "io:format(\"timeout ~p~n\", [element(1, element(2, catch gen_server:call({gs, N}, "
             "{slow, 300}, 50)))]),"
             "timer:sleep(600),"
             "io:format(\"mailbox ~p~n\", [receive M -> {stray, M} after 0 -> clean end]),"
             "io:format(\"call ~p~n\", [gen_server:call({gs, N}, {slow, 10})]),"
             "halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "ready", 20000);
    otp_spawn_opts so = {.shard = 1};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, alias_proc_main, NULL, &so, &pid, NULL), 0);
    expect_line(&e, "timeout timeout", 10000);
    expect_line(&e, "mailbox clean", 5000);
    expect_line(&e, "call {pong,{slow,10}}", 5000);
    uint64_t deadline = now_ms() + 5000;
    while (!atomic_load(&g_alias_ok))
        assert_true(now_ms() < deadline), usleep(1000);
    reap(&e);
}

/* busy_dist_port: toward a peer that stops reading, a sender waits once
 * about dist_buf_busy_limit bytes are queued (the node's memory stays
 * bounded); when the peer reads again every message arrives, in order. */
static _Atomic int g_busy_sent;
static otp_term g_busy_node;
#define BUSY_MSGS 200
#define BUSY_SIZE (256 * 1024)

static void busy_sender_main(otp_proc *self, void *arg)
{
    otp_arena *a = otp_proc_arena(self);
    uint8_t *p = calloc(1, BUSY_SIZE);
    for (int i = 0; i < BUSY_MSGS; i++) {
        otp_arena_reset(a);
        p[0] = (uint8_t)i;
        otp_send(self, OTP_TUPLE(a, otp_atom("sink"), g_busy_node),
                 OTP_TUPLE(a, otp_atom("big"), otp_small(i), otp_binary(a, p, BUSY_SIZE)));
        atomic_fetch_add(&g_busy_sent, 1);
    }
    free(p);
}

static void test_busy_dist_port(void **state)
{
    char sname[64], eval[900], full[320];
    snprintf(sname, sizeof sname, "b1_%d", (int)getpid());
    snprintf(full, sizeof full, "%s@%s", sname, g_host);
    g_busy_node = otp_atom(full);
    snprintf(eval, sizeof eval,
             "register(sink, self()), pong = net_adm:ping('%s'), io:format(\"ready~n\"),"
             "L = fun L(%d) -> ok; L(I) -> receive {big, I, <<I, _/binary>>} -> L(I + 1);"
             "  Other -> {wrong, I, element(2, Other)} after 30000 -> {timeout, I} end end,"
             /* output first: halt() can beat the io server to stdout */
             "io:format(\"got ~p~n\", [L(0)]), timer:sleep(500), halt().",
             g_node, BUSY_MSGS);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "ready", 20000);
    kill(e.pid, SIGSTOP);
    otp_spawn_opts so = {.shard = 1};
    otp_term pid;
    assert_int_equal(otp_spawn(g_rt, NULL, busy_sender_main, NULL, &so, &pid, NULL), 0);
    /* wait until the sender stops making progress */
    uint64_t deadline = now_ms() + 15000, since = now_ms();
    int last = -1;
    while (now_ms() - since < 500) {
        assert_true(now_ms() < deadline);
        int v = atomic_load(&g_busy_sent);
        if (v != last) {
            last = v;
            since = now_ms();
        }
        size_t q;
        assert_int_equal(otp_node_queued(g_n, full, &q), 0);
        /* the limit, plus the one frame that crossed it */
        assert_true(q <= 1024 * 1024 + BUSY_SIZE + 4096);
        usleep(10000);
    }
    printf("  sender held at %d of %d messages (the rest of what went is in socket buffers)\n",
           last, BUSY_MSGS);
    assert_true(last < BUSY_MSGS);
    kill(e.pid, SIGCONT);
    expect_line(&e, "got ok", 30000);
    assert_int_equal(atomic_load(&g_busy_sent), BUSY_MSGS);
    reap(&e);
}

/* What tools ask of a node: erlang's BIFs by rpc (node, nodes, whereis,
 * registered, is_process_alive, process_info) and sys's requests to a
 * GenServer (get_state, get_status; others answered at once, not left to
 * time out). */
static void test_rpc_bifs_and_sys(void **state)
{
    char sname[64], eval[2600];
    snprintf(sname, sizeof sname, "s1_%d", (int)getpid());
    snprintf(eval, sizeof eval,
             "N = '%s', pong = net_adm:ping(N),"
             "R = fun(F, A) -> rpc:call(N, erlang, F, A) end,"
             "io:format(\"node ~p~n\", [R(node, []) =:= N]),"
             "io:format(\"nodes ~p~n\", [lists:member(node(), R(nodes, []))]),"
             "io:format(\"nodes1 ~p~n\", [{R(nodes, [this]) =:= [N], "
             "lists:member(node(), R(nodes, [connected])), R(nodes, [hidden])}]),"
             "P = R(whereis, [gs]),"
             "io:format(\"whereis ~p~n\", [{is_pid(P), node(P) =:= N, R(whereis, [nope])}]),"
             "io:format(\"registered ~p~n\", [lists:member(gs, R(registered, []))]),"
             "io:format(\"alive ~p~n\", [R(is_process_alive, [P])]),"
             "io:format(\"pinfo ~p~n\", [R(process_info, [P, registered_name])]),"
             "io:format(\"pinfo2 ~p~n\", [R(process_info, [P, [status, message_queue_len]])]),"
             "io:format(\"pinfo1 ~p~n\", [lists:keyfind(registered_name, 1, R(process_info, "
             "[P]))]),"
             "io:format(\"remote pid ~p~n\", [element(1, element(2, R(is_process_alive, "
             "[self()])))]),"
             "io:format(\"get_state ~p~n\", [sys:get_state({gs, N}, 2000)]),"
             "{status, P, {module, gen_server}, [_, running, _, _, Misc]} = sys:get_status({gs, "
             "N}, 2000),"
             "io:format(\"get_status ~p~n\", [lists:keyfind(header, 1, Misc)]),"
             "T0 = erlang:monotonic_time(millisecond),"
             "S = (catch sys:suspend({gs, N}, 2000)),"
             "io:format(\"suspend ~p ~p~n\", [element(1, S), erlang:monotonic_time(millisecond) - "
             "T0 < 1000]),"
             "timer:sleep(300), halt().",
             g_node);
    child e = erl_start(sname, "distcookie", eval);
    expect_line(&e, "node true", 20000);
    expect_line(&e, "nodes true", 5000);
    expect_line(&e, "nodes1 {true,true,[]}", 5000);
    expect_line(&e, "whereis {true,true,undefined}", 5000);
    expect_line(&e, "registered true", 5000);
    expect_line(&e, "alive true", 5000);
    expect_line(&e, "pinfo {registered_name,gs}", 5000);
    expect_line(&e, "pinfo2 [{status,waiting},{message_queue_len,0}]", 5000);
    expect_line(&e, "pinfo1 {registered_name,gs}", 5000);
    expect_line(&e, "remote pid 'EXIT'", 5000);
    expect_line(&e, "get_state undefined", 5000);
    expect_line(&e, "get_status {header,\"Status for generic server gs\"}", 5000);
    expect_line(&e, "suspend error true", 5000);
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
        cmocka_unit_test(test_fragments_on_send),
        cmocka_unit_test(test_two_libotp_nodes),
        cmocka_unit_test(test_elixir),
        cmocka_unit_test(test_global_sync),
        cmocka_unit_test(test_pg),
        cmocka_unit_test(test_rpc_from_c_and_rex),
        cmocka_unit_test(test_monitor_nodes),
        cmocka_unit_test(test_pubsub_scope),
        cmocka_unit_test(test_long_names_and_port_range),
        cmocka_unit_test(test_remote_link_monitor_churn),
        cmocka_unit_test(test_aliases_across_nodes),
        cmocka_unit_test(test_busy_dist_port),
        cmocka_unit_test(test_rpc_bifs_and_sys),
        cmocka_unit_test(test_ticks_and_stalls),
        cmocka_unit_test(test_connect_disconnect),
        cmocka_unit_test(test_order_both_ways),
        cmocka_unit_test(test_first_send_connects),
        cmocka_unit_test(test_wrong_cookie),
    };
    return cmocka_run_group_tests_name("distribution with erl", tests, setup, teardown);
}
