/* test_etf_live.c — the term codec, printer, parser and term order checked
 * against a real Erlang: test/erl/etf_gen.erl writes thousands of random
 * terms (seeded) with term_to_binary's bytes, ~w text and order facts; we
 * check ours against them, then hand our encodings back to erl, which checks
 * that it decodes them to =:= terms. Without erl/erlc on PATH: exit 77.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "otp.h"

extern char **environ;

/* Record flags; keep in sync with the F_* macros in etf_gen.erl. */
enum {
    LIVE_F_TEXT = 1,   /* ~w text comparable (see text_comparable in etf_gen.erl) */
    LIVE_F_PARSE = 2,  /* ~w text is a literal otp_parse must read */
    LIVE_F_MINOR1 = 4, /* minor1 holds term_to_binary(T, [deterministic]) */
    LIVE_F_DETERM = 8, /* expected needed `deterministic` (a map over 32 keys) */
};

#define LIVE_MISSING       0xFFFFFFFFu
#define LIVE_ERL_TIMEOUT_S 120
#define LIVE_MAX_REPORTS   25 /* detailed reports per test; the rest are counted */

typedef struct live_blob {
    const uint8_t *p;
    size_t n;
} live_blob;

typedef struct live_record {
    uint32_t flags;
    live_blob expected, text, minor1;
} live_record;

typedef struct live_pair {
    live_blob a, b, atext, btext;
    bool lt, gt, eq, exact;
} live_pair;

/* Everything the tests share: loaded once in main() before cmocka runs. */
static struct {
    char erl[4096], erlc[4096];
    char src[4096]; /* test/erl */
    char dir[4096]; /* our scratch directory under OTP_TEST_TMP */
    uint32_t seed;
    int timeout_s; /* per run of erl or erlc */
    uint8_t *gen;
    size_t gen_len;
    otp_term node;
    live_record *rec;
    size_t nrec;
    live_pair *pairs;
    size_t npairs;
} g;

/* ------------------------------------------------------------ running erl */

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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs argv with stdin from /dev/null and stdout+stderr into log, in its
 * own process group so a hung erl (and whatever it spawned) can be killed
 * as a whole at the deadline. Returns the exit status, or -1 when it could
 * not start, died of a signal, or ran out of time (said on stderr). */
static int run_cmd(char *const argv[], const char *log, int timeout_s)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        fprintf(stderr, "live: cannot start %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    double deadline = now_s() + timeout_s;
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            fprintf(stderr, "live: waitpid: %s\n", strerror(errno));
            return -1;
        }
        if (now_s() > deadline) {
            fprintf(stderr, "live: %s took over %d s, killed (log: %s)\n", argv[0], timeout_s, log);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        /* A short poll: erl's own run time is seconds, so 10 ms costs nothing. */
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "live: %s died of signal %d (log: %s)\n", argv[0], WTERMSIG(status), log);
        return -1;
    }
    return WEXITSTATUS(status);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            uint8_t *nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = 0; /* so a text file can be printed as a string */
    *len = n;
    return buf;
}

/* Shows an erl log on stderr (its tail, when long). */
static void show_log(const char *path)
{
    size_t n;
    uint8_t *b = read_file(path, &n);
    if (b == NULL)
        return;
    size_t from = n > 8000 ? n - 8000 : 0;
    fprintf(stderr, "---- %s%s ----\n%s\n---- end ----\n", path, from ? " (tail)" : "",
            (char *)b + from);
    free(b);
}

