/* text_print.c — terms as Erlang text. otp_print is io_lib:format("~w")
 * byte for byte (as UTF-8), walked with an explicit stack so any depth
 * prints; otp_print_pretty is a port of io_lib_pretty's layout for ~p. Also
 * here: Erlang's shortest round-trip float form and bignums in decimal.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_internal.h"

typedef struct printer {
    otp_buf *out;
    otp_term local_node;
    bool node_names;
    /* ~p's single-line form: printable lists as "strings" and printable
     * binaries as <<"text">>. */
    bool strings;
} printer;

/* ------------------------------------------------------------ appending */

static int put(printer *p, const void *s, size_t n)
{
    int rc = otp__text_reserve(p->out, n);
    if (rc < 0)
        return rc;
    memcpy(p->out->data + p->out->len, s, n);
    p->out->len += n;
    return 0;
}

static int putc1(printer *p, char c)
{
    int rc = otp__text_reserve(p->out, 1);
    if (rc < 0)
        return rc;
    p->out->data[p->out->len++] = (uint8_t)c;
    return 0;
}

static int puts0(printer *p, const char *s)
{
    return put(p, s, strlen(s));
}

static int put_u64(printer *p, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return put(p, tmp + sizeof tmp - n, (size_t)n);
}

static int put_i64(printer *p, int64_t v)
{
    if (v < 0) {
        int rc = putc1(p, '-');
        if (rc < 0)
            return rc;
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

/* ------------------------------------------------------------- bignums */

/* Decimal by repeated division of a scratch copy by 10^19: quadratic in the
 * limb count, which is fine for the numbers terms carry (a 1000-digit
 * integer is 53 limbs) and slow only for megabit monsters. */
static int put_bignum(printer *p, const otp__big *b)
{
    static const uint64_t BASE = 10000000000000000000ull; /* 10^19 */
    size_t n = (size_t)otp__hdr_size(b->hdr);
    /* 64 bits hold 1.0103 chunks of 19 digits: n + n/32 + 2 chunks suffice. */
    size_t maxchunks = n + n / 32 + 2;
    uint64_t small[64 + 64 / 32 + 2 + 64];
    uint64_t *scratch = small;
    if (n > 64) {
        scratch = malloc((n + maxchunks) * sizeof(uint64_t));
        if (!scratch)
            return -OTP_ENOMEM;
    }
    uint64_t *limb = scratch, *chunk = scratch + n;
    memcpy(limb, b->limb, n * sizeof(uint64_t));
    size_t nchunks = 0;
    while (n > 0) {
        unsigned __int128 rem = 0;
        for (size_t i = n; i-- > 0;) {
            unsigned __int128 cur = (rem << 64) | limb[i];
            limb[i] = (uint64_t)(cur / BASE);
            rem = cur % BASE;
        }
        chunk[nchunks++] = (uint64_t)rem;
        while (n > 0 && limb[n - 1] == 0)
            n--;
    }
    int rc = 0;
    if (otp__hdr_kind(b->hdr) == OTP__H_NEGBIG)
        rc = putc1(p, '-');
    if (rc == 0)
        rc = put_u64(p, nchunks ? chunk[nchunks - 1] : 0);
    for (size_t i = nchunks ? nchunks - 1 : 0; rc == 0 && i-- > 0;) {
        char tmp[19];
        uint64_t v = chunk[i];
        for (int k = 18; k >= 0; k--) {
            tmp[k] = (char)('0' + v % 10);
            v /= 10;
        }
        rc = put(p, tmp, 19);
    }
    if (scratch != small)
        free(scratch);
    return rc;
}

/* -------------------------------------------------------------- floats */

/* The p-digit decimal nearest to v (> 0): digits into dig, returns the
 * exponent of the first digit. glibc's printf rounds exactly. */
static int nearest_digits(double v, int p, char *dig)
{
    char tmp[48];
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, v);
    const char *s = tmp;
    int n = 0;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9')
            dig[n++] = *s;
    return atoi(s + 1);
}

/* Whether dig[0..n) x 10^(e10 - n + 1) reads back as v. */
static bool digits_roundtrip(const char *dig, int n, int e10, double v)
{
    char tmp[48];
    int ex = e10 - (n - 1), k = n;
    memcpy(tmp, dig, (size_t)n);
    tmp[k++] = 'e';
    if (ex < 0) {
        tmp[k++] = '-';
        ex = -ex;
    }
    if (ex >= 100)
        tmp[k++] = (char)('0' + ex / 100);
    if (ex >= 10)
        tmp[k++] = (char)('0' + ex / 10 % 10);
    tmp[k++] = (char)('0' + ex % 10);
    tmp[k] = 0;
    return strtod(tmp, NULL) == v;
}

/* The p-digit decimal one step away from dig (dir = +1 or -1). */
static void step_digits(char *dig, int n, int *e10, int dir)
{
    int i = n - 1;
    if (dir > 0) {
        while (i >= 0 && dig[i] == '9')
            dig[i--] = '0';
        if (i < 0) { /* 9.99 -> 10.0: one more digit, renormalise */
            dig[0] = '1';
            (*e10)++;
        } else {
            dig[i]++;
        }
    } else {
        while (i >= 0 && dig[i] == '0')
            dig[i--] = '9';
        dig[i]--;
        if (dig[0] == '0') { /* 1.00 -> 0.999: the grid below is finer */
            memmove(dig, dig + 1, (size_t)n - 1);
            dig[n - 1] = '9';
            (*e10)--;
        }
    }
}

/* Rounds the 17 digits d17 to p < 17 digits in dig; false when d17 sits
 * exactly on the halfway point, where d17's own rounding hides which way
 * the true value lies. */
static bool round_from_17(const char *d17, int e17, int p, char *dig, int *e10)
{
    uint64_t rest = 0, half = 1;
    for (int i = p; i < 17; i++) {
        rest = rest * 10 + (uint64_t)(d17[i] - '0');
        half *= 10;
    }
    half /= 2;
    if (rest == half)
        return false;
    memcpy(dig, d17, (size_t)p);
    *e10 = e17;
    if (rest > half)
        step_digits(dig, p, e10, +1);
    return true;
}

/* Shortest digits that read back as v (> 0, finite), the closest such when
 * several have that length — what Ryu computes for float_to_list(F,
 * [short]). Returns the digit count; *e10 the exponent of the first digit.
 *
 * For normal doubles no shortest form is longer than 17 digits nor, when it
 * is shorter than 15, anything but the 15-digit rounding with its zeros
 * stripped (an error of half an ulp is below half a unit in the 15th digit),
 * so three lengths suffice, all rounded from one exact 17-digit printf.
 * Subnormals have fewer bits: try every length. */
static int shortest_digits(double v, char *dig, int *e10)
{
    char d17[20];
    int e17 = nearest_digits(v, 17, d17);
    bool normal = v >= DBL_MIN;
    for (int p = normal ? 15 : 1; p <= 17; p++) {
        int e = e17, n = p;
        if (p == 17)
            memcpy(dig, d17, 17);
        else if (!round_from_17(d17, e17, p, dig, &e))
            e = nearest_digits(v, p, dig);
        if (!digits_roundtrip(dig, n, e, v)) {
            /* At a power of two the interval is lopsided: the next decimal
             * on the far side may read back when the nearest does not. */
            char alt[20];
            int ae = e, found = 0;
            for (int dir = -1; dir <= 1 && !found; dir += 2) {
                memcpy(alt, dig, (size_t)n);
                ae = e;
                step_digits(alt, n, &ae, dir);
                found = digits_roundtrip(alt, n, ae, v);
            }
            if (!found)
                continue;
            memcpy(dig, alt, (size_t)n);
            e = ae;
        }
        while (n > 1 && dig[n - 1] == '0')
            n--;
        *e10 = e;
        return n;
    }
    /* Not reached: 17 digits always read back. */
    memcpy(dig, d17, 17);
    *e10 = e17;
    return 17;
}

/* float_to_list(F, [short]) of OTP 25 (erts/emulator/ryu/to_chars.h): the
 * shortest digits, placed in fixed notation when that is not longer than
 * scientific, with the special cases near 2^53 where fixed notation would
 * suggest more precision than a double has. */
int otp__text_format_double(double d, char *out)
{
    char *o = out;
    if (signbit(d)) {
        *o++ = '-';
        d = -d;
    }
    if (d == 0) {
        memcpy(o, "0.0", 4);
        return (int)(o - out) + 3;
    }
    char dig[20];
    int e10;
    int olen = shortest_digits(d, dig, &e10);
    int rexp = e10 - (olen - 1); /* value = digits * 10^rexp */
    uint64_t mant = 0;
    for (int i = 0; i < olen; i++)
        mant = mant * 10 + (uint64_t)(dig[i] - '0');
    int lower, upper;
    if (olen == 1) {
        lower = -4;
        upper = 2;
    } else if (e10 >= 10) {
        lower = -(olen + 2);
        upper = 2;
    } else {
        lower = -(olen + 2);
        upper = 1;
    }
    bool fixed = lower <= rexp && rexp <= upper;
    if (fixed && ((mant >= (1ull << 53) && rexp == 0) || (mant > (1ull << 52) / 5 && rexp == 1) ||
                  (mant > (1ull << 51) / 25 && rexp == 2)))
        fixed = false;
    if (fixed) {
        int whole = olen + rexp;
        if (rexp >= 0) {
            memcpy(o, dig, (size_t)olen);
            o += olen;
            memset(o, '0', (size_t)rexp);
            o += rexp;
            memcpy(o, ".0", 2);
            o += 2;
        } else if (whole > 0) {
            memcpy(o, dig, (size_t)whole);
            o += whole;
            *o++ = '.';
            memcpy(o, dig + whole, (size_t)(olen - whole));
            o += olen - whole;
        } else {
            *o++ = '0';
            *o++ = '.';
            memset(o, '0', (size_t)-whole);
            o += -whole;
            memcpy(o, dig, (size_t)olen);
            o += olen;
        }
    } else {
        *o++ = dig[0];
        *o++ = '.';
        if (olen > 1) {
            memcpy(o, dig + 1, (size_t)olen - 1);
            o += olen - 1;
        } else {
            *o++ = '0';
        }
        o += sprintf(o, "e%d", e10);
    }
    *o = 0;
    return (int)(o - out);
}

/* --------------------------------------------------------------- atoms */

bool otp__text_reserved_word(const uint8_t *s, size_t len)
{
    /* Checked for every unquoted-looking atom printed: compare the length
     * and first letter before any memcmp. */
    static const struct {
        uint8_t len;
        char text[8];
    } words[] = {
        {5, "after"}, {3, "and"},  {7, "andalso"}, {4, "band"},   {5, "begin"},   {4, "bnot"},
        {3, "bor"},   {3, "bsl"},  {3, "bsr"},     {4, "bxor"},   {4, "case"},    {5, "catch"},
        {4, "cond"},  {3, "div"},  {3, "end"},     {3, "fun"},    {2, "if"},      {3, "let"},
        {3, "not"},   {2, "of"},   {2, "or"},      {6, "orelse"}, {7, "receive"}, {3, "rem"},
        {3, "try"},   {4, "when"}, {3, "xor"},
    };
    if (len < 2 || len > 7)
        return false;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (words[i].len == len && words[i].text[0] == (char)s[0] &&
            memcmp(words[i].text, s, len) == 0)
            return true;
    return false;
}

/* One character inside quotes, as io_lib:write_string_as_latin1/2 (atoms
 * in ~w, quote '\'') and io_lib:write_string/2 (~p strings, quote '"')
 * write it for the characters they see; above 255 we always give \x{..}. */
static int put_quoted_char(printer *p, uint32_t c, char q)
{
    char tmp[16];
    size_t n = 0;
    if (c == (uint32_t)q || c == '\\') {
        tmp[n++] = '\\';
        tmp[n++] = (char)c;
    } else if (c >= ' ' && c <= '~') {
        tmp[n++] = (char)c;
    } else if (c >= 0xa0 && c <= 0xff) {
        n = otp__utf8_put((uint8_t *)tmp, c);
    } else if (c > 0xff) {
        n = (size_t)snprintf(tmp, sizeof tmp, "\\x{%X}", (unsigned)c);
    } else {
        /* Control characters with a letter escape, the rest in octal. */
        static const char from[] = "\n\r\t\v\b\f\033\177", to[] = "nrtvbfed";
        const char *hit = memchr(from, (int)c, sizeof from - 1);
        tmp[n++] = '\\';
        if (hit) {
            tmp[n++] = to[hit - from];
        } else {
            tmp[n++] = (char)('0' + (c >> 6));
            tmp[n++] = (char)('0' + ((c >> 3) & 7));
            tmp[n++] = (char)('0' + (c & 7));
        }
    }
    return put(p, tmp, n);
}

static bool atom_needs_quotes(const uint8_t *s, size_t len)
{
    if (len == 0)
        return true;
    uint32_t c;
    size_t i = 0, k = otp__utf8_get(s, len, &c);
    if (k == 0 || !otp__is_lower(c))
        return true;
    for (i = k; i < len; i += k) {
        k = otp__utf8_get(s + i, len - i, &c);
        if (k == 0 || !otp__is_name_char(c))
            return true;
    }
    return otp__text_reserved_word(s, len);
}

static int put_atom(printer *p, otp_term atom)
{
    const otp__atom_entry *e = otp__atom_entry_of(atom);
    const uint8_t *s = e->text;
    size_t len = e->len;
    if (!atom_needs_quotes(s, len))
        return put(p, s, len); /* Latin-1 letters stay as they are, in UTF-8 */
    int rc = putc1(p, '\'');
    for (size_t i = 0; rc == 0 && i < len;) {
        uint32_t c;
        size_t k = otp__utf8_get(s + i, len - i, &c);
        if (k == 0) { /* atoms are valid UTF-8; be safe anyway */
            c = s[i];
            k = 1;
        }
        rc = put_quoted_char(p, c, '\'');
        i += k;
    }
    return rc ? rc : putc1(p, '\'');
}

/* Atoms inside `fun M:F/A` are printed by the emulator
 * (erl_printf_term.c:print_atom_name, reached through
 * erlang:fun_to_list/1), not by io_lib, and its rules differ: reserved
 * words stay bare, '@' forces quotes, only Latin-1 letters count,
 * DEL is printed raw and 128..159 in octal. */
static bool erts_lower(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 223 && c <= 255 && c != 247);
}

