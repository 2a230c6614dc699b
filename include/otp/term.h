/* term.h — Erlang terms in C: the term word, arenas, atoms, building,
 * reading, comparing and hashing terms.
 *
 * THE ONE RULE OF MEMORY
 * ----------------------
 * A term lives in an arena (otp_arena). It stays valid until that arena is
 * reset or freed; then every term built in it, or decoded into it, is gone at
 * once. To keep a term longer than its arena (in a server's state, say), copy
 * it into an arena you own with otp_copy(). Atoms, small integers and [] are
 * not in any arena and never die. Large binaries are reference counted and
 * shared between arenas, so copying one copies nothing.
 *
 * An arena belongs to one thread at a time. Terms themselves are immutable
 * once built, so any thread may read them while the arena lives.
 */
#ifndef OTP_TERM_H
#define OTP_TERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One tagged machine word. Small integers, atoms and [] are immediate;
 * everything else points into an arena. Compare terms with otp_eq() or
 * otp_exact_eq(), never with ==, except for atoms and [] (which are unique). */
typedef uint64_t otp_term;

/* ---------------------------------------------------------------- arenas */

typedef struct otp_arena otp_arena;

/* Creates an empty arena. Returns NULL when out of memory. The caller owns it
 * and releases it with otp_arena_free(). */
otp_arena *otp_arena_new(void);
/* Frees the arena, every term in it, and drops its references to shared
 * binaries. NULL is accepted. */
void otp_arena_free(otp_arena *a);
/* Forgets every term in the arena but keeps one block of memory for reuse:
 * the cheap way to recycle an arena per message. */
void otp_arena_reset(otp_arena *a);
/* Raw memory from the arena, 8-byte aligned, valid until reset/free.
 * Returns NULL when out of memory. */
void *otp_arena_alloc(otp_arena *a, size_t bytes);
/* Bytes currently held by the arena (blocks, not counting shared binaries). */
size_t otp_arena_bytes(const otp_arena *a);

/* ----------------------------------------------------------------- atoms */

/* Atoms are interned once per OS process (the table is shared by every
 * runtime in it, so terms can move between nodes without translation) and
 * never freed. Lookup by text is lock-free when the atom exists; reading an
 * atom's text never locks. At most OTP_ATOM_MAX atoms, each at most 255
 * characters of valid UTF-8. */
#define OTP_ATOM_MAX       (1u << 20)
#define OTP_ATOM_MAX_CHARS 255

/* Interns `len` bytes of UTF-8 and stores the atom in *out. Fails with
 * -OTP_EBADARG for invalid UTF-8, a NUL-free rule is not applied (Erlang
 * allows '\0' in atoms), -OTP_ELIMIT for more than 255 characters or a full
 * table. */
int otp_atom_intern(const char *utf8, size_t len, otp_term *out);
/* Same for Latin-1 bytes (each byte one character). */
int otp_atom_intern_latin1(const char *latin1, size_t len, otp_term *out);
/* Convenience for C string literals: returns the atom, or OTP_NONE when the
 * text is not a valid atom. */
otp_term otp_atom(const char *utf8);
/* The atom's UTF-8 text (not NUL-terminated; use *len) — valid forever. */
const char *otp_atom_text(otp_term atom, size_t *len);
/* Same, NUL-terminated (atoms may contain NUL; then the text is cut short). */
const char *otp_atom_cstr(otp_term atom);
/* Number of atoms interned so far in this process. */
size_t otp_atom_count(void);

