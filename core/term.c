/* term.c — building and reading terms: type tests, constructors for every
 * type, accessors, and maps (sorted pair arrays).
 *
 * Constructors return OTP_NONE on failure and propagate an OTP_NONE argument,
 * so nested construction needs one check at the end.
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#include "otp/runtime.h" /* its error codes */
#include "term_internal.h"

const char *otp_strerror(int err)
{
    switch (err < 0 ? -err : err) {
    case OTP_OK:
        return "success";
    case OTP_ENOMEM:
        return "out of memory";
    case OTP_EBADARG:
        return "invalid argument";
    case OTP_EDECODE:
        return "malformed external term";
    case OTP_EPARSE:
        return "malformed term text";
    case OTP_ETYPE:
        return "wrong type";
    case OTP_ERANGE:
        return "value out of range";
    case OTP_ENOSPC:
        return "buffer too small";
    case OTP_ELIMIT:
        return "limit exceeded";
    case OTP_ENOTFOUND:
        return "not found";
    case OTP_ENOMATCH:
        return "no match";
    case OTP_EIO:
        return "input/output error";
    case OTP_ETIMEDOUT:
        return "timed out";
    case OTP_ENOPROC:
        return "no such process";
    case OTP_EEXIST:
        return "already exists";
    case OTP_ESTOPPED:
        return "runtime stopped";
    case OTP_EEXIT:
        return "the process exited";
    case OTP_ECONTEXT:
        return "called from the wrong thread or process";
    default:
        return "unknown error";
    }
}

/* ------------------------------------------------------------ type tests */

otp_type otp_type_of(otp_term t)
{
    if (otp_is_small(t))
        return OTP_T_INTEGER;
    switch (t & 7) {
    case OTP__TAG_CONS:
        return OTP_T_LIST;
    case 4:
        if (otp_is_atom(t))
            return OTP_T_ATOM;
        return t == OTP_NIL ? OTP_T_NIL : OTP_T_NONE;
    case OTP__TAG_LPID:
        return OTP_T_PID;
    case OTP__TAG_BOXED:
        if (t == 0)
            return OTP_T_NONE;
        switch (otp__kind(t)) {
        case OTP__H_TUPLE:
            return OTP_T_TUPLE;
        case OTP__H_POSBIG:
        case OTP__H_NEGBIG:
            return OTP_T_INTEGER;
        case OTP__H_FLOAT:
            return OTP_T_FLOAT;
        case OTP__H_BINARY:
            return OTP_T_BITSTRING;
        case OTP__H_MAP:
            return OTP_T_MAP;
        case OTP__H_PID:
            return OTP_T_PID;
        case OTP__H_PORT:
            return OTP_T_PORT;
        case OTP__H_REF:
            return OTP_T_REF;
        case OTP__H_EXPORT:
        case OTP__H_FUN:
            return OTP_T_FUN;
        }
        return OTP_T_NONE;
    }
    return OTP_T_NONE;
}

bool otp_is_bignum(otp_term t)
{
    return otp_is_boxed(t) && (otp__kind(t) == OTP__H_POSBIG || otp__kind(t) == OTP__H_NEGBIG);
}
bool otp_is_integer(otp_term t)
{
    return otp_is_small(t) || otp_is_bignum(t);
}
bool otp_is_float(otp_term t)
{
    return otp__is_kind(t, OTP__H_FLOAT);
}
bool otp_is_number(otp_term t)
{
    return otp_is_integer(t) || otp_is_float(t);
}
bool otp_is_tuple(otp_term t)
{
    return otp__is_kind(t, OTP__H_TUPLE);
}
bool otp_is_map(otp_term t)
{
    return otp__is_kind(t, OTP__H_MAP);
}
bool otp_is_bitstring(otp_term t)
{
    return otp__is_kind(t, OTP__H_BINARY);
}
bool otp_is_binary(otp_term t)
{
    return otp_is_bitstring(t) && ((const otp__binary *)otp__ptr(t))->bits % 8 == 0;
}
bool otp_is_pid(otp_term t)
{
    return otp__is_lpid(t) || otp__is_kind(t, OTP__H_PID);
}
bool otp_is_port(otp_term t)
{
    return otp__is_kind(t, OTP__H_PORT);
}
bool otp_is_ref(otp_term t)
{
    return otp__is_kind(t, OTP__H_REF);
}
bool otp_is_fun(otp_term t)
{
    return otp__is_kind(t, OTP__H_FUN) || otp__is_kind(t, OTP__H_EXPORT);
}
bool otp_is_boolean(otp_term t)
{
    return t == OTP_ATOM_TRUE || t == OTP_ATOM_FALSE;
}

