/* test_otp_term_tool.c — runs the built `otp-term` binary ($OTP_BIN_DIR)
 * with pipes on stdin, stdout and stderr: decoding hex and raw bytes from
 * stdin and files, encoding in every mode, round trips, and the one-line
 * errors (with offsets) and exit codes for bad input and bad usage.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

extern char **environ;

static char tool[4096];
static char tmpdir[4096];

typedef struct run_result {
    int status; /* exit status, or 128 + signal */
    char *out;  /* NUL-terminated (binary output may hold NULs: use out_len) */
    size_t out_len;
    char *err;
    size_t err_len;
} run_result;

static void result_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

static void append(char **buf, size_t *len, const char *p, size_t n)
{
    *buf = realloc(*buf, *len + n + 1);
    assert_non_null(*buf);
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = '\0';
}

/* Runs otp-term with args (NULL-terminated, without argv[0]), feeding `in`
 * on stdin, collecting stdout and stderr. One poll loop serves all three
 * pipes so a large output cannot deadlock against a large input. */
static run_result run_in(const void *in, size_t in_len, const char *const *args)
{
    char *argv[32] = {tool};
    size_t argc = 1;
    for (; args[argc - 1]; argc++) {
        assert_true(argc < 31);
        argv[argc] = (char *)args[argc - 1];
    }
    argv[argc] = NULL;

    int pin[2], pout[2], perr[2];
    assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
    assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    pid_t pid;
    int rc = posix_spawn(&pid, tool, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        fail_msg("cannot run %s: %s", tool, strerror(rc));
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);

    run_result r = {0};
    append(&r.out, &r.out_len, "", 0);
    append(&r.err, &r.err_len, "", 0);
    size_t written = 0;
    int fd_in = pin[1];
    if (in_len == 0) {
        close(fd_in);
        fd_in = -1;
    } else {
        fcntl(fd_in, F_SETFL, O_NONBLOCK);
    }
    int open_outputs = 2;
    bool out_open = true, err_open = true;
    while (open_outputs > 0 || fd_in >= 0) {
        struct pollfd p[3] = {{out_open ? pout[0] : -1, POLLIN, 0},
                              {err_open ? perr[0] : -1, POLLIN, 0},
                              {fd_in, POLLOUT, 0}};
        int n = poll(p, 3, 30000);
        if (n == 0)
            fail_msg("otp-term did not finish in 30 s");
        if (n < 0) {
            assert_int_equal(errno, EINTR);
            continue;
        }
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[4096];
            ssize_t k = read(p[i].fd, buf, sizeof(buf));
            if (k > 0) {
                if (i == 0)
                    append(&r.out, &r.out_len, buf, (size_t)k);
                else
                    append(&r.err, &r.err_len, buf, (size_t)k);
            } else if (k == 0 || errno != EINTR) {
                close(p[i].fd);
                *(i == 0 ? &out_open : &err_open) = false;
                open_outputs--;
            }
        }
        if (fd_in >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t k = write(fd_in, (const char *)in + written, in_len - written);
            if (k > 0)
                written += (size_t)k;
            /* EPIPE: the tool stopped reading (it gave up on the input). */
            if ((k < 0 && errno != EAGAIN && errno != EINTR) || written == in_len) {
                close(fd_in);
                fd_in = -1;
            }
        }
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        assert_int_equal(errno, EINTR);
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return r;
}

#define RUN(in, ...)          run_in((in), strlen(in), (const char *const[]){__VA_ARGS__, NULL})
#define RUN_BYTES(in, n, ...) run_in((in), (n), (const char *const[]){__VA_ARGS__, NULL})

static void assert_ok_output(run_result *r, const char *out)
{
    if (r->status != 0 || strcmp(r->out, out) != 0 || r->err_len != 0)
        fail_msg("status %d, stdout \"%s\", stderr \"%s\"; wanted stdout \"%s\"", r->status, r->out,
                 r->err, out);
}

/* Bad input: exit 1, nothing on stdout, exactly one line on stderr that
 * contains `part`. */
static void assert_one_line_error(run_result *r, const char *part)
{
    if (r->status != 1 || r->out_len != 0 || r->err_len == 0 || r->err[r->err_len - 1] != '\n' ||
        memchr(r->err, '\n', r->err_len - 1) || !strstr(r->err, part))
        fail_msg("status %d, stdout \"%s\", stderr \"%s\"; wanted exit 1 and one line with \"%s\"",
                 r->status, r->out, r->err, part);
    assert_int_equal(strncmp(r->err, "otp-term: ", 10), 0);
}

static const char vector_hex[] = "83680361017701616b000162";
static const char vector_text[] = "{1,a,[98]}\n";
static const uint8_t vector_bytes[] = {0x83, 0x68, 0x03, 0x61, 0x01, 0x77,
                                       0x01, 0x61, 0x6b, 0x00, 0x01, 0x62};

