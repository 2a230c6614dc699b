/* epmd_main.c — build/bin/epmd, a drop-in for Erlang's epmd: the same
 * flags, the same output and exit codes, so scripts written for it work
 * unchanged. The server is epmd/server.c on an otp__io of its own.
 *
 *   epmd [-d|-debug]... [-address List] [-port No] [-daemon]
 *        [-relaxed_command_check] [-packet_timeout S] [-delay_accept S]
 *        [-delay_write S]
 *   epmd [-d|-debug] [-port No] [-names|-kill|-stop Name]
 *
 * ERL_EPMD_PORT and ERL_EPMD_ADDRESS are honoured as Erlang's epmd does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "epmd_internal.h"
#include "io.h"
#include "otp/epmd.h"
#include "proto.h"
#include "server.h"

static const char usage_text[] =
    "usage: epmd [-d|-debug] [DbgExtra...] [-address List]\n"
    "            [-port No] [-daemon] [-relaxed_command_check]\n"
    "       epmd [-d|-debug] [-port No] [-names|-kill|-stop name]\n"
    "\n"
    "See the Erlang epmd manual page for info about the usage.\n"
    "\n"
    "Regular options\n"
    "    -address List\n"
    "        Let epmd listen only on the comma-separated list of IP\n"
    "        addresses (and on the loopback interface).\n"
    "    -port No\n"
    "        Let epmd listen to another port than default 4369\n"
    "    -d\n"
    "    -debug\n"
    "        Enable debugging. This will give a log to\n"
    "        the standard error stream. It will shorten\n"
    "        the number of saved used node names to 5.\n"
    "\n"
    "        If you give more than one debug flag you may\n"
    "        get more debugging information.\n"
    "    -daemon\n"
    "        Start epmd detached (as a daemon)\n"
    "    -relaxed_command_check\n"
    "        Allow this instance of epmd to be killed with\n"
    "        epmd -kill even if there are registered nodes.\n"
    "        Also allows forced unregister (epmd -stop).\n"
    "\n"
    "DbgExtra options\n"
    "    -packet_timeout Seconds\n"
    "        Set the number of seconds a connection can be\n"
    "        inactive before epmd times out and closes the\n"
    "        connection (default 60).\n"
    "\n"
    "    -delay_accept Seconds\n"
    "    -delay_write Seconds\n"
    "        Accepted for compatibility; libotp's epmd does not\n"
    "        simulate a busy server.\n"
    "\n"
    "Interactive options\n"
    "    -names\n"
    "        List names registered with the currently running epmd\n"
    "    -kill\n"
    "        Kill the currently running epmd\n"
    "        (only allowed if -names show empty database or\n"
    "        -relaxed_command_check was given when epmd was started).\n"
    "    -stop Name\n"
    "        Forcibly unregisters a name with epmd\n"
    "        (only allowed if -relaxed_command_check was given when \n"
    "        epmd was started).\n";

static _Noreturn void usage(void)
{
    fputs(usage_text, stderr);
    exit(1);
}

static int parse_port(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v <= 0 || v > 65535)
        return -1;
    return (int)v;
}

/* ---- interactive commands: one request to the local epmd */

static int connect_local(uint16_t port)
{
    otp_error err;
    uint64_t deadline;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + 10000;
    /* IPv6 loopback first, then IPv4, as Erlang's epmd client does. */
    int fd = otp__epmd_connect("::1", port, deadline, &err);
    if (fd < 0)
        fd = otp__epmd_connect("127.0.0.1", port, deadline, &err);
    if (fd < 0) {
        fprintf(stderr, "epmd: Cannot connect to local epmd\n");
        exit(1);
    }
    /* the rest of the exchange is blocking */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

/* Reads until len bytes or EOF: the count, or -1 on error. */
static ssize_t read_fill(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static int send_req(int fd, uint8_t code, const char *name)
{
    uint8_t req[3 + 1024];
    int len = otp__epmd_build_simple(req, sizeof req, code, name, name ? strlen(name) : 0);
    if (len < 0 || write(fd, req, (size_t)len) != len) {
        printf("epmd: Can't write to epmd\n");
        return -1;
    }
    return 0;
}

/* An answer that was cut short (or failed), said as Erlang's epmd says it. */
static int short_answer(char *buf, ssize_t n)
{
    if (n < 0) {
        printf("epmd: failed to read answer from local epmd\n");
        return 1;
    }
    buf[n] = 0;
    printf("epmd: local epmd responded with <%s>\n", buf);
    return 1;
}

static int cmd_names(uint16_t port)
{
    int fd = connect_local(port);
    if (send_req(fd, OTP__EPMD_NAMES_REQ, NULL) < 0)
        return 1;
    uint8_t p[4];
    if (read_fill(fd, (char *)p, 4) != 4) {
        printf("epmd: no response from local epmd\n");
        return 1;
    }
    printf("epmd: up and running on port %u with data:\n",
           (unsigned)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]));
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)n, stdout);
    close(fd);
    return 0;
}

