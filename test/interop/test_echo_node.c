/* test_echo_node.c — build/bin/echo_node against a real erl node, the
 * whole contract of the example: ping, echo (call, cast, plain message),
 * echo:echo/1 through rpc and erpc, and lab's process semantics across the
 * two nodes (links both ways, exit signals, kill, monitors both ways,
 * gen_server calls from C to Erlang servers, noproc); then SIGTERM stops
 * the node cleanly.
 */
/* otp-test: threads */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "interop/harness.h"

static char g_erl[512], g_bin[512], g_host[256];

static void expect_line(child *c, const char *want, unsigned timeout_ms)
{
    expect_line_in(c, want, timeout_ms, true);
}

static const char script[] =
    "N = '%s',"
    "io:format(\"ping ~p~n\", [net_adm:ping(N)]),"
    "io:format(\"call ~p~n\", [gen_server:call({echo, N}, {hello, [1,2], <<\"b\">>})]),"
    "gen_server:cast({echo, N}, {reply_to, self(), casted}),"
    "receive casted -> io:format(\"cast ok~n\") after 5000 -> io:format(\"cast timeout~n\") end,"
    "{echo, N} ! {self(), plain},"
    "receive plain -> io:format(\"plain ok~n\") after 5000 -> io:format(\"plain timeout~n\") end,"
    "io:format(\"rpc ~p~n\", [rpc:call(N, echo, echo, [x])]),"
    "io:format(\"erpc ~p~n\", [erpc:call(N, echo, echo, [y])]),"
    /* a C process links to an Erlang process, which dies of boom */
    "P = spawn(fun() -> receive die -> exit(boom) end end),"
    "C = gen_server:call({lab, N}, {spawn_linked_to, P}),"
    "io:format(\"c is remote ~p~n\", [node(C) =:= N]),"
    "CRef = erlang:monitor(process, C),"
    "P ! die,"
    "receive {lab_exit, C, P, R} -> io:format(\"lab_exit ~p~n\", [R]) after 5000 -> "
    "io:format(\"lab_exit timeout~n\") end,"
    "receive {'DOWN', CRef, process, C, CR} -> io:format(\"c died ~p~n\", [CR]) after 5000 -> "
    "io:format(\"c died timeout~n\") end,"
    /* an Erlang monitor of a C process that is told to exit */
    "W = gen_server:call({lab, N}, {spawn}),"
    "Ref = erlang:monitor(process, W),"
    "ok = gen_server:call({lab, N}, {exit, W, bye}),"
    "receive {'DOWN', Ref, process, W, R2} -> io:format(\"down ~p~n\", [R2]) after 5000 -> "
    "io:format(\"down timeout~n\") end,"
    /* an Erlang link to a C process, trapped */
    "process_flag(trap_exit, true),"
    "W2 = gen_server:call({lab, N}, {spawn}),"
    "link(W2),"
    "ok = gen_server:call({lab, N}, {exit, W2, kaboom}),"
    "receive {'EXIT', W2, R3} -> io:format(\"exit ~p~n\", [R3]) after 5000 -> "
    "io:format(\"exit timeout~n\") end,"
    /* a C monitor of an Erlang process */
    "M = spawn(fun() -> receive go -> exit(gone) end end),"
    "ok = gen_server:call({lab, N}, {monitor, M}),"
    "M ! go,"
    "receive {lab_down, M, R4} -> io:format(\"lab_down ~p~n\", [R4]) after 5000 -> "
    "io:format(\"lab_down timeout~n\") end,"
    /* calls from C to an Erlang server, by name and by pid, and to nobody */
    "S = spawn(fun L() -> receive {'$gen_call', From, Req} -> gen:reply(From, {echoed, Req}), "
    "L() end end),"
    "register(erl_srv, S),"
    "io:format(\"ccall ~p~n\", [gen_server:call({lab, N}, {call, {erl_srv, node()}, hi})]),"
    "io:format(\"ccall_pid ~p~n\", [gen_server:call({lab, N}, {call, S, ho})]),"
    "io:format(\"ccall_dead ~p~n\", [gen_server:call({lab, N}, {call, {nobody, node()}, x})]),"
    /* exit(Pid, kill) from Erlang */
    "W3 = gen_server:call({lab, N}, {spawn}),"
    "Ref3 = erlang:monitor(process, W3),"
    "exit(W3, kill),"
    "receive {'DOWN', Ref3, process, W3, R5} -> io:format(\"killed ~p~n\", [R5]) after 5000 -> "
    "io:format(\"killed timeout~n\") end,"
    /* a monitor by name on the C node, and of a name nobody has */
    "Ref4 = erlang:monitor(process, {lab, N}),"
    "Ref5 = erlang:monitor(process, {nobody, N}),"
    "receive {'DOWN', Ref5, process, {nobody, N}, R6} -> io:format(\"noproc ~p~n\", [R6]) after "
    "5000 -> io:format(\"noproc timeout~n\") end,"
    "io:format(\"demonitor ~p~n\", [erlang:demonitor(Ref4, [info])]),"
    "io:format(\"done~n\"),"
    "halt().";

