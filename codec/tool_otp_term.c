/* tool_otp_term.c — `otp-term`, a command-line tool for debugging wire
 * traffic: `decode` turns External Term Format bytes (raw or hex, with or
 * without the 131 version byte) into Erlang text, `encode` turns Erlang text
 * into ETF bytes (raw or hex). Bad input exits 1 with one line on stderr
 * naming the offset; usage errors exit 2.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otp.h"

#define EXIT_BAD_INPUT 1
#define EXIT_USAGE     2

static const char usage_text[] =
    "usage: otp-term decode [--hex] [--nodes] [--pretty] [FILE]\n"
    "       otp-term encode [--hex] [--compressed[=LEVEL]] [--minor1] TERM\n"
    "\n"
    "decode  reads one term in the External Term Format from FILE (or stdin,\n"
    "        or '-') and prints it as Erlang text (~w) and a newline. The\n"
    "        version byte 131 is optional.\n"
    "  --hex         the input is hex text (whitespace, 0x prefixes allowed)\n"
    "  --nodes       print other nodes' pids, ports and refs with node names\n"
    "  --pretty      print in the ~p style, over several lines\n"
    "encode  parses TERM (Erlang term syntax; '-' reads it from stdin) and\n"
    "        writes term_to_binary(TERM, [{minor_version, 2}]) to stdout.\n"
    "  --hex         write lowercase hex and a newline instead of bytes\n"
    "  --compressed  compress with zlib (level 6, or LEVEL 0..9)\n"
    "  --minor1      OTP 25's default atom encoding (Latin-1 atoms as ATOM_EXT)\n"
    "\n"
    "Exit status: 0 success, 1 bad input, 2 usage error.\n";

typedef struct options {
    bool decode;
    bool hex;
    bool nodes;
    bool pretty;
    bool compressed;
    int level;
    bool minor1;
    const char *arg; /* FILE for decode, TERM for encode */
} options;

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "otp-term: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n%s", usage_text);
    return EXIT_USAGE;
}

/* Parses argv into *o; returns -1 on success, else the exit status. */
static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof(*o));
    o->level = 6;
    if (argc < 2)
        return usage_error("%s", "missing command (decode or encode)");
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "decode"))
        o->decode = true;
    else if (strcmp(argv[1], "encode") != 0)
        return usage_error("unknown command '%s'", argv[1]);

    bool options_done = false;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (!options_done && !strcmp(s, "--")) {
            options_done = true;
        } else if (!options_done && s[0] == '-' && s[1] != '\0' && !isdigit((unsigned char)s[1])) {
            /* "-5" is a term to encode, not an option. */
            if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
                fputs(usage_text, stdout);
                return 0;
            } else if (!strcmp(s, "--hex")) {
                o->hex = true;
            } else if (o->decode && !strcmp(s, "--nodes")) {
                o->nodes = true;
            } else if (o->decode && !strcmp(s, "--pretty")) {
                o->pretty = true;
            } else if (!o->decode && !strcmp(s, "--minor1")) {
                o->minor1 = true;
            } else if (!o->decode && !strncmp(s, "--compressed", 12) &&
                       (s[12] == '\0' || s[12] == '=')) {
                o->compressed = true;
                if (s[12] == '=') {
                    const char *l = s + 13;
                    if (l[0] < '0' || l[0] > '9' || l[1] != '\0')
                        return usage_error("bad compression level in '%s' (0..9)", s);
                    o->level = l[0] - '0';
                }
            } else {
                return usage_error("unknown option '%s'", s);
            }
        } else if (o->arg) {
            return usage_error("unexpected argument '%s'", s);
        } else {
            o->arg = s;
        }
    }
    if (!o->decode && !o->arg)
        return usage_error("%s", "encode needs a TERM (or '-' to read it from stdin)");
    return -1;
}