static bool erts_alnum_(uint32_t c)
{
    return erts_lower(c) || (c >= 'A' && c <= 'Z') || (c >= 192 && c < 223 && c != 215) ||
           (c >= '0' && c <= '9') || c == '_';
}

static int put_atom_erts(printer *p, otp_term atom)
{
    const otp__atom_entry *e = otp__atom_entry_of(atom);
    const uint8_t *s = e->text;
    size_t len = e->len;
    if (len == 0)
        return puts0(p, "''");
    bool quote = false;
    for (size_t i = 0; i < len && !quote;) {
        uint32_t c;
        size_t k = otp__utf8_get(s + i, len - i, &c);
        if (k == 0 || k > 2)
            quote = true; /* outside Latin-1's two-byte block: always quoted */
        else
            quote = i == 0 ? !erts_lower(c) : !erts_alnum_(c);
        i += k ? k : 1;
    }
    int rc = quote ? putc1(p, '\'') : 0;
    for (size_t i = 0; rc == 0 && i < len;) {
        uint32_t c;
        size_t k = otp__utf8_get(s + i, len - i, &c);
        if (k == 0) {
            c = s[i];
            k = 1;
        }
        char tmp[8];
        static const char from[] = "'\\\n\f\t\r\b\v", to[] = "'\\nftrbv";
        const char *hit = c < 128 && c ? memchr(from, (int)c, sizeof from - 1) : NULL;
        if (hit) {
            tmp[0] = '\\';
            tmp[1] = to[hit - from];
            rc = put(p, tmp, 2);
        } else if (c < ' ' || (c >= 128 && c < 160)) {
            tmp[0] = '\\';
            tmp[1] = (char)('0' + (c >> 6));
            tmp[2] = (char)('0' + ((c >> 3) & 7));
            tmp[3] = (char)('0' + (c & 7));
            rc = put(p, tmp, 4);
        } else {
            rc = put(p, s + i, k);
        }
        i += k;
    }
    return rc || !quote ? rc : putc1(p, '\'');
}

