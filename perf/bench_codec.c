/* bench_codec.c — ETF encode/decode throughput of libotp, side by side in one
 * run with Erlang's term_to_binary/binary_to_term (perf/bench_codec.erl, run
 * by this program) and with erl_interface's generic and typed paths, on one
 * fixed mix of terms; and, in a section of its own, the zero-copy paths:
 * otp_encode_iov against term_to_iovec, otp_decode_binary against
 * binary_to_term. Rounds are interleaved; medians and ratios go to stdout
 * as markdown. The mix is the `mix[]` table below (see perf/README.md).
 */
#include <ei.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "otp/etf.h"
#include "otp/term.h"

extern char **environ;

#ifndef BENCH_ERL
#define BENCH_ERL ""
#endif
#ifndef BENCH_BEAM_DIR
#define BENCH_BEAM_DIR ""
#endif

#define MAX_ROUNDS 31
#define BIN_1K     1024
#define BIN_1M     (1024 * 1024)
/* Decoded binaries land here; sized for the largest binary in the mix. */
#define SCRATCH_CAP (BIN_1M + 64)
/* The zero-copy encoder's iovecs: a sender's small fixed array (an item of
 * the mix needs at most 2 entries: its bytes, and one large binary). */
#define IOV_CAP 8

/* ------------------------------------------------------------ the data
 *
 * Each item's values exist once, as C data; libotp builds its term from
 * them, and the ei encoders read them as a C programmer's structs would. */

#define PID_NODE     "bench@localhost"
#define PID_ID       123
#define PID_SERIAL   0
#define PID_CREATION 1710000000u

static const char *const k_string = "hello world"; /* 11 characters: STRING_EXT */

static const struct person {
    const char *tag; /* record name */
    long id;
    const char *name; /* a binary */
    const char *role; /* an atom */
    double height;
    int active;
} k_person = {"person", 12345, "Alice Smith", "admin", 1.75, 1};

/* #{active => true, id => 42, name => <<"bob">>, score => 9.5}; on the wire
 * keys come in Erlang's term order, which ei's writer must follow by hand. */
static const struct account {
    int active;
    long id;
    const char *name;
    double score;
} k_account = {1, 42, "bob", 9.5};

#define LIST_LEN 100
/* [{N, key, N*N} || N <- lists:seq(1, 100)] */
struct row {
    long n;
    const char *key;
    long sq;
};
static struct row k_rows[LIST_LEN];

static uint8_t k_bin1k[BIN_1K];
static uint8_t *k_bin1m;
static erlang_pid k_pid;

static void data_init(void)
{
    for (int i = 0; i < LIST_LEN; i++)
        k_rows[i] = (struct row){i + 1, "key", (long)(i + 1) * (i + 1)};
    for (size_t i = 0; i < BIN_1K; i++)
        k_bin1k[i] = (uint8_t)(i * 31 + 7);
    k_bin1m = malloc(BIN_1M);
    if (!k_bin1m)
        abort();
    for (size_t i = 0; i < BIN_1M; i++)
        k_bin1m[i] = (uint8_t)(i * 131 + (i >> 11));
    memset(&k_pid, 0, sizeof k_pid);
    strcpy(k_pid.node, PID_NODE);
    k_pid.num = PID_ID;
    k_pid.serial = PID_SERIAL;
    k_pid.creation = PID_CREATION;
}

/* What the decoders store into: the "C variables" of a typed decode, and the
 * buffer every decoded binary or string is copied to. */
typedef struct sinkbuf {
    char *scratch; /* SCRATCH_CAP bytes */
    char atom[MAXATOMLEN_UTF8];
    char atom2[MAXATOMLEN_UTF8];
    erlang_pid pid;
    struct {
        long n, sq;
        char key[MAXATOMLEN];
    } rows[LIST_LEN];
} sinkbuf;

/* ------------------------------------------------------- libotp builders */

static otp_term build_int_small(otp_arena *a)
{
    return otp_int(a, 42);
}
static otp_term build_int_neg(otp_arena *a)
{
    return otp_int(a, -123456);
}
static otp_term build_atom(otp_arena *a)
{
    return otp_atom("hello_world");
}
static otp_term build_float(otp_arena *a)
{
    return otp_float(a, 3.141592653589793);
}
static otp_term build_string(otp_arena *a)
{
    return otp_string(a, k_string);
}
static otp_term build_pid(otp_arena *a)
{
    return otp_pid(a, otp_atom(PID_NODE), PID_ID, PID_SERIAL, PID_CREATION);
}
static otp_term build_record(otp_arena *a)
{
    const struct person *p = &k_person;
    return OTP_TUPLE(a, otp_atom(p->tag), otp_int(a, p->id), otp_binary_str(a, p->name),
                     otp_atom(p->role), otp_float(a, p->height), otp_bool(p->active));
}
static otp_term build_map(otp_arena *a)
{
    const struct account *m = &k_account;
    return OTP_MAP(a, otp_atom("active"), otp_bool(m->active), otp_atom("id"), otp_int(a, m->id),
                   otp_atom("name"), otp_binary_str(a, m->name), otp_atom("score"),
                   otp_float(a, m->score));
}
static otp_term build_list100(otp_arena *a)
{
    otp_term el[LIST_LEN];
    for (int i = 0; i < LIST_LEN; i++)
        el[i] = OTP_TUPLE(a, otp_int(a, k_rows[i].n), otp_atom(k_rows[i].key),
                          otp_int(a, k_rows[i].sq));
    return otp_list_v(a, LIST_LEN, el);
}
static otp_term build_bin1k(otp_arena *a)
{
    return otp_binary(a, k_bin1k, BIN_1K);
}
static otp_term build_bin1m(otp_arena *a)
{
    return otp_binary(a, k_bin1m, BIN_1M);
}

/* ------------------------------------------- ei generic encode (ei_x_*) */

static int eix_int_small(ei_x_buff *x)
{
    return ei_x_encode_version(x) | ei_x_encode_long(x, 42);
}
static int eix_int_neg(ei_x_buff *x)
{
    return ei_x_encode_version(x) | ei_x_encode_long(x, -123456);
}
static int eix_atom(ei_x_buff *x)
{
    return ei_x_encode_version(x) | ei_x_encode_atom(x, "hello_world");
}
static int eix_float(ei_x_buff *x)
{
    return ei_x_encode_version(x) | ei_x_encode_double(x, 3.141592653589793);
}
static int eix_string(ei_x_buff *x)
{
    return ei_x_encode_version(x) | ei_x_encode_string(x, k_string);
}
static int eix_pid(ei_x_buff *x)
{
    return ei_x_encode_version(x) | ei_x_encode_pid(x, &k_pid);
}
static int eix_record(ei_x_buff *x)
{
    const struct person *p = &k_person;
    return ei_x_encode_version(x) | ei_x_encode_tuple_header(x, 6) | ei_x_encode_atom(x, p->tag) |
           ei_x_encode_long(x, p->id) | ei_x_encode_binary(x, p->name, (int)strlen(p->name)) |
           ei_x_encode_atom(x, p->role) | ei_x_encode_double(x, p->height) |
           ei_x_encode_boolean(x, p->active);
}
static int eix_map(ei_x_buff *x)
{
    const struct account *m = &k_account;
    return ei_x_encode_version(x) | ei_x_encode_map_header(x, 4) | ei_x_encode_atom(x, "active") |
           ei_x_encode_boolean(x, m->active) | ei_x_encode_atom(x, "id") |
           ei_x_encode_long(x, m->id) | ei_x_encode_atom(x, "name") |
           ei_x_encode_binary(x, m->name, (int)strlen(m->name)) | ei_x_encode_atom(x, "score") |
           ei_x_encode_double(x, m->score);
}
static int eix_list100(ei_x_buff *x)
{
    int r = ei_x_encode_version(x) | ei_x_encode_list_header(x, LIST_LEN);
    for (int i = 0; i < LIST_LEN; i++)
        r |= ei_x_encode_tuple_header(x, 3) | ei_x_encode_long(x, k_rows[i].n) |
             ei_x_encode_atom(x, k_rows[i].key) | ei_x_encode_long(x, k_rows[i].sq);
    return r | ei_x_encode_empty_list(x);
}
static int eix_bin1k(ei_x_buff *x)
{
    return ei_x_encode_version(x) | ei_x_encode_binary(x, k_bin1k, BIN_1K);
}
static int eix_bin1m(ei_x_buff *x)
{
    return ei_x_encode_version(x) | ei_x_encode_binary(x, k_bin1m, BIN_1M);
}

