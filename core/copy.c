/* copy.c — deep copy of a term into another arena (how a term outlives its
 * arena, and how a message is handed to its receiver).
 *
 * Iterative: a work list of (destination slot, source term) pairs. Shared
 * binaries gain a reference instead of being copied. Shallow terms (most
 * messages) take a recursive path first, bounded in depth, which hands any
 * deeper subterm to the iterative walk: a call's request costs a few
 * dozen instructions instead of a work list.
 */
#include <stdlib.h>

#include "term_internal.h"

typedef struct work {
    otp_term *slot;
    otp_term src;
} work;

typedef struct work_stack {
    work *w;
    size_t n, cap;
    work inline_w[64];
} work_stack;

static bool wpush(work_stack *s, otp_term *slot, otp_term src)
{
    if (s->n == s->cap) {
        size_t cap = s->cap * 2;
        work *nw = malloc(cap * sizeof(work));
        if (!nw)
            return false;
        memcpy(nw, s->w, s->n * sizeof(work));
        if (s->w != s->inline_w)
            free(s->w);
        s->w = nw;
        s->cap = cap;
    }
    s->w[s->n++] = (work){slot, src};
    return true;
}

/* Size in bytes of the object t points to (not counting children). */
static size_t object_bytes(otp_term t)
{
    const uint64_t *p = otp__ptr(t);
    uint64_t sz = otp__hdr_size(*p);
    switch (otp__hdr_kind(*p)) {
    case OTP__H_TUPLE:
    case OTP__H_POSBIG:
    case OTP__H_NEGBIG:
        return (size_t)(1 + sz) * 8;
    case OTP__H_MAP:
        return (size_t)(1 + 2 * sz) * 8;
    case OTP__H_FLOAT:
        return sizeof(otp__float);
    case OTP__H_BINARY: {
        const otp__binary *b = (const otp__binary *)p;
        size_t extra = b->refc ? 0 : (size_t)((b->bits + 7) / 8);
        return sizeof(otp__binary) + ((extra + 7) & ~(size_t)7);
    }
    case OTP__H_PID:
        return sizeof(otp__pid);
    case OTP__H_PORT:
        return sizeof(otp__port);
    case OTP__H_REF:
        return sizeof(otp__ref);
    case OTP__H_EXPORT:
        return sizeof(otp__export);
    case OTP__H_FUN:
        return sizeof(otp__fun) + (size_t)sz * 8;
    }
    return 0;
}

static otp_term copy_iter(otp_arena *dst, otp_term t)
{
    otp_term result = OTP_NONE;
    /* Not `= {...}`: that would zero the whole inline array on every call. */
    work_stack s;
    s.n = 0;
    s.cap = 64;
    s.w = s.inline_w;
    bool ok = wpush(&s, &result, t);
    while (ok && s.n > 0) {
        work w = s.w[--s.n];
        otp_term x = w.src;
        if (x == OTP_NONE) {
            ok = false;
            break;
        }
        if (otp_is_cons(x)) {
            const otp__cons *c = otp__ptr(x);
            otp__cons *nc = otp__alloc(dst, sizeof(otp__cons));
            if (!nc) {
                ok = false;
                break;
            }
            *w.slot = otp__mkcons(nc);
            ok = wpush(&s, &nc->tail, c->tail) && wpush(&s, &nc->head, c->head);
            continue;
        }
        if (!otp_is_boxed(x)) {
            *w.slot = x; /* immediates are not in any arena */
            continue;
        }
        size_t bytes = object_bytes(x);
        uint64_t *copy = otp__alloc(dst, bytes);
        if (!copy || bytes == 0) {
            ok = false;
            break;
        }
        const uint64_t *p = otp__ptr(x);
        switch (otp__hdr_kind(*p)) {
        case OTP__H_TUPLE:
        case OTP__H_MAP: {
            size_t n = (size_t)(bytes / 8 - 1);
            copy[0] = p[0];
            otp__tuple *nt = (otp__tuple *)copy;
            const otp__tuple *ot = (const otp__tuple *)p;
            for (size_t i = n; i-- > 0 && ok;) {
                if (otp_is_boxed(ot->el[i]) || otp_is_cons(ot->el[i]))
                    ok = wpush(&s, &nt->el[i], ot->el[i]);
                else
                    nt->el[i] = ot->el[i];
            }
            break;
        }
        case OTP__H_BINARY: {
            const otp__binary *ob = (const otp__binary *)p;
            otp__binary *nb = (otp__binary *)copy;
            *nb = *ob;
            if (ob->refc) {
                otp__refc_retain(ob->refc);
                if (otp__arena_adopt_refc(dst, ob->refc) < 0) {
                    otp__refc_release(ob->refc);
                    ok = false;
                }
            } else {
                nb->data = (const uint8_t *)(nb + 1);
                memcpy(nb + 1, ob->data, (size_t)((ob->bits + 7) / 8));
            }
            break;
        }
        case OTP__H_FUN: {
            const otp__fun *of = (const otp__fun *)p;
            otp__fun *nf = (otp__fun *)copy;
            memcpy(nf, of, sizeof(otp__fun));
            size_t n = (size_t)otp__hdr_size(of->hdr);
            /* old_index/old_uniq may be bignums in principle; pid is boxed. */
            ok = wpush(&s, &nf->pid, of->pid) && wpush(&s, &nf->old_index, of->old_index) &&
                 wpush(&s, &nf->old_uniq, of->old_uniq);
            for (size_t i = n; i-- > 0 && ok;)
                ok = wpush(&s, &nf->free[i], of->free[i]);
            break;
        }
        default:
            /* Flat objects: numbers, pids, ports, refs, exports (their atoms
             * are immediates). */
            memcpy(copy, p, bytes);
            break;
        }
        *w.slot = otp__boxed(copy);
    }
    if (s.w != s.inline_w)
        free(s.w);
    return ok ? result : OTP_NONE;
}