/* Atoms every node needs, interned at fixed indexes before anything else. */
#define OTP__ATOM(i)          ((otp_term)(((uint64_t)(i) << 6) | 0x4))
#define OTP_ATOM_FALSE        OTP__ATOM(0)
#define OTP_ATOM_TRUE         OTP__ATOM(1)
#define OTP_ATOM_EMPTY        OTP__ATOM(2) /* '' */
#define OTP_ATOM_OK           OTP__ATOM(3)
#define OTP_ATOM_ERROR        OTP__ATOM(4)
#define OTP_ATOM_UNDEFINED    OTP__ATOM(5)
#define OTP_ATOM_NORMAL       OTP__ATOM(6)
#define OTP_ATOM_KILL         OTP__ATOM(7)
#define OTP_ATOM_KILLED       OTP__ATOM(8)
#define OTP_ATOM_NOPROC       OTP__ATOM(9)
#define OTP_ATOM_NOCONNECTION OTP__ATOM(10)
#define OTP_ATOM_SHUTDOWN     OTP__ATOM(11)
#define OTP_ATOM_TIMEOUT      OTP__ATOM(12)
#define OTP_ATOM_NONODE       OTP__ATOM(13) /* nonode@nohost */
#define OTP_ATOM_EXIT         OTP__ATOM(14) /* 'EXIT' */
#define OTP_ATOM_DOWN         OTP__ATOM(15) /* 'DOWN' */
#define OTP_ATOM_BADARG       OTP__ATOM(16)
#define OTP_ATOM_INFINITY     OTP__ATOM(17)
#define OTP_ATOM_NIL          OTP__ATOM(18) /* the atom nil, not [] */

/* -------------------------------------------------------- immediates */

#define OTP_NIL  ((otp_term)0x0c) /* [] */
#define OTP_NONE ((otp_term)0x4c) /* "no term": an error result, never valid data */

/* Smallest and largest integers held immediately (63-bit signed). Larger
 * ones are bignums, transparently: use otp_int64()/otp_get_int64(). */
#define OTP_SMALL_MIN (-(INT64_C(1) << 62))
#define OTP_SMALL_MAX ((INT64_C(1) << 62) - 1)

static inline bool otp_is_small(otp_term t)
{
    return (t & 1) != 0;
}
static inline bool otp_is_atom(otp_term t)
{
    return (t & 0x3f) == 0x4;
}
static inline bool otp_is_nil(otp_term t)
{
    return t == OTP_NIL;
}
static inline bool otp_is_cons(otp_term t)
{
    return (t & 7) == 2;
}
static inline bool otp_is_list(otp_term t)
{
    return t == OTP_NIL || (t & 7) == 2;
}
static inline bool otp_is_boxed(otp_term t)
{
    return (t & 7) == 0 && t != 0;
}
/* A small integer without a range check: v must be within OTP_SMALL_*. */
static inline otp_term otp_small(int64_t v)
{
    return ((uint64_t)v << 1) | 1;
}
static inline int64_t otp_small_value(otp_term t)
{
    return (int64_t)t >> 1;
}
static inline otp_term otp_bool(bool b)
{
    return b ? OTP_ATOM_TRUE : OTP_ATOM_FALSE;
}

/* ------------------------------------------------------------ type tests */

typedef enum otp_type {
    OTP_T_NONE = 0,
    OTP_T_INTEGER, /* small or bignum */
    OTP_T_FLOAT,
    OTP_T_ATOM,
    OTP_T_REF,
    OTP_T_FUN, /* closure or export */
    OTP_T_PORT,
    OTP_T_PID,
    OTP_T_TUPLE,
    OTP_T_MAP,
    OTP_T_NIL,
    OTP_T_LIST,     /* a cons cell: proper or improper list */
    OTP_T_BITSTRING /* binary (whole bytes) or bitstring */
} otp_type;

/* The type of t; the enum's order is Erlang's term order of types. */
otp_type otp_type_of(otp_term t);
bool otp_is_integer(otp_term t);
bool otp_is_bignum(otp_term t);
bool otp_is_float(otp_term t);
bool otp_is_number(otp_term t);
bool otp_is_tuple(otp_term t);
bool otp_is_map(otp_term t);
bool otp_is_binary(otp_term t);    /* whole bytes */
bool otp_is_bitstring(otp_term t); /* any bit length, binaries included */
bool otp_is_pid(otp_term t);
bool otp_is_port(otp_term t);
bool otp_is_ref(otp_term t);
bool otp_is_fun(otp_term t);
bool otp_is_boolean(otp_term t);

/* -------------------------------------------------------------- building
 *
 * Every constructor that allocates takes the arena and returns OTP_NONE when
 * out of memory or given invalid arguments. OTP_NONE passed as an element
 * makes the container OTP_NONE too, so a nested expression needs only one
 * check at the end:
 *
 *   otp_term t = OTP_TUPLE(a, OTP_ATOM_OK,
 *                          OTP_LIST(a, otp_int(a, 1), otp_int(a, 2)),
 *                          otp_binary(a, "x", 1));
 *   if (t == OTP_NONE) ...
 *
 * or, from text with holes (see text.h): otp_format(a, "{ok,[1,2],<<\"x\">>}").
 */
