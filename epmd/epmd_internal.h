/* epmd_internal.h — what the EPMD client calls, the agent and the
 * standalone program share. Internal API.
 */
#ifndef OTP_EPMD_INTERNAL_H
#define OTP_EPMD_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "otp/common.h"

/* Fills err (if not NULL) with -code and the message; returns -code. */
int otp__epmd_fail(otp_error *err, int code, const char *fmt, ...) OTP_PRINTF(3, 4);

/* A TCP connection to host:port (NULL: 127.0.0.1; names are resolved,
 * which may block) made before the CLOCK_MONOTONIC deadline (ms), trying
 * each address. The fd is non-blocking, close-on-exec, TCP_NODELAY; the
 * caller closes it. Returns the fd or a negative OTP code with err filled.
 * EPMD's client and the distribution's connector threads use it. */
int otp__epmd_connect(const char *host, uint16_t port, uint64_t deadline, otp_error *err);
int otp__epmd_send_all(int fd, const uint8_t *p, size_t len, uint64_t deadline);

/* One request, and everything EPMD answers until it closes: *ans is
 * malloc'd (the caller frees). 0 or -OTP_EIO with err. */
int otp__epmd_request(const char *host, uint16_t port, const uint8_t *req, size_t req_len,
                      unsigned timeout_ms, uint8_t **ans, size_t *ans_len, otp_error *err);

#endif
