/* etf_internal.h — External Term Format tag numbers and the byte-order
 * helpers shared by the ETF decoder and encoder (codec/ only).
 *
 * All multi-byte integers on the wire are big-endian; bignum digit bytes are
 * little-endian.
 */
#ifndef OTP_CODEC_ETF_INTERNAL_H
#define OTP_CODEC_ETF_INTERNAL_H

#include <stdint.h>
#include <string.h>

enum {
    OTP__ETF_NEW_FLOAT = 70,
    OTP__ETF_BIT_BINARY = 77,
    OTP__ETF_COMPRESSED = 80,
    OTP__ETF_ATOM_CACHE_REF = 82,
    OTP__ETF_NEW_PID = 88,
    OTP__ETF_NEW_PORT = 89,
    OTP__ETF_NEWER_REFERENCE = 90,
    OTP__ETF_SMALL_INTEGER = 97,
    OTP__ETF_INTEGER = 98,
    OTP__ETF_FLOAT = 99,
    OTP__ETF_ATOM = 100,
    OTP__ETF_REFERENCE = 101,
    OTP__ETF_PORT = 102,
    OTP__ETF_PID = 103,
    OTP__ETF_SMALL_TUPLE = 104,
    OTP__ETF_LARGE_TUPLE = 105,
    OTP__ETF_NIL = 106,
    OTP__ETF_STRING = 107,
    OTP__ETF_LIST = 108,
    OTP__ETF_BINARY = 109,
    OTP__ETF_SMALL_BIG = 110,
    OTP__ETF_LARGE_BIG = 111,
    OTP__ETF_NEW_FUN = 112,
    OTP__ETF_EXPORT = 113,
    OTP__ETF_NEW_REFERENCE = 114,
    OTP__ETF_SMALL_ATOM = 115,
    OTP__ETF_MAP = 116,
    OTP__ETF_FUN = 117,
    OTP__ETF_ATOM_UTF8 = 118,
    OTP__ETF_SMALL_ATOM_UTF8 = 119,
    OTP__ETF_V4_PORT = 120,
    OTP__ETF_LOCAL = 121,
};

/* Largest port number that still fits NEW_PORT_EXT (OTP's
 * ERTS_MAX_V3_PORT_NUMBER); larger ids need V4_PORT_EXT. */
#define OTP__ETF_MAX_V3_PORT 0xfffffffu

/* Bytes of a FLOAT_EXT text field ("%.20e", NUL padded). */
#define OTP__ETF_FLOAT_TEXT 31

/* The host is little-endian on every platform we build for (x86-64,
 * aarch64); the byte swaps below compile to single instructions. */
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libotp's ETF codec assumes a little-endian host"
#endif

static inline uint16_t otp__rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return __builtin_bswap16(v);
}
static inline uint32_t otp__rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return __builtin_bswap32(v);
}
static inline uint64_t otp__rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
}
static inline void otp__wr16(uint8_t *p, uint16_t v)
{
    v = __builtin_bswap16(v);
    memcpy(p, &v, 2);
}
static inline void otp__wr32(uint8_t *p, uint32_t v)
{
    v = __builtin_bswap32(v);
    memcpy(p, &v, 4);
}
static inline void otp__wr64(uint8_t *p, uint64_t v)
{
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
}

#endif