otp_term otp_int(otp_arena *a, int64_t v); /* small or bignum */
otp_term otp_uint(otp_arena *a, uint64_t v);
otp_term otp_float(otp_arena *a, double v); /* NaN and infinities: OTP_NONE */
/* A bignum from magnitude bytes, least significant first (the wire order). */
otp_term otp_bignum_from_bytes(otp_arena *a, bool negative, const uint8_t *le, size_t n);

otp_term otp_tuple(otp_arena *a, size_t arity, ...);
otp_term otp_tuple_v(otp_arena *a, size_t arity, const otp_term *elems);
/* An uninitialised tuple: fill every element with otp_tuple_set_init(). */
otp_term otp_tuple_new(otp_arena *a, size_t arity);
void otp_tuple_set_init(otp_term tuple, size_t i, otp_term v);

otp_term otp_cons(otp_arena *a, otp_term head, otp_term tail);
otp_term otp_list(otp_arena *a, size_t n, ...);
otp_term otp_list_v(otp_arena *a, size_t n, const otp_term *elems);
/* A list with the given tail (improper when tail is not a list). */
otp_term otp_list_tail_v(otp_arena *a, size_t n, const otp_term *elems, otp_term tail);
/* "abc" as a list of character codes (UTF-8 decoded; invalid UTF-8: NONE). */
otp_term otp_string(otp_arena *a, const char *utf8);
otp_term otp_string_n(otp_arena *a, const char *utf8, size_t len);

/* A binary holding a copy of the bytes. Above OTP_BINARY_HEAP_MAX bytes the
 * bytes go into a shared reference-counted block. */
#define OTP_BINARY_HEAP_MAX 64
otp_term otp_binary(otp_arena *a, const void *bytes, size_t len);
otp_term otp_binary_str(otp_arena *a, const char *cstr);
/* A bitstring of `bits` bits taken from the high end of `bytes` (bits not
 * used in the last byte are ignored). */
otp_term otp_bitstring(otp_arena *a, const void *bytes, uint64_t bits);
/* An uninitialised binary of len bytes: write *data before sharing it. */
otp_term otp_binary_new(otp_arena *a, size_t len, uint8_t **data);

/* A map from n keys and n values. Duplicate keys (=:=): the last one wins,
 * as in Erlang's maps:from_list/1. */
otp_term otp_map_v(otp_arena *a, size_t n, const otp_term *keys, const otp_term *values);
/* OTP_MAP(a, k1, v1, k2, v2, ...) */
otp_term otp_map_kv(otp_arena *a, size_t npairs, ...);
/* A new map with key set to value (copying the old map into the arena). */
otp_term otp_map_put(otp_arena *a, otp_term map, otp_term key, otp_term value);

/* Pids, ports and refs with an explicit node and creation. `words` holds the
 * reference's id words in wire order (1..5 words). */
otp_term otp_pid(otp_arena *a, otp_term node, uint32_t id, uint32_t serial, uint32_t creation);
otp_term otp_port(otp_arena *a, otp_term node, uint64_t id, uint32_t creation);
otp_term otp_ref(otp_arena *a, otp_term node, uint32_t creation, const uint32_t *words,
                 size_t nwords);
/* fun Module:Function/Arity */
otp_term otp_export(otp_arena *a, otp_term module, otp_term function, uint32_t arity);

/* Variadic helpers that count their arguments for you. */
#define OTP__NARGS(...)   (sizeof((otp_term[]){__VA_ARGS__}) / sizeof(otp_term))
#define OTP_TUPLE(a, ...) otp_tuple_v((a), OTP__NARGS(__VA_ARGS__), (otp_term[]){__VA_ARGS__})
#define OTP_LIST(a, ...)  otp_list_v((a), OTP__NARGS(__VA_ARGS__), (otp_term[]){__VA_ARGS__})
#define OTP_MAP(a, ...)   otp_map_kv_v((a), OTP__NARGS(__VA_ARGS__) / 2, (otp_term[]){__VA_ARGS__})
otp_term otp_map_kv_v(otp_arena *a, size_t npairs, const otp_term *kv);

