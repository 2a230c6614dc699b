/* dist_handshake.c — the distribution handshake, both roles (see
 * dist_handshake.h; wire facts in dist-protocol.md §2).
 *
 *   initiator: send N -> status (alive: answer s true|false; named: adopt
 *              the name) -> challenge N -> send r -> ack a -> up
 *   acceptor:  name N (or the old n with HANDSHAKE_23, then c later) ->
 *              send status -> send challenge N -> (c) -> reply r -> send a
 *              -> up
 *
 * Every message is u16-length framed; one longer than OTP__HS_MAX_MSG ends
 * the handshake (no real message comes near it). Bytes after the fixed
 * fields of an N message and of named: are ignored, as OTP requires.
 */
#define _GNU_SOURCE
#include "dist_handshake.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "md5.h"

enum {
    S_NONE,
    /* initiator */
    S_WAIT_STATUS,
    S_WAIT_CHALLENGE,
    S_WAIT_ACK,
    /* acceptor */
    S_WAIT_NAME,
    S_WAIT_ALIVE_ANSWER,
    S_WAIT_COMPLEMENT,
    S_WAIT_REPLY,
    S_UP,
    S_FAILED,
};

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
    return p + 4;
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
    return p + 8;
}

static uint64_t expand(uint64_t f)
{
    return f & OTP__DF_MANDATORY_25_DIGEST ? f | OTP__DF_MANDATORY_25 : f;
}

static uint32_t random32(void)
{
    uint32_t r = 0;
    while (r == 0)
        if (getrandom(&r, sizeof r, 0) != sizeof r)
            r = 0x9e3779b9u; /* never fails for 4 bytes; keep it non-zero anyway */
    return r;
}

void otp__hs_digest(const char *cookie, size_t cookie_len, uint32_t challenge, uint8_t out[16])
{
    char num[16];
    int n = snprintf(num, sizeof num, "%u", challenge);
    otp__md5 m;
    otp__md5_init(&m);
    otp__md5_update(&m, cookie, cookie_len);
    otp__md5_update(&m, num, (size_t)n);
    otp__md5_final(&m, out);
}

void otp__hs_missing_flags(uint64_t flags, uint64_t required, char *buf, size_t cap)
{
    static const struct {
        uint64_t f;
        const char *name;
    } names[] = {
        {OTP__DF_EXTENDED_REFERENCES, "EXTENDED_REFERENCES"},
        {OTP__DF_FUN_TAGS, "FUN_TAGS"},
        {OTP__DF_EXTENDED_PIDS_PORTS, "EXTENDED_PIDS_PORTS"},
        {OTP__DF_NEW_FUN_TAGS, "NEW_FUN_TAGS"},
        {OTP__DF_EXPORT_PTR_TAG, "EXPORT_PTR_TAG"},
        {OTP__DF_BIT_BINARIES, "BIT_BINARIES"},
        {OTP__DF_NEW_FLOATS, "NEW_FLOATS"},
        {OTP__DF_UTF8_ATOMS, "UTF8_ATOMS"},
        {OTP__DF_MAP_TAG, "MAP_TAG"},
        {OTP__DF_BIG_CREATION, "BIG_CREATION"},
        {OTP__DF_HANDSHAKE_23, "HANDSHAKE_23"},
        {OTP__DF_V4_NC, "V4_NC"},
        {OTP__DF_UNLINK_ID, "UNLINK_ID"},
    };
    size_t len = 0;
    buf[0] = 0;
    uint64_t missing = required & ~expand(flags);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(missing & names[i].f))
            continue;
        int n = snprintf(buf + len, cap - len, "%s%s", len ? "," : "", names[i].name);
        if (n < 0 || (size_t)n >= cap - len)
            return;
        len += (size_t)n;
    }
}

static int fail(otp__hs *hs, int err, const char *why)
{
    hs->state = S_FAILED;
    hs->why = why;
    return -err;
}

/* Appends one u16-framed message to out. */
static uint8_t *msg_begin(otp__hs *hs)
{
    return hs->out + hs->out_len + 2;
}

static void msg_end(otp__hs *hs, uint8_t *end)
{
    uint8_t *start = hs->out + hs->out_len;
    put16(start, (uint16_t)(end - start - 2));
    hs->out_len = (size_t)(end - hs->out);
}

static void send_name(otp__hs *hs)
{
    uint8_t *p = msg_begin(hs);
    size_t nl = strlen(hs->name);
    *p++ = 'N';
    p = put64(p, hs->cfg.flags);
    p = put32(p, hs->cfg.creation);
    p = put16(p, (uint16_t)nl);
    memcpy(p, hs->name, nl);
    msg_end(hs, p + nl);
}

