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

static char g_erl[512], g_bin[512], g_host[256];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool find_erl(void)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *dup = strdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        snprintf(g_erl, sizeof g_erl, "%s/erl", d);
        found = access(g_erl, X_OK) == 0;
    }
    free(dup);
    return found;
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

typedef struct child {
    pid_t pid;
    int fd; /* its stdout, read without stdio: a FILE would hide lines from poll */
    char buf[8192];
    size_t have;
} child;

/* Children still running when a test fails: the group teardown kills them. */
static pid_t g_children[8];

static child start(char *const argv[])
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    child c = {0};
    c.pid = fork();
    if (c.pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    c.fd = p[0];
    for (int i = 0; i < 8; i++)
        if (!g_children[i]) {
            g_children[i] = c.pid;
            break;
        }
    return c;
}

static int kill_children(void **state)
{
    for (int i = 0; i < 8; i++)
        if (g_children[i]) {
            kill(g_children[i], SIGKILL);
            waitpid(g_children[i], NULL, 0);
            g_children[i] = 0;
        }
    return 0;
}

static bool next_line(child *c, char *line, size_t cap, uint64_t deadline)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->have);
        if (nl) {
            size_t len = (size_t)(nl - c->buf);
            snprintf(line, cap, "%.*s", (int)len, c->buf);
            memmove(c->buf, nl + 1, c->have - len - 1);
            c->have -= len + 1;
            return true;
        }
        uint64_t now = now_ms();
        if (now >= deadline || c->have == sizeof c->buf)
            return false;
        struct pollfd pf = {.fd = c->fd, .events = POLLIN};
        if (poll(&pf, 1, (int)(deadline - now)) <= 0)
            continue;
        ssize_t n = read(c->fd, c->buf + c->have, sizeof c->buf - c->have);
        if (n <= 0)
            return false;
        c->have += (size_t)n;
    }
}

static void expect_line(child *c, const char *want, unsigned timeout_ms)
{
    char buf[2048];
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (!next_line(c, buf, sizeof buf, deadline)) {
            fprintf(stderr, "no line \"%s\" within %u ms\n", want, timeout_ms);
            fail();
        }
        if (strcmp(buf, want) == 0)
            return;
        fprintf(stderr, "got: %s\n", buf);
        fail_msg("expected \"%s\"", want);
    }
}

static void reap(child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        for (int i = 0; i < 8; i++)
            if (g_children[i] == c->pid)
                g_children[i] = 0;
    }
    if (c->fd > 0)
        close(c->fd);
    c->pid = 0;
    c->fd = -1;
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
    child en = start(nargv);
    char want[400];
    snprintf(want, sizeof want, "ready %s", node);
    expect_line(&en, want, 15000);

    char eval[sizeof script + 400];
    snprintf(eval, sizeof eval, script, node);
    char *eargv[] = {g_erl,      "-sname", ename, "-setcookie", "labcookie",
                     "-noshell", "-eval",  eval,  NULL};
    child e = start(eargv);
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
    for (int i = 0; i < 8; i++)
        if (g_children[i] == en.pid)
            g_children[i] = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    en.pid = 0;
    reap(&en);
}

int main(void)
{
    const char *bin = getenv("OTP_BIN_DIR");
    if (!find_erl() || !bin) {
        printf("SKIP: test_echo_node needs erl on PATH and OTP_BIN_DIR\n");
        return 77;
    }
    snprintf(g_bin, sizeof g_bin, "%s/echo_node", bin);
    gethostname(g_host, sizeof g_host);
    g_host[strcspn(g_host, ".")] = 0;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_contract)};
    return cmocka_run_group_tests_name("echo_node with erl", tests, NULL, kill_children);
}
