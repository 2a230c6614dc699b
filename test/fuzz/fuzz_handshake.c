/* fuzz_handshake.c — libFuzzer target for the distribution handshake:
 * arbitrary bytes from a peer, fed in two pieces to an acceptor and to an
 * initiator, must end in a state the caller can act on (again, up, or an
 * error with a reason), never read or write out of bounds, and never
 * consume more than they were given. The first byte picks the split.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist_handshake.h"

static const char *status(void *arg, const char *peer, uint64_t flags)
{
    (void)arg;
    (void)flags;
    return peer[0] == 'a' ? "alive" : "ok"; /* reach the alive path too */
}

static void run(bool initiator, const uint8_t *data, size_t size, size_t split)
{
    otp__hs hs;
    otp__hs_config c = {.initiator = initiator,
                        .name = "fuzz@host",
                        .creation = 7,
                        .flags = OTP__DF_REQUIRED | OTP__DF_SPAWN,
                        .cookie = "cookie",
                        .cookie_len = 6,
                        .peer = initiator ? "peer@host" : NULL,
                        .status = status,
                        .challenge = 1234567};
    if (otp__hs_start(&hs, &c) != 0)
        abort();
    size_t pos = 0;
    const size_t parts[2] = {split, size - split};
    for (int i = 0; i < 2; i++) {
        size_t used = 0;
        int r = otp__hs_feed(&hs, data + pos, parts[i], &used);
        if (used > parts[i])
            abort();
        size_t n;
        otp__hs_out(&hs, &n);
        if (n > sizeof hs.out)
            abort();
        otp__hs_sent(&hs);
        if (r < 0 && !hs.why)
            abort();
        if (r != OTP__HS_AGAIN)
            return;
        if (used != parts[i])
            abort(); /* still shaking hands: everything was taken */
        pos += parts[i];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = data[0] % size;
    run(false, data + 1, size - 1, split > size - 1 ? size - 1 : split);
    run(true, data + 1, size - 1, split > size - 1 ? size - 1 : split);
    return 0;
}