/* erl -noshell -pa DIR -run etf_gen FUNCTION ARGS... */
static int run_etf_gen(const char *function, const char *log, char *const args[], size_t nargs)
{
    char *argv[16] = {g.erl, "-noshell", "-pa", g.dir, "-run", "etf_gen", (char *)function};
    size_t n = 7;
    for (size_t i = 0; i < nargs && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    int rc = run_cmd(argv, log, g.timeout_s);
    if (rc != 0) {
        fprintf(stderr, "live: etf_gen %s failed (status %d, seed %" PRIu32 ")\n", function, rc,
                g.seed);
        show_log(log);
    }
    return rc;
}

/* ------------------------------------------------------------ the gen file */

typedef struct reader {
    const uint8_t *p, *end;
    bool bad;
} reader;

static uint32_t rd_u32(reader *r)
{
    if (r->end - r->p < 4) {
        r->bad = true;
        return 0;
    }
    uint32_t v =
        (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    return v;
}

static bool rd_u8(reader *r)
{
    if (r->p >= r->end) {
        r->bad = true;
        return false;
    }
    return *r->p++ != 0;
}

static live_blob rd_blob(reader *r)
{
    uint32_t n = rd_u32(r);
    live_blob b = {r->p, n};
    if ((size_t)(r->end - r->p) < n) {
        r->bad = true;
        b.n = 0;
        return b;
    }
    r->p += n;
    return b;
}

static bool load_gen(const char *path)
{
    g.gen = read_file(path, &g.gen_len);
    if (g.gen == NULL) {
        fprintf(stderr, "live: cannot read %s\n", path);
        return false;
    }
    reader r = {g.gen, g.gen + g.gen_len, false};
    if (g.gen_len < 8 || memcmp(g.gen, "ETFLIVE1", 8) != 0) {
        fprintf(stderr, "live: %s is not an etf_gen file\n", path);
        return false;
    }
    r.p += 8;
    rd_u32(&r); /* the seed, which we chose */
    live_blob node = rd_blob(&r);
    g.nrec = rd_u32(&r);
    if (r.bad || otp_atom_intern((const char *)node.p, node.n, &g.node) != 0)
        goto bad;
    g.rec = calloc(g.nrec ? g.nrec : 1, sizeof *g.rec);
    for (size_t i = 0; i < g.nrec && !r.bad; i++) {
        g.rec[i].flags = rd_u32(&r);
        g.rec[i].expected = rd_blob(&r);
        g.rec[i].text = rd_blob(&r);
        g.rec[i].minor1 = rd_blob(&r);
    }
    g.npairs = rd_u32(&r);
    g.pairs = calloc(g.npairs ? g.npairs : 1, sizeof *g.pairs);
    for (size_t i = 0; i < g.npairs && !r.bad; i++) {
        live_pair *p = &g.pairs[i];
        p->a = rd_blob(&r);
        p->b = rd_blob(&r);
        p->atext = rd_blob(&r);
        p->btext = rd_blob(&r);
        p->lt = rd_u8(&r);
        p->gt = rd_u8(&r);
        p->eq = rd_u8(&r);
        p->exact = rd_u8(&r);
    }
    if (!r.bad && r.p == r.end)
        return true;
bad:
    fprintf(stderr, "live: %s is truncated or malformed\n", path);
    return false;
}

/* ------------------------------------------------------------ reporting */

typedef struct tally {
    const char *what;
    const char *unit; /* "record" or "pair" */
    size_t failed, reported;
} tally;

/* Starts a failure report; returns false once enough have been shown (the
 * failure is still counted). */
static bool fail_begin(tally *t, size_t index)
{
    t->failed++;
    if (t->reported >= LIVE_MAX_REPORTS)
        return false;
    t->reported++;
    fprintf(stderr, "\n%s: %s %zu (seed %" PRIu32 ", rerun with OTP_LIVE_SEED=%" PRIu32 "):\n",
            t->what, t->unit, index, g.seed, g.seed);
    return true;
}

static size_t first_diff(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t i = 0;
    while (i < an && i < bn && a[i] == b[i])
        i++;
    return i;
}

/* Up to 300 bytes of text from around byte `at`. */
static void show_text(const char *label, const uint8_t *s, size_t n, size_t at)
{
    size_t from = at > 100 ? at - 100 : 0;
    size_t len = n - from < 300 ? n - from : 300;
    fprintf(stderr, "  %s (%zu bytes)%s: %s%.*s%s\n", label, n, from ? ", from byte" : "",
            from ? "..." : "", (int)len, (const char *)s + from, from + len < n ? "..." : "");
}

static void show_hex(const char *label, const uint8_t *s, size_t n, size_t at)
{
    size_t from = at > 16 ? at - 16 : 0;
    fprintf(stderr, "  %s (%zu bytes) from byte %zu:", label, n, from);
    for (size_t i = from; i < n && i < from + 48; i++)
        fprintf(stderr, i == at ? " [%02x]" : " %02x", s[i]);
    fprintf(stderr, "%s\n", from + 48 < n ? " ..." : "");
}

static void show_bytes_diff(const uint8_t *exp, size_t en, const uint8_t *got, size_t gn)
{
    size_t at = first_diff(exp, en, got, gn);
    fprintf(stderr, "  first differing byte: %zu\n", at);
    show_hex("erlang", exp, en, at);
    show_hex("ours  ", got, gn, at);
}

static void finish(tally *t, size_t checked)
{
    fprintf(stderr, "%s: %zu checked, %zu failed (seed %" PRIu32 ")\n", t->what, checked, t->failed,
            g.seed);
    if (t->failed)
        fail_msg("%s: %zu of %zu failed; see above (seed %" PRIu32 ")", t->what, t->failed, checked,
                 g.seed);
}

/* Decodes record i's expected bytes, which must be used up exactly. */
static int decode_record(otp_arena *a, size_t i, otp_term *t, tally *tl)
{
    const live_blob *e = &g.rec[i].expected;
    size_t used = 0;
    otp_error err = {0};
    int rc = otp_decode(a, e->p, e->n, NULL, t, &used, &err);
    if (rc == 0 && used == e->n)
        return 0;
    if (fail_begin(tl, i)) {
        if (rc != 0)
            fprintf(stderr, "  otp_decode failed: %s at byte %zu: %s\n", otp_strerror(rc),
                    err.offset, err.message);
        else
            fprintf(stderr, "  otp_decode used %zu of %zu bytes\n", used, e->n);
        show_text("erlang ~w", g.rec[i].text.p, g.rec[i].text.n, 0);
        show_hex("bytes", e->p, e->n, rc != 0 ? err.offset : used);
    }
    return -1;
}

/* ------------------------------------------------------------ the tests */

/* Decode, re-encode (three ways), copy: the bytes must be Erlang's. */
static void test_bytes(void **state)
{
    (void)state;
    tally tl = {"bytes", "record", 0, 0};
    otp_buf b = {0};
    for (size_t i = 0; i < g.nrec; i++) {
        const live_blob *e = &g.rec[i].expected;
        otp_arena *a = otp_arena_new(), *a2 = otp_arena_new();
        assert_non_null(a);
        assert_non_null(a2);
        otp_term t;
        if (decode_record(a, i, &t, &tl) != 0)
            goto next;
        b.len = 0;
        int rc = otp_encode_buf(&b, t, 0);
        if (rc != 0 || b.len != e->n || memcmp(b.data, e->p, e->n) != 0) {
            if (fail_begin(&tl, i)) {
                fprintf(stderr, "  otp_encode_buf: %s\n", rc ? otp_strerror(rc) : "bytes differ");
                show_text("erlang ~w", g.rec[i].text.p, g.rec[i].text.n, 0);
                show_bytes_diff(e->p, e->n, b.data, b.len);
            }
            goto next;
        }
        int64_t size = otp_encoded_size(t, 0);
        uint8_t *exact = malloc(e->n);
        int64_t wrote = otp_encode(t, 0, exact, e->n);
        int64_t short_by_one = e->n ? otp_encode(t, 0, exact, e->n - 1) : -OTP_ENOSPC;
        bool same = wrote == (int64_t)e->n && memcmp(exact, e->p, e->n) == 0;
        free(exact);
        if (size != (int64_t)e->n || !same || short_by_one != -OTP_ENOSPC) {
            if (fail_begin(&tl, i))
                fprintf(stderr,
                        "  otp_encoded_size %" PRId64 ", otp_encode into %zu bytes -> %" PRId64
                        " (%s), into %zu bytes -> %" PRId64 " (want -OTP_ENOSPC); Erlang's "
                        "encoding is %zu bytes\n",
                        size, e->n, wrote, same ? "same bytes" : "different bytes", e->n - 1,
                        short_by_one, e->n);
            goto next;
        }
        /* The copy must stand alone: free the original before encoding it. */
        otp_term c = otp_copy(a2, t);
        bool eq = c != OTP_NONE && otp_exact_eq(c, t) && otp_eq(c, t) && otp_cmp(c, t) == 0 &&
                  otp_cmp_exact(c, t) == 0 && otp_hash(c) == otp_hash(t);
        otp_arena_free(a);
        a = NULL;
        b.len = 0;
        rc = c == OTP_NONE ? -OTP_ENOMEM : otp_encode_buf(&b, c, 0);
        if (!eq || rc != 0 || b.len != e->n || memcmp(b.data, e->p, e->n) != 0) {
            if (fail_begin(&tl, i)) {
                fprintf(stderr, "  otp_copy: %s\n",
                        !eq ? "copy not equal to the original (=:=, ==, cmp, cmp_exact, hash)"
                            : "encoding of the copy differs");
                show_text("erlang ~w", g.rec[i].text.p, g.rec[i].text.n, 0);
                if (rc == 0)
                    show_bytes_diff(e->p, e->n, b.data, b.len);
            }
        }
    next:
        otp_arena_free(a);
        otp_arena_free(a2);
    }
    otp_buf_free(&b);
    finish(&tl, g.nrec);
}

/* OTP 25's default term_to_binary (minor version 1: Latin-1 atoms as
 * ATOM_EXT) for every fourth record. */
static void test_minor1(void **state)
{
    (void)state;
    tally tl = {"minor1", "record", 0, 0};
    otp_buf b = {0};
    size_t checked = 0;
    otp_arena *a = otp_arena_new();
    for (size_t i = 0; i < g.nrec; i++) {
        if (!(g.rec[i].flags & LIVE_F_MINOR1))
            continue;
        checked++;
        otp_arena_reset(a);
        otp_term t;
        if (decode_record(a, i, &t, &tl) != 0)
            continue;
        const live_blob *m = &g.rec[i].minor1;
        b.len = 0;
        int rc = otp_encode_buf(&b, t, OTP_ENC_MINOR1);
        int64_t size = otp_encoded_size(t, OTP_ENC_MINOR1);
        if (rc != 0 || b.len != m->n || memcmp(b.data, m->p, m->n) != 0 || size != (int64_t)m->n) {
            if (fail_begin(&tl, i)) {
                fprintf(stderr,
                        "  otp_encode_buf(OTP_ENC_MINOR1): %s, otp_encoded_size %" PRId64 "\n",
                        rc ? otp_strerror(rc) : "bytes differ", size);
                show_text("erlang ~w", g.rec[i].text.p, g.rec[i].text.n, 0);
                show_bytes_diff(m->p, m->n, b.data, b.len);
            }
        }
    }
    otp_arena_free(a);
    otp_buf_free(&b);
    finish(&tl, checked);
}

/* otp_print == io_lib:format("~w"), with this node's pids as <0.ID.Serial>.
 * Records whose text cannot match (other nodes' pids, big maps in hash
 * order) must still print without error. */
static void test_print(void **state)
{
    (void)state;
    tally tl = {"print", "record", 0, 0};
    otp_buf b = {0};
    otp_print_opts opts = {.local_node = g.node};
    size_t checked = 0;
    otp_arena *a = otp_arena_new();
    for (size_t i = 0; i < g.nrec; i++) {
        const live_blob *want = &g.rec[i].text;
        bool comparable = g.rec[i].flags & LIVE_F_TEXT;
        checked += comparable;
        otp_arena_reset(a);
        otp_term t;
        if (decode_record(a, i, &t, &tl) != 0)
            continue;
        b.len = 0;
        int rc = otp_print(&b, t, &opts);
        if (rc != 0 || (comparable && (b.len != want->n || memcmp(b.data, want->p, want->n)))) {
            if (fail_begin(&tl, i)) {
                size_t at = rc ? 0 : first_diff(want->p, want->n, b.data, b.len);
                fprintf(stderr, "  otp_print: %s; first differing byte: %zu\n",
                        rc ? otp_strerror(rc) : "text differs", at);
                show_text("erlang", want->p, want->n, at);
                if (rc == 0)
                    show_text("ours  ", b.data, b.len, at);
            }
        }
    }
    otp_arena_free(a);
    otp_buf_free(&b);
    finish(&tl, checked);
}

/* otp_parse of Erlang's ~w text gives the term back: =:= and, stricter
 * (0.0 =:= -0.0 in OTP 25), the same bytes. */
static void test_parse(void **state)
{
    (void)state;
    tally tl = {"parse", "record", 0, 0};
    otp_buf b = {0};
    size_t checked = 0;
    otp_arena *a = otp_arena_new();
    for (size_t i = 0; i < g.nrec; i++) {
        if (!(g.rec[i].flags & LIVE_F_PARSE))
            continue;
        checked++;
        otp_arena_reset(a);
        otp_term t, p = OTP_NONE;
        if (decode_record(a, i, &t, &tl) != 0)
            continue;
        const live_blob *text = &g.rec[i].text;
        const live_blob *e = &g.rec[i].expected;
        size_t used = 0;
        otp_error err = {0};
        int rc = otp_parse(a, (const char *)text->p, text->n, &p, &used, &err);
        if (rc != 0 || used != text->n) {
            if (fail_begin(&tl, i)) {
                if (rc)
                    fprintf(stderr, "  otp_parse: %s at byte %zu: %s\n", otp_strerror(rc),
                            err.offset, err.message);
                else
                    fprintf(stderr, "  otp_parse used %zu of %zu bytes\n", used, text->n);
                show_text("text", text->p, text->n, rc ? err.offset : used);
            }
            continue;
        }
        b.len = 0;
        rc = otp_encode_buf(&b, p, 0);
        bool exact = otp_exact_eq(p, t);
        if (!exact || rc != 0 || b.len != e->n || memcmp(b.data, e->p, e->n) != 0) {
            if (fail_begin(&tl, i)) {
                fprintf(stderr, "  parsed term %s Erlang's%s\n",
                        exact ? "is =:=" : "is not =:=", exact ? " but encodes differently" : "");
                show_text("text  ", text->p, text->n, 0);
                const char *ours = otp_sprint(a, p);
                if (ours)
                    show_text("parsed", (const uint8_t *)ours, strlen(ours), 0);
                if (rc == 0)
                    show_bytes_diff(e->p, e->n, b.data, b.len);
            }
        }
    }
    otp_arena_free(a);
    otp_buf_free(&b);
    finish(&tl, checked);
}

static int sign(int v)
{
    return (v > 0) - (v < 0);
}

/* Term order and equality on pairs: otp_cmp's sign is Erlang's <, > and ==
 * (both ways round), otp_eq is ==, otp_exact_eq and otp_cmp_exact are =:=,
 * and =:= terms hash alike. */
static void test_order(void **state)
{
    (void)state;
    tally tl = {"order", "pair", 0, 0};
    otp_arena *a = otp_arena_new();
    for (size_t i = 0; i < g.npairs; i++) {
        const live_pair *p = &g.pairs[i];
        otp_arena_reset(a);
        otp_term x, y;
        otp_error err = {0};
        if (otp_decode_exact(a, p->a.p, p->a.n, NULL, &x, &err) != 0 ||
            otp_decode_exact(a, p->b.p, p->b.n, NULL, &y, &err) != 0) {
            if (fail_begin(&tl, i))
                fprintf(stderr, "  pair decode failed at byte %zu: %s\n", err.offset, err.message);
            continue;
        }
        int c = sign(otp_cmp(x, y)), cr = sign(otp_cmp(y, x));
        bool eq = otp_eq(x, y), exact = otp_exact_eq(x, y);
        bool cmp_exact0 = otp_cmp_exact(x, y) == 0;
        bool hash_ok = !exact || otp_hash(x) == otp_hash(y);
        /* A total order answers exactly one of <, >, ==; if Erlang did not,
         * the data is wrong, not us, but it must not pass unseen. */
        bool erlang_total = (int)p->lt + (int)p->gt + (int)p->eq == 1;
        int want = p->lt ? -1 : p->gt ? 1 : 0;
        if (erlang_total && c == want && cr == -want && eq == p->eq && exact == p->exact &&
            cmp_exact0 == p->exact && hash_ok)
            continue;
        if (fail_begin(&tl, i)) {
            fprintf(stderr,
                    "  erlang: A < B %d, B < A %d, A == B %d, A =:= B %d%s\n"
                    "  ours:   otp_cmp(A,B) %d, otp_cmp(B,A) %d, otp_eq %d, otp_exact_eq %d, "
                    "otp_cmp_exact==0 %d, hashes %s\n",
                    p->lt, p->gt, p->eq, p->exact, erlang_total ? "" : " (inconsistent!)", c, cr,
                    eq, exact, cmp_exact0, hash_ok ? "ok" : "differ for =:= terms");
            show_text("A", p->atext.p, p->atext.n, 0);
            show_text("B", p->btext.p, p->btext.n, 0);
        }
    }
    otp_arena_free(a);
    finish(&tl, g.npairs);
}

static void put_u32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    fwrite(b, 1, 4, f);
}

/* The other direction: erl decodes our encodings and compares them =:= with
 * its own terms. A record we cannot encode goes as "missing" (it fails
 * here, and in test_bytes with the details). */
static void test_erlang_decodes_ours(void **state)
{
    (void)state;
    tally tl = {"erlang-decodes-ours", "record", 0, 0};
    char ours[4200], result[4200], log[4200];
    snprintf(ours, sizeof ours, "%s/ours.bin", g.dir);
    snprintf(result, sizeof result, "%s/result.txt", g.dir);
    snprintf(log, sizeof log, "%s/check.log", g.dir);
    FILE *f = fopen(ours, "wb");
    assert_non_null(f);
    put_u32(f, (uint32_t)g.nrec);
    otp_buf b = {0};
    otp_arena *a = otp_arena_new();
    size_t missing = 0;
    for (size_t i = 0; i < g.nrec; i++) {
        otp_arena_reset(a);
        otp_term t;
        b.len = 0;
        int rc = decode_record(a, i, &t, &tl) == 0 ? otp_encode_buf(&b, t, 0) : -OTP_EDECODE;
        if (rc != 0) {
            if (rc != -OTP_EDECODE && fail_begin(&tl, i))
                fprintf(stderr, "  otp_encode_buf: %s\n", otp_strerror(rc));
            put_u32(f, LIVE_MISSING);
            missing++;
            continue;
        }
        put_u32(f, (uint32_t)b.len);
        fwrite(b.data, 1, b.len, f);
    }
    otp_arena_free(a);
    otp_buf_free(&b);
    assert_int_equal(fclose(f), 0);

    char gen[4200];
    snprintf(gen, sizeof gen, "%s/gen.bin", g.dir);
    char *args[] = {gen, ours, result};
    assert_int_equal(run_etf_gen("check", log, args, 3), 0);
    size_t n;
    char *text = (char *)read_file(result, &n);
    assert_non_null(text);
    unsigned long ok_count = 0, skipped = 0;
    if (sscanf(text, "ok %lu skipped %lu", &ok_count, &skipped) != 2) {
        fprintf(stderr, "\nerlang-decodes-ours (seed %" PRIu32 "):\n%.8000s\n", g.seed, text);
        tl.failed++;
    } else if (ok_count + skipped != g.nrec || skipped != missing) {
        fprintf(stderr,
                "erlang-decodes-ours: erl says ok %lu skipped %lu, we sent %zu (%zu "
                "missing)\n",
                ok_count, skipped, g.nrec, missing);
        tl.failed++;
    }
    free(text);
    finish(&tl, g.nrec);
}

/* ------------------------------------------------------------ main */

static unsigned long env_ulong(const char *name, unsigned long dflt)
{
    const char *s = getenv(name);
    return s && *s ? strtoul(s, NULL, 0) : dflt;
}

static void cleanup_dir(void)
{
    static const char *const files[] = {"etf_gen.beam", "erlc.log",      "gen.log",
                                        "gen.bin",      "ours.bin",      "result.txt",
                                        "check.log",    "erl_crash.dump"};
    char path[4200];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", g.dir, files[i]);
        unlink(path);
    }
    rmdir(g.dir);
}

