/* build_terms.c — a short tour of terms in C, meant to be copied from:
 * building terms (constructors, OTP_TUPLE/OTP_LIST/OTP_MAP, otp_format,
 * otp_parse_str), encoding to the External Term Format and decoding back,
 * matching with otp_match, and mapping terms to C structs and back.
 * Prints each step; exits non-zero if any step does not do what it says.
 */
#include <stdio.h>
#include <string.h>

#include "otp.h"

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "build_terms: check failed at line %d: %s\n", __LINE__, #cond);        \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void show(otp_arena *a, const char *what, otp_term t)
{
    const char *text = t == OTP_NONE ? "(none)" : otp_sprint(a, t);
    printf("  %-28s %s\n", what, text ? text : "(print failed)");
}

/* 1. Constructors. Every one takes the arena; an OTP_NONE anywhere inside
 * (out of memory) makes the whole term OTP_NONE, so one check at the end
 * covers a nested expression. */
static otp_term build_by_hand(otp_arena *a)
{
    printf("1. Building terms with constructors\n");
    otp_term reply = OTP_TUPLE(
        a, OTP_ATOM_OK, OTP_LIST(a, otp_int(a, 1), otp_int(a, 2), otp_int(a, 3)),
        otp_binary_str(a, "x"), OTP_MAP(a, otp_atom("key"), otp_string(a, "value")),
        otp_float(a, 3.14), otp_uint(a, UINT64_MAX)); /* past 2^62: a bignum, transparently */
    CHECK(reply != OTP_NONE);
    show(a, "OTP_TUPLE(...):", reply);
    show(a, "element 4, a map:", otp_tuple_get(reply, 3));
    return reply;
}

/* 2. The same kind of term from text, with holes for C values. */
static void build_from_text(otp_arena *a, otp_term reply)
{
    printf("2. Building terms from text\n");
    otp_term f = otp_format(a, "{~a, [~i, ~i, ~i], ~b, #{key => ~s}, ~f, ~w}", "ok", 1, 2, 3, "x",
                            "value", 3.14, otp_tuple_get(reply, 5));
    CHECK(f != OTP_NONE);
    show(a, "otp_format(...):", f);
    CHECK(otp_exact_eq(f, reply)); /* =:= the hand-built one */

    otp_term p = otp_parse_str(a, "[{name, <<\"Ada\">>}, {langs, [c, erlang]}, 16#FF].");
    CHECK(p != OTP_NONE);
    show(a, "otp_parse_str(...):", p);
}

/* 3. term_to_binary and binary_to_term. */
static void encode_decode(otp_arena *a, otp_term reply)
{
    printf("3. Encoding and decoding\n");
    otp_buf b = {0}; /* grows with malloc; free with otp_buf_free */
    CHECK(otp_encode_buf(&b, reply, 0) == 0);
    printf("  %-28s %zu bytes:", "otp_encode_buf:", b.len);
    for (size_t i = 0; i < b.len && i < 16; i++)
        printf(" %02x", b.data[i]);
    printf("%s\n", b.len > 16 ? " ..." : "");

    otp_term back;
    otp_error err;
    int rc = otp_decode_exact(a, b.data, b.len, NULL, &back, &err);
    CHECK(rc == 0);
    if (rc == 0) {
        show(a, "otp_decode_exact:", back);
        CHECK(otp_exact_eq(back, reply));
    }
    /* Malformed input never crashes: it reports where and why. */
    rc = otp_decode_exact(a, b.data, b.len - 1, NULL, &back, &err);
    CHECK(rc < 0);
    printf("  %-28s %s: %s\n", "truncated input:", otp_strerror(rc), err.message);
    otp_buf_free(&b);
}

