/* test_dist_frame.c — reading distribution frames (dist-protocol.md §3):
 * pass-through, the normal header with its atom cache (new entries, cached
 * ones, long atoms, an empty slot), and fragmented messages (in order, out
 * of order, unknown, started twice, bounded). Live frames from real nodes:
 * test/interop/test_dist_erl.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dist.h"
#include "otp.h"

typedef struct bytes {
    uint8_t b[512];
    size_t n;
} bytes;

static void put(bytes *x, const void *p, size_t n)
{
    memcpy(x->b + x->n, p, n);
    x->n += n;
}

static void put8(bytes *x, unsigned v)
{
    x->b[x->n++] = (uint8_t)v;
}

static void put32(bytes *x, uint32_t v)
{
    for (int i = 3; i >= 0; i--)
        put8(x, (v >> (8 * i)) & 0xff);
}

static void put64(bytes *x, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        put8(x, (unsigned)(v >> (8 * i)) & 0xff);
}

/* {2, '' (ref 0), Pid on node ref 1} and the payload ref 0, header mode. */
static void send_body(bytes *x, unsigned payload_ref)
{
    static const uint8_t ctl[] = {104, 3, 97, 2, 82, 0, 88, 82, 1};
    put(x, ctl, sizeof ctl);
    put32(x, 85);
    put32(x, 0);
    put32(x, 7);
    put8(x, 82);
    put8(x, payload_ref);
}

static void test_header_and_atom_cache(void **state)
{
    otp__dist_rx rx;
    otp__dist_rx_init(&rx);
    otp_arena *a = otp_arena_new();
    int64_t op;
    otp_term ctl, msg;
    char why[200];

    /* two new entries: slot 5 of segment 0 = hello, slot 9 of segment 1 = a@b */
    bytes f = {.n = 0};
    static const uint8_t hdr[] = {131, 68, 2, 0x98, 0x00};
    put(&f, hdr, sizeof hdr);
    put8(&f, 5), put8(&f, 5), put(&f, "hello", 5);
    put8(&f, 9), put8(&f, 3), put(&f, "a@b", 3);
    send_body(&f, 0);
    assert_int_equal(otp__dist_decode_frame(&rx, a, f.b, f.n, &op, &ctl, &msg, why, sizeof why), 0);
    assert_int_equal(op, 2);
    assert_int_equal(otp_tuple_get(ctl, 1), otp_atom("hello"));
    otp_term node;
    uint32_t id, serial, creation;
    assert_int_equal(otp_pid_parts(otp_tuple_get(ctl, 2), &node, &id, &serial, &creation), 0);
    assert_int_equal(node, otp_atom("a@b"));
    assert_int_equal(id, 85);
    assert_int_equal(msg, otp_atom("hello"));

    /* the same slots again, cached: nibbles without NewEntry */
    bytes g = {.n = 0};
    static const uint8_t hdr2[] = {131, 68, 2, 0x10, 0x00, 5, 9};
    put(&g, hdr2, sizeof hdr2);
    send_body(&g, 1);
    assert_int_equal(otp__dist_decode_frame(&rx, a, g.b, g.n, &op, &ctl, &msg, why, sizeof why), 0);
    assert_int_equal(msg, otp_atom("a@b"));

    /* long atoms: the extra nibble's bit 0 (N = 1: high nibble of byte 0) */
    bytes l = {.n = 0};
    static const uint8_t hdr3[] = {131, 68, 1, 0x18, 7, 0, 4};
    put(&l, hdr3, sizeof hdr3);
    put(&l, "long", 4);
    static const uint8_t ctl3[] = {104, 4, 97, 6, 82, 0, 82, 0, 82, 0, 82, 0};
    put(&l, ctl3, sizeof ctl3);
    assert_int_equal(otp__dist_decode_frame(&rx, a, l.b, l.n, &op, &ctl, &msg, why, sizeof why), 0);
    assert_int_equal(op, 6);
    assert_int_equal(msg, otp_atom("long"));

    /* a cached reference to a slot nobody filled */
    bytes e = {.n = 0};
    static const uint8_t hdr4[] = {131, 68, 1, 0x03, 200};
    put(&e, hdr4, sizeof hdr4);
    assert_int_equal(otp__dist_decode_frame(&rx, a, e.b, e.n, &op, &ctl, &msg, why, sizeof why),
                     -1);
    assert_string_equal(why, "atom reference 0 names empty cache slot 968");

    /* pass-through: {6, From, '', name} + hi, and an unknown control message */
    static const uint8_t pt[] = {112, 131, 104, 4,   97,  6,   88,  100, 0,   3, 'a', '@', 'b', 0,
                                 0,   0,   85,  0,   0,   0,   0,   0,   0,   0, 7,   100, 0,   0,
                                 100, 0,   4,   'n', 'a', 'm', 'e', 131, 100, 0, 2,   'h', 'i'};
    assert_int_equal(
        otp__dist_decode_frame(&rx, a, pt, sizeof pt, &op, &ctl, &msg, why, sizeof why), 0);
    assert_int_equal(op, 6);
    assert_int_equal(otp_tuple_get(ctl, 3), otp_atom("name"));
    assert_int_equal(msg, otp_atom("hi"));
    static const uint8_t unknown[] = {112, 131, 104, 2, 97, 99, 97, 1};
    assert_int_equal(
        otp__dist_decode_frame(&rx, a, unknown, sizeof unknown, &op, &ctl, &msg, why, sizeof why),
        -1);
    assert_string_equal(why, "unknown control message");
    otp_arena_reset(a);
    assert_int_equal(otp__dist_decode_frame(&rx, a, pt, 0, &op, &ctl, &msg, why, sizeof why), 1);

    otp__dist_rx_free(&rx);
    otp_arena_free(a);
}