int main(void)
{
    if (!find_in_path("erl", g.erl, sizeof g.erl) || !find_in_path("erlc", g.erlc, sizeof g.erlc)) {
        printf("SKIP: test_etf_live needs erl and erlc on PATH\n");
        return 77;
    }
    const char *src = getenv("OTP_TEST_ERL_SRC");
    if (src && *src) {
        snprintf(g.src, sizeof g.src, "%s", src);
    } else { /* run by hand: the generator sits next to this file */
        const char *slash = strrchr(__FILE__, '/');
        snprintf(g.src, sizeof g.src, "%.*s/erl", slash ? (int)(slash - __FILE__) : 1,
                 slash ? __FILE__ : ".");
    }
    const char *tmp = getenv("OTP_TEST_TMP");
    /* One directory per build tree (each build has its own OTP_TEST_TMP), so
     * a failed run's files stay for a look but never pile up. */
    snprintf(g.dir, sizeof g.dir, "%s/etf_live", tmp && *tmp ? tmp : "/tmp");
    cleanup_dir();
    if (mkdir(g.dir, 0755) != 0) {
        fprintf(stderr, "live: mkdir %s: %s\n", g.dir, strerror(errno));
        return 1;
    }
    char dump[4200];
    snprintf(dump, sizeof dump, "%s/erl_crash.dump", g.dir);
    setenv("ERL_CRASH_DUMP", dump, 1);
    if (getenv("HOME") == NULL)
        setenv("HOME", g.dir, 1); /* erl refuses to start without one */

    g.seed = (uint32_t)env_ulong("OTP_LIVE_SEED",
                                 ((unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16)) &
                                     0x7fffffff);
    g.timeout_s = (int)env_ulong("OTP_LIVE_TIMEOUT", LIVE_ERL_TIMEOUT_S);
    unsigned long count = env_ulong("OTP_LIVE_COUNT", 3000);
    unsigned long npairs = env_ulong("OTP_LIVE_PAIRS", 3000);
    printf("test_etf_live: seed %" PRIu32 " (set OTP_LIVE_SEED to repeat), %lu terms, %lu pairs, "
           "dir %s\n",
           g.seed, count, npairs, g.dir);
    fflush(stdout);

    char srcfile[4200], log[4200], gen[4200];
    snprintf(srcfile, sizeof srcfile, "%s/etf_gen.erl", g.src);
    snprintf(log, sizeof log, "%s/erlc.log", g.dir);
    char *erlc_argv[] = {g.erlc, "-o", g.dir, srcfile, NULL};
    if (run_cmd(erlc_argv, log, g.timeout_s) != 0) {
        fprintf(stderr, "live: erlc %s failed\n", srcfile);
        show_log(log);
        return 1;
    }
    char seed_s[16], count_s[24], pairs_s[24];
    snprintf(seed_s, sizeof seed_s, "%" PRIu32, g.seed);
    snprintf(count_s, sizeof count_s, "%lu", count);
    snprintf(pairs_s, sizeof pairs_s, "%lu", npairs);
    snprintf(log, sizeof log, "%s/gen.log", g.dir);
    snprintf(gen, sizeof gen, "%s/gen.bin", g.dir);
    char *gen_args[] = {seed_s, count_s, pairs_s, gen};
    if (run_etf_gen("gen", log, gen_args, 4) != 0 || !load_gen(gen))
        return 1;
    size_t nflag[4] = {0};
    for (size_t i = 0; i < g.nrec; i++)
        for (int f = 0; f < 4; f++)
            nflag[f] += (g.rec[i].flags >> f) & 1;
    printf("test_etf_live: %zu terms (%zu with comparable text, %zu parseable, %zu with minor 1 "
           "bytes, %zu with maps over 32 keys), %zu pairs\n",
           g.nrec, nflag[0], nflag[1], nflag[2], nflag[3], g.npairs);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes), cmocka_unit_test(test_minor1),
        cmocka_unit_test(test_print), cmocka_unit_test(test_parse),
        cmocka_unit_test(test_order), cmocka_unit_test(test_erlang_decodes_ours),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    free(g.rec);
    free(g.pairs);
    free(g.gen);
    if (failed == 0)
        cleanup_dir(); /* on failure the files stay, for a look by hand */
    return failed;
}
