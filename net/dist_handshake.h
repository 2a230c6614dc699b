/* dist_handshake.h — the distribution handshake (dist-protocol.md §2) as a
 * byte-in, byte-out state machine, for both roles: no sockets, no clock,
 * so the connection code drives it over any I/O backend (and TLS), and
 * the fuzz target reaches all of it. Internal API.
 *
 * Drive it like this: after otp__hs_start, send whatever otp__hs_out has,
 * feed every received byte to otp__hs_feed, send otp__hs_out again, until
 * feed returns OTP__HS_UP (the connection is up; bytes after the handshake
 * are left unconsumed) or an error (close the connection; hs->why says
 * why, and otp__hs_out may still hold a last status to send first, such as
 * "not_allowed"). The caller times the whole exchange (net_setuptime).
 */
#ifndef OTP_NET_DIST_HANDSHAKE_H
#define OTP_NET_DIST_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Capability flags (§2.5). */
#define OTP__DF_PUBLISHED           UINT64_C(0x1)
#define OTP__DF_EXTENDED_REFERENCES UINT64_C(0x4)
#define OTP__DF_DIST_MONITOR        UINT64_C(0x8)
#define OTP__DF_FUN_TAGS            UINT64_C(0x10)
#define OTP__DF_DIST_MONITOR_NAME   UINT64_C(0x20)
#define OTP__DF_NEW_FUN_TAGS        UINT64_C(0x80)
#define OTP__DF_EXTENDED_PIDS_PORTS UINT64_C(0x100)
#define OTP__DF_EXPORT_PTR_TAG      UINT64_C(0x200)
#define OTP__DF_BIT_BINARIES        UINT64_C(0x400)
#define OTP__DF_NEW_FLOATS          UINT64_C(0x800)
#define OTP__DF_UNICODE_IO          UINT64_C(0x1000)
#define OTP__DF_DIST_HDR_ATOM_CACHE UINT64_C(0x2000)
#define OTP__DF_SMALL_ATOM_TAGS     UINT64_C(0x4000)
#define OTP__DF_UTF8_ATOMS          UINT64_C(0x10000)
#define OTP__DF_MAP_TAG             UINT64_C(0x20000)
#define OTP__DF_BIG_CREATION        UINT64_C(0x40000)
#define OTP__DF_SEND_SENDER         UINT64_C(0x80000)
#define OTP__DF_BIG_SEQTRACE_LABELS UINT64_C(0x100000)
#define OTP__DF_EXIT_PAYLOAD        UINT64_C(0x400000)
#define OTP__DF_FRAGMENTS           UINT64_C(0x800000)
#define OTP__DF_HANDSHAKE_23        UINT64_C(0x1000000)
#define OTP__DF_UNLINK_ID           UINT64_C(0x2000000)
#define OTP__DF_MANDATORY_25_DIGEST UINT64_C(0x4000000)
#define OTP__DF_SPAWN               (UINT64_C(1) << 32)
#define OTP__DF_NAME_ME             (UINT64_C(1) << 33)
#define OTP__DF_V4_NC               (UINT64_C(1) << 34)
#define OTP__DF_ALIAS               (UINT64_C(1) << 35)

/* The eleven flags OTP 25 requires of a peer; the digest bit stands for them. */
#define OTP__DF_MANDATORY_25                                                                       \
    (OTP__DF_EXTENDED_REFERENCES | OTP__DF_FUN_TAGS | OTP__DF_EXTENDED_PIDS_PORTS |                \
     OTP__DF_NEW_FUN_TAGS | OTP__DF_EXPORT_PTR_TAG | OTP__DF_BIT_BINARIES | OTP__DF_NEW_FLOATS |   \
     OTP__DF_UTF8_ATOMS | OTP__DF_MAP_TAG | OTP__DF_BIG_CREATION | OTP__DF_HANDSHAKE_23)

/* What OTP 26–28 require, and so what we require of peers by default. */
#define OTP__DF_REQUIRED (OTP__DF_MANDATORY_25 | OTP__DF_V4_NC | OTP__DF_UNLINK_ID)