static size_t copy_size_iter(otp_term t)
{
    otp_term inline_st[64];
    otp_term *st = inline_st;
    size_t n = 0, cap = 64, total = 0;
    st[n++] = t;
    while (n > 0) {
        otp_term x = st[--n];
        const otp_term *kids = NULL;
        size_t nkids = 0;
        if (otp_is_cons(x)) {
            total += sizeof(otp__cons);
            kids = &((const otp__cons *)otp__ptr(x))->head;
            nkids = 2;
        } else if (otp_is_boxed(x)) {
            total += (object_bytes(x) + 7) & ~(size_t)7;
            unsigned k = otp__kind(x);
            if (k == OTP__H_TUPLE || k == OTP__H_MAP) {
                const otp__tuple *tp = otp__ptr(x);
                kids = tp->el;
                nkids = (size_t)otp__hdr_size(tp->hdr) * (k == OTP__H_MAP ? 2 : 1);
            } else if (k == OTP__H_FUN) {
                const otp__fun *f = otp__ptr(x);
                total += 3 * 32; /* pid, old_index, old_uniq: a generous bound */
                kids = f->free;
                nkids = (size_t)otp__hdr_size(f->hdr);
            }
        }
        if (nkids) {
            if (n + nkids > cap) {
                size_t ncap = (n + nkids) * 2;
                otp_term *ns = malloc(ncap * sizeof(otp_term));
                if (!ns) {
                    total = SIZE_MAX; /* cannot tell: report "too much" */
                    break;
                }
                memcpy(ns, st, n * sizeof(otp_term));
                if (st != inline_st)
                    free(st);
                st = ns;
                cap = ncap;
            }
            for (size_t i = 0; i < nkids; i++)
                st[n++] = kids[i];
        }
    }
    if (st != inline_st)
        free(st);
    return total;
}

#define SHALLOW_DEPTH 8 /* recursion depth of the fast paths below */

/* Copies t, recursing into tuples and list heads up to SHALLOW_DEPTH;
 * lists are walked along their tails without recursion. */
