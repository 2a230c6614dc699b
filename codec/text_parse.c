/* text_parse.c — Erlang term text into terms: otp_parse (literals, as
 * erl_scan + erl_parse:parse_term/1 accept them), otp_format (the same with
 * ~x holes filled from va_args) and otp_match (patterns with variables).
 * One lexer, one iterative parser with an explicit stack, so nesting depth
 * is bounded by memory, never by the C stack.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_internal.h"

/* Literal binaries larger than this are refused (a typo like <<0:99999999999>>
 * should fail, not allocate gigabytes). */
#define MAX_BINARY_BITS ((uint64_t)1 << 29) /* 64 MiB */

/* Header kinds of the two pattern-only objects otp_match parses into its
 * private arena; they never escape it. */
#define PK_MAPPAT 61 /* size = pairs; k0 v0 k1 v1 ... as written */
#define PK_VAR    62 /* size = variable index, or PV_WILD for _ */
#define PV_WILD   ((uint64_t)1 << 40)

enum tok_kind {
    TK_EOF,
    TK_INT,
    TK_FLOAT,
    TK_CHAR,
    TK_ATOM,
    TK_STRING,
    TK_VAR,
    TK_HOLE,
    TK_LBRACK,
    TK_RBRACK,
    TK_LBRACE,
    TK_RBRACE,
    TK_LPAREN,
    TK_RPAREN,
    TK_COMMA,
    TK_BAR,
    TK_ARROW, /* => */
    TK_ASSOC, /* := */
    TK_HASH,
    TK_LBIN,
    TK_RBIN,
    TK_COLON,
    TK_SLASH,
    TK_MINUS,
    TK_PLUS,
    TK_DOT,
};

typedef struct tok {
    int kind;
    size_t start, end; /* its bytes in the input */
    otp_term term;     /* atoms, strings, holes, variables */
    double d;          /* floats */
    uint32_t ch;       /* chars */
    /* integers: the magnitude is in parser.limbs */
} tok;

typedef struct seg {
    uint64_t size;
    uint32_t unit;
    uint8_t type, endian;
    bool has_size, has_unit, has_sign, is_string;
    size_t off;
} seg;

enum { ST_INT, ST_FLOAT, ST_BINARY, ST_BITSTRING, ST_UTF8, ST_UTF16, ST_UTF32 };
enum { EN_BIG, EN_LITTLE };

enum { K_LIST, K_TUPLE, K_MAP, K_BIN, K_PAREN };

typedef struct pframe {
    uint8_t kind;
    bool first; /* nothing inside yet: the closer may follow */
    bool tail;  /* lists: after '|' */
    bool value; /* maps: the key is done, the value comes */
    size_t off;
    size_t vbase, sbase;
    size_t mark; /* variable uses when the map key / binary began */
} pframe;

typedef struct parser {
    const uint8_t *s;
    size_t len, pos;
    otp_arena *a;
    otp_error *err;
    va_list *ap;  /* otp_format's holes, else NULL */
    bool pattern; /* otp_match: variables allowed */
    int rc;
    /* scratch */
    uint32_t *str;
    size_t nstr, capstr;
    uint64_t *limbs;
    size_t nlimbs, caplimbs;
    char *num;
    size_t nnum, capnum;
    /* pattern variables: their names, in order of first appearance */
    struct pvar {
        size_t off, len;
    } * vars;
    size_t nvars, capvars;
    size_t var_uses;
    /* the parse stack */
    pframe *frames;
    size_t nframes, capframes;
    otp_term *vals;
    size_t nvals, capvals;
    seg *segs;
    size_t nsegs, capsegs;
    /* First buffers for the above, so small terms parse without malloc. */
    uint32_t str_inline[64];
    uint64_t limbs_inline[4];
    char num_inline[64];
    struct pvar vars_inline[8];
    pframe frames_inline[16];
    otp_term vals_inline[32];
    seg segs_inline[8];
} parser;

/* ------------------------------------------------------------ errors */

