/* common.h — error codes, error details and shared macros of the public API.
 *
 * Every libotp function that can fail returns 0 (or a non-negative count) on
 * success and a negative OTP_E* code on failure. Functions that fail on
 * untrusted input also fill an otp_error with where and why.
 */
#ifndef OTP_COMMON_H
#define OTP_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define OTP_LIKELY(x)    __builtin_expect(!!(x), 1)
#define OTP_UNLIKELY(x)  __builtin_expect(!!(x), 0)
#define OTP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define OTP_LIKELY(x)   (x)
#define OTP_UNLIKELY(x) (x)
#define OTP_PRINTF(f, a)
#endif

/* Error codes, always returned negated (-OTP_EBADARG). */
enum {
    OTP_OK = 0,
    OTP_ENOMEM = 1,    /* allocation failed, or a configured memory cap hit */
    OTP_EBADARG = 2,   /* a caller passed something invalid */
    OTP_EDECODE = 3,   /* malformed external term format */
    OTP_EPARSE = 4,    /* malformed term text */
    OTP_ETYPE = 5,     /* a term is not of the expected type */
    OTP_ERANGE = 6,    /* a value does not fit the requested C type */
    OTP_ENOSPC = 7,    /* a caller-supplied buffer is too small */
    OTP_ELIMIT = 8,    /* a documented limit was exceeded (depth, atoms...) */
    OTP_ENOTFOUND = 9, /* a key, field or name is missing */
    OTP_ENOMATCH = 10, /* a pattern did not match */
    OTP_EIO = 11,      /* an operating system call failed */
};

/* A short static description of an error code (positive or negative). */
const char *otp_strerror(int err);

/* Details of a failure on input: the code, the byte offset (or character
 * offset for text) where it was detected, and a one-line reason that names
 * what was expected. Filled by decode, parse and struct-mapping calls when
 * the caller passes a non-NULL pointer. */
typedef struct otp_error {
    int code;          /* negative OTP_E* code, 0 if no error */
    size_t offset;     /* where in the input the problem was found */
    char message[160]; /* human readable, NUL-terminated, no newline */
} otp_error;

#ifdef __cplusplus
}
#endif
#endif