/* -------------------------------------------------------------- numbers */

otp__big *otp__big_alloc(otp_arena *a, size_t nlimbs, bool negative)
{
    if (nlimbs > (SIZE_MAX >> 6) / 8)
        return NULL;
    otp__big *b = (otp__big *)otp__alloc_words(a, 1 + nlimbs);
    if (!b)
        return NULL;
    b->hdr = otp__mkhdr(negative ? OTP__H_NEGBIG : OTP__H_POSBIG, nlimbs);
    return b;
}

otp_term otp__big_finish(otp__big *b)
{
    uint64_t n = otp__hdr_size(b->hdr);
    bool neg = otp__hdr_kind(b->hdr) == OTP__H_NEGBIG;
    while (n > 0 && b->limb[n - 1] == 0)
        n--;
    if (n == 0)
        return otp_small(0);
    if (n == 1) {
        uint64_t m = b->limb[0];
        if (!neg && m <= (uint64_t)OTP_SMALL_MAX)
            return otp_small((int64_t)m);
        if (neg && m <= (uint64_t)OTP_SMALL_MAX + 1)
            return otp_small(-(int64_t)(m - 1) - 1);
    }
    /* Shrinking in place leaves a little dead space in the arena. */
    b->hdr = otp__mkhdr(otp__hdr_kind(b->hdr), n);
    return otp__boxed(b);
}

otp_term otp_int(otp_arena *a, int64_t v)
{
    if (v >= OTP_SMALL_MIN && v <= OTP_SMALL_MAX)
        return otp_small(v);
    otp__big *b = otp__big_alloc(a, 1, v < 0);
    if (!b)
        return OTP_NONE;
    b->limb[0] = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return otp__boxed(b);
}

otp_term otp_uint(otp_arena *a, uint64_t v)
{
    if (v <= (uint64_t)OTP_SMALL_MAX)
        return otp_small((int64_t)v);
    otp__big *b = otp__big_alloc(a, 1, false);
    if (!b)
        return OTP_NONE;
    b->limb[0] = v;
    return otp__boxed(b);
}

otp_term otp_bignum_from_bytes(otp_arena *a, bool negative, const uint8_t *le, size_t n)
{
    size_t nlimbs = (n + 7) / 8;
    otp__big *b = otp__big_alloc(a, nlimbs ? nlimbs : 1, negative);
    if (!b)
        return OTP_NONE;
    memset(b->limb, 0, (nlimbs ? nlimbs : 1) * 8);
    for (size_t i = 0; i < n; i++)
        b->limb[i / 8] |= (uint64_t)le[i] << (8 * (i % 8));
    return otp__big_finish(b);
}

otp_term otp_float(otp_arena *a, double v)
{
    if (!isfinite(v))
        return OTP_NONE;
    otp__float *f = (otp__float *)otp__alloc(a, sizeof(otp__float));
    if (!f)
        return OTP_NONE;
    f->hdr = otp__mkhdr(OTP__H_FLOAT, 0);
    f->d = v;
    return otp__boxed(f);
}

int otp_get_int64(otp_term t, int64_t *out)
{
    if (otp_is_small(t)) {
        *out = otp_small_value(t);
        return 0;
    }
    if (!otp_is_bignum(t))
        return -OTP_ETYPE;
    const otp__big *b = otp__ptr(t);
    if (otp__hdr_size(b->hdr) != 1)
        return -OTP_ERANGE;
    uint64_t m = b->limb[0];
    if (otp__hdr_kind(b->hdr) == OTP__H_POSBIG) {
        if (m > (uint64_t)INT64_MAX)
            return -OTP_ERANGE;
        *out = (int64_t)m;
    } else {
        if (m > (uint64_t)INT64_MAX + 1)
            return -OTP_ERANGE;
        *out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
    }
    return 0;
}