/* ----------------------------------- ei typed encode (fixed buffer) */

static int ei_int_small(char *b, int *i)
{
    return ei_encode_version(b, i) | ei_encode_long(b, i, 42);
}
static int ei_int_neg(char *b, int *i)
{
    return ei_encode_version(b, i) | ei_encode_long(b, i, -123456);
}
static int ei_atom(char *b, int *i)
{
    return ei_encode_version(b, i) | ei_encode_atom(b, i, "hello_world");
}
static int ei_float(char *b, int *i)
{
    return ei_encode_version(b, i) | ei_encode_double(b, i, 3.141592653589793);
}
static int ei_string(char *b, int *i)
{
    return ei_encode_version(b, i) | ei_encode_string(b, i, k_string);
}
static int ei_pid(char *b, int *i)
{
    return ei_encode_version(b, i) | ei_encode_pid(b, i, &k_pid);
}
static int ei_record(char *b, int *i)
{
    const struct person *p = &k_person;
    return ei_encode_version(b, i) | ei_encode_tuple_header(b, i, 6) |
           ei_encode_atom(b, i, p->tag) | ei_encode_long(b, i, p->id) |
           ei_encode_binary(b, i, p->name, (long)strlen(p->name)) | ei_encode_atom(b, i, p->role) |
           ei_encode_double(b, i, p->height) | ei_encode_boolean(b, i, p->active);
}
static int ei_map(char *b, int *i)
{
    const struct account *m = &k_account;
    return ei_encode_version(b, i) | ei_encode_map_header(b, i, 4) |
           ei_encode_atom(b, i, "active") | ei_encode_boolean(b, i, m->active) |
           ei_encode_atom(b, i, "id") | ei_encode_long(b, i, m->id) | ei_encode_atom(b, i, "name") |
           ei_encode_binary(b, i, m->name, (long)strlen(m->name)) | ei_encode_atom(b, i, "score") |
           ei_encode_double(b, i, m->score);
}
static int ei_list100(char *b, int *i)
{
    int r = ei_encode_version(b, i) | ei_encode_list_header(b, i, LIST_LEN);
    for (int k = 0; k < LIST_LEN; k++)
        r |= ei_encode_tuple_header(b, i, 3) | ei_encode_long(b, i, k_rows[k].n) |
             ei_encode_atom(b, i, k_rows[k].key) | ei_encode_long(b, i, k_rows[k].sq);
    return r | ei_encode_empty_list(b, i);
}
static int ei_bin1k(char *b, int *i)
{
    return ei_encode_version(b, i) | ei_encode_binary(b, i, k_bin1k, BIN_1K);
}
static int ei_bin1m(char *b, int *i)
{
    return ei_encode_version(b, i) | ei_encode_binary(b, i, k_bin1m, BIN_1M);
}

/* ------------------------------- ei typed decode (shape known, into C)
 *
 * Each returns 0 or -1 and folds what it read into *sum so the reads count.
 * Binaries go to s->scratch, which ei_decode_binary does not bound: a typed
 * decoder trusts the shape, which is part of why it is fast. */

static int eid_version(const char *b, int *i)
{
    int v;
    return ei_decode_version(b, i, &v) < 0 || v != 131 ? -1 : 0;
}
static int eid_int(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    long v;
    int r = eid_version(b, i) | ei_decode_long(b, i, &v);
    *sum += (uint64_t)v;
    return r;
}
static int eid_atom(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    int r = eid_version(b, i) | ei_decode_atom(b, i, s->atom);
    *sum += (uint8_t)s->atom[0];
    return r;
}
static int eid_float(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    double d;
    int r = eid_version(b, i) | ei_decode_double(b, i, &d);
    *sum += (uint64_t)(d * 1e6);
    return r;
}
static int eid_string(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    int r = eid_version(b, i) | ei_decode_string(b, i, s->scratch);
    *sum += (uint8_t)s->scratch[10];
    return r;
}
static int eid_pid(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    int r = eid_version(b, i) | ei_decode_pid(b, i, &s->pid);
    *sum += s->pid.num + s->pid.creation + (uint8_t)s->pid.node[0];
    return r;
}
static int eid_record(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    int arity, active;
    long id, namelen;
    double height;
    int r = eid_version(b, i) | ei_decode_tuple_header(b, i, &arity) |
            ei_decode_atom(b, i, s->atom) | ei_decode_long(b, i, &id) |
            ei_decode_binary(b, i, s->scratch, &namelen) | ei_decode_atom(b, i, s->atom2) |
            ei_decode_double(b, i, &height) | ei_decode_boolean(b, i, &active);
    if (arity != 6 || strcmp(s->atom, "person") != 0)
        return -1;
    *sum += (uint64_t)id + (uint64_t)namelen + (uint64_t)(height * 100) + (uint64_t)active +
            (uint8_t)s->atom2[0];
    return r;
}
/* Map keys may come in any order on the wire, so a correct typed decoder
 * dispatches on each key rather than assuming Erlang's order. */
static int eid_map(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    int pairs, active = 0;
    long id = 0, namelen = 0;
    double score = 0;
    int r = eid_version(b, i) | ei_decode_map_header(b, i, &pairs);
    for (int k = 0; k < pairs && r == 0; k++) {
        r |= ei_decode_atom(b, i, s->atom);
        if (strcmp(s->atom, "active") == 0)
            r |= ei_decode_boolean(b, i, &active);
        else if (strcmp(s->atom, "id") == 0)
            r |= ei_decode_long(b, i, &id);
        else if (strcmp(s->atom, "name") == 0)
            r |= ei_decode_binary(b, i, s->scratch, &namelen);
        else if (strcmp(s->atom, "score") == 0)
            r |= ei_decode_double(b, i, &score);
        else
            return -1;
    }
    *sum += (uint64_t)active + (uint64_t)id + (uint64_t)namelen + (uint64_t)score;
    return r;
}
static int eid_list100(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    int n, arity, tail;
    int r = eid_version(b, i) | ei_decode_list_header(b, i, &n);
    if (n != LIST_LEN)
        return -1;
    for (int k = 0; k < n; k++) {
        r |= ei_decode_tuple_header(b, i, &arity) | ei_decode_long(b, i, &s->rows[k].n) |
             ei_decode_atom(b, i, s->rows[k].key) | ei_decode_long(b, i, &s->rows[k].sq);
        if (arity != 3)
            return -1;
        *sum += (uint64_t)s->rows[k].sq;
    }
    return r | ei_decode_list_header(b, i, &tail) | (tail != 0 ? -1 : 0);
}
static int eid_bin(const char *b, int *i, sinkbuf *s, uint64_t *sum)
{
    long len;
    int r = eid_version(b, i) | ei_decode_binary(b, i, s->scratch, &len);
    *sum += (uint64_t)len + (uint8_t)s->scratch[len - 1];
    return r;
}

/* ---------------------------------------- ei generic decode (one walker)
 *
 * What a C node does when it does not know the shape: ei_decode_ei_term on
 * every value, descending into containers and reading strings and binaries
 * (which ei_decode_ei_term only sizes) with their own calls. A counter of
 * values still to read replaces recursion: a container adds its children. */
static int eix_walk(const char *b, int len, sinkbuf *s, uint64_t *sum)
{
    int i = 0;
    long todo = 1;
    if (eid_version(b, &i) < 0)
        return -1;
    while (todo-- > 0) {
        ei_term t;
        int r = ei_decode_ei_term(b, &i, &t);
        if (r < 0)
            return -1;
        if (r == 1) {
            switch (t.ei_type) {
            case ERL_SMALL_TUPLE_EXT:
            case ERL_LARGE_TUPLE_EXT:
                todo += t.arity;
                break;
            case ERL_LIST_EXT:
                todo += t.arity + 1L; /* elements, then the tail */
                break;
            case ERL_MAP_EXT:
                todo += 2L * t.arity;
                break;
            case ERL_NIL_EXT:
                break;
            case ERL_SMALL_INTEGER_EXT:
            case ERL_INTEGER_EXT:
                *sum += (uint64_t)t.value.i_val;
                break;
            case ERL_FLOAT_EXT:
                *sum += (uint64_t)(t.value.d_val * 1e6);
                break;
            case ERL_ATOM_EXT:
                *sum += (uint8_t)t.value.atom_name[0];
                break;
            case ERL_PID_EXT:
                *sum += t.value.pid.num;
                break;
            default:
                break;
            }
            continue;
        }
        long n;
        switch (t.ei_type) {
        case ERL_STRING_EXT:
            if (t.size >= SCRATCH_CAP || ei_decode_string(b, &i, s->scratch) < 0)
                return -1;
            *sum += (uint64_t)t.size + (uint8_t)s->scratch[0];
            break;
        case ERL_BINARY_EXT:
            if (t.size > SCRATCH_CAP || ei_decode_binary(b, &i, s->scratch, &n) < 0)
                return -1;
            *sum += (uint64_t)n + (n ? (uint8_t)s->scratch[n - 1] : 0);
            break;
        default: /* bignums, bitstrings: not in the mix */
            if (ei_skip_term(b, &i) < 0)
                return -1;
        }
    }
    return i == len ? 0 : -1;
}