static int read_stream(FILE *f, otp_buf *b)
{
    for (;;) {
        if (otp_buf_reserve(b, 65536) < 0)
            return -OTP_ENOMEM;
        size_t n = fread(b->data + b->len, 1, b->cap - b->len, f);
        b->len += n;
        if (n == 0)
            return ferror(f) ? -OTP_EIO : 0;
    }
}

/* Reads FILE, or stdin for NULL and "-". Reports its own errors. */
static int read_input(const char *path, otp_buf *b)
{
    bool use_stdin = !path || !strcmp(path, "-");
    FILE *f = use_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "otp-term: cannot open '%s': %s\n", path, strerror(errno));
        return -OTP_EIO;
    }
    int rc = read_stream(f, b);
    int saved = errno;
    if (!use_stdin)
        fclose(f);
    if (rc == -OTP_ENOMEM)
        fprintf(stderr, "otp-term: out of memory reading the input\n");
    else if (rc < 0)
        fprintf(stderr, "otp-term: cannot read '%s': %s\n", use_stdin ? "<stdin>" : path,
                strerror(saved));
    return rc;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Hex text to bytes: whitespace anywhere, a 0x/0X before any run of digits,
 * either case. Offsets in messages count characters of the hex text. */
static int hex_decode(const uint8_t *in, size_t n, otp_buf *out)
{
    int hi = -1;
    size_t hi_at = 0;
    for (size_t i = 0; i < n; i++) {
        int c = in[i];
        if (isspace(c))
            continue;
        bool run_start = i == 0 || isspace(in[i - 1]);
        if (run_start && hi < 0 && c == '0' && i + 1 < n &&
            (in[i + 1] == 'x' || in[i + 1] == 'X')) {
            i++;
            continue;
        }
        int v = hex_value(c);
        if (v < 0) {
            if (isprint(c))
                fprintf(stderr, "otp-term: bad hex at offset %zu: '%c' is not a hex digit\n", i, c);
            else
                fprintf(stderr, "otp-term: bad hex at offset %zu: byte 0x%02x is not a hex digit\n",
                        i, c);
            return -OTP_EPARSE;
        }
        if (hi < 0) {
            hi = v;
            hi_at = i;
            continue;
        }
        if (otp_buf_reserve(out, 1) < 0) {
            fprintf(stderr, "otp-term: out of memory reading the input\n");
            return -OTP_ENOMEM;
        }
        out->data[out->len++] = (uint8_t)(hi << 4 | v);
        hi = -1;
    }
    if (hi >= 0) {
        fprintf(stderr, "otp-term: bad hex at offset %zu: odd number of hex digits\n", hi_at);
        return -OTP_EPARSE;
    }
    return 0;
}

static int write_all(const void *p, size_t n)
{
    if ((n && fwrite(p, 1, n, stdout) != n) || fflush(stdout) != 0) {
        fprintf(stderr, "otp-term: cannot write the output: %s\n", strerror(errno));
        return EXIT_BAD_INPUT;
    }
    return 0;
}

/* The reason in err, without the "offset N: " that decode and parse
 * messages begin with: our line names the offset itself. */
static const char *reason(const otp_error *err)
{
    const char *m = err->message;
    if (!m[0])
        return otp_strerror(err->code);
    if (!strncmp(m, "offset ", 7)) {
        const char *p = m + 7;
        while (isdigit((unsigned char)*p))
            p++;
        if (p > m + 7 && p[0] == ':' && p[1] == ' ')
            return p + 2;
    }
    return m;
}