int otp_get_uint64(otp_term t, uint64_t *out)
{
    if (otp_is_small(t)) {
        if (otp_small_value(t) < 0)
            return -OTP_ERANGE;
        *out = (uint64_t)otp_small_value(t);
        return 0;
    }
    if (!otp_is_bignum(t))
        return -OTP_ETYPE;
    const otp__big *b = otp__ptr(t);
    if (otp__hdr_kind(b->hdr) == OTP__H_NEGBIG || otp__hdr_size(b->hdr) != 1)
        return -OTP_ERANGE;
    *out = b->limb[0];
    return 0;
}

int otp_get_int32(otp_term t, int32_t *out)
{
    int64_t v;
    int rc = otp_get_int64(t, &v);
    if (rc < 0)
        return rc;
    if (v < INT32_MIN || v > INT32_MAX)
        return -OTP_ERANGE;
    *out = (int32_t)v;
    return 0;
}

int otp_get_bignum_bytes(otp_term t, bool *negative, uint8_t *le, size_t cap, size_t *n)
{
    uint64_t tmp;
    const uint64_t *limbs;
    size_t nlimbs;
    if (otp_is_small(t)) {
        int64_t v = otp_small_value(t);
        *negative = v < 0;
        tmp = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        limbs = &tmp;
        nlimbs = 1;
    } else if (otp_is_bignum(t)) {
        const otp__big *b = otp__ptr(t);
        *negative = otp__hdr_kind(b->hdr) == OTP__H_NEGBIG;
        limbs = b->limb;
        nlimbs = otp__hdr_size(b->hdr);
    } else {
        return -OTP_ETYPE;
    }
    size_t bytes = nlimbs * 8;
    while (bytes > 0 && ((limbs[(bytes - 1) / 8] >> (8 * ((bytes - 1) % 8))) & 0xff) == 0)
        bytes--;
    *n = bytes;
    if (bytes > cap)
        return -OTP_ENOSPC;
    for (size_t i = 0; i < bytes; i++)
        le[i] = (uint8_t)(limbs[i / 8] >> (8 * (i % 8)));
    return 0;
}

double otp__big_to_double(const otp__big *b)
{
    /* Sum from the top limb down; the rounding is within one ulp, which is
     * all float(Big) promises. Huge values become infinity. */
    double d = 0;
    for (uint64_t i = otp__hdr_size(b->hdr); i-- > 0;)
        d = d * 18446744073709551616.0 + (double)b->limb[i];
    return otp__hdr_kind(b->hdr) == OTP__H_NEGBIG ? -d : d;
}

int otp_get_double(otp_term t, double *out)
{
    if (otp_is_float(t)) {
        *out = ((const otp__float *)otp__ptr(t))->d;
        return 0;
    }
    if (otp_is_small(t)) {
        *out = (double)otp_small_value(t);
        return 0;
    }
    if (otp_is_bignum(t)) {
        double d = otp__big_to_double(otp__ptr(t));
        if (!isfinite(d))
            return -OTP_ERANGE;
        *out = d;
        return 0;
    }
    return -OTP_ETYPE;
}

int otp_get_bool(otp_term t, bool *out)
{
    if (t == OTP_ATOM_TRUE)
        *out = true;
    else if (t == OTP_ATOM_FALSE)
        *out = false;
    else
        return -OTP_ETYPE;
    return 0;
}

/* --------------------------------------------------------------- tuples */

/* An uninitialised tuple of arity elements; NULL when too big or out of
 * memory. Inline: otp_tuple_v builds every call's envelope through it. */
static inline otp__tuple *tuple_alloc(otp_arena *a, size_t arity)
{
    if (arity > (SIZE_MAX >> 6) / 8 - 1)
        return NULL;
    otp__tuple *tp = (otp__tuple *)otp__alloc_words(a, 1 + arity);
    if (tp)
        tp->hdr = otp__mkhdr(OTP__H_TUPLE, arity);
    return tp;
}

otp_term otp_tuple_new(otp_arena *a, size_t arity)
{
    otp__tuple *tp = tuple_alloc(a, arity);
    return tp ? otp__boxed(tp) : OTP_NONE;
}

