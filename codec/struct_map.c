/* struct_map.c — terms to C structs and back, driven by field tables
 * (include/otp/struct.h): the tuple, record, map and proplist forms, every
 * field type, nested structs and lists. Errors name the field path
 * ("field 'address.zip': ..."). Nesting recurses on the C stack, so it is
 * capped at MAX_DEPTH levels: a descriptor cycle fails instead of looping.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "otp/struct.h"
#include "text_internal.h"

/* Real descriptors nest a handful of levels; 64 leaves room and still keeps
 * the C stack small when a descriptor refers to itself. */
#define MAX_DEPTH      64
#define PATH_MAX_CHARS 256
/* Paths longer than this are shown by their tail so the reason still fits
 * in otp_error.message. */
#define PATH_SHOWN 80

typedef struct map_ctx {
    otp_arena *a;
    otp_error *err;
    size_t plen;
    char path[PATH_MAX_CHARS];
} map_ctx;

/* ------------------------------------------------------------ errors */

static const char *kind_of(otp_term t)
{
    switch (otp_type_of(t)) {
    case OTP_T_INTEGER:
        return "an integer";
    case OTP_T_FLOAT:
        return "a float";
    case OTP_T_ATOM:
        return "an atom";
    case OTP_T_REF:
        return "a reference";
    case OTP_T_FUN:
        return "a fun";
    case OTP_T_PORT:
        return "a port";
    case OTP_T_PID:
        return "a pid";
    case OTP_T_TUPLE:
        return "a tuple";
    case OTP_T_MAP:
        return "a map";
    case OTP_T_NIL:
        return "an empty list";
    case OTP_T_LIST:
        return otp_list_length(t) < 0 ? "an improper list" : "a list";
    case OTP_T_BITSTRING:
        return otp_is_binary(t) ? "a binary" : "a bitstring";
    case OTP_T_NONE:
        break;
    }
    return "no valid term";
}

/* Appends s to the message, cutting it at the buffer's end. */
static void put(otp_error *e, size_t *len, const char *s)
{
    size_t room = sizeof(e->message) - 1 - *len;
    size_t n = strlen(s);
    if (n > room)
        n = room;
    memcpy(e->message + *len, s, n);
    *len += n;
    e->message[*len] = '\0';
}

