/* test_epmd_erl.c — our EPMD against real Erlang/OTP nodes on loopback:
 *   1. build/bin/epmd serving two erl nodes, one pinging the other; Erlang's
 *      `epmd -names` lists them and ours prints the same bytes; -kill is
 *      refused while nodes live and obeyed (the server exits) once they go;
 *   2. our client calls (ALIVE2, PORT_PLEASE2, NAMES) against Erlang's
 *      epmd, and our epmd answering NAMES as it does for the same names;
 *      2b. the node agent as a client of Erlang's epmd (a name an erl node
 *      holds is refused), taking the port over when that epmd is killed;
 *   3. a runtime's embedded EPMD serving two erl nodes that ping each
 *      other, found by Erlang's client, net_adm:names() and otp_epmd_lookup;
 *   4. takeover: process X serving EPMD is SIGKILLed, one of two agents of
 *      another runtime serves within 2 s; Erlang's client, a new erl node
 *      and an erl node X knew (it registers again) all see the new server;
 *      then the serving agent stops and the other one takes over.
 * 3 and 4 run on both I/O backends. Each case has EPMD ports of its own
 * (ERL_EPMD_PORT for every erl and epmd child, erl with -start_epmd false).
 * Children run in process groups of their own and die with the test
 * (PR_SET_PDEATHSIG; an erl also halts when its stdin closes); the teardown
 * kills and reaps them and stops what a failed case left running. Every
 * wait is a bounded poll. Without erl or /usr/bin/epmd: exit 77.
 * Env: OTP_BIN_DIR (where our epmd is), OTP_TEST_TMP (erl's working dir),
 * OTP_EPMD_ERL_RUN_BUGS=1 (fail on known differences, see known_bug).
 */
/* otp-test: threads */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otp.h"
#include "otp/epmd.h"
#include "otp/runtime.h"

extern char **environ;

#define ERLANG_EPMD "/usr/bin/epmd"
#define COOKIE      "c"

static struct {
    char erl[PATH_MAX];
    char our_epmd[PATH_MAX];
    char host[256]; /* the short host name, the one -sname uses */
    long pid;
    uint16_t used_ports[32];
    int nused;
} g;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A port nobody listens on now: bind port 0, read it, close. Never the same
 * twice in one run, so one case's leftovers cannot meet the next. */
static uint16_t free_port(void)
{
    for (int tries = 0; tries < 50; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof sa;
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        close(fd);
        uint16_t port = ntohs(sa.sin_port);
        bool seen = false;
        for (int i = 0; i < g.nused; i++)
            seen |= g.used_ports[i] == port;
        if (!seen && g.nused < (int)(sizeof g.used_ports / sizeof g.used_ports[0])) {
            g.used_ports[g.nused++] = port;
            return port;
        }
    }
    fail_msg("no free port");
    return 0;
}

/* ------------------------------------------------------------ children */

typedef struct child {
    pid_t pid; /* 0: the slot is free */
    bool reaped;
    int status;  /* once reaped */
    int in, out; /* our ends of its stdin and of its stdout+stderr; -1: none */
    bool eof;
    char what[64];
    size_t len;
    char buf[32768]; /* everything it wrote, NUL-terminated (the tail is dropped) */
} child;

#define MAX_CHILDREN 12
static child g_children[MAX_CHILDREN];

static child *child_slot(const char *what)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        child *c = &g_children[i];
        if (c->pid == 0) {
            memset(c, 0, sizeof *c);
            c->in = c->out = -1;
            snprintf(c->what, sizeof c->what, "%s", what);
            return c;
        }
    }
    fail_msg("more than %d children", MAX_CHILDREN);
    return NULL;
}

/* environ with ERL_EPMD_PORT=port instead of any it had: malloc'd. */
static char **child_env(uint16_t port, char *slot, size_t cap)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 2, sizeof *env);
    assert_non_null(env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "ERL_EPMD_PORT=", 14) != 0)
            env[k++] = environ[i];
    snprintf(slot, cap, "ERL_EPMD_PORT=%u", port);
    env[k++] = slot;
    env[k] = NULL;
    return env;
}

/* Starts argv (argv[0] a path) with ERL_EPMD_PORT=port, stdin and
 * stdout+stderr on pipes of ours, in a process group of its own, killed
 * when this thread dies. fork+exec so the child can ask for that signal;
 * between the two only async-signal-safe calls (runtime threads may run). */
