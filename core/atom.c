/* atom.c — the process-wide atom table.
 *
 * Atoms are append-only: an index, once handed out, names the same text
 * forever. Entries live in fixed chunks that never move, so reading an atom's
 * text is two loads and no lock. Lookup by text probes an open-addressing
 * hash table without locks; only inserting takes the mutex. When the table
 * grows, the old one is retired but kept (never freed): a reader that still
 * holds it sees every atom that existed when it was current, and a miss there
 * falls back to the locked path, which always searches the newest table.
 */
#include <pthread.h>
#include <stdlib.h>

#include "term_internal.h"

#define CHUNK_BITS 12
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define NCHUNKS    (OTP_ATOM_MAX / CHUNK_SIZE)

typedef struct hash_table {
    uint32_t mask;
    _Atomic uint32_t *slots; /* atom index + 1; 0 = empty */
    struct hash_table *retired_next;
} hash_table;

static struct {
    /* Chunk pointers and entries are written once under `lock`, published
     * with release stores, and read with acquire loads by any thread. */
    _Atomic(otp__atom_entry **) chunks[NCHUNKS];
    _Atomic(hash_table *) table;
    _Atomic uint32_t count;
    pthread_mutex_t lock;
    hash_table *retired;
} atoms = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t atoms_once = PTHREAD_ONCE_INIT;

/* FNV-1a: atoms are short; this is cheap and good enough for the table. */
static uint32_t hash_bytes(const uint8_t *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 16777619u;
    return h;
}

const otp__atom_entry *otp__atom_entry_of(otp_term atom)
{
    uint32_t i = otp__atom_index(atom);
    /* Acquire pairs with the release store that published the chunk; the
     * caller got this index from an acquire path too, so the entry is
     * visible. */
    otp__atom_entry **chunk =
        atomic_load_explicit(&atoms.chunks[i >> CHUNK_BITS], memory_order_acquire);
    return chunk[i & (CHUNK_SIZE - 1)];
}

static bool entry_equals(const otp__atom_entry *e, uint32_t h, const uint8_t *s, size_t len)
{
    return e->hash == h && e->len == len && memcmp(e->text, s, len) == 0;
}

static int table_find(hash_table *t, uint32_t h, const uint8_t *s, size_t len, otp_term *out)
{
    for (uint32_t pos = h & t->mask;; pos = (pos + 1) & t->mask) {
        /* Acquire pairs with the release store in insert_slot, which
         * happens after the entry was fully written. */
        uint32_t v = atomic_load_explicit(&t->slots[pos], memory_order_acquire);
        if (v == 0)
            return -OTP_ENOTFOUND;
        otp_term a = OTP__ATOM(v - 1);
        if (entry_equals(otp__atom_entry_of(a), h, s, len)) {
            *out = a;
            return 0;
        }
    }
}

static void insert_slot(hash_table *t, uint32_t h, uint32_t index)
{
    uint32_t pos = h & t->mask;
    while (atomic_load_explicit(&t->slots[pos], memory_order_relaxed) != 0)
        pos = (pos + 1) & t->mask;
    atomic_store_explicit(&t->slots[pos], index + 1, memory_order_release);
}

static hash_table *table_new(uint32_t nslots)
{
    hash_table *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->slots = calloc(nslots, sizeof(*t->slots));
    if (!t->slots) {
        free(t);
        return NULL;
    }
    t->mask = nslots - 1;
    return t;
}

/* Called with the lock held. */
static int grow_table(void)
{
    hash_table *old = atomic_load_explicit(&atoms.table, memory_order_relaxed);
    hash_table *t = table_new((old->mask + 1) * 2);
    if (!t)
        return -OTP_ENOMEM;
    uint32_t n = atomic_load_explicit(&atoms.count, memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++)
        insert_slot(t, otp__atom_entry_of(OTP__ATOM(i))->hash, i);
    old->retired_next = atoms.retired;
    atoms.retired = old;
    /* Release: readers that load the new table see all its slots. */
    atomic_store_explicit(&atoms.table, t, memory_order_release);
    return 0;
}

/* Inserts known-absent, valid text. Called with the lock held. */
static int insert_locked(uint32_t h, const uint8_t *s, size_t len, uint32_t nchars, bool latin1,
                         otp_term *out)
{
    uint32_t n = atomic_load_explicit(&atoms.count, memory_order_relaxed);
    if (n >= OTP_ATOM_MAX)
        return -OTP_ELIMIT;
    hash_table *t = atomic_load_explicit(&atoms.table, memory_order_relaxed);
    if ((uint64_t)(n + 1) * 2 > (uint64_t)t->mask + 1) {
        int rc = grow_table();
        if (rc < 0)
            return rc;
        t = atomic_load_explicit(&atoms.table, memory_order_relaxed);
    }
    otp__atom_entry **chunk =
        atomic_load_explicit(&atoms.chunks[n >> CHUNK_BITS], memory_order_relaxed);
    if (!chunk) {
        chunk = calloc(CHUNK_SIZE, sizeof(*chunk));
        if (!chunk)
            return -OTP_ENOMEM;
        atomic_store_explicit(&atoms.chunks[n >> CHUNK_BITS], chunk, memory_order_release);
    }
    otp__atom_entry *e = malloc(sizeof(*e) + len + 1);
    if (!e)
        return -OTP_ENOMEM;
    e->len = (uint32_t)len;
    e->nchars = nchars;
    e->hash = h;
    e->latin1 = latin1;
    memcpy(e->text, s, len);
    e->text[len] = 0;
    chunk[n & (CHUNK_SIZE - 1)] = e;
    /* Release: the entry is complete before its index can be seen through
     * count or a hash slot. */
    atomic_store_explicit(&atoms.count, n + 1, memory_order_release);
    insert_slot(t, h, n);
    *out = OTP__ATOM(n);
    return 0;
}