/* ---------------------------------------------------- leaves of ~w */

static bool printable_latin1(uint64_t c)
{
    return (c >= 32 && c <= 126) || (c >= 0xa0 && c <= 0xff) || (c >= 8 && c <= 13) || c == 27;
}

/* io_lib:printable_latin1_list/1: a proper list of printable characters. */
static bool printable_list(otp_term l)
{
    for (; otp_is_cons(l);) {
        const otp__cons *c = otp__ptr(l);
        if (!otp_is_small(c->head))
            return false;
        int64_t v = otp_small_value(c->head);
        if (v < 0 || !printable_latin1((uint64_t)v))
            return false;
        l = c->tail;
    }
    return l == OTP_NIL;
}

static bool printable_binary(const otp__binary *b)
{
    if (b->bits % 8 || b->bits == 0)
        return false;
    for (uint64_t i = 0; i < b->bits / 8; i++)
        if (!printable_latin1(b->data[i]))
            return false;
    return true;
}

static int put_string(printer *p, otp_term l)
{
    int rc = putc1(p, '"');
    for (; rc == 0 && otp_is_cons(l); l = ((const otp__cons *)otp__ptr(l))->tail)
        rc = put_quoted_char(p, (uint32_t)otp_small_value(((const otp__cons *)otp__ptr(l))->head),
                             '"');
    return rc ? rc : putc1(p, '"');
}

static int put_binary(printer *p, const otp__binary *b)
{
    int rc = put(p, "<<", 2);
    uint64_t nbytes = b->bits / 8;
    unsigned rest = (unsigned)(b->bits % 8);
    if (p->strings && printable_binary(b)) {
        rc = rc ? rc : putc1(p, '"');
        for (uint64_t i = 0; rc == 0 && i < nbytes; i++)
            rc = put_quoted_char(p, b->data[i], '"');
        rc = rc ? rc : putc1(p, '"');
        return rc ? rc : put(p, ">>", 2);
    }
    /* Worst case 4 bytes a byte: reserve once, write digits directly. */
    if (rc == 0 && (rc = otp__text_reserve(p->out, nbytes * 4 + 16)) == 0) {
        uint8_t *o = p->out->data + p->out->len;
        for (uint64_t i = 0; i < nbytes; i++) {
            unsigned v = b->data[i];
            if (i)
                *o++ = ',';
            if (v >= 100)
                *o++ = (uint8_t)('0' + v / 100);
            if (v >= 10)
                *o++ = (uint8_t)('0' + v / 10 % 10);
            *o++ = (uint8_t)('0' + v % 10);
        }
        p->out->len = (size_t)(o - p->out->data);
    }
    if (rc == 0 && rest) {
        if (nbytes)
            rc = putc1(p, ',');
        rc = rc ? rc : put_u64(p, (uint64_t)(b->data[nbytes] >> (8 - rest)));
        rc = rc ? rc : putc1(p, ':');
        rc = rc ? rc : put_u64(p, rest);
    }
    return rc ? rc : put(p, ">>", 2);
}