static void send_status(otp__hs *hs, const char *status)
{
    uint8_t *p = msg_begin(hs);
    size_t l = strlen(status);
    *p++ = 's';
    memcpy(p, status, l);
    msg_end(hs, p + l);
}

static void send_challenge(otp__hs *hs)
{
    uint8_t *p = msg_begin(hs);
    size_t nl = strlen(hs->name);
    *p++ = 'N';
    uint64_t flags = hs->cfg.flags;
    if (hs->peer_flags & OTP__DF_NAME_ME)
        flags = (flags & ~OTP__DF_PUBLISHED) | OTP__DF_NAME_ME; /* a named peer is hidden */
    p = put64(p, flags);
    p = put32(p, hs->our_challenge);
    p = put32(p, hs->cfg.creation);
    p = put16(p, (uint16_t)nl);
    memcpy(p, hs->name, nl);
    msg_end(hs, p + nl);
}

static void send_digest(otp__hs *hs, char tag, uint32_t challenge_of_peer, bool with_ours)
{
    uint8_t *p = msg_begin(hs);
    *p++ = (uint8_t)tag;
    if (with_ours)
        p = put32(p, hs->our_challenge);
    otp__hs_digest(hs->cfg.cookie, hs->cfg.cookie_len, challenge_of_peer, p);
    msg_end(hs, p + 16);
}

static bool digest_ok(const otp__hs *hs, const uint8_t *d)
{
    uint8_t want[16];
    otp__hs_digest(hs->cfg.cookie, hs->cfg.cookie_len, hs->our_challenge, want);
    uint8_t diff = 0; /* constant time: the digest is a credential */
    for (int i = 0; i < 16; i++)
        diff |= (uint8_t)(want[i] ^ d[i]);
    return diff == 0;
}

/* A name field: 1..OTP__HS_MAX_NAME bytes, no NUL. */
static bool take_name(char *dst, const uint8_t *src, size_t len)
{
    if (len == 0 || len > OTP__HS_MAX_NAME || memchr(src, 0, len))
        return false;
    memcpy(dst, src, len);
    dst[len] = 0;
    return true;
}

int otp__hs_start(otp__hs *hs, const otp__hs_config *cfg)
{
    memset(hs, 0, sizeof *hs);
    hs->cfg = *cfg;
    if (!cfg->name || strlen(cfg->name) == 0 || strlen(cfg->name) > OTP__HS_MAX_NAME ||
        !strchr(cfg->name, '@'))
        return fail(hs, OTP__HS_EPROTO, "our node name must be name@host");
    if (!cfg->creation)
        return fail(hs, OTP__HS_EPROTO, "our creation must not be 0");
    strcpy(hs->name, cfg->name);
    hs->cfg.name = hs->name;
    if (!hs->cfg.required_flags)
        hs->cfg.required_flags = OTP__DF_REQUIRED;
    /* Send the eleven bits and the digest bit both: OTP 25+ reads either. */
    hs->cfg.flags |= OTP__DF_MANDATORY_25 | OTP__DF_MANDATORY_25_DIGEST;
    hs->cfg.flags &= ~OTP__DF_NAME_ME;
    hs->our_challenge = cfg->challenge ? cfg->challenge : random32();
    if (cfg->initiator) {
        send_name(hs);
        hs->state = S_WAIT_STATUS;
    } else {
        hs->state = S_WAIT_NAME;
    }
    return 0;
}

/* Checks the peer's flags; false, with why naming the missing ones as
 * OTP's log does, if some we require are missing. */
static bool flags_ok(otp__hs *hs, uint64_t peer, uint64_t mask)
{
    uint64_t need = hs->cfg.required_flags & mask;
    hs->peer_flags = expand(peer);
    hs->flags = hs->peer_flags & hs->cfg.flags;
    if ((hs->peer_flags & need) == need)
        return true;
    char miss[200];
    otp__hs_missing_flags(peer, need, miss, sizeof miss);
    snprintf(hs->why_buf, sizeof hs->why_buf, "the peer cannot handle [%s]", miss);
    return false;
}

