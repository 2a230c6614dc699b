/* proto.h — the EPMD wire protocol: parsing requests (the server's
 * untrusted input), building them, and parsing the server's answers (the
 * client's untrusted input). Pure functions over bytes, no I/O, so the
 * fuzz target reaches all of it. Facts: dist-protocol.md §1. Internal API.
 */
#ifndef OTP_EPMD_PROTO_H
#define OTP_EPMD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OTP__EPMD_PORT 4369

enum {
    OTP__EPMD_ALIVE2_REQ = 120,    /* 'x' */
    OTP__EPMD_ALIVE2_X_RESP = 118, /* 'v': creation as u32 (highest >= 6) */
    OTP__EPMD_ALIVE2_RESP = 121,   /* 'y': creation as u16 */
    OTP__EPMD_PORT2_REQ = 122,     /* 'z' */
    OTP__EPMD_PORT2_RESP = 119,    /* 'w' */
    OTP__EPMD_NAMES_REQ = 110,     /* 'n' */
    OTP__EPMD_DUMP_REQ = 100,      /* 'd' */
    OTP__EPMD_KILL_REQ = 107,      /* 'k' */
    OTP__EPMD_STOP_REQ = 115,      /* 's' */
};

/* The longest request body the server takes: a 255-character name is at most
 * 1020 bytes of UTF-8, plus the fixed fields and an Extra of about the same
 * size. Erlang's epmd reads into a buffer of this order too. */
#define OTP__EPMD_MAX_REQ   2048
#define OTP__EPMD_MAX_NAME  1020 /* bytes: 255 characters of at most 4 bytes */
#define OTP__EPMD_MAX_EXTRA 1000

/* A node as EPMD knows it: what ALIVE2 registers and PORT2_RESP returns. */
typedef struct otp__epmd_node {
    uint16_t port;
    uint8_t type;  /* 77 'M' normal, 72 'H' hidden */
    uint8_t proto; /* 0: TCP/IP */
    uint16_t highest, lowest;
    uint16_t name_len, extra_len;
    const uint8_t *name; /* not NUL-terminated; points into the parsed bytes */
    const uint8_t *extra;
} otp__epmd_node;

/* One parsed request. Pointers point into the body that was parsed. */
typedef struct otp__epmd_req {
    uint8_t code;        /* OTP__EPMD_*_REQ */
    otp__epmd_node node; /* ALIVE2 */
    const uint8_t *name; /* PORT_PLEASE2, STOP: the name (trailing NUL dropped) */
    size_t name_len;
} otp__epmd_req;

/* Parses one request body (the bytes after the u16 length). Returns 0, or
 * -1 with *why naming what is wrong and *at its offset in the body. Names
 * are checked as EPMD does: 1..255 characters of valid UTF-8, no NUL. */
int otp__epmd_parse_req(const uint8_t *body, size_t len, otp__epmd_req *r, const char **why,
                        size_t *at);

/* Checks an alive name: 0 or -1 with *why. */
int otp__epmd_check_name(const uint8_t *name, size_t len, const char **why);

/* Request builders: write the whole request, u16 length included, into
 * out[cap]. Return its size, or -1 if it does not fit or a field is out of
 * range (name_len 0 or over OTP__EPMD_MAX_NAME, extra over the limit). */
int otp__epmd_build_alive2(uint8_t *out, size_t cap, const otp__epmd_node *n);
int otp__epmd_build_port2(uint8_t *out, size_t cap, const char *name, size_t name_len);
/* NAMES, DUMP, KILL (no body beyond the code) and STOP (with a name). */
int otp__epmd_build_simple(uint8_t *out, size_t cap, uint8_t code, const char *name,
                           size_t name_len);

/* Client side: parse the server's answers, which arrive as a stream.
 * Each returns the bytes the answer takes when buf holds all of it, 0 when
 * more bytes are needed, or -1 with *why when it cannot be a valid answer. */
int otp__epmd_parse_alive_resp(const uint8_t *buf, size_t len, int *result, uint32_t *creation,
                               const char **why);
/* *found false (result != 0) is a valid, 2-byte answer. */
int otp__epmd_parse_port2_resp(const uint8_t *buf, size_t len, bool *found, otp__epmd_node *n,
                               const char **why);

#endif