/* The N of <N.ID.Serial>: 0 for the local node, else the node atom's index
 * (Erlang's own is a channel number, equally node-local); or the node's
 * name when asked for. */
static int put_node(printer *p, otp_term node)
{
    if (p->local_node != OTP_NONE && p->local_node != 0 && node == p->local_node)
        return putc1(p, '0');
    if (p->node_names && otp_is_atom(node))
        return put_atom(p, node);
    return put_u64(p, otp_is_atom(node) ? otp__atom_index(node) : 0);
}

static int put_integer_term(printer *p, otp_term t)
{
    if (otp_is_small(t))
        return put_i64(p, otp_small_value(t));
    if (otp_is_boxed(t) && (otp__kind(t) == OTP__H_POSBIG || otp__kind(t) == OTP__H_NEGBIG))
        return put_bignum(p, otp__ptr(t));
    return -OTP_EBADARG;
}

/* Terms that print without visiting children. */
static int put_leaf(printer *p, otp_term t)
{
    int rc;
    switch (otp_type_of(t)) {
    case OTP_T_INTEGER:
        return put_integer_term(p, t);
    case OTP_T_FLOAT: {
        char tmp[40];
        double d;
        otp_get_double(t, &d);
        return put(p, tmp, (size_t)otp__text_format_double(d, tmp));
    }
    case OTP_T_ATOM:
        return put_atom(p, t);
    case OTP_T_NIL:
        return put(p, "[]", 2);
    case OTP_T_BITSTRING:
        return put_binary(p, otp__ptr(t));
    case OTP_T_PID: {
        otp_term node;
        uint32_t id, serial, creation;
        if ((rc = otp_pid_parts(t, &node, &id, &serial, &creation)) < 0)
            return rc;
        if ((rc = putc1(p, '<')) || (rc = put_node(p, node)) || (rc = putc1(p, '.')) ||
            (rc = put_u64(p, id)) || (rc = putc1(p, '.')) || (rc = put_u64(p, serial)))
            return rc;
        return putc1(p, '>');
    }
    case OTP_T_PORT: {
        otp_term node;
        uint64_t id;
        uint32_t creation;
        if ((rc = otp_port_parts(t, &node, &id, &creation)) < 0)
            return rc;
        if ((rc = puts0(p, "#Port<")) || (rc = put_node(p, node)) || (rc = putc1(p, '.')) ||
            (rc = put_u64(p, id)))
            return rc;
        return putc1(p, '>');
    }
    case OTP_T_REF: {
        otp_term node;
        uint32_t creation, words[5];
        size_t n;
        if ((rc = otp_ref_parts(t, &node, &creation, words, &n)) < 0)
            return rc;
        if ((rc = puts0(p, "#Ref<")) || (rc = put_node(p, node)))
            return rc;
        /* Erlang prints the id words last-on-the-wire first. */
        for (size_t i = n; i-- > 0;)
            if ((rc = putc1(p, '.')) || (rc = put_u64(p, words[i])))
                return rc;
        return putc1(p, '>');
    }
    case OTP_T_FUN: {
        bool is_export;
        otp_term mod, fun;
        uint32_t arity;
        size_t nfree;
        if ((rc = otp_fun_info(t, &is_export, &mod, &fun, &arity, &nfree)) < 0)
            return rc;
        if (is_export) {
            if ((rc = puts0(p, "fun ")) || (rc = put_atom_erts(p, mod)) || (rc = putc1(p, ':')) ||
                (rc = put_atom_erts(p, fun)) || (rc = putc1(p, '/')))
                return rc;
            return put_u64(p, arity);
        }
        /* erlang:fun_to_list/1: #Fun<Module.OldIndex.OldUniq>. */
        const otp__fun *f = otp__ptr(t);
        const otp__atom_entry *me = otp__atom_entry_of(f->module);
        /* The emulator writes the module name raw here, never quoted. */
        if ((rc = puts0(p, "#Fun<")) || (rc = put(p, me->text, me->len)) || (rc = putc1(p, '.')) ||
            (rc = put_integer_term(p, f->old_index)) || (rc = putc1(p, '.')) ||
            (rc = put_integer_term(p, f->old_uniq)))
            return rc;
        return putc1(p, '>');
    }
    default:
        return -OTP_EBADARG;
    }
}

/* ------------------------------------------------------ the ~w walker */

enum { FR_LIST, FR_LIST_END, FR_TUPLE, FR_MAP };

typedef struct frame {
    unsigned kind;
    bool value_next; /* maps: the key of pair i has been printed */
    size_t i, n;
    const otp_term *el; /* tuple elements or map pairs */
    otp_term tail;      /* lists: what follows the element being printed */
} frame;

typedef struct fstack {
    frame *f;
    size_t n, cap;
    frame inline_[32];
} fstack;

static frame *fpush(fstack *s)
{
    if (s->n == s->cap) {
        size_t cap = s->cap * 2;
        frame *nf = s->f == s->inline_ ? malloc(cap * sizeof *nf) : realloc(s->f, cap * sizeof *nf);
        if (!nf)
            return NULL;
        if (s->f == s->inline_)
            memcpy(nf, s->inline_, sizeof s->inline_);
        s->f = nf;
        s->cap = cap;
    }
    return &s->f[s->n++];
}

/* Prints t with an explicit stack: containers push a frame and descend into
 * their first child; when a child is done, the top frame emits the
 * separator and the next child, or its closer. */