enum { OTP__HS_AGAIN = 0, OTP__HS_UP = 1 };

/* Errors otp__hs_feed returns (negated). */
enum {
    OTP__HS_EPROTO = 1, /* malformed or unexpected message */
    OTP__HS_EREFUSED,   /* the peer refused us (a status other than ok) */
    OTP__HS_ECOOKIE,    /* the peer's digest is wrong: a different cookie */
    OTP__HS_EFLAGS,     /* the peer lacks flags we require */
    OTP__HS_ENAME,      /* the initiator called a node that is not the acceptor */
    OTP__HS_EDENIED,    /* we refused the peer (our status callback) */
};

typedef struct otp__hs_config {
    bool initiator;
    const char *name;  /* our full node name (copied) */
    uint32_t creation; /* ours, never 0 */
    uint64_t flags;    /* our capability flags; the digest bit is added */
    const char *cookie;
    size_t cookie_len;
    const char *peer;        /* initiator: the node we call ("name@host"), checked */
    uint64_t required_flags; /* 0: OTP__DF_REQUIRED */
    /* Acceptor: the status for the peer that sent its name: "ok",
     * "ok_simultaneous", "nok", "alive", "not_allowed". NULL: "ok". */
    const char *(*status)(void *arg, const char *peer, uint64_t peer_flags);
    /* Initiator: the peer says "alive" (it believes we are connected):
     * true continues (the old connection is dead), false gives up. NULL:
     * true. */
    bool (*alive_continue)(void *arg);
    void *arg;
    uint32_t challenge; /* ours; 0: random */
} otp__hs_config;

#define OTP__HS_MAX_MSG  4096 /* the longest handshake message we take */
#define OTP__HS_MAX_NAME 1023

typedef struct otp__hs {
    otp__hs_config cfg;
    char name[OTP__HS_MAX_NAME + 1];
    int state;
    bool legacy; /* the peer sent the old 'n' name: it sends 'c' too */
    uint32_t our_challenge, peer_challenge;
    /* ---- what the handshake learnt */
    char peer_name[OTP__HS_MAX_NAME + 1];
    uint32_t peer_creation;
    uint64_t peer_flags; /* as sent, with the digest expanded */
    uint64_t flags;      /* effective: ours AND theirs */
    bool named;          /* NAME_ME: name/creation below were given to us */
    const char *why;     /* after an error: what went wrong, for the log */
    char why_buf[256];
    /* ---- buffers */
    uint8_t out[2 + 64 + OTP__HS_MAX_NAME];
    size_t out_len;
    uint8_t in[2 + OTP__HS_MAX_MSG];
    size_t in_len;
} otp__hs;

/* Sets hs up; the initiator's send_name is then in otp__hs_out. Returns 0
 * or -OTP__HS_EPROTO (bad config: why says what). */
int otp__hs_start(otp__hs *hs, const otp__hs_config *cfg);

/* Feeds received bytes. *used gets how many were consumed (all of them
 * unless the handshake completed within them). Returns OTP__HS_AGAIN,
 * OTP__HS_UP, or -OTP__HS_E* with hs->why. */
int otp__hs_feed(otp__hs *hs, const uint8_t *data, size_t len, size_t *used);

/* The bytes to send now; the caller sends them all and calls
 * otp__hs_sent. */
static inline const uint8_t *otp__hs_out(const otp__hs *hs, size_t *len)
{
    *len = hs->out_len;
    return hs->out;
}
static inline void otp__hs_sent(otp__hs *hs)
{
    hs->out_len = 0;
}

/* MD5(cookie ++ decimal(challenge)), the digest of §2.3. */
void otp__hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge, uint8_t out[16]);

/* The names of the required flags missing from `flags`, comma-separated,
 * into buf (as OTP's log line names them). */
void otp__hs_missing_flags(uint64_t flags, uint64_t required, char *buf, size_t cap);

#endif
