/* wheel.c — the hierarchical timing wheel: 11 levels of 64 slots, one
 * bitmap per level and one of non-empty levels, so finding the next slot to
 * fire or cascade is a couple of count-trailing-zeros, and a jump of any
 * length costs only the slots it actually meets. Each slot is a FIFO list,
 * which is what keeps equal deadlines in the order they were added.
 */
#include "wheel.h"
#include "term_internal.h" /* OTP_ASSERT */

/* `where` of a timer on the due or the firing list: no slot bit to clear */
#define WHERE_LIST (OTP__WHEEL_LEVELS * OTP__WHEEL_SLOTS)
#define SLOT_MASK  (OTP__WHEEL_SLOTS - 1)

_Static_assert(offsetof(otp__timer, link) == 0, "a list link is its timer");

static void list_init(otp__tlink *l)
{
    l->next = l->prev = l;
}

static bool list_empty(const otp__tlink *l)
{
    return l->next == l;
}

static void list_append(otp__tlink *l, otp__tlink *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

static void list_unlink(otp__tlink *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* Move all of `from` to the (empty) `to`, keeping the order. */
static void list_move(otp__tlink *from, otp__tlink *to)
{
    OTP_ASSERT(list_empty(to));
    if (list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    list_init(from);
}

/* The level whose digit is the highest one where `deadline` and `now`
 * differ: everything above it agrees, so the slot is not ahead by a whole
 * lap and needs no lap counter. Equal (only during a cascade) is level 0. */
static unsigned level_of(uint64_t deadline, uint64_t now)
{
    uint64_t diff = deadline ^ now;
    if (!diff)
        return 0;
    return (unsigned)(63 - __builtin_clzll(diff)) / OTP__WHEEL_BITS;
}

/* The first millisecond of slot s of level L, given the clock `now`. */
static uint64_t slot_start(uint64_t now, unsigned level, unsigned slot)
{
    unsigned shift = level * OTP__WHEEL_BITS, above = shift + OTP__WHEEL_BITS;
    uint64_t high = above >= 64 ? 0 : (now >> above) << above; /* top level: nothing above */
    return high | (uint64_t)slot << shift;
}

/* Link `t` into the slot its deadline (>= w->now) falls in. */
static void place(otp__wheel *w, otp__timer *t)
{
    unsigned level = level_of(t->deadline, w->now);
    unsigned slot = (unsigned)(t->deadline >> (level * OTP__WHEEL_BITS)) & SLOT_MASK;
    t->where = level * OTP__WHEEL_SLOTS + slot;
    list_append(&w->slots[level][slot], &t->link);
    w->occupied[level] |= (uint64_t)1 << slot;
    w->levels |= 1u << level;
}

void otp__wheel_init(otp__wheel *w, uint64_t now)
{
    w->now = now;
    w->levels = 0;
    w->advancing = false;
    w->count = 0;
    list_init(&w->due);
    list_init(&w->firing);
    for (unsigned l = 0; l < OTP__WHEEL_LEVELS; l++) {
        w->occupied[l] = 0;
        for (unsigned s = 0; s < OTP__WHEEL_SLOTS; s++)
            list_init(&w->slots[l][s]);
    }
}

bool otp__wheel_cancel(otp__wheel *w, otp__timer *t)
{
    if (!otp__timer_pending(t))
        return false;
    list_unlink(&t->link);
    w->count--;
    if (t->where < WHERE_LIST) {
        unsigned level = t->where / OTP__WHEEL_SLOTS, slot = t->where % OTP__WHEEL_SLOTS;
        /* `where` names the list the timer is on, so its slot is occupied */
        OTP_ASSERT(w->occupied[level] & (uint64_t)1 << slot);
        if (list_empty(&w->slots[level][slot])) {
            w->occupied[level] &= ~((uint64_t)1 << slot);
            if (!w->occupied[level])
                w->levels &= ~(1u << level);
        }
    }
    return true;
}

void otp__wheel_add(otp__wheel *w, otp__timer *t, uint64_t deadline)
{
    otp__wheel_cancel(w, t);
    t->deadline = deadline;
    w->count++;
    if (deadline <= w->now) {
        t->where = WHERE_LIST;
        list_append(&w->due, &t->link);
    } else {
        place(w, t);
    }
}

/* Fire everything on w->firing, front to back. A callback may cancel a
 * timer still on the list (it is unlinked from here) or add timers (they go
 * to the slots or to `due`, never here), so taking the front each time is
 * all the bookkeeping needed. */
static size_t fire_list(otp__wheel *w, otp__wheel_cb cb, void *ctx)
{
    size_t fired = 0;
    while (!list_empty(&w->firing)) {
        otp__timer *t = (otp__timer *)w->firing.next;
        list_unlink(&t->link);
        w->count--;
        fired++;
        cb(t, ctx);
    }
    return fired;
}

static void take_slot(otp__wheel *w, unsigned level, unsigned slot, otp__tlink *to)
{
    list_move(&w->slots[level][slot], to);
    w->occupied[level] &= ~((uint64_t)1 << slot);
    if (!w->occupied[level])
        w->levels &= ~(1u << level);
}

size_t otp__wheel_advance(otp__wheel *w, uint64_t now, otp__wheel_cb cb, void *ctx)
{
    OTP_ASSERT(!w->advancing);
    if (OTP_UNLIKELY(w->advancing)) /* release builds: refuse to recurse */
        return 0;
    w->advancing = true;

    list_move(&w->due, &w->firing); /* their `where` is WHERE_LIST already */
    size_t fired = fire_list(w, cb, ctx);

    /* The earliest non-empty slot is the first one of the lowest non-empty
     * level: a lower level only holds times before the next slot of the
     * level above. Each turn either fires a level-0 slot or cascades a slot
     * one level down or more, so the loop runs at most once per timer and
     * level, whatever the distance to `now`. */
    while (w->levels) {
        unsigned level = (unsigned)__builtin_ctz(w->levels);
        unsigned slot = (unsigned)__builtin_ctzll(w->occupied[level]);
        unsigned digit = (unsigned)(w->now >> (level * OTP__WHEEL_BITS)) & SLOT_MASK;
        /* Level 0's current slot fills only from a cascade at this very
         * millisecond; a higher level's current digit is always empty. */
        OTP_ASSERT(level == 0 ? slot >= digit : slot > digit);
        (void)digit;
        uint64_t start = slot_start(w->now, level, slot);
        if (start > now)
            break;
        w->now = start;
        if (level == 0) {
            take_slot(w, 0, slot, &w->firing);
            for (otp__tlink *l = w->firing.next; l != &w->firing; l = l->next)
                ((otp__timer *)l)->where = WHERE_LIST; /* a callback may cancel them */
            fired += fire_list(w, cb, ctx);
        } else {
            otp__tlink moving;
            list_init(&moving);
            take_slot(w, level, slot, &moving);
            while (!list_empty(&moving)) {
                otp__timer *t = (otp__timer *)moving.next;
                list_unlink(&t->link);
                place(w, t); /* strictly lower: its digit `level` now matches */
            }
        }
    }
    if (now > w->now)
        w->now = now;
    w->advancing = false;
    return fired;
}

uint64_t otp__wheel_next_deadline(const otp__wheel *w)
{
    if (!list_empty(&w->due))
        return w->now;
    if (!w->levels)
        return UINT64_MAX;
    unsigned level = (unsigned)__builtin_ctz(w->levels);
    unsigned slot = (unsigned)__builtin_ctzll(w->occupied[level]);
    return slot_start(w->now, level, slot);
}
