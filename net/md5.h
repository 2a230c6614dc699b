/* md5.h — MD5, for the distribution handshake's digest only (the protocol
 * fixes MD5; it is not used for anything that needs a secure hash).
 * Internal API. */
#ifndef OTP_NET_MD5_H
#define OTP_NET_MD5_H

#include <stddef.h>
#include <stdint.h>

typedef struct otp__md5 {
    uint32_t h[4];
    uint64_t len; /* bytes so far */
    uint8_t buf[64];
} otp__md5;

void otp__md5_init(otp__md5 *m);
void otp__md5_update(otp__md5 *m, const void *data, size_t len);
void otp__md5_final(otp__md5 *m, uint8_t out[16]);

#endif
