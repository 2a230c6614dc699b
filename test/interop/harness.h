/* harness.h — what the suites that run real erl and elixir nodes share:
 * finding a program on PATH, a free loopback port, and child processes
 * whose stdout is read line by line with deadlines. Include after cmocka.h.
 *
 * Output is read with read(2) into the child's own buffer, never through
 * stdio: a FILE would pull several lines into its buffer and poll(2) would
 * then wait for data that already arrived.
 */
#ifndef OTP_TEST_INTEROP_HARNESS_H
#define OTP_TEST_INTEROP_HARNESS_H

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The full path of prog from PATH into out; false if it is not there. */
static inline bool find_prog(const char *prog, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    if (!path)
        return false;
    char *dup = strdup(path), *save = NULL;
    bool found = false;
    for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", d, prog);
        found = access(out, X_OK) == 0;
    }
    free(dup);
    return found;
}

/* A loopback port nobody listens on right now. */
static inline uint16_t free_port(void)
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
    int fd;         /* its stdout */
    char buf[8192]; /* read, not yet returned as lines */
    size_t have;
} child;

/* Children still running: reap_all (a group teardown) kills them, so a
 * failed test leaves nothing behind. */
static pid_t g_children[16];

/* Starts argv[0] with argv, its stdout to a pipe we read. */
static inline child child_start(char *const argv[])
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
    for (int i = 0; i < 16; i++)
        if (!g_children[i]) {
            g_children[i] = c.pid;
            break;
        }
    return c;
}

/* The child has been waited for elsewhere: forget it. */
static inline void child_forget(pid_t pid)
{
    for (int i = 0; i < 16; i++)
        if (g_children[i] == pid)
            g_children[i] = 0;
}

/* SIGKILL, wait, close. */
static inline void reap(child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        child_forget(c->pid);
    }
    if (c->fd > 0)
        close(c->fd);
    c->pid = 0;
    c->fd = -1;
    c->have = 0;
}

static inline int reap_all(void **state)
{
    (void)state;
    for (int i = 0; i < 16; i++)
        if (g_children[i]) {
            kill(g_children[i], SIGKILL);
            waitpid(g_children[i], NULL, 0);
            g_children[i] = 0;
        }
    return 0;
}

/* The next line of the child's output before the deadline; false if none
 * came (or the child closed its output). */
static inline bool next_line(child *c, char *line, size_t cap, uint64_t deadline)
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

/* Waits for a line starting with want; other lines are shown and skipped
 * (exact: the next line must be want). Fails the test on timeout. */
static inline void expect_line_in(child *c, const char *want, unsigned timeout_ms, bool exact)
{
    char buf[2048];
    uint64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        if (!next_line(c, buf, sizeof buf, deadline)) {
            fprintf(stderr, "no line \"%s\" within %u ms\n", want, timeout_ms);
            fail();
        }
        if (exact ? strcmp(buf, want) == 0 : strncmp(buf, want, strlen(want)) == 0)
            return;
        fprintf(stderr, "got: %s\n", buf);
        if (exact)
            fail_msg("expected \"%s\"", want);
    }
}

#endif
