/* decode_term.c — a real Erlang node makes a term, libotp decodes it.
 *
 * Starts `erl -noshell` (no shell in between), has it evaluate an Erlang
 * expression and write term_to_binary(T, [{minor_version, 2}]) as hex along
 * with io_lib:format("~w", [T]); then decodes the bytes with otp_decode,
 * prints our ~w next to Erlang's and says whether they match.
 *
 *   decode_term                         the default, rich term
 *   decode_term '{a, <<1,2>>, 1.5}'     any expression
 *   decode_term --nodist '...'          no -sname (node nonode@nohost)
 *
 * Exit status: 0 they match, 1 they differ or something failed, 77 no erl.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "otp.h"

extern char **environ;

#define DEFAULT_EXPR                                                                               \
    "{ok, [1,2,3], <<\"x\">>, #{key => \"value\"}, 3.14, self(), make_ref(), 1 bsl 70}"
#define ERL_TIMEOUT_MS 60000

/* Runs in erl. The expression arrives as a plain argument (after -extra),
 * so no quoting of user text into Erlang source is ever needed. Each output
 * line has a tag so stray output from erl cannot be mistaken for ours. */
static const char erl_program[] =
    "[E] = init:get_plain_arguments(),"
    "R = try"
    "  {ok, Ts, _} = erl_scan:string(E),"
    "  Ts1 = case lists:last(Ts) of {dot, _} -> Ts; _ -> Ts ++ [{dot, erl_anno:new(1)}] end,"
    "  {ok, Es} = erl_parse:parse_exprs(Ts1),"
    "  {value, V, _} = erl_eval:exprs(Es, []),"
    "  {ok, V}"
    " catch C:W -> {error, C, W} end,"
    "case R of"
    "  {ok, T} ->"
    /* ~w's text holds Latin-1 characters as they are (an atom 'é'); have
     * them written as UTF-8, which is what otp_print produces. */
    "    io:setopts([{encoding, unicode}]),"
    "    io:format(\"NODE ~s~nHEX ~s~nTEXT ~w~n\","
    "              [node(), binary:encode_hex(term_to_binary(T, [{minor_version, 2}])), T]),"
    "    halt(0);"
    "  {error, Class, Why} ->"
    "    io:format(\"ERROR ~w:~0p~n\", [Class, Why]),"
    "    halt(1)"
    "end.";

/* erl on PATH, into path; false if there is none. */
static bool find_erl(char *path, size_t cap)
{
    const char *p = getenv("PATH");
    if (!p)
        p = "/usr/local/bin:/usr/bin:/bin";
    while (*p) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0 && (size_t)snprintf(path, cap, "%.*s/erl", (int)n, p) < cap &&
            access(path, X_OK) == 0)
            return true;
        p += n + (end ? 1 : 0);
    }
    return false;
}

/* Runs erl and collects its stdout into *out (NUL-terminated, malloc'd).
 * Returns erl's exit status, or -1 when it could not be run or timed out. */