/* --------------------------------------------------------------- reading */

/* Integers: 0, or -OTP_ETYPE (not an integer) / -OTP_ERANGE (does not fit). */
int otp_get_int64(otp_term t, int64_t *out);
int otp_get_uint64(otp_term t, uint64_t *out);
int otp_get_int32(otp_term t, int32_t *out);
/* Bignum magnitude as bytes, least significant first. *n gets the byte
 * count; returns -OTP_ENOSPC (with *n the size needed) if cap is too small. */
int otp_get_bignum_bytes(otp_term t, bool *negative, uint8_t *le, size_t cap, size_t *n);
/* Float value; integers are converted (-OTP_ERANGE if not exactly possible
 * is NOT reported: this is Erlang's float/1). */
int otp_get_double(otp_term t, double *out);
int otp_get_bool(otp_term t, bool *out);

size_t otp_tuple_arity(otp_term t);           /* 0 if not a tuple */
otp_term otp_tuple_get(otp_term t, size_t i); /* 0-based; OTP_NONE if out of range */
const otp_term *otp_tuple_elems(otp_term t);  /* NULL if not a tuple */

otp_term otp_head(otp_term cons); /* OTP_NONE if not a cons */
otp_term otp_tail(otp_term cons);
/* Length of a proper list, or -OTP_ETYPE for improper lists and non-lists. */
int64_t otp_list_length(otp_term t);
/* Iterate: for (otp_term l = list; otp_is_cons(l); l = otp_tail(l)) ... */

/* Binaries. *bits is the total bit length; data has (bits + 7) / 8 bytes. */
const uint8_t *otp_binary_data(otp_term t, size_t *len); /* NULL unless binary */
const uint8_t *otp_bitstring_data(otp_term t, uint64_t *bits);

size_t otp_map_size(otp_term t); /* 0 if not a map */
/* Value for key (=:= match), or OTP_NONE. */
otp_term otp_map_get(otp_term map, otp_term key);
/* i-th key/value in the map's key order (0-based). */
int otp_map_at(otp_term map, size_t i, otp_term *key, otp_term *value);

/* Identity parts of pids, ports and refs. *nwords gets 1..5 (or 0 for the
 * non-canonical empty ref). Return -OTP_ETYPE on the wrong type. */
int otp_pid_parts(otp_term t, otp_term *node, uint32_t *id, uint32_t *serial, uint32_t *creation);
int otp_port_parts(otp_term t, otp_term *node, uint64_t *id, uint32_t *creation);
int otp_ref_parts(otp_term t, otp_term *node, uint32_t *creation, uint32_t words[5],
                  size_t *nwords);

/* Funs. Exports: module, function, arity. Closures: module, arity and the
 * number of free variables; the rest is carried for the wire. */
int otp_fun_info(otp_term t, bool *is_export, otp_term *module, otp_term *function, uint32_t *arity,
                 size_t *num_free);

/* ------------------------------------------------------ order, equality */

/* Erlang's term order: negative, 0 or positive like strcmp, with == semantics
 * (1 == 1.0). */
int otp_cmp(otp_term a, otp_term b);
/* a == b in Erlang (numbers compared by value). */
bool otp_eq(otp_term a, otp_term b);
/* a =:= b in Erlang (1 =/= 1.0; in OTP 25, 0.0 =:= -0.0). */
bool otp_exact_eq(otp_term a, otp_term b);
/* The total order used for map keys (=:= equal iff 0): like otp_cmp but an
 * integer sorts below any float. */
int otp_cmp_exact(otp_term a, otp_term b);
/* A 64-bit hash consistent with =:= (equal terms, equal hashes). Stable
 * within a build, not across libotp versions and not Erlang's phash2. */
uint64_t otp_hash(otp_term t);

/* ------------------------------------------------------------ copying */

/* Deep copy of t into arena dst. Shared binaries are shared, not copied.
 * Returns OTP_NONE when out of memory. Immediates come back unchanged. */
otp_term otp_copy(otp_arena *dst, otp_term t);
/* Bytes otp_copy would take in the arena (a bound, for pre-sizing). */
size_t otp_copy_size(otp_term t);

#ifdef __cplusplus
}
#endif
#endif