/* 4. Pattern matching: variables bind, in order of first appearance. */
static void matching(otp_arena *a, otp_term reply)
{
    printf("4. Matching\n");
    otp_term v[3];
    int rc = otp_match("{ok, [First | Rest], Bin, _, _, _}", reply, v, 3);
    CHECK(rc == 0);
    if (rc == 0) {
        show(a, "First =", v[0]);
        show(a, "Rest =", v[1]);
        show(a, "Bin =", v[2]);
    }
    rc = otp_match("{error, Reason}", reply, v, 3);
    CHECK(rc == -OTP_ENOMATCH);
    printf("  %-28s %s\n", "{error, Reason}:", otp_strerror(rc));
}

/* 5. Struct mapping: a field table describes the C struct once; the same
 * table reads and writes tuples, records, maps and proplists. */
typedef struct point {
    int32_t x, y;
} point;

typedef struct shape {
    char name[16];
    otp_term kind; /* an atom */
    double scale;
    bool visible;
    otp_list_field points; /* of point */
} shape;

static const otp_field point_fields[] = {
    OTP_FIELD(point, x, OTP_F_INT32),
    OTP_FIELD(point, y, OTP_F_INT32),
};
static const otp_struct_desc point_desc = OTP_STRUCT_DESC(point, point_fields);

static const otp_field shape_fields[] = {
    OTP_FIELD_CHARS(shape, name),
    OTP_FIELD(shape, kind, OTP_F_ATOM),
    OTP_FIELD(shape, scale, OTP_F_DOUBLE),
    OTP_FIELD_OPT(shape, visible, OTP_F_BOOL),
    OTP_FIELD_LIST(shape, points, OTP_F_STRUCT, &point_desc),
};
static const otp_struct_desc shape_desc = OTP_STRUCT_DESC(shape, shape_fields);

static void struct_mapping(otp_arena *a)
{
    printf("5. Struct mapping\n");
    point pts[] = {{0, 0}, {4, 0}, {4, 3}};
    shape s = {"triangle", otp_atom("polygon"), 1.5, true, {pts, 3}};
    otp_term m = otp_struct_to_term(&shape_desc, OTP_STRUCT_MAP, &s, a);
    CHECK(m != OTP_NONE);
    show(a, "as a map:", m);
    show(a, "as a record:", otp_struct_to_term(&shape_desc, OTP_STRUCT_RECORD, &s, a));

    /* Back from what an Erlang peer might send: a string for the name, an
     * integer where a float is expected, `visible` left out (optional). */
    otp_term in = otp_parse_str(a, "#{name => \"square\", kind => polygon, scale => 2,"
                                   " points => [#{x => 0, y => 0}, #{x => 1, y => 1}]}");
    shape back = {.visible = true};
    otp_error err;
    int rc = otp_struct_from_term(&shape_desc, OTP_STRUCT_MAP, in, a, &back, &err);
    CHECK(rc == 0);
    if (rc == 0) {
        const point *p = back.points.items; /* in the arena */
        printf("  %-28s name=%s kind=%s scale=%g visible=%d points=%zu last=(%d,%d)\n",
               "otp_struct_from_term:", back.name, otp_atom_cstr(back.kind), back.scale,
               back.visible, back.points.count, p[back.points.count - 1].x,
               p[back.points.count - 1].y);
    }
    /* A mistake deep inside names its path. */
    in = otp_parse_str(a, "#{name => <<\"bad\">>, kind => polygon, scale => 1.0,"
                          " points => [#{x => 0, y => 0}, #{x => <<\"1\">>, y => 1}]}");
    rc = otp_struct_from_term(&shape_desc, OTP_STRUCT_MAP, in, a, &back, &err);
    CHECK(rc == -OTP_ETYPE);
    printf("  %-28s %s\n", "a bad field:", err.message);
}

int main(void)
{
    /* One arena holds every term below; freeing it frees them all. */
    otp_arena *a = otp_arena_new();
    if (!a) {
        fprintf(stderr, "build_terms: out of memory\n");
        return 1;
    }
    otp_term reply = build_by_hand(a);
    if (reply != OTP_NONE) {
        build_from_text(a, reply);
        encode_decode(a, reply);
        matching(a, reply);
    }
    struct_mapping(a);
    otp_arena_free(a);
    if (failures)
        fprintf(stderr, "build_terms: %d check%s failed\n", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}