static child *child_start(const char *what, char *const argv[], uint16_t port)
{
    child *c = child_slot(what);
    char envslot[32];
    char **env = child_env(port, envslot, sizeof envslot);
    int in[2], out[2], err[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0); /* exec failed: errno comes back */
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        execve(argv[0], argv, env);
        int e = errno;
        ssize_t w = write(err[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    setpgid(pid, pid); /* the child does it too: whoever runs first */
    free(env);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    c->pid = pid;
    c->in = in[1];
    c->out = out[0];
    fcntl(c->out, F_SETFL, fcntl(c->out, F_GETFL) | O_NONBLOCK);
    int e = 0;
    ssize_t r;
    while ((r = read(err[0], &e, sizeof e)) < 0 && errno == EINTR)
        ;
    close(err[0]);
    if (r > 0)
        fail_msg("cannot run %s (%s): %s", argv[0], what, strerror(e));
    return c;
}

/* Reads what c wrote, waiting up to ms for something. */
static void child_pump(child *c, int ms)
{
    if (c->out < 0 || c->eof)
        return;
    struct pollfd p = {.fd = c->out, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0)
        return;
    for (;;) {
        char tmp[4096];
        ssize_t n = read(c->out, tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            c->eof = true;
        if (n <= 0)
            return;
        size_t room = sizeof c->buf - 1 - c->len;
        size_t k = (size_t)n < room ? (size_t)n : room;
        memcpy(c->buf + c->len, tmp, k);
        c->len += k;
        c->buf[c->len] = 0;
    }
}

/* The rest of the first whole line of c's output that starts with prefix. */
static bool find_line(const child *c, const char *prefix, char *out, size_t cap)
{
    size_t pl = strlen(prefix);
    for (const char *p = c->buf; *p;) {
        const char *nl = strchr(p, '\n');
        if (!nl)
            return false;
        if ((size_t)(nl - p) >= pl && memcmp(p, prefix, pl) == 0) {
            size_t n = (size_t)(nl - p) - pl;
            if (n > 0 && p[pl + n - 1] == '\r')
                n--;
            if (n >= cap)
                n = cap - 1;
            memcpy(out, p + pl, n);
            out[n] = 0;
            return true;
        }
        p = nl + 1;
    }
    return false;
}

static bool child_wait_line(child *c, const char *prefix, char *out, size_t cap,
                            unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (find_line(c, prefix, out, cap))
            return true;
        uint64_t now = now_ms();
        if (c->eof || now >= deadline)
            return false;
        child_pump(c, (int)(deadline - now < 100 ? deadline - now : 100));
    }
}

/* Waits up to timeout_ms for c to exit: true and c->status once reaped. */
static bool child_wait_exit(child *c, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    while (!c->reaped) {
        child_pump(c, 0);
        pid_t w = waitpid(c->pid, &c->status, WNOHANG);
        if (w == c->pid)
            c->reaped = true;
        else if (w < 0 && errno != EINTR)
            fail_msg("waitpid %s: %s", c->what, strerror(errno));
        else if (now_ms() >= deadline)
            return false;
        else
            sleep_ms(5);
    }
    return true;
}

/* Kills c's process group (if it still runs), reaps it, frees the slot. */
static void child_release(child *c)
{
    if (c->pid == 0)
        return;
    if (!c->reaped) {
        kill(-c->pid, SIGKILL);
        kill(c->pid, SIGKILL);
        while (waitpid(c->pid, &c->status, 0) < 0 && errno == EINTR)
            ;
    }
    if (c->in >= 0)
        close(c->in);
    if (c->out >= 0)
        close(c->out);
    c->pid = 0;
}

static void children_release_all(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        child_release(&g_children[i]);
}

static void child_dump(const child *c)
{
    fprintf(stderr, "---- output of %s (pid %ld):\n%s\n---- end\n", c->what, (long)c->pid, c->buf);
}

#define WAIT_LINE(c, prefix, out, ms)                                                              \
    do {                                                                                           \
        if (!child_wait_line((c), (prefix), (out), sizeof(out), (ms))) {                           \
            child_dump(c);                                                                         \
            fail_msg("%s wrote no line \"%s...\" within %u ms", (c)->what, (prefix), (ms));        \
        }                                                                                          \
    } while (0)

/* Runs argv to its end (bounded): the exit status (-1: killed by a signal)
 * and everything it wrote in *out (malloc'd). */
static int run_capture(char *const argv[], uint16_t port, char **out)
{
    child *c = child_start(argv[0], argv, port);
    close(c->in);
    c->in = -1;
    uint64_t deadline = now_ms() + 10000;
    while (!c->eof && now_ms() < deadline)
        child_pump(c, 100);
    if (!c->eof || !child_wait_exit(c, 5000)) {
        child_dump(c);
        child_release(c);
        fail_msg("%s did not finish within 15 s", argv[0]);
    }
    *out = strdup(c->buf);
    assert_non_null(*out);
    int st = WIFEXITED(c->status) ? WEXITSTATUS(c->status) : -1;
    child_release(c);
    return st;
}

/* `epmd -names` of Erlang's epmd client (erlang true) or ours. */
static char *epmd_names_cmd(bool erlang, uint16_t port)
{
    char *argv[] = {erlang ? ERLANG_EPMD : g.our_epmd, "-names", NULL};
    /* on the heap, not a local: GCC 12 at -O3 takes strstr's results on
     * the text for pointers to the local that held it (dangling-pointer) */
    char **out = malloc(sizeof *out);
    assert_non_null(out);
    int st = run_capture(argv, port, out);
    char *text = *out;
    free(out);
    if (st != 0)
        fail_msg("%s -names exited with %d:\n%s", argv[0], st, text);
    return text;
}

/* Does a NAMES text (either client's output, or otp_epmd_names's) list
 * `name`? With port != 0: at that port. */
static bool names_has(const char *text, const char *name, unsigned port)
{
    char want[300];
    if (port)
        snprintf(want, sizeof want, "name %s at port %u\n", name, port);
    else
        snprintf(want, sizeof want, "name %s at port ", name);
    for (const char *p = strstr(text, want); p; p = strstr(p + 1, want))
        if (p == text || p[-1] == '\n')
            return true;
    return false;
}

/* The port NAMES gives `name`, or 0. */
static unsigned names_port(const char *text, const char *name)
{
    char want[300];
    snprintf(want, sizeof want, "\nname %s at port ", name);
    const char *p = strstr(text, want);
    return p ? (unsigned)strtoul(p + strlen(want), NULL, 10) : 0;
}

/* Polls NAMES until EPMD answers at port. */
static void wait_epmd_up(uint16_t port, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    otp_error err = {0};
    for (;;) {
        char *text = NULL;
        if (otp_epmd_names(NULL, port, 1000, &text, &err) >= 0) {
            free(text);
            return;
        }
        if (now_ms() >= deadline)
            fail_msg("no EPMD answers on port %u after %u ms: %s", port, timeout_ms, err.message);
        sleep_ms(10);
    }
}

/* Polls NAMES until `name` is listed (present) or not. */
static void wait_listed(uint16_t port, const char *name, bool present, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    otp_error err = {0};
    for (;;) {
        char *text = NULL;
        int r = otp_epmd_names(NULL, port, 1000, &text, &err);
        bool has = r >= 0 && names_has(text, name, 0);
        if (r >= 0 && has == present) {
            free(text);
            return;
        }
        if (now_ms() >= deadline)
            fail_msg("EPMD on port %u %s %s after %u ms (%s)", port,
                     present ? "does not list" : "still lists", name, timeout_ms,
                     r >= 0 ? text : err.message);
        free(text);
        sleep_ms(10);
    }
}

/* An erl node `sname` registering with the EPMD at port. It halts when its
 * stdin closes, says "ready NODE" once registered; with `peer` it pings
 * that node until pong (or 100 tries) and says "ping RESULT"; then it runs
 * `more` (Erlang expressions ending in a comma) and stays up. */
static child *erl_start(uint16_t port, const char *sname, const char *peer, const char *more)
{
    char eval[2048];
    int n = snprintf(eval, sizeof eval,
                     "spawn(fun() -> io:get_line(''), halt() end),"
                     " io:format(\"ready ~s~n\", [node()]),");
    if (peer)
        n += snprintf(eval + n, sizeof eval - (size_t)n,
                      " Ping = fun F(0) -> pang; F(K) -> case net_adm:ping('%s') of"
                      " pong -> pong; pang -> timer:sleep(50), F(K - 1) end end,"
                      " io:format(\"ping ~s~n\", [Ping(100)]),",
                      peer);
    snprintf(eval + n, sizeof eval - (size_t)n, "%s ok", more ? more : "");
    char *argv[] = {g.erl,         "-sname", (char *)sname, "-noshell", "-setcookie", COOKIE,
                    "-start_epmd", "false",  "-eval",       eval,       NULL};
    char what[96];
    snprintf(what, sizeof what, "erl %s", sname);
    return child_start(what, argv, port);
}

/* Waits for erl's "ready NODE" and checks NODE is sname@host. */
static void erl_wait_ready(child *c, const char *sname)
{
    char line[300], want[300];
    WAIT_LINE(c, "ready ", line, 15000);
    snprintf(want, sizeof want, "%s@%s", sname, g.host);
    assert_string_equal(line, want);
}

/* --------------------------------------------- what a case leaves behind */

static struct {
    otp_runtime *rt;
    otp_epmd *ep[3];
    int fd[4];
} t = {.fd = {-1, -1, -1, -1}};

/* backend: "io_uring", "epoll" or NULL (the default). */
static otp_runtime *start_runtime(const char *node, const char *backend)
{
    otp_runtime_config cfg = {
        .shards = 2, .node_name = node, .no_pin = true, .io_backend = backend};
    assert_int_equal(otp_runtime_new(&t.rt, &cfg), 0);
    assert_int_equal(otp_runtime_start(t.rt), 0);
    return t.rt;
}

static void stop_runtime(void)
{
    for (int i = 0; i < 3; i++) {
        otp_epmd_stop(t.ep[i]);
        t.ep[i] = NULL;
    }
    if (t.rt) {
        otp_runtime_stop(t.rt);
        otp_runtime_free(t.rt);
        t.rt = NULL;
    }
}

static int teardown(void **state)
{
    (void)state;
    children_release_all();
    stop_runtime();
    for (int i = 0; i < 4; i++) {
        if (t.fd[i] >= 0)
            close(t.fd[i]);
        t.fd[i] = -1;
    }
    return 0;
}

/* A difference from Erlang that is known and reported: printed, and a
 * failure only with OTP_EPMD_ERL_RUN_BUGS=1 (as OTP_SEM_RUN_BUGS in
 * test_semantics.c). */
static void known_bug(const char *what)
{
    const char *run = getenv("OTP_EPMD_ERL_RUN_BUGS");
    if (run && *run && strcmp(run, "0") != 0)
        fail_msg("BUG: %s", what);
    printf("KNOWN BUG (OTP_EPMD_ERL_RUN_BUGS=1 fails on it): %s\n", what);
}

/* ------------------------------------------------ 1. our standalone epmd */

static void test_standalone_epmd_serves_erl(void **state)
{
    (void)state;
    uint16_t port = free_port();
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    char *srv_argv[] = {g.our_epmd, "-port", portstr, NULL};
    child *srv = child_start("our epmd", srv_argv, port);
    wait_epmd_up(port, 5000);

    char a[64], b[64], a_node[320], line[300];
    snprintf(a, sizeof a, "a_%ld", g.pid);
    snprintf(b, sizeof b, "b_%ld", g.pid);
    snprintf(a_node, sizeof a_node, "%s@%s", a, g.host);
    child *ea = erl_start(port, a, NULL, NULL);
    erl_wait_ready(ea, a);
    child *eb = erl_start(port, b, a_node, NULL);
    erl_wait_ready(eb, b);
    WAIT_LINE(eb, "ping ", line, 15000);
    assert_string_equal(line, "pong");

    /* Erlang's client reads our server; ours must print the same bytes. */
    char *theirs = epmd_names_cmd(true, port);
    char head[96];
    snprintf(head, sizeof head, "epmd: up and running on port %u with data:\n", port);
    if (strncmp(theirs, head, strlen(head)) != 0 || !names_has(theirs, a, 0) ||
        !names_has(theirs, b, 0))
        fail_msg("Erlang's epmd -names on our epmd:\n%s", theirs);
    char *ours = epmd_names_cmd(false, port);
    assert_string_equal(ours, theirs);
    free(ours);
    free(theirs);

    /* -kill with living nodes: refused, by our client and by Erlang's. */
    char *kill_ours[] = {g.our_epmd, "-port", portstr, "-kill", NULL};
    char *kill_theirs[] = {ERLANG_EPMD, "-port", portstr, "-kill", NULL};
    char *out;
    int st = run_capture(kill_ours, port, &out);
    assert_string_equal(out, "Killing not allowed - living nodes in database.\n");
    assert_int_equal(st, 1);
    free(out);
    st = run_capture(kill_theirs, port, &out);
    assert_string_equal(out, "Killing not allowed - living nodes in database.\n");
    assert_int_equal(st, 1);
    free(out);
    assert_false(child_wait_exit(srv, 0));

    /* The nodes go; their registrations go with their sockets. */
    child_release(ea);
    child_release(eb);
    wait_listed(port, a, false, 5000);
    wait_listed(port, b, false, 5000);
    st = run_capture(kill_ours, port, &out);
    assert_string_equal(out, "Killed\n");
    assert_int_equal(st, 0);
    free(out);
    if (!child_wait_exit(srv, 5000)) {
        child_dump(srv);
        fail_msg("our epmd still runs 5 s after it said Killed");
    }
    if (!WIFEXITED(srv->status) || WEXITSTATUS(srv->status) != 0) {
        child_dump(srv);
        fail_msg("our epmd ended with status 0x%x after -kill", (unsigned)srv->status);
    }
    /* Erlang's epmd says this on stderr whenever a KILL_REQ ends it, -d
     * or not (dbg_printf at level 0 in epmd_srv.c). */
    for (uint64_t end = now_ms() + 2000; !srv->eof && now_ms() < end;)
        child_pump(srv, 50);
    if (!strstr(srv->buf, "got KILL_REQ - terminates normal"))
        known_bug("epmd/epmd_main.c serve(): without -d our epmd does not log \"epmd: DATE: "
                  "got KILL_REQ - terminates normal\" on stderr when killed, as Erlang's does");
}

/* -------------------------------------- 2. our client, Erlang's epmd */

static void test_client_with_erlang_epmd(void **state)
{
    (void)state;
    uint16_t port = free_port();
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    char *srv_argv[] = {ERLANG_EPMD, "-port", portstr, NULL};
    child *srv = child_start("Erlang's epmd", srv_argv, port);
    wait_epmd_up(port, 5000);

    char name[64], hname[64];
    snprintf(name, sizeof name, "cnode_%ld", g.pid);
    snprintf(hname, sizeof hname, "hnode_%ld", g.pid);
    uint16_t nport = free_port(), hport = free_port();
    uint32_t creation = 0, hcreation = 0;
    otp_error err = {0};
    int rc = otp_epmd_alive2(port, name, nport, false, 5000, &creation, &t.fd[0], &err);
    if (rc != 0)
        fail_msg("ALIVE2 to Erlang's epmd: %d %s", rc, err.message);
    assert_true(t.fd[0] >= 0);
    assert_int_not_equal(creation, 0);
    rc = otp_epmd_alive2(port, hname, hport, true, 5000, &hcreation, &t.fd[1], &err);
    if (rc != 0)
        fail_msg("hidden ALIVE2 to Erlang's epmd: %d %s", rc, err.message);
    assert_int_not_equal(hcreation, 0);

    /* Erlang's own client sees both; ours prints what it prints. */
    char *theirs = epmd_names_cmd(true, port);
    if (!names_has(theirs, name, nport) || !names_has(theirs, hname, hport))
        fail_msg("Erlang's epmd -names:\n%s", theirs);
    char *ours = epmd_names_cmd(false, port);
    assert_string_equal(ours, theirs);
    free(ours);
    free(theirs);
    /* Our epmd, given the same registrations, answers NAMES with the same
     * bytes as Erlang's (the same lines, newest first). */
    uint16_t port2 = free_port();
    char port2str[8];
    snprintf(port2str, sizeof port2str, "%u", port2);
    char *ours_argv[] = {g.our_epmd, "-port", port2str, NULL};
    child_start("our epmd", ours_argv, port2);
    wait_epmd_up(port2, 5000);
    uint32_t c3 = 0;
    assert_int_equal(otp_epmd_alive2(port2, name, nport, false, 5000, &c3, &t.fd[2], &err), 0);
    assert_int_equal(otp_epmd_alive2(port2, hname, hport, true, 5000, &c3, &t.fd[3], &err), 0);
    char *text = NULL, *text2 = NULL;
    assert_true(otp_epmd_names(NULL, port, 5000, &text, &err) >= 0);
    assert_true(otp_epmd_names(NULL, port2, 5000, &text2, &err) >= 0);
    assert_true(names_has(text, name, nport));
    assert_string_equal(text2, text);
    free(text);
    free(text2);

    otp_epmd_node_info info;
    rc = otp_epmd_port_please(NULL, port, name, 5000, &info, &err);
    if (rc != 0)
        fail_msg("PORT_PLEASE2 %s: %d %s", name, rc, err.message);
    assert_int_equal(info.port, nport);
    assert_int_equal(info.type, 'M');
    assert_int_equal(info.protocol, 0);
    assert_int_equal(info.highest, 6);
    assert_int_equal(info.lowest, 5);
    assert_string_equal(info.name, name);
    rc = otp_epmd_port_please("localhost", port, hname, 5000, &info, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(info.port, hport);
    assert_int_equal(info.type, 'H');
    assert_int_equal(otp_epmd_port_please(NULL, port, "nosuch", 5000, &info, &err), -OTP_ENOTFOUND);

    /* The name is taken while the first registration's socket is open. */
    int fd2 = -1;
    uint32_t c2 = 0;
    assert_int_equal(otp_epmd_alive2(port, name, nport + 1, false, 5000, &c2, &fd2, &err),
                     -OTP_EEXIST);
    assert_int_equal(fd2, -1);

    /* Closing the socket unregisters. */
    close(t.fd[0]);
    t.fd[0] = -1;
    wait_listed(port, name, false, 5000);
    assert_int_equal(otp_epmd_port_please(NULL, port, name, 5000, &info, &err), -OTP_ENOTFOUND);
    theirs = epmd_names_cmd(true, port);
    if (names_has(theirs, name, 0) || !names_has(theirs, hname, hport))
        fail_msg("Erlang's epmd -names after %s closed its socket:\n%s", name, theirs);
    free(theirs);
    /* ...and the name is free again. */
    rc = otp_epmd_alive2(port, name, nport, false, 5000, &c2, &t.fd[0], &err);
    if (rc != 0)
        fail_msg("ALIVE2 again after unregistering: %d %s", rc, err.message);
    assert_int_not_equal(c2, 0);
    close(t.fd[0]);
    t.fd[0] = -1;
    close(t.fd[1]);
    t.fd[1] = -1;
    wait_listed(port, name, false, 5000);
    wait_listed(port, hname, false, 5000);

    /* Erlang's epmd leaves when told, by our -kill. */
    char *kill_ours[] = {g.our_epmd, "-port", portstr, "-kill", NULL};
    char *out;
    int st = run_capture(kill_ours, port, &out);
    assert_string_equal(out, "Killed\n");
    assert_int_equal(st, 0);
    free(out);
    if (!child_wait_exit(srv, 5000)) {
        child_dump(srv);
        fail_msg("Erlang's epmd still runs 5 s after our -kill");
    }
}

/* ---------------------------- 2b. our agent, a client of Erlang's epmd */

/* The agent registers with Erlang's epmd (a name an erl node holds is
 * refused), and takes the port over when that epmd is killed. */
static void test_agent_with_erlang_epmd(void **state)
{
    (void)state;
    uint16_t port = free_port();
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    char *srv_argv[] = {ERLANG_EPMD, "-port", portstr, NULL};
    child *srv = child_start("Erlang's epmd", srv_argv, port);
    wait_epmd_up(port, 5000);

    char e[64], ag[64], node[320];
    snprintf(e, sizeof e, "e_%ld", g.pid);
    snprintf(ag, sizeof ag, "ag_%ld", g.pid);
    snprintf(node, sizeof node, "%s@%s", ag, g.host);
    child *ee = erl_start(port, e, NULL, NULL);
    erl_wait_ready(ee, e);

    otp_runtime *rt = start_runtime(node, NULL);
    otp_error err = {0};
    otp_epmd_config taken = {.name = e, .port = 9100, .epmd_port = port};
    assert_int_equal(otp_epmd_start(rt, &taken, &t.ep[0], &err), -OTP_EEXIST);
    assert_null(t.ep[0]);
    otp_epmd_config cfg = {.name = ag, .port = 9101, .epmd_port = port, .shard = 1};
    int rc = otp_epmd_start(rt, &cfg, &t.ep[0], &err);
    if (rc != 0)
        fail_msg("otp_epmd_start with Erlang's epmd: %d %s", rc, err.message);
    assert_false(otp_epmd_serving(t.ep[0]));
    uint32_t creation = otp_epmd_creation(t.ep[0]);
    assert_int_not_equal(creation, 0);
    char *theirs = epmd_names_cmd(true, port);
    if (!names_has(theirs, ag, 9101) || !names_has(theirs, e, 0))
        fail_msg("Erlang's epmd -names with our agent registered:\n%s", theirs);
    free(theirs);

    uint64_t t0 = now_ms();
    assert_int_equal(kill(srv->pid, SIGKILL), 0);
    while (!(otp_epmd_serving(t.ep[0]) && otp_epmd_registrations(t.ep[0]) == 2) &&
           now_ms() - t0 <= 5000)
        sleep_ms(1);
    uint64_t took = now_ms() - t0;
    printf("takeover from Erlang's epmd: %" PRIu64 " ms\n", took);
    assert_true(otp_epmd_serving(t.ep[0]));
    assert_int_equal(otp_epmd_registrations(t.ep[0]), 2);
    assert_true(took < 2000);
    assert_int_equal(otp_epmd_creation(t.ep[0]), creation);
    theirs = epmd_names_cmd(true, port);
    if (!names_has(theirs, ag, 9101))
        fail_msg("Erlang's epmd -names after our agent took over:\n%s", theirs);
    free(theirs);
    child_release(ee);
    stop_runtime();
}

/* ------------------------------------------------ 3. embedded EPMD */

static void test_embedded_epmd_serves_erl(void **state)
{
    const char *backend = *state;
    uint16_t port = free_port(), dport = free_port();
    char c[64], node[320], a[64], b[64], a_node[320], b_node[320], line[300], want[600];
    snprintf(c, sizeof c, "c_%ld", g.pid);
    snprintf(node, sizeof node, "%s@%s", c, g.host);
    snprintf(a, sizeof a, "ea_%ld", g.pid);
    snprintf(b, sizeof b, "eb_%ld", g.pid);
    snprintf(a_node, sizeof a_node, "%s@%s", a, g.host);
    snprintf(b_node, sizeof b_node, "%s@%s", b, g.host);

    otp_runtime *rt = start_runtime(node, backend);
    otp_epmd_config cfg = {.name = c, .port = dport, .epmd_port = port, .shard = 1};
    otp_error err = {0};
    int rc = otp_epmd_start(rt, &cfg, &t.ep[0], &err);
    if (rc != 0)
        fail_msg("otp_epmd_start: %d %s", rc, err.message);
    otp_epmd *ep = t.ep[0];
    assert_true(otp_epmd_serving(ep));
    assert_int_not_equal(otp_epmd_creation(ep), 0);
    assert_int_equal(otp_epmd_registrations(ep), 1);

    /* Each pings the other, both finding the other through our EPMD; b
     * lists the names it sees. */
    child *ea = erl_start(port, a, b_node, NULL);
    child *eb = erl_start(port, b, a_node,
                          " {ok, Ns} = net_adm:names(),"
                          " [io:format(\"erlname ~s ~b~n\", [N, P]) || {N, P} <- Ns],"
                          " io:format(\"names done~n\"),");
    erl_wait_ready(ea, a);
    erl_wait_ready(eb, b);
    WAIT_LINE(ea, "ping ", line, 15000);
    assert_string_equal(line, "pong");
    WAIT_LINE(eb, "ping ", line, 15000);
    assert_string_equal(line, "pong");
    WAIT_LINE(eb, "names done", line, 5000);
    snprintf(want, sizeof want, "erlname %s %u\n", c, dport);
    if (!strstr(eb->buf, want)) {
        child_dump(eb);
        fail_msg("net_adm:names() in erl does not list our node as \"%s\"", want);
    }

    char *theirs = epmd_names_cmd(true, port);
    if (!names_has(theirs, a, 0) || !names_has(theirs, b, 0) || !names_has(theirs, c, dport))
        fail_msg("Erlang's epmd -names on the embedded EPMD:\n%s", theirs);
    unsigned a_port = names_port(theirs, a);
    assert_int_not_equal(a_port, 0);
    free(theirs);

    /* erl reads our refusal of a taken name as Erlang's epmd's. */
    char *dup_argv[] = {g.erl,         "-sname", c,       "-noshell", "-setcookie", COOKIE,
                        "-start_epmd", "false",  "-eval", "halt(0)",  NULL};
    char *out;
    int st = run_capture(dup_argv, port, &out);
    snprintf(want, sizeof want, "the name %s@%s seems to be in use by another Erlang node", c,
             g.host);
    if (st == 0 || !strstr(out, want))
        fail_msg("erl -sname %s (taken by our node) exited %d:\n%s", c, st, out);
    free(out);

    otp_epmd_node_info info;
    rc = otp_epmd_lookup(ep, a_node, 5000, &info, &err);
    if (rc != 0)
        fail_msg("otp_epmd_lookup %s: %d %s", a_node, rc, err.message);
    assert_int_equal(info.port, a_port);
    assert_int_equal(info.type, 'M');
    assert_string_equal(info.name, a);
    snprintf(want, sizeof want, "nosuch@%s", g.host);
    assert_int_equal(otp_epmd_lookup(ep, want, 5000, &info, &err), -OTP_ENOTFOUND);

    child_release(ea);
    child_release(eb);
    otp_epmd_stop(ep);
    t.ep[0] = NULL;
    /* Nobody else could take over: the port is closed now. */
    uint64_t deadline = now_ms() + 3000;
    char *text = NULL;
    while ((rc = otp_epmd_names(NULL, port, 500, &text, &err)) >= 0) {
        free(text);
        if (now_ms() >= deadline)
            fail_msg("EPMD still answers on port %u 3 s after otp_epmd_stop", port);
        sleep_ms(10);
    }
    assert_int_equal(rc, -OTP_EIO);
    assert_int_equal(otp_runtime_stop(rt), 0);
    otp_runtime_free(rt);
    t.rt = NULL;
}

/* ------------------------------------------------ 4. takeover */

/* Process X: serves EPMD at port from a runtime of its own, says 'R' (or
 * 'E' and why) on `ready`, then waits to be killed. Dies with its parent. */
static _Noreturn void serve_until_killed(uint16_t port, const char *name, const char *backend,
                                         pid_t parent, int ready)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
    otp_runtime *rt = NULL;
    otp_runtime_config rcfg = {
        .shards = 1, .node_name = "x@localhost", .no_pin = true, .io_backend = backend};
    otp_epmd *ep = NULL;
    otp_error err = {0};
    otp_epmd_config cfg = {.name = name, .port = 7, .epmd_port = port};
    int rc = otp_runtime_new(&rt, &rcfg);
    if (rc == 0)
        rc = otp_runtime_start(rt);
    if (rc == 0)
        rc = otp_epmd_start(rt, &cfg, &ep, &err);
    char msg[300];
    int n;
    if (rc != 0 || !otp_epmd_serving(ep))
        n = snprintf(msg, sizeof msg, "Eotp_epmd_start: %d, serving %d: %s", rc,
                     ep ? otp_epmd_serving(ep) : 0, err.message);
    else
        n = snprintf(msg, sizeof msg, "R");
    ssize_t w = write(ready, msg, (size_t)n);
    (void)w;
    if (msg[0] != 'R')
        _exit(1);
    for (;;)
        pause();
}

static int count_threads(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

/* Polls until one of ep[0..1] serves and each has registered `regs`
 * times: the ms since t0 it took (more than limit_ms: it did not). */
static uint64_t wait_one_serving(otp_epmd *const ep[2], uint64_t regs, uint64_t t0,
                                 uint64_t limit_ms)
{
    for (;;) {
        bool done = (otp_epmd_serving(ep[0]) || otp_epmd_serving(ep[1])) &&
                    otp_epmd_registrations(ep[0]) == regs && otp_epmd_registrations(ep[1]) == regs;
        uint64_t took = now_ms() - t0;
        if (done || took > limit_ms)
            return took;
        sleep_ms(1);
    }
}

static const char *serving_name(otp_epmd *const ep[2], const char *n0, const char *n1)
{
    return otp_epmd_serving(ep[0]) ? n0 : otp_epmd_serving(ep[1]) ? n1 : "nobody";
}

static void test_takeover_seen_by_erl(void **state)
{
    const char *backend = *state;
    uint16_t port = free_port();
    char x[64], b1[64], b2[64], d[64], w[64], node[320], line[300], want[300];
    snprintf(x, sizeof x, "x_%ld", g.pid);
    snprintf(b1, sizeof b1, "b1_%ld", g.pid);
    snprintf(b2, sizeof b2, "b2_%ld", g.pid);
    snprintf(d, sizeof d, "d_%ld", g.pid);
    snprintf(w, sizeof w, "w_%ld", g.pid);
    snprintf(node, sizeof node, "b_%ld@%s", g.pid, g.host);

    /* X forks while this process has no runtime and no thread of ours. */
    assert_null(t.rt);
    int threads = count_threads();
    if (threads != 1)
        printf("note: %d threads in the test process before the fork\n", threads);
    int ready[2];
    assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
    pid_t parent = getpid();
    child *xc = child_slot("EPMD server X");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        close(ready[0]);
        serve_until_killed(port, x, backend, parent, ready[1]);
    }
    setpgid(pid, pid);
    xc->pid = pid;
    close(ready[1]);
    char msg[300] = {0};
    struct pollfd p = {.fd = ready[0], .events = POLLIN};
    int pr = poll(&p, 1, 10000);
    ssize_t n = pr > 0 ? read(ready[0], msg, sizeof msg - 1) : 0;
    close(ready[0]);
    if (n <= 0 || msg[0] != 'R')
        fail_msg("X did not start serving EPMD on port %u within 10 s: %s", port,
                 n > 0 ? msg + 1 : "no word");

    /* An erl node registered with X before it dies. */
    child *ew = erl_start(port, w, NULL, NULL);
    erl_wait_ready(ew, w);

    otp_runtime *rt = start_runtime(node, backend);
    otp_error err = {0};
    const char *names[2] = {b1, b2};
    for (int i = 0; i < 2; i++) {
        otp_epmd_config cfg = {.name = names[i],
                               .port = (uint16_t)(9000 + i),
                               .epmd_port = port,
                               .shard = (unsigned)i};
        int rc = otp_epmd_start(rt, &cfg, &t.ep[i], &err);
        if (rc != 0)
            fail_msg("otp_epmd_start %s: %d %s", names[i], rc, err.message);
        assert_false(otp_epmd_serving(t.ep[i]));
        assert_int_equal(otp_epmd_registrations(t.ep[i]), 1);
    }
    otp_epmd *const ep[2] = {t.ep[0], t.ep[1]};
    uint32_t creation[2] = {otp_epmd_creation(ep[0]), otp_epmd_creation(ep[1])};
    char *theirs = epmd_names_cmd(true, port);
    if (!names_has(theirs, x, 7) || !names_has(theirs, b1, 9000) || !names_has(theirs, b2, 9001) ||
        !names_has(theirs, w, 0))
        fail_msg("Erlang's epmd -names before the kill:\n%s", theirs);
    free(theirs);

    const uint64_t killed_at = now_ms();
    assert_int_equal(kill(pid, SIGKILL), 0);
    uint64_t took = wait_one_serving(ep, 2, killed_at, 5000);
    printf("takeover after SIGKILL (%s): %" PRIu64 " ms, %s serves, registrations %" PRIu64
           ", %" PRIu64 "\n",
           backend, took, serving_name(ep, b1, b2), otp_epmd_registrations(ep[0]),
           otp_epmd_registrations(ep[1]));
    assert_true(child_wait_exit(xc, 5000));
    assert_true(otp_epmd_serving(ep[0]) || otp_epmd_serving(ep[1]));
    assert_int_equal(otp_epmd_registrations(ep[0]), 2);
    assert_int_equal(otp_epmd_registrations(ep[1]), 2);
    assert_true(took < 2000);
    assert_true(otp_epmd_serving(ep[0]) != otp_epmd_serving(ep[1]));
    /* The creation of the first registration stays the node's. */
    assert_int_equal(otp_epmd_creation(ep[0]), creation[0]);
    assert_int_equal(otp_epmd_creation(ep[1]), creation[1]);

    theirs = epmd_names_cmd(true, port);
    if (names_has(theirs, x, 0) || !names_has(theirs, b1, 9000) || !names_has(theirs, b2, 9001))
        fail_msg("Erlang's epmd -names after the takeover:\n%s", theirs);
    free(theirs);

    /* A node that comes later registers with the new server... */
    child *ed = erl_start(port, d, NULL,
                          " {ok, Ns} = net_adm:names(),"
                          " [io:format(\"erlname ~s ~b~n\", [N, P]) || {N, P} <- Ns],"
                          " io:format(\"names done~n\"),");
    erl_wait_ready(ed, d);
    WAIT_LINE(ed, "names done", line, 5000);
    snprintf(want, sizeof want, "erlname %s ", d);
    bool ok = strstr(ed->buf, want) != NULL;
    snprintf(want, sizeof want, "erlname %s 9000\n", b1);
    ok = ok && strstr(ed->buf, want) != NULL;
    snprintf(want, sizeof want, "erlname %s 9001\n", b2);
    ok = ok && strstr(ed->buf, want) != NULL;
    if (!ok) {
        child_dump(ed);
        fail_msg("net_adm:names() in erl after the takeover misses a node");
    }
    theirs = epmd_names_cmd(true, port);
    if (!names_has(theirs, d, 0))
        fail_msg("Erlang's epmd -names does not list the new erl node:\n%s", theirs);
    free(theirs);
    /* ...and the one X knew comes back by itself (erl retries about every
     * 2 s once its registration socket closes). */
    wait_listed(port, w, true, 10000);
    printf("erl %s registered again %" PRIu64 " ms after the kill\n", w, now_ms() - killed_at);

    /* Handover: the serving node stops, the other serves, erl follows. */
    int s = otp_epmd_serving(ep[0]) ? 0 : 1;
    uint64_t t0 = now_ms();
    otp_epmd_stop(ep[s]);
    t.ep[s] = NULL;
    otp_epmd *const rest = ep[1 - s];
    while (!(otp_epmd_serving(rest) && otp_epmd_registrations(rest) == 3) && now_ms() - t0 <= 5000)
        sleep_ms(1);
    took = now_ms() - t0;
    printf("handover after otp_epmd_stop(%s) (%s): %" PRIu64 " ms\n", names[s], backend, took);
    assert_true(otp_epmd_serving(rest));
    assert_int_equal(otp_epmd_registrations(rest), 3);
    assert_true(took < 2000);
    wait_listed(port, names[s], false, 2000);
    wait_listed(port, names[1 - s], true, 2000);
    wait_listed(port, d, true, 10000);
    wait_listed(port, w, true, 10000);

    child_release(ew);
    child_release(ed);
    stop_runtime();
}

/* ------------------------------------------------------------ main */

static bool find_in_path(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        if (n > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)n, path, name) < cap &&
            access(out, X_OK) == 0)
            return true;
        path += n + (end ? 1 : 0);
    }
    return false;
}