static int print_term(printer *p, otp_term t)
{
    fstack st = {.f = st.inline_, .n = 0, .cap = 32};
    int rc = 0;
    bool have = true; /* t still to be printed */
    for (;;) {
        if (have) {
            have = false;
            if (otp_is_cons(t)) {
                if (p->strings && printable_list(t)) {
                    rc = put_string(p, t);
                } else {
                    frame *f = fpush(&st);
                    if (!f) {
                        rc = -OTP_ENOMEM;
                        break;
                    }
                    const otp__cons *c = otp__ptr(t);
                    f->kind = FR_LIST;
                    f->tail = c->tail;
                    rc = putc1(p, '[');
                    t = c->head;
                    have = true;
                }
            } else if (otp_is_boxed(t) && otp__kind(t) == OTP__H_TUPLE) {
                const otp__tuple *tp = otp__ptr(t);
                size_t n = (size_t)otp__hdr_size(tp->hdr);
                if (n == 0) {
                    rc = put(p, "{}", 2);
                } else {
                    frame *f = fpush(&st);
                    if (!f) {
                        rc = -OTP_ENOMEM;
                        break;
                    }
                    f->kind = FR_TUPLE;
                    f->el = tp->el;
                    f->i = 1;
                    f->n = n;
                    rc = putc1(p, '{');
                    t = tp->el[0];
                    have = true;
                }
            } else if (otp_is_boxed(t) && otp__kind(t) == OTP__H_MAP) {
                const otp__tuple *m = otp__ptr(t);
                size_t n = (size_t)otp__hdr_size(m->hdr);
                if (n == 0) {
                    rc = put(p, "#{}", 3);
                } else {
                    frame *f = fpush(&st);
                    if (!f) {
                        rc = -OTP_ENOMEM;
                        break;
                    }
                    f->kind = FR_MAP;
                    f->el = m->el;
                    f->i = 0;
                    f->n = n;
                    f->value_next = true;
                    rc = put(p, "#{", 2);
                    t = m->el[0];
                    have = true;
                }
            } else {
                rc = put_leaf(p, t);
            }
            if (rc < 0)
                break;
            if (have)
                continue;
        }
        if (st.n == 0)
            break;
        frame *f = &st.f[st.n - 1];
        switch (f->kind) {
        case FR_LIST:
            if (otp_is_cons(f->tail)) {
                const otp__cons *c = otp__ptr(f->tail);
                rc = putc1(p, ',');
                t = c->head;
                f->tail = c->tail;
                have = true;
            } else if (f->tail == OTP_NIL) {
                rc = putc1(p, ']');
                st.n--;
            } else {
                rc = putc1(p, '|');
                t = f->tail;
                f->kind = FR_LIST_END;
                have = true;
            }
            break;
        case FR_LIST_END:
            rc = putc1(p, ']');
            st.n--;
            break;
        case FR_TUPLE:
            if (f->i < f->n) {
                rc = putc1(p, ',');
                t = f->el[f->i++];
                have = true;
            } else {
                rc = putc1(p, '}');
                st.n--;
            }
            break;
        case FR_MAP:
            if (f->value_next) {
                rc = put(p, " => ", 4);
                t = f->el[2 * f->i + 1];
                f->value_next = false;
                have = true;
            } else if (++f->i < f->n) {
                rc = putc1(p, ',');
                t = f->el[2 * f->i];
                f->value_next = true;
                have = true;
            } else {
                rc = putc1(p, '}');
                st.n--;
            }
            break;
        }
        if (rc < 0)
            break;
    }
    if (st.f != st.inline_)
        free(st.f);
    return rc;
}

static void printer_init(printer *p, otp_buf *out, const otp_print_opts *opts, bool strings)
{
    p->out = out;
    p->local_node = opts ? opts->local_node : OTP_NONE;
    p->node_names = opts ? opts->node_names : false;
    p->strings = strings;
}

int otp_print(otp_buf *out, otp_term t, const otp_print_opts *opts)
{
    if (!out)
        return -OTP_EBADARG;
    printer p;
    printer_init(&p, out, opts, false);
    size_t start = out->len;
    int rc = print_term(&p, t);
    if (rc < 0)
        out->len = start; /* no half-printed term on failure */
    return rc;
}

const char *otp_sprint(otp_arena *a, otp_term t)
{
    otp_buf b = {0};
    char *s = NULL;
    if (otp_print(&b, t, NULL) == 0 && (s = otp_arena_alloc(a, b.len + 1)) != NULL) {
        memcpy(s, b.data, b.len);
        s[b.len] = 0;
    }
    free(b.data);
    return s;
}

/* ------------------------------------------------------------------ ~p
 *
 * A port of io_lib_pretty:print/9 as io_lib:format("~p") calls it (column
 * 1, depth and character limits off, Latin-1, strings on). First the term
 * becomes a tree of nodes, each with its length in characters when written
 * on one line (print_length/6); then pp/8 lays it out, and cind/7 picks the
 * indentation of tagged tuples. Both recurse as the Erlang code does, so
 * terms nested deeper than PRETTY_MAX_DEPTH print on one line instead.
 */

#define PRETTY_MAX_DEPTH 200

enum { PN_LEAF, PN_BIN, PN_LIST, PN_TUPLE, PN_TAGGED, PN_MAP, PN_PAIR };

typedef struct pnode {
    uint8_t kind;
    bool improper;      /* lists: the last kid is the tail */
    size_t nkids, kids; /* kids: index of the first in pp->kids */
    size_t off, bytes;  /* leaves and binaries: their text in pp->text */
    long len;           /* characters on one line */
    otp_term t;
} pnode;

typedef struct pp {
    printer *p;
    printer leafp; /* prints leaves into `text` */
    otp_buf text;
    pnode *nodes;
    size_t nnodes, capnodes;
    size_t *kids;
    size_t nkids, capkids;
    long ll, m;
    bool fail; /* cind's throw(no_good) */
    int rc;
} pp;

static size_t node_new(pp *c)
{
    if (c->nnodes == c->capnodes) {
        size_t cap = c->capnodes ? c->capnodes * 2 : 64;
        pnode *n = realloc(c->nodes, cap * sizeof *n);
        if (!n) {
            c->rc = -OTP_ENOMEM;
            return SIZE_MAX;
        }
        c->nodes = n;
        c->capnodes = cap;
    }
    memset(&c->nodes[c->nnodes], 0, sizeof(pnode));
    return c->nnodes++;
}

static size_t kids_reserve(pp *c, size_t n)
{
    if (c->capkids - c->nkids < n) {
        size_t cap = c->capkids ? c->capkids : 64;
        while (cap - c->nkids < n)
            cap *= 2;
        size_t *k = realloc(c->kids, cap * sizeof *k);
        if (!k) {
            c->rc = -OTP_ENOMEM;
            return SIZE_MAX;
        }
        c->kids = k;
        c->capkids = cap;
    }
    size_t at = c->nkids;
    c->nkids += n;
    return at;
}

static long chars_in(const uint8_t *s, size_t n)
{
    long k = 0;
    for (size_t i = 0; i < n; i++)
        k += (s[i] & 0xc0) != 0x80;
    return k;
}

static size_t build(pp *c, otp_term t, int depth);

static size_t build_leaf(pp *c, otp_term t, uint8_t kind)
{
    size_t ni = node_new(c);
    if (ni == SIZE_MAX)
        return ni;
    size_t off = c->text.len;
    int rc = print_term(&c->leafp, t);
    if (rc < 0) {
        c->rc = rc;
        return SIZE_MAX;
    }
    pnode *n = &c->nodes[ni];
    n->kind = kind;
    n->t = t;
    n->off = off;
    n->bytes = c->text.len - off;
    n->len = chars_in(c->text.data + off, n->bytes);
    return ni;
}

