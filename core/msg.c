/* msg.c — signal blocks: an envelope and a private copy of its terms in one
 * malloc, sized exactly before copying; and their hand-over to an arena.
 */
#include <stdlib.h>

#include "msg.h"

static size_t term_bytes(otp_term t)
{
    return otp_is_boxed(t) || otp_is_cons(t) ? otp_copy_size(t) : 0;
}

otp__sig *otp__sig_new(unsigned kind, otp_term to, otp_term from, otp_term a, otp_term b,
                       otp_term c)
{
    size_t size = term_bytes(a) + term_bytes(b) + term_bytes(c);
    if (size > UINT32_MAX)
        return NULL;
    otp__sig *s = malloc(sizeof *s + size);
    if (!s)
        return NULL;
    s->next = NULL;
    s->kind = (uint8_t)kind;
    s->flags = 0;
    s->nrefcs = 0;
    s->data_size = (uint32_t)size;
    s->to = to;
    s->from = from;
    s->ptr = NULL;
    s->refcs = NULL;
    if (size == 0) {
        s->a = a;
        s->b = b;
        s->c = c;
        return s;
    }
    /* Copy through an arena that is just a window on s->data: the size is
     * exact, so no block is ever allocated, and shared binaries gain the
     * references that s then owns. */
    otp_arena view = {.top = (uint8_t *)s->data, .end = (uint8_t *)s->data + size};
    s->a = otp_copy(&view, a);
    s->b = otp_copy(&view, b);
    s->c = otp_copy(&view, c);
    s->refcs = view.refcs;
    s->nrefcs = (uint16_t)view.nrefcs;
    bool failed = (a != OTP_NONE && s->a == OTP_NONE) || (b != OTP_NONE && s->b == OTP_NONE) ||
                  (c != OTP_NONE && s->c == OTP_NONE) || view.nrefcs > UINT16_MAX;
    OTP_ASSERT(view.blocks == NULL); /* otp_copy_size is a bound */
    if (OTP_UNLIKELY(failed || view.blocks)) {
        s->nrefcs = (uint16_t)(view.nrefcs > UINT16_MAX ? 0 : view.nrefcs);
        if (view.nrefcs > UINT16_MAX) {
            for (size_t i = 0; i < view.nrefcs; i++)
                otp__refc_release(view.refcs[i]);
        }
        for (struct otp__block *blk = view.blocks, *n; blk; blk = n) {
            n = blk->next;
            free(blk);
        }
        otp__sig_free(s);
        return NULL;
    }
    return s;
}

void otp__sig_free(otp__sig *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nrefcs; i++)
        otp__refc_release(s->refcs[i]);
    free(s->refcs);
    free(s);
}

void otp__sig_adopt(otp__sig *s, otp_arena *a)
{
    for (size_t i = 0; i < s->nrefcs; i++) {
        /* If the arena cannot grow its list, keep the reference rather than
         * let a term dangle: the block then outlives its last user (a leak
         * under memory exhaustion, never a use after free). */
        (void)otp__arena_adopt_refc(a, s->refcs[i]);
    }
    free(s->refcs);
    if (s->data_size == 0) {
        free(s);
        return;
    }
    s->blk.size = s->data_size;
    s->blk.base = (uint8_t *)s->data;
    otp__arena_adopt_block(a, &s->blk);
}