static int fail(map_ctx *c, int code, const char *fmt, ...) OTP_PRINTF(3, 4);
static int fail(map_ctx *c, int code, const char *fmt, ...)
{
    if (!c->err)
        return code;
    char why[sizeof(c->err->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    c->err->code = code;
    c->err->offset = 0;
    size_t len = 0;
    c->err->message[0] = '\0';
    if (c->plen > 0) {
        put(c->err, &len, "field '");
        if (c->plen > PATH_SHOWN)
            put(c->err, &len, "...");
        put(c->err, &len, c->path + (c->plen > PATH_SHOWN ? c->plen - PATH_SHOWN : 0));
        put(c->err, &len, "': ");
    }
    put(c->err, &len, why);
    return code;
}

/* Appends ".name" (or "[i]") to the path; returns the old length to restore.
 * A path too long for the buffer is cut, which only shortens messages. */
static size_t push_name(map_ctx *c, const char *name)
{
    size_t old = c->plen;
    size_t room = sizeof(c->path) - c->plen;
    int n = snprintf(c->path + c->plen, room, "%s%s", c->plen ? "." : "", name ? name : "?");
    c->plen += (n < 0 || (size_t)n >= room) ? room - 1 : (size_t)n;
    return old;
}

static size_t push_index(map_ctx *c, size_t i)
{
    size_t old = c->plen;
    size_t room = sizeof(c->path) - c->plen;
    int n = snprintf(c->path + c->plen, room, "[%zu]", i);
    c->plen += (n < 0 || (size_t)n >= room) ? room - 1 : (size_t)n;
    return old;
}

static void pop(map_ctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

/* ------------------------------------------------------------ layout */

/* Bytes one value of `type` takes in a struct or a list's items array;
 * 0 when the type cannot be stored there (a list of lists). */
static size_t slot_size(otp_field_type type, size_t chars_size, const otp_struct_desc *nested)
{
    switch (type) {
    case OTP_F_BOOL:
        return sizeof(bool);
    case OTP_F_INT8:
    case OTP_F_UINT8:
        return 1;
    case OTP_F_INT16:
    case OTP_F_UINT16:
        return 2;
    case OTP_F_INT32:
    case OTP_F_UINT32:
        return 4;
    case OTP_F_INT64:
    case OTP_F_UINT64:
        return 8;
    case OTP_F_DOUBLE:
        return sizeof(double);
    case OTP_F_ATOM:
    case OTP_F_TERM:
        return sizeof(otp_term);
    case OTP_F_CHARS:
        return chars_size;
    case OTP_F_CSTR:
        return sizeof(const char *);
    case OTP_F_BINARY:
        return sizeof(otp_bytes);
    case OTP_F_STRUCT:
        return nested ? nested->size : 0;
    case OTP_F_LIST:
        return 0;
    }
    return 0;
}

static const struct int_range {
    const char *name;
    int64_t min;
    uint64_t max;
    unsigned bytes;
    bool is_signed;
} int_ranges[] = {
    [OTP_F_INT8] = {"int8", INT8_MIN, INT8_MAX, 1, true},
    [OTP_F_INT16] = {"int16", INT16_MIN, INT16_MAX, 2, true},
    [OTP_F_INT32] = {"int32", INT32_MIN, INT32_MAX, 4, true},
    [OTP_F_INT64] = {"int64", INT64_MIN, INT64_MAX, 8, true},
    [OTP_F_UINT8] = {"uint8", 0, UINT8_MAX, 1, false},
    [OTP_F_UINT16] = {"uint16", 0, UINT16_MAX, 2, false},
    [OTP_F_UINT32] = {"uint32", 0, UINT32_MAX, 4, false},
    [OTP_F_UINT64] = {"uint64", 0, UINT64_MAX, 8, false},
};

/* Stores the low `bytes` bytes of v in a field of that width: the same
 * bits for the signed and the unsigned types (range checked already). */
static void store_int(void *dst, unsigned bytes, uint64_t v)
{
    switch (bytes) {
    case 1:
        *(uint8_t *)dst = (uint8_t)v;
        break;
    case 2:
        *(uint16_t *)dst = (uint16_t)v;
        break;
    case 4:
        *(uint32_t *)dst = (uint32_t)v;
        break;
    default:
        *(uint64_t *)dst = v;
        break;
    }
}

/* ------------------------------------------------------------ decoding */

static int decode_struct(map_ctx *c, const otp_struct_desc *d, otp_struct_form form, otp_term t,
                         void *out, unsigned depth);

static int decode_int(map_ctx *c, otp_field_type type, otp_term v, void *dst)
{
    const struct int_range *r = &int_ranges[type];
    if (!otp_is_integer(v))
        return fail(c, -OTP_ETYPE, "expected an integer, got %s", kind_of(v));
    int64_t s;
    bool fits_s = otp_get_int64(v, &s) == 0;
    if (r->is_signed) {
        if (!fits_s)
            return fail(c, -OTP_ERANGE, "integer does not fit in %s", r->name);
        if (s < r->min || (s > 0 && (uint64_t)s > r->max))
            return fail(c, -OTP_ERANGE, "%lld does not fit in %s (%lld..%llu)", (long long)s,
                        r->name, (long long)r->min, (unsigned long long)r->max);
        store_int(dst, r->bytes, (uint64_t)s);
        return 0;
    }
    if (fits_s && s < 0)
        return fail(c, -OTP_ERANGE, "%lld does not fit in %s (0..%llu)", (long long)s, r->name,
                    (unsigned long long)r->max);
    uint64_t u;
    if (otp_get_uint64(v, &u) != 0)
        return fail(c, -OTP_ERANGE, "integer does not fit in %s", r->name);
    if (u > r->max)
        return fail(c, -OTP_ERANGE, "%llu does not fit in %s (0..%llu)", (unsigned long long)u,
                    r->name, (unsigned long long)r->max);
    store_int(dst, r->bytes, u);
    return 0;
}

/* A string (flat list of code points) as UTF-8. Writes at most cap bytes to
 * out (which may be NULL) and always sets *len to the full length, so the
 * caller can size a buffer with a first pass. */
static int string_utf8(map_ctx *c, otp_term list, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = 0;
    size_t i = 0;
    otp_term l = list;
    for (; otp_is_cons(l); l = otp_tail(l), i++) {
        otp_term h = otp_head(l);
        int64_t cp;
        if (!otp_is_integer(h) || otp_get_int64(h, &cp) != 0 || cp < 0 || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return fail(c, -OTP_ETYPE,
                        "expected text, got a list whose element %zu is not a character", i);
        uint8_t tmp[4];
        size_t k = otp__utf8_put(tmp, (uint32_t)cp);
        if (out && n + k <= cap)
            memcpy(out + n, tmp, k);
        n += k;
    }
    if (!otp_is_nil(l))
        return fail(c, -OTP_ETYPE, "expected text, got an improper list");
    *len = n;
    return 0;
}

/* The bytes of a text value: a binary or an atom point at their own bytes;
 * a string is converted into an arena buffer. */
static int text_of(map_ctx *c, otp_term v, const uint8_t **data, size_t *len)
{
    if (otp_is_binary(v)) {
        *data = otp_binary_data(v, len);
        return 0;
    }
    if (otp_is_atom(v)) {
        *data = (const uint8_t *)otp_atom_text(v, len);
        return 0;
    }
    if (otp_is_list(v)) {
        size_t n;
        int rc = string_utf8(c, v, NULL, 0, &n);
        if (rc < 0)
            return rc;
        uint8_t *buf = otp_arena_alloc(c->a, n ? n : 1);
        if (!buf)
            return fail(c, -OTP_ENOMEM, "out of memory");
        string_utf8(c, v, buf, n, &n);
        *data = buf;
        *len = n;
        return 0;
    }
    return fail(c, -OTP_ETYPE, "expected text (a binary, string or atom), got %s", kind_of(v));
}

static int check_no_nul(map_ctx *c, const uint8_t *data, size_t len)
{
    const uint8_t *z = len ? memchr(data, 0, len) : NULL;
    if (z)
        return fail(c, -OTP_ERANGE, "text has a NUL byte at position %zu, not valid in a C string",
                    (size_t)(z - data));
    return 0;
}

static int decode_list(map_ctx *c, const otp_field *f, otp_term v, otp_list_field *dst,
                       otp_struct_form form, unsigned depth);

/* Decodes one value of `type` into dst. f supplies the CHARS size, the
 * nested descriptor and, for lists, the element type. */
static int decode_value(map_ctx *c, const otp_field *f, otp_field_type type, otp_term v, void *dst,
                        otp_struct_form form, unsigned depth)
{
    switch (type) {
    case OTP_F_BOOL:
        if (v == OTP_ATOM_TRUE || v == OTP_ATOM_FALSE) {
            *(bool *)dst = v == OTP_ATOM_TRUE;
            return 0;
        }
        return fail(c, -OTP_ETYPE, "expected a boolean, got %s", kind_of(v));
    case OTP_F_INT8:
    case OTP_F_INT16:
    case OTP_F_INT32:
    case OTP_F_INT64:
    case OTP_F_UINT8:
    case OTP_F_UINT16:
    case OTP_F_UINT32:
    case OTP_F_UINT64:
        return decode_int(c, type, v, dst);
    case OTP_F_DOUBLE: {
        double d;
        if (!otp_is_number(v) || otp_get_double(v, &d) != 0)
            return fail(c, -OTP_ETYPE, "expected a number, got %s", kind_of(v));
        if (!isfinite(d))
            return fail(c, -OTP_ERANGE, "integer too large for a double");
        memcpy(dst, &d, sizeof(d));
        return 0;
    }
    case OTP_F_ATOM:
        if (!otp_is_atom(v))
            return fail(c, -OTP_ETYPE, "expected an atom, got %s", kind_of(v));
        memcpy(dst, &v, sizeof(v));
        return 0;
    case OTP_F_TERM:
        memcpy(dst, &v, sizeof(v));
        return 0;
    case OTP_F_CHARS: {
        if (f->size == 0)
            return fail(c, -OTP_EBADARG, "descriptor gives a CHARS field of size 0");
        const uint8_t *data;
        size_t len;
        int rc = text_of(c, v, &data, &len);
        if (rc < 0)
            return rc;
        if (len >= f->size)
            return fail(c, -OTP_ERANGE, "text of %zu bytes does not fit in char[%zu]", len,
                        f->size);
        if ((rc = check_no_nul(c, data, len)) < 0)
            return rc;
        memcpy(dst, data, len);
        ((char *)dst)[len] = '\0';
        return 0;
    }
    case OTP_F_CSTR: {
        const uint8_t *data;
        size_t len;
        int rc = text_of(c, v, &data, &len);
        if (rc < 0)
            return rc;
        if ((rc = check_no_nul(c, data, len)) < 0)
            return rc;
        char *s = otp_arena_alloc(c->a, len + 1);
        if (!s)
            return fail(c, -OTP_ENOMEM, "out of memory");
        if (len)
            memcpy(s, data, len);
        s[len] = '\0';
        const char *cs = s;
        memcpy(dst, &cs, sizeof(cs));
        return 0;
    }
    case OTP_F_BINARY: {
        if (!otp_is_binary(v))
            return fail(c, -OTP_ETYPE, "expected a binary, got %s", kind_of(v));
        otp_bytes b;
        b.data = otp_binary_data(v, &b.len);
        memcpy(dst, &b, sizeof(b));
        return 0;
    }
    case OTP_F_STRUCT:
        if (!f->nested)
            return fail(c, -OTP_EBADARG, "descriptor gives no nested struct");
        return decode_struct(c, f->nested, form, v, dst, depth + 1);
    case OTP_F_LIST:
        return decode_list(c, f, v, dst, form, depth);
    }
    return fail(c, -OTP_EBADARG, "descriptor has an unknown field type %d", (int)type);
}

static int decode_list(map_ctx *c, const otp_field *f, otp_term v, otp_list_field *dst,
                       otp_struct_form form, unsigned depth)
{
    size_t esize = slot_size(f->elem, f->size, f->nested);
    if (esize == 0)
        return fail(c, -OTP_EBADARG, "descriptor gives a list element type that cannot be stored");
    if (!otp_is_list(v))
        return fail(c, -OTP_ETYPE, "expected a list, got %s", kind_of(v));
    int64_t n = otp_list_length(v);
    if (n < 0)
        return fail(c, -OTP_ETYPE, "expected a list, got an improper list");
    if ((uint64_t)n > SIZE_MAX / esize)
        return fail(c, -OTP_ENOMEM, "list of %lld elements is too large", (long long)n);
    uint8_t *items = NULL;
    if (n > 0) {
        items = otp_arena_alloc(c->a, (size_t)n * esize);
        if (!items)
            return fail(c, -OTP_ENOMEM, "out of memory");
        /* Nested structs start zeroed: their optional fields stay so. */
        memset(items, 0, (size_t)n * esize);
    }
    size_t i = 0;
    for (otp_term l = v; otp_is_cons(l); l = otp_tail(l), i++) {
        size_t old = push_index(c, i);
        int rc = decode_value(c, f, f->elem, otp_head(l), items + i * esize, form, depth);
        pop(c, old);
        if (rc < 0)
            return rc;
    }
    dst->items = items;
    dst->count = (size_t)n;
    return 0;
}

static int decode_field(map_ctx *c, const otp_field *f, otp_term v, void *out, otp_struct_form form,
                        unsigned depth)
{
    size_t old = push_name(c, f->name);
    int rc = decode_value(c, f, f->type, v, (uint8_t *)out + f->offset, form, depth);
    pop(c, old);
    return rc;
}

static int field_atom(map_ctx *c, const otp_field *f, otp_term *key)
{
    *key = f->name ? otp_atom(f->name) : OTP_NONE;
    if (*key == OTP_NONE) {
        size_t old = push_name(c, f->name);
        int rc = fail(c, -OTP_EBADARG, "descriptor field name is not a valid atom");
        pop(c, old);
        return rc;
    }
    return 0;
}

static int missing(map_ctx *c, const otp_field *f, const char *where)
{
    size_t old = push_name(c, f->name);
    int rc = fail(c, -OTP_ENOTFOUND, "missing from %s", where);
    pop(c, old);
    return rc;
}

/* proplists:get_value semantics: the first entry that is the atom Key
 * (meaning true) or a tuple whose first element is Key wins. */
static int proplist_find(map_ctx *c, otp_term list, otp_term key, otp_term *value, bool *found)
{
    *found = false;
    for (otp_term l = list; otp_is_cons(l); l = otp_tail(l)) {
        otp_term e = otp_head(l);
        if (e == key) {
            *value = OTP_ATOM_TRUE;
            *found = true;
            return 0;
        }
        size_t ar = otp_tuple_arity(e);
        if (ar >= 1 && otp_tuple_get(e, 0) == key) {
            if (ar != 2)
                return fail(c, -OTP_ETYPE, "expected {%s, Value}, got a tuple of %zu elements",
                            otp_atom_cstr(key), ar);
            *value = otp_tuple_get(e, 1);
            *found = true;
            return 0;
        }
    }
    return 0;
}

static int decode_struct(map_ctx *c, const otp_struct_desc *d, otp_struct_form form, otp_term t,
                         void *out, unsigned depth)
{
    if (depth >= MAX_DEPTH)
        return fail(c, -OTP_ELIMIT, "structs nested more than %d deep (a descriptor cycle?)",
                    MAX_DEPTH);
    if (d->nfields && !d->fields)
        return fail(c, -OTP_EBADARG, "descriptor '%s' has no field table", d->name ? d->name : "?");
    int rc;
    switch (form) {
    case OTP_STRUCT_TUPLE:
    case OTP_STRUCT_RECORD: {
        otp_term tag = d->name ? otp_atom(d->name) : OTP_NONE;
        if (form == OTP_STRUCT_RECORD && tag == OTP_NONE)
            return fail(c, -OTP_EBADARG, "descriptor name is not a valid record tag");
        if (!otp_is_tuple(t))
            return fail(c, -OTP_ETYPE, "expected %s, got %s",
                        form == OTP_STRUCT_RECORD ? "a record" : "a tuple", kind_of(t));
        size_t ar = otp_tuple_arity(t);
        const otp_term *el = otp_tuple_elems(t);
        size_t skip;
        if (form == OTP_STRUCT_TUPLE && ar == d->nfields) {
            skip = 0;
        } else if (ar == d->nfields + 1 && (form == OTP_STRUCT_RECORD || otp_is_atom(el[0]))) {
            if (tag == OTP_NONE || el[0] != tag) {
                if (otp_is_atom(el[0]))
                    return fail(c, -OTP_ETYPE, "expected a record '%s', got one tagged '%s'",
                                d->name ? d->name : "?", otp_atom_cstr(el[0]));
                return fail(c, -OTP_ETYPE, "expected a record '%s', got a tuple starting with %s",
                            d->name, kind_of(el[0]));
            }
            skip = 1;
        } else if (form == OTP_STRUCT_TUPLE) {
            return fail(c, -OTP_ETYPE, "expected a tuple of %zu elements, got one of %zu",
                        d->nfields, ar);
        } else {
            return fail(c, -OTP_ETYPE, "expected a record '%s' of %zu elements, got a tuple of %zu",
                        d->name, d->nfields + 1, ar);
        }
        for (size_t i = 0; i < d->nfields; i++)
            if ((rc = decode_field(c, &d->fields[i], el[i + skip], out, form, depth)) < 0)
                return rc;
        return 0;
    }
    case OTP_STRUCT_MAP:
        if (!otp_is_map(t))
            return fail(c, -OTP_ETYPE, "expected a map, got %s", kind_of(t));
        for (size_t i = 0; i < d->nfields; i++) {
            const otp_field *f = &d->fields[i];
            otp_term key;
            if ((rc = field_atom(c, f, &key)) < 0)
                return rc;
            otp_term v = otp_map_get(t, key);
            if (v == OTP_NONE) {
                if (f->optional)
                    continue;
                return missing(c, f, "map");
            }
            if ((rc = decode_field(c, f, v, out, form, depth)) < 0)
                return rc;
        }
        return 0;
    case OTP_STRUCT_PROPLIST:
        if (!otp_is_list(t))
            return fail(c, -OTP_ETYPE, "expected a proplist, got %s", kind_of(t));
        if (otp_list_length(t) < 0)
            return fail(c, -OTP_ETYPE, "expected a proplist, got an improper list");
        for (size_t i = 0; i < d->nfields; i++) {
            const otp_field *f = &d->fields[i];
            otp_term key, v = OTP_NONE;
            bool found;
            if ((rc = field_atom(c, f, &key)) < 0)
                return rc;
            size_t old = push_name(c, f->name);
            rc = proplist_find(c, t, key, &v, &found);
            pop(c, old);
            if (rc < 0)
                return rc;
            if (!found) {
                if (f->optional)
                    continue;
                return missing(c, f, "proplist");
            }
            if ((rc = decode_field(c, f, v, out, form, depth)) < 0)
                return rc;
        }
        return 0;
    }
    return fail(c, -OTP_EBADARG, "unknown struct form %d", (int)form);
}

int otp_struct_from_term(const otp_struct_desc *desc, otp_struct_form form, otp_term t,
                         otp_arena *a, void *out, otp_error *err)
{
    map_ctx c = {.a = a, .err = err, .plen = 0, .path = ""};
    if (err) {
        err->code = 0;
        err->offset = 0;
        err->message[0] = '\0';
    }
    if (!desc || !a || !out || t == OTP_NONE)
        return fail(&c, -OTP_EBADARG, "invalid argument (NULL descriptor, arena or output)");
    return decode_struct(&c, desc, form, t, out, 0);
}

/* ------------------------------------------------------------ encoding */

static otp_term encode_struct(const otp_struct_desc *d, otp_struct_form form, const void *in,
                              otp_arena *a, unsigned depth);

/* An optional field with nothing in it: a TERM/ATOM of 0 or OTP_NONE, or a
 * NULL CSTR. Maps and proplists leave it out; tuples hold 'undefined', as
 * records do for unset fields. */
static bool is_absent(const otp_field *f, const void *src)
{
    if (f->type == OTP_F_TERM || f->type == OTP_F_ATOM) {
        otp_term t;
        memcpy(&t, src, sizeof(t));
        return t == 0 || t == OTP_NONE;
    }
    if (f->type == OTP_F_CSTR) {
        const char *s;
        memcpy(&s, src, sizeof(s));
        return s == NULL;
    }
    return false;
}

static otp_term encode_value(const otp_field *f, otp_field_type type, const void *src,
                             otp_struct_form form, otp_arena *a, unsigned depth)
{
    switch (type) {
    case OTP_F_BOOL:
        /* Read as a byte: a bool holding anything but 0/1 is not UB here. */
        return otp_bool(*(const uint8_t *)src != 0);
    case OTP_F_INT8:
        return otp_int(a, *(const int8_t *)src);
    case OTP_F_INT16:
        return otp_int(a, *(const int16_t *)src);
    case OTP_F_INT32:
        return otp_int(a, *(const int32_t *)src);
    case OTP_F_INT64:
        return otp_int(a, *(const int64_t *)src);
    case OTP_F_UINT8:
        return otp_uint(a, *(const uint8_t *)src);
    case OTP_F_UINT16:
        return otp_uint(a, *(const uint16_t *)src);
    case OTP_F_UINT32:
        return otp_uint(a, *(const uint32_t *)src);
    case OTP_F_UINT64:
        return otp_uint(a, *(const uint64_t *)src);
    case OTP_F_DOUBLE:
        return otp_float(a, *(const double *)src);
    case OTP_F_ATOM: {
        otp_term t = *(const otp_term *)src;
        return otp_is_atom(t) ? t : OTP_NONE;
    }
    case OTP_F_TERM: {
        otp_term t = *(const otp_term *)src;
        return t == 0 ? OTP_NONE : t;
    }
    case OTP_F_CHARS: {
        const char *s = src;
        const char *z = f->size ? memchr(s, 0, f->size) : NULL;
        return z ? otp_binary(a, s, (size_t)(z - s)) : OTP_NONE;
    }
    case OTP_F_CSTR: {
        const char *s = *(const char *const *)src;
        return s ? otp_binary(a, s, strlen(s)) : OTP_NONE;
    }
    case OTP_F_BINARY: {
        const otp_bytes *b = src;
        if (!b->data && b->len)
            return OTP_NONE;
        return otp_binary(a, b->data ? (const void *)b->data : "", b->len);
    }
    case OTP_F_STRUCT:
        return f->nested ? encode_struct(f->nested, form, src, a, depth + 1) : OTP_NONE;
    case OTP_F_LIST: {
        const otp_list_field *lf = src;
        size_t esize = slot_size(f->elem, f->size, f->nested);
        if (esize == 0 || (lf->count && !lf->items))
            return OTP_NONE;
        /* Built back to front so each cell is made once. */
        otp_term list = OTP_NIL;
        for (size_t i = lf->count; i-- > 0;) {
            otp_term e =
                encode_value(f, f->elem, (const uint8_t *)lf->items + i * esize, form, a, depth);
            if (e == OTP_NONE)
                return OTP_NONE;
            list = otp_cons(a, e, list);
            if (list == OTP_NONE)
                return OTP_NONE;
        }
        return list;
    }
    }
    return OTP_NONE;
}

static otp_term encode_struct(const otp_struct_desc *d, otp_struct_form form, const void *in,
                              otp_arena *a, unsigned depth)
{
    if (depth >= MAX_DEPTH || (d->nfields && !d->fields))
        return OTP_NONE;
    bool tuple_form = form == OTP_STRUCT_TUPLE || form == OTP_STRUCT_RECORD;
    size_t skip = form == OTP_STRUCT_RECORD ? 1 : 0;
    otp_term *keys = NULL;
    otp_term *vals = otp_arena_alloc(a, (d->nfields + skip + 1) * sizeof(otp_term));
    if (!tuple_form)
        keys = otp_arena_alloc(a, (d->nfields + 1) * sizeof(otp_term));
    if (!vals || (!tuple_form && !keys))
        return OTP_NONE;
    if (skip) {
        vals[0] = d->name ? otp_atom(d->name) : OTP_NONE;
        if (vals[0] == OTP_NONE)
            return OTP_NONE;
    }
    size_t n = 0;
    for (size_t i = 0; i < d->nfields; i++) {
        const otp_field *f = &d->fields[i];
        const uint8_t *src = (const uint8_t *)in + f->offset;
        otp_term v;
        if (f->optional && is_absent(f, src)) {
            if (!tuple_form)
                continue;
            v = OTP_ATOM_UNDEFINED;
        } else {
            v = encode_value(f, f->type, src, form, a, depth);
        }
        if (v == OTP_NONE)
            return OTP_NONE;
        if (!tuple_form) {
            keys[n] = f->name ? otp_atom(f->name) : OTP_NONE;
            if (keys[n] == OTP_NONE)
                return OTP_NONE;
        }
        vals[skip + n++] = v;
    }
    switch (form) {
    case OTP_STRUCT_TUPLE:
    case OTP_STRUCT_RECORD:
        return otp_tuple_v(a, n + skip, vals);
    case OTP_STRUCT_MAP:
        return otp_map_v(a, n, keys, vals);
    case OTP_STRUCT_PROPLIST: {
        otp_term list = OTP_NIL;
        for (size_t i = n; i-- > 0;) {
            otp_term pair = otp_tuple(a, 2, keys[i], vals[i]);
            if (pair == OTP_NONE)
                return OTP_NONE;
            list = otp_cons(a, pair, list);
            if (list == OTP_NONE)
                return OTP_NONE;
        }
        return list;
    }
    }
    return OTP_NONE;
}

otp_term otp_struct_to_term(const otp_struct_desc *desc, otp_struct_form form, const void *in,
                            otp_arena *a)
{
    if (!desc || !in || !a)
        return OTP_NONE;
    return encode_struct(desc, form, in, a, 0);
}