void otp_tuple_set_init(otp_term tuple, size_t i, otp_term v)
{
    otp__tuple *tp = otp__ptr(tuple);
    OTP_ASSERT(i < otp__hdr_size(tp->hdr));
    tp->el[i] = v;
}

otp_term otp_tuple_v(otp_arena *a, size_t arity, const otp_term *elems)
{
    for (size_t i = 0; i < arity; i++)
        if (elems[i] == OTP_NONE)
            return OTP_NONE;
    otp__tuple *tp = tuple_alloc(a, arity);
    if (!tp)
        return OTP_NONE;
    /* A loop, not memcpy: tuples built this way are small, and a library
     * call costs more than copying a few words. */
    for (size_t i = 0; i < arity; i++)
        tp->el[i] = elems[i];
    return otp__boxed(tp);
}

otp_term otp_tuple(otp_arena *a, size_t arity, ...)
{
    otp_term t = otp_tuple_new(a, arity);
    va_list ap;
    va_start(ap, arity);
    for (size_t i = 0; i < arity; i++) {
        otp_term e = va_arg(ap, otp_term);
        if (e == OTP_NONE)
            t = OTP_NONE;
        if (t != OTP_NONE)
            otp_tuple_set_init(t, i, e);
    }
    va_end(ap);
    return t;
}

size_t otp_tuple_arity(otp_term t)
{
    return otp_is_tuple(t) ? (size_t)otp__hdr_size(*(const uint64_t *)otp__ptr(t)) : 0;
}

otp_term otp_tuple_get(otp_term t, size_t i)
{
    if (!otp_is_tuple(t))
        return OTP_NONE;
    const otp__tuple *tp = otp__ptr(t);
    return i < otp__hdr_size(tp->hdr) ? tp->el[i] : OTP_NONE;
}

const otp_term *otp_tuple_elems(otp_term t)
{
    return otp_is_tuple(t) ? ((const otp__tuple *)otp__ptr(t))->el : NULL;
}

/* ---------------------------------------------------------------- lists */

otp_term otp_cons(otp_arena *a, otp_term head, otp_term tail)
{
    if (head == OTP_NONE || tail == OTP_NONE)
        return OTP_NONE;
    otp__cons *c = (otp__cons *)otp__alloc(a, sizeof(otp__cons));
    if (!c)
        return OTP_NONE;
    c->head = head;
    c->tail = tail;
    return otp__mkcons(c);
}

otp_term otp_list_tail_v(otp_arena *a, size_t n, const otp_term *elems, otp_term tail)
{
    if (tail == OTP_NONE)
        return OTP_NONE;
    if (n == 0)
        return tail;
    for (size_t i = 0; i < n; i++)
        if (elems[i] == OTP_NONE)
            return OTP_NONE;
    if (n > SIZE_MAX / sizeof(otp__cons))
        return OTP_NONE;
    /* One contiguous run of cells: cheaper to allocate and to walk. */
    otp__cons *c = (otp__cons *)otp__alloc(a, n * sizeof(otp__cons));
    if (!c)
        return OTP_NONE;
    for (size_t i = 0; i < n; i++) {
        c[i].head = elems[i];
        c[i].tail = i + 1 < n ? otp__mkcons(&c[i + 1]) : tail;
    }
    return otp__mkcons(c);
}

otp_term otp_list_v(otp_arena *a, size_t n, const otp_term *elems)
{
    return otp_list_tail_v(a, n, elems, OTP_NIL);
}

otp_term otp_list(otp_arena *a, size_t n, ...)
{
    otp__cons *c = n ? (otp__cons *)otp__alloc(a, n * sizeof(otp__cons)) : NULL;
    bool ok = n == 0 || c != NULL;
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        otp_term e = va_arg(ap, otp_term);
        if (e == OTP_NONE)
            ok = false;
        if (ok) {
            c[i].head = e;
            c[i].tail = i + 1 < n ? otp__mkcons(&c[i + 1]) : OTP_NIL;
        }
    }
    va_end(ap);
    if (!ok)
        return OTP_NONE;
    return n ? otp__mkcons(c) : OTP_NIL;
}