/* Fills in the fixed atoms of term.h; their order is their index. */
static const char *const predefined[] = {
    "false", "true",   "",       "ok",           "error",    "undefined", "normal",
    "kill",  "killed", "noproc", "noconnection", "shutdown", "timeout",   "nonode@nohost",
    "EXIT",  "DOWN",   "badarg", "infinity",     "nil",
};

static void atoms_init(void)
{
    hash_table *t = table_new(1u << 12);
    if (!t)
        abort(); /* at first use of any atom, nothing can proceed without it */
    atomic_store_explicit(&atoms.table, t, memory_order_release);
    for (size_t i = 0; i < sizeof(predefined) / sizeof(predefined[0]); i++) {
        otp_term a;
        const uint8_t *s = (const uint8_t *)predefined[i];
        size_t len = strlen(predefined[i]);
        if (insert_locked(hash_bytes(s, len), s, len, (uint32_t)len, true, &a) < 0 ||
            a != OTP__ATOM(i))
            abort();
    }
}

/* Atoms like OTP_ATOM_OK are usable without any interning call, so the
 * table must exist before main(); pthread_once keeps later calls cheap. */
__attribute__((constructor)) static void atoms_ctor(void)
{
    pthread_once(&atoms_once, atoms_init);
}

int64_t otp__utf8_count(const uint8_t *s, size_t len)
{
    int64_t n = 0;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
        } else if (c >= 0xc2 && c <= 0xdf) {
            if (i + 1 >= len || (s[i + 1] & 0xc0) != 0x80)
                return -1;
            i += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (i + 2 >= len || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80)
                return -1;
            uint32_t cp = ((c & 0x0fu) << 12) | ((s[i + 1] & 0x3fu) << 6) | (s[i + 2] & 0x3fu);
            if (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))
                return -1; /* overlong, or a surrogate */
            i += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (i + 3 >= len || (s[i + 1] & 0xc0) != 0x80 || (s[i + 2] & 0xc0) != 0x80 ||
                (s[i + 3] & 0xc0) != 0x80)
                return -1;
            uint32_t cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3fu) << 12) |
                          ((s[i + 2] & 0x3fu) << 6) | (s[i + 3] & 0x3fu);
            if (cp < 0x10000 || cp > 0x10ffff)
                return -1;
            i += 4;
        } else {
            return -1;
        }
        n++;
    }
    return n;
}

static bool utf8_is_latin1(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] >= 0xc4) /* lead bytes of code points >= 0x100 */
            return false;
    return true;
}

static int intern(const uint8_t *s, size_t len, uint32_t nchars, otp_term *out)
{
    pthread_once(&atoms_once, atoms_init);
    uint32_t h = hash_bytes(s, len);
    hash_table *t = atomic_load_explicit(&atoms.table, memory_order_acquire);
    if (table_find(t, h, s, len, out) == 0)
        return 0;
    pthread_mutex_lock(&atoms.lock);
    t = atomic_load_explicit(&atoms.table, memory_order_relaxed);
    int rc = table_find(t, h, s, len, out);
    if (rc < 0)
        rc = insert_locked(h, s, len, nchars, utf8_is_latin1(s, len), out);
    pthread_mutex_unlock(&atoms.lock);
    return rc;
}

int otp__atom_intern_valid(const uint8_t *utf8, size_t len, otp_term *out)
{
    size_t nchars = len;
    for (size_t i = 0; i < len; i++)
        if ((utf8[i] & 0xc0) == 0x80)
            nchars--; /* continuation bytes are not characters */
    return intern(utf8, len, (uint32_t)nchars, out);
}

int otp_atom_intern(const char *utf8, size_t len, otp_term *out)
{
    if (!utf8 && len)
        return -OTP_EBADARG;
    int64_t n = otp__utf8_count((const uint8_t *)utf8, len);
    if (n < 0)
        return -OTP_EBADARG;
    if (n > OTP_ATOM_MAX_CHARS)
        return -OTP_ELIMIT;
    return intern((const uint8_t *)utf8, len, (uint32_t)n, out);
}

int otp_atom_intern_latin1(const char *latin1, size_t len, otp_term *out)
{
    if (len > OTP_ATOM_MAX_CHARS)
        return -OTP_ELIMIT;
    uint8_t buf[2 * OTP_ATOM_MAX_CHARS];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = (uint8_t)latin1[i];
        if (c < 0x80) {
            buf[n++] = c;
        } else {
            buf[n++] = (uint8_t)(0xc0 | (c >> 6));
            buf[n++] = (uint8_t)(0x80 | (c & 0x3f));
        }
    }
    return intern(buf, n, (uint32_t)len, out);
}

otp_term otp_atom(const char *utf8)
{
    otp_term a;
    if (!utf8 || otp_atom_intern(utf8, strlen(utf8), &a) < 0)
        return OTP_NONE;
    return a;
}

const char *otp_atom_text(otp_term atom, size_t *len)
{
    if (!otp_is_atom(atom)) {
        if (len)
            *len = 0;
        return NULL;
    }
    pthread_once(&atoms_once, atoms_init);
    const otp__atom_entry *e = otp__atom_entry_of(atom);
    if (len)
        *len = e->len;
    return (const char *)e->text;
}

const char *otp_atom_cstr(otp_term atom)
{
    return otp_atom_text(atom, NULL);
}

size_t otp_atom_count(void)
{
    pthread_once(&atoms_once, atoms_init);
    return atomic_load_explicit(&atoms.count, memory_order_acquire);
}