static void test_decode_hex_stdin(void **state)
{
    run_result r = RUN(vector_hex, "decode", "--hex");
    assert_ok_output(&r, vector_text);
    result_free(&r);
    /* Whitespace, 0x prefixes and upper case are all fine. */
    r = RUN("  0x83 68 03\n\t61 01 77 01 0X61 6B\n00 01 62\n", "decode", "--hex");
    assert_ok_output(&r, vector_text);
    result_free(&r);
    /* Without the version byte (as inside a dist header frame). */
    r = RUN(vector_hex + 2, "--hex", "decode");
    assert_int_equal(r.status, 2); /* the command comes first */
    result_free(&r);
    r = RUN(vector_hex + 2, "decode", "--hex");
    assert_ok_output(&r, vector_text);
    result_free(&r);
    r = RUN(vector_hex, "decode", "--hex", "-");
    assert_ok_output(&r, vector_text);
    result_free(&r);
}

static void test_decode_raw_stdin(void **state)
{
    run_result r = RUN_BYTES(vector_bytes, sizeof(vector_bytes), "decode");
    assert_ok_output(&r, vector_text);
    result_free(&r);
    r = RUN_BYTES(vector_bytes + 1, sizeof(vector_bytes) - 1, "decode");
    assert_ok_output(&r, vector_text);
    result_free(&r);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void test_decode_file(void **state)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/otp_term_tool_%d.bin", tmpdir, (int)getpid());
    write_file(path, vector_bytes, sizeof(vector_bytes));
    run_result r = RUN("", "decode", path);
    assert_ok_output(&r, vector_text);
    result_free(&r);
    write_file(path, vector_hex, strlen(vector_hex));
    r = RUN("", "decode", path, "--hex");
    assert_ok_output(&r, vector_text);
    result_free(&r);
    unlink(path);
    r = RUN("", "decode", path);
    assert_one_line_error(&r, "cannot open");
    result_free(&r);
}

static void test_decode_nodes_and_pretty(void **state)
{
    /* self() on vecnode@vm (test/data/etf_vectors.txt, vector 51). */
    const char *pid = "8358770a7665636e6f646540766d00000009000000006b0480e1";
    run_result r = RUN(pid, "decode", "--hex", "--nodes");
    /* The node atom prints as ~w prints it: node@host needs no quotes. */
    assert_ok_output(&r, "<vecnode@vm.9.0>\n");
    result_free(&r);
    r = RUN(pid, "decode", "--hex");
    assert_int_equal(r.status, 0);
    int n = -1, id = -1, serial = -1;
    char end = 0;
    if (sscanf(r.out, "<%d.%d.%d>%c", &n, &id, &serial, &end) != 4 || n <= 0 || id != 9 ||
        serial != 0 || end != '\n')
        fail_msg("foreign pid printed as \"%s\"", r.out);
    result_free(&r);
    r = RUN(vector_hex, "decode", "--hex", "--pretty");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.err_len, 0);
    assert_true(r.out_len > 1 && r.out[r.out_len - 1] == '\n');
    assert_non_null(strstr(r.out, "{1,"));
    result_free(&r);
}

static void test_encode(void **state)
{
    run_result r = RUN("", "encode", "--hex", "{1, a, [98]}");
    assert_ok_output(&r, "83680361017701616b000162\n");
    result_free(&r);
    /* Raw bytes to stdout. */
    r = RUN("", "encode", "{1,a,[98]}.");
    assert_int_equal(r.status, 0);
    assert_int_equal(r.out_len, sizeof(vector_bytes));
    assert_memory_equal(r.out, vector_bytes, sizeof(vector_bytes));
    result_free(&r);
    /* OTP 25's default term_to_binary: ATOM_EXT for Latin-1 atoms. */
    r = RUN("", "encode", "--minor1", "--hex", "{1,a,[98]}");
    assert_ok_output(&r, "8368036101640001616b000162\n");
    result_free(&r);
    /* The term from stdin, and a negative number that is not an option. */
    r = RUN("  {1, a, \"b\"}  \n", "encode", "--hex", "-");
    assert_ok_output(&r, "83680361017701616b000162\n");
    result_free(&r);
    r = RUN("", "encode", "--hex", "-1");
    assert_ok_output(&r, "8362ffffffff\n");
    result_free(&r);
}

static void test_encode_compressed(void **state)
{
    char term[256] = "<<\"";
    memset(term + 3, 'a', 200);
    strcpy(term + 203, "\">>");
    /* term_to_binary(binary:copy(<<"a">>, 200), [compressed]) in OTP 25. */
    run_result r = RUN("", "encode", "--compressed", "--hex", term);
    assert_ok_output(&r, "8350000000cd789ccb6560603891384c0000b6e44cfe\n");
    result_free(&r);
    r = RUN("", "encode", "--compressed=9", term);
    assert_int_equal(r.status, 0);
    assert_true(r.out_len > 2 && (uint8_t)r.out[0] == 131 && r.out[1] == 80);
    run_result d = RUN_BYTES(r.out, r.out_len, "decode");
    assert_int_equal(d.status, 0);
    char want[1024] = "<<97";
    for (int i = 1; i < 200; i++)
        strcat(want, ",97");
    strcat(want, ">>\n"); /* ~w prints binaries as bytes, never as strings */
    assert_ok_output(&d, want);
    result_free(&d);
    result_free(&r);
    /* Too small to gain from compression: plain encoding, as Erlang does. */
    r = RUN("", "encode", "--compressed", "--hex", "{1,a,[98]}");
    assert_ok_output(&r, "83680361017701616b000162\n");
    result_free(&r);
}