otp_term otp_string_n(otp_arena *a, const char *utf8, size_t len)
{
    const uint8_t *s = (const uint8_t *)utf8;
    int64_t n = otp__utf8_count(s, len);
    if (n < 0)
        return OTP_NONE;
    if (n == 0)
        return OTP_NIL;
    otp__cons *c = (otp__cons *)otp__alloc(a, (size_t)n * sizeof(otp__cons));
    if (!c)
        return OTP_NONE;
    size_t i = 0;
    for (int64_t k = 0; k < n; k++) {
        uint32_t cp = s[i];
        size_t extra = cp < 0x80 ? 0 : cp < 0xe0 ? 1 : cp < 0xf0 ? 2 : 3;
        if (extra)
            cp &= 0x3fu >> extra;
        for (size_t j = 1; j <= extra; j++)
            cp = (cp << 6) | (s[i + j] & 0x3fu);
        i += 1 + extra;
        c[k].head = otp_small(cp);
        c[k].tail = k + 1 < n ? otp__mkcons(&c[k + 1]) : OTP_NIL;
    }
    return otp__mkcons(c);
}

otp_term otp_string(otp_arena *a, const char *utf8)
{
    return utf8 ? otp_string_n(a, utf8, strlen(utf8)) : OTP_NONE;
}

otp_term otp_head(otp_term t)
{
    return otp_is_cons(t) ? ((const otp__cons *)otp__ptr(t))->head : OTP_NONE;
}

otp_term otp_tail(otp_term t)
{
    return otp_is_cons(t) ? ((const otp__cons *)otp__ptr(t))->tail : OTP_NONE;
}

int64_t otp_list_length(otp_term t)
{
    int64_t n = 0;
    while (otp_is_cons(t)) {
        n++;
        t = ((const otp__cons *)otp__ptr(t))->tail;
    }
    return t == OTP_NIL ? n : -OTP_ETYPE;
}

/* ------------------------------------------------------------- binaries */

otp_term otp__binary_alloc(otp_arena *a, size_t len, uint64_t bits, uint8_t **data)
{
    otp__binary *b;
    if (len <= OTP_BINARY_HEAP_MAX) {
        b = otp__alloc(a, sizeof(otp__binary) + len);
        if (!b)
            return OTP_NONE;
        b->refc = NULL;
        b->data = (const uint8_t *)(b + 1);
        *data = (uint8_t *)(b + 1);
    } else {
        b = otp__alloc(a, sizeof(otp__binary));
        otp__refc *r = b ? otp__refc_new(len) : NULL;
        if (!r)
            return OTP_NONE;
        if (otp__arena_adopt_refc(a, r) < 0) {
            otp__refc_release(r);
            return OTP_NONE;
        }
        b->refc = r;
        b->data = r->data;
        *data = r->data;
    }
    b->hdr = otp__mkhdr(OTP__H_BINARY, 0);
    b->bits = bits;
    return otp__boxed(b);
}

otp_term otp_binary_new(otp_arena *a, size_t len, uint8_t **data)
{
    if (len > UINT64_MAX / 8)
        return OTP_NONE;
    return otp__binary_alloc(a, len, (uint64_t)len * 8, data);
}

otp_term otp_binary(otp_arena *a, const void *bytes, size_t len)
{
    uint8_t *d;
    otp_term t = otp_binary_new(a, len, &d);
    if (t != OTP_NONE && len)
        memcpy(d, bytes, len);
    return t;
}

otp_term otp_binary_str(otp_arena *a, const char *cstr)
{
    return cstr ? otp_binary(a, cstr, strlen(cstr)) : OTP_NONE;
}

otp_term otp_bitstring(otp_arena *a, const void *bytes, uint64_t bits)
{
    size_t len = (size_t)((bits + 7) / 8);
    uint8_t *d;
    otp_term t = otp__binary_alloc(a, len, bits, &d);
    if (t == OTP_NONE)
        return t;
    if (len) {
        memcpy(d, bytes, len);
        if (bits % 8) /* unused low bits are zero, so equal bitstrings are equal bytes */
            d[len - 1] &= (uint8_t)(0xff00u >> (bits % 8));
    }
    return t;
}