/* ------------------------------------------------------------- the mix */

typedef struct item {
    const char *name;
    const char *what;
    otp_term (*build)(otp_arena *a);
    int (*eix_enc)(ei_x_buff *x);
    int (*ei_enc)(char *buf, int *index);
    int (*ei_dec)(const char *buf, int *index, sinkbuf *s, uint64_t *sum);
    /* filled at start */
    otp_term term;
    otp_buf enc;     /* libotp's encoding: the one payload every side decodes */
    otp_term encbin; /* the same bytes as a binary term, as a receive buffer */
} item;

/* The one place the mix is defined: name, what it is, and its four codecs
 * (libotp builder, ei generic encoder, ei typed encoder, ei typed decoder). */
#define ITEM(n, w, b, x, e, d)                                                                     \
    {                                                                                              \
        .name = n, .what = w, .build = b, .eix_enc = x, .ei_enc = e, .ei_dec = d                   \
    }
static item mix[] = {
    ITEM("int_small", "42", build_int_small, eix_int_small, ei_int_small, eid_int),
    ITEM("int_neg", "-123456", build_int_neg, eix_int_neg, ei_int_neg, eid_int),
    ITEM("atom", "hello_world", build_atom, eix_atom, ei_atom, eid_atom),
    ITEM("float", "3.141592653589793", build_float, eix_float, ei_float, eid_float),
    ITEM("string", "\"hello world\"", build_string, eix_string, ei_string, eid_string),
    ITEM("pid", "<" PID_NODE ".123.0>", build_pid, eix_pid, ei_pid, eid_pid),
    ITEM("record", "{person,12345,<<\"Alice Smith\">>,admin,1.75,true}", build_record, eix_record,
         ei_record, eid_record),
    ITEM("map", "#{active,id,name,score}", build_map, eix_map, ei_map, eid_map),
    ITEM("list_100", "[{N,key,N*N}], N=1..100", build_list100, eix_list100, ei_list100,
         eid_list100),
    ITEM("bin_1k", "<<1024 bytes>>", build_bin1k, eix_bin1k, ei_bin1k, eid_bin),
    ITEM("bin_1m", "<<1 MiB>>", build_bin1m, eix_bin1m, ei_bin1m, eid_bin),
};
#define N_ITEMS (sizeof mix / sizeof mix[0])
#define ITEM_1M (N_ITEMS - 1)

/* ------------------------------------------------------ the timed loops */

/* The first N_IMPL are the main tables' columns; the zero-copy section adds
 * libotp's zero-copy paths (otp_encode_iov, otp_decode_binary) and Erlang's
 * term_to_iovec (encode only: Erlang has no zero-copy decode, its column
 * there is binary_to_term, i.e. IMPL_ERL's decode). */
enum { IMPL_OTP, IMPL_ERL, IMPL_EIX, IMPL_EI, N_IMPL, IMPL_OTPZC = N_IMPL, IMPL_ERLZC, N_IMPL_ALL };
enum { OP_ENC, OP_DEC, N_OP };
static const char *const impl_name[N_IMPL_ALL] = {"libotp",   "Erlang",    "ei generic",
                                                  "ei typed", "libotp zc", "Erlang term_to_iovec"};
static const char *const op_name[N_OP] = {"encode", "decode"};

typedef struct bench {
    otp_arena *arena; /* decode target, reset every iteration */
    otp_buf obuf;     /* encode target, len reset every iteration */
    ei_x_buff x;      /* ei generic encode target, index reset every iteration */
    char *eibuf;      /* ei typed encode target */
    sinkbuf *sink;
    otp_iobuf iob;             /* zero-copy encode target, reset every iteration */
    struct iovec iov[IOV_CAP]; /* and the iovecs a sender fills from it */
} bench;

static volatile uint64_t g_sink; /* where every checksum ends up */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench_codec: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* Runs iters iterations of one implementation/operation on one item and
 * returns a checksum of every iteration's result. The loop is inside each
 * case so that the dispatch is paid once per batch, not per iteration. */
static uint64_t run(bench *b, int impl, int op, item *it, uint64_t iters)
{
    uint64_t sum = 0;
    if (impl == IMPL_OTP && op == OP_ENC) {
        for (uint64_t k = 0; k < iters; k++) {
            b->obuf.len = 0;
            if (otp_encode_buf(&b->obuf, it->term, 0) < 0)
                die("otp_encode_buf failed on %s", it->name);
            sum += b->obuf.len + b->obuf.data[b->obuf.len - 1];
        }
    } else if (impl == IMPL_OTP && op == OP_DEC) {
        for (uint64_t k = 0; k < iters; k++) {
            otp_term t;
            otp_arena_reset(b->arena);
            if (otp_decode(b->arena, it->enc.data, it->enc.len, NULL, &t, NULL, NULL) < 0)
                die("otp_decode failed on %s", it->name);
            sum += t;
        }
    } else if (impl == IMPL_OTPZC && op == OP_ENC) {
        /* What a sender does before writev: encode, then fill its iovecs. */
        for (uint64_t k = 0; k < iters; k++) {
            otp_iobuf_reset(&b->iob);
            if (otp_encode_iov(&b->iob, it->term, 0) < 0)
                die("otp_encode_iov failed on %s", it->name);
            size_t n = otp_iobuf_iovec(&b->iob, b->iov, IOV_CAP);
            if (n == 0 || n > IOV_CAP)
                die("otp_iobuf_iovec: %s needs %zu iovecs", it->name, n);
            const struct iovec *last = &b->iov[n - 1];
            for (size_t j = 0; j < n; j++)
                sum += b->iov[j].iov_len;
            sum += ((const uint8_t *)last->iov_base)[last->iov_len - 1];
        }
    } else if (impl == IMPL_OTPZC && op == OP_DEC) {
        for (uint64_t k = 0; k < iters; k++) {
            otp_term t;
            otp_arena_reset(b->arena);
            if (otp_decode_binary(b->arena, it->encbin, NULL, &t, NULL, NULL) < 0)
                die("otp_decode_binary failed on %s", it->name);
            sum += t;
        }
    } else if (impl == IMPL_EIX && op == OP_ENC) {
        for (uint64_t k = 0; k < iters; k++) {
            b->x.index = 0;
            if (it->eix_enc(&b->x) < 0)
                die("ei_x_encode failed on %s", it->name);
            sum += (uint64_t)b->x.index + (uint8_t)b->x.buff[b->x.index - 1];
        }
    } else if (impl == IMPL_EIX && op == OP_DEC) {
        for (uint64_t k = 0; k < iters; k++)
            if (eix_walk((const char *)it->enc.data, (int)it->enc.len, b->sink, &sum) < 0)
                die("ei generic decode failed on %s", it->name);
    } else if (impl == IMPL_EI && op == OP_ENC) {
        for (uint64_t k = 0; k < iters; k++) {
            int i = 0;
            if (it->ei_enc(b->eibuf, &i) < 0)
                die("ei_encode failed on %s", it->name);
            sum += (uint64_t)i + (uint8_t)b->eibuf[i - 1];
        }
    } else if (impl == IMPL_EI && op == OP_DEC) {
        for (uint64_t k = 0; k < iters; k++) {
            int i = 0;
            if (it->ei_dec((const char *)it->enc.data, &i, b->sink, &sum) < 0 ||
                (size_t)i != it->enc.len)
                die("ei typed decode failed on %s", it->name);
        }
    }
    return sum;
}

/* ns per operation of one batch. */
static double measure(bench *b, int impl, int op, item *it, uint64_t iters)
{
    uint64_t t0 = now_ns();
    g_sink += run(b, impl, op, it, iters);
    return (double)(now_ns() - t0) / (double)iters;
}

