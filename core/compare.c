/* compare.c — Erlang's term order (==, =:= and the map-key order) and a
 * hash consistent with =:=.
 *
 * Compound terms are walked with an explicit stack, never C recursion, so
 * terms nested a million levels deep compare fine. Facts checked against
 * OTP 25: numbers compare by exact value (1 == 1.0); map keys compare exactly
 * with every integer below every float; 0.0 =:= -0.0; pids order by
 * (serial, id, node, creation), ports by (node, creation, id), refs by (node,
 * creation, words from the most significant, zero-extended); closures sort
 * before export funs.
 */
#include <math.h>
#include <stdlib.h>

#include "term_internal.h"

/* The type classes in term order; integers and floats are one class. */
static int type_class(otp_term t)
{
    otp_type ty = otp_type_of(t);
    return ty == OTP_T_FLOAT ? OTP_T_INTEGER : (int)ty;
}

static int cmp_u64(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

static int cmp_atoms(otp_term a, otp_term b)
{
    if (a == b)
        return 0;
    const otp__atom_entry *x = otp__atom_entry_of(a), *y = otp__atom_entry_of(b);
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    if (c)
        return c < 0 ? -1 : 1;
    return cmp_u64(x->len, y->len);
}

/* ------------------------------------------------------------- numbers */

/* Magnitude compare of two limb arrays (normalised, no zero top limb). */
static int cmp_mag(const uint64_t *a, size_t na, const uint64_t *b, size_t nb)
{
    if (na != nb)
        return na < nb ? -1 : 1;
    for (size_t i = na; i-- > 0;)
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    return 0;
}

typedef struct intview {
    bool neg;
    const uint64_t *limb;
    size_t n; /* 0 for zero */
    uint64_t small_mag;
} intview;

static void view_int(otp_term t, intview *v)
{
    if (otp_is_small(t)) {
        int64_t x = otp_small_value(t);
        v->neg = x < 0;
        v->small_mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
        v->limb = &v->small_mag;
        v->n = x != 0;
    } else {
        const otp__big *b = otp__ptr(t);
        v->neg = otp__hdr_kind(b->hdr) == OTP__H_NEGBIG;
        v->limb = b->limb;
        v->n = (size_t)otp__hdr_size(b->hdr);
    }
}

static int cmp_ints(otp_term a, otp_term b)
{
    if (otp_is_small(a) && otp_is_small(b)) {
        int64_t x = otp_small_value(a), y = otp_small_value(b);
        return (x > y) - (x < y);
    }
    intview x, y;
    view_int(a, &x);
    view_int(b, &y);
    if (x.neg != y.neg)
        return x.neg ? -1 : 1;
    int c = cmp_mag(x.limb, x.n, y.limb, y.n);
    return x.neg ? -c : c;
}

/* Exact comparison of an integer with a finite double. */
static int cmp_int_float(otp_term i, double f)
{
    intview v;
    view_int(i, &v);
    bool fneg = f < 0;
    if (v.n == 0 || f == 0) {
        if (v.n == 0)
            return f > 0 ? -1 : (f < 0 ? 1 : 0);
        return v.neg ? -1 : 1;
    }
    if (v.neg != fneg)
        return v.neg ? -1 : 1;
    double af = fabs(f);
    int mag;
    if (af < 9007199254740992.0 /* 2^53 */) {
        if (v.n > 1 || v.limb[0] >= (UINT64_C(1) << 53)) {
            mag = 1;
        } else {
            double iv = (double)v.limb[0]; /* exact below 2^53 */
            mag = iv < af ? -1 : (iv > af ? 1 : 0);
        }
    } else {
        /* af is an integer: write it as limbs and compare exactly. */
        int e;
        double fr = frexp(af, &e); /* af = fr * 2^e, fr in [0.5, 1) */
        uint64_t m = (uint64_t)ldexp(fr, 53);
        int shift = e - 53; /* >= 1 here */
        size_t nl = (size_t)(e + 63) / 64;
        uint64_t limbs[17] = {0}; /* doubles stay below 2^1024 */
        size_t w = (size_t)shift / 64;
        unsigned s = (unsigned)shift % 64;
        limbs[w] = m << s;
        if (s && w + 1 < 17)
            limbs[w + 1] = m >> (64 - s);
        while (nl > 0 && limbs[nl - 1] == 0)
            nl--;
        mag = cmp_mag(v.limb, v.n, limbs, nl);
    }
    return v.neg ? -mag : mag;
}

static double float_of(otp_term t)
{
    return ((const otp__float *)otp__ptr(t))->d;
}

/* exact: =:= / map-key order, where every integer sorts below every float. */
static int cmp_numbers(otp_term a, otp_term b, bool exact)
{
    bool fa = !otp_is_small(a) && otp__kind(a) == OTP__H_FLOAT;
    bool fb = !otp_is_small(b) && otp__kind(b) == OTP__H_FLOAT;
    if (!fa && !fb)
        return cmp_ints(a, b);
    if (fa && fb) {
        double x = float_of(a), y = float_of(b);
        return x < y ? -1 : (x > y ? 1 : 0); /* 0.0 == -0.0, as in OTP 25 */
    }
    if (exact)
        return fa ? 1 : -1;
    return fa ? -cmp_int_float(b, float_of(a)) : cmp_int_float(a, float_of(b));
}

/* ---------------------------------------------------------- bitstrings */

static int cmp_bits(const otp__binary *x, const otp__binary *y)
{
    uint64_t nb = x->bits < y->bits ? x->bits : y->bits;
    size_t whole = (size_t)(nb / 8);
    int c = memcmp(x->data, y->data, whole);
    if (c)
        return c < 0 ? -1 : 1;
    unsigned rest = (unsigned)(nb % 8);
    if (rest) {
        uint8_t mask = (uint8_t)(0xff00u >> rest);
        uint8_t p = x->data[whole] & mask, q = y->data[whole] & mask;
        if (p != q)
            return p < q ? -1 : 1;
    }
    return cmp_u64(x->bits, y->bits);
}

static int cmp_ref_words(const otp__ref *x, const otp__ref *y)
{
    size_t nx = (size_t)otp__hdr_size(x->hdr), ny = (size_t)otp__hdr_size(y->hdr);
    for (size_t i = 5; i-- > 0;) {
        uint32_t p = i < nx ? x->words[i] : 0, q = i < ny ? y->words[i] : 0;
        if (p != q)
            return p < q ? -1 : 1;
    }
    return 0;
}

/* ------------------------------------------------------------ the walk */

typedef struct frame {
    const otp_term *a, *b;
    size_t n;       /* pairs left */
    uint8_t stride; /* 1 for tuples and list cells, 2 for map keys/values */
    uint8_t exact;  /* compare numbers exactly (=:= or map keys) */
} frame;

typedef struct cmp_stack {
    frame *f;
    size_t n, cap;
    frame inline_frames[32];
} cmp_stack;

static bool push(cmp_stack *s, const otp_term *a, const otp_term *b, size_t n, int stride,
                 bool exact)
{
    if (n == 0)
        return true;
    if (s->n == s->cap) {
        size_t cap = s->cap * 2;
        frame *nf = malloc(cap * sizeof(frame));
        if (!nf)
            return false;
        memcpy(nf, s->f, s->n * sizeof(frame));
        if (s->f != s->inline_frames)
            free(s->f);
        s->f = nf;
        s->cap = cap;
    }
    s->f[s->n++] = (frame){a, b, n, (uint8_t)stride, exact};
    return true;
}

/* Compares a and b; a non-zero result ends the walk. For compound terms of
 * equal shape, pushes their children and returns 0. *oom is set if the
 * stack could not grow. */
static int cmp_step(cmp_stack *s, otp_term a, otp_term b, bool exact, bool *oom)
{
    if (a == b)
        return 0;
    int ca = type_class(a), cb = type_class(b);
    if (ca != cb)
        return ca < cb ? -1 : 1;
    switch (ca) {
    case OTP_T_INTEGER:
        return cmp_numbers(a, b, exact);
    case OTP_T_ATOM:
        return cmp_atoms(a, b);
    case OTP_T_NIL:
        return 0;
    case OTP_T_LIST: {
        /* head and tail sit side by side: compare them as a 2-tuple. */
        const otp__cons *x = otp__ptr(a), *y = otp__ptr(b);
        if (!push(s, &x->head, &y->head, 2, 1, exact))
            *oom = true;
        return 0;
    }
    case OTP_T_TUPLE: {
        const otp__tuple *x = otp__ptr(a), *y = otp__ptr(b);
        uint64_t nx = otp__hdr_size(x->hdr), ny = otp__hdr_size(y->hdr);
        if (nx != ny)
            return nx < ny ? -1 : 1;
        if (!push(s, x->el, y->el, (size_t)nx, 1, exact))
            *oom = true;
        return 0;
    }
    case OTP_T_MAP: {
        const otp__tuple *x = otp__ptr(a), *y = otp__ptr(b);
        uint64_t nx = otp__hdr_size(x->hdr), ny = otp__hdr_size(y->hdr);
        if (nx != ny)
            return nx < ny ? -1 : 1;
        /* All keys (exactly) first, then the values: pushed in reverse. */
        if (!push(s, x->el + 1, y->el + 1, (size_t)nx, 2, exact) ||
            !push(s, x->el, y->el, (size_t)nx, 2, true))
            *oom = true;
        return 0;
    }
    case OTP_T_BITSTRING:
        return cmp_bits(otp__ptr(a), otp__ptr(b));
    case OTP_T_PID: {
        otp__pidv x, y;
        otp__pid_view(a, &x);
        otp__pid_view(b, &y);
        if (x.serial != y.serial)
            return x.serial < y.serial ? -1 : 1;
        if (x.id != y.id)
            return x.id < y.id ? -1 : 1;
        int c = cmp_atoms(x.node, y.node);
        return c ? c : cmp_u64(x.creation, y.creation);
    }
    case OTP_T_PORT: {
        const otp__port *x = otp__ptr(a), *y = otp__ptr(b);
        int c = cmp_atoms(x->node, y->node);
        if (c)
            return c;
        if (x->creation != y->creation)
            return x->creation < y->creation ? -1 : 1;
        return cmp_u64(x->id, y->id);
    }
    case OTP_T_REF: {
        const otp__ref *x = otp__ptr(a), *y = otp__ptr(b);
        int c = cmp_atoms(x->node, y->node);
        if (c)
            return c;
        if (x->creation != y->creation)
            return x->creation < y->creation ? -1 : 1;
        return cmp_ref_words(x, y);
    }
    case OTP_T_FUN: {
        bool ea = otp__kind(a) == OTP__H_EXPORT, eb = otp__kind(b) == OTP__H_EXPORT;
        if (ea != eb)
            return ea ? 1 : -1; /* closures before exports */
        if (ea) {
            const otp__export *x = otp__ptr(a), *y = otp__ptr(b);
            int c = cmp_atoms(x->module, y->module);
            if (!c)
                c = cmp_atoms(x->function, y->function);
            return c ? c : cmp_u64(x->arity, y->arity);
        }
        const otp__fun *x = otp__ptr(a), *y = otp__ptr(b);
        int c = cmp_atoms(x->module, y->module);
        if (!c)
            c = cmp_numbers(x->old_index, y->old_index, true);
        if (!c)
            c = cmp_numbers(x->old_uniq, y->old_uniq, true);
        if (!c)
            c = cmp_u64(otp__hdr_size(x->hdr), otp__hdr_size(y->hdr));
        if (!c) {
            int m = memcmp(x->uniq, y->uniq, 16);
            c = (m > 0) - (m < 0);
        }
        if (!c)
            c = cmp_u64(x->index, y->index);
        if (c)
            return c;
        if (!push(s, x->free, y->free, (size_t)otp__hdr_size(x->hdr), 1, exact))
            *oom = true;
        return 0;
    }
    }
    /* OTP_NONE or a corrupt word: order by the raw bits, never crash. */
    return cmp_u64(a, b);
}

static int compare(otp_term a, otp_term b, bool exact)
{
    cmp_stack s;
    s.f = s.inline_frames;
    s.n = 0;
    s.cap = sizeof(s.inline_frames) / sizeof(s.inline_frames[0]);
    bool oom = false;
    int c = cmp_step(&s, a, b, exact, &oom);
    while (c == 0 && s.n > 0 && !oom) {
        frame *f = &s.f[s.n - 1];
        otp_term x = *f->a, y = *f->b;
        bool ex = f->exact;
        f->a += f->stride;
        f->b += f->stride;
        /* Pop before descending into the last pair, so a long list (whose
         * tail is always the last pair) walks in constant stack. */
        if (--f->n == 0)
            s.n--;
        c = cmp_step(&s, x, y, ex, &oom);
    }
    if (s.f != s.inline_frames)
        free(s.f);
    if (oom && c == 0)
        c = cmp_u64(a, b); /* out of memory mid-walk: an arbitrary but stable answer */
    return c;
}

int otp_cmp(otp_term a, otp_term b)
{
    return compare(a, b, false);
}
int otp_cmp_exact(otp_term a, otp_term b)
{
    return compare(a, b, true);
}
bool otp_eq(otp_term a, otp_term b)
{
    return a == b || compare(a, b, false) == 0;
}
/* =:= of shallow terms without the general walk: two different
 * immediates are never exactly equal (small integers and atoms have one
 * form each), and tuples and lists of them are compared here; anything
 * else, or anything deeper, goes to compare. */
static bool exact_eq_shallow(otp_term a, otp_term b, unsigned depth)
{
    for (;;) {
        if (a == b)
            return true;
        bool ca = otp_is_cons(a), cb = otp_is_cons(b);
        if (ca && cb && depth < 8) {
            const otp__cons *x = otp__ptr(a), *y = otp__ptr(b);
            if (!exact_eq_shallow(x->head, y->head, depth + 1))
                return false;
            a = x->tail;
            b = y->tail;
            continue;
        }
        bool ba = otp_is_boxed(a), bb = otp_is_boxed(b);
        if (!ba && !bb && !ca && !cb && !otp__is_lpid(a) && !otp__is_lpid(b))
            return false;
        if (ba && bb && depth < 8) {
            const uint64_t *x = otp__ptr(a), *y = otp__ptr(b);
            if (otp__hdr_kind(*x) == OTP__H_TUPLE && otp__hdr_kind(*y) == OTP__H_TUPLE) {
                if (*x != *y)
                    return false; /* arities differ */
                size_t n = (size_t)otp__hdr_size(*x);
                for (size_t i = 0; i < n; i++)
                    if (!exact_eq_shallow(x[1 + i], y[1 + i], depth + 1))
                        return false;
                return true;
            }
        }
        return compare(a, b, true) == 0;
    }
}

static OTP__NOINLINE bool exact_eq_general(otp_term a, otp_term b)
{
    return exact_eq_shallow(a, b, 0);
}

bool otp_exact_eq(otp_term a, otp_term b)
{
    if (a == b)
        return true;
    /* Two small tuples with the same words ({ok, 42} against the reply a
     * caller expects): equal without the walk. Any difference goes the
     * long way, which knows that a local pid equals its boxed form. */
    if (otp_is_boxed(a) && otp_is_boxed(b)) {
        const uint64_t *x = otp__ptr(a), *y = otp__ptr(b);
        if (*x == *y && otp__hdr_kind(*x) == OTP__H_TUPLE && otp__hdr_size(*x) <= 4) {
            size_t n = (size_t)otp__hdr_size(*x), i = 0;
            while (i < n && x[1 + i] == y[1 + i])
                i++;
            if (i == n)
                return true;
        }
    }
    return exact_eq_general(a, b);
}

/* ----------------------------------------------------------------- hash */

static inline uint64_t mix(uint64_t h, uint64_t v)
{
    /* A multiply-xorshift step (from splitmix64): cheap and well spread. */
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

static uint64_t hash_bytes(uint64_t h, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = mix(h, v);
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    return mix(h, v ^ ((uint64_t)n << 56));
}

uint64_t otp_hash(otp_term t)
{
    /* Work list of terms still to hash; order matters only for quality. */
    otp_term inline_stack[64];
    otp_term *st = inline_stack;
    size_t n = 0, cap = 64;
    uint64_t h = 0x243f6a8885a308d3ull;
    st[n++] = t;
    while (n > 0) {
        otp_term x = st[--n];
        const otp_term *kids = NULL;
        size_t nkids = 0;
        h = mix(h, (uint64_t)otp_type_of(x));
        switch (otp_type_of(x)) {
        case OTP_T_INTEGER:
            if (otp_is_small(x)) {
                h = mix(h, x);
            } else {
                const otp__big *b = otp__ptr(x);
                h = mix(h, b->hdr);
                h = hash_bytes(h, (const uint8_t *)b->limb, otp__hdr_size(b->hdr) * 8);
            }
            break;
        case OTP_T_FLOAT: {
            double d = float_of(x);
            if (d == 0)
                d = 0; /* -0.0 =:= 0.0 in OTP 25 */
            uint64_t bits;
            memcpy(&bits, &d, 8);
            h = mix(h, bits);
            break;
        }
        case OTP_T_ATOM:
        case OTP_T_NIL:
            h = mix(h, x);
            break;
        case OTP_T_LIST:
            kids = &((const otp__cons *)otp__ptr(x))->head;
            nkids = 2;
            break;
        case OTP_T_TUPLE:
        case OTP_T_MAP: {
            const otp__tuple *tp = otp__ptr(x);
            h = mix(h, tp->hdr);
            kids = tp->el;
            nkids = (size_t)otp__hdr_size(tp->hdr) * (otp__hdr_kind(tp->hdr) == OTP__H_MAP ? 2 : 1);
            break;
        }
        case OTP_T_BITSTRING: {
            const otp__binary *b = otp__ptr(x);
            size_t whole = (size_t)(b->bits / 8);
            h = mix(h, b->bits);
            h = hash_bytes(h, b->data, whole);
            if (b->bits % 8)
                h = mix(h, b->data[whole] & (0xff00u >> (b->bits % 8)));
            break;
        }
        case OTP_T_PID: {
            otp__pidv p;
            otp__pid_view(x, &p);
            h = mix(mix(mix(mix(h, p.node), p.id), p.serial), p.creation);
            break;
        }
        case OTP_T_PORT: {
            const otp__port *p = otp__ptr(x);
            h = mix(mix(mix(h, p->node), p->id), p->creation);
            break;
        }
        case OTP_T_REF: {
            const otp__ref *r = otp__ptr(x);
            h = mix(mix(h, r->node), r->creation);
            size_t nw = (size_t)otp__hdr_size(r->hdr);
            while (nw > 0 && r->words[nw - 1] == 0)
                nw--; /* refs equal up to trailing zero words hash alike */
            for (size_t i = 0; i < nw; i++)
                h = mix(h, r->words[i]);
            break;
        }
        case OTP_T_FUN:
            if (otp__kind(x) == OTP__H_EXPORT) {
                const otp__export *e = otp__ptr(x);
                h = mix(mix(mix(h, e->module), e->function), e->arity);
            } else {
                const otp__fun *f = otp__ptr(x);
                h = mix(mix(mix(h, f->module), f->index), f->arity);
                h = hash_bytes(h, f->uniq, 16);
                kids = f->free;
                nkids = (size_t)otp__hdr_size(f->hdr);
            }
            break;
        default:
            h = mix(h, x);
            break;
        }
        if (nkids) {
            if (n + nkids > cap) {
                size_t ncap = (n + nkids) * 2;
                otp_term *ns = malloc(ncap * sizeof(otp_term));
                if (!ns)
                    break; /* out of memory: a weaker, still consistent-per-run hash */
                memcpy(ns, st, n * sizeof(otp_term));
                if (st != inline_stack)
                    free(st);
                st = ns;
                cap = ncap;
            }
            for (size_t i = nkids; i-- > 0;)
                st[n++] = kids[i];
        }
    }
    if (st != inline_stack)
        free(st);
    return h;
}