static int fail(parser *ps, size_t off, const char *fmt, ...) OTP_PRINTF(3, 4);
static int fail(parser *ps, size_t off, const char *fmt, ...)
{
    if (ps->rc == 0) {
        ps->rc = -OTP_EPARSE;
        if (ps->err) {
            ps->err->code = -OTP_EPARSE;
            ps->err->offset = off;
            int n = snprintf(ps->err->message, sizeof ps->err->message, "offset %zu: ", off);
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(ps->err->message + n, sizeof ps->err->message - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return ps->rc;
}

static int fail_nomem(parser *ps)
{
    if (ps->rc == 0) {
        ps->rc = -OTP_ENOMEM;
        if (ps->err) {
            ps->err->code = -OTP_ENOMEM;
            ps->err->offset = ps->pos;
            snprintf(ps->err->message, sizeof ps->err->message, "out of memory");
        }
    }
    return ps->rc;
}

/* How a token reads in a message: its text, quoted and cut short. */
static const char *describe(const parser *ps, const tok *t, char *buf, size_t cap)
{
    if (t->kind == TK_EOF)
        return "end of input";
    size_t n = t->end - t->start, max = 24;
    bool cut = n > max;
    if (cut) {
        n = max;
        while (n > 0 && (ps->s[t->start + n] & 0xc0) == 0x80)
            n--; /* do not split a UTF-8 character */
    }
    snprintf(buf, cap, "'%.*s%s'", (int)n, (const char *)ps->s + t->start, cut ? "..." : "");
    return buf;
}

/* ---------------------------------------------------------- scratch */

static int grow(parser *ps, void **p, size_t *cap, size_t need, size_t elem, void *inl)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 16;
    while (c < need)
        c *= 2;
    void *np;
    if (*p == inl) { /* leaving the inline buffer */
        np = malloc(c * elem);
        if (np)
            memcpy(np, inl, *cap * elem);
    } else {
        np = realloc(*p, c * elem);
    }
    if (!np)
        return fail_nomem(ps);
    *p = np;
    *cap = c;
    return 0;
}

#define GROW(ps, arr, n, cap, need)                                                                \
    grow((ps), (void **)&(arr), &(cap), (need), sizeof *(arr), (arr##_inline))

static int str_push(parser *ps, uint32_t c)
{
    if (GROW(ps, ps->str, ps->nstr, ps->capstr, ps->nstr + 1))
        return ps->rc;
    ps->str[ps->nstr++] = c;
    return 0;
}

/* ------------------------------------------------------------- lexer */

static bool at_end_dot(const parser *ps, size_t i)
{
    /* '.' ends a form when followed by whitespace, a comment or the end. */
    return i >= ps->len || ps->s[i] <= ' ' || ps->s[i] == '%';
}

static void skip_ws(parser *ps)
{
    while (ps->pos < ps->len) {
        uint8_t c = ps->s[ps->pos];
        if (c <= ' ') {
            ps->pos++;
        } else if (c == '%') {
            while (ps->pos < ps->len && ps->s[ps->pos] != '\n')
                ps->pos++;
        } else if (c == 0xc2 && ps->pos + 1 < ps->len && ps->s[ps->pos + 1] >= 0x80 &&
                   ps->s[ps->pos + 1] <= 0xa0) {
            ps->pos += 2; /* erl_scan takes Latin-1 128..160 as whitespace too */
        } else {
            break;
        }
    }
}

/* The character at pos as a code point (0 bytes at the end or on bad
 * UTF-8). */
static size_t peek_char(const parser *ps, size_t pos, uint32_t *c)
{
    return otp__utf8_get(ps->s + pos, ps->len - pos, c);
}

static int digit_value(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    return 99;
}

/* Reads digits of `base` with single '_' between digits into ps->num (as
 * digit values for integers, as text when as_text). Returns the count. */
static size_t read_digits(parser *ps, int base, bool as_text)
{
    size_t count = 0;
    while (ps->pos < ps->len) {
        uint8_t c = ps->s[ps->pos];
        if (c == '_' && count > 0 && ps->pos + 1 < ps->len &&
            digit_value(ps->s[ps->pos + 1]) < base) {
            ps->pos++;
            continue;
        }
        int d = digit_value(c);
        if (d >= base)
            break;
        if (GROW(ps, ps->num, ps->nnum, ps->capnum, ps->nnum + 2))
            return 0;
        ps->num[ps->nnum++] = as_text ? (char)c : (char)d;
        ps->pos++;
        count++;
    }
    return count;
}

/* ps->num[0..nnum) digit values in `base` into the magnitude ps->limbs. */
static int digits_to_limbs(parser *ps, int base)
{
    uint64_t chunk_pow = 1;
    int k = 0;
    while (chunk_pow <= UINT64_MAX / (uint64_t)base) {
        chunk_pow *= (uint64_t)base;
        k++;
    }
    ps->nlimbs = 0;
    for (size_t i = 0; i < ps->nnum;) {
        uint64_t v = 0, mul = 1;
        for (int j = 0; j < k && i < ps->nnum; j++, i++) {
            v = v * (uint64_t)base + (uint64_t)ps->num[i];
            mul *= (uint64_t)base;
        }
        uint64_t carry = v;
        for (size_t l = 0; l < ps->nlimbs; l++) {
            unsigned __int128 x = (unsigned __int128)ps->limbs[l] * mul + carry;
            ps->limbs[l] = (uint64_t)x;
            carry = (uint64_t)(x >> 64);
        }
        if (carry) {
            if (GROW(ps, ps->limbs, ps->nlimbs, ps->caplimbs, ps->nlimbs + 1))
                return ps->rc;
            ps->limbs[ps->nlimbs++] = carry;
        }
    }
    return 0;
}

static int lex_number(parser *ps, tok *t)
{
    ps->nnum = 0;
    read_digits(ps, 10, false);
    if (ps->rc)
        return ps->rc;
    int base = 10;
    if (ps->pos + 1 < ps->len && ps->s[ps->pos] == '#') {
        uint64_t b = 0;
        for (size_t i = 0; i < ps->nnum && b <= 36; i++)
            b = b * 10 + (uint64_t)ps->num[i];
        if (b < 2 || b > 36)
            return fail(ps, t->start, "integer base must be 2..36");
        base = (int)b;
        ps->pos++;
        ps->nnum = 0;
        if (read_digits(ps, base, false) == 0)
            return ps->rc ? ps->rc : fail(ps, ps->pos, "expected digits of base %d", base);
        if (ps->pos < ps->len && digit_value(ps->s[ps->pos]) < 36)
            return fail(ps, ps->pos, "'%c' is not a digit of base %d", ps->s[ps->pos], base);
    } else if (ps->pos + 1 < ps->len && ps->s[ps->pos] == '.' && ps->s[ps->pos + 1] >= '0' &&
               ps->s[ps->pos + 1] <= '9') {
        /* A float: redo the text with '_' dropped and hand it to strtod. */
        size_t p = t->start;
        ps->pos = p;
        ps->nnum = 0;
        read_digits(ps, 10, true);
        ps->num[ps->nnum++] = '.';
        ps->pos++;
        read_digits(ps, 10, true);
        if (ps->pos < ps->len && (ps->s[ps->pos] == 'e' || ps->s[ps->pos] == 'E')) {
            ps->num[ps->nnum++] = 'e';
            ps->pos++;
            if (ps->pos < ps->len && (ps->s[ps->pos] == '+' || ps->s[ps->pos] == '-')) {
                if (GROW(ps, ps->num, ps->nnum, ps->capnum, ps->nnum + 1))
                    return ps->rc;
                ps->num[ps->nnum++] = (char)ps->s[ps->pos++];
            }
            if (read_digits(ps, 10, true) == 0)
                return ps->rc ? ps->rc : fail(ps, t->start, "malformed float: no exponent digits");
        }
        if (ps->rc || GROW(ps, ps->num, ps->nnum, ps->capnum, ps->nnum + 1))
            return ps->rc;
        ps->num[ps->nnum] = 0;
        t->d = strtod(ps->num, NULL);
        if (!isfinite(t->d))
            return fail(ps, t->start, "float out of range");
        t->kind = TK_FLOAT;
        t->end = ps->pos;
        return 0;
    }
    if (digits_to_limbs(ps, base))
        return ps->rc;
    t->kind = TK_INT;
    t->end = ps->pos;
    return 0;
}

/* After a backslash inside quotes or after $: one escaped character. */
static int lex_escape(parser *ps, uint32_t *out)
{
    size_t start = ps->pos - 1;
    if (ps->pos >= ps->len)
        return fail(ps, start, "unterminated escape sequence");
    uint8_t c = ps->s[ps->pos];
    if (c >= '0' && c <= '7') {
        uint32_t v = 0;
        for (int i = 0;
             i < 3 && ps->pos < ps->len && ps->s[ps->pos] >= '0' && ps->s[ps->pos] <= '7'; i++)
            v = v * 8 + (uint32_t)(ps->s[ps->pos++] - '0');
        *out = v;
        return 0;
    }
    if (c == 'x') {
        ps->pos++;
        if (ps->pos < ps->len && ps->s[ps->pos] == '{') {
            ps->pos++;
            uint32_t v = 0;
            size_t n = 0;
            while (ps->pos < ps->len && digit_value(ps->s[ps->pos]) < 16) {
                v = v * 16 + (uint32_t)digit_value(ps->s[ps->pos++]);
                if (v > 0x10ffff)
                    return fail(ps, start, "character code in \\x{...} above 10FFFF");
                n++;
            }
            if (n == 0 || ps->pos >= ps->len || ps->s[ps->pos] != '}')
                return fail(ps, start, "malformed \\x{...} escape");
            ps->pos++;
            if (v >= 0xd800 && v <= 0xdfff)
                return fail(ps, start, "\\x{%X} is a surrogate, not a character", (unsigned)v);
            *out = v;
            return 0;
        }
        if (ps->pos + 1 < ps->len && digit_value(ps->s[ps->pos]) < 16 &&
            digit_value(ps->s[ps->pos + 1]) < 16) {
            *out = (uint32_t)(digit_value(ps->s[ps->pos]) * 16 + digit_value(ps->s[ps->pos + 1]));
            ps->pos += 2;
            return 0;
        }
        return fail(ps, start, "malformed \\x escape: expected two hex digits or {...}");
    }
    uint32_t ch;
    size_t k;
    if (c == '^') {
        ps->pos++;
        if ((k = peek_char(ps, ps->pos, &ch)) == 0)
            return fail(ps, start, "malformed \\^ escape");
        ps->pos += k;
        *out = ch & 31;
        return 0;
    }
    /* erl_scan's letter escapes: \n \r \t \v \b \f \e \s \d. */
    static const char from[] = "nrtvbfesd", to[] = "\n\r\t\v\b\f\033 \177";
    const char *hit = memchr(from, c, sizeof from - 1);
    if (!hit) {
        /* Any other character stands for itself: \\ \" \' and the rest. */
        if ((k = peek_char(ps, ps->pos, &ch)) == 0)
            return fail(ps, ps->pos, "invalid UTF-8");
        ps->pos += k;
        *out = ch;
        return 0;
    }
    *out = (uint8_t)to[hit - from];
    ps->pos++;
    return 0;
}

/* Quoted text up to the closing q, code points appended to ps->str. */
static int lex_quoted(parser *ps, uint8_t q)
{
    size_t open = ps->pos;
    ps->pos++;
    for (;;) {
        if (ps->pos >= ps->len)
            return fail(ps, open, "unterminated %s", q == '"' ? "string" : "quoted atom");
        uint8_t c = ps->s[ps->pos];
        uint32_t ch;
        if (c == q) {
            ps->pos++;
            return 0;
        }
        if (c == '\\') {
            ps->pos++;
            if (lex_escape(ps, &ch))
                return ps->rc;
        } else {
            size_t k = peek_char(ps, ps->pos, &ch);
            if (k == 0)
                return fail(ps, ps->pos, "invalid UTF-8");
            ps->pos += k;
        }
        if (str_push(ps, ch))
            return ps->rc;
    }
}

static otp_term list_from_codes(parser *ps, const uint32_t *c, size_t n)
{
    if (n == 0)
        return OTP_NIL;
    otp_term *cells = otp__alloc_words(ps->a, 2 * n);
    if (!cells) {
        fail_nomem(ps);
        return OTP_NONE;
    }
    for (size_t i = 0; i < n; i++) {
        cells[2 * i] = otp_small(c[i]);
        cells[2 * i + 1] = i + 1 < n ? otp__mkcons(&cells[2 * i + 2]) : OTP_NIL;
    }
    return otp__mkcons(cells);
}

static int lex_string(parser *ps, tok *t)
{
    ps->nstr = 0;
    for (;;) {
        if (lex_quoted(ps, '"'))
            return ps->rc;
        t->end = ps->pos;
        /* Adjacent strings are one string: "ab" "cd" is "abcd". */
        size_t save = ps->pos;
        skip_ws(ps);
        if (ps->pos >= ps->len || ps->s[ps->pos] != '"') {
            ps->pos = save;
            break;
        }
    }
    t->kind = TK_STRING;
    t->term = list_from_codes(ps, ps->str, ps->nstr);
    return ps->rc;
}

static int make_atom(parser *ps, const uint8_t *utf8, size_t n, size_t off, otp_term *out)
{
    int rc = otp_atom_intern((const char *)utf8, n, out);
    if (rc == -OTP_ELIMIT)
        return fail(ps, off, "atom longer than 255 characters (or the atom table is full)");
    if (rc < 0)
        return fail(ps, off, "invalid atom");
    return 0;
}

static int lex_quoted_atom(parser *ps, tok *t)
{
    ps->nstr = 0;
    if (lex_quoted(ps, '\''))
        return ps->rc;
    if (ps->nstr > OTP_ATOM_MAX_CHARS)
        return fail(ps, t->start, "atom longer than 255 characters");
    uint8_t buf[OTP_ATOM_MAX_CHARS * 4];
    size_t n = 0;
    for (size_t i = 0; i < ps->nstr; i++)
        n += otp__utf8_put(buf + n, ps->str[i]);
    t->kind = TK_ATOM;
    t->end = ps->pos;
    return make_atom(ps, buf, n, t->start, &t->term);
}

/* A name: [a-z...][name chars]*; the bytes are UTF-8 Latin-1 letters. */
static void lex_name(parser *ps)
{
    uint32_t c;
    size_t k;
    while ((k = peek_char(ps, ps->pos, &c)) != 0 && otp__is_name_char(c))
        ps->pos += k;
}

static int lex_variable(parser *ps, tok *t)
{
    lex_name(ps);
    t->end = ps->pos;
    size_t n = t->end - t->start;
    if (!ps->pattern)
        return fail(ps, t->start, "variable '%.*s' in a term (quote it to make an atom)", (int)n,
                    (const char *)ps->s + t->start);
    ps->var_uses++;
    uint64_t index = PV_WILD;
    if (!(n == 1 && ps->s[t->start] == '_')) {
        size_t i = 0;
        for (; i < ps->nvars; i++)
            if (ps->vars[i].len == n && memcmp(ps->s + ps->vars[i].off, ps->s + t->start, n) == 0)
                break;
        if (i == ps->nvars) {
            if (GROW(ps, ps->vars, ps->nvars, ps->capvars, ps->nvars + 1))
                return ps->rc;
            ps->vars[ps->nvars].off = t->start;
            ps->vars[ps->nvars].len = n;
            ps->nvars++;
        }
        index = i;
    }
    otp_term *v = otp__alloc_words(ps->a, 1);
    if (!v)
        return fail_nomem(ps);
    v[0] = otp__mkhdr(PK_VAR, index);
    t->kind = TK_VAR;
    t->term = otp__boxed(v);
    return 0;
}

/* otp_format's ~x: the next va_arg, made a term. */
static int lex_hole(parser *ps, tok *t)
{
    uint8_t c = ps->pos + 1 < ps->len ? ps->s[ps->pos + 1] : 0;
    otp_term v = OTP_NONE;
    const char *s;
    switch (c) {
    case 'a':
        s = va_arg(*ps->ap, const char *);
        v = s ? otp_atom(s) : OTP_NONE;
        break;
    case 's':
        s = va_arg(*ps->ap, const char *);
        v = s ? otp_string(ps->a, s) : OTP_NONE;
        break;
    case 'b':
        s = va_arg(*ps->ap, const char *);
        v = s ? otp_binary_str(ps->a, s) : OTP_NONE;
        break;
    case 'B': {
        const void *data = va_arg(*ps->ap, const void *);
        size_t n = va_arg(*ps->ap, size_t);
        v = data || n == 0 ? otp_binary(ps->a, data, n) : OTP_NONE;
        break;
    }
    case 'i':
        v = otp_int(ps->a, va_arg(*ps->ap, int));
        break;
    case 'l':
        v = otp_int(ps->a, va_arg(*ps->ap, long));
        break;
    case 'u':
        v = otp_uint(ps->a, va_arg(*ps->ap, unsigned long));
        break;
    case 'L':
        v = otp_int(ps->a, va_arg(*ps->ap, int64_t));
        break;
    case 'f':
        v = otp_float(ps->a, va_arg(*ps->ap, double));
        break;
    case 'w':
        v = va_arg(*ps->ap, otp_term);
        break;
    default:
        return fail(ps, ps->pos, "unknown hole '~%c'", c ? c : ' ');
    }
    if (v == OTP_NONE)
        return fail(ps, ps->pos, "hole '~%c': invalid argument or out of memory", c);
    ps->pos += 2;
    t->kind = TK_HOLE;
    t->term = v;
    t->end = ps->pos;
    return 0;
}

static int next(parser *ps, tok *t)
{
    skip_ws(ps);
    t->start = ps->pos;
    t->end = ps->pos + 1;
    if (ps->pos >= ps->len) {
        t->kind = TK_EOF;
        t->end = ps->pos;
        return 0;
    }
    uint8_t c = ps->s[ps->pos];
    uint8_t c1 = ps->pos + 1 < ps->len ? ps->s[ps->pos + 1] : 0;
    uint32_t ch;
    size_t k;
    switch (c) {
    case '[':
        t->kind = TK_LBRACK;
        break;
    case ']':
        t->kind = TK_RBRACK;
        break;
    case '{':
        t->kind = TK_LBRACE;
        break;
    case '}':
        t->kind = TK_RBRACE;
        break;
    case '(':
        t->kind = TK_LPAREN;
        break;
    case ')':
        t->kind = TK_RPAREN;
        break;
    case ',':
        t->kind = TK_COMMA;
        break;
    case '|':
        t->kind = TK_BAR;
        break;
    case '#':
        t->kind = TK_HASH;
        break;
    case '/':
        t->kind = TK_SLASH;
        break;
    case '-':
        t->kind = TK_MINUS;
        break;
    case '+':
        t->kind = TK_PLUS;
        break;
    case ':':
        t->kind = c1 == '=' ? TK_ASSOC : TK_COLON;
        break;
    case '=':
        if (c1 != '>')
            return fail(ps, ps->pos, "unexpected '='");
        t->kind = TK_ARROW;
        break;
    case '<':
        if (c1 != '<')
            return fail(ps, ps->pos, "unexpected '<'");
        t->kind = TK_LBIN;
        break;
    case '>':
        if (c1 != '>')
            return fail(ps, ps->pos, "unexpected '>'");
        t->kind = TK_RBIN;
        break;
    case '.':
        if (!at_end_dot(ps, ps->pos + 1))
            return fail(ps, ps->pos, "unexpected '.'");
        t->kind = TK_DOT;
        break;
    case '"':
        return lex_string(ps, t);
    case '\'':
        return lex_quoted_atom(ps, t);
    case '$':
        ps->pos++;
        if (ps->pos < ps->len && ps->s[ps->pos] == '\\') {
            ps->pos++;
            if (lex_escape(ps, &t->ch))
                return ps->rc;
        } else {
            if ((k = peek_char(ps, ps->pos, &t->ch)) == 0)
                return fail(ps, t->start,
                            ps->pos >= ps->len ? "'$' at end of input" : "invalid UTF-8");
            ps->pos += k;
        }
        t->kind = TK_CHAR;
        t->end = ps->pos;
        return 0;
    case '~':
        if (ps->ap)
            return lex_hole(ps, t);
        return fail(ps, ps->pos, "unexpected '~'");
    default:
        if (c >= '0' && c <= '9')
            return lex_number(ps, t);
        if ((k = peek_char(ps, ps->pos, &ch)) == 0)
            return fail(ps, ps->pos, "invalid UTF-8");
        if (otp__is_lower(ch)) {
            lex_name(ps);
            t->end = ps->pos;
            if (otp__text_reserved_word(ps->s + t->start, t->end - t->start))
                return fail(ps, t->start, "reserved word '%.*s' must be quoted to be an atom",
                            (int)(t->end - t->start), (const char *)ps->s + t->start);
            t->kind = TK_ATOM;
            return make_atom(ps, ps->s + t->start, t->end - t->start, t->start, &t->term);
        }
        if (otp__is_upper(ch) || ch == '_')
            return lex_variable(ps, t);
        return fail(ps, ps->pos, "unexpected character '%.*s'", (int)k,
                    (const char *)ps->s + ps->pos);
    }
    ps->pos +=
        (t->kind == TK_ASSOC || t->kind == TK_ARROW || t->kind == TK_LBIN || t->kind == TK_RBIN)
            ? 2
            : 1;
    t->end = ps->pos;
    return 0;
}

/* ------------------------------------------------------------ values */

static otp_term make_int(parser *ps, bool negative)
{
    size_t n = ps->nlimbs;
    if (n == 0)
        return otp_small(0);
    if (n == 1 && ps->limbs[0] <= (uint64_t)OTP_SMALL_MAX)
        return otp_small(negative ? -(int64_t)ps->limbs[0] : (int64_t)ps->limbs[0]);
    otp__big *b = otp__big_alloc(ps->a, n, negative);
    if (!b) {
        fail_nomem(ps);
        return OTP_NONE;
    }
    memcpy(b->limb, ps->limbs, n * sizeof(uint64_t));
    return otp__big_finish(b);
}

static int push_val(parser *ps, otp_term v)
{
    if (GROW(ps, ps->vals, ps->nvals, ps->capvals, ps->nvals + 1))
        return ps->rc;
    ps->vals[ps->nvals++] = v;
    return 0;
}

static otp_term build_list(parser *ps, const otp_term *v, size_t n, otp_term tail)
{
    if (n == 0)
        return tail;
    otp_term *cells = otp__alloc_words(ps->a, 2 * n);
    if (!cells) {
        fail_nomem(ps);
        return OTP_NONE;
    }
    for (size_t i = 0; i < n; i++) {
        cells[2 * i] = v[i];
        cells[2 * i + 1] = i + 1 < n ? otp__mkcons(&cells[2 * i + 2]) : tail;
    }
    return otp__mkcons(cells);
}

static otp_term build_tuple(parser *ps, const otp_term *v, size_t n, unsigned kind)
{
    otp__tuple *tp = (otp__tuple *)otp__alloc_words(ps->a, 1 + n);
    if (!tp) {
        fail_nomem(ps);
        return OTP_NONE;
    }
    tp->hdr = otp__mkhdr(kind, kind == OTP__H_TUPLE ? n : n / 2);
    if (n)
        memcpy(tp->el, v, n * sizeof(otp_term));
    if (kind == OTP__H_MAP) {
        /* Literal maps: the last of duplicate keys wins. */
        otp_term m = otp__map_sort_dedup(tp);
        if (m == OTP_NONE)
            fail_nomem(ps);
        return m;
    }
    return otp__boxed(tp);
}

/* ---- binaries */

typedef struct bitw {
    uint8_t *d;
    uint64_t pos;
} bitw;

/* Appends the first nbits bits of src (most significant first). */
static void bw_put(bitw *w, const uint8_t *src, uint64_t nbits)
{
    uint64_t nbytes = nbits / 8;
    unsigned rest = (unsigned)(nbits % 8), off = (unsigned)(w->pos % 8);
    uint8_t *d = w->d + w->pos / 8;
    uint8_t last = rest ? (uint8_t)(src[nbytes] & (0xff00u >> rest)) : 0;
    if (off == 0) {
        memcpy(d, src, (size_t)nbytes);
        if (rest)
            d[nbytes] = last;
    } else {
        for (uint64_t i = 0; i < nbytes; i++) {
            d[i] |= (uint8_t)(src[i] >> off);
            d[i + 1] = (uint8_t)(src[i] << (8 - off));
        }
        if (rest) {
            d[nbytes] |= (uint8_t)(last >> off);
            if (off + rest > 8)
                d[nbytes + 1] = (uint8_t)(last << (8 - off));
        }
    }
    w->pos += nbits;
}

/* Two's complement bytes (least significant first) of an integer term,
 * sign-extended or cut to n bytes. */
static void int_le_bytes(otp_term v, uint8_t *le, size_t n)
{
    if (otp_is_small(v)) {
        int64_t x = otp_small_value(v);
        for (size_t i = 0; i < n; i++)
            le[i] = i < 8 ? (uint8_t)((uint64_t)x >> (8 * i)) : (x < 0 ? 0xff : 0);
        return;
    }
    const otp__big *b = otp__ptr(v);
    size_t nb = (size_t)otp__hdr_size(b->hdr) * 8;
    bool neg = otp__hdr_kind(b->hdr) == OTP__H_NEGBIG;
    unsigned carry = 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t m = i < nb ? (uint8_t)(b->limb[i / 8] >> (8 * (i % 8))) : 0;
        if (neg) {
            unsigned x = (uint8_t)~m + carry;
            le[i] = (uint8_t)x;
            carry = x >> 8;
        } else {
            le[i] = m;
        }
    }
}

static int put_int_seg(bitw *w, otp_term v, uint64_t nbits, bool little)
{
    if (nbits == 0)
        return 0;
    size_t n = (size_t)((nbits + 7) / 8);
    uint8_t small[32], *le = n <= 16 ? small : malloc(2 * n);
    if (!le)
        return -OTP_ENOMEM;
    uint8_t *be = le + n;
    int_le_bytes(v, le, n);
    unsigned r = (unsigned)(nbits - 8 * (n - 1)); /* bits in the top byte */
    if (little) {
        /* Erlang: whole bytes low first, the top bits last. */
        for (size_t k = 0; k + 1 < n; k++)
            bw_put(w, &le[k], 8);
        uint8_t top = (uint8_t)(le[n - 1] << (8 - r));
        bw_put(w, &top, r);
    } else {
        /* Left-align the nbits-bit value, then write it high byte first. */
        unsigned sh = 8 - r;
        for (size_t k = 0; k < n; k++) {
            size_t i = n - 1 - k;
            unsigned x = (unsigned)le[i] << sh;
            if (sh && i > 0)
                x |= le[i - 1] >> (8 - sh);
            be[k] = (uint8_t)x;
        }
        bw_put(w, be, nbits);
    }
    if (le != small)
        free(le);
    return 0;
}

static uint16_t double_to_half(double d)
{
    uint64_t b;
    memcpy(&b, &d, 8);
    uint16_t sign = (uint16_t)((b >> 48) & 0x8000);
    int e = (int)((b >> 52) & 0x7ff);
    uint64_t m = b & ((UINT64_C(1) << 52) - 1);
    if (e == 0x7ff)
        return sign | 0x7c00;
    if (e == 0)
        return sign; /* double subnormals are far below half's range */
    uint64_t full = m | (UINT64_C(1) << 52);
    int he = e - 1023 + 15;
    unsigned shift = he >= 1 ? 42 : (unsigned)(42 + 1 - he);
    if (shift > 60)
        return sign;
    uint64_t r = full >> shift, rem = full & ((UINT64_C(1) << shift) - 1),
             half = UINT64_C(1) << (shift - 1);
    if (rem > half || (rem == half && (r & 1)))
        r++;
    if (he >= 1) {
        if (r == (1u << 11)) {
            r >>= 1;
            he++;
        }
        if (he >= 31)
            return sign | 0x7c00;
        return (uint16_t)(sign | (he << 10) | (r & 0x3ff));
    }
    return (uint16_t)(sign | r); /* r == 0x400 is the smallest normal, as it should be */
}

static void put_float_seg(bitw *w, double d, uint64_t nbits, bool little)
{
    uint8_t be[8];
    int n = (int)(nbits / 8);
    if (nbits == 64) {
        uint64_t b;
        memcpy(&b, &d, 8);
        for (int i = 0; i < 8; i++)
            be[i] = (uint8_t)(b >> (56 - 8 * i));
    } else if (nbits == 32) {
        float f = (float)d; /* overflow gives infinity, as Erlang 25 does */
        uint32_t b;
        memcpy(&b, &f, 4);
        for (int i = 0; i < 4; i++)
            be[i] = (uint8_t)(b >> (24 - 8 * i));
    } else {
        uint16_t h = double_to_half(d);
        be[0] = (uint8_t)(h >> 8);
        be[1] = (uint8_t)h;
    }
    if (little)
        for (int i = 0; i < n / 2; i++) {
            uint8_t x = be[i];
            be[i] = be[n - 1 - i];
            be[n - 1 - i] = x;
        }
    bw_put(w, be, nbits);
}

static size_t utf_seg(uint8_t type, uint32_t c, bool little, uint8_t *out)
{
    if (type == ST_UTF8)
        return otp__utf8_put(out, c);
    uint32_t u[2];
    size_t nu = 1, size = type == ST_UTF16 ? 2 : 4;
    u[0] = c;
    if (type == ST_UTF16 && c > 0xffff) {
        u[0] = 0xd800 + ((c - 0x10000) >> 10);
        u[1] = 0xdc00 + ((c - 0x10000) & 0x3ff);
        nu = 2;
    }
    for (size_t i = 0; i < nu; i++)
        for (size_t k = 0; k < size; k++)
            out[i * size + k] =
                little ? (uint8_t)(u[i] >> (8 * k)) : (uint8_t)(u[i] >> (8 * (size - 1 - k)));
    return nu * size;
}

static bool valid_char(otp_term v, uint32_t *c)
{
    if (!otp_is_small(v))
        return false;
    int64_t x = otp_small_value(v);
    if (x < 0 || x > 0x10ffff || (x >= 0xd800 && x <= 0xdfff))
        return false;
    *c = (uint32_t)x;
    return true;
}

/* Bits one element of a segment takes, or fails. Elements of a string
 * segment are its characters. */
static int seg_bits(parser *ps, const seg *s, otp_term v, uint64_t *bits)
{
    uint32_t c;
    switch (s->type) {
    case ST_INT:
        if (!otp_is_integer(v))
            return fail(ps, s->off, "binary segment: an integer segment needs an integer");
        *bits = s->size * s->unit;
        return 0;
    case ST_FLOAT:
        if (!otp_is_number(v))
            return fail(ps, s->off, "binary segment: a float segment needs a number");
        *bits = s->size * s->unit;
        if (*bits != 16 && *bits != 32 && *bits != 64)
            return fail(ps, s->off, "binary segment: float size must be 16, 32 or 64 bits");
        return 0;
    case ST_BINARY:
    case ST_BITSTRING: {
        if (!otp_is_bitstring(v))
            return fail(ps, s->off, "binary segment: a %s segment needs a bitstring",
                        s->type == ST_BINARY ? "binary" : "bitstring");
        uint64_t have = ((const otp__binary *)otp__ptr(v))->bits;
        if (s->has_size) {
            *bits = s->size * s->unit;
            if (*bits > have)
                return fail(ps, s->off, "binary segment: size larger than the value");
        } else {
            *bits = have;
            if (have % s->unit)
                return fail(ps, s->off, "binary segment: value is not a multiple of the unit");
        }
        return 0;
    }
    default: {
        if (!valid_char(v, &c))
            return fail(ps, s->off, "binary segment: not a Unicode code point");
        uint8_t tmp[8];
        *bits = 8 * utf_seg(s->type, c, false, tmp);
        return 0;
    }
    }
}

static int put_seg(parser *ps, bitw *w, const seg *s, otp_term v, uint64_t bits)
{
    bool little = s->endian == EN_LITTLE;
    switch (s->type) {
    case ST_INT:
        if (put_int_seg(w, v, bits, little) < 0)
            return fail_nomem(ps);
        return 0;
    case ST_FLOAT: {
        double d;
        otp_get_double(v, &d);
        if (!isfinite(d))
            return fail(ps, s->off, "binary segment: integer too large for a float");
        put_float_seg(w, d, bits, little);
        return 0;
    }
    case ST_BINARY:
    case ST_BITSTRING:
        bw_put(w, ((const otp__binary *)otp__ptr(v))->data, bits);
        return 0;
    default: {
        uint32_t c = 0;
        uint8_t tmp[8];
        valid_char(v, &c);
        bw_put(w, tmp, 8 * utf_seg(s->type, c, little, tmp));
        return 0;
    }
    }
}

/* The binary of segments vals[vb..], specs segs[sb..]: sizes first, then
 * the bits. */
static otp_term build_binary(parser *ps, size_t vb, size_t sb, size_t n, size_t off)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const seg *s = &ps->segs[sb + i];
        otp_term v = ps->vals[vb + i];
        if (s->is_string && s->type == ST_INT && s->size * s->unit == 8) {
            for (otp_term l = v; otp_is_cons(l); l = ((const otp__cons *)otp__ptr(l))->tail)
                total += 8;
        } else if (s->is_string) {
            for (otp_term l = v; otp_is_cons(l); l = otp_tail(l)) {
                uint64_t b = 0;
                if (seg_bits(ps, s, otp_head(l), &b))
                    return OTP_NONE;
                total += b;
                if (total > MAX_BINARY_BITS)
                    break;
            }
        } else {
            uint64_t b = 0;
            if (seg_bits(ps, s, v, &b))
                return OTP_NONE;
            total += b;
        }
        if (total > MAX_BINARY_BITS) {
            fail(ps, off, "binary literal larger than %u MiB",
                 (unsigned)(MAX_BINARY_BITS / 8 / 1024 / 1024));
            return OTP_NONE;
        }
    }
    uint8_t *data;
    size_t nbytes = (size_t)((total + 7) / 8);
    otp_term bin = otp__binary_alloc(ps->a, nbytes, total, &data);
    if (bin == OTP_NONE) {
        fail_nomem(ps);
        return OTP_NONE;
    }
    memset(data, 0, nbytes);
    bitw w = {data, 0};
    for (size_t i = 0; i < n; i++) {
        const seg *s = &ps->segs[sb + i];
        otp_term v = ps->vals[vb + i];
        uint64_t b;
        if (s->is_string && s->type == ST_INT && s->size * s->unit == 8) {
            /* "text" in a binary: one byte a character (cut to 8 bits). */
            for (otp_term l = v; otp_is_cons(l); l = ((const otp__cons *)otp__ptr(l))->tail) {
                uint8_t byte = (uint8_t)otp_small_value(((const otp__cons *)otp__ptr(l))->head);
                bw_put(&w, &byte, 8);
            }
        } else if (s->is_string) {
            for (otp_term l = v; otp_is_cons(l); l = otp_tail(l))
                if (seg_bits(ps, s, otp_head(l), &b) || put_seg(ps, &w, s, otp_head(l), b))
                    return OTP_NONE;
        } else if (seg_bits(ps, s, v, &b) || put_seg(ps, &w, s, v, b)) {
            return OTP_NONE;
        }
    }
    return bin;
}

static bool atom_is(otp_term a, const char *name)
{
    size_t n;
    const char *s = otp_atom_text(a, &n);
    return n == strlen(name) && memcmp(s, name, n) == 0;
}

/* After a segment's value: [':' Size] ['/' Type('-'Type)*]. Leaves the
 * token that follows in *t. */
static int parse_seg_spec(parser *ps, seg *s, tok *t)
{
    if (next(ps, t))
        return ps->rc;
    char buf[40];
    if (t->kind == TK_COLON) {
        if (next(ps, t))
            return ps->rc;
        if (t->kind != TK_INT)
            return fail(ps, t->start, "expected a segment size (an integer), got %s",
                        describe(ps, t, buf, sizeof buf));
        if (ps->nlimbs > 1 || (ps->nlimbs == 1 && ps->limbs[0] > MAX_BINARY_BITS))
            return fail(ps, t->start, "binary segment size too large");
        s->size = ps->nlimbs ? ps->limbs[0] : 0;
        s->has_size = true;
        if (next(ps, t))
            return ps->rc;
    }
    bool has_type = false, has_endian = false;
    if (t->kind == TK_SLASH) {
        do {
            if (next(ps, t))
                return ps->rc;
            if (t->kind != TK_ATOM)
                return fail(ps, t->start, "expected a binary type specifier, got %s",
                            describe(ps, t, buf, sizeof buf));
            otp_term a = t->term;
            static const struct {
                const char *name;
                uint8_t type;
            } types[] = {{"integer", ST_INT},  {"float", ST_FLOAT},         {"binary", ST_BINARY},
                         {"bytes", ST_BINARY}, {"bitstring", ST_BITSTRING}, {"bits", ST_BITSTRING},
                         {"utf8", ST_UTF8},    {"utf16", ST_UTF16},         {"utf32", ST_UTF32}};
            bool known = false, dup = false;
            for (size_t i = 0; i < sizeof types / sizeof *types; i++)
                if (atom_is(a, types[i].name)) {
                    dup = has_type;
                    s->type = types[i].type;
                    has_type = known = true;
                }
            if (atom_is(a, "big") || atom_is(a, "little") || atom_is(a, "native")) {
                dup = has_endian;
                /* native is the host's order; libotp runs on little-endian hosts. */
                s->endian = atom_is(a, "big") ? EN_BIG : EN_LITTLE;
                has_endian = known = true;
            }
            if (atom_is(a, "signed") || atom_is(a, "unsigned")) {
                dup = s->has_sign;
                s->has_sign = known = true;
            }
            if (atom_is(a, "unit")) {
                size_t at = t->start;
                if (next(ps, t))
                    return ps->rc;
                if (t->kind != TK_COLON || next(ps, t) || t->kind != TK_INT || ps->nlimbs != 1 ||
                    ps->limbs[0] < 1 || ps->limbs[0] > 256)
                    return ps->rc ? ps->rc : fail(ps, at, "expected unit:1..256");
                dup = s->has_unit;
                s->unit = (uint32_t)ps->limbs[0];
                s->has_unit = known = true;
            }
            if (!known)
                return fail(ps, t->start, "unknown binary type specifier %s",
                            describe(ps, t, buf, sizeof buf));
            if (dup)
                return fail(ps, t->start, "conflicting binary type specifier %s",
                            describe(ps, t, buf, sizeof buf));
            if (next(ps, t))
                return ps->rc;
        } while (t->kind == TK_MINUS);
    }
    /* Defaults and the combinations Erlang refuses. */
    switch (s->type) {
    case ST_INT:
        if (!s->has_size)
            s->size = 8;
        if (!s->has_unit)
            s->unit = 1;
        break;
    case ST_FLOAT:
        if (!s->has_size)
            s->size = 64;
        if (!s->has_unit)
            s->unit = 1;
        break;
    case ST_BINARY:
    case ST_BITSTRING:
        if (s->is_string)
            return fail(ps, s->off, "binary segment: a string cannot be a %s",
                        s->type == ST_BINARY ? "binary" : "bitstring");
        if (!s->has_unit)
            s->unit = s->type == ST_BINARY ? 8 : 1;
        break;
    default:
        if (s->has_size || s->has_unit)
            return fail(ps, s->off, "binary segment: utf8/16/32 take no size or unit");
        break;
    }
    if (s->has_size && s->size * s->unit > MAX_BINARY_BITS)
        return fail(ps, s->off, "binary segment size too large");
    return 0;
}

/* ------------------------------------------------------------ parser */

static pframe *push_frame(parser *ps, uint8_t kind, size_t off)
{
    if (GROW(ps, ps->frames, ps->nframes, ps->capframes, ps->nframes + 1))
        return NULL;
    pframe *f = &ps->frames[ps->nframes++];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->first = true;
    f->off = off;
    f->vbase = ps->nvals;
    f->sbase = ps->nsegs;
    f->mark = ps->var_uses;
    return f;
}

/* Closes the top frame into a value. */
static otp_term close_frame(parser *ps, bool improper)
{
    pframe *f = &ps->frames[ps->nframes - 1];
    otp_term *v = ps->vals + f->vbase;
    size_t n = ps->nvals - f->vbase;
    otp_term r = OTP_NONE;
    switch (f->kind) {
    case K_LIST:
        r = improper ? build_list(ps, v, n - 1, v[n - 1]) : build_list(ps, v, n, OTP_NIL);
        break;
    case K_TUPLE:
        r = build_tuple(ps, v, n, OTP__H_TUPLE);
        break;
    case K_MAP:
        r = build_tuple(ps, v, n, ps->pattern ? PK_MAPPAT : OTP__H_MAP);
        break;
    case K_BIN:
        r = build_binary(ps, f->vbase, f->sbase, n, f->off);
        break;
    }
    ps->nvals = f->vbase;
    ps->nsegs = f->sbase;
    ps->nframes--;
    return r;
}

static int parse(parser *ps, otp_term *out)
{
    tok t;
    char buf[40];
    otp_term v = OTP_NONE;
    bool v_string;
    size_t v_off;
    for (;;) {
        /* ---- a value is wanted */
        if (next(ps, &t))
            return ps->rc;
        pframe *top = ps->nframes ? &ps->frames[ps->nframes - 1] : NULL;
        v_string = false;
        v_off = t.start;
        if (top && top->first) {
            top->first = false;
            if ((top->kind == K_LIST && t.kind == TK_RBRACK) ||
                ((top->kind == K_TUPLE || top->kind == K_MAP) && t.kind == TK_RBRACE) ||
                (top->kind == K_BIN && t.kind == TK_RBIN)) {
                v_off = top->off;
                v = close_frame(ps, false);
                if (ps->rc)
                    return ps->rc;
                goto have_value;
            }
        }
        switch (t.kind) {
        case TK_LBRACK:
            if (!push_frame(ps, K_LIST, t.start))
                return ps->rc;
            continue;
        case TK_LBRACE:
            if (!push_frame(ps, K_TUPLE, t.start))
                return ps->rc;
            continue;
        case TK_LPAREN:
            if (!push_frame(ps, K_PAREN, t.start))
                return ps->rc;
            ps->frames[ps->nframes - 1].first = false;
            continue;
        case TK_LBIN:
            if (!push_frame(ps, K_BIN, t.start))
                return ps->rc;
            continue;
        case TK_HASH: {
            size_t at = t.start;
            if (next(ps, &t))
                return ps->rc;
            if (t.kind != TK_LBRACE)
                return fail(ps, t.start, "expected '{' after '#', got %s",
                            describe(ps, &t, buf, sizeof buf));
            if (!push_frame(ps, K_MAP, at))
                return ps->rc;
            continue;
        }
        case TK_MINUS:
        case TK_PLUS: {
            bool neg = t.kind == TK_MINUS;
            if (next(ps, &t))
                return ps->rc;
            if (t.kind == TK_INT)
                v = make_int(ps, neg);
            else if (t.kind == TK_FLOAT)
                v = otp_float(ps->a, neg ? -t.d : t.d);
            else if (t.kind == TK_CHAR)
                v = otp_small(neg ? -(int64_t)t.ch : (int64_t)t.ch);
            else
                return fail(ps, t.start, "expected a number after '%c', got %s", neg ? '-' : '+',
                            describe(ps, &t, buf, sizeof buf));
            break;
        }
        case TK_INT:
            v = make_int(ps, false);
            break;
        case TK_FLOAT:
            v = otp_float(ps->a, t.d);
            break;
        case TK_CHAR:
            v = otp_small(t.ch);
            break;
        case TK_STRING:
            v_string = true;
            v = t.term;
            break;
        case TK_ATOM:
        case TK_HOLE:
        case TK_VAR:
            v = t.term;
            break;
        default:
            return fail(ps, t.start, "expected a term, got %s", describe(ps, &t, buf, sizeof buf));
        }
        if (v == OTP_NONE)
            return ps->rc ? ps->rc : fail_nomem(ps);

    have_value:
        /* ---- v is complete: hand it to the enclosing frame, closing
         * frames for as long as closers follow. */
        for (;;) {
            if (ps->nframes == 0) {
                *out = v;
                return 0;
            }
            pframe *f = &ps->frames[ps->nframes - 1];
            if (f->kind == K_PAREN) {
                if (next(ps, &t))
                    return ps->rc;
                if (t.kind != TK_RPAREN)
                    return fail(ps, t.start, "expected ')', got %s",
                                describe(ps, &t, buf, sizeof buf));
                v_off = f->off;
                ps->nframes--;
                v_string = false;
                continue;
            }
            if (push_val(ps, v))
                return ps->rc;
            if (f->kind == K_BIN) {
                if (ps->pattern && ps->var_uses != f->mark)
                    return fail(ps, v_off, "variables inside binaries are not supported");
                if (GROW(ps, ps->segs, ps->nsegs, ps->capsegs, ps->nsegs + 1))
                    return ps->rc;
                seg *s = &ps->segs[ps->nsegs++];
                memset(s, 0, sizeof *s);
                s->is_string = v_string;
                s->off = v_off;
                if (parse_seg_spec(ps, s, &t))
                    return ps->rc;
            } else {
                if (next(ps, &t))
                    return ps->rc;
            }
            bool closes = false, improper = false;
            switch (f->kind) {
            case K_LIST:
                if (f->tail) {
                    if (t.kind != TK_RBRACK)
                        return fail(ps, t.start, "expected ']' after the tail of a list, got %s",
                                    describe(ps, &t, buf, sizeof buf));
                    closes = improper = true;
                } else if (t.kind == TK_BAR) {
                    f->tail = true;
                } else if (t.kind == TK_RBRACK) {
                    closes = true;
                } else if (t.kind != TK_COMMA) {
                    return fail(ps, t.start, "expected ',', '|' or ']' in list, got %s",
                                describe(ps, &t, buf, sizeof buf));
                }
                break;
            case K_TUPLE:
                if (t.kind == TK_RBRACE)
                    closes = true;
                else if (t.kind != TK_COMMA)
                    return fail(ps, t.start, "expected ',' or '}' in tuple, got %s",
                                describe(ps, &t, buf, sizeof buf));
                break;
            case K_MAP:
                if (!f->value) {
                    if (ps->pattern && ps->var_uses != f->mark)
                        return fail(ps, v_off, "variables are not allowed in map keys");
                    if (t.kind != TK_ARROW && !(ps->pattern && t.kind == TK_ASSOC))
                        return fail(ps, t.start, "expected '=>' in map, got %s",
                                    describe(ps, &t, buf, sizeof buf));
                    f->value = true;
                } else if (t.kind == TK_RBRACE) {
                    closes = true;
                } else if (t.kind == TK_COMMA) {
                    f->value = false;
                    f->mark = ps->var_uses;
                } else {
                    return fail(ps, t.start, "expected ',' or '}' in map, got %s",
                                describe(ps, &t, buf, sizeof buf));
                }
                break;
            case K_BIN:
                if (t.kind == TK_RBIN)
                    closes = true;
                else if (t.kind != TK_COMMA)
                    return fail(ps, t.start, "expected ',' or '>>' in binary, got %s",
                                describe(ps, &t, buf, sizeof buf));
                break;
            }
            if (!closes)
                break; /* the next element */
            v_off = f->off;
            v_string = false;
            v = close_frame(ps, improper);
            if (ps->rc)
                return ps->rc;
        }
    }
}

#define INLINE_VEC(ps, name)                                                                       \
    ((ps)->name = (ps)->name##_inline,                                                             \
     (ps)->cap##name = sizeof(ps)->name##_inline / sizeof *(ps)->name##_inline)
#define FREE_VEC(ps, name)                                                                         \
    do {                                                                                           \
        if ((ps)->name != (ps)->name##_inline)                                                     \
            free((ps)->name);                                                                      \
    } while (0)

static void parser_init(parser *ps, otp_arena *a, const char *text, size_t len, otp_error *err)
{
    /* Only the head needs zeroing; the inline buffers are scratch. */
    memset(ps, 0, offsetof(parser, str_inline));
    ps->s = (const uint8_t *)text;
    ps->len = len;
    ps->a = a;
    ps->err = err;
    INLINE_VEC(ps, str);
    INLINE_VEC(ps, limbs);
    INLINE_VEC(ps, num);
    INLINE_VEC(ps, vars);
    INLINE_VEC(ps, frames);
    INLINE_VEC(ps, vals);
    INLINE_VEC(ps, segs);
}

static void parser_free(parser *ps)
{
    FREE_VEC(ps, str);
    FREE_VEC(ps, limbs);
    FREE_VEC(ps, num);
    FREE_VEC(ps, vars);
    FREE_VEC(ps, frames);
    FREE_VEC(ps, vals);
    FREE_VEC(ps, segs);
}

/* The whole input is one term, optionally ended by '.'; with used, the
 * term and its dot are enough and the rest is left for the caller. */
static int parse_all(parser *ps, otp_term *out, size_t *used)
{
    if (parse(ps, out))
        return ps->rc;
    size_t end = ps->pos;
    skip_ws(ps);
    if (ps->pos < ps->len && ps->s[ps->pos] == '.' && at_end_dot(ps, ps->pos + 1))
        end = ++ps->pos;
    if (used) {
        *used = end;
        return 0;
    }
    skip_ws(ps);
    if (ps->pos < ps->len) {
        tok t;
        char buf[40];
        size_t at = ps->pos;
        if (next(ps, &t))
            return fail(ps, at, "expected the end of input after the term");
        return fail(ps, t.start, "expected the end of input after the term, got %s",
                    describe(ps, &t, buf, sizeof buf));
    }
    return 0;
}

int otp_parse(otp_arena *a, const char *text, size_t len, otp_term *out, size_t *used,
              otp_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!a || (!text && len) || !out)
        return -OTP_EBADARG;
    parser ps;
    parser_init(&ps, a, text ? text : "", len, err);
    otp_term t = OTP_NONE;
    int rc = parse_all(&ps, &t, used);
    parser_free(&ps);
    *out = rc ? OTP_NONE : t;
    return rc;
}

otp_term otp_parse_str(otp_arena *a, const char *text)
{
    otp_term t;
    if (!text)
        return OTP_NONE;
    return otp_parse(a, text, strlen(text), &t, NULL, NULL) == 0 ? t : OTP_NONE;
}

otp_term otp_vformat(otp_arena *a, const char *fmt, va_list ap)
{
    if (!a || !fmt)
        return OTP_NONE;
    parser ps;
    va_list cp;
    va_copy(cp, ap);
    parser_init(&ps, a, fmt, strlen(fmt), NULL);
    ps.ap = &cp;
    otp_term t = OTP_NONE;
    int rc = parse_all(&ps, &t, NULL);
    va_end(cp);
    parser_free(&ps);
    return rc ? OTP_NONE : t;
}

otp_term otp_format(otp_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    otp_term t = otp_vformat(a, fmt, ap);
    va_end(ap);
    return t;
}

/* ------------------------------------------------------------ match */

typedef struct mpair {
    otp_term p, t;
} mpair;

static int match(otp_term pat, otp_term t, otp_term *binds)
{
    mpair small[64], *st = small;
    size_t n = 0, cap = 64;
    int rc = 0;
    st[n++] = (mpair){pat, t};
    while (n > 0 && rc == 0) {
        mpair m = st[--n];
        if (otp_is_cons(m.p)) {
            if (!otp_is_cons(m.t)) {
                rc = -OTP_ENOMATCH;
                break;
            }
            const otp__cons *pc = otp__ptr(m.p), *tc = otp__ptr(m.t);
            if (cap - n < 2) {
                mpair *ns =
                    st == small ? malloc(2 * cap * sizeof *ns) : realloc(st, 2 * cap * sizeof *ns);
                if (!ns) {
                    rc = -OTP_ENOMEM;
                    break;
                }
                if (st == small)
                    memcpy(ns, small, sizeof small);
                st = ns;
                cap *= 2;
            }
            st[n++] = (mpair){pc->tail, tc->tail};
            st[n++] = (mpair){pc->head, tc->head};
            continue;
        }
        if (!otp_is_boxed(m.p)) {
            if (!otp_exact_eq(m.p, m.t))
                rc = -OTP_ENOMATCH;
            continue;
        }
        const otp__tuple *pt = otp__ptr(m.p);
        unsigned kind = otp__hdr_kind(pt->hdr);
        uint64_t size = otp__hdr_size(pt->hdr);
        if (kind == PK_VAR) {
            if (size == PV_WILD)
                continue;
            if (binds[size] == OTP_NONE)
                binds[size] = m.t;
            else if (!otp_exact_eq(binds[size], m.t))
                rc = -OTP_ENOMATCH;
            continue;
        }
        size_t need = 0;
        if (kind == OTP__H_TUPLE) {
            if (!otp_is_tuple(m.t) || otp_tuple_arity(m.t) != size) {
                rc = -OTP_ENOMATCH;
                break;
            }
            need = (size_t)size;
        } else if (kind == PK_MAPPAT) {
            if (!otp_is_map(m.t)) {
                rc = -OTP_ENOMATCH;
                break;
            }
            need = (size_t)size;
        } else {
            if (!otp_exact_eq(m.p, m.t))
                rc = -OTP_ENOMATCH;
            continue;
        }
        if (cap - n < need) {
            size_t nc = cap;
            while (nc - n < need)
                nc *= 2;
            mpair *ns = st == small ? malloc(nc * sizeof *ns) : realloc(st, nc * sizeof *ns);
            if (!ns) {
                rc = -OTP_ENOMEM;
                break;
            }
            if (st == small)
                memcpy(ns, small, sizeof small);
            st = ns;
            cap = nc;
        }
        const otp_term *te = otp_tuple_elems(m.t);
        /* Pushed in reverse so elements are matched left to right. */
        for (size_t i = need; i-- > 0;) {
            if (kind == OTP__H_TUPLE) {
                st[n++] = (mpair){pt->el[i], te[i]};
            } else {
                otp_term v = otp_map_get(m.t, pt->el[2 * i]);
                if (v == OTP_NONE) {
                    rc = -OTP_ENOMATCH;
                    break;
                }
                st[n++] = (mpair){pt->el[2 * i + 1], v};
            }
        }
    }
    if (st != small)
        free(st);
    return rc;
}

int otp_match(const char *pattern, otp_term t, otp_term *binds, size_t nbinds)
{
    if (!pattern || (!binds && nbinds))
        return -OTP_EBADARG;
    otp_arena *a = otp_arena_new();
    if (!a)
        return -OTP_ENOMEM;
    parser ps;
    parser_init(&ps, a, pattern, strlen(pattern), NULL);
    ps.pattern = true;
    otp_term pat = OTP_NONE;
    int rc = parse_all(&ps, &pat, NULL);
    if (rc == 0 && ps.nvars > nbinds)
        rc = -OTP_ENOSPC;
    if (rc == 0) {
        for (size_t i = 0; i < ps.nvars; i++)
            binds[i] = OTP_NONE;
        rc = match(pat, t, binds);
    }
    parser_free(&ps);
    otp_arena_free(a);
    return rc;
}