const uint8_t *otp_binary_data(otp_term t, size_t *len)
{
    if (!otp_is_binary(t))
        return NULL;
    const otp__binary *b = otp__ptr(t);
    *len = (size_t)(b->bits / 8);
    return b->data;
}

const uint8_t *otp_bitstring_data(otp_term t, uint64_t *bits)
{
    if (!otp_is_bitstring(t))
        return NULL;
    const otp__binary *b = otp__ptr(t);
    *bits = b->bits;
    return b->data;
}

/* ----------------------------------------------------------------- maps */

/* Sorting map pairs: a bottom-up merge sort on (key, value) pairs, stable
 * and without recursion; maps are small, so the scratch copy is cheap. */
static int sort_pairs(otp_term *kv, size_t n)
{
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = otp_cmp_exact(kv[2 * (i - 1)], kv[2 * i]) < 0;
    if (sorted)
        return 0;
    otp_term *tmp = malloc(n * 2 * sizeof(otp_term));
    if (!tmp)
        return -OTP_ENOMEM;
    otp_term *src = kv, *dst = tmp;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                if (otp_cmp_exact(src[2 * j], src[2 * i]) < 0) {
                    dst[2 * k] = src[2 * j];
                    dst[2 * k + 1] = src[2 * j + 1];
                    j++;
                } else {
                    dst[2 * k] = src[2 * i];
                    dst[2 * k + 1] = src[2 * i + 1];
                    i++;
                }
                k++;
            }
            for (; i < mid; i++, k++) {
                dst[2 * k] = src[2 * i];
                dst[2 * k + 1] = src[2 * i + 1];
            }
            for (; j < hi; j++, k++) {
                dst[2 * k] = src[2 * j];
                dst[2 * k + 1] = src[2 * j + 1];
            }
        }
        otp_term *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != kv)
        memcpy(kv, src, n * 2 * sizeof(otp_term));
    free(tmp);
    return 0;
}

int otp__map_sort_check(otp__tuple *map)
{
    size_t n = (size_t)otp__hdr_size(map->hdr);
    int rc = sort_pairs(map->el, n);
    if (rc < 0)
        return rc;
    for (size_t i = 1; i < n; i++)
        if (otp_cmp_exact(map->el[2 * (i - 1)], map->el[2 * i]) == 0)
            return -OTP_EBADARG;
    return 0;
}

otp_term otp__map_sort_dedup(otp__tuple *map)
{
    size_t n = (size_t)otp__hdr_size(map->hdr);
    if (sort_pairs(map->el, n) < 0)
        return OTP_NONE;
    /* The sort is stable, so among equal keys the last given comes last. */
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && otp_cmp_exact(map->el[2 * i], map->el[2 * (i + 1)]) == 0)
            continue;
        map->el[2 * out] = map->el[2 * i];
        map->el[2 * out + 1] = map->el[2 * i + 1];
        out++;
    }
    map->hdr = otp__mkhdr(OTP__H_MAP, out);
    return otp__boxed(map);
}

static otp__tuple *map_alloc(otp_arena *a, size_t n)
{
    if (n > (SIZE_MAX >> 6) / 16 - 1)
        return NULL;
    otp__tuple *m = (otp__tuple *)otp__alloc_words(a, 1 + 2 * n);
    if (m)
        m->hdr = otp__mkhdr(OTP__H_MAP, n);
    return m;
}

otp_term otp_map_v(otp_arena *a, size_t n, const otp_term *keys, const otp_term *values)
{
    otp__tuple *m = map_alloc(a, n);
    if (!m)
        return OTP_NONE;
    for (size_t i = 0; i < n; i++) {
        if (keys[i] == OTP_NONE || values[i] == OTP_NONE)
            return OTP_NONE;
        m->el[2 * i] = keys[i];
        m->el[2 * i + 1] = values[i];
    }
    return otp__map_sort_dedup(m);
}

otp_term otp_map_kv_v(otp_arena *a, size_t npairs, const otp_term *kv)
{
    otp__tuple *m = map_alloc(a, npairs);
    if (!m)
        return OTP_NONE;
    for (size_t i = 0; i < 2 * npairs; i++) {
        if (kv[i] == OTP_NONE)
            return OTP_NONE;
        m->el[i] = kv[i];
    }
    return otp__map_sort_dedup(m);
}