static otp_term copy_shallow(otp_arena *dst, otp_term t, unsigned depth)
{
    otp_term result = OTP_NONE, *slot = &result;
    while (otp_is_cons(t)) {
        const otp__cons *c = otp__ptr(t);
        otp__cons *nc = otp__alloc(dst, sizeof(otp__cons));
        if (!nc)
            return OTP_NONE;
        otp_term h = c->head;
        if (otp_is_boxed(h) || otp_is_cons(h)) {
            h = depth < SHALLOW_DEPTH ? copy_shallow(dst, h, depth + 1) : copy_iter(dst, h);
            if (h == OTP_NONE)
                return OTP_NONE;
        } else if (h == OTP_NONE) {
            return OTP_NONE;
        }
        nc->head = h;
        *slot = otp__mkcons(nc);
        slot = &nc->tail;
        t = c->tail;
    }
    if (!otp_is_boxed(t)) {
        *slot = t; /* an immediate, or OTP_NONE, which fails the copy */
        return t == OTP_NONE ? OTP_NONE : result;
    }
    const uint64_t *p = otp__ptr(t);
    unsigned kind = otp__hdr_kind(*p);
    if (kind == OTP__H_TUPLE) {
        size_t n = (size_t)otp__hdr_size(*p);
        otp__tuple *nt = otp__alloc(dst, (1 + n) * 8);
        if (!nt)
            return OTP_NONE;
        const otp__tuple *ot = (const otp__tuple *)p;
        nt->hdr = ot->hdr;
        for (size_t i = 0; i < n; i++) {
            otp_term e = ot->el[i];
            if (otp_is_boxed(e) || otp_is_cons(e)) {
                e = depth < SHALLOW_DEPTH ? copy_shallow(dst, e, depth + 1) : copy_iter(dst, e);
                if (e == OTP_NONE)
                    return OTP_NONE;
            } else if (e == OTP_NONE) {
                return OTP_NONE;
            }
            nt->el[i] = e;
        }
        *slot = otp__boxed(nt);
        return result;
    }
    if (kind == OTP__H_REF || kind == OTP__H_PID || kind == OTP__H_FLOAT || kind == OTP__H_PORT ||
        kind == OTP__H_EXPORT || kind == OTP__H_POSBIG || kind == OTP__H_NEGBIG) {
        size_t words = object_bytes(t) / 8; /* these objects are whole words */
        uint64_t *copy = otp__alloc(dst, words * 8);
        if (!copy)
            return OTP_NONE;
        for (size_t i = 0; i < words; i++)
            copy[i] = p[i];
        *slot = otp__boxed(copy);
        return result;
    }
    otp_term x = copy_iter(dst, t); /* binaries, maps, funs */
    if (x == OTP_NONE)
        return OTP_NONE;
    *slot = x;
    return result;
}

static OTP__NOINLINE otp_term copy_general(otp_arena *dst, otp_term t)
{
    return copy_shallow(dst, t, 0);
}

otp_term otp_copy(otp_arena *dst, otp_term t)
{
    size_t words = otp__flat_words(t);
    if (words != SIZE_MAX && words) {
        uint64_t *d = otp__alloc_words(dst, words);
        return d ? otp__flat_copy(d, t, words) : OTP_NONE;
    }
    return copy_general(dst, t);
}

static size_t size_shallow(otp_term t, unsigned depth)
{
    size_t total = 0;
    while (otp_is_cons(t)) {
        const otp__cons *c = otp__ptr(t);
        total += sizeof(otp__cons);
        otp_term h = c->head;
        if (otp_is_boxed(h) || otp_is_cons(h)) {
            size_t k = depth < SHALLOW_DEPTH ? size_shallow(h, depth + 1) : copy_size_iter(h);
            if (k == SIZE_MAX)
                return SIZE_MAX;
            total += k;
        }
        t = c->tail;
    }
    if (!otp_is_boxed(t))
        return total;
    const uint64_t *p = otp__ptr(t);
    unsigned kind = otp__hdr_kind(*p);
    if (kind == OTP__H_TUPLE) {
        size_t n = (size_t)otp__hdr_size(*p);
        const otp__tuple *tp = (const otp__tuple *)p;
        total += (1 + n) * 8;
        for (size_t i = 0; i < n; i++) {
            otp_term e = tp->el[i];
            if (otp_is_boxed(e) || otp_is_cons(e)) {
                size_t k = depth < SHALLOW_DEPTH ? size_shallow(e, depth + 1) : copy_size_iter(e);
                if (k == SIZE_MAX)
                    return SIZE_MAX;
                total += k;
            }
        }
        return total;
    }
    if (kind == OTP__H_MAP || kind == OTP__H_FUN) {
        size_t k = copy_size_iter(t);
        return k == SIZE_MAX ? SIZE_MAX : total + k;
    }
    return total + ((object_bytes(t) + 7) & ~(size_t)7);
}

size_t otp_copy_size(otp_term t)
{
    return size_shallow(t, 0);
}