static void on_exit_kill_children(void)
{
    children_release_all();
}

int main(void)
{
    if (!find_in_path("erl", g.erl, sizeof g.erl) || access(ERLANG_EPMD, X_OK) != 0) {
        printf("SKIP: test_epmd_erl needs erl on PATH and Erlang's epmd at %s\n", ERLANG_EPMD);
        return 77;
    }
    const char *bin = getenv("OTP_BIN_DIR");
    if (bin && *bin) {
        snprintf(g.our_epmd, sizeof g.our_epmd, "%s/epmd", bin);
    } else { /* run by hand: our epmd is built next to this test */
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = 0;
        char *slash = strrchr(self, '/');
        snprintf(g.our_epmd, sizeof g.our_epmd, "%.*s/epmd", slash ? (int)(slash - self) : 1,
                 slash ? self : ".");
    }
    if (access(g.our_epmd, X_OK) != 0) {
        fprintf(stderr, "test_epmd_erl: our epmd is not at %s (build the epmd target)\n",
                g.our_epmd);
        return 1;
    }
    /* erl's working directory (crash dumps) and HOME (it wants one). */
    const char *tmp = getenv("OTP_TEST_TMP");
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/epmd_erl", tmp && *tmp ? tmp : "/tmp");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "test_epmd_erl: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (chdir(dir) != 0) {
        fprintf(stderr, "test_epmd_erl: chdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (getenv("HOME") == NULL)
        setenv("HOME", dir, 1);
    /* -sname takes the host name up to its first dot. */
    if (gethostname(g.host, sizeof g.host) != 0)
        snprintf(g.host, sizeof g.host, "localhost");
    g.host[strcspn(g.host, ".")] = 0;
    g.pid = (long)getpid();
    atexit(on_exit_kill_children);

    static const char *uring = "io_uring", *epoll = "epoll";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_standalone_epmd_serves_erl, teardown),
        cmocka_unit_test_teardown(test_client_with_erlang_epmd, teardown),
        cmocka_unit_test_teardown(test_agent_with_erlang_epmd, teardown),
        {"embedded_epmd_serves_erl/io_uring", test_embedded_epmd_serves_erl, NULL, teardown,
         (void *)uring},
        {"embedded_epmd_serves_erl/epoll", test_embedded_epmd_serves_erl, NULL, teardown,
         (void *)epoll},
        {"takeover_seen_by_erl/io_uring", test_takeover_seen_by_erl, NULL, teardown, (void *)uring},
        {"takeover_seen_by_erl/epoll", test_takeover_seen_by_erl, NULL, teardown, (void *)epoll},
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