static int run_erl(const char *erl, const char *expr, bool dist, char **out)
{
    char sname[64];
    snprintf(sname, sizeof(sname), "decode_term_%ld", (long)getpid());
    const char *argv[12];
    int n = 0;
    argv[n++] = erl;
    argv[n++] = "-noshell";
    if (dist) {
        argv[n++] = "-sname";
        argv[n++] = sname;
    }
    argv[n++] = "-eval";
    argv[n++] = erl_program;
    argv[n++] = "-extra";
    argv[n++] = expr;
    argv[n] = NULL;

    int pipefd[2];
    if (pipe(pipefd) != 0) {
        perror("decode_term: pipe");
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    posix_spawn_file_actions_addclose(&fa, pipefd[1]);
    /* erl must not read our stdin: a terminal's input belongs to us. */
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    /* A node that fails to start (no epmd, say) would leave an
     * erl_crash.dump in the current directory; ask it not to. */
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **env = calloc(nenv + 2, sizeof(char *));
    if (!env) {
        posix_spawn_file_actions_destroy(&fa);
        close(pipefd[0]);
        close(pipefd[1]);
        return -1;
    }
    memcpy(env, environ, nenv * sizeof(char *));
    env[nenv] = "ERL_CRASH_DUMP_SECONDS=0";
    pid_t pid;
    int rc = posix_spawn(&pid, erl, &fa, NULL, (char *const *)argv, env);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (rc != 0) {
        fprintf(stderr, "decode_term: cannot start %s: %s\n", erl, strerror(rc));
        close(pipefd[0]);
        return -1;
    }

    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    if (!buf) {
        fprintf(stderr, "decode_term: out of memory\n");
        close(pipefd[0]);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    bool timed_out = false;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long waited = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        struct pollfd pfd = {pipefd[0], POLLIN, 0};
        int ready = waited < ERL_TIMEOUT_MS ? poll(&pfd, 1, (int)(ERL_TIMEOUT_MS - waited)) : 0;
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0) {
            timed_out = true;
            break;
        }
        if (len + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger)
                break;
            buf = bigger;
            cap *= 2;
        }
        ssize_t k = read(pipefd[0], buf + len, cap - len - 1);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    close(pipefd[0]);
    if (timed_out) {
        fprintf(stderr, "decode_term: erl gave no answer in %d s; stopping it\n",
                ERL_TIMEOUT_MS / 1000);
        kill(pid, SIGKILL);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    buf[len] = '\0';
    *out = buf;
    if (timed_out)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The rest of the line after "TAG " in erl's output, or NULL. The output
 * was split into lines beforehand: `end` is where the last one stops. */
static const char *tagged_line(const char *lines, const char *end, const char *tag)
{
    size_t tl = strlen(tag);
    for (const char *line = lines; line < end; line += strlen(line) + 1)
        if (!strncmp(line, tag, tl) && line[tl] == ' ')
            return line + tl + 1;
    return NULL;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv)
{
    bool dist = true;
    const char *expr = DEFAULT_EXPR;
    int argi = 1;
    if (argi < argc && !strcmp(argv[argi], "--nodist")) {
        dist = false;
        argi++;
    }
    if (argi < argc && (!strcmp(argv[argi], "-h") || !strcmp(argv[argi], "--help"))) {
        printf("usage: decode_term [--nodist] [ERLANG_EXPRESSION]\n"
               "default expression: %s\n",
               DEFAULT_EXPR);
        return 0;
    }
    if (argi < argc)
        expr = argv[argi++];
    if (argi < argc) {
        fprintf(stderr, "usage: decode_term [--nodist] [ERLANG_EXPRESSION]\n");
        return 2;
    }

    char erl[4096];
    if (!find_erl(erl, sizeof(erl))) {
        fprintf(stderr, "decode_term: no erl on PATH; install Erlang/OTP to run this demo\n");
        return 77;
    }

    char *out = NULL;
    int status = run_erl(erl, expr, dist, &out);
    if (dist && status != 0 && out && !strstr(out, "ERROR ")) {
        /* Distribution needs epmd and a resolvable host name; without
         * them the demo still works as nonode@nohost. */
        fprintf(stderr, "decode_term: erl -sname failed (exit %d); retrying without it\n", status);
        free(out);
        out = NULL;
        status = run_erl(erl, expr, false, &out);
    }
    if (status < 0) {
        free(out);
        return 1;
    }
    char *end = out + strlen(out);
    for (char *c = out; c < end; c++)
        if (*c == '\n')
            *c = '\0';
    const char *error = tagged_line(out, end, "ERROR");
    if (status != 0 || error) {
        fprintf(stderr, "decode_term: erl could not evaluate the expression: %s\n",
                error ? error : "(no output)");
        free(out);
        return 1;
    }
    const char *node = tagged_line(out, end, "NODE");
    const char *hex = tagged_line(out, end, "HEX");
    const char *text = tagged_line(out, end, "TEXT");
    if (!node || !hex || !text) {
        fprintf(stderr, "decode_term: erl's output lacks the NODE, HEX and TEXT lines\n");
        free(out);
        return 1;
    }

    size_t nbytes = strlen(hex) / 2;
    uint8_t *bytes = malloc(nbytes ? nbytes : 1);
    otp_arena *a = otp_arena_new();
    otp_buf ours = {0};
    int rc = 1;
    if (!bytes || !a) {
        fprintf(stderr, "decode_term: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < nbytes; i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            fprintf(stderr, "decode_term: erl's hex is malformed at offset %zu\n", 2 * i);
            goto done;
        }
        bytes[i] = (uint8_t)(hi << 4 | lo);
    }

    printf("erlang node:   %s\n", node);
    printf("expression:    %s\n", expr);
    printf("etf (%zu bytes): %.*s%s\n", nbytes, nbytes > 48 ? 96 : (int)(2 * nbytes), hex,
           nbytes > 48 ? "..." : "");

    otp_term t;
    otp_error err;
    if (otp_decode_exact(a, bytes, nbytes, NULL, &t, &err) < 0) {
        printf("libotp:        decode error: %s\n", err.message);
        goto done;
    }
    /* Pids and refs of the erl node print as <0.X.Y>, as that node does. */
    otp_print_opts popts = {0};
    popts.local_node = otp_atom(node);
    if (otp_print(&ours, t, &popts) < 0 || otp_buf_reserve(&ours, 1) < 0) {
        fprintf(stderr, "decode_term: cannot print the term\n");
        goto done;
    }
    ours.data[ours.len] = '\0';
    printf("erlang ~w:     %s\n", text);
    printf("libotp ~w:     %s\n", (const char *)ours.data);
    bool same = strcmp(text, (const char *)ours.data) == 0;
    printf("match:         %s\n", same ? "yes" : "NO");
    rc = same ? 0 : 1;
done:
    otp_buf_free(&ours);
    otp_arena_free(a);
    free(bytes);
    free(out);
    return rc;
}