static int run_decode(const options *o, otp_arena *a)
{
    otp_buf raw = {0}, bytes = {0}, text = {0};
    int status = EXIT_BAD_INPUT;
    if (read_input(o->arg, &raw) < 0)
        goto out;
    const otp_buf *in = &raw;
    if (o->hex) {
        if (hex_decode(raw.data, raw.len, &bytes) < 0)
            goto out;
        in = &bytes;
    }
    if (in->len == 0) {
        fprintf(stderr, "otp-term: decode error at offset 0: empty input, expected a term\n");
        goto out;
    }
    /* Bytes from a dist frame or a capture often lack the version byte. */
    otp_decode_opts dopts = {0};
    dopts.no_version = in->data[0] != OTP_ETF_VERSION;
    otp_term t;
    size_t used = 0;
    otp_error err = {0};
    if (otp_decode(a, in->data, in->len, &dopts, &t, &used, &err) < 0) {
        fprintf(stderr, "otp-term: decode error at offset %zu: %s\n", err.offset, reason(&err));
        goto out;
    }
    if (used < in->len) {
        size_t extra = in->len - used;
        fprintf(stderr, "otp-term: trailing %zu byte%s after the term at offset %zu\n", extra,
                extra == 1 ? "" : "s", used);
        goto out;
    }
    otp_print_opts popts = {0};
    popts.local_node = OTP_NONE;
    popts.node_names = o->nodes;
    int rc = o->pretty ? otp_print_pretty(&text, t, &popts) : otp_print(&text, t, &popts);
    if (rc < 0 || otp_buf_reserve(&text, 1) < 0) {
        fprintf(stderr, "otp-term: cannot print the term: %s\n",
                otp_strerror(rc < 0 ? rc : -OTP_ENOMEM));
        goto out;
    }
    text.data[text.len++] = '\n';
    status = write_all(text.data, text.len);
out:
    otp_buf_free(&raw);
    otp_buf_free(&bytes);
    otp_buf_free(&text);
    return status;
}

static int run_encode(const options *o, otp_arena *a)
{
    otp_buf src = {0}, enc = {0}, hex = {0};
    int status = EXIT_BAD_INPUT;
    const char *text = o->arg;
    size_t len = strlen(text);
    if (!strcmp(text, "-")) {
        if (read_input(NULL, &src) < 0)
            goto out;
        text = (const char *)src.data;
        len = src.len;
    }
    otp_term t;
    size_t used = 0;
    otp_error err = {0};
    if (otp_parse(a, text ? text : "", len, &t, &used, &err) < 0) {
        fprintf(stderr, "otp-term: parse error at offset %zu: %s\n", err.offset, reason(&err));
        goto out;
    }
    for (size_t i = used; i < len; i++) {
        if (!isspace((unsigned char)text[i])) {
            fprintf(stderr, "otp-term: parse error at offset %zu: unexpected text after the term\n",
                    i);
            goto out;
        }
    }
    unsigned flags = o->minor1 ? OTP_ENC_MINOR1 : 0;
    int rc = o->compressed ? otp_encode_compressed_buf(&enc, t, flags, o->level)
                           : otp_encode_buf(&enc, t, flags);
    if (rc < 0) {
        fprintf(stderr, "otp-term: cannot encode the term: %s\n", otp_strerror(rc));
        goto out;
    }
    if (!o->hex) {
        status = write_all(enc.data, enc.len);
        goto out;
    }
    static const char digits[] = "0123456789abcdef";
    if (otp_buf_reserve(&hex, enc.len * 2 + 1) < 0) {
        fprintf(stderr, "otp-term: out of memory\n");
        goto out;
    }
    for (size_t i = 0; i < enc.len; i++) {
        hex.data[hex.len++] = (uint8_t)digits[enc.data[i] >> 4];
        hex.data[hex.len++] = (uint8_t)digits[enc.data[i] & 15];
    }
    hex.data[hex.len++] = '\n';
    status = write_all(hex.data, hex.len);
out:
    otp_buf_free(&src);
    otp_buf_free(&enc);
    otp_buf_free(&hex);
    return status;
}

int main(int argc, char **argv)
{
    options o;
    int status = parse_args(argc, argv, &o);
    if (status >= 0)
        return status;
    otp_arena *a = otp_arena_new();
    if (!a) {
        fprintf(stderr, "otp-term: out of memory\n");
        return EXIT_BAD_INPUT;
    }
    status = o.decode ? run_decode(&o, a) : run_encode(&o, a);
    otp_arena_free(a);
    return status;
}