/* One whole message m[0..len) (its length prefix removed). */
static int handle(otp__hs *hs, const uint8_t *m, size_t len)
{
    char tmp[OTP__HS_MAX_NAME + 1];
    switch (hs->state) {
    case S_WAIT_STATUS: {
        if (len < 1 || m[0] != 's')
            return fail(hs, OTP__HS_EPROTO, "expected a status message ('s')");
        const uint8_t *st = m + 1;
        size_t sl = len - 1;
        if ((sl == 2 && !memcmp(st, "ok", 2)) || (sl == 15 && !memcmp(st, "ok_simultaneous", 15))) {
            hs->state = S_WAIT_CHALLENGE;
            return OTP__HS_AGAIN;
        }
        if (sl == 5 && !memcmp(st, "alive", 5)) {
            bool go = hs->cfg.alive_continue ? hs->cfg.alive_continue(hs->cfg.arg) : true;
            send_status(hs, go ? "true" : "false");
            if (!go)
                return fail(hs, OTP__HS_EREFUSED, "the peer has a connection to us already");
            hs->state = S_WAIT_CHALLENGE;
            return OTP__HS_AGAIN;
        }
        if (sl >= 6 && !memcmp(st, "named:", 6)) {
            /* We only get this if we asked for a name, which we never do. */
            return fail(hs, OTP__HS_EPROTO, "status named: without NAME_ME");
        }
        if (sl == 3 && !memcmp(st, "nok", 3))
            return fail(hs, OTP__HS_EREFUSED, "status nok: the peer's own connection attempt wins");
        if (sl == 11 && !memcmp(st, "not_allowed", 11))
            return fail(hs, OTP__HS_EREFUSED, "status not_allowed: the peer refuses us");
        return fail(hs, OTP__HS_EPROTO, "unknown status");
    }
    case S_WAIT_CHALLENGE: {
        if (len < 19 || m[0] != 'N')
            return fail(hs, OTP__HS_EPROTO, "expected a challenge ('N', 19+ bytes)");
        uint64_t f = get64(m + 1);
        hs->peer_challenge = get32(m + 9);
        hs->peer_creation = get32(m + 13);
        size_t nl = get16(m + 17);
        if (19 + nl > len || !take_name(hs->peer_name, m + 19, nl))
            return fail(hs, OTP__HS_EPROTO, "challenge: bad node name");
        if (!flags_ok(hs, f, UINT64_MAX))
            return fail(hs, OTP__HS_EFLAGS, hs->why_buf);
        if (hs->cfg.peer && strcmp(hs->cfg.peer, hs->peer_name) != 0)
            return fail(hs, OTP__HS_ENAME, "the peer is not the node we called");
        send_digest(hs, 'r', hs->peer_challenge, true);
        hs->state = S_WAIT_ACK;
        return OTP__HS_AGAIN;
    }
    case S_WAIT_ACK:
        if (len != 17 || m[0] != 'a')
            return fail(hs, OTP__HS_EPROTO, "expected a challenge ack ('a', 17 bytes)");
        if (!digest_ok(hs, m + 1))
            return fail(hs, OTP__HS_ECOOKIE, "wrong digest in the ack: the cookies differ");
        hs->state = S_UP;
        return OTP__HS_UP;
    case S_WAIT_NAME: {
        uint64_t f;
        size_t nl;
        const uint8_t *name;
        if (len >= 15 && m[0] == 'N') {
            f = get64(m + 1);
            hs->peer_creation = get32(m + 9);
            nl = get16(m + 13);
            name = m + 15;
            if (15 + nl > len)
                return fail(hs, OTP__HS_EPROTO, "send_name: name runs past the message");
        } else if (len >= 7 && m[0] == 'n') {
            /* the old form: u16 version, u32 flags, name; HANDSHAKE_23
             * says a 'c' with the rest follows */
            f = get32(m + 3);
            name = m + 7;
            nl = len - 7;
            if (!(f & OTP__DF_HANDSHAKE_23)) {
                send_status(hs, "not_allowed");
                return fail(hs, OTP__HS_EFLAGS, "old handshake without HANDSHAKE_23");
            }
            hs->legacy = true;
        } else {
            return fail(hs, OTP__HS_EPROTO, "expected send_name ('N' or 'n')");
        }
        if (!take_name(tmp, name, nl))
            return fail(hs, OTP__HS_EPROTO, "send_name: bad node name");
        if (f & OTP__DF_NAME_ME) {
            /* A dynamic name: the peer sent its host; we make the rest. */
            if (strchr(tmp, '@'))
                return fail(hs, OTP__HS_EPROTO, "NAME_ME with a full name");
            uint64_t r;
            if (getrandom(&r, sizeof r, 0) != sizeof r)
                r = random32();
            char alive[16];
            int al = 0;
            do {
                alive[al++] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r % 36];
                r /= 36;
            } while (r && al < 14);
            if ((size_t)al + 1 + nl > OTP__HS_MAX_NAME)
                return fail(hs, OTP__HS_EPROTO, "NAME_ME host too long");
            memcpy(hs->peer_name, alive, (size_t)al);
            hs->peer_name[al] = '@';
            memcpy(hs->peer_name + al + 1, tmp, nl + 1);
            hs->peer_creation = random32();
            hs->named = true;
        } else {
            if (!strchr(tmp, '@'))
                return fail(hs, OTP__HS_EPROTO, "send_name: node name without '@'");
            strcpy(hs->peer_name, tmp);
        }
        /* The old form carries the low 32 bits only: the rest is checked
         * when the complement brings them. */
        if (!flags_ok(hs, f, hs->legacy ? UINT32_MAX : UINT64_MAX)) {
            send_status(hs, "not_allowed");
            return fail(hs, OTP__HS_EFLAGS, hs->why_buf);
        }
        hs->peer_flags |= f & OTP__DF_NAME_ME;
        const char *st = hs->cfg.status ? hs->cfg.status(hs->cfg.arg, hs->peer_name, f) : "ok";
        if (hs->named && (!strcmp(st, "ok") || !strcmp(st, "ok_simultaneous"))) {
            uint8_t *p = msg_begin(hs);
            size_t pl = strlen(hs->peer_name);
            *p++ = 's';
            memcpy(p, "named:", 6);
            p = put16(p + 6, (uint16_t)pl);
            memcpy(p, hs->peer_name, pl);
            p = put32(p + pl, hs->peer_creation);
            msg_end(hs, p);
        } else {
            send_status(hs, st);
        }
        if (!strcmp(st, "alive")) {
            hs->state = S_WAIT_ALIVE_ANSWER;
            return OTP__HS_AGAIN;
        }
        if (strcmp(st, "ok") && strcmp(st, "ok_simultaneous"))
            return fail(hs, OTP__HS_EDENIED, "we refused the peer");
        send_challenge(hs);
        hs->state = hs->legacy ? S_WAIT_COMPLEMENT : S_WAIT_REPLY;
        return OTP__HS_AGAIN;
    }
    case S_WAIT_ALIVE_ANSWER:
        if (len == 5 && !memcmp(m, "strue", 5)) {
            send_challenge(hs);
            hs->state = hs->legacy ? S_WAIT_COMPLEMENT : S_WAIT_REPLY;
            return OTP__HS_AGAIN;
        }
        if (len == 6 && !memcmp(m, "sfalse", 6))
            return fail(hs, OTP__HS_EREFUSED, "the peer gave up (alive: false)");
        return fail(hs, OTP__HS_EPROTO, "expected s true or s false after alive");
    case S_WAIT_COMPLEMENT:
        if (len != 9 || m[0] != 'c')
            return fail(hs, OTP__HS_EPROTO, "expected the complement ('c', 9 bytes)");
        hs->peer_flags |= (uint64_t)get32(m + 1) << 32;
        hs->peer_creation = get32(m + 5);
        if (!flags_ok(hs, hs->peer_flags, UINT64_MAX))
            return fail(hs, OTP__HS_EFLAGS, hs->why_buf);
        hs->state = S_WAIT_REPLY;
        return OTP__HS_AGAIN;
    case S_WAIT_REPLY:
        if (len != 21 || m[0] != 'r')
            return fail(hs, OTP__HS_EPROTO, "expected a challenge reply ('r', 21 bytes)");
        hs->peer_challenge = get32(m + 1);
        if (!digest_ok(hs, m + 5))
            return fail(hs, OTP__HS_ECOOKIE, "invalid challenge reply: the cookies differ");
        send_digest(hs, 'a', hs->peer_challenge, false);
        hs->state = S_UP;
        return OTP__HS_UP;
    default:
        return fail(hs, OTP__HS_EPROTO, "handshake already over");
    }
}