/* Warm-up and calibration: doubles the batch until it lasts warm_ns, then
 * times one more warm batch of that length (the first ones ran on cold
 * caches and would overstate the cost) and sizes the batch to budget_ns. */
static uint64_t calibrate(bench *b, int impl, int op, item *it, uint64_t warm_ns,
                          uint64_t budget_ns)
{
    uint64_t iters = 1;
    double per;
    for (;;) {
        uint64_t t0 = now_ns();
        g_sink += run(b, impl, op, it, iters);
        uint64_t dt = now_ns() - t0;
        if (dt >= warm_ns) {
            per = (double)dt / (double)iters;
            break;
        }
        iters *= 2;
    }
    iters = (uint64_t)((double)warm_ns / per) + 1;
    per = measure(b, impl, op, it, iters);
    uint64_t n = (uint64_t)((double)budget_ns / per);
    return n ? n : 1;
}

/* --------------------------------------------------- the Erlang side */

typedef struct erl_peer {
    pid_t pid;
    FILE *in;   /* its stdout */
    FILE *out;  /* its stdin */
    bool ready; /* it started and checked the mix */
    bool ok;    /* and has not died since */
} erl_peer;

static int write_mix_file(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    for (size_t k = 0; k < N_ITEMS; k++) {
        size_t nl = strlen(mix[k].name);
        uint8_t h[2] = {(uint8_t)(nl >> 8), (uint8_t)nl};
        uint8_t l[4] = {(uint8_t)(mix[k].enc.len >> 24), (uint8_t)(mix[k].enc.len >> 16),
                        (uint8_t)(mix[k].enc.len >> 8), (uint8_t)mix[k].enc.len};
        fwrite(h, 1, 2, f);
        fwrite(mix[k].name, 1, nl, f);
        fwrite(l, 1, 4, f);
        fwrite(mix[k].enc.data, 1, mix[k].enc.len, f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

static int item_index(const char *name)
{
    for (size_t k = 0; k < N_ITEMS; k++)
        if (strcmp(mix[k].name, name) == 0)
            return (int)k;
    return -1;
}

/* What the Erlang side reports per item and round: term_to_binary,
 * binary_to_term, term_to_iovec. */
enum { EOP_ENC = OP_ENC, EOP_DEC = OP_DEC, EOP_ENC_IOV, N_EOP };
/* Its start-up checks, per item: term_to_binary's bytes, and term_to_iovec's
 * gathered, equal libotp's (1), differ (0), or were not reported (-1). */
enum { CHECK_TTB, CHECK_IOV, N_CHECK };

/* Reads lines until `until`; "enc|enc_iov|dec NAME NS" lines go into res
 * (when not NULL), "check|check_iov NAME same|diff" lines into checks.
 * Returns -1 on EOF. */
static int erl_read(erl_peer *e, const char *until, double res[N_EOP][N_ITEMS],
                    int checks[N_CHECK][N_ITEMS])
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = -1;
    while ((n = getline(&line, &cap, e->in)) > 0) {
        char w[16], w2[16], name[64];
        double v;
        int eop = -1, chk = -1;
        line[strcspn(line, "\n")] = 0;
        if (strcmp(line, until) == 0) {
            rc = 0;
            break;
        }
        if (sscanf(line, "%15s %63s", w, name) == 2) {
            eop = strcmp(w, "enc") == 0       ? EOP_ENC
                  : strcmp(w, "dec") == 0     ? EOP_DEC
                  : strcmp(w, "enc_iov") == 0 ? EOP_ENC_IOV
                                              : -1;
            chk = strcmp(w, "check") == 0       ? CHECK_TTB
                  : strcmp(w, "check_iov") == 0 ? CHECK_IOV
                                                : -1;
        }
        if (res && eop >= 0 && sscanf(line, "%15s %63s %lf", w, name, &v) == 3 &&
            item_index(name) >= 0) {
            res[eop][item_index(name)] = v;
        } else if (checks && chk >= 0 && sscanf(line, "%15s %63s %15s", w, name, w2) == 3 &&
                   item_index(name) >= 0) {
            checks[chk][item_index(name)] = strcmp(w2, "same") == 0;
        } else {
            fprintf(stderr, "erl: %s\n", line);
        }
    }
    free(line);
    return rc;
}

static void erl_start(erl_peer *e, const char *erl, const char *beam_dir, const char *mix_path,
                      unsigned budget_ms, int checks[N_CHECK][N_ITEMS])
{
    int to_erl[2], from_erl[2];
    char ms[16];
    memset(e, 0, sizeof *e);
    if (!erl[0] || !beam_dir[0]) {
        fprintf(stderr,
                "bench_codec: no erl or no compiled bench_codec.beam: Erlang column skipped\n");
        return;
    }
    char beam[4096];
    snprintf(beam, sizeof beam, "%s/bench_codec.beam", beam_dir);
    if (access(beam, R_OK) != 0) {
        fprintf(stderr,
                "bench_codec: %s missing (build the bench_codec target): Erlang column skipped\n",
                beam);
        return;
    }
    snprintf(ms, sizeof ms, "%u", budget_ms);
    /* One scheduler and no busy-waiting: the process being measured runs on
     * one scheduler anyway, and idle schedulers must not spin while the C
     * side measures. */
    char *argv[] = {
        (char *)erl, "-noshell",       "+S",   "1",   "+sbwt",          "none", "+sbwtdcpu",
        "none",      "+sbwtdio",       "none", "-pa", (char *)beam_dir, "-run", "bench_codec",
        "main",      (char *)mix_path, ms,     NULL};
    if (pipe(to_erl) < 0 || pipe(from_erl) < 0)
        die("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_erl[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from_erl[1], 1);
    posix_spawn_file_actions_addclose(&fa, to_erl[1]);
    posix_spawn_file_actions_addclose(&fa, from_erl[0]);
    int rc = posix_spawnp(&e->pid, erl, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(to_erl[0]);
    close(from_erl[1]);
    if (rc != 0) {
        fprintf(stderr, "bench_codec: cannot start %s: %s\n", erl, strerror(rc));
        e->pid = 0;
        close(to_erl[1]);
        close(from_erl[0]);
        return;
    }
    e->in = fdopen(from_erl[0], "r");
    e->out = fdopen(to_erl[1], "w");
    e->ready = e->ok = erl_read(e, "ready", NULL, checks) == 0;
    if (!e->ok)
        fprintf(stderr, "bench_codec: the Erlang side did not start: Erlang column skipped\n");
}

static void erl_stop(erl_peer *e)
{
    if (e->out)
        fclose(e->out); /* EOF on its stdin: it halts */
    if (e->in)
        fclose(e->in);
    if (e->pid > 0)
        waitpid(e->pid, NULL, 0);
}

/* ----------------------------------------------------------- reporting */

/* Medians are taken over rounds and over the cells of one table. */
_Static_assert(MAX_ROUNDS <= BENCH_MEDIAN_CAP && N_OP * N_ITEMS <= BENCH_MEDIAN_CAP,
               "median buffer too small");

static double median(const double *v, int n)
{
    return median_range(v, n, NULL, NULL);
}

static void fmt_ns(char *out, size_t cap, double ns)
{
    if (ns <= 0)
        snprintf(out, cap, "n/a");
    else if (ns < 100)
        snprintf(out, cap, "%.1f", ns);
    else
        snprintf(out, cap, "%.0f", ns);
}

static void fmt_ratio(char *out, size_t cap, double other, double ours)
{
    if (other <= 0 || ours <= 0)
        snprintf(out, cap, "n/a");
    else
        snprintf(out, cap, "%.2fx", other / ours);
}

static void print_row(const char *name, const char *bytes, const double ns[N_IMPL])
{
    char c[N_IMPL][32], r[N_IMPL][32];
    for (int m = 0; m < N_IMPL; m++) {
        fmt_ns(c[m], sizeof c[m], ns[m]);
        fmt_ratio(r[m], sizeof r[m], ns[m], ns[IMPL_OTP]);
    }
    printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, bytes, c[IMPL_OTP],
           c[IMPL_ERL], c[IMPL_EIX], c[IMPL_EI], r[IMPL_ERL], r[IMPL_EIX], r[IMPL_EI]);
}

/* The geometric mean of the per-item ratios: every item weighs the same,
 * where the sums above are ruled by the largest items. */
static void print_geomean(double med[N_IMPL_ALL][N_ITEMS])
{
    char r[N_IMPL][32];
    for (int m = 0; m < N_IMPL; m++) {
        double lsum = 0;
        bool ok = true;
        for (size_t k = 0; k < N_ITEMS; k++) {
            ok = ok && med[m][k] > 0 && med[IMPL_OTP][k] > 0;
            if (ok)
                lsum += log(med[m][k] / med[IMPL_OTP][k]);
        }
        if (ok)
            snprintf(r[m], sizeof r[m], "%.2fx", exp(lsum / (double)N_ITEMS));
        else
            snprintf(r[m], sizeof r[m], "n/a");
    }
    printf("| geometric mean of ratios | | | | | | %s | %s | %s |\n", r[IMPL_ERL], r[IMPL_EIX],
           r[IMPL_EI]);
}

/* Sums an implementation's medians over the items (all, or all but the
 * 1 MiB binary); 0 when any item lacks a measurement, so the row says n/a. */
static double mix_total(const double med[N_ITEMS], bool with_1m)
{
    double t = 0;
    for (size_t k = 0; k < N_ITEMS; k++) {
        if (k == ITEM_1M && !with_1m)
            continue;
        if (med[k] <= 0)
            return 0;
        t += med[k];
    }
    return t;
}

/* The geometric mean of theirs/ours over the items; 0 when any is missing. */
static double geomean_ratio(const double theirs[N_ITEMS], const double ours[N_ITEMS])
{
    double lsum = 0;
    for (size_t k = 0; k < N_ITEMS; k++) {
        if (theirs[k] <= 0 || ours[k] <= 0)
            return 0;
        lsum += log(theirs[k] / ours[k]);
    }
    return exp(lsum / (double)N_ITEMS);
}

/* (max - min) / median of one cell's rounds; -1 when not measured. */
static double cell_spread(const double *r, int rounds, double med)
{
    double lo = r[0], hi = lo;
    for (int k = 1; k < rounds; k++) {
        lo = fmin(lo, r[k]);
        hi = fmax(hi, r[k]);
    }
    return med > 0 && lo > 0 ? (hi - lo) / med : -1;
}

/* What the start-up checks of the zero-copy paths found, for the report. */
typedef struct zc_checks {
    bool iov_same;   /* every item's gathered iovecs equal otp_encode_buf's bytes */
    bool dec_same;   /* every item's otp_decode_binary result is otp_exact_eq */
    bool iov_shares; /* the large binaries are referenced by the iovecs */
    bool dec_shares; /* and point into the input after otp_decode_binary */
} zc_checks;

static void print_zc_row(const char *name, const char *bytes, double ours, double theirs)
{
    char c[2][32], r[32];
    fmt_ns(c[0], sizeof c[0], ours);
    fmt_ns(c[1], sizeof c[1], theirs);
    fmt_ratio(r, sizeof r, theirs, ours);
    printf("| %s | %s | %s | %s | %s |\n", name, bytes, c[0], c[1], r);
}

/* The zero-copy section: libotp's zero-copy paths against Erlang's nearest
 * equivalents (term_to_iovec; binary_to_term, which has no zero-copy form). */
static void report_zc(int rounds, bool erl_ran, const int erl_checks[N_CHECK][N_ITEMS],
                      const zc_checks *zc, double res[N_IMPL_ALL][N_OP][N_ITEMS][MAX_ROUNDS],
                      double med[N_OP][N_IMPL_ALL][N_ITEMS])
{
    static const char *const heading[N_OP] = {
        "encode: otp_encode_iov vs term_to_iovec",
        "decode: otp_decode_binary vs binary_to_term",
    };
    static const char *const erl_col[N_OP] = {"Erlang term_to_iovec ns",
                                              "Erlang binary_to_term ns"};
    /* Erlang's column: term_to_iovec for encode, binary_to_term for decode. */
    const int erl_impl[N_OP] = {IMPL_ERLZC, IMPL_ERL};
    bool erl_iov_same = erl_ran;
    for (size_t k = 0; k < N_ITEMS; k++)
        erl_iov_same = erl_iov_same && erl_checks[CHECK_IOV][k] == 1;

    printf("\n### zero-copy paths\n\n");
    printf("libotp zc: encode is `otp_iobuf_reset` + `otp_encode_iov` + `otp_iobuf_iovec` into a "
           "fixed array of %d iovecs; decode is `otp_decode_binary` from a binary term made once "
           "from the item's bytes (a receive buffer) into an arena reset every iteration. "
           "Binaries over %d bytes are referenced, not copied: by the iovecs, and by the decoded "
           "term (which shares the input's block). Erlang: `term_to_iovec(T, "
           "[{minor_version,2}])`, which also references large binaries, and `binary_to_term(B)` "
           "(the main decode table's number; it copies, Erlang has no zero-copy decode). Same "
           "rounds and method as above; ratios above 1x mean libotp is faster.\n",
           IOV_CAP, OTP_BINARY_HEAP_MAX);
    printf("Checks: libotp's iovecs, gathered, %s `otp_encode_buf`'s bytes; `otp_decode_binary` "
           "%s; the large binaries %s; Erlang's term_to_iovec, gathered, %s.\n",
           zc->iov_same ? "equal" : "DO NOT ALL EQUAL (see stderr)",
           zc->dec_same ? "gives an `otp_exact_eq` term for every item"
                        : "DOES NOT ALWAYS give an otp_exact_eq term (see stderr)",
           zc->iov_shares && zc->dec_shares
               ? "are referenced by the iovecs and point into the input after decoding"
               : "ARE NOT ALL SHARED (see stderr)",
           !erl_ran       ? "was not run"
           : erl_iov_same ? "matches too"
                          : "DIFFERS (see stderr)");

    for (int op = 0; op < N_OP; op++) {
        const double *ours = med[op][IMPL_OTPZC], *theirs = med[op][erl_impl[op]];
        printf("\n#### %s\n\n", heading[op]);
        printf("| item | bytes | libotp zc ns | %s | Erlang/libotp |\n", erl_col[op]);
        printf("|---|---:|---:|---:|---:|\n");
        size_t bytes = 0;
        for (size_t k = 0; k < N_ITEMS; k++) {
            char nb[32];
            snprintf(nb, sizeof nb, "%zu", mix[k].enc.len);
            bytes += mix[k].enc.len;
            print_zc_row(mix[k].name, nb, ours[k], theirs[k]);
        }
        char nb[32], nb2[32], g[32];
        snprintf(nb, sizeof nb, "%zu", bytes);
        snprintf(nb2, sizeof nb2, "%zu", bytes - mix[ITEM_1M].enc.len);
        print_zc_row("**whole mix**", nb, mix_total(med[op][IMPL_OTPZC], true),
                     mix_total(med[op][erl_impl[op]], true));
        print_zc_row("mix without bin_1m", nb2, mix_total(med[op][IMPL_OTPZC], false),
                     mix_total(med[op][erl_impl[op]], false));
        double gm = geomean_ratio(theirs, ours);
        if (gm > 0)
            snprintf(g, sizeof g, "%.2fx", gm);
        else
            snprintf(g, sizeof g, "n/a");
        printf("| geometric mean of ratios | | | | %s |\n", g);
    }

    /* The spread of the cells this section adds (Erlang's decode cells are
     * in the line above). */
    printf("\nRound-to-round spread of these cells, as above:");
    const struct {
        int impl, op;
        const char *name;
    } cells[] = {{IMPL_OTPZC, OP_ENC, "libotp otp_encode_iov"},
                 {IMPL_OTPZC, OP_DEC, "libotp otp_decode_binary"},
                 {IMPL_ERLZC, OP_ENC, "Erlang term_to_iovec"}};
    for (size_t c = 0; c < sizeof cells / sizeof cells[0]; c++) {
        double sp[N_ITEMS];
        int n = 0;
        for (size_t k = 0; k < N_ITEMS; k++) {
            double v = cell_spread(res[cells[c].impl][cells[c].op][k], rounds,
                                   med[cells[c].op][cells[c].impl][k]);
            if (v >= 0)
                sp[n++] = v;
        }
        if (n)
            printf("%s %s %.0f%%", c ? "," : "", cells[c].name, 100 * median(sp, n));
        else
            printf("%s %s n/a", c ? "," : "", cells[c].name);
    }
    printf(".\n");
}

static void report(int rounds, unsigned ms, bool ei_same, bool erl_ran,
                   const int erl_checks[N_CHECK][N_ITEMS], const zc_checks *zc,
                   double res[N_IMPL_ALL][N_OP][N_ITEMS][MAX_ROUNDS])
{
    static double med[N_OP][N_IMPL_ALL][N_ITEMS];
    bool erl_same = erl_ran;
    for (size_t k = 0; k < N_ITEMS; k++)
        erl_same = erl_same && erl_checks[CHECK_TTB][k] == 1;
    for (int op = 0; op < N_OP; op++)
        for (int m = 0; m < N_IMPL_ALL; m++)
            for (size_t k = 0; k < N_ITEMS; k++)
                med[op][m][k] = median(res[m][op][k], rounds);

    printf("## ETF codec: libotp vs Erlang/OTP vs erl_interface\n\n");
    printf("Median of %d interleaved rounds, %u ms per measurement; ns per operation on one "
           "term (version byte included). Ratios above 1x mean libotp is faster.\n",
           rounds, ms);
    printf("Payload: the same bytes on every side; ei's encoders %s libotp's byte for byte; "
           "Erlang's term_to_binary(T, [{minor_version,2}]) %s.\n",
           ei_same ? "match" : "DO NOT ALL MATCH (see stderr)",
           !erl_ran   ? "was not run"
           : erl_same ? "matches too"
                      : "DIFFERS (see stderr)");

    for (int op = 0; op < N_OP; op++) {
        printf("\n### %s\n\n", op_name[op]);
        printf("| item | bytes | libotp ns | Erlang ns | ei generic ns | ei typed ns "
               "| Erlang/libotp | ei generic/libotp | ei typed/libotp |\n");
        printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        size_t bytes = 0;
        for (size_t k = 0; k < N_ITEMS; k++) {
            double row[N_IMPL];
            char nb[32];
            for (int m = 0; m < N_IMPL; m++)
                row[m] = med[op][m][k];
            snprintf(nb, sizeof nb, "%zu", mix[k].enc.len);
            bytes += mix[k].enc.len;
            print_row(mix[k].name, nb, row);
        }
        double all[N_IMPL], small[N_IMPL];
        for (int m = 0; m < N_IMPL; m++) {
            all[m] = mix_total(med[op][m], true);
            small[m] = mix_total(med[op][m], false);
        }
        char nb[32], nb2[32];
        snprintf(nb, sizeof nb, "%zu", bytes);
        snprintf(nb2, sizeof nb2, "%zu", bytes - mix[ITEM_1M].enc.len);
        print_row("**whole mix**", nb, all);
        print_row("mix without bin_1m", nb2, small);
        print_geomean(med[op]);
    }

    /* How much rounds disagree: (max - min) / median of each cell, and the
     * median of that over the cells, per implementation. A shared or busy
     * machine shows here first. */
    printf("\nRound-to-round spread, (max-min)/median per cell, median over cells:");
    for (int m = 0; m < N_IMPL; m++) {
        double sp[N_OP * N_ITEMS];
        int n = 0;
        for (int op = 0; op < N_OP; op++)
            for (size_t k = 0; k < N_ITEMS; k++) {
                double v = cell_spread(res[m][op][k], rounds, med[op][m][k]);
                if (v >= 0)
                    sp[n++] = v;
            }
        if (n)
            printf("%s %s %.0f%%", m ? "," : "", impl_name[m], 100 * median(sp, n));
        else
            printf("%s %s n/a", m ? "," : "", impl_name[m]);
    }
    printf(".\n");

    printf("\nItems:");
    for (size_t k = 0; k < N_ITEMS; k++)
        printf("%s `%s` = `%s`", k ? ";" : "", mix[k].name, mix[k].what);
    printf(".\n");

    printf("\n### bin_1m throughput (GB/s, 1 GB = 1e9 bytes)\n\n");
    printf("| op | libotp | Erlang | ei generic | ei typed |\n|---|---:|---:|---:|---:|\n");
    for (int op = 0; op < N_OP; op++) {
        printf("| %s |", op_name[op]);
        for (int m = 0; m < N_IMPL; m++) {
            double ns = med[op][m][ITEM_1M];
            if (ns > 0)
                printf(" %.2f |", (double)mix[ITEM_1M].enc.len / ns);
            else
                printf(" n/a |");
        }
        printf("\n");
    }

    report_zc(rounds, erl_ran, erl_checks, zc, res, med);

    printf("\n### targets\n\n");
    printf("Ratios on the whole mix (sum of medians; bin_1m is most of it), on the mix without "
           "bin_1m, and the geometric mean of per-item ratios. Met or missed is judged on the "
           "whole mix.\n\n");
    for (int op = 0; op < N_OP; op++) {
        double ours = mix_total(med[op][IMPL_OTP], true);
        double ours_small = mix_total(med[op][IMPL_OTP], false);
        for (int m = IMPL_ERL; m < N_IMPL; m++) {
            double theirs = mix_total(med[op][m], true);
            double theirs_small = mix_total(med[op][m], false);
            if (theirs <= 0 || ours <= 0) {
                printf("- %s vs %s: n/a\n", op_name[op], impl_name[m]);
                continue;
            }
            double lsum = 0;
            for (size_t k = 0; k < N_ITEMS; k++)
                lsum += log(med[op][m][k] / med[op][IMPL_OTP][k]);
            printf("- %s vs %s: %.2fx whole mix, %.2fx without bin_1m, %.2fx geomean", op_name[op],
                   impl_name[m], theirs / ours, theirs_small / ours_small,
                   exp(lsum / (double)N_ITEMS));
            if (m == IMPL_EI)
                printf(" (target: close to 1x)\n");
            else
                printf(" (target 2x): %s\n", theirs / ours >= 2.0 ? "met" : "MISSED");
        }
    }
    /* The zero-copy paths against Erlang, judged like the others. */
    static const char *const zc_name[N_OP] = {
        "encode vs Erlang (both zero-copy: otp_encode_iov vs term_to_iovec)",
        "decode vs Erlang (otp_decode_binary vs binary_to_term)",
    };
    const int erl_impl[N_OP] = {IMPL_ERLZC, IMPL_ERL};
    for (int op = 0; op < N_OP; op++) {
        const double *ours = med[op][IMPL_OTPZC], *theirs = med[op][erl_impl[op]];
        double all = mix_total(ours, true), theirs_all = mix_total(theirs, true);
        double gm = geomean_ratio(theirs, ours);
        if (all <= 0 || theirs_all <= 0 || gm <= 0) {
            printf("- %s: n/a\n", zc_name[op]);
            continue;
        }
        printf("- %s: %.2fx whole mix, %.2fx without bin_1m, %.2fx geomean (target 2x): %s\n",
               zc_name[op], theirs_all / all, mix_total(theirs, false) / mix_total(ours, false), gm,
               theirs_all / all >= 2.0 ? "met" : "MISSED");
    }
}

/* ------------------------------------------- zero-copy start-up checks */

/* True when the n bytes at p lie inside [lo, lo + len). */
static bool inside(const void *p, size_t n, const uint8_t *lo, size_t len)
{
    uintptr_t a = (uintptr_t)p, l = (uintptr_t)lo;
    return p && a >= l && a + n <= l + len;
}

/* Makes the item's receive buffer (it->encbin, in `keep`) and checks both zero-copy
 * paths on it once: the gathered iovecs are otp_encode_buf's bytes, and
 * otp_decode_binary gives an otp_exact_eq term using every byte. When the
 * item is a large binary, also that the iovecs reference its bytes and the
 * decoded one points into the buffer. Mismatches go to stderr and zc. */
static void check_zc(bench *b, otp_arena *keep, item *it, zc_checks *zc)
{
    it->encbin = otp_binary(keep, it->enc.data, it->enc.len);
    if (it->encbin == OTP_NONE)
        die("out of memory");

    otp_iobuf_reset(&b->iob);
    if (otp_encode_iov(&b->iob, it->term, 0) < 0)
        die("otp_encode_iov of %s failed", it->name);
    size_t n = otp_iobuf_iovec(&b->iob, b->iov, IOV_CAP), at = 0;
    if (n > IOV_CAP)
        die("%s: otp_iobuf_iovec needs %zu iovecs, more than %d", it->name, n, IOV_CAP);
    bool same = otp_iobuf_size(&b->iob) == it->enc.len;
    for (size_t j = 0; j < n && same; j++) {
        same =
            at + b->iov[j].iov_len <= it->enc.len &&
            memcmp((const uint8_t *)it->enc.data + at, b->iov[j].iov_base, b->iov[j].iov_len) == 0;
        at += b->iov[j].iov_len;
    }
    if (!same || at != it->enc.len) {
        fprintf(stderr, "bench_codec: %s: otp_encode_iov's iovecs differ from otp_encode_buf\n",
                it->name);
        zc->iov_same = false;
    }

    otp_term back;
    size_t used = 0;
    otp_error err;
    otp_arena_reset(b->arena);
    if (otp_decode_binary(b->arena, it->encbin, NULL, &back, &used, &err) < 0)
        die("otp_decode_binary of %s failed at %zu: %s", it->name, err.offset, err.message);
    if (used != it->enc.len || !otp_exact_eq(back, it->term)) {
        fprintf(stderr, "bench_codec: %s: otp_decode_binary does not give the term back\n",
                it->name);
        zc->dec_same = false;
    }

    size_t blen, inlen;
    const uint8_t *bdata = otp_is_binary(it->term) ? otp_binary_data(it->term, &blen) : NULL;
    if (bdata && blen > OTP_BINARY_HEAP_MAX) {
        const uint8_t *in = otp_binary_data(it->encbin, &inlen), *d;
        bool ref = false;
        for (size_t j = 0; j < n && j < IOV_CAP; j++)
            ref = ref || (b->iov[j].iov_base == bdata && b->iov[j].iov_len == blen);
        if (!ref) {
            fprintf(stderr, "bench_codec: %s: the iovecs copy the binary\n", it->name);
            zc->iov_shares = false;
        }
        size_t dlen;
        d = otp_is_binary(back) ? otp_binary_data(back, &dlen) : NULL;
        if (!d || !inside(d, dlen, in, inlen)) {
            fprintf(stderr, "bench_codec: %s: otp_decode_binary copied the binary\n", it->name);
            zc->dec_shares = false;
        }
    }
    otp_arena_reset(b->arena);
}

/* ---------------------------------------------------------------- main */

/* --tsv: every round's whole-mix time for perf/run ("S section row impl
 * round value": the sum over the items of that round's ns per term), what
 * each row is ("R ...") and the targets of DESIGN.md ("T ..."). */
static void tsv_write(const char *path, int rounds,
                      double res[N_IMPL_ALL][N_OP][N_ITEMS][MAX_ROUNDS])
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write %s", path);
    static const struct {
        const char *row;
        int op;
        bool zc, with_1m;
    } rows[] = {
        {"encode, whole mix", OP_ENC, false, true},
        {"decode, whole mix", OP_DEC, false, true},
        {"encode, mix without bin_1m", OP_ENC, false, false},
        {"decode, mix without bin_1m", OP_DEC, false, false},
        {"encode zero-copy, whole mix", OP_ENC, true, true},
        {"decode zero-copy, whole mix", OP_DEC, true, true},
    };
    for (size_t w = 0; w < sizeof rows / sizeof rows[0]; w++) {
        fprintf(f, "R\tcodec\t%s\tns\tlo\n", rows[w].row);
        const int *impls, main_impls[] = {IMPL_OTP, IMPL_ERL, IMPL_EIX, IMPL_EI},
                          zc_enc[] = {IMPL_OTPZC, IMPL_ERLZC}, zc_dec[] = {IMPL_OTPZC, IMPL_ERL};
        int ni = rows[w].zc ? 2 : 4;
        impls = !rows[w].zc ? main_impls : rows[w].op == OP_ENC ? zc_enc : zc_dec;
        for (int m = 0; m < ni; m++)
            for (int r = 0; r < rounds; r++) {
                double t = 0;
                bool ok = true;
                for (size_t k = 0; k < N_ITEMS; k++) {
                    if (k == ITEM_1M && !rows[w].with_1m)
                        continue;
                    double v = res[impls[m]][rows[w].op][k][r];
                    ok = ok && v > 0;
                    t += v;
                }
                if (ok)
                    fprintf(f, "S\tcodec\t%s\t%s\t%d\t%.1f\n", rows[w].row,
                            m == 0   ? "libotp"
                            : m == 1 ? "Erlang"
                                     : impl_name[impls[m]],
                            r + 1, t);
            }
        if (!rows[w].with_1m || rows[w].zc)
            continue;
        fprintf(f, "T\tcodec\t%s\tErlang\t2\t≥ 2x Erlang\n", rows[w].row);
        fprintf(f, "T\tcodec\t%s\tei generic\t2\t≥ 2x ei generic\n", rows[w].row);
    }
    fclose(f);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_codec [--quick] [--rounds N] [--ms N] [--no-erlang]\n"
            "                   [--item NAME] [--impl otp|otpzc|eix|ei] [--op enc|dec]\n"
            "                   [--erl PATH] [--beam-dir DIR] [--tsv FILE]\n"
            "  --quick      5 rounds of 30 ms per measurement (~15 s)\n"
            "  --rounds N   rounds (default 7, at most %d)\n"
            "  --ms N       time per measurement per round (default 100)\n"
            "  --no-erlang  skip the Erlang side\n"
            "  --item NAME  measure only this item (repeatable; for profiling)\n"
            "  --impl X     measure only this C implementation (repeatable; for profiling;\n"
            "               otpzc: otp_encode_iov and otp_decode_binary)\n"
            "  --op X       measure only encode or decode (for profiling)\n"
            "  (--item, --impl and --op imply --no-erlang)\n"
            "  --iters N    exactly N iterations per measurement, no warm-up (for counting\n"
            "               instructions, e.g. valgrind --tool=callgrind --toggle-collect=run)\n"
            "  --write-mix F  write the mix file the Erlang side reads to F, and exit\n"
            "  --tsv FILE   also write every round's whole-mix times to FILE (for perf/run)\n",
            MAX_ROUNDS);
    exit(2);
}

int main(int argc, char **argv)
{
    /* More short rounds rather than fewer long ones: on a shared machine the
     * disturbances come in bursts of seconds, and a median of more rounds
     * steps over them. */
    int rounds = 7;
    unsigned ms = 100;
    bool use_erl = true;
    /* What --item / --impl select; everything when none is given. */
    bool item_on[N_ITEMS] = {0}, impl_on[N_IMPL_ALL] = {0}, op_on[N_OP] = {0};
    bool any_item = false, any_impl = false, any_op = false;
    const char *erl = BENCH_ERL, *beam_dir = BENCH_BEAM_DIR, *write_mix = NULL, *tsv = NULL;
    uint64_t fixed_iters = 0; /* --iters: no calibration, for instruction counts */
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--quick") == 0) {
            rounds = 5;
            ms = 30;
        } else if (strcmp(argv[k], "--rounds") == 0 && k + 1 < argc) {
            rounds = atoi(argv[++k]);
        } else if (strcmp(argv[k], "--ms") == 0 && k + 1 < argc) {
            ms = (unsigned)atoi(argv[++k]);
        } else if (strcmp(argv[k], "--no-erlang") == 0) {
            use_erl = false;
        } else if (strcmp(argv[k], "--item") == 0 && k + 1 < argc) {
            int i = item_index(argv[++k]);
            if (i < 0)
                usage();
            item_on[i] = any_item = true;
        } else if (strcmp(argv[k], "--impl") == 0 && k + 1 < argc) {
            const char *v = argv[++k];
            int m = strcmp(v, "otp") == 0     ? IMPL_OTP
                    : strcmp(v, "otpzc") == 0 ? IMPL_OTPZC
                    : strcmp(v, "eix") == 0   ? IMPL_EIX
                    : strcmp(v, "ei") == 0    ? IMPL_EI
                                              : -1;
            if (m < 0)
                usage();
            impl_on[m] = any_impl = true;
        } else if (strcmp(argv[k], "--op") == 0 && k + 1 < argc) {
            const char *v = argv[++k];
            int op = strcmp(v, "enc") == 0 ? OP_ENC : strcmp(v, "dec") == 0 ? OP_DEC : -1;
            if (op < 0)
                usage();
            op_on[op] = any_op = true;
        } else if (strcmp(argv[k], "--iters") == 0 && k + 1 < argc) {
            fixed_iters = strtoull(argv[++k], NULL, 10);
            use_erl = false;
        } else if (strcmp(argv[k], "--tsv") == 0 && k + 1 < argc) {
            tsv = argv[++k];
        } else if (strcmp(argv[k], "--write-mix") == 0 && k + 1 < argc) {
            write_mix = argv[++k];
        } else if (strcmp(argv[k], "--erl") == 0 && k + 1 < argc) {
            erl = argv[++k];
        } else if (strcmp(argv[k], "--beam-dir") == 0 && k + 1 < argc) {
            beam_dir = argv[++k];
        } else {
            usage();
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || ms < 1)
        usage();
    for (size_t k = 0; k < N_ITEMS; k++)
        item_on[k] = item_on[k] || !any_item;
    for (int m = 0; m < N_IMPL_ALL; m++)
        impl_on[m] = impl_on[m] || !any_impl;
    for (int op = 0; op < N_OP; op++)
        op_on[op] = op_on[op] || !any_op;
    if (any_impl || any_op || any_item)
        use_erl = false;
    signal(SIGPIPE, SIG_IGN);
    ei_init();
    data_init();

    bench b = {0};
    static sinkbuf sink;
    b.sink = &sink;
    b.arena = otp_arena_new();
    b.eibuf = malloc(SCRATCH_CAP + 4096);
    sink.scratch = malloc(SCRATCH_CAP);
    otp_arena *mix_arena = otp_arena_new();
    if (!b.arena || !b.eibuf || !sink.scratch || !mix_arena || ei_x_new(&b.x) < 0)
        die("out of memory");

    /* Build the terms, encode them once with libotp: those bytes are the
     * payload everyone decodes. Then check that every encoder produces the
     * very same bytes and that libotp's decode round-trips. */
    bool all_same = true;
    zc_checks zc = {true, true, true, true};
    for (size_t k = 0; k < N_ITEMS; k++) {
        item *it = &mix[k];
        it->term = it->build(mix_arena);
        if (it->term == OTP_NONE)
            die("building %s failed", it->name);
        if (otp_encode_buf(&it->enc, it->term, 0) < 0)
            die("encoding %s failed", it->name);

        int i = 0;
        b.x.index = 0;
        if (it->eix_enc(&b.x) < 0 || it->ei_enc(b.eibuf, &i) < 0)
            die("ei encoding of %s failed", it->name);
        if ((size_t)b.x.index != it->enc.len || memcmp(b.x.buff, it->enc.data, it->enc.len) != 0) {
            fprintf(stderr, "bench_codec: %s: ei_x encoding differs from libotp's\n", it->name);
            all_same = false;
        }
        if ((size_t)i != it->enc.len || memcmp(b.eibuf, it->enc.data, it->enc.len) != 0) {
            fprintf(stderr, "bench_codec: %s: ei encoding differs from libotp's\n", it->name);
            all_same = false;
        }
        otp_term back;
        otp_error err;
        otp_buf rb = {0};
        otp_arena_reset(b.arena);
        if (otp_decode_exact(b.arena, it->enc.data, it->enc.len, NULL, &back, &err) < 0)
            die("otp_decode of %s failed at %zu: %s", it->name, err.offset, err.message);
        if (!otp_exact_eq(back, it->term) || otp_encode_buf(&rb, back, 0) < 0 ||
            rb.len != it->enc.len || memcmp(rb.data, it->enc.data, it->enc.len) != 0)
            die("%s: libotp decode/encode does not round-trip", it->name);
        otp_buf_free(&rb);
        uint64_t sum = 0;
        if (eix_walk((const char *)it->enc.data, (int)it->enc.len, &sink, &sum) < 0)
            die("%s: ei generic decode fails on libotp's bytes", it->name);
        i = 0;
        if (it->ei_dec((const char *)it->enc.data, &i, &sink, &sum) < 0 || (size_t)i != it->enc.len)
            die("%s: ei typed decode fails on libotp's bytes", it->name);
        check_zc(&b, mix_arena, it, &zc);
    }

    if (write_mix) {
        if (write_mix_file(write_mix) < 0)
            die("writing %s failed", write_mix);
        return 0;
    }
    char mix_path[] = "/tmp/bench_codec_mix.XXXXXX";
    int fd = mkstemp(mix_path);
    if (fd < 0)
        die("mkstemp: %s", strerror(errno));
    close(fd);
    if (write_mix_file(mix_path) < 0)
        die("writing %s failed", mix_path);

    static double res[N_IMPL_ALL][N_OP][N_ITEMS][MAX_ROUNDS];
    static uint64_t iters[N_IMPL_ALL][N_OP][N_ITEMS];
    int erl_checks[N_CHECK][N_ITEMS];
    for (int c = 0; c < N_CHECK; c++)
        for (size_t k = 0; k < N_ITEMS; k++)
            erl_checks[c][k] = -1;
    erl_peer e = {0};
    if (use_erl)
        erl_start(&e, erl, beam_dir, mix_path, ms, erl_checks);
    for (size_t k = 0; k < N_ITEMS && e.ok; k++) {
        if (erl_checks[CHECK_TTB][k] != 1)
            fprintf(stderr,
                    "bench_codec: %s: Erlang's term_to_binary differs from libotp's bytes\n",
                    mix[k].name);
        if (erl_checks[CHECK_IOV][k] != 1)
            fprintf(stderr,
                    "bench_codec: %s: Erlang's term_to_iovec, gathered, differs from libotp's "
                    "bytes\n",
                    mix[k].name);
    }

    uint64_t budget_ns = (uint64_t)ms * 1000000u;
    uint64_t warm_ns = budget_ns / 4 < 5000000u ? budget_ns / 4 : 5000000u;
    fprintf(stderr, "bench_codec: calibrating (%d rounds of %u ms per measurement)\n", rounds, ms);
    const int c_impls[] = {IMPL_OTP, IMPL_OTPZC, IMPL_EIX, IMPL_EI};
    for (size_t m = 0; m < sizeof c_impls / sizeof c_impls[0]; m++)
        for (int op = 0; op < N_OP; op++)
            for (size_t k = 0; k < N_ITEMS; k++)
                if (impl_on[c_impls[m]] && item_on[k] && op_on[op])
                    iters[c_impls[m]][op][k] =
                        fixed_iters ? fixed_iters
                                    : calibrate(&b, c_impls[m], op, &mix[k], warm_ns, budget_ns);

    /* Interleaved rounds: libotp, libotp zero-copy, Erlang (term_to_binary,
     * term_to_iovec, binary_to_term), ei generic, ei typed, again. A machine
     * that slows down for a while hurts all of them alike. */
    const int order[] = {IMPL_OTP, IMPL_OTPZC, IMPL_ERL, IMPL_EIX, IMPL_EI};
    for (int r = 0; r < rounds; r++) {
        fprintf(stderr, "bench_codec: round %d/%d\n", r + 1, rounds);
        for (size_t o = 0; o < sizeof order / sizeof order[0]; o++) {
            int m = order[o];
            if (m == IMPL_ERL) {
                double er[N_EOP][N_ITEMS] = {{0}};
                if (e.ok) {
                    fputs("round\n", e.out);
                    fflush(e.out);
                    if (erl_read(&e, "done", er, NULL) < 0) {
                        fprintf(stderr, "bench_codec: the Erlang side died\n");
                        e.ok = false;
                    }
                }
                for (size_t k = 0; k < N_ITEMS; k++) {
                    res[IMPL_ERL][OP_ENC][k][r] = er[EOP_ENC][k];
                    res[IMPL_ERL][OP_DEC][k][r] = er[EOP_DEC][k];
                    res[IMPL_ERLZC][OP_ENC][k][r] = er[EOP_ENC_IOV][k];
                }
                continue;
            }
            for (int op = 0; op < N_OP; op++)
                for (size_t k = 0; k < N_ITEMS; k++)
                    if (iters[m][op][k])
                        res[m][op][k][r] = measure(&b, m, op, &mix[k], iters[m][op][k]);
        }
    }
    erl_stop(&e);
    unlink(mix_path);

    report(rounds, ms, all_same, e.ready, erl_checks, &zc, res);
    if (tsv)
        tsv_write(tsv, rounds, res);
    fprintf(stderr, "bench_codec: checksum %llu\n", (unsigned long long)g_sink);
    for (size_t k = 0; k < N_ITEMS; k++)
        otp_buf_free(&mix[k].enc);
    otp_arena_free(mix_arena);
    otp_arena_free(b.arena);
    otp_buf_free(&b.obuf);
    otp_iobuf_free(&b.iob);
    ei_x_free(&b.x);
    free(b.eibuf);
    free(sink.scratch);
    free(k_bin1m);
    return 0;
}
