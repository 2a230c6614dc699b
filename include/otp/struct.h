/* struct.h — mapping terms to C structs and back, described by field tables
 * (the C counterpart of Ergo's TermIntoStruct / TermMapIntoStruct /
 * TermProplistIntoStruct).
 *
 *   typedef struct { int64_t id; char name[32]; double score; } user;
 *   static const otp_field user_fields[] = {
 *       OTP_FIELD(user, id, OTP_F_INT64),
 *       OTP_FIELD_CHARS(user, name),
 *       OTP_FIELD(user, score, OTP_F_DOUBLE),
 *   };
 *   static const otp_struct_desc user_desc = OTP_STRUCT_DESC(user, user_fields);
 *
 *   user u;
 *   otp_error e;
 *   if (otp_struct_from_term(&user_desc, OTP_STRUCT_MAP, t, a, &u, &e) < 0)
 *       puts(e.message);   // e.g. "field 'score': expected a number, got an atom"
 */
#ifndef OTP_STRUCT_H
#define OTP_STRUCT_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "term.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum otp_field_type {
    OTP_F_BOOL, /* bool            <-> true | false */
    OTP_F_INT8, /* int8_t  ... int64_t <-> integer (range checked) */
    OTP_F_INT16,
    OTP_F_INT32,
    OTP_F_INT64,
    OTP_F_UINT8, /* uint8_t ... uint64_t */
    OTP_F_UINT16,
    OTP_F_UINT32,
    OTP_F_UINT64,
    OTP_F_DOUBLE, /* double <-> float (integers accepted when decoding) */
    OTP_F_ATOM,   /* otp_term holding an atom */
    OTP_F_CHARS,  /* char[size], NUL-terminated UTF-8 <-> binary; decoding also
                     accepts a string (list) or an atom. Too long: error. */
    OTP_F_CSTR,   /* const char * in the arena <-> binary (same inputs as CHARS) */
    OTP_F_BINARY, /* otp_bytes {data, len} pointing into the term <-> binary */
    OTP_F_TERM,   /* otp_term, any term, as is */
    OTP_F_STRUCT, /* a nested struct of type `nested`, in the same form */
    OTP_F_LIST,   /* otp_list_field {items, count}: a list whose elements are
                     `elem` (scalar type) or, for elem OTP_F_STRUCT, `nested` */
} otp_field_type;

typedef struct otp_bytes {
    const uint8_t *data;
    size_t len;
} otp_bytes;

typedef struct otp_list_field {
    void *items; /* array allocated in the arena when decoding */
    size_t count;
} otp_list_field;

struct otp_struct_desc;

typedef struct otp_field {
    const char *name; /* key (an atom) in maps and proplists */
    size_t offset;    /* offsetof(struct, member) */
    otp_field_type type;
    size_t size;                          /* OTP_F_CHARS: sizeof the array */
    otp_field_type elem;                  /* OTP_F_LIST: element type */
    const struct otp_struct_desc *nested; /* OTP_F_STRUCT, and lists of structs */
    bool optional;                        /* map/proplist: missing is not an error
                                             (the field is left as it was) */
} otp_field;

typedef struct otp_struct_desc {
    const char *name; /* record tag for the tuple form, and for messages */
    size_t size;      /* sizeof the struct */
    size_t nfields;
    const otp_field *fields;
} otp_struct_desc;

#define OTP_FIELD(S, m, t)                                                                         \
    {                                                                                              \
#m, offsetof(S, m), (t), 0, OTP_F_TERM, NULL, false                                        \
    }
#define OTP_FIELD_OPT(S, m, t)                                                                     \
    {                                                                                              \
#m, offsetof(S, m), (t), 0, OTP_F_TERM, NULL, true                                         \
    }
#define OTP_FIELD_CHARS(S, m)                                                                      \
    {                                                                                              \
#m, offsetof(S, m), OTP_F_CHARS, sizeof(((S *)0)->m), OTP_F_TERM, NULL, false              \
    }
#define OTP_FIELD_STRUCT(S, m, desc)                                                               \
    {                                                                                              \
#m, offsetof(S, m), OTP_F_STRUCT, 0, OTP_F_TERM, (desc), false                             \
    }
#define OTP_FIELD_LIST(S, m, et, desc)                                                             \
    {                                                                                              \
#m, offsetof(S, m), OTP_F_LIST, 0, (et), (desc), false                                     \
    }
#define OTP_STRUCT_DESC(S, fields)                                                                 \
    {                                                                                              \
#S, sizeof(S), sizeof(fields) / sizeof((fields)[0]), (fields)                              \
    }

typedef enum otp_struct_form {
    /* {Field1, Field2, ...} in field order. A tuple with one more element
     * whose first is the atom desc->name (a record) is accepted too. */
    OTP_STRUCT_TUPLE,
    /* {name, F1, ...}: a record, tag first. */
    OTP_STRUCT_RECORD,
    /* #{field1 => V1, ...} with atom keys; extra keys are ignored. */
    OTP_STRUCT_MAP,
    /* [{field1, V1}, ...] (and bare atoms `field` meaning true, as
     * proplists do); extra entries ignored, first occurrence wins. */
    OTP_STRUCT_PROPLIST,
} otp_struct_form;

/* Fills *out (of desc->size bytes) from t. Strings, lists and binaries of the
 * result live in arena a (or point into t). Returns 0, or a negative code
 * with *err naming the field path and the problem, e.g.
 * "field 'address.zip': expected an integer, got a binary". */
int otp_struct_from_term(const otp_struct_desc *desc, otp_struct_form form, otp_term t,
                         otp_arena *a, void *out, otp_error *err);
/* Builds the term for *in in arena a. OTP_NONE on failure (out of memory, or
 * a value that cannot be represented, e.g. a CHARS field without NUL). */
otp_term otp_struct_to_term(const otp_struct_desc *desc, otp_struct_form form, const void *in,
                            otp_arena *a);

#ifdef __cplusplus
}
#endif
#endif
