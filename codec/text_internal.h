/* text_internal.h — helpers shared by the term printer (text_print.c) and
 * the term parser (text_parse.c): appending to an otp_buf, UTF-8, and
 * Erlang's character classes for atoms and variables (Latin-1 only, as
 * erl_scan and io_lib have them).
 */
#ifndef OTP_CODEC_TEXT_INTERNAL_H
#define OTP_CODEC_TEXT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "otp/text.h"
#include "term_internal.h"

/* otp_buf_reserve with the common case inline: printing appends a few
 * bytes at a time. */
static inline int otp__text_reserve(otp_buf *b, size_t extra)
{
    if (OTP_LIKELY(b->cap - b->len >= extra))
        return 0;
    return otp_buf_reserve(b, extra);
}

/* Encodes code point c as UTF-8 into out (room for 4); returns the bytes. */
static inline size_t otp__utf8_put(uint8_t *out, uint32_t c)
{
    if (c < 0x80) {
        out[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (uint8_t)(0xc0 | (c >> 6));
        out[1] = (uint8_t)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (c >> 12));
        out[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (c >> 18));
    out[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (c & 0x3f));
    return 4;
}

/* Decodes one strictly valid UTF-8 character (no overlongs, no surrogates,
 * nothing above U+10FFFF) from s[0..len); returns its byte length, or 0 when
 * the bytes there are not valid UTF-8. */
static inline size_t otp__utf8_get(const uint8_t *s, size_t len, uint32_t *c)
{
    if (len == 0)
        return 0;
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *c = b0;
        return 1;
    }
    if (b0 < 0xc2)
        return 0;
    if (b0 < 0xe0) {
        if (len < 2 || (s[1] & 0xc0) != 0x80)
            return 0;
        *c = ((uint32_t)(b0 & 0x1f) << 6) | (s[1] & 0x3f);
        return 2;
    }
    if (b0 < 0xf0) {
        if (len < 3 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
            return 0;
        uint32_t v = ((uint32_t)(b0 & 0x0f) << 12) | ((uint32_t)(s[1] & 0x3f) << 6) | (s[2] & 0x3f);
        if (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))
            return 0;
        *c = v;
        return 3;
    }
    if (b0 < 0xf5) {
        if (len < 4 || (s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        uint32_t v = ((uint32_t)(b0 & 0x07) << 18) | ((uint32_t)(s[1] & 0x3f) << 12) |
                     ((uint32_t)(s[2] & 0x3f) << 6) | (s[3] & 0x3f);
        if (v < 0x10000 || v > 0x10ffff)
            return 0;
        *c = v;
        return 4;
    }
    return 0;
}

/* io_lib's and erl_scan's classes (Latin-1: ß..ÿ lower, À..Þ upper). */
static inline bool otp__is_lower(uint32_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 0xdf && c <= 0xff && c != 0xf7);
}
static inline bool otp__is_upper(uint32_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7);
}
static inline bool otp__is_name_char(uint32_t c)
{
    return otp__is_lower(c) || otp__is_upper(c) || (c >= '0' && c <= '9') || c == '_' || c == '@';
}

/* erl_scan:reserved_word/1 in OTP 25 ('maybe' and 'else' are not reserved
 * unless the maybe_expr feature is enabled, which it is not by default). */
bool otp__text_reserved_word(const uint8_t *s, size_t len);

/* Erlang's shortest round-trip text of a finite double (float_to_list(D,
 * [short])) into out (room for 32); returns its length. */
int otp__text_format_double(double d, char *out);

#endif