static void test_round_trips(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"{ok, [1,2,3], <<\"x\">>, #{key => \"value\"}, 3.14, 1180591620717411303424}",
         "{ok,[1,2,3],<<120>>,#{key => [118,97,108,117,101]},3.14,1180591620717411303424}\n"},
        {"[-5, 2.0e-3, [], {}, <<1:3>>, 'Quoted atom', [1|2], \"\xc3\xa9\"]",
         "[-5,0.002,[],{},<<1:3>>,'Quoted atom',[1|2],[233]]\n"},
        {"-18446744073709551616", "-18446744073709551616\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int minor1 = 0; minor1 < 2; minor1++) {
            run_result e = minor1 ? RUN("", "encode", "--minor1", cases[i].in)
                                  : RUN("", "encode", cases[i].in);
            if (e.status != 0)
                fail_msg("encode %s: %s", cases[i].in, e.err);
            run_result d = RUN_BYTES(e.out, e.out_len, "decode");
            assert_ok_output(&d, cases[i].out);
            result_free(&d);
            result_free(&e);
        }
    }
}

static void test_bad_input(void **state)
{
    run_result r = RUN("83zz", "decode", "--hex");
    assert_one_line_error(&r, "bad hex at offset 2: 'z' is not a hex digit");
    result_free(&r);
    r = RUN("83 680", "decode", "--hex");
    assert_one_line_error(&r, "bad hex at offset 5: odd number of hex digits");
    result_free(&r);
    /* A pair whose second element is missing: the input ends at offset 5. */
    r = RUN("8368026101", "decode", "--hex");
    assert_one_line_error(&r, "otp-term: decode error at offset 5: ");
    /* The reason is given once, not prefixed by a second "offset 5:". */
    assert_null(strstr(r.err, ": offset"));
    result_free(&r);
    r = RUN_BYTES(vector_bytes, sizeof(vector_bytes) - 1, "decode");
    assert_one_line_error(&r, "otp-term: decode error at offset ");
    result_free(&r);
    r = RUN("8361016162ff", "decode", "--hex");
    assert_one_line_error(&r, "otp-term: trailing 3 bytes after the term at offset 3");
    result_free(&r);
    r = RUN("8361016162", "decode", "--hex");
    assert_one_line_error(&r, "otp-term: trailing 2 bytes after the term at offset 3");
    result_free(&r);
    r = RUN("836101ff", "decode", "--hex");
    assert_one_line_error(&r, "otp-term: trailing 1 byte after the term at offset 3");
    result_free(&r);
    r = RUN("", "decode");
    assert_one_line_error(&r, "decode error at offset 0: empty input");
    result_free(&r);
    r = RUN(" \n", "decode", "--hex");
    assert_one_line_error(&r, "decode error at offset 0: empty input");
    result_free(&r);
    r = RUN("", "encode", "{1, 2");
    assert_one_line_error(&r, "otp-term: parse error at offset ");
    result_free(&r);
    r = RUN("", "encode", "{1, 2} {3}");
    assert_one_line_error(&r, "otp-term: parse error at offset 7: unexpected text after the term");
    result_free(&r);
}

static void test_usage(void **state)
{
    static const char *const bad[][4] = {
        {NULL},
        {"frobnicate", NULL},
        {"decode", "--bogus", NULL},
        {"decode", "a", "b", NULL},
        {"encode", NULL},
        {"encode", "--pretty", "1", NULL},
        {"decode", "--minor1", NULL},
        {"encode", "--compressed=x", "1", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run_result r = run_in("", 0, bad[i]);
        if (r.status != 2 || r.out_len != 0 || !strstr(r.err, "usage: otp-term"))
            fail_msg("case %zu: status %d, stderr \"%s\"", i, r.status, r.err);
        result_free(&r);
    }
    run_result r = RUN("", "--help");
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: otp-term"));
    result_free(&r);
}

int main(void)
{
    const char *bin = getenv("OTP_BIN_DIR");
    if (!bin) {
        fprintf(stderr, "OTP_BIN_DIR is not set (run this through ctest)\n");
        return 77;
    }
    snprintf(tool, sizeof(tool), "%s/otp-term", bin);
    if (access(tool, X_OK) != 0) {
        fprintf(stderr, "%s: %s\n", tool, strerror(errno));
        return 1;
    }
    const char *tmp = getenv("OTP_TEST_TMP");
    snprintf(tmpdir, sizeof(tmpdir), "%s", tmp ? tmp : "/tmp");
    /* A tool that exits early closes its stdin; that must not kill us. */
    signal(SIGPIPE, SIG_IGN);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_hex_stdin),
        cmocka_unit_test(test_decode_raw_stdin),
        cmocka_unit_test(test_decode_file),
        cmocka_unit_test(test_decode_nodes_and_pretty),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_encode_compressed),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests_name("otp_term_tool", tests, NULL, NULL);
}