/* print_length/6 */
static size_t build(pp *c, otp_term t, int depth)
{
    if (depth > PRETTY_MAX_DEPTH) {
        c->rc = -OTP_ELIMIT;
        return SIZE_MAX;
    }
    if (otp_is_cons(t) && !printable_list(t)) {
        size_t n = 0;
        otp_term l = t;
        for (; otp_is_cons(l); l = ((const otp__cons *)otp__ptr(l))->tail)
            n++;
        bool improper = l != OTP_NIL;
        size_t ni = node_new(c);
        size_t at = ni == SIZE_MAX ? ni : kids_reserve(c, n + improper);
        if (at == SIZE_MAX)
            return SIZE_MAX;
        long len = 2;
        size_t i = 0;
        for (l = t; otp_is_cons(l); l = ((const otp__cons *)otp__ptr(l))->tail, i++) {
            size_t k = build(c, ((const otp__cons *)otp__ptr(l))->head, depth + 1);
            if (k == SIZE_MAX)
                return k;
            c->kids[at + i] = k;
            len += c->nodes[k].len + (i > 0);
        }
        if (improper) {
            size_t k = build(c, l, depth + 1);
            if (k == SIZE_MAX)
                return k;
            c->kids[at + i] = k;
            len += 1 + c->nodes[k].len;
        }
        pnode *nd = &c->nodes[ni];
        nd->kind = PN_LIST;
        nd->improper = improper;
        nd->nkids = n + improper;
        nd->kids = at;
        nd->len = len;
        nd->t = t;
        return ni;
    }
    if (otp_is_boxed(t) && (otp__kind(t) == OTP__H_TUPLE || otp__kind(t) == OTP__H_MAP)) {
        const otp__tuple *tp = otp__ptr(t);
        size_t n = (size_t)otp__hdr_size(tp->hdr);
        if (n == 0)
            return build_leaf(c, t, PN_LEAF);
        bool map = otp__kind(t) == OTP__H_MAP;
        size_t ni = node_new(c);
        size_t at = ni == SIZE_MAX ? ni : kids_reserve(c, n);
        if (at == SIZE_MAX)
            return SIZE_MAX;
        long len = map ? 3 : 2;
        for (size_t i = 0; i < n; i++) {
            size_t k;
            if (map) {
                size_t pi = node_new(c);
                size_t pk = pi == SIZE_MAX ? pi : kids_reserve(c, 2);
                size_t kk = pk == SIZE_MAX ? pk : build(c, tp->el[2 * i], depth + 1);
                size_t kv = kk == SIZE_MAX ? kk : build(c, tp->el[2 * i + 1], depth + 1);
                if (kv == SIZE_MAX)
                    return SIZE_MAX;
                c->kids[pk] = kk;
                c->kids[pk + 1] = kv;
                pnode *pn = &c->nodes[pi];
                pn->kind = PN_PAIR;
                pn->nkids = 2;
                pn->kids = pk;
                pn->len = c->nodes[kk].len + 4 + c->nodes[kv].len;
                k = pi;
            } else {
                k = build(c, tp->el[i], depth + 1);
                if (k == SIZE_MAX)
                    return k;
            }
            c->kids[at + i] = k;
            len += c->nodes[k].len + (i > 0);
        }
        pnode *nd = &c->nodes[ni];
        nd->kind = map ? PN_MAP : (otp_is_atom(tp->el[0]) && n > 1) ? PN_TAGGED : PN_TUPLE;
        nd->nkids = n;
        nd->kids = at;
        nd->len = len;
        nd->t = t;
        return ni;
    }
    if (otp_is_boxed(t) && otp__kind(t) == OTP__H_BINARY) {
        const otp__binary *b = otp__ptr(t);
        /* <<>> and printable binaries are plain text; others can wrap. */
        return build_leaf(c, t, b->bits == 0 || printable_binary(b) ? PN_LEAF : PN_BIN);
    }
    return build_leaf(c, t, PN_LEAF);
}

static pnode *nd(pp *c, size_t i)
{
    return &c->nodes[i];
}
static size_t kid(pp *c, const pnode *n, size_t i)
{
    return c->kids[n->kids + i];
}
static bool atm(pp *c, size_t i)
{
    return nd(c, i)->kind == PN_LEAF;
}
static bool atm_pair(pp *c, size_t i)
{
    return atm(c, kid(c, nd(c, i), 0)) && atm(c, kid(c, nd(c, i), 1));
}

static void emit(pp *c, const void *s, size_t n)
{
    if (c->rc == 0)
        c->rc = put(c->p, s, n);
}

static void emit_nl(pp *c, long ind)
{
    if (c->rc || (c->rc = otp__text_reserve(c->p->out, (size_t)ind + 1)) < 0)
        return;
    otp_buf *o = c->p->out;
    o->data[o->len++] = '\n';
    memset(o->data + o->len, ' ', (size_t)ind);
    o->len += (size_t)ind;
}

/* write/1: the node on one line. */
static void pwrite(pp *c, size_t i)
{
    const pnode *n = nd(c, i);
    if (n->kind == PN_LEAF || n->kind == PN_BIN) {
        emit(c, c->text.data + n->off, n->bytes);
    } else if (n->kind == PN_PAIR) {
        pwrite(c, kid(c, n, 0));
        emit(c, " => ", 4);
        pwrite(c, kid(c, n, 1));
    } else if (c->rc == 0) {
        c->rc = print_term(c->p, n->t);
    }
}

static bool fits(pp *c, long len, long col, long ld, long w)
{
    return len < c->ll - col - ld && len + w + ld <= c->m;
}

/* The element-after-element test of pp_tail/cind_tail and friends. */
static bool fits_after(pp *c, long elen, long col, long ld1, long w)
{
    if (ld1 == 0)
        return elen + 1 < c->ll - col && w + elen + 1 <= c->m;
    return elen < c->ll - col - ld1 && w + elen + ld1 <= c->m;
}

static void ppn(pp *c, size_t i, long col, long tind, long ind, long ld, long w);

/* pp_element/8: returns the width it takes, or Ll to force a newline. */
static long pp_element(pp *c, size_t e, long col, long tind, long ind, long ld, long w)
{
    if (fits(c, nd(c, e)->len, col, ld, w) && atm(c, e)) {
        pwrite(c, e);
        return nd(c, e)->len;
    }
    ppn(c, e, col, tind, ind, ld, w);
    return c->ll;
}