static void test_contract(void **state)
{
    uint16_t epmd = free_port();
    char port[16];
    snprintf(port, sizeof port, "%u", epmd);
    setenv("ERL_EPMD_PORT", port, 1);
    setenv("ERL_CRASH_DUMP_SECONDS", "0", 1);
    char sname[64], node[320], ename[64];
    snprintf(sname, sizeof sname, "en%d", (int)getpid());
    snprintf(node, sizeof node, "%s@%s", sname, g_host);
    snprintf(ename, sizeof ename, "et%d", (int)getpid());
    char *nargv[] = {g_bin, "-sname", sname, "-setcookie", "labcookie", NULL};
    child en = child_start(nargv);
    char want[400];
    snprintf(want, sizeof want, "ready %s", node);
    expect_line(&en, want, 15000);

    char eval[sizeof script + 400];
    snprintf(eval, sizeof eval, script, node);
    char *eargv[] = {g_erl,      "-sname", ename, "-setcookie", "labcookie",
                     "-noshell", "-eval",  eval,  NULL};
    child e = child_start(eargv);
    expect_line(&e, "ping pong", 20000);
    expect_line(&e, "call {hello,[1,2],<<\"b\">>}", 5000);
    expect_line(&e, "cast ok", 6000);
    expect_line(&e, "plain ok", 6000);
    expect_line(&e, "rpc x", 5000);
    expect_line(&e, "erpc y", 5000);
    expect_line(&e, "c is remote true", 5000);
    expect_line(&e, "lab_exit boom", 6000);
    expect_line(&e, "c died boom", 6000);
    expect_line(&e, "down bye", 6000);
    expect_line(&e, "exit kaboom", 6000);
    expect_line(&e, "lab_down gone", 6000);
    expect_line(&e, "ccall {echoed,hi}", 6000);
    expect_line(&e, "ccall_pid {echoed,ho}", 6000);
    expect_line(&e, "ccall_dead {error,noproc}", 6000);
    expect_line(&e, "killed killed", 6000);
    expect_line(&e, "noproc noproc", 6000);
    expect_line(&e, "demonitor true", 6000);
    expect_line(&e, "done", 6000);
    reap(&e);

    /* SIGTERM: a clean exit */
    kill(en.pid, SIGTERM);
    int status = 0;
    uint64_t deadline = now_ms() + 10000;
    pid_t r;
    while ((r = waitpid(en.pid, &status, WNOHANG)) == 0) {
        assert_true(now_ms() < deadline);
        usleep(10000);
    }
    assert_int_equal(r, en.pid);
    child_forget(en.pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    en.pid = 0;
    reap(&en);
}

int main(void)
{
    const char *bin = getenv("OTP_BIN_DIR");
    if (!find_prog("erl", g_erl, sizeof g_erl) || !bin) {
        printf("SKIP: test_echo_node needs erl on PATH and OTP_BIN_DIR\n");
        return 77;
    }
    snprintf(g_bin, sizeof g_bin, "%s/echo_node", bin);
    gethostname(g_host, sizeof g_host);
    g_host[strcspn(g_host, ".")] = 0;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_contract)};
    return cmocka_run_group_tests_name("echo_node with erl", tests, NULL, reap_all);
}