otp_term otp_map_kv(otp_arena *a, size_t npairs, ...)
{
    otp__tuple *m = map_alloc(a, npairs);
    bool ok = m != NULL;
    va_list ap;
    va_start(ap, npairs);
    for (size_t i = 0; i < 2 * npairs; i++) {
        otp_term e = va_arg(ap, otp_term);
        if (e == OTP_NONE)
            ok = false;
        if (ok)
            m->el[i] = e;
    }
    va_end(ap);
    return ok ? otp__map_sort_dedup(m) : OTP_NONE;
}

size_t otp_map_size(otp_term t)
{
    return otp_is_map(t) ? (size_t)otp__hdr_size(*(const uint64_t *)otp__ptr(t)) : 0;
}

static bool map_find(otp_term map, otp_term key, size_t *at)
{
    const otp__tuple *m = otp__ptr(map);
    size_t lo = 0, hi = (size_t)otp__hdr_size(m->hdr);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = otp_cmp_exact(m->el[2 * mid], key);
        if (c == 0) {
            *at = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return false;
}

otp_term otp_map_get(otp_term map, otp_term key)
{
    size_t at;
    if (!otp_is_map(map) || !map_find(map, key, &at))
        return OTP_NONE;
    return ((const otp__tuple *)otp__ptr(map))->el[2 * at + 1];
}

int otp_map_at(otp_term map, size_t i, otp_term *key, otp_term *value)
{
    if (!otp_is_map(map))
        return -OTP_ETYPE;
    const otp__tuple *m = otp__ptr(map);
    if (i >= otp__hdr_size(m->hdr))
        return -OTP_ERANGE;
    if (key)
        *key = m->el[2 * i];
    if (value)
        *value = m->el[2 * i + 1];
    return 0;
}

otp_term otp_map_put(otp_arena *a, otp_term map, otp_term key, otp_term value)
{
    if (!otp_is_map(map) || key == OTP_NONE || value == OTP_NONE)
        return OTP_NONE;
    const otp__tuple *old = otp__ptr(map);
    size_t n = (size_t)otp__hdr_size(old->hdr), at;
    bool found = map_find(map, key, &at);
    otp__tuple *m = map_alloc(a, found ? n : n + 1);
    if (!m)
        return OTP_NONE;
    memcpy(m->el, old->el, 2 * at * sizeof(otp_term));
    m->el[2 * at] = key;
    m->el[2 * at + 1] = value;
    size_t rest = found ? at + 1 : at;
    memcpy(&m->el[2 * (at + 1)], &old->el[2 * rest], 2 * (n - rest) * sizeof(otp_term));
    return otp__boxed(m);
}

/* ------------------------------------------------- pids, ports, refs, funs */

otp_term otp_pid(otp_arena *a, otp_term node, uint32_t id, uint32_t serial, uint32_t creation)
{
    if (!otp_is_atom(node))
        return OTP_NONE;
    otp__pid *p = otp__alloc(a, sizeof(otp__pid));
    if (!p)
        return OTP_NONE;
    *p = (otp__pid){otp__mkhdr(OTP__H_PID, 0), node, id, serial, creation, 0};
    return otp__boxed(p);
}

otp_term otp_port(otp_arena *a, otp_term node, uint64_t id, uint32_t creation)
{
    if (!otp_is_atom(node))
        return OTP_NONE;
    otp__port *p = otp__alloc(a, sizeof(otp__port));
    if (!p)
        return OTP_NONE;
    *p = (otp__port){otp__mkhdr(OTP__H_PORT, 0), node, id, creation, 0};
    return otp__boxed(p);
}

otp_term otp_ref(otp_arena *a, otp_term node, uint32_t creation, const uint32_t *words,
                 size_t nwords)
{
    if (!otp_is_atom(node) || nwords > 5)
        return OTP_NONE;
    otp__ref *r = otp__alloc(a, sizeof(otp__ref));
    if (!r)
        return OTP_NONE;
    memset(r, 0, sizeof(*r));
    r->hdr = otp__mkhdr(OTP__H_REF, nwords);
    r->node = node;
    r->creation = creation;
    if (nwords)
        memcpy(r->words, words, nwords * sizeof(uint32_t));
    return otp__boxed(r);
}

otp_term otp_export(otp_arena *a, otp_term module, otp_term function, uint32_t arity)
{
    if (!otp_is_atom(module) || !otp_is_atom(function))
        return OTP_NONE;
    otp__export *e = otp__alloc(a, sizeof(otp__export));
    if (!e)
        return OTP_NONE;
    *e = (otp__export){otp__mkhdr(OTP__H_EXPORT, 0), module, function, arity};
    return otp__boxed(e);
}

int otp_pid_parts(otp_term t, otp_term *node, uint32_t *id, uint32_t *serial, uint32_t *creation)
{
    if (!otp_is_pid(t))
        return -OTP_ETYPE;
    otp__pidv p;
    otp__pid_view(t, &p);
    if (node)
        *node = p.node;
    if (id)
        *id = p.id;
    if (serial)
        *serial = p.serial;
    if (creation)
        *creation = p.creation;
    return 0;
}

int otp_port_parts(otp_term t, otp_term *node, uint64_t *id, uint32_t *creation)
{
    if (!otp_is_port(t))
        return -OTP_ETYPE;
    const otp__port *p = otp__ptr(t);
    if (node)
        *node = p->node;
    if (id)
        *id = p->id;
    if (creation)
        *creation = p->creation;
    return 0;
}

int otp_ref_parts(otp_term t, otp_term *node, uint32_t *creation, uint32_t words[5], size_t *nwords)
{
    if (!otp_is_ref(t))
        return -OTP_ETYPE;
    const otp__ref *r = otp__ptr(t);
    size_t n = (size_t)otp__hdr_size(r->hdr);
    if (node)
        *node = r->node;
    if (creation)
        *creation = r->creation;
    if (words)
        memcpy(words, r->words, n * sizeof(uint32_t));
    if (nwords)
        *nwords = n;
    return 0;
}

int otp_fun_info(otp_term t, bool *is_export, otp_term *module, otp_term *function, uint32_t *arity,
                 size_t *num_free)
{
    if (otp__is_kind(t, OTP__H_EXPORT)) {
        const otp__export *e = otp__ptr(t);
        if (is_export)
            *is_export = true;
        if (module)
            *module = e->module;
        if (function)
            *function = e->function;
        if (arity)
            *arity = (uint32_t)e->arity;
        if (num_free)
            *num_free = 0;
        return 0;
    }
    if (otp__is_kind(t, OTP__H_FUN)) {
        const otp__fun *f = otp__ptr(t);
        if (is_export)
            *is_export = false;
        if (module)
            *module = f->module;
        if (function)
            *function = OTP_NONE;
        if (arity)
            *arity = f->arity;
        if (num_free)
            *num_free = (size_t)otp__hdr_size(f->hdr);
        return 0;
    }
    return -OTP_ETYPE;
}

/* ------------------------------------------------------- local node slots */

otp__node_slot otp__local_nodes[OTP__NODE_SLOTS];

int otp__node_slot_claim(otp_term node, uint32_t creation)
{
    for (unsigned i = 0; i < OTP__NODE_SLOTS; i++) {
        otp_term expect = 0;
        /* Claim with a marker (1 is no atom) first, so a racing claimer
         * never writes the creation of a slot someone else holds. relaxed:
         * nothing is published yet; the release store below publishes. */
        if (!atomic_compare_exchange_strong_explicit(&otp__local_nodes[i].node, &expect, 1,
                                                     memory_order_relaxed, memory_order_relaxed))
            continue;
        atomic_store_explicit(&otp__local_nodes[i].creation, creation, memory_order_relaxed);
        /* release: the creation above is visible to whoever reads the node */
        atomic_store_explicit(&otp__local_nodes[i].node, node, memory_order_release);
        return (int)i;
    }
    return -OTP_ELIMIT;
}

void otp__node_slot_release(unsigned slot)
{
    if (slot < OTP__NODE_SLOTS)
        /* release: whoever claims it next sees the slot cleared after our use */
        atomic_store_explicit(&otp__local_nodes[slot].node, 0, memory_order_release);
}