static int cmd_kill(uint16_t port)
{
    int fd = connect_local(port);
    if (send_req(fd, OTP__EPMD_KILL_REQ, NULL) < 0)
        return 1;
    char buf[3] = {0};
    ssize_t n = read_fill(fd, buf, 2);
    close(fd);
    if (n == 2) {
        if (buf[0] == 'O' && buf[1] == 'K') {
            printf("Killed\n");
            return 0;
        }
        printf("Killing not allowed - living nodes in database.\n");
        return 1;
    }
    return short_answer(buf, n);
}

static int cmd_stop(uint16_t port, const char *name)
{
    if (strlen(name) > 1000) {
        printf("epmd: Name too long!");
        return 1;
    }
    int fd = connect_local(port);
    if (send_req(fd, OTP__EPMD_STOP_REQ, name) < 0)
        return 1;
    char buf[8] = {0};
    ssize_t n = read_fill(fd, buf, 7);
    close(fd);
    if (n == 7) {
        printf("%s\n", buf); /* STOPPED, or NOEXIST (of NOEXISTSTOPPED) */
        return 0;
    }
    return short_answer(buf, n);
}

/* ---- the server */

static volatile sig_atomic_t g_quit;
static bool g_killed, g_closed;

static void on_kill(void *arg)
{
    g_killed = true;
}

static void on_closed(void *arg)
{
    g_closed = true;
}

static void on_signal(int sig)
{
    g_quit = 1;
}

/* "epmd: Wed Dec  2 05:00:10 2026: text" on stderr, Erlang's log format. */
static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
    time_t now = time(NULL);
    char when[32];
    ctime_r(&now, when);
    when[strcspn(when, "\n")] = 0;
    fprintf(stderr, "epmd: %s: ", when);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0) {
        perror("epmd: fork");
        exit(1);
    }
    if (pid > 0)
        _exit(0);
    setsid();
    pid = fork(); /* never a session leader: no controlling terminal again */
    if (pid < 0)
        exit(1);
    if (pid > 0)
        _exit(0);
    if (chdir("/") != 0)
        exit(1);
    umask(0);
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) {
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(nul, 2);
        if (nul > 2)
            close(nul);
    }
}

static int serve(otp__epmd_srv_config *cfg, bool daemon)
{
    if (daemon)
        daemonize();
    otp__io *io;
    int r = otp__io_create(&io, NULL);
    if (r < 0) {
        fprintf(stderr, "epmd: cannot start the I/O backend: %s\n", strerror(-r));
        return 1;
    }
    cfg->on_kill = on_kill;
    cfg->on_closed = on_closed;
    otp__epmd_srv *srv;
    r = otp__epmd_srv_start(io, cfg, &srv);
    if (r == -EADDRINUSE) {
        /* Erlang's epmd exits quietly: one epmd per port is the point. */
        if (cfg->debug)
            log_line("there is already a epmd running at port %u on ipaddr %s", cfg->port,
                     cfg->addresses ? cfg->addresses : "0.0.0.0");
        otp__io_destroy(io);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "epmd: cannot listen on port %u: %s\n", cfg->port, strerror(-r));
        otp__io_destroy(io);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct timespec ts;
    while (!g_closed) {
        if ((g_killed || g_quit) && srv) {
            otp__epmd_srv_close(srv);
            srv = NULL;
            continue;
        }
        otp__io_wait(io, 1000);
        if (srv) {
            clock_gettime(CLOCK_MONOTONIC, &ts);
            otp__epmd_srv_tick(srv, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
        }
    }
    if (g_killed) /* Erlang's epmd says so with or without -d */
        log_line("got KILL_REQ - terminates normal");
    otp__io_destroy(io);
    return 0;
}

int main(int argc, char **argv)
{
    otp__epmd_srv_config cfg = {0};
    bool daemon = false;
    int port = otp_epmd_default_port();
    const char *addresses = getenv("ERL_EPMD_ADDRESS");
    if (addresses && !*addresses)
        addresses = NULL;
    int i = 1;
    /* Options first, then at most one interactive command, as Erlang's. */
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-d") || !strcmp(a, "-debug")) {
            cfg.debug++;
        } else if (!strcmp(a, "-daemon")) {
            daemon = true;
        } else if (!strcmp(a, "-relaxed_command_check")) {
            cfg.relaxed = true;
        } else if (!strcmp(a, "-port") && i + 1 < argc) {
            if ((port = parse_port(argv[++i])) < 0)
                usage();
        } else if (!strcmp(a, "-address") && i + 1 < argc) {
            addresses = argv[++i];
        } else if (!strcmp(a, "-packet_timeout") && i + 1 < argc) {
            int s = atoi(argv[++i]);
            if (s <= 0)
                usage();
            cfg.packet_timeout_s = (unsigned)s;
        } else if ((!strcmp(a, "-delay_accept") || !strcmp(a, "-delay_write")) && i + 1 < argc) {
            i++;
        } else {
            break;
        }
    }
    if (i < argc) {
        const char *a = argv[i];
        if (!strcmp(a, "-names") && i + 1 == argc)
            return cmd_names((uint16_t)port);
        if (!strcmp(a, "-kill") && i + 1 == argc)
            return cmd_kill((uint16_t)port);
        if (!strcmp(a, "-stop") && i + 2 == argc)
            return cmd_stop((uint16_t)port, argv[i + 1]);
        usage();
    }
    cfg.port = (uint16_t)port;
    cfg.addresses = addresses;
    return serve(&cfg, daemon);
}
