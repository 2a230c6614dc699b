/* msg.h — signals between processes: messages, exits, links, monitors, and
 * the runtime's own requests. A signal is one malloc'd block holding its
 * envelope and a private copy of its terms, so it can cross shards and be
 * handed whole to the receiver's arena without a second copy.
 */
#ifndef OTP_CORE_MSG_H
#define OTP_CORE_MSG_H

#include <stdbool.h>
#include <stdint.h>

#include "term_internal.h"

typedef enum otp__sig_kind {
    OTP__SIG_MSG = 1,   /* a: the message */
    OTP__SIG_EXIT,      /* a: reason; flags: OTP__SIGF_LINK when from a link */
    OTP__SIG_LINK,      /* from wants a link with to */
    OTP__SIG_UNLINK,    /* from removed its link with to */
    OTP__SIG_MONITOR,   /* a: the ref id (a raw word); b: what a DOWN names */
    OTP__SIG_DEMONITOR, /* a: the ref id */
    OTP__SIG_DOWN,      /* a: the ref id; b: what it names; c: reason */
    OTP__SIG_REPLY,     /* a: the message {Tag, Reply}; ptr: the call's ref id */
    OTP__SIG_RUN,       /* ptr: a struct whose first member is the function to run there */
} otp__sig_kind;

enum {
    OTP__SIGF_LINK = 1,      /* EXIT: caused by a link (reason kill is then trappable) */
    OTP__SIGF_MONITOR = 2,   /* MSG: a call; the target also monitors-back (ref id in ptr) */
    OTP__SIGF_DEMON = 4,     /* REPLY: the server dropped its end of the call's monitor */
    OTP__SIGF_DOWN = 8,      /* MSG: a 'DOWN' message; ptr holds its ref id */
    OTP__SIGF_ALIAS = 16,    /* REPLY: sent to an alias ([alias | Ref] tag) */
    OTP__SIGF_REMOTE = 32,   /* from a process on another node: from is OTP_NONE and
                                b holds its pid (LINK, UNLINK, EXIT, MONITOR,
                                DEMONITOR; the latter two carry its ref in a) */
    OTP__SIGF_TO_ALIAS = 64, /* MSG: sent to an alias (its id in ptr): delivered
                                only while the target has that alias */
};

typedef struct otp__sig {
    struct otp__block blk; /* first: how the receiver's arena adopts the block */
    struct otp__sig *next; /* queue, ring batch or mailbox order */
    uint8_t kind;
    uint8_t flags;
    uint16_t nrefcs;
    uint32_t data_size;
    otp_term to;   /* the target: a local pid, or a name atom before it is resolved */
    otp_term from; /* the sender's pid (or OTP_NONE) */
    otp_term a, b, c;
    void *ptr;
    otp__refc **refcs; /* shared binaries the terms point to: one reference each */
    uint64_t data[];   /* the terms */
} otp__sig;

/* A signal with copies of up to three terms (OTP_NONE for unused ones, and
 * immediates cost nothing). NULL when out of memory. The caller owns it
 * until it hands it on (a queue, a ring) or frees it with otp__sig_free. */
otp__sig *otp__sig_new(unsigned kind, otp_term to, otp_term from, otp_term a, otp_term b,
                       otp_term c);

/* Bytes of terms a small signal has room for (a 256-byte block). */
#define OTP__SIG_ROOM 152

/* A signal with OTP__SIG_ROOM bytes of room in data[] and no terms yet: the
 * caller writes its terms there, sets a (and b, c) and data_size. NULL when
 * out of memory. For hot paths that know their terms fit. */
otp__sig *otp__sig_small(unsigned kind, otp_term to, otp_term from);

/* A signal whose first term (a) is built straight into the signal's own
 * memory by fn, through an arena that allocates inside the block: `size`
 * must bound what fn allocates (otp_copy_size of what it copies, plus the
 * objects it makes). Saves building the term elsewhere and copying it. */
otp__sig *otp__sig_build(unsigned kind, otp_term to, otp_term from, size_t size,
                         otp_term (*fn)(otp_arena *a, void *ctx), void *ctx);

/* As otp__sig_build, for terms that are usually small: fn builds straight
 * into a small block, and only when that runs out of room is the term sized
 * (size(ctx), the bound otp__sig_build wants) and built again. Saves the
 * walk that sizes a small term. */
otp__sig *otp__sig_build_small(unsigned kind, otp_term to, otp_term from, size_t (*size)(void *ctx),
                               otp_term (*fn)(otp_arena *a, void *ctx), void *ctx);

/* Frees the calling thread's cache of small signal blocks (a thread that
 * handled signals calls it before it ends). */
void otp__sig_cache_drain(void);

/* Frees a signal that was not adopted, dropping its binary references. */
void otp__sig_free(otp__sig *s);

/* Hands the signal's memory and references to arena `a`: its terms then
 * live exactly as long as a's other terms. The envelope is gone after it. */
void otp__sig_adopt(otp__sig *s, otp_arena *a);

/* A FIFO of signals: no allocation, O(1) push and pop. */
typedef struct otp__sigq {
    otp__sig *head;
    otp__sig **tail;
    size_t len;
} otp__sigq;

static inline void otp__sigq_init(otp__sigq *q)
{
    q->head = NULL;
    q->tail = &q->head;
    q->len = 0;
}
static inline void otp__sigq_push(otp__sigq *q, otp__sig *s)
{
    s->next = NULL;
    *q->tail = s;
    q->tail = &s->next;
    q->len++;
}
static inline otp__sig *otp__sigq_pop(otp__sigq *q)
{
    otp__sig *s = q->head;
    if (s) {
        q->head = s->next;
        if (!q->head)
            q->tail = &q->head;
        q->len--;
    }
    return s;
}
/* Removes the signal *pp points at (pp: &q->head or &prev->next). */
static inline otp__sig *otp__sigq_unlink(otp__sigq *q, otp__sig **pp)
{
    otp__sig *s = *pp;
    *pp = s->next;
    if (q->tail == &s->next)
        q->tail = pp;
    q->len--;
    return s;
}
/* Appends all of src to q; src is left empty. */
static inline void otp__sigq_splice(otp__sigq *q, otp__sigq *src)
{
    if (!src->head)
        return;
    *q->tail = src->head;
    q->tail = src->tail;
    q->len += src->len;
    otp__sigq_init(src);
}

#endif