/* pp_tail/10 over ks[from..ne), then the improper tail if any. */
static void pp_tail(pp *c, const size_t *ks, size_t from, size_t ne, long tail, long col0, long col,
                    long tind, long ind, long ld, char sep, long w)
{
    for (size_t i = from; i < ne; i++) {
        size_t e = ks[i];
        long ld1 = (i + 1 < ne) ? 0 : ld + 1;
        long elen = 1 + nd(c, e)->len;
        if (atm(c, e) && fits_after(c, elen, col, ld1, w)) {
            emit(c, ",", 1);
            pwrite(c, e);
            col += elen;
            w += elen;
        } else {
            emit(c, ",", 1);
            emit_nl(c, ind);
            long we = pp_element(c, e, col0, tind, ind, ld1, 0);
            col = col0 + we;
            w = we;
        }
    }
    if (tail >= 0) {
        size_t e = (size_t)tail;
        long len = nd(c, e)->len;
        emit(c, &sep, 1);
        if (len + 1 < c->ll - col - (ld + 1) && len + 1 + w + (ld + 1) <= c->m && atm(c, e)) {
            pwrite(c, e);
        } else {
            emit_nl(c, ind);
            ppn(c, e, col0, tind, ind, ld + 1, 0);
        }
    }
}

/* pp_list/9 */
static void pp_list(pp *c, const size_t *ks, size_t ne, long tail, long col0, long tind, long ind,
                    long ld, char sep, long w)
{
    long ld0 = (ne > 1) ? 0 : ld + 1;
    long we = pp_element(c, ks[0], col0, tind, ind, ld0, w);
    pp_tail(c, ks, 1, ne, tail, col0, col0 + we, tind, ind, ld, sep, w + we);
}

/* pp_pair/8 */
static long pp_pair(pp *c, size_t pi, long col, long tind, long ind, long ld, long w)
{
    const pnode *pn = nd(c, pi);
    if (fits(c, pn->len, col, ld, w)) {
        pwrite(c, pi);
        return atm_pair(c, pi) ? pn->len : c->ll;
    }
    long vi = tind > 0 ? tind : 4;
    ppn(c, kid(c, pn, 0), col, tind, ind, ld, w);
    emit(c, " =>", 3);
    emit_nl(c, ind + vi);
    ppn(c, kid(c, pn, 1), col + vi, tind, ind + vi, ld, 0);
    return c->ll;
}

/* pp_map/8 and pp_pairs_tail/9 */
static void pp_map(pp *c, const pnode *n, long col, long tind, long ind, long ld, long w)
{
    size_t np = n->nkids;
    long pw = pp_pair(c, kid(c, n, 0), col, tind, ind, np > 1 ? 0 : ld + 1, w);
    long col0 = col, ccol = col + pw;
    w = pw;
    for (size_t i = 1; i < np; i++) {
        size_t pi = kid(c, n, i);
        long ld1 = (i + 1 < np) ? 0 : ld + 1;
        long elen = 1 + nd(c, pi)->len;
        emit(c, ",", 1);
        if (atm_pair(c, pi) && fits_after(c, elen, ccol, ld1, w)) {
            pwrite(c, pi);
            ccol += elen;
            w += elen;
        } else {
            emit_nl(c, ind);
            pw = pp_pair(c, pi, col0, tind, ind, ld1, 0);
            ccol = col0 + pw;
            w = pw;
        }
    }
}

/* pp_tag_tuple/8 */
static void pp_tag_tuple(pp *c, const pnode *n, long col, long tind, long ind, long ld, long w)
{
    const size_t *ks = n->nkids ? c->kids + n->kids : NULL;
    long tlen = nd(c, ks[0])->len;
    long tagind = tlen + 2, tcol = col + tagind;
    pwrite(c, ks[0]);
    if (tind > 0 && tagind > tind) {
        pp_tail(c, ks + 1, 0, n->nkids - 1, -1, col + tind, tcol, tind, ind + tind, ld, ',',
                w + tlen);
    } else {
        emit(c, ",", 1);
        pp_list(c, ks + 1, n->nkids - 1, -1, tcol, tind, ind + tagind, ld, ',', w + tlen + 1);
    }
}

/* pp_binary/7: the bytes of <<...>> wrapped to the room left. */
static void pp_binary(pp *c, const pnode *n, long col, long ind, long ld, long w)
{
    long room = c->ll - col < c->m - 4 - w ? c->ll - col : c->m - 4 - w;
    long n0 = room - ld > 8 ? room - ld : 8, left = n0;
    const char *s = (const char *)c->text.data + n->off + 2, *end = s + n->bytes - 4;
    emit(c, "<<", 2);
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        if (!comma) { /* the last element, maybe Value:Size */
            if (end - s > left)
                emit_nl(c, ind);
            emit(c, s, (size_t)(end - s));
            break;
        }
        long len = (long)(comma - s) + 1;
        if (left - len < 0) {
            emit_nl(c, ind);
            left = n0 - len;
        } else {
            left -= len;
        }
        emit(c, s, (size_t)len);
        s = comma + 1;
    }
    emit(c, ">>", 2);
}

/* pp/8 */
static void ppn(pp *c, size_t i, long col, long tind, long ind, long ld, long w)
{
    const pnode *n = nd(c, i);
    if (c->rc)
        return;
    if (fits(c, n->len, col, ld, w)) {
        pwrite(c, i);
        return;
    }
    const size_t *ks = n->nkids ? c->kids + n->kids : NULL;
    switch (n->kind) {
    case PN_LIST:
        emit(c, "[", 1);
        pp_list(c, ks, n->nkids - n->improper, n->improper ? (long)ks[n->nkids - 1] : -1, col + 1,
                tind, ind + 1, ld, '|', w + 1);
        emit(c, "]", 1);
        break;
    case PN_TAGGED:
        emit(c, "{", 1);
        pp_tag_tuple(c, n, col, tind, ind, ld, w + 1);
        emit(c, "}", 1);
        break;
    case PN_TUPLE:
        emit(c, "{", 1);
        pp_list(c, ks, n->nkids, -1, col + 1, tind, ind + 1, ld, ',', w + 1);
        emit(c, "}", 1);
        break;
    case PN_MAP:
        emit(c, "#{", 2);
        pp_map(c, n, col + 2, tind, ind + 2, ld, w + 1);
        emit(c, "}", 1);
        break;
    case PN_BIN:
        pp_binary(c, n, col + 2, ind + 2, ld, w);
        break;
    default:
        pwrite(c, i);
        break;
    }
}

