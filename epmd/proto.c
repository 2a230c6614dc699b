/* proto.c — EPMD requests and answers as bytes (see proto.h). Every read is
 * bounds-checked against the length given; nothing here allocates. */
#include "proto.h"

#include <string.h>

#include "term_internal.h" /* otp__utf8_count */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

int otp__epmd_check_name(const uint8_t *name, size_t len, const char **why)
{
    if (len == 0) {
        *why = "empty node name";
        return -1;
    }
    if (len > OTP__EPMD_MAX_NAME) {
        *why = "node name longer than 255 characters";
        return -1;
    }
    if (memchr(name, 0, len)) {
        *why = "node name contains a NUL byte";
        return -1;
    }
    int64_t chars = otp__utf8_count(name, len);
    if (chars < 0) {
        *why = "node name is not valid UTF-8";
        return -1;
    }
    if (chars > 255) {
        *why = "node name longer than 255 characters";
        return -1;
    }
    return 0;
}

static int fail(const char **why, size_t *at, const char *msg, size_t off)
{
    *why = msg;
    *at = off;
    return -1;
}

int otp__epmd_parse_req(const uint8_t *b, size_t len, otp__epmd_req *r, const char **why,
                        size_t *at)
{
    memset(r, 0, sizeof *r);
    if (len == 0)
        return fail(why, at, "empty request", 0);
    if (len > OTP__EPMD_MAX_REQ)
        return fail(why, at, "request longer than the server takes", 0);
    r->code = b[0];
    switch (b[0]) {
    case OTP__EPMD_ALIVE2_REQ: {
        otp__epmd_node *n = &r->node;
        if (len < 13)
            return fail(why, at, "ALIVE2_REQ shorter than its fixed fields", len);
        n->port = get16(b + 1);
        n->type = b[3];
        n->proto = b[4];
        n->highest = get16(b + 5);
        n->lowest = get16(b + 7);
        n->name_len = get16(b + 9);
        if (len < 11u + n->name_len + 2u)
            return fail(why, at, "ALIVE2_REQ name length runs past the request", 9);
        n->name = b + 11;
        if (otp__epmd_check_name(n->name, n->name_len, why) < 0) {
            *at = 11;
            return -1;
        }
        size_t e = 11u + n->name_len;
        n->extra_len = get16(b + e);
        n->extra = b + e + 2;
        /* Bytes after Extra are ignored, as Erlang's epmd ignores them. */
        if (len < e + 2 || len < e + 2 + n->extra_len)
            return fail(why, at, "ALIVE2_REQ extra length runs past the request", e);
        return 0;
    }
    case OTP__EPMD_PORT2_REQ:
    case OTP__EPMD_STOP_REQ: {
        size_t nl = len - 1;
        if (nl > 0 && b[len - 1] == 0)
            nl--; /* a trailing NUL is tolerated, as Erlang's epmd does */
        r->name = b + 1;
        r->name_len = nl;
        if (otp__epmd_check_name(r->name, nl, why) < 0) {
            *at = 1;
            return -1;
        }
        return 0;
    }
    case OTP__EPMD_NAMES_REQ:
    case OTP__EPMD_DUMP_REQ:
    case OTP__EPMD_KILL_REQ:
        return 0; /* like Erlang's epmd, ignores any bytes after the code */
    case 'a':
    case 'p':
        return fail(why, at, "obsolete request (ALIVE_REQ/PORT_REQ) not served", 0);
    default:
        return fail(why, at, "unknown request code", 0);
    }
}

int otp__epmd_build_alive2(uint8_t *out, size_t cap, const otp__epmd_node *n)
{
    if (n->name_len == 0 || n->name_len > OTP__EPMD_MAX_NAME || n->extra_len > OTP__EPMD_MAX_EXTRA)
        return -1;
    size_t body = 13u + n->name_len + n->extra_len;
    if (cap < body + 2)
        return -1;
    uint8_t *p = put16(out, (uint16_t)body);
    *p++ = OTP__EPMD_ALIVE2_REQ;
    p = put16(p, n->port);
    *p++ = n->type;
    *p++ = n->proto;
    p = put16(p, n->highest);
    p = put16(p, n->lowest);
    p = put16(p, n->name_len);
    memcpy(p, n->name, n->name_len);
    p = put16(p + n->name_len, n->extra_len);
    if (n->extra_len)
        memcpy(p, n->extra, n->extra_len);
    return (int)(body + 2);
}

int otp__epmd_build_simple(uint8_t *out, size_t cap, uint8_t code, const char *name,
                           size_t name_len)
{
    if (name_len > OTP__EPMD_MAX_NAME || cap < 3 + name_len)
        return -1;
    put16(out, (uint16_t)(1 + name_len));
    out[2] = code;
    if (name_len)
        memcpy(out + 3, name, name_len);
    return (int)(3 + name_len);
}

int otp__epmd_build_port2(uint8_t *out, size_t cap, const char *name, size_t name_len)
{
    if (name_len == 0)
        return -1;
    return otp__epmd_build_simple(out, cap, OTP__EPMD_PORT2_REQ, name, name_len);
}

int otp__epmd_parse_alive_resp(const uint8_t *b, size_t len, int *result, uint32_t *creation,
                               const char **why)
{
    if (len < 1)
        return 0;
    if (b[0] == OTP__EPMD_ALIVE2_X_RESP) {
        if (len < 6)
            return 0;
        *result = b[1];
        *creation = get32(b + 2);
        return 6;
    }
    if (b[0] == OTP__EPMD_ALIVE2_RESP) {
        if (len < 4)
            return 0;
        *result = b[1];
        *creation = get16(b + 2);
        return 4;
    }
    *why = "answer to ALIVE2_REQ is neither ALIVE2_X_RESP nor ALIVE2_RESP";
    return -1;
}

int otp__epmd_parse_port2_resp(const uint8_t *b, size_t len, bool *found, otp__epmd_node *n,
                               const char **why)
{
    if (len < 1)
        return 0;
    if (b[0] != OTP__EPMD_PORT2_RESP) {
        *why = "answer to PORT_PLEASE2_REQ is not PORT2_RESP";
        return -1;
    }
    if (len < 2)
        return 0;
    memset(n, 0, sizeof *n);
    if (b[1] != 0) {
        *found = false;
        return 2;
    }
    *found = true;
    if (len < 12)
        return 0;
    n->port = get16(b + 2);
    n->type = b[4];
    n->proto = b[5];
    n->highest = get16(b + 6);
    n->lowest = get16(b + 8);
    n->name_len = get16(b + 10);
    if (n->name_len == 0 || n->name_len > OTP__EPMD_MAX_NAME) {
        *why = "PORT2_RESP name length out of range";
        return -1;
    }
    if (len < 12u + n->name_len + 2u)
        return 0;
    n->name = b + 12;
    n->extra_len = get16(b + 12 + n->name_len);
    if (n->extra_len > OTP__EPMD_MAX_REQ) {
        *why = "PORT2_RESP extra length out of range";
        return -1;
    }
    size_t total = 14u + n->name_len + n->extra_len;
    if (len < total)
        return 0;
    n->extra = b + 14 + n->name_len;
    return (int)total;
}