int otp__hs_feed(otp__hs *hs, const uint8_t *data, size_t len, size_t *used)
{
    size_t pos = 0;
    int r = OTP__HS_AGAIN;
    if (hs->state == S_FAILED || hs->state == S_UP) {
        *used = 0;
        return hs->state == S_UP ? OTP__HS_UP : fail(hs, OTP__HS_EPROTO, hs->why);
    }
    while (pos < len) {
        /* Take bytes up to the end of the current message only, so that
         * whatever follows the last handshake message stays the caller's. */
        size_t want = 2;
        if (hs->in_len >= 2) {
            size_t ml = get16(hs->in);
            if (ml == 0)
                return fail(hs, OTP__HS_EPROTO, "empty handshake message");
            if (ml > OTP__HS_MAX_MSG)
                return fail(hs, OTP__HS_EPROTO, "handshake message too long");
            want = 2 + ml;
        }
        size_t take = want - hs->in_len;
        if (take > len - pos)
            take = len - pos;
        memcpy(hs->in + hs->in_len, data + pos, take);
        hs->in_len += take;
        pos += take;
        if (hs->in_len < want || want == 2)
            continue;
        r = handle(hs, hs->in + 2, want - 2);
        hs->in_len = 0;
        if (r != OTP__HS_AGAIN)
            break;
    }
    *used = pos;
    return r;
}