/* ---- cind/7: fails (c->fail) when indentation would pass half the line */

static void cind(pp *c, size_t i, long col, long I, long ld, long w);

static long cind_element(pp *c, size_t e, long col, long I, long ld, long w)
{
    if (fits(c, nd(c, e)->len, col, ld, w) && atm(c, e))
        return nd(c, e)->len;
    cind(c, e, col, I, ld, w);
    return c->ll;
}

static void cind_tail(pp *c, const size_t *ks, size_t from, size_t ne, long tail, long col0,
                      long col, long I, long ld, long w)
{
    for (size_t i = from; i < ne && !c->fail; i++) {
        size_t e = ks[i];
        long ld1 = (i + 1 < ne) ? 0 : ld + 1;
        long elen = 1 + nd(c, e)->len;
        if (atm(c, e) && fits_after(c, elen, col, ld1, w)) {
            col += elen;
            w += elen;
        } else {
            long we = cind_element(c, e, col0, I, ld1, 0);
            col = col0 + we;
            w = we;
        }
    }
    if (tail >= 0 && !c->fail) {
        size_t e = (size_t)tail;
        long len = nd(c, e)->len;
        if (!(len + 1 < c->ll - col - (ld + 1) && len + 1 + w + (ld + 1) <= c->m && atm(c, e)))
            cind(c, e, col, I, ld + 1, 0);
    }
}

static void cind_list(pp *c, const size_t *ks, size_t ne, long tail, long col0, long I, long ld,
                      long w)
{
    long we = cind_element(c, ks[0], col0, I, ne > 1 ? 0 : ld + 1, w);
    cind_tail(c, ks, 1, ne, tail, col0, col0 + we, I, ld, w + we);
}

static long cind_pair(pp *c, size_t pi, long col, long I, long ld, long w)
{
    const pnode *pn = nd(c, pi);
    if (fits(c, pn->len, col, ld, w))
        return atm_pair(c, pi) ? pn->len : c->ll;
    cind(c, kid(c, pn, 0), col, I, ld, w);
    cind(c, kid(c, pn, 1), col + (I > 0 ? I : 4), I, ld, 0);
    return c->ll;
}

static void cind_map(pp *c, const pnode *n, long col, long I, long ld, long w)
{
    size_t np = n->nkids;
    long pw = cind_pair(c, kid(c, n, 0), col, I, np > 1 ? 0 : ld + 1, w);
    long col0 = col, ccol = col + pw;
    w = w + pw;
    for (size_t i = 1; i < np && !c->fail; i++) {
        size_t pi = kid(c, n, i);
        long ld1 = (i + 1 < np) ? 0 : ld + 1;
        long elen = 1 + nd(c, pi)->len;
        if (atm_pair(c, pi) && fits_after(c, elen, ccol, ld1, w)) {
            ccol += elen;
            w += elen;
        } else {
            pw = cind_pair(c, pi, col0, I, ld1, 0);
            ccol = col0 + pw;
            w = pw;
        }
    }
}

static void cind_tag_tuple(pp *c, const pnode *n, long col, long I, long ld, long w)
{
    const size_t *ks = n->nkids ? c->kids + n->kids : NULL;
    long tlen = nd(c, ks[0])->len;
    long tagind = tlen + 2, tcol = col + tagind;
    if (I > 0 && tagind > I) {
        long col1 = col + I;
        if (c->m + col1 <= c->ll || col1 <= c->ll / 2)
            cind_tail(c, ks + 1, 0, n->nkids - 1, -1, col1, tcol, I, ld, w + tlen);
        else
            c->fail = true;
    } else if (c->m + tcol < c->ll || tcol < c->ll / 2) {
        cind_list(c, ks + 1, n->nkids - 1, -1, tcol, I, ld, w + tlen + 1);
    } else {
        c->fail = true;
    }
}

static void cind(pp *c, size_t i, long col, long I, long ld, long w)
{
    const pnode *n = nd(c, i);
    if (c->fail || fits(c, n->len, col, ld, w))
        return;
    const size_t *ks = n->nkids ? c->kids + n->kids : NULL;
    switch (n->kind) {
    case PN_LIST:
        cind_list(c, ks, n->nkids - n->improper, n->improper ? (long)ks[n->nkids - 1] : -1, col + 1,
                  I, ld, w + 1);
        break;
    case PN_TUPLE:
        cind_list(c, ks, n->nkids, -1, col + 1, I, ld, w + 1);
        break;
    case PN_TAGGED:
        cind_tag_tuple(c, n, col, I, ld, w + 1);
        break;
    case PN_MAP:
        cind_map(c, n, col + 2, I, ld, w + 2);
        break;
    default:
        break;
    }
}

int otp_print_pretty(otp_buf *out, otp_term t, const otp_print_opts *opts)
{
    if (!out)
        return -OTP_EBADARG;
    printer p;
    printer_init(&p, out, opts, true);
    size_t start = out->len;
    int rc;
    bool compound = otp_is_cons(t) || (otp_is_boxed(t) && (otp__kind(t) == OTP__H_TUPLE ||
                                                           otp__kind(t) == OTP__H_MAP ||
                                                           otp__kind(t) == OTP__H_BINARY));
    if (!compound) {
        rc = print_term(&p, t);
    } else {
        pp c = {.p = &p, .ll = opts && opts->width > 0 ? opts->width : 80};
        c.leafp = p;
        c.leafp.out = &c.text;
        size_t root = build(&c, t, 0);
        if (root == SIZE_MAX && c.rc == -OTP_ELIMIT) {
            rc = print_term(&p, t); /* too deep to lay out: one line */
        } else if (root == SIZE_MAX) {
            rc = c.rc;
        } else {
            const long col = 1;
            c.m = nd(&c, root)->len;
            if (c.m < c.ll - col) {
                pwrite(&c, root);
            } else {
                long tind = 1;
                long tries[2] = {-1, 4};
                for (int k = 0; k < 2; k++) {
                    c.fail = false;
                    cind(&c, root, col, tries[k], 0, 0);
                    if (!c.fail) {
                        tind = tries[k];
                        break;
                    }
                }
                ppn(&c, root, col, tind, col - 1, 0, 0);
            }
            rc = c.rc;
        }
        free(c.text.data);
        free(c.nodes);
        free(c.kids);
    }
    if (rc < 0)
        out->len = start;
    return rc;
}