static void fragment_start(bytes *x, uint64_t seq, uint64_t frag)
{
    put8(x, 131), put8(x, 69);
    put64(x, seq);
    put64(x, frag);
    put8(x, 0); /* no atom references */
    static const uint8_t ctl[] = {104, 3, 97, 2, 100, 0, 0, 88, 100, 0, 3, 'a', '@', 'b'};
    put(x, ctl, sizeof ctl);
    put32(x, 85);
    put32(x, 0);
    put32(x, 7);
    static const uint8_t bin_head[] = {109, 0, 0, 0, 6, 1, 2};
    put(x, bin_head, sizeof bin_head);
}

static void fragment_more(bytes *x, uint64_t seq, uint64_t frag, const char *data)
{
    put8(x, 131), put8(x, 70);
    put64(x, seq);
    put64(x, frag);
    put(x, data, strlen(data));
}

static void test_fragments(void **state)
{
    otp__dist_rx rx;
    otp__dist_rx_init(&rx);
    otp_arena *a = otp_arena_new();
    int64_t op;
    otp_term ctl, msg;
    char why[200];
    bytes s = {.n = 0}, m1 = {.n = 0}, m2 = {.n = 0};
    fragment_start(&s, 42, 3);
    fragment_more(&m1, 42, 2, "\x03\x04");
    fragment_more(&m2, 42, 1, "\x05\x06");
    assert_int_equal(otp__dist_decode_frame(&rx, a, s.b, s.n, &op, &ctl, &msg, why, sizeof why), 1);
    assert_int_equal(otp__dist_decode_frame(&rx, a, m1.b, m1.n, &op, &ctl, &msg, why, sizeof why),
                     1);
    assert_int_equal(otp__dist_decode_frame(&rx, a, m2.b, m2.n, &op, &ctl, &msg, why, sizeof why),
                     0);
    assert_int_equal(op, 2);
    size_t len;
    const uint8_t *d = otp_binary_data(msg, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(d, "\x01\x02\x03\x04\x05\x06", 6);
    assert_int_equal(rx.nseqs, 0);
    assert_int_equal(rx.frag_bytes, 0);

    /* out of order, unknown sequence, started twice */
    assert_int_equal(otp__dist_decode_frame(&rx, a, s.b, s.n, &op, &ctl, &msg, why, sizeof why), 1);
    assert_int_equal(otp__dist_decode_frame(&rx, a, m2.b, m2.n, &op, &ctl, &msg, why, sizeof why),
                     -1);
    assert_string_equal(why, "fragment 1 of message 42 out of order (expected 2)");
    bytes u = {.n = 0};
    fragment_more(&u, 7, 1, "x");
    assert_int_equal(otp__dist_decode_frame(&rx, a, u.b, u.n, &op, &ctl, &msg, why, sizeof why),
                     -1);
    assert_string_equal(why, "fragment of unknown message 7");
    assert_int_equal(otp__dist_decode_frame(&rx, a, s.b, s.n, &op, &ctl, &msg, why, sizeof why),
                     -1);
    assert_string_equal(why, "fragmented message 42 started twice");
    /* a start with FragId 1 is a whole message */
    bytes w = {.n = 0};
    fragment_start(&w, 9, 1);
    w.n -= 2, put(&w, "\x01\x02\x03\x04\x05\x06", 6);
    assert_int_equal(otp__dist_decode_frame(&rx, a, w.b, w.n, &op, &ctl, &msg, why, sizeof why), 0);
    /* empty fragments (found by fuzzing): an empty message is an error */
    bytes es = {.n = 0}, ec = {.n = 0};
    put8(&es, 131), put8(&es, 69), put64(&es, 11), put64(&es, 2), put8(&es, 0);
    put8(&ec, 131), put8(&ec, 70), put64(&ec, 11), put64(&ec, 1);
    assert_int_equal(otp__dist_decode_frame(&rx, a, es.b, es.n, &op, &ctl, &msg, why, sizeof why),
                     1);
    assert_int_equal(otp__dist_decode_frame(&rx, a, ec.b, ec.n, &op, &ctl, &msg, why, sizeof why),
                     -1);
    assert_string_equal(why, "fragmented message 11 is empty");
    /* abandoned sequences are freed with the connection's state */
    assert_int_equal(rx.nseqs, 1);
    otp__dist_rx_free(&rx);
    otp_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_and_atom_cache),
        cmocka_unit_test(test_fragments),
    };
    return cmocka_run_group_tests_name("distribution frames", tests, NULL, NULL);
}
